-- Admits fans from the head of a concert's queue, atomically.
--
-- KEYS[1] waiting LIST   KEYS[2] rank ZSET    KEYS[3] state HASH  (userId -> "a:<iat>:<exp>" | "x:<ms>" | "r:<ms>")
-- KEYS[4] active  ZSET userId -> token expiry (ms): the slots in use (concurrency mode)
-- KEYS[5] seen    HASH userId -> last status poll (ms)    KEYS[6] joined HASH userId -> joinedAt (ms)
-- KEYS[7] adm     HASH admitted, skipped, removed counts; rate bucket (bucketAt, bucketCarry);
--                      observed rate (obsRate admits/s, decayed to obsAt)
-- KEYS[8] lease   STRING the automatic admitter's lease, "<instance>:<fence>"
-- KEYS[9] request STRING the remembered answer of this admit request (when ARGV[7] is set)
-- KEYS[10] gone  ZSET sequence numbers removed from the middle (remove.lua); those now behind
--                the head no longer matter to anyone's position and are dropped here
-- KEYS[11] concert HASH the concert's settings: nobody is admitted while its state is written and
--                is not `open` (sold out, paused, closed), whatever the caller's cache says
-- KEYS[12] sessions HASH userId -> live gate session (sessions.rs)   KEYS[13] ended ZSET sid ->
--                when it ended: a slot past its deadline that held a session ends that session
--                here, as sweep.lua does (the sweep runs right before, but a deadline can pass
--                between the two calls; freeing the slot alone would leave the session counted
--                live for ever)
-- ARGV[1] most fans to admit  ARGV[2] token ttl (ms)  ARGV[3] maxActive (0: none)
-- ARGV[4] abandonAfter (ms, 0: off)  ARGV[5] admitPerSecond (0: no rate bucket)
-- ARGV[6] lease value the caller holds ("" for manual admission: no lease needed)
-- ARGV[7] request id ("" for none): an operator's retried admit returns the first answer and
--         admits nobody again (the answer is kept for an hour)
-- KEYS[14] outbox STREAM and KEYS[15..17] the report's keys (outbox.lua): `admitted` (with each token's expiry) and `abandoned`
--                per lane, `session.ended` (idle | max) and `expired` (a token never exchanged)
-- ARGV[8] L >= 1, the number of lanes; ARGV[9 .. 8+L] their names; ARGV[9+L .. 8+2L] their shares.
--         The first lane's waiting, rank and gone are KEYS[1], KEYS[2] and KEYS[10]; lane i > 1
--         has KEYS[18 + 3(i-2)], KEYS[19 + 3(i-2)], KEYS[20 + 3(i-2)].
--
-- Lanes: the count is split between the lanes by share in a smooth weighted round robin whose
-- running weights (`wrr` in adm) persist from call to call, so 70/30 over any ten admissions is
-- 7 and 3 whatever the size of each call; a lane with nobody waiting takes no part (its share
-- goes to the others). maxActive and the rate bucket are the concert's, shared by its lanes.
-- Each lane's observed rate (`obsRate`, `obsAt` for general; `obsRate@<lane>`, `obsAt@<lane>`
-- for the others) is what its fans' ETA is worked out from; `admitted@<lane>` counts per lane.
-- Time (token issue and expiry, the rate bucket, abandonment) is Redis's: an admitter whose
-- clock is behind or ahead admits at the configured rate all the same.
--
-- Returns {0} when the caller's lease is not the current one (a stale admitter is fenced off),
-- else {1, now, "e:<sessions ended idle>:<at their maximum>", user1, exp1, user2, exp2, ...}. Fans who have neither reached the queue nor
-- polled within abandonAfter (`seen` holds the later of the two; apply.lua writes the arrival)
-- are taken off the queue as expired and do not count. At most 1000 fans are looked at per call.
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local n = tonumber(ARGV[1])
local ttl = tonumber(ARGV[2])
local max_active = tonumber(ARGV[3])
local abandon = tonumber(ARGV[4])
local rate = tonumber(ARGV[5])
local gone_type = redis.call('TYPE', KEYS[10]).ok
if gone_type ~= 'none' and gone_type ~= 'zset' then
  return redis.error_reply('WRONGTYPE ' .. KEYS[10] .. ' is a ' .. gone_type .. ', not a zset; nothing was written')
