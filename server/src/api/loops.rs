//! `/api/v1` routes of the loop metrics engine: event ingestion, loops, metrics and their points,
//! experiments and drift.

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use chrono::NaiveDate;
use serde::Deserialize;
use serde_json::json;
use slope_domain::*;
use slope_metrics::events::Format;
use slope_service::{BatchInput, IngestAck, Loops, MAX_BATCH_BYTES};

use super::extract::{Body, Caller, Query};
use super::{ApiError, ApiResult, ApiState, Versioned, created};

pub fn routes() -> Router<ApiState> {
    Router::new()
        .route(
            "/loops/{loop}/events",
            // A batch may be large; every other route keeps axum's default limit.
            post(ingest).layer(DefaultBodyLimit::max(MAX_BATCH_BYTES + 1024)),
        )
        .route("/transactions", post(ingest_transactions).layer(DefaultBodyLimit::max(MAX_BATCH_BYTES + 1024)))
        .route("/ltv", get(ltv))
        .route("/loops", get(list_loops))
        .route("/loops/{loop}", get(loop_report))
        .route("/loops/{loop}/retention", get(retention))
        .route("/loops/{loop}/drift", post(drift_check))
        .route("/drift-alerts", get(drift_alerts))
        .route("/metrics", get(list_metrics).post(create_metric))
        .route("/metrics/{key}", get(metric_series).put(update_metric))
        .route("/metrics/{key}/points", post(push_points))
        .route("/metrics/{key}/recompute", post(recompute))
        .route("/experiments", get(list_experiments).post(create_experiment))
        .route("/experiments/{key}", get(analyze_experiment))
}

