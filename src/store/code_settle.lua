-- Settles a code held for a join (code_bind.lua) once the join's fate is known: binds it to the
-- fan for good once Kafka acknowledged the join, or frees it when Kafka did not take it, so the
-- fan's retry (in anonymous mode: under a new id) can use it.
--
-- KEYS[1] codes HASH  keyed hash -> "" | "<userId>" | "<userId>@<untilMs>" (see code_bind.lua)
-- KEYS[2] adm   HASH  `codesBound@<lane>`: how many of the lane's codes are bound
-- ARGV[1] the code's keyed hash  ARGV[2] userId  ARGV[3] the lane  ARGV[4] 'bind' or 'free'
--
-- Returns 'bound' (bound to the fan now, or already: an earlier join of the fan was durable, and
-- stays so), 'freed' (or free already), or 'lost' (another fan holds or owns the code: its hold
-- lapsed and was taken; nothing is written).
-- Cost: O(1).
local owner = redis.call('HGET', KEYS[1], ARGV[1])
if owner == ARGV[2] then
  return 'bound'
end
local held = owner ~= false and string.match(owner, '^(.*)@%d+$') == ARGV[2]
if ARGV[4] == 'free' then
  if held then
    redis.call('HSET', KEYS[1], ARGV[1], '')
  end
  return (held or owner == '') and 'freed' or 'lost'
end
-- Free: the hold lapsed, or a concurrent join of the same fan freed it; the join is durable,
-- so the code is this fan's.
if held or owner == '' then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
  redis.call('HINCRBY', KEYS[2], 'codesBound@' .. ARGV[3], 1)
  return 'bound'
end
return 'lost'
