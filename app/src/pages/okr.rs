//! Objectives and key results: their forms, the key result page with check-ins, and the measure fields
//! that squad goals share.

use leptos::prelude::*;
use leptos::server_fn::ServerFn;
use leptos_meta::Title;
use slope_domain::*;

use super::{GoalChip, LoadError, loading, missing_id, param_id};
use crate::api::*;
use crate::components::*;

#[component]
pub fn NewObjectivePage() -> impl IntoView {
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
                        <Title text="New objective"/>
                        <h1>"New objective"</h1>
                        <p class="lede">{format!("For season {}", s.name)}</p>
                        <ObjectiveForm season=s objective=None/>
                    }.into_any(),
                }
            })}
        </Suspense>
    }
}

#[component]
pub fn EditObjectivePage() -> impl IntoView {
    let id = param_id("id");
    let data = Resource::new(
        move || id.get(),
        |id| async move {
            match id {
                Some(id) => get_objective(id).await,
                None => Err(missing_id()),
            }
        },
    );
    view! {
        <Suspense fallback=loading>
            {move || Suspend::new(async move {
                match data.await {
                    Err(e) => view! { <LoadError error=e/> }.into_any(),
                    Ok((o, s)) => view! {
                        <Title text="Edit objective"/>
                        <h1>"Edit objective"</h1>
                        <ObjectiveForm season=s objective=Some(o)/>
                    }.into_any(),
                }
            })}
        </Suspense>
    }
}

#[island]
fn ObjectiveForm(season: Season, objective: Option<Objective>) -> impl IntoView {
    let action = ServerAction::<SaveObjective>::new();
    let errors: FormErrors = RwSignal::new(FieldErrors::new());
    watch_outcome(action, errors);
    let dates = season.dates();
    // The quarter rule needs the season's dates, which this page has: check it in the browser too.
    let submit = submit_with_checks(action, errors, move |f| {
        objective_form(f).and_then(|(_, _, _, input)| input.validate(&dates).map(|_| ()))
    });
    let input = objective.as_ref().map(Objective::to_input).unwrap_or_default();
    let quarters: Vec<(String, String)> =
        Quarter::spanning(&season.dates()).iter().map(|q| (q.to_string(), q.to_string())).collect();
    let quarter = if input.quarter.is_empty() { quarters[0].0.clone() } else { input.quarter.clone() };
    let commitments = vec![
        ("committed".to_owned(), "Committed (expected 100 %)".to_owned()),
        ("aspirational".to_owned(), "Aspirational (expected 70 %)".to_owned()),
    ];
    let commitment = if input.commitment.is_empty() { "committed".to_owned() } else { input.commitment.clone() };
    view! {
        <form class="form" method="post" action=SaveObjective::url() on:submit=submit novalidate>
            <FormMessages errors/>
            <input type="hidden" name="season_id" value=season.id.0.to_string()/>
            <Identity id=objective.as_ref().map(|o| o.id.0) version=objective.as_ref().map(|o| o.version.0)/>
            <Input label="Title" name="title" errors value=input.title required=true/>
            <TextArea label="Description" name="description" errors value=input.description/>
            <div class="row">
                <Select label="Quarter" name="quarter" errors options=quarters value=quarter/>
                <Select label="Commitment" name="commitment" errors options=commitments value=commitment/>
            </div>
            <div class="row">
                <Input label="Owner" name="owner" errors value=input.owner/>
                <Input label="Weight" name="weight" kind="number" step="any" errors
                    value=input.weight.map(fmt_number).unwrap_or_else(|| "1".into()) hint="Relative weight in the season's roll-up."/>
            </div>
            <button type="submit" disabled=move || action.pending().get()>
                {if objective.is_some() { "Save objective" } else { "Create objective" }}
            </button>
        </form>
    }
}

