//! Property test: placement by stamp through partitions that lag, batches of any size, commits
//! at any time and consumers that crash, on the real Redis, against a model that places by stamp.
//!
//! Each partition holds records in the order they reached the broker; a record's stamp is its
//! arrival time less a jitter below the skew (gateways' clocks and the way to the broker). A
//! consumer reads each partition at its own pace, stages what it reads (apply.lua) and commits
//! the partition's position with the highest stamp it applied (the watermark's metadata); a
//! crash sends a partition back to its committed position and forgets what was read since
//! (its next owner re-reads, and may commit a lower stamp). Releases (release.lua) happen at any
//! time with the watermark from the committed stamps. Whatever the interleaving: every fan is
//! placed exactly once, in (stamp, userId) order, nobody is late, and each release only appends
//! (no position ever grows).

use proptest::prelude::*;
use queuegate::ids::{ConcertId, Lane, UserId};

use crate::helpers::Names;

const SKEW: i64 = 100;

#[derive(Debug, Clone)]
enum Op {
    /// The consumer of partition `p % partitions` reads and applies up to `n` records.
    Read {
        p: usize,
        n: usize,
    },
    Commit(usize),
    Crash(usize),
    Release,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => (0usize..4, 1usize..6).prop_map(|(p, n)| Op::Read { p, n }),
        2 => (0usize..4).prop_map(Op::Commit),
        1 => (0usize..4).prop_map(Op::Crash),
        2 => Just(Op::Release),
    ]
}

/// Per partition: (gap to the previous arrival in ms, jitter below SKEW) per record.
fn partitions() -> impl Strategy<Value = Vec<Vec<(i64, i64)>>> {
    proptest::collection::vec(proptest::collection::vec((0i64..40, 0i64..SKEW), 0..12), 1..4)
}

#[derive(Default, Clone)]
struct Partition {
    records: Vec<(UserId, i64)>,
    read: usize,
    /// Highest stamp applied since the consumer (re)started on it.
    applied: Option<i64>,
    committed: usize,
    committed_stamp: Option<i64>,
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, .. ProptestConfig::default() })]

    #[test]
    fn fans_are_placed_once_in_stamp_order_whatever_the_lags_commits_and_crashes(
        layout in partitions(),
        ops in proptest::collection::vec(op(), 1..60),
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let names = Names::new();
            let store = names.store();
            let c = ConcertId::parse("o").unwrap();
            let mut parts: Vec<Partition> = Vec::new();
            let mut n = 0;
            for (pi, recs) in layout.iter().enumerate() {
                let mut arrival = 1_000_000 + pi as i64;
                let mut p = Partition::default();
                for (gap, jitter) in recs {
                    arrival += gap;
                    n += 1;
                    p.records.push((UserId::parse(format!("f{n}")).unwrap(), arrival - jitter));
                }
                parts.push(p);
            }
            let mut placed: Vec<String> = Vec::new();
            let release = async |parts: &[Partition], placed: &mut Vec<String>, w: Option<i64>| -> Result<(), TestCaseError> {
                let w = w.or_else(|| queuegate::watermark::watermark(parts.iter().map(|p| p.committed_stamp), SKEW));
                if let Some(w) = w {
                    store.release(&c, &Lane::general(), w).await.unwrap();
                }
                let now = store.waiting_list(&c).await.unwrap();
                prop_assert!(now.starts_with(placed), "a release only appends: {:?} then {:?}", placed, now);
                *placed = now;
                Ok(())
            };
            for op in &ops {
                let k = parts.len();
                match *op {
                    Op::Read { p, n } => {
                        let part = &mut parts[p % k];
                        let to = (part.read + n).min(part.records.len());
                        let batch: Vec<(&UserId, i64)> = part.records[part.read..to].iter().map(|(u, s)| (u, *s)).collect();
                        if !batch.is_empty() {
                            store.apply(&c, &batch).await.unwrap();
                            let high = batch.iter().map(|(_, s)| *s).max();
                            part.applied = part.applied.max(high);
                        }
                        part.read = to;
                    }
                    Op::Commit(p) => {
                        let part = &mut parts[p % k];
                        part.committed = part.read;
                        if part.applied.is_some() {
                            part.committed_stamp = part.applied;
                        }
                    }
                    Op::Crash(p) => {
                        let part = &mut parts[p % k];
                        part.read = part.committed;
                        part.applied = None;
                    }
                    Op::Release => release(&parts, &mut placed, None).await?,
                }
            }
            // Everyone is read and committed in the end, and the watermark passes them all.
            for part in parts.iter_mut() {
                let batch: Vec<(&UserId, i64)> = part.records[part.read..].iter().map(|(u, s)| (u, *s)).collect();
                if !batch.is_empty() {
                    store.apply(&c, &batch).await.unwrap();
                }
            }
            release(&parts, &mut placed, Some(i64::MAX)).await?;

            let mut want: Vec<(i64, String)> =
                parts.iter().flat_map(|p| p.records.iter().map(|(u, s)| (*s, u.as_str().to_owned()))).collect();
            want.sort();
            let want: Vec<String> = want.into_iter().map(|(_, u)| u).collect();
            prop_assert_eq!(&placed, &want, "placed once each, in (stamp, userId) order");
            prop_assert_eq!(store.late_joins(&c, &Lane::general()).await.unwrap(), 0);
            Ok(())
        })?;
    }
}
