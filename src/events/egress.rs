//! Where a webhook delivery may connect: not to queuegate's own network.
//!
//! A webhook URL is chosen by whoever holds an admin token, and each attempt's result comes back
//! in the deliveries listing; without a fence that is a port scanner for the inside (Redis on
//! loopback, the cloud's metadata service, the cluster's services, the admin listener itself).
//! So loopback, private, link-local, unique-local, CGNAT, multicast and reserved addresses
//! ([`REFUSED`]) and the metadata services' names are refused unless
//! `QUEUEGATE_WEBHOOK_ALLOW_NETWORKS` lists the network:
//!
//! - at registration ([`EgressPolicy::check_url`]): a literal address in a refused range, a
//!   metadata name, or a name all of whose addresses are refused is a 400;
//! - at delivery, on the address actually connected to: a literal is checked before sending, and
//!   a name is resolved by [`CheckedResolver`], which hands the HTTP client only the addresses
//!   that pass (the client never resolves on its own, so a name that answers differently at
//!   delivery time, DNS rebinding, gets no connection). Redirects are not followed and no proxy
//!   is used (a proxy would resolve the name itself).
//!
//! A refused attempt is recorded as `refused-address` before any packet leaves, so it reads the
//! same whatever listens (or not) behind that address.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use futures_util::future::BoxFuture;
use ipnet::IpNet;

/// The refused ranges, each with what it is (named in the 400).
pub static REFUSED: LazyLock<Vec<(IpNet, &'static str)>> = LazyLock::new(|| {
    [
        ("0.0.0.0/8", "\"this network\" address"),
        ("10.0.0.0/8", "private address"),
        ("100.64.0.0/10", "shared (CGNAT) address"),
        ("127.0.0.0/8", "loopback address"),
        ("169.254.0.0/16", "link-local address (cloud metadata services live there)"),
        ("172.16.0.0/12", "private address"),
        ("192.0.0.0/24", "IETF protocol address"),
        ("192.168.0.0/16", "private address"),
        ("198.18.0.0/15", "benchmarking address"),
        ("224.0.0.0/4", "multicast address"),
        ("240.0.0.0/4", "reserved or broadcast address"),
        // ::, ::1 and the deprecated IPv4-compatible addresses.
        ("::/96", "unspecified, loopback or IPv4-compatible address"),
        ("fc00::/7", "unique-local address"),
        ("fe80::/10", "link-local address"),
        ("fec0::/10", "site-local address"),
        ("ff00::/8", "multicast address"),
    ]
    .into_iter()
    .map(|(net, what)| (net.parse().expect("a literal network"), what))
    .collect()
});

/// Names of cloud metadata services: refused whatever they resolve to.
pub const METADATA_NAMES: &[&str] = &[
    "metadata",
    "metadata.google.internal",
    "metadata.goog",
    "metadata.azure.internal",
    "instance-data",
    "instance-data.ec2.internal",
];

/// How long registration waits for a name to resolve before taking the URL unresolved (the
/// check at delivery still applies).
const REGISTRATION_LOOKUP: Duration = Duration::from_secs(3);

/// Why a delivery made no connection; found in the HTTP client's error chain by
/// [`crate::events::hooks::class_of`].
#[derive(Debug, thiserror::Error)]
pub enum EgressError {
    #[error("the address is refused (QUEUEGATE_WEBHOOK_ALLOW_NETWORKS)")]
    Refused,
    #[error("the name did not resolve")]
    Unresolved,
}

/// The networks webhook deliveries may reach, besides the public ones.
#[derive(Debug, Clone, Default)]
pub struct EgressPolicy {
    allow: Arc<[IpNet]>,
}

impl EgressPolicy {
    /// `allow`: `QUEUEGATE_WEBHOOK_ALLOW_NETWORKS`.
    pub fn new(allow: &[IpNet]) -> Self {
        EgressPolicy { allow: allow.iter().map(IpNet::trunc).collect() }
    }

    /// Whether a delivery may connect to `ip`.
    pub fn permits(&self, ip: IpAddr) -> bool {
        self.refusal(ip).is_none()
    }

