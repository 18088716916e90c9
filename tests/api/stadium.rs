//! At stadium scale (DESIGN.md, "At stadium scale"): a backlog of due slots is freed in bounded
//! slices, never in one call that Lua's `unpack()` (~8,000 values) refuses.
//!
//! Issue 35: `slots.lua` read up to 10,000 due slots and unpacked them all at once, so once
//! ~8,000 admission tokens (or ~4,000 sessions: two values each in `ended`) fell due together,
//! every later sweep and admission call of the concert failed before its first write, for ever.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use queuegate::ids::{ConcertId, Lane, UserId};
use queuegate::store::keys::Part;
use queuegate::store::sessions::ExchangeRequest;
use queuegate::store::{AdmitRequest, QueueStore};

use crate::helpers::{Names, RawRedis};

/// Admission tokens never exchanged, due together.
const TOKENS: usize = 20_000;
/// Gate sessions due together: half past their idle deadline, half at their maximum.
const SESSIONS: usize = 5_000;
/// What the admitter gives `sweep_sessions` (`sessionMaxSeconds` of an hour, plus a minute).
const REMEMBER_MS: i64 = 3_660_000;
/// The design's bound on any one Redis call (and Redis's default `slowlog-log-slower-than`).
pub(crate) const SLOW_US: i64 = 10_000;

pub(crate) fn fan(i: usize) -> UserId {
    UserId::parse(format!("f{i}")).unwrap()
}

pub(crate) fn admit_request(max: u32, max_active: u32) -> AdmitRequest<'static> {
    AdmitRequest { max_active, ..AdmitRequest::manual(max, 600_000) }
}

/// Queues fans `from..to` through the store's own joins and placement (stamp order).
pub(crate) async fn queue(store: &QueueStore, c: &ConcertId, from: usize, to: usize) {
    let users: Vec<UserId> = (from..to).map(fan).collect();
    for chunk in users.chunks(1000) {
        let joins: Vec<(&UserId, i64)> = chunk.iter().map(|u| (u, 1_000)).collect();
        store.apply(c, &joins).await.unwrap();
    }
    let mut placed = 0;
    while placed < (to - from) as u64 {
        let r = store.release(c, &Lane::general(), 2_000).await.unwrap();
        assert!(r.placed > 0, "placement stalled at {placed} of {}", to - from);
        placed += r.placed;
    }
}

/// Admits the first `n` fans queued, 1,000 a call (the admitter makes calls of 250): (each fan with its
/// token's expiry in ms, the last call's issue time rounded down to the second as tokens carry it).
pub(crate) async fn admit_all(store: &QueueStore, c: &ConcertId, n: usize) -> (Vec<(UserId, i64)>, i64) {
    let mut admitted = Vec::with_capacity(n);
    let mut iat_ms = 0;
    while admitted.len() < n {
        let got = store.admit(c, admit_request(1000, 0)).await.unwrap().expect("no lease involved");
        assert!(!got.fans.is_empty(), "admission stalled at {} of {n}", admitted.len());
        iat_ms = got.iat_ms.div_euclid(1000) * 1000;
        admitted.extend(got.fans);
    }
    (admitted, iat_ms)
}

/// Every call Redis logged as slower than [`SLOW_US`] since `since_s` (unix seconds) with one of
/// our keys among its arguments: (duration µs, arguments as SLOWLOG keeps them: the first 31,
/// then "... (N more arguments)"). On a cluster, every seed node.
pub(crate) async fn slowlog(names: &Names, since_s: i64) -> Vec<(i64, Vec<String>)> {
    let nodes =
        queuegate::config::sections::cluster_nodes(&names.redis_url).unwrap_or_else(|| vec![names.redis_url.clone()]);
    let mut slow = Vec::new();
    for node in nodes {
        let mut c = RawRedis::connect(&node, Duration::from_secs(10)).await.expect("redis node");
        // Each entry: id, unix time (s), duration (µs), arguments, client address, client name.
        let log: Vec<Vec<redis::Value>> = match c.query(redis::cmd("SLOWLOG").arg("GET").arg(128)).await {
            Ok(v) => v,
            Err(e) => panic!("SLOWLOG GET on {node}: {e}"),
        };
        for entry in log {
            let (Some(at), Some(us), Some(args)) = (entry.get(1), entry.get(2), entry.get(3)) else { continue };
            let at: i64 = redis::from_redis_value_ref(at).expect("a time");
            let us: i64 = redis::from_redis_value_ref(us).expect("a duration");
            let args: Vec<String> = redis::from_redis_value_ref(args).expect("arguments");
            if at >= since_s && us >= SLOW_US && args.iter().any(|a| a.contains(&names.prefix)) {
                slow.push((us, args));
            }
        }
    }
    slow
}

/// [`slowlog`], each call as its duration and its command with the first arguments.
async fn slow_calls(names: &Names, since_s: i64) -> Vec<(i64, String)> {
    slowlog(names, since_s).await.into_iter().map(|(us, args)| (us, args[..args.len().min(4)].join(" "))).collect()
}

