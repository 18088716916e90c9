-- Freeing the slots whose time has passed, shared by sweep.lua and admit.lua (prepended to
-- both, after outbox.lua): a slot past its deadline that held a gate session ends that session
-- (idle, or at its maximum); one that held an admission token never exchanged frees itself and
-- the token has expired. Each change goes to the outbox in the same call.
--
-- free_slots(active ZSET, sessions HASH, ended ZSET, k the outbox's index in KEYS, now ms) looks at most 10000
-- slots and returns (sessions ended for idleness, sessions ended at their maximum).
local function free_slots(active, sessions, ended_key, outbox_k, now)
  local idle, maxed = 0, 0
  local due = redis.call('ZRANGEBYSCORE', active, '-inf', now, 'LIMIT', 0, 10000)
  if #due == 0 then
    return idle, maxed
  end
  local held = redis.call('HMGET', sessions, unpack(due))
  local gone, ended, why, expired = {}, {}, {}, {}
  for i, user in ipairs(due) do
    local sid, max_at
    if held[i] then
      sid, max_at = string.match(held[i], '^([^:]+):%d+:%d+:(%d+)$')
    end
    if sid then
      if tonumber(max_at) <= now then
        maxed = maxed + 1
        why[#why + 1] = 'max'
      else
        idle = idle + 1
        why[#why + 1] = 'idle'
      end
      gone[#gone + 1] = now
      gone[#gone + 1] = sid
      ended[#ended + 1] = user
    else
      expired[#expired + 1] = user
    end
  end
  if #gone > 0 then
    redis.call('ZADD', ended_key, unpack(gone))
  end
  outbox(outbox_k, 'session.ended', '', ended, why)
  outbox(outbox_k, 'expired', '', expired)
  redis.call('HDEL', sessions, unpack(due))
  redis.call('ZREM', active, unpack(due))
  return idle, maxed
end

