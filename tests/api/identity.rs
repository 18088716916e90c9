//! Who a fan is, attacked: forged and misused identity tokens, joining "as" someone else in each
//! identity mode, forwarded addresses from untrusted peers, and slow bodies.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ed25519_dalek::pkcs8::EncodePrivateKey;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use queuegate::config::{FanIdentityMode, Role, Secret};
use serde_json::{json, Value};

use crate::helpers::{assert_problem, create_topics, poll_until, spawn_role, Names, TestApp};

const SECRET: &str = "fan-identity-secret-0123456789-0123456789";
const ISS: &str = "https://tickets.example";
const AUD: &str = "queuegate";

fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64
}

fn claims(sub: &str) -> Value {
    json!({"sub": sub, "iss": ISS, "aud": AUD, "iat": now(), "exp": now() + 600})
}

fn hs256(claims: &Value, secret: &str) -> String {
    encode(&Header::new(Algorithm::HS256), claims, &EncodingKey::from_secret(secret.as_bytes())).unwrap()
}

/// A token with `alg: none`: a header, the claims, and no signature.
fn unsigned(claims: &Value) -> String {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    let h = URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#);
    format!("{h}.{}.", URL_SAFE_NO_PAD.encode(claims.to_string()))
}

async fn join_with(app: &TestApp, concert: &str, bearer: Option<&str>, body: Value) -> reqwest::Response {
    let mut r = app.client.post(format!("{}/v1/concerts/{concert}/queue", app.http())).json(&body);
    if let Some(t) = bearer {
        r = r.bearer_auth(t);
    }
    // A keep-alive connection the server closed just as the request went out fails without an
    // answer (hyper's IncompleteMessage); a join is idempotent, so it is sent again, as a
    // browser would.
    for _ in 0..2 {
        match r.try_clone().expect("a JSON body clones").send().await {
            Ok(answer) => return answer,
            Err(e) if e.is_request() => continue,
            Err(e) => panic!("join request: {e}"),
        }
    }
    r.send().await.unwrap()
}

async fn accepted(r: reqwest::Response) -> Value {
    assert_eq!(r.status(), 202, "join accepted");
    r.json().await.unwrap()
}

async fn spawn_mode(mode: FanIdentityMode, tweak: impl FnOnce(&mut queuegate::config::Settings)) -> TestApp {
    let names = Names::new();
    create_topics(&names, 2).await;
    let app = spawn_role(&names, Role::Run, |s| {
        s.identity.fan_identity = Some(mode);
        tweak(s)
    })
    .await;
    app.open_concert("c").await;
    app
}

