//! The Redis queue store: every concert's queue and settings, under `{prefix}:{{concertId}}:*`.
//!
//! All keys of one concert share the hash tag `{concertId}`, so a concert lives in one Redis
//! Cluster slot and each Lua script below touches keys of one slot only. Writes that must be
//! atomic (applying a batch of joins) are Lua scripts; `redis::Script` calls them with EVALSHA
//! and loads them again when the server answers NOSCRIPT (after a restart or SCRIPT FLUSH).
//!
//! Costs (n = fans in the concert's queue): a fan's status is one EVALSHA doing HGET + ZCARD +
//! ZRANK, O(log n); a page of the admin listing is ZRANGE by index + HMGET, O(log n + limit);
//! counts are ZCARD, O(1). Nothing on a request path scans the queue.

use std::sync::Arc;
use std::time::Duration;

use redis::Script;

use crate::concerts::{Concert, ConcertSettings};
use crate::config::RedisSettings;
use crate::ids::{ConcertId, Lane, RequestId, UserId};

mod audit;
mod conn;
pub mod events;
mod fair;
pub mod keys;
mod lanes;
pub mod order;
mod replicas;
pub mod sessions;
pub mod view;

pub use fair::{Cut, CutStep, FairState, CUT_SLICE};
pub use lanes::{
    code_hash, strong_enough, valid_code, CodeBudgets, CodeCheck, CodeKey, MAX_CODE_CHARS, MIN_CODE_BITS,
    MIN_CODE_CHARS,
};
pub use replicas::{DegradedShard, RedisHealth, Replication, Writer, Written, APPLY_MAX};

use conn::{timed, Backend};
use keys::{Keys, Part};

/// Why the store could not answer. Every variant is passing: callers retry or answer 503.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("no Redis connection available: {0}")]
    Pool(#[from] deadpool_redis::PoolError),
    #[error("Redis call failed: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("Redis call timed out")]
    Timeout,
    #[error("unexpected reply from Redis: {0}")]
    Reply(String),
    /// `WAIT` counted fewer replicas than `QUEUEGATE_REDIS_MIN_REPLICAS` within the timeout.
    #[error("writes reached {acked} replica(s) of the {wanted} QUEUEGATE_REDIS_MIN_REPLICAS asks for")]
    Replicas { wanted: u32, acked: u32 },
}

impl StoreError {
    /// Whether retrying cannot help: Redis refused the command itself (a key of the wrong type,
    /// an error inside a script, a missing ACL permission), as opposed to a connection, a
    /// timeout, a loading or out-of-memory server, which pass. Out of memory is deliberately
    /// passing: it is not one concert's fault, and parking every concert would turn a memory
    /// alarm into a replay job.
    pub fn is_permanent(&self) -> bool {
        match self {
            StoreError::Redis(e) => matches!(e.code(), Some("WRONGTYPE" | "ERR" | "NOPERM")),
            _ => false,
        }
    }

    /// Whether the node that holds the key could not be reached at all (a connection refused or
    /// dropped, a timeout, the cluster redirecting to a node that is down): what a shard that is
    /// down looks like. Not a lagging replica (`Replicas`), a lost write or a refused command:
    /// the shard is up, and its concerts wait for it rather than being parked.
    pub fn is_unreachable(&self) -> bool {
        match self {
            StoreError::Pool(_) | StoreError::Timeout => true,
            StoreError::Redis(e) => {
                e.is_io_error()
                    || e.is_connection_refusal()
                    || e.is_connection_dropped()
                    || e.is_timeout()
                    || e.is_cluster_error()
                    || matches!(e.code(), Some("CLUSTERDOWN" | "MASTERDOWN"))
            }
            StoreError::Reply(_) | StoreError::Replicas { .. } => false,
        }
    }
}

/// Outcome of applying one concert's batch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Applied {
    pub appended: u64,
    pub duplicates: u64,
    /// Of `appended`, fans whose stamp is below one already placed: they are placed behind it.
    pub late: u64,
}

