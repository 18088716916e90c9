//! Replication: whether a consumer's writes reached the replicas `QUEUEGATE_REDIS_MIN_REPLICAS`
//! asks for, whether a failover lost some of them, and how each shard stands.
//!
//! Redis replicates asynchronously, so a write acknowledged by a primary can vanish when a
//! replica that never saw it is promoted. The consumer therefore commits a batch's Kafka offsets
//! only once its writes reached enough replicas. When a shard is short of replicas (its primary
//! died and the promoted replica has none of its own yet), the consumer does not stop: it goes on
//! applying and *holds* the commits (src/consumer/held.rs), asking again with
//! [`QueueStore::confirm`] until a replica has caught up.
//!
//! Two facts make that sound:
//! - `WAIT` is sent in one pipeline with the write it waits for, so both reach the same node on
//!   one connection: a failover between them fails the pipeline instead of asking a new primary
//!   about writes it never saw (where `WAIT` would answer at once).
//! - Each writer (a consumer process's main loop, its parked-joins replayer) keeps a counter per
//!   concert (`Part::Writers`), bumped in the same atomic script as its writes. Replication keeps
//!   a primary's order, so a node whose counter is at or below the value the writer saw last
//!   lacks writes the writer made: a failover lost them, and the writer replays its held records
//!   from Kafka.

use std::collections::HashMap;
use std::time::Duration;

use redis::{Cmd, Script, Value};
use serde::Serialize;

use super::conn::{timed, Conn};
use super::keys::Part;
use super::{Applied, QueueStore, StoreError};
use crate::ids::{ConcertId, Lane, UserId};

/// Fans one apply.lua call stages at most: a consumer batch of a concert lane is written in
/// calls of this many (about 2 ms each with a million fans waiting; 2,000 took 7 ms alone), so
/// no call's work grows with `QUEUEGATE_CONSUMER_BATCH`.
pub const APPLY_MAX: usize = 500;

/// A writer of concerts' queues, and the last count of its calls it saw on each concert.
#[derive(Debug)]
pub struct Writer {
    /// Random per writer; empty for a writer that keeps no count (tools, tests).
    id: String,
    seen: HashMap<ConcertId, i64>,
}

impl Writer {
    /// A writer with a fresh id (one per consumer loop per process start).
    pub fn new() -> Self {
        Writer { id: uuid::Uuid::new_v4().simple().to_string(), seen: HashMap::new() }
    }

    /// A writer that keeps no count: it cannot learn of lost writes, so it may not hold commits.
    pub fn anonymous() -> Self {
        Writer { id: String::new(), seen: HashMap::new() }
    }

    /// Records the count a call returned; true when the node lacks calls this writer made
    /// (the count is not above the last one seen).
    fn saw(&mut self, concert: &ConcertId, calls: i64) -> bool {
        if self.id.is_empty() {
            return false;
        }
        let lost = self.seen.get(concert).is_some_and(|&last| calls <= last);
        self.seen.insert(concert.clone(), calls);
        lost
    }
}

impl Default for Writer {
    fn default() -> Self {
        Self::new()
    }
}

/// Whether a writer's writes on a concert (all of them so far) reached the replicas
/// `QUEUEGATE_REDIS_MIN_REPLICAS` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replication {
    Done,
    Short {
        acked: u32,
        wanted: u32,
    },
    /// Not asked (the writer already holds this concert: it asks once a second, not per write).
    Unasked,
}

/// What one apply did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Written {
    pub applied: Applied,
    pub replication: Replication,
    /// The concert's primary lacks earlier writes of this writer: a failover lost them.
    pub lost_earlier: bool,
}

/// A shard short of what it should have: no live primary, or fewer replicas in sync than
/// `QUEUEGATE_REDIS_MIN_REPLICAS`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DegradedShard {
    /// The primary's address (`host:port`), or the dead one's when none serves.
    pub primary: String,
    /// The first and last slot of each range the shard serves (empty on a single server).
    pub slots: Vec<(u16, u16)>,
    /// Replicas online (cluster) or connected (single server).
    pub replicas: u32,
    /// No live primary: the shard's concerts cannot be written or read until one is back.
    pub down: bool,
}

