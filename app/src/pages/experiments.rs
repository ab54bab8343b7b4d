//! A/B experiments: the list, and one experiment's analysis (each arm's acceptance with its interval,
//! the difference and lift with theirs, the always-valid test, the sample-ratio check) with a form to
//! stop it early.

use leptos::prelude::*;
use leptos::server_fn::ServerFn;
use leptos_meta::Title;
use slope_domain::ab_report::{AbReport, AlwaysValid, Arm, Difference};
use slope_domain::*;

use super::{LoadError, loading};
use crate::api::*;
use crate::components::*;

#[component]
pub fn ExperimentsPage() -> impl IntoView {
    let data = Resource::new(|| (), |_| async move { load_experiments().await });
    view! {
        <Title text="Experiments"/>
        <h1>"Experiments"</h1>
        <p class="lede">
            "A/B tests of two variants of a loop, randomised by user: defined below or through "
            <code>"POST /api/v1/experiments"</code>" (the demo's simulator starts one per fine-tune)."
        </p>
        <Suspense fallback=loading>
            {move || Suspend::new(async move {
                match data.await {
                    Err(e) => view! { <LoadError error=e/> }.into_any(),
                    Ok(list) if list.is_empty() => view! { <p class="empty">"No experiments yet."</p> }.into_any(),
                    Ok(list) => view! { <ExperimentTable experiments=list/> }.into_any(),
                }
            })}
        </Suspense>
        {crate::may(slope_domain::Action::Operate).then(|| view! {
            <section class="panel" aria-labelledby="new-experiment-heading">
                <h2 id="new-experiment-heading">"New experiment"</h2>
                <NewExperimentForm/>
            </section>
        })}
    }
}

#[island]
fn NewExperimentForm() -> impl IntoView {
    let action = ServerAction::<CreateExperiment>::new();
    let errors: FormErrors = RwSignal::new(FieldErrors::new());
    watch_outcome(action, errors);
    // The browser checks what the domain checks before anything is sent; the server checks again.
    let submit = submit_with_checks(action, errors, |f: &CreateExperiment| {
        let expected_share = f.expected_share.trim().parse::<f64>().ok().map(|p| p / 100.0);
        let input = ExperimentInput {
            key: f.key.clone(),
            name: f.name.clone(),
            loop_key: f.loop_key.clone(),
            control: f.control.clone(),
            treatment: f.treatment.clone(),
            starts_on: f.starts_on.clone(),
            ends_on: f.ends_on.clone(),
            expected_share,
            control_model: f.control_model.trim().parse().ok(),
            treatment_model: f.treatment_model.trim().parse().ok(),
        };
        input.validate().map(|_| ()).map_err(|fields| fields.renamed("loop", "loop_key"))
    });
    view! {
        <form class="form" method="post" action=CreateExperiment::url() on:submit=submit novalidate>
            <FormMessages errors/>
            <Input label="Key" name="key" errors value="" required=true hint="Lower-case letters, digits and dashes; names it in the API."/>
            <Input label="Name" name="name" errors value="" required=true/>
            <Input label="Loop" name="loop_key" errors value="" required=true hint="The loop's key, such as notes."/>
            <div class="grid-2">
                <Input label="Control variant" name="control" errors value="" required=true hint="The variant that stands for the current thinking."/>
                <Input label="Treatment variant" name="treatment" errors value="" required=true/>
                <Input label="Control model id" name="control_model" kind="number" errors value=""
                    hint="The model the control arm serves (the loop's champion), if a model serves it."/>
                <Input label="Treatment model id" name="treatment_model" kind="number" errors value=""
                    hint="The challenger: the promotion gate weighs this experiment only for these two models."/>
                <Input label="Starts on" name="starts_on" kind="date" errors value="" required=true/>
                <Input label="Ends on" name="ends_on" kind="date" errors value="" required=true/>
            </div>
            <Input label="Treatment share (%)" name="expected_share" kind="number" step="any" errors value="50"
                hint="The share of users meant to see the treatment; the sample-ratio check compares the observed split with it."/>
            <button type="submit" disabled=move || action.pending().get()>"Create experiment"</button>
        </form>
    }
}

