//! A private three-broker KRaft Kafka cluster (each broker a controller too; replication
//! factor 3, min.insync.replicas 2), started by `scripts/cluster.sh kafka-up` on free ports,
//! for tests that kill or freeze brokers.

use std::path::PathBuf;
use std::process::Command;

pub struct PrivateKafkaCluster {
    /// First broker's port; brokers on port..port+2, controllers on port+100..port+102.
    pub port: u16,
    dir: PathBuf,
}

/// Whether all of `ports` can be bound on 127.0.0.1 now.
fn all_free(ports: &[u16]) -> bool {
    ports.iter().all(|p| std::net::TcpListener::bind(("127.0.0.1", *p)).is_ok())
}

impl PrivateKafkaCluster {
    pub fn start() -> Self {
        // A block of six free ports below the ephemeral range (which starts at 32768 here).
        let port = (0..200)
            .map(|_| 20_000 + (uuid::Uuid::new_v4().as_u128() % 9_000) as u16)
            .find(|&p| all_free(&[p, p + 1, p + 2, p + 100, p + 101, p + 102]))
            .expect("a free block of ports");
        let dir = std::env::temp_dir().join(format!("qgtest-kafka-cluster-{port}"));
        let _ = std::fs::remove_dir_all(&dir);
        let cluster = PrivateKafkaCluster { port, dir };
        cluster.script("kafka-up");
        cluster
    }

    /// `bootstrap.servers` of the three brokers.
    pub fn brokers(&self) -> String {
        (0..3).map(|i| format!("127.0.0.1:{}", self.port + i)).collect::<Vec<_>>().join(",")
    }

    /// The process id of broker `n` (1..=3).
    pub fn pid(&self, n: i32) -> u32 {
        std::fs::read_to_string(self.dir.join(format!("run/kafka-{n}.pid")))
            .expect("a pid file")
            .trim()
            .parse()
            .expect("a pid")
    }

    /// Sends `signal` (`-9`, `-STOP`, `-CONT`) to broker `n`.
    pub fn signal(&self, n: i32, signal: &str) {
        super::signal(self.pid(n), signal);
    }

    /// Starts again any broker that is down, and waits until all three answer.
    pub fn restart_missing(&self) {
        self.script("kafka-up");
    }

    fn script(&self, what: &str) {
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/cluster.sh");
        let out = Command::new("bash")
            .arg(script)
            .arg(what)
            .env("CLUSTER_DIR", &self.dir)
            .env("CLUSTER_KAFKA_PORT", self.port.to_string())
            .env("QUEUEGATE_KAFKA_TOPIC", "qgtest-cluster-unused")
            .output()
            .expect("bash");
        assert!(out.status.success(), "cluster.sh {what}: {}", String::from_utf8_lossy(&out.stderr));
    }
}

impl Drop for PrivateKafkaCluster {
    fn drop(&mut self) {
        for n in 1..=3 {
            if let Ok(pid) = std::fs::read_to_string(self.dir.join(format!("run/kafka-{n}.pid"))) {
                let _ = Command::new("kill").args(["-CONT", pid.trim()]).status();
                let _ = Command::new("kill").args(["-9", pid.trim()]).status();
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
