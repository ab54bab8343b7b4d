//! Access use cases: the first admin, signing in and out, sessions, API tokens, members, units and the
//! audit trail. Every other service asks the [`Actor`] this one establishes before it does anything.

use chrono::{DateTime, Duration, Utc};
use sha2::{Digest, Sha256};

use slope_domain::*;
use slope_store::{LoginLimits, NewAccount, SessionRecord, Store};

use crate::{Result, ServiceError};

/// How long a session lasts after sign-in. Fixed rather than sliding, so a stolen cookie has a bounded
/// life whatever its thief does.
pub const SESSION_DAYS: i64 = 14;
/// Failed sign-ins counted over this window decide whether more attempts are refused.
pub const ATTEMPT_WINDOW_MINUTES: i64 = 15;
/// Failed sign-ins for one account within the window before further attempts are refused.
pub const MAX_FAILURES_PER_ACCOUNT: i64 = 5;
/// Failed sign-ins from one address within the window (any accounts) before it is refused.
pub const MAX_FAILURES_PER_ADDRESS: i64 = 20;
/// An address an account signed in from within this many days is its owner's: the per-account limit
/// does not apply there, so guesses from elsewhere cannot keep the owner out.
pub const KNOWN_ADDRESS_DAYS: i64 = 30;
/// The prefix of every API token, so secret scanners and people recognise one.
pub const TOKEN_PREFIX: &str = "slope_";

/// How long an invitation can be accepted.
pub const INVITATION_DAYS: i64 = 7;
/// The prefix of every invitation secret.
pub const INVITATION_PREFIX: &str = "slope_inv_";

/// What putting a member did: saved a member's role and squads, or invited a new one.
#[derive(Debug, Clone)]
pub enum MemberChange {
    Saved(Member),
    Invited(CreatedInvitation),
}

impl MemberChange {
    /// The member saved; `None` for an invitation.
    pub fn saved(self) -> Option<Member> {
        match self {
            MemberChange::Saved(member) => Some(member),
            MemberChange::Invited(_) => None,
        }
    }
}

/// An invitation as created: its secret, and the link that carries it, are in here once.
#[derive(Debug, Clone, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CreatedInvitation {
    pub invitation: Invitation,
    pub secret: String,
    /// The path of the page where the invitee accepts, on this server.
    pub accept_path: String,
}

/// A signed-in session: the cookie value to set (shown to nobody else) and who it stands for.
#[derive(Debug, Clone)]
pub struct SignedIn {
    pub session: String,
    pub expires_at: DateTime<Utc>,
    pub actor: Actor,
}

/// A token as created: the secret is in here once and nowhere else.
#[derive(Debug, Clone, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CreatedToken {
    pub token: ApiToken,
    pub secret: String,
}

#[derive(Clone, Debug)]
pub struct Access {
    store: Store,
}

impl Access {
    pub fn new(store: Store) -> Self {
        Self { store }
    }

    /// The organisation with `slug`, for the command line and the demo, which act with direct access
    /// to the database.
    pub async fn system_actor(&self, org_slug: &str, name: &str) -> Result<Actor> {
        let (org, _) = self
            .store
            .find_org(org_slug)
            .await?
            .ok_or_else(|| ServiceError::NotFound(format!("no organisation has the slug {org_slug:?}")))?;
        Ok(Actor::system(org, name))
    }

    /// Creates the organisation if it does not exist and makes `email` its admin. This is how an
    /// installation gets its first admin (`slope admin create`), and how an operator recovers one.
    pub async fn create_admin(
        &self,
        org_slug: &str,
        org_name: &str,
        email: &str,
        name: &str,
        password: &str,
    ) -> Result<Member> {
        let org = self.store.ensure_org(org_slug, org_name).await?;
        let input = MemberInput {
            email: email.into(),
            name: name.into(),
            role: Role::Admin.as_str().into(),
            squads: vec![],
            password: Some(password.into()),
        };
        match self.put_member(&Actor::system(org, "admin-create"), &input).await? {
            MemberChange::Saved(member) => Ok(member),
            MemberChange::Invited(_) => {
                Err(ServiceError::Internal("the command line invited instead of adding".into()))
            }
        }
    }

