//! The runner's pages: jobs (with live progress and the loss curve of a running job) and models (with
//! lineage, eval scores, aliases and every promotion decision), plus the datasets they came from.

use leptos::prelude::*;
use leptos_meta::Title;

use super::{LoadError, loading, missing_id, param_id};
use crate::api::*;

fn status_class(status: &str) -> &'static str {
    match status {
        "succeeded" => "badge ok",
        "failed" => "badge bad",
        "cancelled" => "badge muted",
        "running" => "badge live",
        _ => "badge",
    }
}

fn finished(status: &str) -> bool {
    matches!(status, "succeeded" | "failed" | "cancelled")
}

#[component]
pub fn JobsPage() -> impl IntoView {
    let data = Resource::new(|| (), |_| load_jobs());
    view! {
        <Title text="Jobs"/>
        <h1>"Jobs"</h1>
        <p class="lede">
            "Pre-training, fine-tuning (SFT, DPO) and eval jobs, queued in the database and run by workers. "
            "Queue one with POST /api/v1/jobs or slope runner train."
        </p>
        <Suspense fallback=loading>
            {move || Suspend::new(async move {
                match data.await {
                    Err(e) => view! { <LoadError error=e/> }.into_any(),
                    Ok(jobs) if jobs.is_empty() => view! { <p class="empty">"No jobs yet."</p> }.into_any(),
                    Ok(jobs) => view! { <JobTable jobs/> }.into_any(),
                }
            })}
        </Suspense>
    }
}

#[component]
fn JobTable(jobs: Vec<JobRow>) -> impl IntoView {
    view! {
        <table class="table">
            <caption class="sr-only">"Jobs, newest first"</caption>
            <thead><tr><th>"Job"</th><th>"Kind"</th><th>"Status"</th><th>"Progress"</th><th>"Attempts"</th><th>"Queued"</th><th>"Model"</th></tr></thead>
            <tbody>
                {jobs.into_iter().map(|j| {
                    let pct = if j.total_steps > 0 { 100.0 * j.step as f64 / j.total_steps as f64 } else { 0.0 };
                    view! {
                        <tr>
                            <td><a href=format!("/jobs/{}", j.id)>{format!("#{}", j.id)}</a></td>
                            <td>{j.kind.clone()}</td>
                            <td><span class=status_class(&j.status)>{j.status.clone()}</span></td>
                            <td>
                                <progress max=j.total_steps.max(1) value=j.step aria-label=format!("job {} progress", j.id)></progress>
                                {format!(" {}/{} ({pct:.0} %)", j.step, j.total_steps)}
                            </td>
                            <td>{j.attempts}</td>
                            <td>{j.created_at.clone()}</td>
                            <td>{j.model_id.map(|m| view! { <a href="/models">{format!("model {m}")}</a> })}</td>
                        </tr>
                    }
                }).collect_view()}
            </tbody>
        </table>
    }
}

#[component]
pub fn JobPage() -> impl IntoView {
    let id = param_id("id");
    let data = Resource::new(
        move || id.get(),
        |id| async move {
            match id {
                Some(id) => load_job(id).await,
                None => Err(missing_id()),
            }
        },
    );
    view! {
        <Suspense fallback=loading>
            {move || Suspend::new(async move {
                match data.await {
                    Err(e) => view! { <LoadError error=e/> }.into_any(),
                    Ok(view) => view! { <JobDetail view/> }.into_any(),
                }
            })}
        </Suspense>
    }
}

#[component]
fn JobDetail(view: JobView) -> impl IntoView {
    let JobView { job, spec, result, points } = view;
    view! {
        <Title text=format!("Job {}", job.id)/>
        <p class="crumbs"><a href="/jobs">"Jobs"</a></p>
        <h1>{format!("Job #{} · {}", job.id, job.kind)}</h1>
        <JobLive id=job.id status=job.status.clone() step=job.step total=job.total_steps points/>
        {job.error.clone().map(|e| view! { <p class="load-error" role="alert">{e}</p> })}
        <section>
            <h2>"Specification"</h2>
            <pre class="code">{spec}</pre>
        </section>
        {result.map(|r| view! { <section><h2>"Result"</h2><pre class="code">{r}</pre></section> })}
        <p class="muted">{format!("Queued {} · attempts {}", job.created_at, job.attempts)}</p>
    }
    .into_any()
}