/// Where a fan stands in a concert's queue.
#[derive(Debug, Clone, PartialEq)]
pub enum Standing {
    /// Not in Redis (yet): the join is on its way through Kafka, or never happened.
    Unknown,
    /// Held in a scheduled concert's pre-queue until the cut at `opens_at_ms`.
    Held { opens_at_ms: i64, joined_at_ms: i64 },
    /// Waiting at `position` (1-based) of `queue_length`; `observed_rate` is the concert's
    /// recent admission rate (admits/s, decayed over ~30 s).
    /// `seq` is the fan's sequence number, from which the gateways' views work the position out.
    Waiting { position: u64, queue_length: u64, joined_at_ms: i64, observed_rate: f64, seq: u64 },
    /// Was queued, is no longer waiting.
    Left { queue_length: u64, joined_at_ms: i64, outcome: Outcome },
}

/// How a fan left the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Admitted at `iat_ms`; the admission token expires at `exp_ms`.
    Admitted { iat_ms: i64, exp_ms: i64 },
    /// Admitted, and the booking site said it is done with the fan at `at_ms` (slot freed).
    Completed { at_ms: i64 },
    /// Skipped at admission because it stopped polling (abandoned).
    Abandoned { at_ms: i64 },
    /// Removed by an operator.
    Removed { at_ms: i64 },
}

impl Outcome {
    /// Parses the state written by admit.lua / remove.lua.
    pub(crate) fn parse(s: &str) -> Option<Outcome> {
        let mut parts = s.split(':');
        let kind = parts.next()?;
        let a: i64 = parts.next()?.parse().ok()?;
        match kind {
            "a" => Some(Outcome::Admitted { iat_ms: a, exp_ms: parts.next()?.parse().ok()? }),
            "c" => {
                let _exp = parts.next()?;
                Some(Outcome::Completed { at_ms: parts.next()?.parse().ok()? })
            }
            "x" => Some(Outcome::Abandoned { at_ms: a }),
            "r" => Some(Outcome::Removed { at_ms: a }),
            _ => None,
        }
    }
}

/// One lane's counts.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LaneCounts {
    pub name: Lane,
    pub waiting: u64,
    /// Admitted from this lane since the concert began.
    pub admitted: u64,
}

/// A concert's counts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counts {
    /// Waiting in all its lanes.
    pub waiting: u64,
    /// Admitted since the concert began.
    pub admitted: u64,
    /// Admitted fans whose token has not expired nor been completed (the slots in use).
    pub active: u64,
    /// Skipped at admission as abandoned.
    pub abandoned: u64,
    pub removed: u64,
    /// Live gate sessions (each also counted in `active`).
    pub sessions: u64,
    /// Per lane, in the concert's order.
    pub lanes: Vec<LaneCounts>,
}

/// What one admission call asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdmitRequest<'a> {
    pub max: u32,
    pub ttl_ms: i64,
    pub max_active: u32,
    pub abandon_after_ms: i64,
    /// 0: no rate bucket (manual admission, or concurrency mode alone).
    pub per_second: u32,
    /// The lease value held by an automatic admitter; None for manual admission.
    pub lease: Option<&'a str>,
    /// The concert's lanes, (name, share), in its order; each round is split between them.
    pub lanes: &'a [(Lane, u32)],
    /// Makes the call idempotent: a call with a request id seen in the last hour returns that
    /// call's answer and admits nobody.
    pub request: Option<&'a RequestId>,
}

impl AdmitRequest<'static> {
    /// A manual admission of at most `max` fans with tokens of `ttl_ms`: no slots, no rate,
    /// no lease, no abandonment, the general lane. Change what differs with struct update:
    /// `AdmitRequest { max_active: 10, ..AdmitRequest::manual(5, 600_000) }`.
    pub fn manual(max: u32, ttl_ms: i64) -> Self {
        AdmitRequest {
            max,
            ttl_ms,
            max_active: 0,
            abandon_after_ms: 0,
            per_second: 0,
            lease: None,
            lanes: &[],
            request: None,
        }
    }
}

/// Fans admitted by one call: (userId, token expiry ms), issued at `iat_ms`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admitted {
    pub iat_ms: i64,
    pub fans: Vec<(UserId, i64)>,
    /// Gate sessions this call ended because their slot's deadline had passed: (idle, at
    /// their maximum). The sweep ends such sessions just before; these passed in between.
    pub sessions_ended: (u64, u64),
}

/// One row of the admin listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueEntry {
    pub position: u64,
    pub user_id: UserId,
    pub joined_at_ms: i64,
}

