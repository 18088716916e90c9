//! Each gateway's per-concert views: what status streams and polls are answered from, so that
//! Redis work grows with the number of concerts being watched, not with the number of watchers.
//!
//! For every concert some fan watches (holds a stream, or polled in the last [`IDLE`]), one
//! refresh every `QUEUEGATE_VIEW_REFRESH_MS` does
//! * one `view.lua` call: the queue's head, last sequence number, length, observed rate and the
//!   numbers removed from the middle (only when they changed), plus the sequence numbers of
//!   fans not yet known to be queued and the poll times of fans who showed life;
//! * when fans it tracks have left the queue since the last refresh (admitted, skipped,
//!   removed), one HMGET of how they left.
//!
//! and publishes a [`Snapshot`] on a watch channel. Streams wake on it and work their fan's
//! position out locally (see [`crate::store::view`]); polls read the latest snapshot while it is
//! fresh. Anything the view cannot answer (a fan it has not met, a view older than what the fan
//! knows, a queue whose parts do not add up) is read from Redis directly, as before.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::concerts::ConcertCache;
use crate::ids::{ConcertId, Lane, UserId};
use crate::metrics::Metrics;
use crate::store::view::{Lookup, QueueView};
use crate::store::{Outcome, QueueStore, StoreError};

/// A fan nobody streams and nobody polled for this long is forgotten.
pub const IDLE: Duration = Duration::from_secs(60);

/// Fans looked up, and poll times recorded, per concert per refresh at most (the rest wait for
/// the next refresh): keeps every call small.
const MAX_PER_REFRESH: usize = 2_000;

/// A snapshot is published to the streams when the queue moved, a fan's fact changed, or at
/// least this often (the observed rate decays, so ETAs drift even when nothing moves).
const REPUBLISH: Duration = Duration::from_secs(5);

/// What this gateway knows of one fan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fact {
    /// Not in Redis yet (the join is on its way).
    NotYet,
    /// Held in the pre-queue of the concert's lane at this index until the cut at this instant (ms).
    Held(u8, i64),
    /// Waiting (or was, at the last look) in the concert's lane at this index, with this
    /// sequence number in it.
    Seq(u8, u64),
    /// Has left the queue this way.
    Left(Outcome),
}

impl Fact {
    pub fn of(lookup: &Lookup) -> Option<Fact> {
        match lookup {
            Lookup::NotYet => Some(Fact::NotYet),
            Lookup::Held(lane, at) => Some(Fact::Held(*lane, *at)),
            Lookup::Waiting(lane, s) => Some(Fact::Seq(*lane, *s)),
            Lookup::Left(o) => o.map(Fact::Left),
        }
    }
}

/// One refresh's result, as the streams and polls read it.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// One view per lane of the concert, in the order of `lanes`.
    pub views: Vec<QueueView>,
    pub lanes: Vec<Lane>,
    /// When the refresh finished (None: not refreshed yet).
    pub taken: Option<Instant>,
    /// While the concert is `soldout`: its `soldOutMessage`, "" without one (from the concert cache).
    pub sold_out: Option<Arc<str>>,
}

impl Snapshot {
    /// Redis's time now, as far as this snapshot can tell (its read plus the time since).
    pub fn now_ms(&self) -> i64 {
        self.views.first().map_or(0, |v| v.now_ms) + self.taken.map_or(0, |t| t.elapsed().as_millis() as i64)
    }
}

#[derive(Debug)]
struct Fan {
    fact: Fact,
    /// Open streams of this fan on this gateway.
    streams: u16,
    last_asked: Instant,
    /// Polled since its poll time was last sent to Redis.
    polled: bool,
    /// Polled since the last refresh.
    asked: bool,
    seen_sent: Option<Instant>,
}

/// One concert's view.
pub struct ConcertView {
    tx: watch::Sender<Arc<Snapshot>>,
    fans: Mutex<HashMap<UserId, Fan>>,
    /// The refresher's own copy (each lane's view, the lanes, when last published); only the
    /// refresh touches it.
    queue: Mutex<(Vec<QueueView>, Vec<Lane>, Instant)>,
}

