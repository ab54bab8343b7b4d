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
    #[error("internal error")]
    Internal(String),
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
            StoreError::Rejected(errors) => ServiceError::Invalid(errors),
            other => {
                tracing::error!(error = %other, "storage failure");
                ServiceError::Internal(other.to_string())
            }
        }
    }
}
