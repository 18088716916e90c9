//! The settings sections. Each part of queuegate is built from its own section only: the
//! listeners from [`HttpSettings`], every Kafka client from [`KafkaSettings`] (through
//! [`crate::kafka::KafkaClients`]), the consumer from [`ConsumerSettings`], the store from
//! [`RedisSettings`], admission from [`AdmissionSettings`], the secrets in [`SecuritySettings`]
//! and logging from [`TelemetrySettings`]. Each section checks its own values (`validate`).

use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};

use super::error::{bad, ConfigError};
use super::secret::{Secret, EXAMPLE_MARK};

/// Checks that `value` lies in `range`; the error names `setting` and states the range itself,
/// so the message and the check can never disagree.
pub(crate) fn check_range<T>(setting: &'static str, value: T, range: RangeInclusive<T>) -> Result<(), ConfigError>
where
    T: PartialOrd + std::fmt::Display,
{
    if range.contains(&value) {
        Ok(())
    } else {
        Err(bad(setting, format!("must be between {} and {} (got {value})", range.start(), range.end())))
    }
}

/// The listeners and the process's lifecycle.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "HTTP")]
pub struct HttpSettings {
    /// Public listener (joins, fan status).
    #[arg(long, env = "QUEUEGATE_HTTP_ADDR", default_value = "127.0.0.1:8080")]
    pub http_addr: SocketAddr,

    /// Admin listener (/admin/*, /healthz, /readyz, /metrics).
    #[arg(long, env = "QUEUEGATE_ADMIN_ADDR", default_value = "127.0.0.1:8081")]
    pub admin_addr: SocketAddr,

    /// HTTP worker threads of the public listener (0: one per core).
    #[arg(long, env = "QUEUEGATE_HTTP_WORKERS", default_value_t = 0)]
    pub http_workers: usize,

    /// Server-Sent Events status streams open at once per process; past it fans get 503 and poll.
    /// 0 (the default): derived from the open-file limit, leaving room for joins and polls
    /// (17,000 with a limit of 20,000).
    #[arg(long, env = "QUEUEGATE_MAX_EVENT_STREAMS", default_value_t = 0)]
    pub max_event_streams: usize,

    /// Memory the status streams of one process may take in all (MiB); the stream cap is at
    /// most this over what one open stream costs (`startup::STREAM_BYTES`). 0 (the default):
    /// derived from the cgroup's memory limit, half of what is left after the process's base
    /// (`startup::PROCESS_BASE_MB`); without a limit, streams are bounded by open files only.
    #[arg(long, env = "QUEUEGATE_MAX_STREAM_MEMORY_MB", default_value_t = 0)]
    pub max_stream_memory_mb: u64,

    /// How often each gateway refreshes its view of every concert being watched (ms), which
    /// status streams and polls are answered from: one Redis call per concert per refresh,
    /// whatever the number of watchers. A position change reaches a stream within about this.
    #[arg(long, env = "QUEUEGATE_VIEW_REFRESH_MS", default_value_t = 500,
          value_parser = clap::value_parser!(u64).range(50..=10_000))]
    pub view_refresh_ms: u64,

    /// Joins per second one client may make, by IP address (IPv6: by /64; behind
    /// QUEUEGATE_TRUSTED_PROXIES: the forwarded address); 0: no limit.
    #[arg(long, env = "QUEUEGATE_RATE_LIMIT_PER_IP", default_value_t = 20)]
    pub rate_limit_per_ip: u32,

    /// Gate checks per second one client may make that do not pass on a live session (token
    /// exchanges, refusals, visitors sent to the room), by IP address like
    /// QUEUEGATE_RATE_LIMIT_PER_IP; past it the gate answers 429. A live session's checks never
    /// count. 0: no limit. Unset: 100 when QUEUEGATE_TRUSTED_PROXIES is set, no limit when it is
    /// not (every check then comes from the proxy's one address: the budget would be the whole
    /// site's).
    #[arg(long, env = "QUEUEGATE_GATE_CHECKS_PER_CLIENT")]
    pub gate_checks_per_client: Option<u32>,

    /// Wrong lane codes (unknown or another fan's) one client address may send to a concert
    /// within QUEUEGATE_CODE_FAILURE_WINDOW_SECONDS before its code joins answer 429; counted in
    /// Redis, so every gateway shares the budget. 0: no limit.
    #[arg(long, env = "QUEUEGATE_CODE_FAILURES_PER_CLIENT", default_value_t = 10)]
    pub code_failures_per_client: u32,

    /// Wrong codes a lane takes from all clients together within the window before its code
    /// joins answer 429 (against guessing from many addresses). 0: no limit.
    #[arg(long, env = "QUEUEGATE_CODE_FAILURES_PER_LANE", default_value_t = 1000)]
    pub code_failures_per_lane: u32,

    /// The window of the code failure budgets (s): a budget spent refills when its window, which
    /// starts at its first failure, ends.
    #[arg(long, env = "QUEUEGATE_CODE_FAILURE_WINDOW_SECONDS", default_value_t = 300)]
    pub code_failure_window_seconds: u32,

    /// Joins per second one fan (one concert and userId) may make; a rejoin is harmless but
    /// costs a Kafka record. 0: no limit.
    #[arg(long, env = "QUEUEGATE_FAN_JOINS_PER_SECOND", default_value_t = 2)]
    pub fan_joins_per_second: u32,

    /// Status reads (and stream openings) per second one fan may make; the page polls every few
    /// seconds or holds a stream. 0: no limit.
    #[arg(long, env = "QUEUEGATE_FAN_STATUS_PER_SECOND", default_value_t = 5)]
    pub fan_status_per_second: u32,

    /// How often the gateway refreshes its cache of concert states (ms).
    #[arg(long, env = "QUEUEGATE_CONCERT_REFRESH_MS", default_value_t = 1000)]
    pub concert_refresh_ms: u64,

    /// The public listener's address as fans reach it (`https://queue.example.com`): the gate
    /// sends fans to `<this>/c/{concertId}`. Unset: `http://` and the Host the gate was asked with.
    #[arg(long, env = "QUEUEGATE_PUBLIC_URL")]
    pub public_url: Option<String>,

    /// Grace period for in-flight work at shutdown (s).
    #[arg(long, env = "QUEUEGATE_SHUTDOWN_GRACE_SECONDS", default_value_t = 15)]
    pub shutdown_grace_seconds: u64,
}

