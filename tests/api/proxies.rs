//! The client address behind a real reverse proxy (Debian's nginx, started here), and on a
//! dual-stack listener: one client, one join budget, whatever it writes in its headers.

use std::net::IpAddr;

use queuegate::config::{ClientIpHeader, FanIdentityMode};
use serde_json::json;

use crate::common::gate_proxies::{start_nginx, Proxy};
use crate::helpers::{create_topics, spawn_role, Names, TestApp};
use queuegate::config::Role;

/// A private nginx in front of `upstream` (host:port), with `directives` in its `location /`.
fn nginx_before(upstream: &str, directives: &str) -> Proxy {
    start_nginx(&format!(
        "  server {{\n    listen 127.0.0.1:{{port}};\n    location / {{\n      proxy_pass http://{upstream};\n\
             proxy_set_header Host $host;\n      {directives}\n    }}\n  }}"
    ))
}

/// A client whose connections come from `source` (a loopback address of its own).
fn client_from(source: &str) -> reqwest::Client {
    reqwest::Client::builder().local_address(source.parse::<IpAddr>().unwrap()).build().unwrap()
}

/// `n` joins through `base` with the extra headers `headers(i)`, sent at once; the statuses.
/// At once, so they reach the limiter within one budget's second whatever the machine's load:
/// sent one after another, each waiting for its 202 from Kafka, they came slower than the
/// budget refills on two loaded cores (CI: 5 of 5 accepted against 3/s).
async fn joins(
    client: &reqwest::Client,
    base: &str,
    who: &str,
    n: usize,
    headers: impl Fn(usize) -> Vec<(&'static str, String)>,
) -> Vec<u16> {
    let sends = (0..n).map(|i| {
        let mut req = client.post(format!("{base}/v1/concerts/c/queue")).json(&json!({"userId": format!("{who}-{i}")}));
        for (name, value) in headers(i) {
            req = req.header(name, value);
        }
        async move { req.send().await.unwrap().status().as_u16() }
    });
    futures_util::future::join_all(sends).await
}

async fn spawn(tweak: impl FnOnce(&mut queuegate::config::Settings)) -> TestApp {
    let names = Names::new();
    create_topics(&names, 2).await;
    let app = spawn_role(&names, Role::Run, |s| {
        s.identity.fan_identity = Some(FanIdentityMode::Body);
        s.http.rate_limit_per_ip = 3;
        tweak(s)
    })
    .await;
    app.open_concert("c").await;
    app
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_nginx_a_client_cannot_buy_fresh_budgets_with_forwarding_headers_it_writes() {
    // The audit's setup: nginx appends the peer to X-Forwarded-For, and is trusted.
    for (header, directive) in [
        (ClientIpHeader::XForwardedFor, "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;"),
        (ClientIpHeader::XRealIp, "proxy_set_header X-Real-IP $remote_addr;"),
    ] {
        let app = spawn(|s| {
            s.identity.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
            s.identity.client_ip_header = header;
        })
        .await;
        let nginx = nginx_before(app.http().trim_start_matches("http://"), directive);
        let spoofer = client_from("127.0.0.2");
        let statuses = joins(&spoofer, &nginx.url, "spoof", 12, |i| {
            vec![
                ("forwarded", format!("for=198.51.100.{i}")),
                ("x-forwarded-for", format!("203.0.113.{i}")),
                ("x-real-ip", format!("192.0.2.{i}")),
            ]
        })
        .await;
        let accepted = statuses.iter().filter(|s| **s == 202).count();
        assert!(statuses.contains(&429), "{header:?}: one client, one budget of 3/s: {statuses:?}");
        assert!(accepted <= 6, "{header:?}: {accepted} of 12 joins accepted: {statuses:?}");
        // Another client behind the same nginx has its own budget.
        let other = joins(&client_from("127.0.0.3"), &nginx.url, "other", 2, |_| vec![]).await;
        assert_eq!(other, [202, 202], "{header:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_dual_stack_listener_ipv4_clients_are_told_apart_and_ipv4_proxies_are_trusted() {
    // [::] with bindv6only=0 (Linux's default) reports IPv4 peers as ::ffff:a.b.c.d.
    let app = spawn(|s| {
        s.http.http_addr = "[::]:0".parse().unwrap();
        // Off loopback, so not --insecure-dev (which listens on loopback only).
        s.security.insecure_dev = false;
        s.identity.allow_unauthenticated_fans = true;
        s.admission.admission_key_file = vec![crate::helpers::admission_key_file().into()];
        s.identity.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
    })
    .await;
    let a = joins(&client_from("127.0.0.2"), app.http(), "a", 5, |_| vec![]).await;
    assert!(a.contains(&429), "one IPv4 client is limited: {a:?}");
    let b = joins(&client_from("127.0.0.3"), app.http(), "b", 2, |_| vec![]).await;
    assert_eq!(b, [202, 202], "another IPv4 client is not (it used to share a /64 with every IPv4 client)");
    // 127.0.0.1 is a trusted proxy in IPv4 notation: its X-Forwarded-For is believed.
    let proxy = client_from("127.0.0.1");
    let c = joins(&proxy, app.http(), "c", 2, |_| vec![("x-forwarded-for", "198.51.100.1".into())]).await;
    let d = joins(&proxy, app.http(), "d", 2, |_| vec![("x-forwarded-for", "198.51.100.2".into())]).await;
    assert_eq!([c, d].concat(), [202; 4], "two clients behind the proxy, two budgets");
}
