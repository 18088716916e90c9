//! Writing a concert's settings: `PUT` replaces them, `PATCH` changes the fields a JSON Merge
//! Patch (RFC 7396) names; both honour `If-Match` against the concert's `ETag`
//! ([`Concert::etag`]). docs/reference-http.md, "Writing settings: PUT, PATCH, ETag", is the operator's side of this.
//!
//! Every write is a read, the checks a `PUT` has always made (the settings, the webhooks' egress,
//! a scheduled concert's `opensAt`, lanes still holding fans), then a write that Redis carries
//! out only if the concert is still at the version read (src/store/concert_put.lua). So what
//! the checks judged is what gets replaced: a write from another gateway in between is never
//! overwritten unseen. With `If-Match` that is a 412 (the client's copy is stale); without, the
//! write starts again from a fresh read, at most [`ATTEMPTS`] times.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::Value;

use crate::admin::concert_view::view;
use crate::admin::state::Admin;
use crate::concerts::{Concert, ConcertSettings, WebhookSettings};
use crate::ids::ConcertId;
use crate::problem::{read_json, ApiError, MERGE_PATCH};
use crate::store::{Expect, QueueStore};

/// How many times a write without `If-Match` starts again when another write got in between
/// its read and its write. Each round is a handful of Redis calls; concerts change at an
/// operator's pace, so running out of them means something is rewriting the concert in a loop.
const ATTEMPTS: u32 = 5;

/// What a write does to the stored settings.
enum Change {
    /// `PUT`: these settings, whole.
    Replace(Box<ConcertSettings>),
    /// `PATCH`: the stored settings with this merge patch applied.
    Merge(Value),
}

/// `PUT /admin/v1/concerts/{concertId}`: creates the concert or replaces its settings (every
/// field left out takes its default).
pub(super) async fn put_concert(
    admin: web::Data<Admin>,
    req: HttpRequest,
    id: web::Path<ConcertId>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    // A merge patch sent as a PUT would replace everything it does not name: refused, not guessed.
    if content_type(&req).is_some_and(|t| t.eq_ignore_ascii_case(MERGE_PATCH)) {
        return Err(ApiError::UnsupportedMediaType);
    }
    let body: ConcertSettings = read_json(&req, payload, None).await?;
    let condition = IfMatch::of(&req)?;
    let caller = super::access::caller_of(&req);
    write(&admin, &id.into_inner(), condition.as_ref(), caller.as_ref(), Change::Replace(Box::new(body))).await
}

/// `PATCH /admin/v1/concerts/{concertId}` with an `application/merge-patch+json` body: the
/// fields it names change, `null` gives a field its default, the others are kept. 404 for a
/// concert that does not exist: a patch has nothing to apply to (a `PUT` creates).
pub(super) async fn patch_concert(
    admin: web::Data<Admin>,
    req: HttpRequest,
    id: web::Path<ConcertId>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    if !content_type(&req).is_some_and(|t| t.eq_ignore_ascii_case(MERGE_PATCH)) {
        return Err(ApiError::NotMergePatch);
    }
    let patch: Value = read_json(&req, payload, None).await?;
    if patch.get("state").is_some_and(Value::is_null) {
        return Err(ApiError::BadRequest("state has no default: it can be changed, not removed".into()));
    }
    let condition = IfMatch::of(&req)?;
    let caller = super::access::caller_of(&req);
    write(&admin, &id.into_inner(), condition.as_ref(), caller.as_ref(), Change::Merge(patch)).await
}

/// The essence of the request's `Content-Type` (`application/json` of `application/json; charset=utf-8`).
fn content_type(req: &HttpRequest) -> Option<&str> {
    let v = req.headers().get(header::CONTENT_TYPE)?.to_str().ok()?;
    Some(v.split(';').next().unwrap_or("").trim())
}

