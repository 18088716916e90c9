//! The gate: queuegate in front of the booking site (docs/gate.md).
//!
//! The booking site's reverse proxy asks `GET /v1/concerts/{concertId}/gate` before every
//! request (nginx `auth_request`, Caddy `forward_auth`, Traefik `forwardAuth`, …) and lets the
//! request through only on a 200:
//!
//! 1. the cookie `__Host-qg_<concertId>` (any of its values) holds a live session → 200, `X-Queuegate-User`; the session's
//!    idle timer restarts. From memory: the cookie is signed ([`cookie`]), and this gateway
//!    knows each concert's revocation epoch and recently ended sessions ([`known`], learned every
//!    second); Redis is asked only when this gateway has not written the session's last-seen
//!    time for a tenth of its idle time;
//! 2. otherwise the check counts against the client's budget ([`crate::gateway::limits`]: 429
//!    when spent); a live session never does;
//! 3. the original URL carries `queuegate_token=<admission token>` (the room sent the fan back)
//!    and `queuegate_bind`, which one of this browser's nonce cookies matches ([`binding`]: only
//!    the browser that waited; a link opened anywhere else is refused and the token stays
//!    unspent) → the token is exchanged, once, for a session (`exchange.lua`) → 200 with
//!    `Set-Cookie` (with `?redirect=true`: a 302 to the same URL without the token, with
//!    `Set-Cookie`, for proxies that hand only refusals to the browser);
//! 4. otherwise → 401 with `X-Queuegate-Room: <QUEUEGATE_PUBLIC_URL>/c/{concertId}?return=<the
//!    original URL>` (or a 302 there with `?redirect=true`, which also gives the browser its
//!    nonce cookie and names it in `return`).
//!
//! A session holds one of the concert's `maxActive` slots (src/store/sessions.rs) until it is
//! idle for `sessionIdleSeconds`, reaches `sessionMaxSeconds`, is completed by the booking site,
//! ended by an operator, or revoked; then the next admission round gives the slot to the next fan.

use actix_web::http::header::{self, HeaderName, HeaderValue};
use actix_web::{web, HttpRequest, HttpResponse, ResponseError};
use serde::{Deserialize, Serialize};

use crate::concerts::SessionBinding;
use crate::gateway::Gateway;
use crate::ids::{ConcertId, UserId};
use crate::problem::ApiError;
use crate::store::sessions::{ExchangeRequest, Refused, NEWS_PAGE};

pub mod binding;
pub mod cookie;
pub mod known;
pub mod refused;

use binding::BindKey;
use cookie::{CookieKey, SessionCookie};
use known::{Known, Verdict};
use refused::RefusedTokens;

/// The query parameter that carries an admission token back to the booking site.
pub const TOKEN_PARAM: &str = "queuegate_token";

/// The most pages of ended sessions one gateway reads per concert per round (a round a second):
/// 10,000 ended sessions a second per concert, the rest in the next rounds.
const NEWS_PAGES_PER_ROUND: usize = 10;

/// The gate's state in one gateway.
pub struct Gate {
    pub cookies: CookieKey,
    /// Binds an exchange to the browser that waited ([`binding`]).
    pub binds: BindKey,
    pub known: Known,
    /// Admission tokens Redis refused: refused again from memory.
    pub refused: RefusedTokens,
    /// `QUEUEGATE_PUBLIC_URL`, without a trailing slash.
    public_url: Option<String>,
    /// The concerts' settings (`sessionMaxSeconds`: how long ended sessions are remembered).
    cache: crate::concerts::ConcertCache,
    /// `queuegate_gate_ended_sessions_remembered`.
    remembered: prometheus::IntGauge,
    /// `queuegate_gate_refused_tokens_remembered`.
    refused_remembered: prometheus::IntGauge,
}

impl Gate {
    pub fn new(
        secret: &[u8],
        public_url: Option<&str>,
        cache: crate::concerts::ConcertCache,
        remembered: prometheus::IntGauge,
        refused_remembered: prometheus::IntGauge,
    ) -> Self {
        Gate {
            cookies: CookieKey::new(secret),
            binds: BindKey::new(secret),
            known: Known::default(),
            refused: RefusedTokens::default(),
            public_url: public_url.map(|u| u.trim_end_matches('/').to_owned()),
            cache,
            remembered,
            refused_remembered,
        }
    }

