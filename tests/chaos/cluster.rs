//! Failures of a Redis Cluster: a private six-node cluster per scenario (three primaries, three
//! replicas, AOF always), the shared Kafka broker.

use std::sync::Arc;
use std::time::Duration;

use crate::checker::{check, join_all, wait_for_waiting, waiting};
use crate::common::private_cluster::PrivateRedisCluster;
use crate::procs::{kill9, Scenario};
use queuegate::store::keys::Part;

fn fans(n: usize, tag: &str) -> Vec<String> {
    (0..n).map(|i| format!("{tag}-{i:06}")).collect()
}

/// kill -9 of the primary that owns a busy concert's slot while the consumer drains 50,000
/// fans into it, its replica lagging: the replica is frozen (SIGSTOP) and its link cut 1.5 s
/// before the kill, so the primary holds writes the replica never saw, as asynchronous
/// replication allows. The
/// replica resumes and the cluster promotes it. With QUEUEGATE_REDIS_MIN_REPLICAS at its cluster
/// default (1), the consumer held back the offsets of every write the replica had not
/// acknowledged, so the promoted node holds every committed fan; the writes it lacks are found
/// by the consumer's write counter and read again from Kafka. (With 0, the batches committed
/// while the replica lagged are lost at the failover.) The killed node never comes back: the
/// promoted primary has no replica for the rest of the test, and the consumer places everyone
/// all the same, holding its commits.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_of_the_redis_primary_owning_a_concert_mid_drain_loses_and_doubles_nobody() {
    let mut cluster = PrivateRedisCluster::start();
    let sc = Scenario::new(12, cluster.url()).await;
    let gw = Arc::new(sc.spawn_gateway(|_| {}).await);
    gw.open_concert("pk").await;
    let burst = join_all(std::slice::from_ref(&gw), "pk", fans(50_000, "fan"), 256).await;
    assert_eq!(burst.accepted.len(), 50_000, "statuses: {:?}", burst.statuses);

    let mut consumer = sc.spawn_consumer(500);
    assert!(wait_for_waiting(&sc.names, "pk", 10_000, Duration::from_secs(120)).await, "consumer made progress");
    let (primary, replica) = cluster.primary_and_replica_of(&sc.names.key("pk", Part::Waiting));
    let at_freeze = waiting(&sc.names, "pk").await;
    cluster.freeze(replica, true);
    // Replication stops here: the primary drops the link (the frozen replica keeps only what
    // its socket had already received) and goes on taking writes alone.
    cluster.cli(primary, &["CLIENT", "KILL", "TYPE", "replica"]);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    cluster.kill9(primary);
    cluster.freeze(replica, false);
    let key = sc.names.key("pk", Part::Waiting);
    let promoted =
        crate::checker::wait_until(Duration::from_secs(30), async || cluster.primary_of(&key) == Some(replica)).await;
    assert!(promoted, "the cluster promoted the replica");
    assert!(cluster.wait_ok(Duration::from_secs(30)), "every slot served again");

    let report = check(&sc.names, "pk", &burst.accepted, Duration::from_secs(240)).await;
    kill9(&mut consumer);
    println!("chaos cluster-primary-kill: replica frozen at {at_freeze} applied, primary killed 1.5 s later; replica promoted; {report}");
    assert!(at_freeze < 45_000, "the faults came mid-drain");
    report.assert_exact();
}

/// A whole shard down — the primary and the replica that own one concert's slot — while fans
/// join that concert and one on another shard. Joins to both are still accepted (they wait in
/// Kafka). After `QUEUEGATE_CONSUMER_PARK_AFTER_MS` (3 s here) the consumer parks the down
/// concert's joins in `<topic>.parked` and goes on: the other shard's concert drains fully while
/// the shard is still down. Once the shard is back the replayer applies the parked joins, and
/// every fan of both concerts is queued exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_whole_redis_shard_down_parks_its_concerts_while_the_others_drain_and_loses_nobody() {
    let mut cluster = PrivateRedisCluster::start();
    let sc = Scenario::new(6, cluster.url()).await;
    let gw = Arc::new(sc.spawn_gateway(|_| {}).await);
    // Two concerts on different shards.
    let down = "sd-a";
    let key_of = |c: &str| sc.names.key(c, Part::Waiting);
    let (down_primary, down_replica) = cluster.primary_and_replica_of(&key_of(down));
    let other = (0..100)
        .map(|i| format!("sd-b{i}"))
        .find(|c| cluster.primary_of(&key_of(c)) != Some(down_primary))
        .expect("a concert on another shard");
    gw.open_concert(down).await;
    gw.open_concert(&other).await;
    let mut consumer = sc.spawn_consumer_with(200, &[("QUEUEGATE_CONSUMER_PARK_AFTER_MS", "3000".into())]);
    let before_down = join_all(std::slice::from_ref(&gw), down, fans(1_000, "a-early"), 64).await;
    let before_other = join_all(std::slice::from_ref(&gw), &other, fans(1_000, "b-early"), 64).await;
    assert!(wait_for_waiting(&sc.names, &other, 1_000, Duration::from_secs(60)).await);

    cluster.kill9(down_replica);
    cluster.kill9(down_primary);
    let killed = std::time::Instant::now();
    // The gateway's concert cache keeps the down concert open (its last good read).
    let during_down = join_all(std::slice::from_ref(&gw), down, fans(2_000, "a-during"), 64).await;
    let during_other = join_all(std::slice::from_ref(&gw), &other, fans(2_000, "b-during"), 64).await;
    // The other shard's concert drains while this one is still down.
    let drained_while_down = wait_for_waiting(&sc.names, &other, 3_000, Duration::from_secs(90)).await;
    let other_while_down = waiting(&sc.names, &other).await;
    let drained_after = killed.elapsed();
    cluster.spawn(down_primary);
    cluster.spawn(down_replica);
    assert!(cluster.wait_ok(Duration::from_secs(60)), "the shard is back");

    let accepted = |a: &crate::checker::Burst, b: &crate::checker::Burst| -> std::collections::HashSet<String> {
        a.accepted.union(&b.accepted).cloned().collect()
    };
    let report_down = check(&sc.names, down, &accepted(&before_down, &during_down), Duration::from_secs(180)).await;
    let report_other =
        check(&sc.names, &other, &accepted(&before_other, &during_other), Duration::from_secs(180)).await;
    kill9(&mut consumer);
    println!(
        "chaos cluster-shard-down: joins while down {:?} (down shard) / {:?} (other shard); other shard's concert all in Redis {:.1} s after the kill; down shard: {report_down}; other: {report_other}",
        during_down.statuses, during_other.statuses, drained_after.as_secs_f64()
    );
    assert_eq!(during_other.accepted.len(), 2_000, "the other shard's concert kept accepting");
    assert!(
        drained_while_down,
        "the other shard's concert drained while the shard was down: {other_while_down} of 3000"
    );
    assert_eq!(during_down.accepted.len(), 2_000, "joins to the down shard's concert are accepted into Kafka");
    report_down.assert_exact();
    report_other.assert_exact();
}
