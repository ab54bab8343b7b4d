//! Squads, the squad board of a season and a squad's dashboard.

use axum::Json;
use axum::extract::State;
use axum::response::IntoResponse;
use serde::Deserialize;
use slope_domain::*;
use slope_service::Services;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::extract::{Body, Caller, Id, Query};
use super::{ApiResult, AuthErrors, BodyErrors, CheckedErrors, EditErrors, ReadErrors, SquadEdit, Versioned, created};

pub(crate) fn routes() -> OpenApiRouter<Services> {
    OpenApiRouter::new()
        .routes(routes!(list_squads, create_squad))
        .routes(routes!(get_squad, update_squad))
        .routes(routes!(squad_board))
        .routes(routes!(squad_dashboard))
}

/// Lists the organisation's squads.
#[utoipa::path(
    get,
    path = "/squads",
    tag = "squads",
    responses(
        (status = 200, description = "Every squad of the organisation.", body = Vec<Squad>),
        AuthErrors,
    ),
    security(("bearer" = []), ("session" = []))
)]
async fn list_squads(State(s): State<Services>, Caller(actor): Caller) -> ApiResult<Json<Vec<Squad>>> {
    Ok(Json(s.planning.list_squads(&actor).await?))
}

/// Creates a squad.
#[utoipa::path(
    post,
    path = "/squads",
    tag = "squads",
    request_body = SquadInput,
    responses(
        (status = 201, description = "The squad as stored.", body = Squad),
        BodyErrors,
    ),
    security(("bearer" = []), ("session" = []))
)]
async fn create_squad(
    State(s): State<Services>,
    Caller(actor): Caller,
    Body(input): Body<SquadInput>,
) -> ApiResult<impl IntoResponse> {
    Ok(created(s.planning.create_squad(&actor, &input).await?))
}

/// Reads one squad.
#[utoipa::path(
    get,
    path = "/squads/{id}",
    tag = "squads",
    params(("id" = i64, Path, description = "The squad's id.")),
    responses(
        (status = 200, description = "The squad.", body = Squad),
        ReadErrors,
    ),
    security(("bearer" = []), ("session" = []))
)]
async fn get_squad(State(s): State<Services>, Caller(actor): Caller, Id(id): Id) -> ApiResult<Json<Squad>> {
    Ok(Json(s.planning.get_squad(&actor, SquadId(id)).await?))
}

/// Edits a squad.
///
/// The body holds every field of the squad and the `version` it edits.
#[utoipa::path(
    put,
    path = "/squads/{id}",
    tag = "squads",
    params(("id" = i64, Path, description = "The squad's id.")),
    request_body = SquadEdit,
    responses(
        (status = 200, description = "The squad as stored, with its new version.", body = Squad),
        EditErrors,
    ),
    security(("bearer" = []), ("session" = []))
)]
async fn update_squad(
    State(s): State<Services>,
    Caller(actor): Caller,
    Id(id): Id,
    body: Versioned<SquadInput>,
) -> ApiResult<Json<Squad>> {
    let Versioned { version, input } = body;
    Ok(Json(s.planning.update_squad(&actor, SquadId(id), version, &input).await?))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct BoardQuery {
    /// The id of the season to show [default: the active season, or else the one that starts latest].
    season: Option<i64>,
}

/// Reads the squad board of a season.
///
/// The board shows every squad with its goals, its peak load against its capacity and its slope share.
#[utoipa::path(
    get,
    path = "/squad-board",
    tag = "squads",
    params(BoardQuery),
    responses(
        (status = 200, description = "The squad board.", body = SquadBoard),
        CheckedErrors,
    ),
    security(("bearer" = []), ("session" = []))
)]
async fn squad_board(
    State(s): State<Services>,
    Caller(actor): Caller,
    Query(q): Query<BoardQuery>,
) -> ApiResult<Json<SquadBoard>> {
    Ok(Json(s.planning.squad_board(&actor, q.season.map(SeasonId)).await?))
}

/// Reads a squad's dashboard.
///
/// For each goal of the squad in the season (the current season when `season` is left out): the goal,
/// the key result it ladders to, the linked metric's series (the goal's metric, else the key result's)
/// and the forecast of the goal's measure at the goal's end date from the metric's trend, with its 95 %
/// prediction interval and the probability of reaching the target.
#[utoipa::path(
    get,
    path = "/squads/{id}/dashboard",
    tag = "squads",
    params(("id" = i64, Path, description = "The squad's id."), BoardQuery),
    responses(
        (status = 200, description = "The squad's dashboard.", body = SquadDashboard),
        CheckedErrors,
    ),
    security(("bearer" = []), ("session" = []))
)]
async fn squad_dashboard(
    State(s): State<Services>,
    Caller(actor): Caller,
    Id(id): Id,
    Query(q): Query<BoardQuery>,
) -> ApiResult<Json<SquadDashboard>> {
    Ok(Json(s.planning.squad_dashboard(&actor, SquadId(id), q.season.map(SeasonId)).await?))
}
