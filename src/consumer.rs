//! The consumer: moves joins from Kafka into the concerts' Redis queues, exactly once in effect.
//!
//! Each turn of the loop takes one batch (whatever is ready, up to `QUEUEGATE_CONSUMER_BATCH`
//! records), applies it to Redis with one atomic Lua call per concert, and only then commits the
//! batch's offsets. Delivery is at-least-once: a crash between the Redis write and the commit
//! replays the batch, and the script's per-concert dedup makes the replay a no-op. That is the
//! whole exactly-once argument, so two rules must hold:
//!
//! * offsets are committed only after every record at or below them was applied (or dead-lettered);
//! * a passing Redis failure is retried, never skipped: the batch is not committed until it lands.
//!
//! Commits go through a Kafka transaction (`send_offsets_to_transaction`) together with any
//! dead-letter records of the batch, so a record that can never be applied lands in
//! `<topic>.dlt` exactly when its offset is committed, and is not retried forever. The
//! transaction carries the consumer's group metadata, so after a rebalance a stale instance is
//! fenced off instead of committing offsets it no longer owns.
//!
//! On a Redis Cluster one shard can be down while the others serve. A concert whose writes keep
//! failing for `QUEUEGATE_CONSUMER_PARK_AFTER_MS` is *parked*: its records are copied to
//! `<topic>.parked` (acknowledged by the brokers before the batch commits, so the commit never
//! gets ahead of them) and the batch commits, so the other concerts go on draining. From then on
//! this instance parks every record of that concert, keeping their order, until the parked joins
//! have all been applied back by the replayer ([`parked::ParkedReplayer`]), which retries them
//! until the shard is back. An instance given partitions parks the concerts that still have
//! joins parked, whoever parked them. A copy parked twice (a crash between parking and committing) is a
//! duplicate the apply script ignores, like any replay.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;

use crate::config::ConsumerSettings;
use crate::ids::{InvalidRecord, UserId};
use crate::kafka::{ClientRole, KafkaClients, KafkaContext};
use crate::metrics::Metrics;
use crate::store::QueueStore;

mod backoff;
mod batch;
mod held;
pub mod parked;

use backoff::Backoff;
use batch::Plan;
use held::{Held, Partition};

/// The Kafka → Redis mover.
pub struct EntryConsumer {
    consumer: crate::kafka::GroupConsumer<StreamConsumer<KafkaContext>>,
    /// Makes the transactional producer (again, after a failed transaction).
    kafka: KafkaClients,
    txn: Option<FutureProducer<KafkaContext>>,
    store: QueueStore,
    metrics: Metrics,
    batch_max: usize,
    /// How long a batch waits for more records after its first one.
    linger: Duration,
    dlt_topic: Arc<str>,
    /// Grows while commits keep failing, so a persistent failure does not spin the loop.
    commit_backoff: Backoff,
    /// Records received while a batch was held up (see `wait_polling`); they start the next batch.
    carry: Vec<OwnedMessage>,
    /// Parking (a Redis Cluster with `QUEUEGATE_CONSUMER_PARK_AFTER_MS` > 0), else None.
    parking: Option<Parking>,
    /// Concerts whose offsets wait for Redis replicas (see [`held`]).
    held: Held,
    /// Per partition, one past the last record applied (or dead-lettered, or parked): how far
    /// a commit may go, held floors aside.
    position: HashMap<Partition, i64>,
    /// A hold ended since the last commit: the next commit covers every partition, not only
    /// the batch's.
    commit_all: bool,
    /// Per partition, the highest accepted stamp applied: committed with its offsets as the
    /// partition's share of the watermark ([`crate::watermark`]).
    stamps: HashMap<Partition, i64>,
    ticks: Ticks,
    /// Every partition this consumer paused and has not resumed, assigned now or not.
    /// librdkafka keeps an application's pause on a partition through a revocation and a later
    /// assignment of it, so resuming only what is assigned at the time would leave a partition
    /// that was revoked mid-outage paused for good when it comes back.
    paused: HashSet<Partition>,
}

/// The consumer's ticks: a record with only its clock, to each partition it owns, so that a
/// partition without joins still passes the time (see [`crate::watermark`]).
struct Ticks {
    /// Made on first use.
    producer: Option<FutureProducer<KafkaContext>>,
    last: Instant,
    last_join: Instant,
}

