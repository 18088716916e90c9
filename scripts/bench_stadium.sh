#!/usr/bin/env bash
# The stadium, part of `make bench` (alone: `scripts/bench_stadium.sh [run-dir]`): a million fans
# through one `queuegate run` (every role in one process) on the local Kafka and Redis.
#
# One concert, open, no admission yet, with a webhook to an endpoint that accepts connections and
# never answers (a dead receiver for the whole run). In order:
#   burst:     examples/burst joins STADIUM_FANS (1,000,000) unique fans (256 connections) and
#              waits until every accepted fan is in the queue, once (joins/s, time to place);
#   memory:    Redis's used_memory grown per fan (every key of the run: queue, dedup, report,
#              outbox, the dead webhook's capped deliveries), the process's RSS;
#   status:    one fan's status polled with a million waiting (wrk, 15 s, 64 connections: p99);
#   idle:      Redis commands/s over 10 s with nothing happening (INFO total_commands_processed);
#   operator:  a listing page at offset STADIUM_FANS - 1,000, a removal from the middle;
#   admission: STADIUM_ADMIT_RATE (3,000)/s with 5-second tokens holding slots (maxActive), its
#              rate over 10 s; then the process stopped for 6 s (SIGSTOP) while those tokens
#              expire, and the rate over the 10 s after it runs again;
#   webhook:   the dead endpoint's pending deliveries and bytes against its caps, drops counted;
#   slowlog:   the slowest Redis calls of the run on this run's keys (SLOWLOG, threshold 1 ms
#              for the run, restored after; read and emptied after each step, so it never
#              overflows and its own entries are not counted as the fans' memory).
# Redis gets a core of its own (STADIUM_PIN_REDIS=1, the default on two or more cores: taskset
# puts Redis on the last core and Kafka, queuegate and the load clients on the others), as it has
# in production: SLOWLOG times a call by the wall clock, so on a shared core a call waiting for
# the CPU would be logged as slow.
# The cut of a million-fan pre-queue is scripts/bench_cut.sh; memory per open stream is
# scripts/bench_watchers.sh.
# Results in <run-dir>/stadium/summary.json (scripts/bench_report.py renders them).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
OUT=${1:-.local/bench/stadium-$(date +%s)}/stadium
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
RUN=$(date +%s)
FANS=${STADIUM_FANS:-1000000}
RATE=${STADIUM_ADMIT_RATE:-3000}
log() { printf '[bench-stadium %s] %s\n' "$(date +%T)" "$*" >&2; }

TOPIC=qgstadium-$RUN
EVENTS_TOPIC=qgstadium-events-$RUN # its own: the events of earlier runs' concert "stadium" are not this run's
QUEUEGATE_KAFKA_TOPIC=$TOPIC QUEUEGATE_EVENTS_TOPIC=$EVENTS_TOPIC scripts/services.sh up
cargo build --release --locked --bin queuegate --example burst
command -v wrk >/dev/null || { sudo_=""; [ "$(id -u)" -ne 0 ] && sudo_=sudo; $sudo_ apt-get install -y -qq wrk >/dev/null; }

PREFIX=qgstadium-$RUN
ADMIN=http://127.0.0.1:8081
ADMIN_TOKEN=bench-admin-token-0123456789
AUTH="Authorization: Bearer $ADMIN_TOKEN"
HOOK_PORT=${STADIUM_HOOK_PORT:-18099}
export QUEUEGATE_LOG=warn QUEUEGATE_REDIS_PREFIX=$PREFIX QUEUEGATE_ADMIN_TOKEN=$ADMIN_TOKEN \
  QUEUEGATE_TOKEN_SECRET=bench-token-secret-0123456789-0123456789 QUEUEGATE_RATE_LIMIT_PER_IP=0 \
  QUEUEGATE_FAN_JOINS_PER_SECOND=0 QUEUEGATE_FAN_STATUS_PER_SECOND=0 QUEUEGATE_INSECURE_DEV=true \
  QUEUEGATE_FAN_IDENTITY=body QUEUEGATE_KAFKA_TOPIC=$TOPIC QUEUEGATE_EVENTS_TOPIC=$EVENTS_TOPIC QUEUEGATE_KAFKA_GROUP=$PREFIX \
  QUEUEGATE_WEBHOOK_ALLOW_NETWORKS=127.0.0.0/8
