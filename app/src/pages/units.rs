//! The organisation's units: the tree that adoption rolls up by, and each unit's headcount, which is what
//! the adoption dashboard's fluency share is taken over. Everyone who reads the organisation sees the
//! list; admins add units and change their parent and headcount.

use leptos::prelude::*;
use leptos::server_fn::ServerFn;
use leptos_meta::Title;
use slope_domain::*;

use super::{LoadError, loading, missing_id, param_id};
use crate::api::*;
use crate::components::*;

#[component]
pub fn UnitsPage() -> impl IntoView {
    let data = Resource::new(|| (), |_| load_units());
    let admin = crate::may(slope_domain::Action::Administer);
    view! {
        <Title text="Units"/>
        <h1>"Units"</h1>
        <p class="lede">
            "The parts of the organisation that squads belong to and that interaction events name. The "
            <a href="/adoption">"adoption dashboard"</a>
            " judges each unit's AI fluency as the share of its people shown AI suggestions: over its headcount "
            "when one is given here, otherwise over the people seen in its events, which undercounts those who "
            "never used AI."
        </p>
        <Suspense fallback=loading>
            {move || Suspend::new(async move {
                match data.await {
                    Err(e) => view! { <LoadError error=e/> }.into_any(),
                    Ok(units) => {
                        let names: Vec<String> = units.iter().map(|u| u.name.clone()).collect();
                        view! {
                            <UnitTable units admin/>
                            {admin.then(|| view! {
                                <section aria-labelledby="new-unit-heading">
                                    <h2 id="new-unit-heading">"Add a unit"</h2>
                                    <UnitForm unit=None names/>
                                </section>
                            })}
                        }.into_any()
                    }
                }
            })}
        </Suspense>
    }
}

#[component]
fn UnitTable(units: Vec<Unit>, admin: bool) -> impl IntoView {
    if units.is_empty() {
        return view! { <p class="empty">"No units yet: add one, or create a squad with a unit."</p> }.into_any();
    }
    view! {
        <table class="table" id="units">
            <caption class="sr-only">"Units, by name"</caption>
            <thead>
                <tr><th>"Unit"</th><th>"Part of"</th><th>"Headcount"</th><th>"Version"</th>{admin.then(|| view! { <th><span class="sr-only">"Actions"</span></th> })}</tr>
            </thead>
            <tbody>
                {units.into_iter().map(|u| view! {
                    <tr id=format!("unit-{}", u.id)>
                        <th scope="row">{u.name.clone()}</th>
                        <td>{u.parent.clone().unwrap_or_else(|| "—".into())}</td>
                        <td>{u.headcount.map(|h| h.to_string()).unwrap_or_else(|| "not known".into())}</td>
                        <td><a href=format!("/audit?entity=unit&id={}", u.id)>{u.version.0}</a></td>
                        {admin.then(|| view! {
                            <td><a href=format!("/units/{}/edit", u.id) aria-label=format!("Edit {}", u.name)>"Edit"</a></td>
                        })}
                    </tr>
                }).collect_view()}
            </tbody>
        </table>
    }
    .into_any()
}

#[component]
pub fn EditUnitPage() -> impl IntoView {
    let id = param_id("id");
    let data = Resource::new(move || id.get(), |_| load_units());
    view! {
        <Suspense fallback=loading>
            {move || Suspend::new(async move {
                let units = match data.await {
                    Err(e) => return view! { <LoadError error=e/> }.into_any(),
                    Ok(units) => units,
                };
                let Some(unit) = id.get_untracked().and_then(|id| units.iter().find(|u| u.id == id).cloned()) else {
                    return view! { <LoadError error=missing_id()/> }.into_any();
                };
                // A unit cannot sit under itself; the store refuses deeper cycles with a message.
                let names = units.iter().filter(|u| u.id != unit.id).map(|u| u.name.clone()).collect();
                view! {
                    <Title text=format!("Edit {}", unit.name)/>
                    <h1>{format!("Edit unit {}", unit.name)}</h1>
                    <UnitForm unit=Some(unit) names/>
                }.into_any()
            })}
        </Suspense>
    }
}

/// The unit form. A unit is named by its name, so editing keeps the name and changes the rest; the whole
/// unit is sent, and an empty headcount says the number of people is not known.
#[island]
fn UnitForm(unit: Option<Unit>, names: Vec<String>) -> impl IntoView {
    let action = ServerAction::<SaveUnit>::new();
    let errors: FormErrors = RwSignal::new(FieldErrors::new());
    watch_outcome(action, errors);
    let submit = submit_with_checks(action, errors, |f| unit_form(f).map(|_| ()));
    let editing = unit.is_some();
    let parent = unit.as_ref().and_then(|u| u.parent.clone()).unwrap_or_default();
    let headcount = unit.as_ref().and_then(|u| u.headcount).map(|h| h.to_string()).unwrap_or_default();
    let mut options = vec![(String::new(), "None (a top-level unit)".to_owned())];
    options.extend(names.into_iter().map(|n| (n.clone(), n)));
    view! {
        <form class="form" method="post" action=SaveUnit::url() on:submit=submit novalidate>
            <FormMessages errors/>
            {match unit {
                Some(u) => view! { <input type="hidden" name="name" value=u.name/> }.into_any(),
                None => view! { <Input label="Name" name="name" errors value="" required=true/> }.into_any(),
            }}
            <Select label="Part of" name="parent" errors options value=parent/>
            <Input label="Headcount" name="headcount" kind="number" errors value=headcount
                hint="How many people work in this unit itself, not its sub-units (the dashboard adds theirs). Leave it empty when not known."/>
            <button type="submit" disabled=move || action.pending().get()>
                {if editing { "Save unit" } else { "Add unit" }}
            </button>
        </form>
    }
}
