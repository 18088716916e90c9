//! A whole audience watching, for `make bench`: joins N fans, holds one status stream (SSE) per
//! fan, and reports how long after each fan's admission its stream said so.
//!
//! * joins go through `--addr` like any fan's (body identity mode: the gateway must run with
//!   `QUEUEGATE_FAN_IDENTITY=body`), `--join-connections` at a time;
//! * each stream is its own TCP connection, bound to one of `--sources` loopback addresses
//!   (127.0.0.2, 127.0.0.3, ...) so that many streams do not run out of ephemeral ports;
//! * push latency: a fan's admission time is its token's expiry (`admissionExpiresAt`, ms) minus
//!   the concert's token lifetime (`--ttl-seconds`, which the caller set), both Redis's clock, and
//!   the latency is when the `admitted` event arrived minus that (same machine, same clock);
//! * `--latencies-file`: every push latency (ms), one per line, for merging several runs;
//! * `--lanes a,b`: fan i joins lane i mod n of the list (presale lanes);
//! * `--ready-dir`: writes `joined` there once every join is answered (then waits `--pause`
//!   seconds, so the caller can sample the gateway's memory before the streams), and `streaming`
//!   once every stream has shown its first status. Admission is the caller's to start.
//!
//! It stops by itself once every stream has ended (admitted) or after `--seconds`.
//!
//! ```text
//! cargo run --release --example watchers -- --addr 127.0.0.1:8080 --concert watch --fans 15000 \
//!     --sources 4 --ttl-seconds 600 --ready-dir /tmp/w --seconds 120
//! ```
//!
//! Prints one JSON object.

use std::hash::BuildHasher;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::Semaphore;

fn arg(name: &str, default: &str) -> String {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1).cloned()).unwrap_or_else(|| default.to_owned())
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// What one stream saw.
#[derive(Default)]
struct StreamReport {
    opened: bool,
    /// Openings answered 503 or 429 and tried again.
    retries: u64,
    events: u64,
    /// ms from the fan's admission to its `admitted` event.
    push_latency_ms: Option<i64>,
    error: Option<String>,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let addr: SocketAddr = arg("--addr", "127.0.0.1:8080").parse()?;
    let concert = arg("--concert", "watch");
    let fans: usize = arg("--fans", "1000").parse()?;
    let sources: u8 = arg("--sources", "4").parse()?;
    let first_source: Ipv4Addr = arg("--first-source", "127.0.0.2").parse()?;
    let join_connections: usize = arg("--join-connections", "64").parse()?;
    let ttl_ms: i64 = arg("--ttl-seconds", "600").parse::<i64>()? * 1000;
    let pause = Duration::from_secs(arg("--pause", "0").parse()?);
    let seconds: u64 = arg("--seconds", "120").parse()?;
    let ready_dir = arg("--ready-dir", "");
    let latencies_file = arg("--latencies-file", "");
    // `--lanes fanclub,general`: fan i joins lane i mod n (none: the body names no lane).
    let lanes: Vec<String> = arg("--lanes", "").split(',').filter(|l| !l.is_empty()).map(str::to_owned).collect();
    anyhow::ensure!(
        fans > 0 && sources > 0 && join_connections > 0,
        "fans, sources and join connections must be positive"
    );
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let run = format!("{:x}", now_ms());
    let mark = |what: &str| {
        if !ready_dir.is_empty() {
            let _ = std::fs::write(format!("{ready_dir}/{what}"), b"");
        }
    };

    // 1. Everyone joins.
    let started = Instant::now();
    let client = reqwest::Client::builder().pool_max_idle_per_host(join_connections).build()?;
    let gate = Arc::new(Semaphore::new(join_connections));
    let mut joins = Vec::with_capacity(fans);
    for i in 0..fans {
        let permit = gate.clone().acquire_owned().await?;
        let (client, url, user) =
            (client.clone(), format!("http://{addr}/v1/concerts/{concert}/queue"), format!("watch-{run}-{i}"));
        let lane = (!lanes.is_empty()).then(|| lanes[i % lanes.len()].clone());
        joins.push(tokio::spawn(async move {
            let _permit = permit;
            let body = match lane {
                Some(lane) => serde_json::json!({ "userId": user, "lane": lane }),
                None => serde_json::json!({ "userId": user }),
            };
            let r = client.post(&url).json(&body).send().await.ok()?;
            if r.status() != 202 {
                return None;
            }
            let v: serde_json::Value = r.json().await.ok()?;
            Some((user, v["token"].as_str()?.to_owned()))
        }));
    }
    let mut joined = Vec::with_capacity(fans);
    for j in joins {
        if let Some(fan) = j.await? {
            joined.push(fan);
        }
    }
    let join_seconds = started.elapsed().as_secs_f64();
    drop(client);
    mark("joined");
    tokio::time::sleep(pause).await;

