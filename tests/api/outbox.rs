//! Each concert's outbox stays within QUEUEGATE_EVENTS_OUTBOX_MAX while the events topic cannot
//! be written (the Kubernetes install that never created it): the oldest entries are dropped and
//! counted, joins and admissions go on, `/readyz` says `degraded: ["events"]`, and creating the
//! topic later recovers without a restart.

use std::time::Duration;

use queuegate::config::Role;
use queuegate::store::keys::Part;
use serde_json::{json, Value};

use crate::common::events_topic::read_events;
use crate::common::{poll_until, spawn_role, Names, TestApp};

/// Entries the test's outboxes may hold.
const CAP: u64 = 20;

async fn readyz(app: &TestApp) -> (u16, Value) {
    let r = app.client.get(format!("{}/readyz", app.admin)).send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_events_topic_keeps_each_outbox_at_its_cap_counts_the_drops_and_degrades_readiness() {
    let names = Names::new();
    names.create_topics(1).await;
    // The shared brokers never create topics on their own (auto.create.topics.enable=false in
    // scripts/services.sh and cluster.sh): this one does not exist until the test creates it.
    let missing = format!("{}.missing-events", names.topic);
    let topic = missing.clone();
    let app = spawn_role(&names, Role::Run, move |s| {
        s.events.events_topic = topic;
        s.events.events_outbox_max = CAP;
    })
    .await;
    let mut seen = Value::Null;
    let degraded = poll_until(Duration::from_secs(30), async || {
        let (status, body) = readyz(&app).await;
        seen = body;
        status == 200 && seen["degraded"] == json!(["events"])
    })
    .await;
    assert!(degraded, "ready, with degraded naming events (and nothing else): {seen}");
    assert_eq!(app.metric("queuegate_events_topic_unwritable").await, 1);

    // 1 + 40 concert changes, two outbox entries (two events) each: the concert's, and the
    // admin action that made it (src/admin/audit.rs): 62 more than the cap.
    let concert = "ob";
    let outbox = names.key(concert, Part::Outbox);
    for i in 0..=40 {
        let r = app.put_concert(concert, json!({"state": "open", "name": format!("change {i}")})).await;
        assert_eq!(r.status(), 200, "a concert change is never refused for its event");
        let len: u64 = names.redis(redis::cmd("XLEN").arg(&outbox)).await;
        assert!(len <= CAP, "the outbox holds {len} entries after change {i}, more than its cap {CAP}");
    }
    let len: u64 = names.redis(redis::cmd("XLEN").arg(&outbox)).await;
    assert_eq!(len, CAP, "the newest {CAP} changes are kept");
    let dropped = r#"queuegate_events_dropped_total{reason="outbox_full"}"#;
    let mut counted = 0;
    let all_counted = poll_until(Duration::from_secs(30), async || {
        counted = app.metric(dropped).await;
        counted >= 62
    })
    .await;
    assert!(all_counted, "the relay counts the 62 dropped events (counted {counted})");
    assert_eq!(counted, 62, "each dropped event is counted once");
    let gauge = format!("queuegate_events_outbox_entries{{concert=\"{concert}\"}}");
    assert!(
        poll_until(Duration::from_secs(30), async || app.metric(&gauge).await == CAP).await,
        "the outbox's length is a gauge"
    );

    // Joins and placement go on at the cap: every fan is placed, the outbox still within it.
    let fans: Vec<String> = (0..15).map(|i| format!("fan{i}")).collect();
    for fan in &fans {
        assert_eq!(app.join(concert, fan).await.status(), 202, "a join is never refused for the outbox");
    }
    let placed =
        poll_until(Duration::from_secs(60), async || app.waiting_list(concert).await.len() == fans.len()).await;
    assert!(placed, "every fan is placed while the outbox is full");
    let r = app.admit(concert, 3).await;
    assert_eq!(r.status(), 200, "an admission is never refused for the outbox");
    let len: u64 = names.redis(redis::cmd("XLEN").arg(&outbox)).await;
    assert!(len <= CAP, "still within the cap after placements and admissions: {len}");
    assert!(
        poll_until(Duration::from_secs(30), async || app.metric(dropped).await > 62).await,
        "the entries the placements pushed out are counted too"
    );
    let (status, body) = readyz(&app).await;
    assert_eq!((status, body["degraded"].clone()), (200, json!(["events"])), "{body}");

    // The operator creates the topic: the next check finds it, the outbox drains, no restart.
    let kafka = queuegate::kafka::KafkaClients::new(&names.settings().kafka, queuegate::metrics::Metrics::new());
    let admin: rdkafka::admin::AdminClient<rdkafka::client::DefaultClientContext> =
        kafka.admin().create().expect("admin client");
    let replicas = names.brokers.split(',').count().min(3) as i32;
    let new = rdkafka::admin::NewTopic::new(&missing, 1, rdkafka::admin::TopicReplication::Fixed(replicas));
    for r in admin.create_topics(&[new], &rdkafka::admin::AdminOptions::new()).await.expect("create topic") {
        r.expect("topic created");
    }
    let recovered = poll_until(Duration::from_secs(60), async || {
        let (status, body) = readyz(&app).await;
        seen = body;
        status == 200 && seen.get("degraded").is_none()
    })
    .await;
    assert!(recovered, "no longer degraded once the topic exists (rechecked every 10 s): {seen}");
    assert!(
        poll_until(Duration::from_secs(60), async || {
            names.redis::<u64>(redis::cmd("XLEN").arg(&outbox)).await == 0
        })
        .await,
        "the outbox drains into the topic"
    );
    // What was kept is published: the newest concert change, not the oldest.
    let records = read_events(&names.brokers, &missing, Duration::from_secs(30), |r| {
        r.iter().any(|r| r.value.contains("\"change 40\""))
    })
    .await;
    assert!(records.iter().any(|r| r.value.contains("\"change 40\"")), "the newest change is published");
    assert!(!records.iter().any(|r| r.value.contains("\"change 0\"")), "the oldest change was dropped");
    assert_eq!(app.metric("queuegate_events_topic_unwritable").await, 0);
    app.shutdown().await.expect("clean shutdown");
}