    /// Whether an account with this e-mail address exists (in any organisation).
    pub async fn account_exists(&self, email: &str) -> Result<bool> {
        Ok(self.store.user_by_email(&email.trim().to_lowercase()).await?.is_some())
    }

    // ---- signing in ----------------------------------------------------------------------------

    /// Checks a password and opens a new session (a new id every time, so a session id planted before
    /// sign-in is worth nothing after it). `org_slug` picks the organisation when the account belongs to
    /// several; otherwise the first.
    ///
    /// Failed attempts are counted per account and per address over [`ATTEMPT_WINDOW_MINUTES`]. Past
    /// [`MAX_FAILURES_PER_ACCOUNT`], the account is refused from every address except those it signed in
    /// from lately ([`KNOWN_ADDRESS_DAYS`]), so an attacker's guesses close it to the attacker and to new
    /// machines, never to the owner's usual ones; past [`MAX_FAILURES_PER_ADDRESS`] the address is
    /// refused for every account. A refused attempt is not counted (its password is never checked), so
    /// a refusal lasts at most one window after the last checked guess, however often it is knocked on.
    pub async fn sign_in(
        &self,
        email: &str,
        password: &str,
        org_slug: Option<&str>,
        address: &str,
    ) -> Result<SignedIn> {
        let email = email.trim().to_lowercase();
        let now = Utc::now();
        let user = self.check_password(&email, password, address).await?;
        let memberships = self.store.memberships_of(UserId(user.id)).await?;
        let membership = match org_slug.map(str::trim).filter(|s| !s.is_empty()) {
            Some(slug) => memberships.iter().find(|m| m.1 == slug),
            None => memberships.first(),
        };
        let Some((org, _, _)) = membership else {
            return Err(ServiceError::Unauthorized("this account is not a member of that organisation".into()));
        };
        let session = random_secret("");
        let expires_at = now + Duration::days(SESSION_DAYS);
        self.store.create_session(&digest(&session), UserId(user.id), *org, expires_at).await?;
        let actor = self
            .session_actor(&session)
            .await?
            .ok_or_else(|| ServiceError::Internal("a session just created cannot be read back".into()))?;
        tracing::info!(user = user.id, org = %org, "signed in");
        Ok(SignedIn { session, expires_at, actor })
    }

    /// The account of `email` if `password` is its own, counting the attempt against the limits that
    /// [`Access::sign_in`] describes (accepting an invitation to an existing account counts the same).
    async fn check_password(&self, email: &str, password: &str, address: &str) -> Result<slope_store::UserRecord> {
        let now = Utc::now();
        let since = now - Duration::minutes(ATTEMPT_WINDOW_MINUTES);
        // The attempt is admitted and counted (as a failure until proven otherwise) in one step, so that
        // guesses sent at the same time are admitted one after another and cannot all slip under it.
        let limits = LoginLimits {
            failures_since: since,
            known_since: now - Duration::days(KNOWN_ADDRESS_DAYS),
            per_account: MAX_FAILURES_PER_ACCOUNT,
            per_address: MAX_FAILURES_PER_ADDRESS,
        };
        let Some(attempt) = self.store.admit_login_attempt(email, address, limits).await? else {
            tracing::warn!(email = %email, address, "sign-in refused: too many failed attempts");
            return Err(ServiceError::TooManyRequests { retry_after_secs: (ATTEMPT_WINDOW_MINUTES * 60) as u64 });
        };
        let user = self.store.user_by_email(email).await?;
        // An unknown account is checked against a fixed hash, so the answer takes as long as for a known
        // one and the timing does not tell which addresses have accounts.
        let hash = user.as_ref().map_or_else(|| DUMMY_HASH.to_owned(), |u| u.password_hash.clone());
        let ok = verify_password(password.to_owned(), hash).await? && user.is_some();
        if ok {
            self.store.login_succeeded(attempt).await?;
        }
        user.filter(|_| ok).ok_or_else(|| ServiceError::Unauthorized("wrong e-mail address or password".into()))
    }

    /// Ends a session; an unknown one is already ended.
    pub async fn sign_out(&self, session: &str) -> Result<()> {
        Ok(self.store.delete_session(&digest(session)).await?)
    }

