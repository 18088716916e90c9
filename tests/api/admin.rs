//! The admin API's concert and queue views.

use crate::helpers::spawn_app;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_concert_is_created_updated_listed_and_counted() {
    let app = spawn_app().await;
    let r = app
        .put_concert(
            "tour-1",
            serde_json::json!({"state": "open", "admitPerSecond": 50, "maxActive": 200, "tokenTtlSeconds": 300}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let c: serde_json::Value = r.json().await.unwrap();
    assert_eq!(c["concertId"], "tour-1");
    assert_eq!(c["state"], "open");
    assert_eq!(c["admitPerSecond"], 50);
    assert_eq!(c["maxActive"], 200);
    assert_eq!(c["tokenTtlSeconds"], 300);
    assert_eq!(c["waiting"], 0);
    let created = c["createdAt"].as_str().unwrap().to_owned();

    let c = app
        .put_concert("tour-1", serde_json::json!({"state": "paused"}))
        .await
        .json::<serde_json::Value>()
        .await
        .unwrap();
    assert_eq!(c["state"], "paused");
    assert_eq!(c["createdAt"], created, "an update keeps the creation time");
    app.open_concert("tour-2").await;

    let all = app.admin_json("/admin/v1/concerts").await;
    let ids: Vec<&str> = all["concerts"].as_array().unwrap().iter().map(|c| c["concertId"].as_str().unwrap()).collect();
    assert_eq!(ids, vec!["tour-1", "tour-2"]);

    for i in 0..3 {
        assert_eq!(app.join("tour-2", &format!("f{i}")).await.status(), 202);
    }
    app.wait_for_records(3).await;
    let one = app.admin_json("/admin/v1/concerts/tour-2").await;
    assert_eq!(one["waiting"], 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_queue_listing_pages_in_order() {
    let app = spawn_app().await;
    app.open_concert("c").await;
    // One at a time, so the queue order is the join order.
    for i in 0..25 {
        assert_eq!(app.join("c", &format!("f{i:02}")).await.status(), 202);
        app.wait_for_records(i + 1).await;
    }
    let page = app.admin_json("/admin/v1/concerts/c/queue?offset=10&limit=5").await;
    assert_eq!(page["total"], 25);
    let rows = page["entries"].as_array().unwrap();
    let got: Vec<(u64, &str)> =
        rows.iter().map(|e| (e["position"].as_u64().unwrap(), e["userId"].as_str().unwrap())).collect();
    assert_eq!(got, vec![(11, "f10"), (12, "f11"), (13, "f12"), (14, "f13"), (15, "f14")]);
    assert!(rows[0]["joinedAt"].as_str().unwrap().ends_with('Z'));
    let tail = app.admin_json("/admin/v1/concerts/c/queue?offset=24&limit=100").await;
    assert_eq!(tail["entries"].as_array().unwrap().len(), 1);
    let past = app.admin_json("/admin/v1/concerts/c/queue?offset=100").await;
    assert_eq!(past["entries"].as_array().unwrap().len(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_public_listener_serves_the_openapi_description_and_the_pages() {
    let app = spawn_app().await;
    let r = app.client.get(format!("{}/openapi.json", app.http())).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let doc: serde_json::Value = r.json().await.unwrap();
    assert!(doc["paths"]["/v1/concerts/{concertId}/queue"]["post"]["responses"]["202"].is_object());
    assert!(doc["paths"]["/admin/v1/concerts/{concertId}/admit"]["post"].is_object());
    let page = app.client.get(format!("{}/", app.http())).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("/assets/room.js"));
    let script = app.client.get(format!("{}/assets/room.js", app.http())).send().await.unwrap();
    assert!(script.text().await.unwrap().contains("EventSource"), "the room watches through the event stream");
}
