#!/usr/bin/env bash
# oha recipes against a local queuegate (loopback only). Install oha with `cargo install oha`.
#
#   loadtest/oha.sh status   [rate]   # status polling of one fan at a fixed rate (default 10000/s) for 20 s
#   loadtest/oha.sh rejoin   [rate]   # one fan re-joining at a fixed rate: exercises the durable path
#                                     # (every request is produced to Kafka and deduplicated later)
#   loadtest/oha.sh ceiling  [rate]   # the same join against the ceiling example (no Kafka, no Redis)
#   loadtest/oha.sh anonymous [rate]  # unique fans at a fixed rate against a gateway in anonymous
#                                     # mode: every {} is a new fan the gateway names
#
# oha sends the same body on every request, so in body mode it cannot make unique fans; in
# anonymous mode it can (above). For unique-fan joins in body or jwt mode use k6
# (loadtest/rate.js with IDENTITY=jwt signs its own tokens), wrk (loadtest/wrk-join.lua) or, for
# latency at a fixed rate beyond what k6 can offer, examples/loadgen.rs (open loop, unique fans,
# --identity body|anonymous|jwt). The gateway under test needs QUEUEGATE_RATE_LIMIT_PER_IP=0,
# QUEUEGATE_FAN_JOINS_PER_SECOND=0 and QUEUEGATE_FAN_STATUS_PER_SECOND=0: all load comes from one
# address, and the status recipe polls one fan.
set -euo pipefail
BASE=${BASE:-http://127.0.0.1:8080}
CONCERT=${CONCERT:-bench}
what=${1:-status}
rate=${2:-10000}
case "$what" in
  status)
    token=$(curl -fsS -X POST "$BASE/v1/concerts/$CONCERT/queue" -H 'Content-Type: application/json' \
      -d '{"userId":"oha-poller"}' | sed -E 's/.*"token":"([^"]+)".*/\1/')
    sleep 1
    oha --no-tui -z 20s -c 64 -q "$rate" -H "Authorization: Bearer $token" "$BASE/v1/concerts/$CONCERT/queue/oha-poller"
    ;;
  rejoin)
    oha --no-tui -z 20s -c 128 -q "$rate" -m POST -T application/json -d '{"userId":"oha-rejoiner"}' \
      "$BASE/v1/concerts/$CONCERT/queue"
    ;;
  anonymous)
    oha --no-tui -z 20s -c 128 -q "$rate" -m POST -T application/json -d '{}' "$BASE/v1/concerts/$CONCERT/queue"
    ;;
  ceiling)
    oha --no-tui -z 20s -c 128 -q "$rate" -m POST -T application/json -d '{"userId":"oha-rejoiner"}' \
      "${CEILING:-http://127.0.0.1:18080}/v1/concerts/$CONCERT/queue"
    ;;
  *) echo "usage: $0 status|rejoin|anonymous|ceiling [rate]" >&2; exit 2 ;;
esac