impl Ticks {
    fn due(&self) -> Instant {
        let every = if self.last_join.elapsed() < crate::watermark::ACTIVE_FOR {
            crate::watermark::TICK_ACTIVE
        } else {
            crate::watermark::TICK_IDLE
        };
        self.last + every
    }
}

/// What the consumer needs to park the joins of concerts whose Redis shard is down.
struct Parking {
    /// How long a concert's writes may fail before it is parked.
    after: Duration,
    topic: Arc<str>,
    /// Made on first use.
    producer: Option<FutureProducer<KafkaContext>>,
    /// Whether the replayer has applied every parked join.
    lot: crate::kafka::CutProbe,
    /// Concerts whose records this instance parks (in order) until the lot is drained.
    concerts: std::collections::HashSet<crate::ids::ConcertId>,
    last_check: Instant,
    /// The partitions assigned at the last batch: when they change, the concerts that still have
    /// joins parked (by whoever owned the partitions before) are parked here too.
    assigned: Vec<i32>,
}

/// Parked joins a consumer reads at most, when given partitions, to learn which concerts are
/// still parked.
const MAX_PENDING_READ: usize = 100_000;

/// How often a consumer with parked concerts asks whether the parked joins are all applied.
const LOT_CHECK_EVERY: Duration = Duration::from_secs(2);

/// Attempts a concert's write gets when Redis refuses it for good (a wrong-typed key, a script
/// error) before its records are parked: a few, in case the refusal was an operator's fix in
/// progress.
const PERMANENT_ATTEMPTS: u32 = 3;

/// How long one Kafka transaction step may take before it is retried.
const TXN_TIMEOUT: Duration = Duration::from_secs(10);

impl EntryConsumer {
    /// Creates the consumer from the Kafka and consumer sections and subscribes it; the
    /// transactional producer is started in [`run`](Self::run).
    pub fn new(
        kafka: &KafkaClients,
        settings: &ConsumerSettings,
        store: QueueStore,
        metrics: Metrics,
    ) -> anyhow::Result<Self> {
        let topic = &kafka.settings().kafka_topic;
        let parking = if store.is_cluster() && settings.consumer_park_after_ms > 0 {
            Some(Parking {
                after: Duration::from_millis(settings.consumer_park_after_ms),
                topic: kafka.settings().parked_topic().into(),
                producer: None,
                lot: crate::kafka::CutProbe::parked_lot(kafka, settings)?,
                concerts: Default::default(),
                last_check: Instant::now(),
                assigned: Vec::new(),
            })
        } else {
            None
        };
        let consumer: StreamConsumer<KafkaContext> = kafka
            .consumer(settings)
            .create_with_context(kafka.context(ClientRole::Consumer))
            .map_err(|e| anyhow::anyhow!("creating the Kafka consumer: {e}"))?;
        consumer.subscribe(&[topic]).map_err(|e| anyhow::anyhow!("subscribing to {topic}: {e}"))?;
        let metrics_for_held = metrics.clone();
        Ok(EntryConsumer {
            consumer: crate::kafka::GroupConsumer::new(consumer, ClientRole::Consumer),
            kafka: kafka.clone(),
            txn: None,
            store,
            metrics,
            batch_max: settings.consumer_batch,
            linger: Duration::from_millis(settings.consumer_linger_ms),
            dlt_topic: kafka.settings().dlt_topic().into(),
            commit_backoff: Backoff::new(),
            carry: Vec::new(),
            parking,
            held: Held::new(Some(metrics_for_held)),
            position: HashMap::new(),
            commit_all: false,
            stamps: HashMap::new(),
            // As if a join had just come: after a start, staged fans get placed promptly.
            ticks: Ticks {
                producer: None,
                last: Instant::now().checked_sub(Duration::from_secs(60)).unwrap_or_else(Instant::now),
                last_join: Instant::now(),
            },
            paused: HashSet::new(),
        })
    }

