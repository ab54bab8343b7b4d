//! `/api/v1` routes of the loop metrics engine: event ingestion, loops, metrics and their points,
//! experiments and drift.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use slope_domain::*;
use slope_service::{
    BatchInput, ExperimentAnalysis, Format, IngestAck, LoopReport, LoopSummary, Loops, MAX_BATCH_BYTES, ServiceError,
    Services,
};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouterExt};
use utoipa_axum::routes;

use super::extract::{Body, Caller, Query};
use super::{
    ActionErrors, ApiError, ApiResult, AuthErrors, BodyErrors, CheckedErrors, EditErrors, ErrorBody, Invalid,
    MetricEdit, ReadErrors, Versioned, WriteErrors, created,
};

pub(crate) fn routes() -> OpenApiRouter<Services> {
    OpenApiRouter::new()
        // A batch may be large: its handlers read the body themselves, after admitting the caller, under
        // their own limit. Every other route keeps axum's default limit.
        .routes(routes!(ingest).layer(DefaultBodyLimit::disable()))
        .routes(routes!(ingest_transactions).layer(DefaultBodyLimit::disable()))
        .routes(routes!(ltv))
        .routes(routes!(customers))
        .routes(routes!(list_loops))
        .routes(routes!(loop_report))
        .routes(routes!(retention))
        .routes(routes!(drift_check))
        .routes(routes!(drift_alerts))
        .routes(routes!(list_metrics, create_metric))
        .routes(routes!(metric_series, update_metric))
        .routes(routes!(push_points))
        .routes(routes!(recompute))
        .routes(routes!(list_experiments, create_experiment))
        .routes(routes!(analyze_experiment))
        .routes(routes!(stop_experiment))
        .routes(routes!(simulator))
}

fn loops(s: &Services) -> &Loops {
    &s.loops
}

/// A loop key from the path. Reserved streams (such as `_transactions`) and malformed keys name no loop.
fn loop_key(raw: &str) -> Result<String, ApiError> {
    Key::parse(raw).map(|k| k.to_string()).map_err(|_| ApiError::not_found(format!("no loop {raw:?}")))
}

/// The format, compression and idempotency key a batch's headers name.
fn batch_headers(headers: &HeaderMap) -> Result<(Format, bool, Option<&str>), FieldErrors> {
    // A header that is not visible ASCII is refused rather than read as absent.
    let text = |name: header::HeaderName| -> Result<String, FieldErrors> {
        match headers.get(&name) {
            None => Ok(String::new()),
            Some(v) => v
                .to_str()
                .map(|t| t.trim().to_ascii_lowercase())
                .map_err(|_| FieldErrors::single(name.as_str(), "must be visible ASCII")),
        }
    };
    let content_type = text(header::CONTENT_TYPE)?;
    let content_type = content_type.as_str();
    let format = if content_type.is_empty() {
        Format::Ndjson
    } else {
        Format::from_content_type(content_type).ok_or_else(|| {
            FieldErrors::single(
                "Content-Type",
                format!(
                    "{content_type:?} is not an event format: use application/x-ndjson, text/csv or application/vnd.apache.parquet"
                ),
            )
        })?
    };
    let gzip = match text(header::CONTENT_ENCODING)?.as_str() {
        "" | "identity" => false,
        "gzip" | "x-gzip" => true,
        other => {
            return Err(FieldErrors::single("Content-Encoding", format!("{other:?} is not supported; use gzip")));
        }
    };
    let idempotency_key = match headers.get("idempotency-key").map(|v| v.to_str().map(str::trim)) {
        None => None,
        Some(Ok(k)) if !k.is_empty() && k.len() <= 255 => Some(k),
        Some(_) => return Err(FieldErrors::single("Idempotency-Key", "must be 1–255 visible ASCII characters")),
    };
    Ok((format, gzip, idempotency_key))
}

fn acknowledged(ack: IngestAck) -> impl IntoResponse {
    let status = if ack.batch.replayed { StatusCode::OK } else { StatusCode::CREATED };
    (status, Json(ack))
}

