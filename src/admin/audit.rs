//! Who did what: every admin change that succeeded, recorded (docs/reference-http.md, "The audit trail").
//!
//! The route's guard ([`super::route_guard`]) calls [`record`] after a changing call
//! answered 2xx and before the answer goes out. One Lua call (`src/store/audit.lua`) writes the
//! action into the concert's outbox, from where the relay publishes it as the CloudEvent
//! `dev.queuegate.admin.action` like every other event, and pushes it onto the concert's audit
//! list, newest first, which keeps the last `QUEUEGATE_ADMIN_AUDIT_KEPT` (the oldest is
//! dropped and counted in `queuegate_admin_audit_trimmed_total`). Refused calls (401, 403) and
//! failed ones change nothing and are not recorded: a refused call is logged and counted
//! (`queuegate_admin_refused_total`), and never takes a place in the list, so the
//! lowest-privileged token cannot push real changes out of it.
//!
//! What a record holds: the token's name and role, the method, the route (`PUT
//! /admin/v1/concerts/{concertId}`: method and pattern) and the path called, the concert, the status, the change (the request's JSON body, with secrets redacted:
//! [`redact`]; a code upload only its count) and, for some calls, what came of it (`result`).

use actix_web::{web, HttpMessage, HttpRequest, HttpResponse};
use serde_json::{json, Map, Value};

use super::access::Caller;
use crate::admin::concert_view::existing;
use crate::admin::state::Admin;
use crate::config::ADMIN_AUDIT_KEPT_RANGE;
use crate::ids::ConcertId;
use crate::problem::ApiError;
use crate::routes::{Endpoint, Page};

/// Bodies up to this size are recorded as they were sent (redacted); a larger one by its size.
/// The admin bodies are within 4 KiB but for code uploads, which are recorded by count.
const MAX_RECORDED_BODY: usize = crate::problem::MAX_BODY_BYTES;

/// What a handler says about its change for the record, in place of the body it read
/// (`change`) or beside it (`result`): [`note_change`], [`note_result`].
#[derive(Debug, Default)]
struct Note {
    change: Option<Value>,
    result: Option<Value>,
}

/// Records `change` in place of the request's body (a code upload: the count, not the codes).
pub fn note_change(req: &HttpRequest, change: Value) {
    req.extensions_mut().get_or_insert_with(Note::default).change = Some(change);
}

/// Records what came of the change (`{"admitted": 3}`), never a secret it handed out.
pub fn note_result(req: &HttpRequest, result: Value) {
    req.extensions_mut().get_or_insert_with(Note::default).result = Some(result);
}

/// Records the change `req` made through `e`, answered `status`, by `caller`. Never fails the
/// request: a record that cannot be written is logged with the change's route and counted
/// (`queuegate_admin_actions_total{outcome="failed"}`).
pub(super) async fn record(admin: &Admin, e: &'static Endpoint, caller: &Caller, req: &HttpRequest, status: u16) {
    let Some(concert) = req.match_info().get("concertId").and_then(|c| ConcertId::parse(c).ok()) else {
        // Every changing route names its concert (a unit test of src/admin.rs holds them to it).
        tracing::error!(route = e.path, "an admin change without a concert cannot be recorded");
        admin.metrics.admin_actions.with_label_values(&["failed"]).inc();
        return;
    };
    let action = action(e, caller, req, &concert, status);
    match admin.store.record_admin_action(&concert, &action.to_string(), admin.audit_kept).await {
        Ok(trimmed) => {
            admin.metrics.admin_actions.with_label_values(&["recorded"]).inc();
            admin.metrics.admin_audit_trimmed.inc_by(trimmed);
            tracing::info!(token = %caller.name, role = caller.role.as_str(), method = %e.method, path = req.path(),
                concert = %concert, "admin change recorded");
        }
        Err(err) => {
            admin.metrics.admin_actions.with_label_values(&["failed"]).inc();
            tracing::error!(error = %err, token = %caller.name, method = %e.method, path = req.path(),
                concert = %concert, "an admin change was made but could not be recorded");
        }
    }
}

/// The record of one change (the event's data; the audit list's entry without its id and time).
fn action(e: &Endpoint, caller: &Caller, req: &HttpRequest, concert: &ConcertId, status: u16) -> Value {
    let ext = req.extensions();
    let note = ext.get::<Note>();
    let change = match note.and_then(|n| n.change.clone()) {
        Some(c) => c,
        None => match ext.get::<crate::problem::KeptBody>().and_then(|k| k.0.as_ref()) {
            None => Value::Null,
            Some(b) if b.is_empty() => Value::Null,
            Some(b) if b.len() > MAX_RECORDED_BODY => json!({"bodyBytes": b.len()}),
            Some(b) => serde_json::from_slice(b).map(redact).unwrap_or_else(|_| json!({"bodyBytes": b.len()})),
        },
    };
    let mut out = json!({
        "concertId": concert.as_str(),
        "tokenName": &*caller.name,
        "role": caller.role.as_str(),
        "method": e.method.as_str(),
        // Method and pattern, as OpenAPI names an operation. Not the bare pattern: a string
        // starting with "/" reads as a URL of the API to tools that follow them (schemathesis
        // would call `/admin/v1/concerts/{concertId}` with the braces as the id).
        "route": format!("{} {}", e.method, e.path),
        "path": req.path(),
        "status": status,
        "change": change,
    });
    if let Some(r) = note.and_then(|n| n.result.clone()) {
        out["result"] = r;
    }
    out
}

/// What replaces a secret in a record.
pub const REDACTED: &str = "[redacted]";

