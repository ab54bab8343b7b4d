//! The JSON REST API under `/api/v1`. Handlers are thin: extract, call the service, serialise.
//!
//! Every route is registered through [`OpenApiRouter`] with `routes!`, which takes the path and method
//! from the handler's `#[utoipa::path]`: a route cannot exist without its OpenAPI description, and the
//! description cannot name a route that does not exist. Paths in the attributes are relative to
//! `/api/v1`. This module knows nothing of the document assembled from these routes: `crate::openapi`
//! builds it, nests the routes under `/api/v1` and serves it beside them.

mod access;
mod adoption;
mod annotations;
mod error;
mod extract;
mod key_results;
mod loops;
mod monitors;
mod objectives;
mod plans;
mod runner;
mod seasons;
mod signals;
mod squad_goals;
mod squads;

use axum::Json;
use axum::Router;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde::Deserialize;
use slope_domain::{
    FieldErrors, KeyResultInput, MetricInput, ObjectiveInput, SeasonInput, SquadGoalInput, SquadInput, TransitionInput,
    Version,
};
use slope_service::Services;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;

pub use error::ApiError;
pub(crate) use error::{
    ActionErrors, AuthErrors, BadRequest, BodyErrors, CheckedErrors, Conflict, EditErrors, ErrorBody, Forbidden,
    Invalid, NotFound, ReadErrors, SettingsErrors, Unauthorized, WriteErrors,
};

type ApiResult<T> = Result<T, ApiError>;

/// The API's routes over the server's services, at paths relative to `/api/v1`.
pub fn router(services: Services) -> Router {
    let (router, _) = routes().split_for_parts();
    router.with_state(services)
}

/// Every route of the API with its OpenAPI description, at paths relative to `/api/v1`.
pub(crate) fn routes() -> OpenApiRouter<Services> {
    OpenApiRouter::new()
        .merge(seasons::routes())
        .merge(objectives::routes())
        .merge(key_results::routes())
        .merge(squads::routes())
        .merge(squad_goals::routes())
        .merge(access::routes())
        .merge(adoption::routes())
        .merge(plans::routes())
        .merge(signals::routes())
        .merge(monitors::routes())
        .merge(loops::routes())
        .merge(runner::routes())
        .merge(annotations::routes())
}

/// An edit: the entity's fields plus the `version` the edit is based on. Read by taking `version` out of
/// the body object and parsing the rest as the input, so type errors keep their field names.
struct Versioned<T> {
    version: Version,
    input: T,
}

impl<S: Send + Sync, T: serde::de::DeserializeOwned> axum::extract::FromRequest<S> for Versioned<T> {
    type Rejection = ApiError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, ApiError> {
        let mut object = extract::object_body(req, state).await?;
        let version = match object.remove("version") {
            Some(value) => {
                value.as_i64().map(Version).ok_or_else(|| FieldErrors::single("version", "must be a whole number"))?
            }
            None => {
                return Err(FieldErrors::single(
                    "version",
                    "is required: send the version you edited (from the last GET)",
                )
                .into());
            }
        };
        Ok(Versioned { version, input: extract::from_object(object)? })
    }
}

/// The OpenAPI schemas of [`Versioned`] bodies: an input's fields and the `version` they edit. Nothing
/// constructs them; `Versioned` reads the same shape.
macro_rules! edit_schemas {
    ($($(#[$doc:meta])* $name:ident($input:ty);)*) => {$(
        $(#[$doc])*
        #[derive(Deserialize, ToSchema)]
        #[allow(dead_code)]
        pub(crate) struct $name {
            /// The `version` of the entity that the edit is based on, from the last GET. An edit of a
            /// version that is no longer the stored one is refused with 409.
            version: Version,
            #[serde(flatten)]
            input: $input,
        }
    )*};
}

edit_schemas! {
    /// A season's fields and the version they edit.
    SeasonEdit(SeasonInput);
    /// A change of a season's status and the version of the season it changes.
    TransitionEdit(TransitionInput);
    /// An objective's fields and the version they edit.
    ObjectiveEdit(ObjectiveInput);
    /// A key result's fields and the version they edit.
    KeyResultEdit(KeyResultInput);
    /// A squad's fields and the version they edit.
    SquadEdit(SquadInput);
    /// A squad goal's fields and the version they edit.
    SquadGoalEdit(SquadGoalInput);
    /// A metric definition's fields and the version they edit.
    MetricEdit(MetricInput);
}

fn created<T: serde::Serialize>(value: T) -> impl IntoResponse {
    (StatusCode::CREATED, Json(value))
}
