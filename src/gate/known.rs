//! What one gateway knows about sessions, so a gate check for a live session asks Redis nothing:
//! each concert's revocation epoch and recently ended sessions (learned every second), and for
//! each session it has seen, when it last wrote the session's last-seen time and when it last
//! checked it. Checks between writes are written later, with their age ([`Known::due`]), so a
//! session's idle time counts from its real last check while each gateway still writes a
//! session at most once per tenth of its idle time.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::ids::{ConcertId, UserId};

/// How long an ended session is remembered (no cookie outlives `sessionMaxSeconds` ≤ 1 day).
const REMEMBER_ENDED_MS: i64 = 86_400_000;

#[derive(Default)]
struct ConcertNews {
    epoch: u64,
    /// sid → when this gateway learned it ended (ms).
    ended: HashMap<String, i64>,
    /// Redis's time of the last look: the next asks from a little before it.
    since_ms: Option<i64>,
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
        self.concerts
            .lock()
            .expect("never poisoned")
            .entry(concert.clone())
            .or_default()
            .ended
            .insert(sid.to_owned(), now_ms);
    }

    /// Where to ask the next news of `concert` from (Redis time, ms), with 2 s of overlap so a
    /// session ended while the last look was in flight is not missed.
    pub fn since(&self, concert: &ConcertId) -> i64 {
        self.concerts.lock().expect("never poisoned").get(concert).and_then(|n| n.since_ms).map_or(0, |s| s - 2_000)
    }

    /// Takes in one look at a concert's news.
    pub fn learn(&self, concert: &ConcertId, news: crate::store::sessions::GateNews, now_ms: i64) {
        let mut touched = self.touched.lock().expect("never poisoned");
        for sid in &news.ended {
            touched.remove(sid);
        }
        drop(touched);
        let mut concerts = self.concerts.lock().expect("never poisoned");
        let n = concerts.entry(concert.clone()).or_default();
        n.epoch = n.epoch.max(news.epoch);
        n.since_ms = Some(news.now_ms);
        for sid in news.ended {
            n.ended.entry(sid).or_insert(now_ms);
        }
        n.ended.retain(|_, at| now_ms - *at < REMEMBER_ENDED_MS);
    }

    /// Forgets last-seen writes older than a day (sessions that cannot be live any more).
    pub fn prune(&self, now_ms: i64) {
        self.touched.lock().expect("never poisoned").retain(|_, s| now_ms - s.checked_ms < REMEMBER_ENDED_MS);
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
        k.learn(&c, GateNews { epoch: 0, now_ms: 5_000, ended: vec!["a1".into()] }, 2_000);
        assert_eq!(k.judge(&c, "a1", 0, 2_001, 60_000), Verdict::Ended);
        assert_eq!(k.since(&c), 3_000);
        k.touched(&c, &u, "b2", 600_000, 2_000);
        k.learn(&c, GateNews { epoch: 1, now_ms: 6_000, ended: vec![] }, 2_500);
        assert_eq!(k.judge(&c, "b2", 0, 2_600, 60_000), Verdict::Ended, "a revocation ends older epochs");
        assert_eq!(k.judge(&c, "b2", 1, 2_600, 60_000), Verdict::Fresh);
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
}
