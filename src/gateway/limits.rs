//! How much one client and one fan may take from the front door.
//!
//! Four keyed rate limits (governor's GCRA, one small entry per key): joins per client address
//! (IPv6 by /64, the address behind trusted proxies), gate checks without a live session per
//! client address, joins per fan, and status reads per fan.
//! Their memory is bounded by [`Limits::prune`], which the supervised task "rate limiter
//! pruning" calls every few seconds: a key whose budget is full again is indistinguishable from
//! one never seen, so it is dropped. Streams per fan are counted in [`FanStreams`].

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Mutex;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::config::HttpSettings;
use crate::identity::ClientKey;
use crate::ids::{ConcertId, UserId};
use crate::problem::ApiError;

type FanKey = (ConcertId, UserId);

/// The front door's rate limits; a limit of 0 is off.
pub struct Limits {
    joins_per_client: Option<DefaultKeyedRateLimiter<ClientKey>>,
    gate_per_client: Option<DefaultKeyedRateLimiter<ClientKey>>,
    joins_per_fan: Option<DefaultKeyedRateLimiter<FanKey>>,
    status_per_fan: Option<DefaultKeyedRateLimiter<FanKey>>,
}

fn keyed<K: std::hash::Hash + Eq + Clone>(per_second: u32) -> Option<DefaultKeyedRateLimiter<K>> {
    NonZeroU32::new(per_second).map(|n| RateLimiter::keyed(Quota::per_second(n)))
}

/// 429 with the whole seconds until `limiter` lets the key through again. The key is built
/// only when the limit is on: the status path is hot, and a limit that is off costs nothing.
fn check<K: std::hash::Hash + Eq + Clone>(
    limiter: &Option<DefaultKeyedRateLimiter<K>>,
    key: impl FnOnce() -> K,
) -> Result<(), ApiError> {
    let Some(limiter) = limiter else { return Ok(()) };
    limiter.check_key(&key()).map_err(|not_until| {
        let wait = not_until.wait_time_from(DefaultClock::default().now());
        ApiError::RateLimited { retry_after_secs: wait.as_secs_f64().ceil().max(1.0) as u64 }
    })
}

/// `QUEUEGATE_GATE_CHECKS_PER_CLIENT` when it is not set and proxies are trusted.
pub const DEFAULT_GATE_CHECKS_PER_CLIENT: u32 = 100;

impl Limits {
    /// The limits of `http`; `behind_proxies`: whether `QUEUEGATE_TRUSTED_PROXIES` names any,
    /// which decides the gate's default (see [`HttpSettings::gate_checks_per_client`]).
    pub fn new(http: &HttpSettings, behind_proxies: bool) -> Self {
        let gate =
            http.gate_checks_per_client.unwrap_or(if behind_proxies { DEFAULT_GATE_CHECKS_PER_CLIENT } else { 0 });
        Limits {
            joins_per_client: keyed(http.rate_limit_per_ip),
            gate_per_client: keyed(gate),
            joins_per_fan: keyed(http.fan_joins_per_second),
            status_per_fan: keyed(http.fan_status_per_second),
        }
    }

    /// A join from `client` (what the limit counts, see [`crate::identity::TrustedProxies::client_key`]).
    pub fn join_from(&self, client: Option<ClientKey>) -> Result<(), ApiError> {
        match client {
            Some(key) => check(&self.joins_per_client, || key),
            None => Ok(()),
        }
    }

    /// A gate check from `client` that did not pass on a live session.
    pub fn gate_from(&self, client: Option<ClientKey>) -> Result<(), ApiError> {
        match client {
            Some(key) => check(&self.gate_per_client, || key),
            None => Ok(()),
        }
    }

    /// A join of `user` (after its identity is known).
    pub fn join_of(&self, concert: &ConcertId, user: &UserId) -> Result<(), ApiError> {
        check(&self.joins_per_fan, || (concert.clone(), user.clone()))
    }

    /// A status read (or stream opening) of `user`.
    pub fn status_of(&self, concert: &ConcertId, user: &UserId) -> Result<(), ApiError> {
        check(&self.status_per_fan, || (concert.clone(), user.clone()))
    }

    /// Drops the keys whose budget is full again and gives their memory back.
    pub fn prune(&self) {
        fn prune_one<K: std::hash::Hash + Eq + Clone>(l: &Option<DefaultKeyedRateLimiter<K>>) {
            if let Some(l) = l {
                l.retain_recent();
                l.shrink_to_fit();
            }
        }
        prune_one(&self.joins_per_client);
        prune_one(&self.gate_per_client);
        prune_one(&self.joins_per_fan);
        prune_one(&self.status_per_fan);
    }

