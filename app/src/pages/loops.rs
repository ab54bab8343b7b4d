//! The product's loops: their events, metrics (with charts), retention and drift alerts, and the form
//! that defines a metric.

use leptos::prelude::*;
use leptos::server_fn::ServerFn;
use leptos_meta::Title;
use leptos_router::hooks::use_params_map;
use slope_domain::*;

use super::{LoadError, loading};
use crate::api::*;
use crate::components::*;

/// The text route parameter `name`.
fn param_text(name: &'static str) -> Memo<String> {
    let params = use_params_map();
    Memo::new(move |_| params.read().get(name).unwrap_or_default())
}

/// How a metric's values read: shares as percentages, counts as numbers.
pub fn metric_format(kind: MetricKind) -> fn(f64) -> String {
    match kind {
        MetricKind::AcceptanceRate | MetricKind::Retention => share_text,
        MetricKind::Ltv => money_text,
        MetricKind::ActiveUsers | MetricKind::EvalScore | MetricKind::Custom => number_text,
    }
}

/// An acceptance difference in percentage points.
fn points_text(difference: f64) -> String {
    format!("{:+.1} pp", difference * 100.0)
}

/// A measured online lift with its always-valid interval (an unbounded end reads ∞).
fn online_lift_text(lift: &OnlineLift) -> String {
    let end = |v: Option<f64>, inf: &str| v.map(|v| format!("{:+.1}", v * 100.0)).unwrap_or_else(|| inf.to_owned());
    format!(
        "{} [{}, {}] ({})",
        points_text(lift.difference),
        end(lift.ci_low, "−∞"),
        end(lift.ci_high, "+∞"),
        lift.experiment
    )
}

/// Why the newest computation left a bucket without a point, and what that means for what it feeds.
#[component]
pub fn MetricProblemNote(problem: MetricProblem) -> impl IntoView {
    view! {
        <p class="notice warn" role="status">
            {format!(
                "No point for the week of {}: {}. What this metric feeds keeps its last value and is flagged stale once that is older than the freshness limit. (Noted {} UTC.)",
                problem.bucket,
                problem.message,
                problem.recorded_at.format("%Y-%m-%d %H:%M"),
            )}
        </p>
    }
}

pub(crate) fn series_of(metric: &MetricSeries) -> ChartSeries {
    ChartSeries {
        name: metric.metric.name.clone(),
        points: metric.points.iter().map(|p| (p.bucket, p.value, p.ci_low.zip(p.ci_high))).collect(),
    }
}

#[component]
pub fn LoopsPage() -> impl IntoView {
    let data = Resource::new(|| (), |_| load_loops());
    view! {
        <Title text="Loops"/>
        <h1>"Loops"</h1>
        <p class="lede">"What the product's loops do, measured from their events: the metrics that feed key results."</p>
        <Suspense fallback=loading>
            {move || Suspend::new(async move {
                match data.await {
                    Err(e) => view! { <LoadError error=e/> }.into_any(),
                    Ok(overview) => view! { <LoopsOverviewView overview/> }.into_any(),
                }
            })}
        </Suspense>
    }
}

