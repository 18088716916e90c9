//! What a fan reads: its status (with the admission token once admitted), the public key that
//! verifies admission tokens, and the booking site's "done, free the slot" call.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};

use super::views::{Fact, Snapshot};
use crate::admission::AdmissionKeys;
use crate::fan_status::{poll_record_every, FanStatus};
use crate::gateway::state::Gateway;
use crate::identity::bearer;
use crate::ids::{ConcertId, Lane, UserId};
use crate::problem::ApiError;
use crate::store::view::Place;
use crate::store::{Outcome, Standing};

/// `?lane=`: one of a concert's lanes (`general` when absent).
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LaneQuery {
    pub lane: Option<Lane>,
}

// The status from a gateway's view, beside the handlers that read the view (src/fan_status.rs has the rest).
impl FanStatus {
    /// The status from a gateway's view of the queue; None when the view cannot tell (the fan
    /// has left but how is not known yet, or the view is older than what is known of the fan).
    pub fn from_view(
        snap: &Snapshot,
        fact: Fact,
        concert: &str,
        user: &str,
        keys: Option<&AdmissionKeys>,
    ) -> Option<Self> {
        let lane = match fact {
            Fact::Held(l, _) | Fact::Seq(l, _) => Some(usize::from(l)),
            _ => None,
        };
        let view = |l: usize| snap.views.get(l);
        let standing = match fact {
            Fact::NotYet => Standing::Unknown,
            Fact::Held(_, opens_at_ms) => Standing::Held { opens_at_ms, joined_at_ms: 0 },
            Fact::Seq(l, seq) => {
                let v = view(usize::from(l))?;
                // A queue whose parts do not add up (edited by hand) is read fan by fan instead.
                if !v.consistent() {
                    return None;
                }
                match v.place(seq) {
                    Place::Waiting(position) => Standing::Waiting {
                        position,
                        queue_length: v.queue_length,
                        joined_at_ms: 0,
                        observed_rate: v.observed_rate,
                        seq,
                    },
                    Place::Left | Place::Unseen => return None,
                }
            }
            Fact::Left(outcome) => Standing::Left { queue_length: 0, joined_at_ms: 0, outcome },
        };
        let status = FanStatus::new(standing, snap.now_ms(), concert, user, keys);
        Some(match lane.and_then(|l| snap.lanes.get(l)) {
            Some(name) => status.in_lane(name),
            None => status,
        })
    }
}

/// A read by the fan itself: its entry token in `Authorization` (401 otherwise), then one of its
/// status reads per second (429 past them) — counted after the token check, so nobody but the
/// fan can spend the fan's budget. Status polls and stream tickets go through here.
pub(super) fn fan_read(gw: &Gateway, req: &HttpRequest, concert: &ConcertId, user: &UserId) -> Result<(), ApiError> {
    if !bearer(req).is_some_and(|t| gw.tokens.verify(concert, user, t, crate::clock::now_ms())) {
        return Err(ApiError::Unauthorized("a valid entry token is required (Authorization: Bearer <token>)".into()));
    }
    gw.limits.status_of(concert, user)
}

/// `GET /v1/concerts/{concertId}/queue/{userId}` — the fan's status, with its entry token.
pub(super) async fn status(
    gw: web::Data<Gateway>,
    req: HttpRequest,
    path: web::Path<(ConcertId, UserId)>,
) -> Result<HttpResponse, ApiError> {
    let (concert_id, user_id) = path.into_inner();
    fan_read(&gw, &req, &concert_id, &user_id)?;
    let body = read_status(&gw, &concert_id, &user_id).await?;
    let json = serde_json::to_vec(&body).expect("a status serialises");
    let etag = etag_of(&json);
    // A body with an admission token is never stored; the others may be kept and revalidated.
    let cache = if body.admission_token.is_some() { "no-store" } else { "private, no-cache" };
    if if_none_match(&req, &etag) {
        return Ok(HttpResponse::NotModified()
            .insert_header((header::CACHE_CONTROL, cache))
            .insert_header((header::ETAG, etag))
            .finish());
    }
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, cache))
        .insert_header((header::ETAG, etag))
        .content_type("application/json")
        .body(json))
}

