//! The public front door: fans join a concert's queue and read where they stand.
//!
//! A join is validated, checked against the cached concert state (no Redis round trip), produced
//! to Kafka and answered 202 only once the broker acknowledged it. Reading a status needs the
//! entry token handed out with the 202.
//!
//! The public listener, one way down: this file holds its route table ([`ROUTES`]), the join,
//! the challenge, `/openapi.json` and the guard of state-changing requests; the other handlers
//! are in `status`, `events` and `gate_check` (and the pages in `crate::pages`). They all take
//! the listener's state, [`state::Gateway`], which imports no handler; below it are the
//! listener's own parts ([`views`], [`limits`], [`mod@challenge`], `published`) and the domain
//! modules (`crate::gate`, `crate::fan_status`, `crate::store`, …), none of which imports a
//! listener.

use std::time::Instant;

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::{header, Method};
use actix_web::middleware::Next;
use actix_web::{web, HttpRequest, HttpResponse, ResponseError};
use serde::{Deserialize, Serialize};

use crate::concerts::JoinCheck;
use crate::identity::bearer;
use crate::ids::{ConcertId, EntryRecord, Lane, UserId};
use crate::problem::ApiError;
use crate::producer::ProduceError;
use crate::routes::Endpoint;
use crate::store::{valid_code, MAX_CODE_CHARS};
use crate::trace::TraceContext;

pub mod challenge;
mod events;
mod gate_check;
pub mod limits;
mod published;
pub mod state;
mod status;
pub mod views;
pub mod writes;

pub use state::{Gateway, MAX_STATUS_READS_IN_FLIGHT, MAX_VIEW_FANS};

/// The public listener's endpoints: the router, the metrics' route labels and the OpenAPI
/// test all read this table.
pub static ROUTES: &[Endpoint] = &[
    Endpoint { method: Method::GET, path: "/", handler: |r| r.to(crate::pages::home) },
    Endpoint { method: Method::GET, path: "/c/{concertId}", handler: |r| r.to(crate::pages::room) },
    Endpoint { method: Method::GET, path: "/assets/room.js", handler: |r| r.to(crate::pages::room_js) },
    Endpoint { method: Method::GET, path: "/assets/pages.css", handler: |r| r.to(crate::pages::css) },
    Endpoint { method: Method::GET, path: "/favicon.ico", handler: |r| r.to(crate::pages::favicon) },
    Endpoint { method: Method::GET, path: "/v1/concerts", handler: |r| r.to(crate::pages::concerts) },
    Endpoint { method: Method::GET, path: "/v1/concerts/{concertId}", handler: |r| r.to(crate::pages::concert) },
    Endpoint { method: Method::POST, path: "/v1/concerts/{concertId}/queue", handler: |r| r.to(join) },
    Endpoint {
        method: Method::GET,
        path: "/v1/concerts/{concertId}/queue/{userId}",
        handler: |r| r.to(status::status),
    },
    Endpoint {
        method: Method::GET,
        path: "/v1/concerts/{concertId}/queue/{userId}/events",
        handler: |r| r.to(events::events),
    },
    Endpoint {
        method: Method::POST,
        path: "/v1/concerts/{concertId}/queue/{userId}/events/ticket",
        handler: |r| r.to(events::ticket),
    },
    Endpoint {
        method: Method::POST,
        path: "/v1/concerts/{concertId}/admission/complete",
        handler: |r| r.to(status::complete),
    },
    Endpoint { method: Method::GET, path: "/v1/concerts/{concertId}/fairness", handler: |r| r.to(status::fairness) },
    Endpoint { method: Method::GET, path: "/v1/concerts/{concertId}/gate", handler: |r| r.to(gate_check::check) },
    Endpoint { method: Method::GET, path: "/v1/concerts/{concertId}/challenge", handler: |r| r.to(challenge) },
    Endpoint { method: Method::GET, path: "/.well-known/jwks.json", handler: |r| r.to(status::jwks) },
    Endpoint { method: Method::GET, path: "/openapi.json", handler: |r| r.to(openapi) },
];

