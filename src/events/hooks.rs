//! The events worker and webhook delivery.
//!
//! The worker reads the events topic in its own consumer group (`<QUEUEGATE_KAFKA_GROUP>.events`):
//! each batch is queued in Redis for every webhook that wants it, and only then are its
//! offsets committed, so a crash re-reads (a queued delivery keeps its schedule; queuing the
//! same event again changes nothing). A record of a concert without webhooks is passed over
//! unparsed. (The report is not made here: the scripts keep it with their outbox entries.)
//!
//! Delivery runs one task per webhook endpoint, so a slow or dead endpoint delays only itself:
//! the task claims due deliveries (webhook_claim.lua pushes them out of sight for the timeout
//! plus a margin, so two instances never send the same one at once, and one whose instance
//! died comes due again), posts them concurrently by the Standard Webhooks specification, and
//! removes what got a 2xx. A failure is tried again after `QUEUEGATE_WEBHOOK_RETRY_BASE_MS`,
//! doubling up to `QUEUEGATE_WEBHOOK_RETRY_MAX_MS`, each wait drawn from 50–150 % of that
//! (jitter), until `QUEUEGATE_WEBHOOK_GIVE_UP_SECONDS` after the event was queued (attempted or
//! not: the claim gives up what is that old). The schedule is in Redis, so it survives restarts.
//!
//! Everything an endpoint holds is capped (docs/howto-events.md, "Caps, give-up and suspension"):
//! webhook_enqueue.lua queues a delivery only while the endpoint has fewer than
//! `QUEUEGATE_WEBHOOK_MAX_PENDING` pending and their bodies stay within
//! `QUEUEGATE_WEBHOOK_MAX_PENDING_BYTES`, else drops it (`queuegate_webhook_dropped_total`), in
//! the same atomic call as the check. An endpoint whose every attempt has failed for
//! `QUEUEGATE_WEBHOOK_SUSPEND_AFTER_SECONDS` (and at least [`SUSPEND_MIN_FAILURES`] in a row) is
//! suspended: nothing more is queued for it or sent to it until an operator resumes it
//! (`POST /admin/v1/concerts/{concertId}/webhooks/{webhookId}/resume`).
//!
//! A delivery connects only to an address [`super::egress`] permits (checked at delivery, on
//! the address connected to), and what it records is a coarse class ([`class_of`]: `ok`,
//! `http-4xx`, `timeout`, `refused-address`, …), never the socket error or the exact status, so
//! the deliveries listing tells nothing about what listens behind a refused address.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::TopicPartitionList;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::egress::{CheckedResolver, EgressError, EgressPolicy, Lookup};
use super::Event;
use crate::concerts::ConcertCache;
use crate::config::{ConsumerSettings, EventsSettings};
use crate::ids::ConcertId;
use crate::kafka::{KafkaClients, KafkaContext};
use crate::metrics::Metrics;
use crate::store::events::{Attempt, AttemptOutcome, Claim, Claimed, Retry, SuspendPolicy, WebhookCaps, WebhookSecret};
use crate::store::QueueStore;

/// Records per batch of the events worker.
const BATCH: usize = 5000;
/// Deliveries one endpoint's task sends at once.
const IN_FLIGHT: usize = 32;
/// Failed attempts in a row, at the least, before an endpoint is suspended (with
/// `QUEUEGATE_WEBHOOK_SUSPEND_AFTER_SECONDS` of nothing but failures).
pub const SUSPEND_MIN_FAILURES: u32 = 10;

/// Reads the events topic into the webhooks' queues.
pub struct EventsWorker {
    consumer: crate::kafka::GroupConsumer<StreamConsumer<KafkaContext>>,
    /// The one topic it reads.
    topic: String,
    store: QueueStore,
    cache: ConcertCache,
    caps: WebhookCaps,
    metrics: Metrics,
    /// Only records with the relay's seal are queued for webhooks.
    seal: super::EventSeal,
}

