//! Proof of work for anonymous joins: a concert with `powDifficulty` > 0 makes each new
//! anonymous fan spend CPU time before it gets a place, so a bot cannot take thousands of places
//! for free; a fan's browser spends a second or so.
//!
//! `GET /v1/concerts/{concertId}/challenge` (a handler of the public listener, in src/gateway.rs)
//! hands out a signed, expiring challenge:
//! `base64url("{concert}:{nonce}:{expires}:{difficulty}") "." base64url(HMAC-SHA256)` under the
//! token secret (domain-separated from entry tokens). The join carries
//! `{"pow":{"challenge":"…","solution":"…"}}`, where SHA-256 of `challenge ":" solution` must
//! start with `difficulty` zero bits. Verifying costs the gateway one HMAC, one SHA-256 and one
//! Redis `SET NX` (the nonce, kept until the challenge expires), so a solution works once, on any
//! gateway: a replayed, expired, forged or wrong solution is 403.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::ids::ConcertId;
use crate::problem::ApiError;

/// How long a challenge may be solved and used.
pub const CHALLENGE_TTL_SECS: i64 = 120;

/// Issues and checks challenges.
#[derive(Clone)]
pub struct Challenges {
    mac: Hmac<Sha256>,
}

/// A solved challenge, as the join carries it.
#[derive(Debug, Clone, Deserialize)]
pub struct Solved {
    pub challenge: String,
    pub solution: String,
}

/// The longest `pow.challenge` a join may carry (an issued one is about 100 characters), as the
/// OpenAPI document states; longer is 400 whether or not a proof is asked.
pub const MAX_CHALLENGE_LEN: usize = 256;
/// The longest `pow.solution` (the solver's counter, as text); likewise.
pub const MAX_SOLUTION_LEN: usize = 64;

impl Solved {
    /// 400 naming the field when either part is longer than the document allows.
    pub fn check_lengths(&self) -> Result<(), crate::problem::ApiError> {
        for (field, value, max) in
            [("pow.challenge", &self.challenge, MAX_CHALLENGE_LEN), ("pow.solution", &self.solution, MAX_SOLUTION_LEN)]
        {
            if value.chars().count() > max {
                return Err(crate::problem::ApiError::BadRequest(format!(
                    "request body is not valid: {field}: at most {max} characters"
                )));
            }
        }
        Ok(())
    }
}

/// A challenge whose solution checked out: its nonce must now be claimed, once.
#[derive(Debug, PartialEq, Eq)]
pub struct Verified {
    pub nonce: String,
    pub expires_ms: i64,
}

fn forbidden(detail: &str) -> ApiError {
    ApiError::Forbidden(format!("proof of work: {detail}"))
}

/// Leading zero bits of `digest`.
fn zero_bits(digest: &[u8]) -> u32 {
    let mut bits = 0;
    for b in digest {
        if *b == 0 {
            bits += 8;
        } else {
            return bits + b.leading_zeros();
        }
    }
    bits
}

/// Whether `solution` solves `challenge` at `difficulty`.
pub fn solves(challenge: &str, solution: &str, difficulty: u8) -> bool {
    let digest = Sha256::new().chain_update(challenge).chain_update(":").chain_update(solution).finalize();
    zero_bits(&digest) >= u32::from(difficulty)
}

/// Finds a solution by counting (what a client does; tests and tools use it).
pub fn solve(challenge: &str, difficulty: u8) -> String {
    (0u64..).map(|n| n.to_string()).find(|s| solves(challenge, s, difficulty)).expect("a solution exists")
}

impl Challenges {
    pub fn new(secret: &[u8]) -> Self {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any length");
        mac.update(b"queuegate-pow-v1\0");
        Challenges { mac }
    }

    /// A fresh challenge for `concert` at `difficulty`, expiring [`CHALLENGE_TTL_SECS`] after `now_ms`.
    pub fn issue(&self, concert: &ConcertId, difficulty: u8, now_ms: i64) -> (String, i64) {
        let nonce = uuid::Uuid::new_v4().simple().to_string();
        let expires = now_ms.div_euclid(1000) + CHALLENGE_TTL_SECS;
        let claims = format!("{concert}:{nonce}:{expires}:{difficulty}");
        let mac = self.mac.clone().chain_update(claims.as_bytes()).finalize().into_bytes();
        (format!("{}.{}", URL_SAFE_NO_PAD.encode(claims), URL_SAFE_NO_PAD.encode(mac)), expires * 1000)
    }

