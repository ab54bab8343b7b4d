//! Where a measure is heading: a linear trend through its observed points, the value it forecasts at the
//! end of a cycle with a 95 % prediction interval, and the chance of meeting the measure's target then.
//!
//! A straight line is the simplest trend a squad can argue with, and the prediction interval says how
//! far to trust it: few or scattered points give a wide interval and a cautious probability, which is
//! what a dashboard should show rather than a confident extrapolation. When the points carry confidence
//! intervals (a metric computed from a sample), each point is weighted by the inverse of its variance, so
//! a week measured on twenty users pulls the line less than one measured on two thousand.
//!
//! Dashboards forecast from recent evidence, through the projection module: see there.

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use crate::entities::string_enum;
use crate::measure::{Measure, fmt_number};
use crate::metric::MetricPoint;

/// The fewest points a trend is fitted to: two points always lie on a line, so they say nothing about
/// the scatter around it, and without the scatter there is no interval.
pub const MIN_TREND_POINTS: usize = 3;

/// The probability at or above which a forecast is "on track".
pub const ON_TRACK_PROBABILITY: f64 = 0.7;
/// The probability below which a forecast is "off track"; in between it is "at risk".
pub const OFF_TRACK_PROBABILITY: f64 = 0.3;

/// The standard normal quantile of 0.975: a point's 95 % interval spans 2 × 1.96 standard errors, which
/// is how its variance is recovered from its interval.
const Z_975: f64 = 1.959_963_984_540_054;

/// One observed value of a measure, with the 95 % confidence interval of the value when it has one.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TrendPoint {
    pub on: NaiveDate,
    pub value: f64,
    pub ci_low: Option<f64>,
    pub ci_high: Option<f64>,
}

impl From<&MetricPoint> for TrendPoint {
    /// A metric point is placed on the first day of its bucket, the day its chart labels it with.
    fn from(point: &MetricPoint) -> Self {
        TrendPoint { on: point.bucket, value: point.value, ci_low: point.ci_low, ci_high: point.ci_high }
    }
}

/// A straight line fitted by (weighted) least squares, with what its standard errors need.
///
/// Days are counted from `origin`, the earliest point, so the line is `intercept + slope_per_day × days`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Trend {
    pub origin: NaiveDate,
    /// The fitted value at `origin`.
    pub intercept: f64,
    pub slope_per_day: f64,
    /// How many points the line was fitted to.
    pub points: usize,
    /// The half-life of the recency weights, in days before the newest point; `None` when every point
    /// counts the same whatever its age.
    pub half_life_days: Option<f64>,
    /// How many equally weighted points the recency weights are worth: (Σd)² / Σd² over the points'
    /// recency weights d, which is `points` without them.
    pub effective_points: f64,
    /// True when every point carried a usable confidence interval and was weighted by 1/variance.
    pub weighted: bool,
    /// The weighted mean of the points' days since `origin`, where the line's uncertainty is smallest.
    pub mean_day: f64,
    /// Σ w (day − mean_day)²: how spread out the points are in time.
    pub sxx: f64,
    /// Σ w: the number of points unweighted, their total precision weighted.
    pub weight_sum: f64,
    /// The variance, at weight 1, of the fitted level at `mean_day`, of the slope, and their covariance.
    /// With weights that are the points' precisions these are 1/Σw, 1/Sxx and 0, the textbook ones; with
    /// recency weights too, the weights no longer match the points' variances and the sandwich form
    /// (X'WX)⁻¹ X'WΣWX (X'WX)⁻¹ gives them.
    pub level_variance: f64,
    pub slope_variance: f64,
    pub level_slope_covariance: f64,
    /// The variance of one residual at weight 1. Unweighted, it is estimated from the scatter around the
    /// line (SSR / (n − 2), recency-weighted: Σ d r² / (Σd (1 − 2 / n_eff))). Weighted, the points' own variances are trusted unless the scatter exceeds
    /// them: the factor is χ² / (n − 2), floored at 1, so that intervals that are too narrow for the data
    /// are widened but a line that fits better than its intervals is not credited with more certainty than
    /// its measurements carry.
    pub residual_scale: f64,
    /// The variance, at weight 1, of a single future observation around the line: 1 unweighted, the mean
    /// of the points' variances weighted (a future point is assumed to be measured as precisely as a
    /// typical past one).
    pub new_point_variance: f64,
}

impl Trend {
    /// Days from the origin, as the line counts them.
    fn day(&self, on: NaiveDate) -> f64 {
        (on - self.origin).num_days() as f64
    }