#[component]
fn ExperimentTable(experiments: Vec<Experiment>) -> impl IntoView {
    let mut experiments = experiments;
    // Newest first: the running ones are what an operator looks for.
    experiments.sort_by_key(|e| std::cmp::Reverse(e.created_at));
    let rows = experiments
        .into_iter()
        .map(|e| {
            let state = match e.stopped_at {
                Some(at) => format!("stopped {}", at.format("%Y-%m-%d %H:%M UTC")),
                None => format!("{} → {}", e.starts_on, e.ends_on),
            };
            view! {
                <tr>
                    <th scope="row"><a href=format!("/experiments/{}", e.key)>{e.name.clone()}</a></th>
                    <td><a href=format!("/loops/{}", e.loop_key)>{e.loop_key.clone()}</a></td>
                    <td>{format!("{} vs {}", e.control, e.treatment)}</td>
                    <td>{state}</td>
                </tr>
            }
        })
        .collect_view();
    view! {
        <table class="experiments">
            <thead><tr><th scope="col">"Experiment"</th><th scope="col">"Loop"</th><th scope="col">"Control vs treatment"</th><th scope="col">"Dates"</th></tr></thead>
            <tbody>{rows}</tbody>
        </table>
    }
}

#[component]
pub fn ExperimentPage() -> impl IntoView {
    let params = leptos_router::hooks::use_params_map();
    let key = move || params.with(|p| p.get("key").unwrap_or_default());
    let data = Resource::new(key, |key| async move { load_experiment(key).await });
    view! {
        <Suspense fallback=loading>
            {move || Suspend::new(async move {
                match data.await {
                    Err(e) => view! { <LoadError error=e/> }.into_any(),
                    Ok(page) => view! { <ExperimentView page/> }.into_any(),
                }
            })}
        </Suspense>
    }
}

#[component]
fn ExperimentView(page: ExperimentPage) -> impl IntoView {
    let ExperimentPage { experiment: e, report, pending } = page;
    let title = format!("{} — experiment", e.name);
    let stoppable = e.stopped_at.is_none() && crate::may(slope_domain::Action::Operate);
    let state = match e.stopped_at {
        Some(at) => format!("stopped {}", at.format("%Y-%m-%d %H:%M UTC")),
        None => format!("runs {} → {}", e.starts_on, e.ends_on),
    };
    let body = match (report, pending) {
        (Some(r), _) => view! { <Analysis report=r/> }.into_any(),
        (None, why) => view! {
            <p class="empty">{format!("No analysis yet: {}", why.unwrap_or_else(|| "no events".to_owned()))}</p>
        }
        .into_any(),
    };
    view! {
        <Title text=title.clone()/>
        <div class="page-head">
            <div>
                <h1>{title}</h1>
                <p class="meta">
                    {format!(
                        "Loop {} · control {}{} · treatment {}{} · designed treatment share {} · {state}",
                        e.loop_key,
                        e.control,
                        e.control_model_id.map(|m| format!(" (model {m})")).unwrap_or_default(),
                        e.treatment,
                        e.treatment_model_id.map(|m| format!(" (model {m})")).unwrap_or_default(),
                        share_text(e.expected_share)
                    )}
                </p>
            </div>
            <a href="/experiments" class="link">"All experiments"</a>
        </div>
        {body}
        {stoppable.then(|| view! { <StopExperimentForm key=e.key.clone()/> })}
    }
}

