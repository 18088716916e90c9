//! Turning one polled batch into Redis work: decode, validate, group by concert and lane.

use std::collections::HashMap;

use rdkafka::message::{Message, OwnedMessage};

use crate::ids::{ConcertId, EntryRecord, InvalidRecord, Lane, UserId};

/// One concert lane's share of a batch, in the order the records were read.
#[derive(Debug, PartialEq, Eq)]
pub struct ConcertJoins {
    pub concert: ConcertId,
    pub lane: Lane,
    /// (userId, joinedAt ms)
    pub joins: Vec<(UserId, i64)>,
    /// The trace id of each join (from its `traceparent` header), so one join can be followed
    /// from the HTTP request to the Redis write in the logs.
    pub traces: Vec<Option<String>>,
    /// Where each join's record is in the batch (to dead-letter the group if it must be parked).
    pub records: Vec<usize>,
}

/// What a batch asks of Redis and of the dead-letter topic.
#[derive(Debug)]
pub struct Plan<'a> {
    /// (Concert, lane) groups in order of first appearance; each gets one script call.
    pub groups: Vec<ConcertJoins>,
    /// Records that can never be applied, with the reason.
    pub dead: Vec<(&'a OwnedMessage, InvalidRecord)>,
    /// Per (topic, partition), the highest accepted stamp among the batch's joins and ticks
    /// (see [`crate::watermark`]).
    pub stamps: HashMap<(String, i32), i64>,
    /// How many of the records were ticks.
    pub ticks: usize,
}

impl<'a> Plan<'a> {
    pub fn new(msgs: &'a [OwnedMessage]) -> Self {
        let mut index: HashMap<(ConcertId, Lane), usize> = HashMap::new();
        let mut groups: Vec<ConcertJoins> = Vec::new();
        let mut dead = Vec::new();
        let mut stamps: HashMap<(String, i32), i64> = HashMap::new();
        let mut ticks = 0;
        let mut passed = |m: &OwnedMessage, stamp: i64| {
            let e = stamps.entry((m.topic().to_owned(), m.partition())).or_insert(stamp);
            *e = (*e).max(stamp);
        };
        for (at, m) in msgs.iter().enumerate() {
            if let Some(tick) = tick_stamp(m) {
                ticks += 1;
                if let Some(stamp) = tick {
                    passed(m, stamp);
                }
                continue;
            }
            match EntryRecord::decode(m.key(), m.payload()) {
                Ok(rec) => {
                    passed(m, rec.joined_at_ms);
                    let lane = rec.lane.unwrap_or_else(Lane::general);
                    let i = *index.entry((rec.concert_id.clone(), lane.clone())).or_insert_with(|| {
                        groups.push(ConcertJoins {
                            concert: rec.concert_id.clone(),
                            lane,
                            joins: Vec::new(),
                            traces: Vec::new(),
                            records: Vec::new(),
                        });
                        groups.len() - 1
                    });
                    groups[i].joins.push((rec.user_id, rec.joined_at_ms));
                    groups[i].traces.push(trace_id(m));
                    groups[i].records.push(at);
                }
                Err(why) => dead.push((m, why)),
            }
        }
        Plan { groups, dead, stamps, ticks }
    }
}

/// Some(stamp) when `m` is a tick (None inside when its stamp does not parse: still a tick,
/// never a join to dead-letter); None for any other record.
fn tick_stamp(m: &OwnedMessage) -> Option<Option<i64>> {
    use rdkafka::message::Headers;
    let h = m.headers()?.iter().find(|h| h.key == crate::watermark::TICK_HEADER)?;
    Some(h.value.and_then(|v| std::str::from_utf8(v).ok()).and_then(|v| v.parse().ok()))
}

/// The trace id in a record's `traceparent` header.
fn trace_id(m: &OwnedMessage) -> Option<String> {
    use rdkafka::message::Headers;
    let h = m.headers()?.iter().find(|h| h.key == "traceparent")?;
    let tp = std::str::from_utf8(h.value?).ok()?;
    crate::trace::TraceContext::parse(tp).map(|t| t.trace_id)
}

