//! A Redis short of the replicas `QUEUEGATE_REDIS_MIN_REPLICAS` asks for: degraded, not down.
//! Fans are placed all the same; the consumer holds back its Kafka commits until a replica has
//! the writes, then commits. (The Redis Cluster faults — a primary killed for good, a second
//! failure — are in the chaos suite.)

use std::time::Duration;

use queuegate::config::Role;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use crate::common::private_redis::PrivateRedis;
use crate::helpers::{poll_until, spawn_role, Names};

/// The consumer group's committed offset of partition 0 (-1: none yet).
fn committed(names: &Names) -> i64 {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &names.brokers)
        .set("group.id", &names.group)
        .create()
        .expect("a consumer to read offsets");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition(&names.topic, 0);
    match c.committed_offsets(tpl, Duration::from_secs(5)).ok().and_then(|t| t.elements().first().map(|e| e.offset())) {
        Some(Offset::Offset(n)) => n,
        _ => -1,
    }
}

/// The end of partition 0 now (joins and the consumers' ticks).
fn end_offset(names: &Names) -> i64 {
    let c: BaseConsumer = ClientConfig::new().set("bootstrap.servers", &names.brokers).create().expect("a client");
    c.fetch_watermarks(&names.topic, 0, Duration::from_secs(5)).expect("watermarks").1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_short_of_replicas_is_degraded_not_down_fans_are_placed_and_commits_wait_for_a_replica() {
    let redis = PrivateRedis::start();
    let names = Names::on(crate::common::brokers(), redis.url());
    names.create_topics(1).await;
    let app = spawn_role(&names, Role::Run, |s| {
        s.redis.redis_min_replicas = Some(1);
        s.redis.redis_replica_timeout_ms = 200;
    })
    .await;

    // Ready (joins need Kafka, reads need Redis), the shard listed as degraded and counted.
    let r = app.client.get(format!("{}/readyz", app.admin)).send().await.unwrap();
    assert_eq!(r.status(), 200, "a shard short of replicas does not take the instance out of service");
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!((body["ready"].as_bool(), body["redis"].as_bool()), (Some(true), Some(true)), "{body}");
    assert_eq!(body["degraded"], serde_json::json!(["redisShards"]), "{body}");
    assert_eq!(body["degradedShards"][0]["replicas"], 0, "{body}");
    assert_eq!(body["degradedShards"][0]["down"], false, "{body}");
    assert_eq!(app.metric("queuegate_redis_under_replicated_shards").await, 1);

    // Fans join and are placed, although no replica acknowledges anything.
    app.open_concert("u").await;
    for i in 0..30 {
        assert_eq!(app.join("u", &format!("fan-{i:02}")).await.status(), 202);
    }
    let placed = poll_until(Duration::from_secs(30), async || app.waiting_list("u").await.len() == 30).await;
    assert!(placed, "placed while under-replicated: {} of 30", app.waiting_list("u").await.len());
    assert_eq!(app.metric("queuegate_consumer_held_concerts").await, 1, "the concert's offsets are held");
    let held_at = committed(&names);
    let end = end_offset(&names);
    assert!(held_at <= end - 30, "no offset whose write lacks a replica is committed: {held_at} of {end}");

    // A replica attaches and catches up: the hold ends and the offsets are committed.
    let port = redis.url().rsplit(':').next().unwrap().to_owned();
    let _replica = PrivateRedis::start_with(&["--replicaof", "127.0.0.1", &port]);
    let caught_up = poll_until(Duration::from_secs(30), async || committed(&names) >= end).await;
    assert!(caught_up, "offsets committed once a replica has the writes: {} of {end}", committed(&names));
    assert_eq!(app.metric("queuegate_consumer_held_concerts").await, 0);
    let body: serde_json::Value =
        app.client.get(format!("{}/readyz", app.admin)).send().await.unwrap().json().await.unwrap();
    assert!(body.get("degraded").is_none() && body.get("degradedShards").is_none(), "no longer degraded: {body}");
    assert_eq!(app.metric("queuegate_redis_under_replicated_shards").await, 0);
    assert_eq!(app.waiting_list("u").await.len(), 30, "nobody doubled");
    app.shutdown().await.expect("clean shutdown");
}

/// The apply goes out as EVALSHA in a pipeline with its WAIT: a server that lost its scripts (a
/// restart, a promoted replica, SCRIPT FLUSH) gets the script loaded and the batch applied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_that_lost_its_scripts_gets_them_again_and_the_batch_is_applied() {
    use queuegate::ids::{ConcertId, Lane, UserId};
    let redis = PrivateRedis::start();
    let names = Names::on(crate::common::brokers(), redis.url());
    let store = names.store();
    let c = ConcertId::parse("flush").unwrap();
    let (a, b) = (UserId::parse("a").unwrap(), UserId::parse("b").unwrap());
    store.apply(&c, &[(&a, 1)]).await.unwrap();
    names.redis::<()>(redis::cmd("SCRIPT").arg("FLUSH")).await;
    let applied = store.apply(&c, &[(&a, 1), (&b, 2)]).await.expect("applied after SCRIPT FLUSH");
    assert_eq!((applied.appended, applied.duplicates), (1, 1));
    store.release(&c, &Lane::general(), 3).await.unwrap();
    assert_eq!(store.waiting_list(&c).await.unwrap(), vec!["a", "b"]);
}
