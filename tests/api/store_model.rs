//! Property test: the Redis scripts against a model, on the real Redis, with two lanes.
//!
//! Random interleavings of joins (in batches of any size, with repeats and replayed batches,
//! each join naming a lane), admissions and removals must leave each lane's queue equal to a
//! simple model: each fan queued once per concert, in the lane of its first join, in order of
//! first join, never again after being admitted or removed; positions 1..n within the lane;
//! admissions split 70/30 by a smooth weighted round robin that skips an empty lane; every
//! fan's lookup equal to the model's answer. After every step, a gateway's view of the queue
//! (one view.lua read for both lanes, kept up to date across steps as a gateway keeps it) must
//! place every fan exactly where ZRANK and the model do.

use std::collections::{HashMap, HashSet};

use proptest::prelude::*;
use queuegate::ids::{ConcertId, Lane, UserId};
use queuegate::store::view::{Lookup, Place, QueueView};
use queuegate::store::{AdmitRequest, Outcome, QueueStore, Standing};

use crate::helpers::Names;

#[derive(Debug, Clone)]
enum Op {
    /// A consumer batch of joins (user number, and whether the join names the fan-club lane);
    /// `replay` applies it twice (a redelivery).
    Joins {
        users: Vec<(u8, bool)>,
        replay: bool,
    },
    Admit(u32),
    Remove(u8),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (proptest::collection::vec((0u8..30, any::<bool>()), 1..12), any::<bool>())
            .prop_map(|(users, replay)| Op::Joins { users, replay }),
        1 => (1u32..8).prop_map(Op::Admit),
        1 => (0u8..30).prop_map(Op::Remove),
    ]
}

/// The lanes, in the concert's order, with their shares.
fn lanes() -> Vec<(Lane, u32)> {
    vec![(Lane::parse("fanclub").unwrap(), 7), (Lane::general(), 3)]
}

#[derive(Default)]
struct Model {
    /// Per lane, in [`lanes`]'s order.
    waiting: [Vec<UserId>; 2],
    lane_of: HashMap<UserId, usize>,
    admitted: HashSet<UserId>,
    removed: HashSet<UserId>,
    /// The smooth weighted round robin's running weights.
    current: [i64; 2],
    admitted_per_lane: [usize; 2],
}

impl Model {
    /// The lanes the next `k` admissions come from: each step adds every lane with fans left its
    /// share, takes the highest (the first on a tie), and takes the sum back from it.
    fn admit(&mut self, k: usize) -> [Vec<UserId>; 2] {
        let shares = [7i64, 3];
        let mut picks = [0usize; 2];
        for _ in 0..k {
            let mut best: Option<usize> = None;
            let mut total = 0;
            for l in 0..2 {
                if self.waiting[l].len() > picks[l] {
                    self.current[l] += shares[l];
                    total += shares[l];
                    if best.is_none_or(|b| self.current[l] > self.current[b]) {
                        best = Some(l);
                    }
                }
            }
            let Some(b) = best else { break };
            self.current[b] -= total;
            picks[b] += 1;
        }
        let out = [self.waiting[0].drain(..picks[0]).collect(), self.waiting[1].drain(..picks[1]).collect()];
        for (admitted, picked) in self.admitted_per_lane.iter_mut().zip(picks) {
            *admitted += picked;
        }
        out
    }
}

fn name(u: u8) -> UserId {
    UserId::parse(format!("u{u}")).unwrap()
}

