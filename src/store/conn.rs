//! Connections to Redis: one server or a Redis Cluster, behind one interface.
//!
//! The store asks for two kinds of connection:
//! - [`Backend::pooled`]: a connection of its own for the length of one call (writes,
//!   admission, admin reads, the consumer's batch and its `WAIT`). Single node: a deadpool of
//!   multiplexed connections. Cluster: a deadpool of cluster connections (each one a connection
//!   per node, following `MOVED`/`ASK` and refreshing the slot map on topology changes).
//! - [`Backend::shared`]: the calling thread's multiplexed connection, for fans' status reads
//!   (see [`SharedConnections`]). On a cluster, the thread's cluster connection.
//!
//! Every command of the store names keys of one concert (one hash tag, one slot), or the
//! registry alone, so every call routes to one node. The one multi-concert read
//! ([`Backend::each`]) is a pipeline on one server and concurrent single calls on a cluster.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use deadpool::managed;
use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::cluster::{ClusterClient, ClusterClientBuilder};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
use redis::{Cmd, FromRedisValue, Pipeline, RedisError, RedisFuture, Value};

use super::StoreError;
use crate::config::RedisSettings;

/// Upper bound on any single Redis call, so a hung server turns into an error, not a hung request.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(3);
/// Upper bound on opening a connection (on a cluster: to the seed nodes).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Runs one Redis call (or connection set-up) within [`CALL_TIMEOUT`].
pub async fn timed<T>(f: impl std::future::Future<Output = Result<T, RedisError>>) -> Result<T, StoreError> {
    match tokio::time::timeout(CALL_TIMEOUT, f).await {
        Ok(r) => Ok(r?),
        Err(_) => Err(StoreError::Timeout),
    }
}

/// Every single-node connection's settings: [`CONNECT_TIMEOUT`] to connect, [`CALL_TIMEOUT`]
/// for any reply (the client's own default, 500 ms, failed admissions that Redis then carried
/// out during a pause of an AOF-always server).
fn connection_config() -> redis::AsyncConnectionConfig {
    redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(CONNECT_TIMEOUT))
        .set_response_timeout(Some(CALL_TIMEOUT))
}

/// deadpool manager of cluster connections built with our timeouts (deadpool-redis's own
/// cluster manager takes the client's defaults).
pub struct ClusterManager {
    client: ClusterClient,
}

impl managed::Manager for ClusterManager {
    type Type = ClusterConnection;
    type Error = RedisError;

    async fn create(&self) -> Result<ClusterConnection, RedisError> {
        self.client.get_async_connection().await
    }

    async fn recycle(&self, _: &mut ClusterConnection, _: &managed::Metrics) -> managed::RecycleResult<RedisError> {
        // Nothing to check: a cluster connection reconnects to each node by itself. (A PING
        // here would go to every primary, so one shard down would fail every call, also
        // those of concerts on the shards that are up.)
        Ok(())
    }
}

/// A pool of at most `QUEUEGATE_REDIS_POOL` connections, each wait bounded.
fn bounded<M: managed::Manager, W: From<managed::Object<M>>>(
    b: managed::PoolBuilder<M, W>,
    settings: &RedisSettings,
) -> managed::PoolBuilder<M, W> {
    b.runtime(deadpool::Runtime::Tokio1)
        .max_size(settings.redis_pool)
        .wait_timeout(Some(CONNECT_TIMEOUT))
        .create_timeout(Some(CONNECT_TIMEOUT))
        .recycle_timeout(Some(CONNECT_TIMEOUT))
}

/// Where the store's connections come from.
#[derive(Clone)]
pub enum Backend {
    Single { pool: deadpool_redis::Pool, shared: Box<SharedConnections<redis::Client>> },
    Cluster { pool: managed::Pool<ClusterManager>, shared: Box<SharedConnections<ClusterClient>> },
}

