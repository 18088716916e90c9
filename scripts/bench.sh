#!/usr/bin/env bash
# `make bench`: measures queuegate on this machine, everything on loopback, every step bounded,
# and writes docs/benchmarks.md and docs/bench-latency.png. Run by hand; results are committed.
#
# Topology: what docker-compose.yml ships — `queuegate gateway` and `queuegate consumer` as two
# processes — next to the Kafka broker, Redis and the load generator, all on this machine's cores.
#
# Steps (each on its own open concert, so each can be checked in Redis on its own):
#   warm-up; maximum join throughput (wrk, unique fans) against queuegate and against the
#   ceiling example; fixed join rates, open loop (examples/loadgen), 25,000/s for 30 s among
#   them; the same rates with k6 where k6 can offer them; a burst of 100,000 unique fans
#   (examples/burst); status lookups (wrk); then every concert's Redis queue is checked
#   against the 202s counted, and the processes' peak RSS is read; last, joins/s in each fan
#   identity mode (scripts/bench_identity.sh) and what each verification costs; fixed rates and a
#   burst on the three-broker Kafka and the Redis Cluster (scripts/bench_cluster.sh); 15,000 and
#   4 x 15,000 status streams while a concert admits 500/s (scripts/bench_watchers.sh); presale
#   events: joins/s with events on vs off, the relay's events/s, webhook deliveries/s and delay
#   (scripts/bench_events.sh)
#   lanes: joins/s with two lanes vs one, watchers over two lanes, 100,000 codes uploaded
#   (scripts/bench_lanes.sh); a pre-queue
#   of 100,000 fans cut at opensAt (scripts/bench_fairstart.sh); a million fans through one
#   process (scripts/bench_stadium.sh); last of all
#   the 30-minute soak with faults (scripts/soak.sh).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
RUN=$(date +%s)
OUT=.local/bench/$RUN
mkdir -p "$OUT"
log() { printf '[bench %s] %s\n' "$(date +%T)" "$*" >&2; }

# A topic of its own (12 partitions, like queue.entry): the consumer's fresh group starts at
# its beginning, not in the records of earlier runs.
TOPIC=qgbench-$RUN
QUEUEGATE_KAFKA_TOPIC=$TOPIC scripts/services.sh up
log "building (release)"
cargo build --release --locked --bin queuegate --example ceiling --example burst --example loadgen
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
ADMIN=http://127.0.0.1:8081
ADMIN_TOKEN=bench-admin-token-0123456789
export QUEUEGATE_LOG=warn QUEUEGATE_REDIS_PREFIX=$PREFIX QUEUEGATE_ADMIN_TOKEN=$ADMIN_TOKEN \
  QUEUEGATE_TOKEN_SECRET=bench-token-secret-0123456789-0123456789 QUEUEGATE_RATE_LIMIT_PER_IP=0 QUEUEGATE_FAN_JOINS_PER_SECOND=0 QUEUEGATE_FAN_STATUS_PER_SECOND=0 \
  QUEUEGATE_INSECURE_DEV=true QUEUEGATE_KAFKA_TOPIC=$TOPIC QUEUEGATE_KAFKA_GROUP=qgbench-$RUN
./target/release/queuegate gateway > "$OUT/gateway.log" 2>&1 &
GW=$!
QUEUEGATE_ADMIN_ADDR=127.0.0.1:8082 ./target/release/queuegate consumer > "$OUT/consumer.log" 2>&1 &
CO=$!
CEIL=""
cleanup() { kill "$GW" "$CO" 2>/dev/null || true; [ -n "$CEIL" ] && kill "$CEIL" 2>/dev/null || true; }
trap cleanup EXIT
for _ in $(seq 1 150); do
  curl -fsS $ADMIN/readyz >/dev/null 2>&1 && curl -fsS http://127.0.0.1:8082/readyz >/dev/null 2>&1 && break
  sleep 0.2
done
curl -fsS $ADMIN/readyz >/dev/null || { log "queuegate not ready"; exit 1; }
sleep 3 # the consumer joins its group

