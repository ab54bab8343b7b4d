//! What a dashboard says of a measure at its end date: a forecast from recent evidence while the date
//! is ahead, the outcome once it has passed.
//!
//! Dashboards forecast from recent evidence: one line through a whole history says where the metric
//! was on average, not where it is going, and a metric that has moved since (a model promoted, a product
//! change) would be forecast from a level it left long ago. The line is therefore a local one: each
//! point's weight also halves every h days before the newest point, h chosen by the series' own
//! one-step-ahead errors ([`choose_half_life`]), so the last weeks set both the level and the slope, and
//! the interval counts the effective number of points those weights leave (Kish's n = (Σd)² / Σd²), not
//! every point ever read. A measure already met by its latest reading, whose line still meets it at the
//! end date, is on track whatever the interval says about the days between; and a goal whose end has
//! passed gets its outcome (the last reading by its end date, met or not) instead of a forecast.

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use crate::forecast::{Forecast, MIN_TREND_POINTS, TrendPoint, fit_recent_trend, forecast_recent, round_reading};
use crate::measure::{Measure, fmt_number};

/// The half-lives, in days, a dashboard's forecast chooses from ([`choose_half_life`]): from one week,
/// for a metric that moved in the last month, to twelve, for a steady one whose scatter a short window
/// would mistake for a trend.
pub const HALF_LIFE_CANDIDATES_DAYS: [f64; 5] = [7.0, 14.0, 21.0, 42.0, 84.0];

/// The half-life used when the series is too short to choose one from its own forecast errors: three
/// weeks, about half of a squad goal's four to six.
pub const RECENT_HALF_LIFE_DAYS: f64 = 21.0;

/// How many of the newest points the half-life is chosen on.
pub const HALF_LIFE_VALIDATION_POINTS: usize = 8;

/// How a measure ended: the last reading on or before its end date and whether it met the measure.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Outcome {
    /// The end date.
    pub on: NaiveDate,
    /// The last reading on or before the end date; `None` when nothing was read by then.
    pub reading: Option<TrendPoint>,
    /// Whether that reading meets the measure; `None` for a milestone or without a reading.
    pub met: Option<bool>,
    /// One sentence, such as "ended 2026-10-30: 0.41 on 2026-10-29, reached 0.4".
    pub summary: String,
}

/// What a dashboard says of a measure at its end date: a forecast while the date is ahead, the outcome
/// once it has passed (a forecast of a past date would only restate history with an interval).
#[derive(Debug, Clone, PartialEq)]
pub enum Projection {
    Forecast(Forecast),
    Outcome(Outcome),
    /// The end date is ahead but no trend can be fitted (see [`fit_recent_trend`]).
    TooFewPoints,
}

impl Projection {
    pub fn forecast(&self) -> Option<&Forecast> {
        match self {
            Projection::Forecast(f) => Some(f),
            _ => None,
        }
    }

    pub fn outcome(&self) -> Option<&Outcome> {
        match self {
            Projection::Outcome(o) => Some(o),
            _ => None,
        }
    }
}

/// The dashboard's view of `measure` at `ends_on`, judged on `today`: the outcome when `ends_on` is
/// before `today`, else the forecast from recent evidence ([`forecast_recent`]).
pub fn project_measure(points: &[TrendPoint], measure: &Measure, ends_on: NaiveDate, today: NaiveDate) -> Projection {
    if ends_on < today {
        return Projection::Outcome(outcome_of(points, measure, ends_on));
    }
    match forecast_recent(points, measure, ends_on, choose_half_life(points)) {
        Some(f) => Projection::Forecast(f),
        None => Projection::TooFewPoints,
    }
}

