//! Objectives of a season.

use axum::Json;
use axum::extract::State;
use axum::response::IntoResponse;
use slope_domain::*;
use slope_service::Services;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::extract::{Body, Caller, Id};
use super::{ApiResult, EditErrors, ObjectiveEdit, ReadErrors, Versioned, WriteErrors, created};

pub(crate) fn routes() -> OpenApiRouter<Services> {
    OpenApiRouter::new().routes(routes!(create_objective)).routes(routes!(get_objective, update_objective))
}

/// Creates an objective in a season.
///
/// The objective's quarter must overlap the season.
#[utoipa::path(
    post,
    path = "/seasons/{id}/objectives",
    tag = "objectives",
    params(("id" = i64, Path, description = "The id of the season the objective belongs to.")),
    request_body = ObjectiveInput,
    responses(
        (status = 201, description = "The objective as stored.", body = Objective),
        WriteErrors,
    ),
    security(("bearer" = []), ("session" = []))
)]
async fn create_objective(
    State(s): State<Services>,
    Caller(actor): Caller,
    Id(id): Id,
    Body(input): Body<ObjectiveInput>,
) -> ApiResult<impl IntoResponse> {
    Ok(created(s.planning.create_objective(&actor, SeasonId(id), &input).await?))
}

/// Reads one objective.
#[utoipa::path(
    get,
    path = "/objectives/{id}",
    tag = "objectives",
    params(("id" = i64, Path, description = "The objective's id.")),
    responses(
        (status = 200, description = "The objective.", body = Objective),
        ReadErrors,
    ),
    security(("bearer" = []), ("session" = []))
)]
async fn get_objective(State(s): State<Services>, Caller(actor): Caller, Id(id): Id) -> ApiResult<Json<Objective>> {
    Ok(Json(s.planning.get_objective(&actor, ObjectiveId(id)).await?))
}

/// Edits an objective.
///
/// The body holds every field of the objective and the `version` it edits.
#[utoipa::path(
    put,
    path = "/objectives/{id}",
    tag = "objectives",
    params(("id" = i64, Path, description = "The objective's id.")),
    request_body = ObjectiveEdit,
    responses(
        (status = 200, description = "The objective as stored, with its new version.", body = Objective),
        EditErrors,
    ),
    security(("bearer" = []), ("session" = []))
)]
async fn update_objective(
    State(s): State<Services>,
    Caller(actor): Caller,
    Id(id): Id,
    body: Versioned<ObjectiveInput>,
) -> ApiResult<Json<Objective>> {
    let Versioned { version, input } = body;
    Ok(Json(s.planning.update_objective(&actor, ObjectiveId(id), version, &input).await?))
}