: > "$OUT/concerts.txt"
concert() { # name -> an open concert, recorded for the Redis check
  curl -fsS -X PUT "$ADMIN/admin/v1/concerts/$1" -H "Authorization: Bearer $ADMIN_TOKEN" \
    -H 'Content-Type: application/json' -d '{"state":"open","maxWaiting":0}' >/dev/null
  echo "$1" >> "$OUT/concerts.txt"
}
for c in warmup wrk burst status; do concert "$c"; done
for rate in 2500 5000 10000 15000 20000 25000; do concert "lg$rate"; done
for rate in 2000 5000; do concert "k6$rate"; done
sleep 2 # the gateway's concert cache refreshes every second

REDIS_PORT=${REDIS_PORT:-6379}
rcli() { redis-cli -p "$REDIS_PORT" "$@" | tr -d '\r'; }
# Redis rewrites its AOF by itself when it has doubled (a fork and a child busy for seconds, on
# the same two cores). Each timed step starts with no rewrite running, and the report says which
# steps had one start during them.
aof_rewrites() { rcli INFO persistence | awk -F: '/^aof_rewrites:|^aof_rewrite_in_progress:/ {n += $2} END {print n + 0}'; }
settle() {
  local i
  for i in $(seq 1 120); do
    rcli INFO persistence | grep -q '^aof_rewrite_in_progress:1' || return 0
    [ "$i" = 1 ] && log "waiting for Redis's AOF rewrite to finish"
    sleep 1
  done
}
timed() { # name command... : runs the command after settle, records AOF rewrites during it
  local name=$1 before
  shift
  settle
  before=$(aof_rewrites)
  "$@"
  echo "$name $(( $(aof_rewrites) - before ))" >> "$OUT/aof-rewrites.txt"
}
: > "$OUT/aof-rewrites.txt"

wrk_join() { # url seconds connections concert -> wrk output
  wrk -t2 -c"$3" -d"$2"s --latency -s loadtest/wrk-join.lua "$1" -- "$4"
}
# A new topic is slower for its first ~15 s of heavy load (measured: 23,700 then 30,800 joins/s
# in two back-to-back 15 s runs on a fresh topic); the warm-up takes that, and the JITs.
log "warm-up (20 s)"
wrk_join http://127.0.0.1:8080 20 256 warmup > "$OUT/warmup.txt"
sleep 3

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
declare -A PIDS=([gateway]=$GW [consumer]=$CO)
[ -f .local/run/kafka.pid ] && PIDS[kafka-broker]=$(cat .local/run/kafka.pid)
[ -f .local/run/redis.pid ] && PIDS[redis]=$(cat .local/run/redis.pid)
declare -A BEFORE
settle
for n in "${!PIDS[@]}"; do BEFORE[$n]=$(cpu_ticks "${PIDS[$n]}"); done
T0=$(date +%s.%N)
log "max join throughput, queuegate (wrk, 30 s, 256 connections)"
timed wrk wrk_join http://127.0.0.1:8080 30 256 wrk > "$OUT/wrk-queuegate.txt"
T1=$(date +%s.%N)
: > "$OUT/cpu-split.txt"
for n in "${!PIDS[@]}"; do
  after=$(cpu_ticks "${PIDS[$n]}")
  python3 -c "print('$n', round(($after - ${BEFORE[$n]}) / $(getconf CLK_TCK) / ($T1 - $T0) * 100))" >> "$OUT/cpu-split.txt"
done
grep -E 'Requests/sec|Non-2xx|Socket errors' "$OUT/wrk-queuegate.txt" >&2 || true
sleep 3

log "max join throughput, ceiling (wrk, 30 s, 256 connections)"
./target/release/examples/ceiling 127.0.0.1:18080 > /dev/null 2>&1 &
CEIL=$!
sleep 1
wrk_join http://127.0.0.1:18080 30 256 bench > "$OUT/wrk-ceiling.txt"
kill "$CEIL"; CEIL=""
grep -E 'Requests/sec' "$OUT/wrk-ceiling.txt" >&2 || true

for rate in 2500 5000 10000 15000 20000 25000; do
  secs=20; [ "$rate" = 25000 ] && secs=30
  log "fixed rate $rate joins/s (loadgen, open loop, $secs s)"
  timed "lg$rate" ./target/release/examples/loadgen --concert "lg$rate" --rate "$rate" --seconds "$secs" --connections 512 \
    --threads 2 > "$OUT/loadgen-$rate.json"
  cat "$OUT/loadgen-$rate.json" >&2
  sleep 3