/// How Redis stands: reachable (the call answered), and the shards that are degraded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RedisHealth {
    pub shards: u32,
    pub degraded: Vec<DegradedShard>,
}

impl RedisHealth {
    /// Shards with a primary but fewer replicas than asked for.
    pub fn under_replicated(&self) -> usize {
        self.degraded.iter().filter(|s| !s.down).count()
    }

    /// Shards with no live primary.
    pub fn down(&self) -> usize {
        self.degraded.iter().filter(|s| s.down).count()
    }
}

impl QueueStore {
    /// The keys of apply.lua, in its order.
    fn apply_keys(&self, concert: &ConcertId, lane: &Lane) -> [String; 14] {
        let mut keys = [
            Part::Joined,
            Part::Waiting,
            Part::Rank,
            Part::Seq,
            Part::Concert,
            Part::Seen,
            Part::Hold,
            Part::Post,
            Part::Fair,
            Part::Writers,
            Part::Staged,
            Part::Order,
            Part::Lanes,
            Part::Staged,
        ]
        .map(|p| self.lane_key(concert, lane, p));
        keys[13] = self.key(concert, Part::Staged);
        keys
    }

    /// Stages the fans in `joins` (userId, joinedAt ms, in read order) who were never queued
    /// for `concert` (release.lua places them), as `writer`, in atomic script calls of at most
    /// [`APPLY_MAX`] fans each (so no call's work grows with the batch), and says whether the
    /// writer's writes on the concert reached the replicas and whether a failover lost earlier
    /// ones. The calls and one `WAIT` (at most `QUEUEGATE_REDIS_REPLICA_TIMEOUT_MS`) go in one
    /// pipeline on one connection, so to one node: the `WAIT` covers every call, and the
    /// writer's count is checked call by call on that node. A failure part-way leaves the
    /// earlier calls' fans staged; the batch's replay finds them there (duplicates).
    ///
    /// `wait` false skips the `WAIT` (a concert whose shard is known to be short of replicas:
    /// waiting out the timeout on every batch would slow every concert of the batch).
    pub async fn apply_as(
        &self,
        writer: &mut Writer,
        concert: &ConcertId,
        lane: &Lane,
        joins: &[(&UserId, i64)],
        wait: bool,
    ) -> Result<Written, StoreError> {
        let keys = self.apply_keys(concert, lane);
        // An empty batch still makes its one call (it bumps the writer's counter).
        let chunks: Vec<&[(&UserId, i64)]> =
            if joins.is_empty() { vec![&[]] } else { joins.chunks(APPLY_MAX).collect() };
        let cmds = chunks
            .iter()
            .map(|chunk| {
                let mut cmd = evalsha(&self.scripts.apply, &keys);
                cmd.arg(&writer.id).arg(if lane.is_general() { "" } else { lane.as_str() });
                for (user, at) in chunk.iter() {
                    cmd.arg(user.as_str()).arg(*at);
                }
                cmd
            })
            .collect();
        let timeout = wait.then_some(self.replica_timeout);
        let (replies, acked) = self.with_wait(&self.scripts.apply, cmds, timeout).await?;
        let mut applied = Applied::default();
        let mut lost_earlier = false;
        for reply in replies {
            let (appended, duplicates, calls, late): (u64, u64, i64, u64) =
                redis::from_redis_value(reply).map_err(|e| StoreError::Reply(e.to_string()))?;
            applied.appended += appended;
            applied.duplicates += duplicates;
            applied.late += late;
            lost_earlier |= writer.saw(concert, calls);
        }
        Ok(Written { applied, replication: if wait { self.judge(acked) } else { Replication::Unasked }, lost_earlier })
    }

