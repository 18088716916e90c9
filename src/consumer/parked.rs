//! The parked joins' replayer: applies the joins the consumer parked in `<topic>.parked` (their
//! concert's Redis shard was down), in the order they were parked, retrying each batch until its
//! shard is back, then commits its offsets (group `<group>.parked`).
//!
//! At-least-once, like the consumer: a crash between a write and its commit applies the batch
//! again, which the apply script turns into duplicates it ignores. While a shard is short of
//! replicas it applies on and holds its commits back, as the main loop does (see `held`). It runs in every consumer
//! process on a Redis Cluster; the topic has one partition, so one of them works at a time and
//! the order is kept.

use futures_util::FutureExt;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::{Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;

use std::collections::HashMap;
use std::time::Duration;

use super::backoff::Backoff;
use super::batch::{next_offsets, Plan};
use super::held::{Held, Partition};
use crate::config::ConsumerSettings;
use crate::ids::UserId;
use crate::kafka::{ClientRole, KafkaClients, KafkaContext};
use crate::metrics::Metrics;
use crate::store::QueueStore;

/// Parked joins applied per batch at most.
const BATCH: usize = 500;

pub struct ParkedReplayer {
    consumer: crate::kafka::GroupConsumer<StreamConsumer<KafkaContext>>,
    store: QueueStore,
    metrics: Metrics,
    /// Concerts whose offsets wait for Redis replicas, as in the main loop (see [`super::held`]).
    held: Held,
    /// Per partition, one past the last record applied.
    position: HashMap<Partition, i64>,
}

impl ParkedReplayer {
    pub fn new(
        kafka: &KafkaClients,
        settings: &ConsumerSettings,
        store: QueueStore,
        metrics: Metrics,
    ) -> anyhow::Result<Self> {
        let topic = kafka.settings().parked_topic();
        let consumer: StreamConsumer<KafkaContext> = kafka
            .parked_consumer(settings)
            .create_with_context(kafka.context(ClientRole::Parking))
            .map_err(|e| anyhow::anyhow!("creating the parked joins' consumer: {e}"))?;
        consumer.subscribe(&[&topic]).map_err(|e| anyhow::anyhow!("subscribing to {topic}: {e}"))?;
        Ok(ParkedReplayer {
            consumer: crate::kafka::GroupConsumer::new(consumer, crate::kafka::ClientRole::Parking),
            store,
            metrics,
            held: Held::new(None),
            position: HashMap::new(),
        })
    }

    /// Runs until `stop` is cancelled.
    pub async fn run(mut self, stop: CancellationToken) -> anyhow::Result<()> {
        loop {
            let first = tokio::select! {
                biased;
                _ = stop.cancelled() => return Ok(()),
                m = self.consumer.recv() => m.map(|m| m.detach()),
                _ = tokio::time::sleep(Duration::from_secs(1)), if !self.held.is_empty() => {
                    if self.held.recheck(&self.store).await {
                        self.commit();
                    }
                    continue;
                }
            };
            let mut msgs = match first {
                Ok(m) => vec![m],
                Err(e) => {
                    tracing::debug!(error = %e, "parked joins: poll error");
                    continue;
                }
            };
            while msgs.len() < BATCH {
                match self.consumer.recv().now_or_never() {
                    Some(Ok(m)) => msgs.push(m.detach()),
                    _ => break,
                }
            }
            if !self.apply(&msgs, &stop).await {
                return Ok(());
            }
            for (p, next) in next_offsets(msgs.iter()) {
                let at = self.position.entry(p).or_insert(next);
                *at = (*at).max(next);
            }
            self.held.recheck(&self.store).await;
            self.commit();
        }
    }

    /// Commits the position of every partition, lowered to held floors, and seeks back the
    /// partitions whose writes a failover lost.
    fn commit(&mut self) {
        let mut next = self.position.clone();
        self.held.cap(&mut next);
        let mut offsets = TopicPartitionList::new();
        for ((topic, partition), next) in next {
            offsets.add_partition_offset(&topic, partition, Offset::Offset(next)).expect("a fresh list");
        }
        // A commit that fails (a rebalance) is harmless: the batch is read and applied again.
        if let Err(e) = self.consumer.commit(&offsets, CommitMode::Async) {
            tracing::info!(error = %e, "parked joins: commit failed; the batch will be applied again");
        }
        for ((topic, partition), offset) in self.held.take_lost() {
            if let Some(at) = self.position.get_mut(&(topic.clone(), partition)) {
                *at = (*at).min(offset);
            }
            if let Err(e) = self.consumer.seek(&topic, partition, Offset::Offset(offset), Duration::from_secs(5)) {
                tracing::info!(partition, offset, error = %e, "parked joins: seek skipped");
            }
        }
    }

    /// Applies one batch, each concert's joins in one call, retrying until Redis takes them.
    /// False when `stop` came first.
    async fn apply(&mut self, msgs: &[OwnedMessage], stop: &CancellationToken) -> bool {
        let plan = Plan::new(msgs);
        for (m, why) in &plan.dead {
            // Parked records were decoded before they were parked: this is not one of ours.
            tracing::error!(
                partition = m.partition(),
                offset = m.offset(),
                reason = why.code(),
                "parked joins: a record that is not a join; skipped"
            );
        }
        for group in &plan.groups {
            let joins: Vec<(&UserId, i64)> = group.joins.iter().map(|(u, at)| (u, *at)).collect();
            let mut backoff = Backoff::new();
            loop {
                let positions = group
                    .records
                    .iter()
                    .map(|&i| ((msgs[i].topic().to_owned(), msgs[i].partition()), msgs[i].offset()));
                match self.held.apply(&self.store, &group.concert, &group.lane, &joins, positions).await {
                    Ok(applied) => {
                        self.metrics.consumer_records.with_label_values(&["appended"]).inc_by(applied.appended);
                        self.metrics.consumer_records.with_label_values(&["duplicate"]).inc_by(applied.duplicates);
                        tracing::info!(concert = %group.concert, appended = applied.appended,
                            duplicates = applied.duplicates, attempts = backoff.attempts(), "parked joins applied");
                        break;
                    }
                    Err(e) => {
                        self.metrics.consumer_retries.with_label_values(&["parked"]).inc();
                        if backoff.attempts().is_multiple_of(20) {
                            tracing::warn!(concert = %group.concert, error = %e, "parked joins: Redis still refuses; retrying");
                        }
                        if !backoff.wait(stop).await {
                            return false;
                        }
                    }
                }
            }
        }
        true
    }
}
