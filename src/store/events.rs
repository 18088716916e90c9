//! The store's side of events out (src/events.rs): the outbox the scripts write, the sale's
//! report, and the webhooks' delivery queues.

use std::collections::HashMap;

use redis::Script;

use super::conn::timed;
use super::keys::Part;
use super::{QueueStore, StoreError};
use crate::events::OutboxEntry;
use crate::ids::ConcertId;

pub(super) struct Scripts {
    claim: Script,
}

impl Scripts {
    pub(super) fn new() -> Self {
        Scripts { claim: Script::new(include_str!("webhook_claim.lua")) }
    }
}

/// A concert's report as stored (outbox.lua keeps it).
#[derive(Debug, Clone, Default)]
pub struct ReportData {
    /// Changes per kind: `placed`, `admitted`, …
    pub counts: HashMap<String, u64>,
    /// Per minute (ms / 60000): fans placed, admitted, and who left the queue.
    pub joins: Vec<(i64, u64)>,
    pub admissions: Vec<(i64, u64)>,
    pub left: Vec<(i64, u64)>,
    /// Every wait from placed to admitted (ms), shortest first.
    pub waits: Vec<i64>,
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
}

/// What one delivery attempt leaves behind.
#[derive(Debug, Clone)]
pub struct Attempt {
    pub id: String,
    /// When to try again; None: the delivery is over (delivered, or given up).
    pub next: Option<Retry>,
    /// The attempt's entry in the webhook's log.
    pub log: serde_json::Value,
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

    /// Entries waiting in the concert's outbox.
    pub async fn outbox_len(&self, concert: &ConcertId) -> Result<u64, StoreError> {
        let mut c = self.conn().await?;
        timed(redis::cmd("XLEN").arg(self.key(concert, Part::Outbox)).query_async(&mut c)).await
    }

    /// The concert's report as stored.
    pub async fn report(&self, concert: &ConcertId) -> Result<ReportData, StoreError> {
        let mut c = self.conn().await?;
        let fields: Vec<(String, u64)> =
            timed(redis::cmd("HGETALL").arg(self.key(concert, Part::Report)).query_async(&mut c)).await?;
        let waits: Vec<(String, i64)> = timed(
            redis::cmd("ZRANGE")
                .arg(self.key(concert, Part::ReportWaits))
                .arg(0)
                .arg(-1)
                .arg("WITHSCORES")
                .query_async(&mut c),
        )
        .await?;
        let mut r = ReportData { waits: waits.into_iter().map(|(_, w)| w).collect(), ..Default::default() };
        for (k, v) in fields {
            let minute = |p: &str| k.strip_prefix(p).and_then(|m| m.parse::<i64>().ok());
            if let Some(m) = minute("j:") {
                r.joins.push((m, v));
            } else if let Some(m) = minute("a:") {
                r.admissions.push((m, v));
            } else if let Some(m) = minute("o:") {
                r.left.push((m, v));
            } else {
                r.counts.insert(k, v);
            }
        }
        for series in [&mut r.joins, &mut r.admissions, &mut r.left] {
            series.sort_unstable();
        }
        Ok(r)
    }

    /// One webhook's secrets: the current one, and the one before it while it is still valid
    /// at `now_ms` (a rotation's overlap). None when the webhook has no secret.
    pub async fn webhook_secret(
        &self,
        concert: &ConcertId,
        hook: &str,
        now_ms: i64,
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
        let previous = previous.and_then(|p| {
            let (until, secret) = p.split_once(':')?;
            (until.parse::<i64>().ok()? > now_ms).then(|| secret.to_owned())
        });
        Ok(current.map(|current| WebhookSecret { current, previous }))
    }

    /// Sets one webhook's secret; the one it replaces stays valid until `previous_until_ms`
    /// (None: not at all).
    pub async fn set_webhook_secret(
        &self,
        concert: &ConcertId,
        hook: &str,
        secret: &str,
        previous_until_ms: Option<i64>,
    ) -> Result<(), StoreError> {
        let mut c = self.conn().await?;
        let key = self.key(concert, Part::WebhookSecrets);
        let previous_field = format!("{hook}:previous");
        let old: Option<String> = timed(redis::cmd("HGET").arg(&key).arg(hook).query_async(&mut c)).await?;
        let mut pipe = redis::pipe();
        pipe.atomic().hset(&key, hook, secret);
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
            .del(k.webhook(concert, hook, "due"))
            .del(k.webhook(concert, hook, "body"))
            .del(k.webhook(concert, hook, "tries"))
            .del(k.webhook(concert, hook, "log"));
        timed(pipe.query_async::<()>(&mut c)).await
    }