/// Ingests one batch of a loop's interaction events, all or nothing.
///
/// The format follows `Content-Type` (`application/x-ndjson`, the default; `text/csv`;
/// `application/vnd.apache.parquet`), and `Content-Encoding: gzip` is understood. Every row is
/// validated first: a batch with any invalid row is refused whole, naming its first invalid rows.
/// Events whose `event_id` is already stored are counted as duplicates and not stored again, and the
/// loop's metrics are recomputed for the days the batch touches before the answer. `Idempotency-Key`
/// makes retries safe: a retry gets the first answer back, with status 200 and `replayed: true`.
#[utoipa::path(
    post,
    path = "/loops/{loop}/events",
    tag = "events",
    params(
        ("loop" = String, Path, description = "The loop's key."),
        ("Content-Encoding" = Option<String>, Header, description = "`gzip` for a compressed body."),
        (
            "Idempotency-Key" = Option<String>,
            Header,
            description = "1–255 visible ASCII characters naming the batch; without it the body's content names it."
        ),
    ),
    request_body(
        description = "The events, one per row: `event_id`, `user_id`, `ts`, `variant` and the loop's fields.",
        content(
            (String = "application/x-ndjson"),
            (String = "text/csv"),
            ("application/vnd.apache.parquet"),
        )
    ),
    responses(
        (status = 201, description = "The batch is stored.", body = IngestAck),
        (
            status = 200,
            description = "The batch was stored before: the first acknowledgement, replayed.",
            body = IngestAck
        ),
        (
            status = 413,
            description = "Code `too_large`, with `limit` naming the setting: the body is over 512 MiB (once \
                decompressed), or it decodes to more rows (`ingest_max_rows`) or text (`ingest_max_text_bytes`) \
                than one batch may hold.",
            body = ErrorBody
        ),
        (
            status = 429,
            description = "Code `busy`: the server or the organisation has as many batches in flight as it takes \
                on; `Retry-After` says when to send it again.",
            body = ErrorBody
        ),
        (
            status = 422,
            description = "Nothing of the batch was stored: code `invalid_rows` with `total` and the first invalid \
                `rows`, or `invalid` with `fields` for a header that is not understood.",
            body = ErrorBody
        ),
        AuthErrors,
    ),
    security(("bearer" = []), ("session" = []))
)]
async fn ingest(
    State(s): State<Services>,
    Caller(actor): Caller,
    Path(loop_key): Path<String>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> ApiResult<impl IntoResponse> {
    let (format, gzip, idempotency_key) = batch_headers(&headers)?;
    let permit = loops(&s).admit(&actor)?;
    let body = batch_body(body).await?;
    let input = BatchInput { loop_key: &loop_key, body: &body, format, gzip, idempotency_key };
    Ok(acknowledged(loops(&s).ingest_admitted(&permit, input).await?))
}

/// Reads a batch's body once its sender is admitted: never more than the largest batch (plus room for
/// the framing of a compressed one), so an oversized upload stops at the limit instead of filling memory.
async fn batch_body(body: axum::body::Body) -> Result<Bytes, ApiError> {
    axum::body::to_bytes(body, MAX_BATCH_BYTES + 1024).await.map_err(|e| {
        let too_long =
            std::error::Error::source(&e).is_some_and(|cause| cause.is::<http_body_util::LengthLimitError>());
        if too_long {
            ApiError::from(ServiceError::TooLarge {
                limit: "the batch size",
                message: format!("the body is over {} MiB; send several batches", MAX_BATCH_BYTES >> 20),
            })
        } else {
            ApiError::BadRequest(format!("the body could not be read: {e}"))
        }
    })
}

/// Ingests one batch of transaction events, for customer lifetime value.
///
/// Each row holds `event_id`, `customer_id`, `ts` and `amount`. The formats, rules and answers are
/// those of a loop's interaction events.
#[utoipa::path(
    post,
    path = "/transactions",
    tag = "customers",
    params(
        ("Content-Encoding" = Option<String>, Header, description = "`gzip` for a compressed body."),
        (
            "Idempotency-Key" = Option<String>,
            Header,
            description = "1–255 visible ASCII characters naming the batch; without it the body's content names it."
        ),
    ),
    request_body(
        description = "The transactions, one per row: `event_id`, `customer_id`, `ts` and `amount`.",
        content(
            (String = "application/x-ndjson"),
            (String = "text/csv"),
            ("application/vnd.apache.parquet"),
        )
    ),
    responses(
        (status = 201, description = "The batch is stored.", body = IngestAck),
        (
            status = 200,
            description = "The batch was stored before: the first acknowledgement, replayed.",
            body = IngestAck
        ),
        (
            status = 413,
            description = "Code `too_large`, with `limit` naming the setting: the body is over 512 MiB (once \
                decompressed), or it decodes to more rows (`ingest_max_rows`) or text (`ingest_max_text_bytes`) \
                than one batch may hold.",
            body = ErrorBody
        ),
        (
            status = 429,
            description = "Code `busy`: the server or the organisation has as many batches in flight as it takes \
                on; `Retry-After` says when to send it again.",
            body = ErrorBody
        ),
        (
            status = 422,
            description = "Nothing of the batch was stored: code `invalid_rows` with `total` and the first invalid \
                `rows`, or `invalid` with `fields` for a header that is not understood.",
            body = ErrorBody
        ),
        AuthErrors,
    ),
    security(("bearer" = []), ("session" = []))
)]
async fn ingest_transactions(
    State(s): State<Services>,
    Caller(actor): Caller,
    headers: HeaderMap,
    body: axum::body::Body,
) -> ApiResult<impl IntoResponse> {
    let (format, gzip, idempotency_key) = batch_headers(&headers)?;
    let permit = loops(&s).admit(&actor)?;
    let body = batch_body(body).await?;
    let input = BatchInput { loop_key: "", body: &body, format, gzip, idempotency_key };
    Ok(acknowledged(loops(&s).ingest_transactions_admitted(&permit, input).await?))
}

