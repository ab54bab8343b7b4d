//! Loop metrics: the manifest of event segments and the batches that wrote them, metric definitions
//! and their materialised series (experiments and drift alerts are in `experiments.rs`, recording a batch
//! and recomputing what it touches in `batches.rs`).
//!
//! Events themselves live in Parquet segments outside the database (the service writes them); the
//! database decides which segments exist. A batch's segment becomes visible in the same transaction
//! that records the batch, so a reader never sees half a batch and a retry never finds half of one.

use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;

use slope_domain::*;

use crate::plan::{feed_linked, lock_org};
use crate::{Result, Store, StoreError, in_tx, on_db};

/// A batch about to be recorded.
#[derive(Debug, Clone)]
pub struct NewBatch<'a> {
    pub loop_key: &'a str,
    pub idempotency_key: Option<&'a str>,
    pub content_hash: &'a str,
    pub rows: i64,
    /// The time range of the batch's events; `None` for an empty batch.
    pub range: Option<(DateTime<Utc>, DateTime<Utc>)>,
}

/// A recorded batch: what the client is told, now and on every retry.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BatchRecord {
    #[sqlx(rename = "id")]
    pub batch_id: i64,
    #[serde(rename = "loop")]
    pub loop_key: String,
    pub rows: i64,
    /// Events stored by this batch: rows less the duplicates of events already stored.
    pub stored: i64,
    pub duplicates: i64,
    pub min_ts: Option<DateTime<Utc>>,
    pub max_ts: Option<DateTime<Utc>>,
    pub received_at: DateTime<Utc>,
    /// True when this answer repeats the acknowledgement of an earlier identical request.
    #[sqlx(skip)]
    pub replayed: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct SegmentRow {
    pub id: i64,
    pub org_id: i64,
    pub loop_key: String,
    pub path: String,
    pub rows: i64,
    pub bytes: i64,
    pub min_ts: DateTime<Utc>,
    pub max_ts: DateTime<Utc>,
    pub materialized: bool,
    pub created_at: DateTime<Utc>,
}

/// A segment file already written durably, to be entered in the manifest.
#[derive(Debug, Clone)]
pub struct NewSegment {
    pub path: String,
    pub rows: i64,
    pub bytes: i64,
    pub min_ts: DateTime<Utc>,
    pub max_ts: DateTime<Utc>,
}

/// A loop's stored events at a glance.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LoopSummary {
    #[serde(rename = "loop")]
    pub loop_key: String,
    pub segments: i64,
    pub events: i64,
    pub first_event: DateTime<Utc>,
    pub last_event: DateTime<Utc>,
}

#[derive(sqlx::FromRow)]
struct DefinitionRow {
    id: i64,
    org_id: i64,
    key: String,
    version: i64,
    name: String,
    kind: String,
    loop_key: Option<String>,
    variant: Option<String>,
    unit_filter: Option<String>,
    granularity: String,
    window_days: Option<i64>,
    freshness_hours: i64,
    created_at: DateTime<Utc>,
}

impl TryFrom<DefinitionRow> for MetricDefinition {
    type Error = StoreError;
    fn try_from(r: DefinitionRow) -> Result<Self> {
        Ok(MetricDefinition {
            id: r.id,
            org_id: OrgId(r.org_id),
            key: r.key,
            version: r.version,
            name: r.name,
            kind: r.kind.parse().map_err(StoreError::corrupt)?,
            loop_key: r.loop_key,
            variant: r.variant,
            unit: r.unit_filter,
            granularity: r.granularity.parse().map_err(StoreError::corrupt)?,
            window_days: r.window_days,
            freshness_hours: r.freshness_hours,
            created_at: r.created_at,
        })
    }
}

/// The columns of one stored point, as every read of a series selects them.
#[derive(sqlx::FromRow)]
pub(crate) struct PointRow {
    bucket: NaiveDate,
    value: f64,
    n: Option<i64>,
    ci_low: Option<f64>,
    ci_high: Option<f64>,
    observed_at: DateTime<Utc>,
    computed_at: DateTime<Utc>,
}

impl From<PointRow> for MetricPoint {
    fn from(r: PointRow) -> Self {
        MetricPoint {
            bucket: r.bucket,
            value: r.value,
            n: r.n,
            ci_low: r.ci_low,
            ci_high: r.ci_high,
            observed_at: r.observed_at,
            computed_at: r.computed_at,
        }
    }
}

