//! Entry tokens: what a fan presents to read its own status.
//!
//! A token is `base64url(claims) "." base64url(HMAC-SHA256(claims))` with the claims
//! `"{mode}:{concertId}:{userId}:{expires}"`: the identity mode that made it, the concert, the
//! fan, and the expiry in seconds since the epoch (ids contain no `:`, so the text is
//! unambiguous). The secret is `QUEUEGATE_TOKEN_SECRET`, so every gateway instance with the same
//! secret checks it without any shared state, and the MAC is compared in constant time.
//!
//! What binds it: a token reads one fan's status in one concert, only while it is valid, and
//! only under the identity mode that issued it (a token minted by a development `body`-mode
//! gateway does not work once the deployment moves to `jwt`). Who may obtain a token for a fan
//! is the identity mode's business ([`crate::identity`]): in `jwt` and `trusted-header` mode only
//! the authenticated fan, in `anonymous` mode only the holder of the minted id.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::config::FanIdentityMode;
use crate::ids::{ConcertId, UserId};

type HmacSha256 = Hmac<Sha256>;

/// Issues and checks entry tokens.
#[derive(Clone)]
pub struct EntryTokens {
    mac: HmacSha256,
    mode: &'static str,
    ttl_secs: i64,
}

impl EntryTokens {
    /// Tokens of `mode`, signed with `secret`, valid for `ttl_secs`.
    pub fn new(secret: &[u8], mode: FanIdentityMode, ttl_secs: u64) -> Self {
        EntryTokens {
            mac: HmacSha256::new_from_slice(secret).expect("HMAC takes keys of any length"),
            mode: mode.as_str(),
            ttl_secs: ttl_secs as i64,
        }
    }

    fn mac_of(&self, purpose: Purpose, claims: &str) -> HmacSha256 {
        let mut m = self.mac.clone();
        m.update(purpose.domain());
        m.update(claims.as_bytes());
        m
    }

    fn sign(&self, purpose: Purpose, concert: &ConcertId, user: &UserId, expires_secs: i64) -> String {
        let claims = format!("{}:{concert}:{user}:{expires_secs}", self.mode);
        let mac = self.mac_of(purpose, &claims).finalize().into_bytes();
        format!("{}.{}", URL_SAFE_NO_PAD.encode(claims), URL_SAFE_NO_PAD.encode(mac))
    }

    /// The fan a valid token of `purpose` for `concert` names (signature first, in constant
    /// time; then mode, concert and expiry against `now_ms`).
    fn check(&self, purpose: Purpose, concert: &ConcertId, token: &str, now_ms: i64) -> Option<UserId> {
        let (claims, mac) = token.split_once('.')?;
        let claims = String::from_utf8(URL_SAFE_NO_PAD.decode(claims).ok()?).ok()?;
        let mac = URL_SAFE_NO_PAD.decode(mac).ok()?;
        self.mac_of(purpose, &claims).verify_slice(&mac).ok()?;
        let mut parts = claims.split(':');
        let (mode, c, u, expires) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        let expires: i64 = expires.parse().ok()?;
        if parts.next().is_some() || mode != self.mode || c != concert.as_str() || expires * 1000 <= now_ms {
            return None;
        }
        UserId::parse(u).ok()
    }

    /// The token of (`concert`, `user`), issued at `now_ms`.
    pub fn issue(&self, concert: &ConcertId, user: &UserId, now_ms: i64) -> String {
        self.sign(Purpose::Entry, concert, user, now_ms.div_euclid(1000) + self.ttl_secs)
    }

    /// The fan a valid entry token of `concert` was issued to, if `token` is one.
    pub fn holder(&self, concert: &ConcertId, token: &str, now_ms: i64) -> Option<UserId> {
        self.check(Purpose::Entry, concert, token, now_ms)
    }

    /// Whether `token` lets its holder read `user`'s status in `concert` at `now_ms`.
    pub fn verify(&self, concert: &ConcertId, user: &UserId, token: &str, now_ms: i64) -> bool {
        self.holder(concert, token, now_ms).is_some_and(|u| u == *user)
    }

    /// A stream ticket for (`concert`, `user`): what a browser's `EventSource`, which cannot set
    /// headers, puts in the stream's URL instead of the entry token. It opens that fan's status
    /// stream and nothing else (another MAC domain: it is no entry token), for
    /// [`STREAM_TICKET_TTL_SECS`], so a URL that reaches a proxy's or a CDN's log is useless
    /// a minute later.
    pub fn stream_ticket(&self, concert: &ConcertId, user: &UserId, now_ms: i64) -> String {
        self.sign(Purpose::Stream, concert, user, now_ms.div_euclid(1000) + STREAM_TICKET_TTL_SECS)
    }

