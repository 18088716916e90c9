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
use crate::common::{allow_loopback_webhooks, free_port, poll_until, spawn_role, Names, TestApp, ADMIN_TOKEN};

/// Runs tests/fixtures/events_check.py in `mode` over `lines`: what the libraries read.
pub(crate) fn check_with_libraries(mode: &str, lines: &[Value]) -> Vec<Value> {
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
    let app = spawn_role(&names, Role::Run, |s| {
        s.http.public_url = Some("https://queue.example".into());
        allow_loopback_webhooks(s);
    })
    .await;
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
    let r = crate::gate::exchange(&app, "c", "/", &admitted[1].1).await;
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
    // + 1 session.ended + 1 expired (revoked) + 1 concert.soldout; and the six admin calls that
    // made changes (two PUTs, the admission, the removal, the session ended, the revocation),
    // each a dev.queuegate.admin.action.
    let records =
        read_events(&names.brokers, &names.events_topic(), Duration::from_secs(30), |r| distinct_ids(r) >= 22).await;
    assert_eq!(distinct_ids(&records), 22, "{records:#?}");
    assert!(records.iter().all(|r| r.key.as_deref() == Some("c")), "keyed by concertId");
    let lines: Vec<Value> =
        records.iter().map(|r| json!({"headers": r.headers, "key": r.key, "value": r.value})).collect();
    let events = check_with_libraries("kafka", &lines);
    let mut by_type: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    let mut seen = BTreeSet::new();
    let (mut admin_ids, mut admin_actions) = (BTreeSet::new(), Vec::new());
    for e in events {
        assert_eq!(e["specversion"], "1.0");
        assert_eq!(e["source"], "/queuegate/concerts/c");
        assert_eq!(e["datacontenttype"], "application/json");
        if e["type"] == "dev.queuegate.admin.action" {
            if admin_ids.insert(e["id"].as_str().unwrap().to_owned()) {
                admin_actions.push(e);
            }
            continue;
        }
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
    // The admin actions, in the order they were made, each by the admin token.
    let calls: Vec<String> = admin_actions
        .iter()
        .map(|a| {
            assert_eq!((a["data"]["tokenName"].as_str(), a["data"]["role"].as_str()), (Some("admin"), Some("admin")));
            format!("{} {}", a["data"]["method"].as_str().unwrap(), a["data"]["path"].as_str().unwrap())
        })
        .collect();
    assert_eq!(
        calls,
        [
            "PUT /admin/v1/concerts/c",
            "POST /admin/v1/concerts/c/admit",
            "DELETE /admin/v1/concerts/c/queue/f5",
            "DELETE /admin/v1/concerts/c/sessions/f1",
            "POST /admin/v1/concerts/c/sessions/revoke",
            "PUT /admin/v1/concerts/c",
        ],
        "one admin action per change, in order"
    );
    assert!(
        admin_actions.iter().all(|a| !a["data"].to_string().contains(&secret)),
        "no webhook secret in an admin action"
    );

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
    assert_eq!(hook_ids, seen, "the webhook got exactly the events of the topic but the admin actions (opt-in)");
    // A forged signature is refused by the library (the check can fail).
    let mut forged = deliveries[0].clone();
    forged["secret"] = json!(queuegate::events::new_secret());
    let refused = std::panic::catch_unwind(|| check_with_libraries("webhook", &[forged]));
    assert!(refused.is_err(), "a delivery signed with another secret must not verify");

    let log = app.admin_json("/admin/v1/concerts/c/webhooks/deliveries").await;
    assert_eq!(log["webhooks"][0]["id"], webhook_id.as_str());
    assert!(log["deliveries"].as_array().unwrap().iter().any(|d| d["outcome"] == "delivered" && d["class"] == "ok"));

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
    // A wait runs from when the fan joined (its accepted stamp, kept in `joined`: no entry per
    // fan for the report) to its admission's event; the placement follows the join by the
    // watermark's lag, so it is never shorter than from the `placed` event.
    let joined: HashMap<String, i64> =
        names.redis(redis::cmd("HGETALL").arg(names.key("c", queuegate::store::keys::Part::Joined))).await;
    let placed_at: HashMap<String, i64> = by_type["dev.queuegate.fan.placed"]
        .iter()
        .map(|e| (e["subject"].as_str().unwrap().to_owned(), time_ms(e)))
        .collect();
    let (mut waits, mut from_placed): (Vec<i64>, Vec<i64>) = by_type["dev.queuegate.fan.admitted"]
        .iter()
        .map(|e| {
            let fan = e["subject"].as_str().unwrap();
            (time_ms(e) - joined[fan], time_ms(e) - placed_at[fan])
        })
        .unzip();
    waits.sort_unstable();
    from_placed.sort_unstable();
    let rank = |v: &[i64], p: usize| v[(p * v.len()).div_ceil(100).max(1) - 1];
    assert_eq!(report["waitMs"]["count"], 3);
    for p in [50, 90, 99] {
        // From the histogram: at or above the exact percentile, by less than its bucket (1/8).
        let (exact, got) = (rank(&waits, p), report["waitMs"][format!("p{p}")].as_i64().unwrap());
        assert!(exact <= got && got <= exact + exact / 8, "p{p}: {got} for an exact {exact}");
        assert!(got >= rank(&from_placed, p), "p{p}: {got} under the wait from placed");
    }
    assert_eq!(report["waitMs"]["max"], *waits.last().unwrap());
    assert_eq!(report["waitMs"]["min"], waits[0]);
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
        allow_loopback_webhooks(s);
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
    assert!(failed_with(&ids[1], &|d| d["class"] == "http-5xx"), "the failing endpoint's 500s are in the log");
    assert!(failed_with(&ids[2], &|d| d["class"] == "timeout"), "the hanging endpoint's timeouts are in the log");
    assert!(failed_with(&ids[3], &|d| d["class"] == "connect-failed"), "the dead endpoint's refusals are in the log");
    assert!(
        entries.iter().all(|d| d.get("status").is_none() && d.get("error").is_none()),
        "classes only: no exact status, no socket error"
    );

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
    let r = crate::gate::exchange(&app, "x", "/", idle).await;
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

/// Issue 35, "A stadium's on-sale": the report kept one ZSET member per admission (and a hash
/// entry per fan placed), so reading it was one reply as large as the sale. It is now a
/// fixed-size hash: its size does not grow with admissions, and its percentiles are read from
/// a histogram, never under the exact ones and over them by less than a bucket (an eighth).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reports_keys_stay_the_same_size_as_admissions_grow_and_its_percentiles_bound_the_exact_ones() {
    use queuegate::ids::{ConcertId, Lane, UserId};
    use queuegate::store::keys::Part;
    use queuegate::store::AdmitRequest;

    let names = crate::common::Names::new();
    let store = names.store();
    let id = "big";
    let c = ConcertId::parse(id).unwrap();
    let now = queuegate::clock::now_ms();
    // 5,000 fans who joined over the last 5,000 s, one a second, placed in that order.
    const FANS: usize = 5_000;
    let users: Vec<UserId> = (0..FANS).map(|i| UserId::parse(format!("fan-{i:05}")).unwrap()).collect();
    let stamp = |i: usize| now - (FANS - i) as i64 * 1_000;
    for (n, chunk) in users.chunks(1_000).enumerate() {
        let joins: Vec<(&UserId, i64)> = chunk.iter().enumerate().map(|(j, u)| (u, stamp(n * 1_000 + j))).collect();
        store.apply(&c, &joins).await.unwrap();
    }
    let mut placed = 0;
    while placed < FANS as u64 {
        let r = store.release(&c, &Lane::general(), now + 1_000).await.unwrap();
        assert!(r.placed > 0, "placement stalled at {placed}");
        placed += r.placed;
    }
    let admit = async |n: u32| {
        let got = store.admit(&c, AdmitRequest::manual(n, 600_000)).await.unwrap().unwrap();
        assert_eq!(got.fans.len(), n as usize);
    };
    // What the report's keys hold: every key of the concert whose name starts with `report`
    // (the old `reportfans` and `reportwaits` included), their fields or members, and bytes.
    let report_keys = async || -> (u64, u64, Vec<String>) {
        let pattern = format!("{}:{{{id}}}:report*", names.prefix);
        let keys: Vec<String> = names.redis(redis::cmd("KEYS").arg(&pattern)).await;
        let (mut entries, mut bytes) = (0u64, 0u64);
        for k in &keys {
            let t: String = names.redis(redis::cmd("TYPE").arg(k)).await;
            let n: u64 = match t.as_str() {
                "hash" => names.redis(redis::cmd("HLEN").arg(k)).await,
                "zset" => names.redis(redis::cmd("ZCARD").arg(k)).await,
                _ => 1,
            };
            let b: u64 = names.redis(redis::cmd("MEMORY").arg("USAGE").arg(k).arg("SAMPLES").arg(0)).await;
            entries += n;
            bytes += b;
        }
        (entries, bytes, keys)
    };
    let (_, placed_bytes, _) = report_keys().await;
    for _ in 0..2 {
        admit(500).await;
    }
    let (entries_1k, bytes_1k, keys) = report_keys().await;
    for _ in 0..8 {
        admit(500).await;
    }
    let (entries_5k, bytes_5k, keys_5k) = report_keys().await;
    println!(
        "report keys {keys_5k:?}: after 5,000 placed {placed_bytes} B; after 1,000 admissions {entries_1k} fields, \
         {bytes_1k} B; after 5,000 {entries_5k} fields, {bytes_5k} B"
    );
    assert_eq!(keys, [names.key(id, Part::Report)], "one report key, nothing per fan or per admission");
    assert!(placed_bytes < 2_048, "placing 5,000 fans left {placed_bytes} B of report: something per fan");
    // The histogram's buckets may fill in as waits spread (at most ~240 of them whatever the
    // sale); nothing grows per admission.
    assert!(entries_5k <= 300, "{entries_5k} report fields after 5,000 admissions");
    assert!(bytes_5k < bytes_1k + 8 * 1_024, "4,000 more admissions grew the report from {bytes_1k} B to {bytes_5k} B");

    // The waits from the store's own records: each admitted fan's outbox entry (its time) less
    // its joinedAt.
    let joined: HashMap<String, i64> = names.redis(redis::cmd("HGETALL").arg(names.key(id, Part::Joined))).await;
    let entries: Vec<(String, HashMap<String, String>)> =
        names.redis(redis::cmd("XRANGE").arg(names.key(id, Part::Outbox)).arg("-").arg("+")).await;
    let mut waits: Vec<i64> = Vec::new();
    for (entry, fields) in &entries {
        if fields["t"] == "admitted" {
            let at: i64 = entry.split('-').next().unwrap().parse().unwrap();
            waits.extend(fields["u"].split(' ').map(|u| at - joined[u]));
        }
    }
    waits.sort_unstable();
    assert_eq!(waits.len(), FANS);
    let report = queuegate::events::report::render(id, &store.report(&c).await.unwrap());
    let w = &report["waitMs"];
    assert_eq!(w["count"], FANS as u64);
    assert_eq!((w["min"].as_i64(), w["max"].as_i64()), (Some(waits[0]), Some(waits[FANS - 1])));
    assert_eq!(w["mean"].as_i64(), Some(waits.iter().sum::<i64>() / FANS as i64));
    for p in [50, 90, 99] {
        let exact = waits[(p * FANS).div_ceil(100) - 1];
        let got = w[format!("p{p}")].as_i64().unwrap();
        assert!(exact <= got && got <= exact + exact / 8, "p{p}: {got} for an exact {exact}");
    }
    assert_eq!(report["counts"]["placed"], FANS as u64);
    assert_eq!(report["counts"]["admitted"], FANS as u64);
    let total = |f: &str| report[f].as_array().unwrap().iter().map(|p| p["count"].as_u64().unwrap()).sum::<u64>();
    assert_eq!((total("joinsPerMinute"), total("admissionsPerMinute")), (FANS as u64, FANS as u64));
}

/// The histogram's buckets are the same in the script and in Rust (the report's bounds come from
/// Rust), and the per-minute series keep their last day, earlier minutes rolled up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scripts_buckets_match_rusts_and_minutes_past_a_day_are_rolled_up() {
    use queuegate::store::events::{wait_bucket, wait_bucket_bounds, KEEP_MINUTES};

    let names = crate::common::Names::new();
    let outbox = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/src/store/outbox.lua")).unwrap();
    let mut waits: Vec<u64> = (0..3_000).collect();
    for e in 3..42 {
        for d in [-1i64, 0, 1, 3] {
            waits.push(((1i64 << e) + d) as u64);
        }
        waits.push((1u64 << e) + (1u64 << (e - 1)) + 7);
    }
    let script = format!(
        "{outbox}\nlocal out = {{}}\nfor i = 1, #ARGV do out[i] = wait_bucket(tonumber(ARGV[i])) end\nreturn out"
    );
    let got: Vec<u32> = names.redis(redis::cmd("EVAL").arg(&script).arg(0).arg(&waits)).await;
    for (w, b) in waits.iter().zip(&got) {
        assert_eq!(*b, wait_bucket(*w), "the bucket of {w}");
        let (lo, hi) = wait_bucket_bounds(*b);
        assert!(lo <= *w && *w < hi, "{w} in bucket {b} [{lo}, {hi})");
    }

    // Three days of minutes (each with one fan, some skipped), then one minute back in time.
    let key = format!("{}:{{m}}:report", names.prefix);
    let minutes: Vec<i64> = (0..3 * KEEP_MINUTES).filter(|m| m % 7 != 3).chain([100]).collect();
    let script = format!(
        "{outbox}\nfor i = 1, #ARGV do per_minute(KEYS[1], 'j:', tonumber(ARGV[i]), 1) end\nreturn redis.call('HLEN', KEYS[1])"
    );
    for chunk in minutes.chunks(500) {
        let fields: i64 = names.redis(redis::cmd("EVAL").arg(&script).arg(1).arg(&key).arg(chunk)).await;
        assert!(fields <= KEEP_MINUTES + 3, "{fields} fields");
    }
    let fields: HashMap<String, i64> = names.redis(redis::cmd("HGETALL").arg(&key)).await;
    let kept: Vec<i64> = fields.keys().filter_map(|k| k.strip_prefix("j:")?.parse().ok()).collect();
    let last = 3 * KEEP_MINUTES - 1;
    assert!(kept.iter().all(|m| *m > last - KEEP_MINUTES), "only the last day is kept");
    assert_eq!(kept.len() as i64, (last - KEEP_MINUTES + 1..=last).filter(|m| m % 7 != 3).count() as i64);
    let sum: i64 = kept.iter().map(|m| fields[&format!("j:{m}")]).sum();
    assert_eq!(sum + fields["j:older"], minutes.len() as i64, "every fan counted once, kept or rolled up");
    assert_eq!((fields["j:from"], fields["j:to"]), (last - KEEP_MINUTES + 1, last));
}