/// Entries a concert's outbox holds at most unless told otherwise (the default of
/// `QUEUEGATE_EVENTS_OUTBOX_MAX`).
pub const DEFAULT_OUTBOX_MAX: u64 = 10_000;

/// A script that writes the outbox: outbox.lua with its cap in front, then `parts`.
fn with_outbox(outbox_max: u64, parts: &[&str]) -> Script {
    Script::new(&outbox_source(outbox_max, parts))
}

/// The source of [`with_outbox`]'s script.
fn outbox_source(outbox_max: u64, parts: &[&str]) -> String {
    format!("local OUTBOX_MAX = {outbox_max}\n{}{}", include_str!("store/outbox.lua"), parts.concat())
}

/// The Lua scripts, hashed once.
struct Scripts {
    apply: Script,
    status: Script,
    page: Script,
    admit: Script,
    view: Script,
    cut: Script,
    remove: Script,
    lease: Script,
    counts: Script,
    complete: Script,
    confirm: Script,
    release: Script,
    concert_put: Script,
    audit: Script,
    sessions: sessions::Scripts,
    codes: lanes::Scripts,
    events: events::Scripts,
}

impl Scripts {
    fn new(outbox_max: u64) -> Self {
        Scripts {
            apply: Script::new(include_str!("store/apply.lua")),
            status: Script::new(include_str!("store/status.lua")),
            page: Script::new(include_str!("store/page.lua")),
            admit: with_outbox(outbox_max, &[include_str!("store/slots.lua"), include_str!("store/admit.lua")]),
            remove: with_outbox(outbox_max, &[include_str!("store/remove.lua")]),
            lease: Script::new(include_str!("store/lease.lua")),
            counts: Script::new(include_str!("store/counts.lua")),
            complete: with_outbox(outbox_max, &[include_str!("store/complete.lua")]),
            view: Script::new(include_str!("store/view.lua")),
            cut: with_outbox(outbox_max, &[include_str!("store/cut.lua")]),
            confirm: Script::new(include_str!("store/confirm.lua")),
            release: with_outbox(outbox_max, &[include_str!("store/release.lua")]),
            concert_put: with_outbox(outbox_max, &[include_str!("store/concert_put.lua")]),
            audit: with_outbox(outbox_max, &[include_str!("store/audit.lua")]),
            sessions: sessions::Scripts::new(outbox_max),
            codes: lanes::Scripts::new(),
            events: events::Scripts::new(),
        }
    }
}

/// What a concert settings write expects to find stored ([`QueueStore::put_concert_if`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// Anything: the write happens whatever is stored.
    Any,
    /// No concert of that id yet.
    Absent,
    /// The concert at this version ([`Concert::version`](crate::concerts::Concert::version)).
    Version(u64),
}

/// Handle on the Redis queue store; cheap to clone.
#[derive(Clone)]
pub struct QueueStore {
    backend: Backend,
    keys: Keys,
    scripts: Arc<Scripts>,
    /// Replicas a batch of joins must reach before [`QueueStore::apply`] returns (0: none).
    min_replicas: u32,
    replica_timeout: Duration,
    /// `QUEUEGATE_REDIS_REPLICA_GRACE_MS` (None: 0, no limit).
    replica_grace: Option<Duration>,
}

/// A userId read back from Redis: written by this code, so a bad one means a corrupted store.
fn stored_user(v: &redis::Value) -> Result<UserId, StoreError> {
    let s: String = redis::from_redis_value_ref(v).map_err(|e| StoreError::Reply(e.to_string()))?;
    UserId::parse(s).map_err(|e| StoreError::Reply(e.to_string()))
}

impl QueueStore {
    /// Creates the connection pools from the Redis section (no connection is made until first
    /// use), with outboxes capped at [`DEFAULT_OUTBOX_MAX`] entries.
    pub fn new(settings: &RedisSettings) -> anyhow::Result<Self> {
        Ok(QueueStore {
            backend: Backend::new(settings)?,
            min_replicas: settings.min_replicas(),
            replica_timeout: Duration::from_millis(settings.redis_replica_timeout_ms),
            replica_grace: Some(Duration::from_millis(settings.redis_replica_grace_ms)).filter(|d| !d.is_zero()),
            keys: Keys::new(&settings.redis_prefix),
            scripts: Arc::new(Scripts::new(DEFAULT_OUTBOX_MAX)),
        })
    }

