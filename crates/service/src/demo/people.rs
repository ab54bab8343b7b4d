//! The demo's people: one account per role (with public passwords, so only in demo mode) and the
//! organisation units the simulated clinicians work in, with their invented headcounts.

use slope_domain::*;

use crate::{Access, Planning, Result};

/// A demo account. Its password is public (the sign-in page of a demo server lists it), which is why
/// demo accounts exist only in demo mode.
pub struct DemoAccount {
    pub role: Role,
    pub email: &'static str,
    pub name: &'static str,
    pub password: &'static str,
    /// For the squad member: the squad they work in.
    pub squad: Option<&'static str>,
}

/// One account per role, so each role's view of the product can be tried.
pub const DEMO_ACCOUNTS: [DemoAccount; 5] = [
    DemoAccount {
        role: Role::Admin,
        email: "admin@demo.slope",
        name: "Ada Admin",
        password: "demo-admin-pass",
        squad: None,
    },
    DemoAccount {
        role: Role::Leader,
        email: "leader@demo.slope",
        name: "Lee Leader",
        password: "demo-leader-pass",
        squad: None,
    },
    DemoAccount {
        role: Role::SquadMember,
        email: "member@demo.slope",
        name: "Sam Member",
        password: "demo-member-pass",
        squad: Some("Agents"),
    },
    DemoAccount {
        role: Role::Exec,
        email: "exec@demo.slope",
        name: "Eve Exec",
        password: "demo-exec-pass",
        squad: None,
    },
    DemoAccount {
        role: Role::Annotator,
        email: "annotator@demo.slope",
        name: "Ana Annotator",
        password: "demo-annotator-pass",
        squad: None,
    },
];

/// Ends the demo accounts' memberships when a server that once ran in demo mode starts without it:
/// their passwords are public, so they must not keep working. Returns how many were ended.
pub async fn retire_accounts(access: &Access, actor: &Actor) -> Result<usize> {
    let members = access.members(actor).await?;
    let mut retired = 0;
    for member in members.iter().filter(|m| DEMO_ACCOUNTS.iter().any(|a| a.email == m.email)) {
        access.remove_member(actor, member.user_id).await?;
        retired += 1;
    }
    Ok(retired)
}

/// Creates the demo accounts that do not exist yet (after [`seed`], which makes the squads they join).
pub async fn seed_accounts(access: &Access, planning: &Planning, actor: &Actor) -> Result<()> {
    let squads = planning.list_squads(actor).await?;
    let known = access.members(actor).await?;
    for account in &DEMO_ACCOUNTS {
        if known.iter().any(|m| m.email == account.email) {
            continue;
        }
        let squads = account.squad.and_then(|name| squads.iter().find(|s| s.name == name)).map(|s| vec![s.id.0]);
        let input = MemberInput {
            email: account.email.into(),
            name: account.name.into(),
            role: account.role.as_str().into(),
            squads: squads.unwrap_or_default(),
            password: Some(account.password.into()),
        };
        access.put_member(actor, &input).await?;
    }
    Ok(())
}

/// The organisation units of the demo squads, which the demo loop's events name as their users' units.
pub const DEMO_UNITS: [&str; 3] = ["Clinical", "Platform", "Revenue"];

/// The invented headcounts of the [`DEMO_UNITS`]. The demo's simulated clinicians joined Clinical first,
/// then Platform, then Revenue; with these headcounts the adoption dashboard shows units at different
/// points of the roll-out instead of every unit fluent because only its AI users were counted.
pub const DEMO_HEADCOUNTS: [(&str, u32); 3] = [("Clinical", 240), ("Platform", 200), ("Revenue", 215)];

/// Gives the demo units their [`DEMO_HEADCOUNTS`], as an admin would on the units page. Run once, when
/// the demo is first seeded, so that a headcount changed later is kept.
pub async fn seed_headcounts(access: &Access, actor: &Actor) -> Result<()> {
    for (name, headcount) in DEMO_HEADCOUNTS {
        access
            .put_unit(actor, &UnitInput { name: name.into(), parent: String::new(), headcount: Some(headcount) })
            .await?;
    }
    Ok(())
}
