#!/usr/bin/env bash
# Watching at scale, part of `make bench` (alone: `scripts/bench_watchers.sh [run-dir]`).
#
# Two steps, each on a concert of its own, with the local Kafka and Redis (scripts/services.sh),
# one `queuegate consumer` (which also runs the admitter) and release gateways:
#   one:  1 gateway,  WATCH_FANS (15,000) fans each holding a status stream;
#   four: 4 gateways, WATCH_FANS streams on each, all on one Redis;
#   lanes (WATCH_STEPS="lanes", run by scripts/bench_lanes.sh): 1 gateway, WATCH_FANS fans spread
#         over two presale lanes of one concert.
# In each: examples/watchers joins the fans and opens the streams (from several 127.x source
# addresses); the gateways' RSS is read before and after the streams opened; 10 s with every
# stream open and nothing moving; then the concert admits WATCH_ADMIT_RATE (500) fans per second
# until everyone is in, while Redis's commands/s (INFO total_commands_processed, which counts the
# commands scripts run too), the gateways' CPU and the frames they pushed are measured. Each
# watcher reports when each fan's stream said "admitted" after the admission (push latency).
# Last, status polls answered from a gateway's view (wrk), next to the same listener serving a
# static JSON (the HTTP ceiling on this machine).
# Results in <run-dir>/watchers/<step>/summary.json; scripts/bench_report.py renders them.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
OUT=${1:-.local/bench/watchers-$(date +%s)}/watchers
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
RUN=$(date +%s)
FANS=${WATCH_FANS:-15000}
RATE=${WATCH_ADMIT_RATE:-500}
log() { printf '[bench-watchers %s] %s\n' "$(date +%T)" "$*" >&2; }

TOPIC=qgwatch-$RUN
QUEUEGATE_KAFKA_TOPIC=$TOPIC scripts/services.sh up
cargo build --release --locked --bin queuegate --example watchers

PREFIX=qgwatch-$RUN
ADMIN_TOKEN=bench-admin-token-0123456789
export QUEUEGATE_LOG=warn QUEUEGATE_REDIS_PREFIX=$PREFIX QUEUEGATE_ADMIN_TOKEN=$ADMIN_TOKEN \
  QUEUEGATE_TOKEN_SECRET=bench-token-secret-0123456789-0123456789 QUEUEGATE_RATE_LIMIT_PER_IP=0 \
  QUEUEGATE_FAN_JOINS_PER_SECOND=0 QUEUEGATE_FAN_STATUS_PER_SECOND=0 QUEUEGATE_INSECURE_DEV=true \
  QUEUEGATE_FAN_IDENTITY=body QUEUEGATE_KAFKA_TOPIC=$TOPIC QUEUEGATE_KAFKA_GROUP=$PREFIX