impl HttpSettings {
    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_secs(self.shutdown_grace_seconds)
    }

    /// Under --insecure-dev both listeners must be on loopback: development settings (an open
    /// admin API, example secrets, unauthenticated fans) never face a network.
    pub fn validate(&self, insecure_dev: bool) -> Result<(), ConfigError> {
        if let Some(u) = &self.public_url {
            let ok = url::Url::parse(u).is_ok_and(|p| {
                matches!(p.scheme(), "http" | "https")
                    && p.host_str().is_some()
                    && p.query().is_none()
                    && p.fragment().is_none()
            });
            if !ok {
                return Err(bad("QUEUEGATE_PUBLIC_URL", "must be an absolute http:// or https:// URL without query"));
            }
        }
        if insecure_dev {
            for (setting, addr) in [("QUEUEGATE_HTTP_ADDR", self.http_addr), ("QUEUEGATE_ADMIN_ADDR", self.admin_addr)]
            {
                if !addr.ip().is_loopback() {
                    return Err(bad(
                        setting,
                        format!("{addr} is not loopback; --insecure-dev listens on loopback only"),
                    ));
                }
            }
        }
        check_range("QUEUEGATE_HTTP_WORKERS", self.http_workers, 0..=1024)?;
        check_range("QUEUEGATE_MAX_EVENT_STREAMS", self.max_event_streams, 0..=1_000_000)?;
        check_range("QUEUEGATE_MAX_STREAM_MEMORY_MB", self.max_stream_memory_mb, 0..=1_048_576)?;
        check_range("QUEUEGATE_CONCERT_REFRESH_MS", self.concert_refresh_ms, 1..=600_000)?;
        check_range("QUEUEGATE_CODE_FAILURES_PER_CLIENT", self.code_failures_per_client, 0..=1_000_000)?;
        check_range("QUEUEGATE_CODE_FAILURES_PER_LANE", self.code_failures_per_lane, 0..=100_000_000)?;
        check_range("QUEUEGATE_CODE_FAILURE_WINDOW_SECONDS", self.code_failure_window_seconds, 1..=86_400)?;
        check_range("QUEUEGATE_SHUTDOWN_GRACE_SECONDS", self.shutdown_grace_seconds, 0..=3600)
    }
}

/// One `key=value` librdkafka property passed through to every Kafka client. The value is
/// held as a [`Secret`]: pass-through properties carry SASL passwords and key passphrases.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaProperty {
    pub key: String,
    pub value: Secret,
}

impl KafkaProperty {
    pub fn new(key: &str, value: &str) -> Self {
        KafkaProperty { key: key.to_owned(), value: Secret::new(value) }
    }
}

impl std::str::FromStr for KafkaProperty {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (key, value) = s.split_once('=').ok_or_else(|| "expected key=value".to_owned())?;
        let key = key.trim();
        if key.is_empty()
            || !key.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'_')
        {
            return Err(format!("{key:?} is not a librdkafka property name"));
        }
        Ok(KafkaProperty { key: key.to_owned(), value: Secret::new(value.trim()) })
    }
}

/// The consumer group session timeout (ms). `QUEUEGATE_KAFKA_MAX_POLL_INTERVAL_MS` may not be
/// shorter (librdkafka refuses it), which the consumer section checks against this constant.
pub const SESSION_TIMEOUT_MS: u64 = 10_000;

