-- A concert's counts in O(L log n): waiting per lane, admitted so far, active slots.
--
-- KEYS[1] adm HASH  KEYS[2] active ZSET  KEYS[3] sessions HASH  KEYS[3 + i] rank ZSET of lane i
-- ARGV[i] the name of lane i
-- Returns {admitted, active, skipped, removed, sessions, waiting_1, admitted_1, waiting_2, ...};
-- active counts the slots in use by Redis's time (unexpired tokens and live gate sessions);
-- sessions the live gate sessions; admitted_i is the lane's (`admitted@<lane>`, written by
-- admit.lua when the concert has several lanes; the concert's own count when it has one).
-- Time comes from Redis, not from the calling instance, so instances with skewed clocks agree.
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local admitted = tonumber(redis.call('HGET', KEYS[1], 'admitted') or '0')
local out = {
  admitted,
  redis.call('ZCOUNT', KEYS[2], '(' .. now, '+inf'),
  tonumber(redis.call('HGET', KEYS[1], 'skipped') or '0'),
  tonumber(redis.call('HGET', KEYS[1], 'removed') or '0'),
  redis.call('HLEN', KEYS[3]),
}
for i = 1, #ARGV do
  out[#out + 1] = redis.call('ZCARD', KEYS[3 + i])
  if #ARGV == 1 then
    out[#out + 1] = admitted
  else
    out[#out + 1] = tonumber(redis.call('HGET', KEYS[1], 'admitted@' .. ARGV[i]) or '0')
  end
end
return out
