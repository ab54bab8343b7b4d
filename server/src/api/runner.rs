//! `/api/v1` routes of the fine-tune/eval runner: datasets, jobs (with a live event stream), models,
//! promotion, and serving suggestions.

use std::convert::Infallible;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::header;
use axum::response::IntoResponse;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::json;
use slope_domain::FieldErrors;
use slope_service::{CompletionRequest, JobRequest, MAX_DATASET_BYTES, Runner};

use super::extract::{Body, Caller, Id, Query};
use super::{ApiResult, ApiState, created};

pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/datasets", get(list_datasets).post(add_dataset).layer(DefaultBodyLimit::max(MAX_DATASET_BYTES + 1024)))
        .route("/datasets/{id}", get(get_dataset))
        .route("/datasets/{id}/rows", get(dataset_rows))
        .route("/loops/{loop}/datasets", post(build_datasets))
        .route("/jobs", get(list_jobs).post(submit_job))
        .route("/jobs/{id}", get(get_job))
        .route("/jobs/{id}/cancel", post(cancel_job))
        .route("/jobs/{id}/metrics", get(job_metrics))
        .route("/jobs/{id}/events", get(job_events))
        .route("/models", get(list_models))
        .route("/models/{id}", get(get_model))
        .route("/loops/{loop}/models", get(loop_models))
        .route("/loops/{loop}/promote", post(promote))
        .route("/loops/{loop}/challenger", post(set_challenger))
        .route("/loops/{loop}/complete", post(complete))
        .route("/loops/{loop}/complete/{event_id}/outcome", post(outcome))
}

fn runner(s: &ApiState) -> &Runner {
    &s.runner
}

// ---- datasets ----------------------------------------------------------------------------------

#[derive(Deserialize, Default)]
#[serde(default)]
struct DatasetQuery {
    name: String,
}

/// The body is the JSONL itself; `?name=` names it.
async fn add_dataset(
    State(s): State<ApiState>,
    Caller(actor): Caller,
    Query(q): Query<DatasetQuery>,
    body: Bytes,
) -> ApiResult<impl IntoResponse> {
    if q.name.trim().is_empty() {
        return Err(FieldErrors::single("name", "is required (?name=…)").into());
    }
    let (record, created_now) =
        runner(&s).add_dataset(&actor, &q.name, &body, json!({ "upload": q.name.trim() })).await?;
    let status = if created_now { axum::http::StatusCode::CREATED } else { axum::http::StatusCode::OK };
    Ok((status, Json(json!({ "dataset": record, "created": created_now }))))
}

async fn list_datasets(State(s): State<ApiState>, Caller(actor): Caller) -> ApiResult<impl IntoResponse> {
    Ok(Json(runner(&s).datasets(&actor).await?))
}

async fn get_dataset(State(s): State<ApiState>, Caller(actor): Caller, Id(id): Id) -> ApiResult<impl IntoResponse> {
    Ok(Json(runner(&s).dataset(&actor, id).await?))
}

async fn dataset_rows(State(s): State<ApiState>, Caller(actor): Caller, Id(id): Id) -> ApiResult<impl IntoResponse> {
    let bytes = runner(&s).dataset_bytes(&actor, id).await?;
    Ok(([(header::CONTENT_TYPE, "application/x-ndjson")], bytes))
}

async fn build_datasets(
    State(s): State<ApiState>,
    Caller(actor): Caller,
    Path(loop_key): Path<String>,
) -> ApiResult<impl IntoResponse> {
    Ok(created(runner(&s).build_datasets(&actor, &loop_key).await?))
}

// ---- jobs --------------------------------------------------------------------------------------

#[derive(Deserialize, Default)]
#[serde(default)]
struct ListQuery {
    limit: Option<i64>,
    #[serde(rename = "loop")]
    loop_key: Option<String>,
}

async fn list_jobs(
    State(s): State<ApiState>,
    Caller(actor): Caller,
    Query(q): Query<ListQuery>,
) -> ApiResult<impl IntoResponse> {
    Ok(Json(runner(&s).jobs(&actor, q.limit.unwrap_or(100)).await?))
}

async fn submit_job(
    State(s): State<ApiState>,
    Caller(actor): Caller,
    Body(request): Body<JobRequest>,
) -> ApiResult<impl IntoResponse> {
    Ok(created(runner(&s).submit(&actor, &request).await?))
}

async fn get_job(State(s): State<ApiState>, Caller(actor): Caller, Id(id): Id) -> ApiResult<impl IntoResponse> {
    Ok(Json(runner(&s).job(&actor, id).await?))
}