/// A strong ETag of a status body: the first 64 bits of its SHA-256, so every gateway gives the
/// same status the same tag.
fn etag_of(body: &[u8]) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(body);
    let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    format!("\"{hex}\"")
}

/// Whether `If-None-Match` names `etag` (or is `*`).
fn if_none_match(req: &HttpRequest, etag: &str) -> bool {
    req.headers()
        .get_all(header::IF_NONE_MATCH)
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.split(',').map(str::trim).any(|t| t == "*" || t == etag || t.strip_prefix("W/") == Some(etag)))
}

/// A fan's status as the fan sees it (with the admission token). Answered from the gateway's
/// view of the concert while it is fresh and knows the fan (no Redis call; the poll is recorded
/// with the view's next refresh); otherwise read from Redis, recording the poll where the
/// concert judges abandonment, and the fan is then known to the view.
pub(super) async fn read_status(gw: &Gateway, concert_id: &ConcertId, user_id: &UserId) -> Result<FanStatus, ApiError> {
    // Sold out as this gateway knows it now (a view's snapshot may be a refresh older).
    let sold_out = gw.cache.sold_out(concert_id);
    if let Some((snap, fact)) = gw.views.lookup(concert_id, user_id) {
        if let Some(status) = FanStatus::from_view(&snap, fact, concert_id, user_id, Some(&gw.keys)) {
            gw.metrics.status_reads.with_label_values(&["view"]).inc();
            return Ok(status.or_sold_out(sold_out.as_deref()));
        }
    }
    // Bounded reads in flight: when Redis slows down, fans are turned away early (503 with a
    // jittered Retry-After) instead of piling up requests and connections behind it.
    let _reading = gw
        .status_reads
        .try_acquire()
        .map_err(|_| ApiError::shed("too many status reads waiting for the queue store; retry shortly"))?;
    let started = std::time::Instant::now();
    // Polls matter only where abandonment is on; recorded a few times per abandonment window.
    let settings = gw.cache.settings(concert_id);
    let abandon_ms = settings.as_ref().map_or(0, |s| u64::from(s.abandon_after_seconds) * 1000);
    let lanes = settings.as_ref().map_or_else(Vec::new, |s| s.lane_names());
    let (standing, lane, now_ms) =
        gw.store.standing(concert_id, &lanes, user_id, poll_record_every(abandon_ms)).await?;
    gw.metrics.redis_duration.with_label_values(&["status"]).observe(started.elapsed().as_secs_f64());
    gw.metrics.status_reads.with_label_values(&["redis"]).inc();
    let index = settings.as_ref().and_then(|s| s.lane_index(&lane));
    let fact = match (&standing, index) {
        (Standing::Unknown, _) => Some(Fact::NotYet),
        (Standing::Held { opens_at_ms, .. }, Some(l)) => Some(Fact::Held(l, *opens_at_ms)),
        (Standing::Waiting { seq, .. }, Some(l)) => Some(Fact::Seq(l, *seq)),
        (Standing::Left { outcome, .. }, _) => Some(Fact::Left(*outcome)),
        // A lane the concert no longer lists: read directly every time.
        (_, None) => None,
    };
    if let Some(fact) = fact {
        gw.views.learn(concert_id, user_id, fact);
    }
    Ok(FanStatus::new(standing, now_ms, concert_id, user_id, Some(&gw.keys))
        .in_lane(&lane)
        .or_sold_out(sold_out.as_deref()))
}

