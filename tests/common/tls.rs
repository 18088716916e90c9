//! Certificates for tests of TLS listeners, made with the openssl command line: a private CA
//! and a server certificate for 127.0.0.1 / localhost signed by it.

use std::path::{Path, PathBuf};
use std::process::Command;

pub struct Certs {
    pub dir: PathBuf,
}

impl Certs {
    /// Makes a CA and a server certificate under a fresh temporary folder.
    pub fn make() -> Self {
        let dir = std::env::temp_dir().join(format!("qgtest-tls-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let run = |args: &[&str]| {
            let out = Command::new("openssl").args(args).current_dir(&dir).output().expect("openssl is installed");
            assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        };
        std::fs::write(dir.join("ext"), "subjectAltName=IP:127.0.0.1,DNS:localhost\n").unwrap();
        run(&["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2"]
            .iter()
            .chain(&["-subj", "/CN=queuegate-test-ca"])
            .copied()
            .collect::<Vec<_>>());
        run(&[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=127.0.0.1",
        ]);
        run(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "2",
            "-extfile",
            "ext",
        ]);
        Certs { dir }
    }

    /// redis-server arguments for TLS with these certificates (clients not asked for one) and an
    /// ACL user `user` with `password`, the default user switched off.
    pub fn redis_server_args(&self, user: &str, password: &str) -> Vec<String> {
        let (cert, key, ca) = (Self::s(&self.cert()), Self::s(&self.key()), Self::s(&self.ca()));
        let pass = format!(">{password}");
        [
            "--tls-cert-file",
            &cert,
            "--tls-key-file",
            &key,
            "--tls-ca-cert-file",
            &ca,
            "--tls-auth-clients",
            "no",
            "--user",
            "default",
            "off",
            "--user",
            user,
            "on",
            &pass,
            "~*",
            "&*",
            "+@all",
        ]
        .iter()
        .map(|a| a.to_string())
        .collect()
    }

    pub fn ca(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    pub fn cert(&self) -> PathBuf {
        self.dir.join("server.pem")
    }

    pub fn key(&self) -> PathBuf {
        self.dir.join("server.key")
    }

    /// Path as a string, for command lines and properties.
    pub fn s(p: &Path) -> String {
        p.to_string_lossy().into_owned()
    }
}

impl Drop for Certs {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
