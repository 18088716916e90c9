//! The one test harness, shared by every test binary (`#[path]`-included as `common`): the test
//! environment, names private to one test, topics, the application spawned on port 0, polls
//! with deadlines, and private Redis and Kafka servers for tests that break them.
#![allow(dead_code)] // each test binary uses its own part of the harness

pub mod events_topic;
pub mod gate_proxies;
pub mod private_cluster;
pub mod private_kafka;
pub mod private_kafka_cluster;
pub mod private_redis;
pub mod tls;

use std::time::Duration;

use queuegate::config::{Role, Secret, Settings};
use queuegate::ids::ConcertId;
use queuegate::kafka::KafkaClients;
use queuegate::metrics::Metrics;
use queuegate::startup::Application;
use queuegate::store::keys::{Keys, Part};
use queuegate::store::QueueStore;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789";
pub const TOKEN_SECRET: &str = "test-token-secret-0123456789-0123456789";

/// Webhook receivers of the tests listen on loopback, which queuegate refuses unless
/// `QUEUEGATE_WEBHOOK_ALLOW_NETWORKS` lists it: the setting for a spawned process.
pub const LOOPBACK_WEBHOOKS: (&str, &str) = ("QUEUEGATE_WEBHOOK_ALLOW_NETWORKS", "127.0.0.0/8");

/// The same for an in-process application's settings.
pub fn allow_loopback_webhooks(s: &mut Settings) {
    s.events.webhook_allow_networks =
        queuegate::events::egress::parse_networks(LOOPBACK_WEBHOOKS.1).expect("a literal network");
}

/// Brokers of the test environment (the Makefile's default unless overridden).
pub fn brokers() -> String {
    std::env::var("QUEUEGATE_KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".into())
}

/// Redis of the test environment (the Makefile's default unless overridden).
pub fn redis_url() -> String {
    std::env::var("QUEUEGATE_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// Names private to one test: topic, consumer group and Redis key prefix, plus the Kafka and
/// Redis it talks to.
#[derive(Clone, Debug)]
pub struct Names {
    pub topic: String,
    pub group: String,
    pub prefix: String,
    pub brokers: String,
    pub redis_url: String,
}

impl Names {
    /// Fresh names on the shared services.
    pub fn new() -> Self {
        Self::on(brokers(), redis_url())
    }

    /// Fresh names on the given Kafka and Redis.
    pub fn on(brokers: String, redis_url: String) -> Self {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let name = format!("qgtest-{id}");
        Names { topic: name.clone(), group: name.clone(), prefix: name, brokers, redis_url }
    }

    /// Settings for an in-process application with these names.
    pub fn settings(&self) -> Settings {
        let mut s = Settings::for_test(&self.topic, &self.group, &self.prefix);
        s.kafka.kafka_brokers = self.brokers.clone();
        s.redis.redis_url = self.redis_url.clone();
        s.security.admin_token = Some(Secret::new(ADMIN_TOKEN));
        s
    }

    /// The environment of a `queuegate` process with these names (for spawned binaries).
    /// Webhooks to loopback receivers need [`LOOPBACK_WEBHOOKS`] besides.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("QUEUEGATE_KAFKA_BROKERS", self.brokers.clone()),
            ("QUEUEGATE_KAFKA_TOPIC", self.topic.clone()),
            ("QUEUEGATE_KAFKA_GROUP", self.group.clone()),
            ("QUEUEGATE_EVENTS_TOPIC", self.events_topic()),
            ("QUEUEGATE_REDIS_URL", self.redis_url.clone()),
            ("QUEUEGATE_REDIS_PREFIX", self.prefix.clone()),
            ("QUEUEGATE_ADMIN_TOKEN", ADMIN_TOKEN.into()),
            ("QUEUEGATE_TOKEN_SECRET", TOKEN_SECRET.into()),
            ("QUEUEGATE_HTTP_ADDR", "127.0.0.1:0".into()),
            ("QUEUEGATE_ADMIN_ADDR", "127.0.0.1:0".into()),
            ("QUEUEGATE_SHUTDOWN_GRACE_SECONDS", "5".into()),
            ("QUEUEGATE_ADMISSION_KEY_FILE", admission_key_file()),
        ]
    }

    /// A store on these names' Redis and prefix.
    pub fn store(&self) -> QueueStore {
        let mut redis = self.settings().redis;
        redis.redis_pool = 4;
        QueueStore::new(&redis).expect("store")
    }

    /// Runs one raw command on these names' Redis, a single server or a cluster (routed by the
    /// command's key), for tests that look under the store or break it on purpose.
    pub async fn redis<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> T {
        redis_query(&self.redis_url, cmd).await
    }

    /// The Redis key of `part` of `concert` under these names' prefix.
    pub fn key(&self, concert: &str, part: Part) -> String {
        Keys::new(&self.prefix).concert(&ConcertId::parse(concert).expect("a valid concert id"), part)
    }

    /// A key of one of a concert's lanes (the concert's own for the parts its lanes share).
    pub fn lane_key(&self, concert: &str, lane: &str, part: Part) -> String {
        let c = ConcertId::parse(concert).expect("a valid concert id");
        Keys::new(&self.prefix).lane(&c, &queuegate::ids::Lane::parse(lane).expect("a valid lane"), part)
    }

    /// The events topic of these names.
    pub fn events_topic(&self) -> String {
        format!("{}.events", self.topic)
    }

    /// Creates the entry topic (with `partitions`), its dead-letter topic, its parked-joins
    /// topic and the events topic (with `partitions`).
    pub async fn create_topics(&self, partitions: i32) {
        let kafka = KafkaClients::new(&self.settings().kafka, Metrics::new());
        let admin: AdminClient<DefaultClientContext> = kafka.admin().create().expect("admin client");
        let dlt = format!("{}.dlt", self.topic);
        let parked = format!("{}.parked", self.topic);
        let events = self.events_topic();
        // On a cluster (several brokers listed), as in production: three copies, two in sync.
        let replicas = self.brokers.split(',').count().min(3) as i32;
        let isr = if replicas >= 3 { "2" } else { "1" };
        let topics = [
            NewTopic::new(&self.topic, partitions, TopicReplication::Fixed(replicas)).set("min.insync.replicas", isr),
            NewTopic::new(&dlt, 1, TopicReplication::Fixed(replicas)).set("min.insync.replicas", isr),
            NewTopic::new(&parked, 1, TopicReplication::Fixed(replicas)).set("min.insync.replicas", isr),
            NewTopic::new(&events, partitions, TopicReplication::Fixed(replicas)).set("min.insync.replicas", isr),
        ];
        for r in admin.create_topics(&topics, &AdminOptions::new()).await.expect("create topics") {
            r.expect("topic created");
        }
    }
}

