//! A/B analysis of the character acceptance rate (Σ accepted / Σ suggested characters) between a
//! control and a treatment variant, with users as the randomisation unit.
//!
//! The statistics are computed from per-arm sufficient statistics ([`ArmSums`]: the number of users and
//! the sums Σa, Σs, Σa², Σs², Σas over users' per-user totals), so every number can be checked by hand;
//! [`ab_of`] builds those sums from an events frame with polars and calls [`analyze`].
//!
//! A user whose events carry both variants (a bucketing bug or a shared account) is counted in each arm
//! where they appear, with the events of that arm, and reported as `users_in_both`: dropping them would
//! hide the bug, and moving them to one arm would need a rule the data does not give.

use polars::prelude::*;
use serde::{Deserialize, Serialize};

use crate::acceptance::{Z_95, delta_method_se};
use crate::events::InteractionEvent;

/// The default standard deviation τ of the normal mixing distribution of the always-valid test: one
/// percentage point of acceptance rate. The mixture test is most powerful for effects near τ, and
/// changes to a suggestion model typically move the acceptance rate by one to a few points. τ must be
/// fixed before the data is seen (a τ tuned on the observed difference would void the guarantee), so it
/// is a constant rather than estimated.
pub const DEFAULT_MIXING_SD: f64 = 0.01;

/// The p-value below which the sample-ratio check flags a mismatch. It is stricter than the usual
/// 0.05 because the check runs on every analysis and a false alarm discards a sound experiment.
pub const SRM_THRESHOLD: f64 = 0.001;

/// The significance level of the always-valid confidence sequence (it matches the 95 % intervals).
const ALPHA: f64 = 0.05;

/// The standard normal CDF Φ(x) = erfc(−x/√2)/2.
///
/// `libm::erfc` is the FreeBSD/Sun (fdlibm) rational approximation, accurate to about one unit in the
/// last place over the whole line; computing Φ through erfc rather than 1 − erf keeps full relative
/// accuracy in the lower tail, where p-values live.
pub fn normal_cdf(x: f64) -> f64 {
    0.5 * libm::erfc(-x / std::f64::consts::SQRT_2)
}

/// The two-sided p-value of a standard normal statistic, P(|Z| ≥ |z|) = erfc(|z|/√2).
pub fn two_sided_p(z: f64) -> f64 {
    libm::erfc(z.abs() / std::f64::consts::SQRT_2)
}

/// The upper tail P(χ²₁ ≥ x) of a chi-square variable with one degree of freedom: χ²₁ is the square of
/// a standard normal, so the tail is the two-sided normal p-value of √x.
pub fn chi_square_1_sf(x: f64) -> f64 {
    if x <= 0.0 { 1.0 } else { two_sided_p(x.sqrt()) }
}

/// The sufficient statistics of one arm: per user u, a_u and s_u are the accepted and suggested
/// characters summed over the user's events in this arm.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ArmSums {
    pub variant: String,
    pub users: u64,
    pub events: u64,
    pub sum_a: f64,
    pub sum_s: f64,
    pub sum_aa: f64,
    pub sum_ss: f64,
    pub sum_as: f64,
}

impl ArmSums {
    /// The sums of per-user (accepted, suggested) totals; `events` is set to the number of users.
    pub fn from_users(variant: &str, users: &[(f64, f64)]) -> ArmSums {
        let mut sums = ArmSums {
            variant: variant.to_owned(),
            users: users.len() as u64,
            events: users.len() as u64,
            sum_a: 0.0,
            sum_s: 0.0,
            sum_aa: 0.0,
            sum_ss: 0.0,
            sum_as: 0.0,
        };
        for &(a, s) in users {
            sums.sum_a += a;
            sums.sum_s += s;
            sums.sum_aa += a * a;
            sums.sum_ss += s * s;
            sums.sum_as += a * s;
        }
        sums
    }
}

/// Settings of [`analyze`] that are not data.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AbSettings {
    /// The share of users the design sends to the treatment, for the sample-ratio check.
    pub expected_share_treatment: f64,
    /// τ, the standard deviation of the normal mixing distribution of the always-valid test, on the
    /// scale of the difference in acceptance rate.
    pub mixing_sd: f64,
}

