//! The holes an outside audit found (issue 21), each tried the way it was found.

use std::time::Duration;

use crate::helpers::{raw_http, spawn_app, ADMIN_TOKEN};

/// Ways of writing `/admin` that a router, a proxy or a client may treat as the same path.
pub(crate) const SPELLINGS: &[(&str, &str)] = &[
    ("/admin", "/%61dmin"),
    ("/admin", "/adm%69n"),
    ("/admin", "/%61%64%6d%69%6e"),
    ("/admin", "/%2561dmin"),
    ("/admin", "//admin"),
    ("/admin/v1", "/admin//v1"),
    ("/admin", "/./admin"),
    ("/admin", "/x/../admin"),
    ("/admin", "/ADMIN"),
    ("/admin", "/Admin"),
    ("/admin", "/%41dmin"),
    ("/admin/v1", "/admin/%761"),
    ("/admin/v1", "/admin%2fv1"),
    ("/admin/v1", "/admin%2Fv1"),
    ("/admin", "/admin;x=1"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_spelling_of_an_admin_path_reaches_an_admin_handler_without_the_token() {
    let app = spawn_app().await;
    app.open_concert("c").await;
    app.join("c", "u").await;
    app.wait_for_records(1).await;
    let mut tried = 0;
    for route in queuegate::admin::ROUTES.iter().filter(|r| queuegate::admin::guarded(r.path)) {
        let path = route.path.replace("{concertId}", "c").replace("{userId}", "u");
        for (from, to) in SPELLINGS {
            let spelt = path.replacen(from, to, 1);
            let body = r#"{"count":1000,"state":"open"}"#;
            let req = format!(
                "{} {spelt} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                route.method,
                body.len()
            );
            let (status, answer) = raw_http(&app.admin, &req).await;
            assert!(
                status == 401 || status == 404 || status == 400,
                "{} {spelt} without the token answered {status}: {answer}",
                route.method
            );
            tried += 1;
        }
    }
    assert!(tried >= 7 * SPELLINGS.len(), "tried {tried}");
    // Nothing above acted: the fan is still waiting, nobody was admitted.
    let fan = app.admin_json("/admin/v1/concerts/c/queue/u").await;
    assert_eq!(fan["status"], "waiting", "{fan}");
    // And the decoded spelling does reach the handler with the token: the guard, not a 404,
    // is what stopped the requests above.
    let req = format!("GET /%61dmin/v1/concerts HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer {ADMIN_TOKEN}\r\n\r\n");
    let (status, answer) = raw_http(&app.admin, &req).await;
    assert_eq!(status, 200, "{answer}");
    assert!(answer.contains("\"c\""), "{answer}");
}

/// Opens a connection, sends `head` and the first `sent` bytes of a body of `declared` bytes,
/// then waits up to `wait` for an answer: its status and how long it took (None: no answer).
async fn trickle(base: &str, head: &str, declared: usize, sent: usize, wait: Duration) -> (Option<u16>, Duration) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(base.trim_start_matches("http://")).await.unwrap();
    let req = format!("{head}Content-Type: application/json\r\nContent-Length: {declared}\r\n\r\n{}", "{".repeat(sent));
    let started = std::time::Instant::now();
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 1024];
    let status = match tokio::time::timeout(wait, s.read(&mut buf)).await {
        Ok(Ok(n)) if n > 0 => String::from_utf8_lossy(&buf[..n]).split(' ').nth(1).and_then(|c| c.parse().ok()),
        _ => None,
    };
    (status, started.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_is_read_only_after_the_credentials_and_never_for_longer_than_the_body_timeout() {
    let app = spawn_app().await;
    app.open_concert("c").await;
    let wait = Duration::from_secs(12);
    // A stranger's slow body on complete: 401 at once, the body never waited for.
    let head = "POST /v1/concerts/c/admission/complete HTTP/1.1\r\nHost: x\r\n";
    let (status, took) = trickle(app.http(), head, 4000, 10, wait).await;
    assert_eq!(status, Some(401), "answered in {took:?}");
    assert!(took < Duration::from_secs(3), "the credential is checked before the body: {took:?}");
    // The admin API without its token: the same.
    let head = "PUT /admin/v1/concerts/c HTTP/1.1\r\nHost: x\r\n";
    let (status, took) = trickle(&app.admin, head, 4000, 10, wait).await;
    assert_eq!(status, Some(401), "answered in {took:?}");
    assert!(took < Duration::from_secs(3), "{took:?}");
    // With the credential, a body that never finishes is cut off at the body timeout (5 s), on
    // every route that takes a body.
    let site = format!("Authorization: Bearer {ADMIN_TOKEN}\r\n");
    for (base, head) in [
        (app.http(), format!("POST /v1/concerts/c/admission/complete HTTP/1.1\r\nHost: x\r\n{site}")),
        (&app.admin, format!("PUT /admin/v1/concerts/c HTTP/1.1\r\nHost: x\r\n{site}")),
        (&app.admin, format!("POST /admin/v1/concerts/c/admit HTTP/1.1\r\nHost: x\r\n{site}")),
        (app.http(), "POST /v1/concerts/c/queue HTTP/1.1\r\nHost: x\r\n".to_owned()),
    ] {
        let (status, took) = trickle(base, &head, 4000, 10, wait).await;
        assert_eq!(status, Some(408), "{head}: answered in {took:?}");
        assert!(took >= Duration::from_secs(4) && took < Duration::from_secs(9), "{head}: {took:?}");
    }
}

/// How many times Redis at `url` has run `command` (INFO commandstats).
async fn calls(url: &str, command: &str) -> u64 {
    let info: String = crate::helpers::redis_query(url, redis::cmd("INFO").arg("commandstats")).await;
    info.lines()
        .find_map(|l| l.strip_prefix(&format!("cmdstat_{command}:calls=")))
        .and_then(|rest| rest.split(',').next()?.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fairness_record_is_served_from_memory_not_one_redis_read_per_request() {
    let redis = crate::common::private_redis::PrivateRedis::start();
    let names = crate::helpers::Names::on(crate::common::brokers(), redis.url());
    crate::helpers::create_topics(&names, 1).await;
    // The concert list is refreshed every 10 s, not every 200 ms as in other tests: each refresh
    // is an HGETALL too, and on a loaded machine the 300 reads took long enough for those alone
    // to pass the bound (8 in 1.36 s, bound 7).
    let app =
        crate::helpers::spawn_role(&names, queuegate::config::Role::Run, |s| s.http.concert_refresh_ms = 10_000).await;
    let opens = queuegate::clock::rfc3339(queuegate::clock::now_ms() + 600_000);
    assert_eq!(app.put_concert("c", serde_json::json!({"state": "open", "opensAt": opens})).await.status(), 200);
    let before = calls(&redis.url(), "hgetall").await;
    let started = std::time::Instant::now();
    let url = format!("{}/v1/concerts/c/fairness", app.http());
    let reads = futures_util::future::join_all((0..300).map(|_| async {
        let r = app.client.get(&url).send().await.unwrap();
        assert_eq!(r.status(), 200);
        r.json::<serde_json::Value>().await.unwrap()
    }))
    .await;
    let took = started.elapsed();
    assert!(reads.iter().all(|r| r["commitment"].as_str().is_some_and(|c| c.len() == 64)), "{:?}", reads[0]);
    let made = calls(&redis.url(), "hgetall").await - before;
    // At most one per second of reading (and a few for everything else the app does meanwhile).
    let bound = took.as_secs() + 1 + 5;
    assert!(made <= bound, "300 reads in {took:?} made {made} HGETALLs (bound {bound})");
}
