//! Every bad input gets its status and a problem-details body naming the problem.

use crate::helpers::{assert_problem, spawn_app, ADMIN_TOKEN};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_joins_get_problem_details_with_the_right_status() {
    let app = spawn_app().await;
    app.open_concert("c").await;
    let url = |concert: &str| format!("{}/v1/concerts/{concert}/queue", app.http());
    let post_json = |concert: &str, body: String| {
        app.client.post(url(concert)).header("content-type", "application/json").body(body).send()
    };

    assert_problem(post_json("c", r#"{"userId":"a b"}"#.into()).await.unwrap(), 400, "userId").await;
    assert_problem(post_json("c", format!(r#"{{"userId":"{}"}}"#, "x".repeat(65))).await.unwrap(), 400, "userId").await;
    assert_problem(post_json("c", r#"{"user":"fan"}"#.into()).await.unwrap(), 400, "userId").await;
    assert_problem(post_json("c", "{not json".into()).await.unwrap(), 400, "not valid").await;
    assert_problem(post_json("bad.id", r#"{"userId":"fan"}"#.into()).await.unwrap(), 400, "concertId").await;
    let big = format!(r#"{{"userId":"fan","pad":"{}"}}"#, "x".repeat(5000));
    assert_problem(post_json("c", big).await.unwrap(), 413, "4096").await;
    let r = app
        .client
        .post(url("c"))
        .header("content-type", "text/plain")
        .body(r#"{"userId":"fan"}"#)
        .send()
        .await
        .unwrap();
    assert_problem(r, 415, "application/json").await;
    let r = app.client.post(url("c")).body(r#"{"userId":"fan"}"#).send().await.unwrap();
    assert_problem(r, 415, "application/json").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_needs_the_fans_own_entry_token() {
    let app = spawn_app().await;
    app.open_concert("c").await;
    let accepted: serde_json::Value = app.join("c", "fan").await.json().await.unwrap();
    let token = accepted["token"].as_str().unwrap();
    let other: serde_json::Value = app.join("c", "other").await.json().await.unwrap();

    let r = app.client.get(format!("{}/v1/concerts/c/queue/fan", app.http())).send().await.unwrap();
    assert_eq!(r.headers()["www-authenticate"], "Bearer");
    assert_problem(r, 401, "entry token").await;
    assert_problem(app.status("c", "fan", other["token"].as_str().unwrap()).await, 401, "entry token").await;
    assert_problem(app.status("c", "fan", "garbage").await, 401, "entry token").await;
    assert_problem(app.status("c", "fan!", token).await, 400, "userId").await;
    assert_eq!(app.status("c", "fan", token).await.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_refuses_missing_or_wrong_tokens_and_bad_input() {
    let app = spawn_app().await;
    let r = app.client.get(format!("{}/admin/v1/concerts", app.admin)).send().await.unwrap();
    assert_problem(r, 401, "admin token").await;
    let r = app
        .client
        .get(format!("{}/admin/v1/concerts", app.admin))
        .bearer_auth("wrong-token-wrong-token")
        .send()
        .await
        .unwrap();
    assert_problem(r, 401, "admin token").await;
    let r = app.client.get(format!("{}/admin/v1/concerts", app.admin)).bearer_auth(ADMIN_TOKEN).send().await.unwrap();
    assert_eq!(r.status(), 200);

    assert_problem(app.put_concert("c", serde_json::json!({"state": "ajar"})).await, 400, "state").await;
    assert_problem(
        app.put_concert("c", serde_json::json!({"state": "open", "tokenTtlSeconds": 0})).await,
        400,
        "tokenTtlSeconds",
    )
    .await;
    assert_problem(app.put_concert("c", serde_json::json!({"state": "open", "colour": "red"})).await, 400, "colour")
        .await;
    assert_problem(app.put_concert("a:b", serde_json::json!({"state": "open"})).await, 400, "concertId").await;
    app.open_concert("c").await;
    assert_problem(app.admin_get("/admin/v1/concerts/c/queue?limit=1001").await, 400, "limit").await;
    assert_problem(app.admin_get("/admin/v1/concerts/c/queue?limit=ten").await, 400, "query").await;
    assert_problem(app.admin_get("/admin/v1/concerts/none").await, 404, "none").await;
    assert_problem(app.admin_get("/admin/v1/concerts/none/queue").await, 404, "none").await;
    assert_problem(app.admin_get("/admin/v1/concerts/c/queue/ghost").await, 404, "never joined").await;
}

/// The secret rotation reads its body through the one JSON reader like every other body
/// (issue 36: it read up to 256 KiB of anything, with no time bound and no type check).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_secret_rotation_reads_its_body_like_every_other_body() {
    let app = spawn_app().await;
    // A public address (registration refuses internal ones) whose one type never happens here:
    // nothing is ever sent off the machine.
    let hook = serde_json::json!({"url": "https://93.184.216.34/hook", "types": ["dev.queuegate.fan.admitted"]});
    let body = serde_json::json!({"state": "open", "webhooks": [hook]});
    let r = app.put_concert("rot", body).await;
    assert_eq!(r.status(), 200);
    let put: serde_json::Value = r.json().await.unwrap();
    let hook = put["webhooks"][0]["id"].as_str().unwrap().to_owned();
    let url = format!("{}/admin/v1/concerts/rot/webhooks/{hook}/secret", app.admin);
    let post = |body: &'static str, ct: &'static str| {
        app.client.post(&url).bearer_auth(ADMIN_TOKEN).header("content-type", ct).body(body).send()
    };
    assert_problem(post(r#"{"previousValidSeconds": 0}"#, "text/plain").await.unwrap(), 415, "application/json").await;
    let big: &'static str =
        Box::leak(format!(r#"{{"previousValidSeconds": 0, "pad": "{}"}}"#, "x".repeat(8192)).into());
    assert_problem(post(big, "application/json").await.unwrap(), 413, "4096").await;
    assert_problem(
        post(r#"{"previousValidSeconds": "soon"}"#, "application/json").await.unwrap(),
        400,
        "previousValidSeconds",
    )
    .await;
    let r = app.client.post(&url).bearer_auth(ADMIN_TOKEN).send().await.unwrap();
    assert_eq!(r.status(), 200, "no body: the default overlap");
    let r = post(r#"{"previousValidSeconds": 0}"#, "application/json").await.unwrap();
    assert_eq!(r.status(), 200);
    let rotated: serde_json::Value = r.json().await.unwrap();
    assert!(rotated["previousValidUntil"].is_null(), "{rotated}");
}