    /// What kind of refused address `ip` is, or `None` if a delivery may connect to it. An
    /// IPv4-mapped IPv6 address is judged as its IPv4 address; a NAT64 (64:ff9b::/96) or 6to4
    /// (2002::/16) address as the IPv4 address inside it.
    pub fn refusal(&self, ip: IpAddr) -> Option<&'static str> {
        let ip = ip.to_canonical();
        if self.allow.iter().any(|n| n.contains(&ip)) {
            return None;
        }
        if let Some(inner) = embedded_v4(ip) {
            return self.refusal(IpAddr::V4(inner)).map(|_| "NAT64 or 6to4 form of a refused IPv4 address");
        }
        REFUSED.iter().find(|(net, _)| net.contains(&ip)).map(|(_, what)| *what)
    }

    /// The registration check of one webhook URL (already known to be an absolute http(s) URL);
    /// the error names the field. A name is resolved: refused if every address it has is
    /// refused; taken if it does not resolve (yet) within a few seconds, since delivery checks
    /// again on every connection.
    pub async fn check_url(&self, raw: &str) -> Result<(), String> {
        let refused = |what: String| {
            Err(format!(
                "webhooks: {raw:?} is refused: {what}; webhook URLs to internal addresses need \
                 QUEUEGATE_WEBHOOK_ALLOW_NETWORKS to list their network"
            ))
        };
        let Ok(url) = url::Url::parse(raw) else { return Err(format!("webhooks: {raw:?} is not a URL")) };
        match url.host() {
            None => Err(format!("webhooks: {raw:?} has no host")),
            Some(url::Host::Ipv4(ip)) => match self.refusal(ip.into()) {
                Some(what) => refused(format!("{ip} is a {what}")),
                None => Ok(()),
            },
            Some(url::Host::Ipv6(ip)) => match self.refusal(ip.into()) {
                Some(what) => refused(format!("{ip} is a {what}")),
                None => Ok(()),
            },
            Some(url::Host::Domain(name)) => {
                if is_metadata_name(name) {
                    return refused(format!("{name} is a cloud metadata service"));
                }
                let port = url.port_or_known_default().unwrap_or(443);
                let found = tokio::time::timeout(REGISTRATION_LOOKUP, tokio::net::lookup_host((name, port))).await;
                let Ok(Ok(addrs)) = found else { return Ok(()) };
                let addrs: Vec<SocketAddr> = addrs.collect();
                let why: Vec<String> = addrs
                    .iter()
                    .filter_map(|a| self.refusal(a.ip()).map(|what| format!("{} ({what})", a.ip())))
                    .collect();
                if !addrs.is_empty() && why.len() == addrs.len() {
                    return refused(format!("{name} resolves only to refused addresses: {}", why.join(", ")));
                }
                Ok(())
            }
        }
    }
}

/// Whether `host` names a cloud metadata service (any case, with or without the final dot).
pub fn is_metadata_name(host: &str) -> bool {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    METADATA_NAMES.contains(&host.as_str())
}

/// The IPv4 address inside a NAT64 (64:ff9b::/96) or 6to4 (2002::/16) address.
fn embedded_v4(ip: IpAddr) -> Option<Ipv4Addr> {
    let IpAddr::V6(v6) = ip else { return None };
    let s = v6.segments();
    let o = v6.octets();
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return Some(Ipv4Addr::new(o[12], o[13], o[14], o[15]));
    }
    if s[0] == 0x2002 {
        return Some(Ipv4Addr::new(o[2], o[3], o[4], o[5]));
    }
    None
}

/// Looks a name up: the system's resolver in production, a stand-in in tests.
pub type Lookup = Arc<dyn Fn(String) -> BoxFuture<'static, io::Result<Vec<IpAddr>>> + Send + Sync>;

/// The system's resolver (getaddrinfo on a blocking thread, as reqwest's own default).
pub fn system_lookup() -> Lookup {
    Arc::new(|name: String| {
        Box::pin(async move { Ok(tokio::net::lookup_host((name.as_str(), 0)).await?.map(|a| a.ip()).collect()) })
    })
}

/// The HTTP client's only resolver: it answers with the permitted addresses of a name, and
/// with [`EgressError::Refused`] when there are none, so the client connects only to an
/// address checked here, at delivery time.
pub struct CheckedResolver {
    pub policy: EgressPolicy,
    pub lookup: Lookup,
}

