//! What a loop's promotion gate asks for online, and the online lift a promotion measured.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::FieldErrors;
use crate::entities::string_enum;

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
    /// Who set it and when; `None` for the default.
    pub set_by: Option<String>,
    pub set_at: Option<DateTime<Utc>>,
}

impl GatePolicy {
    /// The policy of a loop nobody has set one for: not significantly worse.
    pub fn default_for(loop_key: &str) -> GatePolicy {
        GatePolicy { loop_key: loop_key.to_owned(), online: OnlineRule::NotWorse, set_by: None, set_at: None }
    }
}

/// A gate policy as a form or JSON body carries it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(default)]
pub struct GatePolicyInput {
    /// `not-worse` or `better`.
    pub online: String,
}

impl GatePolicyInput {
    pub fn parse(&self) -> Result<OnlineRule, FieldErrors> {
        self.online.trim().parse::<OnlineRule>().map_err(|m| FieldErrors::single("online", m))
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
