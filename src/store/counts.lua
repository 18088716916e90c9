-- A concert's counts in O(log n): waiting, admitted so far, active slots.
--
-- KEYS[1] rank ZSET  KEYS[2] adm HASH  KEYS[3] active ZSET
-- ARGV[1] now (ms)
-- Returns {waiting, admitted, active, skipped, removed}.
return {
  redis.call('ZCARD', KEYS[1]),
  tonumber(redis.call('HGET', KEYS[2], 'admitted') or '0'),
  redis.call('ZCOUNT', KEYS[3], '(' .. ARGV[1], '+inf'),
  tonumber(redis.call('HGET', KEYS[2], 'skipped') or '0'),
  tonumber(redis.call('HGET', KEYS[2], 'removed') or '0'),
}
