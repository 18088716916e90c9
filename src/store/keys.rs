//! The Redis key scheme, in one place: the store, the tests and the tools build keys here.
//!
//! Every key of one concert is `{prefix}:{{concertId}}:{part}`: the hash tag `{concertId}`
//! puts all of a concert's keys in one Redis Cluster slot, so each script touches one slot.
//! The registry of concert ids is the only key outside any concert (its own slot).

use std::sync::Arc;

use crate::ids::{ConcertId, Lane, RequestId};

/// One of a concert's keys. `ValueEnum` gives the list of every part (`Part::value_variants`),
/// which the doc checker (tests/docs.rs) holds docs/reference-redis.md's key table against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Part {
    /// HASH userId → joinedAt (ms); presence means "has ever been queued" (dedup).
    Joined,
    /// LIST of userIds in queue order (the concert's waiting list).
    Waiting,
    /// ZSET userId → sequence number; ZRANK gives the exact position in O(log n).
    Rank,
    /// STRING: the concert's last sequence number.
    Seq,
    /// HASH userId → how the fan left the queue (`a:<iat>:<exp>`, `x:<ms>`, `r:<ms>`).
    State,
    /// HASH userId → last status poll (ms), for abandonment.
    Seen,
    /// HASH of admission counters and the rate bucket.
    Adm,
    /// ZSET userId → admission token expiry (ms): the slots in use.
    Active,
    /// STRING: the automatic admitter's lease, `<instance>:<fence>`.
    Lease,
    /// STRING: the lease's fencing counter.
    Fence,
    /// HASH: the concert's settings.
    Concert,
    /// ZSET of sequence numbers removed from the middle of the queue, at or past its head: the
    /// gateways' views work positions out from them (see view.lua).
    Gone,
    /// HASH userId → joinedAt: a scheduled concert's held fans, before the cut (apply.lua).
    Hold,
    /// LIST of held userIds who joined at or after `opensAt`, in order.
    Post,
    /// HASH of the fair start: `seed`, `commitment`, `cutOffsets`; the cut's progress (`cutAt`,
    /// `cutPost`, `cutHash`, `cutN`, `cutMoved`); `shuffledAt`, `listHash`, `prequeued`, `late`.
    Fair,
    /// HASH writer id → how many apply and confirm calls that consumer writer made on the
    /// concert: a node whose count is below what the writer saw lost some of its writes.
    Writers,
    /// HASH userId → the fan's live gate session: `<sid>:<startedAt>:<lastSeen>:<maxAt>` (ms).
    Sessions,
    /// ZSET session id → when it ended (ms): gateways learn of ended sessions from it.
    Ended,
    /// ZSET: the slots a revocation set aside (`active` renamed), ended in slices
    /// (revoke_slice.lua); absent when no revocation is being ended.
    Revoking,
    /// HASH: the sessions a revocation set aside (`sessions` renamed), with [`Part::Revoking`].
    RevokingSessions,
    /// ZSET admission token id (jti) → its expiry (ms): tokens already exchanged for a session.
    Spent,
    /// HASH of the gate: `epoch` (bumped by a revocation), `revokedAt` (ms).
    Gate,
    /// ZSET userId → the gateway's accepted stamp (ms): fans waiting for the watermark before
    /// they are placed in stamp order (apply.lua, release.lua).
    Staged,
    /// HASH of the order: `releasedTo` (the highest stamp placed), `late` (fans staged below it).
    Order,
    /// HASH userId → lane, for the fans staged or placed in a lane other than `general`: one
    /// place per fan per concert, in one lane (apply.lua), and where to find it (status.lua).
    Lanes,
    /// HASH of one lane's codes: hex SHA-256 of the code → the userId it is bound to ("" until
    /// a fan joins with it).
    Codes,
    /// STREAM: the transactional outbox (outbox.lua): changes recorded by the scripts that
    /// made them, until the event relay has published them.
    Outbox,
    /// HASH of the sale's report, kept by the scripts with their outbox entries (outbox.lua):
    /// changes per kind, fans placed, admitted and leaving the queue per minute (the last day),
    /// and the waits from placed to admitted as a fixed-size histogram. Nothing per fan.
    Report,
    /// HASH webhook id → its signing secret (`whsec_…`).
    WebhookSecrets,
    /// LIST of the concert's recorded admin changes, newest first, capped at
    /// `QUEUEGATE_ADMIN_AUDIT_KEPT` (audit.lua): each the action's JSON with its `outboxId`.
    Audit,
}

impl Part {
    pub fn as_str(self) -> &'static str {
        match self {
            Part::Joined => "joined",
            Part::Waiting => "waiting",
            Part::Rank => "rank",
            Part::Seq => "seq",
            Part::State => "state",
            Part::Seen => "seen",
            Part::Adm => "adm",
            Part::Active => "active",
            Part::Lease => "lease",
            Part::Fence => "fence",
            Part::Concert => "concert",
            Part::Gone => "gone",
            Part::Hold => "hold",
            Part::Post => "post",
            Part::Fair => "fair",
            Part::Writers => "writers",
            Part::Sessions => "sessions",
            Part::Ended => "ended",
            Part::Revoking => "revoking",
            Part::RevokingSessions => "revokingsessions",
            Part::Spent => "spent",
            Part::Gate => "gate",
            Part::Staged => "staged",
            Part::Order => "order",
            Part::Lanes => "lanes",
            Part::Codes => "codes",
            Part::Outbox => "outbox",
            Part::Report => "report",
            Part::WebhookSecrets => "whsecrets",
            Part::Audit => "audit",
        }
    }

    /// Whether each lane has its own key of this part (its line, its order, its pre-queue,
    /// its codes); the others are the concert's, shared by its lanes.
    pub fn per_lane(self) -> bool {
        matches!(
            self,
            Part::Waiting
                | Part::Rank
                | Part::Seq
                | Part::Gone
                | Part::Staged
                | Part::Order
                | Part::Hold
                | Part::Post
                | Part::Fair
                | Part::Codes
        )
    }
}

