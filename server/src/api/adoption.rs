//! `/api/v1/adoption`: the exec adoption dashboard.

use axum::Json;
use axum::extract::State;
use axum::response::IntoResponse;
use slope_domain::{AdoptionReport, AdoptionRulesInput, AdoptionSettings};
use slope_service::Services;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::extract::{Body, Caller};
use super::{ApiResult, AuthErrors, SettingsErrors};

pub(crate) fn routes() -> OpenApiRouter<Services> {
    OpenApiRouter::new().routes(routes!(adoption)).routes(routes!(adoption_rules, set_adoption_rules))
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

/// The rules the adoption dashboard judges by: the fluency bar, the most active goals per squad before
/// the "too many projects" warning, and the longest a champion may go unevaluated; with their version,
/// who set it and when (version 0 is the defaults, never changed).
#[utoipa::path(
    get,
    path = "/adoption/rules",
    tag = "adoption",
    responses(
        (status = 200, description = "The organisation's current adoption rules.", body = AdoptionSettings),
        AuthErrors,
    ),
    security(("bearer" = []), ("session" = []))
)]
async fn adoption_rules(State(s): State<Services>, Caller(actor): Caller) -> ApiResult<Json<AdoptionSettings>> {
    Ok(Json(s.loops.adoption_rules(&actor).await?))
}

/// Changes the adoption rules (admins only): every rule is given, with the `version` they were read at.
/// The change is the next version, kept with who made it; a stale `version` is a 409 and changes nothing.
/// The dashboard judges by the new rules from its next reading, and states the version it used.
#[utoipa::path(
    put,
    path = "/adoption/rules",
    tag = "adoption",
    request_body = AdoptionRulesInput,
    responses(
        (status = 200, description = "The rules as stored, with their new version.", body = AdoptionSettings),
        SettingsErrors,
    ),
    security(("bearer" = []), ("session" = []))
)]
async fn set_adoption_rules(
    State(s): State<Services>,
    Caller(actor): Caller,
    Body(input): Body<AdoptionRulesInput>,
) -> ApiResult<Json<AdoptionSettings>> {
    Ok(Json(s.loops.set_adoption_rules(&actor, &input).await?))
}
