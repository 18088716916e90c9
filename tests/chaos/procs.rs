//! Processes a scenario starts and kills: queuegate roles and a private Redis.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use crate::private_redis::wait_for_port;
pub use crate::private_redis::PrivateRedis;
use std::time::Duration;

use queuegate::config::Role;
use queuegate::startup::Application;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::ClientConfig;
use tokio_util::sync::CancellationToken;

pub const ADMIN_TOKEN: &str = "chaos-admin-token-0123456789";
pub const TOKEN_SECRET: &str = "chaos-token-secret-0123456789-0123456789";

pub fn brokers() -> String {
    std::env::var("QUEUEGATE_KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".into())
}

pub fn shared_redis() -> String {
    std::env::var("QUEUEGATE_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// A PKCS#8 PEM Ed25519 key file for the spawned processes (written once per test binary).
pub fn admission_key_file() -> String {
    use ed25519_dalek::pkcs8::{spki::der::pem::LineEnding, EncodePrivateKey};
    static PATH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    PATH.get_or_init(|| {
        let path = std::env::temp_dir().join(format!("qgchaos-admission-{}.pem", std::process::id()));
        let pem = ed25519_dalek::SigningKey::from_bytes(&[7u8; 32]).to_pkcs8_pem(LineEnding::LF).expect("encodes");
        std::fs::write(&path, pem.as_bytes()).expect("key file written");
        path.display().to_string()
    })
    .clone()
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// One scenario's private names and the Redis it uses.
#[derive(Clone, Debug)]
pub struct Scenario {
    pub topic: String,
    pub group: String,
    pub prefix: String,
    pub redis_url: String,
    pub brokers: String,
}

impl Scenario {
    pub async fn new(partitions: i32, redis_url: String) -> Self {
        Self::with_brokers(partitions, redis_url, brokers()).await
    }

    pub async fn with_brokers(partitions: i32, redis_url: String, brokers: String) -> Self {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let s = Scenario {
            topic: format!("qgchaos-{id}"),
            group: format!("qgchaos-{id}"),
            prefix: format!("qgchaos-{id}"),
            redis_url,
            brokers,
        };
        let admin: AdminClient<DefaultClientContext> =
            ClientConfig::new().set("bootstrap.servers", &s.brokers).create().expect("admin client");
        let dlt = format!("{}.dlt", s.topic);
        let topics = [
            NewTopic::new(&s.topic, partitions, TopicReplication::Fixed(1)),
            NewTopic::new(&dlt, 1, TopicReplication::Fixed(1)),
        ];
        for r in admin.create_topics(&topics, &AdminOptions::new()).await.expect("create topics") {
            r.expect("topic created");
        }
        s
    }

    fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("QUEUEGATE_KAFKA_BROKERS", self.brokers.clone()),
            ("QUEUEGATE_KAFKA_TOPIC", self.topic.clone()),
            ("QUEUEGATE_KAFKA_GROUP", self.group.clone()),
            ("QUEUEGATE_REDIS_URL", self.redis_url.clone()),
            ("QUEUEGATE_REDIS_PREFIX", self.prefix.clone()),
            ("QUEUEGATE_ADMIN_TOKEN", ADMIN_TOKEN.into()),
            ("QUEUEGATE_TOKEN_SECRET", TOKEN_SECRET.into()),
            ("QUEUEGATE_HTTP_ADDR", "127.0.0.1:0".into()),
            ("QUEUEGATE_ADMIN_ADDR", "127.0.0.1:0".into()),
            ("QUEUEGATE_LOG", std::env::var("CHAOS_LOG").unwrap_or_else(|_| "warn".into())),
            ("QUEUEGATE_SHUTDOWN_GRACE_SECONDS", "5".into()),
            ("QUEUEGATE_ADMISSION_KEY_FILE", admission_key_file()),
        ]
    }

    /// `queuegate consumer` as a separate process (the thing a kill -9 hits).
    pub fn spawn_consumer(&self, batch: usize) -> Child {
        self.spawn_consumer_with(batch, &[])
    }

    /// The same with extra environment (which overrides the scenario's).
    pub fn spawn_consumer_with(&self, batch: usize, extra: &[(&str, String)]) -> Child {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_queuegate"));
        cmd.arg("consumer").env("QUEUEGATE_CONSUMER_BATCH", batch.to_string());
        for (k, v) in self.env() {
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
    pub async fn spawn_gateway(&self, tweak: impl FnOnce(&mut queuegate::config::Settings)) -> Gateway {
        let mut s = queuegate::config::Settings::for_test(&self.topic, &self.group, &self.prefix);
        s.kafka_brokers = self.brokers.clone();
        s.redis_url = self.redis_url.clone();
        s.admin_token = Some(ADMIN_TOKEN.into());
        tweak(&mut s);
        let app = Application::build(s, Role::Gateway).await.expect("gateway builds");
        let http = format!("http://127.0.0.1:{}", app.http_port().unwrap());
        let admin = format!("http://127.0.0.1:{}", app.admin_port());
        let stop = app.stop_token();
        tokio::spawn(app.run());
        Gateway { http, admin, stop, client: reqwest::Client::builder().pool_max_idle_per_host(512).build().unwrap() }
    }
}

/// An in-process gateway.
pub struct Gateway {
    pub http: String,
    pub admin: String,
    pub stop: CancellationToken,
    pub client: reqwest::Client,
}

impl Gateway {
    pub async fn open_concert(&self, id: &str) {
        let r = self
            .client
            .put(format!("{}/admin/v1/concerts/{id}", self.admin))
            .bearer_auth(ADMIN_TOKEN)
            .json(&serde_json::json!({"state": "open"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// kill -9.
pub fn kill9(child: &mut Child) {
    let _ = child.kill(); // SIGKILL on Unix
    let _ = child.wait();
}

/// A private single-node KRaft broker from the jars `make services` fetched, on free ports,
/// stoppable and restartable with its data.
pub struct PrivateKafka {
    pub port: u16,
    controller_port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

fn kafka_libs() -> PathBuf {
    std::env::var_os("QUEUEGATE_KAFKA_LIBS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".local/kafka-4.1.1/libs"))
}

impl PrivateKafka {
    pub fn start() -> Self {
        let (port, controller_port) = (free_port(), free_port());
        let dir = std::env::temp_dir().join(format!("qgchaos-kafka-{port}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("data")).unwrap();
        let props = format!(
            "process.roles=broker,controller\nnode.id=1\ncontroller.quorum.voters=1@127.0.0.1:{controller_port}\n\
             listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}\n\
             advertised.listeners=PLAINTEXT://127.0.0.1:{port}\ncontroller.listener.names=CONTROLLER\n\
             inter.broker.listener.name=PLAINTEXT\nlistener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT\n\
             log.dirs={}\noffsets.topic.replication.factor=1\noffsets.topic.num.partitions=3\n\
             transaction.state.log.replication.factor=1\ntransaction.state.log.min.isr=1\ntransaction.state.log.num.partitions=3\n\
             share.coordinator.state.topic.replication.factor=1\nshare.coordinator.state.topic.min.isr=1\n\
             group.initial.rebalance.delay.ms=0\nauto.create.topics.enable=false\n",
            dir.join("data").display()
        );
        std::fs::write(dir.join("server.properties"), props).unwrap();
        std::fs::write(dir.join("log4j2.properties"), "rootLogger.level = warn\n").unwrap();
        let status = Self::java(&dir)
            .args(["kafka.tools.StorageTool", "format", "-t", "qgchaosAAAAAAAAAAAAAAAA", "-c"])
            .arg(dir.join("server.properties"))
            .stdout(Stdio::null())
            .status()
            .expect("java runs");
        assert!(status.success(), "kafka storage format failed");
        let mut k = PrivateKafka { port, controller_port, dir, child: None };
        k.spawn();
        k
    }

    fn java(dir: &std::path::Path) -> Command {
        let mut c = Command::new("java");
        c.args(["-Xms128m", "-Xmx384m", "-XX:+UseSerialGC"])
            .arg(format!("-Dlog4j2.configurationFile={}", dir.join("log4j2.properties").display()))
            .arg("-cp")
            .arg(format!("{}/*", kafka_libs().display()));
        c
    }

    pub fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn spawn(&mut self) {
        let child = Self::java(&self.dir)
            .arg("kafka.Kafka")
            .arg(self.dir.join("server.properties"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("java runs");
        self.child = Some(child);
        assert!(
            wait_for_port(self.port, Duration::from_secs(60)),
            "private Kafka did not start on {} (controller {})",
            self.port,
            self.controller_port
        );
    }

    /// SIGTERM and wait: a controlled broker shutdown.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill").arg("-TERM").arg(c.id().to_string()).status();
            for _ in 0..300 {
                if c.try_wait().ok().flatten().is_some() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            kill9(&mut c);
        }
    }
}

impl Drop for PrivateKafka {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            kill9(&mut c);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
