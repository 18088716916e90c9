//! Events out (docs/howto-events.md): every change of a fan or a concert as a CloudEvents 1.0 record
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
use serde::Serialize;
use serde_json::{json, Value};
use sha2::Sha256;

use crate::ids::ConcertId;

pub mod at_rest;
pub mod egress;
pub mod hooks;
pub mod relay;
pub mod report;

/// The seal the relay puts on every record it publishes (header `qg_seal`): an HMAC-SHA256 of
/// the event's attributes and data under a key derived from `QUEUEGATE_TOKEN_SECRET`. The
/// events worker queues for webhooks only sealed records, so whoever can write to the events
/// topic (another service, a leaked Kafka credential) cannot make queuegate sign and deliver an
/// event it never made (a forged `fan.admitted` to a booking site's webhook).
#[derive(Clone)]
pub struct EventSeal {
    mac: Hmac<Sha256>,
}

/// The header of the seal.
pub const SEAL_HEADER: &str = "qg_seal";

impl EventSeal {
    pub fn new(token_secret: &[u8]) -> Self {
        let mut derive = Hmac::<Sha256>::new_from_slice(token_secret).expect("HMAC takes keys of any length");
        derive.update(b"queuegate events relay seal v1");
        let key = derive.finalize().into_bytes();
        EventSeal { mac: Hmac::<Sha256>::new_from_slice(&key).expect("HMAC takes keys of any length") }
    }

    fn mac(&self, id: &str, ce_type: &str, time: &str, subject: Option<&str>, payload: &[u8]) -> Hmac<Sha256> {
        let mut m = self.mac.clone();
        for part in [id.as_bytes(), ce_type.as_bytes(), time.as_bytes(), subject.unwrap_or("").as_bytes()] {
            m.update(&(part.len() as u64).to_be_bytes());
            m.update(part);
        }
        m.update(payload);
        m
    }

    /// The seal of one event (base64url, 43 characters).
    pub fn seal(&self, id: &str, ce_type: &str, time: &str, subject: Option<&str>, payload: &[u8]) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(self.mac(id, ce_type, time, subject, payload).finalize().into_bytes())
    }

    /// Whether `seal` is this event's (compared in constant time).
    pub fn verify(&self, e: &Event, seal: &str) -> bool {
        let Ok(tag) = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(seal) else { return false };
        self.mac(&e.id, &e.ce_type, &e.time, e.subject.as_deref(), &e.payload).verify_slice(&tag).is_ok()
    }
}

/// Why a record of the events topic was not taken as an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotTaken {
    /// Not a queuegate event at all (headers or data missing).
    NotAnEvent,
    /// Shaped like one, without a valid seal: not published by queuegate's relay.
    Unsealed,
}

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
    ADMIN_ACTION,
];

/// An operator's change through the admin API (src/admin/audit.rs). Delivered to a webhook only
/// when its `types` name it ([`OPT_IN`]).
pub const ADMIN_ACTION: &str = "dev.queuegate.admin.action";

/// Event types a webhook gets only when its `types` name them, not by default (an empty
/// `types`): who changed what is the operators' business, not every receiver's.
pub const OPT_IN: &[&str] = &[ADMIN_ACTION];

/// One change, as published to the events topic and as read back from it: its CloudEvents
/// attributes and its data, JSON bytes (built once by the relay, never parsed on the way to a
/// webhook).
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// `ce_id`: `<concertId>/<outbox entry id>/<index of the fan in the entry>`, the same every
    /// time the change is published.
    pub id: String,
    pub concert: ConcertId,
    /// The full type, `dev.queuegate.…`.
    pub ce_type: String,
    /// When the change was made (ms, Redis's clock: the outbox entry's id), and as RFC 3339.
    pub time_ms: i64,
    pub time: String,
    /// The fan's userId (fan events only).
    pub subject: Option<String>,
    /// The data: the fan's status after the change, or the concert.
    pub payload: Vec<u8>,
}

