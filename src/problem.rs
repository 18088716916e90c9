//! The one place where error kinds become HTTP statuses and RFC 9457 problem details.

use actix_web::http::{header, StatusCode};
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;

/// Everything a handler can answer besides success. Each variant is one HTTP status.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    Conflict(String),
    /// 403 for a lane's access: the slug says which refusal (`code-required`, `code-refused`,
    /// `claim-missing`), so a client can tell the fan what to do.
    #[error("{detail}")]
    LaneRefused { slug: &'static str, detail: String },
    /// 410: the concert is sold out; the detail is its `soldOutMessage`.
    #[error("{0}")]
    SoldOut(String),
    #[error("the request body did not arrive in time")]
    RequestTimeout,
    #[error("this endpoint answers {allow} only")]
    MethodNotAllowed { allow: String },
    #[error("request body is larger than {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("request body must be application/json")]
    UnsupportedMediaType,
    /// 415 for a `PATCH` whose body is not a JSON Merge Patch; the answer says what it takes
    /// (`Accept-Patch`, RFC 5789).
    #[error("a PATCH body must be application/merge-patch+json (RFC 7396 JSON Merge Patch)")]
    NotMergePatch,
    /// 412: `If-Match` names a copy of the resource that is no longer the stored one.
    #[error("{0}")]
    PreconditionFailed(String),
    #[error("too many requests")]
    RateLimited { retry_after_secs: u64 },
    /// 429 (problem type `rate-limited`) once the wrong lane codes from a client address or for
    /// a lane spent their budget (src/store/code_bind.lua).
    #[error("too many wrong codes from this address or for this lane; try again in {retry_after_secs} s")]
    CodeBudgetSpent { retry_after_secs: u64 },
    #[error("{detail}")]
    Unavailable { detail: String, retry_after_secs: u64 },
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

impl ApiError {
    /// 503 with Retry-After, for passing trouble with Kafka or Redis.
    pub fn unavailable(detail: impl Into<String>) -> Self {
        ApiError::Unavailable { detail: detail.into(), retry_after_secs: 1 }
    }

    /// 503 with a Retry-After of 1 to 5 s, at random: when many fans are turned away at once (a
    /// slow Redis, a full status budget), they do not all come back in the same second.
    pub fn shed(detail: impl Into<String>) -> Self {
        let jitter = u64::from(uuid::Uuid::new_v4().as_bytes()[0] % 5);
        ApiError::Unavailable { detail: detail.into(), retry_after_secs: 1 + jitter }
    }

    /// The problem `type` slug and `title` of this error.
    fn kind(&self) -> (&'static str, &'static str) {
        match self {
            ApiError::BadRequest(_) => ("bad-request", "Bad request"),
            ApiError::Unauthorized(_) => ("unauthorized", "Unauthorized"),
            ApiError::NotFound(_) => ("not-found", "Not found"),
            ApiError::Forbidden(_) => ("forbidden", "Forbidden"),
            ApiError::Conflict(_) => ("conflict", "Conflict"),
            ApiError::LaneRefused { slug, .. } => (slug, "Forbidden"),
            ApiError::SoldOut(_) => ("sold-out", "Sold out"),
            ApiError::RequestTimeout => ("request-timeout", "Request timeout"),
            ApiError::MethodNotAllowed { .. } => ("method-not-allowed", "Method not allowed"),
            ApiError::PayloadTooLarge { .. } => ("payload-too-large", "Payload too large"),
            ApiError::UnsupportedMediaType | ApiError::NotMergePatch => {
                ("unsupported-media-type", "Unsupported media type")
            }
            ApiError::PreconditionFailed(_) => ("precondition-failed", "Precondition failed"),
            ApiError::RateLimited { .. } | ApiError::CodeBudgetSpent { .. } => ("rate-limited", "Too many requests"),
            ApiError::Unavailable { .. } => ("unavailable", "Service unavailable"),
            ApiError::Internal(_) => ("internal", "Internal server error"),
        }
    }

    fn retry_after(&self) -> Option<u64> {
        match self {
            ApiError::RateLimited { retry_after_secs }
            | ApiError::CodeBudgetSpent { retry_after_secs }
            | ApiError::Unavailable { retry_after_secs, .. } => Some(*retry_after_secs),
            _ => None,
        }
    }
}

/// RFC 9457 problem details body.
#[derive(Debug, Serialize)]
pub struct Problem<'a> {
    #[serde(rename = "type")]
    pub kind: String,
    pub title: &'a str,
    pub status: u16,
    pub detail: String,
}

