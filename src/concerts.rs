//! Concerts: their settings (stored in Redis) and the gateway's cache of their states.
//!
//! A join must learn whether its concert exists and is open without a Redis round trip, so each
//! gateway keeps every concert's state in memory and refreshes it in the background
//! (the "concert cache refresh" task in [`crate::startup`]). The admin API of the same process updates the cache at once;
//! other processes see a change within one refresh interval (`QUEUEGATE_CONCERT_REFRESH_MS`).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use serde::{Deserialize, Serialize};

use crate::ids::{ConcertId, Lane};

/// A concert queue's lifecycle state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ConcertState {
    /// Joins accepted, admission runs.
    Open,
    /// Joins refused (409), admission stopped, positions kept.
    Paused,
    /// Joins refused (409), queue kept for reading.
    Closed,
    /// The tickets are gone: joins refused (410, with `soldOutMessage`), admission stopped,
    /// every waiting fan told `soldout`; places kept, so `open` again resumes the same queue.
    #[serde(rename = "soldout")]
    SoldOut,
}

impl ConcertState {
    pub fn as_str(self) -> &'static str {
        match self {
            ConcertState::Open => "open",
            ConcertState::Paused => "paused",
            ConcertState::Closed => "closed",
            ConcertState::SoldOut => "soldout",
        }
    }
    fn parse(s: &str) -> Option<Self> {
        match s {
            "open" => Some(ConcertState::Open),
            "paused" => Some(ConcertState::Paused),
            "closed" => Some(ConcertState::Closed),
            "soldout" => Some(ConcertState::SoldOut),
            _ => None,
        }
    }
}

/// How a concert lets fans through.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum QueueingMethod {
    /// First in, first out, at `admitPerSecond` / within `maxActive` (the default).
    #[default]
    Fifo,
    /// For quiet times: every fan is admitted as soon as it reaches the queue (at each admission
    /// round, within `maxActive` when set).
    Passthrough,
    /// Maintenance: joins get 503 with a message; those already queued keep their places.
    Reject,
    /// For a gate kept on all year: a visitor without a session is let straight in (a session
    /// at once, no room) while nobody waits, a `maxActive` slot is free and `admitPerSecond`
    /// allows; otherwise the room, as `fifo` (src/store/enter.lua).
    Standby,
}

impl QueueingMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            QueueingMethod::Fifo => "fifo",
            QueueingMethod::Passthrough => "passthrough",
            QueueingMethod::Reject => "reject",
            QueueingMethod::Standby => "standby",
        }
    }
    fn parse(s: &str) -> Option<Self> {
        match s {
            "fifo" => Some(QueueingMethod::Fifo),
            "passthrough" => Some(QueueingMethod::Passthrough),
            "reject" => Some(QueueingMethod::Reject),
            "standby" => Some(QueueingMethod::Standby),
            _ => None,
        }
    }
}

/// The `SameSite` attribute of a concert's gate session cookie (`sessionCookieSameSite`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CookieSameSite {
    /// `SameSite=Lax` (the default): the cookie rides on the booking site's own requests and on
    /// top-level GET navigations from other sites, never on another site's POST.
    #[default]
    Lax,
    /// `SameSite=None`: also on cross-site POSTs and subrequests, such as a payment provider's
    /// form posting the fan back to the booking site (3-D Secure). Costs Lax's CSRF shield: the
    /// booking site must then protect its own forms.
    None,
}

impl CookieSameSite {
    pub fn as_str(self) -> &'static str {
        match self {
            CookieSameSite::Lax => "lax",
            CookieSameSite::None => "none",
        }
    }
    fn parse(s: &str) -> Option<Self> {
        match s {
            "lax" => Some(CookieSameSite::Lax),
            "none" => Some(CookieSameSite::None),
            _ => None,
        }
    }
    /// As the `Set-Cookie` attribute writes it.
    pub fn attribute(self) -> &'static str {
        match self {
            CookieSameSite::Lax => "Lax",
            CookieSameSite::None => "None",
        }
    }
}

/// Whether the gate exchanges an admission token only in the browser that waited for it
/// (`sessionBinding`, src/gate/binding.rs).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SessionBinding {
    /// Only a browser holding the nonce the gate gave it when it sent it to the room (the
    /// default): a token link opened anywhere else is refused and the token stays unspent.
    #[default]
    Browser,
    /// Any browser that brings the token (no protection against session fixation through a
    /// shared link): for proxies that cannot relay the gate's redirect to the room, such as
    /// ingress-nginx's `auth-signin`.
    None,
}

impl SessionBinding {
    pub fn as_str(self) -> &'static str {
        match self {
            SessionBinding::Browser => "browser",
            SessionBinding::None => "none",
        }
    }
    fn parse(s: &str) -> Option<Self> {
        match s {
            "browser" => Some(SessionBinding::Browser),
            "none" => Some(SessionBinding::None),
            _ => None,
        }
    }
}

/// Largest `maxActive` (the OpenAPI schema states the same bound).
pub const MAX_ACTIVE: u32 = 1_000_000;

/// Largest `powDifficulty` (the OpenAPI schema states the same bound): 24 bits is minutes.
pub const MAX_POW_DIFFICULTY: u8 = 24;

/// Largest `maxWaiting` (the OpenAPI schema states the same bound).
pub const MAX_WAITING: u32 = 100_000_000;

/// `maxWaiting` when a concert does not set it: a million fans, about 240 MB of Redis at the
/// soak's ~240 bytes per waiting fan (docs/explain-costs.md), so a concert without a cap (an
/// anonymous room without proof of work, say) cannot be grown without bound by one botnet.
/// `0` still means no cap, for an operator who sets it on purpose.
pub const DEFAULT_MAX_WAITING: u32 = 1_000_000;

/// What the cache says about a join to a concert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JoinCheck {
    /// Open, with room; new anonymous fans must show `pow_difficulty` bits of work (0: none).
    Open { pow_difficulty: u8 },
    /// Open, but `maxWaiting` fans were waiting at the last refresh.
    Full { max_waiting: u32 },
    /// Past the concert's `closesAt`.
    Ended { closes_at: i64 },
    /// The concert's queueing method is `reject` (maintenance).
    Maintenance,
    /// Sold out: the concert's `soldOutMessage` (or a default).
    SoldOut(String),
    /// Not open.
    Refused(ConcertState),
    /// No such concert.
    Unknown,
    /// The cache has not been loaded from Redis yet.
    NotLoaded,
}

/// Who may join a lane.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LaneAccess {
    /// Anyone (the default).
    Open,
    /// A fan with a single-use code the operator uploaded (`POST …/lanes/{lane}/codes`).
    Code,
    /// A fan whose identity token (jwt mode) carries the claim `name` with the value `value`.
    Claim { name: String, value: String },
}

impl LaneAccess {
    fn open() -> Self {
        LaneAccess::Open
    }

