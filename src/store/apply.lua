-- Applies one consumer batch of joins for one concert, atomically and idempotently.
--
-- KEYS[1] joined   HASH  userId -> joinedAt (ms); presence means "has ever been queued" (dedup)
-- KEYS[2] waiting  LIST  userIds in queue order (the concert's waiting list)
-- KEYS[3] rank     ZSET  userId -> sequence number; ZRANK gives the exact position in O(log n)
-- KEYS[4] seq      STRING the concert's last sequence number
-- KEYS[5] concert  HASH  the concert's settings (read: abandonAfterSeconds)
-- KEYS[6] seen     HASH  userId -> when the fan last showed life (ms): its arrival, then its polls
-- KEYS[7] hold     HASH  userId -> joinedAt: a scheduled concert's pre-queue, before the cut
-- KEYS[8] post     LIST  userIds who joined at or after opensAt, before the cut, in order
-- KEYS[9] fair     HASH  the fair start's state (shuffledAt once the cut is done)
-- KEYS[10] writers HASH  writer id -> how many calls that writer made on this concert
-- ARGV[1] the writer's id ('' for none), then pairs of userId, joinedAt (ms), in the order the
--         consumer read them
--
-- A concert with `opensAt` whose cut has not happened yet holds its new fans instead of queueing
-- them: all in `hold`, those who joined at or after opensAt (by the gateway's accepted time in
-- the record) also in `post`, in order. The cut (shuffle.lua) queues the others in the
-- published random order, then `post`. A record accepted before opensAt that arrives after the
-- cut (which waits for every partition, so it should not happen) is queued at the tail and
-- counted as `late` in `fair`.
--
-- Where the concert judges abandonment, each new fan's arrival (Redis's time) goes into `seen`:
-- abandonment then counts from when the fan reached the queue or last polled, whichever is
-- later, never from when the gateway accepted it, so consumer lag cannot make a faithful
-- poller look abandoned.
--
-- Returns {appended, duplicates, calls}: `calls` is the writer's counter in `writers` after this
-- call (0 without a writer). It is bumped in the same atomic call as the joins, so a node whose
-- counter is below what the writer last saw lacks some of its writes: a failover lost them (the
-- consumer's replica holds rely on it, see src/consumer/held.rs). A user already in `joined` (or earlier in this batch) is
-- skipped, so applying the same records twice (a redelivery after a crash, a repeated join)
-- leaves one entry.
--
-- Redis does not undo a script's earlier writes when a later command fails, so everything that
-- can fail is checked before the first write: a key of the wrong type (an operator's mistake, a
-- clash of prefixes) makes the script return a WRONGTYPE error having written nothing. Were
-- `joined` written and the RPUSH then refused, the retry would see every fan as a duplicate
-- and they would be lost.
--
-- The batch is written with a fixed number of commands (one HSET, RPUSH, ZADD and SET per
-- chunk of CHUNK new fans) rather than four per fan: with AOF `appendfsync always` every write
-- command is appended to the AOF, so fewer, larger commands are most of the script's cost.
local CHUNK = 500 -- keeps unpack() far below Lua's C-stack limit

local expected = {'hash', 'list', 'zset', 'string', 'hash', 'hash', 'hash', 'list', 'hash', 'hash'}
for i = 1, 10 do
  local t = redis.call('TYPE', KEYS[i]).ok
  if t ~= 'none' and t ~= expected[i] then
    return redis.error_reply('WRONGTYPE ' .. KEYS[i] .. ' is a ' .. t .. ', not a ' .. expected[i] .. '; nothing was written')
  end
end

local users = {}
for i = 2, #ARGV, 2 do
  users[#users + 1] = ARGV[i]
end

-- Which of them are already queued: one read, chunked.
local known = {}
for first = 1, #users, CHUNK do
  local last = math.min(first + CHUNK - 1, #users)
  local got = redis.call('HMGET', KEYS[1], unpack(users, first, last))
  for j = 1, #got do
    if got[j] then
      known[users[first + j - 1]] = true
    end
  end
end

local seq = tonumber(redis.call('GET', KEYS[4]) or '0')
local arrival = nil
if tonumber(redis.call('HGET', KEYS[5], 'abandonAfterSeconds') or '0') > 0 then
  local clock = redis.call('TIME')
  arrival = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
end
local opens = tonumber(redis.call('HGET', KEYS[5], 'opensAt') or '')
local holding = opens ~= nil and redis.call('HEXISTS', KEYS[9], 'shuffledAt') == 0
local appended, duplicates, late = 0, 0, 0
local hset, list, zadd, seen, hold, post = {}, {}, {}, {}, {}, {}
local function flush()
  if #hset > 0 then
    redis.call('HSET', KEYS[1], unpack(hset))
  end
  if #list > 0 then
    redis.call('RPUSH', KEYS[2], unpack(list))
    redis.call('ZADD', KEYS[3], unpack(zadd))
    if arrival then
      redis.call('HSET', KEYS[6], unpack(seen))
    end
  end
  if #hold > 0 then
    redis.call('HSET', KEYS[7], unpack(hold))
  end
  if #post > 0 then
    redis.call('RPUSH', KEYS[8], unpack(post))
  end
  hset, list, zadd, seen, hold, post = {}, {}, {}, {}, {}, {}
end

for i = 2, #ARGV, 2 do
  local user = ARGV[i]
  if known[user] then
    duplicates = duplicates + 1
  else
    known[user] = true
    appended = appended + 1
    hset[#hset + 1] = user
    hset[#hset + 1] = ARGV[i + 1]
    local joined_at = tonumber(ARGV[i + 1])
    if holding then
      hold[#hold + 1] = user
      hold[#hold + 1] = ARGV[i + 1]
      if joined_at >= opens then
        post[#post + 1] = user
      end
    else
      if opens and joined_at < opens then
        late = late + 1
      end
      seq = seq + 1
      list[#list + 1] = user
      zadd[#zadd + 1] = seq
      zadd[#zadd + 1] = user
      seen[#seen + 1] = user
      seen[#seen + 1] = arrival
    end
    if #hset >= 2 * CHUNK then
      flush()
    end
  end
end
flush()
if appended > 0 and not holding then
  redis.call('SET', KEYS[4], seq)
end
if late > 0 then
  redis.call('HINCRBY', KEYS[9], 'late', late)
end
local calls = 0
if ARGV[1] ~= '' then
  calls = redis.call('HINCRBY', KEYS[10], ARGV[1], 1)
end
return {appended, duplicates, calls}