    /// Whether `ticket` opens `user`'s status stream in `concert` at `now_ms`.
    pub fn verify_stream_ticket(&self, concert: &ConcertId, user: &UserId, ticket: &str, now_ms: i64) -> bool {
        self.check(Purpose::Stream, concert, ticket, now_ms).is_some_and(|u| u == *user)
    }
}

/// How long a stream ticket opens a stream (a stream, once open, lives on).
pub const STREAM_TICKET_TTL_SECS: i64 = 60;

/// What a token may be used for; each signs under its own domain, so one is never the other.
#[derive(Clone, Copy)]
enum Purpose {
    Entry,
    Stream,
}

impl Purpose {
    fn domain(self) -> &'static [u8] {
        match self {
            Purpose::Entry => b"queuegate-entry-v2\0",
            Purpose::Stream => b"queuegate-stream-v1\0",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(s: &str) -> ConcertId {
        ConcertId::parse(s).unwrap()
    }
    fn u(s: &str) -> UserId {
        UserId::parse(s).unwrap()
    }
    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    #[test]
    fn a_token_verifies_only_for_its_own_fan_concert_and_mode_until_it_expires() {
        let t = EntryTokens::new(SECRET, FanIdentityMode::Jwt, 60);
        let tok = t.issue(&c("c1"), &u("u1"), 1_000_000);
        assert!(t.verify(&c("c1"), &u("u1"), &tok, 1_000_000));
        assert!(t.verify(&c("c1"), &u("u1"), &tok, 1_059_999));
        assert!(!t.verify(&c("c1"), &u("u1"), &tok, 1_060_000), "expired");
        assert!(!t.verify(&c("c1"), &u("u2"), &tok, 1_000_000));
        assert!(!t.verify(&c("c2"), &u("u1"), &tok, 1_000_000));
        assert!(!t.verify(&c("c1"), &u("u1"), "not-a-token", 1_000_000));
        assert!(!EntryTokens::new(b"another-secret-another-secret-xx", FanIdentityMode::Jwt, 60).verify(
            &c("c1"),
            &u("u1"),
            &tok,
            1_000_000
        ));
        assert!(!EntryTokens::new(SECRET, FanIdentityMode::Body, 60).verify(&c("c1"), &u("u1"), &tok, 1_000_000));
        assert_eq!(t.holder(&c("c1"), &tok, 1_000_000), Some(u("u1")));
    }

    #[test]
    fn a_token_with_edited_claims_is_refused() {
        let t = EntryTokens::new(SECRET, FanIdentityMode::Anonymous, 60);
        let tok = t.issue(&c("c1"), &u("victim"), 0);
        let (_, mac) = tok.split_once('.').unwrap();
        let forged = format!("{}.{mac}", URL_SAFE_NO_PAD.encode("anonymous:c1:attacker:99999999999"));
        assert_eq!(t.holder(&c("c1"), &forged, 0), None);
    }

    #[test]
    fn a_stream_ticket_opens_only_its_fans_stream_for_a_minute_and_is_no_entry_token() {
        let t = EntryTokens::new(SECRET, FanIdentityMode::Anonymous, 86_400);
        let ticket = t.stream_ticket(&c("c1"), &u("u1"), 1_000_000);
        assert!(t.verify_stream_ticket(&c("c1"), &u("u1"), &ticket, 1_000_000));
        assert!(t.verify_stream_ticket(&c("c1"), &u("u1"), &ticket, 1_059_999));
        assert!(!t.verify_stream_ticket(&c("c1"), &u("u1"), &ticket, 1_060_000), "60 s, not the entry token's day");
        assert!(!t.verify_stream_ticket(&c("c1"), &u("u2"), &ticket, 1_000_000));
        assert!(!t.verify_stream_ticket(&c("c2"), &u("u1"), &ticket, 1_000_000));
        assert!(!t.verify(&c("c1"), &u("u1"), &ticket, 1_000_000), "a ticket does not read the status");
        assert_eq!(t.holder(&c("c1"), &ticket, 1_000_000), None, "nor rejoin as the fan");
        let entry = t.issue(&c("c1"), &u("u1"), 1_000_000);
        assert!(!t.verify_stream_ticket(&c("c1"), &u("u1"), &entry, 1_000_000), "an entry token is no ticket");
        let other_mode = EntryTokens::new(SECRET, FanIdentityMode::Body, 86_400);
        assert!(!other_mode.verify_stream_ticket(&c("c1"), &u("u1"), &ticket, 1_000_000));
    }
}