/// Pass-through properties that are refused, with the reason named in the start-up error.
const OWNED: &[(&str, &str)] = &[
    ("bootstrap.servers", "set it with QUEUEGATE_KAFKA_BROKERS"),
    ("metadata.broker.list", "set it with QUEUEGATE_KAFKA_BROKERS"),
    ("group.id", "set it with QUEUEGATE_KAFKA_GROUP"),
    ("message.timeout.ms", "set it with QUEUEGATE_KAFKA_DELIVERY_TIMEOUT_MS"),
    ("delivery.timeout.ms", "set it with QUEUEGATE_KAFKA_DELIVERY_TIMEOUT_MS"),
    ("linger.ms", "set it with QUEUEGATE_KAFKA_LINGER_MS"),
    ("queue.buffering.max.ms", "set it with QUEUEGATE_KAFKA_LINGER_MS"),
    ("batch.size", "set it with QUEUEGATE_KAFKA_BATCH_BYTES"),
    ("compression.type", "set it with QUEUEGATE_KAFKA_COMPRESSION"),
    ("compression.codec", "set it with QUEUEGATE_KAFKA_COMPRESSION"),
    ("max.poll.interval.ms", "set it with QUEUEGATE_KAFKA_MAX_POLL_INTERVAL_MS"),
    ("queued.max.messages.kbytes", "set it with QUEUEGATE_CONSUMER_PREFETCH_KB"),
    ("session.timeout.ms", "queuegate's poll-interval check depends on it"),
    ("enable.idempotence", "accepted means durable, exactly once: queuegate sets it"),
    ("acks", "accepted means durable: queuegate sets it"),
    ("request.required.acks", "accepted means durable: queuegate sets it"),
    ("transactional.id", "queuegate sets it per process"),
    ("isolation.level", "the consumer must read committed records only"),
    ("enable.auto.commit", "the consumer commits only after Redis has the records"),
    ("enable.auto.offset.store", "the consumer commits only after Redis has the records"),
    ("statistics.interval.ms", "the metrics depend on it"),
];

/// Checks pass-through properties before any client is made (the builder in [`crate::kafka`]
/// sets them on every client): a property queuegate owns is
/// refused with the setting to use instead; an unknown name or bad value is refused with
/// librdkafka's reason. The value is never part of the message (it may be a password).
pub fn check_properties(props: &[KafkaProperty]) -> Result<(), ConfigError> {
    use rdkafka::ClientConfig;
    const SETTING: &str = "QUEUEGATE_KAFKA_PROPERTIES";
    for p in props {
        if let Some((_, why)) = OWNED.iter().find(|(k, _)| *k == p.key) {
            return Err(bad(SETTING, format!("{} may not be passed through: {why}", p.key)));
        }
        let mut one = ClientConfig::new();
        one.set(&p.key, p.value.expose());
        if let Err(e) = one.create_native_config() {
            let reason = match e {
                rdkafka::error::KafkaError::ClientConfig(_, desc, _, _) => desc,
                other => other.to_string(),
            };
            return Err(bad(SETTING, format!("{}: {reason}", p.key)));
        }
    }
    Ok(())
}

/// Kafka: where the brokers are, the topic, and how the gateway's producer batches.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Kafka")]
pub struct KafkaSettings {
    /// Kafka bootstrap servers, comma separated.
    #[arg(long, env = "QUEUEGATE_KAFKA_BROKERS", default_value = "127.0.0.1:9092")]
    pub kafka_brokers: String,

    /// Topic that carries queue entries; dead letters go to "<topic>.dlt".
    #[arg(long, env = "QUEUEGATE_KAFKA_TOPIC", default_value = "queue.entry")]
    pub kafka_topic: String,

    /// Consumer group of the Kafka → Redis consumer (dead-letter replay uses "<group>-dlt-replay").
    #[arg(long, env = "QUEUEGATE_KAFKA_GROUP", default_value = "queuegate-entry")]
    pub kafka_group: String,

    /// How long a join waits for the broker's acknowledgement before it is answered 503 (ms).
    #[arg(long, env = "QUEUEGATE_KAFKA_DELIVERY_TIMEOUT_MS", default_value_t = 5000)]
    pub kafka_delivery_timeout_ms: u64,

    /// Producer linger: how long records wait to be batched (ms).
    #[arg(long, env = "QUEUEGATE_KAFKA_LINGER_MS", default_value_t = 5)]
    pub kafka_linger_ms: u64,

    /// Largest producer batch per partition (bytes; librdkafka's batch.size).
    #[arg(long, env = "QUEUEGATE_KAFKA_BATCH_BYTES", default_value_t = 1_000_000)]
    pub kafka_batch_bytes: u32,

    /// Producer compression codec.
    #[arg(long, env = "QUEUEGATE_KAFKA_COMPRESSION", default_value = "lz4", value_parser = ["none", "gzip", "snappy", "lz4", "zstd"])]
    pub kafka_compression: String,

    /// Joins that may wait for a broker acknowledgement at once, per process; past it joins get 503.
    #[arg(long, env = "QUEUEGATE_MAX_IN_FLIGHT", default_value_t = 20_000)]
    pub max_in_flight: usize,

    /// librdkafka properties for every Kafka client queuegate makes (SASL, TLS, tuning), as
    /// key=value; repeat the flag, or separate them with commas in the environment variable.
    /// Properties queuegate sets for its guarantees, or that have a setting of their own, are refused.
    #[arg(long = "kafka-property", env = "QUEUEGATE_KAFKA_PROPERTIES", value_delimiter = ',', hide_env_values = true)]
    pub kafka_properties: Vec<KafkaProperty>,
}

impl KafkaSettings {
    /// Dead-letter topic for records that can never be applied.
    pub fn dlt_topic(&self) -> String {
        format!("{}.dlt", self.kafka_topic)
    }

    /// Where the consumer parks the joins of concerts whose Redis shard is down (one partition:
    /// they are applied back in the order they were parked).
    pub fn parked_topic(&self) -> String {
        format!("{}.parked", self.kafka_topic)
    }

