//! A light fixed-rate join generator for `make bench`: k6 cannot offer more than ~5,000 joins/s on
//! two shared cores, and wrk only runs closed-loop, so neither can say what the join latency is
//! at 10,000 joins/s. This one can, and stays cheap enough to share the machine:
//!
//! * open loop: join i is due at start + i/rate, whatever happened to the ones before it;
//! * latency is measured from when the join was *due*, not from when a connection got free, so
//!   a stall is counted in full (no coordinated omission);
//! * every join is a fan never seen before (`lg-<run>-<i>`), in the gateway's identity mode:
//!   `--identity body` (the default) names it in the body, `anonymous` sends `{}` and lets the
//!   gateway name it, `jwt` signs an HS256 identity token per join with `--jwt-secret`
//!   (`--jwt-iss`, `--jwt-aud`), as a booking site would have;
//! * plain HTTP/1.1 on keep-alive connections, one request in flight per connection (like a
//!   browser), hand-written so that the generator's CPU goes to the kernel, not to a framework.
//!
//! Usage:
//!
//! ```text
//! cargo run --release --example loadgen -- --addr 127.0.0.1:8080 --concert bench \
//!     --rate 10000 --seconds 30 --connections 512 [--identity jwt --jwt-secret S --jwt-iss I --jwt-aud A]
//! ```
//!
//! Prints one JSON object: offered and achieved rate, answers by status, latency percentiles (ms).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn arg(name: &str, default: &str) -> String {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1).cloned()).unwrap_or_else(|| default.to_owned())
}

/// What one connection saw.
#[derive(Default)]
struct Tally {
    latencies_us: Vec<u32>,
    statuses: BTreeMap<u16, u64>,
    errors: u64,
}

fn main() -> anyhow::Result<()> {
    let addr: SocketAddr = arg("--addr", "127.0.0.1:8080").parse()?;
    let concert = arg("--concert", "bench");
    let rate: f64 = arg("--rate", "10000").parse()?;
    let seconds: f64 = arg("--seconds", "30").parse()?;
    let connections: usize = arg("--connections", "512").parse()?;
    let threads: usize = arg("--threads", "1").parse()?;
    anyhow::ensure!(
        rate > 0.0 && seconds > 0.0 && connections > 0 && threads > 0,
        "rate, seconds, connections and threads must be positive"
    );
    let fans = Arc::new(Fans::from_args()?);
    let total = (rate * seconds).round() as u64;
    let run = format!("{:x}", std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_millis());

    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(threads).enable_all().build()?;
    rt.block_on(async move {
        let next = Arc::new(AtomicU64::new(0));
        let start = Instant::now() + Duration::from_millis(200);
        let head: Arc<str> = format!(
            "POST /v1/concerts/{concert}/queue HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n"
        )
        .into();
        let prefix: Arc<str> = format!("lg-{run}-").into();
        let mut tasks = Vec::with_capacity(connections);
        for _ in 0..connections {
            let (next, head, prefix, fans) = (next.clone(), head.clone(), prefix.clone(), fans.clone());
            tasks.push(tokio::spawn(async move {
                connection(addr, start, rate, total, &next, &head, &prefix, &fans).await
            }));
        }
        let mut all = Tally::default();
        for t in tasks {
            let t = t.await?;
            all.latencies_us.extend(t.latencies_us);
            all.errors += t.errors;
            for (s, n) in t.statuses {
                *all.statuses.entry(s).or_default() += n;
            }
        }
        let elapsed = start.elapsed().as_secs_f64();
        all.latencies_us.sort_unstable();
        let l = &all.latencies_us;
        let pct = |p: f64| {
            if l.is_empty() {
                0.0
            } else {
                f64::from(l[((l.len() as f64 * p) as usize).min(l.len() - 1)]) / 1000.0
            }
        };
        let accepted = all.statuses.get(&202).copied().unwrap_or(0);
        println!(
            "{}",
            serde_json::json!({
                "offered_per_second": rate,
                "seconds": elapsed,
                "sent": l.len(),
                "accepted": accepted,
                "accepted_per_second": accepted as f64 / elapsed,
                "statuses": all.statuses,
                "connection_errors": all.errors,
                "connections": connections,
                "latency_ms": { "p50": pct(0.50), "p90": pct(0.90), "p99": pct(0.99), "p999": pct(0.999), "max": pct(1.0) },
            })
        );
        anyhow::Ok(())
    })
}

/// How each join says who the fan is (the gateway's `QUEUEGATE_FAN_IDENTITY`).
enum Fans {
    Body,
    Anonymous,
    Jwt { key: jsonwebtoken::EncodingKey, iss: String, aud: String },
}

