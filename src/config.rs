//! Command line and environment configuration.
//!
//! Every setting is a flag with an environment fallback (`QUEUEGATE_*`), so the same binary is
//! configured the same way by a shell, a Makefile, systemd or docker-compose. [`Settings::validate`]
//! checks the whole configuration before any port is bound and names the offending setting in one
//! line, because an operator at 9:59 before an on-sale should not have to read a stack trace.

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// queuegate: a waiting-queue gateway for concert ticket on-sales.
#[derive(Debug, Parser)]
#[command(name = "queuegate", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,

    #[command(flatten)]
    pub settings: Settings,
}

/// What the `queuegate` binary is asked to do.
#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
pub enum Command {
    /// Every role in one process: front door, consumer and admin API (the default).
    Run,
    /// Only the HTTP front door and the admin API; joins are produced to Kafka.
    Gateway,
    /// Only the Kafka consumer that moves joins into Redis, plus the admin listener.
    Consumer,
    /// Work with the dead-letter topic.
    #[command(subcommand)]
    Dlt(DltCommand),
    /// Write a new Ed25519 admission-token key (PKCS#8 PEM, mode 0600) to PATH; never overwrites.
    Keygen {
        /// Where to write the key.
        path: std::path::PathBuf,
    },
}

/// `queuegate dlt …`
#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
pub enum DltCommand {
    /// Re-publish dead letters to the entry topic, once each, and exit at the end of the topic.
    ///
    /// By default only records that are valid now are re-published (those dead-lettered by an
    /// older, stricter or buggier version); the others are listed and stay. Progress is kept in
    /// the consumer group "<group>-dlt-replay", so a second run continues where the first ended.
    Replay {
        /// List what would be re-published, change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Re-publish invalid records too (the consumer will dead-letter them again).
        #[arg(long)]
        all: bool,
    },
}

/// The parts of the data flow one process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Front door, consumer and admin API.
    Run,
    /// Front door and admin API.
    Gateway,
    /// Consumer and admin listener.
    Consumer,
}

impl Role {
    /// Whether this role serves the public (fan-facing) listener.
    pub fn serves_public(self) -> bool {
        matches!(self, Role::Run | Role::Gateway)
    }
    /// Whether this role runs the Kafka → Redis consumer.
    pub fn consumes(self) -> bool {
        matches!(self, Role::Run | Role::Consumer)
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Json,
    Pretty,
}

/// Every setting of a queuegate process.
#[derive(Debug, Clone, Args)]
pub struct Settings {
    /// Public listener (joins, fan status).
    #[arg(long, env = "QUEUEGATE_HTTP_ADDR", default_value = "127.0.0.1:8080", global = true)]
    pub http_addr: SocketAddr,

    /// Admin listener (/admin/*, /healthz, /readyz, /metrics).
    #[arg(long, env = "QUEUEGATE_ADMIN_ADDR", default_value = "127.0.0.1:8081", global = true)]
    pub admin_addr: SocketAddr,

    /// Kafka bootstrap servers, comma separated.
    #[arg(long, env = "QUEUEGATE_KAFKA_BROKERS", default_value = "127.0.0.1:9092", global = true)]
    pub kafka_brokers: String,

    /// Topic that carries queue entries; dead letters go to "<topic>.dlt".
    #[arg(long, env = "QUEUEGATE_KAFKA_TOPIC", default_value = "queue.entry", global = true)]
    pub kafka_topic: String,

    /// Consumer group of the Kafka → Redis consumer.
    #[arg(long, env = "QUEUEGATE_KAFKA_GROUP", default_value = "queuegate-entry", global = true)]
    pub kafka_group: String,

    /// How long a join waits for the broker's acknowledgement before it is answered 503 (ms).
    #[arg(long, env = "QUEUEGATE_KAFKA_DELIVERY_TIMEOUT_MS", default_value_t = 5000, global = true)]
    pub kafka_delivery_timeout_ms: u64,

