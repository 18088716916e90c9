//! Gate sessions in Redis (see src/gateway/gate_check.rs for the flow).
//!
//! A session lives in the concert's `active` ZSET, the same set that holds unexchanged admission
//! tokens, scored by when its slot frees itself: so `maxActive` counts live sessions plus
//! unexchanged tokens with no second bookkeeping, and admission refills a slot the moment a
//! session ends. Its details are in `sessions` (userId → `sid:startedAt:lastSeen:maxAt`);
//! ended sessions are listed in `ended` (sid → when), where the gateways learn of them.

use redis::Script;

use super::conn::timed;
use super::keys::Part;
use super::{QueueStore, StoreError};
use crate::ids::{ConcertId, UserId};

pub(super) struct Scripts {
    exchange: Script,
    enter: Script,
    touch: Script,
    sweep: Script,
    end: Script,
    revoke: Script,
    revoke_slice: Script,
    news: Script,
}

impl Scripts {
    pub(super) fn new(outbox_max: u64) -> Self {
        Scripts {
            exchange: super::with_outbox(outbox_max, &[include_str!("exchange.lua")]),
            enter: super::with_outbox(outbox_max, &[include_str!("slots.lua"), include_str!("enter.lua")]),
            touch: Script::new(include_str!("touch.lua")),
            sweep: super::with_outbox(outbox_max, &[include_str!("slots.lua"), include_str!("sweep.lua")]),
            end: super::with_outbox(outbox_max, &[include_str!("end_session.lua")]),
            revoke: Script::new(include_str!("revoke.lua")),
            revoke_slice: super::with_outbox(outbox_max, &[include_str!("revoke_slice.lua")]),
            news: Script::new(include_str!("gate_news.lua")),
        }
    }
}

/// `sweep.lua` calls one [`QueueStore::sweep_sessions`] makes at most (each frees at most
/// 500 due slots, slots.lua).
pub const SWEEP_SLICES: usize = 40;

/// What the exchange of an admission token asks.
#[derive(Debug, Clone, Copy)]
pub struct ExchangeRequest<'a> {
    pub user: &'a UserId,
    pub jti: &'a str,
    pub iat_ms: i64,
    pub exp_ms: i64,
    pub idle_ms: i64,
    pub max_ms: i64,
    pub sid: &'a str,
}

/// A session just started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Started {
    pub started_ms: i64,
    pub max_at_ms: i64,
    pub epoch: u64,
    /// When the slot frees itself unless a gate check comes (idle deadline, or the maximum).
    pub deadline_ms: i64,
}

/// Why a token was not exchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    Revoked,
    Spent,
    Completed,
    NotAdmitted,
    Ended,
}

impl Refused {
    pub fn as_str(self) -> &'static str {
        match self {
            Refused::Revoked => "revoked",
            Refused::Spent => "spent",
            Refused::Completed => "completed",
            Refused::NotAdmitted => "not-admitted",
            Refused::Ended => "ended",
        }
    }
}

/// What one `enter.lua` call did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entered {
    pub outcome: Result<Started, Direct>,
    /// Sessions it ended on the way (due slots freed first), for idleness and at their maximum.
    pub ended_idle: u64,
    pub ended_max: u64,
}

/// Why standby did not let a visitor straight in (`enter.lua`): each sends the visitor to the room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direct {
    /// Not open, not `standby`, `queueAll`, or before `opensAt`.
    Closed,
    /// Someone is staged, queued or held in a lane.
    Waiting,
    /// A visitor was sent to the room moments ago and may not be in the queue yet.
    Settling,
    /// Every `maxActive` slot is in use.
    Full,
    /// `admitPerSecond`'s budget is spent.
    Rate,
}

impl Direct {
    pub fn as_str(self) -> &'static str {
        match self {
            Direct::Closed => "closed",
            Direct::Waiting => "waiting",
            Direct::Settling => "settling",
            Direct::Full => "full",
            Direct::Rate => "rate",
        }
    }
}

/// One live session, as the admin listing shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub user: UserId,
    pub sid: String,
    pub started_ms: i64,
    pub last_seen_ms: i64,
    pub max_at_ms: i64,
}

/// What a gateway learns in one look: the revocation epoch, Redis's time, sessions ended since.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GateNews {
    pub epoch: u64,
    pub now_ms: i64,
    pub ended: Vec<String>,
    /// Where the next page starts when this one did not reach the newest (see [`NewsCursor`]).
    pub more: Option<NewsCursor>,
}