REDIS_PORT=${REDIS_PORT:-6379}
rcli() { redis-cli -p "$REDIS_PORT" "$@" | tr -d '\r'; }
used_memory() { rcli INFO memory | awk -F: '/^used_memory:/ {print $2}'; }
redis_commands() { rcli INFO stats | awk -F: '/^total_commands_processed:/ {print $2}'; }
metric() { # name -> value summed over label sets
  curl -fsS "$ADMIN/metrics" | awk -v n="$1" '$1 ~ "^"n"({|$)" {s += $2} END {printf "%d\n", s + 0}'
}

# The dead receiver: accepts every connection, reads, never answers.
python3 - "$HOOK_PORT" > "$OUT/receiver.log" 2>&1 <<'PY' &
import socket, sys, threading
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(1024)
held = []
while True:
    c, _ = s.accept(); held.append(c)
PY
HOOK=$!
CORES=$(nproc)
PIN=0
[ "$CORES" -ge 2 ] && [ "${STADIUM_PIN_REDIS:-1}" = 1 ] && PIN=1
ON_OTHERS=()
REDIS_PID=$(rcli INFO server | awk -F: '/^process_id:/ {print $2}')
KAFKA_PID=$(cat .local/run/kafka.pid 2>/dev/null || true)
kill -0 "${KAFKA_PID:-0}" 2>/dev/null || KAFKA_PID="" # a broker services.sh did not start is left alone
trap 'kill "$HOOK" 2>/dev/null || true' EXIT
if [ "$PIN" = 1 ]; then
  REDIS_CORE=$((CORES - 1))
  OTHERS=0-$((REDIS_CORE - 1))
  taskset -a -p -c "$REDIS_CORE" "$REDIS_PID" >/dev/null
  [ -z "$KAFKA_PID" ] || taskset -a -p -c "$OTHERS" "$KAFKA_PID" >/dev/null
  taskset -a -p -c "$OTHERS" "$HOOK" >/dev/null
  ON_OTHERS=(taskset -c "$OTHERS")
  log "Redis pinned to core $REDIS_CORE; Kafka, queuegate and the load clients to $OTHERS"
fi
unpin() {
  [ "$PIN" = 1 ] || return 0
  taskset -a -p -c "0-$((CORES - 1))" "$REDIS_PID" >/dev/null 2>&1 || true
  [ -z "$KAFKA_PID" ] || taskset -a -p -c "0-$((CORES - 1))" "$KAFKA_PID" >/dev/null 2>&1 || true
}
SLOW_BEFORE=$(rcli CONFIG GET slowlog-log-slower-than | tail -1)
LEN_BEFORE=$(rcli CONFIG GET slowlog-max-len | tail -1)
"${ON_OTHERS[@]}" ./target/release/queuegate run > "$OUT/run.log" 2>&1 &
QG=$!
cleanup() {
  unpin
  kill -CONT "$QG" 2>/dev/null || true
  kill "$QG" "$HOOK" 2>/dev/null || true
  rcli CONFIG SET slowlog-log-slower-than "$SLOW_BEFORE" >/dev/null || true
  rcli CONFIG SET slowlog-max-len "$LEN_BEFORE" >/dev/null || true
}
trap cleanup EXIT
for _ in $(seq 1 150); do curl -fsS "$ADMIN/readyz" >/dev/null 2>&1 && break; sleep 0.2; done
curl -fsS "$ADMIN/readyz" >/dev/null || { log "queuegate not ready"; tail -20 "$OUT/run.log" >&2; exit 1; }
sleep 3 # the consumer joins its group

