//! The store's side of events out (src/events.rs): the outbox the scripts write, the sale's
//! report, and the webhooks' delivery queues.

use std::collections::HashMap;

use redis::Script;

use super::conn::timed;
use super::keys::webhook_part::{ALL as WEBHOOK_PARTS, BODY, DUE, LOG, QUEUED, STATE, TRIES};
use super::keys::Part;
use super::{QueueStore, StoreError};
use crate::events::OutboxEntry;
use crate::ids::ConcertId;

pub(super) struct Scripts {
    claim: Script,
    enqueue: Script,
    record: Script,
}

impl Scripts {
    pub(super) fn new() -> Self {
        Scripts {
            claim: Script::new(include_str!("webhook_claim.lua")),
            enqueue: Script::new(include_str!("webhook_enqueue.lua")),
            record: Script::new(include_str!("webhook_record.lua")),
        }
    }
}

/// Deliveries queued per call of webhook_enqueue.lua (bounded work per call).
const ENQUEUE_CHUNK: usize = 250;

/// A concert's report as stored (outbox.lua keeps it): a fixed-size hash, whatever the sale's
/// size (no member per fan or per admission).
#[derive(Debug, Clone, Default)]
pub struct ReportData {
    /// Changes per kind: `placed`, `admitted`, …
    pub counts: HashMap<String, u64>,
    /// Per minute (ms / 60000), the last [`KEEP_MINUTES`] minutes of each: fans placed,
    /// admitted, and who left the queue.
    pub joins: Vec<(i64, u64)>,
    pub admissions: Vec<(i64, u64)>,
    pub left: Vec<(i64, u64)>,
    /// What the minutes before those kept held (rolled up as they left the window).
    pub joins_older: u64,
    pub admissions_older: u64,
    pub left_older: u64,
    /// The waits from placed to admitted (ms), as a histogram.
    pub waits: WaitHistogram,
}

/// Minutes each per-minute series of the report keeps (outbox.lua's `KEEP_MINUTES`): a day.
pub const KEEP_MINUTES: i64 = 1_440;

/// The report's waits (ms) from placed to admitted: their count, sum, least and greatest, and
/// how many fell in each bucket of [`wait_bucket`] (bucket, count), lowest bucket first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WaitHistogram {
    pub count: u64,
    pub sum: u64,
    pub min: Option<u64>,
    pub max: Option<u64>,
    pub buckets: Vec<(u32, u64)>,
}

/// The histogram's bucket of a wait of `w` ms, as outbox.lua's `wait_bucket` computes it: `w`
/// itself below 8, then 8 buckets per power of two, each an eighth of it wide.
pub fn wait_bucket(w: u64) -> u32 {
    if w < 8 {
        return w as u32;
    }
    let e = 63 - w.leading_zeros();
    let s = (w - (1 << e)) >> (e - 3);
    8 * (e - 2) + s as u32
}

/// The waits bucket `b` holds: `lo..hi` (ms, `hi` excluded). Its width is at most an eighth of
/// `lo`.
pub fn wait_bucket_bounds(b: u32) -> (u64, u64) {
    if b < 8 {
        return (u64::from(b), u64::from(b) + 1);
    }
    let (e, s) = (b / 8 + 2, u64::from(b % 8));
    let width = 1u64 << (e - 3);
    let lo = (1u64 << e) + s * width;
    (lo, lo + width)
}

impl WaitHistogram {
    /// The `p`-th percentile by the nearest-rank method, read from the buckets: the greatest
    /// wait the bucket holding the exact percentile may hold (kept within the least and greatest
    /// wait seen). So it is never below the exact percentile, and above it by less than the
    /// bucket's width (an eighth of the wait at most). None when there is no wait.
    pub fn percentile(&self, p: u32) -> Option<u64> {
        let total: u64 = self.buckets.iter().map(|(_, n)| n).sum();
        if total == 0 {
            return None;
        }
        let rank = (u64::from(p) * total).div_ceil(100).max(1);
        let mut seen = 0;
        for &(b, n) in &self.buckets {
            seen += n;
            if seen >= rank {
                let mut v = wait_bucket_bounds(b).1 - 1;
                if let Some(max) = self.max {
                    v = v.min(max);
                }
                if let Some(min) = self.min {
                    v = v.max(min);
                }
                return Some(v);
            }
        }
        self.max
    }

