//! Identity tokens verified already, by their SHA-256: a fan who joins again with the same
//! token (a reload, a retried join, a second tab) costs a hash and a lookup instead of a
//! signature check — which for ES256 and RS256 in pure Rust is 200-300 µs, ten times a whole
//! join. Envoy's JWT filter keeps the same kind of cache (`jwt_cache_config`).
//!
//! What is kept per token: the fan's id and the token's `exp` and `nbf`. A hit is honoured only
//! while those still hold (with the leeway), so an expired token is refused exactly as before;
//! the cache is emptied whenever the keys change (a key the JWKS dropped verifies nothing
//! cached under it), and it holds at most [`MAX_TOKENS`] tokens (about 100 bytes each), after
//! which it starts again.

use std::collections::HashMap;
use std::sync::RwLock;

use sha2::{Digest, Sha256};

use crate::ids::UserId;

/// Tokens remembered at most (~10 MB).
pub const MAX_TOKENS: usize = 100_000;

struct Entry {
    user: UserId,
    exp: i64,
    nbf: Option<i64>,
}

/// The verified tokens of one verifier.
#[derive(Default)]
pub struct Verified(RwLock<HashMap<[u8; 32], Entry>>);

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

impl Verified {
    /// The fan of `token` if it was verified before and its times still hold at `now_secs`
    /// (`leeway` seconds either side, as the full check allows).
    pub fn get(&self, token: &str, now_secs: i64, leeway: i64) -> Option<UserId> {
        let map = self.0.read().unwrap_or_else(|p| p.into_inner());
        let e = map.get(&digest(token))?;
        let live = now_secs < e.exp + leeway && e.nbf.is_none_or(|nbf| nbf - leeway <= now_secs);
        live.then(|| e.user.clone())
    }

    /// Remembers a token that passed the full check.
    pub fn insert(&self, token: &str, user: UserId, exp: i64, nbf: Option<i64>) {
        let mut map = self.0.write().unwrap_or_else(|p| p.into_inner());
        if map.len() >= MAX_TOKENS {
            map.clear();
        }
        map.insert(digest(token), Entry { user, exp, nbf });
    }

    /// Forgets everything (the keys changed).
    pub fn clear(&self) {
        self.0.write().unwrap_or_else(|p| p.into_inner()).clear();
    }

    pub fn len(&self) -> usize {
        self.0.read().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_remembered_token_is_honoured_only_while_its_times_hold_and_only_for_itself() {
        let v = Verified::default();
        let ann = UserId::parse("ann").unwrap();
        v.insert("tok-a", ann.clone(), 1_000, Some(500));
        assert_eq!(v.get("tok-a", 700, 0), Some(ann.clone()));
        assert_eq!(v.get("tok-b", 700, 0), None, "another token, even one sharing a prefix");
        assert_eq!(v.get("tok-a", 1_000, 0), None, "expired");
        assert_eq!(v.get("tok-a", 1_029, 30), Some(ann.clone()), "within the leeway");
        assert_eq!(v.get("tok-a", 1_030, 30), None);
        assert_eq!(v.get("tok-a", 499, 0), None, "not valid yet");
        assert_eq!(v.get("tok-a", 480, 30), Some(ann), "nbf with leeway");
        v.clear();
        assert_eq!(v.get("tok-a", 700, 0), None, "forgotten when the keys change");
    }

    #[test]
    fn the_cache_is_bounded() {
        let v = Verified::default();
        for i in 0..MAX_TOKENS + 5 {
            v.insert(&format!("t{i}"), UserId::parse("u").unwrap(), i64::MAX / 2, None);
        }
        assert!(v.len() <= MAX_TOKENS, "{}", v.len());
    }
}
