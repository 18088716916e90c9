-- Lets a fan into a lane that asks for a code: holds the code for the first fan who joins with
-- it while that join is made durable (code_settle.lua then binds it for good, or frees it when
-- Kafka did not take the join); only that fan may use it again. Wrong codes spend failure
-- budgets of the client address and of the lane, shared by every gateway.
--
-- KEYS[1] codes  HASH   keyed hash of a code -> "" (free), "<userId>" (bound), or
--                       "<userId>@<untilMs>" (held for that fan's join in flight until untilMs)
-- KEYS[2] lanes  HASH   userId -> the lane the fan holds its place in (apply.lua)
-- KEYS[3] joined HASH   userId -> joinedAt: fans placed (in any lane; general's are not in lanes)
-- KEYS[4] failures of this client address in this concert  STRING counter, expires with its window
-- KEYS[5] failures of this lane                            STRING counter, expires with its window
-- ARGV[1] userId  ARGV[2] the lane  ARGV[3] the code's keyed hash ("" when the join named no code)
-- ARGV[4] the code's unkeyed SHA-256 (how codes were stored before keyed hashes; "" for none)
-- ARGV[5] now (ms)  ARGV[6] how long a hold lasts (ms)  ARGV[7] the client's budget (0: none)
-- ARGV[8] the lane's budget (0: none)  ARGV[9] the budgets' window (ms)
--
-- Returns {answer, ms}: 'ok' (bound to this fan already; or no code, but the fan already holds
-- its place in this lane: a rejoin), 'held' (held for this fan now: settle it), 'elsewhere'
-- (the fan holds a place in another lane: the join changes nothing, no code is spent),
-- 'required' (no code), 'refused' (no such code, or another fan's: one answer for both, so a
-- guess learns nothing), 'limited' (a budget is spent: ms until it refills). Atomic, so two
-- gateways racing for one code hold it once.
--
-- Cost: O(1). Every read (and so every WRONGTYPE) comes before the first write.
local lane = redis.call('HGET', KEYS[2], ARGV[1])
if lane == ARGV[2] then
  return {'ok', 0}
end
if lane or redis.call('HEXISTS', KEYS[3], ARGV[1]) == 1 then
  return {'elsewhere', 0}
end
if ARGV[3] == '' then
  return {'required', 0}
end
local budgets = {{KEYS[4], tonumber(ARGV[7])}, {KEYS[5], tonumber(ARGV[8])}}
for _, b in ipairs(budgets) do
  if b[2] > 0 and tonumber(redis.call('GET', b[1]) or '0') >= b[2] then
    return {'limited', math.max(redis.call('PTTL', b[1]), 1)}
  end
end
local key = ARGV[3]
local owner = redis.call('HGET', KEYS[1], key)
local legacy = false
if not owner and ARGV[4] ~= '' then
  owner = redis.call('HGET', KEYS[1], ARGV[4])
  legacy = owner ~= false
end
local now, user = tonumber(ARGV[5]), ARGV[1]
local taken = false
if owner and owner ~= '' and owner ~= user then
  local holder, untilMs = string.match(owner, '^(.*)@(%d+)$')
  taken = holder ~= user and (holder == nil or tonumber(untilMs) > now)
end
if not owner or taken then
  for _, b in ipairs(budgets) do
    -- A counter without an expiry (its first PEXPIRE lost) would never refill: give it one.
    if b[2] > 0 and (redis.call('INCR', b[1]) == 1 or redis.call('PTTL', b[1]) < 0) then
      redis.call('PEXPIRE', b[1], ARGV[9])
    end
  end
  return {'refused', 0}
end
if legacy then
  -- A code stored before keyed hashes: it moves to its keyed hash, binding and all.
  redis.call('HDEL', KEYS[1], ARGV[4])
  redis.call('HSET', KEYS[1], key, owner)
end
if owner == user then
  return {'ok', 0}
end
redis.call('HSET', KEYS[1], key, user .. '@' .. (now + tonumber(ARGV[6])))
return {'held', 0}