    /// The mean wait (ms, rounded down).
    pub fn mean(&self) -> Option<u64> {
        (self.count > 0).then(|| self.sum / self.count)
    }
}

/// A webhook's signing secrets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookSecret {
    pub current: String,
    /// The secret before the latest rotation, during its overlap: deliveries carry a signature
    /// by each, so a receiver still holding the old one keeps verifying them.
    pub previous: Option<String>,
}

/// One delivery claimed for sending.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub id: String,
    pub body: String,
    /// Attempts before this one.
    pub attempts: u32,
    /// When the first attempt was made (ms); None before it.
    pub first_ms: Option<i64>,
    /// When the delivery was queued (ms): the give-up window counts from here.
    pub queued_ms: i64,
}

/// One look at a webhook endpoint's queue (webhook_claim.lua).
#[derive(Debug, Clone, Default)]
pub struct Claim {
    /// When the endpoint was suspended (ms); None while it is not.
    pub suspended_ms: Option<i64>,
    /// Deliveries pending, and their bodies' bytes, after this look.
    pub pending: u64,
    pub pending_bytes: u64,
    /// Deliveries given up (and removed) by this look, their give-up window over: event id and
    /// attempts made.
    pub given_up: Vec<(String, u32)>,
    /// Deliveries to send now (none while the endpoint is suspended).
    pub claimed: Vec<Claimed>,
}

/// The caps of each webhook endpoint's queue.
#[derive(Debug, Clone, Copy)]
pub struct WebhookCaps {
    /// Most deliveries pending (`QUEUEGATE_WEBHOOK_MAX_PENDING`).
    pub max_pending: u64,
    /// Most bytes of delivery bodies pending (`QUEUEGATE_WEBHOOK_MAX_PENDING_BYTES`).
    pub max_pending_bytes: u64,
}

/// What queuing a batch for one endpoint did (webhook_enqueue.lua).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Enqueued {
    pub queued: u64,
    /// Dropped, the endpoint's queue being at one of its caps.
    pub dropped_full: u64,
    /// Dropped, the endpoint being suspended.
    pub dropped_suspended: u64,
}

/// When a failing endpoint is suspended (webhook_record.lua).
#[derive(Debug, Clone, Copy)]
pub struct SuspendPolicy {
    /// Every attempt failed for this long (ms); 0: never suspended.
    pub after_ms: i64,
    /// And at least this many attempts in a row failed.
    pub min_failures: u32,
}

/// A webhook endpoint's queue and standing, for the admin API.
#[derive(Debug, Clone, Default)]
pub struct WebhookState {
    pub pending: u64,
    pub pending_bytes: u64,
    /// When it was suspended (ms), if it is.
    pub suspended_ms: Option<i64>,
    /// When its current run of failed attempts began (ms), if it is in one; and how many.
    pub failing_since_ms: Option<i64>,
    pub failures: u64,
    /// Deliveries dropped since the endpoint was made: its queue full, or it suspended.
    pub dropped_full: u64,
    pub dropped_suspended: u64,
}

/// What one delivery attempt (or a give-up without one) leaves behind.
#[derive(Debug, Clone)]
pub struct Attempt {
    pub id: String,
    pub outcome: AttemptOutcome,
    /// The attempt's entry in the webhook's log.
    pub log: serde_json::Value,
}

/// How a delivery attempt ended.
#[derive(Debug, Clone)]
pub enum AttemptOutcome {
    Delivered,
    /// Failed; tried again then.
    Failed(Retry),
    /// Failed, and its give-up window is over.
    GaveUp,
    /// Given up without an attempt by the claim (already out of the queue): logged only.
    Expired,
}

