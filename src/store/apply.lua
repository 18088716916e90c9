-- Applies one consumer batch of joins for one concert, atomically and idempotently.
--
-- KEYS[1] joined   HASH  userId -> joinedAt (ms); presence means "has ever been queued" (dedup)
-- KEYS[2] waiting  LIST  userIds in queue order (the concert's waiting list)
-- KEYS[3] rank     ZSET  userId -> sequence number; ZRANK gives the exact position in O(log n)
-- KEYS[4] seq      STRING the concert's last sequence number
-- ARGV    pairs of userId, joinedAt (ms), in the order the consumer read them
--
-- Returns {appended, duplicates}. A user already in `joined` (or earlier in this batch) is
-- skipped, so applying the same records twice (a redelivery after a crash, a repeated join)
-- leaves one entry.
--
-- The batch is written with a fixed number of commands (one HSET, RPUSH, ZADD and SET per
-- chunk of CHUNK new fans) rather than four per fan: with AOF `appendfsync always` every write
-- command is appended to the AOF, so fewer, larger commands are most of the script's cost.
local CHUNK = 500 -- keeps unpack() far below Lua's C-stack limit

local users = {}
for i = 1, #ARGV, 2 do
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
local appended, duplicates = 0, 0
local hset, list, zadd = {}, {}, {}
local function flush()
  if #list > 0 then
    redis.call('HSET', KEYS[1], unpack(hset))
    redis.call('RPUSH', KEYS[2], unpack(list))
    redis.call('ZADD', KEYS[3], unpack(zadd))
    hset, list, zadd = {}, {}, {}
  end
end

for i = 1, #ARGV, 2 do
  local user = ARGV[i]
  if known[user] then
    duplicates = duplicates + 1
  else
    known[user] = true
    seq = seq + 1
    appended = appended + 1
    hset[#hset + 1] = user
    hset[#hset + 1] = ARGV[i + 1]
    list[#list + 1] = user
    zadd[#zadd + 1] = seq
    zadd[#zadd + 1] = user
    if #list >= CHUNK then
      flush()
    end
  end
end
flush()
if appended > 0 then
  redis.call('SET', KEYS[4], seq)
end
return {appended, duplicates}