impl EventsWorker {
    pub fn new(
        kafka: &KafkaClients,
        consumer: &ConsumerSettings,
        settings: &EventsSettings,
        store: QueueStore,
        cache: ConcertCache,
        seal: super::EventSeal,
    ) -> anyhow::Result<Self> {
        let c: StreamConsumer<KafkaContext> =
            kafka.events_consumer(consumer).create_with_context(kafka.context(crate::kafka::ClientRole::Events))?;
        c.subscribe(&[settings.events_topic.as_str()])?;
        let caps = WebhookCaps {
            max_pending: settings.webhook_max_pending,
            max_pending_bytes: settings.webhook_max_pending_bytes,
        };
        Ok(EventsWorker {
            consumer: crate::kafka::GroupConsumer::new(c, crate::kafka::ClientRole::Events),
            topic: settings.events_topic.clone(),
            store,
            cache,
            caps,
            metrics: kafka.metrics().clone(),
            seal,
        })
    }

    pub async fn run(self, stop: CancellationToken) -> anyhow::Result<()> {
        use futures_util::StreamExt;
        let mut failing = false;
        // Whatever has arrived, up to BATCH records at a time, read where it lies (no copy).
        let mut stream = self.consumer.stream().ready_chunks(BATCH);
        loop {
            let chunk = tokio::select! {
                _ = stop.cancelled() => return Ok(()),
                c = stream.next() => c,
            };
            let Some(chunk) = chunk else { return Ok(()) };
            // Next offset per partition of the one topic (no allocation per record).
            let mut offsets: HashMap<i32, i64> = HashMap::new();
            let mut by_concert: HashMap<ConcertId, Vec<Event>> = HashMap::new();
            let mut hooked: HashMap<Vec<u8>, bool> = HashMap::new();
            let mut read = 0;
            for m in &chunk {
                let m = match m {
                    Ok(m) => m,
                    Err(e) => {
                        // Once when the failures start (a missing topic fails every poll).
                        if !std::mem::replace(&mut failing, true) {
                            tracing::warn!(error = %e, "reading the events topic failed; retrying");
                        }
                        continue;
                    }
                };
                read += 1;
                let next = offsets.entry(m.partition()).or_insert(0);
                *next = (*next).max(m.offset() + 1);
                // The key is the concertId: most concerts have no webhooks, and their events
                // need no more than this look.
                let key = m.key().unwrap_or_default();
                let wanted = match hooked.get(key) {
                    Some(w) => *w,
                    None => {
                        let w = self.has_webhooks(key).await;
                        hooked.insert(key.to_vec(), w);
                        w
                    }
                };
                if !wanted {
                    continue;
                }
                match Event::from_kafka(m.headers(), m.payload(), &self.seal) {
                    Ok(e) => by_concert.entry(e.concert.clone()).or_default().push(e),
                    Err(super::NotTaken::NotAnEvent) => tracing::warn!(
                        partition = m.partition(),
                        offset = m.offset(),
                        "a record of the events topic is not a queuegate event; skipped"
                    ),
                    Err(super::NotTaken::Unsealed) => {
                        self.metrics.events_unsealed.inc();
                        tracing::warn!(
                            partition = m.partition(),
                            offset = m.offset(),
                            "a record of the events topic has no valid seal of queuegate's relay (something else writes to the topic, or another token secret); not queued for webhooks"
                        );
                    }
                }
            }
            if read == 0 {
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
            if std::mem::take(&mut failing) {
                tracing::info!("reading the events topic again");
            }
            drop(chunk);
            let mut backoff = Duration::from_millis(100);
            while let Err(e) = self.take(&by_concert).await {
                tracing::warn!(error = format!("{e:#}"), "recording events failed; retrying before committing");
                tokio::select! {
                    _ = stop.cancelled() => return Ok(()),
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
            let mut tpl = TopicPartitionList::new();
            for (p, next) in offsets {
                tpl.add_partition_offset(&self.topic, p, rdkafka::Offset::Offset(next))?;
            }
            if let Err(e) = self.consumer.commit(&tpl, CommitMode::Async) {
                tracing::info!(error = %e, "committing the events worker's offsets failed; the batch may be read again");
            }
        }
    }

    /// Whether the concert keyed `key` has webhooks. A concert this process has not learned of
    /// yet (created moments ago elsewhere, or Redis was away at start-up) is looked up in Redis
    /// first, so its events are not passed over for want of knowing it; a key that is not a
    /// concertId is looked at further (and skipped with a warning).
    async fn has_webhooks(&self, key: &[u8]) -> bool {
        let Some(id) = std::str::from_utf8(key).ok().and_then(|k| ConcertId::parse(k).ok()) else { return true };
        if self.cache.settings(&id).is_none() {
            if let Err(e) = self.cache.refresh(self.store.list_concerts()).await {
                tracing::warn!(error = %e, "could not look up a concert of the events topic; its events are looked at");
                return true;
            }
        }
        self.cache.settings(&id).is_some_and(|s| !s.webhooks.is_empty())
    }

    /// Adds a batch to the webhook queues, within each endpoint's caps; what does not fit, or
    /// is for a suspended endpoint, is dropped and counted.
    async fn take(&self, by_concert: &HashMap<ConcertId, Vec<Event>>) -> anyhow::Result<()> {
        let now = crate::clock::now_ms();
        for (concert, events) in by_concert {
            let Some(settings) = self.cache.settings(concert) else { continue };
            for hook in &settings.webhooks {
                let items: Vec<(&str, String)> = events
                    .iter()
                    .filter(|e| hook.wants(&e.ce_type))
                    .filter_map(|e| Some((e.id.as_str(), e.structured()?)))
                    .collect();
                let done = self.store.webhook_enqueue(concert, &hook.id, &items, now, self.caps).await?;
                self.metrics.webhook_dropped.with_label_values(&["full"]).inc_by(done.dropped_full);
                self.metrics.webhook_dropped.with_label_values(&["suspended"]).inc_by(done.dropped_suspended);
                if done.dropped_full + done.dropped_suspended > 0 {
                    tracing::debug!(concert = %concert, webhook = %hook.id, full = done.dropped_full,
                        suspended = done.dropped_suspended, "webhook deliveries dropped");
                }
            }
        }
        Ok(())
    }
}

/// Keeps one delivery task running per webhook of every known concert.
pub struct Deliveries {
    store: QueueStore,
    cache: ConcertCache,
    metrics: Metrics,
    settings: EventsSettings,
    client: reqwest::Client,
    /// Where deliveries may connect (`QUEUEGATE_WEBHOOK_ALLOW_NETWORKS`).
    egress: EgressPolicy,
    /// Opens the secrets Redis holds encrypted.
    at_rest: super::at_rest::SecretBox,
}

impl Deliveries {
    pub fn new(
        store: QueueStore,
        cache: ConcertCache,
        metrics: Metrics,
        settings: &EventsSettings,
        at_rest: super::at_rest::SecretBox,
    ) -> anyhow::Result<Self> {
        let egress = EgressPolicy::new(&settings.webhook_allow_networks.0);
        let client = delivery_client(
            Duration::from_millis(settings.webhook_timeout_ms),
            egress.clone(),
            super::egress::system_lookup(),
        )?;
        Ok(Deliveries { store, cache, metrics, settings: settings.clone(), client, egress, at_rest })
    }

    pub async fn run(self, stop: CancellationToken) -> anyhow::Result<()> {
        let this = std::sync::Arc::new(self);
        let mut running: HashMap<(ConcertId, String, String), CancellationToken> = HashMap::new();
        loop {
            let mut wanted = HashSet::new();
            for (id, s) in this.cache.snapshot() {
                for hook in &s.webhooks {
                    wanted.insert((id.clone(), hook.id.clone(), hook.url.clone()));
                }
            }
            running.retain(|k, token| {
                let keep = wanted.contains(k);
                if !keep {
                    token.cancel();
                }
                keep
            });
            for key in wanted {
                if let std::collections::hash_map::Entry::Vacant(slot) = running.entry(key) {
                    let token = stop.child_token();
                    let (this, t) = (this.clone(), token.clone());
                    let (concert, hook, url) = slot.key().clone();
                    tokio::spawn(async move { this.endpoint(concert, hook, url, t).await });
                    slot.insert(token);
                }
            }
            tokio::select! {
                _ = stop.cancelled() => return Ok(()),
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    }

    /// One endpoint's deliveries, until the endpoint is taken away or the process stops.
    async fn endpoint(&self, concert: ConcertId, hook: String, url: String, stop: CancellationToken) {
        let visibility = self.settings.webhook_timeout_ms as i64 + 5_000;
        let give_up_ms = self.settings.webhook_give_up_seconds as i64 * 1000;
        let policy = SuspendPolicy {
            after_ms: self.settings.webhook_suspend_after_seconds as i64 * 1000,
            min_failures: SUSPEND_MIN_FAILURES,
        };
        let mut gauges = EndpointGauges::new(&self.metrics, &concert, &hook);
        while !stop.is_cancelled() {
            let look = self
                .store
                .webhook_claim(&concert, &hook, crate::clock::now_ms(), visibility, IN_FLIGHT, give_up_ms)
                .await;
            let Claim { suspended_ms, given_up, claimed, .. } = match look {
                Ok(c) => {
                    gauges.set(c.pending, c.pending_bytes, c.suspended_ms.is_some());
                    c
                }
                Err(e) => {
                    tracing::debug!(concert = %concert, webhook = %hook, error = %e, "claiming deliveries failed");
                    Claim::default()
                }
            };
            // Deliveries whose give-up window is over, attempted or not: logged and counted.
            let now = crate::clock::now_ms();
            if !given_up.is_empty() {
                tracing::info!(concert = %concert, webhook = %hook, count = given_up.len(),
                    "webhook deliveries given up: QUEUEGATE_WEBHOOK_GIVE_UP_SECONDS since they were queued");
            }
            let mut attempts: Vec<Attempt> =
                given_up.iter().map(|(id, tried)| self.expired(&hook, id, *tried, now)).collect();
            if !claimed.is_empty() {
                match self
                    .store
                    .webhook_secret(&concert, &hook, crate::clock::now_ms(), &self.at_rest)
                    .await
                    .ok()
                    .flatten()
                {
                    Some(secret) => {
                        let sends = claimed.iter().map(|d| self.deliver(&hook, &url, &secret, d));
                        attempts.extend(futures_util::future::join_all(sends).await);
                    }
                    // Unsent: they come due again after the visibility time.
                    None => tokio::time::sleep(Duration::from_millis(500)).await,
                }
            }
            if !attempts.is_empty() {
                // What the batch's attempts mean for the queue, the log and the endpoint's
                // standing, in one Redis call.
                match self.store.webhook_record(&concert, &hook, &attempts, crate::clock::now_ms(), policy).await {
                    Ok(true) => tracing::warn!(concert = %concert, webhook = %hook, url = %url,
                        suspend_after_seconds = self.settings.webhook_suspend_after_seconds,
                        "webhook endpoint suspended: every attempt failed for QUEUEGATE_WEBHOOK_SUSPEND_AFTER_SECONDS; \
                         nothing is queued for it or sent to it until an operator resumes it"),
                    Ok(false) => {}
                    Err(e) => tracing::warn!(concert = %concert, webhook = %hook, error = %e,
                        "recording deliveries failed; they will be tried again"),
                }
            }
            if claimed.is_empty() {
                // Idle, or suspended (only give-ups to look for, and the operator's resume).
                let pause = if suspended_ms.is_some() { 1_000 } else { 100 };
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_millis(pause)) => {}
                }
            }
        }
    }

    /// The log entry of a delivery given up without a further attempt: its give-up window,
    /// counted from when it was queued, is over.
    fn expired(&self, hook: &str, id: &str, tried: u32, now: i64) -> Attempt {
        self.metrics.webhook_deliveries.with_label_values(&["gave_up"]).inc();
        let log = json!({
            "webhookId": hook, "eventId": id, "attempt": tried, "outcome": "gave_up",
            "at": crate::clock::rfc3339(now),
            "error": format!("not delivered within {} s of being queued", self.settings.webhook_give_up_seconds),
        });
        Attempt { id: id.to_owned(), outcome: AttemptOutcome::Expired, log }
    }

    /// One attempt of one delivery, and what follows from it.
    async fn deliver(&self, hook: &str, url: &str, secret: &WebhookSecret, d: &Claimed) -> Attempt {
        let now = crate::clock::now_ms();
        let timestamp = now / 1000;
        // During a rotation's overlap, a signature by each secret (space-separated, as the
        // specification allows): a receiver verifies with whichever it holds.
        let signature = std::iter::once(&secret.current)
            .chain(&secret.previous)
            .filter_map(|s| super::sign(s, &d.id, timestamp, d.body.as_bytes()))
            .collect::<Vec<_>>()
            .join(" ");
        let started = std::time::Instant::now();
        let request = self
            .client
            .post(url)
            .header("content-type", "application/json")
            .header("webhook-id", &d.id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(d.body.clone())
            .build();
        let class = match request {
            Ok(request) => send_checked(&self.client, &self.egress, request).await,
            Err(_) => "request-failed",
        };
        let ok = class == "ok";
        let ms = started.elapsed().as_millis() as u64;
        let attempt = d.attempts + 1;
        let first = d.first_ms.unwrap_or(now);
        // The window counts from when the event was queued, not from the first attempt.
        let gave_up = !ok && now - d.queued_ms >= self.settings.webhook_give_up_seconds as i64 * 1000;
        let outcome = if ok {
            "delivered"
        } else if gave_up {
            "gave_up"
        } else {
            "failed"
        };
        self.metrics.webhook_deliveries.with_label_values(&[outcome]).inc();
        if ok {
            if let Some(at) = serde_json::from_str::<serde_json::Value>(&d.body)
                .ok()
                .and_then(|b| b["time"].as_str().and_then(crate::clock::parse_rfc3339))
            {
                self.metrics.webhook_delay.observe((crate::clock::now_ms() - at).max(0) as f64 / 1000.0);
            }
        } else {
            tracing::info!(webhook = hook, event = %d.id, attempt, class, outcome, "webhook delivery failed");
        }
        let log = json!({
            "webhookId": hook, "eventId": d.id, "attempt": attempt, "outcome": outcome, "class": class,
            "at": crate::clock::rfc3339(now), "ms": ms,
        });
        let outcome = if ok {
            AttemptOutcome::Delivered
        } else if gave_up {
            AttemptOutcome::GaveUp
        } else {
            let wait = backoff_ms(self.settings.webhook_retry_base_ms, self.settings.webhook_retry_max_ms, attempt);
            AttemptOutcome::Failed(Retry { at_ms: now + wait, attempts: attempt, first_ms: first })
        };
        Attempt { id: d.id.clone(), outcome, log }
    }
}

/// One endpoint's gauges as its delivery task last saw them; taken away with the task.
struct EndpointGauges {
    metrics: Metrics,
    labels: [String; 2],
    suspended: bool,
}

impl EndpointGauges {
    fn new(metrics: &Metrics, concert: &ConcertId, hook: &str) -> Self {
        EndpointGauges { metrics: metrics.clone(), labels: [concert.to_string(), hook.to_owned()], suspended: false }
    }

    fn set(&mut self, pending: u64, bytes: u64, suspended: bool) {
        let labels = [self.labels[0].as_str(), self.labels[1].as_str()];
        self.metrics.webhook_pending.with_label_values(&labels).set(pending as i64);
        self.metrics.webhook_pending_bytes.with_label_values(&labels).set(bytes as i64);
        if suspended != self.suspended {
            self.suspended = suspended;
            if suspended {
                self.metrics.webhook_suspended_endpoints.inc();
            } else {
                self.metrics.webhook_suspended_endpoints.dec();
            }
        }
    }
}

impl Drop for EndpointGauges {
    fn drop(&mut self) {
        let labels = [self.labels[0].as_str(), self.labels[1].as_str()];
        let _ = self.metrics.webhook_pending.remove_label_values(&labels);
        let _ = self.metrics.webhook_pending_bytes.remove_label_values(&labels);
        if self.suspended {
            self.metrics.webhook_suspended_endpoints.dec();
        }
    }
}

/// The client every delivery goes through: it resolves names only through [`CheckedResolver`]
/// (so it connects only to addresses checked at that moment), follows no redirect (one could
/// point anywhere) and uses no proxy (a proxy would resolve the name itself).
pub fn delivery_client(timeout: Duration, egress: EgressPolicy, lookup: Lookup) -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .dns_resolver(std::sync::Arc::new(CheckedResolver { policy: egress, lookup }))
        .user_agent(concat!("queuegate/", env!("CARGO_PKG_VERSION")))
        .build()
}

/// Sends one delivery unless its URL is a literal address `egress` refuses (the resolver never
/// sees a literal), and says what became of it ([`class_of`]).
pub async fn send_checked(client: &reqwest::Client, egress: &EgressPolicy, request: reqwest::Request) -> &'static str {
    let literal = match request.url().host() {
        Some(url::Host::Ipv4(ip)) => Some(std::net::IpAddr::V4(ip)),
        Some(url::Host::Ipv6(ip)) => Some(std::net::IpAddr::V6(ip)),
        _ => None,
    };
    if literal.is_some_and(|ip| !egress.permits(ip)) {
        return "refused-address";
    }
    class_of(&client.execute(request).await.map(|r| r.status()))
}

/// The class of an attempt's result, which is all the deliveries log and the log line keep:
/// `ok` (2xx), `http-3xx` (redirects are not followed), `http-4xx`, `http-5xx`, `http-other`,
/// `refused-address` (no connection was made: the address is internal), `dns-failed`,
/// `connect-failed`, `tls`, `timeout`, `request-failed` (the connection broke off). The socket
/// error's text and the exact status stay out: they would tell what listens where.
pub fn class_of(result: &Result<reqwest::StatusCode, reqwest::Error>) -> &'static str {
    let e = match result {
        Ok(s) if s.is_success() => return "ok",
        Ok(s) if s.is_redirection() => return "http-3xx",
        Ok(s) if s.is_client_error() => return "http-4xx",
        Ok(s) if s.is_server_error() => return "http-5xx",
        Ok(_) => return "http-other",
        Err(e) => e,
    };
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e);
    let mut tls = false;
    while let Some(c) = cause {
        match c.downcast_ref::<EgressError>() {
            Some(EgressError::Refused) => return "refused-address",
            Some(EgressError::Unresolved) => return "dns-failed",
            None => {}
        }
        tls |= c.is::<native_tls::Error>();
        cause = c.source();
    }
    if e.is_timeout() {
        "timeout"
    } else if tls {
        "tls"
    } else if e.is_connect() {
        "connect-failed"
    } else {
        "request-failed"
    }
}

