#!/usr/bin/env bash
# Local clusters on loopback, no Docker (`make services-cluster`, `make services-cluster-down`):
#
#   scripts/cluster.sh up     a three-broker KRaft Kafka cluster on 127.0.0.1:19092-19094
#                             (each broker also a controller; replication factor 3,
#                             min.insync.replicas=2; topics queue.entry, queue.entry.dlt and queue.entry.parked) and
#                             a six-node Redis Cluster on 127.0.0.1:7000-7005 (three primaries,
#                             three replicas, AOF always); returns when both answer
#   scripts/cluster.sh down   stops them
#   scripts/cluster.sh status
#   scripts/cluster.sh kafka-up | redis-up   one of the two (tests start private ones)
#
# Same Kafka jars as scripts/services.sh (fetched once into .local/). State under .local/cluster/.
# Ports can be moved with CLUSTER_KAFKA_PORT (first broker; the next two follow, controllers at
# +100) and CLUSTER_REDIS_PORT (first node; the next five follow): the chaos tests start private
# clusters with this script on free ports, under CLUSTER_DIR.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
LOCAL="$ROOT/.local"
KAFKA_VERSION=${KAFKA_VERSION:-4.1.1}
KAFKA_LIBS="$LOCAL/kafka-$KAFKA_VERSION/libs"
DIR=${CLUSTER_DIR:-$LOCAL/cluster}
KPORT=${CLUSTER_KAFKA_PORT:-19092}
RPORT=${CLUSTER_REDIS_PORT:-7000}
TOPIC=${QUEUEGATE_KAFKA_TOPIC:-queue.entry}
EVENTS_TOPIC=${QUEUEGATE_EVENTS_TOPIC:-queue.events}
PARTITIONS=${QUEUEGATE_KAFKA_PARTITIONS:-12}
HOST=127.0.0.1

log() { printf '[cluster] %s\n' "$*" >&2; }
die() { printf '[cluster] error: %s\n' "$*" >&2; exit 1; }
port_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }
kafka_java() {
  local main=$1; shift
  java -Xms128m -Xmx256m -XX:+UseSerialGC -Dlog4j2.configurationFile="$DIR/kafka/log4j2.properties" \
    -cp "$KAFKA_LIBS/*" "$main" "$@"
}
bootstrap() { echo "$HOST:$KPORT,$HOST:$((KPORT + 1)),$HOST:$((KPORT + 2))"; }

# --- Kafka: three brokers, each a controller too -----------------------------------------------

write_broker_config() { # n (1..3)
  local n=$1 port=$((KPORT + $1 - 1)) d="$DIR/kafka/$1"
  local voters="1@$HOST:$((KPORT + 100)),2@$HOST:$((KPORT + 101)),3@$HOST:$((KPORT + 102))"
  mkdir -p "$d/data"
  cat > "$d/server.properties" <<PROPS
process.roles=broker,controller
node.id=$n
controller.quorum.voters=$voters
listeners=PLAINTEXT://$HOST:$port,CONTROLLER://$HOST:$((port + 100))
advertised.listeners=PLAINTEXT://$HOST:$port
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$d/data
default.replication.factor=3
min.insync.replicas=2
offsets.topic.replication.factor=3
offsets.topic.num.partitions=12
transaction.state.log.replication.factor=3
transaction.state.log.min.isr=2
transaction.state.log.num.partitions=12
share.coordinator.state.topic.replication.factor=3
share.coordinator.state.topic.min.isr=2
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=false
unclean.leader.election.enable=false
PROPS
}

start_broker() { # n
  local n=$1 d="$DIR/kafka/$1" port=$((KPORT + $1 - 1))
  if port_open "$HOST" "$port"; then
    log "a broker already answers on $HOST:$port, reusing it"
    return 0
  fi
  log "starting Kafka broker $n on $HOST:$port"
  nohup java -Xms384m -Xmx384m -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
    -Dlog4j2.configurationFile="$DIR/kafka/log4j2.properties" \
    -cp "$KAFKA_LIBS/*" kafka.Kafka "$d/server.properties" > "$d/server.log" 2>&1 &
  echo $! > "$DIR/run/kafka-$n.pid"
}

