//! Issue 37: one field at a time. `PATCH /admin/v1/concerts/{concertId}` takes a JSON Merge
//! Patch (RFC 7396) and keeps what it does not name; `GET` answers an `ETag`, and `PUT` and
//! `PATCH` with `If-Match` refuse a stale copy with 412, checked and written in one Redis script
//! so two gateways cannot both win (docs/reference-http.md, "Writing settings").

use std::time::Duration;

use queuegate::config::Role;
use serde_json::{json, Value};

use crate::common::events_topic::{Behaviour, Receiver};
use crate::helpers::{
    allow_loopback_webhooks, assert_problem, free_port, poll_until, spawn_role, Names, TestApp, ADMIN_TOKEN,
};

const MERGE_PATCH: &str = "application/merge-patch+json";
const WAIT: Duration = Duration::from_secs(30);

/// `PATCH /admin/v1/concerts/{id}` with a merge patch and, when given, `If-Match`.
async fn patch(app: &TestApp, id: &str, body: Value, if_match: Option<&str>) -> reqwest::Response {
    let mut r = app
        .client
        .patch(format!("{}/admin/v1/concerts/{id}", app.admin))
        .bearer_auth(ADMIN_TOKEN)
        .header("content-type", MERGE_PATCH)
        .body(body.to_string());
    if let Some(tag) = if_match {
        r = r.header("if-match", tag);
    }
    r.send().await.expect("admin PATCH")
}

/// `PUT /admin/v1/concerts/{id}` with `If-Match`.
async fn put_if(app: &TestApp, id: &str, body: Value, if_match: &str) -> reqwest::Response {
    app.client
        .put(format!("{}/admin/v1/concerts/{id}", app.admin))
        .bearer_auth(ADMIN_TOKEN)
        .header("if-match", if_match)
        .json(&body)
        .send()
        .await
        .expect("admin PUT")
}

/// The `ETag` header of an answer.
fn etag(r: &reqwest::Response) -> String {
    let v = r.headers().get("etag").unwrap_or_else(|| panic!("no ETag on the answer of {}", r.url()));
    v.to_str().unwrap().to_owned()
}

/// `GET` of a concert: its `ETag` and body.
async fn read(app: &TestApp, id: &str) -> (String, Value) {
    let r = app.admin_get(&format!("/admin/v1/concerts/{id}")).await;
    assert_eq!(r.status(), 200, "GET {id}");
    let tag = etag(&r);
    (tag, r.json().await.unwrap())
}

/// 200, and the body.
async fn ok(r: reqwest::Response) -> Value {
    let status = r.status();
    let body: Value = r.json().await.unwrap();
    assert_eq!(status, 200, "{body}");
    body
}