/// One outbox entry as the scripts write it (outbox.lua).
#[derive(Debug, Clone, Default)]
pub struct OutboxEntry {
    pub id: String,
    pub kind: String,
    pub lane: String,
    pub users: String,
    pub extra: String,
    /// `placed`: the first fan's position (`p`); the i-th fan's is that plus i. Entries
    /// written before `p` existed have the positions in `extra`.
    pub first_position: Option<u64>,
}

/// A fan event's data.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct FanData<'a> {
    concert_id: &'a str,
    user_id: &'a str,
    at: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    lane: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    position: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    expires_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    session_ends_by: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'a str>,
    status: &'static str,
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
                "p" => e.first_position = v.parse().ok(),
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
        let time_ms = self.time_ms();
        let mut out = Vec::new();
        self.each_event(concert, |e| {
            out.push(Event {
                id: e.id.to_owned(),
                concert: concert.clone(),
                ce_type: e.ce_type.to_owned(),
                time_ms,
                time: e.time.to_owned(),
                subject: e.subject.map(str::to_owned),
                payload: e.payload.to_vec(),
            })
        });
        out
    }

    /// Calls `f` with each event of this entry in turn, borrowed: the relay's way, with no
    /// allocation per event (the id and the data are written into buffers used again).
    pub fn each_event(&self, concert: &ConcertId, mut f: impl FnMut(&EventRef<'_>)) {
        use std::fmt::Write;
        let time = crate::clock::rfc3339(self.time_ms());
        let mut id = String::new();
        let mut payload = Vec::new();
        if self.kind.starts_with("concert.") || self.kind.starts_with("admin.") {
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
            serde_json::to_writer(&mut payload, &data).expect("a JSON value serialises");
            let _ = write!(id, "{concert}/{}/0", self.id);
            let ce_type = format!("{TYPE_PREFIX}{}", self.kind);
            f(&EventRef { id: &id, ce_type: &ce_type, time: &time, subject: None, payload: &payload });
            return;
        }
        let ce_type = format!("{TYPE_PREFIX}fan.{}", self.kind);
        let mut extra = self.extra.split(' ').filter(|x| !x.is_empty());
        for (i, user) in self.users.split(' ').filter(|u| !u.is_empty()).enumerate() {
            let x = extra.next().unwrap_or("");
            let mut d = FanData {
                concert_id: concert.as_str(),
                user_id: user,
                at: &time,
                lane: &self.lane,
                position: None,
                expires_at: None,
                session_ends_by: None,
                reason: None,
                status: "unknown",
            };
            d.status = match self.kind.as_str() {
                "placed" => {
                    d.position = Some(self.first_position.map_or_else(|| x.parse().unwrap_or(0), |p| p + i as u64));
                    "waiting"
                }
                "admitted" => {
                    d.expires_at = x.parse().ok().map(crate::clock::rfc3339);
                    "admitted"
                }
                "session.started" => {
                    d.session_ends_by = x.parse().ok().map(crate::clock::rfc3339);
                    "admitted"
                }
                "session.ended" => {
                    d.reason = Some(x);
                    if x == "completed" {
                        "completed"
                    } else {
                        "expired"
                    }
                }
                "expired" => {
                    d.reason = Some(if x.is_empty() { "unused" } else { x });
                    "expired"
                }
                "abandoned" => {
                    d.reason = Some("abandoned");
                    "expired"
                }
                "removed" => "removed",
                "completed" => "completed",
                _ => "unknown",
            };
            payload.clear();
            serde_json::to_writer(&mut payload, &d).expect("fan data serialises");
            id.clear();
            let _ = write!(id, "{concert}/{}/{i}", self.id);
            f(&EventRef { id: &id, ce_type: &ce_type, time: &time, subject: Some(user), payload: &payload });
        }
    }
}

/// One event of an outbox entry, borrowed (see [`OutboxEntry::each_event`]).
#[derive(Debug)]
pub struct EventRef<'a> {
    pub id: &'a str,
    pub ce_type: &'a str,
    pub time: &'a str,
    pub subject: Option<&'a str>,
    pub payload: &'a [u8],
}

