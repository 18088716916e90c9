//! Building and running a queuegate process: listeners, roles, and graceful shutdown.
//!
//! [`Application::build`] binds its listeners first (so a test can ask for port 0 and learn the
//! real port) and creates the Kafka and Redis clients without connecting; [`Application::run`]
//! serves until its stop token is cancelled and then shuts down in order:
//!
//! 1. `/readyz` turns 503 (load balancers stop sending),
//! 2. the public listener stops accepting and finishes in-flight joins,
//! 3. the producer is flushed (dropping it would purge queued records),
//! 4. the consumer finishes and commits its batch, and the other background tasks end,
//! 5. the admin listener stops.
//!
//! Each step is bounded by the grace period (`QUEUEGATE_SHUTDOWN_GRACE_SECONDS`).
//!
//! Every long-running task — both listeners, the consumer, the admitter, the concert cache
//! refresh, the concert gauges and the demo set-up — runs under the [`Supervisor`]: when one
//! fails, `/readyz` names it and the process shuts down the same way and exits non-zero.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::body::MessageBody;
use actix_web::dev::{Server, ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{web, App, HttpServer};
use anyhow::Context;
use tokio_util::sync::CancellationToken;

use crate::admin::{self, Admin};
use crate::admitter::Admitter;
use crate::concerts::{ConcertCache, ConcertSettings};
use crate::config::{Role, Settings};
use crate::consumer::EntryConsumer;
use crate::gateway::{self, Gateway};
use crate::identity::FanIdentity;
use crate::ids::ConcertId;
use crate::kafka::CutProbe;
use crate::kafka::{KafkaClients, KafkaProbe};
use crate::metrics::Metrics;
use crate::producer::EntryProducer;
use crate::routes::Endpoint;
use crate::store::QueueStore;
use crate::supervisor::{Health, Supervisor, TaskFailure};
use crate::token::EntryTokens;

/// A built, not yet running, queuegate process.
pub struct Application {
    role: Role,
    settings: Settings,
    http_port: Option<u16>,
    admin_port: u16,
    stop: CancellationToken,
    health: Arc<Health>,
    tasks: Supervisor,
    public: Option<Server>,
    admin: Server,
    producer: Option<EntryProducer>,
    consumer: Option<EntryConsumer>,
    /// Applies the joins the consumer parked (consumer roles on a Redis Cluster).
    parked: Option<crate::consumer::parked::ParkedReplayer>,
    /// The fair start's offset probe, for the admitter (consumer roles).
    cut_probe: Option<CutProbe>,
    cache: ConcertCache,
    admin_store: QueueStore,
    metrics: Metrics,
}

/// The listener a request came in on: its metric label and its route table.
#[derive(Clone, Copy)]
struct Listener {
    name: &'static str,
    routes: &'static [Endpoint],
}

impl Application {
    /// Validates `settings`, binds the listeners the `role` needs and creates its clients.
    pub async fn build(settings: Settings, role: Role) -> anyhow::Result<Self> {
        settings.validate_for(role)?;
        let keys = settings.admission.keys()?;
        let admin_tokens = settings.security.admin_tokens()?;
        let metrics = Metrics::new();
        let kafka = KafkaClients::new(&settings.kafka, metrics.clone());
        let cache = ConcertCache::default();
        let health = Arc::new(Health::default());
        let mut tasks = Supervisor::new(health.clone());
        let stop = CancellationToken::new();
        let http = &settings.http;
        let grace = http.shutdown_grace_seconds;
        let workers = if http.http_workers == 0 { num_cpus() } else { http.http_workers };

        // Separate pools per part: actix workers run their own runtimes, and a Redis connection
        // lives on the runtime that opened it, so the consumer never shares one with a listener.
        // Every store caps the outboxes its scripts write at QUEUEGATE_EVENTS_OUTBOX_MAX.
        let new_store =
            || QueueStore::new(&settings.redis).map(|s| s.with_outbox_max(settings.events.events_outbox_max));
        let admin_store = new_store()?;

        let budget = ConnectionBudget::of_this_process(http.max_stream_memory_mb);
        let mut http = http.clone();
        // A configured bound may use every connection, but never more memory than streams have.
        let ceiling = budget.connections.min(budget.streams_by_memory().unwrap_or(usize::MAX));
        if http.max_event_streams == 0 {
            http.max_event_streams = budget.streams();
        } else if http.max_event_streams > ceiling {
            tracing::warn!(
                configured = http.max_event_streams,
                allowed = ceiling,
                "QUEUEGATE_MAX_EVENT_STREAMS is more than the open-file limit or the stream memory allows; using that"
            );
            http.max_event_streams = ceiling;
        }
        tracing::info!(
            open_file_limit = budget.open_file_limit,
            client_connections = budget.connections,
            cgroup_memory_limit_mb = budget.cgroup_limit.map(|b| b / MIB),
            stream_memory_mb = budget.stream_memory.map(|b| b / MIB),
            stream_bytes = STREAM_BYTES,
            streams_by_files = budget.streams_by_files(),
            streams_by_memory = budget.streams_by_memory(),
            max_event_streams = http.max_event_streams,
            "connection budget"
        );
        let http = &http;
        // Gateways judge joins by the cache; admitters find the concerts to admit in it. Loaded
        // before any listener is bound: a gateway started mid-sale takes connections as soon as
        // its port listens, and every join it took before the first load was answered 503
        // ("concerts are still loading") — a whole burst of them in the chaos events scenario.
        if let Err(e) = cache.refresh(admin_store.list_concerts()).await {
            tracing::warn!(error = %e, "could not load concerts at start-up; joins answer 503 until Redis answers");
        }
        let admin_listener = TcpListener::bind(http.admin_addr)
            .with_context(|| format!("binding the admin listener (QUEUEGATE_ADMIN_ADDR={})", http.admin_addr))?;
        let admin_port = admin_listener.local_addr()?.port();

        let (public, http_port, producer) = if role.serves_public() {
            let listener = TcpListener::bind(http.http_addr)
                .with_context(|| format!("binding the public listener (QUEUEGATE_HTTP_ADDR={})", http.http_addr))?;
            let port = listener.local_addr()?.port();
            let producer = EntryProducer::new(&kafka)?;
            let mode = settings.fan_identity().context("QUEUEGATE_FAN_IDENTITY is required")?;
            let identity = FanIdentity::new(mode, &settings.identity).await?;
            if let Some(verifier) = identity.jwt() {
                let stop = stop.clone();
                tasks.spawn("fan JWKS refresh", async move { verifier.run_refresh(stop).await });
            }
            let tokens = EntryTokens::new(
                settings.security.token_secret_bytes(),
                mode,
                settings.identity.entry_token_ttl_seconds,
            );
            let gw = web::Data::new(Gateway::new(
                producer.clone(),
                new_store()?,
                cache.clone(),
                tokens,
                keys.clone(),
                metrics.clone(),
                identity,
                crate::identity::Credentials::new(
                    settings.security.site_token.iter().chain(settings.security.admin_token.iter()),
                ),
                gateway::challenge::Challenges::new(settings.security.token_secret_bytes()),
                settings.security.token_secret_bytes(),
                http,
                stop.clone(),
            ));
            let pruned = gw.clone();
            let prune = periodic_task(Duration::from_secs(10), stop.clone(), "rate limiter pruning", move || {
                pruned.limits.prune();
                std::future::ready(Ok::<(), std::convert::Infallible>(()))
            });
            tasks.spawn("rate limiter pruning", prune);
            // The per-concert views every stream and poll of this gateway is answered from.
            let (views, view_store, view_cache, view_metrics) =
                (gw.views.clone(), new_store()?, cache.clone(), metrics.clone());
            let refresh = periodic_task(views.refresh_every(), stop.clone(), "status view refresh", move || {
                let (views, store, cache, metrics) =
                    (views.clone(), view_store.clone(), view_cache.clone(), view_metrics.clone());
                async move {
                    let result = views.refresh_all(&store, &cache, &metrics).await;
                    metrics.view_fans.set(views.sizes().0 as i64);
                    result
                }
            });
            tasks.spawn("status view refresh", refresh);
            // What the gate knows of sessions: revocations and ended sessions, every second.
            let (learner, gate_store, gate_cache) = (gw.clone(), new_store()?, cache.clone());
            let learn = periodic_task(Duration::from_secs(1), stop.clone(), "gate session news", move || {
                let (gw, store, cache) = (learner.clone(), gate_store.clone(), gate_cache.clone());
                async move {
                    let concerts: Vec<ConcertId> = cache.snapshot().into_iter().map(|(id, _)| id).collect();
                    gw.gate.learn(&store, &concerts).await
                }
            });
            tasks.spawn("gate session news", learn);
            let m = web::Data::new(metrics.clone());
            let listener_info = Listener { name: "public", routes: gateway::ROUTES };
            let server = HttpServer::new(move || {
                App::new()
                    .app_data(gw.clone())
                    .app_data(m.clone())
                    .app_data(listener_info)
                    .wrap(actix_web::middleware::from_fn(gateway::writes_guard))
                    .wrap(actix_web::middleware::from_fn(observe))
                    .wrap(nosniff())
                    .configure(gateway::routes)
            })
            .listen(listener)?
            .workers(workers)
            .backlog(4096)
            // actix's 5 s default for reading a request head answers 408 to fans whose
            // connection waited in the accept queue during a burst; 15 s still bounds slow clients.
            .client_request_timeout(Duration::from_secs(15))
            .max_connections(budget.per_worker(workers))
            // A fan whose read side closed has gone (browsers do not half-close): end its status
            // stream at once instead of when the next write fails.
            .h1_allow_half_closed(false)
            .disable_signals()
            .shutdown_timeout(grace)
            .run();
            (Some(server), Some(port), Some(producer))
        } else {
            (None, None, None)
        };

        let consumer = if role.consumes() {
            Some(EntryConsumer::new(&kafka, &settings.consumer, new_store()?, metrics.clone())?)
        } else {
            None
        };
        let cut_probe = if role.consumes() { Some(CutProbe::new(&kafka, &settings.consumer)?) } else { None };
        let parked = if role.consumes() && admin_store.is_cluster() && settings.consumer.consumer_park_after_ms > 0 {
            let store = new_store()?;
            Some(crate::consumer::parked::ParkedReplayer::new(&kafka, &settings.consumer, store, metrics.clone())?)
        } else {
            None
        };

        // Readiness asks Kafka through the producer where there is one, else through a probe.
        let kafka_probe = match &producer {
            Some(p) => {
                let p = p.clone();
                KafkaProbe::new(move |timeout| p.kafka_reachable(timeout))
            }
            None => kafka.readiness_probe()?,
        };
        let admin_state = web::Data::new(
            Admin::new(
                admin_store.clone(),
                cache.clone(),
                metrics.clone(),
                keys,
                crate::admin::access::AdminTokens::new(settings.security.admin_token.as_ref(), &admin_tokens),
                kafka_probe,
                health.clone(),
                crate::events::at_rest::SecretBox::new(settings.security.token_secret_bytes()),
                crate::store::CodeKey::new(settings.security.token_secret_bytes()),
            )
            .with_webhook_egress(crate::events::egress::EgressPolicy::new(&settings.events.webhook_allow_networks.0))
            .with_audit_kept(settings.security.admin_audit_kept),
        );
        let m = web::Data::new(metrics.clone());
        let listener_info = Listener { name: "admin", routes: admin::ROUTES };
        let admin = HttpServer::new(move || {
            App::new()
                .app_data(admin_state.clone())
                .app_data(m.clone())
                .app_data(listener_info)
                .wrap(actix_web::middleware::from_fn(observe))
                .wrap(nosniff())
                .configure(admin::routes)
        })
        .listen(admin_listener)?
        .workers(1)
        .disable_signals()
        .shutdown_timeout(grace)
        .run();

        Ok(Application {
            role,
            settings,
            http_port,
            admin_port,
            stop,
            tasks,
            health,
            public,
            admin,
            producer,
            consumer,
            parked,
            cut_probe,
            cache,
            admin_store,
            metrics,
        })
    }

    /// The bound public port (None for the consumer role).
    pub fn http_port(&self) -> Option<u16> {
        self.http_port
    }

    /// The bound admin port.
    pub fn admin_port(&self) -> u16 {
        self.admin_port
    }

    /// Cancelling this token starts a graceful shutdown.
    pub fn stop_token(&self) -> CancellationToken {
        self.stop.clone()
    }

    /// Runs `work` as a supervised task of this process, like its own background tasks: if it
    /// fails, panics or ends before shutdown, `/readyz` names it and the process shuts down
    /// with an error. For embedding queuegate with work of one's own.
    pub fn spawn_supervised<F>(&mut self, name: &'static str, work: F)
    where
        F: std::future::Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        self.tasks.spawn(name, work);
    }

    /// Serves until the stop token is cancelled or a supervised task fails, then shuts down in
    /// order. Returns the failure, if there was one.
    pub async fn run(self) -> anyhow::Result<()> {
        let Application {
            role,
            settings,
            stop,
            health,
            mut tasks,
            public,
            admin,
            producer,
            consumer,
            parked,
            cut_probe,
            cache,
            admin_store,
            metrics,
            ..
        } = self;
        let grace = settings.http.shutdown_grace();
        let public_handle = public.map(|server| {
            let handle = server.handle();
            tasks.spawn("public listener", async move { Ok(server.await?) });
            handle
        });
        let admin_handle = admin.handle();
        tasks.spawn("admin listener", async move { Ok(admin.await?) });

        let every = Duration::from_millis(settings.http.concert_refresh_ms);
        let (c, st) = (cache.clone(), admin_store.clone());
        tasks.spawn(
            "concert cache refresh",
            periodic_task(every, stop.clone(), "concert cache refresh", move || {
                let (cache, store) = (c.clone(), st.clone());
                async move {
                    cache.refresh(store.list_concerts()).await?;
                    // Waiting counts only where a concert caps them (maxWaiting).
                    let capped = cache.capped();
                    let counts = store.waiting_counts(&capped).await?;
                    cache.set_waiting(capped.into_iter().map(|(id, _)| id).zip(counts).collect());
                    Ok::<(), crate::store::StoreError>(())
                }
            }),
        );
        let (c, st, m) = (cache.clone(), admin_store.clone(), metrics.clone());
        tasks.spawn(
            "concert gauges",
            periodic_task(Duration::from_secs(5), stop.clone(), "concert gauges", move || {
                publish_concert_gauges(st.clone(), c.clone(), m.clone())
            }),
        );
        let (st, m) = (admin_store.clone(), metrics.clone());
        tasks.spawn(
            "redis shard gauges",
            periodic_task(Duration::from_secs(5), stop.clone(), "redis shard gauges", move || {
                let (store, metrics) = (st.clone(), m.clone());
                async move { store.health().await.map(|h| metrics.observe_redis_health(&h)) }
            }),
        );
        if let Some(probe) = cut_probe {
            let kafka = KafkaClients::new(&settings.kafka, metrics.clone());
            let admitter = Admitter::new(
                admin_store.clone(),
                cache.clone(),
                metrics.clone(),
                Duration::from_millis(settings.admission.admission_tick_ms),
                settings.admission.admission_lease_ms,
            )
            .with_order(probe, settings.admission.clock_skew_ms as i64);
            let seal = crate::events::EventSeal::new(settings.security.token_secret_bytes());
            let relay = crate::events::relay::Relay::new(
                &kafka,
                &settings.events,
                admin_store.clone(),
                metrics.clone(),
                seal.clone(),
            )?;
            // Whether the events topic can be written: at start and every 10 s (`degraded: events`).
            tasks.spawn("events topic check", relay.clone().watch_topic(health.clone(), stop.clone()));
            let admitter = admitter.with_relay(relay);
            let worker = crate::events::hooks::EventsWorker::new(
                &kafka,
                &settings.consumer,
                &settings.events,
                admin_store.clone(),
                cache.clone(),
                seal,
            )?;
            tasks.spawn("events worker", worker.run(stop.clone()));
            let deliveries = crate::events::hooks::Deliveries::new(
                admin_store.clone(),
                cache.clone(),
                metrics.clone(),
                &settings.events,
                crate::events::at_rest::SecretBox::new(settings.security.token_secret_bytes()),
            )?;
            tasks.spawn("webhook delivery", deliveries.run(stop.clone()));
            let stop = stop.clone();
            tasks.spawn("admitter", async move {
                admitter.run(stop).await;
                Ok(())
            });
        }
        if let Some(id) = &settings.admission.demo_concert {
            let id = ConcertId::parse(id.as_str()).context("QUEUEGATE_DEMO_CONCERT")?;
            tasks.spawn_once("demo concert", ensure_demo_concert(admin_store.clone(), cache.clone(), id, stop.clone()));
        }
        let consumer_stop = CancellationToken::new();
        if let Some(c) = consumer {
            tasks.spawn("consumer", c.run(consumer_stop.clone()));
        }
        if let Some(r) = parked {
            tasks.spawn("parked joins replay", r.run(stop.clone()));
        }
        tracing::info!(role = ?role, http = ?settings.http.http_addr, admin = %settings.http.admin_addr,
            fan_identity = settings.fan_identity().map(|m| m.as_str()), "queuegate started");
        if settings.security.insecure_dev {
            tracing::warn!("--insecure-dev: development settings, loopback only; never run an on-sale like this");
        }
        if role.serves_public() && settings.fan_identity() == Some(crate::config::FanIdentityMode::Body) {
            tracing::warn!("fan identity is body mode: anyone can join as anyone; for demos and load tests only");
        }

        // Biased: once stop is cancelled the periodic tasks end on their own, which is not a failure.
        let failure: Option<TaskFailure> = tokio::select! {
            biased;
            _ = stop.cancelled() => None,
            f = tasks.failure() => Some(f),
        };

        tracing::info!("shutting down");
        let started = Instant::now();
        health.start_draining();
        stop.cancel();
        if let Some(h) = public_handle {
            h.stop(true).await;
            tracing::info!(elapsed_ms = started.elapsed().as_millis() as u64, "public listener stopped");
        }
        if let Some(p) = producer {
            let flushed = tokio::task::spawn_blocking(move || p.flush(grace)).await;
            match flushed {
                Ok(Ok(())) => tracing::info!("producer flushed"),
                Ok(Err(e)) => tracing::warn!(error = %e, "producer flush incomplete"),
                Err(e) => tracing::warn!(error = %e, "producer flush task failed"),
            }
        }
        // The consumer finishes and commits its batch; every other task ends on the stop token.
        // The admin listener stays up until they are done, so probes and scrapes see the whole
        // shutdown (and `/readyz` names a failed task meanwhile).
        consumer_stop.cancel();
        if !tasks.drain_to(1, grace).await {
            tracing::warn!("background tasks did not stop within the grace period");
        }
        admin_handle.stop(true).await;
        tasks.drain(grace).await;
        tracing::info!(elapsed_ms = started.elapsed().as_millis() as u64, "queuegate stopped");
        match failure {
            Some(f) => Err(anyhow::anyhow!("the {} task failed: {}", f.task, f.cause)),
            None => Ok(()),
        }
    }
}

/// What one open status stream costs a gateway (bytes), with margin: its TCP connection's actix
/// buffers (8 KiB to read and 8 KiB to write, fixed in actix-http), the stream's state and
/// future, its place in the concert's view and the response's body. Measured as the growth of
/// a gateway's RSS from 5,000 to 8,000 open streams, ~20.6 KB (docs/explain-costs.md, "Status
/// streams"), plus margin.
pub const STREAM_BYTES: u64 = 24 * 1024;

/// What a gateway holds before any stream (MiB): runtimes, pools, Kafka's producer, the
/// concert cache and views, the allocator's slack. The memory-derived stream budget is half of
/// what a cgroup limit leaves after it; the other half is headroom for joins, polls and bursts.
pub const PROCESS_BASE_MB: u64 = 128;

const MIB: u64 = 1024 * 1024;

/// A cgroup memory limit this large is no limit (cgroup v1 says "none" with 2^63 rounded down
/// to a page; anything past a pebibyte is no pod's limit either).
const NO_LIMIT_FROM: u64 = 1 << 50;

/// What the process's open-file limit and memory leave for client connections and status streams.
///
/// Every connection is a file descriptor, and accept() failing with EMFILE stalls a listener,
/// so the public listener's connection limit and the status-stream bound are derived from the
/// soft `RLIMIT_NOFILE` (20,000 per process on the benchmark machines): a tenth of it, at least
/// 256, stays for Kafka and Redis connections, the admin listener and files. Every open stream
/// also costs memory ([`STREAM_BYTES`]); the streams' memory
/// (`QUEUEGATE_MAX_STREAM_MEMORY_MB`, by default half of what the cgroup's memory limit leaves
/// after [`PROCESS_BASE_MB`]) bounds them too, so a pod is never OOM-killed by its own streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionBudget {
    /// The soft open-file limit it was derived from.
    pub open_file_limit: u64,
    /// Client connections the public listener may hold in all.
    pub connections: usize,
    /// The cgroup's memory limit (bytes), if there is one.
    pub cgroup_limit: Option<u64>,
    /// What status streams may take in all (bytes); None: no memory bound.
    pub stream_memory: Option<u64>,
}