    /// Producer linger: how long records wait to be batched (ms).
    #[arg(long, env = "QUEUEGATE_KAFKA_LINGER_MS", default_value_t = 5, global = true)]
    pub kafka_linger_ms: u64,

    /// Largest producer batch per partition (bytes; librdkafka's batch.size).
    #[arg(long, env = "QUEUEGATE_KAFKA_BATCH_BYTES", default_value_t = 1_000_000, global = true)]
    pub kafka_batch_bytes: u32,

    /// Producer compression codec (none, gzip, snappy, lz4, zstd).
    #[arg(long, env = "QUEUEGATE_KAFKA_COMPRESSION", default_value = "lz4", global = true)]
    pub kafka_compression: String,

    /// Joins that may wait for a broker acknowledgement at once, per process; past it joins get 503.
    #[arg(long, env = "QUEUEGATE_MAX_IN_FLIGHT", default_value_t = 20_000, global = true)]
    pub max_in_flight: usize,

    /// Longest the consumer may go without polling Kafka before it is dropped from the group (ms).
    /// The consumer keeps polling (with its partitions paused) while it retries Redis, so a
    /// Redis outage does not trip this.
    #[arg(long, env = "QUEUEGATE_KAFKA_MAX_POLL_INTERVAL_MS", default_value_t = 300_000, global = true)]
    pub kafka_max_poll_interval_ms: u64,

    /// Server-Sent Events status streams open at once per process; past it fans get 503 and poll.
    #[arg(long, env = "QUEUEGATE_MAX_EVENT_STREAMS", default_value_t = 10_000, global = true)]
    pub max_event_streams: usize,

    /// Records the consumer applies to Redis per batch at most.
    #[arg(long, env = "QUEUEGATE_CONSUMER_BATCH", default_value_t = 2000, global = true)]
    pub consumer_batch: usize,

    /// How long a consumer batch waits for more records after its first one (ms). Each batch is
    /// one Kafka transaction, so a few ms here cut the broker's work under load; 0: take only
    /// what is already fetched.
    #[arg(long, env = "QUEUEGATE_CONSUMER_LINGER_MS", default_value_t = 25, global = true)]
    pub consumer_linger_ms: u64,

    /// Kafka records the consumer prefetches into memory at most (KiB; librdkafka's
    /// queued.max.messages.kbytes). A backlog beyond it stays in Kafka.
    #[arg(long, env = "QUEUEGATE_CONSUMER_PREFETCH_KB", default_value_t = 8192, global = true)]
    pub consumer_prefetch_kb: usize,

    /// Redis URL.
    #[arg(long, env = "QUEUEGATE_REDIS_URL", default_value = "redis://127.0.0.1:6379", global = true)]
    pub redis_url: String,

    /// Prefix of every Redis key queuegate writes.
    #[arg(long, env = "QUEUEGATE_REDIS_PREFIX", default_value = "qg", global = true)]
    pub redis_prefix: String,

    /// Redis connections per process at most.
    #[arg(long, env = "QUEUEGATE_REDIS_POOL", default_value_t = 32, global = true)]
    pub redis_pool: usize,

    /// Bearer token of the admin API. Required unless --insecure-dev.
    #[arg(long, env = "QUEUEGATE_ADMIN_TOKEN", hide_env_values = true, global = true)]
    pub admin_token: Option<String>,

    /// Secret (32+ bytes) that signs fans' entry tokens; the same on every instance. Required unless --insecure-dev.
    #[arg(long, env = "QUEUEGATE_TOKEN_SECRET", hide_env_values = true, global = true)]
    pub token_secret: Option<String>,

    /// PKCS#8 PEM file with the Ed25519 private key that signs admission tokens
    /// (`openssl genpkey -algorithm ed25519 -out key.pem`); the same on every instance.
    /// Required unless --insecure-dev (then a random per-process key is used).
    #[arg(long, env = "QUEUEGATE_ADMISSION_KEY_FILE", global = true)]
    pub admission_key_file: Option<std::path::PathBuf>,