/// Problem type URIs are URNs under this prefix; docs/reference-http.md lists them.
pub const PROBLEM_TYPE_PREFIX: &str = "urn:queuegate:problem:";

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::LaneRefused { .. } => StatusCode::FORBIDDEN,
            ApiError::SoldOut(_) => StatusCode::GONE,
            ApiError::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            ApiError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType | ApiError::NotMergePatch => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::PreconditionFailed(_) => StatusCode::PRECONDITION_FAILED,
            ApiError::RateLimited { .. } | ApiError::CodeBudgetSpent { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        if let ApiError::Internal(e) = self {
            // Logged here, once, with its cause chain; the client gets no internals.
            tracing::error!(error = format!("{e:#}"), "request failed");
        }
        let (slug, title) = self.kind();
        let body = Problem {
            kind: format!("{PROBLEM_TYPE_PREFIX}{slug}"),
            title,
            status: status.as_u16(),
            detail: match self {
                ApiError::Internal(_) => "the request could not be completed; it is safe to retry".to_owned(),
                other => other.to_string(),
            },
        };
        let mut resp = HttpResponse::build(status);
        resp.content_type("application/problem+json");
        if let Some(secs) = self.retry_after() {
            resp.insert_header((header::RETRY_AFTER, secs.to_string()));
        }
        match self {
            ApiError::Unauthorized(_) => {
                resp.insert_header((header::WWW_AUTHENTICATE, "Bearer"));
            }
            ApiError::MethodNotAllowed { allow } => {
                resp.insert_header((header::ALLOW, allow.as_str()));
            }
            ApiError::NotMergePatch => {
                resp.insert_header(("accept-patch", MERGE_PATCH));
            }
            _ => {}
        }
        resp.json(body)
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> Self {
        tracing::warn!(error = %e, "Redis unavailable");
        ApiError::shed("the queue store is unavailable; retry shortly")
    }
}

/// Largest request body accepted on either listener (413 above it).
pub const MAX_BODY_BYTES: usize = 4096;

/// Largest body of a codes upload (`POST …/lanes/{lane}/codes`): 10,000 codes of up to 64
/// characters, quoted, with room to spare.
pub const MAX_CODES_BODY_BYTES: usize = 1 << 20;

/// How long a request body may take to arrive, on either listener: a client that trickles its
/// body holds a connection and a worker's attention, so it gets 408 instead.
pub const BODY_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// The one way a handler reads a JSON body (public and admin listeners alike): at most
/// [`MAX_BODY_BYTES`] (413, before reading when `Content-Length` says so), within
/// [`BODY_READ_TIMEOUT`] (408), `application/json` or `+json` (415), deserialised (400 naming
/// the field). An empty body is `empty` when given, else 400. Read by hand instead of by actix's
/// JSON extractor, which has no read timeout and runs before the handler can check credentials:
/// call this only after the request's credentials have been checked.
pub async fn read_json<T: serde::de::DeserializeOwned>(
    req: &actix_web::HttpRequest,
    payload: actix_web::web::Payload,
    empty: Option<T>,
) -> Result<T, ApiError> {
    read_json_up_to(req, payload, empty, MAX_BODY_BYTES).await
}

