//! Command line and environment configuration.
//!
//! Every setting is a flag with an environment fallback (`QUEUEGATE_*`), so the same binary is
//! configured the same way by a shell, a Makefile, systemd or docker-compose. Settings come in
//! sections ([`sections`]), one per part of queuegate, each shown under its own heading in
//! `--help`, and each subcommand takes only the sections it uses. [`Settings::validate`] checks
//! the whole configuration before any port is bound and names the offending setting in one line,
//! because an operator at 9:59 before an on-sale should not have to read a stack trace.

use clap::{Args, Parser, Subcommand};

pub mod admin_tokens;
mod error;
pub mod identity;
mod secret;
pub mod sections;

pub use admin_tokens::{AdminRole, NamedToken};
pub(crate) use error::bad;
pub use error::ConfigError;
pub use identity::{ClientIpHeader, FanIdentityMode, IdentitySettings};
pub use secret::Secret;
pub use sections::{
    check_properties, AdmissionSettings, ConsumerSettings, EventsSettings, HttpSettings, KafkaProperty, KafkaSettings,
    LogFormat, RedisSettings, SecuritySettings, TelemetrySettings, ADMIN_AUDIT_KEPT_DEFAULT, ADMIN_AUDIT_KEPT_RANGE,
    SESSION_TIMEOUT_MS,
};

/// queuegate: a waiting-queue gateway for concert ticket on-sales.
///
/// Without a subcommand, queuegate runs every role in one process (`queuegate run`).
#[derive(Debug, Parser)]
#[command(name = "queuegate", version, about, long_about = None, args_conflicts_with_subcommands = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,

    /// The settings of `run` when no subcommand is given.
    #[command(flatten)]
    pub run: Settings,
}

/// What the `queuegate` binary is asked to do.
#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Every role in one process: front door, consumer and admin API (the default).
    Run(Settings),
    /// Only the HTTP front door and the admin API; joins are produced to Kafka.
    Gateway(Settings),
    /// Only the Kafka consumer that moves joins into Redis, plus the admin listener.
    Consumer(Settings),
    /// Work with the dead-letter topic.
    #[command(subcommand)]
    Dlt(DltCommand),
    /// Write a new Ed25519 admission-token key (PKCS#8 PEM, mode 0600) to PATH; never overwrites.
    Keygen {
        /// Where to write the key.
        path: std::path::PathBuf,
    },
    /// Check a scheduled concert's shuffle: the seed against the commitment, the pre-queue
    /// against the list hash, and the order against the seed. Exit 0 when all hold.
    VerifyShuffle {
        /// What `GET /v1/concerts/{id}/fairness` answered after the cut (JSON).
        #[arg(long)]
        fairness: std::path::PathBuf,
        /// The admin listing taken before anyone was admitted
        /// (`GET /admin/v1/concerts/{id}/queue?limit=1000`, pages concatenated as one JSON array
        /// of entries, or one page's object).
        #[arg(long)]
        listing: std::path::PathBuf,
    },
}

/// `queuegate dlt …`
#[derive(Debug, Clone, Subcommand)]
pub enum DltCommand {
    /// Re-publish dead letters to the entry topic, once each, and exit at the end of the topic.
    ///
    /// By default only records that are valid now are re-published (those dead-lettered by an
    /// older, stricter or buggier version); the others are listed and stay. Progress is kept in
    /// the consumer group "<group>-dlt-replay", so a second run continues where the first ended.
    Replay(ReplayArgs),
}

/// The options of `queuegate dlt replay`: the Kafka section and logging, nothing else.
#[derive(Debug, Clone, Args)]
pub struct ReplayArgs {
    /// List what would be re-published, change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Re-publish invalid records too (the consumer will dead-letter them again).
    #[arg(long)]
    pub all: bool,
    #[command(flatten)]
    pub kafka: KafkaSettings,
    #[command(flatten)]
    pub telemetry: TelemetrySettings,
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
    /// Whether this role runs the Kafka → Redis consumer (and the admitter).
    pub fn consumes(self) -> bool {
        matches!(self, Role::Run | Role::Consumer)
    }
}

/// What the command line asks for, once the default subcommand is filled in.
#[derive(Debug)]
pub enum Invocation {
    /// Serve in `role` with `settings`.
    Serve(Role, Box<Settings>),
    Dlt(DltCommand),
    Keygen(std::path::PathBuf),
    VerifyShuffle {
        fairness: std::path::PathBuf,
        listing: std::path::PathBuf,
    },
}