/// The measure fields of a key result or squad goal. Only the figures the chosen kind needs are shown;
/// without JavaScript all are shown and the others are ignored.
#[component]
pub fn MeasureFields(errors: FormErrors, input: MeasureInput) -> impl IntoView {
    let initial = if input.kind.is_empty() { "increase-to".to_owned() } else { input.kind.clone() };
    let kind = RwSignal::new(initial.clone());
    let options: Vec<(String, String)> =
        MeasureKind::ALL.iter().map(|k| (k.as_str().to_owned(), k.label().to_owned())).collect();
    let shows = move |kinds: &'static [&'static str]| move || !kinds.contains(&kind.get().as_str());
    let num = |v: Option<f64>| v.map(fmt_number).unwrap_or_default();
    view! {
        <fieldset class="measure">
            <legend>"Measure"</legend>
            <Select label="Kind" name="kind" errors options value=initial on_change=Callback::new(move |v| kind.set(v))/>
            <div class="row">
                <div class="slot" class:hidden=shows(&["increase-to", "decrease-to"])>
                    <Input label="Start" name="start" kind="number" step="any" errors value=num(input.start)/>
                </div>
                <div class="slot" class:hidden=shows(&["increase-to", "decrease-to"])>
                    <Input label="Target" name="target" kind="number" step="any" errors value=num(input.target)/>
                </div>
                <div class="slot" class:hidden=shows(&["keep-above", "keep-below"])>
                    <Input label="Threshold" name="threshold" kind="number" step="any" errors value=num(input.threshold)/>
                </div>
                <div class="slot" class:hidden=shows(&["within-range"])>
                    <Input label="Low" name="low" kind="number" step="any" errors value=num(input.low)/>
                </div>
                <div class="slot" class:hidden=shows(&["within-range"])>
                    <Input label="High" name="high" kind="number" step="any" errors value=num(input.high)/>
                </div>
                <div class="slot" class:hidden=shows(&["increase-to", "decrease-to", "keep-above", "keep-below", "within-range"])>
                    <Input label="Unit" name="unit" errors value=input.unit.clone() hint="For example %, ms, USD."/>
                </div>
            </div>
        </fieldset>
    }
}

#[component]
pub fn NewKeyResultPage() -> impl IntoView {
    let id = param_id("id");
    let data = Resource::new(
        move || id.get(),
        |id| async move {
            match id {
                Some(id) => Ok((get_objective(id).await?, metric_choices().await?)),
                None => Err(missing_id()),
            }
        },
    );
    view! {
        <Suspense fallback=loading>
            {move || Suspend::new(async move {
                match data.await {
                    Err(e) => view! { <LoadError error=e/> }.into_any(),
                    Ok(((o, _), metrics)) => view! {
                        <Title text="New key result"/>
                        <h1>"New key result"</h1>
                        <p class="lede">{format!("For objective {}", o.title)}</p>
                        <KeyResultForm objective=o.id key_result=None metrics/>
                    }.into_any(),
                }
            })}
        </Suspense>
    }
}

#[component]
pub fn EditKeyResultPage() -> impl IntoView {
    let id = param_id("id");
    let data = Resource::new(
        move || id.get(),
        |id| async move {
            match id {
                Some(id) => Ok((load_key_result(id).await?, metric_choices().await?)),
                None => Err(missing_id()),
            }
        },
    );
    view! {
        <Suspense fallback=loading>
            {move || Suspend::new(async move {
                match data.await {
                    Err(e) => view! { <LoadError error=e/> }.into_any(),
                    Ok((d, metrics)) => view! {
                        <Title text="Edit key result"/>
                        <h1>"Edit key result"</h1>
                        <KeyResultForm objective=d.objective.id key_result=Some(d.key_result) metrics/>
                    }.into_any(),
                }
            })}
        </Suspense>
    }
}

#[island]
fn KeyResultForm(
    objective: ObjectiveId,
    key_result: Option<KeyResult>,
    metrics: Vec<(String, String)>,
) -> impl IntoView {
    let action = ServerAction::<SaveKeyResult>::new();
    let errors: FormErrors = RwSignal::new(FieldErrors::new());
    watch_outcome(action, errors);
    let submit = submit_with_checks(action, errors, |f| key_result_form(f).map(|_| ()));
    let input = key_result.as_ref().map(KeyResult::to_input).unwrap_or_default();
    view! {
        <form class="form" method="post" action=SaveKeyResult::url() on:submit=submit novalidate>
            <FormMessages errors/>
            <input type="hidden" name="objective_id" value=objective.0.to_string()/>
            <Identity id=key_result.as_ref().map(|k| k.id.0) version=key_result.as_ref().map(|k| k.version.0)/>
            <Input label="Title" name="title" errors value=input.title.clone() required=true/>
            <MeasureFields errors input=input.measure()/>
            <div class="row">
                <Input label="Weight" name="weight" kind="number" step="any" errors
                    value=input.weight.map(fmt_number).unwrap_or_else(|| "1".into())/>
                <Input label="Confidence (%)" name="confidence" kind="number" step="5" errors
                    value=input.confidence.map(|c| fmt_number(c * 100.0)).unwrap_or_default() hint="How likely the target is met, as the owner sees it."/>
            </div>
            <Select label="Fed by metric" name="metric" errors value=input.metric.clone()
                options=std::iter::once((String::new(), "none: check-ins set the current value".to_owned())).chain(metrics).collect()/>
            <button type="submit" disabled=move || action.pending().get()>
                {if key_result.is_some() { "Save key result" } else { "Create key result" }}
            </button>
        </form>
    }
}