    /// Keys held right now, over all four limits (for tests and metrics).
    pub fn keys_held(&self) -> usize {
        self.joins_per_client.as_ref().map_or(0, |l| l.len())
            + self.gate_per_client.as_ref().map_or(0, |l| l.len())
            + self.joins_per_fan.as_ref().map_or(0, |l| l.len())
            + self.status_per_fan.as_ref().map_or(0, |l| l.len())
    }
}

/// Open status streams per fan.
#[derive(Default)]
pub struct FanStreams(Mutex<HashMap<FanKey, u8>>);

impl FanStreams {
    /// Takes one of the fan's `max` stream slots; false when it has none left.
    pub fn take(&self, concert: &ConcertId, user: &UserId, max: u8) -> bool {
        let mut open = self.0.lock().expect("never poisoned");
        let n = open.entry((concert.clone(), user.clone())).or_default();
        if *n >= max {
            return false;
        }
        *n += 1;
        true
    }

    /// Gives a slot back.
    pub fn give_back(&self, concert: &ConcertId, user: &UserId) {
        let mut open = self.0.lock().expect("never poisoned");
        let key = (concert.clone(), user.clone());
        if let Some(n) = open.get_mut(&key) {
            *n -= 1;
            if *n == 0 {
                open.remove(&key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::IpAddr;

    #[test]
    fn pruning_forgets_clients_whose_budget_is_full_again() {
        let mut http = crate::config::Settings::for_test("t", "g", "p").http;
        http.rate_limit_per_ip = 1000;
        let limits = Limits::new(&http, false);
        for i in 0..5000u32 {
            limits.join_from(Some(ClientKey::Ip(IpAddr::from(i.to_be_bytes())))).unwrap();
        }
        assert_eq!(limits.keys_held(), 5000);
        std::thread::sleep(std::time::Duration::from_millis(20)); // > 1 ms, the refill of one join
        limits.prune();
        assert_eq!(limits.keys_held(), 0, "a made-up address costs memory only while it is limited");
    }

    #[test]
    fn the_gate_budget_is_per_client_and_off_by_default_without_trusted_proxies() {
        let ip = |s: &str| Some(ClientKey::Ip(s.parse().unwrap()));
        let mut http = crate::config::Settings::for_test("t", "g", "p").http;
        http.gate_checks_per_client = None;
        let open = Limits::new(&http, false);
        assert!((0..1000).all(|_| open.gate_from(ip("10.0.0.1")).is_ok()), "one proxy's address is the whole site");
        let behind = Limits::new(&http, true);
        let n = DEFAULT_GATE_CHECKS_PER_CLIENT as usize;
        let burst: Vec<bool> = (0..n + 1).map(|_| behind.gate_from(ip("198.51.100.7")).is_ok()).collect();
        assert!(burst[..n].iter().all(|ok| *ok) && !burst[n], "the default budget, then 429");
        assert!(behind.gate_from(ip("198.51.100.8")).is_ok(), "another client has its own");
        http.gate_checks_per_client = Some(2);
        let set = Limits::new(&http, false);
        let checks: Vec<bool> = (0..3).map(|_| set.gate_from(ip("10.0.0.1")).is_ok()).collect();
        assert_eq!(checks, [true, true, false], "a value set applies whatever the proxies");
        http.gate_checks_per_client = Some(0);
        let off = Limits::new(&http, true);
        assert!((0..1000).all(|_| off.gate_from(ip("10.0.0.1")).is_ok()), "0: off");
    }

    #[test]
    fn one_fan_cannot_rejoin_or_poll_past_its_budget_while_others_can() {
        let mut http = crate::config::Settings::for_test("t", "g", "p").http;
        (http.fan_joins_per_second, http.fan_status_per_second) = (2, 3);
        let limits = Limits::new(&http, false);
        let (c, fan, other) =
            (ConcertId::parse("c").unwrap(), UserId::parse("fan").unwrap(), UserId::parse("o").unwrap());
        let joins: Vec<bool> = (0..3).map(|_| limits.join_of(&c, &fan).is_ok()).collect();
        assert_eq!(joins, [true, true, false]);
        let reads: Vec<bool> = (0..4).map(|_| limits.status_of(&c, &fan).is_ok()).collect();
        assert_eq!(reads, [true, true, true, false]);
        assert!(limits.join_of(&c, &other).is_ok() && limits.status_of(&c, &other).is_ok());
    }
}
