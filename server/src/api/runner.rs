//! `/api/v1` routes of the fine-tune/eval runner: datasets, jobs (with a live event stream), models,
//! promotion, and serving suggestions.

use std::convert::Infallible;
use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::header;
use axum::response::IntoResponse;
use axum::response::sse::{Event, KeepAlive, Sse};
use serde::{Deserialize, Serialize};
use serde_json::json;
use slope_domain::{
    Alias, Dataset, DatasetBasis, DatasetSource, FieldErrors, GatePolicy, GatePolicyInput, Impression, Job, JobMetric,
    JobRequest, Model, Promotion,
};
use slope_service::{
    BuiltDatasets, Completion, CompletionRequest, MAX_DATASET_BYTES, ModelView, PromotionOutcome, Runner, Services,
};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouterExt};
use utoipa_axum::routes;

use super::error::ErrorDetail;
use super::extract::{Body, Caller, Id, Query};
use super::{
    ActionErrors, ApiResult, AuthErrors, CheckedErrors, EditErrors, Invalid, ReadErrors, WriteErrors, created,
};

pub(crate) fn routes() -> OpenApiRouter<Services> {
    OpenApiRouter::new()
        .routes(routes!(list_datasets, add_dataset).layer(DefaultBodyLimit::max(MAX_DATASET_BYTES + 1024)))
        .routes(routes!(get_dataset))
        .routes(routes!(dataset_rows))
        .routes(routes!(build_datasets))
        .routes(routes!(list_jobs, submit_job))
        .routes(routes!(get_job))
        .routes(routes!(cancel_job))
        .routes(routes!(job_metrics))
        .routes(routes!(job_events))
        .routes(routes!(list_models))
        .routes(routes!(get_model))
        .routes(routes!(loop_models))
        .routes(routes!(loop_stack))
        .routes(routes!(promote))
        .routes(routes!(gate_policy, set_gate_policy))
        .routes(routes!(set_challenger))
        .routes(routes!(complete))
        .routes(routes!(outcome))
}

fn runner(s: &Services) -> &Runner {
    &s.runner
}

// ---- datasets ----------------------------------------------------------------------------------

#[derive(Deserialize, Default, IntoParams)]
#[serde(default)]
#[into_params(parameter_in = Query)]
struct DatasetQuery {
    /// The dataset's name (1 to 200 characters).
    #[param(required)]
    name: String,
}

/// The answer of a dataset upload.
#[derive(Serialize, ToSchema)]
struct DatasetUpload {
    dataset: Dataset,
    /// False when a dataset with the same content was registered before: that one is the answer.
    created: bool,
}

/// Registers a JSONL dataset.
///
/// The body is the JSONL itself, and `?name=` names it. Each line is an object of `text`, of `prompt`
/// and `completion`, or of `prompt`, `chosen` and `rejected`; every line is validated, and errors name
/// `line N: field`. A dataset is named by the SHA-256 of its canonical form, so identical content is
/// found rather than stored twice (status 200).
#[utoipa::path(
    post,
    path = "/datasets",
    tag = "datasets",
    params(DatasetQuery),
    request_body(
        description = "The dataset as JSONL, one row per line (at most 256 MiB).",
        content((String = "application/x-ndjson"), (String = "application/jsonl"))
    ),
    responses(
        (status = 201, description = "The dataset is registered.", body = DatasetUpload),
        (status = 200, description = "A dataset with the same content was registered before.", body = DatasetUpload),
        (status = 413, description = "The body is larger than 256 MiB."),
        (status = 422, response = Invalid),
        AuthErrors,
    ),
    security(("bearer" = []), ("session" = []))
)]
async fn add_dataset(
    State(s): State<Services>,
    Caller(actor): Caller,
    Query(q): Query<DatasetQuery>,
    body: Bytes,
) -> ApiResult<impl IntoResponse> {
    if q.name.trim().is_empty() {
        return Err(FieldErrors::single("name", "is required (?name=…)").into());
    }
    let (record, created_now) = runner(&s)
        .add_dataset(&actor, &q.name, &body, DatasetSource::Upload { upload: q.name.trim().to_owned() })
        .await?;
    let status = if created_now { axum::http::StatusCode::CREATED } else { axum::http::StatusCode::OK };
    Ok((status, Json(DatasetUpload { dataset: record, created: created_now })))
}