#[component]
pub fn KeyResultPage() -> impl IntoView {
    let id = param_id("id");
    let detail = Resource::new(
        move || id.get(),
        |id| async move {
            match id {
                Some(id) => load_key_result_page(id).await,
                None => Err(missing_id()),
            }
        },
    );
    view! {
        <Suspense fallback=loading>
            {move || Suspend::new(async move {
                match detail.await {
                    Err(e) => view! { <LoadError error=e/> }.into_any(),
                    Ok((d, series)) => view! { <KeyResultView detail=d series/> }.into_any(),
                }
            })}
        </Suspense>
    }
}

#[component]
fn KeyResultView(detail: KeyResultDetail, series: Option<MetricSeries>) -> impl IntoView {
    let kr = detail.key_result;
    let note = progress_note(&detail.progress, kr.measure.unit(), kr.current);
    let open = detail.season.status != SeasonStatus::Closed;
    // Key results and their check-ins are part of the plan: only those who may change it see the
    // controls (the service refuses everyone else anyway).
    let editor = crate::may(slope_domain::Action::EditPlan);
    view! {
        <Title text=kr.title.clone()/>
        <p class="crumbs">
            <a href=format!("/seasons/{}", detail.season.id)>{detail.season.name.clone()}</a>
            " › " {detail.objective.title.clone()}
        </p>
        <div class="page-head">
            <h1>{kr.title.clone()}</h1>
            {(open && editor).then(|| view! { <a href=format!("/key-results/{}/edit", kr.id) class="button secondary">"Edit"</a> })}
        </div>
        <p class="meta">
            {format!("{} · {} · weight {} · key ", kr.measure.kind().label(), kr.measure.describe(), fmt_number(kr.weight))}
            <code>{kr.key.clone()}</code>" · "
            <a href=format!("/audit?entity=key_result&id={}", kr.id)>"History"</a>
        </p>
        <ProgressBar score=detail.progress.score expectation=detail.expectation label="Key result progress"/>
        <p class="hint">{note}{kr.confidence.map(|c| format!(" · confidence {}", percent(c)))}</p>
        <p class="kr-projection">{projection_text(&kr, &detail.objective, &detail.season, &detail.check_ins, series.as_ref())}</p>
        {series.map(|s| view! { <MetricPanel series=s measure=kr.measure.clone()/> })}
        {kr.metric.is_some().then(|| view! { <super::KeyResultBudget id=kr.id.0/> })}
        <section class="grid-2">
            {if !editor {
                ().into_any()
            } else if kr.metric.is_some() {
                view! {
                    <div class="panel">
                        <h2>"Check in"</h2>
                        <p class="hint">"The metric sets this key result's current value; a check-in would be replaced by its next point. Unlink the metric (Edit) to check in by hand."</p>
                    </div>
                }.into_any()
            } else {
                view! {
                    <div class="panel">
                        <h2>"Check in"</h2>
                        <CheckInForm kind=SubjectKind::KeyResult subject=kr.id.0 milestone=kr.measure == Measure::Milestone/>
                    </div>
                }.into_any()
            }}
            <div class="panel">
                <h2>"History"</h2>
                <CheckInChart check_ins=detail.check_ins.clone() measure=kr.measure.clone()/>
                <CheckInHistory check_ins=detail.check_ins unit=kr.measure.unit().to_owned()/>
            </div>
        </section>
        <section>
            <h2>"Squad goals laddering up"</h2>
            {if detail.goals.is_empty() {
                view! { <p class="empty">"No squad goal ladders up to this key result yet."</p> }.into_any()
            } else {
                view! { <ul class="goals">{detail.goals.into_iter().map(|g| view! { <GoalChip node=g/> }).collect_view()}</ul> }.into_any()
            }}
        </section>
    }
}

#[island]
pub fn CheckInForm(kind: SubjectKind, subject: i64, milestone: bool) -> impl IntoView {
    let action = ServerAction::<RecordCheckIn>::new();
    let errors: FormErrors = RwSignal::new(FieldErrors::new());
    watch_outcome(action, errors);
    let submit = submit_with_checks(action, errors, |f| check_in_form(f).map(|_| ()));
    view! {
        <form class="form" method="post" action=RecordCheckIn::url() on:submit=submit novalidate>
            <FormMessages errors/>
            <input type="hidden" name="subject_kind" value=kind.as_str()/>
            <input type="hidden" name="subject_id" value=subject.to_string()/>
            {if milestone {
                view! {
                    <input type="hidden" name="value" value=""/>
                    <div class="field check">
                        <input id="done" name="done" type="checkbox"/>
                        <label for="done">"Done"</label>
                    </div>
                }.into_any()
            } else {
                view! { <Input label="Value" name="value" kind="number" step="any" errors value="" required=true/> }.into_any()
            }}
            <div class="row">
                <Input label="Confidence (%)" name="confidence" kind="number" step="5" errors value=""
                    hint="How likely the target is met, 0 to 100."/>
                <Input label="Your name" name="author" errors value="" required=true/>
            </div>
            <TextArea label="Note" name="note" errors value="" rows=2/>
            <button type="submit" disabled=move || action.pending().get()>"Record check-in"</button>
        </form>
    }
}

