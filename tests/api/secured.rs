//! Secured connections: Redis over TLS with an ACL user and password; Kafka over SASL_SSL
//! (SCRAM-SHA-512). The real binary runs as a process, with the CA given to OpenSSL through
//! SSL_CERT_FILE and the secrets through settings; its logs (at debug) must never hold them.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::common::private_redis::PrivateRedis;
use crate::common::tls::Certs;
use crate::common::{free_port, poll_until, wait_for_port, Names, ADMIN_TOKEN};

/// `queuegate run` as a process on fixed free ports with `names`' environment plus `extra`,
/// logging at debug to `log`. Returns the process, the public and the admin base URLs.
fn spawn_run(names: &Names, extra: &[(&str, String)], log: &std::path::Path) -> (Child, String, String) {
    let (http, admin) = (free_port(), free_port());
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_queuegate"));
    cmd.arg("run");
    for (k, v) in names.env() {
        cmd.env(k, v);
    }
    cmd.env("QUEUEGATE_HTTP_ADDR", format!("127.0.0.1:{http}"))
        .env("QUEUEGATE_ADMIN_ADDR", format!("127.0.0.1:{admin}"))
        .env("QUEUEGATE_INSECURE_DEV", "true")
        .env("QUEUEGATE_FAN_IDENTITY", "body")
        .env("QUEUEGATE_LOG", "debug");
    for (k, v) in extra {
        cmd.env(k, v);
    }
    cmd.stdout(Stdio::null()).stderr(std::fs::File::create(log).unwrap());
    let child = cmd.spawn().expect("spawn queuegate");
    assert!(wait_for_port(admin, Duration::from_secs(30)), "queuegate's admin listener came up");
    (child, format!("http://127.0.0.1:{http}"), format!("http://127.0.0.1:{admin}"))
}