impl ConcertView {
    fn new() -> Self {
        ConcertView {
            tx: watch::Sender::new(Arc::new(Snapshot::default())),
            fans: Mutex::new(HashMap::new()),
            queue: Mutex::new((Vec::new(), Vec::new(), Instant::now())),
        }
    }

    fn fans(&self) -> std::sync::MutexGuard<'_, HashMap<UserId, Fan>> {
        self.fans.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A stream's hold on its fan in a concert view; released when dropped. It holds the view
/// itself (a view with subscribers is never dropped from the map), so a stream's wake-up locks
/// only its concert's fans, not every gateway's map of views.
pub struct Watching {
    view: Arc<ConcertView>,
    user: UserId,
    pub rx: watch::Receiver<Arc<Snapshot>>,
}

impl Watching {
    /// What the view knows of the fan now.
    pub fn fact(&self) -> Option<Fact> {
        self.view.fans().get(&self.user).map(|f| f.fact)
    }
}

impl Drop for Watching {
    fn drop(&mut self) {
        if let Some(f) = self.view.fans().get_mut(&self.user) {
            f.streams = f.streams.saturating_sub(1);
            f.last_asked = Instant::now();
        }
    }
}

/// What a refresh needs of the concert's settings.
struct Settings {
    lanes: Vec<Lane>,
    /// How often a fan's poll is recorded in Redis (ms; 0: never).
    record_every: u64,
    /// While sold out: its `soldOutMessage` ("" without one).
    sold_out: Option<Arc<str>>,
}

/// Every concert view of this gateway.
pub struct Views {
    concerts: Mutex<HashMap<ConcertId, Arc<ConcertView>>>,
    refresh: Duration,
    /// Fans tracked across all views, and the most it may track.
    tracked: AtomicUsize,
    max_tracked: usize,
}

impl Views {
    pub fn new(refresh: Duration, max_tracked: usize) -> Self {
        Views { concerts: Mutex::new(HashMap::new()), refresh, tracked: AtomicUsize::new(0), max_tracked }
    }