curl -fsS -X PUT "$ADMIN/admin/v1/concerts/stadium" -H "$AUTH" -H 'Content-Type: application/json' \
  -d "{\"state\":\"open\",\"maxWaiting\":0,\"tokenTtlSeconds\":5,\"webhooks\":[{\"url\":\"http://127.0.0.1:$HOOK_PORT/hook\"}]}" \
  > "$OUT/concert.json"
rates() { # admitPerSecond maxActive: a merge patch of these two alone (the webhook and the rest are kept)
  curl -fsS -X PATCH "$ADMIN/admin/v1/concerts/stadium" -H "$AUTH" -H 'Content-Type: application/merge-patch+json' \
    -d "{\"admitPerSecond\":$1,\"maxActive\":$2}" > /dev/null
}
sleep 2 # the concert cache refreshes every second
rcli CONFIG SET slowlog-log-slower-than 1000 >/dev/null
rcli CONFIG SET slowlog-max-len 100000 >/dev/null
rcli SLOWLOG RESET >/dev/null
# Moves SLOWLOG's entries on this run's keys into $OUT/slowlog.tsv (µs, command, first key) and
# empties it.
drain_slowlog() {
  python3 - "$PREFIX" "$REDIS_PORT" >> "$OUT/slowlog.tsv" <<'PY'
import socket, sys
prefix, port = sys.argv[1], int(sys.argv[2])
s = socket.create_connection(("127.0.0.1", port))
f = s.makefile("rb")
def send(*args):
    s.sendall(("*%d\r\n" % len(args) + "".join("$%d\r\n%s\r\n" % (len(a), a) for a in args)).encode())
def read():
    line = f.readline()
    t, rest = line[:1], line[1:-2]
    if t in (b"+", b"-"):
        return rest.decode()
    if t == b":":
        return int(rest)
    if t == b"$":
        n = int(rest)
        return None if n < 0 else f.read(n + 2)[:-2].decode("utf-8", "replace")
    if t == b"*":
        n = int(rest)
        return None if n < 0 else [read() for _ in range(n)]
    raise ValueError(line)
send("SLOWLOG", "GET", "-1"); entries = read()
send("SLOWLOG", "RESET"); read()
for e in entries:
    us, args = e[2], e[3]
    key = next((str(a) for a in args if prefix in str(a)), None)
    if key is not None:
        print(f"{us}\t{args[0]}\t{key.replace(prefix + ':', '')[:100]}\t{e[1]}")
PY
}
: > "$OUT/slowlog.tsv"
MEM0=$(used_memory)

log "burst: $FANS unique fans, 256 connections"
"${ON_OTHERS[@]}" ./target/release/examples/burst --concert stadium --fans "$FANS" --connections 256 --drain-seconds 900 \
  --redis "redis://127.0.0.1:$REDIS_PORT" --prefix "$PREFIX" > "$OUT/burst.json" 2> "$OUT/burst.stderr"
cat "$OUT/burst.json" >&2
sleep 5
drain_slowlog
MEM1=$(used_memory) # the outbox may still hold events the relay has not published yet
grep -E '^Vm(RSS|HWM)' "/proc/$QG/status" > "$OUT/rss.txt"
WAITING=$(rcli LLEN "$PREFIX:{stadium}:waiting")

log "status with $WAITING waiting (wrk, 15 s, 64 connections)"
TOKEN=$(curl -fsS -X POST http://127.0.0.1:8080/v1/concerts/stadium/queue -H 'Content-Type: application/json' \
  -d '{"userId":"stadium-poller"}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')
for _ in $(seq 1 100); do
  curl -fsS -H "Authorization: Bearer $TOKEN" http://127.0.0.1:8080/v1/concerts/stadium/queue/stadium-poller \
    | grep -q '"waiting"' && break
  sleep 0.2
done
"${ON_OTHERS[@]}" wrk -t2 -c64 -d15s --latency -H "Authorization: Bearer $TOKEN" \
  http://127.0.0.1:8080/v1/concerts/stadium/queue/stadium-poller > "$OUT/wrk-status.txt"
