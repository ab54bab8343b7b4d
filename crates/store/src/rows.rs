//! Row shapes as stored, and their conversion into domain values. Conversions fail with
//! `StoreError::Corrupt` rather than panic: a hand-edited database must not bring the server down.

use chrono::{DateTime, NaiveDate, Utc};
use sqlx::types::Json;

use slope_domain::*;

use crate::StoreError;

#[derive(sqlx::FromRow)]
pub(crate) struct SeasonRow {
    id: i64,
    key: Option<String>,
    org_id: i64,
    name: String,
    thesis: String,
    problems: Json<Vec<String>>,
    winning: String,
    starts_on: NaiveDate,
    ends_on: NaiveDate,
    status: String,
    slope_target: f64,
    retrospective: Option<String>,
    version: i64,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl TryFrom<SeasonRow> for Season {
    type Error = StoreError;
    fn try_from(r: SeasonRow) -> Result<Self, StoreError> {
        Ok(Season {
            id: SeasonId(r.id),
            key: r.key.unwrap_or_else(|| format!("season-{}", r.id)),
            org_id: OrgId(r.org_id),
            name: r.name,
            thesis: r.thesis,
            problems: r.problems.0,
            winning: r.winning,
            starts_on: r.starts_on,
            ends_on: r.ends_on,
            status: r.status.parse().map_err(StoreError::corrupt)?,
            slope_target: r.slope_target,
            retrospective: r.retrospective,
            version: Version(r.version),
            created_at: r.created_at,
            updated_at: r.updated_at,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct ObjectiveRow {
    id: i64,
    key: Option<String>,
    org_id: i64,
    season_id: i64,
    quarter: String,
    title: String,
    description: Option<String>,
    commitment: String,
    owner: Option<String>,
    weight: f64,
    version: i64,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl TryFrom<ObjectiveRow> for Objective {
    type Error = StoreError;
    fn try_from(r: ObjectiveRow) -> Result<Self, StoreError> {
        Ok(Objective {
            id: ObjectiveId(r.id),
            key: r.key.unwrap_or_else(|| format!("objective-{}", r.id)),
            org_id: OrgId(r.org_id),
            season_id: SeasonId(r.season_id),
            quarter: r.quarter.parse().map_err(StoreError::corrupt)?,
            title: r.title,
            description: r.description,
            commitment: r.commitment.parse().map_err(StoreError::corrupt)?,
            owner: r.owner,
            weight: r.weight,
            version: Version(r.version),
            created_at: r.created_at,
            updated_at: r.updated_at,
        })
    }
}

/// The measure's columns, shared by key results and squad goals.
#[derive(sqlx::FromRow)]
pub(crate) struct MeasureCols {
    pub kind: String,
    pub start_value: Option<f64>,
    pub target_value: Option<f64>,
    pub threshold: Option<f64>,
    pub low_value: Option<f64>,
    pub high_value: Option<f64>,
    pub unit: String,
}

impl MeasureCols {
    pub fn from_measure(m: &Measure) -> Self {
        let input = m.to_input();
        MeasureCols {
            kind: input.kind,
            start_value: input.start,
            target_value: input.target,
            threshold: input.threshold,
            low_value: input.low,
            high_value: input.high,
            unit: input.unit,
        }
    }

    fn into_measure(self) -> Result<Measure, StoreError> {
        MeasureInput {
            kind: self.kind,
            start: self.start_value,
            target: self.target_value,
            threshold: self.threshold,
            low: self.low_value,
            high: self.high_value,
            unit: self.unit,
        }
        .validate()
        .map_err(StoreError::corrupt)
    }
}

/// The metric link of a key result or squad goal, as copied onto its row when the metric feeds it.
#[derive(sqlx::FromRow)]
pub(crate) struct FeedCols {
    metric_key: Option<String>,
    metric_observed_at: Option<DateTime<Utc>>,
    metric_freshness_hours: Option<i64>,
}

impl FeedCols {
    fn into_feed(self) -> Option<MetricFeed> {
        let key = self.metric_key?;
        // Linked but never fed (the metric has no point yet): stale from the start.
        Some(MetricFeed {
            key,
            observed_at: self.metric_observed_at,
            freshness_hours: self.metric_freshness_hours.unwrap_or(0),
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct KeyResultRow {
    pub(crate) id: i64,
    key: Option<String>,
    org_id: i64,
    objective_id: i64,
    title: String,
    #[sqlx(flatten)]
    measure: MeasureCols,
    current_value: Option<f64>,
    weight: f64,
    confidence: Option<f64>,
    #[sqlx(flatten)]
    feed: FeedCols,
    version: i64,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl TryFrom<KeyResultRow> for KeyResult {
    type Error = StoreError;
    fn try_from(r: KeyResultRow) -> Result<Self, StoreError> {
        Ok(KeyResult {
            id: KeyResultId(r.id),
            key: r.key.unwrap_or_else(|| format!("kr-{}", r.id)),
            org_id: OrgId(r.org_id),
            objective_id: ObjectiveId(r.objective_id),
            title: r.title,
            measure: r.measure.into_measure()?,
            current: r.current_value,
            weight: r.weight,
            confidence: r.confidence,
            metric: r.feed.into_feed(),
            version: Version(r.version),
            created_at: r.created_at,
            updated_at: r.updated_at,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct SquadRow {
    id: i64,
    key: Option<String>,
    org_id: i64,
    name: String,
    unit: String,
    capacity: f64,
    version: i64,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl TryFrom<SquadRow> for Squad {
    type Error = StoreError;
    fn try_from(r: SquadRow) -> Result<Self, StoreError> {
        Ok(Squad {
            id: SquadId(r.id),
            key: r.key.unwrap_or_else(|| format!("squad-{}", r.id)),
            org_id: OrgId(r.org_id),
            name: r.name,
            unit: r.unit,
            capacity: r.capacity,
            version: Version(r.version),
            created_at: r.created_at,
            updated_at: r.updated_at,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct SquadGoalRow {
    pub(crate) id: i64,
    key: Option<String>,
    org_id: i64,
    squad_id: i64,
    key_result_id: i64,
    title: String,
    starts_on: NaiveDate,
    ends_on: NaiveDate,
    investment: String,
    challenges: Option<String>,
    kill_criteria: Option<String>,
    planned_capacity: f64,
    status: String,
    #[sqlx(flatten)]
    measure: MeasureCols,
    current_value: Option<f64>,
    confidence: Option<f64>,
    #[sqlx(flatten)]
    feed: FeedCols,
    version: i64,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl TryFrom<SquadGoalRow> for SquadGoal {
    type Error = StoreError;
    fn try_from(r: SquadGoalRow) -> Result<Self, StoreError> {
        Ok(SquadGoal {
            id: SquadGoalId(r.id),
            key: r.key.unwrap_or_else(|| format!("goal-{}", r.id)),
            org_id: OrgId(r.org_id),
            squad_id: SquadId(r.squad_id),
            key_result_id: KeyResultId(r.key_result_id),
            title: r.title,
            starts_on: r.starts_on,
            ends_on: r.ends_on,
            investment: r.investment.parse().map_err(StoreError::corrupt)?,
            challenges: r.challenges,
            kill_criteria: r.kill_criteria,
            planned_capacity: r.planned_capacity,
            status: r.status.parse().map_err(StoreError::corrupt)?,
            measure: r.measure.into_measure()?,
            current: r.current_value,
            metric: r.feed.into_feed(),
            confidence: r.confidence,
            version: Version(r.version),
            created_at: r.created_at,
            updated_at: r.updated_at,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct CheckInRow {
    id: i64,
    org_id: i64,
    subject_kind: String,
    subject_id: i64,
    value: f64,
    confidence: Option<f64>,
    note: Option<String>,
    author: String,
    recorded_at: DateTime<Utc>,
}

impl TryFrom<CheckInRow> for CheckIn {
    type Error = StoreError;
    fn try_from(r: CheckInRow) -> Result<Self, StoreError> {
        Ok(CheckIn {
            id: CheckInId(r.id),
            org_id: OrgId(r.org_id),
            subject_kind: r.subject_kind.parse().map_err(StoreError::corrupt)?,
            subject_id: r.subject_id,
            value: r.value,
            confidence: r.confidence,
            note: r.note,
            author: r.author,
            recorded_at: r.recorded_at,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct RevisionRow {
    pub entity: String,
    pub entity_id: i64,
    pub data: Json<serde_json::Value>,
}

pub(crate) fn convert_all<R, T>(rows: Vec<R>) -> Result<Vec<T>, StoreError>
where
    T: TryFrom<R, Error = StoreError>,
{
    rows.into_iter().map(T::try_from).collect()
}
