-- Lets a fan into a lane that asks for a code: binds the code to the first fan who joins with
-- it; only that fan may use it again.
--
-- KEYS[1] codes HASH  hex SHA-256 of a code -> the userId it is bound to ("" while unbound)
-- KEYS[2] lanes HASH  userId -> the lane the fan holds its place in (apply.lua)
-- KEYS[3] adm   HASH  `codesBound@<lane>`: how many of the lane's codes are bound
-- KEYS[4] joined HASH userId -> joinedAt: fans placed (in any lane; general's are not in lanes)
-- ARGV[1] userId  ARGV[2] the lane  ARGV[3] the code's hash ("" when the join named no code)
--
-- Returns 'ok' (bound now, or already this fan's; or no code, but the fan already holds its
-- place in this lane: a rejoin), 'elsewhere' (the fan already holds a place in another lane:
-- the join changes nothing, so no code is spent on it), 'required' (no code), 'unknown' (no
-- such code), or 'used' (bound to another fan). Atomic, so two gateways racing for one code
-- bind it once.
local lane = redis.call('HGET', KEYS[2], ARGV[1])
if lane == ARGV[2] then
  return 'ok'
end
if lane or redis.call('HEXISTS', KEYS[4], ARGV[1]) == 1 then
  return 'elsewhere'
end
if ARGV[3] == '' then
  return 'required'
end
local owner = redis.call('HGET', KEYS[1], ARGV[3])
if not owner then
  return 'unknown'
end
if owner == ARGV[1] then
  return 'ok'
end
if owner ~= '' then
  return 'used'
end
redis.call('HSET', KEYS[1], ARGV[3], ARGV[1])
redis.call('HINCRBY', KEYS[3], 'codesBound@' .. ARGV[2], 1)
return 'ok'
