//! Seasons: the list, the season page with its OKR tree and slope allocation, and the season form.

use leptos::prelude::*;
use leptos::server_fn::ServerFn;
use leptos_meta::Title;
use leptos_router::hooks::use_query_map;
use slope_domain::*;

use super::{LoadError, loading, missing_id, param_id};
use crate::api::*;
use crate::components::*;

#[component]
pub fn SeasonsPage() -> impl IntoView {
    // An annotator sees the annotation queues and nothing else: the home page sends them there (and reads
    // no season, whose refusal would answer 403 instead of the redirect).
    if crate::signed_in().is_some_and(|a| !a.can(slope_domain::Action::Read) && a.can(slope_domain::Action::Annotate)) {
        #[cfg(feature = "ssr")]
        leptos_axum::redirect("/annotate");
        return view! { <p>"Your work is in the "<a href="/annotate">"annotation queues"</a>"."</p> }.into_any();
    }
    let seasons = Resource::new(|| (), |_| list_seasons());
    // Controls the signed-in actor may not use are left out; the service refuses them anyway.
    let editor = crate::may(slope_domain::Action::EditPlan);
    view! {
        <Title text="Seasons"/>
        <div class="page-head">
            <h1>"Seasons"</h1>
            {editor.then(|| view! { <a href="/seasons/new" class="button">"New season"</a> })}
        </div>
        <p class="lede">"A season is the top planning unit: a secular market shift, the customer problems it opens, and what winning looks like."</p>
        <Suspense fallback=loading>
            {move || Suspend::new(async move {
                match seasons.await {
                    Err(e) => view! { <LoadError error=e/> }.into_any(),
                    Ok(list) if list.is_empty() => view! {
                        <p class="empty">
                            "No season yet."
                            {editor.then(|| view! { " " <a href="/seasons/new">"Define the first one"</a> "." })}
                        </p>
                    }.into_any(),
                    Ok(list) => view! {
                        <ul class="cards" aria-label="Seasons">
                            {list.into_iter().map(|s| view! { <SeasonCard summary=s/> }).collect_view()}
                        </ul>
                    }.into_any(),
                }
            })}
        </Suspense>
    }
    .into_any()
}

#[component]
fn SeasonCard(summary: SeasonSummary) -> impl IntoView {
    let season = summary.season;
    let label = format!("{} progress", season.name);
    view! {
        <li class="card">
            <h2><a href=format!("/seasons/{}", season.id)>{season.name.clone()}</a></h2>
            <p class="meta">
                <StatusBadge status=season.status/>
                {format!(" {} → {} · {} objectives · {} key results", season.starts_on, season.ends_on, summary.objectives, summary.key_results)}
            </p>
            <p class="thesis">{season.thesis.clone()}</p>
            <ProgressBar score=summary.score expectation=summary.expectation label/>
        </li>
    }
}

#[component]
pub fn StatusBadge(status: SeasonStatus) -> impl IntoView {
    view! { <span class=format!("badge status-{status}")>{status.as_str()}</span> }
}

#[component]
pub fn SeasonPage() -> impl IntoView {
    let id = param_id("id");
    let query = use_query_map();
    let as_of = Memo::new(move |_| query.read().get("as_of").unwrap_or_default());
    let tree = Resource::new(
        move || (id.get(), as_of.get()),
        |(id, as_of)| async move {
            match id {
                Some(id) => load_season_tree(id, as_of).await,
                None => Err(missing_id()),
            }
        },
    );
    view! {
        <Suspense fallback=loading>
            {move || Suspend::new(async move {
                match tree.await {
                    Err(e) => view! { <LoadError error=e/> }.into_any(),
                    Ok(tree) => view! { <SeasonView tree/> }.into_any(),
                }
            })}
        </Suspense>
    }
}