    /// Queues deliveries (event id, body) for a webhook, due at `now_ms`; one already queued
    /// keeps its schedule.
    pub async fn webhook_enqueue(
        &self,
        concert: &ConcertId,
        hook: &str,
        items: &[(&str, String)],
        now_ms: i64,
    ) -> Result<(), StoreError> {
        if items.is_empty() {
            return Ok(());
        }
        let (due, body) = (self.keys.webhook(concert, hook, "due"), self.keys.webhook(concert, hook, "body"));
        let mut pipe = redis::pipe();
        for chunk in items.chunks(500) {
            let mut hset = redis::cmd("HSET");
            hset.arg(&body);
            let mut zadd = redis::cmd("ZADD");
            zadd.arg(&due).arg("NX");
            for (id, b) in chunk {
                hset.arg(*id).arg(b);
                zadd.arg(now_ms).arg(*id);
            }
            pipe.add_command(hset).ignore().add_command(zadd).ignore();
        }
        let mut c = self.conn().await?;
        timed(pipe.query_async::<()>(&mut c)).await
    }

    /// Claims up to `count` due deliveries of a webhook (webhook_claim.lua).
    pub async fn webhook_claim(
        &self,
        concert: &ConcertId,
        hook: &str,
        now_ms: i64,
        visibility_ms: i64,
        count: usize,
    ) -> Result<Vec<Claimed>, StoreError> {
        let mut inv = self.scripts.events.claim.prepare_invoke();
        for part in ["due", "body", "tries"] {
            inv.key(self.keys.webhook(concert, hook, part));
        }
        inv.arg(now_ms).arg(visibility_ms).arg(count);
        let mut c = self.conn().await?;
        let flat: Vec<String> = timed(inv.invoke_async(&mut c)).await?;
        Ok(flat
            .chunks(3)
            .filter(|t| t.len() == 3)
            .map(|t| {
                let mut tries = t[2].split(':');
                let attempts = tries.next().and_then(|n| n.parse().ok()).unwrap_or(0);
                let first_ms = tries.next().and_then(|n| n.parse().ok());
                Claimed { id: t[0].clone(), body: t[1].clone(), attempts, first_ms }
            })
            .collect())
    }

    /// Records a batch of delivery attempts in one atomic call: the finished ones leave the
    /// queue, the failed ones are due again at their retry time, and each goes to the log.
    pub async fn webhook_record(
        &self,
        concert: &ConcertId,
        hook: &str,
        attempts: &[Attempt],
    ) -> Result<(), StoreError> {
        if attempts.is_empty() {
            return Ok(());
        }
        let (due, body, tries, log) = (
            self.keys.webhook(concert, hook, "due"),
            self.keys.webhook(concert, hook, "body"),
            self.keys.webhook(concert, hook, "tries"),
            self.keys.webhook(concert, hook, "log"),
        );
        let mut pipe = redis::pipe();
        pipe.atomic();
        let done: Vec<&str> = attempts.iter().filter(|a| a.next.is_none()).map(|a| a.id.as_str()).collect();
        if !done.is_empty() {
            pipe.zrem(&due, &done).ignore().hdel(&body, &done).ignore().hdel(&tries, &done).ignore();
        }
        for a in attempts {
            if let Some(r) = &a.next {
                pipe.cmd("ZADD").arg(&due).arg("XX").arg(r.at_ms).arg(&a.id).ignore();
                pipe.hset(&tries, &a.id, format!("{}:{}", r.attempts, r.first_ms)).ignore();
            }
        }
        let entries: Vec<String> = attempts.iter().map(|a| a.log.to_string()).collect();
        pipe.lpush(&log, entries).ignore().ltrim(&log, 0, LOG_KEPT - 1).ignore();
        let mut c = self.conn().await?;
        timed(pipe.query_async::<()>(&mut c)).await
    }

    /// Deliveries a webhook still has to make (due now or later).
    pub async fn webhook_pending(&self, concert: &ConcertId, hook: &str) -> Result<u64, StoreError> {
        let mut c = self.conn().await?;
        timed(redis::cmd("ZCARD").arg(self.keys.webhook(concert, hook, "due")).query_async(&mut c)).await
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
                redis::cmd("LRANGE").arg(self.keys.webhook(concert, hook, "log")).arg(0).arg(-1).query_async(&mut c),
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
