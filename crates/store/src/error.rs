use slope_domain::FieldErrors;

/// What can go wrong in storage, in terms the service layer can act on.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{entity} {id} not found")]
    NotFound { entity: &'static str, id: i64 },
    /// The edit was based on `expected` but the stored row is at `actual`.
    #[error("{entity} {id} was changed by someone else (you edited version {expected}, it is now at {actual})")]
    Conflict { entity: &'static str, id: i64, expected: i64, actual: i64 },
    /// A rule that spans rows (checked inside the write transaction) rejected the write.
    #[error("{0}")]
    Rejected(FieldErrors),
    /// Someone else got there first (another annotator took or completed the item): the same request
    /// cannot succeed now, whatever its fields.
    #[error("{0}")]
    Contended(String),
    #[error("configuration: {0}")]
    Config(String),
    /// A stored row that does not parse back into the domain: a bug or a hand-edited database.
    #[error("corrupt row: {0}")]
    Corrupt(String),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

impl StoreError {
    pub(crate) fn config(e: sqlx::Error) -> Self {
        StoreError::Config(e.to_string())
    }

    pub(crate) fn corrupt(what: impl std::fmt::Display) -> Self {
        StoreError::Corrupt(what.to_string())
    }

    /// True for violations of a unique index, which the service reports as a conflict with existing data.
    pub fn is_unique_violation(&self) -> bool {
        matches!(self, StoreError::Database(sqlx::Error::Database(e)) if e.is_unique_violation())
    }
}
