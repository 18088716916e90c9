//! The pages in a real browser: Debian's chromium, driven through chromedriver (installed by
//! `scripts/services.sh tools`), against the real application on the real Kafka and Redis.
//!
//! Each test saves a screenshot of every state it reaches to `target/browser/<test>/`; the set
//! in docs/screenshots/ is copied from there (`scripts/screenshots.sh`). The time from pressing
//! "join" to the page's first status is printed (`first status after join`) and reported in
//! docs/explain-costs.md; it is measured, not asserted.

#[path = "../common/mod.rs"]
mod common;
mod webdriver;

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use actix_web::{web, App, HttpResponse, HttpServer};
use jsonwebtoken::{jwk::JwkSet, Algorithm, DecodingKey, Validation};
use queuegate::config::{FanIdentityMode, Role, Secret, Settings};
use serde_json::{json, Value};

use common::{create_topics, free_port, poll_until, spawn_role, Names, TestApp, ADMIN_TOKEN};
use webdriver::{Browser, ENTER, TAB};

const WAIT: Duration = Duration::from_secs(20);

fn shots(test: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/browser").join(test)
}

/// The booking site's page a room sends an admitted fan to: it verifies `admissionToken` against
/// the gateway's JWKS only, as docs/howto-booking-site.md tells a booking site to, and says what it
/// found in `#verdict`.
async fn booking_site(jwks_url: String) -> String {
    let port = free_port();
    let server = HttpServer::new(move || {
        let jwks_url = jwks_url.clone();
        App::new().route(
            "/book",
            web::get().to(move |q: web::Query<std::collections::HashMap<String, String>>| {
                let jwks_url = jwks_url.clone();
                async move {
                    let verdict = match q.get("admissionToken") {
                        None => "refused: no admissionToken".to_owned(),
                        Some(token) => match verify(&jwks_url, token).await {
                            Ok(c) => format!("verified {} {}", c["sub"].as_str().unwrap_or(""), c["concert"].as_str().unwrap_or("")),
                            Err(e) => format!("refused: {e}"),
                        },
                    };
                    HttpResponse::Ok()
                        .content_type("text/html; charset=utf-8")
                        .body(format!("<!doctype html><title>Booking</title><link rel=\"icon\" href=\"data:,\"><p id=\"verdict\">{verdict}</p>"))
                }
            }),
        )
    })
    .workers(1)
    .bind(("127.0.0.1", port))
    .expect("booking site binds")
    .run();
    tokio::spawn(server);
    format!("http://127.0.0.1:{port}")
}

async fn verify(jwks_url: &str, token: &str) -> Result<Value, String> {
    let jwks: JwkSet =
        reqwest::get(jwks_url).await.map_err(|e| e.to_string())?.json().await.map_err(|e| e.to_string())?;
    let key = DecodingKey::from_jwk(&jwks.keys[0]).map_err(|e| e.to_string())?;
    let mut v = Validation::new(Algorithm::EdDSA);
    v.set_issuer(&["queuegate"]);
    v.set_audience(&["booking"]);
    v.set_required_spec_claims(&["exp", "nbf", "sub", "iss", "aud"]);
    jsonwebtoken::decode::<Value>(token, &key, &v).map(|d| d.claims).map_err(|e| e.to_string())
}

/// The app with the public listener on `port` (so it can be restarted on the same address).
async fn app_on(names: &Names, port: u16, tweak: impl FnOnce(&mut Settings)) -> TestApp {
    spawn_role(names, Role::Run, |s| {
        s.http.http_addr = format!("127.0.0.1:{port}").parse().unwrap();
        tweak(s);
    })
    .await
}

/// A new tab on the operators' console, signed in with the admin token; its handle.
async fn signed_in_console(b: &Browser, app: &TestApp) -> String {
    let tab = b.new_tab().await;
    b.switch_to(&tab).await;
    b.goto(&format!("{}/admin/", app.admin)).await;
    b.type_into("#token", ADMIN_TOKEN).await;
    b.click("#login button").await;
    tab
}

/// Console entries that are errors, leaving out those a test causes on purpose (`expected`: the
/// connection refusals of a gateway stopped for a restart, a 429 the test provoked).
fn errors(entries: &[(String, String)], expected: &[&str]) -> Vec<String> {
    entries
        .iter()
        .filter(|(level, _)| level == "SEVERE" || level == "WARNING")
        .filter(|(_, m)| !expected.iter().any(|e| m.contains(e)))
        .map(|(l, m)| format!("{l}: {m}"))
        .collect()
}

/// A join through the API as a new anonymous fan; its user id. A 503 (the broker still
/// starting, right after `make services`) is tried again, as a client would after Retry-After.
async fn anonymous_join(app: &TestApp, concert: &str) -> String {
    let url = format!("{}/v1/concerts/{concert}/queue", app.http());
    for _ in 0..60 {
        let r = app.client.post(&url).json(&json!({})).send().await.unwrap();
        match r.status().as_u16() {
            202 => return r.json::<Value>().await.unwrap()["userId"].as_str().unwrap().to_owned(),
            503 => tokio::time::sleep(Duration::from_millis(500)).await,
            other => panic!("join answered {other}: {}", r.text().await.unwrap()),
        }
    }
    panic!("joins kept answering 503 for 30 s")
}

/// The admin listing's position of `user` (None when not listed).
async fn listed_position(app: &TestApp, concert: &str, user: &str) -> Option<u64> {
    let page = app.admin_json(&format!("/admin/v1/concerts/{concert}/queue?limit=1000")).await;
    page["entries"].as_array().unwrap().iter().find(|e| e["userId"] == user).and_then(|e| e["position"].as_u64())
}

