//! Squads' goals under key results, and their check-ins.

use axum::Json;
use axum::extract::State;
use axum::response::IntoResponse;
use slope_domain::*;
use slope_service::Services;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::extract::{Body, Caller, Id};
use super::{ApiResult, EditErrors, ReadErrors, SquadGoalEdit, Versioned, WriteErrors, created};

pub(crate) fn routes() -> OpenApiRouter<Services> {
    OpenApiRouter::new()
        .routes(routes!(create_goal))
        .routes(routes!(get_goal, update_goal))
        .routes(routes!(goal_check_ins, check_in_goal))
}

/// Creates a goal of a squad.
///
/// A squad goal serves one key result and is either snapshot work or a slope bet.
#[utoipa::path(
    post,
    path = "/squads/{id}/goals",
    tag = "squad-goals",
    params(("id" = i64, Path, description = "The id of the squad the goal belongs to.")),
    request_body = SquadGoalInput,
    responses(
        (status = 201, description = "The squad goal as stored.", body = SquadGoal),
        WriteErrors,
    ),
    security(("bearer" = []), ("session" = []))
)]
async fn create_goal(
    State(s): State<Services>,
    Caller(actor): Caller,
    Id(id): Id,
    Body(input): Body<SquadGoalInput>,
) -> ApiResult<impl IntoResponse> {
    Ok(created(s.planning.create_goal(&actor, SquadId(id), &input).await?))
}

/// Reads one squad goal with its context.
///
/// The detail holds the goal's progress, its squad, key result and season, and its check-ins, newest
/// first.
#[utoipa::path(
    get,
    path = "/squad-goals/{id}",
    tag = "squad-goals",
    params(("id" = i64, Path, description = "The squad goal's id.")),
    responses(
        (status = 200, description = "The squad goal with its context.", body = SquadGoalDetail),
        ReadErrors,
    ),
    security(("bearer" = []), ("session" = []))
)]
async fn get_goal(State(s): State<Services>, Caller(actor): Caller, Id(id): Id) -> ApiResult<Json<SquadGoalDetail>> {
    Ok(Json(s.planning.goal_detail(&actor, SquadGoalId(id)).await?))
}

/// Edits a squad goal.
///
/// The body holds every field of the goal and the `version` it edits.
#[utoipa::path(
    put,
    path = "/squad-goals/{id}",
    tag = "squad-goals",
    params(("id" = i64, Path, description = "The squad goal's id.")),
    request_body = SquadGoalEdit,
    responses(
        (status = 200, description = "The squad goal as stored, with its new version.", body = SquadGoal),
        EditErrors,
    ),
    security(("bearer" = []), ("session" = []))
)]
async fn update_goal(
    State(s): State<Services>,
    Caller(actor): Caller,
    Id(id): Id,
    body: Versioned<SquadGoalInput>,
) -> ApiResult<Json<SquadGoal>> {
    let Versioned { version, input } = body;
    Ok(Json(s.planning.update_goal(&actor, SquadGoalId(id), version, &input).await?))
}

/// Lists a squad goal's check-ins, newest first.
#[utoipa::path(
    get,
    path = "/squad-goals/{id}/check-ins",
    tag = "squad-goals",
    params(("id" = i64, Path, description = "The squad goal's id.")),
    responses(
        (status = 200, description = "The goal's check-ins, newest first.", body = Vec<CheckIn>),
        ReadErrors,
    ),
    security(("bearer" = []), ("session" = []))
)]
async fn goal_check_ins(State(s): State<Services>, Caller(actor): Caller, Id(id): Id) -> ApiResult<Json<Vec<CheckIn>>> {
    Ok(Json(s.planning.list_check_ins(&actor, SubjectKind::SquadGoal, id).await?))
}

/// Records a check-in of a squad goal.
///
/// The check-in's value becomes the goal's current value, and its confidence the goal's confidence.
#[utoipa::path(
    post,
    path = "/squad-goals/{id}/check-ins",
    tag = "squad-goals",
    params(("id" = i64, Path, description = "The squad goal's id.")),
    request_body = CheckInInput,
    responses(
        (status = 201, description = "The check-in as stored.", body = CheckIn),
        WriteErrors,
    ),
    security(("bearer" = []), ("session" = []))
)]
async fn check_in_goal(
    State(s): State<Services>,
    Caller(actor): Caller,
    Id(id): Id,
    Body(input): Body<CheckInInput>,
) -> ApiResult<impl IntoResponse> {
    Ok(created(s.planning.check_in_goal(&actor, SquadGoalId(id), &input).await?))
}