impl EventRef<'_> {
    /// The headers of the Kafka record in binary content mode; `source` is
    /// [`source`]`(concert)`, made once by the caller for a batch.
    pub fn kafka_headers(&self, source: &str, seal: &EventSeal) -> OwnedHeaders {
        let sealed = seal.seal(self.id, self.ce_type, self.time, self.subject, self.payload);
        let mut h = OwnedHeaders::new_with_capacity(8)
            .insert(Header { key: SEAL_HEADER, value: Some(sealed.as_str()) })
            .insert(Header { key: "ce_specversion", value: Some("1.0") })
            .insert(Header { key: "ce_id", value: Some(self.id) })
            .insert(Header { key: "ce_source", value: Some(source) })
            .insert(Header { key: "ce_type", value: Some(self.ce_type) })
            .insert(Header { key: "ce_time", value: Some(self.time) })
            .insert(Header { key: "content-type", value: Some("application/json") });
        if let Some(s) = self.subject {
            h = h.insert(Header { key: "ce_subject", value: Some(s) });
        }
        h
    }
}

/// `ce_source` of a concert's events.
pub fn source(concert: &ConcertId) -> String {
    format!("/queuegate/concerts/{concert}")
}

impl Event {
    /// The headers of the Kafka record in binary content mode; `source` is
    /// [`source`]`(&self.concert)`.
    pub fn kafka_headers(&self, source: &str, seal: &EventSeal) -> OwnedHeaders {
        EventRef {
            id: &self.id,
            ce_type: &self.ce_type,
            time: &self.time,
            subject: self.subject.as_deref(),
            payload: &self.payload,
        }
        .kafka_headers(source, seal)
    }

    /// From a record of the events topic (binary content mode), taken only with the relay's
    /// seal ([`EventSeal`]).
    pub fn from_kafka<H: Headers>(
        headers: Option<&H>,
        payload: Option<&[u8]>,
        seal: &EventSeal,
    ) -> Result<Event, NotTaken> {
        let headers = headers.ok_or(NotTaken::NotAnEvent)?;
        let (mut id, mut ce_type, mut time, mut subject, mut sealed) = (None, None, None, None, None);
        for h in headers.iter() {
            let value = || h.value.and_then(|v| std::str::from_utf8(v).ok()).map(str::to_owned);
            match h.key {
                "ce_id" => id = value(),
                "ce_type" => ce_type = value(),
                "ce_time" => time = value(),
                "ce_subject" => subject = value(),
                SEAL_HEADER => sealed = value(),
                _ => {}
            }
        }
        let event = (|| {
            let (id, time) = (id?, time?);
            Some(Event {
                concert: ConcertId::parse(id.split('/').next()?).ok()?,
                ce_type: ce_type?,
                time_ms: crate::clock::parse_rfc3339(&time)?,
                time,
                subject,
                payload: payload?.to_vec(),
                id,
            })
        })()
        .ok_or(NotTaken::NotAnEvent)?;
        match sealed {
            Some(s) if seal.verify(&event, &s) => Ok(event),
            _ => Err(NotTaken::Unsealed),
        }
    }

    /// The data, parsed.
    pub fn data(&self) -> Value {
        serde_json::from_slice(&self.payload).unwrap_or(Value::Null)
    }

    /// The short kind: `placed`, `admitted`, …, `concert.updated`, `admin.action`.
    pub fn kind(&self) -> &str {
        let t = self.ce_type.strip_prefix(TYPE_PREFIX).unwrap_or(&self.ce_type);
        t.strip_prefix("fan.").unwrap_or(t)
    }

