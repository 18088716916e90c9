//! Admission: manual and automatic, rate and concurrency modes, tokens, removal, abandonment.

use std::collections::HashSet;
use std::time::Duration;

use jsonwebtoken::{jwk::JwkSet, Algorithm, DecodingKey, Validation};
use queuegate::config::Role;
use serde_json::{json, Value};

use crate::helpers::{create_topics, poll_until, spawn_app, spawn_role, Names, TestApp, ADMIN_TOKEN};

#[derive(Debug, serde::Deserialize)]
struct Claims {
    sub: String,
    concert: String,
    iat: i64,
    exp: i64,
}

/// Verifies an admission token the way a booking site would: with the published JWKS only.
async fn verify_with_jwks(app: &TestApp, token: &str) -> Result<Claims, jsonwebtoken::errors::Error> {
    let jwks: JwkSet =
        app.client.get(format!("{}/.well-known/jwks.json", app.http())).send().await.unwrap().json().await.unwrap();
    let key = DecodingKey::from_jwk(&jwks.keys[0]).unwrap();
    let mut v = Validation::new(Algorithm::EdDSA);
    v.leeway = 0;
    v.set_issuer(&["queuegate"]);
    v.set_audience(&["booking"]);
    v.set_required_spec_claims(&["exp", "nbf", "sub", "iss", "aud"]);
    jsonwebtoken::decode::<Claims>(token, &key, &v).map(|d| d.claims)
}

/// The booking site's `complete` call, with `credential` as its bearer token.
async fn complete(app: &TestApp, concert: &str, credential: Option<&str>, admission: &str) -> reqwest::Response {
    let mut r = app
        .client
        .post(format!("{}/v1/concerts/{concert}/admission/complete", app.http()))
        .json(&json!({ "admissionToken": admission }));
    if let Some(c) = credential {
        r = r.bearer_auth(c);
    }
    r.send().await.unwrap()
}

/// Joins `n` fans one at a time (so queue order is join order) and returns their entry tokens.
async fn join_in_order(app: &TestApp, concert: &str, n: usize) -> Vec<String> {
    let mut tokens = Vec::new();
    for i in 0..n {
        let r: Value = app.join(concert, &format!("f{i}")).await.json().await.unwrap();
        tokens.push(r["token"].as_str().unwrap().to_owned());
        app.wait_for_records(i as u64 + 1).await;
    }
    tokens
}

async fn admit(app: &TestApp, concert: &str, count: u32) -> reqwest::Response {
    app.admit(concert, count).await
}

