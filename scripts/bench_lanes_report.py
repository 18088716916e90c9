"""The presale lanes' section of docs/benchmarks.md, from a run's lanes/ directory
(scripts/bench_lanes.sh).

`python3 scripts/bench_lanes_report.py <run-dir>/lanes` prints it; scripts/bench_report.py puts it
in docs/benchmarks.md after a full `make bench`.
"""
import json
import sys
from pathlib import Path


def section(lanes_dir):
    s = json.loads((Path(lanes_dir) / "summary.json").read_text())
    one, two = s["joins_per_second_one_lane"], s["joins_per_second_two_lanes"]
    c, w = s["codes"], s["watch"]
    met = lambda ok: "met" if ok else "**not met**"  # noqa: E731
    q1, q2 = w["one"]["redis_commands_per_second_quiet"], w["lanes"]["redis_commands_per_second_quiet"]
    a1, a2 = w["one"]["redis_commands_per_second_admitting"], w["lanes"]["redis_commands_per_second_admitting"]
    g1, g2 = w["one"].get("gateway_redis_calls_per_second_quiet"), w["lanes"].get("gateway_redis_calls_per_second_quiet")
    h1, h2 = w["one"].get("gateway_redis_calls_per_second_admitting"), w["lanes"].get("gateway_redis_calls_per_second_admitting")
    p1, p2 = w["one"]["push_latency_ms"], w["lanes"]["push_latency_ms"]
    if g1 is not None and g2 is not None:
        watch_cost = (f"The watchers' own cost, the gateway's Redis calls (view refreshes, the fans' first\n"
                      f"reads, the departed fans' outcomes): **{g1:,.2f} calls/s with one lane, {g2:,.2f} with two** while\n"
                      f"nothing moves, {h1:,.2f} vs {h2:,.2f} while admitting (target: unchanged; "
                      f"{met(g2 <= g1 * 1.1 + 0.5 and h2 <= h1 * 1.1 + 0.5)}):\na gateway's view reads every lane of a "
                      f"concert in the same single `view.lua` call per refresh,\nwhatever the number of watchers.")
    else:
        watch_cost = ("A gateway's view reads every lane of a concert in the same single `view.lua` call per "
                      "refresh, whatever the number of watchers.")
    return f"""## Presale lanes (issue 25)

`scripts/bench_lanes.sh` (run by `make bench`): one release gateway and one consumer on the local
Kafka and Redis, body identity mode.

**Join throughput, two lanes vs one** (wrk, 20 s, 256 connections, unique fans; two rounds each,
alternating; the two-lane requests alternate `fanclub` and `general`): one lane
{one[0]:,.0f} and {one[1]:,.0f} joins/s, two lanes {two[0]:,.0f} and {two[1]:,.0f} joins/s: **{s['ratio']:.3f}×**
(target ≥ 0.95×: {met(s['ratio'] >= 0.95)}); {s['non2xx']} answers other than 202. A join names its lane in
the body; the gateway checks it against its concert cache (no Redis call for an open lane), and
the consumer applies each (concert, lane) of a batch in one script call.

**Watching, 15,000 status streams** (`scripts/bench_watchers.sh` steps `one` and `lanes`, each in a
run of its own: the same audience on a one-lane concert and spread over two lanes). {watch_cost}
Redis as a whole (INFO `total_commands_processed`, scripts' commands included) served {q1:,.1f} vs
{q2:,.1f} commands/s while nothing moved and {a1:,.1f} vs {a2:,.1f} while admitting 500/s: the difference
is the admitter's, per lane and not per watcher (each 200 ms round places each lane's staged fans
with one `release.lua` call, and `admit.lua` pops, trims and keeps the observed rate per lane), about
{q2 - q1:,.0f} and {a2 - a1:,.0f} commands/s for the second lane, the same with 15 watchers or 150,000;
placing every lane in one call would shrink it.
Push latency of the admission, p50/p99: {p1['p50']}/{p1['p99']} ms (one lane), {p2['p50']}/{p2['p99']} ms (two lanes);
{w['lanes']['admitted_seen']:,} of {w['lanes']['streams_open']:,} streams saw their admission.

**Code upload**: {c['codes']:,} codes (12 characters) in calls of 10,000 took **{c['seconds']} s**
({c['codes_per_second']:,} codes/s); Redis holds each as its SHA-256 (64 hex characters) → the bound
fan: **{c['bytes_per_code_key']} bytes per code** in the lane's hash (`MEMORY USAGE`, encoding
`{c['encoding']}`), {c['bytes_per_code_used_memory']} bytes per code of `used_memory`.

"""


if __name__ == "__main__":
    print(section(sys.argv[1]))
