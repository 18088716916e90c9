//! Admission tokens: Ed25519-signed JWTs (`alg: EdDSA`) that a booking site verifies offline
//! with the public key from `GET /.well-known/jwks.json`.
//!
//! Claims: `iss` ("queuegate"), `sub` (the userId), `concert`, `iat` and `exp` (seconds), `jti`.
//! Ed25519 signatures are deterministic, so a token is a pure function of (concert, user, issue
//! and expiry time): Redis keeps only those times, and every instance with the same key
//! re-creates the identical token when a fan reads its status.

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
    pub concert: String,
    pub iat: i64,
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
}

/// The signing key and its public half.
#[derive(Clone)]
pub struct AdmissionKeys {
    signing: SigningKey,
    kid: String,
}

#[derive(Serialize)]
struct Header<'a> {
    alg: &'a str,
    typ: &'a str,
    kid: &'a str,
}

impl AdmissionKeys {
    /// Loads a PKCS#8 PEM Ed25519 private key (`openssl genpkey -algorithm ed25519`).
    pub fn from_pem_file(path: &Path) -> anyhow::Result<Self> {
        let pem = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let signing = SigningKey::from_pkcs8_pem(&pem)
            .map_err(|e| anyhow::anyhow!("{} is not a PKCS#8 PEM Ed25519 private key: {e}", path.display()))?;
        Ok(Self::from_signing_key(signing))
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
    pub fn ephemeral() -> Self {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).expect("the OS random source works");
        Self::from_signing_key(SigningKey::from_bytes(&seed))
    }

    fn from_signing_key(signing: SigningKey) -> Self {
        let digest = Sha256::digest(signing.verifying_key().as_bytes());
        let kid = URL_SAFE_NO_PAD.encode(&digest[..12]);
        AdmissionKeys { signing, kid }
    }

    /// The key id (`kid`): a hash of the public key.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The JSON Web Key Set publishing the public key.
    pub fn jwks(&self) -> serde_json::Value {
        serde_json::json!({
            "keys": [{
                "kty": "OKP",
                "crv": "Ed25519",
                "alg": "EdDSA",
                "use": "sig",
                "kid": self.kid,
                "x": URL_SAFE_NO_PAD.encode(self.signing.verifying_key().as_bytes()),
            }]
        })
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
            concert: concert.to_owned(),
            iat: iat_ms.div_euclid(1000),
            exp: exp_ms.div_euclid(1000),
            jti,
        };
        let header = Header { alg: "EdDSA", typ: "JWT", kid: &self.kid };
        let mut out = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header).expect("header serialises"));
        out.push('.');
        out.push_str(&URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).expect("claims serialise")));
        let sig = self.signing.sign(out.as_bytes());
        out.push('.');
        out.push_str(&URL_SAFE_NO_PAD.encode(sig.to_bytes()));
        out
    }

    /// Checks a token's signature and expiry (against `now_ms`) and returns its claims.
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
        let key: VerifyingKey = self.signing.verifying_key();
        key.verify(signed.as_bytes(), &Signature::from_bytes(&sig)).map_err(|_| TokenError::BadSignature)?;
        let claims: Claims =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(claims).map_err(|_| TokenError::Malformed)?)
                .map_err(|_| TokenError::Malformed)?;
        if claims.exp * 1000 <= now_ms {
            return Err(TokenError::Expired);
        }
        Ok(claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_verifies_until_it_expires_and_not_after_tampering() {
        let k = AdmissionKeys::ephemeral();
        let t = k.issue("c1", "u1", 1_000_000, 1_060_000);
        let claims = k.verify(&t, 1_000_500).expect("valid");
        assert_eq!((claims.sub.as_str(), claims.concert.as_str(), claims.iat, claims.exp), ("u1", "c1", 1000, 1060));
        assert_eq!(k.verify(&t, 1_060_000), Err(TokenError::Expired));
        let mut tampered = t.clone();
        let mid = tampered.find('.').unwrap() + 3;
        tampered.replace_range(mid..mid + 1, if &t[mid..mid + 1] == "A" { "B" } else { "A" });
        assert!(k.verify(&tampered, 1_000_500).is_err());
        assert_eq!(AdmissionKeys::ephemeral().verify(&t, 1_000_500), Err(TokenError::BadSignature));
    }

    #[test]
    fn a_generated_key_file_loads_and_is_never_overwritten() {
        let path = std::env::temp_dir().join(format!("qg-key-{}.pem", uuid::Uuid::new_v4()));
        AdmissionKeys::generate_pem_file(&path).expect("written");
        let k = AdmissionKeys::from_pem_file(&path).expect("loads");
        assert!(k.verify(&k.issue("c", "u", 0, i64::MAX / 2), 1).is_ok());
        assert!(AdmissionKeys::generate_pem_file(&path).is_err(), "refuses to overwrite");
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn tokens_are_deterministic_so_any_instance_recreates_them() {
        let k = AdmissionKeys::ephemeral();
        assert_eq!(k.issue("c", "u", 5, 6_000), k.issue("c", "u", 5, 6_000));
    }
}