    /// Checks a solved challenge for `concert` that must be at least `difficulty` hard.
    pub fn verify(
        &self,
        concert: &ConcertId,
        solved: &Solved,
        difficulty: u8,
        now_ms: i64,
    ) -> Result<Verified, ApiError> {
        let (claims, mac) = solved.challenge.split_once('.').ok_or_else(|| forbidden("malformed challenge"))?;
        let claims = URL_SAFE_NO_PAD.decode(claims).ok().and_then(|c| String::from_utf8(c).ok());
        let mac = URL_SAFE_NO_PAD.decode(mac).ok();
        let (Some(claims), Some(mac)) = (claims, mac) else { return Err(forbidden("malformed challenge")) };
        self.mac
            .clone()
            .chain_update(claims.as_bytes())
            .verify_slice(&mac)
            .map_err(|_| forbidden("forged challenge"))?;
        let parts: Vec<&str> = claims.split(':').collect();
        let [c, nonce, expires, issued_difficulty] = parts[..] else { return Err(forbidden("malformed challenge")) };
        let expires_ms = expires.parse::<i64>().map_err(|_| forbidden("malformed challenge"))? * 1000;
        let issued_difficulty: u8 = issued_difficulty.parse().map_err(|_| forbidden("malformed challenge"))?;
        if c != concert.as_str() {
            return Err(forbidden("the challenge is for another concert"));
        }
        if expires_ms <= now_ms {
            return Err(forbidden("the challenge has expired; fetch a new one"));
        }
        if issued_difficulty < difficulty {
            return Err(forbidden("the challenge is easier than the concert asks now; fetch a new one"));
        }
        if solved.solution.len() > MAX_SOLUTION_LEN || !solves(&solved.challenge, &solved.solution, issued_difficulty) {
            return Err(forbidden("the solution does not solve the challenge"));
        }
        Ok(Verified { nonce: nonce.to_owned(), expires_ms })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(s: &str) -> ConcertId {
        ConcertId::parse(s).unwrap()
    }

    #[test]
    fn a_solution_verifies_for_its_concert_until_the_challenge_expires_and_nothing_forged_does() {
        let ch = Challenges::new(b"0123456789abcdef0123456789abcdef");
        let (challenge, expires_ms) = ch.issue(&c("c1"), 8, 1_000_000);
        let solution = solve(&challenge, 8);
        let solved = Solved { challenge: challenge.clone(), solution: solution.clone() };
        let ok = ch.verify(&c("c1"), &solved, 8, 1_000_000).expect("valid");
        assert_eq!(ok.expires_ms, expires_ms);
        assert!(ch.verify(&c("c2"), &solved, 8, 1_000_000).is_err(), "another concert");
        assert!(ch.verify(&c("c1"), &solved, 8, expires_ms).is_err(), "expired");
        assert!(ch.verify(&c("c1"), &solved, 9, 1_000_000).is_err(), "the concert now asks more");
        let wrong = Solved { challenge: challenge.clone(), solution: format!("{solution}x") };
        assert!(ch.verify(&c("c1"), &wrong, 8, 1_000_000).is_err() || solves(&challenge, &wrong.solution, 8));
        let other_secret = Challenges::new(b"another-secret-another-secret-xx");
        assert!(other_secret.verify(&c("c1"), &solved, 8, 1_000_000).is_err(), "forged");
        // An easier challenge re-signed by the client is a forgery.
        let (claims, mac) = challenge.split_once('.').unwrap();
        let easier = String::from_utf8(URL_SAFE_NO_PAD.decode(claims).unwrap()).unwrap().replace(":8", ":0");
        let tampered = Solved { challenge: format!("{}.{mac}", URL_SAFE_NO_PAD.encode(easier)), solution: "0".into() };
        assert!(ch.verify(&c("c1"), &tampered, 0, 1_000_000).is_err());
    }

    #[test]
    fn zero_bits_are_counted_across_bytes() {
        assert_eq!(zero_bits(&[0, 0, 0x0f, 0xff]), 20);
        assert_eq!(zero_bits(&[0x80]), 0);
        assert_eq!(zero_bits(&[0, 1]), 15);
    }
}
