-- Freeing the slots whose time has passed, shared by sweep.lua and admit.lua (prepended to
-- both, after outbox.lua): a slot past its deadline that held a gate session ends that session
-- (idle, or at its maximum); one that held an admission token never exchanged frees itself and
-- the token has expired. Each change goes to the outbox in the same call.
--
-- Bounded work per call (DESIGN.md, "At stadium scale"): at most SLOTS_PER_CALL due slots are
-- freed, and every command takes at most SLOTS_CHUNK of them, far below what Lua's unpack()
-- accepts (~8,000 values: a backlog of 10,000 due slots unpacked at once wedged the concert's
-- sweep and admission for good, issue 35). A bigger backlog is freed by the next calls:
-- sessions.rs's sweep calls again while `more` says some are still due.
local SLOTS_PER_CALL = 500
local SLOTS_CHUNK = 500

-- free_slots(active ZSET, sessions HASH, ended ZSET, k the outbox's index in KEYS, now ms)
-- frees at most SLOTS_PER_CALL slots and returns (sessions ended for idleness, sessions ended
-- at their maximum, whether slots are still due).
local function free_slots(active, sessions, ended_key, outbox_k, now)
  local idle, maxed = 0, 0
  local due = redis.call('ZRANGEBYSCORE', active, '-inf', now, 'LIMIT', 0, SLOTS_PER_CALL)
  if #due == 0 then
    return idle, maxed, false
  end
  local gone, ended, why, expired = {}, {}, {}, {}
  for first = 1, #due, SLOTS_CHUNK do
    local last = math.min(first + SLOTS_CHUNK - 1, #due)
    local held = redis.call('HMGET', sessions, unpack(due, first, last))
    for i = first, last do
      local user, h = due[i], held[i - first + 1]
      local sid, max_at
      if h then
        sid, max_at = string.match(h, '^([^:]+):%d+:%d+:(%d+)$')
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
  end
  for first = 1, #gone, 2 * SLOTS_CHUNK do
    redis.call('ZADD', ended_key, unpack(gone, first, math.min(first + 2 * SLOTS_CHUNK - 1, #gone)))
  end
  outbox(outbox_k, 'session.ended', '', ended, why)
  outbox(outbox_k, 'expired', '', expired)
  for first = 1, #due, SLOTS_CHUNK do
    local last = math.min(first + SLOTS_CHUNK - 1, #due)
    redis.call('HDEL', sessions, unpack(due, first, last))
    redis.call('ZREM', active, unpack(due, first, last))
  end
  local more = #due == SLOTS_PER_CALL
    and #redis.call('ZRANGEBYSCORE', active, '-inf', now, 'LIMIT', 0, 1) > 0
  return idle, maxed, more
end