#[component]
fn SeasonView(tree: SeasonTree) -> impl IntoView {
    let season = tree.season.clone();
    let historical = tree.as_of.is_some();
    // Only those who may change the plan see the controls that change it.
    let editable = !historical && crate::may(slope_domain::Action::EditPlan);
    let sid = season.id;
    view! {
        <Title text=season.name.clone()/>
        {tree.as_of.map(|at| view! {
            <p class="banner" role="status">
                {format!("Showing the plan as known on {}. ", at.format("%Y-%m-%d"))}
                <a href=format!("/seasons/{sid}")>"Back to now"</a>
            </p>
        })}
        <div class="page-head">
            <div>
                <h1>{season.name.clone()}</h1>
                <p class="meta">
                    <StatusBadge status=season.status/>
                    {format!(" {} → {} ({} days) · slope target {}", season.starts_on, season.ends_on, season.dates().days() + 1, percent(season.slope_target))}
                </p>
                <p class="meta">
                    "Key " <code id="season-key">{season.key.clone()}</code>
                    " · as a plan file: " <code>{format!("slope plan export --season {}", season.key)}</code>
                    " · " <a href=format!("/audit?entity=season&id={sid}")>"History"</a>
                    " · " <a href=format!("/seasons/{sid}/dashboard")>"Dashboard"</a>
                    {(season.status == SeasonStatus::Closed).then(|| view! { " · " <a href=format!("/seasons/{sid}/review")>"Review"</a> })}
                </p>
            </div>
            {(editable && season.status != SeasonStatus::Closed).then(|| view! {
                <a href=format!("/seasons/{sid}/edit") class="button secondary">"Edit season"</a>
            })}
        </div>

        <section class="grid-2">
            <div class="panel">
                <h2>"Thesis"</h2>
                <p>{season.thesis.clone()}</p>
                <h2>"Customer problems"</h2>
                <ul>{season.problems.iter().map(|p| view! { <li>{p.clone()}</li> }).collect_view()}</ul>
                <h2>"What winning looks like"</h2>
                <p>{season.winning.clone()}</p>
                {season.retrospective.clone().map(|r| view! { <h2>"Retrospective"</h2><p>{r}</p> })}
            </div>
            <div class="panel">
                <h2>"Progress"</h2>
                <ProgressBar score=tree.score expectation=tree.expectation label="Season progress"/>
                <p class="hint">"Weighted mean of objectives; the tick marks where committed (100 %) and aspirational (70 %) objectives are expected to land."</p>
                <h2>"Slope allocation"</h2>
                <SlopeSummary report=tree.slope.clone()/>
                {editable.then(|| view! { <TransitionForms season=season.clone()/> })}
                <AsOfForm season=sid/>
            </div>
        </section>

        <section aria-labelledby="okr-heading">
            <div class="page-head">
                <h2 id="okr-heading">"Objectives and key results"</h2>
                {(editable && season.status != SeasonStatus::Closed).then(|| view! {
                    <a href=format!("/seasons/{sid}/objectives/new") class="button">"Add objective"</a>
                })}
            </div>
            {if tree.objectives.is_empty() {
                view! { <p class="empty">"No objectives yet."</p> }.into_any()
            } else {
                view! {
                    <ol class="okr-tree">
                        {tree.objectives.into_iter().map(|o| view! { <ObjectiveItem node=o editable/> }).collect_view()}
                    </ol>
                }.into_any()
            }}
        </section>
    }
}

#[component]
pub fn ObjectiveItem(node: ObjectiveNode, editable: bool) -> impl IntoView {
    let o = node.objective.clone();
    view! {
        <li class="objective" id=format!("objective-{}", o.id)>
            <div class="row-head">
                <h3>{o.title.clone()}</h3>
                <span class=format!("badge {}", o.commitment)>{o.commitment.as_str()}</span>
                <span class="muted">{format!("{} · weight {}{}", o.quarter, fmt_number(o.weight), o.owner.as_ref().map(|w| format!(" · owner {w}")).unwrap_or_default())}</span>
                {editable.then(|| view! {
                    <a href=format!("/objectives/{}/edit", o.id) class="link">"Edit"</a>
                    <a href=format!("/objectives/{}/key-results/new", o.id) class="link">"Add key result"</a>
                })}
            </div>
            {o.description.clone().map(|d| view! { <p class="description">{d}</p> })}
            <ProgressBar score=node.score expectation=node.expectation label=format!("{} progress", o.title)/>
            <ul class="krs">
                {node.key_results.into_iter().map(|k| view! { <KeyResultItem node=k/> }).collect_view()}
            </ul>
        </li>
    }
}

