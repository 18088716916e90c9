//! Entry tokens: what a fan presents to read its own status.
//!
//! A token is HMAC-SHA256 over the concert and user ids with `QUEUEGATE_TOKEN_SECRET`,
//! base64url without padding. It holds no state, so every gateway instance with the same secret
//! can check it, and it is compared in constant time.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Issues and checks entry tokens.
#[derive(Clone)]
pub struct EntryTokens {
    mac: HmacSha256,
}

impl EntryTokens {
    pub fn new(secret: &[u8]) -> Self {
        EntryTokens { mac: HmacSha256::new_from_slice(secret).expect("HMAC takes keys of any length") }
    }

    fn mac_for(&self, concert: &str, user: &str) -> HmacSha256 {
        let mut m = self.mac.clone();
        // Domain-separated and unambiguous: ids cannot contain NUL.
        m.update(b"queuegate-entry\0");
        m.update(concert.as_bytes());
        m.update(b"\0");
        m.update(user.as_bytes());
        m
    }

    /// The token of (`concert`, `user`).
    pub fn issue(&self, concert: &str, user: &str) -> String {
        URL_SAFE_NO_PAD.encode(self.mac_for(concert, user).finalize().into_bytes())
    }

    /// Whether `token` is the token of (`concert`, `user`), in constant time.
    pub fn verify(&self, concert: &str, user: &str, token: &str) -> bool {
        match URL_SAFE_NO_PAD.decode(token) {
            Ok(raw) => self.mac_for(concert, user).verify_slice(&raw).is_ok(),
            Err(_) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_verifies_only_for_its_own_fan_and_concert() {
        let t = EntryTokens::new(b"0123456789abcdef0123456789abcdef");
        let tok = t.issue("c1", "u1");
        assert!(t.verify("c1", "u1", &tok));
        assert!(!t.verify("c1", "u2", &tok));
        assert!(!t.verify("c2", "u1", &tok));
        assert!(!t.verify("c1", "u1", "not-base64!"));
        assert!(!EntryTokens::new(b"another-secret-another-secret-xx").verify("c1", "u1", &tok));
    }
}