    /// The same store with each concert's outbox capped at `max` entries
    /// (`QUEUEGATE_EVENTS_OUTBOX_MAX`, at least 1; outbox.lua).
    pub fn with_outbox_max(mut self, max: u64) -> Self {
        self.scripts = Arc::new(Scripts::new(max.max(1)));
        self
    }

    /// The key scheme this store uses.
    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    fn key(&self, concert: &ConcertId, part: Part) -> String {
        self.keys.concert(concert, part)
    }

    /// A key of `lane` (its own for the queue's parts, the concert's for the shared ones).
    fn lane_key(&self, concert: &ConcertId, lane: &Lane, part: Part) -> String {
        self.keys.lane(concert, lane, part)
    }

    /// Adds the keys of the concert's outbox and report to a script call (outbox.lua).
    fn outbox_keys(&self, inv: &mut redis::ScriptInvocation<'_>, concert: &ConcertId) {
        for key in self.keys.outbox(concert) {
            inv.key(key);
        }
    }

    async fn conn(&self) -> Result<conn::Conn, StoreError> {
        self.backend.pooled().await
    }

    /// Whether this store is a Redis Cluster (where one shard can be down while others serve).
    pub fn is_cluster(&self) -> bool {
        matches!(self.backend, conn::Backend::Cluster { .. })
    }

    /// Appends the fans in `joins` who were never queued for `concert` to its queue, like
    /// [`apply_as`](Self::apply_as) for a writer that holds nothing: the call fails with
    /// [`StoreError::Replicas`] when the writes did not reach `QUEUEGATE_REDIS_MIN_REPLICAS`
    /// replicas in time (applied all the same; calling again is harmless).
    pub async fn apply(&self, concert: &ConcertId, joins: &[(&UserId, i64)]) -> Result<Applied, StoreError> {
        self.apply_in(concert, &Lane::general(), joins).await
    }

    /// [`apply`](Self::apply) to `lane`.
    pub async fn apply_in(
        &self,
        concert: &ConcertId,
        lane: &Lane,
        joins: &[(&UserId, i64)],
    ) -> Result<Applied, StoreError> {
        let w = self.apply_as(&mut Writer::anonymous(), concert, lane, joins, true).await?;
        match w.replication {
            Replication::Done | Replication::Unasked => Ok(w.applied),
            Replication::Short { acked, wanted } => Err(StoreError::Replicas { wanted, acked }),
        }
    }

    /// Where `user` stands in `concert`'s queue (in its lane), the lane, and Redis's time (ms):
    /// O(log n). `lanes` are the concert's lanes, where the fan may be (general's keys are read
    /// whatever they say). With
    /// `record_poll_every_ms` > 0 the read also records the fan's last poll (abandonment is
    /// judged by it) when the recorded one is at least that old; operators' reads pass 0.
    pub async fn standing(
        &self,
        concert: &ConcertId,
        lanes: &[Lane],
        user: &UserId,
        record_poll_every_ms: u64,
    ) -> Result<(Standing, Lane, i64), StoreError> {
        let mut inv = self.scripts.status.prepare_invoke();
        inv.key(self.key(concert, Part::Joined))
            .key(self.key(concert, Part::Rank))
            .key(self.key(concert, Part::State))
            .key(self.key(concert, Part::Seen))
            .key(self.key(concert, Part::Adm))
            .key(self.key(concert, Part::Hold))
            .key(self.key(concert, Part::Concert))
            .key(self.key(concert, Part::Lanes));
        let others: Vec<&Lane> = lanes.iter().filter(|l| !l.is_general()).collect();
        for lane in &others {
            inv.key(self.lane_key(concert, lane, Part::Rank)).key(self.lane_key(concert, lane, Part::Hold));
        }
        inv.arg(user.as_str()).arg(record_poll_every_ms);
        for lane in &others {
            inv.arg(lane.as_str());
        }
        let reply: Vec<redis::Value> = self.backend.shared(async |c| timed(inv.invoke_async(c)).await).await?;
        let get =
            |i: usize| reply.get(i).ok_or_else(|| StoreError::Reply(format!("status reply too short: {reply:?}")));
        let int = |i: usize| -> Result<i64, StoreError> {
            redis::from_redis_value_ref::<i64>(get(i)?).map_err(|e| StoreError::Reply(e.to_string()))
        };
        let text = |i: usize| -> Result<String, StoreError> {
            redis::from_redis_value_ref::<String>(get(i)?).map_err(|e| StoreError::Reply(e.to_string()))
        };
        // The last element is Redis's time: token expiry is judged by it, not this instance's
        // clock; the one before it the fan's lane.
        let now_ms = int(reply.len().saturating_sub(1))?;
        let lane = Lane::parse(text(reply.len().saturating_sub(2))?).map_err(|e| StoreError::Reply(e.to_string()))?;
        let standing = match int(0)? {
            0 => Standing::Unknown,
            3 => Standing::Held { opens_at_ms: int(1)?, joined_at_ms: int(2)? },
            1 => Standing::Waiting {
                position: int(1)? as u64,
                queue_length: int(2)? as u64,
                joined_at_ms: int(3)?,
                observed_rate: text(4)?.parse().unwrap_or(0.0),
                seq: int(5)? as u64,
            },
            _ => {
                let state = text(4)?;
                let outcome =
                    Outcome::parse(&state).ok_or_else(|| StoreError::Reply(format!("unknown fan state {state:?}")))?;
                Standing::Left { queue_length: int(2)? as u64, joined_at_ms: int(3)?, outcome }
            }
        };
        Ok((standing, lane, now_ms))
    }