/// `POST /admin/v1/concerts/{concert}/admit` with `body`.
async fn admit_with(app: &TestApp, concert: &str, body: Value) -> reqwest::Response {
    app.client
        .post(format!("{}/admin/v1/concerts/{concert}/admit", app.admin))
        .bearer_auth(ADMIN_TOKEN)
        .json(&body)
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manual_admission_lets_the_head_through_with_tokens_that_verify_with_the_jwks() {
    let app = spawn_app().await;
    app.open_concert("c").await;
    let tokens = join_in_order(&app, "c", 5).await;

    let r = admit(&app, "c", 2).await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    let admitted = body["admitted"].as_array().unwrap();
    let users: Vec<&str> = admitted.iter().map(|a| a["userId"].as_str().unwrap()).collect();
    assert_eq!(users, vec!["f0", "f1"]);

    let token = admitted[0]["admissionToken"].as_str().unwrap();
    let claims = verify_with_jwks(&app, token).await.expect("verifies with the JWKS");
    assert_eq!((claims.sub.as_str(), claims.concert.as_str()), ("f0", "c"));
    assert_eq!(claims.exp - claims.iat, 600);

    // The fan sees the same token in its status; the rest moved up by two.
    let s: Value = app.status("c", "f0", &tokens[0]).await.json().await.unwrap();
    assert_eq!(s["status"], "admitted");
    assert_eq!(s["admissionToken"], token);
    let s: Value = app.status("c", "f2", &tokens[2]).await.json().await.unwrap();
    assert_eq!(
        (s["status"].as_str(), s["position"].as_u64(), s["queueLength"].as_u64()),
        (Some("waiting"), Some(1), Some(3))
    );
    let c = app.admin_json("/admin/v1/concerts/c").await;
    assert_eq!((c["waiting"].as_u64(), c["admitted"].as_u64(), c["active"].as_u64()), (Some(3), Some(2), Some(2)));

    // A re-join of an admitted fan does not queue it again.
    assert_eq!(app.join("c", "f0").await.status(), 202);
    app.wait_for_records(6).await;
    assert_eq!(app.admin_json("/admin/v1/concerts/c").await["waiting"], 3);

    // Tampered tokens fail.
    let mut bad = token.to_owned();
    let last = bad.pop().unwrap();
    bad.push(if last == 'A' { 'B' } else { 'A' });
    assert!(verify_with_jwks(&app, &bad).await.is_err());
    crate::helpers::assert_problem(admit(&app, "c", 0).await, 400, "count").await;
    crate::helpers::assert_problem(admit(&app, "nope", 1).await, 404, "nope").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admission_token_expires_and_the_fan_then_sees_expired() {
    let app = spawn_app().await;
    app.put_concert("c", json!({"state": "open", "tokenTtlSeconds": 1})).await;
    let tokens = join_in_order(&app, "c", 1).await;
    let body: Value = admit(&app, "c", 1).await.json().await.unwrap();
    let token = body["admitted"][0]["admissionToken"].as_str().unwrap().to_owned();
    assert!(verify_with_jwks(&app, &token).await.is_ok());
    let expired = poll_until(Duration::from_secs(10), async || {
        let s: Value = app.status("c", "f0", &tokens[0]).await.json().await.unwrap();
        s["status"] == "expired"
    })
    .await;
    assert!(expired);
    // JWT times are whole seconds and libraries accept the token through its `exp` second.
    let mut last = None;
    let rejected = poll_until(Duration::from_secs(3), async || {
        last = verify_with_jwks(&app, &token).await.err().map(|e| e.kind().clone());
        last.is_some()
    })
    .await;
    assert!(rejected);
    assert_eq!(last, Some(jsonwebtoken::errors::ErrorKind::ExpiredSignature));
    // The booking site cannot release a slot with an expired token either.
    crate::helpers::assert_problem(complete(&app, "c", Some(ADMIN_TOKEN), &token).await, 400, "expired").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_a_waiting_fan_moves_everyone_behind_up_by_one() {
    let app = spawn_app().await;
    app.open_concert("c").await;
    let tokens = join_in_order(&app, "c", 4).await;
    let r = app.admin_delete("/admin/v1/concerts/c/queue/f1").await;
    assert_eq!(r.status(), 204);
    let page = app.admin_json("/admin/v1/concerts/c/queue").await;
    let got: Vec<(u64, &str)> = page["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["position"].as_u64().unwrap(), e["userId"].as_str().unwrap()))
        .collect();
    assert_eq!(got, vec![(1, "f0"), (2, "f2"), (3, "f3")]);
    let s: Value = app.status("c", "f1", &tokens[1]).await.json().await.unwrap();
    assert_eq!(s["status"], "removed");
    let s: Value = app.status("c", "f3", &tokens[3]).await.json().await.unwrap();
    assert_eq!(s["position"], 3);
    let r = app.admin_delete("/admin/v1/concerts/c/queue/f1").await;
    crate::helpers::assert_problem(r, 404, "not waiting").await;
    assert_eq!(app.admin_json("/admin/v1/concerts/c").await["removed"], 1);

    // The removal leaves f1's entry in the waiting LIST (O(log n), no LREM); admission passes
    // over it: the next two admitted are f0 and f2, and f1 stays removed.
    let body: Value = admit(&app, "c", 2).await.json().await.unwrap();
    let users: Vec<&str> = body["admitted"].as_array().unwrap().iter().map(|a| a["userId"].as_str().unwrap()).collect();
    assert_eq!(users, vec!["f0", "f2"]);
    let s: Value = app.status("c", "f1", &tokens[1]).await.json().await.unwrap();
    assert_eq!(s["status"], "removed");
    // The gateway answers from its view of the queue, refreshed every view interval: the next
    // refresh shows f3 at the head.
    let mut s = Value::Null;
    let at_head = poll_until(Duration::from_secs(10), async || {
        s = app.status("c", "f3", &tokens[3]).await.json().await.unwrap();
        (s["status"].as_str(), s["position"].as_u64(), s["queueLength"].as_u64()) == (Some("waiting"), Some(1), Some(1))
    })
    .await;
    assert!(at_head, "f3 waiting at position 1 of 1 after f0 and f2 were admitted; its status: {s}");
    // A fan placed after the removal is counted from the fans left, not from the LIST's length.
    let r: Value = app.join("c", "f4").await.json().await.unwrap();
    app.wait_for_records(5).await;
    let placed = poll_until(Duration::from_secs(10), async || {
        s = app.status("c", "f4", r["token"].as_str().unwrap()).await.json().await.unwrap();
        (s["status"].as_str(), s["position"].as_u64()) == (Some("waiting"), Some(2))
    })
    .await;
    assert!(placed, "f4 waiting at position 2 behind f3; its status: {s}");
    let is_f4 = |r: &crate::common::events_topic::Record| {
        r.header("ce_type") == "dev.queuegate.fan.placed" && r.header("ce_subject") == "f4"
    };
    let records = crate::common::events_topic::read_events(
        &app.names.brokers,
        &app.names.events_topic(),
        Duration::from_secs(30),
        |rs| rs.iter().any(is_f4),
    )
    .await;
    let f4 = records.iter().find(|r| is_f4(r)).expect("f4's placed event on the events topic");
    let data: Value = serde_json::from_str(&f4.value).unwrap();
    assert_eq!(data["position"], 2, "{data}");
    let c = app.admin_json("/admin/v1/concerts/c").await;
    assert_eq!((c["waiting"].as_u64(), c["admitted"].as_u64(), c["removed"].as_u64()), (Some(2), Some(2), Some(1)));
    assert_eq!(app.waiting_list("c").await, vec!["f3", "f4"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrency_mode_keeps_active_within_max_active_as_tokens_expire_and_slots_refill() {
    let app = spawn_app().await;
    app.put_concert("c", json!({"state": "paused", "maxActive": 3, "tokenTtlSeconds": 1})).await;
    crate::helpers::assert_problem(app.join("c", "late").await, 409, "paused").await;
    app.put_concert("c", json!({"state": "open", "maxActive": 3, "tokenTtlSeconds": 1})).await;
    for i in 0..9 {
        assert_eq!(app.join("c", &format!("f{i}")).await.status(), 202);
    }
    let mut max_seen = 0;
    let drained = poll_until(Duration::from_secs(30), async || {
        let c = app.admin_json("/admin/v1/concerts/c").await;
        max_seen = max_seen.max(c["active"].as_u64().unwrap());
        c["admitted"] == 9
    })
    .await;
    assert!(drained, "all nine admitted as slots refilled");
    assert!(max_seen <= 3, "active peaked at {max_seen}");
    assert!(max_seen >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completing_an_admission_frees_its_slot_for_the_next_fan() {
    let app = spawn_app().await;
    app.put_concert("c", json!({"state": "open", "maxActive": 1, "tokenTtlSeconds": 600})).await;
    let tokens = join_in_order(&app, "c", 2).await;
    // The admitter lets f0 in and then nobody: one slot, held for ten minutes.
    let mut first = Value::Null;
    assert!(
        poll_until(Duration::from_secs(10), async || {
            first = app.status("c", "f0", &tokens[0]).await.json().await.unwrap();
            first["status"] == "admitted"
        })
        .await
    );
    app.admission_rounds(3).await;
    let s: Value = app.status("c", "f1", &tokens[1]).await.json().await.unwrap();
    assert_eq!(s["status"], "waiting", "the only slot is taken");
    let admission = first["admissionToken"].as_str().unwrap();
    // The fan itself cannot free its slot (and keep booking beyond maxActive): it has no site
    // credential, neither with its admission token nor without.
    crate::helpers::assert_problem(complete(&app, "c", Some(admission), admission).await, 401, "site").await;
    crate::helpers::assert_problem(complete(&app, "c", None, admission).await, 401, "site").await;
    let r = complete(&app, "other", Some(ADMIN_TOKEN), admission).await;
    crate::helpers::assert_problem(r, 400, "for concert c").await;
    assert_eq!(complete(&app, "c", Some(ADMIN_TOKEN), admission).await.status(), 204);
    assert_eq!(complete(&app, "c", Some(ADMIN_TOKEN), admission).await.status(), 204, "idempotent");
    // Recorded: the fan's status no longer hands out the token.
    let after: Value = app.status("c", "f0", &tokens[0]).await.json().await.unwrap();
    assert_eq!(after["status"], "completed");
    assert!(after.get("admissionToken").is_none(), "{after}");
    assert!(
        poll_until(Duration::from_secs(10), async || {
            let s: Value = app.status("c", "f1", &tokens[1]).await.json().await.unwrap();
            s["status"] == "admitted"
        })
        .await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fans_who_stopped_polling_are_skipped_and_see_expired() {
    let app = spawn_app().await;
    app.put_concert("c", json!({"state": "open", "abandonAfterSeconds": 1})).await;
    let tokens = join_in_order(&app, "c", 3).await;
    // f1 keeps polling; f0 and f2 went away.
    let deadline = tokio::time::Instant::now() + Duration::from_millis(2500);
    while tokio::time::Instant::now() < deadline {
        app.status("c", "f1", &tokens[1]).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let body: Value = admit(&app, "c", 1).await.json().await.unwrap();
    let users: Vec<&str> = body["admitted"].as_array().unwrap().iter().map(|a| a["userId"].as_str().unwrap()).collect();
    assert_eq!(users, vec!["f1"], "f0 was skipped as abandoned");
    let s: Value = app.status("c", "f0", &tokens[0]).await.json().await.unwrap();
    assert_eq!(s["status"], "expired");
    let c = app.admin_json("/admin/v1/concerts/c").await;
    assert_eq!((c["abandoned"].as_u64(), c["waiting"].as_u64()), (Some(1), Some(1)), "f2 is still waiting behind");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_admitters_hold_the_rate_and_admit_nobody_twice() {
    let names = Names::new();
    create_topics(&names, 3).await;
    let gateway = spawn_role(&names, Role::Gateway, |_| {}).await;
    gateway.open_concert("r").await;
    let fans: Vec<String> = (0..400).map(|i| format!("f{i:03}")).collect();
    for chunk in fans.chunks(50) {
        let joins = chunk.iter().map(|f| gateway.join("r", f));
        assert!(futures_util::future::join_all(joins).await.iter().all(|r| r.status() == 202));
    }
    let consumers = [
        spawn_role(&names, Role::Consumer, |_| {}).await,
        spawn_role(&names, Role::Consumer, |_| {}).await,
        spawn_role(&names, Role::Consumer, |_| {}).await,
    ];
    assert!(
        poll_until(Duration::from_secs(60), async || gateway.admin_json("/admin/v1/concerts/r").await["waiting"]
            == 400)
        .await
    );

    // 40 per second, with three instances competing for the lease every 200 ms.
    gateway.put_concert("r", json!({"state": "open", "admitPerSecond": 40})).await;
    let started = std::time::Instant::now();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let admitted = gateway.admin_json("/admin/v1/concerts/r").await["admitted"].as_u64().unwrap();
    let elapsed = started.elapsed().as_secs_f64();
    // The bucket allows at most one second's worth on top of the rate.
    assert!(admitted as f64 <= 40.0 * elapsed + 40.0, "{admitted} admitted in {elapsed:.1} s at 40/s");
    assert!(admitted as f64 >= 40.0 * (elapsed - 2.0), "{admitted} admitted in {elapsed:.1} s: admission runs");

    // Nobody twice: every admitted fan appears once in the state hash, and the counters agree.
    let states: Vec<(String, String)> =
        names.redis(redis::cmd("HGETALL").arg(names.key("r", queuegate::store::keys::Part::State))).await;
    let admitted_now = gateway.admin_json("/admin/v1/concerts/r").await["admitted"].as_u64().unwrap();
    let distinct: HashSet<&str> = states.iter().filter(|(_, s)| s.starts_with("a:")).map(|(u, _)| u.as_str()).collect();
    assert!(distinct.len() as u64 >= admitted, "states {} vs counter {admitted}", distinct.len());
    assert!(distinct.len() as u64 <= admitted_now);
    let page = gateway.admin_json("/admin/v1/concerts/r/queue?limit=1000").await;
    let waiting: HashSet<&str> =
        page["entries"].as_array().unwrap().iter().map(|e| e["userId"].as_str().unwrap()).collect();
    assert!(waiting.is_disjoint(&distinct), "an admitted fan is still waiting");
    drop(consumers);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paused_and_closed_concerts_stop_admission_and_keep_positions() {
    let app = spawn_app().await;
    app.open_concert("c").await;
    let tokens = join_in_order(&app, "c", 5).await;
    for state in ["paused", "closed"] {
        app.put_concert("c", json!({"state": state, "admitPerSecond": 100})).await;
        app.admission_rounds(4).await;
        let c = app.admin_json("/admin/v1/concerts/c").await;
        assert_eq!((c["admitted"].as_u64(), c["waiting"].as_u64()), (Some(0), Some(5)), "{state}: nobody admitted");
        crate::helpers::assert_problem(admit(&app, "c", 1).await, 409, state).await;
        let s: Value = app.status("c", "f4", &tokens[4]).await.json().await.unwrap();
        assert_eq!(s["position"], 5, "{state}: positions kept");
        assert_eq!(app.admin_json("/admin/v1/concerts/c/queue").await["total"], 5, "{state}: the queue stays readable");
    }
    // Reopened at 2 per second: admission resumes and waiting fans get an estimate.
    app.put_concert("c", json!({"state": "open", "admitPerSecond": 2})).await;
    let mut s = Value::Null;
    assert!(
        poll_until(Duration::from_secs(10), async || {
            s = app.status("c", "f4", &tokens[4]).await.json().await.unwrap();
            s["status"] == "waiting" && s["etaSeconds"].as_u64().is_some() && s["position"].as_u64() < Some(5)
        })
        .await,
        "status {s}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fan_who_polls_while_pending_through_consumer_lag_is_admitted_not_skipped_as_abandoned() {
    let names = Names::new();
    create_topics(&names, 1).await;
    // The gateway alone: joins wait in Kafka, as under consumer lag.
    let gateway = spawn_role(&names, Role::Gateway, |_| {}).await;
    // A window of 3 s: the fan's arrival, the test's wait for it and the admission below fit in
    // it on a loaded machine (with 1 s they did not, at a load of 21 on two cores).
    gateway.put_concert("c", json!({"state": "open", "abandonAfterSeconds": 3})).await;
    let joined: Value = gateway.join("c", "faithful").await.json().await.unwrap();
    let token = joined["token"].as_str().unwrap().to_owned();
    // Three times the abandonment window of lag, the fan polling faithfully all along.
    let until = tokio::time::Instant::now() + Duration::from_secs(9);
    while tokio::time::Instant::now() < until {
        let s: Value = gateway.status("c", "faithful", &token).await.json().await.unwrap();
        assert_eq!(s["status"], "pending");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The consumer catches up; admission runs as soon as the fan is in the queue.
    let consumer = spawn_role(&names, Role::Consumer, |_| {}).await;
    assert!(
        poll_until(Duration::from_secs(60), async || gateway
            .admin_get("/admin/v1/concerts/c/queue/faithful")
            .await
            .status()
            == 200)
        .await
    );
    let body: Value = admit(&gateway, "c", 1).await.json().await.unwrap();
    let users: Vec<&str> = body["admitted"].as_array().unwrap().iter().map(|a| a["userId"].as_str().unwrap()).collect();
    assert_eq!(users, ["faithful"], "abandonment counts from arrival, not from the join: {body}");
    consumer.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admit_retried_with_its_request_id_after_a_redis_pause_admits_nobody_twice() {
    let redis = crate::common::private_redis::PrivateRedis::start();
    let names = Names::on(crate::common::brokers(), redis.url());
    create_topics(&names, 1).await;
    let app = spawn_role(&names, Role::Run, |_| {}).await;
    app.open_concert("c").await;
    join_in_order(&app, "c", 6).await;

    // Redis stops taking writes for longer than any call may wait (3 s): the admission is queued
    // in Redis, the operator's call times out.
    let mut conn = redis::Client::open(redis.url()).unwrap().get_multiplexed_async_connection().await.unwrap();
    redis::cmd("CLIENT").arg("PAUSE").arg(4500).arg("WRITE").query_async::<()>(&mut conn).await.unwrap();
    let admit_once = async || admit_with(&app, "c", json!({"count": 2, "requestId": "op-1"})).await;
    let paused_at = tokio::time::Instant::now();
    let first = admit_once().await;
    assert_eq!(first.status(), 503, "the call could not learn its outcome in time");
    // Whether Redis carried the first call out after the pause or dropped it with its
    // connection, the operator's retry of the same request admits exactly once.
    tokio::time::sleep_until(paused_at + Duration::from_millis(5000)).await;
    let admitted_after_pause = app.admin_json("/admin/v1/concerts/c").await["admitted"].as_u64().unwrap();
    assert!(admitted_after_pause == 0 || admitted_after_pause == 2, "all or nothing: {admitted_after_pause}");
    let retried: Value = admit_once().await.json().await.unwrap();
    let again: Value = admit_once().await.json().await.unwrap();
    let users = |v: &Value| -> Vec<String> {
        v["admitted"].as_array().unwrap().iter().map(|a| a["userId"].as_str().unwrap().to_owned()).collect()
    };
    assert_eq!(users(&retried), ["f0", "f1"], "the retry returns the fans the first call admitted");
    assert_eq!(retried, again, "the same fans and the same tokens, every time");
    assert_eq!(app.admin_json("/admin/v1/concerts/c").await["admitted"], 2, "nobody admitted twice");
    // A new request id is a new admission.
    let next: Value = admit_with(&app, "c", json!({"count": 2, "requestId": "op-2"})).await.json().await.unwrap();
    assert_eq!(users(&next), ["f2", "f3"]);
}
