//! Small validated values. Each has one constructor that checks its rule and names the field in the
//! message, so a value of these types is valid by construction.

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use crate::errors::FieldErrors;

/// Collects the errors of a whole input so that a form shows every problem at once, not the first one.
#[derive(Debug, Default)]
pub struct Checker {
    pub errors: FieldErrors,
}

impl Checker {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn fail(&mut self, field: &str, message: impl Into<String>) {
        self.errors.add(field, message);
    }

    /// Runs a newtype constructor and keeps its error under `field`.
    pub fn check<T>(&mut self, field: &str, result: Result<T, String>) -> Option<T> {
        match result {
            Ok(value) => Some(value),
            Err(message) => {
                self.fail(field, message);
                None
            }
        }
    }

    pub fn date(&mut self, field: &str, raw: &str) -> Option<NaiveDate> {
        self.check(field, parse_date(raw))
    }

    /// Parses a number typed into a form. Empty input is `None` without an error; use `required_number`
    /// where a value must be given.
    pub fn optional_number(&mut self, field: &str, raw: &str) -> Option<Option<f64>> {
        let raw = raw.trim();
        if raw.is_empty() {
            return Some(None);
        }
        self.check(field, parse_number(raw)).map(Some)
    }

    /// Parses a whole number typed into a form, like [`Checker::optional_number`] (so `1,200` reads as
    /// 1200); a fraction is an error under `field`.
    pub fn optional_whole(&mut self, field: &str, raw: &str) -> Option<Option<i64>> {
        match self.optional_number(field, raw)? {
            None => Some(None),
            Some(v) if v.fract() == 0.0 && v.abs() < 9.0e15 => Some(Some(v as i64)),
            Some(_) => {
                self.fail(field, "must be a whole number");
                None
            }
        }
    }

    pub fn required_number(&mut self, field: &str, raw: &str) -> Option<f64> {
        match self.optional_number(field, raw) {
            Some(Some(value)) => Some(value),
            Some(None) => {
                self.fail(field, "is required");
                None
            }
            None => None,
        }
    }

    pub fn finish<T>(self, build: impl FnOnce() -> Option<T>) -> Result<T, FieldErrors> {
        if !self.errors.is_empty() {
            return Err(self.errors);
        }
        // Every `None` in `build` comes from a failed check, so reaching here with `None` means a parser
        // forgot to record why; report it rather than panic.
        build().ok_or_else(|| FieldErrors::single("input", "is invalid"))
    }
}

pub fn parse_date(raw: &str) -> Result<NaiveDate, String> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Err("is required".into());
    }
    NaiveDate::parse_from_str(raw, "%Y-%m-%d").map_err(|_| format!("must be a date like 2027-01-31, not {raw:?}"))
}

/// The moment that "as known on `day`" means: the end of that day in UTC, so that everything recorded
/// on the day counts. The UI and the API read a plan as of a date through this one rule.
///
/// ```
/// let day = slope_domain::parse_date("2027-02-01").unwrap();
/// assert_eq!(slope_domain::end_of_day(day).to_rfc3339(), "2027-02-01T23:59:59.999+00:00");
/// ```
pub fn end_of_day(day: NaiveDate) -> chrono::DateTime<chrono::Utc> {
    day.and_hms_milli_opt(23, 59, 59, 999).expect("valid time").and_utc()
}

pub fn parse_number(raw: &str) -> Result<f64, String> {
    let cleaned = raw.trim().replace(['_', ','], "");
    match cleaned.parse::<f64>() {
        Ok(value) if value.is_finite() => Ok(value),
        _ => Err(format!("must be a number, not {:?}", raw.trim())),
    }
}

/// A finite number, as all plan figures must be: NaN or infinity would poison every roll-up.
pub fn finite(value: f64) -> Result<f64, String> {
    if value.is_finite() { Ok(value) } else { Err("must be a finite number".into()) }
}

