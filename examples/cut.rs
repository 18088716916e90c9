//! The cut of a big pre-queue, for `make bench` (scripts/bench_cut.sh): fills a scheduled
//! concert's pre-queue with `--fans` fans through the consumer's own store call (1,000 fans a
//! call, as the consumer applies a batch), then runs the cut as the admitter does
//! (`QueueStore::cut`: slices of at most 500 fans a Redis call) and checks its result.
//!
//!   cargo run --release --example cut -- --redis redis://127.0.0.1:6391 --prefix qgcut --fans 1000000
//!
//! Meant for a Redis of its own (the script starts one with `slowlog-log-slower-than 0`): the
//! SLOWLOG is reset right before the cut and read right after it, so it holds every call the
//! cut made (and those of the pinger below), with their durations inside Redis. Meanwhile
//! another connection PINGs every 10 ms, standing for every other concert on the shard: the
//! longest it waited is how long Redis stopped answering.
//!
//! Prints one JSON object: fans, the cut's wall time, its calls (as the cut counted them and as
//! SLOWLOG logged them), the slowest call and the slowest of each kind (µs inside Redis, wall
//! time: on a loaded machine it includes the time Redis waited for a core), the CPU time of
//! Redis's main thread per slice (what a slice costs whatever the load), the slowest PING seen
//! from outside, and the checks (queue length, order, published hash).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use queuegate::concerts::ConcertSettings;
use queuegate::ids::{ConcertId, Lane, UserId};
use queuegate::store::{Cut, QueueStore};

/// CPU time (µs, user + system) of Redis's main thread so far (`INFO cpu`): what the server
/// spent on commands, whatever else the machine's cores were doing.
async fn main_thread_cpu_us(c: &mut redis::aio::MultiplexedConnection) -> anyhow::Result<i64> {
    let info: String = redis::cmd("INFO").arg("cpu").query_async(c).await?;
    let field = |name: &str| -> f64 {
        info.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(':')?.trim().parse().ok()).unwrap_or(0.0)
    };
    Ok(((field("used_cpu_sys_main_thread") + field("used_cpu_user_main_thread")) * 1e6) as i64)
}