/// A batch with the content hash its idempotency key was first used for.
#[derive(sqlx::FromRow)]
pub(crate) struct KeyedBatch {
    #[sqlx(flatten)]
    pub(crate) record: BatchRecord,
    pub(crate) content_hash: String,
}

pub(crate) const BATCH_COLUMNS: &str = "id, loop_key, rows, stored, duplicates, min_ts, max_ts, received_at";

/// Points of one metric version to write, and the bucket range they replace (points there that are not
/// among them are removed).
#[derive(Debug, Clone)]
pub struct PointsWrite {
    pub metric: MetricDefinition,
    pub points: Vec<MetricPoint>,
    pub replace: Option<(NaiveDate, NaiveDate)>,
    /// What to note about a bucket the computation could not fill.
    pub problem: ProblemWrite,
}

/// The note a computation leaves about its metric version, written with its points.
#[derive(Debug, Clone, PartialEq)]
pub enum ProblemWrite {
    /// Leaves any earlier note (computations that cannot fail for a bucket).
    Unchanged,
    /// The computation filled every bucket it was asked for: an earlier note no longer holds.
    Clear,
    /// A bucket had no point, and why.
    Record { bucket: NaiveDate, message: String, at: DateTime<Utc> },
}

/// Writes a [`ProblemWrite`] inside a transaction.
macro_rules! write_problem {
    ($tx:expr, $org:expr, $metric:expr, $problem:expr) => {{
        let metric: &MetricDefinition = $metric;
        match $problem {
            $crate::metrics::ProblemWrite::Unchanged => {}
            $crate::metrics::ProblemWrite::Clear => {
                sqlx::query("DELETE FROM metric_problems WHERE org_id = $1 AND metric_key = $2 AND version = $3")
                    .bind($org.0)
                    .bind(&metric.key)
                    .bind(metric.version)
                    .execute(&mut *$tx)
                    .await?;
            }
            $crate::metrics::ProblemWrite::Record { bucket, message, at } => {
                sqlx::query(
                    "INSERT INTO metric_problems (org_id, metric_key, version, bucket, message, recorded_at)
                     VALUES ($1, $2, $3, $4, $5, $6)
                     ON CONFLICT (org_id, metric_key, version) DO UPDATE SET bucket = excluded.bucket,
                     message = excluded.message, recorded_at = excluded.recorded_at",
                )
                .bind($org.0)
                .bind(&metric.key)
                .bind(metric.version)
                .bind(*bucket)
                .bind(message.as_str())
                .bind(*at)
                .execute(&mut *$tx)
                .await?;
            }
        }
    }};
}
pub(crate) use write_problem;

/// Writes points inside a transaction that holds the organisation's lock, then feeds what the metric
/// is linked to.
macro_rules! upsert_points {
    ($tx:expr, $org:expr, $metric:expr, $points:expr, $replace:expr) => {{
        let metric: &MetricDefinition = $metric;
        if let Some((from, to)) = $replace {
            sqlx::query(
                "DELETE FROM metric_points WHERE org_id = $1 AND metric_key = $2 AND version = $3 AND bucket >= $4 AND bucket <= $5",
            )
            .bind($org.0)
            .bind(&metric.key)
            .bind(metric.version)
            .bind(from)
            .bind(to)
            .execute(&mut *$tx)
            .await?;
        }
        for p in $points.iter() {
            sqlx::query(
                "INSERT INTO metric_points (org_id, metric_key, version, bucket, value, n, ci_low, ci_high, observed_at, computed_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
                 ON CONFLICT (org_id, metric_key, version, bucket) DO UPDATE SET value = excluded.value, n = excluded.n,
                 ci_low = excluded.ci_low, ci_high = excluded.ci_high, observed_at = excluded.observed_at,
                 computed_at = excluded.computed_at",
            )
            .bind($org.0)
            .bind(&metric.key)
            .bind(metric.version)
            .bind(p.bucket)
            .bind(p.value)
            .bind(p.n)
            .bind(p.ci_low)
            .bind(p.ci_high)
            .bind(p.observed_at)
            .bind(p.computed_at)
            .execute(&mut *$tx)
            .await?;
        }
        feed_linked!($tx, $org, metric.key.as_str());
    }};
}

