//! The OpenAPI 3.1 description of `/api/v1`, generated from the handlers' `#[utoipa::path]` attributes
//! and the `ToSchema` types of the domain, service and store crates. It is served at
//! `GET /api/v1/openapi.json`, printed by `slope openapi`, and committed as `docs/openapi.json`, which a
//! test keeps equal to what the code generates.

use std::sync::OnceLock;

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use utoipa::openapi::OpenApi;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi as _};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::api::{self, BadRequest, Conflict, ErrorBody, Forbidden, Invalid, NotFound, Unauthorized};

/// Where the API is mounted; the paths of the description include it.
pub const BASE_PATH: &str = "/api/v1";

#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "Slope API",
        version = env!("CARGO_PKG_VERSION"),
        description = "The JSON API of Slope: seasons, objectives, key results, squads and their goals; loop \
            metrics from interaction events, experiments and drift; the fine-tune/eval runner's datasets, jobs \
            and models; serving suggestions; and expert annotation.\n\nEvery operation but this document's needs a caller: an API \
            token (`Authorization: Bearer slope_…`, made by an admin with `POST /api/v1/tokens` or `slope \
            token create`) or the `slope_session` cookie of a signed-in browser. What a caller may do follows \
            its role, or its token's scopes (`read`, `write`, `ingest`). Errors are JSON: \
            `{\"error\": {\"code\": \"…\", \"message\": \"…\"}}`, with `fields` for invalid input.",
        license(name = "Apache-2.0", identifier = "Apache-2.0")
    ),
    modifiers(&SecuritySchemes),
    components(
        schemas(ErrorBody),
        responses(BadRequest, Unauthorized, Forbidden, NotFound, Conflict, Invalid)
    ),
    tags(
        (name = "seasons", description = "Seasons, their plan trees and slope allocation."),
        (name = "objectives", description = "Quarterly objectives of a season."),
        (name = "key-results", description = "Key results of objectives and their check-ins."),
        (name = "squads", description = "Squads and the squad board."),
        (name = "squad-goals", description = "Squads' goals under key results, and their check-ins."),
        (name = "plans", description = "Plans as code: a season's plan as a TOML file, diffed and applied."),
        (name = "access", description = "The caller, members, units, API tokens and the audit trail."),
        (name = "events", description = "Ingestion of a loop's interaction events."),
        (name = "loops", description = "Loops at a glance, retention and drift."),
        (name = "metrics", description = "Metric definitions and their series, computed or pushed."),
        (name = "experiments", description = "A/B experiments between a loop's variants."),
        (name = "customers", description = "Transactions and customer lifetime value."),
        (name = "datasets", description = "The runner's training datasets."),
        (name = "jobs", description = "Training and eval jobs, with their step metrics and live events."),
        (name = "models", description = "The model registry, aliases and the promotion gate."),
        (name = "serving", description = "Suggestions served from a loop's champion or challenger."),
        (name = "annotation", description = "Expert annotation: queues of a loop's interactions, leased items and their labels, agreement, gold sets, imports and exports, and the annotation budget of key results."),
        (name = "monitors", description = "Monitors, their alerts and silences, each person's inbox, webhook contact points and the outbox's deliveries."),
        (name = "adoption", description = "The exec adoption dashboard: units' stages with evidence, warnings and trend."),
        (name = "meta", description = "This description of the API."),
    )
)]
struct ApiDoc;

/// The two ways a caller authenticates.
struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("slope_…")
                    .description(Some(
                        "An API token, `Authorization: Bearer slope_…`. Its scopes (`read`, `write`, `ingest`) \
                         decide what it may do.",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "session",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                "slope_session",
                "The session cookie set by signing in at `POST /auth/login`. A change sent with it must come \
                 from this server's pages (its `Origin` is checked).",
            ))),
        );
    }
}

/// The description of the whole API, paths included in full (`/api/v1/seasons/{id}`): the API's routes
/// and the route of the description itself.
pub fn spec() -> OpenApi {
    let (_, spec) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .nest(BASE_PATH, api::routes().merge(routes::<slope_service::Services>()))
        .split_for_parts();
    spec
}

/// The description as pretty-printed JSON, with a final newline: what `slope openapi` prints and
/// `docs/openapi.json` holds. Its key order is stable: struct fields in declaration order, maps sorted.
pub fn to_json() -> String {
    let mut json = spec().to_pretty_json().expect("the OpenAPI description serialises");
    json.push('\n');
    json
}

/// The route of the description, to be mounted beside the API's routes at [`BASE_PATH`]. It lives here,
/// not in [`api`], so that the description depends on the API and not the other way round.
pub fn router() -> Router {
    routes::<()>().split_for_parts().0
}

/// The description's own route, for any router state: its handler reads none.
fn routes<S: Clone + Send + Sync + 'static>() -> OpenApiRouter<S> {
    OpenApiRouter::new().routes(routes!(openapi_document))
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
    let document = DOCUMENT.get_or_init(to_json);
    ([(header::CONTENT_TYPE, "application/json")], document.as_str())
}
