//! Read models of the loops pages: the overview of every loop and metric, and the page of one loop.
//!
//! Times arrive as text in the form the pages print them. The service layer fills these models from the
//! store's and the metrics engine's types, which this crate must not depend on.

use serde::{Deserialize, Serialize};

use crate::experiment::DriftAlert;
use crate::metric::MetricDefinition;
use crate::views::MetricSeries;

/// One row of the loops overview.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoopRow {
    pub key: String,
    pub events: i64,
    pub segments: i64,
    pub first_event: String,
    pub last_event: String,
}

/// Every loop, every metric with its series, and recent drift alerts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoopsOverview {
    pub loops: Vec<LoopRow>,
    pub metrics: Vec<MetricSeries>,
    pub alerts: Vec<DriftAlert>,
}

/// Acceptance of one variant on one day.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AcceptanceRow {
    pub variant: String,
    pub day: String,
    pub value: f64,
    pub ci_low: Option<f64>,
    pub ci_high: Option<f64>,
    pub users: u64,
}

/// A weekly cohort: its Monday, size and the share active in each following week.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CohortRow {
    pub week: String,
    pub size: u64,
    pub shares: Vec<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchRow {
    pub id: i64,
    pub rows: i64,
    pub stored: i64,
    pub duplicates: i64,
    pub received_at: String,
}

/// What the page of one loop shows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoopView {
    pub key: String,
    pub summary: Option<LoopRow>,
    pub method: String,
    pub acceptance: Vec<AcceptanceRow>,
    pub cohorts: Vec<CohortRow>,
    pub metrics: Vec<MetricDefinition>,
    pub batches: Vec<BatchRow>,
}
