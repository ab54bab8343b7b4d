//! The JSON REST API under `/api/v1`. Handlers are thin: extract, call the service, serialise.
//!
//! Every route is registered through [`OpenApiRouter`] with `routes!`, which takes the path and method
//! from the handler's `#[utoipa::path]`: a route cannot exist without its OpenAPI description, and the
//! description cannot name a route that does not exist. Paths in the attributes are relative to
//! `/api/v1`; [`crate::openapi`] nests them there.

mod access;
mod adoption;
mod error;
mod extract;
mod loops;
mod plans;
mod runner;
mod signals;

use std::sync::OnceLock;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use slope_domain::*;
use slope_service::{Access, Loops, Planning, Runner};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use error::ApiError;
pub(crate) use error::{BadRequest, Conflict, ErrorBody, Forbidden, Invalid, NotFound, Unauthorized};
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
    let (router, _) = routes().split_for_parts();
    router.with_state(state)
}

/// Every route of the API with its OpenAPI description, at paths relative to `/api/v1`.
pub(crate) fn routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .routes(routes!(list_seasons, create_season))
        .routes(routes!(get_season, update_season))
        .routes(routes!(transition_season))
        .routes(routes!(season_tree))
        .routes(routes!(season_slope))
        .routes(routes!(create_objective))
        .routes(routes!(get_objective, update_objective))
        .routes(routes!(create_key_result))
        .routes(routes!(get_key_result, update_key_result))
        .routes(routes!(key_result_check_ins, check_in_key_result))
        .routes(routes!(list_squads, create_squad))
        .routes(routes!(get_squad, update_squad))
        .routes(routes!(create_goal))
        .routes(routes!(squad_board))
        .routes(routes!(squad_dashboard))
        .routes(routes!(get_goal, update_goal))
        .routes(routes!(goal_check_ins, check_in_goal))
        .routes(routes!(openapi_document))
        .merge(access::routes())
        .merge(adoption::routes())
        .merge(plans::routes())
        .merge(signals::routes())
        .merge(loops::routes())
        .merge(runner::routes())
}

/// This document: the OpenAPI 3.1 description of the whole API.
///
/// It needs no authentication. `slope openapi` prints the same document, and `docs/openapi.json` in the
/// repository is a copy of it.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "meta",
    responses((status = 200, description = "The OpenAPI document.", body = Object, content_type = "application/json")),
    security(())
)]
async fn openapi_document() -> impl IntoResponse {
    static DOCUMENT: OnceLock<String> = OnceLock::new();
    let document = DOCUMENT.get_or_init(crate::openapi::to_json);
    ([(header::CONTENT_TYPE, "application/json")], document.as_str())
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

/// The OpenAPI schemas of [`Versioned`] bodies: an input's fields and the `version` they edit. Nothing
/// constructs them; `Versioned` reads the same shape.
macro_rules! edit_schemas {
    ($($(#[$doc:meta])* $name:ident($input:ty);)*) => {$(
        $(#[$doc])*
        #[derive(Deserialize, ToSchema)]
        #[allow(dead_code)]
        pub(crate) struct $name {
            /// The `version` of the entity that the edit is based on, from the last GET. An edit of a
            /// version that is no longer the stored one is refused with 409.
            version: Version,
            #[serde(flatten)]
            input: $input,
        }
    )*};
}

edit_schemas! {
    /// A season's fields and the version they edit.
    SeasonEdit(SeasonInput);
    /// A change of a season's status and the version of the season it changes.
    TransitionEdit(TransitionInput);
    /// An objective's fields and the version they edit.
    ObjectiveEdit(ObjectiveInput);
    /// A key result's fields and the version they edit.
    KeyResultEdit(KeyResultInput);
    /// A squad's fields and the version they edit.
    SquadEdit(SquadInput);
    /// A squad goal's fields and the version they edit.
    SquadGoalEdit(SquadGoalInput);
    /// A metric definition's fields and the version they edit.
    MetricEdit(MetricInput);
}

fn created<T: serde::Serialize>(value: T) -> impl IntoResponse {
    (StatusCode::CREATED, Json(value))
}

// ---- seasons -----------------------------------------------------------------------------------

/// Lists the organisation's seasons with their scores.
///
/// Each season comes with its roll-up score, the score it is expected to reach, and how many
/// objectives and key results it holds.
#[utoipa::path(
    get,
    path = "/seasons",
    tag = "seasons",
    responses(
        (status = 200, description = "Every season of the organisation.", body = Vec<SeasonSummary>),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
    ),
    security(("bearer" = []), ("session" = []))
)]
async fn list_seasons(State(s): State<ApiState>, Caller(actor): Caller) -> ApiResult<Json<Vec<SeasonSummary>>> {
    Ok(Json(s.planning.list_seasons(&actor).await?))
}

/// Creates a season.
///
/// A new season starts as a draft. Seasons of one organisation never overlap.
#[utoipa::path(
    post,
    path = "/seasons",
    tag = "seasons",
    request_body = SeasonInput,
    responses(
        (status = 201, description = "The season as stored.", body = Season),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 422, response = Invalid),
    ),
    security(("bearer" = []), ("session" = []))
)]
async fn create_season(
    State(s): State<ApiState>,
    Caller(actor): Caller,
    Body(input): Body<SeasonInput>,
) -> ApiResult<impl IntoResponse> {
    Ok(created(s.planning.create_season(&actor, &input).await?))
}