/// Lists the organisation's datasets.
#[utoipa::path(
    get,
    path = "/datasets",
    tag = "datasets",
    responses(
        (status = 200, description = "Every dataset of the organisation.", body = Vec<Dataset>),
        AuthErrors,
    ),
    security(("bearer" = []), ("session" = []))
)]
async fn list_datasets(State(s): State<Services>, Caller(actor): Caller) -> ApiResult<impl IntoResponse> {
    Ok(Json(runner(&s).datasets(&actor).await?))
}

/// Reads one dataset's record, with its lineage.
#[utoipa::path(
    get,
    path = "/datasets/{id}",
    tag = "datasets",
    params(("id" = i64, Path, description = "The dataset's id.")),
    responses(
        (status = 200, description = "The dataset's record.", body = Dataset),
        ReadErrors,
    ),
    security(("bearer" = []), ("session" = []))
)]
async fn get_dataset(State(s): State<Services>, Caller(actor): Caller, Id(id): Id) -> ApiResult<impl IntoResponse> {
    Ok(Json(runner(&s).dataset(&actor, id).await?))
}

/// Downloads a dataset's rows as canonical JSONL.
#[utoipa::path(
    get,
    path = "/datasets/{id}/rows",
    tag = "datasets",
    params(("id" = i64, Path, description = "The dataset's id.")),
    responses(
        (
            status = 200,
            description = "The dataset's rows, one JSON object per line.",
            body = String,
            content_type = "application/x-ndjson"
        ),
        ReadErrors,
    ),
    security(("bearer" = []), ("session" = []))
)]
async fn dataset_rows(State(s): State<Services>, Caller(actor): Caller, Id(id): Id) -> ApiResult<impl IntoResponse> {
    let bytes = runner(&s).dataset_bytes(&actor, id).await?;
    Ok(([(header::CONTENT_TYPE, "application/x-ndjson")], bytes))
}

#[derive(Deserialize, Default, IntoParams)]
#[serde(default)]
#[into_params(parameter_in = Query)]
struct BuildQuery {
    /// What the rows come from: `events` (the default), `annotations` (the loop's expert annotations)
    /// or `both` (the events, with each annotated event's rows taken from its annotations).
    from: Option<String>,
}

/// Builds training datasets from a loop's stored events, its expert annotations, or both.
///
/// From events, the SFT set pairs each context with what the user wrote, and the preference set prefers
/// what the user wrote over a suggestion they did not take. From annotations, the SFT set pairs each
/// context with the annotators' consensus correction, and the preference set prefers the suggestion
/// they chose (or the correction) over the other. Each set records its lineage: the segments read, the
/// id of the event behind each row and, for rows from annotations, their annotations and annotators.
#[utoipa::path(
    post,
    path = "/loops/{loop}/datasets",
    tag = "datasets",
    params(("loop" = String, Path, description = "The loop's key."), BuildQuery),
    responses(
        (
            status = 201,
            description = "The datasets built (or found, when their content existed).",
            body = BuiltDatasets
        ),
        (status = 422, response = Invalid),
        ActionErrors,
    ),
    security(("bearer" = []), ("session" = []))
)]
async fn build_datasets(
    State(s): State<Services>,
    Caller(actor): Caller,
    Path(loop_key): Path<String>,
    Query(query): Query<BuildQuery>,
) -> ApiResult<impl IntoResponse> {
    let from = match query.from.as_deref().map(str::trim) {
        None | Some("") => DatasetBasis::Events,
        Some(raw) => raw.parse::<DatasetBasis>().map_err(|m| FieldErrors::single("from", m))?,
    };
    Ok(created(runner(&s).build_datasets(&actor, &loop_key, from).await?))
}

// ---- jobs --------------------------------------------------------------------------------------

#[derive(Deserialize, Default, IntoParams)]
#[serde(default)]
#[into_params(parameter_in = Query)]
struct JobsQuery {
    /// How many jobs at most, newest first (1 to 500, default 100).
    limit: Option<i64>,
}