impl AttemptOutcome {
    fn code(&self) -> &'static str {
        match self {
            AttemptOutcome::Delivered => "d",
            AttemptOutcome::Failed(_) => "f",
            AttemptOutcome::GaveUp => "g",
            AttemptOutcome::Expired => "x",
        }
    }
}

/// A failed delivery's next try.
#[derive(Debug, Clone)]
pub struct Retry {
    pub at_ms: i64,
    /// Attempts made so far.
    pub attempts: u32,
    /// When the first attempt was made (ms).
    pub first_ms: i64,
}

/// Delivery attempts kept per webhook.
pub const LOG_KEPT: isize = 100;

fn reply(e: impl std::fmt::Display) -> StoreError {
    StoreError::Reply(e.to_string())
}

impl QueueStore {
    /// The first `count` entries of the concert's outbox, oldest first.
    pub async fn outbox_read(&self, concert: &ConcertId, count: usize) -> Result<Vec<OutboxEntry>, StoreError> {
        let mut c = self.conn().await?;
        let entries: Vec<(String, Vec<(String, String)>)> = timed(
            redis::cmd("XRANGE")
                .arg(self.key(concert, Part::Outbox))
                .arg("-")
                .arg("+")
                .arg("COUNT")
                .arg(count)
                .query_async(&mut c),
        )
        .await?;
        Ok(entries.into_iter().map(|(id, fields)| OutboxEntry::from_fields(id, &fields)).collect())
    }

    /// Deletes published outbox entries.
    pub async fn outbox_delete(&self, concert: &ConcertId, ids: &[String]) -> Result<(), StoreError> {
        if ids.is_empty() {
            return Ok(());
        }
        let mut c = self.conn().await?;
        timed(redis::cmd("XDEL").arg(self.key(concert, Part::Outbox)).arg(ids).query_async::<()>(&mut c)).await
    }

    /// The concert's outbox length and the events its cap dropped since the last call (the
    /// report's `d:pending`, outbox.lua), which this call takes: each dropped event is returned
    /// by one call only, whichever instance makes it. Two or three O(1) commands.
    pub async fn outbox_take_drops(&self, concert: &ConcertId) -> Result<(u64, u64), StoreError> {
        let mut c = self.conn().await?;
        let report = self.key(concert, Part::Report);
        let (len, pending): (u64, Option<u64>) = timed(
            redis::pipe()
                .cmd("XLEN")
                .arg(self.key(concert, Part::Outbox))
                .cmd("HGET")
                .arg(&report)
                .arg("d:pending")
                .query_async(&mut c),
        )
        .await?;
        let dropped = pending.unwrap_or(0);
        if dropped > 0 {
            // Taken by subtracting what was read: drops counted meanwhile stay for the next call.
            let n = i64::try_from(dropped).unwrap_or(i64::MAX);
            timed(redis::cmd("HINCRBY").arg(&report).arg("d:pending").arg(-n).query_async::<()>(&mut c)).await?;
        }
        Ok((len, dropped))
    }

    /// Entries waiting in the concert's outbox.
    pub async fn outbox_len(&self, concert: &ConcertId) -> Result<u64, StoreError> {
        let mut c = self.conn().await?;
        timed(redis::cmd("XLEN").arg(self.key(concert, Part::Outbox)).query_async(&mut c)).await
    }

    /// The concert's report as stored: one HGETALL of a hash of at most a few thousand fields
    /// (the counts, 3 × [`KEEP_MINUTES`] minutes, the waits' buckets), whatever the sale's size.
    pub async fn report(&self, concert: &ConcertId) -> Result<ReportData, StoreError> {
        let mut c = self.conn().await?;
        let fields: Vec<(String, u64)> =
            timed(redis::cmd("HGETALL").arg(self.key(concert, Part::Report)).query_async(&mut c)).await?;
        Ok(parse_report(fields))
    }

