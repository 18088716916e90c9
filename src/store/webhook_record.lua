-- Records a batch of one webhook endpoint's delivery attempts in one atomic call: what is over
-- (delivered, or given up) leaves the queue and its bytes the count, a failed one is due again
-- at its retry time, each goes to the endpoint's log; then the endpoint's failing streak:
-- any success ends it; a batch of failures starts it or lengthens it, and an endpoint whose
-- attempts have all failed for ARGV[2] ms and at least ARGV[3] times in a row is suspended
-- (docs/howto-events.md, "Caps, give-up and suspension"). A batch is at most 32 attempts plus what
-- one claim gave up (bounded by the claim's count).
--
-- KEYS[1] due ZSET   KEYS[2] body HASH   KEYS[3] tries HASH   KEYS[4] queued ZSET
-- KEYS[5] state HASH (see webhook_enqueue.lua)   KEYS[6] log LIST
-- ARGV[1] now (ms)   ARGV[2] suspend after (ms; 0: never)   ARGV[3] fewest failures in a row
-- ARGV[4] log entries kept
-- ARGV[5], ...: groups of five: event id, kind, next try (ms), tries, log entry (JSON), where
-- kind is `d` delivered, `f` failed (due again at the next try, tries "<attempts>:<first ms>"),
-- `g` failed and given up, `x` given up without an attempt (already removed by the claim).
--
-- Returns 1 when this call suspended the endpoint, else 0.
local now = tonumber(ARGV[1])
local bytes = tonumber(redis.call('HGET', KEYS[5], 'bytes')) or 0
local removed = false
local ok, failed = 0, 0
for i = 5, #ARGV - 4, 5 do
  local id, kind = ARGV[i], ARGV[i + 1]
  local pending = redis.call('ZSCORE', KEYS[1], id)
  if kind == 'f' then
    failed = failed + 1
    -- Not when it is gone meanwhile (delivered by another instance, given up, forgotten).
    if pending then
      redis.call('ZADD', KEYS[1], 'XX', ARGV[i + 2], id)
      redis.call('HSET', KEYS[3], id, ARGV[i + 3])
    end
  elseif kind == 'd' or kind == 'g' then
    if kind == 'd' then ok = ok + 1 else failed = failed + 1 end
    if pending then
      bytes = bytes - redis.call('HSTRLEN', KEYS[2], id)
      redis.call('ZREM', KEYS[1], id)
      redis.call('HDEL', KEYS[2], id)
      redis.call('HDEL', KEYS[3], id)
      redis.call('ZREM', KEYS[4], id)
      removed = true
    end
  end
  redis.call('LPUSH', KEYS[6], ARGV[i + 4])
end
redis.call('LTRIM', KEYS[6], 0, tonumber(ARGV[4]) - 1)
if removed then
  if bytes < 0 then bytes = 0 end
  redis.call('HSET', KEYS[5], 'bytes', bytes)
end

if ok > 0 then
  redis.call('HDEL', KEYS[5], 'since', 'failures')
elseif failed > 0 then
  redis.call('HSETNX', KEYS[5], 'since', now)
  local failures = redis.call('HINCRBY', KEYS[5], 'failures', failed)
  local since = tonumber(redis.call('HGET', KEYS[5], 'since'))
  local after = tonumber(ARGV[2])
  if after > 0 and failures >= tonumber(ARGV[3]) and now - since >= after
      and redis.call('HSETNX', KEYS[5], 'suspended', now) == 1 then
    return 1
  end
end
return 0