/// Lists the organisation's jobs, newest first.
#[utoipa::path(
    get,
    path = "/jobs",
    tag = "jobs",
    params(JobsQuery),
    responses(
        (status = 200, description = "The jobs, newest first.", body = Vec<Job>),
        (status = 422, response = Invalid),
        AuthErrors,
    ),
    security(("bearer" = []), ("session" = []))
)]
async fn list_jobs(
    State(s): State<Services>,
    Caller(actor): Caller,
    Query(q): Query<JobsQuery>,
) -> ApiResult<impl IntoResponse> {
    Ok(Json(runner(&s).jobs(&actor, q.limit.unwrap_or(100)).await?))
}

/// Queues a training or eval job.
///
/// Every reference and setting is checked before the job is queued: the models and datasets it names,
/// the model's size and the batch's memory. A worker claims the job, and a job whose worker dies is
/// resumed from its last checkpoint.
#[utoipa::path(
    post,
    path = "/jobs",
    tag = "jobs",
    request_body = JobRequest,
    responses(
        (status = 201, description = "The queued job.", body = Job),
        WriteErrors,
    ),
    security(("bearer" = []), ("session" = []))
)]
async fn submit_job(
    State(s): State<Services>,
    Caller(actor): Caller,
    Body(request): Body<JobRequest>,
) -> ApiResult<impl IntoResponse> {
    Ok(created(runner(&s).submit(&actor, &request).await?))
}

/// Reads one job.
#[utoipa::path(
    get,
    path = "/jobs/{id}",
    tag = "jobs",
    params(("id" = i64, Path, description = "The job's id.")),
    responses(
        (status = 200, description = "The job.", body = Job),
        ReadErrors,
    ),
    security(("bearer" = []), ("session" = []))
)]
async fn get_job(State(s): State<Services>, Caller(actor): Caller, Id(id): Id) -> ApiResult<impl IntoResponse> {
    Ok(Json(runner(&s).job(&actor, id).await?))
}

/// Cancels a job.
///
/// A pending job is cancelled at once; a running one stops at its next heartbeat. A job that has
/// already ended cannot be cancelled.
#[utoipa::path(
    post,
    path = "/jobs/{id}/cancel",
    tag = "jobs",
    params(("id" = i64, Path, description = "The job's id.")),
    responses(
        (status = 200, description = "The job, cancelled or with its cancellation requested.", body = Job),
        ActionErrors,
    ),
    security(("bearer" = []), ("session" = []))
)]
async fn cancel_job(State(s): State<Services>, Caller(actor): Caller, Id(id): Id) -> ApiResult<impl IntoResponse> {
    Ok(Json(runner(&s).cancel(&actor, id).await?))
}

#[derive(Deserialize, Default, IntoParams)]
#[serde(default)]
#[into_params(parameter_in = Query)]
struct MetricsQuery {
    /// Only the steps after this one (default 0: every step).
    after: i64,
}

/// Reads a job's step metrics, in step order.
#[utoipa::path(
    get,
    path = "/jobs/{id}/metrics",
    tag = "jobs",
    params(("id" = i64, Path, description = "The job's id."), MetricsQuery),
    responses(
        (status = 200, description = "The metrics of each step after `after`.", body = Vec<JobMetric>),
        CheckedErrors,
    ),
    security(("bearer" = []), ("session" = []))
)]
async fn job_metrics(
    State(s): State<Services>,
    Caller(actor): Caller,
    Id(id): Id,
    Query(q): Query<MetricsQuery>,
) -> ApiResult<impl IntoResponse> {
    Ok(Json(runner(&s).job_metrics(&actor, id, q.after).await?))
}

