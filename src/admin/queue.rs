//! The admin listener's view of a concert's queue and what operators do to it: the queue page,
//! one fan's standing, manual admission, removing a fan, and a code lane's codes.

use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};

use super::audit;
use crate::admin::concert_view::existing;
use crate::admin::state::Admin;
use crate::concerts::ConcertState;
use crate::fan_status::FanStatus;
use crate::ids::{ConcertId, Lane, RequestId, UserId};
use crate::problem::{read_json, ApiError};
use crate::routes::{Page, MAX_OFFSET, MAX_PAGE};
use crate::store::Standing;

/// `?lane` of the queue listing (beside its [`Page`]).
#[derive(Debug, Deserialize)]
pub(super) struct LaneQuery {
    /// The lane to list (`general` when absent).
    #[serde(default)]
    lane: Option<Lane>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct EntryView {
    position: u64,
    user_id: UserId,
    joined_at: String,
}

pub(super) async fn queue_page(
    admin: web::Data<Admin>,
    id: web::Path<ConcertId>,
    q: web::Query<Page>,
    lane: web::Query<LaneQuery>,
) -> Result<HttpResponse, ApiError> {
    let q = q.checked(MAX_OFFSET)?;
    let c = existing(&admin, &id).await?;
    let lane = lane.into_inner().lane.unwrap_or_else(Lane::general);
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

pub(super) async fn queue_user(
    admin: web::Data<Admin>,
    path: web::Path<(ConcertId, UserId)>,
) -> Result<HttpResponse, ApiError> {
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
pub(super) async fn admit(
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
pub(super) async fn remove(
    admin: web::Data<Admin>,
    path: web::Path<(ConcertId, UserId)>,
) -> Result<HttpResponse, ApiError> {
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
pub(super) async fn add_codes(
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
    if let Some(i) = body.codes.iter().position(|code| !crate::store::valid_code(code)) {
        return Err(ApiError::BadRequest(format!(
            "codes[{i}] must be 1 to {} visible ASCII characters",
            crate::store::MAX_CODE_CHARS
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
