-- Adds a batch of a lane's codes, each stored as its keyed hash (HMAC-SHA256 under a key derived
-- from QUEUEGATE_TOKEN_SECRET; the codes themselves are never stored), free ("") until a fan
-- joins with it.
--
-- KEYS[1] codes HASH  keyed hash -> "" | "<userId>" | "<userId>@<untilMs>" (code_bind.lua)
-- ARGV    pairs: the keyed hash of a code, then its unkeyed SHA-256 (how codes were stored
--         before keyed hashes)
--
-- A code already uploaded keeps its binding (HSETNX), also one stored unkeyed by an earlier
-- release (code_bind.lua moves it to its keyed hash at its next use), so uploading the same
-- file twice binds nobody anew and frees nobody's code. Returns how many codes were new.
-- Cost: O(#ARGV); the caller sends at most 1,000 codes a call.
local t = redis.call('TYPE', KEYS[1]).ok
if t ~= 'none' and t ~= 'hash' then
  return redis.error_reply('WRONGTYPE ' .. KEYS[1] .. ' is a ' .. t .. ', not a hash; nothing was written')
end
local added = 0
for i = 1, #ARGV, 2 do
  if redis.call('HEXISTS', KEYS[1], ARGV[i + 1]) == 0 then
    added = added + redis.call('HSETNX', KEYS[1], ARGV[i], '')
  end
end
return added
