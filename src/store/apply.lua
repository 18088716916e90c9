-- Applies one consumer batch of joins for one concert, atomically and idempotently.
--
-- KEYS[1] joined   HASH  userId -> joinedAt (ms); presence means "has ever been queued" (dedup)
-- KEYS[2] waiting  LIST  userIds in queue order (the concert's waiting list)
-- KEYS[3] rank     ZSET  userId -> sequence number; ZRANK gives the exact position in O(log n)
-- KEYS[4] seq      STRING the concert's last sequence number
-- ARGV    pairs of userId, joinedAt (ms), in the order the consumer read them
--
-- Returns {appended, duplicates}. A user already in `joined` is skipped, so applying the same
-- records twice (a redelivery after a crash, a repeated join) leaves one entry.
local appended, duplicates = 0, 0
for i = 1, #ARGV, 2 do
  local user = ARGV[i]
  if redis.call('HSETNX', KEYS[1], user, ARGV[i + 1]) == 1 then
    local seq = redis.call('INCR', KEYS[4])
    redis.call('RPUSH', KEYS[2], user)
    redis.call('ZADD', KEYS[3], seq, user)
    appended = appended + 1
  else
    duplicates = duplicates + 1
  end
end
return {appended, duplicates}
