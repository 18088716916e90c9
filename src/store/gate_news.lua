-- What a gateway needs to refuse ended sessions without asking Redis on each gate check: the
-- concert's revocation epoch and the sessions ended since a cursor, one bounded page a call.
--
-- KEYS[1] gate HASH   KEYS[2] ended ZSET (score: when the session ended, ms)
-- ARGV[1] since (ms, inclusive)   ARGV[2] how many of the sessions ended at exactly `since` to
-- skip (the ones the last page already returned)   ARGV[3] the page size
--
-- Returns {epoch, Redis's time (ms), next since, next skip, sid, sid, …}: next since is -1 when
-- this page reached the newest (the caller looks again from a little before Redis's time),
-- else the cursor of the next page (at most ARGV[3] sids a call, oldest first, so a burst of
-- ended sessions is read in pages and never cut off at the newest).
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local since, skip, size = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local page = redis.call('ZRANGEBYSCORE', KEYS[2], since, '+inf', 'WITHSCORES', 'LIMIT', skip, size)
local out = {tonumber(redis.call('HGET', KEYS[1], 'epoch') or '0'), now, -1, 0}
local last, at_last = since, skip
for i = 1, #page, 2 do
  out[#out + 1] = page[i]
  local score = tonumber(page[i + 1])
  if score == last then
    at_last = at_last + 1
  else
    last, at_last = score, 1
  end
end
if #page / 2 >= size then
  out[3], out[4] = last, at_last
end
return out
