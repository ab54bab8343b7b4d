//! Who may do what: roles of members, scopes of API tokens, and the one authorization rule that every
//! service method applies before it touches an organisation's data.
//!
//! The rule lives here, not in the UI or the HTTP layer, so that every way in (pages, server functions,
//! the REST API, the CLI) is held to the same table, and so the table can be unit-tested on its own.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::{FieldErrors, OrgId, SquadId};

/// A person's account. One account can be a member of several organisations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(transparent)]
pub struct UserId(pub i64);

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A member's role in one organisation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// Members, units, tokens and settings, and everything a leader may do.
    Admin,
    /// Seasons, objectives, key results and every squad's goals.
    Leader,
    /// The goals and check-ins of the squads the member belongs to.
    SquadMember,
    /// Reads everything in the organisation and changes nothing.
    Exec,
    /// An expert who annotates the loop interactions of the queues open to the role, and sees nothing
    /// else of the organisation.
    Annotator,
}

impl Role {
    pub const ALL: [Role; 5] = [Role::Admin, Role::Leader, Role::SquadMember, Role::Exec, Role::Annotator];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Leader => "leader",
            Role::SquadMember => "squad-member",
            Role::Exec => "exec",
            Role::Annotator => "annotator",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;

    fn from_str(raw: &str) -> Result<Self, String> {
        match raw.trim() {
            "admin" => Ok(Role::Admin),
            "leader" => Ok(Role::Leader),
            // Both spellings are accepted because the issue tracker and people say "squad member".
            "squad-member" | "member" | "squad member" => Ok(Role::SquadMember),
            "exec" => Ok(Role::Exec),
            "annotator" => Ok(Role::Annotator),
            other => Err(format!("must be one of admin, leader, squad-member, exec, annotator, not {other:?}")),
        }
    }
}

/// What an API token may be used for. Scopes are independent: a token for an ingestion pipeline gets
/// `ingest` only, so a leaked one can add events but neither read the plan nor change it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "kebab-case")]
pub enum Scope {
    /// Read everything in the organisation.
    Read,
    /// Change plans, metric definitions, experiments, datasets, jobs and models (implies `read`).
    Write,
    /// Send interaction events, transactions, pushed metric points and served-suggestion outcomes.
    Ingest,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Write => "write",
            Scope::Ingest => "ingest",
        }
    }

    /// Parses a comma-separated list such as `read,ingest`; at least one scope, none repeated.
    pub fn parse_list(raw: &str) -> Result<Vec<Scope>, String> {
        let mut scopes = Vec::new();
        for part in raw.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let scope = match part {
                "read" => Scope::Read,
                "write" => Scope::Write,
                "ingest" => Scope::Ingest,
                other => return Err(format!("unknown scope {other:?}: use read, write or ingest")),
            };
            if !scopes.contains(&scope) {
                scopes.push(scope);
            }
        }
        if scopes.is_empty() {
            return Err("at least one scope is required (read, write, ingest)".into());
        }
        scopes.sort();
        Ok(scopes)
    }

    pub fn join(scopes: &[Scope]) -> String {
        scopes.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(",")
    }
}

/// Who is acting, as established by a session, a token or the operator of the command line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Principal {
    User {
        id: UserId,
        email: String,
        role: Role,
        squads: Vec<SquadId>,
    },
    Token {
        id: i64,
        name: String,
        scopes: Vec<Scope>,
    },
    /// Someone with direct access to the database (the CLI without `--server`, the demo seeding, the
    /// upkeep): they could change the rows anyway, so they are not asked for more.
    System {
        name: String,
    },
}

/// The acting principal inside one organisation. Every service method that reads or changes an
/// organisation's data takes one, and asks it with [`Actor::authorize`] before anything else.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Actor {
    pub org: OrgId,
    pub principal: Principal,
}

/// What a request wants to do. Reads are one action because every member of an organisation may read
/// all of it; changes are split where roles differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Read,
    /// Seasons, objectives, key results (and their check-ins), squads.
    EditPlan,
    /// The goals and goal check-ins of one squad.
    EditSquadGoals(SquadId),
    /// Metric definitions, experiments, drift checks, datasets, jobs, models and promotions.
    Operate,
    /// Interaction events, transactions, pushed metric points, served suggestions and their outcomes.
    Ingest,
    /// Members, units and API tokens.
    Administer,
    /// Take and label items of annotation queues. The queue decides further who among those allowed
    /// here may work on it (its eligibility: the annotator role, or named squads).
    Annotate,
}

