//! Reading the events topic back (tests of events out, in the api and chaos binaries).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Headers, Message};
use rdkafka::ClientConfig;

/// A record of the events topic: headers, key, value.
#[derive(Debug, Clone)]
pub struct Record {
    pub headers: BTreeMap<String, String>,
    pub key: Option<String>,
    pub value: String,
}

impl Record {
    pub fn header(&self, name: &str) -> &str {
        self.headers.get(name).map(String::as_str).unwrap_or("")
    }
}

/// Reads `topic` from the start until `done` says the records read so far are enough, or
/// `deadline` passes; every record read.
pub async fn read_events(
    brokers: &str,
    topic: &str,
    deadline: Duration,
    done: impl Fn(&[Record]) -> bool,
) -> Vec<Record> {
    let reader: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("events-reader-{}", uuid::Uuid::new_v4().simple()))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .expect("reader");
    reader.subscribe(&[topic]).expect("subscribe");
    let until = tokio::time::Instant::now() + deadline;
    let mut out = Vec::new();
    while !done(&out) {
        let Ok(m) = tokio::time::timeout_at(until, reader.recv()).await else { break };
        let m = m.expect("a record");
        let headers = m
            .headers()
            .map(|h| {
                h.iter()
                    .map(|h| (h.key.to_owned(), String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned()))
                    .collect()
            })
            .unwrap_or_default();
        out.push(Record {
            headers,
            key: m.key().map(|k| String::from_utf8_lossy(k).into_owned()),
            value: String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned(),
        });
    }
    out
}

/// Distinct `ce_id`s among `records`.
pub fn distinct_ids(records: &[Record]) -> usize {
    records.iter().map(|r| r.header("ce_id")).collect::<BTreeSet<_>>().len()
}
