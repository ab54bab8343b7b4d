//! The REST boundary's one error type and its JSON shape:
//! `{"error": {"code": "invalid", "message": "…", "fields": {"name": ["is required"]}}}`.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use slope_domain::FieldErrors;
use slope_service::ServiceError;

#[derive(Debug)]
pub enum ApiError {
    Service(ServiceError),
    /// The body is not JSON at all.
    BadRequest(String),
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        ApiError::Service(e)
    }
}

impl From<FieldErrors> for ApiError {
    fn from(e: FieldErrors) -> Self {
        ApiError::Service(ServiceError::Invalid(e))
    }
}

impl ApiError {
    pub fn not_found(what: impl Into<String>) -> Self {
        ApiError::Service(ServiceError::NotFound(what.into()))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::Service(ServiceError::InvalidRows { errors, total }) = &self {
            let body = json!({ "error": {
                "code": "invalid_rows",
                "message": format!("{total} invalid row(s); nothing of the batch was stored"),
                "total": total,
                "rows": errors,
            }});
            return (StatusCode::UNPROCESSABLE_ENTITY, Json(body)).into_response();
        }
        if let ApiError::Service(ServiceError::InvalidPlan(errors)) = &self {
            let body = json!({ "error": {
                "code": "invalid_plan",
                "message": format!("the plan file has {} error(s); nothing was changed", errors.len()),
                "errors": errors,
            }});
            return (StatusCode::UNPROCESSABLE_ENTITY, Json(body)).into_response();
        }
        let (status, code, message, fields) = match self {
            ApiError::BadRequest(message) => (StatusCode::BAD_REQUEST, "bad_request", message, None),
            ApiError::Service(ServiceError::Invalid(fields)) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid",
                "the input breaks the rules listed in `fields`".to_owned(),
                Some(fields),
            ),
            ApiError::Service(ServiceError::NotFound(message)) => (StatusCode::NOT_FOUND, "not_found", message, None),
            ApiError::Service(ServiceError::Conflict(message)) => (StatusCode::CONFLICT, "conflict", message, None),
            ApiError::Service(ServiceError::Unauthorized(message)) => {
                (StatusCode::UNAUTHORIZED, "unauthorized", message, None)
            }
            ApiError::Service(ServiceError::Forbidden(message)) => (StatusCode::FORBIDDEN, "forbidden", message, None),
            ApiError::Service(ServiceError::TooManyRequests { retry_after_secs }) => {
                let body = json!({ "error": { "code": "too_many_requests",
                    "message": format!("too many failed sign-ins; try again in {retry_after_secs} s") } });
                return (
                    StatusCode::TOO_MANY_REQUESTS,
                    [(axum::http::header::RETRY_AFTER, retry_after_secs.to_string())],
                    Json(body),
                )
                    .into_response();
            }
            ApiError::Service(ServiceError::Busy { message, retry_after_secs }) => {
                let body = json!({ "error": { "code": "busy", "message": message } });
                return (
                    StatusCode::TOO_MANY_REQUESTS,
                    [(axum::http::header::RETRY_AFTER, retry_after_secs.to_string())],
                    Json(body),
                )
                    .into_response();
            }
            ApiError::Service(ServiceError::TooLarge { limit, message }) => {
                let body = json!({ "error": { "code": "too_large", "message": message, "limit": limit } });
                return (StatusCode::PAYLOAD_TOO_LARGE, Json(body)).into_response();
            }
            // The details were logged where the error arose; the caller learns only that it happened.
            ApiError::Service(ServiceError::InvalidRows { .. } | ServiceError::InvalidPlan(_)) => {
                unreachable!("answered above")
            }
            ApiError::Service(ServiceError::Internal(_)) => {
                (StatusCode::INTERNAL_SERVER_ERROR, "internal", "internal error".to_owned(), None)
            }
        };
        let mut body = json!({ "error": { "code": code, "message": message } });
        if let Some(fields) = fields {
            body["error"]["fields"] = json!(fields);
        }
        (status, Json(body)).into_response()
    }
}

// ---- the error shape in the OpenAPI description ------------------------------------------------
// These types only describe the JSON that `into_response` above writes; nothing constructs them.

/// The body of every error answer of the API.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub(crate) struct ErrorBody {
    error: ErrorDetail,
}

/// What went wrong. `code` is stable and meant for programs; `message` is meant for people.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub(crate) struct ErrorDetail {
    /// One of `bad_request`, `invalid`, `invalid_rows`, `invalid_plan`, `unauthorized`, `forbidden`,
    /// `not_found`, `conflict`, `gate_refused`, `too_many_requests`, `busy`, `too_large` and `internal`.
    #[schema(example = "invalid")]
    code: String,
    message: String,
    /// With `invalid`: the messages of each input field that breaks a rule, keyed by the field's name.
    #[schema(required = false)]
    fields: FieldErrors,
    /// With `invalid_rows`: how many rows of the batch are invalid.
    #[schema(required = false)]
    total: u64,
    /// With `invalid_rows`: the first invalid rows (at most 20), in order.
    #[schema(required = false)]
    rows: Vec<InvalidRow>,
    /// With `invalid_plan`: every problem of the plan file, in line order.
    #[schema(required = false)]
    errors: Vec<PlanFileError>,
    /// With `too_large`: the setting whose limit the input is over, such as `ingest_max_rows`.
    #[schema(required = false)]
    limit: String,
}