/// The half-life of [`HALF_LIFE_CANDIDATES_DAYS`] whose local line best forecast the series' own newest
/// points: each of the last [`HALF_LIFE_VALIDATION_POINTS`] points is forecast from the points before
/// it, and the candidate with the least mean squared error wins, as exponential smoothing's parameters
/// are fitted on one-step-ahead errors. A metric that moved recently picks a short half-life (the old
/// level mispredicts the new points), a steady noisy one a long one (a short window chases noise). A
/// candidate that cannot forecast every validation point is not chosen; when none can,
/// [`RECENT_HALF_LIFE_DAYS`].
pub fn choose_half_life(points: &[TrendPoint]) -> f64 {
    let mut sorted: Vec<TrendPoint> = points.iter().filter(|p| p.value.is_finite()).copied().collect();
    sorted.sort_by_key(|p| p.on);
    let first = sorted.len().saturating_sub(HALF_LIFE_VALIDATION_POINTS).max(MIN_TREND_POINTS);
    if first >= sorted.len() {
        return RECENT_HALF_LIFE_DAYS;
    }
    let error = |half_life: f64| -> Option<f64> {
        let mut sum = 0.0;
        for j in first..sorted.len() {
            // Only points of earlier days: a bucket's forecast must not see the bucket itself.
            let before: Vec<TrendPoint> = sorted[..j].iter().filter(|p| p.on < sorted[j].on).copied().collect();
            let trend = fit_recent_trend(&before, half_life)?;
            sum += (trend.value_at(sorted[j].on) - sorted[j].value).powi(2);
        }
        Some(sum)
    };
    HALF_LIFE_CANDIDATES_DAYS
        .iter()
        .filter_map(|&h| Some((h, error(h)?)))
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .map_or(RECENT_HALF_LIFE_DAYS, |(h, _)| h)
}

