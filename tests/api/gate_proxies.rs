//! The gate behind real reverse proxies, with the configuration files of `deploy/` as they are
//! (tests/common/gate_proxies.rs starts them), each in front of a stand-in booking site that
//! echoes who the gate said the fan is.

use std::time::{Duration, Instant};

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use queuegate::config::Role;
use serde_json::{json, Value};

use crate::common::gate_proxies::{caddy, nginx, Proxy};
use crate::common::{free_port, spawn_role, Names, TestApp, ADMIN_TOKEN};
use crate::helpers::poll_until;

const PUBLIC: &str = "https://queue.example";

/// The booking site: answers every page with who the gate said the fan is.
async fn booking(req: HttpRequest) -> HttpResponse {
    let user = req.headers().get("x-queuegate-user").and_then(|v| v.to_str().ok()).unwrap_or("nobody");
    HttpResponse::Ok().body(format!("booking {} for {user}", req.path()))
}

fn start_booking() -> u16 {
    let port = free_port();
    let server = HttpServer::new(|| App::new().default_service(web::to(booking)))
        .workers(1)
        .bind(("127.0.0.1", port))
        .expect("the booking stand-in binds")
        .run();
    tokio::spawn(server);
    port
}

/// A browser-like client that keeps no cookies and follows no redirects: the test holds both.
fn client() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap()
}

async fn get(url: &str, cookie: Option<&str>, spoof: Option<&str>) -> reqwest::Response {
    let mut r = client().get(url);
    if let Some(c) = cookie {
        r = r.header("Cookie", c);
    }
    if let Some(s) = spoof {
        r = r.header("X-Queuegate-User", s);
    }
    r.send().await.unwrap()
}

fn location(r: &reqwest::Response) -> String {
    r.headers().get("location").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default()
}

fn set_cookie(r: &reqwest::Response) -> Option<String> {
    r.headers().get("set-cookie").map(|v| v.to_str().unwrap().split(';').next().unwrap().to_owned())
}

/// A fan who joined, was placed and admitted: their admission token.
async fn admitted(app: &TestApp, concert: &str, user: &str) -> String {
    assert_eq!(app.join(concert, user).await.status(), 202);
    assert!(
        poll_until(Duration::from_secs(30), async || app.waiting_list(concert).await.iter().any(|u| u == user)).await
    );
    let body: Value = app.admit(concert, 1).await.json().await.unwrap();
    assert_eq!(body["admitted"][0]["userId"], user, "{body}");
    body["admitted"][0]["admissionToken"].as_str().unwrap().to_owned()
}

/// The whole walk through one proxy: sent to the room; back with a token, let in with a
/// session; the token refused a second time; a forged cookie and a spoofed user header refused;
/// a revocation sends the fan back to the room.
async fn walk(proxy: &Proxy, app: &TestApp, concert: &str) {
    let room = format!("{PUBLIC}/c/{concert}?return=");
    // No session: to the room, with the page asked for.
    let r = get(&format!("{}/book?seat=2", proxy.url), None, None).await;
    assert_eq!(r.status(), 302);
    let back = format!("{}/book?seat=2", proxy.url);
    assert_eq!(
        location(&r),
        format!("{room}{}", url::form_urlencoded::byte_serialize(back.as_bytes()).collect::<String>())
    );
    // A made-up user header does not get anyone in.
    assert_eq!(get(&format!("{}/book", proxy.url), None, Some("mallory")).await.status(), 302);

    // The room sends the admitted fan back with the token: in, with a session cookie.
    let token = admitted(app, concert, "dana").await;
    let r = get(&format!("{}/book?seat=2&queuegate_token={token}", proxy.url), None, None).await;
    let cookie = set_cookie(&r).expect("the session cookie reaches the browser");
    assert!(cookie.starts_with(&format!("qg_{concert}=")), "{cookie}");
    if r.status() == 302 {
        // Caddy: back to the same page without the token, cookie set.
        assert_eq!(location(&r), back);
    } else {
        assert_eq!(r.status(), 200);
        assert_eq!(r.text().await.unwrap(), "booking /book for dana");
    }
    for page in ["/book?seat=2", "/cart", "/pay"] {
        let r = get(&format!("{}{page}", proxy.url), Some(&cookie), Some("mallory")).await;
        assert_eq!(r.status(), 200, "{page}");
        let body = r.text().await.unwrap();
        assert!(body.ends_with("for dana"), "the site hears the gate's word, not the client's: {body}");
    }

    // The same token again, from another browser: back to the room.
    let r = get(&format!("{}/book?queuegate_token={token}", proxy.url), None, None).await;
    assert_eq!(r.status(), 302);
    assert!(location(&r).starts_with(&room) && location(&r).ends_with("&ended=spent"), "{}", location(&r));
    // A forged cookie (another fan's name on dana's signature).
    let forged = cookie.replace(".dana.", ".erin.");
    assert_eq!(get(&format!("{}/cart", proxy.url), Some(&forged), None).await.status(), 302);

    // The emergency stop: dana is back in the room within 2 s.
    let r = app
        .client
        .post(format!("{}/admin/v1/concerts/{concert}/sessions/revoke", app.admin))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let revoked = Instant::now();
    let out = poll_until(Duration::from_secs(3), async || {
        get(&format!("{}/cart", proxy.url), Some(&cookie), None).await.status() == 302
    })
    .await;
    assert!(out && revoked.elapsed() <= Duration::from_secs(2), "sent back within 2 s: {:?}", revoked.elapsed());
}

async fn app_for(concert: &str) -> TestApp {
    let names = Names::new();
    names.create_topics(3).await;
    let app = spawn_role(&names, Role::Run, |s| s.http.public_url = Some(PUBLIC.into())).await;
    assert_eq!(app.put_concert(concert, json!({"state": "open"})).await.status(), 200);
    app
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_with_the_shipped_configuration_gates_a_booking_site() {
    let app = app_for("gn").await;
    let booking = start_booking();
    let proxy = nginx(app.http().trim_start_matches("http://"), booking, "gn");
    walk(&proxy, &app, "gn").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caddy_with_the_shipped_configuration_gates_a_booking_site() {
    let app = app_for("gc").await;
    let booking = start_booking();
    let proxy = caddy(app.http().trim_start_matches("http://"), booking, "gc");
    walk(&proxy, &app, "gc").await;
}
