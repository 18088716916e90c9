-- The transactional outbox (docs/events.md), prepended to every script that changes a fan or
-- a concert: the change and its record in the concert's `outbox` STREAM are one atomic call,
-- so a crash after the script can lose neither. The event relay (src/events/relay.rs) turns
-- each entry into CloudEvents on the events topic and only then deletes it.
--
-- One entry per script call and kind (chunked), not one per fan: `t` the kind (`placed`,
-- `admitted`, ..., `concert.updated`), `l` the lane, `u` the userIds separated by spaces
-- (userIds never hold one), `x` one word per fan (the position placed at, the token's expiry,
-- why a session ended), or for a concert event its detail. The entry's id (Redis's time, a
-- counter) is the change's time and, with the fan's index in `u`, its stable CloudEvents id.
local function outbox(key, kind, lane, users, extra)
  local CHUNK = 1000
  for first = 1, #users, CHUNK do
    local last = math.min(first + CHUNK - 1, #users)
    local fields = {'t', kind, 'l', lane, 'u', table.concat(users, ' ', first, last)}
    if extra then
      fields[#fields + 1] = 'x'
      fields[#fields + 1] = table.concat(extra, ' ', first, last)
    end
    redis.call('XADD', key, '*', unpack(fields))
  end
end

local function outbox_concert(key, kind, lane, detail)
  redis.call('XADD', key, '*', 't', kind, 'l', lane, 'u', '', 'x', detail)
end

