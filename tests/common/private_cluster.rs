//! A private six-node Redis Cluster (three primaries, three replicas, AOF always) on free
//! ports, for tests that kill its nodes, so killing one never disturbs other tests.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::{free_port, wait_for_port};

/// One node: its client port, cluster-bus port and process.
struct Node {
    port: u16,
    bus: u16,
    child: Option<Child>,
}

pub struct PrivateRedisCluster {
    dir: PathBuf,
    nodes: Vec<Node>,
    /// TLS and ACL: extra redis-server arguments, redis-cli's arguments, the URL's credentials.
    tls: Option<Tls>,
}

struct Tls {
    server: Vec<String>,
    cli: Vec<String>,
    credentials: String,
}

impl PrivateRedisCluster {
    /// Starts six nodes, forms the cluster and waits until every slot is served and every
    /// replica is attached.
    pub fn start() -> Self {
        Self::start_with(None)
    }

    /// The same over TLS only (clients, the cluster bus and replication), with the server
    /// certificate from `certs`, and an ACL user `user` with `password` (the default user off):
    /// `rediss+cluster://user:password@…`; clients verify the nodes against `certs`' CA.
    pub fn start_tls(certs: &super::tls::Certs, user: &str, password: &str) -> Self {
        use super::tls::Certs;
        let ca = Certs::s(&certs.ca());
        let mut server: Vec<String> =
            ["--tls-cluster", "yes", "--tls-replication", "yes"].iter().map(|a| a.to_string()).collect();
        server.extend(certs.redis_server_args(user, password));
        server.extend(["--masteruser", user, "--masterauth", password].iter().map(|a| a.to_string()));
        let cli = ["--tls", "--cacert", &ca, "--user", user, "--pass", password, "--no-auth-warning"];
        Self::start_with(Some(Tls {
            server,
            cli: cli.iter().map(|s| s.to_string()).collect(),
            credentials: format!("{user}:{password}@"),
        }))
    }

    fn start_with(tls: Option<Tls>) -> Self {
        let nodes: Vec<Node> = (0..6).map(|_| Node { port: free_port(), bus: free_port(), child: None }).collect();
        let dir = std::env::temp_dir().join(format!("qgtest-cluster-{}", nodes[0].port));
        let _ = std::fs::remove_dir_all(&dir);
        let mut cluster = PrivateRedisCluster { dir, nodes, tls };
        for i in 0..6 {
            // A free port can be taken by another process between the pick and the bind (the
            // tests run in parallel): before the cluster is formed, a node may move.
            let mut up = cluster.try_spawn(i);
            for _ in 0..3 {
                if up {
                    break;
                }
                (cluster.nodes[i].port, cluster.nodes[i].bus) = (free_port(), free_port());
                up = cluster.try_spawn(i);
            }
            assert!(up, "cluster node {i} did not start");
        }
        let addrs: Vec<String> = cluster.nodes.iter().map(|n| format!("127.0.0.1:{}", n.port)).collect();
        let out = Command::new("redis-cli")
            .args(cluster.cli_args())
            .arg("--cluster")
            .arg("create")
            .args(&addrs)
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .output()
            .expect("redis-cli is installed");
        assert!(out.status.success(), "cluster create failed: {}", String::from_utf8_lossy(&out.stdout));
        assert!(cluster.wait_healthy(Duration::from_secs(60)), "the cluster formed with every replica in sync");
        cluster
    }

    /// `redis+cluster://` (`rediss+cluster://user:password@` over TLS) with the first three
    /// nodes as seeds.
    pub fn url(&self) -> String {
        let seeds: Vec<String> = self.nodes[..3].iter().map(|n| format!("127.0.0.1:{}", n.port)).collect();
        match &self.tls {
            None => format!("redis+cluster://{}", seeds.join(",")),
            Some(t) => format!("rediss+cluster://{}{}", t.credentials, seeds.join(",")),
        }
    }

    fn cli_args(&self) -> &[String] {
        self.tls.as_ref().map_or(&[], |t| &t.cli)
    }

    /// Starts node `i` (again, on its data: a killed primary comes back as a replica).
    pub fn spawn(&mut self, i: usize) {
        assert!(self.try_spawn(i), "cluster node did not start on {}", self.nodes[i].port);
    }

