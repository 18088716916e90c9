//! The exchange bound to the browser that waited (docs/explain-design.md, "Only the browser that waited").
//!
//! Without it, any browser redeems whatever admission token its URL carries: a link with an
//! attacker's `?queuegate_token=` makes a victim shop under the attacker's `X-Queuegate-User`
//! (session fixation). So the gate, when it sends a browser to the room (the 302 of
//! `?redirect=true`), also gives that browser a random nonce in the cookie
//! `__Host-qgb_<concertId>` (HttpOnly, Secure, `SameSite=Lax`, `Path=/`, a day) on the booking
//! host, and writes `queuegate_bind=<bind>` into the `return` URL, where `bind` is an HMAC of
//! the concert and the nonce under a key derived from `QUEUEGATE_TOKEN_SECRET`. The room sends
//! the fan back to `return` with the token added, so the exchange sees the token, the bind and
//! (from this browser only) the nonce; it goes ahead only when a nonce cookie of this request
//! hashes to the bind. A link carries no cookie: opened in another browser it is refused before
//! the token is looked at, and the token stays unspent for the fan who waited.
//!
//! What must hold: the nonce never leaves the booking host's cookie jar (HttpOnly, and
//! `__Host-`, so no sibling subdomain can plant one); the bind alone (which travels in URLs) is
//! useless without the nonce; a browser that already has a nonce keeps it (a second tab does
//! not orphan the first tab's `return`).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::ids::ConcertId;

type HmacSha256 = Hmac<Sha256>;

/// The query parameter of `return` (and so of the URL the room sends the fan back to) that
/// names the nonce the exchange needs.
pub const BIND_PARAM: &str = "queuegate_bind";

/// How long a browser keeps its nonce (s): longer than any wait in the room.
pub const NONCE_MAX_AGE_SECONDS: u32 = 86_400;

/// Bytes of randomness in a nonce, and of the HMAC kept in a bind (128 bits each).
const BYTES: usize = 16;

/// Characters of a nonce or a bind in base64url without padding.
const CHARS: usize = 22;

/// Makes and checks binds.
#[derive(Clone)]
pub struct BindKey {
    mac: HmacSha256,
}

impl BindKey {
    /// The bind key derived from the token secret (its own label: no cookie or token MAC is
    /// ever a bind).
    pub fn new(secret: &[u8]) -> Self {
        let mut derive = HmacSha256::new_from_slice(secret).expect("HMAC takes keys of any length");
        derive.update(b"queuegate gate browser binding v1");
        let key = derive.finalize().into_bytes();
        BindKey { mac: HmacSha256::new_from_slice(&key).expect("HMAC takes keys of any length") }
    }

    fn mac(&self, concert: &ConcertId, nonce: &str) -> HmacSha256 {
        let mut m = self.mac.clone();
        // A concert id never contains '.', so concert and nonce split unambiguously.
        m.update(concert.as_str().as_bytes());
        m.update(b".");
        m.update(nonce.as_bytes());
        m
    }

    /// The bind of `nonce` for `concert`: what `return` carries.
    pub fn bind(&self, concert: &ConcertId, nonce: &str) -> String {
        URL_SAFE_NO_PAD.encode(&self.mac(concert, nonce).finalize().into_bytes()[..BYTES])
    }

    /// Whether `nonce` is the one `bind` was made from, for `concert` (constant time).
    pub fn matches(&self, concert: &ConcertId, nonce: &str, bind: &str) -> bool {
        if !well_formed(nonce) || bind.len() != CHARS {
            return false;
        }
        let Ok(tag) = URL_SAFE_NO_PAD.decode(bind) else { return false };
        self.mac(concert, nonce).verify_truncated_left(&tag).is_ok()
    }
}

/// The nonce cookie's name for a concert (`__Host-qgb_`: never a session cookie's
/// `__Host-qg_<id>`, whatever the concert ids).
pub fn name(concert: &ConcertId) -> String {
    format!("__Host-qgb_{concert}")
}

/// A new nonce: 128 random bits, base64url.
pub fn new_nonce() -> String {
    let mut b = [0u8; BYTES];
    getrandom::fill(&mut b).expect("the operating system gives random bytes");
    URL_SAFE_NO_PAD.encode(b)
}

/// Whether `v` looks like a nonce this gate made (anything else a browser sends is not reused).
pub fn well_formed(v: &str) -> bool {
    v.len() == CHARS && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The `Set-Cookie` value that gives a browser `nonce`. Always `SameSite=Lax`: it is needed
/// only on the top-level GET that brings the fan back from the room, which Lax sends.
pub fn set_cookie(concert: &ConcertId, nonce: &str) -> String {
    format!("{}={nonce}; HttpOnly; Secure; SameSite=Lax; Path=/; Max-Age={NONCE_MAX_AGE_SECONDS}", name(concert))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bind_matches_its_nonce_and_concert_only() {
        let key = BindKey::new(b"secret");
        let (tour, other) = (ConcertId::parse("tour").unwrap(), ConcertId::parse("other").unwrap());
        let (n1, n2) = (new_nonce(), new_nonce());
        assert!(well_formed(&n1) && n1 != n2, "{n1} {n2}");
        let b = key.bind(&tour, &n1);
        assert_eq!(b.len(), CHARS);
        assert!(key.matches(&tour, &n1, &b));
        assert!(!key.matches(&tour, &n2, &b), "another browser's nonce");
        assert!(!key.matches(&other, &n1, &b), "another concert");
        assert!(!BindKey::new(b"other secret").matches(&tour, &n1, &b), "another key");
        assert!(!key.matches(&tour, &n1, &b[..CHARS - 1]), "cut short");
        assert!(!key.matches(&tour, &n1, ""));
        assert!(!key.matches(&tour, "short", &key.bind(&tour, "short")), "only nonces this gate makes");
    }

    #[test]
    fn a_nonce_is_twenty_two_base64url_characters() {
        assert!(well_formed("abcdefghijklmnopqrst-_"), "letters, digits, - and _");
        for bad in
            ["abcdefghijklmnopqrst-", "abcdefghijklmnopqrst-_x", "abcdefghijklmnopqrst+/", "abcdefghijklmnopqrst _"]
        {
            assert!(!well_formed(bad), "{bad}");
        }
    }

    #[test]
    fn the_nonce_cookie_never_shares_a_name_with_a_session_cookie() {
        let c = ConcertId::parse("tour").unwrap();
        assert_eq!(name(&c), "__Host-qgb_tour");
        assert!(!name(&c).starts_with("__Host-qg_"), "session cookies are __Host-qg_<concertId>");
        assert_eq!(set_cookie(&c, "n"), "__Host-qgb_tour=n; HttpOnly; Secure; SameSite=Lax; Path=/; Max-Age=86400");
    }
}