    /// Asks again whether `writer`'s writes on `concert` reached the replicas: bumps its counter
    /// (a write, so `WAIT` has something of this connection to wait for, behind every earlier
    /// write on that primary) and waits once, at most `timeout`. The second value is true when a
    /// failover lost some of the writer's writes.
    pub async fn confirm(
        &self,
        writer: &mut Writer,
        concert: &ConcertId,
        timeout: Duration,
    ) -> Result<(Replication, bool), StoreError> {
        if writer.id.is_empty() {
            return Ok((Replication::Done, false));
        }
        let mut cmd = evalsha(&self.scripts.confirm, &[self.key(concert, Part::Writers)]);
        cmd.arg(&writer.id);
        let (mut replies, acked) =
            self.with_wait(&self.scripts.confirm, vec![cmd], Some(timeout.min(self.replica_timeout))).await?;
        let reply = replies.pop().ok_or_else(|| StoreError::Reply("no script reply".into()))?;
        let calls: i64 = redis::from_redis_value(reply).map_err(|e| StoreError::Reply(e.to_string()))?;
        Ok((self.judge(acked), writer.saw(concert, calls)))
    }

    fn judge(&self, acked: Option<u32>) -> Replication {
        match acked {
            Some(acked) if acked < self.min_replicas => Replication::Short { acked, wanted: self.min_replicas },
            _ => Replication::Done,
        }
    }

    /// How long the consumer may hold offsets back for replicas (None: no limit).
    pub fn replica_grace(&self) -> Option<Duration> {
        self.replica_grace
    }

    /// Whether writes wait for replicas at all (`QUEUEGATE_REDIS_MIN_REPLICAS` > 0).
    pub fn asks_replicas(&self) -> bool {
        self.min_replicas > 0
    }

    /// Runs `cmds` (EVALSHAs of `script` on one concert's keys) and, when replicas are asked
    /// for and `wait` is given, `WAIT` (at most `wait`) in one pipeline on one connection (so on
    /// one node): the scripts' replies, in order, and the replicas that acknowledged. A node
    /// that lacks the script (restarted, promoted) gets it loaded, once.
    async fn with_wait(
        &self,
        script: &Script,
        cmds: Vec<Cmd>,
        wait: Option<Duration>,
    ) -> Result<(Vec<Value>, Option<u32>), StoreError> {
        let wait = wait.filter(|_| self.min_replicas > 0);
        let n = cmds.len();
        let mut pipe = redis::pipe();
        // Each command's error comes back as its own value (without this, as one "pipeline
        // failure" without the server's error code, which decides retry or dead letter).
        pipe.ignore_errors();
        for cmd in cmds {
            pipe.add_command(cmd);
        }
        if let Some(t) = wait {
            // WAIT's timeout 0 means "for ever".
            pipe.cmd("WAIT").arg(self.min_replicas).arg((t.as_millis() as u64).max(1));
        }
        let mut c: Conn = self.conn().await?;
        let mut loaded = false;
        let mut reply: Vec<Value> = loop {
            let answered = timed(pipe.query_async::<Vec<Value>>(&mut c)).await.and_then(|reply| {
                reply.into_iter().map(|v| v.extract_error().map_err(StoreError::Redis)).collect::<Result<Vec<_>, _>>()
            });
            match answered {
                Err(StoreError::Redis(e)) if e.code() == Some("NOSCRIPT") && !loaded => {
                    timed(script.load_async(&mut c)).await?;
                    loaded = true;
                }
                r => break r?,
            }
        };
        let acked = if wait.is_some() {
            let v = reply.pop().ok_or_else(|| StoreError::Reply("no WAIT reply".into()))?;
            Some(redis::from_redis_value(v).map_err(|e| StoreError::Reply(e.to_string()))?)
        } else {
            None
        };
        if reply.len() != n {
            return Err(StoreError::Reply(format!("{} script replies for {n} calls", reply.len())));
        }
        Ok((reply, acked))
    }

