//! The public listener's state-changing requests (every endpoint of [`super::ROUTES`] that is
//! not a GET): JSON only, and only from the gateway's own origin or one the concert allows.
//!
//! Why: a join needs no credential in anonymous mode, so without these checks any web page can
//! make each visitor's browser join a concert as a new fan (an HTML form, or `fetch` in
//! `no-cors` mode, sends a POST with a "simple" content type and no preflight). Two checks,
//! either of which stops it:
//!
//! - `Content-Type: application/json` (or `+json`) is required, an empty body included (415):
//!   a browser sends that content type to another origin only after a CORS preflight, which
//!   queuegate does not answer (an `OPTIONS` is a 405 like any other method it does not serve).
//! - `Sec-Fetch-Site: cross-site`, or an `Origin` that is neither `QUEUEGATE_PUBLIC_URL`'s
//!   origin nor the request's own `Host`, is refused (403) unless the concert lists that origin
//!   in `allowedOrigins`. A request without `Origin` (curl, k6, a booking site's server) passes:
//!   browsers send it on every cross-origin POST.
//!
//! Runs as a middleware before the handlers ([`super::writes_guard`]), so no handler (and no
//! future one) can forget it.

use actix_web::http::header;

use crate::concerts::ConcertCache;
use crate::ids::ConcertId;
use crate::problem::ApiError;

/// The two checks of a state-changing request: where it comes from (403), then what it carries
/// (415). `public` is `QUEUEGATE_PUBLIC_URL`'s origin; `cache` holds the concerts' `allowedOrigins`.
pub(super) fn check(
    cache: &ConcertCache,
    public: Option<&url::Origin>,
    req: &actix_web::HttpRequest,
) -> Result<(), ApiError> {
    let headers = req.headers();
    let origin = headers.get(header::ORIGIN).map(|v| v.to_str().unwrap_or("null"));
    let cross_site = headers.get("sec-fetch-site").is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"cross-site"));
    let own = origin.is_none_or(|o| own_origin(o, public, host(req)));
    if (cross_site || !own) && !allowed_by_concert(cache, req.path(), origin) {
        let from = origin.unwrap_or("another site");
        return Err(ApiError::Forbidden(format!(
            "requests from {from} are not accepted here: a state-changing request must come from this \
             gateway's own pages, or from an origin the concert lists in allowedOrigins"
        )));
    }
    let json = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(crate::problem::is_json);
    if !json {
        return Err(ApiError::UnsupportedMediaType);
    }
    Ok(())
}

/// The host (and port) the client addressed: `Host`, or the authority of an HTTP/2 request.
fn host(req: &actix_web::HttpRequest) -> Option<&str> {
    req.headers().get(header::HOST).and_then(|h| h.to_str().ok()).or_else(|| req.uri().authority().map(|a| a.as_str()))
}

/// Whether `origin` is the gateway's own: `QUEUEGATE_PUBLIC_URL`'s origin, or the origin whose
/// host and port are the request's `Host` (a missing port being the origin scheme's default).
fn own_origin(origin: &str, public: Option<&url::Origin>, host: Option<&str>) -> bool {
    let Ok(o) = url::Url::parse(origin) else { return false };
    if !matches!(o.scheme(), "http" | "https") {
        return false;
    }
    if public.is_some_and(|p| *p == o.origin()) {
        return true;
    }
    let Some(host) = host else { return false };
    let Ok(h) = url::Url::parse(&format!("{}://{host}", o.scheme())) else { return false };
    h.host_str().is_some_and(|hh| Some(hh) == o.host_str())
        && h.port_or_known_default() == o.port_or_known_default()
        && h.path() == "/"
}

