use thiserror::Error;

/// Everything the runner can fail with. `Invalid` is the caller's fault (a bad dataset row or config
/// value) and names the place; the others are the machine's.
#[derive(Debug, Error)]
pub enum RunnerError {
    /// Bad input, with the field (or `line N: field`) it concerns.
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
    #[error("tensor computation failed: {0}")]
    Candle(#[from] candle_core::Error),
    #[error("file system: {0}")]
    Io(#[from] std::io::Error),
    #[error("checkpoint: {0}")]
    Checkpoint(String),
}

impl RunnerError {
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> RunnerError {
        RunnerError::Invalid { field: field.into(), message: message.into() }
    }
}

/// The domain's rules (model and training settings, reward specs) report bad input as field errors;
/// the first names the place, as `Invalid` always has.
impl From<slope_domain::FieldErrors> for RunnerError {
    fn from(errors: slope_domain::FieldErrors) -> Self {
        match errors.0.into_iter().next() {
            Some((field, messages)) => RunnerError::Invalid { field, message: messages.join("; ") },
            None => RunnerError::invalid("", "invalid"),
        }
    }
}

pub type Result<T, E = RunnerError> = std::result::Result<T, E>;
