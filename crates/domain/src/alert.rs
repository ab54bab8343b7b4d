//! Alerts: what a monitor's findings become. An alert fires once per finding, holds while its finding
//! does, and resolves when it no longer does; a silence keeps it from notifying anyone until a time.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use crate::entities::string_enum;
use crate::monitor::{AlertEvidence, Finding, MonitorKind};
use crate::{Checker, FieldErrors, SquadId};

string_enum!(
    /// Where an alert is: firing (its finding holds), silenced (firing, but someone said not to notify
    /// until a time), or resolved (its finding no longer holds).
    AlertState { Firing => "firing", Silenced => "silenced", Resolved => "resolved" }
);

string_enum!(
    /// What happened to an alert, in its history.
    AlertChange { Fired => "fired", Resolved => "resolved", Silenced => "silenced", Unsilenced => "unsilenced" }
);

/// A stored alert.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Alert {
    pub id: i64,
    pub monitor_id: i64,
    pub monitor_key: String,
    pub monitor_name: String,
    pub kind: MonitorKind,
    pub squad_id: Option<SquadId>,
    pub fingerprint: String,
    pub summary: String,
    pub evidence: AlertEvidence,
    pub started_at: DateTime<Utc>,
    /// The last evaluation that found it still holding.
    pub last_seen_at: DateTime<Utc>,
    pub resolved_at: Option<DateTime<Utc>>,
    pub silenced_until: Option<DateTime<Utc>>,
    pub silenced_by: Option<String>,
}

impl Alert {
    pub fn state(&self, now: DateTime<Utc>) -> AlertState {
        if self.resolved_at.is_some() {
            AlertState::Resolved
        } else if self.silenced_until.is_some_and(|until| until > now) {
            AlertState::Silenced
        } else {
            AlertState::Firing
        }
    }
}

/// One entry of an alert's history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AlertEvent {
    pub at: DateTime<Utc>,
    pub change: AlertChange,
    /// Who did it: a person's e-mail for a silence, `system:monitors` for the evaluations.
    pub by: String,
    pub note: Option<String>,
}

/// What an evaluation changes: findings that fire a new alert, firing alerts that still hold (with
/// their newest finding) and firing alerts to resolve.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Reconciled {
    pub fire: Vec<Finding>,
    pub hold: Vec<(i64, Finding)>,
    pub resolve: Vec<i64>,
}

/// Compares one monitor's firing alerts (`(alert id, fingerprint)`) with what its evaluation found.
pub fn reconcile(firing: &[(i64, String)], findings: Vec<Finding>) -> Reconciled {
    let mut out = Reconciled::default();
    let mut seen = std::collections::HashSet::new();
    for finding in findings {
        // Two findings with one fingerprint are one occurrence: the first stands.
        if !seen.insert(finding.fingerprint.clone()) {
            continue;
        }
        match firing.iter().find(|(_, f)| *f == finding.fingerprint) {
            Some((id, _)) => out.hold.push((*id, finding)),
            None => out.fire.push(finding),
        }
    }
    out.resolve = firing.iter().filter(|(_, f)| !seen.contains(f)).map(|(id, _)| *id).collect();
    out
}

/// How long a silence may last: a week, so that nothing is silenced and forgotten.
pub const MAX_SILENCE_HOURS: i64 = 7 * 24;

/// A silence as a form or a JSON body gives it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(default, deny_unknown_fields)]
pub struct SilenceInput {
    /// How long to stay silent, in hours (from now).
    pub hours: Option<f64>,
    /// Why, for the alert's history.
    pub note: Option<String>,
}

impl SilenceInput {
    /// How long the silence lasts and its note. The rule needs no clock, so the browser checks a form
    /// with it before sending; the service adds the duration to its own now.
    pub fn parse(&self) -> Result<(Duration, Option<String>), FieldErrors> {
        let mut c = Checker::new();
        let length = match self.hours {
            None => {
                c.fail("hours", "is required: how many hours to stay silent");
                None
            }
            Some(h) if h.is_finite() && h > 0.0 && h <= MAX_SILENCE_HOURS as f64 => {
                Some(Duration::seconds((h * 3600.0).round() as i64))
            }
            Some(h) => {
                c.fail("hours", format!("must be above 0 and at most {MAX_SILENCE_HOURS} (a week), not {h}"));
                None
            }
        };
        let note = self.note.as_deref().map(str::trim).filter(|n| !n.is_empty()).map(str::to_owned);
        if note.as_ref().is_some_and(|n| n.chars().count() > 500) {
            c.fail("note", "must be at most 500 characters");
        }
        c.finish(|| Some((length?, note.clone())))
    }
}