/// A raw connection to a single Redis or to a Redis Cluster (commands routed by their key),
/// for tests that look under the store or break it on purpose.
pub enum RawRedis {
    Single(redis::aio::MultiplexedConnection),
    Cluster(redis::cluster_async::ClusterConnection),
}

impl RawRedis {
    /// Connects to `url` (`redis+cluster://` seeds: the cluster), each reply within `timeout`.
    pub async fn connect(url: &str, timeout: Duration) -> redis::RedisResult<Self> {
        Ok(match queuegate::config::sections::cluster_nodes(url) {
            Some(nodes) => RawRedis::Cluster(
                redis::cluster::ClusterClientBuilder::new(nodes)
                    .response_timeout(timeout)
                    .build()?
                    .get_async_connection()
                    .await?,
            ),
            None => {
                let cfg = redis::AsyncConnectionConfig::new().set_response_timeout(Some(timeout));
                RawRedis::Single(redis::Client::open(url)?.get_multiplexed_async_connection_with_config(&cfg).await?)
            }
        })
    }

    pub async fn query<T: redis::FromRedisValue>(&mut self, cmd: &redis::Cmd) -> redis::RedisResult<T> {
        match self {
            RawRedis::Single(c) => cmd.query_async(c).await,
            RawRedis::Cluster(c) => cmd.query_async(c).await,
        }
    }
}

/// One raw command on the Redis at `url` (see [`RawRedis`]).
pub async fn redis_query<T: redis::FromRedisValue>(url: &str, cmd: &redis::Cmd) -> T {
    let mut c = RawRedis::connect(url, Duration::from_secs(10)).await.expect("redis connection");
    c.query(cmd).await.expect("redis command")
}

/// Creates `names`' topics (kept for the tests' vocabulary: `create_topics(&names, n)`).
pub async fn create_topics(names: &Names, partitions: i32) {
    names.create_topics(partitions).await
}

/// A PKCS#8 PEM Ed25519 key file for spawned processes (written once per test binary).
pub fn admission_key_file() -> String {
    use ed25519_dalek::pkcs8::{spki::der::pem::LineEnding, EncodePrivateKey};
    static PATH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    PATH.get_or_init(|| {
        let path = std::env::temp_dir().join(format!("qgtest-admission-{}.pem", std::process::id()));
        let pem = ed25519_dalek::SigningKey::from_bytes(&[7u8; 32]).to_pkcs8_pem(LineEnding::LF).expect("encodes");
        std::fs::write(&path, pem.as_bytes()).expect("key file written");
        path.display().to_string()
    })
    .clone()
}

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Sends `signal` (`-9`, `-STOP`, `-CONT`) to process `pid`.
pub fn signal(pid: u32, signal: &str) {
    let sent = std::process::Command::new("kill").args([signal, &pid.to_string()]).status().expect("kill runs");
    assert!(sent.success(), "kill {signal} {pid}");
}

