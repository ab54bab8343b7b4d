//! Server functions: the UI's only way to the service layer. Each one parses its form fields with the
//! domain's rules (the same functions run in the browser before submitting), calls one service method and
//! maps the result to what the page shows.
//!
//! One module per area of the UI: `planning` (seasons, objectives, key results, check-ins, squads, goals
//! and signals), `loops` (metrics, loops and adoption), `runner` (jobs, models, a loop's stack and the
//! demo's simulator), `annotation` (queues, annotators' work and budgets) and `access` (members and the
//! audit trail). Everything they define is re-exported
//! here, so pages import `crate::api::*` whatever the area. This module holds what they share: the form
//! outcome, the mapping of service results and the parsing of ids.

mod access;
mod annotation;
mod loops;
mod monitors;
mod planning;
mod runner;

use serde::{Deserialize, Serialize};
use slope_domain::FieldErrors;

pub use access::*;
pub use annotation::*;
pub use loops::*;
pub use monitors::*;
pub use planning::*;
pub use runner::*;
// The read models of the loops, runner and audit pages are the domain's, beside its other read models;
// they are named here too because the pages have always found them in this module.
pub use slope_domain::{
    AcceptanceRow, AuditView, BatchRow, CohortRow, DatasetRow, JobRow, JobView, LoopRow, LoopView, LoopsOverview,
    ModelRow, ModelsView, PromotionRow, StepPoint,
};

/// The result of a form submission that the form itself renders.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Outcome {
    /// Saved; the server has also asked the browser to go to `path`.
    Saved { path: String },
    /// The input broke a rule; messages by field.
    Invalid(FieldErrors),
    /// Someone else changed the entity since the form was loaded.
    Conflict(String),
}

#[cfg(feature = "ssr")]
mod server {
    use leptos::prelude::*;
    use slope_domain::{Actor, FieldErrors};
    use slope_service::{Planning, ServiceError, Services};

    use super::Outcome;

    fn context() -> Result<Services, ServerFnError> {
        use_context::<Services>().ok_or_else(|| ServerFnError::new("server context is missing"))
    }

    /// Who is asking: the actor the server's authentication layer put on the request. Without one the
    /// call is refused, whatever it would read or change.
    pub fn actor() -> Result<Actor, ServerFnError> {
        match crate::signed_in() {
            Some(actor) => Ok(actor),
            None => {
                if let Some(response) = use_context::<leptos_axum::ResponseOptions>() {
                    response.set_status(http::StatusCode::UNAUTHORIZED);
                }
                Err(ServerFnError::new("sign in first"))
            }
        }
    }

    pub fn loops() -> Result<(slope_service::Loops, Actor), ServerFnError> {
        Ok((context()?.loops, actor()?))
    }

    pub fn runner() -> Result<(slope_service::Runner, Actor), ServerFnError> {
        Ok((context()?.runner, actor()?))
    }

    pub fn ctx() -> Result<(Planning, Actor), ServerFnError> {
        Ok((context()?.planning, actor()?))
    }

    pub fn annotations() -> Result<(slope_service::Annotations, Actor), ServerFnError> {
        Ok((context()?.annotations, actor()?))
    }

    pub fn monitors() -> Result<(slope_service::Monitors, Actor), ServerFnError> {
        Ok((context()?.monitors, actor()?))
    }

    pub fn access() -> Result<(slope_service::Access, Actor), ServerFnError> {
        Ok((context()?.access, actor()?))
    }

    /// The access service without an actor, for the one page whose credential is in its link: an
    /// invitation's.
    pub fn access_by_secret() -> Result<slope_service::Access, ServerFnError> {
        Ok(context()?.access)
    }

    pub fn simulator() -> Result<(slope_service::Simulator, Actor), ServerFnError> {
        Ok((context()?.simulator, actor()?))
    }

    /// Maps a failed read: unknown ids become a 404 page, internal errors are logged by the service and
    /// shown without detail.
    pub fn read<T>(result: Result<T, ServiceError>) -> Result<T, ServerFnError> {
        result.map_err(|e| {
            if matches!(e, ServiceError::NotFound(_) | ServiceError::Invalid(_)) {
                crate::set_not_found();
            }
            if let (ServiceError::Forbidden(_), Some(response)) = (&e, use_context::<leptos_axum::ResponseOptions>()) {
                response.set_status(http::StatusCode::FORBIDDEN);
            }
            ServerFnError::new(e.to_string())
        })
    }

    /// Maps a write: success redirects to `path_of(value)`, rule violations go back to the form.
    pub fn write<T>(
        result: Result<T, ServiceError>,
        path_of: impl FnOnce(&T) -> String,
    ) -> Result<Outcome, ServerFnError> {
        match result {
            Ok(value) => {
                let path = path_of(&value);
                leptos_axum::redirect(&path);
                Ok(Outcome::Saved { path })
            }
            Err(ServiceError::Invalid(errors)) => Ok(Outcome::Invalid(errors)),
            Err(ServiceError::Conflict(message)) => {
                Ok(Outcome::Conflict(format!("{message}. Reload the page to see the latest version.")))
            }
            // The form shows the refusal where it shows other form-wide messages; the rule is in the text.
            Err(ServiceError::Forbidden(message)) => Ok(Outcome::Invalid(FieldErrors::single("form", message))),
            Err(other) => Err(ServerFnError::new(other.to_string())),
        }
    }
}

/// Parses an id carried in a hidden field or a URL.
pub fn parse_id(field: &str, raw: &str) -> Result<i64, FieldErrors> {
    raw.trim().parse::<i64>().map_err(|_| FieldErrors::single(field, "is not a valid id"))
}

/// A whole number typed into a form as the `u32` an input holds. A value outside `u32` is clamped rather
/// than refused here, so that the domain's range rule, which it breaks, gives the message.
fn clamp_u32(n: i64) -> u32 {
    n.clamp(0, i64::from(u32::MAX)) as u32
}

fn optional_id(field: &str, raw: &str) -> Result<Option<i64>, FieldErrors> {
    if raw.trim().is_empty() { Ok(None) } else { parse_id(field, raw).map(Some) }
}
