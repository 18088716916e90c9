//! Events out (docs/events.md): every change of a fan or a concert as a CloudEvents 1.0 record
//! on the events topic, webhooks by the Standard Webhooks specification, and the sale's report.
//!
//! The changes are made by Lua scripts, and each script records its changes in the concert's
//! outbox STREAM in the same atomic call (`src/store/outbox.lua`). From there:
//!
//! * [`relay`] publishes each outbox entry's events to the events topic (idempotent producer,
//!   acknowledged by every in-sync replica) and only then deletes the entry: a crash between the
//!   two publishes the entry again, with the same `ce_id`s;
//! * [`hooks`] reads the events topic in its own consumer group: it adds each event to the
//!   concert's report and queues it for each webhook that wants it, then commits; deliveries are
//!   retried from Redis with exponential backoff and jitter, one task per endpoint.

use base64::Engine;
use hmac::{Hmac, Mac};
use rdkafka::message::{Header, Headers, OwnedHeaders};
use serde_json::{json, Value};
use sha2::Sha256;

use crate::ids::ConcertId;

pub mod hooks;
pub mod relay;
pub mod report;

/// The prefix of every event type.
pub const TYPE_PREFIX: &str = "dev.queuegate.";

/// Every event type, as in the contract.
pub const TYPES: &[&str] = &[
    "dev.queuegate.fan.placed",
    "dev.queuegate.fan.admitted",
    "dev.queuegate.fan.session.started",
    "dev.queuegate.fan.session.ended",
    "dev.queuegate.fan.completed",
    "dev.queuegate.fan.expired",
    "dev.queuegate.fan.abandoned",
    "dev.queuegate.fan.removed",
    "dev.queuegate.concert.updated",
    "dev.queuegate.concert.shuffled",
    "dev.queuegate.concert.soldout",
];

/// One published change.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// `ce_id`: `<concertId>/<outbox entry id>/<index of the fan in the entry>`, the same every
    /// time the change is published.
    pub id: String,
    pub concert: ConcertId,
    /// The full type, `dev.queuegate.…`.
    pub ce_type: String,
    /// When the change was made (ms, Redis's clock: the outbox entry's id).
    pub time_ms: i64,
    /// The fan's userId (fan events only).
    pub subject: Option<String>,
    pub data: Value,
}

/// One outbox entry as the scripts write it (outbox.lua).
#[derive(Debug, Clone, Default)]
pub struct OutboxEntry {
    pub id: String,
    pub kind: String,
    pub lane: String,
    pub users: String,
    pub extra: String,
}

impl OutboxEntry {
    /// From a stream entry's field/value pairs.
    pub fn from_fields(id: String, fields: &[(String, String)]) -> Self {
        let mut e = OutboxEntry { id, ..Default::default() };
        for (k, v) in fields {
            match k.as_str() {
                "t" => e.kind = v.clone(),
                "l" => e.lane = v.clone(),
                "u" => e.users = v.clone(),
                "x" => e.extra = v.clone(),
                _ => {}
            }
        }
        e
    }

    /// The entry's time: the ms part of its stream id.
    fn time_ms(&self) -> i64 {
        self.id.split('-').next().and_then(|ms| ms.parse().ok()).unwrap_or(0)
    }