async fn cancel_job(State(s): State<ApiState>, Caller(actor): Caller, Id(id): Id) -> ApiResult<impl IntoResponse> {
    Ok(Json(runner(&s).cancel(&actor, id).await?))
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct MetricsQuery {
    after: i64,
}

async fn job_metrics(
    State(s): State<ApiState>,
    Caller(actor): Caller,
    Id(id): Id,
    Query(q): Query<MetricsQuery>,
) -> ApiResult<impl IntoResponse> {
    Ok(Json(runner(&s).job_metrics(&actor, id, q.after).await?))
}

/// Server-sent events: `metrics` (new step metrics, in order) and `job` (the job's row whenever it
/// changes), polled from the database once a second so that it works whichever worker runs the job;
/// the stream ends after the job does.
async fn job_events(State(s): State<ApiState>, Caller(actor): Caller, Id(id): Id) -> ApiResult<impl IntoResponse> {
    // An unknown job is a 404 before the stream starts.
    runner(&s).job(&actor, id).await?;
    struct Cursor {
        state: ApiState,
        actor: slope_domain::Actor,
        id: i64,
        after: i64,
        last: Option<serde_json::Value>,
        done: bool,
        first: bool,
    }
    let cursor = Cursor { state: s, actor, id, after: 0, last: None, done: false, first: true };
    let stream = futures_util::stream::unfold(cursor, |mut c| async move {
        if c.done {
            return None;
        }
        if !c.first {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        c.first = false;
        let r = runner(&c.state).clone();
        let mut events: Vec<Result<Event, Infallible>> = Vec::new();
        match r.job_metrics(&c.actor, c.id, c.after).await {
            Ok(metrics) if !metrics.is_empty() => {
                c.after = metrics.last().map(|m| m.step).unwrap_or(c.after);
                events.push(Ok(Event::default().event("metrics").json_data(&metrics).expect("serialisable")));
            }
            Ok(_) => {}
            Err(_) => c.done = true,
        }
        match r.job(&c.actor, c.id).await {
            Ok(job) => {
                let value = serde_json::to_value(&job).expect("serialisable");
                if c.last.as_ref() != Some(&value) {
                    events.push(Ok(Event::default().event("job").json_data(&value).expect("serialisable")));
                    c.last = Some(value);
                }
                if matches!(job.status.as_str(), "succeeded" | "failed" | "cancelled") {
                    c.done = true;
                }
            }
            Err(_) => c.done = true,
        }
        Some((futures_util::stream::iter(events), c))
    });
    use futures_util::StreamExt;
    Ok(Sse::new(stream.flatten()).keep_alive(KeepAlive::default()))
}

// ---- models ------------------------------------------------------------------------------------

async fn list_models(
    State(s): State<ApiState>,
    Caller(actor): Caller,
    Query(q): Query<ListQuery>,
) -> ApiResult<impl IntoResponse> {
    Ok(Json(runner(&s).models(&actor, q.loop_key.as_deref()).await?))
}

async fn get_model(State(s): State<ApiState>, Caller(actor): Caller, Id(id): Id) -> ApiResult<impl IntoResponse> {
    Ok(Json(runner(&s).model(&actor, id).await?))
}

/// A loop's models, aliases and promotion decisions.
async fn loop_models(
    State(s): State<ApiState>,
    Caller(actor): Caller,
    Path(loop_key): Path<String>,
) -> ApiResult<impl IntoResponse> {
    let r = runner(&s);
    Ok(Json(json!({
        "loop": loop_key,
        "aliases": r.aliases(&actor, Some(&loop_key)).await?,
        "models": r.models(&actor, Some(&loop_key)).await?,
        "promotions": r.promotions(&actor, Some(&loop_key)).await?,
    })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ModelChoice {
    model_id: i64,
}

/// The promotion gate. A refused promotion is recorded too and answers 409 with the decision.
async fn promote(
    State(s): State<ApiState>,
    Caller(actor): Caller,
    Path(loop_key): Path<String>,
    Body(choice): Body<ModelChoice>,
) -> ApiResult<axum::response::Response> {
    let outcome = runner(&s).promote(&actor, &loop_key, choice.model_id).await?;
    let status = if outcome.accepted { axum::http::StatusCode::OK } else { axum::http::StatusCode::CONFLICT };
    let body = if outcome.accepted {
        json!(outcome)
    } else {
        json!({ "error": { "code": "gate_refused", "message": outcome.reason }, "decision": outcome })
    };
    Ok((status, Json(body)).into_response())
}

async fn set_challenger(
    State(s): State<ApiState>,
    Caller(actor): Caller,
    Path(loop_key): Path<String>,
    Body(choice): Body<ModelChoice>,
) -> ApiResult<impl IntoResponse> {
    Ok(Json(runner(&s).set_challenger(&actor, &loop_key, choice.model_id).await?))
}

// ---- serving -----------------------------------------------------------------------------------

async fn complete(
    State(s): State<ApiState>,
    Caller(actor): Caller,
    Path(loop_key): Path<String>,
    Body(request): Body<CompletionRequest>,
) -> ApiResult<impl IntoResponse> {
    Ok(Json(runner(&s).complete(&actor, &loop_key, &request).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Outcome {
    accepted_chars: i64,
    #[serde(default)]
    final_text: Option<String>,
}

async fn outcome(
    State(s): State<ApiState>,
    Caller(actor): Caller,
    Path((loop_key, event_id)): Path<(String, String)>,
    Body(o): Body<Outcome>,
) -> ApiResult<impl IntoResponse> {
    Ok(Json(runner(&s).record_outcome(&actor, &loop_key, &event_id, o.accepted_chars, o.final_text.as_deref()).await?))
}
