//! /healthz and /readyz, and fans' status reads, against a Redis this test stops and starts itself.

use std::time::Duration;

use queuegate::config::Role;

use crate::common::private_redis::PrivateRedis;
use crate::helpers::{create_topics, poll_until, spawn_role, spawn_with, Names};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_and_status_reads_turn_503_while_redis_is_down_and_recover_when_it_is_back() {
    let mut redis = PrivateRedis::start();
    let names = Names::new();
    create_topics(&names, 1).await;
    let url = redis.url();
    let app = spawn_role(&names, Role::Run, |s| s.redis.redis_url = url).await;
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
    // The gateway's view may answer a poll for up to two refreshes after its last good read;
    // after that every status read needs Redis, and answers 503.
    let mut last = Vec::new();
    let unavailable = poll_until(Duration::from_secs(5), async || {
        last = statuses().await;
        last == vec![503; 16]
    })
    .await;
    assert!(unavailable, "status reads answer 503 while Redis is down: {last:?}");

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
    let app = spawn_role(&names, Role::Gateway, |s| s.kafka.kafka_brokers = "127.0.0.1:1".into()).await;
    // Kafka is never reachable; Redis is (on a busy Redis Cluster a replica may be resyncing for
    // a moment, which readiness reports too, so the answer is awaited, not taken at once).
    let mut body = serde_json::Value::Null;
    let settled = poll_until(Duration::from_secs(15), async || {
        let r = app.client.get(format!("{}/readyz", app.admin)).send().await.unwrap();
        assert_eq!(r.status(), 503, "never ready without Kafka");
        body = r.json().await.unwrap();
        assert_eq!(body["kafka"], false, "{body}");
        body["redis"] == true
    })
    .await;
    assert!(settled, "Redis reachable: {body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_background_task_turns_readyz_503_naming_it_and_stops_the_process_with_an_error() {
    let names = Names::new();
    create_topics(&names, 1).await;
    let (fire, fired) = tokio::sync::oneshot::channel::<()>();
    let mut app = spawn_with(
        &names,
        Role::Run,
        |_| {},
        |app| {
            // A task that fails on cue, and one that takes a while to stop (as a consumer finishing
            // its batch would), so the shutdown is long enough to be seen from outside.
            app.spawn_supervised("doomed", async move {
                let _ = fired.await;
                Err(anyhow::anyhow!("its connection was lost").context("the doomed task gave up"))
            });
            let stop = app.stop_token();
            app.spawn_supervised("slow to stop", async move {
                stop.cancelled().await;
                tokio::time::sleep(Duration::from_secs(2)).await;
                Ok(())
            });
        },
    )
    .await;
    let readyz = async || -> (u16, serde_json::Value) {
        let r = app.client.get(format!("{}/readyz", app.admin)).send().await.unwrap();
        (r.status().as_u16(), r.json().await.unwrap())
    };
    assert!(poll_until(Duration::from_secs(30), async || readyz().await.0 == 200).await, "ready before the failure");
    assert!(readyz().await.1.get("failedTask").is_none());

    fire.send(()).unwrap();
    let mut seen = serde_json::Value::Null;
    assert!(
        poll_until(Duration::from_secs(10), async || {
            let (status, body) = readyz().await;
            seen = body;
            status == 503 && seen["failedTask"]["task"] == "doomed"
        })
        .await,
        "readyz names the failed task: {seen}"
    );
    assert_eq!(seen["failedTask"]["cause"], "the doomed task gave up: its connection was lost");
    assert_eq!(seen["ready"], false);

    let ended = tokio::time::timeout(Duration::from_secs(30), app.finished()).await.expect("the process stops");
    let err = ended.expect_err("the process ends with an error");
    assert!(err.to_string().contains("the doomed task failed"), "{err:#}");
    assert!(app.client.get(format!("{}/healthz", app.admin)).send().await.is_err(), "the listeners are closed");
}