kafka_up() {
  "$ROOT/scripts/services.sh" fetch
  mkdir -p "$DIR/kafka" "$DIR/run"
  cp "$ROOT/scripts/kafka-log4j2.properties" "$DIR/kafka/log4j2.properties"
  local n cluster_id=""
  [ -f "$DIR/kafka/cluster-id" ] && cluster_id=$(cat "$DIR/kafka/cluster-id")
  if [ -z "$cluster_id" ]; then
    cluster_id=$("$ROOT/scripts/services.sh" cluster-id)
    echo "$cluster_id" > "$DIR/kafka/cluster-id"
  fi
  for n in 1 2 3; do
    port_open "$HOST" $((KPORT + n - 1)) && continue # reused: not ours to configure
    write_broker_config "$n"
    if [ ! -f "$DIR/kafka/$n/data/meta.properties" ]; then
      kafka_java kafka.tools.StorageTool format -t "$cluster_id" -c "$DIR/kafka/$n/server.properties" \
        > "$DIR/kafka/$n/format.log" 2>&1 || { cat "$DIR/kafka/$n/format.log" >&2; die "storage format of broker $n failed"; }
    fi
  done
  for n in 1 2 3; do start_broker "$n"; done
  local i
  for i in $(seq 1 240); do
    local up=0
    for n in 1 2 3; do
      # One we started is up once it says so; one we reuse, once it answers.
      if [ -f "$DIR/run/kafka-$n.pid" ]; then
        grep -q 'Kafka Server started' "$DIR/kafka/$n/server.log" 2>/dev/null && port_open "$HOST" $((KPORT + n - 1)) && up=$((up + 1))
      else
        port_open "$HOST" $((KPORT + n - 1)) && up=$((up + 1))
      fi
    done
    [ "$up" = 3 ] && break
    for n in 1 2 3; do
      [ -f "$DIR/run/kafka-$n.pid" ] || continue
      kill -0 "$(cat "$DIR/run/kafka-$n.pid")" 2>/dev/null || { tail -20 "$DIR/kafka/$n/server.log" >&2; die "broker $n exited"; }
    done
    sleep 0.5
  done
  [ "$up" = 3 ] || die "the Kafka cluster did not start within 120 s"
  local t
  for t in "$TOPIC:$PARTITIONS" "$TOPIC.dlt:1" "$TOPIC.parked:1" "$EVENTS_TOPIC:$PARTITIONS"; do
    log "topic ${t%%:*} (${t##*:} partitions, replication factor 3)"
    kafka_java org.apache.kafka.tools.TopicCommand --bootstrap-server "$(bootstrap)" --create --if-not-exists \
      --topic "${t%%:*}" --partitions "${t##*:}" --replication-factor 3 --config min.insync.replicas=2 >/dev/null \
      || die "could not create topic ${t%%:*}"
  done
}

# --- Redis Cluster: six nodes -----------------------------------------------------------------

redis_up() {
  if ! command -v redis-server >/dev/null; then
    log "installing redis-server from Debian's packages"
    local sudo=""; [ "$(id -u)" -ne 0 ] && sudo=sudo
    $sudo apt-get update -qq >/dev/null && $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null \
      || die "apt-get install redis-server failed"
  fi
  mkdir -p "$DIR/run"
  local p nodes=""
  for p in $(seq "$RPORT" $((RPORT + 5))); do
    nodes="$nodes $HOST:$p"
    redis-cli -p "$p" ping >/dev/null 2>&1 && continue
    mkdir -p "$DIR/redis/$p"
    redis-server --bind "$HOST" --port "$p" --dir "$DIR/redis/$p" --cluster-enabled yes \
      --cluster-config-file nodes.conf --cluster-node-timeout 2000 --cluster-require-full-coverage no --appendonly yes --appendfsync always \
      --save '' --daemonize yes --pidfile "$DIR/run/redis-$p.pid" --logfile "$DIR/redis/$p/redis.log" \
      || die "redis-server on port $p failed to start"
  done
  local i
  for i in $(seq 1 100); do
    local all=1
    for p in $(seq "$RPORT" $((RPORT + 5))); do redis-cli -p "$p" ping 2>/dev/null | grep -q PONG || all=0; done
    [ "$all" = 1 ] && break
    sleep 0.1
  done
  if ! redis-cli -p "$RPORT" cluster info 2>/dev/null | grep -q '^cluster_state:ok'; then
    if [ "$(redis-cli -p "$RPORT" cluster info | awk -F: '/^cluster_known_nodes/ {print $2}' | tr -d '\r')" = 1 ]; then
      log "forming the Redis Cluster (3 primaries, 3 replicas)"
      # shellcheck disable=SC2086
      redis-cli --cluster create $nodes --cluster-replicas 1 --cluster-yes >"$DIR/redis/create.log" 2>&1 \
        || { cat "$DIR/redis/create.log" >&2; die "redis-cli --cluster create failed"; }
    fi
    for i in $(seq 1 200); do
      redis-cli -p "$RPORT" cluster info | grep -q '^cluster_state:ok' && break
      sleep 0.1
    done
  fi
  redis-cli -p "$RPORT" cluster info | grep -q '^cluster_state:ok' || die "the Redis Cluster is not ok"
  # Every replica attached (the cluster may say ok before replication links are up).
  for i in $(seq 1 200); do
    [ "$(redis-cli -p "$RPORT" cluster nodes | grep -c ' slave .* connected')" -ge 3 ] && break
    sleep 0.1
  done
}

stop_pid() { # file
  [ -f "$1" ] || return 0
  local pid; pid=$(cat "$1")
  if kill -0 "$pid" 2>/dev/null; then
    kill "$pid"
    local i; for i in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
  fi
  rm -f "$1"
}

case "${1:-up}" in
  up)
    "$ROOT/scripts/services.sh" check services
    redis_up
    kafka_up
    log "ready: Kafka $(bootstrap); Redis Cluster redis+cluster://$HOST:$RPORT,$HOST:$((RPORT + 1)),$HOST:$((RPORT + 2))"
    ;;
  kafka-up) kafka_up ;;
  redis-up) redis_up ;;
  down)
    for f in "$DIR"/run/*.pid; do [ -e "$f" ] && stop_pid "$f"; done
    log "stopped"
    ;;
  status)
    for n in 1 2 3; do port_open "$HOST" $((KPORT + n - 1)) && echo "kafka $n: up" || echo "kafka $n: down"; done
    redis-cli -p "$RPORT" cluster info 2>/dev/null | grep '^cluster_state' || echo "redis cluster: down"
    ;;
  *) die "usage: $0 up|down|status|kafka-up|redis-up" ;;
esac
