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

/// A listener `SASL_SSL` (SCRAM-SHA-512, the server's certificate from `certs`) for clients,
/// beside the broker's PLAINTEXT one, and the SCRAM user the storage is formatted with.
pub struct SaslSsl<'a> {
    pub certs: &'a super::tls::Certs,
    pub user: &'a str,
    pub password: &'a str,
    pub port: u16,
}

impl PrivateKafka {
    pub fn start() -> Self {
        Self::start_with(None)
    }

    /// With a SASL_SSL listener too (see [`SaslSsl`]).
    ///
    /// The two ports are picked free, then bound by the broker seconds later; a client's
    /// ephemeral port can take one meanwhile, so a broker that stops on `Address already in use`
    /// is started again on fresh ports (three tries).
    pub fn start_with(secure: Option<SaslSsl<'_>>) -> Self {
        for attempt in 1.. {
            match Self::try_start(secure.as_ref()) {
                Ok(k) => return k,
                Err(e) if e.contains("Address already in use") && attempt < 3 => {
                    eprintln!("private Kafka: a port was taken before the broker bound it; again on fresh ports")
                }
                Err(e) => panic!("{e}"),
            }
        }
        unreachable!()
    }

    fn try_start(secure: Option<&SaslSsl<'_>>) -> Result<Self, String> {
        let (port, controller_port) = (free_port(), free_port());
        let dir = std::env::temp_dir().join(format!("qgchaos-kafka-{port}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("data")).unwrap();
        let (mut listeners, mut advertised) = (
            format!("PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}"),
            format!("PLAINTEXT://127.0.0.1:{port}"),
        );
        let mut secure_props = String::new();
        if let Some(s) = &secure {
            // Kafka reads a PEM keystore as the private key followed by the certificate.
            let keystore = dir.join("keystore.pem");
            let pem =
                std::fs::read_to_string(s.certs.key()).unwrap() + &std::fs::read_to_string(s.certs.cert()).unwrap();
            std::fs::write(&keystore, pem).unwrap();
            listeners += &format!(",SASL_SSL://127.0.0.1:{}", s.port);
            advertised += &format!(",SASL_SSL://127.0.0.1:{}", s.port);
            secure_props = format!(
                "sasl.enabled.mechanisms=SCRAM-SHA-512\n\
                 listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;\n\
                 ssl.keystore.type=PEM\nssl.keystore.location={}\n",
                keystore.display()
            );
        }
        let props = format!(
            "process.roles=broker,controller\nnode.id=1\ncontroller.quorum.voters=1@127.0.0.1:{controller_port}\n\
             listeners={listeners}\nadvertised.listeners={advertised}\ncontroller.listener.names=CONTROLLER\n\
             inter.broker.listener.name=PLAINTEXT\n\
             listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,SASL_SSL:SASL_SSL\n{secure_props}\
             log.dirs={}\noffsets.topic.replication.factor=1\noffsets.topic.num.partitions=3\n\
             transaction.state.log.replication.factor=1\ntransaction.state.log.min.isr=1\ntransaction.state.log.num.partitions=3\n\
             share.coordinator.state.topic.replication.factor=1\nshare.coordinator.state.topic.min.isr=1\n\
             group.initial.rebalance.delay.ms=0\nauto.create.topics.enable=false\n",
            dir.join("data").display()
        );
        std::fs::write(dir.join("server.properties"), props).unwrap();
        std::fs::write(dir.join("log4j2.properties"), "rootLogger.level = warn\n").unwrap();
        let mut format = Self::java(&dir);
        format
            .args(["kafka.tools.StorageTool", "format", "-t", "qgchaosAAAAAAAAAAAAAAAA", "-c"])
            .arg(dir.join("server.properties"));
        if let Some(s) = &secure {
            format.arg("--add-scram").arg(format!("SCRAM-SHA-512=[name={},password={}]", s.user, s.password));
        }
        let status = format.stdout(Stdio::null()).status().expect("java runs");
        assert!(status.success(), "kafka storage format failed");
        let mut k = PrivateKafka { port, controller_port, dir, child: None };
        k.try_spawn()?;
        Ok(k)
    }

    fn java(dir: &std::path::Path) -> Command {
        let mut c = Command::new("java");
        c.args(["-Xms128m", "-Xmx384m", "-XX:+UseSerialGC"])
            .arg(format!("-Dlog4j2.configurationFile={}", dir.join("log4j2.properties").display()))
            .arg("-cp")
            .arg(format!("{}/*", kafka_libs().display()));
        c
    }

    /// The broker's process id (for SIGSTOP/SIGCONT through [`super::signal`]).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("the broker runs").id()
    }

    pub fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn spawn(&mut self) {
        if let Err(e) = self.try_spawn() {
            panic!("{e}");
        }
    }

    /// Starts the broker and waits (60 s at most) until it takes connections; otherwise the
    /// reason, with the last lines of its log (`broker.log` in its directory).
    fn try_spawn(&mut self) -> Result<(), String> {
        let log = std::fs::File::create(self.dir.join("broker.log")).expect("the broker's log");
        let child = Self::java(&self.dir)
            .arg("kafka.Kafka")
            .arg(self.dir.join("server.properties"))
            .stdout(log.try_clone().expect("the broker's log"))
            .stderr(log)
            .spawn()
            .expect("java runs");
        self.child = Some(child);
        let until = std::time::Instant::now() + Duration::from_secs(60);
        let exited = loop {
            if wait_for_port(self.port, Duration::from_millis(500)) {
                return Ok(());
            }
            if let Ok(Some(status)) = self.child.as_mut().expect("the broker runs").try_wait() {
                self.child = None;
                break format!("exited ({status})");
            }
            if std::time::Instant::now() >= until {
                break "did not take connections within 60 s".to_owned();
            }
        };
        let text = std::fs::read_to_string(self.dir.join("broker.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let tail = &lines[lines.len().saturating_sub(20)..];
        Err(format!(
            "private Kafka on {} (controller {}) {exited}; the last lines of its log:\n{}",
            self.port,
            self.controller_port,
            tail.join("\n")
        ))
    }

    /// Sends `signal` (`-STOP`, `-CONT`, `-9`) to the broker's process.
    pub fn signal(&self, signal: &str) {
        let child = self.child.as_ref().expect("the broker is running");
        super::signal(child.id(), signal);
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
