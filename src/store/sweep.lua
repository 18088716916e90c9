-- Ends the gate sessions whose slot's deadline has passed (idle, or at their maximum), and
-- frees the slots of expired admission tokens; run by the admission rounds.
--
-- KEYS[1] active ZSET   KEYS[2] sessions HASH   KEYS[3] ended ZSET sid -> endedAt (ms)
-- KEYS[4] outbox STREAM, KEYS[5..7] the report's keys (outbox.lua): `session.ended` (idle | max), `expired` (a token never exchanged)
-- ARGV[1] how long ended sessions are remembered (ms): at least the longest session a cookie
--         can still claim
--
-- Returns {ended for idleness, ended at their maximum, more}: more is 1 when due slots or
-- ended sessions past remembering are left for the next call. One slice per call: at most
-- SLOTS_PER_CALL (slots.lua) slots freed and ENDED_PER_CALL old ended sessions forgotten.
local ENDED_PER_CALL = 2000
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local idle, maxed, more = free_slots(KEYS[1], KEYS[2], KEYS[3], 4, now) -- slots.lua
-- `ended` is scored by when each session ended, so the oldest are the lowest ranks: the first
-- min(old, ENDED_PER_CALL) ranks are all past remembering. O(log n + ENDED_PER_CALL).
local old = redis.call('ZCOUNT', KEYS[3], '-inf', now - tonumber(ARGV[1]))
if old > 0 then
  redis.call('ZREMRANGEBYRANK', KEYS[3], 0, math.min(old, ENDED_PER_CALL) - 1)
end
if more or old > ENDED_PER_CALL then
  return {idle, maxed, 1}
end
return {idle, maxed, 0}