/// Follows a job as server-sent events.
///
/// The stream sends `metrics` events (new step metrics, in order, as a JSON array of `JobMetric`) and
/// `job` events (the job's record, a `JobRecord`, whenever it changes). It is polled from the database
/// once a second, so that it works whichever worker runs the job, and it ends after the job does. It
/// also ends, with an `end` event whose `reason` says why, when the server begins to shut down (so a
/// graceful shutdown does not wait for it) and within five seconds of the caller's token being revoked
/// or session ended.
#[utoipa::path(
    get,
    path = "/jobs/{id}/events",
    tag = "jobs",
    params(("id" = i64, Path, description = "The job's id.")),
    responses(
        (
            status = 200,
            description = "A stream of `metrics` and `job` events, each with JSON data.",
            body = String,
            content_type = "text/event-stream"
        ),
        ReadErrors,
    ),
    security(("bearer" = []), ("session" = []))
)]
async fn job_events(
    State(s): State<Services>,
    Caller(actor): Caller,
    Id(id): Id,
    credential: Option<axum::Extension<crate::auth::Credential>>,
    axum::Extension(stopping): axum::Extension<crate::Stopping>,
) -> ApiResult<impl IntoResponse> {
    // An unknown job is a 404 before the stream starts.
    runner(&s).job(&actor, id).await?;
    struct Cursor {
        state: Services,
        actor: slope_domain::Actor,
        credential: Option<crate::auth::Credential>,
        stopping: crate::Stopping,
        id: i64,
        after: i64,
        last: Option<serde_json::Value>,
        done: bool,
        ticks: u64,
    }
    /// The stream's last event, saying why it ends when that is not the job's end.
    fn end(reason: &str) -> Vec<Result<Event, Infallible>> {
        vec![Ok(Event::default()
            .event("end")
            .json_data(serde_json::json!({ "reason": reason }))
            .expect("serialisable"))]
    }
    let credential = credential.map(|c| c.0);
    let cursor = Cursor { state: s, actor, credential, stopping, id, after: 0, last: None, done: false, ticks: 0 };
    let stream = futures_util::stream::unfold(cursor, |mut c| async move {
        if c.done {
            return None;
        }
        if c.ticks > 0 {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = c.stopping.begun() => {
                    c.done = true;
                    return Some((futures_util::stream::iter(end("the server is shutting down; reconnect")), c));
                }
            }
        }
        c.ticks += 1;
        // The credential is checked again every few seconds: a revoked token or an ended session ends
        // the stream as it would refuse a new request.
        if c.ticks % 5 == 0
            && let Some(credential) = &c.credential
            && !credential.is_live(&c.state.access).await.unwrap_or(true)
        {
            c.done = true;
            return Some((futures_util::stream::iter(end("the credential was revoked or the session ended")), c));
        }
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
                if job.status.is_final() {
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

#[derive(Deserialize, Default, IntoParams)]
#[serde(default)]
#[into_params(parameter_in = Query)]
struct ModelsQuery {
    /// Only the models of this loop (a loop that does not exist is a 404).
    #[serde(rename = "loop")]
    loop_key: Option<String>,
}

/// Lists the registered models, newest first.
#[utoipa::path(
    get,
    path = "/models",
    tag = "models",
    params(ModelsQuery),
    responses(
        (status = 200, description = "The registered models.", body = Vec<Model>),
        CheckedErrors,
    ),
    security(("bearer" = []), ("session" = []))
)]
async fn list_models(
    State(s): State<Services>,
    Caller(actor): Caller,
    Query(q): Query<ModelsQuery>,
) -> ApiResult<impl IntoResponse> {
    Ok(Json(runner(&s).models(&actor, q.loop_key.as_deref()).await?))
}

/// Reads one model with its aliases and lineage.
#[utoipa::path(
    get,
    path = "/models/{id}",
    tag = "models",
    params(("id" = i64, Path, description = "The model's id.")),
    responses(
        (
            status = 200,
            description = "The model, the aliases naming it and its chain of base models.",
            body = ModelView
        ),
        ReadErrors,
    ),
    security(("bearer" = []), ("session" = []))
)]
async fn get_model(State(s): State<Services>, Caller(actor): Caller, Id(id): Id) -> ApiResult<impl IntoResponse> {
    Ok(Json(runner(&s).model(&actor, id).await?))
}

/// A loop's models, aliases and promotion decisions.
#[derive(Serialize, ToSchema)]
struct LoopModels {
    /// The loop's key.
    #[serde(rename = "loop")]
    loop_key: String,
    /// The loop's `champion` and `challenger`.
    aliases: Vec<Alias>,
    models: Vec<Model>,
    /// Every promotion decision, accepted or refused.
    promotions: Vec<Promotion>,
}