/// Reads one season.
#[utoipa::path(
    get,
    path = "/seasons/{id}",
    tag = "seasons",
    params(("id" = i64, Path, description = "The season's id.")),
    responses(
        (status = 200, description = "The season.", body = Season),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
    ),
    security(("bearer" = []), ("session" = []))
)]
async fn get_season(State(s): State<ApiState>, Caller(actor): Caller, Id(id): Id) -> ApiResult<Json<Season>> {
    Ok(Json(s.planning.get_season(&actor, SeasonId(id)).await?))
}

/// Edits a season.
///
/// The body holds every field of the season and the `version` it edits. Closed seasons cannot be
/// changed.
#[utoipa::path(
    put,
    path = "/seasons/{id}",
    tag = "seasons",
    params(("id" = i64, Path, description = "The season's id.")),
    request_body = SeasonEdit,
    responses(
        (status = 200, description = "The season as stored, with its new version.", body = Season),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 422, response = Invalid),
    ),
    security(("bearer" = []), ("session" = []))
)]
async fn update_season(
    State(s): State<ApiState>,
    Caller(actor): Caller,
    Id(id): Id,
    body: Versioned<SeasonInput>,
) -> ApiResult<Json<Season>> {
    let Versioned { version, input } = body;
    Ok(Json(s.planning.update_season(&actor, SeasonId(id), version, &input).await?))
}

/// Changes a season's status.
///
/// A draft becomes active, an active season is closed with a retrospective; an organisation has at
/// most one active season.
#[utoipa::path(
    post,
    path = "/seasons/{id}/transition",
    tag = "seasons",
    params(("id" = i64, Path, description = "The season's id.")),
    request_body = TransitionEdit,
    responses(
        (status = 200, description = "The season with its new status and version.", body = Season),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 422, response = Invalid),
    ),
    security(("bearer" = []), ("session" = []))
)]
async fn transition_season(
    State(s): State<ApiState>,
    Caller(actor): Caller,
    Id(id): Id,
    body: Versioned<TransitionInput>,
) -> ApiResult<Json<Season>> {
    let Versioned { version, input } = body;
    Ok(Json(s.planning.transition_season(&actor, SeasonId(id), version, &input).await?))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct TreeQuery {
    /// Show the plan as known at this time: an RFC 3339 time, or a date such as `2027-02-01`, which
    /// means the end of that day in UTC. Leave it out for the plan as it is now.
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

/// Reads a season's whole plan with every roll-up.
///
/// The tree holds the season's objectives, their key results and the squad goals under them, each with
/// its progress, and the season's slope allocation. With `as_of` it shows the plan as it was known then.
#[utoipa::path(
    get,
    path = "/seasons/{id}/tree",
    tag = "seasons",
    params(("id" = i64, Path, description = "The season's id."), TreeQuery),
    responses(
        (status = 200, description = "The season's plan tree.", body = SeasonTree),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 422, response = Invalid),
    ),
    security(("bearer" = []), ("session" = []))
)]
async fn season_tree(
    State(s): State<ApiState>,
    Caller(actor): Caller,
    Id(id): Id,
    Query(q): Query<TreeQuery>,
) -> ApiResult<Json<SeasonTree>> {
    let as_of = q.as_of.as_deref().filter(|a| !a.is_empty()).map(parse_as_of).transpose()?;
    Ok(Json(s.planning.season_tree(&actor, SeasonId(id), as_of).await?))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct PeriodQuery {
    /// The first day of the period, such as `2027-01-01`; give it with `to`, or leave both out for the
    /// whole season.
    from: Option<String>,
    /// The last day of the period; it must come after `from`.
    to: Option<String>,
}

/// Reads a season's slope allocation.
///
/// Slope allocation is the share of planned capacity spent on slope bets, overall, per squad and per
/// unit, against the season's target. Goals that only partly overlap the period count in proportion.
#[utoipa::path(
    get,
    path = "/seasons/{id}/slope",
    tag = "seasons",
    params(("id" = i64, Path, description = "The season's id."), PeriodQuery),
    responses(
        (status = 200, description = "The slope allocation over the period.", body = SlopeReport),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 422, response = Invalid),
    ),
    security(("bearer" = []), ("session" = []))
)]
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
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 422, response = Invalid),
    ),
    security(("bearer" = []), ("session" = []))
)]
async fn create_objective(
    State(s): State<ApiState>,
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
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
    ),
    security(("bearer" = []), ("session" = []))
)]
async fn get_objective(State(s): State<ApiState>, Caller(actor): Caller, Id(id): Id) -> ApiResult<Json<Objective>> {
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
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 422, response = Invalid),
    ),
    security(("bearer" = []), ("session" = []))
)]
async fn update_objective(
    State(s): State<ApiState>,
    Caller(actor): Caller,
    Id(id): Id,
    body: Versioned<ObjectiveInput>,
) -> ApiResult<Json<Objective>> {
    let Versioned { version, input } = body;
    Ok(Json(s.planning.update_objective(&actor, ObjectiveId(id), version, &input).await?))
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
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 422, response = Invalid),
    ),
    security(("bearer" = []), ("session" = []))
)]
async fn create_key_result(
    State(s): State<ApiState>,
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
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
    ),
    security(("bearer" = []), ("session" = []))
)]
async fn get_key_result(
    State(s): State<ApiState>,
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
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 422, response = Invalid),
    ),
    security(("bearer" = []), ("session" = []))
)]
async fn update_key_result(
    State(s): State<ApiState>,
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
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
    ),
    security(("bearer" = []), ("session" = []))
)]
async fn key_result_check_ins(
    State(s): State<ApiState>,
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
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 422, response = Invalid),
    ),
    security(("bearer" = []), ("session" = []))
)]
async fn check_in_key_result(
    State(s): State<ApiState>,
    Caller(actor): Caller,
    Id(id): Id,
    Body(input): Body<CheckInInput>,
) -> ApiResult<impl IntoResponse> {
    Ok(created(s.planning.check_in_key_result(&actor, KeyResultId(id), &input).await?))
}