#[component]
pub fn CheckInHistory(check_ins: Vec<slope_domain::CheckIn>, unit: String) -> impl IntoView {
    if check_ins.is_empty() {
        return view! { <p class="empty">"No check-ins yet."</p> }.into_any();
    }
    view! {
        <table class="history">
            <thead><tr><th scope="col">"When (UTC)"</th><th scope="col">"Value"</th><th scope="col">"Confidence"</th><th scope="col">"Who"</th><th scope="col">"Note"</th></tr></thead>
            <tbody>
                {check_ins.into_iter().map(|c| view! {
                    <tr>
                        <td>{c.recorded_at.format("%Y-%m-%d %H:%M").to_string()}</td>
                        <td>{format!("{} {}", fmt_number(c.value), unit)}</td>
                        <td>{c.confidence.map(percent).unwrap_or_default()}</td>
                        <td>{c.author}</td>
                        <td>{c.note.unwrap_or_default()}</td>
                    </tr>
                }).collect_view()}
            </tbody>
        </table>
    }
    .into_any()
}

/// The metric feeding a key result or squad goal: its series with CI band and the measure's target
/// drawn in, and whether it is stale.
#[component]
pub fn MetricPanel(series: MetricSeries, measure: Measure) -> impl IntoView {
    let m = &series.metric;
    let format = super::metric_format(m.kind);
    let references: Vec<(f64, String)> = match measure {
        Measure::IncreaseTo { target, .. } | Measure::DecreaseTo { target, .. } => vec![(target, "target".into())],
        Measure::KeepAbove { threshold, .. } | Measure::KeepBelow { threshold, .. } => {
            vec![(threshold, "threshold".into())]
        }
        Measure::WithinRange { low, high, .. } => vec![(low, "low".into()), (high, "high".into())],
        Measure::Milestone => vec![],
    };
    let latest = series.points.last().cloned();
    let chart = ChartSeries {
        name: m.name.clone(),
        points: series.points.iter().map(|p| (p.bucket, p.value, p.ci_low.zip(p.ci_high))).collect(),
    };
    let status = match &latest {
        None => "no point yet".to_owned(),
        Some(p) => format!(
            "latest {} for {} (newest data {} UTC){}",
            format(p.value),
            p.bucket,
            p.observed_at.format("%Y-%m-%d %H:%M"),
            p.ci_low
                .zip(p.ci_high)
                .map(|(l, h)| format!(", 95 % CI {} – {}", format(l), format(h)))
                .unwrap_or_default()
        ),
    };
    view! {
        <section class="panel metric-feed" data-metric=m.key.clone()>
            <div class="row-head">
                <h2>"Fed by " <a href=format!("/metrics/{}", m.key)>{m.name.clone()}</a></h2>
                {if series.stale {
                    view! { <span class="badge warn">{format!("stale: no data for more than {} h", m.freshness_hours)}</span> }.into_any()
                } else {
                    view! { <span class="badge ok">"fresh"</span> }.into_any()
                }}
            </div>
            <p class="hint metric-latest">{status}</p>
            <LineChart series=vec![chart] references title=format!("{} over time", m.name) format/>
        </section>
    }
}

/// The key result's forecast at its end (its quarter's, or the season's if sooner) from its metric or
/// its check-ins, or its outcome once that day has passed, as the season dashboard's outlook judges it.
fn projection_text(
    kr: &KeyResult,
    objective: &Objective,
    season: &Season,
    check_ins: &[CheckIn],
    series: Option<&MetricSeries>,
) -> String {
    let readings = match series {
        Some(s) => KeyResultReadings::from_metric(&s.points),
        None => KeyResultReadings::from_check_ins(check_ins),
    };
    let ends_on = key_result_ends_on(objective.quarter, season.ends_on);
    match project_measure(&readings.points, &kr.measure, ends_on, chrono::Utc::now().date_naive()) {
        Projection::Forecast(f) => format!("Forecast for {ends_on}: {}", f.summary),
        Projection::Outcome(o) => format!("Outcome: {}", o.summary),
        Projection::TooFewPoints => format!(
            "No forecast for {ends_on} yet: it needs readings on at least {MIN_TREND_POINTS} days ({} so far, from its {}).",
            readings.points.len(),
            readings.evidence.as_str()
        ),
    }
}
