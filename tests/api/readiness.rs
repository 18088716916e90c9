//! /healthz and /readyz, and fans' status reads, against a Redis this test stops and starts itself.

use std::time::Duration;

use queuegate::config::Role;

use crate::common::gate_proxies::nginx;
use crate::common::private_kafka::PrivateKafka;
use crate::common::private_redis::PrivateRedis;
use crate::common::TestApp;
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

/// The contract changed on purpose (issue 36): a gateway without Kafka still serves the gate,
/// status and rooms, so it stays in the load balancer (200) and says what it cannot do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_that_never_reaches_kafka_is_ready_and_degraded_and_its_joins_answer_503() {
    let names = Names::new();
    let app = spawn_role(&names, Role::Gateway, |s| {
        s.kafka.kafka_brokers = "127.0.0.1:1".into();
        s.kafka.kafka_delivery_timeout_ms = 2000;
    })
    .await;
    // Kafka is never reachable; Redis is (on a busy Redis Cluster a replica may be resyncing for
    // a moment, which readiness reports too, so the answer is awaited, not taken at once).
    let mut body = serde_json::Value::Null;
    let settled = poll_until(Duration::from_secs(15), async || {
        let r = app.client.get(format!("{}/readyz", app.admin)).send().await.unwrap();
        assert_eq!(r.status(), 200, "ready without Kafka: the gate and status need only Redis");
        body = r.json().await.unwrap();
        assert_eq!(body["kafka"], false, "{body}");
        assert_eq!(body["ready"], true, "{body}");
        body["degraded"] == serde_json::json!(["kafka"])
    })
    .await;
    assert!(settled, "degraded names kafka, and only kafka: {body}");
    assert_eq!(body["redis"], true, "{body}");

    // The gateway's concert cache learns the concert from Redis; a join cannot be made durable.
    app.open_concert("k").await;
    let mut last = 0;
    let refused = poll_until(Duration::from_secs(30), async || {
        let r = app.join("k", "fan").await;
        last = r.status().as_u16();
        if last != 503 {
            return false;
        }
        assert!(r.headers().get("retry-after").is_some(), "a 503 join says when to retry");
        true
    })
    .await;
    assert!(refused, "a join without Kafka answers 503 (last answer {last}, 404 while the concert cache loads)");
}

