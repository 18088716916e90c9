//! Prints identity tokens, one per line, as a booking site would issue them: for load tools
//! that cannot sign (wrk) against a gateway in jwt mode.
//!
//! ```text
//! cargo run --release --example fan_tokens -- --secret S --iss https://tickets.example \
//!     --aud queuegate --count 20000 --prefix fan- > tokens.txt
//! cargo run --release --example fan_tokens -- --alg ES256 --jwks jwks.json --count 20000 > tokens.txt
//! ```
//!
//! HS256 with `--secret` (the gateway's `QUEUEGATE_FAN_JWT_SECRET`), or `--alg EdDSA|ES256|RS256`
//! with the test site's keys (tests/fixtures/fan_keys.rs), writing the JWKS that verifies them to
//! `--jwks`. Token i has `sub` `<prefix><i>` and is valid for `--ttl` seconds (default 3600).

use std::io::Write;

#[path = "../tests/fixtures/fan_keys.rs"]
mod fan_keys;

fn arg(name: &str, default: &str) -> String {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1).cloned()).unwrap_or_else(|| default.to_owned())
}

fn main() -> anyhow::Result<()> {
    let alg = arg("--alg", "HS256");
    let (header, key) = if alg == "HS256" {
        let secret = arg("--secret", "");
        anyhow::ensure!(secret.len() >= 32, "--secret must be the gateway's QUEUEGATE_FAN_JWT_SECRET (32+ bytes)");
        (jsonwebtoken::Header::default(), jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()))
    } else {
        let (header, key, jwk) = fan_keys::signer(fan_keys::algorithm(&alg), "site-1");
        let path = arg("--jwks", "");
        anyhow::ensure!(!path.is_empty(), "--jwks FILE: where to write the JWKS that verifies {alg} tokens");
        std::fs::write(&path, serde_json::json!({ "keys": [jwk] }).to_string())?;
        (header, key)
    };
    let (iss, aud, prefix) =
        (arg("--iss", "https://tickets.example"), arg("--aud", "queuegate"), arg("--prefix", "fan-"));
    let count: u64 = arg("--count", "10000").parse()?;
    let exp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs()
        + arg("--ttl", "3600").parse::<u64>()?;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for i in 0..count {
        let claims = serde_json::json!({"sub": format!("{prefix}{i}"), "iss": iss, "aud": aud, "exp": exp});
        writeln!(out, "{}", jsonwebtoken::encode(&header, &claims, &key)?)?;
    }
    Ok(())
}