/// The pending deliveries of each webhook of `id`, by webhook id.
async fn pending(app: &TestApp, id: &str) -> Vec<(String, u64)> {
    let d = app.admin_json(&format!("/admin/v1/concerts/{id}/webhooks/deliveries")).await;
    d["webhooks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| (h["id"].as_str().unwrap().to_owned(), h["pending"].as_u64().unwrap()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_patch_changes_what_it_names_and_keeps_the_rates_the_lanes_and_the_webhooks_with_their_deliveries() {
    let names = Names::new();
    names.create_topics(1).await;
    let app = spawn_role(&names, Role::Run, allow_loopback_webhooks).await;
    let receiver = Receiver::start(Behaviour::Ok).await;
    // Nothing listens there: its deliveries stay pending.
    let dead = format!("http://127.0.0.1:{}/hook", free_port());
    let settings = json!({
        "state": "open", "admitPerSecond": 5, "maxActive": 1, "tokenTtlSeconds": 900, "name": "Tour",
        "lanes": [{"name": "fanclub", "share": 3}, {"name": "general", "share": 1}],
        "webhooks": [{"url": dead}, {"url": receiver.url, "types": ["dev.queuegate.concert.soldout"]}],
    });
    let created = ok(app.put_concert("c", settings).await).await;
    for i in 0..3 {
        let r = app
            .client
            .post(format!("{}/v1/concerts/c/queue", app.http()))
            .json(&json!({"userId": format!("f{i}"), "lane": "fanclub"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
    }
    let mut seen = Value::Null;
    let placed = poll_until(WAIT, async || {
        seen = app.admin_json("/admin/v1/concerts/c").await;
        seen["waiting"].as_u64().unwrap_or(0) + seen["admitted"].as_u64().unwrap_or(0) == 3
    })
    .await;
    assert!(placed, "three fans placed in the fanclub lane; the concert shows {seen}");
    let dead_id = created["webhooks"][0]["id"].as_str().unwrap().to_owned();
    let mut before = 0;
    let queued = poll_until(WAIT, async || {
        before = pending(&app, "c").await.iter().find(|(id, _)| *id == dead_id).map_or(0, |(_, n)| *n);
        before > 0
    })
    .await;
    assert!(queued, "deliveries wait for the dead endpoint (pending {before})");
    let (tag, shown) = read(&app, "c").await;
    let hooks = shown["webhooks"].clone(); // as a GET shows them: the secrets masked

    // The trap the issue names: the docs' one-liner as a PUT would take the fanclub lane away
    // from the fans in it (and every webhook, and the rates) ...
    let trap = app.put_concert("c", json!({"state": "paused"})).await;
    assert_problem(trap, 409, "still holds").await;
    // ... as a PATCH it changes the state and nothing else.
    let r = patch(&app, "c", json!({"state": "soldout"}), None).await;
    let new_tag = etag(&r);
    let after = ok(r).await;
    assert_ne!(new_tag, tag, "a write changes the ETag");
    assert_eq!(after["state"], "soldout");
    for (field, want) in [
        ("admitPerSecond", json!(5)),
        ("maxActive", json!(1)),
        ("tokenTtlSeconds", json!(900)),
        ("name", json!("Tour")),
        ("lanes", created["lanes"].clone()),
        ("webhooks", hooks.clone()),
    ] {
        assert_eq!(after[field], want, "{field} is kept: {after}");
    }
    let still = pending(&app, "c").await;
    let dead_now = still.iter().find(|(id, _)| *id == dead_id).map(|(_, n)| *n);
    assert!(dead_now.is_some_and(|n| n >= before), "the dead endpoint's {before} deliveries are kept: {still:?}");
    let fanclub = app.admin_json("/admin/v1/concerts/c/queue?lane=fanclub").await;
    assert!(fanclub["total"].as_u64().is_some_and(|n| n > 0), "the fanclub lane keeps its fans: {fanclub}");

    // The effects are a PUT's of the merged settings: the sold-out event carries them.
    let mut bodies = Vec::new();
    let told = poll_until(WAIT, async || {
        bodies = receiver.got.lock().unwrap().iter().map(|d| d.body.clone()).collect();
        !bodies.is_empty()
    })
    .await;
    assert!(told, "the receiver got the concert.soldout event");
    let event: Value = serde_json::from_str(&bodies[0]).unwrap();
    assert_eq!(event["type"], "dev.queuegate.concert.soldout", "{event}");
    assert_eq!(event["data"]["admitPerSecond"], 5, "the event carries the merged settings: {event}");
    assert_eq!(event["data"]["state"], "soldout", "{event}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn null_restores_a_default_arrays_are_replaced_and_the_merged_settings_are_checked_like_a_put() {
    let names = Names::new();
    names.create_topics(1).await;
    let app = spawn_role(&names, Role::Run, |_| {}).await;
    let body = json!({"state": "open", "maxWaiting": 10, "name": "Gig", "tokenTtlSeconds": 90,
                      "protectedHosts": ["a.example", "b.example"], "brandColor": "#112233"});
    ok(app.put_concert("n", body).await).await;
    let body = json!({"maxWaiting": null, "name": null, "protectedHosts": ["c.example"], "brandColor": "#445566"});
    let c = ok(patch(&app, "n", body, None).await).await;
    assert_eq!(c["maxWaiting"], 1_000_000, "null: the default");
    assert!(c.get("name").is_none(), "null: no name, as a PUT without one: {c}");
    assert_eq!(c["protectedHosts"], json!(["c.example"]), "an array is replaced, not merged");
    assert_eq!(c["brandColor"], "#445566");
    assert_eq!((c["tokenTtlSeconds"].as_u64(), c["state"].as_str()), (Some(90), Some("open")), "kept");

    // The merged settings get a PUT's checks and errors; a refused patch changes nothing.
    let (tag, _) = read(&app, "n").await;
    assert_problem(patch(&app, "n", json!({"state": null}), None).await, 400, "state has no default").await;
    let put_error = assert_problem(
        app.put_concert("n", json!({"state": "open", "tokenTtlSeconds": 0})).await,
        400,
        "tokenTtlSeconds",
    )
    .await;
    let patch_error =
        assert_problem(patch(&app, "n", json!({"tokenTtlSeconds": 0}), None).await, 400, "tokenTtlSeconds").await;
    assert_eq!(patch_error["detail"], put_error["detail"], "the same error as a PUT's");
    assert_problem(patch(&app, "n", json!({"colour": "red"}), None).await, 400, "unknown field").await;
    // An object where the setting is not one merges into nothing a PUT would take.
    assert_problem(patch(&app, "n", json!({"name": {"first": "x"}}), None).await, 400, "name").await;
    assert_problem(patch(&app, "n", json!({"lanes": {"name": "x"}}), None).await, 400, "lanes").await;
    assert_problem(patch(&app, "n", json!(["state", "paused"]), None).await, 400, "request body is not valid").await;
    assert_eq!(read(&app, "n").await.0, tag, "the refused patches wrote nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_patch_is_a_merge_patch_of_a_concert_that_exists() {
    let names = Names::new();
    names.create_topics(1).await;
    let app = spawn_role(&names, Role::Run, |_| {}).await;
    app.open_concert("m").await;
    let url = format!("{}/admin/v1/concerts/m", app.admin);
    let as_json =
        app.client.patch(&url).bearer_auth(ADMIN_TOKEN).json(&json!({"state": "paused"})).send().await.unwrap();
    assert_eq!(as_json.headers()["accept-patch"], MERGE_PATCH, "the 415 says what a PATCH takes");
    assert_problem(as_json, 415, "application/merge-patch+json").await;
    let bare = app.client.patch(&url).bearer_auth(ADMIN_TOKEN).body(r#"{"state":"paused"}"#).send().await.unwrap();
    assert_problem(bare, 415, "merge-patch").await;
    // A merge patch sent as a PUT would reset everything it leaves out: refused.
    let put = app
        .client
        .put(&url)
        .bearer_auth(ADMIN_TOKEN)
        .header("content-type", MERGE_PATCH)
        .body(r#"{"state":"paused"}"#)
        .send()
        .await
        .unwrap();
    assert_problem(put, 415, "application/json").await;
    assert_eq!(app.admin_json("/admin/v1/concerts/m").await["state"], "open");
    let broken = app
        .client
        .patch(&url)
        .bearer_auth(ADMIN_TOKEN)
        .header("content-type", MERGE_PATCH)
        .body("{\"state\":")
        .send()
        .await
        .unwrap();
    assert_problem(broken, 400, "request body is not valid").await;
    let unauthorised = app.client.patch(&url).header("content-type", MERGE_PATCH).body("{}").send().await.unwrap();
    assert_problem(unauthorised, 401, "admin token").await;

    // Nothing to patch: 404, and nothing is created (a PUT creates), whatever If-Match says.
    assert_problem(patch(&app, "nowhere", json!({"state": "open"}), None).await, 404, "a PUT creates").await;
    assert_problem(patch(&app, "nowhere", json!({"state": "open"}), Some("*")).await, 404, "no concert").await;
    assert_eq!(app.admin_get("/admin/v1/concerts/nowhere").await.status(), 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn if_match_refuses_a_stale_copy_on_put_and_patch_and_the_etag_follows_writes_on_any_gateway() {
    let names = Names::new();
    names.create_topics(1).await;
    let a = spawn_role(&names, Role::Run, |_| {}).await;
    let b = spawn_role(&names, Role::Gateway, |_| {}).await;
    let created = a.put_concert("e", json!({"state": "open", "admitPerSecond": 10})).await;
    let first = etag(&created);
    let (tag, body) = read(&a, "e").await;
    assert_eq!(tag, first, "the PUT's answer and a GET agree");
    assert!(tag.starts_with('"') && tag.ends_with('"'), "a strong entity tag: {tag}");
    assert_eq!(body["etag"], tag, "the body carries it too");
    let listed = a.admin_json("/admin/v1/concerts").await;
    assert_eq!(listed["concerts"][0]["etag"], tag, "and the list, for clients that read it");
    assert_eq!(read(&b, "e").await.0, tag, "every gateway answers the same ETag");

    // The current copy: 200 and a new tag, which every gateway then answers.
    let r = patch(&a, "e", json!({"admitPerSecond": 20}), Some(&tag)).await;
    let second = etag(&r);
    assert_eq!(ok(r).await["admitPerSecond"], 20);
    assert_ne!(second, tag);
    assert_eq!(read(&b, "e").await.0, second, "the other gateway reads the new ETag from Redis");
    // A write on the other gateway changes it too.
    let r = patch(&b, "e", json!({"maxActive": 3}), Some(&second)).await;
    let third = etag(&r);
    ok(r).await;
    assert_ne!(third, second);
    assert_eq!(read(&a, "e").await.0, third);

    // A stale copy: 412 on PATCH and on PUT, nothing written.
    for stale in [&tag, &second] {
        let r = patch(&a, "e", json!({"state": "paused"}), Some(stale)).await;
        assert_problem(r, 412, "has changed").await;
        let r = put_if(&b, "e", json!({"state": "closed"}), stale).await;
        assert_problem(r, 412, "has changed").await;
    }
    let (now, body) = read(&a, "e").await;
    assert_eq!((now.as_str(), body["state"].as_str()), (third.as_str(), Some("open")), "nothing written");
    // A weak tag never matches (strong comparison); one of several listed does; garbage is 400.
    let weak = format!("W/{third}");
    assert_problem(patch(&a, "e", json!({"state": "paused"}), Some(&weak)).await, 412, "has changed").await;
    assert_problem(patch(&a, "e", json!({"state": "paused"}), Some("e-3")).await, 400, "If-Match").await;
    let several = format!("\"0-0\", {third}");
    let r = put_if(&a, "e", json!({"state": "paused", "admitPerSecond": 20}), &several).await;
    let fourth = etag(&r);
    assert_eq!(ok(r).await["state"], "paused");
    // `*`: any copy of a concert that exists; a PUT under it does not create one.
    let r = patch(&b, "e", json!({"state": "open"}), Some("*")).await;
    assert_ne!(etag(&r), fourth);
    ok(r).await;
    assert_problem(put_if(&a, "new", json!({"state": "open"}), "*").await, 412, "no concert new").await;
    assert_problem(put_if(&a, "new", json!({"state": "open"}), &fourth).await, 412, "no concert new").await;
    assert_eq!(a.admin_get("/admin/v1/concerts/new").await.status(), 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn of_concurrent_patches_with_the_same_if_match_on_two_gateways_exactly_one_wins() {
    let names = Names::new();
    names.create_topics(1).await;
    let a = spawn_role(&names, Role::Run, |_| {}).await;
    let b = spawn_role(&names, Role::Gateway, |_| {}).await;
    a.open_concert("r").await;
    for round in 0..10u64 {
        let (tag, _) = read(&a, "r").await;
        // Six writers on two gateways, each with the copy read above and its own rate.
        let sends = (0..6u64).map(|i| {
            let (app, tag) = (if i % 2 == 0 { &a } else { &b }, tag.clone());
            async move { (i, patch(app, "r", json!({"admitPerSecond": round * 10 + i}), Some(&tag)).await) }
        });
        let answers = futures_util::future::join_all(sends).await;
        let mut won = Vec::new();
        for (i, r) in answers {
            match r.status().as_u16() {
                200 => won.push(i),
                412 => {
                    assert_problem(r, 412, "").await;
                }
                other => panic!("round {round}, writer {i}: {other} {}", r.text().await.unwrap()),
            }
        }
        assert_eq!(won.len(), 1, "round {round}: exactly one writer wins, not {won:?}");
        let (_, body) = read(&b, "r").await;
        assert_eq!(body["admitPerSecond"], round * 10 + won[0], "round {round}: the winner's write is stored");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_patches_without_if_match_to_different_fields_on_two_gateways_all_land() {
    let names = Names::new();
    names.create_topics(1).await;
    let a = spawn_role(&names, Role::Run, |_| {}).await;
    let b = spawn_role(&names, Role::Gateway, |_| {}).await;
    a.open_concert("f").await;
    // Five writers: each loses at most once to each of the four others (a write fails only
    // when another one was stored since its read), so each is stored within the five tries a
    // write makes. A read-merge-write without the version check would lose fields here.
    let changes = [
        json!({"admitPerSecond": 7}),
        json!({"maxActive": 70}),
        json!({"name": "Five at once"}),
        json!({"brandColor": "#0a84ff"}),
        json!({"sessionIdleSeconds": 45}),
    ];
    for round in 0..3 {
        let sends = changes.iter().enumerate().map(|(i, change)| {
            let app = if i % 2 == 0 { &a } else { &b };
            async move { patch(app, "f", change.clone(), None).await.status().as_u16() }
        });
        let statuses = futures_util::future::join_all(sends).await;
        assert_eq!(statuses, vec![200; 5], "round {round}");
        let (_, c) = read(&a, "f").await;
        for change in &changes {
            let (field, want) = change.as_object().unwrap().iter().next().unwrap();
            assert_eq!(&c[field], want, "round {round}: {field} landed: {c}");
        }
        // The next round writes over them again, from the defaults.
        let reset = json!({"admitPerSecond": null, "maxActive": null, "name": null, "brandColor": null, "sessionIdleSeconds": null});
        ok(patch(&a, "f", reset, None).await).await;
    }
}