#[derive(Deserialize, Default, IntoParams)]
#[serde(default)]
#[into_params(parameter_in = Query)]
struct LtvQuery {
    /// `day` or `week` (default).
    period: Option<String>,
    /// Periods ahead (default 52).
    horizon: Option<usize>,
    /// Per period (default 0: undiscounted).
    discount_rate: Option<f64>,
}

/// Fits customer lifetime value to the stored transactions.
///
/// BG/NBD and Gamma-Gamma are fitted by maximum likelihood; the report holds the fitted parameters, each
/// customer's probability of being alive, expected purchases and value over `horizon` periods, and the
/// value of each monthly cohort.
#[utoipa::path(
    get,
    path = "/ltv",
    tag = "customers",
    params(LtvQuery),
    responses(
        (status = 200, description = "The fitted models and their predictions.", body = Object),
        (status = 422, response = Invalid),
        ActionErrors,
    ),
    security(("bearer" = []), ("session" = []))
)]
async fn ltv(
    State(s): State<Services>,
    Caller(actor): Caller,
    Query(q): Query<LtvQuery>,
) -> ApiResult<impl IntoResponse> {
    let period = match q.period.as_deref().unwrap_or("week").parse() {
        Ok(p) => p,
        Err(m) => return Err(FieldErrors::single("period", m).into()),
    };
    Ok(Json(loops(&s).ltv(&actor, period, q.horizon.unwrap_or(52), q.discount_rate.unwrap_or(0.0)).await?))
}

/// The lifetime value metrics and the models fitted to every transaction so far.
///
/// Each `ltv` metric with its weekly series (mean expected value per customer over 52 weeks, with a
/// delta-method interval) and the note of its newest fit; the current fit's parameters, value
/// distribution, P(alive) by weeks since the last purchase and monthly cohorts, or why there is none.
#[utoipa::path(
    get,
    path = "/customers",
    tag = "customers",
    responses(
        (status = 200, description = "The lifetime value metrics and the current fit.", body = CustomersReport),
        AuthErrors,
    ),
    security(("bearer" = []), ("session" = []))
)]
async fn customers(State(s): State<Services>, Caller(actor): Caller) -> ApiResult<Json<CustomersReport>> {
    Ok(Json(loops(&s).customers(&actor).await?))
}