done

for rate in 2000 5000; do
  log "fixed rate $rate joins/s (k6, 20 s)"
  timed "k6$rate" "$K6" run --quiet -e RATE=$rate -e DURATION=20s -e CONCERT="k6$rate" -e RUN="$RUN-$rate" \
    --summary-export "$OUT/k6-$rate.json" loadtest/rate.js > "$OUT/k6-$rate.txt" 2>&1 || true
  sleep 3
done

log "burst of 100,000 unique fans"
timed burst ./target/release/examples/burst --fans 100000 --connections 256 --concert burst --prefix "$PREFIX" > "$OUT/burst.json"
cat "$OUT/burst.json" >&2

log "status lookups (wrk, 15 s, 64 connections)"
TOKEN=$(curl -fsS -X POST http://127.0.0.1:8080/v1/concerts/status/queue -H 'Content-Type: application/json' \
  -d '{"userId":"bench-poller"}' | sed -E 's/.*"token":"([^"]+)".*/\1/')
sleep 1
timed status wrk -t2 -c64 -d15s --latency -H "Authorization: Bearer $TOKEN" http://127.0.0.1:8080/v1/concerts/status/queue/bench-poller \
  > "$OUT/wrk-status.txt"
grep -E 'Requests/sec' "$OUT/wrk-status.txt" >&2 || true

log "checking every concert's queue in Redis"
: > "$OUT/redis-check.txt"
while read -r c; do
  prev=-1
  for _ in $(seq 1 120); do # the consumer drains; the queue stops growing
    n=$(rcli LLEN "$PREFIX:{$c}:waiting")
    [ "$n" = "$prev" ] && break
    prev=$n
    sleep 1
  done
  echo "$c $(rcli LLEN "$PREFIX:{$c}:waiting") $(rcli HLEN "$PREFIX:{$c}:joined") $(rcli ZCARD "$PREFIX:{$c}:rank")" \
    >> "$OUT/redis-check.txt"
done < "$OUT/concerts.txt"
cat "$OUT/redis-check.txt" >&2

for n in gateway consumer; do
  grep -E 'VmHWM|VmRSS' "/proc/${PIDS[$n]}/status" | sed "s/^/$n /" >> "$OUT/rss.txt"
done
nproc > "$OUT/nproc.txt"
grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- > "$OUT/cpu.txt"
free -g | awk '/Mem:/ {print $2}' > "$OUT/mem.txt"

log "joins/s per fan identity mode (scripts/bench_identity.sh)"
kill "$GW" "$CO" 2>/dev/null || true
wait "$GW" "$CO" 2>/dev/null || true
scripts/bench_identity.sh "$OUT"

log "the clusters (scripts/bench_cluster.sh)"
scripts/bench_cluster.sh "$OUT"

log "watching at scale (scripts/bench_watchers.sh)"
scripts/bench_watchers.sh "$OUT"

log "presale lanes (scripts/bench_lanes.sh)"
scripts/bench_lanes.sh "$OUT"

log "events out (scripts/bench_events.sh)"
scripts/bench_events.sh "$OUT"

log "the fair start (scripts/bench_fairstart.sh)"
scripts/bench_fairstart.sh "$OUT"

log "the stadium: ${STADIUM_FANS:-1000000} fans through one process (scripts/bench_stadium.sh)"
scripts/bench_stadium.sh "$OUT"

log "the gate (scripts/bench_gate.sh)"
scripts/bench_gate.sh "$OUT"

log "first come, first placed (scripts/bench_order.sh; ORDER_BEFORE=<earlier binary> compares)"
scripts/bench_order.sh "$OUT" "${ORDER_BEFORE:-}"

log "soak (${SOAK_MINUTES:-30} min, scripts/soak.sh)"
scripts/soak.sh "$OUT"

log "writing docs/benchmarks.md"
.local/bench-venv/bin/python scripts/bench_report.py "$OUT"
log "done: $OUT"
