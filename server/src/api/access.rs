//! Access routes: who am I, members, units, API tokens and the audit trail.

use axum::Json;
use axum::extract::State;
use axum::response::IntoResponse;
use serde::Deserialize;
use slope_domain::*;
use slope_service::{CreatedInvitation, CreatedToken, MemberChange, Services};
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::extract::{Body, Caller, Id, Query};
use super::{ApiResult, AuthErrors, BodyErrors, CheckedErrors, Invalid, ReadErrors, Unauthorized, created};

pub(crate) fn routes() -> OpenApiRouter<Services> {
    OpenApiRouter::new()
        .routes(routes!(me))
        .routes(routes!(list_members, put_member))
        .routes(routes!(remove_member))
        .routes(routes!(list_invitations))
        .routes(routes!(revoke_invitation))
        .routes(routes!(list_units, put_unit))
        .routes(routes!(list_tokens, create_token))
        .routes(routes!(revoke_token))
        .routes(routes!(audit))
}

/// Tells who the caller is.
///
/// The caller as the server sees it: organisation, and role and squads or token scopes.
#[utoipa::path(
    get,
    path = "/me",
    tag = "access",
    responses(
        (status = 200, description = "The caller.", body = Actor),
        (status = 401, response = Unauthorized),
    ),
    security(("bearer" = []), ("session" = []))
)]
async fn me(Caller(actor): Caller) -> Json<Actor> {
    Json(actor)
}

/// Lists the organisation's members.
#[utoipa::path(
    get,
    path = "/members",
    tag = "access",
    responses(
        (status = 200, description = "Every member of the organisation.", body = Vec<Member>),
        AuthErrors,
    ),
    security(("bearer" = []), ("session" = []))
)]
async fn list_members(State(s): State<Services>, Caller(actor): Caller) -> ApiResult<Json<Vec<Member>>> {
    Ok(Json(s.access.members(&actor).await?))
}

/// Changes a member's role and squads, or invites a new member.
///
/// The member is named by e-mail address. An address that is already a member gets the role and squads
/// at once (200). Any other address is invited (202): the answer carries the invitation's secret and the
/// path of the page where its holder accepts, shown this once; the account joins only when they accept,
/// with their account's password or, for an address with no account yet, a new one. The answer is the
/// same whether or not the address has an account. Only admins may do this.
#[utoipa::path(
    put,
    path = "/members",
    tag = "access",
    request_body = MemberInput,
    responses(
        (status = 200, description = "The member as stored.", body = Member),
        (status = 202, description = "The address is invited; the secret is shown this once.", body = CreatedInvitation),
        BodyErrors,
    ),
    security(("bearer" = []), ("session" = []))
)]
async fn put_member(
    State(s): State<Services>,
    Caller(actor): Caller,
    Body(input): Body<MemberInput>,
) -> ApiResult<axum::response::Response> {
    Ok(match s.access.put_member(&actor, &input).await? {
        MemberChange::Saved(member) => Json(member).into_response(),
        MemberChange::Invited(invitation) => (axum::http::StatusCode::ACCEPTED, Json(invitation)).into_response(),
    })
}

/// Lists the organisation's invitations, newest first.
///
/// Open, accepted, revoked and expired ones alike; their secrets are not kept. Only admins may do this.
#[utoipa::path(
    get,
    path = "/invitations",
    tag = "access",
    responses(
        (status = 200, description = "The organisation's invitations.", body = Vec<Invitation>),
        AuthErrors,
    ),
    security(("bearer" = []), ("session" = []))
)]
async fn list_invitations(State(s): State<Services>, Caller(actor): Caller) -> ApiResult<Json<Vec<Invitation>>> {
    Ok(Json(s.access.invitations(&actor).await?))
}

/// Revokes an open invitation.
///
/// Its link stops working at once. An invitation already accepted or revoked is refused (422). Only
/// admins may do this.
#[utoipa::path(
    post,
    path = "/invitations/{id}/revoke",
    tag = "access",
    params(("id" = i64, Path, description = "The invitation's id.")),
    responses(
        (status = 200, description = "The invitation, revoked.", body = Invitation),
        CheckedErrors,
    ),
    security(("bearer" = []), ("session" = []))
)]
async fn revoke_invitation(
    State(s): State<Services>,
    Caller(actor): Caller,
    Id(id): Id,
) -> ApiResult<Json<Invitation>> {
    Ok(Json(s.access.revoke_invitation(&actor, id).await?))
}

