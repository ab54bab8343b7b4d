//! Invitations to join an organisation: made by its admins without looking at any account, accepted by
//! the holder of the secret, which is the only moment an account becomes a member of another tenant.

use chrono::{DateTime, Utc};
use sqlx::types::Json;

use slope_domain::*;

use crate::access::{MEMBER_COLUMNS, MemberRow, to_json};
use crate::plan::audit;
use crate::{Result, Store, StoreError, in_tx, on_db};

#[derive(sqlx::FromRow)]
struct InvitationRow {
    id: i64,
    org_id: i64,
    email: String,
    role: String,
    squads: Json<Vec<i64>>,
    invited_by: String,
    created_at: DateTime<Utc>,
    expires_at: DateTime<Utc>,
    accepted_at: Option<DateTime<Utc>>,
    revoked_at: Option<DateTime<Utc>>,
}

impl TryFrom<InvitationRow> for Invitation {
    type Error = StoreError;
    fn try_from(r: InvitationRow) -> Result<Invitation> {
        Ok(Invitation {
            id: r.id,
            email: r.email,
            role: r.role.parse().map_err(StoreError::corrupt)?,
            squads: r.squads.0.into_iter().map(SquadId).collect(),
            invited_by: r.invited_by,
            created_at: r.created_at,
            expires_at: r.expires_at,
            accepted_at: r.accepted_at,
            revoked_at: r.revoked_at,
        })
    }
}

/// An invitation found by its secret, with the organisation it is to.
#[derive(Debug, Clone, PartialEq)]
pub struct InvitationFor {
    pub invitation: Invitation,
    pub org: OrgId,
    pub org_slug: String,
    pub org_name: String,
}

/// The new account an acceptance creates when the invited address has none: its name and password hash.
#[derive(Debug, Clone, Copy)]
pub struct NewAccount<'a> {
    pub name: &'a str,
    pub password_hash: &'a str,
}

/// Whom the audit trail names for a membership made by accepting: the admin who invited, since the
/// role is theirs to give (the acceptance itself is the invitation's own record).
struct Inviter {
    org: OrgId,
    label: String,
}

impl Inviter {
    fn label(&self) -> String {
        self.label.clone()
    }
}

impl Store {
    /// Invites `spec.email` with its role and squads, closing the address's earlier open invitations to
    /// the organisation (the newest one is the one that counts). No account is read, so the answer says
    /// nothing about whether the address has one.
    pub async fn create_invitation(
        &self,
        actor: &Actor,
        spec: &MemberSpec,
        token_hash: &str,
        expires_at: DateTime<Utc>,
    ) -> Result<Invitation> {
        let now = Utc::now();
        let org = actor.org;
        let squads: Vec<i64> = spec.squads.iter().map(|s| s.0).collect();
        in_tx!(self, tx => {
            for squad in &squads {
                let known: Option<i64> = sqlx::query_scalar("SELECT id FROM squads WHERE org_id = $1 AND id = $2")
                    .bind(org.0).bind(squad).fetch_optional(&mut *tx).await?;
                if known.is_none() {
                    return Err(StoreError::Rejected(FieldErrors::single("squads", format!("squad {squad} does not exist"))));
                }
            }
            sqlx::query(
                "UPDATE invitations SET revoked_at = $3 WHERE org_id = $1 AND email = $2 AND accepted_at IS NULL AND revoked_at IS NULL")
                .bind(org.0).bind(spec.email.as_str()).bind(now).execute(&mut *tx).await?;
            let row: InvitationRow = sqlx::query_as(
                "INSERT INTO invitations (org_id, email, role, squads, token_hash, invited_by, created_at, expires_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING *")
                .bind(org.0).bind(spec.email.as_str()).bind(spec.role.as_str()).bind(Json(&squads)).bind(token_hash)
                .bind(actor.label()).bind(now).bind(expires_at)
                .fetch_one(&mut *tx).await?;
            let invitation = Invitation::try_from(row)?;
            audit!(tx, actor, "invitation", invitation.id, now, None, Some(to_json(&invitation)?));
            Ok(invitation)
        })
    }

    /// The organisation's invitations, newest first.
    pub async fn list_invitations(&self, org: OrgId) -> Result<Vec<Invitation>> {
        let rows: Vec<InvitationRow> = on_db!(self, db => sqlx::query_as(
            "SELECT * FROM invitations WHERE org_id = $1 ORDER BY id DESC")
            .bind(org.0).fetch_all(db).await?);
        rows.into_iter().map(Invitation::try_from).collect()
    }

    /// Closes an open invitation of the organisation; one already accepted or revoked is refused.
    pub async fn revoke_invitation(&self, actor: &Actor, id: i64) -> Result<Invitation> {
        let now = Utc::now();
        in_tx!(self, tx => {
            let before: Option<InvitationRow> = sqlx::query_as("SELECT * FROM invitations WHERE org_id = $1 AND id = $2")
                .bind(actor.org.0).bind(id).fetch_optional(&mut *tx).await?;
            let before = Invitation::try_from(before.ok_or(StoreError::NotFound { entity: "invitation", id })?)?;
            if before.accepted_at.is_some() || before.revoked_at.is_some() {
                return Err(StoreError::Rejected(FieldErrors::single(
                    "invitation",
                    "is already closed (accepted or revoked); remove the member instead if they joined",
                )));
            }
            let row: InvitationRow = sqlx::query_as(
                "UPDATE invitations SET revoked_at = $3 WHERE org_id = $1 AND id = $2 RETURNING *")
                .bind(actor.org.0).bind(id).bind(now).fetch_one(&mut *tx).await?;
            let after = Invitation::try_from(row)?;
            audit!(tx, actor, "invitation", id, now, Some(to_json(&before)?), Some(to_json(&after)?));
            Ok(after)
        })
    }

