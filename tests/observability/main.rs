//! What ships around the binary: the dashboards and alerts against a real Prometheus scraping a
//! running queuegate, and the Dockerfile and docker-compose.yml checked for consistency (there is
//! no Docker engine here to run them).

#[path = "../common/mod.rs"]
mod common;
mod deploy;
mod prometheus;

use std::path::PathBuf;

/// A file of this repository.
pub fn repo(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(path)
}

pub fn read(path: &str) -> String {
    std::fs::read_to_string(repo(path)).unwrap_or_else(|e| panic!("reading {path}: {e}"))
}

/// Every `QUEUEGATE_*` variable the binary reads, from its own `--help`.
pub fn env_names_of_the_binary() -> std::collections::BTreeSet<String> {
    let out =
        std::process::Command::new(env!("CARGO_BIN_EXE_queuegate")).arg("--help").output().expect("queuegate --help");
    let help = String::from_utf8(out.stdout).unwrap();
    help.split("[env: ").skip(1).map(|rest| rest.split(['=', ']']).next().unwrap().to_owned()).collect()
}