/// The outbox's entries of `kind`: every fan in them with its word (`x`).
pub(crate) async fn outbox_fans(names: &Names, concert: &str, kind: &str) -> Vec<(String, String)> {
    let key = names.key(concert, Part::Outbox);
    let mut fans = Vec::new();
    let mut from = "-".to_owned();
    loop {
        let page: Vec<(String, HashMap<String, String>)> =
            names.redis(redis::cmd("XRANGE").arg(&key).arg(&from).arg("+").arg("COUNT").arg(500)).await;
        for (_, entry) in &page {
            let field = |f: &str| entry.get(f).cloned().unwrap_or_default();
            if field("t") == kind {
                let (users, words) = (field("u"), field("x"));
                let words: Vec<&str> = words.split(' ').collect();
                for (i, u) in users.split(' ').enumerate() {
                    fans.push((u.to_owned(), words.get(i).copied().unwrap_or("").to_owned()));
                }
            }
        }
        match page.last() {
            Some((last, _)) if page.len() == 500 => from = format!("({last}"),
            _ => return fans,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sweep_frees_20000_due_tokens_and_5000_due_sessions_in_bounded_slices_and_admission_works_again() {
    let names = Names::new();
    let store = names.store();
    let id = "stadium";
    let c = ConcertId::parse(id).unwrap();
    let active = names.key(id, Part::Active);
    let total = TOKENS + SESSIONS;

    // 25,000 fans queued and admitted through the store (1,000 per admission call).
    queue(&store, &c, 0, total).await;
    let (admitted, iat_ms) = admit_all(&store, &c, total).await;
    // The first 5,000 exchange their token for a gate session: half with a maximum of 1 ms (so
    // they end at their maximum), half with an hour (they end idle).
    let mut sids = HashMap::new();
    for (i, (user, exp)) in admitted.iter().take(SESSIONS).enumerate() {
        let sid = format!("{i:05x}");
        let max_ms = if i % 2 == 0 { 1 } else { 3_600_000 };
        let req =
            ExchangeRequest { user, jti: &format!("j{i}"), iat_ms, exp_ms: *exp, idle_ms: 600_000, max_ms, sid: &sid };
        assert!(store.exchange(&c, req).await.unwrap().is_ok(), "exchange of {user}");
        sids.insert(user.as_str().to_owned(), sid);
    }
    // Every slot's deadline passes at once (a stalled admitter, a burst of short tokens): moved
    // to the past, as the clock would.
    for chunk in admitted[SESSIONS..].chunks(1000).chain(admitted[..SESSIONS].chunks(1000)) {
        let mut zadd = redis::cmd("ZADD");
        zadd.arg(&active);
        for (u, _) in chunk {
            zadd.arg(1).arg(u.as_str());
        }
        names.redis::<()>(&zadd).await;
    }
    tokio::time::sleep(Duration::from_millis(5)).await; // the 1 ms maximums have passed
    let due: usize = names.redis(redis::cmd("ZCOUNT").arg(&active).arg("-inf").arg("+inf")).await;
    assert_eq!(due, total, "every slot is held and due");

    let since_s = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64 - 1;
    let (mut idle, mut maxed) = (0, 0);
    // An admission call on the backlog works (it wedged before the sweep ever ran), and frees a
    // bounded slice itself: it admits nobody, as every slot is still held.
    let started = Instant::now();
    let got = store.admit(&c, admit_request(0, total as u32)).await.expect("admission on a backlog of due slots");
    let admit_ms = started.elapsed().as_secs_f64() * 1000.0;
    let got = got.expect("no lease involved");
    assert!(got.fans.is_empty());
    idle += got.sessions_ended.0;
    maxed += got.sessions_ended.1;
    let left: usize = names.redis(redis::cmd("ZCARD").arg(&active)).await;
    let first_slice = total - left;
    let backlog = left;
    assert!(first_slice > 0 && first_slice <= 2_000, "one admission call freed {first_slice} slots: a bounded slice");

    // The admitter's rounds: the sweep it calls, until nothing is due.
    let mut rounds = Vec::new();
    loop {
        let left: usize = names.redis(redis::cmd("ZCARD").arg(&active)).await;
        if left == 0 {
            break;
        }
        assert!(rounds.len() < 5, "{left} slots still due after {} sweeps", rounds.len());
        let started = Instant::now();
        let (i, m) = store.sweep_sessions(&c, REMEMBER_MS).await.expect("sweep of a backlog of due slots");
        rounds.push(started.elapsed().as_secs_f64() * 1000.0);
        idle += i;
        maxed += m;
    }
    assert!(rounds.len() <= 2, "{} sweeps to drain {backlog} due slots", rounds.len());
    let slow = slow_calls(&names, since_s).await;
    println!(
        "stadium: {total} due slots; an admission call freed {first_slice} in {admit_ms:.1} ms; {} sweeps drained \
         the rest ({}); calls on these keys at or over {} ms in SLOWLOG: {slow:?}",
        rounds.len(),
        rounds.iter().map(|ms| format!("{ms:.1} ms")).collect::<Vec<_>>().join(", "),
        SLOW_US / 1000,
    );
    // The time of each call is reported, not asserted: a wall-clock bound is a benchmark's
    // (docs/benchmarks.md), and on two loaded cores a call of 2 fields was logged at 171 ms in
    // CI while this test's bounded slices took 12-28 ms. What bounds the work is asserted above:
    // one call frees one slice, and the sweep drains the backlog in slices.

    // Every slot is free, every session ended and known to the gateways.
    assert_eq!((idle, maxed), (SESSIONS as u64 / 2, SESSIONS as u64 / 2), "sessions ended (idle, at their maximum)");
    assert_eq!(store.session_count(&c).await.unwrap(), 0, "no session left live");
    let ended: Vec<String> = names.redis(redis::cmd("ZRANGE").arg(names.key(id, Part::Ended)).arg(0).arg(-1)).await;
    assert_eq!(ended.into_iter().collect::<HashSet<_>>(), sids.values().cloned().collect::<HashSet<_>>(), "ended sids");

    // Their events recorded, once each: `session.ended` with why, `expired` for the tokens.
    let ended_events = outbox_fans(&names, id, "session.ended").await;
    assert_eq!(ended_events.len(), SESSIONS, "one session.ended per session");
    let ended_users: HashMap<String, String> = ended_events.into_iter().collect();
    assert_eq!(ended_users.len(), SESSIONS, "no session ended twice");
    for (i, (user, _)) in admitted.iter().take(SESSIONS).enumerate() {
        let want = if i % 2 == 0 { "max" } else { "idle" };
        assert_eq!(ended_users.get(user.as_str()).map(String::as_str), Some(want), "why {user}'s session ended");
    }
    let expired = outbox_fans(&names, id, "expired").await;
    assert_eq!(expired.len(), TOKENS, "one expired per token");
    let expired: HashSet<String> = expired.into_iter().map(|(u, _)| u).collect();
    let tokens: HashSet<String> = admitted[SESSIONS..].iter().map(|(u, _)| u.as_str().to_owned()).collect();
    assert_eq!(expired, tokens, "the expired tokens are the ones never exchanged");
    let report: HashMap<String, i64> = names.redis(redis::cmd("HGETALL").arg(names.key(id, Part::Report))).await;
    assert_eq!(report.get("expired"), Some(&(TOKENS as i64)), "report: {report:?}");
    assert_eq!(report.get("session.ended"), Some(&(SESSIONS as i64)), "report: {report:?}");

    // Admission works again: the freed slots go to the next fans.
    queue(&store, &c, total, total + 10).await;
    let got = store.admit(&c, admit_request(1000, 10)).await.unwrap().expect("no lease involved");
    let got: Vec<String> = got.fans.iter().map(|(u, _)| u.as_str().to_owned()).collect();
    let want: Vec<String> = (total..total + 10).map(|i| fan(i).as_str().to_owned()).collect();
    assert_eq!(got, want, "the next fans are admitted into the freed slots");
    assert_eq!(store.sweep_sessions(&c, REMEMBER_MS).await.unwrap(), (0, 0), "nothing left due");
}

/// A consumer batch is written in apply.lua calls of at most `APPLY_MAX` fans (no call's work
/// grows with `QUEUEGATE_CONSUMER_BATCH`), and the calls together keep what one call promised:
/// a fan twice in the batch, in different calls, is staged once, and the batch replayed (a crash
/// after some of its calls) adds nobody.
#[tokio::test]
async fn a_consumer_batch_of_2000_joins_is_written_in_calls_of_at_most_500_fans_and_stays_idempotent() {
    use queuegate::store::{Writer, APPLY_MAX};
    let names = Names::new();
    let store = names.store();
    let c = ConcertId::parse("batch").unwrap();
    let mut users: Vec<UserId> = (0..2000).map(fan).collect();
    // Fans of the first and second call again, in the fourth.
    users[1500] = fan(3);
    users[1999] = fan(700);
    let joins: Vec<(&UserId, i64)> = users.iter().enumerate().map(|(i, u)| (u, 1_000 + i as i64)).collect();
    let mut writer = Writer::new();
    let calls = |names: Names| async move {
        let counts: HashMap<String, i64> =
            names.redis(redis::cmd("HGETALL").arg(names.key("batch", Part::Writers))).await;
        counts.into_values().collect::<Vec<_>>()
    };

    let w = store.apply_as(&mut writer, &c, &Lane::general(), &joins, false).await.unwrap();
    assert_eq!((w.applied.appended, w.applied.duplicates), (1998, 2), "two fans in the batch twice");
    assert!(!w.lost_earlier);
    assert_eq!(APPLY_MAX, 500);
    assert_eq!(calls(names.clone()).await, vec![4], "2,000 joins in four calls of 500");
    let staged: usize = names.redis(redis::cmd("ZCARD").arg(names.key("batch", Part::Staged))).await;
    assert_eq!(staged, 1998);

    let again = store.apply_as(&mut writer, &c, &Lane::general(), &joins, false).await.unwrap();
    assert_eq!((again.applied.appended, again.applied.duplicates), (0, 2000), "the replay adds nobody");
    assert!(!again.lost_earlier, "the writer's count only grew");
    assert_eq!(calls(names.clone()).await, vec![8]);
}
