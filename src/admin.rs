//! The admin listener: operators create and watch concert queues; probes and Prometheus read
//! health and metrics. Everything under `/admin/` needs `Authorization: Bearer <admin token>`
//! (`QUEUEGATE_ADMIN_TOKEN` or a named token of `QUEUEGATE_ADMIN_TOKENS_FILE`, each with its
//! role: [`access`]), except the console's own files (`crate::pages::CONSOLE_PATHS`), which
//! hold no data. Every change that succeeds is recorded ([`audit`]).

pub mod access;
pub mod audit;

use std::sync::Arc;
use std::time::Duration;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::Method;
use actix_web::middleware::Next;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};

use crate::admission::AdmissionKeys;
use crate::concerts::{Concert, ConcertCache, ConcertSettings, ConcertState};
use crate::gateway::FanStatus;
use crate::identity::bearer;
use crate::ids::{ConcertId, Lane, RequestId, UserId};
use crate::kafka::KafkaProbe;
use crate::metrics::Metrics;
use crate::problem::{read_json, ApiError};
use crate::routes::Endpoint;
use crate::store::{QueueStore, Standing};
use crate::supervisor::Health;

mod settings;

pub use settings::{merge_patch, MERGE_PATCH};

/// Largest page of the queue listing.
pub const MAX_PAGE: u64 = 1000;

/// Largest `offset` of the queue listing (documented as the schema's maximum).
pub const MAX_OFFSET: u64 = 1_000_000_000;

/// Everything the admin handlers share.
pub struct Admin {
    pub store: QueueStore,
    pub cache: ConcertCache,
    pub metrics: Metrics,
    /// Signs the admission tokens manual admission hands out.
    pub keys: AdmissionKeys,
    /// The admin tokens and who each one is (none configured under --insecure-dev: open).
    tokens: access::AdminTokens,
    /// Actions each concert's audit list keeps (`QUEUEGATE_ADMIN_AUDIT_KEPT`).
    audit_kept: u64,
    /// Asks Kafka for metadata, for readiness.
    kafka: KafkaProbe,
    /// Draining and failed tasks: /readyz answers 503 on either.
    health: Arc<Health>,
    /// Where webhooks may point (`QUEUEGATE_WEBHOOK_ALLOW_NETWORKS`): checked at registration.
    egress: crate::events::egress::EgressPolicy,
    /// Encrypts the webhook secrets Redis holds.
    at_rest: crate::events::at_rest::SecretBox,
    /// Hashes lane codes as the gateways look them up.
    codes: crate::store::CodeKey,
}

impl Admin {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        store: QueueStore,
        cache: ConcertCache,
        metrics: Metrics,
        keys: AdmissionKeys,
        tokens: access::AdminTokens,
        kafka: KafkaProbe,
        health: Arc<Health>,
        at_rest: crate::events::at_rest::SecretBox,
        codes: crate::store::CodeKey,
    ) -> Self {
        Admin {
            at_rest,
            codes,
            store,
            cache,
            metrics,
            keys,
            tokens,
            audit_kept: audit::DEFAULT_KEPT,
            kafka,
            health,
            egress: Default::default(),
        }
    }

    /// The networks webhooks may point to besides public ones (`QUEUEGATE_WEBHOOK_ALLOW_NETWORKS`).
    pub fn with_webhook_egress(mut self, egress: crate::events::egress::EgressPolicy) -> Self {
        self.egress = egress;
        self
    }

    /// Actions each concert's audit list keeps (`QUEUEGATE_ADMIN_AUDIT_KEPT`).
    pub fn with_audit_kept(mut self, kept: u64) -> Self {
        self.audit_kept = kept;
        self
    }
}