/// Lists the loops that have stored events, with their counts and time range.
#[utoipa::path(
    get,
    path = "/loops",
    tag = "loops",
    responses(
        (status = 200, description = "Every loop with stored events.", body = Vec<LoopSummary>),
        AuthErrors,
    ),
    security(("bearer" = []), ("session" = []))
)]
async fn list_loops(State(s): State<Services>, Caller(actor): Caller) -> ApiResult<impl IntoResponse> {
    Ok(Json(loops(&s).list_loops(&actor).await?))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct ReportQuery {
    /// How many days of the latest events the acceptance series covers (default 28).
    days: Option<i64>,
}

/// Reads a loop at a glance.
///
/// The report holds the loop's stored events, its character acceptance rate per variant and day over
/// the last `days` days of data, its metrics and its recent batches.
#[utoipa::path(
    get,
    path = "/loops/{loop}",
    tag = "loops",
    params(("loop" = String, Path, description = "The loop's key."), ReportQuery),
    responses(
        (status = 200, description = "The loop's report.", body = LoopReport),
        CheckedErrors,
    ),
    security(("bearer" = []), ("session" = []))
)]
async fn loop_report(
    State(s): State<Services>,
    Caller(actor): Caller,
    Path(raw): Path<String>,
    Query(q): Query<ReportQuery>,
) -> ApiResult<impl IntoResponse> {
    let loop_key = loop_key(&raw)?;
    Ok(Json(loops(&s).loop_report(&actor, &loop_key, q.days.unwrap_or(28)).await?))
}

/// Computes the weekly cohort retention of a loop's users.
///
/// Users are grouped by the week of their first event; each cohort shows the share of its users active
/// in each later week.
#[utoipa::path(
    get,
    path = "/loops/{loop}/retention",
    tag = "loops",
    params(("loop" = String, Path, description = "The loop's key.")),
    responses(
        (status = 200, description = "The retention matrix of the loop's cohorts.", body = Object),
        ReadErrors,
    ),
    security(("bearer" = []), ("session" = []))
)]
async fn retention(
    State(s): State<Services>,
    Caller(actor): Caller,
    Path(raw): Path<String>,
) -> ApiResult<impl IntoResponse> {
    let loop_key = loop_key(&raw)?;
    Ok(Json(loops(&s).retention(&actor, &loop_key).await?))
}

#[derive(Deserialize, Default, ToSchema)]
#[serde(default)]
struct DriftInput {
    /// The event field whose distribution is compared, such as `latency_ms` or `suggested_chars`.
    field: String,
    /// Days, both included: `2027-01-01..2027-01-14`.
    reference: String,
    /// Days, both included, compared with the reference.
    current: String,
}

/// The answer of a drift check.
#[derive(Serialize, ToSchema)]
struct DriftCheck {
    /// How the distance was measured and how to read it.
    method: &'static str,
    /// PSI and Jensen–Shannon distance between the two windows, with the bins they were computed over.
    #[schema(value_type = Object)]
    drift: slope_service::Drift,
    /// The alert recorded for a result in the moderate or major band.
    alert: Option<DriftAlert>,
}

fn window(field: &str, raw: &str) -> Result<(NaiveDate, NaiveDate), FieldErrors> {
    let invalid = || {
        FieldErrors::single(field, format!("must be START..END with dates like 2027-01-01..2027-01-14, not {raw:?}"))
    };
    let (a, b) = raw.split_once("..").ok_or_else(invalid)?;
    let a = parse_date(a.trim()).map_err(|_| invalid())?;
    let b = parse_date(b.trim()).map_err(|_| invalid())?;
    Ok((a, b))
}

/// Checks a loop's events for drift between two windows of days.
///
/// PSI and Jensen–Shannon distance are computed over bins cut at the reference window's deciles. A
/// result in the moderate (PSI 0.1–0.25) or major (above 0.25) band is recorded as a drift alert.
#[utoipa::path(
    post,
    path = "/loops/{loop}/drift",
    tag = "loops",
    params(("loop" = String, Path, description = "The loop's key.")),
    request_body = DriftInput,
    responses(
        (status = 200, description = "The drift between the windows, and the alert it raised.", body = DriftCheck),
        WriteErrors,
    ),
    security(("bearer" = []), ("session" = []))
)]
async fn drift_check(
    State(s): State<Services>,
    Caller(actor): Caller,
    Path(raw): Path<String>,
    Body(input): Body<DriftInput>,
) -> ApiResult<impl IntoResponse> {
    let loop_key = loop_key(&raw)?;
    let mut errors = FieldErrors::new();
    let reference = window("reference", &input.reference).map_err(|e| errors.merge(e)).ok();
    let current = window("current", &input.current).map_err(|e| errors.merge(e)).ok();
    let (Some(reference), Some(current)) = (reference, current) else { return Err(errors.into()) };
    let (drift, alert) = loops(&s).drift_check(&actor, &loop_key, &input.field, reference, current).await?;
    Ok(Json(DriftCheck {
        method: "PSI and Jensen–Shannon distance (base 2) over bins cut at the reference's deciles; bands < 0.1 stable, 0.1–0.25 moderate, > 0.25 major",
        drift,
        alert,
    }))
}

