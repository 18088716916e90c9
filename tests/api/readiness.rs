//! /healthz and /readyz, and fans' status reads, against a Redis this test stops and starts itself.

use std::time::Duration;

use queuegate::config::Role;

use crate::helpers::{create_topics, poll_until, spawn_role, Names};
use crate::private_redis::PrivateRedis;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_and_status_reads_turn_503_while_redis_is_down_and_recover_when_it_is_back() {
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

    // A fan waiting, read many times at once so every HTTP worker has its own status connection.
    app.open_concert("r").await;
    let accepted: serde_json::Value = app.join("r", "fan").await.json().await.unwrap();
    let token = accepted["token"].as_str().unwrap().to_owned();
    let statuses = async || {
        let reads = (0..16).map(|_| app.status("r", "fan", &token));
        futures_util::future::join_all(reads).await.into_iter().map(|r| r.status().as_u16()).collect::<Vec<_>>()
    };
    let waiting = async || {
        let r: serde_json::Value = app.status("r", "fan", &token).await.json().await.unwrap();
        r["status"] == "waiting"
    };
    assert!(poll_until(Duration::from_secs(30), waiting).await, "the fan is queued");
    assert_eq!(statuses().await, vec![200; 16]);

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
    assert_eq!(statuses().await, vec![503; 16], "status reads answer 503 while Redis is down");

    redis.spawn();
    assert!(poll_until(Duration::from_secs(30), ready(200)).await, "ready again once Redis is back");
    // The status connections broken by the restart are replaced: every read succeeds again, and
    // the fan is still where it was (AOF).
    assert!(
        poll_until(Duration::from_secs(30), async || statuses().await == vec![200; 16]).await,
        "status reads recover"
    );
    assert!(waiting().await, "still waiting after the restart");
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