    /// The line's value on `on`.
    pub fn value_at(&self, on: NaiveDate) -> f64 {
        self.intercept + self.slope_per_day * self.day(on)
    }

    /// The variance, at weight 1, of the line's value on `on`.
    fn line_variance(&self, on: NaiveDate) -> f64 {
        let dx = self.day(on) - self.mean_day;
        (self.level_variance + dx * dx * self.slope_variance + 2.0 * dx * self.level_slope_covariance).max(0.0)
    }

    /// The standard error of the line itself on `on`: how uncertain the mean level is.
    pub fn fit_std_error(&self, on: NaiveDate) -> f64 {
        (self.residual_scale * self.line_variance(on)).sqrt()
    }

    /// The standard error of one observation made on `on`: the line's uncertainty plus the scatter of a
    /// single point around it. This is the uncertainty of what the metric will actually read that day,
    /// which is what a target is judged on.
    pub fn prediction_std_error(&self, on: NaiveDate) -> f64 {
        (self.residual_scale * (self.new_point_variance + self.line_variance(on))).sqrt()
    }

    /// Two parameters are estimated from the points, so n − 2 degrees of freedom are left for the scatter
    /// (n being the effective number of points when recent points weigh more).
    pub fn degrees_of_freedom(&self) -> f64 {
        self.effective_points - 2.0
    }
}

/// Fits a line to `points`, every point counting the same whatever its age. Points whose value is not
/// finite are left out.
///
/// Weights are used only when every point has a finite interval of positive width: mixing weighted and
/// unweighted points would need a variance for the latter that nothing provides.
///
/// `None` when fewer than [`MIN_TREND_POINTS`] points remain or all of them fall on one day (no slope
/// can be told from a single day).
pub fn fit_trend(points: &[TrendPoint]) -> Option<Trend> {
    fit_weighted_trend(points, None)
}

/// Fits a local line to `points`: as [`fit_trend`], with each point's weight also halved every
/// `half_life_days` days before the newest point. `None` also when the recency weights leave fewer than
/// [`MIN_TREND_POINTS`] effective points (a long history whose recent part is one or two points).
pub fn fit_recent_trend(points: &[TrendPoint], half_life_days: f64) -> Option<Trend> {
    fit_weighted_trend(points, Some(half_life_days).filter(|h| h.is_finite() && *h > 0.0))
}

