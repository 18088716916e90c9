//! Automatic admission: lets fans out of each open concert's queue at its configured rate and
//! within its concurrency limit.
//!
//! Every `run` and `consumer` instance runs an admitter, but one instance at a time admits a
//! given concert: each round, an instance takes or renews the concert's Redis lease
//! (`lease.lua`, `QUEUEGATE_ADMISSION_LEASE_MS`) and admits only while it holds it. The lease
//! value carries a fencing number that grows with every new holder, and `admit.lua` checks the
//! value atomically with the admission itself, so an instance that lost its lease (stalled,
//! cut off) cannot admit anyone, and a dead holder is replaced within one lease time.
//!
//! The rate is a token bucket kept in Redis (`admit.lua`), not in the instance: when the lease
//! moves, the new holder continues the same bucket, so the admitted rate does not jump.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::concerts::{ConcertCache, ConcertSettings, ConcertState, QueueingMethod};
use crate::ids::{ConcertId, Lane};
use crate::kafka::CutProbe;
use crate::metrics::Metrics;
use crate::store::{AdmitRequest, Cut, QueueStore};

/// Fans one admission call admits at most (admit.lua scans at most 1,000): at 500 a call took
/// 4.6 ms (p99 9.0 ms) with a million fans waiting, too near the 10 ms bound, so a busy round
/// makes [`CALLS_PER_ROUND`] calls of 250.
const MAX_PER_CALL: u32 = 250;

/// release.lua calls per lane per round at most: 50,000 fans a round of 500 a call (250,000/s
/// at the default tick; each call a few ms), so a burst's backlog is placed within seconds.
const RELEASE_CALLS_PER_ROUND: usize = 100;

/// Admission calls per concert per round at most: a round admits at most 1,000 fans (5,000/s at
/// the default 200 ms tick).
const CALLS_PER_ROUND: usize = 4;

/// One instance's admitter.
pub struct Admitter {
    store: QueueStore,
    cache: ConcertCache,
    metrics: Metrics,
    instance: String,
    tick: Duration,
    lease_ms: u64,
    /// Where the watermark is read, and the clock skew taken off it (see [`crate::watermark`]).
    order: Option<(CutProbe, i64)>,
    /// The latest watermark read (ms; `i64::MIN`: none yet), kept by a task of its own so that an
    /// admission round never waits for Kafka (an offset fetch can take seconds while the group
    /// rebalances).
    latest: std::sync::Arc<std::sync::atomic::AtomicI64>,
    /// Publishes the outboxes of the concerts whose lease this instance holds (src/events/relay.rs).
    relay: Option<crate::events::relay::Relay>,
}

impl Admitter {
    pub fn new(store: QueueStore, cache: ConcertCache, metrics: Metrics, tick: Duration, lease_ms: u64) -> Self {
        Admitter {
            store,
            cache,
            metrics,
            instance: uuid::Uuid::new_v4().simple().to_string(),
            tick,
            lease_ms,
            order: None,
            latest: std::sync::Arc::new(std::sync::atomic::AtomicI64::new(i64::MIN)),
            relay: None,
        }
    }

    /// Makes this admitter relay the outboxes of the concerts whose lease it holds.
    pub fn with_relay(mut self, relay: crate::events::relay::Relay) -> Self {
        self.relay = Some(relay);
        self
    }

    /// Relays every concert's outbox whose lease this instance holds (or takes), every tick.
    /// A task of its own, so a slow broker never holds up admission.
    async fn relay_events(self: std::sync::Arc<Self>, stop: CancellationToken) {
        let Some(relay) = self.relay.clone() else { return };
        crate::periodic::every(self.tick, stop, "event relay", || {
            let (relay, this) = (relay.clone(), self.clone());
            async move {
                let mut failed = None;
                for (id, _) in this.cache.snapshot() {
                    let held = match this.store.lease(&id, &this.instance, this.lease_ms).await {
                        Ok(lease) => lease.is_some(),
                        Err(e) => {
                            failed = Some(anyhow::Error::from(e));
                            continue;
                        }
                    };
                    if held {
                        if let Err(e) = relay.relay(&id).await {
                            tracing::debug!(concert = %id, error = format!("{e:#}"), "relaying events failed; retrying next round");
                            failed = Some(e);
                        }
                    }
                }
                failed.map_or(Ok(()), Err)
            }
        })
        .await
    }

