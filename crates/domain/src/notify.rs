//! Where alerts go: contact points (outgoing webhooks), the in-app inbox, and the deliveries of the
//! outbox, with the rules that need no stored data.
//!
//! Routing is by ownership: an alert of a squad's monitor goes to that squad's contact points and to
//! the inboxes of its members; an alert of a monitor without a squad goes to the organisation-wide
//! contact points and to the inboxes of its leaders and admins. A silenced alert notifies nobody until
//! its silence ends. Notifications are written to an outbox in the transaction that fires or resolves
//! the alert, and delivered from there, so a crash between the two can neither lose nor invent one;
//! delivery is at least once, with an idempotency key the receiver can use to drop a repeat.

use std::net::IpAddr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::alert::{AlertChange, AlertState};
use crate::entities::string_enum;
use crate::monitor::{AlertEvidence, Monitor, MonitorKind};
use crate::{Checker, FieldErrors, SquadId, Title, UserId};

string_enum!(
    /// The body a webhook receives: Slope's JSON, or a Slack-compatible `{"text": …}` that Slack's and
    /// Mattermost's incoming webhooks accept as they are.
    WebhookFormat { Json => "json", Slack => "slack" }
);

string_enum!(
    /// Where a delivery is: waiting for its next attempt, delivered (a 2xx answer), or failed for good
    /// (its attempts used up, or refused before sending).
    DeliveryStatus { Pending => "pending", Delivered => "delivered", Failed => "failed" }
);

/// How many times a delivery is attempted before it is marked failed.
pub const MAX_DELIVERY_ATTEMPTS: i64 = 6;

/// The wait before attempt `attempt + 1` (attempts count from 1): the base doubled each time, capped
/// at an hour, so a receiver that is down for a while is not hammered and one that blipped is retried
/// soon.
pub fn retry_delay(base_seconds: i64, attempt: i64) -> chrono::Duration {
    let exp = (attempt - 1).clamp(0, 20) as u32;
    chrono::Duration::seconds((base_seconds.max(1).saturating_mul(1_i64 << exp)).min(3600))
}

/// A webhook's address: http or https, with a host, without credentials (they belong in the signing
/// secret, not in a URL that pages show).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct WebhookUrl {
    url: String,
    host: String,
    port: u16,
    https: bool,
}

impl WebhookUrl {
    pub fn parse(raw: &str) -> Result<WebhookUrl, String> {
        let raw = raw.trim();
        if raw.is_empty() {
            return Err("is required".into());
        }
        if raw.len() > 2000 {
            return Err("must be at most 2000 characters".into());
        }
        if raw.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err("must not contain spaces".into());
        }
        let (https, rest) = if let Some(rest) = raw.strip_prefix("https://") {
            (true, rest)
        } else if let Some(rest) = raw.strip_prefix("http://") {
            (false, rest)
        } else {
            return Err(format!("must be an http:// or https:// address, not {raw:?}"));
        };
        let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
        if authority.contains('@') {
            return Err("must not carry a user name or password: the signing secret authenticates Slope".into());
        }
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (host, after) = v6.split_once(']').ok_or("has an unclosed '[' in its host")?;
            (host.to_owned(), after.strip_prefix(':'))
        } else {
            match authority.rsplit_once(':') {
                Some((host, port)) => (host.to_owned(), Some(port)),
                None => (authority.to_owned(), None),
            }
        };
        if host.is_empty() {
            return Err("has no host".into());
        }
        let port = match port {
            None => {
                if https {
                    443
                } else {
                    80
                }
            }
            Some(p) => p.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(|| format!("has an invalid port {p:?}"))?,
        };
        Ok(WebhookUrl { url: raw.to_owned(), host: host.to_ascii_lowercase(), port, https })
    }

    pub fn as_str(&self) -> &str {
        &self.url
    }

    /// The host as written (a name, or an IP address without brackets).
    pub fn host(&self) -> &str {
        &self.host
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn is_https(&self) -> bool {
        self.https
    }
}

impl TryFrom<String> for WebhookUrl {
    type Error = String;
    fn try_from(raw: String) -> Result<Self, String> {
        WebhookUrl::parse(&raw)
    }
}

impl From<WebhookUrl> for String {
    fn from(url: WebhookUrl) -> String {
        url.url
    }
}

/// Whether an address lies in the server's own networks rather than on the internet: loopback,
/// private (RFC 1918, unique local), link-local (which includes cloud metadata at 169.254.169.254),
/// carrier-grade NAT, unspecified, multicast or documentation ranges. A webhook to such an address
/// would let whoever configures contact points probe the network the server runs in.
pub fn is_internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || o[0] == 0
                || (o[0] == 100 && (64..128).contains(&o[1]))
                || (o[0] == 198 && (o[1] == 18 || o[1] == 19))
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_internal(IpAddr::V4(v4));
            }
            let s = v6.segments();
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00
                || (s[0] & 0xffc0) == 0xfe80
                || (s[0] == 0x2001 && s[1] == 0x0db8)
        }
    }
}

