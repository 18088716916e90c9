//! The parked joins' replayer: applies the joins the consumer parked in `<topic>.parked` (their
//! concert's Redis shard was down), in the order they were parked, retrying each batch until its
//! shard is back, then commits its offsets (group `<group>.parked`).
//!
//! At-least-once, like the consumer: a crash between a write and its commit applies the batch
//! again, which the apply script turns into duplicates it ignores. It runs in every consumer
//! process on a Redis Cluster; the topic has one partition, so one of them works at a time and
//! the order is kept.

use futures_util::FutureExt;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::{Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;

use super::backoff::Backoff;
use super::batch::{next_offsets, Plan};
use crate::config::ConsumerSettings;
use crate::ids::UserId;
use crate::kafka::{ClientRole, KafkaClients, KafkaContext};
use crate::metrics::Metrics;
use crate::store::QueueStore;

/// Parked joins applied per batch at most.
const BATCH: usize = 500;

pub struct ParkedReplayer {
    consumer: StreamConsumer<KafkaContext>,
    store: QueueStore,
    metrics: Metrics,
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
        Ok(ParkedReplayer { consumer, store, metrics })
    }

    /// Runs until `stop` is cancelled.
    pub async fn run(self, stop: CancellationToken) -> anyhow::Result<()> {
        loop {
            let first = tokio::select! {
                biased;
                _ = stop.cancelled() => return Ok(()),
                m = self.consumer.recv() => m.map(|m| m.detach()),
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
            let mut offsets = TopicPartitionList::new();
            for ((topic, partition), next) in next_offsets(msgs.iter()) {
                offsets.add_partition_offset(&topic, partition, Offset::Offset(next)).expect("a fresh list");
            }
            // A commit that fails (a rebalance) is harmless: the batch is read and applied again.
            if let Err(e) = self.consumer.commit(&offsets, CommitMode::Async) {
                tracing::info!(error = %e, "parked joins: commit failed; the batch will be applied again");
            }
        }
    }

    /// Applies one batch, each concert's joins in one call, retrying until Redis takes them.
    /// False when `stop` came first.
    async fn apply(&self, msgs: &[OwnedMessage], stop: &CancellationToken) -> bool {
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
                match self.store.apply(&group.concert, &joins).await {
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
