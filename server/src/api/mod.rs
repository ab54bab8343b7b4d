//! The JSON REST API under `/api/v1`. Handlers are thin: extract, call the service, serialise.

mod access;
mod error;
mod extract;
mod loops;
mod plans;
mod runner;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use slope_domain::*;
use slope_service::{Access, Loops, Planning, Runner};

pub use error::ApiError;
use extract::{Body, Caller, Id, Query};

#[derive(Clone)]
pub struct ApiState {
    pub planning: Planning,
    pub loops: Loops,
    pub runner: Runner,
    pub access: Access,
}

type ApiResult<T> = Result<T, ApiError>;

pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/seasons", get(list_seasons).post(create_season))
        .route("/seasons/{id}", get(get_season).put(update_season))
        .route("/seasons/{id}/transition", post(transition_season))
        .route("/seasons/{id}/tree", get(season_tree))
        .route("/seasons/{id}/slope", get(season_slope))
        .route("/seasons/{id}/objectives", post(create_objective))
        .route("/objectives/{id}", get(get_objective).put(update_objective))
        .route("/objectives/{id}/key-results", post(create_key_result))
        .route("/key-results/{id}", get(get_key_result).put(update_key_result))
        .route("/key-results/{id}/check-ins", get(key_result_check_ins).post(check_in_key_result))
        .route("/squads", get(list_squads).post(create_squad))
        .route("/squads/{id}", get(get_squad).put(update_squad))
        .route("/squads/{id}/goals", post(create_goal))
        .route("/squad-board", get(squad_board))
        .route("/squad-goals/{id}", get(get_goal).put(update_goal))
        .route("/squad-goals/{id}/check-ins", get(goal_check_ins).post(check_in_goal))
        .merge(access::routes())
        .merge(plans::routes())
        .merge(loops::routes())
        .merge(runner::routes())
        .with_state(state)
}

/// An edit: the entity's fields plus the `version` the edit is based on. Read by taking `version` out of
/// the body object and parsing the rest as the input, so type errors keep their field names.
struct Versioned<T> {
    version: Version,
    input: T,
}

impl<S: Send + Sync, T: serde::de::DeserializeOwned> axum::extract::FromRequest<S> for Versioned<T> {
    type Rejection = ApiError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, ApiError> {
        let mut object = extract::object_body(req, state).await?;
        let version = match object.remove("version") {
            Some(value) => {
                value.as_i64().map(Version).ok_or_else(|| FieldErrors::single("version", "must be a whole number"))?
            }
            None => {
                return Err(FieldErrors::single(
                    "version",
                    "is required: send the version you edited (from the last GET)",
                )
                .into());
            }
        };
        Ok(Versioned { version, input: extract::from_object(object)? })
    }
}

fn created<T: serde::Serialize>(value: T) -> impl IntoResponse {
    (StatusCode::CREATED, Json(value))
}

// ---- seasons -----------------------------------------------------------------------------------

async fn list_seasons(State(s): State<ApiState>, Caller(actor): Caller) -> ApiResult<Json<Vec<SeasonSummary>>> {
    Ok(Json(s.planning.list_seasons(&actor).await?))
}

async fn create_season(
    State(s): State<ApiState>,
    Caller(actor): Caller,
    Body(input): Body<SeasonInput>,
) -> ApiResult<impl IntoResponse> {
    Ok(created(s.planning.create_season(&actor, &input).await?))
}

async fn get_season(State(s): State<ApiState>, Caller(actor): Caller, Id(id): Id) -> ApiResult<Json<Season>> {
    Ok(Json(s.planning.get_season(&actor, SeasonId(id)).await?))
}

async fn update_season(
    State(s): State<ApiState>,
    Caller(actor): Caller,
    Id(id): Id,
    body: Versioned<SeasonInput>,
) -> ApiResult<Json<Season>> {
    let Versioned { version, input } = body;
    Ok(Json(s.planning.update_season(&actor, SeasonId(id), version, &input).await?))
}

