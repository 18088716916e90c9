//! schemathesis (PyPI, installed into .local/venv by `scripts/services.sh tools`) against both
//! listeners of a running queuegate, in body and in anonymous mode: every operation the
//! document describes, fuzzed with schema-valid and schema-violating requests; 0 failures.
//! Exceptions, each explained, are in tests/schemathesis.toml.

use std::path::PathBuf;
use std::process::Command;

use queuegate::config::{FanIdentityMode, Role};

use crate::helpers::{create_topics, spawn_role, Names, ADMIN_TOKEN};

fn repo(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// Runs schemathesis against `base` with the document of `doc_url`; its output when it fails.
fn run(doc_url: &str, base: &str, filter: &[&str], headers: &[String]) -> Result<String, String> {
    let bin = repo(".local/venv/bin/schemathesis");
    assert!(bin.exists(), "{} is missing: run scripts/services.sh tools (make test does)", bin.display());
    // Bounded from outside: schemathesis's own --max-time makes fuzzing repeat until it is spent.
    let mut cmd = Command::new("timeout");
    cmd.arg("300")
        .arg(bin)
        .arg("--no-color")
        .arg("--config-file")
        .arg(repo("tests/schemathesis.toml"))
        .args(["run", doc_url, "--url", base])
        .args(filter)
        // One worker: hypothesis describes strategies with ast.parse, which CPython 3.11 can
        // trip over from two threads at once ("AST constructor recursion depth mismatch").
        .args(["--checks", "all", "--max-examples", "30", "--workers", "1", "--request-timeout", "5"])
        .args(["--seed", "20261203"]);
    for h in headers {
        cmd.args(["-H", h]);
    }
    let out = cmd.output().expect("schemathesis runs");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    if out.status.success() {
        Ok(text)
    } else {
        Err(text)
    }
}

/// Both listeners of a gateway in `mode`, fuzzed; the failures' output when there are any.
async fn fuzz(mode: FanIdentityMode) {
    let names = Names::new();
    create_topics(&names, 2).await;
    let app = spawn_role(&names, Role::Run, |s| s.identity.fan_identity = Some(mode)).await;
    app.open_concert("c").await;
    let doc = format!("{}/openapi.json", app.http());
    let (http, admin) = (app.http().to_owned(), app.admin.clone());
    let admin_paths = "^/admin|^/healthz$|^/readyz$|^/metrics$";
    let public = {
        let doc = doc.clone();
        tokio::task::spawn_blocking(move || run(&doc, &http, &["--exclude-path-regex", admin_paths], &[]))
    };
    let public = public.await.unwrap();
    let admin = tokio::task::spawn_blocking(move || {
        run(&doc, &admin, &["--include-path-regex", admin_paths], &[format!("Authorization: Bearer {ADMIN_TOKEN}")])
    })
    .await
    .unwrap();
    for (listener, result) in [("public", public), ("admin", admin)] {
        match result {
            Ok(text) => {
                let summary = text.lines().rfind(|l| l.contains("generated") || l.contains(" in "));
                println!("schemathesis {}, {listener}: {}", mode.as_str(), summary.unwrap_or("").trim());
            }
            Err(text) => panic!("schemathesis, {} mode, {listener} listener:\n{text}", mode.as_str()),
        }
    }
    app.shutdown().await.unwrap();
}

/// The body mode on both listeners. The cluster pass (`.config/nextest.toml`) runs this one: what
/// the Redis Cluster can change is the store behind the routes, the same in either mode.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_no_failure_on_either_listener_in_body_mode() {
    fuzz(FanIdentityMode::Body).await;
}

/// The anonymous mode on both listeners (the gateway assigns the fan's id).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_no_failure_on_either_listener_in_anonymous_mode() {
    fuzz(FanIdentityMode::Anonymous).await;
}
