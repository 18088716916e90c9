//! The admin listener: operators create and watch concert queues; probes and Prometheus read
//! health and metrics. Everything under `/admin/` needs `Authorization: Bearer $QUEUEGATE_ADMIN_TOKEN`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{web, HttpResponse};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::admission::AdmissionKeys;
use crate::concerts::{Concert, ConcertCache, ConcertSettings, ConcertState};
use crate::gateway::{bearer, FanStatus};
use crate::metrics::Metrics;
use crate::problem::{check_id, json_config, parse_body, query_error, ApiError};
use crate::producer::EntryProducer;
use crate::store::{QueueStore, Standing};

/// Largest page of the queue listing.
pub const MAX_PAGE: u64 = 1000;

/// Everything the admin handlers share.
pub struct Admin {
    pub store: QueueStore,
    pub cache: ConcertCache,
    pub metrics: Metrics,
    /// Signs the admission tokens manual admission hands out.
    pub keys: AdmissionKeys,
    /// SHA-256 of the admin token; None under --insecure-dev without a token.
    token_hash: Option<[u8; 32]>,
    /// Present when this process produces (gateway roles): readiness then includes Kafka.
    pub producer: Option<EntryProducer>,
    /// A Kafka metadata probe for roles without a producer (the consumer).
    pub kafka_probe: Option<Arc<dyn Fn(Duration) -> bool + Send + Sync>>,
    /// Set when shutdown begins: /readyz answers 503 from then on.
    pub draining: Arc<AtomicBool>,
}

impl Admin {
    pub fn new(
        store: QueueStore,
        cache: ConcertCache,
        metrics: Metrics,
        keys: AdmissionKeys,
        admin_token: Option<&str>,
        draining: Arc<AtomicBool>,
    ) -> Self {
        Admin {
            store,
            cache,
            metrics,
            keys,
            token_hash: admin_token.map(|t| Sha256::digest(t.as_bytes()).into()),
            producer: None,
            kafka_probe: None,
            draining,
        }
    }

    /// Constant-time check of a presented token (hashes first, so length leaks nothing either).
    fn authorized(&self, presented: Option<&str>) -> bool {
        match (&self.token_hash, presented) {
            (None, _) => true,
            (Some(want), Some(got)) => {
                let got: [u8; 32] = Sha256::digest(got.as_bytes()).into();
                bool::from(want.ct_eq(&got))
            }
            (Some(_), None) => false,
        }
    }
}

/// Registers the admin routes.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.app_data(json_config())
        .app_data(web::QueryConfig::default().error_handler(|err, _| query_error(err).into()))
        .route("/healthz", web::get().to(healthz))
        .route("/readyz", web::get().to(readyz))
        .route("/metrics", web::get().to(metrics))
        .service(
            web::scope("/admin/v1")
                .wrap(actix_web::middleware::from_fn(require_admin_token))
                .route("/concerts", web::get().to(list_concerts))
                .route("/concerts/{concertId}", web::put().to(put_concert))
                .route("/concerts/{concertId}", web::get().to(get_concert))
                .route("/concerts/{concertId}/queue", web::get().to(queue_page))
                .route("/concerts/{concertId}/queue/{userId}", web::get().to(queue_user))
                .route("/concerts/{concertId}/queue/{userId}", web::delete().to(remove))
                .route("/concerts/{concertId}/admit", web::post().to(admit)),
        );
}

async fn require_admin_token(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<actix_web::body::BoxBody>, actix_web::Error> {
    let admin = req.app_data::<web::Data<Admin>>().expect("admin state is registered").clone();
    if !admin.authorized(bearer(req.request())) {
        return Err(ApiError::Unauthorized("the admin token is missing or wrong".into()).into());
    }
    Ok(next.call(req).await?.map_into_boxed_body())
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({"status": "ok"}))
}

#[derive(Serialize)]
struct Readiness {
    ready: bool,
    redis: bool,
    kafka: bool,
    draining: bool,
}

