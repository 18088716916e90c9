//! Who a fan is: the identity of a join, by the deployment's mode (`QUEUEGATE_FAN_IDENTITY`),
//! and the client address behind trusted proxies.
//!
//! | mode | the fan's id | trusts |
//! |---|---|---|
//! | `jwt` | the `sub` of the booking site's identity token, verified offline ([`jwt`]) | the site's signing keys |
//! | `anonymous` | minted here (UUID v7); a join with a valid entry token for the concert gets the same id back | nothing: the id is unguessable and only its holder has the token |
//! | `trusted-header` | a header set by an authenticating proxy | peers in `QUEUEGATE_TRUSTED_PROXIES` only |
//! | `body` | `{"userId"}` in the body | everyone: demos and load tests only |

use std::net::IpAddr;

use actix_web::http::header::HeaderName;
use actix_web::HttpRequest;
use ipnet::IpNet;

use crate::config::{ClientIpHeader, FanIdentityMode, IdentitySettings};
use crate::ids::{ConcertId, UserId};
use crate::problem::ApiError;
use crate::token::EntryTokens;

pub mod jwt;

/// The gateway's way of knowing who joins.
pub struct FanIdentity {
    mode: FanIdentityMode,
    jwt: Option<std::sync::Arc<jwt::JwtVerifier>>,
    header: Option<HeaderName>,
    proxies: TrustedProxies,
}

impl FanIdentity {
    /// Builds the identity of `mode` from its section; in jwt mode the keys are loaded now (a
    /// JWKS that cannot be read stops start-up, naming the setting).
    pub async fn new(mode: FanIdentityMode, settings: &IdentitySettings) -> anyhow::Result<Self> {
        let jwt = match mode {
            FanIdentityMode::Jwt => Some(std::sync::Arc::new(jwt::JwtVerifier::new(settings).await?)),
            _ => None,
        };
        let header = match mode {
            FanIdentityMode::TrustedHeader => {
                let name = settings.fan_id_header.as_deref().unwrap_or_default();
                Some(HeaderName::from_bytes(name.as_bytes())?)
            }
            _ => None,
        };
        Ok(FanIdentity {
            mode,
            jwt,
            header,
            proxies: TrustedProxies::new(settings.trusted_proxies.clone(), settings.client_ip_header),
        })
    }

    pub fn mode(&self) -> FanIdentityMode {
        self.mode
    }

    /// The JWKS verifier, whose refresh runs as a supervised task (jwt mode with a JWKS).
    pub fn jwt(&self) -> Option<std::sync::Arc<jwt::JwtVerifier>> {
        self.jwt.clone()
    }

    /// The proxies whose forwarding headers are believed.
    pub fn proxies(&self) -> &TrustedProxies {
        &self.proxies
    }

    /// Who is joining `concert`. `claimed` is the body's `userId`, if it has one; `tokens`
    /// recognise a returning anonymous fan.
    pub fn identify(
        &self,
        req: &HttpRequest,
        claimed: Option<UserId>,
        concert: &ConcertId,
        tokens: &EntryTokens,
        now_ms: i64,
    ) -> Result<Joiner, ApiError> {
        let known = |user| Ok(Joiner { user, new_anonymous: false });
        match self.mode {
            FanIdentityMode::Anonymous => Self::anonymous(req, claimed, concert, tokens, now_ms),
            FanIdentityMode::Body => known(
                claimed.ok_or_else(|| ApiError::BadRequest("request body is not valid: userId is required".into()))?,
            ),
            FanIdentityMode::Jwt => known(self.jwt_fan(req, claimed)?),
            FanIdentityMode::TrustedHeader => known(self.header_fan(req, claimed)?),
        }
    }

