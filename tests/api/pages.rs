//! The pages' files and the rooms' JSON: security headers on every page, the console's files
//! open while its data stays behind the admin token, and what a room learns about its concert.

use serde_json::{json, Value};

use crate::helpers::{assert_problem, spawn_app, ADMIN_TOKEN};

/// GETs `url` and checks the headers every page carries.
async fn page(client: &reqwest::Client, url: &str, content_type: &str) -> String {
    let r = client.get(url).send().await.unwrap();
    assert_eq!(r.status(), 200, "{url}");
    let h = r.headers();
    let header = |name: &str| h.get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    assert!(header("content-type").starts_with(content_type), "{url}: {}", header("content-type"));
    assert_eq!(header("x-content-type-options"), "nosniff", "{url}");
    assert_eq!(header("content-security-policy"), queuegate::pages::CSP, "{url}");
    assert!(!header("content-security-policy").contains("unsafe-inline"), "{url}");
    assert_eq!(header("x-frame-options"), "DENY", "{url}");
    assert_eq!(header("referrer-policy"), "no-referrer", "{url}");
    r.text().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_page_and_file_carries_the_security_headers_and_the_console_s_data_needs_the_token() {
    let app = spawn_app().await;
    let c = &app.client;
    let public = app.http();
    assert!(page(c, &format!("{public}/"), "text/html").await.contains("/assets/room.js"));
    assert!(page(c, &format!("{public}/c/tour-1"), "text/html").await.contains("id=\"position\""));
    page(c, &format!("{public}/assets/room.js"), "text/javascript").await;
    page(c, &format!("{public}/assets/pages.css"), "text/css").await;
    assert!(page(c, &format!("{public}/favicon.ico"), "image/svg+xml").await.starts_with("<svg"));
    // The console's files need no token (they hold no data) ...
    assert!(page(c, &format!("{}/admin/", app.admin), "text/html").await.contains("/admin/console.js"));
    page(c, &format!("{}/admin/console.js", app.admin), "text/javascript").await;
    page(c, &format!("{}/admin/pages.css", app.admin), "text/css").await;
    // ... but every call it makes does, and the exemption is those three paths exactly.
    for path in ["/admin/v1/concerts", "/admin/console.jsx", "/admin/index.html", "/admin//"] {
        let r = c.get(format!("{}{path}", app.admin)).send().await.unwrap();
        assert_problem(r, 401, "admin token").await;
    }
    // nosniff is on the API's answers too, errors included.
    let r = c.get(format!("{public}/v1/concerts/nope")).send().await.unwrap();
    assert_eq!(r.headers()["x-content-type-options"], "nosniff");
    assert_problem(r, 404, "no concert nope").await;
    let r = c.get(format!("{public}/c/not%20an%20id")).send().await.unwrap();
    assert_problem(r, 400, "concertId").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_learns_its_concert_s_name_branding_phase_and_identity_mode_and_lists_only_rooms_taking_fans() {
    let app = spawn_app().await;
    let body = json!({"state": "open", "name": "Seoul Night", "redirectUrl": "https://tickets.example/book",
                      "logoUrl": "/favicon.ico", "brandColor": "#6d28d9", "backgroundColor": "#fafafa",
                      "abandonAfterSeconds": 120});
    assert_eq!(app.put_concert("night", body).await.status(), 200);
    assert_eq!(
        app.put_concert("later", json!({"state": "open", "opensAt": "2099-01-01T00:00:00Z"})).await.status(),
        200
    );
    assert_eq!(app.put_concert("shut", json!({"state": "closed", "name": "Shut"})).await.status(), 200);
    let room: Value =
        app.client.get(format!("{}/v1/concerts/night", app.http())).send().await.unwrap().json().await.unwrap();
    assert_eq!(room["name"], "Seoul Night");
    assert_eq!(room["phase"], "open");
    assert_eq!(room["redirectUrl"], "https://tickets.example/book");
    assert_eq!(room["brandColor"], "#6d28d9");
    assert_eq!(room["backgroundColor"], "#fafafa");
    assert_eq!(room["logoUrl"], "/favicon.ico");
    assert_eq!(room["abandonAfterSeconds"], 120);
    assert_eq!(room["fanIdentity"], "body", "the test app runs --insecure-dev (body mode)");
    assert!(room["now"].as_str().is_some_and(|n| n.ends_with('Z')));
    let later: Value =
        app.client.get(format!("{}/v1/concerts/later", app.http())).send().await.unwrap().json().await.unwrap();
    assert_eq!(later["phase"], "scheduled");
    assert_eq!(later["opensAt"], "2099-01-01T00:00:00Z");
    let list: Value = app.client.get(format!("{}/v1/concerts", app.http())).send().await.unwrap().json().await.unwrap();
    let ids: Vec<&str> =
        list["concerts"].as_array().unwrap().iter().map(|c| c["concertId"].as_str().unwrap()).collect();
    assert_eq!(ids, ["later", "night"], "open and scheduled rooms, by id; not the closed one");

    // Bad page settings are refused, naming the field; the admin API keeps them as set.
    let r = app.put_concert("night", json!({"state": "open", "redirectUrl": "javascript:alert(1)"})).await;
    assert_problem(r, 400, "redirectUrl").await;
    let r = app.put_concert("night", json!({"state": "open", "brandColor": "red"})).await;
    assert_problem(r, 400, "brandColor").await;
    let admin: Value = app
        .client
        .get(format!("{}/admin/v1/concerts/night", app.admin))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(admin["name"], "Seoul Night");
    assert_eq!(admin["redirectUrl"], "https://tickets.example/book");
}
