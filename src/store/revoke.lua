-- The emergency stop: ends every gate session of a concert and every admission token not yet
-- exchanged (their slots free), and refuses from now on every token issued before now.
--
-- KEYS[1] active ZSET   KEYS[2] sessions HASH   KEYS[3] ended ZSET   KEYS[4] gate HASH
--
-- Returns {sessions ended, tokens revoked}.
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local sessions = redis.call('HGETALL', KEYS[2])
local ended = {}
for i = 2, #sessions, 2 do
  ended[#ended + 1] = now
  ended[#ended + 1] = string.match(sessions[i], '^([^:]+):')
end
for first = 1, #ended, 1000 do
  redis.call('ZADD', KEYS[3], unpack(ended, first, math.min(first + 999, #ended)))
end
local slots = redis.call('ZCARD', KEYS[1])
redis.call('DEL', KEYS[1], KEYS[2])
redis.call('HINCRBY', KEYS[4], 'epoch', 1)
-- Admission tokens carry whole seconds: one issued in this very second counts as before.
redis.call('HSET', KEYS[4], 'revokedAt', now - (now % 1000) + 1000)
return {#sessions / 2, slots - #sessions / 2}
