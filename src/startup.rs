//! Building and running a queuegate process: listeners, roles, and graceful shutdown.
//!
//! [`Application::build`] binds its listeners first (so a test can ask for port 0 and learn the
//! real port) and creates the Kafka and Redis clients without connecting; [`Application::run`]
//! serves until its stop token is cancelled and then shuts down in order:
//!
//! 1. `/readyz` turns 503 (load balancers stop sending),
//! 2. the public listener stops accepting and finishes in-flight joins,
//! 3. the producer is flushed (dropping it would purge queued records),
//! 4. the consumer finishes and commits its batch,
//! 5. the admin listener stops.
//!
//! Each step is bounded by the grace period (`QUEUEGATE_SHUTDOWN_GRACE_SECONDS`).

use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering};
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
use crate::metrics::Metrics;
use crate::producer::EntryProducer;
use crate::store::QueueStore;
use crate::token::EntryTokens;

/// A built, not yet running, queuegate process.
pub struct Application {
    role: Role,
    settings: Settings,
    http_port: Option<u16>,
    admin_port: u16,
    stop: CancellationToken,
    draining: Arc<AtomicBool>,
    public: Option<Server>,
    admin: Server,
    producer: Option<EntryProducer>,
    consumer: Option<EntryConsumer>,
    cache: ConcertCache,
    admin_store: QueueStore,
    metrics: Metrics,
}