fn fit_weighted_trend(points: &[TrendPoint], half_life_days: Option<f64>) -> Option<Trend> {
    let points: Vec<&TrendPoint> = points.iter().filter(|p| p.value.is_finite()).collect();
    if points.len() < MIN_TREND_POINTS {
        return None;
    }
    let origin = points.iter().map(|p| p.on).min()?;
    let newest = points.iter().map(|p| p.on).max()?;
    let variances: Option<Vec<f64>> = points
        .iter()
        .map(|p| match (p.ci_low, p.ci_high) {
            (Some(low), Some(high)) if low.is_finite() && high.is_finite() && high > low => {
                let sd = (high - low) / (2.0 * Z_975);
                Some(sd * sd)
            }
            _ => None,
        })
        .collect();
    let weighted = variances.is_some();
    // A point's variance at weight 1: its own when it carries an interval, else 1 (the common unknown
    // variance is then the residual scale).
    let point_variances: Vec<f64> = match &variances {
        Some(v) => v.clone(),
        None => vec![1.0; points.len()],
    };
    let recency: Vec<f64> = points
        .iter()
        .map(|p| match half_life_days {
            Some(h) => 0.5_f64.powf((newest - p.on).num_days() as f64 / h),
            None => 1.0,
        })
        .collect();
    let recency_sum: f64 = recency.iter().sum();
    let effective_points = recency_sum * recency_sum / recency.iter().map(|d| d * d).sum::<f64>();
    if effective_points < MIN_TREND_POINTS as f64 - 1e-9 {
        return None;
    }
    let weights: Vec<f64> = recency.iter().zip(&point_variances).map(|(d, v)| d / v).collect();
    let days: Vec<f64> = points.iter().map(|p| (p.on - origin).num_days() as f64).collect();
    let values: Vec<f64> = points.iter().map(|p| p.value).collect();

    let weight_sum: f64 = weights.iter().sum();
    let mean_day = weights.iter().zip(&days).map(|(w, x)| w * x).sum::<f64>() / weight_sum;
    let mean_value = weights.iter().zip(&values).map(|(w, y)| w * y).sum::<f64>() / weight_sum;
    let sxx: f64 = weights.iter().zip(&days).map(|(w, x)| w * (x - mean_day).powi(2)).sum();
    if sxx <= 0.0 || !sxx.is_finite() {
        return None;
    }
    let sxy: f64 =
        weights.iter().zip(&days).zip(&values).map(|((w, x), y)| w * (x - mean_day) * (y - mean_value)).sum();
    let slope_per_day = sxy / sxx;
    let intercept = mean_value - slope_per_day * mean_day;

    // The sandwich: with u = w² × variance, Var(level) = Σu / (Σw)², Var(slope) = Σu dx² / Sxx² and
    // Cov = Σu dx / (Σw Sxx), dx measured from the weighted mean day. Without recency weights u = w and
    // these are 1/Σw, 1/Sxx and 0 (Σw dx = 0 by the choice of mean_day).
    let (mut su, mut sudx, mut sudx2) = (0.0, 0.0, 0.0);
    for ((w, v), x) in weights.iter().zip(&point_variances).zip(&days) {
        let (u, dx) = (w * w * v, x - mean_day);
        su += u;
        sudx += u * dx;
        sudx2 += u * dx * dx;
    }
    let (level_variance, slope_variance, level_slope_covariance) = match half_life_days {
        Some(_) => (su / (weight_sum * weight_sum), sudx2 / (sxx * sxx), sudx / (weight_sum * sxx)),
        None => (1.0 / weight_sum, 1.0 / sxx, 0.0),
    };

    let dof = effective_points - 2.0;
    // Σ d r² / v: the recency-weighted χ² (the plain one without recency weights), scaled to what n
    // equally weighted points would give so that it estimates the residual variance as SSR / (n − 2) does.
    let chi2: f64 =
        weights.iter().zip(&days).zip(&values).map(|((w, x), y)| w * (y - intercept - slope_per_day * x).powi(2)).sum();
    let scaled_chi2 = chi2 * effective_points / recency_sum;
    let (residual_scale, new_point_variance) = match &variances {
        Some(v) => {
            // A future point is measured about as precisely as a recent one.
            let typical = recency.iter().zip(v).map(|(d, v)| d * v).sum::<f64>() / recency_sum;
            ((scaled_chi2 / dof).max(1.0), typical)
        }
        None => (scaled_chi2 / dof, 1.0),
    };
    Some(Trend {
        origin,
        intercept,
        slope_per_day,
        points: points.len(),
        half_life_days,
        effective_points,
        weighted,
        mean_day,
        sxx,
        weight_sum,
        level_variance,
        slope_variance,
        level_slope_covariance,
        residual_scale,
        new_point_variance,
    })
}

string_enum!(
    /// How likely the target is to be met by the forecast date.
    Outlook { OnTrack => "on-track", AtRisk => "at-risk", OffTrack => "off-track" }
);

impl Outlook {
    pub fn from_probability(p: f64) -> Outlook {
        if p >= ON_TRACK_PROBABILITY {
            Outlook::OnTrack
        } else if p >= OFF_TRACK_PROBABILITY {
            Outlook::AtRisk
        } else {
            Outlook::OffTrack
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Outlook::OnTrack => "on track",
            Outlook::AtRisk => "at risk",
            Outlook::OffTrack => "off track",
        }
    }
}

/// The forecast of a measure on one date.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Forecast {
    /// The date forecast: the end of the cycle.
    pub on: NaiveDate,
    /// The line's value on that date.
    pub value: f64,
    /// The 95 % prediction interval of the value read on that date.
    pub low: f64,
    pub high: f64,
    /// The standard error of a value read on that date (see [`Trend::prediction_std_error`]).
    pub std_error: f64,
    pub trend: Trend,
    /// The probability that the value read on that date meets the target; `None` for a milestone,
    /// which has no figure to forecast against.
    pub probability: Option<f64>,
    pub outlook: Option<Outlook>,
    /// The newest point the line was fitted to: where the measure is now.
    pub latest: TrendPoint,
    /// True when the latest reading already meets the measure and the line still meets it on the date
    /// forecast: the outlook is then on track, since the target is held, not still to be reached.
    pub holding: bool,
    /// One sentence for the dashboard, such as "on track: 0.41 expected by 2027-03-31 (0.36–0.46), 88 %
    /// chance of reaching 0.4; latest 0.38 on 2027-02-01".
    pub summary: String,
}

