#!/usr/bin/env bash
# First come, first placed (issue 24), part of `make bench` (alone:
# `scripts/bench_order.sh [run-dir] [earlier-binary]`).
#
# With the local Kafka and Redis (scripts/services.sh), a 12-partition topic per case, one release
# gateway and one or two `queuegate consumer`s: loadgen joins ORDER_RATE (10,000) new fans a
# second for ORDER_SECONDS (10) s, while examples/placement watches the concert's queue in Redis:
# accept → placed latency (p50, p99, max) and the worst order inversion; loadgen's accepted rate
# and latency; each consumer's CPU (utime + stime from /proc) per join. Given a second argument
# (a `queuegate` binary of an earlier version), the same cases run with it too ("before").
# Results in <run-dir>/order/<case>.json; scripts/bench_report.py renders them.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
OUT=${1:-.local/bench/order-$(date +%s)}/order
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
OLD=${2:-}
RATE=${ORDER_RATE:-10000}
SECONDS_=${ORDER_SECONDS:-10}
log() { printf '[bench-order %s] %s\n' "$(date +%T)" "$*" >&2; }

scripts/services.sh up
cargo build --release --locked --bin queuegate --example loadgen --example placement
ready() { for _ in $(seq 1 150); do curl -fsS "http://127.0.0.1:$1/readyz" >/dev/null 2>&1 && return 0; sleep 0.2; done; return 1; }
ADMIN_TOKEN=bench-admin-token-0123456789
rm -f "$OUT/admission.pem"; ./target/release/queuegate keygen "$OUT/admission.pem" >/dev/null
export QUEUEGATE_LOG=warn QUEUEGATE_ADMIN_TOKEN=$ADMIN_TOKEN \
  QUEUEGATE_TOKEN_SECRET=bench-token-secret-0123456789-0123456789 QUEUEGATE_RATE_LIMIT_PER_IP=0 \
  QUEUEGATE_FAN_JOINS_PER_SECOND=0 QUEUEGATE_FAN_STATUS_PER_SECOND=0 QUEUEGATE_INSECURE_DEV=true \
  QUEUEGATE_FAN_IDENTITY=body QUEUEGATE_ADMISSION_KEY_FILE=$OUT/admission.pem
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
ALL=()
cleanup() { for p in "${ALL[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

# run_case <label> <binary> <consumers>
run_case() {
  local label=$1 bin=$2 consumers=$3 run topic pids=() cpids=() before=() i
  run=$(date +%s%N | cut -c1-13)
  topic=qgord-$run
  QUEUEGATE_KAFKA_TOPIC=$topic QUEUEGATE_KAFKA_PARTITIONS=12 scripts/services.sh up >/dev/null
  export QUEUEGATE_KAFKA_TOPIC=$topic QUEUEGATE_KAFKA_GROUP=$topic QUEUEGATE_REDIS_PREFIX=$topic
  for i in $(seq 1 "$consumers"); do
    QUEUEGATE_ADMIN_ADDR=127.0.0.1:$((8290 + i)) "$bin" consumer > "$OUT/$label-consumer$i.log" 2>&1 &
    cpids+=($!)
  done
  QUEUEGATE_HTTP_ADDR=127.0.0.1:8280 QUEUEGATE_ADMIN_ADDR=127.0.0.1:8281 "$bin" gateway > "$OUT/$label-gateway.log" 2>&1 &
  pids=("${cpids[@]}" $!)
  ALL+=("${pids[@]}")
  ready 8281 || { log "gateway not ready"; return 1; }
  for i in $(seq 1 "$consumers"); do ready $((8290 + i)) || { log "consumer not ready"; return 1; }; done
  curl -fsS -X PUT "http://127.0.0.1:8281/admin/v1/concerts/ord" -H "Authorization: Bearer $ADMIN_TOKEN" \
    -H 'Content-Type: application/json' -d '{"state":"open","maxWaiting":0}' >/dev/null
  sleep 5 # the concert in every cache, the partitions shared out
  for p in "${cpids[@]}"; do before+=("$(cpu_ticks "$p")"); done
  ./target/release/examples/placement --prefix "$topic" --concert ord --quiet-seconds 5 --max-seconds 180 \
    > "$OUT/$label-placement.json" &
  local watcher=$!
  ./target/release/examples/loadgen --addr 127.0.0.1:8280 --concert ord --rate "$RATE" --seconds "$SECONDS_" \
    --connections 512 --threads 2 > "$OUT/$label-loadgen.json"
  wait "$watcher"
  local ticks=0 n=0
  for p in "${cpids[@]}"; do ticks=$((ticks + $(cpu_ticks "$p") - before[n])); n=$((n + 1)); done
  python3 - "$OUT/$label" "$ticks" "$(getconf CLK_TCK)" "$consumers" "$label" <<'PY'
import json, sys
base, ticks, hz, consumers, label = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
place = json.load(open(base + "-placement.json")); load = json.load(open(base + "-loadgen.json"))
place.update({"case": label, "consumers": consumers, "loadgen": load,
              "consumer_cpu_us_per_join": ticks / hz * 1e6 / max(place["fans"], 1)})
json.dump(place, open(base + ".json", "w"), indent=1)
print(json.dumps(place))
PY
  kill "${pids[@]}" 2>/dev/null || true
  wait "${pids[@]}" 2>/dev/null || true
}

for n in 1 2; do
  log "this version, $n consumer(s): $RATE joins/s for $SECONDS_ s"
  run_case "after-$n" ./target/release/queuegate "$n"
  if [ -n "$OLD" ]; then
    log "earlier version ($OLD), $n consumer(s)"
    run_case "before-$n" "$OLD" "$n"
  fi
done
log "done: $OUT"
