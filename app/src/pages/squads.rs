//! Squads: the board of goals by squad with slope share, the squad form, and squad goals.

use leptos::prelude::*;
use leptos::server_fn::ServerFn;
use leptos_meta::Title;
use leptos_router::hooks::use_query_map;
use slope_domain::*;

use super::{CheckInForm, CheckInHistory, LoadError, MeasureFields, SlopeSummary, loading, missing_id, param_id};
use crate::api::*;
use crate::components::*;

#[component]
pub fn SquadsPage() -> impl IntoView {
    let query = use_query_map();
    let season = Memo::new(move |_| query.read().get("season").and_then(|s| s.parse::<i64>().ok()));
    let board = Resource::new(move || season.get(), load_squad_board);
    // Controls the signed-in actor may not use are left out; the service refuses them anyway.
    let editor = crate::may(slope_domain::Action::EditPlan);
    view! {
        <Title text="Squads"/>
        <div class="page-head">
            <h1>"Squads"</h1>
            {editor.then(|| view! { <a href="/squads/new" class="button">"New squad"</a> })}
        </div>
        <Suspense fallback=loading>
            {move || Suspend::new(async move {
                match board.await {
                    Err(e) => view! { <LoadError error=e/> }.into_any(),
                    Ok(b) => view! { <Board board=b/> }.into_any(),
                }
            })}
        </Suspense>
    }
}

#[component]
fn Board(board: SquadBoard) -> impl IntoView {
    let Some(season) = board.season.clone() else {
        return view! { <p class="empty">"Define a season first: squad goals ladder up to its key results."</p> }
            .into_any();
    };
    let target = season.slope_target;
    let open = season.status != SeasonStatus::Closed;
    view! {
        <form class="inline" method="get" action="/squads">
            <label for="season">"Season"</label>
            <select id="season" name="season">
                {board.seasons.iter().map(|s| view! {
                    <option value=s.id.0.to_string() selected=s.id == season.id>{format!("{} ({})", s.name, s.status)}</option>
                }).collect_view()}
            </select>
            <button type="submit" class="secondary">"Show"</button>
        </form>
        <section class="panel">
            <h2>{format!("Slope allocation in {}", season.name)}</h2>
            {board.slope.clone().map(|r| view! { <SlopeSummary report=r/> })}
        </section>
        {if board.columns.is_empty() {
            let editor = crate::may(slope_domain::Action::EditPlan);
            view! {
                <p class="empty">
                    "No squads yet."
                    {editor.then(|| view! { " " <a href="/squads/new">"Add the first squad"</a> "." })}
                </p>
            }.into_any()
        } else {
            view! {
                <div class="board">
                    {board.columns.into_iter().map(|col| view! { <SquadColumnView column=col target open/> }).collect_view()}
                </div>
            }.into_any()
        }}
    }
    .into_any()
}

#[component]
fn SquadColumnView(column: SquadColumn, target: f64, open: bool) -> impl IntoView {
    let squad = column.squad;
    let over = column.peak_load > squad.capacity;
    let edits_squad = crate::may(slope_domain::Action::EditPlan);
    let edits_goals = open && crate::may(slope_domain::Action::EditSquadGoals(squad.id));
    view! {
        <section class="column" id=format!("squad-{}", squad.id) aria-labelledby=format!("squad-{}-name", squad.id)>
            <div class="row-head">
                <h2 id=format!("squad-{}-name", squad.id)>{squad.name.clone()}</h2>
                <a href=format!("/squads/{}/dashboard", squad.id) class="link">"Dashboard"</a>
                {edits_squad.then(|| view! { <a href=format!("/squads/{}/edit", squad.id) class="link">"Edit"</a> })}
            </div>
            <p class="meta">{format!("{} · capacity {} pw per cycle", squad.unit, fmt_number(squad.capacity))}</p>
            <p class:warn=over class="meta">
                {format!("peak load {} pw at once{}", fmt_number(column.peak_load), if over { " — above its capacity" } else { "" })}
            </p>
            <p><ShareBadge share=column.share target/></p>
            <ul class="goal-cards">
                {column.goals.into_iter().map(|node| {
                    let g = node.goal;
                    let label = format!("{} progress", g.title);
                    view! {
                        <li class=format!("goal-card {}", g.investment)>
                            <span class=format!("tag {}", g.investment)>{g.investment.as_str()}</span>
                            <span class="badge">{g.status.as_str()}</span>
                            <h3><a href=format!("/squad-goals/{}", g.id)>{g.title.clone()}</a></h3>
                            <p class="meta">{format!("{} → {} · {} pw", g.starts_on, g.ends_on, fmt_number(g.planned_capacity))}</p>
                            <ProgressBar score=node.progress.score label/>
                        </li>
                    }
                }).collect_view()}
            </ul>
            {edits_goals.then(|| view! { <a href=format!("/squads/{}/goals/new", squad.id) class="button secondary">"Add goal"</a> })}
        </section>
    }
}

