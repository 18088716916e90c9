//! Issue 35: webhook deliveries grew without bound. A dead receiver kept every event body in
//! Redis (a million fans: 1,013,332 deliveries and 641 MiB for one endpoint), with no cap, no
//! metric and no alert. Now each endpoint's queue is capped by count and bytes (what does not
//! fit is dropped and counted), give-up counts from when the event was queued, and an endpoint
//! whose every attempt fails for QUEUEGATE_WEBHOOK_SUSPEND_AFTER_SECONDS is suspended until an
//! operator resumes it (docs/howto-events.md, "Caps, give-up and suspension").

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use queuegate::config::Role;
use queuegate::events::hooks::SUSPEND_MIN_FAILURES;
use queuegate::ids::ConcertId;
use queuegate::store::events::{Attempt, AttemptOutcome, Retry, SuspendPolicy, WebhookCaps};
use queuegate::store::QueueStore;
use serde_json::{json, Value};

use crate::common::{allow_loopback_webhooks, poll_until, spawn_role, Names, ADMIN_TOKEN};

/// A webhook receiver that accepts every connection and, until told to answer, never answers
/// (the blackholed receiver); once answering, 204 to everything.
struct Switchable {
    url: String,
    answering: Arc<AtomicBool>,
    /// Requests that arrived, answered or not.
    arrived: Arc<AtomicUsize>,
    /// Bodies answered with 204.
    got: Arc<Mutex<Vec<(String, String)>>>,
    server: actix_web::dev::ServerHandle,
}

impl Drop for Switchable {
    fn drop(&mut self) {
        let h = self.server.clone();
        tokio::spawn(async move { h.stop(false).await });
    }
}

impl Switchable {
    async fn start() -> Switchable {
        let answering = Arc::new(AtomicBool::new(false));
        let arrived = Arc::new(AtomicUsize::new(0));
        let got: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
        let (a, n, g) = (answering.clone(), arrived.clone(), got.clone());
        let server = HttpServer::new(move || {
            let (a, n, g) = (a.clone(), n.clone(), g.clone());
            App::new().default_service(web::to(move |req: HttpRequest, body: web::Bytes| {
                let (a, n, g) = (a.clone(), n.clone(), g.clone());
                async move {
                    n.fetch_add(1, Ordering::SeqCst);
                    if !a.load(Ordering::SeqCst) {
                        tokio::time::sleep(Duration::from_secs(600)).await;
                    }
                    let id = req.headers().get("webhook-id").and_then(|v| v.to_str().ok()).unwrap_or_default();
                    g.lock().unwrap().push((id.to_owned(), String::from_utf8_lossy(&body).into_owned()));
                    HttpResponse::NoContent().finish()
                }
            }))
        })
        .workers(1)
        .disable_signals()
        .shutdown_timeout(1)
        .bind(("127.0.0.1", 0))
        .expect("bind");
        let port = server.addrs()[0].port();
        let server = server.run();
        let handle = server.handle();
        tokio::spawn(server);
        Switchable { url: format!("http://127.0.0.1:{port}/hook"), answering, arrived, got, server: handle }
    }

    fn ids(&self) -> BTreeSet<String> {
        self.got.lock().unwrap().iter().map(|(id, _)| id.clone()).collect()
    }
}

/// Deliveries, their bodies' bytes and queued times held in Redis for one endpoint.
async fn held(names: &Names, store: &QueueStore, concert: &ConcertId, hook: &str) -> (u64, u64, u64, u64) {
    let key = |part: &str| store.keys().webhook(concert, hook, part);
    // One snapshot of the three (a script runs alone): read one by one, the events worker's
    // enqueueing in between made `due` 24 and `queued` 50 in CI.
    let counts = "return {redis.call('ZCARD', KEYS[1]), redis.call('HLEN', KEYS[2]), redis.call('ZCARD', KEYS[3])}";
    let (due, bodies, queued): (u64, u64, u64) =
        names.redis(redis::cmd("EVAL").arg(counts).arg(3).arg(key("due")).arg(key("body")).arg(key("queued"))).await;
    let ids: Vec<String> = names.redis(redis::cmd("HKEYS").arg(key("body"))).await;
    let mut bytes = 0;
    for id in ids {
        let n: u64 = names.redis(redis::cmd("HSTRLEN").arg(key("body")).arg(id)).await;
        bytes += n;
    }
    assert_eq!(due, queued, "every pending delivery has its queued time");
    (due, bodies, queued, bytes)
}