    /// One webhook's secrets: the current one, and the one before it while it is still valid
    /// at `now_ms` (a rotation's overlap). None when the webhook has no secret.
    pub async fn webhook_secret(
        &self,
        concert: &ConcertId,
        hook: &str,
        now_ms: i64,
        at_rest: &crate::events::at_rest::SecretBox,
    ) -> Result<Option<WebhookSecret>, StoreError> {
        let mut c = self.conn().await?;
        let (current, previous): (Option<String>, Option<String>) = timed(
            redis::cmd("HMGET")
                .arg(self.key(concert, Part::WebhookSecrets))
                .arg(hook)
                .arg(format!("{hook}:previous"))
                .query_async(&mut c),
        )
        .await?;
        let (c_id, open) = (concert.as_str(), |stored: &str| at_rest.open(concert.as_str(), hook, stored));
        let previous = previous.and_then(|p| {
            let (until, secret) = p.split_once(':')?;
            (until.parse::<i64>().ok()? > now_ms).then(|| open(secret)).flatten()
        });
        let Some(current) = current else { return Ok(None) };
        match open(&current) {
            Some(current) => Ok(Some(WebhookSecret { current, previous })),
            None => {
                tracing::error!(
                    concert = c_id,
                    webhook = hook,
                    "a webhook's stored secret does not open with this token secret; rotate it"
                );
                Ok(None)
            }
        }
    }

    /// Sets one webhook's secret; the one it replaces stays valid until `previous_until_ms`
    /// (None: not at all).
    pub async fn set_webhook_secret(
        &self,
        concert: &ConcertId,
        hook: &str,
        secret: &str,
        previous_until_ms: Option<i64>,
        at_rest: &crate::events::at_rest::SecretBox,
    ) -> Result<(), StoreError> {
        let mut c = self.conn().await?;
        let key = self.key(concert, Part::WebhookSecrets);
        let previous_field = format!("{hook}:previous");
        let old: Option<String> = timed(redis::cmd("HGET").arg(&key).arg(hook).query_async(&mut c)).await?;
        let mut pipe = redis::pipe();
        pipe.atomic().hset(&key, hook, at_rest.seal(concert.as_str(), hook, secret));
        match (old, previous_until_ms) {
            (Some(old), Some(until)) => pipe.hset(&key, &previous_field, format!("{until}:{old}")),
            _ => pipe.hdel(&key, &previous_field),
        };
        timed(pipe.query_async::<()>(&mut c)).await
    }

    /// Forgets a webhook taken out of the concert: its secret and its pending deliveries.
    pub async fn forget_webhook(&self, concert: &ConcertId, hook: &str) -> Result<(), StoreError> {
        let mut c = self.conn().await?;
        let k = &self.keys;
        let mut pipe = redis::pipe();
        pipe.atomic()
            .hdel(self.key(concert, Part::WebhookSecrets), &[hook.to_owned(), format!("{hook}:previous")])
            .unlink(k.webhook(concert, hook, DUE))
            .unlink(k.webhook(concert, hook, BODY))
            .unlink(k.webhook(concert, hook, TRIES))
            .unlink(k.webhook(concert, hook, QUEUED))
            .unlink(k.webhook(concert, hook, STATE))
            .unlink(k.webhook(concert, hook, LOG));
        timed(pipe.query_async::<()>(&mut c)).await
    }

    /// Queues deliveries (event id, body) for a webhook, due at `now_ms`, within its caps
    /// (webhook_enqueue.lua, at most [`ENQUEUE_CHUNK`] per call): one already queued keeps its
    /// schedule; the rest are queued, or dropped while the endpoint is suspended or its queue
    /// is at a cap.
    pub async fn webhook_enqueue(
        &self,
        concert: &ConcertId,
        hook: &str,
        items: &[(&str, String)],
        now_ms: i64,
        caps: WebhookCaps,
    ) -> Result<Enqueued, StoreError> {
        let mut total = Enqueued::default();
        if items.is_empty() {
            return Ok(total);
        }
        let mut c = self.conn().await?;
        for chunk in items.chunks(ENQUEUE_CHUNK) {
            let mut inv = self.scripts.events.enqueue.prepare_invoke();
            for part in [DUE, BODY, QUEUED, STATE] {
                inv.key(self.keys.webhook(concert, hook, part));
            }
            inv.arg(now_ms).arg(caps.max_pending).arg(caps.max_pending_bytes);
            for (id, body) in chunk {
                inv.arg(*id).arg(body);
            }
            let (queued, full, suspended): (u64, u64, u64) = timed(inv.invoke_async(&mut c)).await?;
            total.queued += queued;
            total.dropped_full += full;
            total.dropped_suspended += suspended;
        }
        Ok(total)
    }

