use slope_domain::FieldErrors;
use slope_store::StoreError;

/// The service layer's one error type. Every variant but `Internal` is safe to show to the caller;
/// `Internal` is logged in full where it arises and shown as a bare "internal error".
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("invalid input: {0}")]
    Invalid(FieldErrors),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    /// A batch of events with invalid rows: the first few, and how many there were.
    #[error("{total} invalid row(s); nothing was stored")]
    InvalidRows { errors: Vec<slope_metrics::events::RowError>, total: usize },
    /// A plan file that cannot be applied: each error names its line and field.
    #[error("the plan file has {} error(s)", .0.len())]
    InvalidPlan(Vec<slope_plans::PlanError>),
    /// No valid session or token, or a sign-in with wrong credentials.
    #[error("{0}")]
    Unauthorized(String),
    /// Signed in, but the role or token scope does not allow the action.
    #[error("{0}")]
    Forbidden(String),
    /// Too many failed sign-ins; try again after this many seconds.
    #[error("too many failed sign-ins; try again in {retry_after_secs} s")]
    TooManyRequests { retry_after_secs: u64 },
    /// The server (or the caller's organisation) has as much of this work in flight as it takes on;
    /// the same request later will do.
    #[error("{message}")]
    Busy { message: String, retry_after_secs: u64 },
    /// The input is larger than a configured limit, which `limit` names; smaller parts will do.
    #[error("{message}")]
    TooLarge { limit: &'static str, message: String },
    #[error("internal error")]
    Internal(String),
}

impl From<slope_domain::Denied> for ServiceError {
    fn from(denied: slope_domain::Denied) -> Self {
        ServiceError::Forbidden(denied.0)
    }
}

impl From<FieldErrors> for ServiceError {
    fn from(errors: FieldErrors) -> Self {
        ServiceError::Invalid(errors)
    }
}

impl From<StoreError> for ServiceError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::NotFound { .. } => ServiceError::NotFound(error.to_string()),
            StoreError::Conflict { .. } => ServiceError::Conflict(error.to_string()),
            StoreError::Contended(message) => ServiceError::Conflict(message),
            StoreError::Rejected(errors) => ServiceError::Invalid(errors),
            other => {
                tracing::error!(error = %other, "storage failure");
                ServiceError::Internal(other.to_string())
            }
        }
    }
}

/// An internal failure: logged in full here, where it arises, and carried up as `Internal`, whose
/// details the edges log but never show.
pub(crate) fn internal(what: &str, e: impl std::fmt::Display) -> ServiceError {
    tracing::error!(error = %e, "{what}");
    ServiceError::Internal(format!("{what}: {e}"))
}
