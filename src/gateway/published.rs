//! What `GET /v1/concerts/{concertId}/fairness` publishes, kept in memory: the answer changes
//! twice in a concert's life (scheduling writes the commitment, the cut reveals the seed) and
//! `late` grows a little after the cut, so anyone may read it as often as they like and Redis
//! sees at most one HGETALL per concert per [`REFRESH`] per gateway.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::ids::{ConcertId, Lane};
use crate::store::{FairState, QueueStore, StoreError};

/// How stale a published fairness record may be.
pub const REFRESH: Duration = Duration::from_secs(1);

/// The last fair state read per concert (only concerts the concert cache knows reach it, so
/// its size is bounded by the number of concerts).
#[derive(Default)]
pub struct Published {
    states: Mutex<HashMap<(ConcertId, Lane), (Instant, FairState)>>,
    /// One refresh at a time: a burst of readers at the expiry makes one Redis call, not one each.
    refreshing: tokio::sync::Mutex<()>,
}

impl Published {
    fn fresh(&self, id: &ConcertId, lane: &Lane) -> Option<FairState> {
        let states = self.states.lock().unwrap_or_else(|p| p.into_inner());
        states.get(&(id.clone(), lane.clone())).filter(|(at, _)| at.elapsed() < REFRESH).map(|(_, s)| s.clone())
    }

    /// The fair state of a concert's lane, from memory while it is fresher than [`REFRESH`].
    pub async fn fair_state(&self, store: &QueueStore, id: &ConcertId, lane: &Lane) -> Result<FairState, StoreError> {
        if let Some(s) = self.fresh(id, lane) {
            return Ok(s);
        }
        let _one = self.refreshing.lock().await;
        if let Some(s) = self.fresh(id, lane) {
            return Ok(s);
        }
        let s = store.fair_state(id, lane).await?;
        self.states
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert((id.clone(), lane.clone()), (Instant::now(), s.clone()));
        Ok(s)
    }
}