/// Opens concert `c`, joins `fans` fans and waits until the admin API counts them waiting.
async fn joins_reach_redis(public: &str, admin: &str, fans: u64) -> bool {
    let client = reqwest::Client::new();
    let put = client
        .put(format!("{admin}/admin/v1/concerts/c"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&serde_json::json!({"state": "open"}))
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 200, "{:?}", put.text().await);
    tokio::time::sleep(Duration::from_millis(1500)).await; // the concert cache
    for i in 0..fans {
        let r = client
            .post(format!("{public}/v1/concerts/c/queue"))
            .json(&serde_json::json!({"userId": format!("fan-{i}")}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
    }
    poll_until(Duration::from_secs(60), async || {
        let r = client.get(format!("{admin}/admin/v1/concerts/c")).bearer_auth(ADMIN_TOKEN).send().await.unwrap();
        r.json::<serde_json::Value>().await.map(|v| v["waiting"] == fans).unwrap_or(false)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_over_tls_with_an_acl_user_queues_fans_and_never_logs_the_password() {
    const PASSWORD: &str = "redis-Pa55word-never-logged";
    let certs = Certs::make();
    let redis = PrivateRedis::start_tls(&certs, "queuegate", PASSWORD);
    let names = Names::on(crate::common::brokers(), format!("rediss://queuegate:{PASSWORD}@127.0.0.1:{}", redis.port));
    names.create_topics(1).await;
    let log = certs.dir.join("queuegate.log");
    let (mut app, public, admin) = spawn_run(&names, &[("SSL_CERT_FILE", Certs::s(&certs.ca()))], &log);
    let queued = joins_reach_redis(&public, &admin, 5).await;
    let _ = app.kill();
    let _ = app.wait();
    let logs = std::fs::read_to_string(&log).unwrap();
    assert!(queued, "five fans queued through TLS; logs:\n{logs}");
    assert!(!logs.contains(PASSWORD), "the Redis password is in the logs");

    // Without the CA the server is not trusted: not ready, and still no password in the logs.
    let log = certs.dir.join("untrusted.log");
    let (mut app, _, admin) = spawn_run(&names, &[], &log);
    let ready = reqwest::get(format!("{admin}/readyz")).await.unwrap();
    assert_eq!(ready.status(), 503);
    let body = ready.text().await.unwrap();
    let _ = app.kill();
    let _ = app.wait();
    assert!(body.contains("redis"), "readyz names Redis: {body}");
    let logs = std::fs::read_to_string(&log).unwrap();
    assert!(!logs.contains(PASSWORD), "the Redis password is in the logs");

    // A CA file that does not exist stops start-up with one line naming it.
    let out = Command::new(env!("CARGO_BIN_EXE_queuegate"))
        .arg("run")
        .envs(names.env())
        .env("QUEUEGATE_INSECURE_DEV", "true")
        .env("QUEUEGATE_FAN_IDENTITY", "body")
        .env("SSL_CERT_FILE", "/nonexistent/ca.pem")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("SSL_CERT_FILE"), "{err}");
    assert!(!err.contains(PASSWORD));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_over_sasl_ssl_with_scram_queues_fans_and_never_logs_the_password() {
    use crate::common::private_kafka::{PrivateKafka, SaslSsl};
    const PASSWORD: &str = "kafka-Pa55word-never-logged";
    let certs = Certs::make();
    let secure_port = free_port();
    let kafka = PrivateKafka::start_with(Some(SaslSsl {
        certs: &certs,
        user: "queuegate",
        password: PASSWORD,
        port: secure_port,
    }));
    // Topics through the broker's own PLAINTEXT listener; queuegate gets only the secured one.
    let names = Names::on(kafka.brokers(), crate::common::redis_url());
    names.create_topics(1).await;
    let secured = |password: &str| {
        vec![
            ("QUEUEGATE_KAFKA_BROKERS", format!("127.0.0.1:{secure_port}")),
            (
                "QUEUEGATE_KAFKA_PROPERTIES",
                format!(
                    "security.protocol=SASL_SSL,sasl.mechanisms=SCRAM-SHA-512,sasl.username=queuegate,\
                     sasl.password={password},ssl.ca.location={}",
                    Certs::s(&certs.ca())
                ),
            ),
        ]
    };
    let log = certs.dir.join("queuegate.log");
    let (mut app, public, admin) = spawn_run(&names, &secured(PASSWORD), &log);
    let queued = joins_reach_redis(&public, &admin, 5).await;
    let _ = app.kill();
    let _ = app.wait();
    let logs = std::fs::read_to_string(&log).unwrap();
    assert!(queued, "five fans through SASL_SSL; logs:\n{logs}");
    assert!(!logs.contains(PASSWORD), "the Kafka password is in the logs");

    // A wrong password: joins answer 503 and readiness names kafka as degraded (the broker
    // refuses the client; the instance still serves status, the gate and rooms, so it stays
    // ready: docs/reference-metrics.md#readiness), and neither password logged.
    let log = certs.dir.join("refused.log");
    let (mut app, public, admin) = spawn_run(&names, &secured("wrong-Pa55word-never-logged"), &log);
    let client = reqwest::Client::new();
    let put = client.put(format!("{admin}/admin/v1/concerts/c")).bearer_auth(ADMIN_TOKEN);
    assert_eq!(put.json(&serde_json::json!({"state": "open"})).send().await.unwrap().status(), 200);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let join = client.post(format!("{public}/v1/concerts/c/queue")).json(&serde_json::json!({"userId": "late"}));
    let refused = join.send().await.unwrap().status().as_u16();
    let ready = reqwest::get(format!("{admin}/readyz")).await.unwrap();
    let ready = (ready.status().as_u16(), ready.json::<serde_json::Value>().await.unwrap());
    let _ = app.kill();
    let _ = app.wait();
    let logs = std::fs::read_to_string(&log).unwrap();
    assert_eq!(
        (refused, ready.0, ready.1["kafka"].clone()),
        (503, 200, false.into()),
        "joins fail and readiness says kafka when Kafka refuses the credentials: {}; logs:\n{logs}",
        ready.1
    );
    assert!(
        ready.1["degraded"].as_array().is_some_and(|d| d.iter().any(|p| p == "kafka")),
        "degraded names kafka: {}",
        ready.1
    );
    assert!(!logs.contains("wrong-Pa55word-never-logged") && !logs.contains(PASSWORD));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_cluster_over_tls_with_an_acl_user_queues_fans_and_never_logs_the_password() {
    const PASSWORD: &str = "cluster-Pa55word-never-logged";
    let certs = Certs::make();
    let cluster = crate::common::private_cluster::PrivateRedisCluster::start_tls(&certs, "queuegate", PASSWORD);
    assert!(cluster.url().starts_with("rediss+cluster://queuegate:"));
    let names = Names::on(crate::common::brokers(), cluster.url());
    names.create_topics(1).await;
    let log = certs.dir.join("queuegate-cluster.log");
    let (mut app, public, admin) = spawn_run(&names, &[("SSL_CERT_FILE", Certs::s(&certs.ca()))], &log);
    let queued = joins_reach_redis(&public, &admin, 5).await;
    let _ = app.kill();
    let _ = app.wait();
    let logs = std::fs::read_to_string(&log).unwrap();
    assert!(queued, "five fans queued on the TLS cluster; logs:\n{logs}");
    assert!(!logs.contains(PASSWORD), "the Redis password is in the logs");
}
