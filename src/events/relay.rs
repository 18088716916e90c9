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

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::client::ClientContext;
use rdkafka::error::KafkaError;
use rdkafka::message::DeliveryResult;
use rdkafka::producer::{BaseRecord, ProducerContext, ThreadedProducer};
use rdkafka::statistics::Statistics;
use tokio::sync::Notify;

use crate::config::EventsSettings;
use crate::ids::ConcertId;
use crate::kafka::{ClientRole, KafkaClients, KafkaContext};
use crate::metrics::Metrics;
use crate::store::QueueStore;

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
}

impl Relay {
    pub fn new(
        kafka: &KafkaClients,
        settings: &EventsSettings,
        store: QueueStore,
        metrics: Metrics,
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
            producer: Arc::new(producer),
            acks,
            sent: Arc::new(AtomicU64::new(0)),
            topic: settings.events_topic.clone(),
            store,
            metrics,
            deadline: Duration::from_millis(timeout_ms) + Duration::from_secs(5),
        })
    }

    /// Publishes and deletes `concert`'s outbox; how many events were published.
    pub async fn relay(&self, concert: &ConcertId) -> anyhow::Result<u64> {
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
                        .headers(event.kafka_headers(&source));
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
