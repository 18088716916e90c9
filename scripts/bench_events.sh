#!/usr/bin/env bash
# Events out, part of `make bench` (alone: `scripts/bench_events.sh [run-dir] [binary-without-events]`).
#
# With the local Kafka and Redis (scripts/services.sh), one release gateway and one release
# consumer (which also admits, relays the outbox, reads the events topic and delivers webhooks):
#   1. join throughput with events on vs off: wrk, 20 s, 256 connections, unique fans,
#      EVENTS_ROUNDS (default 5) rounds, in the order on, off, off, on, on, off, ... "Off" is
#      queuegate without events out: the binary given, or one built from EVENTS_OFF_REV
#      (default 44c9a96, the last commit before events out) in a git worktree under .local/bench
#      (built once);
#   2. the relay: 300 outbox entries of 1,000 fans each (300,000 events) written while no
#      consumer runs, then a consumer started: events per second from its readiness until the
#      outbox is empty;
#   3. webhooks: a local endpoint (scripts/bench_events_endpoint.mjs, answers 204 at once);
#      the joins wrk makes in 2 s (placed within a second or so, so the deliveries queue up),
#      deliveries per second at the endpoint while they drain; then, on another
#      concert and endpoint, 100 joins a second for 30 s: the delay from each change (the
#      event's time) to its delivery, p50/p99.
# Results in <run-dir>/events/summary.json; scripts/bench_events_report.py renders them.
# EVENTS_STEPS (default "joins relay hooks") runs some of the steps only, keeping the other
# steps' results already in the run directory.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
BASE=${1:-.local/bench/events-$(date +%s)}
OFF_BIN=${2:-}
OUT=$BASE/events
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
RUN=$(date +%s)
N=0
log() { printf '[bench-events %s] %s\n' "$(date +%T)" "$*" >&2; }

scripts/services.sh up >/dev/null
cargo build --release --locked --bin queuegate
ON_BIN=$ROOT/target/release/queuegate
if [ -z "$OFF_BIN" ]; then
  REV=${EVENTS_OFF_REV:-44c9a96}
  WT=$ROOT/.local/bench/before-events-$REV
  [ -d "$WT" ] || git worktree add --detach "$WT" "$REV" >&2
  log "building queuegate without events out ($REV) into .local/bench/target-before-events (once)"
  (cd "$WT" && cargo build --release --locked --bin queuegate --target-dir "$ROOT/.local/bench/target-before-events")
  OFF_BIN=$ROOT/.local/bench/target-before-events/release/queuegate
fi
command -v wrk >/dev/null || { sudo_=""; [ "$(id -u)" -ne 0 ] && sudo_=sudo; $sudo_ apt-get install -y -qq wrk >/dev/null; }

ADMIN=http://127.0.0.1:8281
ADMIN_TOKEN=bench-admin-token-0123456789
REDIS_PORT=${REDIS_PORT:-6379}
rcli() { redis-cli -p "$REDIS_PORT" "$@" | tr -d '\r'; }
GW=""; CO=""
trap 'kill $GW $CO 2>/dev/null || true' EXIT

