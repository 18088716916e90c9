//! Records that can never be applied go to the dead-letter topic, once, with the reason.

use std::time::Duration;

use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;

use crate::helpers::{brokers, spawn_app};

async fn produce_raw(topic: &str, key: &str, value: &str) {
    let p: FutureProducer = ClientConfig::new().set("bootstrap.servers", brokers()).create().expect("producer");
    p.send(FutureRecord::to(topic).key(key).payload(value), Duration::from_secs(10)).await.expect("produced");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_records_land_in_the_dead_letter_topic_with_their_reason_and_the_rest_are_applied() {
    let app = spawn_app().await;
    app.open_concert("c").await;
    let topic = app.names.topic.clone();
    produce_raw(&topic, "x:c", "this is not json").await;
    produce_raw(&topic, "someone-else:c", r#"{"entryId":"e","concertId":"c","userId":"fan","joinedAtMs":1}"#).await;
    produce_raw(&topic, "bad id:c", r#"{"entryId":"e","concertId":"c","userId":"bad id","joinedAtMs":1}"#).await;
    assert_eq!(app.join("c", "good-fan").await.status(), 202);
    app.wait_for_records(4).await;
    assert_eq!(app.consumer_records("dead_lettered").await, 3);
    assert_eq!(app.consumer_records("appended").await, 1);
    assert_eq!(app.waiting_list("c").await, vec!["good-fan".to_owned()]);

    let reader: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .set("group.id", format!("{}-dlt-reader", app.names.group))
        .set("isolation.level", "read_committed")
        .set("auto.offset.reset", "earliest")
        .create()
        .expect("reader");
    reader.subscribe(&[&format!("{topic}.dlt")]).unwrap();
    let mut reasons = Vec::new();
    for _ in 0..3 {
        let m =
            tokio::time::timeout(Duration::from_secs(30), reader.recv()).await.expect("a dead letter arrives").unwrap();
        let h = m.headers().expect("headers");
        let get = |k: &str| {
            h.iter()
                .find(|x| x.key == k)
                .and_then(|x| x.value)
                .map(|v| String::from_utf8_lossy(v).into_owned())
                .unwrap_or_default()
        };
        assert_eq!(get("qg-source-topic"), topic);
        assert!(get("qg-source-offset").parse::<i64>().is_ok());
        assert!(get("qg-source-partition").parse::<i32>().is_ok());
        assert!(!get("qg-dlt-detail").is_empty());
        reasons.push(get("qg-dlt-reason"));
    }
    reasons.sort();
    assert_eq!(reasons, vec!["invalid-user-id", "key-mismatch", "undecodable"]);
    // Exactly once: nothing more arrives.
    assert!(tokio::time::timeout(Duration::from_secs(2), reader.recv()).await.is_err(), "no duplicate dead letters");
}

fn replay(
    names: &crate::helpers::Names,
    opts: queuegate::dlt::ReplayOptions,
) -> (queuegate::dlt::ReplaySummary, Vec<String>) {
    let mut lines = Vec::new();
    let summary =
        queuegate::dlt::replay(&names.settings().kafka, opts, |l| lines.push(l.to_owned())).expect("replay runs");
    (summary, lines)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dlt_replay_republishes_valid_dead_letters_once_and_leaves_invalid_ones() {
    let app = spawn_app().await;
    app.open_concert("c").await;
    let dlt = format!("{}.dlt", app.names.topic);
    // A dead letter an older version refused although it is a valid join, and real garbage.
    produce_raw(&dlt, "rescued:c", r#"{"entryId":"e","concertId":"c","userId":"rescued","joinedAtMs":5}"#).await;
    produce_raw(&dlt, "junk", "still not json").await;

    let names = app.names.clone();
    let (dry, _) = tokio::task::spawn_blocking({
        let names = names.clone();
        move || replay(&names, queuegate::dlt::ReplayOptions { dry_run: true, all: false })
    })
    .await
    .unwrap();
    assert_eq!((dry.read, dry.republished, dry.still_invalid), (2, 1, 1));

    let (first, lines) = tokio::task::spawn_blocking({
        let names = names.clone();
        move || replay(&names, queuegate::dlt::ReplayOptions::default())
    })
    .await
    .unwrap();
    assert_eq!((first.read, first.republished, first.still_invalid), (2, 1, 1), "a dry run changes nothing");
    assert!(lines.iter().any(|l| l.contains("still invalid") && l.contains("left in the DLT")), "{lines:?}");
    app.wait_for_records(1).await;
    assert_eq!(app.waiting_list("c").await, vec!["rescued".to_owned()]);

    let (again, _) =
        tokio::task::spawn_blocking(move || replay(&names, queuegate::dlt::ReplayOptions::default())).await.unwrap();
    assert_eq!(again.read, 0, "a second replay continues after the first");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_concert_whose_redis_keys_are_broken_is_parked_while_others_drain_and_replay_brings_every_fan_back() {
    use queuegate::store::keys::Part;
    let app = spawn_app().await;
    app.open_concert("c1").await;
    app.open_concert("c2").await;
    // An operator's mistake: c1's waiting list is a string.
    let waiting = app.names.key("c1", Part::Waiting);
    app.names.redis::<()>(redis::cmd("SET").arg(&waiting).arg("x")).await;

    for i in 0..60 {
        assert_eq!(app.join("c1", &format!("one-{i}")).await.status(), 202);
        assert_eq!(app.join("c2", &format!("two-{i}")).await.status(), 202);
    }
    // c2 drains; c1's sixty are parked, not lost and not half-written.
    app.wait_for_records(120).await;
    assert_eq!(app.waiting_list("c2").await.len(), 60, "the other concert kept draining");
    assert_eq!(app.consumer_records("dead_lettered").await, 60);
    assert_eq!(app.metric("queuegate_consumer_quarantined_records_total").await, 60);
    let joined: u64 = app.names.redis(redis::cmd("HLEN").arg(app.names.key("c1", Part::Joined))).await;
    assert_eq!(joined, 0, "apply.lua wrote nothing for c1 (no fan marked as queued but missing)");

    // Fixed, and replayed: every one of the sixty is queued, once.
    app.names.redis::<()>(redis::cmd("DEL").arg(&waiting)).await;
    let names = app.names.clone();
    let (summary, _) =
        tokio::task::spawn_blocking(move || replay(&names, queuegate::dlt::ReplayOptions::default())).await.unwrap();
    assert_eq!(summary.republished, 60, "{summary:?}");
    app.wait_for_records(180).await;
    let mut queued = app.waiting_list("c1").await;
    queued.sort();
    let mut want: Vec<String> = (0..60).map(|i| format!("one-{i}")).collect();
    want.sort();
    assert_eq!(queued, want, "every parked fan queued exactly once");
}
