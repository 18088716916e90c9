#!/usr/bin/env bash
# The soak (run by `make bench` after the throughput steps; alone: `scripts/soak.sh [run-dir]`).
#
# SOAK_MINUTES (default 30) of joins at SOAK_RATE/s (default 300), one status poll per join,
# SOAK_WATCHERS fans holding status streams (default 40), and admission at SOAK_ADMIT/s (default
# 250) by the admitter of two consumers, through one gateway. Redis is the soak's own (port
# SOAK_REDIS_PORT, default 6391, AOF always, under the run directory), so its memory is the
# soak's alone; Kafka is the shared broker of scripts/services.sh. Along the way, at a quarter,
# a half and three quarters of the run: a consumer killed with -9 (restarted 10 s later), Redis
# killed with -9 and restarted, the Kafka broker stopped and restarted.
#
# Every 10 s the RSS of each process is sampled (rss.csv). At the end, once the consumers have
# drained, the 202s k6 counted are compared with Redis: every accepted fan exactly once
# (waiting + admitted = joined = 202s; the waiting list holds no one twice). Results in
# <run-dir>/soak/ (soak.json, rss.csv, logs); scripts/bench_report.py puts them, with a plot,
# into docs/benchmarks.md. Everything is on loopback; the run stops by itself.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
OUT=${1:-.local/bench/soak-$(date +%s)}/soak
mkdir -p "$OUT/pids"
OUT=$(cd "$OUT" && pwd) # absolute: redis-server opens its log after changing to its --dir
MINUTES=${SOAK_MINUTES:-30}
RATE=${SOAK_RATE:-300}
WATCHERS=${SOAK_WATCHERS:-40}
ADMIT=${SOAK_ADMIT:-250}
REDIS_PORT=${SOAK_REDIS_PORT:-6391}
RUN=$(date +%s)
log() { printf '[soak %s] %s\n' "$(date +%T)" "$*" >&2; }

TOPIC=qgsoak-$RUN
QUEUEGATE_KAFKA_TOPIC=$TOPIC scripts/services.sh up
mkdir -p "$OUT/redis"
start_redis() {
  redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --dir "$OUT/redis" --appendonly yes --appendfsync always \
    --save '' --daemonize yes --pidfile "$OUT/pids/redis" --logfile "$OUT/redis/redis.log"
  local i
  for i in $(seq 1 600); do redis-cli -p "$REDIS_PORT" ping 2>/dev/null | grep -q PONG && return 0; sleep 0.1; done
  log "Redis did not come back"; return 1
}
start_redis
cargo build --release --locked --bin queuegate
K6=$(command -v k6 || echo "$HOME/go/bin/k6")
[ -x "$K6" ] || { go install go.k6.io/k6@latest; K6="$HOME/go/bin/k6"; }

PREFIX=qgsoak-$RUN
ADMIN=http://127.0.0.1:8081
ADMIN_TOKEN=soak-admin-token-0123456789
export QUEUEGATE_LOG=warn QUEUEGATE_REDIS_PREFIX=$PREFIX QUEUEGATE_ADMIN_TOKEN=$ADMIN_TOKEN \
  QUEUEGATE_TOKEN_SECRET=soak-token-secret-0123456789-0123456789 QUEUEGATE_RATE_LIMIT_PER_IP=0 \
  QUEUEGATE_FAN_JOINS_PER_SECOND=0 QUEUEGATE_FAN_STATUS_PER_SECOND=0 QUEUEGATE_INSECURE_DEV=true \
  QUEUEGATE_KAFKA_TOPIC=$TOPIC QUEUEGATE_KAFKA_GROUP=qgsoak-$RUN QUEUEGATE_REDIS_URL=redis://127.0.0.1:$REDIS_PORT

