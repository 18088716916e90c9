//! A real Prometheus scrapes a running queuegate under a short load; every dashboard panel's
//! query and every alert expression is then asked of it through its HTTP API.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use queuegate::config::Role;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;
use serde_json::Value;

use crate::common::{free_port, spawn_role, Names, ADMIN_TOKEN as ADMIN};
use crate::{read, repo};

struct Prometheus {
    child: Child,
    dir: std::path::PathBuf,
    url: String,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn start_prometheus(target: &str) -> Prometheus {
    let port = free_port();
    let dir = std::env::temp_dir().join(format!("qgobs-prom-{port}"));
    std::fs::create_dir_all(&dir).unwrap();
    let config = format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {}\nscrape_configs:\n  - job_name: queuegate\n    static_configs:\n      - targets: [\"{target}\"]\n",
        repo("grafana/alerts.yml").display()
    );
    std::fs::write(dir.join("prometheus.yml"), config).unwrap();
    let child = Command::new("prometheus")
        .arg(format!("--config.file={}", dir.join("prometheus.yml").display()))
        .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("prometheus is installed (make test installs Debian's prometheus package)");
    Prometheus { child, dir, url: format!("http://127.0.0.1:{port}") }
}

async fn query(client: &reqwest::Client, prom: &str, q: &str) -> Value {
    client.get(format!("{prom}/api/v1/query")).query(&[("query", q)]).send().await.unwrap().json().await.unwrap()
}

/// Whether a query result holds at least one real (non-NaN) value.
fn has_value(v: &Value) -> bool {
    v["data"]["result"].as_array().is_some_and(|rs| {
        rs.iter().any(|r| r["value"][1].as_str().is_some_and(|x| x != "NaN" && x != "+Inf" && x != "-Inf"))
    })
}

fn metric_names(expr: &str) -> Vec<String> {
    let mut out: Vec<String> = expr
        .match_indices("queuegate_")
        .map(|(i, _)| expr[i..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect())
        .collect();
    out.sort();
    out.dedup();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_dashboard_panel_and_alert_expression_returns_data_from_a_live_queuegate() {
    // The application, on its own topic and key prefix.
    let names = Names::new();
    names.create_topics(3).await;
    let app = spawn_role(&names, Role::Run, |_| {}).await;
    let (http, admin_addr, topic, brokers) = (
        app.http().to_owned(),
        app.admin.trim_start_matches("http://").to_owned(),
        names.topic.clone(),
        names.brokers.clone(),
    );
    let client = reqwest::Client::new();
    let r = client
        .put(format!("http://{admin_addr}/admin/v1/concerts/obs"))
        .bearer_auth(ADMIN)
        .json(&serde_json::json!({"state": "open", "admitPerSecond": 5, "maxActive": 1000}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    let prom = start_prometheus(&admin_addr);
    let mut ready = false;
    for _ in 0..300 {
        if client.get(format!("{}/-/ready", prom.url)).send().await.is_ok_and(|r| r.status() == 200) {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ready, "Prometheus did not become ready within 30 s");

    // Load for the whole check: joins, status polls, readiness probes, manual admissions, and
    // one record that can only be dead-lettered.
    let poison: FutureProducer = ClientConfig::new().set("bootstrap.servers", &brokers).create().unwrap();
    poison
        .send(FutureRecord::to(&topic).key("x:obs").payload("not a queue entry"), Duration::from_secs(10))
        .await
        .unwrap();
    let load = {
        let (client, http, admin_addr) = (client.clone(), http.clone(), admin_addr.clone());
        tokio::spawn(async move {
            for i in 0.. {
                let j: Value = client
                    .post(format!("{http}/v1/concerts/obs/queue"))
                    .json(&serde_json::json!({"userId": format!("fan-{i}")}))
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                let token = j["token"].as_str().unwrap_or_default().to_owned();
                let _ = client.get(format!("{http}/v1/concerts/obs/queue/fan-{i}")).bearer_auth(token).send().await;
                if i % 10 == 0 {
                    let _ = client.get(format!("http://{admin_addr}/readyz")).send().await;
                    let _ = client
                        .post(format!("http://{admin_addr}/admin/v1/concerts/obs/admit"))
                        .bearer_auth(ADMIN)
                        .json(&serde_json::json!({"count": 1}))
                        .send()
                        .await;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };

    let dashboard: Value = serde_json::from_str(&read("grafana/dashboards/queuegate.json")).unwrap();
    let panels: Vec<(String, String)> = dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| {
            let title = p["title"].as_str().unwrap().to_owned();
            p["targets"]
                .as_array()
                .unwrap()
                .iter()
                .map(move |t| (title.clone(), t["expr"].as_str().unwrap().to_owned()))
        })
        .collect();
    let alerts: Vec<String> =
        read("grafana/alerts.yml").lines().filter_map(|l| l.trim().strip_prefix("expr: ")).map(str::to_owned).collect();
    assert!(panels.len() >= 13 && alerts.len() >= 5);

    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    let mut missing: Vec<String>;
    loop {
        missing = Vec::new();
        for (title, expr) in &panels {
            let v = query(&client, &prom.url, expr).await;
            if v["status"] != "success" || !has_value(&v) {
                missing.push(format!("panel {title:?}: {expr} -> {}", v["data"]["result"]));
            }
        }
        for expr in &alerts {
            let v = query(&client, &prom.url, expr).await;
            assert_eq!(v["status"], "success", "alert expression does not parse: {expr}: {v}");
            for name in metric_names(expr) {
                if !has_value(&query(&client, &prom.url, &format!("count({name})")).await) {
                    missing.push(format!("alert {expr}: no series {name}"));
                }
            }
        }
        if missing.is_empty() || tokio::time::Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    load.abort();
    let rules: Value = client.get(format!("{}/api/v1/rules", prom.url)).send().await.unwrap().json().await.unwrap();
    let loaded: Vec<&Value> =
        rules["data"]["groups"].as_array().unwrap().iter().flat_map(|g| g["rules"].as_array().unwrap()).collect();
    app.shutdown().await.expect("clean shutdown");
    assert!(missing.is_empty(), "queries without data after 120 s:\n{}", missing.join("\n"));
    assert_eq!(loaded.len(), alerts.len(), "Prometheus loaded every alert rule");
    assert!(loaded.iter().all(|r| r["health"] == "ok"), "rules evaluate: {loaded:?}");
}