/// One invalid field of one row of a batch. Rows count from 1: the line of an NDJSON file, the record of
/// a CSV file after its header, the row of a Parquet file.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub(crate) struct InvalidRow {
    row: u64,
    field: String,
    message: String,
}

/// One problem of a plan file.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub(crate) struct PlanFileError {
    /// The 1-based line of the field, or of its table's header when the field is missing.
    line: u64,
    /// Where in the plan, such as `objectives[2].key_results[0].target`; empty for a TOML syntax error.
    path: String,
    message: String,
}

/// The body is not JSON, or carries something after the JSON value (code `bad_request`).
#[derive(utoipa::ToResponse)]
#[allow(dead_code)]
pub(crate) struct BadRequest(ErrorBody);

/// Nobody is signed in: send the `slope_session` cookie of a signed-in browser or
/// `Authorization: Bearer <token>` (code `unauthorized`). An unknown or revoked token is refused the same
/// way.
#[derive(utoipa::ToResponse)]
#[allow(dead_code)]
pub(crate) struct Unauthorized(ErrorBody);

/// The caller's role, or the token's scopes, do not allow this (code `forbidden`). A browser's change
/// whose `Origin` is not this server is refused the same way.
#[derive(utoipa::ToResponse)]
#[allow(dead_code)]
pub(crate) struct Forbidden(ErrorBody);

/// Nothing is at this path in the caller's organisation (code `not_found`).
#[derive(utoipa::ToResponse)]
#[allow(dead_code)]
pub(crate) struct NotFound(ErrorBody);

/// The request clashes with what is stored (code `conflict`): an edit based on a `version` that is no
/// longer the stored one, or an action the entity's current state does not allow.
#[derive(utoipa::ToResponse)]
#[allow(dead_code)]
pub(crate) struct Conflict(ErrorBody);

/// The input breaks a rule (code `invalid`): `fields` lists the messages of each field, so that every
/// problem is reported at once.
#[derive(utoipa::ToResponse)]
#[allow(dead_code)]
pub(crate) struct Invalid(ErrorBody);

// ---- the error answers that operations share ---------------------------------------------------
// Most operations fail in one of a few combinations of the answers above. Each set below is one such
// combination, so that an operation's `responses(...)` lists what it answers on success and names one
// set. Every entry of a set references the reusable response (`#/components/responses/…`), exactly as
// listing the entries one by one does, so the description is the same either way.

/// Declares response sets: each is an enum whose variants reference the reusable responses above by
/// status. Nothing constructs them; `utoipa` reads their shape.
macro_rules! response_sets {
    ($($(#[$doc:meta])* $set:ident { $($status:literal => $response:ident),+ $(,)? })*) => {$(
        $(#[$doc])*
        #[derive(utoipa::IntoResponses)]
        #[allow(dead_code)]
        pub(crate) enum $set {
            $(#[response(status = $status)] $response(#[ref_response] $response),)+
        }
    )*};
}

response_sets! {
    /// The caller is missing (401) or may not do this (403): what every operation that needs a caller
    /// can answer.
    AuthErrors { 401 => Unauthorized, 403 => Forbidden }
    /// An operation without a body on something named by the path, mostly a read: 401, 403 and 404.
    ReadErrors { 401 => Unauthorized, 403 => Forbidden, 404 => NotFound }
    /// An operation without a body on something named by the path whose parameters (a query, or the
    /// request itself) must keep a rule: 401, 403, 404 and 422.
    CheckedErrors { 401 => Unauthorized, 403 => Forbidden, 404 => NotFound, 422 => Invalid }
    /// A JSON body that is not about anything named by the path, such as a new top-level entity: 400,
    /// 401, 403 and 422.
    BodyErrors { 400 => BadRequest, 401 => Unauthorized, 403 => Forbidden, 422 => Invalid }
    /// A JSON body sent to something named by the path, such as a new child of it: 400, 401, 403, 404
    /// and 422.
    WriteErrors { 400 => BadRequest, 401 => Unauthorized, 403 => Forbidden, 404 => NotFound, 422 => Invalid }
    /// An edit of something named by the path, based on a version or on a state that may have changed:
    /// 400, 401, 403, 404, 409 and 422.
    EditErrors {
        400 => BadRequest, 401 => Unauthorized, 403 => Forbidden, 404 => NotFound, 409 => Conflict, 422 => Invalid,
    }
    /// A versioned change of something every organisation has (its settings), so never missing: 400, 401,
    /// 403, 409 and 422.
    SettingsErrors { 400 => BadRequest, 401 => Unauthorized, 403 => Forbidden, 409 => Conflict, 422 => Invalid }
    /// An action without a body on something named by the path, which its state may refuse: 401, 403,
    /// 404 and 409.
    ActionErrors { 401 => Unauthorized, 403 => Forbidden, 404 => NotFound, 409 => Conflict }
}