    /// Runs until `stop` is cancelled. A batch in progress when `stop` comes is finished and
    /// committed first, unless Redis or Kafka is down; then it is left uncommitted and will be
    /// replayed (harmlessly) by whoever owns its partitions next.
    pub async fn run(mut self, stop: CancellationToken) -> anyhow::Result<()> {
        tracing::info!(batch_max = self.batch_max, linger_ms = self.linger.as_millis() as u64, "consumer starting");
        loop {
            self.tick_if_due();
            let mut msgs = std::mem::take(&mut self.carry);
            self.metrics.consumer_carried.set(0);
            if msgs.is_empty() {
                let first = tokio::select! {
                    biased;
                    _ = stop.cancelled() => break,
                    m = self.consumer.recv() => m.map(|m| m.detach()),
                    // Nothing to read: the next tick is due, and held offsets still get
                    // committed once replicas catch up.
                    _ = tokio::time::sleep_until(self.ticks.due().into()) => {
                        if !self.held.is_empty() || self.commit_all {
                            self.commit_held().await;
                        }
                        continue;
                    }
                };
                match first {
                    Ok(m) => msgs.push(m),
                    Err(e) => {
                        tracing::warn!(error = %e, "consumer poll error");
                        continue;
                    }
                }
            }
            // Take what else arrives within the linger (from the first record), up to the batch
            // size. Every batch is one Redis pipeline per concert (a script call per 500 fans) and
            // one Kafka transaction, and the transaction is most of the broker's work for the
            // consumer, so under load a short linger buys far fewer, bigger transactions for a few
            // ms of latency.
            let deadline = tokio::time::Instant::now() + self.linger;
            while msgs.len() < self.batch_max {
                let next = match self.consumer.recv().now_or_never() {
                    Some(m) => m,
                    None if self.linger.is_zero() => break,
                    None => tokio::select! {
                        biased;
                        _ = stop.cancelled() => break,
                        _ = tokio::time::sleep_until(deadline) => break,
                        m = self.consumer.recv() => m,
                    },
                };
                match next {
                    Ok(m) => msgs.push(m.detach()),
                    Err(e) => {
                        tracing::warn!(error = %e, "consumer poll error");
                        break;
                    }
                }
            }
            if !self.process(msgs, &stop).await {
                break;
            }
        }
        tracing::info!("consumer stopped");
        Ok(())
    }