#[component]
pub fn NewSquadPage() -> impl IntoView {
    view! {
        <Title text="New squad"/>
        <h1>"New squad"</h1>
        <SquadForm squad=None/>
    }
}

#[component]
pub fn EditSquadPage() -> impl IntoView {
    let id = param_id("id");
    let squad = Resource::new(
        move || id.get(),
        |id| async move {
            match id {
                Some(id) => get_squad(id).await,
                None => Err(missing_id()),
            }
        },
    );
    view! {
        <Suspense fallback=loading>
            {move || Suspend::new(async move {
                match squad.await {
                    Err(e) => view! { <LoadError error=e/> }.into_any(),
                    Ok(s) => view! {
                        <Title text=format!("Edit {}", s.name)/>
                        <h1>{format!("Edit {}", s.name)}</h1>
                        <SquadForm squad=Some(s)/>
                    }.into_any(),
                }
            })}
        </Suspense>
    }
}

#[island]
fn SquadForm(squad: Option<Squad>) -> impl IntoView {
    let action = ServerAction::<SaveSquad>::new();
    let errors: FormErrors = RwSignal::new(FieldErrors::new());
    watch_outcome(action, errors);
    let submit = submit_with_checks(action, errors, |f| squad_form(f).map(|_| ()));
    let input = squad.as_ref().map(Squad::to_input).unwrap_or_default();
    view! {
        <form class="form" method="post" action=SaveSquad::url() on:submit=submit novalidate>
            <FormMessages errors/>
            <Identity id=squad.as_ref().map(|s| s.id.0) version=squad.as_ref().map(|s| s.version.0)/>
            <Input label="Name" name="name" errors value=input.name required=true/>
            <Input label="Unit" name="unit" errors value=input.unit required=true hint="The part of the organisation the squad belongs to."/>
            <Input label="Capacity (person-weeks per cycle)" name="capacity" kind="number" step="any" errors
                value=input.capacity.map(fmt_number).unwrap_or_default() required=true/>
            <button type="submit" disabled=move || action.pending().get()>
                {if squad.is_some() { "Save squad" } else { "Create squad" }}
            </button>
        </form>
    }
}

#[component]
pub fn NewGoalPage() -> impl IntoView {
    let id = param_id("id");
    let data = Resource::new(
        move || id.get(),
        |id| async move {
            let id = id.ok_or_else(missing_id)?;
            Ok::<_, ServerFnError>((get_squad(id).await?, key_result_choices().await?))
        },
    );
    view! {
        <Suspense fallback=loading>
            {move || Suspend::new(async move {
                match data.await {
                    Err(e) => view! { <LoadError error=e/> }.into_any(),
                    Ok((squad, choices)) => view! {
                        <Title text="New squad goal"/>
                        <h1>"New squad goal"</h1>
                        <p class="lede">{format!("For squad {}. A goal runs 4 to 6 weeks and ladders up to one key result.", squad.name)}</p>
                        <GoalForm squad=squad.id goal=None choices/>
                    }.into_any(),
                }
            })}
        </Suspense>
    }
}

