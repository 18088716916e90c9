//! What one gateway knows about sessions, so a gate check for a live session asks Redis nothing:
//! each concert's revocation epoch and recently ended sessions (learned every second), and for
//! each session it has seen, when it last wrote the session's last-seen time and when it last
//! checked it. Checks between writes are written later, with their age ([`Known::due`]), so a
//! session's idle time counts from its real last check while each gateway still writes a
//! session at most once per tenth of its idle time.
//!
//! Ended sessions are remembered for the concert's `sessionMaxSeconds` from when this gateway
//! learned of them (a session ended by then started before, so its cookie's `maxAt` — past
//! which the cookie is refused unread — is at most that far away), and at most
//! [`MAX_ENDED_PER_CONCERT`] per concert, the oldest forgotten first. Forgetting early is safe:
//! a forgotten sid is not [`Verdict::Ended`] but [`Verdict::Ask`], and Redis (touch.lua) answers
//! that it ended, which is remembered again. Only the saving of that Redis call is lost.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::Mutex;

use crate::ids::{ConcertId, UserId};
use crate::store::sessions::NewsCursor;

/// How long an ended session is remembered while the concert's `sessionMaxSeconds` is not
/// known here yet (the largest it may be: a day).
const REMEMBER_UNKNOWN_MS: i64 = 86_400_000;

/// The most ended sessions one gateway remembers per concert (about 100 bytes each: 10 MB at
/// most per concert); past it, the oldest learned are forgotten.
pub const MAX_ENDED_PER_CONCERT: usize = 100_000;

#[derive(Default)]
struct ConcertNews {
    epoch: u64,
    /// sid → when this gateway learned it ended (ms).
    ended: HashMap<Arc<str>, i64>,
    /// The same sids in the order learned (oldest first): what expiry and the cap forget first.
    order: VecDeque<(i64, Arc<str>)>,
    /// The concert's `sessionMaxSeconds` (ms), once told ([`Known::learn`]).
    session_max_ms: Option<i64>,
    /// Redis's time of the last look that reached the newest: the next asks from a little
    /// before it.
    since_ms: Option<i64>,
    /// Where the next page starts while a burst of ended sessions is being read in pages.
    cursor: Option<NewsCursor>,
}

impl ConcertNews {
    fn remember_ms(&self) -> i64 {
        self.session_max_ms.unwrap_or(REMEMBER_UNKNOWN_MS)
    }

    /// Remembers `sid` as ended, learned at `now_ms` (kept at its first learning).
    fn remember(&mut self, sid: &str, now_ms: i64) {
        if self.ended.contains_key(sid) {
            return;
        }
        let sid: Arc<str> = sid.into();
        self.ended.insert(sid.clone(), now_ms);
        self.order.push_back((now_ms, sid));
        self.forget(now_ms);
    }

    /// Forgets the sessions learned `sessionMaxSeconds` ago or earlier, then the oldest past
    /// the cap.
    fn forget(&mut self, now_ms: i64) {
        let keep_ms = self.remember_ms();
        while let Some((at, sid)) = self.order.front() {
            if now_ms - *at < keep_ms && self.order.len() <= MAX_ENDED_PER_CONCERT {
                break;
            }
            self.ended.remove(sid);
            self.order.pop_front();
        }
    }
}

/// A session this gateway has seen.
struct Seen {
    /// When this gateway last wrote its last-seen time (ms).
    written_ms: i64,
    /// When this gateway last checked it (ms).
    checked_ms: i64,
    concert: ConcertId,
    user: UserId,
    idle_ms: i64,
}

/// A check to write now: the session and how long ago it was checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Due {
    pub concert: ConcertId,
    pub user: UserId,
    pub sid: String,
    pub idle_ms: i64,
    pub age_ms: i64,
}

/// One gateway's knowledge of sessions.
#[derive(Default)]
pub struct Known {
    concerts: Mutex<HashMap<ConcertId, ConcertNews>>,
    /// sid → what this gateway wrote and saw of it.
    touched: Mutex<HashMap<String, Seen>>,
}

