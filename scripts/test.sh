#!/usr/bin/env bash
# Every test, as `make test` runs them: with SETUP=1 (what `make test` passes) the tests are
# built while the services, the clusters and the test tools start (`scripts/services.sh up`,
# `scripts/cluster.sh up`, `scripts/services.sh tools`: mostly waiting on the JVM and downloads,
# so the build has the cores), else they must be up already. Then cargo-nextest (.config/nextest.toml) runs all targets on the
# single-node services, then the api tests again on the three-broker Kafka and the Redis
# Cluster (but those of the HTTP layer and the proxies: the cluster profile's default-filter). Nothing is retried; each run writes a JUnit report of every test's time:
#   .local/nextest/default/junit.xml   all targets, single-node Kafka and Redis
#   .local/nextest/cluster/junit.xml   the api tests on the clusters (the profile's filter)
# Extra arguments go to both runs (e.g. `scripts/test.sh -E 'test(join)'`).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
NEXTEST="$ROOT/.local/cargo/bin/cargo-nextest"
CLUSTER_BROKERS=${CLUSTER_BROKERS:-127.0.0.1:19092,127.0.0.1:19093,127.0.0.1:19094}
CLUSTER_REDIS=${CLUSTER_REDIS:-redis+cluster://127.0.0.1:7000,127.0.0.1:7001,127.0.0.1:7002}
[ -x "$NEXTEST" ] || scripts/services.sh nextest

log() { printf '[test] %s\n' "$*" >&2; }

# Build once, before the runs.
if [ "${SETUP:-0}" = 1 ]; then
  scripts/services.sh build-deps # the build's own packages first (once; quick when there)
  mkdir -p .local
  log "building the tests while the services start (log: .local/test-build.log)"
  built=$(date +%s)
  cargo test --all-targets --locked --no-run --quiet > .local/test-build.log 2>&1 &
  build=$!
  setup_status=0
  { scripts/services.sh up && scripts/cluster.sh up && scripts/services.sh tools; } || setup_status=$?
  build_status=0
  wait "$build" || build_status=$?
  cat .local/test-build.log >&2
  [ "$build_status" -eq 0 ] || { log "the test build failed"; exit "$build_status"; }
  [ "$setup_status" -eq 0 ] || { log "starting the services failed"; exit "$setup_status"; }
  log "set up and built in $(( $(date +%s) - built )) s"
else
  log "building the tests"
  cargo test --all-targets --locked --no-run --quiet
fi
started=$(date +%s)

mkdir -p .local/nextest
status=0
"$NEXTEST" nextest run --locked --all-targets --no-fail-fast "$@" || status=$?

# After the rest, not beside it: on two cores the two runs together loaded the machine into
# timing failures (docs/development.md).
log "the api tests on the clusters (log: .local/nextest/cluster.log)"
cluster_status=0
QUEUEGATE_KAFKA_BROKERS=$CLUSTER_BROKERS QUEUEGATE_REDIS_URL=$CLUSTER_REDIS \
  "$NEXTEST" nextest run --locked --profile cluster --test api --no-fail-fast "$@" 2>&1 \
  | tee .local/nextest/cluster.log || cluster_status=$?
log "done in $(( $(date +%s) - started )) s; JUnit reports in .local/nextest/{default,cluster}/junit.xml"
[ "$status" -eq 0 ] && [ "$cluster_status" -eq 0 ]
