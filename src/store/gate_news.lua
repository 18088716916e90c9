-- What a gateway needs to refuse ended sessions without asking Redis on each gate check: the
-- concert's revocation epoch and the sessions ended since `since`.
--
-- KEYS[1] gate HASH   KEYS[2] ended ZSET
-- ARGV[1] since (ms)
--
-- Returns {epoch, Redis's time (ms), sid, sid, …} (at most 10000 sids).
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local out = {tonumber(redis.call('HGET', KEYS[1], 'epoch') or '0'), now}
local sids = redis.call('ZRANGEBYSCORE', KEYS[2], ARGV[1], '+inf', 'LIMIT', 0, 10000)
for _, sid in ipairs(sids) do
  out[#out + 1] = sid
end
return out