impl Default for AbSettings {
    fn default() -> Self {
        AbSettings { expected_share_treatment: 0.5, mixing_sd: DEFAULT_MIXING_SD }
    }
}

// The report's types are the domain's (`slope_domain::ab_report`): pages and API clients read them
// without depending on this crate.
pub use slope_domain::ab_report::{AbReport, AlwaysValid, Arm, Difference, Lift, SampleRatio};

#[derive(Debug, thiserror::Error)]
pub enum AbError {
    #[error("computing the A/B analysis: {0}")]
    Polars(#[from] PolarsError),
    #[error("{0}")]
    Invalid(String),
    #[error("no events have variant {variant:?}; the variants present are {present}")]
    MissingVariant { variant: String, present: String },
    #[error("{0}")]
    NotEnoughData(String),
}

/// The methods of [`analyze`], as the report states them.
fn methods(settings: &AbSettings) -> String {
    format!(
        "Acceptance rate per arm: Σ accepted / Σ suggested characters, with users as the randomisation unit \
         (per-user sums, then the ratio); its standard error is the delta method for a ratio of means. \
         Difference (treatment − control): standard error √(se_t² + se_c²) of independent arms, 95 % \
         confidence interval and two-sided z-test, valid for one look at a horizon fixed in advance. \
         Relative lift (treatment / control − 1): 95 % interval by the delta method on the log of the ratio, ln(rate_t / rate_c), \
         with variance se_t²/rate_t² + se_c²/rate_c², transformed back. \
         Always-valid p-value and 95 % confidence sequence: mixture sequential probability ratio test \
         (Robbins 1970; Johari, Pekelis & Walsh 2017) with a normal mixing distribution of standard \
         deviation τ = {tau} on the difference, Λ = √(V/(V+τ²))·exp(τ²θ²/(2V(V+τ²))) with θ the difference \
         and V its variance, p = min(1, 1/Λ); it stays valid however often the experiment is looked at. \
         Sample-ratio mismatch: chi-square test (1 degree of freedom) of users per arm against an expected \
         treatment share of {share}, flagged when p < {SRM_THRESHOLD}. \
         A user with events in both arms is counted in each arm where they appear.",
        tau = settings.mixing_sd,
        share = settings.expected_share_treatment,
    )
}

/// Compares `treatment` with `control` from their sufficient statistics.
///
/// Refuses an arm with fewer than two users or no suggested characters (there is no spread to
/// estimate), and data in which the rate does not vary between users in either arm (the difference
/// then has no standard error). `users_in_both` is left at 0: only the caller knows the users.
pub fn analyze(control: &ArmSums, treatment: &ArmSums, settings: &AbSettings) -> Result<AbReport, AbError> {
    let share = settings.expected_share_treatment;
    if !(share > 0.0 && share < 1.0) {
        return Err(AbError::Invalid(format!(
            "the expected treatment share must lie strictly between 0 and 1, not {share}"
        )));
    }
    if !(settings.mixing_sd.is_finite() && settings.mixing_sd > 0.0) {
        return Err(AbError::Invalid(format!("the mixing standard deviation must be > 0, not {}", settings.mixing_sd)));
    }
    let arm = |sums: &ArmSums| -> Result<Arm, AbError> {
        let se = delta_method_se(sums.users as f64, sums.sum_a, sums.sum_s, sums.sum_aa, sums.sum_ss, sums.sum_as)
            .ok_or_else(|| {
                AbError::NotEnoughData(format!(
                    "variant {:?} has {} user(s) and {} suggested characters; each arm needs at least two users \
                     and some suggested characters",
                    sums.variant, sums.users, sums.sum_s
                ))
            })?;
        let rate = sums.sum_a / sums.sum_s;
        Ok(Arm {
            variant: sums.variant.clone(),
            users: sums.users,
            events: sums.events,
            accepted: sums.sum_a,
            suggested: sums.sum_s,
            rate,
            std_error: se,
            ci_low: (rate - Z_95 * se).max(0.0),
            ci_high: (rate + Z_95 * se).min(1.0),
        })
    };
    let (c, t) = (arm(control)?, arm(treatment)?);

    // The arms hold different users, so their estimates are independent and the variances add.
    let variance = t.std_error.powi(2) + c.std_error.powi(2);
    if variance <= 0.0 {
        return Err(AbError::NotEnoughData(
            "the acceptance rate does not vary between users in either arm, so the difference has no standard \
             error"
                .into(),
        ));
    }
    let theta = t.rate - c.rate;
    let se = variance.sqrt();
    let z = theta / se;
    let difference = Difference {
        estimate: theta,
        std_error: se,
        ci_low: theta - Z_95 * se,
        ci_high: theta + Z_95 * se,
        z,
        p_value: two_sided_p(z),
    };

    // The log of the ratio is closer to normal than the ratio itself and keeps the interval of the lift
    // above −100 %; its delta-method variance is the sum of the squared relative standard errors.
    let relative_lift = (c.rate > 0.0 && t.rate > 0.0).then(|| {
        let log_ratio = (t.rate / c.rate).ln();
        let log_se = ((t.std_error / t.rate).powi(2) + (c.std_error / c.rate).powi(2)).sqrt();
        Lift {
            estimate: t.rate / c.rate - 1.0,
            ci_low: (log_ratio - Z_95 * log_se).exp() - 1.0,
            ci_high: (log_ratio + Z_95 * log_se).exp() - 1.0,
            log_std_error: log_se,
        }
    });

    let always_valid = msprt(theta, variance, settings.mixing_sd);
    let sample_ratio = sample_ratio(c.users, t.users, share);
    Ok(AbReport {
        control: c,
        treatment: t,
        difference,
        relative_lift,
        always_valid,
        sample_ratio,
        users_in_both: 0,
        confidence: 0.95,
        methods: methods(settings),
    })
}

/// The normal-mixture SPRT of θ = 0 for an estimate `theta` with variance `v`, mixing N(0, τ²) over
/// the alternative: Λ = √(V/(V+τ²))·exp(τ²θ²/(2V(V+τ²))). By Ville's inequality Λ exceeds 1/α with
/// probability at most α under the null at any time, so 1/Λ is an always-valid p-value, and the θ₀ with
/// Λ(θ₀) < 1/α form a confidence sequence: |θ − θ₀| < √(2V(V+τ²)/τ² · (ln(1/α) + ½·ln((V+τ²)/V))).
fn msprt(theta: f64, v: f64, tau: f64) -> AlwaysValid {
    let tau2 = tau * tau;
    // The log form keeps Λ finite in the exponent until the very end, so a huge effect gives p = 0
    // rather than an overflow to infinity and NaN.
    let log_lambda = 0.5 * (v / (v + tau2)).ln() + tau2 * theta * theta / (2.0 * v * (v + tau2));
    let half_width = (2.0 * v * (v + tau2) / tau2 * ((1.0 / ALPHA).ln() + 0.5 * ((v + tau2) / v).ln())).sqrt();
    AlwaysValid {
        mixing_sd: tau,
        log_likelihood_ratio: log_lambda,
        p_value: (-log_lambda).exp().min(1.0),
        half_width,
        ci_low: theta - half_width,
        ci_high: theta + half_width,
    }
}

/// Pearson's chi-square of the users per arm against the expected split, with one degree of freedom.
fn sample_ratio(control_users: u64, treatment_users: u64, expected_share_treatment: f64) -> SampleRatio {
    let n = (control_users + treatment_users) as f64;
    let expected_t = n * expected_share_treatment;
    let expected_c = n - expected_t;
    let chi_square = (treatment_users as f64 - expected_t).powi(2) / expected_t
        + (control_users as f64 - expected_c).powi(2) / expected_c;
    let p_value = chi_square_1_sf(chi_square);
    SampleRatio {
        control_users,
        treatment_users,
        expected_share_treatment,
        observed_share_treatment: treatment_users as f64 / n,
        chi_square,
        p_value,
        mismatch: p_value < SRM_THRESHOLD,
    }
}

/// [`ab_of`] over validated events.
pub fn ab(
    events: &[InteractionEvent],
    control: &str,
    treatment: &str,
    expected_share_treatment: Option<f64>,
) -> Result<AbReport, AbError> {
    ab_of(crate::events::to_frame(events)?.lazy(), control, treatment, expected_share_treatment)
}

/// Compares the acceptance rate of `treatment` with `control` in an events frame (columns of
/// [`crate::events::schema`]), with the default mixing τ; `expected_share_treatment` defaults to an
/// equal split. Filter the frame first (by loop, by time) to analyse a part of it.
pub fn ab_of(
    events: LazyFrame,
    control: &str,
    treatment: &str,
    expected_share_treatment: Option<f64>,
) -> Result<AbReport, AbError> {
    let settings =
        AbSettings { expected_share_treatment: expected_share_treatment.unwrap_or(0.5), ..Default::default() };
    ab_of_with(events, control, treatment, &settings)
}

/// [`ab_of`] with every setting given.
pub fn ab_of_with(
    events: LazyFrame,
    control: &str,
    treatment: &str,
    settings: &AbSettings,
) -> Result<AbReport, AbError> {
    if control == treatment {
        return Err(AbError::Invalid(format!("control and treatment are the same variant {control:?}")));
    }
    let per_user = events
        .clone()
        .filter(col("variant").eq(lit(control)).or(col("variant").eq(lit(treatment))))
        .group_by([col("variant"), col("user_id")])
        .agg([
            col("accepted_chars").cast(DataType::Float64).sum().alias("a"),
            col("suggested_chars").cast(DataType::Float64).sum().alias("s"),
            len().alias("events"),
        ])
        .collect()?;
    let arms = per_user
        .clone()
        .lazy()
        .group_by([col("variant")])
        .agg([
            len().alias("users"),
            col("events").sum().alias("events"),
            col("a").sum().alias("sum_a"),
            col("s").sum().alias("sum_s"),
            (col("a") * col("a")).sum().alias("sum_aa"),
            (col("s") * col("s")).sum().alias("sum_ss"),
            (col("a") * col("s")).sum().alias("sum_as"),
        ])
        .collect()?;
    let users_in_both = per_user
        .lazy()
        .group_by([col("user_id")])
        .agg([len().alias("arms")])
        .filter(col("arms").gt(lit(1u32)))
        .collect()?
        .height() as u64;

    let variants = arms.column("variant")?.str()?.clone();
    let float = |name: &str| -> PolarsResult<Vec<f64>> {
        let column = arms.column(name)?.cast(&DataType::Float64)?;
        Ok(column.f64()?.iter().map(|v| v.unwrap_or_default()).collect())
    };
    let (users, event_counts) = (float("users")?, float("events")?);
    let (sum_a, sum_s) = (float("sum_a")?, float("sum_s")?);
    let (sum_aa, sum_ss, sum_as) = (float("sum_aa")?, float("sum_ss")?, float("sum_as")?);
    let sums_of = |variant: &str| -> Result<ArmSums, AbError> {
        match variants.iter().position(|v| v == Some(variant)) {
            Some(i) => Ok(ArmSums {
                variant: variant.to_owned(),
                users: users[i] as u64,
                events: event_counts[i] as u64,
                sum_a: sum_a[i],
                sum_s: sum_s[i],
                sum_aa: sum_aa[i],
                sum_ss: sum_ss[i],
                sum_as: sum_as[i],
            }),
            None => {
                // Only on this error path is the whole frame scanned for its variants, to help fix a typo.
                let present = events
                    .clone()
                    .select([col("variant").unique().sort(SortOptions::default())])
                    .collect()?
                    .column("variant")?
                    .str()?
                    .iter()
                    .flatten()
                    .map(|v| format!("{v:?}"))
                    .collect::<Vec<_>>();
                let present =
                    if present.is_empty() { "none (there are no events)".to_owned() } else { present.join(", ") };
                Err(AbError::MissingVariant { variant: variant.to_owned(), present })
            }
        }
    };
    let (control_sums, treatment_sums) = (sums_of(control)?, sums_of(treatment)?);
    let mut report = analyze(&control_sums, &treatment_sums, settings)?;
    report.users_in_both = users_in_both;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};
    use rand_distr::{Beta, Binomial, Distribution};

