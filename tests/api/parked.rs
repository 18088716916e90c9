//! The parked-joins topic as a consumer reads it when it is given partitions: which concerts
//! still have joins parked (from the replayer group's committed offset to the end), so it parks
//! them too instead of placing their new joins before the parked ones.

use std::collections::HashSet;
use std::time::Duration;

use queuegate::ids::{ConcertId, EntryRecord, UserId};
use queuegate::kafka::{CutProbe, KafkaClients};
use queuegate::metrics::Metrics;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};

use crate::helpers::Names;

fn set(ids: &[&str]) -> HashSet<ConcertId> {
    ids.iter().map(|c| ConcertId::parse(*c).unwrap()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_concerts_still_parked_are_those_after_the_replayer_groups_committed_offset() {
    let names = Names::new();
    names.create_topics(1).await;
    let settings = names.settings();
    let kafka = KafkaClients::new(&settings.kafka, Metrics::new());
    let parked = settings.kafka.parked_topic();
    let lot = CutProbe::parked_lot(&kafka, &settings.consumer).unwrap();
    assert_eq!(lot.pending_concerts(100).await.unwrap(), Some(HashSet::new()), "nothing parked yet");
    assert!(lot.drained().await.unwrap());

    // Park joins of concerts a, b, b, c, as the consumer does (the entry record, its key).
    let producer: FutureProducer = kafka.producer().create().unwrap();
    for (i, c) in ["a", "b", "b", "c"].iter().enumerate() {
        let rec = EntryRecord {
            entry_id: format!("e{i}"),
            concert_id: ConcertId::parse(*c).unwrap(),
            user_id: UserId::parse(format!("u{i}")).unwrap(),
            joined_at_ms: 1,
            lane: None,
        };
        let (key, payload) = (rec.key(), serde_json::to_vec(&rec).unwrap());
        let sent = producer.send(FutureRecord::to(&parked).key(&key).payload(&payload), Duration::from_secs(10));
        sent.await.expect("parked");
    }
    assert_eq!(lot.pending_concerts(100).await.unwrap(), Some(set(&["a", "b", "c"])));
    assert_eq!(lot.pending_concerts(3).await.unwrap(), None, "more than it may read");
    assert!(!lot.drained().await.unwrap());

    // The replayer applied the first two and committed: a is no longer parked, b still is.
    let replayer: BaseConsumer = kafka.parked_consumer(&settings.consumer).create().unwrap();
    let commit = |next: i64| {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&parked, 0, Offset::Offset(next)).unwrap();
        replayer.commit(&tpl, CommitMode::Sync).expect("commit");
    };
    commit(2);
    assert_eq!(lot.pending_concerts(100).await.unwrap(), Some(set(&["b", "c"])));
    commit(4);
    assert_eq!(lot.pending_concerts(100).await.unwrap(), Some(HashSet::new()));
    assert!(lot.drained().await.unwrap());
}