/// A line over step numbers: the loss curve (and DPO's reward margin) as an SVG that grows while the
/// job runs, with a title, a description and the latest value in text for screen readers.
#[component]
fn StepChart(#[prop(into)] title: String, points: Signal<Vec<(i64, f64)>>) -> impl IntoView {
    const W: f64 = 640.0;
    const H: f64 = 200.0;
    const PAD: f64 = 36.0;
    let geometry = move || {
        let pts = points.get();
        if pts.is_empty() {
            return None;
        }
        let (s0, s1) = (pts[0].0 as f64, pts[pts.len() - 1].0 as f64);
        let (lo, hi) = pts.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), p| (lo.min(p.1), hi.max(p.1)));
        let span = if hi > lo { hi - lo } else { 1.0 };
        let x = |s: f64| if s1 > s0 { PAD + (s - s0) / (s1 - s0) * (W - 1.5 * PAD) } else { W / 2.0 };
        let y = |v: f64| H - PAD / 2.0 - (v - lo) / span * (H - PAD);
        let line: String =
            pts.iter().map(|p| format!("{:.1},{:.1}", x(p.0 as f64), y(p.1))).collect::<Vec<_>>().join(" ");
        Some((line, lo, hi, s0 as i64, s1 as i64, pts[pts.len() - 1].1))
    };
    let title_id = format!("chart-{}", title.to_lowercase().replace(' ', "-"));
    let labelled_by = title_id.clone();
    let desc = {
        let title = title.clone();
        move || {
            geometry()
                .map(|(_, lo, hi, s0, s1, last)| {
                    format!("{title} from step {s0} to {s1}: between {lo:.4} and {hi:.4}, latest {last:.4}.")
                })
                .unwrap_or_else(|| "No steps yet.".to_owned())
        }
    };
    view! {
        <figure class="chart">
            <svg viewBox=format!("0 0 {W} {H}") role="img" aria-labelledby=labelled_by width="100%">
                <title id=title_id>{title.clone()}</title>
                <desc>{desc.clone()}</desc>
                {move || geometry().map(|(line, lo, hi, s0, s1, _)| view! {
                    <line x1=PAD y1=H - PAD / 2.0 x2=W - PAD / 2.0 y2=H - PAD / 2.0 class="axis"/>
                    <text x=PAD y=H - 4.0 class="tick">{format!("step {s0}")}</text>
                    <text x=W - PAD * 2.5 y=H - 4.0 class="tick">{format!("step {s1}")}</text>
                    <text x=2.0 y=PAD / 2.0 + 4.0 class="tick">{format!("{hi:.3}")}</text>
                    <text x=2.0 y=H - PAD / 2.0 class="tick">{format!("{lo:.3}")}</text>
                    <polyline points=line class="series s0" fill="none"/>
                })}
            </svg>
            <figcaption>{desc}</figcaption>
        </figure>
    }
    .into_any()
}

