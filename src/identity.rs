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

use crate::config::{FanIdentityMode, IdentitySettings};
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
        Ok(FanIdentity { mode, jwt, header, proxies: TrustedProxies(settings.trusted_proxies.clone()) })
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
            None => Joiner {
                user: UserId::parse(uuid::Uuid::now_v7().simple().to_string()).expect("a UUID is a valid id"),
                new_anonymous: true,
            },
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
        if !req.peer_addr().is_some_and(|p| self.proxies.trusts(p.ip())) {
            return Err(ApiError::Unauthorized("fan identity is accepted from the trusted proxies only".into()));
        }
        let name = self.header.as_ref().expect("trusted-header mode has a header");
        let value = req
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
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
}

/// A body `userId` may restate the authenticated identity, never differ from it (403).
fn same_as_claimed(user: UserId, claimed: Option<UserId>, source: &str) -> Result<UserId, ApiError> {
    match claimed {
        Some(c) if c != user => Err(ApiError::Forbidden(format!("userId {c} is not {source}"))),
        _ => Ok(user),
    }
}

/// The peers whose forwarding headers (and fan-id header) are believed.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    pub fn new(nets: Vec<IpNet>) -> Self {
        TrustedProxies(nets)
    }

    pub fn trusts(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|n| n.contains(&ip))
    }

    /// The client's address: the TCP peer, unless the peer is a trusted proxy; then the
    /// forwarding chain (`Forwarded` if present, else `X-Forwarded-For`) read from the right,
    /// skipping trusted proxies: the first address not ours is the client. Anything a client
    /// writes to the left of that is never believed.
    pub fn client_ip(&self, req: &HttpRequest) -> Option<IpAddr> {
        let peer = req.peer_addr()?.ip();
        if !self.trusts(peer) {
            return Some(peer);
        }
        let chain = forwarded_chain(req);
        Some(chain.into_iter().rev().find(|ip| !self.trusts(*ip)).unwrap_or(peer))
    }
}

/// The addresses of the forwarding headers, client first.
fn forwarded_chain(req: &HttpRequest) -> Vec<IpAddr> {
    let all = |name: &str| -> Vec<String> {
        req.headers().get_all(name).filter_map(|v| v.to_str().ok()).map(str::to_owned).collect()
    };
    let forwarded = all("forwarded");
    if !forwarded.is_empty() {
        return forwarded
            .iter()
            .flat_map(|v| v.split(','))
            .filter_map(|element| {
                element.split(';').find_map(|pair| {
                    let (k, v) = pair.trim().split_once('=')?;
                    k.eq_ignore_ascii_case("for").then(|| parse_node(v))?
                })
            })
            .collect();
    }
    all("x-forwarded-for").iter().flat_map(|v| v.split(',')).filter_map(|s| parse_node(s.trim())).collect()
}

/// An address of a forwarding header: `1.2.3.4`, `1.2.3.4:5678`, `"[2001:db8::1]:443"`, `2001:db8::1`.
fn parse_node(s: &str) -> Option<IpAddr> {
    let s = s.trim().trim_matches('"');
    if let Ok(ip) = s.parse() {
        return Some(ip);
    }
    if let Some(rest) = s.strip_prefix('[') {
        return rest.split_once(']')?.0.parse().ok();
    }
    s.rsplit_once(':')?.0.parse().ok()
}

/// The key a per-client limit counts under: the address, or its /64 for IPv6 (one subscriber
/// usually holds a whole /64, so counting single IPv6 addresses would limit nobody).
pub fn limit_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => {
            let bits = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(bits.into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    fn proxies() -> TrustedProxies {
        TrustedProxies::new(vec!["10.0.0.0/8".parse().unwrap(), "::1/128".parse().unwrap()])
    }

    #[test]
    fn forwarding_headers_count_only_from_trusted_peers_and_only_right_of_the_last_trusted_hop() {
        let p = proxies();
        let untrusted = TestRequest::default()
            .peer_addr("203.0.113.9:1000".parse().unwrap())
            .insert_header(("x-forwarded-for", "1.1.1.1"))
            .to_http_request();
        assert_eq!(p.client_ip(&untrusted), Some("203.0.113.9".parse().unwrap()), "a client cannot pick its address");

        let via_proxy = TestRequest::default()
            .peer_addr("10.0.0.2:1000".parse().unwrap())
            .insert_header(("x-forwarded-for", "6.6.6.6, 198.51.100.7, 10.0.0.5"))
            .to_http_request();
        assert_eq!(p.client_ip(&via_proxy), Some("198.51.100.7".parse().unwrap()), "what the client wrote is skipped");

        let forwarded = TestRequest::default()
            .peer_addr("10.0.0.2:1000".parse().unwrap())
            .insert_header(("forwarded", "for=192.0.2.60;proto=http, for=\"[2001:db8::1]:443\""))
            .to_http_request();
        assert_eq!(p.client_ip(&forwarded), Some("2001:db8::1".parse().unwrap()));
    }

    #[test]
    fn ipv6_clients_are_limited_by_their_64() {
        assert_eq!(limit_key("2001:db8:1:2:aaaa::1".parse().unwrap()), "2001:db8:1:2::".parse::<IpAddr>().unwrap());
        assert_eq!(limit_key("192.0.2.1".parse().unwrap()), "192.0.2.1".parse::<IpAddr>().unwrap());
    }
}
