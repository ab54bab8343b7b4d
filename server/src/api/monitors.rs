//! `/api/v1/monitors`, `/alerts`, `/inbox`, `/contact-points`, `/deliveries` and
//! `/notification-settings`: watching the loop and telling the team.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};
use slope_domain::{
    AlertDetail, AlertView, ContactPoint, ContactPointInput, CreatedContactPoint, Delivery, DeliveryAttempt,
    Evaluation, Inbox, Monitor, MonitorInput, NotificationSettings, SilenceInput,
};
use slope_service::Services;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::extract::{Body, Caller, Id, Query};
use super::{ApiResult, AuthErrors, BodyErrors, CheckedErrors, EditErrors, ReadErrors, SettingsErrors};

pub(crate) fn routes() -> OpenApiRouter<Services> {
    OpenApiRouter::new()
        .routes(routes!(list_monitors, put_monitor))
        .routes(routes!(run_monitor))
        .routes(routes!(list_alerts))
        .routes(routes!(get_alert))
        .routes(routes!(silence_alert))
        .routes(routes!(get_inbox))
        .routes(routes!(mark_read))
        .routes(routes!(list_contact_points, create_contact_point))
        .routes(routes!(remove_contact_point))
        .routes(routes!(list_deliveries))
        .routes(routes!(delivery_attempts))
        .routes(routes!(get_settings, put_settings))
}

/// Lists the organisation's monitors, with when each last ran and why it could not, if it could not.
#[utoipa::path(
    get,
    path = "/monitors",
    tag = "monitors",
    responses((status = 200, description = "The monitors, by key.", body = Vec<Monitor>), AuthErrors),
    security(("bearer" = []), ("session" = []))
)]
async fn list_monitors(State(s): State<Services>, Caller(actor): Caller) -> ApiResult<Json<Vec<Monitor>>> {
    Ok(Json(s.monitors.list(&actor).await?))
}

/// Creates a monitor, or replaces the settings of the one with the body's key.
///
/// `kind` is `drift` (`loop`, `field`; `threshold` PSI 0.25, `recent_days` 7 against `reference_days`
/// 28), `staleness` (`metric`; `max_age_hours`, else the metric's freshness limit), `job-failed`
/// (`loop` or every loop; `lookback_hours` 24, `stalled_minutes` 30), `promotion-refused` (`loop` or
/// every loop; `lookback_hours` 24) or `trend-reversal` (`metric`, `direction` up or down). A setting
/// the kind does not read is refused by name. The server's upkeep evaluates it every `every_minutes`
/// (15), once per period across all servers. Its alerts go to the members and contact points of
/// `squad_id`, or without one to the leaders, admins and organisation-wide contact points.
#[utoipa::path(
    post,
    path = "/monitors",
    tag = "monitors",
    request_body = MonitorInput,
    responses(
        (status = 201, description = "The monitor, created.", body = Monitor),
        (status = 200, description = "The monitor, replaced.", body = Monitor),
        BodyErrors,
    ),
    security(("bearer" = []), ("session" = []))
)]
async fn put_monitor(
    State(s): State<Services>,
    Caller(actor): Caller,
    Body(input): Body<MonitorInput>,
) -> ApiResult<impl IntoResponse> {
    let (monitor, created) = s.monitors.put(&actor, &input).await?;
    Ok((if created { StatusCode::CREATED } else { StatusCode::OK }, Json(monitor)))
}

/// Evaluates a monitor now, whatever its schedule, and answers what it found and changed.
#[utoipa::path(
    post,
    path = "/monitors/{key}/run",
    tag = "monitors",
    params(("key" = String, Path, description = "The monitor's key.")),
    responses((status = 200, description = "What the evaluation found and changed.", body = Evaluation), ReadErrors),
    security(("bearer" = []), ("session" = []))
)]
async fn run_monitor(
    State(s): State<Services>,
    Caller(actor): Caller,
    Path(key): Path<String>,
) -> ApiResult<Json<Evaluation>> {
    Ok(Json(s.monitors.run_now(&actor, &key).await?))
}

#[derive(Deserialize, Default, IntoParams)]
#[serde(default)]
#[into_params(parameter_in = Query)]
struct AlertsQuery {
    /// Only alerts that have not resolved.
    open: bool,
}

