//! A private redis-server for tests that stop, kill or restart Redis, so stopping it never
//! disturbs other tests.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::wait_for_port;

/// A private redis-server with AOF `appendfsync always`, restartable on the same port and data.
pub struct PrivateRedis {
    pub port: u16,
    dir: PathBuf,
    child: Option<Child>,
    /// Extra redis-server arguments (TLS, ACL users), kept for restarts.
    extra: Vec<String>,
}

impl PrivateRedis {
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// With TLS only, on a free port, the server's certificate from `certs`, and an ACL user
    /// `user` with `password` (the default user switched off). Clients authenticate with the
    /// password and verify the server against `certs`' CA.
    pub fn start_tls(certs: &super::tls::Certs, user: &str, password: &str) -> Self {
        let mut args: Vec<String> = ["--port", "0", "--tls-port", "{port}"].iter().map(|a| a.to_string()).collect();
        args.extend(certs.redis_server_args(user, password));
        Self::start_with(&args.iter().map(String::as_str).collect::<Vec<_>>())
    }

    /// With extra redis-server arguments; `{port}` in them is the server's port.
    pub fn start_with(extra: &[&str]) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let dir = std::env::temp_dir().join(format!("qgtest-redis-{port}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let extra = extra.iter().map(|a| a.replace("{port}", &port.to_string())).collect();
        let mut r = PrivateRedis { port, dir, child: None, extra };
        r.spawn();
        r
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn spawn(&mut self) {
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &self.port.to_string(), "--save", ""])
            .args(["--appendonly", "yes", "--appendfsync", "always"])
            .args(&self.extra)
            .arg("--dir")
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is installed (make services installs it)");
        self.child = Some(child);
        assert!(wait_for_port(self.port, Duration::from_secs(5)), "private redis did not start on {}", self.port);
    }

    /// SIGKILL: no chance to flush anything beyond what AOF already has.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill(); // SIGKILL on Unix
            let _ = c.wait();
        }
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.kill9();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
