//! A concert's queue as a gateway sees it between reads, so that watching costs Redis the same
//! whether ten fans watch or a hundred thousand (see view.lua and docs/reference-redis.md).
//!
//! Every fan who reaches the queue gets the concert's next sequence number; admission takes fans
//! from the head in that order; an operator's removal from the middle leaves its number in the
//! concert's `gone` set. So from the head (the lowest number still waiting), the last number and
//! the `gone` numbers past the head, any fan's exact position follows from its own number: no
//! per-fan call.

use std::sync::Arc;

use super::{timed, Outcome, Part, QueueStore, StoreError};
use crate::ids::{ConcertId, Lane, UserId};

/// What one fan looked up by [`QueueStore::read_view`] turned out to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// Not in Redis yet (its join is on the way through Kafka, or never happened).
    NotYet,
    /// Waiting in the lane at this index of the lanes read, with this sequence number in it.
    Waiting(u8, u64),
    /// Held in the pre-queue of the lane at this index until the cut at `opensAt` (ms).
    Held(u8, i64),
    /// Was queued and has left (None: a state this version cannot read).
    Left(Option<Outcome>),
}

/// One [`QueueStore::read_view`] answer: each lane's parts, and the fans looked up.
#[derive(Debug, Clone, PartialEq)]
pub struct ConcertRead {
    pub lanes: Vec<ViewRead>,
    /// One per fan looked up, in the order asked.
    pub lookups: Vec<Lookup>,
}

/// One lane's parts in a [`QueueStore::read_view`] answer.
#[derive(Debug, Clone, PartialEq)]
pub struct ViewRead {
    /// Redis's time of the read (ms).
    pub now_ms: i64,
    pub head: u64,
    pub last_seq: u64,
    pub queue_length: u64,
    /// Admissions per second over the last ~30 s, decayed to `now_ms`.
    pub observed_rate: f64,
    pub gone_ver: String,
    /// The `gone` numbers at or past the head, when they changed since the version asked about.
    pub gone: Option<Vec<u64>>,
}

/// Where a sequence number stands in a [`QueueView`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    /// Waiting at this 1-based position.
    Waiting(u64),
    /// No longer waiting (admitted, skipped as abandoned, or removed): its state says which.
    Left,
    /// Past the view's last number: the view is older than what the caller knows.
    Unseen,
}

/// The moving parts of one concert's queue at one read; positions are worked out locally.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct QueueView {
    pub now_ms: i64,
    pub head: u64,
    pub last_seq: u64,
    pub queue_length: u64,
    pub observed_rate: f64,
    gone_ver: Option<String>,
    /// Sorted; every number at or past `head`.
    gone: Arc<Vec<u64>>,
}

impl QueueView {
    /// Takes in a read; the `gone` numbers are kept from the last read when they did not change.
    pub fn update(&mut self, read: &ViewRead) {
        self.now_ms = read.now_ms;
        self.head = read.head;
        self.last_seq = read.last_seq;
        self.queue_length = read.queue_length;
        self.observed_rate = read.observed_rate;
        let head = read.head;
        match &read.gone {
            Some(gone) => {
                let mut g: Vec<u64> = gone.iter().copied().filter(|&s| s >= head).collect();
                g.sort_unstable();
                self.gone = Arc::new(g);
            }
            // Numbers the head has passed no longer count (admit.lua drops them from Redis too).
            None if self.gone.first().is_some_and(|&s| s < head) => {
                self.gone = Arc::new(self.gone.iter().copied().filter(|&s| s >= head).collect());
            }
            None => {}
        }
        self.gone_ver = Some(read.gone_ver.clone());
    }

    /// The `goneVer` this view holds the `gone` numbers of.
    pub fn gone_ver(&self) -> Option<&str> {
        self.gone_ver.as_deref()
    }