# start LABEL BIN: a gateway and a consumer of BIN on a fresh prefix and topics.
start() {
  N=$((N + 1))
  PREFIX=qgev-$1-$RUN-$N
  TOPIC=$PREFIX
  QUEUEGATE_KAFKA_TOPIC=$TOPIC QUEUEGATE_EVENTS_TOPIC=$TOPIC.events scripts/services.sh up >/dev/null
  export QUEUEGATE_LOG=warn QUEUEGATE_REDIS_PREFIX=$PREFIX QUEUEGATE_ADMIN_TOKEN=$ADMIN_TOKEN \
    QUEUEGATE_TOKEN_SECRET=bench-token-secret-0123456789-0123456789 QUEUEGATE_RATE_LIMIT_PER_IP=0 \
    QUEUEGATE_FAN_JOINS_PER_SECOND=0 QUEUEGATE_FAN_STATUS_PER_SECOND=0 QUEUEGATE_INSECURE_DEV=true \
    QUEUEGATE_FAN_IDENTITY=body QUEUEGATE_KAFKA_TOPIC=$TOPIC QUEUEGATE_KAFKA_GROUP=$PREFIX \
    QUEUEGATE_EVENTS_TOPIC=$TOPIC.events QUEUEGATE_WEBHOOK_ALLOW_NETWORKS=127.0.0.0/8 \
    QUEUEGATE_WEBHOOK_MAX_PENDING=${BENCH_WEBHOOK_MAX_PENDING:-1000000} \
    QUEUEGATE_WEBHOOK_MAX_PENDING_BYTES=${BENCH_WEBHOOK_MAX_PENDING_BYTES:-1073741824}
  QUEUEGATE_HTTP_ADDR=127.0.0.1:8280 QUEUEGATE_ADMIN_ADDR=127.0.0.1:8281 "$2" gateway > "$OUT/gateway-$N.log" 2>&1 &
  GW=$!
  start_consumer "$2"
  for _ in $(seq 1 150); do curl -fsS $ADMIN/readyz >/dev/null 2>&1 && break; sleep 0.2; done
}
start_consumer() {
  QUEUEGATE_ADMIN_ADDR=127.0.0.1:8282 "$1" consumer > "$OUT/consumer-$N.log" 2>&1 &
  CO=$!
  for _ in $(seq 1 150); do curl -fsS http://127.0.0.1:8282/readyz >/dev/null 2>&1 && break; sleep 0.2; done
}
stop() { kill $GW $CO 2>/dev/null || true; wait $GW $CO 2>/dev/null || true; GW=""; CO=""; }
put() { # concert body
  curl -fsS -X PUT "$ADMIN/admin/v1/concerts/$1" -H "Authorization: Bearer $ADMIN_TOKEN" \
    -H 'Content-Type: application/json' -d "$2" >/dev/null
}
# CPU of each process while wrk runs: ticks (utime + stime) of the gateway, the consumer, Redis
# and Kafka, and the machine's idle and steal ticks from /proc/stat.
ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
cpu_snapshot() {
  echo "$(ticks "$GW") $(ticks "$CO") $(ticks "$(cat .local/run/redis.pid)") $(ticks "$(cat .local/run/kafka.pid)")" \
    "$(awk '/^cpu / {print $5 + $6, $9, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9}' /proc/stat)"
}
metric() { # name-and-labels: the consumer's value
  curl -fsS http://127.0.0.1:8282/metrics | awk -v m="$1" '$1 == m {print $2}' | head -1
}

STEPS=" ${EVENTS_STEPS:-joins relay hooks} "
step() { [[ "$STEPS" == *" $1 "* ]]; }

if step joins; then
rm -f "$OUT/published.txt" "$OUT"/wrk-on-*.txt "$OUT"/wrk-off-*.txt "$OUT"/cpu-*.txt
ROUNDS=${EVENTS_ROUNDS:-5}
for round in $(seq 1 "$ROUNDS"); do
  # on, off, then off, on, ...: a drift over the runs weighs on both alike.
  modes="on off"; [ $((round % 2)) = 0 ] && modes="off on"
  for mode in $modes; do
    bin=$ON_BIN; [ "$mode" = off ] && bin=$OFF_BIN
    log "join throughput, events $mode, round $round (wrk, 20 s, 256 connections)"
    start "$mode" "$bin"
    put demo '{"state":"open","maxWaiting":0}'
    sleep 3
    wrk -t2 -c256 -d5s -s loadtest/wrk-join.lua http://127.0.0.1:8280 -- demo body > /dev/null
    before=$(cpu_snapshot)
    wrk -t2 -c256 -d20s --latency -s loadtest/wrk-join.lua http://127.0.0.1:8280 -- demo body > "$OUT/wrk-$mode-$round.txt"
    echo "$before $(cpu_snapshot)" > "$OUT/cpu-$mode-$round.txt"
    grep -E 'Requests/sec' "$OUT/wrk-$mode-$round.txt" >&2
    sleep 5
    if [ "$mode" = on ]; then echo "$round $(metric queuegate_events_published_total)" >> "$OUT/published.txt"; fi
    stop
  done