    /// Gives up a webhook's deliveries queued `give_up_ms` ago or earlier, and claims up to
    /// `count` due ones unless the endpoint is suspended (webhook_claim.lua).
    pub async fn webhook_claim(
        &self,
        concert: &ConcertId,
        hook: &str,
        now_ms: i64,
        visibility_ms: i64,
        count: usize,
        give_up_ms: i64,
    ) -> Result<Claim, StoreError> {
        let mut inv = self.scripts.events.claim.prepare_invoke();
        for part in [DUE, BODY, TRIES, QUEUED, STATE] {
            inv.key(self.keys.webhook(concert, hook, part));
        }
        inv.arg(now_ms).arg(visibility_ms).arg(count).arg(give_up_ms);
        let mut c = self.conn().await?;
        let flat: Vec<String> = timed(inv.invoke_async(&mut c)).await?;
        parse_claim(&flat).ok_or_else(|| reply(format!("webhook_claim.lua answered {} values", flat.len())))
    }

    /// Records a batch of delivery attempts in one atomic call (webhook_record.lua): the
    /// finished ones leave the queue, the failed ones are due again at their retry time, each
    /// goes to the log, and the endpoint's failing streak is updated. True when this batch
    /// suspended the endpoint.
    pub async fn webhook_record(
        &self,
        concert: &ConcertId,
        hook: &str,
        attempts: &[Attempt],
        now_ms: i64,
        policy: SuspendPolicy,
    ) -> Result<bool, StoreError> {
        if attempts.is_empty() {
            return Ok(false);
        }
        let mut inv = self.scripts.events.record.prepare_invoke();
        for part in WEBHOOK_PARTS {
            inv.key(self.keys.webhook(concert, hook, part));
        }
        inv.arg(now_ms).arg(policy.after_ms).arg(policy.min_failures).arg(LOG_KEPT);
        for a in attempts {
            let (at, tries) = match &a.outcome {
                AttemptOutcome::Failed(r) => (r.at_ms, format!("{}:{}", r.attempts, r.first_ms)),
                _ => (0, String::new()),
            };
            inv.arg(&a.id).arg(a.outcome.code()).arg(at).arg(tries).arg(a.log.to_string());
        }
        let mut c = self.conn().await?;
        let suspended: i64 = timed(inv.invoke_async(&mut c)).await?;
        Ok(suspended == 1)
    }

    /// A webhook endpoint's queue and standing: two bounded reads (ZCARD, HGETALL of a hash of
    /// six fields).
    pub async fn webhook_state(&self, concert: &ConcertId, hook: &str) -> Result<WebhookState, StoreError> {
        let mut c = self.conn().await?;
        let (pending, fields): (u64, HashMap<String, String>) = timed(
            redis::pipe()
                .zcard(self.keys.webhook(concert, hook, DUE))
                .hgetall(self.keys.webhook(concert, hook, STATE))
                .query_async(&mut c),
        )
        .await?;
        let num = |k: &str| fields.get(k).and_then(|v| v.parse::<f64>().ok()).map(|v| v as i64);
        Ok(WebhookState {
            pending,
            pending_bytes: num("bytes").unwrap_or(0).max(0) as u64,
            suspended_ms: num("suspended"),
            failing_since_ms: num("since"),
            failures: num("failures").unwrap_or(0).max(0) as u64,
            dropped_full: num("dropped_full").unwrap_or(0).max(0) as u64,
            dropped_suspended: num("dropped_suspended").unwrap_or(0).max(0) as u64,
        })
    }

