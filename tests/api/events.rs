//! The status stream (Server-Sent Events).

use std::time::Duration;

use queuegate::config::Role;
use serde_json::{json, Value};

use crate::helpers::{create_topics, spawn_app, spawn_role, Names, ADMIN_TOKEN};

/// Reads SSE frames until one satisfies `want`, or fails after `deadline`.
async fn next_status(
    r: &mut reqwest::Response,
    buf: &mut String,
    deadline: Duration,
    want: impl Fn(&Value) -> bool,
) -> Value {
    let until = tokio::time::Instant::now() + deadline;
    loop {
        while let Some(end) = buf.find("\n\n") {
            let frame: String = buf.drain(..end + 2).collect();
            if let Some(data) = frame.lines().find_map(|l| l.strip_prefix("data: ")) {
                let v: Value = serde_json::from_str(data).unwrap();
                if want(&v) {
                    return v;
                }
            }
        }
        let chunk =
            tokio::time::timeout_at(until, r.chunk()).await.expect("a frame in time").unwrap().expect("stream open");
        buf.push_str(std::str::from_utf8(&chunk).unwrap());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_stream_pushes_waiting_then_admitted() {
    let app = spawn_app().await;
    app.open_concert("c").await;
    let accepted: Value = app.join("c", "fan").await.json().await.unwrap();
    let token = accepted["token"].as_str().unwrap();
    // EventSource cannot set headers: the token may come in the query string.
    let mut r =
        app.client.get(format!("{}/v1/concerts/c/queue/fan/events?token={token}", app.http())).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/event-stream");
    let mut buf = String::new();
    let waiting = next_status(&mut r, &mut buf, Duration::from_secs(30), |v| v["status"] == "waiting").await;
    assert_eq!(waiting["position"], 1);
    let admitted = app
        .client
        .post(format!("{}/admin/v1/concerts/c/admit", app.admin))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"count": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(admitted.status(), 200);
    let s = next_status(&mut r, &mut buf, Duration::from_secs(10), |v| v["status"] == "admitted").await;
    assert!(s["admissionToken"].as_str().is_some_and(|t| t.split('.').count() == 3));

    let r = app.client.get(format!("{}/v1/concerts/c/queue/fan/events", app.http())).send().await.unwrap();
    crate::helpers::assert_problem(r, 401, "entry token").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_streams_are_bounded_and_the_next_one_gets_503() {
    let names = Names::new();
    create_topics(&names, 1).await;
    let app = spawn_role(&names, Role::Run, |s| s.http.max_event_streams = 1).await;
    app.open_concert("c").await;
    let accepted: Value = app.join("c", "fan").await.json().await.unwrap();
    let token = accepted["token"].as_str().unwrap();
    let url = format!("{}/v1/concerts/c/queue/fan/events", app.http());
    let first = app.client.get(&url).bearer_auth(token).send().await.unwrap();
    assert_eq!(first.status(), 200);
    let second = app.client.get(&url).bearer_auth(token).send().await.unwrap();
    assert_eq!(second.headers()["retry-after"], "1");
    crate::helpers::assert_problem(second, 503, "status streams").await;
    drop(first);
    // The permit comes back when the first stream ends.
    assert!(
        crate::helpers::poll_until(Duration::from_secs(10), async || {
            app.client.get(&url).bearer_auth(token).send().await.map(|r| r.status() == 200).unwrap_or(false)
        })
        .await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_fan_holds_two_streams_at_most_while_another_fan_still_gets_one() {
    let app = spawn_app().await;
    app.open_concert("c").await;
    let fan: Value = app.join("c", "greedy").await.json().await.unwrap();
    let other: Value = app.join("c", "modest").await.json().await.unwrap();
    let open = async |user: &str, token: &str| {
        app.client
            .get(format!("{}/v1/concerts/c/queue/{user}/events", app.http()))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
    };
    let token = fan["token"].as_str().unwrap();
    let (a, b) = (open("greedy", token).await, open("greedy", token).await);
    assert_eq!((a.status().as_u16(), b.status().as_u16()), (200, 200), "two tabs are fine");
    let third = open("greedy", token).await;
    assert!(third.headers().contains_key("retry-after"));
    crate::helpers::assert_problem(third, 429, "too many").await;
    assert_eq!(open("modest", other["token"].as_str().unwrap()).await.status(), 200, "another fan is not affected");
    drop(a);
    assert!(
        crate::helpers::poll_until(Duration::from_secs(10), async || open("greedy", token).await.status() == 200).await,
        "a closed stream gives its slot back"
    );
    drop(b);
}