#[component]
fn LoopsOverviewView(overview: LoopsOverview) -> impl IntoView {
    let loop_keys: Vec<String> = overview.loops.iter().map(|l| l.key.clone()).collect();
    view! {
        <section>
            <h2>"Event streams"</h2>
            {if overview.loops.is_empty() {
                view! { <p class="empty">"No events yet. Send a batch to POST /api/v1/loops/{loop}/events or run slope ingest FILE --loop KEY."</p> }.into_any()
            } else {
                view! {
                    <table class="compact">
                        <thead><tr><th scope="col">"Loop"</th><th scope="col">"Events"</th><th scope="col">"Segments"</th><th scope="col">"First event (UTC)"</th><th scope="col">"Last event (UTC)"</th></tr></thead>
                        <tbody>
                            {overview.loops.into_iter().map(|l| view! {
                                <tr>
                                    <th scope="row"><a href=format!("/loops/{}", l.key)>{l.key.clone()}</a></th>
                                    <td>{l.events}</td>
                                    <td>{l.segments}</td>
                                    <td>{l.first_event}</td>
                                    <td>{l.last_event}</td>
                                </tr>
                            }).collect_view()}
                        </tbody>
                    </table>
                }.into_any()
            }}
        </section>
        <section>
            <h2>"Metrics"</h2>
            {if overview.metrics.is_empty() {
                view! { <p class="empty">"No metric is defined yet."</p> }.into_any()
            } else {
                view! {
                    <ul class="metrics">
                        {overview.metrics.into_iter().map(|m| {
                            let format = metric_format(m.metric.kind);
                            let latest = m.points.last().map(|p| format(p.value)).unwrap_or_else(|| "no data".into());
                            let chart = series_of(&m);
                            view! {
                                <li class="metric-card">
                                    <div class="row-head">
                                        <a href=format!("/metrics/{}", m.metric.key)>{m.metric.name.clone()}</a>
                                        <span class="muted">{format!("{} · {} · v{}", m.metric.key, m.metric.kind, m.metric.version)}</span>
                                        {m.stale.then(|| view! { <span class="badge warn">"stale"</span> })}
                                    </div>
                                    <p class="score">{latest}</p>
                                    <LineChart series=vec![chart] title=m.metric.name.clone() format/>
                                </li>
                            }
                        }).collect_view()}
                    </ul>
                }.into_any()
            }}
        </section>
        <section>
            <h2>"Drift alerts"</h2>
            {if overview.alerts.is_empty() {
                view! { <p class="empty">"No drift alert: no checked field moved beyond PSI 0.1."</p> }.into_any()
            } else {
                view! {
                    <table class="compact">
                        <thead><tr><th scope="col">"When"</th><th scope="col">"Loop"</th><th scope="col">"Field"</th><th scope="col">"Reference"</th><th scope="col">"Current"</th><th scope="col">"PSI"</th><th scope="col">"JS distance"</th><th scope="col">"Band"</th></tr></thead>
                        <tbody>
                            {overview.alerts.into_iter().map(|a| {
                                let major = a.band == "major";
                                view! {
                                <tr class:warn=major>
                                    <td>{a.created_at.format("%Y-%m-%d %H:%M").to_string()}</td>
                                    <td>{a.loop_key}</td>
                                    <td>{a.field}</td>
                                    <td>{format!("{} – {}", a.reference_start, a.reference_end)}</td>
                                    <td>{format!("{} – {}", a.current_start, a.current_end)}</td>
                                    <td>{format!("{:.3}", a.psi)}</td>
                                    <td>{format!("{:.3}", a.js_distance)}</td>
                                    <td>{a.band}</td>
                                </tr>
                            }}).collect_view()}
                        </tbody>
                    </table>
                }.into_any()
            }}
        </section>
        <section class="panel">
            <h2>"Define a metric"</h2>
            <MetricForm metric=None loops=loop_keys/>
        </section>
    }
}

