//! Dockerfile and docker-compose.yml agree with the binary and with each other.

use std::collections::BTreeSet;
use std::process::Command;

use crate::{env_names_of_the_binary, read, repo};

fn queuegate_names(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (i, _) in text.match_indices("QUEUEGATE_") {
        let name: String = text[i..].chars().take_while(|c| c.is_ascii_uppercase() || *c == '_').collect();
        out.insert(name);
    }
    out
}

#[test]
fn every_environment_name_in_the_deploy_files_is_one_queuegate_reads() {
    let known = env_names_of_the_binary();
    assert!(known.contains("QUEUEGATE_KAFKA_BROKERS") && known.len() > 20, "parsed --help: {known:?}");
    for file in ["docker-compose.yml", "Dockerfile", "scripts/up.sh"] {
        let unknown: Vec<String> = queuegate_names(&read(file)).difference(&known).cloned().collect();
        assert!(unknown.is_empty(), "{file} sets {unknown:?}, which queuegate does not read");
    }
}

#[test]
fn every_file_the_compose_file_mounts_exists() {
    let compose = read("docker-compose.yml");
    let mounts: Vec<&str> =
        compose.lines().filter_map(|l| l.trim().strip_prefix("- ./")).map(|m| m.split(':').next().unwrap()).collect();
    assert!(mounts.len() >= 4, "found mounts {mounts:?}");
    for m in mounts {
        assert!(repo(m).exists(), "docker-compose.yml mounts ./{m}, which does not exist");
    }
}

#[test]
fn ports_agree_between_the_image_the_compose_file_and_prometheus() {
    let dockerfile = read("Dockerfile");
    let compose = read("docker-compose.yml");
    let prom = read("grafana/prometheus.yml");
    assert!(
        dockerfile.contains("QUEUEGATE_HTTP_ADDR=0.0.0.0:8080")
            && dockerfile.contains("QUEUEGATE_ADMIN_ADDR=0.0.0.0:8081")
    );
    assert!(dockerfile.contains("EXPOSE 8080 8081"));
    assert!(dockerfile.contains("http://127.0.0.1:8081/healthz"), "the healthcheck asks the admin listener");
    assert!(
        compose.contains("QUEUEGATE_HTTP_ADDR: 0.0.0.0:8080") && compose.contains("QUEUEGATE_ADMIN_ADDR: 0.0.0.0:8081")
    );
    for published in ["\"8080:8080\"", "\"127.0.0.1:8081:8081\"", "\"127.0.0.1:8082:8081\""] {
        assert!(compose.contains(published), "compose publishes {published}");
    }
    for secret in ["QUEUEGATE_ADMIN_TOKEN", "QUEUEGATE_TOKEN_SECRET"] {
        assert!(
            compose.contains(&format!("{secret}: ${{{secret}:?")),
            "compose requires {secret} from the environment"
        );
    }
    assert!(!compose.contains("change-me"), "no example secret ships as a default");
    assert!(prom.contains("gateway:8081") && prom.contains("consumer:8081"), "Prometheus scrapes the admin listeners");
    assert!(compose.contains("/etc/prometheus/alerts.yml") && prom.contains("/etc/prometheus/alerts.yml"));
}

#[test]
fn the_image_runs_the_binary_the_build_produces_with_real_subcommands() {
    let dockerfile = read("Dockerfile");
    let cargo = read("Cargo.toml");
    assert!(cargo.contains("name = \"queuegate\""), "the package (and so the binary) is queuegate");
    assert!(dockerfile.contains("cargo build --release --locked --bin queuegate"));
    assert!(dockerfile.contains("COPY --from=build /src/target/release/queuegate /usr/local/bin/queuegate"));
    assert!(dockerfile.contains("ENTRYPOINT [\"/usr/local/bin/queuegate\"]"));
    assert!(dockerfile.contains("USER 10001"), "runs as non-root");
    let compose = read("docker-compose.yml");
    // The `command:` of every service that runs the queuegate image.
    let mut blocks: Vec<String> = Vec::new();
    for line in compose.lines() {
        let is_service = line.starts_with("  ") && !line.starts_with("   ") && line.trim_end().ends_with(':');
        if is_service || blocks.is_empty() {
            blocks.push(String::new());
        }
        let last = blocks.last_mut().unwrap();
        last.push_str(line);
        last.push('\n');
    }
    let mut commands: Vec<String> = Vec::new();
    for block in blocks.iter().filter(|b| b.contains("image: queuegate:local")) {
        if let Some(c) = block.lines().find_map(|l| l.trim().strip_prefix("command: [\"")) {
            commands.push(c.split('"').next().unwrap().to_owned());
        }
    }
    commands.push("run".into()); // the image's default CMD
    commands.push("keygen".into()); // the keygen service's entrypoint
    assert!(commands.contains(&"gateway".to_owned()) && commands.contains(&"consumer".to_owned()), "{commands:?}");
    for c in commands {
        let ok = Command::new(env!("CARGO_BIN_EXE_queuegate"))
            .args([c.as_str(), "--help"])
            .output()
            .unwrap()
            .status
            .success();
        assert!(ok, "`queuegate {c}` is not a subcommand");
    }
}

