-- A concert's counts in O(log n): waiting, admitted so far, active slots.
--
-- KEYS[1] rank ZSET  KEYS[2] adm HASH  KEYS[3] active ZSET  KEYS[4] sessions HASH
-- Returns {waiting, admitted, active, skipped, removed, sessions}; active counts the slots in use
-- by Redis's time (unexpired tokens and live gate sessions); sessions the live gate sessions.
-- Time comes from Redis, not from the calling instance, so instances with skewed clocks agree.
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
return {
  redis.call('ZCARD', KEYS[1]),
  tonumber(redis.call('HGET', KEYS[2], 'admitted') or '0'),
  redis.call('ZCOUNT', KEYS[3], '(' .. now, '+inf'),
  tonumber(redis.call('HGET', KEYS[2], 'skipped') or '0'),
  tonumber(redis.call('HGET', KEYS[2], 'removed') or '0'),
  redis.call('HLEN', KEYS[4]),
}