/// Reads, checks and writes, starting again (without `If-Match`) when another write got in
/// between; 200 with the concert as stored and its new `ETag`.
async fn write(
    admin: &Admin,
    id: &ConcertId,
    condition: Option<&IfMatch>,
    caller: Option<&super::access::Caller>,
    change: Change,
) -> Result<HttpResponse, ApiError> {
    for _ in 0..ATTEMPTS {
        let old = admin.store.get_concert(id).await?;
        if old.is_none() && matches!(change, Change::Merge(_)) {
            return Err(ApiError::NotFound(format!("no concert {id}; a PUT creates one")));
        }
        if let Some(condition) = condition {
            condition.check(id, old.as_ref())?;
        }
        let body = match &change {
            Change::Replace(body) => (**body).clone(),
            Change::Merge(patch) => merged(old.as_ref().map(|c| &c.settings), patch)?,
        };
        let expect = old.as_ref().map_or(Expect::Absent, |c| Expect::Version(c.version));
        match checked_write(admin, id, old, body, expect, caller).await? {
            Some(answer) => return Ok(answer),
            None if condition.is_some() => {
                return Err(ApiError::PreconditionFailed(format!(
                    "concert {id} was changed by another write while this one was made; read it again (its ETag has changed)"
                )))
            }
            None => tracing::info!(concert = %id, "concert changed during a write; reading it again"),
        }
    }
    Err(ApiError::unavailable(format!(
        "concert {id} kept changing during this write ({ATTEMPTS} tries); send it again"
    )))
}

/// The stored settings (the defaults when there are none) with `patch` applied, deserialised
/// as a `PUT` body is: the same errors, naming the field.
fn merged(stored: Option<&ConcertSettings>, patch: &Value) -> Result<ConcertSettings, ApiError> {
    let mut doc = serde_json::to_value(stored.cloned().unwrap_or_else(ConcertSettings::open))
        .map_err(|e| ApiError::Internal(e.into()))?;
    merge_patch(&mut doc, patch);
    let bytes = serde_json::to_vec(&doc).map_err(|e| ApiError::Internal(e.into()))?;
    crate::problem::parse_json(&bytes)
}

/// RFC 7396 section 2, word for word: an object patch merges member by member (`null` removes
/// the member, an object merges recursively, anything else, arrays included, replaces it); any
/// other patch replaces the whole target. Written out rather than taken from a crate: it is the
/// RFC's fifteen lines, and the one crate that has it (json-patch) would bring JSON Patch and
/// JSON Pointer along for it.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(members) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(serde_json::Map::new());
    }
    let Value::Object(fields) = target else { unreachable!("made an object above") };
    for (name, value) in members {
        if value.is_null() {
            fields.remove(name);
        } else {
            merge_patch(fields.entry(name.clone()).or_insert(Value::Null), value);
        }
    }
}