    // 2. Everyone watches.
    let opened = Arc::new(AtomicUsize::new(0));
    let connecting = Arc::new(Semaphore::new(256));
    let total = joined.len();
    let mut streams = Vec::with_capacity(total);
    for (i, (user, token)) in joined.into_iter().enumerate() {
        let source = IpAddr::V4(Ipv4Addr::from(u32::from(first_source) + (i % sources as usize) as u32));
        let path = format!("/v1/concerts/{concert}/queue/{user}/events");
        let (opened, connecting, ready_dir) = (opened.clone(), connecting.clone(), ready_dir.clone());
        streams.push(tokio::spawn(async move {
            let mut report = StreamReport::default();
            let result = tokio::time::timeout_at(deadline.into(), async {
                watch(addr, source, &path, &token, ttl_ms, &connecting, &mut report, || {
                    if opened.fetch_add(1, Ordering::Relaxed) + 1 == total && !ready_dir.is_empty() {
                        let _ = std::fs::write(format!("{ready_dir}/streaming"), b"");
                    }
                })
                .await
            })
            .await;
            match result {
                Ok(Ok(())) => {}
                Ok(Err(e)) => report.error = Some(e.to_string()),
                Err(_) => report.error = Some("still open at the deadline".into()),
            }
            report
        }));
    }
    let mut reports = Vec::with_capacity(total);
    for s in streams {
        reports.push(s.await?);
    }

    let mut latencies: Vec<i64> = reports.iter().filter_map(|r| r.push_latency_ms).collect();
    latencies.sort_unstable();
    if !latencies_file.is_empty() {
        let lines: Vec<String> = latencies.iter().map(i64::to_string).collect();
        std::fs::write(&latencies_file, lines.join("\n") + "\n")?;
    }
    let pct = |p: f64| -> i64 {
        if latencies.is_empty() {
            return -1;
        }
        latencies[((latencies.len() as f64 * p).ceil() as usize).clamp(1, latencies.len()) - 1]
    };
    let mut errors = std::collections::BTreeMap::<String, u64>::new();
    for e in reports.iter().filter_map(|r| r.error.as_deref()) {
        *errors.entry(e.chars().take(60).collect()).or_default() += 1;
    }
    let events: u64 = reports.iter().map(|r| r.events).sum();
    println!(
        "{}",
        serde_json::json!({
            "fans": fans,
            "joined": total,
            "join_seconds": join_seconds,
            "streams_opened": reports.iter().filter(|r| r.opened).count(),
            "open_retries": reports.iter().map(|r| r.retries).sum::<u64>(),
            "admitted_seen": latencies.len(),
            "status_events": events,
            "errors": errors,
            "push_latency_ms": { "p50": pct(0.50), "p90": pct(0.90), "p99": pct(0.99), "max": pct(1.0) },
        })
    );
    Ok(())
}

