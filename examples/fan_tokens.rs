//! Prints HS256 identity tokens, one per line, as a booking site would issue them: for load tools
//! that cannot sign (wrk) against a gateway in jwt mode.
//!
//! ```text
//! cargo run --release --example fan_tokens -- --secret S --iss https://tickets.example \
//!     --aud queuegate --count 20000 --prefix fan- > tokens.txt
//! ```
//!
//! Token i has `sub` `<prefix><i>` and is valid for `--ttl` seconds (default 3600).

use std::io::Write;

fn arg(name: &str, default: &str) -> String {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1).cloned()).unwrap_or_else(|| default.to_owned())
}

fn main() -> anyhow::Result<()> {
    let secret = arg("--secret", "");
    anyhow::ensure!(secret.len() >= 32, "--secret must be the gateway's QUEUEGATE_FAN_JWT_SECRET (32+ bytes)");
    let (iss, aud, prefix) =
        (arg("--iss", "https://tickets.example"), arg("--aud", "queuegate"), arg("--prefix", "fan-"));
    let count: u64 = arg("--count", "10000").parse()?;
    let exp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs()
        + arg("--ttl", "3600").parse::<u64>()?;
    let key = jsonwebtoken::EncodingKey::from_secret(secret.as_bytes());
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for i in 0..count {
        let claims = serde_json::json!({"sub": format!("{prefix}{i}"), "iss": iss, "aud": aud, "exp": exp});
        writeln!(out, "{}", jsonwebtoken::encode(&jsonwebtoken::Header::default(), &claims, &key)?)?;
    }
    Ok(())
}