    /// Who a session cookie stands for, if it is live.
    pub async fn session_actor(&self, session: &str) -> Result<Option<Actor>> {
        let record = self.store.session(&digest(session), Utc::now()).await?;
        record.map(actor_of_session).transpose()
    }

    /// Who a bearer token stands for, if it is live.
    pub async fn token_actor(&self, token: &str) -> Result<Option<Actor>> {
        if !token.starts_with(TOKEN_PREFIX) {
            return Ok(None);
        }
        let found = self.store.use_token(&digest(token), Utc::now()).await?;
        Ok(found.map(|(org, token)| Actor {
            org,
            principal: Principal::Token { id: token.id, name: token.name, scopes: token.scopes },
        }))
    }

    /// Removes expired sessions and old login attempts (the upkeep calls it).
    pub async fn purge(&self) -> Result<u64> {
        let now = Utc::now();
        Ok(self.store.purge_sessions(now, now - Duration::days(1), now - Duration::days(KNOWN_ADDRESS_DAYS)).await?)
    }

    // ---- members -------------------------------------------------------------------------------

    pub async fn members(&self, actor: &Actor) -> Result<Vec<Member>> {
        let org = actor.authorize(Action::Read)?;
        Ok(self.store.list_members(org).await?)
    }

    /// Changes a member's role and squads, or invites an address that is not a member yet. People and
    /// tokens invite: the account joins only when the invitation is accepted (with its own password, or
    /// a new account's), and the answer is the same whether the address has an account elsewhere, so an
    /// admin learns nothing of other tenants' accounts. The command line and the demo, which have the
    /// database itself, add directly, creating the account with `input.password` when it is new.
    pub async fn put_member(&self, actor: &Actor, input: &MemberInput) -> Result<MemberChange> {
        actor.authorize(Action::Administer)?;
        let spec = input.validate()?;
        // An admin who demoted themselves could leave the organisation without one; another admin can.
        if let Principal::User { email, .. } = &actor.principal
            && email == spec.email.as_str()
            && spec.role != Role::Admin
        {
            return Err(FieldErrors::single("role", "you cannot change your own role; ask another admin").into());
        }
        let direct = matches!(actor.principal, Principal::System { .. });
        if !direct && self.store.member_by_email(actor.org, spec.email.as_str()).await?.is_none() {
            if spec.password.is_some() {
                return Err(FieldErrors::single(
                    "password",
                    "is chosen by the person you invite, when they accept; leave it out",
                )
                .into());
            }
            return Ok(MemberChange::Invited(self.invite(actor, &spec).await?));
        }
        let hash = match spec.password.as_ref().filter(|_| direct) {
            Some(password) => Some(hash_password(password.clone()).await?),
            None => None,
        };
        let member = self.store.upsert_member(actor, &spec, hash.as_deref()).await?;
        tracing::info!(user = %member.user_id, role = %member.role, "member saved");
        Ok(MemberChange::Saved(member))
    }

    async fn invite(&self, actor: &Actor, spec: &MemberSpec) -> Result<CreatedInvitation> {
        let secret = random_secret(INVITATION_PREFIX);
        let expires_at = Utc::now() + Duration::days(INVITATION_DAYS);
        let invitation = self.store.create_invitation(actor, spec, &digest(&secret), expires_at).await?;
        tracing::info!(invitation = invitation.id, role = %invitation.role, "invitation created");
        let accept_path = format!("/invitations/{secret}");
        Ok(CreatedInvitation { invitation, secret, accept_path })
    }

    /// The organisation's invitations, newest first (their secrets were shown once and are not kept).
    pub async fn invitations(&self, actor: &Actor) -> Result<Vec<Invitation>> {
        let org = actor.authorize(Action::Administer)?;
        Ok(self.store.list_invitations(org).await?)
    }

    pub async fn revoke_invitation(&self, actor: &Actor, id: i64) -> Result<Invitation> {
        actor.authorize(Action::Administer)?;
        Ok(self.store.revoke_invitation(actor, id).await?)
    }