/// An authorization refusal, with the reason shown to the caller (it names no data of the
/// organisation, only the rule).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Denied(pub String);

impl Actor {
    pub fn system(org: OrgId, name: &str) -> Actor {
        Actor { org, principal: Principal::System { name: name.to_owned() } }
    }

    /// Whether the actor may do `action` in its organisation.
    pub fn can(&self, action: Action) -> bool {
        match &self.principal {
            Principal::System { .. } => true,
            Principal::User { role, squads, .. } => match (role, action) {
                (Role::Admin, _) => true,
                (Role::Leader, Action::Administer) => false,
                (Role::Leader, _) => true,
                (Role::SquadMember, Action::Read) => true,
                (Role::SquadMember, Action::EditSquadGoals(squad)) => squads.contains(&squad),
                (Role::SquadMember, Action::Annotate) => true,
                (Role::SquadMember, _) => false,
                (Role::Exec, Action::Read) => true,
                (Role::Exec, _) => false,
                // An annotator sees the items of their queues and nothing else of the organisation.
                (Role::Annotator, Action::Annotate) => true,
                (Role::Annotator, _) => false,
            },
            Principal::Token { scopes, .. } => {
                let has = |s: Scope| scopes.contains(&s);
                match action {
                    Action::Read => has(Scope::Read) || has(Scope::Write),
                    Action::EditPlan | Action::EditSquadGoals(_) | Action::Operate => has(Scope::Write),
                    Action::Ingest => has(Scope::Ingest),
                    // Tokens never manage access: a script that could mint tokens could outlive its revocation.
                    Action::Administer => false,
                    // An annotation is a person's judgement: a script imports labels (an operator's
                    // action), it does not take items one by one as if it were an annotator.
                    Action::Annotate => false,
                }
            }
        }
    }

    /// The organisation to work in, when the actor may do `action`; otherwise why not.
    pub fn authorize(&self, action: Action) -> Result<OrgId, Denied> {
        if self.can(action) {
            return Ok(self.org);
        }
        let who = self.described();
        let what = match action {
            Action::Read => "read this organisation's data".to_owned(),
            Action::EditPlan => "change seasons, objectives, key results or squads".to_owned(),
            Action::EditSquadGoals(squad) => format!("change the goals of squad {squad}"),
            Action::Operate => "change metrics, experiments, datasets, jobs or models".to_owned(),
            Action::Ingest => "send events or outcomes".to_owned(),
            Action::Administer => "manage members, units or tokens".to_owned(),
            Action::Annotate => "annotate".to_owned(),
        };
        Err(Denied(format!("{who} may not {what}")))
    }

    /// Whether the actor may change the goals of at least one squad. Checked before a goal or squad is
    /// looked up, so that an actor who may change none (an exec, a read token) is refused the same way
    /// whatever the id, instead of learning whether the id exists.
    pub fn authorize_some_goals(&self) -> Result<OrgId, Denied> {
        let some_squad = match &self.principal {
            Principal::User { role: Role::SquadMember, squads, .. } => squads.first().copied(),
            _ => Some(SquadId(0)),
        };
        match some_squad {
            Some(squad) if self.can(Action::EditSquadGoals(squad)) => Ok(self.org),
            _ => Err(Denied(format!("{} may not change squad goals", self.described()))),
        }
    }

    /// The actor as a refusal names it: by role or scopes, which is what the rule is about.
    fn described(&self) -> String {
        match &self.principal {
            Principal::User { role, .. } => format!("the {role} role"),
            Principal::Token { scopes, .. } => format!("a token with scopes {}", Scope::join(scopes)),
            Principal::System { .. } => "this actor".to_owned(),
        }
    }

    /// How the actor is named in audit records: stable and meaningful to a person reading the history.
    pub fn label(&self) -> String {
        match &self.principal {
            Principal::User { email, .. } => email.clone(),
            Principal::Token { name, id, .. } => format!("token:{id}:{name}"),
            Principal::System { name } => format!("system:{name}"),
        }
    }

