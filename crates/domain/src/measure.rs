//! How a key result or a squad goal is measured, and how far along it is.

use serde::{Deserialize, Serialize};

use crate::entities::string_enum;
use crate::errors::FieldErrors;
use crate::newtypes::{Checker, finite};

string_enum!(
    MeasureKind {
        IncreaseTo => "increase-to",
        DecreaseTo => "decrease-to",
        KeepAbove => "keep-above",
        KeepBelow => "keep-below",
        WithinRange => "within-range",
        Milestone => "milestone",
    }
);

impl MeasureKind {
    pub fn label(self) -> &'static str {
        match self {
            MeasureKind::IncreaseTo => "Increase to",
            MeasureKind::DecreaseTo => "Decrease to",
            MeasureKind::KeepAbove => "Keep above",
            MeasureKind::KeepBelow => "Keep below",
            MeasureKind::WithinRange => "Keep within range",
            MeasureKind::Milestone => "Milestone",
        }
    }
}

/// A validated measure. The variants carry only the figures their kind needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Measure {
    IncreaseTo { start: f64, target: f64, unit: String },
    DecreaseTo { start: f64, target: f64, unit: String },
    KeepAbove { threshold: f64, unit: String },
    KeepBelow { threshold: f64, unit: String },
    WithinRange { low: f64, high: f64, unit: String },
    Milestone,
}

/// The measure as a JSON body or a form carries it: every figure optional, checked by `validate`. Inputs
/// that carry a measure repeat these fields flat (see `measure_fields!`) rather than nest this struct with
/// `#[serde(flatten)]`, which would lose the field name in type errors.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(default)]
pub struct MeasureInput {
    pub kind: String,
    pub start: Option<f64>,
    pub target: Option<f64>,
    pub threshold: Option<f64>,
    pub low: Option<f64>,
    pub high: Option<f64>,
    pub unit: String,
}

/// How far a measure has come. `score` is in 0..=1; `distance` is how far the current value is from
/// where it must be (for a target: what remains; for a threshold or range: the signed margin).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Progress {
    pub score: f64,
    pub distance: Option<f64>,
    /// False until the first check-in: a measure without data is shown as such, not as a failure.
    pub has_data: bool,
}

impl Measure {
    pub fn kind(&self) -> MeasureKind {
        match self {
            Measure::IncreaseTo { .. } => MeasureKind::IncreaseTo,
            Measure::DecreaseTo { .. } => MeasureKind::DecreaseTo,
            Measure::KeepAbove { .. } => MeasureKind::KeepAbove,
            Measure::KeepBelow { .. } => MeasureKind::KeepBelow,
            Measure::WithinRange { .. } => MeasureKind::WithinRange,
            Measure::Milestone => MeasureKind::Milestone,
        }
    }

    pub fn unit(&self) -> &str {
        match self {
            Measure::IncreaseTo { unit, .. }
            | Measure::DecreaseTo { unit, .. }
            | Measure::KeepAbove { unit, .. }
            | Measure::KeepBelow { unit, .. }
            | Measure::WithinRange { unit, .. } => unit,
            Measure::Milestone => "",
        }
    }

    /// The progress of this measure at `current` (the latest checked-in value, if any).
    ///
    /// Increase and decrease share one formula, `(current - start) / (target - start)`, so a decreasing
    /// target is handled by the sign of the denominator: from 200 down to 0, a value of 100 is 50 %.
    pub fn progress(&self, current: Option<f64>) -> Progress {
        let Some(current) = current else {
            return Progress { score: 0.0, distance: None, has_data: false };
        };
        let (score, distance) = match *self {
            Measure::IncreaseTo { start, target, .. } | Measure::DecreaseTo { start, target, .. } => {
                // Validation guarantees target != start; the guard keeps a corrupted row from dividing
                // by zero.
                let span = target - start;
                let score = if span == 0.0 { 0.0 } else { ((current - start) / span).clamp(0.0, 1.0) };
                (score, Some(target - current))
            }
            Measure::KeepAbove { threshold, .. } => (bool_score(current >= threshold), Some(current - threshold)),
            Measure::KeepBelow { threshold, .. } => (bool_score(current <= threshold), Some(threshold - current)),
            Measure::WithinRange { low, high, .. } => {
                let distance = if current < low {
                    current - low
                } else if current > high {
                    current - high
                } else {
                    0.0
                };
                (bool_score(distance == 0.0), Some(distance))
            }
            Measure::Milestone => (bool_score(current >= 0.5), None),
        };
        Progress { score, distance, has_data: true }
    }

