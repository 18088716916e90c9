//! What gateways learn of ended sessions (`gate_news.lua`): a burst is read in bounded pages,
//! and none is dropped. Until issue 35 one call returned at most 10,000 sids, oldest first, and
//! the gateway's next look started from Redis's time: a burst of more than 10,000 sessions
//! ending (a sweep after a stall, an operator ending many) lost its newest for that gateway.

use std::collections::HashSet;

use queuegate::ids::ConcertId;
use queuegate::store::keys::Part;
use queuegate::store::sessions::{NewsCursor, NEWS_PAGE};

use crate::helpers::Names;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_12000_sessions_ended_in_one_millisecond_is_read_in_bounded_pages_and_none_is_dropped() {
    let names = Names::new();
    let store = names.store();
    let id = "news";
    let c = ConcertId::parse(id).unwrap();
    let ended = names.key(id, Part::Ended);
    // 12,000 sessions ended in the same millisecond (as many end when a round ends them
    // together), 5 a millisecond later, written as the scripts write them (score: when, ms).
    let at = 1_700_000_000_000_i64;
    let burst: Vec<String> = (0..12_000).map(|i| format!("s{i:05}")).collect();
    for chunk in burst.chunks(1_000) {
        let mut zadd = redis::cmd("ZADD");
        zadd.arg(&ended);
        for sid in chunk {
            zadd.arg(at).arg(sid);
        }
        let _: i64 = names.redis(&zadd).await;
    }
    let later: Vec<String> = (0..5).map(|i| format!("t{i}")).collect();
    for sid in &later {
        let _: i64 = names.redis(redis::cmd("ZADD").arg(&ended).arg(at + 1).arg(sid)).await;
    }

    let mut seen = HashSet::new();
    let mut cursor = NewsCursor { since_ms: at - 2_000, skip: 0 };
    let mut pages = 0;
    loop {
        let news = store.gate_news(&c, cursor, NEWS_PAGE).await.unwrap();
        pages += 1;
        assert!(news.ended.len() <= NEWS_PAGE, "page {pages} returned {} sids, over {NEWS_PAGE}", news.ended.len());
        for sid in news.ended {
            assert!(seen.insert(sid.clone()), "{sid} returned twice (page {pages}, cursor {cursor:?})");
        }
        match news.more {
            Some(next) => {
                assert!(next != cursor, "the cursor did not move from {cursor:?} (page {pages})");
                cursor = next;
            }
            None => break,
        }
        assert!(pages <= 20, "more than 20 pages for 12,005 sids: the cursor loops ({cursor:?})");
    }
    let missing: Vec<&String> = burst.iter().chain(&later).filter(|s| !seen.contains(*s)).collect();
    assert!(
        missing.is_empty(),
        "{} ended sessions never returned, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    assert_eq!(seen.len(), 12_005);
    assert_eq!(pages, 13, "12,005 sids in pages of {NEWS_PAGE}");
}