/// What the booking site sends to `complete`.
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct CompleteBody {
    #[serde(default)]
    admission_token: Option<String>,
    /// The fan, as the gate named it to the booking site (`X-Queuegate-User`).
    #[serde(default)]
    user_id: Option<UserId>,
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
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let concert_id = concert_id.into_inner();
    // The credential before the body: a stranger's body is never read.
    if !gw.site.accepts(bearer(&req)) {
        return Err(ApiError::Unauthorized(
            "the booking site's credential is required (Authorization: Bearer <QUEUEGATE_SITE_TOKEN>)".into(),
        ));
    }
    let body: CompleteBody = crate::problem::read_json(&req, payload, None).await?;
    let user = match (body.admission_token, body.user_id) {
        (Some(token), None) => {
            let claims = gw
                .keys
                .verify(&token, crate::clock::now_ms())
                .map_err(|e| ApiError::BadRequest(format!("admissionToken: {e}")))?;
            if claims.concert != concert_id.as_str() {
                return Err(ApiError::BadRequest(format!("admissionToken: it is for concert {}", claims.concert)));
            }
            // A token we signed carries a subject we wrote; anything else is not ours to trust.
            UserId::parse(claims.sub).map_err(|e| ApiError::BadRequest(format!("admissionToken: {e}")))?
        }
        // The site's credential vouches for the caller; the gate told the site who the fan is.
        (None, Some(user)) => user,
        _ => return Err(ApiError::BadRequest("send exactly one of admissionToken and userId".into())),
    };
    let Some(session_ended) = gw.store.complete(&concert_id, &user).await? else {
        return Err(ApiError::NotFound(format!("{user} was not admitted to concert {concert_id}")));
    };
    if session_ended {
        gw.metrics.gate_sessions_ended.with_label_values(&["completed"]).inc();
    }
    // This gateway's view knows at once; the others at their next refresh.
    gw.views.learn(&concert_id, &user, Fact::Left(Outcome::Completed { at_ms: crate::clock::now_ms() }));
    tracing::info!(concert = %concert_id, user = %user, "admission completed by the booking site");
    Ok(HttpResponse::NoContent().finish())
}

/// `GET /v1/concerts/{concertId}/fairness` — a scheduled concert's commitment to its shuffle
/// seed (from scheduling on), then, after the cut, the seed itself, the pre-queue's list hash and
/// the algorithm, so anyone can check the order (`queuegate verify-shuffle`). 404 for a concert
/// without `opensAt`. Each lane is shuffled on its own, with its own seed: `?lane=` names it
/// (`general` by default).
pub(super) async fn fairness(
    gw: web::Data<Gateway>,
    concert: web::Path<ConcertId>,
    query: web::Query<LaneQuery>,
) -> Result<HttpResponse, ApiError> {
    let id = concert.into_inner();
    let lane = query.into_inner().lane.unwrap_or_else(Lane::general);
    let settings = gw.cache.settings(&id).ok_or_else(|| ApiError::NotFound(format!("no concert {id}")))?;
    if settings.lane(&lane).is_none() {
        return Err(ApiError::NotFound(format!("concert {id} has no lane {lane}")));
    }
    let fair = gw.published.fair_state(&gw.store, &id, &lane).await?;
    let Some(commitment) = fair.commitment else {
        return Err(ApiError::NotFound(format!("concert {id} has no scheduled opening (opensAt)")));
    };
    let mut body = serde_json::json!({ "concertId": id.as_str(), "lane": lane.as_str(), "commitment": commitment });
    if let Some(at) = settings.opens_at {
        body["opensAt"] = crate::clock::rfc3339(at).into();
    }
    // The seed is revealed only once the cut is done: before, it would let anyone predict it.
    if let (Some(at), Some(seed), Some(list_hash)) = (fair.shuffled_at_ms, fair.seed, fair.list_hash) {
        body["shuffledAt"] = crate::clock::rfc3339(at).into();
        body["seed"] = seed.into();
        body["listHash"] = list_hash.into();
        body["prequeued"] = fair.prequeued.unwrap_or(0).into();
        body["late"] = fair.late.into();
        body["algorithm"] = crate::fairness::ALGORITHM.into();
    }
    Ok(HttpResponse::Ok().insert_header((header::CACHE_CONTROL, "no-cache")).json(body))
}

/// `GET /.well-known/jwks.json` — the public key that verifies admission tokens.
pub(super) async fn jwks(gw: web::Data<Gateway>) -> HttpResponse {
    HttpResponse::Ok().insert_header((header::CACHE_CONTROL, "public, max-age=300")).json(gw.keys.jwks())
}
