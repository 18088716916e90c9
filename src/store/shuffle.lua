-- The cut of a scheduled concert: queues its pre-queue in the given (published) order and
-- stages the fans who joined at or after opensAt (release.lua then places them in the order of
-- their accepted stamps, as the watermark passes them), atomically and once.
--
-- KEYS[1] hold HASH   KEYS[2] post LIST   KEYS[3] waiting LIST   KEYS[4] rank ZSET   KEYS[5] seq STRING
-- KEYS[6] fair HASH   KEYS[7] concert HASH   KEYS[8] seen HASH   KEYS[9] lease STRING
-- KEYS[10] staged ZSET   KEYS[11] joined HASH   KEYS[12] outbox STREAM, KEYS[13..15] the report's keys (outbox.lua): the pre-queue's
-- `placed` entries with positions, then `concert.shuffled` ("<prequeued>:<staged after>")
-- ARGV[1] listHash (published)   ARGV[2] the admitter's lease ("" for none)   ARGV[3] the lane's name
-- ARGV[4 ..] the pre-queue (held fans not in `post`) in the order the seed gives
--
-- Returns {0} when the lease is not the caller's, {2} when the cut was done already, {1, pre,
-- post} when done now. Everything that can fail is checked before the first write: the held
-- fans must be exactly ARGV plus `post` (a fan held since the caller read them is a STALE error,
-- and the caller reads again).
if ARGV[2] ~= '' and redis.call('GET', KEYS[9]) ~= ARGV[2] then
  return {0}
end
if redis.call('HEXISTS', KEYS[6], 'shuffledAt') == 1 then
  return {2}
end
local expected = {'hash', 'list', 'list', 'zset', 'string', 'hash', 'hash', 'hash', 'string', 'zset', 'hash', 'stream',
  'hash', 'hash', 'hash'}
for i = 1, 15 do
  local t = redis.call('TYPE', KEYS[i]).ok
  if t ~= 'none' and t ~= expected[i] then
    return redis.error_reply('WRONGTYPE ' .. KEYS[i] .. ' is a ' .. t .. ', not a ' .. expected[i] .. '; nothing was written')
  end
end
local CHUNK = 500
local n = #ARGV - 3
local posted = redis.call('LLEN', KEYS[2])
if redis.call('HLEN', KEYS[1]) - posted ~= n then
  return redis.error_reply('STALE the pre-queue changed since it was read; nothing was written')
end
for first = 4, #ARGV, CHUNK do
  local got = redis.call('HMGET', KEYS[1], unpack(ARGV, first, math.min(first + CHUNK - 1, #ARGV)))
  for j = 1, #got do
    if not got[j] then
      return redis.error_reply('STALE ' .. ARGV[first + j - 1] .. ' is not held; nothing was written')
    end
  end
end

local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local abandon = tonumber(redis.call('HGET', KEYS[7], 'abandonAfterSeconds') or '0') > 0
local seq = tonumber(redis.call('GET', KEYS[5]) or '0')
local placed, first_position = {}, redis.call('LLEN', KEYS[3]) + 1
local function append(users, from, to)
  for first = from, to, CHUNK do
    local last = math.min(first + CHUNK - 1, to)
    local list, zadd, seen = {}, {}, {}
    for i = first, last do
      seq = seq + 1
      placed[#placed + 1] = users[i]
      list[#list + 1] = users[i]
      zadd[#zadd + 1] = seq
      zadd[#zadd + 1] = users[i]
      seen[#seen + 1] = users[i]
      seen[#seen + 1] = now
    end
    redis.call('RPUSH', KEYS[3], unpack(list))
    redis.call('ZADD', KEYS[4], unpack(zadd))
    if abandon then
      redis.call('HSET', KEYS[8], unpack(seen))
    end
  end
end
append(ARGV, 4, #ARGV)
outbox(12, 'placed', ARGV[3], placed, first_position)
local post = redis.call('LRANGE', KEYS[2], 0, -1)
for first = 1, #post, CHUNK do
  local last = math.min(first + CHUNK - 1, #post)
  local stamps = redis.call('HMGET', KEYS[1], unpack(post, first, last))
  local stage = {}
  for i = first, last do
    stage[#stage + 1] = stamps[i - first + 1]
    stage[#stage + 1] = post[i]
  end
  redis.call('ZADD', KEYS[10], unpack(stage))
  redis.call('HDEL', KEYS[11], unpack(post, first, last))
end
redis.call('SET', KEYS[5], seq)
redis.call('DEL', KEYS[1], KEYS[2])
redis.call('HSET', KEYS[6], 'shuffledAt', now, 'listHash', ARGV[1], 'prequeued', n)
outbox_concert(12, 'concert.shuffled', ARGV[3], n .. ':' .. #post)
return {1, n, #post}
