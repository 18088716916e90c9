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
local new = 0
for i = 1, #ARGV, 3 do
  local kind, user, at = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2])
  local bit = BIT[kind]
  if bit then
    local v = redis.call('HGET', KEYS[2], user) or '0:'
    local bits, placed_at = string.match(v, '^(%d+):(%d*)$')
    bits = tonumber(bits)
    if math.floor(bits / bit) % 2 == 0 then
      new = new + 1
      bits = bits + bit
      local minute = math.floor(at / 60000)
      redis.call('HINCRBY', KEYS[1], kind, 1)
      if kind == 'placed' then
        placed_at = tostring(at)
        redis.call('HINCRBY', KEYS[1], 'j:' .. minute, 1)
      end
      if kind == 'admitted' then
        redis.call('HINCRBY', KEYS[1], 'a:' .. minute, 1)
        if placed_at ~= '' then
          redis.call('ZADD', KEYS[3], at - tonumber(placed_at), user)
        end
      end
      if LEAVES[kind] then
        redis.call('HINCRBY', KEYS[1], 'o:' .. minute, 1)
      end
      redis.call('HSET', KEYS[2], user, bits .. ':' .. placed_at)
    end
  elseif string.sub(kind, 1, 8) == 'concert.' then
    redis.call('HINCRBY', KEYS[1], kind, 1)
  end
end
return new
