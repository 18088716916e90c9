"""The events-out section of docs/benchmarks.md, from a run's events/ directory
(scripts/bench_events.sh).

`python3 scripts/bench_events_report.py <run-dir>/events` prints it; scripts/bench_report.py puts
it in docs/benchmarks.md after a full `make bench`.
"""
import json
import sys
from pathlib import Path


def section(events_dir):
    s = json.loads((Path(events_dir) / "summary.json").read_text())
    on, off = s["joins_on"], s["joins_off"]
    r, b, d, bd = s["relay"], s["webhook_burst"], s["webhook_delay_ms"], s["webhook_burst_delay_ms"]
    met = lambda ok: "met" if ok else "**not met**"  # noqa: E731
    published = ", ".join(f"{p:,}" for p in s["events_published_during_joins"])
    joins = lambda runs: ", ".join(f"{x:,.0f}" for x in runs)  # noqa: E731
    rcpu = r.get("cpu_s")
    relay_cpu = (f"; CPU while draining: the consumer {rcpu['consumer']} s (relay and events worker), "
                 f"Kafka {rcpu['kafka']} s, Redis {rcpu['redis']} s" if rcpu else "")
    cpu = s.get("cpu_percent_of_a_core", {})
    rows = "\n".join(
        f"| {run} | {c['gateway']} | {c['consumer']} | {c['redis']} | {c['kafka']} | {c['idle']} | {c['steal']} |"
        for run, c in sorted(cpu.items())
    )
    cpu_table = f"""
Where the CPU went while wrk ran (% of one core, from `/proc`; the machine's idle and steal in %
of both cores; wrk has the rest):

| run | gateway | consumer | Redis | Kafka | idle | steal |
|---|---|---|---|---|---|---|
{rows}

""" if cpu else ""
    return f"""## Events out (issue 26)

`scripts/bench_events.sh` (run by `make bench`): one release gateway and one release consumer on
the local Kafka and Redis, body identity mode; the consumer also admits, relays the outbox to
the events topic, reads that topic into webhook queues, and delivers webhooks.

**Join throughput with events on vs off** (wrk, 20 s, 256 connections, unique fans, after a 5 s
warm-up; {len(on)} runs each, alternating on, off, off, on, ...; "off" is the build of the last commit before
events out, `EVENTS_OFF_REV`): on {joins(on)} joins/s, off {joins(off)} joins/s, their sums:
**{s['ratio']:.3f}×** (target ≥ 0.9×: {met(s['ratio'] >= 0.9)}); answers other than 202: {s['non2xx']['on']} on,
{s['non2xx']['off']} off. The join path itself is unchanged (gateway → Kafka → 202); what events add runs
beside it on the same two cores: the outbox entries the release script writes (an entry per
1,000 fans placed, and the report's fixed-size counters, nothing per fan), the relay producing one record
per fan, and the events worker reading them (and passing over those of concerts without
webhooks). Events
the consumer published by the end of each "on" run (joins placed, plus the concert's update):
{published}.
{cpu_table}
**The relay**: {r['events']:,} events (300 outbox entries of 1,000 fans) written while no consumer
ran; a consumer started ({r['start_s']} s to ready) published them all and emptied the outbox in
**{r['drain_s']} s: {s['relay_events_per_second']:,} events/s** (idempotent producer, `acks=all`, lz4,
one record per fan, 20 outbox entries a pass; the events worker reading them ran at the same
time){relay_cpu}.

**Webhooks**, one local endpoint answering 204 at once (`scripts/bench_events_endpoint.mjs`),
`fan.placed` only: {b['joins']['accepted']:,} joins in 2 s (wrk, 64 connections), placed within a
second or so, so their deliveries queue up → **{b['per_second']:,} deliveries/s** while they drain
({b['delivered']:,} deliveries, {b['distinct']:,} distinct, in {b['seconds']} s; the endpoint's one delivery
task, 32 requests at a time, each batch recorded in one Redis call); the delay from a change to
its delivery in that burst p50/p99 {bd['p50']:,}/{bd['p99']:,} ms (the deliveries queue behind the burst). At a steady 100 joins/s for 30 s
({d['joins']['accepted']:,} joins, {d['delivered']:,} delivered) the delay from the change (the event's `time`,
when the fan was placed in Redis) to the endpoint: **p50 {d['p50']:,} ms, p99 {d['p99']:,} ms** (max
{d['max']:,} ms): the relay's tick (200 ms), the events worker's batch, the delivery task's poll (100 ms).

"""


if __name__ == "__main__":
    print(section(sys.argv[1]))