impl ConnectionBudget {
    fn of_this_process(max_stream_memory_mb: u64) -> Self {
        let limit = open_file_limit().unwrap_or(20_000);
        Self::new(limit, max_stream_memory_mb, cgroup_memory_limit())
    }

    /// The budget of a process with this open-file limit, `QUEUEGATE_MAX_STREAM_MEMORY_MB`
    /// (0: derived) and cgroup memory limit (bytes).
    pub fn new(open_file_limit: u64, max_stream_memory_mb: u64, cgroup_limit: Option<u64>) -> Self {
        let reserved = (open_file_limit / 10).max(256).min(open_file_limit / 2);
        ConnectionBudget {
            open_file_limit,
            connections: (open_file_limit - reserved) as usize,
            cgroup_limit,
            stream_memory: stream_memory(max_stream_memory_mb, cgroup_limit),
        }
    }

    /// Status streams: the fewer of what the open files and the memory allow.
    pub fn streams(&self) -> usize {
        self.streams_by_files().min(self.streams_by_memory().unwrap_or(usize::MAX))
    }

    /// Every connection but a tenth (at most 1,000) kept for joins and polls.
    pub fn streams_by_files(&self) -> usize {
        self.connections - (self.connections / 10).min(1_000)
    }

    /// The streams' memory over what one costs; None without a memory bound.
    pub fn streams_by_memory(&self) -> Option<usize> {
        self.stream_memory.map(|bytes| usize::try_from(bytes / STREAM_BYTES).unwrap_or(usize::MAX))
    }

