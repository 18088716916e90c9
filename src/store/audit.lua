-- An operator's change (src/admin/audit.rs): an event in the concert's outbox, which the relay
-- publishes as `dev.queuegate.admin.action`, and an entry at the head of the concert's audit
-- list, in one atomic call. outbox.lua is in front of it.
-- KEYS[1] the audit LIST (newest first; each entry the action's JSON with `outboxId` first)
-- KEYS[2..5] the outbox's keys (outbox.lua: outbox, report, joined, concert)
-- ARGV[1] the action as a JSON object with at least one field, ARGV[2] entries the list keeps
-- Returns the entries trimmed off the list's tail (0, or 1 once it is at its cap). Cost: one
-- outbox entry within its cap (outbox.lua), LPUSH, and an LTRIM of (length - kept) entries:
-- at most 1 unless the cap was lowered since the last call, then the surplus once.
local id = outbox_add(2, {'t', 'admin.action', 'l', '', 'u', '', 'x', ARGV[1]})
local keep = tonumber(ARGV[2])
local len = redis.call('LPUSH', KEYS[1], '{"outboxId":"' .. id .. '",' .. string.sub(ARGV[1], 2))
if len > keep then
  redis.call('LTRIM', KEYS[1], 0, keep - 1)
  return len - keep
end
return 0