/// Lists a loop's models, aliases and promotion decisions.
#[utoipa::path(
    get,
    path = "/loops/{loop}/models",
    tag = "models",
    params(("loop" = String, Path, description = "The loop's key.")),
    responses(
        (status = 200, description = "The loop's models, aliases and promotions.", body = LoopModels),
        ReadErrors,
    ),
    security(("bearer" = []), ("session" = []))
)]
async fn loop_models(
    State(s): State<Services>,
    Caller(actor): Caller,
    Path(loop_key): Path<String>,
) -> ApiResult<impl IntoResponse> {
    let r = runner(&s);
    Ok(Json(LoopModels {
        aliases: r.aliases(&actor, Some(&loop_key)).await?,
        models: r.models(&actor, Some(&loop_key)).await?,
        promotions: r.promotions(&actor, Some(&loop_key)).await?,
        loop_key,
    }))
}

/// Reads a loop's post-training stack: each stage's current artefact, the iterations derived from
/// lineage (dataset → job → eval → experiment → promotion decision) and the loop's metabolism.
#[utoipa::path(
    get,
    path = "/loops/{loop}/stack",
    tag = "models",
    params(("loop" = String, Path, description = "The loop's key.")),
    responses(
        (status = 200, description = "The loop's stages, iterations and metabolism.", body = slope_domain::LoopStack),
        ReadErrors,
    ),
    security(("bearer" = []), ("session" = []))
)]
async fn loop_stack(
    State(s): State<Services>,
    Caller(actor): Caller,
    Path(loop_key): Path<String>,
) -> ApiResult<impl IntoResponse> {
    Ok(Json(runner(&s).loop_stack(&actor, &loop_key).await?))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct ModelChoice {
    /// The model's id.
    model_id: i64,
}

/// The answer of a promotion the gate refused: the error and the recorded decision.
#[derive(ToSchema)]
#[allow(dead_code)]
struct GateRefused {
    /// Code `gate_refused`, with the gate's reason as the message.
    error: ErrorDetail,
    /// The recorded decision; absent when the model is already the champion (code `conflict`).
    #[schema(required = false)]
    decision: PromotionOutcome,
}

/// Asks the promotion gate to make a model its loop's champion.
///
/// The model becomes the champion only when its reward beats the champion's on the same held-out data
/// and, once the loop has a champion, an experiment served exactly this model (`treatment_model`)
/// against the champion (`control_model`) and its analysis meets the loop's gate policy (not
/// significantly worse, or significantly better). Without such an experiment the gate refuses, naming
/// it. Every decision is recorded: a refused promotion answers 409 with the decision.
#[utoipa::path(
    post,
    path = "/loops/{loop}/promote",
    tag = "models",
    params(("loop" = String, Path, description = "The loop's key.")),
    request_body = ModelChoice,
    responses(
        (status = 200, description = "The model is the loop's champion now.", body = PromotionOutcome),
        (
            status = 409,
            description = "The gate refused the promotion (code `gate_refused`, with the recorded `decision`), or the \
                model is already the champion (code `conflict`).",
            body = GateRefused
        ),
        WriteErrors,
    ),
    security(("bearer" = []), ("session" = []))
)]
async fn promote(
    State(s): State<Services>,
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

/// Reads the loop's promotion gate policy.
///
/// `online` is what the experiment of the challenger against the champion must show: `not-worse` (the
/// default: the always-valid interval of the acceptance difference does not lie below zero) or
/// `better` (it lies above zero).
#[utoipa::path(
    get,
    path = "/loops/{loop}/gate",
    tag = "models",
    params(("loop" = String, Path, description = "The loop's key.")),
    responses(
        (status = 200, description = "The loop's gate policy (the default when none was set).", body = GatePolicy),
        ReadErrors,
    ),
    security(("bearer" = []), ("session" = []))
)]
async fn gate_policy(
    State(s): State<Services>,
    Caller(actor): Caller,
    Path(loop_key): Path<String>,
) -> ApiResult<Json<GatePolicy>> {
    Ok(Json(runner(&s).gate_policy(&actor, &loop_key).await?))
}