    /// Applies and commits one batch. False when `stop` interrupted it before the commit.
    async fn process(&mut self, msgs: Vec<OwnedMessage>, stop: &CancellationToken) -> bool {
        self.metrics.consumer_batch_size.with_label_values(&[] as &[&str]).observe(msgs.len() as f64);
        self.learn_parked_on_new_partitions().await;
        let mut plan = Plan::new(&msgs);
        let mut parked = Vec::new();
        // Records of concerts whose shard is down, to copy to the parked-joins topic.
        let mut to_park: Vec<usize> = Vec::new();
        for group in &plan.groups {
            if self.parking.as_ref().is_some_and(|p| p.concerts.contains(&group.concert)) {
                to_park.extend(&group.records);
                continue;
            }
            let joins: Vec<(&UserId, i64)> = group.joins.iter().map(|(u, at)| (u, *at)).collect();
            let mut backoff = Backoff::new();
            let failing_since = Instant::now();
            loop {
                let started = Instant::now();
                let positions = group
                    .records
                    .iter()
                    .map(|&i| ((msgs[i].topic().to_owned(), msgs[i].partition()), msgs[i].offset()));
                match self.held.apply(&self.store, &group.concert, &group.lane, &joins, positions).await {
                    Ok(applied) => {
                        self.metrics
                            .redis_duration
                            .with_label_values(&["apply"])
                            .observe(started.elapsed().as_secs_f64());
                        self.metrics.consumer_records.with_label_values(&["appended"]).inc_by(applied.appended);
                        self.metrics.consumer_records.with_label_values(&["duplicate"]).inc_by(applied.duplicates);
                        if applied.late > 0 {
                            self.metrics.consumer_records.with_label_values(&["late"]).inc_by(applied.late);
                            tracing::warn!(concert = %group.concert, late = applied.late,
                                "joins arrived after fans with later stamps were placed; they are placed behind them");
                        }
                        if backoff.attempts() > 0 {
                            tracing::info!(concert = %group.concert, attempts = backoff.attempts(), "Redis write succeeded after retries");
                        }
                        for ((user, _), trace) in group.joins.iter().zip(&group.traces) {
                            tracing::debug!(trace_id = trace.as_deref().unwrap_or("-"), concert = %group.concert, user = %user,
                                "join applied to Redis");
                        }
                        self.resume();
                        break;
                    }
                    Err(e) if e.is_permanent() && backoff.attempts() + 1 >= PERMANENT_ATTEMPTS => {
                        // This concert's writes are refused for good; the others must not wait
                        // for an operator. Its records go to the dead-letter topic with the
                        // reason, committed with the batch, and come back with `dlt replay`.
                        tracing::error!(concert = %group.concert, records = group.records.len(), error = %e,
                            "Redis refuses this concert's writes; parking its records in the dead-letter topic");
                        self.metrics.consumer_quarantined.inc_by(group.records.len() as u64);
                        let why = InvalidRecord::StoreRejected(e.to_string());
                        parked.extend(group.records.iter().map(|&i| (&msgs[i], why.clone())));
                        self.resume();
                        break;
                    }
                    Err(e)
                        if e.is_unreachable()
                            && self.parking.as_ref().is_some_and(|p| failing_since.elapsed() >= p.after) =>
                    {
                        // Its shard is down: the other concerts must not wait for it. (A shard short
                        // of replicas is not parked for: it is up, and its offsets are held.)
                        tracing::warn!(concert = %group.concert, records = group.records.len(), error = %e,
                            "this concert's Redis shard keeps failing; parking its joins until it is back");
                        to_park.extend(&group.records);
                        if let Some(p) = self.parking.as_mut() {
                            p.concerts.insert(group.concert.clone());
                            self.metrics.consumer_parked_concerts.set(p.concerts.len() as i64);
                        }
                        self.resume();
                        break;
                    }
                    Err(e) => {
                        self.metrics.consumer_retries.with_label_values(&["redis"]).inc();
                        if backoff.attempts() == 0 {
                            tracing::warn!(error = %e, concert = %group.concert, "Redis write failed; pausing partitions and retrying with backoff, not committing");
                            self.pause();
                        }
                        if !self.wait_polling(&mut backoff, stop).await {
                            return false;
                        }
                    }
                }
            }
        }
        plan.dead.extend(parked);
        for (msg, why) in &plan.dead {
            tracing::warn!(partition = msg.partition(), offset = msg.offset(), reason = why.code(), detail = %why,
                "record can never be applied; sending it to the dead-letter topic");
        }
        if !to_park.is_empty() {
            to_park.sort_unstable(); // read order, across the batch's concerts
            if let Err(e) = self.park(&msgs, &to_park).await {
                // Not parked, so not committed: the batch comes again, like a failed commit.
                self.metrics.consumer_retries.with_label_values(&["park"]).inc();
                tracing::warn!(error = format!("{e:#}"), "parking failed; rewinding the batch to replay it");
                self.rewind(&msgs);
                return self.commit_backoff.wait(stop).await;
            }
            self.metrics.consumer_records.with_label_values(&["parked"]).inc_by(to_park.len() as u64);
        }
        if self.held.recheck(&self.store).await {
            self.commit_all = true;
        }
        // Every record of the batch is applied, parked or dead-lettered: its partition has
        // passed its stamp.
        for (p, stamp) in &plan.stamps {
            let at = self.stamps.entry(p.clone()).or_insert(*stamp);
            *at = (*at).max(*stamp);
        }
        if plan.ticks < msgs.len() {
            self.ticks.last_join = Instant::now();
        }
        let committed = self.commit(&msgs, &plan, stop).await;
        self.unpark_when_drained().await;
        committed
    }

    /// Asks again about held concerts and, when a hold ended, commits what it held back (and
    /// reads again what a failover lost). For when no batch comes to carry the commit.
    async fn commit_held(&mut self) {
        if self.held.recheck(&self.store).await {
            self.commit_all = true;
        }
        if !self.commit_all {
            return;
        }
        let offsets = self.offsets_to_commit(std::iter::empty());
        if offsets.count() == 0 {
            self.commit_all = false;
            return;
        }
        match self.commit_once(offsets, &[]).await {
            Ok(()) => {
                self.commit_all = false;
                self.read_lost_again();
            }
            Err(e) => tracing::info!(error = format!("{e:#}"), "committing released offsets failed; trying again"),
        }
    }