end
if ARGV[6] ~= '' and redis.call('GET', KEYS[8]) ~= ARGV[6] then
  return {0}
end
if ARGV[7] ~= '' then
  local done = redis.call('GET', KEYS[9])
  if done then
    return cjson.decode(done)
  end
end
local state = redis.call('HGET', KEYS[11], 'state')
if state and state ~= 'open' then
  return {1, now, 'e:0:0'}
end

-- Expired tokens and sessions free their slots (slots.lua): one bounded slice; a bigger backlog
-- is the sweep's (sessions.rs), which runs right before each round's admission.
local idle, maxed = free_slots(KEYS[4], KEYS[12], KEYS[13], 14, now)
if max_active > 0 then
  local free = max_active - redis.call('ZCARD', KEYS[4])
  if free < n then n = free end
end
local allowance = 0
if rate > 0 then
  local at = tonumber(redis.call('HGET', KEYS[7], 'bucketAt') or now)
  local carry = tonumber(redis.call('HGET', KEYS[7], 'bucketCarry') or '0')
  allowance = carry + rate * (now - at) / 1000
  if allowance > rate then allowance = rate end -- at most one second's worth is banked
  local whole = math.floor(allowance)
  if whole < n then n = whole end
end

local out = {1, now, 'e:' .. idle .. ':' .. maxed}
local nl = tonumber(ARGV[8])
local lanes = {}
for i = 1, nl do
  local l = {name = ARGV[8 + i], share = tonumber(ARGV[8 + nl + i])}
  if i == 1 then
    l.waiting, l.rank, l.gone = KEYS[1], KEYS[2], KEYS[10]
  else
    local k = 18 + 3 * (i - 2)
    l.waiting, l.rank, l.gone = KEYS[k], KEYS[k + 1], KEYS[k + 2]
  end
  lanes[i] = l
end
for i = 2, #lanes do
  local t = redis.call('TYPE', lanes[i].gone).ok
  if t ~= 'none' and t ~= 'zset' then
    return redis.error_reply('WRONGTYPE ' .. lanes[i].gone .. ' is a ' .. t .. ', not a zset; nothing was written')
  end
end
local wrr = {}
local wrr_text = redis.call('HGET', KEYS[7], 'wrr')
if wrr_text then
  wrr = cjson.decode(wrr_text)
end
for _, l in ipairs(lanes) do
  l.cur = tonumber(wrr[l.name] or 0)
  l.left = redis.call('ZCARD', l.rank)
  l.admitted, l.popped = 0, 0
  l.in_users, l.in_exp, l.out_users = {}, {}, {}
  l.sfx = ''
  if l.name ~= 'general' then l.sfx = '@' .. l.name end
end

