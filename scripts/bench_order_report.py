"""First come, first placed: its section of docs/benchmarks.md, from a run's order/ directory
(scripts/bench_order.sh).

`python3 scripts/bench_order_report.py <run-dir>/order` prints it; scripts/bench_report.py puts it
in docs/benchmarks.md after a full `make bench`.
"""
import json
import sys
from pathlib import Path


def section(order_dir):
    d = Path(order_dir)
    cases = {p.stem: json.loads(p.read_text()) for p in sorted(d.glob("*.json")) if "-" in p.stem and p.stem.count("-") == 1}
    rows = []
    for name in ["before-1", "after-1", "before-2", "after-2"]:
        c = cases.get(name)
        if not c:
            continue
        version = "earlier (apply order)" if name.startswith("before") else "this (stamp order)"
        lg, p = c["loadgen"], c["placement_ms"]
        rows.append(
            f"| {version} | {c['consumers']} | {lg['accepted_per_second']:,.0f} | {lg['latency_ms']['p99']:.1f} | "
            f"{p['p50']:,} | {p['p99']:,} | {p['max']:,} | {c['worst_overtaking_ms']:,} | {c['overtaken_by_more_than_1s']:,} | "
            f"{c['consumer_cpu_us_per_join']:.1f} |"
        )
    ratios = []
    for n in (1, 2):
        b, a = cases.get(f"before-{n}"), cases.get(f"after-{n}")
        if a and b:
            ratios.append(f"{n} consumer{'s' if n > 1 else ''}: {a['loadgen']['accepted_per_second'] / b['loadgen']['accepted_per_second']:.2f}×")
    rate = next(iter(cases.values()))["loadgen"]["offered_per_second"] if cases else 0
    return f"""## First come, first placed (issue 24)

`scripts/bench_order.sh` (run by `make bench`): the local Kafka (a 12-partition topic per case)
and Redis, one release gateway, one or two `queuegate consumer`s, all on the same two cores as
the load. `loadgen` offers {rate:,.0f} new fans a second for 10 s; `examples/placement` watches
the concert's queue in Redis and counts each fan placed when first seen there: latency from the
gateway's accepted stamp to the place (within 20 ms). "Worst overtaking": over the whole queue,
how much later than a fan's stamp the latest stamp placed ahead of it is (0: stamp order).
Consumer CPU is its utime + stime over the run, per join. The earlier version is the binary of
the commit before issue 24, on the same machine and settings.

| version | consumers | accepted joins/s | join p99 ms | placed p50 ms | p99 ms | max ms | worst overtaking ms | fans overtaken by > 1 s | consumer CPU µs/join |
|---|---|---|---|---|---|---|---|---|---|
{chr(10).join(rows)}

Join throughput, this version against the earlier one: {', '.join(ratios) or 'not compared in this run'}.
The price of the order is the placement latency: a fan waits for every partition to pass its
stamp plus `QUEUEGATE_CLOCK_SKEW_MS` (1 s), one tick (200 ms) and one admitter round (200 ms).

"""


if __name__ == "__main__":
    print(section(sys.argv[1]))