    /// The offsets to commit: for the assigned partitions among `batch` (all assigned ones
    /// after a hold ended), the position, lowered to held floors.
    fn offsets_to_commit<'a>(&self, batch: impl Iterator<Item = &'a Partition>) -> TopicPartitionList {
        let owned = self.consumer.assignment().unwrap_or_default();
        let owns = |(t, p): &Partition| owned.find_partition(t, *p).is_some();
        let mut next: HashMap<Partition, i64> = if self.commit_all {
            self.position.iter().filter(|(p, _)| owns(p)).map(|(p, o)| (p.clone(), *o)).collect()
        } else {
            batch.filter(|p| owns(p)).filter_map(|p| Some((p.clone(), *self.position.get(p)?))).collect()
        };
        self.held.cap(&mut next);
        let mut offsets = TopicPartitionList::new();
        for (p, next) in next {
            let mut e = offsets.add_partition(&p.0, p.1);
            e.set_offset(Offset::Offset(next)).expect("an absolute offset is valid");
            if let Some(stamp) = self.stamps.get(&p) {
                e.set_metadata(crate::watermark::encode(*stamp));
            }
        }
        offsets
    }

    /// Appends a tick to every partition this consumer owns, when one is due. Not awaited: a
    /// tick that fails only delays the watermark until the next one.
    fn tick_if_due(&mut self) {
        if Instant::now() < self.ticks.due() {
            return;
        }
        self.ticks.last = Instant::now();
        let Ok(owned) = self.consumer.assignment() else { return };
        if owned.count() == 0 {
            return;
        }
        let producer = match &self.ticks.producer {
            Some(p) => p.clone(),
            None => {
                let mut config = self.kafka.producer();
                config.set("client.id", format!("queuegate-{}", ClientRole::Ticks.as_str()));
                match config
                    .create_with_context::<_, FutureProducer<KafkaContext>>(self.kafka.context(ClientRole::Ticks))
                {
                    Ok(p) => {
                        self.ticks.producer = Some(p.clone());
                        p
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "could not create the tick producer");
                        return;
                    }
                }
            }
        };
        let now = crate::clock::now_ms().to_string();
        for e in owned.elements() {
            let headers = OwnedHeaders::new_with_capacity(1)
                .insert(Header { key: crate::watermark::TICK_HEADER, value: Some(now.as_str()) });
            let rec: FutureRecord<'_, [u8], [u8]> =
                FutureRecord::to(e.topic()).partition(e.partition()).headers(headers);
            if let Err((err, _)) = producer.send_result(rec) {
                tracing::debug!(error = %err, partition = e.partition(), "tick not sent");
            }
        }
    }

    /// Seeks the partitions whose writes a failover lost back to the first of them: they are
    /// read and applied again (what survived is a duplicate the apply ignores).
    fn read_lost_again(&mut self) {
        let lost = self.held.take_lost();
        if !lost.is_empty() {
            self.seek_back(lost.into_iter());
        }
    }

    /// Copies the records at `indexes` of `msgs` to the parked-joins topic, in that order, and
    /// waits until the brokers have every one (so the batch's commit cannot get ahead of them).
    async fn park(&mut self, msgs: &[OwnedMessage], indexes: &[usize]) -> anyhow::Result<()> {
        let Some(parking) = self.parking.as_mut() else { anyhow::bail!("parking is off") };
        let producer = match &parking.producer {
            Some(p) => p.clone(),
            None => {
                let mut config = self.kafka.producer();
                config.set("client.id", format!("queuegate-{}", ClientRole::Parking.as_str()));
                let p: FutureProducer<KafkaContext> =
                    config.create_with_context(self.kafka.context(ClientRole::Parking))?;
                parking.producer = Some(p.clone());
                p
            }
        };
        let timeout = self.kafka.settings().delivery_timeout();
        let mut sent = Vec::with_capacity(indexes.len());
        for &i in indexes {
            sent.push(producer.send(copy_of(&msgs[i], &parking.topic, OwnedHeaders::new_with_capacity(4)), timeout));
        }
        for r in futures_util::future::join_all(sent).await {
            r.map_err(|(e, _)| anyhow::anyhow!("parking a join: {e}"))?;
        }
        Ok(())
    }

    /// When this consumer's partitions changed (start-up, a rebalance), parks the concerts that
    /// still have joins in the parked topic: the partitions' previous owner may have parked them,
    /// and their new joins must not be placed before the parked ones. Read from the replayer's
    /// committed offset to the end, at most [`MAX_PENDING_READ`] records.
    async fn learn_parked_on_new_partitions(&mut self) {
        let Some(p) = self.parking.as_mut() else { return };
        let Ok(tpl) = self.consumer.assignment() else { return };
        let mut now: Vec<i32> = tpl.elements().iter().map(|e| e.partition()).collect();
        now.sort_unstable();
        if now == p.assigned {
            return;
        }
        p.assigned = now;
        match p.lot.pending_concerts(MAX_PENDING_READ).await {
            Ok(Some(pending)) if !pending.is_empty() => {
                tracing::warn!(concerts = pending.len(), "new partitions while joins are parked; parking those concerts here too until they are applied");
                p.concerts.extend(pending);
                p.last_check = Instant::now();
                self.metrics.consumer_parked_concerts.set(p.concerts.len() as i64);
            }
            Ok(Some(_)) => {}
            Ok(None) => tracing::warn!(max = MAX_PENDING_READ,
                "more parked joins than a consumer reads on new partitions; concerts beyond them may get new joins placed before parked ones"),
            Err(e) => tracing::warn!(error = format!("{e:#}"), "could not read which concerts have joins parked"),
        }
    }

    /// Stops parking once the replayer has applied every parked join (checked every
    /// [`LOT_CHECK_EVERY`] at most): this instance's parked records were all acknowledged before
    /// its commits, so a drained lot holds none of them and new records may go to Redis again,
    /// behind them.
    async fn unpark_when_drained(&mut self) {
        let Some(p) = self.parking.as_mut() else { return };
        if p.concerts.is_empty() || p.last_check.elapsed() < LOT_CHECK_EVERY {
            return;
        }
        p.last_check = Instant::now();
        match p.lot.drained().await {
            Ok(true) => {
                tracing::info!(
                    concerts = p.concerts.len(),
                    "parked joins all applied; these concerts go to Redis again"
                );
                p.concerts.clear();
                self.metrics.consumer_parked_concerts.set(0);
            }
            Ok(false) => {}
            Err(e) => tracing::debug!(error = format!("{e:#}"), "could not ask whether the parked joins are applied"),
        }
    }

    /// Commits the batch's offsets and dead letters in one transaction.
    ///
    /// Partitions this instance no longer owns (a rebalance happened meanwhile) are left to
    /// their new owner, who replays them; the Redis writes already made are idempotent.
    ///
    /// When the commit fails, the batch is *not* retried in a loop here: a failed commit is
    /// often a lost group membership (after a broker restart the coordinator answers "unknown
    /// member"), and only polling the consumer lets it rejoin. So the batch's partitions are
    /// rewound to the batch's first offsets and the main loop polls again: it receives the same
    /// records, applies them (deduplicated to no-ops) and commits them once the group is whole.
    /// Nothing is skipped, because no later offset of these partitions can be committed before
    /// this batch is read again.
    async fn commit(&mut self, msgs: &[OwnedMessage], plan: &Plan<'_>, stop: &CancellationToken) -> bool {
        let owned = self.consumer.assignment().unwrap_or_default();
        let owns = |m: &OwnedMessage| owned.find_partition(m.topic(), m.partition()).is_some();
        let batch = batch::next_offsets(msgs.iter());
        for (p, next) in &batch {
            let at = self.position.entry(p.clone()).or_insert(*next);
            *at = (*at).max(*next);
        }
        let offsets = self.offsets_to_commit(batch.keys());
        // While offsets are held a dead letter can be written before its offset is committed:
        // after a crash it is written again (a duplicate in the dead-letter topic, never a loss).
        let dead: Vec<(&OwnedMessage, &InvalidRecord)> =
            plan.dead.iter().filter(|(m, _)| owns(m)).map(|(m, w)| (*m, w)).collect();
        if offsets.count() == 0 {
            if !msgs.is_empty() {
                tracing::info!("batch's partitions were revoked before commit; their new owner replays them");
            }
            return true;
        }
        match self.commit_once(offsets, &dead).await {
            Ok(()) => {
                self.metrics.consumer_records.with_label_values(&["dead_lettered"]).inc_by(dead.len() as u64);
                self.commit_backoff = Backoff::new();
                self.commit_all = false;
                self.read_lost_again();
                true
            }
            Err(e) => {
                self.metrics.consumer_retries.with_label_values(&["commit"]).inc();
                tracing::warn!(error = format!("{e:#}"), "commit failed; rewinding the batch to replay it");
                self.rewind(msgs);
                self.commit_backoff.wait(stop).await
            }
        }
    }

    /// Pauses every assigned partition: while Redis is retried nothing new is fetched, but the
    /// consumer keeps polling (see [`wait_polling`](Self::wait_polling)) so it stays in the group
    /// however long the outage lasts. What it paused is remembered until [`resume`](Self::resume).
    fn pause(&mut self) {
        let Ok(tpl) = self.consumer.assignment() else { return };
        match self.consumer.pause(&tpl) {
            Ok(()) => self.paused.extend(partitions_of(&tpl)),
            Err(e) => tracing::warn!(error = %e, "could not pause partitions"),
        }
    }

    /// Resumes every partition this consumer paused, whether it is assigned now or was revoked
    /// meanwhile (it may come back), and every partition assigned now (assigned while Redis was
    /// failing, they were paused as they arrived, see [`wait_polling`](Self::wait_polling)); they
    /// fetch from where the application left off. Nothing to do when nothing was paused.
    fn resume(&mut self) {
        if self.paused.is_empty() {
            return;
        }
        let mut all = self.consumer.assignment().unwrap_or_default();
        for (topic, partition) in &self.paused {
            if all.find_partition(topic, *partition).is_none() {
                all.add_partition(topic, *partition);
            }
        }
        // librdkafka resumes each partition it knows and marks the others. On an error the set
        // is kept, so the next resume tries again.
        match self.consumer.resume(&all) {
            Ok(()) => self.paused.clear(),
            Err(e) => tracing::warn!(error = %e, "could not resume partitions"),
        }
    }

    /// Waits out the next backoff delay while polling the consumer, so heartbeats, rebalances and
    /// `max.poll.interval.ms` are served during a long Redis outage. A record that still arrives
    /// comes from a partition assigned meanwhile (a rebalance during the outage), which is then
    /// paused too. The record is kept for the next batch while the carry-over holds less than a
    /// batch; beyond that its partition is sought back to it, so Kafka keeps it, not this
    /// process: memory stays bounded however long Redis is away and however often the group
    /// rebalances. False when `stop` was cancelled.
    async fn wait_polling(&mut self, backoff: &mut Backoff, stop: &CancellationToken) -> bool {
        let until = tokio::time::Instant::now() + backoff.advance();
        loop {
            let polled = tokio::select! {
                biased;
                _ = stop.cancelled() => return false,
                _ = tokio::time::sleep_until(until) => return true,
                m = self.consumer.recv() => m.map(|m| m.detach()),
            };
            match polled {
                Ok(m) => {
                    if self.carry.len() < self.batch_max {
                        self.carry.push(m);
                    } else if let Err(e) =
                        self.consumer.seek(m.topic(), m.partition(), Offset::Offset(m.offset()), Duration::from_secs(5))
                    {
                        tracing::info!(partition = m.partition(), error = %e, "could not give a record back; its partition's next owner reads it");
                    }
                    self.metrics.consumer_carried.set(self.carry.len() as i64);
                    // Whatever was assigned since the pause is paused now.
                    self.pause();
                }
                Err(e) => tracing::debug!(error = %e, "consumer poll error while paused"),
            }
        }
    }

    /// Seeks every partition of `msgs` that is still assigned back to the batch's first offset,
    /// and forgets carried records of those partitions (they come again after the seek).
    fn rewind(&mut self, msgs: &[OwnedMessage]) {
        let mut first: HashMap<Partition, i64> = HashMap::new();
        for m in msgs {
            let e = first.entry((m.topic().to_owned(), m.partition())).or_insert(m.offset());
            *e = (*e).min(m.offset());
        }
        self.seek_back(first.into_iter());
    }

    /// Seeks each partition (still assigned) back to its offset: its position goes back there,
    /// and carried records of it are forgotten (they come again).
    fn seek_back(&mut self, to: impl Iterator<Item = (Partition, i64)>) {
        for ((topic, partition), offset) in to {
            self.carry.retain(|c| !(c.topic() == topic && c.partition() == partition));
            if let Some(at) = self.position.get_mut(&(topic.clone(), partition)) {
                *at = (*at).min(offset);
            }
            if let Err(e) = self.consumer.seek(&topic, partition, Offset::Offset(offset), Duration::from_secs(5)) {
                // Not assigned any more: its next owner starts from the committed offset.
                tracing::info!(partition, offset, error = %e, "seek skipped");
            }
        }
        self.metrics.consumer_carried.set(self.carry.len() as i64);
    }

    async fn commit_once(
        &mut self,
        offsets: TopicPartitionList,
        dead: &[(&OwnedMessage, &InvalidRecord)],
    ) -> anyhow::Result<()> {
        let txn = self.transactional_producer().await?;
        let cgm = self.consumer.group_metadata().ok_or_else(|| anyhow::anyhow!("consumer has no group metadata"))?;
        let dead: Vec<(OwnedMessage, InvalidRecord)> = dead.iter().map(|(m, w)| ((*m).clone(), (*w).clone())).collect();
        let dlt = self.dlt_topic.clone();
        // Three calls of at most TXN_TIMEOUT each, and the abort: bounded, whatever librdkafka does.
        let result = crate::kafka::off_runtime(
            "transaction",
            TXN_TIMEOUT * 5,
            move || -> Result<(), rdkafka::error::KafkaError> {
                txn.begin_transaction()?;
                let run = || -> Result<(), rdkafka::error::KafkaError> {
                    for (m, why) in &dead {
                        let detail = why.to_string();
                        let headers = OwnedHeaders::new_with_capacity(6)
                            .insert(Header { key: "qg-dlt-reason", value: Some(why.code()) })
                            .insert(Header { key: "qg-dlt-detail", value: Some(detail.as_str()) });
                        // The delivery future is not awaited: commit_transaction flushes and fails
                        // the transaction if any of its records failed.
                        txn.send_result(copy_of(m, &dlt, headers)).map_err(|(e, _)| e)?;
                    }
                    txn.send_offsets_to_transaction(&offsets, &cgm, TXN_TIMEOUT)?;
                    txn.commit_transaction(TXN_TIMEOUT)
                };
                run().inspect_err(|_| {
                    let _ = txn.abort_transaction(TXN_TIMEOUT);
                })
            },
        )
        .await
        .map_err(anyhow::Error::from)
        .and_then(|r| r.map_err(anyhow::Error::from));
        if result.is_err() {
            // Any failed transaction retires this producer. A failed abort (the broker was away)
            // leaves librdkafka's transaction state needing an abort that may never succeed, and
            // then every begin_transaction fails: the consumer would replay one batch forever.
            // A fresh producer's init_transactions bumps the epoch of the same transactional id,
            // which aborts whatever the old one left open and fences it.
            if let Some(old) = self.txn.take() {
                // Destroying it may wait on the broker too: on a thread of its own.
                let _ = std::thread::Builder::new().name("kafka-retire".into()).spawn(move || drop(old));
            }
        }
        result
    }

    /// The transactional producer, created and initialised on first use (and after a failed transaction).
    async fn transactional_producer(&mut self) -> anyhow::Result<FutureProducer<KafkaContext>> {
        if let Some(p) = &self.txn {
            return Ok(p.clone());
        }
        let group = &self.kafka.settings().kafka_group;
        let p: FutureProducer<KafkaContext> = self
            .kafka
            .transactional(ClientRole::Transactions, group)
            .create_with_context(self.kafka.context(ClientRole::Transactions))?;
        let init = p.clone();
        crate::kafka::off_runtime("init_transactions", TXN_TIMEOUT * 2, move || init.init_transactions(TXN_TIMEOUT))
            .await??;
        self.txn = Some(p.clone());
        Ok(p)
    }
}