    /// Makes this admitter place staged fans and do scheduled concerts' cuts as the watermark
    /// passes them: `probe` reads the group's committed stamps, `skew_ms` is
    /// `QUEUEGATE_CLOCK_SKEW_MS`.
    pub fn with_order(mut self, probe: CutProbe, skew_ms: i64) -> Self {
        self.order = Some((probe, skew_ms));
        self
    }

    /// The latest watermark (ms): None when unknown (a partition not yet committed with a
    /// stamp, Kafka unreachable so far) or when this admitter does not place fans.
    fn watermark(&self) -> Option<i64> {
        let w = self.latest.load(std::sync::atomic::Ordering::Relaxed);
        (w != i64::MIN).then_some(w)
    }

    /// Reads the watermark from the group's committed stamps every tick into `latest`. The
    /// watermark only grows here: a read that comes out lower (a new owner of a partition
    /// committing before it has caught up) keeps the higher one, which was true when read.
    async fn read_watermarks(self: std::sync::Arc<Self>, stop: CancellationToken) {
        let Some((probe, skew_ms)) = self.order.clone() else { return };
        crate::periodic::every(self.tick, stop, "watermark read", || {
            let (probe, this) = (probe.clone(), self.clone());
            async move {
                let read = probe.passed_stamps().await;
                if let Ok(stamps) = &read {
                    match crate::watermark::watermark(stamps.iter().map(|(_, s)| *s), skew_ms) {
                        Some(w) => {
                            this.latest.fetch_max(w, std::sync::atomic::Ordering::Relaxed);
                        }
                        None => tracing::debug!(
                            partitions = stamps.iter().filter(|(_, s)| s.is_none()).count(),
                            "no watermark yet: some partitions have no committed stamp"
                        ),
                    }
                }
                // The age grows while reads fail too, so the alert sees a stall whatever its cause.
                if let Some(w) = this.watermark() {
                    this.metrics.watermark_age.set((crate::clock::now_ms() - w) as f64 / 1000.0);
                }
                read.map(|_| ())
            }
        })
        .await
    }

    /// Runs admission rounds until `stop` is cancelled.
    pub async fn run(self, stop: CancellationToken) {
        let this = std::sync::Arc::new(self);
        tokio::spawn(this.clone().read_watermarks(stop.clone()));
        tokio::spawn(this.clone().relay_events(stop.clone()));
        crate::periodic::every(this.tick, stop, "admission round", || {
            let this = this.clone();
            async move {
                this.round().await?;
                this.metrics.admission_rounds.inc();
                anyhow::Ok(())
            }
        })
        .await
    }

    /// One round over every concert: gate sessions swept, the fair start's cut, automatic
    /// admission. A concert whose Redis shard fails does not stop the others' round.
    async fn round(&self) -> anyhow::Result<()> {
        let mut failed = None;
        let watermark = self.watermark();
        for (id, s) in self.cache.snapshot() {
            if let Err(e) = self.concert_round(&id, &s, watermark).await {
                tracing::debug!(concert = %id, error = format!("{e:#}"), "admission round failed for this concert");
                failed = Some(e.context(format!("concert {id}")));
            }
        }
        failed.map_or(Ok(()), Err)
    }

    /// Counts and logs gate sessions a round ended: (idle, at their maximum), by the sweep or
    /// by the admission call right behind it.
    fn sessions_ended(&self, id: &ConcertId, (idle, max): (u64, u64)) {
        if idle + max > 0 {
            self.metrics.gate_sessions_ended.with_label_values(&["idle"]).inc_by(idle);
            self.metrics.gate_sessions_ended.with_label_values(&["max"]).inc_by(max);
            tracing::info!(concert = %id, idle, max, "gate sessions ended");
        }
    }