    pub fn delivery_timeout(&self) -> Duration {
        Duration::from_millis(self.kafka_delivery_timeout_ms)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.kafka_brokers.split(',').all(|b| b.trim().is_empty()) {
            return Err(bad("QUEUEGATE_KAFKA_BROKERS", "must name at least one broker"));
        }
        if !valid_topic(&self.kafka_topic) {
            return Err(bad("QUEUEGATE_KAFKA_TOPIC", "must be 1-200 characters of [A-Za-z0-9._-]"));
        }
        if self.kafka_group.trim().is_empty() {
            return Err(bad("QUEUEGATE_KAFKA_GROUP", "must not be empty"));
        }
        check_range("QUEUEGATE_KAFKA_DELIVERY_TIMEOUT_MS", self.kafka_delivery_timeout_ms, 100..=300_000)?;
        check_range("QUEUEGATE_KAFKA_LINGER_MS", self.kafka_linger_ms, 0..=1000)?;
        check_range("QUEUEGATE_KAFKA_BATCH_BYTES", self.kafka_batch_bytes, 1_000..=100_000_000)?;
        check_range("QUEUEGATE_MAX_IN_FLIGHT", self.max_in_flight, 1..=1_000_000)?;
        check_properties(&self.kafka_properties)
    }
}

fn valid_topic(t: &str) -> bool {
    (1..=200).contains(&t.len()) && t.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

/// The Kafka → Redis consumer.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Consumer")]
pub struct ConsumerSettings {
    /// Records the consumer applies to Redis per batch at most.
    #[arg(long, env = "QUEUEGATE_CONSUMER_BATCH", default_value_t = 2000)]
    pub consumer_batch: usize,

    /// How long a consumer batch waits for more records after its first one (ms). Each batch is
    /// one Kafka transaction, so a few ms here cut the broker's work under load; 0: take only
    /// what is already fetched.
    #[arg(long, env = "QUEUEGATE_CONSUMER_LINGER_MS", default_value_t = 25)]
    pub consumer_linger_ms: u64,

    /// Kafka records the consumer prefetches into memory at most (KiB; librdkafka's
    /// queued.max.messages.kbytes). A backlog beyond it stays in Kafka.
    #[arg(long, env = "QUEUEGATE_CONSUMER_PREFETCH_KB", default_value_t = 8192)]
    pub consumer_prefetch_kb: usize,

    /// Longest the consumer may go without polling Kafka before it is dropped from the group (ms).
    /// The consumer keeps polling (with its partitions paused) while it retries Redis, so a
    /// Redis outage does not trip this.
    #[arg(long, env = "QUEUEGATE_KAFKA_MAX_POLL_INTERVAL_MS", default_value_t = 300_000)]
    pub kafka_max_poll_interval_ms: u64,

    /// On a Redis Cluster: how long a concert's writes may keep failing (its shard down) before
    /// the consumer parks that concert's joins in `<topic>.parked` and goes on with the other
    /// concerts; the parked joins are applied, in order, once the shard is back (ms; 0: never
    /// park, hold the batch until Redis answers). Ignored on a single Redis.
    #[arg(long, env = "QUEUEGATE_CONSUMER_PARK_AFTER_MS", default_value_t = 10_000)]
    pub consumer_park_after_ms: u64,
}

impl ConsumerSettings {
    pub fn validate(&self) -> Result<(), ConfigError> {
        check_range("QUEUEGATE_CONSUMER_BATCH", self.consumer_batch, 1..=10_000)?;
        check_range("QUEUEGATE_CONSUMER_LINGER_MS", self.consumer_linger_ms, 0..=1000)?;
        check_range("QUEUEGATE_CONSUMER_PREFETCH_KB", self.consumer_prefetch_kb, 1024..=2_097_151)?;
        check_range("QUEUEGATE_CONSUMER_PARK_AFTER_MS", self.consumer_park_after_ms, 0..=3_600_000)?;
        // librdkafka refuses a poll interval shorter than the group session timeout.
        check_range(
            "QUEUEGATE_KAFKA_MAX_POLL_INTERVAL_MS",
            self.kafka_max_poll_interval_ms,
            SESSION_TIMEOUT_MS..=86_400_000,
        )
    }
}

/// The Redis queue store.
#[derive(Clone, Args)]
#[command(next_help_heading = "Redis")]
pub struct RedisSettings {
    /// Redis URL: redis:// or rediss:// (TLS) for one server; redis+cluster://host:port,host:port,...
    /// (or rediss+cluster://) for a Redis Cluster, naming seed nodes. A password in it is never logged.
    #[arg(long, env = "QUEUEGATE_REDIS_URL", default_value = "redis://127.0.0.1:6379", hide_env_values = true)]
    pub redis_url: String,

    /// Prefix of every Redis key queuegate writes.
    #[arg(long, env = "QUEUEGATE_REDIS_PREFIX", default_value = "qg")]
    pub redis_prefix: String,

    /// Redis connections per pool at most (each role part has its own pool).
    #[arg(long, env = "QUEUEGATE_REDIS_POOL", default_value_t = 32)]
    pub redis_pool: usize,

    /// Replicas a consumer batch's Redis writes must reach (WAIT) before its offsets are
    /// committed [default: 1 on a cluster, 0 on a single server].
    #[arg(long, env = "QUEUEGATE_REDIS_MIN_REPLICAS")]
    pub redis_min_replicas: Option<u32>,

    /// How long (ms) a batch's writes wait for those replicas; past it the consumer goes on
    /// and holds the batch's offsets back until a replica has the writes.
    #[arg(long, env = "QUEUEGATE_REDIS_REPLICA_TIMEOUT_MS", default_value_t = 1000)]
    pub redis_replica_timeout_ms: u64,

    /// How long (ms) the consumer holds back offsets whose writes lack replicas before it
    /// commits them anyway (they are then as safe as the primary's AOF); 0: until a replica has
    /// them, however long.
    #[arg(long, env = "QUEUEGATE_REDIS_REPLICA_GRACE_MS", default_value_t = 0)]
    pub redis_replica_grace_ms: u64,
}

/// The seed nodes of a `redis+cluster://` (or `rediss+cluster://`) URL, each as a single-node
/// URL carrying the credentials; None for any other URL.
pub fn cluster_nodes(url: &str) -> Option<Vec<String>> {
    let (scheme, rest) = url.split_once("+cluster://")?;
    let (creds, hosts) = match rest.rsplit_once('@') {
        Some((c, h)) => (format!("{c}@"), h),
        None => (String::new(), rest),
    };
    let hosts = hosts.trim_end_matches('/');
    Some(hosts.split(',').map(|h| format!("{scheme}://{creds}{}", h.trim())).collect())
}

impl RedisSettings {
    pub fn validate(&self) -> Result<(), ConfigError> {
        let schemes = ["redis://", "rediss://", "redis+cluster://", "rediss+cluster://"];
        if !schemes.iter().any(|s| self.redis_url.starts_with(s)) {
            return Err(bad(
                "QUEUEGATE_REDIS_URL",
                "must start with redis://, rediss://, redis+cluster:// or rediss+cluster://",
            ));
        }
        if let Some(nodes) = self.cluster_nodes() {
            if let Some(n) =
                nodes.iter().find(|n| n.rsplit_once(':').is_none_or(|(_, port)| port.parse::<u16>().is_err()))
            {
                let shown = n.rsplit_once('@').map_or(n.as_str(), |(_, host)| host);
                return Err(bad("QUEUEGATE_REDIS_URL", format!("cluster node {shown:?} is not host:port")));
            }
        }
        if let Some(n) = self.redis_min_replicas {
            check_range("QUEUEGATE_REDIS_MIN_REPLICAS", n, 0..=5)?;
        }
        // TLS (rediss://) verifies the server against OpenSSL's trust: the system's store, or
        // the file SSL_CERT_FILE names (a private CA). A named file that is not there would
        // only show as failed handshakes later.
        if self.redis_url.starts_with("rediss") {
            if let Some(file) = std::env::var_os("SSL_CERT_FILE") {
                if !std::path::Path::new(&file).is_file() {
                    return Err(bad(
                        "SSL_CERT_FILE",
                        format!("{} is not a readable file (the CA for rediss://)", file.to_string_lossy()),
                    ));
                }
            }
        }
        // Below the 3 s bound of every Redis call, so a WAIT ends before its call times out.
        check_range("QUEUEGATE_REDIS_REPLICA_TIMEOUT_MS", self.redis_replica_timeout_ms, 10..=2500)?;
        check_range("QUEUEGATE_REDIS_REPLICA_GRACE_MS", self.redis_replica_grace_ms, 0..=604_800_000)?;
        if self.redis_prefix.is_empty() || self.redis_prefix.contains(['{', '}', ' ', ':']) {
            return Err(bad("QUEUEGATE_REDIS_PREFIX", "must be non-empty without braces, colons or spaces"));
        }
        check_range("QUEUEGATE_REDIS_POOL", self.redis_pool, 1..=10_000)
    }

    /// The seed nodes of a cluster URL (see [`cluster_nodes`]); None for a single server.
    pub fn cluster_nodes(&self) -> Option<Vec<String>> {
        cluster_nodes(&self.redis_url)
    }

    /// `QUEUEGATE_REDIS_MIN_REPLICAS`, or its default for the kind of Redis.
    pub fn min_replicas(&self) -> u32 {
        self.redis_min_replicas.unwrap_or(if self.cluster_nodes().is_some() { 1 } else { 0 })
    }

    /// The URL with any password replaced by `***`, for logs and errors.
    pub fn redacted_url(&self) -> String {
        match (self.redis_url.split_once("://"), self.redis_url.rfind('@')) {
            (Some((scheme, rest)), Some(at)) => {
                let creds = &rest[..at - scheme.len() - 3];
                let user = creds.split_once(':').map_or("", |(u, _)| u);
                format!("{scheme}://{user}:***{}", &self.redis_url[at..])
            }
            _ => self.redis_url.clone(),
        }
    }
}

impl std::fmt::Debug for RedisSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisSettings")
            .field("redis_url", &self.redacted_url())
            .field("redis_prefix", &self.redis_prefix)
            .field("redis_pool", &self.redis_pool)
            .field("redis_min_replicas", &self.min_replicas())
            .field("redis_replica_timeout_ms", &self.redis_replica_timeout_ms)
            .field("redis_replica_grace_ms", &self.redis_replica_grace_ms)
            .finish()
    }
}

