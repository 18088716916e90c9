//! Offline verification of the booking site's identity tokens (jwt mode).
//!
//! Keys come from a JWKS (a file or an http(s) URL) or an HS256 secret. A JWKS key is chosen by
//! the token's `kid` and fixes the algorithm (RSA → RS256, EC P-256 → ES256, Ed25519 → EdDSA):
//! the token's own `alg` must agree, so `alg: none`, or HS256 "signed" with a public key, never
//! verifies. Symmetric keys in a JWKS are ignored. `iss`, `aud`, `exp` and `nbf` are checked
//! with `QUEUEGATE_FAN_JWT_LEEWAY_SECONDS` of leeway; the fan is the token's `sub`.
//!
//! The JWKS is read again every [`REFRESH`], and soon (at most once per [`FORCED_MIN_GAP`]) after
//! a token names a key id it does not hold: a key rotation at the booking site reaches the
//! gateways without a restart, and a flood of made-up key ids cannot turn into a flood of
//! fetches. A failed refresh keeps the keys it has.

use std::collections::HashMap;
use std::sync::RwLock;
use std::time::Duration;

use anyhow::Context;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::config::IdentitySettings;

pub mod prepared;
pub mod verified;

/// The test booking site's keys (shared with the jwt tests and examples).
#[cfg(test)]
#[path = "../../tests/fixtures/fan_keys.rs"]
mod fan_keys;
use crate::ids::UserId;
use crate::problem::ApiError;

/// How often the JWKS is read again.
pub const REFRESH: Duration = Duration::from_secs(300);
/// The least time between two refreshes asked for by unknown key ids.
pub const FORCED_MIN_GAP: Duration = Duration::from_secs(30);

/// Where the keys come from.
enum Source {
    Secret,
    File(String),
    Url(String),
}

/// The keys in force: by key id, plus the one key a token without `kid` may use (only when the
/// set has exactly one).
#[derive(Default)]
struct Keys {
    by_kid: HashMap<String, (DecodingKey, Algorithm)>,
    only: Option<(DecodingKey, Algorithm)>,
}

/// Verifies identity tokens.
pub struct JwtVerifier {
    source: Source,
    keys: RwLock<Keys>,
    validation: Validation,
    /// Woken when a token names an unknown key id.
    unknown_kid: Notify,
    /// Tokens that passed the full check, so a fan's next join with the same token is cheap.
    verified: verified::Verified,
}

#[derive(Deserialize)]
struct Claims {
    sub: String,
    /// Required by the validation; kept with a remembered token ([`verified`]). NumericDates
    /// may carry fractions.
    exp: f64,
    #[serde(default)]
    nbf: Option<f64>,
}

fn unauthorized(detail: impl Into<String>) -> ApiError {
    ApiError::Unauthorized(detail.into())
}

