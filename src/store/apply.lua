-- Applies one consumer batch of joins for one concert, atomically and idempotently.
--
-- KEYS[1] joined   HASH  userId -> joinedAt (ms): the fans placed in the queue (or held in a
--                        pre-queue); with `staged`, who "has ever been queued" (dedup)
-- KEYS[2] waiting  LIST  userIds in queue order (the concert's waiting list)
-- KEYS[3] rank     ZSET  userId -> sequence number; ZRANK gives the exact position in O(log n)
-- KEYS[4] seq      STRING the concert's last sequence number
-- KEYS[5] concert  HASH  the concert's settings (read: opensAt)
-- KEYS[6] seen     HASH  userId -> when the fan last showed life (ms)
-- KEYS[7] hold     HASH  userId -> joinedAt: a scheduled concert's pre-queue, before the cut
-- KEYS[8] post     LIST  userIds who joined at or after opensAt, before the cut, in order
-- KEYS[9] fair     HASH  the fair start's state (cutAt once the cut began, shuffledAt once done)
-- KEYS[10] writers HASH  writer id -> how many calls that writer made on this concert
-- KEYS[11] staged  ZSET  userId -> accepted stamp (ms): fans waiting for the watermark
-- KEYS[12] order   HASH  `releasedTo` (the highest stamp placed so far), `late`
-- KEYS[13] lanes   HASH  userId -> lane, for fans of a lane other than `general`
-- KEYS[14] the `general` lane's staged ZSET (KEYS[11] itself when this is that lane)
-- ARGV[1] the writer's id ('' for none), ARGV[2] the lane ('' for `general`), then pairs of
--         userId, joinedAt (ms), in the order the consumer read them
--
-- Lanes: the keys of the queue itself (waiting, rank, seq, hold, post, fair, staged, order) are
-- the lane's own; joined, seen, concert and writers are the concert's. A fan holds one place per
-- concert, in one lane: one already in `joined` (placed or held in any lane), in `lanes` (staged
-- in a lane other than general) or staged in general is a duplicate, whatever lane it names now.
--
-- First come, first placed (docs/explain-guarantees.md §3): a new fan is not placed here but *staged*,
-- scored by the gateway's accepted stamp; release.lua places the staged fans in stamp order
-- once every partition of the entry topic has passed their stamp (the watermark). A fan whose
-- stamp is below one already placed (`releasedTo`) came too late for its place: it is staged
-- all the same, placed by the next release behind everyone placed so far (so no
-- placed fan ever moves back), and counted as `late`.
--
-- A concert with `opensAt` whose cut has not begun yet holds its new fans instead: all in
-- `hold`, those who joined at or after opensAt (by the gateway's accepted time in the record)
-- also in `post`. The cut (cut.lua, in slices) stages `post` and queues the others in the
-- published random order. A fan applied once the cut began is staged; one stamped before
-- opensAt is then `late` (counted in `fair`).
--
-- Returns {appended, duplicates, calls, late}: `calls` is the writer's counter in `writers`
-- after this call (0 without a writer). It is bumped in the same atomic call as the joins, so a
-- node whose counter is below what the writer last saw lacks some of its writes: a failover
-- lost them (the consumer's replica holds rely on it, see src/consumer/held.rs). A user already
-- in `joined` or `staged` (or earlier in this batch) is skipped, so applying the same records
-- twice (a redelivery after a crash, a repeated join) leaves one entry.
--
-- Redis does not undo a script's earlier writes when a later command fails, so everything that
-- can fail is checked before the first write: a key of the wrong type (an operator's mistake, a
-- clash of prefixes) makes the script return a WRONGTYPE error having written nothing.
--
-- The batch is written with a fixed number of commands (one ZADD or HSET per chunk of CHUNK new
-- fans) rather than one per fan: with AOF `appendfsync always` every write command is appended
-- to the AOF, so fewer, larger commands are most of the script's cost.
local CHUNK = 500 -- keeps unpack() far below Lua's C-stack limit

local expected = {'hash', 'list', 'zset', 'string', 'hash', 'hash', 'hash', 'list', 'hash', 'hash', 'zset', 'hash',
  'hash', 'zset'}
for i = 1, 14 do
  local t = redis.call('TYPE', KEYS[i]).ok
  if t ~= 'none' and t ~= expected[i] then
    return redis.error_reply('WRONGTYPE ' .. KEYS[i] .. ' is a ' .. t .. ', not a ' .. expected[i] .. '; nothing was written')
  end
end

local lane = ARGV[2]
local users = {}
for i = 3, #ARGV, 2 do
  users[#users + 1] = ARGV[i]
end

-- Which of them are already queued: one read, chunked.
local known = {}
for first = 1, #users, CHUNK do
  local last = math.min(first + CHUNK - 1, #users)
  local got = redis.call('HMGET', KEYS[1], unpack(users, first, last))
  local staged = redis.call('ZMSCORE', KEYS[11], unpack(users, first, last))
  local other = redis.call('HMGET', KEYS[13], unpack(users, first, last))
  local general = staged
  if KEYS[14] ~= KEYS[11] then
    general = redis.call('ZMSCORE', KEYS[14], unpack(users, first, last))
  end
  for j = 1, #got do
    if got[j] or staged[j] or other[j] or general[j] then
      known[users[first + j - 1]] = true
    end
  end
end

local opens = tonumber(redis.call('HGET', KEYS[5], 'opensAt') or '')
-- Held until the cut begins (`cutAt`, cut.lua): from then on the pre-queue is frozen, and a new
-- fan is staged, placed by release.lua only once the cut is done, behind the whole pre-queue.
local cut = redis.call('HMGET', KEYS[9], 'shuffledAt', 'cutAt')
local holding = opens ~= nil and not cut[1] and not cut[2]
local released = tonumber(redis.call('HGET', KEYS[12], 'releasedTo') or '')
local appended, duplicates, late, late_fair = 0, 0, 0, 0
local hset, hold, post, stage, lanes = {}, {}, {}, {}, {}
local function flush()
  if #hset > 0 then
    redis.call('HSET', KEYS[1], unpack(hset))
  end
  if #hold > 0 then
    redis.call('HSET', KEYS[7], unpack(hold))
  end
  if #post > 0 then
    redis.call('RPUSH', KEYS[8], unpack(post))
  end
  if #stage > 0 then
    redis.call('ZADD', KEYS[11], unpack(stage))
  end
  if #lanes > 0 then
    redis.call('HSET', KEYS[13], unpack(lanes))
  end
  hset, hold, post, stage, lanes = {}, {}, {}, {}, {}
end

for i = 3, #ARGV, 2 do
  local user = ARGV[i]
  if known[user] then
    duplicates = duplicates + 1
  else
    known[user] = true
    appended = appended + 1
    if lane ~= '' then
      lanes[#lanes + 1] = user
      lanes[#lanes + 1] = lane
    end
    local joined_at = tonumber(ARGV[i + 1])
    if holding then
      hset[#hset + 1] = user
      hset[#hset + 1] = ARGV[i + 1]
      hold[#hold + 1] = user
      hold[#hold + 1] = ARGV[i + 1]
      if joined_at >= opens then
        post[#post + 1] = user
      end
    else
      if opens and joined_at < opens then
        late_fair = late_fair + 1
      end
      if released and joined_at < released then
        late = late + 1
      end
      stage[#stage + 1] = joined_at
      stage[#stage + 1] = user
    end
    if #hset + #stage >= 2 * CHUNK then
      flush()
    end
  end
end
flush()
if late_fair > 0 then
  redis.call('HINCRBY', KEYS[9], 'late', late_fair)
end
if late > 0 then
  redis.call('HINCRBY', KEYS[12], 'late', late)
end
local calls = 0
if ARGV[1] ~= '' then
  calls = redis.call('HINCRBY', KEYS[10], ARGV[1], 1)
end
return {appended, duplicates, calls, late}