    /// The events this entry stands for, one per fan (or one for a concert event).
    pub fn events(&self, concert: &ConcertId) -> Vec<Event> {
        let at = self.time_ms();
        let ce_type = format!(
            "{TYPE_PREFIX}{}",
            if self.kind.starts_with("concert.") { self.kind.clone() } else { format!("fan.{}", self.kind) }
        );
        if self.kind.starts_with("concert.") {
            let mut data = match self.kind.as_str() {
                "concert.shuffled" => {
                    let mut n = self.extra.split(':').map(|v| v.parse::<u64>().unwrap_or(0));
                    json!({"lane": self.lane, "prequeued": n.next().unwrap_or(0), "stagedAfter": n.next().unwrap_or(0)})
                }
                _ => serde_json::from_str(&self.extra).unwrap_or(Value::Null),
            };
            if let Value::Object(m) = &mut data {
                m.insert("concertId".into(), json!(concert.as_str()));
            }
            return vec![Event {
                id: format!("{concert}/{}/0", self.id),
                concert: concert.clone(),
                ce_type,
                time_ms: at,
                subject: None,
                data,
            }];
        }
        let extra: Vec<&str> = if self.extra.is_empty() { Vec::new() } else { self.extra.split(' ').collect() };
        self.users
            .split(' ')
            .filter(|u| !u.is_empty())
            .enumerate()
            .map(|(i, user)| {
                let x = extra.get(i).copied().unwrap_or("");
                let mut data = json!({"concertId": concert.as_str(), "userId": user, "at": crate::clock::rfc3339(at)});
                let m = data.as_object_mut().expect("an object");
                if !self.lane.is_empty() {
                    m.insert("lane".into(), json!(self.lane));
                }
                let status = match self.kind.as_str() {
                    "placed" => {
                        m.insert("position".into(), json!(x.parse::<u64>().unwrap_or(0)));
                        "waiting"
                    }
                    "admitted" => {
                        if let Ok(exp) = x.parse::<i64>() {
                            m.insert("expiresAt".into(), json!(crate::clock::rfc3339(exp)));
                        }
                        "admitted"
                    }
                    "session.started" => {
                        if let Ok(max) = x.parse::<i64>() {
                            m.insert("sessionEndsBy".into(), json!(crate::clock::rfc3339(max)));
                        }
                        "admitted"
                    }
                    "session.ended" => {
                        m.insert("reason".into(), json!(x));
                        if x == "completed" {
                            "completed"
                        } else {
                            "expired"
                        }
                    }
                    "expired" => {
                        m.insert("reason".into(), json!(if x.is_empty() { "unused" } else { x }));
                        "expired"
                    }
                    "abandoned" => {
                        m.insert("reason".into(), json!("abandoned"));
                        "expired"
                    }
                    "removed" => "removed",
                    "completed" => "completed",
                    _ => "unknown",
                };
                m.insert("status".into(), json!(status));
                Event {
                    id: format!("{concert}/{}/{i}", self.id),
                    concert: concert.clone(),
                    ce_type: ce_type.clone(),
                    time_ms: at,
                    subject: Some(user.to_owned()),
                    data,
                }
            })
            .collect()
    }
}

/// `ce_source` of a concert's events.
pub fn source(concert: &ConcertId) -> String {
    format!("/queuegate/concerts/{concert}")
}

impl Event {
    /// The headers of the Kafka record in binary content mode.
    pub fn kafka_headers(&self) -> OwnedHeaders {
        let time = crate::clock::rfc3339(self.time_ms);
        let source = source(&self.concert);
        let mut h = OwnedHeaders::new_with_capacity(7)
            .insert(Header { key: "ce_specversion", value: Some("1.0") })
            .insert(Header { key: "ce_id", value: Some(self.id.as_str()) })
            .insert(Header { key: "ce_source", value: Some(source.as_str()) })
            .insert(Header { key: "ce_type", value: Some(self.ce_type.as_str()) })
            .insert(Header { key: "ce_time", value: Some(time.as_str()) })
            .insert(Header { key: "content-type", value: Some("application/json") });
        if let Some(s) = &self.subject {
            h = h.insert(Header { key: "ce_subject", value: Some(s.as_str()) });
        }
        h
    }

    /// The event from a record of the events topic (binary content mode); None for a record
    /// that is not one of ours.
    pub fn from_kafka<H: Headers>(headers: Option<&H>, payload: Option<&[u8]>) -> Option<Event> {
        let headers = headers?;
        let get = |name: &str| -> Option<String> {
            headers
                .iter()
                .find(|h| h.key == name)
                .and_then(|h| h.value)
                .and_then(|v| std::str::from_utf8(v).ok())
                .map(str::to_owned)
        };
        let id = get("ce_id")?;
        let concert = ConcertId::parse(id.split('/').next()?).ok()?;
        Some(Event {
            concert,
            ce_type: get("ce_type")?,
            time_ms: crate::clock::parse_rfc3339(&get("ce_time")?)?,
            subject: get("ce_subject"),
            data: serde_json::from_slice(payload?).ok()?,
            id,
        })
    }

