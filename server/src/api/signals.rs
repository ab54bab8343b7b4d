//! `/api/v1/seasons/{id}/dashboard` and the season's thesis signals.

use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use slope_domain::{ResolveSignalInput, SeasonDashboard, SeasonId, SeasonReview, ThesisSignal, review_markdown};
use slope_service::Services;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::extract::{Body, Caller, Id, Ids};
use super::{ApiResult, Conflict, EditErrors, ReadErrors};

pub(crate) fn routes() -> OpenApiRouter<Services> {
    OpenApiRouter::new()
        .routes(routes!(season_dashboard))
        .routes(routes!(resolve_signal))
        .routes(routes!(season_review))
        .routes(routes!(season_review_markdown))
}

/// Reads a season's dashboard.
///
/// The OKR tree with live progress (key results fed by metrics carry the metric's latest value) and slope
/// allocation against the season's target by squad and unit; every metric linked to the season's key
/// results and goals with its series and, when its trend has turned the wrong way, the reversal (the
/// slopes of the last two 7-day windows with their 95 % intervals); the weekly mean confidence of the key
/// results from their check-ins; and the thesis signals, open ones first. Reading it raises the signals
/// the evidence calls for (a linked metric that reversed its trend, a slope bet that was killed), once
/// each.
#[utoipa::path(
    get,
    path = "/seasons/{id}/dashboard",
    tag = "seasons",
    params(("id" = i64, Path, description = "The season's id.")),
    responses(
        (status = 200, description = "The season's dashboard.", body = SeasonDashboard),
        ReadErrors,
    ),
    security(("bearer" = []), ("session" = []))
)]
async fn season_dashboard(
    State(s): State<Services>,
    Caller(actor): Caller,
    Id(id): Id,
) -> ApiResult<Json<SeasonDashboard>> {
    Ok(Json(s.planning.season_dashboard(&actor, SeasonId(id)).await?))
}

/// Reads a closed season's review.
///
/// Each objective's score with its key results (and each key result's outcome at its quarter's end),
/// the slope bets and what became of them, the thesis signals with their resolutions, the calibration of
/// the check-ins' confidence and the retrospective. A season that is not closed answers 409: its review
/// is produced when it closes. The review is derived from the closed season, which no longer changes.
#[utoipa::path(
    get,
    path = "/seasons/{id}/review",
    tag = "seasons",
    params(("id" = i64, Path, description = "The season's id.")),
    responses(
        (status = 200, description = "The season's review.", body = SeasonReview),
        (status = 409, response = Conflict),
        ReadErrors,
    ),
    security(("bearer" = []), ("session" = []))
)]
async fn season_review(State(s): State<Services>, Caller(actor): Caller, Id(id): Id) -> ApiResult<Json<SeasonReview>> {
    Ok(Json(s.planning.season_review(&actor, SeasonId(id)).await?))
}

/// Reads a closed season's review as Markdown, for a wiki, an e-mail or a printed page.
#[utoipa::path(
    get,
    path = "/seasons/{id}/review.md",
    tag = "seasons",
    params(("id" = i64, Path, description = "The season's id.")),
    responses(
        (status = 200, description = "The review in Markdown.", body = String, content_type = "text/markdown"),
        (status = 409, response = Conflict),
        ReadErrors,
    ),
    security(("bearer" = []), ("session" = []))
)]
async fn season_review_markdown(
    State(s): State<Services>,
    Caller(actor): Caller,
    Id(id): Id,
) -> ApiResult<impl IntoResponse> {
    let review = s.planning.season_review(&actor, SeasonId(id)).await?;
    Ok(([(header::CONTENT_TYPE, "text/markdown; charset=utf-8")], review_markdown(&review)))
}

/// Resolves a thesis signal with a note.
///
/// A leader says what the season makes of the evidence (the thesis stands, is revised, or the signal is
/// noise). The resolution is on the audit trail. A signal resolved already answers 409 naming who
/// resolved it; the first note stands.
#[utoipa::path(
    post,
    path = "/seasons/{id}/signals/{signal}/resolve",
    tag = "seasons",
    params(
        ("id" = i64, Path, description = "The season's id."),
        ("signal" = i64, Path, description = "The signal's id."),
    ),
    request_body = ResolveSignalInput,
    responses(
        (status = 200, description = "The signal, resolved.", body = ThesisSignal),
        EditErrors,
    ),
    security(("bearer" = []), ("session" = []))
)]
async fn resolve_signal(
    State(s): State<Services>,
    Caller(actor): Caller,
    Ids(season, signal): Ids,
    Body(input): Body<ResolveSignalInput>,
) -> ApiResult<impl IntoResponse> {
    Ok(Json(s.planning.resolve_signal(&actor, SeasonId(season), signal, &input).await?))
}
