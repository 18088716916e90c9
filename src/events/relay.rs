//! The outbox relay: publishes what the scripts recorded in each concert's outbox to the events
//! topic, then deletes it (the transactional-outbox pattern).
//!
//! One instance relays a concert at a time: the one holding the concert's admitter lease (the
//! admitter runs the relay with its own instance id). Each pass reads the oldest entries,
//! produces their events with an idempotent producer (`acks=all`), waits for every
//! acknowledgement and only then deletes the entries: a crash in between publishes them again
//! with the same `ce_id`s, so consumers see duplicates, never gaps. Entries are read oldest
//! first and a concert's events all go to one partition (keyed by concertId), so a concert's
//! events are in the order of its changes.
//!
//! When the events topic cannot be written (missing: the Kubernetes install does not create it;
//! refused by the brokers' ACLs), relaying would fail every pass after the delivery timeout.
//! [`Relay::watch_topic`] asks the brokers for the topic's metadata at start and every
//! [`TOPIC_CHECK_EVERY`]: while it is missing the relay publishes nothing, `/readyz` says
//! `degraded: ["events"]`, `queuegate_events_topic_unwritable` is 1 and one line in the log says
//! why; once it exists (created later) relaying resumes without a restart. Meanwhile each
//! concert's outbox stays within `QUEUEGATE_EVENTS_OUTBOX_MAX` entries (outbox.lua drops the
//! oldest past it), and every round moves the count of dropped events into
//! `queuegate_events_dropped_total{reason="outbox_full"}` and the outbox's length into
//! `queuegate_events_outbox_entries`.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::client::ClientContext;
use rdkafka::error::KafkaError;
use rdkafka::message::DeliveryResult;
use rdkafka::producer::{BaseRecord, Producer, ProducerContext, ThreadedProducer};
use rdkafka::statistics::Statistics;
use tokio::sync::Notify;

use crate::config::EventsSettings;
use crate::ids::ConcertId;
use crate::kafka::{ClientRole, KafkaClients, KafkaContext};
use crate::metrics::Metrics;
use crate::store::QueueStore;
use crate::supervisor::Health;

/// How often the relay asks whether the events topic exists.
pub const TOPIC_CHECK_EVERY: Duration = Duration::from_secs(10);
/// How long one topic check waits for the brokers' metadata.
const TOPIC_CHECK_TIMEOUT: Duration = Duration::from_secs(5);

/// Outbox entries read per pass: at most 20,000 events (an entry holds up to 1,000 fans) in
/// memory and in flight at once, so a drained backlog does not swell the process.
const PASS: usize = 20;
/// Passes per concert per round: at most 200 × 20 entries a round.
const PASSES: usize = 200;
/// Records the producer may hold: a whole pass and then some.
const QUEUED: usize = 4 * PASS * 1_000;

/// Acknowledgements counted as the producer's delivery reports come in: one counter for all
/// records instead of a future each (the relay only needs to know that a pass has landed).
struct Acks {
    /// Records whose delivery report came (delivered or failed), ever.
    done: AtomicU64,
    /// Of those, failed.
    failed: AtomicU64,
    /// `done` the relay waits for: it is woken once it is reached.
    want: AtomicU64,
    notify: Notify,
    last_error: Mutex<Option<KafkaError>>,
}

/// The relay producer's context: statistics as every client's, delivery reports counted.
struct RelayContext {
    inner: KafkaContext,
    acks: Arc<Acks>,
}

impl ClientContext for RelayContext {
    fn stats(&self, statistics: Statistics) {
        self.inner.stats(statistics);
    }
}

impl ProducerContext for RelayContext {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((e, _)) = result {
            self.acks.failed.fetch_add(1, Ordering::AcqRel);
            *self.acks.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(e.clone());
        }
        let done = self.acks.done.fetch_add(1, Ordering::AcqRel) + 1;
        if done >= self.acks.want.load(Ordering::Acquire) {
            self.acks.notify.notify_one();
        }
    }
}