    /// anonymous: a rejoin with a valid entry token is the same fan (never a second place); a
    /// stale or foreign token is no identity at all, so that join is a new fan.
    fn anonymous(
        req: &HttpRequest,
        claimed: Option<UserId>,
        concert: &ConcertId,
        tokens: &EntryTokens,
        now_ms: i64,
    ) -> Result<Joiner, ApiError> {
        if claimed.is_some() {
            return Err(ApiError::BadRequest(
                "userId is assigned by the gateway in anonymous mode; send {} (and the entry token to rejoin)".into(),
            ));
        }
        Ok(match bearer(req).and_then(|t| tokens.holder(concert, t, now_ms)) {
            Some(user) => Joiner { user, new_anonymous: false },
            None => Joiner { user: UserId::fresh(), new_anonymous: true },
        })
    }

    /// jwt: the `sub` of a valid identity token.
    fn jwt_fan(&self, req: &HttpRequest, claimed: Option<UserId>) -> Result<UserId, ApiError> {
        let token = bearer(req).ok_or_else(|| {
            ApiError::Unauthorized("an identity token is required (Authorization: Bearer <JWT>)".into())
        })?;
        let verifier = self.jwt.as_ref().expect("jwt mode has a verifier");
        same_as_claimed(verifier.verify(token)?, claimed, "the identity token's subject")
    }

    /// trusted-header: the header, from a trusted proxy only.
    fn header_fan(&self, req: &HttpRequest, claimed: Option<UserId>) -> Result<UserId, ApiError> {
        if !self.proxies.peer_trusted(req) {
            return Err(ApiError::Unauthorized("fan identity is accepted from the trusted proxies only".into()));
        }
        let name = self.header.as_ref().expect("trusted-header mode has a header");
        let mut values = req.headers().get_all(name);
        let value = match (values.next(), values.next()) {
            (Some(v), None) => v.to_str().ok(),
            (Some(_), Some(_)) => {
                return Err(ApiError::Unauthorized(format!("the proxy sent the fan id header {name} more than once")))
            }
            (None, _) => None,
        }
        .ok_or_else(|| ApiError::Unauthorized(format!("the proxy did not send the fan id header {name}")))?;
        let user =
            UserId::parse(value.trim()).map_err(|e| ApiError::BadRequest(format!("{name} from the proxy: {e}")))?;
        same_as_claimed(user, claimed, "the proxy's fan id")
    }
}

/// Who joins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Joiner {
    pub user: UserId,
    /// An anonymous fan the gateway has just named (not a rejoin with an entry token): the one
    /// a concert's proof of work applies to.
    pub new_anonymous: bool,
}

/// The token in `Authorization: Bearer …`, if any.
pub fn bearer(req: &HttpRequest) -> Option<&str> {
    let value = req.headers().get(actix_web::http::header::AUTHORIZATION)?.to_str().ok()?;
    value.strip_prefix("Bearer ").map(str::trim)
}

/// Bearer credentials (the admin token, the booking site's token), compared in constant time
/// after hashing, so neither the content nor the length of a secret leaks through timing.
#[derive(Clone)]
pub struct Credentials(Vec<[u8; 32]>);

impl Credentials {
    pub fn new<'a>(secrets: impl IntoIterator<Item = &'a crate::config::Secret>) -> Self {
        use sha2::Digest;
        Credentials(secrets.into_iter().map(|s| sha2::Sha256::digest(s.expose().as_bytes()).into()).collect())
    }

    /// Whether `presented` is one of the credentials; with none configured (--insecure-dev
    /// without secrets) everything is accepted.
    pub fn accepts(&self, presented: Option<&str>) -> bool {
        use sha2::Digest;
        use subtle::ConstantTimeEq;
        if self.0.is_empty() {
            return true;
        }
        let Some(presented) = presented else { return false };
        let got: [u8; 32] = sha2::Sha256::digest(presented.as_bytes()).into();
        // Every credential is compared, whichever matches.
        self.0.iter().fold(subtle::Choice::from(0), |any, want| any | want.ct_eq(&got)).into()
    }

    /// Which credential `presented` is (its index in the order given to [`Credentials::new`]),
    /// in constant time: every credential is compared and the index chosen without a branch on
    /// the secret, so the time tells neither whether nor which one matched. None when none
    /// does (or none is configured: callers decide what an empty set means).
    pub fn matching(&self, presented: Option<&str>) -> Option<usize> {
        use sha2::Digest;
        use subtle::{ConditionallySelectable, ConstantTimeEq};
        let presented = presented?;
        let got: [u8; 32] = sha2::Sha256::digest(presented.as_bytes()).into();
        let mut found = subtle::Choice::from(0);
        let mut index = 0u64;
        for (i, want) in self.0.iter().enumerate() {
            let eq = want.ct_eq(&got);
            index.conditional_assign(&(i as u64), eq);
            found |= eq;
        }
        bool::from(found).then_some(index as usize)
    }
}

