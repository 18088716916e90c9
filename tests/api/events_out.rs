//! Events out: every change on the events topic as a CloudEvent, webhooks by the Standard
//! Webhooks specification, and the sale's report — read back and verified with the
//! specifications' own libraries (PyPI `cloudevents` and `standardwebhooks`, run by
//! tests/fixtures/events_check.py), not with our code.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Write;
use std::time::Duration;

use queuegate::config::Role;
use serde_json::{json, Value};

use crate::common::events_topic::{distinct_ids, read_events, Behaviour, Receiver};
use crate::common::{free_port, poll_until, spawn_role, Names, TestApp, ADMIN_TOKEN};

/// Runs tests/fixtures/events_check.py in `mode` over `lines`: what the libraries read.
fn check_with_libraries(mode: &str, lines: &[Value]) -> Vec<Value> {
    let root = env!("CARGO_MANIFEST_DIR");
    let mut child = std::process::Command::new(format!("{root}/.local/venv/bin/python"))
        .arg(format!("{root}/tests/fixtures/events_check.py"))
        .arg(mode)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python from .local/venv (scripts/services.sh tools installs it)");
    {
        let mut stdin = child.stdin.take().unwrap();
        for l in lines {
            writeln!(stdin, "{l}").unwrap();
        }
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "the {mode} libraries refused: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

async fn admission_tokens(app: &TestApp, concert: &str, count: u32) -> Vec<(String, String)> {
    let r = app.admit(concert, count).await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    body["admitted"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["userId"].as_str().unwrap().to_owned(), a["admissionToken"].as_str().unwrap().to_owned()))
        .collect()
}

/// The event's time (ms) as the CloudEvents SDK read it.
fn time_ms(event: &Value) -> i64 {
    queuegate::clock::parse_rfc3339(event["time"].as_str().unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sales_changes_are_cloudevents_the_sdk_reads_and_webhooks_the_standard_library_verifies() {
    let names = Names::new();
    names.create_topics(3).await;
    let app = spawn_role(&names, Role::Run, |s| s.http.public_url = Some("https://queue.example".into())).await;
    let hook = Receiver::start(Behaviour::Ok).await;
    let body = json!({"state": "open", "redirectUrl": "https://shop.example/", "webhooks": [{"url": hook.url}]});
    let r = app.put_concert("c", body).await;
    assert_eq!(r.status(), 200);
    let created: Value = r.json().await.unwrap();
    let secret = created["webhooks"][0]["secret"].as_str().unwrap().to_owned();
    let webhook_id = created["webhooks"][0]["id"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("whsec_") && secret.len() > 40, "the whole secret, once: {secret}");
    let shown = app.admin_json("/admin/v1/concerts/c").await;
    assert_eq!(shown["webhooks"][0]["id"], webhook_id.as_str());
    let masked = shown["webhooks"][0]["secret"].as_str().unwrap();
    assert!(masked.ends_with('…') && masked.len() < 20 && secret.starts_with(masked.trim_end_matches('…')), "{masked}");

    // A small sale: six fans placed, three admitted, one completes, one is removed.
    for i in 0..6 {
        assert_eq!(app.join("c", &format!("f{i}")).await.status(), 202);
        app.wait_for_records(i + 1).await;
    }
    let admitted = admission_tokens(&app, "c", 3).await;
    let r = app
        .client
        .post(format!("{}/v1/concerts/c/admission/complete", app.http()))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"admissionToken": admitted[0].1}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "complete: {}", r.status());
    assert_eq!(app.admin_delete("/admin/v1/concerts/c/queue/f5").await.status(), 204);
    // f1 goes through the gate (a session starts) and an operator ends it; the emergency stop
    // then revokes f2's token, never used.
    let r = crate::gate::gate(&app, "c", &format!("/?queuegate_token={}", admitted[1].1), None).await;
    assert!(r.headers().get("set-cookie").is_some(), "a session for f1: {}", r.status());
    assert_eq!(app.admin_delete("/admin/v1/concerts/c/sessions/f1").await.status(), 204);
    let r = app
        .client
        .post(format!("{}/admin/v1/concerts/c/sessions/revoke", app.admin))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let sold_out = json!({"state": "soldout", "redirectUrl": "https://shop.example/", "webhooks": [{"url": hook.url}]});
    assert_eq!(app.put_concert("c", sold_out).await.status(), 200);

    // 1 concert.updated + 6 placed + 3 admitted + 1 completed + 1 removed + 1 session.started
    // + 1 session.ended + 1 expired (revoked) + 1 concert.soldout.
    let records =
        read_events(&names.brokers, &names.events_topic(), Duration::from_secs(30), |r| distinct_ids(r) >= 16).await;
    assert_eq!(distinct_ids(&records), 16, "{records:#?}");
    assert!(records.iter().all(|r| r.key.as_deref() == Some("c")), "keyed by concertId");
    let lines: Vec<Value> =
        records.iter().map(|r| json!({"headers": r.headers, "key": r.key, "value": r.value})).collect();
    let events = check_with_libraries("kafka", &lines);
    let mut by_type: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    let mut seen = BTreeSet::new();
    for e in events {
        assert_eq!(e["specversion"], "1.0");
        assert_eq!(e["source"], "/queuegate/concerts/c");
        assert_eq!(e["datacontenttype"], "application/json");
        if seen.insert(e["id"].as_str().unwrap().to_owned()) {
            by_type.entry(e["type"].as_str().unwrap().to_owned()).or_default().push(e);
        }
    }
    let subjects = |t: &str| -> Vec<String> {
        by_type.get(t).map_or(vec![], |v| v.iter().map(|e| e["subject"].as_str().unwrap().to_owned()).collect())
    };
    assert_eq!(subjects("dev.queuegate.fan.placed"), ["f0", "f1", "f2", "f3", "f4", "f5"]);
    let positions: Vec<u64> =
        by_type["dev.queuegate.fan.placed"].iter().map(|e| e["data"]["position"].as_u64().unwrap()).collect();
    assert_eq!(positions, [1, 2, 3, 4, 5, 6]);
    assert_eq!(subjects("dev.queuegate.fan.admitted"), ["f0", "f1", "f2"]);
    assert!(by_type["dev.queuegate.fan.admitted"]
        .iter()
        .all(|e| e["data"]["status"] == "admitted" && e["data"]["expiresAt"].is_string()));
    assert_eq!(subjects("dev.queuegate.fan.completed"), ["f0"]);
    assert_eq!(subjects("dev.queuegate.fan.removed"), ["f5"]);
    assert_eq!(subjects("dev.queuegate.fan.session.started"), ["f1"]);
    assert_eq!(subjects("dev.queuegate.fan.session.ended"), ["f1"]);
    assert_eq!(by_type["dev.queuegate.fan.session.ended"][0]["data"]["reason"], "operator");
    assert_eq!(subjects("dev.queuegate.fan.expired"), ["f2"]);
    assert_eq!(by_type["dev.queuegate.fan.expired"][0]["data"]["reason"], "revoked");
    assert_eq!(by_type["dev.queuegate.concert.soldout"][0]["data"]["state"], "soldout");
    let updated = &by_type["dev.queuegate.concert.updated"];
    assert_eq!(updated.len(), 1);
    assert_eq!(updated[0]["data"]["state"], "open");
    assert!(updated[0]["data"].get("webhooks").is_none(), "webhook URLs stay out of the events");
    assert_eq!(updated[0]["subject"], Value::Null);

    // Every event reaches the webhook, and the Standard Webhooks library verifies each one.
    let ok = poll_until(Duration::from_secs(30), async || hook.ids().len() >= 16).await;
    assert!(ok, "the webhook got {} of 16 events", hook.ids().len());
    let deliveries: Vec<Value> = hook
        .got
        .lock()
        .unwrap()
        .iter()
        .map(|d| json!({"secret": secret, "headers": d.headers, "body": d.body}))
        .collect();
    let verified = check_with_libraries("webhook", &deliveries);
    let hook_ids: BTreeSet<String> = verified
        .iter()
        .map(|v| {
            assert_eq!(v["webhookId"], v["id"], "webhook-id is the event's ce_id");
            assert_eq!(v["payloadId"], v["id"]);
            v["id"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(hook_ids, seen, "the webhook got exactly the events of the topic");
    // A forged signature is refused by the library (the check can fail).
    let mut forged = deliveries[0].clone();
    forged["secret"] = json!(queuegate::events::new_secret());
    let refused = std::panic::catch_unwind(|| check_with_libraries("webhook", &[forged]));
    assert!(refused.is_err(), "a delivery signed with another secret must not verify");

    let log = app.admin_json("/admin/v1/concerts/c/webhooks/deliveries").await;
    assert_eq!(log["webhooks"][0]["id"], webhook_id.as_str());
    assert!(log["deliveries"].as_array().unwrap().iter().any(|d| d["outcome"] == "delivered" && d["status"] == 204));

    // The report equals what the events say.
    let mut report = Value::Null;
    let caught_up = poll_until(Duration::from_secs(20), async || {
        report = app.admin_json("/admin/v1/concerts/c/report").await;
        report["counts"]["removed"] == 1 && report["counts"]["expired"] == 1
    })
    .await;
    assert!(caught_up, "{report:#}");
    for kind in queuegate::events::report::OUTCOMES {
        let n = by_type.get(&format!("dev.queuegate.fan.{kind}")).map_or(0, Vec::len);
        assert_eq!(report["counts"][kind], n as u64, "{kind}");
    }
    let placed_at: HashMap<String, i64> = by_type["dev.queuegate.fan.placed"]
        .iter()
        .map(|e| (e["subject"].as_str().unwrap().to_owned(), time_ms(e)))
        .collect();
    let mut waits: Vec<i64> = by_type["dev.queuegate.fan.admitted"]
        .iter()
        .map(|e| time_ms(e) - placed_at[e["subject"].as_str().unwrap()])
        .collect();
    waits.sort_unstable();
    let rank = |p: usize| waits[(p * waits.len()).div_ceil(100).max(1) - 1];
    assert_eq!(report["waitMs"]["count"], 3);
    assert_eq!(report["waitMs"]["p50"], rank(50));
    assert_eq!(report["waitMs"]["p90"], rank(90));
    assert_eq!(report["waitMs"]["p99"], rank(99));
    assert_eq!(report["waitMs"]["max"], *waits.last().unwrap());
    let per_minute = |t: &str| -> BTreeMap<String, u64> {
        let mut m = BTreeMap::new();
        for e in &by_type[t] {
            let minute = time_ms(e) / 60_000 * 60_000;
            *m.entry(queuegate::clock::rfc3339(minute)).or_default() += 1;
        }
        m
    };
    let reported = |field: &str| -> BTreeMap<String, u64> {
        report[field]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| (p["minute"].as_str().unwrap().to_owned(), p["count"].as_u64().unwrap()))
            .collect()
    };
    assert_eq!(reported("joinsPerMinute"), per_minute("dev.queuegate.fan.placed"));
    assert_eq!(reported("admissionsPerMinute"), per_minute("dev.queuegate.fan.admitted"));
    let last_length = report["queueLength"].as_array().unwrap().last().unwrap()["length"].as_i64().unwrap();
    assert_eq!(last_length, 6 - 3 - 1, "six placed, three admitted and one removed leave two waiting");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_get_everything_past_a_failing_a_hanging_and_a_dead_endpoint_and_a_restart() {
    let names = Names::new();
    names.create_topics(3).await;
    let quick = |s: &mut queuegate::config::Settings| {
        s.events.webhook_timeout_ms = 1_000;
        s.events.webhook_retry_base_ms = 200;
        s.events.webhook_retry_max_ms = 1_000;
    };
    let app = spawn_role(&names, Role::Run, quick).await;
    let healthy = Receiver::start(Behaviour::Ok).await;
    let failing = Receiver::start(Behaviour::FailFirst(5)).await;
    let hanging = Receiver::start(Behaviour::Hang).await;
    let dead = format!("http://127.0.0.1:{}/hook", free_port());
    let body = json!({"state": "open", "webhooks": [
        {"url": healthy.url},
        {"url": failing.url, "types": ["dev.queuegate.fan.placed"]},
        {"url": hanging.url},
        {"url": dead},
    ]});
    let r = app.put_concert("c", body).await;
    assert_eq!(r.status(), 200);
    let created: Value = r.json().await.unwrap();
    let ids: Vec<String> =
        created["webhooks"].as_array().unwrap().iter().map(|h| h["id"].as_str().unwrap().to_owned()).collect();
    let first_secret = created["webhooks"][0]["secret"].as_str().unwrap().to_owned();

    for i in 0..15 {
        assert_eq!(app.join("c", &format!("a{i}")).await.status(), 202);
    }
    // 1 concert.updated + 15 placed, while the hanging endpoint holds every one of its
    // deliveries for the whole timeout and the dead one refuses every connection.
    let ok = poll_until(Duration::from_secs(30), async || healthy.ids().len() >= 16).await;
    assert!(ok, "the healthy endpoint got {} of 16 before the restart", healthy.ids().len());

    // queuegate restarts (a graceful stop; the chaos tests kill -9) with deliveries pending.
    app.shutdown().await.expect("clean shutdown");
    let app = spawn_role(&names, Role::Run, quick).await;
    for i in 0..15 {
        assert_eq!(app.join("c", &format!("b{i}")).await.status(), 202);
    }
    let ok = poll_until(Duration::from_secs(40), async || healthy.ids().len() >= 31 && failing.ids().len() >= 30).await;
    assert!(ok, "healthy got {} of 31, failing {} of 30", healthy.ids().len(), failing.ids().len());
    assert_eq!(healthy.ids().len(), 31);
    assert!(
        failing.ids().iter().all(|id| id.starts_with("c/")) && failing.ids().len() == 30,
        "the failing endpoint gets its type only, each event once by id"
    );
    let log = app.admin_json("/admin/v1/concerts/c/webhooks/deliveries").await;
    let pending: HashMap<String, u64> = log["webhooks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| (h["id"].as_str().unwrap().to_owned(), h["pending"].as_u64().unwrap()))
        .collect();
    assert_eq!(pending[&ids[0]], 0);
    assert_eq!(pending[&ids[1]], 0);
    assert_eq!(pending[&ids[3]], 31, "nothing for the dead endpoint is lost: all 31 wait for it");
    assert!(pending[&ids[2]] > 0, "the hanging endpoint still has deliveries to make");
    let entries = log["deliveries"].as_array().unwrap();
    let failed_with = |id: &str, pred: &dyn Fn(&Value) -> bool| {
        entries.iter().any(|d| d["webhookId"] == id && d["outcome"] == "failed" && pred(d))
    };
    assert!(failed_with(&ids[1], &|d| d["status"] == 500), "the failing endpoint's 500s are in the log");
    assert!(failed_with(&ids[2], &|d| d["error"] == "timed out"), "the hanging endpoint's timeouts are in the log");
    assert!(failed_with(&ids[3], &|d| d["error"].is_string()), "the dead endpoint's refusals are in the log");

    // Rotating a secret: the new one is shown once and signs what follows; the one it replaced
    // signs too for a day (a receiver that has not switched yet keeps verifying), unless the
    // rotation ends it at once.
    let rotate = async |body: Option<Value>| -> Value {
        let mut req = app
            .client
            .post(format!("{}/admin/v1/concerts/c/webhooks/{}/secret", app.admin, ids[0]))
            .bearer_auth(ADMIN_TOKEN);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), 200);
        r.json().await.unwrap()
    };
    let delivered_to = async |fan: &str| -> Vec<Value> {
        assert_eq!(app.join("c", fan).await.status(), 202);
        let subject = format!("\"subject\":\"{fan}\"");
        let ok = poll_until(Duration::from_secs(20), async || {
            healthy.got.lock().unwrap().iter().any(|d| d.body.contains(&subject))
        })
        .await;
        assert!(ok, "{fan}'s event reaches the healthy endpoint");
        let got = healthy.got.lock().unwrap();
        got.iter()
            .filter(|d| d.body.contains(&subject))
            .map(|d| json!({"headers": d.headers, "body": d.body}))
            .collect()
    };
    let signed_by = |secret: &str, deliveries: &[Value]| -> bool {
        let lines: Vec<Value> = deliveries
            .iter()
            .map(|d| {
                let mut d = d.clone();
                d["secret"] = json!(secret);
                d
            })
            .collect();
        std::panic::catch_unwind(|| check_with_libraries("webhook", &lines).len() == lines.len()).unwrap_or(false)
    };
    let rotated = rotate(None).await;
    let second_secret = rotated["secret"].as_str().unwrap().to_owned();
    assert!(second_secret.starts_with("whsec_"));
    assert!(rotated["previousValidUntil"].is_string(), "{rotated}");
    let late = delivered_to("late").await;
    assert!(signed_by(&second_secret, &late), "the new secret signs what follows");
    assert!(signed_by(&first_secret, &late), "the replaced secret still signs during the overlap");
    assert!(!signed_by(&queuegate::events::new_secret(), &late), "another secret does not verify");

    let rotated = rotate(Some(json!({"previousValidSeconds": 0}))).await;
    let third_secret = rotated["secret"].as_str().unwrap().to_owned();
    assert!(rotated["previousValidUntil"].is_null(), "{rotated}");
    let later = delivered_to("later").await;
    assert!(signed_by(&third_secret, &later));
    assert!(!signed_by(&second_secret, &later), "a secret rotated out at once signs nothing more");
    assert!(!signed_by(&first_secret, &later));
    let r = app
        .client
        .post(format!("{}/admin/v1/concerts/c/webhooks/{}/secret", app.admin, ids[0]))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"previousValidSeconds": 8 * 86_400}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400, "an overlap of more than a week is refused");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_left_unused_and_a_session_left_idle_are_events_too() {
    let names = Names::new();
    names.create_topics(1).await;
    let app = spawn_role(&names, Role::Run, |s| s.http.public_url = Some("https://queue.example".into())).await;
    let body =
        json!({"state": "open", "redirectUrl": "https://shop.example/", "tokenTtlSeconds": 3, "sessionIdleSeconds": 1});
    assert_eq!(app.put_concert("x", body).await.status(), 200);
    for (i, fan) in ["unused", "idle"].iter().enumerate() {
        assert_eq!(app.join("x", fan).await.status(), 202);
        app.wait_for_records(i as u64 + 1).await;
    }
    let admitted = admission_tokens(&app, "x", 2).await;
    let idle = &admitted.iter().find(|(u, _)| u == "idle").unwrap().1;
    let r = crate::gate::gate(&app, "x", &format!("/?queuegate_token={idle}"), None).await;
    assert!(r.headers().get("set-cookie").is_some(), "a session: {}", r.status());
    // The admission rounds' sweep frees both slots once their time has passed.
    let records = read_events(&names.brokers, &names.events_topic(), Duration::from_secs(30), |r| {
        let types: BTreeSet<&str> = r.iter().map(|r| r.header("ce_type")).collect();
        types.contains("dev.queuegate.fan.expired") && types.contains("dev.queuegate.fan.session.ended")
    })
    .await;
    let lines: Vec<Value> =
        records.iter().map(|r| json!({"headers": r.headers, "key": r.key, "value": r.value})).collect();
    let events = check_with_libraries("kafka", &lines);
    let of = |t: &str| events.iter().find(|e| e["type"] == t).unwrap_or_else(|| panic!("no {t} in {events:#?}"));
    assert_eq!(of("dev.queuegate.fan.expired")["subject"], "unused");
    assert_eq!(of("dev.queuegate.fan.expired")["data"]["reason"], "unused");
    assert_eq!(of("dev.queuegate.fan.session.started")["subject"], "idle");
    assert_eq!(of("dev.queuegate.fan.session.ended")["subject"], "idle");
    assert_eq!(of("dev.queuegate.fan.session.ended")["data"]["reason"], "idle");
}