/// Lists the recorded drift alerts, newest first.
#[utoipa::path(
    get,
    path = "/drift-alerts",
    tag = "loops",
    responses(
        (status = 200, description = "Every drift alert of the organisation.", body = Vec<DriftAlert>),
        AuthErrors,
    ),
    security(("bearer" = []), ("session" = []))
)]
async fn drift_alerts(State(s): State<Services>, Caller(actor): Caller) -> ApiResult<impl IntoResponse> {
    Ok(Json(loops(&s).drift_alerts(&actor).await?))
}

/// Lists the current version of every metric definition.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "metrics",
    responses(
        (status = 200, description = "Every metric definition of the organisation.", body = Vec<MetricDefinition>),
        AuthErrors,
    ),
    security(("bearer" = []), ("session" = []))
)]
async fn list_metrics(State(s): State<Services>, Caller(actor): Caller) -> ApiResult<impl IntoResponse> {
    Ok(Json(loops(&s).list_metrics(&actor).await?))
}

/// Defines a metric.
///
/// A computed metric (acceptance rate, active users, retention) is computed from its loop's events at
/// once; a pushed one (eval score, custom) waits for points.
#[utoipa::path(
    post,
    path = "/metrics",
    tag = "metrics",
    request_body = MetricInput,
    responses(
        (status = 201, description = "The metric definition as stored, at version 1.", body = MetricDefinition),
        BodyErrors,
    ),
    security(("bearer" = []), ("session" = []))
)]
async fn create_metric(
    State(s): State<Services>,
    Caller(actor): Caller,
    Body(input): Body<MetricInput>,
) -> ApiResult<impl IntoResponse> {
    Ok(created(loops(&s).create_metric(&actor, &input).await?))
}

/// Reads a metric with the series of its current version.
#[utoipa::path(
    get,
    path = "/metrics/{key}",
    tag = "metrics",
    params(("key" = String, Path, description = "The metric's key.")),
    responses(
        (
            status = 200,
            description = "The metric, its points (oldest first) and whether it is stale.",
            body = MetricSeries
        ),
        ReadErrors,
    ),
    security(("bearer" = []), ("session" = []))
)]
async fn metric_series(
    State(s): State<Services>,
    Caller(actor): Caller,
    Path(key): Path<String>,
) -> ApiResult<impl IntoResponse> {
    Ok(Json(loops(&s).series(&actor, &key).await?))
}

/// Changes how a metric is computed.
///
/// The change creates a new version of the definition with its own series, so that a chart never
/// mixes values computed two different ways. The body holds every field and the `version` it edits.
#[utoipa::path(
    put,
    path = "/metrics/{key}",
    tag = "metrics",
    params(("key" = String, Path, description = "The metric's key.")),
    request_body = MetricEdit,
    responses(
        (status = 200, description = "The metric definition's new version.", body = MetricDefinition),
        EditErrors,
    ),
    security(("bearer" = []), ("session" = []))
)]
async fn update_metric(
    State(s): State<Services>,
    Caller(actor): Caller,
    Path(key): Path<String>,
    body: Versioned<MetricInput>,
) -> ApiResult<impl IntoResponse> {
    let Versioned { version, input } = body;
    Ok(Json(loops(&s).update_metric(&actor, &key, version.0, &input).await?))
}

#[derive(Deserialize, Default, ToSchema)]
#[serde(default)]
struct PointsInput {
    /// The points, at least one.
    points: Vec<PointInput>,
}

/// Pushes points of a metric from another system.
///
/// All or nothing: an invalid point refuses the request, naming it as `points[i].field`. Each point
/// lands in the bucket of its time; the latest point becomes the current value of every key result
/// and squad goal the metric feeds.
#[utoipa::path(
    post,
    path = "/metrics/{key}/points",
    tag = "metrics",
    params(("key" = String, Path, description = "The metric's key.")),
    request_body = PointsInput,
    responses(
        (status = 200, description = "The metric's series with the new points.", body = MetricSeries),
        WriteErrors,
    ),
    security(("bearer" = []), ("session" = []))
)]
async fn push_points(
    State(s): State<Services>,
    Caller(actor): Caller,
    Path(key): Path<String>,
    Body(input): Body<PointsInput>,
) -> ApiResult<impl IntoResponse> {
    Ok(Json(loops(&s).push_points(&actor, &key, &input.points).await?))
}