    fn close(actual: f64, expected: f64, tolerance: f64) {
        assert!((actual - expected).abs() <= tolerance, "{actual} is not within {tolerance} of {expected}");
    }

    #[test]
    fn normal_cdf_matches_known_values() {
        // Reference values from Python's math.erfc (itself a correctly rounded-to-a-few-ulp erfc).
        close(normal_cdf(1.959964), 0.975, 1e-7);
        close(normal_cdf(0.0), 0.5, 1e-16);
        close(normal_cdf(1.0), 0.841_344_746_068_542_9, 1e-15);
        close(normal_cdf(-1.5), 0.066_807_201_268_858_09, 1e-15);
        close(normal_cdf(-3.0), 0.001_349_898_031_630_095_7, 1e-17);
        // The lower tail keeps its relative accuracy where 1 − Φ(8) would round to zero.
        close(normal_cdf(-8.0) / 6.220_960_574_271_819e-16, 1.0, 1e-12);
        close(two_sided_p(Z_95), 0.05, 1e-12);
        close(chi_square_1_sf(Z_95 * Z_95), 0.05, 1e-12);
        assert_eq!(chi_square_1_sf(0.0), 1.0);
    }

    /// Control users (a, s) = (2, 10), (5, 10), (9, 20): rate 0.4, SE 0.075 (see `acceptance`).
    /// Treatment users (6, 10), (8, 10), (10, 20): rate 0.6; Var(a) = 4, Var(s) = 100/3, Cov = 10, so
    /// Var(R) = (4 − 2·0.6·10 + 0.36·100/3) / (3·(40/3)²) = 4 / 533.3… = 0.0075.
    fn hand_arms() -> (ArmSums, ArmSums) {
        (
            ArmSums::from_users("A", &[(2.0, 10.0), (5.0, 10.0), (9.0, 20.0)]),
            ArmSums::from_users("B", &[(6.0, 10.0), (8.0, 10.0), (10.0, 20.0)]),
        )
    }

