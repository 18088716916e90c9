//! Placement latency for `make bench` (scripts/bench_order.sh): watches a concert's queue in Redis
//! while a load generator joins fans, and reports how long each fan took from the gateway's
//! accepted stamp to its place in the queue, and the worst order inversion.
//!
//!   cargo run --release --example placement -- --redis redis://127.0.0.1:6379 --prefix qg \
//!       --concert bench --quiet-seconds 5 --max-seconds 120
//!
//! Every 20 ms it reads the queue's new tail (LRANGE from where it left off; the bench admits
//! nobody, so the LIST only grows) and the new fans' stamps (`joined`), and counts a fan placed
//! when it is first seen. It stops once the queue has not grown for `--quiet-seconds` after its
//! first fan. The stamp is the gateway's clock and the watcher's is the same machine's, so the
//! latency is accept → placed (plus up to 20 ms of polling).
//!
//! Prints one JSON object: fans, latency percentiles (ms), the worst overtaking (ms: how much
//! later than a fan's stamp the latest stamp placed ahead of it is; 0 when placed in stamp
//! order), and how many fans were overtaken by more than 1 s.

use std::time::{Duration, Instant};

fn arg(name: &str, default: &str) -> String {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1).cloned()).unwrap_or_else(|| default.to_owned())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let redis_url = arg("--redis", "redis://127.0.0.1:6379");
    let prefix = arg("--prefix", "qg");
    let concert = queuegate::ids::ConcertId::parse(arg("--concert", "bench").as_str())?;
    let quiet = Duration::from_secs(arg("--quiet-seconds", "5").parse()?);
    let max = Duration::from_secs(arg("--max-seconds", "120").parse()?);
    let keys = queuegate::store::keys::Keys::new(&prefix);
    let (list_key, joined_key) = (
        keys.concert(&concert, queuegate::store::keys::Part::Waiting),
        keys.concert(&concert, queuegate::store::keys::Part::Joined),
    );
    let mut c = redis::Client::open(redis_url)?
        .get_multiplexed_async_connection_with_config(
            &redis::AsyncConnectionConfig::new().set_response_timeout(Some(Duration::from_secs(30))),
        )
        .await?;
    let started = Instant::now();
    let mut seen = 0usize;
    let mut last_growth: Option<Instant> = None;
    let mut stamps: Vec<i64> = Vec::new();
    let mut latencies: Vec<i64> = Vec::new();
    loop {
        let len: usize = redis::cmd("LLEN").arg(&list_key).query_async(&mut c).await?;
        if len > seen {
            let now = queuegate::clock::now_ms();
            let users: Vec<String> =
                redis::cmd("LRANGE").arg(&list_key).arg(seen).arg(len - 1).query_async(&mut c).await?;
            let at: Vec<Option<i64>> = redis::cmd("HMGET").arg(&joined_key).arg(&users).query_async(&mut c).await?;
            for s in at.into_iter().flatten() {
                stamps.push(s);
                latencies.push(now - s);
            }
            seen = len;
            last_growth = Some(Instant::now());
        }
        if last_growth.is_some_and(|t| t.elapsed() >= quiet) || started.elapsed() >= max {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    anyhow::ensure!(!latencies.is_empty(), "nobody was placed within {max:?}");
    let (mut ahead, mut worst, mut over_1s) = (i64::MIN, 0i64, 0usize);
    for s in &stamps {
        if ahead > *s {
            worst = worst.max(ahead - s);
            if ahead - s > 1000 {
                over_1s += 1;
            }
        }
        ahead = ahead.max(*s);
    }
    latencies.sort_unstable();
    let pct = |p: f64| latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)];
    println!(
        "{}",
        serde_json::json!({
            "fans": latencies.len(),
            "placement_ms": { "p50": pct(0.50), "p90": pct(0.90), "p99": pct(0.99), "max": pct(1.0) },
            "worst_overtaking_ms": worst,
            "overtaken_by_more_than_1s": over_1s,
        })
    );
    Ok(())
}
