//! Presale lanes: codes bound once across gateways, claim lanes in jwt mode, exact positions
//! within each lane, and admission split between lanes by share (an empty lane lends its share).

use std::time::Duration;

use queuegate::config::{FanIdentityMode, Role, Secret};
use queuegate::ids::{ConcertId, Lane, UserId};
use serde_json::{json, Value};

use crate::helpers::{assert_problem, create_topics, poll_until, spawn_role, Names, TestApp};

async fn join_in(app: &TestApp, concert: &str, body: Value) -> reqwest::Response {
    send(app.client.post(format!("{}/v1/concerts/{concert}/queue", app.http())).json(&body)).await
}

/// Sends a join; a keep-alive connection the server closed just as the request went out fails
/// without an answer (hyper's IncompleteMessage), and a join is idempotent, so it is sent again.
async fn send(r: reqwest::RequestBuilder) -> reqwest::Response {
    for _ in 0..2 {
        match r.try_clone().expect("a JSON body clones").send().await {
            Ok(answer) => return answer,
            Err(e) if e.is_request() => continue,
            Err(e) => panic!("join request: {e}"),
        }
    }
    r.send().await.expect("join")
}

async fn upload(app: &TestApp, concert: &str, lane: &str, codes: &[String]) -> reqwest::Response {
    app.client
        .post(format!("{}/admin/v1/concerts/{concert}/lanes/{lane}/codes", app.admin))
        .bearer_auth(crate::helpers::ADMIN_TOKEN)
        .json(&json!({ "codes": codes }))
        .send()
        .await
        .expect("codes upload")
}