    /// Whether the parts add up: the waiting fans are the numbers from the head to the last
    /// minus the gone ones. False means something outside the scripts changed the queue (a
    /// hand-edited key): positions must then be read from Redis, fan by fan.
    pub fn consistent(&self) -> bool {
        if self.queue_length == 0 {
            return true;
        }
        let span = (self.last_seq + 1).saturating_sub(self.head);
        span.checked_sub(self.gone.len() as u64) == Some(self.queue_length)
    }

    /// Where the fan with sequence number `seq` stands: O(log |gone|).
    pub fn place(&self, seq: u64) -> Place {
        if seq > self.last_seq {
            return Place::Unseen;
        }
        if seq < self.head {
            return Place::Left;
        }
        match self.gone.binary_search(&seq) {
            Ok(_) => Place::Left,
            Err(ahead_gone) => Place::Waiting(1 + (seq - self.head) - ahead_gone as u64),
        }
    }
}

fn reply_err(what: &str, v: &redis::Value) -> StoreError {
    StoreError::Reply(format!("view reply: {what} in {v:?}"))
}

impl QueueStore {
    /// One concert's view (view.lua): per lane (`lanes`, with the `goneVer` the caller holds of
    /// each) head, last number, length, observed rate, the `gone` numbers when their version
    /// differs; `lookups` are fans whose sequence number the caller needs (at most a few
    /// thousand per call), `seen` fans who showed life (recorded for abandonment). One call
    /// whatever the number of watchers.
    pub async fn read_view(
        &self,
        concert: &ConcertId,
        lanes: &[(&Lane, Option<&str>)],
        lookups: &[&UserId],
        seen: &[&UserId],
    ) -> Result<ConcertRead, StoreError> {
        let mut inv = self.scripts.view.prepare_invoke();
        for part in [Part::Adm, Part::Joined, Part::State, Part::Seen, Part::Concert, Part::Lanes] {
            inv.key(self.key(concert, part));
        }
        for (lane, _) in lanes {
            for part in [Part::Rank, Part::Seq, Part::Gone, Part::Hold] {
                inv.key(self.lane_key(concert, lane, part));
            }
        }
        inv.arg(lanes.len());
        for (lane, _) in lanes {
            inv.arg(lane.as_str());
        }
        for (_, ver) in lanes {
            inv.arg(ver.unwrap_or(""));
        }
        let asked = lookups.len();
        inv.arg(asked);
        for u in lookups.iter().chain(seen) {
            inv.arg(u.as_str());
        }
        let mut c = self.conn().await?;
        let reply: Vec<redis::Value> = timed(inv.invoke_async(&mut c)).await?;
        let [now, parts, found] = reply.as_slice() else {
            return Err(StoreError::Reply(format!("view reply has {} parts, not 3", reply.len())));
        };
        let int = |v: &redis::Value| redis::from_redis_value_ref::<i64>(v).map_err(|_| reply_err("a number", v));
        let text = |v: &redis::Value| redis::from_redis_value_ref::<String>(v).map_err(|_| reply_err("a text", v));
        let now_ms = int(now)?;
        let parts: Vec<Vec<redis::Value>> =
            redis::from_redis_value_ref(parts).map_err(|_| reply_err("the lanes", parts))?;
        let mut reads = Vec::with_capacity(parts.len());
        for lane in &parts {
            let [head, last, len, rate, ver, gone] = lane.as_slice() else {
                return Err(StoreError::Reply(format!("a lane of the view reply has {} parts, not 6", lane.len())));
            };
            let gone = match gone {
                redis::Value::Nil => None,
                v => Some(redis::from_redis_value_ref::<Vec<u64>>(v).map_err(|_| reply_err("the gone numbers", v))?),
            };
            reads.push(ViewRead {
                now_ms,
                head: int(head)? as u64,
                last_seq: int(last)? as u64,
                queue_length: int(len)? as u64,
                observed_rate: text(rate)?.parse().unwrap_or(0.0),
                gone_ver: text(ver)?,
                gone,
            });
        }
        let found: Vec<String> =
            redis::from_redis_value_ref(found).map_err(|_| reply_err("the looked-up fans", found))?;
        let bad = |f: &str| StoreError::Reply(format!("view lookup {f:?}"));
        // "<lane>:<n>" (1-based lane) as (0-based lane, n).
        let in_lane = |f: &str| -> Result<(u8, i64), StoreError> {
            let (i, n) = f.split_once(':').ok_or_else(|| bad(f))?;
            let i: u8 = i.parse().map_err(|_| bad(f))?;
            Ok((i.checked_sub(1).ok_or_else(|| bad(f))?, n.parse().map_err(|_| bad(f))?))
        };
        let lookups = found
            .iter()
            .map(|f| {
                if f.is_empty() {
                    Ok(Lookup::NotYet)
                } else if let Some(state) = f.strip_prefix('L') {
                    Ok(Lookup::Left(Outcome::parse(state)))
                } else if let Some(held) = f.strip_prefix('H') {
                    in_lane(held).map(|(i, at)| Lookup::Held(i, at))
                } else {
                    in_lane(f).map(|(i, seq)| Lookup::Waiting(i, seq as u64))
                }
            })
            .collect::<Result<Vec<_>, _>>()?;
        if lookups.len() != asked || reads.len() != lanes.len() {
            return Err(StoreError::Reply(format!(
                "view looked up {} fans of {asked} in {} lanes of {}",
                lookups.len(),
                reads.len(),
                lanes.len()
            )));
        }
        Ok(ConcertRead { lanes: reads, lookups })
    }