impl Backend {
    /// Builds the pools from the Redis section; no connection is made until first use.
    pub fn new(settings: &RedisSettings) -> anyhow::Result<Self> {
        let bad = |e: &dyn std::fmt::Display| anyhow::anyhow!("QUEUEGATE_REDIS_URL ({}): {e}", settings.redacted_url());
        Ok(match settings.cluster_nodes() {
            None => {
                let url = settings.redis_url.as_str();
                let manager =
                    deadpool_redis::Manager::new_with_config(url, connection_config()).map_err(|e| bad(&e))?;
                let pool = bounded(deadpool_redis::Pool::builder(manager), settings).build().map_err(|e| bad(&e))?;
                let client = redis::Client::open(url).map_err(|e| bad(&e))?;
                Backend::Single { pool, shared: Box::new(SharedConnections::new(client)) }
            }
            Some(nodes) => {
                // A node that is down fails a call after a few quick retries (the client's default
                // is 16, with waits growing to seconds), well inside CALL_TIMEOUT.
                let client = ClusterClientBuilder::new(nodes)
                    .connection_timeout(Duration::from_millis(500))
                    .response_timeout(CALL_TIMEOUT)
                    .retries(3)
                    .min_retry_wait(20)
                    .max_retry_wait(500)
                    .build()
                    .map_err(|e| bad(&e))?;
                let manager = ClusterManager { client: client.clone() };
                let pool = bounded(managed::Pool::builder(manager), settings).build().map_err(|e| bad(&e))?;
                Backend::Cluster { pool, shared: Box::new(SharedConnections::new(client)) }
            }
        })
    }

    /// A connection of the caller's own until dropped.
    pub async fn pooled(&self) -> Result<Conn, StoreError> {
        Ok(match self {
            Backend::Single { pool, .. } => Conn::Single(pool.get().await?),
            Backend::Cluster { pool, .. } => Conn::Cluster(pool.get().await.map_err(|e| match e {
                managed::PoolError::Backend(e) => StoreError::Redis(e),
                managed::PoolError::Timeout(_) => StoreError::Timeout,
                other => StoreError::Reply(format!("cluster connection pool: {other}")),
            })?),
        })
    }

    /// Runs `f` on this thread's shared connection; a connection that broke or hung is
    /// forgotten, and this thread's next call connects again.
    pub async fn shared<T>(
        &self,
        f: impl AsyncFnOnce(&mut Multiplexed) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        match self {
            Backend::Single { shared, .. } => shared.with(f).await,
            Backend::Cluster { shared, .. } => shared.with(f).await,
        }
    }

    /// Runs one command per item, each naming keys of one slot, and returns the replies in
    /// order: one pipelined round trip on a single server, concurrent calls on a cluster (a
    /// pipeline there must stay within one slot).
    pub async fn each<T: FromRedisValue>(&self, cmds: Vec<Cmd>) -> Result<Vec<T>, StoreError> {
        if cmds.is_empty() {
            return Ok(Vec::new());
        }
        match self.pooled().await? {
            Conn::Single(mut c) => {
                let mut pipe = Pipeline::new();
                for cmd in cmds {
                    pipe.add_command(cmd);
                }
                timed(pipe.query_async(&mut c)).await
            }
            Conn::Cluster(c) => {
                let calls = cmds.into_iter().map(|cmd| {
                    let mut c: ClusterConnection = (*c).clone();
                    async move { timed(cmd.query_async::<T>(&mut c)).await }
                });
                futures_util::future::try_join_all(calls).await
            }
        }
    }
}

/// A pooled connection to one server or to the cluster.
pub enum Conn {
    Single(deadpool_redis::Connection),
    Cluster(managed::Object<ClusterManager>),
}

impl Conn {
    /// `cmd` on one primary chosen at random (a cluster), or the server: for questions any
    /// primary can answer about the whole cluster.
    pub async fn on_any_primary<T: FromRedisValue>(&mut self, cmd: Cmd) -> Result<T, StoreError> {
        match self {
            Conn::Single(c) => timed(cmd.query_async(c)).await,
            Conn::Cluster(c) => {
                let v =
                    timed(c.route_command(cmd, RoutingInfo::SingleNode(SingleNodeRoutingInfo::RandomPrimary))).await?;
                redis::from_redis_value(v).map_err(|e| StoreError::Reply(e.to_string()))
            }
        }
    }
}

