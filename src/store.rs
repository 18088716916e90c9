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

use std::time::Duration;

use deadpool_redis::{Config as PoolConfig, Pool, Runtime};
use redis::Script;

use crate::concerts::{Concert, ConcertSettings};

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
}

/// Outcome of applying one concert's batch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Applied {
    pub appended: u64,
    pub duplicates: u64,
}

/// Where a fan stands in a concert's queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Standing {
    /// Not in Redis (yet): the join is on its way through Kafka, or never happened.
    Unknown,
    /// Waiting at `position` (1-based) of `queue_length`.
    Waiting {
        position: u64,
        queue_length: u64,
        joined_at_ms: i64,
    },
    /// Was queued, is no longer waiting.
    Left {
        queue_length: u64,
        joined_at_ms: i64,
    },
}

/// One row of the admin listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueEntry {
    pub position: u64,
    pub user_id: String,
    pub joined_at_ms: i64,
}

/// The Lua scripts, hashed once.
struct Scripts {
    apply: Script,
    status: Script,
    page: Script,
}

/// Handle on the Redis queue store; cheap to clone.
#[derive(Clone)]
pub struct QueueStore {
    pool: Pool,
    prefix: std::sync::Arc<str>,
    scripts: std::sync::Arc<Scripts>,
    timeout: Duration,
}

/// Upper bound on any single Redis call, so a hung server turns into an error, not a hung request.
const CALL_TIMEOUT: Duration = Duration::from_secs(3);

impl QueueStore {
    /// Creates the pool (no connection is made until first use).
    pub fn new(url: &str, prefix: &str, pool_size: usize) -> anyhow::Result<Self> {
        let mut cfg = PoolConfig::from_url(url);
        let mut pc = deadpool_redis::PoolConfig::new(pool_size);
        pc.timeouts.wait = Some(Duration::from_secs(2));
        pc.timeouts.create = Some(Duration::from_secs(2));
        pc.timeouts.recycle = Some(Duration::from_secs(2));
        cfg.pool = Some(pc);
        let pool = cfg.create_pool(Some(Runtime::Tokio1))?;
        Ok(QueueStore {
            pool,
            prefix: prefix.into(),
            scripts: std::sync::Arc::new(Scripts {
                apply: Script::new(include_str!("store/apply.lua")),
                status: Script::new(include_str!("store/status.lua")),
                page: Script::new(include_str!("store/page.lua")),
            }),
            timeout: CALL_TIMEOUT,
        })
    }

    /// `{prefix}:{{concertId}}:{what}`
    pub fn key(&self, concert: &str, what: &str) -> String {
        format!("{}:{{{}}}:{}", self.prefix, concert, what)
    }

    /// The set of every concert id.
    fn concerts_key(&self) -> String {
        format!("{}:concerts", self.prefix)
    }

    async fn conn(&self) -> Result<deadpool_redis::Connection, StoreError> {
        Ok(self.pool.get().await?)
    }

    async fn timed<T>(
        &self,
        f: impl std::future::Future<Output = Result<T, redis::RedisError>>,
    ) -> Result<T, StoreError> {
        match tokio::time::timeout(self.timeout, f).await {
            Ok(r) => Ok(r?),
            Err(_) => Err(StoreError::Timeout),
        }
    }

    /// PING, for readiness.
    pub async fn ping(&self) -> Result<(), StoreError> {
        let mut c = self.conn().await?;
        let pong: String = self.timed(redis::cmd("PING").query_async(&mut c)).await?;
        if pong == "PONG" {
            Ok(())
        } else {
            Err(StoreError::Reply(pong))
        }
    }

    /// Appends the fans in `joins` (userId, joinedAt ms, in read order) who were never queued
    /// for `concert` to its queue, in one atomic script call.
    pub async fn apply(&self, concert: &str, joins: &[(&str, i64)]) -> Result<Applied, StoreError> {
        if joins.is_empty() {
            return Ok(Applied::default());
        }
        let mut inv = self.scripts.apply.prepare_invoke();
        inv.key(self.key(concert, "joined"))
            .key(self.key(concert, "waiting"))
            .key(self.key(concert, "rank"))
            .key(self.key(concert, "seq"));
        for (user, at) in joins {
            inv.arg(*user).arg(*at);
        }
        let mut c = self.conn().await?;
        let (appended, duplicates): (u64, u64) = self.timed(inv.invoke_async(&mut c)).await?;
        Ok(Applied {
            appended,
            duplicates,
        })
    }

    /// Where `user` stands in `concert`'s queue: O(log n).
    pub async fn standing(&self, concert: &str, user: &str) -> Result<Standing, StoreError> {
        let mut inv = self.scripts.status.prepare_invoke();
        inv.key(self.key(concert, "joined"))
            .key(self.key(concert, "rank"))
            .arg(user);
        let mut c = self.conn().await?;
        let reply: Vec<redis::Value> = self.timed(inv.invoke_async(&mut c)).await?;
        let int = |i: usize| -> Result<i64, StoreError> {
            match reply.get(i) {
                Some(v) => redis::from_redis_value_ref::<i64>(v)
                    .map_err(|e| StoreError::Reply(e.to_string())),
                None => Err(StoreError::Reply(format!(
                    "status reply too short: {reply:?}"
                ))),
            }
        };
        Ok(match int(0)? {
            0 => Standing::Unknown,
            1 => Standing::Waiting {
                position: int(1)? as u64,
                queue_length: int(2)? as u64,
                joined_at_ms: int(3)?,
            },
            _ => Standing::Left {
                queue_length: int(2)? as u64,
                joined_at_ms: int(3)?,
            },
        })
    }

