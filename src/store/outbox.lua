-- The transactional outbox (docs/events.md), prepended to every script that changes a fan or
-- a concert: the change and its record in the concert's `outbox` STREAM are one atomic call,
-- so a crash after the script can lose neither. The event relay (src/events/relay.rs) turns
-- each entry into CloudEvents on the events topic and only then deletes it.
--
-- One entry per script call and kind (chunked), not one per fan: `t` the kind (`placed`,
-- `admitted`, ..., `concert.updated`), `l` the lane, `u` the userIds separated by spaces
-- (userIds never hold one), `x` one word per fan (the token's expiry, why a session ended), or
-- for a concert event its detail; `p` for `placed`: the first fan's position (the others follow
-- it one by one, so no number is written per fan). The entry's id (Redis's time, a
-- counter) is the change's time and, with the fan's index in `u`, its stable CloudEvents id.
--
-- The same call adds the change to the concert's report (GET .../report): every change is
-- made once, here, so the report counts each event once without reading the events topic.
--
-- outbox(k, kind, lane, users, extra): extra is a list (one word per fan), a number (the first
-- fan's position) or nil. KEYS[k] is the outbox STREAM, followed by
--   KEYS[k+1] report HASH  `<kind>` changes of that kind; per minute (ms / 60000) `j:<minute>`
--                          fans placed, `a:<minute>` admitted, `o:<minute>` who left the queue
--                          (admitted, abandoned, removed)
--   KEYS[k+2] placed HASH  userId -> when the fan was last placed (ms)
--   KEYS[k+3] waits  ZSET  "<entry id>/<index>" (the admission's event) -> ms placed to admitted
local LEAVES = {admitted = true, abandoned = true, removed = true}

local function report(k, kind, id, users, first, last)
  local n = last - first + 1
  local at_text = string.match(id, '^(%d+)') -- written as it is: no number formatting per fan
  local at = tonumber(at_text)
  local minute = math.floor(at / 60000)
  redis.call('HINCRBY', KEYS[k + 1], kind, n)
  if kind == 'placed' then
    redis.call('HINCRBY', KEYS[k + 1], 'j:' .. minute, n)
    local placed = {}
    for i = first, last do
      placed[#placed + 1] = users[i]
      placed[#placed + 1] = at_text
    end
    redis.call('HSET', KEYS[k + 2], unpack(placed))
  elseif kind == 'admitted' then
    redis.call('HINCRBY', KEYS[k + 1], 'a:' .. minute, n)
    local since = redis.call('HMGET', KEYS[k + 2], unpack(users, first, last))
    local waits = {}
    for i = first, last do
      local placed_at = tonumber(since[i - first + 1])
      if placed_at then
        waits[#waits + 1] = at - placed_at
        waits[#waits + 1] = id .. '/' .. (i - first)
      end
    end
    if #waits > 0 then
      redis.call('ZADD', KEYS[k + 3], unpack(waits))
    end
  end
  if LEAVES[kind] then
    redis.call('HINCRBY', KEYS[k + 1], 'o:' .. minute, n)
  end
end

local function outbox(k, kind, lane, users, extra)
  local CHUNK = 1000
  for first = 1, #users, CHUNK do
    local last = math.min(first + CHUNK - 1, #users)
    local fields = {'t', kind, 'l', lane, 'u', table.concat(users, ' ', first, last)}
    if type(extra) == 'number' then
      fields[#fields + 1] = 'p'
      fields[#fields + 1] = extra + first - 1
    elseif extra then
      fields[#fields + 1] = 'x'
      fields[#fields + 1] = table.concat(extra, ' ', first, last)
    end
    local id = redis.call('XADD', KEYS[k], '*', unpack(fields))
    report(k, kind, id, users, first, last)
  end
end

local function outbox_concert(k, kind, lane, detail)
  redis.call('XADD', KEYS[k], '*', 't', kind, 'l', lane, 'u', '', 'x', detail)
end