/// Publishes outboxes to the events topic.
#[derive(Clone)]
pub struct Relay {
    producer: Arc<ThreadedProducer<RelayContext>>,
    acks: Arc<Acks>,
    /// Records handed to the producer, ever (only the relay's one task sends).
    sent: Arc<AtomicU64>,
    topic: String,
    store: QueueStore,
    metrics: Metrics,
    /// How long a record may take to be acknowledged before the pass gives up on it.
    deadline: Duration,
    /// False while the last topic check found the events topic missing or unwritable: nothing
    /// is published (it could only fail), the outboxes keep the events within their cap.
    topic_writable: Arc<AtomicBool>,
    /// What every record is sealed with, so the events worker takes only ours.
    seal: super::EventSeal,
    /// `QUEUEGATE_EVENTS_OUTBOX_MAX`, for the log.
    outbox_max: u64,
}

impl Relay {
    pub fn new(
        kafka: &KafkaClients,
        settings: &EventsSettings,
        store: QueueStore,
        metrics: Metrics,
        seal: super::EventSeal,
    ) -> anyhow::Result<Self> {
        let mut config = kafka.producer();
        // The relay's records need not leave within 5 ms (the join's linger): fuller batches cost
        // the brokers and this process less during a burst, for at most 25 ms more delay.
        config
            .set("client.id", format!("queuegate-{}", ClientRole::Events.as_str()))
            .set("linger.ms", "25")
            .set("queue.buffering.max.messages", QUEUED.to_string());
        let timeout_ms: u64 = config.get("message.timeout.ms").and_then(|t| t.parse().ok()).unwrap_or(30_000);
        let acks = Arc::new(Acks {
            done: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            want: AtomicU64::new(u64::MAX),
            notify: Notify::new(),
            last_error: Mutex::new(None),
        });
        let context = RelayContext { inner: kafka.context(ClientRole::Events), acks: acks.clone() };
        let producer = config.create_with_context(context)?;
        Ok(Relay {
            seal,
            producer: Arc::new(producer),
            acks,
            sent: Arc::new(AtomicU64::new(0)),
            topic: settings.events_topic.clone(),
            store,
            metrics,
            deadline: Duration::from_millis(timeout_ms) + Duration::from_secs(5),
            topic_writable: Arc::new(AtomicBool::new(true)),
            outbox_max: settings.events_outbox_max,
        })
    }

    /// Checks the events topic now and every [`TOPIC_CHECK_EVERY`] until `stop` (see the module
    /// docs). A check the brokers do not answer changes nothing: Kafka being unreachable is
    /// `/readyz`'s `kafka`, not a verdict on the topic.
    pub async fn watch_topic(
        self,
        health: Arc<Health>,
        stop: tokio_util::sync::CancellationToken,
    ) -> anyhow::Result<()> {
        loop {
            let producer = self.producer.clone();
            let topic = self.topic.clone();
            let checked = tokio::task::spawn_blocking(move || topic_problem(producer.client(), &topic)).await?;
            match checked {
                Ok(problem) => self.topic_checked(problem, &health),
                Err(e) => {
                    tracing::debug!(topic = %self.topic, error = %e, "events topic check: no answer from the brokers")
                }
            }
            tokio::select! {
                _ = stop.cancelled() => return Ok(()),
                _ = tokio::time::sleep(TOPIC_CHECK_EVERY) => {}
            }
        }
    }

    /// Records a topic check's finding: `problem` is why the topic cannot be written, if it cannot.
    fn topic_checked(&self, problem: Option<String>, health: &Health) {
        let writable = problem.is_none();
        let was = self.topic_writable.swap(writable, Ordering::AcqRel);
        let changed = health.set_degraded("events", !writable);
        self.metrics.events_topic_unwritable.set(i64::from(!writable));
        match problem {
            Some(why) if changed || was => tracing::error!(
                topic = %self.topic,
                problem = %why,
                outbox_max = self.outbox_max,
                "the events topic (QUEUEGATE_EVENTS_TOPIC) cannot be written: events wait in each concert's outbox, \
                 at most QUEUEGATE_EVENTS_OUTBOX_MAX entries (past it the oldest are dropped and counted in \
                 queuegate_events_dropped_total); /readyz says degraded: events; checked again every 10 s"
            ),
            None if !was || changed => {
                tracing::info!(topic = %self.topic, "the events topic can be written again: relaying the outboxes")
            }
            None => tracing::debug!(topic = %self.topic, "events topic checked: writable"),
            Some(_) => {}
        }
    }