fn jwt_settings(s: &mut queuegate::config::Settings) {
    s.identity.fan_jwt_secret = Some(Secret::new(SECRET));
    s.identity.fan_jwt_issuer = Some(ISS.into());
    s.identity.fan_jwt_audience = Some(AUD.into());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_jwt_mode_only_the_accounts_own_token_joins_and_one_account_holds_one_place() {
    let app = spawn_mode(FanIdentityMode::Jwt, jwt_settings).await;
    let alice = hs256(&claims("alice"), SECRET);
    let first = accepted(join_with(&app, "c", Some(&alice), json!({})).await).await;
    assert_eq!(first["userId"], "alice");
    // Another device of the same account: the same place, not a second one.
    let phone = hs256(&claims("alice"), SECRET);
    let second = accepted(join_with(&app, "c", Some(&phone), json!({"userId": "alice"})).await).await;
    assert_eq!(second["userId"], "alice");
    assert_eq!(app.status("c", "alice", second["token"].as_str().unwrap()).await.status(), 200);

    // Joining "as" alice without her token, or claiming her id with one's own token.
    let mallory = hs256(&claims("mallory"), SECRET);
    assert_problem(join_with(&app, "c", Some(&mallory), json!({"userId": "alice"})).await, 403, "alice").await;
    assert_problem(join_with(&app, "c", None, json!({"userId": "alice"})).await, 401, "identity token").await;
    let m = accepted(join_with(&app, "c", Some(&mallory), json!({})).await).await;
    assert_problem(app.status("c", "alice", m["token"].as_str().unwrap()).await, 401, "entry token").await;

    // Forgeries: unsigned, another secret, wrong audience, wrong issuer, expired, not yet valid.
    let mut wrong_aud = claims("alice");
    wrong_aud["aud"] = json!("someone-else");
    let mut wrong_iss = claims("alice");
    wrong_iss["iss"] = json!("https://evil.example");
    let mut expired = claims("alice");
    expired["exp"] = json!(now() - 3600);
    let mut early = claims("alice");
    early["nbf"] = json!(now() + 3600);
    let mut bad_sub = claims("alice");
    bad_sub["sub"] = json!("alice@example.com");
    for (token, why) in [
        (unsigned(&claims("alice")), "malformed"),
        (hs256(&claims("alice"), "another-secret-another-secret-another"), "bad signature"),
        (hs256(&wrong_aud, SECRET), "wrong audience"),
        (hs256(&wrong_iss, SECRET), "wrong issuer"),
        (hs256(&expired, SECRET), "expired"),
        (hs256(&early, SECRET), "nbf"),
        (hs256(&bad_sub, SECRET), "sub"),
        ("garbage".to_owned(), "malformed"),
    ] {
        assert_problem(join_with(&app, "c", Some(&token), json!({})).await, 401, why).await;
    }
    app.wait_for_records(3).await;
    assert_eq!(app.waiting_list("c").await, vec!["alice".to_owned(), "mallory".to_owned()], "one place per account");
}

/// An Ed25519 key as PKCS#8 DER (to sign) and as a public JWK with `kid`.
fn ed25519(seed: u8, kid: &str) -> (EncodingKey, Value) {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    let key = ed25519_dalek::SigningKey::from_bytes(&[seed; 32]);
    let der = key.to_pkcs8_der().unwrap();
    let x = URL_SAFE_NO_PAD.encode(key.verifying_key().as_bytes());
    (
        EncodingKey::from_ed_der(der.as_bytes()),
        json!({"kty": "OKP", "crv": "Ed25519", "x": x, "kid": kid, "use": "sig"}),
    )
}

fn eddsa(claims: &Value, key: &EncodingKey, kid: &str) -> String {
    let mut h = Header::new(Algorithm::EdDSA);
    h.kid = Some(kid.into());
    encode(&h, claims, key).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jwks_verifies_by_key_id_refuses_key_confusion_and_picks_up_a_rotated_key() {
    let dir = std::env::temp_dir().join(format!("qgtest-jwks-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let jwks_path = dir.join("jwks.json");
    let (k1, jwk1) = ed25519(1, "k1");
    std::fs::write(&jwks_path, json!({"keys": [jwk1]}).to_string()).unwrap();
    let path = jwks_path.display().to_string();
    let app = spawn_mode(FanIdentityMode::Jwt, |s| {
        s.identity.fan_jwt_jwks = Some(path);
        s.identity.fan_jwt_issuer = Some(ISS.into());
        s.identity.fan_jwt_audience = Some(AUD.into());
    })
    .await;
    assert_eq!(
        accepted(join_with(&app, "c", Some(&eddsa(&claims("ann"), &k1, "k1")), json!({})).await).await["userId"],
        "ann"
    );

    // A foreign key that reuses the kid; HS256 "signed" with the public key; alg none.
    let (foreign, _) = ed25519(9, "k1");
    assert_problem(
        join_with(&app, "c", Some(&eddsa(&claims("ann"), &foreign, "k1")), json!({})).await,
        401,
        "bad signature",
    )
    .await;
    let mut confused = Header::new(Algorithm::HS256);
    confused.kid = Some("k1".into());
    let public_x = jwk1["x"].as_str().unwrap();
    let forged = encode(&confused, &claims("ann"), &EncodingKey::from_secret(public_x.as_bytes())).unwrap();
    assert_problem(join_with(&app, "c", Some(&forged), json!({})).await, 401, "algorithm").await;
    assert_problem(join_with(&app, "c", Some(&unsigned(&claims("ann"))), json!({})).await, 401, "malformed").await;

    // The booking site rotates: k2 joins the set; a token signed with it works once the
    // unknown kid made the gateway read the JWKS again.
    let (k2, jwk2) = ed25519(2, "k2");
    std::fs::write(&jwks_path, json!({"keys": [jwk1, jwk2]}).to_string()).unwrap();
    let rotated = eddsa(&claims("ben"), &k2, "k2");
    assert!(
        poll_until(Duration::from_secs(10), async || join_with(&app, "c", Some(&rotated), json!({})).await.status()
            == 202)
        .await,
        "a token of the rotated key is accepted"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_anonymous_mode_the_gateway_names_the_fan_and_a_returning_fan_keeps_its_place() {
    let app = spawn_mode(FanIdentityMode::Anonymous, |_| {}).await;
    let first = accepted(join_with(&app, "c", None, json!({})).await).await;
    let (user, token) = (first["userId"].as_str().unwrap().to_owned(), first["token"].as_str().unwrap().to_owned());
    assert_eq!(user.len(), 32, "a UUID v7 without dashes: {user}");
    // Rejoining with the entry token (a reload, a second tab): the same fan.
    let again = accepted(join_with(&app, "c", Some(&token), json!({})).await).await;
    assert_eq!(again["userId"], user.as_str());
    // An empty body is a join too (still declared JSON: docs/explain-security.md, cross-site requests).
    let empty = app
        .client
        .post(format!("{}/v1/concerts/c/queue", app.http()))
        .header("content-type", "application/json")
        .send()
        .await
        .unwrap();
    let other = accepted(empty).await;
    assert_ne!(other["userId"], user.as_str(), "a new fan gets a new id");
    // Nobody picks an id, and one fan's token reads no one else's status.
    assert_problem(join_with(&app, "c", None, json!({"userId": user})).await, 400, "anonymous mode").await;
    assert_problem(app.status("c", &user, other["token"].as_str().unwrap()).await, 401, "entry token").await;
    app.wait_for_records(3).await;
    assert_eq!(app.waiting_list("c").await.len(), 2, "the rejoin did not take a second place");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_trusted_header_mode_only_a_trusted_proxy_names_the_fan() {
    let trusted = spawn_mode(FanIdentityMode::TrustedHeader, |s| {
        s.identity.fan_id_header = Some("x-fan-id".into());
        s.identity.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
    })
    .await;
    let r = trusted
        .client
        .post(format!("{}/v1/concerts/c/queue", trusted.http()))
        .header("x-fan-id", "carol")
        .header("content-type", "application/json")
        .send();
    assert_eq!(accepted(r.await.unwrap()).await["userId"], "carol");
    let r = trusted
        .client
        .post(format!("{}/v1/concerts/c/queue", trusted.http()))
        .header("x-fan-id", "carol")
        .json(&json!({"userId": "dave"}))
        .send();
    assert_problem(r.await.unwrap(), 403, "dave").await;
    // Two fan-id headers: neither is believed (the first used to be taken: a victim's place).
    for pair in [["victim", "me"], ["carol", "carol"]] {
        let mut headers = reqwest::header::HeaderMap::new();
        for v in pair {
            headers.append("x-fan-id", v.parse().unwrap());
        }
        headers.insert("content-type", "application/json".parse().unwrap());
        let r = trusted.client.post(format!("{}/v1/concerts/c/queue", trusted.http())).headers(headers).send();
        assert_problem(r.await.unwrap(), 401, "more than once").await;
    }

    // The same header from a peer that is not a trusted proxy.
    let untrusted = spawn_mode(FanIdentityMode::TrustedHeader, |s| {
        s.identity.fan_id_header = Some("x-fan-id".into());
        s.identity.trusted_proxies = vec!["10.0.0.0/8".parse().unwrap()];
    })
    .await;
    let r = untrusted
        .client
        .post(format!("{}/v1/concerts/c/queue", untrusted.http()))
        .header("x-fan-id", "carol")
        .header("content-type", "application/json")
        .send();
    assert_problem(r.await.unwrap(), 401, "trusted proxies").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_addresses_separate_clients_only_behind_a_trusted_proxy() {
    let join_from = async |app: &TestApp, xff: &str, n: u32| -> Vec<u16> {
        let mut statuses = Vec::new();
        for i in 0..n {
            let r = app
                .client
                .post(format!("{}/v1/concerts/c/queue", app.http()))
                .header("x-forwarded-for", xff)
                .json(&json!({"userId": format!("f{}-{i}", xff.replace(['.', ',', ' '], ""))}))
                .send()
                .await
                .unwrap();
            statuses.push(r.status().as_u16());
        }
        statuses
    };
    // Behind a trusted proxy (loopback): two clients, two budgets of two joins a second.
    let proxied = spawn_mode(FanIdentityMode::Body, |s| {
        s.http.rate_limit_per_ip = 2;
        s.identity.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
    })
    .await;
    assert!(join_from(&proxied, "198.51.100.1", 3).await.contains(&429), "one client is limited");
    assert_eq!(join_from(&proxied, "spoofed, 198.51.100.2", 2).await, vec![202, 202], "another client is not");

    // Without trusted proxies the header is the client's own claim and is ignored.
    let direct = spawn_mode(FanIdentityMode::Body, |s| s.http.rate_limit_per_ip = 2).await;
    let a = join_from(&direct, "198.51.100.1", 2).await;
    let b = join_from(&direct, "198.51.100.2", 2).await;
    assert!([a, b].concat().contains(&429), "made-up addresses share the peer's budget");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_bodies_are_cut_off_while_a_normal_join_goes_through() {
    use tokio::io::AsyncWriteExt;
    let app = spawn_mode(FanIdentityMode::Body, |_| {}).await;
    let addr = app.http().trim_start_matches("http://").to_owned();
    let mut slow = Vec::new();
    for _ in 0..1000 {
        let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
        s.write_all(b"POST /v1/concerts/c/queue HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 40\r\n\r\n{\"userId\"")
            .await
            .unwrap();
        slow.push(s);
    }
    let r = tokio::time::timeout(Duration::from_secs(10), join_with(&app, "c", None, json!({"userId": "punctual"})))
        .await
        .expect("a normal join is answered while 1,000 bodies trickle");
    assert_eq!(r.status(), 202);
    // Each trickling client gets 408 once the body read timeout passes, and is closed.
    let mut timed_out = 0;
    for mut s in slow {
        use tokio::io::AsyncReadExt;
        let mut buf = vec![0u8; 512];
        if let Ok(Ok(n)) = tokio::time::timeout(Duration::from_secs(15), s.read(&mut buf)).await {
            if String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 408") {
                timed_out += 1;
            }
        }
    }
    assert_eq!(timed_out, 1000, "every slow body got 408");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_client_inventing_ten_thousand_ids_gets_a_few_places_per_second_at_most() {
    use futures_util::StreamExt;
    let app = spawn_mode(FanIdentityMode::Body, |s| s.http.rate_limit_per_ip = 20).await;
    let started = std::time::Instant::now();
    let statuses: Vec<u16> = futures_util::stream::iter(0..10_000)
        .map(|i| {
            let r = join_with(&app, "c", None, json!({"userId": format!("invented-{i}")}));
            async move { r.await.status().as_u16() }
        })
        .buffer_unordered(64)
        .collect()
        .await;
    let secs = started.elapsed().as_secs_f64();
    let accepted = statuses.iter().filter(|s| **s == 202).count();
    let limited = statuses.iter().filter(|s| **s == 429).count();
    assert_eq!(accepted + limited, 10_000, "only 202 or 429: {:?}", statuses.iter().find(|s| ![202, 429].contains(*s)));
    // A burst of 20, then 20 a second.
    assert!(accepted as f64 <= 20.0 + 20.0 * secs + 1.0, "{accepted} accepted in {secs:.1} s");
    assert!(accepted >= 20, "the budget itself is granted: {accepted}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_fan_polling_or_rejoining_past_its_budget_gets_429_while_another_fan_does_not() {
    let app = spawn_mode(FanIdentityMode::Body, |s| {
        s.http.fan_status_per_second = 2;
        s.http.fan_joins_per_second = 2;
    })
    .await;
    let a = accepted(join_with(&app, "c", None, json!({"userId": "eager"})).await).await;
    let b = accepted(join_with(&app, "c", None, json!({"userId": "calm"})).await).await;
    // Eight at once: the budget (2 a second) lets a few through and refuses the rest, however
    // slow the broker makes each join (on a three-broker cluster a join can take 100s of ms).
    let answers = futures_util::future::join_all((0..8).map(|_| async {
        let r = join_with(&app, "c", None, json!({"userId": "eager"})).await;
        (r.status().as_u16(), r.text().await.unwrap_or_default())
    }))
    .await;
    let joins: Vec<u16> = answers.iter().map(|(s, _)| *s).collect();
    assert!(joins.contains(&429) && joins.iter().all(|s| [202, 429].contains(s)), "{joins:?}");
    assert!(joins.iter().filter(|s| **s == 202).count() <= 3, "at most the budget got through: {joins:?}");
    let refused = answers.iter().find(|(s, _)| *s == 429).map(|(_, body)| body.as_str()).unwrap_or_default();
    assert!(refused.contains("too many"), "the refusal says why: {refused}");
    assert_eq!(
        join_with(&app, "c", None, json!({"userId": "calm"})).await.status(),
        202,
        "another fan's budget is its own"
    );
    let token = a["token"].as_str().unwrap();
    let reads = futures_util::future::join_all(
        (0..8).map(|_| async { app.status("c", "eager", token).await.status().as_u16() }),
    )
    .await;
    assert!(reads.contains(&200) && reads.contains(&429), "{reads:?}");
    assert!(reads.iter().all(|s| [200, 429].contains(s)), "{reads:?}");
    // Without the fan's token nobody can spend the fan's budget: a forged read is 401, not 429.
    assert_problem(app.status("c", "calm", token).await, 401, "entry token").await;
    assert_eq!(app.status("c", "calm", b["token"].as_str().unwrap()).await.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_concert_with_max_waiting_turns_joins_away_as_queue_full_once_that_many_wait() {
    let app = spawn_mode(FanIdentityMode::Body, |_| {}).await;
    assert_eq!(app.put_concert("c", json!({"state": "open", "maxWaiting": 3})).await.status(), 200);
    for i in 0..3 {
        accepted(join_with(&app, "c", None, json!({"userId": format!("early-{i}")})).await).await;
    }
    app.wait_for_records(3).await;
    // Within a refresh interval (200 ms in tests) the gateway sees three waiting.
    let mut last = 0;
    assert!(
        poll_until(Duration::from_secs(10), async || {
            let r = join_with(&app, "c", None, json!({"userId": "late"})).await;
            last = r.status().as_u16();
            last == 409
        })
        .await,
        "last answer {last}"
    );
    assert_problem(join_with(&app, "c", None, json!({"userId": "later"})).await, 409, "queue is full").await;
    let waiting = app.waiting_list("c").await;
    assert!(waiting.len() <= 4, "at most one join slipped in before the refresh: {waiting:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_concert_asking_for_proof_of_work_takes_each_solution_once_and_a_returning_fan_needs_none() {
    use queuegate::gateway::challenge::solve;
    let app = spawn_mode(FanIdentityMode::Anonymous, |_| {}).await;
    assert_eq!(app.put_concert("c", json!({"state": "open", "powDifficulty": 10})).await.status(), 200);
    assert_problem(join_with(&app, "c", None, json!({})).await, 403, "proof of work").await;

    let challenge = async || -> Value {
        app.client.get(format!("{}/v1/concerts/c/challenge", app.http())).send().await.unwrap().json().await.unwrap()
    };
    let ch = challenge().await;
    assert_eq!(ch["difficulty"], 10);
    let text = ch["challenge"].as_str().unwrap();
    let solution = solve(text, 10);
    let pow = json!({"pow": {"challenge": text, "solution": solution}});
    let fan = accepted(join_with(&app, "c", None, pow.clone()).await).await;
    // The same solution again (a bot sharing one solved challenge): refused.
    assert_problem(join_with(&app, "c", None, pow).await, 403, "used already").await;
    // A wrong solution, and a challenge of another concert.
    let fresh = challenge().await;
    // One in 1,024 strings solves a 10-bit challenge by chance: take one that provably does not.
    let fresh_text = fresh["challenge"].as_str().unwrap();
    let not_it =
        (0..).map(|i| format!("not-it-{i}")).find(|s| !queuegate::gateway::challenge::solves(fresh_text, s, 10));
    let wrong = json!({"pow": {"challenge": fresh_text, "solution": not_it.unwrap()}});
    assert_problem(join_with(&app, "c", None, wrong).await, 403, "does not solve").await;
    assert_eq!(app.put_concert("d", json!({"state": "open", "powDifficulty": 10})).await.status(), 200);
    let other =
        json!({"pow": {"challenge": fresh["challenge"], "solution": solve(fresh["challenge"].as_str().unwrap(), 10)}});
    assert_problem(join_with(&app, "d", None, other).await, 403, "another concert").await;
    // The fan who solved it once rejoins with its entry token: no new work, the same place.
    let again = accepted(join_with(&app, "c", Some(fan["token"].as_str().unwrap()), json!({})).await).await;
    assert_eq!(again["userId"], fan["userId"]);
}