/// The admin listener's endpoints: the router, the metrics' route labels and the OpenAPI test
/// all read this table. Everything under `/admin/` but the console's files needs the admin token
/// ([`routes`] mounts those in the guarded scope).
pub static ROUTES: &[Endpoint] = &[
    Endpoint { method: Method::GET, path: "/healthz", handler: |r| r.to(healthz) },
    Endpoint { method: Method::GET, path: "/readyz", handler: |r| r.to(readyz) },
    Endpoint { method: Method::GET, path: "/metrics", handler: |r| r.to(metrics) },
    Endpoint { method: Method::GET, path: "/admin/", handler: |r| r.to(crate::pages::console) },
    Endpoint { method: Method::GET, path: "/admin/console.js", handler: |r| r.to(crate::pages::console_js) },
    Endpoint { method: Method::GET, path: "/admin/pages.css", handler: |r| r.to(crate::pages::css) },
    Endpoint { method: Method::GET, path: "/admin/v1/concerts", handler: |r| r.to(list_concerts) },
    Endpoint { method: Method::PUT, path: "/admin/v1/concerts/{concertId}", handler: |r| r.to(settings::put_concert) },
    Endpoint {
        method: Method::PATCH,
        path: "/admin/v1/concerts/{concertId}",
        handler: |r| r.to(settings::patch_concert),
    },
    Endpoint { method: Method::GET, path: "/admin/v1/concerts/{concertId}", handler: |r| r.to(get_concert) },
    Endpoint { method: Method::GET, path: "/admin/v1/concerts/{concertId}/queue", handler: |r| r.to(queue_page) },
    Endpoint {
        method: Method::GET,
        path: "/admin/v1/concerts/{concertId}/queue/{userId}",
        handler: |r| r.to(queue_user),
    },
    Endpoint {
        method: Method::DELETE,
        path: "/admin/v1/concerts/{concertId}/queue/{userId}",
        handler: |r| r.to(remove),
    },
    Endpoint { method: Method::POST, path: "/admin/v1/concerts/{concertId}/admit", handler: |r| r.to(admit) },
    Endpoint {
        method: Method::POST,
        path: "/admin/v1/concerts/{concertId}/lanes/{lane}/codes",
        handler: |r| r.to(add_codes),
    },
    Endpoint {
        method: Method::GET,
        path: "/admin/v1/concerts/{concertId}/sessions",
        handler: |r| r.to(crate::gate::list),
    },
    Endpoint {
        method: Method::POST,
        path: "/admin/v1/concerts/{concertId}/sessions/revoke",
        handler: |r| r.to(crate::gate::revoke),
    },
    Endpoint {
        method: Method::DELETE,
        path: "/admin/v1/concerts/{concertId}/sessions/{userId}",
        handler: |r| r.to(crate::gate::end),
    },
    Endpoint { method: Method::GET, path: "/admin/v1/concerts/{concertId}/report", handler: |r| r.to(report) },
    Endpoint { method: Method::GET, path: "/admin/v1/concerts/{concertId}/audit", handler: |r| r.to(audit::list) },
    Endpoint {
        method: Method::GET,
        path: "/admin/v1/concerts/{concertId}/webhooks/deliveries",
        handler: |r| r.to(webhook_deliveries),
    },
    Endpoint {
        method: Method::POST,
        path: "/admin/v1/concerts/{concertId}/webhooks/{webhookId}/secret",
        handler: |r| r.to(rotate_webhook_secret),
    },
    Endpoint {
        method: Method::POST,
        path: "/admin/v1/concerts/{concertId}/webhooks/{webhookId}/resume",
        handler: |r| r.to(resume_webhook),
    },
];

/// Registers the admin routes: the probes, the metrics and the console's own files (which hold
/// no data) at the top, everything else under `/admin` inside one scope that
/// [`require_admin_token`] wraps. The guard sits where routing decides, so any spelling of a
/// path that the router sends to an admin handler (`/%61dmin/…`) meets it, and an unknown
/// path under `/admin` is 401 without the token (no probing for which ones exist). Each route
/// of the scope carries its own guard too ([`access::route_guard`]): the role it needs, and the
/// audit record of a change.
pub fn routes(cfg: &mut web::ServiceConfig) {
    crate::problem::configure_extractors(cfg);
    for resource in crate::routes::resources(ROUTES, "", |e| !guarded(e.path), |_, r| r) {
        cfg.service(resource);
    }
    let mut scope = web::scope(ADMIN_SCOPE)
        .wrap(actix_web::middleware::from_fn(require_admin_token))
        .default_service(web::to(crate::routes::not_found));
    let per_route = |e: &'static Endpoint, r: actix_web::Route| {
        r.wrap(actix_web::middleware::from_fn(move |req, next| access::route_guard(e, req, next)))
    };
    for resource in crate::routes::resources(ROUTES, ADMIN_SCOPE, |e| guarded(e.path), per_route) {
        scope = scope.service(resource);
    }
    cfg.service(scope);
    cfg.default_service(web::to(crate::routes::not_found));
}

