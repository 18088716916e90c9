//! What each fan identity mode costs the gateway per join, measured on the library's own code
//! (release build, one thread, 20,000 distinct tokens per case, best of three passes):
//!
//! * jwt: `JwtVerifier::verify` of HS256 tokens (a secret) and of EdDSA tokens (a JWKS file);
//! * anonymous: minting the fan's id (UUID v7);
//! * every mode: issuing the fan's entry token, and checking one on a status read.
//!
//! `cargo run --release --example identity_cost` prints one JSON object (µs per operation);
//! `make bench` runs it.

use std::time::Instant;

use ed25519_dalek::pkcs8::EncodePrivateKey;
use queuegate::config::{FanIdentityMode, Secret, Settings};
use queuegate::identity::jwt::JwtVerifier;
use queuegate::ids::{ConcertId, UserId};
use queuegate::token::EntryTokens;

const N: usize = 20_000;
const SECRET: &str = "identity-cost-secret-0123456789-0123456789";

/// Best of three passes of `f` over `0..N`, in µs per call.
fn per_op(mut f: impl FnMut(usize)) -> f64 {
    (0..3)
        .map(|_| {
            let t = Instant::now();
            for i in 0..N {
                f(i);
            }
            t.elapsed().as_secs_f64() * 1e6 / N as f64
        })
        .fold(f64::INFINITY, f64::min)
}

fn claims(i: usize) -> serde_json::Value {
    let exp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() + 3600;
    serde_json::json!({"sub": format!("fan-{i}"), "iss": "https://tickets.example", "aud": "queuegate", "exp": exp})
}

fn main() -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let mut identity = Settings::for_test("t", "g", "p").identity;
    identity.fan_jwt_issuer = Some("https://tickets.example".into());
    identity.fan_jwt_audience = Some("queuegate".into());

    // HS256 with a secret.
    let mut hs = identity.clone();
    hs.fan_jwt_secret = Some(Secret::new(SECRET));
    let hs_verifier = rt.block_on(JwtVerifier::new(&hs))?;
    let key = jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes());
    let hs_tokens: Vec<String> =
        (0..N).map(|i| jsonwebtoken::encode(&jsonwebtoken::Header::default(), &claims(i), &key).unwrap()).collect();
    let hs256 = per_op(|i| assert!(hs_verifier.verify(&hs_tokens[i]).is_ok()));

    // EdDSA through a JWKS file.
    use base64::Engine;
    let signing = ed25519_dalek::SigningKey::from_bytes(&[3; 32]);
    let x = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(signing.verifying_key().as_bytes());
    let jwks = std::env::temp_dir().join(format!("qg-identity-cost-{}.json", std::process::id()));
    std::fs::write(
        &jwks,
        serde_json::json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "x": x, "kid": "k"}]}).to_string(),
    )?;
    let mut ed = identity.clone();
    ed.fan_jwt_jwks = Some(jwks.display().to_string());
    let ed_verifier = rt.block_on(JwtVerifier::new(&ed))?;
    let ed_key = jsonwebtoken::EncodingKey::from_ed_der(signing.to_pkcs8_der()?.as_bytes());
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
    header.kid = Some("k".into());
    let ed_tokens: Vec<String> = (0..N).map(|i| jsonwebtoken::encode(&header, &claims(i), &ed_key).unwrap()).collect();
    let eddsa = per_op(|i| assert!(ed_verifier.verify(&ed_tokens[i]).is_ok()));
    std::fs::remove_file(&jwks)?;

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
            "jwt_hs256_verify_us": hs256,
            "jwt_eddsa_verify_us": eddsa,
            "anonymous_mint_us": mint,
            "entry_token_issue_us": issue,
            "entry_token_verify_us": check,
        })
    );
    Ok(())
}
