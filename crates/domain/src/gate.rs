//! What a loop's promotion gate asks for online, and the online lift a promotion measured.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::FieldErrors;
use crate::entities::string_enum;
use crate::offline::OfflineRule;

string_enum!(
    /// What a loop's promotion gate asks of the experiment that served the challenger against the
    /// champion: that the challenger's acceptance be not significantly worse, or significantly better
    /// (by the always-valid 95 % confidence sequence of the difference).
    OnlineRule { NotWorse => "not-worse", Better => "better" }
);

impl OnlineRule {
    pub fn label(self) -> &'static str {
        match self {
            OnlineRule::NotWorse => "not significantly worse online",
            OnlineRule::Better => "significantly better online",
        }
    }
}

/// A loop's promotion gate policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct GatePolicy {
    #[serde(rename = "loop")]
    pub loop_key: String,
    pub online: OnlineRule,
    /// What it asks of the reward margin on held-out data (a policy stored before there was a choice
    /// reads as the default).
    #[serde(default = "default_offline")]
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub offline: OfflineRule,
    /// Who set it and when; `None` for the default.
    pub set_by: Option<String>,
    pub set_at: Option<DateTime<Utc>>,
}

fn default_offline() -> OfflineRule {
    OfflineRule::IntervalAboveZero
}

impl GatePolicy {
    /// The policy of a loop nobody has set one for: a reward margin whose interval lies above zero, and
    /// not significantly worse online.
    pub fn default_for(loop_key: &str) -> GatePolicy {
        GatePolicy {
            loop_key: loop_key.to_owned(),
            online: OnlineRule::NotWorse,
            offline: default_offline(),
            set_by: None,
            set_at: None,
        }
    }
}

/// A gate policy as a form or JSON body carries it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(default)]
pub struct GatePolicyInput {
    /// `not-worse` or `better`.
    pub online: String,
    /// `interval-above-zero` (when left out) or `beats`.
    pub offline: String,
}

impl GatePolicyInput {
    pub fn parse(&self) -> Result<(OnlineRule, OfflineRule), FieldErrors> {
        let mut errors = FieldErrors::default();
        let online = self.online.trim().parse::<OnlineRule>().map_err(|m| errors.add("online", m)).ok();
        let offline = match self.offline.trim() {
            "" => Some(default_offline()),
            text => text.parse::<OfflineRule>().map_err(|m| errors.add("offline", m)).ok(),
        };
        match (online, offline) {
            (Some(online), Some(offline)) if errors.is_empty() => Ok((online, offline)),
            _ => Err(errors),
        }
    }
}

/// A promoted model's measured online lift.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OnlineLift {
    pub experiment: String,
    /// Treatment minus control character acceptance.
    pub difference: f64,
    /// The always-valid 95 % interval; an unbounded end is `None`.
    pub ci_low: Option<f64>,
    pub ci_high: Option<f64>,
}