/// Reads the view as a gateway would (asking for each lane's `gone` only when it changed) and
/// checks every fan's place in it against the model.
async fn check_view(
    store: &QueueStore,
    c: &ConcertId,
    views: &mut [QueueView; 2],
    m: &Model,
) -> Result<(), TestCaseError> {
    let users: Vec<UserId> = (0u8..30).map(name).collect();
    let asked: Vec<&UserId> = users.iter().collect();
    let lanes = lanes();
    let vers: Vec<Option<String>> = views.iter().map(|v| v.gone_ver().map(str::to_owned)).collect();
    let known: Vec<(&Lane, Option<&str>)> = lanes.iter().zip(&vers).map(|((l, _), v)| (l, v.as_deref())).collect();
    let read = store.read_view(c, &known, &asked, &[]).await.unwrap();
    for (l, view) in views.iter_mut().enumerate() {
        view.update(&read.lanes[l]);
        prop_assert!(view.consistent(), "lane {}'s view's parts add up: {:?}", l, view);
        prop_assert_eq!(view.queue_length as usize, m.waiting[l].len());
    }
    for (u, found) in users.iter().zip(&read.lookups) {
        let waiting = (0..2).find_map(|l| m.waiting[l].iter().position(|w| w == u).map(|idx| (l, idx)));
        if let Some((l, idx)) = waiting {
            let Lookup::Waiting(got_lane, seq) = found else {
                return Err(TestCaseError::fail(format!("{u} should be waiting, the view says {found:?}")));
            };
            prop_assert_eq!(usize::from(*got_lane), l, "{}'s lane", u);
            prop_assert_eq!(views[l].place(*seq), Place::Waiting(idx as u64 + 1), "{}", u);
        } else if m.admitted.contains(u) {
            prop_assert!(matches!(found, Lookup::Left(Some(Outcome::Admitted { .. }))), "{} admitted: {:?}", u, found);
        } else if m.removed.contains(u) {
            prop_assert!(matches!(found, Lookup::Left(Some(Outcome::Removed { .. }))), "{} removed: {:?}", u, found);
        } else {
            prop_assert_eq!(found, &Lookup::NotYet);
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 40, .. ProptestConfig::default() })]

    #[test]
    fn scripts_match_the_model_under_any_interleaving(ops in proptest::collection::vec(op(), 1..40)) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let names = Names::new();
            let store = names.store();
            let c = ConcertId::parse("c").unwrap();
            let lanes = lanes();
            let lane_names: Vec<Lane> = lanes.iter().map(|(l, _)| l.clone()).collect();
            let mut m = Model::default();
            let mut views = [QueueView::default(), QueueView::default()];
            let mut clock = 0i64;
            for op in &ops {
                match op {
                    Op::Joins { users, replay } => {
                        // One consumer call per lane, as the consumer groups a batch.
                        for (l, (lane, _)) in lanes.iter().enumerate() {
                            let users: Vec<UserId> =
                                users.iter().filter(|(_, fc)| usize::from(!*fc) == l).map(|(u, _)| name(*u)).collect();
                            if users.is_empty() {
                                continue;
                            }
                            // Stamps in read order: placement by stamp is then placement in read order.
                            let args: Vec<(&UserId, i64)> = users.iter().map(|u| { clock += 1; (u, clock) }).collect();
                            store.apply_in(&c, lane, &args).await.unwrap();
                            if *replay {
                                store.apply_in(&c, lane, &args).await.unwrap();
                            }
                            for u in users {
                                if !m.lane_of.contains_key(&u) {
                                    m.lane_of.insert(u.clone(), l);
                                    m.waiting[l].push(u);
                                }
                            }
                        }
                        for lane in &lane_names {
                            store.release(&c, lane, clock + 1).await.unwrap();
                        }
                    }
                    Op::Admit(k) => {
                        let req = AdmitRequest { lanes: &lanes, ..AdmitRequest::manual(*k, 600_000) };
                        let got = store.admit(&c, req).await.unwrap().expect("no lease involved");
                        let want = m.admit(*k as usize);
                        let got_users: Vec<UserId> = got.fans.iter().map(|(u, _)| u.clone()).collect();
                        let want_users: Vec<UserId> = want.iter().flatten().cloned().collect();
                        prop_assert_eq!(&got_users, &want_users);
                        m.admitted.extend(want_users);
                    }
                    Op::Remove(u) => {
                        let u = name(*u);
                        let lane = (0..2).find(|&l| m.waiting[l].contains(&u));
                        prop_assert_eq!(store.remove(&c, &u).await.unwrap(), lane.is_some());
                        if let Some(l) = lane {
                            m.waiting[l].retain(|w| *w != u);
                            m.removed.insert(u);
                        }
                    }
                }
                check_view(&store, &c, &mut views, &m).await?;
            }
            for (l, lane) in lane_names.iter().enumerate() {
                let model_list: Vec<&str> = m.waiting[l].iter().map(|u| u.as_str()).collect();
                prop_assert_eq!(store.waiting_list_in(&c, lane).await.unwrap(), model_list);
                let (total, page) = store.page(&c, lane, 0, 1000).await.unwrap();
                prop_assert_eq!(total as usize, m.waiting[l].len());
                for (idx, e) in page.iter().enumerate() {
                    prop_assert_eq!(e.position as usize, idx + 1);
                    prop_assert_eq!(&e.user_id, &m.waiting[l][idx]);
                }
            }
            for u in (0u8..30).map(name) {
                let (got, lane, _) = store.standing(&c, &lane_names, &u, 0).await.unwrap();
                if let Some(&l) = m.lane_of.get(&u) {
                    prop_assert_eq!(&lane, &lane_names[l], "{}'s lane", u);
                }
                if let Some((l, idx)) = (0..2).find_map(|l| m.waiting[l].iter().position(|w| *w == u).map(|i| (l, i))) {
                    match got {
                        Standing::Waiting { position, queue_length, .. } => {
                            prop_assert_eq!(position as usize, idx + 1);
                            prop_assert_eq!(queue_length as usize, m.waiting[l].len());
                        }
                        other => prop_assert!(false, "{} should be waiting, is {:?}", u, other),
                    }
                } else if m.admitted.contains(&u) {
                    prop_assert!(matches!(got, Standing::Left { outcome: Outcome::Admitted { .. }, .. }), "{} admitted: {:?}", u, got);
                } else if m.removed.contains(&u) {
                    prop_assert!(matches!(got, Standing::Left { outcome: Outcome::Removed { .. }, .. }), "{} removed: {:?}", u, got);
                } else {
                    prop_assert_eq!(got, Standing::Unknown);
                }
            }
            let counts = store.counts(&c, &lane_names).await.unwrap();
            prop_assert_eq!(counts.waiting as usize, m.waiting[0].len() + m.waiting[1].len());
            prop_assert_eq!(counts.admitted as usize, m.admitted.len());
            prop_assert_eq!(counts.removed as usize, m.removed.len());
            for l in 0..2 {
                prop_assert_eq!(counts.lanes[l].waiting as usize, m.waiting[l].len());
                prop_assert_eq!(counts.lanes[l].admitted as usize, m.admitted_per_lane[l]);
            }
            Ok(())
        })?;
    }
}
