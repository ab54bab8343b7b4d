//! `/api/v1/adoption`: the exec adoption dashboard.

use axum::Json;
use axum::extract::State;
use axum::response::IntoResponse;
use slope_domain::AdoptionReport;
use slope_service::Services;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::extract::Caller;
use super::{ApiResult, AuthErrors};

pub(crate) fn routes() -> OpenApiRouter<Services> {
    OpenApiRouter::new().routes(routes!(adoption))
}

/// The adoption dashboard: every organisation unit's stage with its evidence, the failure-mode warnings
/// and the trend of stages over the last six weeks.
///
/// A unit is at stage 1 (AI fluency) when enough of its people were shown AI suggestions in the last 4
/// weeks, at stage 2 (process AI) when also a loop of the unit moves a key result measured in money or
/// time fed by a live metric, and at stage 3 (growth inflection) when also a loop of the unit has lifted
/// lifetime value or retention with a 95 % interval above zero. Each unit lists the reasons for its
/// stage and what the next one needs, and `statements` gives every rule in words. Warnings name AI for
/// AI's sake, too many simultaneous projects, loops without measurement and dependence on one
/// technology, each with its evidence. The trend recomputes people and active users as of each weekly
/// date but takes loops' evidence as it is now (`trend_method` says so).
#[utoipa::path(
    get,
    path = "/adoption",
    tag = "adoption",
    responses(
        (status = 200, description = "The dashboard as of now.", body = AdoptionReport),
        AuthErrors,
    ),
    security(("bearer" = []), ("session" = []))
)]
async fn adoption(State(s): State<Services>, Caller(actor): Caller) -> ApiResult<impl IntoResponse> {
    Ok(Json(s.loops.adoption(&actor).await?))
}