    /// actix's `max_connections` is per worker.
    fn per_worker(self, workers: usize) -> usize {
        (self.connections / workers.max(1)).max(1)
    }
}

/// The bytes status streams may take: the setting when set, else half of what the cgroup limit
/// leaves after the process's base; None when neither bounds them.
fn stream_memory(setting_mb: u64, cgroup_limit: Option<u64>) -> Option<u64> {
    if setting_mb > 0 {
        return Some(setting_mb * MIB);
    }
    cgroup_limit.map(|limit| limit.saturating_sub(PROCESS_BASE_MB * MIB) / 2)
}

/// The memory limit of this process's cgroup (bytes), if it has one: cgroup v2's `memory.max`
/// of its own cgroup and every parent (the smallest), else v1's `memory.limit_in_bytes`.
fn cgroup_memory_limit() -> Option<u64> {
    let own = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    let read = |path: String| std::fs::read_to_string(path).ok().and_then(|t| parse_cgroup_limit(&t));
    let v2 =
        cgroup_dirs(&own, "0::").into_iter().filter_map(|dir| read(format!("/sys/fs/cgroup{dir}/memory.max"))).min();
    v2.or_else(|| {
        let v1 = own.lines().find_map(|l| l.split_once(":memory:").map(|(_, p)| p.to_owned()));
        v1.iter()
            .flat_map(|p| cgroup_dirs(&format!("x:{p}"), "x:"))
            .filter_map(|dir| read(format!("/sys/fs/cgroup/memory{dir}/memory.limit_in_bytes")))
            .min()
    })
}

