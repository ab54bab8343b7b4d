//! Metric definitions, their series, and the link that lets a metric feed a key result or squad goal.
//!
//! A definition is versioned: changing how a metric is computed creates a new version with its own
//! series, so a chart never mixes values computed two different ways.

use chrono::{DateTime, Datelike, Duration, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::entities::{OrgId, string_enum};
use crate::errors::FieldErrors;
use crate::newtypes::{Checker, Title, parse_date};

string_enum!(
    /// How a metric's points come to be: the first three are computed from a loop's interaction
    /// events, `ltv` from the organisation's transactions, the last two are pushed by the eval runner
    /// or another system.
    MetricKind {
        AcceptanceRate => "acceptance-rate",
        ActiveUsers => "active-users",
        Retention => "retention",
        Ltv => "ltv",
        EvalScore => "eval-score",
        Custom => "custom",
    }
);

impl MetricKind {
    /// Whether Slope computes the series from a loop's ingested interaction events.
    pub fn from_events(self) -> bool {
        matches!(self, MetricKind::AcceptanceRate | MetricKind::ActiveUsers | MetricKind::Retention)
    }

    /// Whether Slope computes the series itself (from events or transactions); otherwise points are
    /// pushed.
    pub fn computed(self) -> bool {
        self.from_events() || self == MetricKind::Ltv
    }

    pub fn label(self) -> &'static str {
        match self {
            MetricKind::AcceptanceRate => "character acceptance rate",
            MetricKind::ActiveUsers => "active users",
            MetricKind::Retention => "week-1 retention of each weekly cohort",
            MetricKind::Ltv => "expected customer value over the next 52 weeks (BG/NBD and Gamma-Gamma)",
            MetricKind::EvalScore => "eval score (pushed by the runner)",
            MetricKind::Custom => "custom (pushed)",
        }
    }
}

string_enum!(
    /// The width of one point of a series. Weeks are ISO weeks, labelled by their Monday.
    Granularity { Day => "day", Week => "week" }
);

impl Granularity {
    /// The first day of the bucket holding `day`.
    pub fn bucket_of(self, day: NaiveDate) -> NaiveDate {
        match self {
            Granularity::Day => day,
            Granularity::Week => day - Duration::days(day.weekday().num_days_from_monday() as i64),
        }
    }

    pub fn days(self) -> i64 {
        match self {
            Granularity::Day => 1,
            Granularity::Week => 7,
        }
    }
}

/// A key naming a loop or a metric in URLs, files and the CLI: 1–64 characters of lowercase letters,
/// digits, `-`, `_` and `.`, starting with a letter or digit.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Key(String);

