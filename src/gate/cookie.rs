//! The session cookie `__Host-qg_<concertId>`: who the fan is, which session, until when, signed.
//! The `__Host-` prefix makes browsers take it only from the booking host itself, over https,
//! with `Path=/` and no `Domain`: a sibling subdomain cannot plant one (cookie tossing).
//!
//! Value: `1.<concertId>.<userId>.<sid>.<startedAt>.<maxAt>.<epoch>.<mac>`, where the mac is
//! HMAC-SHA256 (under its own key, derived from `QUEUEGATE_TOKEN_SECRET`, so no entry token
//! or ticket is ever a cookie) of everything before it, base64url, 32 bytes. Ids never contain
//! a dot (`^[A-Za-z0-9_-]{1,64}$`), so the fields split unambiguously; the concert is inside
//! the signed part, so a cookie is useless for any other concert whatever its name says.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::ids::{ConcertId, UserId};

type HmacSha256 = Hmac<Sha256>;

/// What a session cookie says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionCookie {
    pub concert: ConcertId,
    pub user: UserId,
    /// The session's id (random, hex).
    pub sid: String,
    pub started_ms: i64,
    /// The session ends then, however busy (`sessionMaxSeconds` after it started).
    pub max_at_ms: i64,
    /// The concert's revocation epoch when the session started: a revocation bumps it.
    pub epoch: u64,
}

/// Signs and opens session cookies.
#[derive(Clone)]
pub struct CookieKey {
    mac: HmacSha256,
}

impl CookieKey {
    /// The cookie key derived from the token secret.
    pub fn new(secret: &[u8]) -> Self {
        let mut derive = HmacSha256::new_from_slice(secret).expect("HMAC takes keys of any length");
        derive.update(b"queuegate gate session cookie v1");
        let key = derive.finalize().into_bytes();
        CookieKey { mac: HmacSha256::new_from_slice(&key).expect("HMAC takes keys of any length") }
    }

    fn mac(&self, signed: &str) -> HmacSha256 {
        let mut m = self.mac.clone();
        m.update(signed.as_bytes());
        m
    }

    /// The cookie's value.
    pub fn seal(&self, c: &SessionCookie) -> String {
        let signed = format!("1.{}.{}.{}.{}.{}.{}", c.concert, c.user, c.sid, c.started_ms, c.max_at_ms, c.epoch);
        let tag = URL_SAFE_NO_PAD.encode(self.mac(&signed).finalize().into_bytes());
        format!("{signed}.{tag}")
    }

    /// The cookie `value` if it is ours, untouched, and for `concert`.
    pub fn open(&self, concert: &ConcertId, value: &str) -> Option<SessionCookie> {
        let (signed, tag) = value.rsplit_once('.')?;
        let tag = URL_SAFE_NO_PAD.decode(tag).ok()?;
        self.mac(signed).verify_slice(&tag).ok()?;
        let f: Vec<&str> = signed.split('.').collect();
        let [version, c, user, sid, started, max_at, epoch] = f.as_slice() else { return None };
        if *version != "1" || *c != concert.as_str() || sid.is_empty() || !sid.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        Some(SessionCookie {
            concert: concert.clone(),
            user: UserId::parse(*user).ok()?,
            sid: (*sid).to_owned(),
            started_ms: started.parse().ok()?,
            max_at_ms: max_at.parse().ok()?,
            epoch: epoch.parse().ok()?,
        })
    }
}

/// The cookie's name for a concert.
pub fn name(concert: &ConcertId) -> String {
    format!("__Host-qg_{concert}")
}

/// Every value of cookie `name` in a `Cookie` header (`a=1; b=2`), in order: a browser sends
/// several of one name when more than one path or domain set it, so the gate tries each (one
/// planted beside the real one must not lock the fan out).
pub fn find_all<'a>(header: &'a str, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    header
        .split(';')
        .filter_map(|kv| kv.trim().split_once('='))
        .filter(move |(k, _)| *k == name)
        .map(|(_, v)| v.trim_matches('"'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn cookie(concert: &str, user: &str) -> SessionCookie {
        SessionCookie {
            concert: ConcertId::parse(concert).unwrap(),
            user: UserId::parse(user).unwrap(),
            sid: "00ff".into(),
            started_ms: 1_000,
            max_at_ms: 3_601_000,
            epoch: 2,
        }
    }

    #[test]
    fn a_cookie_opens_for_its_concert_only_and_not_after_any_change() {
        let key = CookieKey::new(b"secret");
        let c = cookie("tour", "alice");
        let v = key.seal(&c);
        assert_eq!(key.open(&c.concert, &v), Some(c.clone()));
        assert_eq!(key.open(&ConcertId::parse("other").unwrap(), &v), None, "bound to the concert");
        assert_eq!(CookieKey::new(b"other secret").open(&c.concert, &v), None, "another key");
        // Another fan's name in the same signature, a later maximum, an older epoch: all refused.
        for forged in [v.replace(".alice.", ".bob."), v.replace(".3601000.", ".9999999."), v.replace(".2.", ".3.")] {
            assert_ne!(forged, v);
            assert_eq!(key.open(&c.concert, &forged), None, "{forged}");
        }
        assert_eq!(key.open(&c.concert, ""), None);
        assert_eq!(key.open(&c.concert, "1.tour.alice"), None);
        // Signed with our key but with a session id that is empty or not hex: refused all the same.
        for sid in ["", "not-hex", "0g"] {
            let odd = SessionCookie { sid: sid.to_owned(), ..c.clone() };
            assert_eq!(key.open(&c.concert, &key.seal(&odd)), None, "sid {sid:?}");
        }
    }

    #[test]
    fn the_cookie_is_found_among_others() {
        let all = |h, n| find_all(h, n).collect::<Vec<_>>();
        assert_eq!(all("a=1; qg_tour=v.1; b=2", "qg_tour"), ["v.1"]);
        assert_eq!(all("qg_tourx=1;qg_tour=2", "qg_tour"), ["2"]);
        assert_eq!(
            all("qg_tour=planted; a=1; qg_tour=\"real\"", "qg_tour"),
            ["planted", "real"],
            "every value, in order"
        );
        assert!(all("a=1", "qg_tour").is_empty());
    }

    proptest! {
        /// Any single changed character of a sealed cookie is refused.
        #[test]
        fn no_changed_character_opens(user in "[A-Za-z0-9_-]{1,64}", at in 0usize..200, with in "[A-Za-z0-9._-]") {
            let key = CookieKey::new(b"secret");
            let c = cookie("tour", &user);
            let v = key.seal(&c);
            let at = at % v.len();
            let mut changed = v.clone();
            changed.replace_range(at..at + 1, &with);
            prop_assume!(changed != v);
            prop_assert_eq!(key.open(&c.concert, &changed), None);
        }
    }
}
