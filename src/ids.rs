//! Identifiers and the queue-entry record that travels through Kafka.
//!
//! Concert and user ids are parsed once, at the edge (a path segment, a JSON body, a Kafka
//! record, a setting), into [`ConcertId`] and [`UserId`]; everything inside — the producer
//! record, the consumer, the store's keys — takes those types and trusts them.

use std::fmt;
use std::marker::PhantomData;
use std::ops::Deref;

use serde::{Deserialize, Serialize};

/// Whether `s` matches `^[A-Za-z0-9_-]{1,64}$`, the contract's shape for concert and user ids.
///
/// It is what keeps ids safe inside Redis keys and Kafka keys: no `:`, no braces, no spaces.
fn valid_id(s: &str) -> bool {
    (1..=64).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// What kind of id an [`Id`] is; names the field in error messages.
pub trait IdKind {
    /// The contract's field name (`concertId`, `userId`).
    const FIELD: &'static str;
}

/// Marker for concert ids.
#[derive(Debug)]
pub enum Concert {}
impl IdKind for Concert {
    const FIELD: &'static str = "concertId";
}

/// Marker for user (fan) ids.
#[derive(Debug)]
pub enum User {}
impl IdKind for User {
    const FIELD: &'static str = "userId";
}

/// Marker for the request ids that make an operator's admission idempotent.
#[derive(Debug)]
pub enum Request {}
impl IdKind for Request {
    const FIELD: &'static str = "requestId";
}

/// Marker for the names of a concert's lanes (`general`, `fanclub`, …).
#[derive(Debug)]
pub enum LaneKind {}
impl IdKind for LaneKind {
    const FIELD: &'static str = "lane";
}

/// An id that matched `^[A-Za-z0-9_-]{1,64}$` when it was made; the only way to make one is
/// [`Id::parse`] (or deserialising, which calls it).
pub struct Id<K> {
    value: Box<str>,
    kind: PhantomData<fn() -> K>,
}

/// A concert's id.
pub type ConcertId = Id<Concert>;
/// A fan's id.
pub type UserId = Id<User>;
/// The id of an operator's admit request (retrying it admits nobody twice).
pub type RequestId = Id<Request>;

/// The name of one of a concert's lanes; `general` unless the concert's `lanes` say otherwise.
pub type Lane = Id<LaneKind>;

/// The lane a join without one goes to, and the only lane of a concert without `lanes`.
pub const GENERAL_LANE: &str = "general";

impl Lane {
    /// The `general` lane.
    pub fn general() -> Lane {
        Id { value: GENERAL_LANE.into(), kind: PhantomData }
    }

    pub fn is_general(&self) -> bool {
        &*self.value == GENERAL_LANE
    }
}

/// An id that does not match the contract; its message names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field} must match ^[A-Za-z0-9_-]{{1,64}}$")]
pub struct InvalidId {
    pub field: &'static str,
}

impl UserId {
    /// A new id the gateway assigns (an anonymous fan, a visitor standby lets straight in): a
    /// UUIDv7, ordered by time, 32 hex digits.
    pub fn fresh() -> Self {
        UserId::parse(uuid::Uuid::now_v7().simple().to_string()).expect("a UUID is a valid id")
    }
}

impl<K: IdKind> Id<K> {
    /// Checks `value` against the contract.
    pub fn parse(value: impl AsRef<str> + Into<Box<str>>) -> Result<Self, InvalidId> {
        if valid_id(value.as_ref()) {
            Ok(Id { value: value.into(), kind: PhantomData })
        } else {
            Err(InvalidId { field: K::FIELD })
        }
    }
}

impl<K> Id<K> {
    pub fn as_str(&self) -> &str {
        &self.value
    }
}

impl<K> Clone for Id<K> {
    fn clone(&self) -> Self {
        Id { value: self.value.clone(), kind: PhantomData }
    }
}

impl<K> PartialEq for Id<K> {
    fn eq(&self, other: &Self) -> bool {
        self.value == other.value
    }
}
impl<K> Eq for Id<K> {}

impl<K> std::hash::Hash for Id<K> {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.value.hash(state)
    }
}

impl<K> PartialOrd for Id<K> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl<K> Ord for Id<K> {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.value.cmp(&other.value)
    }
}

impl<K> Deref for Id<K> {
    type Target = str;
    fn deref(&self) -> &str {
        &self.value
    }
}

impl<K> AsRef<str> for Id<K> {
    fn as_ref(&self) -> &str {
        &self.value
    }
}

impl<K> fmt::Display for Id<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.value)
    }
}

impl<K> fmt::Debug for Id<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.value, f)
    }
}

impl<K> Serialize for Id<K> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.value)
    }
}

impl<'de, K: IdKind> Deserialize<'de> for Id<K> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Id::parse(s).map_err(serde::de::Error::custom)
    }
}