/// Where the routes that need the admin token are mounted.
const ADMIN_SCOPE: &str = "/admin";

/// Whether the route at `path` (a pattern of [`ROUTES`]) needs the admin token.
pub fn guarded(path: &str) -> bool {
    path.starts_with("/admin/") && !crate::pages::CONSOLE_PATHS.contains(&path)
}

/// Refuses every request that reached the admin scope without an admin token, and tells the
/// routes inside who the caller is ([`access::Caller`] in the request's extensions). It runs
/// after routing chose the scope, so it judges what the router decoded, not how the client
/// spelt it.
async fn require_admin_token(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<actix_web::body::BoxBody>, actix_web::Error> {
    let admin = req.app_data::<web::Data<Admin>>().expect("admin state is registered").clone();
    let Some(caller) = admin.tokens.identify(bearer(req.request())) else {
        admin.metrics.admin_refused.with_label_values(&["token"]).inc();
        return Err(ApiError::Unauthorized("the admin token is missing or wrong".into()).into());
    };
    actix_web::HttpMessage::extensions_mut(&req).insert(caller);
    Ok(next.call(req).await?.map_into_boxed_body())
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({"status": "ok"}))
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Readiness {
    ready: bool,
    redis: bool,
    /// Why Redis is not ready (unreachable, no answer in time); never a secret.
    #[serde(skip_serializing_if = "Option::is_none")]
    redis_error: Option<String>,
    /// What this instance cannot do now while it does the rest, in name order (docs/operations.md,
    /// "Readiness"): `events` (the events topic is missing or unwritable: events wait in the
    /// outboxes), `kafka` (the brokers do not answer: joins answer 503, nothing is placed),
    /// `redisShards` (see `degradedShards`). Absent when there is nothing.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    degraded: Vec<&'static str>,
    /// Shards short of replicas, or without a live primary: degraded, not a reason to take this
    /// instance out of service (other shards' concerts are served).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    degraded_shards: Vec<crate::store::DegradedShard>,
    kafka: bool,
    draining: bool,
    /// The background task that failed, when one did: the process is shutting down.
    #[serde(skip_serializing_if = "Option::is_none")]
    failed_task: Option<crate::supervisor::TaskFailure>,
}

/// How long readiness waits for Redis (connection and the shards' state together).
const READY_REDIS_TIMEOUT: Duration = Duration::from_secs(2);
/// How long readiness waits for Kafka's metadata.
const READY_KAFKA_TIMEOUT: Duration = Duration::from_secs(1);

/// 200 while this instance can do any of its work; `degraded` names what it cannot. Every role
/// needs Redis (placement, admission, status, sessions, rooms, the concerts themselves), so
/// Redis not answering within [`READY_REDIS_TIMEOUT`] is a 503, as are draining and a failed
/// background task. Kafka not answering within [`READY_KAFKA_TIMEOUT`] is `degraded: ["kafka"]`
/// and still 200: a gateway goes on serving the gate, status, streams and rooms (joins answer
/// 503 with Retry-After), a consumer goes on admitting and ending sessions. Taking every
/// gateway out of the load balancer because the brokers stall would take the booking site's
/// gate down with them, and with it every shopper already inside. A missing events topic
/// (`events`) and Redis shards short of replicas or down (`redisShards`, counted by
/// `queuegate_redis_under_replicated_shards` / `_down_shards`) are degraded too. Kafka and
/// Redis are asked side by side, so a probe has its answer within about two seconds whatever
/// is down.
async fn readyz(admin: web::Data<Admin>) -> HttpResponse {
    let draining = admin.health.is_draining();
    let failed_task = admin.health.failure();
    let probe = admin.kafka.clone();
    let kafka = tokio::task::spawn_blocking(move || probe.reachable(READY_KAFKA_TIMEOUT));
    let (redis_error, degraded_shards) = match tokio::time::timeout(READY_REDIS_TIMEOUT, admin.store.health()).await {
        Ok(Ok(h)) => {
            admin.metrics.observe_redis_health(&h);
            (None, h.degraded)
        }
        Ok(Err(e)) => (Some(e.to_string()), Vec::new()),
        Err(_) => (Some(format!("no answer within {} s", READY_REDIS_TIMEOUT.as_secs())), Vec::new()),
    };
    let redis = redis_error.is_none();
    let kafka = kafka.await.unwrap_or(false);
    let mut degraded = admin.health.degraded();
    if !kafka {
        degraded.push("kafka");
    }
    if !degraded_shards.is_empty() {
        degraded.push("redisShards");
    }
    degraded.sort_unstable();
    let ready = redis && !draining && failed_task.is_none();
    let body = Readiness { ready, redis, redis_error, degraded, degraded_shards, kafka, draining, failed_task };
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
    concert_id: ConcertId,
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
    /// Live gate sessions (src/gate.rs); each holds one of the `active` slots.
    sessions: u64,
    /// Per lane: waiting, admitted (and a code lane's codes), in the concert's lane order.
    lane_counts: Vec<LaneCountsView>,
    created_at: String,
    updated_at: String,
    /// The concert's `ETag` (as `GET` answers it for this concert), so a client that read the
    /// list can send `If-Match` too.
    etag: String,
}

/// One lane's counts, as the admin API shows them.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct LaneCountsView {
    name: Lane,
    waiting: u64,
    admitted: u64,
    /// A code lane's codes: uploaded, and bound to a fan.
    #[serde(skip_serializing_if = "Option::is_none")]
    codes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    codes_used: Option<u64>,
}

