//! The gate's check, on the public listener: `GET /v1/concerts/{concertId}/gate` (docs/explain-design.md, "The gate").
//!
//! The booking site's reverse proxy asks `GET /v1/concerts/{concertId}/gate` before every
//! request (nginx `auth_request`, Caddy `forward_auth`, Traefik `forwardAuth`, …) and lets the
//! request through only on a 200:
//!
//! 1. the cookie `__Host-qg_<concertId>` (any of its values) holds a live session → 200,
//!    `X-Queuegate-User`; the session's idle timer restarts. From memory: the cookie is signed
//!    ([`crate::gate::cookie`]), and this gateway knows each concert's revocation epoch and
//!    recently ended sessions ([`crate::gate::known`], learned every second); Redis is asked only
//!    when this gateway has not written the session's last-seen time for a tenth of its idle time;
//! 2. otherwise the check counts against the client's budget ([`super::limits`]: 429 when
//!    spent); a live session never does;
//! 3. the original URL carries `queuegate_token=<admission token>` (the room sent the fan back)
//!    and `queuegate_bind`, which one of this browser's nonce cookies matches
//!    ([`crate::gate::binding`]: only the browser that waited; a link opened anywhere else is
//!    refused and the token stays unspent) → the token is exchanged, once, for a session
//!    (`exchange.lua`) → 200 with `Set-Cookie` (with `?redirect=true`: a 302 to the same URL
//!    without the token, with `Set-Cookie`, for proxies that hand only refusals to the browser);
//! 4. otherwise → 401 with `X-Queuegate-Room: <QUEUEGATE_PUBLIC_URL>/c/{concertId}?return=<the
//!    original URL>` (or a 302 there with `?redirect=true`, which also gives the browser its
//!    nonce cookie and names it in `return`).

use actix_web::http::header::{self, HeaderName, HeaderValue};
use actix_web::{web, HttpRequest, HttpResponse, ResponseError};
use serde::Deserialize;

use crate::concerts::{ConcertState, QueueingMethod, SessionBinding};
use crate::gate::cookie::{self, SessionCookie};
use crate::gate::known::Verdict;
use crate::gate::{binding, browser_waited, cookies, original_url, param, room_url, without_token, TOKEN_PARAM};
use crate::gateway::state::Gateway;
use crate::ids::{ConcertId, UserId};
use crate::problem::ApiError;
use crate::store::sessions::{ExchangeRequest, Refused};

#[derive(Debug, Deserialize)]
pub(super) struct GateQuery {
    #[serde(default)]
    redirect: bool,
}

