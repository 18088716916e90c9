//! The public front door: fans join a concert's queue and read where they stand.
//!
//! A join is validated, checked against the cached concert state (no Redis round trip), produced
//! to Kafka and answered 202 only once the broker acknowledged it. Reading a status needs the
//! entry token handed out with the 202.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Instant;

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use serde::{Deserialize, Serialize};

use crate::admission::AdmissionKeys;
use crate::concerts::{ConcertCache, ConcertState};
use crate::ids::EntryRecord;
use crate::metrics::Metrics;
use crate::problem::{check_id, json_config, parse_body, ApiError};
use crate::producer::{EntryProducer, ProduceError};
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
    pub fn new(
        producer: EntryProducer,
        store: QueueStore,
        cache: ConcertCache,
        tokens: EntryTokens,
        keys: AdmissionKeys,
        metrics: Metrics,
        joins_per_ip_per_second: u32,
    ) -> Self {
        let limiter = NonZeroU32::new(joins_per_ip_per_second).map(|n| RateLimiter::keyed(Quota::per_second(n)));
        Gateway {
            producer,
            store,
            cache,
            tokens,
            keys,
            metrics,
            limiter,
            streams: std::sync::Arc::new(tokio::sync::Semaphore::new(10_000)),
            stop: tokio_util::sync::CancellationToken::new(),
        }
    }

    /// Bounds the open status streams and ends them when `stop` is cancelled.
    pub fn with_streams(mut self, max: usize, stop: tokio_util::sync::CancellationToken) -> Self {
        self.streams = std::sync::Arc::new(tokio::sync::Semaphore::new(max));
        self.stop = stop;
        self
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

/// Registers the public routes.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.app_data(json_config())
        .route("/", web::get().to(index))
        .route("/v1/concerts/{concertId}/queue", web::post().to(join))
        .route("/v1/concerts/{concertId}/queue/{userId}", web::get().to(status::status))
        .route("/v1/concerts/{concertId}/queue/{userId}/events", web::get().to(events::events))
        .route("/v1/concerts/{concertId}/admission/complete", web::post().to(status::complete))
        .route("/.well-known/jwks.json", web::get().to(status::jwks))
        .route("/openapi.json", web::get().to(openapi));
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
    user_id: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct JoinAccepted<'a> {
    entry_id: &'a str,
    concert_id: &'a str,
    user_id: &'a str,
    status: &'static str,
    token: String,
}

/// `POST /v1/concerts/{concertId}/queue` — 202 once Kafka has the join.
async fn join(
    gw: web::Data<Gateway>,
    req: HttpRequest,
    concert_id: web::Path<String>,
    body: web::Json<serde_json::Value>,
) -> Result<HttpResponse, ApiError> {
    let concert_id = concert_id.into_inner();
    check_id("concertId", &concert_id)?;
    let body: JoinBody = parse_body(body.into_inner())?;
    check_id("userId", &body.user_id)?;
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
