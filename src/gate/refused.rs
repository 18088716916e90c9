//! Admission tokens this gateway has seen refused by Redis (spent, revoked, completed, ended, not
//! admitted): each refusal is final for that token, so a token presented again is refused from
//! memory until it expires, without a Redis call. A spent token replayed in a loop (a leaked link,
//! a bot) costs one signature check a request, not one `exchange.lua` call.
//!
//! At most [`MAX_REFUSED`] tokens are remembered, the oldest learned forgotten first; a
//! forgotten one is asked of Redis again, which refuses it again.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

/// The most refused tokens one gateway remembers (about 100 bytes each: 10 MB at most).
pub const MAX_REFUSED: usize = 100_000;

#[derive(Default)]
struct Inner {
    /// jti → (why, the token's expiry, ms).
    by_jti: HashMap<String, (&'static str, i64)>,
    /// The same jtis in the order learned.
    order: VecDeque<String>,
}

#[derive(Default)]
pub struct RefusedTokens {
    inner: Mutex<Inner>,
}

impl RefusedTokens {
    /// Why the token `jti` was refused, while it has not expired.
    pub fn get(&self, jti: &str, now_ms: i64) -> Option<&'static str> {
        let inner = self.inner.lock().expect("never poisoned");
        inner.by_jti.get(jti).filter(|(_, exp)| *exp > now_ms).map(|(why, _)| *why)
    }

    /// Remembers that Redis refused token `jti` (valid until `exp_ms`) for `why`.
    pub fn remember(&self, jti: &str, why: &'static str, exp_ms: i64, now_ms: i64) {
        let mut inner = self.inner.lock().expect("never poisoned");
        if inner.by_jti.insert(jti.to_owned(), (why, exp_ms)).is_none() {
            inner.order.push_back(jti.to_owned());
        }
        // Forget the oldest learned while over the cap or already expired.
        while let Some(first) = inner.order.front() {
            let expired = inner.by_jti.get(first).is_none_or(|(_, exp)| *exp <= now_ms);
            if !expired && inner.order.len() <= MAX_REFUSED {
                break;
            }
            let first = inner.order.pop_front().expect("just seen");
            inner.by_jti.remove(&first);
        }
    }

    /// Forgets the expired at the front (the rest go as they reach it or past the cap).
    pub fn prune(&self, now_ms: i64) {
        let mut inner = self.inner.lock().expect("never poisoned");
        while let Some(first) = inner.order.front() {
            if inner.by_jti.get(first).is_some_and(|(_, exp)| *exp > now_ms) {
                break;
            }
            let first = inner.order.pop_front().expect("just seen");
            inner.by_jti.remove(&first);
        }
    }

    pub fn len(&self) -> usize {
        self.inner.lock().expect("never poisoned").by_jti.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_token_is_remembered_until_it_expires_and_at_most_the_cap() {
        let r = RefusedTokens::default();
        r.remember("a", "spent", 1_000, 0);
        assert_eq!(r.get("a", 999), Some("spent"));
        assert_eq!(r.get("a", 1_000), None, "expired: the signature check refuses it anyway");
        assert_eq!(r.get("b", 0), None);
        for i in 0..MAX_REFUSED + 5 {
            r.remember(&format!("t{i}"), "revoked", 10_000, 1_001);
        }
        assert_eq!(r.len(), MAX_REFUSED, "the expired one and the oldest beyond the cap forgotten");
        assert_eq!(r.get("t0", 1_002), None);
        assert_eq!(r.get(&format!("t{}", MAX_REFUSED + 4), 1_002), Some("revoked"));
    }

    #[test]
    fn pruning_forgets_a_token_at_its_expiry_and_keeps_the_rest() {
        let r = RefusedTokens::default();
        r.remember("a", "spent", 1_000, 0);
        r.remember("b", "revoked", 2_000, 0);
        r.prune(999);
        assert_eq!(r.len(), 2, "nothing expired yet");
        r.prune(1_000);
        assert_eq!(r.len(), 1, "the first at its expiry");
        assert_eq!(r.get("b", 1_000), Some("revoked"));
        r.prune(2_000);
        assert!(r.is_empty());
    }
}