#[island]
fn MetricForm(metric: Option<MetricDefinition>, loops: Vec<String>) -> impl IntoView {
    let action = ServerAction::<SaveMetric>::new();
    let errors: FormErrors = RwSignal::new(FieldErrors::new());
    watch_outcome(action, errors);
    let submit = submit_with_checks(action, errors, |f| metric_form(f).map(|_| ()));
    let input = metric.as_ref().map(MetricDefinition::to_input).unwrap_or_default();
    let kinds: Vec<(String, String)> =
        MetricKind::ALL.iter().map(|k| (k.as_str().to_owned(), format!("{} — {}", k.as_str(), k.label()))).collect();
    let granularities =
        vec![("day".to_owned(), "day".to_owned()), ("week".to_owned(), "week (ISO, from Monday)".to_owned())];
    let editing = metric.is_some();
    view! {
        <form class="form" method="post" action=SaveMetric::url() on:submit=submit novalidate>
            <FormMessages errors/>
            <input type="hidden" name="version" value=metric.as_ref().map(|m| m.version.to_string()).unwrap_or_default()/>
            <div class="row">
                {if editing {
                    view! { <input type="hidden" name="key" value=input.key.clone()/> }.into_any()
                } else {
                    view! { <Input label="Key" name="key" errors value=input.key.clone() required=true hint="Lowercase letters, digits, - _ . — used in URLs and the API."/> }.into_any()
                }}
                <Input label="Name" name="name" errors value=input.name.clone() required=true/>
            </div>
            <div class="row">
                <Select label="Kind" name="kind" errors options=kinds value=input.kind.clone()/>
                <Input label="Loop" name="loop_key" errors value=input.loop_key.clone()
                    hint="Required for computed kinds (acceptance-rate, active-users, retention)."/>
            </div>
            <div class="row">
                <Input label="Only variant" name="variant" errors value=input.variant.clone() hint="Empty: all variants."/>
                <Input label="Only unit" name="unit" errors value=input.unit.clone() hint="Empty: all organisation units."/>
            </div>
            <div class="row">
                <Select label="Granularity" name="granularity" errors options=granularities value=if input.granularity.is_empty() { "day".to_owned() } else { input.granularity.clone() }/>
                <Input label="Window (days)" name="window_days" kind="number" step="1" errors
                    value=input.window_days.map(|d| d.to_string()).unwrap_or_default() hint="Each point over this many trailing days; empty: the bucket itself."/>
                <Input label="Freshness limit (hours)" name="freshness_hours" kind="number" step="1" errors
                    value=input.freshness_hours.map(|h| h.to_string()).unwrap_or_default() hint="Older data flags what the metric feeds as stale. Default 48 (daily) or 192 (weekly)."/>
            </div>
            {(!loops.is_empty()).then(|| view! { <p class="hint">{format!("Loops with events: {}", loops.join(", "))}</p> })}
            <button type="submit" disabled=move || action.pending().get()>
                {if editing { "Save a new version" } else { "Create metric" }}
            </button>
        </form>
    }
}

#[component]
pub fn MetricPage() -> impl IntoView {
    let key = param_text("key");
    let data = Resource::new(move || key.get(), load_metric);
    view! {
        <Suspense fallback=loading>
            {move || Suspend::new(async move {
                match data.await {
                    Err(e) => view! { <LoadError error=e/> }.into_any(),
                    Ok(series) => view! { <MetricView series/> }.into_any(),
                }
            })}
        </Suspense>
    }
}