#[component]
fn KeyResultItem(node: KeyResultNode) -> impl IntoView {
    let kr = node.key_result;
    let note = progress_note(&node.progress, kr.measure.unit(), kr.current);
    let label = format!("{} progress", kr.title);
    view! {
        <li class="kr">
            <div class="row-head">
                <a href=format!("/key-results/{}", kr.id)>{kr.title.clone()}</a>
                <span class="muted">{format!("{} · weight {}", kr.measure.describe(), fmt_number(kr.weight))}</span>
                {kr.confidence.map(|c| view! { <span class="muted">{format!(" · confidence {}", percent(c))}</span> })}
                {kr.metric.as_ref().map(|m| {
                    let stale = m.is_stale(chrono::Utc::now());
                    view! {
                        <span class="tag metric" title="The current value comes from this metric's latest point">{format!("metric {}", m.key)}</span>
                        {stale.then(|| view! { <span class="badge warn">"stale"</span> })}
                    }
                })}
            </div>
            <ProgressBar score=node.progress.score label/>
            <p class="hint">{note}</p>
            {(!node.goals.is_empty()).then(|| view! {
                <ul class="goals">
                    {node.goals.into_iter().map(|g| view! { <GoalChip node=g/> }).collect_view()}
                </ul>
            })}
        </li>
    }
}

#[component]
pub fn GoalChip(node: SquadGoalNode) -> impl IntoView {
    let g = node.goal;
    view! {
        <li class="goal">
            <span class=format!("tag {}", g.investment)>{g.investment.as_str()}</span>
            <a href=format!("/squad-goals/{}", g.id)>{g.title.clone()}</a>
            <span class="muted">{format!(" · {} · {} · {} pw · {}", node.squad_name, g.status, fmt_number(g.planned_capacity), percent(node.progress.score))}</span>
        </li>
    }
}

#[component]
pub fn SlopeSummary(report: SlopeReport) -> impl IntoView {
    let target = report.target;
    view! {
        <p><ShareBadge share=Some(report.overall) target/></p>
        {(!report.units.is_empty()).then(|| view! {
            <table class="compact">
                <caption>"By unit"</caption>
                <thead><tr><th scope="col">"Unit"</th><th scope="col">"Slope"</th><th scope="col">"Planned"</th><th scope="col">"Share"</th></tr></thead>
                <tbody>
                    {report.units.into_iter().map(|u| view! {
                        <tr class:warn=u.share.below_target>
                            <th scope="row">{u.unit}</th>
                            <td>{format!("{} pw", fmt_number(u.share.slope))}</td>
                            <td>{format!("{} pw", fmt_number(u.share.total))}</td>
                            <td>{u.share.share.map(percent).unwrap_or_else(|| "—".into())}{u.share.below_target.then_some(" ⚠ below target")}</td>
                        </tr>
                    }).collect_view()}
                </tbody>
            </table>
        })}
    }
}