/// The directories (relative to the hierarchy's root) from a process's cgroup up to the root,
/// for the `/proc/self/cgroup` line that starts with `prefix`; just the root when there is none
/// (inside a cgroup namespace the path is `/` anyway).
fn cgroup_dirs(proc_self_cgroup: &str, prefix: &str) -> Vec<String> {
    let path = proc_self_cgroup.lines().find_map(|l| l.strip_prefix(prefix)).unwrap_or("/").trim();
    let mut dirs = Vec::new();
    let mut dir = path.trim_end_matches('/').to_owned();
    while !dir.is_empty() {
        dirs.push(dir.clone());
        dir.truncate(dir.rfind('/').unwrap_or(0));
    }
    dirs.push(String::new());
    dirs
}

/// A cgroup memory limit file's content: bytes, or None for `max` (v2) and the huge "no
/// limit" value (v1: 9223372036854771712).
fn parse_cgroup_limit(text: &str) -> Option<u64> {
    let n: u64 = text.trim().parse().ok()?;
    (n < NO_LIMIT_FROM).then_some(n)
}

/// The soft limit on open files (Linux: "Max open files" in /proc/self/limits).
fn open_file_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// A periodic round as a supervised task: runs `round` every `every` until `stop`.
async fn periodic_task<E, F, Fut>(
    every: Duration,
    stop: CancellationToken,
    what: &'static str,
    round: F,
) -> anyhow::Result<()>
where
    E: std::fmt::Display,
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), E>>,
{
    crate::periodic::every(every, stop, what, round).await;
    Ok(())
}

