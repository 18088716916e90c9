//! Verifying keys prepared once per key, not once per token.
//!
//! jsonwebtoken's RustCrypto backend turns the JWK's bytes into a verifying key on every
//! `decode`: an Ed25519 point decompression, a P-256 point decoding, an RSA modulus parse, each
//! a large share of a join's cost in jwt mode. jsonwebtoken lets a process install its own
//! [`CryptoProvider`]; ours hands out verifiers over keys prepared the first time a key is seen
//! and kept (at most [`MAX_KEYS`]; a JWKS rotation past it starts the table again), and leaves
//! every other algorithm (HS256 among them) and all signing to the RustCrypto provider. The
//! checks themselves are unchanged: the same curve arithmetic, and jsonwebtoken still matches
//! the token's `alg` to the key's and validates the claims.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock, RwLock};

use jsonwebtoken::crypto::{rust_crypto, CryptoProvider, JwkUtils, JwtVerifier};
use jsonwebtoken::errors::Result;
use jsonwebtoken::signature::{Error, Verifier};
use jsonwebtoken::{Algorithm, DecodingKey, DecodingKeyKind};
use sha2::{Digest, Sha256};

/// Prepared keys kept at most (a JWKS holds a handful; rotations add a few a year).
pub const MAX_KEYS: usize = 64;

/// A verifying key ready to check signatures.
enum Prepared {
    Ed25519(ed25519_dalek::VerifyingKey),
    P256(p256::ecdsa::VerifyingKey),
    Rsa(rsa::RsaPublicKey),
}

impl Prepared {
    fn of(alg: Algorithm, key: &DecodingKey) -> Option<Prepared> {
        match (alg, key.kind()) {
            (Algorithm::EdDSA, DecodingKeyKind::SecretOrDer(b)) => {
                ed25519_dalek::VerifyingKey::from_bytes(b.get(..32)?.try_into().ok()?).ok().map(Prepared::Ed25519)
            }
            (Algorithm::ES256, DecodingKeyKind::SecretOrDer(b)) => {
                p256::ecdsa::VerifyingKey::from_sec1_bytes(b).ok().map(Prepared::P256)
            }
            (Algorithm::RS256, DecodingKeyKind::RsaModulusExponent { n, e }) => {
                let (n, e) = (rsa::BigUint::from_bytes_be(n), rsa::BigUint::from_bytes_be(e));
                rsa::RsaPublicKey::new(n, e).ok().map(Prepared::Rsa)
            }
            _ => None,
        }
    }
}

/// What identifies a key: its algorithm and its bytes.
type KeyId = (u8, Vec<u8>);

fn key_id(alg: Algorithm, key: &DecodingKey) -> KeyId {
    let bytes = match key.kind() {
        DecodingKeyKind::SecretOrDer(b) => b.clone(),
        DecodingKeyKind::RsaModulusExponent { n, e } => [n.as_slice(), b"\0", e.as_slice()].concat(),
    };
    let tag = match alg {
        Algorithm::EdDSA => 1,
        Algorithm::ES256 => 2,
        _ => 3,
    };
    (tag, bytes)
}

fn table() -> &'static RwLock<HashMap<KeyId, Arc<Prepared>>> {
    static TABLE: OnceLock<RwLock<HashMap<KeyId, Arc<Prepared>>>> = OnceLock::new();
    TABLE.get_or_init(Default::default)
}

/// The prepared key for `key`, preparing it on first sight; None when it does not parse (the
/// RustCrypto provider then reports the error exactly as it would have).
fn prepared(alg: Algorithm, key: &DecodingKey) -> Option<Arc<Prepared>> {
    let id = key_id(alg, key);
    if let Some(p) = table().read().unwrap_or_else(|p| p.into_inner()).get(&id) {
        return Some(p.clone());
    }
    let p = Arc::new(Prepared::of(alg, key)?);
    let mut t = table().write().unwrap_or_else(|p| p.into_inner());
    if t.len() >= MAX_KEYS {
        t.clear();
    }
    t.insert(id, p.clone());
    Some(p)
}

struct PreparedVerifier {
    alg: Algorithm,
    key: Arc<Prepared>,
}

impl Verifier<Vec<u8>> for PreparedVerifier {
    fn verify(&self, msg: &[u8], signature: &Vec<u8>) -> std::result::Result<(), Error> {
        match &*self.key {
            Prepared::Ed25519(k) => k.verify(msg, &ed25519_dalek::Signature::from_slice(signature)?),
            Prepared::P256(k) => k.verify(msg, &p256::ecdsa::Signature::from_slice(signature)?),
            Prepared::Rsa(k) => k
                .verify(rsa::Pkcs1v15Sign::new::<Sha256>(), &Sha256::digest(msg), signature)
                .map_err(Error::from_source),
        }
    }
}

impl JwtVerifier for PreparedVerifier {
    fn algorithm(&self) -> Algorithm {
        self.alg
    }
}

fn new_verifier(alg: &Algorithm, key: &DecodingKey) -> Result<Box<dyn JwtVerifier>> {
    if matches!(alg, Algorithm::EdDSA | Algorithm::ES256 | Algorithm::RS256) {
        if let Some(key) = prepared(*alg, key) {
            return Ok(Box::new(PreparedVerifier { alg: *alg, key }));
        }
    }
    (rust_crypto::DEFAULT_PROVIDER.verifier_factory)(alg, key)
}

static PROVIDER: CryptoProvider = CryptoProvider {
    signer_factory: rust_crypto::DEFAULT_PROVIDER.signer_factory,
    verifier_factory: new_verifier,
    jwk_utils: JwkUtils {
        extract_rsa_public_key_components: rust_crypto::DEFAULT_PROVIDER.jwk_utils.extract_rsa_public_key_components,
        extract_ec_public_key_coordinates: rust_crypto::DEFAULT_PROVIDER.jwk_utils.extract_ec_public_key_coordinates,
        compute_digest: rust_crypto::DEFAULT_PROVIDER.jwk_utils.compute_digest,
    },
};

/// Installs the provider for this process (once; later calls do nothing). Must run before the
/// first `jsonwebtoken::decode`, which fixes the provider otherwise.
pub fn install() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        if CryptoProvider::install_default(&PROVIDER).is_err() {
            tracing::warn!("jsonwebtoken's provider was fixed before ours: fan keys are prepared per token");
        }
    });
}

/// Whether a key has been prepared (for tests).
pub fn prepared_keys() -> usize {
    table().read().unwrap_or_else(|p| p.into_inner()).len()
}