impl reqwest::dns::Resolve for CheckedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let (policy, lookup, name) = (self.policy.clone(), self.lookup.clone(), name.as_str().to_owned());
        Box::pin(async move {
            if is_metadata_name(&name) {
                return Err(Box::new(EgressError::Refused) as _);
            }
            let found = lookup(name).await.map_err(|_| Box::new(EgressError::Unresolved))?;
            if found.is_empty() {
                return Err(Box::new(EgressError::Unresolved) as _);
            }
            let permitted: Vec<SocketAddr> =
                found.into_iter().filter(|ip| policy.permits(*ip)).map(|ip| SocketAddr::new(ip, 0)).collect();
            if permitted.is_empty() {
                return Err(Box::new(EgressError::Refused) as _);
            }
            Ok(Box::new(permitted.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// `QUEUEGATE_WEBHOOK_ALLOW_NETWORKS`: CIDRs or single addresses, comma separated (empty: none).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AllowNetworks(pub Vec<IpNet>);

/// Parses `QUEUEGATE_WEBHOOK_ALLOW_NETWORKS`; the error names the setting and the bad entry.
pub fn parse_networks(s: &str) -> Result<AllowNetworks, String> {
    s.split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .map(parse_network)
        .collect::<Result<_, _>>()
        .map(AllowNetworks)
}

/// One entry of `QUEUEGATE_WEBHOOK_ALLOW_NETWORKS`: a CIDR, or one address.
fn parse_network(s: &str) -> Result<IpNet, String> {
    s.parse::<IpNet>().or_else(|_| s.parse::<IpAddr>().map(IpNet::from)).map(|n| n.trunc()).map_err(|_| {
        format!("QUEUEGATE_WEBHOOK_ALLOW_NETWORKS: {s:?} is not a network such as 10.20.0.0/16 or fd00::/8")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn internal_addresses_are_refused_and_public_ones_permitted() {
        let p = EgressPolicy::default();
        for bad in [
            "0.0.0.0",
            "10.0.0.1",
            "100.64.0.1",
            "127.0.0.1",
            "127.255.255.254",
            "169.254.169.254",
            "172.16.0.1",
            "172.31.255.255",
            "192.0.0.8",
            "192.168.1.1",
            "198.18.0.1",
            "224.0.0.1",
            "240.0.0.1",
            "255.255.255.255",
            "::",
            "::1",
            "::127.0.0.1",
            "fc00::1",
            "fd00:ec2::254",
            "fe80::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::a9fe:a9fe",
            "64:ff9b::7f00:1",
            "2002:7f00:1::1",
        ] {
            assert!(p.refusal(ip(bad)).is_some(), "{bad} is refused");
        }
        for good in ["93.184.216.34", "8.8.8.8", "172.32.0.1", "100.128.0.1", "2606:4700::1111", "64:ff9b::808:808"] {
            assert!(p.permits(ip(good)), "{good} is permitted");
        }
    }

    #[test]
    fn the_allow_list_opens_exactly_its_networks() {
        let p = EgressPolicy::new(&parse_networks("127.0.0.0/8, 10.1.2.3 ").unwrap().0);
        assert!(p.permits(ip("127.0.0.1")));
        assert!(p.permits(ip("::ffff:127.0.0.1")), "mapped form of an allowed address");
        assert!(p.permits(ip("64:ff9b::7f00:1")), "NAT64 form of an allowed address");
        assert!(p.permits(ip("10.1.2.3")));
        assert!(!p.permits(ip("10.1.2.4")), "one address is a /32");
        assert!(!p.permits(ip("::1")), "IPv6 loopback is not in 127.0.0.0/8");
        assert!(!p.permits(ip("169.254.169.254")));
        assert_eq!(parse_networks("10.0.0.9/8").unwrap().0[0].to_string(), "10.0.0.0/8");
        assert_eq!(parse_networks("").unwrap(), AllowNetworks::default(), "empty: none");
        let e = parse_networks("10.0.0.0/8,10.0.0.0/33").unwrap_err();
        assert!(e.starts_with("QUEUEGATE_WEBHOOK_ALLOW_NETWORKS: \"10.0.0.0/33\""), "{e}");
        assert!(parse_networks("localhost").is_err());
    }

    #[tokio::test]
    async fn registration_names_the_field_and_the_kind_of_address() {
        let p = EgressPolicy::default();
        for (url, kind) in [
            ("http://127.0.0.1:6379/", "loopback"),
            ("http://[::1]/", "loopback"),
            ("http://169.254.169.254/latest/meta-data", "link-local"),
            ("http://10.0.0.1/", "private"),
            ("http://[::ffff:127.0.0.1]/", "loopback"),
            ("http://2130706433/", "loopback"),
            ("http://metadata.google.internal/computeMetadata/v1/", "metadata"),
            ("http://METADATA.google.internal./", "metadata"),
            ("http://localhost:8081/admin/", "resolves only to refused addresses"),
        ] {
            let e = p.check_url(url).await.unwrap_err();
            assert!(e.starts_with("webhooks: ") && e.contains(kind), "{url}: {e}");
            assert!(e.contains("QUEUEGATE_WEBHOOK_ALLOW_NETWORKS"), "{e}");
        }
        assert!(p.check_url("https://93.184.216.34/hook").await.is_ok());
        // A name that does not resolve here is taken: delivery checks again.
        assert!(p.check_url("https://hooks.invalid/hook").await.is_ok());
        let open = EgressPolicy::new(&parse_networks("127.0.0.0/8").unwrap().0);
        assert!(open.check_url("http://127.0.0.1:6379/").await.is_ok());
        assert!(open.check_url("http://localhost:9/").await.is_ok());
        assert!(
            open.check_url("http://metadata.google.internal/").await.is_err(),
            "names are refused whatever the list"
        );
    }
}
