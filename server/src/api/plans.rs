//! Plans as code over HTTP: export a season's plan file, and diff or apply one.

use axum::Router;
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use serde::Deserialize;

use super::extract::{Body, Caller};
use super::{ApiResult, ApiState};

pub(super) fn routes() -> Router<ApiState> {
    Router::new().route("/plans/{season}", get(export)).route("/plans/apply", post(apply))
}

/// The season's plan as TOML, the same file `slope plan export` prints.
async fn export(
    State(s): State<ApiState>,
    Caller(actor): Caller,
    Path(season): Path<String>,
) -> ApiResult<impl IntoResponse> {
    let text = s.planning.export_plan(&actor, &season).await?;
    Ok(([(header::CONTENT_TYPE, "application/toml; charset=utf-8")], text))
}

#[derive(Deserialize)]
struct ApplyRequest {
    /// The plan file's text.
    plan: String,
    /// Only compute the changes (`true`), or make them too.
    #[serde(default)]
    dry_run: bool,
}

/// Applies a plan file in one transaction, or with `dry_run` lists what it would change. A refused file
/// answers 422 `invalid_plan` with `errors: [{line, path, message}]`.
async fn apply(
    State(s): State<ApiState>,
    Caller(actor): Caller,
    Body(request): Body<ApplyRequest>,
) -> ApiResult<impl IntoResponse> {
    Ok(axum::Json(s.planning.apply_plan(&actor, &request.plan, request.dry_run).await?))
}
