//! Loop metrics: the manifest of event segments and the batches that wrote them, metric definitions
//! and their materialised series (experiments and drift alerts are in `experiments.rs`).
//!
//! Events themselves live in Parquet segments outside the database (the service writes them); the
//! database decides which segments exist. A batch's segment becomes visible in the same transaction
//! that records the batch, so a reader never sees half a batch and a retry never finds half of one.

use std::collections::HashMap;
use std::future::Future;

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

/// What the writer of a batch did with it.
#[derive(Debug, Clone)]
pub struct Written {
    pub duplicates: i64,
    /// `None` when every event was a duplicate and nothing needed writing.
    pub segment: Option<NewSegment>,
}

/// What recording a batch did.
#[derive(Debug)]
pub struct Recorded<E> {
    /// The batch as acknowledged: the earlier one when this was a replay.
    pub batch: BatchRecord,
    /// The manifest row of the segment the batch wrote; `None` for a replay or a batch of duplicates.
    pub segment: Option<SegmentRow>,
    /// How recomputing the loop's metrics went; `None` when it was left for later (see [`Recompute`]).
    pub recomputed: Option<std::result::Result<(), E>>,
}

/// How many times a batch's writer runs outside the organisation's lock before its last attempt runs
/// under it (each further attempt follows a race lost to another batch or a compaction of its loop).
pub const WRITE_ATTEMPTS: usize = 3;

/// How many times a batch's recomputation is planned and computed again after losing a race, before
/// its segments are left pending for the upkeep.
pub const RECOMPUTE_ATTEMPTS: usize = 3;

/// The segments a recomputation read: a loop's live segments overlapping `range` (all when `None`),
/// by id in ascending order. [`Store::apply_points`] writes only while they are still exactly these.
#[derive(Debug, Clone, PartialEq)]
pub struct SegmentsRead<'a> {
    pub loop_key: &'a str,
    pub range: Option<(DateTime<Utc>, DateTime<Utc>)>,
    pub ids: Vec<i64>,
}

/// What entering a written batch in the manifest found.
#[derive(Debug)]
enum Entered {
    /// An identical batch committed first.
    Replayed(BatchRecord),
    /// Another segment of the loop overlapping the batch appeared or was retired while it was written.
    Stale,
    Recorded(BatchRecord, Option<SegmentRow>),
}

/// The batches this process is writing, by organisation, loop and content. A request whose identical
/// twin is in flight waits for it and then finds its acknowledgement, so a retry storm writes the
/// events once. Across processes the first to commit wins and the others find the replay under the
/// lock (their files are left for the upkeep's sweep): correct, only wasted work.
#[derive(Debug, Default)]
pub(crate) struct Flights(std::sync::Mutex<HashMap<(i64, String, String), tokio::sync::watch::Receiver<()>>>);

/// A place among the [`Flights`], given up on drop, which wakes every request waiting for it.
pub(crate) struct Flight<'a> {
    flights: &'a Flights,
    key: (i64, String, String),
    _done: tokio::sync::watch::Sender<()>,
}

impl Flights {
    /// Takes the batch's place, or answers a receiver that wakes when the request holding it ends.
    fn enter(
        &self,
        org: OrgId,
        batch: &NewBatch<'_>,
    ) -> std::result::Result<Flight<'_>, tokio::sync::watch::Receiver<()>> {
        let key = (org.0, batch.loop_key.to_owned(), batch.content_hash.to_owned());
        let mut flights = self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(done) = flights.get(&key) {
            return Err(done.clone());
        }
        let (sender, receiver) = tokio::sync::watch::channel(());
        flights.insert(key.clone(), receiver);
        Ok(Flight { flights: self, key, _done: sender })
    }
}

impl Drop for Flight<'_> {
    fn drop(&mut self) {
        let mut flights = self.flights.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        flights.remove(&self.key);
    }
}