impl Fans {
    fn from_args() -> anyhow::Result<Self> {
        Ok(match arg("--identity", "body").as_str() {
            "body" => Fans::Body,
            "anonymous" => Fans::Anonymous,
            "jwt" => Fans::Jwt {
                key: jsonwebtoken::EncodingKey::from_secret(arg("--jwt-secret", "").as_bytes()),
                iss: arg("--jwt-iss", "https://tickets.example"),
                aud: arg("--jwt-aud", "queuegate"),
            },
            other => anyhow::bail!("--identity must be body, anonymous or jwt, not {other}"),
        })
    }

    /// The extra header lines and the body of fan `name`'s join.
    fn join(&self, name: &str) -> (String, String) {
        match self {
            Fans::Body => (String::new(), format!("{{\"userId\":\"{name}\"}}")),
            Fans::Anonymous => (String::new(), "{}".to_owned()),
            Fans::Jwt { key, iss, aud } => {
                let exp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() + 600;
                let claims = serde_json::json!({"sub": name, "iss": iss, "aud": aud, "exp": exp});
                let token = jsonwebtoken::encode(&jsonwebtoken::Header::default(), &claims, key).expect("HS256 signs");
                (format!("Authorization: Bearer {token}\r\n"), "{}".to_owned())
            }
        }
    }
}

/// One keep-alive connection: takes the next due join, waits for its time, sends it, reads the
/// answer; reconnects after an error.
#[allow(clippy::too_many_arguments)]
async fn connection(
    addr: SocketAddr,
    start: Instant,
    rate: f64,
    total: u64,
    next: &AtomicU64,
    head: &str,
    prefix: &str,
    fans: &Fans,
) -> Tally {
    let mut tally = Tally::default();
    let mut stream: Option<TcpStream> = None;
    let mut req = Vec::with_capacity(256);
    let mut buf = vec![0u8; 4096];
    loop {
        let i = next.fetch_add(1, Ordering::Relaxed);
        if i >= total {
            return tally;
        }
        let due = start + Duration::from_secs_f64(i as f64 / rate);
        tokio::time::sleep_until(due.into()).await;
        if stream.is_none() {
            match TcpStream::connect(addr).await {
                Ok(s) => {
                    let _ = s.set_nodelay(true);
                    stream = Some(s);
                }
                Err(_) => {
                    tally.errors += 1;
                    continue;
                }
            }
        }
        let s = stream.as_mut().expect("connected above");
        let (auth, body) = fans.join(&format!("{prefix}{i}"));
        req.clear();
        req.extend_from_slice(head.as_bytes());
        req.extend_from_slice(auth.as_bytes());
        req.extend_from_slice(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes());
        req.extend_from_slice(body.as_bytes());
        let status = match exchange(s, &req, &mut buf).await {
            Ok(status) => status,
            Err(_) => {
                tally.errors += 1;
                stream = None;
                continue;
            }
        };
        tally.latencies_us.push(due.elapsed().as_micros().min(u128::from(u32::MAX)) as u32);
        *tally.statuses.entry(status).or_default() += 1;
    }
}

/// Writes one request and reads one response (status line, headers, Content-Length body).
async fn exchange(s: &mut TcpStream, req: &[u8], buf: &mut Vec<u8>) -> std::io::Result<u16> {
    s.write_all(req).await?;
    let mut filled = 0;
    let end = loop {
        read_more(s, buf, &mut filled).await?;
        if let Some(end) = buf[..filled].windows(4).position(|w| w == b"\r\n\r\n") {
            break end;
        }
    };
    let head = std::str::from_utf8(&buf[..end]).map_err(|_| std::io::ErrorKind::InvalidData)?;
    let status: u16 = head.get(9..12).and_then(|c| c.parse().ok()).ok_or(std::io::ErrorKind::InvalidData)?;
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length").then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0);
    while filled < end + 4 + length {
        read_more(s, buf, &mut filled).await?;
    }
    Ok(status)
}

/// Appends what the socket has to `buf[..filled]`, growing `buf` when full; EOF is an error.
async fn read_more(s: &mut TcpStream, buf: &mut Vec<u8>, filled: &mut usize) -> std::io::Result<()> {
    if *filled == buf.len() {
        buf.resize(buf.len() * 2, 0);
    }
    match s.read(&mut buf[*filled..]).await? {
        0 => Err(std::io::ErrorKind::UnexpectedEof.into()),
        n => {
            *filled += n;
            Ok(())
        }
    }
}