/// The page's performance marks (name → ms since the page loaded).
async fn marks(b: &Browser) -> std::collections::HashMap<String, f64> {
    let v = b.eval("return performance.getEntriesByType('mark').map(m => [m.name, m.startTime]);", json!([])).await;
    v.as_array().unwrap().iter().map(|m| (m[0].as_str().unwrap().to_owned(), m[1].as_f64().unwrap())).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fan_waits_keeps_the_place_through_a_reload_and_a_restart_and_lands_on_the_booking_site() {
    let names = Names::new();
    create_topics(&names, 1).await; // one partition: queue order is join order
    let port = free_port();
    let anonymous = |s: &mut Settings| s.identity.fan_identity = Some(FanIdentityMode::Anonymous);
    let app = app_on(&names, port, anonymous).await;
    let booking = booking_site(format!("{}/.well-known/jwks.json", app.http())).await;
    let concert = "seoul-night";
    let r = app
        .put_concert(
            concert,
            json!({"state": "open", "name": "Seoul Night 2026", "redirectUrl": format!("{booking}/book?from=queue"),
                   "brandColor": "#6d28d9", "logoUrl": "/favicon.ico", "abandonAfterSeconds": 600}),
        )
        .await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    // Two fans ahead, joined through the API.
    let ahead = [anonymous_join(&app, concert).await, anonymous_join(&app, concert).await];
    app.wait_for_records(2).await;

    let out = shots("fan");
    let b = Browser::start(&out, "en-US").await;
    let fan_tab = b.tab().await;
    // The list of rooms links to the concert.
    b.goto(&format!("{}/", app.http())).await;
    b.expect_text("#list a", WAIT, |t| t == "Seoul Night 2026", "the room is listed").await;
    b.screenshot("0-rooms").await;
    b.assert_accessible("the list of rooms").await;

    b.goto(&format!("{}/c/{concert}", app.http())).await;
    b.expect_text("#title", WAIT, |t| t == "Seoul Night 2026", "the concert's name").await;
    assert!(b.text("#abandon").await.contains("10 minutes"), "the abandonment rule is shown");
    b.screenshot("1-room").await;
    b.assert_accessible("the room before the join").await;
    b.click("#joinbtn").await;
    b.expect_text("#position", WAIT, |t| t == "#3", "third in line").await;
    assert_eq!(b.text("#state").await, "You are in line");
    assert_eq!(b.text("#ahead").await, "2 people ahead of you · of 3 waiting");
    let entry = b.eval("return JSON.parse(localStorage.getItem('qg:' + arguments[0]));", json!([concert])).await;
    let fan = entry["userId"].as_str().expect("the place is stored").to_owned();
    assert_eq!(listed_position(&app, concert, &fan).await, Some(3), "the page shows what the admin listing shows");
    let m = marks(&b).await;
    assert!(m["qg-pending"] <= m["qg-waiting"], "pending is shown before waiting: {m:?}");
    println!(
        "first status after join: {:.0} ms; waiting shown after {:.0} ms",
        m["qg-first-status"] - m["qg-join"],
        m["qg-waiting"] - m["qg-join"]
    );
    b.screenshot("2-waiting").await;
    b.assert_accessible("the room, waiting").await;
    // The check sees what it should: an image without a text alternative is a violation.
    b.eval("const i = document.createElement('img'); i.id = 'axe-probe'; i.src = '/favicon.ico'; document.body.appendChild(i);", json!([])).await;
    let found = b.accessibility_violations().await;
    assert!(found.iter().any(|v| v["id"] == "image-alt"), "axe-core reports the probe: {found:?}");
    b.eval("document.getElementById('axe-probe').remove();", json!([])).await;

    // A reload keeps the place: no second join, the same position.
    b.refresh().await;
    b.expect_text("#position", WAIT, |t| t == "#3", "the place survives a reload").await;
    assert!(b.text("#joinbtn").await.is_empty(), "no join button for a fan who has a place");
    assert_eq!(app.admin_json(&format!("/admin/v1/concerts/{concert}")).await["waiting"], 3);
    let mut seen = b.console().await;

    // The gateway restarts mid-wait: the page says it is reconnecting, then shows the place again.
    app.shutdown().await.expect("clean shutdown");
    b.expect_text("#reconnecting", WAIT, |t| t.contains("reconnecting"), "reconnecting is shown").await;
    b.screenshot("3-reconnecting").await;
    b.assert_accessible("the room, reconnecting").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let app = app_on(&names, port, anonymous).await;
    b.expect_text("#reconnecting", Duration::from_secs(40), str::is_empty, "reconnected").await;
    assert_eq!(b.text("#position").await, "#3");
    let restart_console = b.console().await;

    // The operator's console, in a second tab: the same counts as the admin API.
    let console_tab = signed_in_console(&b, &app).await;
    let row = format!("tr[data-concert=\"{concert}\"]");
    b.expect_text(&format!("{row} td[data-k=waiting]"), WAIT, |t| t == "3", "the console's count").await;
    let api = app.admin_json(&format!("/admin/v1/concerts/{concert}")).await;
    for k in ["waiting", "admitted", "active", "admitPerSecond"] {
        assert_eq!(b.text(&format!("{row} td[data-k={k}]")).await, api[k].to_string(), "{k}");
    }
    assert_eq!(b.text(&format!("{row} td[data-k=state]")).await, "open");
    assert!(b.text(&format!("{row} td[data-k=head]")).await.starts_with(&format!("#1 {}", ahead[0])));
    b.resize(1280, 800).await;
    b.screenshot("4-console").await;
    b.assert_accessible("the console").await;
    b.resize(412, 915).await;

    // Look up the first fan and remove them: ours moves up to #2.
    b.type_into("#lc", concert).await;
    b.type_into("#lu", &ahead[0]).await;
    b.click("#lookup button[type=submit]").await;
    b.expect_text("#found", WAIT, |t| t.contains("waiting, position 1"), "lookup").await;
    b.click("#remove").await;
    b.expect_text("#found", WAIT, |t| t.contains("was removed"), "removed").await;
    b.expect_text(&format!("{row} td[data-k=waiting]"), WAIT, |t| t == "2", "console after removal").await;
    b.switch_to(&fan_tab).await;
    b.expect_text("#position", WAIT, |t| t == "#2", "moved up after the removal").await;

    // Admit two from the console: ours is the second; the page shows the turn, then the booking
    // site receives a token that verifies against the JWKS, for this fan and concert.
    b.switch_to(&console_tab).await;
    b.type_into(&format!("{row} input.count"), "2").await;
    b.click(&format!("{row} button[data-act=Admit]")).await;
    b.expect_text("#found", WAIT, |t| t == format!("Admitted 2 in {concert}."), "admitted from the console").await;
    b.expect_text(&format!("{row} td[data-k=admitted]"), WAIT, |t| t == "2", "console after admission").await;
    let console_console = b.console().await;
    b.switch_to(&fan_tab).await;
    b.expect_text("#state", WAIT, |t| t == "It's your turn!", "the turn is shown").await;
    b.screenshot("5-admitted").await;
    let landed = poll_until(WAIT, async || b.url().await.starts_with(&booking)).await;
    assert!(landed, "redirected to the booking site, at {}", b.url().await);
    let verdict = b.expect_text("#verdict", WAIT, |t| !t.is_empty(), "the booking site's verdict").await;
    assert_eq!(verdict, format!("verified {fan} {concert}"));
    assert!(b.url().await.contains("from=queue"), "the redirect keeps the booking page's own query");
    b.screenshot("6-booking-site").await;

    seen.extend(b.console().await);

    // Back on the console: change the rate, pause and open again; the admin API agrees each time.
    b.switch_to(&console_tab).await;
    b.type_into(&format!("{row} input.rate"), "7").await;
    b.click(&format!("{row} button[data-act=\"Set rate\"]")).await;
    b.expect_text(&format!("{row} td[data-k=admitPerSecond]"), WAIT, |t| t == "7", "the new rate").await;
    assert_eq!(app.admin_json(&format!("/admin/v1/concerts/{concert}")).await["admitPerSecond"], 7);
    b.click(&format!("{row} button[data-act=Pause]")).await;
    b.expect_text(&format!("{row} td[data-k=state]"), WAIT, |t| t == "paused", "paused").await;
    let paused = app.admin_json(&format!("/admin/v1/concerts/{concert}")).await;
    assert_eq!(paused["state"], "paused");
    assert_eq!(paused["name"], "Seoul Night 2026", "the console's PATCH keeps the other settings");
    assert_eq!(paused["redirectUrl"], format!("{booking}/book?from=queue"));
    b.click(&format!("{row} button[data-act=Open]")).await;
    b.expect_text(&format!("{row} td[data-k=state]"), WAIT, |t| t == "open", "open again").await;
    seen.extend(b.console().await);
    seen.extend(console_console);
    assert_eq!(errors(&seen, &[]), Vec::<String>::new(), "console errors on the pages");
    assert_eq!(
        errors(&restart_console, &["net::ERR_CONNECTION_REFUSED"]),
        Vec::<String>::new(),
        "console errors around the restart"
    );
    drop(b);
    app.shutdown().await.unwrap();
}

const SECRET: &str = "browser-identity-secret-0123456789-0123456789";
const ISS: &str = "https://tickets.example";
const AUD: &str = "queuegate";

fn identity_token(sub: &str) -> String {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
    let claims = json!({"sub": sub, "iss": ISS, "aud": AUD, "iat": now, "exp": now + 3600});
    let key = jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes());
    jsonwebtoken::encode(&jsonwebtoken::Header::new(Algorithm::HS256), &claims, &key).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_in_fan_of_a_scheduled_concert_sees_the_countdown_and_the_pre_queue_in_korean() {
    let names = Names::new();
    create_topics(&names, 2).await;
    let app = spawn_role(&names, Role::Run, |s| {
        s.identity.fan_identity = Some(FanIdentityMode::Jwt);
        s.identity.fan_jwt_secret = Some(Secret::new(SECRET));
        s.identity.fan_jwt_issuer = Some(ISS.into());
        s.identity.fan_jwt_audience = Some(AUD.into());
    })
    .await;
    let concert = "busan-live";
    let opens = SystemTime::now() + Duration::from_secs(2 * 3600);
    let opens = time::OffsetDateTime::from(opens).format(&time::format_description::well_known::Rfc3339).unwrap();
    let r = app.put_concert(concert, json!({"state": "open", "name": "부산 라이브", "opensAt": opens})).await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());

    let out = shots("scheduled");
    let b = Browser::start(&out, "ko-KR").await;
    let room = format!("{}/c/{concert}", app.http());
    // Without the booking site's link the room cannot know who the fan is, and says so.
    b.goto(&room).await;
    b.expect_text("#title", WAIT, |t| t == "부산 라이브", "the name").await;
    assert!(b.text("#signin").await.contains("예매 사이트"), "asks for the booking site's link");
    assert!(b.text("#joinbtn").await.is_empty());
    assert_eq!(b.text("#countLabel").await, "판매 시작까지");
    let clock = b.expect_text("#clock", WAIT, |t| t.starts_with("01:59:"), "a two-hour countdown").await;
    assert_eq!(clock.len(), 8, "{clock}");

    // From the booking site's link: the token rides in the fragment, and leaves the address bar.
    b.goto(&format!("{room}#idToken={}", identity_token("kim-1"))).await;
    b.expect_text("#joinbtn", WAIT, |t| t == "대기열 입장", "the join button, in Korean").await;
    assert_eq!(b.url().await, room, "the identity token is taken out of the address");
    b.screenshot("1-countdown-ko").await;
    b.assert_accessible("the pre-queue countdown, in Korean").await;
    b.click("#joinbtn").await;
    b.expect_text("#state", WAIT, |t| t == "사전 대기열에 있습니다", "in the pre-queue").await;
    assert!(!b.text("#clock").await.is_empty(), "the countdown goes on in the pre-queue");
    let fan = app.admin_json(&format!("/admin/v1/concerts/{concert}/queue/kim-1")).await;
    assert_eq!(fan["status"], "prequeue", "the page's fan is the token's subject: {fan}");
    b.screenshot("2-prequeue-ko").await;
    b.assert_accessible("the pre-queue, in Korean").await;

    // The language switch, and a reload that keeps the place.
    b.click("#lang").await;
    b.expect_text("#state", WAIT, |t| t == "You are in the pre-queue", "switched to English").await;
    b.refresh().await;
    b.expect_text("#state", WAIT, |t| t == "You are in the pre-queue", "kept across a reload, in English").await;
    b.screenshot("3-prequeue-en").await;
    b.assert_accessible("the pre-queue").await;
    assert_eq!(errors(&b.console().await, &[]), Vec::<String>::new(), "console errors");
    drop(b);
    app.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_the_dev_body_mode_the_fan_types_an_id_that_the_page_checks_and_a_busy_join_is_tried_again() {
    let names = Names::new();
    create_topics(&names, 1).await;
    let app = spawn_role(&names, Role::Run, |s| {
        s.identity.fan_identity = Some(FanIdentityMode::Body);
        s.http.rate_limit_per_ip = 1; // one join a second from 127.0.0.1, the test's and the browser's
    })
    .await;
    app.open_concert("demo").await;
    let b = Browser::start(&shots("body"), "en-US").await;
    b.goto(&format!("{}/c/demo", app.http())).await;
    b.expect_text("#joinbtn", WAIT, |t| t == "Join the queue", "the join button").await;
    // The id box's pattern is a valid expression for the browser, and it refuses a bad id.
    let valid = "const u = document.getElementById('user'); u.value = arguments[0]; return u.checkValidity();";
    assert_eq!(b.eval(valid, json!(["not an id!"])).await, json!(false));
    assert_eq!(b.eval(valid, json!(["fan_01-a"])).await, json!(true));
    b.type_into("#user", "fan-typed-1").await;
    // Others from the same address keep joining: the page's join gets 429, says so, and tries
    // again by itself after the Retry-After. One joined just before the click, and four more keep
    // taking the budget (each every 25 ms) until the page says it is busy: one join before the
    // click was not enough on a loaded machine (the click came more than the budget's second
    // later and went through at once).
    assert_eq!(app.join("demo", "fan-api").await.status(), 202);
    let drains: Vec<_> = (0..4)
        .map(|d| {
            let (client, url) = (app.client.clone(), format!("{}/v1/concerts/demo/queue", app.http()));
            tokio::spawn(async move {
                for i in 0.. {
                    let _ = client.post(&url).json(&json!({"userId": format!("fan-api-{d}-{i}")})).send().await;
                    tokio::time::sleep(Duration::from_millis(25)).await;
                }
            })
        })
        .collect();
    b.click("#joinbtn").await;
    b.expect_text("#error", WAIT, |t| t.starts_with("Busy right now"), "the busy message").await;
    drains.iter().for_each(|d| d.abort());
    b.expect_text("#position", WAIT, |t| t.starts_with('#'), "a place, after trying again").await;
    assert!(b.text("#error").await.is_empty(), "the message is gone once the join went through");
    assert_eq!(b.text("#who").await, "Your place: fan-typed-1");
    let listed = listed_position(&app, "demo", "fan-typed-1").await.expect("the fan is listed");
    assert!(listed >= 2, "behind at least one of the others: {listed}");
    b.expect_text("#position", WAIT, |t| t == format!("#{listed}"), "the listed place").await;

    // A concert opening in 3 s: the fan joins the pre-queue, the countdown ends in "Sales are
    // open.", and after the cut the page shows the fan's place.
    let opens = SystemTime::now() + Duration::from_secs(3);
    let opens = time::OffsetDateTime::from(opens).format(&time::format_description::well_known::Rfc3339).unwrap();
    assert_eq!(app.put_concert("soon", json!({"state": "open", "opensAt": opens})).await.status(), 200);
    b.goto(&format!("{}/c/soon", app.http())).await;
    b.expect_text("#countLabel", WAIT, |t| t == "Sales open in", "the countdown").await;
    b.click("#joinbtn").await;
    b.expect_text("#state", WAIT, |t| t == "You are in the pre-queue", "the pre-queue").await;
    b.expect_text("#phase", WAIT, |t| t == "Sales are open.", "the opening").await;
    assert!(b.text("#clock").await.is_empty(), "the countdown is gone");
    b.expect_text("#position", Duration::from_secs(40), |t| t == "#1", "placed at the cut").await;
    let provoked = ["queue - Failed to load resource: the server responded with a status of 429"];
    assert_eq!(errors(&b.console().await, &provoked), Vec::<String>::new(), "console errors");
    drop(b);
    app.shutdown().await.unwrap();
}

/// The booking site behind nginx's gate: every page says who the gate let in.
async fn gated_booking_site() -> u16 {
    let port = free_port();
    let server = HttpServer::new(|| {
        App::new().default_service(web::to(|req: actix_web::HttpRequest| async move {
            let user = req.headers().get("x-queuegate-user").and_then(|v| v.to_str().ok()).unwrap_or("nobody").to_owned();
            HttpResponse::Ok()
                .content_type("text/html; charset=utf-8")
                .body(format!("<!doctype html><title>Booking</title><link rel=\"icon\" href=\"data:,\"><p id=\"verdict\">booking {} for {user}</p>", req.path()))
        }))
    })
    .workers(1)
    .bind(("127.0.0.1", port))
    .expect("booking site binds")
    .run();
    tokio::spawn(server);
    port
}

/// An anonymous-mode gateway (its public URL its own address) with the shipped nginx gate for
/// `concert` in front of the booking stand-in: the app, the proxy and the public URL.
async fn gated(names: &Names, concert: &str) -> (TestApp, common::gate_proxies::Proxy, String) {
    create_topics(names, 1).await;
    let port = free_port();
    let public = format!("http://127.0.0.1:{port}");
    let app = app_on(names, port, |s| {
        s.identity.fan_identity = Some(FanIdentityMode::Anonymous);
        s.http.public_url = Some(public.clone());
    })
    .await;
    let booking = gated_booking_site().await;
    let proxy = common::gate_proxies::nginx(&format!("127.0.0.1:{port}"), booking, concert);
    (app, proxy, public)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_nginx_the_booking_url_leads_to_the_room_and_back_with_a_session_until_it_goes_idle() {
    let names = Names::new();
    let concert = "gated-night";
    let (app, proxy, public) = gated(&names, concert).await;
    let settings = |idle: u32| {
        json!({"state": "open", "name": "Gated Night", "redirectUrl": format!("{}/", proxy.url),
               "admitPerSecond": 5, "sessionIdleSeconds": idle})
    };
    let r = app.put_concert(concert, settings(5)).await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());

    let b = Browser::start(&shots("gate"), "en-US").await;
    // The booking URL, without a session: the room, which knows where the fan was going.
    b.goto(&format!("{}/book?seat=12", proxy.url)).await;
    b.expect_text("#title", WAIT, |t| t == "Gated Night", "sent to the room").await;
    assert!(b.url().await.starts_with(&format!("{public}/c/{concert}?return=")), "{}", b.url().await);
    b.screenshot("0-room").await;
    b.click("#joinbtn").await;
    b.expect_text("#state", WAIT, |t| t == "It's your turn!", "admitted").await;
    b.screenshot("1-admitted").await;
    // Back on the page asked for, let in by the gate with a session cookie.
    b.expect_text("#verdict", WAIT, |t| t.starts_with("booking /book for "), "back on the booking page").await;
    let url = b.url().await;
    assert!(url.starts_with(&format!("{}/book?seat=12", proxy.url)), "the page asked for: {url}");
    let fan = b.text("#verdict").await.rsplit(' ').next().unwrap().to_owned();
    assert_ne!(fan, "nobody");
    b.screenshot("2-booking").await;
    // A reload (the token in the address is spent by now) rides on the session cookie.
    b.goto(&format!("{}/book?seat=12", proxy.url)).await;
    b.expect_text("#verdict", WAIT, |t| t == format!("booking /book for {fan}"), "the session holds").await;
    let sessions = app.admin_json(&format!("/admin/v1/concerts/{concert}/sessions")).await;
    assert_eq!(sessions["sessions"][0]["userId"], fan.as_str(), "{sessions}");

    // Idle past sessionIdleSeconds: the next page is the room again, saying why.
    tokio::time::sleep(Duration::from_secs(8)).await;
    b.goto(&format!("{}/book?seat=12", proxy.url)).await;
    b.expect_text("#state", WAIT, |t| t == "Your booking session has ended.", "the room says the session ended").await;
    assert!(b.text("#go").await.is_empty(), "no way back on a spent token");
    b.screenshot("3-session-ended").await;
    b.assert_accessible("the room after the session ended").await;
    assert!(b.url().await.contains("ended=session"), "{}", b.url().await);
    assert!(errors(&b.console().await, &["401", "favicon"]).is_empty(), "{:?}", b.console().await);

    // The console: two more fans inside (through the API); the operator ends one, then revokes all.
    // They never browse, so they get a longer idle time than the first fan's: on a loaded
    // machine 3 s can pass between their admission and the console's list.
    let r = app.put_concert(concert, settings(120)).await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let others = [gated_session(&app, concert).await, gated_session(&app, concert).await];
    signed_in_console(&b, &app).await;
    let row = format!("tr[data-concert=\"{concert}\"]");
    b.expect_text(&format!("{row} td[data-k=sessions]"), WAIT, |t| t == "2", "the sessions count").await;
    b.type_into("#sc", concert).await;
    b.click("#sform button").await;
    b.expect_text("#scount", WAIT, |t| t == format!("2 live sessions in {concert}"), "the list").await;
    b.screenshot("4-console-sessions").await;
    b.assert_accessible("the console's sessions").await;
    // The operator's keyboard on an End button keeps it through the list's refreshes (every
    // second; the list used to be rebuilt each time, dropping the focus and any press under way),
    // and Enter ends that session.
    let end = format!("#srows tr[data-user=\"{}\"] button", others[0]);
    b.eval("document.querySelector(arguments[0]).focus()", json!([end])).await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let focused = b
        .eval(
            "const e = document.activeElement; return e && e.closest('tr') ? e.closest('tr').dataset.user : ''",
            json!([]),
        )
        .await;
    assert_eq!(focused, json!(others[0]), "the End button kept the focus through two refreshes");
    b.press(ENTER).await;
    b.expect_text("#scount", WAIT, |t| t == format!("1 live session in {concert}"), "one ended").await;
    assert_eq!(app.admin_delete(&format!("/admin/v1/concerts/{concert}/sessions/{}", others[0])).await.status(), 404);
    b.click("#revoke").await;
    b.screenshot("5-console-revoke-confirm").await;
    b.assert_accessible("the console's revoke confirmation").await;
    b.click("#confirm").await;
    b.expect_text("#sdone", WAIT, |t| t.contains("1 sessions ended"), "revoked").await;
    b.expect_text("#scount", WAIT, |t| t == format!("0 live sessions in {concert}"), "none left").await;
    b.screenshot("6-console-revoked").await;
}

/// A fan who joins through the API, is admitted and exchanges the token at the gate (as nginx
/// would ask it): their id.
async fn gated_session(app: &TestApp, concert: &str) -> String {
    let r =
        app.client.post(format!("{}/v1/concerts/{concert}/queue", app.http())).json(&json!({})).send().await.unwrap();
    assert_eq!(r.status(), 202);
    let joined: Value = r.json().await.unwrap();
    let (user, entry) = (joined["userId"].as_str().unwrap().to_owned(), joined["token"].as_str().unwrap().to_owned());
    let mut token = String::new();
    let admitted = poll_until(WAIT, async || {
        let s: Value = app.status(concert, &user, &entry).await.json().await.unwrap();
        token = s["admissionToken"].as_str().unwrap_or_default().to_owned();
        !token.is_empty()
    })
    .await;
    assert!(admitted, "{user} admitted");
    // Its browser: sent to the room first (the nonce and the bind), then back with the token.
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let gate = format!("{}/v1/concerts/{concert}/gate", app.http());
    let r = http
        .get(format!("{gate}?redirect=true"))
        .header("X-Original-URI", "/")
        .header("X-Forwarded-Host", "shop.example")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302);
    let nonce = r.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_owned();
    let room = url::Url::parse(r.headers()["location"].to_str().unwrap()).unwrap();
    let back = url::Url::parse(&room.query_pairs().find(|(k, _)| k == "return").unwrap().1).unwrap();
    let r = http
        .get(&gate)
        .header("X-Original-URI", format!("/?{}&queuegate_token={token}", back.query().unwrap()))
        .header("X-Forwarded-Host", "shop.example")
        .header("Cookie", nonce)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    user
}