/// Whether something accepts connections on 127.0.0.1:`port` within `timeout`.
pub fn wait_for_port(port: u16, timeout: Duration) -> bool {
    let until = std::time::Instant::now() + timeout;
    loop {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return true;
        }
        if std::time::Instant::now() >= until {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Polls `f` every 50 ms until it is true or `deadline` passes; returns whether it became true.
pub async fn poll_until(deadline: Duration, mut f: impl AsyncFnMut() -> bool) -> bool {
    let until = tokio::time::Instant::now() + deadline;
    loop {
        if f().await {
            return true;
        }
        if tokio::time::Instant::now() >= until {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn init_logs() {
    if std::env::var("TEST_LOG").is_ok() {
        let mut s = Settings::for_test("t", "g", "p").telemetry;
        s.log = "info,queuegate=debug".into();
        s.log_format = queuegate::config::LogFormat::Pretty;
        let _ = queuegate::telemetry::init(&s);
    }
}

/// A running application and what a test needs to talk to it.
pub struct TestApp {
    pub names: Names,
    pub http: Option<String>,
    pub admin: String,
    pub client: reqwest::Client,
    pub store: QueueStore,
    stop: CancellationToken,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

/// The full app (`queuegate run`) on fresh topics.
pub async fn spawn_app() -> TestApp {
    let names = Names::new();
    names.create_topics(6).await;
    spawn_role(&names, Role::Run, |_| {}).await
}

/// One role of the app with the given names and settings changes.
pub async fn spawn_role(names: &Names, role: Role, tweak: impl FnOnce(&mut Settings)) -> TestApp {
    spawn_with(names, role, tweak, |_| {}).await
}

/// The same, with `before_run` given the built application (to add supervised work) first.
pub async fn spawn_with(
    names: &Names,
    role: Role,
    tweak: impl FnOnce(&mut Settings),
    before_run: impl FnOnce(&mut Application),
) -> TestApp {
    init_logs();
    let mut settings = names.settings();
    tweak(&mut settings);
    let mut app = Application::build(settings, role).await.expect("app builds");
    before_run(&mut app);
    let http = app.http_port().map(|p| format!("http://127.0.0.1:{p}"));
    let admin = format!("http://127.0.0.1:{}", app.admin_port());
    let stop = app.stop_token();
    let task = tokio::spawn(app.run());
    TestApp {
        names: names.clone(),
        http,
        admin,
        // Idle connections are dropped before actix's 5 s keep-alive closes them: a request sent
        // on a connection the server is closing fails with IncompleteMessage (seen after a test's
        // Redis pause left the pool idle for longer than that).
        client: reqwest::Client::builder()
            .pool_max_idle_per_host(512)
            .pool_idle_timeout(Duration::from_secs(3))
            .build()
            .expect("client"),
        store: names.store(),
        stop,
        task: Some(task),
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl TestApp {
    pub fn http(&self) -> &str {
        self.http.as_deref().expect("this role serves the public listener")
    }

    /// Graceful shutdown; returns what `run` returned.
    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        self.stop.cancel();
        self.finished().await
    }

    /// Waits for `run` to return by itself (a failed task shuts the app down); what it returned.
    pub async fn finished(&mut self) -> anyhow::Result<()> {
        self.task.take().expect("running").await.expect("app task")
    }

    pub async fn put_concert(&self, id: &str, body: Value) -> reqwest::Response {
        self.client
            .put(format!("{}/admin/v1/concerts/{id}", self.admin))
            .bearer_auth(ADMIN_TOKEN)
            .json(&body)
            .send()
            .await
            .expect("admin PUT")
    }

    pub async fn open_concert(&self, id: &str) {
        let r = self.put_concert(id, serde_json::json!({"state": "open"})).await;
        assert_eq!(r.status(), 200, "opening concert {id}");
    }

    pub async fn join(&self, concert: &str, user: &str) -> reqwest::Response {
        self.client
            .post(format!("{}/v1/concerts/{concert}/queue", self.http()))
            .json(&serde_json::json!({ "userId": user }))
            .send()
            .await
            .expect("join request")
    }

    /// `POST /admin/v1/concerts/{concert}/admit` `{"count": count}`.
    pub async fn admit(&self, concert: &str, count: u32) -> reqwest::Response {
        self.client
            .post(format!("{}/admin/v1/concerts/{concert}/admit", self.admin))
            .bearer_auth(ADMIN_TOKEN)
            .json(&serde_json::json!({ "count": count }))
            .send()
            .await
            .expect("admit request")
    }

    /// The concert's fairness document (`GET /v1/concerts/{concert}/fairness`).
    pub async fn fairness(&self, concert: &str) -> serde_json::Value {
        let r = self.client.get(format!("{}/v1/concerts/{concert}/fairness", self.http())).send().await;
        r.expect("fairness request").json().await.expect("fairness json")
    }

    pub async fn admin_get(&self, path: &str) -> reqwest::Response {
        self.client.get(format!("{}{path}", self.admin)).bearer_auth(ADMIN_TOKEN).send().await.expect("admin GET")
    }

    pub async fn admin_delete(&self, path: &str) -> reqwest::Response {
        self.client.delete(format!("{}{path}", self.admin)).bearer_auth(ADMIN_TOKEN).send().await.expect("admin DELETE")
    }

    pub async fn admin_json(&self, path: &str) -> Value {
        let r = self.admin_get(path).await;
        assert_eq!(r.status(), 200, "GET {path}");
        r.json().await.expect("json")
    }

    pub async fn status(&self, concert: &str, user: &str, token: &str) -> reqwest::Response {
        self.client
            .get(format!("{}/v1/concerts/{concert}/queue/{user}", self.http()))
            .bearer_auth(token)
            .send()
            .await
            .expect("status request")
    }

    /// The raw waiting LIST of `concert`, head first.
    pub async fn waiting_list(&self, concert: &str) -> Vec<String> {
        let c = ConcertId::parse(concert).expect("a valid concert id");
        self.store.waiting_list(&c).await.expect("waiting list")
    }

    /// A counter or gauge of this app's /metrics (summed over `labels`-matching series).
    pub async fn metric(&self, name_and_labels: &str) -> u64 {
        let text = self.client.get(format!("{}/metrics", self.admin)).send().await.expect("metrics").text().await;
        metric_value(&text.expect("text"), name_and_labels)
    }

    /// Waits until this app's admitter has finished `n` more rounds (a check that nobody was
    /// admitted means something only after rounds ran). Panics after 30 s.
    pub async fn admission_rounds(&self, n: u64) {
        let start = self.metric("queuegate_admission_rounds_total").await;
        let mut now = start;
        let ran = poll_until(Duration::from_secs(30), async || {
            now = self.metric("queuegate_admission_rounds_total").await;
            now >= start + n
        })
        .await;
        assert!(ran, "{} of {n} admission rounds ran in 30 s", now - start);
    }

    /// Sum of `queuegate_consumer_records_total` for one outcome, from this app's /metrics.
    pub async fn consumer_records(&self, outcome: &str) -> u64 {
        self.metric(&format!("queuegate_consumer_records_total{{outcome=\"{outcome}\"}}")).await
    }

    /// Waits until the consumer has handled `n` records (appended, duplicate or dead-lettered)
    /// and this process has placed every fan it appended (once the watermark passed them).
    pub async fn wait_for_records(&self, n: u64) {
        let (mut handled, mut appended, mut placed) = (0, 0, 0);
        let done = poll_until(Duration::from_secs(60), async || {
            appended = self.consumer_records("appended").await;
            handled =
                appended + self.consumer_records("duplicate").await + self.consumer_records("dead_lettered").await;
            placed = self.metric("queuegate_order_placed_total").await;
            handled >= n && placed >= appended
        })
        .await;
        assert!(done, "consumer handled {handled} of {n} records, {placed} of {appended} placed, within 60 s");
    }
}

/// One HTTP/1.1 request written byte for byte (no client normalises its path or headers):
/// `raw_http("http://127.0.0.1:8081", "GET /%61dmin/v1/concerts HTTP/1.1\r\n…\r\n\r\n")`.
/// Returns the status and the body; the connection is closed after the answer.
pub async fn raw_http(base: &str, request: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = base.trim_start_matches("http://");
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    s.write_all(request.as_bytes()).await.expect("write");
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out)).await;
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or_else(|| panic!("no status in {text:?}"));
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    (status, body)
}

/// The value of the series `name_and_labels` (`name{a="b"}`, labels as the exposition writes
/// them) in a Prometheus text exposition. The series must be there exactly once: queuegate
/// registers every label value it uses at start, so an absent series is a misspelt name or
/// label, which would otherwise read as 0 and let a test pass that checks nothing.
pub fn metric_value(exposition: &str, name_and_labels: &str) -> u64 {
    let prefix = format!("{name_and_labels} ");
    let values: Vec<u64> = exposition
        .lines()
        .filter_map(|l| l.strip_prefix(&prefix))
        .map(|v| v.trim().parse::<f64>().expect("a number") as u64)
        .collect();
    match values[..] {
        [v] => v,
        [] => panic!("no series {name_and_labels} in the exposition"),
        _ => panic!("{name_and_labels} has {} lines", values.len()),
    }
}