#[island]
fn StopExperimentForm(key: String) -> impl IntoView {
    let action = ServerAction::<StopExperiment>::new();
    let errors: FormErrors = RwSignal::new(FieldErrors::new());
    watch_outcome(action, errors);
    let submit = submit_with_checks(action, errors, |_| Ok(()));
    view! {
        <form class="form stop-experiment" method="post" action=StopExperiment::url() on:submit=submit>
            <FormMessages errors/>
            <input type="hidden" name="key" value=key/>
            <p class="hint">"Stopping assigns no more users to the arms (everyone gets the champion) and freezes the analysis at today."</p>
            <button type="submit" class="danger" disabled=move || action.pending().get()>"Stop experiment"</button>
        </form>
    }
}

/// A rate as a percentage with one decimal.
fn pct(v: f64) -> String {
    format!("{:.1} %", v * 100.0)
}

/// Percentage points with a sign.
fn points(v: f64) -> String {
    format!("{:+.1} pt", v * 100.0)
}

fn p_value(p: f64) -> String {
    if p < 0.0001 { "< 0.0001".to_owned() } else { format!("{p:.4}") }
}

#[component]
fn Analysis(report: AbReport) -> impl IntoView {
    let AbReport {
        control,
        treatment,
        difference,
        relative_lift,
        always_valid,
        sample_ratio,
        users_in_both,
        methods,
        ..
    } = report;
    let verdict = if sample_ratio.mismatch {
        "The users per arm do not match the designed split: the assignment is broken and the comparison is not to be trusted.".to_owned()
    } else if always_valid.ci_low > 0.0 {
        format!(
            "The treatment accepts more: the always-valid 95 % interval of the difference, {} to {}, lies above zero.",
            points(always_valid.ci_low),
            points(always_valid.ci_high)
        )
    } else if always_valid.ci_high < 0.0 {
        format!(
            "The treatment accepts less: the always-valid 95 % interval of the difference, {} to {}, lies below zero.",
            points(always_valid.ci_low),
            points(always_valid.ci_high)
        )
    } else {
        format!(
            "No difference is established yet: the always-valid 95 % interval of the difference, {} to {}, holds zero.",
            points(always_valid.ci_low),
            points(always_valid.ci_high)
        )
    };
    let arms = [&control, &treatment]
        .into_iter()
        .zip(["control", "treatment"])
        .map(|(a, role)| {
            view! {
                <tr>
                    <th scope="row">{format!("{} ({role})", a.variant)}</th>
                    <td>{a.users}</td>
                    <td>{a.events}</td>
                    <td>{pct(a.rate)}</td>
                    <td>{format!("{} – {}", pct(a.ci_low), pct(a.ci_high))}</td>
                </tr>
            }
        })
        .collect_view();
    let lift = match relative_lift {
        Some(l) => format!("{:+.1} % ({:+.1} % to {:+.1} %)", l.estimate * 100.0, l.ci_low * 100.0, l.ci_high * 100.0),
        None => "undefined (an arm's rate is 0)".to_owned(),
    };
    view! {
        <p class="experiment-verdict"><strong>{verdict}</strong></p>
        <IntervalChart control=control.clone() treatment=treatment.clone() difference=difference.clone() always_valid=always_valid.clone()/>
        <table class="experiment-arms">
            <caption>"Character acceptance by arm, with 95 % delta-method intervals"</caption>
            <thead><tr><th scope="col">"Arm"</th><th scope="col">"Users"</th><th scope="col">"Events"</th><th scope="col">"Acceptance"</th><th scope="col">"95 % interval"</th></tr></thead>
            <tbody>{arms}</tbody>
        </table>
        <dl class="experiment-figures">
            <dt>"Difference (treatment − control)"</dt>
            <dd>{format!("{} ({} to {}), z = {:.2}, fixed-horizon p = {}", points(difference.estimate), points(difference.ci_low), points(difference.ci_high), difference.z, p_value(difference.p_value))}</dd>
            <dt>"Relative lift"</dt>
            <dd>{lift}</dd>
            <dt>"Always-valid test"</dt>
            <dd>{format!("p = {} (valid at any number of looks), confidence sequence {} to {}", p_value(always_valid.p_value), points(always_valid.ci_low), points(always_valid.ci_high))}</dd>
            <dt>"Sample ratio"</dt>
            <dd>{format!("{} control / {} treatment users: treatment share {} against {} designed, p = {}{}", sample_ratio.control_users, sample_ratio.treatment_users, share_text(sample_ratio.observed_share_treatment), share_text(sample_ratio.expected_share_treatment), p_value(sample_ratio.p_value), if sample_ratio.mismatch { " — mismatch" } else { "" })}</dd>
            <dt>"Users in both arms"</dt>
            <dd>{users_in_both}</dd>
        </dl>
        <p class="hint">{methods}</p>
    }
}

