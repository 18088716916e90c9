//! The Helm chart (deploy/helm/queuegate), checked as far as tools reach without a cluster:
//! `helm lint --strict` and `helm template` with the defaults and every `ci/` values file, every
//! rendered built-in object validated against Kubernetes' own schemas (`kubernetes-validate
//! --strict`), the promises the chart makes (the admin port never public, readiness on
//! `/readyz`, consumers at most the partitions, the alerts those of grafana/…), and wrong values
//! refused at install with the value named; and the pods as rendered — their arguments, their
//! environment, the generated secrets and admission key — start the real queuegate binary
//! against the real Kafka and Redis, become ready, and stop cleanly on SIGTERM within the
//! grace period. helm and kubernetes-validate are installed under .local/ by
//! `scripts/services.sh tools`.

#[path = "common/mod.rs"]
mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::{json, Value};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn chart() -> PathBuf {
    root().join("deploy/helm/queuegate")
}

fn tool(rel: &str) -> PathBuf {
    let p = root().join(rel);
    assert!(p.exists(), "{} is missing: run scripts/services.sh tools", p.display());
    p
}

/// The defaults with the one value they cannot choose (`trustedProxies`): ci/default-values.yaml.
fn defaults() -> PathBuf {
    chart().join("ci/default-values.yaml")
}

/// Every `ci/*.yaml`, the defaults first.
fn value_sets() -> Vec<Option<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(chart().join("ci"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 3, "ci/ holds the values files: {files:?}");
    files.sort_by_key(|p| *p != defaults());
    files.into_iter().map(Some).collect()
}

fn helm(args: &[&str], values: Option<&Path>) -> Result<String, String> {
    let mut c = Command::new(tool(".local/go/bin/helm"));
    c.args(args).arg(chart());
    if let Some(v) = values {
        c.arg("--values").arg(v);
    }
    let out = c.output().expect("helm runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if out.status.success() {
        Ok(text)
    } else {
        Err(format!("{text}{}", String::from_utf8_lossy(&out.stderr)))
    }
}

/// `helm template` in namespace `sale`, with `values` and `--set`s.
fn render(values: Option<&Path>, sets: &[&str]) -> Result<String, String> {
    let mut args = vec!["template", "qg", "--namespace", "sale"];
    for s in sets {
        args.extend(["--set", s]);
    }
    helm(&args, values)
}

/// The rendered documents as JSON values (empty documents left out).
fn objects(yaml: &str) -> Vec<Value> {
    serde_norway::Deserializer::from_str(yaml)
        .map(|d| Value::deserialize(d).expect("rendered YAML parses"))
        .filter(|v| !v.is_null())
        .collect()
}

fn of_kind<'a>(objs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    objs.iter().filter(|o| o["kind"] == kind).collect()
}

fn named<'a>(objs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    of_kind(objs, kind)
        .into_iter()
        .find(|o| o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name}"))
}

fn label(set: &Option<PathBuf>) -> String {
    set.as_ref().map_or("defaults".into(), |p| p.file_name().unwrap().to_string_lossy().into_owned())
}

#[test]
fn the_chart_lints_strictly_with_the_defaults_and_every_ci_values_file() {
    for set in value_sets() {
        let out = helm(&["lint", "--strict"], set.as_deref()).unwrap_or_else(|e| panic!("{}: {e}", label(&set)));
        assert!(out.contains("0 chart(s) failed"), "{}: {out}", label(&set));
    }
}