    /// Whether a reading of `value` meets the measure: at or past an increase's or decrease's target,
    /// on the right side of a threshold, inside a range. `None` for a milestone, which a figure cannot
    /// meet.
    pub fn is_met(&self, value: f64) -> Option<bool> {
        match *self {
            Measure::IncreaseTo { target, .. } => Some(value >= target),
            Measure::DecreaseTo { target, .. } => Some(value <= target),
            Measure::KeepAbove { threshold, .. } => Some(value >= threshold),
            Measure::KeepBelow { threshold, .. } => Some(value <= threshold),
            Measure::WithinRange { low, high, .. } => Some(low <= value && value <= high),
            Measure::Milestone => None,
        }
    }

    /// A one-line statement of the measure, such as "200 → 0 ms" or "keep above 0.35".
    pub fn describe(&self) -> String {
        let with_unit = |v: f64, unit: &str| {
            if unit.is_empty() { fmt_number(v) } else { format!("{} {unit}", fmt_number(v)) }
        };
        match self {
            Measure::IncreaseTo { start, target, unit } | Measure::DecreaseTo { start, target, unit } => {
                format!("{} → {}", fmt_number(*start), with_unit(*target, unit))
            }
            Measure::KeepAbove { threshold, unit } => format!("keep above {}", with_unit(*threshold, unit)),
            Measure::KeepBelow { threshold, unit } => format!("keep below {}", with_unit(*threshold, unit)),
            Measure::WithinRange { low, high, unit } => {
                format!("keep within {}–{}", fmt_number(*low), with_unit(*high, unit))
            }
            Measure::Milestone => "milestone".to_owned(),
        }
    }

    /// Flattens back to the input shape, for edit forms and plan files.
    pub fn to_input(&self) -> MeasureInput {
        let mut input =
            MeasureInput { kind: self.kind().as_str().to_owned(), unit: self.unit().to_owned(), ..Default::default() };
        match *self {
            Measure::IncreaseTo { start, target, .. } | Measure::DecreaseTo { start, target, .. } => {
                input.start = Some(start);
                input.target = Some(target);
            }
            Measure::KeepAbove { threshold, .. } | Measure::KeepBelow { threshold, .. } => {
                input.threshold = Some(threshold)
            }
            Measure::WithinRange { low, high, .. } => {
                input.low = Some(low);
                input.high = Some(high);
            }
            Measure::Milestone => {}
        }
        input
    }
}

