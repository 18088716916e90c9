//! The gate's benchmark driver (scripts/bench_gate.sh): against a running gateway and consumer.
//!
//! `gate_sessions cookie <public> <admin> <admin-token> <concert> <out-file>`: one fan joins, is
//! admitted and exchanges the token at the gate; the session cookie is written to `out-file`
//! (for wrk).
//!
//! `gate_sessions sessions <public> <admin> <admin-token> <concert> <fans> <idle-s> <gateway-pid>
//! <redis-port> <summary.json>`: `fans` fans join, are admitted and each exchanges its token for
//! a session; Redis's memory (INFO used_memory) and the gateway's RSS are read before and after
//! the exchanges; then nobody checks again, and the live sessions are counted every 250 ms until
//! the admission rounds have ended them all for idleness: how late, against `idle-s` after each
//! one's last check.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::{json, Value};

type Res<T> = Result<T, Box<dyn std::error::Error>>;

struct Target {
    http: reqwest::Client,
    public: String,
    admin: String,
    token: String,
    concert: String,
}

impl Target {
    async fn admin(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Res<Value> {
        let mut r = self.http.request(method, format!("{}{path}", self.admin)).bearer_auth(&self.token);
        if let Some(b) = body {
            r = r.json(&b);
        }
        let r = r.send().await?;
        let status = r.status();
        let v: Value = r.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            return Err(format!("{path}: {status} {v}").into());
        }
        Ok(v)
    }

    async fn concert(&self) -> Res<Value> {
        self.admin(reqwest::Method::GET, &format!("/admin/v1/concerts/{}", self.concert), None).await
    }

