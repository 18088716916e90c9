//! A burst of unique fans for `make bench`: sends exactly N joins of fans never seen before as
//! fast as it can (C connections), then waits until every fan that got 202 is in Redis and
//! reports how long after its 202 the last one arrived, and whether anyone is missing or twice.
//!
//!   cargo run --release --example burst -- --base http://127.0.0.1:8080 --concert bench \
//!       --fans 100000 --connections 256 --redis redis://127.0.0.1:6379 --prefix qg
//!
//! `--redis` may be a Redis Cluster: `redis+cluster://127.0.0.1:7000,127.0.0.1:7001`.
//!
//! Prints one JSON object.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;

fn arg(name: &str, default: &str) -> String {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1).cloned()).unwrap_or_else(|| default.to_owned())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let base = arg("--base", "http://127.0.0.1:8080");
    let concert = arg("--concert", "bench");
    let fans: usize = arg("--fans", "100000").parse()?;
    let connections: usize = arg("--connections", "256").parse()?;
    let redis_url = arg("--redis", "redis://127.0.0.1:6379");
    let prefix = arg("--prefix", "qg");
    let run = format!("{:x}", std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_millis());

    let client = reqwest::Client::builder().pool_max_idle_per_host(connections).build()?;
    let gate = Arc::new(Semaphore::new(connections));
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(fans);
    for i in 0..fans {
        let permit = gate.clone().acquire_owned().await?;
        let (client, url, user) =
            (client.clone(), format!("{base}/v1/concerts/{concert}/queue"), format!("burst-{run}-{i}"));
        tasks.push(tokio::spawn(async move {
            let _permit = permit;
            let t0 = Instant::now();
            let r = client.post(url).json(&serde_json::json!({ "userId": user })).send().await;
            let status = r.map(|r| r.status().as_u16()).unwrap_or(0);
            (user, status, t0.elapsed(), Instant::now())
        }));
    }
    let mut accepted: HashSet<String> = HashSet::with_capacity(fans);
    let mut statuses = std::collections::BTreeMap::<u16, usize>::new();
    let mut latencies = Vec::with_capacity(fans);
    let mut last_accept = started;
    for t in tasks {
        let (user, status, latency, at) = t.await?;
        *statuses.entry(status).or_default() += 1;
        latencies.push(latency);
        if status == 202 {
            accepted.insert(user);
            last_accept = last_accept.max(at);
        }
    }
    let send_secs = started.elapsed().as_secs_f64();
    latencies.sort();
    let pct =
        |p: f64| latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)].as_secs_f64() * 1000.0;

    // Wait for the drain: every accepted fan in the concert's Redis LIST, exactly once.
    // One Redis, or a Redis Cluster (`redis+cluster://host:port,...`): the LIST is on one node.
    let (mut one, mut cluster) = (None, None);
    match queuegate::config::sections::cluster_nodes(&redis_url) {
        Some(nodes) => {
            cluster = Some(
                redis::cluster::ClusterClientBuilder::new(nodes)
                    .response_timeout(Duration::from_secs(30))
                    .build()?
                    .get_async_connection()
                    .await?,
            )
        }
        None => {
            one = Some(
                redis::Client::open(redis_url)?
                    .get_multiplexed_async_connection_with_config(
                        &redis::AsyncConnectionConfig::new().set_response_timeout(Some(Duration::from_secs(30))),
                    )
                    .await?,
            )
        }
    }
    let key = queuegate::store::keys::Keys::new(&prefix)
        .concert(&queuegate::ids::ConcertId::parse(concert.as_str())?, queuegate::store::keys::Part::Waiting);
    let deadline = Instant::now() + Duration::from_secs(arg("--drain-seconds", "120").parse()?);
    let ours_prefix = format!("burst-{run}-");
    // Every Redis call bounded (a million fans must not cost one 50 MB LRANGE): the list's
    // length is polled until it holds every accepted fan, then it is read in pages of 10,000.
    async fn query<T: redis::FromRedisValue>(
        one: &mut Option<redis::aio::MultiplexedConnection>,
        cluster: &mut Option<redis::cluster_async::ClusterConnection>,
        cmd: &redis::Cmd,
    ) -> redis::RedisResult<T> {
        match (one, cluster) {
            (Some(c), _) => cmd.query_async(c).await,
            (_, Some(c)) => cmd.query_async(c).await,
            _ => unreachable!("one of the two is set above"),
        }
    }
    let (mut missing, mut duplicated, mut drained_after, mut drained_since_start);
    loop {
        let len: usize = query(&mut one, &mut cluster, redis::cmd("LLEN").arg(&key)).await?;
        drained_after = last_accept.elapsed().as_secs_f64();
        drained_since_start = started.elapsed().as_secs_f64();
        if len >= accepted.len() || Instant::now() > deadline {
            let mut seen: HashSet<String> = HashSet::with_capacity(accepted.len());
            duplicated = 0;
            for from in (0..len).step_by(10_000) {
                let page: Vec<String> =
                    query(&mut one, &mut cluster, redis::cmd("LRANGE").arg(&key).arg(from).arg(from + 9_999)).await?;
                for u in page.into_iter().filter(|u| u.starts_with(&ours_prefix)) {
                    if !seen.insert(u) {
                        duplicated += 1;
                    }
                }
            }
            missing = accepted.iter().filter(|u| !seen.contains(*u)).count();
            if missing == 0 || Instant::now() > deadline {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!(
        "{}",
        serde_json::json!({
            "fans": fans,
            "connections": connections,
            "statuses": statuses,
            "accepted": accepted.len(),
            "send_seconds": send_secs,
            "accepted_per_second": accepted.len() as f64 / send_secs,
            "latency_ms": { "p50": pct(0.50), "p90": pct(0.90), "p99": pct(0.99), "max": pct(1.0) },
            "missing_in_redis": missing,
            "duplicated_in_redis": duplicated,
            "last_in_redis_after_last_202_seconds": drained_after,
            "all_in_redis_after_burst_start_seconds": drained_since_start,
        })
    );
    Ok(())
}