local admitted, scanned, skipped = 0, 0, 0
-- Fans are taken in batches, each with a fixed number of commands (LRANGE, ZMSCORE and LTRIM,
-- then one ZREM, HMGET, HSET and ZADD) rather than five per fan: Redis's work per round does not
-- grow with the fans it admits (and with AOF `always`, every write command is appended to the AOF).
-- A batch is at most 1000 fans (the loop below scans at most 1000 per call), so its unpack()s
-- take at most 2,000 values, far below Lua's limit (~8,000).
-- The LIST still holds the entries of fans removed from the middle (remove.lua takes them out of
-- `rank` only, never walking the LIST): they are dropped as they reach the head, unadmitted and
-- uncounted, at most about STALE per call; a lane's count (`left`) is its `rank`, the fans really
-- there, so the lanes' shares are kept as if the removed had never been in the LIST. The head is
-- read before it is trimmed, so no fan past the last one taken leaves the LIST.
local STALE = 5000
local stale = 0
local function take(l, count)
  local users = {}
  local size = count
  while #users < count and stale < STALE do
    local head = redis.call('LRANGE', l.waiting, 0, size - 1)
    if #head == 0 then break end
    local ranked = redis.call('ZMSCORE', l.rank, unpack(head))
    local used = 0
    for i, user in ipairs(head) do
      if #users == count then break end
      used = i
      if ranked[i] then
        users[#users + 1] = user
      else
        stale = stale + 1
      end
    end
    redis.call('LTRIM', l.waiting, used, -1)
    l.popped = l.popped + used
    -- Stale entries met: look further ahead next time (at most 1000 at once).
    size = math.min(1000, math.max(count - #users, size * 4))
  end
  if #users == 0 then return end
  scanned = scanned + #users
  l.left = l.left - #users
  redis.call('ZREM', l.rank, unpack(users))
  local seen, joined
  if abandon > 0 then
    seen = redis.call('HMGET', KEYS[5], unpack(users))
    joined = redis.call('HMGET', KEYS[6], unpack(users))
  end
  local states, actives = {}, {}
  for i, user in ipairs(users) do
    local abandoned = false
    if abandon > 0 then
      abandoned = now - tonumber(seen[i] or joined[i] or now) > abandon
    end
    states[#states + 1] = user
    if abandoned then
      states[#states + 1] = 'x:' .. now
      skipped = skipped + 1
      l.out_users[#l.out_users + 1] = user
    else
      local exp = now + ttl
      states[#states + 1] = 'a:' .. now .. ':' .. exp
      actives[#actives + 1] = exp
      actives[#actives + 1] = user
      admitted = admitted + 1
      l.admitted = l.admitted + 1
      out[#out + 1] = user
      out[#out + 1] = exp
      l.in_users[#l.in_users + 1] = user
      l.in_exp[#l.in_exp + 1] = exp
    end
  end
  redis.call('HSET', KEYS[3], unpack(states))
  if #actives > 0 then
    redis.call('ZADD', KEYS[4], unpack(actives))
  end
end

while admitted < n and scanned < 1000 and stale < STALE do
  -- This batch's fans, lane by lane, in the smooth weighted order.
  local want = math.min(n - admitted, 1000 - scanned)
  local alloc, any = {}, false
  for i = 1, #lanes do alloc[i] = 0 end
  for _ = 1, want do
    local total, best = 0, nil
    for i, l in ipairs(lanes) do
      if l.left > alloc[i] then
        l.cur = l.cur + l.share
        total = total + l.share
        if best == nil or l.cur > lanes[best].cur then best = i end
      end
    end
    if best == nil then break end
    lanes[best].cur = lanes[best].cur - total
    alloc[best] = alloc[best] + 1
    any = true
  end
  if not any then break end
  for i, l in ipairs(lanes) do
    if alloc[i] > 0 then take(l, alloc[i]) end
  end
end
if skipped > 0 then
  redis.call('HINCRBY', KEYS[7], 'skipped', skipped)
end

local tau = 30000
for _, l in ipairs(lanes) do
  outbox(14, 'admitted', l.name, l.in_users, l.in_exp)
  outbox(14, 'abandoned', l.name, l.out_users)
  if l.popped > 0 then
    local head = redis.call('ZRANGE', l.rank, 0, 0, 'WITHSCORES')
    if head[2] then
      redis.call('ZREMRANGEBYSCORE', l.gone, '-inf', '(' .. head[2])
    else
      redis.call('DEL', l.gone)
    end
  end
  if l.admitted > 0 and #lanes > 1 then
    redis.call('HINCRBY', KEYS[7], 'admitted@' .. l.name, l.admitted)
  end
  -- Observed admission rate per lane: an exponentially decaying count with a 30 s time constant.
  local r = tonumber(redis.call('HGET', KEYS[7], 'obsRate' .. l.sfx) or '0')
  local t = tonumber(redis.call('HGET', KEYS[7], 'obsAt' .. l.sfx) or now)
  r = r * math.exp(-(now - t) / tau) + l.admitted * 1000 / tau
  redis.call('HSET', KEYS[7], 'obsRate' .. l.sfx, tostring(r), 'obsAt' .. l.sfx, now)
  wrr[l.name] = l.cur
end
if #lanes > 1 then
  redis.call('HSET', KEYS[7], 'wrr', cjson.encode(wrr))
end
if rate > 0 then
  redis.call('HSET', KEYS[7], 'bucketAt', now, 'bucketCarry', tostring(allowance - admitted))
end
if admitted > 0 then
  redis.call('HINCRBY', KEYS[7], 'admitted', admitted)
end
if ARGV[7] ~= '' then
  -- A retried request gets the same fans, and no sessions counted as ended a second time.
  local remembered = {}
  for i, v in ipairs(out) do remembered[i] = v end -- a copy without unpack(): no length limit
  remembered[3] = 'e:0:0'
  redis.call('SET', KEYS[9], cjson.encode(remembered), 'PX', 3600000)
end
return out
