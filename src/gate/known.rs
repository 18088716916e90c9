//! What one gateway knows about sessions, so a gate check for a live session asks Redis nothing:
//! each concert's revocation epoch and recently ended sessions (learned every second), and when
//! this gateway last wrote each session's last-seen time.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::ids::ConcertId;

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

/// One gateway's knowledge of sessions.
#[derive(Default)]
pub struct Known {
    concerts: Mutex<HashMap<ConcertId, ConcertNews>>,
    /// sid → when this gateway last wrote the session's last-seen time (ms).
    touched: Mutex<HashMap<String, i64>>,
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
        match self.touched.lock().expect("never poisoned").get(sid) {
            Some(&at) if now_ms - at < write_every_ms => Verdict::Fresh,
            _ => Verdict::Ask,
        }
    }

    /// Redis said the session lives (its last-seen time was just written).
    pub fn touched(&self, sid: &str, now_ms: i64) {
        self.touched.lock().expect("never poisoned").insert(sid.to_owned(), now_ms);
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
        self.touched.lock().expect("never poisoned").retain(|_, at| now_ms - *at < REMEMBER_ENDED_MS);
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
        assert_eq!(k.judge(&c, "a1", 0, 1_000, 60_000), Verdict::Ask, "never seen here");
        k.touched("a1", 1_000);
        assert_eq!(k.judge(&c, "a1", 0, 60_999, 60_000), Verdict::Fresh);
        assert_eq!(k.judge(&c, "a1", 0, 61_000, 60_000), Verdict::Ask, "time to write again");
        k.learn(&c, GateNews { epoch: 0, now_ms: 5_000, ended: vec!["a1".into()] }, 2_000);
        assert_eq!(k.judge(&c, "a1", 0, 2_001, 60_000), Verdict::Ended);
        assert_eq!(k.since(&c), 3_000);
        k.touched("b2", 2_000);
        k.learn(&c, GateNews { epoch: 1, now_ms: 6_000, ended: vec![] }, 2_500);
        assert_eq!(k.judge(&c, "b2", 0, 2_600, 60_000), Verdict::Ended, "a revocation ends older epochs");
        assert_eq!(k.judge(&c, "b2", 1, 2_600, 60_000), Verdict::Fresh);
    }
}