    /// One look at every concert's news (revocation epoch, ended sessions), and the checks this
    /// gateway answered from memory written to Redis once due (see [`Known::due`]); every second.
    pub async fn learn(
        &self,
        store: &crate::store::QueueStore,
        concerts: &[ConcertId],
    ) -> Result<(), crate::store::StoreError> {
        let now = crate::clock::now_ms();
        for id in concerts {
            let max_s = self.cache.settings(id).map_or(86_400, |s| s.session_max_seconds);
            // A burst (an operator's revocation, a sweep after a stall) is read in pages; what
            // does not fit in this round's pages is read in the next round's, from where it stopped.
            for _ in 0..NEWS_PAGES_PER_ROUND {
                let news = store.gate_news(id, self.known.since(id), NEWS_PAGE).await?;
                if !self.known.learn(id, news, i64::from(max_s) * 1000, now) {
                    break;
                }
            }
        }
        for d in self.known.due(now) {
            if store.touch(&d.concert, &d.user, &d.sid, d.idle_ms, d.age_ms).await?.is_none() {
                self.known.ended(&d.concert, &d.sid, now);
            }
        }
        self.known.prune(now);
        self.remembered.set(self.known.ended_count() as i64);
        self.refused.prune(now);
        self.refused_remembered.set(self.refused.len() as i64);
        Ok(())
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct GateQuery {
    #[serde(default)]
    redirect: bool,
}

/// The request the proxy is asking about, as the fan made it: nginx's `X-Original-URI`, or
/// Traefik's (Caddy's, Envoy's) `X-Forwarded-Uri`, with `X-Forwarded-Host` and
/// `X-Forwarded-Proto`; else ingress-nginx's `X-Original-URL` (the whole URL, http or https).
fn original_url(req: &HttpRequest) -> Option<url::Url> {
    let h = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok()).filter(|v| !v.is_empty());
    if h("x-original-uri").is_none() && h("x-forwarded-uri").is_none() {
        if let Some(full) = h("x-original-url") {
            let u = url::Url::parse(full).ok()?;
            let plain = u.username().is_empty() && u.password().is_none();
            return (matches!(u.scheme(), "http" | "https") && u.host().is_some() && plain).then_some(u);
        }
    }
    let uri = h("x-original-uri").or_else(|| h("x-forwarded-uri")).unwrap_or("/");
    let host = h("x-forwarded-host").or_else(|| h("host"))?;
    let proto = h("x-forwarded-proto").filter(|p| matches!(*p, "http" | "https")).unwrap_or("http");
    if !uri.starts_with('/') || host.contains(['/', '?', '#', '@']) {
        return None;
    }
    url::Url::parse(&format!("{proto}://{host}{uri}")).ok()
}

/// `url` without the admission token and the bind (a spent token must not travel on; a bind is
/// written afresh for the browser at hand).
fn without_token(url: &url::Url) -> url::Url {
    let mut out = url.clone();
    let kept: Vec<(String, String)> = url
        .query_pairs()
        .filter(|(k, _)| k != TOKEN_PARAM && k != binding::BIND_PARAM)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    if kept.is_empty() {
        out.set_query(None);
    } else {
        out.query_pairs_mut().clear().extend_pairs(kept);
    }
    out
}

/// The value of query parameter `name` in `url`, if it has one.
fn param(url: &url::Url, name: &str) -> Option<String> {
    url.query_pairs().find(|(k, _)| k == name).map(|(_, v)| v.into_owned())
}

/// Every value of cookie `name` the request carries, over all its `Cookie` headers.
fn cookies<'a>(req: &'a HttpRequest, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    req.headers().get_all(header::COOKIE).filter_map(|v| v.to_str().ok()).flat_map(move |h| cookie::find_all(h, name))
}

/// Whether this browser is the one `original`'s token was sent to: one of its nonce cookies
/// matches the URL's bind ([`binding`]).
fn browser_waited(gate: &Gate, req: &HttpRequest, concert: &ConcertId, original: &url::Url) -> bool {
    let Some(bind) = param(original, binding::BIND_PARAM) else { return false };
    let name = binding::name(concert);
    let found = cookies(req, &name).any(|nonce| gate.binds.matches(concert, nonce, &bind));
    found
}