    /// One page of a lane's queue in order: (total waiting in it, entries). O(log n + limit).
    pub async fn page(
        &self,
        concert: &ConcertId,
        lane: &Lane,
        offset: u64,
        limit: u64,
    ) -> Result<(u64, Vec<QueueEntry>), StoreError> {
        let mut inv = self.scripts.page.prepare_invoke();
        inv.key(self.lane_key(concert, lane, Part::Rank))
            .key(self.key(concert, Part::Joined))
            .arg(offset)
            .arg(limit.max(1));
        let mut c = self.conn().await?;
        let reply: Vec<redis::Value> = timed(inv.invoke_async(&mut c)).await?;
        let mut it = reply.iter();
        let total: u64 = it
            .next()
            .map(redis::from_redis_value_ref::<u64>)
            .transpose()
            .map_err(|e| StoreError::Reply(e.to_string()))?
            .unwrap_or(0);
        let mut entries = Vec::new();
        while let (Some(u), Some(at)) = (it.next(), it.next()) {
            let user_id = stored_user(u)?;
            let joined_at_ms: i64 = redis::from_redis_value_ref(at).map_err(|e| StoreError::Reply(e.to_string()))?;
            entries.push(QueueEntry { position: offset + entries.len() as u64 + 1, user_id, joined_at_ms });
        }
        Ok((total, entries))
    }

    /// A concert's counts, and each of `lanes`' (the concert's lanes, in order): O(L log n).
    pub async fn counts(&self, concert: &ConcertId, lanes: &[Lane]) -> Result<Counts, StoreError> {
        let general = [Lane::general()];
        let lanes = if lanes.is_empty() { &general[..] } else { lanes };
        let mut inv = self.scripts.counts.prepare_invoke();
        inv.key(self.key(concert, Part::Adm))
            .key(self.key(concert, Part::Active))
            .key(self.key(concert, Part::Sessions));
        for lane in lanes {
            inv.key(self.lane_key(concert, lane, Part::Rank));
            inv.arg(lane.as_str());
        }
        let mut c = self.conn().await?;
        let reply: Vec<u64> = timed(inv.invoke_async(&mut c)).await?;
        let [admitted, active, abandoned, removed, sessions, per_lane @ ..] = reply.as_slice() else {
            return Err(StoreError::Reply(format!("counts reply {reply:?}")));
        };
        let lanes: Vec<LaneCounts> = lanes
            .iter()
            .zip(per_lane.chunks(2))
            .map(|(name, c)| LaneCounts {
                name: name.clone(),
                waiting: c.first().copied().unwrap_or(0),
                admitted: c.get(1).copied().unwrap_or(0),
            })
            .collect();
        Ok(Counts {
            waiting: lanes.iter().map(|l| l.waiting).sum(),
            admitted: *admitted,
            active: *active,
            abandoned: *abandoned,
            removed: *removed,
            sessions: *sessions,
            lanes,
        })
    }

