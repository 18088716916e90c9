//! A fan's status as the contract defines it, from where the fan stands: what the public
//! listener answers a fan (polls and streams) and what the admin listener shows of one fan.

use serde::Serialize;

use crate::admission::AdmissionKeys;
use crate::store::{Outcome, Standing};

/// A fan's status, as the contract defines it.
#[derive(Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct FanStatus {
    /// pending | prequeue | waiting | admitted | completed | expired | removed | soldout
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub position: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue_length: Option<u64>,
    /// Position divided by the admission rate observed over the last ~30 s, rounded up;
    /// absent while nobody is being admitted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub eta_seconds: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admission_token: Option<String>,
    /// When the admission token expires (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admission_expires_at: Option<String>,
    /// While pending, waiting, in the pre-queue or told `soldout`: when a polling fan should ask
    /// again (s). Farther back, less often; answers come from the gateway's view of the queue,
    /// not from a Redis call.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_after_seconds: Option<u64>,
    /// In a pre-queue: when sales open (RFC 3339), and the seconds to go.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub opens_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seconds_to_open: Option<u64>,
    /// While `soldout`: the concert's `soldOutMessage`, when it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// While waiting or in the pre-queue: the lane the fan's place is in (its position is the
    /// position in that lane).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lane: Option<String>,
}

/// How often a fan told `soldout` should look again (tickets may come back: `open` again).
pub const SOLD_OUT_REFRESH_SECONDS: u64 = 30;

/// The ETA as fans see it: rounded up to 5 s under a minute, 30 s under ten minutes, a minute
/// under an hour, five minutes beyond; so it changes (and is pushed) now and then, not at every
/// small change of the observed rate.
pub fn round_eta(seconds: u64) -> u64 {
    let step = match seconds {
        0..=60 => 5,
        61..=600 => 30,
        601..=3600 => 60,
        _ => 300,
    };
    seconds.div_ceil(step).max(1) * step
}

/// How often a poll of `abandon_ms`'s concert is recorded in Redis (0: never): a few times
/// per abandonment window, at most every 5 s.
pub fn poll_record_every(abandon_ms: u64) -> u64 {
    if abandon_ms == 0 {
        0
    } else {
        (abandon_ms / 4).clamp(1, 5000)
    }
}

impl FanStatus {
    fn bare(status: &'static str) -> Self {
        FanStatus {
            status,
            position: None,
            queue_length: None,
            eta_seconds: None,
            admission_token: None,
            admission_expires_at: None,
            refresh_after_seconds: None,
            opens_at: None,
            seconds_to_open: None,
            message: None,
            lane: None,
        }
    }

    /// Names the fan's lane while it waits or is in the pre-queue.
    pub fn in_lane(mut self, lane: &str) -> Self {
        if matches!(self.status, "waiting" | "prequeue") {
            self.lane = Some(lane.to_owned());
        }
        self
    }

    /// While the concert is sold out (`message` is its `soldOutMessage`, "" for none), a fan still hoping for a place
    /// (pending, in the pre-queue or waiting) is told `soldout`; the place itself is kept, so the
    /// status is what it was once the concert opens again. Fans already let through keep their
    /// status: their sessions go on.
    pub fn or_sold_out(self, message: Option<&str>) -> Self {
        match message {
            Some(m) if matches!(self.status, "pending" | "prequeue" | "waiting") => FanStatus {
                message: (!m.is_empty()).then(|| m.to_owned()),
                refresh_after_seconds: Some(SOLD_OUT_REFRESH_SECONDS),
                ..FanStatus::bare("soldout")
            },
            _ => self,
        }
    }

    /// Whether the status can no longer change.
    pub fn is_final(&self) -> bool {
        matches!(self.status, "expired" | "removed" | "completed")
    }

    /// Builds the status from where the fan stands. `keys` re-creates the admission token
    /// (deterministic, see [`AdmissionKeys`]); None leaves it out (operators' views).
    pub fn new(standing: Standing, now_ms: i64, concert: &str, user: &str, keys: Option<&AdmissionKeys>) -> Self {
        match standing {
            Standing::Unknown => FanStatus { refresh_after_seconds: Some(2), ..FanStatus::bare("pending") },
            // In the pre-queue until the cut; the countdown is to opensAt (and the shuffle
            // follows it by the grace the watermark needs).
            Standing::Held { opens_at_ms, .. } => {
                let to_go = (opens_at_ms - now_ms).max(0).div_euclid(1000) as u64;
                FanStatus {
                    opens_at: Some(crate::clock::rfc3339(opens_at_ms)),
                    seconds_to_open: Some(to_go),
                    refresh_after_seconds: Some((to_go / 10).clamp(2, 15)),
                    ..FanStatus::bare("prequeue")
                }
            }
            Standing::Waiting { position, queue_length, observed_rate, .. } => {
                let eta = (observed_rate > 0.01).then(|| round_eta((position as f64 / observed_rate).ceil() as u64));
                // A tenth of the ETA, 2 to 15 s; without an ETA, by how far back the fan is.
                let refresh = match eta {
                    Some(eta) => (eta / 10).clamp(2, 15),
                    None if position <= 100 => 2,
                    None => 5,
                };
                FanStatus {
                    position: Some(position),
                    queue_length: Some(queue_length),
                    eta_seconds: eta,
                    refresh_after_seconds: Some(refresh),
                    ..FanStatus::bare("waiting")
                }
            }
            Standing::Left { outcome: Outcome::Admitted { iat_ms, exp_ms }, .. } if exp_ms > now_ms => FanStatus {
                admission_token: keys.map(|k| k.issue(concert, user, iat_ms, exp_ms)),
                admission_expires_at: Some(crate::clock::rfc3339(exp_ms)),
                ..FanStatus::bare("admitted")
            },
            Standing::Left { outcome: Outcome::Admitted { .. } | Outcome::Abandoned { .. }, .. } => {
                FanStatus::bare("expired")
            }
            Standing::Left { outcome: Outcome::Removed { .. }, .. } => FanStatus::bare("removed"),
            // The booking site is done with the fan: the token is not handed out again.
            Standing::Left { outcome: Outcome::Completed { .. }, .. } => FanStatus::bare("completed"),
        }
    }
}
