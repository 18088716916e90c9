#!/usr/bin/env bash
# Presale lanes, part of `make bench` (alone: `scripts/bench_lanes.sh [run-dir]`).
#
# With the local Kafka and Redis (scripts/services.sh), one release gateway and one consumer:
#   1. join throughput (wrk, 20 s, 256 connections, unique fans) on a concert with one lane and on
#      one with two (requests alternating lanes), twice each, alternating, so drift hits both;
#   2. 100,000 codes uploaded to a code lane in calls of 10,000 (the console's size): the time,
#      and Redis's memory per code (MEMORY USAGE of the lane's codes hash);
#   3. watching: 15,000 fans each holding a status stream on a one-lane concert and on a
#      two-lane concert (scripts/bench_watchers.sh steps `one` and `lanes`): Redis commands/s
#      while watching and while admitting 500/s.
# Results in <run-dir>/lanes/summary.json; scripts/bench_lanes_report.py renders them.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
BASE=${1:-.local/bench/lanes-$(date +%s)}
OUT=$BASE/lanes
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
RUN=$(date +%s)
log() { printf '[bench-lanes %s] %s\n' "$(date +%T)" "$*" >&2; }

TOPIC=qglanes-$RUN
QUEUEGATE_KAFKA_TOPIC=$TOPIC scripts/services.sh up
cargo build --release --locked --bin queuegate --example watchers
command -v wrk >/dev/null || { sudo_=""; [ "$(id -u)" -ne 0 ] && sudo_=sudo; $sudo_ apt-get install -y -qq wrk >/dev/null; }

PREFIX=qglanes-$RUN
ADMIN=http://127.0.0.1:8181
ADMIN_TOKEN=bench-admin-token-0123456789
REDIS_PORT=${REDIS_PORT:-6379}
rcli() { redis-cli -p "$REDIS_PORT" "$@" | tr -d '\r'; }
(
  export QUEUEGATE_LOG=warn QUEUEGATE_REDIS_PREFIX=$PREFIX QUEUEGATE_ADMIN_TOKEN=$ADMIN_TOKEN \
    QUEUEGATE_TOKEN_SECRET=bench-token-secret-0123456789-0123456789 QUEUEGATE_RATE_LIMIT_PER_IP=0 \
    QUEUEGATE_FAN_JOINS_PER_SECOND=0 QUEUEGATE_FAN_STATUS_PER_SECOND=0 QUEUEGATE_INSECURE_DEV=true \
    QUEUEGATE_FAN_IDENTITY=body QUEUEGATE_KAFKA_TOPIC=$TOPIC QUEUEGATE_KAFKA_GROUP=$PREFIX
  QUEUEGATE_HTTP_ADDR=127.0.0.1:8180 QUEUEGATE_ADMIN_ADDR=127.0.0.1:8181 ./target/release/queuegate gateway \
    > "$OUT/gateway.log" 2>&1 &
  GW=$!
  QUEUEGATE_ADMIN_ADDR=127.0.0.1:8182 ./target/release/queuegate consumer > "$OUT/consumer.log" 2>&1 &
  CO=$!
  trap 'kill $GW $CO 2>/dev/null || true' EXIT
  for _ in $(seq 1 150); do
    curl -fsS $ADMIN/readyz >/dev/null 2>&1 && curl -fsS http://127.0.0.1:8182/readyz >/dev/null 2>&1 && break
    sleep 0.2
  done
  put() { # concert body
    curl -fsS -X PUT "$ADMIN/admin/v1/concerts/$1" -H "Authorization: Bearer $ADMIN_TOKEN" \
      -H 'Content-Type: application/json' -d "$2" >/dev/null
  }
  put one '{"state":"open","maxWaiting":0}'
  put two '{"state":"open","maxWaiting":0,"lanes":[{"name":"fanclub","share":70},{"name":"general","share":30}]}'
  put codes '{"state":"open","lanes":[{"name":"fanclub","share":70,"access":"code"},{"name":"general","share":30}]}'
  sleep 3 # the consumer joins its group; the gateway's cache

  log "warm-up (10 s)"
  wrk -t2 -c256 -d10s -s loadtest/wrk-join.lua http://127.0.0.1:8180 -- one body > /dev/null
  for round in 1 2; do
    log "join throughput, one lane, round $round (wrk, 20 s, 256 connections)"
    wrk -t2 -c256 -d20s --latency -s loadtest/wrk-join.lua http://127.0.0.1:8180 -- one body > "$OUT/wrk-one-$round.txt"
    grep -E 'Requests/sec' "$OUT/wrk-one-$round.txt" >&2
    log "join throughput, two lanes, round $round"
    wrk -t2 -c256 -d20s --latency -s loadtest/wrk-join.lua http://127.0.0.1:8180 -- two body fanclub,general \
      > "$OUT/wrk-two-$round.txt"
    grep -E 'Requests/sec' "$OUT/wrk-two-$round.txt" >&2
  done

  log "100,000 codes, uploaded 10,000 per call"
  python3 - "$OUT/codes" <<'PY'
import secrets, sys, os, json
d = sys.argv[1]
os.makedirs(d, exist_ok=True)
alphabet = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
for part in range(10):
    codes = ["".join(secrets.choice(alphabet) for _ in range(12)) for _ in range(10_000)]
    json.dump({"codes": codes}, open(os.path.join(d, f"part-{part}.json"), "w"))
PY
  key="$PREFIX:{codes}:codes@fanclub"
  mem0=$(rcli INFO memory | awk -F: '/^used_memory:/ {print $2}')
  t0=$(date +%s.%N)
  for part in $(seq 0 9); do
    curl -fsS -X POST "$ADMIN/admin/v1/concerts/codes/lanes/fanclub/codes" -H "Authorization: Bearer $ADMIN_TOKEN" \
      -H 'Content-Type: application/json' --data-binary "@$OUT/codes/part-$part.json" > "$OUT/codes/answer-$part.json"
  done
  t1=$(date +%s.%N)
  mem1=$(rcli INFO memory | awk -F: '/^used_memory:/ {print $2}')
  usage=$(rcli MEMORY USAGE "$key" SAMPLES 0)
  encoding=$(rcli OBJECT ENCODING "$key")
  python3 - "$OUT" "$t0" "$t1" "$mem0" "$mem1" "$usage" "$encoding" <<'PY'
import json, sys, os
out, t0, t1, mem0, mem1, usage, enc = sys.argv[1:]
last = json.load(open(os.path.join(out, "codes", "answer-9.json")))
json.dump({"codes": last["total"], "seconds": round(float(t1) - float(t0), 2),
           "codes_per_second": round(last["total"] / (float(t1) - float(t0))),
           "bytes_per_code_key": round(int(usage) / last["total"], 1),
           "bytes_per_code_used_memory": round((int(mem1) - int(mem0)) / last["total"], 1),
           "encoding": enc}, open(os.path.join(out, "codes.json"), "w"), indent=1)
print(open(os.path.join(out, "codes.json")).read())
PY
)

