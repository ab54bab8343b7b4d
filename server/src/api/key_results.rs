//! Key results of objectives and their check-ins.

use axum::Json;
use axum::extract::State;
use axum::response::IntoResponse;
use slope_domain::*;
use slope_service::Services;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::extract::{Body, Caller, Id};
use super::{ApiResult, EditErrors, KeyResultEdit, ReadErrors, Versioned, WriteErrors, created};

pub(crate) fn routes() -> OpenApiRouter<Services> {
    OpenApiRouter::new()
        .routes(routes!(create_key_result))
        .routes(routes!(get_key_result, update_key_result))
        .routes(routes!(key_result_check_ins, check_in_key_result))
}

/// Creates a key result under an objective.
#[utoipa::path(
    post,
    path = "/objectives/{id}/key-results",
    tag = "key-results",
    params(("id" = i64, Path, description = "The id of the objective the key result belongs to.")),
    request_body = KeyResultInput,
    responses(
        (status = 201, description = "The key result as stored.", body = KeyResult),
        WriteErrors,
    ),
    security(("bearer" = []), ("session" = []))
)]
async fn create_key_result(
    State(s): State<Services>,
    Caller(actor): Caller,
    Id(id): Id,
    Body(input): Body<KeyResultInput>,
) -> ApiResult<impl IntoResponse> {
    Ok(created(s.planning.create_key_result(&actor, ObjectiveId(id), &input).await?))
}

/// Reads one key result with its context.
///
/// The detail holds the key result's progress, its objective and season, the squad goals under it and
/// its check-ins, newest first.
#[utoipa::path(
    get,
    path = "/key-results/{id}",
    tag = "key-results",
    params(("id" = i64, Path, description = "The key result's id.")),
    responses(
        (status = 200, description = "The key result with its context.", body = KeyResultDetail),
        ReadErrors,
    ),
    security(("bearer" = []), ("session" = []))
)]
async fn get_key_result(
    State(s): State<Services>,
    Caller(actor): Caller,
    Id(id): Id,
) -> ApiResult<Json<KeyResultDetail>> {
    Ok(Json(s.planning.key_result_detail(&actor, KeyResultId(id)).await?))
}

/// Edits a key result.
///
/// The body holds every field of the key result and the `version` it edits.
#[utoipa::path(
    put,
    path = "/key-results/{id}",
    tag = "key-results",
    params(("id" = i64, Path, description = "The key result's id.")),
    request_body = KeyResultEdit,
    responses(
        (status = 200, description = "The key result as stored, with its new version.", body = KeyResult),
        EditErrors,
    ),
    security(("bearer" = []), ("session" = []))
)]
async fn update_key_result(
    State(s): State<Services>,
    Caller(actor): Caller,
    Id(id): Id,
    body: Versioned<KeyResultInput>,
) -> ApiResult<Json<KeyResult>> {
    let Versioned { version, input } = body;
    Ok(Json(s.planning.update_key_result(&actor, KeyResultId(id), version, &input).await?))
}

/// Lists a key result's check-ins, newest first.
#[utoipa::path(
    get,
    path = "/key-results/{id}/check-ins",
    tag = "key-results",
    params(("id" = i64, Path, description = "The key result's id.")),
    responses(
        (status = 200, description = "The key result's check-ins, newest first.", body = Vec<CheckIn>),
        ReadErrors,
    ),
    security(("bearer" = []), ("session" = []))
)]
async fn key_result_check_ins(
    State(s): State<Services>,
    Caller(actor): Caller,
    Id(id): Id,
) -> ApiResult<Json<Vec<CheckIn>>> {
    Ok(Json(s.planning.list_check_ins(&actor, SubjectKind::KeyResult, id).await?))
}

/// Records a check-in of a key result.
///
/// The check-in's value becomes the key result's current value, and its confidence the key result's
/// confidence.
#[utoipa::path(
    post,
    path = "/key-results/{id}/check-ins",
    tag = "key-results",
    params(("id" = i64, Path, description = "The key result's id.")),
    request_body = CheckInInput,
    responses(
        (status = 201, description = "The check-in as stored.", body = CheckIn),
        WriteErrors,
    ),
    security(("bearer" = []), ("session" = []))
)]
async fn check_in_key_result(
    State(s): State<Services>,
    Caller(actor): Caller,
    Id(id): Id,
    Body(input): Body<CheckInInput>,
) -> ApiResult<impl IntoResponse> {
    Ok(created(s.planning.check_in_key_result(&actor, KeyResultId(id), &input).await?))
}