    pub fn as_text(&self) -> String {
        match self {
            LaneAccess::Open => "open".into(),
            LaneAccess::Code => "code".into(),
            LaneAccess::Claim { name, value } => format!("claim:{name}={value}"),
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "open" => Some(LaneAccess::Open),
            "code" => Some(LaneAccess::Code),
            _ => {
                let (name, value) = s.strip_prefix("claim:")?.split_once('=')?;
                let ok = |t: &str| (1..=128).contains(&t.len()) && !t.chars().any(char::is_control);
                (ok(name) && ok(value)).then(|| LaneAccess::Claim { name: name.into(), value: value.into() })
            }
        }
    }
}

impl Serialize for LaneAccess {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.as_text())
    }
}

impl<'de> Deserialize<'de> for LaneAccess {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        LaneAccess::parse(&s)
            .ok_or_else(|| serde::de::Error::custom("access must be \"open\", \"code\" or \"claim:<name>=<value>\""))
    }
}

fn default_share() -> u32 {
    1
}

/// One lane of a concert: its own line, with its share of each admission round.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LaneSettings {
    pub name: Lane,
    /// Its weight in each admission round (1 to [`MAX_SHARE`]); shares need not add up to 100.
    #[serde(default = "default_share")]
    pub share: u32,
    #[serde(default = "LaneAccess::open")]
    pub access: LaneAccess,
}

/// Most lanes a concert has.
pub const MAX_LANES: usize = 8;
/// Largest `share` of a lane.
pub const MAX_SHARE: u32 = 1000;

/// Default admission-token lifetime when a concert does not set one.
pub const DEFAULT_TOKEN_TTL_SECONDS: u32 = 600;

/// What an operator sets on a concert (the body of `PUT /admin/v1/concerts/{id}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConcertSettings {
    pub state: ConcertState,
    /// Fans admitted per second by automatic admission (0: manual admission only).
    #[serde(default)]
    pub admit_per_second: u32,
    /// Admitted fans holding a slot at once (0: no limit).
    #[serde(default)]
    pub max_active: u32,
    /// Lifetime of an admission token.
    #[serde(default = "default_ttl")]
    pub token_ttl_seconds: u32,
    /// Waiting fans who have not polled their status for this long are skipped at admission
    /// and see `expired` (0: never).
    #[serde(default)]
    pub abandon_after_seconds: u32,
    /// Fans waiting at most; joins beyond it get 409 "queue full" ([`DEFAULT_MAX_WAITING`] when
    /// not set; 0: no cap). Judged against the count each gateway refreshed last
    /// (`QUEUEGATE_CONCERT_REFRESH_MS`), so a burst can overshoot it by what arrives within one
    /// refresh plus the consumer's lag.
    #[serde(default = "default_max_waiting")]
    pub max_waiting: u32,
    /// Leading zero bits of SHA-256 a new anonymous fan must find before joining (0: none; each
    /// bit doubles the work, 16 is about a second in a browser).
    #[serde(default)]
    pub pow_difficulty: u8,
    /// When sales open (ms; RFC 3339 in the API). Before it the concert is `scheduled`: joins
    /// are held in a pre-queue, and at it everyone who joined before is placed, in a random
    /// order anyone can verify, ahead of everyone who joined after (see `crate::fairness`).
    #[serde(default, with = "crate::clock::rfc3339_opt", skip_serializing_if = "Option::is_none")]
    pub opens_at: Option<i64>,
    /// When joins stop (ms; RFC 3339 in the API): 409 from then on; admission goes on.
    #[serde(default, with = "crate::clock::rfc3339_opt", skip_serializing_if = "Option::is_none")]
    pub closes_at: Option<i64>,
    /// `fifo` (default), `passthrough`, `reject` or `standby`.
    #[serde(default)]
    pub queueing_method: QueueingMethod,
    /// Every visitor without a session goes to the room, whatever the method (the emergency
    /// switch of a gate kept on in `standby`); live sessions go on.
    #[serde(default)]
    pub queue_all: bool,
    /// Requests the gate lets through without a session or a slot: client addresses and path
    /// prefixes of the protected site.
    #[serde(default, skip_serializing_if = "Bypass::is_empty")]
    pub bypass: Bypass,
    /// The concert's name, shown on its waiting room (`/c/{concertId}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Where the waiting room sends an admitted fan: the booking site's page, which receives the
    /// admission token as the `admissionToken` query parameter (docs/howto-booking-site.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redirect_url: Option<String>,
    /// The waiting room's logo: an `https://` URL or a path on the gateway.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logo_url: Option<String>,
    /// The waiting room's accent colour (`#rrggbb`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub brand_color: Option<String>,
    /// The waiting room's background colour (`#rrggbb`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub background_color: Option<String>,
    /// A gate session ends when no gate check came for this long (src/gateway/gate_check.rs).
    #[serde(default = "default_session_idle")]
    pub session_idle_seconds: u32,
    /// A gate session ends this long after it started, however busy.
    #[serde(default = "default_session_max")]
    pub session_max_seconds: u32,
    /// `SameSite` of the gate's session cookie: `lax` (default) or `none`.
    #[serde(default)]
    pub session_cookie_same_site: CookieSameSite,
    /// `browser` (default): a token is exchanged only in the browser that waited; `none`: in any.
    #[serde(default)]
    pub session_binding: SessionBinding,
    /// Hosts (`host` or `host:port`) of the booking site the gate protects besides
    /// `redirectUrl`'s: the room sends an admitted fan back to a `return` URL only on these.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub protected_hosts: Vec<String>,
    /// Origins (`scheme://host[:port]`) besides the gateway's own whose pages may send this
    /// concert's state-changing requests (joins) from a browser (src/gateway/writes.rs).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_origins: Vec<String>,
    /// What fans are told when the concert is `soldout` (the join's 410 and every waiting fan's
    /// status); the room shows its own words in the fan's language when it is not set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sold_out_message: Option<String>,
    /// The concert's lanes; empty: one lane, `general`, open to all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lanes: Vec<LaneSettings>,
    /// Endpoints that receive the concert's events by the Standard Webhooks specification
    /// (docs/howto-events.md).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub webhooks: Vec<WebhookSettings>,
}

/// Most webhooks a concert has.
pub const MAX_WEBHOOKS: usize = 10;

/// Most entries of each of `bypass`'s lists.
pub const MAX_BYPASS: usize = 50;

/// What passes a concert's gate without a session (`bypass`): requests from these client
/// networks (the operator's office, monitoring) and to these path prefixes of the protected site
/// (static assets, health checks).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Bypass {
    /// Networks written `address/prefix` (IPv4 or IPv6), or single addresses.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cidrs: Vec<String>,
    /// Path prefixes, each starting with `/`; matched against the original request's path.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub paths: Vec<String>,
}

impl Bypass {
    pub fn is_empty(&self) -> bool {
        self.cidrs.is_empty() && self.paths.is_empty()
    }