/// The checks every settings write makes, then the write if the concert is still as `expect`
/// says: the answer, or None when another write got in first (nothing of this one is left).
async fn checked_write(
    admin: &Admin,
    id: &ConcertId,
    old: Option<Concert>,
    mut body: ConcertSettings,
    expect: Expect,
    caller: Option<&super::access::Caller>,
) -> Result<Option<HttpResponse>, ApiError> {
    body.validate().map_err(ApiError::BadRequest)?;
    // Webhooks are the admin's (they send the sale's events out, signed, to any receiver): an
    // operator's write leaves them as they are (a PATCH that does not name them, or a PUT that
    // sends them back as GET shows them), or is refused before anything is written.
    let old_hooks = old.as_ref().map_or(&[][..], |c| &c.settings.webhooks[..]);
    if caller.is_none_or(|c| c.role < crate::config::AdminRole::Admin)
        && !super::access::webhooks_unchanged(&body.webhooks, old_hooks)
    {
        admin.metrics.admin_refused.with_label_values(&["role"]).inc();
        tracing::warn!(token = caller.map_or("?", |c| &*c.name), concert = %id,
            "admin write refused: it would change the webhooks, which needs the admin role");
        return Err(ApiError::Forbidden(format!(
            "webhooks: creating, changing or deleting a webhook needs the admin role; the token {} is {} \
             (leave webhooks out of a PATCH, or send them back as GET shows them, to leave them as they are)",
            caller.map_or("?", |c| &c.name),
            caller.map_or("unknown", |c| c.role.as_str()),
        )));
    }
    // No webhook into queuegate's own network (docs/explain-security.md): a literal internal address,
    // a metadata name, or a name that resolves only to internal addresses is refused. The names
    // are looked up at once, so a write waits for one lookup's bound, not one per webhook.
    let checks = futures_util::future::join_all(body.webhooks.iter().map(|h| admin.egress.check_url(&h.url))).await;
    checks.into_iter().collect::<Result<(), String>>().map_err(ApiError::BadRequest)?;
    // A scheduled concert keeps its opensAt until the cut has placed its pre-queue: without it
    // nothing would ever queue the held fans.
    if body.opens_at.is_none() {
        if let Some(old) = old.as_ref().filter(|c| c.settings.opens_at.is_some()) {
            for lane in old.settings.lanes().iter() {
                if admin.store.fair_state(id, &lane.name).await?.shuffled_at_ms.is_none() {
                    return Err(ApiError::Conflict(format!(
                        "concert {id} is scheduled to open at {}: opensAt can be moved but not removed before the cut",
                        crate::clock::rfc3339(old.settings.opens_at.unwrap_or_default())
                    )));
                }
            }
        }
    }
    // A lane taken away while fans are in it would strand them: it goes once it is empty.
    if let Some(old) = &old {
        for lane in old.settings.lanes().iter().filter(|l| body.lane(&l.name).is_none()) {
            let fans = admin.store.lane_population(id, &lane.name).await?;
            if fans > 0 {
                return Err(ApiError::Conflict(format!(
                    "lane {} of concert {id} still holds {fans} fans; it can be taken out of lanes once it is empty",
                    lane.name
                )));
            }
        }
    }
    let old_hooks = old.map(|c| c.settings.webhooks).unwrap_or_default();
    let created = webhook_ids(&admin.store, &admin.at_rest, id, &mut body.webhooks, &old_hooks).await?;
    let Some(concert) = admin.store.put_concert_if(id, &body, expect).await? else {
        // Another write got in first: the endpoints this one made have no place in what is stored.
        for (hook, _) in &created {
            admin.store.forget_webhook(id, hook).await?;
        }
        return Ok(None);
    };
    // The endpoints the write left out are forgotten with their pending deliveries, only now
    // that the write without them is stored.
    for gone in old_hooks.iter().filter(|h| !concert.settings.webhooks.iter().any(|k| k.id == h.id)) {
        admin.store.forget_webhook(id, &gone.id).await?;
    }
    admin.cache.set(id, concert.settings.clone());
    tracing::info!(concert = %id, state = concert.settings.state.as_str(), version = concert.version, "concert updated");
    let etag = concert.etag();
    let mut shown = view(&admin.store, concert).await?;
    // A new endpoint's secret is shown in this answer only.
    for hook in shown.settings.webhooks.iter_mut() {
        if let Some((_, secret)) = created.iter().find(|(id, _)| id == &hook.id) {
            hook.secret = secret.clone();
        }
    }
    Ok(Some(HttpResponse::Ok().insert_header((header::ETAG, etag)).json(shown)))
}

/// Gives the webhooks of a write their ids and secrets: one already there (by id, or by URL)
/// keeps its own; a new one gets a fresh id and secret (returned, to be shown once).
async fn webhook_ids(
    store: &QueueStore,
    at_rest: &crate::events::at_rest::SecretBox,
    concert: &ConcertId,
    hooks: &mut [WebhookSettings],
    old: &[WebhookSettings],
) -> Result<Vec<(String, String)>, ApiError> {
    let mut created = Vec::new();
    for hook in hooks.iter_mut() {
        let known = old.iter().find(|h| if hook.id.is_empty() { h.url == hook.url } else { h.id == hook.id });
        match known {
            Some(h) => {
                hook.id = h.id.clone();
                hook.secret = h.secret.clone();
            }
            None if !hook.id.is_empty() => {
                return Err(ApiError::BadRequest(format!(
                    "webhooks: concert {concert} has no webhook {:?}; leave id out to create one",
                    hook.id
                )));
            }
            None => {
                hook.id = format!("wh_{}", &uuid::Uuid::new_v4().simple().to_string()[..16]);
                let secret = crate::events::new_secret();
                store.set_webhook_secret(concert, &hook.id, &secret, None, at_rest).await?;
                hook.secret = crate::events::mask(&secret);
                created.push((hook.id.clone(), secret));
            }
        }
    }
    Ok(created)
}