/// The two arms' acceptance with their intervals, and the difference's fixed-horizon interval inside the
/// wider always-valid confidence sequence against zero, in SVG.
#[component]
fn IntervalChart(control: Arm, treatment: Arm, difference: Difference, always_valid: AlwaysValid) -> impl IntoView {
    const W: f64 = 560.0;
    const ROW: f64 = 28.0;
    const LEFT: f64 = 150.0;
    let (lo, hi) = (control.ci_low.min(treatment.ci_low), control.ci_high.max(treatment.ci_high));
    let pad = ((hi - lo) * 0.1).max(0.005);
    let (lo, hi) = ((lo - pad).max(0.0), (hi + pad).min(1.0));
    let x = move |v: f64| LEFT + (v - lo) / (hi - lo).max(1e-9) * (W - LEFT - 16.0);
    let (dlo, dhi) = (always_valid.ci_low.min(0.0), always_valid.ci_high.max(0.0));
    let dpad = ((dhi - dlo) * 0.1).max(0.002);
    let (dlo, dhi) = (dlo - dpad, dhi + dpad);
    let dx = move |v: f64| LEFT + (v - dlo) / (dhi - dlo).max(1e-9) * (W - LEFT - 16.0);
    let arm = |a: &Arm, row: f64| {
        let y = 12.0 + row * ROW;
        let tip = format!("{}: {} ({} – {})", a.variant, pct(a.rate), pct(a.ci_low), pct(a.ci_high));
        let title = tip.clone();
        view! {
            <text x="4" y=y + 4.0>{a.variant.clone()}</text>
            <line class="interval" x1=x(a.ci_low) y1=y x2=x(a.ci_high) y2=y></line>
            <circle class="point" cx=x(a.rate) cy=y r="4" tabindex="0" data-tip=tip><title>{title}</title></circle>
        }
    };
    let y = 12.0 + 2.5 * ROW;
    view! {
        <figure class="chart experiment-chart">
            <svg viewBox=format!("0 0 {W} {}", 4.0 * ROW) role="img" aria-labelledby="ab-title ab-desc">
                <title id="ab-title">"Acceptance by arm and the difference"</title>
                <desc id="ab-desc">{format!("Control {} and treatment {} with their 95 % intervals; the difference {} with its fixed-horizon interval inside the always-valid confidence sequence, against zero.", pct(control.rate), pct(treatment.rate), points(difference.estimate))}</desc>
                {arm(&control, 0.0)}
                {arm(&treatment, 1.0)}
                <text x="4" y=y + 4.0>"difference"</text>
                <line class="ref zero" x1=dx(0.0) y1=y - 10.0 x2=dx(0.0) y2=y + 10.0></line>
                <line class="interval always-valid" x1=dx(always_valid.ci_low) y1=y x2=dx(always_valid.ci_high) y2=y><title>"always-valid 95 % confidence sequence"</title></line>
                <line class="interval fixed" x1=dx(difference.ci_low) y1=y x2=dx(difference.ci_high) y2=y><title>"fixed-horizon 95 % interval"</title></line>
                <circle class="point" cx=dx(difference.estimate) cy=y r="4"></circle>
            </svg>
        </figure>
    }
}