/// Keys whose values are secrets wherever they appear in a body.
const SECRET_KEYS: &[&str] = &["secret", "token", "admissionToken", "password", "code"];

/// A body with its secrets taken out, for the record: the values of [`SECRET_KEYS`] become
/// [`REDACTED`], a `codes` list its count, a webhook's `url` its origin (a receiver's path or
/// query is often its credential: `https://hooks.example/services/T0/B0/XXXX`), and any other
/// URL loses the user and password it carries.
pub fn redact(v: Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.into_iter()
                .map(|(k, v)| {
                    let v = if SECRET_KEYS.contains(&k.as_str()) {
                        json!(REDACTED)
                    } else if k == "codes" {
                        v.as_array().map_or(json!(REDACTED), |a| json!({"count": a.len()}))
                    } else if k == "webhooks" {
                        match v {
                            Value::Array(hooks) => Value::Array(hooks.into_iter().map(redact_hook).collect()),
                            other => redact(other),
                        }
                    } else {
                        redact(v)
                    };
                    (k, v)
                })
                .collect::<Map<_, _>>(),
        ),
        Value::Array(a) => Value::Array(a.into_iter().map(redact).collect()),
        Value::String(s) => Value::String(without_userinfo(s)),
        other => other,
    }
}

/// A webhook of a concert's body: its `url` cut to the origin, the rest as [`redact`] does.
fn redact_hook(hook: Value) -> Value {
    let mut hook = redact(hook);
    if let Some(url) = hook.get_mut("url") {
        let origin = url.as_str().and_then(|u| url::Url::parse(u).ok()).map(|u| u.origin().ascii_serialization());
        *url = json!(origin.map_or_else(|| REDACTED.to_owned(), |o| format!("{o}/…")));
    }
    hook
}

/// `s` without the user and password when it is a URL that carries them.
fn without_userinfo(s: String) -> String {
    match url::Url::parse(&s) {
        Ok(mut u) if u.has_host() && (!u.username().is_empty() || u.password().is_some()) => {
            let _ = u.set_username("");
            let _ = u.set_password(None);
            u.to_string()
        }
        _ => s,
    }
}

/// `GET /admin/v1/concerts/{concertId}/audit?offset=0&limit=100` — the concert's recorded
/// changes, newest first: `{"total","offset","actions":[{"eventId","at",…the record but its
/// concertId}]}`.
/// `limit` 1..1000, `offset` 0..the list's cap; one LLEN and one LRANGE of at most `limit`.
pub(super) async fn list(
    admin: web::Data<Admin>,
    id: web::Path<ConcertId>,
    q: web::Query<Page>,
) -> Result<HttpResponse, ApiError> {
    let q = q.checked(*ADMIN_AUDIT_KEPT_RANGE.end())?;
    let c = existing(&admin, &id).await?;
    let (total, entries) = admin.store.admin_actions(&c.id, q.offset, q.limit).await?;
    let actions: Vec<Value> = entries
        .iter()
        .filter_map(|raw| {
            let mut v: Value = serde_json::from_str(raw).ok()?;
            let m = v.as_object_mut()?;
            let outbox_id = m.remove("outboxId")?;
            let outbox_id = outbox_id.as_str()?;
            let ms: i64 = outbox_id.split('-').next()?.parse().ok()?;
            m.insert("eventId".into(), json!(format!("{}/{outbox_id}/0", c.id)));
            // The list is the concert's: its id is in the URL (the event carries it).
            m.remove("concertId");
            m.insert("at".into(), json!(crate::clock::rfc3339(ms)));
            Some(v)
        })
        .collect();
    Ok(HttpResponse::Ok().json(json!({"total": total, "offset": q.offset, "actions": actions})))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_codes_webhook_paths_and_url_passwords_never_reach_the_record() {
        let body = json!({
            "state": "open",
            "name": "Tour",
            "redirectUrl": "https://user:pw@shop.example/book?x=1",
            "webhooks": [
                {"id": "wh_1", "url": "https://hooks.example/services/T0/B0/XXXX", "types": ["dev.queuegate.fan.admitted"], "secret": "whsec_abcd…"},
                {"url": "not a url"}
            ],
            "lanes": [{"name": "fanclub", "share": 1, "access": "code"}],
            "codes": ["ABCDEFGHJK", "MNPQRSTUVW"],
            "admissionToken": "eyJ...",
            "nested": {"token": "t0ken", "list": [{"password": "p"}]},
        });
        let r = redact(body);
        assert_eq!(r["state"], "open");
        assert_eq!(r["name"], "Tour");
        assert_eq!(r["redirectUrl"], "https://shop.example/book?x=1");
        assert_eq!(r["webhooks"][0]["url"], "https://hooks.example/…");
        assert_eq!(r["webhooks"][0]["id"], "wh_1");
        assert_eq!(r["webhooks"][0]["types"][0], "dev.queuegate.fan.admitted");
        assert_eq!(r["webhooks"][0]["secret"], REDACTED);
        assert_eq!(r["webhooks"][1]["url"], REDACTED);
        assert_eq!(r["lanes"][0]["access"], "code", "a lane's access is not a code");
        assert_eq!(r["codes"], json!({"count": 2}));
        assert_eq!(r["admissionToken"], REDACTED);
        assert_eq!(r["nested"]["token"], REDACTED);
        assert_eq!(r["nested"]["list"][0]["password"], REDACTED);
        let text = r.to_string();
        for secret in ["XXXX", "ABCDEFGHJK", "eyJ", "t0ken", "pw@", "whsec_"] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
    }
}
