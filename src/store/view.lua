-- A gateway's periodic read of one concert's queue: the moving parts every watcher's position
-- is worked out from, in one call whatever the number of watchers, and whatever the number of
-- the concert's lanes.
--
-- KEYS[1] adm HASH  KEYS[2] joined HASH  KEYS[3] state HASH  KEYS[4] seen HASH
-- KEYS[5] concert HASH (opensAt)  KEYS[6] lanes HASH (userId -> lane, for lanes other than general)
-- then per lane i (1-based): KEYS[7+4(i-1)] rank ZSET, KEYS[8+4(i-1)] seq STRING,
--                            KEYS[9+4(i-1)] gone ZSET, KEYS[10+4(i-1)] hold HASH
-- ARGV[1] L, the number of lanes; ARGV[2 .. 1+L] their names
-- ARGV[2+L .. 1+2L] the `goneVer` of each lane the caller last saw ("" for none): a lane's
--          `gone` is sent only when it differs
-- ARGV[2+2L] p, the number of fans to look up (fans whose sequence number the caller does not know)
-- ARGV[3+2L .. 2+2L+p] those fans
-- ARGV[3+2L+p ..] fans who showed life (polled, or hold a stream): their time in `seen` is set to
--              now (the caller sends each at most a few times per abandonment window)
--
-- In each lane, every fan who ever reached it got the lane's next sequence number (release.lua),
-- admission takes fans from the head in that order (admit.lua), and a fan removed from the
-- middle leaves its number in the lane's `gone` (remove.lua). So the waiting fans are exactly
-- the numbers from the head (the lowest number still waiting) to the last one, minus those in
-- `gone`, and a fan with number s is at position 1 + (s - head) - |gone in [head, s)|: the same
-- number ZRANK gives.
--
-- Returns {now, lanes, lookups}: lanes has one entry per lane, {head, lastSeq, queueLength,
-- observedRate (text, decayed to now), goneVer, gone (a list of numbers at or past the head, or
-- false when goneVer is the caller's)}; lookups one text per looked-up fan: "<i>:<seq>" while
-- waiting in lane i; "H<i>:<opensAt>" while held in lane i's pre-queue; "L" and its state once it
-- has left; "" while it has not reached the queue (or its lane is not one of these).
-- Cost: O(L log n) + O(p log n) for the lookups + O(|gone|) when gone changed (operators'
-- removals only) + one HSET for the fans who showed life.
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local nl = tonumber(ARGV[1])
local index = {}
local lanes = {}
for i = 1, nl do
  local name = ARGV[1 + i]
  index[name] = i
  local rank, seq_key, gone_key = KEYS[7 + 4 * (i - 1)], KEYS[8 + 4 * (i - 1)], KEYS[9 + 4 * (i - 1)]
  local sfx = ''
  if name ~= 'general' then sfx = '@' .. name end
  local last = tonumber(redis.call('GET', seq_key) or '0')
  local len = redis.call('ZCARD', rank)
  local head = last + 1
  if len > 0 then
    head = tonumber(redis.call('ZRANGE', rank, 0, 0, 'WITHSCORES')[2])
  end
  local r = tonumber(redis.call('HGET', KEYS[1], 'obsRate' .. sfx) or '0')
  local t = tonumber(redis.call('HGET', KEYS[1], 'obsAt' .. sfx) or now)
  local ver = redis.call('HGET', KEYS[1], 'goneVer' .. sfx) or '0'
  local gone = false
  if ver ~= ARGV[1 + nl + i] then
    gone = redis.call('ZRANGEBYSCORE', gone_key, head, '+inf')
  end
  lanes[i] = {head, last, len, tostring(r * math.exp(-(now - t) / 30000)), ver, gone}
end

local base = 2 + 2 * nl
local p = tonumber(ARGV[base])
local lookups = {}
for j = base + 1, base + p do
  local user = ARGV[j]
  local i = index[redis.call('HGET', KEYS[6], user) or 'general']
  local found = ''
  if i then
    local seq = redis.call('ZSCORE', KEYS[7 + 4 * (i - 1)], user)
    if seq then
      found = i .. ':' .. seq
    elseif redis.call('HEXISTS', KEYS[10 + 4 * (i - 1)], user) == 1 then
      found = 'H' .. i .. ':' .. (redis.call('HGET', KEYS[5], 'opensAt') or '0')
    elseif redis.call('HEXISTS', KEYS[2], user) == 1 then
      found = 'L' .. (redis.call('HGET', KEYS[3], user) or '')
    end
  end
  lookups[#lookups + 1] = found
end

-- In chunks of 500 fans: unpack() refuses ~8,000 values, and the caller's bound (2,000 fans a
-- refresh, 4,000 values) is not far enough below it.
for first = base + p + 1, #ARGV, 500 do
  local seen = {}
  for j = first, math.min(first + 499, #ARGV) do
    seen[#seen + 1] = ARGV[j]
    seen[#seen + 1] = now
  end
  redis.call('HSET', KEYS[4], unpack(seen))
end
return {now, lanes, lookups}
