use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// Validation messages keyed by the input field they belong to.
///
/// The same map is shown next to form fields in the browser and returned in a 422 body by the API, so
/// field names are the wire names of the input structs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(transparent)]
pub struct FieldErrors(pub BTreeMap<String, Vec<String>>);

impl FieldErrors {
    pub fn new() -> Self {
        Self::default()
    }

    /// A map with one message, for rules that are checked outside a form (for example against storage).
    pub fn single(field: &str, message: impl Into<String>) -> Self {
        let mut errors = Self::new();
        errors.add(field, message);
        errors
    }

    pub fn add(&mut self, field: &str, message: impl Into<String>) {
        self.0.entry(field.to_owned()).or_default().push(message.into());
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn get(&self, field: &str) -> Option<&[String]> {
        self.0.get(field).map(Vec::as_slice)
    }

    pub fn merge(&mut self, other: FieldErrors) {
        for (field, messages) in other.0 {
            self.0.entry(field).or_default().extend(messages);
        }
    }

    /// The same messages under `prefix.field`, for rules of a part checked on its own (such as a job's
    /// reward spec inside the job).
    /// The same messages, those of field `from` moved to field `to`: for a form whose field is named
    /// differently from the input's (a keyword such as `loop` cannot name a server function's argument).
    pub fn renamed(mut self, from: &str, to: &str) -> FieldErrors {
        if let Some(messages) = self.0.remove(from) {
            self.0.entry(to.to_owned()).or_default().extend(messages);
        }
        self
    }

    pub fn prefixed(self, prefix: &str) -> FieldErrors {
        FieldErrors(self.0.into_iter().map(|(field, messages)| (format!("{prefix}.{field}"), messages)).collect())
    }

    /// `Ok(value)` when nothing was recorded, so parsers can end with `errors.into_result(value)`.
    pub fn into_result<T>(self, value: T) -> Result<T, FieldErrors> {
        if self.is_empty() { Ok(value) } else { Err(self) }
    }
}

impl fmt::Display for FieldErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for (field, messages) in &self.0 {
            for message in messages {
                if !first {
                    f.write_str("; ")?;
                }
                first = false;
                write!(f, "{field}: {message}")?;
            }
        }
        Ok(())
    }
}

impl std::error::Error for FieldErrors {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renaming_a_field_moves_its_messages_and_keeps_the_rest() {
        let mut errors = FieldErrors::single("loop", "is required");
        errors.add("loop_key", "was already wrong");
        errors.add("name", "is too long");
        let renamed = errors.renamed("loop", "loop_key");
        assert_eq!(renamed.get("loop"), None);
        assert_eq!(renamed.get("loop_key"), Some(&["was already wrong".to_owned(), "is required".to_owned()][..]));
        assert_eq!(renamed.get("name"), Some(&["is too long".to_owned()][..]));
    }
}
