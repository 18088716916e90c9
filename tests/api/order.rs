//! First come, first placed: fans are placed in the order of their accepted stamps, whatever
//! partition their record is on and however late that partition is read; a staged fan reads
//! `pending`, and a position once shown never grows.

use std::time::Duration;

use queuegate::config::Role;
use queuegate::ids::{ConcertId, Lane};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;
use serde_json::Value;

use crate::helpers::{brokers, poll_until, spawn_role, Names};

/// A join record as a gateway writes it, stamped `stamp`, onto `partition`.
async fn produce_join(topic: &str, partition: i32, user: &str, concert: &str, stamp: i64) {
    let p: FutureProducer = ClientConfig::new().set("bootstrap.servers", brokers()).create().expect("producer");
    let value = format!(r#"{{"entryId":"e-{user}","concertId":"{concert}","userId":"{user}","joinedAtMs":{stamp}}}"#);
    let key = format!("{user}:{concert}");
    p.send(FutureRecord::to(topic).partition(partition).key(&key).payload(&value), Duration::from_secs(10))
        .await
        .expect("produced");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fan_read_late_from_another_partition_is_placed_ahead_of_fans_stamped_after_it() {
    let names = Names::new();
    names.create_topics(4).await;
    let app = spawn_role(&names, Role::Run, |s| s.admission.clock_skew_ms = 3_000).await;
    app.open_concert("c").await;
    let c = ConcertId::parse("c").unwrap();

    // Nine fans join through the gateway; their records are applied (staged) first.
    let first_stamp = queuegate::clock::now_ms();
    let mut tokens = Vec::new();
    for i in 0..9 {
        let r: Value = app.join("c", &format!("b{i}")).await.json().await.unwrap();
        tokens.push(r["token"].as_str().unwrap().to_owned());
    }
    assert!(poll_until(Duration::from_secs(20), async || app.consumer_records("appended").await >= 9).await);
    let staged: Value = app.status("c", "b8", &tokens[8]).await.json().await.unwrap();
    assert_eq!(staged["status"], "pending", "staged until every partition has passed its stamp: {staged}");
    assert!(app.waiting_list("c").await.is_empty(), "nobody is placed before the watermark passes them");

    // A fan accepted before all of them reaches the consumer only now (its partition lagged).
    produce_join(&names.topic, 3, "early", "c", first_stamp - 500).await;

    // b8 watches its position throughout: once shown, it never grows.
    let mut seen: Vec<u64> = Vec::new();
    let placed = poll_until(Duration::from_secs(30), async || {
        let s: Value = app.status("c", "b8", &tokens[8]).await.json().await.unwrap();
        if let Some(p) = s["position"].as_u64() {
            seen.push(p);
        } else {
            assert_eq!(s["status"], "pending", "{s}");
        }
        seen.len() >= 3
    })
    .await;
    assert!(placed, "b8 was placed within 30 s");
    assert!(seen.windows(2).all(|w| w[1] <= w[0]), "b8's position grew: {seen:?}");
    assert_eq!(seen[0], 10, "b8 is placed behind everyone stamped before it, once: {seen:?}");

    let store = names.store();
    let (total, page) = store.page(&c, &Lane::general(), 0, 100).await.unwrap();
    assert_eq!(total, 10);
    assert_eq!(page[0].user_id.as_str(), "early", "placed by stamp, not by when its record was read");
    assert!(page.windows(2).all(|w| w[0].joined_at_ms <= w[1].joined_at_ms), "stamps in order: {page:?}");
    assert_eq!(app.consumer_records("late").await, 0);

    // A record stamped before fans already placed (a clock off by more than the skew) is not
    // lost and moves nobody back: it is placed at the tail and counted as late.
    produce_join(&names.topic, 1, "very-late", "c", first_stamp - 60_000).await;
    assert!(poll_until(Duration::from_secs(30), async || app.waiting_list("c").await.len() == 11).await);
    assert_eq!(app.waiting_list("c").await.last().map(String::as_str), Some("very-late"));
    assert_eq!(app.consumer_records("late").await, 1);
    assert_eq!(store.late_joins(&c, &Lane::general()).await.unwrap(), 1);
    let s: Value = app.status("c", "b8", &tokens[8]).await.json().await.unwrap();
    assert_eq!(s["position"], 10, "{s}");
}