impl JwtVerifier {
    /// Builds the verifier and loads the keys now.
    pub async fn new(settings: &IdentitySettings) -> anyhow::Result<Self> {
        prepared::install();
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[settings.fan_jwt_issuer.as_deref().unwrap_or_default()]);
        validation.set_audience(&[settings.fan_jwt_audience.as_deref().unwrap_or_default()]);
        validation.set_required_spec_claims(&["exp", "sub", "iss", "aud"]);
        validation.leeway = settings.fan_jwt_leeway_seconds;
        validation.validate_nbf = true;
        let (source, keys) = match (&settings.fan_jwt_secret, &settings.fan_jwt_jwks) {
            (Some(secret), _) => {
                let key = (DecodingKey::from_secret(secret.expose().as_bytes()), Algorithm::HS256);
                (Source::Secret, Keys { by_kid: HashMap::new(), only: Some(key) })
            }
            (None, Some(jwks)) if jwks.starts_with("http://") || jwks.starts_with("https://") => {
                (Source::Url(jwks.clone()), Keys::default())
            }
            (None, Some(path)) => (Source::File(path.clone()), Keys::default()),
            (None, None) => anyhow::bail!("QUEUEGATE_FAN_JWT_JWKS: jwt mode needs a JWKS or a secret"),
        };
        let v = JwtVerifier {
            source,
            keys: RwLock::new(keys),
            validation,
            unknown_kid: Notify::new(),
            verified: Default::default(),
        };
        if !matches!(v.source, Source::Secret) {
            // A file that cannot be read or parsed is a configuration error (exit 2); a JWKS URL
            // that does not answer may be a passing outage of the identity provider (exit 1).
            let keys = match (&v.source, v.fetch().await) {
                (_, Ok(keys)) => keys,
                (Source::File(_), Err(e)) => {
                    return Err(crate::config::bad("QUEUEGATE_FAN_JWT_JWKS", format!("{e:#}")).into())
                }
                (_, Err(e)) => return Err(e.context("QUEUEGATE_FAN_JWT_JWKS")),
            };
            *v.keys.write().expect("never poisoned") = keys;
        }
        Ok(v)
    }

    /// The fan's id from a valid identity token: from [`verified`] when this very token passed
    /// before and its times still hold, else by the full check (which then remembers it).
    pub fn verify(&self, token: &str) -> Result<UserId, ApiError> {
        let now = jsonwebtoken::get_current_timestamp() as i64;
        let leeway = self.validation.leeway as i64;
        if let Some(user) = self.verified.get(token, now, leeway) {
            return Ok(user);
        }
        let (user, exp, nbf) = self.check(token)?;
        self.verified.insert(token, user.clone(), exp, nbf);
        Ok(user)
    }

    /// Whether the identity token `token` carries the claim `name` with `value` (a string equal
    /// to it, a number or boolean written so, or an array holding it). Call it only with a token
    /// [`verify`](Self::verify) accepted: the claims are read from the token's payload, whose
    /// signature that call checked.
    pub fn has_claim(token: &str, name: &str, value: &str) -> bool {
        use base64::Engine;
        let Some(payload) = token.split('.').nth(1) else { return false };
        let Ok(bytes) = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload) else { return false };
        let Ok(claims) = serde_json::from_slice::<serde_json::Value>(&bytes) else { return false };
        let matches = |v: &serde_json::Value| match v {
            serde_json::Value::String(s) => s == value,
            serde_json::Value::Number(n) => n.to_string() == value,
            serde_json::Value::Bool(b) => b.to_string() == value,
            _ => false,
        };
        match claims.get(name) {
            Some(serde_json::Value::Array(items)) => items.iter().any(matches),
            Some(v) => matches(v),
            None => false,
        }
    }

    /// Tokens remembered as verified (for tests).
    pub fn remembered(&self) -> usize {
        self.verified.len()
    }

    /// The full check: key by `kid`, signature, algorithm, claims. The fan, `exp` and `nbf`.
    fn check(&self, token: &str) -> Result<(UserId, i64, Option<i64>), ApiError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| unauthorized("the identity token is malformed"))?;
        let (key, alg) = {
            let keys = self.keys.read().expect("never poisoned");
            let found = match &header.kid {
                Some(kid) => keys.by_kid.get(kid).or(match self.source {
                    Source::Secret => keys.only.as_ref(),
                    _ => None,
                }),
                None => keys.only.as_ref(),
            };
            match found {
                Some(k) => k.clone(),
                None => {
                    drop(keys);
                    self.unknown_kid.notify_one();
                    return Err(unauthorized("the identity token's signing key is unknown"));
                }
            }
        };
        let mut validation = self.validation.clone();
        validation.algorithms = vec![alg];
        let data = jsonwebtoken::decode::<Claims>(token, &key, &validation)
            .map_err(|e| unauthorized(format!("the identity token is not valid: {}", describe(e.kind()))))?;
        let user = UserId::parse(data.claims.sub)
            .map_err(|_| unauthorized("the identity token's sub is not a valid fan id (^[A-Za-z0-9_-]{1,64}$)"))?;
        Ok((user, data.claims.exp.floor() as i64, data.claims.nbf.map(|n| n.ceil() as i64)))
    }

    /// Reads the JWKS again every [`REFRESH`], and after unknown key ids, until `stop`. Runs as
    /// the supervised task "fan JWKS refresh"; never returns an error (a failed read keeps the
    /// keys in force and is logged once per outage).
    pub async fn run_refresh(&self, stop: CancellationToken) -> anyhow::Result<()> {
        if matches!(self.source, Source::Secret) {
            stop.cancelled().await;
            return Ok(());
        }
        let mut failing = false;
        loop {
            tokio::select! {
                _ = stop.cancelled() => return Ok(()),
                _ = tokio::time::sleep(REFRESH) => {}
                _ = self.unknown_kid.notified() => {}
            }
            match self.fetch().await {
                Ok(keys) => {
                    *self.keys.write().expect("never poisoned") = keys;
                    // A key the set no longer holds must verify nothing, remembered or not.
                    self.verified.clear();
                    if std::mem::take(&mut failing) {
                        tracing::info!("fan JWKS readable again");
                    }
                }
                Err(e) if !failing => {
                    failing = true;
                    tracing::warn!(error = format!("{e:#}"), "fan JWKS refresh failed; keeping the keys in force");
                }
                Err(_) => {}
            }
            // However many unknown key ids arrive, at most one forced read per gap.
            tokio::select! {
                _ = stop.cancelled() => return Ok(()),
                _ = tokio::time::sleep(FORCED_MIN_GAP) => {}
            }
        }
    }

    async fn fetch(&self) -> anyhow::Result<Keys> {
        let text = match &self.source {
            Source::Secret => anyhow::bail!("a secret has no JWKS"),
            Source::File(path) => {
                let p = path.clone();
                tokio::task::spawn_blocking(move || std::fs::read_to_string(p))
                    .await?
                    .with_context(|| format!("reading {path}"))?
            }
            Source::Url(url) => {
                let client = reqwest::Client::builder().timeout(Duration::from_secs(5)).build()?;
                let resp = client.get(url).send().await.with_context(|| format!("fetching {url}"))?;
                resp.error_for_status().with_context(|| format!("fetching {url}"))?.text().await?
            }
        };
        keys_of(&text)
    }
}