    /// Whether a request from `client` (when known) to `path` (when canonical) passes: "cidr" or
    /// "path". A prefix matches whole segments: `/healthz` matches `/healthz` and `/healthz/x`,
    /// never `/healthz.php`; `/static/` matches everything under it.
    pub fn passes(&self, client: Option<std::net::IpAddr>, path: Option<&str>) -> Option<&'static str> {
        if let Some(ip) = client {
            let ip = crate::identity::canonical(ip);
            if self.cidrs.iter().filter_map(|c| parse_network(c)).any(|n| n.contains(&ip)) {
                return Some("cidr");
            }
        }
        let path = path?;
        let under = |p: &str| {
            path.strip_prefix(p).is_some_and(|rest| rest.is_empty() || p.ends_with('/') || rest.starts_with('/'))
        };
        self.paths.iter().any(|p| under(p)).then_some("path")
    }

    fn validate(&self) -> Result<(), String> {
        if self.cidrs.len() > MAX_BYPASS || self.paths.len() > MAX_BYPASS {
            return Err(format!("bypass lists at most {MAX_BYPASS} cidrs and {MAX_BYPASS} paths"));
        }
        if let Some(bad) = self.cidrs.iter().find(|c| parse_network(c).is_none()) {
            return Err(format!("bypass.cidrs: {bad:?} is not a network written address/prefix or an address"));
        }
        let bad_path = |p: &String| {
            !p.starts_with('/') || p.len() > 256 || p.chars().any(|c| c.is_control() || c.is_whitespace() || c == '?')
        };
        if let Some(bad) = self.paths.iter().find(|p| bad_path(p)) {
            return Err(format!(
                "bypass.paths: {bad:?} is not a path prefix (starting with /, at most 256 characters, no query)"
            ));
        }
        Ok(())
    }
}

/// `address/prefix` or a lone address (a /32 or /128).
fn parse_network(s: &str) -> Option<ipnet::IpNet> {
    s.parse::<ipnet::IpNet>().ok().or_else(|| s.parse::<std::net::IpAddr>().ok().map(ipnet::IpNet::from))
}

/// One webhook endpoint of a concert.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WebhookSettings {
    /// Given by queuegate when the endpoint is created (`wh_…`); a PUT that sends it back
    /// keeps the endpoint, its secret and its pending deliveries.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub id: String,
    /// An absolute http:// or https:// URL.
    pub url: String,
    /// The event types delivered (`dev.queuegate.fan.admitted`, …); empty: all of them but
    /// those delivered only when named (`crate::events::OPT_IN`: `dev.queuegate.admin.action`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub types: Vec<String>,
    /// The secret, masked (`whsec_ab…`): shown whole only in the answer that created or
    /// rotated it. Ignored in a PUT's body.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub secret: String,
}

impl WebhookSettings {
    /// Whether events of type `ce_type` go to this endpoint.
    pub fn wants(&self, ce_type: &str) -> bool {
        if self.types.is_empty() {
            !crate::events::OPT_IN.contains(&ce_type)
        } else {
            self.types.iter().any(|t| t == ce_type)
        }
    }
}

/// Default `sessionIdleSeconds`.
pub const DEFAULT_SESSION_IDLE_SECONDS: u32 = 600;
/// Default `sessionMaxSeconds`.
pub const DEFAULT_SESSION_MAX_SECONDS: u32 = 3600;
/// Most `protectedHosts` a concert lists.
pub const MAX_PROTECTED_HOSTS: usize = 20;
/// Most `allowedOrigins` a concert lists.
pub const MAX_ALLOWED_ORIGINS: usize = 20;

/// Whether `o` is an origin as a browser's `Origin` header writes it: `http` or `https`, a host,
/// an optional port other than the scheme's default, lower case, nothing else (no path, not
/// even `/`), so a plain string comparison with the header decides.
fn is_origin(o: &str) -> bool {
    o.len() <= 261
        && url::Url::parse(o).is_ok_and(|u| {
            matches!(u.scheme(), "http" | "https") && u.username().is_empty() && u.origin().ascii_serialization() == o
        })
}

fn default_session_idle() -> u32 {
    DEFAULT_SESSION_IDLE_SECONDS
}

fn default_session_max() -> u32 {
    DEFAULT_SESSION_MAX_SECONDS
}

/// Whether `h` is a host name or address with an optional port, lower case, as a URL's
/// authority writes it (no user, no path).
fn is_host(h: &str) -> bool {
    !h.is_empty()
        && h.len() <= 261
        && url::Url::parse(&format!("http://{h}/")).is_ok_and(|u| {
            let port = u.port().map_or(String::new(), |p| format!(":{p}"));
            u.host_str().is_some_and(|host| format!("{host}{port}") == h) && u.username().is_empty()
        })
}

fn default_ttl() -> u32 {
    DEFAULT_TOKEN_TTL_SECONDS
}

fn default_max_waiting() -> u32 {
    DEFAULT_MAX_WAITING
}

impl ConcertSettings {
    /// An open concert with default settings.
    pub fn open() -> Self {
        ConcertSettings {
            state: ConcertState::Open,
            admit_per_second: 0,
            max_active: 0,
            token_ttl_seconds: DEFAULT_TOKEN_TTL_SECONDS,
            abandon_after_seconds: 0,
            max_waiting: DEFAULT_MAX_WAITING,
            pow_difficulty: 0,
            opens_at: None,
            closes_at: None,
            queueing_method: QueueingMethod::Fifo,
            queue_all: false,
            bypass: Bypass::default(),
            name: None,
            redirect_url: None,
            logo_url: None,
            brand_color: None,
            background_color: None,
            session_idle_seconds: DEFAULT_SESSION_IDLE_SECONDS,
            session_max_seconds: DEFAULT_SESSION_MAX_SECONDS,
            session_cookie_same_site: CookieSameSite::Lax,
            session_binding: SessionBinding::Browser,
            protected_hosts: Vec::new(),
            allowed_origins: Vec::new(),
            sold_out_message: None,
            lanes: Vec::new(),
            webhooks: Vec::new(),
        }
    }

