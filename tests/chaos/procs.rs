//! Processes a scenario starts and kills: `queuegate consumer` as a separate process, on the
//! scenario's names (from the shared harness).

use std::process::{Child, Command, Stdio};

use queuegate::config::Role;

pub use crate::common::private_kafka::{kill9, PrivateKafka};
pub use crate::common::private_redis::PrivateRedis;
use crate::common::{spawn_role, Names, TestApp};

/// A child process killed (SIGKILL) when dropped, so a failed assertion leaves none running.
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        kill9(&mut self.0);
    }
}

/// One scenario's private names, on the Redis and brokers it uses.
pub struct Scenario {
    pub names: Names,
}

impl Scenario {
    /// Fresh names on the shared brokers and `redis_url`, with the topics created.
    pub async fn new(partitions: i32, redis_url: String) -> Self {
        Self::with_brokers(partitions, redis_url, crate::common::brokers()).await
    }

    pub async fn with_brokers(partitions: i32, redis_url: String, brokers: String) -> Self {
        let names = Names::on(brokers, redis_url);
        names.create_topics(partitions).await;
        Scenario { names }
    }

    pub fn redis_url(&self) -> &str {
        &self.names.redis_url
    }

    /// `queuegate consumer` as a separate process (the thing a kill -9 hits).
    pub fn spawn_consumer(&self, batch: usize) -> Child {
        self.spawn_consumer_with(batch, &[])
    }

    /// The same with extra environment (which overrides the scenario's).
    pub fn spawn_consumer_with(&self, batch: usize, extra: &[(&str, String)]) -> Child {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_queuegate"));
        cmd.arg("consumer").env("QUEUEGATE_CONSUMER_BATCH", batch.to_string());
        cmd.env("QUEUEGATE_LOG", std::env::var("CHAOS_LOG").unwrap_or_else(|_| "warn".into()));
        for (k, v) in self.names.env() {
            cmd.env(k, v);
        }
        for (k, v) in extra {
            cmd.env(k, v);
        }
        let logs = std::env::var("CHAOS_LOG").is_ok();
        cmd.stdout(Stdio::null()).stderr(if logs { Stdio::inherit() } else { Stdio::null() });
        cmd.spawn().expect("spawn queuegate consumer")
    }

    /// `queuegate gateway --insecure-dev` as a separate process on `port` (fans name themselves
    /// in the body; no per-address limits), with `extra` environment; stdout and stderr dropped
    /// unless `CHAOS_LOG` is set.
    pub fn spawn_gateway_process(&self, port: u16, extra: &[(&str, String)]) -> Child {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_queuegate"));
        cmd.args(["gateway", "--insecure-dev"]);
        for (k, v) in self.names.env() {
            cmd.env(k, v);
        }
        cmd.env("QUEUEGATE_HTTP_ADDR", format!("127.0.0.1:{port}"))
            .env("QUEUEGATE_RATE_LIMIT_PER_IP", "0")
            .env("QUEUEGATE_FAN_JOINS_PER_SECOND", "0")
            .env("QUEUEGATE_LOG", std::env::var("CHAOS_LOG").unwrap_or_else(|_| "warn".into()));
        for (k, v) in extra {
            cmd.env(k, v);
        }
        let logs = std::env::var("CHAOS_LOG").is_ok();
        cmd.stdout(Stdio::null()).stderr(if logs { Stdio::inherit() } else { Stdio::null() });
        cmd.spawn().expect("spawn queuegate gateway")
    }

    /// An in-process gateway (front door + admin) on port 0.
    pub async fn spawn_gateway(&self, tweak: impl FnOnce(&mut queuegate::config::Settings)) -> TestApp {
        spawn_role(&self.names, Role::Gateway, tweak).await
    }
}

/// libfaketime from Debian's `faketime` package (`make test` installs it): an instance whose
/// clock is wrong, for the clock-skew scenario.
pub fn libfaketime() -> String {
    ["/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1", "/usr/lib/faketime/libfaketime.so.1"]
        .iter()
        .find(|p| std::path::Path::new(p).exists())
        .expect("libfaketime is installed (make test installs Debian's faketime package)")
        .to_string()
}

impl Scenario {
    /// `queuegate consumer` with its wall clock `offset` off (e.g. "-30s"; monotonic time is
    /// left alone), logging at info as JSON to `log`.
    pub fn spawn_skewed_consumer(&self, batch: usize, offset: &str, log: &std::path::Path) -> Child {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_queuegate"));
        cmd.arg("consumer").env("QUEUEGATE_CONSUMER_BATCH", batch.to_string());
        for (k, v) in self.names.env() {
            cmd.env(k, v);
        }
        cmd.env("QUEUEGATE_LOG", "info").env("QUEUEGATE_LOG_FORMAT", "json");
        cmd.env("LD_PRELOAD", libfaketime()).env("FAKETIME", offset).env("FAKETIME_DONT_FAKE_MONOTONIC", "1");
        cmd.stdout(Stdio::null()).stderr(std::fs::File::create(log).expect("log file"));
        cmd.spawn().expect("spawn queuegate consumer")
    }
}