/// The room's URL for a fan sent away from `original` (`why`: what ended, when something did;
/// `bind`: the bind of the browser's nonce, written into `return`).
fn room_url(
    gate: &Gate,
    req: &HttpRequest,
    concert: &ConcertId,
    original: Option<&url::Url>,
    why: Option<&str>,
    bind: Option<&str>,
) -> String {
    let base = gate.public_url.clone().unwrap_or_else(|| {
        let host = req.connection_info().host().to_owned();
        format!("http://{host}")
    });
    // QUEUEGATE_PUBLIC_URL was checked at start; a Host header is whatever the client sent.
    let mut room = url::Url::parse(&format!("{base}/c/{concert}"))
        .unwrap_or_else(|_| url::Url::parse(&format!("http://localhost/c/{concert}")).expect("a valid URL"));
    if let Some(o) = original {
        let mut back = without_token(o);
        if let Some(b) = bind {
            back.query_pairs_mut().append_pair(binding::BIND_PARAM, b);
        }
        room.query_pairs_mut().append_pair("return", back.as_str());
    }
    if let Some(why) = why {
        room.query_pairs_mut().append_pair("ended", why);
    }
    room.to_string()
}

/// The answer that sends the fan to the room: 401 with `X-Queuegate-Room`, or a 302 there.
///
/// The 302 goes to the browser itself (nginx's `@queuegate_room`, Caddy, Traefik, Envoy), so it
/// also gives the browser a nonce when it has none ([`binding`]) and names it in `return`; the
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
pub(crate) async fn check(
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
            true => match exchange(&gw, &concert, &settings, &token, now).await? {
                Ok((c, deadline)) => {
                    let value = gw.gate.cookies.seal(&c);
                    let max_age = ((c.max_at_ms - now) / 1000).max(1);
                    let set = format!(
                        "{}={value}; HttpOnly; Secure; SameSite={}; Path=/; Max-Age={max_age}",
                        cookie::name(&concert),
                        settings.session_cookie_same_site.attribute()
                    );
                    gw.metrics.gate_sessions_started.inc();
                    tracing::info!(concert = %concert, user = %c.user, "admission token exchanged for a gate session");
                    let mut ok = let_in(&gw, &c.user, deadline, "exchanged");
                    ok.insert_header((header::SET_COOKIE, set));
                    // A proxy that relays only refusals to the browser (Caddy's forward_auth) would
                    // drop a cookie on a 200: in redirect mode the fan is sent back to the same
                    // page without the token, with the cookie; the next request passes on it.
                    if q.redirect {
                        ok.status(actix_web::http::StatusCode::FOUND)
                            .insert_header((header::LOCATION, without_token(original).as_str().to_owned()));
                    }
                    return Ok(ok.finish());
                }
                Err(why) => ended = Some(why),
            },
        }
    }
    Ok(to_room(&gw, &req, &concert, q.redirect, ended))
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
        idle_ms: i64::from(settings.session_idle_seconds) * 1000,
        max_ms: i64::from(settings.session_max_seconds) * 1000,
        sid: &sid,
    };
    Ok(match gw.store.exchange(concert, req).await? {
        Ok(s) => {
            gw.gate.known.touched(concert, &user, &sid, req.idle_ms, now);
            let c = SessionCookie {
                concert: concert.clone(),
                user,
                sid,
                started_ms: s.started_ms,
                max_at_ms: s.max_at_ms,
                epoch: s.epoch,
            };
            Ok((c, s.deadline_ms))
        }
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

// --- the operators' side (admin listener) -------------------------------------------------------

#[derive(Debug, Deserialize)]
pub(crate) struct SessionsQuery {
    #[serde(default)]
    offset: usize,
    #[serde(default = "default_limit")]
    limit: usize,
}

fn default_limit() -> usize {
    100
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SessionView {
    user_id: UserId,
    started_at: String,
    last_seen_at: String,
    expires_at: String,
}

/// `GET /admin/v1/concerts/{concertId}/sessions?offset&limit` — live sessions, oldest first.
pub(crate) async fn list(
    admin: web::Data<crate::admin::Admin>,
    concert: web::Path<ConcertId>,
    q: web::Query<SessionsQuery>,
) -> Result<HttpResponse, ApiError> {
    if q.limit == 0 || q.limit as u64 > crate::admin::MAX_PAGE {
        return Err(ApiError::BadRequest(format!("limit must be between 1 and {}", crate::admin::MAX_PAGE)));
    }
    if q.offset as u64 > crate::admin::MAX_OFFSET {
        return Err(ApiError::BadRequest(format!("offset must be between 0 and {}", crate::admin::MAX_OFFSET)));
    }
    let concert = concert.into_inner();
    let c =
        admin.store.get_concert(&concert).await?.ok_or_else(|| ApiError::NotFound(format!("no concert {concert}")))?;
    let idle_ms = i64::from(c.settings.session_idle_seconds) * 1000;
    let (total, page) = admin.store.sessions(&concert, q.offset, q.limit).await?;
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
pub(crate) async fn end(
    admin: web::Data<crate::admin::Admin>,
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
pub(crate) async fn revoke(
    admin: web::Data<crate::admin::Admin>,
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
    crate::admin::audit::note_result(&req, serde_json::json!({ "sessionsEnded": sessions, "tokensRevoked": tokens }));
    Ok(HttpResponse::Ok().json(serde_json::json!({ "sessionsEnded": sessions, "tokensRevoked": tokens })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_is_taken_out_of_the_return_url_and_the_rest_kept() {
        let u = url::Url::parse("https://shop.example/buy?seat=3&queuegate_token=abc&x=1").unwrap();
        assert_eq!(without_token(&u).as_str(), "https://shop.example/buy?seat=3&x=1");
        let u = url::Url::parse("https://shop.example/buy?queuegate_token=abc").unwrap();
        assert_eq!(without_token(&u).as_str(), "https://shop.example/buy");
    }

    fn gauge() -> prometheus::IntGauge {
        prometheus::IntGauge::new("g", "g").unwrap()
    }

    #[test]
    fn the_room_url_is_built_from_the_public_url_and_survives_any_host_header() {
        let c = ConcertId::parse("tour").unwrap();
        let original = url::Url::parse("https://shop.example/b?x=1&queuegate_token=t").unwrap();
        let gate = Gate::new(b"s", Some("https://queue.example/"), Default::default(), gauge(), gauge());
        let req = actix_web::test::TestRequest::default().to_http_request();
        assert_eq!(
            room_url(&gate, &req, &c, Some(&original), Some("spent"), None),
            "https://queue.example/c/tour?return=https%3A%2F%2Fshop.example%2Fb%3Fx%3D1&ended=spent"
        );
        // A stale bind is dropped from `return`, the browser's own written in its place.
        let stale = url::Url::parse("https://shop.example/b?queuegate_bind=old&x=1&queuegate_token=t").unwrap();
        assert_eq!(
            room_url(&gate, &req, &c, Some(&stale), None, Some("new")),
            "https://queue.example/c/tour?return=https%3A%2F%2Fshop.example%2Fb%3Fx%3D1%26queuegate_bind%3Dnew"
        );
        let bare = Gate::new(b"s", None, Default::default(), gauge(), gauge());
        for host in ["queue.internal:8080", "a b", "x/y?z", ""] {
            let req = actix_web::test::TestRequest::default().insert_header(("host", host)).to_http_request();
            assert!(room_url(&bare, &req, &c, None, None, None).ends_with("/c/tour"), "{host}");
        }
    }

    #[test]
    fn the_original_url_comes_from_nginx_or_traefik_style_headers() {
        let req = actix_web::test::TestRequest::default()
            .insert_header(("x-original-uri", "/book?a=1"))
            .insert_header(("x-forwarded-host", "shop.example"))
            .insert_header(("x-forwarded-proto", "https"))
            .to_http_request();
        assert_eq!(original_url(&req).unwrap().as_str(), "https://shop.example/book?a=1");
        let req = actix_web::test::TestRequest::default()
            .insert_header(("x-forwarded-uri", "/x"))
            .insert_header(("host", "shop.example:8443"))
            .to_http_request();
        assert_eq!(original_url(&req).unwrap().as_str(), "http://shop.example:8443/x");
        let evil = actix_web::test::TestRequest::default()
            .insert_header(("x-original-uri", "//evil.example/"))
            .insert_header(("host", "shop.example"))
            .to_http_request();
        assert_eq!(original_url(&evil).unwrap().host_str(), Some("shop.example"), "a path never changes the host");
        let evil = actix_web::test::TestRequest::default()
            .insert_header(("x-original-uri", "/x"))
            .insert_header(("x-forwarded-host", "evil.example/@shop"))
            .to_http_request();
        assert!(original_url(&evil).is_none());
        // ingress-nginx's auth-url sends the whole URL, and Host is the gate's own.
        let ingress = |url: &str| {
            let req = actix_web::test::TestRequest::default()
                .insert_header(("x-original-url", url))
                .insert_header(("host", "queuegate-gateway.sale.svc"))
                .to_http_request();
            original_url(&req).map(|u| u.to_string())
        };
        assert_eq!(
            ingress("https://shop.example/book?seat=1&queuegate_token=t").as_deref(),
            Some("https://shop.example/book?seat=1&queuegate_token=t")
        );
        for bad in ["javascript:alert(1)", "/relative", "https://user:pw@shop.example/", "ftp://shop.example/"] {
            assert_eq!(ingress(bad), None, "{bad}");
        }
    }
}
