-- Exchanges an admission token for a gate session, once.
--
-- KEYS[1] state   HASH userId -> "a:<iat>:<exp>" (admitted) | "c:…" (completed) | …
-- KEYS[2] active  ZSET userId -> when the slot frees itself (ms): an unexchanged token's expiry,
--                      a session's idle or maximum deadline, whichever comes first
-- KEYS[3] sessions HASH userId -> "<sid>:<startedAt>:<lastSeen>:<maxAt>"
-- KEYS[4] spent   ZSET jti -> token expiry (ms)
-- KEYS[5] gate    HASH epoch, revokedAt
-- ARGV[1] userId  ARGV[2] jti  ARGV[3] token iat (ms)  ARGV[4] token exp (ms)
-- KEYS[6] outbox STREAM, KEYS[7..9] the report's keys (outbox.lua): `session.started` (with the session's maximum end, ms)
-- ARGV[5] idle (ms)  ARGV[6] max (ms)  ARGV[7] new session id
--
-- Returns {1, sid, startedAt, maxAt, epoch, deadline} for a new session, or {0, why} with why one
-- of 'revoked' (issued before the concert's last revocation), 'spent' (exchanged before),
-- 'completed', 'not-admitted', 'ended' (its slot is gone: expired, or ended by an operator).
-- Time is Redis's.
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local user, jti = ARGV[1], ARGV[2]
local iat, exp = tonumber(ARGV[3]), tonumber(ARGV[4])
local idle, max = tonumber(ARGV[5]), tonumber(ARGV[6])

local revoked_at = tonumber(redis.call('HGET', KEYS[5], 'revokedAt') or '0')
if iat < revoked_at then
  return {0, 'revoked'}
end
redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', now)
if redis.call('ZSCORE', KEYS[4], jti) or redis.call('HEXISTS', KEYS[3], user) == 1 then
  return {0, 'spent'}
end
local state = redis.call('HGET', KEYS[1], user) or ''
local kind = string.sub(state, 1, 1)
if kind == 'c' then
  return {0, 'completed'}
end
if kind ~= 'a' then
  return {0, 'not-admitted'}
end
local slot = tonumber(redis.call('ZSCORE', KEYS[2], user) or '0')
if slot <= now then
  return {0, 'ended'}
end
local max_at = now + max
local deadline = math.min(now + idle, max_at)
local sid = ARGV[7]
redis.call('ZADD', KEYS[2], deadline, user)
redis.call('HSET', KEYS[3], user, sid .. ':' .. now .. ':' .. now .. ':' .. max_at)
redis.call('ZADD', KEYS[4], exp, jti)
outbox(6, 'session.started', '', {user}, {max_at})
local epoch = tonumber(redis.call('HGET', KEYS[5], 'epoch') or '0')
return {1, sid, now, max_at, epoch, deadline}
