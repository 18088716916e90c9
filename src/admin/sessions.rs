//! The operators' side of the gate, on the admin listener: a concert's live sessions, ending one,
//! and revoking every session and unexchanged admission token at once (docs/explain-design.md, "The gate").

use actix_web::{web, HttpResponse};
use serde::Serialize;

use super::audit;
use crate::admin::state::Admin;
use crate::ids::{ConcertId, UserId};
use crate::problem::ApiError;
use crate::routes::{Page, MAX_OFFSET};

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SessionView {
    user_id: UserId,
    started_at: String,
    last_seen_at: String,
    expires_at: String,
}

/// `GET /admin/v1/concerts/{concertId}/sessions?offset&limit` — live sessions, oldest first.
pub(super) async fn list(
    admin: web::Data<Admin>,
    concert: web::Path<ConcertId>,
    q: web::Query<Page>,
) -> Result<HttpResponse, ApiError> {
    let q = q.checked(MAX_OFFSET)?;
    let concert = concert.into_inner();
    let c =
        admin.store.get_concert(&concert).await?.ok_or_else(|| ApiError::NotFound(format!("no concert {concert}")))?;
    let idle_ms = i64::from(c.settings.session_idle_seconds) * 1000;
    let (total, page) = admin.store.sessions(&concert, q.offset as usize, q.limit as usize).await?;
    let sessions: Vec<SessionView> = page
        .into_iter()
        .map(|s| SessionView {
            started_at: crate::clock::rfc3339(s.started_ms),
            last_seen_at: crate::clock::rfc3339(s.last_seen_ms),
            expires_at: crate::clock::rfc3339((s.last_seen_ms + idle_ms).min(s.max_at_ms)),
            user_id: s.user,
        })
        .collect();
    Ok(HttpResponse::Ok().json(serde_json::json!({ "total": total, "offset": q.offset, "sessions": sessions })))
}

/// `DELETE /admin/v1/concerts/{concertId}/sessions/{userId}` — ends one fan's session: 204, or
/// 404 when the fan has none.
pub(super) async fn end(
    admin: web::Data<Admin>,
    path: web::Path<(ConcertId, UserId)>,
) -> Result<HttpResponse, ApiError> {
    let (concert, user) = path.into_inner();
    if !admin.store.end_session(&concert, &user).await? {
        return Err(ApiError::NotFound(format!("{user} has no live session in concert {concert}")));
    }
    admin.metrics.gate_sessions_ended.with_label_values(&["operator"]).inc();
    tracing::info!(concert = %concert, user = %user, "gate session ended by an operator");
    Ok(HttpResponse::NoContent().finish())
}

/// `POST /admin/v1/concerts/{concertId}/sessions/revoke` — the emergency stop.
pub(super) async fn revoke(
    admin: web::Data<Admin>,
    req: actix_web::HttpRequest,
    concert: web::Path<ConcertId>,
) -> Result<HttpResponse, ApiError> {
    let concert = concert.into_inner();
    if admin.store.get_concert(&concert).await?.is_none() {
        return Err(ApiError::NotFound(format!("no concert {concert}")));
    }
    let (sessions, tokens) = admin.store.revoke_sessions(&concert).await?;
    admin.metrics.gate_sessions_ended.with_label_values(&["revoked"]).inc_by(sessions);
    tracing::warn!(concert = %concert, sessions, tokens, "every gate session and unexchanged admission token revoked");
    audit::note_result(&req, serde_json::json!({ "sessionsEnded": sessions, "tokensRevoked": tokens }));
    Ok(HttpResponse::Ok().json(serde_json::json!({ "sessionsEnded": sessions, "tokensRevoked": tokens })))
}
