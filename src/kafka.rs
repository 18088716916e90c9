//! Every Kafka client queuegate makes is configured here, from the Kafka settings section.
//!
//! [`KafkaClients`] starts each configuration from the same base (bootstrap servers, a client id
//! naming the client's job, statistics every 5 s) and the operator's pass-through librdkafka
//! properties (`QUEUEGATE_KAFKA_PROPERTIES`, `--kafka-property`), so SASL, TLS or any other
//! client option reaches every client without a code change. Then each client's own settings
//! are set on top: those carry queuegate's guarantees (idempotence, `acks=all`, read-committed
//! isolation, manual commits), which is why a pass-through property may not name them
//! ([`crate::config::check_properties`] refuses it at start-up).
//!
//! One client context, [`KafkaContext`], serves them all: it feeds librdkafka's statistics into
//! the metrics under the client's role and, for consumers, logs and counts rebalances.

use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, ConsumerContext, Rebalance};
use rdkafka::statistics::Statistics;
use rdkafka::{ClientConfig, ClientContext};

use crate::config::{ConsumerSettings, KafkaSettings, SESSION_TIMEOUT_MS};
use crate::metrics::Metrics;

/// Builds the configuration of every Kafka client from one settings section.
#[derive(Clone)]
pub struct KafkaClients {
    settings: KafkaSettings,
    metrics: Metrics,
}

/// The job of a client: its `client.id` and the `client` label of its metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientRole {
    /// The gateway's entry producer.
    Producer,
    /// The Kafka → Redis consumer.
    Consumer,
    /// The consumer's transactional producer (offsets and dead letters).
    Transactions,
    /// `dlt replay`'s consumer and transactional producer.
    Replay,
    /// The consumer's producer and consumer of parked joins (a Redis shard down).
    Parking,
    /// Metadata requests for `/readyz`.
    Probe,
    /// The consumer's ticks (see [`crate::watermark`]).
    Ticks,
    /// Topic administration (tools and tests).
    Admin,
    /// The outbox relay's producer and the events worker's consumer (src/events.rs).
    Events,
}

impl ClientRole {
    /// The metrics label and the suffix of `client.id`.
    pub fn as_str(self) -> &'static str {
        match self {
            ClientRole::Producer => "producer",
            ClientRole::Consumer => "consumer",
            ClientRole::Transactions => "transactions",
            ClientRole::Replay => "replay",
            ClientRole::Parking => "parking",
            ClientRole::Probe => "probe",
            ClientRole::Ticks => "ticks",
            ClientRole::Admin => "admin",
            ClientRole::Events => "events",
        }
    }
}

impl KafkaClients {
    pub fn new(settings: &KafkaSettings, metrics: Metrics) -> Self {
        KafkaClients { settings: settings.clone(), metrics }
    }

    /// The section the clients are built from.
    pub fn settings(&self) -> &KafkaSettings {
        &self.settings
    }

    /// The metrics the clients feed (the events worker counts its dropped deliveries there).
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The client context for `role`: statistics into the metrics, rebalances logged.
    pub fn context(&self, role: ClientRole) -> KafkaContext {
        KafkaContext { role, metrics: self.metrics.clone() }
    }

