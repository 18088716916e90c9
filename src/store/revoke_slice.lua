-- The emergency stop, the slices after revoke.lua: ends at most 1,000 of the set-aside slots a
-- call, in commands of at most 500: a slot that held a gate session ends it (`session.ended`,
-- revoked, and into `ended` so gateways learn of it), one that held an admission token never
-- exchanged revokes it (`expired`, revoked).
--
-- KEYS[1] revoking ZSET   KEYS[2] revoking sessions HASH   KEYS[3] ended ZSET
-- KEYS[4] outbox STREAM, KEYS[5..7] the report's keys (outbox.lua)
--
-- Returns {sessions ended, tokens revoked, 1 when slots are still set aside else 0}.
local PER_CALL, CHUNK = 1000, 500
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local sessions, tokens = 0, 0
for _ = 1, PER_CALL / CHUNK do
  local popped = redis.call('ZPOPMIN', KEYS[1], CHUNK)
  if #popped == 0 then
    break
  end
  local users = {}
  for i = 1, #popped, 2 do
    users[#users + 1] = popped[i]
  end
  local held = redis.call('HMGET', KEYS[2], unpack(users))
  local ended, ended_users, ended_why, revoked, revoked_why = {}, {}, {}, {}, {}
  for i, user in ipairs(users) do
    local sid = held[i] and string.match(held[i], '^([^:]+):')
    if sid then
      ended[#ended + 1] = now
      ended[#ended + 1] = sid
      ended_users[#ended_users + 1] = user
      ended_why[#ended_why + 1] = 'revoked'
    else
      revoked[#revoked + 1] = user
      revoked_why[#revoked_why + 1] = 'revoked'
    end
  end
  outbox(4, 'session.ended', '', ended_users, ended_why)
  outbox(4, 'expired', '', revoked, revoked_why)
  if #ended > 0 then
    redis.call('ZADD', KEYS[3], unpack(ended))
    redis.call('HDEL', KEYS[2], unpack(ended_users))
  end
  sessions, tokens = sessions + #ended_users, tokens + #revoked
end
local more = redis.call('EXISTS', KEYS[1])
if more == 0 then
  -- Sessions without a slot cannot be (every session holds one); whatever is left goes.
  redis.call('UNLINK', KEYS[2])
end
return {sessions, tokens, more}