/// Concerts and admission.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Admission")]
pub struct AdmissionSettings {
    /// PKCS#8 PEM files with the Ed25519 private keys of admission tokens, comma separated
    /// (`queuegate keygen PATH`, or `openssl genpkey -algorithm ed25519 -out key.pem`); a file
    /// may hold several PEM blocks. The first key signs, all are published in the JWKS and
    /// verify, so rotating is `cat new.pem old.pem > key.pem` (or "new.pem,old.pem"). The same
    /// on every instance. Required unless --insecure-dev (then a random per-process key).
    #[arg(long, env = "QUEUEGATE_ADMISSION_KEY_FILE", value_delimiter = ',')]
    pub admission_key_file: Vec<PathBuf>,

    /// The `aud` of admission tokens: what the booking site checks they are meant for.
    #[arg(long, env = "QUEUEGATE_ADMISSION_AUDIENCE", default_value = "booking")]
    pub admission_audience: String,

    /// How often each instance's admitter runs its admission round (ms).
    #[arg(long, env = "QUEUEGATE_ADMISSION_TICK_MS", default_value_t = 200)]
    pub admission_tick_ms: u64,

    /// Lease time of a concert's admitter; a dead holder is replaced within it (ms).
    #[arg(long, env = "QUEUEGATE_ADMISSION_LEASE_MS", default_value_t = 3000)]
    pub admission_lease_ms: u64,