/// Holds one stream until its fan is admitted (Ok) or the stream fails.
#[allow(clippy::too_many_arguments)]
async fn watch(
    addr: SocketAddr,
    source: IpAddr,
    path: &str,
    token: &str,
    ttl_ms: i64,
    connecting: &Semaphore,
    report: &mut StreamReport,
    on_first_status: impl FnOnce(),
) -> anyhow::Result<()> {
    // Open the stream; a 503 or 429 (the gateway shedding a rush of openings) is retried after
    // its Retry-After, as a fan's page would, a few times.
    let mut attempts = 0;
    let (mut s, mut buf, body_start) = loop {
        let (s, buf, body_start) = {
            let _turn = connecting.acquire().await?;
            open(addr, source, path, token).await?
        };
        let head = String::from_utf8_lossy(&buf[..body_start]).to_string();
        if head.starts_with("HTTP/1.1 200") {
            break (s, buf, body_start);
        }
        attempts += 1;
        let busy = head.starts_with("HTTP/1.1 503") || head.starts_with("HTTP/1.1 429");
        anyhow::ensure!(busy && attempts < 10, "{}", head.lines().next().unwrap_or(""));
        report.retries += 1;
        let retry_after: u64 = head
            .lines()
            .find_map(|l| l.to_ascii_lowercase().strip_prefix("retry-after:").map(|v| v.trim().to_owned()))
            .and_then(|v| v.parse().ok())
            .unwrap_or(1);
        let jitter = std::collections::hash_map::RandomState::new().hash_one(token) % 1000;
        tokio::time::sleep(Duration::from_millis(retry_after * 1000 + jitter)).await;
    };
    let mut chunk = [0u8; 2048];
    report.opened = true;
    buf.drain(..body_start);
    // The body is chunked; each chunk holds whole SSE frames.
    let mut on_first = Some(on_first_status);
    let mut text = String::new();
    let mut ended = false;
    loop {
        while let Some(line_end) = buf.windows(2).position(|w| w == b"\r\n") {
            let size = usize::from_str_radix(std::str::from_utf8(&buf[..line_end])?.trim(), 16)?;
            if size == 0 {
                ended = true;
                break;
            }
            if buf.len() < line_end + 2 + size + 2 {
                break;
            }
            text.push_str(std::str::from_utf8(&buf[line_end + 2..line_end + 2 + size])?);
            buf.drain(..line_end + 2 + size + 2);
        }
        while let Some(end) = text.find("\n\n") {
            let frame: String = text.drain(..end + 2).collect();
            if frame.contains("event: reconnect") {
                anyhow::bail!("told to reconnect");
            }
            let Some(data) = frame.lines().find_map(|l| l.strip_prefix("data: ")) else { continue };
            let v: serde_json::Value = serde_json::from_str(data)?;
            report.events += 1;
            if let Some(f) = on_first.take() {
                f();
            }
            match v["status"].as_str() {
                Some("admitted") => {
                    let exp = v["admissionExpiresAt"].as_str().and_then(rfc3339_ms);
                    let exp = exp.ok_or_else(|| anyhow::anyhow!("admitted without admissionExpiresAt: {v}"))?;
                    report.push_latency_ms = Some(now_ms() - (exp - ttl_ms));
                    return Ok(());
                }
                Some("waiting" | "pending") => {}
                other => anyhow::bail!("status {other:?}"),
            }
        }
        anyhow::ensure!(!ended, "the stream ended before admission");
        let n = s.read(&mut chunk).await?;
        anyhow::ensure!(n > 0, "closed before admission");
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Connects from `source`, sends the stream's request and reads the response head: (the
/// connection, what was read, where the body starts).
async fn open(
    addr: SocketAddr,
    source: IpAddr,
    path: &str,
    token: &str,
) -> anyhow::Result<(TcpStream, Vec<u8>, usize)> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(source, 0))?;
    let mut s = socket.connect(addr).await?;
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nAccept: text/event-stream\r\n\r\n"
    );
    s.write_all(request.as_bytes()).await?;
    let mut buf: Vec<u8> = Vec::with_capacity(1024);
    let mut chunk = [0u8; 2048];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            return Ok((s, buf, end + 4));
        }
        let n = s.read(&mut chunk).await?;
        anyhow::ensure!(n > 0, "closed before the response head");
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// `2026-11-22T20:31:36.735Z` (UTC, as the gateway writes it) in ms since the epoch.
fn rfc3339_ms(t: &str) -> Option<i64> {
    let t = t.strip_suffix('Z')?;
    let (date, time) = t.split_once('T')?;
    let mut d = date.split('-').map(|p| p.parse::<i64>());
    let (y, m, day) = (d.next()?.ok()?, d.next()?.ok()?, d.next()?.ok()?);
    let (hms, frac) = time.split_once('.').unwrap_or((time, "0"));
    let mut h = hms.split(':').map(|p| p.parse::<i64>());
    let (hh, mm, ss) = (h.next()?.ok()?, h.next()?.ok()?, h.next()?.ok()?);
    let ms: i64 = format!("{frac:0<3}")[..3].parse().ok()?;
    // Days from 1970-01-01 to y-m-day (Howard Hinnant's days_from_civil).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(((days * 24 + hh) * 60 + mm) * 60_000 + ss * 1000 + ms)
}