/// The answer that sends the fan to the room: 401 with `X-Queuegate-Room`, or a 302 there.
///
/// The 302 goes to the browser itself (nginx's `@queuegate_room`, Caddy, Traefik, Envoy), so it
/// also gives the browser a nonce when it has none ([`crate::gate::binding`]) and names it in `return`; the
/// 401 is read by a proxy (nginx's `auth_request`, which then asks again with `?redirect=true`)
/// and sets nothing, so one browser is never handed two nonces for one request.
fn to_room(gw: &Gateway, req: &HttpRequest, concert: &ConcertId, redirect: bool, why: Option<&str>) -> HttpResponse {
    let original = original_url(req);
    let name = binding::name(concert);
    let held = cookies(req, &name).find(|v| binding::well_formed(v)).map(str::to_owned);
    let minted = (redirect && held.is_none()).then(binding::new_nonce);
    let bind = held.as_ref().or(minted.as_ref()).map(|n| gw.gate.binds.bind(concert, n));
    let room = room_url(&gw.gate, req, concert, original.as_ref(), why, bind.as_deref());
    let outcome = match why {
        None => "to_room",
        Some("browser") => "unbound",
        Some(_) => "ended",
    };
    gw.metrics.gate_checks.with_label_values(&[outcome]).inc();
    let value = HeaderValue::from_str(&room).expect("a URL is a valid header value");
    if redirect {
        let mut found = HttpResponse::Found();
        found.insert_header((header::LOCATION, value)).insert_header((header::CACHE_CONTROL, "no-store"));
        if let Some(nonce) = &minted {
            found.insert_header((header::SET_COOKIE, binding::set_cookie(concert, nonce)));
        }
        return found.finish();
    }
    let detail = match why {
        Some("browser") => format!(
            "the admission token in this URL was sent to the browser that waited for it in concert {concert}'s room, \
             not to this one: no session; the fan waits in the room"
        ),
        Some(why) => format!("no live session for concert {concert} ({why}); the fan waits in the room"),
        None => format!("no session for concert {concert}; the fan waits in the room"),
    };
    let mut r = ApiError::Unauthorized(detail).error_response();
    r.headers_mut().insert(HeaderName::from_static("x-queuegate-room"), value);
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// 200 for a live session: who the fan is and until when the session runs unless used.
fn let_in(gw: &Gateway, user: &UserId, expires_ms: i64, outcome: &str) -> actix_web::HttpResponseBuilder {
    gw.metrics.gate_checks.with_label_values(&[outcome]).inc();
    let mut ok = HttpResponse::Ok();
    ok.insert_header(("X-Queuegate-User", user.as_str()))
        .insert_header(("X-Queuegate-Session-Expires", crate::clock::rfc3339(expires_ms)))
        .insert_header((header::CACHE_CONTROL, "no-store"));
    ok
}

/// `GET /v1/concerts/{concertId}/gate` — the forward-auth check (see the module's doc).
pub(super) async fn check(
    gw: web::Data<Gateway>,
    req: HttpRequest,
    concert: web::Path<ConcertId>,
    q: web::Query<GateQuery>,
) -> Result<HttpResponse, ApiError> {
    let concert = concert.into_inner();
    let settings = gw.cache.settings(&concert).ok_or_else(|| ApiError::NotFound(format!("no concert {concert}")))?;
    let idle_ms = i64::from(settings.session_idle_seconds) * 1000;
    let now = crate::clock::now_ms();
    // Every value of the cookie's name is tried: the first that opens (signed for this concert) is
    // the fan's; others (planted, stale) are ignored.
    let name = cookie::name(&concert);
    let presented = cookies(&req, &name).find_map(|v| gw.gate.cookies.open(&concert, v));
    let mut ended = None;
    if let Some(c) = presented {
        match session(&gw, &c, idle_ms, now).await? {
            Some(expires) => {
                let outcome = if expires.1 { "session" } else { "session_checked" };
                return Ok(let_in(&gw, &c.user, expires.0, outcome).finish());
            }
            None => ended = Some("session"),
        }
    }
    // The operator's bypass rules: through without a session or a slot, before any budget (a
    // page's static assets would spend it). A client address counts only when a trusted proxy
    // vouched for it (else it is the proxy's own, every visitor's); a path only as the proxy sent
    // it and only when canonical (crate::gate::canonical_path).
    if !settings.bypass.is_empty() {
        let client = gw.identity.proxies().named_client_ip(&req);
        let path = crate::gate::canonical_path(&req);
        if let Some(how) = settings.bypass.passes(client, path.as_deref()) {
            gw.metrics.gate_checks.with_label_values(&["bypass"]).inc();
            let mut ok = HttpResponse::Ok();
            // An empty user, so a proxy that copies the header from this answer (Caddy's
            // copy_headers, Envoy's allowed_upstream_headers) overwrites one the client wrote.
            ok.insert_header(("X-Queuegate-User", ""))
                .insert_header(("X-Queuegate-Bypass", how))
                .insert_header((header::CACHE_CONTROL, "no-store"));
            return Ok(ok.finish());
        }
    }
    // No live session: what follows costs a signature check or Redis, so it counts against the
    // client's budget (a live session, the bulk of a busy site's checks, never does).
    if let Err(limited) = gw.limits.gate_from(gw.identity.proxies().client_key(&req)) {
        gw.metrics.gate_checks.with_label_values(&["limited"]).inc();
        return Err(limited);
    }
    // The room sent the fan back with an admission token: exchange it, once, and only in the
    // browser that waited (checked first: an HMAC, before any signature check or Redis call).
    let original = original_url(&req);
    if let Some((token, original)) = original.as_ref().and_then(|u| Some((param(u, TOKEN_PARAM)?, u))) {
        let bound =
            settings.session_binding == SessionBinding::None || browser_waited(&gw.gate, &req, &concert, original);
        match bound {
            false => ended = Some("browser"),
            true => match exchange(&gw, &concert, &settings, &token, idle_ms, now).await? {
                Ok((c, deadline)) => {
                    tracing::info!(concert = %concert, user = %c.user, "admission token exchanged for a gate session");
                    return Ok(started(&gw, &settings, &c, deadline, now, q.redirect.then_some(original), "exchanged"));
                }
                Err(why) => ended = Some(why),
            },
        }
    }
    // Standby: straight in while nobody waits and there is room (src/store/enter.lua). Not for a
    // browser whose session or token just ended or was refused (a revocation, an operator's end:
    // it goes to the room, as under fifo), and not while this gateway last counted fans waiting.
    let standby = settings.queueing_method == QueueingMethod::Standby
        && !settings.queue_all
        && settings.state == ConcertState::Open
        && !settings.scheduled_at(now)
        && ended.is_none();
    if standby && gw.cache.waiting(&concert).is_some_and(|w| w > 0) {
        gw.metrics.gate_direct_refused.with_label_values(&["waiting"]).inc();
    } else if standby {
        if let Some((c, deadline)) = direct(&gw, &concert, &settings, idle_ms, now).await {
            let back = original.as_ref().filter(|_| q.redirect);
            return Ok(started(&gw, &settings, &c, deadline, now, back, "direct"));
        }
    }
    Ok(to_room(&gw, &req, &concert, q.redirect, ended))
}

/// A session just started (`outcome`: "exchanged" or "direct"): 200 with its cookie, or with
/// `back` (the `?redirect=true` mode) a 302 there without the token, with the cookie. A proxy that
/// relays only refusals to the browser (Caddy's forward_auth) would drop a cookie on a 200; so the
/// fan is sent back to the same page with it, and the next request passes on it.
fn started(
    gw: &Gateway,
    settings: &crate::concerts::ConcertSettings,
    c: &SessionCookie,
    deadline: i64,
    now: i64,
    back: Option<&url::Url>,
    outcome: &str,
) -> HttpResponse {
    let value = gw.gate.cookies.seal(c);
    let max_age = ((c.max_at_ms - now) / 1000).max(1);
    let set = format!(
        "{}={value}; HttpOnly; Secure; SameSite={}; Path=/; Max-Age={max_age}",
        cookie::name(&c.concert),
        settings.session_cookie_same_site.attribute()
    );
    gw.metrics.gate_sessions_started.inc();
    let mut ok = let_in(gw, &c.user, deadline, outcome);
    ok.insert_header((header::SET_COOKIE, set));
    if let Some(back) = back {
        ok.status(actix_web::http::StatusCode::FOUND)
            .insert_header((header::LOCATION, without_token(back).as_str().to_owned()));
    }
    ok.finish()
}

/// The cookie of a session Redis just started, and when its slot frees itself unless used; this
/// gateway remembers it as just seen.
fn new_session(
    gw: &Gateway,
    concert: &ConcertId,
    user: UserId,
    sid: String,
    s: &crate::store::sessions::Started,
    idle_ms: i64,
    now: i64,
) -> (SessionCookie, i64) {
    gw.gate.known.touched(concert, &user, &sid, idle_ms, now);
    let c = SessionCookie {
        concert: concert.clone(),
        user,
        sid,
        started_ms: s.started_ms,
        max_at_ms: s.max_at_ms,
        epoch: s.epoch,
    };
    (c, s.deadline_ms)
}

/// Standby's direct entry for a visitor without a session: the new session, or None (someone
/// waits, no slot, no budget, the method changed, or Redis did not answer: the room, as `fifo`).
async fn direct(
    gw: &Gateway,
    concert: &ConcertId,
    settings: &crate::concerts::ConcertSettings,
    idle_ms: i64,
    now: i64,
) -> Option<(SessionCookie, i64)> {
    let user = UserId::fresh();
    let sid = uuid::Uuid::new_v4().simple().to_string();
    let max_ms = i64::from(settings.session_max_seconds) * 1000;
    let entered = match gw.store.enter(concert, &settings.lane_names(), &user, &sid, idle_ms, max_ms).await {
        Ok(e) => e,
        Err(e) => {
            tracing::warn!(concert = %concert, error = %e, "standby: Redis did not answer; the visitor goes to the room");
            return None;
        }
    };
    for (reason, n) in [("idle", entered.ended_idle), ("max", entered.ended_max)] {
        gw.metrics.gate_sessions_ended.with_label_values(&[reason]).inc_by(n);
    }
    match entered.outcome {
        Ok(s) => {
            tracing::debug!(concert = %concert, user = %user, "standby: a visitor let straight in");
            Some(new_session(gw, concert, user, sid, &s, idle_ms, now))
        }
        Err(why) => {
            gw.metrics.gate_direct_refused.with_label_values(&[why.as_str()]).inc();
            None
        }
    }
}

/// Whether the session in `c` is live: (when its slot frees itself unless used, answered from
/// memory), or None when it has ended.
async fn session(gw: &Gateway, c: &SessionCookie, idle_ms: i64, now: i64) -> Result<Option<(i64, bool)>, ApiError> {
    if now >= c.max_at_ms {
        return Ok(None);
    }
    let nominal = (now + idle_ms).min(c.max_at_ms);
    match gw.gate.known.judge(&c.concert, &c.sid, c.epoch, now, (idle_ms / 10).max(1)) {
        Verdict::Ended => Ok(None),
        Verdict::Fresh => Ok(Some((nominal, true))),
        Verdict::Ask => match gw.store.touch(&c.concert, &c.user, &c.sid, idle_ms, 0).await {
            Ok(Some(_)) => {
                gw.gate.known.touched(&c.concert, &c.user, &c.sid, idle_ms, now);
                Ok(Some((nominal, false)))
            }
            Ok(None) => {
                gw.gate.known.ended(&c.concert, &c.sid, now);
                Ok(None)
            }
            Err(e) => Err(e.into()),
        },
    }
}

/// Exchanges `token` for a session: the new cookie and when its slot frees itself, or why not.
async fn exchange(
    gw: &Gateway,
    concert: &ConcertId,
    settings: &crate::concerts::ConcertSettings,
    token: &str,
    idle_ms: i64,
    now: i64,
) -> Result<Result<(SessionCookie, i64), &'static str>, ApiError> {
    let Ok(claims) = gw.keys.verify(token, now) else { return Ok(Err("token")) };
    if claims.concert != concert.as_str() {
        return Ok(Err("token"));
    }
    let Ok(user) = UserId::parse(claims.sub) else { return Ok(Err("token")) };
    if let Some(why) = gw.gate.refused.get(&claims.jti, now) {
        return Ok(Err(why));
    }
    let sid = uuid::Uuid::new_v4().simple().to_string();
    let req = ExchangeRequest {
        user: &user,
        jti: &claims.jti,
        iat_ms: claims.iat * 1000,
        exp_ms: claims.exp * 1000,
        idle_ms,
        max_ms: i64::from(settings.session_max_seconds) * 1000,
        sid: &sid,
    };
    Ok(match gw.store.exchange(concert, req).await? {
        Ok(s) => Ok(new_session(gw, concert, user.clone(), sid.clone(), &s, req.idle_ms, now)),
        Err(refused) => {
            let why = match refused {
                Refused::Revoked => "revoked",
                Refused::Spent => "spent",
                Refused::Completed | Refused::Ended => "session",
                Refused::NotAdmitted => "token",
            };
            gw.gate.refused.remember(&claims.jti, why, req.exp_ms, now);
            Err(why)
        }
    })
}