/// A body `userId` may restate the authenticated identity, never differ from it (403).
fn same_as_claimed(user: UserId, claimed: Option<UserId>, source: &str) -> Result<UserId, ApiError> {
    match claimed {
        Some(c) if c != user => Err(ApiError::Forbidden(format!("userId {c} is not {source}"))),
        _ => Ok(user),
    }
}

/// What a per-client limit counts under: an address (IPv4, or an IPv6 /64), or, when the
/// nearest untrusted hop a trusted proxy reported is not an address (`unknown`, an obfuscated
/// RFC 7239 node), that hop as an opaque key of at most [`MAX_OPAQUE`] bytes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ClientKey {
    Ip(IpAddr),
    Opaque(Box<str>),
}

/// The longest opaque client key kept (longer hops are cut, so a key's memory is bounded).
pub const MAX_OPAQUE: usize = 64;

/// The address itself; an IPv4-mapped IPv6 address (`::ffff:192.0.2.1`, what a dual-stack
/// listener reports for an IPv4 client) is the IPv4 address it carries.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    }
}

/// The peers whose client-address header (and fan-id header) are believed, and that header.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies {
    nets: Vec<IpNet>,
    header: ClientIpHeader,
}

impl TrustedProxies {
    pub fn new(nets: Vec<IpNet>, header: ClientIpHeader) -> Self {
        TrustedProxies { nets, header }
    }

    /// Whether any proxy is trusted (`QUEUEGATE_TRUSTED_PROXIES` is set).
    pub fn any(&self) -> bool {
        !self.nets.is_empty()
    }

    /// Whether `ip` (canonicalised first) is one of the trusted proxies.
    pub fn trusts(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.nets.iter().any(|n| n.contains(&ip))
    }

    /// Whether the TCP peer of `req` is a trusted proxy.
    pub fn peer_trusted(&self, req: &HttpRequest) -> bool {
        req.peer_addr().is_some_and(|p| self.trusts(p.ip()))
    }

    /// The client's key for the per-client limits: the TCP peer, unless the peer is a trusted
    /// proxy; then the configured header's hops read from the right, skipping trusted proxies:
    /// the first hop not ours is the client (an unparseable one as an opaque key). Anything a
    /// client writes to the left of that, or in any other header, is never believed. With every
    /// hop trusted (or no header) the key is the peer.
    pub fn client_key(&self, req: &HttpRequest) -> Option<ClientKey> {
        Some(match self.client(req)? {
            Ok(ip) => ClientKey::Ip(limit_key(ip)),
            Err(hop) => ClientKey::Opaque(opaque(&hop)),
        })
    }

    /// The address of a client that a trusted proxy named (the peer is a trusted proxy, and the
    /// hop it vouched for is an address it does not trust): None for a direct client (its
    /// address is whoever connects) and for the proxy itself, so an address-based rule never
    /// matches every visitor behind a proxy.
    pub fn named_client_ip(&self, req: &HttpRequest) -> Option<IpAddr> {
        self.peer_trusted(req).then(|| self.client_ip(req)).flatten().filter(|ip| !self.trusts(*ip))
    }

    /// The client's address, read as [`client_key`](Self::client_key) reads it, whole (not
    /// widened to a limit's key); None when the client's hop is not an address.
    pub fn client_ip(&self, req: &HttpRequest) -> Option<IpAddr> {
        self.client(req)?.ok()
    }

