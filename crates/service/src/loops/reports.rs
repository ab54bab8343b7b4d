//! The reports computed from a loop's stored events: acceptance, drift, experiments, retention and
//! customer lifetime value.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use chrono::{Datelike, Duration, NaiveDate, Utc};
use serde::Serialize;

use slope_domain::*;
use slope_metrics::acceptance::{AcceptancePoint, Bucket, acceptance_by_line, acceptance_of};
use slope_metrics::drift::{Drift, DriftBand, DriftField, drift};
use slope_metrics::ltv::{Customer, LtvReport, ltv_report};
use slope_metrics::ltv_series;
use slope_metrics::segment;
use slope_metrics::transactions::{Period, SummaryOptions, summaries_of};
use slope_store::{BatchRecord, LoopSummary};

use super::{Loops, TRANSACTIONS, blocking, day_start};
use crate::error::internal;
use crate::{Result, ServiceError};

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
    /// The lines the loop page draws: the current experiment's arms, the champion and earlier models
    /// pooled (see `slope_domain::acceptance_lines`): `{label, role, variants, model}`.
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<Object>))]
    pub lines: Vec<AcceptanceLine>,
    /// Acceptance per line and day, each point's `variant` being its line's label; a pooled line sums
    /// the characters of its variants per user, so its interval is that of the pool.
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<Object>))]
    pub by_line: Vec<AcceptancePoint>,
    pub metrics: Vec<MetricDefinition>,
    pub batches: Vec<BatchRecord>,
}

/// The columns a ratio of characters per variant needs: segments are decoded for these only, not for
/// their text columns.
const RATIO_COLUMNS: [&str; 5] = ["ts", "variant", "user_id", "accepted_chars", "suggested_chars"];

impl Loops {
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

