-- Adds a batch of a lane's codes, each stored as the hex SHA-256 of the code (the codes
-- themselves are never stored), unbound ("") until a fan joins with it.
--
-- KEYS[1] codes HASH  hash -> userId bound to it ("" while unbound)
-- ARGV    the hashes
--
-- A code already uploaded keeps its binding (HSETNX), so uploading the same file twice binds
-- nobody anew and frees nobody's code. Returns how many of the hashes were new.
local t = redis.call('TYPE', KEYS[1]).ok
if t ~= 'none' and t ~= 'hash' then
  return redis.error_reply('WRONGTYPE ' .. KEYS[1] .. ' is a ' .. t .. ', not a hash; nothing was written')
end
local added = 0
for i = 1, #ARGV do
  added = added + redis.call('HSETNX', KEYS[1], ARGV[i], '')
end
return added
