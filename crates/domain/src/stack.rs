//! A product loop's post-training stack: its stages, the iterations derived from lineage, and its
//! metabolism (how fast and how far the loop turns).

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

/// One stage of the post-training stack with its current artefact.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StackStage {
    /// `reward`, `data`, `fine-tuning`, `evals`, `ab`, `observability` or `iteration`.
    pub key: String,
    pub name: String,
    /// What the stage currently holds, in words (empty: nothing yet).
    pub artefact: Option<String>,
    /// `ok`, `running`, `missing`, `alert`, `refused`, … in the stage's terms.
    pub status: String,
    pub last_activity: Option<DateTime<Utc>>,
}

/// One turn of the loop: a model trained by a job on a dataset built from the loop's events, and the
/// promotion gate's decision on it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LoopIteration {
    pub promotion_id: i64,
    pub model_id: i64,
    pub model: String,
    pub dataset_id: i64,
    pub dataset: String,
    pub job_id: Option<i64>,
    /// When the batch this iteration learned from began: the newest event of the loop's previous dataset
    /// of the same kind (the batch's events came after it), or the first event of the loop's first one.
    pub first_event_at: Option<DateTime<Utc>>,
    pub dataset_created_at: DateTime<Utc>,
    pub job_started_at: Option<DateTime<Utc>>,
    pub job_finished_at: Option<DateTime<Utc>>,
    pub evaluated_at: Option<DateTime<Utc>>,
    pub reward: Option<f64>,
    /// The loop's experiment that ran over the iteration, if any.
    pub experiment: Option<String>,
    pub decided_at: DateTime<Utc>,
    /// `promoted` or `refused`.
    pub outcome: String,
    pub reason: String,
    /// The challenger's reward minus the champion's at the decision (none without both).
    pub reward_change: Option<f64>,
    /// Hours from the first event of the batch to the decision.
    pub cycle_hours: Option<f64>,
}

/// One ISO week (from Monday) of the loop's metabolism.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MetabolismWeek {
    pub week: NaiveDate,
    pub iterations: i64,
    pub promoted: i64,
    /// Mean cycle time of the week's iterations, in hours.
    pub cycle_hours: Option<f64>,
    /// Summed reward change of the week's promotions.
    pub lift: Option<f64>,
    /// Annotations (events with a final text) that the week's new datasets added.
    pub annotations: i64,
}

/// How fast and how far the loop turns.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Metabolism {
    pub iterations: i64,
    pub promoted: i64,
    pub mean_cycle_hours: Option<f64>,
    /// Mean reward change per promoted iteration.
    pub lift_per_iteration: Option<f64>,
    /// The current season (the one whose dates hold today), whose weeks the chart shows; without one,
    /// every week with activity.
    pub season: Option<String>,
    /// Iterations per week of the current season so far (none without a current season).
    pub iterations_per_week: Option<f64>,
    pub weeks: Vec<MetabolismWeek>,
    /// How annotation volume is counted.
    pub annotation_method: String,
}

/// A loop's post-training stack, iterations (newest first) and metabolism.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LoopStack {
    #[serde(rename = "loop")]
    pub loop_key: String,
    pub stages: Vec<StackStage>,
    pub iterations: Vec<LoopIteration>,
    pub metabolism: Metabolism,
}

/// What the demo's traffic simulator is doing, for the banner that labels its traffic as simulated and
/// for `GET /api/v1/simulator`. Without a simulator it is `{"running": false}`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SimulatorStatus {
    pub running: bool,
    /// Suggestions the simulated clinicians ask for per minute, over all loops.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suggestions_per_minute: Option<f64>,
    /// The largest share of time the simulator's own training and eval jobs may take (the cap on the heavy
    /// part of its CPU use; its traffic is capped by its rate).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duty: Option<f64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub loops: Vec<SimulatedLoop>,
}

/// The simulator's work in one loop.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SimulatedLoop {
    #[serde(rename = "loop")]
    pub loop_key: String,
    /// What the simulated clinicians write, in words.
    pub scenario: String,
    /// `waiting`, `bootstrapping`, `collecting`, `training`, `evaluating`, `experimenting`,
    /// `promoting`, `resting` or `stalled`.
    pub phase: String,
    pub suggestions_served: u64,
    /// Characters of the served suggestions that the simulated clinicians kept, over all served.
    pub chars_accepted: u64,
    pub chars_suggested: u64,
    /// Iterations the simulator finished (a challenger trained, tested and put to the gate).
    pub iterations: u64,
    pub promoted: u64,
    pub last_action: String,
    pub last_action_at: Option<DateTime<Utc>>,
}