/// A gateway and a consumer on a private broker that stalls (SIGSTOP): a fan inside the booking
/// site keeps passing the gate through the real nginx, both instances stay ready with
/// `degraded: ["kafka"]`, a join answers 503 with Retry-After; after SIGCONT they recover.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_kafka_keeps_the_gate_and_readiness_up_and_turns_joins_to_503_until_it_is_back() {
    let kafka = PrivateKafka::start();
    let names = Names::on(kafka.brokers(), crate::common::redis_url());
    names.create_topics(1).await;
    let tweak = |s: &mut queuegate::config::Settings| {
        s.http.public_url = Some("https://queue.example".into());
        s.kafka.kafka_delivery_timeout_ms = 3000;
    };
    let gateway = spawn_role(&names, Role::Gateway, tweak).await;
    let consumer = spawn_role(&names, Role::Consumer, tweak).await;
    let readyz = async |app: &TestApp| -> (u16, serde_json::Value) {
        let r = app.client.get(format!("{}/readyz", app.admin)).send().await.unwrap();
        (r.status().as_u16(), r.json().await.unwrap())
    };
    for app in [&gateway, &consumer] {
        let mut seen = serde_json::Value::Null;
        let ok = poll_until(Duration::from_secs(60), async || {
            let (status, body) = readyz(app).await;
            seen = body;
            status == 200 && seen.get("degraded").is_none()
        })
        .await;
        assert!(ok, "ready and degraded in nothing before the stall: {seen}");
    }

    // Dana joins, is placed, admitted, and enters the booking site through nginx.
    let concert = "ks";
    assert_eq!(gateway.put_concert(concert, serde_json::json!({"state": "open"})).await.status(), 200);
    let joined =
        poll_until(Duration::from_secs(30), async || gateway.join(concert, "dana").await.status() == 202).await;
    assert!(joined, "dana's join is accepted (the gateway's concert cache may need a refresh first)");
    assert!(
        poll_until(Duration::from_secs(60), async || gateway.waiting_list(concert).await.iter().any(|u| u == "dana"))
            .await,
        "dana is placed by the consumer"
    );
    let admitted: serde_json::Value = gateway.admit(concert, 1).await.json().await.unwrap();
    let token = admitted["admitted"][0]["admissionToken"].as_str().expect("dana admitted").to_owned();
    let booking = crate::gate_proxies::start_booking();
    let proxy = nginx(gateway.http().trim_start_matches("http://"), booking, concert);
    let browser = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let (nonce, back) = crate::gate_proxies::sent_to_room(&proxy, "/book").await;
    let r = browser.get(format!("{back}&queuegate_token={token}")).header("Cookie", nonce).send().await.unwrap();
    assert_eq!(r.status(), 200, "the admission token is exchanged for a session");
    let cookie = r.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_owned();
    let page = async |path: &str| -> (u16, String) {
        let r = browser.get(format!("{}{path}", proxy.url)).header("Cookie", &cookie).send().await.unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    };
    assert_eq!(page("/cart").await, (200, "booking /cart for dana".to_owned()));

    kafka.signal("-STOP");
    for (name, app) in [("gateway", &gateway), ("consumer", &consumer)] {
        let mut seen = serde_json::Value::Null;
        let degraded = poll_until(Duration::from_secs(30), async || {
            let (status, body) = readyz(app).await;
            assert_eq!(status, 200, "the {name} stays ready while Kafka stalls: {body}");
            seen = body;
            seen["degraded"] == serde_json::json!(["kafka"])
        })
        .await;
        assert!(degraded, "the {name}'s /readyz names kafka as degraded: {seen}");
        assert_eq!((seen["kafka"].clone(), seen["redis"].clone()), (false.into(), true.into()), "{seen}");
    }
    // Inside the site, page after page, while the brokers stall.
    for path in ["/cart", "/pay", "/book?seat=3"] {
        let (status, body) = page(path).await;
        assert_eq!(status, 200, "{path} passes the gate while Kafka stalls: {body}");
        assert!(body.ends_with("for dana"), "{body}");
    }
    // A join cannot be made durable: 503 with Retry-After, never a 202.
    let r = gateway.join(concert, "erin").await;
    assert_eq!(r.status(), 503, "a join while Kafka stalls");
    assert!(r.headers().get("retry-after").is_some(), "the 503 says when to retry");
    let (status, body) = readyz(&gateway).await;
    assert_eq!((status, body["degraded"].clone()), (200, serde_json::json!(["kafka"])), "still degraded: {body}");

    kafka.signal("-CONT");
    for (name, app) in [("gateway", &gateway), ("consumer", &consumer)] {
        let mut seen = serde_json::Value::Null;
        let recovered = poll_until(Duration::from_secs(60), async || {
            let (status, body) = readyz(app).await;
            seen = body;
            status == 200 && seen.get("degraded").is_none() && seen["kafka"] == true
        })
        .await;
        assert!(recovered, "the {name} is no longer degraded once Kafka is back: {seen}");
    }
    let mut last = 0;
    let accepted = poll_until(Duration::from_secs(60), async || {
        last = gateway.join(concert, "erin").await.status().as_u16();
        last == 202
    })
    .await;
    assert!(accepted, "joins are accepted again once Kafka is back (last answer {last})");
    assert_eq!(page("/cart").await.0, 200, "dana is still inside");
    for app in [&gateway, &consumer] {
        assert!(readyz(app).await.1.get("failedTask").is_none(), "no task failed through the stall");
    }
    gateway.shutdown().await.expect("the gateway shuts down cleanly");
    consumer.shutdown().await.expect("the consumer shuts down cleanly");
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