    /// Joins `users` (64 at once), waits until they are all waiting, admits them all: their tokens.
    async fn admitted(&self, users: Vec<String>) -> Res<Vec<String>> {
        let url = format!("{}/v1/concerts/{}/queue", self.public, self.concert);
        let joined: Vec<u16> = futures_util::stream::iter(users.iter().cloned())
            .map(|u| {
                let (http, url) = (self.http.clone(), url.clone());
                async move {
                    for _ in 0..20 {
                        match http.post(&url).json(&json!({"userId": u})).send().await {
                            Ok(r) if r.status() == 202 => return 202,
                            _ => tokio::time::sleep(Duration::from_millis(200)).await,
                        }
                    }
                    0
                }
            })
            .buffer_unordered(64)
            .collect()
            .await;
        let accepted = joined.iter().filter(|s| **s == 202).count();
        if accepted != users.len() {
            return Err(format!("{accepted} of {} joins accepted", users.len()).into());
        }
        let before = self.concert().await?["waiting"].as_u64().unwrap_or(0) as usize;
        let until = Instant::now() + Duration::from_secs(300);
        while (self.concert().await?["waiting"].as_u64().unwrap_or(0) as usize) < users.len().min(before + users.len())
        {
            if Instant::now() > until {
                return Err("fans not placed within 300 s".into());
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        let mut tokens = Vec::with_capacity(users.len());
        while tokens.len() < users.len() {
            let path = format!("/admin/v1/concerts/{}/admit", self.concert);
            let got = self.admin(reqwest::Method::POST, &path, Some(json!({"count": 1000}))).await?;
            let batch = got["admitted"].as_array().cloned().unwrap_or_default();
            if batch.is_empty() {
                return Err(format!("admitted {} of {}", tokens.len(), users.len()).into());
            }
            tokens.extend(batch.iter().filter_map(|a| a["admissionToken"].as_str().map(str::to_owned)));
        }
        Ok(tokens)
    }

    /// Exchanges a token at the gate as nginx would ask, in a browser the gate first sent to the
    /// room (its nonce cookie and the bind in `return`): the session cookie (`name=value`).
    async fn exchange(http: &reqwest::Client, gate: &str, token: &str) -> Res<String> {
        let to_room = http
            .get(format!("{gate}?redirect=true"))
            .header("X-Original-URI", "/book")
            .header("X-Forwarded-Host", "shop.example")
            .send()
            .await?;
        let nonce = to_room.headers().get("set-cookie").ok_or("no nonce cookie")?.to_str()?;
        let nonce = nonce.split(';').next().unwrap_or_default().to_owned();
        let room = url::Url::parse(to_room.headers().get("location").ok_or("no room")?.to_str()?)?;
        let back = room.query_pairs().find(|(k, _)| k == "return").ok_or("no return")?.1.into_owned();
        let back = url::Url::parse(&back)?;
        let r = http
            .get(gate)
            .header("X-Original-URI", format!("{}?{}&queuegate_token={token}", back.path(), back.query().unwrap_or("")))
            .header("X-Forwarded-Host", "shop.example")
            .header("Cookie", nonce)
            .send()
            .await?;
        let set = r.headers().get("set-cookie").ok_or(format!("no cookie: {}", r.status()))?.to_str()?;
        Ok(set.split(';').next().unwrap_or_default().to_owned())
    }
}

async fn used_memory(redis_port: &str) -> Res<i64> {
    let client = redis::Client::open(format!("redis://127.0.0.1:{redis_port}"))?;
    let mut c = client.get_multiplexed_async_connection().await?;
    let info: String = redis::cmd("INFO").arg("memory").query_async(&mut c).await?;
    Ok(info.lines().find_map(|l| l.strip_prefix("used_memory:")).ok_or("no used_memory")?.trim().parse()?)
}

fn rss_kib(pid: &str) -> Res<i64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    Ok(s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .ok_or("no VmRSS")?
        .trim()
        .trim_end_matches(" kB")
        .trim()
        .parse()?)
}

#[tokio::main]
async fn main() -> Res<()> {
    let args: Vec<String> = std::env::args().collect();
    let t = Target {
        http: reqwest::Client::builder()
            .pool_max_idle_per_host(128)
            .redirect(reqwest::redirect::Policy::none())
            .build()?,
        public: args[2].clone(),
        admin: args[3].clone(),
        token: args[4].clone(),
        concert: args[5].clone(),
    };
    let gate = format!("{}/v1/concerts/{}/gate", t.public, t.concert);
    match args[1].as_str() {
        "cookie" => {
            let tokens = t.admitted(vec!["wrk-fan".into()]).await?;
            let cookie = Target::exchange(&t.http, &gate, &tokens[0]).await?;
            std::fs::write(&args[6], cookie)?;
        }
        "sessions" => {
            let (fans, idle): (usize, u64) = (args[6].parse()?, args[7].parse()?);
            let (pid, redis_port, out) = (&args[8], &args[9], &args[10]);
            let users: Vec<String> = (0..fans).map(|i| format!("gs-{i:06}")).collect();
            let tokens = t.admitted(users).await?;
            let (mem0, rss0) = (used_memory(redis_port).await?, rss_kib(pid)?);
            let started = Instant::now();
            let cookies: Vec<Res<String>> = futures_util::stream::iter(tokens.iter().cloned())
                .map(|tok| {
                    let (http, gate) = (t.http.clone(), gate.clone());
                    async move { Target::exchange(&http, &gate, &tok).await }
                })
                .buffer_unordered(64)
                .collect()
                .await;
            let exchanged_in = started.elapsed();
            let made = cookies.iter().filter(|c| c.is_ok()).count();
            let (mem1, rss1) = (used_memory(redis_port).await?, rss_kib(pid)?);
            let live = t.concert().await?["sessions"].as_u64().unwrap_or(0);
            // Nobody checks again: when do the rounds end them? The first session's last check
            // was `started` (at the earliest), the last one's `started + exchanged_in`.
            let (mut first_end, mut all_ended) = (None, None);
            let until = Instant::now() + Duration::from_secs(idle * 3 + 60);
            while Instant::now() < until {
                let n = t.concert().await?["sessions"].as_u64().unwrap_or(0);
                if n < live && first_end.is_none() {
                    first_end = Some(started.elapsed());
                }
                if n == 0 {
                    all_ended = Some(started.elapsed());
                    break;
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            let idle_s = idle as f64;
            let summary = json!({
                "fans": fans,
                "sessions": made,
                "live_after_exchange": live,
                "exchange_seconds": exchanged_in.as_secs_f64(),
                "exchanges_per_second": made as f64 / exchanged_in.as_secs_f64(),
                "redis_bytes_per_session": (mem1 - mem0) as f64 / made.max(1) as f64,
                "gateway_rss_kib_before": rss0,
                "gateway_rss_kib_after": rss1,
                "gateway_bytes_per_session": (rss1 - rss0) as f64 * 1024.0 / made.max(1) as f64,
                "idle_seconds": idle,
                "first_ended_after_s": first_end.map(|d| d.as_secs_f64()),
                "all_ended_after_s": all_ended.map(|d| d.as_secs_f64()),
                // The first session was checked last at `started`; the last one by `exchanged_in`.
                "late_first_s": first_end.map(|d| d.as_secs_f64() - idle_s),
                "late_last_s": all_ended.map(|d| d.as_secs_f64() - exchanged_in.as_secs_f64() - idle_s),
            });
            std::fs::write(out, serde_json::to_string_pretty(&summary)?)?;
            println!("{summary}");
        }
        other => return Err(format!("unknown mode {other}").into()),
    }
    Ok(())
}