/// What this gateway knows of one session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Ended (or revoked): refuse without asking.
    Ended,
    /// Live, and its last-seen time was written recently: nothing to ask or write.
    Fresh,
    /// Not known to be ended, but not written lately (or never through this gateway): ask Redis
    /// (which also records the fan as seen).
    Ask,
}

impl Known {
    /// Judges a session from memory. `write_every_ms` is a tenth of the concert's idle time.
    pub fn judge(&self, concert: &ConcertId, sid: &str, epoch: u64, now_ms: i64, write_every_ms: i64) -> Verdict {
        if let Some(news) = self.concerts.lock().expect("never poisoned").get(concert) {
            if epoch < news.epoch || news.ended.contains_key(sid) {
                return Verdict::Ended;
            }
        }
        match self.touched.lock().expect("never poisoned").get_mut(sid) {
            Some(seen) if now_ms - seen.written_ms < write_every_ms => {
                seen.checked_ms = now_ms;
                Verdict::Fresh
            }
            // This check writes: the checks that arrive while it is in flight need not.
            Some(seen) => {
                (seen.written_ms, seen.checked_ms) = (now_ms, now_ms);
                Verdict::Ask
            }
            None => Verdict::Ask,
        }
    }

    /// Redis said the session lives (its last-seen time was just written, as of `now_ms`).
    pub fn touched(&self, concert: &ConcertId, user: &UserId, sid: &str, idle_ms: i64, now_ms: i64) {
        let seen =
            Seen { written_ms: now_ms, checked_ms: now_ms, concert: concert.clone(), user: user.clone(), idle_ms };
        self.touched.lock().expect("never poisoned").insert(sid.to_owned(), seen);
    }

    /// Checks made since a session's last write, once that write is a tenth of its idle time
    /// old: each is marked written (as of now) and returned, to be written with its age.
    pub fn due(&self, now_ms: i64) -> Vec<Due> {
        let mut out = Vec::new();
        for (sid, s) in self.touched.lock().expect("never poisoned").iter_mut() {
            if s.checked_ms > s.written_ms && now_ms - s.written_ms >= (s.idle_ms / 10).max(1) {
                out.push(Due {
                    concert: s.concert.clone(),
                    user: s.user.clone(),
                    sid: sid.clone(),
                    idle_ms: s.idle_ms,
                    age_ms: now_ms - s.checked_ms,
                });
                s.written_ms = now_ms;
            }
        }
        out
    }

    /// Redis said the session has ended.
    pub fn ended(&self, concert: &ConcertId, sid: &str, now_ms: i64) {
        self.touched.lock().expect("never poisoned").remove(sid);
        self.concerts.lock().expect("never poisoned").entry(concert.clone()).or_default().remember(sid, now_ms);
    }

    /// Where to ask the next news of `concert` from: the next page while a burst is being read,
    /// else Redis's time of the last look with 2 s of overlap, so a session ended while the last
    /// look was in flight is not missed.
    pub fn since(&self, concert: &ConcertId) -> NewsCursor {
        let concerts = self.concerts.lock().expect("never poisoned");
        let n = concerts.get(concert);
        n.and_then(|n| n.cursor)
            .unwrap_or(NewsCursor { since_ms: n.and_then(|n| n.since_ms).map_or(0, |s| s - 2_000), skip: 0 })
    }

    /// Takes in one look (one page) at a concert's news, and the concert's `sessionMaxSeconds`
    /// (ms): how long its ended sessions are remembered. True when there is a next page.
    pub fn learn(
        &self,
        concert: &ConcertId,
        news: crate::store::sessions::GateNews,
        session_max_ms: i64,
        now_ms: i64,
    ) -> bool {
        let mut touched = self.touched.lock().expect("never poisoned");
        for sid in &news.ended {
            touched.remove(sid);
        }
        drop(touched);
        let mut concerts = self.concerts.lock().expect("never poisoned");
        let n = concerts.entry(concert.clone()).or_default();
        n.epoch = n.epoch.max(news.epoch);
        n.cursor = news.more;
        if news.more.is_none() {
            n.since_ms = Some(news.now_ms);
        }
        n.session_max_ms = Some(session_max_ms.max(1));
        for sid in &news.ended {
            n.remember(sid, now_ms);
        }
        n.forget(now_ms);
        news.more.is_some()
    }

