//! The booking site's reverse proxies with queuegate's gate, as `deploy/` ships them: Debian's
//! nginx (`deploy/nginx/queuegate-gate.conf` included, unchanged, in a server block written
//! here) and Caddy built from the Go module proxy (`deploy/caddy/Caddyfile`, configured by its
//! environment). `scripts/services.sh tools` installs both.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::{free_port, wait_for_port};

pub fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// A proxy process, killed when dropped.
pub struct Proxy {
    child: Child,
    dir: PathBuf,
    pub url: String,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn scratch(what: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("qg-{what}-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A private nginx (Debian's) on a free port, whose `http` block holds `http` (`{port}` in it is
/// the port it listens on): the temporary paths and the process are its own.
pub fn start_nginx(http: &str) -> Proxy {
    let (port, dir) = (free_port(), scratch("nginx"));
    let conf = format!(
        "daemon off;\nmaster_process off;\nworker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\n\
         events {{ worker_connections 512; }}\n\
         http {{\n  access_log off;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n\
           fastcgi_temp_path {d}/fcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n{http}\n}}\n",
        d = dir.display(),
        http = http.replace("{port}", &port.to_string())
    );
    std::fs::write(dir.join("nginx.conf"), conf).unwrap();
    let child = Command::new("/usr/sbin/nginx")
        .args(["-p", dir.to_str().unwrap(), "-c", dir.join("nginx.conf").to_str().unwrap()])
        .args(["-e", dir.join("error.log").to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("nginx runs (scripts/services.sh tools installs nginx-light)");
    assert!(wait_for_port(port, Duration::from_secs(10)), "nginx listens on {port}");
    Proxy { child, dir, url: format!("http://127.0.0.1:{port}") }
}

/// nginx with `deploy/nginx/queuegate-gate.conf` included, unchanged, in the booking site's
/// server, beside a location of the site's own (a regex one, `~ \.php$`, which nginx prefers
/// to the file's `location /`); `queuegate` is a gateway's host:port, or several separated by
/// commas (nginx takes them in turn).
pub fn nginx(queuegate: &str, booking: u16, concert: &str) -> Proxy {
    let servers: String = queuegate.split(',').map(|s| format!("server {s}; ")).collect();
    start_nginx(&format!(
        "  upstream queuegate {{ {servers}}}\n  upstream booking {{ server 127.0.0.1:{booking}; }}\n\
         server {{\n    listen 127.0.0.1:{{port}};\n    set $queuegate_concert {concert};\n    include {include};\n    \
         location ~ \\.php$ {{ proxy_pass http://booking; }}\n  }}",
        include = repo("deploy/nginx/queuegate-gate.conf").display()
    ))
}

/// Caddy running `deploy/caddy/Caddyfile` as it is, configured by its environment.
pub fn caddy(queuegate: &str, booking: u16, concert: &str) -> Proxy {
    let (port, dir) = (free_port(), scratch("caddy-gate"));
    let bin = repo(".local/go/bin/caddy");
    let child = Command::new(&bin)
        .args(["run", "--adapter", "caddyfile", "--config"])
        .arg(repo("deploy/caddy/Caddyfile"))
        .env("SITE_ADDRESS", format!("http://127.0.0.1:{port}"))
        .env("GATE_UPSTREAM", queuegate)
        .env("GATE_CONCERT", concert)
        .env("BOOKING_UPSTREAM", format!("127.0.0.1:{booking}"))
        .env("XDG_DATA_HOME", &dir)
        .env("XDG_CONFIG_HOME", &dir)
        .env("HOME", &dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("{} runs (scripts/services.sh tools builds it): {e}", bin.display()));
    assert!(wait_for_port(port, Duration::from_secs(20)), "caddy listens on {port}");
    Proxy { child, dir, url: format!("http://127.0.0.1:{port}") }
}