    /// The client as [`client_key`](Self::client_key) documents it: its address, or the hop that
    /// is not one.
    fn client(&self, req: &HttpRequest) -> Option<Result<IpAddr, String>> {
        let peer = canonical(req.peer_addr()?.ip());
        if !self.trusts(peer) {
            return Some(Ok(peer));
        }
        for hop in self.hops(req).iter().rev() {
            match parse_node(hop) {
                Some(ip) if self.trusts(ip) => continue,
                Some(ip) => return Some(Ok(canonical(ip))),
                None => return Some(Err(hop.clone())),
            }
        }
        Some(Ok(peer))
    }

    /// The hops of the configured header, client first, over every line of it.
    fn hops(&self, req: &HttpRequest) -> Vec<String> {
        let lines = req.headers().get_all(self.header.header_name()).map(|v| String::from_utf8_lossy(v.as_bytes()));
        let mut hops = Vec::new();
        for line in lines {
            for element in line.split(',') {
                let hop = match self.header {
                    ClientIpHeader::Forwarded => forwarded_for(element),
                    ClientIpHeader::XForwardedFor | ClientIpHeader::XRealIp => Some(element.trim().to_owned()),
                };
                hops.extend(hop.filter(|h| !h.is_empty()));
            }
        }
        hops
    }
}

/// The `for=` node of one RFC 7239 element, unquoted; an element without one is a hop we
/// cannot read, which stands as the client rather than being skipped.
fn forwarded_for(element: &str) -> Option<String> {
    let node = element.split(';').find_map(|pair| {
        let (k, v) = pair.trim().split_once('=')?;
        k.trim().eq_ignore_ascii_case("for").then(|| v.trim().trim_matches('"').to_owned())
    });
    Some(node.unwrap_or_else(|| element.trim().to_owned()))
}

/// An opaque hop cut to [`MAX_OPAQUE`] bytes (at a character boundary).
fn opaque(hop: &str) -> Box<str> {
    let mut end = hop.len().min(MAX_OPAQUE);
    while !hop.is_char_boundary(end) {
        end -= 1;
    }
    hop[..end].into()
}

/// An address of a forwarding header, canonicalised: `1.2.3.4`, `1.2.3.4:5678`,
/// `"[2001:db8::1]:443"`, `2001:db8::1`, `::ffff:1.2.3.4`.
fn parse_node(s: &str) -> Option<IpAddr> {
    let s = s.trim().trim_matches('"');
    if let Ok(ip) = s.parse() {
        return Some(canonical(ip));
    }
    if let Some(rest) = s.strip_prefix('[') {
        return rest.split_once(']')?.0.parse().ok().map(canonical);
    }
    let (host, port) = s.rsplit_once(':')?;
    port.parse::<u16>().ok()?;
    host.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4)
}

