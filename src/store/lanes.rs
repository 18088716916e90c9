//! A concert's lanes in Redis: the codes of lanes that ask for one.
//!
//! A code is stored as its keyed hash ([`CodeKey`]: HMAC-SHA256 under a key derived from
//! `QUEUEGATE_TOKEN_SECRET`) in the lane's `codes` HASH; the codes themselves are never stored,
//! and without the secret a copy of Redis cannot even be checked against guesses. A code is
//! held for the first fan who joins with it while the join is made durable, then bound to that
//! fan for good (`code_bind.lua`, `code_settle.lua`): a join Kafka did not take spends no code.
//! Wrong codes spend failure budgets per client address and per lane, kept in Redis so every
//! gateway shares them; uploads refuse codes too weak to stand guessing ([`strong_enough`]).
//!
//! Codes stored by releases before keyed hashes (unkeyed SHA-256) keep working: a join or an
//! upload looks for both, and a join moves an unkeyed code to its keyed hash.

use hmac::{Hmac, Mac};
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
    /// The code is this fan's already (or the fan already holds its place in the lane).
    Ok,
    /// The code is held for this fan's join: settle it ([`QueueStore::settle_code`]) once the
    /// join is durable, or free it when Kafka did not take the join.
    Held,
    /// The fan already holds its place in another lane: the join changes nothing (one place per
    /// fan per concert), and no code is spent on it.
    Elsewhere,
    /// The join named no code.
    Required,
    /// No such code in this lane, or another fan's: one answer for both.
    Refused,
    /// A failure budget (the client's or the lane's) is spent: try again after this many ms.
    Limited { retry_after_ms: u64 },
}

/// The failure budgets of code joins ([`QueueStore::bind_code`]); a count of 0 is no budget.
#[derive(Debug, Clone, Copy)]
pub struct CodeBudgets {
    /// Wrong codes one client address may send to one concert within a window.
    pub per_client: u32,
    /// Wrong codes one lane takes from everyone within a window.
    pub per_lane: u32,
    /// The window, from a budget's first failure (ms).
    pub window_ms: u64,
    /// How long a code is held for a join in flight (ms): longer than any produce may take.
    pub hold_ms: u64,
}

/// The scripts of this module, hashed once.
pub(super) struct Scripts {
    add: Script,
    bind: Script,
    settle: Script,
}

impl Scripts {
    pub(super) fn new() -> Self {
        Scripts {
            add: Script::new(include_str!("codes_add.lua")),
            bind: Script::new(include_str!("code_bind.lua")),
            settle: Script::new(include_str!("code_settle.lua")),
        }
    }
}

/// How a code was stored before keyed hashes: hex SHA-256 of its text.
pub fn code_hash(code: &str) -> String {
    crate::fairness::hex(&Sha256::digest(code.as_bytes()))
}

/// The key codes are hashed with: HMAC-SHA256 of a fixed label under the token secret, so it is
/// the same on every gateway and admin listener and never the secret itself.
#[derive(Clone)]
pub struct CodeKey(Hmac<Sha256>);

impl CodeKey {
    pub fn new(token_secret: &[u8]) -> Self {
        let derived = Hmac::<Sha256>::new_from_slice(token_secret)
            .expect("HMAC takes keys of any length")
            .chain_update(b"queuegate-lane-codes-v1")
            .finalize()
            .into_bytes();
        CodeKey(Hmac::<Sha256>::new_from_slice(&derived).expect("HMAC takes keys of any length"))
    }

    /// How `code` is stored: hex HMAC-SHA256 under the derived key.
    pub fn hash(&self, code: &str) -> String {
        crate::fairness::hex(&self.0.clone().chain_update(code.as_bytes()).finalize().into_bytes())
    }
}

/// Bits a code must carry at least ([`strong_enough`]): ten characters of a 32-symbol alphabet.
pub const MIN_CODE_BITS: f64 = 50.0;
/// Characters a code must have at least.
pub const MIN_CODE_CHARS: usize = 10;

/// Longest lane code, in characters.
pub const MAX_CODE_CHARS: usize = 64;

/// Whether `code` has the shape of a lane code: 1 to [`MAX_CODE_CHARS`] visible ASCII characters.
pub fn valid_code(code: &str) -> bool {
    (1..=MAX_CODE_CHARS).contains(&code.len()) && code.bytes().all(|b| b.is_ascii_graphic())
}

/// Whether `code` is strong enough to upload: at least [`MIN_CODE_CHARS`] characters, and its
/// length times log2 of the alphabet of the character classes it uses (digits 10, lower case
/// 26, upper case 26, other visible ASCII 32) at least [`MIN_CODE_BITS`]. An estimate that
/// assumes the operator drew the characters at random; "aaaaaaaaaaaa" passes it, so generate codes.
pub fn strong_enough(code: &str) -> bool {
    let has = |f: fn(&u8) -> bool| code.as_bytes().iter().any(f);
    let alphabet = [
        (has(u8::is_ascii_digit), 10),
        (has(u8::is_ascii_lowercase), 26),
        (has(u8::is_ascii_uppercase), 26),
        (has(|b| b.is_ascii_graphic() && !b.is_ascii_alphanumeric()), 32),
    ]
    .iter()
    .filter(|(used, _)| *used)
    .map(|(_, n)| n)
    .sum::<u32>();
    code.len() >= MIN_CODE_CHARS && code.len() as f64 * f64::from(alphabet).log2() >= MIN_CODE_BITS
}

