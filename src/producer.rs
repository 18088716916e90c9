//! The gateway's Kafka producer: one join in, one durable record out.
//!
//! The producer is idempotent (`enable.idempotence=true`, which implies `acks=all` and
//! retries without duplicates), batches with `linger.ms` and compresses. A join is answered
//! 202 only after its delivery report arrives, so "accepted" means "on every in-sync replica".
//!
//! Two bounds keep memory flat under a burst: a semaphore of `QUEUEGATE_MAX_IN_FLIGHT` permits
//! (a join that finds none is shed at once with 503) and librdkafka's own queue, whose "queue
//! full" also becomes 503. A record the broker does not acknowledge within the delivery
//! timeout (`message.timeout.ms`) fails its delivery report and the join gets 503.

use std::sync::Arc;
use std::time::Duration;

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use tokio::sync::Semaphore;

use crate::ids::EntryRecord;
use crate::kafka::{ClientRole, KafkaClients, KafkaContext};

/// Why a join could not be made durable. All of them are answered 503 with Retry-After.
#[derive(Debug, thiserror::Error)]
pub enum ProduceError {
    #[error("too many joins waiting for Kafka in this process")]
    Overloaded,
    #[error("the producer queue is full")]
    QueueFull,
    #[error("Kafka did not acknowledge the record in time")]
    Timeout,
    #[error("Kafka refused the record: {0}")]
    Kafka(#[from] KafkaError),
}

/// Where the broker put a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivered {
    pub partition: i32,
    pub offset: i64,
}

/// Produces queue entries; cheap to clone, shared by every HTTP worker.
#[derive(Clone)]
pub struct EntryProducer {
    producer: FutureProducer<KafkaContext>,
    topic: Arc<str>,
    permits: Arc<Semaphore>,
    max_in_flight: usize,
    delivery_timeout: Duration,
}

impl EntryProducer {
    /// Creates the producer from the Kafka section ([`KafkaClients::producer`]). No connection
    /// is made until the first record or metadata call.
    pub fn new(kafka: &KafkaClients) -> anyhow::Result<Self> {
        let settings = kafka.settings();
        let producer: FutureProducer<KafkaContext> = kafka
            .producer()
            .create_with_context(kafka.context(ClientRole::Producer))
            .map_err(|e| anyhow::anyhow!("creating the Kafka producer: {e}"))?;
        Ok(EntryProducer {
            producer,
            topic: settings.kafka_topic.as_str().into(),
            permits: Arc::new(Semaphore::new(settings.max_in_flight)),
            max_in_flight: settings.max_in_flight,
            delivery_timeout: settings.delivery_timeout(),
        })
    }

    /// The longest a [`send`](Self::send) waits for the broker's acknowledgement.
    pub fn delivery_timeout(&self) -> Duration {
        self.delivery_timeout
    }

    /// Produces `rec` keyed `{userId}:{concertId}` and waits for the broker's acknowledgement.
    /// `headers` go along with the record (trace context).
    pub async fn send(&self, rec: &EntryRecord, headers: &[(&str, &str)]) -> Result<Delivered, ProduceError> {
        // Held until the delivery report arrives (or the caller goes away).
        let _permit = self.permits.try_acquire().map_err(|_| ProduceError::Overloaded)?;
        let key = rec.key();
        let payload = serde_json::to_vec(rec).expect("an entry record always serialises");
        let mut h = OwnedHeaders::new_with_capacity(headers.len());
        for (k, v) in headers {
            h = h.insert(Header { key: k, value: Some(*v) });
        }
        let record = FutureRecord::to(&self.topic).key(&key).payload(&payload).headers(h);
        let delivery = match self.producer.send_result(record) {
            Ok(f) => f,
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                return Err(ProduceError::QueueFull)
            }
            Err((e, _)) => return Err(ProduceError::Kafka(e)),
        };
        // librdkafka fails the report after message.timeout.ms, but checks its timeouts once a
        // second, so a report can come up to a second late: the fan is answered (503) at the
        // delivery timeout whatever librdkafka does. A record answered 503 may still land (as
        // with any unacknowledged join); a retry of it is a duplicate the consumer ignores.
        match tokio::time::timeout(self.delivery_timeout, delivery).await {
            Ok(Ok(Ok(d))) => Ok(Delivered { partition: d.partition, offset: d.offset }),
            Ok(Ok(Err((KafkaError::MessageProduction(RDKafkaErrorCode::MessageTimedOut), _)))) => {
                Err(ProduceError::Timeout)
            }
            Ok(Ok(Err((e, _)))) => Err(ProduceError::Kafka(e)),
            Ok(Err(_canceled)) => Err(ProduceError::Kafka(KafkaError::Canceled)),
            Err(_) => Err(ProduceError::Timeout),
        }
    }

    /// Joins waiting for an acknowledgement right now.
    pub fn in_flight(&self) -> usize {
        self.max_in_flight - self.permits.available_permits()
    }

    /// Waits until everything queued is delivered or `timeout` passes. Blocking: call it from
    /// `spawn_blocking`. Dropping an rdkafka producer purges its queue, so shutdown flushes first.
    pub fn flush(&self, timeout: Duration) -> Result<(), KafkaError> {
        self.producer.flush(timeout)
    }

    /// Whether the broker answers a metadata request for the entry topic within `timeout`.
    /// Blocking: call it from `spawn_blocking`.
    pub fn kafka_reachable(&self, timeout: Duration) -> bool {
        self.producer.client().fetch_metadata(Some(&self.topic), timeout).is_ok()
    }
}