/// The offset to commit per (topic, partition): one past the highest offset seen.
pub fn next_offsets<'a>(msgs: impl Iterator<Item = &'a OwnedMessage>) -> HashMap<(String, i32), i64> {
    let mut next: HashMap<(String, i32), i64> = HashMap::new();
    for m in msgs {
        let e = next.entry((m.topic().to_owned(), m.partition())).or_insert(0);
        *e = (*e).max(m.offset() + 1);
    }
    next
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::Timestamp;

    fn msg(partition: i32, offset: i64, key: &str, value: &str) -> OwnedMessage {
        OwnedMessage::new(
            Some(value.as_bytes().to_vec()),
            Some(key.as_bytes().to_vec()),
            "t".into(),
            Timestamp::NotAvailable,
            partition,
            offset,
            None,
        )
    }

    fn cid(s: &str) -> ConcertId {
        ConcertId::parse(s).unwrap()
    }

    fn uid(s: &str) -> UserId {
        UserId::parse(s).unwrap()
    }

    fn join(user: &str, concert: &str) -> OwnedMessage {
        let v = format!(r#"{{"entryId":"e","concertId":"{concert}","userId":"{user}","joinedAtMs":7}}"#);
        msg(0, 0, &format!("{user}:{concert}"), &v)
    }

    #[test]
    fn records_are_grouped_by_concert_in_read_order() {
        let msgs = vec![join("a", "c1"), join("b", "c2"), join("c", "c1")];
        let plan = Plan::new(&msgs);
        assert_eq!(
            plan.groups,
            vec![
                ConcertJoins {
                    concert: cid("c1"),
                    lane: Lane::general(),
                    joins: vec![(uid("a"), 7), (uid("c"), 7)],
                    traces: vec![None, None],
                    records: vec![0, 2]
                },
                ConcertJoins {
                    concert: cid("c2"),
                    lane: Lane::general(),
                    joins: vec![(uid("b"), 7)],
                    traces: vec![None],
                    records: vec![1]
                },
            ]
        );
        assert!(plan.dead.is_empty());
    }

    #[test]
    fn a_concerts_lanes_are_grouped_apart() {
        let fanclub = |user: &str| {
            let v = format!(r#"{{"entryId":"e","concertId":"c1","userId":"{user}","joinedAtMs":7,"lane":"fanclub"}}"#);
            msg(0, 0, &format!("{user}:c1"), &v)
        };
        let msgs = vec![fanclub("a"), join("b", "c1"), fanclub("c")];
        let plan = Plan::new(&msgs);
        let groups: Vec<(&str, Vec<usize>)> =
            plan.groups.iter().map(|g| (g.lane.as_str(), g.records.clone())).collect();
        assert_eq!(groups, vec![("fanclub", vec![0, 2]), ("general", vec![1])]);
    }

    #[test]
    fn a_joins_trace_id_comes_from_its_traceparent_header() {
        use rdkafka::message::{Header, OwnedHeaders};
        let mut m = join("a", "c1");
        let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        m = m.replace_headers(Some(OwnedHeaders::new().insert(Header { key: "traceparent", value: Some(tp) })));
        let msgs = [m, join("b", "c1")];
        let plan = Plan::new(&msgs);
        assert_eq!(plan.groups[0].traces, vec![Some("4bf92f3577b34da6a3ce929d0e0e4736".to_owned()), None]);
    }

    #[test]
    fn ticks_are_not_joins_and_every_partition_passes_its_highest_stamp() {
        use rdkafka::message::{Header, OwnedHeaders};
        let tick = |partition: i32, stamp: &str| {
            msg(partition, 0, "", "").replace_headers(Some(
                OwnedHeaders::new().insert(Header { key: crate::watermark::TICK_HEADER, value: Some(stamp) }),
            ))
        };
        let msgs = [tick(1, "50"), join("a", "c1"), tick(1, "20"), tick(2, "garbage")];
        let plan = Plan::new(&msgs);
        assert_eq!(plan.groups.len(), 1);
        assert!(plan.dead.is_empty(), "a tick is never a dead letter");
        assert_eq!(plan.ticks, 3);
        assert_eq!(plan.stamps.get(&("t".to_owned(), 1)), Some(&50));
        assert_eq!(plan.stamps.get(&("t".to_owned(), 0)), Some(&7), "the join's own stamp");
        assert_eq!(plan.stamps.get(&("t".to_owned(), 2)), None);
    }

    #[test]
    fn poison_records_are_set_aside_with_their_reason() {
        let msgs = vec![msg(0, 1, "x", "not json"), join("a", "c1")];
        let plan = Plan::new(&msgs);
        assert_eq!(plan.dead.len(), 1);
        assert_eq!(plan.dead[0].1.code(), "undecodable");
        assert_eq!(plan.groups.len(), 1);
    }

    #[test]
    fn the_commit_offset_is_one_past_the_highest_per_partition() {
        let msgs = [msg(0, 5, "k", "v"), msg(1, 2, "k", "v"), msg(0, 9, "k", "v"), msg(0, 7, "k", "v")];
        let next = next_offsets(msgs.iter());
        assert_eq!(next[&("t".to_owned(), 0)], 10);
        assert_eq!(next[&("t".to_owned(), 1)], 3);
    }
}
