//! First come, first placed: the Redis side of placing staged fans in stamp order
//! (release.lua). The watermark itself is worked out from Kafka ([`crate::watermark`]).

use super::{timed, Part, QueueStore, StoreError};
use crate::ids::{ConcertId, Lane};

/// Fans one release call places at most: a big backlog is placed over several calls (each a
/// short script, 2-5 ms at a million fans waiting; 5,000 took 26 ms alone and 40-210 ms mid-burst),
/// in order.
pub const RELEASE_MAX: u32 = 500;

/// What one release did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Released {
    /// Fans placed now, in stamp order, behind everyone placed before.
    pub placed: u64,
    /// Fans still staged (their stamp is at or past the watermark, or the cut has not come).
    pub staged: u64,
    /// The lowest stamp still staged (ms).
    pub oldest_staged_ms: Option<i64>,
}

impl QueueStore {
    /// Places `lane`'s staged fans whose stamp is below `watermark_ms` (at most
    /// [`RELEASE_MAX`] of them, the lowest stamps first).
    pub async fn release(&self, concert: &ConcertId, lane: &Lane, watermark_ms: i64) -> Result<Released, StoreError> {
        let mut inv = self.scripts.release.prepare_invoke();
        for part in [
            Part::Staged,
            Part::Joined,
            Part::Waiting,
            Part::Rank,
            Part::Seq,
            Part::Concert,
            Part::Seen,
            Part::Order,
            Part::Fair,
        ] {
            inv.key(self.lane_key(concert, lane, part));
        }
        self.outbox_keys(&mut inv, concert);
        inv.arg(watermark_ms).arg(RELEASE_MAX).arg(lane.as_str());
        let mut c = self.conn().await?;
        let (placed, staged, oldest): (u64, u64, i64) = timed(inv.invoke_async(&mut c)).await?;
        Ok(Released { placed, staged, oldest_staged_ms: (oldest >= 0).then_some(oldest) })
    }

    /// How many of `concert`'s fans were staged below a stamp already placed (`late`).
    pub async fn late_joins(&self, concert: &ConcertId, lane: &Lane) -> Result<u64, StoreError> {
        let mut c = self.conn().await?;
        let late: Option<u64> =
            timed(redis::cmd("HGET").arg(self.lane_key(concert, lane, Part::Order)).arg("late").query_async(&mut c))
                .await?;
        Ok(late.unwrap_or(0))
    }
}
