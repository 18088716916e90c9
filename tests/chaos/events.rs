//! Events out under kill -9: a gateway, a consumer and the process running admissions are each
//! killed mid-burst, and every change in Redis's final state still has its event on the events
//! topic, any duplicate with the same `ce_id`.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use queuegate::store::keys::Part;

use crate::checker::{applied, redis_conn, wait_until};
use crate::common::events_topic::{distinct_ids, read_events, Behaviour, Receiver};
use crate::common::redis_url as shared_redis;
use crate::common::{free_port, wait_for_port, ADMIN_TOKEN};
use crate::procs::{kill9, KillOnDrop, Scenario};

/// Joins `users` through `base`, `concurrency` at a time: the fans that got 202, and how many
/// got no answer at all (their join may or may not have reached Kafka).
async fn burst(base: String, users: Vec<String>, concurrency: usize) -> (HashSet<String>, usize) {
    let client = reqwest::Client::new();
    let gate = Arc::new(tokio::sync::Semaphore::new(concurrency));
    let mut tasks = Vec::new();
    for user in users {
        let permit = gate.clone().acquire_owned().await.unwrap();
        let (client, url) = (client.clone(), format!("{base}/v1/concerts/ev/queue"));
        tasks.push(tokio::spawn(async move {
            let _permit = permit;
            let r = client
                .post(url)
                .json(&serde_json::json!({"userId": user}))
                .timeout(Duration::from_secs(10))
                .send()
                .await;
            match r {
                Ok(r) => Ok((r.status() == 202).then_some(user)),
                Err(_) => Err(()),
            }
        }));
    }
    let (mut accepted, mut unanswered) = (HashSet::new(), 0);
    for t in tasks {
        match t.await.unwrap() {
            Ok(Some(u)) => {
                accepted.insert(u);
            }
            Ok(None) => {}
            Err(()) => unanswered += 1,
        }
    }
    (accepted, unanswered)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_of_a_gateway_a_consumer_and_the_admitter_mid_burst_leaves_no_change_without_its_event() {
    let sc = Scenario::new(6, shared_redis()).await;
    let gw = Arc::new(sc.spawn_gateway(|_| {}).await);
    // A webhook endpoint for every admission: its deliveries survive the kills too.
    let hook = Receiver::start(Behaviour::Ok).await;
    let hook_url = hook.url.clone();
    let put = |state: &'static str| {
        let hook_url = hook_url.clone();
        let gw = gw.clone();
        async move {
            let r = gw
                .client
                .put(format!("{}/admin/v1/concerts/ev", gw.admin))
                .bearer_auth(ADMIN_TOKEN)
                .json(&serde_json::json!({"state": state, "admitPerSecond": 300,
                    "webhooks": [{"url": hook_url, "types": ["dev.queuegate.fan.admitted"]}]}))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
        }
    };
    put("open").await;
    let mut consumer = KillOnDrop(sc.spawn_consumer(200));

    // 1. A gateway process killed mid-burst.
    let port = free_port();
    let mut gateway = KillOnDrop(sc.spawn_gateway_process(port, &[]));
    assert!(wait_for_port(port, Duration::from_secs(30)), "the gateway process listens");
    let first =
        tokio::spawn(burst(format!("http://127.0.0.1:{port}"), (0..6_000).map(|i| format!("a{i:05}")).collect(), 64));
    assert!(wait_until(Duration::from_secs(60), async || applied(&sc.names, "ev").await >= 1_500).await);
    kill9(&mut gateway.0);
    let (mut accepted, unanswered) = first.await.unwrap();
    let from_first = accepted.len();
    assert!(from_first < 6_000, "the gateway died mid-burst ({from_first} accepted)");

    // 2. The consumer (which also admits and relays) killed mid-burst, then its successor,
    // the process running admissions, killed while admitting.
    let second = tokio::spawn(burst(gw.http().to_owned(), (0..6_000).map(|i| format!("b{i:05}")).collect(), 64));
    let target = from_first + 1_500;
    assert!(wait_until(Duration::from_secs(60), async || applied(&sc.names, "ev").await >= target).await);
    kill9(&mut consumer.0);
    let mut redis = redis_conn(sc.redis_url()).await.expect("redis");
    let adm = sc.names.key("ev", Part::Adm);
    let admitted = async |c: &mut crate::common::RawRedis| -> u64 {
        c.query::<Option<u64>>(redis::cmd("HGET").arg(&adm).arg("admitted")).await.unwrap().unwrap_or(0)
    };
    let before = admitted(&mut redis).await;
    let mut consumer = KillOnDrop(sc.spawn_consumer(200));
    assert!(
        wait_until(Duration::from_secs(60), async || admitted(&mut redis).await >= before + 300).await,
        "the second consumer admits"
    );
    kill9(&mut consumer.0);
    let admitted_at_kill = admitted(&mut redis).await;
    let (more, unanswered_later) = second.await.unwrap();
    assert_eq!(unanswered_later, 0, "the in-process gateway answers every join");
    accepted.extend(more);
    let _consumer = KillOnDrop(sc.spawn_consumer(200));

    // Every accepted fan placed (and perhaps some whose answer the killed gateway never sent),
    // then admission stopped (one more event) and the outbox drained.
    let joined_key = sc.names.key("ev", Part::Joined);
    let staged_key = sc.names.key("ev", Part::Staged);
    let (mut in_joined, mut staged) = (0u64, 0u64);
    let placed = wait_until(Duration::from_secs(120), async || {
        in_joined = redis.query(redis::cmd("HLEN").arg(&joined_key)).await.unwrap();
        staged = redis.query(redis::cmd("ZCARD").arg(&staged_key)).await.unwrap();
        in_joined >= accepted.len() as u64 && staged == 0
    })
    .await;
    assert!(placed, "every accepted fan placed: {in_joined} placed of {} accepted, {staged} staged", accepted.len());
    put("paused").await;
    let outbox = sc.names.key("ev", Part::Outbox);
    let drained = wait_until(Duration::from_secs(60), async || {
        redis.query::<u64>(redis::cmd("XLEN").arg(&outbox)).await.unwrap() == 0
    })
    .await;
    assert!(drained, "the relay publishes the whole outbox");

    // The final state in Redis: who was placed, who was admitted.
    let joined: Vec<String> = redis.query(redis::cmd("HKEYS").arg(&joined_key)).await.unwrap();
    let states: Vec<(String, String)> =
        redis.query(redis::cmd("HGETALL").arg(sc.names.key("ev", Part::State))).await.unwrap();
    let admitted_fans: BTreeSet<String> =
        states.iter().filter(|(_, s)| s.starts_with("a:")).map(|(u, _)| u.clone()).collect();
    let expected = joined.len() + admitted_fans.len() + 2; // + concert.updated (open, paused)

    let records = read_events(&sc.names.brokers, &sc.names.events_topic(), Duration::from_secs(60), |r| {
        distinct_ids(r) >= expected
    })
    .await;
    let mut by_id: HashMap<&str, (&str, &str)> = HashMap::new();
    let mut ids_of: HashMap<(&str, &str), BTreeSet<&str>> = HashMap::new();
    for r in &records {
        let (id, t, s) = (r.header("ce_id"), r.header("ce_type"), r.header("ce_subject"));
        if let Some(prev) = by_id.insert(id, (t, s)) {
            assert_eq!(prev, (t, s), "a ce_id names one change");
        }
        ids_of.entry((t, s)).or_default().insert(id);
    }
    let subjects = |t: &str| -> BTreeSet<String> {
        ids_of.keys().filter(|(ty, _)| *ty == t).map(|(_, s)| (*s).to_owned()).collect()
    };
    let duplicates = records.len() - distinct_ids(&records);
    println!(
        "chaos events: {} accepted ({from_first} through the killed gateway, {unanswered} unanswered), {} admitted (a consumer killed at {admitted_at_kill}); {} records, {} distinct, {duplicates} duplicates",
        accepted.len(),
        admitted_fans.len(),
        records.len(),
        distinct_ids(&records)
    );
    let in_redis: HashSet<String> = joined.iter().cloned().collect();
    assert!(accepted.is_subset(&in_redis), "every accepted fan is in Redis");
    assert!(
        in_redis.len() - accepted.len() <= unanswered,
        "beyond the accepted, only fans whose join got no answer ({unanswered}) are in Redis"
    );
    assert_eq!(subjects("dev.queuegate.fan.placed"), joined.into_iter().collect(), "every placement has its event");
    assert_eq!(subjects("dev.queuegate.fan.admitted"), admitted_fans, "every admission has its event");
    // A fan has each change once (the concert has two updates, each its own change).
    let doubled: Vec<_> = ids_of.iter().filter(|((_, subject), ids)| !subject.is_empty() && ids.len() > 1).collect();
    assert!(doubled.is_empty(), "a fan's change published under two ce_ids: {doubled:?}");
    assert_eq!(subjects("dev.queuegate.concert.updated").len(), 1);
    assert_eq!(ids_of[&("dev.queuegate.concert.updated", "")].len(), 2, "open, then paused");
    assert_eq!(distinct_ids(&records), expected, "nothing else was published");

    // The report, kept by the scripts with each change, counted every change once whichever
    // process died: what the topic holds once deduplicated on ce_id.
    let report = gw.admin_json("/admin/v1/concerts/ev/report").await;
    let placed_events = subjects("dev.queuegate.fan.placed").len() as u64;
    assert_eq!(report["counts"]["placed"], placed_events, "{report}");
    assert_eq!(report["counts"]["admitted"], admitted_fans.len() as u64, "{report}");
    assert_eq!(report["waitMs"]["count"], admitted_fans.len() as u64, "a wait per admission");
    let per_minute_total =
        |field: &str| -> u64 { report[field].as_array().unwrap().iter().map(|p| p["count"].as_u64().unwrap()).sum() };
    assert_eq!(per_minute_total("joinsPerMinute"), placed_events);
    assert_eq!(per_minute_total("admissionsPerMinute"), admitted_fans.len() as u64);

    // Every admission reached the webhook, under its ce_id, across the consumers' kills.
    let admitted_ids: BTreeSet<String> = ids_of
        .iter()
        .filter(|((t, _), _)| *t == "dev.queuegate.fan.admitted")
        .flat_map(|(_, ids)| ids.iter().map(|i| (*i).to_owned()))
        .collect();
    let delivered = wait_until(Duration::from_secs(120), async || hook.ids().is_superset(&admitted_ids)).await;
    let got = hook.ids();
    println!(
        "chaos events: webhook got {} distinct of {} admissions ({} requests)",
        got.intersection(&admitted_ids).count(),
        admitted_ids.len(),
        hook.got.lock().unwrap().len()
    );
    assert!(delivered, "{} admissions never reached the webhook", admitted_ids.difference(&got).count());
    assert_eq!(got, admitted_ids, "the webhook got admissions only, each under its ce_id");
}