/// 200 when Redis and Kafka both answer (within a second each) and the process is not draining.
async fn readyz(admin: web::Data<Admin>) -> HttpResponse {
    let draining = admin.draining.load(Ordering::Acquire);
    let redis = admin.store.ping().await.is_ok();
    let timeout = Duration::from_secs(1);
    let kafka = if let Some(p) = admin.producer.clone() {
        tokio::task::spawn_blocking(move || p.kafka_reachable(timeout)).await.unwrap_or(false)
    } else if let Some(probe) = admin.kafka_probe.clone() {
        tokio::task::spawn_blocking(move || probe(timeout)).await.unwrap_or(false)
    } else {
        true
    };
    let ready = redis && kafka && !draining;
    let body = Readiness { ready, redis, kafka, draining };
    if ready {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}

async fn metrics(admin: web::Data<Admin>) -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain; version=0.0.4").body(admin.metrics.render())
}

/// A concert with its counts, as the admin API shows it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ConcertView {
    concert_id: String,
    #[serde(flatten)]
    settings: ConcertSettings,
    waiting: u64,
    /// Admitted since the concert began.
    admitted: u64,
    /// Admitted fans holding a slot now (token neither expired nor completed).
    active: u64,
    /// Skipped at admission because they stopped polling.
    abandoned: u64,
    removed: u64,
    created_at: String,
    updated_at: String,
}

async fn view(store: &QueueStore, c: Concert) -> Result<ConcertView, ApiError> {
    let counts = store.counts(&c.id).await?;
    Ok(ConcertView {
        waiting: counts.waiting,
        admitted: counts.admitted,
        active: counts.active,
        abandoned: counts.abandoned,
        removed: counts.removed,
        created_at: crate::clock::rfc3339(c.created_at_ms),
        updated_at: crate::clock::rfc3339(c.updated_at_ms),
        concert_id: c.id,
        settings: c.settings,
    })
}

async fn put_concert(
    admin: web::Data<Admin>,
    id: web::Path<String>,
    body: web::Json<serde_json::Value>,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    check_id("concertId", &id)?;
    let body: ConcertSettings = parse_body(body.into_inner())?;
    body.validate().map_err(ApiError::BadRequest)?;
    let concert = admin.store.put_concert(&id, &body).await?;
    admin.cache.set(&id, concert.settings.clone());
    tracing::info!(concert = %id, state = concert.settings.state.as_str(), "concert updated");
    Ok(HttpResponse::Ok().json(view(&admin.store, concert).await?))
}

async fn list_concerts(admin: web::Data<Admin>) -> Result<HttpResponse, ApiError> {
    let mut out = Vec::new();
    for c in admin.store.list_concerts().await? {
        out.push(view(&admin.store, c).await?);
    }
    Ok(HttpResponse::Ok().json(serde_json::json!({ "concerts": out })))
}

async fn existing(admin: &Admin, id: &str) -> Result<Concert, ApiError> {
    check_id("concertId", id)?;
    admin.store.get_concert(id).await?.ok_or_else(|| ApiError::NotFound(format!("no concert {id}")))
}

async fn get_concert(admin: web::Data<Admin>, id: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let c = existing(&admin, &id).await?;
    Ok(HttpResponse::Ok().json(view(&admin.store, c).await?))
}

#[derive(Debug, Deserialize)]
struct PageQuery {
    #[serde(default)]
    offset: u64,
    #[serde(default = "default_limit")]
    limit: u64,
}

