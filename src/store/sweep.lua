-- Ends the gate sessions whose slot's deadline has passed (idle, or at their maximum), and
-- frees the slots of expired admission tokens; run by the admission rounds.
--
-- KEYS[1] active ZSET   KEYS[2] sessions HASH   KEYS[3] ended ZSET sid -> endedAt (ms)
-- KEYS[4] outbox STREAM (outbox.lua): `session.ended` (idle | max), `expired` (a token never exchanged)
-- ARGV[1] how long ended sessions are remembered (ms): at least the longest session a cookie
--         can still claim
--
-- Returns {ended for idleness, ended at their maximum}. At most 10000 slots per call.
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, 10000)
local idle, maxed = 0, 0
local ended, why, expired = {}, {}, {}
for _, user in ipairs(due) do
  local v = redis.call('HGET', KEYS[2], user)
  if v then
    local sid, _, _, max_at = string.match(v, '^([^:]+):(%d+):(%d+):(%d+)$')
    if tonumber(max_at) <= now then
      maxed = maxed + 1
      why[#why + 1] = 'max'
    else
      idle = idle + 1
      why[#why + 1] = 'idle'
    end
    ended[#ended + 1] = user
    redis.call('ZADD', KEYS[3], now, sid)
    redis.call('HDEL', KEYS[2], user)
  else
    expired[#expired + 1] = user
  end
  redis.call('ZREM', KEYS[1], user)
end
outbox(KEYS[4], 'session.ended', '', ended, why)
outbox(KEYS[4], 'expired', '', expired)
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now - tonumber(ARGV[1]))
return {idle, maxed}
