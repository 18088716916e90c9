//! `GET /v1/concerts/{concertId}/queue/{userId}/events`: the fan's status as Server-Sent Events,
//! pushed when it changes.
//!
//! Browsers' `EventSource` cannot set headers, so the entry token may come as `?token=` as well
//! as in `Authorization`. Streams are bounded (`QUEUEGATE_MAX_EVENT_STREAMS`): past the bound a
//! fan gets 503 with Retry-After and falls back to polling. Each stream reads the fan's standing
//! once a second (one O(log n) script call), sends it when it differs from the last one sent,
//! and a comment line every 15 s so proxies keep the connection open. A stream ends when the
//! status can no longer change (expired, removed, completed), at shutdown, or after
//! [`MAX_STREAM_LIFETIME`] with a `reconnect` event. One fan holds at most
//! [`MAX_STREAMS_PER_FAN`] streams (429 beyond).

use std::sync::Arc;
use std::time::Duration;

use actix_web::http::header;
use actix_web::web::Bytes;
use actix_web::{web, HttpRequest, HttpResponse};
use futures_util::stream;
use serde::Deserialize;
use tokio::sync::OwnedSemaphorePermit;

use super::Gateway;
use crate::identity::bearer;
use crate::ids::{ConcertId, UserId};
use crate::problem::ApiError;

const EVERY: Duration = Duration::from_secs(1);
const HEARTBEAT_TICKS: u32 = 15;

/// Streams one fan may hold open at once (two tabs, or a tab and a phone); a third is 429, so one
/// entry token cannot take every stream of the process.
pub const MAX_STREAMS_PER_FAN: u8 = 2;

/// After this long a stream ends with a `reconnect` event and a jittered `retry:` delay: the
/// fan's browser reconnects (possibly to another gateway), so no connection is held forever
/// and long-lived streams rebalance across gateways.
pub const MAX_STREAM_LIFETIME: Duration = Duration::from_secs(30 * 60);

/// One fan's claim on one of its [`MAX_STREAMS_PER_FAN`] streams; released when dropped.
struct FanStreamSlot {
    gw: web::Data<Gateway>,
    concert: ConcertId,
    user: UserId,
}

impl FanStreamSlot {
    fn take(gw: &web::Data<Gateway>, concert: &ConcertId, user: &UserId) -> Option<Self> {
        gw.fan_streams.take(concert, user, MAX_STREAMS_PER_FAN).then(|| FanStreamSlot {
            gw: gw.clone(),
            concert: concert.clone(),
            user: user.clone(),
        })
    }
}

impl Drop for FanStreamSlot {
    fn drop(&mut self) {
        self.gw.fan_streams.give_back(&self.concert, &self.user);
    }
}

#[derive(Deserialize)]
pub(super) struct TokenQuery {
    token: Option<String>,
}

struct StreamState {
    gw: web::Data<Gateway>,
    concert: ConcertId,
    user: UserId,
    last: Option<String>,
    ticks: u32,
    done: bool,
    ends_at: tokio::time::Instant,
    _slot: FanStreamSlot,
    _permit: OwnedSemaphorePermit,
}

pub(super) async fn events(
    gw: web::Data<Gateway>,
    req: HttpRequest,
    path: web::Path<(ConcertId, UserId)>,
    query: web::Query<TokenQuery>,
) -> Result<HttpResponse, ApiError> {
    let (concert, user) = path.into_inner();
    let token = bearer(&req).map(str::to_owned).or_else(|| query.into_inner().token);
    match token {
        Some(t) if gw.tokens.verify(&concert, &user, t.as_str(), crate::clock::now_ms()) => {}
        _ => {
            return Err(ApiError::Unauthorized(
                "a valid entry token is required (Authorization: Bearer <token>, or ?token=)".into(),
            ))
        }
    }
    gw.limits.status_of(&concert, &user)?;
    let slot = FanStreamSlot::take(&gw, &concert, &user).ok_or(ApiError::RateLimited { retry_after_secs: 5 })?;
    let permit = Arc::clone(&gw.streams)
        .try_acquire_owned()
        .map_err(|_| ApiError::unavailable("too many open status streams; poll the status instead"))?;
    let ends_at = tokio::time::Instant::now() + MAX_STREAM_LIFETIME;
    let state = StreamState {
        gw: gw.clone(),
        concert,
        user,
        last: None,
        ticks: 0,
        done: false,
        ends_at,
        _slot: slot,
        _permit: permit,
    };
    let body = stream::unfold(state, |mut st| async move {
        if st.done {
            return None;
        }
        loop {
            if st.ticks > 0 {
                tokio::select! {
                    _ = st.gw.stop.cancelled() => return None,
                    _ = tokio::time::sleep_until(st.ends_at) => {
                        st.done = true;
                        // 5-15 s, so the fans of one gateway do not all come back in one second.
                        let retry_ms = 5_000 + u64::from(uuid::Uuid::new_v4().as_bytes()[0]) * 10_000 / 255;
                        let frame = format!("retry: {retry_ms}\nevent: reconnect\ndata: {{}}\n\n");
                        return Some((Ok(Bytes::from(frame)), st));
                    }
                    _ = tokio::time::sleep(EVERY) => {}
                }
            }
            st.ticks += 1;
            let frame = match super::status::read_status(&st.gw, &st.concert, &st.user).await {
                Ok(status) => {
                    let json = serde_json::to_string(&status).expect("a status serialises");
                    if st.last.as_deref() != Some(json.as_str()) {
                        st.done = matches!(status.status, "expired" | "removed" | "completed");
                        let frame = format!("event: status\ndata: {json}\n\n");
                        st.last = Some(json);
                        Some(frame)
                    } else {
                        None
                    }
                }
                // Redis trouble: say nothing new, keep the connection; the next tick retries.
                Err(_) => None,
            };
            if let Some(f) = frame {
                return Some((Ok::<_, actix_web::Error>(Bytes::from(f)), st));
            }
            if st.ticks % HEARTBEAT_TICKS == 0 {
                return Some((Ok(Bytes::from_static(b": keep-alive\n\n")), st));
            }
        }
    });
    Ok(HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(body))
}
