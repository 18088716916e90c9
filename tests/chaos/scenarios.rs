//! The scenarios. Each prints its counts (`cargo test --test chaos -- --nocapture` shows them).

use std::sync::Arc;
use std::time::Duration;

use crate::checker::{check, join_all, wait_for_waiting, waiting};
use crate::procs::{kill9, shared_redis, PrivateRedis, Scenario};

fn fans(n: usize, tag: &str) -> Vec<String> {
    (0..n).map(|i| format!("{tag}-{i:06}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_of_the_consumer_mid_drain_loses_and_doubles_nobody() {
    let sc = Scenario::new(12, shared_redis()).await;
    let gw = Arc::new(sc.spawn_gateway(|_| {}).await);
    gw.open_concert("k9").await;
    let burst = join_all(std::slice::from_ref(&gw), "k9", fans(50_000, "fan"), 256).await;
    assert_eq!(
        burst.accepted.len(),
        50_000,
        "statuses: {:?}",
        burst.statuses
    );

    let mut consumer = sc.spawn_consumer(500);
    assert!(
        wait_for_waiting(
            &sc.redis_url,
            &sc.prefix,
            "k9",
            10_000,
            Duration::from_secs(120)
        )
        .await,
        "consumer made progress"
    );
    kill9(&mut consumer);
    let at_kill = waiting(&sc.redis_url, &sc.prefix, "k9").await;
    assert!(
        at_kill < 50_000,
        "the kill came mid-drain ({at_kill} applied)"
    );

    let mut consumer = sc.spawn_consumer(500);
    let report = check(
        &sc.redis_url,
        &sc.prefix,
        "k9",
        &burst.accepted,
        Duration::from_secs(180),
    )
    .await;
    kill9(&mut consumer);
    println!("chaos kill-9-consumer: killed at {at_kill} applied; {report}");
    assert_eq!(
        (report.missing, report.duplicated, report.unacknowledged),
        (0, 0, 0),
        "{report}"
    );
    assert!(report.positions_ok, "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_of_redis_during_the_drain_loses_and_doubles_nobody() {
    let mut redis = PrivateRedis::start();
    let sc = Scenario::new(6, redis.url()).await;
    let gw = Arc::new(sc.spawn_gateway(|_| {}).await);
    gw.open_concert("rk").await;
    let burst = join_all(std::slice::from_ref(&gw), "rk", fans(20_000, "fan"), 256).await;
    assert_eq!(
        burst.accepted.len(),
        20_000,
        "statuses: {:?}",
        burst.statuses
    );

    let mut consumer = sc.spawn_consumer(200);
    assert!(
        wait_for_waiting(
            &sc.redis_url,
            &sc.prefix,
            "rk",
            3_000,
            Duration::from_secs(120)
        )
        .await,
        "consumer made progress"
    );
    redis.kill9();
    // Down long enough for the consumer to hit it and back off at least once.
    tokio::time::sleep(Duration::from_secs(2)).await;
    redis.spawn();
    let at_restart = waiting(&sc.redis_url, &sc.prefix, "rk").await;
    let report = check(
        &sc.redis_url,
        &sc.prefix,
        "rk",
        &burst.accepted,
        Duration::from_secs(180),
    )
    .await;
    kill9(&mut consumer);
    println!("chaos sigkill-redis: {at_restart} in Redis after restart; {report}");
    assert!(at_restart < 20_000, "the kill came mid-drain");
    assert_eq!(
        (report.missing, report.duplicated, report.unacknowledged),
        (0, 0, 0),
        "{report}"
    );
    assert!(report.positions_ok, "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rebalances_under_load_lose_and_double_nobody() {
    let sc = Scenario::new(12, shared_redis()).await;
    let gw = Arc::new(sc.spawn_gateway(|_| {}).await);
    gw.open_concert("rb").await;
    let burst = join_all(std::slice::from_ref(&gw), "rb", fans(30_000, "fan"), 256).await;
    assert_eq!(
        burst.accepted.len(),
        30_000,
        "statuses: {:?}",
        burst.statuses
    );

    let mut first = sc.spawn_consumer(300);
    let mut second = sc.spawn_consumer(300);
    assert!(
        wait_for_waiting(
            &sc.redis_url,
            &sc.prefix,
            "rb",
            5_000,
            Duration::from_secs(120)
        )
        .await
    );
    let mut third = sc.spawn_consumer(300);
    assert!(
        wait_for_waiting(
            &sc.redis_url,
            &sc.prefix,
            "rb",
            12_000,
            Duration::from_secs(120)
        )
        .await
    );
    kill9(&mut first);
    let at_kill = waiting(&sc.redis_url, &sc.prefix, "rb").await;
    let report = check(
        &sc.redis_url,
        &sc.prefix,
        "rb",
        &burst.accepted,
        Duration::from_secs(180),
    )
    .await;
    kill9(&mut second);
    kill9(&mut third);
    println!("chaos rebalance: first consumer killed at {at_kill} applied; {report}");
    assert_eq!(
        (report.missing, report.duplicated, report.unacknowledged),
        (0, 0, 0),
        "{report}"
    );
    assert!(report.positions_ok, "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_same_fans_joining_twenty_times_through_two_gateways_are_queued_once() {
    let sc = Scenario::new(12, shared_redis()).await;
    let a = Arc::new(sc.spawn_gateway(|_| {}).await);
    let b = Arc::new(sc.spawn_gateway(|_| {}).await);
    a.open_concert("rj").await;
    // Let the second gateway's cache see the concert.
    assert!(
        crate::checker::wait_until(Duration::from_secs(10), async || {
            b.client
                .post(format!("{}/v1/concerts/rj/queue", b.http))
                .json(&serde_json::json!({"userId": "probe"}))
                .send()
                .await
                .map(|r| r.status() == 202)
                .unwrap_or(false)
        })
        .await
    );
    let mut consumer = sc.spawn_consumer(500);
    let mut users: Vec<String> = (0..20).flat_map(|_| fans(2_000, "fan")).collect();
    users.push("probe".into());
    // Interleave the repeats: fan-0, fan-1, …, fan-1999, fan-0, … spread over both gateways.
    let burst = join_all(&[a.clone(), b.clone()], "rj", users, 256).await;
    assert_eq!(
        burst.statuses.get(&202).copied(),
        Some(40_001),
        "statuses: {:?}",
        burst.statuses
    );
    let report = check(
        &sc.redis_url,
        &sc.prefix,
        "rj",
        &burst.accepted,
        Duration::from_secs(180),
    )
    .await;
    kill9(&mut consumer);
    println!(
        "chaos repeated-joins: 40001 joins of {} fans; {report}",
        burst.accepted.len()
    );
    assert_eq!(report.accepted, 2_001);
    assert_eq!(
        (report.missing, report.duplicated, report.unacknowledged),
        (0, 0, 0),
        "{report}"
    );
    assert!(report.positions_ok, "{report}");
}
