//! Loop metrics use cases: ingesting event batches into segments, keeping metric series materialised,
//! pushed points, and the reports (acceptance, experiments, drift) computed from stored events.

// Long on purpose, for now: ingestion, materialisation and the loop reads share private helpers; issue 13
// split the runner first, and this file is the next to split by capability (ingest, materialise, read).

use std::collections::{BTreeSet, HashMap};
use std::io::Read;

use chrono::{DateTime, Datelike, Duration, NaiveDate, Utc};
use serde::Serialize;
use sha2::{Digest, Sha256};

use slope_domain::*;
use slope_metrics::acceptance::{AcceptancePoint, Bucket, acceptance_of};
use slope_metrics::drift::{Drift, DriftBand, DriftField, drift};
use slope_metrics::events::{
    EventsError, Format, InteractionEvent, RowError, TransactionEvent, latest_event_time, parse_batch_until,
    parse_transactions,
};
use slope_metrics::ltv::{Customer, LtvReport, ltv_report};
use slope_metrics::segment;
use slope_metrics::series::{self, Filter, SeriesKind, Window};
use slope_metrics::transactions::{Period, SummaryOptions, summaries_of};
use slope_store::{BatchRecord, LoopSummary, NewBatch, NewSegment, PointsWrite, SegmentRow, Store, Written};

use crate::error::internal;
use crate::segments::SegmentStore;
use crate::{Result, ServiceError};

/// The largest batch body accepted after decompression: bigger loads go in several batches.
pub const MAX_BATCH_BYTES: usize = 512 * 1024 * 1024;
/// Segments smaller than this are merged by compaction once there are [`COMPACT_AT`] of them.
pub const SMALL_SEGMENT_BYTES: i64 = 16 * 1024 * 1024;
pub const COMPACT_AT: usize = 8;
/// How long a compacted segment's file outlives its retirement, for readers that listed it.
pub const RETIRED_GRACE: Duration = Duration::minutes(10);

/// A batch as it arrives.
#[derive(Debug, Clone, Copy)]
pub struct BatchInput<'a> {
    pub loop_key: &'a str,
    pub body: &'a [u8],
    pub format: Format,
    pub gzip: bool,
    pub idempotency_key: Option<&'a str>,
}

#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct IngestAck {
    #[serde(flatten)]
    pub batch: BatchRecord,
    /// Metric definitions whose touched buckets were recomputed before this answer.
    pub metrics_updated: Vec<String>,
    /// True when the batch is stored but recomputing its loop's metrics failed; the upkeep retries
    /// every minute.
    pub metrics_pending: bool,
}

/// What the loop page and `GET /api/v1/loops/{loop}` show.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LoopReport {
    pub summary: Option<LoopSummary>,
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub method: &'static str,
    /// Acceptance per variant and day over the last `days` days of events: `{variant, bucket, value, users,
    /// events, accepted, suggested, ci_low, ci_high}`.
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<Object>))]
    pub acceptance: Vec<AcceptancePoint>,
    pub metrics: Vec<MetricDefinition>,
    pub batches: Vec<BatchRecord>,
}

#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ExperimentAnalysis {
    pub experiment: Experiment,
    /// The A/B comparison of the variants' character acceptance rates: each arm with its delta-method
    /// interval, the difference with a z-test, the lift, the always-valid sequential test and the
    /// sample-ratio check.
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub report: slope_metrics::ab::AbReport,
}

/// The loop metrics service. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Loops {
    store: Store,
    segments: SegmentStore,
}

/// Runs CPU-bound polars work off the async threads.
async fn blocking<T: Send + 'static>(
    what: &'static str,
    work: impl FnOnce() -> Result<T, String> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(work).await.map_err(|e| internal(what, e))?.map_err(|e| internal(what, e))
}

fn rows_error(e: EventsError) -> ServiceError {
    match e {
        EventsError::Invalid { errors, total } => ServiceError::InvalidRows { errors, total },
        EventsError::Format(message) | EventsError::Io { message, .. } => {
            ServiceError::InvalidRows { errors: vec![RowError { row: 0, field: "body".into(), message }], total: 1 }
        }
    }
}

fn kind_of(metric: &MetricDefinition) -> Option<SeriesKind> {
    match metric.kind {
        MetricKind::AcceptanceRate => Some(SeriesKind::AcceptanceRate),
        MetricKind::ActiveUsers => Some(SeriesKind::ActiveUsers),
        MetricKind::Retention => Some(SeriesKind::Retention),
        MetricKind::EvalScore | MetricKind::Custom => None,
    }
}

fn day_start(day: NaiveDate) -> DateTime<Utc> {
    day.and_hms_opt(0, 0, 0).map(|t| t.and_utc()).unwrap_or_default()
}

impl Loops {
    pub fn new(store: Store, segments: SegmentStore) -> Self {
        Self { store, segments }
    }

    /// The store, for the service's own modules; nothing outside this crate gets it.
    pub(crate) fn store(&self) -> &Store {
        &self.store
    }