grep -E 'Requests/sec|99%' "$OUT/wrk-status.txt" >&2 || true

log "waiting for the events of the burst to be relayed and offered to the webhook (at most 300 s), then Redis idle for 10 s"
hooked() { echo "$(metric queuegate_webhook_dropped_total) $(metric queuegate_webhook_pending)"; }
for _ in $(seq 1 60); do
  E0=$(metric queuegate_events_published_total); H0=$(hooked); sleep 5
  E1=$(metric queuegate_events_published_total); H1=$(hooked)
  [ "$E0" = "$E1" ] && [ "$H0" = "$H1" ] && [ "$(rcli XLEN "$PREFIX:{stadium}:outbox")" = "0" ] && break
done
drain_slowlog
MEM_REST=$(used_memory) # a million waiting, every event relayed
log "Redis idle for 10 s"
C0=$(redis_commands); sleep 10; C1=$(redis_commands)

log "a listing page at offset $((FANS - 1000)), a removal from the middle"
curl -fsS -o "$OUT/deep-page.json" -w '%{time_total}\n' -H "$AUTH" \
  "$ADMIN/admin/v1/concerts/stadium/queue?offset=$((FANS - 1000))&limit=100" > "$OUT/deep-page.time"
MID=$(curl -fsS -H "$AUTH" "$ADMIN/admin/v1/concerts/stadium/queue?offset=$((FANS / 2))&limit=1" \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["entries"][0]["userId"])')
curl -fsS -o /dev/null -w '%{http_code} %{time_total}\n' -X DELETE -H "$AUTH" \
  "$ADMIN/admin/v1/concerts/stadium/queue/$MID" > "$OUT/removal.time"

log "admission at $RATE/s, 5-second tokens holding slots"
rates "$RATE" 1000000
sleep 12 # past the first tokens' expiry: slots fall due every second from here
A0=$(metric queuegate_admissions_total); sleep 10; A1=$(metric queuegate_admissions_total)
log "admitted $(( (A1 - A0) / 10 ))/s; stopping the process for 6 s while tokens expire"
kill -STOP "$QG"; sleep 6; kill -CONT "$QG"
sleep 2
A2=$(metric queuegate_admissions_total); sleep 10; A3=$(metric queuegate_admissions_total)
log "after the stall: $(( (A3 - A2) / 10 ))/s"
rates 0 0

WH_PENDING=$(metric queuegate_webhook_pending)
WH_BYTES=$(metric queuegate_webhook_pending_bytes)
WH_DROPPED=$(metric queuegate_webhook_dropped_total)
drain_slowlog
MEM2=$(used_memory)
grep -c -E 'WARN|ERROR' "$OUT/run.log" > "$OUT/warnings.count" || true

python3 - "$OUT" "$PREFIX" "$MEM0" "$MEM1" "$MEM_REST" "$MEM2" "$PIN" "$C0" "$C1" "$A0" "$A1" "$A2" "$A3" "$WAITING" \
  "$WH_PENDING" "$WH_BYTES" "$WH_DROPPED" "$RUN" <<'PY'
import collections, json, re, sys
(out, prefix, mem0, mem1, mem_rest, mem2, pin, c0, c1, a0, a1, a2, a3, waiting, wh_pending, wh_bytes, wh_dropped, run_t0) = sys.argv[1:]
burst = json.load(open(f"{out}/burst.json"))
rss = {l.split(':')[0]: int(l.split()[1]) for l in open(f"{out}/rss.txt")}
wrk = open(f"{out}/wrk-status.txt").read()
def wrk_ms(label):
    m = re.search(rf"{label}\s+([\d.]+)(us|ms|s)", wrk)
    if not m:
        return None
    v, unit = float(m.group(1)), m.group(2)
    return round(v / 1000 if unit == "us" else v * 1000 if unit == "s" else v, 2)
slow, when = [], {}
for line in open(f"{out}/slowlog.tsv"):
    us, cmd, key, at = line.rstrip("\n").split("\t")
    slow.append((int(us), f"{cmd} {key}"[:120]))
    when.setdefault(slow[-1], []).append(int(at))
