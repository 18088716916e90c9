//! The status stream (Server-Sent Events).

use std::time::Duration;

use queuegate::config::Role;
use serde_json::Value;

use crate::helpers::{create_topics, spawn_app, spawn_role, Names};

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
    // EventSource cannot set headers: the entry token buys a stream ticket for the URL; the
    // entry token itself is refused there (it would sit in proxy logs for its whole day).
    let stream = format!("{}/v1/concerts/c/queue/fan/events", app.http());
    let r = app.client.get(format!("{stream}?token={token}")).send().await.unwrap();
    crate::helpers::assert_problem(r, 401, "not taken in a URL").await;
    let ticket = || app.client.post(format!("{stream}/ticket")).header("content-type", "application/json");
    let r = ticket().send().await.unwrap();
    crate::helpers::assert_problem(r, 401, "entry token").await;
    let r = ticket().bearer_auth(token).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["cache-control"], "no-store");
    let ticket: Value = r.json().await.unwrap();
    assert_eq!(ticket["expiresInSeconds"], 60);
    let ticket = ticket["ticket"].as_str().unwrap();
    // A ticket is no entry token: it neither reads the status nor opens another fan's stream.
    crate::helpers::assert_problem(app.status("c", "fan", ticket).await, 401, "entry token").await;
    let other = app.client.get(format!("{}/v1/concerts/c/queue/other/events?ticket={ticket}", app.http()));
    crate::helpers::assert_problem(other.send().await.unwrap(), 401, "ticket").await;
    let mut r = app.client.get(format!("{stream}?ticket={ticket}")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/event-stream");
    let mut buf = String::new();
    let waiting = next_status(&mut r, &mut buf, Duration::from_secs(30), |v| v["status"] == "waiting").await;
    assert_eq!(waiting["position"], 1);
    let admitted = app.admit("c", 1).await;
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

/// What one stream saw until it ended or the deadline: each status, in order, and how it ended.
struct Seen {
    statuses: Vec<Value>,
    ended: bool,
}

/// Reads a stream's status events until it ends or `until`.
async fn watch(mut r: reqwest::Response, until: tokio::time::Instant) -> Seen {
    let mut buf = String::new();
    let mut seen = Seen { statuses: Vec::new(), ended: false };
    loop {
        while let Some(end) = buf.find("\n\n") {
            let frame: String = buf.drain(..end + 2).collect();
            if let Some(data) = frame.lines().find_map(|l| l.strip_prefix("data: ")) {
                if frame.contains("event: status") {
                    seen.statuses.push(serde_json::from_str(data).unwrap());
                }
            }
        }
        match tokio::time::timeout_at(until, r.chunk()).await {
            Ok(Ok(Some(chunk))) => buf.push_str(std::str::from_utf8(&chunk).unwrap()),
            Ok(Ok(None)) => {
                seen.ended = true;
                return seen;
            }
            Ok(Err(e)) => panic!("stream failed: {e}"),
            Err(_) => return seen,
        }
    }
}

/// Redis calls this app made for fans' statuses: one-by-one reads, view reads, outcome reads.
async fn redis_calls(app: &crate::helpers::TestApp) -> (u64, u64, u64) {
    let count =
        async |op: &str| app.metric(&format!("queuegate_redis_call_duration_seconds_count{{op=\"{op}\"}}")).await;
    (count("status").await, count("view").await, count("outcomes").await)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_watchers_cost_redis_one_view_read_per_refresh_and_each_sees_its_exact_place() {
    const FANS: usize = 100;
    let app = spawn_app().await;
    app.open_concert("c").await;
    let mut tokens = Vec::new();
    for i in 0..FANS {
        let r: Value = app.join("c", &format!("w{i}")).await.json().await.unwrap();
        tokens.push(r["token"].as_str().unwrap().to_owned());
    }
    app.wait_for_records(FANS as u64).await;
    let streams: Vec<reqwest::Response> = futures_util::future::join_all((0..FANS).map(|i| {
        app.client.get(format!("{}/v1/concerts/c/queue/w{i}/events", app.http())).bearer_auth(&tokens[i]).send()
    }))
    .await
    .into_iter()
    .map(|r| r.unwrap())
    .collect();
    assert!(streams.iter().all(|r| r.status() == 200));
    let until = tokio::time::Instant::now() + Duration::from_secs(12);
    let watching: Vec<_> = streams.into_iter().map(|r| tokio::spawn(watch(r, until))).collect();

    // Quiet: a hundred open streams cost no per-fan Redis call, only the view's refreshes.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (status_before, view_before, _) = redis_calls(&app).await;
    let quiet = Duration::from_secs(3);
    tokio::time::sleep(quiet).await;
    let (status_after, view_after, _) = redis_calls(&app).await;
    assert_eq!(status_after, status_before, "no per-watcher status reads while nothing changes");
    let refreshes = view_after - view_before;
    assert!((3..=8).contains(&refreshes), "one view read per 500 ms refresh: {refreshes} in {quiet:?}");

    // Someone leaves from the middle, then the head is admitted.
    let listing = app.admin_json("/admin/v1/concerts/c/queue?limit=1000").await;
    let order: Vec<String> =
        listing["entries"].as_array().unwrap().iter().map(|e| e["userId"].as_str().unwrap().to_owned()).collect();
    assert_eq!(order.len(), FANS);
    let removed = order[40].clone();
    assert_eq!(app.admin_delete(&format!("/admin/v1/concerts/c/queue/{removed}")).await.status(), 204);
    let admit = app.admit("c", 25).await;
    assert_eq!(admit.status(), 200);
    let listing = app.admin_json("/admin/v1/concerts/c/queue?limit=1000").await;
    let after: Vec<String> =
        listing["entries"].as_array().unwrap().iter().map(|e| e["userId"].as_str().unwrap().to_owned()).collect();
    assert_eq!(after.len(), FANS - 26);

    // Each stream: the admitted ones end on an event with the admission token, the removed one
    // on `removed`; the others stay open, their last position the listing's.
    for (i, w) in watching.into_iter().enumerate() {
        let user = format!("w{i}");
        let seen = w.await.unwrap();
        let last = seen.statuses.last().unwrap_or_else(|| panic!("{user} saw no status"));
        let head = order[..25].contains(&user);
        if head {
            assert!(seen.ended, "{user}'s stream ends on admission");
            assert_eq!(last["status"], "admitted", "{user}: {last}");
            assert!(last["admissionToken"].as_str().is_some_and(|t| t.split('.').count() == 3));
        } else if user == removed {
            assert!(seen.ended, "{user}'s stream ends on removal");
            assert_eq!(last["status"], "removed");
        } else {
            assert!(!seen.ended, "{user}'s stream stays open while it waits");
            let want = after.iter().position(|u| *u == user).unwrap() + 1;
            assert_eq!(last["position"], want, "{user}: {last}");
            assert_eq!(last["queueLength"], FANS - 26);
        }
        // Every event differs from the one before it: nothing is pushed twice.
        assert!(seen.statuses.windows(2).all(|w| w[0] != w[1]), "{user}: {:?}", seen.statuses);
    }
    let (_, _, outcomes) = redis_calls(&app).await;
    assert!(outcomes >= 1, "the admitted and removed fans' outcomes were read, in one call per refresh");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poll_of_an_unchanged_status_is_a_304_served_without_redis() {
    // One partition: p0 is queued before p1 (across partitions either may come first).
    let names = Names::new();
    create_topics(&names, 1).await;
    let app = spawn_role(&names, Role::Run, |_| {}).await;
    app.open_concert("c").await;
    let mut tokens = Vec::new();
    for user in ["p0", "p1"] {
        let r: Value = app.join("c", user).await.json().await.unwrap();
        tokens.push(r["token"].as_str().unwrap().to_owned());
    }
    app.wait_for_records(2).await;
    let url = format!("{}/v1/concerts/c/queue/p1", app.http());
    let first = app.client.get(&url).bearer_auth(&tokens[1]).send().await.unwrap();
    assert_eq!(first.status(), 200);
    assert_eq!(first.headers()["cache-control"], "private, no-cache");
    let etag = first.headers()["etag"].to_str().unwrap().to_owned();
    let body: Value = first.json().await.unwrap();
    assert_eq!((body["status"].as_str(), body["position"].as_u64()), (Some("waiting"), Some(2)));
    let refresh = body["refreshAfterSeconds"].as_u64().expect("a refresh hint while waiting");
    assert!((2..=15).contains(&refresh), "{body}");

    // The first read made the fan known to the gateway's view: later polls cost Redis nothing.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let reads = app.metric("queuegate_redis_call_duration_seconds_count{op=\"status\"}").await;
    for _ in 0..3 {
        let r = app.client.get(&url).bearer_auth(&tokens[1]).header("if-none-match", &etag).send().await.unwrap();
        assert_eq!(r.status(), 304);
        assert_eq!(r.headers()["etag"].to_str().unwrap(), etag);
        assert!(r.bytes().await.unwrap().is_empty());
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(app.metric("queuegate_redis_call_duration_seconds_count{op=\"status\"}").await, reads);
    assert!(app.metric("queuegate_status_reads_total{source=\"view\"}").await >= 3);

    // The fan ahead is admitted: the status changed, so 200 with a new tag.
    let admit = app.admit("c", 1).await;
    assert_eq!(admit.status(), 200);
    let mut moved = None;
    assert!(
        crate::helpers::poll_until(Duration::from_secs(5), async || {
            let r = app.client.get(&url).bearer_auth(&tokens[1]).header("if-none-match", &etag).send().await.unwrap();
            if r.status() == 200 {
                moved = Some((r.headers()["etag"].to_str().unwrap().to_owned(), r.json::<Value>().await.unwrap()));
            }
            moved.is_some()
        })
        .await
    );
    let (new_tag, body) = moved.unwrap();
    assert_ne!(new_tag, etag);
    assert_eq!(body["position"], 1, "{body}");

    // An admitted fan's status carries its admission token: never stored by a cache.
    let r = app.status("c", "p0", &tokens[0]).await;
    assert_eq!(r.headers()["cache-control"], "no-store");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["status"], "admitted");
    assert!(body.get("refreshAfterSeconds").is_none(), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_shutdown_a_stream_ends_telling_the_fan_to_reconnect_after_a_jittered_delay() {
    let app = spawn_app().await;
    app.open_concert("c").await;
    let accepted: Value = app.join("c", "stayer").await.json().await.unwrap();
    let token = accepted["token"].as_str().unwrap().to_owned();
    app.wait_for_records(1).await;
    let mut r = app
        .client
        .get(format!("{}/v1/concerts/c/queue/stayer/events", app.http()))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    let mut buf = String::new();
    next_status(&mut r, &mut buf, Duration::from_secs(10), |v| v["status"] == "waiting").await;
    let stopping = tokio::spawn(app.shutdown());
    let until = tokio::time::Instant::now() + Duration::from_secs(10);
    while !buf.contains("event: reconnect") {
        match tokio::time::timeout_at(until, r.chunk()).await.expect("a reconnect event in time").unwrap() {
            Some(chunk) => buf.push_str(std::str::from_utf8(&chunk).unwrap()),
            None => panic!("the stream ended without a reconnect event: {buf:?}"),
        }
    }
    let retry: u64 = buf.lines().find_map(|l| l.strip_prefix("retry: ")).expect("a retry delay").parse().unwrap();
    assert!((1_000..=10_000).contains(&retry), "retry {retry} ms");
    assert!(tokio::time::timeout(Duration::from_secs(5), r.chunk()).await.unwrap().unwrap().is_none(), "then it ends");
    stopping.await.unwrap().unwrap();
}