/// Session fixation (issue 36 item 6), in two Chromium profiles (two chromedriver sessions, each
/// with its own user-data-dir): fan A asks for the booking site through nginx, waits in the
/// room and is admitted; the URL the room sends A to (the admission token in it), opened in
/// profile B, gives B no session: B lands in the room, which says why, and the booking site
/// never hears from B. A is let in with the same token, and B stays out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_link_opened_in_another_browser_profile_gives_it_no_session_while_the_fan_who_waited_goes_in() {
    let names = Names::new();
    let concert = "fixation";
    let (app, proxy, public) = gated(&names, concert).await;
    let body = json!({"state": "open", "name": "Fixation Night", "redirectUrl": format!("{}/", proxy.url),
                      "admitPerSecond": 5, "sessionIdleSeconds": 120});
    let r = app.put_concert(concert, body).await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let dir = shots("fixation");
    let a = Browser::start_in_profile(&dir.join("a"), "en-US", &dir.join("profile-a")).await;
    let b = Browser::start_in_profile(&dir.join("b"), "en-US", &dir.join("profile-b")).await;

    // B has been to the booking site too (it holds a nonce of its own): no help to it below.
    b.goto(&format!("{}/book?seat=1", proxy.url)).await;
    b.expect_text("#title", WAIT, |t| t == "Fixation Night", "B sent to the room").await;

    // A waits and is admitted; the room's link back (A's token and bind in it) is what A is sent to.
    a.goto(&format!("{}/book?seat=7", proxy.url)).await;
    a.expect_text("#title", WAIT, |t| t == "Fixation Night", "A sent to the room").await;
    // The room would send A on by itself 2.5 s after the admission; a loaded machine can take
    // longer than that between two WebDriver calls, so the test holds that one timer and A
    // presses the room's own "Continue to booking" button once B has tried the link.
    let hold = "const st = window.setTimeout; window.setTimeout = (f, ms, ...r) => ms === 2500 ? 0 : st(f, ms, ...r);";
    a.eval(hold, json!([])).await;
    a.click("#joinbtn").await;
    a.expect_text("#state", WAIT, |t| t == "It's your turn!", "A admitted").await;
    let link = a.eval("return document.getElementById('go').href;", json!([])).await;
    let link = link.as_str().unwrap_or_default().to_owned();
    assert!(link.starts_with(&format!("{}/book?seat=7&queuegate_bind=", proxy.url)), "{link}");
    assert!(link.contains("queuegate_token="), "{link}");
    a.screenshot("0-a-admitted").await;

    // The link in B: the room, told the link is not for this browser; no session for B.
    b.goto(&link).await;
    b.expect_text(
        "#gate",
        WAIT,
        |t| t.starts_with("This admission link works only in the browser that waited"),
        "B told why",
    )
    .await;
    let at = b.url().await;
    assert!(at.starts_with(&format!("{public}/c/{concert}?return=")) && at.ends_with("&ended=browser"), "{at}");
    assert!(!at.contains("queuegate_token"), "the token does not follow B into the room: {at}");
    b.screenshot("1-b-refused").await;
    b.assert_accessible("the room refusing a token link").await;
    b.goto(&format!("{}/cart", proxy.url)).await;
    b.expect_text("#title", WAIT, |t| t == "Fixation Night", "B still has no session").await;
    let sessions = app.admin_json(&format!("/admin/v1/concerts/{concert}/sessions")).await;
    assert_eq!(sessions["total"], 0, "nobody inside yet: {sessions}");

    // A goes on from its room: inside, as A, with the token B could not use.
    a.click("#go").await;
    a.expect_text("#verdict", WAIT, |t| t.starts_with("booking /book for "), "A on the booking page").await;
    let fan = a.text("#verdict").await.rsplit(' ').next().unwrap().to_owned();
    assert_ne!(fan, "nobody");
    a.goto(&format!("{}/cart", proxy.url)).await;
    a.expect_text("#verdict", WAIT, |t| t == format!("booking /cart for {fan}"), "A's session holds").await;
    a.screenshot("2-a-inside").await;
    let sessions = app.admin_json(&format!("/admin/v1/concerts/{concert}/sessions")).await;
    assert_eq!(
        (sessions["total"].clone(), sessions["sessions"][0]["userId"].clone()),
        (json!(1), json!(fan)),
        "{sessions}"
    );
    // And B, given the link again after A went in, is still nobody inside.
    b.goto(&link).await;
    b.expect_text("#gate", WAIT, |t| t.starts_with("This admission link works only"), "B refused again").await;
    assert_eq!(app.admin_json(&format!("/admin/v1/concerts/{concert}/sessions")).await["total"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_sells_out_from_the_console_and_the_waiting_fan_is_told_in_english_and_korean() {
    let names = Names::new();
    create_topics(&names, 1).await;
    let app = spawn_role(&names, Role::Run, |s| s.identity.fan_identity = Some(FanIdentityMode::Body)).await;
    let concert = "last-night";
    let message = "Thank you: every seat has found its fan.";
    let body = json!({"state": "open", "name": "Last Night", "soldOutMessage": message});
    assert_eq!(app.put_concert(concert, body).await.status(), 200);

    let b = Browser::start(&shots("soldout"), "en-US").await;
    let room = b.tab().await;
    b.goto(&format!("{}/c/{concert}", app.http())).await;
    b.type_into("#user", "hopeful-fan").await;
    b.click("#joinbtn").await;
    b.expect_text("#position", WAIT, |t| t == "#1", "first in line").await;

    // The console: "Sold out…" asks first; "Yes, sold out" does it.
    signed_in_console(&b, &app).await;
    let row = format!("tr[data-concert=\"{concert}\"]");
    b.expect_text(&format!("{row} td[data-k=waiting]"), WAIT, |t| t == "1", "the waiting count").await;
    b.click(&format!("{row} button[data-act=\"Sold out…\"]")).await;
    b.screenshot("0-console-sold-out-confirm").await;
    b.assert_accessible("the console's sold-out confirmation").await;
    assert_eq!(app.admin_json(&format!("/admin/v1/concerts/{concert}")).await["state"], "open", "not before the yes");
    b.click(&format!("{row} button[data-act=\"Yes, sold out\"]")).await;
    b.expect_text(&format!("{row} td[data-k=state]"), WAIT, |t| t == "soldout", "the state").await;
    b.screenshot("1-console-sold-out").await;
    b.assert_accessible("the console, sold out").await;

    // The fan's page, told at once: our words and the organiser's, then in Korean.
    b.switch_to(&room).await;
    b.expect_text("#state", WAIT, |t| t == "Sold out.", "sold out").await;
    let note = b.text("#eta").await;
    assert!(note.starts_with("All tickets are sold.") && note.ends_with(message), "{note}");
    assert_eq!(b.text("#position").await, "", "no position while sold out");
    b.screenshot("2-room-sold-out").await;
    b.assert_accessible("the room, sold out").await;
    b.click("#lang").await;
    b.expect_text("#state", WAIT, |t| t == "매진되었습니다.", "sold out in Korean").await;
    assert!(b.text("#eta").await.starts_with("모든 티켓이 판매되었습니다."));
    b.screenshot("3-room-sold-out-ko").await;
    b.assert_accessible("the room, sold out, in Korean").await;
    // A fan arriving now (this browser forgets its place: the language stays): the phase says
    // so, with the organiser's words, and there is no join.
    b.eval("localStorage.removeItem(arguments[0]);", json!([format!("qg:{concert}")])).await;
    b.goto(&format!("{}/c/{concert}", app.http())).await;
    b.expect_text("#phase", WAIT, |t| t.starts_with("매진되었습니다.") && t.ends_with(message), "the phase").await;
    let hidden = b.eval("return document.getElementById('joinbox').hidden;", json!([])).await;
    assert_eq!(hidden, json!(true), "no join while sold out");
    assert!(errors(&b.console().await, &[]).is_empty(), "{:?}", b.console().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_consoles_edit_one_concert_and_the_save_over_a_stale_copy_is_refused_with_a_message_and_reloaded() {
    let names = Names::new();
    create_topics(&names, 1).await;
    let app = spawn_role(&names, Role::Run, |_| {}).await;
    let concert = "two-desks";
    let body = json!({"state": "open", "admitPerSecond": 3, "name": "Two Desks"});
    assert_eq!(app.put_concert(concert, body).await.status(), 200);
    let row = format!("tr[data-concert=\"{concert}\"]");
    let b = Browser::start(&shots("two-consoles"), "en-US").await;
    let first = signed_in_console(&b, &app).await;
    b.expect_text(&format!("{row} td[data-k=state]"), WAIT, |t| t == "open", "the first console shows it").await;
    let second = signed_in_console(&b, &app).await;
    b.expect_text(&format!("{row} td[data-k=state]"), WAIT, |t| t == "open", "the second console shows it").await;

    // The second operator asks to sell out (the confirmation holds the copy they saw) ...
    b.click(&format!("{row} button[data-act=\"Sold out…\"]")).await;
    // ... while the first pauses the concert.
    b.switch_to(&first).await;
    b.click(&format!("{row} button[data-act=Pause]")).await;
    b.expect_text(&format!("{row} td[data-k=state]"), WAIT, |t| t == "paused", "the first console's save").await;
    assert_eq!(app.admin_json(&format!("/admin/v1/concerts/{concert}")).await["state"], "paused");

    // The second confirms over its stale copy: refused, told why, and shown the concert as it is.
    b.switch_to(&second).await;
    b.click(&format!("{row} button[data-act=\"Yes, sold out\"]")).await;
    let told = b.expect_text("#stale", WAIT, |t| t.contains("changed by someone else"), "the refusal").await;
    assert!(told.starts_with(concert) && told.contains("not saved"), "{told}");
    b.expect_text(&format!("{row} td[data-k=state]"), WAIT, |t| t == "paused", "the reloaded state").await;
    b.screenshot("0-second-console-refused").await;
    b.assert_accessible("the console refusing a stale save").await;
    let stored = app.admin_json(&format!("/admin/v1/concerts/{concert}")).await;
    assert_eq!(stored["state"], "paused", "the stale save changed nothing: {stored}");
    assert_eq!((stored["admitPerSecond"].as_u64(), stored["name"].as_str()), (Some(3), Some("Two Desks")));

    // Asked again over what it now shows, the save goes through and the message goes away.
    b.click(&format!("{row} button[data-act=\"Sold out…\"]")).await;
    b.click(&format!("{row} button[data-act=\"Yes, sold out\"]")).await;
    b.expect_text(&format!("{row} td[data-k=state]"), WAIT, |t| t == "soldout", "the second save").await;
    assert_eq!(b.text("#stale").await, "", "the message is gone");
    b.screenshot("1-second-console-saved").await;
    // The browser reports the refused PATCH (412) as a failed load; nothing else.
    assert!(errors(&b.console().await, &["412"]).is_empty(), "{:?}", b.console().await);
    drop(b);
    app.shutdown().await.unwrap();
}

/// The room sends an admitted fan back to the page the gate sent them from only over
/// redirectUrl's scheme: a `return=http://…` for an https booking site goes to redirectUrl
/// instead (issue 36: the token travelled in the clear because a link said http:), and an https
/// one is kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admitted_fan_is_never_sent_back_over_a_weaker_scheme_than_the_booking_sites() {
    let names = Names::new();
    create_topics(&names, 1).await;
    let app = spawn_role(&names, Role::Run, |s| s.identity.fan_identity = Some(FanIdentityMode::Body)).await;
    let b = Browser::start(&shots("return-scheme"), "en-US").await;
    for (concert, back, want) in [
        ("downgrade", "http://shop.example/cart?seat=3", "https://shop.example/book?"),
        ("same-scheme", "https://shop.example/cart?seat=3", "https://shop.example/cart?seat=3&"),
    ] {
        let body = json!({"state": "open", "redirectUrl": "https://shop.example/book", "admitPerSecond": 5});
        assert_eq!(app.put_concert(concert, body).await.status(), 200);
        let back: String = url::form_urlencoded::byte_serialize(back.as_bytes()).collect();
        b.goto(&format!("{}/c/{concert}?return={back}", app.http())).await;
        b.type_into("#user", &format!("fan-{concert}")).await;
        b.click("#joinbtn").await;
        b.expect_text("#state", WAIT, |t| t == "It's your turn!", "admitted").await;
        let href = b.eval("return document.getElementById('go').href;", json!([])).await;
        let href = href.as_str().unwrap_or_default().to_owned();
        assert!(href.starts_with(want) && href.contains("queuegate_token="), "{concert}: sent to {href}, not {want}…");
        // Stay in the room: the booking site of the test does not exist.
        b.eval("window.stop();", json!([])).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fan_club_fan_joins_its_lane_with_a_code_the_operator_uploaded_and_watches_its_place_in_the_lane() {
    let names = Names::new();
    create_topics(&names, 1).await;
    let app = spawn_role(&names, Role::Run, |s| s.identity.fan_identity = Some(FanIdentityMode::Body)).await;
    let concert = "presale";
    let body = json!({"state": "open", "name": "Presale", "lanes": [
        {"name": "fanclub", "share": 70, "access": "code"}, {"name": "general", "share": 30}]});
    assert_eq!(app.put_concert(concert, body).await.status(), 200);

    // The operator uploads the fan club's codes from a CSV file in the console.
    let b = Browser::start(&shots("lanes"), "en-US").await;
    let room = b.tab().await;
    signed_in_console(&b, &app).await;
    let csv = std::env::temp_dir().join(format!("qg-codes-{}.csv", names.prefix));
    std::fs::write(&csv, "code,member\nFC-AAAA-1111,ann\n\"FC-BBBB-2222\",bo\nFC-CCCC-3333,cy\n\n").unwrap();
    b.type_into("#cc", concert).await;
    b.type_into("#cl", "fanclub").await;
    b.attach("#cfile", &csv).await;
    b.click("#cform button").await;
    b.expect_text("#cdone", WAIT, |t| t.starts_with("3 new codes in presale/fanclub"), "the upload's report").await;
    b.screenshot("0-console-codes").await;
    b.assert_accessible("the console's lane codes").await;

    // Two fan-club fans and three others are in line already.
    let join = async |user: &str, lane: &str, code: Option<&str>| {
        let r = app
            .client
            .post(format!("{}/v1/concerts/{concert}/queue", app.http()))
            .json(&json!({"userId": user, "lane": lane, "code": code}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202, "{user}");
    };
    for (user, code) in [("ann", "FC-AAAA-1111"), ("bo", "FC-BBBB-2222")] {
        join(user, "fanclub", Some(code)).await;
        assert!(poll_until(WAIT, async || listed_in(&app, concert, "fanclub", user).await).await, "{user} placed");
    }
    for user in ["g1", "g2", "g3"] {
        let r = app.join(concert, user).await;
        assert_eq!(r.status(), 202);
    }

    // The fan follows the fan club's link: the lane and a code field; a wrong code says so.
    b.switch_to(&room).await;
    b.goto(&format!("{}/c/{concert}?lane=fanclub", app.http())).await;
    b.expect_text("#lanebox", WAIT, |t| t == "Lane: fanclub", "the lane").await;
    b.type_into("#user", "club-fan").await;
    b.type_into("#code", "FC-0000-0000").await;
    b.click("#joinbtn").await;
    b.expect_text("#error", WAIT, |t| t.starts_with("This code does not open this lane"), "a wrong code").await;
    b.type_into("#code", "FC-CCCC-3333").await;
    b.click("#joinbtn").await;
    b.expect_text("#position", WAIT, |t| t == "#3", "third in the fan-club lane").await;
    assert_eq!(b.text("#lane").await, "in lane fanclub");
    b.screenshot("1-room-lane").await;
    b.assert_accessible("the room's lane form").await;

    // One admission goes to the fan club (70/30 starts there): the fan moves up in its lane.
    assert_eq!(app.admit(concert, 1).await.status(), 200);
    b.expect_text("#position", WAIT, |t| t == "#2", "second in the lane").await;
    b.click("#lang").await;
    b.expect_text("#lane", WAIT, |t| t == "fanclub 대기 줄", "the lane in Korean").await;
    b.screenshot("2-room-lane-ko").await;
    b.assert_accessible("the room's lane form, in Korean").await;
    assert!(errors(&b.console().await, &["403"]).is_empty(), "{:?}", b.console().await);
}

/// Whether `user` is listed in `lane` of `concert`.
async fn listed_in(app: &TestApp, concert: &str, lane: &str, user: &str) -> bool {
    let page = app.admin_json(&format!("/admin/v1/concerts/{concert}/queue?lane={lane}&limit=1000")).await;
    page["entries"].as_array().unwrap().iter().any(|e| e["userId"] == user)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_draws_the_sale_report_and_lists_the_webhook_deliveries_within_its_own_csp() {
    let names = Names::new();
    create_topics(&names, 1).await;
    let app = spawn_role(&names, Role::Run, |s| {
        s.identity.fan_identity = Some(FanIdentityMode::Body);
        common::allow_loopback_webhooks(s);
    })
    .await;
    let concert = "report-night";
    // An endpoint nobody listens on: every delivery fails and waits for its retry.
    let dead = format!("http://127.0.0.1:{}/hook", common::free_port());
    let r = app.put_concert(concert, json!({"state": "open", "webhooks": [{"url": dead}]})).await;
    assert_eq!(r.status(), 200);
    let hook: Value = r.json().await.unwrap();
    let hook_id = hook["webhooks"][0]["id"].as_str().unwrap().to_owned();
    for i in 0..5 {
        assert_eq!(app.join(concert, &format!("fan{i}")).await.status(), 202);
    }
    app.wait_for_records(5).await;
    assert_eq!(app.admit(concert, 2).await.status(), 200);
    let mut report = Value::Null;
    let ready = common::poll_until(WAIT, async || {
        report = app.admin_json(&format!("/admin/v1/concerts/{concert}/report")).await;
        report["counts"]["placed"] == 5 && report["counts"]["admitted"] == 2
    })
    .await;
    assert!(ready, "{report}");

    let b = Browser::start(&shots("report"), "en-US").await;
    signed_in_console(&b, &app).await;
    b.type_into("#rc", concert).await;
    b.click("#rform button").await;
    let counts = b.expect_text("#rcounts", WAIT, |t| t.contains("placed 5"), "the counts").await;
    assert!(counts.contains("admitted 2") && counts.contains("removed 0"), "{counts}");
    assert!(b.text("#rwaits").await.starts_with("Wait from placed to admitted (2 fans): p50 "));
    let drawn = b
        .eval(
            "return ['chart-joins','chart-admissions','chart-length'].map(id => { const s = document.getElementById(id); \
             return [s.querySelectorAll('rect').length, (s.querySelector('polyline')?.getAttribute('points') || '').split(' ').filter(Boolean).length]; });",
            json!([]),
        )
        .await;
    let n = |f: &str| report[f].as_array().unwrap().len() as u64;
    assert_eq!(drawn[0][0], n("joinsPerMinute"), "a bar per minute of joins");
    assert_eq!(drawn[1][0], n("admissionsPerMinute"), "a bar per minute of admissions");
    assert_eq!(drawn[2][1], n("queueLength"), "a point per minute of queue length");
    let row = format!("#hrows tr[data-webhook=\"{hook_id}\"]");
    let cells = b.expect_text(&row, WAIT, |t| !t.is_empty(), "the webhook row").await;
    assert!(cells.contains(&dead) && cells.contains("whsec_") && cells.contains('…'), "masked secret: {cells}");
    b.click("#rform button").await;
    b.expect_text("#drows", WAIT, |t| t.contains("failed (connect-failed)"), "the failed deliveries, by class").await;
    b.resize(1280, 900).await;
    b.eval("document.getElementById('report').scrollIntoView();", json!([])).await;
    b.screenshot("0-console-report").await;
    b.assert_accessible("the console's report").await;
    assert!(errors(&b.console().await, &[]).is_empty(), "no CSP or script errors: {:?}", b.console().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_sees_in_the_console_activity_who_paused_the_sale_and_cannot_pause_it_again() {
    let names = Names::new();
    create_topics(&names, 1).await;
    let dir = std::env::temp_dir().join(format!("qg-console-tokens-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("admin-tokens.json");
    const VIEWER: &str = "console-viewer-token-0123456789";
    const OPERATOR: &str = "console-operator-token-0123456789";
    let tokens = json!([
        {"name": "dash", "role": "viewer", "token": VIEWER},
        {"name": "dash-op", "role": "operator", "token": OPERATOR},
    ]);
    std::fs::write(&file, tokens.to_string()).unwrap();
    let app = spawn_role(&names, Role::Run, |s| {
        s.identity.fan_identity = Some(FanIdentityMode::Body);
        s.security.admin_tokens_file = Some(file);
    })
    .await;
    let concert = "activity-night";
    app.open_concert(concert).await;
    let r = app
        .client
        .put(format!("{}/admin/v1/concerts/{concert}", app.admin))
        .bearer_auth(OPERATOR)
        .json(&json!({"state": "paused", "name": "Activity night"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // The viewer signs in with its own token and opens the concert's report and activity.
    let b = Browser::start(&shots("activity"), "en-US").await;
    let tab = b.new_tab().await;
    b.switch_to(&tab).await;
    b.goto(&format!("{}/admin/", app.admin)).await;
    b.type_into("#token", VIEWER).await;
    b.click("#login button").await;
    b.type_into("#rc", concert).await;
    b.click("#rform button").await;
    let rows = b.expect_text("#arows", WAIT, |t| t.contains("dash-op"), "dash-op's change in the activity list").await;
    assert!(rows.contains("operator") && rows.contains(&format!("PUT /admin/v1/concerts/{concert}")), "{rows}");
    assert!(rows.contains("\"state\":\"paused\""), "the change as recorded: {rows}");
    let n = b.eval("return document.querySelectorAll('#arows tr').length;", json!([])).await;
    assert_eq!(n, 2, "the opening (admin) and the pause (dash-op), newest first: {rows}");
    let first = b.eval("return document.querySelector('#arows tr td:nth-child(2)').textContent;", json!([])).await;
    assert_eq!(first, "dash-op", "newest first");
    b.resize(1280, 900).await;
    b.eval("document.getElementById('activity').scrollIntoView();", json!([])).await;
    b.screenshot("0-console-activity").await;
    b.assert_accessible("the console's activity").await;

    // Open is the viewer's to press, but not to do: the API's 403 is shown, nothing changes.
    let open = format!("tr[data-concert=\"{concert}\"] button[data-act=\"Open\"]");
    b.expect_text(&format!("tr[data-concert=\"{concert}\"]"), WAIT, |t| t.contains("paused"), "the concert's row")
        .await;
    // The error line is cleared by the next refresh (every second): what it showed is kept.
    b.eval(
        "window.shown = []; new MutationObserver(() => { const t = document.getElementById('error').textContent; \
         if (t) window.shown.push(t); }).observe(document.getElementById('error'), {childList: true, characterData: true, subtree: true});",
        json!([]),
    )
    .await;
    b.click(&open).await;
    let mut shown = Value::Null;
    let refused = poll_until(WAIT, async || {
        shown = b.eval("return window.shown;", json!([])).await;
        shown.as_array().is_some_and(|a| !a.is_empty())
    })
    .await;
    assert!(refused, "the console showed no error after the viewer pressed Open: {shown}");
    let error = shown[0].as_str().unwrap();
    assert!(error.contains("needs the operator role") && error.contains("dash is viewer"), "{error}");
    assert_eq!(app.admin_json(&format!("/admin/v1/concerts/{concert}")).await["state"], "paused");
    assert!(
        errors(&b.console().await, &["403"]).is_empty(),
        "no script errors beyond the 403 itself: {:?}",
        b.console().await
    );
}

/// A page of another site, on 127.0.0.2 (another site to the browser than the gateway's
/// 127.0.0.1): on load it tries the three ways a page can send its visitor's browser to join
/// `join_url` — `fetch` in no-cors mode (text/plain, no preflight), `fetch` with JSON (needs a
/// CORS preflight), and an HTML form posted into an iframe — and writes what it saw in `#done`.
async fn another_site(join_url: String) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.2:0").expect("127.0.0.2 is loopback too");
    let port = listener.local_addr().unwrap().port();
    let page = format!(
        r#"<!doctype html><html lang="en"><title>Another site</title><link rel="icon" href="data:,">
<form id="f" method="post" enctype="text/plain" action="{join_url}" target="sink"><input type="hidden" name='{{"a":"' value='"}}'></form>
<iframe name="sink" title="sink"></iframe><p id="done"></p>
<script>
(async () => {{
  const out = [];
  try {{ await fetch("{join_url}", {{ method: "POST", mode: "no-cors", body: "" }}); out.push("no-cors sent"); }}
  catch (e) {{ out.push("no-cors failed"); }}
  try {{ const r = await fetch("{join_url}", {{ method: "POST", headers: {{ "Content-Type": "application/json" }}, body: "{{}}" }}); out.push("json " + r.status); }}
  catch (e) {{ out.push("json blocked"); }}
  document.getElementById("f").submit();
  document.getElementById("done").textContent = out.join(", ") + ", form sent";
}})();
</script>"#
    );
    let server = HttpServer::new(move || {
        let page = page.clone();
        App::new().route(
            "/",
            web::get().to(move || {
                let page = page.clone();
                async move { HttpResponse::Ok().content_type("text/html; charset=utf-8").body(page) }
            }),
        )
    })
    .workers(1)
    .listen(listener)
    .expect("the other site listens")
    .run();
    tokio::spawn(server);
    format!("http://127.0.0.2:{port}")
}

/// The join requests the gateway answered with `status` so far (0 before the first).
async fn joins_answered(app: &TestApp, status: u16) -> u64 {
    let text = app.client.get(format!("{}/metrics", app.admin)).send().await.unwrap().text().await.unwrap();
    let series = format!(
        "queuegate_http_requests_total{{listener=\"public\",route=\"/v1/concerts/{{concertId}}/queue\",status=\"{status}\"}} "
    );
    text.lines().find_map(|l| l.strip_prefix(&series)).map_or(0, |v| v.trim().parse().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_on_another_site_cannot_make_its_visitors_join_even_from_an_origin_the_concert_allows() {
    let names = Names::new();
    create_topics(&names, 1).await;
    let app = spawn_role(&names, Role::Run, |s| s.identity.fan_identity = Some(FanIdentityMode::Anonymous)).await;
    app.open_concert("x").await;
    let other = another_site(format!("{}/v1/concerts/x/queue", app.http())).await;
    let b = Browser::start(&shots("cross-site"), "en-US").await;

    // The visitor opens the other site's page: every way it tries is refused before any fan is
    // made (before: the no-cors POST made a new fan, admitted in turn and holding a slot).
    b.goto(&format!("{other}/")).await;
    let done = b.expect_text("#done", WAIT, |t| t.ends_with("form sent"), "the page's attempts").await;
    assert_eq!(done, "no-cors sent, json blocked, form sent", "the JSON fetch dies at its preflight");
    let refused = poll_until(WAIT, async || joins_answered(&app, 403).await >= 2).await;
    assert!(
        refused,
        "the gateway refused the no-cors POST and the form (403 seen: {})",
        joins_answered(&app, 403).await
    );
    assert!(joins_answered(&app, 405).await >= 1, "the JSON fetch's preflight got 405: no CORS");
    b.screenshot("0-refused").await;

    // A join of the gateway's own (no Origin: a client that is no browser page) is the one fan;
    // once it is placed, the consumer has passed anything sent before it.
    let control = app.client.post(format!("{}/v1/concerts/x/queue", app.http())).json(&json!({})).send().await.unwrap();
    assert_eq!(control.status(), 202);
    app.wait_for_records(1).await;
    assert_eq!(app.admin_json("/admin/v1/concerts/x").await["waiting"], 1, "no fan from the other site");

    // The concert lists the other site: its requests pass the origin check, and still are not
    // JSON (415); a JSON fetch still dies at the preflight, which queuegate does not answer.
    let body = json!({"state": "open", "allowedOrigins": [other]});
    assert_eq!(app.put_concert("x", body).await.status(), 200);
    b.refresh().await;
    let done = b.expect_text("#done", WAIT, |t| t.ends_with("form sent"), "the page's attempts, again").await;
    assert_eq!(done, "no-cors sent, json blocked, form sent");
    let unsupported = poll_until(WAIT, async || joins_answered(&app, 415).await >= 2).await;
    assert!(unsupported, "the listed origin's text/plain POSTs got 415 (seen: {})", joins_answered(&app, 415).await);
    assert_eq!(joins_answered(&app, 202).await, 1, "only the control join was accepted");
    b.screenshot("1-allowed-origin-still-not-json").await;
}

/// Standby behind nginx in Chromium (issue 38): a visitor of the idle gated site sees the site at
/// once, without the room; with the one `maxActive` slot held, a second person's browser gets
/// the room; the booking site completes the first visitor's session; the operator's "Queue all…"
/// in the console, confirmed, sends the second visitor to the room though the slot is free and
/// the settling time has passed; "Stop queuing all" lets it straight in again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_standby_the_idle_gated_site_opens_at_once_then_the_room_when_full_or_after_the_consoles_queue_all() {
    let names = Names::new();
    let concert = "standby-night";
    let (app, proxy, public) = gated(&names, concert).await;
    let body = json!({"state": "open", "name": "Standby Night", "redirectUrl": format!("{}/", proxy.url),
                      "queueingMethod": "standby", "maxActive": 1, "admitPerSecond": 5, "sessionIdleSeconds": 120});
    let r = app.put_concert(concert, body).await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let dir = shots("standby");
    let a = Browser::start_in_profile(&dir.join("a"), "en-US", &dir.join("profile-a")).await;
    let b = Browser::start_in_profile(&dir.join("b"), "en-US", &dir.join("profile-b")).await;
    let page = format!("{}/book?seat=7", proxy.url);

    // Nobody waits, the slot is free: straight onto the booking page.
    a.goto(&page).await;
    a.expect_text("#verdict", WAIT, |t| t.starts_with("booking /book for "), "the site at once").await;
    assert!(a.url().await.starts_with(&page), "no room on the way: {}", a.url().await);
    let fan = a.text("#verdict").await.rsplit(' ').next().unwrap().to_owned();
    a.screenshot("0-straight-in").await;
    // The slot is held: the next person gets the room (and does not join).
    b.goto(&page).await;
    b.expect_text("#title", WAIT, |t| t == "Standby Night", "full: the room").await;
    assert!(b.url().await.starts_with(&format!("{public}/c/{concert}?return=")), "{}", b.url().await);
    b.screenshot("1-full-room").await;
    b.assert_accessible("the room of a full standby site").await;

    // The operator queues everyone, then the slot frees itself and the settling time passes.
    signed_in_console(&a, &app).await;
    let row = format!("tr[data-concert=\"{concert}\"]");
    a.expect_text(&format!("{row} td[data-k=state]"), WAIT, |t| t.contains("standby"), "the method shown").await;
    a.click(&format!("{row} button[data-act=\"Queue all…\"]")).await;
    a.screenshot("2-console-queue-all-confirm").await;
    a.assert_accessible("the console's queue-all confirmation").await;
    a.click(&format!("{row} button[data-act=\"Yes, queue everyone\"]")).await;
    a.expect_text(&format!("{row} td[data-k=state]"), WAIT, |t| t.contains("queuing everyone"), "queue all on").await;
    a.screenshot("3-console-queuing-everyone").await;
    // The booking site completes the visitor it was told of (X-Queuegate-User): a session
    // standby started is completed like any other, and its slot frees.
    let done = app
        .client
        .post(format!("{}/v1/concerts/{concert}/admission/complete", app.http()))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"userId": fan}))
        .send()
        .await
        .unwrap();
    assert_eq!(done.status(), 204, "{}", done.text().await.unwrap());
    assert_eq!(app.admin_json(&format!("/admin/v1/concerts/{concert}")).await["sessions"], 0);
    tokio::time::sleep(Duration::from_secs(6)).await;
    b.goto(&page).await;
    b.expect_text("#title", WAIT, |t| t == "Standby Night", "queue all: the room though the slot is free").await;
    let info: Value =
        app.client.get(format!("{}/v1/concerts/{concert}", app.http())).send().await.unwrap().json().await.unwrap();
    assert_eq!(info["queueing"], true, "{info}");

    // Off again: straight in.
    a.click(&format!("{row} button[data-act=\"Stop queuing all\"]")).await;
    a.expect_text(&format!("{row} td[data-k=state]"), WAIT, |t| !t.contains("queuing everyone"), "queue all off").await;
    b.goto(&page).await;
    b.expect_text("#verdict", WAIT, |t| t.starts_with("booking /book for "), "straight in again").await;
    b.screenshot("4-straight-in-again").await;
    assert!(errors(&a.console().await, &["401", "favicon"]).is_empty(), "{:?}", a.console().await);
}

/// The whole path by keyboard alone (WCAG 2.1.1): Tab to the join button, Enter, then the place
/// and the turn, each said once to screen readers through the page's polite live region (and
/// not again while nothing meaningful changes).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fan_joins_by_keyboard_alone_and_a_screen_reader_hears_the_place_and_the_turn_once_each() {
    let names = Names::new();
    create_topics(&names, 1).await;
    let app = app_on(&names, free_port(), |s| s.identity.fan_identity = Some(FanIdentityMode::Anonymous)).await;
    let concert = "keys";
    let r = app.put_concert(concert, json!({"state": "open", "name": "Keyboard Night"})).await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());

    let b = Browser::start(&shots("keyboard"), "en-US").await;
    b.goto(&format!("{}/c/{concert}", app.http())).await;
    b.expect_text("#title", WAIT, |t| t == "Keyboard Night", "the concert's name").await;
    let mut path = Vec::new();
    while b.focused().await != "joinbtn" {
        assert!(path.len() < 10, "Tab never reaches the join button: {path:?}");
        b.press(TAB).await;
        path.push(b.focused().await);
    }
    b.screenshot("0-join-focused").await;
    b.press(ENTER).await;
    b.expect_text("#position", WAIT, |t| t == "#1", "first in line").await;
    let said = b.expect_text("#say", WAIT, |t| !t.is_empty(), "the place said").await;
    assert_eq!(said, "You are in line. Position 1.");
    assert_eq!(b.eval("return document.getElementById('say').getAttribute('aria-live');", json!([])).await, "polite");
    // Updates keep coming (the stream's heartbeats and refreshes); the words stay as they were.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(b.text("#position").await, "#1");
    assert_eq!(
        b.eval("return document.getElementById('say').textContent;", json!([])).await,
        said.as_str(),
        "nothing meaningful changed, nothing said again"
    );
    b.assert_accessible("the room, joined by keyboard").await;

    assert_eq!(app.admit(concert, 1).await.status(), 200);
    b.expect_text("#state", WAIT, |t| t == "It's your turn!", "the turn").await;
    let turn = b.eval("return document.getElementById('say').textContent;", json!([])).await;
    assert_eq!(turn, "It's your turn!", "the turn is said, once punctuated");
    b.screenshot("1-turn").await;
    b.assert_accessible("the room, admitted").await;
    drop(b);
    app.shutdown().await.unwrap();
}
