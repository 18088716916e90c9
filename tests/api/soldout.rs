//! Sold out: joins 410, admission stops, every waiting fan is told (streams end), live
//! admissions go on, and `open` again resumes the same queue with every place kept.

use std::time::Duration;

use queuegate::ids::ConcertId;
use queuegate::store::AdmitRequest;
use serde_json::{json, Value};
use tokio::time::Instant;

use crate::helpers::{assert_problem, spawn_app, TestApp};

const FANS: usize = 1_000;

/// Joins `n` fans `s0..` (100 at a time); their entry tokens.
async fn join_many(app: &TestApp, concert: &str, n: usize) -> Vec<String> {
    let mut tokens = Vec::with_capacity(n);
    for chunk in (0..n).collect::<Vec<_>>().chunks(100) {
        let answers = futures_util::future::join_all(
            chunk.iter().map(|i| async move { app.join(concert, &format!("s{i}")).await }),
        )
        .await;
        for r in answers {
            assert_eq!(r.status(), 202);
            let v: Value = r.json().await.unwrap();
            tokens.push(v["token"].as_str().unwrap().to_owned());
        }
    }
    tokens
}

/// What one stream saw: its statuses, whether it ended, and when it saw `soldout`.
struct Watched {
    statuses: Vec<Value>,
    ended: bool,
    sold_out_at: Option<Instant>,
}

/// Reads a stream until it ends or `until`, noting when `soldout` came; `ready` is sent the
/// first status.
async fn watch(mut r: reqwest::Response, until: Instant, ready: tokio::sync::mpsc::Sender<()>) -> Watched {
    let mut buf = String::new();
    let mut w = Watched { statuses: Vec::new(), ended: false, sold_out_at: None };
    loop {
        while let Some(end) = buf.find("\n\n") {
            let frame: String = buf.drain(..end + 2).collect();
            if let (true, Some(data)) =
                (frame.contains("event: status"), frame.lines().find_map(|l| l.strip_prefix("data: ")))
            {
                let v: Value = serde_json::from_str(data).unwrap();
                if v["status"] == "soldout" && w.sold_out_at.is_none() {
                    w.sold_out_at = Some(Instant::now());
                }
                if w.statuses.is_empty() {
                    let _ = ready.send(()).await;
                }
                w.statuses.push(v);
            }
        }
        match tokio::time::timeout_at(until, r.chunk()).await {
            Ok(Ok(Some(chunk))) => buf.push_str(std::str::from_utf8(&chunk).unwrap()),
            Ok(Ok(None)) => {
                w.ended = true;
                return w;
            }
            Ok(Err(e)) => panic!("stream failed: {e}"),
            Err(_) => return w,
        }
    }
}

