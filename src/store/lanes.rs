//! A concert's lanes in Redis: the codes of lanes that ask for one.
//!
//! A code is stored as the hex SHA-256 of its text in the lane's `codes` HASH, bound to the
//! first fan who joins with it (`code_bind.lua`); the codes themselves are never stored, so a
//! copy of Redis does not hand them out. Codes are what the operator generates (random, long
//! enough not to be guessed); a short or guessable code is only as safe as the join rate limits.

use redis::Script;
use sha2::{Digest, Sha256};

use super::conn::timed;
use super::keys::Part;
use super::{QueueStore, StoreError};
use crate::ids::{ConcertId, Lane, UserId};

/// Codes in one script call (the upload is split into calls of this many).
const CODES_PER_CALL: usize = 1000;

/// Whether a fan may take a place in a lane that asks for a code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodeCheck {
    /// The code is this fan's now (or was already; or the fan already holds its place in the lane).
    Ok,
    /// The fan already holds its place in another lane: the join changes nothing (one place per
    /// fan per concert), and no code is spent on it.
    Elsewhere,
    /// The join named no code.
    Required,
    /// No such code in this lane.
    Unknown,
    /// The code is bound to another fan.
    Used,
}

/// The scripts of this module, hashed once.
pub(super) struct Scripts {
    add: Script,
    bind: Script,
}

impl Scripts {
    pub(super) fn new() -> Self {
        Scripts { add: Script::new(include_str!("codes_add.lua")), bind: Script::new(include_str!("code_bind.lua")) }
    }
}

/// How a code is stored: hex SHA-256 of its text.
pub fn code_hash(code: &str) -> String {
    crate::fairness::hex(&Sha256::digest(code.as_bytes()))
}

impl QueueStore {
    /// Adds `codes` to `lane` of `concert`; returns how many were new (a code uploaded before
    /// keeps its binding). Written in calls of [`CODES_PER_CALL`] codes.
    pub async fn add_codes(&self, concert: &ConcertId, lane: &Lane, codes: &[String]) -> Result<u64, StoreError> {
        let key = self.lane_key(concert, lane, Part::Codes);
        let mut added = 0u64;
        let mut c = self.conn().await?;
        for chunk in codes.chunks(CODES_PER_CALL) {
            let mut inv = self.scripts.codes.add.prepare_invoke();
            inv.key(&key);
            for code in chunk {
                inv.arg(code_hash(code));
            }
            let n: u64 = timed(inv.invoke_async(&mut c)).await?;
            added += n;
        }
        Ok(added)
    }

    /// Binds `code` (None: the join named none) of `lane` to `user`, atomically (see
    /// `code_bind.lua`).
    pub async fn bind_code(
        &self,
        concert: &ConcertId,
        lane: &Lane,
        user: &UserId,
        code: Option<&str>,
    ) -> Result<CodeCheck, StoreError> {
        let mut inv = self.scripts.codes.bind.prepare_invoke();
        inv.key(self.lane_key(concert, lane, Part::Codes))
            .key(self.key(concert, Part::Lanes))
            .key(self.key(concert, Part::Adm))
            .key(self.key(concert, Part::Joined))
            .arg(user.as_str())
            .arg(lane.as_str())
            .arg(code.map(code_hash).unwrap_or_default());
        let mut c = self.conn().await?;
        let answer: String = timed(inv.invoke_async(&mut c)).await?;
        match answer.as_str() {
            "ok" => Ok(CodeCheck::Ok),
            "elsewhere" => Ok(CodeCheck::Elsewhere),
            "required" => Ok(CodeCheck::Required),
            "unknown" => Ok(CodeCheck::Unknown),
            "used" => Ok(CodeCheck::Used),
            other => Err(StoreError::Reply(format!("code_bind.lua answered {other:?}"))),
        }
    }

    /// Fans in `lane` of `concert`: waiting, staged for placement, or held in its pre-queue.
    pub async fn lane_population(&self, concert: &ConcertId, lane: &Lane) -> Result<u64, StoreError> {
        let mut c = self.conn().await?;
        let mut pipe = redis::pipe();
        pipe.cmd("ZCARD")
            .arg(self.lane_key(concert, lane, Part::Rank))
            .cmd("ZCARD")
            .arg(self.lane_key(concert, lane, Part::Staged))
            .cmd("HLEN")
            .arg(self.lane_key(concert, lane, Part::Hold));
        let (a, b, h): (u64, u64, u64) = timed(pipe.query_async(&mut c)).await?;
        Ok(a + b + h)
    }

    /// How many codes `lane` has, and how many of them are bound to a fan.
    pub async fn code_counts(&self, concert: &ConcertId, lane: &Lane) -> Result<(u64, u64), StoreError> {
        let mut c = self.conn().await?;
        let mut pipe = redis::pipe();
        pipe.cmd("HLEN")
            .arg(self.lane_key(concert, lane, Part::Codes))
            .cmd("HGET")
            .arg(self.key(concert, Part::Adm))
            .arg(format!("codesBound@{lane}"));
        let (total, bound): (u64, Option<u64>) = timed(pipe.query_async(&mut c)).await?;
        Ok((total, bound.unwrap_or(0)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_code_is_stored_as_its_sha256() {
        assert_eq!(code_hash("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }
}
