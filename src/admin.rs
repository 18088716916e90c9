//! The admin listener: operators create and watch concert queues; probes and Prometheus read
//! health and metrics. Everything under `/admin/` needs `Authorization: Bearer <admin token>`
//! (`QUEUEGATE_ADMIN_TOKEN` or a named token of `QUEUEGATE_ADMIN_TOKENS_FILE`, each with its
//! role: [`access`]), except the console's own files (`crate::pages::CONSOLE_PATHS`), which
//! hold no data. Every change that succeeds is recorded ([`audit`]).
//!
//! The admin listener, one way down: this file holds its route table ([`ROUTES`]), the two
//! guards, the probes, the metrics, the concert list and reports, and the webhooks' calls; the
//! other handlers are in `queue`, `sessions`, `settings` and [`audit`]. They all take the
//! listener's state, [`state::Admin`], which imports no handler; [`access`] (who the caller is)
//! and the domain modules below import no listener.

pub mod access;
pub mod audit;
mod concert_view;
mod queue;
mod sessions;
mod settings;
pub mod state;

use std::time::Duration;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::Method;
use actix_web::middleware::Next;
use actix_web::{web, HttpMessage, HttpRequest, HttpResponse};
use serde::Serialize;

use crate::identity::bearer;
use crate::ids::ConcertId;
use crate::problem::{read_json, ApiError};
use crate::routes::Endpoint;
use concert_view::{existing, view};