#[component]
fn MetricView(series: MetricSeries) -> impl IntoView {
    let m = series.metric.clone();
    let format = metric_format(m.kind);
    let chart = series_of(&series);
    let filters = [m.variant.as_ref().map(|v| format!("variant {v}")), m.unit.as_ref().map(|u| format!("unit {u}"))]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>();
    let description = format!(
        "{} · {}{} · per {}{} · stale after {} h · version {}",
        m.kind.label(),
        match (&m.loop_key, m.kind) {
            (_, MetricKind::Ltv) => "from transactions".to_owned(),
            (Some(l), _) => format!("loop {l}"),
            (None, _) => "pushed".to_owned(),
        },
        if filters.is_empty() { String::new() } else { format!(" ({})", filters.join(", ")) },
        m.granularity,
        m.window_days.map(|d| format!(", {d}-day window")).unwrap_or_default(),
        m.freshness_hours,
        m.version
    );
    let loops = m.loop_key.iter().cloned().collect();
    view! {
        <Title text=m.name.clone()/>
        {if m.kind == MetricKind::Ltv {
            view! { <p class="crumbs"><a href="/customers">"Customers"</a></p> }.into_any()
        } else {
            view! { <p class="crumbs"><a href="/loops">"Loops"</a>{m.loop_key.clone().map(|l| view! { " › " <a href=format!("/loops/{l}")>{l.clone()}</a> })}</p> }.into_any()
        }}
        <div class="page-head">
            <h1>{m.name.clone()}</h1>
            {series.stale.then(|| view! { <span class="badge warn">"stale"</span> })}
        </div>
        <p class="meta">{description}</p>
        {series.problem.clone().map(|p| view! { <MetricProblemNote problem=p/> })}
        <LineChart series=vec![chart] title=m.name.clone() format/>
        <table class="history">
            <thead><tr><th scope="col">"Bucket"</th><th scope="col">"Value"</th><th scope="col">"95 % CI"</th><th scope="col">"n"</th><th scope="col">"Newest data (UTC)"</th></tr></thead>
            <tbody>
                {series.points.iter().rev().take(60).map(|p| view! {
                    <tr>
                        <td>{p.bucket.to_string()}</td>
                        <td>{format(p.value)}</td>
                        <td>{p.ci_low.zip(p.ci_high).map(|(l, h)| format!("{} – {}", format(l), format(h))).unwrap_or_default()}</td>
                        <td>{p.n.map(|n| n.to_string()).unwrap_or_default()}</td>
                        <td>{p.observed_at.format("%Y-%m-%d %H:%M").to_string()}</td>
                    </tr>
                }).collect_view()}
            </tbody>
        </table>
        <section class="panel">
            <h2>"Change the definition"</h2>
            <p class="hint">"Saving creates a new version with its own series; the old version's points are kept."</p>
            <MetricForm metric=Some(m) loops/>
        </section>
    }
}

#[component]
pub fn LoopPage() -> impl IntoView {
    let key = param_text("key");
    let data = Resource::new(move || key.get(), load_loop);
    let stack = Resource::new(move || key.get(), load_loop_stack);
    let simulator = Resource::new(|| (), |_| load_simulator());
    view! {
        <Suspense fallback=loading>
            {move || Suspend::new(async move {
                match simulator.await {
                    Ok(status) if status.running => {
                        view! { <SimulatorBanner status loop_key=key.get_untracked()/> }.into_any()
                    }
                    _ => ().into_any(),
                }
            })}
        </Suspense>
        <Suspense fallback=loading>
            {move || Suspend::new(async move {
                match data.await {
                    Err(e) => view! { <LoadError error=e/> }.into_any(),
                    Ok(view) => view! { <LoopDetail view/> }.into_any(),
                }
            })}
        </Suspense>
        <Suspense fallback=loading>
            {move || Suspend::new(async move {
                match stack.await {
                    Err(_) => ().into_any(),
                    Ok(stack) => view! { <LoopStackView stack/> }.into_any(),
                }
            })}
        </Suspense>
        {move || view! { <super::LoopBudgets loop_key=key.get()/> }}
    }
}

/// Labels the demo's simulated traffic as simulated, with what the simulator is doing in this loop. It
/// renders on the server with the state as the page was loaded and, once hydrated, asks again every
/// five seconds, so the phase and counters move while the page is open.
#[island]
fn SimulatorBanner(status: SimulatorStatus, loop_key: String) -> impl IntoView {
    let current = RwSignal::new(status);
    #[cfg(feature = "hydrate")]
    {
        let poll = set_interval_with_handle(
            move || {
                leptos::task::spawn_local(async move {
                    if let Ok(status) = load_simulator().await {
                        current.set(status);
                    }
                });
            },
            std::time::Duration::from_secs(5),
        );
        if let Ok(handle) = poll {
            on_cleanup(move || handle.clear());
        }
    }
    let rate = move || {
        current.with(|s| s.suggestions_per_minute.map(|r| format!("{r:.0} suggestions a minute")).unwrap_or_default())
    };
    let detail = move || current.with(|s| banner_detail(s, &loop_key));
    view! {
        <aside class="banner simulated" role="status" data-testid="simulator-banner">
            <strong>"Simulated traffic: "</strong>
            {move || format!("simulated clinicians and a simulated operator ({}) are using this demo's loops (demo mode). ", rate())}
            {detail}
        </aside>
    }
}

