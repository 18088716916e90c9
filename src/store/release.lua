-- Places a concert's staged fans whose accepted stamp the watermark has passed, in stamp order.
--
-- KEYS[1] staged  ZSET userId -> accepted stamp (ms)   KEYS[2] joined HASH   KEYS[3] waiting LIST
-- KEYS[4] rank ZSET   KEYS[5] seq STRING   KEYS[6] concert HASH (opensAt, abandonAfterSeconds)
-- KEYS[7] seen HASH   KEYS[8] order HASH (releasedTo: the highest stamp placed; late)   KEYS[9] fair HASH (shuffledAt)
-- KEYS[10] outbox STREAM, KEYS[11..13] the report's keys (outbox.lua): `placed` entries (with the first fan's position)
-- ARGV[1] the watermark W (ms): every partition of the entry topic has passed it, so every
--         join accepted before W has been staged (docs/explain-guarantees.md §3)
-- ARGV[2] the most fans to place in this call   ARGV[3] the lane's name
--
-- Fans with a stamp below W are appended to the queue in (stamp, userId) order: the sorted
-- set's own order, so ties are broken the same way by every caller. Every caller may release
-- (the watermark only grows, and a fan staged after a release has a stamp at or above the W of
-- that release unless it was late), so releases need no lease: a call with an older W places a
-- prefix of what a newer one would, and appending keeps every placed fan's position from ever
-- growing. A scheduled concert waits until its cut (cut.lua, in slices) has placed the whole pre-queue.
--
-- Returns {placed, stillStaged, oldestStagedStamp or -1}.
local w = tonumber(ARGV[1])
local max = tonumber(ARGV[2])
local opens = tonumber(redis.call('HGET', KEYS[6], 'opensAt') or '')
if opens ~= nil and redis.call('HEXISTS', KEYS[9], 'shuffledAt') == 0 then
  local n = redis.call('ZCARD', KEYS[1])
  return {0, n, -1}
end
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. w, 'WITHSCORES', 'LIMIT', 0, max)
local placed = #due / 2
if placed > 0 then
  local clock = redis.call('TIME')
  local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
  local abandon = tonumber(redis.call('HGET', KEYS[6], 'abandonAfterSeconds') or '0') > 0
  local seq = tonumber(redis.call('GET', KEYS[5]) or '0')
  local users, first_position = {}, redis.call('ZCARD', KEYS[4]) + 1
  local CHUNK = 500
  for first = 1, #due, 2 * CHUNK do
    local last = math.min(first + 2 * CHUNK - 1, #due)
    local joined, list, zadd, seen = {}, {}, {}, {}
    for i = first, last, 2 do
      local user, stamp = due[i], due[i + 1]
      seq = seq + 1
      users[#users + 1] = user
      joined[#joined + 1] = user
      joined[#joined + 1] = stamp
      list[#list + 1] = user
      zadd[#zadd + 1] = seq
      zadd[#zadd + 1] = user
      seen[#seen + 1] = user
      seen[#seen + 1] = now
    end
    redis.call('HSET', KEYS[2], unpack(joined))
    redis.call('RPUSH', KEYS[3], unpack(list))
    redis.call('ZADD', KEYS[4], unpack(zadd))
    if abandon then
      -- Abandonment counts from when the fan reached the queue, never from its stamp, so the
      -- wait for the watermark cannot make a faithful poller look abandoned.
      redis.call('HSET', KEYS[7], unpack(seen))
    end
  end
  redis.call('SET', KEYS[5], seq)
  redis.call('ZREMRANGEBYRANK', KEYS[1], 0, placed - 1)
  outbox(10, 'placed', ARGV[3], users, first_position)
end
-- The highest stamp placed so far: a fan staged later with a lower stamp is late (apply.lua).
-- Written only when someone was placed, so an idle concert's release writes nothing.
if placed > 0 then
  local upto = tonumber(due[#due])
  if upto > tonumber(redis.call('HGET', KEYS[8], 'releasedTo') or '0') then
    redis.call('HSET', KEYS[8], 'releasedTo', upto)
  end
end
local left = redis.call('ZCARD', KEYS[1])
local oldest = -1
if left > 0 then
  oldest = tonumber(redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')[2])
end
return {placed, left, oldest}