impl Cli {
    /// What to do: the subcommand, or `run` with the top-level settings.
    pub fn invocation(self) -> Invocation {
        match self.command {
            None => Invocation::Serve(Role::Run, Box::new(self.run)),
            Some(Command::Run(s)) => Invocation::Serve(Role::Run, Box::new(s)),
            Some(Command::Gateway(s)) => Invocation::Serve(Role::Gateway, Box::new(s)),
            Some(Command::Consumer(s)) => Invocation::Serve(Role::Consumer, Box::new(s)),
            Some(Command::Dlt(d)) => Invocation::Dlt(d),
            Some(Command::Keygen { path }) => Invocation::Keygen(path),
            Some(Command::VerifyShuffle { fairness, listing }) => Invocation::VerifyShuffle { fairness, listing },
        }
    }
}

/// Every setting of a serving queuegate process, in sections.
#[derive(Debug, Clone, Args)]
pub struct Settings {
    #[command(flatten)]
    pub http: HttpSettings,
    #[command(flatten)]
    pub kafka: KafkaSettings,
    #[command(flatten)]
    pub consumer: ConsumerSettings,
    #[command(flatten)]
    pub redis: RedisSettings,
    #[command(flatten)]
    pub admission: AdmissionSettings,
    #[command(flatten)]
    pub security: SecuritySettings,
    #[command(flatten)]
    pub identity: IdentitySettings,
    #[command(flatten)]
    pub telemetry: TelemetrySettings,
    #[command(flatten)]
    pub events: EventsSettings,
}

impl Settings {
    /// Checks everything that can be checked without the network, section by section, for a
    /// process in `role`.
    pub fn validate_for(&self, role: Role) -> Result<(), ConfigError> {
        let insecure_dev = self.security.insecure_dev;
        self.http.validate(insecure_dev)?;
        self.kafka.validate()?;
        self.consumer.validate()?;
        self.events.validate()?;
        self.redis.validate()?;
        self.security.validate()?;
        self.identity.validate(insecure_dev, role.serves_public())?;
        self.admission.validate(insecure_dev)
    }

    /// The fan identity mode in force (None for roles that serve no fans and set none).
    pub fn fan_identity(&self) -> Option<FanIdentityMode> {
        self.identity.mode(self.security.insecure_dev)
    }

    /// Settings for tests and embedding: loopback listeners on port 0 and local services,
    /// with the given Kafka topic, consumer group and Redis key prefix.
    pub fn for_test(topic: &str, group: &str, prefix: &str) -> Self {
        let mut s = Cli::parse_from(["queuegate", "--insecure-dev"]).run;
        s.http.http_addr = "127.0.0.1:0".parse().expect("literal address");
        s.http.admin_addr = "127.0.0.1:0".parse().expect("literal address");
        s.http.concert_refresh_ms = 200;
        s.http.http_workers = 2;
        s.http.shutdown_grace_seconds = 5;
        // Tests drive thousands of joins from one address and poll as fast as they like; the
        // tests of the limits turn them on.
        s.http.rate_limit_per_ip = 0;
        s.http.fan_joins_per_second = 0;
        s.http.fan_status_per_second = 0;
        s.http.code_failures_per_client = 0;
        s.http.code_failures_per_lane = 0;
        s.kafka.kafka_topic = topic.to_owned();
        s.kafka.kafka_group = group.to_owned();
        s.events.events_topic = format!("{topic}.events");
        s.redis.redis_prefix = prefix.to_owned();
        s.security.admin_token = Some(Secret::new("test-admin-token-0123456789"));
        s.security.token_secret = Some(Secret::new("test-token-secret-0123456789-0123456789"));
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Settings {
        let mut v = vec!["queuegate"];
        v.extend_from_slice(args);
        match Cli::try_parse_from(v).expect("parses").invocation() {
            Invocation::Serve(_, s) => *s,
            other => panic!("not a serving command: {other:?}"),
        }
    }

    fn secure(extra: &[&str]) -> Vec<String> {
        let mut v: Vec<String> =
            ["--admin-token", "0123456789abcdef", "--admission-key-file", "k.pem", "--token-secret"]
                .iter()
                .map(|s| s.to_string())
                .collect();
        v.push("x".repeat(32));
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    }

    fn setting_refused(args: &[&str]) -> &'static str {
        parse(args).validate_for(Role::Run).expect_err("refused").setting
    }