/// A contact point as a form or a JSON body gives it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(default, deny_unknown_fields)]
pub struct ContactPointInput {
    pub name: String,
    pub url: String,
    /// `json` (the default) or `slack`.
    pub format: Option<String>,
    /// The squad whose alerts it receives; empty: alerts of monitors without a squad.
    pub squad_id: Option<i64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ContactPointSpec {
    pub name: Title,
    pub url: WebhookUrl,
    pub format: WebhookFormat,
    pub squad: Option<SquadId>,
}

impl ContactPointInput {
    pub fn parse(&self) -> Result<ContactPointSpec, FieldErrors> {
        let mut c = Checker::new();
        let name = c.check("name", Title::parse(&self.name));
        let url = c.check("url", WebhookUrl::parse(&self.url));
        let format = match self.format.as_deref().map(str::trim) {
            None | Some("") => Some(WebhookFormat::Json),
            Some(raw) => c.check("format", raw.parse::<WebhookFormat>()),
        };
        let squad = match self.squad_id {
            Some(id) if id <= 0 => {
                c.fail("squad_id", format!("must be a squad's id, not {id}"));
                None
            }
            other => Some(other.map(SquadId)),
        };
        c.finish(|| Some(ContactPointSpec { name: name?, url: url?, format: format?, squad: squad? }))
    }
}

/// A stored contact point. Its signing secret is shown once, when it is created, and never again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ContactPoint {
    pub id: i64,
    pub name: String,
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub url: WebhookUrl,
    pub format: WebhookFormat,
    pub squad_id: Option<SquadId>,
    pub created_at: DateTime<Utc>,
}

/// What one delivery sends: an alert's change, as the receiver sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Notification {
    /// The same for every attempt of the same delivery: a receiver that sees it twice can drop the
    /// second (it is also sent as the `Idempotency-Key` header).
    pub idempotency_key: String,
    pub change: AlertChange,
    pub alert_id: i64,
    pub monitor: String,
    pub kind: MonitorKind,
    pub state: AlertState,
    pub summary: String,
    pub evidence: AlertEvidence,
    pub started_at: DateTime<Utc>,
    pub resolved_at: Option<DateTime<Utc>>,
}

impl Notification {
    /// The notification of an alert's `change`, before the outbox gives each delivery its idempotency
    /// key. The alert's state follows from the change: fired and unsilenced alerts are firing.
    pub fn of(
        change: AlertChange,
        alert_id: i64,
        monitor: &Monitor,
        summary: &str,
        evidence: &AlertEvidence,
        started_at: DateTime<Utc>,
        resolved_at: Option<DateTime<Utc>>,
    ) -> Notification {
        let state = match change {
            AlertChange::Fired | AlertChange::Unsilenced => AlertState::Firing,
            AlertChange::Silenced => AlertState::Silenced,
            AlertChange::Resolved => AlertState::Resolved,
        };
        Notification {
            idempotency_key: String::new(),
            change,
            alert_id,
            monitor: monitor.key.clone(),
            kind: monitor.rule.kind(),
            state,
            summary: summary.to_owned(),
            evidence: evidence.clone(),
            started_at,
            resolved_at,
        }
    }

    /// The one line a chat message or an e-mail subject says.
    pub fn headline(&self) -> String {
        let what = match self.change {
            AlertChange::Fired => "FIRING",
            AlertChange::Resolved => "RESOLVED",
            AlertChange::Silenced => "SILENCED",
            AlertChange::Unsilenced => "FIRING AGAIN",
        };
        format!("[{what}] {}: {}", self.monitor, self.summary)
    }
}

/// The Slack-compatible body of a notification.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SlackBody {
    pub text: String,
}

/// One delivery of the outbox, with its log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Delivery {
    pub id: i64,
    pub contact_point_id: i64,
    pub alert_id: i64,
    pub change: AlertChange,
    pub idempotency_key: String,
    pub status: DeliveryStatus,
    pub attempts: i64,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub last_status_code: Option<i64>,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub delivered_at: Option<DateTime<Utc>>,
}

/// One attempt of a delivery, for its log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeliveryAttempt {
    pub delivery_id: i64,
    pub attempt: i64,
    pub at: DateTime<Utc>,
    pub status_code: Option<i64>,
    pub error: Option<String>,
    pub duration_ms: i64,
}

/// An entry of a person's inbox: an alert's change, read or not.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct InboxItem {
    pub id: i64,
    pub user_id: UserId,
    pub alert_id: i64,
    pub change: AlertChange,
    pub summary: String,
    pub created_at: DateTime<Utc>,
    pub read_at: Option<DateTime<Utc>>,
}

/// The organisation's notification settings.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct NotificationSettings {
    /// Whether webhooks may go to addresses in the server's own networks ([`is_internal`]). Off by
    /// default: a contact point is not a way to probe the network the server runs in.
    pub allow_internal_webhooks: bool,
}

#[cfg(test)]
#[path = "notify_tests.rs"]
mod tests;