/// Creates the demo concert, open, if it does not exist; retries while Redis is unreachable.
async fn ensure_demo_concert(
    store: QueueStore,
    cache: ConcertCache,
    id: ConcertId,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    loop {
        let result = match store.get_concert(&id).await {
            Ok(Some(c)) => Ok(c),
            Ok(None) => {
                let demo = ConcertSettings { name: Some(format!("Demo concert ({id})")), ..ConcertSettings::open() };
                store.put_concert(&id, &demo).await
            }
            Err(e) => Err(e),
        };
        match result {
            Ok(c) => {
                cache.set(&id, c.settings.clone());
                tracing::info!(concert = %id, state = c.settings.state.as_str(), "demo concert ready");
                return Ok(());
            }
            Err(e) => tracing::warn!(error = %e, "demo concert not created yet; retrying"),
        }
        tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

/// One round of `queuegate_concert_fans` (every 5 s): each concert's counts, one O(log n)
/// script call per concert. Series per concert: concerts are few, fans are not labels. A
/// concert whose counts cannot be read keeps its last values until the next round.
async fn publish_concert_gauges(
    store: QueueStore,
    cache: ConcertCache,
    metrics: Metrics,
) -> Result<(), std::convert::Infallible> {
    for (id, settings) in cache.snapshot() {
        let Ok(c) = store.counts(&id, &settings.lane_names()).await else { continue };
        metrics.gate_sessions.with_label_values(&[id.as_str()]).set(c.sessions as i64);
        for (kind, v) in [
            ("waiting", c.waiting),
            ("active", c.active),
            ("admitted", c.admitted),
            ("abandoned", c.abandoned),
            ("removed", c.removed),
        ] {
            metrics.concert_fans.with_label_values(&[id.as_str(), kind]).set(v as i64);
        }
        if !settings.lanes.is_empty() {
            for l in &c.lanes {
                for (kind, v) in [("waiting", l.waiting), ("admitted", l.admitted)] {
                    metrics.lane_fans.with_label_values(&[id.as_str(), l.name.as_str(), kind]).set(v as i64);
                }
            }
        }
    }
    Ok(())
}

/// Counts every response by listener, matched route and status, and times it.
async fn observe(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let metrics = req.app_data::<web::Data<Metrics>>().cloned();
    let (listener, route) = match req.app_data::<Listener>() {
        Some(l) => (l.name, crate::routes::label(l.routes, req.path())),
        None => ("unknown", "unmatched"),
    };
    let started = Instant::now();
    let res = next.call(req).await;
    if let Some(m) = metrics {
        let status = match &res {
            Ok(r) => r.status(),
            Err(e) => e.as_response_error().status_code(),
        };
        m.http_requests.with_label_values(&[listener, route, status.as_str()]).inc();
        m.http_duration.with_label_values(&[listener, route]).observe(started.elapsed().as_secs_f64());
    }
    res
}

fn num_cpus() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2)
}