/// Whether the concert named in `path` (`/v1/concerts/{concertId}/…`) lists `origin` in its
/// `allowedOrigins`.
fn allowed_by_concert(cache: &ConcertCache, path: &str, origin: Option<&str>) -> bool {
    let Some(origin) = origin else { return false };
    let Some(id) = path.strip_prefix("/v1/concerts/").and_then(|rest| rest.split('/').next()) else { return false };
    ConcertId::parse(id).is_ok_and(|c| cache.allows_origin(&c, origin))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::concerts::ConcertSettings;

    fn request(path: &str, headers: &[(&str, &str)]) -> actix_web::HttpRequest {
        let mut r = actix_web::test::TestRequest::post().uri(path);
        for h in headers {
            r = r.append_header(*h);
        }
        r.to_http_request()
    }

    /// What [`check`] answers a POST to `path` with `headers`: "ok", "403" or "415".
    fn answer(
        cache: &ConcertCache,
        public: Option<&url::Origin>,
        path: &str,
        headers: &[(&str, &str)],
    ) -> &'static str {
        match check(cache, public, &request(path, headers)) {
            Ok(()) => "ok",
            Err(ApiError::Forbidden(_)) => "403",
            Err(ApiError::UnsupportedMediaType) => "415",
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn a_write_must_be_json_and_from_the_gateway_s_own_origin_or_one_the_concert_allows() {
        let cache = ConcertCache::default();
        let shop = ConcertSettings { allowed_origins: vec!["https://shop.example".into()], ..ConcertSettings::open() };
        cache.set(&ConcertId::parse("tour").unwrap(), shop);
        let public = crate::gateway::state::public_origin(Some("https://queue.example"));
        let a = |path, headers: &[(&str, &str)]| answer(&cache, public.as_ref(), path, headers);
        let join = "/v1/concerts/tour/join";
        let json = ("content-type", "application/json");
        assert_eq!(a(join, &[json]), "ok", "no Origin: not a browser's cross-origin request");
        assert_eq!(a(join, &[("content-type", "application/merge-patch+json; charset=utf-8")]), "ok");
        assert_eq!(a(join, &[]), "415", "an empty body too");
        assert_eq!(a(join, &[("content-type", "text/plain")]), "415", "a form's or no-cors fetch's type");
        assert_eq!(a(join, &[json, ("origin", "https://queue.example")]), "ok", "QUEUEGATE_PUBLIC_URL's origin");
        assert_eq!(a(join, &[json, ("origin", "http://10.0.0.7:8080"), ("host", "10.0.0.7:8080")]), "ok", "the Host's");
        assert_eq!(a(join, &[json, ("origin", "https://evil.example"), ("host", "10.0.0.7:8080")]), "403");
        assert_eq!(a(join, &[("origin", "https://evil.example")]), "403", "where it comes from is checked first");
        assert_eq!(a(join, &[json, ("origin", "https://shop.example")]), "ok", "in the concert's allowedOrigins");
        assert_eq!(
            a("/v1/concerts/other/join", &[json, ("origin", "https://shop.example")]),
            "403",
            "another concert's"
        );
        assert_eq!(a("/v1/other/tour/join", &[json, ("origin", "https://shop.example")]), "403");
        assert_eq!(a(join, &[json, ("sec-fetch-site", "Cross-Site")]), "403", "a cross-site request without Origin");
        assert_eq!(a(join, &[json, ("sec-fetch-site", "cross-site"), ("origin", "https://shop.example")]), "ok");
        assert_eq!(a(join, &[json, ("sec-fetch-site", "same-origin"), ("origin", "https://queue.example")]), "ok");
        assert_eq!(a(join, &[json, ("sec-fetch-site", "cross-site"), ("origin", "https://queue.example")]), "403");
        let h2 = check(
            &cache,
            None,
            &actix_web::test::TestRequest::post()
                .uri("https://q.example/v1/concerts/tour/join")
                .insert_header(json)
                .insert_header(("origin", "https://q.example"))
                .to_http_request(),
        );
        assert!(h2.is_ok(), "an HTTP/2 request's authority is its Host");
    }

    #[test]
    fn the_own_origin_is_the_public_url_s_or_the_host_the_client_addressed() {
        let public = crate::gateway::state::public_origin(Some("https://queue.example.com/base"));
        assert!(own_origin("https://queue.example.com", public.as_ref(), Some("10.0.0.7:8080")));
        assert!(!own_origin("http://queue.example.com", public.as_ref(), Some("10.0.0.7:8080")), "another scheme");
        assert!(own_origin("http://127.0.0.1:8080", None, Some("127.0.0.1:8080")));
        assert!(own_origin("https://q.example", None, Some("q.example")), "the scheme's default port");
        assert!(own_origin("https://q.example", None, Some("Q.example:443")));
        assert!(!own_origin("http://127.0.0.1:9090", None, Some("127.0.0.1:8080")), "another port");
        assert!(!own_origin("https://evil.example", None, Some("q.example")));
        assert!(!own_origin("null", None, Some("q.example")), "an opaque origin is nobody's");
        assert!(!own_origin("https://q.example", None, None));
        assert!(!own_origin("https://q.example", None, Some("q.example/x")), "a Host with a path is no host");
    }
}
