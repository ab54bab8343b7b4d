//! Signing in, the signed-in bar, the members list and the audit trail.

use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_query_map;

use super::LoadError;
use super::loading;
use crate::api::{AuditView, load_audit, load_invitation, load_members};
use slope_domain::*;

/// The sign-in form. It posts to `/auth/login`, a plain form handler of the server (no JavaScript needed),
/// which sets the session cookie and sends the browser on to `next`, or back here with a message.
#[component]
pub fn LoginPage() -> impl IntoView {
    let query = use_query_map();
    let error = query.read_untracked().get("error");
    let next = query.read_untracked().get("next").unwrap_or_else(|| "/".into());
    let demo = demo_accounts();
    view! {
        <Title text="Sign in"/>
        <h1>"Sign in"</h1>
        {error.map(|e| view! { <p class="form-error" role="alert" id="login-error">{e}</p> })}
        <form method="post" action="/auth/login" class="form narrow">
            <input type="hidden" name="next" value=next/>
            <label for="email">"E-mail address"</label>
            <input id="email" name="email" type="email" autocomplete="username" required/>
            <label for="password">"Password"</label>
            <input id="password" name="password" type="password" autocomplete="current-password" required/>
            <label for="org">"Organisation " <span class="muted">"(only when your account belongs to several)"</span></label>
            <input id="org" name="org" type="text" autocomplete="organization"/>
            <button type="submit" class="button primary">"Sign in"</button>
        </form>
        {(!demo.is_empty()).then(|| view! {
            <section class="demo-accounts" aria-labelledby="demo-accounts">
                <h2 id="demo-accounts">"Demo accounts"</h2>
                <p class="muted">"This server runs with demo data. Each account shows what its role may see and do."</p>
                <table class="table">
                    <thead><tr><th>"Role"</th><th>"E-mail"</th><th>"Password"</th></tr></thead>
                    <tbody>
                        {demo.into_iter().map(|(role, email, password)| view! {
                            <tr><td>{role}</td><td><code>{email}</code></td><td><code>{password}</code></td></tr>
                        }).collect_view()}
                    </tbody>
                </table>
            </section>
        })}
    }
}

fn demo_accounts() -> Vec<(&'static str, &'static str, &'static str)> {
    #[cfg(feature = "ssr")]
    {
        if use_context::<crate::DemoMode>().is_some_and(|d| d.0) {
            return slope_service::demo::DEMO_ACCOUNTS.iter().map(|a| (a.role.as_str(), a.email, a.password)).collect();
        }
    }
    vec![]
}

/// Who is signed in, in which organisation, and the sign-out button.
#[component]
pub fn SignedInAs() -> impl IntoView {
    crate::signed_in().map(|actor| {
        let (who, role) = match &actor.principal {
            Principal::User { email, role, .. } => (email.clone(), role.to_string()),
            Principal::Token { name, scopes, .. } => (format!("token {name}"), Scope::join(scopes)),
            Principal::System { name } => (name.clone(), "system".to_owned()),
        };
        view! {
            <div class="signed-in">
                <span id="signed-in-as">{who}</span>" "<span class="badge">{role}</span>
                {actor.can(slope_domain::Action::Administer).then(|| view! { " " <a href="/members">"Members"</a> })}
                <form method="post" action="/auth/logout" class="inline">
                    <button type="submit" class="button link">"Sign out"</button>
                </form>
            </div>
        }
    })
}

/// The organisation's audit trail, or one entity's (`?entity=season&id=3`).
#[component]
pub fn AuditPage() -> impl IntoView {
    let query = use_query_map();
    let entity = Memo::new(move |_| query.read().get("entity"));
    let id = Memo::new(move |_| query.read().get("id").and_then(|i| i.parse::<i64>().ok()));
    let data = Resource::new(move || (entity.get(), id.get()), |(entity, id)| load_audit(entity, id));
    view! {
        <Title text="Audit trail"/>
        <h1>"Audit trail"</h1>
        <p class="lede">"Every change to plans, memberships, units and tokens: who made it, when, and the state before and after."</p>
        <Suspense fallback=loading>
            {move || Suspend::new(async move {
                match data.await {
                    Err(e) => view! { <LoadError error=e/> }.into_any(),
                    Ok(view) => view! { <AuditList view/> }.into_any(),
                }
            })}
        </Suspense>
    }
}