    /// Create this concert, open, at start-up if it does not exist (for demos and `make up`).
    #[arg(long, env = "QUEUEGATE_DEMO_CONCERT")]
    pub demo_concert: Option<String>,

    /// The most the clocks of any two instances differ, plus the few ms from a gateway's
    /// accepted stamp to the broker (ms). Fans are placed in the order of their stamps once
    /// every partition has passed them by this much: fans accepted more than this apart are
    /// never placed out of order, and placement waits about this long (docs/explain-guarantees.md §3).
    #[arg(long, env = "QUEUEGATE_CLOCK_SKEW_MS", default_value_t = 1000)]
    pub clock_skew_ms: u64,
}

impl AdmissionSettings {
    pub fn validate(&self, insecure_dev: bool) -> Result<(), ConfigError> {
        if self.admission_key_file.is_empty() && !insecure_dev {
            return Err(bad("QUEUEGATE_ADMISSION_KEY_FILE", "is required (or pass --insecure-dev for local use)"));
        }
        if self.admission_audience.trim().is_empty() {
            return Err(bad("QUEUEGATE_ADMISSION_AUDIENCE", "must not be empty"));
        }
        check_range("QUEUEGATE_ADMISSION_TICK_MS", self.admission_tick_ms, 10..=10_000)?;
        check_range("QUEUEGATE_ADMISSION_LEASE_MS", self.admission_lease_ms, 3 * self.admission_tick_ms..=600_000)?;
        check_range("QUEUEGATE_CLOCK_SKEW_MS", self.clock_skew_ms, 0..=60_000)?;
        if let Some(c) = &self.demo_concert {
            crate::ids::ConcertId::parse(c.as_str()).map_err(|e| bad("QUEUEGATE_DEMO_CONCERT", e.to_string()))?;
        }
        Ok(())
    }

    /// The admission-token keys: from the configured files, or random under --insecure-dev.
    pub fn keys(&self) -> Result<crate::admission::AdmissionKeys, ConfigError> {
        let audience = &self.admission_audience;
        if self.admission_key_file.is_empty() {
            return Ok(crate::admission::AdmissionKeys::ephemeral(audience));
        }
        crate::admission::AdmissionKeys::from_pem_files(&self.admission_key_file, audience)
            .map_err(|e| bad("QUEUEGATE_ADMISSION_KEY_FILE", format!("{e:#}")))
    }
}

/// The fixed secret used under --insecure-dev when none is configured, so that several dev
/// instances agree on entry tokens. Never accepted without --insecure-dev.
const DEV_TOKEN_SECRET: &str = "queuegate-insecure-dev-secret-do-not-use-in-production";

/// Default and bounds of `QUEUEGATE_ADMIN_AUDIT_KEPT`: actions each concert's audit list keeps.
pub const ADMIN_AUDIT_KEPT_DEFAULT: u64 = 1000;
pub const ADMIN_AUDIT_KEPT_RANGE: RangeInclusive<u64> = 1..=100_000;

/// Who may call the admin API, and the secret behind fans' entry tokens.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Security")]
pub struct SecuritySettings {
    /// Bearer token of the admin API (16+ characters). Required unless --insecure-dev.
    #[arg(long, env = "QUEUEGATE_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<Secret>,

    /// A JSON file of named admin tokens with a role each:
    /// `[{"name":"dash","role":"viewer","token":"…"}, …]` (roles viewer, operator, admin; tokens
    /// 16+ characters, names and tokens unique). Beside QUEUEGATE_ADMIN_TOKEN, which is role
    /// admin, named "admin". Read at start-up.
    #[arg(long, env = "QUEUEGATE_ADMIN_TOKENS_FILE")]
    pub admin_tokens_file: Option<PathBuf>,