/// Registers the public routes.
pub fn routes(cfg: &mut web::ServiceConfig) {
    crate::problem::configure_extractors(cfg);
    crate::routes::register(cfg, ROUTES);
}

async fn openapi(gw: web::Data<Gateway>) -> HttpResponse {
    HttpResponse::Ok().content_type("application/json").body(gw.openapi.clone())
}

/// `GET /v1/concerts/{concertId}/challenge` — a challenge to solve before an anonymous join.
/// 404 for an unknown concert; difficulty 0 when the concert asks for no proof of work.
async fn challenge(gw: web::Data<Gateway>, concert: web::Path<ConcertId>) -> Result<HttpResponse, ApiError> {
    let concert = concert.into_inner();
    let settings = gw.cache.settings(&concert).ok_or_else(|| ApiError::NotFound(format!("no concert {concert}")))?;
    let (challenge, expires_ms) = gw.challenges.issue(&concert, settings.pow_difficulty, crate::clock::now_ms());
    Ok(HttpResponse::Ok().insert_header((header::CACHE_CONTROL, "no-store")).json(ChallengeView {
        challenge,
        difficulty: settings.pow_difficulty,
        expires_at: crate::clock::rfc3339(expires_ms),
    }))
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ChallengeView {
    challenge: String,
    difficulty: u8,
    expires_at: String,
}

/// The middleware of the state-changing requests ([`writes`]): refuses a public request that is
/// not JSON (415) or comes from a foreign origin (403), before any handler runs.
pub async fn writes_guard(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    if *req.method() == Method::GET || *req.method() == Method::HEAD {
        return next.call(req).await.map(ServiceResponse::map_into_left_body);
    }
    // Only the endpoints the table serves with this method: a method a path does not serve
    // stays a 405 with Allow, an unknown path a 404.
    if !ROUTES.iter().any(|e| e.method == req.method() && crate::routes::matches(e.path, req.path())) {
        return next.call(req).await.map(ServiceResponse::map_into_left_body);
    }
    let Some(gw) = req.app_data::<web::Data<Gateway>>().cloned() else {
        return next.call(req).await.map(ServiceResponse::map_into_left_body);
    };
    match writes::check(&gw.cache, gw.public_origin.as_ref(), req.request()) {
        Ok(()) => next.call(req).await.map(ServiceResponse::map_into_left_body),
        Err(e) => {
            let res = e.error_response();
            Ok(req.into_response(res).map_into_right_body())
        }
    }
}

/// A new anonymous fan's proof of work for a concert that asks for `difficulty` bits: a valid
/// solution of a challenge of this concert, used once (403 otherwise).
async fn check_proof_of_work(
    gw: &Gateway,
    concert: &ConcertId,
    difficulty: u8,
    solved: Option<&challenge::Solved>,
    now_ms: i64,
) -> Result<(), ApiError> {
    let solved = solved.ok_or_else(|| {
        ApiError::Forbidden(format!(
            "proof of work: concert {concert} asks for one; solve GET /v1/concerts/{concert}/challenge and send it as pow"
        ))
    })?;
    let verified = gw.challenges.verify(concert, solved, difficulty, now_ms)?;
    if !gw.store.claim_pow_nonce(concert, &verified.nonce, verified.expires_ms).await? {
        return Err(ApiError::Forbidden("proof of work: this challenge was used already; fetch a new one".into()));
    }
    Ok(())
}

/// A join's body: empty, `{}`, or `{"userId"}` (required in body mode, an optional restatement
/// of the identity in jwt and trusted-header mode, refused in anonymous mode).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct JoinBody {
    #[serde(default, deserialize_with = "crate::problem::present")]
    user_id: Option<UserId>,
    /// A solved proof-of-work challenge, where the concert asks for one.
    #[serde(default, deserialize_with = "crate::problem::present")]
    pow: Option<challenge::Solved>,
    /// The lane to join (`general` when absent).
    #[serde(default, deserialize_with = "crate::problem::present")]
    lane: Option<Lane>,
    /// The lane's code, where the lane asks for one.
    #[serde(default, deserialize_with = "crate::problem::present")]
    code: Option<String>,
}

