//! Keeping metric series materialised: the buckets a batch's events touch, a whole series when a
//! metric is created or changed, trailing windows as days pass, and whatever a failure left pending;
//! and keeping the segments few by compacting the small ones.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use chrono::{Duration, NaiveDate, Utc};

use slope_domain::*;
use slope_metrics::ltv_series::{LtvOutcome, Warm, ltv_points};
use slope_metrics::segment;
use slope_metrics::series::{self, Filter, SeriesKind, Window};
use slope_store::{NewSegment, PointsWrite, ProblemWrite, RECOMPUTE_ATTEMPTS, Recompute, SegmentRow, SegmentsRead};

use super::{COMPACT_AT, Loops, RETIRED_GRACE, SMALL_SEGMENT_BYTES, TRANSACTIONS, blocking, day_start};
use crate::segments::SegmentStore;
use crate::{Result, ServiceError};

fn kind_of(metric: &MetricDefinition) -> Option<SeriesKind> {
    match metric.kind {
        MetricKind::AcceptanceRate => Some(SeriesKind::AcceptanceRate),
        MetricKind::ActiveUsers => Some(SeriesKind::ActiveUsers),
        MetricKind::Retention => Some(SeriesKind::Retention),
        // Lifetime value is fitted from transactions, not computed from a loop's events.
        MetricKind::Ltv | MetricKind::EvalScore | MetricKind::Custom => None,
    }
}

impl Loops {
    /// Recomputes the buckets touched by segments not yet materialised, in every organisation: at
    /// start-up and every minute, for what a crash or a failed recomputation left behind (a batch
    /// recomputes its own loop as it is recorded). This is the upkeep's cross-organisation read. A loop
    /// whose recomputation fails is logged and left pending for the next round, so it holds up no other
    /// loop. Returns the metric keys updated and the loops left pending.
    pub async fn materialize_pending(&self) -> Result<(Vec<String>, Vec<String>)> {
        let pending = self.store.unmaterialized_segments().await?;
        let mut groups: HashMap<(i64, String), Vec<SegmentRow>> = HashMap::new();
        for s in pending {
            groups.entry((s.org_id, s.loop_key.clone())).or_default().push(s);
        }
        let (mut updated, mut failed) = (BTreeSet::new(), vec![]);
        for ((org, loop_key), segments) in groups {
            match self.materialize_segments(OrgId(org), &loop_key, &segments, &Fetched::default()).await {
                Ok(keys) => updated.extend(keys),
                Err(e) => {
                    tracing::warn!(org, loop_key, error = %e, "recomputing metrics failed; the segments stay pending");
                    failed.push(loop_key);
                }
            }
        }
        Ok((updated.into_iter().collect(), failed))
    }

    pub(super) async fn materialize_segments(
        &self,
        org: OrgId,
        loop_key: &str,
        segments: &[SegmentRow],
        fetched: &Fetched,
    ) -> Result<Vec<String>> {
        let ids: Vec<i64> = segments.iter().map(|s| s.id).collect();
        if loop_key == TRANSACTIONS {
            // Every week from the earliest transaction of the batch on sees the new purchases.
            let from = segments.iter().map(|s| s.min_ts.date_naive()).min();
            let metrics: Vec<MetricDefinition> =
                self.store.list_metrics(org).await?.into_iter().filter(|m| m.kind == MetricKind::Ltv).collect();
            let keys = metrics.iter().map(|m| m.key.clone()).collect();
            self.run_ltv(org, metrics, from, &ids, fetched).await?;
            return Ok(keys);
        }
        let plans = plans_for(&self.store.list_metrics(org).await?, loop_key, segments);
        let keys = plans.iter().map(|p| p.metric.key.clone()).collect();
        self.run_plans(org, loop_key, plans, &ids).await?;
        Ok(keys)
    }

