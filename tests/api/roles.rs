//! Who did what (issue 36, item 9): named admin tokens with a role each
//! (`QUEUEGATE_ADMIN_TOKENS_FILE`), and every admin change recorded as the CloudEvent
//! `dev.queuegate.admin.action` on the events topic (read back with the CloudEvents SDK) and in
//! the concert's capped audit list.

use std::time::Duration;

use queuegate::config::{Role, Settings};
use queuegate::store::keys::Part;
use serde_json::{json, Value};

use crate::common::events_topic::{read_events, Receiver};
use crate::helpers::{assert_problem, spawn_role, Names, TestApp, ADMIN_TOKEN};

const VIEWER: &str = "dash-viewer-token-0123456789";
const OPERATOR: &str = "dash-op-operator-token-0123456789";
const ADMIN: &str = "ops-admin-token-0123456789";

/// A tokens file of the three roles in a fresh directory; its path.
fn tokens_file() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("qg-tokens-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("admin-tokens.json");
    let tokens = json!([
        {"name": "dash", "role": "viewer", "token": VIEWER},
        {"name": "dash-op", "role": "operator", "token": OPERATOR},
        {"name": "ops-admin", "role": "admin", "token": ADMIN},
    ]);
    std::fs::write(&path, tokens.to_string()).unwrap();
    path
}

async fn app_with_roles(names: &Names, tweak: impl FnOnce(&mut Settings)) -> TestApp {
    let file = tokens_file();
    spawn_role(names, Role::Run, move |s| {
        s.security.admin_tokens_file = Some(file);
        crate::helpers::allow_loopback_webhooks(s);
        tweak(s);
    })
    .await
}

/// An admin call with `token` (None: without one).
async fn call(app: &TestApp, token: Option<&str>, method: &str, path: &str, body: Option<Value>) -> reqwest::Response {
    let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut r = app.client.request(m, format!("{}{path}", app.admin));
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    if let Some(b) = body {
        r = r.json(&b);
    }
    r.send().await.expect("admin call")
}

/// The concert as GET shows it, with only what a PUT takes back (what the console does).
async fn settings_of(app: &TestApp, token: &str, concert: &str) -> Value {
    let r = call(app, Some(token), "GET", &format!("/admin/v1/concerts/{concert}"), None).await;
    assert_eq!(r.status(), 200);
    let mut c: Value = r.json().await.unwrap();
    let m = c.as_object_mut().unwrap();
    for k in [
        "concertId",
        "waiting",
        "admitted",
        "active",
        "abandoned",
        "removed",
        "sessions",
        "laneCounts",
        "createdAt",
        "updatedAt",
        "etag",
    ] {
        m.remove(k);
    }
    c
}