#[test]
fn every_rendered_built_in_object_passes_kubernetes_own_schemas() {
    // The operator's CRDs (prometheus-operator) have no schema in kubernetes-validate: their
    // shape is checked by the test below.
    const CRDS: [&str; 2] = ["ServiceMonitor", "PrometheusRule"];
    let dir = std::env::temp_dir().join(format!("qg-chart-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for set in value_sets() {
        let objs = objects(&render(set.as_deref(), &[]).unwrap_or_else(|e| panic!("{}: {e}", label(&set))));
        let builtin: Vec<&Value> = objs.iter().filter(|o| !CRDS.contains(&o["kind"].as_str().unwrap_or(""))).collect();
        assert_eq!(of_kind(&objs, "Deployment").len(), 2, "{}: both roles", label(&set));
        assert!(builtin.len() >= 7, "{}: {} objects", label(&set), builtin.len());
        let file = dir.join(format!("{}.yaml", label(&set)));
        let docs: Vec<String> = builtin.iter().map(|o| serde_norway::to_string(o).unwrap()).collect();
        std::fs::write(&file, docs.join("---\n")).unwrap();
        // The oldest Kubernetes the chart supports (Chart.yaml's kubeVersion) and the newest known.
        for version in ["1.25.0", "1.37.0"] {
            let out = Command::new(tool(".local/venv/bin/kubernetes-validate"))
                .args(["--strict", "--kubernetes-version", version])
                .arg(&file)
                .output()
                .expect("kubernetes-validate runs");
            let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
            assert!(out.status.success(), "{} on Kubernetes {version}: {said}", label(&set));
            assert!(!said.contains("ERROR") && said.contains("INFO"), "{}: {said}", label(&set));
        }
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn the_admin_port_is_never_public_and_every_pod_is_probed_locked_down_and_bounded() {
    for set in value_sets() {
        let what = label(&set);
        let objs = objects(&render(set.as_deref(), &[]).unwrap());
        for svc in of_kind(&objs, "Service") {
            let exposed = matches!(svc["spec"]["type"].as_str(), Some("LoadBalancer" | "NodePort"));
            for port in svc["spec"]["ports"].as_array().unwrap() {
                let admin = port["targetPort"] == "admin" || port["targetPort"] == 8081 || port["port"] == 8081;
                assert!(!(exposed && admin), "{what}: the admin port on a {} Service: {svc}", svc["spec"]["type"]);
            }
        }
        assert_eq!(named(&objs, "Service", "qg-queuegate-admin")["spec"]["type"], "ClusterIP", "{what}");
        for d in of_kind(&objs, "Deployment") {
            let name = d["metadata"]["name"].as_str().unwrap();
            let pod = &d["spec"]["template"]["spec"];
            assert_eq!(pod["securityContext"]["runAsNonRoot"], true, "{what} {name}");
            let grace = pod["terminationGracePeriodSeconds"].as_u64().unwrap();
            for c in pod["containers"].as_array().unwrap() {
                assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz", "{what} {name}");
                assert_eq!(c["readinessProbe"]["httpGet"]["port"], "admin", "{what} {name}");
                assert_eq!(
                    c["livenessProbe"]["httpGet"]["path"], "/healthz",
                    "{what} {name}: Kafka trouble never restarts a pod"
                );
                assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true, "{what} {name}");
                assert_eq!(c["securityContext"]["allowPrivilegeEscalation"], false, "{what} {name}");
                for k in ["requests", "limits"] {
                    for r in ["cpu", "memory"] {
                        assert!(c["resources"][k][r].is_string(), "{what} {name}: resources.{k}.{r}");
                    }
                }
                // The pod outlives its drain: the preStop pause plus the shutdown steps.
                let env =
                    |n: &str| c["env"].as_array().unwrap().iter().find(|e| e["name"] == n).map(|e| e["value"].clone());
                let step: u64 = env("QUEUEGATE_SHUTDOWN_GRACE_SECONDS").unwrap().as_str().unwrap().parse().unwrap();
                let pause: u64 = c["lifecycle"]["preStop"]["exec"]["command"][1].as_str().unwrap().parse().unwrap();
                assert!(grace > pause + 3 * step, "{what} {name}: {grace} s of grace for {pause} + 3 × {step}");
                assert_eq!(env("QUEUEGATE_ADMIN_TOKEN"), Some(Value::Null), "{what} {name}: secrets only by reference");
            }
        }
        for pdb in ["qg-queuegate-gateway", "qg-queuegate-consumer"] {
            named(&objs, "PodDisruptionBudget", pdb);
        }
    }
}

#[test]
fn consumers_are_capped_at_the_partitions_and_the_optional_parts_match_their_sources() {
    let full = chart().join("ci/full-values.yaml");
    let objs = objects(&render(Some(&full), &[]).unwrap());
    // 30 asked for, 12 partitions.
    assert_eq!(named(&objs, "Deployment", "qg-queuegate-consumer")["spec"]["replicas"], 12);
    let few = objects(&render(Some(&defaults()), &["consumer.replicas=2", "kafka.partitions=24"]).unwrap());
    assert_eq!(named(&few, "Deployment", "qg-queuegate-consumer")["spec"]["replicas"], 2);

    // One source for the alerts: grafana/alerts.yml's groups, as they are.
    let alerts: Value =
        serde_norway::from_str(&std::fs::read_to_string(root().join("grafana/alerts.yml")).unwrap()).unwrap();
    let rule = named(&objs, "PrometheusRule", "qg-queuegate");
    assert_eq!(rule["spec"]["groups"], alerts["groups"]);
    assert!(alerts["groups"][0]["rules"].as_array().unwrap().len() >= 10);
    let dashboard = named(&objs, "ConfigMap", "qg-queuegate-dashboard");
    assert_eq!(dashboard["metadata"]["labels"]["grafana_dashboard"], "1");
    let served: Value = serde_json::from_str(dashboard["data"]["queuegate.json"].as_str().unwrap()).unwrap();
    let source: Value =
        serde_json::from_str(&std::fs::read_to_string(root().join("grafana/dashboards/queuegate.json")).unwrap())
            .unwrap();
    assert_eq!(served, source);
    let monitor = named(&objs, "ServiceMonitor", "qg-queuegate");
    assert_eq!(monitor["spec"]["endpoints"][0]["port"], "admin");
    let metrics = named(&objs, "Service", "qg-queuegate-metrics");
    for (k, v) in monitor["spec"]["selector"]["matchLabels"].as_object().unwrap() {
        assert_eq!(&metrics["metadata"]["labels"][k], v, "the ServiceMonitor selects the metrics Service");
    }

    // The admin port: from the monitoring namespace and the pods labelled as admin clients only,
    // never from every pod of the namespace (issue 36: `podSelector: {}` let any pod admit,
    // revoke and sell out with a leaked token, and read /metrics).
    let np = named(&objs, "NetworkPolicy", "qg-queuegate");
    let admin_rule =
        np["spec"]["ingress"].as_array().unwrap().iter().find(|r| r["ports"][0]["port"] == "admin").unwrap();
    assert_eq!(
        admin_rule["from"],
        json!([
            {"podSelector": {"matchLabels": {"queuegate-admin": "true"}}},
            {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
        ])
    );
    assert!(
        admin_rule["from"].as_array().unwrap().iter().all(|p| p["podSelector"] != json!({})),
        "not every pod of the namespace"
    );

    // The consumers' egress (they deliver webhooks): DNS, Kafka, Redis and the webhook networks
    // only; public addresses minus every internal range, plus the networks the operator allowed,
    // which queuegate is told too.
    let egress = named(&objs, "NetworkPolicy", "qg-queuegate-consumer-egress");
    assert_eq!(egress["spec"]["policyTypes"], json!(["Egress"]));
    assert_eq!(egress["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/component"], "consumer");
    let rules = egress["spec"]["egress"].as_array().unwrap();
    assert_eq!(rules.len(), 4, "DNS, Kafka, Redis, webhooks: {rules:?}");
    assert!(rules.iter().all(|r| !r["to"].as_array().unwrap().is_empty()), "no rule open to everywhere");
    assert_eq!(rules[0]["ports"], json!([{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]));
    assert_eq!(rules[1]["ports"], json!([{"port": 9093, "protocol": "TCP"}]), "Kafka");
    assert_eq!(rules[2]["ports"][0], json!({"port": 6379, "protocol": "TCP"}), "Redis");
    let blocks: Vec<&Value> = rules[3]["to"].as_array().unwrap().iter().map(|p| &p["ipBlock"]).collect();
    assert!(rules[3].get("ports").is_none(), "webhooks on any port");
    let v4 = blocks.iter().find(|b| b["cidr"] == "0.0.0.0/0").unwrap();
    for internal in ["10.0.0.0/8", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10"]
    {
        assert!(v4["except"].as_array().unwrap().contains(&json!(internal)), "{internal} excepted");
    }
    let v6 = blocks.iter().find(|b| b["cidr"] == "::/0").unwrap();
    for internal in ["::/96", "fc00::/7", "fe80::/10"] {
        assert!(v6["except"].as_array().unwrap().contains(&json!(internal)), "{internal} excepted");
    }
    assert!(blocks.iter().any(|b| b["cidr"] == "10.40.0.0/16" && b.get("except").is_none()), "the allowed CRM network");
    for d in ["qg-queuegate-consumer", "qg-queuegate-gateway"] {
        let env = named(&objs, "Deployment", d)["spec"]["template"]["spec"]["containers"][0]["env"].clone();
        let allow = env.as_array().unwrap().iter().find(|e| e["name"] == "QUEUEGATE_WEBHOOK_ALLOW_NETWORKS").unwrap();
        assert_eq!(allow["value"], "10.40.0.0/16,fd00:40::/64", "{d}");
        let parsed = queuegate::events::egress::parse_networks(allow["value"].as_str().unwrap());
        assert!(parsed.is_ok(), "queuegate takes what the chart renders: {parsed:?}");
    }
    let default = objects(&render(Some(&defaults()), &[]).unwrap());
    assert!(
        of_kind(&default, "NetworkPolicy").iter().all(|n| n["metadata"]["name"] != "qg-queuegate-consumer-egress"),
        "off by default"
    );

    // The gate example asks the gateway's Service, and sends fans to the room with ?return=.
    let ingress = named(&objs, "Ingress", "qg-queuegate-gate-example");
    let a = &ingress["metadata"]["annotations"];
    assert_eq!(
        a["nginx.ingress.kubernetes.io/auth-url"],
        "http://qg-queuegate-gateway.sale.svc.cluster.local:80/v1/concerts/tour-2026/gate"
    );
    assert_eq!(a["nginx.ingress.kubernetes.io/auth-signin"], "https://queue.example.com/c/tour-2026");
    assert_eq!(a["nginx.ingress.kubernetes.io/auth-signin-redirect-param"], "return");

    // The chart's Secret: generated values that queuegate accepts.
    let secret = named(&objs, "Secret", "qg-queuegate");
    let data = |k: &str| {
        use base64::Engine;
        let b = base64::engine::general_purpose::STANDARD.decode(secret["data"][k].as_str().unwrap()).unwrap();
        String::from_utf8(b).unwrap()
    };
    assert!(data("admin-token").len() >= 16 && data("token-secret").len() >= 32);
    let pem = data("admission-key.pem");
    let key = std::env::temp_dir().join(format!("qg-chart-key-{}.pem", std::process::id()));
    std::fs::write(&key, &pem).unwrap();
    let out = Command::new("openssl").args(["pkey", "-noout", "-text", "-in"]).arg(&key).output().expect("openssl");
    std::fs::remove_file(&key).ok();
    assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"), "PKCS#8: {pem}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("ED25519"), "an Ed25519 key");
    assert_eq!(secret["data"].get("fan-jwt-secret"), None, "an empty optional secret is left out");

    // With an existing Secret the chart makes none and every pod refers to the operator's.
    let objs = objects(&render(Some(&chart().join("ci/existing-secret-values.yaml")), &[]).unwrap());
    assert!(of_kind(&objs, "Secret").is_empty());
    assert!(of_kind(&objs, "HorizontalPodAutoscaler").is_empty());
    let gw = named(&objs, "Deployment", "qg-queuegate-gateway");
    assert_eq!(gw["spec"]["replicas"], 4);
    assert_eq!(gw["spec"]["template"]["spec"]["volumes"][0]["secret"]["secretName"], "queuegate-secrets");
}

#[test]
fn wrong_values_fail_at_install_naming_the_value() {
    for (set, says) in [
        ("fanIdentity=body", "fanIdentity"),
        ("kafka.partitions=0", "partitions"),
        ("gateway.service.type=ExternalName", "type"),
        ("securityContext.readOnlyRootFilesystem=false", "readOnlyRootFilesystem"),
        ("redis.url=http://redis:6379", "url"),
        ("secrets.tokenSecret=short", "tokenSecret"),
        ("gateway.replicaz=3", "replicaz"),
        ("terminationGracePeriodSeconds=30", "terminationGracePeriodSeconds"),
        ("fanIdentity=trusted-header", "fanIdHeader"),
        ("gateExample.enabled=true", "publicUrl"),
        ("networkPolicy.consumerEgress.enabled=true", "consumerEgress.kafka.to"),
    ] {
        let e = render(Some(&defaults()), &[set]).expect_err(set);
        assert!(e.contains(says), "{set}: {e}");
    }
    // Issue 36: behind an ingress (the default), an empty trustedProxies put every fan in the
    // controller pod's one per-address budget; the chart now asks for the choice.
    let e = render(None, &[]).expect_err("the defaults alone");
    assert!(e.contains("trustedProxies") && e.contains("behindProxy"), "the defaults alone: {e}");
    // An upgrade rendered where the chart cannot read its Secret back (helm template, GitOps)
    // would generate new secrets and log every fan out: refused, naming the way out.
    let e =
        helm(&["template", "qg", "--namespace", "sale", "--is-upgrade"], Some(&defaults())).expect_err("is-upgrade");
    assert!(e.contains("secrets.existingSecret"), "an upgrade without the Secret: {e}");
    let existing = chart().join("ci/existing-secret-values.yaml");
    helm(&["template", "qg", "--namespace", "sale", "--is-upgrade"], Some(&existing))
        .expect("an existing Secret upgrades");
    let direct = render(None, &["behindProxy=false"]).expect("fans straight to the gateways need no proxy CIDRs");
    assert!(!direct.contains("QUEUEGATE_TRUSTED_PROXIES"), "no proxy believed when there is none");
}

/// The rendered container's environment as the kubelet would give it: values as they are,
/// `secretKeyRef`s from the rendered Secret (a missing optional key left out), the admission key
/// written to `keys` (the Secret's volume), the listeners on free loopback ports.
fn pod_env(deployment: &Value, secret: &Value, keys: &Path) -> (Vec<String>, Vec<(String, String)>, u16) {
    use base64::Engine;
    let c = &deployment["spec"]["template"]["spec"]["containers"][0];
    let args = c["args"].as_array().unwrap().iter().map(|a| a.as_str().unwrap().to_owned()).collect();
    let admin = common::free_port();
    let mut env = Vec::new();
    for e in c["env"].as_array().unwrap() {
        let name = e["name"].as_str().unwrap().to_owned();
        let value = if let Some(v) = e["value"].as_str() {
            v.to_owned()
        } else {
            let key = e["valueFrom"]["secretKeyRef"]["key"].as_str().unwrap();
            let Some(b64) = secret["data"][key].as_str() else {
                assert_eq!(e["valueFrom"]["secretKeyRef"]["optional"], true, "{name}: the Secret has no {key}");
                continue;
            };
            String::from_utf8(base64::engine::general_purpose::STANDARD.decode(b64).unwrap()).unwrap()
        };
        let value = match name.as_str() {
            "QUEUEGATE_HTTP_ADDR" => format!("127.0.0.1:{}", common::free_port()),
            "QUEUEGATE_ADMIN_ADDR" => format!("127.0.0.1:{admin}"),
            "QUEUEGATE_ADMISSION_KEY_FILE" => {
                assert_eq!(value, "/keys/admission-key.pem");
                let b64 = secret["data"]["admission-key.pem"].as_str().unwrap();
                let path = keys.join("admission-key.pem");
                std::fs::write(&path, base64::engine::general_purpose::STANDARD.decode(b64).unwrap()).unwrap();
                path.display().to_string()
            }
            "QUEUEGATE_ADMIN_TOKENS_FILE" => {
                assert_eq!(value, "/keys/admin-tokens.json");
                let items = &deployment["spec"]["template"]["spec"]["volumes"][0]["secret"]["items"];
                assert!(items.as_array().unwrap().iter().any(|i| i["key"] == "admin-tokens.json"), "mounted: {items}");
                let b64 = secret["data"]["admin-tokens.json"].as_str().unwrap();
                let path = keys.join("admin-tokens.json");
                std::fs::write(&path, base64::engine::general_purpose::STANDARD.decode(b64).unwrap()).unwrap();
                path.display().to_string()
            }
            _ => value,
        };
        env.push((name, value));
    }
    (args, env, admin)
}

/// A viewer's token the pods' test puts in `secrets.adminTokens`.
const VIEWER: &str = "chart-viewer-token-0123456789";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rendered_pods_start_queuegate_become_ready_and_stop_cleanly_within_their_grace() {
    let names = common::Names::new();
    names.create_topics(2).await;
    let sets = [
        format!("kafka.brokers={}", names.brokers),
        format!("kafka.topic={}", names.topic),
        format!("kafka.group={}", names.group),
        format!("redis.url={}", names.redis_url),
        format!("redis.prefix={}", names.prefix),
        // A named viewer token, from the Secret's admin-tokens.json (QUEUEGATE_ADMIN_TOKENS_FILE).
        "secrets.adminTokens[0].name=dash,secrets.adminTokens[0].role=viewer".to_owned(),
        format!("secrets.adminTokens[0].token={VIEWER}"),
    ];
    let sets: Vec<&str> = sets.iter().map(String::as_str).collect();
    let objs = objects(&render(Some(&defaults()), &sets).unwrap());
    let secret = named(&objs, "Secret", "qg-queuegate");
    let keys = std::env::temp_dir().join(format!("qg-chart-keys-{}", std::process::id()));
    std::fs::create_dir_all(&keys).unwrap();
    let client = reqwest::Client::new();
    for role in ["gateway", "consumer"] {
        let d = named(&objs, "Deployment", &format!("qg-queuegate-{role}"));
        let grace =
            Duration::from_secs(d["spec"]["template"]["spec"]["terminationGracePeriodSeconds"].as_u64().unwrap());
        let (args, env, admin) = pod_env(d, secret, &keys);
        assert_eq!(args, [role]);
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_queuegate"));
        cmd.args(&args).env_clear().env("PATH", std::env::var("PATH").unwrap_or_default());
        cmd.envs(env.iter().map(|(k, v)| (k, v)));
        cmd.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::piped());
        let mut child = cmd.spawn().expect("queuegate starts");
        let ready = common::poll_until(Duration::from_secs(60), async || {
            let r = client.get(format!("http://127.0.0.1:{admin}/readyz")).send().await;
            r.is_ok_and(|r| r.status() == 200)
        })
        .await;
        if !ready {
            child.kill().ok();
            let out = child.wait_with_output().unwrap();
            panic!("{role}: /readyz never 200 with the chart's environment: {}", String::from_utf8_lossy(&out.stderr));
        }
        // The admin token from the Secret opens the admin API; a stranger's does not.
        let token = env.iter().find(|(k, _)| k == "QUEUEGATE_ADMIN_TOKEN").unwrap().1.clone();
        let r =
            client.get(format!("http://127.0.0.1:{admin}/admin/v1/concerts")).bearer_auth(&token).send().await.unwrap();
        assert_eq!(r.status(), 200, "{role}");
        let r =
            client.get(format!("http://127.0.0.1:{admin}/admin/v1/concerts")).bearer_auth("x").send().await.unwrap();
        assert_eq!(r.status(), 401, "{role}");
        // The named viewer reads, and changes nothing.
        let r =
            client.get(format!("http://127.0.0.1:{admin}/admin/v1/concerts")).bearer_auth(VIEWER).send().await.unwrap();
        assert_eq!(r.status(), 200, "{role}: the viewer reads");
        let r = client
            .put(format!("http://127.0.0.1:{admin}/admin/v1/concerts/chart-c"))
            .bearer_auth(VIEWER)
            .json(&json!({"state": "open"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403, "{role}: the viewer changes nothing");
        // SIGTERM, as the kubelet sends it after the preStop pause: a clean exit within the grace.
        common::signal(child.id(), "-TERM");
        let stopping = Instant::now();
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s;
            }
            assert!(stopping.elapsed() < grace, "{role} still running {grace:?} after SIGTERM");
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        assert!(status.success(), "{role} exited with {status}");
    }
    std::fs::remove_dir_all(&keys).ok();
}