async fn view(store: &QueueStore, c: Concert) -> Result<ConcertView, ApiError> {
    let counts = store.counts(&c.id, &c.settings.lane_names()).await?;
    let mut lane_counts = Vec::with_capacity(counts.lanes.len());
    for (l, settings) in counts.lanes.iter().zip(c.settings.lanes().iter()) {
        let (codes, codes_used) = if settings.access == crate::concerts::LaneAccess::Code {
            let (n, used) = store.code_counts(&c.id, &l.name).await?;
            (Some(n), Some(used))
        } else {
            (None, None)
        };
        lane_counts.push(LaneCountsView {
            name: l.name.clone(),
            waiting: l.waiting,
            admitted: l.admitted,
            codes,
            codes_used,
        });
    }
    Ok(ConcertView {
        lane_counts,
        waiting: counts.waiting,
        admitted: counts.admitted,
        active: counts.active,
        abandoned: counts.abandoned,
        removed: counts.removed,
        sessions: counts.sessions,
        created_at: crate::clock::rfc3339(c.created_at_ms),
        updated_at: crate::clock::rfc3339(c.updated_at_ms),
        etag: c.etag(),
        concert_id: c.id,
        settings: c.settings,
    })
}

async fn report(admin: web::Data<Admin>, id: web::Path<ConcertId>) -> Result<HttpResponse, ApiError> {
    let c = existing(&admin, &id).await?;
    let data = admin.store.report(&c.id).await?;
    Ok(HttpResponse::Ok().json(crate::events::report::render(c.id.as_str(), &data)))
}

async fn webhook_deliveries(admin: web::Data<Admin>, id: web::Path<ConcertId>) -> Result<HttpResponse, ApiError> {
    let c = existing(&admin, &id).await?;
    let mut hooks = Vec::new();
    for h in &c.settings.webhooks {
        let state = admin.store.webhook_state(&c.id, &h.id).await?;
        let mut shown = webhook_standing(&state);
        for (k, v) in [
            ("id", serde_json::json!(h.id)),
            ("url", serde_json::json!(h.url)),
            ("types", serde_json::json!(h.types)),
            ("secret", serde_json::json!(h.secret)),
        ] {
            shown[k] = v;
        }
        hooks.push(shown);
    }
    let ids: Vec<&str> = c.settings.webhooks.iter().map(|h| h.id.as_str()).collect();
    let deliveries = admin.store.webhook_log_read(&c.id, &ids).await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({"webhooks": hooks, "deliveries": deliveries})))
}

/// A webhook endpoint's queue and standing as the admin API shows them (docs/events.md).
fn webhook_standing(s: &crate::store::events::WebhookState) -> serde_json::Value {
    serde_json::json!({
        "pending": s.pending,
        "pendingBytes": s.pending_bytes,
        "suspended": s.suspended_ms.is_some(),
        "suspendedAt": s.suspended_ms.map(crate::clock::rfc3339),
        "failingSince": s.failing_since_ms.map(crate::clock::rfc3339),
        "failuresInARow": s.failures,
        "dropped": {"full": s.dropped_full, "suspended": s.dropped_suspended},
    })
}