/// What recomputing a loop's pending segments needs, as the service plans it.
#[derive(Debug, Clone, PartialEq)]
pub enum Recompute {
    /// Leave the segments pending: someone else recomputes them.
    Later,
    /// No bucket needs computing (no metric on the loop, or only days still to come): mark them done.
    Nothing,
    /// Compute from the live segments overlapping this range (`None`: every segment of the loop).
    Events(Option<(DateTime<Utc>, DateTime<Utc>)>),
}

/// The metric half of recording a batch, called once the batch is committed, outside any transaction
/// (see [`Store::record_and_recompute`]); `plan` and `compute` run again, in that order, when the
/// loop's segments changed while it computed.
pub trait Recomputation: Send {
    /// A failure to compute; storage's own failures convert into it.
    type Error: From<StoreError>;
    /// What recomputing `pending` (the loop's segments still to materialise) needs.
    fn plan(&mut self, pending: &[SegmentRow]) -> Recompute;
    /// The points to write, computed from `segments` (those [`Recompute::Events`] named).
    fn compute(
        &mut self,
        segments: Vec<SegmentRow>,
    ) -> impl Future<Output = std::result::Result<Vec<PointsWrite>, Self::Error>> + Send;
}

/// A recomputation lent for one batch: the caller keeps it, to read what it recorded afterwards.
impl<R: Recomputation> Recomputation for &mut R {
    type Error = R::Error;

    fn plan(&mut self, pending: &[SegmentRow]) -> Recompute {
        (**self).plan(pending)
    }

    fn compute(
        &mut self,
        segments: Vec<SegmentRow>,
    ) -> impl Future<Output = std::result::Result<Vec<PointsWrite>, Self::Error>> + Send {
        (**self).compute(segments)
    }
}

/// A [`Recomputation`] that leaves every segment pending.
#[derive(Debug, Clone, Copy)]
pub struct Later;

impl Recomputation for Later {
    type Error = StoreError;

    fn plan(&mut self, _: &[SegmentRow]) -> Recompute {
        Recompute::Later
    }