/// The value of a `queue.entry` record (JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EntryRecord {
    /// Unique per accepted request (UUID v7); repeated joins have different entry ids.
    pub entry_id: String,
    pub concert_id: ConcertId,
    pub user_id: UserId,
    /// When the gateway accepted the join, in milliseconds since the Unix epoch.
    pub joined_at_ms: i64,
    /// The lane the fan joined (its code, if the lane asks for one, is already bound to it by
    /// the gateway); absent for `general`, so records of concerts without lanes are unchanged.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lane: Option<Lane>,
}

/// A record as it is on the wire, before its ids are checked.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireRecord {
    entry_id: String,
    concert_id: String,
    user_id: String,
    joined_at_ms: i64,
    #[serde(default)]
    lane: Option<String>,
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
    #[error("invalid lane")]
    InvalidLane,
    /// Valid, but Redis refuses the concert's writes for good (a key of the wrong type, a
    /// script error): the concert is parked here until the cause is fixed and the dead letters
    /// are replayed (`queuegate dlt replay`).
    #[error("Redis refuses this concert's writes: {0}")]
    StoreRejected(String),
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
            InvalidRecord::InvalidLane => "invalid-lane",
            InvalidRecord::StoreRejected(_) => "store-rejected",
        }
    }
}

impl EntryRecord {
    /// The Kafka key of a join: `{userId}:{concertId}`. Every join of one fan for one concert
    /// has the same key, so they land on one partition in order.
    pub fn key(&self) -> String {
        let mut k = String::with_capacity(self.user_id.len() + self.concert_id.len() + 1);
        k.push_str(&self.user_id);
        k.push(':');
        k.push_str(&self.concert_id);
        k
    }

    /// Decodes and checks a record as the consumer receives it.
    pub fn decode(key: Option<&[u8]>, value: Option<&[u8]>) -> Result<EntryRecord, InvalidRecord> {
        let value = value.ok_or(InvalidRecord::MissingValue)?;
        let wire: WireRecord = serde_json::from_slice(value).map_err(|e| InvalidRecord::Undecodable(e.to_string()))?;
        let rec = EntryRecord {
            entry_id: wire.entry_id,
            concert_id: ConcertId::parse(wire.concert_id).map_err(|_| InvalidRecord::InvalidConcertId)?,
            user_id: UserId::parse(wire.user_id).map_err(|_| InvalidRecord::InvalidUserId)?,
            joined_at_ms: wire.joined_at_ms,
            lane: wire.lane.map(|l| Lane::parse(l).map_err(|_| InvalidRecord::InvalidLane)).transpose()?,
        };
        if key != Some(rec.key().as_bytes()) {
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

    #[test]
    fn a_bad_id_names_its_field_when_parsed_or_deserialised() {
        assert_eq!(UserId::parse("a b").unwrap_err().to_string(), "userId must match ^[A-Za-z0-9_-]{1,64}$");
        let err = serde_json::from_str::<ConcertId>("\"a:b\"").unwrap_err().to_string();
        assert!(err.starts_with("concertId must match"), "{err}");
        assert_eq!(serde_json::from_str::<ConcertId>("\"c-1\"").unwrap().as_str(), "c-1");
    }

    fn rec() -> EntryRecord {
        EntryRecord {
            entry_id: "e".into(),
            concert_id: ConcertId::parse("c1").unwrap(),
            user_id: UserId::parse("u1").unwrap(),
            joined_at_ms: 1,
            lane: None,
        }
    }

    #[test]
    fn a_records_lane_travels_and_general_is_left_out() {
        assert!(!String::from_utf8(serde_json::to_vec(&rec()).unwrap()).unwrap().contains("lane"));
        let with = EntryRecord { lane: Some(Lane::parse("fanclub").unwrap()), ..rec() };
        let v = serde_json::to_vec(&with).unwrap();
        assert_eq!(EntryRecord::decode(Some(b"u1:c1"), Some(&v)), Ok(with));
        let v = br#"{"entryId":"e","concertId":"c1","userId":"u1","joinedAtMs":1,"lane":"a b"}"#;
        assert_eq!(EntryRecord::decode(Some(b"u1:c1"), Some(v)), Err(InvalidRecord::InvalidLane));
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
        let v = br#"{"entryId":"e","concertId":"c1","userId":"a b","joinedAtMs":1}"#;
        assert_eq!(EntryRecord::decode(Some(b"a b:c1"), Some(v)), Err(InvalidRecord::InvalidUserId));
        let v = br#"{"entryId":"e","concertId":"c{1}","userId":"u","joinedAtMs":1}"#;
        assert_eq!(EntryRecord::decode(Some(b"u:c{1}"), Some(v)), Err(InvalidRecord::InvalidConcertId));
    }
}
