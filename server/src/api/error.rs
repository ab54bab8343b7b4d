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