/// `MEMORY USAGE` of the endpoint's keys (bytes), for the record.
async fn memory(names: &Names, store: &QueueStore, concert: &ConcertId, hook: &str) -> u64 {
    let mut total = 0;
    for part in ["due", "body", "tries", "queued", "state", "log"] {
        let n: Option<u64> = names
            .redis(
                redis::cmd("MEMORY").arg("USAGE").arg(store.keys().webhook(concert, hook, part)).arg("SAMPLES").arg(0),
            )
            .await;
        total += n.unwrap_or(0);
    }
    total
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_webhook_endpoint_holds_at_most_its_cap_is_suspended_and_is_delivered_to_again_once_resumed() {
    const CAP: u64 = 50;
    const CAP_BYTES: u64 = 1024 * 1024;
    const BURST: usize = 300;
    let names = Names::new();
    names.create_topics(3).await;
    let app = spawn_role(&names, Role::Run, |s| {
        s.events.webhook_timeout_ms = 500;
        s.events.webhook_retry_base_ms = 200;
        s.events.webhook_retry_max_ms = 1_000;
        s.events.webhook_max_pending = CAP;
        s.events.webhook_max_pending_bytes = CAP_BYTES;
        s.events.webhook_suspend_after_seconds = 5;
        allow_loopback_webhooks(s);
    })
    .await;
    let receiver = Switchable::start().await;
    let r = app.put_concert("caps", json!({"state": "open", "webhooks": [{"url": receiver.url}]})).await;
    assert_eq!(r.status(), 200);
    let created: Value = r.json().await.unwrap();
    let hook = created["webhooks"][0]["id"].as_str().unwrap().to_owned();
    let concert = ConcertId::parse("caps").unwrap();
    let store = names.store();
    let standing = async || -> Value {
        let log = app.admin_json("/admin/v1/concerts/caps/webhooks/deliveries").await;
        log["webhooks"].as_array().unwrap().iter().find(|h| h["id"] == hook.as_str()).unwrap().clone()
    };
    let accounted = |h: &Value| {
        h["pending"].as_u64().unwrap()
            + h["dropped"]["full"].as_u64().unwrap()
            + h["dropped"]["suspended"].as_u64().unwrap()
    };

    // A burst of many times the cap while the receiver holds every request unanswered.
    let fans: Vec<String> = (0..BURST).map(|i| format!("fan-{i}")).collect();
    for chunk in fans.chunks(50) {
        let joins = chunk.iter().map(|fan| app.join("caps", fan));
        for r in futures_util::future::join_all(joins).await {
            assert_eq!(r.status(), 202);
        }
    }
    // 1 concert.updated + BURST placed, each either pending or dropped; Redis never holds more
    // than the cap at any moment.
    let (mut most, mut h) = (0, Value::Null);
    let all = poll_until(Duration::from_secs(60), async || {
        let (due, bodies, _, bytes) = held(&names, &store, &concert, &hook).await;
        most = most.max(due).max(bodies);
        assert!(bytes <= CAP_BYTES, "{bytes} bytes held, past the byte cap");
        h = standing().await;
        accounted(&h) == BURST as u64 + 1
    })
    .await;
    assert!(all, "every event queued or dropped within 60 s: {h:#}");
    assert!(most <= CAP, "Redis held {most} deliveries for the endpoint, past its cap of {CAP}");
    let (due, bodies, queued, bytes) = held(&names, &store, &concert, &hook).await;
    let mem = memory(&names, &store, &concert, &hook).await;
    eprintln!(
        "webhook caps: {} events for a blackholed endpoint with a cap of {CAP}: {due} pending ({bytes} bytes of bodies, \
         {mem} bytes of Redis in its keys), {} dropped full, {} dropped suspended",
        BURST + 1,
        h["dropped"]["full"],
        h["dropped"]["suspended"]
    );
    assert_eq!((due, bodies, queued), (h["pending"].as_u64().unwrap(), due, due));
    assert_eq!(h["pendingBytes"].as_u64().unwrap(), bytes, "the byte count is the bodies' bytes");
    assert!(h["dropped"]["full"].as_u64().unwrap() > 0, "the cap was reached: {h:#}");
    assert!(mem < 256 * 1024, "the endpoint's keys take {mem} bytes of Redis");

    // It keeps failing: suspended, in the admin answer and the metrics.
    let suspended = poll_until(Duration::from_secs(30), async || {
        h = standing().await;
        h["suspended"] == true
    })
    .await;
    assert!(suspended, "suspended within 30 s: {h:#}");
    assert!(
        h["suspendedAt"].is_string() && h["failuresInARow"].as_u64().unwrap() >= SUSPEND_MIN_FAILURES as u64,
        "{h:#}"
    );
    let log = app.admin_json("/admin/v1/concerts/caps/webhooks/deliveries").await;
    assert!(
        log["deliveries"].as_array().unwrap().iter().any(|d| d["outcome"] == "failed" && d["class"] == "timeout"),
        "the timeouts are in the log"
    );
    let suspended_gauge =
        poll_until(Duration::from_secs(5), async || app.metric("queuegate_webhook_suspended_endpoints").await == 1)
            .await;
    assert!(suspended_gauge, "queuegate_webhook_suspended_endpoints shows the suspended endpoint");

    // While suspended, nothing is sent to it and its new events are dropped as `suspended`.
    tokio::time::sleep(Duration::from_millis(1_500)).await; // attempts in flight time out
    let arrived = receiver.arrived.load(Ordering::SeqCst);
    let before = standing().await;
    for i in 0..20 {
        assert_eq!(app.join("caps", &format!("late-{i}")).await.status(), 202);
    }
    let dropped = poll_until(Duration::from_secs(30), async || {
        h = standing().await;
        accounted(&h) == BURST as u64 + 21
    })
    .await;
    assert!(dropped, "the 20 events of the suspension are accounted for: {h:#}");
    assert_eq!(
        h["dropped"]["suspended"].as_u64().unwrap(),
        before["dropped"]["suspended"].as_u64().unwrap() + 20,
        "each dropped as suspended"
    );
    assert_eq!(h["pending"], before["pending"], "nothing queued while suspended");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(receiver.arrived.load(Ordering::SeqCst), arrived, "nothing sent to a suspended endpoint");

    // The metric counts what the admin answer shows (one process did all the queuing).
    assert_eq!(
        app.metric("queuegate_webhook_dropped_total{reason=\"full\"}").await,
        h["dropped"]["full"].as_u64().unwrap()
    );
    assert_eq!(
        app.metric("queuegate_webhook_dropped_total{reason=\"suspended\"}").await,
        h["dropped"]["suspended"].as_u64().unwrap()
    );
    assert_eq!(
        app.metric(&format!("queuegate_webhook_pending{{concert=\"caps\",webhook=\"{hook}\"}}")).await,
        h["pending"].as_u64().unwrap()
    );
    assert_eq!(
        app.metric(&format!("queuegate_webhook_pending_bytes{{concert=\"caps\",webhook=\"{hook}\"}}")).await,
        h["pendingBytes"].as_u64().unwrap()
    );

    // The receiver is mended and the operator resumes the endpoint: what was kept and what
    // comes next are delivered.
    receiver.answering.store(true, Ordering::SeqCst);
    let resume = |id: &str| {
        app.client
            .post(format!("{}/admin/v1/concerts/caps/webhooks/{id}/resume", app.admin))
            .bearer_auth(ADMIN_TOKEN)
            .send()
    };
    assert_eq!(resume("wh_nosuchhook").await.unwrap().status(), 404);
    let r = resume(&hook).await.unwrap();
    assert_eq!(r.status(), 200);
    let resumed: Value = r.json().await.unwrap();
    assert_eq!((resumed["resumed"].clone(), resumed["suspended"].clone()), (json!(true), json!(false)), "{resumed}");
    let kept = h["pending"].as_u64().unwrap() as usize;
    for i in 0..5 {
        assert_eq!(app.join("caps", &format!("back-{i}")).await.status(), 202);
    }
    let delivered = poll_until(Duration::from_secs(60), async || {
        h = standing().await;
        h["pending"] == 0 && receiver.ids().len() >= kept + 5
    })
    .await;
    assert!(delivered, "after the resume: {} delivered of {} expected, {h:#}", receiver.ids().len(), kept + 5);
    let got = receiver.got.lock().unwrap().clone();
    for i in 0..5 {
        let subject = format!("\"subject\":\"back-{i}\"");
        assert!(got.iter().any(|(_, b)| b.contains(&subject)), "back-{i}'s event was delivered");
    }
    assert!(!got.iter().any(|(_, b)| b.contains("\"subject\":\"late-")), "the suspension's events were dropped");
    assert_eq!(h["suspended"], false);
    assert_eq!(accounted(&h) + receiver.ids().len() as u64, BURST as u64 + 26, "every event delivered or dropped");
    assert_eq!(app.metric("queuegate_webhook_suspended_endpoints").await, 0);
    assert_eq!(
        resume(&hook).await.unwrap().json::<Value>().await.unwrap()["resumed"],
        false,
        "a second resume changes nothing"
    );
}

fn failed(id: &str, now: i64) -> Attempt {
    Attempt {
        id: id.to_owned(),
        outcome: AttemptOutcome::Failed(Retry { at_ms: now + 1_000, attempts: 1, first_ms: now }),
        log: json!({"eventId": id, "outcome": "failed"}),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_queues_keep_both_caps_under_concurrent_writers_and_give_up_counts_from_queueing() {
    let names = Names::new();
    let store = names.store();
    let concert = ConcertId::parse("capstore").unwrap();
    let now = queuegate::clock::now_ms();
    let body = "x".repeat(1000);

    // Eight writers at once, 500 distinct 1,000-byte deliveries each, onto two endpoints: one
    // whose byte cap binds first (200,000 bytes: 200 deliveries), one whose count cap does (100).
    for (hook, caps, fits) in [
        ("wh_bytes", WebhookCaps { max_pending: 10_000, max_pending_bytes: 200_000 }, 200),
        ("wh_count", WebhookCaps { max_pending: 100, max_pending_bytes: 16 << 20 }, 100),
    ] {
        let writers = (0..8).map(|w| {
            let (store, concert, body) = (store.clone(), concert.clone(), body.clone());
            tokio::spawn(async move {
                let ids: Vec<String> = (0..500).map(|i| format!("capstore/{w}-{i}/0")).collect();
                let mut total = queuegate::store::events::Enqueued::default();
                for chunk in ids.chunks(50) {
                    let items: Vec<(&str, String)> = chunk.iter().map(|id| (id.as_str(), body.clone())).collect();
                    let e = store.webhook_enqueue(&concert, hook, &items, now, caps).await.unwrap();
                    total.queued += e.queued;
                    total.dropped_full += e.dropped_full;
                }
                total
            })
        });
        let (mut queued, mut full) = (0, 0);
        for t in futures_util::future::join_all(writers).await {
            let t = t.unwrap();
            queued += t.queued;
            full += t.dropped_full;
        }
        let (due, bodies, _, bytes) = held(&names, &store, &concert, hook).await;
        assert_eq!((queued, due, bodies), (fits, fits, fits), "{hook}: exactly what fits is held");
        assert_eq!(full, 4000 - fits, "{hook}: the rest is dropped as full");
        let state = store.webhook_state(&concert, hook).await.unwrap();
        assert_eq!((state.pending, state.pending_bytes, state.dropped_full), (fits, bytes, 4000 - fits));
        assert_eq!(bytes, fits * 1000);
        let mem = memory(&names, &store, &concert, hook).await;
        eprintln!("webhook caps: {hook}: {fits} deliveries of 1,000-byte bodies take {mem} bytes of Redis");
        // An event queued again (a batch read twice) keeps its place and is not dropped.
        let ids: Vec<String> = names.redis(redis::cmd("HKEYS").arg(store.keys().webhook(&concert, hook, "body"))).await;
        let again: Vec<(&str, String)> = vec![(ids[0].as_str(), body.clone())];
        let e = store.webhook_enqueue(&concert, hook, &again, now, caps).await.unwrap();
        assert_eq!((e.queued, e.dropped_full), (0, 0));
    }

    // Give-up counts from queuing: deliveries queued two hours ago and never attempted are given
    // up with a one-hour window, never sent, at most 64 per look (32 by queued time, 32 of the
    // due), their bytes released.
    let caps = WebhookCaps { max_pending: 1_000, max_pending_bytes: 16 << 20 };
    let old: Vec<String> = (0..100).map(|i| format!("capstore/old-{i}/0")).collect();
    let items: Vec<(&str, String)> = old.iter().map(|id| (id.as_str(), body.clone())).collect();
    store.webhook_enqueue(&concert, "wh_old", &items, now - 7_200_000, caps).await.unwrap();
    store.webhook_enqueue(&concert, "wh_old", &[("capstore/new/0", body.clone())], now, caps).await.unwrap();
    let first = store.webhook_claim(&concert, "wh_old", now, 10_000, 32, 3_600_000).await.unwrap();
    assert_eq!((first.given_up.len(), first.claimed.len()), (64, 0), "bounded per call");
    assert!(first.given_up.iter().all(|(id, tried)| id.contains("/old-") && *tried == 0));
    let second = store.webhook_claim(&concert, "wh_old", now, 10_000, 32, 3_600_000).await.unwrap();
    assert_eq!(second.given_up.len(), 36);
    let claimed: Vec<&str> = second.claimed.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(claimed, ["capstore/new/0"], "the old ones are never sent");
    assert_eq!((second.pending, second.pending_bytes), (1, 1000));
    assert_eq!(second.claimed[0].queued_ms, now, "a claimed delivery carries its queued time");

    // Suspension: failures in a row for the window (and at least the fewest), then nothing is
    // queued or claimed until a resume.
    let policy = SuspendPolicy { after_ms: 5_000, min_failures: SUSPEND_MIN_FAILURES };
    let hook = "wh_dead";
    store.webhook_enqueue(&concert, hook, &[("capstore/d/0", body.clone())], now, caps).await.unwrap();
    let batch: Vec<Attempt> = (0..SUSPEND_MIN_FAILURES).map(|_| failed("capstore/d/0", now)).collect();
    assert!(!store.webhook_record(&concert, hook, &batch, now, policy).await.unwrap(), "not yet: too short");
    assert!(!store.webhook_record(&concert, hook, &batch[..1], now + 4_999, policy).await.unwrap());
    let ok = Attempt { outcome: AttemptOutcome::Delivered, ..failed("capstore/other/0", now) };
    assert!(!store.webhook_record(&concert, hook, &[ok], now + 5_000, policy).await.unwrap(), "a success ends the run");
    assert_eq!(store.webhook_state(&concert, hook).await.unwrap().failing_since_ms, None);
    assert!(!store.webhook_record(&concert, hook, &batch, now + 6_000, policy).await.unwrap());
    assert!(store.webhook_record(&concert, hook, &batch[..1], now + 11_000, policy).await.unwrap(), "suspended");
    assert!(!store.webhook_record(&concert, hook, &batch[..1], now + 12_000, policy).await.unwrap(), "once");
    let e = store.webhook_enqueue(&concert, hook, &[("capstore/d/1", body.clone())], now, caps).await.unwrap();
    assert_eq!((e.queued, e.dropped_suspended), (0, 1));
    let look = store.webhook_claim(&concert, hook, now + 60_000, 10_000, 32, 3_600_000).await.unwrap();
    assert!(look.suspended_ms == Some(now + 11_000) && look.claimed.is_empty() && look.pending == 1, "{look:?}");
    assert!(store.webhook_resume(&concert, hook).await.unwrap());
    assert!(!store.webhook_resume(&concert, hook).await.unwrap());
    let look = store.webhook_claim(&concert, hook, now + 60_000, 10_000, 32, 3_600_000).await.unwrap();
    assert_eq!(look.claimed.len(), 1, "claimed again after the resume");
    let state = store.webhook_state(&concert, hook).await.unwrap();
    assert_eq!((state.suspended_ms, state.failures, state.dropped_suspended), (None, 0, 1));
}
