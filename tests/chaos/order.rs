//! First come, first placed through consumer faults: fans join at a steady rate while one of two
//! consumers is killed (kill -9) or frozen (SIGSTOP) mid-burst. Whatever the partitions' lags
//! and the rebalance, nobody is lost or doubled, nobody is placed behind a fan accepted more
//! than QUEUEGATE_CLOCK_SKEW_MS later (by the gateway's stamp, and by when the client saw its
//! 202), and no watched position ever grows.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use queuegate::store::keys::Part;

use crate::checker::{check, redis_conn};
use crate::common::{redis_url as shared_redis, signal, Names, TestApp};
use crate::procs::{kill9, KillOnDrop, Scenario};

const SKEW_MS: i64 = 1000;

fn now_ms() -> i64 {
    queuegate::clock::now_ms()
}

/// One fan's join: who, the answer's status, when the client saw it (ms), its token.
struct Joined {
    user: String,
    status: u16,
    answered_ms: i64,
    token: Option<String>,
}

/// Joins `per_tick` fans every 10 ms for `secs` seconds through `gw`; calls `at` once `at_secs`
/// have passed (the fault).
async fn paced_joins(gw: &Arc<TestApp>, concert: &str, per_tick: usize, secs: u64, at_secs: u64, at: impl FnOnce()) -> Vec<Joined> {
    let started = Instant::now();
    let mut fault = Some(at);
    let mut tasks = Vec::new();
    let mut n = 0;
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    while started.elapsed() < Duration::from_secs(secs) {
        tick.tick().await;
        if started.elapsed() >= Duration::from_secs(at_secs) {
            if let Some(f) = fault.take() {
                f();
            }
        }
        for _ in 0..per_tick {
            let user = format!("o-{n:06}");
            n += 1;
            let gw = gw.clone();
            let url = format!("{}/v1/concerts/{concert}/queue", gw.http());
            tasks.push(tokio::spawn(async move {
                for _ in 0..3 {
                    let sent = gw.client.post(&url).json(&serde_json::json!({ "userId": user })).timeout(Duration::from_secs(30)).send().await;
                    if let Ok(r) = sent {
                        let status = r.status().as_u16();
                        let answered_ms = now_ms();
                        let body: serde_json::Value = r.json().await.unwrap_or_default();
                        let token = body["token"].as_str().map(str::to_owned);
                        return Joined { user, status, answered_ms, token };
                    }
                }
                Joined { user, status: 0, answered_ms: 0, token: None }
            }));
        }
    }
    let mut out = Vec::with_capacity(tasks.len());
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

/// Polls the status of `fans` every 200 ms until `stop`; returns each fan's positions as seen.
fn watch(gw: Arc<TestApp>, concert: String, fans: Vec<(String, String)>, stop: Arc<tokio::sync::Notify>) -> tokio::task::JoinHandle<HashMap<String, Vec<u64>>> {
    tokio::spawn(async move {
        let mut seen: HashMap<String, Vec<u64>> = HashMap::new();
        loop {
            for (user, token) in &fans {
                let url = format!("{}/v1/concerts/{concert}/queue/{user}", gw.http());
                if let Ok(r) = gw.client.get(&url).bearer_auth(token).send().await {
                    let s: serde_json::Value = r.json().await.unwrap_or_default();
                    if let Some(p) = s["position"].as_u64() {
                        seen.entry(user.clone()).or_default().push(p);
                    }
                }
            }
            tokio::select! {
                _ = stop.notified() => return seen,
                _ = tokio::time::sleep(Duration::from_millis(200)) => {}
            }
        }
    })
}

/// The queue head first, with each fan's stamp.
async fn queue_with_stamps(names: &Names, concert: &str) -> Vec<(String, i64)> {
    let mut c = redis_conn(&names.redis_url).await.unwrap();
    let list: Vec<String> = c.query(redis::cmd("LRANGE").arg(names.key(concert, Part::Waiting)).arg(0).arg(-1)).await.unwrap();
    let stamps: HashMap<String, i64> = c.query(redis::cmd("HGETALL").arg(names.key(concert, Part::Joined))).await.unwrap();
    list.into_iter().map(|u| { let s = stamps[&u]; (u, s) }).collect()
}

/// The most any fan was overtaken by: over every position, how much later (ms) than this fan's
/// time the latest time of a fan placed ahead of it is.
fn worst_overtaking(times: impl Iterator<Item = i64>) -> i64 {
    let mut ahead = i64::MIN;
    let mut worst = 0;
    for t in times {
        if ahead > t {
            worst = worst.max(ahead - t);
        }
        ahead = ahead.max(t);
    }
    worst
}

async fn fault_scenario(tag: &str, fault: &str) {
    let sc = Scenario::new(12, shared_redis()).await;
    let gw = Arc::new(sc.spawn_gateway(|_| {}).await);
    gw.open_concert(tag).await;
    let first = KillOnDrop(sc.spawn_consumer(500));
    let second = KillOnDrop(sc.spawn_consumer(500));
    tokio::time::sleep(Duration::from_secs(8)).await; // both in the group, partitions shared

    let pid = first.0.id();
    let mut first = Some(first);
    let kill = fault == "kill";
    let joins = paced_joins(&gw, tag, 12, 14, 4, || {
        if kill {
            if let Some(mut f) = first.take() {
                kill9(&mut f.0);
            }
        } else {
            signal(pid, "-STOP");
        }
    })
    .await;
    if !kill {
        // Frozen for 10 s from 4 s into the 14 s burst; it comes back to a group that moved on.
        signal(pid, "-CONT");
    }
    let accepted: HashSet<String> = joins.iter().filter(|j| j.status == 202).map(|j| j.user.clone()).collect();
    assert!(accepted.len() * 100 >= joins.len() * 99, "{} of {} accepted", accepted.len(), joins.len());

    let sample: Vec<(String, String)> = joins
        .iter()
        .filter(|j| j.status == 202)
        .step_by(joins.len() / 25 + 1)
        .filter_map(|j| Some((j.user.clone(), j.token.clone()?)))
        .collect();
    let stop = Arc::new(tokio::sync::Notify::new());
    let watcher = watch(gw.clone(), tag.to_owned(), sample, stop.clone());
    let report = check(&sc.names, tag, &accepted, Duration::from_secs(180)).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.notify_one();
    let seen = watcher.await.unwrap();
    drop(first);
    drop(second);

    let queue = queue_with_stamps(&sc.names, tag).await;
    let answered: HashMap<&str, i64> = joins.iter().map(|j| (j.user.as_str(), j.answered_ms)).collect();
    let by_stamp = worst_overtaking(queue.iter().map(|(_, s)| *s));
    let by_answer = worst_overtaking(queue.iter().map(|(u, _)| answered[u.as_str()]));
    let grew: Vec<_> = seen.iter().filter(|(_, ps)| ps.windows(2).any(|w| w[1] > w[0])).collect();
    println!(
        "chaos order ({fault} one of two consumers 4 s into a 14 s burst of {} joins): {report}; worst overtaking by stamp {by_stamp} ms, by 202 time {by_answer} ms; {} fans watched, {} positions seen, {} grew",
        joins.len(),
        seen.len(),
        seen.values().map(Vec::len).sum::<usize>(),
        grew.len()
    );
    report.assert_exact();
    assert!(by_stamp <= SKEW_MS, "a fan was placed behind one stamped {by_stamp} ms after it");
    assert!(by_answer <= SKEW_MS, "a fan was placed behind one whose 202 came {by_answer} ms after its own");
    assert!(grew.is_empty(), "positions grew: {grew:?}");
    assert!(!seen.is_empty(), "the watcher saw positions");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_of_one_of_two_consumers_mid_burst_places_everyone_in_stamp_order() {
    fault_scenario("ok9", "kill").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_consumer_frozen_for_10_s_mid_burst_delays_placement_but_never_reorders_it() {
    fault_scenario("ost", "stop").await;
}