async fn audit(app: &TestApp, token: &str, concert: &str, query: &str) -> Value {
    let r = call(app, Some(token), "GET", &format!("/admin/v1/concerts/{concert}/audit{query}"), None).await;
    assert_eq!(r.status(), 200, "audit list");
    r.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_reads_an_operator_runs_the_sale_and_only_an_admin_touches_webhooks_codes_and_revocations() {
    let names = Names::new();
    names.create_topics(1).await;
    let app = app_with_roles(&names, |_| {}).await;
    let hook = Receiver::start(crate::common::events_topic::Behaviour::Ok).await;
    let lanes =
        json!([{"name": "general", "share": 50, "access": "open"}, {"name": "fanclub", "share": 50, "access": "code"}]);
    let r = call(
        &app,
        Some(ADMIN_TOKEN),
        "PUT",
        "/admin/v1/concerts/c",
        Some(json!({"state": "open", "lanes": lanes, "webhooks": [{"url": hook.url}]})),
    )
    .await;
    assert_eq!(r.status(), 200, "QUEUEGATE_ADMIN_TOKEN still works, as an admin");
    for fan in ["f1", "f2", "f3"] {
        assert_eq!(app.join("c", fan).await.status(), 202);
    }
    app.wait_for_records(3).await;
    let hook_id = settings_of(&app, ADMIN_TOKEN, "c").await["webhooks"][0]["id"].as_str().unwrap().to_owned();
    let codes = json!({"codes": ["ABCDEFGHJKMN", "PQRSTUVWXYZ2"]});
    let paused = |s: &Value| {
        let mut s = s.clone();
        s["state"] = json!("paused");
        s
    };
    let shown = settings_of(&app, VIEWER, "c").await;

    // The viewer reads everything and changes nothing: each change is a 403 naming the role.
    for path in [
        "/admin/v1/concerts",
        "/admin/v1/concerts/c",
        "/admin/v1/concerts/c/queue",
        "/admin/v1/concerts/c/audit",
        "/admin/v1/concerts/c/sessions",
        "/admin/v1/concerts/c/report",
        "/admin/v1/concerts/c/webhooks/deliveries",
    ] {
        assert_eq!(call(&app, Some(VIEWER), "GET", path, None).await.status(), 200, "the viewer reads {path}");
    }
    let changes: Vec<(&str, String, Option<Value>)> = vec![
        ("PUT", "/admin/v1/concerts/c".into(), Some(paused(&shown))),
        ("POST", "/admin/v1/concerts/c/admit".into(), Some(json!({"count": 1}))),
        ("DELETE", "/admin/v1/concerts/c/queue/f3".into(), None),
        ("DELETE", "/admin/v1/concerts/c/sessions/f1".into(), None),
        ("POST", "/admin/v1/concerts/c/lanes/fanclub/codes".into(), Some(codes.clone())),
        ("POST", "/admin/v1/concerts/c/sessions/revoke".into(), None),
        ("POST", format!("/admin/v1/concerts/c/webhooks/{hook_id}/secret"), None),
        ("POST", format!("/admin/v1/concerts/c/webhooks/{hook_id}/resume"), None),
    ];
    for (method, path, body) in &changes {
        let r = call(&app, Some(VIEWER), method, path, body.clone()).await;
        let p = assert_problem(r, 403, "the token dash is viewer").await;
        assert_eq!(p["type"], "urn:queuegate:problem:forbidden", "{method} {path}");
    }
    let c = app.admin_json("/admin/v1/concerts/c").await;
    assert_eq!(
        (c["state"].as_str(), c["waiting"].as_u64(), c["admitted"].as_u64()),
        (Some("open"), Some(3), Some(0)),
        "{c}"
    );

    // A token nobody has, or none: 401, on reads and changes alike.
    for (method, path) in [("GET", "/admin/v1/concerts"), ("POST", "/admin/v1/concerts/c/admit")] {
        let r = call(&app, Some("not-a-token-of-anyone-0123456789"), method, path, Some(json!({"count": 1}))).await;
        assert_problem(r, 401, "admin token").await;
        assert_problem(call(&app, None, method, path, None).await, 401, "admin token").await;
    }

    // The operator runs the sale: pauses (sending the webhooks back as shown), reopens, admits,
    // removes a fan; but cannot create, change or delete a webhook, upload codes or revoke.
    let r = call(&app, Some(OPERATOR), "PUT", "/admin/v1/concerts/c", Some(paused(&shown))).await;
    assert_eq!(r.status(), 200, "{:?}", r.text().await);
    let mut with_new_hook = shown.clone();
    with_new_hook["webhooks"].as_array_mut().unwrap().push(json!({"url": format!("{}/2", hook.url)}));
    let mut without_hooks = shown.clone();
    without_hooks.as_object_mut().unwrap().remove("webhooks");
    let mut moved_hook = shown.clone();
    moved_hook["webhooks"][0]["url"] = json!(format!("{}/elsewhere", hook.url));
    for (what, body) in [("added", with_new_hook), ("left out", without_hooks), ("moved", moved_hook)] {
        let r = call(&app, Some(OPERATOR), "PUT", "/admin/v1/concerts/c", Some(body)).await;
        let p = assert_problem(r, 403, "needs the admin role").await;
        assert!(p["detail"].as_str().unwrap().contains("dash-op"), "a webhook {what}: {p}");
    }
    let after = settings_of(&app, ADMIN_TOKEN, "c").await;
    assert_eq!(after["webhooks"], shown["webhooks"], "the webhooks are as they were");
    assert_eq!(after["state"], "paused", "and the refused PUTs changed nothing else");
    assert_eq!(call(&app, Some(OPERATOR), "PUT", "/admin/v1/concerts/c", Some(shown.clone())).await.status(), 200);
    let r = call(&app, Some(OPERATOR), "POST", "/admin/v1/concerts/c/admit", Some(json!({"count": 1}))).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["admitted"].as_array().unwrap().len(), 1);
    assert_eq!(call(&app, Some(OPERATOR), "DELETE", "/admin/v1/concerts/c/queue/f3", None).await.status(), 204);
    for (method, path, body) in &changes[4..] {
        let r = call(&app, Some(OPERATOR), method, path, body.clone()).await;
        assert_problem(r, 403, "needs the admin role; the token dash-op is operator").await;
    }

    // The admin may do all of it.
    let r = call(&app, Some(ADMIN), "POST", "/admin/v1/concerts/c/lanes/fanclub/codes", Some(codes.clone())).await;
    assert_eq!(r.status(), 200, "{:?}", r.text().await);
    let r = call(&app, Some(ADMIN), "POST", &format!("/admin/v1/concerts/c/webhooks/{hook_id}/secret"), None).await;
    assert_eq!(r.status(), 200);
    assert_eq!(call(&app, Some(ADMIN), "POST", "/admin/v1/concerts/c/sessions/revoke", None).await.status(), 200);
    let mut two_hooks = settings_of(&app, ADMIN, "c").await;
    two_hooks["webhooks"].as_array_mut().unwrap().push(json!({"url": format!("{}/2", hook.url)}));
    assert_eq!(call(&app, Some(ADMIN), "PUT", "/admin/v1/concerts/c", Some(two_hooks)).await.status(), 200);
    assert_eq!(settings_of(&app, ADMIN, "c").await["webhooks"].as_array().unwrap().len(), 2);

    // Each refusal was counted; none of them took a place in the audit list.
    assert_eq!(app.metric(r#"queuegate_admin_refused_total{reason="role"}"#).await, 8 + 3 + 4);
    assert_eq!(app.metric(r#"queuegate_admin_refused_total{reason="token"}"#).await, 4);
    let list = audit(&app, VIEWER, "c", "").await;
    let who: Vec<(&str, &str)> = list["actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["tokenName"].as_str().unwrap(), a["route"].as_str().unwrap()))
        .rev()
        .collect();
    assert_eq!(
        who,
        [
            ("admin", "PUT /admin/v1/concerts/{concertId}"),
            ("dash-op", "PUT /admin/v1/concerts/{concertId}"),
            ("dash-op", "PUT /admin/v1/concerts/{concertId}"),
            ("dash-op", "POST /admin/v1/concerts/{concertId}/admit"),
            ("dash-op", "DELETE /admin/v1/concerts/{concertId}/queue/{userId}"),
            ("ops-admin", "POST /admin/v1/concerts/{concertId}/lanes/{lane}/codes"),
            ("ops-admin", "POST /admin/v1/concerts/{concertId}/webhooks/{webhookId}/secret"),
            ("ops-admin", "POST /admin/v1/concerts/{concertId}/sessions/revoke"),
            ("ops-admin", "PUT /admin/v1/concerts/{concertId}"),
        ],
        "every change that succeeded, oldest last in the list: {list:#}"
    );
    assert_eq!(list["total"], 9);
    assert_eq!(app.metric(r#"queuegate_admin_actions_total{outcome="recorded"}"#).await, 9);
    // Secrets never reach the record: codes by count, webhook URLs by origin, no secret.
    let text = list.to_string();
    for secret in ["ABCDEFGHJKMN", "PQRSTUVWXYZ2", "whsec_", &hook.url] {
        assert!(!text.contains(secret), "{secret} in the audit list: {list:#}");
    }
    let codes_action = &list["actions"][3];
    assert_eq!(codes_action["change"], json!({"codes": 2}));
    assert_eq!(codes_action["result"]["added"], 2);
    let first = &list["actions"][8];
    assert_eq!(first["change"]["webhooks"][0]["url"], format!("{}/…", hook.url.trim_end_matches("/hook")));

    // A PATCH (what the console's switches send) is the operator's when it leaves the webhooks
    // out, and the admin's when it names them, as a PUT is.
    let patch = async |token: &str, body: Value| {
        app.client
            .patch(format!("{}/admin/v1/concerts/c", app.admin))
            .bearer_auth(token)
            .header("Content-Type", "application/merge-patch+json")
            .body(body.to_string())
            .send()
            .await
            .expect("admin PATCH")
    };
    let r = patch(OPERATOR, json!({"state": "paused"})).await;
    assert_eq!(r.status(), 200, "{:?}", r.text().await);
    assert_eq!(settings_of(&app, ADMIN, "c").await["webhooks"].as_array().unwrap().len(), 2, "webhooks kept");
    assert_problem(patch(OPERATOR, json!({"webhooks": []})).await, 403, "needs the admin role").await;
    assert_problem(patch(VIEWER, json!({"state": "open"})).await, 403, "role").await;
    assert_eq!(patch(ADMIN, json!({"webhooks": null})).await.status(), 200);
    let left = settings_of(&app, ADMIN, "c").await;
    assert_eq!(
        left.get("webhooks").and_then(Value::as_array).map_or(0, Vec::len),
        0,
        "the admin's patch removed them: {left}"
    );
}

/// Runs tests/fixtures/events_check.py over the records: what the CloudEvents SDK reads.
fn cloudevents(records: &[crate::common::events_topic::Record]) -> Vec<Value> {
    let lines: Vec<Value> =
        records.iter().map(|r| json!({"headers": r.headers, "key": r.key, "value": r.value})).collect();
    crate::events_out::check_with_libraries("kafka", &lines)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_by_dash_op_is_a_cloudevent_with_its_name_and_an_entry_of_the_audit_list_which_keeps_its_cap() {
    const KEPT: u64 = 5;
    let names = Names::new();
    names.create_topics(1).await;
    let app = app_with_roles(&names, |s| s.security.admin_audit_kept = KEPT).await;
    app.open_concert("tour").await;
    let r = call(
        &app,
        Some(OPERATOR),
        "PUT",
        "/admin/v1/concerts/tour",
        Some(json!({"state": "paused", "name": "Paused by dash-op"})),
    )
    .await;
    assert_eq!(r.status(), 200);
    // A refused change is not an event and not an entry.
    let r = call(&app, Some(VIEWER), "PUT", "/admin/v1/concerts/tour", Some(json!({"state": "open"}))).await;
    assert_eq!(r.status(), 403);

    let records = read_events(&names.brokers, &names.events_topic(), Duration::from_secs(30), |r| {
        r.iter().filter(|r| r.header("ce_type") == "dev.queuegate.admin.action").count() >= 2
    })
    .await;
    let actions: Vec<Value> =
        cloudevents(&records).into_iter().filter(|e| e["type"] == "dev.queuegate.admin.action").collect();
    assert_eq!(actions.len(), 2, "the opening and dash-op's pause, nothing for the refused call: {actions:#?}");
    let e = &actions[1];
    assert_eq!(e["source"], "/queuegate/concerts/tour");
    let d = &e["data"];
    assert_eq!(d["tokenName"], "dash-op");
    assert_eq!(d["role"], "operator");
    assert_eq!(d["method"], "PUT");
    assert_eq!(d["route"], "PUT /admin/v1/concerts/{concertId}");
    assert_eq!(d["path"], "/admin/v1/concerts/tour");
    assert_eq!(d["concertId"], "tour");
    assert_eq!(d["status"], 200);
    assert_eq!(d["change"], json!({"state": "paused", "name": "Paused by dash-op"}));
    assert_eq!(actions[0]["data"]["tokenName"], "admin");

    // The same change heads the audit list, under the event's id.
    let list = audit(&app, VIEWER, "tour", "").await;
    assert_eq!(list["total"], 2);
    let head = &list["actions"][0];
    assert_eq!(head["eventId"], e["id"]);
    assert_eq!(head["tokenName"], "dash-op");
    assert_eq!(head["change"], d["change"]);
    let at = queuegate::clock::parse_rfc3339(head["at"].as_str().unwrap()).unwrap();
    let event_at = queuegate::clock::parse_rfc3339(e["time"].as_str().unwrap()).unwrap();
    assert_eq!(at, event_at, "the list's time is the event's");

    // Past the cap the oldest go: the list keeps the newest KEPT, each trim counted.
    for i in 0..8 {
        let r = call(
            &app,
            Some(OPERATOR),
            "PUT",
            "/admin/v1/concerts/tour",
            Some(json!({"state": "paused", "name": format!("change {i}")})),
        )
        .await;
        assert_eq!(r.status(), 200);
        let len: u64 = names.redis(redis::cmd("LLEN").arg(names.key("tour", Part::Audit))).await;
        assert!(len <= KEPT, "the audit list holds {len} after change {i}, more than its cap {KEPT}");
    }
    let list = audit(&app, OPERATOR, "tour", "?limit=1000").await;
    assert_eq!(list["total"], KEPT);
    let kept: Vec<&str> =
        list["actions"].as_array().unwrap().iter().map(|a| a["change"]["name"].as_str().unwrap()).collect();
    assert_eq!(kept, ["change 7", "change 6", "change 5", "change 4", "change 3"], "newest first, the oldest dropped");
    assert_eq!(app.metric("queuegate_admin_audit_trimmed_total").await, 2 + 8 - KEPT);
    // Paging within the list.
    let page = audit(&app, VIEWER, "tour", "?offset=3&limit=10").await;
    let names_on_page: Vec<&str> =
        page["actions"].as_array().unwrap().iter().map(|a| a["change"]["name"].as_str().unwrap()).collect();
    assert_eq!(names_on_page, ["change 4", "change 3"]);
    assert_problem(call(&app, Some(VIEWER), "GET", "/admin/v1/concerts/tour/audit?limit=0", None).await, 400, "limit")
        .await;
    assert_problem(call(&app, Some(VIEWER), "GET", "/admin/v1/concerts/nope/audit", None).await, 404, "nope").await;
    // Every change also reached the topic: 2 + 8 admin actions, the list's cap aside.
    let records = read_events(&names.brokers, &names.events_topic(), Duration::from_secs(30), |r| {
        r.iter()
            .filter(|r| r.header("ce_type") == "dev.queuegate.admin.action")
            .map(|r| r.header("ce_id"))
            .collect::<std::collections::BTreeSet<_>>()
            .len()
            >= 10
    })
    .await;
    let ids: std::collections::BTreeSet<&str> = records
        .iter()
        .filter(|r| r.header("ce_type") == "dev.queuegate.admin.action")
        .map(|r| r.header("ce_id"))
        .collect();
    assert_eq!(ids.len(), 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_token_reaches_no_changing_handler_however_the_path_is_spelt() {
    let names = Names::new();
    names.create_topics(1).await;
    let app = app_with_roles(&names, |_| {}).await;
    app.open_concert("c").await;
    assert_eq!(app.join("c", "u").await.status(), 202);
    app.wait_for_records(1).await;
    let mut tried = 0;
    for route in queuegate::admin::ROUTES.iter().filter(|r| queuegate::admin::guarded(r.path) && r.method != "GET") {
        let path = route
            .path
            .replace("{concertId}", "c")
            .replace("{userId}", "u")
            .replace("{lane}", "general")
            .replace("{webhookId}", "wh_x");
        for (from, to) in crate::security::SPELLINGS {
            let spelt = path.replacen(from, to, 1);
            let body = r#"{"count":1000,"state":"closed"}"#;
            let req = format!(
                "{} {spelt} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer {VIEWER}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                route.method,
                body.len()
            );
            let (status, answer) = crate::helpers::raw_http(&app.admin, &req).await;
            assert!(
                matches!(status, 400 | 403 | 404 | 405),
                "{} {spelt} with the viewer's token answered {status}: {answer}",
                route.method
            );
            tried += 1;
        }
    }
    assert!(tried >= 8 * crate::security::SPELLINGS.len(), "tried {tried}");
    let fan = app.admin_json("/admin/v1/concerts/c/queue/u").await;
    assert_eq!(fan["status"], "waiting", "nobody was admitted or removed: {fan}");
    assert_eq!(app.admin_json("/admin/v1/concerts/c").await["state"], "open");
    assert_eq!(audit(&app, VIEWER, "c", "").await["total"], 1, "only the opening was recorded");
}

#[test]
fn a_bad_tokens_file_stops_start_up_with_one_line_naming_the_setting_and_never_a_token() {
    let dir = std::env::temp_dir().join(format!("qg-bad-tokens-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let secret = "a-token-that-must-never-be-printed-0123";
    let cases = [
        ("missing.json", None, "cannot be read"),
        ("garbage.json", Some(format!("[{{\"name\": \"x\", \"token\": \"{secret}\"")), "JSON"),
        ("empty.json", Some("[]".to_owned()), "holds no tokens"),
        ("short.json", Some(r#"[{"name":"x","role":"viewer","token":"short"}]"#.to_owned()), "at least 16"),
        ("role.json", Some(format!(r#"[{{"name":"x","role":"root","token":"{secret}"}}]"#)), "role"),
        (
            "twice.json",
            Some(format!(
                r#"[{{"name":"x","role":"viewer","token":"{secret}"}},{{"name":"y","role":"admin","token":"{secret}"}}]"#
            )),
            "same token as x",
        ),
        (
            "names.json",
            Some(format!(
                r#"[{{"name":"x","role":"viewer","token":"{secret}"}},{{"name":"x","role":"admin","token":"{VIEWER}"}}]"#
            )),
            "taken twice",
        ),
    ];
    for (file, content, says) in cases {
        let path = dir.join(file);
        if let Some(c) = &content {
            std::fs::write(&path, c).unwrap();
        }
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_queuegate"))
            .arg("run")
            .env("QUEUEGATE_INSECURE_DEV", "true")
            .env("QUEUEGATE_FAN_IDENTITY", "body")
            .env("QUEUEGATE_ADMIN_TOKEN", ADMIN_TOKEN)
            .env("QUEUEGATE_TOKEN_SECRET", crate::common::TOKEN_SECRET)
            .env("QUEUEGATE_ADMIN_TOKENS_FILE", &path)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{file}: a configuration error: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{file}: one line: {err}");
        assert!(err.contains("QUEUEGATE_ADMIN_TOKENS_FILE") && err.contains(says), "{file}: {err}");
        assert!(!err.contains(secret) && !err.contains(VIEWER), "{file}: a token in {err}");
    }
}