    /// What every client shares: brokers, client id, statistics, and the pass-through properties.
    fn base(&self, role: ClientRole) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.settings.kafka_brokers)
            .set("client.id", format!("queuegate-{}", role.as_str()))
            .set("statistics.interval.ms", "5000")
            .set("socket.keepalive.enable", "true");
        for p in &self.settings.kafka_properties {
            c.set(&p.key, p.value.expose());
        }
        c
    }

    /// The gateway's entry producer: idempotent (so `acks=all`), batched and compressed, with
    /// the delivery timeout after which a join is answered 503.
    pub fn producer(&self) -> ClientConfig {
        let s = &self.settings;
        let mut c = self.base(ClientRole::Producer);
        c.set("enable.idempotence", "true")
            .set("acks", "all")
            .set("max.in.flight.requests.per.connection", "5")
            .set("linger.ms", s.kafka_linger_ms.to_string())
            .set("compression.type", &s.kafka_compression)
            .set("batch.num.messages", "10000")
            .set("batch.size", s.kafka_batch_bytes.to_string())
            .set("queue.buffering.max.messages", (s.max_in_flight * 2).max(1000).to_string())
            .set("message.timeout.ms", s.kafka_delivery_timeout_ms.to_string());
        c
    }

    /// The entry consumer: read-committed, manual offsets, bounded prefetch.
    pub fn consumer(&self, consumer: &ConsumerSettings) -> ClientConfig {
        let mut c = self.base(ClientRole::Consumer);
        c.set("group.id", &self.settings.kafka_group)
            .set("isolation.level", "read_committed")
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("session.timeout.ms", SESSION_TIMEOUT_MS.to_string())
            .set("heartbeat.interval.ms", "1000")
            .set("max.poll.interval.ms", consumer.kafka_max_poll_interval_ms.to_string())
            // The broker answers a fetch when 64 KB are ready or after 50 ms: under load that
            // is a few fetches a second instead of one per produce request.
            .set("fetch.min.bytes", "65536")
            .set("fetch.wait.max.ms", "50")
            // Bounds what librdkafka prefetches while the loop is busy with Redis (default 64 MB):
            // a backlog waits in Kafka, not in this process's memory.
            .set("queued.max.messages.kbytes", consumer.consumer_prefetch_kb.to_string());
        c
    }

    /// A transactional producer with a fresh transactional id under `prefix`. One id per
    /// process: fencing of stale instances comes from the consumer group metadata sent with the
    /// offsets (KIP-447), not from a fixed transactional id.
    pub fn transactional(&self, role: ClientRole, prefix: &str) -> ClientConfig {
        let mut c = self.base(role);
        c.set("transactional.id", format!("{prefix}-{}", uuid::Uuid::new_v4()))
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("transaction.timeout.ms", "60000");
        c
    }

    /// The consumer of parked joins: the entry consumer's settings, in group `<group>.parked`.
    pub fn parked_consumer(&self, consumer: &ConsumerSettings) -> ClientConfig {
        let mut c = self.consumer(consumer);
        c.set("group.id", format!("{}.parked", self.settings.kafka_group))
            .set("client.id", format!("queuegate-{}", ClientRole::Parking.as_str()))
            .set("fetch.min.bytes", "1");
        c
    }

    /// `dlt replay`'s consumer of the dead-letter topic, in group `group`, reporting the end of
    /// each partition.
    pub fn replay_consumer(&self, group: &str) -> ClientConfig {
        let mut c = self.base(ClientRole::Replay);
        c.set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .set("isolation.level", "read_committed")
            .set("enable.partition.eof", "true");
        c
    }

    /// The events worker's consumer of the events topic, in group `<group>.events`.
    pub fn events_consumer(&self, consumer: &ConsumerSettings) -> ClientConfig {
        let mut c = self.consumer(consumer);
        // Fewer, fuller fetches during a burst (the events are ~300 bytes each), at most 25 ms
        // more delay while quiet.
        c.set("group.id", format!("{}.events", self.settings.kafka_group))
            .set("client.id", format!("queuegate-{}", ClientRole::Events.as_str()))
            .set("fetch.min.bytes", "16384")
            .set("fetch.wait.max.ms", "25")
            // A backlog of events waits in Kafka, not here: 1 MB prefetched per partition.
            .set("queued.max.messages.kbytes", "1024");
        c
    }

    /// A client for metadata requests only (readiness of roles without a producer).
    pub fn probe(&self) -> ClientConfig {
        self.base(ClientRole::Probe)
    }

    /// An admin client (creating topics).
    pub fn admin(&self) -> ClientConfig {
        self.base(ClientRole::Admin)
    }

    /// A readiness probe: whether the brokers answer a metadata request within the timeout.
    /// Blocking when called: run it from `spawn_blocking`.
    pub fn readiness_probe(&self) -> anyhow::Result<KafkaProbe> {
        let client: rdkafka::producer::BaseProducer<KafkaContext> = self
            .probe()
            .create_with_context(self.context(ClientRole::Probe))
            .map_err(|e| anyhow::anyhow!("creating the Kafka readiness probe: {e}"))?;
        Ok(KafkaProbe::new(move |timeout| {
            use rdkafka::producer::Producer;
            client.client().fetch_metadata(None, timeout).is_ok()
        }))
    }
}

