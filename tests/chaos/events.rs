//! Events out under kill -9: a gateway, a consumer and the process running admissions are each
//! killed mid-burst, and every change in Redis's final state still has its event on the events
//! topic, any duplicate with the same `ce_id`.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use queuegate::store::keys::Part;

use crate::checker::{admitted, admitted_at_least, join_like_a_client, redis_conn, wait_for};
use crate::common::events_topic::{distinct_ids, read_events, Behaviour, Receiver};
use crate::common::redis_url as shared_redis;
use crate::common::LOOPBACK_WEBHOOKS;
use crate::common::{free_port, wait_for_port, ADMIN_TOKEN};
use crate::procs::{kill9, KillOnDrop, Scenario};

/// What a burst has seen so far: answers by status (0: no answer at all, the request failed).
/// Shared with the test while the burst runs, so a wait that runs out can say what the joins got.
#[derive(Default)]
struct Tally(Mutex<BTreeMap<u16, usize>>);

impl Tally {
    fn add(&self, status: u16) {
        *self.0.lock().unwrap().entry(status).or_default() += 1;
    }
    fn seen(&self) -> BTreeMap<u16, usize> {
        self.0.lock().unwrap().clone()
    }
}

/// Joins `users` through `base`, `concurrency` at a time, as a fan's client would
/// ([`join_like_a_client`], 503s tried again after their Retry-After). Answers: the fans that
/// got 202, and how many ended without one while the join may still have reached Kafka (no
/// answer at all, a 408, or a last 503: the broker may have written a record whose
/// acknowledgement was lost).
async fn burst(base: String, users: Vec<String>, concurrency: usize, tally: Arc<Tally>) -> (HashSet<String>, usize) {
    let client = reqwest::Client::new();
    let gate = Arc::new(tokio::sync::Semaphore::new(concurrency));
    let mut tasks = Vec::new();
    for user in users {
        let permit = gate.clone().acquire_owned().await.unwrap();
        let (client, url, tally) = (client.clone(), format!("{base}/v1/concerts/ev/queue"), tally.clone());
        tasks.push(tokio::spawn(async move {
            let _permit = permit;
            let body = serde_json::json!({"userId": user});
            let tried = join_like_a_client(&client, &url, &body, true, Duration::from_secs(10)).await;
            for status in &tried.answers {
                tally.add(*status);
            }
            (user, tried.answers.last().copied().unwrap_or(0))
        }));
    }
    let (mut accepted, mut unproven) = (HashSet::new(), 0);
    for t in tasks {
        match t.await.unwrap() {
            (u, 202) => {
                accepted.insert(u);
            }
            (_, 0 | 408 | 503) => unproven += 1,
            _ => {}
        }
    }
    (accepted, unproven)
}

/// Fans of `ev` the consumer has applied so far: every fan placed (admitted ones included: the
/// `joined` hash keeps them) plus those staged for placement. Not the waiting count, which
/// admission at 300/s drains as fast as a loaded consumer places (CI saw it stay under 1,500
/// for 60 s while every join was being applied and admitted).
async fn applied_ever(sc: &Scenario) -> u64 {
    let Ok(mut c) = redis_conn(sc.redis_url()).await else { return 0 };
    let joined: u64 = c.query(redis::cmd("HLEN").arg(sc.names.key("ev", Part::Joined))).await.unwrap_or(0);
    let staged: u64 = c.query(redis::cmd("ZCARD").arg(sc.names.key("ev", Part::Staged))).await.unwrap_or(0);
    joined + staged
}

