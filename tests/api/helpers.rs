//! Spawning the app for a test, and the polls tests wait with.

use std::time::Duration;

use queuegate::config::{Role, Settings};
use queuegate::startup::Application;
use queuegate::store::QueueStore;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::ClientConfig;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789";

/// Brokers and Redis of the test environment (the Makefile's defaults unless overridden).
pub fn brokers() -> String {
    std::env::var("QUEUEGATE_KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".into())
}

pub fn redis_url() -> String {
    std::env::var("QUEUEGATE_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// Names private to one test: topic, consumer group and Redis key prefix.
#[derive(Clone, Debug)]
pub struct Names {
    pub topic: String,
    pub group: String,
    pub prefix: String,
}

impl Names {
    pub fn new() -> Self {
        let id = uuid::Uuid::new_v4().simple().to_string();
        Names { topic: format!("qgtest-{id}"), group: format!("qgtest-{id}"), prefix: format!("qgtest-{id}") }
    }

    pub fn settings(&self) -> Settings {
        let mut s = Settings::for_test(&self.topic, &self.group, &self.prefix);
        s.kafka_brokers = brokers();
        s.redis_url = redis_url();
        s
    }
}

/// Creates the entry topic (with `partitions`) and its dead-letter topic.
pub async fn create_topics(names: &Names, partitions: i32) {
    let admin: AdminClient<DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", brokers()).create().expect("admin client");
    let dlt = format!("{}.dlt", names.topic);
    let topics = [
        NewTopic::new(&names.topic, partitions, TopicReplication::Fixed(1)),
        NewTopic::new(&dlt, 1, TopicReplication::Fixed(1)),
    ];
    let results = admin.create_topics(&topics, &AdminOptions::new()).await.expect("create topics");
    for r in results {
        r.expect("topic created");
    }
}

fn init_logs() {
    if std::env::var("TEST_LOG").is_ok() {
        let _ = queuegate::telemetry::init("info,queuegate=debug", queuegate::config::LogFormat::Pretty);
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
    create_topics(&names, 6).await;
    spawn_role(&names, Role::Run, |_| {}).await
}

/// One role of the app with the given names and settings changes.
pub async fn spawn_role(names: &Names, role: Role, tweak: impl FnOnce(&mut Settings)) -> TestApp {
    init_logs();
    let mut settings = names.settings();
    tweak(&mut settings);
    let store = QueueStore::new(&settings.redis_url, &settings.redis_prefix, 4).expect("store");
    let app = Application::build(settings, role).await.expect("app builds");
    let http = app.http_port().map(|p| format!("http://127.0.0.1:{p}"));
    let admin = format!("http://127.0.0.1:{}", app.admin_port());
    let stop = app.stop_token();
    let task = tokio::spawn(app.run());
    TestApp {
        names: names.clone(),
        http,
        admin,
        client: reqwest::Client::builder().pool_max_idle_per_host(64).build().expect("client"),
        store,
        stop,
        task: Some(task),
    }
}

impl TestApp {
    pub fn http(&self) -> &str {
        self.http.as_deref().expect("this role serves the public listener")
    }

    /// Graceful shutdown; returns what `run` returned.
    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        self.stop.cancel();
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

    /// Sum of `queuegate_consumer_records_total` for one outcome, from this app's /metrics.
    pub async fn consumer_records(&self, outcome: &str) -> u64 {
        let text = self
            .client
            .get(format!("{}/metrics", self.admin))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text");
        let prefix = format!("queuegate_consumer_records_total{{outcome=\"{outcome}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .map(|v| v.trim().parse::<u64>().expect("integer"))
            .unwrap_or(0)
    }

    /// Waits until the consumer has handled `n` records (appended, duplicate or dead-lettered).
    pub async fn wait_for_records(&self, n: u64) {
        let mut handled = 0;
        let done = poll_until(Duration::from_secs(60), async || {
            handled = self.consumer_records("appended").await
                + self.consumer_records("duplicate").await
                + self.consumer_records("dead_lettered").await;
            handled >= n
        })
        .await;
        assert!(done, "consumer handled {handled} of {n} records within 60 s");
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

/// Asserts a problem-details response with `status`, and that its detail contains `detail_has`.
pub async fn assert_problem(r: reqwest::Response, status: u16, detail_has: &str) -> Value {
    assert_eq!(r.status(), status, "status of {}", r.url());
    let ct = r.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    assert_eq!(ct, "application/problem+json", "content type");
    let body: Value = r.json().await.expect("problem body is JSON");
    assert_eq!(body["status"], status);
    assert!(body["type"].as_str().is_some_and(|t| t.starts_with("urn:queuegate:problem:")), "type: {body}");
    assert!(body["title"].as_str().is_some_and(|t| !t.is_empty()), "title: {body}");
    let detail = body["detail"].as_str().expect("detail");
    assert!(detail.contains(detail_has), "detail {detail:?} should mention {detail_has:?}");
    body
}