    async fn compute(&mut self, _: Vec<SegmentRow>) -> std::result::Result<Vec<PointsWrite>, StoreError> {
        Ok(vec![])
    }
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
struct KeyedBatch {
    #[sqlx(flatten)]
    record: BatchRecord,
    content_hash: String,
}

const BATCH_COLUMNS: &str = "id, loop_key, rows, stored, duplicates, min_ts, max_ts, received_at";

/// Points of one metric version to write, and the bucket range they replace (points there that are not
/// among them are removed).
#[derive(Debug, Clone)]
pub struct PointsWrite {
    pub metric: MetricDefinition,
    pub points: Vec<MetricPoint>,
    pub replace: Option<(NaiveDate, NaiveDate)>,
}

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

/// Enters a written batch in the manifest inside a transaction that holds the organisation's lock
/// (see [`Store::enter_batch`]): the lookup repeats under the lock, which is granted only after an
/// identical request's commit, so this read sees it (each statement reads the latest committed data).
macro_rules! enter_batch {
    ($tx:expr, $org:expr, $batch:expr, $seen:expr, $written:expr) => {{
        let (org, batch, seen, written): (OrgId, &NewBatch<'_>, Option<&[i64]>, &Written) = ($org, $batch, $seen, $written);
        // A block of its own, so that its `return`s end it and not the caller's transaction body.
        let entered: Result<Entered> = async {
        let previous: Result<Option<BatchRecord>> = lookup_batch!($tx, org, batch);
        if let Some(previous) = previous? {
            return Ok(Entered::Replayed(previous));
        }
        if let (Some(seen), Some((min, max))) = (seen, batch.range) {
            let live: Vec<i64> = sqlx::query_scalar(
                "SELECT id FROM event_segments WHERE org_id = $1 AND loop_key = $2 AND retired_at IS NULL
                 AND min_ts <= $4 AND max_ts >= $3 ORDER BY id")
                .bind(org.0).bind(batch.loop_key).bind(min).bind(max).fetch_all(&mut *$tx).await?;
            if live != seen {
                return Ok(Entered::Stale);
            }
        }
        let now = Utc::now();
        let stored = written.segment.as_ref().map_or(0, |s| s.rows);
        let (min_ts, max_ts) = match &written.segment {
            Some(s) => (Some(s.min_ts), Some(s.max_ts)),
            None => (None, None),
        };
        let query = format!(
            "INSERT INTO event_batches (org_id, loop_key, idempotency_key, content_hash, rows, stored, duplicates, min_ts, max_ts, received_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING {BATCH_COLUMNS}");
        let record: BatchRecord = sqlx::query_as(&query)
            .bind(org.0).bind(batch.loop_key).bind(batch.idempotency_key).bind(batch.content_hash)
            .bind(batch.rows).bind(stored).bind(written.duplicates).bind(min_ts).bind(max_ts).bind(now)
            .fetch_one(&mut *$tx).await?;
        let segment: Option<SegmentRow> = match &written.segment {
            None => None,
            Some(segment) => Some(sqlx::query_as(
                "INSERT INTO event_segments (org_id, loop_key, path, rows, bytes, min_ts, max_ts, materialized, created_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING *")
                .bind(org.0).bind(batch.loop_key).bind(&segment.path).bind(segment.rows).bind(segment.bytes)
                .bind(segment.min_ts).bind(segment.max_ts).bind(false).bind(now)
                .fetch_one(&mut *$tx).await?),
        };
        Ok(Entered::Recorded(record, segment))
        }.await;
        entered
    }};
}

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

    /// Records a batch without recomputing metrics: [`Store::record_and_recompute`] with
    /// [`Later`], for streams that feed no metric (transactions) and for what the upkeep recomputes.
    pub async fn record_batch<F, Fut, E>(
        &self,
        org: OrgId,
        batch: &NewBatch<'_>,
        write: F,
    ) -> Result<std::result::Result<Recorded<StoreError>, E>>
    where
        F: FnMut(Vec<SegmentRow>) -> Fut,
        Fut: Future<Output = std::result::Result<Written, E>>,
    {
        self.record_and_recompute(org, batch, write, Later).await
    }

    /// Records a batch and then recomputes its loop's metrics, holding the organisation's lock only
    /// for the manifest's writes. Checks that the batch is new and waits for an identical request this
    /// process is already writing; hands `write` the live segments overlapping the batch's time range
    /// (to drop events already stored) outside any transaction; then, under the lock, enters the
    /// segment `write` produced in the manifest, provided the overlapping segments are still those it
    /// was handed. When another batch or a compaction changed them meanwhile, `write` runs again with
    /// the new ones (the caller removes the file it wrote before); after [`WRITE_ATTEMPTS`] such races
    /// the last attempt runs `write` under the lock, so a batch always ends. The outer error is
    /// storage's; the inner one is the writer's, in which case nothing is recorded.
    ///
    /// Once the batch is committed, `recompute` plans from the loop's segments still to materialise
    /// (the new one among them) and computes points outside any transaction, and they are written
    /// under the lock if the segments they were computed from are still the live ones (see
    /// [`Store::apply_points`]); otherwise it plans and computes again, and after
    /// [`RECOMPUTE_ATTEMPTS`] races leaves the segments pending for the upkeep. A failed
    /// recomputation does not lose the batch: nothing of it is written and its segment stays pending.
    pub async fn record_and_recompute<F, Fut, E, R>(
        &self,
        org: OrgId,
        batch: &NewBatch<'_>,
        mut write: F,
        mut recompute: R,
    ) -> Result<std::result::Result<Recorded<R::Error>, E>>
    where
        F: FnMut(Vec<SegmentRow>) -> Fut,
        Fut: Future<Output = std::result::Result<Written, E>>,
        R: Recomputation,
    {
        let replay = |batch| Ok(Ok(Recorded { batch, segment: None, recomputed: None }));
        let _flight = loop {
            if let Some(previous) = self.find_batch(org, batch).await? {
                return replay(previous);
            }
            match self.flights.enter(org, batch) {
                Ok(flight) => {
                    // Looked up again now that no identical request of this process is writing: one may
                    // have committed between the lookup above and taking its place.
                    if let Some(previous) = self.find_batch(org, batch).await? {
                        return replay(previous);
                    }
                    break flight;
                }
                Err(mut done) => {
                    // The sender is dropped when the other request ends, however it ends.
                    let _ = done.changed().await;
                }
            }
        };
        let mut attempt = 1;
        let entered = loop {
            let entered = if attempt < WRITE_ATTEMPTS {
                let overlapping = self.overlapping(org, batch).await?;
                let seen: Vec<i64> = overlapping.iter().map(|s| s.id).collect();
                let written = match write(overlapping).await {
                    Ok(written) => written,
                    Err(e) => return Ok(Err(e)),
                };
                self.enter_batch(org, batch, Some(&seen), &written).await?
            } else {
                match self.write_under_lock(org, batch, &mut write).await? {
                    Ok(entered) => entered,
                    Err(e) => return Ok(Err(e)),
                }
            };
            match entered {
                Entered::Stale => attempt += 1,
                entered => break entered,
            }
        };
        let (record, segment) = match entered {
            Entered::Replayed(previous) => return replay(previous),
            Entered::Recorded(record, segment) => (record, segment),
            Entered::Stale => unreachable!("a stale attempt is retried"),
        };
        let Some(segment) = segment else {
            return Ok(Ok(Recorded { batch: record, segment: None, recomputed: None }));
        };
        // The batch is committed: a failure from here on is the recomputation's, never the batch's.
        let recomputed = match self.recompute_loop(org, batch.loop_key, &mut recompute).await {
            Ok(recomputed) => recomputed,
            Err(e) => Some(Err(e.into())),
        };
        let segment = SegmentRow { materialized: matches!(recomputed, Some(Ok(()))), ..segment };
        Ok(Ok(Recorded { batch: record, segment: Some(segment), recomputed }))
    }

    /// The live segments of the batch's loop overlapping its time range (none for an empty batch).
    async fn overlapping(&self, org: OrgId, batch: &NewBatch<'_>) -> Result<Vec<SegmentRow>> {
        match batch.range {
            None => Ok(vec![]),
            Some(range) => self.live_segments(org, batch.loop_key, Some(range)).await,
        }
    }

    /// Enters a written batch under the organisation's lock: a replay if an identical batch committed
    /// meanwhile, stale if the overlapping segments are no longer `seen` (`None`: not checked, the
    /// writer ran under this same lock), else the batch and its segment's manifest rows.
    async fn enter_batch(
        &self,
        org: OrgId,
        batch: &NewBatch<'_>,
        seen: Option<&[i64]>,
        written: &Written,
    ) -> Result<Entered> {
        in_tx!(self, tx => {
            lock_org!(tx, org);
            enter_batch!(tx, org, batch, seen, written)
        })
    }

    /// The last attempt of a batch that kept losing races: the writer runs under the organisation's
    /// lock, as every attempt once did, so that no other batch can change what it deduplicates against.
    async fn write_under_lock<F, Fut, E>(
        &self,
        org: OrgId,
        batch: &NewBatch<'_>,
        write: &mut F,
    ) -> Result<std::result::Result<Entered, E>>
    where
        F: FnMut(Vec<SegmentRow>) -> Fut,
        Fut: Future<Output = std::result::Result<Written, E>>,
    {
        in_tx!(self, tx => {
            lock_org!(tx, org);
            let overlapping: Vec<SegmentRow> = match batch.range {
                None => vec![],
                Some((min, max)) => sqlx::query_as(
                    "SELECT * FROM event_segments WHERE org_id = $1 AND loop_key = $2 AND retired_at IS NULL
                     AND min_ts <= $4 AND max_ts >= $3 ORDER BY id")
                    .bind(org.0).bind(batch.loop_key).bind(min).bind(max).fetch_all(&mut *tx).await?,
            };
            let written = match write(overlapping).await {
                Ok(written) => written,
                Err(e) => return Ok(Err(e)),
            };
            let entered: Result<Entered> = enter_batch!(tx, org, batch, None, &written);
            Ok(Ok(entered?))
        })
    }

    /// Plans and computes a loop's pending buckets outside any transaction and writes them with a
    /// version check; `None` when the plan was [`Recompute::Later`] or every attempt lost a race.
    async fn recompute_loop<R: Recomputation>(
        &self,
        org: OrgId,
        loop_key: &str,
        recompute: &mut R,
    ) -> std::result::Result<Option<std::result::Result<(), R::Error>>, StoreError> {
        for _ in 0..RECOMPUTE_ATTEMPTS {
            // Selected by organisation and loop here, not filtered afterwards: the batch recomputes its
            // own loop, with whatever an earlier failure left pending there.
            let pending: Vec<SegmentRow> = on_db!(self, db => sqlx::query_as(
                "SELECT * FROM event_segments WHERE org_id = $1 AND loop_key = $2 AND materialized = $3 AND retired_at IS NULL
                 ORDER BY id")
                .bind(org.0).bind(loop_key).bind(false).fetch_all(db).await?);
            let mark: Vec<i64> = pending.iter().map(|s| s.id).collect();
            let (read, writes) = match recompute.plan(&pending) {
                Recompute::Later => return Ok(None),
                Recompute::Nothing => (None, vec![]),
                Recompute::Events(range) => {
                    let rows = self.live_segments(org, loop_key, range).await?;
                    let ids: Vec<i64> = rows.iter().map(|s| s.id).collect();
                    match recompute.compute(rows).await {
                        Ok(writes) => (Some(SegmentsRead { loop_key, range, ids }), writes),
                        Err(e) => return Ok(Some(Err(e))),
                    }
                }
            };
            match self.apply_points(org, read.as_ref(), &mark, &writes).await {
                Ok(true) => return Ok(Some(Ok(()))),
                Ok(false) => continue,
                Err(e) => return Ok(Some(Err(e.into()))),
            }
        }
        tracing::info!(
            org = org.0,
            loop_key,
            "the loop's segments kept changing while its metrics were computed; the upkeep will"
        );
        Ok(None)
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

    /// Writes points computed outside any transaction, under the organisation's lock, and marks the
    /// segments `mark` materialised with them, provided the live segments are still those `read`
    /// names (its loop's, overlapping its range): a batch, a compaction or a retirement since then
    /// would make the points stale. Returns false, writing nothing, when they are not; `read: None`
    /// writes without the check (nothing was read). Two recomputations of one loop thus never write
    /// over each other with points computed from fewer events than the other saw.
    pub async fn apply_points(
        &self,
        org: OrgId,
        read: Option<&SegmentsRead<'_>>,
        mark: &[i64],
        writes: &[PointsWrite],
    ) -> Result<bool> {
        in_tx!(self, tx => {
            lock_org!(tx, org);
            if let Some(read) = read {
                let (from, to) = read.range.map_or((None, None), |(f, t)| (Some(f), Some(t)));
                let live: Vec<i64> = sqlx::query_scalar(
                    "SELECT id FROM event_segments WHERE org_id = $1 AND loop_key = $2 AND retired_at IS NULL
                     AND ($4 IS NULL OR min_ts <= $4) AND ($3 IS NULL OR max_ts >= $3) ORDER BY id")
                    .bind(org.0).bind(read.loop_key).bind(from).bind(to).fetch_all(&mut *tx).await?;
                if live != read.ids {
                    return Ok(false);
                }
            }
            for write in writes {
                upsert_points!(tx, org, &write.metric, &write.points, write.replace);
            }
            for id in mark {
                sqlx::query("UPDATE event_segments SET materialized = $3 WHERE org_id = $1 AND id = $2 AND retired_at IS NULL")
                    .bind(org.0).bind(id).bind(true).execute(&mut *tx).await?;
            }
            Ok(true)
        })
    }
}
