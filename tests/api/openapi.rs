//! `/openapi.json` against the running listeners: every operation is served where its `servers`
//! entry says, every status a generic probe gets is documented, documented bounds are accepted
//! and one past them is refused with 400; unknown paths and methods get problem+json 404/405.

use serde_json::{json, Value};

use crate::helpers::{assert_problem, spawn_app, TestApp, ADMIN_TOKEN};

/// The base URL of the listener an operation's path item (or the document) names.
fn base<'a>(app: &'a TestApp, doc: &Value, item: &Value) -> &'a str {
    let servers = if item["servers"].is_array() { &item["servers"] } else { &doc["servers"] };
    match servers[0]["description"].as_str().unwrap() {
        d if d.starts_with("admin listener") => &app.admin,
        d if d.starts_with("public listener") => app.http(),
        other => panic!("unknown server {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_status_a_probe_of_each_operation_gets_is_documented_on_the_listener_the_document_names() {
    let app = spawn_app().await;
    app.open_concert("c").await;
    let doc: Value = app.client.get(format!("{}/openapi.json", app.http())).send().await.unwrap().json().await.unwrap();
    let mut probed = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        let url_base = base(&app, &doc, item).to_owned();
        for (method, op) in item.as_object().unwrap().iter().filter(|(k, _)| *k != "servers" && *k != "parameters") {
            let documented: Vec<&str> = op["responses"].as_object().unwrap().keys().map(String::as_str).collect();
            let needs_admin =
                op["security"].as_array().is_some_and(|s| s.iter().any(|x| x.get("adminToken").is_some()));
            let ids = [
                ("good", path.replace("{concertId}", "c").replace("{userId}", "u")),
                ("bad", path.replace("{concertId}", "bad.id").replace("{userId}", "bad.id")),
            ];
            for (kind, concrete) in ids {
                if kind == "bad" && !path.contains('{') {
                    continue;
                }
                for with_token in [true, false] {
                    let m = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
                    let mut req = app.client.request(m, format!("{url_base}{concrete}"));
                    if with_token && needs_admin {
                        req = req.bearer_auth(ADMIN_TOKEN);
                    }
                    if method == "post" || method == "put" {
                        req = req.json(&json!({}));
                    }
                    let r = req.send().await.unwrap();
                    let status = r.status().as_u16().to_string();
                    assert!(
                        documented.contains(&status.as_str()),
                        "{method} {concrete} ({kind} ids, token {with_token}) answered {status}, documented {documented:?}"
                    );
                    if kind == "bad" && (with_token || !needs_admin) {
                        assert_problem(r, 400, "must match").await;
                    } else if !with_token && needs_admin {
                        assert_problem(r, 401, "admin token").await;
                    }
                    probed += 1;
                }
            }
        }
    }
    assert!(probed >= 40, "probed {probed} requests");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn documented_bounds_are_accepted_and_one_past_them_is_a_400() {
    let app = spawn_app().await;
    let doc: Value = app.client.get(format!("{}/openapi.json", app.http())).send().await.unwrap().json().await.unwrap();
    let settings = &doc["components"]["schemas"]["ConcertSettings"]["properties"];
    let mut at_max = json!({"state": "paused"});
    for (name, schema) in settings.as_object().unwrap() {
        if let Some(max) = schema["maximum"].as_u64() {
            at_max[name] = json!(max);
        }
    }
    assert_eq!(app.put_concert("c", at_max.clone()).await.status(), 200, "every maximum at once: {at_max}");
    for (name, schema) in settings.as_object().unwrap() {
        let Some(max) = schema["maximum"].as_u64() else { continue };
        let mut past = at_max.clone();
        past[name] = json!(max + 1);
        assert_problem(app.put_concert("c", past).await, 400, name).await;
    }

    let params = doc["paths"]["/admin/v1/concerts/{concertId}/queue"]["get"]["parameters"].as_array().unwrap();
    let max_of = |n: &str| params.iter().find(|p| p["name"] == n).unwrap()["schema"]["maximum"].as_u64().unwrap();
    let (offset, limit) = (max_of("offset"), max_of("limit"));
    let page = app.admin_get(&format!("/admin/v1/concerts/c/queue?offset={offset}&limit={limit}")).await;
    assert_eq!(page.status(), 200);
    let past = app.admin_get(&format!("/admin/v1/concerts/c/queue?offset={}", offset + 1)).await;
    assert_problem(past, 400, "offset").await;
    let huge = app.admin_get("/admin/v1/concerts/c/queue?offset=99999999999999999999").await;
    assert_problem(huge, 400, "query").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_paths_and_methods_get_problem_details_with_allow() {
    let app = spawn_app().await;
    assert_problem(app.client.get(format!("{}/nowhere", app.http())).send().await.unwrap(), 404, "/nowhere").await;
    assert_problem(app.admin_get("/nowhere").await, 404, "/nowhere").await;
    let r = app.client.delete(format!("{}/v1/concerts/c/queue", app.http())).send().await.unwrap();
    assert_eq!(r.headers()["allow"], "POST");
    assert_problem(r, 405, "POST").await;
    let r = app
        .client
        .post(format!("{}/admin/v1/concerts/c/queue/u", app.admin))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["allow"], "GET, DELETE");
    assert_problem(r, 405, "GET, DELETE").await;
    // Unknown admin paths need the token too: they reveal nothing about what exists.
    assert_problem(app.client.get(format!("{}/admin/v2/x", app.admin)).send().await.unwrap(), 401, "admin token").await;
}
