#!/usr/bin/env bash
# The clusters' part of `make bench` (alone: `scripts/bench_cluster.sh [run-dir]`).
#
# `make services-cluster` (three KRaft brokers, RF 3, min.insync.replicas 2; six-node Redis
# Cluster, AOF always), one gateway and one consumer (release) against them, on this machine's
# cores like the rest of the benchmark. Steps: a 10 s warm-up; fixed join rates, open loop
# (examples/loadgen), 20 s each, with the CPU time of every process over each step; a burst of
# 50,000 unique fans (examples/burst) checked in the Redis Cluster. Results in
# <run-dir>/cluster/; scripts/bench_report.py turns them into a section of docs/benchmarks.md
# and the per-join costs docs/explain-costs.md uses.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
OUT=${1:-.local/bench/cluster-$(date +%s)}/cluster
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
RUN=$(date +%s)
log() { printf '[bench-cluster %s] %s\n' "$(date +%T)" "$*" >&2; }

BROKERS=127.0.0.1:19092,127.0.0.1:19093,127.0.0.1:19094
REDIS=redis+cluster://127.0.0.1:7000,127.0.0.1:7001,127.0.0.1:7002
TOPIC=qgbenchc-$RUN
QUEUEGATE_KAFKA_TOPIC=$TOPIC scripts/cluster.sh up
cargo build --release --locked --bin queuegate --example burst --example loadgen

PREFIX=qgbenchc-$RUN
ADMIN=http://127.0.0.1:8081
ADMIN_TOKEN=bench-admin-token-0123456789
export QUEUEGATE_LOG=warn QUEUEGATE_REDIS_PREFIX=$PREFIX QUEUEGATE_ADMIN_TOKEN=$ADMIN_TOKEN \
  QUEUEGATE_TOKEN_SECRET=bench-token-secret-0123456789-0123456789 QUEUEGATE_RATE_LIMIT_PER_IP=0 \
  QUEUEGATE_FAN_JOINS_PER_SECOND=0 QUEUEGATE_FAN_STATUS_PER_SECOND=0 QUEUEGATE_INSECURE_DEV=true \
  QUEUEGATE_KAFKA_TOPIC=$TOPIC QUEUEGATE_KAFKA_GROUP=$PREFIX QUEUEGATE_KAFKA_BROKERS=$BROKERS QUEUEGATE_REDIS_URL=$REDIS
# shellcheck source=scripts/bench_pair.sh
. "$ROOT/scripts/bench_pair.sh"
start_pair
concert() {
  curl -fsS -X PUT "$ADMIN/admin/v1/concerts/$1" -H "Authorization: Bearer $ADMIN_TOKEN" \
    -H 'Content-Type: application/json' -d '{"state":"open","maxWaiting":0}' >/dev/null
}
RATES="2500 5000 10000"
for c in warmup burst $(for r in $RATES; do echo "lg$r"; done); do concert "$c"; done
sleep 2

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
declare -A PIDS=([gateway]=$GW [consumer]=$CO)
for n in 1 2 3; do PIDS[kafka-$n]=$(cat .local/cluster/run/kafka-$n.pid); done
for p in 7000 7001 7002 7003 7004 7005; do PIDS[redis-$p]=$(cat .local/cluster/run/redis-$p.pid); done

log "warm-up (10 s at 5,000 joins/s)"
./target/release/examples/loadgen --concert warmup --rate 5000 --seconds 10 --connections 256 --threads 2 > /dev/null
sleep 3
for rate in $RATES; do
  declare -A BEFORE=()
  for n in "${!PIDS[@]}"; do BEFORE[$n]=$(cpu_ticks "${PIDS[$n]}"); done
  T0=$(date +%s.%N)
  log "fixed rate $rate joins/s on the clusters (loadgen, 20 s)"
  ./target/release/examples/loadgen --concert "lg$rate" --rate "$rate" --seconds 20 --connections 512 --threads 2 \
    > "$OUT/loadgen-$rate.json"
  sleep 2 # the consumer finishes the step's joins (its CPU belongs to the step)
  T1=$(date +%s.%N)
  : > "$OUT/cpu-$rate.txt"
  for n in "${!PIDS[@]}"; do
    echo "$n $(( $(cpu_ticks "${PIDS[$n]}") - ${BEFORE[$n]} )) $(getconf CLK_TCK) $T0 $T1" >> "$OUT/cpu-$rate.txt"
  done
  cat "$OUT/loadgen-$rate.json" >&2
  sleep 3
done

log "burst of 50,000 unique fans on the clusters"
./target/release/examples/burst --fans 50000 --connections 256 --concert burst --prefix "$PREFIX" --redis "$REDIS" \
  > "$OUT/burst.json"
cat "$OUT/burst.json" >&2
log "done: $OUT"
