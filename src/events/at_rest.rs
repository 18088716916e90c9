//! Webhook secrets encrypted at rest: what Redis holds in `qg:{c}:whsecrets` is
//! `v1:<base64url(nonce ‖ ciphertext ‖ tag)>`, ChaCha20-Poly1305 under a key derived from
//! `QUEUEGATE_TOKEN_SECRET`, with the concert and the webhook as associated data (a value moved
//! to another webhook's field does not open). A Redis dump, a replica or a backup then holds no
//! secret a receiver would trust. Values written before (`whsec_…` in the clear) are read as
//! they are and encrypted at the next rotation.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use hmac::{Hmac, Mac};
use sha2::Sha256;

const PREFIX: &str = "v1:";

#[derive(Clone)]
pub struct SecretBox {
    cipher: ChaCha20Poly1305,
}

impl SecretBox {
    pub fn new(token_secret: &[u8]) -> Self {
        let mut derive = <Hmac<Sha256> as Mac>::new_from_slice(token_secret).expect("HMAC takes keys of any length");
        derive.update(b"queuegate webhook secrets at rest v1");
        let key = derive.finalize().into_bytes();
        SecretBox { cipher: ChaCha20Poly1305::new(Key::from_slice(&key)) }
    }

    fn aad(concert: &str, hook: &str) -> Vec<u8> {
        format!("{concert}/{hook}").into_bytes()
    }

    /// What Redis stores for webhook `hook` of `concert`.
    pub fn seal(&self, concert: &str, hook: &str, secret: &str) -> String {
        let mut nonce = [0u8; 12];
        getrandom::fill(&mut nonce).expect("the operating system's random source");
        let aad = Self::aad(concert, hook);
        let sealed = self
            .cipher
            .encrypt(Nonce::from_slice(&nonce), Payload { msg: secret.as_bytes(), aad: &aad })
            .expect("ChaCha20-Poly1305 encrypts any message of this size");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(out))
    }

    /// The secret a stored value holds: decrypted, or as it is when written in the clear by an
    /// older version; None when it does not open (another token secret, another webhook's).
    pub fn open(&self, concert: &str, hook: &str, stored: &str) -> Option<String> {
        let Some(b64) = stored.strip_prefix(PREFIX) else { return Some(stored.to_owned()) };
        let raw = URL_SAFE_NO_PAD.decode(b64).ok()?;
        let (nonce, sealed) = raw.split_at_checked(12)?;
        let aad = Self::aad(concert, hook);
        let plain = self.cipher.decrypt(Nonce::from_slice(nonce), Payload { msg: sealed, aad: &aad }).ok()?;
        String::from_utf8(plain).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_opens_for_its_webhook_and_key_only_and_old_clear_values_still_read() {
        let b = SecretBox::new(b"token secret");
        let stored = b.seal("tour", "wh_1", "whsec_abc");
        assert!(stored.starts_with("v1:") && !stored.contains("whsec_abc"), "{stored}");
        assert_ne!(stored, b.seal("tour", "wh_1", "whsec_abc"), "a fresh nonce each time");
        assert_eq!(b.open("tour", "wh_1", &stored).as_deref(), Some("whsec_abc"));
        assert_eq!(b.open("tour", "wh_2", &stored), None, "moved to another webhook");
        assert_eq!(b.open("other", "wh_1", &stored), None, "moved to another concert");
        // Shorter than a nonce, a nonce alone, a nonce without its tag: none opens, none panics.
        for raw in [&[7u8; 5][..], &[7u8; 12][..], &[7u8; 27][..]] {
            assert_eq!(b.open("tour", "wh_1", &format!("v1:{}", URL_SAFE_NO_PAD.encode(raw))), None);
        }
        assert_eq!(SecretBox::new(b"another").open("tour", "wh_1", &stored), None, "another token secret");
        let mut tampered = stored.clone();
        tampered.pop();
        tampered.push(if stored.ends_with('A') { 'B' } else { 'A' });
        assert_eq!(b.open("tour", "wh_1", &tampered), None);
        assert_eq!(b.open("tour", "wh_1", "whsec_old").as_deref(), Some("whsec_old"), "written in the clear before");
    }
}
