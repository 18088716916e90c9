#!/usr/bin/env bash
# Compare the join and status throughput of two queuegate binaries on this machine, the way
# `make bench` measures them (gateway and consumer as two processes, body-mode fans, wrk with
# 256 connections for joins and 64 for one fan's status), alternating A and B so that drift of
# a shared VM falls on both. Bounded: ROUNDS × (10 s warm-up + 30 s joins + 15 s status).
#
#   scripts/compare.sh A_BINARY B_BINARY [ROUNDS]      (default 2 rounds)
#
# Needs `make services` running and wrk. Prints one line per run and the medians.
set -euo pipefail
A=$1 B=$2 ROUNDS=${3:-2}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
RUN=$(date +%s)
OUT=.local/compare/$RUN
mkdir -p "$OUT"
log() { printf '[compare %s] %s\n' "$(date +%T)" "$*" >&2; }
command -v wrk >/dev/null || { log "wrk is needed (apt-get install wrk)"; exit 1; }

ADMIN_TOKEN=compare-admin-token-0123456789
one() { # label binary round
  local label=$1 bin=$2 round=$3 tag="$RUN-$1-$3"
  QUEUEGATE_KAFKA_TOPIC=qgcmp-$tag QUEUEGATE_KAFKA_PARTITIONS=12 scripts/services.sh up >/dev/null 2>&1
  export QUEUEGATE_LOG=warn QUEUEGATE_REDIS_PREFIX=qgcmp-$tag QUEUEGATE_ADMIN_TOKEN=$ADMIN_TOKEN \
    QUEUEGATE_TOKEN_SECRET=compare-token-secret-0123456789-0123456789 QUEUEGATE_INSECURE_DEV=true QUEUEGATE_RATE_LIMIT_PER_IP=0 QUEUEGATE_FAN_JOINS_PER_SECOND=0 QUEUEGATE_FAN_STATUS_PER_SECOND=0 \
    QUEUEGATE_KAFKA_TOPIC=qgcmp-$tag QUEUEGATE_KAFKA_GROUP=qgcmp-$tag
  "$bin" gateway > "$OUT/$label-$round-gateway.log" 2>&1 &
  local gw=$!
  QUEUEGATE_ADMIN_ADDR=127.0.0.1:8082 "$bin" consumer > "$OUT/$label-$round-consumer.log" 2>&1 &
  local co=$!
  for _ in $(seq 1 150); do curl -fsS http://127.0.0.1:8081/readyz >/dev/null 2>&1 && break; sleep 0.2; done
  for c in warm joins status; do
    curl -fsS -X PUT "http://127.0.0.1:8081/admin/v1/concerts/$c" -H "Authorization: Bearer $ADMIN_TOKEN" \
      -H 'Content-Type: application/json' -d '{"state":"open","maxWaiting":0}' >/dev/null
  done
  wrk -t2 -c256 -d10s -s loadtest/wrk-join.lua http://127.0.0.1:8080 -- warm >/dev/null
  wrk -t2 -c256 -d30s --latency -s loadtest/wrk-join.lua http://127.0.0.1:8080 -- joins > "$OUT/$label-$round-joins.txt"
  local token
  token=$(curl -fsS -X POST http://127.0.0.1:8080/v1/concerts/status/queue -H 'Content-Type: application/json' \
    -d '{"userId":"poller"}' | sed -E 's/.*"token":"([^"]+)".*/\1/')
  sleep 1
  wrk -t2 -c64 -d15s --latency -H "Authorization: Bearer $token" \
    http://127.0.0.1:8080/v1/concerts/status/queue/poller > "$OUT/$label-$round-status.txt"
  kill "$gw" "$co"; wait "$gw" "$co" 2>/dev/null || true
  local j s
  j=$(awk '/Requests\/sec/ {print $2}' "$OUT/$label-$round-joins.txt")
  s=$(awk '/Requests\/sec/ {print $2}' "$OUT/$label-$round-status.txt")
  echo "$label $round $j $s" | tee -a "$OUT/results.txt"
}

log "results in $OUT (label round joins/s status/s)"
for r in $(seq 1 "$ROUNDS"); do
  if [ $((r % 2)) -eq 1 ]; then one A "$A" "$r"; one B "$B" "$r"; else one B "$B" "$r"; one A "$A" "$r"; fi
done
python3 - "$OUT/results.txt" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
for label in ("A", "B"):
    j = [float(r[2]) for r in rows if r[0] == label]
    s = [float(r[3]) for r in rows if r[0] == label]
    print(f"{label}: joins/s median {statistics.median(j):,.0f} {j}; status/s median {statistics.median(s):,.0f} {s}")
PY