macro_rules! text_newtype {
    ($(#[$doc:meta])* $name:ident, $max:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            pub const MAX_CHARS: usize = $max;

            pub fn parse(raw: &str) -> Result<Self, String> {
                let trimmed = raw.trim();
                if trimmed.is_empty() {
                    return Err("is required".into());
                }
                let chars = trimmed.chars().count();
                if chars > Self::MAX_CHARS {
                    return Err(format!("must be at most {} characters (it has {chars})", Self::MAX_CHARS));
                }
                Ok(Self(trimmed.to_owned()))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = String;
            fn try_from(value: String) -> Result<Self, String> {
                Self::parse(&value)
            }
        }

        impl From<$name> for String {
            fn from(value: $name) -> String {
                value.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

text_newtype!(
    /// A short single-line label: names and titles.
    Title,
    200
);
text_newtype!(
    /// Free prose: a thesis, a description, a belief, a retrospective.
    Prose,
    10_000
);

/// Optional prose: empty input means "not given".
pub fn optional_prose(raw: &str) -> Result<Option<Prose>, String> {
    if raw.trim().is_empty() { Ok(None) } else { Prose::parse(raw).map(Some) }
}

/// A relative weight in a weighted mean: strictly positive.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "f64", into = "f64")]
pub struct Weight(f64);

impl Weight {
    pub fn parse(value: f64) -> Result<Self, String> {
        let value = finite(value)?;
        if value > 0.0 { Ok(Self(value)) } else { Err("must be greater than 0".into()) }
    }
    pub fn get(self) -> f64 {
        self.0
    }
}

/// A probability-like confidence that a target will be met, 0 to 1.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "f64", into = "f64")]
pub struct Confidence(f64);

impl Confidence {
    pub fn parse(value: f64) -> Result<Self, String> {
        let value = finite(value)?;
        if (0.0..=1.0).contains(&value) { Ok(Self(value)) } else { Err("must be between 0 and 1".into()) }
    }
    pub fn get(self) -> f64 {
        self.0
    }
}

/// Capacity in person-weeks. Zero is allowed for a squad that is being formed, never negative.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "f64", into = "f64")]
pub struct PersonWeeks(f64);

impl PersonWeeks {
    pub fn parse(value: f64) -> Result<Self, String> {
        let value = finite(value)?;
        if value >= 0.0 { Ok(Self(value)) } else { Err("must not be negative".into()) }
    }
    /// Planned work must cost something, or it could not move a slope share.
    pub fn parse_positive(value: f64) -> Result<Self, String> {
        let value = finite(value)?;
        if value > 0.0 { Ok(Self(value)) } else { Err("must be greater than 0 person-weeks".into()) }
    }
    pub fn get(self) -> f64 {
        self.0
    }
}

macro_rules! impl_into_f64 {
    ($($name:ident),*) => {$(
        impl TryFrom<f64> for $name {
            type Error = String;
            fn try_from(value: f64) -> Result<Self, String> {
                Self::parse(value)
            }
        }
        impl From<$name> for f64 {
            fn from(value: $name) -> f64 {
                value.0
            }
        }
    )*};
}
impl_into_f64!(Weight, Confidence, PersonWeeks);

/// An inclusive range of calendar days with `start < end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DateRange {
    pub start: NaiveDate,
    pub end: NaiveDate,
}

impl DateRange {
    pub fn new(start: NaiveDate, end: NaiveDate) -> Result<Self, String> {
        if start < end { Ok(Self { start, end }) } else { Err("must be after the start date".into()) }
    }

    /// Both ends are inclusive: a season ending on the 31st and one starting on the 31st overlap.
    pub fn overlaps(&self, other: &DateRange) -> bool {
        self.start <= other.end && other.start <= self.end
    }

    pub fn contains_range(&self, other: &DateRange) -> bool {
        self.start <= other.start && other.end <= self.end
    }

    /// The number of days from start to end, as people count a span ("4 weeks" from Monday to Monday).
    pub fn days(&self) -> i64 {
        (self.end - self.start).num_days()
    }

    /// Days shared by both ranges, counting both ends; 0 when they do not overlap.
    pub fn overlap_days(&self, other: &DateRange) -> i64 {
        let start = self.start.max(other.start);
        let end = self.end.min(other.end);
        if start > end { 0 } else { (end - start).num_days() + 1 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn titles_are_trimmed_and_bounded() {
        assert_eq!(Title::parse("  Agents  ").unwrap().as_str(), "Agents");
        assert_eq!(Title::parse("   ").unwrap_err(), "is required");
        assert!(Title::parse(&"x".repeat(201)).unwrap_err().contains("at most 200"));
        assert!(Title::parse(&"é".repeat(200)).is_ok(), "the limit counts characters, not bytes");
    }

    #[test]
    fn numbers_reject_nan_and_accept_separators() {
        assert_eq!(parse_number("1_000.5").unwrap(), 1000.5);
        assert_eq!(parse_number(" 2,500 ").unwrap(), 2500.0);
        assert!(parse_number("NaN").is_err());
        assert!(parse_number("inf").is_err());
        assert!(parse_number("ten").unwrap_err().contains("\"ten\""));
    }

    #[test]
    fn weights_confidence_and_capacity_have_their_ranges() {
        assert!(Weight::parse(0.0).is_err());
        assert!(Weight::parse(0.5).is_ok());
        assert!(Confidence::parse(1.01).is_err());
        assert!(Confidence::parse(-0.01).is_err());
        assert!(Confidence::parse(0.0).is_ok());
        assert!(PersonWeeks::parse(0.0).is_ok());
        assert!(PersonWeeks::parse_positive(0.0).is_err());
        assert!(PersonWeeks::parse(-1.0).is_err());
    }

    #[test]
    fn date_ranges_overlap_inclusively() {
        let d = |s: &str| parse_date(s).unwrap();
        let a = DateRange::new(d("2027-01-01"), d("2027-03-31")).unwrap();
        let b = DateRange::new(d("2027-03-31"), d("2027-06-30")).unwrap();
        let c = DateRange::new(d("2027-04-01"), d("2027-06-30")).unwrap();
        assert!(a.overlaps(&b));
        assert!(!a.overlaps(&c));
        assert_eq!(a.overlap_days(&b), 1);
        assert_eq!(a.overlap_days(&c), 0);
        assert!(DateRange::new(d("2027-01-02"), d("2027-01-01")).is_err());
        assert!(DateRange::new(d("2027-01-01"), d("2027-01-01")).is_err());
    }

    #[test]
    fn dates_name_the_expected_format() {
        assert!(parse_date("31/01/2027").unwrap_err().contains("2027-01-31"));
        assert_eq!(parse_date("").unwrap_err(), "is required");
    }
}
