//! Access routes: who am I, members, units, API tokens and the audit trail.

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::response::IntoResponse;
use axum::routing::{delete, get, post};
use serde::Deserialize;
use slope_domain::*;

use super::extract::{Body, Caller, Id, Query};
use super::{ApiResult, ApiState, created};

pub(super) fn routes() -> Router<ApiState> {
    Router::new()
        .route("/me", get(me))
        .route("/members", get(list_members).put(put_member))
        .route("/members/{id}", delete(remove_member))
        .route("/units", get(list_units).put(put_unit))
        .route("/tokens", get(list_tokens).post(create_token))
        .route("/tokens/{id}/revoke", post(revoke_token))
        .route("/audit", get(audit))
}

/// The caller as the server sees it: organisation, and role and squads or token scopes.
async fn me(Caller(actor): Caller) -> Json<Actor> {
    Json(actor)
}

async fn list_members(State(s): State<ApiState>, Caller(actor): Caller) -> ApiResult<Json<Vec<Member>>> {
    Ok(Json(s.access.members(&actor).await?))
}

async fn put_member(
    State(s): State<ApiState>,
    Caller(actor): Caller,
    Body(input): Body<MemberInput>,
) -> ApiResult<Json<Member>> {
    Ok(Json(s.access.put_member(&actor, &input).await?))
}

async fn remove_member(State(s): State<ApiState>, Caller(actor): Caller, Id(id): Id) -> ApiResult<impl IntoResponse> {
    s.access.remove_member(&actor, UserId(id)).await?;
    Ok(axum::http::StatusCode::NO_CONTENT)
}

async fn list_units(State(s): State<ApiState>, Caller(actor): Caller) -> ApiResult<Json<Vec<Unit>>> {
    Ok(Json(s.access.units(&actor).await?))
}

async fn put_unit(
    State(s): State<ApiState>,
    Caller(actor): Caller,
    Body(input): Body<UnitInput>,
) -> ApiResult<Json<Unit>> {
    Ok(Json(s.access.put_unit(&actor, &input).await?))
}

async fn list_tokens(State(s): State<ApiState>, Caller(actor): Caller) -> ApiResult<Json<Vec<ApiToken>>> {
    Ok(Json(s.access.tokens(&actor).await?))
}

/// Creates a token; the answer is the only time its secret is shown.
async fn create_token(
    State(s): State<ApiState>,
    Caller(actor): Caller,
    Body(input): Body<TokenInput>,
) -> ApiResult<impl IntoResponse> {
    Ok(created(s.access.create_token(&actor, &input).await?))
}

async fn revoke_token(State(s): State<ApiState>, Caller(actor): Caller, Id(id): Id) -> ApiResult<Json<ApiToken>> {
    Ok(Json(s.access.revoke_token(&actor, id).await?))
}

#[derive(Deserialize)]
struct AuditQuery {
    entity: Option<String>,
    id: Option<i64>,
    before: Option<i64>,
    limit: Option<i64>,
}

/// The audit trail, newest first: `?entity=season&id=3` for one entity, `?before=ID` to page back.
async fn audit(
    State(s): State<ApiState>,
    Caller(actor): Caller,
    Query(q): Query<AuditQuery>,
) -> ApiResult<Json<Vec<AuditRecord>>> {
    let entity = match (&q.entity, q.id) {
        (Some(e), Some(id)) => Some((e.as_str(), id)),
        (None, None) => None,
        _ => return Err(FieldErrors::single("entity", "give both `entity` and `id`, or neither").into()),
    };
    Ok(Json(s.access.audit(&actor, entity, q.before, q.limit.unwrap_or(100)).await?))
}
