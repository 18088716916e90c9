//! Commits held back while a Redis shard is short of replicas.
//!
//! The consumer may commit a record's offset only once the record's Redis write would survive a
//! failover, that is once `QUEUEGATE_REDIS_MIN_REPLICAS` replicas have it. When a shard has
//! fewer (its primary died and the promoted replica has none yet), stopping would turn one lost
//! node into an outage, so the consumer goes on applying and holds back the commits instead:
//!
//! * a concert whose write lacked the replicas is *held*: per partition, the lowest offset of
//!   its records not yet known to be replicated (its *floor*). Commits of that partition stop
//!   below the floor, so after a crash its records are read and applied again (harmlessly: the
//!   apply is idempotent). What is held is a few numbers per concert and partition, never fans:
//!   memory does not grow with the backlog, Kafka keeps the records.
//! * the held concert's later writes skip `WAIT` (it would time out on every batch and slow every
//!   concert of it); once a second the consumer asks again ([`QueueStore::confirm`]). When the
//!   replicas have the writer's writes the hold ends and the offsets are committed.
//! * when the writer's counter shows that a failover lost writes it made (a lagging replica was
//!   promoted), the hold's floors are handed back ([`Held::take_lost`]) and the consumer seeks
//!   its partitions back to them: the lost joins are read from Kafka and applied again.
//! * `QUEUEGATE_REDIS_REPLICA_GRACE_MS` > 0 bounds how long a hold lasts: past it the offsets
//!   are committed without the replicas (the writes then rest on the primary's AOF alone).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::ids::{ConcertId, Lane, UserId};
use crate::metrics::Metrics;
use crate::store::{Applied, QueueStore, Replication, StoreError, Writer};

/// (topic, partition)
pub type Partition = (String, i32);

/// How often held concerts are asked about again.
const CHECK_EVERY: Duration = Duration::from_secs(1);
/// How long one of those questions waits for the replicas.
const CHECK_WAIT: Duration = Duration::from_millis(100);

struct Hold {
    since: Instant,
    floors: HashMap<Partition, i64>,
}

/// One writer's held concerts (the consumer's main loop and its parked-joins replayer each
/// have one).
pub struct Held {
    writer: Writer,
    concerts: HashMap<ConcertId, Hold>,
    /// Floors of holds whose writes a failover lost: the partitions to read again from there.
    lost: HashMap<Partition, i64>,
    last_check: Instant,
    /// Gauges to keep (the main loop's); None for the replayer.
    metrics: Option<Metrics>,
}

