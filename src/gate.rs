//! The gate: queuegate in front of the booking site (docs/explain-design.md).
//!
//! What the gate is made of, below both listeners: each gateway's [`Gate`] (the signed session
//! cookie: [`cookie`]; the bind of an admission token to the browser that waited: [`binding`];
//! what this gateway knows of sessions, learned every second: [`known`]; admission tokens Redis
//! refused: [`refused`]) and the URL helpers of the check. The check itself
//! (`GET /v1/concerts/{concertId}/gate`, the forward-auth call of the booking site's proxy) is
//! the public listener's (src/gateway/gate_check.rs); listing, ending and revoking sessions are
//! the admin listener's (src/admin/sessions.rs).
//!
//! A session holds one of the concert's `maxActive` slots (src/store/sessions.rs) until it is
//! idle for `sessionIdleSeconds`, reaches `sessionMaxSeconds`, is completed by the booking site,
//! ended by an operator, or revoked; then the next admission round gives the slot to the next fan.

use actix_web::http::header;
use actix_web::HttpRequest;

use crate::ids::ConcertId;
use crate::store::sessions::NEWS_PAGE;

pub mod binding;
pub mod cookie;
pub mod known;
pub mod refused;

use binding::BindKey;
use cookie::CookieKey;
use known::Known;
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

/// The request the proxy is asking about, as the fan made it: nginx's `X-Original-URI`, or
/// Traefik's (Caddy's, Envoy's) `X-Forwarded-Uri`, with `X-Forwarded-Host` and
/// `X-Forwarded-Proto`; else ingress-nginx's `X-Original-URL` (the whole URL, http or https).
pub(crate) fn original_url(req: &HttpRequest) -> Option<url::Url> {
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

/// The path of the original request exactly as the proxy sent it (nginx's `X-Original-URI`,
/// `X-Forwarded-Uri`, or the path of ingress-nginx's `X-Original-URL`), when it is canonical:
/// starting with `/`, without an empty, `.` or `..` segment (a trailing `/` aside) and without
/// `%`, `\` or `;`. Bypass rules match only such a path, so no spelling that the booking site
/// reads as another path (`/static//../book.php`, `/static/..%2fbook`, `/static/..;/book`) can
/// pass for a bypassed one; anything else is gated.
pub(crate) fn canonical_path(req: &HttpRequest) -> Option<String> {
    let h = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok()).filter(|v| !v.is_empty());
    let raw = match h("x-original-uri").or_else(|| h("x-forwarded-uri")) {
        Some(uri) => uri,
        None => {
            let rest = h("x-original-url")?.split_once("://")?.1;
            &rest[rest.find('/')?..]
        }
    };
    let path = raw.split(['?', '#']).next()?;
    let segments: Vec<&str> = path.strip_prefix('/')?.split('/').collect();
    let last = segments.len() - 1;
    let bad_segment = segments.iter().enumerate().any(|(i, s)| (s.is_empty() && i != last) || *s == "." || *s == "..");
    (!bad_segment && !path.contains(['%', '\\', ';'])).then(|| path.to_owned())
}

/// `url` without the admission token and the bind (a spent token must not travel on; a bind is
/// written afresh for the browser at hand).
pub(crate) fn without_token(url: &url::Url) -> url::Url {
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
pub(crate) fn param(url: &url::Url, name: &str) -> Option<String> {
    url.query_pairs().find(|(k, _)| k == name).map(|(_, v)| v.into_owned())
}

/// Every value of cookie `name` the request carries, over all its `Cookie` headers.
pub(crate) fn cookies<'a>(req: &'a HttpRequest, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    req.headers().get_all(header::COOKIE).filter_map(|v| v.to_str().ok()).flat_map(move |h| cookie::find_all(h, name))
}

/// Whether this browser is the one `original`'s token was sent to: one of its nonce cookies
/// matches the URL's bind ([`binding`]).
pub(crate) fn browser_waited(gate: &Gate, req: &HttpRequest, concert: &ConcertId, original: &url::Url) -> bool {
    let Some(bind) = param(original, binding::BIND_PARAM) else { return false };
    let name = binding::name(concert);
    let found = cookies(req, &name).any(|nonce| gate.binds.matches(concert, nonce, &bind));
    found
}

/// The room's URL for a fan sent away from `original` (`why`: what ended, when something did;
/// `bind`: the bind of the browser's nonce, written into `return`).
pub(crate) fn room_url(
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_canonical_path_is_offered_to_the_bypass_rules() {
        let path = |uri: &str| {
            let req = actix_web::test::TestRequest::default().insert_header(("x-original-uri", uri)).to_http_request();
            canonical_path(&req)
        };
        assert_eq!(path("/static/app.js?v=1").as_deref(), Some("/static/app.js"));
        assert_eq!(path("/static/").as_deref(), Some("/static/"));
        assert_eq!(path("/").as_deref(), Some("/"));
        for bad in [
            "/static//../book.php",
            "/static/../book",
            "/static/./x",
            "/static/..%2fbook",
            "/static/..;/book",
            "/static\\..\\book",
            "//static/x",
            "static/x",
            "/a//b",
        ] {
            assert_eq!(path(bad), None, "{bad}");
        }
        let ingress = actix_web::test::TestRequest::default()
            .insert_header(("x-original-url", "https://shop.example/static/x.css?y=1"))
            .to_http_request();
        assert_eq!(canonical_path(&ingress).as_deref(), Some("/static/x.css"));
        assert_eq!(canonical_path(&actix_web::test::TestRequest::default().to_http_request()), None);
    }

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