    /// Admits fans from the head of `concert`'s queue (see `admit.lua`). None when `req.lease`
    /// is no longer the concert's current lease.
    pub async fn admit(&self, concert: &ConcertId, req: AdmitRequest<'_>) -> Result<Option<Admitted>, StoreError> {
        let general = [(Lane::general(), 1)];
        let lanes = if req.lanes.is_empty() { &general[..] } else { req.lanes };
        let first = &lanes[0].0;
        let mut inv = self.scripts.admit.prepare_invoke();
        for part in
            [Part::Waiting, Part::Rank, Part::State, Part::Active, Part::Seen, Part::Joined, Part::Adm, Part::Lease]
        {
            inv.key(self.lane_key(concert, first, part));
        }
        inv.key(self.keys.admit_request(concert, req.request))
            .key(self.lane_key(concert, first, Part::Gone))
            .key(self.key(concert, Part::Concert))
            .key(self.key(concert, Part::Sessions))
            .key(self.key(concert, Part::Ended));
        self.outbox_keys(&mut inv, concert);
        for (lane, _) in &lanes[1..] {
            for part in [Part::Waiting, Part::Rank, Part::Gone] {
                inv.key(self.lane_key(concert, lane, part));
            }
        }
        inv.arg(req.max)
            .arg(req.ttl_ms)
            .arg(req.max_active)
            .arg(req.abandon_after_ms)
            .arg(req.per_second)
            .arg(req.lease.unwrap_or(""))
            .arg(req.request.map_or("", |r| r.as_str()))
            .arg(lanes.len());
        for (lane, _) in lanes {
            inv.arg(lane.as_str());
        }
        for (_, share) in lanes {
            inv.arg(*share);
        }
        let mut c = self.conn().await?;
        let reply: Vec<redis::Value> = timed(inv.invoke_async(&mut c)).await?;
        let parse = |v: &redis::Value| -> Result<String, StoreError> {
            redis::from_redis_value_ref::<String>(v).map_err(|e| StoreError::Reply(e.to_string()))
        };
        let mut it = reply.iter();
        match it.next().map(parse).transpose()?.as_deref() {
            Some("1") => {}
            Some("0") => return Ok(None),
            other => return Err(StoreError::Reply(format!("admit reply starts with {other:?}"))),
        }
        let iat_ms: i64 = it.next().map(parse).transpose()?.and_then(|v| v.parse().ok()).unwrap_or(0);
        // "e:<idle>:<max>": gate sessions whose slot expired in this call (an answer remembered
        // from before this field existed has none: it starts with a fan, whose id has no colon).
        let mut it = it.peekable();
        let mut sessions_ended = (0, 0);
        if let Some(e) = it.peek().map(|v| parse(v)).transpose()?.and_then(|v| v.strip_prefix("e:").map(str::to_owned))
        {
            it.next();
            let mut n = e.split(':').map(|x| x.parse::<u64>().unwrap_or(0));
            sessions_ended = (n.next().unwrap_or(0), n.next().unwrap_or(0));
        }
        let mut fans = Vec::new();
        while let (Some(u), Some(exp)) = (it.next(), it.next()) {
            fans.push((stored_user(u)?, parse(exp)?.parse().map_err(|_| StoreError::Reply("bad expiry".into()))?));
        }
        Ok(Some(Admitted { iat_ms, fans, sessions_ended }))
    }

    /// Removes a waiting fan; false when the fan was not waiting. O(log n): the fan leaves the
    /// ranking at once and its entry in the waiting LIST is skipped by admission (remove.lua).
    pub async fn remove(&self, concert: &ConcertId, user: &UserId) -> Result<bool, StoreError> {
        // The fan's lane, first: a fan never changes lanes, so it cannot be stale by the removal.
        let mut c = self.conn().await?;
        let lane: Option<String> =
            timed(redis::cmd("HGET").arg(self.key(concert, Part::Lanes)).arg(user.as_str()).query_async(&mut c))
                .await?;
        let lane = match lane {
            Some(l) => Lane::parse(l).map_err(|e| StoreError::Reply(e.to_string()))?,
            None => Lane::general(),
        };
        let mut inv = self.scripts.remove.prepare_invoke();
        for part in [Part::Rank, Part::State, Part::Adm, Part::Gone] {
            inv.key(self.lane_key(concert, &lane, part));
        }
        self.outbox_keys(&mut inv, concert);
        inv.arg(user.as_str())
            .arg(if lane.is_general() { String::new() } else { format!("@{lane}") })
            .arg(lane.as_str());
        let removed: i64 = timed(inv.invoke_async(&mut c)).await?;
        Ok(removed == 1)
    }