/// Cancels `stop` on Ctrl-C or SIGTERM.
pub async fn cancel_on_signal(stop: CancellationToken) {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => tracing::info!("Ctrl-C received"),
        _ = term => tracing::info!("SIGTERM received"),
    }
    stop.cancel();
}

/// `X-Content-Type-Options: nosniff` on every answer of both listeners: a browser must never
/// guess a script or a page out of a JSON or text body.
fn nosniff() -> actix_web::middleware::DefaultHeaders {
    actix_web::middleware::DefaultHeaders::new().add((actix_web::http::header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
}

#[cfg(test)]
mod route_tables;

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1024 * MIB;

    #[test]
    fn cgroup_limits_parse_and_no_limit_is_none() {
        assert_eq!(parse_cgroup_limit("max\n"), None, "cgroup v2 without a limit");
        assert_eq!(parse_cgroup_limit("536870912\n"), Some(512 * MIB));
        assert_eq!(parse_cgroup_limit("9223372036854771712\n"), None, "cgroup v1 without a limit");
        assert_eq!(parse_cgroup_limit(""), None);
        assert_eq!(parse_cgroup_limit("garbage"), None);
    }

    #[test]
    fn cgroup_dirs_go_from_the_own_cgroup_up_to_the_root() {
        let own = "12:memory:/kubepods/pod1/c1\n0::/kubepods/pod1/c1\n";
        assert_eq!(cgroup_dirs(own, "0::"), ["/kubepods/pod1/c1", "/kubepods/pod1", "/kubepods", ""]);
        assert_eq!(cgroup_dirs("0::/\n", "0::"), [""], "inside a cgroup namespace");
        assert_eq!(cgroup_dirs("", "0::"), [""], "no cgroup file: the root only");
    }

    #[test]
    fn stream_memory_is_the_setting_or_half_of_the_limit_after_the_base() {
        assert_eq!(stream_memory(64, Some(512 * MIB)), Some(64 * MIB), "the setting wins");
        assert_eq!(stream_memory(0, Some(512 * MIB)), Some((512 - PROCESS_BASE_MB) * MIB / 2));
        assert_eq!(stream_memory(0, None), None, "no limit, no setting: no memory bound");
        assert_eq!(stream_memory(0, Some(64 * MIB)), Some(0), "a limit under the base leaves streams nothing");
    }

    #[test]
    fn the_stream_cap_is_the_fewer_of_files_and_memory() {
        // Open files only: 20,000 files leave 18,000 connections and 17,000 streams.
        let files_only = ConnectionBudget::new(20_000, 0, None);
        assert_eq!((files_only.connections, files_only.streams()), (18_000, 17_000));
        assert_eq!(files_only.streams_by_memory(), None);
        // The chart's 512 MiB under a container's huge open-file limit: memory decides.
        let pod = ConnectionBudget::new(1_048_576, 0, Some(512 * MIB));
        let by_memory = ((512 - PROCESS_BASE_MB) * MIB / 2 / STREAM_BYTES) as usize;
        assert_eq!(pod.streams_by_memory(), Some(by_memory));
        assert_eq!(pod.streams(), by_memory);
        assert!(pod.streams() as u64 * STREAM_BYTES + PROCESS_BASE_MB * MIB < 512 * MIB, "streams fit in the pod");
        // Plenty of memory: the open files decide.
        let big = ConnectionBudget::new(20_000, 0, Some(64 * GIB));
        assert_eq!(big.streams(), 17_000);
        // The setting, small: a few dozen streams.
        let small = ConnectionBudget::new(20_000, 1, Some(64 * GIB));
        assert_eq!(small.streams(), (MIB / STREAM_BYTES) as usize);
    }
}
