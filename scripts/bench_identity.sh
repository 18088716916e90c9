#!/usr/bin/env bash
# Joins/s of the gateway in each fan identity mode, one run, same machine, same consumer:
# body, anonymous, and jwt with HS256 tokens (a secret) and with EdDSA, ES256 and RS256 tokens
# (a JWKS file) — the booking site's identity tokens, made by examples/fan_tokens.rs, 20,000
# accounts, each coming round again as a rejoin — measured with
# wrk exactly as `make bench` measures body-mode joins (2 threads, 256 connections), after a
# warm-up; plus the µs per join each verification costs (examples/identity_cost.rs). Runs on a
# shared VM drift by several percent from one process start to the next, so the modes are run
# in ROUNDS rounds, each in another order, and the medians compared.
#
#   scripts/bench_identity.sh [OUT_DIR] [ROUNDS]     (make bench calls it; needs `make services`)
#
# Writes OUT_DIR/identity-<mode>-<round>.txt (wrk output), identity-cost.json and
# identity-summary.json. Bounded: ROUNDS (default 3) × 6 × (5 s warm-up + 20 s) plus start-up.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
RUN=$(date +%s)
OUT=${1:-.local/bench-identity/$RUN}
ROUNDS=${2:-3}
mkdir -p "$OUT"
log() { printf '[bench-identity %s] %s\n' "$(date +%T)" "$*" >&2; }
command -v wrk >/dev/null || { log "wrk is needed (apt-get install wrk)"; exit 1; }

TOPIC=qgbench-id-$RUN
QUEUEGATE_KAFKA_TOPIC=$TOPIC scripts/services.sh up >/dev/null 2>&1
cargo build --release --locked --bin queuegate --example fan_tokens --example identity_cost 2>/dev/null
SECRET=bench-identity-jwt-secret-0123456789-0123456789
ADMIN_TOKEN=bench-admin-token-0123456789
./target/release/examples/fan_tokens --secret "$SECRET" --count 20000 --prefix "acct-$RUN-" > "$OUT/tokens-jwt.txt"
for alg in EdDSA ES256 RS256; do
  ./target/release/examples/fan_tokens --alg "$alg" --jwks "$OUT/jwks-$alg.json" --count 20000 \
    --prefix "acct-$alg-$RUN-" > "$OUT/tokens-jwt-$alg.txt"
done

export QUEUEGATE_LOG=warn QUEUEGATE_REDIS_PREFIX=qgbench-id-$RUN QUEUEGATE_ADMIN_TOKEN=$ADMIN_TOKEN \
  QUEUEGATE_TOKEN_SECRET=bench-token-secret-0123456789-0123456789 QUEUEGATE_INSECURE_DEV=true \
  QUEUEGATE_RATE_LIMIT_PER_IP=0 QUEUEGATE_FAN_JOINS_PER_SECOND=0 QUEUEGATE_FAN_STATUS_PER_SECOND=0 \
  QUEUEGATE_KAFKA_TOPIC=$TOPIC QUEUEGATE_KAFKA_GROUP=$TOPIC \
  QUEUEGATE_FAN_JWT_ISSUER=https://tickets.example QUEUEGATE_FAN_JWT_AUDIENCE=queuegate
QUEUEGATE_ADMIN_ADDR=127.0.0.1:8082 ./target/release/queuegate consumer > "$OUT/identity-consumer.log" 2>&1 &
CO=$!
GW=""
cleanup() { kill "$CO" 2>/dev/null || true; [ -n "$GW" ] && kill "$GW" 2>/dev/null || true; }
trap cleanup EXIT

MODES=(body anonymous jwt jwt-EdDSA jwt-ES256 jwt-RS256)
for round in $(seq 1 "$ROUNDS"); do
# Each round starts one mode further on, so no mode always runs first or last.
for i in "${!MODES[@]}"; do
  mode=${MODES[$(( (i + round - 1) % ${#MODES[@]} ))]}
  case "$mode" in
    jwt) QUEUEGATE_FAN_IDENTITY=jwt QUEUEGATE_FAN_JWT_SECRET=$SECRET ./target/release/queuegate gateway > "$OUT/identity-$mode-gateway.log" 2>&1 & ;;
    jwt-*) QUEUEGATE_FAN_IDENTITY=jwt QUEUEGATE_FAN_JWT_JWKS=$OUT/jwks-${mode#jwt-}.json ./target/release/queuegate gateway > "$OUT/identity-$mode-gateway.log" 2>&1 & ;;
    *) QUEUEGATE_FAN_IDENTITY=$mode ./target/release/queuegate gateway > "$OUT/identity-$mode-gateway.log" 2>&1 & ;;
  esac
  GW=$!
  for _ in $(seq 1 150); do curl -fsS http://127.0.0.1:8081/readyz >/dev/null 2>&1 && break; sleep 0.2; done
  curl -fsS -X PUT "http://127.0.0.1:8081/admin/v1/concerts/id-$mode" -H "Authorization: Bearer $ADMIN_TOKEN" \
    -H 'Content-Type: application/json' -d '{"state":"open","maxWaiting":0}' >/dev/null
  args=("id-$mode" "${mode%%-*}")
  [[ "$mode" == jwt* ]] && args+=("$OUT/tokens-$mode.txt")
  wrk -t2 -c256 -d5s -s loadtest/wrk-join.lua http://127.0.0.1:8080 -- "${args[@]}" >/dev/null
  log "round $round, $mode: wrk 20 s, 256 connections"
  wrk -t2 -c256 -d20s --latency -s loadtest/wrk-join.lua http://127.0.0.1:8080 -- "${args[@]}" > "$OUT/identity-$mode-$round.txt"
  grep -E 'Requests/sec|Non-2xx' "$OUT/identity-$mode-$round.txt" >&2 || true
  kill "$GW"; wait "$GW" 2>/dev/null || true
  GW=""
done
done
./target/release/examples/identity_cost > "$OUT/identity-cost.json"
cat "$OUT/identity-cost.json" >&2
python3 - "$OUT" "$ROUNDS" <<'PY'
import json, re, statistics, sys
out, rounds = sys.argv[1], int(sys.argv[2])
rps = {}
MODES = ("body", "anonymous", "jwt", "jwt-EdDSA", "jwt-ES256", "jwt-RS256")
for mode in MODES:
    runs, non2xx = [], 0
    for r in range(1, rounds + 1):
        text = open(f"{out}/identity-{mode}-{r}.txt").read()
        runs.append(float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1)))
        m = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
        non2xx += int(m.group(1)) if m else 0
    rps[mode] = statistics.median(runs)
    rps[mode + "_runs"] = runs
    rps[mode + "_non2xx"] = non2xx
for mode in MODES[1:]:
    rps[mode + "_ratio"] = rps[mode] / rps["body"]
json.dump(rps, open(f"{out}/identity-summary.json", "w"))
print(json.dumps(rps))
PY