    /// Computes the planned points of one loop's metrics from its live segments, outside any
    /// transaction, and writes them with `mark` marked materialised, provided those segments are still
    /// the live ones (see [`slope_store::Store::apply_points`]); when another batch or a compaction
    /// changed them meanwhile, it computes again. After [`RECOMPUTE_ATTEMPTS`] lost races the segments
    /// stay pending for the next round; a recomputation asked for by a person (`mark` empty) is then
    /// refused as busy instead.
    pub(super) async fn run_plans(&self, org: OrgId, loop_key: &str, plans: Vec<Plan>, mark: &[i64]) -> Result<()> {
        let today = Utc::now().date_naive();
        for _ in 0..RECOMPUTE_ATTEMPTS {
            let (work, recompute) = prepare(plans.clone(), today);
            let (read, writes) = match recompute {
                Recompute::Later | Recompute::Nothing if mark.is_empty() => return Ok(()),
                Recompute::Later | Recompute::Nothing => (None, vec![]),
                Recompute::Events(range) => {
                    let rows = self.store.live_segments(org, loop_key, range).await?;
                    let ids = rows.iter().map(|s| s.id).collect();
                    let writes = compute(&self.segments, &Fetched::default(), work, rows, today).await?;
                    (Some(SegmentsRead { loop_key, range, ids }), writes)
                }
            };
            if self.store.apply_points(org, read.as_ref(), mark, &writes).await? {
                return Ok(());
            }
        }
        if mark.is_empty() {
            return Err(ServiceError::Busy {
                message: format!("the events of loop {loop_key} kept changing while its metrics were computed"),
                retry_after_secs: 5,
            });
        }
        tracing::info!(org = org.0, loop_key, "the loop's segments kept changing while its metrics were computed");
        Ok(())
    }

    /// Refits the lifetime value `metrics` for every week from the one holding `from` (their whole
    /// series when `None`) from the organisation's live transactions, and writes the points with `mark`
    /// marked materialised, provided the transactions read are still the live ones (as
    /// [`Loops::run_plans`] does for events), reading each segment from `fetched` when the ingest
    /// already holds it. Each metric's fits also start from its last one on this server.
    pub(super) async fn run_ltv(
        &self,
        org: OrgId,
        metrics: Vec<MetricDefinition>,
        from: Option<NaiveDate>,
        mark: &[i64],
        fetched: &Fetched,
    ) -> Result<()> {
        for _ in 0..RECOMPUTE_ATTEMPTS {
            let rows = self.store.live_segments(org, TRANSACTIONS, None).await?;
            let ids = rows.iter().map(|s| s.id).collect();
            let writes = if metrics.is_empty() || rows.is_empty() {
                vec![]
            } else {
                let bytes = fetched.get_all(&self.segments, &rows).await?;
                let warm = self.ltv_warm.starts(org, &metrics);
                let work = metrics.clone();
                let (writes, fitted) =
                    blocking("fitting lifetime value", move || ltv_writes(&bytes, work, from, warm)).await?;
                self.ltv_warm.keep(org, fitted);
                writes
            };
            let read = SegmentsRead { loop_key: TRANSACTIONS, range: None, ids };
            if self.store.apply_points(org, Some(&read), mark, &writes).await? {
                return Ok(());
            }
        }
        if mark.is_empty() {
            return Err(ServiceError::Busy {
                message: "the transactions kept changing while lifetime value was fitted".into(),
                retry_after_secs: 5,
            });
        }
        Ok(())
    }

    /// Recomputes a computed metric's whole series from every stored event of its loop.
    pub async fn recompute(&self, actor: &Actor, key: &str) -> Result<MetricSeries> {
        self.recompute_in(actor.authorize(Action::Operate)?, key).await
    }

