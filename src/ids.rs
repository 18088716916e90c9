//! Identifiers and the queue-entry record that travels through Kafka.

use serde::{Deserialize, Serialize};

/// Whether `s` matches `^[A-Za-z0-9_-]{1,64}$`, the contract's shape for concert and user ids.
///
/// The same check guards the HTTP front door and the consumer (a record that fails it goes to
/// the dead-letter topic), and it is what keeps ids safe inside Redis keys and Kafka keys: no
/// `:`, no braces, no spaces.
pub fn valid_id(s: &str) -> bool {
    (1..=64).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// The Kafka key of a join: `{userId}:{concertId}`. Every join of one fan for one concert has
/// the same key, so they land on one partition in order.
pub fn entry_key(user_id: &str, concert_id: &str) -> String {
    let mut k = String::with_capacity(user_id.len() + concert_id.len() + 1);
    k.push_str(user_id);
    k.push(':');
    k.push_str(concert_id);
    k
}

/// The value of a `queue.entry` record (JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EntryRecord {
    /// Unique per accepted request (UUID v7); repeated joins have different entry ids.
    pub entry_id: String,
    pub concert_id: String,
    pub user_id: String,
    /// When the gateway accepted the join, in milliseconds since the Unix epoch.
    pub joined_at_ms: i64,
}

/// Why a record can never be applied; the reason travels in the dead-letter record's headers.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidRecord {
    #[error("record has no value")]
    MissingValue,
    #[error("value is not a queue entry: {0}")]
    Undecodable(String),
    #[error("invalid concertId")]
    InvalidConcertId,
    #[error("invalid userId")]
    InvalidUserId,
    #[error("key does not match the value's userId:concertId")]
    KeyMismatch,
}

impl InvalidRecord {
    /// A short, stable code for the `qg-dlt-reason` header and metrics labels.
    pub fn code(&self) -> &'static str {
        match self {
            InvalidRecord::MissingValue => "missing-value",
            InvalidRecord::Undecodable(_) => "undecodable",
            InvalidRecord::InvalidConcertId => "invalid-concert-id",
            InvalidRecord::InvalidUserId => "invalid-user-id",
            InvalidRecord::KeyMismatch => "key-mismatch",
        }
    }
}

impl EntryRecord {
    /// Decodes and checks a record as the consumer receives it.
    pub fn decode(key: Option<&[u8]>, value: Option<&[u8]>) -> Result<EntryRecord, InvalidRecord> {
        let value = value.ok_or(InvalidRecord::MissingValue)?;
        let rec: EntryRecord = serde_json::from_slice(value).map_err(|e| InvalidRecord::Undecodable(e.to_string()))?;
        if !valid_id(&rec.concert_id) {
            return Err(InvalidRecord::InvalidConcertId);
        }
        if !valid_id(&rec.user_id) {
            return Err(InvalidRecord::InvalidUserId);
        }
        if key != Some(entry_key(&rec.user_id, &rec.concert_id).as_bytes()) {
            return Err(InvalidRecord::KeyMismatch);
        }
        Ok(rec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_follow_the_contract() {
        assert!(valid_id("a"));
        assert!(valid_id(&"x".repeat(64)));
        assert!(valid_id("Fan_01-x"));
        assert!(!valid_id(""));
        assert!(!valid_id(&"x".repeat(65)));
        assert!(!valid_id("a:b"));
        assert!(!valid_id("{a}"));
        assert!(!valid_id("é"));
    }

    fn rec() -> EntryRecord {
        EntryRecord { entry_id: "e".into(), concert_id: "c1".into(), user_id: "u1".into(), joined_at_ms: 1 }
    }

    #[test]
    fn a_record_round_trips() {
        let v = serde_json::to_vec(&rec()).unwrap();
        assert_eq!(EntryRecord::decode(Some(b"u1:c1"), Some(&v)), Ok(rec()));
    }

    #[test]
    fn a_key_that_disagrees_with_the_value_is_invalid() {
        let v = serde_json::to_vec(&rec()).unwrap();
        assert_eq!(EntryRecord::decode(Some(b"u2:c1"), Some(&v)), Err(InvalidRecord::KeyMismatch));
        assert_eq!(EntryRecord::decode(None, Some(&v)), Err(InvalidRecord::KeyMismatch));
    }

    #[test]
    fn garbage_is_undecodable() {
        assert_eq!(EntryRecord::decode(Some(b"k"), Some(b"{")).unwrap_err().code(), "undecodable");
        assert_eq!(EntryRecord::decode(Some(b"k"), None), Err(InvalidRecord::MissingValue));
    }

    #[test]
    fn invalid_ids_in_a_record_are_invalid() {
        let mut r = rec();
        r.user_id = "a b".into();
        let v = serde_json::to_vec(&r).unwrap();
        assert_eq!(EntryRecord::decode(Some(b"a b:c1"), Some(&v)), Err(InvalidRecord::InvalidUserId));
    }
}
