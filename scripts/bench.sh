#!/usr/bin/env bash
# `make bench`: measures queuegate on this machine, everything on loopback, every step bounded,
# and writes docs/benchmarks.md and docs/bench-latency.png. Run by hand; results are committed.
#
# Steps: services; release build; queuegate run; warm-up; max join throughput (wrk, unique fans)
# against queuegate and against the ceiling example; fixed join rates (k6); a burst of 100,000
# unique fans with the drain checked in Redis; status lookups (wrk); peak RSS.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
RUN=$(date +%s)
OUT=.local/bench/$RUN
mkdir -p "$OUT"
log() { printf '[bench] %s\n' "$*" >&2; }

scripts/services.sh up
log "building (release)"
cargo build --release --locked --bin queuegate --example ceiling --example burst
K6=$(command -v k6 || echo "$HOME/go/bin/k6")
if [ ! -x "$K6" ]; then
  log "building k6 (go install go.k6.io/k6@latest)"
  go install go.k6.io/k6@latest
  K6="$HOME/go/bin/k6"
fi
command -v wrk >/dev/null || { sudo_=""; [ "$(id -u)" -ne 0 ] && sudo_=sudo; $sudo_ apt-get install -y -qq wrk >/dev/null; }
if [ ! -x .local/bench-venv/bin/python ] || ! .local/bench-venv/bin/python -c 'import matplotlib' 2>/dev/null; then
  python3 -m venv .local/bench-venv && .local/bench-venv/bin/pip install -q matplotlib
fi

PREFIX=qgbench-$RUN
ADMIN_TOKEN=bench-admin-token-0123456789
export QUEUEGATE_LOG=warn QUEUEGATE_REDIS_PREFIX=$PREFIX QUEUEGATE_DEMO_CONCERT=bench \
  QUEUEGATE_ADMIN_TOKEN=$ADMIN_TOKEN QUEUEGATE_INSECURE_DEV=true
./target/release/queuegate run > "$OUT/queuegate.log" 2>&1 &
QG=$!
CEIL=""
cleanup() { kill "$QG" 2>/dev/null || true; [ -n "$CEIL" ] && kill "$CEIL" 2>/dev/null || true; }
trap cleanup EXIT
for _ in $(seq 1 100); do curl -fsS http://127.0.0.1:8081/readyz >/dev/null 2>&1 && break; sleep 0.2; done
curl -fsS http://127.0.0.1:8081/readyz >/dev/null || { log "queuegate not ready"; exit 1; }
sleep 1

wrk_join() { # url seconds connections -> wrk output
  wrk -t2 -c"$3" -d"$2"s --latency -s loadtest/wrk-join.lua "$1" -- bench
}
log "warm-up (5 s)"
wrk_join http://127.0.0.1:8080 5 64 > "$OUT/warmup.txt"

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
declare -A PIDS=([queuegate]=$QG)
[ -f .local/run/kafka.pid ] && PIDS[kafka-broker]=$(cat .local/run/kafka.pid)
[ -f .local/run/redis.pid ] && PIDS[redis]=$(cat .local/run/redis.pid)
declare -A BEFORE
for n in "${!PIDS[@]}"; do BEFORE[$n]=$(cpu_ticks "${PIDS[$n]}"); done
T0=$(date +%s.%N)
log "max join throughput, queuegate (30 s, 128 connections)"
wrk_join http://127.0.0.1:8080 30 128 > "$OUT/wrk-queuegate.txt"
T1=$(date +%s.%N)
: > "$OUT/cpu-split.txt"
for n in "${!PIDS[@]}"; do
  after=$(cpu_ticks "${PIDS[$n]}")
  python3 -c "print('$n', round(($after - ${BEFORE[$n]}) / $(getconf CLK_TCK) / ($T1 - $T0) * 100))" >> "$OUT/cpu-split.txt"
done
grep -E 'Requests/sec|non-202|Non-2xx' "$OUT/wrk-queuegate.txt" >&2 || true

log "max join throughput, ceiling (30 s, 128 connections)"
./target/release/examples/ceiling 127.0.0.1:18080 > /dev/null 2>&1 &
CEIL=$!
sleep 1
wrk_join http://127.0.0.1:18080 30 128 > "$OUT/wrk-ceiling.txt"
kill "$CEIL"; CEIL=""
grep -E 'Requests/sec' "$OUT/wrk-ceiling.txt" >&2 || true

for rate in 2000 5000 10000 15000; do
  log "fixed rate $rate joins/s (k6, 20 s)"
  "$K6" run --quiet -e RATE=$rate -e DURATION=20s -e RUN="$RUN-$rate" --summary-export "$OUT/k6-$rate.json" \
    loadtest/rate.js > "$OUT/k6-$rate.txt" 2>&1 || true
  sleep 3
done

log "burst of 100,000 unique fans"
./target/release/examples/burst --fans 100000 --connections 256 --prefix "$PREFIX" > "$OUT/burst.json"
cat "$OUT/burst.json" >&2

log "status lookups (wrk, 15 s, 64 connections)"
TOKEN=$(curl -fsS -X POST http://127.0.0.1:8080/v1/concerts/bench/queue -H 'Content-Type: application/json' \
  -d '{"userId":"bench-poller"}' | sed -E 's/.*"token":"([^"]+)".*/\1/')
sleep 1
wrk -t2 -c64 -d15s --latency -H "Authorization: Bearer $TOKEN" http://127.0.0.1:8080/v1/concerts/bench/queue/bench-poller \
  > "$OUT/wrk-status.txt"
grep -E 'Requests/sec' "$OUT/wrk-status.txt" >&2 || true

grep -E 'VmHWM|VmRSS' "/proc/$QG/status" > "$OUT/rss.txt"
nproc > "$OUT/nproc.txt"
grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- > "$OUT/cpu.txt"
free -g | awk '/Mem:/ {print $2}' > "$OUT/mem.txt"

log "writing docs/benchmarks.md"
.local/bench-venv/bin/python scripts/bench_report.py "$OUT"
log "done: $OUT"
