//! The A/B comparison of two variants' acceptance rates as the metrics engine reports it: each arm with
//! its interval, the difference, the lift, the always-valid sequential test and the sample-ratio check.
//! The types live here, not in the engine, so that the experiments page (in the browser bundle) and the
//! API's clients read one typed report.

use serde::{Deserialize, Serialize};

/// One arm's acceptance rate with its delta-method 95 % interval (clamped to [0, 1]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Arm {
    pub variant: String,
    pub users: u64,
    pub events: u64,
    pub accepted: f64,
    pub suggested: f64,
    pub rate: f64,
    pub std_error: f64,
    pub ci_low: f64,
    pub ci_high: f64,
}

/// Treatment minus control, with a fixed-horizon two-sided z-test.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Difference {
    pub estimate: f64,
    pub std_error: f64,
    pub ci_low: f64,
    pub ci_high: f64,
    pub z: f64,
    pub p_value: f64,
}

/// Treatment / control − 1, with an interval from the delta method on the log of the ratio.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Lift {
    pub estimate: f64,
    pub ci_low: f64,
    pub ci_high: f64,
    /// The standard error of ln(rate_t / rate_c).
    pub log_std_error: f64,
}

/// The mixture sequential probability ratio test of "no difference", valid at any number of looks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AlwaysValid {
    /// τ, the standard deviation of the normal mixing distribution.
    pub mixing_sd: f64,
    /// ln Λ, the log of the mixture likelihood ratio against "no difference" (Λ itself overflows for
    /// large effects on large samples).
    pub log_likelihood_ratio: f64,
    /// min(1, 1/Λ). Someone who looks repeatedly should keep the smallest value seen so far.
    pub p_value: f64,
    /// The 95 % confidence sequence for the difference: estimate ± half_width.
    pub half_width: f64,
    pub ci_low: f64,
    pub ci_high: f64,
}

/// The chi-square test of the users per arm against the designed split.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SampleRatio {
    pub control_users: u64,
    pub treatment_users: u64,
    pub expected_share_treatment: f64,
    pub observed_share_treatment: f64,
    pub chi_square: f64,
    pub p_value: f64,
    /// `p_value` < the metrics engine's threshold (0.001): the assignment is broken and the comparison is not to be trusted.
    pub mismatch: bool,
}

/// The A/B comparison of the acceptance rate of two variants.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AbReport {
    pub control: Arm,
    pub treatment: Arm,
    pub difference: Difference,
    /// `None` when the control's rate is 0 or the treatment's is 0: the log ratio is then undefined.
    pub relative_lift: Option<Lift>,
    pub always_valid: AlwaysValid,
    pub sample_ratio: SampleRatio,
    /// Users with events in both arms; each is counted in both (see the module documentation).
    pub users_in_both: u64,
    /// The confidence level of every interval.
    pub confidence: f64,
    /// The methods, named in full sentences, for a reader of the report.
    pub methods: String,
}
