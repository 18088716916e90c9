//! Processes a scenario starts and kills: `queuegate consumer` as a separate process, on the
//! scenario's names (from the shared harness).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;

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

/// One scenario's private names, on the Redis and brokers it uses, and the logs of the
/// processes it started: when the scenario fails (is dropped while panicking), the last lines
/// of each are printed after the failure.
pub struct Scenario {
    pub names: Names,
    logs: Mutex<Vec<(String, PathBuf)>>,
}

/// How many lines of each process's log a failed scenario prints.
const LOG_TAIL: usize = 40;

impl Drop for Scenario {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        for (what, path) in self.logs.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            let text = std::fs::read_to_string(path).unwrap_or_else(|e| format!("(could not read: {e})"));
            let lines: Vec<&str> = text.lines().collect();
            let tail = &lines[lines.len().saturating_sub(LOG_TAIL)..];
            eprintln!("--- {what}: last {} of {} log lines ({}) ---", tail.len(), lines.len(), path.display());
            for line in tail {
                eprintln!("{line}");
            }
        }
    }
}

impl Scenario {
    /// Fresh names on the shared brokers and `redis_url`, with the topics created.
    pub async fn new(partitions: i32, redis_url: String) -> Self {
        Self::with_brokers(partitions, redis_url, crate::common::brokers()).await
    }

    pub async fn with_brokers(partitions: i32, redis_url: String, brokers: String) -> Self {
        let names = Names::on(brokers, redis_url);
        names.create_topics(partitions).await;
        Scenario { names, logs: Mutex::new(Vec::new()) }
    }

    /// A new log file for a process this scenario starts (`what`: e.g. "consumer"), under
    /// `.local/chaos-logs/`, printed if the scenario fails.
    pub fn log_file(&self, what: &str) -> (std::fs::File, PathBuf) {
        let mut logs = self.logs.lock().unwrap_or_else(|e| e.into_inner());
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".local/chaos-logs");
        std::fs::create_dir_all(&dir).expect("create .local/chaos-logs");
        let name = format!("{what} #{}", logs.iter().filter(|(w, _)| w.starts_with(what)).count() + 1);
        let path = dir.join(format!("{}-{}.log", self.names.prefix, name.replace([' ', '#'], "")));
        let file = std::fs::File::create(&path).expect("create a process log");
        logs.push((name, path.clone()));
        (file, path)
    }

    /// Where a started process writes: its stderr to a log of this scenario (and to the test's
    /// own stderr as well when `CHAOS_LOG` is set, which also sets the level).
    fn log_to(&self, cmd: &mut Command, what: &str) {
        cmd.env("QUEUEGATE_LOG", std::env::var("CHAOS_LOG").unwrap_or_else(|_| "info".into()));
        let (file, _) = self.log_file(what);
        cmd.stdout(Stdio::null()).stderr(file);
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
        for (k, v) in self.names.env() {
            cmd.env(k, v);
        }
        self.log_to(&mut cmd, "consumer");
        for (k, v) in extra {
            cmd.env(k, v);
        }
        cmd.spawn().expect("spawn queuegate consumer")
    }

    /// `queuegate gateway --insecure-dev` as a separate process on `port` (fans name themselves
    /// in the body; no per-address limits), with `extra` environment; logging to the scenario.
    pub fn spawn_gateway_process(&self, port: u16, extra: &[(&str, String)]) -> Child {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_queuegate"));
        cmd.args(["gateway", "--insecure-dev"]);
        for (k, v) in self.names.env() {
            cmd.env(k, v);
        }
        cmd.env("QUEUEGATE_HTTP_ADDR", format!("127.0.0.1:{port}"))
            .env("QUEUEGATE_RATE_LIMIT_PER_IP", "0")
            .env("QUEUEGATE_FAN_JOINS_PER_SECOND", "0");
        self.log_to(&mut cmd, "gateway process");
        for (k, v) in extra {
            cmd.env(k, v);
        }
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
        self.logs.lock().unwrap_or_else(|e| e.into_inner()).push(("skewed consumer".into(), log.to_path_buf()));
        cmd.spawn().expect("spawn queuegate consumer")
    }
}