    #[test]
    fn a_missing_admin_token_names_the_setting() {
        assert_eq!(
            setting_refused(&["--token-secret", &"x".repeat(32), "--admission-key-file", "k.pem"]),
            "QUEUEGATE_ADMIN_TOKEN"
        );
    }

    #[test]
    fn a_tokens_file_stands_beside_or_instead_of_the_admin_token_and_a_bad_one_names_its_setting() {
        let dir = std::env::temp_dir().join(format!("qg-config-tokens-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let good = dir.join("good.json");
        std::fs::write(&good, r#"[{"name":"dash","role":"viewer","token":"dash-token-0123456789"}]"#).unwrap();
        let bad = dir.join("bad.json");
        std::fs::write(&bad, r#"[{"name":"dash","role":"viewer","token":"short"}]"#).unwrap();
        let base = ["--fan-identity", "anonymous", "--admission-key-file", "k.pem", "--token-secret"];
        let with = |file: &std::path::Path, admin: bool| {
            let mut v: Vec<String> = base.iter().map(|s| s.to_string()).collect();
            v.push("x".repeat(32));
            v.extend(["--admin-tokens-file".to_owned(), file.display().to_string()]);
            if admin {
                v.extend(["--admin-token".to_owned(), "0123456789abcdef".to_owned()]);
            }
            parse(&v.iter().map(String::as_str).collect::<Vec<_>>()).validate_for(Role::Run)
        };
        with(&good, true).expect("beside the admin token");
        with(&good, false).expect("instead of it");
        assert_eq!(with(&bad, true).unwrap_err().setting, "QUEUEGATE_ADMIN_TOKENS_FILE");
        assert_eq!(with(&dir.join("missing.json"), false).unwrap_err().setting, "QUEUEGATE_ADMIN_TOKENS_FILE");
        let s = ["--insecure-dev", "--admin-tokens-file", good.to_str().unwrap()];
        assert_eq!(setting_refused(&s), "QUEUEGATE_TOKEN_SECRET", "named tokens need a token secret");
        assert_eq!(setting_refused(&["--insecure-dev", "--admin-audit-kept", "0"]), "QUEUEGATE_ADMIN_AUDIT_KEPT");
    }

    #[test]
    fn insecure_dev_runs_without_secrets() {
        parse(&["--insecure-dev"]).validate_for(Role::Run).expect("valid");
        let args = secure(&["--fan-identity", "anonymous"]);
        parse(&args.iter().map(String::as_str).collect::<Vec<_>>()).validate_for(Role::Run).expect("valid");
    }

    #[test]
    fn a_short_token_secret_is_refused() {
        let s = ["--admin-token", "0123456789abcdef", "--token-secret", "short", "--admission-key-file", "k.pem"];
        assert_eq!(setting_refused(&s), "QUEUEGATE_TOKEN_SECRET");
    }

    fn refused_for(role: Role, extra: &[&str]) -> Option<&'static str> {
        let args = secure(extra);
        parse(&args.iter().map(String::as_str).collect::<Vec<_>>()).validate_for(role).err().map(|e| e.setting)
    }

    #[test]
    fn a_gateway_must_say_how_it_knows_who_a_fan_is() {
        assert_eq!(refused_for(Role::Gateway, &[]), Some("QUEUEGATE_FAN_IDENTITY"));
        assert_eq!(refused_for(Role::Consumer, &[]), None, "a consumer serves no fans");
        assert_eq!(refused_for(Role::Run, &["--fan-identity", "body"]), Some("QUEUEGATE_FAN_IDENTITY"));
        assert_eq!(refused_for(Role::Run, &["--fan-identity", "body", "--allow-unauthenticated-fans"]), None);
        assert_eq!(refused_for(Role::Run, &["--fan-identity", "jwt"]), Some("QUEUEGATE_FAN_JWT_JWKS"));
        let jwt = ["--fan-identity", "jwt", "--fan-jwt-secret", "0123456789abcdef0123456789abcdef"];
        assert_eq!(refused_for(Role::Run, &jwt), Some("QUEUEGATE_FAN_JWT_ISSUER"));
        let full =
            [&jwt[..], &["--fan-jwt-issuer", "https://tickets.example", "--fan-jwt-audience", "queuegate"]].concat();
        assert_eq!(refused_for(Role::Run, &full), None);
        assert_eq!(refused_for(Role::Run, &["--fan-identity", "trusted-header"]), Some("QUEUEGATE_FAN_ID_HEADER"));
        let header = ["--fan-identity", "trusted-header", "--fan-id-header", "x-fan-id"];
        assert_eq!(refused_for(Role::Run, &header), Some("QUEUEGATE_TRUSTED_PROXIES"));
        let with_proxies = [&header[..], &["--trusted-proxies", "10.0.0.0/8,::1/128"]].concat();
        assert_eq!(refused_for(Role::Run, &with_proxies), None);
    }

    #[test]
    fn example_secrets_and_half_configured_secrets_are_refused() {
        let s = [
            "--fan-identity",
            "anonymous",
            "--admission-key-file",
            "k.pem",
            "--token-secret",
            "compose-token-secret-change-me-0123456789",
            "--admin-token",
            "0123456789abcdef",
        ];
        assert_eq!(setting_refused(&s), "QUEUEGATE_TOKEN_SECRET");
        let dev = ["--insecure-dev", "--admin-token", "0123456789abcdef"];
        assert_eq!(setting_refused(&dev), "QUEUEGATE_TOKEN_SECRET", "an admin token needs a token secret");
        let dev_examples =
            ["--insecure-dev", "--admin-token", "dev-admin-token-change-me", "--token-secret", &"change-me".repeat(4)];
        parse(&dev_examples).validate_for(Role::Run).expect("examples are fine on a laptop");
    }

    #[test]
    fn insecure_dev_listens_on_loopback_only() {
        assert_eq!(setting_refused(&["--insecure-dev", "--http-addr", "0.0.0.0:8080"]), "QUEUEGATE_HTTP_ADDR");
        assert_eq!(setting_refused(&["--insecure-dev", "--admin-addr", "192.0.2.1:8081"]), "QUEUEGATE_ADMIN_ADDR");
    }

    #[test]
    fn a_missing_admission_key_names_the_setting() {
        let s = ["--admin-token", "0123456789abcdef", "--token-secret", &"x".repeat(32), "--fan-identity", "anonymous"];
        assert_eq!(setting_refused(&s), "QUEUEGATE_ADMISSION_KEY_FILE");
    }

    #[test]
    fn an_unreadable_admission_key_names_the_setting() {
        let mut s = parse(&["--insecure-dev"]);
        s.admission.admission_key_file = vec!["/nonexistent/key.pem".into()];
        assert_eq!(s.admission.keys().err().expect("refused").setting, "QUEUEGATE_ADMISSION_KEY_FILE");
    }

    #[test]
    fn a_cluster_url_names_seed_nodes_carrying_the_credentials_and_asks_one_replica_by_default() {
        let s = parse(&["--redis-url", "redis+cluster://app:pw@10.0.0.1:7000,10.0.0.2:7001/"]);
        assert_eq!(s.redis.cluster_nodes().unwrap(), ["redis://app:pw@10.0.0.1:7000", "redis://app:pw@10.0.0.2:7001"]);
        assert_eq!(s.redis.min_replicas(), 1);
        assert_eq!(s.redis.redacted_url(), "redis+cluster://app:***@10.0.0.1:7000,10.0.0.2:7001/");
        let tls = parse(&["--redis-url", "rediss+cluster://h:7000", "--redis-min-replicas", "2"]);
        assert_eq!(tls.redis.cluster_nodes().unwrap(), ["rediss://h:7000"]);
        assert_eq!(tls.redis.min_replicas(), 2);
        let single = parse(&[]);
        assert_eq!((single.redis.cluster_nodes(), single.redis.min_replicas()), (None, 0));
        // A node without a port, and more replicas than any Redis deployment has, are refused.
        let refused = setting_refused(&["--insecure-dev", "--redis-url", "redis+cluster://a:pw@h1:7000,h2"]);
        assert_eq!(refused, "QUEUEGATE_REDIS_URL");
        let err = parse(&["--insecure-dev", "--redis-url", "redis+cluster://u:secret@h1:7000,h2"])
            .validate_for(Role::Run)
            .unwrap_err()
            .to_string();
        assert!(err.contains("\"h2\"") && !err.contains("secret"), "{err}");
        assert_eq!(setting_refused(&["--insecure-dev", "--redis-min-replicas", "9"]), "QUEUEGATE_REDIS_MIN_REPLICAS");
        assert_eq!(
            setting_refused(&["--insecure-dev", "--redis-replica-timeout-ms", "5000"]),
            "QUEUEGATE_REDIS_REPLICA_TIMEOUT_MS"
        );
    }

    #[test]
    fn bad_values_name_their_setting_and_the_range() {
        assert_eq!(setting_refused(&["--insecure-dev", "--redis-url", "http://x"]), "QUEUEGATE_REDIS_URL");
        assert_eq!(setting_refused(&["--insecure-dev", "--kafka-topic", "a b"]), "QUEUEGATE_KAFKA_TOPIC");
        let err = parse(&["--insecure-dev", "--consumer-batch", "0"]).validate_for(Role::Run).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid configuration: QUEUEGATE_CONSUMER_BATCH: must be between 1 and 10000 (got 0)"
        );
        assert_eq!(
            setting_refused(&["--insecure-dev", "--kafka-max-poll-interval-ms", "9999"]),
            "QUEUEGATE_KAFKA_MAX_POLL_INTERVAL_MS"
        );
        assert_eq!(setting_refused(&["--insecure-dev", "--events-outbox-max", "0"]), "QUEUEGATE_EVENTS_OUTBOX_MAX");
    }

    #[test]
    fn secrets_never_appear_in_the_settings_debug_output() {
        let mut args = secure(&[
            "--redis-url",
            "redis://queue:redis-pass-123@127.0.0.1:6379",
            "--kafka-property",
            "sasl.password=kafka-pass-456",
        ]);
        args.insert(0, "run".into());
        let debug = format!("{:?}", parse(&args.iter().map(String::as_str).collect::<Vec<_>>()));
        for secret in ["0123456789abcdef", &"x".repeat(32), "redis-pass-123", "kafka-pass-456"] {
            assert!(!debug.contains(secret), "{secret} leaked into {debug}");
        }
        assert!(debug.contains("redis://queue:***@127.0.0.1:6379"), "{debug}");
    }

    #[test]
    fn kafka_properties_come_from_repeated_flags_or_one_comma_separated_variable() {
        let s = parse(&[
            "--insecure-dev",
            "--kafka-property",
            "security.protocol=SASL_SSL",
            "--kafka-property",
            "sasl.mechanism=SCRAM-SHA-512",
        ]);
        let keys: Vec<&str> = s.kafka.kafka_properties.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(keys, ["security.protocol", "sasl.mechanism"]);
        s.validate_for(Role::Run).expect("valid");
        let one = Cli::try_parse_from(["queuegate", "--kafka-property", "a.b=1,c.d=2"]).unwrap().run;
        assert_eq!(one.kafka.kafka_properties.len(), 2);
        assert!(Cli::try_parse_from(["queuegate", "--kafka-property", "novalue"]).is_err());
    }

    #[test]
    fn each_subcommand_shows_only_the_options_it_uses() {
        use clap::CommandFactory;
        let mut cmd = Cli::command();
        let keygen = cmd.find_subcommand_mut("keygen").unwrap().render_long_help().to_string();
        assert!(!keygen.contains("QUEUEGATE_"), "keygen lists settings it does not use:\n{keygen}");
        let replay = cmd
            .find_subcommand_mut("dlt")
            .unwrap()
            .find_subcommand_mut("replay")
            .unwrap()
            .render_long_help()
            .to_string();
        assert!(replay.contains("QUEUEGATE_KAFKA_BROKERS") && replay.contains("QUEUEGATE_LOG"));
        assert!(!replay.contains("QUEUEGATE_REDIS_URL") && !replay.contains("QUEUEGATE_ADMIN_TOKEN"), "{replay}");
        let run = cmd.find_subcommand_mut("run").unwrap().render_long_help().to_string();
        for heading in ["HTTP:", "Kafka:", "Consumer:", "Redis:", "Admission:", "Security:", "Telemetry:"] {
            assert!(run.contains(heading), "run --help has no {heading} section");
        }
    }
}