    /// The invitation whose secret hashes to `token_hash`, in whichever organisation: the secret is the
    /// credential, as a session id is.
    pub async fn invitation_by_token(&self, token_hash: &str) -> Result<Option<InvitationFor>> {
        let row: Option<InvitationRow> = on_db!(self, db => sqlx::query_as(
            "SELECT * FROM invitations WHERE token_hash = $1")
            .bind(token_hash).fetch_optional(db).await?);
        let Some(row) = row else { return Ok(None) };
        let org = OrgId(row.org_id);
        let (slug, name): (String, String) = on_db!(self, db => sqlx::query_as("SELECT slug, name FROM orgs WHERE id = $1")
            .bind(org.0).fetch_one(db).await?);
        Ok(Some(InvitationFor { invitation: row.try_into()?, org, org_slug: slug, org_name: name }))
    }

    /// Accepts the open invitation whose secret hashes to `token_hash`, once: the invited address's
    /// account (created from `new_account` when it has none; the caller has checked the password of
    /// one that exists) becomes a member with the invited role and squads, or takes them if it already
    /// was one. Squads deleted since the invitation are left out.
    pub async fn accept_invitation(
        &self,
        token_hash: &str,
        new_account: Option<NewAccount<'_>>,
    ) -> Result<(OrgId, Member)> {
        let now = Utc::now();
        in_tx!(self, tx => {
            let row: Option<InvitationRow> = sqlx::query_as(
                "UPDATE invitations SET accepted_at = $2
                 WHERE token_hash = $1 AND accepted_at IS NULL AND revoked_at IS NULL AND expires_at > $2 RETURNING *")
                .bind(token_hash).bind(now).fetch_optional(&mut *tx).await?;
            let Some(row) = row else {
                return Err(StoreError::Rejected(FieldErrors::single(
                    "token", "is not an open invitation: it was accepted, revoked or has expired; ask for a new one")));
            };
            let (org, inviter) = (OrgId(row.org_id), row.invited_by.clone());
            let invitation = Invitation::try_from(row)?;
            let user: Option<i64> = sqlx::query_scalar("SELECT id FROM users WHERE email = $1")
                .bind(&invitation.email).fetch_optional(&mut *tx).await?;
            let user = match (user, new_account) {
                (Some(id), None) => id,
                (None, Some(account)) => sqlx::query_scalar(
                    "INSERT INTO users (email, name, password_hash, created_at) VALUES ($1, $2, $3, $4) RETURNING id")
                    .bind(&invitation.email).bind(account.name).bind(account.password_hash).bind(now)
                    .fetch_one(&mut *tx).await?,
                // The account appeared or vanished between the caller's look and this transaction.
                (Some(_), Some(_)) | (None, None) => {
                    return Err(StoreError::Rejected(FieldErrors::single(
                        "password", "the invited address's account changed meanwhile; send the form again")));
                }
            };
            let mut squads = vec![];
            for squad in invitation.squads.iter().map(|s| s.0) {
                let known: Option<i64> = sqlx::query_scalar("SELECT id FROM squads WHERE org_id = $1 AND id = $2")
                    .bind(org.0).bind(squad).fetch_optional(&mut *tx).await?;
                squads.extend(known);
            }
            let sql = format!("{MEMBER_COLUMNS} WHERE m.org_id = $1 AND m.user_id = $2");
            let before: Option<MemberRow> = sqlx::query_as(&sql).bind(org.0).bind(user).fetch_optional(&mut *tx).await?;
            let before = before.map(Member::try_from).transpose()?;
            sqlx::query(
                "INSERT INTO memberships (org_id, user_id, role, squads, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $5)
                 ON CONFLICT (org_id, user_id) DO UPDATE SET role = excluded.role, squads = excluded.squads,
                 version = memberships.version + 1, updated_at = excluded.updated_at",
            )
            .bind(org.0).bind(user).bind(invitation.role.as_str()).bind(Json(&squads)).bind(now)
            .execute(&mut *tx).await?;
            let after: MemberRow = sqlx::query_as(&sql).bind(org.0).bind(user).fetch_one(&mut *tx).await?;
            let after = Member::try_from(after)?;
            let inviter = Inviter { org, label: inviter };
            audit!(tx, inviter, "membership", user, now, before.as_ref().map(to_json).transpose()?, Some(to_json(&after)?));
            Ok((org, after))
        })
    }
}

impl Store {
    /// The organisation's member with this (lower-cased) address, if it is one.
    pub async fn member_by_email(&self, org: OrgId, email: &str) -> Result<Option<Member>> {
        let sql = format!("{MEMBER_COLUMNS} WHERE m.org_id = $1 AND u.email = $2");
        let row: Option<MemberRow> =
            on_db!(self, db => sqlx::query_as(&sql).bind(org.0).bind(email).fetch_optional(db).await?);
        row.map(Member::try_from).transpose()
    }
}