REDIS_PORT=${REDIS_PORT:-6379}
rcli() { redis-cli -p "$REDIS_PORT" "$@" | tr -d '\r'; }
redis_commands() { rcli INFO stats | awk -F: '/^total_commands_processed:/ {print $2}'; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
metric() { # admin-port name -> value summed over label sets
  curl -fsS "http://127.0.0.1:$1/metrics" | awk -v n="$2" '$1 ~ "^"n {s += $2} END {print s + 0}'
}
ready() { for _ in $(seq 1 150); do curl -fsS "http://127.0.0.1:$1/readyz" >/dev/null 2>&1 && return 0; sleep 0.2; done; return 1; }
wait_files() { # dir-glob name count seconds
  local i
  for i in $(seq 1 $(($4 * 5))); do
    [ "$(ls $1/$2 2>/dev/null | wc -l)" -ge "$3" ] && return 0
    sleep 0.2
  done
  return 1
}

PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT
QUEUEGATE_ADMIN_ADDR=127.0.0.1:8189 ./target/release/queuegate consumer > "$OUT/consumer.log" 2>&1 &
CONSUMER=$!
PIDS+=("$CONSUMER")
ready 8189 || { log "consumer not ready"; exit 1; }

step() { # name gateways [lanes: a,b — the concert gets these lanes, equal shares; fan i joins lane i mod n]
  local name=$1 gateways=$2 dir="$OUT/$1" k lanes=${3:-} lanes_json=""
  if [ -n "$lanes" ]; then
    lanes_json=,\"lanes\":[$(echo "$lanes" | sed -E 's/([^,]+)/{"name":"\1","share":1}/g')]
  fi
  rm -rf "$dir" # markers of an earlier run would be taken for this one's
  mkdir -p "$dir"
  local gw=() watchers=()
  for k in $(seq 0 $((gateways - 1))); do
    QUEUEGATE_HTTP_ADDR=127.0.0.1:$((8090 + k)) QUEUEGATE_ADMIN_ADDR=127.0.0.1:$((8190 + k)) \
      ./target/release/queuegate gateway > "$dir/gateway-$k.log" 2>&1 &
    gw+=($!)
    PIDS+=($!)
  done
  for k in $(seq 0 $((gateways - 1))); do ready $((8190 + k)) || { log "gateway $k not ready"; exit 1; }; done
  curl -fsS -X PUT "http://127.0.0.1:8190/admin/v1/concerts/$name" -H "Authorization: Bearer $ADMIN_TOKEN" \
    -H 'Content-Type: application/json' -d "{\"state\":\"open\",\"admitPerSecond\":0,\"tokenTtlSeconds\":600${lanes_json}}" >/dev/null
  sleep 3 # every gateway's concert cache
  local deadline=$((FANS * gateways / RATE + 240))
  log "$name: $gateways gateway(s) x $FANS fans join, then each holds a stream"
  for k in $(seq 0 $((gateways - 1))); do
    mkdir -p "$dir/w$k"
    ./target/release/examples/watchers --addr 127.0.0.1:$((8090 + k)) --concert "$name" --fans "$FANS" \
      --sources 4 --first-source "127.$((k + 1)).0.2" --ttl-seconds 600 --pause 12 --seconds "$deadline" \
      --ready-dir "$dir/w$k" --latencies-file "$dir/w$k/latencies.txt" ${lanes:+--lanes "$lanes"} \
      > "$dir/w$k/report.json" 2> "$dir/w$k/stderr.txt" &
    watchers+=($!)
    PIDS+=($!)
  done
  wait_files "$dir/w*" joined "$gateways" 600 || { log "$name: the joins did not finish"; exit 1; }
  # Everyone joined; the streams open after the watchers' 12 s pause. The queue fills meanwhile.
  sleep 6
  local rss_before=0 rss_after=0 p
  for p in "${gw[@]}"; do rss_before=$((rss_before + $(rss_kb "$p"))); done
  wait_files "$dir/w*" streaming "$gateways" 180 || { log "$name: not every stream opened"; }
  sleep 5
  for p in "${gw[@]}"; do rss_after=$((rss_after + $(rss_kb "$p"))); done
  local open=0
  for k in $(seq 0 $((gateways - 1))); do open=$((open + $(metric $((8190 + k)) queuegate_status_streams_open))); done
  log "$name: $open streams open; RSS $((rss_before / 1024)) -> $((rss_after / 1024)) MiB; 10 s of quiet watching"
  local c0 t0 c1 t1 cpu0=0 cpu1=0 ev0=0 ev1=0 gq0 gq1 ga0 ga1
  # The gateways' own Redis calls (every op): what watching costs, apart from the admitter's work.
  gw_calls() { local n=0 k; for k in $(seq 0 $((gateways - 1))); do n=$((n + $(metric $((8190 + k)) queuegate_redis_call_duration_seconds_count))); done; echo $n; }
  gq0=$(gw_calls)
  c0=$(redis_commands); t0=$(date +%s.%N)
  sleep 10
  c1=$(redis_commands); t1=$(date +%s.%N)
  gq1=$(gw_calls)
  local quiet_gw_calls
  quiet_gw_calls=$(python3 -c "print(round(($gq1 - $gq0) / ($t1 - $t0), 2))")
  local quiet_cps
  quiet_cps=$(python3 -c "print(round(($c1 - $c0) / ($t1 - $t0), 1))")
  log "$name: quiet: $quiet_cps Redis commands/s; admitting $RATE fans/s"
  for p in "${gw[@]}"; do cpu0=$((cpu0 + $(cpu_ticks "$p"))); done
  for k in $(seq 0 $((gateways - 1))); do ev0=$((ev0 + $(metric $((8190 + k)) 'queuegate_stream_events_total'))); done
  rcli INFO commandstats > "$dir/commandstats-0.txt"
  ga0=$(gw_calls)
  c0=$(redis_commands); t0=$(date +%s.%N)
  curl -fsS -X PUT "http://127.0.0.1:8190/admin/v1/concerts/$name" -H "Authorization: Bearer $ADMIN_TOKEN" \
    -H 'Content-Type: application/json' -d "{\"state\":\"open\",\"admitPerSecond\":$RATE,\"tokenTtlSeconds\":600${lanes_json}}" >/dev/null
  # Until half the audience is admitted: every remaining stream is still open and moving.
  local half=$((FANS * gateways / 2 / RATE))
  sleep "$half"
  c1=$(redis_commands); t1=$(date +%s.%N)
  ga1=$(gw_calls)
  rcli INFO commandstats > "$dir/commandstats-1.txt"
  for p in "${gw[@]}"; do cpu1=$((cpu1 + $(cpu_ticks "$p"))); done
  for k in $(seq 0 $((gateways - 1))); do ev1=$((ev1 + $(metric $((8190 + k)) 'queuegate_stream_events_total'))); done
  local rss_admitting=0
  for p in "${gw[@]}"; do rss_admitting=$((rss_admitting + $(rss_kb "$p"))); done
  log "$name: waiting for every fan's admission to reach its stream"
  for p in "${watchers[@]}"; do wait "$p" || true; done
  cat "$dir"/w*/latencies.txt > "$dir/latencies.txt" || true
  local hz
  hz=$(getconf CLK_TCK)
  python3 - "$dir" "$gateways" "$FANS" "$RATE" "$rss_before" "$rss_after" "$rss_admitting" "$open" "$quiet_cps" \
    "$c0" "$c1" "$t0" "$t1" "$cpu0" "$cpu1" "$hz" "$ev0" "$ev1" "$quiet_gw_calls" "$ga0" "$ga1" <<'PY'
import json, sys, glob, os, math
(d, gateways, fans, rate, rss0, rss1, rss2, open_, quiet, c0, c1, t0, t1, cpu0, cpu1, hz, ev0, ev1,
 quiet_gw, ga0, ga1) = sys.argv[1:]
gateways, fans, rate, open_ = int(gateways), int(fans), int(rate), int(open_)
secs = float(t1) - float(t0)
cpu_s = (int(cpu1) - int(cpu0)) / int(hz)
events = float(ev1) - float(ev0)
lat = sorted(int(x) for x in open(os.path.join(d, "latencies.txt")).read().split())
pct = lambda p: lat[max(1, min(len(lat), math.ceil(len(lat) * p))) - 1] if lat else None
reports = [json.load(open(f)) for f in sorted(glob.glob(os.path.join(d, "w*", "report.json")))]
summary = {
    "gateways": gateways, "fans_per_gateway": fans, "admit_per_second": rate,
    "streams_open": open_,
    "joined": sum(r["joined"] for r in reports),
    "admitted_seen": len(lat),
    "errors": [r["errors"] for r in reports],
    "rss_mib_before_streams": round(int(rss0) / 1024, 1), "rss_mib_with_streams": round(int(rss1) / 1024, 1),
    "rss_mib_admitting": round(int(rss2) / 1024, 1),
    "bytes_per_stream": round((int(rss1) - int(rss0)) * 1024 / max(open_, 1)),
    "redis_commands_per_second_quiet": float(quiet),
    "redis_commands_per_second_admitting": round((int(c1) - int(c0)) / secs, 1),
    "gateway_redis_calls_per_second_quiet": float(quiet_gw),
    "gateway_redis_calls_per_second_admitting": round((int(ga1) - int(ga0)) / secs, 2),
    "admitting_seconds": round(secs, 1),
    "gateway_cpu_percent_admitting": round(100 * cpu_s / secs, 1),
    "frames_pushed": int(events), "frames_per_second": round(events / secs),
    "cpu_us_per_frame": round(cpu_s * 1e6 / events, 1) if events else None,
    "push_latency_ms": {"p50": pct(0.5), "p90": pct(0.9), "p99": pct(0.99), "max": pct(1.0)},
}
json.dump(summary, open(os.path.join(d, "summary.json"), "w"), indent=1)
print(json.dumps(summary))
PY
  for p in "${gw[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
}

polls() { # status polls answered from the view (wrk), next to the listener's ceiling (a static JSON)
  local dir="$OUT/polls" token
  mkdir -p "$dir"
  QUEUEGATE_HTTP_ADDR=127.0.0.1:8090 QUEUEGATE_ADMIN_ADDR=127.0.0.1:8190 \
    ./target/release/queuegate gateway > "$dir/gateway.log" 2>&1 &
  local g=$!
  PIDS+=($g)
  ready 8190 || { log "gateway not ready"; exit 1; }
  curl -fsS -X PUT "http://127.0.0.1:8190/admin/v1/concerts/polls" -H "Authorization: Bearer $ADMIN_TOKEN" \
    -H 'Content-Type: application/json' -d '{"state":"open"}' >/dev/null
  sleep 2
  token=$(curl -fsS -X POST http://127.0.0.1:8090/v1/concerts/polls/queue -H 'Content-Type: application/json' \
    -d '{"userId":"poller"}' | sed -E 's/.*"token":"([^"]+)".*/\1/')
  sleep 3
  curl -fsS -H "Authorization: Bearer $token" http://127.0.0.1:8090/v1/concerts/polls/queue/poller > /dev/null
  log "polls: status polls from the view (wrk, 15 s, 64 connections), then the listener's ceiling"
  wrk -t2 -c64 -d15s --latency -H "Authorization: Bearer $token" http://127.0.0.1:8090/v1/concerts/polls/queue/poller \
    > "$dir/wrk-status.txt"
  wrk -t2 -c64 -d15s --latency http://127.0.0.1:8090/.well-known/jwks.json > "$dir/wrk-jwks.txt"
  curl -fsS http://127.0.0.1:8190/metrics | grep '^queuegate_status_reads_total' > "$dir/sources.txt"
  grep -h 'Requests/sec' "$dir"/wrk-*.txt >&2
  kill "$g" 2>/dev/null || true
  wait "$g" 2>/dev/null || true
}

for s in ${WATCH_STEPS:-one four polls}; do
  case $s in
    one) step one 1 ;;
    four) step four 4 ;;
    lanes) step lanes 1 fanclub,general ;;
    polls) polls ;;
  esac
done
log "done: $OUT"
