//! Experiments (A/B tests on a loop's variants) and the drift alerts recorded from drift checks.

use chrono::{DateTime, NaiveDate, Utc};

use slope_domain::*;

use crate::{Result, Store, StoreError, on_db};

#[derive(sqlx::FromRow)]
struct ExperimentRow {
    id: i64,
    org_id: i64,
    key: String,
    name: String,
    loop_key: String,
    control: String,
    treatment: String,
    starts_on: NaiveDate,
    ends_on: NaiveDate,
    expected_share: f64,
    created_at: DateTime<Utc>,
    stopped_at: Option<DateTime<Utc>>,
    control_model_id: Option<i64>,
    treatment_model_id: Option<i64>,
}

impl From<ExperimentRow> for Experiment {
    fn from(r: ExperimentRow) -> Self {
        Experiment {
            id: r.id,
            org_id: OrgId(r.org_id),
            key: r.key,
            name: r.name,
            loop_key: r.loop_key,
            control: r.control,
            treatment: r.treatment,
            starts_on: r.starts_on,
            ends_on: r.ends_on,
            expected_share: r.expected_share,
            created_at: r.created_at,
            control_model_id: r.control_model_id,
            treatment_model_id: r.treatment_model_id,
            stopped_at: r.stopped_at,
        }
    }
}

#[derive(sqlx::FromRow)]
struct DriftAlertRow {
    id: i64,
    loop_key: String,
    field: String,
    reference_start: NaiveDate,
    reference_end: NaiveDate,
    current_start: NaiveDate,
    current_end: NaiveDate,
    psi: f64,
    js_distance: f64,
    band: String,
    created_at: DateTime<Utc>,
}

impl From<DriftAlertRow> for DriftAlert {
    fn from(r: DriftAlertRow) -> Self {
        DriftAlert {
            id: r.id,
            loop_key: r.loop_key,
            field: r.field,
            reference_start: r.reference_start,
            reference_end: r.reference_end,
            current_start: r.current_start,
            current_end: r.current_end,
            psi: r.psi,
            js_distance: r.js_distance,
            band: r.band,
            created_at: r.created_at,
        }
    }
}

impl Store {
    // ---- experiments and drift alerts -----------------------------------------------------------

    pub async fn create_experiment(&self, org: OrgId, spec: &ExperimentSpec) -> Result<Experiment> {
        let now = Utc::now();
        let row: std::result::Result<ExperimentRow, StoreError> = on_db!(self, db => sqlx::query_as(
            "INSERT INTO experiments (org_id, key, name, loop_key, control, treatment, starts_on, ends_on, expected_share, created_at,
             control_model_id, treatment_model_id)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) RETURNING *")
            .bind(org.0).bind(spec.key.as_str()).bind(spec.name.as_str()).bind(spec.loop_key.as_str()).bind(&spec.control)
            .bind(&spec.treatment).bind(spec.dates.start).bind(spec.dates.end).bind(spec.expected_share).bind(now)
            .bind(spec.control_model).bind(spec.treatment_model)
            .fetch_one(db).await.map_err(StoreError::from));
        match row {
            Ok(row) => Ok(row.into()),
            Err(e) if e.is_unique_violation() => {
                Err(StoreError::Rejected(FieldErrors::single("key", format!("{} is already an experiment", spec.key))))
            }
            Err(e) => Err(e),
        }
    }

    pub async fn experiment(&self, org: OrgId, key: &str) -> Result<Option<Experiment>> {
        let row: Option<ExperimentRow> = on_db!(self, db => sqlx::query_as("SELECT * FROM experiments WHERE org_id = $1 AND key = $2")
            .bind(org.0).bind(key).fetch_optional(db).await?);
        Ok(row.map(Into::into))
    }

    /// Stops an experiment at `at`. `None` when the organisation has no such experiment or it was
    /// stopped before (the first stop is kept; the caller reads the experiment to tell which).
    pub async fn stop_experiment(&self, org: OrgId, key: &str, at: DateTime<Utc>) -> Result<Option<Experiment>> {
        let row: Option<ExperimentRow> = on_db!(self, db => sqlx::query_as(
            "UPDATE experiments SET stopped_at = $3 WHERE org_id = $1 AND key = $2 AND stopped_at IS NULL RETURNING *")
            .bind(org.0).bind(key).bind(at).fetch_optional(db).await?);
        Ok(row.map(Into::into))
    }

    pub async fn list_experiments(&self, org: OrgId) -> Result<Vec<Experiment>> {
        let rows: Vec<ExperimentRow> = on_db!(self, db => sqlx::query_as(
            "SELECT * FROM experiments WHERE org_id = $1 ORDER BY starts_on DESC, key")
            .bind(org.0).fetch_all(db).await?);
        Ok(rows.into_iter().map(Into::into).collect())
    }

    pub async fn record_drift_alert(&self, org: OrgId, alert: &DriftAlert) -> Result<DriftAlert> {
        let row: DriftAlertRow = on_db!(self, db => sqlx::query_as(
            "INSERT INTO drift_alerts (org_id, loop_key, field, reference_start, reference_end, current_start, current_end,
             psi, js_distance, band, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
             RETURNING id, loop_key, field, reference_start, reference_end, current_start, current_end, psi, js_distance, band, created_at")
            .bind(org.0).bind(&alert.loop_key).bind(&alert.field).bind(alert.reference_start).bind(alert.reference_end)
            .bind(alert.current_start).bind(alert.current_end).bind(alert.psi).bind(alert.js_distance).bind(&alert.band)
            .bind(alert.created_at).fetch_one(db).await?);
        Ok(row.into())
    }

    pub async fn list_drift_alerts(&self, org: OrgId, limit: i64) -> Result<Vec<DriftAlert>> {
        let rows: Vec<DriftAlertRow> = on_db!(self, db => sqlx::query_as(
            "SELECT id, loop_key, field, reference_start, reference_end, current_start, current_end, psi, js_distance, band, created_at
             FROM drift_alerts WHERE org_id = $1 ORDER BY created_at DESC, id DESC LIMIT $2")
            .bind(org.0).bind(limit).fetch_all(db).await?);
        Ok(rows.into_iter().map(Into::into).collect())
    }
}
