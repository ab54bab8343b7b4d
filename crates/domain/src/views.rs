//! Read models: what a page or an API response shows about one entity, assembled by the service layer.

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use crate::checkin::CheckIn;
use crate::forecast::Forecast;
use crate::measure::Measure;
use crate::measure::Progress;
use crate::metric::{MetricDefinition, MetricPoint};
use crate::objective::{KeyResult, Objective};
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
    /// `None` without a metric or with too few points for a trend.
    pub forecast: Option<Forecast>,
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
}
