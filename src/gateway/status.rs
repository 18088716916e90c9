//! What a fan reads: its status (with the admission token once admitted), the public key that
//! verifies admission tokens, and the booking site's "done, free the slot" call.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Serialize;

use super::Gateway;
use crate::admission::AdmissionKeys;
use crate::identity::bearer;
use crate::ids::{ConcertId, UserId};
use crate::problem::ApiError;
use crate::store::{Outcome, Standing};

/// A fan's status, as the contract defines it.
#[derive(Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct FanStatus {
    /// pending | waiting | admitted | completed | expired | removed
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub position: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue_length: Option<u64>,
    /// Position divided by the admission rate observed over the last ~30 s, rounded up;
    /// absent while nobody is being admitted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub eta_seconds: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admission_token: Option<String>,
    /// When the admission token expires (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admission_expires_at: Option<String>,
}

impl FanStatus {
    fn bare(status: &'static str) -> Self {
        FanStatus {
            status,
            position: None,
            queue_length: None,
            eta_seconds: None,
            admission_token: None,
            admission_expires_at: None,
        }
    }

    /// Builds the status from where the fan stands. `keys` re-creates the admission token
    /// (deterministic, see [`AdmissionKeys`]); None leaves it out (operators' views).
    pub fn new(standing: Standing, now_ms: i64, concert: &str, user: &str, keys: Option<&AdmissionKeys>) -> Self {
        match standing {
            Standing::Unknown => FanStatus::bare("pending"),
            Standing::Waiting { position, queue_length, observed_rate, .. } => FanStatus {
                position: Some(position),
                queue_length: Some(queue_length),
                eta_seconds: (observed_rate > 0.01).then(|| (position as f64 / observed_rate).ceil() as u64),
                ..FanStatus::bare("waiting")
            },
            Standing::Left { outcome: Outcome::Admitted { iat_ms, exp_ms }, .. } if exp_ms > now_ms => FanStatus {
                admission_token: keys.map(|k| k.issue(concert, user, iat_ms, exp_ms)),
                admission_expires_at: Some(crate::clock::rfc3339(exp_ms)),
                ..FanStatus::bare("admitted")
            },
            Standing::Left { outcome: Outcome::Admitted { .. } | Outcome::Abandoned { .. }, .. } => {
                FanStatus::bare("expired")
            }
            Standing::Left { outcome: Outcome::Removed { .. }, .. } => FanStatus::bare("removed"),
            // The booking site is done with the fan: the token is not handed out again.
            Standing::Left { outcome: Outcome::Completed { .. }, .. } => FanStatus::bare("completed"),
        }
    }
}

/// `GET /v1/concerts/{concertId}/queue/{userId}` — the fan's status, with its entry token.
pub(super) async fn status(
    gw: web::Data<Gateway>,
    req: HttpRequest,
    path: web::Path<(ConcertId, UserId)>,
) -> Result<HttpResponse, ApiError> {
    let (concert_id, user_id) = path.into_inner();
    match bearer(&req) {
        Some(t) if gw.tokens.verify(&concert_id, &user_id, t, crate::clock::now_ms()) => {}
        _ => {
            return Err(ApiError::Unauthorized(
                "a valid entry token is required (Authorization: Bearer <token>)".into(),
            ))
        }
    }
    // Counted after the token check, so nobody but the fan can spend the fan's budget.
    gw.limits.status_of(&concert_id, &user_id)?;
    let body = read_status(&gw, &concert_id, &user_id).await?;
    Ok(HttpResponse::Ok().insert_header((header::CACHE_CONTROL, "no-store")).json(body))
}

/// A fan's status as the fan sees it (with the admission token), recording the poll where the
/// concert judges abandonment.
pub(super) async fn read_status(gw: &Gateway, concert_id: &ConcertId, user_id: &UserId) -> Result<FanStatus, ApiError> {
    // Bounded reads in flight: when Redis slows down, fans are turned away early (503 with a
    // jittered Retry-After) instead of piling up requests and connections behind it.
    let _reading = gw
        .status_reads
        .try_acquire()
        .map_err(|_| ApiError::shed("too many status reads waiting for the queue store; retry shortly"))?;
    let started = std::time::Instant::now();
    // Polls matter only where abandonment is on; recorded a few times per abandonment window.
    let abandon_ms = gw.cache.settings(concert_id).map_or(0, |s| u64::from(s.abandon_after_seconds) * 1000);
    let record_every = if abandon_ms == 0 { 0 } else { (abandon_ms / 4).clamp(1, 5000) };
    let (standing, now_ms) = gw.store.standing(concert_id, user_id, record_every).await?;
    gw.metrics.redis_duration.with_label_values(&["status"]).observe(started.elapsed().as_secs_f64());
    Ok(FanStatus::new(standing, now_ms, concert_id, user_id, Some(&gw.keys)))
}

/// What the booking site sends to `complete`.
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct CompleteBody {
    admission_token: String,
}

/// `POST /v1/concerts/{concertId}/admission/complete` `{"admissionToken"}`, called by the booking
/// site with its own credential (`QUEUEGATE_SITE_TOKEN`, or the admin token): the site is done
/// with this fan, so the slot is freed for the next one (concurrency mode) and the fan's status
/// turns `completed`, no longer carrying the admission token. A fan cannot call it: it holds no
/// site credential. Idempotent; 404 when the fan was never admitted.
pub(super) async fn complete(
    gw: web::Data<Gateway>,
    req: HttpRequest,
    concert_id: web::Path<ConcertId>,
    body: web::Json<serde_json::Value>,
) -> Result<HttpResponse, ApiError> {
    let concert_id = concert_id.into_inner();
    if !gw.site.accepts(bearer(&req)) {
        return Err(ApiError::Unauthorized(
            "the booking site's credential is required (Authorization: Bearer <QUEUEGATE_SITE_TOKEN>)".into(),
        ));
    }
    let body: CompleteBody = crate::problem::parse_body(body.into_inner())?;
    let claims = gw
        .keys
        .verify(&body.admission_token, crate::clock::now_ms())
        .map_err(|e| ApiError::BadRequest(format!("admissionToken: {e}")))?;
    if claims.concert != concert_id.as_str() {
        return Err(ApiError::BadRequest(format!("admissionToken: it is for concert {}", claims.concert)));
    }
    // A token we signed carries a subject we wrote; anything else is not ours to trust.
    let user = UserId::parse(claims.sub).map_err(|e| ApiError::BadRequest(format!("admissionToken: {e}")))?;
    if !gw.store.complete(&concert_id, &user).await? {
        return Err(ApiError::NotFound(format!("{user} was not admitted to concert {concert_id}")));
    }
    tracing::info!(concert = %concert_id, user = %user, "admission completed by the booking site");
    Ok(HttpResponse::NoContent().finish())
}

/// `GET /.well-known/jwks.json` — the public key that verifies admission tokens.
pub(super) async fn jwks(gw: web::Data<Gateway>) -> HttpResponse {
    HttpResponse::Ok().insert_header((header::CACHE_CONTROL, "public, max-age=300")).json(gw.keys.jwks())
}