    /// The Customers page: the lifetime value metrics with their series, and the models fitted to
    /// every transaction so far, as the metrics fit them (weeks, 52 ahead, 10 % a year), with what
    /// they predict. Without transactions, or when the fit fails, the page says why.
    pub async fn customers(&self, actor: &Actor) -> Result<CustomersReport> {
        let org = actor.authorize(Action::Read)?;
        let mut metrics = vec![];
        for metric in self.store.list_metrics(org).await?.into_iter().filter(|m| m.kind == MetricKind::Ltv) {
            metrics.push(self.series_in(org, &metric.key).await?);
        }
        // A fit of every customer takes seconds on a large history, so it is made once per change of
        // the transactions, like retention, not once per view.
        let ids: Vec<i64> = self.store.live_segments(org, TRANSACTIONS, None).await?.iter().map(|r| r.id).collect();
        let key = (org, TRANSACTIONS.to_owned());
        if let Some(hit) = self.customer_fits.get(&key, &ids) {
            return Ok(CustomersReport { metrics, fit: Some((*hit).clone()), fit_problem: None });
        }
        let discount = ltv_series::weekly_discount();
        let (fit, fit_problem) = match self.ltv(actor, Period::Week, ltv_series::HORIZON_WEEKS, discount).await {
            Ok(report) => {
                let fit = fit_view(report);
                self.customer_fits.put(key, ids, Arc::new(fit.clone()));
                (Some(fit), None)
            }
            Err(ServiceError::NotFound(message) | ServiceError::Conflict(message)) => (None, Some(message)),
            Err(e) => return Err(e),
        };
        Ok(CustomersReport { metrics, fit, fit_problem })
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
        let (acceptance, lines, by_line) = match &summary {
            None => (vec![], vec![], vec![]),
            Some(s) => {
                let to = s.last_event.date_naive();
                let from = to - Duration::days(days.clamp(1, 366) - 1);
                let bytes = self.event_bytes(org, loop_key, Some((from, to))).await?;
                let experiment = current_experiment(&self.store.list_experiments(org).await?, loop_key, Utc::now());
                let champion_id = self
                    .store
                    .aliases(org, Some(loop_key))
                    .await?
                    .into_iter()
                    .find(|a| a.alias == AliasKind::Champion)
                    .map(|a| a.model_id);
                // The models the lines name: the arms' and the champion, which may be models of no loop
                // (a shared base model), so they are read by id rather than among the loop's models.
                let mut models = Vec::new();
                let arms = experiment.as_ref().map(|e| [e.control_model_id, e.treatment_model_id]).unwrap_or_default();
                for id in arms.into_iter().chain([champion_id]).flatten() {
                    if !models.iter().any(|m: &Model| m.id == id)
                        && let Some(model) = self.store.model(org, id).await?
                    {
                        models.push(model);
                    }
                }
                let champion = champion_id.and_then(|id| models.iter().find(|m| m.id == id).cloned());
                blocking("computing acceptance", move || {
                    let events = segment::between_days(
                        segment::frame_of(&bytes, Some(&RATIO_COLUMNS)).map_err(|e| e.to_string())?,
                        from,
                        to,
                    );
                    let acceptance = acceptance_of(events.clone(), true, Bucket::Day).map_err(|e| e.to_string())?;
                    let mut seen: Vec<String> = acceptance.iter().filter_map(|p| p.variant.clone()).collect();
                    seen.sort();
                    seen.dedup();
                    let lines = acceptance_lines(&seen, experiment.as_ref(), champion.as_ref(), &models);
                    let by_line = acceptance_by_line(events, &lines, Bucket::Day).map_err(|e| e.to_string())?;
                    Ok((acceptance, lines, by_line))
                })
                .await?
            }
        };
        Ok(LoopReport {
            summary,
            method: "Σ accepted / Σ suggested characters; 95 % CI by the delta method with users as the randomisation unit",
            acceptance,
            lines,
            by_line,
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
        let (result, _) = match self.measure_drift(org, loop_key, drift_field, reference, current).await? {
            Ok(measured) => measured,
            Err(empty) => {
                return Err(FieldErrors::single(empty, format!("has no {field} values in that window")).into());
            }
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

    /// Measures the drift of `field` between two windows of a loop's events, with how many values each
    /// window held; `Err(window)` names a window ("reference" or "current") without values. Monitors
    /// call this on their schedule; it records nothing.
    pub async fn measure_drift(
        &self,
        org: OrgId,
        loop_key: &str,
        field: DriftField,
        reference: (NaiveDate, NaiveDate),
        current: (NaiveDate, NaiveDate),
    ) -> Result<Result<(Drift, (usize, usize)), &'static str>> {
        let from = reference.0.min(current.0);
        let to = reference.1.max(current.1);
        let bytes = self.event_bytes(org, loop_key, Some((from, to))).await?;
        let (r, c) = blocking("reading events for drift", move || {
            // The segments are decoded once; each window filters the same frame.
            let columns = ["ts", "latency_ms", "cost_usd", "suggested_chars", "accepted_chars"];
            let events = segment::frame_of(&bytes, Some(&columns)).map_err(|e| e.to_string())?;
            let read = |(a, b): (NaiveDate, NaiveDate)| -> Result<Vec<f64>, String> {
                let frame = segment::between_days(events.clone(), a, b);
                slope_metrics::drift::values_of(frame, field).map_err(|e| e.to_string())
            };
            Ok((read(reference)?, read(current)?))
        })
        .await?;
        Ok(match drift(&r, &c) {
            Some(result) => Ok((result, (r.len(), c.len()))),
            None if r.is_empty() => Err("reference"),
            None => Err("current"),
        })
    }

    pub async fn drift_alerts(&self, actor: &Actor) -> Result<Vec<DriftAlert>> {
        let org = actor.authorize(Action::Read)?;
        Ok(self.store.list_drift_alerts(org, 100).await?)
    }

    // ---- experiments ---------------------------------------------------------------------------

    /// Creates an experiment. The arms' models, when given, must be models of the organisation
    /// registered for this loop (or for no loop), so the gate can trust what the experiment says served.
    pub async fn create_experiment(&self, actor: &Actor, input: &ExperimentInput) -> Result<Experiment> {
        let org = actor.authorize(Action::Operate)?;
        let spec = input.validate()?;
        let mut errors = FieldErrors::new();
        for (field, id) in [("control_model", spec.control_model), ("treatment_model", spec.treatment_model)] {
            let Some(id) = id else { continue };
            match self.store.model(org, id).await? {
                None => errors.add(field, format!("no model has the id {id}")),
                Some(m) if m.loop_key.as_deref().is_some_and(|l| l != spec.loop_key.as_str()) => errors.add(
                    field,
                    format!(
                        "model {id} was trained for loop {}, not {}",
                        m.loop_key.unwrap_or_default(),
                        spec.loop_key
                    ),
                ),
                Some(_) => {}
            }
        }
        errors.into_result(())?;
        Ok(self.store.create_experiment(org, &spec).await?)
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

    /// An experiment with its analysis for its page; an experiment whose events cannot be analysed yet
    /// (a conflict for the API) is shown with the reason instead.
    pub async fn experiment_page(&self, actor: &Actor, key: &str) -> Result<ExperimentPage> {
        match self.analyze_experiment(actor, key).await {
            Ok(ExperimentAnalysis { experiment, report }) => {
                Ok(ExperimentPage { experiment, report: Some(report), pending: None })
            }
            Err(ServiceError::Conflict(why)) => {
                let experiment = self.experiment_in(actor.authorize(Action::Read)?, key).await?;
                Ok(ExperimentPage { experiment, report: None, pending: Some(why) })
            }
            Err(e) => Err(e),
        }
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
    ///
    /// Computed once per change of the loop's events, not once per view: segment files never change,
    /// so the ids of the live segments name the result exactly, and a cached matrix is used for as long
    /// as they are the same (a batch or a compaction changes them).
    pub async fn retention(&self, actor: &Actor, loop_key: &str) -> Result<slope_metrics::retention::Retention> {
        let org = actor.authorize(Action::Read)?;
        self.ensure_loop(org, loop_key).await?;
        let rows = self.store.live_segments(org, loop_key, None).await?;
        let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
        let key = (org, loop_key.to_owned());
        if let Some(hit) = self.retention.get(&key, &ids) {
            return Ok((*hit).clone());
        }
        let bytes = self.segments.get_all(&rows).await?;
        let computed = blocking("computing retention", move || {
            let events = segment::frame_of(&bytes, Some(&["loop", "user_id", "ts"])).map_err(|e| e.to_string())?;
            slope_metrics::retention::retention_of(events).map_err(|e| e.to_string())
        })
        .await?;
        self.retention.put(key, ids, Arc::new(computed.clone()));
        Ok(computed)
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

/// Results computed from a stream's live segments (a loop's retention matrix, the Customers page's
/// fit of the transactions), by organisation and stream, each with the live segment ids it was computed
/// from: segment files never change, so the ids name the result exactly. Bounded: past
/// [`SegmentCache::CAPACITY`] streams, the cache starts over rather than grow.
pub(crate) struct SegmentCache<T>(Arc<Mutex<HashMap<StreamOf, Computed<T>>>>);

/// A result and the live segment ids it was computed from.
type Computed<T> = (Vec<i64>, Arc<T>);

/// A stream (a loop, or the transactions) of an organisation.
type StreamOf = (OrgId, String);

// Written out rather than derived: a derive would ask `T` itself to be `Clone`, `Default` and `Debug`.
impl<T> Clone for SegmentCache<T> {
    fn clone(&self) -> Self {
        SegmentCache(Arc::clone(&self.0))
    }
}

impl<T> Default for SegmentCache<T> {
    fn default() -> Self {
        SegmentCache(Default::default())
    }
}

impl<T> std::fmt::Debug for SegmentCache<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let entries = self.0.lock().map(|c| c.len()).unwrap_or_default();
        f.debug_struct("SegmentCache").field("entries", &entries).finish()
    }
}

impl<T> SegmentCache<T> {
    const CAPACITY: usize = 512;

    fn get(&self, key: &StreamOf, segments: &[i64]) -> Option<Arc<T>> {
        let cached = self.0.lock().unwrap_or_else(|e| e.into_inner());
        cached.get(key).filter(|(ids, _)| ids == segments).map(|(_, r)| Arc::clone(r))
    }

    fn put(&self, key: StreamOf, segments: Vec<i64>, value: Arc<T>) {
        let mut cached = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if cached.len() >= Self::CAPACITY && !cached.contains_key(&key) {
            cached.clear();
        }
        cached.insert(key, (segments, value));
    }
}

/// The page's view of a fit.
fn fit_view(report: LtvReport) -> CustomerValueFit {
    let purchases = report.bg_nbd.params;
    CustomerValueFit {
        method: ltv_series::METHOD.to_owned(),
        customers: report.customers,
        horizon_weeks: report.horizon_periods,
        mean_clv: report.mean_clv,
        r: purchases.r,
        alpha: purchases.alpha,
        a: purchases.a,
        b: purchases.b,
        spend: report.gamma_gamma.map(|g| SpendModel { p: g.params.p, q: g.params.q, v: g.params.v }),
        distribution: report.distribution,
        p_alive: report.p_alive_curve,
        cohorts: report
            .cohorts
            .into_iter()
            .map(|c| CohortValueRow {
                cohort: c.cohort,
                customers: c.customers,
                mean_p_alive: c.mean_p_alive,
                mean_expected_purchases: c.mean_expected_purchases,
                mean_clv: c.mean_clv,
            })
            .collect(),
    }
}
