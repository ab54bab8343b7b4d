//! Read models: what a page or an API response shows about one entity, assembled by the service layer.

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::access::AuditRecord;
use crate::calibration::Calibration;
use crate::checkin::CheckIn;
use crate::forecast::Forecast;
use crate::measure::Measure;
use crate::measure::Progress;
use crate::metric::{MetricDefinition, MetricFeed, MetricPoint, MetricProblem};
use crate::objective::{KeyResult, Objective};
use crate::projection::Outcome;
use crate::rollup::SquadGoalNode;
use crate::season::Season;
use crate::slope::{Share, SlopeReport};
use crate::squad::{Squad, SquadGoal};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SeasonSummary {
    pub season: Season,
    pub score: f64,
    pub expectation: f64,
    pub objectives: usize,
    pub key_results: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct KeyResultDetail {
    pub key_result: KeyResult,
    pub objective: Objective,
    pub season: Season,
    pub progress: Progress,
    pub expectation: f64,
    pub goals: Vec<SquadGoalNode>,
    /// Newest first.
    pub check_ins: Vec<CheckIn>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SquadGoalDetail {
    pub goal: SquadGoal,
    pub squad: Squad,
    pub key_result: KeyResult,
    pub season: Season,
    pub progress: Progress,
    /// Newest first.
    pub check_ins: Vec<CheckIn>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SquadColumn {
    pub squad: Squad,
    pub goals: Vec<SquadGoalNode>,
    /// The most person-weeks the squad's goals ask for at the same time (see `peak_load`), to set against
    /// its capacity per cycle.
    pub peak_load: f64,
    pub share: Option<Share>,
}

/// The squad board of one season: every squad with its goals and slope share.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SquadBoard {
    pub season: Option<Season>,
    /// Every season, for choosing another board.
    pub seasons: Vec<Season>,
    pub columns: Vec<SquadColumn>,
    pub slope: Option<SlopeReport>,
}

/// A metric with its current version's series, for charts and the API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MetricSeries {
    pub metric: MetricDefinition,
    /// Oldest bucket first.
    pub points: Vec<MetricPoint>,
    /// Whether the newest data is older than the metric's freshness limit (or there is none).
    pub stale: bool,
    /// Why the newest computation left a bucket without a point (a lifetime value fit that did not
    /// converge); what the metric feeds then keeps its last value and goes stale.
    #[serde(default)]
    pub problem: Option<MetricProblem>,
}

impl MetricSeries {
    /// The series of `metric` made of `points` (oldest bucket first), flagged stale as of `now` by the
    /// same rule that flags a key result's metric feed.
    pub fn new(metric: MetricDefinition, points: Vec<MetricPoint>, now: DateTime<Utc>) -> MetricSeries {
        let feed = MetricFeed {
            key: metric.key.clone(),
            observed_at: points.last().map(|p| p.observed_at),
            freshness_hours: metric.freshness_hours,
        };
        MetricSeries { stale: feed.is_stale(now), metric, points, problem: None }
    }

    /// The same series with the note of its newest computation.
    pub fn with_problem(self, problem: Option<MetricProblem>) -> MetricSeries {
        MetricSeries { problem, ..self }
    }
}

/// One squad goal on its squad's dashboard: the key result it ladders to, the linked metric's series and
/// the forecast of the goal's measure (else the key result's) at the goal's end date.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DashboardGoal {
    pub goal: SquadGoal,
    pub key_result: KeyResult,
    /// The measure forecast: the goal's when it has a target, else the key result's.
    pub measure: Measure,
    /// The goal's metric, else the key result's; `None` when neither is fed by a metric.
    pub series: Option<MetricSeries>,
    /// `None` without a metric, with too few points for a trend, or once the goal has ended.
    pub forecast: Option<Forecast>,
    /// The goal's outcome once its end date has passed: the last reading by then, met or not.
    pub outcome: Option<Outcome>,
}

/// A squad's dashboard for one season.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SquadDashboard {
    pub squad: Squad,
    pub season: Option<Season>,
    /// The day the dashboard was assembled, for the "today" marker.
    pub today: NaiveDate,
    pub goals: Vec<DashboardGoal>,
    /// How well the check-ins' confidence foretold the season's ended key results this squad's goals
    /// ladder to; `None` without a season.
    pub calibration: Option<Calibration>,
}

/// An audit trail as a page shows it: what it covers and the records, newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditView {
    pub scope: String,
    pub records: Vec<AuditRecord>,
}

#[cfg(test)]
mod tests {
    use chrono::Duration;

    use super::*;
    use crate::entities::OrgId;
    use crate::metric::{Granularity, MetricKind};

    #[test]
    fn a_series_is_stale_past_its_metric_freshness_limit_or_without_points() {
        let now: DateTime<Utc> = "2027-01-10T12:00:00Z".parse().unwrap();
        let metric = MetricDefinition {
            id: 1,
            org_id: OrgId(1),
            key: "eval.f1".into(),
            version: 1,
            name: "F1".into(),
            kind: MetricKind::EvalScore,
            loop_key: None,
            variant: None,
            unit: None,
            granularity: Granularity::Day,
            window_days: None,
            freshness_hours: 24,
            created_at: now,
        };
        let point = |observed_at: DateTime<Utc>| MetricPoint {
            bucket: observed_at.date_naive(),
            value: 0.7,
            n: None,
            ci_low: None,
            ci_high: None,
            observed_at,
            computed_at: observed_at,
        };
        assert!(MetricSeries::new(metric.clone(), vec![], now).stale, "no data is stale data");
        // Only the newest point counts: an old bucket first does not make a fresh series stale.
        let fresh = vec![point(now - Duration::days(5)), point(now - Duration::hours(23))];
        let series = MetricSeries::new(metric.clone(), fresh.clone(), now);
        assert!(!series.stale);
        assert_eq!((series.metric, series.points), (metric.clone(), fresh));
        assert!(MetricSeries::new(metric, vec![point(now - Duration::hours(25))], now).stale);
    }
}