/// Waits until the consumer has applied at least `n` fans of `ev`; on the deadline, panics
/// with the count and what the burst's joins were answered so far.
async fn applied_at_least(sc: &Scenario, n: u64, tally: &Tally, what: &str) -> u64 {
    let seen = wait_for(Duration::from_secs(60), format!("{n} fans applied ({what})"), async || {
        let seen = applied_ever(sc).await;
        (seen >= n, seen)
    })
    .await;
    seen.unwrap_or_else(|e| panic!("{e}; the burst's answers so far (status: count, 0 = none): {:?}", tally.seen()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_of_a_gateway_a_consumer_and_the_admitter_mid_burst_leaves_no_change_without_its_event() {
    let sc = Scenario::new(6, shared_redis()).await;
    // The receiver is on loopback: both the admin API (registration) and the consumers
    // (delivery) must allow it.
    let gw = Arc::new(sc.spawn_gateway(crate::common::allow_loopback_webhooks).await);
    let loopback_webhooks = [(LOOPBACK_WEBHOOKS.0, LOOPBACK_WEBHOOKS.1.to_owned())];
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
    let mut consumer = KillOnDrop(sc.spawn_consumer_with(200, &loopback_webhooks));

    // 1. A gateway process killed mid-burst.
    let port = free_port();
    let mut gateway = KillOnDrop(sc.spawn_gateway_process(port, &[]));
    assert!(wait_for_port(port, Duration::from_secs(30)), "the gateway process listens");
    let tally = Arc::new(Tally::default());
    let fans = (0..6_000).map(|i| format!("a{i:05}")).collect();
    let first = tokio::spawn(burst(format!("http://127.0.0.1:{port}"), fans, 64, tally.clone()));
    applied_at_least(&sc, 1_500, &tally, "through the gateway process, before its kill").await;
    kill9(&mut gateway.0);
    let (mut accepted, unanswered) = first.await.unwrap();
    println!("chaos events: the first burst's answers (status: count, 0 = none): {:?}", tally.seen());
    let from_first = accepted.len();
    assert!(from_first < 6_000, "the gateway died mid-burst ({from_first} accepted)");

    // 2. The consumer (which also admits and relays) killed mid-burst, then its successor,
    // the process running admissions, killed while admitting.
    let tally = Arc::new(Tally::default());
    let fans = (0..6_000).map(|i| format!("b{i:05}")).collect();
    let second = tokio::spawn(burst(gw.http().to_owned(), fans, 64, tally.clone()));
    applied_at_least(&sc, applied_ever(&sc).await + 1_500, &tally, "the second burst, before the consumer's kill")
        .await;
    kill9(&mut consumer.0);
    let mut redis = redis_conn(sc.redis_url()).await.expect("redis");
    let adm = sc.names.key("ev", Part::Adm);
    let before = admitted(&mut redis, &adm).await;
    let mut consumer = KillOnDrop(sc.spawn_consumer_with(200, &loopback_webhooks));
    // The successor admits once it holds the lease and has fans placed to admit: after the old
    // member's session times out of the group and the placement watermark passes the burst, so
    // its first admissions may come late on a loaded machine (a fresh-clone run saw 239 in the
    // first 60 s, the rest of the waiting line still being placed). Any 100 show it admitting.
    admitted_at_least(&mut redis, &adm, before + 100, Duration::from_secs(120))
        .await
        .expect("the second consumer admits");
    kill9(&mut consumer.0);
    let admitted_at_kill = admitted(&mut redis, &adm).await;
    let (more, unproven_later) = second.await.unwrap();
    assert_eq!(tally.seen().get(&0), None, "the in-process gateway answers every join: {:?}", tally.seen());
    let unanswered = unanswered + unproven_later;
    accepted.extend(more);
    let _consumer = KillOnDrop(sc.spawn_consumer_with(200, &loopback_webhooks));

    // Every accepted fan placed (and perhaps some whose answer the killed gateway never sent),
    // then admission stopped (one more event) and the outbox drained.
    let joined_key = sc.names.key("ev", Part::Joined);
    let staged_key = sc.names.key("ev", Part::Staged);
    let expected = format!("every one of the {} accepted fans placed, none left staged", accepted.len());
    wait_for(Duration::from_secs(120), expected, async || {
        let placed: u64 = redis.query(redis::cmd("HLEN").arg(&joined_key)).await.unwrap();
        let staged: u64 = redis.query(redis::cmd("ZCARD").arg(&staged_key)).await.unwrap();
        (placed >= accepted.len() as u64 && staged == 0, format!("{placed} placed, {staged} staged"))
    })
    .await
    .unwrap();
    put("paused").await;
    let outbox = sc.names.key("ev", Part::Outbox);
    wait_for(Duration::from_secs(60), "the relay to publish the whole outbox", async || {
        let left = redis.query::<u64>(redis::cmd("XLEN").arg(&outbox)).await.unwrap();
        (left == 0, format!("{left} entries in the outbox"))
    })
    .await
    .unwrap();

    // The final state in Redis: who was placed, who was admitted.
    let joined: Vec<String> = redis.query(redis::cmd("HKEYS").arg(&joined_key)).await.unwrap();
    let states: Vec<(String, String)> =
        redis.query(redis::cmd("HGETALL").arg(sc.names.key("ev", Part::State))).await.unwrap();
    let admitted_fans: BTreeSet<String> =
        states.iter().filter(|(_, s)| s.starts_with("a:")).map(|(u, _)| u.clone()).collect();
    // + concert.updated (open, paused), and the two admin actions that made them.
    let expected = joined.len() + admitted_fans.len() + 2 + 2;

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
        "chaos events: {} accepted ({from_first} through the killed gateway, {unanswered} without a 202 that may have reached Kafka), {} admitted (a consumer killed at {admitted_at_kill}); {} records, {} distinct, {duplicates} duplicates",
        accepted.len(),
        admitted_fans.len(),
        records.len(),
        distinct_ids(&records)
    );
    let in_redis: HashSet<String> = joined.iter().cloned().collect();
    assert!(accepted.is_subset(&in_redis), "every accepted fan is in Redis");
    assert!(
        in_redis.len() - accepted.len() <= unanswered,
        "beyond the accepted, only fans whose join got no answer or a last 503 ({unanswered}) are in Redis"
    );
    assert_eq!(subjects("dev.queuegate.fan.placed"), joined.into_iter().collect(), "every placement has its event");
    assert_eq!(subjects("dev.queuegate.fan.admitted"), admitted_fans, "every admission has its event");
    // A fan has each change once (the concert has two updates, each its own change).
    let doubled: Vec<_> = ids_of.iter().filter(|((_, subject), ids)| !subject.is_empty() && ids.len() > 1).collect();
    assert!(doubled.is_empty(), "a fan's change published under two ce_ids: {doubled:?}");
    assert_eq!(subjects("dev.queuegate.concert.updated").len(), 1);
    assert_eq!(ids_of[&("dev.queuegate.concert.updated", "")].len(), 2, "open, then paused");
    assert_eq!(ids_of[&("dev.queuegate.admin.action", "")].len(), 2, "the two PUTs, recorded");
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
    let delivered = wait_for(Duration::from_secs(120), "every admission delivered to the webhook", async || {
        let missing = admitted_ids.difference(&hook.ids()).count();
        (missing == 0, format!("{missing} admissions not delivered"))
    })
    .await;
    let got = hook.ids();
    println!(
        "chaos events: webhook got {} distinct of {} admissions ({} requests)",
        got.intersection(&admitted_ids).count(),
        admitted_ids.len(),
        hook.got.lock().unwrap().len()
    );
    delivered.unwrap();
    assert_eq!(got, admitted_ids, "the webhook got admissions only, each under its ce_id");
}
