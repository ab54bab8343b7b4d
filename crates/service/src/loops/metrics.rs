//! Metric definitions, their series and the points other systems push.

use chrono::Utc;

use slope_domain::*;

use super::Loops;
use crate::{Result, ServiceError};

impl Loops {
    // ---- metric definitions and points ---------------------------------------------------------

    pub async fn list_metrics(&self, actor: &Actor) -> Result<Vec<MetricDefinition>> {
        let org = actor.authorize(Action::Read)?;
        Ok(self.store.list_metrics(org).await?)
    }

    pub async fn metric(&self, actor: &Actor, key: &str) -> Result<MetricDefinition> {
        self.metric_in(actor.authorize(Action::Read)?, key).await
    }

    pub(super) async fn metric_in(&self, org: OrgId, key: &str) -> Result<MetricDefinition> {
        self.store
            .metric(org, key)
            .await?
            .ok_or_else(|| ServiceError::NotFound(format!("no metric has the key {key:?}")))
    }

    /// Creates a metric and computes its series from the events already stored.
    pub async fn create_metric(&self, actor: &Actor, input: &MetricInput) -> Result<MetricDefinition> {
        let org = actor.authorize(Action::Operate)?;
        let spec = input.validate()?;
        let metric = self.store.create_metric(org, &spec).await?;
        self.recompute_in(org, &metric.key).await?;
        Ok(metric)
    }

    /// Adds a version of a metric (its earlier series stays with the earlier version) and computes it.
    pub async fn update_metric(
        &self,
        actor: &Actor,
        key: &str,
        version: i64,
        input: &MetricInput,
    ) -> Result<MetricDefinition> {
        let org = actor.authorize(Action::Operate)?;
        let spec = input.validate()?;
        let metric = self.store.update_metric(org, key, version, &spec).await?;
        self.recompute_in(org, &metric.key).await?;
        Ok(metric)
    }

    /// The current version's series and whether it is stale now.
    pub async fn series(&self, actor: &Actor, key: &str) -> Result<MetricSeries> {
        self.series_in(actor.authorize(Action::Read)?, key).await
    }

    pub(super) async fn series_in(&self, org: OrgId, key: &str) -> Result<MetricSeries> {
        let metric = self.metric_in(org, key).await?;
        let points = self.store.series(org, key, metric.version).await?;
        let problem = self.store.metric_problem(org, key, metric.version).await?;
        Ok(MetricSeries::new(metric, points, Utc::now()).with_problem(problem))
    }

    /// Stores points pushed by another system (the eval runner, a warehouse job). All or nothing: any
    /// invalid point refuses the request, naming it as `points[i].field`.
    pub async fn push_points(&self, actor: &Actor, key: &str, inputs: &[PointInput]) -> Result<MetricSeries> {
        let org = actor.authorize(Action::Ingest)?;
        let metric = self.metric_in(org, key).await?;
        if inputs.is_empty() {
            return Err(FieldErrors::single("points", "must hold at least one point").into());
        }
        let now = Utc::now();
        let mut errors = FieldErrors::new();
        let mut points = vec![];
        for (i, input) in inputs.iter().enumerate() {
            match input.validate(&metric, now) {
                Ok(point) => points.push(point),
                Err(found) => {
                    for (field, messages) in found.0 {
                        for m in messages {
                            errors.add(&format!("points[{i}].{field}"), m);
                        }
                    }
                }
            }
        }
        let points = errors.into_result(points)?;
        self.store.write_points(org, &metric, &points, None).await?;
        self.series_in(org, key).await
    }
}