    /// Resumes a suspended webhook endpoint: deliveries are queued and attempted again, and its
    /// failing streak starts afresh. Its pending deliveries keep their schedules. True when it
    /// was suspended.
    pub async fn webhook_resume(&self, concert: &ConcertId, hook: &str) -> Result<bool, StoreError> {
        let mut c = self.conn().await?;
        let key = self.keys.webhook(concert, hook, STATE);
        let (was,): (bool,) = timed(
            redis::pipe()
                .atomic()
                .hexists(&key, "suspended")
                .hdel(&key, &["suspended", "since", "failures"])
                .ignore()
                .query_async(&mut c),
        )
        .await?;
        Ok(was)
    }

    /// The latest delivery attempts of the given webhooks, newest first.
    pub async fn webhook_log_read(
        &self,
        concert: &ConcertId,
        hooks: &[&str],
    ) -> Result<Vec<serde_json::Value>, StoreError> {
        let mut c = self.conn().await?;
        let mut out = Vec::new();
        for hook in hooks {
            let lines: Vec<String> = timed(
                redis::cmd("LRANGE").arg(self.keys.webhook(concert, hook, LOG)).arg(0).arg(-1).query_async(&mut c),
            )
            .await?;
            for l in lines {
                out.push(serde_json::from_str::<serde_json::Value>(&l).map_err(reply)?);
            }
        }
        // By time, newest first (the text drops trailing zeros of the ms, so it does not sort).
        let at = |v: &serde_json::Value| v["at"].as_str().and_then(crate::clock::parse_rfc3339).unwrap_or(0);
        out.sort_by_key(|v| std::cmp::Reverse(at(v)));
        Ok(out)
    }
}

/// The report hash's fields (outbox.lua) read into their parts.
fn parse_report(fields: Vec<(String, u64)>) -> ReportData {
    let mut r = ReportData::default();
    for (k, v) in fields {
        let Some((prefix, rest)) = k.split_once(':') else {
            r.counts.insert(k, v);
            continue;
        };
        let minute = rest.parse::<i64>().ok();
        match (prefix, rest, minute) {
            ("j", _, Some(m)) => r.joins.push((m, v)),
            ("a", _, Some(m)) => r.admissions.push((m, v)),
            ("o", _, Some(m)) => r.left.push((m, v)),
            ("j", "older", _) => r.joins_older = v,
            ("a", "older", _) => r.admissions_older = v,
            ("o", "older", _) => r.left_older = v,
            ("j" | "a" | "o", _, _) => {} // `from`, `to`: the window's bounds
            ("d", _, _) => {}             // `d:pending`: the relay's (outbox_take_drops)
            ("w", "n", _) => r.waits.count = v,
            ("w", "sum", _) => r.waits.sum = v,
            ("w", "min", _) => r.waits.min = Some(v),
            ("w", "max", _) => r.waits.max = Some(v),
            ("w", b, _) => {
                if let Ok(b) = b.parse::<u32>() {
                    r.waits.buckets.push((b, v));
                }
            }
            _ => {
                r.counts.insert(k, v);
            }
        }
    }
    for series in [&mut r.joins, &mut r.admissions, &mut r.left] {
        series.sort_unstable();
    }
    r.waits.buckets.sort_unstable();
    r
}