/// The live part of a job's page: status, progress and the loss curve, following the job's server-sent
/// events until it ends. Without JavaScript it shows the state at page load.
#[island]
fn JobLive(id: i64, status: String, step: i64, total: i64, points: Vec<StepPoint>) -> impl IntoView {
    let status = RwSignal::new(status);
    let step = RwSignal::new(step);
    let points = RwSignal::new(points);
    let cancel = Action::new(move |_: &()| async move { cancel_job(id).await });
    Effect::new(move |_| {
        if let Some(Ok(job)) = cancel.value().get() {
            status.set(job.status.clone());
        }
    });
    #[cfg(feature = "hydrate")]
    {
        let initial = status.get_untracked();
        if !finished(&initial) {
            follow(id, status, step, points);
        }
    }
    let loss = Signal::derive(move || points.get().iter().map(|p| (p.step, p.loss)).collect::<Vec<_>>());
    let margin = Signal::derive(move || {
        points.get().iter().filter_map(|p| p.reward_margin.map(|m| (p.step, m))).collect::<Vec<_>>()
    });
    let latest = move || {
        points.get().last().map(|p| {
            format!(
                "loss {:.4} · lr {:.2e} · grad norm {:.3} · {:.0} tokens/s",
                p.loss, p.lr, p.grad_norm, p.tokens_per_s
            )
        })
    };
    view! {
        <section class="job-live" aria-live="polite">
            <p>
                <span class=move || status_class(&status.get())>{move || status.get()}</span>
                " "
                <progress max=total.max(1) value=move || step.get() aria-label="progress"></progress>
                {move || format!(" step {} of {}", step.get(), total)}
            </p>
            <p class="muted">{latest}</p>
            <Show when=move || !finished(&status.get())>
                <button type="button" class="secondary" on:click=move |_| { cancel.dispatch(()); }
                    disabled=move || cancel.pending().get()>"Cancel job"</button>
            </Show>
            {move || cancel.value().get().and_then(|r| r.err()).map(|e| view! { <p role="alert">{e.to_string()}</p> })}
            <StepChart title="Training loss" points=loss/>
            <Show when=move || !margin.get().is_empty()>
                <StepChart title="DPO reward margin" points=margin/>
            </Show>
        </section>
    }
    .into_any()
}

/// Subscribes to the job's event stream: `metrics` events append steps, `job` events update the status
/// and step; the stream is closed when the job ends.
#[cfg(feature = "hydrate")]
fn follow(id: i64, status: RwSignal<String>, step: RwSignal<i64>, points: RwSignal<Vec<StepPoint>>) {
    use wasm_bindgen::JsCast;
    use wasm_bindgen::closure::Closure;
    let Ok(source) = web_sys::EventSource::new(&format!("/api/v1/jobs/{id}/events")) else { return };
    let on_metrics = Closure::<dyn FnMut(web_sys::MessageEvent)>::new(move |e: web_sys::MessageEvent| {
        let Some(text) = e.data().as_string() else { return };
        if let Ok(new) = serde_json::from_str::<Vec<StepPoint>>(&text) {
            points.update(|all| {
                // A resumed job repeats the steps after its checkpoint: keep one point per step.
                if let Some(first) = new.first() {
                    all.retain(|p| p.step < first.step);
                }
                all.extend(new);
            });
        }
    });
    let closer = source.clone();
    let on_job = Closure::<dyn FnMut(web_sys::MessageEvent)>::new(move |e: web_sys::MessageEvent| {
        let Some(text) = e.data().as_string() else { return };
        // Only the two fields the page shows are read, into a struct: a generic JSON value would add its
        // whole parser and tree to the browser bundle.
        #[derive(serde::Deserialize)]
        struct JobState {
            status: String,
            step: i64,
        }
        if let Ok(job) = serde_json::from_str::<JobState>(&text) {
            step.set(job.step);
            if finished(&job.status) {
                closer.close();
            }
            status.set(job.status);
        }
    });
    let _ = source.add_event_listener_with_callback("metrics", on_metrics.as_ref().unchecked_ref());
    let _ = source.add_event_listener_with_callback("job", on_job.as_ref().unchecked_ref());
    // The listeners live as long as the page.
    on_metrics.forget();
    on_job.forget();
}

#[component]
pub fn ModelsPage() -> impl IntoView {
    let data = Resource::new(|| (), |_| load_models());
    view! {
        <Title text="Models"/>
        <h1>"Models"</h1>
        <p class="lede">
            "Every model version with its lineage, eval scores and reward; a loop's champion serves its suggestions, "
            "and a challenger replaces it only through the promotion gate."
        </p>
        <Suspense fallback=loading>
            {move || Suspend::new(async move {
                match data.await {
                    Err(e) => view! { <LoadError error=e/> }.into_any(),
                    Ok(view) => view! { <ModelsView view/> }.into_any(),
                }
            })}
        </Suspense>
    }
}