    /// The concert's lanes in order: `lanes`, or the one `general` lane. Borrowed when the
    /// concert lists its lanes, so a join's or a status read's look-up copies nothing.
    pub fn lanes(&self) -> std::borrow::Cow<'_, [LaneSettings]> {
        if self.lanes.is_empty() {
            std::borrow::Cow::Owned(vec![LaneSettings { name: Lane::general(), share: 1, access: LaneAccess::Open }])
        } else {
            std::borrow::Cow::Borrowed(&self.lanes)
        }
    }

    /// The lanes' names, in order.
    pub fn lane_names(&self) -> Vec<Lane> {
        self.lanes().iter().map(|l| l.name.clone()).collect()
    }

    /// The index of lane `name` in [`lanes`](Self::lanes), if the concert has it.
    pub fn lane_index(&self, name: &Lane) -> Option<u8> {
        self.lanes().iter().position(|l| &l.name == name).map(|i| i as u8)
    }

    /// Each lane's name and share, in order: how admission splits its rounds.
    pub fn lane_shares(&self) -> Vec<(Lane, u32)> {
        self.lanes().iter().map(|l| (l.name.clone(), l.share)).collect()
    }

    /// The lane named `name`, if the concert has it.
    pub fn lane(&self, name: &Lane) -> Option<LaneSettings> {
        self.lanes().iter().find(|l| &l.name == name).cloned()
    }

    /// What fans of a sold-out concert are told: `soldOutMessage`, or a default naming it.
    pub fn sold_out_text(&self, id: &ConcertId) -> String {
        self.sold_out_message
            .clone()
            .unwrap_or_else(|| format!("{} is sold out", self.name.as_deref().unwrap_or(id.as_str())))
    }

    /// While the concert is sold out: its `soldOutMessage` ("" without one; the room then says it
    /// in the fan's language).
    pub fn sold_out(&self) -> Option<String> {
        (self.state == ConcertState::SoldOut).then(|| self.sold_out_message.clone().unwrap_or_default())
    }

    /// Whether joins are held in the pre-queue at `now_ms` (before `opensAt`).
    pub fn scheduled_at(&self, now_ms: i64) -> bool {
        self.opens_at.is_some_and(|t| now_ms < t)
    }

    /// Checks the numbers; the error names the field.
    pub fn validate(&self) -> Result<(), String> {
        if self.admit_per_second > 100_000 {
            return Err("admitPerSecond must be at most 100000".into());
        }
        if self.max_active > MAX_ACTIVE {
            return Err(format!("maxActive must be at most {MAX_ACTIVE}"));
        }
        if !(1..=86_400).contains(&self.token_ttl_seconds) {
            return Err("tokenTtlSeconds must be between 1 and 86400".into());
        }
        if self.pow_difficulty > MAX_POW_DIFFICULTY {
            return Err(format!("powDifficulty must be at most {MAX_POW_DIFFICULTY}"));
        }
        if self.max_waiting > MAX_WAITING {
            return Err(format!("maxWaiting must be at most {MAX_WAITING}"));
        }
        if self.abandon_after_seconds > 86_400 {
            return Err("abandonAfterSeconds must be at most 86400".into());
        }
        if let (Some(open), Some(close)) = (self.opens_at, self.closes_at) {
            if close <= open {
                return Err("closesAt must be after opensAt".into());
            }
        }
        if let Some(name) = &self.name {
            if name.trim().is_empty() || name.chars().count() > MAX_NAME_CHARS || name.chars().any(char::is_control) {
                return Err(format!("name must be 1 to {MAX_NAME_CHARS} characters, without control characters"));
            }
        }
        if let Some(m) = &self.sold_out_message {
            let bad = m.trim().is_empty()
                || m.chars().count() > MAX_MESSAGE_CHARS
                || m.chars().any(|c| c.is_control() && c != '\n');
            if bad {
                return Err(format!(
                    "soldOutMessage must be 1 to {MAX_MESSAGE_CHARS} characters, without control characters but new lines"
                ));
            }
        }
        if !(1..=86_400).contains(&self.session_idle_seconds) {
            return Err("sessionIdleSeconds must be between 1 and 86400".into());
        }
        if !(1..=86_400).contains(&self.session_max_seconds) {
            return Err("sessionMaxSeconds must be between 1 and 86400".into());
        }
        if self.protected_hosts.len() > MAX_PROTECTED_HOSTS {
            return Err(format!("protectedHosts lists at most {MAX_PROTECTED_HOSTS} hosts"));
        }
        if let Some(bad) = self.protected_hosts.iter().find(|h| !is_host(h)) {
            return Err(format!("protectedHosts: {bad:?} is not a lower-case host or host:port"));
        }
        if self.allowed_origins.len() > MAX_ALLOWED_ORIGINS {
            return Err(format!("allowedOrigins lists at most {MAX_ALLOWED_ORIGINS} origins"));
        }
        if let Some(bad) = self.allowed_origins.iter().find(|o| !is_origin(o)) {
            return Err(format!(
                "allowedOrigins: {bad:?} is not an origin written scheme://host[:port] (http or https, lower case, no path, no default port)"
            ));
        }
        if let Some(url) = &self.redirect_url {
            web_url(url).ok_or("redirectUrl must be an absolute http:// or https:// URL of at most 2048 characters")?;
        }
        if let Some(logo) = &self.logo_url {
            let own_path = logo.starts_with('/') && !logo.starts_with("//");
            let ok = own_path && logo.len() <= 2048 && !logo.chars().any(|c| c.is_control() || c.is_whitespace());
            if !ok && web_url(logo).is_none_or(|u| u.scheme() != "https") {
                return Err("logoUrl must be an https:// URL or a path on the gateway (starting with /)".into());
            }
        }
        if self.lanes.len() > MAX_LANES {
            return Err(format!("lanes lists at most {MAX_LANES} lanes"));
        }
        for (i, lane) in self.lanes.iter().enumerate() {
            if lane.name.len() > 32 {
                return Err(format!("lanes: the name {:?} is longer than 32 characters", lane.name.as_str()));
            }
            if self.lanes[..i].iter().any(|l| l.name == lane.name) {
                return Err(format!("lanes: {:?} is named twice", lane.name.as_str()));
            }
            if !(1..=MAX_SHARE).contains(&lane.share) {
                return Err(format!("lanes: the share of {:?} must be between 1 and {MAX_SHARE}", lane.name.as_str()));
            }
        }
        if self.webhooks.len() > MAX_WEBHOOKS {
            return Err(format!("webhooks lists at most {MAX_WEBHOOKS} endpoints"));
        }
        for (i, hook) in self.webhooks.iter().enumerate() {
            if web_url(&hook.url).is_none() {
                return Err(format!(
                    "webhooks: {:?} is not an absolute http:// or https:// URL of at most 2048 characters",
                    hook.url
                ));
            }
            if self.webhooks[..i].iter().any(|h| h.url == hook.url) {
                return Err(format!("webhooks: {:?} is listed twice", hook.url));
            }
            if let Some(t) = hook.types.iter().find(|t| !crate::events::TYPES.contains(&t.as_str())) {
                return Err(format!(
                    "webhooks: {t:?} is not an event type; the types are {}",
                    crate::events::TYPES.join(", ")
                ));
            }
        }
        self.bypass.validate()?;
        if self.queueing_method == QueueingMethod::Standby && self.max_active == 0 {
            // Every visitor without a cookie would start a session: Redis would hold one per
            // request for sessionIdleSeconds, without a bound.
            return Err("queueingMethod standby needs maxActive (the most visitors inside at once)".into());
        }
        for (field, colour) in [("brandColor", &self.brand_color), ("backgroundColor", &self.background_color)] {
            if colour.as_deref().is_some_and(|c| !is_hex_colour(c)) {
                return Err(format!("{field} must be a colour written #rrggbb"));
            }
        }
        Ok(())
    }

    pub(crate) fn to_fields(&self) -> Vec<(&'static str, String)> {
        vec![
            ("state", self.state.as_str().to_owned()),
            ("admitPerSecond", self.admit_per_second.to_string()),
            ("maxActive", self.max_active.to_string()),
            ("tokenTtlSeconds", self.token_ttl_seconds.to_string()),
            ("abandonAfterSeconds", self.abandon_after_seconds.to_string()),
            ("maxWaiting", self.max_waiting.to_string()),
            ("powDifficulty", self.pow_difficulty.to_string()),
            // "" clears: an instant taken away is no instant.
            ("opensAt", self.opens_at.map_or(String::new(), |t| t.to_string())),
            ("closesAt", self.closes_at.map_or(String::new(), |t| t.to_string())),
            ("queueingMethod", self.queueing_method.as_str().to_owned()),
            ("queueAll", self.queue_all.to_string()),
            (
                "bypass",
                if self.bypass.is_empty() {
                    String::new()
                } else {
                    serde_json::to_string(&self.bypass).expect("bypass serialises")
                },
            ),
            ("name", self.name.clone().unwrap_or_default()),
            ("redirectUrl", self.redirect_url.clone().unwrap_or_default()),
            ("logoUrl", self.logo_url.clone().unwrap_or_default()),
            ("brandColor", self.brand_color.clone().unwrap_or_default()),
            ("backgroundColor", self.background_color.clone().unwrap_or_default()),
            ("sessionIdleSeconds", self.session_idle_seconds.to_string()),
            ("sessionMaxSeconds", self.session_max_seconds.to_string()),
            ("sessionCookieSameSite", self.session_cookie_same_site.as_str().to_owned()),
            ("sessionBinding", self.session_binding.as_str().to_owned()),
            ("protectedHosts", self.protected_hosts.join(",")),
            ("allowedOrigins", self.allowed_origins.join(",")),
            ("soldOutMessage", self.sold_out_message.clone().unwrap_or_default()),
            (
                "lanes",
                if self.lanes.is_empty() {
                    String::new()
                } else {
                    serde_json::to_string(&self.lanes).expect("lanes serialise")
                },
            ),
            (
                "webhooks",
                if self.webhooks.is_empty() {
                    String::new()
                } else {
                    serde_json::to_string(&self.webhooks).expect("webhooks serialise")
                },
            ),
        ]
    }
}

