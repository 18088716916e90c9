//! Route tables: each listener declares its endpoints once, as a table of [`Endpoint`]s
//! (`gateway::ROUTES`, `admin::ROUTES`), and everything else reads that table: the router
//! ([`register`]), the metrics' route labels ([`label`]), the `Allow` header of a 405, and the
//! test that keeps `/openapi.json` equal to what is served (src/startup/route_tables.rs, above
//! both listeners).
//!
//! Requests that match no endpoint get a problem+json 404; a path that exists with another
//! method gets a problem+json 405 with `Allow`.

use actix_web::http::Method;
use actix_web::{web, HttpResponse};

use crate::problem::ApiError;

/// Largest page of a listing (the admin listener's queue, sessions and audit lists).
pub const MAX_PAGE: u64 = 1000;

/// Largest `offset` of the queue and sessions listings (documented as the schema's maximum).
pub const MAX_OFFSET: u64 = 1_000_000_000;

/// `?offset&limit` of a listing (the queue, the sessions, the audit list): `offset` 0 by
/// default, `limit` 100.
#[derive(Debug, serde::Deserialize)]
pub struct Page {
    #[serde(default)]
    pub offset: u64,
    #[serde(default = "Page::default_limit")]
    pub limit: u64,
}

impl Page {
    fn default_limit() -> u64 {
        100
    }

    /// `limit` 1..=[`MAX_PAGE`] and `offset` 0..=`max_offset`, or a 400 naming the bound.
    pub fn checked(&self, max_offset: u64) -> Result<&Self, ApiError> {
        if self.limit == 0 || self.limit > MAX_PAGE {
            return Err(ApiError::BadRequest(format!("limit must be between 1 and {MAX_PAGE}")));
        }
        if self.offset > max_offset {
            return Err(ApiError::BadRequest(format!("offset must be between 0 and {max_offset}")));
        }
        Ok(self)
    }
}

/// One method on one path pattern, and the handler that serves it.
pub struct Endpoint {
    pub method: Method,
    /// The path pattern, as actix and the OpenAPI document write it (`/v1/concerts/{concertId}/queue`).
    pub path: &'static str,
    /// Attaches the handler to a route that already carries the method guard.
    pub handler: fn(actix_web::Route) -> actix_web::Route,
}

/// Registers every endpoint of `table` (one resource per path, so a path with several methods
/// answers 405 with `Allow` for the others), and the problem+json 404 for everything else.
pub fn register(cfg: &mut web::ServiceConfig, table: &'static [Endpoint]) {
    for resource in resources(table, "", |_| true, |_, r| r) {
        cfg.service(resource);
    }
    cfg.default_service(web::to(not_found));
}

/// One resource per distinct path of the endpoints of `table` that `keep` selects, each
/// registered at its path with `prefix` taken off (for a scope mounted at `prefix`); `wrap`
/// may put middleware around each endpoint's route (the admin routes' own guard).
pub fn resources(
    table: &'static [Endpoint],
    prefix: &'static str,
    keep: impl Fn(&Endpoint) -> bool,
    wrap: impl Fn(&'static Endpoint, actix_web::Route) -> actix_web::Route,
) -> Vec<actix_web::Resource> {
    let mut paths: Vec<&'static str> = table.iter().filter(|e| keep(e)).map(|e| e.path).collect();
    paths.dedup();
    paths
        .into_iter()
        .map(|path| {
            let allow = allowed(table, path);
            let mut resource = web::resource(path.strip_prefix(prefix).unwrap_or(path));
            for e in table.iter().filter(|e| e.path == path) {
                resource = resource.route(wrap(e, (e.handler)(web::route().method(e.method.clone()))));
            }
            resource.default_service(web::to(move || {
                let allow = allow.clone();
                async move { Err::<HttpResponse, _>(ApiError::MethodNotAllowed { allow }) }
            }))
        })
        .collect()
}

/// The problem+json 404 of a path no endpoint serves.
pub async fn not_found(req: actix_web::HttpRequest) -> Result<HttpResponse, ApiError> {
    Err(ApiError::NotFound(format!("no endpoint {}", req.path())))
}

/// The `Allow` value of `path`: its methods in table order.
fn allowed(table: &[Endpoint], path: &str) -> String {
    table.iter().filter(|e| e.path == path).map(|e| e.method.as_str()).collect::<Vec<_>>().join(", ")
}

/// The route label of a request path: its pattern when it matches an endpoint of `table`, else
/// "unmatched" (so label values stay bounded whatever paths clients send).
///
/// Matched segment by segment instead of asking actix for `match_pattern()`, which runs the
/// router's regexes again: a profile of the join path showed ~6% of the gateway's CPU there.
pub fn label(table: &'static [Endpoint], path: &str) -> &'static str {
    table.iter().find(|e| matches(e.path, path)).map_or("unmatched", |e| e.path)
}

/// Whether `path` matches `pattern`, where a `{name}` segment matches any non-empty segment.
pub fn matches(pattern: &str, path: &str) -> bool {
    let mut want = pattern.split('/');
    let mut got = path.split('/');
    loop {
        match (want.next(), got.next()) {
            (None, None) => return true,
            (Some(w), Some(g)) if w.starts_with('{') => {
                if g.is_empty() {
                    return false;
                }
            }
            (Some(w), Some(g)) if w == g => {}
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn patterns_match_whole_segments_only() {
        assert!(matches("/", "/"));
        assert!(matches("/v1/concerts/{concertId}/queue", "/v1/concerts/tour-1/queue"));
        assert!(!matches("/v1/concerts/{concertId}/queue", "/v1/concerts//queue"));
        assert!(!matches("/v1/concerts/{concertId}/queue", "/v1/concerts/c/queue/u"));
        assert!(!matches("/v1/concerts/{concertId}/queue/{userId}", "/v1/concerts/c/queue"));
        assert!(!matches("/readyz", "/readyzz"));
    }

    #[test]
    fn a_page_takes_limits_from_one_to_the_max_and_offsets_up_to_the_listings_bound() {
        let page = |offset, limit| super::Page { offset, limit };
        assert!(page(0, 1).checked(5).is_ok() && page(5, super::MAX_PAGE).checked(5).is_ok());
        for (offset, limit, named) in [(0, 0, "limit"), (0, super::MAX_PAGE + 1, "limit"), (6, 1, "offset")] {
            let e = page(offset, limit).checked(5).unwrap_err().to_string();
            assert!(e.contains(named), "{offset}/{limit}: {e}");
        }
        let q = actix_web::web::Query::<super::Page>::from_query("lane=fanclub").unwrap().into_inner();
        assert_eq!((q.offset, q.limit), (0, 100), "defaults, and another listing's parameter is left to it");
    }
}