fn default_limit() -> u64 {
    100
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct EntryView {
    position: u64,
    user_id: String,
    joined_at: String,
}

async fn queue_page(
    admin: web::Data<Admin>,
    id: web::Path<String>,
    q: web::Query<PageQuery>,
) -> Result<HttpResponse, ApiError> {
    if q.limit == 0 || q.limit > MAX_PAGE {
        return Err(ApiError::BadRequest(format!("limit must be between 1 and {MAX_PAGE}")));
    }
    let c = existing(&admin, &id).await?;
    let (total, entries) = admin.store.page(&c.id, q.offset, q.limit).await?;
    let entries: Vec<EntryView> = entries
        .into_iter()
        .map(|e| EntryView {
            position: e.position,
            user_id: e.user_id,
            joined_at: crate::clock::rfc3339(e.joined_at_ms),
        })
        .collect();
    Ok(HttpResponse::Ok().json(serde_json::json!({ "total": total, "offset": q.offset, "entries": entries })))
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct UserView {
    user_id: String,
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    position: Option<u64>,
    joined_at: String,
}

async fn queue_user(admin: web::Data<Admin>, path: web::Path<(String, String)>) -> Result<HttpResponse, ApiError> {
    let (concert_id, user_id) = path.into_inner();
    check_id("userId", &user_id)?;
    let c = existing(&admin, &concert_id).await?;
    let standing = admin.store.standing(&c.id, &user_id, 0).await?;
    let joined_at_ms = match &standing {
        Standing::Unknown => return Err(ApiError::NotFound(format!("{user_id} never joined concert {concert_id}"))),
        Standing::Waiting { joined_at_ms, .. } | Standing::Left { joined_at_ms, .. } => *joined_at_ms,
    };
    let status = FanStatus::new(standing, crate::clock::now_ms(), &c.id, &user_id, None);
    Ok(HttpResponse::Ok().json(UserView {
        user_id,
        status: status.status,
        position: status.position,
        joined_at: crate::clock::rfc3339(joined_at_ms),
    }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AdmitBody {
    count: u32,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct AdmittedView {
    user_id: String,
    admission_token: String,
    expires_at: String,
}

/// `POST /admin/v1/concerts/{concertId}/admit {"count":n}` — admits up to n fans from the head
/// now, whatever the rate, within `maxActive` when the concert sets it.
async fn admit(
    admin: web::Data<Admin>,
    id: web::Path<String>,
    body: web::Json<serde_json::Value>,
) -> Result<HttpResponse, ApiError> {
    let c = existing(&admin, &id).await?;
    let body: AdmitBody = parse_body(body.into_inner())?;
    if !(1..=MAX_PAGE as u32).contains(&body.count) {
        return Err(ApiError::BadRequest(format!("count must be between 1 and {MAX_PAGE}")));
    }
    if c.settings.state != ConcertState::Open {
        return Err(ApiError::Conflict(format!(
            "concert {} is {}; admission is stopped",
            c.id,
            c.settings.state.as_str()
        )));
    }
    let req = crate::store::AdmitRequest {
        max: body.count,
        ttl_ms: i64::from(c.settings.token_ttl_seconds) * 1000,
        max_active: c.settings.max_active,
        abandon_after_ms: i64::from(c.settings.abandon_after_seconds) * 1000,
        per_second: 0,
        lease: None,
    };
    let admitted = admin.store.admit(&c.id, req).await?.expect("manual admission holds no lease to lose");
    admin.metrics.admissions.with_label_values(&["manual"]).inc_by(admitted.fans.len() as u64);
    let views: Vec<AdmittedView> = admitted
        .fans
        .into_iter()
        .map(|(user, exp)| AdmittedView {
            admission_token: admin.keys.issue(&c.id, &user, admitted.iat_ms, exp),
            expires_at: crate::clock::rfc3339(exp),
            user_id: user,
        })
        .collect();
    tracing::info!(concert = %c.id, admitted = views.len(), "manual admission");
    Ok(HttpResponse::Ok().json(serde_json::json!({ "admitted": views })))
}

/// `DELETE /admin/v1/concerts/{concertId}/queue/{userId}` — 204, or 404 when not waiting.
async fn remove(admin: web::Data<Admin>, path: web::Path<(String, String)>) -> Result<HttpResponse, ApiError> {
    let (concert_id, user_id) = path.into_inner();
    check_id("userId", &user_id)?;
    let c = existing(&admin, &concert_id).await?;
    if admin.store.remove(&c.id, &user_id).await? {
        tracing::info!(concert = %c.id, user = %user_id, "fan removed from the queue");
        Ok(HttpResponse::NoContent().finish())
    } else {
        Err(ApiError::NotFound(format!("{user_id} is not waiting in concert {concert_id}")))
    }
}