    pub fn user(&self) -> Option<UserId> {
        match &self.principal {
            Principal::User { id, .. } => Some(*id),
            _ => None,
        }
    }

    pub fn role(&self) -> Option<Role> {
        match &self.principal {
            Principal::User { role, .. } => Some(*role),
            _ => None,
        }
    }
}

/// An e-mail address as an account name: trimmed and lower-cased, so `Ann@X.org` and `ann@x.org` are
/// one account. Only the shape is checked; nothing is sent to it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Email(String);

impl Email {
    pub fn parse(raw: &str) -> Result<Email, String> {
        let email = raw.trim().to_lowercase();
        let Some((local, domain)) = email.split_once('@') else {
            return Err("must be an e-mail address such as ann@example.com".into());
        };
        if local.is_empty() || domain.is_empty() || domain.contains('@') || email.chars().any(char::is_whitespace) {
            return Err("must be an e-mail address such as ann@example.com".into());
        }
        if email.len() > 254 {
            return Err("must be at most 254 characters".into());
        }
        Ok(Email(email))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A new password. Length is the rule that matters (NIST SP 800-63B); composition rules are not
/// imposed. The upper bound keeps hashing cheap enough that it cannot be used to tie up the server.
pub fn check_password(raw: &str) -> Result<(), String> {
    let chars = raw.chars().count();
    if chars < 10 {
        return Err(format!("must be at least 10 characters, not {chars}"));
    }
    if raw.len() > 1024 {
        return Err("must be at most 1024 bytes".into());
    }
    Ok(())
}

/// A new member as an admin enters it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(default)]
pub struct MemberInput {
    pub email: String,
    pub name: String,
    pub role: String,
    /// The squads a squad member works in (ids); ignored for other roles.
    pub squads: Vec<i64>,
    /// Required when the account does not exist yet; an existing account keeps its password.
    pub password: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct MemberSpec {
    pub email: Email,
    pub name: String,
    pub role: Role,
    pub squads: Vec<SquadId>,
    pub password: Option<String>,
}

impl MemberInput {
    pub fn validate(&self) -> Result<MemberSpec, FieldErrors> {
        let mut errors = FieldErrors::new();
        let email = Email::parse(&self.email).map_err(|e| errors.add("email", e)).ok();
        let name = self.name.trim().to_owned();
        if name.chars().count() > 120 {
            errors.add("name", "must be at most 120 characters");
        }
        let role = self.role.parse::<Role>().map_err(|e| errors.add("role", e)).ok();
        if let Some(password) = &self.password
            && let Err(e) = check_password(password)
        {
            errors.add("password", e);
        }
        if role == Some(Role::SquadMember) && self.squads.is_empty() {
            errors.add("squads", "a squad member needs at least one squad");
        }
        let squads =
            if role == Some(Role::SquadMember) { self.squads.iter().copied().map(SquadId).collect() } else { vec![] };
        match (email, role) {
            (Some(email), Some(role)) if errors.is_empty() => Ok(MemberSpec {
                name: if name.is_empty() { email.as_str().to_owned() } else { name },
                email,
                role,
                squads,
                password: self.password.clone(),
            }),
            _ => Err(errors),
        }
    }
}

/// A member as listed to admins and on the audit trail (no secrets).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Member {
    pub user_id: UserId,
    pub email: String,
    pub name: String,
    pub role: Role,
    pub squads: Vec<SquadId>,
    pub version: crate::Version,
}

/// An invitation to join an organisation, as its admins list it (the secret is shown once, at creation).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Invitation {
    pub id: i64,
    pub email: String,
    pub role: Role,
    pub squads: Vec<SquadId>,
    /// Who invited (an e-mail address, or `token:…` / `system:…`).
    pub invited_by: String,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub expires_at: chrono::DateTime<chrono::Utc>,
    pub accepted_at: Option<chrono::DateTime<chrono::Utc>>,
    pub revoked_at: Option<chrono::DateTime<chrono::Utc>>,
}

impl Invitation {
    /// Whether it can still be accepted at `now`.
    pub fn is_open(&self, now: chrono::DateTime<chrono::Utc>) -> bool {
        self.accepted_at.is_none() && self.revoked_at.is_none() && self.expires_at > now
    }
}

/// What an invitation's link shows its holder: where it leads and as whom.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct InvitationView {
    pub org_name: String,
    pub org_slug: String,
    pub email: String,
    pub role: Role,
    pub expires_at: chrono::DateTime<chrono::Utc>,
}

