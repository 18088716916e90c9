//! A private single-node KRaft broker from the jars `make services` fetched, on free ports,
//! stoppable and restartable with its data, for tests that stop the broker.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::{free_port, wait_for_port};

/// kill -9.
pub fn kill9(child: &mut Child) {
    let _ = child.kill(); // SIGKILL on Unix
    let _ = child.wait();
}

pub struct PrivateKafka {
    pub port: u16,
    controller_port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

fn kafka_libs() -> PathBuf {
    std::env::var_os("QUEUEGATE_KAFKA_LIBS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".local/kafka-4.1.1/libs"))
}

impl PrivateKafka {
    pub fn start() -> Self {
        let (port, controller_port) = (free_port(), free_port());
        let dir = std::env::temp_dir().join(format!("qgchaos-kafka-{port}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("data")).unwrap();
        let props = format!(
            "process.roles=broker,controller\nnode.id=1\ncontroller.quorum.voters=1@127.0.0.1:{controller_port}\n\
             listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}\n\
             advertised.listeners=PLAINTEXT://127.0.0.1:{port}\ncontroller.listener.names=CONTROLLER\n\
             inter.broker.listener.name=PLAINTEXT\nlistener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT\n\
             log.dirs={}\noffsets.topic.replication.factor=1\noffsets.topic.num.partitions=3\n\
             transaction.state.log.replication.factor=1\ntransaction.state.log.min.isr=1\ntransaction.state.log.num.partitions=3\n\
             share.coordinator.state.topic.replication.factor=1\nshare.coordinator.state.topic.min.isr=1\n\
             group.initial.rebalance.delay.ms=0\nauto.create.topics.enable=false\n",
            dir.join("data").display()
        );
        std::fs::write(dir.join("server.properties"), props).unwrap();
        std::fs::write(dir.join("log4j2.properties"), "rootLogger.level = warn\n").unwrap();
        let status = Self::java(&dir)
            .args(["kafka.tools.StorageTool", "format", "-t", "qgchaosAAAAAAAAAAAAAAAA", "-c"])
            .arg(dir.join("server.properties"))
            .stdout(Stdio::null())
            .status()
            .expect("java runs");
        assert!(status.success(), "kafka storage format failed");
        let mut k = PrivateKafka { port, controller_port, dir, child: None };
        k.spawn();
        k
    }

    fn java(dir: &std::path::Path) -> Command {
        let mut c = Command::new("java");
        c.args(["-Xms128m", "-Xmx384m", "-XX:+UseSerialGC"])
            .arg(format!("-Dlog4j2.configurationFile={}", dir.join("log4j2.properties").display()))
            .arg("-cp")
            .arg(format!("{}/*", kafka_libs().display()));
        c
    }

    pub fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn spawn(&mut self) {
        let child = Self::java(&self.dir)
            .arg("kafka.Kafka")
            .arg(self.dir.join("server.properties"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("java runs");
        self.child = Some(child);
        assert!(
            wait_for_port(self.port, Duration::from_secs(60)),
            "private Kafka did not start on {} (controller {})",
            self.port,
            self.controller_port
        );
    }

    /// SIGTERM and wait: a controlled broker shutdown.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill").arg("-TERM").arg(c.id().to_string()).status();
            for _ in 0..300 {
                if c.try_wait().ok().flatten().is_some() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            kill9(&mut c);
        }
    }
}

impl Drop for PrivateKafka {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            kill9(&mut c);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