    /// How often the views are refreshed.
    pub fn refresh_every(&self) -> Duration {
        self.refresh
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<ConcertId, Arc<ConcertView>>> {
        self.concerts.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn get(&self, concert: &ConcertId) -> Option<Arc<ConcertView>> {
        self.map().get(concert).cloned()
    }

    /// Whether a snapshot is recent enough to answer a poll: taken within two refreshes.
    fn fresh(&self, snap: &Snapshot) -> bool {
        snap.taken.is_some_and(|t| t.elapsed() < self.refresh * 2 + Duration::from_millis(250))
    }

    /// The latest fresh snapshot and what it knows of `user`, for a poll; records the poll.
    /// None when the view cannot answer (no view, not fresh, fan unknown).
    pub fn lookup(&self, concert: &ConcertId, user: &UserId) -> Option<(Arc<Snapshot>, Fact)> {
        let view = self.get(concert)?;
        let snap = view.tx.borrow().clone();
        if !self.fresh(&snap) {
            return None;
        }
        let mut fans = view.fans();
        let fan = fans.get_mut(user)?;
        fan.last_asked = Instant::now();
        fan.polled = true;
        fan.asked = true;
        Some((snap, fan.fact))
    }

    /// What the view of `concert` knows of `user`.
    pub fn fact(&self, concert: &ConcertId, user: &UserId) -> Option<Fact> {
        self.get(concert)?.fans().get(user).map(|f| f.fact)
    }

    /// Records what a direct read found out about `user` (its poll time was recorded by that
    /// read), creating the concert's view if need be; nothing when the views are full.
    pub fn learn(&self, concert: &ConcertId, user: &UserId, fact: Fact) {
        let view = {
            let mut map = self.map();
            match map.get(concert) {
                Some(v) => v.clone(),
                None if self.tracked.load(Ordering::Relaxed) < self.max_tracked => {
                    map.entry(concert.clone()).or_insert_with(|| Arc::new(ConcertView::new())).clone()
                }
                None => return,
            }
        };
        let mut fans = view.fans();
        let now = Instant::now();
        match fans.get_mut(user) {
            Some(f) => {
                f.fact = fact;
                f.last_asked = now;
            }
            None if self.tracked.load(Ordering::Relaxed) < self.max_tracked => {
                self.tracked.fetch_add(1, Ordering::Relaxed);
                fans.insert(
                    user.clone(),
                    Fan { fact, streams: 0, last_asked: now, polled: false, asked: false, seen_sent: Some(now) },
                );
            }
            None => {}
        }
    }

    /// A stream's subscription to `concert`'s view for `user` (who must have been learnt).
    pub fn watch(&self, concert: &ConcertId, user: &UserId) -> Option<Watching> {
        let view = self.get(concert)?;
        view.fans().get_mut(user)?.streams += 1;
        Some(Watching { rx: view.tx.subscribe(), view, user: user.clone() })
    }

    /// Fans tracked, concerts viewed: for metrics.
    pub fn sizes(&self) -> (usize, usize) {
        (self.tracked.load(Ordering::Relaxed), self.map().len())
    }

    /// Refreshes every view (concurrently) and forgets idle fans and empty views.
    pub async fn refresh_all(
        &self,
        store: &QueueStore,
        cache: &ConcertCache,
        metrics: &Metrics,
    ) -> Result<(), StoreError> {
        let views: Vec<(ConcertId, Arc<ConcertView>)> =
            self.map().iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        let rounds = views.iter().map(|(id, v)| {
            let settings = cache.settings(id);
            let abandon_ms = settings.as_ref().map_or(0, |s| u64::from(s.abandon_after_seconds) * 1000);
            let lanes = settings.as_ref().map_or_else(|| vec![Lane::general()], |s| s.lane_names());
            let sold_out = settings.and_then(|s| s.sold_out()).map(Arc::from);
            let now = Settings { lanes, record_every: crate::fan_status::poll_record_every(abandon_ms), sold_out };
            self.refresh_one(store, metrics, id, v, now)
        });
        let results = futures_util::future::join_all(rounds).await;
        self.map().retain(|_, v| !(v.fans().is_empty() && v.tx.receiver_count() == 0));
        results.into_iter().collect::<Result<Vec<()>, _>>().map(|_| ())
    }

    async fn refresh_one(
        &self,
        store: &QueueStore,
        metrics: &Metrics,
        concert: &ConcertId,
        view: &ConcertView,
        settings: Settings,
    ) -> Result<(), StoreError> {
        let Settings { lanes, record_every, sold_out } = settings;
        // The lanes changed (an operator's edit): lane indexes known so far mean nothing now, so
        // the fans placed are looked up again.
        let relearn = {
            let mut q = view.queue.lock().unwrap_or_else(|p| p.into_inner());
            if q.1 != lanes {
                *q = (vec![QueueView::default(); lanes.len()], lanes.clone(), q.2);
                true
            } else {
                false
            }
        };
        if relearn {
            for f in view.fans().values_mut() {
                if matches!(f.fact, Fact::Seq(..) | Fact::Held(..)) {
                    f.fact = Fact::NotYet;
                }
            }
        }
        // Who to look up and whose poll time to record, and who to forget.
        let now = Instant::now();
        let record_every = Duration::from_millis(record_every);
        let (lookups, seen) = {
            let mut fans = view.fans();
            let before = fans.len();
            fans.retain(|_, f| f.streams > 0 || now.duration_since(f.last_asked) < IDLE);
            self.tracked.fetch_sub(before - fans.len(), Ordering::Relaxed);
            let mut lookups = Vec::new();
            let mut seen = Vec::new();
            for (user, f) in fans.iter_mut() {
                // Not placed yet: on its way, or in a pre-queue until the cut.
                if matches!(f.fact, Fact::NotYet | Fact::Held(..)) && lookups.len() < MAX_PER_REFRESH {
                    lookups.push(user.clone());
                }
                let alive = f.streams > 0 || f.polled;
                let due = f.seen_sent.is_none_or(|t| now.duration_since(t) >= record_every);
                if !record_every.is_zero() && alive && due && seen.len() < MAX_PER_REFRESH {
                    seen.push(user.clone());
                    f.seen_sent = Some(now);
                    f.polled = false;
                }
            }
            (lookups, seen)
        };
        let known_vers: Vec<Option<String>> = view
            .queue
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .0
            .iter()
            .map(|v| v.gone_ver().map(str::to_owned))
            .collect();
        let asked: Vec<(&Lane, Option<&str>)> = lanes.iter().zip(&known_vers).map(|(l, v)| (l, v.as_deref())).collect();
        let started = Instant::now();
        let read = store
            .read_view(concert, &asked, &lookups.iter().collect::<Vec<_>>(), &seen.iter().collect::<Vec<_>>())
            .await?;
        metrics.redis_duration.with_label_values(&["view"]).observe(started.elapsed().as_secs_f64());
        let (queue, moved) = {
            let mut q = view.queue.lock().unwrap_or_else(|p| p.into_inner());
            let mut moved = false;
            for (v, r) in q.0.iter_mut().zip(&read.lanes) {
                let before = v.clone();
                v.update(r);
                moved |= before.head != v.head
                    || before.last_seq != v.last_seq
                    || before.queue_length != v.queue_length
                    || before.gone_ver() != v.gone_ver()
                    || (before.observed_rate - v.observed_rate).abs() > 0.02 * before.observed_rate.max(0.01);
            }
            (q.0.clone(), moved)
        };
        // What the lookups found, and who has left the queue since.
        let mut changed = false;
        let departed: Vec<UserId> = {
            let mut fans = view.fans();
            for (user, found) in lookups.iter().zip(&read.lookups) {
                if let (Some(f), Some(fact)) = (fans.get_mut(user), Fact::of(found)) {
                    changed |= f.fact != fact;
                    f.fact = fact;
                }
            }
            let mut departed: Vec<UserId> = fans
                .iter()
                .filter(|(_, f)| {
                    matches!(f.fact, Fact::Seq(l, s)
                        if queue.get(usize::from(l)).is_some_and(|q| q.place(s) == crate::store::view::Place::Left))
                })
                .map(|(u, _)| u.clone())
                .take(MAX_PER_REFRESH)
                .collect();
            // And admitted fans who asked since the last refresh: the booking site may have
            // completed them since.
            let room = MAX_PER_REFRESH - departed.len();
            departed.extend(
                fans.iter_mut()
                    .filter(|(_, f)| matches!(f.fact, Fact::Left(Outcome::Admitted { .. })) && f.asked)
                    .take(room)
                    .map(|(u, f)| {
                        f.asked = false;
                        u.clone()
                    }),
            );
            departed
        };
        if !departed.is_empty() {
            let started = Instant::now();
            let outcomes = store.outcomes(concert, &departed.iter().collect::<Vec<_>>()).await?;
            metrics.redis_duration.with_label_values(&["outcomes"]).observe(started.elapsed().as_secs_f64());
            let mut fans = view.fans();
            for (user, outcome) in departed.iter().zip(outcomes) {
                if let (Some(f), Some(o)) = (fans.get_mut(user), outcome) {
                    changed |= f.fact != Fact::Left(o);
                    f.fact = Fact::Left(o);
                }
            }
        }
        let mut last_published = view.queue.lock().unwrap_or_else(|p| p.into_inner()).2;
        // Sold out (or open again): every stream is told at once.
        changed |= view.tx.borrow().sold_out != sold_out;
        let publish = moved || changed || last_published.elapsed() >= REPUBLISH;
        if publish {
            last_published = Instant::now();
            view.queue.lock().unwrap_or_else(|p| p.into_inner()).2 = last_published;
        }
        let snap = Arc::new(Snapshot { views: queue, lanes, taken: Some(Instant::now()), sold_out });
        view.tx.send_if_modified(|s| {
            *s = snap;
            publish
        });
        Ok(())
    }
}