/// What the simulator is doing in `loop_key`, in one line.
fn banner_detail(status: &SimulatorStatus, loop_key: &str) -> String {
    match status.loops.iter().find(|l| l.loop_key == loop_key) {
        Some(l) => {
            let acceptance = if l.chars_suggested > 0 {
                format!(
                    ", {} of suggested characters kept",
                    share_text(l.chars_accepted as f64 / l.chars_suggested as f64)
                )
            } else {
                String::new()
            };
            format!(
                "{} ({}): {} · since this server started: {} suggestions served{acceptance}, {} labels from simulated expert annotators, {} iterations, {} promoted · last: {} ({} UTC)",
                l.scenario,
                l.loop_key,
                l.phase,
                l.suggestions_served,
                l.annotations,
                l.iterations,
                l.promoted,
                l.last_action,
                when(l.last_action_at),
            )
        }
        None => "this loop is not simulated; its events are whatever was sent to it.".into(),
    }
}

fn when(t: Option<chrono::DateTime<chrono::Utc>>) -> String {
    t.map(|t| t.format("%Y-%m-%d %H:%M").to_string()).unwrap_or_else(|| "—".into())
}

fn hours_text(h: f64) -> String {
    if h >= 48.0 { format!("{:.1} d", h / 24.0) } else { format!("{h:.1} h") }
}