/// Forecasts `measure` on `on` from its observed `points`.
///
/// The forecast is the fitted line's value; its uncertainty is that of a single reading on that day (the
/// line's own uncertainty, which grows with the distance from the points' centre in time, plus the
/// scatter of one point), as in the usual prediction interval of a linear regression. Because that
/// scatter is estimated from the same few points, the value is taken to follow Student's t distribution
/// with n − 2 degrees of freedom, both for the interval and for the probability: with three points the
/// interval is wide, as it should be, and with many points this is the normal approximation.
///
/// The probability is that of the reading meeting the measure on that date: at or above the target of
/// an increase or a keep-above threshold, at or below that of a decrease or a keep-below threshold, and
/// inside the range of a within-range measure. A keep-above or keep-below measure is judged on the end
/// date only, not on every day before it.
///
/// `None` when no trend can be fitted (see [`fit_trend`]).
pub fn forecast_measure(points: &[TrendPoint], measure: &Measure, on: NaiveDate) -> Option<Forecast> {
    forecast_with(fit_trend(points)?, points, measure, on)
}

/// Forecasts `measure` on `on` as [`forecast_measure`] does, from a local line whose points' weights
/// halve every `half_life_days` before the newest one ([`fit_recent_trend`]).
pub fn forecast_recent(
    points: &[TrendPoint],
    measure: &Measure,
    on: NaiveDate,
    half_life_days: f64,
) -> Option<Forecast> {
    forecast_with(fit_recent_trend(points, half_life_days)?, points, measure, on)
}

fn forecast_with(trend: Trend, points: &[TrendPoint], measure: &Measure, on: NaiveDate) -> Option<Forecast> {
    let latest = points.iter().filter(|p| p.value.is_finite()).max_by_key(|p| p.on).copied()?;
    let value = trend.value_at(on);
    let std_error = trend.prediction_std_error(on);
    let dof = trend.degrees_of_freedom();
    let half_width = student_t_quantile_975(dof) * std_error;
    let reading = Reading { mean: value, std_error, dof };
    let probability = match *measure {
        Measure::IncreaseTo { target, .. } => Some(reading.at_least(target)),
        Measure::KeepAbove { threshold, .. } => Some(reading.at_least(threshold)),
        Measure::DecreaseTo { target, .. } => Some(reading.at_most(target)),
        Measure::KeepBelow { threshold, .. } => Some(reading.at_most(threshold)),
        Measure::WithinRange { low, high, .. } => Some(reading.between(low, high)),
        Measure::Milestone => None,
    };
    // Already there and staying there is on track: the probability still says how sure the line is of
    // the end date, but a target the squad holds today is not a target at risk.
    let holding = measure.is_met(latest.value) == Some(true) && measure.is_met(value) == Some(true);
    let outlook = probability.map(|p| if holding { Outlook::OnTrack } else { Outlook::from_probability(p) });
    let (low, high) = (value - half_width, value + half_width);
    let mut summary = summarise(measure, on, value, low, high, probability, outlook);
    summary.push_str(&format!("; latest {}{} on {}", round_reading(latest.value), unit_suffix(measure), latest.on));
    if holding {
        summary.push_str(", already met");
    }
    Some(Forecast { on, value, low, high, std_error, trend, probability, outlook, latest, holding, summary })
}

/// A reading rounded to four significant digits for a sentence: a metric's value carries sampling noise
/// far above that.
pub(crate) fn round_reading(v: f64) -> f64 {
    if v == 0.0 || !v.is_finite() {
        return v;
    }
    let digits = 3 - v.abs().log10().floor() as i32;
    let scale = 10f64.powi(digits.clamp(-15, 15));
    (v * scale).round() / scale
}

fn unit_suffix(measure: &Measure) -> String {
    match measure.unit() {
        "" => String::new(),
        unit => format!(" {unit}"),
    }
}

/// A forecast reading: Student's t around `mean`, scaled by `std_error`.
struct Reading {
    mean: f64,
    std_error: f64,
    dof: f64,
}

impl Reading {
    fn cdf(&self, x: f64) -> f64 {
        if self.std_error > 0.0 {
            student_t_cdf((x - self.mean) / self.std_error, self.dof)
        } else {
            // A perfect line: the reading is certain, and it is at or below `x` or it is not.
            if self.mean <= x { 1.0 } else { 0.0 }
        }
    }

    /// P(reading ≥ x). For a continuous reading this is 1 − P(reading ≤ x); the certain case is written
    /// out so that a reading exactly on the target counts as meeting it.
    fn at_least(&self, x: f64) -> f64 {
        if self.std_error > 0.0 { 1.0 - self.cdf(x) } else { bool_p(self.mean >= x) }
    }

    fn at_most(&self, x: f64) -> f64 {
        self.cdf(x)
    }

    fn between(&self, low: f64, high: f64) -> f64 {
        if self.std_error > 0.0 {
            (self.cdf(high) - self.cdf(low)).max(0.0)
        } else {
            bool_p(low <= self.mean && self.mean <= high)
        }
    }
}