/// [`read_json`] with a larger `limit`, for the one admin body that carries bulk data (a
/// lane's codes, [`MAX_CODES_BODY_BYTES`]).
pub async fn read_json_up_to<T: serde::de::DeserializeOwned>(
    req: &actix_web::HttpRequest,
    mut payload: actix_web::web::Payload,
    empty: Option<T>,
    limit: usize,
) -> Result<T, ApiError> {
    use actix_web::http::header;
    use futures_util::StreamExt;
    let declared = req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(ApiError::PayloadTooLarge { limit });
    }
    let read = async {
        let mut body = actix_web::web::BytesMut::new();
        while let Some(chunk) = payload.next().await {
            let chunk = chunk.map_err(|e| ApiError::BadRequest(format!("request body could not be read: {e}")))?;
            if body.len() + chunk.len() > limit {
                return Err(ApiError::PayloadTooLarge { limit });
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    };
    let body = tokio::time::timeout(BODY_READ_TIMEOUT, read).await.map_err(|_| ApiError::RequestTimeout)??.freeze();
    // An admin change keeps what it read for its audit record (the route's guard asks for it).
    if let Some(kept) = actix_web::HttpMessage::extensions_mut(req).get_mut::<KeptBody>() {
        kept.0 = Some(body.clone());
    }
    if body.is_empty() {
        return empty.ok_or_else(|| ApiError::BadRequest("request body is not valid: a JSON body is required".into()));
    }
    let json = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(is_json);
    if !json {
        return Err(ApiError::UnsupportedMediaType);
    }
    parse_json(&body)
}

/// The body [`read_json`] read, kept for a request whose extensions hold one (an admin change,
/// for its audit record: `admin::audit`); the bytes are shared, not copied.
#[derive(Debug, Default)]
pub struct KeptBody(pub Option<actix_web::web::Bytes>);

/// The one media type a `PATCH` takes (RFC 7396).
pub const MERGE_PATCH: &str = "application/merge-patch+json";

/// Whether a `Content-Type` value is JSON: `application/json` or a `+json` type, any parameters.
pub fn is_json(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or("").trim();
    essence.eq_ignore_ascii_case("application/json") || essence.to_ascii_lowercase().ends_with("+json")
}

/// For `#[serde(default, deserialize_with = "crate::problem::present")]`: an optional field
/// that, when present, must hold a value, so `null` is 400 like any other wrong type (the
/// OpenAPI document does not call these fields nullable).
pub fn present<'de, D: serde::Deserializer<'de>, T: serde::Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

/// Deserialises a JSON body from its bytes; the 400 detail names the offending field's path
/// (`state: unknown variant ...`), which serde alone does not.
pub fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_path_to_error::deserialize(&mut serde_json::Deserializer::from_slice(body)).map_err(body_error)
}

/// The 400 of a body that does not deserialise, naming the field's path where there is one.
fn body_error(e: serde_path_to_error::Error<serde_json::Error>) -> ApiError {
    let path = e.path().to_string();
    if path == "." {
        ApiError::BadRequest(format!("request body is not valid: {}", e.inner()))
    } else {
        ApiError::BadRequest(format!("request body is not valid: {path}: {}", e.inner()))
    }
}

/// Maps query-string errors to 400.
pub fn query_error(err: actix_web::error::QueryPayloadError) -> ApiError {
    ApiError::BadRequest(format!("query string is not valid: {err}"))
}

/// The extractor settings both listeners use for paths and query strings: their errors (a bad
/// id in the path names the field; a query value out of range) are 400 problem details.
pub fn configure_extractors(cfg: &mut actix_web::web::ServiceConfig) {
    use actix_web::error::PathError;
    cfg.app_data(actix_web::web::PathConfig::default().error_handler(|err, _| {
        let detail = match err {
            PathError::Deserialize(e) => e.to_string(),
            other => other.to_string(),
        };
        ApiError::BadRequest(detail).into()
    }))
    .app_data(actix_web::web::QueryConfig::default().error_handler(|err, _| query_error(err).into()));
}
