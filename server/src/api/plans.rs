//! Plans as code over HTTP: export a season's plan file, and diff or apply one.

use axum::extract::{Path, State};
use axum::http::header;
use axum::response::IntoResponse;
use serde::Deserialize;
use slope_service::{PlanOutcome, Services};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::extract::{Body, Caller};
use super::{ApiResult, AuthErrors, BadRequest, Conflict, ErrorBody, ReadErrors};

pub(crate) fn routes() -> OpenApiRouter<Services> {
    OpenApiRouter::new().routes(routes!(export)).routes(routes!(apply))
}

/// Exports a season's plan as a TOML file.
///
/// The file is the same one that `slope plan export` prints: the season, its objectives and key
/// results, and the squads and their goals, each named by its stable key.
#[utoipa::path(
    get,
    path = "/plans/{season}",
    tag = "plans",
    params(("season" = String, Path, description = "The season's key.")),
    responses(
        (status = 200, description = "The plan file.", body = String, content_type = "application/toml"),
        ReadErrors,
    ),
    security(("bearer" = []), ("session" = []))
)]
async fn export(
    State(s): State<Services>,
    Caller(actor): Caller,
    Path(season): Path<String>,
) -> ApiResult<impl IntoResponse> {
    let text = s.planning.export_plan(&actor, &season).await?;
    Ok(([(header::CONTENT_TYPE, "application/toml; charset=utf-8")], text))
}

#[derive(Deserialize, ToSchema)]
struct ApplyRequest {
    /// The plan file's text.
    plan: String,
    /// Only compute the changes (`true`), or make them too.
    #[serde(default)]
    dry_run: bool,
}

/// Applies a plan file, or lists what it would change.
///
/// The file is applied in one transaction, or with `dry_run` only compared with what is stored. A
/// refused file answers 422 `invalid_plan` with `errors: [{line, path, message}]`.
#[utoipa::path(
    post,
    path = "/plans/apply",
    tag = "plans",
    request_body = ApplyRequest,
    responses(
        (status = 200, description = "What the file changed, or would change.", body = PlanOutcome),
        (status = 400, response = BadRequest),
        (status = 409, response = Conflict),
        (
            status = 422,
            description = "The plan file, or the request, breaks a rule: code `invalid_plan` with every \
                problem of the file in `errors`, or `invalid` with `fields`. Nothing was changed.",
            body = ErrorBody
        ),
        AuthErrors,
    ),
    security(("bearer" = []), ("session" = []))
)]
async fn apply(
    State(s): State<Services>,
    Caller(actor): Caller,
    Body(request): Body<ApplyRequest>,
) -> ApiResult<impl IntoResponse> {
    Ok(axum::Json(s.planning.apply_plan(&actor, &request.plan, request.dry_run).await?))
}
