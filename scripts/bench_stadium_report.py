"""The stadium section of docs/benchmarks.md, from a run's stadium/ directory
(scripts/bench_stadium.sh).

`python3 scripts/bench_stadium_report.py <run-dir>/stadium` prints it; scripts/bench_report.py puts
it in docs/benchmarks.md after a full `make bench`.
"""
import json
import sys
from pathlib import Path


def section(stadium_dir):
    s = json.loads((Path(stadium_dir) / "summary.json").read_text())
    met = lambda ok: "met" if ok else "**not met**"  # noqa: E731
    slow = "; ".join(f"{us / 1000:.1f} ms `{what}`" for us, what in s["slowest_redis_calls_us"][:5]) or "none over 1 ms"
    slowest_ms = s["slowest_redis_calls_us"][0][0] / 1000 if s["slowest_redis_calls_us"] else 0
    return f"""## The stadium: {s['fans']:,} fans through one process (issue 35)

`scripts/bench_stadium.sh` (run by `make bench`; `STADIUM_FANS`, default 1,000,000): one
`queuegate run` (every role in one process) on the local Kafka and Redis, one concert with a
webhook to an endpoint that accepts and never answers, for the whole run. SLOWLOG's threshold is
1 ms for the run; the slowest calls are those on this run's keys.

| measure | result | target (shared/DESIGN.md) |
|---|---|---|
| joins/s (`examples/burst`, 256 connections, unique fans) | {s['joins_per_second']:,} ({s['accepted']:,} accepted of {s['fans']:,}; {s['statuses']}) | |
| join latency p50 / p99 | {s['join_latency_ms']['p50']:.1f} / {s['join_latency_ms']['p99']:.1f} ms | |
| every fan placed, after the last 202 | {s['placed_after_last_202_s']} s (missing {s['missing']}, doubled {s['doubled']}) | nobody lost or twice: {met(s['missing'] == 0 and s['doubled'] == 0)} |
| Redis bytes per waiting fan (used_memory grown / fans, every key of the run) | {s['redis_bytes_per_fan']} B | ≤ 250 B: {met(s['redis_bytes_per_fan'] <= 250)} |
| process RSS (peak) | {s['rss_mb']} MiB ({s['rss_peak_mb']} MiB) | |
| status p50 / p99 with {s['waiting']:,} waiting (wrk, 64 connections) | {s['status_p50_ms']} / {s['status_p99_ms']} ms ({s['status_per_second']:,.0f}/s) | |
| Redis commands/s, idle | {s['redis_idle_commands_per_second']:,} | |
| a listing page at offset {s['fans'] - 1000:,} / a removal from the middle | {s['deep_page_ms']} ms / {s['removal_ms']} ms ({s['removal']}) | |
| admission, 5-second tokens holding slots | {s['admitted_per_second']:,}/s | |
| admission in the 10 s after a 6 s stall of the process (tokens expired meanwhile) | {s['admitted_per_second_after_6s_stall']:,}/s | holds its rate: {met(s['admitted_per_second_after_6s_stall'] >= 0.9 * s['admitted_per_second'] > 0)} |
| the dead webhook: pending deliveries, bytes, dropped | {s['webhook_pending']:,}, {s['webhook_pending_bytes'] / 2**20:.1f} MiB, {s['webhook_dropped']:,} | within the caps (10,000, 16 MiB) |
| Redis calls over 10 ms (this run's keys) | {s['redis_calls_over_10ms']} (slowest: {slow}) | none: {met(slowest_ms <= 10)} |

The cut of a million-fan pre-queue is the fair start's step run with `FAIR_FANS=1000000`, and a
gateway's memory per open stream is in "Watching at scale".

"""


if __name__ == "__main__":
    print(section(sys.argv[1]))
