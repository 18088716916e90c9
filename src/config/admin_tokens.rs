//! Named admin tokens with a role each (`QUEUEGATE_ADMIN_TOKENS_FILE`), beside the one
//! `QUEUEGATE_ADMIN_TOKEN` (role admin, named [`ADMIN_TOKEN_NAME`]).
//!
//! The file is a JSON array `[{"name":"dash","role":"viewer","token":"…"}, …]`, read once at
//! start-up. Anything wrong with it stops start-up with one line naming the setting and the
//! entry (by its index and name), never a token's value: serde's own messages can quote the
//! input, so a JSON error is reported by its line, column and category only.

use std::path::Path;

use serde::Deserialize;

use super::error::{bad, ConfigError};
use super::secret::{Secret, EXAMPLE_MARK};

/// The setting this file is named by.
pub const SETTING: &str = "QUEUEGATE_ADMIN_TOKENS_FILE";

/// The name `QUEUEGATE_ADMIN_TOKEN` goes by in the audit trail (a file entry may not take it).
pub const ADMIN_TOKEN_NAME: &str = "admin";

/// The shortest token accepted, as for `QUEUEGATE_ADMIN_TOKEN`.
pub const MIN_TOKEN_CHARS: usize = 16;

/// Most entries in the file (every request compares against each, in constant time).
pub const MAX_TOKENS: usize = 100;

/// What a token may do on the admin API, least first (so roles compare with `<`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AdminRole {
    /// Reads: every GET. Any change answers 403.
    Viewer,
    /// Also changes concerts, admits, removes fans and ends single sessions.
    Operator,
    /// Everything: also webhooks (create, change, delete, rotate, resume), lane codes and the
    /// revocation of every session.
    Admin,
}

impl AdminRole {
    pub fn as_str(self) -> &'static str {
        match self {
            AdminRole::Viewer => "viewer",
            AdminRole::Operator => "operator",
            AdminRole::Admin => "admin",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        [AdminRole::Viewer, AdminRole::Operator, AdminRole::Admin].into_iter().find(|r| r.as_str() == s)
    }
}

/// One named token.
#[derive(Debug, Clone)]
pub struct NamedToken {
    /// Who the token stands for, as the audit trail and the logs name it: 1 to 64 of
    /// `A-Z a-z 0-9 _ - . @`.
    pub name: String,
    pub role: AdminRole,
    pub token: Secret,
}

/// One entry as written in the file, before it is checked.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    name: String,
    role: String,
    token: Secret,
}

/// Whether `name` may name a token.
fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b'@'))
}

/// Reads and checks the tokens file at `path`. `admin_token` is `QUEUEGATE_ADMIN_TOKEN` (its
/// value may not be repeated, nor its name taken); `insecure_dev` allows example values.
pub fn read(path: &Path, admin_token: Option<&Secret>, insecure_dev: bool) -> Result<Vec<NamedToken>, ConfigError> {
    let text =
        std::fs::read_to_string(path).map_err(|e| bad(SETTING, format!("{} cannot be read: {e}", path.display())))?;
    parse(&text, admin_token, insecure_dev)
}