/// The usable keys of a JWKS document.
fn keys_of(text: &str) -> anyhow::Result<Keys> {
    let set: JwkSet = serde_json::from_str(text).context("not a JWKS")?;
    let mut keys = Keys::default();
    let mut usable = Vec::new();
    for jwk in &set.keys {
        match usable_key(jwk) {
            Some(k) => usable.push((jwk.common.key_id.clone(), k)),
            None => {
                tracing::warn!(kid = ?jwk.common.key_id, "JWKS key skipped: not an RSA, P-256 or Ed25519 public key")
            }
        }
    }
    anyhow::ensure!(!usable.is_empty(), "the JWKS has no usable key (RSA, EC P-256 or Ed25519)");
    if usable.len() == 1 {
        keys.only = Some(usable[0].1.clone());
    }
    for (kid, k) in usable {
        if let Some(kid) = kid {
            keys.by_kid.insert(kid, k);
        }
    }
    Ok(keys)
}

/// The key and the one algorithm it verifies, for asymmetric keys only.
fn usable_key(jwk: &Jwk) -> Option<(DecodingKey, Algorithm)> {
    let alg = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => Algorithm::RS256,
        AlgorithmParameters::EllipticCurve(p) if p.curve == EllipticCurve::P256 => Algorithm::ES256,
        AlgorithmParameters::OctetKeyPair(p) if p.curve == EllipticCurve::Ed25519 => Algorithm::EdDSA,
        _ => return None,
    };
    if let Some(declared) = jwk.common.key_algorithm {
        if format!("{declared:?}") != format!("{alg:?}") {
            return None;
        }
    }
    Some((DecodingKey::from_jwk(jwk).ok()?, alg))
}

/// A short reason for a refused token (never the token itself).
fn describe(kind: &jsonwebtoken::errors::ErrorKind) -> &'static str {
    use jsonwebtoken::errors::ErrorKind as K;
    match kind {
        K::ExpiredSignature => "expired",
        K::ImmatureSignature => "not valid yet (nbf)",
        K::InvalidAudience => "wrong audience",
        K::InvalidIssuer => "wrong issuer",
        K::InvalidSignature => "bad signature",
        K::InvalidAlgorithm => "algorithm does not match its key",
        K::MissingRequiredClaim(_) => "a required claim (exp, sub, iss, aud) is missing",
        _ => "malformed",
    }
}

#[cfg(test)]
mod claim_tests {
    use super::JwtVerifier;
    use base64::Engine;

