//! Admission tokens: Ed25519-signed JWTs (`alg: EdDSA`) that a booking site verifies offline
//! with the public key from `GET /.well-known/jwks.json`.
//!
//! Claims: `iss` ("queuegate"), `sub` (the userId), `aud` (`QUEUEGATE_ADMISSION_AUDIENCE`),
//! `concert`, `iat`, `nbf` (= `iat`) and `exp` (seconds), `jti`. Ed25519 signatures are
//! deterministic, so a token is a pure function of (concert, user, issue and expiry time): Redis
//! keeps only those times, and every instance with the same key re-creates the identical token
//! when a fan reads its status.
//!
//! Several keys may be configured, as several PEM blocks in one file (new first, then old) or as
//! several files (`QUEUEGATE_ADMISSION_KEY_FILE=new.pem,old.pem`): the first key signs, all are
//! published in the JWKS and accepted when verifying, so a key rotation does not invalidate
//! tokens already issued.

use std::path::Path;

use anyhow::Context;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ed25519_dalek::pkcs8::DecodePrivateKey;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Issuer claim of every admission token.
pub const ISSUER: &str = "queuegate";

/// The claims of an admission token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    pub sub: String,
    pub aud: String,
    pub concert: String,
    pub iat: i64,
    pub nbf: i64,
    pub exp: i64,
    pub jti: String,
}

/// Why a presented admission token is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("the admission token is malformed")]
    Malformed,
    #[error("the admission token's signature is not valid")]
    BadSignature,
    #[error("the admission token has expired")]
    Expired,
    #[error("the admission token is not valid yet")]
    NotYetValid,
    #[error("the admission token is for another audience")]
    WrongAudience,
}

/// One key: the signing half and its id.
#[derive(Clone)]
struct Key {
    signing: SigningKey,
    kid: String,
}

/// The admission keys (the first signs; all verify and are published) and the audience.
#[derive(Clone)]
pub struct AdmissionKeys {
    keys: Vec<Key>,
    audience: String,
}

#[derive(Serialize)]
struct Header<'a> {
    alg: &'a str,
    typ: &'a str,
    kid: &'a str,
}

impl AdmissionKeys {
    /// Loads PKCS#8 PEM Ed25519 private keys (`openssl genpkey -algorithm ed25519`), each file
    /// holding one or more PEM blocks, in order; the first key signs. Tokens carry
    /// `aud: audience`.
    pub fn from_pem_files(paths: &[impl AsRef<Path>], audience: &str) -> anyhow::Result<Self> {
        anyhow::ensure!(!paths.is_empty(), "no key file given");
        let mut keys = Vec::new();
        for path in paths {
            let path = path.as_ref();
            let pem = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
            let blocks = pem_blocks(&pem).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
            for (i, block) in blocks.iter().enumerate() {
                let signing = SigningKey::from_pkcs8_pem(block).map_err(|e| {
                    anyhow::anyhow!(
                        "{} (key {} of {}) is not a PKCS#8 PEM Ed25519 private key: {e}",
                        path.display(),
                        i + 1,
                        blocks.len()
                    )
                })?;
                keys.push(Key::new(signing));
            }
        }
        Ok(AdmissionKeys { keys, audience: audience.to_owned() })
    }