/// Where a look at a concert's ended sessions starts: sessions ended at `since_ms` or later,
/// skipping the first `skip` of those ended at exactly `since_ms` (a page already returned
/// them; many sessions end in the same millisecond when an operator revokes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NewsCursor {
    pub since_ms: i64,
    pub skip: u64,
}

/// The most set-aside slots one `revoke_slice.lua` call ends.
pub const REVOKE_SLICE: u64 = 1_000;

/// What one slice of a revocation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RevokeSlice {
    pub sessions: u64,
    pub tokens: u64,
    /// Slots are still set aside: call again.
    pub more: bool,
}

/// The most ended sessions one `gate_news` call returns (a bounded Redis call, well under a
/// millisecond); a gateway reads a burst in pages ([`crate::gate::Gate::learn`]).
pub const NEWS_PAGE: usize = 1_000;

fn text(v: &redis::Value) -> Result<String, StoreError> {
    redis::from_redis_value_ref(v).map_err(|e| StoreError::Reply(e.to_string()))
}

fn int(v: &redis::Value) -> Result<i64, StoreError> {
    redis::from_redis_value_ref(v).map_err(|e| StoreError::Reply(e.to_string()))
}

/// A reply `{1, sid, startedAt, maxAt, epoch, deadline}` (a session started: exchange.lua,
/// enter.lua) or `{0, why}`.
fn started_or_why(reply: &[redis::Value], script: &str) -> Result<Result<Started, String>, StoreError> {
    let at = |i: usize| reply.get(i).ok_or_else(|| StoreError::Reply(format!("{script} reply too short: {reply:?}")));
    if int(at(0)?)? == 1 {
        return Ok(Ok(Started {
            started_ms: int(at(2)?)?,
            max_at_ms: int(at(3)?)?,
            epoch: int(at(4)?)? as u64,
            deadline_ms: int(at(5)?)?,
        }));
    }
    Ok(Err(text(at(1)?)?))
}

impl QueueStore {
    /// Exchanges an admission token (already verified: signature, expiry, concert) for a
    /// session, once (`exchange.lua`).
    pub async fn exchange(
        &self,
        concert: &ConcertId,
        req: ExchangeRequest<'_>,
    ) -> Result<Result<Started, Refused>, StoreError> {
        let mut inv = self.scripts.sessions.exchange.prepare_invoke();
        for part in [Part::State, Part::Active, Part::Sessions, Part::Spent, Part::Gate] {
            inv.key(self.key(concert, part));
        }
        self.outbox_keys(&mut inv, concert);
        inv.arg(req.user.as_str())
            .arg(req.jti)
            .arg(req.iat_ms)
            .arg(req.exp_ms)
            .arg(req.idle_ms)
            .arg(req.max_ms)
            .arg(req.sid);
        let mut c = self.conn().await?;
        let reply: Vec<redis::Value> = timed(inv.invoke_async(&mut c)).await?;
        Ok(started_or_why(&reply, "exchange")?.map_err(|why| match why.as_str() {
            "revoked" => Refused::Revoked,
            "spent" => Refused::Spent,
            "completed" => Refused::Completed,
            "ended" => Refused::Ended,
            _ => Refused::NotAdmitted,
        }))
    }

    /// Standby's direct entry (`enter.lua`): a session at once for a visitor of `concert`
    /// (`user`, new), or why not ([`Direct`]); with the sessions the call ended on the way (it
    /// frees due slots first). `lanes`: the concert's lanes, all of which must be empty.
    pub async fn enter(
        &self,
        concert: &ConcertId,
        lanes: &[crate::ids::Lane],
        user: &UserId,
        sid: &str,
        idle_ms: i64,
        max_ms: i64,
    ) -> Result<Entered, StoreError> {
        let mut inv = self.scripts.sessions.enter.prepare_invoke();
        for part in [Part::Concert, Part::Active, Part::Sessions, Part::Ended, Part::Adm, Part::Gate] {
            inv.key(self.key(concert, part));
        }
        self.outbox_keys(&mut inv, concert);
        for lane in lanes {
            for part in [Part::Rank, Part::Hold, Part::Staged] {
                inv.key(self.lane_key(concert, lane, part));
            }
        }
        inv.arg(user.as_str()).arg(sid).arg(idle_ms).arg(max_ms);
        let mut c = self.conn().await?;
        let reply: Vec<redis::Value> = timed(inv.invoke_async(&mut c)).await?;
        let count = |i: usize| reply.get(i).map_or(Ok(0), int).map(|n| n.max(0) as u64);
        let (ended_idle, ended_max) = match reply.len() {
            8 => (count(6)?, count(7)?),
            4 => (count(2)?, count(3)?),
            _ => (0, 0),
        };
        let outcome = started_or_why(&reply, "enter")?.map_err(|why| match why.as_str() {
            "waiting" => Direct::Waiting,
            "settling" => Direct::Settling,
            "full" => Direct::Full,
            "rate" => Direct::Rate,
            _ => Direct::Closed,
        });
        Ok(Entered { outcome, ended_idle, ended_max })
    }