    /// The ids of a loop's live segments and their contents, for building datasets from its events.
    /// NotFound for a loop that has no events or metrics.
    pub(crate) async fn loop_events(&self, org: OrgId, loop_key: &str) -> Result<(Vec<i64>, Vec<bytes::Bytes>)> {
        self.ensure_loop(org, loop_key).await?;
        let segments = self.store.live_segments(org, loop_key, None).await?;
        let bytes = self.segments.get_all(&segments).await?;
        Ok((segments.iter().map(|s| s.id).collect(), bytes))
    }

    /// Creates the metric unless one with its key exists; a concurrent creation is not an error.
    pub(crate) async fn ensure_metric(&self, actor: &Actor, input: &MetricInput) -> Result<()> {
        let org = actor.authorize(Action::Operate)?;
        if self.store.metric(org, &input.key).await?.is_some() {
            return Ok(());
        }
        match self.create_metric(actor, input).await {
            Ok(_) | Err(ServiceError::Conflict(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    // ---- ingestion -----------------------------------------------------------------------------

    /// Ingests one batch, all or nothing. A retry (same idempotency key, or same content) gets the
    /// first acknowledgement again; events whose ids are already stored are counted as duplicates and
    /// not stored twice. The answer comes after the segment is durable and its manifest row committed,
    /// and after the touched buckets of the loop's metrics are recomputed, so what it acknowledges is
    /// already visible on every key result the loop feeds.
    pub async fn ingest(&self, actor: &Actor, input: BatchInput<'_>) -> Result<IngestAck> {
        let org = actor.authorize(Action::Ingest)?;
        let loop_key = Key::parse(input.loop_key).map_err(|m| FieldErrors::single("loop", m))?;
        let (body, content_hash) = unpack(&input)?;
        if let Some(previous) = self.replay(org, loop_key.as_str(), input.idempotency_key, &content_hash).await? {
            return Ok(previous);
        }
        let (format, batch_loop) = (input.format, loop_key.to_string());
        let parsed = blocking("parsing a batch", move || {
            Ok(parse_batch_until(&body, format, Some(&batch_loop), Some(latest_event_time())))
        })
        .await?;
        let events = parsed.map_err(rows_error)?;
        let within_batch = events.duplicates as i64;
        let record = self
            .store_rows(
                org,
                loop_key.as_str(),
                input.idempotency_key,
                &content_hash,
                Rows::Interactions(events.events),
                within_batch,
            )
            .await?;
        let (metrics_updated, failed) = if record.stored > 0 && !record.replayed {
            self.materialize_pending(Some(org)).await?
        } else {
            (vec![], vec![])
        };
        let metrics_pending = failed.iter().any(|l| l == loop_key.as_str());
        Ok(IngestAck { batch: record, metrics_updated, metrics_pending })
    }

    /// The acknowledgement of an earlier identical batch, looked up before the body is parsed.
    async fn replay(
        &self,
        org: OrgId,
        stream: &str,
        key: Option<&str>,
        content_hash: &str,
    ) -> Result<Option<IngestAck>> {
        let probe = NewBatch { loop_key: stream, idempotency_key: key, content_hash, rows: 0, range: None };
        Ok(self.store.find_batch(org, &probe).await?.map(|batch| IngestAck {
            batch,
            metrics_updated: vec![],
            metrics_pending: false,
        }))
    }

    /// Ingests a batch of transaction events (`event_id`, `customer_id`, `ts`, `amount`) into the
    /// organisation's transaction stream, with the same all-or-nothing, idempotency and duplicate rules
    /// as interaction events. `input.loop_key` is ignored.
    pub async fn ingest_transactions(&self, actor: &Actor, input: BatchInput<'_>) -> Result<IngestAck> {
        let org = actor.authorize(Action::Ingest)?;
        let (body, content_hash) = unpack(&input)?;
        if let Some(previous) = self.replay(org, TRANSACTIONS, input.idempotency_key, &content_hash).await? {
            return Ok(previous);
        }
        let format = input.format;
        let parsed =
            blocking("parsing a batch", move || Ok(parse_transactions(&body, format, Some(latest_event_time()))))
                .await?;
        let (rows, within_batch) = parsed.map_err(rows_error)?;
        let record = self
            .store_rows(
                org,
                TRANSACTIONS,
                input.idempotency_key,
                &content_hash,
                Rows::Transactions(rows),
                within_batch as i64,
            )
            .await?;
        Ok(IngestAck { batch: record, metrics_updated: vec![], metrics_pending: false })
    }

    /// Records a validated batch of `stream`: replays an earlier identical one, else drops events already
    /// stored and writes the rest as one durable segment entered in the manifest.
    async fn store_rows(
        &self,
        org: OrgId,
        stream: &str,
        idempotency_key: Option<&str>,
        content_hash: &str,
        mut rows: Rows,
        within_batch: i64,
    ) -> Result<BatchRecord> {
        rows.sort();
        let range = rows.range();
        let batch =
            NewBatch { loop_key: stream, idempotency_key, content_hash, rows: rows.len() as i64 + within_batch, range };
        // The callers have looked for a replay before parsing; `record_batch` looks again under the lock.
        let segments = self.segments.clone();
        let path_stream = stream.to_owned();
        let hash_prefix = content_hash[..16].to_owned();
        self.store
            .record_batch(org, &batch, move |overlapping: Vec<SegmentRow>| async move {
                let stored = segments.get_all(&overlapping).await?;
                let (fresh, duplicates, encoded, kept_range) = blocking("writing a segment", move || {
                    let known = segment::event_ids(&stored).map_err(|e| e.to_string())?;
                    let (fresh, duplicates) = rows.without(&known);
                    let encoded = if fresh.len() == 0 { None } else { Some(fresh.encode()?) };
                    Ok((fresh.len(), duplicates as i64, encoded, fresh.range()))
                })
                .await?;
                let Some(bytes) = encoded else {
                    return Ok::<_, ServiceError>(Written { duplicates: duplicates + within_batch, segment: None });
                };
                // The segment spans what it holds, not the duplicates left out of it.
                let (min_ts, max_ts) = kept_range.or(range).unwrap_or_default();
                let now = Utc::now();
                let path = format!(
                    "org-{}/{}/{}/{}-{hash_prefix}.parquet",
                    org.0,
                    path_stream,
                    min_ts.format("%Y-%m-%d"),
                    now.format("%Y%m%dT%H%M%S%6f")
                );
                let size = bytes.len() as i64;
                segments.put(&path, bytes).await?;
                Ok(Written {
                    duplicates: duplicates + within_batch,
                    segment: Some(NewSegment { path, rows: fresh as i64, bytes: size, min_ts, max_ts }),
                })
            })
            .await?
    }

    /// BG/NBD and Gamma-Gamma fitted to the customers of the stored transactions, with predictions per
    /// customer and per monthly cohort over `horizon` periods, discounted at `discount_rate` per period.
    pub async fn ltv(&self, actor: &Actor, period: Period, horizon: usize, discount_rate: f64) -> Result<LtvReport> {
        let org = actor.authorize(Action::Read)?;
        if !(0.0..1.0).contains(&discount_rate) {
            return Err(FieldErrors::single("discount_rate", "must be at least 0 and below 1 (per period)").into());
        }
        if !(1..=520).contains(&horizon) {
            return Err(FieldErrors::single("horizon", "must be between 1 and 520 periods").into());
        }
        let rows = self.store.live_segments(org, TRANSACTIONS, None).await?;
        if rows.is_empty() {
            return Err(ServiceError::NotFound("no transactions have been ingested yet".into()));
        }
        let bytes = self.segments.get_all(&rows).await?;
        let end = rows.iter().map(|r| r.max_ts.date_naive()).max().unwrap_or_default();
        let fitted = blocking("fitting customer lifetime value", move || {
            let frame = segment::transactions_frame(&bytes).map_err(|e| e.to_string())?;
            let options = SummaryOptions { period, calibration_end: Some(end) };
            let summaries = summaries_of(frame.clone(), &options).map_err(|e| e.to_string())?;
            let firsts = segment::first_purchase_days(frame).map_err(|e| e.to_string())?;
            let customers: Vec<(String, Customer, NaiveDate)> = summaries
                .into_iter()
                .map(|(id, c)| {
                    let first = firsts.get(&id).copied().unwrap_or(end);
                    (id, c, first)
                })
                .collect();
            Ok(ltv_report(&customers, horizon, discount_rate))
        })
        .await?;
        fitted.map_err(|e| ServiceError::Conflict(format!("cannot fit yet: {e}")))
    }

    /// Recomputes the buckets touched by segments not yet materialised (all organisations when `org` is
    /// `None`): after each batch, and at start-up and every minute for what a crash or a failure left
    /// behind. A loop whose recomputation fails is logged and left pending for the next round, so it
    /// holds up no other loop. Returns the metric keys updated and the loops left pending.
    pub async fn materialize_pending(&self, org: Option<OrgId>) -> Result<(Vec<String>, Vec<String>)> {
        let pending = self.store.unmaterialized_segments().await?;
        let mut groups: HashMap<(i64, String), Vec<SegmentRow>> = HashMap::new();
        for s in pending.into_iter().filter(|s| org.is_none_or(|o| o.0 == s.org_id)) {
            groups.entry((s.org_id, s.loop_key.clone())).or_default().push(s);
        }
        let (mut updated, mut failed) = (BTreeSet::new(), vec![]);
        for ((org, loop_key), segments) in groups {
            match self.materialize_segments(OrgId(org), &loop_key, &segments).await {
                Ok(keys) => updated.extend(keys),
                Err(e) => {
                    tracing::warn!(org, loop_key, error = %e, "recomputing metrics failed; the segments stay pending");
                    failed.push(loop_key);
                }
            }
        }
        Ok((updated.into_iter().collect(), failed))
    }

    async fn materialize_segments(&self, org: OrgId, loop_key: &str, segments: &[SegmentRow]) -> Result<Vec<String>> {
        let mut days = BTreeSet::new();
        for s in segments {
            let mut day = s.min_ts.date_naive();
            while day <= s.max_ts.date_naive() {
                days.insert(day);
                day = day.succ_opt().unwrap_or(NaiveDate::MAX);
                if day == NaiveDate::MAX {
                    break;
                }
            }
        }
        let mut plans = vec![];
        for metric in self.store.list_metrics(org).await? {
            if metric.loop_key.as_deref() != Some(loop_key) || kind_of(&metric).is_none() {
                continue;
            }
            // Every cohort is recomputed: a late event can move a user's first week, and a cohort's
            // following week can fill in after the fact.
            let buckets: Vec<NaiveDate> = if metric.kind == MetricKind::Retention {
                vec![]
            } else {
                days.iter().flat_map(|d| metric.buckets_touched_by(*d)).collect::<BTreeSet<_>>().into_iter().collect()
            };
            plans.push(Plan { full: metric.kind == MetricKind::Retention, metric, buckets });
        }
        let ids: Vec<i64> = segments.iter().map(|s| s.id).collect();
        let keys = plans.iter().map(|p| p.metric.key.clone()).collect();
        self.run_plans(org, loop_key, plans, &ids).await?;
        Ok(keys)
    }

    /// Computes and writes the planned points of one loop's metrics under the organisation's lock (see
    /// [`Store::materialize`]), marking `mark` materialised with them.
    async fn run_plans(&self, org: OrgId, loop_key: &str, plans: Vec<Plan>, mark: &[i64]) -> Result<()> {
        let today = Utc::now().date_naive();
        let mut work = vec![];
        let mut needs_all = false;
        let (mut from, mut to) = (None::<NaiveDate>, None::<NaiveDate>);
        for plan in plans {
            let Some(kind) = kind_of(&plan.metric) else { continue };
            // A trailing window reaches past the last event, but a bucket of a day still to come is not
            // a measurement; the upkeep fills it in once the day has come.
            let windows: Vec<Window> = plan
                .buckets
                .iter()
                .filter(|b| **b <= today)
                .map(|b| {
                    let (from, to) = plan.metric.window_of(*b);
                    Window { bucket: *b, from, to }
                })
                .collect();
            if kind == SeriesKind::Retention || plan.full {
                needs_all = true;
            }
            for w in &windows {
                from = Some(from.map_or(w.from, |f| f.min(w.from)));
                to = Some(to.map_or(w.to, |t| t.max(w.to)));
            }
            work.push((plan, kind, windows));
        }
        let range = match (needs_all, from, to) {
            _ if work.is_empty() => return self.mark_only(org, loop_key, mark).await,
            (true, _, _) => None,
            (false, Some(f), Some(t)) => Some((day_start(f), day_start(t.succ_opt().unwrap_or(t)))),
            // Only buckets still to come: nothing to compute yet.
            (false, _, _) => return self.mark_only(org, loop_key, mark).await,
        };
        let segments = self.segments.clone();
        self.store
            .materialize(org, loop_key, range, mark, move |rows: Vec<SegmentRow>| async move {
                let bytes = segments.get_all(&rows).await?;
                blocking("computing metrics", move || {
                    let columns = ["ts", "user_id", "variant", "unit", "accepted_chars", "suggested_chars"];
                    let events = segment::frame_of(&bytes, Some(&columns)).map_err(|e| e.to_string())?;
                    let now = Utc::now();
                    let mut writes = vec![];
                    for (plan, kind, windows) in work {
                        let filter = Filter { variant: plan.metric.variant.clone(), unit: plan.metric.unit.clone() };
                        let windows =
                            if plan.full { full_windows(&plan.metric, kind, &events, today)? } else { windows };
                        let points =
                            series::compute(kind, &filter, events.clone(), &windows).map_err(|e| e.to_string())?;
                        let points: Vec<MetricPoint> = points
                            .into_iter()
                            .map(|p| MetricPoint {
                                bucket: p.bucket,
                                value: p.value,
                                n: Some(p.n),
                                ci_low: p.ci_low,
                                ci_high: p.ci_high,
                                observed_at: p.observed_at,
                                computed_at: now,
                            })
                            .collect();
                        let replace = if plan.full { everything() } else { None };
                        writes.push(PointsWrite { metric: plan.metric, points, replace });
                    }
                    Ok(writes)
                })
                .await
            })
            .await?
    }

    async fn mark_only(&self, org: OrgId, loop_key: &str, mark: &[i64]) -> Result<()> {
        if mark.is_empty() {
            return Ok(());
        }
        self.store.materialize(org, loop_key, None, mark, |_| async { Ok::<_, ServiceError>(vec![]) }).await?
    }

    /// Recomputes a computed metric's whole series from every stored event of its loop.
    pub async fn recompute(&self, actor: &Actor, key: &str) -> Result<MetricSeries> {
        self.recompute_in(actor.authorize(Action::Operate)?, key).await
    }

    async fn recompute_in(&self, org: OrgId, key: &str) -> Result<MetricSeries> {
        let metric = self.metric_in(org, key).await?;
        if let Some(loop_key) = metric.loop_key.clone().filter(|_| metric.kind.from_events()) {
            self.run_plans(org, &loop_key, vec![Plan { metric, buckets: vec![], full: true }], &[]).await?;
        }
        self.series_in(org, key).await
    }

    /// Fills in the buckets of trailing-window metrics whose day has come since they were last computed
    /// (a 7-day window keeps a value on a quiet weekend), up to today.
    pub async fn catch_up(&self, org: OrgId) -> Result<()> {
        let today = Utc::now().date_naive();
        let loops = self.store.list_loops(org).await?;
        for metric in self.store.list_metrics(org).await? {
            let Some(window) = metric.window_days.filter(|w| *w > metric.granularity.days()) else { continue };
            let Some(summary) = loops.iter().find(|l| Some(l.loop_key.as_str()) == metric.loop_key.as_deref()) else {
                continue;
            };
            let points = self.store.series(org, &metric.key, metric.version).await?;
            let Some(last) = points.last().map(|p| p.bucket) else { continue };
            let reach = summary.last_event.date_naive() + Duration::days(window - 1);
            let mut buckets = vec![];
            let mut bucket = last + Duration::days(metric.granularity.days());
            while bucket <= today.min(reach) {
                buckets.push(bucket);
                bucket += Duration::days(metric.granularity.days());
            }
            if !buckets.is_empty() {
                let loop_key = summary.loop_key.clone();
                self.run_plans(org, &loop_key, vec![Plan { metric, buckets, full: false }], &[]).await?;
            }
        }
        Ok(())
    }

    // ---- compaction ----------------------------------------------------------------------------

    /// Merges each loop's small segments once there are enough of them, and deletes the files of
    /// segments retired long enough ago. Safe to run on several servers at once: a second merge of the
    /// same segments loses the race in the manifest and deletes its own output.
    pub async fn compact(&self, org: OrgId) -> Result<usize> {
        let mut merged = 0;
        for summary in self.store.list_loops(org).await? {
            let small: Vec<SegmentRow> = self
                .store
                .live_segments(org, &summary.loop_key, None)
                .await?
                .into_iter()
                .filter(|s| s.bytes < SMALL_SEGMENT_BYTES && s.materialized)
                .collect();
            if small.len() < COMPACT_AT {
                continue;
            }
            let bytes = self.segments.get_all(&small).await?;
            let segment::Compacted { bytes: encoded, rows, range } =
                blocking("compacting segments", move || segment::compact(&bytes).map_err(|e| e.to_string())).await?;
            let Some((min_ts, max_ts)) = range else { continue };
            let path = format!(
                "org-{}/{}/compacted/{}-{}.parquet",
                org.0,
                summary.loop_key,
                Utc::now().format("%Y%m%dT%H%M%S%6f"),
                small[0].id
            );
            let size = encoded.len() as i64;
            self.segments.put(&path, encoded).await?;
            let new = NewSegment { path: path.clone(), rows: rows as i64, bytes: size, min_ts, max_ts };
            let old: Vec<i64> = small.iter().map(|s| s.id).collect();
            match self.store.replace_segments(org, &summary.loop_key, &old, &new).await {
                Ok(()) => merged += small.len(),
                Err(e) => {
                    // The commit may have happened with only its answer lost: delete the merged file only
                    // if the manifest does not name it.
                    if !self.store.segment_listed(&path).await? {
                        self.segments.delete(&path).await?;
                    }
                    return Err(e.into());
                }
            }
        }
        for retired in self.store.retired_segments(Utc::now() - RETIRED_GRACE).await? {
            self.segments.delete(&retired.path).await?;
            self.store.forget_segment(retired.id).await?;
        }
        Ok(merged)
    }

    // ---- reading events ------------------------------------------------------------------------

    /// The loop's events between two days (both included; all when `None`) as segment bytes.
    pub(crate) async fn event_bytes(
        &self,
        org: OrgId,
        loop_key: &str,
        days: Option<(NaiveDate, NaiveDate)>,
    ) -> Result<Vec<bytes::Bytes>> {
        let range = days.map(|(from, to)| (day_start(from), day_start(to.succ_opt().unwrap_or(to))));
        let rows = self.store.live_segments(org, loop_key, range).await?;
        self.segments.get_all(&rows).await
    }

    pub async fn list_loops(&self, actor: &Actor) -> Result<Vec<LoopSummary>> {
        let org = actor.authorize(Action::Read)?;
        Ok(self.store.list_loops(org).await?)
    }

    /// Whether the organisation has a loop with this key: one with stored events, batches or metrics.
    /// Routes named by a loop answer 404 otherwise, as for any other entity that does not exist (another
    /// organisation's loop of the same name included).
    pub(crate) async fn loop_known(&self, org: OrgId, loop_key: &str) -> Result<bool> {
        if self.store.list_loops(org).await?.iter().any(|l| l.loop_key == loop_key) {
            return Ok(true);
        }
        if self.store.list_metrics(org).await?.iter().any(|m| m.loop_key.as_deref() == Some(loop_key)) {
            return Ok(true);
        }
        Ok(!self.store.recent_batches(org, loop_key, 1).await?.is_empty())
    }

    pub(crate) async fn ensure_loop(&self, org: OrgId, loop_key: &str) -> Result<()> {
        if self.loop_known(org, loop_key).await? {
            Ok(())
        } else {
            Err(ServiceError::NotFound(format!("no loop {loop_key:?} has events or metrics")))
        }
    }

    /// A loop at a glance: its stored events, acceptance per variant and day over the last `days` days
    /// of data, its metrics and recent batches.
    pub async fn loop_report(&self, actor: &Actor, loop_key: &str, days: i64) -> Result<LoopReport> {
        let org = actor.authorize(Action::Read)?;
        let summary = self.store.list_loops(org).await?.into_iter().find(|l| l.loop_key == loop_key);
        let metrics: Vec<MetricDefinition> = self
            .store
            .list_metrics(org)
            .await?
            .into_iter()
            .filter(|m| m.loop_key.as_deref() == Some(loop_key))
            .collect();
        let batches = self.store.recent_batches(org, loop_key, 20).await?;
        if summary.is_none() && metrics.is_empty() && batches.is_empty() {
            return Err(ServiceError::NotFound(format!("no loop {loop_key:?} has events or metrics")));
        }
        let acceptance = match &summary {
            None => vec![],
            Some(s) => {
                let to = s.last_event.date_naive();
                let from = to - Duration::days(days.clamp(1, 366) - 1);
                let bytes = self.event_bytes(org, loop_key, Some((from, to))).await?;
                blocking("computing acceptance", move || {
                    let events = segment::between_days(
                        segment::frame_of(&bytes, Some(&RATIO_COLUMNS)).map_err(|e| e.to_string())?,
                        from,
                        to,
                    );
                    acceptance_of(events, true, Bucket::Day).map_err(|e| e.to_string())
                })
                .await?
            }
        };
        Ok(LoopReport {
            summary,
            method: "Σ accepted / Σ suggested characters; 95 % CI by the delta method with users as the randomisation unit",
            acceptance,
            metrics,
            batches,
        })
    }

    /// Drift of `field` between two windows of a loop's events. A result in the moderate or major band
    /// is recorded as a drift alert.
    pub async fn drift_check(
        &self,
        actor: &Actor,
        loop_key: &str,
        field: &str,
        reference: (NaiveDate, NaiveDate),
        current: (NaiveDate, NaiveDate),
    ) -> Result<(Drift, Option<DriftAlert>)> {
        let org = actor.authorize(Action::Operate)?;
        self.ensure_loop(org, loop_key).await?;
        let drift_field: DriftField = field.parse().map_err(|m: String| FieldErrors::single("field", m))?;
        for (name, (from, to)) in [("reference", reference), ("current", current)] {
            if to < from {
                return Err(FieldErrors::single(name, "ends before it starts").into());
            }
            if from.year() < 1970 || to.year() > 9999 {
                return Err(FieldErrors::single(name, "must lie between 1970 and 9999").into());
            }
        }
        let from = reference.0.min(current.0);
        let to = reference.1.max(current.1);
        let bytes = self.event_bytes(org, loop_key, Some((from, to))).await?;
        let values = blocking("reading events for drift", move || {
            // The segments are decoded once; each window filters the same frame.
            let columns = ["ts", "latency_ms", "cost_usd", "suggested_chars", "accepted_chars"];
            let events = segment::frame_of(&bytes, Some(&columns)).map_err(|e| e.to_string())?;
            let read = |(a, b): (NaiveDate, NaiveDate)| -> Result<Vec<f64>, String> {
                let frame = segment::between_days(events.clone(), a, b);
                slope_metrics::drift::values_of(frame, drift_field).map_err(|e| e.to_string())
            };
            Ok((read(reference)?, read(current)?))
        })
        .await?;
        let (r, c) = values;
        let Some(result) = drift(&r, &c) else {
            let which = if r.is_empty() { "reference" } else { "current" };
            return Err(FieldErrors::single(which, format!("has no {field} values in that window")).into());
        };
        let alert = if result.band == DriftBand::Stable {
            None
        } else {
            let alert = DriftAlert {
                id: 0,
                loop_key: loop_key.to_owned(),
                field: field.to_owned(),
                reference_start: reference.0,
                reference_end: reference.1,
                current_start: current.0,
                current_end: current.1,
                psi: result.psi,
                js_distance: result.js_distance,
                band: result.band.as_str().to_owned(),
                created_at: Utc::now(),
            };
            Some(self.store.record_drift_alert(org, &alert).await?)
        };
        Ok((result, alert))
    }

    pub async fn drift_alerts(&self, actor: &Actor) -> Result<Vec<DriftAlert>> {
        let org = actor.authorize(Action::Read)?;
        Ok(self.store.list_drift_alerts(org, 100).await?)
    }

    // ---- metric definitions and points ---------------------------------------------------------

    pub async fn list_metrics(&self, actor: &Actor) -> Result<Vec<MetricDefinition>> {
        let org = actor.authorize(Action::Read)?;
        Ok(self.store.list_metrics(org).await?)
    }

    pub async fn metric(&self, actor: &Actor, key: &str) -> Result<MetricDefinition> {
        self.metric_in(actor.authorize(Action::Read)?, key).await
    }

    async fn metric_in(&self, org: OrgId, key: &str) -> Result<MetricDefinition> {
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

    async fn series_in(&self, org: OrgId, key: &str) -> Result<MetricSeries> {
        let metric = self.metric_in(org, key).await?;
        let points = self.store.series(org, key, metric.version).await?;
        let feed = MetricFeed {
            key: metric.key.clone(),
            observed_at: points.last().map(|p| p.observed_at),
            freshness_hours: metric.freshness_hours,
        };
        Ok(MetricSeries { stale: feed.is_stale(Utc::now()), metric, points })
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

    // ---- experiments ---------------------------------------------------------------------------

    pub async fn create_experiment(&self, actor: &Actor, input: &ExperimentInput) -> Result<Experiment> {
        let org = actor.authorize(Action::Operate)?;
        Ok(self.store.create_experiment(org, &input.validate()?).await?)
    }

    /// Stops an experiment before its last day: from now on it assigns no users to arms, and its
    /// analysis covers its events up to the day it was stopped. Stopping it again is a conflict.
    pub async fn stop_experiment(&self, actor: &Actor, key: &str) -> Result<Experiment> {
        let org = actor.authorize(Action::Operate)?;
        if let Some(stopped) = self.store.stop_experiment(org, key, Utc::now()).await? {
            return Ok(stopped);
        }
        // Nothing was stopped: either there is no such experiment or it was stopped before.
        let experiment = self.experiment_in(org, key).await?;
        let at = experiment.stopped_at.map(|t| t.to_rfc3339()).unwrap_or_default();
        Err(ServiceError::Conflict(format!("experiment {key} was already stopped at {at}")))
    }

    pub async fn list_experiments(&self, actor: &Actor) -> Result<Vec<Experiment>> {
        let org = actor.authorize(Action::Read)?;
        Ok(self.store.list_experiments(org).await?)
    }

    /// The A/B analysis of an experiment over its loop's events between its start and end dates (or the
    /// day it was stopped).
    pub async fn analyze_experiment(&self, actor: &Actor, key: &str) -> Result<ExperimentAnalysis> {
        let org = actor.authorize(Action::Read)?;
        let experiment = self.experiment_in(org, key).await?;
        let window = (experiment.starts_on, experiment.last_day().min(Utc::now().date_naive()));
        let bytes = self.event_bytes(org, &experiment.loop_key, Some(window)).await?;
        let (control, treatment, share) =
            (experiment.control.clone(), experiment.treatment.clone(), experiment.expected_share);
        let report = tokio::task::spawn_blocking(move || {
            let events = segment::frame_of(&bytes, Some(&RATIO_COLUMNS)).map_err(|e| e.to_string())?;
            let events = segment::between_days(events, window.0, window.1);
            Ok::<_, String>(slope_metrics::ab::ab_of(events, &control, &treatment, Some(share)))
        })
        .await
        .map_err(|e| internal("analysing an experiment", e))?
        .map_err(|e| internal("analysing an experiment", e))?;
        match report {
            Ok(report) => Ok(ExperimentAnalysis { experiment, report }),
            Err(slope_metrics::ab::AbError::Polars(e)) => Err(internal("analysing an experiment", e)),
            // Not enough data yet (an arm without users, say) is an answer, not a failure.
            Err(e) => Err(ServiceError::Conflict(format!("cannot analyse {key} yet: {e}"))),
        }
    }

    /// Weekly cohort retention of a loop's users.
    pub async fn retention(&self, actor: &Actor, loop_key: &str) -> Result<slope_metrics::retention::Retention> {
        let org = actor.authorize(Action::Read)?;
        self.ensure_loop(org, loop_key).await?;
        let bytes = self.event_bytes(org, loop_key, None).await?;
        blocking("computing retention", move || {
            let events = segment::frame_of(&bytes, Some(&["loop", "user_id", "ts"])).map_err(|e| e.to_string())?;
            slope_metrics::retention::retention_of(events).map_err(|e| e.to_string())
        })
        .await
    }

    pub async fn experiment(&self, actor: &Actor, key: &str) -> Result<Experiment> {
        self.experiment_in(actor.authorize(Action::Read)?, key).await
    }

    async fn experiment_in(&self, org: OrgId, key: &str) -> Result<Experiment> {
        self.store
            .experiment(org, key)
            .await?
            .ok_or_else(|| ServiceError::NotFound(format!("no experiment has the key {key:?}")))
    }
}

/// What to recompute of one metric: the listed buckets, or with `full` its whole series.
struct Plan {
    metric: MetricDefinition,
    buckets: Vec<NaiveDate>,
    full: bool,
}

/// Every bucket of a metric from its loop's first event to today (or to the last event's window).
fn full_windows(
    metric: &MetricDefinition,
    kind: SeriesKind,
    events: &segment::LazyFrame,
    today: NaiveDate,
) -> Result<Vec<Window>, String> {
    let Some((first, last)) = segment::lazy_time_range(events).map_err(|e| e.to_string())? else { return Ok(vec![]) };
    let (first, last) = (first.date_naive(), last.date_naive());
    let reach = if kind == SeriesKind::Retention { 0 } else { metric.window_days.unwrap_or(1) - 1 };
    let end = today.min(last + Duration::days(reach.max(0)));
    let mut windows = vec![];
    let mut bucket = metric.granularity.bucket_of(first);
    while bucket <= end {
        let (from, to) = metric.window_of(bucket);
        windows.push(Window { bucket, from, to });
        bucket += Duration::days(metric.granularity.days());
    }
    Ok(windows)
}

/// The whole bucket range, in dates both databases can store (PostgreSQL's DATE cannot hold chrono's
/// MIN and MAX).
fn everything() -> Option<(NaiveDate, NaiveDate)> {
    NaiveDate::from_ymd_opt(1900, 1, 1).zip(NaiveDate::from_ymd_opt(9999, 12, 31))
}

/// The columns a ratio of characters per variant needs: segments are decoded for these only, not for
/// their text columns.
const RATIO_COLUMNS: [&str; 5] = ["ts", "variant", "user_id", "accepted_chars", "suggested_chars"];

/// The reserved stream of transaction events. Loop keys start with a letter or digit, so no loop can
/// share it.
pub const TRANSACTIONS: &str = "_transactions";

/// The decompressed body of a batch and the hash that recognises a retry of it.
fn unpack(input: &BatchInput<'_>) -> Result<(Vec<u8>, String)> {
    let body = if input.gzip { gunzip(input.body)? } else { input.body.to_vec() };
    if body.len() > MAX_BATCH_BYTES {
        return Err(FieldErrors::single(
            "body",
            format!("is over {} MiB; send several batches", MAX_BATCH_BYTES >> 20),
        )
        .into());
    }
    let content_hash = content_hash(&body);
    Ok((body, content_hash))
}

/// The SHA-256 of a batch body, in hex: how a byte-identical retry is recognised.
pub fn content_hash(body: &[u8]) -> String {
    Sha256::digest(body).iter().map(|b| format!("{b:02x}")).collect()
}

/// The validated rows of a batch, of either stream.
enum Rows {
    Interactions(Vec<InteractionEvent>),
    Transactions(Vec<TransactionEvent>),
}

impl Rows {
    fn len(&self) -> usize {
        match self {
            Rows::Interactions(r) => r.len(),
            Rows::Transactions(r) => r.len(),
        }
    }

    fn sort(&mut self) {
        match self {
            Rows::Interactions(r) => r.sort_by_key(|e| e.ts),
            Rows::Transactions(r) => r.sort_by_key(|e| e.ts),
        }
    }

    /// The first and last time, once sorted.
    fn range(&self) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
        match self {
            Rows::Interactions(r) => r.first().zip(r.last()).map(|(a, b)| (a.ts, b.ts)),
            Rows::Transactions(r) => r.first().zip(r.last()).map(|(a, b)| (a.ts, b.ts)),
        }
    }

    /// The rows whose ids are not in `known`, and how many were dropped.
    fn without(self, known: &std::collections::HashSet<String>) -> (Rows, usize) {
        let before = self.len();
        let kept = match self {
            Rows::Interactions(r) => {
                Rows::Interactions(r.into_iter().filter(|e| !known.contains(&e.event_id)).collect())
            }
            Rows::Transactions(r) => {
                Rows::Transactions(r.into_iter().filter(|e| !known.contains(&e.event_id)).collect())
            }
        };
        let dropped = before - kept.len();
        (kept, dropped)
    }

    fn encode(&self) -> Result<Vec<u8>, String> {
        match self {
            Rows::Interactions(r) => segment::encode(r),
            Rows::Transactions(r) => segment::encode_transactions(r),
        }
        .map_err(|e| e.to_string())
    }
}

fn gunzip(body: &[u8]) -> Result<Vec<u8>> {
    let mut out = vec![];
    flate2::read::MultiGzDecoder::new(body)
        .take(MAX_BATCH_BYTES as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| FieldErrors::single("body", format!("is not valid gzip: {e}")))?;
    Ok(out)
}
