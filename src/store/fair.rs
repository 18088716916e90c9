//! The fair start's Redis side: the seed and its commitment, the cut's offsets, the pre-queue,
//! and the cut itself (cut.lua), in bounded steps. See [`crate::fairness`] for the order and its
//! proof.

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
    /// When the cut began (ms): the pre-queue is frozen from then on.
    pub cut_at_ms: Option<i64>,
    /// How many of the pre-queue the cut in progress has queued.
    pub cut_moved: u64,
    /// Records accepted before opensAt that reached Redis after the cut (queued at the tail).
    pub late: u64,
}

/// Fans one slice of the cut queues at most (cut.lua's SLICE), and fans of `post` one step stages.
pub const CUT_SLICE: usize = 500;
/// The COUNT of each HSCAN page when the pre-queue is read.
const SCAN_PAGE: usize = 1000;

/// What the cut ([`QueueStore::cut`]) did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cut {
    /// The lease is (or passed to) another instance's: it stopped, after a whole step.
    NotLeader,
    /// Done before (by this or another instance).
    AlreadyDone,
    /// Done now (finished by this call, maybe begun by another instance): this many fans from
    /// the pre-queue, then this many who joined after opensAt staged; `calls` Redis calls made.
    Done { prequeued: u64, after: u64, calls: u64 },
}

