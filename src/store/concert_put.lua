-- A concert's settings written, with its change as an event in its outbox, in one atomic call
-- (QueueStore::put_concert_if). The check of what the writer read and the write are one script,
-- so two writers on any gateways cannot both succeed against the same version (If-Match, and a
-- PATCH's read-merge-write: docs/reference-http.md, "Writing settings"). outbox.lua is in front of it.
-- KEYS[1..4] the outbox's keys (outbox.lua: outbox, report, joined, concert); KEYS[4] is the
--            concert HASH written here
-- ARGV[1] what the writer expects: '' anything; '-' no concert yet; 'n' the concert at version n
--         (the hash's `version` field; a hash without it, written before versions, is at 0)
-- ARGV[2] now (ms), ARGV[3] the event's kind (`concert.updated`, `concert.soldout`),
-- ARGV[4] the concert as JSON (the event's detail), ARGV[5..] the settings' field, value pairs
-- Returns the new version, or -1 when the expectation did not hold (nothing was written).
-- Cost: one HSET of the settings' fields (a fixed set, about 25), HINCRBY, and one outbox entry
-- within the cap (outbox.lua); nothing grows with the queue.
local concert = KEYS[4]
local expect = ARGV[1]
if expect ~= '' then
  local exists = redis.call('EXISTS', concert) == 1
  if expect == '-' then
    if exists then
      return -1
    end
  else
    local version = exists and (redis.call('HGET', concert, 'version') or '0')
    if version ~= expect then
      return -1
    end
  end
end
redis.call('HSETNX', concert, 'createdAt', ARGV[2])
redis.call('HSET', concert, 'updatedAt', ARGV[2], unpack(ARGV, 5))
local version = redis.call('HINCRBY', concert, 'version', 1)
outbox_concert(1, ARGV[3], '', ARGV[4])
return version
