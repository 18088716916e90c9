-- The transactional outbox (docs/howto-events.md), prepended to every script that changes a fan or
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
-- The cap (docs/howto-events.md#when-the-events-topic-cannot-be-written): an outbox holds at most
-- OUTBOX_MAX entries (QUEUEGATE_EVENTS_OUTBOX_MAX; the store puts `local OUTBOX_MAX = n` in
-- front of this file). It fills only while the relay cannot write the events topic; past it,
-- each new entry deletes the oldest ones (at most 2 per new entry, so a lowered cap is reached
-- over the next writes, and a call's work stays bounded) and counts their events in the
-- report's `d:pending` field, which the relay moves into queuegate_events_dropped_total. Oldest
-- first because the newest changes say where fans and the concert stand now; the change itself
-- (the queue, the session) is never refused for its event. Cost per new entry: XLEN, and per
-- deleted entry one XRANGE COUNT 1, XDEL and HINCRBY, the deleted entry's `u` (at most 1,000
-- userIds) scanned once.
--
-- outbox(k, kind, lane, users, extra): extra is a list (one word per fan), a number (the first
-- fan's position) or nil. KEYS[k] is the outbox STREAM, followed by
--   KEYS[k+1] report HASH  fixed-size whatever the sale's size (docs/howto-events.md#the-sales-report):
--                          `d:pending` events the cap dropped that no relay has counted yet;
--                          `<kind>` changes of that kind; per minute (ms / 60000) `j:<minute>`
--                          fans placed, `a:<minute>` admitted, `o:<minute>` who left the queue
--                          (admitted, abandoned, removed), the last KEEP_MINUTES minutes of each
--                          (older ones rolled into `j:older`, `a:older`, `o:older`; `j:from`,
--                          `j:to` the oldest and newest minute kept); the waits from placed to
--                          admitted as a histogram: `w:n` count, `w:sum`, `w:min`, `w:max` (ms)
--                          and `w:<bucket>` waits in each bucket (wait_bucket below)
--   KEYS[k+2] joined HASH  (read) userId -> joinedAt (ms): where each admitted fan's wait starts
--   KEYS[k+3] concert HASH (read) `opensAt`: a fan of the pre-queue waits from the opening, not
--                          from when it joined
-- Nothing is kept per fan or per admission: the report is read in O(buckets + minutes).
local LEAVES = {admitted = true, abandoned = true, removed = true}
local KEEP_MINUTES = 1440

-- The histogram's bucket of a wait of w ms (an integer >= 0): w itself below 8 (exact), then
-- 8 buckets per power of two, each 1/8 of it wide: bucket 8 * (e - 2) + s holds
-- [2^e + s * 2^(e-3), 2^e + (s + 1) * 2^(e-3)) with e = floor(log2 w), s in 0..7. So a
-- bucket's width is at most 1/8 of its lower bound: a week's wait is bucket 217, 12 days bucket 223.
-- src/store/events.rs (wait_bucket_bounds) says the same in Rust.
local function wait_bucket(w)
  if w < 8 then
    return w
  end
  local e = math.floor(math.log(w) / math.log(2))
  if 2 ^ e > w then
    e = e - 1
  elseif 2 ^ (e + 1) <= w then
    e = e + 1
  end
  local s = math.floor((w - 2 ^ e) / 2 ^ (e - 3))
  return 8 * (e - 2) + s
end

-- Adds n to series `p` (`j:`, `a:`, `o:`) at `minute`, keeping its last KEEP_MINUTES minutes:
-- a minute that leaves the window is added to `<p>older` and deleted, at most KEEP_MINUTES
-- fields per call (only when a new minute starts), so the hash never grows with the sale's length.
local function per_minute(key, p, minute, n)
  local b = redis.call('HMGET', key, p .. 'from', p .. 'to')
  local from, to = tonumber(b[1]), tonumber(b[2])
  if to and minute <= to - KEEP_MINUTES then
    -- Before the window (Redis's clock went back, a failover): rolled up at once.
    redis.call('HINCRBY', key, p .. 'older', n)
    return
  end
  redis.call('HINCRBY', key, p .. minute, n)
  if to and minute <= to then
    return
  end
  local cutoff = minute - KEEP_MINUTES -- minutes at or before it leave the window
  if from and from <= cutoff then
    local fields = {}
    for m = from, math.min(cutoff, to) do
      fields[#fields + 1] = p .. m
    end
    local counts = redis.call('HMGET', key, unpack(fields))
    local older, gone = 0, {}
    for i = 1, #fields do
      if counts[i] then
        older = older + tonumber(counts[i])
        gone[#gone + 1] = fields[i]
      end
    end
    if #gone > 0 then
      redis.call('HDEL', key, unpack(gone))
      redis.call('HINCRBY', key, p .. 'older', older)
    end
    from = cutoff + 1
  end
  redis.call('HSET', key, p .. 'from', from or minute, p .. 'to', minute)
end

-- The waits of the fans admitted at `at` (ms): from joinedAt (or opensAt, for a fan who joined
-- before it) to `at`, added to the histogram with one HINCRBY per bucket they fall in.
local function add_waits(k, users, first, last, at)
  local since = redis.call('HMGET', KEYS[k + 2], unpack(users, first, last))
  local opens = tonumber(redis.call('HGET', KEYS[k + 3], 'opensAt') or '') or 0
  local buckets, n, sum, lo, hi = {}, 0, 0, nil, nil
  for i = 1, #since do
    local joined_at = tonumber(since[i])
    if joined_at then
      local w = math.max(0, at - math.max(joined_at, opens))
      local b = wait_bucket(w)
      buckets[b] = (buckets[b] or 0) + 1
      n, sum = n + 1, sum + w
      if not lo or w < lo then lo = w end
      if not hi or w > hi then hi = w end
    end
  end
  if n == 0 then
    return
  end
  local key = KEYS[k + 1]
  for b, c in pairs(buckets) do
    redis.call('HINCRBY', key, 'w:' .. b, c)
  end
  redis.call('HINCRBY', key, 'w:n', n)
  redis.call('HINCRBY', key, 'w:sum', sum)
  local old = redis.call('HMGET', key, 'w:min', 'w:max')
  if not old[1] or lo < tonumber(old[1]) then
    redis.call('HSET', key, 'w:min', lo)
  end
  if not old[2] or hi > tonumber(old[2]) then
    redis.call('HSET', key, 'w:max', hi)
  end
end

local function report(k, kind, id, users, first, last)
  local n = last - first + 1
  local at = tonumber(string.match(id, '^(%d+)'))
  local minute = math.floor(at / 60000)
  redis.call('HINCRBY', KEYS[k + 1], kind, n)
  if kind == 'placed' then
    per_minute(KEYS[k + 1], 'j:', minute, n)
  elseif kind == 'admitted' then
    per_minute(KEYS[k + 1], 'a:', minute, n)
    add_waits(k, users, first, last, at)
  end
  if LEAVES[kind] then
    per_minute(KEYS[k + 1], 'o:', minute, n)
  end
end

-- Appends `fields` to the outbox KEYS[k] within its cap (see the header); the new entry's id.
local function outbox_add(k, fields)
  local id = redis.call('XADD', KEYS[k], '*', unpack(fields))
  for _ = 1, 2 do
    if redis.call('XLEN', KEYS[k]) <= OUTBOX_MAX then
      break
    end
    -- OUTBOX_MAX >= 1 and the new entry is the newest: the oldest is never the one just added.
    local oldest = redis.call('XRANGE', KEYS[k], '-', '+', 'COUNT', 1)[1]
    local events, f = 1, oldest[2]
    for i = 1, #f - 1, 2 do
      if f[i] == 'u' and f[i + 1] ~= '' then
        local _, spaces = string.gsub(f[i + 1], ' ', ' ')
        events = spaces + 1
      end
    end
    redis.call('XDEL', KEYS[k], oldest[1])
    redis.call('HINCRBY', KEYS[k + 1], 'd:pending', events)
  end
  return id
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
    local id = outbox_add(k, fields)
    report(k, kind, id, users, first, last)
  end
end

local function outbox_concert(k, kind, lane, detail)
  outbox_add(k, {'t', kind, 'l', lane, 'u', '', 'x', detail})
end