/// What the holder of an invitation sends to accept it: the password of the invited address's account,
/// or, when it has none yet, a name and a password for the new account.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(default)]
pub struct AcceptInput {
    /// The invitation's secret, as its link carries it.
    pub token: String,
    /// A new account's name [default: the e-mail address]; an existing account keeps its own.
    pub name: String,
    pub password: String,
}

impl AcceptInput {
    /// The token and the password must be there; a new account's password must also be a good one,
    /// which the service checks once it knows the account is new.
    pub fn validate(&self) -> Result<(), FieldErrors> {
        let mut errors = FieldErrors::new();
        if self.token.trim().is_empty() {
            errors.add("token", "is required: it is the last part of the invitation's link");
        }
        if self.password.is_empty() {
            errors.add("password", "is required");
        }
        if self.name.trim().chars().count() > 120 {
            errors.add("name", "must be at most 120 characters");
        }
        if errors.is_empty() { Ok(()) } else { Err(errors) }
    }
}

/// An API token as listed: the secret itself is shown once, at creation, and never stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ApiToken {
    pub id: i64,
    pub name: String,
    /// The first characters of the token, so a person can tell which one a script uses.
    pub prefix: String,
    pub scopes: Vec<Scope>,
    pub created_by: String,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub last_used_at: Option<chrono::DateTime<chrono::Utc>>,
    pub revoked_at: Option<chrono::DateTime<chrono::Utc>>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(default)]
pub struct TokenInput {
    pub name: String,
    /// A list such as `["read", "ingest"]`.
    pub scopes: Vec<String>,
}

impl TokenInput {
    pub fn validate(&self) -> Result<(String, Vec<Scope>), FieldErrors> {
        let mut errors = FieldErrors::new();
        let name = self.name.trim().to_owned();
        if name.is_empty() {
            errors.add("name", "is required: say what the token is for");
        } else if name.chars().count() > 80 {
            errors.add("name", "must be at most 80 characters");
        }
        let scopes = Scope::parse_list(&self.scopes.join(",")).map_err(|e| errors.add("scopes", e)).ok();
        match scopes {
            Some(scopes) if errors.is_empty() => Ok((name, scopes)),
            _ => Err(errors),
        }
    }
}

/// A unit of the organisation (a department, a business line); units form a tree and squads belong to
/// one. Adoption dashboards roll up by unit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Unit {
    pub id: i64,
    pub name: String,
    pub parent: Option<String>,
    /// How many people work in the unit, when an admin has said so. The adoption dashboard takes its AI
    /// fluency share over this; without it, only the people seen in events are counted.
    #[serde(default)]
    pub headcount: Option<u32>,
    pub version: crate::Version,
}

/// A unit as an admin writes it: the whole unit, so a headcount left out is cleared.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(default)]
pub struct UnitInput {
    pub name: String,
    /// The name of the parent unit; empty for a top-level unit.
    pub parent: String,
    /// How many people work in the unit (1 to 10,000,000); `null` or left out when unknown.
    pub headcount: Option<u32>,
}

/// The most people a unit may be said to have: more than any organisation employs, so a larger number is
/// a typing mistake rather than a unit.
pub const MAX_HEADCOUNT: u32 = 10_000_000;

/// A [`UnitInput`] that passed its rules.
#[derive(Debug, Clone, PartialEq)]
pub struct UnitChange {
    pub name: crate::newtypes::Title,
    pub parent: Option<String>,
    pub headcount: Option<u32>,
}

impl UnitInput {
    /// Checks every field at once: a name (a title's rules), the parent's name if any, and a headcount
    /// between 1 and [`MAX_HEADCOUNT`]. A headcount of 0 is refused rather than read as unknown, since a
    /// unit of nobody cannot be fluent or not and "unknown" is said by leaving it out.
    pub fn parse(&self) -> Result<UnitChange, FieldErrors> {
        let mut c = crate::newtypes::Checker::new();
        let name = c.check("name", crate::newtypes::Title::parse(&self.name));
        let parent = self.parent.trim();
        if parent == self.name.trim() && !parent.is_empty() {
            c.fail("parent", "a unit cannot be placed under itself");
        }
        let headcount = c.check("headcount", parse_headcount(self.headcount));
        let parent = (!parent.is_empty()).then(|| parent.to_owned());
        c.finish(|| Some(UnitChange { name: name?, parent, headcount: headcount? }))
    }
}