    /// How each of `users` left `concert`'s queue (None: has not left, or a state this version
    /// cannot read): one HMGET.
    pub async fn outcomes(&self, concert: &ConcertId, users: &[&UserId]) -> Result<Vec<Option<Outcome>>, StoreError> {
        if users.is_empty() {
            return Ok(Vec::new());
        }
        let mut c = self.conn().await?;
        let users: Vec<&str> = users.iter().map(|u| u.as_str()).collect();
        let states: Vec<Option<String>> =
            timed(redis::cmd("HMGET").arg(self.key(concert, Part::State)).arg(&users).query_async(&mut c)).await?;
        Ok(states.iter().map(|s| s.as_deref().and_then(Outcome::parse)).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(head: u64, last: u64, len: u64, gone: &[u64]) -> QueueView {
        let mut v = QueueView::default();
        v.update(&ViewRead {
            now_ms: 0,
            head,
            last_seq: last,
            queue_length: len,
            observed_rate: 0.0,
            gone_ver: "1".into(),
            gone: Some(gone.to_vec()),
        });
        v
    }

    #[test]
    fn positions_skip_the_gone_numbers_ahead() {
        // Waiting: 3, 4, 6, 8 (5 and 7 removed; 1 and 2 admitted).
        let v = view(3, 8, 4, &[5, 7, 2]);
        assert!(v.consistent());
        let places: Vec<Place> = (1..=9).map(|s| v.place(s)).collect();
        use Place::*;
        assert_eq!(places, [Left, Left, Waiting(1), Waiting(2), Left, Waiting(3), Left, Waiting(4), Unseen]);
    }

    #[test]
    fn a_read_without_gone_keeps_the_numbers_still_ahead() {
        let mut v = view(3, 8, 4, &[5, 7]);
        v.update(&ViewRead {
            now_ms: 1,
            head: 6,
            last_seq: 9,
            queue_length: 3,
            observed_rate: 1.0,
            gone_ver: "1".into(),
            gone: None,
        });
        assert!(v.consistent());
        assert_eq!(v.place(6), Place::Waiting(1));
        assert_eq!(v.place(8), Place::Waiting(2));
        assert_eq!(v.place(9), Place::Waiting(3));
        assert_eq!(v.place(5), Place::Left);
    }

    #[test]
    fn an_empty_queue_and_a_hand_edited_one() {
        assert!(view(11, 10, 0, &[]).consistent());
        assert_eq!(view(11, 10, 0, &[]).place(10), Place::Left);
        // A fan ZREM'd by hand: the parts no longer add up.
        assert!(!view(1, 5, 4, &[]).consistent());
    }
}
