//! Scheduled concerts: the pre-queue, the cut at opensAt in a verifiable random order, closesAt.

use std::time::Duration;

use queuegate::config::Role;
use serde_json::{json, Value};

use crate::helpers::{poll_until, spawn_role, Names};

fn in_ms(ms: i64) -> (i64, String) {
    let at = queuegate::clock::now_ms() + ms;
    (at, queuegate::clock::rfc3339(at))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_prequeue_is_placed_ahead_of_later_fans_in_the_order_its_published_seed_gives() {
    let names = Names::new();
    names.create_topics(6).await;
    // The cut waits the delivery timeout plus twice the clock skew past opensAt.
    let app = spawn_role(&names, Role::Run, |s| {
        s.kafka.kafka_delivery_timeout_ms = 2_000;
        s.admission.clock_skew_ms = 100;
    })
    .await;
    let (opens_at, opens_text) = in_ms(5_000);
    let r = app.put_concert("c", json!({"state": "open", "opensAt": opens_text})).await;
    assert_eq!(r.status(), 200);
    let concert: Value = r.json().await.unwrap();
    assert_eq!(concert["opensAt"], opens_text);
    let before = app.fairness("c").await;
    let commitment = before["commitment"].as_str().expect("a commitment from scheduling on").to_owned();
    assert!(before.get("seed").is_none(), "the seed stays secret until the cut: {before}");

    // Thirty fans before opensAt, each held in the pre-queue.
    let mut tokens = std::collections::HashMap::new();
    for i in 0..30 {
        let r: Value = app.join("c", &format!("early{i}")).await.json().await.unwrap();
        tokens.insert(format!("early{i}"), r["token"].as_str().unwrap().to_owned());
    }
    let mut held = Value::Null;
    assert!(
        poll_until(Duration::from_secs(10), async || {
            held = app.status("c", "early7", &tokens["early7"]).await.json().await.unwrap();
            held["status"] == "prequeue"
        })
        .await,
        "{held}"
    );
    assert_eq!(held["opensAt"], opens_text);
    assert!(held["secondsToOpen"].as_u64().is_some_and(|s| s <= 5), "{held}");
    assert!(held.get("position").is_none());

    // Ten after it.
    let wait = (opens_at - queuegate::clock::now_ms()).max(0) as u64 + 100;
    tokio::time::sleep(Duration::from_millis(wait)).await;
    for i in 0..10 {
        let r: Value = app.join("c", &format!("late{i}")).await.json().await.unwrap();
        tokens.insert(format!("late{i}"), r["token"].as_str().unwrap().to_owned());
    }

    // The cut: the seed is revealed.
    let mut after = Value::Null;
    assert!(
        poll_until(Duration::from_secs(20), async || {
            after = app.fairness("c").await;
            after.get("seed").is_some()
        })
        .await,
        "the cut happens once the consumer passed the watermarks: {after}"
    );
    assert_eq!(after["commitment"], commitment.as_str());
    assert_eq!(after["prequeued"], 30);
    assert!(after["algorithm"].as_str().unwrap().contains("HMAC-SHA256"));

    // The first thirty places are exactly the early fans, in the seed's order; the late ones follow.
    // The late ones are placed once the watermark passes their stamps (a moment after the cut).
    let mut listing = Value::Null;
    poll_until(Duration::from_secs(30), async || {
        listing = app.admin_json("/admin/v1/concerts/c/queue?limit=1000").await;
        listing["total"] == 40
    })
    .await;
    let order: Vec<String> =
        listing["entries"].as_array().unwrap().iter().map(|e| e["userId"].as_str().unwrap().to_owned()).collect();
    assert_eq!(order.len(), 40, "{listing}");
    let early: Vec<String> = (0..30).map(|i| format!("early{i}")).collect();
    let seed = after["seed"].as_str().unwrap();
    assert_eq!(order[..30], queuegate::fairness::order(seed, &early).unwrap()[..]);
    let mut late: Vec<&str> = order[30..].iter().map(String::as_str).collect();
    late.sort_unstable();
    let mut want: Vec<String> = (0..10).map(|i| format!("late{i}")).collect();
    want.sort_unstable();
    assert_eq!(late, want.iter().map(String::as_str).collect::<Vec<_>>());
    // The fan's own status: from the gateway's view, which learns of the cut at its next refresh.
    let mut s = Value::Null;
    let placed = poll_until(Duration::from_secs(10), async || {
        s = app.status("c", &order[4], &tokens[&order[4]]).await.json().await.unwrap();
        s["status"] != "prequeue"
    })
    .await;
    assert!(placed, "still prequeue 10 s after the cut: {s}");
    assert_eq!((s["status"].as_str(), s["position"].as_u64()), (Some("waiting"), Some(5)), "{s}");

    // Anyone can check it with the published document and the listing; tampering is caught.
    let dir = std::env::temp_dir().join(format!("qg-verify-{}", names.prefix));
    std::fs::create_dir_all(&dir).unwrap();
    let (fair_file, list_file) = (dir.join("fairness.json"), dir.join("listing.json"));
    std::fs::write(&fair_file, after.to_string()).unwrap();
    let verify = |listing: &Value| {
        std::fs::write(&list_file, listing.to_string()).unwrap();
        std::process::Command::new(env!("CARGO_BIN_EXE_queuegate"))
            .arg("verify-shuffle")
            .arg("--fairness")
            .arg(&fair_file)
            .arg("--listing")
            .arg(&list_file)
            .output()
            .unwrap()
    };
    let ok = verify(&listing);
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    let mut swapped = listing.clone();
    swapped["entries"].as_array_mut().unwrap().swap(2, 9);
    let bad = verify(&swapped);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("place 3"), "{}", String::from_utf8_lossy(&bad.stderr));
    let mut forged = after.clone();
    forged["seed"] = queuegate::fairness::new_seed().into();
    std::fs::write(&fair_file, forged.to_string()).unwrap();
    let bad = verify(&listing);
    assert!(String::from_utf8_lossy(&bad.stderr).contains("commitment"), "{}", String::from_utf8_lossy(&bad.stderr));
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_closes_at_joins_get_409_while_admission_goes_on() {
    let names = Names::new();
    names.create_topics(2).await;
    let app = spawn_role(&names, Role::Run, |_| {}).await;
    let (closes_at, closes_text) = in_ms(3_000);
    assert_eq!(app.put_concert("c", json!({"state": "open", "closesAt": closes_text})).await.status(), 200);
    for i in 0..3 {
        assert_eq!(app.join("c", &format!("f{i}")).await.status(), 202);
    }
    app.wait_for_records(3).await;
    tokio::time::sleep(Duration::from_millis((closes_at - queuegate::clock::now_ms()).max(0) as u64 + 100)).await;
    crate::helpers::assert_problem(app.join("c", "too-late").await, 409, "stopped taking joins").await;
    let admitted: Value = app.admit("c", 2).await.json().await.unwrap();
    assert_eq!(admitted["admitted"].as_array().unwrap().len(), 2, "{admitted}");
    let bad = app
        .put_concert(
            "d",
            json!({"state": "open", "opensAt": "2030-01-02T00:00:00Z", "closesAt": "2030-01-01T00:00:00Z"}),
        )
        .await;
    crate::helpers::assert_problem(bad, 400, "closesAt must be after opensAt").await;
    let bad = app.put_concert("d", json!({"state": "open", "opensAt": "next tuesday"})).await;
    crate::helpers::assert_problem(bad, 400, "RFC 3339").await;
}

/// Every page of the admin listing, in queue order.
async fn listing(app: &crate::helpers::TestApp, concert: &str) -> Vec<String> {
    let mut out = Vec::new();
    loop {
        let page = app.admin_json(&format!("/admin/v1/concerts/{concert}/queue?offset={}&limit=1000", out.len())).await;
        let entries = page["entries"].as_array().unwrap();
        out.extend(entries.iter().map(|e| e["userId"].as_str().unwrap().to_owned()));
        if entries.is_empty() || out.len() as u64 >= page["total"].as_u64().unwrap() {
            return out;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fans_accepted_before_opens_at_come_first_even_when_the_consumer_starts_long_after_it() {
    use futures_util::StreamExt;
    const EACH: usize = 10_000;
    let names = Names::new();
    names.create_topics(6).await;
    let tweak = |s: &mut queuegate::config::Settings| {
        s.kafka.kafka_delivery_timeout_ms = 2_000;
        s.admission.clock_skew_ms = 100;
    };
    // Only the gateway at first: nothing reaches Redis until the consumer starts.
    let gateway = spawn_role(&names, Role::Gateway, tweak).await;
    // Far ahead while the early fans join (however long that takes here), then moved to just
    // after the last of them: an operator may move opensAt until the cut.
    let (_, far) = in_ms(600_000);
    assert_eq!(gateway.put_concert("c", json!({"state": "open", "opensAt": far})).await.status(), 200);
    let gw = &gateway;
    let join_all = async |prefix: &str| {
        let statuses: Vec<u16> = futures_util::stream::iter(0..EACH)
            .map(|i| {
                let user = format!("{prefix}{i}");
                async move { gw.join("c", &user).await.status().as_u16() }
            })
            .buffer_unordered(64)
            .collect()
            .await;
        assert!(statuses.iter().all(|s| *s == 202), "every join accepted");
    };
    join_all("early").await;
    let (opens_at, opens_text) = in_ms(500);
    assert_eq!(gateway.put_concert("c", json!({"state": "open", "opensAt": opens_text})).await.status(), 200);
    tokio::time::sleep(Duration::from_millis((opens_at - queuegate::clock::now_ms()).max(0) as u64 + 50)).await;
    join_all("late").await;
    // The consumer starts well after the cut's time: the cut must wait for it.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let fair: Value = gateway.fairness("c").await;
    assert!(fair.get("seed").is_none(), "no cut without the consumer: {fair}");
    let consumer = spawn_role(&names, Role::Consumer, tweak).await;
    let mut fair = Value::Null;
    assert!(
        poll_until(Duration::from_secs(90), async || {
            fair = gateway.fairness("c").await;
            fair.get("seed").is_some()
        })
        .await,
        "the cut happens once the consumer has caught up: {fair}"
    );
    assert_eq!(fair["prequeued"], EACH, "{fair}");
    assert_eq!(fair["late"], 0, "{fair}");
    let order = listing(&gateway, "c").await;
    assert_eq!(order.len(), 2 * EACH, "nobody lost");
    let distinct: std::collections::HashSet<&String> = order.iter().collect();
    assert_eq!(distinct.len(), 2 * EACH, "nobody doubled");
    assert!(order[..EACH].iter().all(|u| u.starts_with("early")), "the first {EACH} places are the pre-queue");
    assert!(order[EACH..].iter().all(|u| u.starts_with("late")));
    let early: Vec<String> = (0..EACH).map(|i| format!("early{i}")).collect();
    assert_eq!(order[..EACH], queuegate::fairness::order(fair["seed"].as_str().unwrap(), &early).unwrap()[..]);
    drop(consumer);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passthrough_admits_on_arrival_and_reject_turns_joins_away_for_maintenance() {
    let names = Names::new();
    names.create_topics(2).await;
    let app = spawn_role(&names, Role::Run, |_| {}).await;
    assert_eq!(app.put_concert("quiet", json!({"state": "open", "queueingMethod": "passthrough"})).await.status(), 200);
    assert_eq!(app.put_concert("busy", json!({"state": "open"})).await.status(), 200);
    let q: Value = app.join("quiet", "walk-in").await.json().await.unwrap();
    let b: Value = app.join("busy", "walk-in").await.json().await.unwrap();
    let mut s = Value::Null;
    assert!(
        poll_until(Duration::from_secs(10), async || {
            s = app.status("quiet", "walk-in", q["token"].as_str().unwrap()).await.json().await.unwrap();
            s["status"] == "admitted"
        })
        .await,
        "passthrough admits without anyone calling admit: {s}"
    );
    let mut waiting = Value::Null;
    assert!(
        poll_until(Duration::from_secs(10), async || {
            waiting = app.status("busy", "walk-in", b["token"].as_str().unwrap()).await.json().await.unwrap();
            waiting["status"] != "pending"
        })
        .await
    );
    assert_eq!(waiting["status"], "waiting", "fifo without a rate keeps the fan waiting");

    assert_eq!(app.put_concert("busy", json!({"state": "open", "queueingMethod": "reject"})).await.status(), 200);
    let r = app.join("busy", "another").await;
    assert_eq!(r.headers()["retry-after"], "30");
    crate::helpers::assert_problem(r, 503, "maintenance").await;
    let still: Value = app.status("busy", "walk-in", b["token"].as_str().unwrap()).await.json().await.unwrap();
    assert_eq!(still["position"], 1, "those already queued keep their places: {still}");
    let bad = app.put_concert("busy", json!({"state": "open", "queueingMethod": "random"})).await;
    crate::helpers::assert_problem(bad, 400, "queueingMethod").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cut_happens_once_and_a_stale_or_unleased_cut_writes_nothing() {
    use queuegate::concerts::ConcertSettings;
    use queuegate::ids::{ConcertId, Lane, UserId};
    use queuegate::store::{Cut, CutStep};
    let names = Names::new();
    let store = names.store();
    let c = ConcertId::parse("c").unwrap();
    let general = Lane::general();
    let opens_at = queuegate::clock::now_ms() + 60_000;
    let settings = ConcertSettings { opens_at: Some(opens_at), ..ConcertSettings::open() };
    store.put_concert(&c, &settings).await.unwrap();
    let fan = |i: usize| UserId::parse(format!("f{i}")).unwrap();
    let before: Vec<UserId> = (0..50).map(fan).collect();
    let after: Vec<UserId> = (50..55).map(fan).collect();
    let joins: Vec<(&UserId, i64)> =
        before.iter().map(|u| (u, opens_at - 1_000)).chain(after.iter().map(|u| (u, opens_at + 1_000))).collect();
    store.apply(&c, &joins).await.unwrap();
    store.apply(&c, &joins).await.unwrap(); // a redelivery holds nobody twice
    let seed = store.fair_state(&c, &general).await.unwrap().seed.unwrap();

    // Not the lease holder: nothing happens, not even the cut's beginning.
    let lease = store.lease(&c, "instance-a", 5_000).await.unwrap().expect("a free lease");
    assert_eq!(store.cut(&c, &general, &seed, "instance-b", 5_000).await.unwrap(), Cut::NotLeader);
    assert_eq!(store.cut_begin(&c, &general, "instance-b:1").await.unwrap(), CutStep::NotLeader);
    assert!(store.waiting_list(&c).await.unwrap().is_empty());
    assert_eq!(store.fair_state(&c, &general).await.unwrap().cut_at_ms, None, "the cut has not begun");

    // A fan held before the cut begins is one of the pre-queue.
    let straggler = fan(99);
    store.apply(&c, &[(&straggler, opens_at - 500)]).await.unwrap();
    assert_eq!(
        store.cut_begin(&c, &general, &lease).await.unwrap(),
        CutStep::Begun { held: 56, post: 5, moved: 0, prequeued: None }
    );
    // Steps out of turn, or that do not match what is stored, refuse, having written nothing.
    let refused = |r: Result<CutStep, queuegate::store::StoreError>| {
        let e = r.expect_err("a stale step is refused");
        assert!(e.to_string().contains("STALE"), "{e}");
    };
    refused(store.cut_slice(&c, &general, 0, &[], &lease).await);
    assert_eq!(store.cut_stage_post(&c, &general, &lease).await.unwrap(), CutStep::Staged { staged: 5, left: 0 });
    let held = store.held(&c, &general).await.unwrap();
    assert_eq!(held.len(), 51);
    let hash = queuegate::fairness::list_hash(&held);
    refused(store.cut_commit(&c, &general, &hash, 50, &lease).await);
    assert_eq!(
        store.cut_commit(&c, &general, &hash, 51, &lease).await.unwrap(),
        CutStep::Committed { prequeued: 51, moved: 0 }
    );
    let ordered = queuegate::fairness::order(&seed, &held).unwrap();
    refused(store.cut_slice(&c, &general, 1, &ordered[..10], &lease).await);
    refused(store.cut_slice(&c, &general, 0, &[ordered[0].clone(), ordered[0].clone()], &lease).await);
    assert!(store.waiting_list(&c).await.unwrap().is_empty());

    // A fan applied while the cut is in progress is staged, not held: after the whole pre-queue.
    let during = fan(98);
    store.apply(&c, &[(&during, opens_at + 500)]).await.unwrap();
    let Cut::Done { prequeued, after: staged_after, .. } =
        store.cut(&c, &general, &seed, "instance-a", 5_000).await.unwrap()
    else {
        panic!("the lease holder finishes the cut")
    };
    assert_eq!((prequeued, staged_after), (51, 5));
    assert_eq!(store.cut(&c, &general, &seed, "instance-a", 5_000).await.unwrap(), Cut::AlreadyDone);
    assert_eq!(store.waiting_list(&c).await.unwrap(), ordered, "those after opensAt are staged for the watermark");
    let r = store.release(&c, &general, opens_at + 1_000).await.unwrap();
    assert_eq!((r.placed, r.staged), (1, 5), "none is placed before the watermark passes its stamp");
    let r = store.release(&c, &general, opens_at + 1_001).await.unwrap();
    assert_eq!((r.placed, r.staged), (5, 0));
    let queue = store.waiting_list(&c).await.unwrap();
    assert_eq!(queue[..51], ordered[..]);
    assert_eq!(queue[51], "f98");
    let tail: std::collections::HashSet<&str> = queue[52..].iter().map(String::as_str).collect();
    assert_eq!(tail, after.iter().map(|u| u.as_str()).collect());

    // After the cut a record stamped before opensAt (a clock off by more than the skew) is
    // queued at the tail and counted, never lost.
    let very_late = fan(100);
    store.apply(&c, &[(&very_late, opens_at - 2_000)]).await.unwrap();
    store.release(&c, &general, opens_at + 2_000).await.unwrap();
    assert_eq!(store.waiting_list(&c).await.unwrap().last().map(String::as_str), Some("f100"));
    assert_eq!(store.late_joins(&c, &general).await.unwrap(), 1, "placed behind fans stamped after it");
    assert_eq!(store.fair_state(&c, &general).await.unwrap().late, 1);
}
