-- Queues deliveries for one webhook endpoint, within its caps, in one atomic call: however many
-- events workers queue at once, the endpoint never holds more than the caps (docs/howto-events.md,
-- "Caps, give-up and suspension"). The caller sends at most 250 deliveries per call, so each
-- call does bounded work whatever the backlog.
--
-- KEYS[1] due ZSET event id -> when to try next (ms)   KEYS[2] body HASH event id -> body
-- KEYS[3] queued ZSET event id -> when it was queued (ms)
-- KEYS[4] state HASH: bytes (the pending bodies' bytes), suspended (ms), dropped_full,
--         dropped_suspended, since, failures
-- ARGV[1] now (ms)   ARGV[2] most deliveries pending   ARGV[3] most bytes of bodies pending
-- ARGV[4], ARGV[5], ...: event id, body (pairs)
--
-- A delivery already queued keeps its schedule (a batch read again after a crash). Anything else
-- is queued, or dropped: `suspended` while the endpoint is suspended, `full` when it would take
-- the endpoint past either cap (the newest are dropped, never the queued ones).
-- Returns {queued, dropped full, dropped suspended}.
local now = tonumber(ARGV[1])
local max_n, max_bytes = tonumber(ARGV[2]), tonumber(ARGV[3])
local suspended = redis.call('HEXISTS', KEYS[4], 'suspended') == 1
local n = redis.call('ZCARD', KEYS[1])
local bytes = tonumber(redis.call('HGET', KEYS[4], 'bytes')) or 0
local queued, full, dropped_suspended = 0, 0, 0
for i = 4, #ARGV - 1, 2 do
  local id, body = ARGV[i], ARGV[i + 1]
  if redis.call('ZSCORE', KEYS[1], id) then
    -- already queued
  elseif suspended then
    dropped_suspended = dropped_suspended + 1
  elseif n >= max_n or bytes + #body > max_bytes then
    full = full + 1
  else
    redis.call('HSET', KEYS[2], id, body)
    redis.call('ZADD', KEYS[1], now, id)
    redis.call('ZADD', KEYS[3], now, id)
    n = n + 1
    bytes = bytes + #body
    queued = queued + 1
  end
end
if queued > 0 then
  redis.call('HSET', KEYS[4], 'bytes', bytes)
end
if full > 0 then
  redis.call('HINCRBY', KEYS[4], 'dropped_full', full)
end
if dropped_suspended > 0 then
  redis.call('HINCRBY', KEYS[4], 'dropped_suspended', dropped_suspended)
end
return {queued, full, dropped_suspended}
