//! Background work that runs every so often until shutdown.

use std::fmt::Display;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// Runs `round` every `every` until `stop` is cancelled. Missed ticks are not made up. A failing
/// round is logged once when the failures start and once when they end, not on every tick, so
/// an outage does not flood the logs; `what` names the work in those lines.
pub async fn every<E, F, Fut>(every: Duration, stop: CancellationToken, what: &'static str, mut round: F)
where
    E: Display,
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), E>>,
{
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        match round().await {
            Ok(()) if failing => {
                tracing::info!(what, "recovered");
                failing = false;
            }
            Ok(()) => {}
            Err(e) if !failing => {
                tracing::warn!(what, error = %e, "failed; retrying every tick");
                failing = true;
            }
            Err(_) => {}
        }
    }
}