    /// Writes a new random key as PKCS#8 PEM to `path` (mode 0600), refusing to overwrite.
    pub fn generate_pem_file(path: &Path) -> anyhow::Result<()> {
        use ed25519_dalek::pkcs8::{spki::der::pem::LineEnding, EncodePrivateKey};
        use std::io::Write;
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|e| anyhow::anyhow!("no OS randomness: {e}"))?;
        let pem = SigningKey::from_bytes(&seed).to_pkcs8_pem(LineEnding::LF).map_err(|e| anyhow::anyhow!("{e}"))?;
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
        let mut f = opts.open(path).with_context(|| format!("creating {}", path.display()))?;
        f.write_all(pem.as_bytes()).with_context(|| format!("writing {}", path.display()))?;
        Ok(())
    }

    /// A random key that lives as long as the process (development only: tokens of different
    /// instances do not verify with each other's JWKS).
    pub fn ephemeral(audience: &str) -> Self {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).expect("the OS random source works");
        AdmissionKeys { keys: vec![Key::new(SigningKey::from_bytes(&seed))], audience: audience.to_owned() }
    }

    /// The key id (`kid`) of the signing key: a hash of its public key.
    pub fn kid(&self) -> &str {
        &self.keys[0].kid
    }

    /// The JSON Web Key Set publishing every public key, the signing one first.
    pub fn jwks(&self) -> serde_json::Value {
        let keys: Vec<serde_json::Value> = self
            .keys
            .iter()
            .map(|k| {
                serde_json::json!({
                    "kty": "OKP",
                    "crv": "Ed25519",
                    "alg": "EdDSA",
                    "use": "sig",
                    "kid": k.kid,
                    "x": URL_SAFE_NO_PAD.encode(k.signing.verifying_key().as_bytes()),
                })
            })
            .collect();
        serde_json::json!({ "keys": keys })
    }

    /// The token admitting `user` to `concert`, issued at `iat_ms`, expiring at `exp_ms`.
    pub fn issue(&self, concert: &str, user: &str, iat_ms: i64, exp_ms: i64) -> String {
        let jti = {
            let d = Sha256::digest(format!("{concert}\0{user}\0{iat_ms}").as_bytes());
            URL_SAFE_NO_PAD.encode(&d[..16])
        };
        let claims = Claims {
            iss: ISSUER.to_owned(),
            sub: user.to_owned(),
            aud: self.audience.clone(),
            concert: concert.to_owned(),
            iat: iat_ms.div_euclid(1000),
            nbf: iat_ms.div_euclid(1000),
            exp: exp_ms.div_euclid(1000),
            jti,
        };
        let signer = &self.keys[0];
        let header = Header { alg: "EdDSA", typ: "JWT", kid: &signer.kid };
        let mut out = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header).expect("header serialises"));
        out.push('.');
        out.push_str(&URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).expect("claims serialise")));
        let sig = signer.signing.sign(out.as_bytes());
        out.push('.');
        out.push_str(&URL_SAFE_NO_PAD.encode(sig.to_bytes()));
        out
    }

    /// Checks a token's signature (by any configured key, chosen by `kid`), audience, `nbf` and
    /// expiry (against `now_ms`) and returns its claims.
    pub fn verify(&self, token: &str, now_ms: i64) -> Result<Claims, TokenError> {
        let (signed, sig) = token.rsplit_once('.').ok_or(TokenError::Malformed)?;
        let (header, claims) = signed.split_once('.').ok_or(TokenError::Malformed)?;
        let header: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).map_err(|_| TokenError::Malformed)?)
                .map_err(|_| TokenError::Malformed)?;
        if header["alg"] != "EdDSA" {
            return Err(TokenError::Malformed);
        }
        let sig: [u8; 64] =
            URL_SAFE_NO_PAD.decode(sig).ok().and_then(|b| b.try_into().ok()).ok_or(TokenError::Malformed)?;
        let key = self.keys.iter().find(|k| header["kid"] == k.kid.as_str()).ok_or(TokenError::BadSignature)?;
        let key: VerifyingKey = key.signing.verifying_key();
        key.verify(signed.as_bytes(), &Signature::from_bytes(&sig)).map_err(|_| TokenError::BadSignature)?;
        let claims: Claims =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(claims).map_err(|_| TokenError::Malformed)?)
                .map_err(|_| TokenError::Malformed)?;
        if claims.exp * 1000 <= now_ms {
            return Err(TokenError::Expired);
        }
        if claims.nbf * 1000 > now_ms {
            return Err(TokenError::NotYetValid);
        }
        if claims.aud != self.audience {
            return Err(TokenError::WrongAudience);
        }
        Ok(claims)
    }
}

impl Key {
    fn new(signing: SigningKey) -> Self {
        let digest = Sha256::digest(signing.verifying_key().as_bytes());
        Key { kid: URL_SAFE_NO_PAD.encode(&digest[..12]), signing }
    }
}