    /// The event in CloudEvents' structured JSON format (the body of its webhook deliveries),
    /// its data embedded as it came; None when the data is not JSON.
    pub fn structured(&self) -> Option<String> {
        let data: &serde_json::value::RawValue = serde_json::from_slice(&self.payload).ok()?;
        #[derive(Serialize)]
        struct Structured<'a> {
            specversion: &'static str,
            id: &'a str,
            source: String,
            #[serde(rename = "type")]
            ce_type: &'a str,
            time: &'a str,
            #[serde(skip_serializing_if = "Option::is_none")]
            subject: Option<&'a str>,
            datacontenttype: &'static str,
            data: &'a serde_json::value::RawValue,
        }
        serde_json::to_string(&Structured {
            specversion: "1.0",
            id: &self.id,
            source: source(&self.concert),
            ce_type: &self.ce_type,
            time: &self.time,
            subject: self.subject.as_deref(),
            datacontenttype: "application/json",
            data,
        })
        .ok()
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
            first_position: Some(7),
            ..Default::default()
        };
        let events = e.events(&concert());
        let written_before_p = OutboxEntry { first_position: None, extra: "7 8".into(), ..e.clone() };
        assert_eq!(written_before_p.events(&concert()), events);
        assert_eq!(events.len(), 2);
        assert_eq!(events[0].id, "tour-1/1733450000123-4/0");
        assert_eq!(events[1].id, "tour-1/1733450000123-4/1");
        assert_eq!(events[1].ce_type, "dev.queuegate.fan.placed");
        assert_eq!(events[1].subject.as_deref(), Some("bob"));
        assert_eq!(events[1].data()["position"], 8);
        assert_eq!(events[1].data()["lane"], "fanclub");
        assert_eq!(events[1].data()["status"], "waiting");
        assert_eq!(events[1].data()["at"], "2024-12-06T01:53:20.123Z");
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
        assert_eq!(events[0].data()["state"], "soldout");
        assert_eq!(events[0].data()["concertId"], "tour-1");
        assert_eq!(events[0].subject, None);
        assert!(TYPES.contains(&events[0].ce_type.as_str()));
    }

    #[test]
    fn an_admin_action_is_a_concert_wide_event_carrying_the_record() {
        let e = OutboxEntry {
            id: "7-1".into(),
            kind: "admin.action".into(),
            extra: r#"{"tokenName":"dash-op","role":"operator","method":"PUT"}"#.into(),
            ..Default::default()
        };
        let events = e.events(&concert());
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].ce_type, ADMIN_ACTION);
        assert_eq!(events[0].id, "tour-1/7-1/0");
        assert_eq!(events[0].data()["tokenName"], "dash-op");
        assert_eq!(events[0].data()["concertId"], "tour-1");
        assert_eq!(events[0].subject, None);
        assert!(TYPES.contains(&ADMIN_ACTION) && OPT_IN.contains(&ADMIN_ACTION));
    }

    #[test]
    fn an_event_read_back_from_its_record_is_the_event_published() {
        let e = OutboxEntry {
            id: "1733450000123-4".into(),
            kind: "admitted".into(),
            lane: "general".into(),
            users: "ann".into(),
            extra: "1733450600123".into(),
            ..Default::default()
        };
        let event = e.events(&concert()).remove(0);
        let seal = EventSeal::new(b"token secret");
        let headers = event.kafka_headers(&source(&event.concert), &seal);
        let back = Event::from_kafka(Some(&headers), Some(&event.payload), &seal).unwrap();
        assert_eq!(back, event);
        // Another key's seal, a changed byte of the data, no seal at all: not taken.
        let other = EventSeal::new(b"another secret");
        assert_eq!(Event::from_kafka(Some(&headers), Some(&event.payload), &other), Err(NotTaken::Unsealed));
        let mut changed = event.payload.clone();
        changed[1] ^= 1;
        assert_eq!(Event::from_kafka(Some(&headers), Some(&changed), &seal), Err(NotTaken::Unsealed));
        let bare = OwnedHeaders::new().insert(Header { key: "ce_id", value: Some(event.id.as_str()) });
        assert_eq!(Event::from_kafka(Some(&bare), Some(&event.payload), &seal), Err(NotTaken::NotAnEvent));
        assert_eq!(back.kind(), "admitted");
        assert_eq!(back.data()["expiresAt"], "2024-12-06T02:03:20.123Z");
        let body: Value = serde_json::from_str(&back.structured().unwrap()).unwrap();
        assert_eq!(body["id"], event.id.as_str());
        assert_eq!(body["subject"], "ann");
        assert_eq!(body["source"], "/queuegate/concerts/tour-1");
        assert_eq!(body["data"], event.data());
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