#[component]
fn ModelsView(view: ModelsView) -> impl IntoView {
    let ModelsView { models, promotions, datasets } = view;
    view! {
        <section>
            <h2>"Model versions"</h2>
            {if models.is_empty() {
                view! { <p class="empty">"No models yet. Import one with slope runner import DIR --name NAME, or pre-train with a pretrain job."</p> }.into_any()
            } else {
                view! {
                    <table class="table">
                        <caption class="sr-only">"Models, newest first"</caption>
                        <thead><tr><th>"Model"</th><th>"Kind"</th><th>"Aliases"</th><th>"Base"</th><th>"Data"</th><th>"Job"</th><th>"Parameters"</th><th>"Eval scores"</th><th>"Reward"</th></tr></thead>
                        <tbody>
                            {models.into_iter().map(|m| view! {
                                <tr id=format!("model-{}", m.id)>
                                    <td><strong>{m.name.clone()}</strong>{m.loop_key.clone().map(|l| view! { <br/><span class="muted">{format!("loop {l}")}</span> })}</td>
                                    <td>{m.kind.clone()}</td>
                                    <td>{m.aliases.iter().map(|a| view! { <span class="badge live">{a.clone()}</span>" " }).collect_view()}</td>
                                    <td>{m.base.clone().map(|(id, name)| view! { <a href=format!("#model-{id}")>{name}</a> })}</td>
                                    <td><code>{m.dataset_digest.clone().map(|d| d.chars().take(19).collect::<String>())}</code></td>
                                    <td>{m.job_id.map(|j| view! { <a href=format!("/jobs/{j}")>{format!("#{j}")}</a> })}</td>
                                    <td>{m.parameters}</td>
                                    <td>{m.scores.iter().map(|(k, v)| format!("{k} {v:.4}")).collect::<Vec<_>>().join(" · ")}</td>
                                    <td>{m.reward.map(|r| format!("{r:.4}")).unwrap_or_else(|| "not evaluated".into())}</td>
                                </tr>
                            }).collect_view()}
                        </tbody>
                    </table>
                }.into_any()
            }}
        </section>
        <section>
            <h2>"Promotion decisions"</h2>
            {if promotions.is_empty() {
                view! { <p class="empty">"No promotions yet."</p> }.into_any()
            } else {
                view! {
                    <table class="table">
                        <thead><tr><th>"When"</th><th>"Loop"</th><th>"Challenger"</th><th>"Champion then"</th><th>"Decision"</th><th>"Why"</th></tr></thead>
                        <tbody>
                            {promotions.into_iter().map(|p| view! {
                                <tr>
                                    <td>{p.at}</td><td>{p.loop_key}</td><td>{p.challenger}</td>
                                    <td>{p.champion.unwrap_or_else(|| "none".into())}</td>
                                    <td><span class=if p.accepted { "badge ok" } else { "badge bad" }>{if p.accepted { "promoted" } else { "refused" }}</span></td>
                                    <td>{p.reason}</td>
                                </tr>
                            }).collect_view()}
                        </tbody>
                    </table>
                }.into_any()
            }}
        </section>
        <section>
            <h2>"Datasets"</h2>
            {if datasets.is_empty() {
                view! { <p class="empty">"No datasets yet. Build them from a loop with slope datasets build --loop KEY."</p> }.into_any()
            } else {
                view! {
                    <table class="table">
                        <thead><tr><th>"Dataset"</th><th>"Kind"</th><th>"Rows"</th><th>"Digest"</th><th>"Source"</th><th>"Created"</th></tr></thead>
                        <tbody>
                            {datasets.into_iter().map(|d| view! {
                                <tr>
                                    <td>{format!("#{} {}", d.id, d.name)}</td><td>{d.kind}</td><td>{d.rows}</td>
                                    <td><code>{d.digest}</code></td><td>{d.source}</td><td>{d.created_at}</td>
                                </tr>
                            }).collect_view()}
                        </tbody>
                    </table>
                }.into_any()
            }}
        </section>
    }
}