fn bool_p(ok: bool) -> f64 {
    if ok { 1.0 } else { 0.0 }
}

fn summarise(
    measure: &Measure,
    on: NaiveDate,
    value: f64,
    low: f64,
    high: f64,
    probability: Option<f64>,
    outlook: Option<Outlook>,
) -> String {
    let unit = measure.unit();
    let with_unit = |text: String| if unit.is_empty() { text } else { format!("{text} {unit}") };
    // A line through every point has no interval worth printing (only rounding error is left of it).
    let half_width = (high - low) / 2.0;
    let certain = half_width <= 1e-9 * value.abs().max(1.0);
    let decimals = decimals_for(if certain { 0.0 } else { half_width }, value);
    let fmt = |v: f64| format!("{v:.decimals$}");
    let interval = if certain { String::new() } else { format!(" ({}–{})", fmt(low), with_unit(fmt(high))) };
    let expected = format!("{} expected by {on}{interval}", with_unit(fmt(value)));
    let goal = |v: f64| with_unit(fmt_number(v));
    let aim = match measure {
        Measure::IncreaseTo { target, .. } => Some(format!("reaching {}", goal(*target))),
        Measure::DecreaseTo { target, .. } => Some(format!("getting down to {}", goal(*target))),
        Measure::KeepAbove { threshold, .. } => Some(format!("being at or above {} then", goal(*threshold))),
        Measure::KeepBelow { threshold, .. } => Some(format!("being at or below {} then", goal(*threshold))),
        Measure::WithinRange { low, high, .. } => {
            Some(format!("being within {}–{} then", fmt_number(*low), goal(*high)))
        }
        Measure::Milestone => None,
    };
    match (aim, probability, outlook) {
        (Some(aim), Some(p), Some(outlook)) => {
            format!("{}: {expected}, {} chance of {aim}", outlook.label(), fmt_probability(p))
        }
        _ => format!("trend: {expected}; a milestone has no figure to forecast against"),
    }
}

/// Enough decimals to show the first significant digit of the interval's half-width, between 0 and 6:
/// 0.41 ± 0.05 reads 0.41 and 1234 ± 300 reads 1234. Digits below the uncertainty would be noise.
fn decimals_for(half_width: f64, value: f64) -> usize {
    let scale = if half_width > 0.0 && half_width.is_finite() { half_width } else { value.abs() / 100.0 };
    if scale <= 0.0 || !scale.is_finite() {
        return 0;
    }
    (-scale.log10().floor()).clamp(0.0, 6.0) as usize
}

/// A probability as a dashboard shows it: whole percents, but never a rounded "0 %" or "100 %" for
/// something that is merely unlikely or likely.
pub fn fmt_probability(p: f64) -> String {
    if p == 0.0 || p == 1.0 {
        format!("{} %", (p * 100.0) as i64)
    } else if p < 0.01 {
        "< 1 %".to_owned()
    } else if p > 0.99 {
        "> 99 %".to_owned()
    } else {
        format!("{:.0} %", p * 100.0)
    }
}

/// The 0.975 quantile of Student's t with `dof` degrees of freedom, by bisection on its CDF (which is
/// increasing): 12.71 for one degree of freedom, 1.96 in the limit.
pub fn student_t_quantile_975(dof: f64) -> f64 {
    let (mut lo, mut hi) = (0.0_f64, 64.0_f64);
    for _ in 0..100 {
        let mid = 0.5 * (lo + hi);
        if student_t_cdf(mid, dof) < 0.975 {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    0.5 * (lo + hi)
}

/// Student's t CDF: P(T ≤ t) = 1 − I_x(ν/2, 1/2) / 2 for t > 0, with x = ν / (ν + t²).
fn student_t_cdf(t: f64, dof: f64) -> f64 {
    if t.is_nan() {
        return f64::NAN;
    }
    let x = dof / (dof + t * t);
    let tail = 0.5 * regularized_incomplete_beta(0.5 * dof, 0.5, x);
    if t > 0.0 { 1.0 - tail } else { tail }
}

/// I_x(a, b) by its continued fraction (modified Lentz), evaluated on the side where it converges fast.
fn regularized_incomplete_beta(a: f64, b: f64, x: f64) -> f64 {
    if x <= 0.0 {
        return 0.0;
    }
    if x >= 1.0 {
        return 1.0;
    }
    let ln_front = ln_gamma(a + b) - ln_gamma(a) - ln_gamma(b) + a * x.ln() + b * (1.0 - x).ln();
    if x < (a + 1.0) / (a + b + 2.0) {
        ln_front.exp() * beta_continued_fraction(a, b, x) / a
    } else {
        1.0 - ln_front.exp() * beta_continued_fraction(b, a, 1.0 - x) / b
    }
}

fn beta_continued_fraction(a: f64, b: f64, x: f64) -> f64 {
    const TINY: f64 = 1e-300;
    let nonzero = |v: f64| if v.abs() < TINY { TINY } else { v };
    let (qab, qap, qam) = (a + b, a + 1.0, a - 1.0);
    let mut c = 1.0;
    let mut d = 1.0 / nonzero(1.0 - qab * x / qap);
    let mut h = d;
    for m in 1..=300 {
        let m = m as f64;
        let m2 = 2.0 * m;
        let aa = m * (b - m) * x / ((qam + m2) * (a + m2));
        d = 1.0 / nonzero(1.0 + aa * d);
        c = nonzero(1.0 + aa / c);
        h *= d * c;
        let aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2));
        d = 1.0 / nonzero(1.0 + aa * d);
        c = nonzero(1.0 + aa / c);
        let step = d * c;
        h *= step;
        if (step - 1.0).abs() < 1e-15 {
            break;
        }
    }
    h
}