    #[test]
    fn a_small_case_matches_a_hand_computation() {
        let (control, treatment) = hand_arms();
        let report = analyze(&control, &treatment, &AbSettings::default()).unwrap();
        close(report.control.rate, 0.4, 1e-15);
        close(report.control.std_error, 0.075, 1e-12);
        close(report.treatment.rate, 0.6, 1e-15);
        close(report.treatment.std_error, 0.0075_f64.sqrt(), 1e-12);

        // V = 0.005625 + 0.0075 = 0.013125; SE = 0.1145644; z = 0.2 / SE = 1.7457431; p = 0.0808556.
        let d = &report.difference;
        close(d.estimate, 0.2, 1e-15);
        close(d.std_error, 0.013125_f64.sqrt(), 1e-12);
        close(d.z, 1.745_743_121_887_939, 1e-9);
        close(d.p_value, 0.080_855_598_370_052_3, 1e-9);
        close(d.ci_low, 0.2 - Z_95 * d.std_error, 1e-15);
        close(d.ci_high, 0.2 + Z_95 * d.std_error, 1e-15);

        // ln(1.5) ± 1.96 · √(0.0075/0.36 + 0.005625/0.16) = ln(1.5) ± 1.96 · 0.2366212.
        let lift = report.relative_lift.unwrap();
        close(lift.estimate, 0.5, 1e-12);
        close(lift.log_std_error, 0.236_621_181_075_011_4, 1e-9);
        close(lift.ci_low, -0.056_636_769_851_449_83, 1e-9);
        close(lift.ci_high, 1.385_083_420_779_179, 1e-9);

        // τ² = 1e-4: Λ = √(0.013125/0.013225)·exp(1e-4·0.04/(2·0.013125·0.013225)) = 1.0077570.
        let av = &report.always_valid;
        close(av.log_likelihood_ratio.exp(), 1.007_757_035_699_183_2, 1e-9);
        close(av.p_value, 0.992_302_672_743_136_7, 1e-9);
        close(av.half_width, 3.226_925_269_417_809, 1e-9);
        assert!(av.p_value > d.p_value, "the always-valid p-value pays for looking at any time");

        assert_eq!((report.sample_ratio.control_users, report.sample_ratio.treatment_users), (3, 3));
        close(report.sample_ratio.p_value, 1.0, 1e-15);
        assert!(!report.sample_ratio.mismatch);
        for name in ["delta method", "z-test", "log", "mixture sequential", "chi-square", "both arms"] {
            assert!(report.methods.contains(name), "the methods do not name {name:?}: {}", report.methods);
        }
    }

