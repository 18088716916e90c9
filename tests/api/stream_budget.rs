//! The status streams' memory budget (issue 35, "A gateway's streams can kill it"): with
//! `QUEUEGATE_MAX_STREAM_MEMORY_MB` small, the stream cap is that memory over what one stream
//! costs (`startup::STREAM_BYTES`), whatever the open-file limit allows; the next stream gets
//! 503 with Retry-After and the fan polls instead.

use std::time::Duration;

use queuegate::config::Role;
use queuegate::startup::{ConnectionBudget, STREAM_BYTES};
use serde_json::Value;

use crate::helpers::{create_topics, spawn_role, Names};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stream_cap_follows_the_stream_memory_and_past_it_fans_poll() {
    const MEMORY_MB: u64 = 1;
    let cap = (MEMORY_MB * 1024 * 1024 / STREAM_BYTES) as usize;
    assert!((16..=512).contains(&cap), "a few dozen streams, not {cap}");
    // The open-file limit alone would allow thousands: memory decides here.
    assert_eq!(ConnectionBudget::new(20_000, MEMORY_MB, None).streams(), cap);

    let names = Names::new();
    create_topics(&names, 1).await;
    let app = spawn_role(&names, Role::Run, |s| {
        s.http.max_stream_memory_mb = MEMORY_MB;
        s.http.rate_limit_per_ip = 0;
    })
    .await;
    app.open_concert("c").await;

    // Two streams per fan at most: cap / 2 fans (and one more) hold them.
    let fans = cap / 2 + 1;
    let mut tokens = Vec::with_capacity(fans);
    for i in 0..fans {
        let r = app.join("c", &format!("fan-{i}")).await;
        assert_eq!(r.status(), 202, "fan-{i} joins");
        let body: Value = r.json().await.unwrap();
        tokens.push(body["token"].as_str().unwrap().to_owned());
    }
    let open = async |i: usize| {
        app.client
            .get(format!("{}/v1/concerts/c/queue/fan-{i}/events", app.http()))
            .bearer_auth(&tokens[i])
            .send()
            .await
            .unwrap()
    };
    let mut streams = Vec::with_capacity(cap);
    for n in 0..cap {
        let r = open(n / 2).await;
        assert_eq!(r.status(), 200, "stream {n} of {cap} opens");
        assert_eq!(r.headers()["content-type"], "text/event-stream");
        streams.push(r);
    }
    assert_eq!(app.metric("queuegate_status_streams_open").await, cap as u64);

    // One past the cap: 503 with Retry-After, from a fan that holds no stream yet.
    let last = fans - 1;
    let refused = open(last).await;
    assert_eq!(refused.headers()["retry-after"], "1");
    crate::helpers::assert_problem(refused, 503, "poll the status instead").await;
    // Polling still answers, for that fan and for one holding streams.
    for i in [last, 0] {
        let poll = app.status("c", &format!("fan-{i}"), &tokens[i]).await;
        assert_eq!(poll.status(), 200, "fan-{i} polls");
        let status: Value = poll.json().await.unwrap();
        assert!(status["status"].is_string(), "a status: {status}");
    }

    // A stream that ends gives its place back.
    drop(streams.pop());
    assert!(
        crate::helpers::poll_until(Duration::from_secs(10), async || open(last).await.status() == 200).await,
        "a closed stream's place goes to the next fan"
    );
}