/// Resumes a suspended webhook endpoint: its events are queued and sent again (those of the
/// suspension were dropped); its failing streak starts afresh. Resuming one that is not
/// suspended changes nothing.
async fn resume_webhook(
    admin: web::Data<Admin>,
    path: web::Path<(ConcertId, String)>,
) -> Result<HttpResponse, ApiError> {
    let (id, hook) = path.into_inner();
    let c = existing(&admin, &id).await?;
    let Some(h) = c.settings.webhooks.iter().find(|h| h.id == hook) else {
        return Err(ApiError::NotFound(format!("concert {id} has no webhook {hook}")));
    };
    let was = admin.store.webhook_resume(&id, &hook).await?;
    if was {
        tracing::info!(concert = %id, webhook = %hook, "webhook endpoint resumed");
    }
    let state = admin.store.webhook_state(&id, &hook).await?;
    let mut shown = webhook_standing(&state);
    shown["id"] = serde_json::json!(h.id);
    shown["url"] = serde_json::json!(h.url);
    shown["resumed"] = serde_json::json!(was);
    Ok(HttpResponse::Ok().json(shown))
}

/// How long a rotated-out webhook secret keeps signing by default, and at most (seconds).
const PREVIOUS_SECRET_DEFAULT_SECONDS: u64 = 86_400;
const PREVIOUS_SECRET_MAX_SECONDS: u64 = 7 * 86_400;

/// The rotation's optional body: `{"previousValidSeconds": N}`.
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Rotation {
    previous_valid_seconds: Option<u64>,
}

async fn rotate_webhook_secret(
    admin: web::Data<Admin>,
    path: web::Path<(ConcertId, String)>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let (id, hook) = path.into_inner();
    // The one JSON reader (4 KiB, 5 s, application/json); no body: the default.
    let r: Rotation = read_json(&req, payload, Some(Rotation { previous_valid_seconds: None })).await?;
    let keep = r.previous_valid_seconds.unwrap_or(PREVIOUS_SECRET_DEFAULT_SECONDS);
    if keep > PREVIOUS_SECRET_MAX_SECONDS {
        return Err(ApiError::BadRequest(format!(
            "previousValidSeconds: {keep} is more than {PREVIOUS_SECRET_MAX_SECONDS} (7 days)"
        )));
    }
    let secret = crate::events::new_secret();
    let until = (keep > 0).then(|| crate::clock::now_ms() + keep as i64 * 1000);
    // The masked secret is part of the settings: written only over the version read, so a
    // settings write from another gateway in between is never undone (read again instead).
    // The secret itself is set once that is stored: a failure in between leaves the old
    // secret signing (the mask a moment ahead of it), and a retry rotates from the old one.
    let mut stored = false;
    for _ in 0..5 {
        let mut c = existing(&admin, &id).await?;
        let Some(h) = c.settings.webhooks.iter_mut().find(|h| h.id == hook) else {
            return Err(ApiError::NotFound(format!("concert {id} has no webhook {hook}")));
        };
        h.secret = crate::events::mask(&secret);
        let expect = crate::store::Expect::Version(c.version);
        if let Some(concert) = admin.store.put_concert_if(&id, &c.settings, expect).await? {
            admin.cache.set(&id, concert.settings);
            stored = true;
            break;
        }
    }
    if !stored {
        return Err(ApiError::unavailable(format!("concert {id} kept changing during the rotation; send it again")));
    }
    admin.store.set_webhook_secret(&id, &hook, &secret, until, &admin.at_rest).await?;
    tracing::info!(concert = %id, webhook = %hook, previous_valid_seconds = keep, "webhook secret rotated");
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "id": hook,
        "secret": secret,
        "previousValidUntil": until.map(crate::clock::rfc3339),
    })))
}

async fn list_concerts(admin: web::Data<Admin>) -> Result<HttpResponse, ApiError> {
    let mut out = Vec::new();
    for c in admin.store.list_concerts().await? {
        out.push(view(&admin.store, c).await?);
    }
    Ok(HttpResponse::Ok().json(serde_json::json!({ "concerts": out })))
}