/// Lists alerts: open ones first, then the newest (at most 200), each with its state now (`firing`,
/// `silenced` or `resolved`).
#[utoipa::path(
    get,
    path = "/alerts",
    tag = "monitors",
    params(AlertsQuery),
    responses((status = 200, description = "The alerts.", body = Vec<AlertView>), CheckedErrors),
    security(("bearer" = []), ("session" = []))
)]
async fn list_alerts(
    State(s): State<Services>,
    Caller(actor): Caller,
    Query(q): Query<AlertsQuery>,
) -> ApiResult<Json<Vec<AlertView>>> {
    Ok(Json(s.monitors.alerts(&actor, q.open).await?))
}

/// Reads an alert with its evidence and history, and whether the caller may silence it.
#[utoipa::path(
    get,
    path = "/alerts/{id}",
    tag = "monitors",
    params(("id" = i64, Path, description = "The alert's id.")),
    responses((status = 200, description = "The alert.", body = AlertDetail), ReadErrors),
    security(("bearer" = []), ("session" = []))
)]
async fn get_alert(State(s): State<Services>, Caller(actor): Caller, Id(id): Id) -> ApiResult<Json<AlertDetail>> {
    Ok(Json(s.monitors.alert(&actor, id).await?))
}

/// Silences an open alert for `hours` (at most a week): it notifies nobody until then, including when
/// it resolves. A squad's alert may be silenced by its members; any other by operators. A resolved
/// alert answers 409.
#[utoipa::path(
    post,
    path = "/alerts/{id}/silence",
    tag = "monitors",
    params(("id" = i64, Path, description = "The alert's id.")),
    request_body = SilenceInput,
    responses((status = 200, description = "The alert, silenced.", body = AlertView), EditErrors),
    security(("bearer" = []), ("session" = []))
)]
async fn silence_alert(
    State(s): State<Services>,
    Caller(actor): Caller,
    Id(id): Id,
    Body(input): Body<SilenceInput>,
) -> ApiResult<Json<AlertView>> {
    Ok(Json(s.monitors.silence(&actor, id, &input).await?))
}

/// Reads the caller's inbox: the alert changes routed to them, newest first, and how many are unread.
/// Alerts are routed to people, so a token's inbox is always empty.
#[utoipa::path(
    get,
    path = "/inbox",
    tag = "monitors",
    responses((status = 200, description = "The caller's inbox.", body = Inbox), AuthErrors),
    security(("bearer" = []), ("session" = []))
)]
async fn get_inbox(State(s): State<Services>, Caller(actor): Caller) -> ApiResult<Json<Inbox>> {
    Ok(Json(s.monitors.inbox(&actor).await?))
}

/// Which inbox entries to mark read.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
struct MarkRead {
    /// The entries of this alert; without it, all.
    alert_id: Option<i64>,
}

/// How many entries were marked read.
#[derive(Debug, Serialize, ToSchema)]
struct Marked {
    marked: u64,
}

/// Marks the caller's inbox entries read (those of one alert, or all).
#[utoipa::path(
    post,
    path = "/inbox/read",
    tag = "monitors",
    request_body = MarkRead,
    responses((status = 200, description = "How many were unread.", body = Marked), BodyErrors),
    security(("bearer" = []), ("session" = []))
)]
async fn mark_read(
    State(s): State<Services>,
    Caller(actor): Caller,
    Body(input): Body<MarkRead>,
) -> ApiResult<Json<Marked>> {
    Ok(Json(Marked { marked: s.monitors.mark_read(&actor, input.alert_id).await? }))
}

/// Lists the contact points (operators only: a webhook's address can be a secret of its own).
#[utoipa::path(
    get,
    path = "/contact-points",
    tag = "monitors",
    responses((status = 200, description = "The contact points.", body = Vec<ContactPoint>), AuthErrors),
    security(("bearer" = []), ("session" = []))
)]
async fn list_contact_points(State(s): State<Services>, Caller(actor): Caller) -> ApiResult<Json<Vec<ContactPoint>>> {
    Ok(Json(s.monitors.contact_points(&actor).await?))
}