pub use settings::merge_patch;
pub use state::Admin;

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
    Endpoint {
        method: Method::GET,
        path: "/admin/v1/concerts/{concertId}/queue",
        handler: |r| r.to(queue::queue_page),
    },
    Endpoint {
        method: Method::GET,
        path: "/admin/v1/concerts/{concertId}/queue/{userId}",
        handler: |r| r.to(queue::queue_user),
    },
    Endpoint {
        method: Method::DELETE,
        path: "/admin/v1/concerts/{concertId}/queue/{userId}",
        handler: |r| r.to(queue::remove),
    },
    Endpoint { method: Method::POST, path: "/admin/v1/concerts/{concertId}/admit", handler: |r| r.to(queue::admit) },
    Endpoint {
        method: Method::POST,
        path: "/admin/v1/concerts/{concertId}/lanes/{lane}/codes",
        handler: |r| r.to(queue::add_codes),
    },
    Endpoint {
        method: Method::GET,
        path: "/admin/v1/concerts/{concertId}/sessions",
        handler: |r| r.to(sessions::list),
    },
    Endpoint {
        method: Method::POST,
        path: "/admin/v1/concerts/{concertId}/sessions/revoke",
        handler: |r| r.to(sessions::revoke),
    },
    Endpoint {
        method: Method::DELETE,
        path: "/admin/v1/concerts/{concertId}/sessions/{userId}",
        handler: |r| r.to(sessions::end),
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
        r.wrap(actix_web::middleware::from_fn(move |req, next| route_guard(e, req, next)))
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

/// The route's own guard, for the endpoint `e`: refuses a caller below the route's role (403,
/// logged with the token's name and counted), and records a change that succeeded in the audit
/// trail ([`audit`]) before the answer goes out, so an answered change is a recorded one
/// (unless recording failed, which is logged and counted: the change is made either way).
async fn route_guard(
    e: &'static Endpoint,
    req: ServiceRequest,
    next: Next<BoxBody>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let admin = req.app_data::<web::Data<Admin>>().expect("admin state is registered").clone();
    let Some(caller) = req.extensions().get::<access::Caller>().cloned() else {
        return Err(ApiError::Unauthorized("the admin token is missing or wrong".into()).into());
    };
    let need = access::required_role(&e.method, e.path);
    if caller.role < need {
        admin.metrics.admin_refused.with_label_values(&["role"]).inc();
        tracing::warn!(token = %caller.name, role = caller.role.as_str(), method = %e.method, route = e.path,
            "admin call refused: the token's role is below the route's");
        return Err(ApiError::Forbidden(format!(
            "{} {} needs the {} role; the token {} is {}",
            e.method,
            e.path,
            need.as_str(),
            caller.name,
            caller.role.as_str()
        ))
        .into());
    }
    if !access::changes(&e.method) {
        return next.call(req).await;
    }
    req.extensions_mut().insert(crate::problem::KeptBody::default());
    let res = next.call(req).await?;
    if res.status().is_success() {
        audit::record(&admin, e, &caller, res.request(), res.status().as_u16()).await;
    }
    Ok(res)
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
    /// What this instance cannot do now while it does the rest, in name order (docs/reference-metrics.md,
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

/// A webhook endpoint's queue and standing as the admin API shows them (docs/howto-events.md).
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

async fn get_concert(admin: web::Data<Admin>, id: web::Path<ConcertId>) -> Result<HttpResponse, ApiError> {
    let c = existing(&admin, &id).await?;
    let etag = c.etag();
    Ok(HttpResponse::Ok().insert_header((actix_web::http::header::ETAG, etag)).json(view(&admin.store, c).await?))
}

#[cfg(test)]
mod tests {
    use super::access::{changes, required_role};
    use crate::config::AdminRole;
    use actix_web::http::Method;

    #[test]
    fn every_admin_route_needs_the_role_the_contract_gives_it() {
        use AdminRole::*;
        let mut seen = Vec::new();
        for e in super::ROUTES.iter().filter(|e| super::guarded(e.path)) {
            seen.push((e.method.as_str(), e.path, required_role(&e.method, e.path)));
        }
        let want = [
            ("GET", "/admin/v1/concerts", Viewer),
            ("PUT", "/admin/v1/concerts/{concertId}", Operator),
            ("PATCH", "/admin/v1/concerts/{concertId}", Operator),
            ("GET", "/admin/v1/concerts/{concertId}", Viewer),
            ("GET", "/admin/v1/concerts/{concertId}/queue", Viewer),
            ("GET", "/admin/v1/concerts/{concertId}/queue/{userId}", Viewer),
            ("DELETE", "/admin/v1/concerts/{concertId}/queue/{userId}", Operator),
            ("POST", "/admin/v1/concerts/{concertId}/admit", Operator),
            ("POST", "/admin/v1/concerts/{concertId}/lanes/{lane}/codes", Admin),
            ("GET", "/admin/v1/concerts/{concertId}/sessions", Viewer),
            ("POST", "/admin/v1/concerts/{concertId}/sessions/revoke", Admin),
            ("DELETE", "/admin/v1/concerts/{concertId}/sessions/{userId}", Operator),
            ("GET", "/admin/v1/concerts/{concertId}/report", Viewer),
            ("GET", "/admin/v1/concerts/{concertId}/audit", Viewer),
            ("GET", "/admin/v1/concerts/{concertId}/webhooks/deliveries", Viewer),
            ("POST", "/admin/v1/concerts/{concertId}/webhooks/{webhookId}/secret", Admin),
            ("POST", "/admin/v1/concerts/{concertId}/webhooks/{webhookId}/resume", Admin),
        ];
        seen.sort();
        let mut want = want.to_vec();
        want.sort();
        assert_eq!(seen, want, "a new admin route needs its role stated here");
        assert_eq!(required_role(&Method::PATCH, "/admin/v1/anything/new"), Admin, "closed unless named");
        assert!(!changes(&Method::GET) && !changes(&Method::HEAD) && changes(&Method::PUT) && changes(&Method::DELETE));
    }

    #[test]
    fn changing_routes_all_name_a_concert_so_each_change_has_an_audit_list() {
        for e in super::ROUTES.iter().filter(|e| changes(&e.method)) {
            assert!(e.path.starts_with("/admin/v1/concerts/{concertId}"), "{} {} has no concert", e.method, e.path);
        }
    }
}
