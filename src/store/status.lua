-- Reads one fan's standing without scanning the queue; optionally records that the fan polled.
--
-- KEYS[1] joined HASH   KEYS[2] rank ZSET   KEYS[3] state HASH   KEYS[4] seen HASH   KEYS[5] adm HASH
-- KEYS[6] hold HASH (a scheduled concert's pre-queue)   KEYS[7] concert HASH (opensAt)
-- KEYS[8] lanes HASH userId -> lane, for fans of a lane other than general
-- KEYS[9 + 2(i-1)], KEYS[10 + 2(i-1)]: rank and hold of the i-th lane named in ARGV[3 ..]
-- (KEYS[2] and KEYS[6] are the general lane's)
-- ARGV[1] userId
-- ARGV[2] record the poll in `seen` when the recorded one is at least this old (ms); "0": never
--         (operators' reads, and concerts without abandonment)
--
-- The poll is written only now and then: with AOF `appendfsync always` every write is an
-- fsync, so a status read should usually be read-only.
--
-- ARGV[3 ..] the concert's lanes other than general
--
-- Returns {0, lane, now} when the fan was never queued (or the record is still on its way),
-- {1, position, queueLength, joinedAt, observedRate, seq, lane, now} while waiting (position
-- from ZRANK within the fan's lane: O(log n); observedRate the lane's, in admits/s as text,
-- decayed to now; seq the fan's sequence number in its lane, which the gateways' views work
-- positions out from), {2, 0, queueLength, joinedAt, state, lane, now} after, {3, opensAt,
-- joinedAt, lane, now} in a pre-queue; `lane` is the fan's lane ("general" unless `lanes` says
-- otherwise); `now` is Redis's time (ms), which the caller judges token expiry by.
-- Time comes from Redis, not from the calling instance, so instances with skewed clocks agree.
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local lane = redis.call('HGET', KEYS[8], ARGV[1]) or 'general'
local rank_key, hold_key, sfx = KEYS[2], KEYS[6], ''
for i = 3, #ARGV do
  if ARGV[i] == lane then
    rank_key, hold_key, sfx = KEYS[9 + 2 * (i - 3)], KEYS[10 + 2 * (i - 3)], '@' .. lane
  end
end
local joined = redis.call('HGET', KEYS[1], ARGV[1])
if not joined then
  return {0, lane, now}
end
-- Held in a scheduled concert's pre-queue until the cut.
if redis.call('HEXISTS', hold_key, ARGV[1]) == 1 then
  return {3, tonumber(redis.call('HGET', KEYS[7], 'opensAt') or '0') or 0, joined, lane, now}
end
local every = tonumber(ARGV[2])
if every > 0 then
  local last = tonumber(redis.call('HGET', KEYS[4], ARGV[1]) or '0')
  if now - last >= every then
    redis.call('HSET', KEYS[4], ARGV[1], now)
  end
end
local len = redis.call('ZCARD', rank_key)
local rank = redis.call('ZRANK', rank_key, ARGV[1])
if rank then
  local r = tonumber(redis.call('HGET', KEYS[5], 'obsRate' .. sfx) or '0')
  local t = tonumber(redis.call('HGET', KEYS[5], 'obsAt' .. sfx) or now)
  local seq = redis.call('ZSCORE', rank_key, ARGV[1])
  return {1, rank + 1, len, joined, tostring(r * math.exp(-(now - t) / 30000)), tonumber(seq), lane, now}
end
return {2, 0, len, joined, redis.call('HGET', KEYS[3], ARGV[1]) or '', lane, now}