async fn existing(admin: &Admin, id: &ConcertId) -> Result<Concert, ApiError> {
    admin.store.get_concert(id).await?.ok_or_else(|| ApiError::NotFound(format!("no concert {id}")))
}

async fn get_concert(admin: web::Data<Admin>, id: web::Path<ConcertId>) -> Result<HttpResponse, ApiError> {
    let c = existing(&admin, &id).await?;
    let etag = c.etag();
    Ok(HttpResponse::Ok().insert_header((actix_web::http::header::ETAG, etag)).json(view(&admin.store, c).await?))
}

#[derive(Debug, Deserialize)]
struct PageQuery {
    /// The lane to list (`general` when absent).
    #[serde(default)]
    lane: Option<Lane>,
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
    user_id: UserId,
    joined_at: String,
}

async fn queue_page(
    admin: web::Data<Admin>,
    id: web::Path<ConcertId>,
    q: web::Query<PageQuery>,
) -> Result<HttpResponse, ApiError> {
    if q.limit == 0 || q.limit > MAX_PAGE {
        return Err(ApiError::BadRequest(format!("limit must be between 1 and {MAX_PAGE}")));
    }
    if q.offset > MAX_OFFSET {
        return Err(ApiError::BadRequest(format!("offset must be between 0 and {MAX_OFFSET}")));
    }
    let c = existing(&admin, &id).await?;
    let lane = q.lane.clone().unwrap_or_else(Lane::general);
    if c.settings.lane(&lane).is_none() {
        return Err(ApiError::NotFound(format!("concert {} has no lane {lane}", c.id)));
    }
    let (total, entries) = admin.store.page(&c.id, &lane, q.offset, q.limit).await?;
    let entries: Vec<EntryView> = entries
        .into_iter()
        .map(|e| EntryView {
            position: e.position,
            user_id: e.user_id,
            joined_at: crate::clock::rfc3339(e.joined_at_ms),
        })
        .collect();
    Ok(HttpResponse::Ok()
        .json(serde_json::json!({ "lane": lane, "total": total, "offset": q.offset, "entries": entries })))
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct UserView {
    user_id: UserId,
    status: &'static str,
    /// The lane the fan's place is (or was) in.
    lane: Lane,
    #[serde(skip_serializing_if = "Option::is_none")]
    position: Option<u64>,
    joined_at: String,
}

async fn queue_user(admin: web::Data<Admin>, path: web::Path<(ConcertId, UserId)>) -> Result<HttpResponse, ApiError> {
    let (concert_id, user_id) = path.into_inner();
    let c = existing(&admin, &concert_id).await?;
    let (standing, lane, now_ms) = admin.store.standing(&c.id, &c.settings.lane_names(), &user_id, 0).await?;
    let joined_at_ms = match &standing {
        Standing::Unknown => return Err(ApiError::NotFound(format!("{user_id} never joined concert {concert_id}"))),
        Standing::Waiting { joined_at_ms, .. }
        | Standing::Left { joined_at_ms, .. }
        | Standing::Held { joined_at_ms, .. } => *joined_at_ms,
    };
    let status = FanStatus::new(standing, now_ms, &c.id, &user_id, None);
    Ok(HttpResponse::Ok().json(UserView {
        user_id,
        status: status.status,
        lane,
        position: status.position,
        joined_at: crate::clock::rfc3339(joined_at_ms),
    }))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct AdmitBody {
    count: u32,
    /// Makes the call safe to retry: the same request id returns the same fans and tokens.
    #[serde(default, deserialize_with = "crate::problem::present")]
    request_id: Option<RequestId>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct AdmittedView {
    user_id: UserId,
    admission_token: String,
    expires_at: String,
}

/// `POST /admin/v1/concerts/{concertId}/admit {"count":n}` — admits up to n fans from the head
/// now, whatever the rate, within `maxActive` when the concert sets it.
async fn admit(
    admin: web::Data<Admin>,
    req: HttpRequest,
    id: web::Path<ConcertId>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let body: AdmitBody = read_json(&req, payload, None).await?;
    let c = existing(&admin, &id).await?;
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
    let admit = crate::store::AdmitRequest {
        max: body.count,
        ttl_ms: i64::from(c.settings.token_ttl_seconds) * 1000,
        max_active: c.settings.max_active,
        abandon_after_ms: i64::from(c.settings.abandon_after_seconds) * 1000,
        per_second: 0,
        lease: None,
        request: body.request_id.as_ref(),
        lanes: &c.settings.lane_shares(),
    };
    let admitted = admin.store.admit(&c.id, admit).await?.expect("manual admission holds no lease to lose");
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
    audit::note_result(&req, serde_json::json!({ "admitted": views.len() }));
    Ok(HttpResponse::Ok().json(serde_json::json!({ "admitted": views })))
}

/// `DELETE /admin/v1/concerts/{concertId}/queue/{userId}` — 204, or 404 when not waiting.
async fn remove(admin: web::Data<Admin>, path: web::Path<(ConcertId, UserId)>) -> Result<HttpResponse, ApiError> {
    let (concert_id, user_id) = path.into_inner();
    let c = existing(&admin, &concert_id).await?;
    if admin.store.remove(&c.id, &user_id).await? {
        tracing::info!(concert = %c.id, user = %user_id, "fan removed from the queue");
        Ok(HttpResponse::NoContent().finish())
    } else {
        Err(ApiError::NotFound(format!("{user_id} is not waiting in concert {concert_id}")))
    }
}

/// Most codes in one upload.
pub const MAX_CODES_PER_UPLOAD: usize = 10_000;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CodesBody {
    codes: Vec<String>,
}

/// `POST /admin/v1/concerts/{concertId}/lanes/{lane}/codes` `{"codes":[…]}`: adds codes to a
/// lane whose access is `code` (up to [`MAX_CODES_PER_UPLOAD`] per call; stored hashed; a code
/// uploaded again keeps its binding). 200 `{"added","total","used"}`.
async fn add_codes(
    admin: web::Data<Admin>,
    req: HttpRequest,
    path: web::Path<(ConcertId, Lane)>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let (id, lane) = path.into_inner();
    let body: CodesBody =
        crate::problem::read_json_up_to(&req, payload, None, crate::problem::MAX_CODES_BODY_BYTES).await?;
    let c = existing(&admin, &id).await?;
    match c.settings.lane(&lane) {
        None => return Err(ApiError::NotFound(format!("concert {id} has no lane {lane}"))),
        Some(l) if l.access != crate::concerts::LaneAccess::Code => {
            return Err(ApiError::Conflict(format!(
                "lane {lane} of concert {id} is {}, not code: it takes no codes",
                l.access.as_text()
            )))
        }
        Some(_) => {}
    }
    if body.codes.is_empty() || body.codes.len() > MAX_CODES_PER_UPLOAD {
        return Err(ApiError::BadRequest(format!("codes must hold 1 to {MAX_CODES_PER_UPLOAD} codes")));
    }
    if let Some(i) = body.codes.iter().position(|code| !crate::gateway::valid_code(code)) {
        return Err(ApiError::BadRequest(format!(
            "codes[{i}] must be 1 to {} visible ASCII characters",
            crate::gateway::MAX_CODE_CHARS
        )));
    }
    if let Some(i) = body.codes.iter().position(|code| !crate::store::strong_enough(code)) {
        return Err(ApiError::BadRequest(format!(
            "codes[{i}] is too easy to guess: a code needs at least {} characters and {} bits by its \
             length times log2 of the alphabet of the character classes it uses (digits 10, lower case 26, \
             upper case 26, other visible ASCII 32), e.g. 10 characters of a 32-symbol alphabet; nothing was added",
            crate::store::MIN_CODE_CHARS,
            crate::store::MIN_CODE_BITS
        )));
    }
    let added = admin.store.add_codes(&id, &lane, &admin.codes, &body.codes).await?;
    let (total, used) = admin.store.code_counts(&id, &lane).await?;
    // The record gets the count, never a code.
    audit::note_change(&req, serde_json::json!({ "codes": body.codes.len() }));
    audit::note_result(&req, serde_json::json!({ "added": added, "total": total }));
    tracing::info!(concert = %id, %lane, added, total, "lane codes uploaded");
    Ok(HttpResponse::Ok().json(serde_json::json!({ "added": added, "total": total, "used": used })))
}
