-- Reads one fan's place in a concert's queue without scanning it.
--
-- KEYS[1] joined  HASH userId -> joinedAt (ms)
-- KEYS[2] rank    ZSET userId -> sequence number
-- ARGV[1] userId
--
-- Returns {0} when the fan was never queued (or the record is still on its way),
-- {1, position, queueLength, joinedAt} while waiting (position 1-based, from ZRANK: O(log n)),
-- {2, 0, queueLength, joinedAt} when queued once but no longer waiting.
local joined = redis.call('HGET', KEYS[1], ARGV[1])
if not joined then
  return {0}
end
local len = redis.call('ZCARD', KEYS[2])
local rank = redis.call('ZRANK', KEYS[2], ARGV[1])
if rank then
  return {1, rank + 1, len, joined}
end
return {2, 0, len, joined}
