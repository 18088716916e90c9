-- Takes a waiting fan out of a concert's queue; everyone behind moves up by one.
--
-- KEYS[1] rank ZSET  KEYS[2] state HASH  KEYS[3] adm HASH
-- KEYS[4] gone ZSET   sequence numbers that left from the middle of the queue (see view.lua)
-- KEYS[5] outbox STREAM, KEYS[6..8] the report's keys (outbox.lua): `removed`
-- ARGV[1] userId  ARGV[2] the lane's suffix of its fields in adm ("" for general, "@<lane>")
-- ARGV[3] the lane's name
-- (the keys are the fan's lane's)
--
-- Returns 1 when the fan was waiting and is removed, 0 otherwise. O(log n) whatever the queue's
-- length: the fan leaves `rank` (which every position, count and listing reads) but stays in
-- the waiting LIST, where admit.lua skips it when it reaches the head (a LREM would walk the
-- LIST: 16 ms at a million). A removed fan never comes back to the LIST (apply.lua's `joined`
-- keeps them), so the LIST holds at most one stale entry per removal, until admission passes it.
-- The fan's sequence number goes into `gone` and the lane's `goneVer` in `adm` grows, so the
-- gateways' views (view.lua) learn that everyone behind moved up by one.
-- Time comes from Redis, not from the calling instance, so instances with skewed clocks agree.
local t = redis.call('TYPE', KEYS[4]).ok
if t ~= 'none' and t ~= 'zset' then
  return redis.error_reply('WRONGTYPE ' .. KEYS[4] .. ' is a ' .. t .. ', not a zset; nothing was written')
end
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local seq = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not seq then
  return 0
end
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('ZADD', KEYS[4], seq, seq)
redis.call('HSET', KEYS[2], ARGV[1], 'r:' .. now)
redis.call('HINCRBY', KEYS[3], 'removed', 1)
redis.call('HINCRBY', KEYS[3], 'goneVer' .. (ARGV[2] or ''), 1)
outbox(5, 'removed', ARGV[3], {ARGV[1]})
return 1