/// The post-training stack as a row of cards, the iterations derived from lineage, and the metabolism.
#[component]
fn LoopStackView(stack: LoopStack) -> impl IntoView {
    let LoopStack { stages, iterations, metabolism, gate, .. } = stack;
    let gate = gate.map(|g| {
        format!(
            "Promotion gate: offline, a challenger needs {} over the champion's reward on the same held-out data (the interval by resampling the held-out items); online, in an experiment of exactly the two models (control_model = champion, treatment_model = challenger), it must be {}{} (PUT /api/v1/loops/{}/gate).",
            g.offline.label(),
            g.online.label(),
            g.set_by.map(|by| format!("; set by {by}")).unwrap_or_else(|| "; the default".into()),
            g.loop_key
        )
    });
    let m = metabolism;
    let summary = format!(
        "{}{} iterations, {} promoted · mean cycle time {} · measured online lift per promoted iteration {} (offline reward change {})",
        match (&m.season, m.iterations_per_week) {
            (Some(s), Some(r)) => format!("Season {s}: {r:.2} iterations per week · all time: "),
            _ => String::new(),
        },
        m.iterations,
        m.promoted,
        m.mean_cycle_hours.map(hours_text).unwrap_or_else(|| "—".into()),
        m.online_lift_per_iteration.map(points_text).unwrap_or_else(|| "—".into()),
        m.lift_per_iteration.map(|l| format!("{l:+.4}")).unwrap_or_else(|| "—".into()),
    );
    let series = |f: fn(&MetabolismWeek) -> Option<f64>| -> Vec<(chrono::NaiveDate, f64)> {
        m.weeks.iter().filter_map(|w| f(w).map(|v| (w.week, v))).collect()
    };
    let iterations_per_week = series(|w| Some(w.iterations as f64));
    let cycle = series(|w| w.cycle_hours);
    let lift = series(|w| w.lift);
    let annotations = series(|w| Some(w.expert_annotations as f64));
    let feedback = series(|w| Some(w.annotations as f64));
    view! {
        <section aria-labelledby="stack-heading">
            <h2 id="stack-heading">"Post-training stack"</h2>
            <ul class="cards stack-stages">
                {stages.into_iter().map(|s| view! {
                    <li class=format!("card stage-card status-{}", s.status)>
                        <h3>{s.name.clone()}</h3>
                        <p>{s.artefact.clone().unwrap_or_else(|| "Nothing yet".into())}</p>
                        <p><span class="badge">{s.status.clone()}</span></p>
                        <p class="muted">{format!("Last activity: {} UTC", when(s.last_activity))}</p>
                    </li>
                }).collect_view()}
            </ul>
        </section>
        <section aria-labelledby="iterations-heading">
            <h2 id="iterations-heading">"Iterations"</h2>
            <p class="hint">"Derived from lineage: each promotion decision on a model trained by a job on a dataset built from this loop's events."</p>
            {gate.map(|g| view! { <p class="meta gate-policy">{g}</p> })}
            {if iterations.is_empty() {
                view! { <p class="empty">"No iterations yet: build datasets, fine-tune a challenger and take it through the promotion gate."</p> }.into_any()
            } else {
                view! {
                    <table class="compact iterations">
                        <thead><tr>
                            <th scope="col">"Model"</th><th scope="col">"First event"</th><th scope="col">"Dataset"</th>
                            <th scope="col">"Job"</th><th scope="col">"Eval"</th><th scope="col">"Experiment"</th>
                            <th scope="col">"Decided (UTC)"</th><th scope="col">"Outcome"</th><th scope="col">"Online lift"</th><th scope="col">"Reward change"</th><th scope="col">"Cycle time"</th>
                            <th scope="col">"Annotations used"</th>
                        </tr></thead>
                        <tbody>
                            {iterations.into_iter().map(|i| view! {
                                <tr>
                                    <th scope="row">{i.model.clone()}</th>
                                    <td>{when(i.first_event_at)}</td>
                                    <td>{format!("{} #{} · {}", i.dataset, i.dataset_id, when(Some(i.dataset_created_at)))}</td>
                                    <td>{i.job_id.map(|j| format!("#{j} · {} → {}", when(i.job_started_at), when(i.job_finished_at))).unwrap_or_else(|| "—".into())}</td>
                                    <td>{format!("{} · {}", i.reward.map(|r| format!("{r:.4}")).unwrap_or_else(|| "—".into()), when(i.evaluated_at))}</td>
                                    <td>{i.experiment.clone().unwrap_or_else(|| "—".into())}</td>
                                    <td>{when(Some(i.decided_at))}</td>
                                    <td><span class="badge" title=i.reason.clone()>{i.outcome.clone()}</span></td>
                                    <td>{i.online_lift.as_ref().map(online_lift_text).unwrap_or_else(|| "—".into())}</td>
                                    <td>{match (i.reward_change, i.reward_interval) {
                                        (Some(c), Some((lo, hi))) => format!("{c:+.4} [{lo:+.4}, {hi:+.4}]"),
                                        (Some(c), None) => format!("{c:+.4}"),
                                        _ => "—".into(),
                                    }}</td>
                                    <td>{i.cycle_hours.map(hours_text).unwrap_or_else(|| "—".into())}</td>
                                    <td>{i.annotations_used.map(|n| n.to_string()).unwrap_or_else(|| "—".into())}</td>
                                </tr>
                            }).collect_view()}
                        </tbody>
                    </table>
                }.into_any()
            }}
        </section>
        <section aria-labelledby="metabolism-heading">
            <h2 id="metabolism-heading">"Metabolism"</h2>
            <p class="meta">{summary}</p>
            <div class="row">
                <WeeklyBars id="metabolism-iterations" title="Iterations per week" points=iterations_per_week format=|v| format!("{v:.0}")/>
                <WeeklyBars id="metabolism-cycle" title="Mean cycle time per week (first event to decision)" points=cycle format=hours_text/>
                <WeeklyBars id="metabolism-lift" title="Reward lift of promotions per week" points=lift format=|v| format!("{v:+.4}")/>
                <WeeklyBars id="metabolism-annotations" title="Annotations per week" points=annotations format=|v| format!("{v:.0}")/>
                <WeeklyBars id="metabolism-feedback" title="User feedback rows per week" points=feedback format=|v| format!("{v:.0}")/>
            </div>
            <p class="meta">{format!("{} expert annotations in the weeks shown", m.expert_annotations)}</p>
            <p class="hint">{m.annotation_method.clone()}</p>
            <table class="compact metabolism-table">
                <caption>"Metabolism per ISO week (from Monday)"</caption>
                <thead><tr>
                    <th scope="col">"Week of"</th><th scope="col">"Iterations"</th><th scope="col">"Promoted"</th>
                    <th scope="col">"Mean cycle time"</th><th scope="col">"Lift"</th><th scope="col">"Annotations"</th>
                    <th scope="col">"Feedback rows"</th>
                </tr></thead>
                <tbody>
                    {m.weeks.into_iter().map(|w| view! {
                        <tr>
                            <th scope="row">{w.week.to_string()}</th>
                            <td>{w.iterations}</td><td>{w.promoted}</td>
                            <td>{w.cycle_hours.map(hours_text).unwrap_or_else(|| "—".into())}</td>
                            <td>{w.lift.map(|l| format!("{l:+.4}")).unwrap_or_else(|| "—".into())}</td>
                            <td>{w.expert_annotations}</td>
                            <td>{w.annotations}</td>
                        </tr>
                    }).collect_view()}
                </tbody>
            </table>
        </section>
    }
}