/// Only what queuegate's relay published reaches a webhook (issue 36 item 8): a record another
/// producer writes to the events topic, shaped like a queuegate event of a concert with a
/// webhook, is neither delivered nor signed with the endpoint's secret, and is counted; the real
/// events of the same concert, on the same partition after it, are delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_another_producer_writes_to_the_events_topic_never_reaches_a_webhook() {
    use rdkafka::message::{Header, OwnedHeaders};
    use rdkafka::producer::{FutureProducer, FutureRecord};
    let names = Names::new();
    names.create_topics(3).await;
    let app = spawn_role(&names, Role::Run, allow_loopback_webhooks).await;
    let hook = Receiver::start(Behaviour::Ok).await;
    let r = app.put_concert("fz", json!({"state": "open", "webhooks": [{"url": hook.url}]})).await;
    assert_eq!(r.status(), 200);

    // What anyone with write access to the topic could send: a forged admission of mallory,
    // with a made-up seal.
    let producer: FutureProducer =
        rdkafka::ClientConfig::new().set("bootstrap.servers", &names.brokers).create().expect("producer");
    let now = queuegate::clock::rfc3339(queuegate::clock::now_ms());
    let headers = OwnedHeaders::new()
        .insert(Header { key: "ce_specversion", value: Some("1.0") })
        .insert(Header { key: "ce_id", value: Some("fz/1-0/0") })
        .insert(Header { key: "ce_source", value: Some("/queuegate/concerts/fz") })
        .insert(Header { key: "ce_type", value: Some("dev.queuegate.fan.admitted") })
        .insert(Header { key: "ce_time", value: Some(now.as_str()) })
        .insert(Header { key: "ce_subject", value: Some("mallory") })
        .insert(Header { key: "content-type", value: Some("application/json") })
        .insert(Header { key: "qg_seal", value: Some("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA") });
    let topic = names.events_topic();
    let record =
        FutureRecord::to(&topic).key("fz").payload(r#"{"userId":"mallory","status":"admitted"}"#).headers(headers);
    producer.send(record, Duration::from_secs(10)).await.expect("the forged record is written");

    assert_eq!(app.join("fz", "real-fan").await.status(), 202);
    let delivered = poll_until(Duration::from_secs(30), async || {
        hook.got.lock().unwrap().iter().any(|d| d.body.contains("\"subject\":\"real-fan\""))
    })
    .await;
    assert!(delivered, "the real fan's event reaches the endpoint");
    let forged = hook.got.lock().unwrap().iter().filter(|d| d.body.contains("mallory")).count();
    assert_eq!(forged, 0, "the forged event was delivered, signed with the endpoint's secret");
    assert!(app.metric("queuegate_events_unsealed_total").await >= 1, "the forged record is counted");
}