fn arg(name: &str, default: &str) -> String {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1).cloned()).unwrap_or_else(|| default.to_owned())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let redis_url = arg("--redis", "redis://127.0.0.1:6391");
    let prefix = arg("--prefix", "qgcut");
    let fans: usize = arg("--fans", "1000000").parse()?;
    let c = ConcertId::parse("cut")?;
    let lane = Lane::general();
    let mut settings = queuegate::config::Settings::for_test("unused", "unused", &prefix);
    settings.redis.redis_url = redis_url.clone();
    let store = QueueStore::new(&settings.redis)?;
    let opens_at = queuegate::clock::now_ms() + 3_600_000;
    store.put_concert(&c, &ConcertSettings { opens_at: Some(opens_at), ..ConcertSettings::open() }).await?;

    // The pre-queue, as the consumer holds it: 1,000 fans a call, four calls in flight.
    let filled = Instant::now();
    let users: Vec<UserId> = (0..fans).map(|i| UserId::parse(format!("fan{i:07}"))).collect::<Result<_, _>>()?;
    let mut calls = tokio::task::JoinSet::new();
    for (n, chunk) in users.chunks(1000).enumerate() {
        let (store, c, chunk) = (store.clone(), c.clone(), chunk.to_vec());
        calls.spawn(async move {
            let joins: Vec<(&UserId, i64)> = chunk.iter().map(|u| (u, opens_at - 1_000 - n as i64)).collect();
            store.apply(&c, &joins).await
        });
        while calls.len() >= 4 {
            calls.join_next().await.expect("a call")??;
        }
    }
    while let Some(r) = calls.join_next().await {
        r??;
    }
    let fill_s = filled.elapsed().as_secs_f64();
    let seed = store.fair_state(&c, &lane).await?.seed.ok_or_else(|| anyhow::anyhow!("no seed"))?;

    let client = redis::Client::open(redis_url.as_str())?;
    let cfg = redis::AsyncConnectionConfig::new().set_response_timeout(Some(Duration::from_secs(60)));
    let mut raw = client.get_multiplexed_async_connection_with_config(&cfg).await?;
    let _: () = redis::cmd("SLOWLOG").arg("RESET").query_async(&mut raw).await?;

    // Another concert's view of the shard: a PING every 10 ms, the longest answer kept. On a
    // thread and runtime of its own, so that the cut's work in this process never delays it.
    let stop = Arc::new(AtomicBool::new(false));
    let slowest_ping_us = Arc::new(AtomicU64::new(0));
    let pinger = {
        let (stop, slowest, client, cfg) = (stop.clone(), slowest_ping_us.clone(), client.clone(), cfg.clone());
        std::thread::spawn(move || -> anyhow::Result<u64> {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            rt.block_on(async move {
                let mut c = client.get_multiplexed_async_connection_with_config(&cfg).await?;
                let mut pings = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let t = Instant::now();
                    let _: String = redis::cmd("PING").query_async(&mut c).await?;
                    slowest.fetch_max(t.elapsed().as_micros() as u64, Ordering::Relaxed);
                    pings += 1;
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                Ok(pings)
            })
        })
    };
    let cpu0 = main_thread_cpu_us(&mut raw).await?;

    let started = Instant::now();
    let cut = store.cut(&c, &lane, &seed, "bench", 30_000).await?;
    let cut_s = started.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    let pings = pinger.join().map_err(|_| anyhow::anyhow!("the pinger panicked"))??;
    let cpu_us = main_thread_cpu_us(&mut raw).await? - cpu0;
    let Cut::Done { prequeued, after, calls } = cut else { anyhow::bail!("the cut did not finish: {cut:?}") };

    // Every call Redis ran since the reset (threshold 0): id, time, µs, arguments, ...
    let log: Vec<Vec<redis::Value>> = redis::cmd("SLOWLOG").arg("GET").arg(-1).query_async(&mut raw).await?;
    let len: u64 = redis::cmd("SLOWLOG").arg("LEN").query_async(&mut raw).await?;
    // SLOWLOG also logs the commands scripts run: counted apart. The cut's own calls are its
    // scripts (cut.lua, lease.lua), its HSCAN pages and the pool's connection checks (UNWATCH).
    let mut by_kind: std::collections::BTreeMap<String, (u64, i64, i64)> = Default::default();
    let mut times: std::collections::BTreeMap<String, Vec<i64>> = Default::default();
    let mut inner: (u64, i64, String) = (0, 0, String::new());
    for entry in &log {
        let (Some(us), Some(args)) = (entry.get(2), entry.get(3)) else { continue };
        let us: i64 = redis::from_redis_value_ref(us)?;
        let args: Vec<String> = redis::from_redis_value_ref(args)?;
        let name = args.first().map(|a| a.to_uppercase()).unwrap_or_default();
        let kind = match name.as_str() {
            "EVALSHA" | "EVAL" if args.get(2).is_some_and(|n| n == "15") => {
                format!("cut {}", args.get(18).cloned().unwrap_or_default())
            }
            "EVALSHA" | "EVAL" => "lease".to_owned(),
            "HSCAN" | "UNWATCH" | "SCRIPT" | "PING" => name,
            "SLOWLOG" => continue,
            _ => {
                inner.0 += 1;
                if us > inner.1 {
                    inner = (inner.0, us, name);
                }
                continue;
            }
        };
        times.entry(kind.clone()).or_default().push(us);
        let e = by_kind.entry(kind).or_default();
        e.0 += 1;
        e.1 = e.1.max(us);
        e.2 += us;
    }
    let ours = || by_kind.iter().filter(|(k, _)| *k != "PING");
    let cut_calls: u64 = ours().map(|(_, v)| v.0).sum();
    let slowest = ours().map(|(_, v)| v.1).max().unwrap_or(0);
    let busy_us: i64 = ours().map(|(_, v)| v.2).sum();
    let slices = by_kind.get("cut slice").map_or(0, |v| v.0);

    // The result: every fan once, in the seed's order, the published hash the pre-queue's.
    let waiting = queuegate::store::keys::Keys::new(&prefix).concert(&c, queuegate::store::keys::Part::Waiting);
    let mut queue: Vec<String> = Vec::with_capacity(fans);
    loop {
        let page: Vec<String> =
            redis::cmd("LRANGE").arg(&waiting).arg(queue.len()).arg(queue.len() + 9_999).query_async(&mut raw).await?;
        if page.is_empty() {
            break;
        }
        queue.extend(page);
    }
    let fair = store.fair_state(&c, &lane).await?;
    let p = queuegate::fairness::Published {
        commitment: fair.commitment.as_deref().unwrap_or_default(),
        seed: &seed,
        list_hash: fair.list_hash.as_deref().unwrap_or_default(),
    };
    let verified = queue.len() == fans && queuegate::fairness::verify(&p, &queue).is_ok();
    let kinds: serde_json::Map<String, serde_json::Value> = by_kind
        .iter()
        .map(|(k, (n, max, sum))| {
            let mut t = times.get(k).cloned().unwrap_or_default();
            t.sort_unstable();
            let at = |q: f64| t.get(((t.len() as f64 - 1.0) * q).round() as usize).copied().unwrap_or(0);
            let v = serde_json::json!({"calls": n, "slowestUs": max, "totalUs": sum,
                "minUs": at(0.0), "p50Us": at(0.5), "p99Us": at(0.99)});
            (k.clone(), v)
        })
        .collect();
    println!(
        "{}",
        serde_json::json!({
            "fans": fans, "prequeued": prequeued, "stagedAfter": after, "fillSeconds": fill_s,
            "cutSeconds": cut_s, "callsCounted": calls, "callsLogged": cut_calls, "slowlogLen": len,
            "slowestCallUs": slowest, "redisBusyUs": busy_us, "slowestPingUs": slowest_ping_us.load(Ordering::Relaxed),
            "redisMainThreadCpuUs": cpu_us, "cpuUsPerSlice": cpu_us / slices.max(1) as i64,
            "innerCommands": inner.0, "slowestInnerUs": inner.1, "slowestInner": inner.2,
            "pings": pings, "byKind": kinds, "queued": queue.len(), "verified": verified,
        })
    );
    anyhow::ensure!(verified, "the queue is not the pre-queue in the published seed's order");
    Ok(())
}