/// A request's `If-Match` (RFC 9110 section 13.1.1): `*`, or the entity tags it lists.
#[derive(Debug, PartialEq, Eq)]
enum IfMatch {
    /// `*`: the concert must exist.
    Any,
    /// The concert's current `ETag` must be one of these (strong comparison: a weak tag,
    /// `W/"…"`, never matches).
    Tags(Vec<String>),
}

impl IfMatch {
    /// The request's `If-Match` (all its lines together), None without one; 400 when it is
    /// neither `*` nor a list of entity tags.
    fn of(req: &HttpRequest) -> Result<Option<IfMatch>, ApiError> {
        let mut lines = Vec::new();
        for v in req.headers().get_all(header::IF_MATCH) {
            lines.push(v.to_str().map_err(|_| bad_if_match())?);
        }
        if lines.is_empty() {
            return Ok(None);
        }
        IfMatch::parse(&lines.join(",")).map(Some)
    }

    fn parse(value: &str) -> Result<IfMatch, ApiError> {
        if value.trim() == "*" {
            return Ok(IfMatch::Any);
        }
        let mut tags = Vec::new();
        let mut rest = value;
        loop {
            rest = rest.trim_start_matches([' ', '\t', ',']);
            if rest.is_empty() {
                break;
            }
            let (weak, quoted) = match rest.strip_prefix("W/") {
                Some(r) => (true, r),
                None => (false, rest),
            };
            // An entity tag is `"…"` of visible characters but `"` (commas included).
            let inner = quoted.strip_prefix('"').ok_or_else(bad_if_match)?;
            let end = inner.find('"').ok_or_else(bad_if_match)?;
            if inner[..end].bytes().any(|b| b < 0x21 || b == 0x7f) {
                return Err(bad_if_match());
            }
            if !weak {
                tags.push(format!("\"{}\"", &inner[..end]));
            }
            rest = &inner[end + 1..];
            if !(rest.is_empty() || rest.starts_with([' ', '\t', ','])) {
                return Err(bad_if_match());
            }
        }
        Ok(IfMatch::Tags(tags))
    }

    /// 412 unless the stored concert `c` satisfies the condition.
    fn check(&self, id: &ConcertId, c: Option<&Concert>) -> Result<(), ApiError> {
        let Some(c) = c else {
            return Err(ApiError::PreconditionFailed(format!("If-Match: there is no concert {id}")));
        };
        let etag = c.etag();
        match self {
            IfMatch::Any => Ok(()),
            IfMatch::Tags(tags) if tags.contains(&etag) => Ok(()),
            IfMatch::Tags(_) => Err(ApiError::PreconditionFailed(format!(
                "If-Match: concert {id} has changed since that copy was read (its ETag is now {etag}); read it again"
            ))),
        }
    }
}

