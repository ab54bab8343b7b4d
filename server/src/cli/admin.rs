//! `slope admin …` and `slope token …`: access management with direct access to the database, for the
//! first admin of an installation and for operators. Everything else an admin does has an API route.

use std::io::{BufRead, IsTerminal};

use clap::Subcommand;
use slope::config::Config;
use slope_domain::{MemberInput, TokenInput, UnitInput};
use slope_service::Access;

use super::show;

#[derive(Subcommand)]
pub enum AdminCommand {
    /// Create an organisation's admin (and the organisation when it is new). The password is read from
    /// the terminal, or as one line from standard input when that is not a terminal; never from a flag.
    Create {
        #[arg(long, value_name = "ADDRESS")]
        email: String,
        /// The organisation's slug.
        #[arg(long, value_name = "SLUG", default_value = slope::DEFAULT_ORG.0)]
        org: String,
        /// The organisation's display name, used when it is created.
        #[arg(long, value_name = "NAME")]
        org_name: Option<String>,
        /// The admin's name [default: the e-mail address].
        #[arg(long, value_name = "NAME", default_value = "")]
        name: String,
    },
    /// Add a member or change one's role (admin, leader, squad-member, exec). A new account's password
    /// is read like `admin create`'s.
    Member {
        #[arg(long, value_name = "ADDRESS")]
        email: String,
        #[arg(long)]
        role: String,
        /// Squad ids a squad member works in, comma-separated.
        #[arg(long, value_name = "IDS", value_delimiter = ',')]
        squads: Vec<i64>,
        #[arg(long, value_name = "SLUG", default_value = slope::DEFAULT_ORG.0)]
        org: String,
        #[arg(long, value_name = "NAME", default_value = "")]
        name: String,
    },
    /// Add a unit or change one: its parent and its headcount. Give the whole unit: a headcount left
    /// out is cleared (the number of people is then not known), and no parent makes it top-level.
    Unit {
        /// The unit's name.
        name: String,
        /// The name of the unit it belongs to.
        #[arg(long, value_name = "UNIT", default_value = "")]
        parent: String,
        /// How many people work in the unit; the adoption dashboard's fluency share is taken over it.
        #[arg(long, value_name = "PEOPLE")]
        headcount: Option<u32>,
        #[arg(long, value_name = "SLUG", default_value = slope::DEFAULT_ORG.0)]
        org: String,
    },
}

#[derive(Subcommand)]
pub enum TokenCommand {
    /// Create an API token and print it; it is shown this once and stored only as a hash.
    Create {
        /// What the token is for (shown in lists and on the audit trail).
        #[arg(long)]
        name: String,
        /// Comma-separated: read, write, ingest.
        #[arg(long, value_delimiter = ',')]
        scopes: Vec<String>,
        #[arg(long, value_name = "SLUG", default_value = slope::DEFAULT_ORG.0)]
        org: String,
        /// Print the token and its record as JSON.
        #[arg(long)]
        json: bool,
    },
    /// List the organisation's tokens (never their secrets).
    List {
        #[arg(long, value_name = "SLUG", default_value = slope::DEFAULT_ORG.0)]
        org: String,
    },
    /// Revoke a token: requests with it are refused from now on.
    Revoke {
        id: i64,
        #[arg(long, value_name = "SLUG", default_value = slope::DEFAULT_ORG.0)]
        org: String,
    },
}

async fn open(config: &Config) -> Result<Access, String> {
    let store = slope::startup::open_store(config).await?;
    // The default organisation exists on every installation, as `serve` would create it on start.
    store.ensure_org(slope::DEFAULT_ORG.0, slope::DEFAULT_ORG.1).await.map_err(|e| e.to_string())?;
    Ok(Access::new(store))
}

