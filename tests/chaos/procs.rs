//! Processes a scenario starts and kills: `queuegate consumer` as a separate process, on the
//! scenario's names (from the shared harness).

use std::process::{Child, Command, Stdio};

use queuegate::config::Role;

pub use crate::common::private_kafka::{kill9, PrivateKafka};
pub use crate::common::private_redis::PrivateRedis;
use crate::common::{spawn_role, Names, TestApp};

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

    /// An in-process gateway (front door + admin) on port 0.
    pub async fn spawn_gateway(&self, tweak: impl FnOnce(&mut queuegate::config::Settings)) -> TestApp {
        spawn_role(&self.names, Role::Gateway, tweak).await
    }
}
