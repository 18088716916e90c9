//! What each fan identity mode costs the gateway per join, measured on the library's own code
//! (release build, one thread, best of three passes over tokens never seen before: 20,000 per
//! pass, 5,000 for the JWKS algorithms):
//!
//! * jwt: `JwtVerifier::verify` of HS256 tokens (a secret) and of EdDSA, ES256 and RS256 tokens
//!   (a JWKS file);
//! * jwt: a rejoin, the same token again (remembered as verified: a hash and a lookup);
//! * anonymous: minting the fan's id (UUID v7);
//! * every mode: issuing the fan's entry token, and checking one on a status read.
//!
//! `cargo run --release --example identity_cost [-- --per-token]` prints one JSON object (µs per
//! operation; `--per-token` measures jsonwebtoken's own provider, which builds the verifying key
//! from the JWK on every token, instead of queuegate's prepared keys);
//! `make bench` runs it.

use std::time::Instant;

#[path = "../tests/fixtures/fan_keys.rs"]
mod fan_keys;

use queuegate::config::{FanIdentityMode, Secret, Settings};
use queuegate::identity::jwt::JwtVerifier;
use queuegate::ids::{ConcertId, UserId};
use queuegate::token::EntryTokens;

const N: usize = 20_000;
const SECRET: &str = "identity-cost-secret-0123456789-0123456789";

/// Tokens per pass for the JWKS algorithms (their signing is slow to prepare).
const N_ASYMMETRIC: usize = 5_000;

/// Best of three passes of `f` over `0..N`, in µs per call.
fn per_op(f: impl FnMut(usize)) -> f64 {
    per_op_of(N, f)
}

/// Best of three passes of `f` over `0..n`, in µs per call.
fn per_op_of(n: usize, mut f: impl FnMut(usize)) -> f64 {
    (0..3)
        .map(|_| {
            let t = Instant::now();
            for i in 0..n {
                f(i);
            }
            t.elapsed().as_secs_f64() * 1e6 / n as f64
        })
        .fold(f64::INFINITY, f64::min)
}

fn claims(i: usize) -> serde_json::Value {
    let exp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() + 3600;
    serde_json::json!({"sub": format!("fan-{i}"), "iss": "https://tickets.example", "aud": "queuegate", "exp": exp})
}

fn main() -> anyhow::Result<()> {
    // `--per-token`: install jsonwebtoken's own RustCrypto provider first, so queuegate's
    // prepared keys (src/identity/jwt/prepared.rs) cannot be: the cost without them, for comparison.
    let per_token = std::env::args().any(|a| a == "--per-token");
    if per_token {
        let _ =
            jsonwebtoken::crypto::CryptoProvider::install_default(&jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER);
    }
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let mut identity = Settings::for_test("t", "g", "p").identity;
    identity.fan_jwt_issuer = Some("https://tickets.example".into());
    identity.fan_jwt_audience = Some("queuegate".into());

    // HS256 with a secret.
    let mut hs = identity.clone();
    hs.fan_jwt_secret = Some(Secret::new(SECRET));
    let hs_verifier = rt.block_on(JwtVerifier::new(&hs))?;
    let key = jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes());
    // Every pass over tokens never seen: the first join of each fan (a token seen before is
    // remembered as verified, which is what a rejoin costs: measured below).
    let hs_tokens: Vec<String> =
        (0..3 * N).map(|i| jsonwebtoken::encode(&jsonwebtoken::Header::default(), &claims(i), &key).unwrap()).collect();
    let mut next = 0;
    let hs256 = per_op(|_| {
        assert!(hs_verifier.verify(&hs_tokens[next]).is_ok());
        next += 1;
    });

    // EdDSA, ES256 and RS256 through a JWKS file.
    let mut asymmetric = Vec::new();
    let mut rejoin = 0.0;
    for alg in [jsonwebtoken::Algorithm::EdDSA, jsonwebtoken::Algorithm::ES256, jsonwebtoken::Algorithm::RS256] {
        let (header, key, jwk) = fan_keys::signer(alg, "k");
        let jwks = std::env::temp_dir().join(format!("qg-identity-cost-{}.json", std::process::id()));
        std::fs::write(&jwks, serde_json::json!({ "keys": [jwk] }).to_string())?;
        let mut settings = identity.clone();
        settings.fan_jwt_jwks = Some(jwks.display().to_string());
        let verifier = rt.block_on(JwtVerifier::new(&settings))?;
        // Signing 60,000 RS256 tokens alone takes a minute: these passes are of N_ASYMMETRIC.
        let tokens: Vec<String> =
            (0..3 * N_ASYMMETRIC).map(|i| jsonwebtoken::encode(&header, &claims(i), &key).unwrap()).collect();
        let mut next = 0;
        asymmetric.push(per_op_of(N_ASYMMETRIC, |_| {
            assert!(verifier.verify(&tokens[next]).is_ok());
            next += 1;
        }));
        if alg == jsonwebtoken::Algorithm::ES256 {
            rejoin = per_op_of(N_ASYMMETRIC, |i| assert!(verifier.verify(&tokens[i]).is_ok()));
        }
        std::fs::remove_file(&jwks)?;
    }
    let [eddsa, es256, rs256] = asymmetric[..] else { unreachable!() };

    // Anonymous ids and entry tokens.
    let mint = per_op(|_| {
        std::hint::black_box(UserId::parse(uuid::Uuid::now_v7().simple().to_string()).unwrap());
    });
    let tokens = EntryTokens::new(SECRET.as_bytes(), FanIdentityMode::Anonymous, 3600);
    let concert = ConcertId::parse("c")?;
    let users: Vec<UserId> = (0..N).map(|i| UserId::parse(format!("fan-{i}")).unwrap()).collect();
    let now = queuegate::clock::now_ms();
    let issue = per_op(|i| {
        std::hint::black_box(tokens.issue(&concert, &users[i], now));
    });
    let entry: Vec<String> = users.iter().map(|u| tokens.issue(&concert, u, now)).collect();
    let check = per_op(|i| assert!(tokens.verify(&concert, &users[i], &entry[i], now)));

    println!(
        "{}",
        serde_json::json!({
            "keys_prepared_per_token": per_token,
            "jwt_hs256_verify_us": hs256,
            "jwt_eddsa_verify_us": eddsa,
            "jwt_es256_verify_us": es256,
            "jwt_rs256_verify_us": rs256,
            "jwt_rejoin_verify_us": rejoin,
            "anonymous_mint_us": mint,
            "entry_token_issue_us": issue,
            "entry_token_verify_us": check,
        })
    );
    Ok(())
}
