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

use std::time::Duration;

use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::Timeout;

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

/// Publishes outboxes to the events topic.
#[derive(Clone)]
pub struct Relay {
    producer: FutureProducer<KafkaContext>,
    topic: String,
    store: QueueStore,
    metrics: Metrics,
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
        config.set("client.id", format!("queuegate-{}", ClientRole::Events.as_str())).set("linger.ms", "25");
        let producer = config.create_with_context(kafka.context(ClientRole::Events))?;
        Ok(Relay { producer, topic: settings.events_topic.clone(), store, metrics })
    }

    /// Publishes and deletes `concert`'s outbox; how many events were published.
    pub async fn relay(&self, concert: &ConcertId) -> anyhow::Result<u64> {
        let mut published = 0;
        for _ in 0..PASSES {
            let entries = self.store.outbox_read(concert, PASS).await?;
            if entries.is_empty() {
                break;
            }
            let events: Vec<_> = entries.iter().flat_map(|entry| entry.events(concert)).collect();
            let source = super::source(concert);
            let pending = events.iter().map(|event| {
                let record = FutureRecord::to(&self.topic)
                    .key(concert.as_str())
                    .payload(&event.payload)
                    .headers(event.kafka_headers(&source));
                self.producer.send(record, Timeout::After(Duration::from_secs(10)))
            });
            let n = events.len() as u64;
            for result in futures_util::future::join_all(pending).await {
                if let Err((e, _)) = result {
                    anyhow::bail!("publishing events of concert {concert} failed: {e}");
                }
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
}
