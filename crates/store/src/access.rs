//! Accounts, memberships, units, sessions, API tokens, login attempts and the audit trail.
//!
//! Secrets never reach this module in the clear except a password hash (argon2id, made by the service)
//! and SHA-256 digests of session ids and tokens, which are random 256-bit values.

use chrono::{DateTime, Utc};
use sqlx::types::Json;

use slope_domain::*;

use crate::plan::{audit, ensure_unit};
use crate::{Result, Store, StoreError, in_tx, on_db};

/// An account with its password hash, for signing in.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct UserRecord {
    pub id: i64,
    pub email: String,
    pub name: String,
    pub password_hash: String,
}

/// The rules [`Store::admit_login_attempt`] applies, decided by the service.
#[derive(Debug, Clone, Copy)]
pub struct LoginLimits {
    /// Failures counted from this instant on.
    pub failures_since: DateTime<Utc>,
    /// A success from the same address since this instant makes it the account's known address.
    pub known_since: DateTime<Utc>,
    /// Failures of one account (this attempt included) beyond which it is refused from unknown addresses.
    pub per_account: i64,
    /// Failures from one address (this attempt included) beyond which it is refused for every account.
    pub per_address: i64,
}

/// What a valid session or token stands for.
#[derive(Debug, Clone)]
pub struct SessionRecord {
    pub user_id: i64,
    pub email: String,
    pub org_id: i64,
    pub role: String,
    pub squads: Vec<i64>,
}

#[derive(sqlx::FromRow)]
pub(crate) struct MemberRow {
    user_id: i64,
    email: String,
    name: String,
    role: String,
    squads: Json<Vec<i64>>,
    version: i64,
}

impl TryFrom<MemberRow> for Member {
    type Error = StoreError;
    fn try_from(r: MemberRow) -> Result<Member> {
        Ok(Member {
            user_id: UserId(r.user_id),
            email: r.email,
            name: r.name,
            role: r.role.parse().map_err(StoreError::corrupt)?,
            squads: r.squads.0.into_iter().map(SquadId).collect(),
            version: Version(r.version),
        })
    }
}

#[derive(sqlx::FromRow)]
struct TokenRow {
    id: i64,
    org_id: i64,
    name: String,
    prefix: String,
    scopes: String,
    created_by: String,
    created_at: DateTime<Utc>,
    last_used_at: Option<DateTime<Utc>>,
    revoked_at: Option<DateTime<Utc>>,
}

impl TryFrom<TokenRow> for ApiToken {
    type Error = StoreError;
    fn try_from(r: TokenRow) -> Result<ApiToken> {
        Ok(ApiToken {
            id: r.id,
            name: r.name,
            prefix: r.prefix,
            scopes: Scope::parse_list(&r.scopes).map_err(StoreError::corrupt)?,
            created_by: r.created_by,
            created_at: r.created_at,
            last_used_at: r.last_used_at,
            revoked_at: r.revoked_at,
        })
    }
}

#[derive(sqlx::FromRow)]
struct AuditRow {
    id: i64,
    actor: String,
    at: DateTime<Utc>,
    entity: String,
    entity_id: i64,
    action: String,
    before: Option<Json<serde_json::Value>>,
    after: Option<Json<serde_json::Value>>,
}

/// A session joined with its account and membership: user id, e-mail, organisation, role, squads.
type SessionRow = (i64, String, i64, String, Json<Vec<i64>>);

pub(crate) const MEMBER_COLUMNS: &str = "SELECT m.user_id, u.email, u.name, m.role, m.squads, m.version FROM memberships m JOIN users u ON u.id = m.user_id";

impl Store {
    // ---- organisations -------------------------------------------------------------------------

    /// Every organisation of the installation (the upkeep and start-up work through them all).
    pub async fn list_orgs(&self) -> Result<Vec<OrgId>> {
        let ids: Vec<i64> =
            on_db!(self, db => sqlx::query_scalar("SELECT id FROM orgs ORDER BY id").fetch_all(db).await?);
        Ok(ids.into_iter().map(OrgId).collect())
    }