fn bad_if_match() -> ApiError {
    ApiError::BadRequest("If-Match must be * or a list of entity tags (\"…\" as an ETag writes them)".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// RFC 7396 Appendix A, every example.
    #[test]
    fn the_merge_patch_gives_every_result_of_rfc_7396s_examples() {
        let cases = [
            (json!({"a": "b"}), json!({"a": "c"}), json!({"a": "c"})),
            (json!({"a": "b"}), json!({"b": "c"}), json!({"a": "b", "b": "c"})),
            (json!({"a": "b"}), json!({"a": null}), json!({})),
            (json!({"a": "b", "b": "c"}), json!({"a": null}), json!({"b": "c"})),
            (json!({"a": ["b"]}), json!({"a": "c"}), json!({"a": "c"})),
            (json!({"a": "c"}), json!({"a": ["b"]}), json!({"a": ["b"]})),
            (json!({"a": {"b": "c"}}), json!({"a": {"b": "d", "c": null}}), json!({"a": {"b": "d"}})),
            (json!({"a": [{"b": "c"}]}), json!({"a": [1]}), json!({"a": [1]})),
            (json!(["a", "b"]), json!(["c", "d"]), json!(["c", "d"])),
            (json!({"a": "b"}), json!(["c"]), json!(["c"])),
            (json!({"a": "foo"}), json!(null), json!(null)),
            (json!({"a": "foo"}), json!("bar"), json!("bar")),
            (json!({"e": null}), json!({"a": 1}), json!({"e": null, "a": 1})),
            (json!([1, 2]), json!({"a": "b", "c": null}), json!({"a": "b"})),
            (json!({}), json!({"a": {"bb": {"ccc": null}}}), json!({"a": {"bb": {}}})),
        ];
        for (target, patch, want) in cases {
            let mut got = target.clone();
            merge_patch(&mut got, &patch);
            assert_eq!(got, want, "{target} patched with {patch}");
        }
    }

    #[test]
    fn a_patch_keeps_what_it_does_not_name_and_null_gives_the_default() {
        let stored = ConcertSettings {
            admit_per_second: 50,
            max_waiting: 10,
            name: Some("Tour".into()),
            ..ConcertSettings::open()
        };
        let s = merged(Some(&stored), &json!({"state": "paused", "maxWaiting": null, "name": null})).unwrap();
        assert_eq!(s.state, crate::concerts::ConcertState::Paused);
        assert_eq!(s.admit_per_second, 50, "not named: kept");
        assert_eq!(s.max_waiting, crate::concerts::DEFAULT_MAX_WAITING, "null: the default");
        assert_eq!(s.name, None);
        let e = merged(Some(&stored), &json!({"maxActive": "many"})).unwrap_err().to_string();
        assert!(e.contains("maxActive"), "the same error as a PUT's: {e}");
        let e = merged(Some(&stored), &json!({"colour": "red"})).unwrap_err().to_string();
        assert!(e.contains("unknown field"), "{e}");
    }

    /// The OpenAPI document writes the patch's schema out (OpenAPI 3.0 cannot say "this schema,
    /// nullable"); this keeps it the settings' schema with every field but `state` nullable.
    #[test]
    fn the_documented_patch_schema_is_the_settings_schema_with_null_for_a_default() {
        let doc: Value = serde_json::from_str(crate::openapi::OPENAPI).unwrap();
        let schemas = &doc["components"]["schemas"];
        let (settings, patch) = (&schemas["ConcertSettings"]["properties"], &schemas["ConcertPatch"]["properties"]);
        assert_eq!(schemas["ConcertPatch"].get("required"), None, "a patch names what it changes");
        let names = |v: &Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
        assert_eq!(names(patch), names(settings));
        for (name, p) in patch.as_object().unwrap() {
            let mut p = p.clone();
            if name == "state" {
                assert_eq!(p.get("nullable"), None, "state has no default");
            } else {
                assert_eq!(p["nullable"], true, "{name}: null gives the default");
                if let Some(values) = p.get_mut("enum").and_then(Value::as_array_mut) {
                    assert_eq!(values.pop(), Some(Value::Null), "{name}: null among the values");
                }
                if settings[name].get("nullable").is_none() {
                    p.as_object_mut().unwrap().remove("nullable");
                }
            }
            assert_eq!(&p, &settings[name], "{name}");
        }
    }

    #[test]
    fn if_match_is_a_star_or_a_list_of_entity_tags_and_weak_ones_never_match() {
        assert_eq!(IfMatch::parse("*").unwrap(), IfMatch::Any);
        assert_eq!(IfMatch::parse(r#""1-2""#).unwrap(), IfMatch::Tags(vec![r#""1-2""#.into()]));
        assert_eq!(
            IfMatch::parse(r#" "a,b" ,W/"1-2",	"x" "#).unwrap(),
            IfMatch::Tags(vec![r#""a,b""#.into(), r#""x""#.into()]),
            "commas inside a tag; the weak one is left out"
        );
        for bad in ["1-2", r#""1-2"#, r#""a"b"#, "*, \"a\"", r#"w/"a""#, "\"a b\""] {
            assert!(IfMatch::parse(bad).is_err(), "{bad}");
        }
    }
}
