//! The fan identity section: how the gateway knows who a fan is, and which peers it trusts.

use clap::{Args, ValueEnum};
use ipnet::IpNet;

use super::error::{bad, ConfigError};
use super::secret::Secret;
use super::sections::check_range;

/// How the gateway learns who is joining (`QUEUEGATE_FAN_IDENTITY`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FanIdentityMode {
    /// The `sub` of the booking site's identity token (`Authorization: Bearer <JWT>`), verified offline.
    Jwt,
    /// Minted by the gateway (UUID v7) and returned with the entry token.
    Anonymous,
    /// A header set by an authenticating reverse proxy, honoured only from trusted proxies.
    TrustedHeader,
    /// `{"userId"}` in the body, unauthenticated: demos and load tests only.
    Body,
}

impl FanIdentityMode {
    pub fn as_str(self) -> &'static str {
        match self {
            FanIdentityMode::Jwt => "jwt",
            FanIdentityMode::Anonymous => "anonymous",
            FanIdentityMode::TrustedHeader => "trusted-header",
            FanIdentityMode::Body => "body",
        }
    }
}

/// The one header a trusted proxy puts the client's address in (`QUEUEGATE_CLIENT_IP_HEADER`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum ClientIpHeader {
    /// `X-Forwarded-For: client, proxy1, proxy2` (nginx's `$proxy_add_x_forwarded_for`).
    #[default]
    #[value(name = "x-forwarded-for")]
    XForwardedFor,
    /// RFC 7239 `Forwarded: for=client, for=proxy1` (Caddy, Envoy with the option on).
    #[value(name = "forwarded")]
    Forwarded,
    /// `X-Real-IP: client`, one address set by the proxy.
    #[value(name = "x-real-ip")]
    XRealIp,
}

impl ClientIpHeader {
    pub fn header_name(self) -> &'static str {
        match self {
            ClientIpHeader::XForwardedFor => "x-forwarded-for",
            ClientIpHeader::Forwarded => "forwarded",
            ClientIpHeader::XRealIp => "x-real-ip",
        }
    }
}

/// Who a fan is, and which peers are trusted to say so.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Fan identity")]
pub struct IdentitySettings {
    /// How the gateway knows who a fan is: jwt, anonymous, trusted-header or body. Required for
    /// the gateway roles (body by default only under --insecure-dev).
    #[arg(long, env = "QUEUEGATE_FAN_IDENTITY", value_enum)]
    pub fan_identity: Option<FanIdentityMode>,

    /// jwt mode: the JWKS that verifies fans' identity tokens, as a file path or an http(s) URL
    /// (re-read every 5 minutes, and when a token names an unknown key id). EdDSA, ES256, RS256.
    #[arg(long, env = "QUEUEGATE_FAN_JWT_JWKS")]
    pub fan_jwt_jwks: Option<String>,

    /// jwt mode: an HS256 secret (32+ bytes) instead of a JWKS.
    #[arg(long, env = "QUEUEGATE_FAN_JWT_SECRET", hide_env_values = true)]
    pub fan_jwt_secret: Option<Secret>,

    /// jwt mode: the required `iss` of identity tokens.
    #[arg(long, env = "QUEUEGATE_FAN_JWT_ISSUER")]
    pub fan_jwt_issuer: Option<String>,

    /// jwt mode: the required `aud` of identity tokens.
    #[arg(long, env = "QUEUEGATE_FAN_JWT_AUDIENCE")]
    pub fan_jwt_audience: Option<String>,

    /// jwt mode: clock skew allowed when checking `exp` and `nbf` (s).
    #[arg(long, env = "QUEUEGATE_FAN_JWT_LEEWAY_SECONDS", default_value_t = 30)]
    pub fan_jwt_leeway_seconds: u64,

    /// trusted-header mode: the header in which the authenticating proxy puts the fan's id.
    #[arg(long, env = "QUEUEGATE_FAN_ID_HEADER")]
    pub fan_id_header: Option<String>,

    /// Peers (CIDRs, comma separated) whose client-address header and fan-id header are
    /// believed; from anyone else those headers are ignored.
    #[arg(long, env = "QUEUEGATE_TRUSTED_PROXIES", value_delimiter = ',')]
    pub trusted_proxies: Vec<IpNet>,