/// Webhook secrets are encrypted at rest (issue 36 item 8): Redis holds neither the current
/// secret nor the one a rotation keeps valid in the clear, while deliveries are still signed
/// with them (the Standard Webhooks library verifies them in the test above).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_holds_webhook_secrets_encrypted_never_in_the_clear() {
    let names = Names::new();
    names.create_topics(1).await;
    let app = spawn_role(&names, Role::Gateway, |_| {}).await;
    // A public address whose one type never happens here: nothing is sent off the machine.
    let hook = json!({"url": "https://93.184.216.34/hook", "types": ["dev.queuegate.fan.admitted"]});
    let created: Value =
        app.put_concert("sec", json!({"state": "open", "webhooks": [hook]})).await.json().await.unwrap();
    let (id, first) =
        (created["webhooks"][0]["id"].as_str().unwrap(), created["webhooks"][0]["secret"].as_str().unwrap());
    let key = names.key("sec", queuegate::store::keys::Part::WebhookSecrets);
    let stored: String = names.redis(redis::cmd("HGET").arg(&key).arg(id)).await;
    assert!(stored.starts_with("v1:") && !stored.contains(first) && !stored.contains("whsec_"), "{stored}");
    let r = app
        .client
        .post(format!("{}/admin/v1/concerts/sec/webhooks/{id}/secret", app.admin))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    let second: Value = r.json().await.unwrap();
    let second = second["secret"].as_str().unwrap();
    let all: HashMap<String, String> = names.redis(redis::cmd("HGETALL").arg(&key)).await;
    assert_eq!(all.len(), 2, "the current secret and the one still valid: {all:?}");
    for (field, value) in &all {
        assert!(!value.contains(first) && !value.contains(second) && !value.contains("whsec_"), "{field}: {value}");
    }
}