#[component]
pub fn EditGoalPage() -> impl IntoView {
    let id = param_id("id");
    let data = Resource::new(
        move || id.get(),
        |id| async move {
            let id = id.ok_or_else(missing_id)?;
            Ok::<_, ServerFnError>((load_goal(id).await?, key_result_choices().await?))
        },
    );
    view! {
        <Suspense fallback=loading>
            {move || Suspend::new(async move {
                match data.await {
                    Err(e) => view! { <LoadError error=e/> }.into_any(),
                    Ok((detail, mut choices)) => {
                        // A goal of an earlier season keeps its key result even though it is not current.
                        if !choices.iter().any(|(id, _)| *id == detail.key_result.id.0) {
                            choices.insert(0, (detail.key_result.id.0, detail.key_result.title.clone()));
                        }
                        view! {
                            <Title text="Edit squad goal"/>
                            <h1>"Edit squad goal"</h1>
                            <GoalForm squad=detail.squad.id goal=Some(detail.goal) choices/>
                        }.into_any()
                    }
                }
            })}
        </Suspense>
    }
}

#[island]
fn GoalForm(squad: SquadId, goal: Option<SquadGoal>, choices: Vec<(i64, String)>) -> impl IntoView {
    let action = ServerAction::<SaveGoal>::new();
    let errors: FormErrors = RwSignal::new(FieldErrors::new());
    watch_outcome(action, errors);
    let submit = submit_with_checks(action, errors, |f| goal_form(f).map(|_| ()));
    let input = goal.as_ref().map(SquadGoal::to_input).unwrap_or_default();
    let investment =
        RwSignal::new(if input.investment.is_empty() { "snapshot".to_owned() } else { input.investment.clone() });
    let mut kr_options = vec![(String::new(), "Choose a key result…".to_owned())];
    kr_options.extend(choices.into_iter().map(|(id, label)| (id.to_string(), label)));
    let investments = vec![
        ("snapshot".to_owned(), "Snapshot: serves current thinking".to_owned()),
        ("slope".to_owned(), "Slope: bets against current thinking".to_owned()),
    ];
    let statuses: Vec<(String, String)> =
        GoalStatus::ALL.iter().map(|s| (s.as_str().to_owned(), s.as_str().to_owned())).collect();
    let measure = if input.kind.is_empty() {
        MeasureInput { kind: "milestone".into(), ..Default::default() }
    } else {
        input.measure()
    };
    view! {
        <form class="form" method="post" action=SaveGoal::url() on:submit=submit novalidate>
            <FormMessages errors/>
            <input type="hidden" name="squad_id" value=squad.0.to_string()/>
            <Identity id=goal.as_ref().map(|g| g.id.0) version=goal.as_ref().map(|g| g.version.0)/>
            <Input label="Title" name="title" errors value=input.title.clone() required=true/>
            <Select label="Ladders up to" name="key_result_id" errors options=kr_options
                value=input.key_result_id.map(|k| k.to_string()).unwrap_or_default()/>
            <div class="row">
                <Input label="Starts on" name="starts_on" kind="date" errors value=input.starts_on.clone() required=true/>
                <Input label="Ends on" name="ends_on" kind="date" errors value=input.ends_on.clone() required=true
                    hint="4 to 6 weeks after the start (28 to 42 days)."/>
            </div>
            <div class="row">
                <Select label="Investment" name="investment" errors options=investments value=investment.get_untracked()
                    on_change=Callback::new(move |v| investment.set(v))/>
                <Input label="Planned capacity (person-weeks)" name="planned_capacity" kind="number" step="any" errors
                    value=input.planned_capacity.map(fmt_number).unwrap_or_default() required=true/>
                <Select label="Status" name="status" errors options=statuses
                    value=if input.status.is_empty() { "planned".to_owned() } else { input.status.clone() }/>
            </div>
            <div class="slope-fields" class:hidden=move || investment.get() != "slope">
                <TextArea label="Belief it challenges" name="challenges" errors value=input.challenges.clone()
                    hint="Which part of the platform's current thinking does this bet test?"/>
                <TextArea label="Kill criteria" name="kill_criteria" errors value=input.kill_criteria.clone()
                    hint="The evidence that would end the bet."/>
            </div>
            <MeasureFields errors input=measure/>
            <Input label="Fed by metric (key)" name="metric" errors value=input.metric.clone()
                hint="Optional: the key of a metric whose latest point becomes the goal's current value (see Loops)."/>
            <button type="submit" disabled=move || action.pending().get()>
                {if goal.is_some() { "Save goal" } else { "Create goal" }}
            </button>
        </form>
    }
}