/// The (topic, partition) pairs of `tpl`.
fn partitions_of(tpl: &TopicPartitionList) -> impl Iterator<Item = Partition> + '_ {
    tpl.elements().into_iter().map(|e| (e.topic().to_owned(), e.partition()))
}

/// A copy of `m` (key and payload) for `topic` — a dead letter, a parked join — with `headers`
/// plus where it came from (`qg-source-topic`, `-partition`, `-offset`) and its trace context.
fn copy_of<'a>(m: &'a OwnedMessage, topic: &'a str, headers: OwnedHeaders) -> FutureRecord<'a, [u8], [u8]> {
    let partition = m.partition().to_string();
    let offset = m.offset().to_string();
    let mut h = headers
        .insert(Header { key: "qg-source-topic", value: Some(m.topic()) })
        .insert(Header { key: "qg-source-partition", value: Some(partition.as_str()) })
        .insert(Header { key: "qg-source-offset", value: Some(offset.as_str()) });
    if let Some(tp) = m.headers().and_then(|hs| hs.iter().find(|h| h.key == "traceparent")).and_then(|h| h.value) {
        h = h.insert(Header { key: "traceparent", value: Some(tp) });
    }
    let mut rec = FutureRecord::to(topic).headers(h);
    if let Some(k) = m.key() {
        rec = rec.key(k);
    }
    if let Some(p) = m.payload() {
        rec = rec.payload(p);
    }
    rec
}