/// The parts of a webhook endpoint's delivery keys ([`Keys::webhook`]).
pub mod webhook_part {
    /// ZSET event id → when to try next (ms).
    pub const DUE: &str = "due";
    /// HASH event id → the request body.
    pub const BODY: &str = "body";
    /// HASH event id → attempts so far, first attempt's time.
    pub const TRIES: &str = "tries";
    /// ZSET event id → when it was queued (ms).
    pub const QUEUED: &str = "queued";
    /// HASH: its pending bytes, suspension, run of failures, drops.
    pub const STATE: &str = "state";
    /// LIST of its latest attempts, JSON, newest first.
    pub const LOG: &str = "log";
    /// Every part.
    pub const ALL: [&str; 6] = [DUE, BODY, TRIES, QUEUED, STATE, LOG];
}

/// Builds the keys under one prefix (`QUEUEGATE_REDIS_PREFIX`).
#[derive(Debug, Clone)]
pub struct Keys {
    prefix: Arc<str>,
}

impl Keys {
    pub fn new(prefix: &str) -> Self {
        Keys { prefix: prefix.into() }
    }

    /// `{prefix}:{{concertId}}:{part}`
    pub fn concert(&self, concert: &ConcertId, part: Part) -> String {
        format!("{}:{{{}}}:{}", self.prefix, concert, part.as_str())
    }

    /// The keys a script that writes the outbox takes, in this order (outbox.lua): the outbox,
    /// the report, and the two it reads for an admission's wait (`joined`, the concert's
    /// settings for `opensAt`).
    pub fn outbox(&self, concert: &ConcertId) -> [String; 4] {
        [Part::Outbox, Part::Report, Part::Joined, Part::Concert].map(|part| self.concert(concert, part))
    }

    /// `{prefix}:{{concertId}}:{part}` for the `general` lane (so a concert without lanes keeps
    /// its keys), `{prefix}:{{concertId}}:{part}@{lane}` for another lane's own parts; the
    /// concert's shared parts whatever the lane.
    pub fn lane(&self, concert: &ConcertId, lane: &Lane, part: Part) -> String {
        if lane.is_general() || !part.per_lane() {
            self.concert(concert, part)
        } else {
            format!("{}:{{{}}}:{}@{}", self.prefix, concert, part.as_str(), lane)
        }
    }

    /// The remembered answer of an admit request of `concert` (an empty id: no request id).
    pub fn admit_request(&self, concert: &ConcertId, request: Option<&RequestId>) -> String {
        format!("{}:{{{}}}:admitreq:{}", self.prefix, concert, request.map_or("", |r| r.as_str()))
    }

    /// A used proof-of-work challenge of `concert` (the nonce is hex, from a signed challenge).
    pub fn pow_nonce(&self, concert: &ConcertId, nonce: &str) -> String {
        format!("{}:{{{}}}:pow:{}", self.prefix, concert, nonce)
    }

    /// One of a webhook's delivery keys; `part` is one of [`webhook_part`].
    pub fn webhook(&self, concert: &ConcertId, webhook: &str, part: &str) -> String {
        format!("{}:{{{}}}:wh{}:{}", self.prefix, concert, part, webhook)
    }

    /// STRING: wrong lane codes one client (its address, as the join rate limit keys it) sent
    /// to `concert` within the current window; expires with it (code_bind.lua).
    pub fn code_failures_of_client(&self, concert: &ConcertId, client: &str) -> String {
        format!("{}:{{{}}}:codefail:{}", self.prefix, concert, client)
    }

    /// STRING: wrong codes `lane` of `concert` took within the current window; expires with it.
    pub fn code_failures_of_lane(&self, concert: &ConcertId, lane: &Lane) -> String {
        format!("{}:{{{}}}:codefail@{}", self.prefix, concert, lane)
    }

    /// The SET of every concert id.
    pub fn registry(&self) -> String {
        format!("{}:concerts", self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_concerts_keys_share_its_hash_tag() {
        let k = Keys::new("qg");
        let c = ConcertId::parse("tour-1").unwrap();
        assert_eq!(k.concert(&c, Part::Waiting), "qg:{tour-1}:waiting");
        assert_eq!(k.concert(&c, Part::Rank), "qg:{tour-1}:rank");
        assert_eq!(k.registry(), "qg:concerts");
        let fanclub = Lane::parse("fanclub").unwrap();
        assert_eq!(k.lane(&c, &fanclub, Part::Waiting), "qg:{tour-1}:waiting@fanclub");
        assert_eq!(k.lane(&c, &fanclub, Part::State), "qg:{tour-1}:state");
        assert_eq!(k.lane(&c, &Lane::general(), Part::Waiting), "qg:{tour-1}:waiting");
    }
}