/// Longest `soldOutMessage`, in characters.
pub const MAX_MESSAGE_CHARS: usize = 500;

/// Longest concert `name`, in characters.
pub const MAX_NAME_CHARS: usize = 120;

/// `s` as an absolute http(s) URL with a host, of at most 2048 bytes.
fn web_url(s: &str) -> Option<url::Url> {
    if s.len() > 2048 {
        return None;
    }
    let u = url::Url::parse(s).ok()?;
    (matches!(u.scheme(), "http" | "https") && u.host().is_some()).then_some(u)
}

/// `#rrggbb`.
fn is_hex_colour(s: &str) -> bool {
    s.len() == 7 && s.starts_with('#') && s[1..].bytes().all(|b| b.is_ascii_hexdigit())
}

/// A concert as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Concert {
    pub id: ConcertId,
    pub settings: ConcertSettings,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
    /// Counts the writes of its settings (the hash's `version` field, raised by every write in
    /// the same script: src/store/concert_put.lua); 0 for a hash written before versions.
    pub version: u64,
}

impl Concert {
    /// The strong `ETag` of the stored settings: their version, with the creation time so a
    /// tag of one concert never matches another concert that happens to be at the same version.
    /// It changes with every write of the settings, whichever gateway made it, and with nothing
    /// else (the counts a `GET` shows beside the settings are not part of what it tags).
    pub fn etag(&self) -> String {
        format!("\"{}-{}\"", self.created_at_ms, self.version)
    }
}

impl Concert {
    /// Builds a concert from its Redis hash; unknown or broken fields fall back to defaults, and
    /// an unreadable state reads as closed (never accidentally open).
    pub(crate) fn from_fields(id: &ConcertId, fields: &[(String, String)]) -> Concert {
        let get = |name: &str| fields.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
        let num = |name: &str, default: u32| get(name).and_then(|v| v.parse().ok()).unwrap_or(default);
        let text = |name: &str| get(name).filter(|v| !v.is_empty()).map(str::to_owned);
        Concert {
            id: id.clone(),
            settings: ConcertSettings {
                state: get("state").and_then(ConcertState::parse).unwrap_or(ConcertState::Closed),
                admit_per_second: num("admitPerSecond", 0),
                max_active: num("maxActive", 0),
                token_ttl_seconds: num("tokenTtlSeconds", DEFAULT_TOKEN_TTL_SECONDS),
                abandon_after_seconds: num("abandonAfterSeconds", 0),
                max_waiting: num("maxWaiting", DEFAULT_MAX_WAITING),
                pow_difficulty: get("powDifficulty").and_then(|v| v.parse().ok()).unwrap_or(0),
                opens_at: get("opensAt").and_then(|v| v.parse().ok()),
                closes_at: get("closesAt").and_then(|v| v.parse().ok()),
                queueing_method: get("queueingMethod").and_then(QueueingMethod::parse).unwrap_or_default(),
                // Unreadable: true, the safer (everyone to the room).
                queue_all: get("queueAll").is_some_and(|v| v != "false"),
                bypass: get("bypass").and_then(|v| serde_json::from_str(v).ok()).unwrap_or_default(),
                name: text("name"),
                redirect_url: text("redirectUrl"),
                logo_url: text("logoUrl"),
                brand_color: text("brandColor"),
                background_color: text("backgroundColor"),
                session_idle_seconds: num("sessionIdleSeconds", DEFAULT_SESSION_IDLE_SECONDS),
                session_max_seconds: num("sessionMaxSeconds", DEFAULT_SESSION_MAX_SECONDS),
                session_cookie_same_site: get("sessionCookieSameSite")
                    .and_then(CookieSameSite::parse)
                    .unwrap_or_default(),
                // Unreadable: the safer, bound exchange.
                session_binding: get("sessionBinding").and_then(SessionBinding::parse).unwrap_or_default(),
                protected_hosts: get("protectedHosts")
                    .map(|v| v.split(',').filter(|h| !h.is_empty()).map(str::to_owned).collect())
                    .unwrap_or_default(),
                allowed_origins: get("allowedOrigins")
                    .map(|v| v.split(',').filter(|o| !o.is_empty()).map(str::to_owned).collect())
                    .unwrap_or_default(),
                sold_out_message: text("soldOutMessage"),
                lanes: get("lanes").and_then(|v| serde_json::from_str(v).ok()).unwrap_or_default(),
                webhooks: get("webhooks").and_then(|v| serde_json::from_str(v).ok()).unwrap_or_default(),
            },
            created_at_ms: get("createdAt").and_then(|v| v.parse().ok()).unwrap_or(0),
            updated_at_ms: get("updatedAt").and_then(|v| v.parse().ok()).unwrap_or(0),
            version: get("version").and_then(|v| v.parse().ok()).unwrap_or(0),
        }
    }
}