    /// Records that the booking site is done with an admitted fan and frees its slot (see
    /// `complete.lua`); idempotent. None when the fan was never admitted, else whether a live
    /// gate session ended with it.
    pub async fn complete(&self, concert: &ConcertId, user: &UserId) -> Result<Option<bool>, StoreError> {
        let mut inv = self.scripts.complete.prepare_invoke();
        inv.key(self.key(concert, Part::State))
            .key(self.key(concert, Part::Active))
            .key(self.key(concert, Part::Sessions))
            .key(self.key(concert, Part::Ended));
        self.outbox_keys(&mut inv, concert);
        inv.arg(user.as_str());
        let mut c = self.conn().await?;
        let done: i64 = timed(inv.invoke_async(&mut c)).await?;
        Ok(match done {
            0 => None,
            3 => Some(true),
            _ => Some(false),
        })
    }

    /// Takes or renews the concert's admitter lease for `instance`; the lease value when held.
    pub async fn lease(&self, concert: &ConcertId, instance: &str, ttl_ms: u64) -> Result<Option<String>, StoreError> {
        let mut inv = self.scripts.lease.prepare_invoke();
        inv.key(self.key(concert, Part::Lease)).key(self.key(concert, Part::Fence)).arg(instance).arg(ttl_ms);
        let mut c = self.conn().await?;
        timed(inv.invoke_async(&mut c)).await
    }

    /// The raw waiting LIST of the general lane, head first (tests and tools; O(n)).
    pub async fn waiting_list(&self, concert: &ConcertId) -> Result<Vec<String>, StoreError> {
        self.waiting_list_in(concert, &Lane::general()).await
    }

    /// The waiting LIST of `lane`, head first, without the entries of fans removed from the
    /// middle (remove.lua leaves those for admission to skip): the order admission takes fans
    /// in (tests and tools; O(n)).
    pub async fn waiting_list_in(&self, concert: &ConcertId, lane: &Lane) -> Result<Vec<String>, StoreError> {
        let mut c = self.conn().await?;
        let list: Vec<String> = timed(
            redis::cmd("LRANGE").arg(self.lane_key(concert, lane, Part::Waiting)).arg(0).arg(-1).query_async(&mut c),
        )
        .await?;
        if list.is_empty() {
            return Ok(list);
        }
        let ranked: Vec<Option<f64>> =
            timed(redis::cmd("ZMSCORE").arg(self.lane_key(concert, lane, Part::Rank)).arg(&list).query_async(&mut c))
                .await?;
        Ok(list.into_iter().zip(ranked).filter_map(|(u, r)| r.map(|_| u)).collect())
    }

    /// Creates or updates a concert's settings, whatever is stored; returns what is stored.
    pub async fn put_concert(&self, id: &ConcertId, settings: &ConcertSettings) -> Result<Concert, StoreError> {
        let stored = self.put_concert_if(id, settings, Expect::Any).await?;
        stored.ok_or_else(|| StoreError::Reply("an unconditional write was refused".into()))
    }

