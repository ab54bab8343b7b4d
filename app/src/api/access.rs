//! Server functions of access: the organisation's members, tokens and units, and the audit trail.

use leptos::prelude::*;
use slope_domain::*;

#[cfg(feature = "ssr")]
use super::server;

#[server]
pub async fn load_audit(entity: Option<String>, id: Option<i64>) -> Result<AuditView, ServerFnError> {
    let (access, actor) = server::access()?;
    server::read(access.audit_view(&actor, entity.as_deref(), id).await)
}

#[server]
pub async fn load_members() -> Result<(Vec<Member>, Vec<Invitation>, Vec<ApiToken>), ServerFnError> {
    let (access, actor) = server::access()?;
    server::read(access.members_view(&actor).await)
}

/// The invitation a link names, for its holder (who may have no account yet).
#[server]
pub async fn load_invitation(secret: String) -> Result<InvitationView, ServerFnError> {
    let access = server::access_by_secret()?;
    server::read(access.invitation(&secret).await)
}

/// The organisation's units, for the units page.
#[server]
pub async fn load_units() -> Result<Vec<Unit>, ServerFnError> {
    let (access, actor) = server::access()?;
    server::read(access.units(&actor).await)
}

/// Adds a unit or changes one's parent and headcount (admins only; the service checks).
#[server]
pub async fn save_unit(name: String, parent: String, headcount: String) -> Result<super::Outcome, ServerFnError> {
    let (access, actor) = server::access()?;
    let input = match unit_form(&SaveUnit { name, parent, headcount }) {
        Ok(input) => input,
        Err(errors) => return Ok(super::Outcome::Invalid(errors)),
    };
    // The query makes the address differ from the units page's own, so the browser loads the list again
    // rather than only scrolling to the row.
    server::write(access.put_unit(&actor, &input).await, |u| format!("/units?saved={}#unit-{}", u.id, u.id))
}

/// Reads the unit form into the API's input and runs the domain's checks on it, in the browser before
/// submitting and on the server after. An empty headcount means not known.
pub fn unit_form(f: &SaveUnit) -> Result<UnitInput, FieldErrors> {
    let mut c = Checker::new();
    let headcount = c.optional_whole("headcount", &f.headcount).flatten().map(super::clamp_u32);
    let input = UnitInput { name: f.name.clone(), parent: f.parent.clone(), headcount };
    // Every problem at once: the domain's rules run even when the headcount did not parse.
    let mut errors = c.errors;
    if let Err(found) = input.parse() {
        errors.merge(found);
    }
    if errors.is_empty() { Ok(input) } else { Err(errors) }
}
