-- Claims a webhook's due deliveries: each claimed one is pushed `visibility` ms into the
-- future, so no other instance takes it while this one delivers; a delivery whose instance
-- died is due again once that time has passed.
--
-- KEYS[1] due ZSET event id -> when to try next (ms)   KEYS[2] body HASH   KEYS[3] tries HASH
-- ARGV[1] now (ms)   ARGV[2] visibility (ms)   ARGV[3] the most to claim
--
-- Returns triples: event id, body, "<attempts so far>:<first attempt ms>" ("" before the first).
local now = tonumber(ARGV[1])
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[3]))
local out = {}
for _, id in ipairs(due) do
  redis.call('ZADD', KEYS[1], 'XX', now + tonumber(ARGV[2]), id)
  out[#out + 1] = id
  out[#out + 1] = redis.call('HGET', KEYS[2], id) or ''
  out[#out + 1] = redis.call('HGET', KEYS[3], id) or ''
end
return out