#[island]
fn TransitionForms(season: Season) -> impl IntoView {
    let transition = ServerAction::<TransitionSeason>::new();
    let errors: FormErrors = RwSignal::new(FieldErrors::new());
    watch_outcome(transition, errors);
    let submit = submit_with_checks(transition, errors, |_| Ok(()));
    let (id, version) = (season.id.0.to_string(), season.version.0.to_string());
    match season.status {
        SeasonStatus::Draft => view! {
            <form class="inline" method="post" action=TransitionSeason::url() on:submit=submit>
                <FormMessages errors/>
                <input type="hidden" name="id" value=id/>
                <input type="hidden" name="version" value=version/>
                <input type="hidden" name="to" value="active"/>
                <input type="hidden" name="retrospective" value=""/>
                <button type="submit">"Activate season"</button>
                <p class="error">{move || errors.with(|e| e.get("to").map(|m| m.join("; ")))}</p>
            </form>
        }
        .into_any(),
        SeasonStatus::Active => view! {
            <details>
                <summary>"Close the season"</summary>
                <form method="post" action=TransitionSeason::url() on:submit=submit novalidate>
                    <FormMessages errors/>
                    <input type="hidden" name="id" value=id/>
                    <input type="hidden" name="version" value=version/>
                    <input type="hidden" name="to" value="closed"/>
                    <TextArea label="Retrospective" name="retrospective" errors value="" required=true
                        hint="What did the season teach? At least 20 characters."/>
                    <button type="submit" class="danger">"Close season"</button>
                </form>
            </details>
        }
        .into_any(),
        SeasonStatus::Closed => ().into_any(),
    }
}

/// A plain GET form, so "as known on" works without JavaScript too.
#[component]
fn AsOfForm(season: SeasonId) -> impl IntoView {
    view! {
        <form class="inline as-of" method="get" action=format!("/seasons/{season}")>
            <label for="as_of">"Show the plan as known on"</label>
            <input id="as_of" name="as_of" type="date"/>
            <button type="submit" class="secondary">"Show"</button>
        </form>
    }
}

#[component]
pub fn NewSeasonPage() -> impl IntoView {
    view! {
        <Title text="New season"/>
        <h1>"New season"</h1>
        <SeasonForm season=None/>
    }
}

#[component]
pub fn EditSeasonPage() -> impl IntoView {
    let id = param_id("id");
    let season = Resource::new(
        move || id.get(),
        |id| async move {
            match id {
                Some(id) => get_season(id).await,
                None => Err(missing_id()),
            }
        },
    );
    view! {
        <Suspense fallback=loading>
            {move || Suspend::new(async move {
                match season.await {
                    Err(e) => view! { <LoadError error=e/> }.into_any(),
                    Ok(s) => view! {
                        <Title text=format!("Edit {}", s.name)/>
                        <h1>{format!("Edit {}", s.name)}</h1>
                        <SeasonForm season=Some(s)/>
                    }.into_any(),
                }
            })}
        </Suspense>
    }
}

#[island]
fn SeasonForm(season: Option<Season>) -> impl IntoView {
    let action = ServerAction::<SaveSeason>::new();
    let errors: FormErrors = RwSignal::new(FieldErrors::new());
    watch_outcome(action, errors);
    let submit = submit_with_checks(action, errors, |f| season_form(f).map(|_| ()));
    let editing = season.is_some();
    let input = season.as_ref().map(Season::to_input).unwrap_or_default();
    let target = input.slope_target.map(|t| fmt_number(t * 100.0)).unwrap_or_else(|| "20".into());
    view! {
        <form class="form" method="post" action=SaveSeason::url() on:submit=submit novalidate>
            <FormMessages errors/>
            <Identity id=season.as_ref().map(|s| s.id.0) version=season.as_ref().map(|s| s.version.0)/>
            <Input label="Name" name="name" errors value=input.name required=true/>
            <TextArea label="Thesis" name="thesis" errors value=input.thesis required=true
                hint="The secular market shift this season is built on."/>
            <TextArea label="Customer problems" name="problems" errors value=input.problems.join("\n") required=true rows=4
                hint="One problem per line."/>
            <TextArea label="What winning looks like" name="winning" errors value=input.winning required=true/>
            <div class="row">
                <Input label="Starts on" name="starts_on" kind="date" errors value=input.starts_on required=true/>
                <Input label="Ends on" name="ends_on" kind="date" errors value=input.ends_on required=true
                    hint="Seasons vary in length and can be extended."/>
            </div>
            <Input label="Slope target (%)" name="slope_target" kind="number" step="1" errors value=target
                hint="Share of capacity reserved for bets that challenge the platform's current thinking: 0 to 60 %."/>
            <button type="submit" disabled=move || action.pending().get()>
                {if editing { "Save season" } else { "Create season" }}
            </button>
        </form>
    }
}
