//! Who is calling the admin API, and what that caller may do (docs/explain-security.md, "Admin tokens
//! and roles").
//!
//! Two checks, each where routing has decided (both in src/admin.rs): the `/admin` scope's
//! guard ([`super::require_admin_token`]) finds the caller by the bearer token (401 for none or
//! an unknown one, on every path of the scope, known or not), and each route's own guard
//! ([`super::route_guard`]) holds the caller against the role the route needs
//! ([`required_role`]): 403 below it. The route's guard sits on the route itself, so whatever spelling of a path the
//! router sends to a handler meets the check of that handler's route.

use std::sync::Arc;

use actix_web::http::Method;
use actix_web::HttpMessage;

use crate::config::admin_tokens::ADMIN_TOKEN_NAME;
use crate::config::{AdminRole, NamedToken, Secret};
use crate::identity::Credentials;

/// The caller of an admin request, once its token is known: put in the request's extensions
/// by the scope's guard, read by the route's guard, the handlers and the audit trail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The token's name (`admin` for `QUEUEGATE_ADMIN_TOKEN`).
    pub name: Arc<str>,
    pub role: AdminRole,
}

/// The name the audit trail gives every caller of an admin API left open by `--insecure-dev`
/// without any admin token.
pub const OPEN_CALLER: &str = "insecure-dev";

/// Every admin token, each with its caller.
pub struct AdminTokens {
    /// The tokens' hashes, in the order of `callers`.
    credentials: Credentials,
    callers: Vec<Caller>,
}

impl AdminTokens {
    /// `QUEUEGATE_ADMIN_TOKEN` (role admin, named `admin`) and the named tokens of
    /// `QUEUEGATE_ADMIN_TOKENS_FILE`. With neither (only under `--insecure-dev`) the API is open
    /// and every caller is an admin named [`OPEN_CALLER`].
    pub fn new(admin_token: Option<&Secret>, named: &[NamedToken]) -> Self {
        let mut secrets: Vec<&Secret> = Vec::with_capacity(named.len() + 1);
        let mut callers = Vec::with_capacity(named.len() + 1);
        if let Some(t) = admin_token {
            secrets.push(t);
            callers.push(Caller { name: ADMIN_TOKEN_NAME.into(), role: AdminRole::Admin });
        }
        for t in named {
            secrets.push(&t.token);
            callers.push(Caller { name: t.name.as_str().into(), role: t.role });
        }
        AdminTokens { credentials: Credentials::new(secrets), callers }
    }

    /// Whose token `presented` is: compared with every token in constant time
    /// ([`Credentials::matching`]). None for a missing or unknown token.
    pub fn identify(&self, presented: Option<&str>) -> Option<Caller> {
        if self.callers.is_empty() {
            return Some(Caller { name: OPEN_CALLER.into(), role: AdminRole::Admin });
        }
        self.credentials.matching(presented).map(|i| self.callers[i].clone())
    }
}

/// The role an admin route needs. Reads (GET, HEAD) are every role's; changes are the
/// operator's where named here (concerts, admission, removing a fan, ending one session) and
/// otherwise the admin's: webhooks (rotate, resume), lane codes, the revocation of every session,
/// and any changing route not named here, so a new one is closed until someone opens it.
/// (A `PUT` or `PATCH` of a concert that changes its webhooks needs the admin too: [`webhooks_unchanged`].)
pub fn required_role(method: &Method, path: &str) -> AdminRole {
    if method == Method::GET || method == Method::HEAD {
        return AdminRole::Viewer;
    }
    match path {
        "/admin/v1/concerts/{concertId}"
        | "/admin/v1/concerts/{concertId}/admit"
        | "/admin/v1/concerts/{concertId}/queue/{userId}"
        | "/admin/v1/concerts/{concertId}/sessions/{userId}" => AdminRole::Operator,
        _ => AdminRole::Admin,
    }
}

