-- The cut of a scheduled concert's lane at opensAt, in bounded steps across calls (DESIGN.md,
-- "At stadium scale"): the pre-queue is queued in the seed's (published) order slice by slice,
-- and the fans who joined at or after opensAt (`post`) are staged, so release.lua places them
-- behind the whole pre-queue in the order of their stamps. Every step is one atomic call under
-- the admitter's lease, checks everything that can fail before its first write, and keeps its
-- progress in `fair`, so any instance holding the lease resumes where another stopped.
--
-- KEYS[1] hold HASH   KEYS[2] post LIST   KEYS[3] waiting LIST   KEYS[4] rank ZSET   KEYS[5] seq STRING
-- KEYS[6] fair HASH   KEYS[7] concert HASH   KEYS[8] seen HASH   KEYS[9] lease STRING
-- KEYS[10] staged ZSET   KEYS[11] joined HASH   KEYS[12] outbox STREAM, KEYS[13..15] the report's keys (outbox.lua)
-- ARGV[1] the step   ARGV[2] the admitter's lease ("" for none)   ARGV[3] the lane's name
--
-- Steps, in this order (fields of `fair`: cutAt, cutPost, cutHash, cutN, cutMoved):
--   `begin`   freezes the pre-queue: sets `cutAt`, after which apply.lua holds nobody (new fans
--             are staged, placed only after `shuffledAt`, so behind the whole pre-queue).
--             Returns {1, held, post, moved, n or -1}. O(1).
--   `post`    stages the first at most SLICE fans of `post` (their stamps from `hold`) and takes
--             them out of `hold` and `joined`; counts them in `cutPost`. Returns {1, staged, left}.
--             O(SLICE log n).
--   `commit`  ARGV[4] listHash, ARGV[5] n: once `post` is empty, `hold` is exactly the pre-queue;
--             records its hash and size (once: a second commit returns what is recorded).
--             STALE when `hold` does not hold n fans. Returns {1, n, moved}. O(1).
--   `slice`   ARGV[4] moved (how many the caller knows were queued already), ARGV[5 ..] the next
--             at most SLICE fans of the pre-queue in the seed's order: appended to the queue
--             (waiting, rank, seen), taken out of `hold`, with their `placed` outbox entry.
--             STALE when `cutMoved` is not ARGV[4] or a fan is not held (the caller reads `hold`
--             again). The slice that empties `hold` (or an empty one when n fans are queued)
--             finishes: `shuffledAt`, `listHash`, `prequeued`, the `concert.shuffled` event
--             ("<prequeued>:<staged after>"). Returns {1, moved, n}, or {3, n, post} when done.
--             O(SLICE log n).
-- Every step returns {0} when the lease is not the caller's and {2} when the cut was done already.
-- Commands are chunked by CHUNK values, far below unpack()'s ~8,000.
local SLICE, CHUNK = 500, 500
local step = ARGV[1]
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
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local f = redis.call('HMGET', KEYS[6], 'cutAt', 'cutN', 'cutMoved', 'cutHash', 'cutPost')
local cut_n, moved = tonumber(f[2]), tonumber(f[3] or '0')

if step == 'begin' then
  if not f[1] then
    redis.call('HSET', KEYS[6], 'cutAt', now)
  end
  return {1, redis.call('HLEN', KEYS[1]), redis.call('LLEN', KEYS[2]), moved, cut_n or -1}
end
if not f[1] then
  return redis.error_reply('STALE the cut has not begun; nothing was written')
end