#[test]
fn the_compose_stack_creates_the_topics_and_persists_redis_as_documented() {
    let compose = read("docker-compose.yml");
    assert!(compose.contains("--topic queue.entry --partitions 12"));
    assert!(compose.contains("--topic queue.entry.dlt"));
    assert!(compose.contains("QUEUEGATE_KAFKA_TOPIC: queue.entry"));
    assert!(compose.contains("\"--appendonly\", \"yes\", \"--appendfsync\", \"always\""));
    assert!(compose.contains("KAFKA_TRANSACTION_STATE_LOG_MIN_ISR: 1"), "transactions work on one broker");
    let ds = read("grafana/provisioning/datasources/prometheus.yml");
    let dash = read("grafana/dashboards/queuegate.json");
    assert!(
        ds.contains("uid: prometheus") && dash.contains("\"uid\": \"prometheus\""),
        "the dashboard uses the provisioned data source"
    );
    assert!(read("grafana/provisioning/dashboards/queuegate.yml").contains("/var/lib/grafana/dashboards"));
    assert!(compose.contains("./grafana/dashboards:/var/lib/grafana/dashboards"));
}

/// docker-compose.yml as YAML (what compose reads), not as text.
fn compose() -> serde_norway::Value {
    serde_norway::from_str(&read("docker-compose.yml")).expect("docker-compose.yml is YAML")
}

fn service<'a>(c: &'a serde_norway::Value, name: &str) -> &'a serde_norway::Value {
    c.get("services").and_then(|s| s.get(name)).unwrap_or_else(|| panic!("no service {name}"))
}

/// A service's environment as (name, value) pairs, with `<<:` merges resolved.
fn environment(c: &serde_norway::Value, name: &str) -> Vec<(String, String)> {
    let mut env = service(c, name).get("environment").cloned().unwrap_or_default();
    env.apply_merge().expect("merge keys resolve");
    env.as_mapping()
        .map(|m| {
            m.iter()
                .map(|(k, v)| {
                    let v = match v {
                        serde_norway::Value::String(s) => s.clone(),
                        other => serde_norway::to_string(other).unwrap().trim().to_owned(),
                    };
                    (k.as_str().unwrap().to_owned(), v)
                })
                .collect()
        })
        .unwrap_or_default()
}

fn strings(v: Option<&serde_norway::Value>) -> Vec<String> {
    v.and_then(|v| v.as_sequence())
        .map(|s| s.iter().filter_map(|x| x.as_str().map(str::to_owned)).collect())
        .unwrap_or_default()
}