# Redis's AOF rewrites of the run (its log: a fork, then seconds of copy-on-write in the parent),
# to tell which slow calls fell inside one.
import datetime, os
rewrites, started = [], None
log_path = os.environ.get("REDIS_LOG", ".local/redis/redis.log")
if os.path.exists(log_path):
    for line in open(log_path, errors="replace"):
        m = re.search(r"(\d\d \w\w\w \d{4} \d\d:\d\d:\d\d)\.\d+ \* (Background append only file rewriting started|Background AOF rewrite finished)", line)
        if not m:
            continue
        t = datetime.datetime.strptime(m.group(1), "%d %b %Y %H:%M:%S").timestamp() # Redis logs local time
        if "started" in m.group(2):
            started = t
        elif started is not None:
            rewrites.append((started - 1, t + 2))
            started = None
def in_rewrite(at):
    return any(a <= at <= b for a, b in rewrites)
over = [(us, c) for us, c in slow if us >= 10_000]
over_at = []
for us, c in over:
    over_at.append(when[(us, c)].pop(0))
slow.sort(reverse=True)
fans = max(int(burst["accepted"]), 1)
summary = {
    "fans": burst["fans"], "accepted": burst["accepted"], "statuses": burst["statuses"],
    "joins_per_second": round(burst["accepted_per_second"]),
    "join_latency_ms": burst["latency_ms"],
    "missing": burst["missing_in_redis"], "doubled": burst["duplicated_in_redis"],
    "placed_after_last_202_s": round(burst["last_in_redis_after_last_202_seconds"], 2),
    "waiting": int(waiting),
    "redis_bytes_per_fan": round((int(mem_rest) - int(mem0)) / fans),
    "redis_bytes_per_fan_before_relay": round((int(mem1) - int(mem0)) / fans),
    "redis_pinned_to_own_core": pin == "1",
    "redis_used_memory_end_mb": round(int(mem2) / 2**20),
    "rss_mb": round(rss.get("VmRSS", 0) / 1024), "rss_peak_mb": round(rss.get("VmHWM", 0) / 1024),
    "status_p99_ms": wrk_ms("99%"), "status_p50_ms": wrk_ms("50%"),
    "status_per_second": float(re.search(r"Requests/sec:\s+([\d.]+)", wrk).group(1)),
    "redis_idle_commands_per_second": round((int(c1) - int(c0)) / 10),
    "deep_page_ms": round(float(open(f"{out}/deep-page.time").read()) * 1000, 1),
    "removal": open(f"{out}/removal.time").read().split()[0],
    "removal_ms": round(float(open(f"{out}/removal.time").read().split()[1]) * 1000, 1),
    "admitted_per_second": round((int(a1) - int(a0)) / 10),
    "admitted_per_second_after_6s_stall": round((int(a3) - int(a2)) / 10),
    "webhook_pending": int(wh_pending), "webhook_pending_bytes": int(wh_bytes),
    "webhook_dropped": int(wh_dropped),
    "slowest_redis_calls_us": slow[:8],
    "redis_calls_over_10ms": sum(1 for us, _ in slow if us >= 10_000),
    "redis_calls_over_10ms_outside_aof_rewrites": sum(1 for at in over_at if not in_rewrite(at)),
    "aof_rewrites_during_run": sum(1 for a, b in rewrites if b >= int(run_t0)),
    "redis_calls_over_1ms": len(slow),
    "redis_calls_over_10ms_by_call": dict(collections.Counter(c for us, c in slow if us >= 10_000).most_common(10)),
    "redis_calls_over_1ms_by_call": dict(collections.Counter(c for us, c in slow).most_common(10)),
    "warnings_in_log": int(open(f"{out}/warnings.count").read().strip() or 0),
}
json.dump(summary, open(f"{out}/summary.json", "w"), indent=1)
print(json.dumps(summary, indent=1))
PY
