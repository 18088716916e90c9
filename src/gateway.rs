//! The public front door: fans join a concert's queue and read where they stand.
//!
//! A join is validated, checked against the cached concert state (no Redis round trip), produced
//! to Kafka and answered 202 only once the broker acknowledged it. Reading a status needs the
//! entry token handed out with the 202.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Instant;

use actix_web::http::{header, Method};
use actix_web::{web, HttpRequest, HttpResponse};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use serde::{Deserialize, Serialize};

use crate::admission::AdmissionKeys;
use crate::concerts::{ConcertCache, ConcertState};
use crate::ids::{ConcertId, EntryRecord, UserId};
use crate::metrics::Metrics;
use crate::problem::{parse_body, ApiError};
use crate::producer::{EntryProducer, ProduceError};
use crate::routes::Endpoint;
use crate::store::QueueStore;
use crate::token::EntryTokens;
use crate::trace::TraceContext;

mod events;
mod status;

pub use status::{bearer, FanStatus};

/// Everything the public handlers share; one per process.
pub struct Gateway {
    pub producer: EntryProducer,
    pub store: QueueStore,
    pub cache: ConcertCache,
    pub tokens: EntryTokens,
    pub keys: AdmissionKeys,
    pub metrics: Metrics,
    limiter: Option<DefaultKeyedRateLimiter<IpAddr>>,
    /// Permits for open status streams (SSE).
    pub streams: std::sync::Arc<tokio::sync::Semaphore>,
    /// Cancelled at shutdown: ends the status streams.
    pub stop: tokio_util::sync::CancellationToken,
}

impl Gateway {
    /// The front door's shared state. `max_streams` bounds the open status streams; `stop` ends
    /// them at shutdown.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        producer: EntryProducer,
        store: QueueStore,
        cache: ConcertCache,
        tokens: EntryTokens,
        keys: AdmissionKeys,
        metrics: Metrics,
        http: &crate::config::HttpSettings,
        stop: tokio_util::sync::CancellationToken,
    ) -> Self {
        let limiter = NonZeroU32::new(http.rate_limit_per_ip).map(|n| RateLimiter::keyed(Quota::per_second(n)));
        Gateway {
            producer,
            store,
            cache,
            tokens,
            keys,
            metrics,
            limiter,
            streams: std::sync::Arc::new(tokio::sync::Semaphore::new(http.max_event_streams)),
            stop,
        }
    }

    /// 429 with the time until this client may join again.
    fn check_rate(&self, ip: Option<IpAddr>) -> Result<(), ApiError> {
        let (Some(limiter), Some(ip)) = (&self.limiter, ip) else {
            return Ok(());
        };
        limiter.check_key(&ip).map_err(|not_until| {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            ApiError::RateLimited { retry_after_secs: wait.as_secs_f64().ceil().max(1.0) as u64 }
        })
    }
}

/// The public listener's endpoints: the router, the metrics' route labels and the OpenAPI
/// test all read this table.
pub static ROUTES: &[Endpoint] = &[
    Endpoint { method: Method::GET, path: "/", handler: |r| r.to(index) },
    Endpoint { method: Method::POST, path: "/v1/concerts/{concertId}/queue", handler: |r| r.to(join) },
    Endpoint {
        method: Method::GET,
        path: "/v1/concerts/{concertId}/queue/{userId}",
        handler: |r| r.to(status::status),
    },
    Endpoint {
        method: Method::GET,
        path: "/v1/concerts/{concertId}/queue/{userId}/events",
        handler: |r| r.to(events::events),
    },
    Endpoint {
        method: Method::POST,
        path: "/v1/concerts/{concertId}/admission/complete",
        handler: |r| r.to(status::complete),
    },
    Endpoint { method: Method::GET, path: "/.well-known/jwks.json", handler: |r| r.to(status::jwks) },
    Endpoint { method: Method::GET, path: "/openapi.json", handler: |r| r.to(openapi) },
];

/// Registers the public routes.
pub fn routes(cfg: &mut web::ServiceConfig) {
    crate::problem::configure_extractors(cfg);
    crate::routes::register(cfg, ROUTES);
}

/// The OpenAPI 3 description of both listeners.
pub const OPENAPI: &str = include_str!("gateway/openapi.json");

async fn openapi() -> HttpResponse {
    HttpResponse::Ok().content_type("application/json").body(OPENAPI)
}

async fn index() -> HttpResponse {
    HttpResponse::Ok().content_type("text/html; charset=utf-8").body(include_str!("gateway/index.html"))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct JoinBody {
    user_id: UserId,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct JoinAccepted<'a> {
    entry_id: &'a str,
    concert_id: &'a ConcertId,
    user_id: &'a UserId,
    status: &'static str,
    token: String,
}

/// `POST /v1/concerts/{concertId}/queue` — 202 once Kafka has the join.
async fn join(
    gw: web::Data<Gateway>,
    req: HttpRequest,
    concert_id: web::Path<ConcertId>,
    body: web::Json<serde_json::Value>,
) -> Result<HttpResponse, ApiError> {
    let concert_id = concert_id.into_inner();
    let body: JoinBody = parse_body(body.into_inner())?;
    gw.check_rate(req.peer_addr().map(|a| a.ip()))?;
    match gw.cache.state(&concert_id) {
        Some(ConcertState::Open) => {}
        Some(state) => {
            return Err(ApiError::Conflict(format!(
                "concert {concert_id} is {}; joins are not accepted",
                state.as_str()
            )))
        }
        None if !gw.cache.is_loaded() => {
            return Err(ApiError::unavailable("concerts are still loading; retry shortly"))
        }
        None => return Err(ApiError::NotFound(format!("no concert {concert_id}"))),
    }

    let trace = TraceContext::from_request(&req);
    let rec = EntryRecord {
        entry_id: uuid::Uuid::now_v7().to_string(),
        concert_id,
        user_id: body.user_id,
        joined_at_ms: crate::clock::now_ms(),
    };
    let started = Instant::now();
    gw.metrics.produce_in_flight.inc();
    let sent = gw.producer.send(&rec, &[("traceparent", &trace.header())]).await;
    gw.metrics.produce_in_flight.dec();
    let outcome = match &sent {
        Ok(_) => "acked",
        Err(ProduceError::Overloaded) => "overloaded",
        Err(ProduceError::QueueFull) => "queue_full",
        Err(ProduceError::Timeout) => "timeout",
        Err(ProduceError::Kafka(_)) => "kafka_error",
    };
    gw.metrics.produce_duration.with_label_values(&[outcome]).observe(started.elapsed().as_secs_f64());
    match sent {
        Ok(d) => {
            tracing::debug!(trace_id = %trace.trace_id, concert = %rec.concert_id, user = %rec.user_id,
                partition = d.partition, offset = d.offset, "join accepted");
        }
        Err(e) => {
            gw.metrics.produce_errors.with_label_values(&[outcome]).inc();
            tracing::warn!(trace_id = %trace.trace_id, concert = %rec.concert_id, error = %e, "join not accepted");
            return Err(ApiError::unavailable(format!("the join could not be made durable: {e}")));
        }
    }
    let token = gw.tokens.issue(&rec.concert_id, &rec.user_id);
    Ok(HttpResponse::Accepted()
        .insert_header((header::LOCATION, format!("/v1/concerts/{}/queue/{}", rec.concert_id, rec.user_id)))
        .json(JoinAccepted {
            entry_id: &rec.entry_id,
            concert_id: &rec.concert_id,
            user_id: &rec.user_id,
            status: "pending",
            token,
        }))
}
