#!/usr/bin/env bash
# The gate, part of `make bench` (alone: `scripts/bench_gate.sh [run-dir]`).
#
# With the local Kafka and Redis (scripts/services.sh), one `queuegate consumer` (with the
# admitter) and one release gateway:
#   1. gate checks of one live session (wrk, with its cookie and nginx's headers), next to the
#      same listener serving the static JWKS document, in one run; Redis's commands over the gate
#      run (INFO total_commands_processed, every background task of both processes included)
#      divided by the checks made;
#   2. examples/gate_sessions: GATE_FANS (20,000) fans join, are admitted and exchange their
#      tokens for sessions: Redis memory and gateway RSS per session; then nobody checks again,
#      and the time until the admission rounds have ended them for idleness
#      (sessionIdleSeconds GATE_IDLE, 20);
#   3. standby's direct entries (a second concert, `queueingMethod: "standby"`, maxActive
#      1,000,000, no rate): wrk's gate checks without a cookie, each a new visitor let straight in, next to step
#      1's checks of a live session; Redis calls (INFO commandstats: EVALSHA) per direct entry.
# Results in <run-dir>/gate/; scripts/bench_report.py renders them.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
OUT=${1:-.local/bench/gate-$(date +%s)}/gate
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
RUN=$(date +%s)
FANS=${GATE_FANS:-20000}
IDLE=${GATE_IDLE:-20}
log() { printf '[bench-gate %s] %s\n' "$(date +%T)" "$*" >&2; }

TOPIC=qggate-$RUN
QUEUEGATE_KAFKA_TOPIC=$TOPIC scripts/services.sh up
cargo build --release --locked --bin queuegate --example gate_sessions

PREFIX=qggate-$RUN
ADMIN_TOKEN=bench-admin-token-0123456789
export QUEUEGATE_LOG=warn QUEUEGATE_REDIS_PREFIX=$PREFIX QUEUEGATE_ADMIN_TOKEN=$ADMIN_TOKEN \
  QUEUEGATE_TOKEN_SECRET=bench-token-secret-0123456789-0123456789 QUEUEGATE_RATE_LIMIT_PER_IP=0 \
  QUEUEGATE_FAN_JOINS_PER_SECOND=0 QUEUEGATE_FAN_STATUS_PER_SECOND=0 QUEUEGATE_INSECURE_DEV=true \
  QUEUEGATE_FAN_IDENTITY=body QUEUEGATE_KAFKA_TOPIC=$TOPIC QUEUEGATE_KAFKA_GROUP=$PREFIX \
  QUEUEGATE_PUBLIC_URL=http://127.0.0.1:8095 QUEUEGATE_ADMISSION_KEY_FILE=$OUT/admission.pem
REDIS_PORT=${REDIS_PORT:-6379}
redis_commands() { redis-cli -p "$REDIS_PORT" INFO stats | tr -d '\r' | awk -F: '/^total_commands_processed:/ {print $2}'; }
ready() { for _ in $(seq 1 150); do curl -fsS "http://127.0.0.1:$1/readyz" >/dev/null 2>&1 && return 0; sleep 0.2; done; return 1; }
rm -f "$OUT/admission.pem"; ./target/release/queuegate keygen "$OUT/admission.pem" >/dev/null

PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT
QUEUEGATE_ADMIN_ADDR=127.0.0.1:8196 ./target/release/queuegate consumer > "$OUT/consumer.log" 2>&1 &
PIDS+=($!)
QUEUEGATE_HTTP_ADDR=127.0.0.1:8095 QUEUEGATE_ADMIN_ADDR=127.0.0.1:8195 ./target/release/queuegate gateway > "$OUT/gateway.log" 2>&1 &
GW=$!
PIDS+=($GW)
ready 8196 && ready 8195 || { log "not ready"; exit 1; }
curl -fsS -X PUT "http://127.0.0.1:8195/admin/v1/concerts/gb" -H "Authorization: Bearer $ADMIN_TOKEN" \
  -H 'Content-Type: application/json' \
  -d "{\"state\":\"open\",\"tokenTtlSeconds\":3600,\"sessionIdleSeconds\":$IDLE,\"sessionMaxSeconds\":3600,\"maxWaiting\":0}" >/dev/null
sleep 2 # the gateway's concert cache

log "one session for wrk"
./target/release/examples/gate_sessions cookie http://127.0.0.1:8095 http://127.0.0.1:8195 "$ADMIN_TOKEN" gb "$OUT/cookie.txt"
COOKIE=$(cat "$OUT/cookie.txt")
log "gate checks (wrk -t2 -c64 -d15s), then the JWKS document on the same listener"
before=$(redis_commands)
wrk -t2 -c64 -d15s --latency -H "Cookie: $COOKIE" -H "X-Original-URI: /book" -H "X-Forwarded-Host: shop.example" \
  http://127.0.0.1:8095/v1/concerts/gb/gate > "$OUT/wrk-gate.txt"
after=$(redis_commands)
echo "$((after - before))" > "$OUT/redis-commands-during-gate.txt"
wrk -t2 -c64 -d15s --latency http://127.0.0.1:8095/.well-known/jwks.json > "$OUT/wrk-jwks.txt"
curl -fsS http://127.0.0.1:8195/metrics | grep '^queuegate_gate_checks_total' > "$OUT/gate-checks.txt"
# The wrk session's slot back, so it does not count below.
curl -fsS -X DELETE "http://127.0.0.1:8195/admin/v1/concerts/gb/sessions/wrk-fan" -H "Authorization: Bearer $ADMIN_TOKEN" || true

log "$FANS sessions, their memory, and their end for idleness ($IDLE s)"
./target/release/examples/gate_sessions sessions http://127.0.0.1:8095 http://127.0.0.1:8195 "$ADMIN_TOKEN" gb \
  "$FANS" "$IDLE" "$GW" "$REDIS_PORT" "$OUT/summary.json"
log "standby: direct entries (wrk -t2 -c64 -d15s, no cookie: each check a new visitor let straight in)"
curl -fsS -X PUT "http://127.0.0.1:8195/admin/v1/concerts/gs" -H "Authorization: Bearer $ADMIN_TOKEN" \
  -H 'Content-Type: application/json' \
  -d '{"state":"open","queueingMethod":"standby","maxActive":1000000,"sessionIdleSeconds":5,"sessionMaxSeconds":60,"maxWaiting":0}' >/dev/null
sleep 2 # the gateway's concert cache
evalsha() { redis-cli -p "$REDIS_PORT" INFO commandstats | tr -d '\r' | sed -n 's/^cmdstat_evalsha:calls=\([0-9]*\),.*/\1/p'; }
direct() { curl -fsS http://127.0.0.1:8195/metrics | sed -n 's/^queuegate_gate_checks_total{outcome="direct"} //p'; }
calls_before=$(evalsha); direct_before=$(direct)
wrk -t2 -c64 -d15s --latency -H "X-Original-URI: /book" -H "X-Forwarded-Host: shop.example" \
  http://127.0.0.1:8095/v1/concerts/gs/gate > "$OUT/wrk-direct.txt"
calls_after=$(evalsha); direct_after=$(direct)
printf '{"evalsha": %s, "direct": %s}\n' "$((calls_after - calls_before))" "$(awk -v a="$direct_after" -v b="$direct_before" 'BEGIN { printf "%d", a - b }')" > "$OUT/direct.json"
log "done: $OUT"