#[component]
fn AuditList(view: AuditView) -> impl IntoView {
    let AuditView { scope, records } = view;
    view! {
        <p class="muted" id="audit-scope">{scope}</p>
        {if records.is_empty() {
            view! { <p class="empty">"No changes recorded yet."</p> }.into_any()
        } else {
            view! {
                <table class="table audit">
                    <caption class="sr-only">"Changes, newest first"</caption>
                    <thead><tr><th>"When (UTC)"</th><th>"Who"</th><th>"What"</th><th>"Changed fields"</th></tr></thead>
                    <tbody>
                        {records.into_iter().map(|r| {
                            let link = format!("/audit?entity={}&id={}", r.entity, r.entity_id);
                            let changes = changed_fields(r.before.as_ref(), r.after.as_ref());
                            view! {
                                <tr>
                                    <td>{r.at.format("%Y-%m-%d %H:%M:%S").to_string()}</td>
                                    <td>{r.actor.clone()}</td>
                                    <td><a href=link>{format!("{} {} {}", r.action, r.entity.replace('_', " "), r.entity_id)}</a></td>
                                    <td class="changes">{changes}</td>
                                </tr>
                            }
                        }).collect_view()}
                    </tbody>
                </table>
            }.into_any()
        }}
    }
}

/// The top-level fields whose value differs between before and after, as `field: old → new`, leaving
/// out bookkeeping (version, times) that changes with every write.
fn changed_fields(before: Option<&serde_json::Value>, after: Option<&serde_json::Value>) -> String {
    const SKIP: [&str; 4] = ["version", "updated_at", "created_at", "org_id"];
    let empty = serde_json::Map::new();
    let b = before.and_then(|v| v.as_object()).unwrap_or(&empty);
    let a = after.and_then(|v| v.as_object()).unwrap_or(&empty);
    let mut keys: Vec<&String> = b.keys().chain(a.keys()).filter(|k| !SKIP.contains(&k.as_str())).collect();
    keys.sort();
    keys.dedup();
    let show = |v: Option<&serde_json::Value>| match v {
        None | Some(serde_json::Value::Null) => "–".to_owned(),
        Some(serde_json::Value::String(s)) => s.chars().take(60).collect(),
        Some(other) => other.to_string().chars().take(60).collect(),
    };
    keys.into_iter()
        .filter(|k| b.get(*k) != a.get(*k))
        .map(|k| format!("{k}: {} → {}", show(b.get(k)), show(a.get(k))))
        .collect::<Vec<_>>()
        .join("; ")
}

fn invitation_status(invitation: &Invitation) -> String {
    let at = |d: &chrono::DateTime<chrono::Utc>| d.format("%Y-%m-%d %H:%M").to_string();
    match (&invitation.accepted_at, &invitation.revoked_at) {
        (Some(accepted), _) => format!("accepted {}", at(accepted)),
        (None, Some(revoked)) => format!("revoked {}", at(revoked)),
        (None, None) if invitation.expires_at <= chrono::Utc::now() => {
            format!("expired {}", at(&invitation.expires_at))
        }
        (None, None) => format!("open until {}", at(&invitation.expires_at)),
    }
}