    /// A gate check of a live session (`touch.lua`): the slot's new deadline, or None when the
    /// session has ended.
    /// `age_ms`: how long ago the check being recorded was made (0: now).
    pub async fn touch(
        &self,
        concert: &ConcertId,
        user: &UserId,
        sid: &str,
        idle_ms: i64,
        age_ms: i64,
    ) -> Result<Option<i64>, StoreError> {
        let mut inv = self.scripts.sessions.touch.prepare_invoke();
        inv.key(self.key(concert, Part::Active)).key(self.key(concert, Part::Sessions));
        inv.arg(user.as_str()).arg(sid).arg(idle_ms).arg(age_ms);
        let reply: Vec<i64> = self.backend.shared(async |c| timed(inv.invoke_async(c)).await).await?;
        Ok(match reply.as_slice() {
            [1, deadline] => Some(*deadline),
            _ => None,
        })
    }

    /// Ends the sessions whose deadline passed and frees expired tokens' slots (`sweep.lua`):
    /// (ended for idleness, ended at their maximum).
    ///
    /// Each `sweep.lua` call frees one bounded slice (at most 500 slots, slots.lua), so no
    /// Redis call grows with the backlog; this calls again while slots are still due, up to
    /// [`SWEEP_SLICES`] calls (20,000 slots) per admission round. A bigger backlog (a stalled
    /// admitter, a burst of short tokens) drains over the next rounds, 20,000 a round.
    pub async fn sweep_sessions(&self, concert: &ConcertId, remember_ms: i64) -> Result<(u64, u64), StoreError> {
        let mut inv = self.scripts.sessions.sweep.prepare_invoke();
        inv.key(self.key(concert, Part::Active))
            .key(self.key(concert, Part::Sessions))
            .key(self.key(concert, Part::Ended));
        self.outbox_keys(&mut inv, concert);
        inv.arg(remember_ms);
        let mut c = self.conn().await?;
        let (mut idle, mut max) = (0, 0);
        for _ in 0..SWEEP_SLICES {
            let (i, m, more): (u64, u64, u8) = timed(inv.invoke_async(&mut c)).await?;
            idle += i;
            max += m;
            if more == 0 {
                break;
            }
        }
        Ok((idle, max))
    }

    /// Ends one fan's session (an operator); false when the fan had none.
    pub async fn end_session(&self, concert: &ConcertId, user: &UserId) -> Result<bool, StoreError> {
        let mut inv = self.scripts.sessions.end.prepare_invoke();
        inv.key(self.key(concert, Part::Active))
            .key(self.key(concert, Part::Sessions))
            .key(self.key(concert, Part::Ended));
        self.outbox_keys(&mut inv, concert);
        inv.arg(user.as_str());
        let mut c = self.conn().await?;
        let ended: i64 = timed(inv.invoke_async(&mut c)).await?;
        Ok(ended == 1)
    }

    /// The emergency stop: (sessions ended, unexchanged tokens revoked). Every token issued
    /// before now and every session of an earlier epoch is refused at once (`revoke.lua`, O(1));
    /// the sessions and tokens set aside are then ended in slices of at most 1,000 a call
    /// (`revoke_slice.lua`), so a revocation of any size never holds Redis for long. An
    /// earlier revocation still being ended (its caller gone mid-way) is finished first.
    pub async fn revoke_sessions(&self, concert: &ConcertId) -> Result<(u64, u64), StoreError> {
        let (mut sessions, mut tokens) = (0, 0);
        loop {
            let set_aside = self.revoke_start(concert).await?;
            loop {
                let slice = self.revoke_slice(concert).await?;
                sessions += slice.sessions;
                tokens += slice.tokens;
                if !slice.more {
                    break;
                }
            }
            if set_aside {
                return Ok((sessions, tokens));
            }
        }
    }

