//! The read models of the alerts page and the monitors API: alerts with their state now, an alert's
//! detail, a person's inbox, what an evaluation did, and a contact point as created (its secret shown
//! once). They live here because the UI needs them in both of its builds.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::alert::{Alert, AlertEvent, AlertState};
use crate::monitor::{Finding, Monitor};
use crate::notify::{ContactPoint, InboxItem};

/// An alert as pages and the API show it: with its state now.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AlertView {
    #[serde(flatten)]
    pub alert: Alert,
    pub state: AlertState,
}

/// One alert with its history and deliveries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AlertDetail {
    #[serde(flatten)]
    pub view: AlertView,
    pub history: Vec<AlertEvent>,
    /// Whether the caller may silence it.
    pub can_silence: bool,
}

/// A person's inbox.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Inbox {
    pub unread: i64,
    pub items: Vec<InboxItem>,
}

/// What evaluating a monitor did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Evaluation {
    pub monitor: String,
    pub at: DateTime<Utc>,
    /// The findings that hold now.
    pub findings: Vec<Finding>,
    pub fired: usize,
    pub resolved: usize,
    pub notifications: usize,
}

/// A contact point just created, with its signing secret: the only time the secret is shown.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CreatedContactPoint {
    #[serde(flatten)]
    pub contact_point: ContactPoint,
    /// The HMAC-SHA256 key of the `X-Slope-Signature` header; never shown again.
    pub secret: String,
}

/// The alerts page: the caller's inbox (people only), the alerts, open ones first, and the monitors.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertsPage {
    pub inbox: Option<Inbox>,
    pub alerts: Vec<AlertView>,
    pub monitors: Vec<Monitor>,
}
