-- Standby's direct entry (`queueingMethod: "standby"`, src/gateway/gate_check.rs): a visitor of
-- the gated site without a session gets one at once, without the room, while nobody waits, a
-- `maxActive` slot is free and `admitPerSecond` allows. One call decides and writes, so no number
-- of gateways puts more than maxActive inside, and nobody in the queue is ever passed by a
-- direct entry.
--
-- KEYS[1] concert HASH (state, queueingMethod, queueAll, maxActive, admitPerSecond: read here, so
--                 an operator's switch holds from the next call whatever a gateway's cache says)
-- KEYS[2] active ZSET   KEYS[3] sessions HASH   KEYS[4] ended ZSET   (as exchange.lua, slots.lua)
-- KEYS[5] adm HASH: the rate bucket shared with admit.lua (bucketAt, bucketCarry); `direct`
--                 counts direct entries; `standbyShutAt` the last refusal for a reason that
--                 sends visitors to the queue
-- KEYS[6] gate HASH (epoch)
-- KEYS[7] outbox STREAM, KEYS[8..10] the report's keys (outbox.lua): `session.started`, and
--                 what freeing due slots ends (`session.ended`, `expired`)
-- KEYS[11 ..] each lane's rank ZSET, hold HASH (the pre-queue) and staged ZSET (joins waiting
--                 for the watermark), in threes
--
-- Nothing is written to `state`: a visitor let straight in was never a fan of the queue, and an
-- always-on gate would add an entry per visitor for ever. The booking site completes its
-- session all the same (complete.lua ends a session that has no state).
-- ARGV[1] the visitor's new userId   ARGV[2] the new session id   ARGV[3] idle (ms)   ARGV[4] max (ms)
--
-- Returns {1, sid, startedAt, maxAt, epoch, deadline, idle, maxed} for a new session (as
-- exchange.lua, then the sessions freeing due slots ended for idleness and at their maximum), or
-- {0, why, idle, maxed}: 'closed' (not open, not standby, queueAll, or before opensAt), 'waiting' (someone is staged, queued
-- or held in any lane), 'settling' (a refusal below was less than SETTLE_MS ago: visitors it
-- sent to the room may not have reached the queue yet), 'full' (maxActive slots in use), 'rate'
-- (the admission budget is spent). Bounded work: free_slots' slice, then O(lanes + log n).
local SETTLE_MS = 5000
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local user, sid = ARGV[1], ARGV[2]
local idle, max = tonumber(ARGV[3]), tonumber(ARGV[4])

local cfg = redis.call('HMGET', KEYS[1], 'state', 'queueingMethod', 'queueAll', 'maxActive', 'admitPerSecond', 'opensAt')
if cfg[1] ~= 'open' or cfg[2] ~= 'standby' or (cfg[3] and cfg[3] ~= 'false') then
  return {0, 'closed'}
end
-- Before opensAt everyone joins the pre-queue, to be shuffled at the cut.
if cfg[6] and cfg[6] ~= '' and now < (tonumber(cfg[6]) or 0) then
  return {0, 'closed'}
end
local max_active = tonumber(cfg[4] or '0') or 0
local rate = tonumber(cfg[5] or '0') or 0

local idle_ended, maxed_ended = free_slots(KEYS[2], KEYS[3], KEYS[4], 7, now)
local shut_at = tonumber(redis.call('HGET', KEYS[5], 'standbyShutAt') or '0')

-- Written at most once a second, so refusals during a sale cost one write a second, not one each.
local function shut(why)
  if now - shut_at >= 1000 then
    redis.call('HSET', KEYS[5], 'standbyShutAt', now)
  end
  return {0, why, idle_ended, maxed_ended}
end

for k = 11, #KEYS, 3 do
  if redis.call('ZCARD', KEYS[k]) > 0 or redis.call('HLEN', KEYS[k + 1]) > 0 or redis.call('ZCARD', KEYS[k + 2]) > 0 then
    return shut('waiting')
  end
end
if now - shut_at < SETTLE_MS then
  return {0, 'settling', idle_ended, maxed_ended}
end
if max_active > 0 and redis.call('ZCARD', KEYS[2]) >= max_active then
  return shut('full')
end
if rate > 0 then
  -- A bucket never written (no admission round yet) is full: the first visitors get in.
  local at = tonumber(redis.call('HGET', KEYS[5], 'bucketAt') or (now - 1000))
  local carry = tonumber(redis.call('HGET', KEYS[5], 'bucketCarry') or '0')
  local allowance = carry + rate * (now - at) / 1000
  if allowance > rate then allowance = rate end
  if allowance < 1 then
    return shut('rate')
  end
  redis.call('HSET', KEYS[5], 'bucketAt', now, 'bucketCarry', tostring(allowance - 1))
end

local max_at = now + max
local deadline = math.min(now + idle, max_at)
redis.call('ZADD', KEYS[2], deadline, user)
redis.call('HSET', KEYS[3], user, sid .. ':' .. now .. ':' .. now .. ':' .. max_at)
redis.call('HINCRBY', KEYS[5], 'direct', 1)
outbox(7, 'session.started', '', {user}, {max_at})
local epoch = tonumber(redis.call('HGET', KEYS[6], 'epoch') or '0')
return {1, sid, now, max_at, epoch, deadline, idle_ended, maxed_ended}
