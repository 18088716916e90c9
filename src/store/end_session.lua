-- Ends one fan's gate session (an operator's DELETE) and frees its slot.
--
-- KEYS[1] active ZSET   KEYS[2] sessions HASH   KEYS[3] ended ZSET
-- KEYS[4] outbox STREAM, KEYS[5..7] the report's keys (outbox.lua): `session.ended` (operator)
-- ARGV[1] userId
--
-- Returns 1 when a live session ended, 0 when the fan had none.
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local v = redis.call('HGET', KEYS[2], ARGV[1])
if not v then
  return 0
end
local sid = string.match(v, '^([^:]+):')
redis.call('ZADD', KEYS[3], now, sid)
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[1], ARGV[1])
outbox(4, 'session.ended', '', {ARGV[1]}, {'operator'})
return 1
