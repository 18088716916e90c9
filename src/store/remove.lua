-- Takes a waiting fan out of a concert's queue; everyone behind moves up by one.
--
-- KEYS[1] waiting LIST  KEYS[2] rank ZSET  KEYS[3] state HASH  KEYS[4] adm HASH
-- KEYS[5] gone ZSET   sequence numbers that left from the middle of the queue (see view.lua)
-- KEYS[6] outbox STREAM, KEYS[7..9] the report's keys (outbox.lua): `removed`
-- ARGV[1] userId  ARGV[2] the lane's suffix of its fields in adm ("" for general, "@<lane>")
-- ARGV[3] the lane's name
-- (the keys are the fan's lane's)
--
-- Returns 1 when the fan was waiting and is removed, 0 otherwise. ZREM is O(log n); LREM walks
-- the LIST (O(n)) — an operator action, never on a fan's request path. The fan's sequence
-- number goes into `gone` and the lane's `goneVer` in `adm` grows, so the gateways' views (view.lua) learn
-- that everyone behind moved up by one.
-- Time comes from Redis, not from the calling instance, so instances with skewed clocks agree.
local t = redis.call('TYPE', KEYS[5]).ok
if t ~= 'none' and t ~= 'zset' then
  return redis.error_reply('WRONGTYPE ' .. KEYS[5] .. ' is a ' .. t .. ', not a zset; nothing was written')
end
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local seq = redis.call('ZSCORE', KEYS[2], ARGV[1])
if not seq then
  return 0
end
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('LREM', KEYS[1], 1, ARGV[1])
redis.call('ZADD', KEYS[5], seq, seq)
redis.call('HSET', KEYS[3], ARGV[1], 'r:' .. now)
redis.call('HINCRBY', KEYS[4], 'removed', 1)
redis.call('HINCRBY', KEYS[4], 'goneVer' .. (ARGV[2] or ''), 1)
outbox(6, 'removed', ARGV[3], {ARGV[1]})
return 1
