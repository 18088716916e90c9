//! At stadium scale (DESIGN.md, "At stadium scale"): the cut of a scheduled concert's pre-queue
//! at opensAt runs in bounded slices across Redis calls, keeps its published order, places fans
//! who join meanwhile behind the whole pre-queue, and is resumed by another admitter when the
//! one cutting dies or loses its lease.
//!
//! Issue 35: the cut was one script over the whole pre-queue (every held fan as an argument,
//! 482 ms at 100,000): Redis, and every concert on that shard, stopped answering meanwhile.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use queuegate::concerts::ConcertSettings;
use queuegate::ids::{ConcertId, Lane, UserId};
use queuegate::store::keys::Part;
use queuegate::store::{Cut, CutStep, QueueStore, Standing, CUT_SLICE};

use crate::helpers::{poll_until, Names};
use crate::stadium::{outbox_fans, SLOW_US};

/// Fans in the big pre-queue.
const PREQUEUE: usize = 200_000;
/// Fans who joined at or after opensAt before the cut began (`post`).
const POST: usize = 1_500;

fn fan(prefix: &str, i: usize) -> UserId {
    UserId::parse(format!("{prefix}{i}")).unwrap()
}

/// Joins fans `prefix0..prefix{n}` stamped `stamp`, 1,000 per consumer call, as the consumer does.
async fn join(store: &QueueStore, c: &ConcertId, prefix: &str, n: usize, stamp: i64) -> Vec<String> {
    let users: Vec<UserId> = (0..n).map(|i| fan(prefix, i)).collect();
    for chunk in users.chunks(1000) {
        let joins: Vec<(&UserId, i64)> = chunk.iter().map(|u| (u, stamp)).collect();
        store.apply(c, &joins).await.unwrap();
    }
    users.iter().map(|u| u.as_str().to_owned()).collect()
}

/// A scheduled concert (its seed drawn) opening a minute from now; its opensAt (ms).
async fn scheduled(store: &QueueStore, c: &ConcertId) -> i64 {
    let opens_at = queuegate::clock::now_ms() + 60_000;
    store.put_concert(c, &ConcertSettings { opens_at: Some(opens_at), ..ConcertSettings::open() }).await.unwrap();
    opens_at
}

/// The cut's script calls on our keys that Redis logged as slower than [`SLOW_US`] since
/// `since_s` (unix seconds): (duration µs, step, arguments in all). On a cluster, every seed node.
async fn slow_cut_calls(names: &Names, since_s: i64) -> Vec<(i64, String, usize)> {
    let mut slow = Vec::new();
    for (us, args) in crate::stadium::slowlog(names, since_s).await {
        // EVALSHA sha 15 <15 keys> step lease lane ...: the cut's call on our keys.
        let step = args.get(18).cloned().unwrap_or_default();
        let ours = args.get(3).is_some_and(|k| k.contains(&names.prefix)) && args.get(2).is_some_and(|n| n == "15");
        if !ours || !["begin", "post", "commit", "slice"].contains(&step.as_str()) {
            continue;
        }
        // SLOWLOG keeps a call's first 31 arguments and then "... (N more arguments)".
        let more = args
            .last()
            .and_then(|a| a.strip_prefix("... ("))
            .and_then(|a| a.split(' ').next())
            .and_then(|n| n.parse::<usize>().ok());
        let total = match more {
            Some(n) => args.len() - 1 + n,
            None => args.len(),
        };
        slow.push((us, step, total));
    }
    slow
}

/// The outbox's `placed` fans, in the order of their entries, and the `concert.shuffled` details.
async fn outbox(names: &Names, concert: &str) -> (Vec<String>, Vec<String>) {
    let placed = outbox_fans(names, concert, "placed").await.into_iter().map(|(u, _)| u).collect();
    let shuffled = outbox_fans(names, concert, "concert.shuffled").await.into_iter().map(|(_, x)| x).collect();
    (placed, shuffled)
}

