#!/usr/bin/env bash
# Local Kafka (single-node KRaft, from Maven Central jars) and Redis (Debian package), no Docker.
#
#   scripts/services.sh up      start both in the background (reusing any already answering), create topics
#   scripts/services.sh down    stop what this script started
#   scripts/services.sh status  say what answers
#   scripts/services.sh check [SCOPE...]  name, in one line, every prerequisite missing for
#                               services, build, up, tools or test (the default: all of make test)
#   scripts/services.sh nextest build the test runner (cargo-nextest) into .local/cargo/bin
#   scripts/services.sh build-deps  install the build's Debian packages (OpenSSL headers, pkg-config)
#   scripts/services.sh tools   install what the tests need besides the services (prometheus,
#                               faketime, chromium, chromedriver, nginx; schemathesis,
#                               kubernetes-validate, cloudevents and standardwebhooks from PyPI;
#                               axe-core from npm; Caddy and helm from the Go proxy)
#
# Honours QUEUEGATE_KAFKA_BROKERS (default 127.0.0.1:9092) and QUEUEGATE_REDIS_URL
# (default redis://127.0.0.1:6379). Everything it downloads or writes lives under .local/.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
LOCAL="$ROOT/.local"
KAFKA_VERSION=${KAFKA_VERSION:-4.1.1}
LOG4J_VERSION=2.24.3
KAFKA_LIBS="$LOCAL/kafka-$KAFKA_VERSION/libs"
RUN="$LOCAL/run"
# What a fresh clone on the same machine need not fetch or build again: Kafka's jars and the
# tools built from source (Caddy, helm, cargo-nextest), kept per version outside the clone.
# QUEUEGATE_CACHE= (empty) turns it off.
CACHE=${QUEUEGATE_CACHE-${XDG_CACHE_HOME:-$HOME/.cache}/queuegate}
BROKERS=${QUEUEGATE_KAFKA_BROKERS:-127.0.0.1:9092}
REDIS_URL=${QUEUEGATE_REDIS_URL:-redis://127.0.0.1:6379}
TOPIC=${QUEUEGATE_KAFKA_TOPIC:-queue.entry}
EVENTS_TOPIC=${QUEUEGATE_EVENTS_TOPIC:-queue.events}
PARTITIONS=${QUEUEGATE_KAFKA_PARTITIONS:-12}

first_broker=${BROKERS%%,*}
KAFKA_HOST=${first_broker%:*}
KAFKA_PORT=${first_broker##*:}
redis_hostport=${REDIS_URL#redis://}
redis_hostport=${redis_hostport##*@}
redis_hostport=${redis_hostport%%/*}
REDIS_HOST=${redis_hostport%:*}
REDIS_PORT=${redis_hostport##*:}
[ "$REDIS_PORT" = "$REDIS_HOST" ] && REDIS_PORT=6379

log() { printf '[services] %s\n' "$*" >&2; }
die() { printf '[services] error: %s\n' "$*" >&2; exit 1; }

port_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

# --- Kafka -------------------------------------------------------------------------------------

# cached NAME DEST: copies the cached directory NAME (if there is one) to DEST; true if it did.
cached() {
  [ -n "$CACHE" ] && [ -f "$CACHE/$1/.complete" ] || return 1
  mkdir -p "$2" && cp -a "$CACHE/$1/." "$2/" && log "reused $1 from $CACHE"
}

# keep NAME SRC: keeps a copy of the finished directory SRC in the cache as NAME.
keep() {
  [ -n "$CACHE" ] || return 0
  mkdir -p "$CACHE" && rm -rf "$CACHE/$1.tmp" && cp -a "$2" "$CACHE/$1.tmp" && touch "$CACHE/$1.tmp/.complete" \
    && rm -rf "$CACHE/$1" && mv "$CACHE/$1.tmp" "$CACHE/$1" || log "could not cache $1 in $CACHE (going on)"
}

fetch_kafka() {
  [ -f "$KAFKA_LIBS/.complete" ] && return 0
  cached "kafka-$KAFKA_VERSION-libs" "$KAFKA_LIBS" && return 0
  command -v mvn >/dev/null || die "Maven (mvn) is needed to fetch Apache Kafka from Maven Central"
  command -v java >/dev/null || die "Java 17+ is needed to run Apache Kafka"
  log "fetching Apache Kafka $KAFKA_VERSION from Maven Central into ${KAFKA_LIBS#$ROOT/} (once)"
  local pomdir="$LOCAL/kafka-pom"
  mkdir -p "$pomdir" "$KAFKA_LIBS"
  cat > "$pomdir/pom.xml" <<POM
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>local.queuegate</groupId>
  <artifactId>kafka-runtime</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId><version>$KAFKA_VERSION</version></dependency>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka-tools</artifactId><version>$KAFKA_VERSION</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-core</artifactId><version>$LOG4J_VERSION</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-slf4j-impl</artifactId><version>$LOG4J_VERSION</version></dependency>
  </dependencies>
  <build><pluginManagement><plugins>
    <plugin><groupId>org.apache.maven.plugins</groupId><artifactId>maven-dependency-plugin</artifactId><version>3.8.1</version></plugin>
  </plugins></pluginManagement></build>
</project>
POM
  (cd "$pomdir" && mvn -B -q dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$KAFKA_LIBS") \
    || die "mvn could not fetch Kafka $KAFKA_VERSION (see output above)"
  # kafka-tools drags in an SLF4J 2 binding of its own; keep only the log4j2 one Kafka 4.1 expects.
  rm -f "$KAFKA_LIBS"/slf4j-reload4j-*.jar "$KAFKA_LIBS"/log4j-slf4j2-impl-*.jar
  touch "$KAFKA_LIBS/.complete"
  keep "kafka-$KAFKA_VERSION-libs" "$KAFKA_LIBS"
}

kafka_java() {
  local main=$1; shift
  java -Xms256m -Xmx${KAFKA_HEAP:-512m} -XX:+UseSerialGC \
    -Dlog4j2.configurationFile="$LOCAL/kafka/log4j2.properties" \
    -cp "$KAFKA_LIBS/*" "$main" "$@"
}

write_kafka_config() {
  local dir="$LOCAL/kafka"
  mkdir -p "$dir/data"
  cat > "$dir/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@$KAFKA_HOST:$((KAFKA_PORT + 1))
listeners=PLAINTEXT://$KAFKA_HOST:$KAFKA_PORT,CONTROLLER://$KAFKA_HOST:$((KAFKA_PORT + 1))
advertised.listeners=PLAINTEXT://$KAFKA_HOST:$KAFKA_PORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$dir/data
num.partitions=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=12
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=12
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=false
PROPS
  cp "$ROOT/scripts/kafka-log4j2.properties" "$dir/log4j2.properties"
}

# A random KRaft cluster id: 16 bytes, URL-safe base64 without padding. One that starts with '-'
# (1 in 64) would be read by the storage tool as an option, so draw again (Kafka's own
# Uuid.randomUuid does the same).
new_cluster_id() {
  local id
  while :; do
    id=$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=')
    [ "${id#-}" = "$id" ] && break
  done
  echo "$id"
}

start_kafka() {
  if port_open "$KAFKA_HOST" "$KAFKA_PORT"; then
    log "Kafka already answers on $KAFKA_HOST:$KAFKA_PORT, reusing it"
    return 0
  fi
  fetch_kafka
  write_kafka_config
  local dir="$LOCAL/kafka"
  if [ ! -f "$dir/data/meta.properties" ]; then
    local cluster_id
    cluster_id=$(new_cluster_id)
    log "formatting KRaft storage (cluster id $cluster_id)"
    kafka_java kafka.tools.StorageTool format -t "$cluster_id" -c "$dir/server.properties" >"$dir/format.log" 2>&1 \
      || { cat "$dir/format.log" >&2; die "kafka storage format failed"; }
  fi
  mkdir -p "$RUN"
  log "starting Kafka on $KAFKA_HOST:$KAFKA_PORT (log: ${dir#$ROOT/}/server.log)"
  # The JVM options Kafka's own start scripts use (kafka-run-class.sh): G1 with a 20 ms pause
  # goal. With the serial collector the broker stopped for ~30 ms every few seconds under load,
  # which was most of the joins' p99.
  nohup java -Xms${KAFKA_HEAP:-1g} -Xmx${KAFKA_HEAP:-1g} -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
    -XX:InitiatingHeapOccupancyPercent=35 -XX:+ExplicitGCInvokesConcurrent \
    -Dlog4j2.configurationFile="$dir/log4j2.properties" \
    -cp "$KAFKA_LIBS/*" kafka.Kafka "$dir/server.properties" >"$dir/server.log" 2>&1 &
  echo $! > "$RUN/kafka.pid"
  local i
  for i in $(seq 1 120); do
    if grep -q 'Kafka Server started' "$dir/server.log" 2>/dev/null && port_open "$KAFKA_HOST" "$KAFKA_PORT"; then
      log "Kafka is up"
      return 0
    fi
    kill -0 "$(cat "$RUN/kafka.pid")" 2>/dev/null || { tail -30 "$dir/server.log" >&2; die "Kafka exited during start-up"; }
    sleep 0.5
  done
  tail -30 "$dir/server.log" >&2
  die "Kafka did not start within 60 s"
}

create_topics() {
  local t
  for t in "$TOPIC:$PARTITIONS" "$TOPIC.dlt:1" "$TOPIC.parked:1" "$EVENTS_TOPIC:$PARTITIONS"; do
    log "topic ${t%%:*} (${t##*:} partitions)"
    kafka_java org.apache.kafka.tools.TopicCommand --bootstrap-server "$KAFKA_HOST:$KAFKA_PORT" \
      --create --if-not-exists --topic "${t%%:*}" --partitions "${t##*:}" --replication-factor 1 >/dev/null \
      || die "could not create topic ${t%%:*}"
  done
}

# --- Redis -------------------------------------------------------------------------------------

redis_ping() { redis-cli -h "$REDIS_HOST" -p "$REDIS_PORT" ping 2>/dev/null | grep -q PONG; }

start_redis() {
  if command -v redis-cli >/dev/null && redis_ping; then
    log "Redis already answers on $REDIS_HOST:$REDIS_PORT, reusing it"
    return 0
  fi
  if ! command -v redis-server >/dev/null; then
    log "installing redis-server from Debian's packages"
    local sudo=""; [ "$(id -u)" -ne 0 ] && sudo=sudo
    $sudo apt-get update -qq >/dev/null && $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null \
      || die "apt-get install redis-server failed"
  fi
  # Debian's package starts a service of its own on 6379 where systemd runs; that one is reused above.
  local dir="$LOCAL/redis"
  mkdir -p "$dir" "$RUN"
  log "starting Redis on $REDIS_HOST:$REDIS_PORT with AOF appendfsync always (dir ${dir#$ROOT/})"
  redis-server --bind "$REDIS_HOST" --port "$REDIS_PORT" --dir "$dir" \
    --appendonly yes --appendfsync always --save '' \
    --daemonize yes --pidfile "$RUN/redis.pid" --logfile "$dir/redis.log" \
    || die "redis-server failed to start"
  # Loading a large AOF at start can take a while; PING answers LOADING until it is done.
  local i
  for i in $(seq 1 600); do redis_ping && { log "Redis is up"; return 0; }; sleep 0.1; done
  die "Redis did not answer within 60 s (log: ${dir#$ROOT/}/redis.log)"
}

# --- build dependencies ------------------------------------------------------------------------

# rdkafka builds its bundled librdkafka with TLS (and SASL/SCRAM) against the system OpenSSL:
# its headers and pkg-config must be there before cargo runs.
build_deps() {
  if pkg-config --exists openssl 2>/dev/null; then
    return 0
  fi
  log "installing OpenSSL headers and pkg-config from Debian's packages (for rdkafka's TLS)"
  local sudo=""; [ "$(id -u)" -ne 0 ] && sudo=sudo
  $sudo apt-get update -qq >/dev/null && $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libssl-dev pkg-config >/dev/null \
    || die "apt-get install libssl-dev pkg-config failed"
}

# --- test tools --------------------------------------------------------------------------------

# From Debian's packages: Prometheus (and promtool), so the observability test runs a real
# Prometheus against the dashboards and alert rules in grafana/; libfaketime (faketime), so the
# clock-skew scenario runs an instance whose clock is wrong; chromium and chromedriver, so the
# browser tests open the pages in a real browser (and fonts-nanum, so Korean shows in screenshots).
install_tools() {
  if command -v prometheus >/dev/null && command -v promtool >/dev/null && command -v faketime >/dev/null \
    && command -v chromium >/dev/null && command -v chromedriver >/dev/null && [ -x /usr/sbin/nginx ]; then
    return 0
  fi
  log "installing prometheus, faketime, chromium, chromedriver and nginx from Debian's packages (for the observability, clock-skew, browser and proxy tests)"
  local sudo=""; [ "$(id -u)" -ne 0 ] && sudo=sudo
  local nginx_before=no; pgrep -x nginx >/dev/null && nginx_before=yes
  $sudo apt-get update -qq >/dev/null && $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus faketime chromium chromium-driver fonts-nanum nginx-light >/dev/null \
    || die "apt-get install prometheus faketime chromium chromium-driver nginx-light failed"
  # The package may start a system nginx on port 80; the tests start private ones of their own.
  [ "$nginx_before" = no ] && { $sudo pkill -x nginx 2>/dev/null || true; }
}

# From PyPI, into .local/venv: schemathesis, which fuzzes both listeners from /openapi.json
# (tests/api/schemathesis.rs). Pinned, so a new release cannot change what passes.
SCHEMATHESIS_VERSION=4.32.5
install_schemathesis() {
  local venv="$LOCAL/venv"
  if [ -x "$venv/bin/schemathesis" ] && "$venv/bin/schemathesis" --version 2>/dev/null | grep -q "$SCHEMATHESIS_VERSION"; then
    return 0
  fi
  log "installing schemathesis $SCHEMATHESIS_VERSION from PyPI into ${venv#$ROOT/}"
  python3 -m venv "$venv" || die "python3 -m venv failed (Debian: apt-get install python3-venv)"
  "$venv/bin/pip" install -q "schemathesis==$SCHEMATHESIS_VERSION" || die "pip install schemathesis failed"
}

# From the Go module proxy, into .local/go/bin: Caddy, which the gate's proxy tests run with
# deploy/caddy/Caddyfile (tests/api/gate_proxies.rs). Pinned; built once (a few minutes).
CADDY_VERSION=v2.11.9
install_caddy() { go_install caddy github.com/caddyserver/caddy/v2/cmd/caddy "$CADDY_VERSION"; }

# go_install NAME PACKAGE VERSION: builds PACKAGE@VERSION into .local/go/bin/NAME, once.
go_install() {
  local name=$1 pkg=$2 version=$3 bin="$LOCAL/go/bin/$1"
  [ -x "$bin" ] && [ -f "$LOCAL/go/$name-$version" ] && return 0
  if cached "$name-$version" "$LOCAL/go/bin"; then touch "$LOCAL/go/$name-$version"; return 0; fi
  command -v go >/dev/null || die "go is needed to build $name (https://go.dev/dl/)"
  log "building $name $version from the Go module proxy into ${bin#$ROOT/} (a few minutes, once)"
  GOBIN="$LOCAL/go/bin" GOPATH="$LOCAL/go/path" GOFLAGS=-modcacherw \
    go install "$pkg@$version" || die "go install $name failed"
  touch "$LOCAL/go/$name-$version"
  local one; one=$(mktemp -d); cp "$bin" "$one/"; keep "$name-$version" "$one"; rm -rf "$one"
}

# From the Go module proxy, into .local/go/bin: helm, which lints and renders the chart in
# deploy/helm/queuegate (tests/chart.rs). Pinned; built once (a few minutes).
HELM_VERSION=v4.3.2
install_helm() { go_install helm helm.sh/helm/v4/cmd/helm "$HELM_VERSION"; }

# From PyPI, into .local/venv: kubernetes-validate, which checks every object the chart renders
# against Kubernetes' own schemas (tests/chart.rs). Pinned.
KUBERNETES_VALIDATE_VERSION=1.37.0
install_kubernetes_validate() {
  local venv="$LOCAL/venv"
  [ -x "$venv/bin/kubernetes-validate" ] && [ -f "$venv/kubernetes-validate-$KUBERNETES_VALIDATE_VERSION" ] && return 0
  [ -x "$venv/bin/pip" ] || python3 -m venv "$venv" || die "python3 -m venv failed (Debian: apt-get install python3-venv)"
  log "installing kubernetes-validate $KUBERNETES_VALIDATE_VERSION from PyPI into ${venv#$ROOT/}"
  "$venv/bin/pip" install -q "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION" || die "pip install kubernetes-validate failed"
  touch "$venv/kubernetes-validate-$KUBERNETES_VALIDATE_VERSION"
}

# From PyPI, into .local/venv: the CloudEvents SDK and the Standard Webhooks library, which
# read back the events topic's records and verify webhook deliveries (tests/api/events_out.rs).
# Pinned.
CLOUDEVENTS_VERSION=2.2.0
STANDARDWEBHOOKS_VERSION=1.3.0
install_event_libraries() {
  local venv="$LOCAL/venv" mark="$LOCAL/venv/events-$CLOUDEVENTS_VERSION-$STANDARDWEBHOOKS_VERSION"
  [ -f "$mark" ] && return 0
  [ -x "$venv/bin/pip" ] || python3 -m venv "$venv" || die "python3 -m venv failed (Debian: apt-get install python3-venv)"
  log "installing cloudevents $CLOUDEVENTS_VERSION and standardwebhooks $STANDARDWEBHOOKS_VERSION from PyPI into ${venv#$ROOT/}"
  "$venv/bin/pip" install -q "cloudevents==$CLOUDEVENTS_VERSION" "standardwebhooks==$STANDARDWEBHOOKS_VERSION" \
    || die "pip install cloudevents standardwebhooks failed"
  touch "$mark"
}

# From npm, into .local/axe: axe-core, which the browser tests run in Chromium on every state of
# the room and the console (WCAG 2.2 A and AA; tests/browser/webdriver.rs). Pinned.
AXE_VERSION=4.14.1
install_axe() {
  local dir="$LOCAL/axe"
  [ -f "$dir/node_modules/axe-core/axe.min.js" ] && [ -f "$dir/axe-core-$AXE_VERSION" ] && return 0
  log "installing axe-core $AXE_VERSION from npm into ${dir#$ROOT/}"
  mkdir -p "$dir"
  npm install --silent --no-audit --no-fund --prefix "$dir" "axe-core@$AXE_VERSION" >/dev/null \
    || die "npm install axe-core failed"
  touch "$dir/axe-core-$AXE_VERSION"
}

# From crates.io, into .local/cargo/bin: cargo-nextest, the runner `make test` uses
# (scripts/test.sh, .config/nextest.toml): a process and a deadline per test, no retries, a
# JUnit report of every test's time. Pinned; built once (a debug build: a few minutes less to
# compile, and the runner's own speed does not matter beside the tests').
NEXTEST_VERSION=0.9.151
install_nextest() {
  local bin="$LOCAL/cargo/bin/cargo-nextest"
  [ -x "$bin" ] && [ -f "$LOCAL/cargo/nextest-$NEXTEST_VERSION" ] && return 0
  if cached "cargo-nextest-$NEXTEST_VERSION" "$LOCAL/cargo/bin"; then touch "$LOCAL/cargo/nextest-$NEXTEST_VERSION"; return 0; fi
  log "building cargo-nextest $NEXTEST_VERSION from crates.io into ${bin#$ROOT/} (a few minutes, once)"
  cargo install --quiet --locked --debug --root "$LOCAL/cargo" --version "$NEXTEST_VERSION" cargo-nextest \
    || die "cargo install cargo-nextest failed"
  touch "$LOCAL/cargo/nextest-$NEXTEST_VERSION"
  local one; one=$(mktemp -d); cp "$bin" "$one/"; keep "cargo-nextest-$NEXTEST_VERSION" "$one"; rm -rf "$one"
}

# --- prerequisites -----------------------------------------------------------------------------

# at_least HAVE WANT: whether version HAVE (1.89.0) is WANT (1.89) or newer.
at_least() { [ "$(printf '%s\n%s\n' "$2" "$1" | sort -V | head -1)" = "$2" ]; }

# built NAME VERSION: whether a tool go_install makes is already built, or cached.
built() { [ -f "$LOCAL/go/$1-$2" ] || { [ -n "$CACHE" ] && [ -f "$CACHE/$1-$2/.complete" ]; }; }

# check_prerequisites SCOPE...: what README.md lists, checked before anything starts; every one
# missing is named in one line. Scopes: services (make services: Kafka, Redis, and the OpenSSL
# headers it installs for the build), build (cargo builds queuegate), up (make up), tools
# (scripts/services.sh tools), test (make test: services, build and tools).
check_prerequisites() {
  local scopes=" $* " missing=() need_apt=no
  [[ $scopes == *" test "* ]] && scopes+=" services build tools "
  [[ $scopes == *" up "* ]] && scopes+=" services build "
  if [[ $scopes == *" services "* ]]; then
    local java_major
    java_major=$(java -version 2>&1 | sed -n 's/.* version "\([0-9]*\).*/\1/p' | head -1 || true)
    [ "${java_major:-0}" -ge 17 ] || missing+=("Java 17+ (java)")
    [ -f "$KAFKA_LIBS/.complete" ] || { [ -n "$CACHE" ] && [ -f "$CACHE/kafka-$KAFKA_VERSION-libs/.complete" ]; } \
      || command -v mvn >/dev/null || missing+=("Maven (mvn)")
    command -v redis-server >/dev/null && pkg-config --exists openssl 2>/dev/null || need_apt=yes
  fi
  if [[ $scopes == *" build "* ]]; then
    local rust; rust=$(rustc --version 2>/dev/null | awk '{print $2}' || true)
    [ -n "$rust" ] && at_least "$rust" 1.89 || missing+=("Rust 1.89+ (rustc and cargo, from rustup.rs)")
    command -v cc >/dev/null && command -v make >/dev/null || missing+=("a C compiler and make (Debian: build-essential)")
  fi
  if [[ $scopes == *" up "* ]]; then
    command -v curl >/dev/null || missing+=("curl")
    command -v openssl >/dev/null || missing+=("openssl")
  fi
  if [[ $scopes == *" tools "* ]]; then
    command -v openssl >/dev/null || missing+=("openssl")
    if ! built caddy "$CADDY_VERSION" || ! built helm "$HELM_VERSION"; then
      local go; go=$(go env GOVERSION 2>/dev/null || true); go=${go#go}
      [ -n "$go" ] && at_least "$go" 1.26 || missing+=("Go 1.26+ (go; go.dev/dl, Debian's golang-go is older)")
    fi
    [ -x "$LOCAL/venv/bin/pip" ] || python3 -c 'import ensurepip' 2>/dev/null \
      || missing+=("Python 3 with venv (Debian: python3-venv)")
    [ -f "$LOCAL/axe/axe-core-$AXE_VERSION" ] || command -v npm >/dev/null || missing+=("Node.js with npm (for axe-core)")
    command -v prometheus >/dev/null && command -v promtool >/dev/null && command -v faketime >/dev/null \
      && command -v chromium >/dev/null && command -v chromedriver >/dev/null && [ -x /usr/sbin/nginx ] || need_apt=yes
  fi
  if [ "$need_apt" = yes ]; then
    command -v apt-get >/dev/null || missing+=("apt-get (for Debian's packages it installs)")
    [ "$(id -u)" -eq 0 ] || command -v sudo >/dev/null || missing+=("root or sudo (for apt-get)")
  fi
  [ ${#missing[@]} -eq 0 ] && return 0
  local list; list=$(printf '%s; ' "${missing[@]}")
  die "missing: ${list%; } (README.md lists what a machine needs)"
}

# --- commands ----------------------------------------------------------------------------------

stop_pidfile() {
  local name=$1 f="$RUN/$1.pid"
  [ -f "$f" ] || return 0
  local pid; pid=$(cat "$f")
  if kill -0 "$pid" 2>/dev/null; then
    log "stopping $name (pid $pid)"
    kill "$pid"
    local i; for i in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
  fi
  rm -f "$f"
}

case "${1:-up}" in
  up)
    check_prerequisites services
    build_deps
    # Fetched even when a running broker is reused: the fault-injection tests start private
    # brokers from these jars.
    fetch_kafka
    start_redis
    start_kafka
    create_topics
    log "ready: Kafka $KAFKA_HOST:$KAFKA_PORT, Redis $REDIS_HOST:$REDIS_PORT"
    ;;
  down)
    stop_pidfile kafka
    stop_pidfile redis
    ;;
  status)
    port_open "$KAFKA_HOST" "$KAFKA_PORT" && echo "kafka: up ($KAFKA_HOST:$KAFKA_PORT)" || echo "kafka: down"
    redis_ping && echo "redis: up ($REDIS_HOST:$REDIS_PORT)" || echo "redis: down"
    ;;
  fetch) fetch_kafka ;;
  build-deps) check_prerequisites build; build_deps ;;
  cluster-id) new_cluster_id ;;
  nextest) install_nextest ;;
  check) shift; check_prerequisites "${@:-test}" ;;
  tools) check_prerequisites tools; install_tools; install_schemathesis; install_caddy; install_helm; install_kubernetes_validate; install_event_libraries; install_axe ;;
  *) die "usage: $0 up|down|status|check [services|build|up|tools|test]|fetch|build-deps|nextest|tools|cluster-id" ;;
esac