log "watching: 15,000 streams on one lane, then over two lanes (scripts/bench_watchers.sh)"
# Each step in a run of its own (its own key prefix and topic): the admitter of a run goes round
# every concert of its prefix, so a second step in the same run would pay for the first's concert.
WATCH_STEPS=one scripts/bench_watchers.sh "$OUT"
WATCH_STEPS=lanes scripts/bench_watchers.sh "$OUT"

python3 - "$OUT" <<'PY'
import json, re, sys, os
out = sys.argv[1]
def rps(name):
    return float(re.search(r"Requests/sec:\s+([\d.]+)", open(os.path.join(out, name)).read()).group(1))
def non2xx(name):
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", open(os.path.join(out, name)).read())
    return int(m.group(1)) if m else 0
one = [rps(f"wrk-one-{r}.txt") for r in (1, 2)]
two = [rps(f"wrk-two-{r}.txt") for r in (1, 2)]
w = {s: json.load(open(os.path.join(out, "watchers", s, "summary.json"))) for s in ("one", "lanes")}
summary = {
    "joins_per_second_one_lane": one, "joins_per_second_two_lanes": two,
    "non2xx": sum(non2xx(f"wrk-{k}-{r}.txt") for k in ("one", "two") for r in (1, 2)),
    "ratio": round(sum(two) / sum(one), 3),
    "codes": json.load(open(os.path.join(out, "codes.json"))),
    "watch": {s: {k: w[s][k] for k in ("streams_open", "redis_commands_per_second_quiet",
                                      "redis_commands_per_second_admitting", "gateway_redis_calls_per_second_quiet",
                                      "gateway_redis_calls_per_second_admitting", "push_latency_ms", "admitted_seen")}
              for s in w},
}
json.dump(summary, open(os.path.join(out, "summary.json"), "w"), indent=1)
print(json.dumps(summary, indent=1))
PY
log "done: $OUT"