/// One step of the cut (cut.lua), as a step answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CutStep {
    /// The lease is not the caller's: nothing written.
    NotLeader,
    /// The cut was done already: nothing written.
    AlreadyDone,
    /// `begin`: the pre-queue is frozen; `held` fans in `hold` (post included), `post` of them
    /// joined at or after opensAt, `moved` queued so far, `prequeued` once committed.
    Begun { held: u64, post: u64, moved: u64, prequeued: Option<u64> },
    /// `post`: this many staged now, `left` still in `post`.
    Staged { staged: u64, left: u64 },
    /// `commit`: the pre-queue's size as recorded, and how many are queued already.
    Committed { prequeued: u64, moved: u64 },
    /// `slice`: `moved` of `prequeued` queued so far.
    Moved { moved: u64, prequeued: u64 },
    /// The last slice: the cut is done.
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
            cut_at_ms: get("cutAt").and_then(|v| v.parse().ok()),
            cut_moved: get("cutMoved").and_then(|v| v.parse().ok()).unwrap_or(0),
            late: get("late").and_then(|v| v.parse().ok()).unwrap_or(0),
        })
    }

    /// The lane's held fans (`hold`), read in pages of [`SCAN_PAGE`] (HSCAN: bounded work per
    /// call whatever the pre-queue's size), each once. Complete only while `hold` does not
    /// change during the read: once the cut has begun, only its own steps change it.
    pub async fn held(&self, id: &ConcertId, lane: &Lane) -> Result<Vec<String>, StoreError> {
        Ok(self.held_counted(id, lane).await?.0)
    }

    /// [`Self::held`] and how many calls it made.
    async fn held_counted(&self, id: &ConcertId, lane: &Lane) -> Result<(Vec<String>, u64), StoreError> {
        let key = self.lane_key(id, lane, Part::Hold);
        let mut c = self.conn().await?;
        let mut seen = std::collections::HashSet::new();
        let mut held = Vec::new();
        let (mut cursor, mut calls) = (0u64, 0u64);
        loop {
            let (next, page): (u64, Vec<String>) =
                timed(redis::cmd("HSCAN").arg(&key).arg(cursor).arg("COUNT").arg(SCAN_PAGE).query_async(&mut c))
                    .await?;
            calls += 1;
            // Fields and values alternate; a field may come twice (HSCAN's guarantee is "at least once").
            for user in page.into_iter().step_by(2) {
                if seen.insert(user.clone()) {
                    held.push(user);
                }
            }
            if next == 0 {
                return Ok((held, calls));
            }
            cursor = next;
        }
    }

    /// One step of the cut (cut.lua) with its arguments after the step, lease and lane.
    async fn cut_call(
        &self,
        id: &ConcertId,
        lane: &Lane,
        step: &str,
        lease: &str,
        args: &[&str],
    ) -> Result<Vec<i64>, StoreError> {
        let mut inv = self.scripts.cut.prepare_invoke();
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
        inv.arg(step).arg(lease).arg(lane.as_str());
        for a in args {
            inv.arg(*a);
        }
        let mut c = self.conn().await?;
        timed(inv.invoke_async(&mut c)).await
    }

    /// The cut's first step: freezes the pre-queue (from now on new fans are staged, behind it).
    pub async fn cut_begin(&self, id: &ConcertId, lane: &Lane, lease: &str) -> Result<CutStep, StoreError> {
        let r = self.cut_call(id, lane, "begin", lease, &[]).await?;
        CutStep::parse(&r, |r| match r {
            [1, held, post, moved, n] => Some(CutStep::Begun {
                held: *held as u64,
                post: *post as u64,
                moved: *moved as u64,
                prequeued: (*n >= 0).then_some(*n as u64),
            }),
            _ => None,
        })
    }

    /// Stages the next at most [`CUT_SLICE`] fans who joined at or after opensAt before the cut.
    pub async fn cut_stage_post(&self, id: &ConcertId, lane: &Lane, lease: &str) -> Result<CutStep, StoreError> {
        let r = self.cut_call(id, lane, "post", lease, &[]).await?;
        CutStep::parse(&r, |r| match r {
            [1, staged, left] => Some(CutStep::Staged { staged: *staged as u64, left: *left as u64 }),
            _ => None,
        })
    }

    /// Records the pre-queue's list hash and size (`post` all staged, so `hold` is the pre-queue):
    /// once; a later commit answers what was recorded.
    pub async fn cut_commit(
        &self,
        id: &ConcertId,
        lane: &Lane,
        list_hash: &str,
        n: u64,
        lease: &str,
    ) -> Result<CutStep, StoreError> {
        let r = self.cut_call(id, lane, "commit", lease, &[list_hash, &n.to_string()]).await?;
        CutStep::parse(&r, |r| match r {
            [1, n, moved] => Some(CutStep::Committed { prequeued: *n as u64, moved: *moved as u64 }),
            _ => None,
        })
    }

    /// Queues the next slice of the pre-queue (at most [`CUT_SLICE`] fans, in the seed's order),
    /// `moved` being how many the cut queued before it.
    pub async fn cut_slice(
        &self,
        id: &ConcertId,
        lane: &Lane,
        moved: u64,
        users: &[String],
        lease: &str,
    ) -> Result<CutStep, StoreError> {
        let moved = moved.to_string();
        let mut args: Vec<&str> = Vec::with_capacity(users.len() + 1);
        args.push(&moved);
        args.extend(users.iter().map(String::as_str));
        let r = self.cut_call(id, lane, "slice", lease, &args).await?;
        CutStep::parse(&r, |r| match r {
            [1, moved, n] => Some(CutStep::Moved { moved: *moved as u64, prequeued: *n as u64 }),
            [3, n, post] => Some(CutStep::Done { prequeued: *n as u64, after: *post as u64 }),
            _ => None,
        })
    }

    /// The whole cut, as the admitter of `instance` runs it (docs/explain-guarantees.md, "The fair
    /// start"), in bounded calls: takes the lease (renewed every third of `lease_ms`), begins,
    /// stages `post` slice by slice, reads the pre-queue (HSCAN pages), records its hash, then
    /// queues it in the seed's order slice by slice. Resumes a cut another instance left: the
    /// fans still held, in the seed's order, are the rest of the order (it is a fixed order over
    /// userIds, so a subset keeps its relative order), and `cutMoved` says where it stopped.
    /// Stops with [`Cut::NotLeader`] as soon as the lease is another's.
    pub async fn cut(
        &self,
        id: &ConcertId,
        lane: &Lane,
        seed: &str,
        instance: &str,
        lease_ms: u64,
    ) -> Result<Cut, StoreError> {
        let Some(lease) = self.lease(id, instance, lease_ms).await? else { return Ok(Cut::NotLeader) };
        let mut calls = 1u64;
        let renew_every = std::time::Duration::from_millis(lease_ms / 3);
        let mut renewed = std::time::Instant::now();
        let (mut moved, mut prequeued) = match self.cut_begin(id, lane, &lease).await? {
            CutStep::Begun { moved, prequeued, .. } => (moved, prequeued),
            other => return other.ended(),
        };
        calls += 1;
        loop {
            calls += 1;
            match self.cut_stage_post(id, lane, &lease).await? {
                CutStep::Staged { left: 0, .. } => break,
                CutStep::Staged { .. } => {}
                other => return other.ended(),
            }
        }
        let (mut held, pages) = self.held_counted(id, lane).await?;
        calls += pages;
        if prequeued.is_none() {
            calls += 1;
            let n = held.len() as u64;
            match self.cut_commit(id, lane, &crate::fairness::list_hash(&held), n, &lease).await? {
                CutStep::Committed { prequeued: p, moved: m } => {
                    if (p, m) != (n, 0) {
                        // Recorded by another instance, which may have queued some since our read.
                        let (again, pages) = self.held_counted(id, lane).await?;
                        calls += pages;
                        held = again;
                    }
                    (prequeued, moved) = (Some(p), m);
                }
                other => return other.ended(),
            }
        }
        let n = prequeued.unwrap_or_default();
        if held.len() as u64 + moved != n {
            return Err(StoreError::Reply(format!(
                "the cut of {n} fans has queued {moved}, and {} are held",
                held.len()
            )));
        }
        // About a second per million fans: off the async workers, which serve everything else.
        let seed_owned = seed.to_owned();
        let ordered = tokio::task::spawn_blocking(move || crate::fairness::order(&seed_owned, &held))
            .await
            .map_err(|e| StoreError::Reply(format!("ordering the pre-queue: {e}")))?
            .ok_or_else(|| StoreError::Reply("seed is not hex".into()))?;
        let empty: [String; 0] = [];
        let mut slices = ordered.chunks(CUT_SLICE).collect::<Vec<_>>();
        if slices.is_empty() {
            slices.push(&empty);
        }
        for slice in slices {
            if renewed.elapsed() >= renew_every {
                calls += 1;
                if self.lease(id, instance, lease_ms).await?.as_deref() != Some(lease.as_str()) {
                    return Ok(Cut::NotLeader);
                }
                renewed = std::time::Instant::now();
            }
            calls += 1;
            match self.cut_slice(id, lane, moved, slice, &lease).await? {
                CutStep::Moved { moved: m, .. } => moved = m,
                CutStep::Done { prequeued, after } => return Ok(Cut::Done { prequeued, after, calls }),
                other => return other.ended(),
            }
        }
        Err(StoreError::Reply(format!("the cut queued {moved} of {n} fans and did not finish")))
    }
}

impl CutStep {
    /// A step's reply: {0} and {2} for every step, the rest by `f`.
    fn parse(r: &[i64], f: impl Fn(&[i64]) -> Option<CutStep>) -> Result<CutStep, StoreError> {
        match r {
            [0] => Ok(CutStep::NotLeader),
            [2] => Ok(CutStep::AlreadyDone),
            _ => f(r).ok_or_else(|| StoreError::Reply(format!("cut reply {r:?}"))),
        }
    }

    /// What the driver returns when a step answered `self` instead of going on.
    fn ended(self) -> Result<Cut, StoreError> {
        match self {
            CutStep::NotLeader => Ok(Cut::NotLeader),
            CutStep::AlreadyDone => Ok(Cut::AlreadyDone),
            other => Err(StoreError::Reply(format!("unexpected cut step {other:?}"))),
        }
    }
}
