//! `GET /v1/concerts/{concertId}/queue/{userId}/events`: the fan's status as Server-Sent Events,
//! pushed when it changes.
//!
//! Browsers' `EventSource` cannot set headers, so instead of the entry token in `Authorization`
//! a stream may be opened with `?ticket=`: a stream ticket from [`ticket`], good for this fan's
//! stream only and for 60 s. The entry token itself is never taken from the URL, where proxy and
//! CDN logs would keep it for its whole day. Streams are bounded (`QUEUEGATE_MAX_EVENT_STREAMS`,
//! by default the fewer of what the open-file limit and `QUEUEGATE_MAX_STREAM_MEMORY_MB` allow:
//! [`crate::startup::ConnectionBudget`]): past the bound a fan gets 503 with Retry-After and
//! falls back to polling. A stream costs Redis one read when it opens; after that it follows the gateway's
//! view of the concert ([`super::views`]), refreshed for all its watchers at once, and sends
//! the status whenever it differs from the last one sent (position, state, the rounded ETA; a
//! position at most once per [`POSITION_GAP`]), a comment line after 15 s of silence so proxies
//! keep the connection open. A stream ends with
//! its last event: admitted (carrying the admission token), expired, removed, completed or
//! soldout (the concert's tickets are gone; its page polls for a reopening); at
//! shutdown and after [`MAX_STREAM_LIFETIME`] it ends with a `reconnect` event whose `retry:`
//! delay is jittered, so the watchers of a gateway that stops do not all come back in the same
//! second. One fan holds at most [`MAX_STREAMS_PER_FAN`] streams (429 beyond).

use std::sync::Arc;
use std::time::Duration;

use actix_web::http::header;
use actix_web::web::Bytes;
use actix_web::{web, HttpRequest, HttpResponse};
use futures_util::stream;
use serde::{Deserialize, Serialize};
use tokio::sync::OwnedSemaphorePermit;

use super::views::Watching;
use crate::fan_status::FanStatus;
use crate::gateway::state::Gateway;
use crate::identity::bearer;
use crate::ids::{ConcertId, UserId};
use crate::problem::ApiError;

/// A comment line after this long without a frame keeps proxies from closing the connection.
const HEARTBEAT: Duration = Duration::from_secs(15);

/// A waiting fan's position (and ETA) is pushed at most this often; a change of state
/// (admitted, removed, expired) goes out at once. With a concert admitting hundreds per second
/// every watcher's position changes at every view refresh; once a second is what a fan can read,
/// and it halves what the gateway writes.
const POSITION_GAP: Duration = Duration::from_secs(1);

/// Without a view (the views are full), the stream reads the status this often.
const NO_VIEW_EVERY: Duration = Duration::from_secs(1);

/// Streams one fan may hold open at once (two tabs, or a tab and a phone); a third is 429, so one
/// entry token cannot take every stream of the process.
pub const MAX_STREAMS_PER_FAN: u8 = 2;

/// After this long a stream ends with a `reconnect` event and a jittered `retry:` delay: the
/// fan's browser reconnects (possibly to another gateway), so no connection is held forever
/// and long-lived streams rebalance across gateways.
pub const MAX_STREAM_LIFETIME: Duration = Duration::from_secs(30 * 60);

/// One fan's claim on one of its [`MAX_STREAMS_PER_FAN`] streams; released when dropped. The
/// stream's state reaches the gateway, the concert and the fan through it (one copy of each per
/// stream).
struct FanStreamSlot {
    gw: web::Data<Gateway>,
    concert: ConcertId,
    user: UserId,
}

impl FanStreamSlot {
    fn take(gw: &web::Data<Gateway>, concert: &ConcertId, user: &UserId) -> Option<Self> {
        gw.fan_streams.take(concert, user, MAX_STREAMS_PER_FAN).then(|| {
            gw.metrics.open_streams.inc();
            FanStreamSlot { gw: gw.clone(), concert: concert.clone(), user: user.clone() }
        })
    }
}

impl Drop for FanStreamSlot {
    fn drop(&mut self) {
        self.gw.metrics.open_streams.dec();
        self.gw.fan_streams.give_back(&self.concert, &self.user);
    }
}

#[derive(Deserialize)]
pub(super) struct TicketQuery {
    ticket: Option<String>,
    /// The old way (the entry token in the URL): refused with a detail that says what to do.
    token: Option<String>,
}