/// A small accessible bar chart of weekly values: the SVG has a title and a description that reads
/// every value; the table under the charts carries the same numbers.
#[component]
fn WeeklyBars(
    id: &'static str,
    title: &'static str,
    points: Vec<(chrono::NaiveDate, f64)>,
    format: fn(f64) -> String,
) -> impl IntoView {
    const W: f64 = 320.0;
    const H: f64 = 140.0;
    const PAD: f64 = 24.0;
    let desc = if points.is_empty() {
        "No data yet.".to_owned()
    } else {
        points.iter().map(|(d, v)| format!("week of {d}: {}", format(*v))).collect::<Vec<_>>().join("; ")
    };
    let most = points.iter().map(|(_, v)| v.abs()).fold(0.0_f64, f64::max).max(f64::MIN_POSITIVE);
    let slot = (W - PAD) / points.len().max(1) as f64;
    let bar = (slot * 0.6).min(40.0);
    let bars = points
        .iter()
        .enumerate()
        .map(|(i, (d, v))| {
            let height = (v.abs() / most) * (H - 2.0 * PAD);
            let x = PAD + slot * i as f64 + (slot - bar) / 2.0;
            let y = H - PAD - height;
            let tip = format!("week of {d}: {}", format(*v));
            view! {
                <rect class=if *v < 0.0 { "bar negative" } else { "bar" } x=format!("{x:.1}") y=format!("{y:.1}") width=format!("{bar:.1}") height=format!("{height:.1}")>
                    <title>{tip}</title>
                </rect>
                <text class="axis" x=format!("{:.1}", x + bar / 2.0) y=H - PAD + 14.0 text-anchor="middle">{d.format("%d %b").to_string()}</text>
            }
        })
        .collect_view();
    view! {
        <figure class="chart weekly-bars">
            <svg viewBox=format!("0 0 {W} {H}") role="img" aria-labelledby=format!("{id}-title {id}-desc") preserveAspectRatio="xMidYMid meet">
                <title id=format!("{id}-title")>{title}</title>
                <desc id=format!("{id}-desc")>{desc}</desc>
                <line class="ref start" x1=PAD x2=W - 4.0 y1=H - PAD y2=H - PAD></line>
                {bars}
            </svg>
            <figcaption class="muted">{title}</figcaption>
        </figure>
    }
}