    /// How often each instance's admitter runs its admission round (ms).
    #[arg(long, env = "QUEUEGATE_ADMISSION_TICK_MS", default_value_t = 200, global = true)]
    pub admission_tick_ms: u64,

    /// Lease time of a concert's admitter; a dead holder is replaced within it (ms).
    #[arg(long, env = "QUEUEGATE_ADMISSION_LEASE_MS", default_value_t = 3000, global = true)]
    pub admission_lease_ms: u64,

    /// Joins per second one client IP may make (0: no limit).
    #[arg(long, env = "QUEUEGATE_RATE_LIMIT_PER_IP", default_value_t = 0, global = true)]
    pub rate_limit_per_ip: u32,

    /// How often the gateway refreshes its cache of concert states (ms).
    #[arg(long, env = "QUEUEGATE_CONCERT_REFRESH_MS", default_value_t = 1000, global = true)]
    pub concert_refresh_ms: u64,

    /// Create this concert, open, at start-up if it does not exist (for demos and `make up`).
    #[arg(long, env = "QUEUEGATE_DEMO_CONCERT", global = true)]
    pub demo_concert: Option<String>,

    /// HTTP worker threads per listener (0: one per core).
    #[arg(long, env = "QUEUEGATE_HTTP_WORKERS", default_value_t = 0, global = true)]
    pub http_workers: usize,

    /// Grace period for in-flight work at shutdown (s).
    #[arg(long, env = "QUEUEGATE_SHUTDOWN_GRACE_SECONDS", default_value_t = 15, global = true)]
    pub shutdown_grace_seconds: u64,

    /// Tracing filter, e.g. "info" or "queuegate=debug,rdkafka=warn".
    #[arg(long, env = "QUEUEGATE_LOG", default_value = "info", global = true)]
    pub log: String,

    /// Log format.
    #[arg(long, env = "QUEUEGATE_LOG_FORMAT", value_enum, default_value = "json", global = true)]
    pub log_format: LogFormat,