/// ln Γ(x) for x ≥ 0.5 (Lanczos, g = 7), which covers every argument the t distribution needs here.
fn ln_gamma(x: f64) -> f64 {
    const COEFFICIENTS: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    let x = x - 1.0;
    let mut sum = COEFFICIENTS[0];
    for (i, c) in COEFFICIENTS.iter().enumerate().skip(1) {
        sum += c / (x + i as f64);
    }
    let t = x + 7.5;
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + sum.ln()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn day(n: i64) -> NaiveDate {
        NaiveDate::from_ymd_opt(2027, 1, 4).unwrap() + chrono::Duration::days(n)
    }

    pub(crate) fn point(n: i64, value: f64) -> TrendPoint {
        TrendPoint { on: day(n), value, ci_low: None, ci_high: None }
    }

    fn with_ci(n: i64, value: f64, half: f64) -> TrendPoint {
        TrendPoint { on: day(n), value, ci_low: Some(value - half), ci_high: Some(value + half) }
    }

    /// 0.30 rising by 0.001 a day, one point a week for six weeks.
    pub(crate) fn line() -> Vec<TrendPoint> {
        (0..6).map(|w| point(7 * w, 0.30 + 0.001 * (7 * w) as f64)).collect()
    }

    pub(crate) fn increase(target: f64) -> Measure {
        Measure::IncreaseTo { start: 0.3, target, unit: String::new() }
    }

    #[test]
    fn the_t_distribution_matches_its_tables() {
        assert!((student_t_quantile_975(1.0) - 12.706_204_736).abs() < 1e-6);
        assert!((student_t_quantile_975(10.0) - 2.228_138_852).abs() < 1e-6);
        assert!((student_t_quantile_975(1e7) - Z_975).abs() < 1e-4);
        assert!((student_t_cdf(0.0, 3.0) - 0.5).abs() < 1e-12);
        assert!((student_t_cdf(-2.353_363_435, 3.0) - 0.05).abs() < 1e-8);
        // Γ(5) = 24 and Γ(1/2) = √π.
        assert!((ln_gamma(5.0) - 24f64.ln()).abs() < 1e-12);
        assert!((ln_gamma(0.5) - std::f64::consts::PI.sqrt().ln()).abs() < 1e-12);
    }

    #[test]
    fn a_perfect_line_forecasts_exactly() {
        let end = day(84);
        let below = forecast_measure(&line(), &increase(0.40), end).unwrap();
        assert!((below.value - 0.384).abs() < 1e-12, "{}", below.value);
        assert!((below.trend.slope_per_day - 0.001).abs() < 1e-12);
        assert!(below.std_error < 1e-9 && (below.high - below.low) < 1e-8);
        assert!(below.probability.unwrap() < 1e-6, "0.384 never reaches 0.40");
        assert_eq!(below.outlook, Some(Outlook::OffTrack));

        let above = forecast_measure(&line(), &increase(0.38), end).unwrap();
        assert!(above.probability.unwrap() > 1.0 - 1e-6, "0.384 clears 0.38");
        assert_eq!(above.outlook, Some(Outlook::OnTrack));
        assert!(above.summary.starts_with("on track: 0.384"), "{}", above.summary);
        assert!(above.summary.contains("by 2027-03-29") && above.summary.contains("of reaching 0.38"));
    }

    #[test]
    fn noisy_points_widen_the_interval_and_temper_the_probability() {
        let wiggle = [0.02, -0.015, 0.01, -0.02, 0.015, -0.01];
        let noisy: Vec<_> =
            line().iter().zip(wiggle).map(|(p, w)| point((p.on - day(0)).num_days(), p.value + w)).collect();
        let end = day(84);
        let f = forecast_measure(&noisy, &increase(0.38), end).unwrap();
        assert!(f.high - f.low > 0.05, "({}, {})", f.low, f.high);
        assert!(f.low < f.value && f.value < f.high);
        let p = f.probability.unwrap();
        assert!(p > 0.05 && p < 0.95, "scatter makes the outcome uncertain, not {p}");
        assert_eq!(f.trend.degrees_of_freedom(), 4.0);
        // The same figures worked out independently: OLS, s² = SSR / 4, se² = s² (1 + 1/n + (x₀ − x̄)² / Sxx),
        // the interval ± t₀.₉₇₅(4) = 2.7764 se, and P(V ≥ 0.38) by integrating t₄'s density.
        for (got, want) in
            [(f.value, 0.359_571_4), (f.std_error, 0.045_928_66), (f.low, 0.232_053_0), (f.high, 0.487_089_8)]
        {
            assert!((got - want).abs() < 1e-6, "{got} ≠ {want}");
        }
        assert!((p - 0.339_739_7).abs() < 1e-6, "{p}");

        // More scatter, wider still; and further out, wider than at the points' centre.
        let noisier: Vec<_> =
            noisy.iter().zip(wiggle).map(|(p, w)| TrendPoint { value: p.value + 2.0 * w, ..*p }).collect();
        let g = forecast_measure(&noisier, &increase(0.38), end).unwrap();
        assert!(g.high - g.low > f.high - f.low);
        assert!(f.trend.prediction_std_error(day(200)) > f.trend.prediction_std_error(day(17)));
        assert!(f.trend.fit_std_error(day(84)) < f.std_error);
    }

    #[test]
    fn fewer_than_three_points_or_one_day_give_no_forecast() {
        let two = &line()[..2];
        assert!(forecast_measure(two, &increase(0.4), day(84)).is_none());
        let nan = [point(0, 0.3), point(7, f64::NAN), point(14, 0.32)];
        assert!(fit_trend(&nan).is_none(), "a non-finite value does not count as a point");
        let same_day = [point(3, 0.3), point(3, 0.31), point(3, 0.32)];
        assert!(fit_trend(&same_day).is_none());
        assert!(fit_trend(&line()[..3]).is_some());
    }

    #[test]
    fn decreases_count_the_chance_of_getting_below_the_target() {
        // Latency falling 2 ms a day from 300 ms, with a little scatter.
        let pts: Vec<_> = [0.0, 3.0, -2.0, 1.0, -1.0]
            .iter()
            .enumerate()
            .map(|(i, e)| point(7 * i as i64, 300.0 - 14.0 * i as f64 + e))
            .collect();
        let m = |target| Measure::DecreaseTo { start: 300.0, target, unit: "ms".into() };
        let end = day(56); // about 188 ms expected
        let easy = forecast_measure(&pts, &m(220.0), end).unwrap();
        let hard = forecast_measure(&pts, &m(150.0), end).unwrap();
        assert!((easy.value - 188.0).abs() < 3.0, "{}", easy.value);
        assert!(easy.probability.unwrap() > 0.95, "{:?}", easy.probability);
        assert!(hard.probability.unwrap() < 0.05, "{:?}", hard.probability);
        assert!(easy.summary.contains("ms") && easy.summary.contains("getting down to 220 ms"), "{}", easy.summary);
        // Keep-below reads the same side; keep-above the other.
        let below = forecast_measure(&pts, &Measure::KeepBelow { threshold: 220.0, unit: "ms".into() }, end).unwrap();
        assert_eq!(below.probability, easy.probability);
        let above = forecast_measure(&pts, &Measure::KeepAbove { threshold: 220.0, unit: "ms".into() }, end).unwrap();
        assert!((above.probability.unwrap() + easy.probability.unwrap() - 1.0).abs() < 1e-12);
    }

    #[test]
    fn ranges_count_the_mass_between_their_ends() {
        let wiggle = [0.004, -0.003, 0.002, -0.004, 0.003, -0.002];
        let pts: Vec<_> = line().iter().zip(wiggle).map(|(p, w)| TrendPoint { value: p.value + w, ..*p }).collect();
        let end = day(84); // about 0.384
        let range = |low, high| Measure::WithinRange { low, high, unit: String::new() };
        let around = forecast_measure(&pts, &range(0.35, 0.42), end).unwrap().probability.unwrap();
        let narrow = forecast_measure(&pts, &range(0.38, 0.39), end).unwrap().probability.unwrap();
        let beside = forecast_measure(&pts, &range(0.45, 0.50), end).unwrap().probability.unwrap();
        assert!(around > 0.9, "{around}");
        assert!(narrow < around && narrow > 0.05, "{narrow}");
        assert!(beside < 0.01, "{beside}");
        let f = forecast_measure(&pts, &range(0.35, 0.42), end).unwrap();
        assert!(f.summary.contains("within 0.35–0.42"), "{}", f.summary);
        // A perfect line inside or outside the range is certain either way.
        assert_eq!(forecast_measure(&line(), &range(0.35, 0.42), end).unwrap().probability, Some(1.0));
        assert_eq!(forecast_measure(&line(), &range(0.39, 0.42), end).unwrap().probability, Some(0.0));
    }

    #[test]
    fn milestones_get_a_trend_but_no_probability() {
        let f = forecast_measure(&line(), &Measure::Milestone, day(84)).unwrap();
        assert_eq!((f.probability, f.outlook), (None, None));
        assert!(f.summary.starts_with("trend: "), "{}", f.summary);
    }

    #[test]
    fn intervals_weight_the_fit() {
        // A straight line of precise points, and one outlier measured on almost nobody.
        let mut pts: Vec<_> = (0..5).map(|w| with_ci(7 * w, 0.30 + 0.007 * w as f64, 0.005)).collect();
        pts.push(with_ci(35, 0.60, 0.40));
        let weighted = fit_trend(&pts).unwrap();
        assert!(weighted.weighted);
        let unweighted: Vec<_> = pts.iter().map(|p| TrendPoint { ci_low: None, ci_high: None, ..*p }).collect();
        let plain = fit_trend(&unweighted).unwrap();
        assert!(!plain.weighted);
        // The outlier drags the plain fit up; the weighted fit stays on the precise points' line.
        assert!((weighted.slope_per_day - 0.001).abs() < 1e-4, "{}", weighted.slope_per_day);
        assert!(plain.slope_per_day > 0.002, "{}", plain.slope_per_day);
        // One point without an interval and the fit falls back to unweighted.
        let mut mixed = pts.clone();
        mixed[2].ci_high = None;
        assert_eq!(fit_trend(&mixed).unwrap().slope_per_day, plain.slope_per_day);
    }

    #[test]
    fn intervals_that_fit_the_scatter_set_its_size() {
        // Points exactly on a line: unweighted, the interval collapses; weighted, each point's own
        // uncertainty still stands, so the forecast keeps an interval of about that size.
        let pts: Vec<_> = (0..6).map(|w| with_ci(7 * w, 0.30 + 0.007 * w as f64, 0.02)).collect();
        let f = forecast_measure(&pts, &increase(0.38), day(84)).unwrap();
        let point_sd = 0.02 / Z_975;
        assert!(f.std_error > point_sd && f.std_error < 3.0 * point_sd, "{}", f.std_error);
        assert_eq!(f.trend.residual_scale, 1.0);
    }

    #[test]
    fn summaries_read_as_a_sentence() {
        // Acceptance in percent: 30 % rising 0.1 point a day, with a point of scatter.
        let wiggle = [1.0, -1.5, 0.5, -1.0, 1.5, -0.5];
        let pts: Vec<_> = (0..6).zip(wiggle).map(|(w, e)| point(7 * w, 30.0 + 0.7 * w as f64 + e)).collect();
        let f = forecast_measure(&pts, &Measure::IncreaseTo { start: 30.0, target: 38.0, unit: "%".into() }, day(84));
        let s = f.unwrap().summary;
        println!("{s}");
        assert!(s.contains(" % expected by 2027-03-29 (") && s.contains(" % chance of reaching 38 %"), "{s}");
        assert_eq!(fmt_probability(0.004), "< 1 %");
        assert_eq!(fmt_probability(0.996), "> 99 %");
        assert_eq!(fmt_probability(0.876), "88 %");
        assert_eq!(decimals_for(0.05, 0.41), 2);
        assert_eq!(decimals_for(300.0, 1234.0), 0);
    }

    #[test]
    fn metric_points_become_trend_points_on_their_bucket() {
        let at = day(0).and_hms_opt(9, 0, 0).unwrap().and_utc();
        let mp = MetricPoint {
            bucket: day(0),
            value: 0.4,
            n: Some(120),
            ci_low: Some(0.35),
            ci_high: Some(0.45),
            observed_at: at,
            computed_at: at,
        };
        let p = TrendPoint::from(&mp);
        assert_eq!((p.on, p.value, p.ci_low, p.ci_high), (day(0), 0.4, Some(0.35), Some(0.45)));
    }
}