/// The headcount rule of [`UnitInput::parse`].
pub fn parse_headcount(value: Option<u32>) -> Result<Option<u32>, String> {
    match value {
        Some(0) => Err("must be at least 1; leave it empty when the number of people is not known".into()),
        Some(n) if n > MAX_HEADCOUNT => Err(format!("must be at most {MAX_HEADCOUNT}")),
        other => Ok(other),
    }
}

/// One change on the audit trail: who changed which entity, when, and its state before and after.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuditRecord {
    pub id: i64,
    pub actor: String,
    pub at: chrono::DateTime<chrono::Utc>,
    pub entity: String,
    pub entity_id: i64,
    /// `create`, `update` or `delete`.
    pub action: String,
    pub before: Option<serde_json::Value>,
    pub after: Option<serde_json::Value>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(role: Role, squads: &[i64]) -> Actor {
        Actor {
            org: OrgId(1),
            principal: Principal::User {
                id: UserId(1),
                email: "a@b.c".into(),
                role,
                squads: squads.iter().copied().map(SquadId).collect(),
            },
        }
    }

    fn token(scopes: &[Scope]) -> Actor {
        Actor { org: OrgId(1), principal: Principal::Token { id: 1, name: "t".into(), scopes: scopes.to_vec() } }
    }

    #[test]
    fn roles_follow_the_table() {
        use Action::*;
        let actions =
            [Read, EditPlan, EditSquadGoals(SquadId(7)), EditSquadGoals(SquadId(8)), Operate, Ingest, Administer];
        let expect = |actor: &Actor, allowed: [bool; 7]| {
            for (action, allowed) in actions.iter().zip(allowed) {
                assert_eq!(actor.can(*action), allowed, "{:?} {action:?}", actor.principal);
            }
        };
        expect(&user(Role::Admin, &[]), [true; 7]);
        expect(&user(Role::Leader, &[]), [true, true, true, true, true, true, false]);
        expect(&user(Role::SquadMember, &[7]), [true, false, true, false, false, false, false]);
        expect(&user(Role::Exec, &[7]), [true, false, false, false, false, false, false]);
        expect(&token(&[Scope::Read]), [true, false, false, false, false, false, false]);
        expect(&token(&[Scope::Write]), [true, true, true, true, true, false, false]);
        expect(&token(&[Scope::Ingest]), [false, false, false, false, false, true, false]);
        expect(&Actor::system(OrgId(1), "cli"), [true; 7]);
        // An annotator reads nothing and changes nothing but annotations.
        expect(&user(Role::Annotator, &[]), [false; 7]);
        let annotate = |actor: &Actor| actor.can(Annotate);
        assert!(annotate(&user(Role::Annotator, &[])) && annotate(&user(Role::Leader, &[])));
        assert!(annotate(&user(Role::Admin, &[])) && annotate(&user(Role::SquadMember, &[7])));
        assert!(!annotate(&user(Role::Exec, &[])) && !annotate(&token(&[Scope::Write])));
    }

    #[test]
    fn goal_editors_are_known_before_any_lookup() {
        assert!(user(Role::SquadMember, &[7]).authorize_some_goals().is_ok());
        assert!(user(Role::Leader, &[]).authorize_some_goals().is_ok());
        assert!(token(&[Scope::Write]).authorize_some_goals().is_ok());
        assert_eq!(
            user(Role::Exec, &[]).authorize_some_goals().unwrap_err().0,
            "the exec role may not change squad goals"
        );
        assert!(token(&[Scope::Read]).authorize_some_goals().is_err());
        assert!(user(Role::SquadMember, &[]).authorize_some_goals().is_err(), "a member of no squad");
    }

    #[test]
    fn refusals_name_the_rule() {
        let denied = user(Role::Exec, &[]).authorize(Action::EditPlan).unwrap_err();
        assert_eq!(denied.0, "the exec role may not change seasons, objectives, key results or squads");
        assert_eq!(user(Role::Leader, &[]).authorize(Action::EditPlan), Ok(OrgId(1)));
    }

    #[test]
    fn inputs_are_checked() {
        assert_eq!(Email::parse(" Ann@Example.ORG ").unwrap().as_str(), "ann@example.org");
        assert!(Email::parse("ann").is_err());
        assert!(Email::parse("a@b@c").is_err());
        assert!(check_password("short").is_err());
        assert!(check_password("long enough!").is_ok());
        let errors =
            MemberInput { email: "x".into(), role: "king".into(), password: Some("1".into()), ..Default::default() }
                .validate()
                .unwrap_err();
        assert!(errors.get("email").is_some() && errors.get("role").is_some() && errors.get("password").is_some());
        let errors = MemberInput { email: "m@x.io".into(), role: "squad-member".into(), ..Default::default() }
            .validate()
            .unwrap_err();
        assert!(errors.get("squads").is_some());
        assert_eq!(Scope::parse_list("ingest, read,read").unwrap(), vec![Scope::Read, Scope::Ingest]);
        assert!(Scope::parse_list("admin").is_err());
        assert!(TokenInput { name: "".into(), scopes: vec![] }.validate().is_err());
    }

    #[test]
    fn an_invitation_is_open_until_accepted_revoked_or_expired() {
        let at = |s: &str| chrono::DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&chrono::Utc);
        let open = Invitation {
            id: 1,
            email: "ivy@example.org".into(),
            role: Role::Exec,
            squads: vec![],
            invited_by: "ann@example.org".into(),
            created_at: at("2027-01-01T00:00:00Z"),
            expires_at: at("2027-01-08T00:00:00Z"),
            accepted_at: None,
            revoked_at: None,
        };
        assert!(open.is_open(at("2027-01-07T23:59:59Z")));
        assert!(!open.is_open(at("2027-01-08T00:00:00Z")), "it closes when it expires");
        let accepted = Invitation { accepted_at: Some(at("2027-01-02T00:00:00Z")), ..open.clone() };
        assert!(!accepted.is_open(at("2027-01-03T00:00:00Z")));
        let revoked = Invitation { revoked_at: Some(at("2027-01-02T00:00:00Z")), ..open };
        assert!(!revoked.is_open(at("2027-01-03T00:00:00Z")));
    }

    #[test]
    fn accepting_needs_the_token_and_a_password() {
        let fields = |input: AcceptInput| -> Vec<String> {
            input.validate().err().map(|e| e.0.keys().cloned().collect()).unwrap_or_default()
        };
        assert_eq!(fields(AcceptInput::default()), ["password", "token"]);
        let long_name = AcceptInput { token: "t".into(), password: "p".into(), name: "n".repeat(121) };
        assert_eq!(fields(long_name), ["name"]);
        assert!(AcceptInput { token: "t".into(), password: "p".into(), name: String::new() }.validate().is_ok());
    }

    #[test]
    fn a_unit_is_checked_field_by_field() {
        let input = |name: &str, parent: &str, headcount: Option<u32>| UnitInput {
            name: name.into(),
            parent: parent.into(),
            headcount,
        };
        let ok = input(" Clinical ", " Product ", Some(40)).parse().unwrap();
        assert_eq!((ok.name.as_str(), ok.parent.as_deref(), ok.headcount), ("Clinical", Some("Product"), Some(40)));
        let top = input("Clinical", "  ", None).parse().unwrap();
        assert_eq!((top.parent, top.headcount), (None, None));
        assert!(input("Huge", "", Some(MAX_HEADCOUNT)).parse().is_ok());

        let fields = |i: UnitInput| i.parse().unwrap_err().0.into_keys().collect::<Vec<_>>();
        assert_eq!(fields(input("Clinical", "", Some(0))), ["headcount"]);
        assert_eq!(fields(input("Clinical", "", Some(MAX_HEADCOUNT + 1))), ["headcount"]);
        assert_eq!(fields(input("", "Clinical", Some(0))), ["headcount", "name"], "every problem at once");
        assert_eq!(fields(input("Clinical", "Clinical", None)), ["parent"]);
    }
}