#[component]
pub fn GoalPage() -> impl IntoView {
    let id = param_id("id");
    let detail = Resource::new(
        move || id.get(),
        |id| async move {
            match id {
                Some(id) => load_goal(id).await,
                None => Err(missing_id()),
            }
        },
    );
    view! {
        <Suspense fallback=loading>
            {move || Suspend::new(async move {
                match detail.await {
                    Err(e) => view! { <LoadError error=e/> }.into_any(),
                    Ok(d) => view! { <GoalView detail=d/> }.into_any(),
                }
            })}
        </Suspense>
    }
}

#[component]
fn GoalView(detail: SquadGoalDetail) -> impl IntoView {
    let g = detail.goal;
    let note = progress_note(&detail.progress, g.measure.unit(), g.current);
    let open = detail.season.status != SeasonStatus::Closed;
    // A goal and its check-ins belong to its squad: leaders and admins, and the squad's own members,
    // see the controls; everyone else reads (the service refuses them anyway).
    let editor = crate::may(slope_domain::Action::EditSquadGoals(detail.squad.id));
    view! {
        <Title text=g.title.clone()/>
        <p class="crumbs">
            <a href=format!("/squads?season={}", detail.season.id)>{detail.squad.name.clone()}</a>
            " › ladders up to " <a href=format!("/key-results/{}", detail.key_result.id)>{detail.key_result.title.clone()}</a>
        </p>
        <div class="page-head">
            <h1>{g.title.clone()}</h1>
            {(open && editor).then(|| view! { <a href=format!("/squad-goals/{}/edit", g.id) class="button secondary">"Edit"</a> })}
        </div>
        <p class="meta">
            <span class=format!("tag {}", g.investment)>{g.investment.as_str()}</span>
            <span class="badge">{g.status.as_str()}</span>
            {format!(" {} → {} ({} days) · {} pw planned · {} · ", g.starts_on, g.ends_on, g.dates().days(), fmt_number(g.planned_capacity), g.measure.describe())}
            <a href=format!("/audit?entity=squad_goal&id={}", g.id)>"History"</a>
        </p>
        {g.challenges.clone().map(|c| view! { <p><strong>"Challenges: "</strong>{c}</p> })}
        {g.kill_criteria.clone().map(|k| view! { <p><strong>"Kill criteria: "</strong>{k}</p> })}
        <ProgressBar score=detail.progress.score label="Goal progress"/>
        <p class="hint">{note}</p>
        {g.metric.as_ref().map(|m| {
            let stale = m.is_stale(chrono::Utc::now());
            view! {
                <p class="hint">
                    "Fed by metric " <a href=format!("/metrics/{}", m.key)>{m.key.clone()}</a>
                    {m.observed_at.map(|at| format!(", newest data {} UTC", at.format("%Y-%m-%d %H:%M")))}
                    {stale.then(|| view! { " " <span class="badge warn">"stale"</span> })}
                </p>
            }
        })}
        <section class="grid-2">
            {editor.then(|| view! {
                <div class="panel">
                    <h2>"Check in"</h2>
                    <CheckInForm kind=SubjectKind::SquadGoal subject=g.id.0 milestone=g.measure == Measure::Milestone/>
                </div>
            })}
            <div class="panel">
                <h2>"History"</h2>
                <CheckInChart check_ins=detail.check_ins.clone() measure=g.measure.clone()/>
                <CheckInHistory check_ins=detail.check_ins unit=g.measure.unit().to_owned()/>
            </div>
        </section>
    }
}