/// In-memory map of concert id → settings, shared by every HTTP worker and the admitter.
#[derive(Clone, Default)]
pub struct ConcertCache {
    inner: Arc<RwLock<CacheInner>>,
    loaded: Arc<std::sync::atomic::AtomicBool>,
}

#[derive(Default)]
struct CacheInner {
    states: HashMap<ConcertId, ConcertSettings>,
    /// Fans waiting at the last refresh, for the concerts that cap it (`maxWaiting`).
    waiting: HashMap<ConcertId, u64>,
    /// Counts this process's own changes ([`ConcertCache::set`]).
    generation: u64,
    /// Concerts this process changed, with the generation of the change: a refresh that read
    /// Redis before such a change must not put the older state back.
    local: HashMap<ConcertId, u64>,
}

impl ConcertCache {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, CacheInner> {
        self.inner.read().expect("concert cache lock poisoned")
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, CacheInner> {
        self.inner.write().expect("concert cache lock poisoned")
    }

    /// While `id` is sold out: its `soldOutMessage` ("" without one); read under the lock, so a
    /// status poll does not copy the whole settings.
    pub fn sold_out(&self, id: &ConcertId) -> Option<String> {
        self.read().states.get(id).and_then(ConcertSettings::sold_out)
    }

    /// The cached state of `id`, or None when the concert is unknown.
    pub fn state(&self, id: &ConcertId) -> Option<ConcertState> {
        self.read().states.get(id).map(|s| s.state)
    }

    /// Whether a join to `id` may go ahead, by the cached state and waiting count.
    pub fn join_check(&self, id: &ConcertId) -> JoinCheck {
        let inner = self.read();
        match inner.states.get(id) {
            Some(s) if s.state == ConcertState::SoldOut => JoinCheck::SoldOut(s.sold_out_text(id)),
            Some(s) if s.state != ConcertState::Open => JoinCheck::Refused(s.state),
            Some(s) if s.queueing_method == QueueingMethod::Reject => JoinCheck::Maintenance,
            Some(s) if s.closes_at.is_some_and(|t| crate::clock::now_ms() >= t) => {
                JoinCheck::Ended { closes_at: s.closes_at.unwrap_or_default() }
            }
            Some(s) if s.max_waiting > 0 && inner.waiting.get(id).is_some_and(|w| *w >= u64::from(s.max_waiting)) => {
                JoinCheck::Full { max_waiting: s.max_waiting }
            }
            Some(s) => JoinCheck::Open { pow_difficulty: s.pow_difficulty },
            None if !self.is_loaded() => JoinCheck::NotLoaded,
            None => JoinCheck::Unknown,
        }
    }

    /// Records the waiting counts of the concerts that cap them (read after a refresh).
    pub fn set_waiting(&self, waiting: HashMap<ConcertId, u64>) {
        self.write().waiting = waiting;
    }

    /// Fans waiting in `id` at the last refresh, when this gateway counts them (see [`capped`](Self::capped)).
    pub fn waiting(&self, id: &ConcertId) -> Option<u64> {
        self.read().waiting.get(id).copied()
    }

    /// The concerts whose waiting count a gateway refreshes: those that cap it (`maxWaiting`
    /// set), and those in `standby` (whether a site is queueing now shows on the concert).
    pub fn capped(&self) -> Vec<(ConcertId, Vec<Lane>)> {
        self.read()
            .states
            .iter()
            .filter(|(_, s)| s.max_waiting > 0 || s.queueing_method == QueueingMethod::Standby)
            .map(|(id, s)| (id.clone(), s.lane_names()))
            .collect()
    }

    /// Whether concert `id` lists `origin` in its `allowedOrigins` (an exact match: both are
    /// written as a browser writes an `Origin` header).
    pub fn allows_origin(&self, id: &ConcertId, origin: &str) -> bool {
        self.read().states.get(id).is_some_and(|s| s.allowed_origins.iter().any(|o| o == origin))
    }

    /// The lane `name` of concert `id`, if it has one.
    pub fn lane(&self, id: &ConcertId, name: &Lane) -> Option<LaneSettings> {
        self.read().states.get(id).and_then(|s| s.lane(name))
    }

    /// The cached settings of `id`.
    pub fn settings(&self, id: &ConcertId) -> Option<ConcertSettings> {
        self.read().states.get(id).cloned()
    }

    /// Every cached concert with its settings.
    pub fn snapshot(&self) -> Vec<(ConcertId, ConcertSettings)> {
        self.read().states.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }

    /// Whether the cache has been loaded from Redis at least once.
    pub fn is_loaded(&self) -> bool {
        self.loaded.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Records a change made by this process (already written to Redis), so it applies to the
    /// next join at once.
    pub fn set(&self, id: &ConcertId, settings: ConcertSettings) {
        let mut inner = self.write();
        inner.generation += 1;
        let generation = inner.generation;
        inner.local.insert(id.clone(), generation);
        inner.states.insert(id.clone(), settings);
    }

    /// Replaces the whole map with what `read` (a read of every concert from Redis) returns.
    /// The read starts only when awaited here, after this process's change number is noted, so
    /// changes this process makes meanwhile are kept (see [`replace`](Self::replace)). On
    /// failure the last known states stay in force: joins go on being judged by them.
    pub async fn refresh<E>(&self, read: impl std::future::Future<Output = Result<Vec<Concert>, E>>) -> Result<(), E> {
        let read_after = self.read().generation;
        let concerts = read.await?;
        self.replace(read_after, concerts.into_iter().map(|c| (c.id, c.settings)).collect());
        Ok(())
    }

    /// Installs `fresh`, read from Redis after this process's change number `read_after`; the
    /// changes this process made since then (which `fresh` may predate) are kept.
    fn replace(&self, read_after: u64, mut fresh: HashMap<ConcertId, ConcertSettings>) {
        let mut inner = self.write();
        let inner = &mut *inner;
        inner.local.retain(|_, generation| *generation > read_after);
        for id in inner.local.keys() {
            if let Some(s) = inner.states.get(id) {
                fresh.insert(id.clone(), s.clone());
            }
        }
        inner.states = fresh;
        self.loaded.store(true, std::sync::atomic::Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c() -> ConcertId {
        ConcertId::parse("c").unwrap()
    }

    #[test]
    fn a_webhook_without_types_gets_everything_but_the_admin_actions_which_it_must_name() {
        let hook = |types: &[&str]| WebhookSettings {
            id: String::new(),
            url: "https://h.example/".into(),
            types: types.iter().map(|t| t.to_string()).collect(),
            secret: String::new(),
        };
        assert!(hook(&[]).wants("dev.queuegate.fan.admitted"));
        assert!(!hook(&[]).wants("dev.queuegate.admin.action"));
        assert!(hook(&["dev.queuegate.admin.action"]).wants("dev.queuegate.admin.action"));
        assert!(!hook(&["dev.queuegate.admin.action"]).wants("dev.queuegate.fan.admitted"));
    }

    fn open() -> ConcertSettings {
        Concert::from_fields(&c(), &[("state".to_owned(), "open".to_owned())]).settings
    }

    #[test]
    fn a_refresh_read_before_a_local_change_does_not_undo_it() {
        let cache = ConcertCache::default();
        let read_after = cache.read().generation; // the refresh reads Redis now ...
        cache.set(&c(), open()); // ... the admin API creates the concert meanwhile ...
        cache.replace(read_after, HashMap::new()); // ... and the stale snapshot lands
        assert_eq!(cache.state(&c()), Some(ConcertState::Open), "the local change survives");

        // A snapshot read after the change is the truth again (here: the concert was deleted
        // by another process).
        let read_after = cache.read().generation;
        cache.replace(read_after, HashMap::new());
        assert_eq!(cache.state(&c()), None);
    }

    #[test]
    fn allowed_origins_are_written_as_a_browser_writes_an_origin() {
        for good in ["https://shop.example", "http://127.0.0.1:8443", "http://[::1]:8080", "https://a-b.example:1"] {
            assert!(is_origin(good), "{good}");
        }
        for bad in [
            "",
            "shop.example",
            "https://shop.example/",
            "https://shop.example/x",
            "https://Shop.example",
            "https://shop.example:443",
            "https://u@shop.example",
            "ftp://shop.example",
            "null",
        ] {
            assert!(!is_origin(bad), "{bad}");
        }
        let s = ConcertSettings { allowed_origins: vec!["https://shop.example/".into()], ..ConcertSettings::open() };
        assert!(s.validate().unwrap_err().contains("allowedOrigins"));
    }

    #[test]
    fn protected_hosts_are_bare_lower_case_hosts() {
        for good in ["shop.example", "127.0.0.1:8443", "[::1]:8080", "a-b.example:1"] {
            assert!(is_host(good), "{good}");
        }
        for bad in
            ["", "Shop.example", "https://shop.example", "shop.example/x", "u@shop.example", "shop.example:x", "a b"]
        {
            assert!(!is_host(bad), "{bad}");
        }
    }

    #[test]
    fn settings_round_trip_through_fields() {
        let s = ConcertSettings {
            state: ConcertState::SoldOut,
            admit_per_second: 50,
            max_active: 7,
            token_ttl_seconds: 90,
            abandon_after_seconds: 30,
            max_waiting: 1_000,
            pow_difficulty: 12,
            opens_at: Some(1_795_000_000_000),
            closes_at: None,
            queueing_method: QueueingMethod::Standby,
            queue_all: true,
            bypass: Bypass { cidrs: vec!["10.1.0.0/16".into(), "2001:db8::1".into()], paths: vec!["/static/".into()] },
            name: Some("Tour 2026 — 서울".into()),
            redirect_url: Some("https://tickets.example/book?x=1".into()),
            logo_url: Some("/favicon.ico".into()),
            brand_color: Some("#0a84ff".into()),
            background_color: None,
            session_idle_seconds: 45,
            session_max_seconds: 900,
            session_cookie_same_site: CookieSameSite::None,
            session_binding: SessionBinding::None,
            protected_hosts: vec!["shop.example".into(), "127.0.0.1:8443".into()],
            allowed_origins: vec!["https://shop.example".into(), "http://127.0.0.1:8443".into()],
            sold_out_message: Some("매진 — sold out,\nsee you next time".into()),
            lanes: vec![
                LaneSettings { name: Lane::parse("fanclub").unwrap(), share: 70, access: LaneAccess::Code },
                LaneSettings {
                    name: Lane::parse("members").unwrap(),
                    share: 20,
                    access: LaneAccess::Claim { name: "tier".into(), value: "gold".into() },
                },
                LaneSettings { name: Lane::general(), share: 10, access: LaneAccess::Open },
            ],
            webhooks: vec![],
        };
        let fields: Vec<(String, String)> = s.to_fields().into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
        assert_eq!(Concert::from_fields(&c(), &fields).settings, s);
        // In the API the instants are RFC 3339.
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(json["opensAt"], "2026-11-18T11:06:40Z");
        assert_eq!(json["state"], "soldout");
        assert!(json.get("closesAt").is_none());
        assert_eq!(json["lanes"][1]["access"], "claim:tier=gold");
        let back: ConcertSettings = serde_json::from_value(json).unwrap();
        assert_eq!(back, s);
    }

    #[test]
    fn bypass_matches_networks_and_path_prefixes_and_refuses_what_is_not_one() {
        let b = Bypass {
            cidrs: vec!["10.1.0.0/16".into(), "192.0.2.7".into(), "2001:db8::/32".into()],
            paths: vec!["/static/".into(), "/healthz".into()],
        };
        let ip = |s: &str| Some(s.parse::<std::net::IpAddr>().unwrap());
        let p = Some;
        assert_eq!(b.passes(ip("10.1.255.3"), p("/book")), Some("cidr"));
        assert_eq!(b.passes(ip("::ffff:10.1.0.9"), p("/book")), Some("cidr"), "an IPv4 client on an IPv6 socket");
        assert_eq!(b.passes(ip("10.2.0.1"), p("/book")), None);
        assert_eq!(b.passes(ip("192.0.2.7"), p("/book")), Some("cidr"));
        assert_eq!(b.passes(ip("192.0.2.8"), p("/book")), None, "a lone address is a /32");
        assert_eq!(b.passes(ip("2001:db8:ffff::1"), p("/")), Some("cidr"));
        assert_eq!(b.passes(ip("2001:db9::1"), p("/")), None);
        assert_eq!(b.passes(None, p("/static/app.js")), Some("path"));
        assert_eq!(b.passes(ip("10.2.0.1"), p("/healthz")), Some("path"));
        assert_eq!(b.passes(ip("10.2.0.1"), p("/healthz/deep")), Some("path"));
        assert_eq!(b.passes(ip("10.2.0.1"), p("/healthz.php")), None, "whole segments only");
        assert_eq!(b.passes(ip("10.2.0.1"), p("/statics")), None);
        assert_eq!(b.passes(ip("10.2.0.1"), None), None, "a path that is not canonical is gated");
        let all = Bypass { cidrs: vec!["0.0.0.0/0".into()], paths: vec![] };
        assert_eq!(all.passes(ip("203.0.113.1"), p("/")), Some("cidr"), "a /0 holds every address of its family");
        assert_eq!(all.passes(ip("2001:db8::1"), p("/")), None);
        let check = |cidrs: &[&str], paths: &[&str]| {
            Bypass {
                cidrs: cidrs.iter().map(|s| s.to_string()).collect(),
                paths: paths.iter().map(|s| s.to_string()).collect(),
            }
            .validate()
        };
        assert!(check(&["10.0.0.0/8", "::1", "fe80::/10"], &["/", "/a/b"]).is_ok());
        for bad in ["10.0.0.0/33", "10.0.0.0/", "10.0.0.0/+8", "shop.example", "::/129", ""] {
            assert!(check(&[bad], &[]).unwrap_err().contains("bypass.cidrs"), "{bad}");
        }
        for bad in ["static/", "/a b", "/a?x=1", ""] {
            assert!(check(&[], &[bad]).unwrap_err().contains("bypass.paths"), "{bad}");
        }
        assert!(check(&vec!["10.0.0.1"; MAX_BYPASS + 1], &[]).is_err());
    }

    #[test]
    fn lanes_are_checked_and_each_refusal_names_the_lane() {
        let lanes = |json: serde_json::Value| -> Result<ConcertSettings, String> {
            let s: ConcertSettings = serde_json::from_value(serde_json::json!({"state": "open", "lanes": json}))
                .map_err(|e| e.to_string())?;
            s.validate().map(|_| s)
        };
        let ok = lanes(
            serde_json::json!([{"name": "fanclub", "share": 70, "access": "code"}, {"name": "general", "share": 30}]),
        )
        .unwrap();
        assert_eq!(ok.lane_shares(), vec![(Lane::parse("fanclub").unwrap(), 70), (Lane::general(), 30)]);
        assert_eq!(ok.lane(&Lane::general()).unwrap().access, LaneAccess::Open);
        assert!(ok.lane(&Lane::parse("vip").unwrap()).is_none());
        let err = lanes(serde_json::json!([{"name": "a"}, {"name": "a"}])).unwrap_err();
        assert!(err.contains("\"a\" is named twice"), "{err}");
        let err = lanes(serde_json::json!([{"name": "a", "share": 0}])).unwrap_err();
        assert!(err.contains("share of \"a\""), "{err}");
        let err = lanes(serde_json::json!([{"name": "a", "access": "vip"}])).unwrap_err();
        assert!(err.contains("access must be"), "{err}");
        let err = lanes(serde_json::json!([{"name": "a", "access": "claim:tier"}])).unwrap_err();
        assert!(err.contains("access must be"), "{err}");
        let err = lanes(serde_json::json!([{"name": "a b"}])).unwrap_err();
        assert!(err.contains("lane must match"), "{err}");
        let nine: Vec<_> = (0..9).map(|i| serde_json::json!({"name": format!("l{i}")})).collect();
        assert!(lanes(serde_json::json!(nine)).unwrap_err().contains("at most 8"));
        // Without lanes: one, general, open to all.
        assert_eq!(ConcertSettings::open().lane_names(), vec![Lane::general()]);
    }

    #[test]
    fn an_unreadable_state_reads_as_closed() {
        let c = Concert::from_fields(&c(), &[("state".into(), "??".into())]);
        assert_eq!(c.settings.state, ConcertState::Closed);
    }

    #[test]
    fn the_put_body_takes_camel_case_and_defaults() {
        let s: ConcertSettings = serde_json::from_str(r#"{"state":"open","admitPerSecond":5}"#).unwrap();
        assert_eq!(s.admit_per_second, 5);
        assert_eq!(s.token_ttl_seconds, DEFAULT_TOKEN_TTL_SECONDS);
        assert_eq!(s.max_waiting, DEFAULT_MAX_WAITING, "a queue is capped unless the operator says otherwise");
        let uncapped: ConcertSettings = serde_json::from_str(r#"{"state":"open","maxWaiting":0}"#).unwrap();
        assert_eq!(uncapped.max_waiting, 0, "0 is no cap, set on purpose");
        let stored = Concert::from_fields(&c(), &[("state".into(), "open".into())]);
        assert_eq!(stored.settings.max_waiting, DEFAULT_MAX_WAITING, "a hash without the field");
        assert!(serde_json::from_str::<ConcertSettings>(r#"{"state":"ajar"}"#).is_err());
    }

    #[test]
    fn page_settings_are_checked_and_each_refusal_names_its_field() {
        let with = |f: &dyn Fn(&mut ConcertSettings)| {
            let mut s = ConcertSettings::open();
            f(&mut s);
            s.validate()
        };
        assert!(with(&|s| s.redirect_url = Some("https://tickets.example/b?c=1#x".into())).is_ok());
        assert!(with(&|s| s.redirect_url = Some("http://127.0.0.1:9000/book".into())).is_ok());
        for bad in ["javascript:alert(1)", "/book", "ftp://x/y", "https://", "data:text/html,hi"] {
            let e = with(&|s| s.redirect_url = Some(bad.into())).unwrap_err();
            assert!(e.starts_with("redirectUrl"), "{bad}: {e}");
        }
        assert!(with(&|s| s.logo_url = Some("/favicon.ico".into())).is_ok());
        assert!(with(&|s| s.logo_url = Some("https://cdn.example/logo.svg".into())).is_ok());
        for bad in ["//evil.example/x.png", "http://cdn.example/logo.png", "javascript:x", "/a b"] {
            assert!(with(&|s| s.logo_url = Some(bad.into())).unwrap_err().starts_with("logoUrl"), "{bad}");
        }
        assert!(with(&|s| s.brand_color = Some("#A0b1c2".into())).is_ok());
        for bad in ["red", "#abc", "#abcdefg", "#ggg000", "url(x)"] {
            assert!(with(&|s| s.brand_color = Some(bad.into())).unwrap_err().starts_with("brandColor"), "{bad}");
        }
        assert!(with(&|s| s.background_color = Some("blue".into())).unwrap_err().starts_with("backgroundColor"));
        assert!(with(&|s| s.name = Some("  ".into())).unwrap_err().starts_with("name"));
        assert!(with(&|s| s.name = Some("a\u{7}b".into())).unwrap_err().starts_with("name"));
        assert!(with(&|s| s.name = Some("가".repeat(MAX_NAME_CHARS))).is_ok());
        assert!(with(&|s| s.name = Some("가".repeat(MAX_NAME_CHARS + 1))).is_err());
        assert!(with(&|s| s.sold_out_message = Some("Sold out.\n매진".into())).is_ok());
        for bad in [" ".to_owned(), "a\tb".into(), "x".repeat(MAX_MESSAGE_CHARS + 1)] {
            let e = with(&|s| s.sold_out_message = Some(bad.clone())).unwrap_err();
            assert!(e.starts_with("soldOutMessage"), "{bad:?}: {e}");
        }
    }

    #[test]
    fn a_sold_out_concert_refuses_joins_with_its_message_or_a_default() {
        let cache = ConcertCache::default();
        let mut s = ConcertSettings::open();
        s.state = ConcertState::SoldOut;
        cache.set(&c(), s.clone());
        assert_eq!(cache.join_check(&c()), JoinCheck::SoldOut(format!("{} is sold out", c())));
        assert_eq!(s.sold_out().as_deref(), Some(""), "no message of its own");
        s.sold_out_message = Some("Thank you!".into());
        cache.set(&c(), s.clone());
        assert_eq!(cache.join_check(&c()), JoinCheck::SoldOut("Thank you!".into()));
        s.state = ConcertState::Open;
        assert_eq!(s.sold_out(), None);
    }
}
