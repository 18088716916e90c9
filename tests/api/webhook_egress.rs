//! Webhooks never into queuegate's own network (docs/explain-security.md): an internal address is
//! refused at registration (400 naming the field) unless `QUEUEGATE_WEBHOOK_ALLOW_NETWORKS`
//! lists its network, and checked again at delivery, on the address connected to; what the
//! deliveries listing records is a class, never the socket's error or the exact status.

use std::time::Duration;

use queuegate::config::Role;
use serde_json::{json, Value};

use crate::common::events_topic::{Behaviour, Receiver};
use crate::common::{allow_loopback_webhooks, poll_until, spawn_role, Names};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_to_loopback_link_local_private_and_mapped_addresses_are_refused_naming_the_field() {
    let names = Names::new();
    let app = spawn_role(&names, Role::Gateway, |_| {}).await;
    // Registration only: nothing is ever sent to these (each PUT is refused before it is kept).
    for (url, kind) in [
        ("http://127.0.0.1:6379/", "loopback"),
        ("http://[::1]/", "loopback"),
        ("http://169.254.169.254/latest/meta-data", "link-local"),
        ("http://10.0.0.1/", "private"),
        ("http://[::ffff:127.0.0.1]/", "loopback"),
        ("http://localhost:8081/admin/v1/concerts", "resolves only to refused addresses"),
        ("http://metadata.google.internal/computeMetadata/v1/", "metadata"),
    ] {
        let r = app.put_concert("egress", json!({"state": "open", "webhooks": [{"url": url}]})).await;
        assert_eq!(r.status(), 400, "{url}");
        assert_eq!(r.headers()["content-type"], "application/problem+json", "{url}");
        let problem: Value = r.json().await.unwrap();
        let detail = problem["detail"].as_str().unwrap();
        assert!(detail.starts_with("webhooks: "), "the detail names the field: {detail}");
        assert!(detail.contains(kind) && detail.contains("QUEUEGATE_WEBHOOK_ALLOW_NETWORKS"), "{url}: {detail}");
    }
    let r = app.admin_get("/admin/v1/concerts/egress").await;
    assert_eq!(r.status(), 404, "no refused PUT created the concert");
    // A public address is taken (never delivered to: the concert has no fans).
    let r =
        app.put_concert("egress", json!({"state": "open", "webhooks": [{"url": "https://93.184.216.34/hook"}]})).await;
    assert_eq!(r.status(), 200);
    app.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_allowed_loopback_receiver_gets_its_deliveries_and_once_disallowed_gets_no_connection() {
    let names = Names::new();
    names.create_topics(1).await;
    let quick = |s: &mut queuegate::config::Settings| {
        s.events.webhook_retry_base_ms = 200;
        s.events.webhook_retry_max_ms = 1_000;
    };
    let app = spawn_role(&names, Role::Run, |s| {
        quick(s);
        allow_loopback_webhooks(s);
    })
    .await;
    let hook = Receiver::start(Behaviour::Ok).await;
    let r = app.put_concert("c", json!({"state": "open", "webhooks": [{"url": hook.url}]})).await;
    assert_eq!(r.status(), 200, "QUEUEGATE_WEBHOOK_ALLOW_NETWORKS=127.0.0.0/8 lets {} in", hook.url);
    assert_eq!(app.join("c", "a").await.status(), 202);
    // concert.updated and fan.placed.
    let ok = poll_until(Duration::from_secs(30), async || hook.ids().len() >= 2).await;
    assert!(ok, "the allowed receiver got {} of 2 deliveries", hook.ids().len());
    let log = app.admin_json("/admin/v1/concerts/c/webhooks/deliveries").await;
    let delivered = log["deliveries"].as_array().unwrap();
    assert!(delivered.iter().all(|d| d["outcome"] == "delivered" && d["class"] == "ok"), "{log:#}");
    app.shutdown().await.expect("clean shutdown");

    // The operator takes loopback off the list: the endpoint registered before gets nothing
    // more, and its attempts read refused-address.
    let app = spawn_role(&names, Role::Run, quick).await;
    let before = hook.got.lock().unwrap().len();
    assert_eq!(app.join("c", "b").await.status(), 202);
    let mut log = Value::Null;
    let refused = poll_until(Duration::from_secs(30), async || {
        log = app.admin_json("/admin/v1/concerts/c/webhooks/deliveries").await;
        log["deliveries"].as_array().unwrap().iter().any(|d| d["class"] == "refused-address")
    })
    .await;
    assert!(refused, "an attempt recorded as refused-address within 30 s: {log:#}");
    assert_eq!(hook.got.lock().unwrap().len(), before, "no request reached the receiver once loopback was refused");
    let entry = log["deliveries"].as_array().unwrap().iter().find(|d| d["class"] == "refused-address").unwrap();
    assert_eq!(entry["outcome"], "failed", "{entry}");
    assert!(entry.get("status").is_none() && entry.get("error").is_none(), "no oracle: {entry}");
    app.shutdown().await.expect("clean shutdown");
}