impl Key {
    pub fn parse(raw: &str) -> Result<Key, String> {
        let raw = raw.trim();
        let allowed = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.');
        if raw.is_empty() {
            return Err("is required".into());
        }
        if raw.len() > 64 {
            return Err(format!("must be at most 64 characters, not {}", raw.len()));
        }
        if !raw.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit()) || !raw.chars().all(allowed) {
            return Err(format!(
                "must use lowercase letters, digits, '-', '_' and '.', starting with a letter or digit, not {raw:?}"
            ));
        }
        Ok(Key(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// A key made from a title (`"Ship agents, v2"` → `ship-agents-v2`), for entities created without
    /// one: lowercase ASCII letters and digits, every other run of characters one '-', at most 48
    /// characters so a uniqueness suffix still fits.
    pub fn from_title(title: &str) -> Key {
        let mut key = String::new();
        for c in title.chars().flat_map(char::to_lowercase) {
            if c.is_ascii_lowercase() || c.is_ascii_digit() {
                key.push(c);
            } else if !key.is_empty() && !key.ends_with('-') {
                key.push('-');
            }
            if key.len() >= 48 {
                break;
            }
        }
        let key = key.trim_end_matches('-');
        Key(if key.is_empty() { "x".to_owned() } else { key.to_owned() })
    }
}

impl std::fmt::Display for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The longest freshness limit: a metric quiet for more than a year is not feeding anything.
pub const MAX_FRESHNESS_HOURS: i64 = 24 * 366;
/// The longest rolling window of a computed metric.
pub const MAX_WINDOW_DAYS: i64 = 90;

/// Why a computed metric's bucket has no point: the computation ran and could not give one (a
/// lifetime value fit that did not converge, too few repeat customers).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MetricProblem {
    pub bucket: NaiveDate,
    pub message: String,
    pub recorded_at: DateTime<Utc>,
}

/// A metric definition as a form or a JSON body carries it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(default)]
pub struct MetricInput {
    pub key: String,
    pub name: String,
    pub kind: String,
    /// The loop whose events are counted; required for computed kinds.
    #[serde(rename = "loop")]
    pub loop_key: String,
    /// Only events of this variant (empty: all variants).
    pub variant: String,
    /// Only events of this organisation unit (empty: all units).
    pub unit: String,
    pub granularity: String,
    /// A trailing window in days over which each point is computed (empty: the bucket itself).
    pub window_days: Option<i64>,
    /// How old the newest data may be before whatever the metric feeds is flagged stale.
    pub freshness_hours: Option<i64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct MetricSpec {
    pub key: Key,
    pub name: Title,
    pub kind: MetricKind,
    pub loop_key: Option<Key>,
    pub variant: Option<String>,
    pub unit: Option<String>,
    pub granularity: Granularity,
    pub window_days: Option<i64>,
    pub freshness_hours: i64,
}

impl MetricInput {
    pub fn validate(&self) -> Result<MetricSpec, FieldErrors> {
        let mut c = Checker::new();
        let key = c.check("key", Key::parse(&self.key));
        let name = c.check("name", Title::parse(&self.name));
        let kind = c.check("kind", self.kind.parse::<MetricKind>());
        let granularity = if self.granularity.trim().is_empty() {
            Some(match kind {
                Some(MetricKind::Retention | MetricKind::Ltv) => Granularity::Week,
                _ => Granularity::Day,
            })
        } else {
            c.check("granularity", self.granularity.parse::<Granularity>())
        };
        let loop_key = match (kind, self.loop_key.trim()) {
            (Some(k), "") if k.from_events() => {
                c.fail("loop", format!("is required: a {} is computed from a loop's events", k.label()));
                None
            }
            (_, "") => Some(None),
            (Some(MetricKind::Ltv), _) => {
                c.fail("loop", "must be empty: lifetime value is computed from the organisation's transactions");
                None
            }
            (_, raw) => c.check("loop", Key::parse(raw).map(Some)),
        };
        if kind == Some(MetricKind::Retention) && granularity == Some(Granularity::Day) {
            c.fail("granularity", "retention is measured per weekly cohort: use week");
        }
        // Customers are summarised in weeks, and a refit a day would chase noise.
        if kind == Some(MetricKind::Ltv) && granularity == Some(Granularity::Day) {
            c.fail("granularity", "lifetime value is refitted once a week: use week");
        }
        // Transactions carry a unit but no variant yet, so an LTV cannot be cut by variant.
        if kind == Some(MetricKind::Ltv) && !self.variant.trim().is_empty() {
            c.fail("variant", "lifetime value can be cut by unit, not yet by variant");
        }
        let window_days = match self.window_days {
            None => Some(None),
            Some(_)
                if matches!(
                    kind,
                    Some(MetricKind::Retention | MetricKind::Ltv | MetricKind::EvalScore | MetricKind::Custom)
                ) =>
            {
                c.fail("window_days", "applies only to acceptance-rate and active-users metrics");
                None
            }
            Some(days) if (1..=MAX_WINDOW_DAYS).contains(&days) => Some(Some(days)),
            Some(days) => {
                c.fail("window_days", format!("must be between 1 and {MAX_WINDOW_DAYS} days, not {days}"));
                None
            }
        };
        let freshness_hours = match self.freshness_hours {
            None => Some(if granularity == Some(Granularity::Week) { 24 * 8 } else { 48 }),
            Some(hours) if (1..=MAX_FRESHNESS_HOURS).contains(&hours) => Some(hours),
            Some(hours) => {
                c.fail("freshness_hours", format!("must be between 1 and {MAX_FRESHNESS_HOURS} hours, not {hours}"));
                None
            }
        };
        let text = |raw: &str| Some(raw.trim()).filter(|t| !t.is_empty()).map(str::to_owned);
        c.finish(|| {
            Some(MetricSpec {
                key: key?,
                name: name?,
                kind: kind?,
                loop_key: loop_key?,
                variant: text(&self.variant),
                unit: text(&self.unit),
                granularity: granularity?,
                window_days: window_days?,
                freshness_hours: freshness_hours?,
            })
        })
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MetricDefinition {
    pub id: i64,
    pub org_id: OrgId,
    pub key: String,
    pub version: i64,
    pub name: String,
    pub kind: MetricKind,
    #[serde(rename = "loop")]
    pub loop_key: Option<String>,
    pub variant: Option<String>,
    pub unit: Option<String>,
    pub granularity: Granularity,
    pub window_days: Option<i64>,
    pub freshness_hours: i64,
    pub created_at: DateTime<Utc>,
}

impl MetricDefinition {
    pub fn to_input(&self) -> MetricInput {
        MetricInput {
            key: self.key.clone(),
            name: self.name.clone(),
            kind: self.kind.to_string(),
            loop_key: self.loop_key.clone().unwrap_or_default(),
            variant: self.variant.clone().unwrap_or_default(),
            unit: self.unit.clone().unwrap_or_default(),
            granularity: self.granularity.to_string(),
            window_days: self.window_days,
            freshness_hours: Some(self.freshness_hours),
        }
    }

    /// The buckets whose value depends on events of `day`: the day's own bucket, and with a trailing
    /// window every later bucket whose window reaches back to it.
    pub fn buckets_touched_by(&self, day: NaiveDate) -> Vec<NaiveDate> {
        let first = self.granularity.bucket_of(day);
        // A bucket's window ends on its last day and reaches `window_days` back, so the last bucket whose
        // window holds `day` is the one starting `window_days − days per bucket` days later.
        let reach = self.window_days.unwrap_or(0) - self.granularity.days();
        let last = self.granularity.bucket_of(day + Duration::days(reach.max(0)));
        let mut buckets = vec![];
        let mut bucket = first;
        while bucket <= last {
            buckets.push(bucket);
            bucket += Duration::days(self.granularity.days());
        }
        buckets
    }

    /// The days of events a bucket's value is computed from, both ends included.
    pub fn window_of(&self, bucket: NaiveDate) -> (NaiveDate, NaiveDate) {
        let end = bucket + Duration::days(self.granularity.days() - 1);
        match self.window_days {
            Some(days) => (end - Duration::days(days - 1), end),
            None => (bucket, end),
        }
    }
}

/// One point of a materialised series.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MetricPoint {
    /// The first day of the bucket.
    pub bucket: NaiveDate,
    pub value: f64,
    /// The sample size behind the value (users for acceptance and retention), when it has one.
    pub n: Option<i64>,
    pub ci_low: Option<f64>,
    pub ci_high: Option<f64>,
    /// The time of the newest data behind the point.
    pub observed_at: DateTime<Utc>,
    pub computed_at: DateTime<Utc>,
}

/// A point pushed by another system (`POST /api/v1/metrics/{key}/points`), before validation.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(default)]
pub struct PointInput {
    /// When the value was observed (RFC 3339); its bucket follows from the metric's granularity.
    pub at: String,
    pub value: Option<f64>,
    pub n: Option<i64>,
    pub ci_low: Option<f64>,
    pub ci_high: Option<f64>,
}

impl PointInput {
    /// Checks a pushed point against the metric it is pushed to.
    pub fn validate(&self, metric: &MetricDefinition, now: DateTime<Utc>) -> Result<MetricPoint, FieldErrors> {
        let mut c = Checker::new();
        let at = if self.at.trim().is_empty() {
            Some(now)
        } else {
            match DateTime::parse_from_rfc3339(self.at.trim()) {
                Ok(at) if at.with_timezone(&Utc) > now + Duration::minutes(5) => {
                    c.fail("at", "is in the future");
                    None
                }
                Ok(at) => Some(at.with_timezone(&Utc)),
                Err(_) => {
                    c.fail("at", format!("must be an RFC 3339 time such as 2027-01-31T09:30:00Z, not {:?}", self.at));
                    None
                }
            }
        };
        let value = match self.value {
            None => {
                c.fail("value", "is required");
                None
            }
            Some(v) if !v.is_finite() => {
                c.fail("value", "must be a finite number");
                None
            }
            Some(v) => Some(v),
        };
        if let Some(n) = self.n
            && n < 0
        {
            c.fail("n", format!("must be ≥ 0, not {n}"));
        }
        match (self.ci_low, self.ci_high, value) {
            (Some(lo), Some(hi), Some(v)) if !(lo <= v && v <= hi) => {
                c.fail("ci_low", format!("the interval [{lo}, {hi}] must contain the value {v}"));
            }
            (Some(_), None, _) => c.fail("ci_high", "is required with ci_low"),
            (None, Some(_), _) => c.fail("ci_low", "is required with ci_high"),
            _ => {}
        }
        if metric.kind.computed() {
            c.fail(
                "metric",
                format!("{} is computed from events of its loop; points cannot be pushed to it", metric.key),
            );
        }
        c.finish(|| {
            let at = at?;
            Some(MetricPoint {
                bucket: metric.granularity.bucket_of(at.date_naive()),
                value: value?,
                n: self.n,
                ci_low: self.ci_low,
                ci_high: self.ci_high,
                observed_at: at,
                computed_at: now,
            })
        })
    }
}

/// What a key result or squad goal knows of the metric feeding it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MetricFeed {
    pub key: String,
    /// The newest data behind the latest point; `None` while the metric has no point.
    pub observed_at: Option<DateTime<Utc>>,
    pub freshness_hours: i64,
}

impl MetricFeed {
    /// Stale when the newest data is older than the metric's freshness limit, or there is none.
    pub fn is_stale(&self, now: DateTime<Utc>) -> bool {
        match self.observed_at {
            None => true,
            Some(at) => now - at > Duration::hours(self.freshness_hours),
        }
    }
}

/// Parses the optional metric key of a key result or squad goal form.
pub fn parse_metric_link(c: &mut Checker, raw: &str) -> Option<Option<Key>> {
    if raw.trim().is_empty() { Some(None) } else { c.check("metric", Key::parse(raw).map(Some)) }
}

/// Parses a date in a query string or a form.
pub fn parse_day(field: &str, raw: &str) -> Result<NaiveDate, FieldErrors> {
    parse_date(raw).map_err(|m| FieldErrors::single(field, m))
}

#[cfg(test)]
mod tests {
    #[test]
    fn keys_made_from_titles_are_valid_keys() {
        assert_eq!(Key::from_title("Ship agents!").as_str(), "ship-agents");
        assert_eq!(Key::from_title("  --Clinicians' trust (Q1)-- ").as_str(), "clinicians-trust-q1");
        assert_eq!(
            Key::from_title("Élan vital").as_str(),
            "lan-vital",
            "non-ASCII letters separate, as keys are ASCII"
        );
        assert_eq!(Key::from_title("!!!").as_str(), "x");
        let long = Key::from_title(&"word ".repeat(30));
        assert!(long.as_str().len() <= 48 && !long.as_str().ends_with('-'), "{long}");
        for title in ["Ship agents!", "Élan vital", "", "a.b_c", &"word ".repeat(30), "ÅÄÖ 123"] {
            let key = Key::from_title(title);
            assert_eq!(Key::parse(key.as_str()), Ok(key.clone()), "{title:?}");
        }
    }

