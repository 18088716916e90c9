-- The booking site is done with an admitted fan: free the fan's slot and record it, so the
-- fan's status stops handing out the admission token (a fan cannot free its own slot and keep
-- booking beyond maxActive).
--
-- KEYS[1] state HASH  KEYS[2] active ZSET  KEYS[3] sessions HASH  KEYS[4] ended ZSET
-- KEYS[5] outbox STREAM, KEYS[6..8] the report's keys (outbox.lua): `session.ended` (completed) when a session ends, then `completed`
-- ARGV[1] userId
--
-- The fan's gate session, when it has one, ends with it (gateways learn it from `ended`).
--
-- Returns 1 when the fan was admitted and is now completed (3 when its gate session ended with
-- it, or when it was a visitor standby let straight in, whose session ended), 2 when it was
-- completed already, 0 when the fan was never admitted (nothing is written). Nothing fails after
-- the first write: the state is read and checked first.
-- Time comes from Redis, not from the calling instance, so instances with skewed clocks agree.
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local state = redis.call('HGET', KEYS[1], ARGV[1])
if not state then
  -- A visitor standby let straight in (enter.lua) has a session and no state: its session ends.
  local direct = redis.call('HGET', KEYS[3], ARGV[1])
  if not direct then
    return 0
  end
  redis.call('ZREM', KEYS[2], ARGV[1])
  redis.call('ZADD', KEYS[4], now, string.match(direct, '^([^:]+):'))
  redis.call('HDEL', KEYS[3], ARGV[1])
  outbox(5, 'session.ended', '', {ARGV[1]}, {'completed'})
  return 3
end
local kind, iat, exp = string.match(state, '^(%a):(%d+):(%d+)')
if kind == 'c' then
  return 2
end
if kind ~= 'a' then
  return 0
end
redis.call('HSET', KEYS[1], ARGV[1], 'c:' .. iat .. ':' .. exp .. ':' .. now)
redis.call('ZREM', KEYS[2], ARGV[1])
local session = redis.call('HGET', KEYS[3], ARGV[1])
if session then
  redis.call('ZADD', KEYS[4], now, string.match(session, '^([^:]+):'))
  redis.call('HDEL', KEYS[3], ARGV[1])
  outbox(5, 'session.ended', '', {ARGV[1]}, {'completed'})
end
outbox(5, 'completed', '', {ARGV[1]})
if session then
  return 3
end
return 1