pub async fn run_admin(config: Config, command: AdminCommand) -> Result<(), String> {
    let access = open(&config).await?;
    match command {
        AdminCommand::Create { email, org, org_name, name } => {
            let password = read_password("Password for the new admin")?;
            let org_name = org_name.unwrap_or_else(|| org.clone());
            let member = access.create_admin(&org, &org_name, &email, &name, &password).await.map_err(show)?;
            println!("{} is an admin of organisation {org}", member.email);
        }
        AdminCommand::Member { email, role, squads, org, name } => {
            let actor = access.system_actor(&org, "cli").await.map_err(show)?;
            let exists =
                access.members(&actor).await.map_err(show)?.iter().any(|m| m.email == email.trim().to_lowercase());
            let known_account = access.account_exists(&email).await.map_err(show)?;
            let password = if known_account { None } else { Some(read_password("Password for the new account")?) };
            let input = MemberInput { email, name, role, squads, password };
            // The command line acts as the system, which adds directly rather than inviting.
            let member = access
                .put_member(&actor, &input)
                .await
                .map_err(show)?
                .saved()
                .ok_or("the member was invited instead of added")?;
            let verb = if exists { "is now" } else { "joined as" };
            println!("{} {verb} {} of organisation {org}", member.email, member.role);
        }
        AdminCommand::Unit { name, parent, headcount, org } => {
            let actor = access.system_actor(&org, "cli").await.map_err(show)?;
            let unit = access.put_unit(&actor, &UnitInput { name, parent, headcount }).await.map_err(show)?;
            let place = unit.parent.map_or_else(|| "top-level".to_owned(), |p| format!("under {p}"));
            let people = unit.headcount.map_or_else(|| "headcount not known".to_owned(), |h| format!("{h} people"));
            println!("unit {} ({place}, {people}), version {}", unit.name, unit.version.0);
        }
    }
    Ok(())
}

pub async fn run_token(config: Config, command: TokenCommand) -> Result<(), String> {
    let access = open(&config).await?;
    match command {
        TokenCommand::Create { name, scopes, org, json } => {
            let actor = access.system_actor(&org, "cli").await.map_err(show)?;
            let created = access.create_token(&actor, &TokenInput { name, scopes }).await.map_err(show)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&created).map_err(|e| e.to_string())?);
            } else {
                eprintln!("Token {} ({}) created; it is shown only now:", created.token.id, created.token.name);
                println!("{}", created.secret);
            }
        }
        TokenCommand::List { org } => {
            let actor = access.system_actor(&org, "cli").await.map_err(show)?;
            for t in access.tokens(&actor).await.map_err(show)? {
                let status = if t.revoked_at.is_some() { "revoked" } else { "active" };
                let used = t.last_used_at.map_or_else(|| "never used".to_owned(), |at| format!("last used {at}"));
                println!(
                    "{:>4}  {:<24} {}…  {:<18} {status:<8} {used}",
                    t.id,
                    t.name,
                    t.prefix,
                    slope_domain::Scope::join(&t.scopes)
                );
            }
        }
        TokenCommand::Revoke { id, org } => {
            let actor = access.system_actor(&org, "cli").await.map_err(show)?;
            let token = access.revoke_token(&actor, id).await.map_err(show)?;
            println!("token {} ({}) revoked", token.id, token.name);
        }
    }
    Ok(())
}

/// A password from the terminal (asked twice, not echoed) or one line of standard input, so scripts
/// can pipe it in without it showing in the process list or shell history.
fn read_password(prompt: &str) -> Result<String, String> {
    if std::io::stdin().is_terminal() {
        let first =
            rpassword::prompt_password(format!("{prompt}: ")).map_err(|e| format!("reading the password: {e}"))?;
        let again = rpassword::prompt_password("Again: ").map_err(|e| format!("reading the password: {e}"))?;
        if first != again {
            return Err("the passwords differ".into());
        }
        Ok(first)
    } else {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line).map_err(|e| format!("reading the password from stdin: {e}"))?;
        let password = line.trim_end_matches(['\n', '\r']).to_owned();
        if password.is_empty() {
            return Err("no password on standard input".into());
        }
        Ok(password)
    }
}