done
fi

if step relay; then
log "the relay: 300,000 events written to an outbox while no consumer runs"
start relay "$ON_BIN"
put relay '{"state":"paused"}'
sleep 2
kill "$CO"; wait "$CO" 2>/dev/null || true
sleep 4 # the lease of the stopped consumer runs out
key="$PREFIX:{relay}:outbox"
rcli EVAL "for e = 1, 300 do local u = {} for i = 1, 1000 do u[i] = 'r' .. e .. '-' .. i end
  redis.call('XADD', KEYS[1], '*', 't', 'placed', 'l', 'general', 'u', table.concat(u, ' ')) end return redis.call('XLEN', KEYS[1])" 1 "$key" >&2
t0=$(date +%s.%N)
start_consumer "$ON_BIN"
ready=$(date +%s.%N)
cpu0="$(ticks "$CO") $(ticks "$(cat .local/run/kafka.pid)") $(ticks "$(cat .local/run/redis.pid)")"
while [ "$(rcli XLEN "$key")" != 0 ]; do sleep 0.05; done
t1=$(date +%s.%N)
cpu1="$(ticks "$CO") $(ticks "$(cat .local/run/kafka.pid)") $(ticks "$(cat .local/run/redis.pid)")"
published=$(metric queuegate_events_published_total)
# CPU seconds (ticks / 100) of the consumer (relay and events worker), Kafka and Redis while draining.
python3 -c "import json,sys; t0,r,t1=map(float,sys.argv[1:4]); a=list(map(int,sys.argv[6].split())); b=list(map(int,sys.argv[7].split()))
cpu={n: round((y-x)/100,2) for n,x,y in zip(('consumer','kafka','redis'),a,b)}
json.dump({'events':300000,'published':int(float(sys.argv[4] or 0)),'start_s':round(r-t0,2),'drain_s':round(t1-r,2),'cpu_s':cpu},open(sys.argv[5],'w'))" \
  "$t0" "$ready" "$t1" "${published:-0}" "$OUT/relay.json" "$cpu0" "$cpu1"
cat "$OUT/relay.json" >&2
stop
fi

if step hooks; then
log "webhooks: a 2 s burst of joins to one endpoint; then 100 joins/s for 30 s, the delay"
start hooks "$ON_BIN"
node scripts/bench_events_endpoint.mjs 8297 "$OUT/endpoint-burst.json" & EP1=$!
node scripts/bench_events_endpoint.mjs 8298 "$OUT/endpoint-steady.json" & EP2=$!
put burst '{"state":"open","maxWaiting":0,"webhooks":[{"url":"http://127.0.0.1:8297/hook","types":["dev.queuegate.fan.placed"]}]}'
put steady '{"state":"open","maxWaiting":0,"webhooks":[{"url":"http://127.0.0.1:8298/hook","types":["dev.queuegate.fan.placed"]}]}'
sleep 3
# As many joins as wrk makes in 2 s (tens of thousands, placed within about a second): the
# deliveries queue up, and the endpoint sees how fast they drain.
wrk -t1 -c64 -d2s -s loadtest/wrk-join.lua http://127.0.0.1:8280 -- burst body > "$OUT/wrk-burst.txt"
last=-1; same=0
for _ in $(seq 1 600); do
  got=$(metric 'queuegate_webhook_deliveries_total{outcome="delivered"}'); got=${got:-0}
  if [ "$got" = "$last" ] && [ "$got" != 0 ]; then same=$((same + 1)); else same=0; fi
  [ "$same" -ge 3 ] && break
  last=$got
  sleep 1