// ---- squads and goals --------------------------------------------------------------------------

/// Lists the organisation's squads.
#[utoipa::path(
    get,
    path = "/squads",
    tag = "squads",
    responses(
        (status = 200, description = "Every squad of the organisation.", body = Vec<Squad>),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
    ),
    security(("bearer" = []), ("session" = []))
)]
async fn list_squads(State(s): State<ApiState>, Caller(actor): Caller) -> ApiResult<Json<Vec<Squad>>> {
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
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 422, response = Invalid),
    ),
    security(("bearer" = []), ("session" = []))
)]
async fn create_squad(
    State(s): State<ApiState>,
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
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
    ),
    security(("bearer" = []), ("session" = []))
)]
async fn get_squad(State(s): State<ApiState>, Caller(actor): Caller, Id(id): Id) -> ApiResult<Json<Squad>> {
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
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 422, response = Invalid),
    ),
    security(("bearer" = []), ("session" = []))
)]
async fn update_squad(
    State(s): State<ApiState>,
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
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 422, response = Invalid),
    ),
    security(("bearer" = []), ("session" = []))
)]
async fn squad_board(
    State(s): State<ApiState>,
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
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 422, response = Invalid),
    ),
    security(("bearer" = []), ("session" = []))
)]
async fn squad_dashboard(
    State(s): State<ApiState>,
    Caller(actor): Caller,
    Id(id): Id,
    Query(q): Query<BoardQuery>,
) -> ApiResult<Json<SquadDashboard>> {
    Ok(Json(s.planning.squad_dashboard(&actor, SquadId(id), q.season.map(SeasonId)).await?))
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
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 422, response = Invalid),
    ),
    security(("bearer" = []), ("session" = []))
)]
async fn create_goal(
    State(s): State<ApiState>,
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
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
    ),
    security(("bearer" = []), ("session" = []))
)]
async fn get_goal(State(s): State<ApiState>, Caller(actor): Caller, Id(id): Id) -> ApiResult<Json<SquadGoalDetail>> {
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
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 422, response = Invalid),
    ),
    security(("bearer" = []), ("session" = []))
)]
async fn update_goal(
    State(s): State<ApiState>,
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
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
    ),
    security(("bearer" = []), ("session" = []))
)]
async fn goal_check_ins(State(s): State<ApiState>, Caller(actor): Caller, Id(id): Id) -> ApiResult<Json<Vec<CheckIn>>> {
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
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 422, response = Invalid),
    ),
    security(("bearer" = []), ("session" = []))
)]
async fn check_in_goal(
    State(s): State<ApiState>,
    Caller(actor): Caller,
    Id(id): Id,
    Body(input): Body<CheckInInput>,
) -> ApiResult<impl IntoResponse> {
    Ok(created(s.planning.check_in_goal(&actor, SquadGoalId(id), &input).await?))
}