/// A code held for a join in flight: bound for good once the join is durable, freed when
/// Kafka did not take it ([`settle_code`]).
struct HeldCode<'a> {
    lane: &'a Lane,
    code: &'a str,
}

/// The client address as code failure budgets key it: the join rate limit's key (an IPv6
/// address by its /64), an opaque hop by a hash of it.
fn client_label(client: Option<crate::identity::ClientKey>) -> String {
    use crate::identity::ClientKey;
    match client {
        Some(ClientKey::Ip(ip)) => ip.to_string(),
        Some(ClientKey::Opaque(hop)) => {
            use sha2::Digest;
            format!("h:{}", &crate::fairness::hex(&sha2::Sha256::digest(hop.as_bytes()))[..32])
        }
        None => "unknown".to_owned(),
    }
}

/// Whether `user` may take a place in `lane` of `concert` (its access: open, a code, a claim of
/// the fan's identity token); 403 with the reason otherwise, 429 once the client's or the lane's
/// budget of wrong codes is spent. A code newly held for this join comes back to be settled.
#[allow(clippy::too_many_arguments)]
async fn check_lane_access<'a>(
    gw: &Gateway,
    req: &HttpRequest,
    concert: &ConcertId,
    lane: &'a crate::concerts::LaneSettings,
    user: &UserId,
    code: Option<&'a str>,
    client: &str,
    now_ms: i64,
) -> Result<Option<HeldCode<'a>>, ApiError> {
    use crate::concerts::LaneAccess;
    use crate::store::CodeCheck;
    let name = &lane.name;
    match &lane.access {
        LaneAccess::Open => Ok(None),
        LaneAccess::Code => {
            let refused = |slug, detail: String| Err(ApiError::LaneRefused { slug, detail });
            match gw.store.bind_code(concert, name, user, code, &gw.codes, client, gw.code_budgets, now_ms).await? {
                CodeCheck::Ok | CodeCheck::Elsewhere => Ok(None),
                CodeCheck::Held => Ok(code.map(|code| HeldCode { lane: name, code })),
                CodeCheck::Required => {
                    refused("code-required", format!("lane {name} asks for a code: send it as code"))
                }
                // Unknown and another fan's alike: a guess learns nothing from the answer.
                CodeCheck::Refused => refused(
                    "code-refused",
                    format!("this code does not let a fan into lane {name}: it is not one of the lane's codes, or another fan's"),
                ),
                CodeCheck::Limited { retry_after_ms } => Err(ApiError::CodeBudgetSpent {
                    retry_after_secs: retry_after_ms.div_ceil(1000).max(1),
                }),
            }
        }
        LaneAccess::Claim { name: claim, value } => {
            let holds = gw.identity.mode() == crate::config::FanIdentityMode::Jwt
                && bearer(req).is_some_and(|t| crate::identity::jwt::JwtVerifier::has_claim(t, claim, value));
            if holds {
                Ok(None)
            } else {
                Err(ApiError::LaneRefused {
                    slug: "claim-missing",
                    detail: format!("lane {name} is for fans whose identity token has {claim} = {value}"),
                })
            }
        }
    }
}