    /// The event in CloudEvents' structured JSON format: the body of its webhook deliveries.
    pub fn structured(&self) -> Value {
        let mut v = json!({
            "specversion": "1.0",
            "id": self.id,
            "source": source(&self.concert),
            "type": self.ce_type,
            "time": crate::clock::rfc3339(self.time_ms),
            "datacontenttype": "application/json",
            "data": self.data,
        });
        if let Some(s) = &self.subject {
            v["subject"] = json!(s);
        }
        v
    }

    /// The short kind: `placed`, `admitted`, …, `concert.updated`.
    pub fn kind(&self) -> &str {
        let t = self.ce_type.strip_prefix(TYPE_PREFIX).unwrap_or(&self.ce_type);
        t.strip_prefix("fan.").unwrap_or(t)
    }
}

/// A new webhook secret: `whsec_` and 32 random bytes in base64, as Standard Webhooks does.
pub fn new_secret() -> String {
    let mut key = [0u8; 32];
    getrandom::fill(&mut key).expect("the OS random source works");
    format!("whsec_{}", base64::engine::general_purpose::STANDARD.encode(key))
}

/// A secret as shown after its creation: `whsec_` and its first four characters.
pub fn mask(secret: &str) -> String {
    let body = secret.strip_prefix("whsec_").unwrap_or(secret);
    format!("whsec_{}…", body.chars().take(4).collect::<String>())
}

/// The `webhook-signature` header of a delivery (Standard Webhooks): `v1,` and the base64
/// HMAC-SHA256, keyed with the secret's bytes, of `<webhook-id>.<webhook-timestamp>.<body>`.
pub fn sign(secret: &str, id: &str, timestamp: i64, body: &[u8]) -> Option<String> {
    let key = base64::engine::general_purpose::STANDARD.decode(secret.strip_prefix("whsec_")?).ok()?;
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).ok()?;
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    Some(format!("v1,{}", base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn concert() -> ConcertId {
        ConcertId::parse("tour-1").unwrap()
    }

    #[test]
    fn an_outbox_entry_is_one_event_per_fan_with_stable_ids() {
        let e = OutboxEntry {
            id: "1733450000123-4".into(),
            kind: "placed".into(),
            lane: "fanclub".into(),
            users: "ann bob".into(),
            extra: "7 8".into(),
        };
        let events = e.events(&concert());
        assert_eq!(events.len(), 2);
        assert_eq!(events[0].id, "tour-1/1733450000123-4/0");
        assert_eq!(events[1].id, "tour-1/1733450000123-4/1");
        assert_eq!(events[1].ce_type, "dev.queuegate.fan.placed");
        assert_eq!(events[1].subject.as_deref(), Some("bob"));
        assert_eq!(events[1].data["position"], 8);
        assert_eq!(events[1].data["lane"], "fanclub");
        assert_eq!(events[1].data["status"], "waiting");
        assert_eq!(events[1].time_ms, 1733450000123);
        assert_eq!(e.events(&concert()), events, "the same entry gives the same events");
        assert_eq!(events[0].kind(), "placed");
    }

    #[test]
    fn a_concert_event_carries_the_concert() {
        let e = OutboxEntry {
            id: "5-0".into(),
            kind: "concert.soldout".into(),
            extra: r#"{"state":"soldout"}"#.into(),
            ..Default::default()
        };
        let events = e.events(&concert());
        assert_eq!(events[0].ce_type, "dev.queuegate.concert.soldout");
        assert_eq!(events[0].data["state"], "soldout");
        assert_eq!(events[0].data["concertId"], "tour-1");
        assert_eq!(events[0].subject, None);
        assert!(TYPES.contains(&events[0].ce_type.as_str()));
    }

    #[test]
    fn the_signature_is_the_standard_webhooks_one() {
        // The example of the Standard Webhooks specification's reference libraries.
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let body = br#"{"test": 2432232314}"#;
        let sig = sign(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body).unwrap();
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
        assert!(new_secret().starts_with("whsec_"));
        assert_eq!(mask("whsec_abcdefgh"), "whsec_abcd…");
    }
}
