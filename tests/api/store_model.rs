//! Property test: the Redis scripts against a model, on the real Redis.
//!
//! Random interleavings of joins (in batches of any size, with repeats and replayed batches),
//! admissions and removals must leave the queue equal to a simple model: each fan queued once,
//! in order of first join, never again after being admitted or removed; positions 1..n; every
//! fan's lookup equal to the model's answer. After every step, a gateway's view of the queue
//! (one view.lua read, kept up to date across steps as a gateway keeps it) must place every fan
//! exactly where ZRANK and the model do.

use std::collections::HashSet;

use proptest::prelude::*;
use queuegate::ids::{ConcertId, UserId};
use queuegate::store::view::{Lookup, Place, QueueView};
use queuegate::store::{AdmitRequest, Outcome, QueueStore, Standing};

use crate::helpers::Names;

#[derive(Debug, Clone)]
enum Op {
    /// A consumer batch of joins (user numbers); `replay` applies it twice (a redelivery).
    Joins {
        users: Vec<u8>,
        replay: bool,
    },
    Admit(u32),
    Remove(u8),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (proptest::collection::vec(0u8..30, 1..12), any::<bool>()).prop_map(|(users, replay)| Op::Joins { users, replay }),
        1 => (1u32..5).prop_map(Op::Admit),
        1 => (0u8..30).prop_map(Op::Remove),
    ]
}

#[derive(Default)]
struct Model {
    waiting: Vec<UserId>,
    ever: HashSet<UserId>,
    admitted: HashSet<UserId>,
    removed: HashSet<UserId>,
}

fn name(u: u8) -> UserId {
    UserId::parse(format!("u{u}")).unwrap()
}

/// Reads the view as a gateway would (asking for `gone` only when it changed) and checks every
/// fan's place in it against the model.
async fn check_view(store: &QueueStore, c: &ConcertId, view: &mut QueueView, m: &Model) -> Result<(), TestCaseError> {
    let users: Vec<UserId> = (0u8..30).map(name).collect();
    let asked: Vec<&UserId> = users.iter().collect();
    let read = store.read_view(c, view.gone_ver(), &asked, &[]).await.unwrap();
    view.update(&read);
    prop_assert!(view.consistent(), "the view's parts add up: {:?}", view);
    prop_assert_eq!(view.queue_length as usize, m.waiting.len());
    for (u, found) in users.iter().zip(&read.lookups) {
        if let Some(idx) = m.waiting.iter().position(|w| w == u) {
            let Lookup::Waiting(seq) = found else {
                return Err(TestCaseError::fail(format!("{u} should be waiting, the view says {found:?}")));
            };
            prop_assert_eq!(view.place(*seq), Place::Waiting(idx as u64 + 1), "{}", u);
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

fn admit_all(max: u32) -> AdmitRequest<'static> {
    AdmitRequest { max, ttl_ms: 600_000, max_active: 0, abandon_after_ms: 0, per_second: 0, lease: None, request: None }
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
            let mut m = Model::default();
            let mut view = QueueView::default();
            let mut clock = 0i64;
            for op in &ops {
                match op {
                    Op::Joins { users, replay } => {
                        let users: Vec<UserId> = users.iter().map(|u| name(*u)).collect();
                        // Stamps in read order: placement by stamp is then placement in read order.
                        let args: Vec<(&UserId, i64)> = users.iter().map(|u| { clock += 1; (u, clock) }).collect();
                        store.apply(&c, &args).await.unwrap();
                        if *replay {
                            store.apply(&c, &args).await.unwrap();
                        }
                        store.release(&c, clock + 1).await.unwrap();
                        for u in users {
                            if m.ever.insert(u.clone()) {
                                m.waiting.push(u);
                            }
                        }
                    }
                    Op::Admit(k) => {
                        let got = store.admit(&c, admit_all(*k)).await.unwrap().expect("no lease involved");
                        let n = (*k as usize).min(m.waiting.len());
                        let want: Vec<UserId> = m.waiting.drain(..n).collect();
                        let got_users: Vec<UserId> = got.fans.iter().map(|(u, _)| u.clone()).collect();
                        prop_assert_eq!(&got_users, &want);
                        m.admitted.extend(want);
                    }
                    Op::Remove(u) => {
                        let u = name(*u);
                        let was_waiting = m.waiting.contains(&u);
                        prop_assert_eq!(store.remove(&c, &u).await.unwrap(), was_waiting);
                        if was_waiting {
                            m.waiting.retain(|w| *w != u);
                            m.removed.insert(u);
                        }
                    }
                }
                check_view(&store, &c, &mut view, &m).await?;
            }
            let model_list: Vec<&str> = m.waiting.iter().map(|u| u.as_str()).collect();
            prop_assert_eq!(store.waiting_list(&c).await.unwrap(), model_list);
            let (total, page) = store.page(&c, 0, 1000).await.unwrap();
            prop_assert_eq!(total as usize, m.waiting.len());
            for (idx, e) in page.iter().enumerate() {
                prop_assert_eq!(e.position as usize, idx + 1);
                prop_assert_eq!(&e.user_id, &m.waiting[idx]);
            }
            for u in (0u8..30).map(name) {
                let (got, _) = store.standing(&c, &u, 0).await.unwrap();
                if let Some(idx) = m.waiting.iter().position(|w| *w == u) {
                    match got {
                        Standing::Waiting { position, queue_length, .. } => {
                            prop_assert_eq!(position as usize, idx + 1);
                            prop_assert_eq!(queue_length as usize, m.waiting.len());
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
            let counts = store.counts(&c).await.unwrap();
            prop_assert_eq!(counts.waiting as usize, m.waiting.len());
            prop_assert_eq!(counts.admitted as usize, m.admitted.len());
            prop_assert_eq!(counts.removed as usize, m.removed.len());
            Ok(())
        })?;
    }
}
