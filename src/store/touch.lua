-- A gate check of a live session: records the fan's last-seen time and moves its slot's
-- deadline on (never past the session's maximum). A gateway writes a session at most once per
-- tenth of its idle time; checks in between are written later with their age (the time since
-- the gateway's last check of it), so the deadline counts from the real last check.
--
-- KEYS[1] active ZSET   KEYS[2] sessions HASH   (see exchange.lua)
-- ARGV[1] userId  ARGV[2] sid  ARGV[3] idle (ms)  ARGV[4] age of the last check (ms, 0: now)
--
-- Returns {1, deadline} while the session lives, {0} when it has ended (idle, maximum,
-- completed, ended by an operator, revoked, or replaced by another session of the fan).
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local user, sid, idle = ARGV[1], ARGV[2], tonumber(ARGV[3])
local v = redis.call('HGET', KEYS[2], user)
if not v then
  return {0}
end
local s, started, _, max_at = string.match(v, '^([^:]+):(%d+):(%d+):(%d+)$')
if s ~= sid then
  return {0}
end
local slot = tonumber(redis.call('ZSCORE', KEYS[1], user) or '0')
if slot <= now then
  return {0}
end
local seen = now - math.max(0, tonumber(ARGV[4] or '0'))
local _, _, last = string.match(v, '^([^:]+):(%d+):(%d+):')
if seen <= tonumber(last) then
  return {1, slot}
end
local deadline = math.min(seen + idle, tonumber(max_at))
redis.call('ZADD', KEYS[1], deadline, user)
redis.call('HSET', KEYS[2], user, sid .. ':' .. started .. ':' .. seen .. ':' .. max_at)
return {1, deadline}
