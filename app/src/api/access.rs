//! Server functions of access: the organisation's members and tokens, and the audit trail.

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
