-- Takes a waiting fan out of a concert's queue; everyone behind moves up by one.
--
-- KEYS[1] waiting LIST  KEYS[2] rank ZSET  KEYS[3] state HASH  KEYS[4] adm HASH
-- ARGV[1] userId
--
-- Returns 1 when the fan was waiting and is removed, 0 otherwise. ZREM is O(log n); LREM walks
-- the LIST (O(n)) — an operator action, never on a fan's request path.
-- Time comes from Redis, not from the calling instance, so instances with skewed clocks agree.
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
if redis.call('ZREM', KEYS[2], ARGV[1]) == 0 then
  return 0
end
redis.call('LREM', KEYS[1], 1, ARGV[1])
redis.call('HSET', KEYS[3], ARGV[1], 'r:' .. now)
redis.call('HINCRBY', KEYS[4], 'removed', 1)
return 1
