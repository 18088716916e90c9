//! The pages: each concert's waiting room (`/c/{concertId}`, with the list of open concerts at
//! `/`) on the public listener, and the operators' console (`/admin/`) on the admin listener.
//!
//! Plain HTML, CSS and JavaScript compiled into the binary (no framework, no build step); the
//! script and the styles are files of their own so the Content-Security-Policy can forbid every
//! inline script, style and event handler. The room learns what it shows from
//! `GET /v1/concerts/{concertId}` (name, branding, phase, the identity mode), served from the
//! gateway's concert cache without a Redis call.

use actix_web::http::header;
use actix_web::{web, HttpResponse};
use serde::Serialize;

use crate::concerts::{ConcertSettings, ConcertState, QueueingMethod};
use crate::gateway::state::Gateway;
use crate::ids::ConcertId;
use crate::problem::ApiError;

/// The policy of every page: scripts, styles and fetches from this origin only; images also from
/// https (a concert's logo); no frames, no plugins, no form posts elsewhere.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' https: data:; \
connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

const ROOM_HTML: &str = include_str!("pages/room.html");
const HOME_HTML: &str = include_str!("pages/home.html");
const ROOM_JS: &str = include_str!("pages/room.js");
const PAGES_CSS: &str = include_str!("pages/pages.css");
const FAVICON: &str = include_str!("pages/favicon.svg");
const CONSOLE_HTML: &str = include_str!("pages/console.html");
const CONSOLE_JS: &str = include_str!("pages/console.js");

/// The console's own files: served without the admin token (they hold no data; every call the
/// console makes carries the token the operator types).
pub const CONSOLE_PATHS: &[&str] = &["/admin/", "/admin/console.js", "/admin/pages.css"];

fn page(content_type: &'static str, body: &'static str) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(content_type)
        // Small, and changed only by an upgrade: revalidated on each load.
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header((header::CONTENT_SECURITY_POLICY, CSP))
        .insert_header((header::REFERRER_POLICY, "no-referrer"))
        .insert_header((header::X_FRAME_OPTIONS, "DENY"))
        .body(body)
}

const HTML: &str = "text/html; charset=utf-8";

/// `GET /` — the open concerts, or a box to name one.
pub async fn home() -> HttpResponse {
    page(HTML, HOME_HTML)
}

/// `GET /c/{concertId}` — the concert's waiting room (one page for every concert: the script
/// reads the id from the path and asks for the concert).
pub async fn room(_id: web::Path<ConcertId>) -> HttpResponse {
    page(HTML, ROOM_HTML)
}

pub async fn room_js() -> HttpResponse {
    page("text/javascript; charset=utf-8", ROOM_JS)
}

pub async fn css() -> HttpResponse {
    page("text/css; charset=utf-8", PAGES_CSS)
}

pub async fn favicon() -> HttpResponse {
    page("image/svg+xml", FAVICON)
}

/// `GET /admin/` — the operators' console.
pub async fn console() -> HttpResponse {
    page(HTML, CONSOLE_HTML)
}

pub async fn console_js() -> HttpResponse {
    page("text/javascript; charset=utf-8", CONSOLE_JS)
}

/// Where a concert stands for a fan arriving now.
fn phase(s: &ConcertSettings, now_ms: i64) -> &'static str {
    match s.state {
        ConcertState::Paused => "paused",
        ConcertState::Closed => "closed",
        ConcertState::SoldOut => "soldout",
        ConcertState::Open if s.queueing_method == QueueingMethod::Reject => "maintenance",
        ConcertState::Open if s.scheduled_at(now_ms) => "scheduled",
        ConcertState::Open if s.closes_at.is_some_and(|t| now_ms >= t) => "ended",
        ConcertState::Open => "open",
    }
}

/// What a waiting room shows about its concert.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct RoomInfo<'a> {
    concert_id: &'a ConcertId,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    /// `open`, `scheduled` (before `opensAt`: joins go to the pre-queue), `ended` (past
    /// `closesAt`), `paused`, `closed`, `soldout` or `maintenance`.
    phase: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    opens_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    closes_at: Option<String>,
    /// The server's clock, so a countdown does not depend on the fan's.
    now: String,
    /// Waiting fans who stop watching for this long lose their place (0: never).
    abandon_after_seconds: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    redirect_url: Option<&'a str>,
    /// The booking site's hosts the room may send an admitted fan back to (`return`), besides
    /// `redirectUrl`'s.
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    protected_hosts: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    logo_url: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    brand_color: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    background_color: Option<&'a str>,
    /// How this gateway knows who a fan is (`QUEUEGATE_FAN_IDENTITY`): the room adapts its join.
    fan_identity: &'static str,
    /// While `soldout`: the concert's `soldOutMessage`, when it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    sold_out_message: Option<&'a str>,
    /// The concert's lanes (absent without `lanes`): a room opened with `?lane=` joins that one,
    /// asking for a code where its access is `code`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    lanes: Vec<RoomLane>,
    /// `fifo`, `passthrough`, `reject` or `standby`.
    queueing_method: &'static str,
    /// Whether a visitor of the gated site goes through the room now: false only while `standby`
    /// may let visitors straight in (open, not before `opensAt`, `queueAll` off, nobody waiting
    /// at this gateway's last count). A site may show its own banner by it.
    queueing: bool,
}

/// A lane as the room shows it: its name and what it asks of a fan (`open`, `code`, `claim`;
/// which claim is the booking site's business, not the page's).
#[derive(Serialize)]
struct RoomLane {
    name: crate::ids::Lane,
    access: &'static str,
}