/// [`read`] once the file's text is in hand.
pub fn parse(text: &str, admin_token: Option<&Secret>, insecure_dev: bool) -> Result<Vec<NamedToken>, ConfigError> {
    let entries: Vec<Entry> = serde_json::from_str(text).map_err(|e| {
        let what = match e.classify() {
            serde_json::error::Category::Data => {
                "not an array of {\"name\",\"role\",\"token\"} objects with string values and no other fields"
            }
            serde_json::error::Category::Eof => "JSON that ends too early",
            _ => "not valid JSON",
        };
        bad(SETTING, format!("is {what} (line {}, column {})", e.line(), e.column()))
    })?;
    if entries.is_empty() {
        return Err(bad(SETTING, "holds no tokens; leave the setting out instead"));
    }
    if entries.len() > MAX_TOKENS {
        return Err(bad(SETTING, format!("holds {} tokens, more than {MAX_TOKENS}", entries.len())));
    }
    let mut out: Vec<NamedToken> = Vec::with_capacity(entries.len());
    for (i, e) in entries.into_iter().enumerate() {
        if !valid_name(&e.name) {
            return Err(bad(SETTING, format!("entry {i}: name must be 1 to 64 of A-Z a-z 0-9 _ - . @")));
        }
        let name = e.name;
        let Some(role) = AdminRole::parse(&e.role) else {
            return Err(bad(
                SETTING,
                format!(
                    "entry {i} ({name}): role {:?} is not one of viewer, operator, admin",
                    e.role.chars().take(32).collect::<String>()
                ),
            ));
        };
        let token = e.token;
        if token.expose().chars().count() < MIN_TOKEN_CHARS {
            return Err(bad(
                SETTING,
                format!("entry {i} ({name}): token must be at least {MIN_TOKEN_CHARS} characters"),
            ));
        }
        if !insecure_dev && token.expose().contains(EXAMPLE_MARK) {
            return Err(bad(SETTING, format!("entry {i} ({name}): token is an example value (it says change-me)")));
        }
        if let Some(other) = out.iter().find(|t| t.name == name) {
            return Err(bad(SETTING, format!("entry {i}: the name {} is taken twice", other.name)));
        }
        if admin_token.is_some() && name == ADMIN_TOKEN_NAME {
            return Err(bad(
                SETTING,
                format!("entry {i}: the name {ADMIN_TOKEN_NAME} is QUEUEGATE_ADMIN_TOKEN's; choose another"),
            ));
        }
        if let Some(other) = out.iter().find(|t| t.token == token) {
            return Err(bad(SETTING, format!("entry {i} ({name}): the same token as {}", other.name)));
        }
        if admin_token == Some(&token) {
            return Err(bad(SETTING, format!("entry {i} ({name}): the same token as QUEUEGATE_ADMIN_TOKEN")));
        }
        out.push(NamedToken { name, role, token });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "aaaaaaaaaaaaaaaaaaaa";
    const B: &str = "bbbbbbbbbbbbbbbbbbbb";

    fn refused(text: &str) -> String {
        let e = parse(text, Some(&Secret::new("the-admin-token-0123")), false).expect_err("refused");
        assert_eq!(e.setting, SETTING);
        e.to_string()
    }

    #[test]
    fn a_good_file_gives_each_token_its_name_and_role() {
        let text = format!(
            r#"[{{"name":"dash","role":"viewer","token":"{A}"}},{{"name":"dash-op","role":"operator","token":"{B}"}}]"#
        );
        let t = parse(&text, None, false).unwrap();
        assert_eq!(t.len(), 2);
        assert_eq!((t[0].name.as_str(), t[0].role, t[0].token.expose()), ("dash", AdminRole::Viewer, A));
        assert_eq!((t[1].name.as_str(), t[1].role), ("dash-op", AdminRole::Operator));
        assert!(AdminRole::Viewer < AdminRole::Operator && AdminRole::Operator < AdminRole::Admin);
    }

    #[test]
    fn every_kind_of_bad_file_is_refused_naming_the_setting_and_never_a_token() {
        let secret = "secret-value-never-shown-0123";
        let cases = [
            ("[", "ends too early"),
            ("{}", "not an array"),
            ("not json", "not valid JSON"),
            (&format!(r#"["{secret}"]"#), "not an array"),
            ("[]", "holds no tokens"),
            (&format!(r#"[{{"name":"x","role":"viewer","token":"{secret}","extra":1}}]"#), "not an array"),
            (r#"[{"name":"x","role":"viewer"}]"#, "not an array"),
            (&format!(r#"[{{"name":"x","role":"superuser","token":"{secret}"}}]"#), "role \"superuser\""),
            (r#"[{"name":"x","role":"viewer","token":""}]"#, "at least 16"),
            (r#"[{"name":"x","role":"viewer","token":"short"}]"#, "at least 16"),
            (&format!(r#"[{{"name":"","role":"viewer","token":"{secret}"}}]"#), "name must be"),
            (&format!(r#"[{{"name":"a b","role":"viewer","token":"{secret}"}}]"#), "name must be"),
            (
                &format!(
                    r#"[{{"name":"x","role":"viewer","token":"{A}"}},{{"name":"x","role":"admin","token":"{B}"}}]"#
                ),
                "taken twice",
            ),
            (
                &format!(
                    r#"[{{"name":"x","role":"viewer","token":"{secret}"}},{{"name":"y","role":"admin","token":"{secret}"}}]"#
                ),
                "same token as x",
            ),
            (r#"[{"name":"y","role":"admin","token":"the-admin-token-0123"}]"#, "same token as QUEUEGATE_ADMIN_TOKEN"),
            (&format!(r#"[{{"name":"admin","role":"admin","token":"{A}"}}]"#), "QUEUEGATE_ADMIN_TOKEN's"),
            (r#"[{"name":"x","role":"admin","token":"token-change-me-0123456"}]"#, "example value"),
        ];
        for (text, says) in cases {
            let msg = refused(text);
            assert!(msg.contains(SETTING) && msg.contains(says), "{text}: {msg}");
            assert!(!msg.contains(secret) && !msg.contains(A), "a token value in {msg}");
        }
    }

    #[test]
    fn a_file_of_exactly_the_most_tokens_and_the_shortest_token_is_taken_one_more_is_refused() {
        let file = |n: usize| {
            let entries: Vec<String> =
                (0..n).map(|i| format!(r#"{{"name":"t{i}","role":"viewer","token":"token-{i:0>10}"}}"#)).collect();
            format!("[{}]", entries.join(","))
        };
        assert_eq!("token-0000000000".len(), MIN_TOKEN_CHARS);
        assert_eq!(parse(&file(MAX_TOKENS), None, false).unwrap().len(), MAX_TOKENS);
        assert!(refused(&file(MAX_TOKENS + 1)).contains(&format!("holds 101 tokens, more than {MAX_TOKENS}")));
    }

    #[test]
    fn an_unreadable_file_names_the_setting_and_the_path() {
        let e = read(Path::new("/nonexistent/tokens.json"), None, false).unwrap_err();
        assert_eq!(e.setting, SETTING);
        assert!(e.to_string().contains("/nonexistent/tokens.json"), "{e}");
    }
}