async fn transition_season(
    State(s): State<ApiState>,
    Caller(actor): Caller,
    Id(id): Id,
    body: Versioned<TransitionInput>,
) -> ApiResult<Json<Season>> {
    let Versioned { version, input } = body;
    Ok(Json(s.planning.transition_season(&actor, SeasonId(id), version, &input).await?))
}

#[derive(Deserialize)]
struct TreeQuery {
    as_of: Option<String>,
}

/// `as_of` is an RFC 3339 time or a date, which means the end of that day in UTC.
fn parse_as_of(raw: &str) -> Result<DateTime<Utc>, FieldErrors> {
    if let Ok(at) = DateTime::parse_from_rfc3339(raw) {
        return Ok(at.with_timezone(&Utc));
    }
    let day = parse_date(raw)
        .map_err(|_| FieldErrors::single("as_of", "must be a date like 2027-02-01 or an RFC 3339 time"))?;
    Ok(day.and_hms_milli_opt(23, 59, 59, 999).expect("valid time").and_utc())
}

async fn season_tree(
    State(s): State<ApiState>,
    Caller(actor): Caller,
    Id(id): Id,
    Query(q): Query<TreeQuery>,
) -> ApiResult<Json<SeasonTree>> {
    let as_of = q.as_of.as_deref().filter(|a| !a.is_empty()).map(parse_as_of).transpose()?;
    Ok(Json(s.planning.season_tree(&actor, SeasonId(id), as_of).await?))
}

#[derive(Deserialize)]
struct PeriodQuery {
    from: Option<String>,
    to: Option<String>,
}

async fn season_slope(
    State(s): State<ApiState>,
    Caller(actor): Caller,
    Id(id): Id,
    Query(q): Query<PeriodQuery>,
) -> ApiResult<Json<SlopeReport>> {
    let period = match (q.from.as_deref(), q.to.as_deref()) {
        (None, None) => None,
        (from, to) => {
            let mut c = Checker::new();
            let from = c.date("from", from.unwrap_or_default());
            let to = c.date("to", to.unwrap_or_default());
            let range = match (from, to) {
                (Some(f), Some(t)) => c.check("to", DateRange::new(f, t)),
                _ => None,
            };
            Some(c.finish(|| range)?)
        }
    };
    Ok(Json(s.planning.slope_allocation(&actor, SeasonId(id), period).await?))
}

// ---- objectives and key results ----------------------------------------------------------------

async fn create_objective(
    State(s): State<ApiState>,
    Caller(actor): Caller,
    Id(id): Id,
    Body(input): Body<ObjectiveInput>,
) -> ApiResult<impl IntoResponse> {
    Ok(created(s.planning.create_objective(&actor, SeasonId(id), &input).await?))
}

async fn get_objective(State(s): State<ApiState>, Caller(actor): Caller, Id(id): Id) -> ApiResult<Json<Objective>> {
    Ok(Json(s.planning.get_objective(&actor, ObjectiveId(id)).await?))
}

async fn update_objective(
    State(s): State<ApiState>,
    Caller(actor): Caller,
    Id(id): Id,
    body: Versioned<ObjectiveInput>,
) -> ApiResult<Json<Objective>> {
    let Versioned { version, input } = body;
    Ok(Json(s.planning.update_objective(&actor, ObjectiveId(id), version, &input).await?))
}

async fn create_key_result(
    State(s): State<ApiState>,
    Caller(actor): Caller,
    Id(id): Id,
    Body(input): Body<KeyResultInput>,
) -> ApiResult<impl IntoResponse> {
    Ok(created(s.planning.create_key_result(&actor, ObjectiveId(id), &input).await?))
}

async fn get_key_result(
    State(s): State<ApiState>,
    Caller(actor): Caller,
    Id(id): Id,
) -> ApiResult<Json<KeyResultDetail>> {
    Ok(Json(s.planning.key_result_detail(&actor, KeyResultId(id)).await?))
}