#[test]
fn kafka_keeps_its_log_on_the_compose_volume() {
    let c = compose();
    let env = environment(&c, "kafka");
    let dirs = env.iter().find(|(k, _)| k == "KAFKA_LOG_DIRS").map(|(_, v)| v.clone());
    let dirs = dirs.expect("KAFKA_LOG_DIRS is set (else the image writes to /tmp/kraft-combined-logs)");
    let mounts = strings(service(&c, "kafka").get("volumes"));
    let on_volume = mounts.iter().any(|m| {
        let mut parts = m.split(':');
        let (source, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        !source.starts_with('.') && !source.starts_with('/') && dirs.starts_with(target)
    });
    assert!(on_volume, "KAFKA_LOG_DIRS={dirs} is not on a named volume: {mounts:?}");
}

#[test]
fn queuegate_is_restarted_checked_for_readiness_and_needs_nothing_it_does_not_use() {
    let c = compose();
    for name in ["gateway", "consumer"] {
        let s = service(&c, name);
        let restart = s.get("restart").and_then(|r| r.as_str()).unwrap_or("no");
        assert!(["always", "unless-stopped", "on-failure"].contains(&restart), "{name} restart: {restart}");
        let test = strings(s.get("healthcheck").and_then(|h| h.get("test"))).join(" ");
        assert!(test.contains("/readyz"), "{name}'s healthcheck asks for readiness, not liveness: {test}");
    }
    let needs: Vec<String> = service(&c, "consumer")
        .get("depends_on")
        .and_then(|d| d.as_mapping())
        .map(|m| m.keys().filter_map(|k| k.as_str().map(str::to_owned)).collect())
        .unwrap_or_default();
    assert!(!needs.contains(&"gateway".to_owned()), "the consumer does not need a gateway: {needs:?}");
}

#[test]
fn only_the_public_api_is_published_beyond_loopback() {
    let c = compose();
    let services = c.get("services").and_then(|s| s.as_mapping()).unwrap();
    let mut published = 0;
    for (name, s) in services {
        for port in strings(s.get("ports")) {
            published += 1;
            let public = name.as_str() == Some("gateway") && port == "8080:8080";
            assert!(public || port.starts_with("127.0.0.1:"), "{name:?} publishes {port} on every interface");
        }
    }
    assert!(published >= 5, "{published} ports");
}

#[test]
fn the_docker_build_context_leaves_out_build_output_local_services_and_git() {
    let ignore = read(".dockerignore");
    let lines: Vec<&str> = ignore.lines().map(|l| l.trim().trim_end_matches('/')).collect();
    for needed in ["target", ".local", ".git"] {
        assert!(lines.contains(&needed), ".dockerignore leaves {needed} in the build context");
    }
    let dockerfile = read("Dockerfile");
    for copied in dockerfile.lines().filter_map(|l| l.strip_prefix("COPY ")).filter(|l| !l.starts_with("--from")) {
        for source in copied.split_whitespace().rev().skip(1) {
            assert!(!lines.contains(&source.trim_end_matches('/')), "the Dockerfile copies {source}, which is ignored");
        }
    }
}

/// `queuegate gateway` with secrets that pass validation, plus `extra` environment; its exit
/// code and what it wrote to stderr. Nothing is listening where it points, and no
/// case here gets as far as binding a port.
fn start_gateway(extra: &[(&str, &str)]) -> (Option<i32>, String) {
    let dir = std::env::temp_dir().join(format!("qg-exit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let key = dir.join("admission.pem");
    if !key.exists() {
        let ok = Command::new(env!("CARGO_BIN_EXE_queuegate")).arg("keygen").arg(&key).output().unwrap();
        assert!(ok.status.success());
    }
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_queuegate"));
    cmd.arg("gateway")
        .env_clear()
        .env("QUEUEGATE_ADMIN_TOKEN", "an-admin-token-0123456789")
        .env("QUEUEGATE_TOKEN_SECRET", "a-token-secret-0123456789-0123456789")
        .env("QUEUEGATE_FAN_IDENTITY", "anonymous")
        .env("QUEUEGATE_ADMISSION_KEY_FILE", &key)
        .env("QUEUEGATE_KAFKA_BROKERS", "127.0.0.1:1")
        .env("QUEUEGATE_REDIS_URL", "redis://127.0.0.1:1")
        .env("QUEUEGATE_HTTP_ADDR", "127.0.0.1:0")
        .env("QUEUEGATE_ADMIN_ADDR", "127.0.0.1:0");
    for (k, v) in extra {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    (out.status.code(), stderr.into_owned())
}

#[test]
fn configuration_errors_exit_2_naming_the_setting_even_when_found_at_start_up() {
    let cases: &[(&[(&str, &str)], &str)] = &[
        (&[("QUEUEGATE_TOKEN_SECRET", "short")], "QUEUEGATE_TOKEN_SECRET"),
        (&[("QUEUEGATE_ADMISSION_KEY_FILE", "/nonexistent/admission.pem")], "QUEUEGATE_ADMISSION_KEY_FILE"),
        (&[("QUEUEGATE_ADMISSION_KEY_FILE", "/etc/hostname")], "QUEUEGATE_ADMISSION_KEY_FILE"),
        (
            &[
                ("QUEUEGATE_FAN_IDENTITY", "jwt"),
                ("QUEUEGATE_FAN_JWT_JWKS", "/nonexistent/jwks.json"),
                ("QUEUEGATE_FAN_JWT_ISSUER", "https://id.example"),
                ("QUEUEGATE_FAN_JWT_AUDIENCE", "queuegate"),
            ],
            "QUEUEGATE_FAN_JWT_JWKS",
        ),
        (&[("QUEUEGATE_FAN_IDENTITY", "jwt"), ("QUEUEGATE_FAN_JWT_JWKS", "/etc/hostname")], "QUEUEGATE_FAN_JWT"),
        (&[("QUEUEGATE_KAFKA_PROPERTIES", "no.such.property=1")], "QUEUEGATE_KAFKA_PROPERTIES"),
        (&[("QUEUEGATE_KAFKA_COMPRESSION", "brotli")], "brotli"),
    ];
    for (env, names) in cases {
        let (code, line) = start_gateway(env);
        assert_eq!(code, Some(2), "{env:?}: {line}");
        assert!(line.contains(names), "{env:?}: the line names {names}: {line}");
    }
}
