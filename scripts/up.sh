#!/usr/bin/env bash
# `make up`: Kafka + Redis, a release build, and `queuegate run` with a demo concert open.
# Ctrl-C stops queuegate and whatever services this script started (ones already running stay).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

scripts/services.sh check up
status_before=$(scripts/services.sh status)
scripts/services.sh up

mkdir -p .local
if [ -z "${QUEUEGATE_TOKEN_SECRET:-}" ]; then
  [ -s .local/dev-token-secret ] || head -c 32 /dev/urandom | base64 | tr -d '\n=' > .local/dev-token-secret
  QUEUEGATE_TOKEN_SECRET=$(cat .local/dev-token-secret)
fi
export QUEUEGATE_TOKEN_SECRET
if [ -z "${QUEUEGATE_ADMISSION_KEY_FILE:-}" ]; then
  # A dev Ed25519 key for admission tokens, made once (production brings its own PEM file).
  [ -s .local/admission-key.pem ] || openssl genpkey -algorithm ed25519 -out .local/admission-key.pem
  QUEUEGATE_ADMISSION_KEY_FILE="$ROOT/.local/admission-key.pem"
fi
export QUEUEGATE_ADMISSION_KEY_FILE
export QUEUEGATE_ADMIN_TOKEN=${QUEUEGATE_ADMIN_TOKEN:-dev-admin-token-change-me}
# A laptop loop: loopback listeners, the example admin token, and (unless
# QUEUEGATE_FAN_IDENTITY says otherwise) fans who name themselves (body mode).
export QUEUEGATE_INSECURE_DEV=${QUEUEGATE_INSECURE_DEV:-true}
export QUEUEGATE_DEMO_CONCERT=${QUEUEGATE_DEMO_CONCERT:-demo}
export QUEUEGATE_LOG_FORMAT=${QUEUEGATE_LOG_FORMAT:-pretty}
HTTP=${QUEUEGATE_HTTP_ADDR:-127.0.0.1:8080}
ADMIN=${QUEUEGATE_ADMIN_ADDR:-127.0.0.1:8081}

echo "[up] building queuegate (release)…" >&2
cargo build --release --locked --bin queuegate

./target/release/queuegate run &
QG=$!

stop_all() {
  trap - INT TERM EXIT
  kill -TERM "$QG" 2>/dev/null && wait "$QG" 2>/dev/null || true
  # Stop only what was not already running before `make up`.
  echo "$status_before" | grep -q '^kafka: up' || stop_kafka=1
  echo "$status_before" | grep -q '^redis: up' || stop_redis=1
  if [ -n "${stop_kafka:-}${stop_redis:-}" ]; then scripts/services.sh down; fi
}
trap stop_all INT TERM EXIT

for _ in $(seq 1 100); do
  curl -fsS "http://$ADMIN/healthz" >/dev/null 2>&1 && break
  sleep 0.1
done
C=$QUEUEGATE_DEMO_CONCERT
cat <<MSG

  queuegate is running (Ctrl-C stops it and the services it started).

  Waiting room:        http://$HTTP/c/$C   (all rooms: http://$HTTP/)
  Operators' console:  http://$ADMIN/admin/   (admin token: $QUEUEGATE_ADMIN_TOKEN)
  Join:                curl -i -X POST http://$HTTP/v1/concerts/$C/queue -H 'Content-Type: application/json' -d '{"userId":"fan-1"}'
  Admin listing:       curl -H 'Authorization: Bearer $QUEUEGATE_ADMIN_TOKEN' http://$ADMIN/admin/v1/concerts/$C/queue
  Concerts:            curl -H 'Authorization: Bearer $QUEUEGATE_ADMIN_TOKEN' http://$ADMIN/admin/v1/concerts
  Admit two fans:      curl -X POST -H 'Authorization: Bearer $QUEUEGATE_ADMIN_TOKEN' -H 'Content-Type: application/json' -d '{"count":2}' http://$ADMIN/admin/v1/concerts/$C/admit
  Token public key:    http://$HTTP/.well-known/jwks.json
  Readiness, metrics:  http://$ADMIN/readyz  http://$ADMIN/metrics

MSG
wait "$QG"
