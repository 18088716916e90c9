"""The gate's section of docs/benchmarks.md, from a run's gate/ directory (scripts/bench_gate.sh).

`python3 scripts/bench_gate_report.py <run-dir>/gate` prints it; scripts/bench_report.py puts it
in docs/benchmarks.md after a full `make bench`.
"""
import json
import re
import sys
from pathlib import Path


def wrk(path):
    text = Path(path).read_text()
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
    total = int(re.search(r"(\d+) requests in", text).group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    p99 = re.search(r"^\s+99%\s+([\d.]+)(us|ms|s)\s*$", text, re.M)
    ms = float(p99.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[p99.group(2)] if p99 else 0.0
    return {"rps": rps, "total": total, "non2xx": int(non2xx.group(1)) if non2xx else 0, "p99": ms}


def section(gate_dir):
    d = Path(gate_dir)
    s = json.loads((d / "summary.json").read_text())
    g, j = wrk(d / "wrk-gate.txt"), wrk(d / "wrk-jwks.txt")
    cmds = int((d / "redis-commands-during-gate.txt").read_text().strip())
    checks = {m.group(1): int(float(m.group(2))) for m in re.finditer(r'outcome="(\w+)"\} ([\d.e+]+)', (d / "gate-checks.txt").read_text())}
    ratio, per_check = g["rps"] / j["rps"], cmds / g["total"]
    idle = s["idle_seconds"]
    met = lambda ok: "met" if ok else "**not met**"  # noqa: E731
    return f"""## The gate (issue 23)

`scripts/bench_gate.sh` (run by `make bench`): the local Kafka and Redis, one `queuegate consumer`
(with the admitter) and one release gateway, on the same two cores as wrk.

Gate checks of one live session, as nginx asks them (`wrk -t2 -c64 -d15s`, its cookie and
`X-Original-URI`): **{g['rps']:,.0f}/s**, p99 {g['p99']:.1f} ms, non-2xx {g['non2xx']}; the same
listener serving the static JWKS document in the same run: {j['rps']:,.0f}/s. Ratio
**{ratio:.2f}×** (target ≥ 0.8×: {met(ratio >= 0.8)}). Of {g['total']:,} checks,
{checks.get('session', 0):,} were answered from memory and {checks.get('session_checked', 0):,} asked
Redis (one write per tenth of the idle time, {idle} s here). Redis processed {cmds:,} commands over
the run — every background task of both processes included — **{per_check:.4f} per gate check**
(target ≤ 0.05: {met(per_check <= 0.05)}).

{s['sessions']:,} live sessions (`examples/gate_sessions`: {s['fans']:,} fans joined, were admitted,
and exchanged their tokens at the gate, {s['exchanges_per_second']:,.0f} exchanges/s): Redis grew by
**{s['redis_bytes_per_session']:.0f} bytes per session** (INFO `used_memory`; the `sessions` field,
the spent token id; the slot in `active` was the token's already); the gateway's RSS went from
{s['gateway_rss_kib_before'] / 1024:.1f} to {s['gateway_rss_kib_after'] / 1024:.1f} MiB
({s['gateway_bytes_per_session']:.0f} bytes per session, within the allocator's noise: the gateway
keeps one entry of about 150 bytes per session it has seen). Then nobody checked again: with
`sessionIdleSeconds` {idle}, the first session ended {s['late_first_s']:.2f} s and the last
{s['late_last_s']:.2f} s after their idle time ({100 * max(s['late_first_s'], s['late_last_s']) / idle:.1f} %;
target ≤ 10 %: {met(max(s['late_first_s'], s['late_last_s']) <= idle / 10)}), as measured by polling the
concert's session count every 250 ms.
{standby(d, g)}
"""


def standby(d, session):
    """Step 3, when the run has it: standby's direct entries against step 1's session checks."""
    if not (d / "wrk-direct.txt").exists():
        return ""
    w, counts = wrk(d / "wrk-direct.txt"), json.loads((d / "direct.json").read_text())
    ratio, calls = w["rps"] / session["rps"], counts["evalsha"] / max(counts["direct"], 1)
    met = lambda ok: "met" if ok else "**not met**"  # noqa: E731
    return f"""
Standby (issue 38): gate checks without a cookie on a concert in `standby` (`maxActive` 1,000,000,
no rate), each a new visitor let straight in with a session (`wrk -t2 -c64 -d15s`): **{w['rps']:,.0f}
direct entries/s**, p99 {w['p99']:.1f} ms, non-2xx {w['non2xx']}; {counts['direct']:,} counted as
`outcome="direct"`. Against the checks of a live session above: **{ratio:.2f}×** (target ≥ 0.5×:
{met(ratio >= 0.5)}). Redis calls (EVALSHA, every background task's included) per direct entry:
**{calls:.3f}** (target ≤ 1: {met(calls <= 1.0)}). A visitor of an idle gated site waits one gate
check (this p99, plus the proxy's hop) before the site answers: no room, no redirect.
"""


if __name__ == "__main__":
    print(section(sys.argv[1]))