    /// The organisation with `slug`, if there is one.
    pub async fn find_org(&self, slug: &str) -> Result<Option<(OrgId, String)>> {
        let row: Option<(i64, String)> = on_db!(self, db => sqlx::query_as("SELECT id, name FROM orgs WHERE slug = $1")
            .bind(slug).fetch_optional(db).await?);
        Ok(row.map(|(id, name)| (OrgId(id), name)))
    }

    /// The organisations an account belongs to, with its role in each, by slug.
    pub async fn memberships_of(&self, user: UserId) -> Result<Vec<(OrgId, String, String)>> {
        let rows: Vec<(i64, String, String)> = on_db!(self, db => sqlx::query_as(
            "SELECT o.id, o.slug, m.role FROM memberships m JOIN orgs o ON o.id = m.org_id WHERE m.user_id = $1 ORDER BY o.id")
            .bind(user.0).fetch_all(db).await?);
        Ok(rows.into_iter().map(|(id, slug, role)| (OrgId(id), slug, role)).collect())
    }

    // ---- accounts and members ------------------------------------------------------------------

    pub async fn user_by_email(&self, email: &str) -> Result<Option<UserRecord>> {
        Ok(on_db!(self, db => sqlx::query_as("SELECT id, email, name, password_hash FROM users WHERE email = $1")
            .bind(email).fetch_optional(db).await?))
    }

    pub async fn list_members(&self, org: OrgId) -> Result<Vec<Member>> {
        let sql = format!("{MEMBER_COLUMNS} WHERE m.org_id = $1 ORDER BY u.email");
        let rows: Vec<MemberRow> = on_db!(self, db => sqlx::query_as(&sql).bind(org.0).fetch_all(db).await?);
        rows.into_iter().map(Member::try_from).collect()
    }