done
python3 -c "import json,re,sys; t=open(sys.argv[1]).read(); n=int(re.search(r'(\d+) requests in', t).group(1)); json.dump({'sent': n, 'accepted': n - int((re.search(r'Non-2xx or 3xx responses: (\d+)', t) or [0,0])[1])}, open(sys.argv[2], 'w'))" \
  "$OUT/wrk-burst.txt" "$OUT/joins-burst.json"
cat "$OUT/joins-burst.json" >&2
node scripts/bench_events_joins.mjs http://127.0.0.1:8280 steady 100 30 s > "$OUT/joins-steady.json"
sleep 5
kill -TERM $EP1 $EP2; wait $EP1 $EP2 2>/dev/null || true
stop
fi

python3 - "$OUT" <<'PY'
import json, re, sys, os
out = sys.argv[1]
def rps(name):
    return float(re.search(r"Requests/sec:\s+([\d.]+)", open(os.path.join(out, name)).read()).group(1))
def non2xx(name):
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", open(os.path.join(out, name)).read())
    return int(m.group(1)) if m else 0
rounds = sorted(int(m.group(1)) for f in os.listdir(out) if (m := re.fullmatch(r"wrk-on-(\d+)\.txt", f)))
on = [rps(f"wrk-on-{r}.txt") for r in rounds]
off = [rps(f"wrk-off-{r}.txt") for r in rounds]
relay = json.load(open(os.path.join(out, "relay.json")))
burst = json.load(open(os.path.join(out, "endpoint-burst.json")))
steady = json.load(open(os.path.join(out, "endpoint-steady.json")))
def pct(values, p):
    v = sorted(values)
    return v[max(1, -(-p * len(v) // 100)) - 1] if v else None
published = [l.split() for l in open(os.path.join(out, "published.txt"))]
def cpu(name):
    v = [float(x) for x in open(os.path.join(out, name)).read().split()]
    b, a = v[:7], v[7:]
    d = [y - x for x, y in zip(b, a)]
    total = d[6] or 1
    per_core = total / os.cpu_count()
    share = lambda x: round(100 * x / per_core, 1)  # noqa: E731
    return {"gateway": share(d[0]), "consumer": share(d[1]), "redis": share(d[2]), "kafka": share(d[3]),
            "idle": round(100 * d[4] / total, 1), "steal": round(100 * d[5] / total, 1)}
cpus = {f"{m}-{r}": cpu(f"cpu-{m}-{r}.txt") for m in ("on", "off") for r in rounds
        if os.path.exists(os.path.join(out, f"cpu-{m}-{r}.txt"))}
summary = {
    "cpu_percent_of_a_core": cpus,
    "joins_on": on, "joins_off": off,
    "ratio": round(sum(on) / sum(off), 3),
    "non2xx": {m: sum(non2xx(f"wrk-{m}-{r}.txt") for r in rounds) for m in ("on", "off")},
    "events_published_during_joins": [int(float(p[1])) for p in published if len(p) > 1],
    "relay_events_per_second": round(relay["events"] / relay["drain_s"]),
    "relay": relay,
    "webhook_burst": {"joins": json.load(open(os.path.join(out, "joins-burst.json"))),
                      "delivered": burst["count"], "distinct": burst["distinct"],
                      "seconds": round((burst["lastMs"] - burst["firstMs"]) / 1000, 2),
                      "per_second": round(burst["count"] / max((burst["lastMs"] - burst["firstMs"]) / 1000, 0.001))},
    "webhook_delay_ms": {"joins": json.load(open(os.path.join(out, "joins-steady.json"))),
                         "delivered": steady["count"], "p50": pct(steady["delaysMs"], 50),
                         "p99": pct(steady["delaysMs"], 99), "max": max(steady["delaysMs"] or [0])},
    "webhook_burst_delay_ms": {"p50": pct(burst["delaysMs"], 50), "p99": pct(burst["delaysMs"], 99)},
}
json.dump(summary, open(os.path.join(out, "summary.json"), "w"), indent=1)
print(json.dumps(summary, indent=1))
PY