    fn token(claims: serde_json::Value) -> String {
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        format!("{}.{}.sig", b64.encode(r#"{"alg":"HS256"}"#), b64.encode(claims.to_string()))
    }

    #[test]
    fn a_claim_lane_reads_strings_numbers_booleans_and_arrays_and_nothing_else() {
        let t = token(
            serde_json::json!({"tier": "gold", "level": 3, "vip": true, "groups": ["a", "gold"], "o": {"tier": "gold"}}),
        );
        assert!(JwtVerifier::has_claim(&t, "tier", "gold"));
        assert!(!JwtVerifier::has_claim(&t, "tier", "Gold"));
        assert!(!JwtVerifier::has_claim(&t, "tier", "gol"));
        assert!(JwtVerifier::has_claim(&t, "level", "3"));
        assert!(JwtVerifier::has_claim(&t, "vip", "true"));
        assert!(JwtVerifier::has_claim(&t, "groups", "gold"));
        assert!(!JwtVerifier::has_claim(&t, "groups", "b"));
        assert!(!JwtVerifier::has_claim(&t, "o", "gold"), "an object is no value");
        assert!(!JwtVerifier::has_claim(&t, "missing", "gold"));
        assert!(!JwtVerifier::has_claim("not-a-token", "tier", "gold"));
        assert!(!JwtVerifier::has_claim("a.%%%.c", "tier", "gold"));
    }
}

#[cfg(test)]
mod prepared_tests {
    use jsonwebtoken::Algorithm;

    use super::prepared::prepared_keys;
    use super::{fan_keys, JwtVerifier};

    fn claims(sub: &str, exp_from_now: i64) -> serde_json::Value {
        let now = crate::clock::now_ms() / 1000;
        serde_json::json!({"sub": sub, "iss": "https://tickets.example", "aud": "queuegate", "exp": now + exp_from_now})
    }

    #[tokio::test]
    async fn eddsa_es256_and_rs256_verify_through_prepared_keys_and_refuse_what_they_refused_before() {
        for alg in [Algorithm::EdDSA, Algorithm::ES256, Algorithm::RS256] {
            let (header, key, jwk) = fan_keys::signer(alg, "k");
            let jwks = std::env::temp_dir().join(format!("qg-prepared-{}-{alg:?}.json", std::process::id()));
            std::fs::write(&jwks, serde_json::json!({ "keys": [jwk] }).to_string()).unwrap();
            let mut settings = crate::config::Settings::for_test("t", "g", "p").identity;
            settings.fan_jwt_jwks = Some(jwks.display().to_string());
            settings.fan_jwt_issuer = Some("https://tickets.example".into());
            settings.fan_jwt_audience = Some("queuegate".into());
            let verifier = JwtVerifier::new(&settings).await.unwrap();
            std::fs::remove_file(&jwks).unwrap();

            let token = |c: &serde_json::Value| jsonwebtoken::encode(&header, c, &key).unwrap();
            assert_eq!(verifier.verify(&token(&claims("ann", 600))).unwrap().as_str(), "ann", "{alg:?}");
            let prepared = prepared_keys();
            assert!(prepared >= 1, "{alg:?}: the key was prepared");
            assert_eq!(verifier.verify(&token(&claims("ben", 600))).unwrap().as_str(), "ben", "{alg:?}");

            // A flipped signature bit, a payload from another token, an expired token.
            let good = token(&claims("ann", 600));
            let (signed, sig) = good.rsplit_once('.').unwrap();
            let mut bytes = base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, sig).unwrap();
            bytes[5] ^= 1;
            let flipped = format!(
                "{signed}.{}",
                base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, bytes)
            );
            assert!(verifier.verify(&flipped).is_err(), "{alg:?}: flipped signature");
            let other = token(&claims("mallory", 600));
            let (head, _) = good.split_once('.').unwrap();
            let spliced = format!("{head}.{}.{sig}", other.split('.').nth(1).unwrap());
            assert!(verifier.verify(&spliced).is_err(), "{alg:?}: another payload under ann's signature");
            assert!(verifier.verify(&token(&claims("ann", -600))).is_err(), "{alg:?}: expired");
        }
    }
}