/// Sets the loop's promotion gate policy.
///
/// Every change is on the audit trail; decisions record the policy they applied.
#[utoipa::path(
    put,
    path = "/loops/{loop}/gate",
    tag = "models",
    params(("loop" = String, Path, description = "The loop's key.")),
    request_body = GatePolicyInput,
    responses(
        (status = 200, description = "The loop's gate policy now.", body = GatePolicy),
        WriteErrors,
    ),
    security(("bearer" = []), ("session" = []))
)]
async fn set_gate_policy(
    State(s): State<Services>,
    Caller(actor): Caller,
    Path(loop_key): Path<String>,
    Body(input): Body<GatePolicyInput>,
) -> ApiResult<Json<GatePolicy>> {
    Ok(Json(runner(&s).set_gate_policy(&actor, &loop_key, &input).await?))
}

/// Names a model its loop's challenger.
///
/// The challenger is the model that an active experiment serves to the users of its treatment arm.
#[utoipa::path(
    post,
    path = "/loops/{loop}/challenger",
    tag = "models",
    params(("loop" = String, Path, description = "The loop's key.")),
    request_body = ModelChoice,
    responses(
        (status = 200, description = "The loop's `challenger` alias.", body = Alias),
        WriteErrors,
    ),
    security(("bearer" = []), ("session" = []))
)]
async fn set_challenger(
    State(s): State<Services>,
    Caller(actor): Caller,
    Path(loop_key): Path<String>,
    Body(choice): Body<ModelChoice>,
) -> ApiResult<impl IntoResponse> {
    Ok(Json(runner(&s).set_challenger(&actor, &loop_key, choice.model_id).await?))
}

// ---- serving -----------------------------------------------------------------------------------

/// Serves a suggestion for a user's context.
///
/// The suggestion comes from the loop's champion, or from its challenger for the users an active
/// experiment assigns to the treatment by a stable hash. The impression is recorded; report what the
/// user did with it to `/loops/{loop}/complete/{event_id}/outcome`.
#[utoipa::path(
    post,
    path = "/loops/{loop}/complete",
    tag = "serving",
    params(("loop" = String, Path, description = "The loop's key.")),
    request_body = CompletionRequest,
    responses(
        (
            status = 200,
            description = "The suggestion, with the event id its outcome is reported under.",
            body = Completion
        ),
        EditErrors,
    ),
    security(("bearer" = []), ("session" = []))
)]
async fn complete(
    State(s): State<Services>,
    Caller(actor): Caller,
    Path(loop_key): Path<String>,
    Body(request): Body<CompletionRequest>,
) -> ApiResult<impl IntoResponse> {
    Ok(Json(runner(&s).complete(&actor, &loop_key, &request).await?))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct Outcome {
    /// How many characters of the suggestion the user kept.
    accepted_chars: i64,
    /// What the user finally wrote.
    #[serde(default)]
    final_text: Option<String>,
}

/// Reports what the user did with a served suggestion.
///
/// The outcome is reported once; a repeat returns the first report. A suggestion whose outcome is not
/// reported in time is recorded as not accepted, and the upkeep turns served suggestions into events
/// of the loop.
#[utoipa::path(
    post,
    path = "/loops/{loop}/complete/{event_id}/outcome",
    tag = "serving",
    params(
        ("loop" = String, Path, description = "The loop's key."),
        ("event_id" = String, Path, description = "The `event_id` of the served suggestion."),
    ),
    request_body = Outcome,
    responses(
        (status = 200, description = "The served suggestion with its outcome.", body = Impression),
        EditErrors,
    ),
    security(("bearer" = []), ("session" = []))
)]
async fn outcome(
    State(s): State<Services>,
    Caller(actor): Caller,
    Path((loop_key, event_id)): Path<(String, String)>,
    Body(o): Body<Outcome>,
) -> ApiResult<impl IntoResponse> {
    Ok(Json(runner(&s).record_outcome(&actor, &loop_key, &event_id, o.accepted_chars, o.final_text.as_deref()).await?))
}