    #[test]
    fn a_large_effect_gives_a_tiny_always_valid_p_without_overflow() {
        let v: f64 = 1e-8;
        let av = msprt(0.3, v, DEFAULT_MIXING_SD);
        assert_eq!(av.p_value, 0.0);
        assert!(av.log_likelihood_ratio.is_finite() && av.log_likelihood_ratio > 700.0, "{av:?}");
        assert!(av.ci_low > 0.29 && av.ci_high < 0.31, "{av:?}");
        // With no difference, Λ < 1 and the p-value is 1.
        assert_eq!(msprt(0.0, 1e-4, DEFAULT_MIXING_SD).p_value, 1.0);
    }

    #[test]
    fn sample_ratio_mismatch_is_flagged_only_when_the_split_is_off() {
        // χ² = 2·200²/5,200 = 15.38, p = 8.8e-5.
        let off = sample_ratio(5_000, 5_400, 0.5);
        close(off.chi_square, 15.384_615_384_615_385, 1e-9);
        close(off.p_value, 8.769_942_375_590_239e-5, 1e-12);
        assert!(off.mismatch && off.p_value < 0.001);
        // χ² = 2·25²/5,025 = 0.249, p = 0.618.
        let fine = sample_ratio(5_000, 5_050, 0.5);
        close(fine.p_value, 0.617_952_226_679_562_5, 1e-9);
        assert!(!fine.mismatch);
        // A designed 10 % treatment share is not a mismatch at 900 vs 100.
        assert!(!sample_ratio(900, 100, 0.1).mismatch);
        assert!(sample_ratio(900, 100, 0.5).mismatch);
    }