fn room_info<'a>(gw: &Gateway, id: &'a ConcertId, s: &'a ConcertSettings, now_ms: i64) -> RoomInfo<'a> {
    RoomInfo {
        concert_id: id,
        name: s.name.as_deref(),
        phase: phase(s, now_ms),
        opens_at: s.opens_at.map(crate::clock::rfc3339),
        closes_at: s.closes_at.map(crate::clock::rfc3339),
        now: crate::clock::rfc3339(now_ms),
        abandon_after_seconds: s.abandon_after_seconds,
        redirect_url: s.redirect_url.as_deref(),
        protected_hosts: &s.protected_hosts,
        logo_url: s.logo_url.as_deref(),
        brand_color: s.brand_color.as_deref(),
        background_color: s.background_color.as_deref(),
        fan_identity: gw.identity.mode().as_str(),
        sold_out_message: s.sold_out_message.as_deref().filter(|_| s.state == ConcertState::SoldOut),
        lanes: s
            .lanes
            .iter()
            .map(|l| RoomLane {
                name: l.name.clone(),
                access: match l.access {
                    crate::concerts::LaneAccess::Open => "open",
                    crate::concerts::LaneAccess::Code => "code",
                    crate::concerts::LaneAccess::Claim { .. } => "claim",
                },
            })
            .collect(),
        queueing_method: s.queueing_method.as_str(),
        queueing: s.queueing_method != QueueingMethod::Standby
            || s.queue_all
            || s.state != ConcertState::Open
            || s.scheduled_at(now_ms)
            || gw.cache.waiting(id).is_none_or(|w| w > 0),
    }
}

/// `GET /v1/concerts/{concertId}` — what the concert's waiting room shows (from the cache).
pub async fn concert(gw: web::Data<Gateway>, id: web::Path<ConcertId>) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    let settings = gw.cache.settings(&id).ok_or_else(|| {
        if gw.cache.is_loaded() {
            ApiError::NotFound(format!("no concert {id}"))
        } else {
            ApiError::unavailable("concerts are still loading; retry shortly")
        }
    })?;
    let info = room_info(&gw, &id, &settings, crate::clock::now_ms());
    Ok(HttpResponse::Ok().insert_header((header::CACHE_CONTROL, "public, max-age=2")).json(info))
}

/// `GET /v1/concerts` — the concerts taking joins now or scheduled to (not paused or closed
/// ones), by id.
pub async fn concerts(gw: web::Data<Gateway>) -> HttpResponse {
    let now_ms = crate::clock::now_ms();
    let mut all = gw.cache.snapshot();
    all.sort_by(|a, b| a.0.as_str().cmp(b.0.as_str()));
    let listed: Vec<RoomInfo> = all
        .iter()
        .map(|(id, s)| room_info(&gw, id, s, now_ms))
        .filter(|r| matches!(r.phase, "open" | "scheduled"))
        .collect();
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "public, max-age=2"))
        .json(serde_json::json!({ "concerts": listed }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether `html` has an attribute like ` onclick=`.
    fn has_inline_handler(html: &str) -> bool {
        html.match_indices(" on").any(|(i, _)| {
            let rest = &html[i + 3..];
            let name = rest.bytes().take_while(u8::is_ascii_lowercase).count();
            name > 0 && rest[name..].starts_with('=')
        })
    }

    #[test]
    fn the_inline_handler_check_finds_one() {
        assert!(has_inline_handler(r#"<button onclick="x()">"#));
        assert!(!has_inline_handler(r#"<p>join on time</p><button id="on">"#));
    }

    #[test]
    fn a_concert_s_phase_follows_its_state_schedule_and_method() {
        let mut s = ConcertSettings::open();
        assert_eq!(phase(&s, 1_000), "open");
        s.opens_at = Some(2_000);
        s.closes_at = Some(3_000);
        assert_eq!(phase(&s, 1_999), "scheduled");
        assert_eq!(phase(&s, 2_000), "open");
        assert_eq!(phase(&s, 3_000), "ended");
        s.queueing_method = QueueingMethod::Reject;
        assert_eq!(phase(&s, 2_500), "maintenance");
        s.state = ConcertState::Paused;
        assert_eq!(phase(&s, 2_500), "paused");
        s.state = ConcertState::Closed;
        assert_eq!(phase(&s, 2_500), "closed");
        s.state = ConcertState::SoldOut;
        assert_eq!(phase(&s, 2_500), "soldout");
    }

    #[test]
    fn the_pages_fit_in_30_kb_and_carry_no_inline_script_style_or_handler() {
        let fan = ROOM_HTML.len() + ROOM_JS.len() + PAGES_CSS.len();
        assert!(fan <= 30 * 1024, "the waiting room is {fan} bytes");
        for (name, html) in [("room", ROOM_HTML), ("home", HOME_HTML), ("console", CONSOLE_HTML)] {
            let lower = html.to_ascii_lowercase();
            assert!(!lower.contains("<script>") && !lower.contains("<style"), "{name}: inline script or style");
            assert!(!lower.contains(" style="), "{name}: inline style attribute");
            assert!(!has_inline_handler(&lower), "{name}: inline event handler");
        }
        for (name, js) in [("room", ROOM_JS), ("console", CONSOLE_JS)] {
            assert!(!js.contains("innerHTML") && !js.contains("eval("), "{name}: innerHTML or eval");
        }
    }
}
