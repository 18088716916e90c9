//! Reading the events topic back, and a webhook endpoint (tests of events out, in the api and
//! chaos binaries).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};

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

/// What a webhook endpoint received.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub headers: HashMap<String, String>,
    pub body: String,
}

#[derive(Clone, Copy)]
pub enum Behaviour {
    Ok,
    /// 500 to the first n requests, then 204.
    FailFirst(usize),
    /// Never answers (until the test ends).
    Hang,
}

/// A webhook endpoint on loopback.
pub struct Receiver {
    pub url: String,
    pub got: Arc<Mutex<Vec<Delivery>>>,
    server: actix_web::dev::ServerHandle,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let h = self.server.clone();
        tokio::spawn(async move { h.stop(false).await });
    }
}

impl Receiver {
    pub async fn start(behaviour: Behaviour) -> Receiver {
        let got: Arc<Mutex<Vec<Delivery>>> = Arc::default();
        let calls = Arc::new(AtomicUsize::new(0));
        let (g, c) = (got.clone(), calls.clone());
        let server = HttpServer::new(move || {
            let (g, c) = (g.clone(), c.clone());
            App::new().default_service(web::to(move |req: HttpRequest, body: web::Bytes| {
                let (g, c) = (g.clone(), c.clone());
                async move {
                    let n = c.fetch_add(1, Ordering::SeqCst);
                    let headers = req
                        .headers()
                        .iter()
                        .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or_default().to_owned()))
                        .collect();
                    let delivery = Delivery { headers, body: String::from_utf8_lossy(&body).into_owned() };
                    match behaviour {
                        Behaviour::Hang => {
                            tokio::time::sleep(Duration::from_secs(600)).await;
                            HttpResponse::NoContent().finish()
                        }
                        Behaviour::FailFirst(k) if n < k => HttpResponse::InternalServerError().body("not yet"),
                        _ => {
                            g.lock().unwrap().push(delivery);
                            HttpResponse::NoContent().finish()
                        }
                    }
                }
            }))
        })
        .workers(1)
        .disable_signals()
        .shutdown_timeout(1)
        .bind(("127.0.0.1", 0))
        .expect("bind");
        let port = server.addrs()[0].port();
        let server = server.run();
        let handle = server.handle();
        tokio::spawn(server);
        Receiver { url: format!("http://127.0.0.1:{port}/hook"), got, server: handle }
    }

    /// Distinct webhook-ids received with a 2xx.
    pub fn ids(&self) -> BTreeSet<String> {
        self.got.lock().unwrap().iter().map(|d| d.headers.get("webhook-id").cloned().unwrap_or_default()).collect()
    }
}
