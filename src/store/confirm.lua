-- A consumer writer asks whether its writes on a concert reached the replicas: this bumps its
-- counter (see apply.lua) so that the WAIT pipelined behind it waits for a write of its own,
-- which replication orders behind every earlier write on this primary.
--
-- KEYS[1] writers  HASH  writer id -> how many calls that writer made on this concert
-- ARGV[1] the writer's id
--
-- Returns the new count: at or below the count the writer saw last means this node lacks some
-- of its writes (a failover lost them).
return redis.call('HINCRBY', KEYS[1], ARGV[1], 1)
