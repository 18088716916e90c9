-- A concert's change as an event in its outbox (QueueStore::put_concert sends this with EVAL
-- inside the MULTI that writes the concert, so the change and its event are one transaction).
-- outbox.lua is in front of it.
-- KEYS[1..4] the outbox's keys (outbox.lua: outbox, report, joined, concert)
-- ARGV[1] the kind (`concert.updated`, `concert.soldout`), ARGV[2] the concert as JSON
-- Returns nothing. Cost: one outbox entry within the cap (outbox.lua).
outbox_concert(1, ARGV[1], '', ARGV[2])
