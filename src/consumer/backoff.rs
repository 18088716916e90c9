//! Capped exponential backoff for passing failures (Redis down, a transaction that failed).

use std::time::Duration;

use tokio_util::sync::CancellationToken;

const FIRST: Duration = Duration::from_millis(50);
const CAP: Duration = Duration::from_secs(5);

/// 50 ms, 100 ms, 200 ms, … up to 5 s.
#[derive(Debug, Default)]
pub struct Backoff {
    attempts: u32,
}

impl Backoff {
    pub fn new() -> Self {
        Backoff { attempts: 0 }
    }

    /// Failed attempts so far.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// The delay before the next attempt.
    pub fn next_delay(&self) -> Duration {
        FIRST.saturating_mul(1u32 << self.attempts.min(10)).min(CAP)
    }

    /// Counts an attempt and returns the delay to wait before the next one.
    pub fn advance(&mut self) -> Duration {
        let d = self.next_delay();
        self.attempts += 1;
        d
    }

    /// Sleeps for the next delay; false when `stop` was cancelled meanwhile.
    pub async fn wait(&mut self, stop: &CancellationToken) -> bool {
        let d = self.advance();
        tokio::select! {
            _ = stop.cancelled() => false,
            _ = tokio::time::sleep(d) => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_up_to_the_cap() {
        let mut b = Backoff::new();
        let mut seen = Vec::new();
        for _ in 0..10 {
            seen.push(b.next_delay());
            b.attempts += 1;
        }
        assert_eq!(seen[0], Duration::from_millis(50));
        assert_eq!(seen[1], Duration::from_millis(100));
        assert_eq!(seen[6], Duration::from_millis(3200));
        assert_eq!(seen[7], CAP);
        assert_eq!(seen[9], CAP);
    }
}
