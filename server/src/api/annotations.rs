//! `/api/v1` routes of expert annotation: queues (defined, versioned, sampled), items, the lease of the
//! next item and answers to it, gold answers, exports and imports of labels, and annotation budgets.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};
use slope_domain::*;
use slope_service::{Annotations, MAX_IMPORT_BYTES, Services};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouterExt};
use utoipa_axum::routes;

use super::extract::{Body, Caller, Id, KeyId, Query};
use super::{
    ActionErrors, ApiResult, AuthErrors, BodyErrors, CheckedErrors, EditErrors, ErrorBody, Invalid, ReadErrors,
    Versioned, WriteErrors, created,
};

pub(crate) fn routes() -> OpenApiRouter<Services> {
    OpenApiRouter::new()
        .routes(routes!(list_queues, create_queue))
        .routes(routes!(queue_page, update_queue))
        .routes(routes!(sample_queue))
        .routes(routes!(queue_items))
        .routes(routes!(next_item))
        .routes(routes!(annotate))
        .routes(routes!(set_gold, remove_gold))
        .routes(routes!(export_annotations))
        .routes(routes!(import_annotations).layer(DefaultBodyLimit::max(MAX_IMPORT_BYTES)))
        .routes(routes!(fine_tune))
        .routes(routes!(key_result_budget))
        .routes(routes!(loop_budget))
}

fn annotations(s: &Services) -> &Annotations {
    &s.annotations
}

/// A queue's definition and the version it edits.
#[derive(Deserialize, ToSchema)]
#[allow(dead_code)]
pub(crate) struct QueueEdit {
    /// The `version` of the queue that the edit is based on, from the last GET.
    version: Version,
    #[serde(flatten)]
    input: QueueInput,
}

/// A new queue and its first round of sampling.
#[derive(Serialize, ToSchema)]
struct QueueCreated {
    queue: AnnotationQueue,
    sampled: Sampled,
}

/// Lists the annotation queues the caller may see: every queue for members who read the organisation,
/// the queues open to them for annotators, each with its progress and the caller's own count.
#[utoipa::path(
    get,
    path = "/annotation-queues",
    tag = "annotation",
    responses((status = 200, description = "The queues.", body = Vec<QueueSummary>), AuthErrors),
    security(("bearer" = []), ("session" = []))
)]
async fn list_queues(State(s): State<Services>, Caller(actor): Caller) -> ApiResult<Json<Vec<QueueSummary>>> {
    Ok(Json(annotations(&s).queues(&actor).await?))
}

/// Defines an annotation queue on a loop and samples its first items.
///
/// The sampling policy chooses which interactions enter (`random`, `lowest-acceptance`, `disagreement`,
/// `drift-window` or `explicit`); the labels say what annotators give (a correction or a preference,
/// a rating, tags); `annotators_per_item` above 1 measures agreement. A preference queue, and the
/// disagreement policy, set the loop's challenger's suggestion beside the served one, so they need a
/// challenger.
#[utoipa::path(
    post,
    path = "/annotation-queues",
    tag = "annotation",
    request_body = QueueInput,
    responses((status = 201, description = "The queue and what its first sampling added.", body = QueueCreated), BodyErrors),
    security(("bearer" = []), ("session" = []))
)]
async fn create_queue(
    State(s): State<Services>,
    Caller(actor): Caller,
    Body(input): Body<QueueInput>,
) -> ApiResult<impl IntoResponse> {
    let (queue, sampled) = annotations(&s).create_queue(&actor, &input).await?;
    Ok(created(QueueCreated { queue, sampled }))
}

/// Reads a queue: its definition and versions, progress, agreement between annotators (Krippendorff's
/// alpha for preferences and ratings, edit distance between corrections, with 95 % intervals) and each
/// annotator's quality and gold score, flagged items and the newest annotations.
#[utoipa::path(
    get,
    path = "/annotation-queues/{key}",
    tag = "annotation",
    params(("key" = String, Path, description = "The queue's key.")),
    responses((status = 200, description = "The queue's page.", body = QueuePage), ReadErrors),
    security(("bearer" = []), ("session" = []))
)]
async fn queue_page(
    State(s): State<Services>,
    Caller(actor): Caller,
    Path(key): Path<String>,
) -> ApiResult<Json<QueuePage>> {
    Ok(Json(annotations(&s).queue_page(&actor, &key).await?))
}