/// How long dropping a group consumer waits for librdkafka to close it (leave the group, settle
/// its commits) before going on without it.
pub const CONSUMER_CLOSE_GRACE: Duration = Duration::from_secs(5);

/// A consumer of a group whose drop is bounded in time. Dropping an rdkafka consumer closes it:
/// it polls until the group coordinator has seen it leave, and with every broker gone that never
/// happens (seen: a process whose broker had been killed hung at exit for ten minutes, a tokio
/// worker stuck in the consumer's drop). Here the close runs on a thread of its own; the drop
/// waits for it at most [`CONSUMER_CLOSE_GRACE`], then goes on and leaves the thread to finish when
/// the broker answers again, or to end with the process. With a broker that answers, the close
/// takes milliseconds and the group rebalances at once, as before.
pub struct GroupConsumer<C: Send + 'static> {
    inner: Option<C>,
    role: &'static str,
}

impl<C: Send + 'static> GroupConsumer<C> {
    pub fn new(consumer: C, role: ClientRole) -> Self {
        GroupConsumer { inner: Some(consumer), role: role.as_str() }
    }
}

impl<C: Send + 'static> std::ops::Deref for GroupConsumer<C> {
    type Target = C;
    fn deref(&self) -> &C {
        self.inner.as_ref().expect("present until dropped")
    }
}

impl<C: Send + 'static> Drop for GroupConsumer<C> {
    fn drop(&mut self) {
        let Some(consumer) = self.inner.take() else { return };
        let (closed_tx, closed_rx) = std::sync::mpsc::channel::<()>();
        let spawned = std::thread::Builder::new().name(format!("close-{}", self.role)).spawn(move || {
            drop(consumer);
            let _ = closed_tx.send(());
        });
        if spawned.is_err() {
            tracing::warn!(role = self.role, "no thread to close the Kafka consumer on; leaving it open");
            return;
        }
        // On a worker of tokio's multi-threaded runtime, the wait hands the worker's other
        // tasks to another worker first (block_in_place), so they are not held up to the grace
        // with it; elsewhere (a current-thread runtime, a plain thread) it just waits.
        let wait = || closed_rx.recv_timeout(CONSUMER_CLOSE_GRACE).is_err();
        let late = match tokio::runtime::Handle::try_current() {
            Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
                tokio::task::block_in_place(wait)
            }
            _ => wait(),
        };
        if late {
            tracing::warn!(
                role = self.role,
                grace_ms = CONSUMER_CLOSE_GRACE.as_millis() as u64,
                "the Kafka consumer did not close in time (no broker answers); going on without it"
            );
        }
    }
}