/// The key a per-client limit counts under: the address, or its /64 for IPv6 (one subscriber
/// usually holds a whole /64, so counting single IPv6 addresses would limit nobody). An
/// IPv4-mapped address counts as its IPv4 address.
pub fn limit_key(ip: IpAddr) -> IpAddr {
    match canonical(ip) {
        IpAddr::V6(v6) => {
            let bits = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(bits.into())
        }
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    fn proxies(header: ClientIpHeader) -> TrustedProxies {
        TrustedProxies::new(vec!["10.0.0.0/8".parse().unwrap(), "::1/128".parse().unwrap()], header)
    }

    fn ip(s: &str) -> Option<ClientKey> {
        Some(ClientKey::Ip(s.parse().unwrap()))
    }

    fn request(peer: &str, headers: &[(&str, &str)]) -> HttpRequest {
        let mut r = TestRequest::default().peer_addr(peer.parse().unwrap());
        for h in headers {
            r = r.append_header(*h);
        }
        r.to_http_request()
    }

    #[test]
    fn forwarding_headers_count_only_from_trusted_peers_and_only_right_of_the_last_trusted_hop() {
        let p = proxies(ClientIpHeader::XForwardedFor);
        let untrusted = request("203.0.113.9:1000", &[("x-forwarded-for", "1.1.1.1")]);
        assert_eq!(p.client_key(&untrusted), ip("203.0.113.9"), "a client cannot pick its address");
        let via_proxy = request("10.0.0.2:1000", &[("x-forwarded-for", "6.6.6.6, 198.51.100.7, 10.0.0.5")]);
        assert_eq!(p.client_key(&via_proxy), ip("198.51.100.7"), "what the client wrote is skipped");
        let two_lines =
            request("10.0.0.2:1000", &[("x-forwarded-for", "6.6.6.6"), ("x-forwarded-for", "198.51.100.8")]);
        assert_eq!(p.client_key(&two_lines), ip("198.51.100.8"), "the last line is the nearest");
        let all_ours = request("10.0.0.2:1000", &[("x-forwarded-for", "10.1.1.1, 10.0.0.5")]);
        assert_eq!(p.client_key(&all_ours), ip("10.0.0.2"), "every hop trusted: the peer");
        let none = request("10.0.0.2:1000", &[]);
        assert_eq!(p.client_key(&none), ip("10.0.0.2"));
    }

    #[test]
    fn a_named_client_is_one_a_trusted_proxy_vouched_for_never_a_direct_peer_or_the_proxy_itself() {
        let p = proxies(ClientIpHeader::XForwardedFor);
        let named = request("10.0.0.2:1000", &[("x-forwarded-for", "6.6.6.6, 198.51.100.7")]);
        assert_eq!(p.named_client_ip(&named), Some("198.51.100.7".parse().unwrap()));
        let direct = request("198.51.100.7:1000", &[("x-forwarded-for", "198.51.100.8")]);
        assert_eq!(p.named_client_ip(&direct), None, "a direct client names itself: not vouched for");
        let proxy_only = request("10.0.0.2:1000", &[]);
        assert_eq!(p.named_client_ip(&proxy_only), None, "the proxy's own address is every visitor's");
        let all_ours = request("10.0.0.2:1000", &[("x-forwarded-for", "10.1.1.1")]);
        assert_eq!(p.named_client_ip(&all_ours), None);
    }

    #[test]
    fn only_the_configured_header_is_read() {
        // The audit's hole: nginx appends to X-Forwarded-For, the client adds Forwarded.
        let xff = proxies(ClientIpHeader::XForwardedFor);
        let r = request("10.0.0.2:1000", &[("forwarded", "for=6.6.6.6"), ("x-forwarded-for", "198.51.100.7")]);
        assert_eq!(xff.client_key(&r), ip("198.51.100.7"), "Forwarded is ignored in x-forwarded-for mode");
        let r = request("10.0.0.2:1000", &[("forwarded", "for=6.6.6.6"), ("x-real-ip", "6.6.6.7")]);
        assert_eq!(xff.client_key(&r), ip("10.0.0.2"), "no X-Forwarded-For: the peer, whatever else is sent");

        let fwd = proxies(ClientIpHeader::Forwarded);
        let r = request(
            "10.0.0.2:1000",
            &[("x-forwarded-for", "6.6.6.6"), ("forwarded", "for=192.0.2.60;proto=http, for=\"[2001:db8::1]:443\"")],
        );
        assert_eq!(fwd.client_key(&r), ip("2001:db8::"), "the IPv6 client, by its /64");
        let r = request("10.0.0.2:1000", &[("forwarded", "for=192.0.2.60, for=10.0.0.9:80")]);
        assert_eq!(fwd.client_key(&r), ip("192.0.2.60"));

        let real = proxies(ClientIpHeader::XRealIp);
        let r = request("10.0.0.2:1000", &[("x-forwarded-for", "6.6.6.6"), ("x-real-ip", "198.51.100.9")]);
        assert_eq!(real.client_key(&r), ip("198.51.100.9"));
    }

    #[test]
    fn an_unparseable_hop_is_the_client_as_an_opaque_key() {
        let fwd = proxies(ClientIpHeader::Forwarded);
        let r = request("10.0.0.2:1000", &[("forwarded", "for=198.51.100.7, for=_hidden, for=10.0.0.3")]);
        assert_eq!(fwd.client_key(&r), Some(ClientKey::Opaque("_hidden".into())), "not skipped to what is left of it");
        let r = request("10.0.0.2:1000", &[("forwarded", "proto=https")]);
        assert_eq!(fwd.client_key(&r), Some(ClientKey::Opaque("proto=https".into())), "an element without for=");
        let xff = proxies(ClientIpHeader::XForwardedFor);
        let long = format!("198.51.100.7, {}", "x".repeat(500));
        let r = request("10.0.0.2:1000", &[("x-forwarded-for", &long)]);
        assert_eq!(xff.client_key(&r), Some(ClientKey::Opaque("x".repeat(MAX_OPAQUE).into())), "bounded");
        let r = request("10.0.0.2:1000", &[("x-forwarded-for", "198.51.100.7, unknown")]);
        assert_eq!(xff.client_key(&r), Some(ClientKey::Opaque("unknown".into())));
        let r = request("10.0.0.2:1000", &[("x-forwarded-for", "198.51.100.7:8080, ")]);
        assert_eq!(xff.client_key(&r), ip("198.51.100.7"), "an address with a port; an empty element is no hop");
    }

    #[test]
    fn ipv4_mapped_addresses_are_the_ipv4_address_they_carry() {
        let p = proxies(ClientIpHeader::XForwardedFor);
        let mapped_client = request("[::ffff:203.0.113.9]:1000", &[]);
        assert_eq!(p.client_key(&mapped_client), ip("203.0.113.9"), "not the /64 every IPv4 client shares");
        let mapped_proxy = request("[::ffff:10.0.0.2]:1000", &[("x-forwarded-for", "198.51.100.7, ::ffff:10.0.0.5")]);
        assert_eq!(p.client_key(&mapped_proxy), ip("198.51.100.7"), "IPv4 CIDRs match mapped proxies and hops");
        assert!(p.trusts("::ffff:10.1.2.3".parse().unwrap()));
        assert!(!p.trusts("::ffff:11.1.2.3".parse().unwrap()));
        let mapped_hop = request("10.0.0.2:1000", &[("x-forwarded-for", "::ffff:198.51.100.7")]);
        assert_eq!(p.client_key(&mapped_hop), ip("198.51.100.7"));
    }

    #[test]
    fn ipv6_clients_are_limited_by_their_64() {
        assert_eq!(limit_key("2001:db8:1:2:aaaa::1".parse().unwrap()), "2001:db8:1:2::".parse::<IpAddr>().unwrap());
        assert_eq!(limit_key("192.0.2.1".parse().unwrap()), "192.0.2.1".parse::<IpAddr>().unwrap());
        assert_eq!(limit_key("::ffff:192.0.2.1".parse().unwrap()), "192.0.2.1".parse::<IpAddr>().unwrap());
    }

    fn settings_for(mode: FanIdentityMode) -> IdentitySettings {
        let mut s = crate::config::Settings::for_test("t", "g", "p").identity;
        s.fan_identity = Some(mode);
        s.fan_id_header = Some("x-fan-id".into());
        s.trusted_proxies = vec!["10.0.0.0/8".parse().unwrap()];
        s.fan_jwt_secret = Some(crate::config::Secret::new("a-fan-jwt-secret-0123456789-0123456789"));
        s.fan_jwt_issuer = Some("https://tickets.example".into());
        s.fan_jwt_audience = Some("queuegate".into());
        s
    }

    async fn identity(mode: FanIdentityMode) -> FanIdentity {
        FanIdentity::new(mode, &settings_for(mode)).await.unwrap()
    }

    #[tokio::test]
    async fn in_trusted_header_mode_only_one_header_from_a_trusted_peer_names_the_fan() {
        let id = identity(FanIdentityMode::TrustedHeader).await;
        let tokens = EntryTokens::new(b"0123456789abcdef0123456789abcdef", FanIdentityMode::TrustedHeader, 60);
        let c = ConcertId::parse("c").unwrap();
        let who = |req: HttpRequest| id.identify(&req, None, &c, &tokens, 0).map(|j| j.user.as_str().to_owned());
        assert_eq!(who(request("10.0.0.2:1000", &[("x-fan-id", "carol")])).unwrap(), "carol");
        assert!(who(request("203.0.113.9:1000", &[("x-fan-id", "carol")])).is_err(), "not from a trusted peer");
        assert!(who(request("10.0.0.2:1000", &[("x-fan-id", "victim"), ("x-fan-id", "me")])).is_err(), "twice");
        assert!(who(request("10.0.0.2:1000", &[])).is_err(), "missing");
        assert!(who(request("10.0.0.2:1000", &[("x-fan-id", "bad id")])).is_err(), "not an id");
        assert!(id.proxies().trusts("10.9.9.9".parse().unwrap()), "the configured proxies");
        assert!(!id.proxies().trusts("11.0.0.1".parse().unwrap()));
        assert!(id.jwt().is_none(), "no verifier outside jwt mode");
        assert_eq!(id.mode(), FanIdentityMode::TrustedHeader);
    }

    #[tokio::test]
    async fn jwt_mode_has_a_verifier_whose_refresh_runs_beside_it() {
        assert!(identity(FanIdentityMode::Jwt).await.jwt().is_some());
    }

    #[test]
    fn the_bearer_token_is_what_follows_bearer_and_credentials_compare_whole_secrets() {
        let r = |v: &[(&str, &str)]| request("10.0.0.2:1000", v);
        assert_eq!(bearer(&r(&[("authorization", "Bearer abc.def")])), Some("abc.def"));
        assert_eq!(bearer(&r(&[("authorization", "Basic abc")])), None);
        assert_eq!(bearer(&r(&[])), None);
        let secret = crate::config::Secret::new("the-admin-token-0123456789");
        let creds = Credentials::new([&secret]);
        assert!(creds.accepts(Some("the-admin-token-0123456789")));
        assert!(!creds.accepts(Some("the-admin-token-012345678")), "a prefix is not the secret");
        assert!(!creds.accepts(Some("")));
        assert!(!creds.accepts(None));
        assert!(Credentials::new([]).accepts(None), "none configured (--insecure-dev): open");
    }

    #[test]
    fn matching_names_which_credential_was_presented_and_none_for_any_other() {
        let s = ["first-token-0123456789", "second-token-0123456789", "third-token-0123456789"]
            .map(crate::config::Secret::new);
        let creds = Credentials::new(s.iter());
        assert_eq!(creds.matching(Some("first-token-0123456789")), Some(0));
        assert_eq!(creds.matching(Some("second-token-0123456789")), Some(1));
        assert_eq!(creds.matching(Some("third-token-0123456789")), Some(2));
        assert_eq!(creds.matching(Some("third-token-012345678")), None, "a prefix is not the token");
        assert_eq!(creds.matching(Some("")), None);
        assert_eq!(creds.matching(None), None);
        assert_eq!(Credentials::new([]).matching(Some("x")), None, "an empty set matches nothing");
    }

    #[test]
    fn a_site_token_equal_to_the_admin_token_is_still_accepted_and_a_body_user_id_may_only_restate_the_identity() {
        let (a, b) =
            (crate::config::Secret::new("same-token-0123456789"), crate::config::Secret::new("same-token-0123456789"));
        assert!(Credentials::new([&a, &b]).accepts(Some("same-token-0123456789")), "matches are OR-ed, not XOR-ed");
        let u = |s: &str| UserId::parse(s).unwrap();
        assert_eq!(same_as_claimed(u("ann"), None, "x").unwrap(), u("ann"));
        assert_eq!(same_as_claimed(u("ann"), Some(u("ann")), "x").unwrap(), u("ann"));
        assert!(matches!(same_as_claimed(u("ann"), Some(u("bob")), "x"), Err(ApiError::Forbidden(_))));
    }
}