    /// Publishes and deletes `concert`'s outbox; how many events were published.
    pub async fn relay(&self, concert: &ConcertId) -> anyhow::Result<u64> {
        // The outbox's length and the events its cap dropped, also (above all) while the topic
        // cannot be written.
        let (len, dropped) = self.store.outbox_take_drops(concert).await?;
        self.metrics.events_outbox_entries.with_label_values(&[concert.as_str()]).set(len as i64);
        if dropped > 0 {
            self.metrics.events_dropped.with_label_values(&["outbox_full"]).inc_by(dropped);
            tracing::warn!(concert = %concert, dropped, outbox = len, "outbox full: its oldest events were dropped");
        }
        if !self.topic_writable.load(Ordering::Acquire) || len == 0 {
            return Ok(0);
        }
        let mut published = 0;
        for _ in 0..PASSES {
            let entries = self.store.outbox_read(concert, PASS).await?;
            if entries.is_empty() {
                break;
            }
            let source = super::source(concert);
            let failed_before = self.acks.failed.load(Ordering::Acquire);
            let mut n = 0;
            let mut refused = None;
            // The producer's queue holds several passes' records and each pass waits for its
            // acknowledgements, so a send is refused only when something is wrong (then the
            // pass fails once its sent records are acknowledged, and is done again).
            for entry in &entries {
                entry.each_event(concert, |event| {
                    if refused.is_some() {
                        return;
                    }
                    let record = BaseRecord::to(&self.topic)
                        .key(concert.as_str())
                        .payload(event.payload)
                        .headers(event.kafka_headers(&source, &self.seal));
                    match self.producer.send(record) {
                        Ok(()) => {
                            self.sent.fetch_add(1, Ordering::AcqRel);
                            n += 1;
                        }
                        Err((e, _)) => refused = Some(e),
                    }
                });
            }
            self.landed(concert).await?;
            if let Some(e) = refused {
                anyhow::bail!("publishing events of concert {concert} failed: {e}");
            }
            if self.acks.failed.load(Ordering::Acquire) > failed_before {
                let e = self.acks.last_error.lock().unwrap_or_else(|p| p.into_inner()).clone();
                anyhow::bail!(
                    "publishing events of concert {concert} failed: {}",
                    e.map_or_else(String::new, |e| e.to_string())
                );
            }
            let ids: Vec<String> = entries.iter().map(|e| e.id.clone()).collect();
            self.store.outbox_delete(concert, &ids).await?;
            published += n;
            self.metrics.events_published.inc_by(n);
            if entries.len() < PASS {
                break;
            }
        }
        Ok(published)
    }

    /// Waits until every record sent so far has its delivery report.
    async fn landed(&self, concert: &ConcertId) -> anyhow::Result<()> {
        let want = self.sent.load(Ordering::Acquire);
        self.acks.want.store(want, Ordering::Release);
        let wait = async {
            while self.acks.done.load(Ordering::Acquire) < want {
                self.acks.notify.notified().await;
            }
        };
        let landed = tokio::time::timeout(self.deadline, wait)
            .await
            .map_err(|_| anyhow::anyhow!("events of concert {concert} were not acknowledged in {:?}", self.deadline));
        // Nobody waits until the next pass: the delivery reports need not wake anyone.
        self.acks.want.store(u64::MAX, Ordering::Release);
        landed
    }
}

/// Why `topic` cannot be written, from the brokers' metadata: None when it exists without
/// error, Some(reason) when it is missing or refused, Err when the brokers did not answer.
/// Blocking.
fn topic_problem<C: rdkafka::client::ClientContext>(
    client: &rdkafka::client::Client<C>,
    topic: &str,
) -> Result<Option<String>, KafkaError> {
    use rdkafka::types::RDKafkaErrorCode;
    match client.fetch_metadata(Some(topic), TOPIC_CHECK_TIMEOUT) {
        Ok(metadata) => Ok(match metadata.topics().iter().find(|t| t.name() == topic) {
            None => Some("the brokers do not list it".to_owned()),
            Some(t) => match t.error() {
                Some(e) => Some(RDKafkaErrorCode::from(e).to_string()),
                None if t.partitions().is_empty() => Some("it has no partitions".to_owned()),
                None => None,
            },
        }),
        Err(KafkaError::MetadataFetch(
            code @ (RDKafkaErrorCode::UnknownTopicOrPartition
            | RDKafkaErrorCode::UnknownTopic
            | RDKafkaErrorCode::TopicAuthorizationFailed),
        )) => Ok(Some(code.to_string())),
        Err(e) => Err(e),
    }
}