/// The lookup behind [`Store::find_batch`], on any executor: the pool, or a transaction that must not
/// wait for a second connection while it holds the organisation's lock.
macro_rules! lookup_batch {
    ($exec:expr, $org:expr, $batch:expr) => {{
        let by_key: Option<(BatchRecord, String)> = match $batch.idempotency_key {
            None => None,
            Some(key) => {
                let query = format!(
                    "SELECT {BATCH_COLUMNS}, content_hash FROM event_batches WHERE org_id = $1 AND loop_key = $2 AND idempotency_key = $3"
                );
                let row: Option<KeyedBatch> =
                    sqlx::query_as(&query).bind($org.0).bind($batch.loop_key).bind(key).fetch_optional(&mut *$exec).await?;
                row.map(|k| (BatchRecord { replayed: true, ..k.record }, k.content_hash))
            }
        };
        let query = format!("SELECT {BATCH_COLUMNS} FROM event_batches WHERE org_id = $1 AND loop_key = $2 AND content_hash = $3");
        let by_hash: Option<BatchRecord> = sqlx::query_as(&query)
            .bind($org.0)
            .bind($batch.loop_key)
            .bind($batch.content_hash)
            .fetch_optional(&mut *$exec)
            .await?;
        match by_key {
            Some((_, hash)) if hash != $batch.content_hash => Err(StoreError::Rejected(FieldErrors::single(
                "Idempotency-Key",
                "was already used for a different batch; use a new key for new content",
            ))),
            Some((record, _)) => Ok(Some(record)),
            None => Ok(by_hash.map(|b| BatchRecord { replayed: true, ..b })),
        }
    }};
}

pub(crate) use lookup_batch;
pub(crate) use upsert_points;

impl Store {
    // ---- ingestion -----------------------------------------------------------------------------

    /// The earlier batch that a request repeats, if any: the same idempotency key, or without a key the
    /// same content. A key reused for different content is refused rather than silently replayed.
    pub async fn find_batch(&self, org: OrgId, batch: &NewBatch<'_>) -> Result<Option<BatchRecord>> {
        on_db!(self, db => {
            let mut conn = db.acquire().await?;
            lookup_batch!(conn, org, batch)
        })
    }