impl Held {
    pub fn new(metrics: Option<Metrics>) -> Self {
        Held {
            writer: Writer::new(),
            concerts: HashMap::new(),
            lost: HashMap::new(),
            last_check: Instant::now(),
            metrics,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.concerts.is_empty()
    }

    /// Applies one concert's joins (records at `positions`) as this writer: waits for the
    /// replicas unless the concert is held already; holds it when they lack the writes;
    /// releases it when they have every write so far.
    pub async fn apply(
        &mut self,
        store: &QueueStore,
        concert: &ConcertId,
        lane: &Lane,
        joins: &[(&UserId, i64)],
        positions: impl Iterator<Item = (Partition, i64)>,
    ) -> Result<Applied, StoreError> {
        let held = self.concerts.contains_key(concert);
        let written = store.apply_as(&mut self.writer, concert, lane, joins, !held).await?;
        if written.lost_earlier {
            self.lose(concert);
        }
        match written.replication {
            // The WAIT followed this write on the primary, so it covered every earlier one.
            Replication::Done => self.release(concert),
            Replication::Short { acked, wanted } => {
                if !self.concerts.contains_key(concert) {
                    tracing::warn!(%concert, acked, wanted,
                        "Redis writes lack replicas; applying on and holding this concert's offsets until a replica has them");
                }
                self.hold(concert, positions);
            }
            Replication::Unasked => self.hold(concert, positions),
        }
        self.gauges();
        Ok(written.applied)
    }

    fn hold(&mut self, concert: &ConcertId, positions: impl Iterator<Item = (Partition, i64)>) {
        let hold = self
            .concerts
            .entry(concert.clone())
            .or_insert_with(|| Hold { since: Instant::now(), floors: HashMap::new() });
        for (p, offset) in positions {
            let floor = hold.floors.entry(p).or_insert(offset);
            *floor = (*floor).min(offset);
        }
    }

    fn release(&mut self, concert: &ConcertId) {
        if let Some(h) = self.concerts.remove(concert) {
            tracing::info!(%concert, held_ms = h.since.elapsed().as_millis() as u64, "replicas have this concert's writes; its offsets are committed");
        }
    }

    /// A failover lost writes of `concert`: its floors become partitions to read again.
    fn lose(&mut self, concert: &ConcertId) {
        match self.concerts.remove(concert) {
            Some(h) => {
                tracing::warn!(%concert, partitions = h.floors.len(),
                    "a Redis failover lost writes not yet on a replica; reading them again from Kafka");
                for (p, offset) in h.floors {
                    let floor = self.lost.entry(p).or_insert(offset);
                    *floor = (*floor).min(offset);
                }
            }
            None => tracing::error!(%concert,
                "a Redis failover lost writes that had reached QUEUEGATE_REDIS_MIN_REPLICAS replicas (more nodes failed than replicas were asked for); their offsets were committed"),
        }
    }

    /// Asks again about every held concert, at most once per [`CHECK_EVERY`]. True when a hold
    /// ended (released or lost): the caller commits, or reads again.
    pub async fn recheck(&mut self, store: &QueueStore) -> bool {
        if self.concerts.is_empty() || self.last_check.elapsed() < CHECK_EVERY {
            return false;
        }
        self.last_check = Instant::now();
        let before = self.concerts.len();
        let concerts: Vec<ConcertId> = self.concerts.keys().cloned().collect();
        for concert in concerts {
            if let Some(grace) = store.replica_grace() {
                if self.concerts[&concert].since.elapsed() >= grace {
                    tracing::warn!(%concert, grace_ms = grace.as_millis() as u64,
                        "QUEUEGATE_REDIS_REPLICA_GRACE_MS passed without replicas; committing this concert's offsets on the primary's word");
                    self.concerts.remove(&concert);
                    continue;
                }
            }
            match store.confirm(&mut self.writer, &concert, CHECK_WAIT).await {
                Ok((_, true)) => self.lose(&concert),
                Ok((Replication::Done, false)) => self.release(&concert),
                Ok(_) => {}
                Err(e) => tracing::debug!(%concert, error = %e, "could not ask whether replicas have the writes"),
            }
        }
        self.gauges();
        self.concerts.len() != before
    }

    /// Lowers each offset to commit to the floor of its partition (held or lost).
    pub fn cap(&self, offsets: &mut HashMap<Partition, i64>) {
        for (p, next) in offsets.iter_mut() {
            let floors = self.concerts.values().filter_map(|h| h.floors.get(p)).chain(self.lost.get(p));
            if let Some(floor) = floors.min() {
                *next = (*next).min(*floor);
            }
        }
    }

    /// The partitions to read again from the given offsets (writes a failover lost).
    pub fn take_lost(&mut self) -> HashMap<Partition, i64> {
        std::mem::take(&mut self.lost)
    }

    fn gauges(&self) {
        if let Some(m) = &self.metrics {
            m.consumer_held_concerts.set(self.concerts.len() as i64);
            let oldest = self.concerts.values().map(|h| h.since.elapsed()).max().unwrap_or_default();
            m.consumer_held_seconds.set(oldest.as_secs_f64());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(n: i32) -> Partition {
        ("t".to_owned(), n)
    }

    #[test]
    fn offsets_stop_at_the_lowest_held_or_lost_floor_of_their_partition() {
        let mut held = Held::new(None);
        let (a, b) = (ConcertId::parse("a").unwrap(), ConcertId::parse("b").unwrap());
        held.hold(&a, [(p(0), 10), (p(1), 5), (p(0), 7)].into_iter());
        held.hold(&b, [(p(0), 12)].into_iter());
        held.hold(&a, [(p(0), 30)].into_iter());
        let mut offsets: HashMap<Partition, i64> = [(p(0), 40), (p(1), 3), (p(2), 9)].into_iter().collect();
        held.cap(&mut offsets);
        assert_eq!((offsets[&p(0)], offsets[&p(1)], offsets[&p(2)]), (7, 3, 9));
        held.release(&a);
        let mut offsets: HashMap<Partition, i64> = [(p(0), 40), (p(1), 40)].into_iter().collect();
        held.cap(&mut offsets);
        assert_eq!((offsets[&p(0)], offsets[&p(1)]), (12, 40), "a's floors went with it");
        held.lose(&b);
        assert!(held.is_empty());
        let mut offsets: HashMap<Partition, i64> = [(p(0), 40)].into_iter().collect();
        held.cap(&mut offsets);
        assert_eq!(offsets[&p(0)], 12, "a lost hold still caps until its partitions are read again");
        assert_eq!(held.take_lost(), [(p(0), 12)].into_iter().collect());
        assert!(held.take_lost().is_empty());
    }
}