/// Splits a PEM file into its blocks (`-----BEGIN …-----` to `-----END …-----`), in order.
/// Refuses a file with no block, an unterminated block, or text between blocks, so a key pasted
/// without its boundary lines is an error rather than a key silently left out.
fn pem_blocks(pem: &str) -> Result<Vec<String>, String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for (n, line) in pem.lines().enumerate() {
        let trimmed = line.trim();
        match current.as_mut() {
            None if trimmed.is_empty() => {}
            None if trimmed.starts_with("-----BEGIN ") => current = Some(format!("{trimmed}\n")),
            None => return Err(format!("line {} is outside any -----BEGIN/-----END block", n + 1)),
            Some(block) => {
                block.push_str(trimmed);
                block.push('\n');
                if trimmed.starts_with("-----END ") {
                    blocks.push(current.take().expect("inside a block"));
                }
            }
        }
    }
    if current.is_some() {
        return Err("the last PEM block has no -----END line".into());
    }
    if blocks.is_empty() {
        return Err("no PEM block (-----BEGIN PRIVATE KEY-----) in the file".into());
    }
    Ok(blocks)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_verifies_until_it_expires_and_not_after_tampering() {
        let k = AdmissionKeys::ephemeral("booking");
        let t = k.issue("c1", "u1", 1_000_000, 1_060_000);
        let claims = k.verify(&t, 1_000_500).expect("valid");
        assert_eq!((claims.sub.as_str(), claims.concert.as_str(), claims.iat, claims.exp), ("u1", "c1", 1000, 1060));
        assert_eq!((claims.aud.as_str(), claims.nbf), ("booking", 1000));
        assert!(k.verify(&t, 1_000_000).is_ok(), "valid from its nbf on, to the millisecond");
        assert!(k.verify(&t, 1_059_999).is_ok(), "and until its exp");
        assert_eq!(k.verify(&t, 1_060_000), Err(TokenError::Expired));
        assert_eq!(k.verify(&t, 999_000), Err(TokenError::NotYetValid));
        let mut tampered = t.clone();
        let mid = tampered.find('.').unwrap() + 3;
        tampered.replace_range(mid..mid + 1, if &t[mid..mid + 1] == "A" { "B" } else { "A" });
        assert!(k.verify(&tampered, 1_000_500).is_err());
        assert_eq!(AdmissionKeys::ephemeral("booking").verify(&t, 1_000_500), Err(TokenError::BadSignature));
        let other_audience = AdmissionKeys { keys: k.keys.clone(), audience: "elsewhere".into() };
        assert_eq!(other_audience.verify(&t, 1_000_500), Err(TokenError::WrongAudience));
    }

    #[test]
    fn after_a_rotation_the_new_key_signs_and_tokens_of_the_old_one_still_verify() {
        let dir = std::env::temp_dir();
        let (old, new) = (
            dir.join(format!("qg-old-{}.pem", uuid::Uuid::new_v4())),
            dir.join(format!("qg-new-{}.pem", uuid::Uuid::new_v4())),
        );
        AdmissionKeys::generate_pem_file(&old).unwrap();
        AdmissionKeys::generate_pem_file(&new).unwrap();
        let before = AdmissionKeys::from_pem_files(&[&old], "booking").unwrap();
        let issued_before = before.issue("c", "u", 0, i64::MAX / 2);
        let after = AdmissionKeys::from_pem_files(&[&new, &old], "booking").unwrap();
        assert_ne!(after.kid(), before.kid(), "the new key signs");
        assert!(after.verify(&issued_before, 1).is_ok(), "a token of the old key still verifies");
        assert_eq!(after.jwks()["keys"].as_array().unwrap().len(), 2, "both keys are published");
        assert_eq!(after.jwks()["keys"][1]["kid"], before.kid());
        std::fs::remove_file(old).unwrap();
        std::fs::remove_file(new).unwrap();
    }

    #[test]
    fn a_rotation_in_one_file_loads_every_key_in_order() {
        let dir = std::env::temp_dir();
        let (old, new, both) = (
            dir.join(format!("qg-old-{}.pem", uuid::Uuid::new_v4())),
            dir.join(format!("qg-new-{}.pem", uuid::Uuid::new_v4())),
            dir.join(format!("qg-both-{}.pem", uuid::Uuid::new_v4())),
        );
        AdmissionKeys::generate_pem_file(&old).unwrap();
        AdmissionKeys::generate_pem_file(&new).unwrap();
        let before = AdmissionKeys::from_pem_files(&[&old], "booking").unwrap();
        let issued_before = before.issue("c", "u", 0, i64::MAX / 2);
        // What an operator does to the chart's one mounted file: `cat new.pem old.pem`.
        let concatenated = std::fs::read_to_string(&new).unwrap() + "\n" + &std::fs::read_to_string(&old).unwrap();
        std::fs::write(&both, &concatenated).unwrap();
        let after = AdmissionKeys::from_pem_files(&[&both], "booking").expect("two PEM blocks in one file load");
        let new_only = AdmissionKeys::from_pem_files(&[&new], "booking").unwrap();
        assert_eq!(after.kid(), new_only.kid(), "the file's first key signs");
        assert!(after.verify(&issued_before, 1).is_ok(), "a token of the second key still verifies");
        assert_eq!(after.jwks()["keys"].as_array().unwrap().len(), 2, "both keys are published");
        assert_eq!(after.jwks()["keys"][1]["kid"], before.kid());

        let truncated = concatenated.trim_end().trim_end_matches("-----END PRIVATE KEY-----").to_owned();
        std::fs::write(&both, truncated).unwrap();
        let err = AdmissionKeys::from_pem_files(&[&both], "booking").err().expect("an unterminated block is refused");
        assert!(format!("{err:#}").contains("no -----END"), "{err:#}");
        std::fs::write(&both, "MC4CAQAwBQYDK2VwBCIEI\n").unwrap();
        assert!(
            AdmissionKeys::from_pem_files(&[&both], "booking").is_err(),
            "Base64 without boundary lines is refused"
        );
        for p in [old, new, both] {
            std::fs::remove_file(p).unwrap();
        }
    }

    #[test]
    fn a_generated_key_file_loads_and_is_never_overwritten() {
        let path = std::env::temp_dir().join(format!("qg-key-{}.pem", uuid::Uuid::new_v4()));
        AdmissionKeys::generate_pem_file(&path).expect("written");
        let k = AdmissionKeys::from_pem_files(&[&path], "booking").expect("loads");
        assert!(k.verify(&k.issue("c", "u", 0, i64::MAX / 2), 1).is_ok());
        assert!(AdmissionKeys::generate_pem_file(&path).is_err(), "refuses to overwrite");
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn tokens_are_deterministic_so_any_instance_recreates_them() {
        let k = AdmissionKeys::ephemeral("booking");
        assert_eq!(k.issue("c", "u", 5, 6_000), k.issue("c", "u", 5, 6_000));
    }
}