/// Whether a method changes something (everything but GET, HEAD and OPTIONS): those calls are
/// recorded in the audit trail when they succeed.
pub fn changes(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// The caller the scope's guard found (the route's guard runs inside it, so there is one).
pub fn caller_of(req: &actix_web::HttpRequest) -> Option<Caller> {
    req.extensions().get::<Caller>().cloned()
}

/// Whether the webhooks of a concert's `PUT` or `PATCH` (`new`, as written) leave the concert's webhooks
/// (`old`) as they are: the same endpoints (each named by its id, or by its URL when sent
/// without one, as the `PUT` itself matches them), with the same URLs and types, none added,
/// none left out. An operator's `PUT` must (what `GET` shows, sent back, does); creating,
/// changing or deleting a webhook is the admin's.
pub fn webhooks_unchanged(new: &[crate::concerts::WebhookSettings], old: &[crate::concerts::WebhookSettings]) -> bool {
    if new.len() != old.len() {
        return false;
    }
    let mut seen: Vec<&str> = Vec::with_capacity(new.len());
    for hook in new {
        let known = old.iter().find(|h| if hook.id.is_empty() { h.url == hook.url } else { h.id == hook.id });
        match known {
            Some(h) if h.url == hook.url && h.types == hook.types && !seen.contains(&h.id.as_str()) => seen.push(&h.id),
            _ => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::concerts::WebhookSettings;

    #[test]
    fn each_token_is_its_own_caller_and_an_unknown_one_is_nobody() {
        let admin = Secret::new("the-admin-token-0123456789");
        let named = [
            NamedToken { name: "dash".into(), role: AdminRole::Viewer, token: Secret::new("dash-token-0123456789") },
            NamedToken { name: "dash-op".into(), role: AdminRole::Operator, token: Secret::new("op-token-0123456789") },
        ];
        let t = AdminTokens::new(Some(&admin), &named);
        let who = |s: &str| t.identify(Some(s)).map(|c| (c.name.to_string(), c.role));
        assert_eq!(who("the-admin-token-0123456789"), Some(("admin".into(), AdminRole::Admin)));
        assert_eq!(who("dash-token-0123456789"), Some(("dash".into(), AdminRole::Viewer)));
        assert_eq!(who("op-token-0123456789"), Some(("dash-op".into(), AdminRole::Operator)));
        assert_eq!(who("op-token-012345678"), None);
        assert_eq!(t.identify(None), None);
        let file_only = AdminTokens::new(None, &named);
        assert_eq!(file_only.identify(Some("the-admin-token-0123456789")), None, "a file alone does not open the API");
        assert_eq!(file_only.identify(None), None);
        let open = AdminTokens::new(None, &[]);
        assert_eq!(open.identify(None).map(|c| c.role), Some(AdminRole::Admin), "--insecure-dev without tokens");
    }

    fn hook(id: &str, url: &str, types: &[&str]) -> WebhookSettings {
        WebhookSettings {
            id: id.into(),
            url: url.into(),
            types: types.iter().map(|t| t.to_string()).collect(),
            secret: String::new(),
        }
    }

    #[test]
    fn webhooks_sent_back_as_shown_are_unchanged_and_anything_else_is_a_change() {
        let old = [
            hook("wh_a", "https://a.example/h", &[]),
            hook("wh_b", "https://b.example/h", &["dev.queuegate.fan.admitted"]),
        ];
        let mut shown = old.to_vec();
        shown[0].secret = "whsec_abcd…".into();
        assert!(webhooks_unchanged(&shown, &old), "as GET shows them, masked secrets and all");
        assert!(webhooks_unchanged(&[old[1].clone(), old[0].clone()], &old), "in another order");
        assert!(webhooks_unchanged(&[hook("", "https://a.example/h", &[]), old[1].clone()], &old), "by URL");
        assert!(!webhooks_unchanged(&old[..1], &old), "one left out (deleted)");
        assert!(!webhooks_unchanged(&[], &old), "all left out");
        let mut more = old.to_vec();
        more.push(hook("", "https://c.example/h", &[]));
        assert!(!webhooks_unchanged(&more, &old), "one added");
        assert!(
            !webhooks_unchanged(&[hook("wh_a", "https://evil.example/h", &[]), old[1].clone()], &old),
            "URL changed"
        );
        assert!(
            !webhooks_unchanged(&[old[0].clone(), hook("wh_b", "https://b.example/h", &[])], &old),
            "types changed"
        );
        assert!(!webhooks_unchanged(&[old[0].clone(), old[0].clone()], &old), "one twice, one gone");
        assert!(!webhooks_unchanged(&[hook("wh_x", "https://a.example/h", &[]), old[1].clone()], &old), "unknown id");
        assert!(webhooks_unchanged(&[], &[]));
    }
}
