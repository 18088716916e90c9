-- The emergency stop, first step: every token issued before now is refused and every gateway
-- refuses every session of an earlier epoch from its next look (within a second), in O(1);
-- the live sessions and unexchanged tokens are set aside whole (two RENAMEs), so the concert's
-- slots are free at once, and revoke_slice.lua ends them in bounded slices.
--
-- KEYS[1] active ZSET   KEYS[2] sessions HASH   KEYS[3] gate HASH
-- KEYS[4] revoking ZSET (the set-aside slots)   KEYS[5] revoking sessions HASH
--
-- Returns 1 when set aside, 0 when an earlier revocation is still being ended (the caller ends
-- it with revoke_slice.lua, then calls again: the epoch moves on again, harmlessly).
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
redis.call('HINCRBY', KEYS[3], 'epoch', 1)
-- Admission tokens carry whole seconds: one issued in this very second counts as before.
redis.call('HSET', KEYS[3], 'revokedAt', now - (now % 1000) + 1000)
if redis.call('EXISTS', KEYS[4]) == 1 then
  return 0
end
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('RENAME', KEYS[1], KEYS[4])
end
if redis.call('EXISTS', KEYS[2]) == 1 then
  if redis.call('EXISTS', KEYS[4]) == 1 then
    redis.call('RENAME', KEYS[2], KEYS[5])
  else
    redis.call('UNLINK', KEYS[2])
  end
end
return 1