    /// How the shards stand: on a cluster from one node's `CLUSTER SHARDS` (the cluster's own
    /// view: a replica it marked failed is not counted); on one server from `INFO replication`
    /// (the replicas connected and past their initial sync). Err when Redis did not answer.
    pub async fn health(&self) -> Result<RedisHealth, StoreError> {
        let mut c = self.conn().await?;
        if !self.is_cluster() {
            let pong: String = timed(redis::cmd("PING").query_async(&mut c)).await?;
            if pong != "PONG" {
                return Err(StoreError::Reply(pong));
            }
            let mut health = RedisHealth { shards: 1, degraded: Vec::new() };
            if self.min_replicas > 0 {
                let info: String = timed(redis::cmd("INFO").arg("replication").query_async(&mut c)).await?;
                let replicas = online_replicas(&info);
                if replicas < self.min_replicas {
                    health.degraded.push(DegradedShard {
                        primary: "primary".into(),
                        slots: Vec::new(),
                        replicas,
                        down: false,
                    });
                }
            }
            return Ok(health);
        }
        // Any live primary knows the whole cluster's state. One that died before its failover
        // is still in the client's slot map for a few seconds: ask another.
        let mut last = None;
        for _ in 0..3 {
            match c.on_any_primary::<Value>(redis::cmd("CLUSTER").arg("SHARDS").clone()).await {
                Ok(reply) => return parse_shards(&reply, self.min_replicas),
                Err(e) => last = Some(e),
            }
        }
        Err(last.expect("three attempts"))
    }
}

/// Replicas `online` in an `INFO replication` reply (`slave0:ip=…,port=…,state=online,…`).
fn online_replicas(info: &str) -> u32 {
    info.lines().filter(|l| l.starts_with("slave") && l.contains("state=online")).count() as u32
}

/// `EVALSHA <sha> <keys…>` of `script` (arguments follow).
fn evalsha(script: &Script, keys: &[String]) -> Cmd {
    let mut cmd = redis::cmd("EVALSHA");
    cmd.arg(script.get_hash()).arg(keys.len()).arg(keys);
    cmd
}

/// A reply's field/value pairs: RESP3 maps, or RESP2 arrays of alternating names and values.
fn fields(v: &Value) -> Vec<(String, &Value)> {
    let name = |k: &Value| redis::from_redis_value_ref::<String>(k).unwrap_or_default();
    match v {
        Value::Map(m) => m.iter().map(|(k, v)| (name(k), v)).collect(),
        Value::Array(a) => a.chunks(2).filter_map(|p| Some((name(&p[0]), p.get(1)?))).collect(),
        _ => Vec::new(),
    }
}

fn items(v: &Value) -> &[Value] {
    match v {
        Value::Array(a) | Value::Set(a) => a,
        _ => &[],
    }
}

