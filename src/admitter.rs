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

use crate::concerts::{ConcertCache, ConcertState};
use crate::metrics::Metrics;
use crate::store::{AdmitRequest, QueueStore};

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
}

impl Admitter {
    pub fn new(store: QueueStore, cache: ConcertCache, metrics: Metrics, tick: Duration, lease_ms: u64) -> Self {
        Admitter { store, cache, metrics, instance: uuid::Uuid::new_v4().simple().to_string(), tick, lease_ms }
    }

    /// Runs admission rounds until `stop` is cancelled.
    pub async fn run(self, stop: CancellationToken) {
        let this = std::sync::Arc::new(self);
        crate::periodic::every(this.tick, stop, "admission round", || {
            let this = this.clone();
            async move { this.round().await }
        })
        .await
    }

    /// One round over every open concert with automatic admission configured.
    async fn round(&self) -> Result<(), crate::store::StoreError> {
        for (id, s) in self.cache.snapshot() {
            if s.state != ConcertState::Open || (s.admit_per_second == 0 && s.max_active == 0) {
                continue;
            }
            let Some(lease) = self.store.lease(&id, &self.instance, self.lease_ms).await? else { continue };
            let req = AdmitRequest {
                max: if s.admit_per_second > 0 { s.admit_per_second.min(MAX_PER_CALL) } else { MAX_PER_CALL },
                ttl_ms: i64::from(s.token_ttl_seconds) * 1000,
                max_active: s.max_active,
                abandon_after_ms: i64::from(s.abandon_after_seconds) * 1000,
                per_second: s.admit_per_second,
                lease: Some(&lease),
                request: None,
            };
            match self.store.admit(&id, req).await? {
                Some(a) if !a.fans.is_empty() => {
                    self.metrics.admissions.with_label_values(&["auto"]).inc_by(a.fans.len() as u64);
                    tracing::debug!(concert = %id, admitted = a.fans.len(), lease = %lease, "admitted");
                }
                Some(_) => {}
                None => tracing::info!(concert = %id, "admitter lease lost before admitting"),
            }
        }
        Ok(())
    }
}