/// Declares the measure's fields on an input struct and the conversions to and from `MeasureInput`.
macro_rules! measure_fields {
    ($(#[$meta:meta])* pub struct $name:ident { $($(#[$fmeta:meta])* pub $field:ident : $ty:ty,)* }) => {
        $(#[$meta])*
        pub struct $name {
            $($(#[$fmeta])* pub $field: $ty,)*
            /// One of `increase-to`, `decrease-to`, `keep-above`, `keep-below`, `within-range`, `milestone`.
            pub kind: String,
            pub start: Option<f64>,
            pub target: Option<f64>,
            pub threshold: Option<f64>,
            pub low: Option<f64>,
            pub high: Option<f64>,
            pub unit: String,
        }

        impl $name {
            pub fn measure(&self) -> $crate::measure::MeasureInput {
                $crate::measure::MeasureInput {
                    kind: self.kind.clone(),
                    start: self.start,
                    target: self.target,
                    threshold: self.threshold,
                    low: self.low,
                    high: self.high,
                    unit: self.unit.clone(),
                }
            }

            pub fn set_measure(&mut self, m: $crate::measure::MeasureInput) {
                self.kind = m.kind;
                self.start = m.start;
                self.target = m.target;
                self.threshold = m.threshold;
                self.low = m.low;
                self.high = m.high;
                self.unit = m.unit;
            }
        }
    };
}
pub(crate) use measure_fields;

fn bool_score(ok: bool) -> f64 {
    if ok { 1.0 } else { 0.0 }
}

/// Formats a plan figure without trailing zeros: 0.35, 12, 1500.
pub fn fmt_number(value: f64) -> String {
    if value.fract() == 0.0 && value.abs() < 1e15 {
        format!("{}", value as i64)
    } else {
        let text = format!("{value:.4}");
        text.trim_end_matches('0').trim_end_matches('.').to_owned()
    }
}

impl MeasureInput {
    /// Checks the figures the chosen kind needs, recording problems under the input's field names.
    pub fn validate_into(&self, checker: &mut Checker) -> Option<Measure> {
        let kind = checker.check("kind", self.kind.parse::<MeasureKind>())?;
        let unit = self.unit.trim().to_owned();
        if unit.chars().count() > 24 {
            checker.fail("unit", "must be at most 24 characters");
        }
        let mut need = |field: &str, value: Option<f64>| match value {
            None => {
                checker.fail(field, format!("is required for a {} measure", kind.as_str()));
                None
            }
            Some(v) => checker.check(field, finite(v)),
        };
        let measure = match kind {
            MeasureKind::IncreaseTo | MeasureKind::DecreaseTo => {
                let start = need("start", self.start);
                let target = need("target", self.target);
                let (start, target) = (start?, target?);
                if kind == MeasureKind::IncreaseTo && target <= start {
                    checker.fail("target", "must be above the start value for an increase");
                    return None;
                }
                if kind == MeasureKind::DecreaseTo && target >= start {
                    checker.fail("target", "must be below the start value for a decrease");
                    return None;
                }
                if kind == MeasureKind::IncreaseTo {
                    Measure::IncreaseTo { start, target, unit }
                } else {
                    Measure::DecreaseTo { start, target, unit }
                }
            }
            MeasureKind::KeepAbove => Measure::KeepAbove { threshold: need("threshold", self.threshold)?, unit },
            MeasureKind::KeepBelow => Measure::KeepBelow { threshold: need("threshold", self.threshold)?, unit },
            MeasureKind::WithinRange => {
                let low = need("low", self.low);
                let high = need("high", self.high);
                let (low, high) = (low?, high?);
                if high <= low {
                    checker.fail("high", "must be above the low end of the range");
                    return None;
                }
                Measure::WithinRange { low, high, unit }
            }
            MeasureKind::Milestone => Measure::Milestone,
        };
        Some(measure)
    }

    pub fn validate(&self) -> Result<Measure, FieldErrors> {
        let mut checker = Checker::new();
        let measure = self.validate_into(&mut checker);
        checker.finish(|| measure)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inc(start: f64, target: f64) -> Measure {
        Measure::IncreaseTo { start, target, unit: "%".into() }
    }

    #[test]
    fn increase_progress_is_linear_and_clamped() {
        let m = inc(20.0, 40.0);
        assert_eq!(m.progress(Some(30.0)).score, 0.5);
        assert_eq!(m.progress(Some(10.0)).score, 0.0);
        assert_eq!(m.progress(Some(55.0)).score, 1.0);
        assert_eq!(m.progress(Some(30.0)).distance, Some(10.0));
    }

    #[test]
    fn decrease_progress_counts_downwards() {
        let m = Measure::DecreaseTo { start: 200.0, target: 0.0, unit: "ms".into() };
        assert_eq!(m.progress(Some(100.0)).score, 0.5);
        assert_eq!(m.progress(Some(250.0)).score, 0.0);
        assert_eq!(m.progress(Some(-5.0)).score, 1.0);
        assert_eq!(m.progress(Some(150.0)).score, 0.25);
    }

    #[test]
    fn thresholds_are_met_or_not_with_a_margin() {
        let above = Measure::KeepAbove { threshold: 0.35, unit: "".into() };
        assert_eq!(above.progress(Some(0.35)).score, 1.0);
        let p = above.progress(Some(0.30));
        assert_eq!(p.score, 0.0);
        assert!((p.distance.unwrap() + 0.05).abs() < 1e-12);
        let below = Measure::KeepBelow { threshold: 300.0, unit: "ms".into() };
        assert_eq!(below.progress(Some(280.0)).score, 1.0);
        assert_eq!(below.progress(Some(280.0)).distance, Some(20.0));
        assert_eq!(below.progress(Some(320.0)).score, 0.0);
    }

    #[test]
    fn ranges_report_which_side_was_missed() {
        let range = Measure::WithinRange { low: 10.0, high: 20.0, unit: "".into() };
        assert_eq!(range.progress(Some(15.0)), Progress { score: 1.0, distance: Some(0.0), has_data: true });
        assert_eq!(range.progress(Some(25.0)).distance, Some(5.0));
        assert_eq!(range.progress(Some(8.0)).distance, Some(-2.0));
        assert_eq!(range.progress(Some(8.0)).score, 0.0);
    }

    #[test]
    fn milestones_are_done_or_not() {
        assert_eq!(Measure::Milestone.progress(Some(1.0)).score, 1.0);
        assert_eq!(Measure::Milestone.progress(Some(0.0)).score, 0.0);
    }

    #[test]
    fn no_data_is_not_a_failure_but_scores_zero() {
        let p = inc(0.0, 1.0).progress(None);
        assert!(!p.has_data);
        assert_eq!(p.score, 0.0);
    }

    #[test]
    fn inputs_need_the_figures_of_their_kind() {
        let input =
            MeasureInput { kind: "increase-to".into(), start: Some(5.0), target: Some(3.0), ..Default::default() };
        let errors = input.validate().unwrap_err();
        assert!(errors.get("target").unwrap()[0].contains("above the start"));

        let input =
            MeasureInput { kind: "decrease-to".into(), start: Some(5.0), target: Some(3.0), ..Default::default() };
        assert!(matches!(input.validate().unwrap(), Measure::DecreaseTo { .. }));

        let input = MeasureInput { kind: "within-range".into(), low: Some(1.0), ..Default::default() };
        assert!(input.validate().unwrap_err().get("high").is_some());

        let input = MeasureInput { kind: "keep-above".into(), ..Default::default() };
        assert_eq!(input.validate().unwrap_err().get("threshold").unwrap()[0], "is required for a keep-above measure");

        let input = MeasureInput { kind: "sideways".into(), ..Default::default() };
        assert!(input.validate().unwrap_err().get("kind").is_some());

        let input = MeasureInput { kind: "keep-below".into(), threshold: Some(f64::NAN), ..Default::default() };
        assert!(input.validate().is_err());
    }

    #[test]
    fn measures_round_trip_through_input() {
        for m in [
            inc(1.0, 2.0),
            Measure::DecreaseTo { start: 9.0, target: 1.0, unit: "h".into() },
            Measure::KeepAbove { threshold: 3.0, unit: "".into() },
            Measure::KeepBelow { threshold: 3.0, unit: "".into() },
            Measure::WithinRange { low: 1.0, high: 2.0, unit: "x".into() },
            Measure::Milestone,
        ] {
            assert_eq!(m.to_input().validate().unwrap(), m);
        }
    }

    #[test]
    fn numbers_format_compactly() {
        assert_eq!(fmt_number(12.0), "12");
        assert_eq!(fmt_number(0.35), "0.35");
        assert_eq!(fmt_number(1.0 / 3.0), "0.3333");
    }
}
