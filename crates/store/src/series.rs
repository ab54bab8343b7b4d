//! Every metric's current series at once, for the pages that chart all of an organisation's metrics:
//! two reads whatever the number of metrics, where one [`Store::series`] per metric would be one read
//! per chart.

use std::collections::HashMap;

use slope_domain::*;

use crate::metrics::PointRow;
use crate::{Result, Store, on_db};

/// A point with the metric version it belongs to: the columns [`Store::series`] reads, plus the two
/// that tell one series from another in a read of many.
#[derive(sqlx::FromRow)]
struct VersionedPointRow {
    metric_key: String,
    version: i64,
    #[sqlx(flatten)]
    point: PointRow,
}

impl Store {
    /// The current definition of every metric, by key, each with its version's series, oldest bucket
    /// first: what [`Store::list_metrics`] and then [`Store::series`] of each metric's version return.
    ///
    /// The points are read first and each series is matched to its definition by key and version, so a
    /// series never holds points of another version than its definition's. A metric that gains a
    /// version between the two reads comes back as that new version with no points yet, which is what
    /// any reader sees of a new version until its series has been computed.
    pub async fn all_series(&self, org: OrgId) -> Result<Vec<(MetricDefinition, Vec<MetricPoint>)>> {
        let rows: Vec<VersionedPointRow> = on_db!(self, db => sqlx::query_as(
            "SELECT p.metric_key, p.version, p.bucket, p.value, p.n, p.ci_low, p.ci_high, p.observed_at, p.computed_at
             FROM metric_points p
             JOIN (SELECT key, MAX(version) AS version FROM metric_definitions WHERE org_id = $1 GROUP BY key) c
             ON c.key = p.metric_key AND c.version = p.version
             WHERE p.org_id = $1 ORDER BY p.metric_key, p.bucket")
            .bind(org.0).fetch_all(db).await?);
        let mut points: HashMap<(String, i64), Vec<MetricPoint>> = HashMap::new();
        for row in rows {
            points.entry((row.metric_key, row.version)).or_default().push(row.point.into());
        }
        let metrics = self.list_metrics(org).await?;
        Ok(metrics
            .into_iter()
            .map(|metric| {
                let series = points.remove(&(metric.key.clone(), metric.version)).unwrap_or_default();
                (metric, series)
            })
            .collect())
    }
}