/// Adds a webhook contact point. The answer holds its signing secret, shown this once: each delivery
/// carries `X-Slope-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">` and an
/// `Idempotency-Key`. `format` is `json` (Slope's body) or `slack` (`{"text": …}`). An address in the
/// server's own networks (loopback, private, link-local) is refused unless the organisation allows it.
#[utoipa::path(
    post,
    path = "/contact-points",
    tag = "monitors",
    request_body = ContactPointInput,
    responses((status = 201, description = "The contact point and its secret.", body = CreatedContactPoint), BodyErrors),
    security(("bearer" = []), ("session" = []))
)]
async fn create_contact_point(
    State(s): State<Services>,
    Caller(actor): Caller,
    Body(input): Body<ContactPointInput>,
) -> ApiResult<impl IntoResponse> {
    Ok((StatusCode::CREATED, Json(s.monitors.create_contact_point(&actor, &input).await?)))
}

/// Removes a contact point: its pending deliveries fail, and its delivery log stays.
#[utoipa::path(
    delete,
    path = "/contact-points/{id}",
    tag = "monitors",
    params(("id" = i64, Path, description = "The contact point's id.")),
    responses((status = 200, description = "The contact point, removed.", body = ContactPoint), ReadErrors),
    security(("bearer" = []), ("session" = []))
)]
async fn remove_contact_point(
    State(s): State<Services>,
    Caller(actor): Caller,
    Id(id): Id,
) -> ApiResult<Json<ContactPoint>> {
    Ok(Json(s.monitors.remove_contact_point(&actor, id).await?))
}

#[derive(Deserialize, Default, IntoParams)]
#[serde(default)]
#[into_params(parameter_in = Query)]
struct DeliveriesQuery {
    /// Only the deliveries to this contact point.
    contact_point: Option<i64>,
}

/// Lists the outbox's deliveries, newest first (at most 200): status, attempts, the last status code
/// and error, and when the next attempt is due.
#[utoipa::path(
    get,
    path = "/deliveries",
    tag = "monitors",
    params(DeliveriesQuery),
    responses((status = 200, description = "The deliveries.", body = Vec<Delivery>), CheckedErrors),
    security(("bearer" = []), ("session" = []))
)]
async fn list_deliveries(
    State(s): State<Services>,
    Caller(actor): Caller,
    Query(q): Query<DeliveriesQuery>,
) -> ApiResult<Json<Vec<Delivery>>> {
    Ok(Json(s.monitors.deliveries(&actor, q.contact_point).await?))
}

/// Lists a delivery's attempts, oldest first, with each one's status code, error and duration.
#[utoipa::path(
    get,
    path = "/deliveries/{id}/attempts",
    tag = "monitors",
    params(("id" = i64, Path, description = "The delivery's id.")),
    responses((status = 200, description = "The attempts.", body = Vec<DeliveryAttempt>), ReadErrors),
    security(("bearer" = []), ("session" = []))
)]
async fn delivery_attempts(
    State(s): State<Services>,
    Caller(actor): Caller,
    Id(id): Id,
) -> ApiResult<Json<Vec<DeliveryAttempt>>> {
    Ok(Json(s.monitors.delivery_attempts(&actor, id).await?))
}

/// Reads the organisation's notification settings.
#[utoipa::path(
    get,
    path = "/notification-settings",
    tag = "monitors",
    responses((status = 200, description = "The settings.", body = NotificationSettings), AuthErrors),
    security(("bearer" = []), ("session" = []))
)]
async fn get_settings(State(s): State<Services>, Caller(actor): Caller) -> ApiResult<Json<NotificationSettings>> {
    Ok(Json(s.monitors.settings(&actor).await?))
}

/// Changes the organisation's notification settings (admins only). `allow_internal_webhooks` lets
/// webhooks reach addresses in the server's own networks; it is off by default.
#[utoipa::path(
    put,
    path = "/notification-settings",
    tag = "monitors",
    request_body = NotificationSettings,
    responses((status = 200, description = "The settings.", body = NotificationSettings), SettingsErrors),
    security(("bearer" = []), ("session" = []))
)]
async fn put_settings(
    State(s): State<Services>,
    Caller(actor): Caller,
    Body(input): Body<NotificationSettings>,
) -> ApiResult<Json<NotificationSettings>> {
    Ok(Json(s.monitors.set_settings(&actor, input).await?))
}