    /// One page of the queue in order: (total waiting, entries). O(log n + limit).
    pub async fn page(
        &self,
        concert: &str,
        offset: u64,
        limit: u64,
    ) -> Result<(u64, Vec<QueueEntry>), StoreError> {
        let mut inv = self.scripts.page.prepare_invoke();
        inv.key(self.key(concert, "rank"))
            .key(self.key(concert, "joined"))
            .arg(offset)
            .arg(limit.max(1));
        let mut c = self.conn().await?;
        let reply: Vec<redis::Value> = self.timed(inv.invoke_async(&mut c)).await?;
        let mut it = reply.iter();
        let total: u64 = it
            .next()
            .map(redis::from_redis_value_ref::<u64>)
            .transpose()
            .map_err(|e| StoreError::Reply(e.to_string()))?
            .unwrap_or(0);
        let mut entries = Vec::new();
        while let (Some(u), Some(at)) = (it.next(), it.next()) {
            let user_id: String =
                redis::from_redis_value_ref(u).map_err(|e| StoreError::Reply(e.to_string()))?;
            let joined_at_ms: i64 =
                redis::from_redis_value_ref(at).map_err(|e| StoreError::Reply(e.to_string()))?;
            entries.push(QueueEntry {
                position: offset + entries.len() as u64 + 1,
                user_id,
                joined_at_ms,
            });
        }
        Ok((total, entries))
    }

    /// Fans waiting in `concert`'s queue: O(1).
    pub async fn waiting_count(&self, concert: &str) -> Result<u64, StoreError> {
        let mut c = self.conn().await?;
        self.timed(
            redis::cmd("ZCARD")
                .arg(self.key(concert, "rank"))
                .query_async(&mut c),
        )
        .await
    }

    /// The raw waiting LIST, head first (tests and tools; O(n)).
    pub async fn waiting_list(&self, concert: &str) -> Result<Vec<String>, StoreError> {
        let mut c = self.conn().await?;
        self.timed(
            redis::cmd("LRANGE")
                .arg(self.key(concert, "waiting"))
                .arg(0)
                .arg(-1)
                .query_async(&mut c),
        )
        .await
    }

    /// Creates or updates a concert's settings; returns what is stored.
    pub async fn put_concert(
        &self,
        id: &str,
        settings: &ConcertSettings,
    ) -> Result<Concert, StoreError> {
        let mut c = self.conn().await?;
        let now = crate::clock::now_ms();
        let fields = settings.to_fields();
        let mut pipe = redis::pipe();
        pipe.atomic()
            .hset_nx(self.key(id, "concert"), "createdAt", now)
            .ignore()
            .hset_multiple(self.key(id, "concert"), &fields)
            .ignore()
            .hset(self.key(id, "concert"), "updatedAt", now)
            .ignore();
        self.timed(pipe.query_async::<()>(&mut c)).await?;
        // The registry is a separate key (another slot in a cluster); written after the concert
        // itself so a listed concert always has settings.
        self.timed(
            redis::cmd("SADD")
                .arg(self.concerts_key())
                .arg(id)
                .query_async::<()>(&mut c),
        )
        .await?;
        drop(c);
        self.get_concert(id)
            .await?
            .ok_or_else(|| StoreError::Reply("concert vanished after write".into()))
    }

    /// One concert's settings, or None when it does not exist.
    pub async fn get_concert(&self, id: &str) -> Result<Option<Concert>, StoreError> {
        let mut c = self.conn().await?;
        let fields: Vec<(String, String)> = self
            .timed(
                redis::cmd("HGETALL")
                    .arg(self.key(id, "concert"))
                    .query_async(&mut c),
            )
            .await?;
        Ok(if fields.is_empty() {
            None
        } else {
            Some(Concert::from_fields(id, &fields))
        })
    }

    /// Every concert's settings, sorted by id; one pipelined round trip after SMEMBERS.
    pub async fn list_concerts(&self) -> Result<Vec<Concert>, StoreError> {
        let mut c = self.conn().await?;
        let mut ids: Vec<String> = self
            .timed(
                redis::cmd("SMEMBERS")
                    .arg(self.concerts_key())
                    .query_async(&mut c),
            )
            .await?;
        ids.sort();
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for id in &ids {
            pipe.cmd("HGETALL").arg(self.key(id, "concert"));
        }
        let all: Vec<Vec<(String, String)>> = self.timed(pipe.query_async(&mut c)).await?;
        Ok(ids
            .iter()
            .zip(all)
            .filter(|(_, f)| !f.is_empty())
            .map(|(id, f)| Concert::from_fields(id, &f))
            .collect())
    }
}
