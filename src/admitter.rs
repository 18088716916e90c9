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
use crate::ids::ConcertId;
use crate::kafka::CutProbe;
use crate::metrics::Metrics;
use crate::store::{AdmitRequest, Cut, QueueStore};

/// Fans one admission call looks at most (admit.lua scans at most 1000).
const MAX_PER_CALL: u32 = 1000;

/// One instance's admitter.
pub struct Admitter {
    store: QueueStore,
    cache: ConcertCache,
    metrics: Metrics,
    instance: String,
    tick: Duration,
    lease_ms: u64,
    cut: Option<(CutProbe, i64)>,
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
            cut: None,
        }
    }

    /// Makes this admitter do scheduled concerts' cuts: `probe` reads the entry topic's
    /// watermarks and the group's offsets; the cut waits `grace_ms` past opensAt before taking
    /// the watermarks (the gateways' delivery timeout plus twice the clock skew).
    pub fn with_cut(mut self, probe: CutProbe, grace_ms: i64) -> Self {
        self.cut = Some((probe, grace_ms));
        self
    }

    /// Runs admission rounds until `stop` is cancelled.
    pub async fn run(self, stop: CancellationToken) {
        let this = std::sync::Arc::new(self);
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
        for (id, s) in self.cache.snapshot() {
            if let Err(e) = self.concert_round(&id, &s).await {
                tracing::debug!(concert = %id, error = format!("{e:#}"), "admission round failed for this concert");
                failed = Some(e.context(format!("concert {id}")));
            }
        }
        failed.map_or(Ok(()), Err)
    }

    /// One concert's share of a round.
    async fn concert_round(&self, id: &ConcertId, s: &ConcertSettings) -> anyhow::Result<()> {
        // Gate sessions past their idle or maximum time end here, whatever the admission
        // mode, so their slots go to the next fans in this very round.
        let remember_ms = i64::from(s.session_max_seconds) * 1000 + 60_000;
        let (idle, max) = self.store.sweep_sessions(id, remember_ms).await?;
        if idle + max > 0 {
            self.metrics.gate_sessions_ended.with_label_values(&["idle"]).inc_by(idle);
            self.metrics.gate_sessions_ended.with_label_values(&["max"]).inc_by(max);
            tracing::info!(concert = %id, idle, max, "gate sessions ended");
        }
        if s.opens_at.is_some() {
            if let Err(e) = self.fair_start(id, s).await {
                tracing::warn!(concert = %id, error = %e, "the fair start's cut failed; retrying next round");
            }
        }
        let passthrough = s.queueing_method == QueueingMethod::Passthrough;
        if s.state != ConcertState::Open || (s.admit_per_second == 0 && s.max_active == 0 && !passthrough) {
            return Ok(());
        }
        let Some(lease) = self.store.lease(id, &self.instance, self.lease_ms).await? else { return Ok(()) };
        let req = AdmitRequest {
            max: if s.admit_per_second > 0 && !passthrough {
                s.admit_per_second.min(MAX_PER_CALL)
            } else {
                MAX_PER_CALL
            },
            ttl_ms: i64::from(s.token_ttl_seconds) * 1000,
            max_active: s.max_active,
            abandon_after_ms: i64::from(s.abandon_after_seconds) * 1000,
            // Passthrough lets everyone through at each round: no rate bucket.
            per_second: if passthrough { 0 } else { s.admit_per_second },
            lease: Some(&lease),
            request: None,
        };
        match self.store.admit(id, req).await? {
            Some(a) if !a.fans.is_empty() => {
                self.metrics.admissions.with_label_values(&["auto"]).inc_by(a.fans.len() as u64);
                tracing::debug!(concert = %id, admitted = a.fans.len(), lease = %lease, "admitted");
            }
            Some(_) => {}
            None => tracing::info!(concert = %id, "admitter lease lost before admitting"),
        }
        Ok(())
    }

    /// A scheduled concert's cut, once its time has come (see docs/guarantees.md, "The fair
    /// start"): past opensAt plus the grace, the topic's high watermarks are recorded (once,
    /// whoever comes first); when the consumer group has committed past them on every partition,
    /// every record accepted before opensAt is held in Redis, and the pre-queue is queued in the
    /// seed's order (once, under the concert's admitter lease).
    async fn fair_start(&self, id: &ConcertId, s: &ConcertSettings) -> anyhow::Result<()> {
        let (Some(opens_at), Some((probe, grace_ms))) = (s.opens_at, &self.cut) else { return Ok(()) };
        if crate::clock::now_ms() < opens_at + grace_ms {
            return Ok(());
        }
        let fair = self.store.fair_state(id).await?;
        if fair.shuffled_at_ms.is_some() {
            return Ok(());
        }
        let Some(lease) = self.store.lease(id, &self.instance, self.lease_ms).await? else { return Ok(()) };
        let cut = match fair.cut_offsets {
            Some(cut) => cut,
            None => self.store.set_cut_offsets(id, &probe.high_watermarks().await?).await?,
        };
        if !probe.passed(&cut).await? {
            tracing::debug!(concert = %id, "the fair start waits for the consumer to pass the cut");
            return Ok(());
        }
        let seed = fair.seed.ok_or_else(|| anyhow::anyhow!("no seed was drawn for concert {id}"))?;
        let (pre, _) = self.store.prequeue(id).await?;
        let ordered = crate::fairness::order(&seed, &pre).ok_or_else(|| anyhow::anyhow!("the seed is not hex"))?;
        let started = std::time::Instant::now();
        match self.store.cut(id, &ordered, &crate::fairness::list_hash(&pre), &lease).await? {
            Cut::Done { prequeued, after } => tracing::info!(
                concert = %id, prequeued, after, ms = started.elapsed().as_millis() as u64,
                "fair start: the pre-queue is queued in the seed's order"
            ),
            Cut::AlreadyDone => {}
            Cut::NotLeader => tracing::info!(concert = %id, "admitter lease lost before the cut"),
        }
        Ok(())
    }
}
