-- Takes or renews the lease of a concert's automatic admitter (one instance at a time).
--
-- KEYS[1] lease STRING "<instance>:<fence>"   KEYS[2] fence STRING, incremented per new holder
-- ARGV[1] instance id   ARGV[2] lease time (ms)
--
-- Returns the lease value when the caller holds it (renewed), nil when another instance does.
-- The fence grows with every new holder, so a value names one holding, and admit.lua admits
-- only for the current value: an instance that lost its lease (paused, partitioned) cannot admit.
local cur = redis.call('GET', KEYS[1])
if cur then
  if string.sub(cur, 1, #ARGV[1] + 1) == ARGV[1] .. ':' then
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
    return cur
  end
  return false
end
local value = ARGV[1] .. ':' .. redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], value, 'PX', ARGV[2])
return value
