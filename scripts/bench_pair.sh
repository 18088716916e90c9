# Sourced by the bench scripts: `start_pair` starts a release `queuegate gateway` (public 8080,
# admin 8081) and `queuegate consumer` (admin 8082) with the caller's environment, logs in $OUT,
# stops both on exit, and returns once both answer /readyz (and the consumer had 3 s to join its
# group). Sets GW and CO to their pids.
start_pair() {
  ./target/release/queuegate gateway > "$OUT/gateway.log" 2>&1 &
  GW=$!
  QUEUEGATE_ADMIN_ADDR=127.0.0.1:8082 ./target/release/queuegate consumer > "$OUT/consumer.log" 2>&1 &
  CO=$!
  trap 'kill $GW $CO 2>/dev/null || true' EXIT
  local _
  for _ in $(seq 1 150); do
    curl -fsS http://127.0.0.1:8081/readyz >/dev/null 2>&1 && curl -fsS http://127.0.0.1:8082/readyz >/dev/null 2>&1 && break
    sleep 0.2
  done
  curl -fsS http://127.0.0.1:8081/readyz >/dev/null || { echo "queuegate not ready" >&2; exit 1; }
  sleep 3
}