/// Makes a new version of a queue's definition. Its key and loop stay; items sampled before keep the
/// version they were sampled under.
#[utoipa::path(
    put,
    path = "/annotation-queues/{key}",
    tag = "annotation",
    params(("key" = String, Path, description = "The queue's key.")),
    request_body = QueueEdit,
    responses((status = 200, description = "The queue at its new version.", body = AnnotationQueue), EditErrors),
    security(("bearer" = []), ("session" = []))
)]
async fn update_queue(
    State(s): State<Services>,
    Caller(actor): Caller,
    Path(key): Path<String>,
    edit: Versioned<QueueInput>,
) -> ApiResult<Json<AnnotationQueue>> {
    Ok(Json(annotations(&s).update_queue(&actor, &key, edit.version, &edit.input).await?))
}

/// Samples another round of the loop's interactions into the queue, under its current version.
#[utoipa::path(
    post,
    path = "/annotation-queues/{key}/sample",
    tag = "annotation",
    params(("key" = String, Path, description = "The queue's key.")),
    responses((status = 200, description = "What the round added.", body = Sampled), (status = 422, response = Invalid), ActionErrors),
    security(("bearer" = []), ("session" = []))
)]
async fn sample_queue(
    State(s): State<Services>,
    Caller(actor): Caller,
    Path(key): Path<String>,
) -> ApiResult<Json<Sampled>> {
    Ok(Json(annotations(&s).sample(&actor, &key).await?))
}

#[derive(Deserialize, Default, IntoParams)]
#[serde(default)]
#[into_params(parameter_in = Query)]
struct ItemsQuery {
    /// Only items of this status: `open`, `done` or `flagged`.
    status: Option<String>,
}

/// Lists a queue's items with their known answers (gold), for operators and readers.
#[utoipa::path(
    get,
    path = "/annotation-queues/{key}/items",
    tag = "annotation",
    params(("key" = String, Path, description = "The queue's key."), ItemsQuery),
    responses((status = 200, description = "The items, in order.", body = Vec<AnnotationItem>), CheckedErrors),
    security(("bearer" = []), ("session" = []))
)]
async fn queue_items(
    State(s): State<Services>,
    Caller(actor): Caller,
    Path(key): Path<String>,
    Query(query): Query<ItemsQuery>,
) -> ApiResult<Json<Vec<AnnotationItem>>> {
    let status = match query.status.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(raw) => Some(raw.parse::<ItemStatus>().map_err(|m| FieldErrors::single("status", m))?),
    };
    Ok(Json(annotations(&s).items(&actor, &key, status).await?))
}

/// Takes the caller's next item of the queue: the one they hold (renewed), or the first with a place
/// for them, leased for the queue's lease time so no one else gets it beyond the queue's overlap. 204
/// when the queue has nothing left for them.
#[utoipa::path(
    post,
    path = "/annotation-queues/{key}/next",
    tag = "annotation",
    params(("key" = String, Path, description = "The queue's key.")),
    responses(
        (status = 200, description = "The item, leased to the caller.", body = WorkItem),
        (status = 204, description = "Nothing left for the caller in this queue."),
        ReadErrors,
    ),
    security(("bearer" = []), ("session" = []))
)]
async fn next_item(
    State(s): State<Services>,
    Caller(actor): Caller,
    Path(key): Path<String>,
) -> ApiResult<axum::response::Response> {
    Ok(match annotations(&s).next_item(&actor, &key).await? {
        Some(item) => Json(item).into_response(),
        None => StatusCode::NO_CONTENT.into_response(),
    })
}