    #[test]
    fn refusals_say_why() {
        let (control, treatment) = hand_arms();
        let one = ArmSums::from_users("B", &[(1.0, 2.0)]);
        let err = analyze(&control, &one, &AbSettings::default()).unwrap_err();
        assert!(err.to_string().contains("variant \"B\" has 1 user(s)"), "{err}");
        let settings = AbSettings { expected_share_treatment: 1.0, ..Default::default() };
        assert!(matches!(analyze(&control, &treatment, &settings), Err(AbError::Invalid(_))));
        let flat = ArmSums::from_users("A", &[(1.0, 2.0), (2.0, 4.0)]);
        let flat_t = ArmSums::from_users("B", &[(3.0, 4.0), (6.0, 8.0)]);
        assert!(matches!(analyze(&flat, &flat_t, &AbSettings::default()), Err(AbError::NotEnoughData(_))));
        // A zero control rate has no lift but still a difference.
        let zero = ArmSums::from_users("A", &[(0.0, 2.0), (0.0, 4.0)]);
        let report = analyze(&zero, &treatment, &AbSettings::default()).unwrap();
        assert!(report.relative_lift.is_none());
        close(report.difference.estimate, 0.6, 1e-15);
    }

    fn event(id: usize, user: &str, variant: &str, suggested: u64, accepted: u64) -> InteractionEvent {
        let ts = Utc.with_ymd_and_hms(2027, 1, 4, 12, 0, 0).unwrap();
        InteractionEvent::sample(&id.to_string(), ts, user, variant, suggested, accepted)
    }