    /// `revoke.lua`: refuses what was issued before now and sets the live slots aside; false
    /// when an earlier revocation's slots are still set aside (end them, then call again).
    pub async fn revoke_start(&self, concert: &ConcertId) -> Result<bool, StoreError> {
        let mut inv = self.scripts.sessions.revoke.prepare_invoke();
        for part in [Part::Active, Part::Sessions, Part::Gate, Part::Revoking, Part::RevokingSessions] {
            inv.key(self.key(concert, part));
        }
        let mut c = self.conn().await?;
        let done: i64 = timed(inv.invoke_async(&mut c)).await?;
        Ok(done == 1)
    }

    /// `revoke_slice.lua`: ends at most [`REVOKE_SLICE`] of the slots a revocation set aside.
    pub async fn revoke_slice(&self, concert: &ConcertId) -> Result<RevokeSlice, StoreError> {
        let mut inv = self.scripts.sessions.revoke_slice.prepare_invoke();
        for part in [Part::Revoking, Part::RevokingSessions, Part::Ended] {
            inv.key(self.key(concert, part));
        }
        self.outbox_keys(&mut inv, concert);
        let mut c = self.conn().await?;
        let (sessions, tokens, more): (u64, u64, i64) = timed(inv.invoke_async(&mut c)).await?;
        Ok(RevokeSlice { sessions, tokens, more: more == 1 })
    }

    /// The revocation epoch and one page (at most `page` sids, oldest first) of the sessions
    /// ended from `from` on (`gate_news.lua`).
    pub async fn gate_news(&self, concert: &ConcertId, from: NewsCursor, page: usize) -> Result<GateNews, StoreError> {
        let mut inv = self.scripts.sessions.news.prepare_invoke();
        inv.key(self.key(concert, Part::Gate))
            .key(self.key(concert, Part::Ended))
            .arg(from.since_ms)
            .arg(from.skip)
            .arg(page.max(1));
        let reply: Vec<redis::Value> = self.backend.shared(async |c| timed(inv.invoke_async(c)).await).await?;
        let mut it = reply.iter();
        let (Some(epoch), Some(now), Some(next), Some(skip)) = (it.next(), it.next(), it.next(), it.next()) else {
            return Err(StoreError::Reply("gate news reply too short".into()));
        };
        let next = int(next)?;
        let more = (next >= 0).then(|| NewsCursor { since_ms: next, skip: int(skip).unwrap_or(0).max(0) as u64 });
        Ok(GateNews {
            epoch: int(epoch)? as u64,
            now_ms: int(now)?,
            ended: it.map(text).collect::<Result<_, _>>()?,
            more,
        })
    }

    /// Live sessions, oldest first: (total, one page). An operator's read: the sessions hash
    /// is read with HSCAN, at most about 1,000 fields a call (never one HGETALL of up to
    /// `maxActive` of them), and sorted here.
    pub async fn sessions(
        &self,
        concert: &ConcertId,
        offset: usize,
        limit: usize,
    ) -> Result<(usize, Vec<Session>), StoreError> {
        let mut c = self.conn().await?;
        let key = self.key(concert, Part::Sessions);
        let mut all: Vec<(String, String)> = Vec::new();
        let mut cursor = 0_u64;
        loop {
            let (next, page): (u64, Vec<(String, String)>) =
                timed(redis::cmd("HSCAN").arg(&key).arg(cursor).arg("COUNT").arg(1000).query_async(&mut c)).await?;
            all.extend(page);
            if next == 0 {
                break;
            }
            cursor = next;
        }
        // HSCAN may return a field twice (the hash grew meanwhile): once each.
        all.sort_unstable();
        all.dedup_by(|a, b| a.0 == b.0);
        let mut sessions: Vec<Session> = all
            .into_iter()
            .filter_map(|(user, v)| {
                let mut f = v.split(':');
                let sid = f.next()?.to_owned();
                let (started_ms, last_seen_ms, max_at_ms) =
                    (f.next()?.parse().ok()?, f.next()?.parse().ok()?, f.next()?.parse().ok()?);
                Some(Session { user: UserId::parse(user).ok()?, sid, started_ms, last_seen_ms, max_at_ms })
            })
            .collect();
        sessions.sort_by(|a, b| (a.started_ms, a.user.as_str()).cmp(&(b.started_ms, b.user.as_str())));
        let total = sessions.len();
        Ok((total, sessions.into_iter().skip(offset).take(limit).collect()))
    }

    /// How many live sessions the concert has: O(1).
    pub async fn session_count(&self, concert: &ConcertId) -> Result<u64, StoreError> {
        let mut c = self.conn().await?;
        timed(redis::cmd("HLEN").arg(self.key(concert, Part::Sessions)).query_async(&mut c)).await
    }
}
