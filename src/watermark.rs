//! First come, first placed: the watermark across the entry topic's partitions.
//!
//! A fan is placed only once every partition has passed its accepted stamp, so nobody accepted
//! earlier can still be on the way (docs/explain-guarantees.md §3). How far a partition has passed is
//! published by whoever consumes it, with its offsets: each commit of the consumer group carries,
//! in the committed offset's metadata, the highest stamp the consumer has applied from that
//! partition ([`encode`]). Partitions with no joins still move: every consumer appends a *tick*
//! (a record with only a `qg-tick` header holding its clock) to each partition it owns a few
//! times a second, and reads it back like any record, so once it has read its own tick it has
//! read everything appended before it.
//!
//! The watermark is the lowest of those stamps over every partition of the topic, less
//! `QUEUEGATE_CLOCK_SKEW_MS` (the most two instances' clocks differ, which also covers the
//! few ms from a gateway's stamp to the broker). A partition whose consumer died keeps its last
//! commit, so the watermark waits for its new owner to read on: a stalled partition delays
//! placement, never reorders it. A partition never committed with a stamp holds it too.

use std::time::Duration;

/// The header of a tick record; its value is the ticking consumer's clock (ms, decimal).
pub const TICK_HEADER: &str = "qg-tick";

/// How often a consumer ticks its partitions while joins are coming in.
pub const TICK_ACTIVE: Duration = Duration::from_millis(200);
/// How often once no join came for [`ACTIVE_FOR`]: a lone fan then waits at most this long
/// (plus the skew) to be placed.
pub const TICK_IDLE: Duration = Duration::from_secs(2);
/// How long after the last join a consumer keeps ticking at [`TICK_ACTIVE`].
pub const ACTIVE_FOR: Duration = Duration::from_secs(60);

const PREFIX: &str = "qgw1:";

/// The committed offset's metadata for a partition passed up to `stamp_ms`.
pub fn encode(stamp_ms: i64) -> String {
    format!("{PREFIX}{stamp_ms}")
}

/// The stamp a committed offset's metadata carries (None: none, or not ours).
pub fn decode(metadata: &str) -> Option<i64> {
    metadata.strip_prefix(PREFIX)?.parse().ok()
}

/// The watermark from every partition's passed stamp (None where a partition has none yet):
/// the lowest, less the skew. None while any partition has none.
pub fn watermark(passed: impl IntoIterator<Item = Option<i64>>, skew_ms: i64) -> Option<i64> {
    let mut low: Option<i64> = None;
    for p in passed {
        let p = p?;
        low = Some(low.map_or(p, |l| l.min(p)));
    }
    low.map(|l| l - skew_ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_round_trips_and_foreign_metadata_is_no_stamp() {
        assert_eq!(decode(&encode(1_700_000_000_123)), Some(1_700_000_000_123));
        assert_eq!(decode(""), None);
        assert_eq!(decode("something else"), None);
        assert_eq!(decode("qgw1:x"), None);
    }

    #[test]
    fn the_watermark_is_the_slowest_partition_less_the_skew_and_waits_for_every_partition() {
        assert_eq!(watermark([Some(5000), Some(3000), Some(9000)], 1000), Some(2000));
        assert_eq!(watermark([Some(5000), None], 1000), None);
        assert_eq!(watermark(Vec::<Option<i64>>::new(), 1000), None);
    }
}
