#!/usr/bin/env bash
# The fair start, part of `make bench` (alone: `scripts/bench_fairstart.sh [run-dir]`).
#
# One gateway and one consumer (release) on the local Kafka and Redis. A concert opens
# FAIR_OPEN_IN seconds (45) from now; examples/burst joins FAIR_FANS (100,000) unique fans before
# then, all held in the pre-queue; Redis's memory is read before the burst and once every fan is
# held (the pre-queue's cost per fan). At the cut (opensAt plus the delivery timeout and twice
# the clock skew, then until the consumer passed the topic's watermarks) the pre-queue is queued
# in the seed's order; the burst example waits until every accepted fan is in the queue and
# checks nobody is missing or doubled. Reported: how long after opensAt the positions were exact
# (the fairness document's shuffledAt), how long the cut took and in how many Redis calls, memory per held fan,
# and `queuegate verify-shuffle` on the result. Results in <run-dir>/fairstart/summary.json.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
OUT=${1:-.local/bench/fairstart-$(date +%s)}/fairstart
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
RUN=$(date +%s)
FANS=${FAIR_FANS:-100000}
OPEN_IN=${FAIR_OPEN_IN:-45}
log() { printf '[bench-fairstart %s] %s\n' "$(date +%T)" "$*" >&2; }

TOPIC=qgfair-$RUN
QUEUEGATE_KAFKA_TOPIC=$TOPIC scripts/services.sh up
cargo build --release --locked --bin queuegate --example burst

PREFIX=qgfair-$RUN
ADMIN=http://127.0.0.1:8081
ADMIN_TOKEN=bench-admin-token-0123456789
export QUEUEGATE_LOG=warn,queuegate::admitter=info QUEUEGATE_LOG_FORMAT=json QUEUEGATE_REDIS_PREFIX=$PREFIX \
  QUEUEGATE_ADMIN_TOKEN=$ADMIN_TOKEN QUEUEGATE_TOKEN_SECRET=bench-token-secret-0123456789-0123456789 \
  QUEUEGATE_RATE_LIMIT_PER_IP=0 QUEUEGATE_FAN_JOINS_PER_SECOND=0 QUEUEGATE_FAN_STATUS_PER_SECOND=0 \
  QUEUEGATE_INSECURE_DEV=true QUEUEGATE_FAN_IDENTITY=body QUEUEGATE_KAFKA_TOPIC=$TOPIC QUEUEGATE_KAFKA_GROUP=$PREFIX
REDIS_PORT=${REDIS_PORT:-6379}
rcli() { redis-cli -p "$REDIS_PORT" "$@" | tr -d '\r'; }
used_memory() { rcli INFO memory | awk -F: '/^used_memory:/ {print $2}'; }
# shellcheck source=scripts/bench_pair.sh
. "$ROOT/scripts/bench_pair.sh"
start_pair

OPENS_MS=$(( $(date +%s%3N) + OPEN_IN * 1000 ))
OPENS=$(python3 -c "import datetime; print(datetime.datetime.fromtimestamp($OPENS_MS / 1000, datetime.timezone.utc).isoformat(timespec='milliseconds').replace('+00:00', 'Z'))")
curl -fsS -X PUT "$ADMIN/admin/v1/concerts/fair" -H "Authorization: Bearer $ADMIN_TOKEN" \
  -H 'Content-Type: application/json' -d "{\"state\":\"open\",\"opensAt\":\"$OPENS\"}" > "$OUT/concert.json"
sleep 2
MEM0=$(used_memory)
log "$FANS fans join before opensAt ($OPENS)"
./target/release/examples/burst --concert fair --fans "$FANS" --connections 256 \
  --redis "redis://127.0.0.1:$REDIS_PORT" --prefix "$PREFIX" > "$OUT/burst.json" 2> "$OUT/burst.stderr" &
BURST=$!
# Every accepted fan held, a moment before opensAt.
until [ "$(( $(date +%s%3N) + 1500 ))" -ge "$OPENS_MS" ]; do sleep 0.2; done
HELD=$(rcli HLEN "$PREFIX:{fair}:hold")
MEM1=$(used_memory)
log "$HELD held at opensAt; waiting for the cut and for every fan in the queue"
wait "$BURST"
curl -fsS "http://127.0.0.1:8080/v1/concerts/fair/fairness" > "$OUT/fairness.json"
# The listing's head, for verify-shuffle (pages of 1,000).
python3 - "$ADMIN" "$ADMIN_TOKEN" "$OUT" <<'PY'
import json, sys, urllib.request
admin, token, out = sys.argv[1:]
entries, offset = [], 0
while True:
    req = urllib.request.Request(f"{admin}/admin/v1/concerts/fair/queue?offset={offset}&limit=1000",
                                 headers={"Authorization": f"Bearer {token}"})
    page = json.load(urllib.request.urlopen(req))
    entries += page["entries"]
    offset += 1000
    if offset >= page["total"]:
        break
json.dump(entries, open(f"{out}/listing.json", "w"))
PY
VERIFY=$(./target/release/queuegate verify-shuffle --fairness "$OUT/fairness.json" --listing "$OUT/listing.json" 2>&1 || true)
log "$VERIFY"
python3 - "$OUT" "$OPENS_MS" "$MEM0" "$MEM1" "$HELD" "$VERIFY" <<'PY'
import datetime, json, re, sys
out, opens_ms, mem0, mem1, held, verify = sys.argv[1:]
fair = json.load(open(f"{out}/fairness.json"))
burst = json.load(open(f"{out}/burst.json"))
shuffled = datetime.datetime.fromisoformat(fair["shuffledAt"].replace("Z", "+00:00")).timestamp() * 1000
cut_ms = cut_calls = None
for line in open(f"{out}/consumer.log"):
    if "fair start" in line:
        cut_ms, cut_calls = json.loads(line).get("ms"), json.loads(line).get("calls")
summary = {
    "fans": burst["fans"], "accepted": burst["accepted"], "held_at_opens_at": int(held),
    "missing": burst["missing_in_redis"], "doubled": burst["duplicated_in_redis"],
    "prequeued": fair.get("prequeued"), "late": fair.get("late"),
    "exact_after_opens_at_s": round((shuffled - int(opens_ms)) / 1000, 2),
    "cut_ms": cut_ms, "cut_calls": cut_calls,
    "redis_bytes_per_held_fan": round((int(mem1) - int(mem0)) / max(int(held), 1)),
    "verify_shuffle": verify,
}
json.dump(summary, open(f"{out}/summary.json", "w"), indent=1)
print(json.dumps(summary))
PY