async fn listing(app: &TestApp, concert: &str) -> Vec<String> {
    let l = app.admin_json(&format!("/admin/v1/concerts/{concert}/queue?limit=1000")).await;
    l["entries"].as_array().unwrap().iter().map(|e| e["userId"].as_str().unwrap().to_owned()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sold_out_reaches_a_thousand_streams_at_once_stops_admission_and_open_again_keeps_every_place() {
    let app = spawn_app().await;
    let concert = "so";
    let message = "All seats are gone. 모든 좌석이 판매되었습니다.";
    let settings = |state: &str, rate: u32| json!({"state": state, "name": "Last Night", "admitPerSecond": rate, "soldOutMessage": message});
    assert_eq!(app.put_concert(concert, settings("open", 0)).await.status(), 200);
    let tokens = join_many(&app, concert, FANS).await;
    // One more fan, admitted before the tickets run out: a buyer who may be paying.
    let buyer: Value = app.join(concert, "buyer").await.json().await.unwrap();
    let buyer_token = buyer["token"].as_str().unwrap().to_owned();
    app.wait_for_records(FANS as u64 + 1).await;
    let head = listing(&app, concert).await[0].clone();
    let admitted = app.admit(concert, 1).await;
    assert_eq!(admitted.status(), 200);
    let admitted: Value = admitted.json().await.unwrap();
    let admitted_user = admitted["admitted"][0]["userId"].as_str().unwrap().to_owned();
    assert_eq!(admitted_user, head);
    let before = listing(&app, concert).await;
    assert_eq!(before.len(), FANS);
    let token_of = |user: &str| match user.strip_prefix('s') {
        Some(i) if user != "buyer" => tokens[i.parse::<usize>().unwrap()].clone(),
        _ => buyer_token.clone(),
    };

    // A thousand open streams (every waiting fan's), each past its first status.
    let until = Instant::now() + Duration::from_secs(60);
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel(FANS);
    let mut watchers = Vec::new();
    for chunk in before.chunks(100) {
        let opened = futures_util::future::join_all(chunk.iter().map(|user| {
            let url = format!("{}/v1/concerts/{concert}/queue/{user}/events", app.http());
            app.client.get(url).bearer_auth(token_of(user)).send()
        }))
        .await;
        for (r, user) in opened.into_iter().zip(chunk) {
            let r = r.unwrap();
            assert_eq!(r.status(), 200, "{user}'s stream");
            watchers.push((user, tokio::spawn(watch(r, until, ready_tx.clone()))));
        }
    }
    for _ in 0..FANS {
        tokio::time::timeout(Duration::from_secs(30), ready_rx.recv()).await.expect("every stream's first status");
    }

    // Sold out.
    let put = Instant::now();
    assert_eq!(app.put_concert(concert, settings("soldout", 0)).await.status(), 200);
    let mut latest = Duration::ZERO;
    for (i, w) in watchers {
        let w = w.await.unwrap();
        let last = w.statuses.last().unwrap();
        assert_eq!(last["status"], "soldout", "{i}: {:?}", w.statuses);
        assert_eq!(last["message"], message);
        assert!(w.ended, "{i}'s stream ends with soldout");
        assert_eq!(w.statuses.iter().filter(|s| s["status"] == "soldout").count(), 1, "{i}: told once");
        latest = latest.max(w.sold_out_at.unwrap().duration_since(put));
    }
    assert!(latest <= Duration::from_secs(2), "the last of {FANS} streams heard soldout after {latest:?}");
    println!("soldout reached {FANS} streams within {latest:?} of the PUT");

    // Joins: 410 with the message; polls: soldout; the room's info says so.
    let r = app.join(concert, "late-fan").await;
    assert_eq!(r.status(), 410);
    let p: Value = r.json().await.unwrap();
    assert_eq!(p["type"], "urn:queuegate:problem:sold-out");
    assert_eq!(p["detail"], message);
    let s: Value = app.status(concert, &before[7], &token_of(&before[7])).await.json().await.unwrap();
    assert_eq!(s["status"], "soldout", "{s}");
    assert_eq!(s["refreshAfterSeconds"], 30);
    assert!(s.get("position").is_none(), "{s}");
    let info: Value =
        app.client.get(format!("{}/v1/concerts/{concert}", app.http())).send().await.unwrap().json().await.unwrap();
    assert_eq!(info["phase"], "soldout");
    assert_eq!(info["soldOutMessage"], message);
    let counts = app.admin_json(&format!("/admin/v1/concerts/{concert}")).await;
    assert_eq!(counts["state"], "soldout");

    // The fan let in before keeps the admission (and its token); the next in line is told
    // soldout, with its place kept.
    let s: Value = app.status(concert, &admitted_user, &token_of(&admitted_user)).await.json().await.unwrap();
    assert_eq!(s["status"], "admitted", "{s}");
    assert!(s["admissionToken"].is_string());
    let waiter = &before[0];
    let s: Value = app.status(concert, waiter, &token_of(waiter)).await.json().await.unwrap();
    assert_eq!(s["status"], "soldout", "{s}");

    // Admission stops: the operator's admit is refused, an automatic rate admits nobody, and
    // admit.lua itself admits nobody while the stored state is not open (a stale cache).
    assert_problem(app.admit(concert, 5).await, 409, "soldout").await;
    assert_eq!(app.put_concert(concert, settings("soldout", 100)).await.status(), 200);
    app.admission_rounds(3).await;
    let store = app.names.store();
    let id = ConcertId::parse(concert).unwrap();
    let req = AdmitRequest::manual(10, 60_000);
    assert!(store.admit(&id, req).await.unwrap().unwrap().fans.is_empty(), "admit.lua admits nobody while sold out");
    assert_eq!(listing(&app, concert).await, before, "nobody admitted, nobody moved");

    // Tickets come back: open again, and every place is what it was.
    assert_eq!(app.put_concert(concert, settings("open", 0)).await.status(), 200);
    assert_eq!(listing(&app, concert).await, before);
    for at in [0, 1, 500, FANS - 1] {
        let user = &before[at];
        let s: Value = app.status(concert, user, &token_of(user)).await.json().await.unwrap();
        assert_eq!(s["status"], "waiting", "{user}: {s}");
        assert_eq!(s["position"], at + 1, "{user}: {s}");
    }
    assert_eq!(app.join(concert, "late-fan").await.status(), 202);
    assert_eq!(app.admit(concert, 2).await.status(), 200);
    assert_eq!(listing(&app, concert).await[..], before[2..], "admission resumes at the head");
}
