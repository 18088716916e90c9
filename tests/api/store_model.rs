//! Property test: the Redis apply script against a model, on the real Redis.
//!
//! Any sequence of joins (with repeats), split into consumer batches any way and replayed any
//! number of times, must leave the queue equal to the model: each fan once, in order of first
//! join, positions 1..n, and every fan's position lookup equal to its index in the model.

use proptest::prelude::*;
use queuegate::store::{QueueStore, Standing};

use crate::helpers::{redis_url, Names};

fn model(joins: &[u8]) -> Vec<String> {
    let mut q: Vec<String> = Vec::new();
    for j in joins {
        let u = format!("u{j}");
        if !q.contains(&u) {
            q.push(u);
        }
    }
    q
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, .. ProptestConfig::default() })]

    #[test]
    fn applied_batches_match_a_first_join_order_model(
        joins in proptest::collection::vec(0u8..40, 1..120),
        cuts in proptest::collection::vec(1usize..20, 1..10),
        replay in 0usize..3,
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let names = Names::new();
            let store = QueueStore::new(&redis_url(), &names.prefix, 2).unwrap();
            let users: Vec<String> = joins.iter().map(|j| format!("u{j}")).collect();
            // Split into batches of the sizes in `cuts` (cycled), then replay the first `replay` batches.
            let mut batches: Vec<&[String]> = Vec::new();
            let (mut i, mut k) = (0, 0);
            while i < users.len() {
                let n = cuts[k % cuts.len()].min(users.len() - i);
                batches.push(&users[i..i + n]);
                i += n;
                k += 1;
            }
            let replays: Vec<&[String]> = batches.iter().take(replay).copied().collect();
            for b in batches.iter().chain(replays.iter()) {
                let args: Vec<(&str, i64)> = b.iter().map(|u| (u.as_str(), 1)).collect();
                store.apply("c", &args).await.unwrap();
            }
            let want = model(&joins);
            prop_assert_eq!(store.waiting_list("c").await.unwrap(), want.clone());
            let (total, page) = store.page("c", 0, 1000).await.unwrap();
            prop_assert_eq!(total as usize, want.len());
            for (idx, e) in page.iter().enumerate() {
                prop_assert_eq!(e.position as usize, idx + 1);
                prop_assert_eq!(&e.user_id, &want[idx]);
            }
            for (idx, u) in want.iter().enumerate() {
                match store.standing("c", u).await.unwrap() {
                    Standing::Waiting { position, queue_length, .. } => {
                        prop_assert_eq!(position as usize, idx + 1);
                        prop_assert_eq!(queue_length as usize, want.len());
                    }
                    other => prop_assert!(false, "{} should be waiting, is {:?}", u, other),
                }
            }
            prop_assert_eq!(store.standing("c", "never").await.unwrap(), Standing::Unknown);
            Ok(())
        })?;
    }
}
