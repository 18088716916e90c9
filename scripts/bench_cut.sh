#!/usr/bin/env bash
# The cut of a 1,000,000-fan pre-queue, part of `make bench` (alone: `scripts/bench_cut.sh [run-dir]`).
#
# A Redis of its own (CUT_REDIS_PORT, 6391), configured as the shipped one (AOF, appendfsync
# always) plus `slowlog-log-slower-than 0`, so that its SLOWLOG holds every call with its time
# inside Redis. examples/cut fills a scheduled concert's pre-queue with CUT_FANS (1,000,000) fans
# through the consumer's store call, then runs the cut as the admitter does (slices of at most
# 500 fans a call) while another connection PINGs every 10 ms, and checks the queue against the
# published seed and list hash. Reported: the cut's wall time, its Redis calls, the slowest call
# (and per kind: min, p50, p99, max), Redis's main-thread CPU time, the slowest PING. Results in <run-dir>/cut/summary.json.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
OUT=${1:-.local/bench/cut-$(date +%s)}/cut
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
FANS=${CUT_FANS:-1000000}
PORT=${CUT_REDIS_PORT:-6391}
log() { printf '[bench-cut %s] %s\n' "$(date +%T)" "$*" >&2; }

cargo build --release --locked --example cut
if redis-cli -p "$PORT" PING >/dev/null 2>&1; then
  echo "something already answers on 127.0.0.1:$PORT; set CUT_REDIS_PORT" >&2
  exit 1
fi
mkdir -p "$OUT/redis"
redis-server --bind 127.0.0.1 --port "$PORT" --dir "$OUT/redis" --appendonly yes --appendfsync always --save '' \
  --slowlog-log-slower-than 0 --slowlog-max-len 1000000 \
  --daemonize yes --pidfile "$OUT/redis/redis.pid" --logfile "$OUT/redis/redis.log"
stop_redis() { [ -f "$OUT/redis/redis.pid" ] && kill "$(cat "$OUT/redis/redis.pid")" 2>/dev/null || true; }
trap stop_redis EXIT
for _ in $(seq 1 100); do redis-cli -p "$PORT" PING >/dev/null 2>&1 && break; sleep 0.1; done
# Redis on a core of its own (CUT_PIN_REDIS=1, the default on two or more cores), the cut on the
# others, as in production: SLOWLOG and the PINGs time calls by the wall clock, so on a shared
# core a call waiting for the CPU would be logged as slow.
CORES=$(nproc)
ON_OTHERS=()
if [ "$CORES" -ge 2 ] && [ "${CUT_PIN_REDIS:-1}" = 1 ]; then
  taskset -a -p -c "$((CORES - 1))" "$(cat "$OUT/redis/redis.pid")" >/dev/null
  ON_OTHERS=(taskset -c "0-$((CORES - 2))")
  log "Redis pinned to core $((CORES - 1)), the cut to 0-$((CORES - 2))"
fi

log "$FANS fans into a pre-queue, then the cut"
"${ON_OTHERS[@]}" ./target/release/examples/cut --redis "redis://127.0.0.1:$PORT" --prefix qgcut --fans "$FANS" > "$OUT/summary.json"
python3 - "$OUT/summary.json" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
print(f"cut of {s['prequeued']:,} fans: {s['cutSeconds']:.1f} s, {s['callsLogged']:,} Redis calls, "
      f"slowest {s['slowestCallUs'] / 1000:.1f} ms, slowest PING {s['slowestPingUs'] / 1000:.1f} ms, "
      f"verified {s['verified']}", file=sys.stderr)
PY