    /// Recorded admin changes each concert's audit list keeps (1..100000); past it the oldest
    /// is dropped (counted in queuegate_admin_audit_trimmed_total). Every change is also an
    /// event on the events topic.
    #[arg(long, env = "QUEUEGATE_ADMIN_AUDIT_KEPT", default_value_t = ADMIN_AUDIT_KEPT_DEFAULT)]
    pub admin_audit_kept: u64,

    /// Secret (32+ bytes) that signs fans' entry tokens; the same on every instance. Required unless --insecure-dev.
    #[arg(long, env = "QUEUEGATE_TOKEN_SECRET", hide_env_values = true)]
    pub token_secret: Option<Secret>,

    /// Bearer credential of the booking site for `POST …/admission/complete` (16+ characters);
    /// the admin token is accepted there too.
    #[arg(long, env = "QUEUEGATE_SITE_TOKEN", hide_env_values = true)]
    pub site_token: Option<Secret>,

    /// Allow running without an admin token, token secret or admission key (local development only).
    #[arg(long, env = "QUEUEGATE_INSECURE_DEV")]
    pub insecure_dev: bool,
}

impl SecuritySettings {
    pub fn validate(&self) -> Result<(), ConfigError> {
        let required = "is required (or pass --insecure-dev for local use)";
        if !self.insecure_dev {
            for (setting, secret) in [
                ("QUEUEGATE_ADMIN_TOKEN", &self.admin_token),
                ("QUEUEGATE_TOKEN_SECRET", &self.token_secret),
                ("QUEUEGATE_SITE_TOKEN", &self.site_token),
            ] {
                if secret.as_ref().is_some_and(|s| s.expose().contains(EXAMPLE_MARK)) {
                    return Err(bad(setting, "is an example value (it says change-me); set a secret of your own"));
                }
            }
        }
        if self.site_token.as_ref().is_some_and(|t| t.expose().len() < 16) {
            return Err(bad("QUEUEGATE_SITE_TOKEN", "must be at least 16 characters"));
        }
        if self.admin_token.is_some() && self.token_secret.is_none() {
            return Err(bad("QUEUEGATE_TOKEN_SECRET", "is required whenever QUEUEGATE_ADMIN_TOKEN is set"));
        }
        if self.admin_tokens_file.is_some() && self.token_secret.is_none() {
            return Err(bad("QUEUEGATE_TOKEN_SECRET", "is required whenever QUEUEGATE_ADMIN_TOKENS_FILE is set"));
        }
        match &self.admin_token {
            Some(t) if t.expose().len() < 16 => {
                return Err(bad("QUEUEGATE_ADMIN_TOKEN", "must be at least 16 characters"))
            }
            // The tokens file alone is enough: its admins hold the keys.
            None if !self.insecure_dev && self.admin_tokens_file.is_none() => {
                return Err(bad(
                    "QUEUEGATE_ADMIN_TOKEN",
                    "is required (or QUEUEGATE_ADMIN_TOKENS_FILE, or --insecure-dev for local use)",
                ))
            }
            _ => {}
        }
        check_range("QUEUEGATE_ADMIN_AUDIT_KEPT", self.admin_audit_kept, ADMIN_AUDIT_KEPT_RANGE)?;
        self.admin_tokens()?;
        match &self.token_secret {
            Some(s) if s.expose().len() < 32 => return Err(bad("QUEUEGATE_TOKEN_SECRET", "must be at least 32 bytes")),
            None if !self.insecure_dev => return Err(bad("QUEUEGATE_TOKEN_SECRET", required)),
            _ => {}
        }
        Ok(())
    }

    /// The named admin tokens of `QUEUEGATE_ADMIN_TOKENS_FILE` (none without it), read and
    /// checked ([`super::admin_tokens`]).
    pub fn admin_tokens(&self) -> Result<Vec<super::admin_tokens::NamedToken>, ConfigError> {
        match &self.admin_tokens_file {
            None => Ok(Vec::new()),
            Some(path) => super::admin_tokens::read(path, self.admin_token.as_ref(), self.insecure_dev),
        }
    }

    /// The secret that signs entry tokens (the dev secret only under --insecure-dev).
    pub fn token_secret_bytes(&self) -> &[u8] {
        self.token_secret.as_ref().map_or(DEV_TOKEN_SECRET, Secret::expose).as_bytes()
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Json,
    Pretty,
}

/// Logging.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Telemetry")]
pub struct TelemetrySettings {
    /// Tracing filter, e.g. "info" or "queuegate=debug,rdkafka=warn".
    #[arg(long, env = "QUEUEGATE_LOG", default_value = "info")]
    pub log: String,

    /// Log format.
    #[arg(long, env = "QUEUEGATE_LOG_FORMAT", value_enum, default_value = "json")]
    pub log_format: LogFormat,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prop(key: &str, value: &str) -> KafkaProperty {
        KafkaProperty::new(key, value)
    }