    /// Allow running without an admin token or token secret (local development only).
    #[arg(long, env = "QUEUEGATE_INSECURE_DEV", global = true)]
    pub insecure_dev: bool,
}

/// A configuration problem, named by the setting that has it.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {setting}: {reason}")]
pub struct ConfigError {
    pub setting: &'static str,
    pub reason: String,
}

fn bad(setting: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError { setting, reason: reason.into() }
}

/// The fixed secret used under --insecure-dev when none is configured, so that several dev
/// instances agree on entry tokens. Never accepted without --insecure-dev.
const DEV_TOKEN_SECRET: &str = "queuegate-insecure-dev-secret-do-not-use-in-production";

impl Settings {
    /// Checks everything that can be checked without the network.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.kafka_brokers.trim().is_empty() {
            return Err(bad("QUEUEGATE_KAFKA_BROKERS", "must name at least one broker"));
        }
        if !valid_topic(&self.kafka_topic) {
            return Err(bad("QUEUEGATE_KAFKA_TOPIC", "must be 1-200 characters of [A-Za-z0-9._-]"));
        }
        if self.kafka_group.trim().is_empty() {
            return Err(bad("QUEUEGATE_KAFKA_GROUP", "must not be empty"));
        }
        if !matches!(self.kafka_compression.as_str(), "none" | "gzip" | "snappy" | "lz4" | "zstd") {
            return Err(bad("QUEUEGATE_KAFKA_COMPRESSION", "must be one of none, gzip, snappy, lz4, zstd"));
        }
        if !(100..=300_000).contains(&self.kafka_delivery_timeout_ms) {
            return Err(bad("QUEUEGATE_KAFKA_DELIVERY_TIMEOUT_MS", "must be between 100 and 300000"));
        }
        if self.kafka_linger_ms > 1000 {
            return Err(bad("QUEUEGATE_KAFKA_LINGER_MS", "must be at most 1000"));
        }
        if !(10_000..=86_400_000).contains(&self.kafka_max_poll_interval_ms) {
            return Err(bad(
                "QUEUEGATE_KAFKA_MAX_POLL_INTERVAL_MS",
                "must be between 10000 (the session timeout) and 86400000",
            ));
        }
        if !(1_000..=100_000_000).contains(&self.kafka_batch_bytes) {
            return Err(bad("QUEUEGATE_KAFKA_BATCH_BYTES", "must be between 1000 and 100000000"));
        }
        if self.max_in_flight == 0 {
            return Err(bad("QUEUEGATE_MAX_IN_FLIGHT", "must be at least 1"));
        }
        if !(1..=10_000).contains(&self.consumer_batch) {
            return Err(bad("QUEUEGATE_CONSUMER_BATCH", "must be between 1 and 10000"));
        }
        if self.consumer_linger_ms > 1000 {
            return Err(bad("QUEUEGATE_CONSUMER_LINGER_MS", "must be at most 1000"));
        }
        if !(1024..=2_097_151).contains(&self.consumer_prefetch_kb) {
            return Err(bad("QUEUEGATE_CONSUMER_PREFETCH_KB", "must be between 1024 and 2097151"));
        }
        if !(self.redis_url.starts_with("redis://") || self.redis_url.starts_with("rediss://")) {
            return Err(bad("QUEUEGATE_REDIS_URL", "must start with redis:// or rediss://"));
        }
        if self.redis_prefix.is_empty() || self.redis_prefix.contains(['{', '}', ' ']) {
            return Err(bad("QUEUEGATE_REDIS_PREFIX", "must be non-empty without braces or spaces"));
        }
        if self.redis_pool == 0 {
            return Err(bad("QUEUEGATE_REDIS_POOL", "must be at least 1"));
        }
        if self.concert_refresh_ms == 0 {
            return Err(bad("QUEUEGATE_CONCERT_REFRESH_MS", "must be at least 1"));
        }
        match &self.admin_token {
            Some(t) if t.len() < 16 => return Err(bad("QUEUEGATE_ADMIN_TOKEN", "must be at least 16 characters")),
            None if !self.insecure_dev => {
                return Err(bad("QUEUEGATE_ADMIN_TOKEN", "is required (or pass --insecure-dev for local use)"))
            }
            _ => {}
        }
        match &self.token_secret {
            Some(s) if s.len() < 32 => return Err(bad("QUEUEGATE_TOKEN_SECRET", "must be at least 32 bytes")),
            None if !self.insecure_dev => {
                return Err(bad("QUEUEGATE_TOKEN_SECRET", "is required (or pass --insecure-dev for local use)"))
            }
            _ => {}
        }
        if self.admission_key_file.is_none() && !self.insecure_dev {
            return Err(bad("QUEUEGATE_ADMISSION_KEY_FILE", "is required (or pass --insecure-dev for local use)"));
        }
        if !(10..=10_000).contains(&self.admission_tick_ms) {
            return Err(bad("QUEUEGATE_ADMISSION_TICK_MS", "must be between 10 and 10000"));
        }
        if self.admission_lease_ms < 3 * self.admission_tick_ms || self.admission_lease_ms > 600_000 {
            return Err(bad("QUEUEGATE_ADMISSION_LEASE_MS", "must be at least 3 ticks and at most 600000"));
        }
        if let Some(c) = &self.demo_concert {
            if !crate::ids::valid_id(c) {
                return Err(bad("QUEUEGATE_DEMO_CONCERT", "must match ^[A-Za-z0-9_-]{1,64}$"));
            }
        }
        Ok(())
    }

    /// The secret that signs entry tokens (the dev secret only under --insecure-dev).
    pub fn token_secret_bytes(&self) -> Vec<u8> {
        self.token_secret.as_deref().unwrap_or(DEV_TOKEN_SECRET).as_bytes().to_vec()
    }

    /// The admission-token keys: from the configured file, or random under --insecure-dev.
    pub fn admission_keys(&self) -> Result<crate::admission::AdmissionKeys, ConfigError> {
        match &self.admission_key_file {
            Some(path) => crate::admission::AdmissionKeys::from_pem_file(path)
                .map_err(|e| bad("QUEUEGATE_ADMISSION_KEY_FILE", format!("{e:#}"))),
            None => Ok(crate::admission::AdmissionKeys::ephemeral()),
        }
    }

    /// Dead-letter topic for records that can never be applied.
    pub fn dlt_topic(&self) -> String {
        format!("{}.dlt", self.kafka_topic)
    }

    pub fn delivery_timeout(&self) -> Duration {
        Duration::from_millis(self.kafka_delivery_timeout_ms)
    }

    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_secs(self.shutdown_grace_seconds)
    }

    /// Settings for tests and embedding: loopback listeners on port 0 and local services,
    /// with the given Kafka topic, consumer group and Redis key prefix.
    pub fn for_test(topic: &str, group: &str, prefix: &str) -> Self {
        let mut s = Cli::parse_from(["queuegate", "--insecure-dev"]).settings;
        s.http_addr = "127.0.0.1:0".parse().expect("literal address");
        s.admin_addr = "127.0.0.1:0".parse().expect("literal address");
        s.kafka_topic = topic.to_owned();
        s.kafka_group = group.to_owned();
        s.redis_prefix = prefix.to_owned();
        s.admin_token = Some("test-admin-token-0123456789".to_owned());
        s.concert_refresh_ms = 200;
        s.http_workers = 2;
        s.shutdown_grace_seconds = 5;
        s
    }
}

