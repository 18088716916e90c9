#!/usr/bin/env bash
# Every test, as `make test` runs them (after `make services services-cluster` and
# `scripts/services.sh tools`): cargo-nextest (.config/nextest.toml) runs all targets on the
# single-node services, and beside it the api tests again on the three-broker Kafka and the
# Redis Cluster. Nothing is retried; each run writes a JUnit report of every test's time:
#   .local/nextest/default/junit.xml   all targets, single-node Kafka and Redis
#   .local/nextest/cluster/junit.xml   the api tests on the clusters
# Extra arguments go to both runs (e.g. `scripts/test.sh -E 'test(join)'`).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
NEXTEST="$ROOT/.local/cargo/bin/cargo-nextest"
CLUSTER_BROKERS=${CLUSTER_BROKERS:-127.0.0.1:19092,127.0.0.1:19093,127.0.0.1:19094}
CLUSTER_REDIS=${CLUSTER_REDIS:-redis+cluster://127.0.0.1:7000,127.0.0.1:7001,127.0.0.1:7002}
[ -x "$NEXTEST" ] || scripts/services.sh nextest

log() { printf '[test] %s\n' "$*" >&2; }

# Build once, so the two runs below do not wait on each other's compile.
log "building the tests"
cargo test --all-targets --locked --no-run --quiet
started=$(date +%s)

mkdir -p .local/nextest
log "the api tests on the clusters, in the background (log: .local/nextest/cluster.log)"
QUEUEGATE_KAFKA_BROKERS=$CLUSTER_BROKERS QUEUEGATE_REDIS_URL=$CLUSTER_REDIS \
  "$NEXTEST" nextest run --locked --profile cluster --test api --no-fail-fast "$@" >.local/nextest/cluster.log 2>&1 &
cluster_pid=$!

status=0
"$NEXTEST" nextest run --locked --all-targets --no-fail-fast "$@" || status=$?

cluster_status=0
wait "$cluster_pid" || cluster_status=$?
if [ "$cluster_status" -eq 0 ]; then
  log "the api tests on the clusters passed: $(grep -E '^ +Summary' .local/nextest/cluster.log | tail -1)"
else
  log "the api tests on the clusters failed; their output:"
  tail -300 .local/nextest/cluster.log >&2
fi
log "done in $(( $(date +%s) - started )) s; JUnit reports in .local/nextest/{default,cluster}/junit.xml"
[ "$status" -eq 0 ] && [ "$cluster_status" -eq 0 ]