async fn update_key_result(
    State(s): State<ApiState>,
    Caller(actor): Caller,
    Id(id): Id,
    body: Versioned<KeyResultInput>,
) -> ApiResult<Json<KeyResult>> {
    let Versioned { version, input } = body;
    Ok(Json(s.planning.update_key_result(&actor, KeyResultId(id), version, &input).await?))
}

async fn key_result_check_ins(
    State(s): State<ApiState>,
    Caller(actor): Caller,
    Id(id): Id,
) -> ApiResult<Json<Vec<CheckIn>>> {
    Ok(Json(s.planning.list_check_ins(&actor, SubjectKind::KeyResult, id).await?))
}

async fn check_in_key_result(
    State(s): State<ApiState>,
    Caller(actor): Caller,
    Id(id): Id,
    Body(input): Body<CheckInInput>,
) -> ApiResult<impl IntoResponse> {
    Ok(created(s.planning.check_in_key_result(&actor, KeyResultId(id), &input).await?))
}

// ---- squads and goals --------------------------------------------------------------------------

async fn list_squads(State(s): State<ApiState>, Caller(actor): Caller) -> ApiResult<Json<Vec<Squad>>> {
    Ok(Json(s.planning.list_squads(&actor).await?))
}

async fn create_squad(
    State(s): State<ApiState>,
    Caller(actor): Caller,
    Body(input): Body<SquadInput>,
) -> ApiResult<impl IntoResponse> {
    Ok(created(s.planning.create_squad(&actor, &input).await?))
}

async fn get_squad(State(s): State<ApiState>, Caller(actor): Caller, Id(id): Id) -> ApiResult<Json<Squad>> {
    Ok(Json(s.planning.get_squad(&actor, SquadId(id)).await?))
}

async fn update_squad(
    State(s): State<ApiState>,
    Caller(actor): Caller,
    Id(id): Id,
    body: Versioned<SquadInput>,
) -> ApiResult<Json<Squad>> {
    let Versioned { version, input } = body;
    Ok(Json(s.planning.update_squad(&actor, SquadId(id), version, &input).await?))
}

#[derive(Deserialize)]
struct BoardQuery {
    season: Option<i64>,
}

async fn squad_board(
    State(s): State<ApiState>,
    Caller(actor): Caller,
    Query(q): Query<BoardQuery>,
) -> ApiResult<Json<SquadBoard>> {
    Ok(Json(s.planning.squad_board(&actor, q.season.map(SeasonId)).await?))
}

async fn create_goal(
    State(s): State<ApiState>,
    Caller(actor): Caller,
    Id(id): Id,
    Body(input): Body<SquadGoalInput>,
) -> ApiResult<impl IntoResponse> {
    Ok(created(s.planning.create_goal(&actor, SquadId(id), &input).await?))
}

async fn get_goal(State(s): State<ApiState>, Caller(actor): Caller, Id(id): Id) -> ApiResult<Json<SquadGoalDetail>> {
    Ok(Json(s.planning.goal_detail(&actor, SquadGoalId(id)).await?))
}

async fn update_goal(
    State(s): State<ApiState>,
    Caller(actor): Caller,
    Id(id): Id,
    body: Versioned<SquadGoalInput>,
) -> ApiResult<Json<SquadGoal>> {
    let Versioned { version, input } = body;
    Ok(Json(s.planning.update_goal(&actor, SquadGoalId(id), version, &input).await?))
}

async fn goal_check_ins(State(s): State<ApiState>, Caller(actor): Caller, Id(id): Id) -> ApiResult<Json<Vec<CheckIn>>> {
    Ok(Json(s.planning.list_check_ins(&actor, SubjectKind::SquadGoal, id).await?))
}

async fn check_in_goal(
    State(s): State<ApiState>,
    Caller(actor): Caller,
    Id(id): Id,
    Body(input): Body<CheckInInput>,
) -> ApiResult<impl IntoResponse> {
    Ok(created(s.planning.check_in_goal(&actor, SquadGoalId(id), &input).await?))
}