    #[test]
    fn ab_of_sums_events_per_user_with_polars() {
        // The hand case again, with u1 split over two events, a third variant to ignore and user u1 also
        // seen in the treatment (counted there too).
        let events = vec![
            event(1, "u1", "A", 6, 1),
            event(2, "u1", "A", 4, 1),
            event(3, "u2", "A", 10, 5),
            event(4, "u3", "A", 20, 9),
            event(5, "u4", "B", 10, 6),
            event(6, "u5", "B", 10, 8),
            event(7, "u6", "B", 20, 10),
            event(8, "u7", "C", 20, 20),
        ];
        let report = ab(&events, "A", "B", None).unwrap();
        assert_eq!((report.control.users, report.control.events, report.users_in_both), (3, 4, 0));
        close(report.control.std_error, 0.075, 1e-12);
        close(report.difference.p_value, 0.080_855_598_370_052_3, 1e-9);
        assert_eq!(report.sample_ratio.expected_share_treatment, 0.5);

        let mut shared = events.clone();
        shared.push(event(9, "u1", "B", 10, 5));
        let report = ab(&shared, "A", "B", Some(0.4)).unwrap();
        assert_eq!((report.users_in_both, report.control.users, report.treatment.users), (1, 3, 4));
        assert_eq!(report.sample_ratio.expected_share_treatment, 0.4);

        let err = ab(&events, "A", "D", None).unwrap_err();
        assert_eq!(err.to_string(), "no events have variant \"D\"; the variants present are \"A\", \"B\", \"C\"");
        assert!(matches!(ab(&events, "A", "A", None), Err(AbError::Invalid(_))));
    }

    /// Per-user totals of one arm: suggestion volumes vary between users, and so do their own
    /// acceptance propensities, as in real loops.
    fn simulate_arm(rng: &mut StdRng, variant: &str, users: usize) -> ArmSums {
        let propensity = Beta::new(4.0, 6.0).unwrap();
        let totals: Vec<(f64, f64)> = (0..users)
            .map(|_| {
                let s: u64 = rng.random_range(5..=200);
                let p: f64 = propensity.sample(rng);
                let a = Binomial::new(s, p).unwrap().sample(rng);
                (a as f64, s as f64)
            })
            .collect();
        ArmSums::from_users(variant, &totals)
    }

    #[test]
    fn under_no_difference_the_fixed_horizon_interval_covers_about_95_percent() {
        let mut rng = StdRng::seed_from_u64(20_270_104);
        let experiments = 400;
        let mut covered = 0;
        for _ in 0..experiments {
            let (c, t) = (simulate_arm(&mut rng, "A", 300), simulate_arm(&mut rng, "B", 300));
            let report = analyze(&c, &t, &AbSettings::default()).unwrap();
            if report.difference.ci_low <= 0.0 && 0.0 <= report.difference.ci_high {
                covered += 1;
            }
        }
        let coverage = covered as f64 / experiments as f64;
        assert!((0.92..=0.98).contains(&coverage), "coverage {coverage}");
    }

    #[test]
    fn peeking_inflates_the_fixed_horizon_test_but_not_the_always_valid_one() {
        // Each experiment is looked at after every 100 users per arm, 15 times, with no true difference.
        // Stopping at the first p < 0.05 rejects far more than 5 % with the fixed-horizon p-value; the
        // always-valid p-value keeps the rate of ever rejecting at or below 5 %.
        let mut rng = StdRng::seed_from_u64(7);
        let experiments = 300;
        let (mut fixed_rejected, mut always_valid_rejected) = (0, 0);
        for _ in 0..experiments {
            let (mut c, mut t) = (ArmSums::from_users("A", &[]), ArmSums::from_users("B", &[]));
            let (mut fixed, mut always_valid) = (false, false);
            for _ in 0..15 {
                for (total, batch) in
                    [(&mut c, simulate_arm(&mut rng, "A", 100)), (&mut t, simulate_arm(&mut rng, "B", 100))]
                {
                    total.users += batch.users;
                    total.events += batch.events;
                    total.sum_a += batch.sum_a;
                    total.sum_s += batch.sum_s;
                    total.sum_aa += batch.sum_aa;
                    total.sum_ss += batch.sum_ss;
                    total.sum_as += batch.sum_as;
                }
                let report = analyze(&c, &t, &AbSettings::default()).unwrap();
                fixed |= report.difference.p_value < 0.05;
                always_valid |= report.always_valid.p_value < 0.05;
            }
            fixed_rejected += usize::from(fixed);
            always_valid_rejected += usize::from(always_valid);
        }
        let (fixed_rate, always_valid_rate) =
            (fixed_rejected as f64 / experiments as f64, always_valid_rejected as f64 / experiments as f64);
        assert!(fixed_rate > 0.12, "peeking at the fixed-horizon test rejected only {fixed_rate}");
        assert!(always_valid_rate <= 0.05, "the always-valid test rejected {always_valid_rate}");
    }
}