fn loops(s: &ApiState) -> &Loops {
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

/// `POST /loops/{loop}/events`: one batch, all or nothing. The format follows `Content-Type`
/// (`application/x-ndjson`, `text/csv`, `application/vnd.apache.parquet`); `Content-Encoding: gzip` is
/// understood; `Idempotency-Key` makes retries safe. 201 for a new batch, 200 for a replayed one.
async fn ingest(
    State(s): State<ApiState>,
    Caller(actor): Caller,
    Path(loop_key): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<impl IntoResponse> {
    let (format, gzip, idempotency_key) = batch_headers(&headers)?;
    let input = BatchInput { loop_key: &loop_key, body: &body, format, gzip, idempotency_key };
    Ok(acknowledged(loops(&s).ingest(&actor, input).await?))
}

/// `POST /transactions`: a batch of transaction events (`event_id`, `customer_id`, `ts`, `amount`), with
/// the same formats, rules and answers as interaction events.
async fn ingest_transactions(
    State(s): State<ApiState>,
    Caller(actor): Caller,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<impl IntoResponse> {
    let (format, gzip, idempotency_key) = batch_headers(&headers)?;
    let input = BatchInput { loop_key: "", body: &body, format, gzip, idempotency_key };
    Ok(acknowledged(loops(&s).ingest_transactions(&actor, input).await?))
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct LtvQuery {
    /// `day` or `week` (default).
    period: Option<String>,
    /// Periods ahead (default 52).
    horizon: Option<usize>,
    /// Per period (default 0: undiscounted).
    discount_rate: Option<f64>,
}

/// `GET /ltv`: BG/NBD and Gamma-Gamma fitted to the stored transactions.
async fn ltv(
    State(s): State<ApiState>,
    Caller(actor): Caller,
    Query(q): Query<LtvQuery>,
) -> ApiResult<impl IntoResponse> {
    let period = match q.period.as_deref().unwrap_or("week").parse() {
        Ok(p) => p,
        Err(m) => return Err(FieldErrors::single("period", m).into()),
    };
    Ok(Json(loops(&s).ltv(&actor, period, q.horizon.unwrap_or(52), q.discount_rate.unwrap_or(0.0)).await?))
}

async fn list_loops(State(s): State<ApiState>, Caller(actor): Caller) -> ApiResult<impl IntoResponse> {
    Ok(Json(loops(&s).list_loops(&actor).await?))
}

#[derive(Deserialize)]
struct ReportQuery {
    days: Option<i64>,
}

async fn loop_report(
    State(s): State<ApiState>,
    Caller(actor): Caller,
    Path(raw): Path<String>,
    Query(q): Query<ReportQuery>,
) -> ApiResult<impl IntoResponse> {
    let loop_key = loop_key(&raw)?;
    Ok(Json(loops(&s).loop_report(&actor, &loop_key, q.days.unwrap_or(28)).await?))
}

async fn retention(
    State(s): State<ApiState>,
    Caller(actor): Caller,
    Path(raw): Path<String>,
) -> ApiResult<impl IntoResponse> {
    let loop_key = loop_key(&raw)?;
    Ok(Json(loops(&s).retention(&actor, &loop_key).await?))
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct DriftInput {
    field: String,
    /// Days, both included: `2027-01-01..2027-01-14`.
    reference: String,
    current: String,
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

async fn drift_check(
    State(s): State<ApiState>,
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
    Ok(Json(json!({
        "method": "PSI and Jensen–Shannon distance (base 2) over bins cut at the reference's deciles; bands < 0.1 stable, 0.1–0.25 moderate, > 0.25 major",
        "drift": drift,
        "alert": alert,
    })))
}

async fn drift_alerts(State(s): State<ApiState>, Caller(actor): Caller) -> ApiResult<impl IntoResponse> {
    Ok(Json(loops(&s).drift_alerts(&actor).await?))
}

async fn list_metrics(State(s): State<ApiState>, Caller(actor): Caller) -> ApiResult<impl IntoResponse> {
    Ok(Json(loops(&s).list_metrics(&actor).await?))
}

async fn create_metric(
    State(s): State<ApiState>,
    Caller(actor): Caller,
    Body(input): Body<MetricInput>,
) -> ApiResult<impl IntoResponse> {
    Ok(created(loops(&s).create_metric(&actor, &input).await?))
}

async fn metric_series(
    State(s): State<ApiState>,
    Caller(actor): Caller,
    Path(key): Path<String>,
) -> ApiResult<impl IntoResponse> {
    Ok(Json(loops(&s).series(&actor, &key).await?))
}

async fn update_metric(
    State(s): State<ApiState>,
    Caller(actor): Caller,
    Path(key): Path<String>,
    body: Versioned<MetricInput>,
) -> ApiResult<impl IntoResponse> {
    let Versioned { version, input } = body;
    Ok(Json(loops(&s).update_metric(&actor, &key, version.0, &input).await?))
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct PointsInput {
    points: Vec<PointInput>,
}

async fn push_points(
    State(s): State<ApiState>,
    Caller(actor): Caller,
    Path(key): Path<String>,
    Body(input): Body<PointsInput>,
) -> ApiResult<impl IntoResponse> {
    Ok(Json(loops(&s).push_points(&actor, &key, &input.points).await?))
}

async fn recompute(
    State(s): State<ApiState>,
    Caller(actor): Caller,
    Path(key): Path<String>,
) -> ApiResult<impl IntoResponse> {
    Ok(Json(loops(&s).recompute(&actor, &key).await?))
}

async fn list_experiments(State(s): State<ApiState>, Caller(actor): Caller) -> ApiResult<impl IntoResponse> {
    Ok(Json(loops(&s).list_experiments(&actor).await?))
}

async fn create_experiment(
    State(s): State<ApiState>,
    Caller(actor): Caller,
    Body(input): Body<ExperimentInput>,
) -> ApiResult<impl IntoResponse> {
    Ok(created(loops(&s).create_experiment(&actor, &input).await?))
}

async fn analyze_experiment(
    State(s): State<ApiState>,
    Caller(actor): Caller,
    Path(key): Path<String>,
) -> ApiResult<impl IntoResponse> {
    Ok(Json(loops(&s).analyze_experiment(&actor, &key).await?))
}