    /// Adds a member, or changes an existing member's role and squads. A new account is created with
    /// `password_hash` (required then); an existing account keeps its password and name.
    pub async fn upsert_member(&self, actor: &Actor, spec: &MemberSpec, password_hash: Option<&str>) -> Result<Member> {
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
            let user: Option<i64> = sqlx::query_scalar("SELECT id FROM users WHERE email = $1")
                .bind(spec.email.as_str()).fetch_optional(&mut *tx).await?;
            let user = match user {
                Some(id) => id,
                None => {
                    let Some(hash) = password_hash else {
                        return Err(StoreError::Rejected(FieldErrors::single("password", "is required for a new account")));
                    };
                    sqlx::query_scalar("INSERT INTO users (email, name, password_hash, created_at) VALUES ($1, $2, $3, $4) RETURNING id")
                        .bind(spec.email.as_str()).bind(&spec.name).bind(hash).bind(now).fetch_one(&mut *tx).await?
                }
            };
            let sql = format!("{MEMBER_COLUMNS} WHERE m.org_id = $1 AND m.user_id = $2");
            let before: Option<MemberRow> = sqlx::query_as(&sql).bind(org.0).bind(user).fetch_optional(&mut *tx).await?;
            let before = before.map(Member::try_from).transpose()?;
            sqlx::query(
                "INSERT INTO memberships (org_id, user_id, role, squads, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $5)
                 ON CONFLICT (org_id, user_id) DO UPDATE SET role = excluded.role, squads = excluded.squads,
                 version = memberships.version + 1, updated_at = excluded.updated_at",
            )
            .bind(org.0).bind(user).bind(spec.role.as_str()).bind(Json(&squads)).bind(now)
            .execute(&mut *tx).await?;
            let after: MemberRow = sqlx::query_as(&sql).bind(org.0).bind(user).fetch_one(&mut *tx).await?;
            let after = Member::try_from(after)?;
            audit!(tx, actor, "membership", user, now, before.as_ref().map(to_json).transpose()?, Some(to_json(&after)?));
            Ok(after)
        })
    }

    /// Ends a membership (the account stays, for its other organisations) and its sessions there.
    pub async fn remove_member(&self, actor: &Actor, user: UserId) -> Result<()> {
        let now = Utc::now();
        let org = actor.org;
        in_tx!(self, tx => {
            let sql = format!("{MEMBER_COLUMNS} WHERE m.org_id = $1 AND m.user_id = $2");
            let before: Option<MemberRow> = sqlx::query_as(&sql).bind(org.0).bind(user.0).fetch_optional(&mut *tx).await?;
            let Some(before) = before else {
                return Err(StoreError::NotFound { entity: "member", id: user.0 });
            };
            let before = Member::try_from(before)?;
            sqlx::query("DELETE FROM memberships WHERE org_id = $1 AND user_id = $2").bind(org.0).bind(user.0).execute(&mut *tx).await?;
            sqlx::query("DELETE FROM sessions WHERE org_id = $1 AND user_id = $2").bind(org.0).bind(user.0).execute(&mut *tx).await?;
            audit!(tx, actor, "membership", user.0, now, Some(to_json(&before)?), None);
            Ok(())
        })
    }

    // ---- sessions ------------------------------------------------------------------------------

    pub async fn create_session(
        &self,
        id_hash: &str,
        user: UserId,
        org: OrgId,
        expires_at: DateTime<Utc>,
    ) -> Result<()> {
        let now = Utc::now();
        let _ = on_db!(self, db => sqlx::query("INSERT INTO sessions (id_hash, user_id, org_id, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)")
            .bind(id_hash).bind(user.0).bind(org.0).bind(now).bind(expires_at).execute(db).await?.rows_affected());
        Ok(())
    }

    /// The member a live session belongs to; `None` for an unknown or expired session, or one whose
    /// membership has ended.
    pub async fn session(&self, id_hash: &str, now: DateTime<Utc>) -> Result<Option<SessionRecord>> {
        let row: Option<SessionRow> = on_db!(self, db => sqlx::query_as(
            "SELECT s.user_id, u.email, s.org_id, m.role, m.squads FROM sessions s
             JOIN users u ON u.id = s.user_id JOIN memberships m ON m.org_id = s.org_id AND m.user_id = s.user_id
             WHERE s.id_hash = $1 AND s.expires_at > $2")
            .bind(id_hash).bind(now).fetch_optional(db).await?);
        Ok(row.map(|(user_id, email, org_id, role, squads)| SessionRecord {
            user_id,
            email,
            org_id,
            role,
            squads: squads.0,
        }))
    }

    pub async fn delete_session(&self, id_hash: &str) -> Result<()> {
        let _ = on_db!(self, db => sqlx::query("DELETE FROM sessions WHERE id_hash = $1").bind(id_hash).execute(db).await?.rows_affected());
        Ok(())
    }

    /// Removes expired sessions, failed login attempts older than `failures_before` and successful ones
    /// older than `successes_before` (those are kept longer: they are the addresses an account is known
    /// to sign in from); returns how many rows went.
    pub async fn purge_sessions(
        &self,
        now: DateTime<Utc>,
        failures_before: DateTime<Utc>,
        successes_before: DateTime<Utc>,
    ) -> Result<u64> {
        let (a, b) = on_db!(self, db => {
            let a = sqlx::query("DELETE FROM sessions WHERE expires_at <= $1").bind(now).execute(db).await?.rows_affected();
            let b = sqlx::query("DELETE FROM login_attempts WHERE at < $1 AND (NOT succeeded OR at < $2)")
                .bind(failures_before).bind(successes_before).execute(db).await?.rows_affected();
            (a, b)
        });
        Ok(a + b)
    }

    // ---- login attempts ------------------------------------------------------------------------

    /// Records a sign-in attempt as failed until [`Store::login_succeeded`] says otherwise, and returns
    /// its id. Recording before the password is checked is what makes the limit hold for attempts that
    /// arrive together: each one is counted before any of them is let through.
    pub async fn record_login_attempt(&self, email: &str, address: &str) -> Result<i64> {
        Ok(
            on_db!(self, db => sqlx::query_scalar("INSERT INTO login_attempts (email, address, at, succeeded) VALUES ($1, $2, $3, $4) RETURNING id")
            .bind(email).bind(address).bind(Utc::now()).bind(false).fetch_one(db).await?),
        )
    }

    pub async fn login_succeeded(&self, attempt: i64) -> Result<()> {
        let _ = on_db!(self, db => sqlx::query("UPDATE login_attempts SET succeeded = $2 WHERE id = $1")
            .bind(attempt).bind(true).execute(db).await?.rows_affected());
        Ok(())
    }

    /// Records a sign-in attempt (as failed until [`Store::login_succeeded`] says otherwise) unless
    /// `limits` refuse it, and returns its id; `None`, with nothing recorded, when refused.
    ///
    /// The decision and the record are one step for all servers: on SQLite the insert comes first and
    /// holds the write lock through the counts, on PostgreSQL a transaction-scoped advisory lock does.
    /// So attempts that arrive together are admitted one after another, each seeing every attempt
    /// admitted before it, and exactly as many are checked as the limits allow. A refused attempt leaves
    /// no row, so refusals never extend a refusal.
    pub async fn admit_login_attempt(&self, email: &str, address: &str, limits: LoginLimits) -> Result<Option<i64>> {
        macro_rules! admit {
            ($tx:ident) => {{
                let id: i64 = sqlx::query_scalar(
                    "INSERT INTO login_attempts (email, address, at, succeeded) VALUES ($1, $2, $3, $4) RETURNING id",
                )
                .bind(email).bind(address).bind(Utc::now()).bind(false)
                .fetch_one(&mut *$tx).await?;
                let known: bool = sqlx::query_scalar(
                    "SELECT EXISTS (SELECT 1 FROM login_attempts WHERE email = $1 AND address = $2 AND at > $3 AND succeeded)",
                )
                .bind(email).bind(address).bind(limits.known_since)
                .fetch_one(&mut *$tx).await?;
                let by_email: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM login_attempts WHERE email = $1 AND at > $2 AND NOT succeeded")
                    .bind(email).bind(limits.failures_since).fetch_one(&mut *$tx).await?;
                let by_address: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM login_attempts WHERE address = $1 AND at > $2 AND NOT succeeded")
                    .bind(address).bind(limits.failures_since).fetch_one(&mut *$tx).await?;
                if (by_email > limits.per_account && !known) || by_address > limits.per_address {
                    // Dropping the transaction rolls the insert back.
                    return Ok(None);
                }
                $tx.commit().await?;
                Ok(Some(id))
            }};
        }
        match &self.db {
            crate::Db::Sqlite(pool) => {
                let mut tx = pool.begin().await?;
                admit!(tx)
            }
            crate::Db::Postgres(pool) => {
                let mut tx = pool.begin().await?;
                // One key for every sign-in decision: each holds it for three short statements.
                sqlx::query("SELECT pg_advisory_xact_lock(7361421)").execute(&mut *tx).await?;
                admit!(tx)
            }
        }
    }

    /// Failed sign-ins since `since` for the account and for the address.
    pub async fn failed_logins(&self, email: &str, address: &str, since: DateTime<Utc>) -> Result<(i64, i64)> {
        Ok(on_db!(self, db => {
            let by_email: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM login_attempts WHERE email = $1 AND at > $2 AND NOT succeeded")
                .bind(email).bind(since).fetch_one(db).await?;
            let by_address: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM login_attempts WHERE address = $1 AND at > $2 AND NOT succeeded")
                .bind(address).bind(since).fetch_one(db).await?;
            (by_email, by_address)
        }))
    }

    // ---- API tokens ----------------------------------------------------------------------------

    pub async fn create_token(
        &self,
        actor: &Actor,
        name: &str,
        scopes: &[Scope],
        prefix: &str,
        token_hash: &str,
    ) -> Result<ApiToken> {
        let now = Utc::now();
        in_tx!(self, tx => {
            let row: TokenRow = sqlx::query_as(
                "INSERT INTO api_tokens (org_id, name, prefix, token_hash, scopes, created_by, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING *",
            )
            .bind(actor.org.0).bind(name).bind(prefix).bind(token_hash).bind(Scope::join(scopes)).bind(actor.label()).bind(now)
            .fetch_one(&mut *tx).await?;
            let token = ApiToken::try_from(row)?;
            audit!(tx, actor, "api_token", token.id, now, None, Some(to_json(&token)?));
            Ok(token)
        })
    }

    pub async fn list_tokens(&self, org: OrgId) -> Result<Vec<ApiToken>> {
        let rows: Vec<TokenRow> = on_db!(self, db => sqlx::query_as("SELECT * FROM api_tokens WHERE org_id = $1 ORDER BY id")
            .bind(org.0).fetch_all(db).await?);
        rows.into_iter().map(ApiToken::try_from).collect()
    }

    pub async fn revoke_token(&self, actor: &Actor, id: i64) -> Result<ApiToken> {
        let now = Utc::now();
        in_tx!(self, tx => {
            let before: Option<TokenRow> = sqlx::query_as("SELECT * FROM api_tokens WHERE org_id = $1 AND id = $2")
                .bind(actor.org.0).bind(id).fetch_optional(&mut *tx).await?;
            let Some(before) = before else { return Err(StoreError::NotFound { entity: "token", id }) };
            let before = ApiToken::try_from(before)?;
            let after: TokenRow = sqlx::query_as(
                "UPDATE api_tokens SET revoked_at = COALESCE(revoked_at, $3) WHERE org_id = $1 AND id = $2 RETURNING *")
                .bind(actor.org.0).bind(id).bind(now).fetch_one(&mut *tx).await?;
            let after = ApiToken::try_from(after)?;
            audit!(tx, actor, "api_token", id, now, Some(to_json(&before)?), Some(to_json(&after)?));
            Ok(after)
        })
    }

    /// The live token with `token_hash`, recording its use. The last-used time is written at most once
    /// a minute per token, so a busy ingestion script does not turn every request into a write.
    pub async fn use_token(&self, token_hash: &str, now: DateTime<Utc>) -> Result<Option<(OrgId, ApiToken)>> {
        let row: Option<TokenRow> = on_db!(self, db => sqlx::query_as("SELECT * FROM api_tokens WHERE token_hash = $1 AND revoked_at IS NULL")
            .bind(token_hash).fetch_optional(db).await?);
        let Some(row) = row else { return Ok(None) };
        let org = OrgId(row.org_id);
        if row.last_used_at.is_none_or(|at| now - at > chrono::Duration::seconds(60)) {
            let _ = on_db!(self, db => sqlx::query("UPDATE api_tokens SET last_used_at = $2 WHERE id = $1").bind(row.id).bind(now).execute(db).await?.rows_affected());
        }
        Ok(Some((org, ApiToken::try_from(row)?)))
    }

    // ---- units ---------------------------------------------------------------------------------

    pub async fn list_units(&self, org: OrgId) -> Result<Vec<Unit>> {
        let rows: Vec<UnitRow> = on_db!(self, db => sqlx::query_as(
            "SELECT u.id, u.name, p.name, u.headcount, u.version FROM units u LEFT JOIN units p ON p.id = u.parent_id WHERE u.org_id = $1 ORDER BY u.name")
            .bind(org.0).fetch_all(db).await?);
        Ok(rows
            .into_iter()
            .map(|(id, name, parent, headcount, version)| Unit {
                id,
                name,
                parent,
                headcount: headcount_of(headcount),
                version: Version(version),
            })
            .collect())
    }

    /// Creates a unit or changes an existing one: moves it under `parent` (`None`: top level), refusing
    /// cycles, and sets its headcount (`None`: not known). A call that changes nothing writes nothing,
    /// so the unit's version and the audit trail move only with a real change.
    pub async fn put_unit(
        &self,
        actor: &Actor,
        name: &str,
        parent: Option<&str>,
        headcount: Option<u32>,
    ) -> Result<Unit> {
        let now = Utc::now();
        let org = actor.org;
        in_tx!(self, tx => {
            ensure_unit!(tx, actor, name, now);
            let units: Vec<UnitRecord> = sqlx::query_as("SELECT id, name, parent_id, headcount, version FROM units WHERE org_id = $1")
                .bind(org.0).fetch_all(&mut *tx).await?;
            let find = |n: &str| units.iter().find(|u| u.1 == n);
            let (id, _, old_parent, old_headcount, version) = find(name).cloned().ok_or(StoreError::NotFound { entity: "unit", id: 0 })?;
            let old_headcount = headcount_of(old_headcount);
            let parent_id = match parent {
                None => None,
                Some(p) => Some(find(p).ok_or_else(|| StoreError::Rejected(FieldErrors::single("parent", format!("no unit is named {p:?}"))))?.0),
            };
            // Walking up from the new parent must not reach the unit itself.
            let mut cursor = parent_id;
            while let Some(c) = cursor {
                if c == id {
                    return Err(StoreError::Rejected(FieldErrors::single("parent", "a unit cannot be placed under itself or its own sub-units")));
                }
                cursor = units.iter().find(|u| u.0 == c).and_then(|u| u.2);
            }
            let parent_name = |pid: Option<i64>| pid.and_then(|p| units.iter().find(|u| u.0 == p)).map(|u| u.1.clone());
            let before = Unit { id, name: name.to_owned(), parent: parent_name(old_parent), headcount: old_headcount, version: Version(version) };
            if old_parent == parent_id && old_headcount == headcount {
                return Ok(before);
            }
            sqlx::query("UPDATE units SET parent_id = $3, headcount = $4, version = version + 1 WHERE org_id = $1 AND id = $2")
                .bind(org.0).bind(id).bind(parent_id).bind(headcount.map(i64::from)).execute(&mut *tx).await?;
            let after = Unit { parent: parent_name(parent_id), headcount, version: Version(version + 1), ..before.clone() };
            audit!(tx, actor, "unit", id, now, Some(to_json(&before)?), Some(to_json(&after)?));
            Ok(after)
        })
    }

    // ---- audit ---------------------------------------------------------------------------------

    /// The organisation's audit trail, newest first, optionally for one entity, before `before_id`
    /// (for paging), at most `limit` records.
    pub async fn audit_log(
        &self,
        org: OrgId,
        entity: Option<(&str, i64)>,
        before_id: Option<i64>,
        limit: i64,
    ) -> Result<Vec<AuditRecord>> {
        let (kind, id) = entity.map_or((None, None), |(k, i)| (Some(k), Some(i)));
        let rows: Vec<AuditRow> = on_db!(self, db => sqlx::query_as(
            "SELECT id, actor, at, entity, entity_id, action, before, after FROM audit_log
             WHERE org_id = $1 AND ($2 IS NULL OR entity = $2) AND ($3 IS NULL OR entity_id = $3) AND ($4 IS NULL OR id < $4)
             ORDER BY id DESC LIMIT $5")
            .bind(org.0).bind(kind).bind(id).bind(before_id).bind(limit).fetch_all(db).await?);
        Ok(rows
            .into_iter()
            .map(|r| AuditRecord {
                id: r.id,
                actor: r.actor,
                at: r.at,
                entity: r.entity,
                entity_id: r.entity_id,
                action: r.action,
                before: r.before.map(|j| j.0),
                after: r.after.map(|j| j.0),
            })
            .collect())
    }
}

pub(crate) fn to_json<T: serde::Serialize>(value: &T) -> Result<serde_json::Value> {
    serde_json::to_value(value).map_err(StoreError::corrupt)
}

/// A unit as listed: id, name, the parent's name, headcount and version.
type UnitRow = (i64, String, Option<String>, Option<i64>, i64);
/// A unit as `put_unit` reads it to check a move: id, name, the parent's id, headcount and version.
type UnitRecord = (i64, String, Option<i64>, Option<i64>, i64);

/// A stored headcount as the domain has it. The column's CHECK keeps it positive; a value outside `u32`
/// could only come from a hand edit of the database, and is read as not known rather than wrapped.
fn headcount_of(stored: Option<i64>) -> Option<u32> {
    stored.and_then(|h| u32::try_from(h).ok()).filter(|&h| h > 0)
}
