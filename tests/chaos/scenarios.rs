//! The scenarios. Each prints its counts (`cargo test --test chaos -- --nocapture` shows them).

use std::sync::Arc;
use std::time::Duration;

use crate::checker::{
    admitted_at_least, applied, check, check_lane, join_all, join_all_in, wait_for, wait_for_applied, wait_for_waiting,
    waiting,
};
use queuegate::store::keys::Part;

use crate::common::redis_url as shared_redis;
use crate::procs::{kill9, PrivateKafka, PrivateRedis, Scenario};

fn fans(n: usize, tag: &str) -> Vec<String> {
    (0..n).map(|i| format!("{tag}-{i:06}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_of_the_consumer_mid_drain_loses_and_doubles_nobody() {
    let sc = Scenario::new(12, shared_redis()).await;
    let gw = Arc::new(sc.spawn_gateway(|_| {}).await);
    gw.open_concert("k9").await;
    let burst = join_all(std::slice::from_ref(&gw), "k9", fans(50_000, "fan"), 256).await;
    assert_eq!(burst.accepted.len(), 50_000, "statuses: {:?}", burst.statuses);

    let mut consumer = sc.spawn_consumer(500);
    wait_for_applied(&sc.names, "k9", 10_000, Duration::from_secs(120)).await.expect("consumer made progress");
    kill9(&mut consumer);
    let at_kill = applied(&sc.names, "k9").await;
    assert!(at_kill < 50_000, "the kill came mid-drain ({at_kill} applied)");

    let mut consumer = sc.spawn_consumer(500);
    let report = check(&sc.names, "k9", &burst.accepted, Duration::from_secs(180)).await;
    kill9(&mut consumer);
    println!("chaos kill-9-consumer: killed at {at_kill} applied; {report}");
    report.assert_exact();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_of_the_consumer_mid_drain_loses_and_doubles_nobody_in_either_lane() {
    let sc = Scenario::new(6, shared_redis()).await;
    let gw = Arc::new(sc.spawn_gateway(|_| {}).await);
    let lanes = serde_json::json!({"state": "open", "lanes": [{"name": "fanclub", "share": 7}, {"name": "general", "share": 3}]});
    assert_eq!(gw.put_concert("k9l", lanes).await.status(), 200);
    // 20,000 fans, every third in the fan club; a thousand of them also join the other lane
    // afterwards (their first lane holds).
    let mut joins: Vec<(String, Option<String>)> = fans(20_000, "lfan")
        .into_iter()
        .enumerate()
        .map(|(i, u)| (u, (i % 3 == 0).then(|| "fanclub".to_owned())))
        .collect();
    let switchers: Vec<(String, Option<String>)> = joins[..1000]
        .iter()
        .map(|(u, l)| (u.clone(), if l.is_some() { None } else { Some("fanclub".to_owned()) }))
        .collect();
    let first_lane: std::collections::HashMap<String, bool> =
        joins.iter().map(|(u, l)| (u.clone(), l.is_some())).collect();
    let burst = join_all_in(std::slice::from_ref(&gw), "k9l", std::mem::take(&mut joins), 256).await;
    assert_eq!(burst.accepted.len(), 20_000, "statuses: {:?}", burst.statuses);

    let mut consumer = sc.spawn_consumer(500);
    wait_for_applied(&sc.names, "k9l", 3_000, Duration::from_secs(120)).await.expect("consumer made progress");
    kill9(&mut consumer);
    let at_kill = applied(&sc.names, "k9l").await;
    assert!(at_kill < 13_333, "the kill came mid-drain ({at_kill} general fans applied)");
    // The lane switchers join while no consumer runs: their records wait in Kafka.
    let again = join_all_in(std::slice::from_ref(&gw), "k9l", switchers, 64).await;
    assert_eq!(again.accepted.len(), 1000, "statuses: {:?}", again.statuses);

    let mut consumer = sc.spawn_consumer(500);
    let in_lane = |fanclub: bool| -> std::collections::HashSet<String> {
        burst.accepted.iter().filter(|u| first_lane[*u] == fanclub).cloned().collect()
    };
    let fanclub = check_lane(&sc.names, "k9l", "fanclub", &in_lane(true), Duration::from_secs(180)).await;
    let general = check_lane(&sc.names, "k9l", "general", &in_lane(false), Duration::from_secs(180)).await;
    kill9(&mut consumer);
    println!("chaos kill-9-consumer-lanes: killed at {at_kill} general applied; fanclub {fanclub}; general {general}");
    fanclub.assert_exact();
    general.assert_exact();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_of_redis_during_the_drain_loses_and_doubles_nobody() {
    let mut redis = PrivateRedis::start();
    let sc = Scenario::new(6, redis.url()).await;
    let gw = Arc::new(sc.spawn_gateway(|_| {}).await);
    gw.open_concert("rk").await;
    let burst = join_all(std::slice::from_ref(&gw), "rk", fans(20_000, "fan"), 256).await;
    assert_eq!(burst.accepted.len(), 20_000, "statuses: {:?}", burst.statuses);

    let mut consumer = sc.spawn_consumer(200);
    wait_for_waiting(&sc.names, "rk", 3_000, Duration::from_secs(120)).await.expect("consumer made progress");
    redis.kill9();
    // Down long enough for the consumer to hit it and back off at least once.
    tokio::time::sleep(Duration::from_secs(2)).await;
    redis.spawn();
    let at_restart = waiting(&sc.names, "rk").await;
    let report = check(&sc.names, "rk", &burst.accepted, Duration::from_secs(180)).await;
    kill9(&mut consumer);
    println!("chaos sigkill-redis: {at_restart} in Redis after restart; {report}");
    assert!(at_restart < 20_000, "the kill came mid-drain");
    report.assert_exact();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rebalances_under_load_lose_and_double_nobody() {
    let sc = Scenario::new(12, shared_redis()).await;
    let gw = Arc::new(sc.spawn_gateway(|_| {}).await);
    gw.open_concert("rb").await;
    let burst = join_all(std::slice::from_ref(&gw), "rb", fans(30_000, "fan"), 256).await;
    assert_eq!(burst.accepted.len(), 30_000, "statuses: {:?}", burst.statuses);

    let mut first = sc.spawn_consumer(300);
    let mut second = sc.spawn_consumer(300);
    wait_for_waiting(&sc.names, "rb", 5_000, Duration::from_secs(120)).await.unwrap();
    let mut third = sc.spawn_consumer(300);
    wait_for_waiting(&sc.names, "rb", 12_000, Duration::from_secs(120)).await.unwrap();
    kill9(&mut first);
    let at_kill = waiting(&sc.names, "rb").await;
    let report = check(&sc.names, "rb", &burst.accepted, Duration::from_secs(180)).await;
    kill9(&mut second);
    kill9(&mut third);
    println!("chaos rebalance: first consumer killed at {at_kill} applied; {report}");
    report.assert_exact();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_same_fans_joining_twenty_times_through_two_gateways_are_queued_once() {
    let sc = Scenario::new(12, shared_redis()).await;
    let a = Arc::new(sc.spawn_gateway(|_| {}).await);
    let b = Arc::new(sc.spawn_gateway(|_| {}).await);
    a.open_concert("rj").await;
    // Let the second gateway's cache see the concert.
    wait_for(Duration::from_secs(10), "the second gateway to answer a join 202", async || {
        let answer = b
            .client
            .post(format!("{}/v1/concerts/rj/queue", b.http()))
            .json(&serde_json::json!({"userId": "probe"}))
            .send()
            .await
            .map(|r| r.status().as_u16());
        (matches!(answer, Ok(202)), format!("{answer:?}"))
    })
    .await
    .unwrap();
    let mut consumer = sc.spawn_consumer(500);
    let mut users: Vec<String> = (0..20).flat_map(|_| fans(2_000, "fan")).collect();
    users.push("probe".into());
    // Interleave the repeats: fan-0, fan-1, …, fan-1999, fan-0, … spread over both gateways.
    let burst = join_all(&[a.clone(), b.clone()], "rj", users, 256).await;
    assert_eq!(burst.statuses.get(&202).copied(), Some(40_001), "statuses: {:?}", burst.statuses);
    let report = check(&sc.names, "rj", &burst.accepted, Duration::from_secs(180)).await;
    kill9(&mut consumer);
    println!("chaos repeated-joins: 40001 joins of {} fans; {report}", burst.accepted.len());
    assert_eq!(report.accepted, 2_001);
    report.assert_exact();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_broker_restart_during_a_join_burst_answers_503_meanwhile_and_keeps_every_202() {
    let mut kafka = PrivateKafka::start();
    let sc = Scenario::with_brokers(6, shared_redis(), kafka.brokers()).await;
    let gw = Arc::new(sc.spawn_gateway(|s| s.kafka.kafka_delivery_timeout_ms = 2000).await);
    gw.open_concert("br").await;
    let mut consumer = sc.spawn_consumer(500);

    let before = join_all(std::slice::from_ref(&gw), "br", fans(5_000, "before"), 128).await;
    assert_eq!(before.accepted.len(), 5_000, "statuses before the outage: {:?}", before.statuses);

    // The burst goes on while the broker stops, stays down, and comes back.
    let burst = {
        let gw = gw.clone();
        tokio::spawn(async move { join_all(&[gw], "br", fans(15_000, "during"), 64).await })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    tokio::task::block_in_place(|| kafka.stop());
    let outage = join_all(std::slice::from_ref(&gw), "br", fans(200, "outage"), 32).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    tokio::task::block_in_place(|| kafka.spawn());
    let during = burst.await.unwrap();

    // Once the broker is back the gateway recovers on its own.
    let after = wait_for(Duration::from_secs(120), "all 1,000 joins after the restart answered 202", async || {
        let after = join_all(std::slice::from_ref(&gw), "br", fans(1_000, "after"), 64).await;
        (after.accepted.len() == 1_000, after)
    })
    .await
    .unwrap();

    let mut accepted = before.accepted.clone();
    accepted.extend(during.accepted.iter().cloned());
    accepted.extend(outage.accepted.iter().cloned());
    accepted.extend(after.accepted.iter().cloned());
    let report = check(&sc.names, "br", &accepted, Duration::from_secs(180)).await;
    kill9(&mut consumer);
    // First come, first placed through the restart: placed in stamp order.
    let queue = crate::order::queue_with_stamps(&sc.names, "br").await;
    let overtaking = crate::order::worst_overtaking(queue.iter().map(|(_, s)| *s));
    println!(
        "chaos broker-restart: during-burst statuses {:?}, while-down statuses {:?}; {report}; worst overtaking by stamp {overtaking} ms",
        during.statuses, outage.statuses
    );
    assert!(overtaking <= 1000, "a fan was placed behind one stamped {overtaking} ms after it");
    assert_eq!(outage.statuses.get(&202), None, "no 202 while the broker is down: {:?}", outage.statuses);
    assert!(outage.statuses.get(&503).copied().unwrap_or(0) > 0, "503 while the broker is down: {:?}", outage.statuses);
    assert_eq!(during.statuses.get(&0), None, "no join hung or failed without an answer: {:?}", during.statuses);
    assert_eq!((report.missing, report.duplicated), (0, 0), "{report}");
    assert!(report.positions_ok, "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_redis_outage_longer_than_the_poll_interval_keeps_the_consumer_in_its_group() {
    let mut redis = PrivateRedis::start();
    let sc = Scenario::new(3, redis.url()).await;
    let gw = Arc::new(sc.spawn_gateway(|_| {}).await);
    gw.open_concert("lo").await;
    let burst = join_all(std::slice::from_ref(&gw), "lo", fans(6_000, "fan"), 128).await;
    assert_eq!(burst.accepted.len(), 6_000, "statuses: {:?}", burst.statuses);

    let admin_port = crate::common::free_port();
    let mut consumer = sc.spawn_consumer_with(
        100,
        &[
            ("QUEUEGATE_ADMIN_ADDR", format!("127.0.0.1:{admin_port}")),
            // The smallest librdkafka allows (= the session timeout): a consumer that stopped
            // polling during the outage would be dropped from the group after 10 s.
            ("QUEUEGATE_KAFKA_MAX_POLL_INTERVAL_MS", "10000".into()),
        ],
    );
    let metrics = format!("http://127.0.0.1:{admin_port}/metrics");
    let rebalances = |kind: &'static str| {
        let metrics = metrics.clone();
        async move {
            let text = reqwest::get(&metrics).await.ok()?.text().await.ok()?;
            let series = format!("queuegate_consumer_rebalance_events_total{{kind=\"{kind}\"}}");
            Some(crate::common::metric_value(&text, &series))
        }
    };
    wait_for_waiting(&sc.names, "lo", 500, Duration::from_secs(120)).await.unwrap();
    assert_eq!(rebalances("assign").await, Some(1));
    redis.kill9();
    // Twice the poll interval, and more than the session timeout.
    tokio::time::sleep(Duration::from_secs(22)).await;
    let revoked_during_outage = rebalances("revoke").await;
    redis.spawn();
    let report = check(&sc.names, "lo", &burst.accepted, Duration::from_secs(120)).await;
    let revoked_after = rebalances("revoke").await;
    kill9(&mut consumer);
    println!(
        "chaos long-redis-outage: revocations during {revoked_during_outage:?}, after {revoked_after:?}; {report}"
    );
    assert_eq!(revoked_during_outage, Some(0), "the consumer kept its partitions through a 22 s Redis outage");
    assert_eq!(revoked_after, Some(0));
    report.assert_exact();
}

/// A consumer's metric, read from its admin listener; None while it does not answer.
async fn consumer_metric(admin_port: u16, series: &str) -> Option<u64> {
    let text = reqwest::get(format!("http://127.0.0.1:{admin_port}/metrics")).await.ok()?.text().await.ok()?;
    Some(crate::common::metric_value(&text, series))
}

/// Partitions a consumer paused for a Redis outage, handed to a second consumer before Redis
/// came back, and handed back after the second is killed: the first reads them again. librdkafka
/// keeps an application's pause on a partition through its revocation and later assignment; a
/// consumer that resumed only what it held when Redis came back never read those partitions
/// again, and since placement waits for every partition's watermark nobody joining later was
/// placed (CI saw it once as a consumer frozen mid-write: 6,731 of 8,406 fans never placed).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn partitions_paused_for_a_redis_outage_and_handed_over_meanwhile_are_read_when_they_come_back() {
    let mut redis = PrivateRedis::start();
    let sc = Scenario::new(6, redis.url()).await;
    let gw = Arc::new(sc.spawn_gateway(|_| {}).await);
    gw.open_concert("ph").await;
    let (first_port, second_port) = (crate::common::free_port(), crate::common::free_port());
    let mut first = sc.spawn_consumer_with(200, &[("QUEUEGATE_ADMIN_ADDR", format!("127.0.0.1:{first_port}"))]);
    let warm = join_all(std::slice::from_ref(&gw), "ph", fans(600, "warm"), 64).await;
    wait_for_waiting(&sc.names, "ph", 600, Duration::from_secs(120))
        .await
        .expect("the first consumer places the warm-up");

    redis.kill9();
    let down = join_all(std::slice::from_ref(&gw), "ph", fans(600, "down"), 64).await;
    // The first consumer fails to write them and pauses all six partitions.
    wait_for(Duration::from_secs(30), "the first consumer to retry a Redis write during the outage", async || {
        let n = consumer_metric(first_port, "queuegate_consumer_retries_total{stage=\"redis\"}").await;
        (n.is_some_and(|n| n > 0), n)
    })
    .await
    .unwrap();
    // The second joins the group and takes half the partitions, paused by the first.
    let mut second = sc.spawn_consumer_with(200, &[("QUEUEGATE_ADMIN_ADDR", format!("127.0.0.1:{second_port}"))]);
    wait_for(Duration::from_secs(60), "the second consumer to be given partitions during the outage", async || {
        let n = consumer_metric(second_port, "queuegate_consumer_rebalance_events_total{kind=\"assign\"}").await;
        (n.is_some_and(|n| n > 0), n)
    })
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    redis.spawn();
    wait_for_waiting(&sc.names, "ph", 1_200, Duration::from_secs(120))
        .await
        .expect("both consumers place what joined during the outage");

    // The second's partitions go back to the first after the session timeout.
    kill9(&mut second);
    let after = join_all(std::slice::from_ref(&gw), "ph", fans(600, "after"), 64).await;
    let mut accepted = warm.accepted.clone();
    accepted.extend(down.accepted.iter().cloned());
    accepted.extend(after.accepted.iter().cloned());
    let report = check(&sc.names, "ph", &accepted, Duration::from_secs(90)).await;
    kill9(&mut first);
    println!("chaos paused-handover: {report}");
    assert_eq!(accepted.len(), 1_800, "statuses: {:?} {:?} {:?}", warm.statuses, down.statuses, after.statuses);
    report.assert_exact();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_admitter_lease_is_taken_over_after_kill_9_of_its_holder_and_nobody_is_admitted_twice() {
    let sc = Scenario::new(3, shared_redis()).await;
    let gw = Arc::new(sc.spawn_gateway(|_| {}).await);
    gw.open_concert("lt").await;
    let burst = join_all(std::slice::from_ref(&gw), "lt", fans(2_000, "fan"), 128).await;
    assert_eq!(burst.accepted.len(), 2_000);
    let mut holder = sc.spawn_consumer(500);
    wait_for_waiting(&sc.names, "lt", 2_000, Duration::from_secs(120)).await.unwrap();

    let mut redis = crate::checker::redis_conn(sc.redis_url()).await.expect("redis");
    let adm_key = sc.names.key("lt", Part::Adm);
    let admitted = async |c: &mut crate::common::RawRedis| -> u64 {
        c.query::<Option<u64>>(redis::cmd("HGET").arg(&adm_key).arg("admitted")).await.unwrap().unwrap_or(0)
    };
    gw.client
        .put(format!("{}/admin/v1/concerts/lt", gw.admin))
        .bearer_auth(crate::common::ADMIN_TOKEN)
        .json(&serde_json::json!({"state": "open", "admitPerSecond": 100}))
        .send()
        .await
        .unwrap();
    admitted_at_least(&mut redis, &adm_key, 101, Duration::from_secs(30)).await.expect("the first consumer admits");
    let first_lease: String = redis.query(redis::cmd("GET").arg(sc.names.key("lt", Part::Lease))).await.unwrap();

    let mut successor = sc.spawn_consumer(500);
    tokio::time::sleep(Duration::from_secs(1)).await;
    kill9(&mut holder);
    let killed_at = std::time::Instant::now();
    let at_kill = admitted(&mut redis).await;
    admitted_at_least(&mut redis, &adm_key, at_kill + 101, Duration::from_secs(30))
        .await
        .expect("the successor goes on admitting");
    let takeover = killed_at.elapsed();
    let second_lease: String = redis.query(redis::cmd("GET").arg(sc.names.key("lt", Part::Lease))).await.unwrap();
    let fence = |v: &str| v.rsplit(':').next().unwrap().parse::<u64>().unwrap();

    // Nobody twice: admitted fans are distinct, none of them still waits, counters agree.
    kill9(&mut successor);
    let states: Vec<(String, String)> =
        redis.query(redis::cmd("HGETALL").arg(sc.names.key("lt", Part::State))).await.unwrap();
    let total = admitted(&mut redis).await;
    let admitted_fans: std::collections::HashSet<&str> =
        states.iter().filter(|(_, s)| s.starts_with("a:")).map(|(u, _)| u.as_str()).collect();
    let waiting: Vec<String> =
        redis.query(redis::cmd("LRANGE").arg(sc.names.key("lt", Part::Waiting)).arg(0).arg(-1)).await.unwrap();
    println!(
        "chaos lease-takeover: lease {first_lease} -> {second_lease}, admissions resumed {:.1} s after the kill; admitted={total} distinct={} still-waiting={}",
        takeover.as_secs_f64(),
        admitted_fans.len(),
        waiting.len()
    );
    assert!(fence(&second_lease) > fence(&first_lease), "a new holding has a higher fence");
    assert!(takeover < Duration::from_secs(10), "taken over within the 3 s lease (+ rounds): {takeover:?}");
    assert_eq!(admitted_fans.len() as u64, total, "each admission counted once");
    assert!(waiting.iter().all(|w| !admitted_fans.contains(w.as_str())), "an admitted fan is still waiting");
    assert_eq!(admitted_fans.len() + waiting.len(), 2_000, "every fan is either admitted once or waiting");
}

/// Resident memory of a process (VmRSS, KiB).
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmRSS:"))?.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or_else(|| panic!("no VmRSS for process {pid}: a bound checked against 0 checks nothing"))
}

/// The bound the surviving consumer's memory (a debug build) must stay under while 200,000
/// joins wait and then drain: its prefetch (8 MB), one batch and the process itself; the backlog
/// stays in Kafka. Measured: ~120 MiB before events out; 221-257 MiB since, the peak read after
/// the drain, when the same process has also relayed the 200,000 fans' events (20,000 at most in
/// flight) and read them back in chunks of 5,000 (idle, the release build grew 40 → 47 MB).
/// Still independent of the backlog's size; why the drain's peak doubled is not yet found.
const CONSUMER_RSS_BOUND_MIB: u64 = 320;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_redis_outage_with_a_rebalance_keeps_consumer_memory_bounded_and_loses_nobody() {
    let mut redis = PrivateRedis::start();
    let sc = Scenario::new(6, redis.url()).await;
    let gw = Arc::new(sc.spawn_gateway(|_| {}).await);
    gw.open_concert("mb").await;
    let mut first = sc.spawn_consumer(2000);
    let admin_port = crate::common::free_port();
    let mut survivor = sc.spawn_consumer_with(2000, &[("QUEUEGATE_ADMIN_ADDR", format!("127.0.0.1:{admin_port}"))]);
    let carried = async || -> Option<u64> {
        let text = reqwest::get(format!("http://127.0.0.1:{admin_port}/metrics")).await.ok()?.text().await.ok()?;
        text.lines()
            .find_map(|l| l.strip_prefix("queuegate_consumer_carried_records "))
            .and_then(|v| v.trim().parse().ok())
    };
    let warm = join_all(std::slice::from_ref(&gw), "mb", fans(2_000, "warm"), 128).await;
    wait_for_waiting(&sc.names, "mb", 2_000, Duration::from_secs(120)).await.expect("both consumers drain");

    redis.kill9();
    let backlog = join_all(std::slice::from_ref(&gw), "mb", fans(200_000, "fan"), 256).await;
    // The survivor takes the killed consumer's partitions in the middle of the outage (after the
    // session timeout); those arrive unpaused.
    kill9(&mut first);
    let (mut peak_kib, mut peak_carried, mut carried_reads) = (0, 0, 0);
    for _ in 0..50 {
        peak_kib = peak_kib.max(rss_kib(survivor.id()));
        if let Some(c) = carried().await {
            peak_carried = peak_carried.max(c);
            carried_reads += 1;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(carried_reads >= 25, "the survivor's metrics answered {carried_reads} of 50 reads");
    redis.spawn();
    let mut accepted = warm.accepted.clone();
    accepted.extend(backlog.accepted.iter().cloned());
    let report = check(&sc.names, "mb", &accepted, Duration::from_secs(300)).await;
    peak_kib = peak_kib.max(rss_kib(survivor.id()));
    kill9(&mut survivor);
    println!(
        "chaos memory-bound: survivor peak RSS {} MiB, peak carried {peak_carried} records during the outage; {report}",
        peak_kib / 1024
    );
    assert_eq!(backlog.accepted.len(), 200_000, "statuses: {:?}", backlog.statuses);
    report.assert_exact();
    assert!(peak_carried <= 2000, "the survivor held {peak_carried} records; at most one batch (2,000)");
    assert!(peak_kib / 1024 < CONSUMER_RSS_BOUND_MIB, "survivor peaked at {} MiB", peak_kib / 1024);
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

/// Seconds since midnight (UTC) of the first log line's RFC 3339 `timestamp`.
fn logged_second_of_day(log: &std::path::Path) -> Option<i64> {
    let text = std::fs::read_to_string(log).ok()?;
    let ts = text.lines().next()?.split("\"timestamp\":\"").nth(1)?;
    let hms: Vec<i64> = ts.get(11..19)?.split(':').map(|p| p.parse().ok()).collect::<Option<_>>()?;
    Some(hms[0] * 3600 + hms[1] * 60 + hms[2])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_admitter_whose_clock_is_30_s_behind_admits_at_the_rate_and_stamps_tokens_on_time() {
    let started_ms = now_ms();
    let sc = Scenario::new(3, shared_redis()).await;
    let gw = Arc::new(sc.spawn_gateway(|_| {}).await);
    gw.open_concert("sk").await;
    let burst = join_all(std::slice::from_ref(&gw), "sk", fans(2_000, "sk"), 128).await;
    assert_eq!(burst.accepted.len(), 2_000);
    let mut holder = sc.spawn_consumer(500);
    wait_for_waiting(&sc.names, "sk", 2_000, Duration::from_secs(120)).await.unwrap();

    let mut redis = crate::checker::redis_conn(sc.redis_url()).await.expect("redis");
    let adm_key = sc.names.key("sk", Part::Adm);
    let admitted = async |c: &mut crate::common::RawRedis| -> u64 {
        c.query::<Option<u64>>(redis::cmd("HGET").arg(&adm_key).arg("admitted")).await.unwrap().unwrap_or(0)
    };
    let r = gw.put_concert("sk", serde_json::json!({"state": "open", "admitPerSecond": 50})).await;
    assert_eq!(r.status(), 200);
    admitted_at_least(&mut redis, &adm_key, 51, Duration::from_secs(30)).await.expect("the holder admits");

    // An instance 30 s behind takes the lease over. With the instance's time in the scripts, the
    // rate bucket (stamped by the holder) would lie 30 s in its future and admission would stall.
    let log = std::env::temp_dir().join(format!("qgchaos-skewed-{}.log", uuid::Uuid::new_v4()));
    let mut skewed = sc.spawn_skewed_consumer(500, "-30s", &log);
    tokio::time::sleep(Duration::from_secs(1)).await;
    kill9(&mut holder);
    let killed = std::time::Instant::now();
    let at_kill = admitted(&mut redis).await;
    let resumed = admitted_at_least(&mut redis, &adm_key, at_kill + 200, Duration::from_secs(20)).await;
    let took = killed.elapsed();
    let states: Vec<(String, String)> =
        redis.query(redis::cmd("HGETALL").arg(sc.names.key("sk", Part::State))).await.unwrap();
    kill9(&mut skewed);
    // The skew was real: the instance logged a time about 30 s behind.
    let real = (now_ms() / 1000).rem_euclid(86_400);
    let behind = logged_second_of_day(&log).map(|logged| (real - logged).rem_euclid(86_400));
    let _ = std::fs::remove_file(&log);
    println!("chaos clock-skew: the skewed instance logged {behind:?} s behind; 200 more admitted in {took:?}");
    assert!(behind.is_some_and(|b| (25..=60).contains(&b)), "libfaketime put the instance behind: {behind:?}");
    resumed.expect("admission went on at the configured rate under the skewed instance");
    // Every admission was stamped with Redis's time: issued during this test, valid for 600 s.
    for (user, state) in states.iter().filter(|(_, s)| s.starts_with("a:")) {
        let mut parts = state.split(':').skip(1).map(|p| p.parse::<i64>().unwrap());
        let (iat, exp) = (parts.next().unwrap(), parts.next().unwrap());
        assert!(iat >= started_ms - 1_000 && iat <= now_ms() + 1_000, "{user} stamped {iat}, test began {started_ms}");
        assert_eq!(exp - iat, 600_000, "{user}'s token lives the concert's 600 s");
    }
}

/// The fair start's cut with the instances that should do it dead: two consumers (each with an
/// admitter) hold 3,000 fans before opensAt; both are frozen (SIGSTOP) just after opensAt, 3,000
/// more fans join, the cut's time passes with nobody able to do it, and both are killed with -9.
/// A third consumer started afterwards records the watermarks, applies the rest and cuts. The cut
/// happens once: the first 3,000 places are the pre-queue in the published seed's order, then the
/// later fans, nobody lost or doubled.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_of_the_consumers_at_the_fair_start_cut_still_cuts_once() {
    let sc = Scenario::new(6, shared_redis()).await;
    let fast_cut = |s: &mut queuegate::config::Settings| {
        s.kafka.kafka_delivery_timeout_ms = 2_000;
        s.admission.clock_skew_ms = 100;
    };
    let env =
        [("QUEUEGATE_KAFKA_DELIVERY_TIMEOUT_MS", "2000".to_owned()), ("QUEUEGATE_CLOCK_SKEW_MS", "100".to_owned())];
    let gw = Arc::new(sc.spawn_gateway(fast_cut).await);
    let schedule = async |in_ms: i64| {
        let at = queuegate::clock::now_ms() + in_ms;
        let r =
            gw.put_concert("fs", serde_json::json!({"state": "open", "opensAt": queuegate::clock::rfc3339(at)})).await;
        assert_eq!(r.status(), 200);
        at
    };
    schedule(600_000).await;
    let mut a = sc.spawn_consumer_with(500, &env);
    let mut b = sc.spawn_consumer_with(500, &env);
    let early = join_all(std::slice::from_ref(&gw), "fs", fans(3_000, "early"), 128).await;
    assert_eq!(early.accepted.len(), 3_000);
    let mut redis = crate::checker::redis_conn(sc.redis_url()).await.expect("redis");
    let hold_key = sc.names.key("fs", Part::Hold);
    wait_for(Duration::from_secs(60), "the 3,000 early fans held", async || {
        let held = redis.query::<u64>(redis::cmd("HLEN").arg(&hold_key)).await.unwrap();
        (held == 3_000, held)
    })
    .await
    .unwrap();

    let opens_at = schedule(300).await;
    crate::common::signal(a.id(), "-STOP");
    crate::common::signal(b.id(), "-STOP");
    tokio::time::sleep(Duration::from_millis((opens_at - queuegate::clock::now_ms()).max(0) as u64 + 100)).await;
    let late = join_all(std::slice::from_ref(&gw), "fs", fans(3_000, "late"), 128).await;
    assert_eq!(late.accepted.len(), 3_000);
    // The cut's time (opensAt + 2 s + 2 x 0.1 s) passes with both instances frozen, then they die.
    tokio::time::sleep(Duration::from_millis((opens_at + 3_500 - queuegate::clock::now_ms()).max(0) as u64)).await;
    let fair_key = sc.names.key("fs", Part::Fair);
    let cut_before: bool = redis.query(redis::cmd("HEXISTS").arg(&fair_key).arg("shuffledAt")).await.unwrap();
    assert!(!cut_before, "nobody could cut while both were frozen");
    kill9(&mut a);
    kill9(&mut b);

    let mut c = sc.spawn_consumer_with(500, &env);
    let fair =
        wait_for(Duration::from_secs(90), "the third instance's cut (a seed in the fairness record)", async || {
            let fair = gw.fairness("fs").await;
            (fair.get("seed").is_some(), fair)
        })
        .await
        .unwrap();
    wait_for_waiting(&sc.names, "fs", 6_000, Duration::from_secs(60)).await.expect("every fan queued");
    let queue: Vec<String> =
        redis.query(redis::cmd("LRANGE").arg(sc.names.key("fs", Part::Waiting)).arg(0).arg(-1)).await.unwrap();
    kill9(&mut c);
    let distinct = queue.iter().collect::<std::collections::HashSet<_>>().len();
    println!("chaos fair-start: queued {} ({distinct} distinct), prequeued {}", queue.len(), fair["prequeued"]);
    assert_eq!((queue.len(), distinct), (6_000, 6_000), "nobody lost, nobody doubled");
    assert_eq!(fair["prequeued"], 3_000);
    assert_eq!(fair["late"], 0);
    let pre: Vec<String> = early.accepted.iter().cloned().collect();
    assert_eq!(queue[..3_000], queuegate::fairness::order(fair["seed"].as_str().unwrap(), &pre).unwrap()[..]);
    assert!(queue[3_000..].iter().all(|u| late.accepted.contains(u)));
}
