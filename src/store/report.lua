-- Adds a batch of a concert's events to its report, each fan's change once however often
-- the event comes (the events topic is at least once).
--
-- KEYS[1] report HASH: `<kind>` fans with that change; `j:<minute>` fans placed, `a:<minute>`
--                      admitted, `o:<minute>` who left the queue (admitted, abandoned, removed)
--                      in that minute (minute = ms / 60000)
-- KEYS[2] fans   HASH userId -> "<bits of the kinds counted>:<placedAt ms>"
-- KEYS[3] waits  ZSET userId -> ms from placed to admitted
-- ARGV: triples of kind (`placed`, `admitted`, ...), userId, time (ms)
--
-- Returns how many changes were new.
local BIT = {placed = 1, admitted = 2, abandoned = 4, removed = 8, expired = 16, completed = 32,
  ['session.started'] = 64, ['session.ended'] = 128}
local LEAVES = {admitted = true, abandoned = true, removed = true}
local CHUNK = 500

-- Each fan of the batch read once (HMGET), worked on in memory, written once (HSET): a fixed
-- number of commands per batch, not a few per event.
local users, known = {}, {}
for i = 1, #ARGV, 3 do
  local user = ARGV[i + 1]
  if BIT[ARGV[i]] and not known[user] then
    known[user] = true
    users[#users + 1] = user
  end
end
local fans = {}
for first = 1, #users, CHUNK do
  local last = math.min(first + CHUNK - 1, #users)
  local got = redis.call('HMGET', KEYS[2], unpack(users, first, last))
  for j = 1, last - first + 1 do
    local bits, placed_at = string.match(got[j] or '0:', '^(%d+):(%d*)$')
    fans[users[first + j - 1]] = {bits = tonumber(bits), placed_at = placed_at, changed = false}
  end
end

local new, incr, waits = 0, {}, {}
local function add(field)
  incr[field] = (incr[field] or 0) + 1
end
for i = 1, #ARGV, 3 do
  local kind, user, at = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2])
  local bit = BIT[kind]
  if bit then
    local fan = fans[user]
    if math.floor(fan.bits / bit) % 2 == 0 then
      new = new + 1
      fan.bits = fan.bits + bit
      fan.changed = true
      local minute = math.floor(at / 60000)
      add(kind)
      if kind == 'placed' then
        fan.placed_at = tostring(at)
        add('j:' .. minute)
      end
      if kind == 'admitted' then
        add('a:' .. minute)
        if fan.placed_at ~= '' then
          waits[#waits + 1] = at - tonumber(fan.placed_at)
          waits[#waits + 1] = user
        end
      end
      if LEAVES[kind] then
        add('o:' .. minute)
      end
    end
  elseif string.sub(kind, 1, 8) == 'concert.' then
    add(kind)
  end
end

local hset = {}
for _, user in ipairs(users) do
  local fan = fans[user]
  if fan.changed then
    hset[#hset + 1] = user
    hset[#hset + 1] = fan.bits .. ':' .. fan.placed_at
    if #hset >= 2 * CHUNK then
      redis.call('HSET', KEYS[2], unpack(hset))
      hset = {}
    end
  end
end
if #hset > 0 then
  redis.call('HSET', KEYS[2], unpack(hset))
end
for first = 1, #waits, 2 * CHUNK do
  redis.call('ZADD', KEYS[3], unpack(waits, first, math.min(first + 2 * CHUNK - 1, #waits)))
end
for field, n in pairs(incr) do
  redis.call('HINCRBY', KEYS[1], field, n)
end
return new
