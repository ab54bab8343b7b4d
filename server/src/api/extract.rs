//! Extractors that turn malformed requests into field-level 422s instead of axum's plain-text rejections.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use slope_domain::FieldErrors;

use super::error::ApiError;

/// A JSON object body whose type errors name the field: `{"fields": {"slope_target": ["invalid type: …"]}}`.
/// Bodies that are not JSON (or carry anything after the value) are a 400; JSON that is not an object is a
/// 422, since every input is an object with named fields.
pub struct Body<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let object = object_body(req, state).await?;
        from_object(object).map(Body)
    }
}

pub(crate) async fn object_body<S: Send + Sync>(req: Request, state: &S) -> Result<Map<String, Value>, ApiError> {
    let bytes = Bytes::from_request(req, state).await.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    // Parsing to a value first checks the whole body, trailing characters included.
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Object(object)) => Ok(object),
        Ok(_) => Err(FieldErrors::single("body", "must be a JSON object").into()),
        Err(e) => Err(ApiError::BadRequest(format!("the body is not valid JSON: {e}"))),
    }
}

pub(crate) fn from_object<T: DeserializeOwned>(object: Map<String, Value>) -> Result<T, ApiError> {
    serde_path_to_error::deserialize(Value::Object(object)).map_err(|e| {
        let path = e.path().to_string();
        let field = if path == "." { "body".to_owned() } else { path };
        FieldErrors::single(&field, strip_position(&e.into_inner().to_string())).into()
    })
}

/// serde_json appends "at line 1 column 42", which means nothing once the field is named.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_owned(),
        None => message.to_owned(),
    }
}

/// A numeric id from the path; anything else is a 404, as the resource cannot exist.
pub struct Id(pub i64);

impl<S: Send + Sync> FromRequestParts<S> for Id {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let path = parts.uri.path().to_owned();
        let not_found = || ApiError::not_found(format!("no resource at {path}"));
        let axum::extract::Path(raw) =
            axum::extract::Path::<String>::from_request_parts(parts, state).await.map_err(|_| not_found())?;
        raw.parse().map(Id).map_err(|_| not_found())
    }
}

/// Two numeric path parameters (a parent and a child, like a season and one of its signals), read like
/// [`Id`]: anything that is not two numbers is "not found".
pub struct Ids(pub i64, pub i64);

impl<S: Send + Sync> FromRequestParts<S> for Ids {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let path = parts.uri.path().to_owned();
        let not_found = || ApiError::not_found(format!("no resource at {path}"));
        let axum::extract::Path((a, b)) =
            axum::extract::Path::<(String, String)>::from_request_parts(parts, state).await.map_err(|_| not_found())?;
        Ok(Ids(a.parse().map_err(|_| not_found())?, b.parse().map_err(|_| not_found())?))
    }
}

/// A key and a numeric id from the path (a queue and one of its items), read like [`Ids`]: a second
/// parameter that is not a number is "not found".
pub struct KeyId(pub String, pub i64);

impl<S: Send + Sync> FromRequestParts<S> for KeyId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let path = parts.uri.path().to_owned();
        let not_found = || ApiError::not_found(format!("no resource at {path}"));
        let axum::extract::Path((key, id)) =
            axum::extract::Path::<(String, String)>::from_request_parts(parts, state).await.map_err(|_| not_found())?;
        Ok(KeyId(key, id.parse().map_err(|_| not_found())?))
    }
}

/// Query parameters with field-level errors.
pub struct Query<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let query = parts.uri.query().unwrap_or_default();
        serde_urlencoded::from_str(query).map(Query).map_err(|e| FieldErrors::single("query", e.to_string()).into())
    }
}

/// The authenticated caller of an API route. Anonymous requests are refused with 401 before the handler
/// runs; what the caller may do is the service layer's decision.
pub struct Caller(pub slope_domain::Actor);

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        match parts.extensions.get::<slope_app::Authenticated>() {
            Some(slope_app::Authenticated(Some(actor))) => Ok(Caller(actor.clone())),
            _ => Err(ApiError::Service(slope_service::ServiceError::Unauthorized(
                "sign in, or send `Authorization: Bearer <token>`".into(),
            ))),
        }
    }
}