#[component]
fn LoopDetail(view: LoopView) -> impl IntoView {
    // One series per line, in the order the service lists the lines (arms, champion, earlier models),
    // so each keeps its colour from one visit to the next.
    let mut by_line: Vec<ChartSeries> =
        view.lines.iter().map(|l| ChartSeries { name: l.label.clone(), points: vec![] }).collect();
    for row in &view.acceptance {
        let Ok(day) = row.day.parse::<chrono::NaiveDate>() else { continue };
        let point = (day, row.value, row.ci_low.zip(row.ci_high));
        match by_line.iter_mut().find(|s| s.name == row.variant) {
            Some(s) => s.points.push(point),
            None => by_line.push(ChartSeries { name: row.variant.clone(), points: vec![point] }),
        }
    }
    by_line.retain(|s| !s.points.is_empty());
    let legend_note = view
        .lines
        .iter()
        .filter(|l| l.role == LineRole::Earlier)
        .map(|l| {
            format!(
                "“{}” pools {} variant{} served before: {}.",
                l.label,
                l.variants.len(),
                if l.variants.len() == 1 { "" } else { "s" },
                l.variants.join(", ")
            )
        })
        .collect::<String>();
    let max_weeks = view.cohorts.iter().map(|c| c.shares.len()).max().unwrap_or(0);
    view! {
        <Title text=format!("Loop {}", view.key)/>
        <p class="crumbs"><a href="/loops">"Loops"</a></p>
        <h1>{format!("Loop {}", view.key)}</h1>
        {view.summary.map(|s| view! {
            <p class="meta">{format!("{} events in {} segments, {} – {} (UTC)", s.events, s.segments, s.first_event, s.last_event)}</p>
        })}
        <section>
            <h2>"Character acceptance per arm, last 28 days of data"</h2>
            <LineChart series=by_line title="Acceptance rate per arm and day" format=share_text bounds=(0.0, 1.0)/>
            <p class="hint">{view.method}</p>
            {(!legend_note.is_empty()).then(|| view! { <p class="hint earlier-models">{legend_note}</p> })}
        </section>
        <section>
            <h2>"Weekly cohort retention"</h2>
            {if view.cohorts.is_empty() {
                view! { <p class="empty">"No cohorts yet."</p> }.into_any()
            } else {
                view! {
                    <table class="heatmap">
                        <thead><tr>
                            <th scope="col">"Cohort (week of)"</th><th scope="col">"Users"</th>
                            {(0..max_weeks).map(|w| view! { <th scope="col">{format!("W{w}")}</th> }).collect_view()}
                        </tr></thead>
                        <tbody>
                            {view.cohorts.into_iter().map(|c| view! {
                                <tr>
                                    <th scope="row">{c.week}</th>
                                    <td>{c.size}</td>
                                    {c.shares.into_iter().map(|s| view! {
                                        <td style=format!("background: rgba(37, 99, 235, {:.2})", 0.08 + 0.8 * s) title=share_text(s)>{format!("{:.0}", s * 100.0)}</td>
                                    }).collect_view()}
                                </tr>
                            }).collect_view()}
                        </tbody>
                    </table>
                }.into_any()
            }}
        </section>
        <section>
            <h2>"Metrics of this loop"</h2>
            <ul>
                {view.metrics.into_iter().map(|m| view! {
                    <li><a href=format!("/metrics/{}", m.key)>{m.name.clone()}</a><span class="muted">{format!(" · {} · v{}", m.kind, m.version)}</span></li>
                }).collect_view()}
            </ul>
        </section>
        <section>
            <h2>"Recent batches"</h2>
            <table class="compact">
                <thead><tr><th scope="col">"Batch"</th><th scope="col">"Received (UTC)"</th><th scope="col">"Rows"</th><th scope="col">"Stored"</th><th scope="col">"Duplicates"</th></tr></thead>
                <tbody>
                    {view.batches.into_iter().map(|b| view! {
                        <tr><td>{b.id}</td><td>{b.received_at}</td><td>{b.rows}</td><td>{b.stored}</td><td>{b.duplicates}</td></tr>
                    }).collect_view()}
                </tbody>
            </table>
        </section>
    }
}
