//! The dead-letter topic's tool: `queuegate dlt replay`.
//!
//! A record lands in `<topic>.dlt` when the consumer decides it can never be applied. After a fix
//! (a version that accepts what an older one refused, a corrected producer), an operator
//! re-publishes those records to the entry topic. Replay reads the DLT with its own consumer
//! group (`<group>-dlt-replay`) and moves each record in a Kafka transaction together with that
//! group's offsets, so every dead letter is re-published at most once however often replay runs
//! or crashes; the consumer's dedup makes a re-published join that is already queued harmless.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use anyhow::Context;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, Headers, Message, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};
use rdkafka::{Offset, TopicPartitionList};

use crate::config::KafkaSettings;
use crate::ids::EntryRecord;
use crate::kafka::{ClientRole, KafkaClients, KafkaContext};
use crate::metrics::Metrics;

/// What `dlt replay` is asked to do.
#[derive(Debug, Clone, Copy, Default)]
pub struct ReplayOptions {
    /// Report only; nothing is produced or committed.
    pub dry_run: bool,
    /// Re-publish records that are still invalid too.
    pub all: bool,
}

/// What a replay did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReplaySummary {
    pub read: u64,
    pub republished: u64,
    /// Still invalid, left in the DLT (without `--all`).
    pub still_invalid: u64,
}

const CHUNK: usize = 500;
const TIMEOUT: Duration = Duration::from_secs(10);

/// Replays the DLT up to its current end. Blocking (run it from `spawn_blocking` in async code).
/// `report` is called with a line per still-invalid record and every 1,000 records read.
pub fn replay(
    settings: &KafkaSettings,
    opts: ReplayOptions,
    mut report: impl FnMut(&str),
) -> anyhow::Result<ReplaySummary> {
    let kafka = KafkaClients::new(settings, Metrics::new());
    let dlt = settings.dlt_topic();
    let group = format!("{}-dlt-replay", settings.kafka_group);
    let consumer: BaseConsumer<KafkaContext> = kafka
        .replay_consumer(&group)
        .create_with_context(kafka.context(ClientRole::Replay))
        .context("creating the DLT consumer")?;
    let consumer = crate::kafka::GroupConsumer::new(consumer, ClientRole::Replay);
    consumer.subscribe(&[&dlt]).with_context(|| format!("subscribing to {dlt}"))?;
    let producer: Option<ThreadedProducer<KafkaContext>> = if opts.dry_run {
        None
    } else {
        let p: ThreadedProducer<KafkaContext> = kafka
            .transactional(ClientRole::Replay, &group)
            .create_with_context(kafka.context(ClientRole::Replay))
            .context("creating the replay producer")?;
        p.init_transactions(TIMEOUT).context("initialising transactions")?;
        Some(p)
    };

    let mut summary = ReplaySummary::default();
    let mut at_eof: HashSet<i32> = HashSet::new();
    let mut chunk: Vec<OwnedMessage> = Vec::new();
    let started = Instant::now();
    loop {
        let assigned: Vec<i32> =
            consumer.assignment().map(|a| a.elements().iter().map(|e| e.partition()).collect()).unwrap_or_default();
        let done = !assigned.is_empty() && assigned.iter().all(|p| at_eof.contains(p));
        if done || chunk.len() >= CHUNK {
            flush_chunk(&consumer, producer.as_ref(), settings, opts, &mut chunk, &mut summary, &mut report)?;
        }
        if done {
            return Ok(summary);
        }
        if assigned.is_empty() && started.elapsed() > Duration::from_secs(30) {
            anyhow::bail!("no partition of {dlt} was assigned within 30 s (does the topic exist?)");
        }
        match consumer.poll(Duration::from_millis(200)) {
            None => {}
            Some(Err(KafkaError::PartitionEOF(p))) => {
                at_eof.insert(p);
            }
            Some(Err(e)) => report(&format!("poll error: {e}")),
            Some(Ok(m)) => {
                at_eof.remove(&m.partition());
                summary.read += 1;
                if summary.read % 1000 == 0 {
                    report(&format!("{} dead letters read", summary.read));
                }
                chunk.push(m.detach());
            }
        }
    }
}

/// Re-publishes (or reports) one chunk, and commits its offsets in the same transaction.
fn flush_chunk(
    consumer: &BaseConsumer<KafkaContext>,
    producer: Option<&ThreadedProducer<KafkaContext>>,
    settings: &KafkaSettings,
    opts: ReplayOptions,
    chunk: &mut Vec<OwnedMessage>,
    summary: &mut ReplaySummary,
    report: &mut impl FnMut(&str),
) -> anyhow::Result<()> {
    if chunk.is_empty() {
        return Ok(());
    }
    if let Some(p) = producer {
        p.begin_transaction()?;
    }
    let mut offsets = TopicPartitionList::new();
    for m in chunk.iter() {
        offsets.add_partition_offset(m.topic(), m.partition(), Offset::Offset(m.offset() + 1))?;
        let valid = EntryRecord::decode(m.key(), m.payload());
        if let Err(why) = &valid {
            report(&format!(
                "partition {} offset {}: still invalid ({}){}",
                m.partition(),
                m.offset(),
                why,
                if opts.all { "; re-publishing anyway" } else { "; left in the DLT" }
            ));
            if !opts.all {
                summary.still_invalid += 1;
                continue;
            }
        }
        summary.republished += 1;
        if let Some(p) = producer {
            let partition = m.partition().to_string();
            let offset = m.offset().to_string();
            let mut headers = OwnedHeaders::new()
                .insert(Header { key: "qg-replayed-from-partition", value: Some(partition.as_str()) })
                .insert(Header { key: "qg-replayed-from-offset", value: Some(offset.as_str()) });
            if let Some(tp) = m.headers().and_then(|h| h.iter().find(|h| h.key == "traceparent")).and_then(|h| h.value)
            {
                headers = headers.insert(Header { key: "traceparent", value: Some(tp) });
            }
            let mut rec: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(&settings.kafka_topic).headers(headers);
            if let Some(k) = m.key() {
                rec = rec.key(k);
            }
            if let Some(v) = m.payload() {
                rec = rec.payload(v);
            }
            p.send(rec).map_err(|(e, _)| e)?;
        }
    }
    if let Some(p) = producer {
        let cgm = consumer.group_metadata().context("replay consumer has no group metadata")?;
        let committed =
            p.send_offsets_to_transaction(&offsets, &cgm, TIMEOUT).and_then(|()| p.commit_transaction(TIMEOUT));
        if let Err(e) = committed {
            let _ = p.abort_transaction(TIMEOUT);
            return Err(e).context("committing the replay transaction (nothing of this chunk was re-published)");
        }
    }
    chunk.clear();
    Ok(())
}