/// The lane's whole queue, head first, read in pages (a test's check; the store reads no more
/// than a page of it at a time either).
async fn queue_of(names: &Names, concert: &str) -> Vec<String> {
    let key = names.key(concert, Part::Waiting);
    let mut queue = Vec::new();
    loop {
        let page: Vec<String> =
            names.redis(redis::cmd("LRANGE").arg(&key).arg(queue.len()).arg(queue.len() + 9_999)).await;
        if page.is_empty() {
            return queue;
        }
        queue.extend(page);
    }
}

async fn standing(store: &QueueStore, c: &ConcertId, user: &str) -> Standing {
    store.standing(c, &[], &UserId::parse(user).unwrap(), 0).await.unwrap().0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cut_of_a_200000_fan_prequeue_moves_at_most_500_fans_a_call_in_the_published_order() {
    let names = Names::new();
    let store = names.store();
    let id = "bigcut";
    let c = ConcertId::parse(id).unwrap();
    let general = Lane::general();
    let opens_at = scheduled(&store, &c).await;
    let pre = join(&store, &c, "p", PREQUEUE, opens_at - 1_000).await;
    let post = join(&store, &c, "a", POST, opens_at + 1_000).await;
    let seed = store.fair_state(&c, &general).await.unwrap().seed.unwrap();
    let lease = store.lease(&c, "cutter", 600_000).await.unwrap().expect("a free lease");
    let since_s = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64 - 1;
    let started = Instant::now();
    let waiting = names.key(id, Part::Waiting);
    let llen = async || -> usize { names.redis(redis::cmd("LLEN").arg(&waiting)).await };

    assert_eq!(
        store.cut_begin(&c, &general, &lease).await.unwrap(),
        CutStep::Begun { held: (PREQUEUE + POST) as u64, post: POST as u64, moved: 0, prequeued: None }
    );
    // Fans who join while the cut is in progress: after opensAt, and stamped before it (a clock
    // further off than the skew): staged, not held, whatever their stamp.
    let during = join(&store, &c, "d", 500, opens_at + 2_000).await;
    let stragglers = join(&store, &c, "x", 10, opens_at - 500).await;
    for u in ["d7", "x3"] {
        assert_eq!(standing(&store, &c, u).await, Standing::Unknown, "{u} joined during the cut: staged, pending");
    }

    let mut post_steps = Vec::new();
    loop {
        match store.cut_stage_post(&c, &general, &lease).await.unwrap() {
            CutStep::Staged { staged, left } => {
                post_steps.push(staged);
                if left == 0 {
                    break;
                }
            }
            other => panic!("staging post: {other:?}"),
        }
    }
    assert!(post_steps.iter().all(|s| *s as usize <= CUT_SLICE), "post staged in slices: {post_steps:?}");
    assert_eq!(post_steps.iter().sum::<u64>(), POST as u64);

    let held = store.held(&c, &general).await.unwrap();
    assert_eq!(held.iter().collect::<HashSet<_>>(), pre.iter().collect::<HashSet<_>>(), "the pre-queue, each once");
    let hash = queuegate::fairness::list_hash(&held);
    assert_eq!(
        store.cut_commit(&c, &general, &hash, held.len() as u64, &lease).await.unwrap(),
        CutStep::Committed { prequeued: PREQUEUE as u64, moved: 0 }
    );
    let ordered = queuegate::fairness::order(&seed, &held).unwrap();
    let (mut moved, mut slices, mut done) = (0u64, 0usize, None);
    for slice in ordered.chunks(CUT_SLICE) {
        let before = llen().await;
        let step = store.cut_slice(&c, &general, moved, slice, &lease).await.unwrap();
        let grew = llen().await - before;
        assert_eq!(grew, slice.len(), "one call queued exactly its slice");
        assert!(grew <= CUT_SLICE);
        slices += 1;
        moved += slice.len() as u64;
        match step {
            CutStep::Moved { moved: m, prequeued } => assert_eq!((m, prequeued), (moved, PREQUEUE as u64)),
            CutStep::Done { prequeued, after } => done = Some((prequeued, after)),
            other => panic!("slice {slices}: {other:?}"),
        }
        if slices == 100 {
            // Mid-cut: a fan already queued has the position it keeps; one not yet moved is
            // still in the pre-queue (no position shown that could change); release waits.
            let Standing::Waiting { position, .. } = standing(&store, &c, &ordered[500]).await else {
                panic!("a fan of the first slice is waiting")
            };
            assert_eq!(position, 501);
            assert!(matches!(standing(&store, &c, &ordered[150_000]).await, Standing::Held { .. }));
            let r = store.release(&c, &general, opens_at + 10_000).await.unwrap();
            assert_eq!(r.placed, 0, "nobody staged is placed before the whole pre-queue");
            join(&store, &c, "m", 50, opens_at + 3_000).await;
        }
    }
    let cut_ms = started.elapsed().as_secs_f64() * 1000.0;
    assert_eq!(done, Some((PREQUEUE as u64, POST as u64)), "the last slice finishes the cut");
    assert_eq!(slices, PREQUEUE.div_ceil(CUT_SLICE));
    let Standing::Waiting { position, .. } = standing(&store, &c, &ordered[500]).await else { panic!("still waiting") };
    assert_eq!(position, 501, "a position shown during the cut does not change after it");

    // Everyone staged meanwhile is placed behind the whole pre-queue.
    let mut released = 0;
    loop {
        let r = store.release(&c, &general, opens_at + 10_000).await.unwrap();
        released += r.placed;
        if r.staged == 0 {
            break;
        }
        assert!(r.placed > 0, "placement stalled with {} staged", r.staged);
    }
    let queue = queue_of(&names, id).await;
    let later: HashSet<String> =
        post.iter().chain(&during).chain(&stragglers).cloned().chain((0..50).map(|i| format!("m{i}"))).collect();
    assert_eq!(released as usize, later.len());
    assert_eq!(queue.len(), PREQUEUE + later.len(), "nobody lost");
    assert_eq!(queue.iter().collect::<HashSet<_>>().len(), queue.len(), "nobody doubled");
    assert_eq!(queue[..PREQUEUE], ordered[..], "the pre-queue in the seed's order");
    assert_eq!(queue[PREQUEUE..].iter().cloned().collect::<HashSet<_>>(), later, "then everyone else");

    // The published document verifies against the queue's head; late joins are counted.
    let fair = store.fair_state(&c, &general).await.unwrap();
    assert_eq!((fair.prequeued, fair.late), (Some(PREQUEUE as u64), 10), "{fair:?}");
    let commitment = fair.commitment.clone().unwrap();
    let list_hash = fair.list_hash.clone().expect("the list hash is published");
    let p = queuegate::fairness::Published { commitment: &commitment, seed: &seed, list_hash: &list_hash };
    assert_eq!(queuegate::fairness::verify(&p, &queue[..PREQUEUE]), Ok(()));

    // Each fan's `placed` event once, in queue order; the cut's event once.
    let (placed, shuffled) = outbox(&names, id).await;
    assert_eq!(placed, queue, "one placed event per fan, in queue order");
    assert_eq!(shuffled, vec![format!("{PREQUEUE}:{POST}")]);
    let report: HashMap<String, i64> = names.redis(redis::cmd("HGETALL").arg(names.key(id, Part::Report))).await;
    assert_eq!(report.get("placed"), Some(&(queue.len() as i64)), "report");

    let slow = slow_cut_calls(&names, since_s).await;
    // EVALSHA, sha, 15, 15 keys, step, lease, lane, moved: 22 arguments besides the fans.
    assert!(slow.iter().all(|(_, _, args)| *args <= 22 + CUT_SLICE), "a logged call carried more fans: {slow:?}");
    let max = slow.iter().map(|(us, _, _)| *us).max();
    println!(
        "cut: {PREQUEUE} pre-queued + {POST} post in {} post steps and {slices} slices, {cut_ms:.0} ms in all \
         (reading the pre-queue and ordering it included); cut calls at or over {} ms in SLOWLOG: {}, the slowest {}",
        post_steps.len(),
        SLOW_US / 1000,
        slow.len(),
        max.map_or("none".to_owned(), |us| format!("{:.1} ms", us as f64 / 1000.0)),
    );
    // Wall time is reported, not asserted (a benchmark's business: docs/benchmarks.md); what
    // bounds each call's work is asserted above: at most CUT_SLICE fans moved per call.
}

/// What a resumed cut must come to: the pre-queue in the seed's order, then `post`, once each.
async fn assert_cut_whole(
    names: &Names,
    store: &QueueStore,
    c: &ConcertId,
    seed: &str,
    pre: &[String],
    post: &[String],
    at: i64,
) {
    let general = Lane::general();
    loop {
        let r = store.release(c, &general, at).await.unwrap();
        if r.staged == 0 {
            break;
        }
        assert!(r.placed > 0, "placement stalled with {} staged", r.staged);
    }
    let queue = queue_of(names, c.as_str()).await;
    assert_eq!(queue.len(), pre.len() + post.len(), "nobody lost");
    assert_eq!(queue.iter().collect::<HashSet<_>>().len(), queue.len(), "nobody doubled");
    assert_eq!(queue[..pre.len()], queuegate::fairness::order(seed, pre).unwrap()[..], "the seed's order");
    assert_eq!(queue[pre.len()..].iter().collect::<HashSet<_>>(), post.iter().collect::<HashSet<_>>());
    let fair = store.fair_state(c, &general).await.unwrap();
    assert_eq!(fair.prequeued, Some(pre.len() as u64));
    assert_eq!(fair.list_hash.as_deref(), Some(queuegate::fairness::list_hash(pre).as_str()), "the published hash");
}

/// A dead admitter's lease lapses: moved to its end, as the clock would move it once the holder
/// stopped renewing it (the lease time is the admitter's, a minute here, so that a loaded
/// machine never lets it lapse while the test's admitter A is still working).
async fn lapse(names: &Names, concert: &str) {
    let key = names.key(concert, Part::Lease);
    let _: bool = names.redis(redis::cmd("PEXPIRE").arg(&key).arg(1)).await;
    assert!(
        poll_until(Duration::from_secs(5), async || {
            names.redis::<Option<String>>(redis::cmd("GET").arg(&key)).await.is_none()
        })
        .await,
        "a lease set to expire in 1 ms is gone"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admitter_that_dies_or_loses_its_lease_mid_cut_is_resumed_by_another_with_nobody_lost_or_doubled() {
    const PRE: usize = 20_000;
    const LATER: usize = 1_200;
    const LEASE_MS: u64 = 60_000;
    let names = Names::new();
    let store = names.store();
    let general = Lane::general();

    // Concert `mid`: admitter A queues 7 slices, then dies (it stops calling; its lease lapses).
    let c = ConcertId::parse("mid").unwrap();
    let opens_at = scheduled(&store, &c).await;
    let pre = join(&store, &c, "p", PRE, opens_at - 1_000).await;
    let post = join(&store, &c, "a", LATER, opens_at + 1_000).await;
    let seed = store.fair_state(&c, &general).await.unwrap().seed.unwrap();
    let a = store.lease(&c, "a", LEASE_MS).await.unwrap().expect("a free lease");
    assert!(matches!(store.cut_begin(&c, &general, &a).await.unwrap(), CutStep::Begun { .. }));
    while !matches!(store.cut_stage_post(&c, &general, &a).await.unwrap(), CutStep::Staged { left: 0, .. }) {}
    let held = store.held(&c, &general).await.unwrap();
    store.cut_commit(&c, &general, &queuegate::fairness::list_hash(&held), PRE as u64, &a).await.unwrap();
    let ordered = queuegate::fairness::order(&seed, &held).unwrap();
    let mut moved = 0;
    for slice in ordered.chunks(CUT_SLICE).take(7) {
        match store.cut_slice(&c, &general, moved, slice, &a).await.unwrap() {
            CutStep::Moved { moved: m, .. } => moved = m,
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(moved, 7 * CUT_SLICE as u64);
    // B cannot take over while A's lease lives: it does nothing.
    assert_eq!(store.cut(&c, &general, &seed, "b", LEASE_MS).await.unwrap(), Cut::NotLeader);
    assert_eq!(store.fair_state(&c, &general).await.unwrap().cut_moved, moved);
    // A's lease lapses; B takes it and finishes the cut where A stopped.
    lapse(&names, "mid").await;
    let Cut::Done { prequeued, after, .. } = store.cut(&c, &general, &seed, "b", 60_000).await.unwrap() else {
        panic!("B finishes the cut")
    };
    assert_eq!((prequeued, after), (PRE as u64, LATER as u64));
    // A comes back (it was only stalled) with its old lease: nothing it sends is written.
    let llen = async || -> usize { names.redis(redis::cmd("LLEN").arg(names.key("mid", Part::Waiting))).await };
    let waiting_before = llen().await;
    assert_eq!(
        store.cut_slice(&c, &general, moved, &ordered[moved as usize..moved as usize + CUT_SLICE], &a).await.unwrap(),
        CutStep::NotLeader
    );
    assert_eq!(llen().await, waiting_before);
    assert_cut_whole(&names, &store, &c, &seed, &pre, &post, opens_at + 10_000).await;
    let (placed, shuffled) = outbox(&names, "mid").await;
    assert_eq!(placed.len(), PRE + LATER, "one placed event per fan");
    assert_eq!(shuffled.len(), 1, "one concert.shuffled event");

    // Concert `early`: A dies after one slice of `post` is staged, before the pre-queue is
    // committed; B, holding the lease next, stages the rest, commits and cuts. A's stale lease
    // writes nothing, at any step.
    let c = ConcertId::parse("early").unwrap();
    let opens_at = scheduled(&store, &c).await;
    let pre = join(&store, &c, "p", PRE, opens_at - 1_000).await;
    let post = join(&store, &c, "a", LATER, opens_at + 1_000).await;
    let seed = store.fair_state(&c, &general).await.unwrap().seed.unwrap();
    let a = store.lease(&c, "a", LEASE_MS).await.unwrap().expect("a free lease");
    assert!(matches!(store.cut_begin(&c, &general, &a).await.unwrap(), CutStep::Begun { .. }));
    assert_eq!(
        store.cut_stage_post(&c, &general, &a).await.unwrap(),
        CutStep::Staged { staged: CUT_SLICE as u64, left: (LATER - CUT_SLICE) as u64 }
    );
    lapse(&names, "early").await;
    let b = store.lease(&c, "b", 60_000).await.unwrap().expect("B takes the lapsed lease");
    assert_eq!(store.cut_stage_post(&c, &general, &a).await.unwrap(), CutStep::NotLeader);
    assert_eq!(store.cut_commit(&c, &general, "forged", PRE as u64, &a).await.unwrap(), CutStep::NotLeader);
    assert_eq!(store.cut_slice(&c, &general, 0, &[], &a).await.unwrap(), CutStep::NotLeader);
    assert!(store.waiting_list(&c).await.unwrap().is_empty());
    assert!(b.starts_with("b:"));
    let Cut::Done { prequeued, after, calls } = store.cut(&c, &general, &seed, "b", 60_000).await.unwrap() else {
        panic!("B finishes the cut")
    };
    assert_eq!((prequeued, after), (PRE as u64, LATER as u64));
    println!("cut resumed before its commit: {calls} calls");
    assert_cut_whole(&names, &store, &c, &seed, &pre, &post, opens_at + 10_000).await;
}