    /// Starts node `i`; false (and no process left) when it did not listen within 10 s.
    fn try_spawn(&mut self, i: usize) -> bool {
        let (port, bus) = (self.nodes[i].port, self.nodes[i].bus);
        let dir = self.dir.join(port.to_string());
        std::fs::create_dir_all(&dir).unwrap();
        let mut cmd = Command::new("redis-server");
        match &self.tls {
            None => cmd.args(["--port", &port.to_string()]),
            Some(t) => cmd.args(["--port", "0", "--tls-port", &port.to_string()]).args(&t.server),
        };
        let child = cmd
            .args(["--bind", "127.0.0.1", "--cluster-port", &bus.to_string()])
            .args(["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "2000"])
            // As docs/explain-guarantees.md advises: the other shards serve while one is wholly down.
            .args(["--cluster-require-full-coverage", "no"])
            .args(["--appendonly", "yes", "--appendfsync", "always", "--save", ""])
            .arg("--dir")
            .arg(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is installed (make services installs it)");
        self.nodes[i].child = Some(child);
        if wait_for_port(port, Duration::from_secs(10)) {
            return true;
        }
        self.kill9(i);
        false
    }

    /// SIGKILL of node `i`.
    pub fn kill9(&mut self, i: usize) {
        if let Some(mut c) = self.nodes[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGSTOP (`stop` true) or SIGCONT of node `i`: a frozen replica stops acknowledging
    /// replication, as a slow or partitioned one would.
    pub fn freeze(&self, i: usize, stop: bool) {
        let pid = self.nodes[i].child.as_ref().expect("a live node").id();
        super::signal(pid, if stop { "-STOP" } else { "-CONT" });
    }

    /// The index of the node serving `key`'s slot as primary now (None while no live node
    /// does, during a failover).
    pub fn primary_of(&self, key: &str) -> Option<usize> {
        self.serving(key).map(|(_, i)| i)
    }

    /// The index of the node serving `key`'s slot as primary now, and of its replica.
    pub fn primary_and_replica_of(&self, key: &str) -> (usize, usize) {
        let (primary_id, primary) = self.serving(key).expect("the slot is served");
        let alive = self.nodes.iter().position(|n| n.child.is_some()).expect("a live node");
        let replica = self
            .cli(alive, &["CLUSTER", "NODES"])
            .lines()
            .map(|l| l.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
            .find(|f| f.len() >= 4 && f[3] == primary_id)
            .map(|f| self.index_of(&f[1]))
            .expect("the primary has a replica");
        (primary, replica)
    }

    /// The node index of a `CLUSTER NODES` address (`ip:port@bus`).
    fn index_of(&self, addr: &str) -> usize {
        let port: u16 = addr.split(['@', ':']).nth(1).and_then(|p| p.parse().ok()).expect("a port");
        self.nodes.iter().position(|n| n.port == port).expect("one of ours")
    }

    /// The id and index of the live primary serving `key`'s slot.
    fn serving(&self, key: &str) -> Option<(String, usize)> {
        let alive = self.nodes.iter().position(|n| n.child.is_some()).expect("a live node");
        let slot: u16 = self.cli(alive, &["CLUSTER", "KEYSLOT", key]).trim().parse().expect("a slot");
        // CLUSTER SHARDS would be nicer; CLUSTER NODES is in every Redis 7: "id addr@bus flags master-id … slots".
        let nodes = self.cli(alive, &["CLUSTER", "NODES"]);
        let mut primary = None;
        for line in nodes.lines() {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 9 || !f[2].contains("master") || f[2].contains("fail") {
                continue;
            }
            let serves = f[8..].iter().any(|range| match range.split_once('-') {
                Some((a, b)) => (a.parse::<u16>().unwrap()..=b.parse::<u16>().unwrap()).contains(&slot),
                None => range.parse::<u16>().ok() == Some(slot),
            });
            if serves {
                primary = Some((f[0].to_owned(), self.index_of(f[1])));
            }
        }
        primary
    }

    /// Waits until the cluster serves every slot and each of the live primaries has a replica
    /// attached and replicating (its initial sync done: a replica that never synced cannot be
    /// promoted).
    pub fn wait_healthy(&self, deadline: Duration) -> bool {
        self.until(deadline, |alive| {
            let replicas = self
                .cli(alive, &["CLUSTER", "NODES"])
                .lines()
                .filter(|l| l.contains("slave") && !l.contains("fail") && l.contains("connected"))
                .count();
            let synced = (0..self.nodes.len()).filter(|&i| self.nodes[i].child.is_some()).all(|i| {
                let info = self.cli(i, &["INFO", "replication"]);
                !info.contains("role:slave") || info.contains("master_link_status:up")
            });
            self.cli(alive, &["CLUSTER", "INFO"]).contains("cluster_state:ok") && replicas >= 3 && synced
        })
    }

    /// Waits until every slot is served again (after a failover); false at the deadline.
    pub fn wait_ok(&self, deadline: Duration) -> bool {
        self.until(deadline, |alive| self.cli(alive, &["CLUSTER", "INFO"]).contains("cluster_state:ok"))
    }

    /// Polls `f` with a live node's index every 100 ms until it holds; false at the deadline.
    fn until(&self, deadline: Duration, f: impl Fn(usize) -> bool) -> bool {
        let until = std::time::Instant::now() + deadline;
        while std::time::Instant::now() < until {
            let alive = self.nodes.iter().position(|n| n.child.is_some()).expect("a live node");
            if f(alive) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        false
    }

    /// redis-cli of node `i` with `args`; the reply as text.
    pub fn cli(&self, i: usize, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .args(self.cli_args())
            .args(["-p", &self.nodes[i].port.to_string()])
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for PrivateRedisCluster {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.kill9(i);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