/// Answers an item the caller holds: labels (what the item's queue version asks for), a skip, or a
/// flag with its reason; the answer comes with the caller's next item, leased already.
///
/// Refused with nothing stored: labels the item does not ask for or bad ones, an item not leased to the
/// caller, a lease that ran out (422, by field); an item another annotator took or completed meanwhile,
/// or one the caller answered already (409).
#[utoipa::path(
    post,
    path = "/annotation-queues/{key}/items/{id}/annotations",
    tag = "annotation",
    params(("key" = String, Path, description = "The queue's key."), ("id" = i64, Path, description = "The item's id.")),
    request_body = AnnotationInput,
    responses((status = 201, description = "The stored annotation and the next item.", body = Submitted), EditErrors),
    security(("bearer" = []), ("session" = []))
)]
async fn annotate(
    State(s): State<Services>,
    Caller(actor): Caller,
    KeyId(key, id): KeyId,
    Body(input): Body<AnnotationInput>,
) -> ApiResult<impl IntoResponse> {
    Ok(created(annotations(&s).submit(&actor, &key, id, &input).await?))
}

/// Puts an item in the queue's gold set with its known answer, checked like an annotation's labels.
/// Annotators never see it; the queue page scores each annotator against the gold set.
#[utoipa::path(
    put,
    path = "/annotation-queues/{key}/items/{id}/gold",
    tag = "annotation",
    params(("key" = String, Path, description = "The queue's key."), ("id" = i64, Path, description = "The item's id.")),
    request_body = AnnotationInput,
    responses((status = 200, description = "The item with its gold answer.", body = AnnotationItem), WriteErrors),
    security(("bearer" = []), ("session" = []))
)]
async fn set_gold(
    State(s): State<Services>,
    Caller(actor): Caller,
    KeyId(key, id): KeyId,
    Body(input): Body<AnnotationInput>,
) -> ApiResult<Json<AnnotationItem>> {
    Ok(Json(annotations(&s).set_gold(&actor, &key, id, Some(&input)).await?))
}

/// Takes an item out of the gold set.
#[utoipa::path(
    delete,
    path = "/annotation-queues/{key}/items/{id}/gold",
    tag = "annotation",
    params(("key" = String, Path, description = "The queue's key."), ("id" = i64, Path, description = "The item's id.")),
    responses((status = 200, description = "The item, without a gold answer.", body = AnnotationItem), ReadErrors),
    security(("bearer" = []), ("session" = []))
)]
async fn remove_gold(
    State(s): State<Services>,
    Caller(actor): Caller,
    KeyId(key, id): KeyId,
) -> ApiResult<Json<AnnotationItem>> {
    Ok(Json(annotations(&s).set_gold(&actor, &key, id, None).await?))
}

/// Exports a queue's annotations as JSONL, oldest first, each line with its item's text; the file
/// imports into another queue as it is.
#[utoipa::path(
    get,
    path = "/annotation-queues/{key}/export",
    tag = "annotation",
    params(("key" = String, Path, description = "The queue's key.")),
    responses(
        (status = 200, description = "One annotation per line.", body = String, content_type = "application/x-ndjson"),
        ReadErrors,
    ),
    security(("bearer" = []), ("session" = []))
)]
async fn export_annotations(
    State(s): State<Services>,
    Caller(actor): Caller,
    Path(key): Path<String>,
) -> ApiResult<impl IntoResponse> {
    let bytes = annotations(&s).export(&actor, &key).await?;
    Ok(([(header::CONTENT_TYPE, "application/x-ndjson")], bytes))
}

/// Imports labels made elsewhere: JSONL lines of `event_id`, `annotator` and the labels (as an export
/// writes them). Events of the loop that the queue lacks become its items. A file with any bad line is
/// refused whole, each error keyed `line N: field`.
#[utoipa::path(
    post,
    path = "/annotation-queues/{key}/import",
    tag = "annotation",
    params(("key" = String, Path, description = "The queue's key.")),
    request_body(description = "The labels, one JSON object per line.", content((String = "application/x-ndjson"))),
    responses(
        (status = 201, description = "What was stored.", body = Imported),
        (status = 413, description = "Code `too_large`: the file is over 64 MiB; split it.", body = ErrorBody),
        WriteErrors,
    ),
    security(("bearer" = []), ("session" = []))
)]
async fn import_annotations(
    State(s): State<Services>,
    Caller(actor): Caller,
    Path(key): Path<String>,
    body: Bytes,
) -> ApiResult<impl IntoResponse> {
    Ok(created(annotations(&s).import(&actor, &key, &body).await?))
}