    /// Live segments of a loop, optionally only those overlapping `[from, to]`, oldest first.
    pub async fn live_segments(
        &self,
        org: OrgId,
        loop_key: &str,
        range: Option<(DateTime<Utc>, DateTime<Utc>)>,
    ) -> Result<Vec<SegmentRow>> {
        let (from, to) = range.map_or((None, None), |(f, t)| (Some(f), Some(t)));
        Ok(on_db!(self, db => sqlx::query_as(
            "SELECT * FROM event_segments WHERE org_id = $1 AND loop_key = $2 AND retired_at IS NULL
             AND ($4 IS NULL OR min_ts <= $4) AND ($3 IS NULL OR max_ts >= $3) ORDER BY id")
            .bind(org.0).bind(loop_key).bind(from).bind(to).fetch_all(db).await?))
    }

    /// Segments whose metric buckets have not been recomputed yet, across organisations.
    pub async fn unmaterialized_segments(&self) -> Result<Vec<SegmentRow>> {
        Ok(on_db!(self, db => sqlx::query_as(
            "SELECT * FROM event_segments WHERE materialized = $1 AND retired_at IS NULL ORDER BY id")
            .bind(false).fetch_all(db).await?))
    }

    pub async fn mark_materialized(&self, ids: &[i64]) -> Result<()> {
        on_db!(self, db => {
            for id in ids {
                sqlx::query("UPDATE event_segments SET materialized = $2 WHERE id = $1").bind(id).bind(true).execute(db).await?;
            }
        });
        Ok(())
    }

    /// Replaces `old` segments of a loop by one compacted segment holding the same events. The old rows
    /// are retired, not deleted, so a reader that listed them a moment ago can still open their files.
    pub async fn replace_segments(&self, org: OrgId, loop_key: &str, old: &[i64], new: &NewSegment) -> Result<()> {
        let now = Utc::now();
        in_tx!(self, tx => {
            for id in old {
                let retired = sqlx::query(
                    "UPDATE event_segments SET retired_at = $3 WHERE org_id = $1 AND id = $2 AND retired_at IS NULL")
                    .bind(org.0).bind(id).bind(now).execute(&mut *tx).await?;
                if retired.rows_affected() == 0 {
                    // Another compaction got there first; this one's output must not double the events.
                    return Err(StoreError::Conflict { entity: "segment", id: *id, expected: 0, actual: 1 });
                }
            }
            sqlx::query(
                "INSERT INTO event_segments (org_id, loop_key, path, rows, bytes, min_ts, max_ts, materialized, created_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)")
                .bind(org.0).bind(loop_key).bind(&new.path).bind(new.rows).bind(new.bytes)
                // Compaction may drop copies of an event stored twice under two times, so the merged
                // segment's buckets are recomputed like a new batch's.
                .bind(new.min_ts).bind(new.max_ts).bind(false).bind(now)
                .execute(&mut *tx).await?;
            Ok(())
        })
    }

    /// Segments retired before `before`: their files can go.
    pub async fn retired_segments(&self, before: DateTime<Utc>) -> Result<Vec<SegmentRow>> {
        Ok(on_db!(self, db => sqlx::query_as(
            "SELECT id, org_id, loop_key, path, rows, bytes, min_ts, max_ts, materialized, created_at
             FROM event_segments WHERE retired_at IS NOT NULL AND retired_at < $1")
            .bind(before).fetch_all(db).await?))
    }

    /// Whether the manifest names a segment at `path` (live or retired).
    pub async fn segment_listed(&self, path: &str) -> Result<bool> {
        let found: Option<i64> = on_db!(self, db => sqlx::query_scalar("SELECT id FROM event_segments WHERE path = $1")
            .bind(path).fetch_optional(db).await?);
        Ok(found.is_some())
    }

    pub async fn forget_segment(&self, id: i64) -> Result<()> {
        on_db!(self, db => sqlx::query("DELETE FROM event_segments WHERE id = $1 AND retired_at IS NOT NULL")
            .bind(id).execute(db).await.map(|_| ())?);
        Ok(())
    }

    /// Every loop with stored events. Reserved streams (keys starting with `_`, such as transactions)
    /// are not loops.
    pub async fn list_loops(&self, org: OrgId) -> Result<Vec<LoopSummary>> {
        Ok(on_db!(self, db => sqlx::query_as(
            "SELECT loop_key, COUNT(*) AS segments, CAST(SUM(rows) AS BIGINT) AS events, MIN(min_ts) AS first_event, MAX(max_ts) AS last_event
             FROM event_segments WHERE org_id = $1 AND retired_at IS NULL AND substr(loop_key, 1, 1) <> '_'
             GROUP BY loop_key ORDER BY loop_key")
            .bind(org.0).fetch_all(db).await?))
    }

    pub async fn recent_batches(&self, org: OrgId, loop_key: &str, limit: i64) -> Result<Vec<BatchRecord>> {
        let query = format!(
            "SELECT {BATCH_COLUMNS} FROM event_batches WHERE org_id = $1 AND loop_key = $2 ORDER BY id DESC LIMIT $3"
        );
        Ok(on_db!(self, db => sqlx::query_as(&query).bind(org.0).bind(loop_key).bind(limit).fetch_all(db).await?))
    }

    // ---- metric definitions and series --------------------------------------------------------

    /// Creates version 1 of a metric. A key already in use is rejected on the `key` field.
    pub async fn create_metric(&self, org: OrgId, spec: &MetricSpec) -> Result<MetricDefinition> {
        if self.metric(org, spec.key.as_str()).await?.is_some() {
            return Err(StoreError::Rejected(FieldErrors::single("key", format!("{} is already a metric", spec.key))));
        }
        self.insert_definition(org, spec, 1).await
    }

    /// Adds a version to a metric. `expected` is the version the edit was based on.
    pub async fn update_metric(
        &self,
        org: OrgId,
        key: &str,
        expected: i64,
        spec: &MetricSpec,
    ) -> Result<MetricDefinition> {
        let current = self.metric(org, key).await?.ok_or(StoreError::NotFound { entity: "metric", id: 0 })?;
        if current.version != expected {
            return Err(StoreError::Conflict { entity: "metric", id: current.id, expected, actual: current.version });
        }
        if spec.key.as_str() != key {
            return Err(StoreError::Rejected(FieldErrors::single("key", "cannot change; create a new metric instead")));
        }
        self.insert_definition(org, spec, expected + 1).await
    }

    async fn insert_definition(&self, org: OrgId, spec: &MetricSpec, version: i64) -> Result<MetricDefinition> {
        let now = Utc::now();
        let row: DefinitionRow = on_db!(self, db => sqlx::query_as(
            "INSERT INTO metric_definitions (org_id, key, version, name, kind, loop_key, variant, unit_filter, granularity,
             window_days, freshness_hours, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) RETURNING *")
            .bind(org.0).bind(spec.key.as_str()).bind(version).bind(spec.name.as_str()).bind(spec.kind.as_str())
            .bind(spec.loop_key.as_ref().map(Key::as_str)).bind(&spec.variant).bind(&spec.unit).bind(spec.granularity.as_str())
            .bind(spec.window_days).bind(spec.freshness_hours).bind(now)
            .fetch_one(db).await
            .map_err(StoreError::from)
            .map_err(|e| if e.is_unique_violation() {
                StoreError::Rejected(FieldErrors::single("key", "was changed by someone else at the same time; reload"))
            } else { e })?);
        row.try_into()
    }

    /// The current definition of `key`.
    pub async fn metric(&self, org: OrgId, key: &str) -> Result<Option<MetricDefinition>> {
        let row: Option<DefinitionRow> = on_db!(self, db => sqlx::query_as(
            "SELECT * FROM metric_definitions WHERE org_id = $1 AND key = $2 ORDER BY version DESC LIMIT 1")
            .bind(org.0).bind(key).fetch_optional(db).await?);
        row.map(TryInto::try_into).transpose()
    }

    /// A given version of `key`.
    pub async fn metric_version(&self, org: OrgId, key: &str, version: i64) -> Result<Option<MetricDefinition>> {
        let row: Option<DefinitionRow> = on_db!(self, db => sqlx::query_as(
            "SELECT * FROM metric_definitions WHERE org_id = $1 AND key = $2 AND version = $3")
            .bind(org.0).bind(key).bind(version).fetch_optional(db).await?);
        row.map(TryInto::try_into).transpose()
    }

    /// The current definition of every metric, by key.
    pub async fn list_metrics(&self, org: OrgId) -> Result<Vec<MetricDefinition>> {
        let rows: Vec<DefinitionRow> = on_db!(self, db => sqlx::query_as(
            "SELECT d.* FROM metric_definitions d WHERE d.org_id = $1
             AND d.version = (SELECT MAX(v.version) FROM metric_definitions v WHERE v.org_id = d.org_id AND v.key = d.key)
             ORDER BY d.key")
            .bind(org.0).fetch_all(db).await?);
        rows.into_iter().map(TryInto::try_into).collect()
    }

    /// The series of one version of a metric, oldest bucket first.
    pub async fn series(&self, org: OrgId, key: &str, version: i64) -> Result<Vec<MetricPoint>> {
        let rows: Vec<PointRow> = on_db!(self, db => sqlx::query_as(
            "SELECT bucket, value, n, ci_low, ci_high, observed_at, computed_at FROM metric_points
             WHERE org_id = $1 AND metric_key = $2 AND version = $3 ORDER BY bucket")
            .bind(org.0).bind(key).bind(version).fetch_all(db).await?);
        Ok(rows.into_iter().map(Into::into).collect())
    }

    /// Why the metric version's newest computation left a bucket without a point, if it did.
    pub async fn metric_problem(&self, org: OrgId, key: &str, version: i64) -> Result<Option<MetricProblem>> {
        let row: Option<(NaiveDate, String, DateTime<Utc>)> = on_db!(self, db => sqlx::query_as(
            "SELECT bucket, message, recorded_at FROM metric_problems WHERE org_id = $1 AND metric_key = $2 AND version = $3")
            .bind(org.0).bind(key).bind(version).fetch_optional(db).await?);
        Ok(row.map(|(bucket, message, recorded_at)| MetricProblem { bucket, message, recorded_at }))
    }

    /// Writes points of `metric`'s version and feeds the key results and squad goals linked to it, in
    /// one transaction. With `replace`, the version's points in that bucket range that are not among
    /// `points` are removed first (a recomputation found no data there any more).
    pub async fn write_points(
        &self,
        org: OrgId,
        metric: &MetricDefinition,
        points: &[MetricPoint],
        replace: Option<(NaiveDate, NaiveDate)>,
    ) -> Result<()> {
        in_tx!(self, tx => {
            lock_org!(tx, org);
            upsert_points!(tx, org, metric, points, replace);
            Ok(())
        })
    }
}