/// Settles a code held for the join `rec`: bound for good when the join is `durable`, freed when
/// Kafka did not take it, so the fan's retry (in anonymous mode under a new id) may use it. A
/// join answered 503 after a delivery timeout may still land; its place then holds no code, and
/// the code is one fan's again. When Redis cannot be reached, the hold lapses by itself.
async fn settle_code(gw: &Gateway, rec: &EntryRecord, held: &HeldCode<'_>, durable: bool) {
    match gw.store.settle_code(&rec.concert_id, held.lane, &rec.user_id, held.code, &gw.codes, durable).await {
        Ok(true) => {}
        Ok(false) => tracing::warn!(concert = %rec.concert_id, lane = %held.lane, user = %rec.user_id, durable,
            "a code's hold lapsed before its join was settled; another fan took the code"),
        Err(e) => tracing::warn!(concert = %rec.concert_id, lane = %held.lane, error = %e, durable,
            "a held code could not be settled; its hold lapses by itself"),
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct JoinAccepted<'a> {
    entry_id: &'a str,
    concert_id: &'a ConcertId,
    user_id: &'a UserId,
    status: &'static str,
    token: String,
}

/// `POST /v1/concerts/{concertId}/queue` — 202 once Kafka has the join.
async fn join(
    gw: web::Data<Gateway>,
    req: HttpRequest,
    concert_id: web::Path<ConcertId>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let concert_id = concert_id.into_inner();
    let body: JoinBody = crate::problem::read_json(&req, payload, Some(JoinBody::default())).await?;
    if let Some(pow) = &body.pow {
        pow.check_lengths()?;
    }
    if body.code.as_deref().is_some_and(|c| !valid_code(c)) {
        return Err(ApiError::BadRequest(format!(
            "request body is not valid: code must be 1 to {MAX_CODE_CHARS} visible ASCII characters"
        )));
    }
    let client = gw.identity.proxies().client_key(&req);
    gw.limits.join_from(client.clone())?;
    let now_ms = crate::clock::now_ms();
    let joiner = gw.identity.identify(&req, body.user_id, &concert_id, &gw.tokens, now_ms)?;
    let user_id = joiner.user;
    gw.limits.join_of(&concert_id, &user_id)?;
    let pow_difficulty = match gw.cache.join_check(&concert_id) {
        JoinCheck::Open { pow_difficulty } => pow_difficulty,
        JoinCheck::SoldOut(message) => return Err(ApiError::SoldOut(message)),
        JoinCheck::Refused(state) => {
            return Err(ApiError::Conflict(format!(
                "concert {concert_id} is {}; joins are not accepted",
                state.as_str()
            )))
        }
        JoinCheck::Full { max_waiting } => {
            return Err(ApiError::Conflict(format!("concert {concert_id}'s queue is full ({max_waiting} waiting)")))
        }
        JoinCheck::Ended { closes_at } => {
            return Err(ApiError::Conflict(format!(
                "concert {concert_id} stopped taking joins at {}",
                crate::clock::rfc3339(closes_at)
            )))
        }
        JoinCheck::Maintenance => {
            return Err(ApiError::Unavailable {
                detail: format!(
                    "concert {concert_id} is not taking joins for now (maintenance); please come back later"
                ),
                retry_after_secs: 30,
            })
        }
        JoinCheck::NotLoaded => return Err(ApiError::unavailable("concerts are still loading; retry shortly")),
        JoinCheck::Unknown => return Err(ApiError::NotFound(format!("no concert {concert_id}"))),
    };

    let lane_name = body.lane.unwrap_or_else(Lane::general);
    let lane = gw
        .cache
        .lane(&concert_id, &lane_name)
        .ok_or_else(|| ApiError::NotFound(format!("concert {concert_id} has no lane {lane_name}")))?;

    if joiner.new_anonymous && pow_difficulty > 0 {
        check_proof_of_work(&gw, &concert_id, pow_difficulty, body.pow.as_ref(), now_ms).await?;
    }
    let held =
        check_lane_access(&gw, &req, &concert_id, &lane, &user_id, body.code.as_deref(), &client_label(client), now_ms)
            .await?;

    let trace = TraceContext::from_request(&req);
    let rec = EntryRecord {
        entry_id: uuid::Uuid::now_v7().to_string(),
        concert_id,
        user_id,
        joined_at_ms: now_ms,
        lane: (!lane_name.is_general()).then_some(lane_name),
    };
    let started = Instant::now();
    let sent = {
        // Decremented when dropped, also when the client goes away mid-join (actix drops the
        // handler's future then), so the gauge cannot leak.
        let _in_flight = crate::metrics::GaugeGuard::inc(&gw.metrics.produce_in_flight);
        gw.producer.send(&rec, &[("traceparent", &trace.header())]).await
    };
    let outcome = match &sent {
        Ok(_) => "acked",
        Err(ProduceError::Overloaded) => "overloaded",
        Err(ProduceError::QueueFull) => "queue_full",
        Err(ProduceError::Timeout) => "timeout",
        Err(ProduceError::Kafka(_)) => "kafka_error",
    };
    gw.metrics.produce_duration.with_label_values(&[outcome]).observe(started.elapsed().as_secs_f64());
    if let Some(h) = &held {
        settle_code(&gw, &rec, h, sent.is_ok()).await;
    }
    match sent {
        Ok(d) => {
            tracing::debug!(trace_id = %trace.trace_id, concert = %rec.concert_id, user = %rec.user_id,
                partition = d.partition, offset = d.offset, "join accepted");
        }
        Err(e) => {
            gw.metrics.produce_errors.with_label_values(&[outcome]).inc();
            tracing::warn!(trace_id = %trace.trace_id, concert = %rec.concert_id, error = %e, "join not accepted");
            return Err(ApiError::unavailable(format!("the join could not be made durable: {e}")));
        }
    }
    let token = gw.tokens.issue(&rec.concert_id, &rec.user_id, now_ms);
    Ok(HttpResponse::Accepted()
        .insert_header((header::LOCATION, format!("/v1/concerts/{}/queue/{}", rec.concert_id, rec.user_id)))
        .json(JoinAccepted {
            entry_id: &rec.entry_id,
            concert_id: &rec.concert_id,
            user_id: &rec.user_id,
            status: "pending",
            token,
        }))
}

#[cfg(test)]
mod tests {
    use crate::config::FanIdentityMode as M;
    use crate::openapi::openapi_for;

    fn join_schema(mode: M) -> serde_json::Value {
        let doc: serde_json::Value = serde_json::from_str(&openapi_for(mode)).unwrap();
        assert!(doc["info"]["description"].as_str().unwrap().contains(mode.as_str()));
        doc["components"]["schemas"]["JoinRequest"].clone()
    }

    #[test]
    fn the_served_join_body_is_what_the_gateway_s_identity_mode_accepts() {
        let body = join_schema(M::Body);
        assert_eq!(body["required"], serde_json::json!(["userId"]), "{{}} is refused in body mode");
        let doc: serde_json::Value = serde_json::from_str(&openapi_for(M::Body)).unwrap();
        assert_eq!(doc["paths"]["/v1/concerts/{concertId}/queue"]["post"]["requestBody"]["required"], true);
        let anonymous = join_schema(M::Anonymous);
        assert!(anonymous["properties"].get("userId").is_none(), "{anonymous}");
        assert_eq!(anonymous["not"]["required"], serde_json::json!(["userId"]));
        for mode in [M::Jwt, M::TrustedHeader] {
            let s = join_schema(mode);
            assert!(s["properties"].get("userId").is_some() && s.get("required").is_none(), "{s}");
        }
        assert_eq!(
            body["properties"]["pow"]["properties"]["solution"]["maxLength"],
            super::challenge::MAX_SOLUTION_LEN
        );
        assert_eq!(
            body["properties"]["pow"]["properties"]["challenge"]["maxLength"],
            super::challenge::MAX_CHALLENGE_LEN
        );
    }
}