fn valid_topic(t: &str) -> bool {
    (1..=200).contains(&t.len()) && t.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Settings {
        let mut v = vec!["queuegate"];
        v.extend_from_slice(args);
        Cli::try_parse_from(v).expect("parses").settings
    }

    #[test]
    fn a_missing_admin_token_names_the_setting() {
        let s = parse(&["--token-secret", &"x".repeat(32), "--admission-key-file", "k.pem"]);
        let err = s.validate().unwrap_err();
        assert_eq!(err.setting, "QUEUEGATE_ADMIN_TOKEN");
    }

    #[test]
    fn insecure_dev_runs_without_secrets() {
        parse(&["--insecure-dev"]).validate().expect("valid");
    }

    #[test]
    fn a_short_token_secret_is_refused() {
        let s =
            parse(&["--admin-token", "0123456789abcdef", "--token-secret", "short", "--admission-key-file", "k.pem"]);
        assert_eq!(s.validate().unwrap_err().setting, "QUEUEGATE_TOKEN_SECRET");
    }

    #[test]
    fn a_bad_redis_url_is_refused() {
        let s = parse(&["--insecure-dev", "--redis-url", "http://x"]);
        assert_eq!(s.validate().unwrap_err().setting, "QUEUEGATE_REDIS_URL");
    }

    #[test]
    fn a_topic_with_spaces_is_refused() {
        let s = parse(&["--insecure-dev", "--kafka-topic", "a b"]);
        assert_eq!(s.validate().unwrap_err().setting, "QUEUEGATE_KAFKA_TOPIC");
    }
}

#[cfg(test)]
mod key_tests {
    use super::*;

    #[test]
    fn a_missing_admission_key_names_the_setting() {
        let s =
            Cli::try_parse_from(["queuegate", "--admin-token", "0123456789abcdef", "--token-secret", &"x".repeat(32)])
                .unwrap()
                .settings;
        assert_eq!(s.validate().unwrap_err().setting, "QUEUEGATE_ADMISSION_KEY_FILE");
    }

    #[test]
    fn an_unreadable_admission_key_names_the_setting() {
        let mut s = Cli::try_parse_from(["queuegate", "--insecure-dev"]).unwrap().settings;
        s.admission_key_file = Some("/nonexistent/key.pem".into());
        let err = s.admission_keys().err().expect("refused");
        assert_eq!(err.setting, "QUEUEGATE_ADMISSION_KEY_FILE");
    }
}