fn presale() -> Value {
    json!({"state": "open", "lanes": [
        {"name": "fanclub", "share": 70, "access": "code"},
        {"name": "general", "share": 30}
    ]})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_code_binds_to_one_fan_across_two_racing_gateways_and_only_its_owner_rejoins() {
    let names = Names::new();
    create_topics(&names, 3).await;
    let a = spawn_role(&names, Role::Run, |_| {}).await;
    let b = spawn_role(&names, Role::Gateway, |_| {}).await;
    assert_eq!(a.put_concert("p", presale()).await.status(), 200);
    let codes: Vec<String> = (0..50).map(|i| format!("FC-{i:04}-x7Qp")).collect();
    let up: Value = upload(&a, "p", "fanclub", &codes).await.json().await.unwrap();
    assert_eq!((up["added"].as_u64(), up["total"].as_u64(), up["used"].as_u64()), (Some(50), Some(50), Some(0)));
    // The second gateway learns the lanes at its next concert refresh.
    let knows = poll_until(Duration::from_secs(10), async || {
        join_in(&b, "p", json!({"userId": "probe", "lane": "general"})).await.status() == 202
    })
    .await;
    assert!(knows, "gateway b knows the concert");

    // Forty fans, twenty on each gateway, all at once with the same code: one gets it.
    let racers = (0..40).map(|i| {
        let gw = if i % 2 == 0 { &a } else { &b };
        join_in(gw, "p", json!({"userId": format!("racer{i}"), "lane": "fanclub", "code": codes[0]}))
    });
    let answers = futures_util::future::join_all(racers).await;
    let mut winners = Vec::new();
    for (i, r) in answers.into_iter().enumerate() {
        match r.status().as_u16() {
            202 => winners.push(i),
            403 => {
                let p: Value = r.json().await.unwrap();
                assert_eq!(p["type"], "urn:queuegate:problem:code-refused", "{p}");
            }
            s => panic!("racer{i}: {s}"),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one fan binds the code: {winners:?}");
    let owner = format!("racer{}", winners[0]);

    // The owner may use it again (on either gateway); nobody else.
    for gw in [&a, &b] {
        assert_eq!(join_in(gw, "p", json!({"userId": owner, "lane": "fanclub", "code": codes[0]})).await.status(), 202);
    }
    // Another fan's code and a made-up one get the same answer, word for word: a guess learns
    // nothing (before: code-used and code-unknown told a live code from a dead one).
    let used = assert_problem(
        join_in(&b, "p", json!({"userId": "late", "lane": "fanclub", "code": codes[0]})).await,
        403,
        "not one of the lane's codes, or another fan's",
    )
    .await;
    assert_eq!(used["type"], "urn:queuegate:problem:code-refused");
    let unknown = join_in(&a, "p", json!({"userId": "late", "lane": "fanclub", "code": "NOPE-0000"})).await;
    let unknown = assert_problem(unknown, 403, "").await;
    assert_eq!(used, unknown, "unknown and used answer the same");
    let p =
        assert_problem(join_in(&a, "p", json!({"userId": "m", "lane": "fanclub"})).await, 403, "asks for a code").await;
    assert_eq!(p["type"], "urn:queuegate:problem:code-required");
    assert_problem(join_in(&a, "p", json!({"userId": "m", "lane": "vip"})).await, 404, "has no lane vip").await;
    assert_problem(
        join_in(&a, "p", json!({"userId": "m", "lane": "fanclub", "code": "two words"})).await,
        400,
        "code must be",
    )
    .await;

    // Once placed, the owner's rejoin needs no code; a general fan's join naming the lane is a
    // rejoin of its general place and spends no code.
    let lane_of = async |user: &str| -> Option<Value> {
        let r = a.admin_get(&format!("/admin/v1/concerts/p/queue/{user}")).await;
        (r.status() == 200).then_some(r.json::<Value>().await.unwrap())
    };
    let placed =
        poll_until(Duration::from_secs(30), async || lane_of(&owner).await.is_some_and(|v| v["lane"] == "fanclub"))
            .await;
    assert!(placed, "the owner is placed in the fan-club lane");
    assert_eq!(join_in(&a, "p", json!({"userId": owner, "lane": "fanclub"})).await.status(), 202);
    assert!(poll_until(Duration::from_secs(30), async || lane_of("probe").await.is_some()).await);
    assert_eq!(join_in(&a, "p", json!({"userId": "probe", "lane": "fanclub", "code": codes[1]})).await.status(), 202);
    let again: Value = upload(&a, "p", "fanclub", &codes[..2]).await.json().await.unwrap();
    assert_eq!((again["added"].as_u64(), again["used"].as_u64()), (Some(0), Some(1)), "{again}: codes[1] unspent");
    let probe = a.admin_json("/admin/v1/concerts/p/queue/probe").await;
    assert_eq!(probe["lane"], "general", "one place per fan per concert: {probe}");

    // The counts, per lane; the listing of each lane.
    let c = a.admin_json("/admin/v1/concerts/p").await;
    assert_eq!(
        c["laneCounts"][0],
        json!({"name": "fanclub", "waiting": 1, "admitted": 0, "codes": 50, "codesUsed": 1})
    );
    assert_eq!(c["laneCounts"][1], json!({"name": "general", "waiting": 1, "admitted": 0}));
    let l = a.admin_json("/admin/v1/concerts/p/queue?lane=fanclub").await;
    assert_eq!((l["lane"].as_str(), l["total"].as_u64()), (Some("fanclub"), Some(1)));
    assert_eq!(l["entries"][0]["userId"], owner.as_str());
    // Codes go only to a code lane; a lane with fans cannot be taken away.
    assert_eq!(upload(&a, "p", "general", &codes[..1]).await.status(), 409);
    assert_eq!(upload(&a, "p", "nope", &codes[..1]).await.status(), 404);
    let r = a.put_concert("p", json!({"state": "open"})).await;
    assert_problem(r, 409, "still holds 1 fans").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn positions_are_exact_within_each_lane_and_the_status_names_it() {
    let names = Names::new();
    create_topics(&names, 3).await;
    let app = spawn_role(&names, Role::Run, |_| {}).await;
    let body = json!({"state": "open", "lanes": [{"name": "fanclub", "share": 3}, {"name": "general", "share": 1}]});
    assert_eq!(app.put_concert("q", body).await.status(), 200);
    let mut tokens = Vec::new();
    for i in 0..20 {
        let lane = if i % 4 == 0 { "fanclub" } else { "general" };
        let r = join_in(&app, "q", json!({"userId": format!("f{i:02}"), "lane": lane})).await;
        assert_eq!(r.status(), 202);
        tokens.push(r.json::<Value>().await.unwrap()["token"].as_str().unwrap().to_owned());
        // One at a time, so each lane's order is the join order.
        assert!(
            poll_until(Duration::from_secs(30), async || app.admin_json("/admin/v1/concerts/q").await["waiting"]
                == i + 1)
            .await
        );
    }
    // What each fan's status should say: the gateways answer from their views, which catch up
    // within a refresh, so a check is repeated until it holds (or 10 s pass).
    let mismatches = async |admitted_fc: usize, admitted_gen: usize| -> Vec<String> {
        let (mut fc, mut gen, mut wrong) = (0, 0, Vec::new());
        for (i, token) in tokens.iter().enumerate() {
            let s: Value = app.status("q", &format!("f{i:02}"), token).await.json().await.unwrap();
            let (lane, n, admitted) =
                if i % 4 == 0 { ("fanclub", &mut fc, admitted_fc) } else { ("general", &mut gen, admitted_gen) };
            *n += 1;
            let len = if lane == "fanclub" { 5 - admitted_fc } else { 15 - admitted_gen };
            let ok = if *n <= admitted {
                s["status"] == "admitted"
            } else {
                s["lane"] == lane
                    && s["position"].as_u64() == Some((*n - admitted) as u64)
                    && s["queueLength"].as_u64() == Some(len as u64)
            };
            if !ok {
                wrong.push(format!("f{i:02}: {s}"));
            }
        }
        wrong
    };
    let check = async |admitted_fc: usize, admitted_gen: usize| {
        let mut wrong = Vec::new();
        let held = poll_until(Duration::from_secs(10), async || {
            wrong = mismatches(admitted_fc, admitted_gen).await;
            wrong.is_empty()
        })
        .await;
        assert!(held, "{wrong:#?}");
    };
    check(0, 0).await;
    // Eight admissions at 3:1 take six from the fan club and two from general.
    let a: Value = app.admit("q", 8).await.json().await.unwrap();
    let got: Vec<&str> = a["admitted"].as_array().unwrap().iter().map(|f| f["userId"].as_str().unwrap()).collect();
    // The fan club has only five: the sixth goes to general, which has fans.
    assert_eq!(got.iter().filter(|u| ["f00", "f04", "f08", "f12", "f16"].contains(u)).count(), 5, "{got:?}");
    check(5, 3).await;
    // The ETA is the lane's: general let 3 through (0.1/s observed) where the concert let 8 (0.27/s),
    // so the second in general waits about 20 s (the concert's rate would say under 10).
    let s: Value = app.status("q", "f06", &tokens[6]).await.json().await.unwrap();
    assert!(s["position"] == 2 && s["etaSeconds"].as_u64().is_some_and(|e| e >= 20), "{s}");
    // Removing a general fan moves those behind it up, in its lane only.
    assert_eq!(app.admin_delete("/admin/v1/concerts/q/queue/f05").await.status(), 204);
    let mut s = Value::Null;
    let moved = poll_until(Duration::from_secs(10), async || {
        s = app.status("q", "f06", &tokens[6]).await.json().await.unwrap();
        s["position"] == 1
    })
    .await;
    assert!(moved && s["lane"] == "general", "{s}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seventy_thirty_holds_within_one_fan_over_rounds_of_every_size_and_an_empty_lane_lends_its_share() {
    let names = Names::new();
    create_topics(&names, 1).await;
    let app = spawn_role(&names, Role::Run, |_| {}).await;
    let body = json!({"state": "open", "lanes": [{"name": "fanclub", "share": 70}, {"name": "general", "share": 30}]});
    assert_eq!(app.put_concert("s", body).await.status(), 200);
    // Fans placed straight through the store (the consumer's script calls), so the test is about
    // admission: 4,000 in the fan club, 2,000 in general.
    let c = ConcertId::parse("s").unwrap();
    for (lane, prefix, n) in [(Lane::parse("fanclub").unwrap(), "c", 4000), (Lane::general(), "g", 2000)] {
        let users: Vec<UserId> = (0..n).map(|i| UserId::parse(format!("{prefix}{i}")).unwrap()).collect();
        let joins: Vec<(&UserId, i64)> = users.iter().map(|u| (u, 1)).collect();
        app.store.apply_in(&c, &lane, &joins).await.unwrap();
        // Placed a bounded slice a call, as the admitter does.
        while app.store.release(&c, &lane, 2).await.unwrap().staged > 0 {}
    }
    let (mut fanclub, mut general) = (0i64, 0i64);
    for k in 1..=100u32 {
        let a: Value = app.admit("s", k).await.json().await.unwrap();
        for f in a["admitted"].as_array().unwrap() {
            if f["userId"].as_str().unwrap().starts_with('c') {
                fanclub += 1;
            } else {
                general += 1;
            }
        }
        let total = fanclub + general;
        assert_eq!(total, i64::from(k * (k + 1) / 2), "round {k} admitted its count");
        // Within one fan of 70% after every round.
        assert!((fanclub * 10 - total * 7).abs() < 10, "after round {k}: {fanclub} fan club of {total}");
    }
    assert_eq!((fanclub, general), (3535, 1515));
    // The fan club has 465 left: 900 more take them all, and general lends... receives the rest.
    let a: Value = app.admit("s", 900).await.json().await.unwrap();
    assert_eq!(a["admitted"].as_array().unwrap().len(), 900);
    let counts = app.admin_json("/admin/v1/concerts/s").await;
    assert_eq!(counts["laneCounts"][0], json!({"name": "fanclub", "waiting": 0, "admitted": 4000}));
    assert_eq!(counts["laneCounts"][1], json!({"name": "general", "waiting": 50, "admitted": 1950}));
    assert_eq!(counts["admitted"].as_u64(), Some(5950));
}

const SECRET: &str = "fan-identity-secret-0123456789-0123456789";

fn token(sub: &str, extra: Value) -> String {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let mut claims = json!({"sub": sub, "iss": "https://tickets.example", "aud": "queuegate", "exp": now + 600});
    claims.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    let key = jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes());
    jsonwebtoken::encode(&jsonwebtoken::Header::default(), &claims, &key).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_lane_takes_the_fans_whose_identity_token_carries_the_claim() {
    let names = Names::new();
    create_topics(&names, 2).await;
    let app = spawn_role(&names, Role::Run, |s| {
        s.identity.fan_identity = Some(FanIdentityMode::Jwt);
        s.identity.fan_jwt_secret = Some(Secret::new(SECRET));
        s.identity.fan_jwt_issuer = Some("https://tickets.example".into());
        s.identity.fan_jwt_audience = Some("queuegate".into());
    })
    .await;
    let body = json!({"state": "open", "lanes": [
        {"name": "members", "share": 2, "access": "claim:tier=gold"}, {"name": "general", "share": 1}]});
    assert_eq!(app.put_concert("m", body).await.status(), 200);
    let join = async |t: &str, lane: &str| {
        send(app.client.post(format!("{}/v1/concerts/m/queue", app.http())).bearer_auth(t).json(&json!({"lane": lane})))
            .await
    };
    assert_eq!(join(&token("gold", json!({"tier": "gold"})), "members").await.status(), 202);
    assert_eq!(join(&token("listed", json!({"tier": ["silver", "gold"]})), "members").await.status(), 202);
    let p =
        assert_problem(join(&token("silver", json!({"tier": "silver"})), "members").await, 403, "tier = gold").await;
    assert_eq!(p["type"], "urn:queuegate:problem:claim-missing");
    let p = assert_problem(join(&token("none", json!({})), "members").await, 403, "tier = gold").await;
    assert_eq!(p["type"], "urn:queuegate:problem:claim-missing");
    // A forged claim is a forged token: 401, whatever it claims.
    let forged = {
        let t = token("forger", json!({"tier": "silver"}));
        let mut parts: Vec<String> = t.split('.').map(str::to_owned).collect();
        use base64::Engine;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let mut claims: Value = serde_json::from_slice(&b64.decode(&parts[1]).unwrap()).unwrap();
        claims["tier"] = "gold".into();
        parts[1] = b64.encode(claims.to_string());
        parts.join(".")
    };
    assert_eq!(join(&forged, "members").await.status(), 401);
    assert_eq!(join(&token("silver", json!({"tier": "silver"})), "general").await.status(), 202);
    let placed = poll_until(Duration::from_secs(30), async || {
        app.admin_json("/admin/v1/concerts/m/queue?lane=members").await["total"] == 2
    })
    .await;
    assert!(placed, "both gold fans wait in the members lane");
    let placed = poll_until(Duration::from_secs(30), async || {
        let r = app.admin_get("/admin/v1/concerts/m/queue/silver").await;
        r.status() == 200 && r.json::<Value>().await.unwrap()["lane"] == "general"
    })
    .await;
    assert!(placed, "the silver fan waits in general");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fair_start_shuffles_each_lanes_prequeue_with_its_own_published_seed() {
    let names = Names::new();
    create_topics(&names, 3).await;
    let app = spawn_role(&names, Role::Run, |s| {
        s.kafka.kafka_delivery_timeout_ms = 2_000;
        s.admission.clock_skew_ms = 100;
    })
    .await;
    let opens_at = queuegate::clock::now_ms() + 4_000;
    let body = json!({"state": "open", "opensAt": queuegate::clock::rfc3339(opens_at), "lanes": [
        {"name": "fanclub", "share": 1}, {"name": "general", "share": 1}]});
    assert_eq!(app.put_concert("f", body).await.status(), 200);
    let fairness = async |lane: &str| -> Value {
        let r = app.client.get(format!("{}/v1/concerts/f/fairness?lane={lane}", app.http())).send().await.unwrap();
        r.json().await.unwrap()
    };
    let (fc, gen) = (fairness("fanclub").await, fairness("general").await);
    assert_ne!(fc["commitment"], gen["commitment"], "each lane commits to its own seed");
    assert_eq!(fc["lane"], "fanclub");
    for i in 0..20 {
        let lane = if i % 2 == 0 { "fanclub" } else { "general" };
        assert_eq!(join_in(&app, "f", json!({"userId": format!("e{i:02}"), "lane": lane})).await.status(), 202);
    }
    let mut after = (Value::Null, Value::Null);
    let cut = poll_until(Duration::from_secs(30), async || {
        after = (fairness("fanclub").await, fairness("general").await);
        after.0.get("seed").is_some() && after.1.get("seed").is_some()
    })
    .await;
    assert!(cut, "both lanes are cut: {after:?}");
    for (lane, doc, first) in [("fanclub", &after.0, 0), ("general", &after.1, 1)] {
        assert_eq!(&doc["commitment"], if lane == "fanclub" { &fc["commitment"] } else { &gen["commitment"] });
        assert_eq!(doc["prequeued"], 10, "{doc}");
        let early: Vec<String> = (first..20).step_by(2).map(|i| format!("e{i:02}")).collect();
        let listing = app.admin_json(&format!("/admin/v1/concerts/f/queue?lane={lane}")).await;
        let order: Vec<String> =
            listing["entries"].as_array().unwrap().iter().map(|e| e["userId"].as_str().unwrap().to_owned()).collect();
        assert_eq!(order, queuegate::fairness::order(doc["seed"].as_str().unwrap(), &early).unwrap(), "{lane}");
    }
    assert_eq!(
        app.client.get(format!("{}/v1/concerts/f/fairness?lane=vip", app.http())).send().await.unwrap().status(),
        404
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_code_too_easy_to_guess_is_refused_at_upload_naming_the_rule() {
    let names = Names::new();
    create_topics(&names, 1).await;
    let app = spawn_role(&names, Role::Run, |_| {}).await;
    assert_eq!(app.put_concert("w", presale()).await.status(), 200);
    // Nine characters; ten lower-case letters (47 bits); fifteen digits (49.8 bits). Before: all taken.
    for weak in ["7K3M9QX2P", "abcdefghjk", "012345678901234"] {
        let codes = vec!["7K3M9QX2PA".to_owned(), weak.to_owned()];
        let p = assert_problem(upload(&app, "w", "fanclub", &codes).await, 400, "codes[1] is too easy to guess").await;
        let detail = p["detail"].as_str().unwrap();
        assert!(detail.contains("at least 10 characters") && detail.contains("50 bits"), "{detail}");
    }
    let c = app.admin_json("/admin/v1/concerts/w").await;
    assert_eq!(c["laneCounts"][0]["codes"], 0, "a refused upload adds nothing: {c}");
    // Ten of a 32-symbol alphabet (Crockford's base 32), eleven lower-case letters, sixteen digits.
    let strong: Vec<String> = ["7K3M9QX2PA", "abcdefghjkm", "0123456789012345"].map(String::from).to_vec();
    let up: Value = upload(&app, "w", "fanclub", &strong).await.json().await.unwrap();
    assert_eq!(up["added"], 3, "{up}");
}

/// A join with a code from client address `from` (behind the trusted proxy 127.0.0.1).
async fn code_join(app: &TestApp, from: &str, user: &str, code: &str) -> reqwest::Response {
    send(
        app.client
            .post(format!("{}/v1/concerts/b/queue", app.http()))
            .header("x-forwarded-for", from)
            .json(&json!({"userId": user, "lane": "fanclub", "code": code})),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn wrong_codes_spend_budgets_per_address_and_per_lane_that_two_gateways_share() {
    let names = Names::new();
    create_topics(&names, 1).await;
    let tweak = |s: &mut queuegate::config::Settings| {
        s.http.code_failures_per_client = 10;
        s.http.code_failures_per_lane = 25;
        s.http.code_failure_window_seconds = 300;
        s.identity.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
    };
    let a = spawn_role(&names, Role::Run, tweak).await;
    let b = spawn_role(&names, Role::Gateway, tweak).await;
    assert_eq!(a.put_concert("b", presale()).await.status(), 200);
    let codes: Vec<String> = (0..4).map(|i| format!("GOOD-{i:04}-x7Qp")).collect();
    assert_eq!(upload(&a, "b", "fanclub", &codes).await.status(), 200);
    let knows = poll_until(Duration::from_secs(10), async || {
        join_in(&b, "b", json!({"userId": "probe", "lane": "general"})).await.status() == 202
    })
    .await;
    assert!(knows, "gateway b knows the concert");

    // 200 guesses from one address, every other one through each gateway: the budget is one,
    // in Redis, so ten are judged and the rest answered 429 (before: 200 judged).
    let (mut refused, mut limited) = (0, 0);
    for i in 0..200 {
        let gw = if i % 2 == 0 { &a } else { &b };
        let r = code_join(gw, "203.0.113.1", &format!("g{i}"), &format!("GUESS-{i:05}-zz")).await;
        match r.status().as_u16() {
            403 => refused += 1,
            429 => {
                let wait: u64 = r.headers()["retry-after"].to_str().unwrap().parse().unwrap();
                assert!((1..=300).contains(&wait), "Retry-After {wait}: within the window");
                let p = assert_problem(r, 429, "too many wrong codes").await;
                assert_eq!(p["type"], "urn:queuegate:problem:rate-limited");
                limited += 1;
            }
            s => panic!("guess {i}: {s}"),
        }
    }
    assert_eq!((refused, limited), (10, 190), "one budget of 10 for the address across both gateways");
    // Spent is spent, even for a right code; another address has its own budget.
    assert_eq!(code_join(&b, "203.0.113.1", "right", &codes[0]).await.status(), 429);
    assert_eq!(code_join(&b, "203.0.113.2", "right", &codes[0]).await.status(), 202);

    // The lane's budget (25) counts every address: 10 more from a second, 5 from a third, then
    // the lane answers 429 to anyone's code, right ones too; its open lane is not affected.
    for (from, n) in [("203.0.113.3", 10), ("203.0.113.4", 5)] {
        for i in 0..n {
            let user = format!("h{}-{i}", from.replace('.', "_"));
            let r = code_join(&a, from, &user, &format!("GUESS-{i:05}-yy")).await;
            assert_eq!(r.status(), 403, "{from} guess {i}");
        }
    }
    let r = code_join(&a, "203.0.113.4", "h-last", "GUESS-99999-yy").await;
    assert_problem(r, 429, "for this lane").await;
    assert_eq!(code_join(&b, "203.0.113.5", "fresh", &codes[1]).await.status(), 429, "the lane's budget is spent");
    assert_eq!(join_in(&b, "b", json!({"userId": "fresh", "lane": "general"})).await.status(), 202);

    // Bounded: one counter per address and one per lane, each expiring with its window.
    let client = format!("{}:{{b}}:codefail:203.0.113.1", names.prefix);
    let lane = format!("{}:{{b}}:codefail@fanclub", names.prefix);
    for key in [client, lane] {
        let ttl: i64 = names.redis(redis::cmd("PTTL").arg(&key)).await;
        assert!(ttl > 0 && ttl <= 300_000, "{key}: PTTL {ttl}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_code_stored_unkeyed_by_an_earlier_release_still_joins_and_moves_to_its_keyed_hash() {
    let names = Names::new();
    create_topics(&names, 1).await;
    let app = spawn_role(&names, Role::Run, |_| {}).await;
    assert_eq!(app.put_concert("l", presale()).await.status(), 200);
    // How a release before keyed hashes stored two codes: unkeyed SHA-256, one bound already.
    let key = names.lane_key("l", "fanclub", queuegate::store::keys::Part::Codes);
    let (old, bound) = ("OLD-0001-x7Qp", "OLD-0002-x7Qp");
    let (old_hash, bound_hash) = (queuegate::store::code_hash(old), queuegate::store::code_hash(bound));
    let _: () = names.redis(redis::cmd("HSET").arg(&key).arg(&old_hash).arg("").arg(&bound_hash).arg("earlier")).await;
    // Uploading them again adds nothing and frees nobody.
    let up: Value = upload(&app, "l", "fanclub", &[old.to_owned(), bound.to_owned()]).await.json().await.unwrap();
    assert_eq!(up["added"], 0, "{up}");
    assert_eq!(join_in(&app, "l", json!({"userId": "other", "lane": "fanclub", "code": bound})).await.status(), 403);
    assert_eq!(join_in(&app, "l", json!({"userId": "newcomer", "lane": "fanclub", "code": old})).await.status(), 202);
    assert_eq!(join_in(&app, "l", json!({"userId": "earlier", "lane": "fanclub", "code": bound})).await.status(), 202);
    // Both moved to their keyed hashes, bindings and all: nothing unkeyed is left.
    let fields: Vec<String> = names.redis(redis::cmd("HKEYS").arg(&key)).await;
    assert_eq!(fields.len(), 2, "{fields:?}");
    assert!(!fields.contains(&old_hash) && !fields.contains(&bound_hash), "{fields:?}");
    let owners: Vec<String> = names.redis(redis::cmd("HVALS").arg(&key)).await;
    assert!(owners.contains(&"newcomer".to_owned()) && owners.contains(&"earlier".to_owned()), "{owners:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_code_whose_join_kafka_did_not_take_is_not_spent_and_the_same_code_joins_after() {
    use crate::common::private_kafka::PrivateKafka;
    let kafka = PrivateKafka::start();
    let names = Names::on(kafka.brokers(), crate::helpers::redis_url());
    create_topics(&names, 1).await;
    let app = spawn_role(&names, Role::Run, |s| {
        s.identity.fan_identity = Some(FanIdentityMode::Anonymous);
        s.kafka.kafka_delivery_timeout_ms = 3_000;
    })
    .await;
    assert_eq!(app.put_concert("k", presale()).await.status(), 200);
    let code = "KAFKA-0001-x7Qp";
    assert_eq!(upload(&app, "k", "fanclub", &[code.to_owned()]).await.status(), 200);
    let anonymous = async |body: Value| join_in(&app, "k", body).await;
    // The private broker takes joins (its first answers may be 503 while it elects leaders).
    let up =
        poll_until(Duration::from_secs(60), async || anonymous(json!({"lane": "general"})).await.status() == 202).await;
    assert!(up, "the private broker takes a join within 60 s");

    // The opening second: the broker does not answer, the join with the code gets 503.
    crate::common::signal(kafka.pid(), "-STOP");
    let r = anonymous(json!({"lane": "fanclub", "code": code})).await;
    crate::common::signal(kafka.pid(), "-CONT");
    assert_problem(r, 503, "durable").await;

    // The fan tries again, as the 503's Retry-After says: in anonymous mode it is a new fan (the
    // 503 carried no entry token), and the same code lets it in (before: 403, the code was
    // bound for good to the fan Kafka never took).
    let mut last = (0, String::new());
    let joined = poll_until(Duration::from_secs(60), async || {
        let r = anonymous(json!({"lane": "fanclub", "code": code})).await;
        last = (r.status().as_u16(), r.text().await.unwrap());
        last.0 != 503
    })
    .await;
    assert!(joined, "the broker came back within 60 s: {last:?}");
    assert_eq!(last.0, 202, "the retry with the same code: {}", last.1);
    let user = serde_json::from_str::<Value>(&last.1).unwrap()["userId"].as_str().unwrap().to_owned();
    let placed = poll_until(Duration::from_secs(60), async || {
        let r = app.admin_get(&format!("/admin/v1/concerts/k/queue/{user}")).await;
        r.status() == 200 && r.json::<Value>().await.unwrap()["lane"] == "fanclub"
    })
    .await;
    assert!(placed, "the fan who got 202 waits in the fan-club lane");
    let c = app.admin_json("/admin/v1/concerts/k").await;
    assert_eq!(c["laneCounts"][0]["codesUsed"], 1, "the code is bound once: {c}");
    // Stopped while its private broker still answers (the broker is killed when `kafka` drops).
    app.shutdown().await.expect("clean shutdown");
}
