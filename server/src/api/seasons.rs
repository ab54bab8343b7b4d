//! Seasons: their list, fields and status, the plan tree (also as known on a past date) and slope
//! allocation. The season dashboard and its thesis signals are in [`super::signals`].

use axum::Json;
use axum::extract::State;
use axum::response::IntoResponse;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use slope_domain::*;
use slope_service::Services;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::extract::{Body, Caller, Id, Query};
use super::{
    ApiResult, AuthErrors, BodyErrors, CheckedErrors, EditErrors, ReadErrors, SeasonEdit, TransitionEdit, Versioned,
    created,
};

pub(crate) fn routes() -> OpenApiRouter<Services> {
    OpenApiRouter::new()
        .routes(routes!(list_seasons, create_season))
        .routes(routes!(get_season, update_season))
        .routes(routes!(transition_season))
        .routes(routes!(season_tree))
        .routes(routes!(season_slope))
}

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
        AuthErrors,
    ),
    security(("bearer" = []), ("session" = []))
)]
async fn list_seasons(State(s): State<Services>, Caller(actor): Caller) -> ApiResult<Json<Vec<SeasonSummary>>> {
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
        BodyErrors,
    ),
    security(("bearer" = []), ("session" = []))
)]
async fn create_season(
    State(s): State<Services>,
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
        ReadErrors,
    ),
    security(("bearer" = []), ("session" = []))
)]
async fn get_season(State(s): State<Services>, Caller(actor): Caller, Id(id): Id) -> ApiResult<Json<Season>> {
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
        EditErrors,
    ),
    security(("bearer" = []), ("session" = []))
)]
async fn update_season(
    State(s): State<Services>,
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
        EditErrors,
    ),
    security(("bearer" = []), ("session" = []))
)]
async fn transition_season(
    State(s): State<Services>,
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
    Ok(end_of_day(day))
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
        CheckedErrors,
    ),
    security(("bearer" = []), ("session" = []))
)]
async fn season_tree(
    State(s): State<Services>,
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
        CheckedErrors,
    ),
    security(("bearer" = []), ("session" = []))
)]
async fn season_slope(
    State(s): State<Services>,
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