    /// One concert's share of a round.
    async fn concert_round(&self, id: &ConcertId, s: &ConcertSettings, watermark: Option<i64>) -> anyhow::Result<()> {
        if let Some(w) = watermark {
            let mut staged = 0;
            for lane in s.lanes().iter() {
                if s.opens_at.is_some() {
                    if let Err(e) = self.fair_start(id, &lane.name, s, w).await {
                        tracing::warn!(concert = %id, lane = %lane.name, error = %e,
                            "the fair start's cut failed; retrying next round");
                    }
                }
                staged += self.place(id, &lane.name, w).await?;
            }
            self.metrics.order_held_fans.with_label_values(&[id.as_str()]).set(staged as i64);
        }
        // Gate sessions past their idle or maximum time end here, right before admission,
        // whatever the admission mode, so their slots go to the next fans in this very round.
        let remember_ms = i64::from(s.session_max_seconds) * 1000 + 60_000;
        self.sessions_ended(id, self.store.sweep_sessions(id, remember_ms).await?);
        let passthrough = s.queueing_method == QueueingMethod::Passthrough;
        if s.state != ConcertState::Open || (s.admit_per_second == 0 && s.max_active == 0 && !passthrough) {
            return Ok(());
        }
        let Some(lease) = self.store.lease(id, &self.instance, self.lease_ms).await? else { return Ok(()) };
        let max =
            if s.admit_per_second > 0 && !passthrough { s.admit_per_second.min(MAX_PER_CALL) } else { MAX_PER_CALL };
        let lanes = s.lane_shares();
        let req = AdmitRequest {
            max,
            ttl_ms: i64::from(s.token_ttl_seconds) * 1000,
            max_active: s.max_active,
            abandon_after_ms: i64::from(s.abandon_after_seconds) * 1000,
            // Passthrough lets everyone through at each round: no rate bucket.
            per_second: if passthrough { 0 } else { s.admit_per_second },
            lease: Some(&lease),
            request: None,
            lanes: &lanes,
        };
        for _ in 0..CALLS_PER_ROUND {
            let admitted = self.store.admit(id, req).await?;
            if let Some(a) = &admitted {
                self.sessions_ended(id, a.sessions_ended);
            }
            match admitted {
                Some(a) if !a.fans.is_empty() => {
                    self.metrics.admissions.with_label_values(&["auto"]).inc_by(a.fans.len() as u64);
                    tracing::debug!(concert = %id, admitted = a.fans.len(), lease = %lease, "admitted");
                    if a.fans.len() < max as usize {
                        break; // the bucket, the slots or the queue ran out: nothing more this round
                    }
                }
                Some(_) => break,
                None => {
                    tracing::info!(concert = %id, "admitter lease lost before admitting");
                    break;
                }
            }
        }
        Ok(())
    }

    /// Places the lane's staged fans below the watermark, in stamp order (several calls for a
    /// big backlog, a bounded number per round); how many are still staged.
    async fn place(&self, id: &ConcertId, lane: &Lane, watermark: i64) -> anyhow::Result<u64> {
        let mut placed = 0;
        let mut staged = 0;
        for _ in 0..RELEASE_CALLS_PER_ROUND {
            let r = self.store.release(id, lane, watermark).await?;
            placed += r.placed;
            staged = r.staged;
            if r.placed < u64::from(crate::store::order::RELEASE_MAX) {
                break;
            }
        }
        if placed > 0 {
            self.metrics.order_placed.inc_by(placed);
            tracing::debug!(concert = %id, %lane, placed, watermark, "placed in stamp order");
        }
        Ok(staged)
    }

    /// A scheduled concert's cut, once the watermark has passed opensAt (see
    /// docs/explain-guarantees.md, "The fair start"): every join accepted before opensAt is then held in
    /// Redis, and the pre-queue is queued in the seed's order under the concert's admitter
    /// lease, in slices of at most 500 fans a Redis call ([`QueueStore::cut`]); the fans who
    /// joined after it are staged and placed in stamp order once the whole pre-queue is queued.
    /// The cut runs to its end in this round (renewing the lease); one interrupted (a crash, the
    /// lease lost) is resumed by whichever instance holds the lease next.
    async fn fair_start(&self, id: &ConcertId, lane: &Lane, s: &ConcertSettings, watermark: i64) -> anyhow::Result<()> {
        let Some(opens_at) = s.opens_at else { return Ok(()) };
        let fair = self.store.fair_state(id, lane).await?;
        // A cut that has begun goes on to its end even if opensAt was moved since: the
        // pre-queue it froze is the one the old opensAt made.
        if fair.shuffled_at_ms.is_some() || (watermark < opens_at && fair.cut_at_ms.is_none()) {
            return Ok(());
        }
        let seed = fair.seed.ok_or_else(|| anyhow::anyhow!("no seed was drawn for concert {id}"))?;
        let started = std::time::Instant::now();
        match self.store.cut(id, lane, &seed, &self.instance, self.lease_ms).await? {
            Cut::Done { prequeued, after, calls } => tracing::info!(
                concert = %id, %lane, prequeued, after, calls, resumed_at = fair.cut_moved,
                ms = started.elapsed().as_millis() as u64,
                "fair start: the pre-queue is queued in the seed's order"
            ),
            Cut::AlreadyDone => {}
            Cut::NotLeader => {
                tracing::info!(concert = %id, %lane, "fair start: the cut is another instance's (or its lease was lost)")
            }
        }
        Ok(())
    }
}
