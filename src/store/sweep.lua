-- Ends the gate sessions whose slot's deadline has passed (idle, or at their maximum), and
-- frees the slots of expired admission tokens; run by the admission rounds.
--
-- KEYS[1] active ZSET   KEYS[2] sessions HASH   KEYS[3] ended ZSET sid -> endedAt (ms)
-- KEYS[4] outbox STREAM, KEYS[5..7] the report's keys (outbox.lua): `session.ended` (idle | max), `expired` (a token never exchanged)
-- ARGV[1] how long ended sessions are remembered (ms): at least the longest session a cookie
--         can still claim
--
-- Returns {ended for idleness, ended at their maximum}. At most 10000 slots per call.
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local idle, maxed = free_slots(KEYS[1], KEYS[2], KEYS[3], 4, now) -- slots.lua
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now - tonumber(ARGV[1]))
return {idle, maxed}