/// Which listener a request came in on, for metric labels.
#[derive(Clone, Copy)]
struct ListenerName(&'static str);

impl Application {
    /// Validates `settings`, binds the listeners the `role` needs and creates its clients.
    pub async fn build(settings: Settings, role: Role) -> anyhow::Result<Self> {
        settings.validate()?;
        let keys = settings.admission_keys()?;
        let metrics = Metrics::new();
        let cache = ConcertCache::default();
        let draining = Arc::new(AtomicBool::new(false));
        let stop = CancellationToken::new();
        let grace = settings.shutdown_grace_seconds;
        let workers = if settings.http_workers == 0 { num_cpus() } else { settings.http_workers };

        // Separate pools per part: actix workers run their own runtimes, and a Redis connection
        // lives on the runtime that opened it, so the consumer never shares one with a listener.
        let new_store = || QueueStore::new(&settings.redis_url, &settings.redis_prefix, settings.redis_pool);
        let admin_store = new_store()?;

        let admin_listener = TcpListener::bind(settings.admin_addr)
            .with_context(|| format!("binding the admin listener (QUEUEGATE_ADMIN_ADDR={})", settings.admin_addr))?;
        let admin_port = admin_listener.local_addr()?.port();

        let (public, http_port, producer) = if role.serves_public() {
            let listener = TcpListener::bind(settings.http_addr)
                .with_context(|| format!("binding the public listener (QUEUEGATE_HTTP_ADDR={})", settings.http_addr))?;
            let port = listener.local_addr()?.port();
            let producer = EntryProducer::new(&settings, &metrics)?;
            let gw = web::Data::new(
                Gateway::new(
                    producer.clone(),
                    new_store()?,
                    cache.clone(),
                    EntryTokens::new(&settings.token_secret_bytes()),
                    keys.clone(),
                    metrics.clone(),
                    settings.rate_limit_per_ip,
                )
                .with_streams(settings.max_event_streams, stop.clone()),
            );
            let m = web::Data::new(metrics.clone());
            let server = HttpServer::new(move || {
                App::new()
                    .app_data(gw.clone())
                    .app_data(m.clone())
                    .app_data(web::Data::new(ListenerName("public")))
                    .wrap(actix_web::middleware::from_fn(observe))
                    .configure(gateway::routes)
            })
            .listen(listener)?
            .workers(workers)
            .backlog(4096)
            // actix's 5 s default for reading a request head answers 408 to fans whose
            // connection waited in the accept queue during a burst; 15 s still bounds slow clients.
            .client_request_timeout(Duration::from_secs(15))
            .max_connections(50_000)
            .disable_signals()
            .shutdown_timeout(grace)
            .run();
            (Some(server), Some(port), Some(producer))
        } else {
            (None, None, None)
        };

        let consumer =
            if role.consumes() { Some(EntryConsumer::new(&settings, new_store()?, metrics.clone())?) } else { None };

        let mut admin_state = Admin::new(
            admin_store.clone(),
            cache.clone(),
            metrics.clone(),
            keys,
            settings.admin_token.as_deref(),
            draining.clone(),
        );
        admin_state.producer = producer.clone();
        if producer.is_none() {
            if let Some(c) = &consumer {
                admin_state.kafka_probe = Some(Arc::new(c.kafka_probe()));
            }
        }
        let admin_state = web::Data::new(admin_state);
        let m = web::Data::new(metrics.clone());
        let admin = HttpServer::new(move || {
            App::new()
                .app_data(admin_state.clone())
                .app_data(m.clone())
                .app_data(web::Data::new(ListenerName("admin")))
                .wrap(actix_web::middleware::from_fn(observe))
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
            draining,
            public,
            admin,
            producer,
            consumer,
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

    /// Serves until the stop token is cancelled (or the consumer fails), then shuts down in order.
    pub async fn run(self) -> anyhow::Result<()> {
        let Application {
            role,
            settings,
            stop,
            draining,
            public,
            admin,
            producer,
            consumer,
            cache,
            admin_store,
            metrics,
            ..
        } = self;
        let grace = settings.shutdown_grace();
        let public_handle = public.map(|s| {
            let h = s.handle();
            tokio::spawn(s);
            h
        });
        let admin_handle = admin.handle();
        tokio::spawn(admin);

        // Gateways judge joins by the cache; admitters find the concerts to admit in it.
        if let Err(e) = cache.refresh(&admin_store).await {
            tracing::warn!(error = %e, "could not load concerts at start-up; joins answer 503 until Redis answers");
        }
        let every = Duration::from_millis(settings.concert_refresh_ms);
        tokio::spawn(cache.clone().run_refresh(admin_store.clone(), every, stop.clone()));
        tokio::spawn(publish_concert_gauges(admin_store.clone(), cache.clone(), metrics.clone(), stop.clone()));
        if role.consumes() {
            let admitter = Admitter::new(
                admin_store.clone(),
                cache.clone(),
                metrics.clone(),
                Duration::from_millis(settings.admission_tick_ms),
                settings.admission_lease_ms,
            );
            tokio::spawn(admitter.run(stop.clone()));
        }
        if let Some(id) = settings.demo_concert.clone() {
            tokio::spawn(ensure_demo_concert(admin_store.clone(), cache.clone(), id, stop.clone()));
        }
        let consumer_stop = CancellationToken::new();
        let mut consumer_task = consumer.map(|c| tokio::spawn(c.run(consumer_stop.clone())));
        tracing::info!(role = ?role, http = ?settings.http_addr, admin = %settings.admin_addr, "queuegate started");

        let mut failure = None;
        tokio::select! {
            _ = stop.cancelled() => {}
            r = async { consumer_task.as_mut().expect("guarded").await }, if consumer_task.is_some() => {
                consumer_task = None;
                failure = Some(match r {
                    Ok(Ok(())) => anyhow::anyhow!("the consumer stopped on its own"),
                    Ok(Err(e)) => e.context("the consumer failed"),
                    Err(e) => anyhow::anyhow!("the consumer panicked: {e}"),
                });
            }
        }

        tracing::info!("shutting down");
        let started = Instant::now();
        draining.store(true, Ordering::Release);
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
        consumer_stop.cancel();
        if let Some(t) = consumer_task {
            match tokio::time::timeout(grace, t).await {
                Ok(Ok(Ok(()))) => {}
                Ok(Ok(Err(e))) => {
                    tracing::warn!(error = format!("{e:#}"), "consumer ended with an error")
                }
                Ok(Err(e)) => tracing::warn!(error = %e, "consumer task failed"),
                Err(_) => tracing::warn!("consumer did not stop within the grace period"),
            }
        }
        admin_handle.stop(true).await;
        tracing::info!(elapsed_ms = started.elapsed().as_millis() as u64, "queuegate stopped");
        match failure {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

/// Creates the demo concert, open, if it does not exist; retries while Redis is unreachable.
async fn ensure_demo_concert(store: QueueStore, cache: ConcertCache, id: String, stop: CancellationToken) {
    loop {
        let result = match store.get_concert(&id).await {
            Ok(Some(c)) => Ok(c),
            Ok(None) => store.put_concert(&id, &ConcertSettings::open()).await,
            Err(e) => Err(e),
        };
        match result {
            Ok(c) => {
                cache.set(&id, c.settings.clone());
                tracing::info!(concert = %id, state = c.settings.state.as_str(), "demo concert ready");
                return;
            }
            Err(e) => tracing::warn!(error = %e, "demo concert not created yet; retrying"),
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

/// Every 5 s, sets `queuegate_concert_fans` from each concert's counts (one O(log n) script
/// call per concert). Series per concert: concerts are few, fans are not labels.
async fn publish_concert_gauges(store: QueueStore, cache: ConcertCache, metrics: Metrics, stop: CancellationToken) {
    crate::periodic::every(Duration::from_secs(5), stop, "concert gauges", || {
        let (store, cache, metrics) = (store.clone(), cache.clone(), metrics.clone());
        async move {
            // A concert whose counts cannot be read keeps its last values until the next round.
            for (id, _) in cache.snapshot() {
                let Ok(c) = store.counts(&id).await else { continue };
                for (kind, v) in [
                    ("waiting", c.waiting),
                    ("active", c.active),
                    ("admitted", c.admitted),
                    ("abandoned", c.abandoned),
                    ("removed", c.removed),
                ] {
                    metrics.concert_fans.with_label_values(&[id.as_str(), kind]).set(v as i64);
                }
            }
            Ok::<(), std::convert::Infallible>(())
        }
    })
    .await
}

/// Counts every response by listener, matched route and status, and times it.
async fn observe(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let metrics = req.app_data::<web::Data<Metrics>>().cloned();
    let listener = req.app_data::<web::Data<ListenerName>>().map(|l| l.0).unwrap_or("unknown");
    let route = crate::metrics::route_label(req.path());
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