/// Removes a member from the organisation.
///
/// Only admins may do this, and an admin cannot remove themself.
#[utoipa::path(
    delete,
    path = "/members/{id}",
    tag = "access",
    params(("id" = i64, Path, description = "The member's user id.")),
    responses(
        (status = 204, description = "The member is removed."),
        CheckedErrors,
    ),
    security(("bearer" = []), ("session" = []))
)]
async fn remove_member(State(s): State<Services>, Caller(actor): Caller, Id(id): Id) -> ApiResult<impl IntoResponse> {
    s.access.remove_member(&actor, UserId(id)).await?;
    Ok(axum::http::StatusCode::NO_CONTENT)
}

/// Lists the organisation's units.
#[utoipa::path(
    get,
    path = "/units",
    tag = "access",
    responses(
        (status = 200, description = "Every unit of the organisation.", body = Vec<Unit>),
        AuthErrors,
    ),
    security(("bearer" = []), ("session" = []))
)]
async fn list_units(State(s): State<Services>, Caller(actor): Caller) -> ApiResult<Json<Vec<Unit>>> {
    Ok(Json(s.access.units(&actor).await?))
}

/// Adds a unit, or changes a unit's parent and headcount.
///
/// A unit is named by its name; adoption dashboards roll up by unit. The body is the whole unit: a
/// `headcount` left out or `null` says the number of people is not known (and clears a stored one), and
/// the adoption dashboard then counts only the people seen in events.
#[utoipa::path(
    put,
    path = "/units",
    tag = "access",
    request_body = UnitInput,
    responses(
        (status = 200, description = "The unit as stored.", body = Unit),
        BodyErrors,
    ),
    security(("bearer" = []), ("session" = []))
)]
async fn put_unit(
    State(s): State<Services>,
    Caller(actor): Caller,
    Body(input): Body<UnitInput>,
) -> ApiResult<Json<Unit>> {
    Ok(Json(s.access.put_unit(&actor, &input).await?))
}

/// Lists the organisation's API tokens, without their secrets.
#[utoipa::path(
    get,
    path = "/tokens",
    tag = "access",
    responses(
        (
            status = 200,
            description = "Every API token of the organisation, revoked ones included.",
            body = Vec<ApiToken>
        ),
        AuthErrors,
    ),
    security(("bearer" = []), ("session" = []))
)]
async fn list_tokens(State(s): State<Services>, Caller(actor): Caller) -> ApiResult<Json<Vec<ApiToken>>> {
    Ok(Json(s.access.tokens(&actor).await?))
}

/// Creates an API token.
///
/// The answer is the only time the token's secret is shown; only a digest of it is stored.
#[utoipa::path(
    post,
    path = "/tokens",
    tag = "access",
    request_body = TokenInput,
    responses(
        (status = 201, description = "The token and its secret (`slope_…`).", body = CreatedToken),
        BodyErrors,
    ),
    security(("bearer" = []), ("session" = []))
)]
async fn create_token(
    State(s): State<Services>,
    Caller(actor): Caller,
    Body(input): Body<TokenInput>,
) -> ApiResult<impl IntoResponse> {
    Ok(created(s.access.create_token(&actor, &input).await?))
}

/// Revokes an API token.
///
/// A revoked token is refused from then on; it stays listed with the time it was revoked.
#[utoipa::path(
    post,
    path = "/tokens/{id}/revoke",
    tag = "access",
    params(("id" = i64, Path, description = "The token's id.")),
    responses(
        (status = 200, description = "The revoked token.", body = ApiToken),
        ReadErrors,
    ),
    security(("bearer" = []), ("session" = []))
)]
async fn revoke_token(State(s): State<Services>, Caller(actor): Caller, Id(id): Id) -> ApiResult<Json<ApiToken>> {
    Ok(Json(s.access.revoke_token(&actor, id).await?))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct AuditQuery {
    /// The kind of entity to show the changes of: `season`, `objective`, `key_result`, `squad`,
    /// `squad_goal`, `membership`, `unit`, `api_token`, `thesis_signal`, `annotation_queue`, `annotation_item`
    /// (its gold answer) or `annotation`. Give it with `id`, or neither.
    entity: Option<String>,
    /// The id of the entity to show the changes of.
    id: Option<i64>,
    /// Only records older than the record with this id, to page back.
    before: Option<i64>,
    /// How many records at most (1 to 500, default 100).
    limit: Option<i64>,
}

/// Reads the audit trail, newest first.
///
/// `?entity=season&id=3` shows the changes of one entity, and `?before=ID` pages back. Each record
/// names who changed what, when, and the entity's state before and after.
#[utoipa::path(
    get,
    path = "/audit",
    tag = "access",
    params(AuditQuery),
    responses(
        (status = 200, description = "Audit records, newest first.", body = Vec<AuditRecord>),
        (status = 422, response = Invalid),
        AuthErrors,
    ),
    security(("bearer" = []), ("session" = []))
)]
async fn audit(
    State(s): State<Services>,
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
