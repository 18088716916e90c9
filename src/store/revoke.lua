-- The emergency stop: ends every gate session of a concert and every admission token not yet
-- exchanged (their slots free), and refuses from now on every token issued before now.
--
-- KEYS[1] active ZSET   KEYS[2] sessions HASH   KEYS[3] ended ZSET   KEYS[4] gate HASH
-- KEYS[5] outbox STREAM, KEYS[6..8] the report's keys (outbox.lua): `session.ended` (revoked) for each session, `expired`
--         (revoked) for each token not yet exchanged
--
-- Returns {sessions ended, tokens revoked}.
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local sessions = redis.call('HGETALL', KEYS[2])
local ended, users, why, live = {}, {}, {}, {}
for i = 2, #sessions, 2 do
  ended[#ended + 1] = now
  ended[#ended + 1] = string.match(sessions[i], '^([^:]+):')
  users[#users + 1] = sessions[i - 1]
  why[#why + 1] = 'revoked'
  live[sessions[i - 1]] = true
end
local tokens, token_why = {}, {}
for _, user in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  if not live[user] then
    tokens[#tokens + 1] = user
    token_why[#token_why + 1] = 'revoked'
  end
end
outbox(5, 'session.ended', '', users, why)
outbox(5, 'expired', '', tokens, token_why)
for first = 1, #ended, 1000 do
  redis.call('ZADD', KEYS[3], unpack(ended, first, math.min(first + 999, #ended)))
end
local slots = redis.call('ZCARD', KEYS[1])
redis.call('DEL', KEYS[1], KEYS[2])
redis.call('HINCRBY', KEYS[4], 'epoch', 1)
-- Admission tokens carry whole seconds: one issued in this very second counts as before.
redis.call('HSET', KEYS[4], 'revokedAt', now - (now % 1000) + 1000)
return {#sessions / 2, slots - #sessions / 2}
