-- One page of a concert's queue, in queue order, without scanning the rest of it.
--
-- KEYS[1] rank    ZSET userId -> sequence number
-- KEYS[2] joined  HASH userId -> joinedAt (ms)
-- ARGV[1] offset (0-based), ARGV[2] limit (>= 1)
--
-- Returns {total, userId1, joinedAt1, userId2, joinedAt2, ...}. Cost: O(log n + limit).
local total = redis.call('ZCARD', KEYS[1])
local users = redis.call('ZRANGE', KEYS[1], ARGV[1], tonumber(ARGV[1]) + tonumber(ARGV[2]) - 1)
local out = {total}
if #users > 0 then
  local at = redis.call('HMGET', KEYS[2], unpack(users))
  for i = 1, #users do
    out[#out + 1] = users[i]
    out[#out + 1] = at[i] or '0'
  end
end
return out