    #[test]
    fn owned_and_unknown_properties_are_refused_without_echoing_the_value() {
        let err = check_properties(&[prop("enable.idempotence", "false")]).unwrap_err();
        assert_eq!(err.setting, "QUEUEGATE_KAFKA_PROPERTIES");
        assert!(err.reason.contains("enable.idempotence"), "{err}");
        let err = check_properties(&[prop("sasl.pasword", "top-secret-value")]).unwrap_err();
        assert!(err.reason.contains("sasl.pasword") && !err.reason.contains("top-secret-value"), "{err}");
        check_properties(&[prop("security.protocol", "SASL_SSL"), prop("sasl.password", "x")]).expect("valid");
    }
}

/// Events out: the events topic and webhook delivery (docs/howto-events.md).
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Events")]
pub struct EventsSettings {
    /// The Kafka topic every change of a fan or a concert is published to, as CloudEvents in
    /// binary content mode, keyed by concertId.
    #[arg(long, env = "QUEUEGATE_EVENTS_TOPIC", default_value = "queue.events")]
    pub events_topic: String,

    /// Most entries each concert's outbox (the events waiting for the events topic, in Redis)
    /// may hold; past it, each new entry drops the oldest one, counted in
    /// queuegate_events_dropped_total{reason="outbox_full"}. An entry holds one change of up to
    /// 1,000 fans (at most ~80 KB), most hold a few: only reached while the events topic cannot
    /// be written.
    #[arg(long, env = "QUEUEGATE_EVENTS_OUTBOX_MAX", default_value_t = 10_000)]
    pub events_outbox_max: u64,

    /// How long a webhook endpoint may take to answer one delivery before it counts as failed (ms).
    #[arg(long, env = "QUEUEGATE_WEBHOOK_TIMEOUT_MS", default_value_t = 10_000)]
    pub webhook_timeout_ms: u64,

    /// The first retry of a failed delivery waits about this long; each further one twice as
    /// long, with jitter (ms).
    #[arg(long, env = "QUEUEGATE_WEBHOOK_RETRY_BASE_MS", default_value_t = 5_000)]
    pub webhook_retry_base_ms: u64,

    /// The longest wait between two attempts of one delivery (ms).
    #[arg(long, env = "QUEUEGATE_WEBHOOK_RETRY_MAX_MS", default_value_t = 600_000)]
    pub webhook_retry_max_ms: u64,

    /// A delivery not made this long after its event was queued is given up (recorded as
    /// gave_up in the deliveries log), attempted or not; at least an hour.
    #[arg(long, env = "QUEUEGATE_WEBHOOK_GIVE_UP_SECONDS", default_value_t = 86_400)]
    pub webhook_give_up_seconds: u64,

    /// Most deliveries pending per webhook endpoint; past it, new ones for that endpoint are
    /// dropped (queuegate_webhook_dropped_total{reason="full"}).
    #[arg(long, env = "QUEUEGATE_WEBHOOK_MAX_PENDING", default_value_t = 10_000)]
    pub webhook_max_pending: u64,

    /// Most bytes of delivery bodies pending per webhook endpoint; past it, new ones for that
    /// endpoint are dropped (queuegate_webhook_dropped_total{reason="full"}).
    #[arg(long, env = "QUEUEGATE_WEBHOOK_MAX_PENDING_BYTES", default_value_t = 16 * 1024 * 1024)]
    pub webhook_max_pending_bytes: u64,

    /// A webhook endpoint whose every attempt has failed for this long (and at least 10 in a
    /// row) is suspended until an operator resumes it: nothing more is queued for it or sent to
    /// it. 0: never suspended.
    #[arg(long, env = "QUEUEGATE_WEBHOOK_SUSPEND_AFTER_SECONDS", default_value_t = 3_600)]
    pub webhook_suspend_after_seconds: u64,

    /// Networks (CIDRs or addresses, comma separated) webhooks may be sent to although they are
    /// loopback, private, link-local, unique-local, CGNAT or otherwise internal; every other
    /// internal address is refused at registration (400) and at delivery (docs/explain-security.md).
    #[arg(long, env = "QUEUEGATE_WEBHOOK_ALLOW_NETWORKS", default_value = "",
          value_parser = crate::events::egress::parse_networks)]
    pub webhook_allow_networks: crate::events::egress::AllowNetworks,
}

impl EventsSettings {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.events_topic.is_empty() || self.events_topic.len() > 249 {
            return Err(bad("QUEUEGATE_EVENTS_TOPIC", "must be a Kafka topic name (1 to 249 characters)"));
        }
        check_range("QUEUEGATE_EVENTS_OUTBOX_MAX", self.events_outbox_max, 1..=10_000_000)?;
        if self.webhook_timeout_ms == 0 {
            return Err(bad("QUEUEGATE_WEBHOOK_TIMEOUT_MS", "must be more than 0"));
        }
        if self.webhook_retry_base_ms == 0 || self.webhook_retry_max_ms < self.webhook_retry_base_ms {
            return Err(bad(
                "QUEUEGATE_WEBHOOK_RETRY_BASE_MS",
                "must be more than 0 and at most QUEUEGATE_WEBHOOK_RETRY_MAX_MS",
            ));
        }
        if self.webhook_give_up_seconds < 3600 {
            return Err(bad("QUEUEGATE_WEBHOOK_GIVE_UP_SECONDS", "must be at least 3600 (an hour)"));
        }
        if self.webhook_max_pending == 0 {
            return Err(bad("QUEUEGATE_WEBHOOK_MAX_PENDING", "must be more than 0"));
        }
        if self.webhook_max_pending_bytes < 1024 {
            return Err(bad("QUEUEGATE_WEBHOOK_MAX_PENDING_BYTES", "must be at least 1024"));
        }
        Ok(())
    }
}