/// What `POST /annotation-queues/{key}/fine-tune` takes.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct FineTuneInput {
    /// `annotations` (the loop's annotations alone) or `both` (the loop's events, annotated ones from
    /// their annotations) [default: both].
    #[serde(default)]
    from: Option<String>,
    /// Optimizer steps [default: 200].
    #[serde(default)]
    steps: Option<usize>,
}

/// Builds the loop's datasets with its annotations and queues an SFT job from the loop's champion on
/// them, evaluated on the held-out data the champion was evaluated on, so that the promotion gate can
/// compare the two. Follow the job at `/api/v1/jobs/{id}`.
#[utoipa::path(
    post,
    path = "/annotation-queues/{key}/fine-tune",
    tag = "annotation",
    params(("key" = String, Path, description = "The queue's key.")),
    request_body = FineTuneInput,
    responses((status = 201, description = "The datasets built and the job queued.", body = AnnotatedFineTune), EditErrors),
    security(("bearer" = []), ("session" = []))
)]
async fn fine_tune(
    State(s): State<Services>,
    Caller(actor): Caller,
    Path(key): Path<String>,
    Body(input): Body<FineTuneInput>,
) -> ApiResult<impl IntoResponse> {
    let from = match input.from.as_deref().map(str::trim) {
        None | Some("") => DatasetBasis::Both,
        Some(raw) => raw.parse::<DatasetBasis>().map_err(|m| FieldErrors::single("from", m))?,
    };
    Ok(created(annotations(&s).fine_tune(&actor, &key, from, input.steps.unwrap_or(200)).await?))
}

/// A key result's annotation budget, when it has one.
#[derive(Serialize, ToSchema)]
struct KeyResultBudgetAnswer {
    key_result_id: i64,
    /// `null` for a key result not fed by a loop's acceptance-rate metric, or whose measure has no single
    /// target (a milestone, a range).
    budget: Option<AnnotationBudget>,
}

/// Reads a key result's annotation budget: the further expert annotations its loop metric needs to
/// reach the target, from a learning curve fitted to the loop's promoted iterations, with an 80 %
/// interval and the weekly rate needed by the key result's end, or why it cannot be estimated yet.
#[utoipa::path(
    get,
    path = "/key-results/{id}/annotation-budget",
    tag = "annotation",
    params(("id" = i64, Path, description = "The key result's id.")),
    responses((status = 200, description = "The budget.", body = KeyResultBudgetAnswer), ReadErrors),
    security(("bearer" = []), ("session" = []))
)]
async fn key_result_budget(
    State(s): State<Services>,
    Caller(actor): Caller,
    Id(id): Id,
) -> ApiResult<impl IntoResponse> {
    let budget = annotations(&s).key_result_budget(&actor, KeyResultId(id)).await?;
    Ok(Json(KeyResultBudgetAnswer { key_result_id: id, budget }))
}

/// Reads the annotation budgets of the key results a loop's acceptance metrics feed.
#[utoipa::path(
    get,
    path = "/loops/{loop}/annotation-budget",
    tag = "annotation",
    params(("loop" = String, Path, description = "The loop's key.")),
    responses((status = 200, description = "The budgets.", body = LoopBudget), ReadErrors),
    security(("bearer" = []), ("session" = []))
)]
async fn loop_budget(
    State(s): State<Services>,
    Caller(actor): Caller,
    Path(loop_key): Path<String>,
) -> ApiResult<Json<LoopBudget>> {
    Ok(Json(annotations(&s).loop_budget(&actor, &loop_key).await?))
}
