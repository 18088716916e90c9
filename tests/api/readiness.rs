//! /healthz and /readyz against a Redis this test stops and starts itself.

use std::time::Duration;

use queuegate::config::Role;

use crate::helpers::{create_topics, poll_until, spawn_role, Names};
use crate::private_redis::PrivateRedis;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_turns_503_while_redis_is_down_and_200_when_it_is_back() {
    let mut redis = PrivateRedis::start();
    let names = Names::new();
    create_topics(&names, 1).await;
    let url = redis.url();
    let app = spawn_role(&names, Role::Run, |s| s.redis_url = url).await;
    let ready = |want: u16| {
        let (client, url) = (app.client.clone(), format!("{}/readyz", app.admin));
        move || {
            let (client, url) = (client.clone(), url.clone());
            async move { client.get(url).send().await.map(|r| r.status() == want).unwrap_or(false) }
        }
    };
    assert!(poll_until(Duration::from_secs(30), ready(200)).await, "ready with Redis up");
    assert_eq!(app.client.get(format!("{}/healthz", app.admin)).send().await.unwrap().status(), 200);

    redis.kill9();
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