/// The outcome of `measure` at `ends_on`: the last finite reading on or before that day.
pub fn outcome_of(points: &[TrendPoint], measure: &Measure, ends_on: NaiveDate) -> Outcome {
    let reading = points.iter().filter(|p| p.on <= ends_on && p.value.is_finite()).max_by_key(|p| p.on).copied();
    let met = reading.and_then(|r| measure.is_met(r.value));
    let unit = measure.unit();
    let with_unit = |v: f64| if unit.is_empty() { fmt_number(v) } else { format!("{} {unit}", fmt_number(v)) };
    let summary = match (reading, met) {
        (None, _) => format!("ended {ends_on} with no reading by then"),
        (Some(r), None) => format!("ended {ends_on}: {} on {}", with_unit(round_reading(r.value)), r.on),
        (Some(r), Some(met)) => format!(
            "ended {ends_on}: {} on {}, {} {}",
            with_unit(round_reading(r.value)),
            r.on,
            if met { "met" } else { "missed" },
            measure.describe()
        ),
    };
    Outcome { on: ends_on, reading, met, summary }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::forecast::tests::{day, increase, line, point};
    use crate::forecast::{OFF_TRACK_PROBABILITY, ON_TRACK_PROBABILITY, Outlook, fit_trend, forecast_measure};

    /// A daily series that fell from 0.60 to 0.30 over 200 days and then, a model promoted, climbed to
    /// about 0.567 in its last 20 (a little alternating scatter on both).
    fn fell_then_recovered() -> Vec<TrendPoint> {
        (0..220)
            .map(|d| {
                let base = if d < 200 { 0.60 - 0.0015 * d as f64 } else { 0.30 + 0.0134 * (d - 199) as f64 };
                point(d, base + if d % 2 == 0 { 0.004 } else { -0.004 })
            })
            .collect()
    }

    #[test]
    fn a_metric_that_moved_is_forecast_from_where_it_is_now() {
        let pts = fell_then_recovered();
        let now = pts.last().unwrap().on;
        let end = now + chrono::Duration::days(7);
        let target = increase(0.35);
        // One line through the whole history says where the metric was on average: heading down.
        let whole = forecast_measure(&pts, &target, end).unwrap();
        assert!(whole.value < 0.40, "{}", whole.summary);
        // The local line sees the recovery and the level it reached: the series' own errors pick the
        // shortest half-life, since the months of decline mispredict the recovery's points.
        assert_eq!(choose_half_life(&pts), 7.0);
        let recent = forecast_recent(&pts, &target, end, choose_half_life(&pts)).unwrap();
        assert!(recent.value > 0.5, "{}", recent.summary);
        assert!(recent.probability.unwrap() > 0.9, "{}", recent.summary);
        assert_eq!(recent.outlook, Some(Outlook::OnTrack), "{}", recent.summary);
        assert!((recent.latest.value - 0.5635).abs() < 0.01, "{:?}", recent.latest);
        assert!(recent.summary.contains("latest 0.56"), "{}", recent.summary);
        // The weights leave far fewer effective points than 220, and say so in the degrees of freedom.
        let t = &recent.trend;
        assert_eq!((t.points, t.half_life_days), (220, Some(7.0)));
        assert!(t.effective_points > 15.0 && t.effective_points < 25.0, "{}", t.effective_points);
        assert!((t.degrees_of_freedom() - (t.effective_points - 2.0)).abs() < 1e-12);
        let through = project_measure(&pts, &target, end, now);
        assert_eq!(through.forecast(), Some(&recent));
    }

    #[test]
    fn a_target_already_met_and_held_is_on_track() {
        // Flat at 0.567 with scatter, target 0.566: the end date's reading is a coin toss around the target,
        // which alone would read "at risk"; the squad holds the target today, so it is on track.
        let wiggle = [-0.012, 0.008, -0.006, 0.011, -0.009, 0.007, -0.01, 0.01];
        let flat: Vec<_> = (0..8).map(|w| point(7 * w, 0.567 + wiggle[w as usize] + 0.0005)).collect();
        let end = day(63);
        let f = forecast_recent(&flat, &increase(0.566), end, choose_half_life(&flat)).unwrap();
        let p = f.probability.unwrap();
        assert!(p < ON_TRACK_PROBABILITY && p > OFF_TRACK_PROBABILITY, "close to the target: {p}");
        assert!(f.holding, "{}", f.summary);
        assert_eq!(f.outlook, Some(Outlook::OnTrack));
        assert!(f.summary.starts_with("on track") && f.summary.ends_with("already met"), "{}", f.summary);

        // Met today but falling through the target by the end date is not held.
        let falling: Vec<_> =
            (0..8).map(|w| point(7 * w, 0.66 - 0.002 * (7 * w) as f64 + wiggle[w as usize] / 10.0)).collect();
        let g = forecast_recent(&falling, &increase(0.56), day(84), RECENT_HALF_LIFE_DAYS).unwrap();
        assert!(falling.last().unwrap().value >= 0.56 && g.value < 0.56, "{}", g.summary);
        assert!(!g.holding && g.outlook != Some(Outlook::OnTrack), "{}", g.summary);
        // And not yet met is judged on the probability alone.
        let h = forecast_recent(&line(), &increase(0.38), day(84), RECENT_HALF_LIFE_DAYS).unwrap();
        assert!(!h.holding);
    }

    #[test]
    fn a_measure_whose_end_has_passed_shows_its_outcome() {
        let pts = line(); // 0.30 to 0.335 over five weeks
        let today = day(60);
        let reached = project_measure(&pts, &increase(0.33), day(40), today);
        let o = reached.outcome().expect("an outcome, not a forecast");
        assert_eq!((o.on, o.met, o.reading.map(|r| r.on)), (day(40), Some(true), Some(day(35))));
        assert_eq!(o.summary, "ended 2027-02-13: 0.335 on 2027-02-08, met 0.3 → 0.33");
        assert!(reached.forecast().is_none());

        // Judged on the last reading by the end date, not on later ones.
        let early = project_measure(&pts, &increase(0.33), day(20), today);
        let o = early.outcome().unwrap();
        assert_eq!((o.met, o.reading.map(|r| r.on)), (Some(false), Some(day(14))));
        assert!(o.summary.contains("missed"), "{}", o.summary);

        let before_any = outcome_of(&pts, &increase(0.33), day(-1));
        assert_eq!((before_any.reading, before_any.met), (None, None));
        assert!(before_any.summary.contains("no reading"), "{}", before_any.summary);
        let milestone = outcome_of(&pts, &Measure::Milestone, day(40));
        assert_eq!(milestone.met, None);

        // The end date itself still gets a forecast, and too little evidence says so.
        assert!(project_measure(&pts, &increase(0.33), today, today).forecast().is_some());
        assert_eq!(project_measure(&pts[..2], &increase(0.33), today, today), Projection::TooFewPoints);
    }

    #[test]
    fn a_steady_noisy_metric_keeps_a_long_memory() {
        // Flat at 0.5 with alternating scatter for four months: short windows chase the scatter.
        let pts: Vec<_> = (0..120).map(|d| point(d, 0.5 + if d % 3 == 0 { 0.02 } else { -0.01 })).collect();
        assert!(choose_half_life(&pts) >= 42.0, "{}", choose_half_life(&pts));
        // Too short a series to validate on falls back to the default.
        assert_eq!(choose_half_life(&line()[..4]), RECENT_HALF_LIFE_DAYS);
    }

    #[test]
    fn recency_weights_leave_fewer_effective_points_and_none_leaves_the_plain_fit() {
        // A long history whose recent part is two points is too little evidence for a local line.
        let sparse = [point(0, 0.3), point(1, 0.31), point(2, 0.32), point(300, 0.5), point(301, 0.51)];
        assert!(fit_trend(&sparse).is_some());
        assert!(fit_recent_trend(&sparse, RECENT_HALF_LIFE_DAYS).is_none());
        // A half-life far longer than the history is the plain fit.
        let wiggle = [0.02, -0.015, 0.01, -0.02, 0.015, -0.01];
        let noisy: Vec<_> = line().iter().zip(wiggle).map(|(p, w)| TrendPoint { value: p.value + w, ..*p }).collect();
        let plain = forecast_measure(&noisy, &increase(0.38), day(84)).unwrap();
        let long = forecast_recent(&noisy, &increase(0.38), day(84), 1e9).unwrap();
        assert!((plain.value - long.value).abs() < 1e-9 && (plain.std_error - long.std_error).abs() < 1e-9);
        // A non-positive half-life means no recency weights at all.
        assert_eq!(fit_recent_trend(&noisy, 0.0).unwrap().half_life_days, None);
    }

    /// A small deterministic generator of standard normal draws (xorshift64* and Box–Muller), so the
    /// test below is the same on every run.
    struct Normal(u64);

    impl Normal {
        fn uniform(&mut self) -> f64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            ((self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 + 0.5) / (1u64 << 53) as f64
        }

        fn draw(&mut self) -> f64 {
            let (u, v) = (self.uniform(), self.uniform());
            (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
        }
    }

    #[test]
    fn the_local_lines_standard_errors_match_simulation() {
        // Forty daily points around a line with noise of sd 0.02; refit 4,000 times. The spread of the
        // forecast value across fits must match the stated fit standard error, the residual scale must
        // estimate the noise variance, and the 95 % prediction interval must hold about 95 % of readings.
        let mut rng = Normal(0x5eed_1234_abcd_0001);
        let sd = 0.02;
        let end = day(39 + 14);
        let (mut values, mut scales, mut fit_ses, mut covered) = (vec![], vec![], vec![], 0usize);
        let runs = 4000;
        for _ in 0..runs {
            let pts: Vec<_> = (0..40).map(|d| point(d, 0.4 + 0.003 * d as f64 + sd * rng.draw())).collect();
            let f = forecast_recent(&pts, &increase(0.5), end, 14.0).unwrap();
            values.push(f.value);
            scales.push(f.trend.residual_scale);
            fit_ses.push(f.trend.fit_std_error(end));
            let reading = 0.4 + 0.003 * 53.0 + sd * rng.draw();
            covered += usize::from(f.low <= reading && reading <= f.high);
        }
        let mean = values.iter().sum::<f64>() / runs as f64;
        let spread = (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (runs - 1) as f64).sqrt();
        let stated = (fit_ses.iter().map(|s| s * s).sum::<f64>() / runs as f64).sqrt();
        assert!((mean - 0.559).abs() < 0.002, "the local line is unbiased on a straight line: {mean}");
        assert!((spread / stated - 1.0).abs() < 0.08, "simulated {spread}, stated {stated}");
        let scale = scales.iter().sum::<f64>() / runs as f64;
        assert!((scale / (sd * sd) - 1.0).abs() < 0.08, "residual scale {scale} for variance {}", sd * sd);
        let coverage = covered as f64 / runs as f64;
        assert!((coverage - 0.95).abs() < 0.02, "coverage {coverage}");
    }
}