if step == 'post' then
  local post = redis.call('LRANGE', KEYS[2], 0, SLICE - 1)
  if #post == 0 then
    return {1, 0, 0}
  end
  local stamps = {}
  for first = 1, #post, CHUNK do
    local got = redis.call('HMGET', KEYS[1], unpack(post, first, math.min(first + CHUNK - 1, #post)))
    for j = 1, #got do
      if not got[j] then
        return redis.error_reply('STALE ' .. post[first + j - 1] .. ' of post is not held; nothing was written')
      end
      stamps[#stamps + 1] = got[j]
    end
  end
  for first = 1, #post, CHUNK do
    local last = math.min(first + CHUNK - 1, #post)
    local stage = {}
    for i = first, last do
      stage[#stage + 1] = stamps[i]
      stage[#stage + 1] = post[i]
    end
    redis.call('ZADD', KEYS[10], unpack(stage))
    redis.call('HDEL', KEYS[11], unpack(post, first, last))
    redis.call('HDEL', KEYS[1], unpack(post, first, last))
  end
  redis.call('LTRIM', KEYS[2], #post, -1)
  redis.call('HINCRBY', KEYS[6], 'cutPost', #post)
  return {1, #post, redis.call('LLEN', KEYS[2])}
end

if step == 'commit' then
  if cut_n then
    return {1, cut_n, moved}
  end
  local n = tonumber(ARGV[5])
  if redis.call('LLEN', KEYS[2]) > 0 then
    return redis.error_reply('STALE post is not staged yet; nothing was written')
  end
  if not n or redis.call('HLEN', KEYS[1]) ~= n then
    return redis.error_reply('STALE the pre-queue holds ' .. redis.call('HLEN', KEYS[1]) .. ' fans, not ' .. ARGV[5] ..
      '; nothing was written')
  end
  redis.call('HSET', KEYS[6], 'cutHash', ARGV[4], 'cutN', n, 'cutMoved', 0)
  return {1, n, 0}
end

if step ~= 'slice' then
  return redis.error_reply('ERR unknown step ' .. step)
end
if not cut_n then
  return redis.error_reply('STALE the pre-queue is not committed yet; nothing was written')
end
if tonumber(ARGV[4]) ~= moved then
  return redis.error_reply('STALE the cut has queued ' .. moved .. ' fans, not ' .. ARGV[4] .. '; nothing was written')
end
local k = #ARGV - 4
if k > SLICE then
  return redis.error_reply('ERR a slice holds at most ' .. SLICE .. ' fans, not ' .. k)
end
if redis.call('HLEN', KEYS[1]) ~= cut_n - moved then
  return redis.error_reply('STALE the pre-queue holds ' .. redis.call('HLEN', KEYS[1]) .. ' fans, not ' ..
    (cut_n - moved) .. '; nothing was written')
end
local once = {}
for first = 5, #ARGV, CHUNK do
  local got = redis.call('HMGET', KEYS[1], unpack(ARGV, first, math.min(first + CHUNK - 1, #ARGV)))
  for j = 1, #got do
    local user = ARGV[first + j - 1]
    if not got[j] or once[user] then
      return redis.error_reply('STALE ' .. user .. ' is not held (or named twice); nothing was written')
    end
    once[user] = true
  end
end

if k > 0 then
  local abandon = tonumber(redis.call('HGET', KEYS[7], 'abandonAfterSeconds') or '0') > 0
  local seq = tonumber(redis.call('GET', KEYS[5]) or '0')
  local placed, first_position = {}, redis.call('ZCARD', KEYS[4]) + 1
  for first = 5, #ARGV, CHUNK do
    local last = math.min(first + CHUNK - 1, #ARGV)
    local zadd, seen = {}, {}
    for i = first, last do
      seq = seq + 1
      placed[#placed + 1] = ARGV[i]
      zadd[#zadd + 1] = seq
      zadd[#zadd + 1] = ARGV[i]
      seen[#seen + 1] = ARGV[i]
      seen[#seen + 1] = now
    end
    redis.call('RPUSH', KEYS[3], unpack(ARGV, first, last))
    redis.call('ZADD', KEYS[4], unpack(zadd))
    if abandon then
      redis.call('HSET', KEYS[8], unpack(seen))
    end
    redis.call('HDEL', KEYS[1], unpack(ARGV, first, last))
  end
  redis.call('SET', KEYS[5], seq)
  redis.call('HSET', KEYS[6], 'cutMoved', moved + k)
  outbox(12, 'placed', ARGV[3], placed, first_position)
end
moved = moved + k
if moved < cut_n then
  return {1, moved, cut_n}
end
local post = tonumber(f[5] or '0')
redis.call('DEL', KEYS[1], KEYS[2])
redis.call('HSET', KEYS[6], 'shuffledAt', now, 'listHash', f[4], 'prequeued', cut_n)
outbox_concert(12, 'concert.shuffled', ARGV[3], cut_n .. ':' .. post)
return {3, cut_n, post}
