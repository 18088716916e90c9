-- A gateway's periodic read of one concert's queue: the moving parts every watcher's position
-- is worked out from, in one call whatever the number of watchers.
--
-- KEYS[1] rank ZSET  KEYS[2] seq STRING  KEYS[3] adm HASH  KEYS[4] gone ZSET  KEYS[5] joined HASH
-- KEYS[6] state HASH  KEYS[7] seen HASH  KEYS[8] hold HASH  KEYS[9] concert HASH (opensAt)
-- ARGV[1] the `goneVer` the caller last saw ("" for none): `gone` is sent only when it differs
-- ARGV[2] p, the number of fans to look up (fans whose sequence number the caller does not know)
-- ARGV[3 .. 2+p] those fans
-- ARGV[3+p ..] fans who showed life (polled, or hold a stream): their time in `seen` is set to
--              now (the caller sends each at most a few times per abandonment window)
--
-- Every fan who ever reached the queue got the next sequence number (apply.lua), admission
-- takes fans from the head in that order (admit.lua), and a fan removed from the middle leaves
-- its number in `gone` (remove.lua). So the waiting fans are exactly the numbers from the head
-- (the lowest number still waiting) to the last one, minus those in `gone`, and a fan with
-- number s is at position 1 + (s - head) - |gone in [head, s)|: the same number ZRANK gives.
--
-- Returns {now, head, lastSeq, queueLength, observedRate (text, decayed to now), goneVer,
-- gone (a list of numbers at or past the head, or false when goneVer is the caller's),
-- lookups (one text per looked-up fan: its sequence number while waiting; "H" and opensAt while
-- held in a pre-queue; "L" and its state once it has left; "" while it has not reached the
-- queue)}.
-- Cost: O(log n) + O(p log n) for the lookups + O(|gone|) when gone changed (operators'
-- removals only) + one HSET for the fans who showed life.
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local last = tonumber(redis.call('GET', KEYS[2]) or '0')
local len = redis.call('ZCARD', KEYS[1])
local head = last + 1
if len > 0 then
  head = tonumber(redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')[2])
end
local r = tonumber(redis.call('HGET', KEYS[3], 'obsRate') or '0')
local t = tonumber(redis.call('HGET', KEYS[3], 'obsAt') or now)
local ver = redis.call('HGET', KEYS[3], 'goneVer') or '0'
local gone = false
if ver ~= ARGV[1] then
  gone = redis.call('ZRANGEBYSCORE', KEYS[4], head, '+inf')
end

local p = tonumber(ARGV[2])
local lookups = {}
for i = 3, 2 + p do
  local user = ARGV[i]
  local seq = redis.call('ZSCORE', KEYS[1], user)
  if seq then
    lookups[#lookups + 1] = seq
  elseif redis.call('HEXISTS', KEYS[8], user) == 1 then
    lookups[#lookups + 1] = 'H' .. (redis.call('HGET', KEYS[9], 'opensAt') or '0')
  elseif redis.call('HEXISTS', KEYS[5], user) == 1 then
    lookups[#lookups + 1] = 'L' .. (redis.call('HGET', KEYS[6], user) or '')
  else
    lookups[#lookups + 1] = ''
  end
end

if #ARGV > 2 + p then
  local seen = {}
  for i = 3 + p, #ARGV do
    seen[#seen + 1] = ARGV[i]
    seen[#seen + 1] = now
  end
  redis.call('HSET', KEYS[7], unpack(seen))
end
return {now, head, last, len, tostring(r * math.exp(-(now - t) / 30000)), ver, gone, lookups}