    /// What the link of an invitation shows its holder: the organisation, the address and the role.
    /// No actor: the secret is the credential. An unknown, used or expired secret is not found.
    pub async fn invitation(&self, secret: &str) -> Result<InvitationView> {
        let found = self.store.invitation_by_token(&digest(secret.trim())).await?;
        match found {
            Some(found) if found.invitation.is_open(Utc::now()) => Ok(InvitationView {
                org_name: found.org_name,
                org_slug: found.org_slug,
                email: found.invitation.email,
                role: found.invitation.role,
                expires_at: found.invitation.expires_at,
            }),
            _ => Err(ServiceError::NotFound(
                "no open invitation has this link: it was accepted, revoked or has expired; ask for a new one".into(),
            )),
        }
    }

    /// Accepts an invitation: with the password of the invited address's account (checked and counted
    /// like a sign-in from `address`), or, when the address has no account, with a name and password
    /// for a new one. Returns the organisation's slug, to sign in to it, and the membership.
    pub async fn accept_invitation(&self, input: &AcceptInput, address: &str) -> Result<(String, Member)> {
        input.validate()?;
        let hash = digest(input.token.trim());
        let view = self.invitation(&input.token).await?;
        let existing = self.store.user_by_email(&view.email).await?;
        let new_hash = match existing {
            Some(_) => {
                self.check_password(&view.email, &input.password, address).await.map_err(|e| match e {
                    ServiceError::Unauthorized(_) => {
                        ServiceError::Unauthorized("this is not the password of the invited address's account".into())
                    }
                    other => other,
                })?;
                None
            }
            None => {
                check_password(&input.password).map_err(|m| FieldErrors::single("password", m))?;
                Some(hash_password(input.password.clone()).await?)
            }
        };
        let name = Some(input.name.trim()).filter(|n| !n.is_empty()).unwrap_or(&view.email);
        let account = new_hash.as_deref().map(|password_hash| NewAccount { name, password_hash });
        let (_, member) = self.store.accept_invitation(&hash, account).await?;
        tracing::info!(user = %member.user_id, role = %member.role, "invitation accepted");
        Ok((view.org_slug, member))
    }

    pub async fn remove_member(&self, actor: &Actor, user: UserId) -> Result<()> {
        actor.authorize(Action::Administer)?;
        if actor.user() == Some(user) {
            return Err(FieldErrors::single("user", "you cannot remove yourself; ask another admin").into());
        }
        Ok(self.store.remove_member(actor, user).await?)
    }

    // ---- tokens --------------------------------------------------------------------------------

    pub async fn tokens(&self, actor: &Actor) -> Result<Vec<ApiToken>> {
        let org = actor.authorize(Action::Administer)?;
        Ok(self.store.list_tokens(org).await?)
    }

    pub async fn create_token(&self, actor: &Actor, input: &TokenInput) -> Result<CreatedToken> {
        actor.authorize(Action::Administer)?;
        let (name, scopes) = input.validate()?;
        let secret = random_secret(TOKEN_PREFIX);
        let prefix: String = secret.chars().take(TOKEN_PREFIX.len() + 6).collect();
        let token = self.store.create_token(actor, &name, &scopes, &prefix, &digest(&secret)).await?;
        tracing::info!(token = token.id, scopes = %Scope::join(&token.scopes), "API token created");
        Ok(CreatedToken { token, secret })
    }

    pub async fn revoke_token(&self, actor: &Actor, id: i64) -> Result<ApiToken> {
        actor.authorize(Action::Administer)?;
        Ok(self.store.revoke_token(actor, id).await?)
    }

    // ---- units ---------------------------------------------------------------------------------

    pub async fn units(&self, actor: &Actor) -> Result<Vec<Unit>> {
        let org = actor.authorize(Action::Read)?;
        Ok(self.store.list_units(org).await?)
    }

    pub async fn put_unit(&self, actor: &Actor, input: &UnitInput) -> Result<Unit> {
        actor.authorize(Action::Administer)?;
        let change = input.parse()?;
        Ok(self.store.put_unit(actor, change.name.as_str(), change.parent.as_deref(), change.headcount).await?)
    }

    // ---- audit ---------------------------------------------------------------------------------