impl QueueStore {
    /// Adds `codes` to `lane` of `concert`, stored as their keyed hashes; returns how many were
    /// new (a code uploaded before keeps its binding). Written in calls of [`CODES_PER_CALL`] codes.
    pub async fn add_codes(
        &self,
        concert: &ConcertId,
        lane: &Lane,
        key: &CodeKey,
        codes: &[String],
    ) -> Result<u64, StoreError> {
        let hashes = self.lane_key(concert, lane, Part::Codes);
        let mut added = 0u64;
        let mut c = self.conn().await?;
        for chunk in codes.chunks(CODES_PER_CALL) {
            let mut inv = self.scripts.codes.add.prepare_invoke();
            inv.key(&hashes);
            for code in chunk {
                inv.arg(key.hash(code)).arg(code_hash(code));
            }
            let n: u64 = timed(inv.invoke_async(&mut c)).await?;
            added += n;
        }
        Ok(added)
    }

    /// Holds `code` (None: the join named none) of `lane` for `user`'s join, atomically, and
    /// counts a wrong code against the budgets of `client` and of the lane (see `code_bind.lua`).
    #[allow(clippy::too_many_arguments)]
    pub async fn bind_code(
        &self,
        concert: &ConcertId,
        lane: &Lane,
        user: &UserId,
        code: Option<&str>,
        key: &CodeKey,
        client: &str,
        budgets: CodeBudgets,
        now_ms: i64,
    ) -> Result<CodeCheck, StoreError> {
        let mut inv = self.scripts.codes.bind.prepare_invoke();
        inv.key(self.lane_key(concert, lane, Part::Codes))
            .key(self.key(concert, Part::Lanes))
            .key(self.key(concert, Part::Joined))
            .key(self.keys.code_failures_of_client(concert, client))
            .key(self.keys.code_failures_of_lane(concert, lane))
            .arg(user.as_str())
            .arg(lane.as_str())
            .arg(code.map(|c| key.hash(c)).unwrap_or_default())
            .arg(code.map(code_hash).unwrap_or_default())
            .arg(now_ms)
            .arg(budgets.hold_ms)
            .arg(budgets.per_client)
            .arg(budgets.per_lane)
            .arg(budgets.window_ms);
        let mut c = self.conn().await?;
        let (answer, ms): (String, u64) = timed(inv.invoke_async(&mut c)).await?;
        match answer.as_str() {
            "ok" => Ok(CodeCheck::Ok),
            "held" => Ok(CodeCheck::Held),
            "elsewhere" => Ok(CodeCheck::Elsewhere),
            "required" => Ok(CodeCheck::Required),
            "refused" => Ok(CodeCheck::Refused),
            "limited" => Ok(CodeCheck::Limited { retry_after_ms: ms }),
            other => Err(StoreError::Reply(format!("code_bind.lua answered {other:?}"))),
        }
    }

    /// Settles a code held for `user`'s join ([`CodeCheck::Held`]): bound for good when `durable`
    /// (Kafka acknowledged the join), freed otherwise. Returns whether the hold was still the
    /// fan's (false: it lapsed and another fan took the code; nothing was written).
    pub async fn settle_code(
        &self,
        concert: &ConcertId,
        lane: &Lane,
        user: &UserId,
        code: &str,
        key: &CodeKey,
        durable: bool,
    ) -> Result<bool, StoreError> {
        let mut inv = self.scripts.codes.settle.prepare_invoke();
        inv.key(self.lane_key(concert, lane, Part::Codes))
            .key(self.key(concert, Part::Adm))
            .arg(key.hash(code))
            .arg(user.as_str())
            .arg(lane.as_str())
            .arg(if durable { "bind" } else { "free" });
        let mut c = self.conn().await?;
        let answer: String = timed(inv.invoke_async(&mut c)).await?;
        match answer.as_str() {
            "bound" | "freed" => Ok(true),
            "lost" => Ok(false),
            other => Err(StoreError::Reply(format!("code_settle.lua answered {other:?}"))),
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
    fn a_code_is_stored_as_its_keyed_hash_and_was_stored_as_its_sha256() {
        assert_eq!(code_hash("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        let (a, b) =
            (CodeKey::new(b"one secret of enough bytes, 32+!"), CodeKey::new(b"another secret, also 32 bytes..."));
        assert_eq!(a.hash("abc"), a.hash("abc"));
        assert_ne!(a.hash("abc"), b.hash("abc"), "the key is the secret's");
        assert_ne!(a.hash("abc"), code_hash("abc"));
        assert_eq!(a.hash("abc").len(), 64);
    }

    #[test]
    fn a_code_is_one_to_sixty_four_visible_ascii_characters() {
        for good in ["a", "FC-0000-x7Qp!~", "x".repeat(MAX_CODE_CHARS).as_str()] {
            assert!(valid_code(good), "{good}");
        }
        for bad in ["", "x".repeat(MAX_CODE_CHARS + 1).as_str(), "two words", "tab\there", "caf\u{e9}"] {
            assert!(!valid_code(bad), "{bad:?}");
        }
    }

    #[test]
    fn codes_need_ten_characters_and_fifty_bits_by_their_alphabet() {
        for strong in ["7K3M9QX2PA", "FC-0000-x7Qp", "abcdefghjkm", "0123456789012345", "a1b2c3d4e5"] {
            assert!(strong_enough(strong), "{strong}");
        }
        // 9 characters; 10 lower-case letters are 47 bits; 15 digits 49.8; one symbol repeated.
        for weak in ["7K3M9QX2P", "abcdefghjk", "012345678901234", "NOPE-0000", "", "ABCDEFGHIJ"] {
            assert!(!strong_enough(weak), "{weak}");
        }
    }
}