    /// Creates or updates a concert's settings if the stored concert is what `expect` says
    /// (checked and written in one script, concert_put.lua, so a writer on another gateway
    /// cannot slip in between); returns what is stored, or None when the expectation did not
    /// hold and nothing was written. The change's event goes to the outbox in the same call.
    pub async fn put_concert_if(
        &self,
        id: &ConcertId,
        settings: &ConcertSettings,
        expect: Expect,
    ) -> Result<Option<Concert>, StoreError> {
        let now = crate::clock::now_ms();
        // The change's event: the settings without the webhooks, which are the operator's
        // business, not the events' readers'.
        let kind = if settings.state == crate::concerts::ConcertState::SoldOut {
            "concert.soldout"
        } else {
            "concert.updated"
        };
        let mut published = serde_json::to_value(settings).map_err(|e| StoreError::Reply(e.to_string()))?;
        if let Some(m) = published.as_object_mut() {
            m.remove("webhooks");
        }
        let mut inv = self.scripts.concert_put.prepare_invoke();
        for key in self.keys.outbox(id) {
            inv.key(key);
        }
        let expected = match expect {
            Expect::Any => String::new(),
            Expect::Absent => "-".to_owned(),
            Expect::Version(v) => v.to_string(),
        };
        inv.arg(expected).arg(now).arg(kind).arg(published.to_string());
        for (field, value) in settings.to_fields() {
            inv.arg(field).arg(value);
        }
        let mut c = self.conn().await?;
        let version: i64 = timed(inv.invoke_async(&mut c)).await?;
        if version < 0 {
            return Ok(None);
        }
        if settings.opens_at.is_some() {
            // Scheduled: each lane's shuffle seed is drawn now, once, and only its hash is published.
            for lane in settings.lanes().iter() {
                self.commit_to_seed(&mut c, id, &lane.name).await?;
            }
        }
        // The registry is a separate key (another slot in a cluster); written after the concert
        // itself so a listed concert always has settings.
        timed(redis::cmd("SADD").arg(self.keys.registry()).arg(id.as_str()).query_async::<()>(&mut c)).await?;
        drop(c);
        self.get_concert(id).await?.map(Some).ok_or_else(|| StoreError::Reply("concert vanished after write".into()))
    }

    /// One concert's settings, or None when it does not exist.
    pub async fn get_concert(&self, id: &ConcertId) -> Result<Option<Concert>, StoreError> {
        let mut c = self.conn().await?;
        let fields: Vec<(String, String)> =
            timed(redis::cmd("HGETALL").arg(self.key(id, Part::Concert)).query_async(&mut c)).await?;
        Ok(if fields.is_empty() { None } else { Some(Concert::from_fields(id, &fields)) })
    }

    /// Claims a proof-of-work nonce of `concert` until `expires_ms` (SET NX PXAT): true the
    /// first time, false for a replay, on any gateway.
    pub async fn claim_pow_nonce(&self, concert: &ConcertId, nonce: &str, expires_ms: i64) -> Result<bool, StoreError> {
        let mut c = self.conn().await?;
        let set: Option<String> = timed(
            redis::cmd("SET")
                .arg(self.keys.pow_nonce(concert, nonce))
                .arg(1)
                .arg("NX")
                .arg("PXAT")
                .arg(expires_ms)
                .query_async(&mut c),
        )
        .await?;
        Ok(set.is_some())
    }

    /// How many fans wait in each of `concerts` (with their lanes): ZCARDs, O(1) each, in one
    /// round trip (see [`Backend::each`]).
    /// Lanes are counted together: `maxWaiting` is the concert's.
    pub async fn waiting_counts(&self, concerts: &[(ConcertId, Vec<Lane>)]) -> Result<Vec<u64>, StoreError> {
        let cmds = concerts
            .iter()
            .flat_map(|(id, lanes)| {
                lanes.iter().map(move |l| redis::cmd("ZCARD").arg(self.lane_key(id, l, Part::Rank)).clone())
            })
            .collect();
        let each: Vec<u64> = self.backend.each(cmds).await?;
        let mut it = each.into_iter();
        Ok(concerts.iter().map(|(_, lanes)| it.by_ref().take(lanes.len()).sum()).collect())
    }

    /// Every concert's settings, sorted by id; one round trip after SMEMBERS (see [`Backend::each`]).
    pub async fn list_concerts(&self) -> Result<Vec<Concert>, StoreError> {
        let mut c = self.conn().await?;
        let ids: Vec<String> = timed(redis::cmd("SMEMBERS").arg(self.keys.registry()).query_async(&mut c)).await?;
        // Only ids this code wrote are in the registry; anything else is skipped, not trusted.
        let mut ids: Vec<ConcertId> = ids.into_iter().filter_map(|id| ConcertId::parse(id).ok()).collect();
        ids.sort();
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        drop(c);
        let cmds = ids.iter().map(|id| redis::cmd("HGETALL").arg(self.key(id, Part::Concert)).clone()).collect();
        let all: Vec<Vec<(String, String)>> = self.backend.each(cmds).await?;
        Ok(ids.iter().zip(all).filter(|(_, f)| !f.is_empty()).map(|(id, f)| Concert::from_fields(id, &f)).collect())
    }
}