macro_rules! delegate_connection_like {
    ($ty:ident { $($variant:ident),* }) => {
        impl ConnectionLike for $ty {
            fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
                match self { $($ty::$variant(c) => c.req_packed_command(cmd),)* }
            }
            fn req_packed_commands<'a>(
                &'a mut self,
                cmd: &'a Pipeline,
                offset: usize,
                count: usize,
            ) -> RedisFuture<'a, Vec<Value>> {
                match self { $($ty::$variant(c) => c.req_packed_commands(cmd, offset, count),)* }
            }
            fn get_db(&self) -> i64 {
                match self { $($ty::$variant(c) => c.get_db(),)* }
            }
        }
    };
}
delegate_connection_like!(Conn { Single, Cluster });
delegate_connection_like!(Multiplexed { Single, Cluster });

/// A multiplexed connection to one server or to the cluster; clones share it.
#[derive(Clone)]
pub enum Multiplexed {
    Single(MultiplexedConnection),
    Cluster(ClusterConnection),
}

/// Opens the multiplexed connection a [`SharedConnections`] hands out.
pub trait Connect: Clone + Send + Sync + 'static {
    fn connect(&self) -> impl std::future::Future<Output = Result<Multiplexed, RedisError>> + Send;
}

impl Connect for redis::Client {
    async fn connect(&self) -> Result<Multiplexed, RedisError> {
        Ok(Multiplexed::Single(self.get_multiplexed_async_connection_with_config(&connection_config()).await?))
    }
}

impl Connect for ClusterClient {
    async fn connect(&self) -> Result<Multiplexed, RedisError> {
        Ok(Multiplexed::Cluster(self.get_async_connection().await?))
    }
}

/// Multiplexed Redis connections for fans' status reads: one per thread that reads.
///
/// Fans poll: tens of thousands of small reads a second, each one EVALSHA. Through the pool each
/// read is its own write and read syscall on both ends; through a multiplexed connection the
/// reads that arrive together go out in one write and Redis answers them from one read (redis-rs
/// pipelines whatever is queued). Writes and admin calls keep using the pool, so a large
/// consumer batch never queues fans' reads behind it.
///
/// Each HTTP worker thread runs its own single-threaded runtime, so each gets its own connection,
/// whose driver task runs on that same runtime: no cross-thread wake-up per read. Measured with
/// wrk on the benchmark machine (docs/benchmarks.md): pool 15,900 reads/s; one connection driven
/// from the main runtime 21,700/s; one per worker 44,000/s. A connection that failed is dropped
/// and that thread's next read connects again.
#[derive(Clone)]
pub struct SharedConnections<C> {
    client: C,
    by_thread: Arc<Mutex<HashMap<std::thread::ThreadId, Multiplexed>>>,
}

impl<C: Connect> SharedConnections<C> {
    fn new(client: C) -> Self {
        SharedConnections { client, by_thread: Default::default() }
    }

    async fn with<T>(&self, f: impl AsyncFnOnce(&mut Multiplexed) -> Result<T, StoreError>) -> Result<T, StoreError> {
        let me = std::thread::current().id();
        let existing = self.by_thread.lock().expect("never poisoned").get(&me).cloned();
        let mut c = match existing {
            Some(c) => c,
            None => {
                let c = timed(self.client.connect()).await?;
                self.by_thread.lock().expect("never poisoned").insert(me, c.clone());
                c
            }
        };
        let r = f(&mut c).await;
        let broken = match &r {
            Err(StoreError::Redis(e)) => e.is_io_error() || e.is_connection_dropped() || e.is_unrecoverable_error(),
            Err(StoreError::Timeout) => true,
            _ => false,
        };
        if broken {
            self.by_thread.lock().expect("never poisoned").remove(&me);
        }
        r
    }
}