start() { # name role admin-port
  QUEUEGATE_ADMIN_ADDR=127.0.0.1:$3 ./target/release/queuegate "$2" >> "$OUT/$1.log" 2>&1 &
  echo $! > "$OUT/pids/$1"
}
ready() { # admin-port
  local i
  for i in $(seq 1 300); do curl -fsS "http://127.0.0.1:$1/readyz" >/dev/null 2>&1 && return 0; sleep 0.2; done
  return 1
}
cleanup() {
  local f
  for f in "$OUT"/pids/*; do [ -f "$f" ] && kill "$(cat "$f")" 2>/dev/null || true; done
  [ -n "${K6PID:-}" ] && kill "$K6PID" 2>/dev/null || true
  [ -n "${SAMPLER:-}" ] && kill "$SAMPLER" 2>/dev/null || true
}
trap cleanup EXIT
start gateway gateway 8081
start consumer-a consumer 8082
start consumer-b consumer 8083
for p in 8081 8082 8083; do ready "$p" || { log "queuegate on admin port $p not ready"; exit 1; }; done
curl -fsS -X PUT "$ADMIN/admin/v1/concerts/soak" -H "Authorization: Bearer $ADMIN_TOKEN" \
  -H 'Content-Type: application/json' -d "{\"state\":\"open\",\"admitPerSecond\":$ADMIT,\"tokenTtlSeconds\":60}" >/dev/null
sleep 3 # the gateway's concert cache; the consumers' group

pid_of() { # name -> pid (queuegate processes from our pid files, services from theirs)
  case $1 in
    kafka) cat ".local/run/$1.pid" 2>/dev/null || true ;;
    *) cat "$OUT/pids/$1" 2>/dev/null || true ;;
  esac
}
rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo ""; }
echo "seconds,process,rss_kb" > "$OUT/rss.csv"
T0=$(date +%s)
(
  while true; do
    now=$(( $(date +%s) - T0 ))
    for n in gateway consumer-a consumer-b redis kafka; do
      pid=$(pid_of "$n"); kb=""
      [ -n "$pid" ] && kb=$(rss_kb "$pid")
      [ -n "$kb" ] && echo "$now,$n,$kb" >> "$OUT/rss.csv"
    done
    sleep 10
  done
) &
SAMPLER=$!

log "k6: $RATE joins/s with a poll each, $WATCHERS watchers, admission $ADMIT/s, for $MINUTES min"
"$K6" run --quiet -e BASE=http://127.0.0.1:8080 -e CONCERT=soak -e RUN="$RUN" -e RATE="$RATE" \
  -e WATCHERS="$WATCHERS" -e DURATION="${MINUTES}m" --summary-export "$OUT/k6.json" loadtest/soak.js \
  > "$OUT/k6.txt" 2>&1 &
K6PID=$!

: > "$OUT/faults.csv"
fault() { echo "$(( $(date +%s) - T0 )),$1" >> "$OUT/faults.csv"; log "$1"; }
at() { # fraction-of-run: sleeps until then
  local until=$(( T0 + MINUTES * 60 * $1 / 4 ))
  while [ "$(date +%s)" -lt "$until" ]; do sleep 5; done
}
at 1
fault "kill -9 consumer-a"
kill -9 "$(pid_of consumer-a)"
sleep 10
start consumer-a consumer 8082
ready 8082 || log "consumer-a did not come back"
fault "consumer-a restarted"
at 2
fault "kill -9 redis"
kill -9 "$(pid_of redis)"
sleep 5
start_redis
fault "redis restarted"
at 3
fault "stop kafka broker"
kpid=$(pid_of kafka)
kill "$kpid"
while kill -0 "$kpid" 2>/dev/null; do sleep 1; done
# A loaded machine can take longer than services.sh waits (60 s); the broker keeps starting.
for attempt in 1 2 3; do
  scripts/services.sh up >> "$OUT/services.log" 2>&1 && break
  log "Kafka not up yet (attempt $attempt); waiting"
  sleep 10
done
fault "kafka broker restarted"

wait "$K6PID" || true
K6PID=""
log "k6 done; waiting for the consumers to drain"
rcli() { redis-cli -p "$REDIS_PORT" "$@" | tr -d '\r'; }
concert_json() { curl -fsS "$ADMIN/admin/v1/concerts/soak" -H "Authorization: Bearer $ADMIN_TOKEN"; }
prev=-1
for _ in $(seq 1 300); do
  n=$(rcli HLEN "$PREFIX:{soak}:joined")
  [ "$n" = "$prev" ] && break
  prev=$n
  sleep 2
done
# Admission goes on while we count: read the counts in one admin call.
concert_json > "$OUT/concert.json"
rcli LRANGE "$PREFIX:{soak}:waiting" 0 -1 | sort | uniq -d | wc -l > "$OUT/doubled-in-list.txt"
rcli HLEN "$PREFIX:{soak}:joined" > "$OUT/joined-hash.txt"
kill "$SAMPLER" 2>/dev/null || true
SAMPLER=""
python3 - "$OUT" "$MINUTES" "$RUN" <<'EOF'
import csv, json, sys
from pathlib import Path
out, minutes = Path(sys.argv[1]), int(sys.argv[2])
k6 = json.loads((out / "k6.json").read_text())["metrics"]
count = lambda m: int(k6.get(m, {}).get("count", 0))
c = json.loads((out / "concert.json").read_text())
accepted = count("joined")
in_redis = c["waiting"] + c["admitted"] + c["abandoned"] + c["removed"]
joined_hash = int((out / "joined-hash.txt").read_text())
rss = {}
for row in csv.DictReader((out / "rss.csv").open()):
    rss.setdefault(row["process"], []).append((int(row["seconds"]), int(row["rss_kb"])))
warm = minutes * 60 // 6  # after warm-up: from a sixth of the run on
def mib(samples, lo, hi):
    xs = [kb for s, kb in samples if lo <= s < hi]
    return round(max(xs) / 1024, 1) if xs else None
end = minutes * 60
memory = {p: {"after_warmup_mib": mib(s, warm, warm + 120), "last_5min_peak_mib": mib(s, end - 300, end + 600),
              "peak_mib": mib(s, 0, end + 600)} for p, s in rss.items()}
faults = [line.split(",", 1) for line in (out / "faults.csv").read_text().splitlines()]
import datetime
result = {
    "started": datetime.datetime.fromtimestamp(int(sys.argv[3]), datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    "minutes": minutes, "joined_202": accepted, "unavailable_503": count("unavailable"),
    "other_errors": count("other_errors"), "polls": count("polls"), "streams_opened": count("streams_opened"),
    "joined_hash": joined_hash, "waiting": c["waiting"], "admitted": c["admitted"],
    # A 202 not in Redis is a lost fan; a fan in Redis more often than in the dedup hash, or twice
    # in the waiting list, is doubled. Fans in Redis without a 202 (a join whose answer was lost
    # to a fault) are reported apart: not a broken promise, but worth seeing.
    "missing": max(0, accepted - in_redis),
    "doubled": max(0, in_redis - joined_hash) + int((out / "doubled-in-list.txt").read_text()),
    "in_redis_without_202": max(0, in_redis - accepted),
    "memory": memory, "faults": [{"second": int(s), "what": w} for s, w in faults],
}
(out / "soak.json").write_text(json.dumps(result, indent=2))
print(json.dumps(result, indent=2))
EOF
log "done: $OUT/soak.json"
