//! The public listener's state: everything its handlers share, one per process. It imports no
//! handler, so every handler of the listener can take it.

use actix_web::web;

use super::{challenge, limits, published, views};
use crate::admission::AdmissionKeys;
use crate::concerts::ConcertCache;
use crate::identity::FanIdentity;
use crate::metrics::Metrics;
use crate::producer::EntryProducer;
use crate::store::QueueStore;
use crate::token::EntryTokens;

/// Everything the public handlers share; one per process.
pub struct Gateway {
    pub producer: EntryProducer,
    pub store: QueueStore,
    pub cache: ConcertCache,
    pub tokens: EntryTokens,
    pub keys: AdmissionKeys,
    pub metrics: Metrics,
    /// Who a joining fan is.
    pub identity: FanIdentity,
    /// `/openapi.json` for this gateway's identity mode ([`crate::openapi::openapi_for`]), made once at start.
    pub(super) openapi: web::Bytes,
    /// Who may complete an admission: the booking site's token (and the admin token).
    pub site: crate::identity::Credentials,
    /// Proof-of-work challenges for anonymous joins.
    pub challenges: challenge::Challenges,
    /// Joins per client and per fan, status reads per fan.
    pub limits: limits::Limits,
    /// Open status streams per fan (at most [`super::events::MAX_STREAMS_PER_FAN`] each).
    pub(super) fan_streams: limits::FanStreams,
    /// Status reads waiting for Redis at once ([`MAX_STATUS_READS_IN_FLIGHT`]).
    pub status_reads: tokio::sync::Semaphore,
    /// Permits for open status streams (SSE).
    pub streams: std::sync::Arc<tokio::sync::Semaphore>,
    /// Cancelled at shutdown: ends the status streams.
    pub stop: tokio_util::sync::CancellationToken,
    /// The per-concert views status streams and polls are answered from.
    pub views: std::sync::Arc<views::Views>,
    /// What the fairness endpoint publishes, from memory.
    pub(super) published: published::Published,
    /// The gate in front of the booking site: session cookies, what this gateway knows of sessions.
    pub gate: crate::gate::Gate,
    /// `QUEUEGATE_PUBLIC_URL`'s origin: state-changing requests from it are the gateway's own
    /// ([`super::writes`]).
    pub(super) public_origin: Option<url::Origin>,
    /// Hashes lane codes as the admin listener stored them.
    pub(super) codes: crate::store::CodeKey,
    /// The failure budgets of code joins and how long a code is held for a join in flight.
    pub(super) code_budgets: crate::store::CodeBudgets,
}

/// Fans the views of one gateway track at most (about 150 bytes each); past it, fans' statuses
/// are read from Redis one by one.
pub const MAX_VIEW_FANS: usize = 500_000;

impl Gateway {
    /// The front door's shared state. `site` is who may complete admissions (the booking site's
    /// token and the admin token); `challenges` signs proof-of-work challenges (with the token
    /// secret, the same on every gateway). Both are required: there is no open default.
    /// `http` bounds the streams and sets the limits; `stop` ends the streams at shutdown.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        producer: EntryProducer,
        store: QueueStore,
        cache: ConcertCache,
        tokens: EntryTokens,
        keys: AdmissionKeys,
        metrics: Metrics,
        identity: FanIdentity,
        site: crate::identity::Credentials,
        challenges: challenge::Challenges,
        gate_secret: &[u8],
        http: &crate::config::HttpSettings,
        stop: tokio_util::sync::CancellationToken,
    ) -> Self {
        // A code is held for a join while its produce may still succeed, plus a margin for a
        // stalled process: a hold that lapses first could let another fan take the code.
        let code_hold_ms = producer.delivery_timeout().as_millis() as u64 + 30_000;
        let limits = limits::Limits::new(http, identity.proxies().any());
        let gate = crate::gate::Gate::new(
            gate_secret,
            http.public_url.as_deref(),
            cache.clone(),
            metrics.gate_ended_remembered.clone(),
            metrics.gate_refused_remembered.clone(),
        );
        Gateway {
            producer,
            store,
            cache,
            tokens,
            keys,
            metrics,
            openapi: crate::openapi::openapi_for(identity.mode()).into(),
            identity,
            site,
            challenges,
            limits,
            fan_streams: Default::default(),
            status_reads: tokio::sync::Semaphore::new(MAX_STATUS_READS_IN_FLIGHT),
            streams: std::sync::Arc::new(tokio::sync::Semaphore::new(http.max_event_streams)),
            stop,
            views: std::sync::Arc::new(views::Views::new(
                std::time::Duration::from_millis(http.view_refresh_ms),
                MAX_VIEW_FANS,
            )),
            published: Default::default(),
            gate,
            public_origin: public_origin(http.public_url.as_deref()),
            codes: crate::store::CodeKey::new(gate_secret),
            code_budgets: crate::store::CodeBudgets {
                per_client: http.code_failures_per_client,
                per_lane: http.code_failures_per_lane,
                window_ms: u64::from(http.code_failure_window_seconds) * 1000,
                hold_ms: code_hold_ms,
            },
        }
    }
}

/// Status reads one process lets wait for Redis at once. A healthy Redis answers in well under
/// a millisecond, so even 45,000 reads/s keep a few dozen in flight; a thousand waiting means
/// Redis is slow, and more would only queue behind it.
pub const MAX_STATUS_READS_IN_FLIGHT: usize = 1024;

/// The origin of `QUEUEGATE_PUBLIC_URL` (checked at start), if set.
pub(super) fn public_origin(public_url: Option<&str>) -> Option<url::Origin> {
    public_url.and_then(|u| url::Url::parse(u).ok()).map(|u| u.origin())
}