    /// The one header the trusted proxies put the client's address in: x-forwarded-for,
    /// forwarded or x-real-ip. Read from the right past the trusted proxies, and only when the
    /// direct peer is one; every other forwarding header is ignored.
    #[arg(long, env = "QUEUEGATE_CLIENT_IP_HEADER", value_enum, default_value = "x-forwarded-for")]
    pub client_ip_header: ClientIpHeader,

    /// Allow body mode (fans name themselves, unauthenticated) without --insecure-dev. Logged as
    /// a warning at every start.
    #[arg(long, env = "QUEUEGATE_ALLOW_UNAUTHENTICATED_FANS")]
    pub allow_unauthenticated_fans: bool,

    /// How long an entry token lets a fan read its status (s).
    #[arg(long, env = "QUEUEGATE_ENTRY_TOKEN_TTL_SECONDS", default_value_t = 86_400)]
    pub entry_token_ttl_seconds: u64,
}

impl IdentitySettings {
    /// The mode in force: the configured one, or body under --insecure-dev.
    pub fn mode(&self, insecure_dev: bool) -> Option<FanIdentityMode> {
        self.fan_identity.or(insecure_dev.then_some(FanIdentityMode::Body))
    }

    /// Checks the section for a process that serves fans (`serves_fans`) or not.
    pub fn validate(&self, insecure_dev: bool, serves_fans: bool) -> Result<(), ConfigError> {
        const MODE: &str = "QUEUEGATE_FAN_IDENTITY";
        check_range("QUEUEGATE_FAN_JWT_LEEWAY_SECONDS", self.fan_jwt_leeway_seconds, 0..=300)?;
        check_range("QUEUEGATE_ENTRY_TOKEN_TTL_SECONDS", self.entry_token_ttl_seconds, 60..=604_800)?;
        let Some(mode) = self.mode(insecure_dev) else {
            if serves_fans {
                return Err(bad(
                    MODE,
                    "is required: jwt, anonymous, trusted-header or body (see docs/explain-security.md)",
                ));
            }
            return Ok(());
        };
        match mode {
            FanIdentityMode::Body if !(insecure_dev || self.allow_unauthenticated_fans) => Err(bad(
                MODE,
                "body lets anyone join as anyone; it needs --insecure-dev or QUEUEGATE_ALLOW_UNAUTHENTICATED_FANS=true",
            )),
            FanIdentityMode::Jwt => self.validate_jwt(),
            FanIdentityMode::TrustedHeader => {
                let header = self.fan_id_header.as_deref().unwrap_or("");
                if actix_web::http::header::HeaderName::from_bytes(header.as_bytes()).is_err() {
                    return Err(bad("QUEUEGATE_FAN_ID_HEADER", "must name a header in trusted-header mode"));
                }
                if self.trusted_proxies.is_empty() {
                    return Err(bad("QUEUEGATE_TRUSTED_PROXIES", "must list the proxies in trusted-header mode"));
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    fn validate_jwt(&self) -> Result<(), ConfigError> {
        match (&self.fan_jwt_jwks, &self.fan_jwt_secret) {
            (None, None) => {
                return Err(bad("QUEUEGATE_FAN_JWT_JWKS", "jwt mode needs a JWKS (or QUEUEGATE_FAN_JWT_SECRET)"))
            }
            (Some(_), Some(_)) => {
                return Err(bad("QUEUEGATE_FAN_JWT_SECRET", "give either a JWKS or an HS256 secret, not both"))
            }
            (None, Some(s)) if s.expose().len() < 32 => {
                return Err(bad("QUEUEGATE_FAN_JWT_SECRET", "must be at least 32 bytes"))
            }
            _ => {}
        }
        if self.fan_jwt_issuer.as_deref().is_none_or(str::is_empty) {
            return Err(bad("QUEUEGATE_FAN_JWT_ISSUER", "is required in jwt mode (the iss tokens must carry)"));
        }
        if self.fan_jwt_audience.as_deref().is_none_or(str::is_empty) {
            return Err(bad("QUEUEGATE_FAN_JWT_AUDIENCE", "is required in jwt mode (the aud tokens must carry)"));
        }
        Ok(())
    }
}