/// Reads `CLUSTER SHARDS`: a shard with slots is degraded when no primary of it is online, or
/// fewer of its replicas are online than `min_replicas`.
pub(crate) fn parse_shards(reply: &Value, min_replicas: u32) -> Result<RedisHealth, StoreError> {
    let mut health = RedisHealth::default();
    for shard in items(reply) {
        let f = fields(shard);
        let get = |name: &str| f.iter().find(|(k, _)| k == name).map(|(_, v)| *v);
        let bounds: Vec<u16> = get("slots")
            .map(items)
            .unwrap_or_default()
            .iter()
            .filter_map(|v| redis::from_redis_value_ref::<u16>(v).ok())
            .collect();
        let slots: Vec<(u16, u16)> = bounds.chunks(2).filter(|p| p.len() == 2).map(|p| (p[0], p[1])).collect();
        if slots.is_empty() {
            continue;
        }
        health.shards += 1;
        let (mut primary, mut dead_primary, mut replicas) = (None, None, 0u32);
        for node in get("nodes").map(items).unwrap_or_default() {
            let n = fields(node);
            let text = |name: &str| {
                n.iter()
                    .find(|(k, _)| k == name)
                    .and_then(|(_, v)| redis::from_redis_value_ref::<String>(v).ok())
                    .unwrap_or_default()
            };
            let addr = format!("{}:{}", text("ip"), text("port"));
            let online = text("health") == "online";
            match (text("role").as_str(), online) {
                ("master", true) => primary = Some(addr),
                ("master", false) => dead_primary = Some(addr),
                (_, true) => replicas += 1,
                _ => {}
            }
        }
        let down = primary.is_none();
        if down || replicas < min_replicas {
            health.degraded.push(DegradedShard {
                primary: primary.or(dead_primary).unwrap_or_default(),
                slots,
                replicas,
                down,
            });
        }
    }
    if health.shards == 0 {
        return Err(StoreError::Reply("CLUSTER SHARDS lists no shard serving slots".into()));
    }
    Ok(health)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    fn node(port: i64, role: &str, health: &str) -> Value {
        Value::Array(vec![
            bulk("id"),
            bulk("x"),
            bulk("port"),
            Value::Int(port),
            bulk("ip"),
            bulk("127.0.0.1"),
            bulk("role"),
            bulk(role),
            bulk("health"),
            bulk(health),
        ])
    }

    fn shard(from: i64, to: i64, nodes: Vec<Value>) -> Value {
        Value::Array(vec![
            bulk("slots"),
            Value::Array(vec![Value::Int(from), Value::Int(to)]),
            bulk("nodes"),
            Value::Array(nodes),
        ])
    }

    #[test]
    fn a_shard_is_degraded_when_short_of_online_replicas_or_without_an_online_primary() {
        let reply = Value::Array(vec![
            shard(0, 5460, vec![node(7000, "master", "online"), node(7003, "replica", "online")]),
            // The old primary died and its replica was promoted: no replica now.
            shard(5461, 10922, vec![node(7001, "master", "failed"), node(7004, "master", "online")]),
            // Both nodes dead.
            shard(10923, 16383, vec![node(7002, "master", "failed"), node(7005, "replica", "failed")]),
            // A node without slots is not a shard.
            Value::Array(vec![bulk("slots"), Value::Array(vec![]), bulk("nodes"), Value::Array(vec![])]),
        ]);
        let h = parse_shards(&reply, 1).unwrap();
        assert_eq!(h.shards, 3);
        assert_eq!((h.under_replicated(), h.down()), (1, 1));
        assert_eq!(h.degraded[0].primary, "127.0.0.1:7004");
        assert_eq!(h.degraded[0].slots, vec![(5461, 10922)]);
        assert_eq!(h.degraded[1].primary, "127.0.0.1:7002");
        // Nothing asked of replicas: only the dead shard counts.
        let h = parse_shards(&reply, 0).unwrap();
        assert_eq!((h.under_replicated(), h.down()), (0, 1));
        assert!(parse_shards(&Value::Array(vec![]), 1).is_err(), "a reply without shards is no answer");
    }

    #[test]
    fn only_replicas_past_their_sync_count_as_online() {
        let info = "# Replication\r\nrole:master\r\nconnected_slaves:2\r\nslave0:ip=127.0.0.1,port=7,state=online,offset=9,lag=0\r\nslave1:ip=127.0.0.1,port=8,state=wait_bgsave,offset=0,lag=0\r\nslave_read_only:1\r\n";
        assert_eq!(online_replicas(info), 1);
        assert_eq!(online_replicas("# Replication\r\nrole:master\r\nconnected_slaves:0\r\n"), 0);
    }

    #[test]
    fn a_writer_learns_of_lost_writes_when_its_count_does_not_grow() {
        let c = ConcertId::parse("c").unwrap();
        let mut w = Writer::new();
        assert!(!w.saw(&c, 7), "the first count seen is the baseline");
        assert!(!w.saw(&c, 8));
        assert!(!w.saw(&c, 10), "a retried pipeline may count twice: nothing lost");
        assert!(w.saw(&c, 10), "the node lacks a call");
        assert!(w.saw(&c, 3));
        assert!(!w.saw(&c, 4), "the new count is the baseline from then on");
        let mut anon = Writer::anonymous();
        assert!(!anon.saw(&c, 0) && !anon.saw(&c, 0));
    }
}