/// A blocking librdkafka call that did not return within its bound.
#[derive(Debug, thiserror::Error)]
#[error("{0} did not return within {1:?} (no broker answers); its thread is left to finish")]
pub struct Stuck(pub &'static str, pub Duration);

/// Runs the blocking librdkafka call `f` on a thread of its own and waits for it at most `bound`.
/// The transactional calls take a timeout but do not always keep it: a
/// `send_offsets_to_transaction` given 10 s was still blocked minutes after its broker had been
/// killed. On tokio's blocking pool such a call also holds the runtime's shutdown for ever (a
/// landing CI run hung ten minutes so); here it holds only its own thread, which ends when the
/// call returns, or with the process. The caller treats [`Stuck`] as a failure of the call.
pub async fn off_runtime<T: Send + 'static>(
    what: &'static str,
    bound: Duration,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, Stuck> {
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    let spawned = std::thread::Builder::new().name(format!("kafka-{what}")).spawn(move || {
        let _ = done_tx.send(f());
    });
    if spawned.is_err() {
        return Err(Stuck(what, Duration::ZERO));
    }
    match tokio::time::timeout(bound, done_rx).await {
        Ok(Ok(v)) => Ok(v),
        _ => Err(Stuck(what, bound)),
    }
}

/// What the consumer group has committed: the stamps of the placement watermark
/// ([`crate::watermark`], for the entry topic) and whether the parked joins are all applied (for
/// the parked-joins topic). A plain consumer with the group's id that never subscribes: it only
/// asks the group coordinator for the committed offsets.
#[derive(Clone)]
pub struct CutProbe {
    consumer: std::sync::Arc<GroupConsumer<BaseConsumer<KafkaContext>>>,
    topic: String,
}

const CUT_PROBE_TIMEOUT: Duration = Duration::from_secs(5);

impl CutProbe {
    pub fn new(clients: &KafkaClients, consumer: &ConsumerSettings) -> anyhow::Result<Self> {
        // read_uncommitted only changes what the offset fetch waits for: with read_committed
        // librdkafka asks for "stable" offsets, and the coordinator makes it wait (here: time
        // out) while a killed consumer's transaction is pending. Pending offsets are never
        // returned either way, so this reads exactly what is committed, at once.
        let c: BaseConsumer<KafkaContext> = clients
            .consumer(consumer)
            .set("isolation.level", "read_uncommitted")
            .create_with_context(clients.context(ClientRole::Consumer))
            .map_err(|e| anyhow::anyhow!("creating the fair start's offset probe: {e}"))?;
        Ok(CutProbe {
            consumer: std::sync::Arc::new(GroupConsumer::new(c, ClientRole::Consumer)),
            topic: clients.settings().kafka_topic.clone(),
        })
    }

    /// The same question about the parked joins: the parked-joins topic and the group that
    /// applies them back ([`KafkaClients::parked_consumer`]).
    pub fn parked_lot(clients: &KafkaClients, consumer: &ConsumerSettings) -> anyhow::Result<Self> {
        let c: BaseConsumer<KafkaContext> = clients
            .parked_consumer(consumer)
            .create_with_context(clients.context(ClientRole::Parking))
            .map_err(|e| anyhow::anyhow!("creating the parked joins' offset probe: {e}"))?;
        Ok(CutProbe {
            consumer: std::sync::Arc::new(GroupConsumer::new(c, ClientRole::Parking)),
            topic: clients.settings().parked_topic(),
        })
    }

    /// The concerts of the records the group has not consumed yet (from its committed offset to
    /// the end of each partition), reading at most `max` records; None when there are more (or
    /// they could not all be read within a few seconds). For the parked joins: a consumer that
    /// is given partitions must go on parking the concerts that still have joins parked, or its
    /// new joins of them would be placed before the parked ones.
    pub async fn pending_concerts(
        &self,
        max: usize,
    ) -> anyhow::Result<Option<std::collections::HashSet<crate::ids::ConcertId>>> {
        let (c, topic) = (self.consumer.clone(), self.topic.clone());
        tokio::task::spawn_blocking(move || {
            use rdkafka::consumer::Consumer;
            use rdkafka::message::Message;
            let md = c.fetch_metadata(Some(&topic), CUT_PROBE_TIMEOUT)?;
            let t = md.topics().first().ok_or_else(|| anyhow::anyhow!("no metadata for topic {topic}"))?;
            let mut all = rdkafka::TopicPartitionList::new();
            for p in t.partitions() {
                all.add_partition(&topic, p.id());
            }
            let committed = c.committed_offsets(all, CUT_PROBE_TIMEOUT)?;
            let mut concerts = std::collections::HashSet::new();
            let (mut read, deadline) = (0usize, std::time::Instant::now() + Duration::from_secs(10));
            for p in t.partitions() {
                let (low, high) = c.fetch_watermarks(&topic, p.id(), CUT_PROBE_TIMEOUT)?;
                let at = committed.find_partition(&topic, p.id()).and_then(|e| e.offset().to_raw()).unwrap_or(-1);
                let from = if at < 0 { low } else { at.max(low) };
                if from >= high {
                    continue;
                }
                let mut tpl = rdkafka::TopicPartitionList::new();
                tpl.add_partition_offset(&topic, p.id(), rdkafka::Offset::Offset(from))?;
                c.assign(&tpl)?;
                let mut next = from;
                while next < high {
                    if read >= max || std::time::Instant::now() > deadline {
                        let _ = c.unassign();
                        return Ok(None);
                    }
                    match c.poll(Duration::from_millis(500)) {
                        Some(Ok(m)) => {
                            next = m.offset() + 1;
                            read += 1;
                            if let Ok(rec) = crate::ids::EntryRecord::decode(m.key(), m.payload()) {
                                concerts.insert(rec.concert_id);
                            }
                        }
                        Some(Err(e)) => return Err(e.into()),
                        None => {}
                    }
                }
                c.unassign()?;
            }
            Ok(Some(concerts))
        })
        .await?
    }

    /// Every partition's passed stamp, from the group's committed offsets' metadata
    /// ([`crate::watermark`]): None for a partition not yet committed with one.
    pub async fn passed_stamps(&self) -> anyhow::Result<Vec<(i32, Option<i64>)>> {
        let (c, topic) = (self.consumer.clone(), self.topic.clone());
        tokio::task::spawn_blocking(move || {
            use rdkafka::consumer::Consumer;
            let md = c.fetch_metadata(Some(&topic), CUT_PROBE_TIMEOUT)?;
            let t = md.topics().first().ok_or_else(|| anyhow::anyhow!("no metadata for topic {topic}"))?;
            anyhow::ensure!(!t.partitions().is_empty(), "topic {topic} has no partitions");
            let mut all = rdkafka::TopicPartitionList::new();
            for p in t.partitions() {
                all.add_partition(&topic, p.id());
            }
            let committed = c.committed_offsets(all, CUT_PROBE_TIMEOUT)?;
            Ok(t.partitions()
                .iter()
                .map(|p| {
                    let stamp =
                        committed.find_partition(&topic, p.id()).and_then(|e| crate::watermark::decode(e.metadata()));
                    (p.id(), stamp)
                })
                .collect())
        })
        .await?
    }

    /// Whether the group has committed up to the end of every partition: nothing is left to read.
    pub async fn drained(&self) -> anyhow::Result<bool> {
        let ends = self.high_watermarks().await?;
        self.passed(&ends).await
    }

    /// Every partition's high watermark now.
    pub async fn high_watermarks(&self) -> anyhow::Result<Vec<(i32, i64)>> {
        let (c, topic) = (self.consumer.clone(), self.topic.clone());
        tokio::task::spawn_blocking(move || {
            use rdkafka::consumer::Consumer;
            let md = c.fetch_metadata(Some(&topic), CUT_PROBE_TIMEOUT)?;
            let t = md.topics().first().ok_or_else(|| anyhow::anyhow!("no metadata for topic {topic}"))?;
            anyhow::ensure!(!t.partitions().is_empty(), "topic {topic} has no partitions");
            t.partitions()
                .iter()
                .map(|p| Ok((p.id(), c.fetch_watermarks(&topic, p.id(), CUT_PROBE_TIMEOUT)?.1)))
                .collect()
        })
        .await?
    }

    /// Whether the group has committed at or past `cut` on every partition.
    pub async fn passed(&self, cut: &[(i32, i64)]) -> anyhow::Result<bool> {
        let (c, topic, cut) = (self.consumer.clone(), self.topic.clone(), cut.to_vec());
        tokio::task::spawn_blocking(move || {
            use rdkafka::consumer::Consumer;
            let mut tpl = rdkafka::TopicPartitionList::new();
            for (p, _) in &cut {
                tpl.add_partition(&topic, *p);
            }
            let committed = c.committed_offsets(tpl, CUT_PROBE_TIMEOUT)?;
            Ok(cut.iter().all(|(p, hw)| {
                // Nothing committed yet reads as 0: a partition that never had a record is past
                // a watermark of 0.
                let at = committed.find_partition(&topic, *p).and_then(|e| e.offset().to_raw()).unwrap_or(0).max(0);
                at >= *hw
            }))
        })
        .await?
    }
}

/// Asks the brokers for metadata, for `/readyz`: through the entry producer where the process
/// has one, else through a client of its own ([`KafkaClients::readiness_probe`]).
#[derive(Clone)]
pub struct KafkaProbe(std::sync::Arc<dyn Fn(Duration) -> bool + Send + Sync>);

impl KafkaProbe {
    pub fn new(probe: impl Fn(Duration) -> bool + Send + Sync + 'static) -> Self {
        KafkaProbe(std::sync::Arc::new(probe))
    }

    /// Whether a metadata request is answered within `timeout`. Blocking: call it from
    /// `spawn_blocking`.
    pub fn reachable(&self, timeout: Duration) -> bool {
        (self.0)(timeout)
    }
}

/// The one client context: statistics into [`Metrics`] by client role, rebalances logged and
/// counted. Rebalance events are delivered inside the consumer's `recv()`, which the consumer
/// loop calls only between batches (or while a batch waits for Redis with its partitions
/// paused), so a revocation never lands between a batch's Redis write and its commit unnoticed:
/// the commit filters by assignment.
#[derive(Clone)]
pub struct KafkaContext {
    role: ClientRole,
    metrics: Metrics,
}

impl ClientContext for KafkaContext {
    fn stats(&self, statistics: Statistics) {
        self.metrics.record_kafka_stats(self.role.as_str(), &statistics);
    }
}

/// Delivery reports of the producers that use this context directly (the replay and the probe)
/// need no handling: a failed record fails its transaction's commit.
impl rdkafka::producer::ProducerContext for KafkaContext {
    type DeliveryOpaque = ();
    fn delivery(&self, _: &rdkafka::message::DeliveryResult<'_>, _: Self::DeliveryOpaque) {}
}

impl ConsumerContext for KafkaContext {
    fn pre_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let role = self.role.as_str();
        let kind = match rebalance {
            Rebalance::Revoke(tpl) => {
                tracing::info!(role, partitions = tpl.count(), "partitions revoked");
                "revoke"
            }
            Rebalance::Assign(tpl) => {
                tracing::info!(role, partitions = tpl.count(), "partitions assigned");
                "assign"
            }
            Rebalance::Error(e) => {
                tracing::warn!(role, error = %e, "rebalance error");
                "error"
            }
        };
        // The metric is the entry consumer's (its group is the one whose rebalances matter to
        // placement); the parked-joins and events consumers' are only logged.
        if matches!(self.role, ClientRole::Consumer) {
            self.metrics.consumer_rebalances.with_label_values(&[kind]).inc();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::KafkaProperty;

    /// Stands in for a consumer whose close never hears from a broker: its drop takes 10 s.
    struct NeverCloses;
    impl Drop for NeverCloses {
        fn drop(&mut self) {
            std::thread::sleep(Duration::from_secs(10));
        }
    }

    #[test]
    fn dropping_a_consumer_that_cannot_close_waits_the_grace_and_keeps_the_workers_other_tasks_running() {
        // One worker: while the drop waits, the ticker beside it can only run if the wait gave
        // the worker's tasks away (block_in_place).
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let (ticks, waited) = rt.block_on(async {
            let ticks = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
            let t = ticks.clone();
            let ticker = tokio::spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    t.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            });
            tokio::time::sleep(Duration::from_millis(50)).await;
            let consumer = GroupConsumer::new(NeverCloses, ClientRole::Consumer);
            let dropped = tokio::spawn(async move {
                let began = std::time::Instant::now();
                drop(consumer);
                began.elapsed()
            });
            let at_drop = ticks.load(std::sync::atomic::Ordering::Relaxed);
            let waited = dropped.await.unwrap();
            let ticks = ticks.load(std::sync::atomic::Ordering::Relaxed) - at_drop;
            ticker.abort();
            (ticks, waited)
        });
        assert!(waited >= CONSUMER_CLOSE_GRACE && waited < Duration::from_secs(9), "the drop took {waited:?}");
        assert!(ticks >= 10, "the worker's other task ticked {ticks} times in the {waited:?} the drop waited");
    }

    #[test]
    fn every_client_gets_the_brokers_and_the_pass_through_properties() {
        let mut s = crate::config::Settings::for_test("t", "g", "p");
        s.kafka.kafka_properties = vec![KafkaProperty::new("socket.timeout.ms", "12345")];
        let k = KafkaClients::new(&s.kafka, Metrics::new());
        let all = [
            k.producer(),
            k.consumer(&s.consumer),
            k.transactional(ClientRole::Transactions, "g"),
            k.replay_consumer("g-dlt-replay"),
            k.probe(),
            k.admin(),
        ];
        for c in &all {
            assert_eq!(c.get("bootstrap.servers"), Some(s.kafka.kafka_brokers.as_str()));
            assert_eq!(c.get("socket.timeout.ms"), Some("12345"));
        }
        assert_eq!(all[0].get("acks"), Some("all"));
        assert_eq!(all[1].get("isolation.level"), Some("read_committed"));
        assert_eq!(all[1].get("session.timeout.ms"), Some("10000"));
    }
}