    /// The audit trail, newest first; for one entity when `entity` is given (`("season", 3)`).
    pub async fn audit(
        &self,
        actor: &Actor,
        entity: Option<(&str, i64)>,
        before: Option<i64>,
        limit: i64,
    ) -> Result<Vec<AuditRecord>> {
        let org = actor.authorize(Action::Read)?;
        if let Some((kind, _)) = entity
            && !AUDITED.contains(&kind)
        {
            return Err(FieldErrors::single("entity", format!("must be one of {}", AUDITED.join(", "))).into());
        }
        Ok(self.store.audit_log(org, entity, before, limit.clamp(1, 500)).await?)
    }
}

/// The entity kinds the audit trail records.
pub const AUDITED: [&str; 12] = [
    "season",
    "objective",
    "key_result",
    "squad",
    "squad_goal",
    "membership",
    "unit",
    "api_token",
    "thesis_signal",
    "annotation_queue",
    "annotation_item",
    "annotation",
];

fn actor_of_session(record: SessionRecord) -> Result<Actor> {
    let role: Role = record.role.parse().map_err(|e: String| ServiceError::Internal(format!("stored role: {e}")))?;
    Ok(Actor {
        org: OrgId(record.org_id),
        principal: Principal::User {
            id: UserId(record.user_id),
            email: record.email,
            role,
            squads: record.squads.into_iter().map(SquadId).collect(),
        },
    })
}

/// 256 random bits as lowercase hex after `prefix`.
pub(crate) fn random_secret(prefix: &str) -> String {
    let mut bytes = [0u8; 32];
    // The operating system's generator failing is not something to continue from: every session and
    // token would be guessable.
    getrandom::fill(&mut bytes).expect("the operating system's random number generator failed");
    let mut out = String::with_capacity(prefix.len() + 64);
    out.push_str(prefix);
    for b in bytes {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// SHA-256 of a session id or token, as stored. Both are 256 random bits, so a fast hash is safe here
/// (nothing to brute-force), unlike passwords.
fn digest(secret: &str) -> String {
    Sha256::digest(secret.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// A hash of a password nobody has, for checking sign-ins of unknown accounts in the same time.
const DUMMY_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$c2xvcGUtZHVtbXktc2FsdA$2H9tJyIpSd1Z7gJkrU1bcdh1dz1K6DJZ7G7lW2yBtN0";

/// Argon2id with the crate's default parameters (OWASP's minimum: 19 MiB, 2 passes), on the blocking
/// pool: a hash takes tens of milliseconds of CPU, which must not stall the async threads.
async fn hash_password(password: String) -> Result<String> {
    use argon2::password_hash::{PasswordHasher, SaltString, rand_core::OsRng};
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::generate(&mut OsRng);
        argon2::Argon2::default().hash_password(password.as_bytes(), &salt).map(|h| h.to_string())
    })
    .await
    .map_err(|e| ServiceError::Internal(format!("hashing a password: {e}")))?
    .map_err(|e| ServiceError::Internal(format!("hashing a password: {e}")))
}

async fn verify_password(password: String, hash: String) -> Result<bool> {
    use argon2::password_hash::{PasswordHash, PasswordVerifier};
    tokio::task::spawn_blocking(move || {
        let parsed =
            PasswordHash::new(&hash).map_err(|e| ServiceError::Internal(format!("stored password hash: {e}")))?;
        Ok(argon2::Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok())
    })
    .await
    .map_err(|e| ServiceError::Internal(format!("checking a password: {e}")))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn passwords_hash_and_verify() {
        let hash = hash_password("correct horse battery".into()).await.unwrap();
        assert!(hash.starts_with("$argon2id$"));
        assert!(verify_password("correct horse battery".into(), hash.clone()).await.unwrap());
        assert!(!verify_password("wrong horse battery".into(), hash).await.unwrap());
        // The dummy hash must parse, or sign-ins of unknown accounts would fail with an internal error.
        assert!(!verify_password("anything".into(), DUMMY_HASH.into()).await.unwrap());
    }

    #[test]
    fn secrets_are_random_and_digests_stable() {
        let (a, b) = (random_secret(TOKEN_PREFIX), random_secret(TOKEN_PREFIX));
        assert_ne!(a, b);
        assert_eq!(a.len(), TOKEN_PREFIX.len() + 64);
        assert_eq!(digest("x"), digest("x"));
        assert_eq!(digest("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }
}