    use super::*;

    fn definition(granularity: Granularity, window_days: Option<i64>) -> MetricDefinition {
        MetricDefinition {
            id: 1,
            org_id: OrgId(1),
            key: "acceptance".into(),
            version: 1,
            name: "Acceptance".into(),
            kind: MetricKind::AcceptanceRate,
            loop_key: Some("notes".into()),
            variant: None,
            unit: None,
            granularity,
            window_days,
            freshness_hours: 48,
            created_at: Utc::now(),
        }
    }

    fn day(raw: &str) -> NaiveDate {
        parse_date(raw).unwrap()
    }

    #[test]
    fn keys_are_url_safe_slugs() {
        assert!(Key::parse("notes-v2.draft_1").is_ok());
        for bad in ["", "Notes", "-x", "a b", "é", &"x".repeat(65)] {
            assert!(Key::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn computed_metrics_need_a_loop_and_sensible_options() {
        let input = MetricInput {
            key: "acceptance".into(),
            name: "Acceptance rate".into(),
            kind: "acceptance-rate".into(),
            ..Default::default()
        };
        let err = input.validate().unwrap_err();
        assert_eq!(err.0.keys().collect::<Vec<_>>(), ["loop"]);
        let ok = MetricInput { loop_key: "notes".into(), ..input.clone() }.validate().unwrap();
        assert_eq!((ok.granularity, ok.freshness_hours, ok.window_days), (Granularity::Day, 48, None));

        let bad = MetricInput {
            kind: "retention".into(),
            loop_key: "notes".into(),
            granularity: "day".into(),
            window_days: Some(7),
            freshness_hours: Some(0),
            ..input
        };
        let err = bad.validate().unwrap_err();
        assert_eq!(err.0.keys().collect::<Vec<_>>(), ["freshness_hours", "granularity", "window_days"]);
        let pushed =
            MetricInput { key: "eval.f1".into(), name: "F1".into(), kind: "eval-score".into(), ..Default::default() };
        assert_eq!(pushed.validate().unwrap().loop_key, None);
    }

    #[test]
    fn lifetime_value_is_weekly_from_transactions_and_cut_by_unit_only() {
        let input =
            MetricInput { key: "ltv".into(), name: "Customer LTV".into(), kind: "ltv".into(), ..Default::default() };
        let ok = input.validate().unwrap();
        assert_eq!((ok.kind, ok.granularity, ok.loop_key.clone()), (MetricKind::Ltv, Granularity::Week, None));
        assert!(ok.kind.computed() && !ok.kind.from_events());
        let clinical = MetricInput { unit: "Clinical".into(), ..input.clone() }.validate().unwrap();
        assert_eq!(clinical.unit.as_deref(), Some("Clinical"));
        let bad = MetricInput {
            loop_key: "notes".into(),
            variant: "B".into(),
            granularity: "day".into(),
            window_days: Some(7),
            ..input
        };
        let err = bad.validate().unwrap_err();
        assert_eq!(err.0.keys().collect::<Vec<_>>(), ["granularity", "loop", "variant", "window_days"]);
    }

    #[test]
    fn a_batch_touches_its_bucket_and_the_windows_reaching_back_to_it() {
        let daily = definition(Granularity::Day, None);
        assert_eq!(daily.buckets_touched_by(day("2027-01-06")), [day("2027-01-06")]);
        let rolling = definition(Granularity::Day, Some(3));
        assert_eq!(
            rolling.buckets_touched_by(day("2027-01-06")),
            [day("2027-01-06"), day("2027-01-07"), day("2027-01-08")]
        );
        assert_eq!(rolling.window_of(day("2027-01-08")), (day("2027-01-06"), day("2027-01-08")));
        let weekly = definition(Granularity::Week, None);
        assert_eq!(weekly.buckets_touched_by(day("2027-01-06")), [day("2027-01-04")], "4 January 2027 is a Monday");
        assert_eq!(weekly.window_of(day("2027-01-04")), (day("2027-01-04"), day("2027-01-10")));
        let weekly_28 = definition(Granularity::Week, Some(28));
        assert_eq!(weekly_28.buckets_touched_by(day("2027-01-06")).len(), 4);
        assert_eq!(weekly_28.window_of(day("2027-01-04")), (day("2026-12-14"), day("2027-01-10")));
    }

    #[test]
    fn pushed_points_are_checked_and_bucketed() {
        let mut metric = definition(Granularity::Week, None);
        metric.kind = MetricKind::EvalScore;
        let now = DateTime::parse_from_rfc3339("2027-01-08T12:00:00Z").unwrap().with_timezone(&Utc);
        let point = PointInput { at: "2027-01-06T10:00:00Z".into(), value: Some(0.8), ..Default::default() };
        assert_eq!(point.validate(&metric, now).unwrap().bucket, day("2027-01-04"));
        let bad = PointInput {
            at: "2027-02-01T00:00:00Z".into(),
            value: Some(0.8),
            n: Some(-1),
            ci_low: Some(0.85),
            ci_high: Some(0.9),
        };
        let err = bad.validate(&metric, now).unwrap_err();
        assert_eq!(err.0.keys().collect::<Vec<_>>(), ["at", "ci_low", "n"]);
        metric.kind = MetricKind::AcceptanceRate;
        assert!(point.validate(&metric, now).unwrap_err().get("metric").is_some());
        metric.kind = MetricKind::Ltv;
        assert!(point.validate(&metric, now).unwrap_err().get("metric").is_some(), "LTV is computed, not pushed");
    }

    #[test]
    fn feeds_go_stale_after_their_freshness_limit() {
        let now = Utc::now();
        let feed = MetricFeed { key: "a".into(), observed_at: Some(now - Duration::hours(47)), freshness_hours: 48 };
        assert!(!feed.is_stale(now));
        assert!(feed.is_stale(now + Duration::hours(2)));
        assert!(MetricFeed { observed_at: None, ..feed }.is_stale(now));
    }
}