    pub(super) async fn recompute_in(&self, org: OrgId, key: &str) -> Result<MetricSeries> {
        let metric = self.metric_in(org, key).await?;
        if metric.kind == MetricKind::Ltv {
            self.run_ltv(org, vec![metric], None, &[], &Fetched::default()).await?;
        } else if let Some(loop_key) = metric.loop_key.clone().filter(|_| metric.kind.from_events()) {
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
}

/// What to recompute of one metric: the listed buckets, or with `full` its whole series.
#[derive(Clone)]
pub(super) struct Plan {
    pub(super) metric: MetricDefinition,
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

/// What recomputing `segments` of a loop asks of each of its computed metrics: the buckets their
/// days touch, or for retention the whole series.
pub(super) fn plans_for(metrics: &[MetricDefinition], loop_key: &str, segments: &[SegmentRow]) -> Vec<Plan> {
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
    for metric in metrics {
        if metric.loop_key.as_deref() != Some(loop_key) || kind_of(metric).is_none() {
            continue;
        }
        // Every cohort is recomputed: a late event can move a user's first week, and a cohort's
        // following week can fill in after the fact.
        let buckets: Vec<NaiveDate> = if metric.kind == MetricKind::Retention {
            vec![]
        } else {
            days.iter().flat_map(|d| metric.buckets_touched_by(*d)).collect::<BTreeSet<_>>().into_iter().collect()
        };
        plans.push(Plan { full: metric.kind == MetricKind::Retention, metric: metric.clone(), buckets });
    }
    plans
}

/// One metric's share of a recomputation: how its series is computed and the windows to compute.
pub(super) struct Work {
    plan: Plan,
    kind: SeriesKind,
    windows: Vec<Window>,
}

/// The windows each plan computes up to `today`, and which events they need: none (only buckets still
/// to come, or nothing planned), a range, or every event of the loop.
pub(super) fn prepare(plans: Vec<Plan>, today: NaiveDate) -> (Vec<Work>, Recompute) {
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
        work.push(Work { plan, kind, windows });
    }
    let recompute = match (needs_all, from, to) {
        _ if work.is_empty() => Recompute::Nothing,
        (true, _, _) => Recompute::Events(None),
        (false, Some(f), Some(t)) => Recompute::Events(Some((day_start(f), day_start(t.succ_opt().unwrap_or(t))))),
        // Only buckets still to come: nothing to compute yet.
        (false, _, _) => Recompute::Nothing,
    };
    (work, recompute)
}

/// Computes the points of `work` from the events of `rows`, reading each segment from `fetched` when
/// it is already in memory.
pub(super) async fn compute(
    segments: &SegmentStore,
    fetched: &Fetched,
    work: Vec<Work>,
    rows: Vec<SegmentRow>,
    today: NaiveDate,
) -> Result<Vec<PointsWrite>> {
    let bytes = fetched.get_all(segments, &rows).await?;
    blocking("computing metrics", move || {
        let columns = ["ts", "user_id", "variant", "unit", "accepted_chars", "suggested_chars"];
        let events = segment::frame_of(&bytes, Some(&columns)).map_err(|e| e.to_string())?;
        let now = Utc::now();
        let mut writes = vec![];
        for Work { plan, kind, windows } in work {
            let filter = Filter { variant: plan.metric.variant.clone(), unit: plan.metric.unit.clone() };
            let windows = if plan.full { full_windows(&plan.metric, kind, &events, today)? } else { windows };
            let points = series::compute(kind, &filter, events.clone(), &windows).map_err(|e| e.to_string())?;
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
            writes.push(PointsWrite { metric: plan.metric, points, replace, problem: ProblemWrite::Unchanged });
        }
        Ok(writes)
    })
    .await
}

/// The last fit of each lifetime value metric version on this server, to start the next one from.
/// Losing it (a restart, another server) only makes the next fit start cold.
#[derive(Clone, Debug, Default)]
pub(super) struct LtvWarmStarts(Arc<Mutex<HashMap<MetricVersion, Warm>>>);

/// A metric version of an organisation: (organisation, key, version).
type MetricVersion = (i64, String, i64);

/// What fitting lifetime value gives: the points to write, and each metric's newest fit.
type LtvFits = (Vec<PointsWrite>, Vec<(MetricDefinition, Warm)>);

impl LtvWarmStarts {
    fn starts(&self, org: OrgId, metrics: &[MetricDefinition]) -> HashMap<String, Warm> {
        let Ok(kept) = self.0.lock() else { return HashMap::new() };
        metrics.iter().filter_map(|m| Some((m.key.clone(), *kept.get(&(org.0, m.key.clone(), m.version))?))).collect()
    }

    fn keep(&self, org: OrgId, fitted: Vec<(MetricDefinition, Warm)>) {
        if let Ok(mut kept) = self.0.lock() {
            for (m, warm) in fitted {
                kept.insert((org.0, m.key, m.version), warm);
            }
        }
    }
}

/// The points of lifetime value `metrics` for the complete weeks from the one holding `from` (all weeks
/// from the first transaction when `None`) to the last transaction's, with each metric's note and newest
/// fit. A week whose fit fails keeps its earlier point; when it is the newest week, the metric notes
/// why, and what it feeds keeps its last value until it goes stale.
fn ltv_writes(
    bytes: &[Bytes],
    metrics: Vec<MetricDefinition>,
    from: Option<NaiveDate>,
    warm: HashMap<String, Warm>,
) -> Result<LtvFits, String> {
    let frame = segment::transactions_frame(bytes).map_err(|e| e.to_string())?;
    let Some((first, last)) = segment::lazy_time_range(&frame).map_err(|e| e.to_string())? else {
        return Ok((vec![], vec![]));
    };
    let start = Granularity::Week.bucket_of(from.unwrap_or(first.date_naive()).max(first.date_naive()));
    let now = Utc::now();
    // Complete weeks only: the models count time in whole weeks, so a week fitted on its first days
    // would count them as a whole week in which most customers have not bought yet, and its point
    // (the one key results follow) would sit well below the weeks around it until the week ends.
    let mut buckets = vec![];
    let mut bucket = start;
    while bucket <= last.date_naive() && bucket + Duration::days(6) < now.date_naive() {
        buckets.push(bucket);
        bucket += Duration::days(7);
    }
    let (mut writes, mut fitted) = (vec![], vec![]);
    for metric in metrics {
        let outcomes = ltv_points(frame.clone(), metric.unit.as_deref(), &buckets, warm.get(&metric.key).copied())
            .map_err(|e| e.to_string())?;
        let mut points = vec![];
        // No week computed (the unit's transactions all end before the batch's weeks): nothing new
        // to note, and an earlier note still holds.
        let mut problem = if outcomes.is_empty() { ProblemWrite::Unchanged } else { ProblemWrite::Clear };
        let mut newest = None;
        for outcome in outcomes {
            match outcome {
                LtvOutcome::Point { bucket, estimate, observed_at } => {
                    points.push(MetricPoint {
                        bucket,
                        value: estimate.mean,
                        n: Some(estimate.customers as i64),
                        ci_low: estimate.ci.map(|c| c.0),
                        ci_high: estimate.ci.map(|c| c.1),
                        observed_at,
                        computed_at: now,
                    });
                    newest = Some(estimate.fitted);
                    problem = ProblemWrite::Clear;
                }
                LtvOutcome::Failed { bucket, reason } => {
                    problem = ProblemWrite::Record { bucket, message: reason, at: now };
                }
            }
        }
        if let Some(warm) = newest {
            fitted.push((metric.clone(), warm));
        }
        let replace = if from.is_none() { everything() } else { None };
        writes.push(PointsWrite { metric, points, replace, problem });
    }
    Ok((writes, fitted))
}

/// Segments already in memory during one ingest: those read to drop duplicates and the one written,
/// so that recomputing the batch's metrics reads none of them again.
#[derive(Clone, Default)]
pub(super) struct Fetched(Arc<Mutex<HashMap<String, Bytes>>>);

impl Fetched {
    pub(super) fn keep(&self, path: &str, bytes: Bytes) {
        if let Ok(mut kept) = self.0.lock() {
            kept.insert(path.to_owned(), bytes);
        }
    }

    /// The bytes of `rows`, from memory where kept, else from the segment store.
    pub(super) async fn get_all(&self, segments: &SegmentStore, rows: &[SegmentRow]) -> Result<Vec<Bytes>> {
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let kept = self.0.lock().ok().and_then(|kept| kept.get(&row.path).cloned());
            out.push(match kept {
                Some(bytes) => bytes,
                None => segments.get(&row.path).await?,
            });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use chrono::{DateTime, NaiveDate, Utc};

    use super::*;

    fn day(raw: &str) -> NaiveDate {
        raw.parse().unwrap()
    }

    fn at(raw: &str) -> DateTime<Utc> {
        raw.parse().unwrap()
    }

    fn metric(key: &str, kind: MetricKind, loop_key: &str, window_days: Option<i64>) -> MetricDefinition {
        MetricDefinition {
            id: 1,
            org_id: OrgId(1),
            key: key.into(),
            version: 1,
            name: key.into(),
            kind,
            loop_key: Some(loop_key.into()),
            variant: None,
            unit: None,
            granularity: Granularity::Day,
            window_days,
            freshness_hours: 24,
            created_at: at("2027-01-01T00:00:00Z"),
        }
    }

    fn segment(min: &str, max: &str) -> SegmentRow {
        SegmentRow {
            id: 1,
            org_id: 1,
            loop_key: "notes".into(),
            path: "p".into(),
            rows: 1,
            bytes: 1,
            min_ts: at(min),
            max_ts: at(max),
            materialized: false,
            created_at: at(max),
        }
    }

    #[test]
    fn a_batch_plans_the_buckets_its_days_touch_and_reads_only_their_windows() {
        let metrics = [
            metric("notes.acceptance", MetricKind::AcceptanceRate, "notes", Some(7)),
            metric("notes.score", MetricKind::EvalScore, "notes", None),
            metric("search.acceptance", MetricKind::AcceptanceRate, "search", None),
        ];
        let plans = plans_for(&metrics, "notes", &[segment("2027-01-10T08:00:00Z", "2027-01-11T09:00:00Z")]);
        // Pushed metrics and other loops' metrics are not computed from these events.
        assert_eq!(plans.iter().map(|p| p.metric.key.as_str()).collect::<Vec<_>>(), ["notes.acceptance"]);
        // A 7-day window ending on any of the 10th to the 17th holds an event of the 10th or the 11th.
        assert_eq!(plans[0].buckets.first(), Some(&day("2027-01-10")));
        assert_eq!(plans[0].buckets.last(), Some(&day("2027-01-17")));

        // Buckets still to come are left for the upkeep; the events read reach back one window.
        let (work, recompute) = prepare(plans, day("2027-01-12"));
        assert_eq!(work[0].windows.len(), 3);
        assert_eq!(recompute, Recompute::Events(Some((at("2027-01-04T00:00:00Z"), at("2027-01-13T00:00:00Z")))));
    }

    #[test]
    fn retention_reads_every_event_and_nothing_planned_reads_none() {
        let retention = [metric("notes.retention", MetricKind::Retention, "notes", None)];
        let plans = plans_for(&retention, "notes", &[segment("2027-01-10T08:00:00Z", "2027-01-10T09:00:00Z")]);
        assert_eq!(prepare(plans, day("2027-02-01")).1, Recompute::Events(None));

        let acceptance = [metric("notes.acceptance", MetricKind::AcceptanceRate, "notes", None)];
        let future = plans_for(&acceptance, "notes", &[segment("2027-03-01T08:00:00Z", "2027-03-01T09:00:00Z")]);
        assert_eq!(prepare(future, day("2027-02-01")).1, Recompute::Nothing, "only days still to come");
        assert_eq!(prepare(vec![], day("2027-02-01")).1, Recompute::Nothing, "no metric on the loop");
    }
}
