-- One look at a webhook endpoint's queue by its delivery task, touching at most 2 * ARGV[3]
-- deliveries whatever the backlog:
-- 1. deliveries queued ARGV[4] ms ago or earlier are given up and removed, attempted or not
--    (the give-up window counts from when the event was queued, so deliveries of a suspended
--    or never-reached endpoint expire too);
-- 2. unless the endpoint is suspended, due deliveries are claimed: each is pushed `visibility`
--    ms into the future, so no other instance takes it while this one delivers; a delivery
--    whose instance died is due again once that time has passed; a due one past its give-up
--    window (when step 1 could not take them all) is given up instead, never sent.
--
-- KEYS[1] due ZSET event id -> when to try next (ms)   KEYS[2] body HASH   KEYS[3] tries HASH
-- KEYS[4] queued ZSET event id -> when it was queued (ms)   KEYS[5] state HASH (see webhook_enqueue.lua)
-- ARGV[1] now (ms)   ARGV[2] visibility (ms)   ARGV[3] the most to claim (and to give up)
-- ARGV[4] the give-up window (ms)
--
-- Returns a flat list: when the endpoint was suspended (ms, "" when it is not), deliveries
-- pending, their bodies' bytes, the number g of deliveries given up, then g pairs (event id,
-- tries), then one quadruple per delivery claimed (event id, body, tries, when it was queued
-- (ms)), where tries is "<attempts so far>:<first attempt ms>" ("" before the first).
local now = tonumber(ARGV[1])
local most = tonumber(ARGV[3])
local oldest = now - tonumber(ARGV[4])
local bytes = tonumber(redis.call('HGET', KEYS[5], 'bytes')) or 0
local gone, claimed = {}, {}

local function give_up(id)
  bytes = bytes - redis.call('HSTRLEN', KEYS[2], id)
  gone[#gone + 1] = id
  gone[#gone + 1] = redis.call('HGET', KEYS[3], id) or ''
  redis.call('ZREM', KEYS[1], id)
  redis.call('HDEL', KEYS[2], id)
  redis.call('HDEL', KEYS[3], id)
  redis.call('ZREM', KEYS[4], id)
end

for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[4], '-inf', oldest, 'LIMIT', 0, most)) do
  give_up(id)
end

local suspended = redis.call('HGET', KEYS[5], 'suspended') or ''
if suspended == '' then
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, most)) do
    local q = redis.call('ZSCORE', KEYS[4], id)
    if not q then
      -- Queued before queued times were kept: its window starts now.
      redis.call('ZADD', KEYS[4], now, id)
      q = now
    end
    if tonumber(q) <= oldest then
      -- Past its window too (more of them than the step above takes in one call).
      give_up(id)
    else
      redis.call('ZADD', KEYS[1], 'XX', now + tonumber(ARGV[2]), id)
      claimed[#claimed + 1] = id
      claimed[#claimed + 1] = redis.call('HGET', KEYS[2], id) or ''
      claimed[#claimed + 1] = redis.call('HGET', KEYS[3], id) or ''
      claimed[#claimed + 1] = tostring(q)
    end
  end
end

-- Deliveries queued before the counter existed were never counted: it stops at 0.
if bytes < 0 then bytes = 0 end
if #gone > 0 then
  redis.call('HSET', KEYS[5], 'bytes', bytes)
end
local out = {suspended, tostring(redis.call('ZCARD', KEYS[1])), tostring(bytes), tostring(#gone / 2)}
for _, v in ipairs(gone) do out[#out + 1] = v end
for _, v in ipairs(claimed) do out[#out + 1] = v end
return out