/// What one open stream holds between frames, kept small: thousands of these live in a gateway
/// (docs/explain-costs.md, "Status streams").
struct StreamState {
    /// The gateway, the concert and the fan, and the fan's claim on a stream.
    slot: FanStreamSlot,
    /// The status read when the stream opened, sent first (boxed: gone after the first frame).
    first: Option<Box<FanStatus>>,
    /// The fan's place in the concert's view; None when the views are full (then the stream
    /// reads the status every second, as a poll would).
    watching: Option<Watching>,
    /// A hash of the last status sent (its JSON), to send only changes.
    last: Option<u64>,
    /// The state (`status`) of the last status sent, and when it went.
    last_state: &'static str,
    last_status_at: tokio::time::Instant,
    /// A position change is waiting for [`POSITION_GAP`] to pass.
    deferred: bool,
    last_frame: tokio::time::Instant,
    done: bool,
    ends_at: tokio::time::Instant,
    _permit: OwnedSemaphorePermit,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Ticket {
    ticket: String,
    expires_in_seconds: i64,
}

/// `POST /v1/concerts/{concertId}/queue/{userId}/events/ticket` with the entry token in
/// `Authorization`: a stream ticket (60 s) for `?ticket=` on the stream's URL. Costs no Redis
/// call; counted against the fan's status-read budget like a poll.
pub(super) async fn ticket(
    gw: web::Data<Gateway>,
    req: HttpRequest,
    path: web::Path<(ConcertId, UserId)>,
) -> Result<HttpResponse, ApiError> {
    let (concert, user) = path.into_inner();
    super::status::fan_read(&gw, &req, &concert, &user)?;
    let body = Ticket {
        ticket: gw.tokens.stream_ticket(&concert, &user, crate::clock::now_ms()),
        expires_in_seconds: crate::token::STREAM_TICKET_TTL_SECS,
    };
    Ok(HttpResponse::Ok().insert_header((header::CACHE_CONTROL, "no-store")).json(body))
}

/// A `reconnect` event whose `retry:` delay is `min_ms` plus up to `spread_ms`, at random.
fn reconnect_frame(min_ms: u64, spread_ms: u64) -> Bytes {
    let b = uuid::Uuid::new_v4().into_bytes();
    let retry_ms = min_ms + u64::from(u16::from_le_bytes([b[0], b[1]])) * spread_ms / u64::from(u16::MAX);
    Bytes::from(format!("retry: {retry_ms}\nevent: reconnect\ndata: {{}}\n\n"))
}

pub(super) async fn events(
    gw: web::Data<Gateway>,
    req: HttpRequest,
    path: web::Path<(ConcertId, UserId)>,
    query: web::Query<TicketQuery>,
) -> Result<HttpResponse, ApiError> {
    let (concert, user) = path.into_inner();
    let now_ms = crate::clock::now_ms();
    let query = query.into_inner();
    let allowed = match (bearer(&req), &query.ticket) {
        (Some(token), _) => gw.tokens.verify(&concert, &user, token, now_ms),
        (None, Some(ticket)) => gw.tokens.verify_stream_ticket(&concert, &user, ticket, now_ms),
        (None, None) => false,
    };
    if !allowed {
        let detail = if query.token.is_some() {
            "the entry token is not taken in a URL; open the stream with Authorization: Bearer <token>, \
             or with ?ticket= from POST …/events/ticket"
        } else {
            "a valid entry token (Authorization: Bearer <token>) or stream ticket (?ticket=, 60 s) is required"
        };
        return Err(ApiError::Unauthorized(detail.into()));
    }
    gw.limits.status_of(&concert, &user)?;
    let slot = FanStreamSlot::take(&gw, &concert, &user).ok_or(ApiError::RateLimited { retry_after_secs: 5 })?;
    let permit = Arc::clone(&gw.streams)
        .try_acquire_owned()
        .map_err(|_| ApiError::unavailable("too many open status streams; poll the status instead"))?;
    // The first status, from the view or from Redis (which makes the fan known to the view).
    let first = super::status::read_status(&gw, &concert, &user).await?;
    let watching = gw.views.watch(&concert, &user);
    let now = tokio::time::Instant::now();
    let state = StreamState {
        slot,
        first: Some(Box::new(first)),
        watching,
        last: None,
        last_state: "",
        last_status_at: now,
        deferred: false,
        last_frame: now,
        done: false,
        ends_at: now + MAX_STREAM_LIFETIME,
        _permit: permit,
    };
    let body = stream::unfold(state, |mut st| async move {
        if st.done {
            return None;
        }
        loop {
            let status = match st.first.take() {
                Some(first) => Some(*first),
                None => {
                    // One timer for the next of: the end of the stream's lifetime, the heartbeat,
                    // a held-back position change (a timer costs every open stream its memory).
                    let heartbeat_at = st.last_frame + HEARTBEAT;
                    let mut wake_at = st.ends_at.min(heartbeat_at);
                    if st.deferred {
                        wake_at = wake_at.min(st.last_status_at + POSITION_GAP);
                    }
                    tokio::select! {
                        _ = st.slot.gw.stop.cancelled() => {
                            // Shutting down: back in 1-10 s, to another gateway.
                            st.done = true;
                            st.slot.gw.metrics.stream_events.with_label_values(&["reconnect"]).inc();
                            return Some((Ok(reconnect_frame(1_000, 9_000)), st));
                        }
                        _ = tokio::time::sleep_until(wake_at) => {
                            let now = tokio::time::Instant::now();
                            if now >= st.ends_at {
                                // 5-15 s, so the fans of one gateway do not all come back in one second.
                                st.done = true;
                                st.slot.gw.metrics.stream_events.with_label_values(&["reconnect"]).inc();
                                return Some((Ok(reconnect_frame(5_000, 10_000)), st));
                            }
                            if now >= heartbeat_at {
                                st.last_frame = now;
                                st.slot.gw.metrics.stream_events.with_label_values(&["heartbeat"]).inc();
                                return Some((Ok(Bytes::from_static(b": keep-alive\n\n")), st));
                            }
                            // A position change held back by POSITION_GAP goes out now.
                            st.deferred = false;
                        }
                        alive = next_change(&mut st.watching) => {
                            if !alive {
                                st.done = true;
                                return Some((Ok(reconnect_frame(1_000, 9_000)), st));
                            }
                        }
                    }
                    current(&st).await
                }
            };
            // Nothing known for now (Redis trouble, or the view is catching up): keep the
            // connection, say nothing.
            let Some(status) = status else { continue };
            let json = serde_json::to_string(&status).expect("a status serialises");
            let hash = hash_of(&json);
            if st.last == Some(hash) {
                continue;
            }
            // Only the position (or ETA) moved, and the last one went out less than
            // POSITION_GAP ago: held back until then (a newer one may replace it meanwhile).
            let now = tokio::time::Instant::now();
            if status.status == "waiting" && st.last_state == "waiting" && now < st.last_status_at + POSITION_GAP {
                st.deferred = true;
                continue;
            }
            // Sold out ends the stream too: the fan's page polls now and then for a reopening.
            st.done = status.is_final() || matches!(status.status, "admitted" | "soldout");
            st.last_frame = now;
            st.last_status_at = now;
            st.last_state = status.status;
            st.deferred = false;
            st.slot.gw.metrics.stream_events.with_label_values(&["status"]).inc();
            let frame = format!("event: status\ndata: {json}\n\n");
            st.last = Some(hash);
            return Some((Ok::<_, actix_web::Error>(Bytes::from(frame)), st));
        }
    });
    Ok(HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(body))
}

/// Waits for the next view snapshot (or a second, without a view); false when the view is gone.
async fn next_change(watching: &mut Option<Watching>) -> bool {
    match watching {
        Some(w) => w.rx.changed().await.is_ok(),
        None => {
            tokio::time::sleep(NO_VIEW_EVERY).await;
            true
        }
    }
}

/// The fan's status now: from the view's latest snapshot, or read like a poll when the view
/// cannot tell.
async fn current(st: &StreamState) -> Option<FanStatus> {
    if let Some(w) = &st.watching {
        let snap = w.rx.borrow().clone();
        // Sold out as of the snapshot that woke the stream.
        let from_view = w.fact().and_then(|fact| {
            let slot = &st.slot;
            let status = FanStatus::from_view(&snap, fact, &slot.concert, &slot.user, Some(&slot.gw.keys))?;
            Some(status.or_sold_out(snap.sold_out.as_deref()))
        });
        if from_view.is_some() {
            return from_view;
        }
    }
    // Boxed: the Redis read's future is large, and a stream only rarely needs it; inline, it would
    // make every open stream that much bigger.
    Box::pin(super::status::read_status(&st.slot.gw, &st.slot.concert, &st.slot.user)).await.ok()
}

/// A hash of a status's JSON: what a stream keeps of the last status it sent.
fn hash_of(json: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    json.hash(&mut h);
    h.finish()
}