/// The wait before attempt `attempt + 1` (ms): base · 2^(attempt−1), at most `max`, times a
/// random factor in [0.5, 1.5).
pub fn backoff_ms(base: u64, max: u64, attempt: u32) -> i64 {
    let exp = base.saturating_mul(1u64 << (attempt.saturating_sub(1)).min(30)).min(max);
    let mut r = [0u8; 2];
    getrandom::fill(&mut r).expect("the OS random source works");
    let jitter = 0.5 + f64::from(u16::from_le_bytes(r)) / 65536.0;
    (exp as f64 * jitter) as i64
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::{backoff_ms, delivery_client, send_checked};
    use crate::events::egress::{parse_networks, EgressPolicy, Lookup};

    /// A receiver on loopback that counts the connections it accepts and answers each with 204.
    async fn counting_receiver() -> (u16, Arc<AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                let mut buf = [0u8; 4096];
                let _ = conn.read(&mut buf).await;
                let _ = conn.write_all(b"HTTP/1.1 204 No Content\r\nconnection: close\r\n\r\n").await;
            }
        });
        (port, accepted)
    }

    /// A name whose DNS answers loopback at delivery time, whatever it answered at registration.
    fn rebinding() -> Lookup {
        Arc::new(|_name| Box::pin(async { Ok(vec!["127.0.0.1".parse().unwrap()]) }))
    }

    async fn post(egress: &EgressPolicy, url: &str) -> &'static str {
        let client = delivery_client(Duration::from_secs(5), egress.clone(), rebinding()).unwrap();
        let request = client.post(url).body("{}").build().unwrap();
        send_checked(&client, egress, request).await
    }

    #[tokio::test]
    async fn a_name_rebound_to_a_refused_address_at_delivery_gets_no_connection() {
        let (port, accepted) = counting_receiver().await;
        let refused = EgressPolicy::default();
        let class = post(&refused, &format!("http://hooks.rebind.example:{port}/hook")).await;
        assert_eq!(class, "refused-address", "the resolver refused the only address the name had");
        let class = post(&refused, &format!("http://127.0.0.1:{port}/hook")).await;
        assert_eq!(class, "refused-address", "a literal address is checked before sending");
        let class = post(&refused, &format!("http://[::ffff:127.0.0.1]:{port}/hook")).await;
        assert_eq!(class, "refused-address", "the IPv4-mapped form too");
        assert_eq!(accepted.load(Ordering::SeqCst), 0, "no connection reached the receiver");

        // The same name, with its network allowed: the receiver sees the connection, so it
        // would have seen the refused ones.
        let allowed = EgressPolicy::new(&parse_networks("127.0.0.0/8").unwrap().0);
        assert_eq!(post(&allowed, &format!("http://hooks.rebind.example:{port}/hook")).await, "ok");
        assert_eq!(accepted.load(Ordering::SeqCst), 1, "one connection, through the checked address");
    }

    #[tokio::test]
    async fn a_refused_address_reads_the_same_whatever_listens_there() {
        let (open_port, accepted) = counting_receiver().await;
        let closed_port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let refused = EgressPolicy::default();
        for port in [open_port, closed_port] {
            for host in ["127.0.0.1", "hooks.rebind.example"] {
                assert_eq!(post(&refused, &format!("http://{host}:{port}/")).await, "refused-address", "{host}:{port}");
            }
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 0);
        // Allowed, the receiver's own failures are told apart (coarsely).
        let allowed = EgressPolicy::new(&parse_networks("127.0.0.1").unwrap().0);
        assert_eq!(post(&allowed, &format!("http://127.0.0.1:{closed_port}/")).await, "connect-failed");
        // A plain-HTTP answer to a TLS handshake.
        assert_eq!(post(&allowed, &format!("https://127.0.0.1:{open_port}/")).await, "tls");
    }

    #[test]
    fn backoff_doubles_up_to_its_cap_with_jitter() {
        for attempt in 1..40 {
            let w = backoff_ms(5_000, 600_000, attempt);
            let exp = (5_000u64 << (attempt - 1).min(30)).min(600_000) as i64;
            assert!(w >= exp / 2 && w < exp * 3 / 2, "attempt {attempt}: {w} ms");
        }
    }
}