    /// Forgets ended sessions past their concert's `sessionMaxSeconds` (and the cap), and
    /// last-seen writes of sessions unchecked for as long (they cannot be live any more).
    pub fn prune(&self, now_ms: i64) {
        let mut concerts = self.concerts.lock().expect("never poisoned");
        let mut max_ms: HashMap<ConcertId, i64> = HashMap::with_capacity(concerts.len());
        for (id, n) in concerts.iter_mut() {
            n.forget(now_ms);
            max_ms.insert(id.clone(), n.remember_ms());
        }
        drop(concerts);
        self.touched
            .lock()
            .expect("never poisoned")
            .retain(|_, s| now_ms - s.checked_ms < max_ms.get(&s.concert).copied().unwrap_or(REMEMBER_UNKNOWN_MS));
    }

    /// Ended sessions this gateway remembers, all concerts together (the
    /// `queuegate_gate_ended_sessions_remembered` gauge).
    pub fn ended_count(&self) -> usize {
        self.concerts.lock().expect("never poisoned").values().map(|n| n.ended.len()).sum()
    }

    /// Sessions this gateway has written lately (for the memory figure in the benchmark).
    pub fn touched_count(&self) -> usize {
        self.touched.lock().expect("never poisoned").len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::sessions::GateNews;

    #[test]
    fn a_session_is_fresh_after_a_write_until_a_tenth_of_its_idle_time_and_ended_once_learned() {
        let k = Known::default();
        let c = ConcertId::parse("c").unwrap();
        let u = UserId::parse("u").unwrap();
        assert_eq!(k.judge(&c, "a1", 0, 1_000, 60_000), Verdict::Ask, "never seen here");
        k.touched(&c, &u, "a1", 600_000, 1_000);
        assert_eq!(k.judge(&c, "a1", 0, 60_999, 60_000), Verdict::Fresh);
        assert_eq!(k.judge(&c, "a1", 0, 61_000, 60_000), Verdict::Ask, "time to write again");
        assert_eq!(k.judge(&c, "a1", 0, 61_001, 60_000), Verdict::Fresh, "one check writes, not every one in flight");
        k.learn(&c, GateNews { epoch: 0, now_ms: 5_000, ended: vec!["a1".into()], more: None }, 3_600_000, 2_000);
        assert_eq!(k.judge(&c, "a1", 0, 2_001, 60_000), Verdict::Ended);
        assert_eq!(k.since(&c), NewsCursor { since_ms: 3_000, skip: 0 });
        k.touched(&c, &u, "b2", 600_000, 2_000);
        k.learn(&c, GateNews { epoch: 1, now_ms: 6_000, ended: vec![], more: None }, 3_600_000, 2_500);
        assert_eq!(k.judge(&c, "b2", 0, 2_600, 60_000), Verdict::Ended, "a revocation ends older epochs");
        assert_eq!(k.judge(&c, "b2", 1, 2_600, 60_000), Verdict::Fresh);
    }

    #[test]
    fn a_burst_read_in_pages_continues_from_the_cursor_and_then_from_redis_time_again() {
        let k = Known::default();
        let c = ConcertId::parse("c").unwrap();
        assert_eq!(k.since(&c), NewsCursor { since_ms: 0, skip: 0 }, "never looked: from the start");
        k.learn(&c, GateNews { epoch: 0, now_ms: 9_000, ended: vec![], more: None }, 3_600_000, 0);
        let next = NewsCursor { since_ms: 8_000, skip: 1_000 };
        let more = GateNews { epoch: 0, now_ms: 9_500, ended: vec!["a".into()], more: Some(next) };
        assert!(k.learn(&c, more, 3_600_000, 0), "a next page");
        assert_eq!(k.since(&c), next, "the next page, without the overlap");
        assert_eq!(k.judge(&c, "a", 0, 1, 1_000), Verdict::Ended, "a page's sessions are learned at once");
        assert!(!k.learn(&c, GateNews { epoch: 0, now_ms: 9_900, ended: vec![], more: None }, 3_600_000, 0));
        assert_eq!(k.since(&c), NewsCursor { since_ms: 7_900, skip: 0 }, "the newest reached: Redis's time, 2 s back");
    }

    #[test]
    fn checks_between_writes_are_written_with_their_age_once_the_last_write_is_a_tenth_old() {
        let k = Known::default();
        let (c, u) = (ConcertId::parse("c").unwrap(), UserId::parse("u").unwrap());
        k.touched(&c, &u, "s1", 10_000, 0);
        assert!(k.due(5_000).is_empty(), "no check since the write");
        assert_eq!(k.judge(&c, "s1", 0, 300, 1_000), Verdict::Fresh);
        assert_eq!(k.judge(&c, "s1", 0, 700, 1_000), Verdict::Fresh);
        assert!(k.due(900).is_empty(), "the last write is younger than a tenth");
        let due = k.due(1_200);
        assert_eq!(
            due,
            vec![Due { concert: c.clone(), user: u.clone(), sid: "s1".into(), idle_ms: 10_000, age_ms: 500 }]
        );
        assert!(k.due(5_000).is_empty(), "written once");
    }

    #[test]
    fn an_ended_session_is_forgotten_after_the_concerts_session_max_and_then_asked_again() {
        let k = Known::default();
        let (c, u) = (ConcertId::parse("c").unwrap(), UserId::parse("u").unwrap());
        let max_ms = 60_000; // sessionMaxSeconds 60
        k.learn(&c, GateNews { epoch: 0, now_ms: 1_000, ended: vec!["gone".into()], more: None }, max_ms, 1_000);
        k.ended(&c, "told", 2_000);
        assert_eq!(k.judge(&c, "gone", 0, 1_500, 1_000), Verdict::Ended);
        assert_eq!(k.ended_count(), 2);
        // Learned again in the next look's 2 s overlap: still remembered from the first time.
        k.learn(&c, GateNews { epoch: 0, now_ms: 2_000, ended: vec!["gone".into()], more: None }, max_ms, 2_000);
        k.prune(60_999);
        assert_eq!(k.judge(&c, "gone", 0, 60_999, 1_000), Verdict::Ended, "within sessionMaxSeconds");
        k.prune(61_000);
        assert_eq!(k.judge(&c, "gone", 0, 61_000, 1_000), Verdict::Ask, "forgotten: Redis is asked, and says so");
        assert_eq!(k.judge(&c, "told", 0, 61_000, 1_000), Verdict::Ended);
        k.prune(62_000);
        assert_eq!(k.ended_count(), 0, "not a day: the concert's sessionMaxSeconds");
        // A session seen live and not checked for sessionMaxSeconds cannot be live any more.
        k.touched(&c, &u, "live", 600_000, 70_000);
        k.prune(129_999);
        assert_eq!(k.touched_count(), 1);
        k.prune(130_000);
        assert_eq!(k.touched_count(), 0);
    }

    #[test]
    fn a_gateway_remembers_at_most_the_cap_of_ended_sessions_per_concert_forgetting_the_oldest() {
        let k = Known::default();
        let c = ConcertId::parse("c").unwrap();
        let over = 10;
        let sids: Vec<String> = (0..MAX_ENDED_PER_CONCERT + over).map(|i| format!("s{i}")).collect();
        for (i, chunk) in sids.chunks(10_000).enumerate() {
            let news = GateNews { epoch: 0, now_ms: 0, ended: chunk.to_vec(), more: None };
            k.learn(&c, news, 3_600_000, i as i64);
        }
        assert_eq!(k.ended_count(), MAX_ENDED_PER_CONCERT);
        for sid in &sids[..over] {
            assert_eq!(k.judge(&c, sid, 0, 100, 1_000), Verdict::Ask, "the oldest are forgotten: {sid}");
        }
        assert_eq!(k.judge(&c, &sids[over], 0, 100, 1_000), Verdict::Ended);
        assert_eq!(k.judge(&c, sids.last().unwrap(), 0, 100, 1_000), Verdict::Ended);
        let other = ConcertId::parse("d").unwrap();
        k.ended(&other, "x", 100);
        assert_eq!(k.ended_count(), MAX_ENDED_PER_CONCERT + 1, "the cap is per concert");
    }
}
