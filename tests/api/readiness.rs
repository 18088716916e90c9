//! /healthz and /readyz against a Redis this test stops and starts itself.

use std::net::TcpListener;
use std::process::{Child, Command as Proc, Stdio};
use std::time::Duration;

use queuegate::config::Role;

use crate::helpers::{create_topics, poll_until, spawn_role, Names};

/// A private redis-server on a free loopback port, killed on drop.
struct PrivateRedis {
    port: u16,
    dir: std::path::PathBuf,
    child: Option<Child>,
}

impl PrivateRedis {
    fn start() -> Self {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let dir = std::env::temp_dir().join(format!("qgtest-redis-{port}"));
        std::fs::create_dir_all(&dir).unwrap();
        let mut r = PrivateRedis { port, dir, child: None };
        r.spawn();
        r
    }

    fn spawn(&mut self) {
        let child = Proc::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &self.port.to_string(), "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is installed (make services installs it)");
        self.child = Some(child);
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_turns_503_while_redis_is_down_and_200_when_it_is_back() {
    let mut redis = PrivateRedis::start();
    let names = Names::new();
    create_topics(&names, 1).await;
    let port = redis.port;
    let app = spawn_role(&names, Role::Run, |s| s.redis_url = format!("redis://127.0.0.1:{port}")).await;
    let ready = |want: u16| {
        let (client, url) = (app.client.clone(), format!("{}/readyz", app.admin));
        move || {
            let (client, url) = (client.clone(), url.clone());
            async move { client.get(url).send().await.map(|r| r.status() == want).unwrap_or(false) }
        }
    };
    assert!(poll_until(Duration::from_secs(30), ready(200)).await, "ready with Redis up");
    assert_eq!(app.client.get(format!("{}/healthz", app.admin)).send().await.unwrap().status(), 200);

    redis.kill();
    assert!(poll_until(Duration::from_secs(30), ready(503)).await, "not ready with Redis down");
    let body: serde_json::Value =
        app.client.get(format!("{}/readyz", app.admin)).send().await.unwrap().json().await.unwrap();
    assert_eq!(body["redis"], false);
    assert_eq!(body["kafka"], true);
    assert_eq!(
        app.client.get(format!("{}/healthz", app.admin)).send().await.unwrap().status(),
        200,
        "alive all the same"
    );

    redis.spawn();
    assert!(poll_until(Duration::from_secs(30), ready(200)).await, "ready again once Redis is back");
    app.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_is_503_when_kafka_is_unreachable() {
    let names = Names::new();
    let app = spawn_role(&names, Role::Gateway, |s| s.kafka_brokers = "127.0.0.1:1".into()).await;
    let r = app.client.get(format!("{}/readyz", app.admin)).send().await.unwrap();
    assert_eq!(r.status(), 503);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["kafka"], false);
    assert_eq!(body["redis"], true);
}
