//! Failures of a three-broker Kafka cluster (replication factor 3, min.insync.replicas 2): a
//! private cluster per scenario, the shared Redis.

use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::ClientConfig;

use crate::checker::{check, join_all};
use crate::common::private_kafka_cluster::PrivateKafkaCluster;
use crate::common::redis_url as shared_redis;
use crate::procs::{kill9, Scenario};

fn fans(n: usize, tag: &str) -> Vec<String> {
    (0..n).map(|i| format!("{tag}-{i:06}")).collect()
}

/// The broker id leading the most partitions of `topic`.
fn busiest_leader(brokers: &str, topic: &str) -> i32 {
    let client: BaseConsumer = ClientConfig::new().set("bootstrap.servers", brokers).create().expect("metadata client");
    let md = client.fetch_metadata(Some(topic), Duration::from_secs(10)).expect("metadata");
    let mut led = std::collections::HashMap::<i32, usize>::new();
    for p in md.topics()[0].partitions() {
        *led.entry(p.leader()).or_default() += 1;
    }
    led.into_iter().max_by_key(|(id, n)| (*n, -id)).expect("partitions have leaders").0
}

/// kill -9 of the broker leading the most `queue.entry` partitions in the middle of a burst of
/// joins. The other two elect new leaders; with min.insync.replicas 2 and acks=all, a 202 means
/// two brokers had the record. Every join is answered 202 or 503 within the delivery timeout
/// (plus the HTTP round trip), and every 202 ends up in Redis exactly once. A join answered 503
/// may still be in Redis (its acknowledgement died with the broker): never twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_of_the_busiest_kafka_leader_mid_burst_loses_and_doubles_nobody() {
    let kafka = PrivateKafkaCluster::start();
    let sc = Scenario::with_brokers(12, shared_redis(), kafka.brokers()).await;
    let gw = Arc::new(sc.spawn_gateway(|_| {}).await);
    gw.open_concert("bk").await;
    let mut consumer = sc.spawn_consumer(500);

    let leader = busiest_leader(&kafka.brokers(), &sc.names.topic);
    let burst = tokio::spawn({
        let gw = gw.clone();
        async move { join_all(std::slice::from_ref(&gw), "bk", fans(30_000, "fan"), 128).await }
    });
    // Mid-burst: once a good part of the fans are in.
    crate::checker::wait_for_waiting(&sc.names, "bk", 5_000, Duration::from_secs(120)).await.unwrap();
    kafka.signal(leader, "-9");
    let burst = burst.await.unwrap();
    kafka.restart_missing();

    let delivery_timeout = Duration::from_millis(sc.names.settings().kafka.kafka_delivery_timeout_ms);
    let report = check(&sc.names, "bk", &burst.accepted, Duration::from_secs(240)).await;
    kill9(&mut consumer);
    println!(
        "chaos kafka-leader-kill: broker {leader} killed; statuses {:?}; slowest join {:.1} s (delivery timeout {:.1} s); {report}",
        burst.statuses,
        burst.slowest.as_secs_f64(),
        delivery_timeout.as_secs_f64()
    );
    assert!(burst.statuses.keys().all(|s| *s == 202 || *s == 503), "only 202 or 503: {:?}", burst.statuses);
    // The gateway answers at the delivery timeout; the rest is the HTTP round trip and the
    // client's own queueing of 128 requests on a busy machine.
    assert!(burst.slowest < delivery_timeout + Duration::from_secs(2), "a join hung past the delivery timeout");
    report.assert_exact_allowing_lost_acks(burst.statuses.get(&503).copied().unwrap_or(0));
}

/// A broker frozen (SIGSTOP) for longer than the brokers' session timeout in the middle of
/// the drain, then resumed: the cluster fences it and moves its leaderships; when it thaws it
/// catches up as a follower. The consumer's group coordinator may have been on it. Nothing
/// lost, nothing doubled.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_kafka_broker_frozen_past_the_session_timeout_then_resumed_loses_and_doubles_nobody() {
    let kafka = PrivateKafkaCluster::start();
    let sc = Scenario::with_brokers(12, shared_redis(), kafka.brokers()).await;
    let gw = Arc::new(sc.spawn_gateway(|_| {}).await);
    gw.open_concert("fz").await;
    let first = join_all(std::slice::from_ref(&gw), "fz", fans(15_000, "early"), 128).await;
    let mut consumer = sc.spawn_consumer(300);
    crate::checker::wait_for_waiting(&sc.names, "fz", 3_000, Duration::from_secs(120)).await.unwrap();

    let frozen = busiest_leader(&kafka.brokers(), &sc.names.topic);
    kafka.signal(frozen, "-STOP");
    // Joins keep coming while it is frozen: 202 once the others lead, 503 before.
    let during = join_all(std::slice::from_ref(&gw), "fz", fans(5_000, "during"), 64).await;
    // Past the brokers' session timeout (9 s) and the consumer's (45 s is librdkafka's default;
    // queuegate's is shorter), counted from the freeze.
    tokio::time::sleep(Duration::from_secs(12)).await;
    kafka.signal(frozen, "-CONT");
    let after = join_all(std::slice::from_ref(&gw), "fz", fans(5_000, "after"), 128).await;

    let accepted: std::collections::HashSet<String> =
        first.accepted.iter().chain(&during.accepted).chain(&after.accepted).cloned().collect();
    let report = check(&sc.names, "fz", &accepted, Duration::from_secs(240)).await;
    kill9(&mut consumer);
    println!(
        "chaos kafka-broker-frozen: broker {frozen} frozen 12 s+; joins during the freeze {:?}; after {:?}; {report}",
        during.statuses, after.statuses
    );
    assert_eq!(first.accepted.len(), 15_000);
    assert_eq!(after.accepted.len(), 5_000, "after the thaw every join is accepted: {:?}", after.statuses);
    report.assert_exact_allowing_lost_acks(during.statuses.get(&503).copied().unwrap_or(0));
}