/// An invitation's page: where it leads, and the form that accepts it with the invited address's
/// account password, or with a name and password for a new account. The page does not say which the
/// address needs, so a forwarded link tells nobody whether the address has an account.
#[component]
pub fn InvitationPage() -> impl IntoView {
    let params = leptos_router::hooks::use_params_map();
    let secret = params.read_untracked().get("secret").unwrap_or_default();
    let error = use_query_map().read_untracked().get("error");
    let data = Resource::new(move || secret.clone(), load_invitation);
    view! {
        <Title text="Invitation"/>
        <h1>"Invitation"</h1>
        {error.map(|e| view! { <p class="form-error" role="alert" id="accept-error">{e}</p> })}
        <Suspense fallback=loading>
            {move || Suspend::new(async move {
                match data.await {
                    Err(e) => view! { <LoadError error=e/> }.into_any(),
                    Ok(invitation) => {
                        let token = params.read_untracked().get("secret").unwrap_or_default();
                        view! {
                            <p class="lede" id="invitation">
                                "You are invited to " <strong>{invitation.org_name}</strong> " as "
                                <span class="badge">{invitation.role.to_string()}</span> ", under "
                                <code>{invitation.email.clone()}</code> ". The invitation is open until "
                                {invitation.expires_at.format("%Y-%m-%d %H:%M UTC").to_string()} "."
                            </p>
                            <form method="post" action="/auth/accept" class="form narrow">
                                <input type="hidden" name="token" value=token/>
                                <input type="hidden" name="email" autocomplete="username" value=invitation.email/>
                                <label for="name">"Your name " <span class="muted">"(for a new account)"</span></label>
                                <input id="name" name="name" type="text" autocomplete="name"/>
                                <label for="password">"Password " <span class="muted">"(your Slope account's, or a new one of at least 10 characters)"</span></label>
                                <input id="password" name="password" type="password" autocomplete="current-password" required/>
                                <button type="submit" class="button primary">"Accept and sign in"</button>
                            </form>
                        }.into_any()
                    }
                }
            })}
        </Suspense>
    }
}

/// Members and their roles (admins manage them through the API or `slope admin member`).
#[component]
pub fn MembersPage() -> impl IntoView {
    let data = Resource::new(|| (), |_| load_members());
    view! {
        <Title text="Members"/>
        <h1>"Members"</h1>
        <p class="lede">"Who may do what in this organisation. Admins invite members and create tokens with the API (" <code>"PUT /api/v1/members"</code> ", " <code>"POST /api/v1/tokens"</code> "); an invited address joins when its holder opens the invitation's link and accepts. Operators add members directly with " <code>"slope admin member"</code> "."</p>
        <Suspense fallback=loading>
            {move || Suspend::new(async move {
                match data.await {
                    Err(e) => view! { <LoadError error=e/> }.into_any(),
                    Ok((members, invitations, tokens)) => view! {
                        <table class="table" id="members">
                            <thead><tr><th>"E-mail"</th><th>"Name"</th><th>"Role"</th><th>"Squads"</th></tr></thead>
                            <tbody>
                                {members.into_iter().map(|m| view! {
                                    <tr><td>{m.email}</td><td>{m.name}</td><td>{m.role.to_string()}</td>
                                    <td>{m.squads.iter().map(|s| s.to_string()).collect::<Vec<_>>().join(", ")}</td></tr>
                                }).collect_view()}
                            </tbody>
                        </table>
                        <h2>"Invitations"</h2>
                        <table class="table" id="invitations">
                            <thead><tr><th>"E-mail"</th><th>"Role"</th><th>"Invited by"</th><th>"Invited"</th><th>"Status"</th></tr></thead>
                            <tbody>
                                {invitations.into_iter().map(|i| {
                                    let status = invitation_status(&i);
                                    view! {
                                        <tr><td>{i.email}</td><td>{i.role.to_string()}</td><td>{i.invited_by}</td>
                                        <td>{i.created_at.format("%Y-%m-%d %H:%M").to_string()}</td><td>{status}</td></tr>
                                    }
                                }).collect_view()}
                            </tbody>
                        </table>
                        <h2>"API tokens"</h2>
                        <table class="table" id="tokens">
                            <thead><tr><th>"Name"</th><th>"Token"</th><th>"Scopes"</th><th>"Created by"</th><th>"Last used"</th><th>"Status"</th></tr></thead>
                            <tbody>
                                {tokens.into_iter().map(|t| view! {
                                    <tr><td>{t.name}</td><td><code>{format!("{}…", t.prefix)}</code></td><td>{Scope::join(&t.scopes)}</td>
                                    <td>{t.created_by}</td><td>{t.last_used_at.map(|d| d.format("%Y-%m-%d %H:%M").to_string()).unwrap_or_else(|| "never".into())}</td>
                                    <td>{if t.revoked_at.is_some() { "revoked" } else { "active" }}</td></tr>
                                }).collect_view()}
                            </tbody>
                        </table>
                    }.into_any(),
                }
            })}
        </Suspense>
    }
}