/// webhook_claim.lua's flat answer.
fn parse_claim(flat: &[String]) -> Option<Claim> {
    let [suspended, pending, bytes, gave_up, rest @ ..] = flat else { return None };
    let gave_up: usize = gave_up.parse().ok()?;
    let (given_up, claimed) = rest.split_at_checked(2 * gave_up)?;
    if claimed.len() % 4 != 0 {
        return None;
    }
    let tries = |t: &str| {
        let mut parts = t.split(':');
        let attempts = parts.next().and_then(|n| n.parse().ok()).unwrap_or(0);
        let first_ms = parts.next().and_then(|n| n.parse().ok());
        (attempts, first_ms)
    };
    let ms = |v: &str| v.parse::<f64>().ok().map(|v| v as i64);
    Some(Claim {
        suspended_ms: ms(suspended),
        pending: pending.parse().ok()?,
        pending_bytes: ms(bytes)?.max(0) as u64,
        given_up: given_up.chunks(2).map(|p| (p[0].clone(), tries(&p[1]).0)).collect(),
        claimed: claimed
            .chunks(4)
            .map(|q| {
                let (attempts, first_ms) = tries(&q[2]);
                Claimed { id: q[0].clone(), body: q[1].clone(), attempts, first_ms, queued_ms: ms(&q[3]).unwrap_or(0) }
            })
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_buckets_are_contiguous_exact_below_8_and_at_most_an_eighth_wide() {
        let mut next = 0;
        for b in 0..300 {
            let (lo, hi) = wait_bucket_bounds(b);
            assert_eq!(lo, next, "bucket {b} starts where {} ends", b.saturating_sub(1));
            assert!(hi > lo && (lo < 8 && hi == lo + 1 || (hi - lo) * 8 <= lo), "bucket {b}: [{lo}, {hi})");
            assert_eq!((wait_bucket(lo), wait_bucket(hi - 1)), (b, b));
            next = hi;
        }
        assert_eq!(wait_bucket(7 * 86_400_000), 217, "a week's wait");
    }

    #[test]
    fn the_report_hash_is_read_into_its_parts() {
        let fields = [
            ("placed", 9),
            ("session.ended", 2),
            ("j:100", 5),
            ("j:99", 4),
            ("j:older", 7),
            ("j:from", 99),
            ("j:to", 100),
            ("a:100", 3),
            ("o:100", 3),
            ("w:n", 3),
            ("w:sum", 31),
            ("w:min", 2),
            ("w:max", 20),
            ("w:18", 1),
            ("w:2", 1),
            ("w:9", 1),
        ];
        let r = parse_report(fields.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect());
        assert_eq!((r.counts.len(), r.counts["placed"], r.counts["session.ended"]), (2, 9, 2));
        assert_eq!(r.joins, [(99, 4), (100, 5)]);
        assert_eq!((r.joins_older, r.admissions.len(), r.left.len()), (7, 1, 1));
        assert_eq!(
            r.waits,
            WaitHistogram { count: 3, sum: 31, min: Some(2), max: Some(20), buckets: vec![(2, 1), (9, 1), (18, 1)] }
        );
        assert_eq!(r.waits.mean(), Some(10));
        assert_eq!(r.waits.percentile(50), Some(9), "bucket 9 holds 9 only");
        assert_eq!(r.waits.percentile(99), Some(20), "bucket 18 is [20, 22): kept within the max seen");
    }

    #[test]
    fn a_claims_answer_is_read_in_its_parts() {
        let flat: Vec<String> = [
            "",
            "3",
            "1200",
            "1",
            "c/1-0/0",
            "4:1000",
            "c/2-0/0",
            "{}",
            "",
            "1765000000000",
            "c/3-0/0",
            "{\"a\":1}",
            "2:5",
            "1765000000001",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let c = parse_claim(&flat).unwrap();
        assert_eq!((c.suspended_ms, c.pending, c.pending_bytes), (None, 3, 1200));
        assert_eq!(c.given_up, [("c/1-0/0".to_owned(), 4)]);
        assert_eq!(c.claimed.len(), 2);
        assert_eq!(
            (c.claimed[0].attempts, c.claimed[0].first_ms, c.claimed[0].queued_ms),
            (0, None, 1_765_000_000_000)
        );
        assert_eq!((c.claimed[1].attempts, c.claimed[1].first_ms), (2, Some(5)));
        let suspended: Vec<String> = ["1765000000000", "7", "10", "0"].iter().map(|s| s.to_string()).collect();
        assert_eq!(parse_claim(&suspended).unwrap().suspended_ms, Some(1_765_000_000_000));
        assert!(parse_claim(&flat[..5]).is_none(), "a cut answer is refused");
    }
}
