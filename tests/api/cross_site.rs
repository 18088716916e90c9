//! Cross-site joins (issue 36): every state-changing public request must be JSON (415 otherwise,
//! an empty body included) and come from the gateway's own origin or one the concert lists in
//! `allowedOrigins` (403 otherwise), so no web page can make its visitors' browsers join.
//! Chromium's view of the same is tests/browser (a page on another site).

use queuegate::config::{FanIdentityMode, Role};
use reqwest::header::HeaderMap;
use serde_json::{json, Value};

use crate::helpers::{assert_problem, create_topics, spawn_role, Names, ADMIN_TOKEN};

fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.insert(*k, v.parse().unwrap());
    }
    h
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_join_must_be_json_and_from_the_gateway_s_own_origin_or_one_the_concert_allows() {
    let names = Names::new();
    create_topics(&names, 1).await;
    let app = spawn_role(&names, Role::Run, |s| s.identity.fan_identity = Some(FanIdentityMode::Anonymous)).await;
    app.open_concert("c").await;
    let join_url = format!("{}/v1/concerts/c/queue", app.http());
    let join =
        async |h: HeaderMap, body: &'static str| app.client.post(&join_url).headers(h).body(body).send().await.unwrap();
    let own = app.http().to_owned();

    // What any web page can send without a preflight: a form's text/plain from another site.
    // Before: 202, a new fan per visitor.
    let r = join(headers(&[("origin", "https://evil.example"), ("content-type", "text/plain")]), "").await;
    assert_problem(r, 403, "https://evil.example").await;
    let r = join(headers(&[("sec-fetch-site", "cross-site"), ("content-type", "application/json")]), "{}").await;
    assert_problem(r, 403, "allowedOrigins").await;
    let r = join(headers(&[("origin", "null"), ("content-type", "application/json")]), "{}").await;
    assert_problem(r, 403, "null").await;
    let r = join(headers(&[("origin", "http://127.0.0.1:1"), ("content-type", "application/json")]), "{}").await;
    assert_problem(r, 403, "127.0.0.1:1").await;
    // Not JSON, an empty body included (before: an empty body without a type was a join).
    assert_problem(join(headers(&[]), "").await, 415, "application/json").await;
    assert_problem(join(headers(&[("content-type", "text/plain")]), "{}").await, 415, "application/json").await;
    let r = join(headers(&[("origin", own.as_str()), ("content-type", "application/x-www-form-urlencoded")]), "").await;
    assert_problem(r, 415, "application/json").await;

    // The gateway's own pages, and clients that send no Origin (curl, k6): JSON joins.
    let mut accepted = 0;
    for h in [
        headers(&[("origin", own.as_str()), ("sec-fetch-site", "same-origin"), ("content-type", "application/json")]),
        headers(&[("content-type", "application/json; charset=utf-8")]),
    ] {
        for body in ["{}", ""] {
            let r = join(h.clone(), body).await;
            assert_eq!(r.status(), 202, "{h:?} {body:?}: {}", r.text().await.unwrap());
            accepted += 1;
        }
    }

    // A concert lists another origin (the booking site's pages): its JSON joins pass, even
    // when the browser calls it cross-site; not JSON is still 415; other origins still 403.
    let bad = app.put_concert("c", json!({"state": "open", "allowedOrigins": ["https://shop.example/"]})).await;
    assert_problem(bad, 400, "allowedOrigins").await;
    let put = app.put_concert("c", json!({"state": "open", "allowedOrigins": ["https://shop.example"]})).await;
    assert_eq!(put.status(), 200);
    assert_eq!(app.admin_json("/admin/v1/concerts/c").await["allowedOrigins"], json!(["https://shop.example"]));
    let shop = [("origin", "https://shop.example"), ("sec-fetch-site", "cross-site")];
    let r = join(headers(&[shop[0], shop[1], ("content-type", "application/json")]), "{}").await;
    assert_eq!(r.status(), 202, "{}", r.text().await.unwrap());
    accepted += 1;
    assert_problem(join(headers(&[shop[0], shop[1], ("content-type", "text/plain")]), "{}").await, 415, "json").await;
    let r = join(headers(&[("origin", "https://evil.example"), ("content-type", "application/json")]), "{}").await;
    assert_problem(r, 403, "evil.example").await;

    // No CORS: a preflight is a 405 like any method the path does not serve, so a browser on
    // another origin never sends a JSON join whatever allowedOrigins says (docs/explain-security.md).
    let pre = app
        .client
        .request(reqwest::Method::OPTIONS, &join_url)
        .headers(headers(&[("origin", "https://shop.example"), ("access-control-request-method", "POST")]))
        .send()
        .await
        .unwrap();
    assert!(pre.headers().get("access-control-allow-origin").is_none(), "{:?}", pre.headers());
    assert_problem(pre, 405, "POST").await;

    // The other state-changing public requests: the stream ticket and the booking site's
    // completion.
    let ticket = format!("{}/v1/concerts/c/queue/someone/events/ticket", app.http());
    assert_problem(app.client.post(&ticket).send().await.unwrap(), 415, "application/json").await;
    let r = app.client.post(&ticket).headers(headers(&[("origin", "https://evil.example")])).send().await.unwrap();
    assert_problem(r, 403, "evil.example").await;
    let complete = format!("{}/v1/concerts/c/admission/complete", app.http());
    let r = app
        .client
        .post(&complete)
        .bearer_auth(ADMIN_TOKEN)
        .headers(headers(&[("origin", "https://evil.example"), ("content-type", "application/json")]))
        .body(r#"{"userId":"u"}"#)
        .send()
        .await
        .unwrap();
    assert_problem(r, 403, "evil.example").await;

    // Only the accepted joins placed anyone.
    app.wait_for_records(accepted).await;
    let listed: Value = app.admin_json("/admin/v1/concerts/c").await;
    assert_eq!(listed["waiting"], accepted, "{listed}");
}