/// Recomputes a computed metric's whole series from its loop's events.
#[utoipa::path(
    post,
    path = "/metrics/{key}/recompute",
    tag = "metrics",
    params(("key" = String, Path, description = "The metric's key.")),
    responses(
        (status = 200, description = "The metric's recomputed series.", body = MetricSeries),
        ReadErrors,
    ),
    security(("bearer" = []), ("session" = []))
)]
async fn recompute(
    State(s): State<Services>,
    Caller(actor): Caller,
    Path(key): Path<String>,
) -> ApiResult<impl IntoResponse> {
    Ok(Json(loops(&s).recompute(&actor, &key).await?))
}

/// Lists the organisation's experiments.
#[utoipa::path(
    get,
    path = "/experiments",
    tag = "experiments",
    responses(
        (status = 200, description = "Every experiment of the organisation.", body = Vec<Experiment>),
        AuthErrors,
    ),
    security(("bearer" = []), ("session" = []))
)]
async fn list_experiments(State(s): State<Services>, Caller(actor): Caller) -> ApiResult<impl IntoResponse> {
    Ok(Json(loops(&s).list_experiments(&actor).await?))
}

/// Defines an A/B experiment between two variants of a loop.
#[utoipa::path(
    post,
    path = "/experiments",
    tag = "experiments",
    request_body = ExperimentInput,
    responses(
        (status = 201, description = "The experiment as stored.", body = Experiment),
        BodyErrors,
    ),
    security(("bearer" = []), ("session" = []))
)]
async fn create_experiment(
    State(s): State<Services>,
    Caller(actor): Caller,
    Body(input): Body<ExperimentInput>,
) -> ApiResult<impl IntoResponse> {
    Ok(created(loops(&s).create_experiment(&actor, &input).await?))
}

/// Analyses an experiment on the events of its dates.
///
/// The analysis compares the character acceptance rate of the two variants with users as the
/// randomisation unit: each arm's rate with a delta-method interval, the difference with a z-test, the
/// lift, an always-valid sequential test and a sample-ratio check. Too little data to analyse yet is a
/// 409.
#[utoipa::path(
    get,
    path = "/experiments/{key}",
    tag = "experiments",
    params(("key" = String, Path, description = "The experiment's key.")),
    responses(
        (status = 200, description = "The experiment and its analysis.", body = ExperimentAnalysis),
        ActionErrors,
    ),
    security(("bearer" = []), ("session" = []))
)]
async fn analyze_experiment(
    State(s): State<Services>,
    Caller(actor): Caller,
    Path(key): Path<String>,
) -> ApiResult<impl IntoResponse> {
    Ok(Json(loops(&s).analyze_experiment(&actor, &key).await?))
}

/// Stops an experiment before its last day.
///
/// From then on serving assigns no user to its arms (everyone gets the champion again), and its analysis
/// covers its events up to the day it was stopped. Stopping an experiment twice is a 409.
#[utoipa::path(
    post,
    path = "/experiments/{key}/stop",
    tag = "experiments",
    params(("key" = String, Path, description = "The experiment's key.")),
    responses(
        (status = 200, description = "The experiment, stopped.", body = Experiment),
        ActionErrors,
    ),
    security(("bearer" = []), ("session" = []))
)]
async fn stop_experiment(
    State(s): State<Services>,
    Caller(actor): Caller,
    Path(key): Path<String>,
) -> ApiResult<impl IntoResponse> {
    Ok(Json(loops(&s).stop_experiment(&actor, &key).await?))
}

/// The demo's traffic simulator: whether it runs and what it is doing in each loop.
///
/// In demo mode Slope simulates clinicians who write notes and accept suggestions when they match, and
/// an operator that turns each loop (datasets, fine-tuning, evals, an A/B experiment, the promotion
/// gate). Everything it produces is simulated. Without it the answer is `{"running": false}`.
#[utoipa::path(
    get,
    path = "/simulator",
    tag = "loops",
    responses(
        (status = 200, description = "The simulator's state.", body = SimulatorStatus),
        AuthErrors,
    ),
    security(("bearer" = []), ("session" = []))
)]
async fn simulator(State(s): State<Services>, Caller(actor): Caller) -> ApiResult<impl IntoResponse> {
    Ok(Json(s.simulator.status(&actor)?))
}
