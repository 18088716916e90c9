//! A concert as the admin API shows it: its settings with its counts, per lane too.

use serde::Serialize;

use crate::admin::state::Admin;
use crate::concerts::{Concert, ConcertSettings};
use crate::ids::{ConcertId, Lane};
use crate::problem::ApiError;
use crate::store::QueueStore;

/// A concert with its counts, as the admin API shows it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct ConcertView {
    concert_id: ConcertId,
    #[serde(flatten)]
    pub(super) settings: ConcertSettings,
    waiting: u64,
    /// Admitted since the concert began.
    admitted: u64,
    /// Admitted fans holding a slot now (token neither expired nor completed).
    active: u64,
    /// Skipped at admission because they stopped polling.
    abandoned: u64,
    removed: u64,
    /// Live gate sessions (src/gate.rs, src/gateway/gate_check.rs); each holds one of the `active` slots.
    sessions: u64,
    /// Per lane: waiting, admitted (and a code lane's codes), in the concert's lane order.
    lane_counts: Vec<LaneCountsView>,
    created_at: String,
    updated_at: String,
    /// The concert's `ETag` (as `GET` answers it for this concert), so a client that read the
    /// list can send `If-Match` too.
    etag: String,
}

/// One lane's counts, as the admin API shows them.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct LaneCountsView {
    name: Lane,
    waiting: u64,
    admitted: u64,
    /// A code lane's codes: uploaded, and bound to a fan.
    #[serde(skip_serializing_if = "Option::is_none")]
    codes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    codes_used: Option<u64>,
}

pub(super) async fn view(store: &QueueStore, c: Concert) -> Result<ConcertView, ApiError> {
    let counts = store.counts(&c.id, &c.settings.lane_names()).await?;
    let mut lane_counts = Vec::with_capacity(counts.lanes.len());
    for (l, settings) in counts.lanes.iter().zip(c.settings.lanes().iter()) {
        let (codes, codes_used) = if settings.access == crate::concerts::LaneAccess::Code {
            let (n, used) = store.code_counts(&c.id, &l.name).await?;
            (Some(n), Some(used))
        } else {
            (None, None)
        };
        lane_counts.push(LaneCountsView {
            name: l.name.clone(),
            waiting: l.waiting,
            admitted: l.admitted,
            codes,
            codes_used,
        });
    }
    Ok(ConcertView {
        lane_counts,
        waiting: counts.waiting,
        admitted: counts.admitted,
        active: counts.active,
        abandoned: counts.abandoned,
        removed: counts.removed,
        sessions: counts.sessions,
        created_at: crate::clock::rfc3339(c.created_at_ms),
        updated_at: crate::clock::rfc3339(c.updated_at_ms),
        etag: c.etag(),
        concert_id: c.id,
        settings: c.settings,
    })
}

pub(super) async fn existing(admin: &Admin, id: &ConcertId) -> Result<Concert, ApiError> {
    admin.store.get_concert(id).await?.ok_or_else(|| ApiError::NotFound(format!("no concert {id}")))
}
