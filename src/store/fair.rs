//! The fair start's Redis side: the seed and its commitment, the cut's offsets, the pre-queue,
//! and the cut itself (shuffle.lua). See [`crate::fairness`] for the order and its proof.

use super::{conn, timed, Part, QueueStore, StoreError};
use crate::ids::{ConcertId, Lane};

/// A concert's fair-start state (its `fair` hash).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FairState {
    /// Secret until the cut.
    pub seed: Option<String>,
    pub commitment: Option<String>,
    /// The partitions' high watermarks a cut of an earlier version waited for
    /// (`partition:offset,...`); cuts now wait for the placement watermark instead.
    pub cut_offsets: Option<Vec<(i32, i64)>>,
    pub shuffled_at_ms: Option<i64>,
    pub list_hash: Option<String>,
    pub prequeued: Option<u64>,
    /// Records accepted before opensAt that reached Redis after the cut (queued at the tail).
    pub late: u64,
}

/// What the cut did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cut {
    /// The lease passed to another instance: nothing done.
    NotLeader,
    /// Done before (by this or another instance).
    AlreadyDone,
    /// Done now: this many fans from the pre-queue, then this many who joined after opensAt.
    Done { prequeued: u64, after: u64 },
}

fn parse_offsets(text: &str) -> Option<Vec<(i32, i64)>> {
    text.split(',')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (part, off) = p.split_once(':')?;
            Some((part.parse().ok()?, off.parse().ok()?))
        })
        .collect()
}

impl QueueStore {
    /// Draws the lane's seed if it has none (HSETNX: the first one stays) and records its
    /// commitment.
    pub(super) async fn commit_to_seed(
        &self,
        c: &mut conn::Conn,
        id: &ConcertId,
        lane: &Lane,
    ) -> Result<(), StoreError> {
        let key = self.lane_key(id, lane, Part::Fair);
        let _: bool =
            timed(redis::cmd("HSETNX").arg(&key).arg("seed").arg(crate::fairness::new_seed()).query_async(&mut *c))
                .await?;
        let seed: String = timed(redis::cmd("HGET").arg(&key).arg("seed").query_async(&mut *c)).await?;
        let commitment =
            crate::fairness::commitment(&seed).ok_or_else(|| StoreError::Reply("seed is not hex".into()))?;
        timed(redis::cmd("HSET").arg(&key).arg("commitment").arg(commitment).query_async::<()>(&mut *c)).await
    }

    /// The concert's fair-start state.
    pub async fn fair_state(&self, id: &ConcertId, lane: &Lane) -> Result<FairState, StoreError> {
        let mut c = self.conn().await?;
        let fields: Vec<(String, String)> =
            timed(redis::cmd("HGETALL").arg(self.lane_key(id, lane, Part::Fair)).query_async(&mut c)).await?;
        let get = |name: &str| fields.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
        Ok(FairState {
            seed: get("seed"),
            commitment: get("commitment"),
            cut_offsets: get("cutOffsets").as_deref().and_then(parse_offsets),
            shuffled_at_ms: get("shuffledAt").and_then(|v| v.parse().ok()),
            list_hash: get("listHash"),
            prequeued: get("prequeued").and_then(|v| v.parse().ok()),
            late: get("late").and_then(|v| v.parse().ok()).unwrap_or(0),
        })
    }

    /// The fans held before opensAt (the pre-queue, in no order) and how many joined after.
    pub async fn prequeue(&self, id: &ConcertId, lane: &Lane) -> Result<(Vec<String>, usize), StoreError> {
        let mut c = self.conn().await?;
        let held: Vec<String> =
            timed(redis::cmd("HKEYS").arg(self.lane_key(id, lane, Part::Hold)).query_async(&mut c)).await?;
        let post: Vec<String> =
            timed(redis::cmd("LRANGE").arg(self.lane_key(id, lane, Part::Post)).arg(0).arg(-1).query_async(&mut c))
                .await?;
        let after: std::collections::HashSet<&str> = post.iter().map(String::as_str).collect();
        let pre = held.iter().filter(|u| !after.contains(u.as_str())).cloned().collect();
        Ok((pre, post.len()))
    }

    /// The cut (shuffle.lua): `ordered` (the pre-queue in the seed's order) first, then who
    /// joined after opensAt; once, under the admitter's `lease`.
    pub async fn cut(
        &self,
        id: &ConcertId,
        lane: &Lane,
        ordered: &[String],
        list_hash: &str,
        lease: &str,
    ) -> Result<Cut, StoreError> {
        let mut inv = self.scripts.shuffle.prepare_invoke();
        for part in [
            Part::Hold,
            Part::Post,
            Part::Waiting,
            Part::Rank,
            Part::Seq,
            Part::Fair,
            Part::Concert,
            Part::Seen,
            Part::Lease,
            Part::Staged,
            Part::Joined,
        ] {
            inv.key(self.lane_key(id, lane, part));
        }
        self.outbox_keys(&mut inv, id);
        inv.arg(list_hash).arg(lease).arg(lane.as_str());
        for u in ordered {
            inv.arg(u.as_str());
        }
        let mut c = self.conn().await?;
        let reply: Vec<i64> = timed(inv.invoke_async(&mut c)).await?;
        Ok(match reply.as_slice() {
            [0] => Cut::NotLeader,
            [2] => Cut::AlreadyDone,
            [1, pre, post] => Cut::Done { prequeued: *pre as u64, after: *post as u64 },
            other => return Err(StoreError::Reply(format!("shuffle reply {other:?}"))),
        })
    }
}
