//! Building blocks shared by the pages: form fields with their messages, progress bars, badges.

use chrono::Datelike;
use leptos::ev::SubmitEvent;
use leptos::form::FromFormData;
use leptos::prelude::*;
use leptos::server_fn::ServerFn;
use slope_domain::{FieldErrors, Progress, Share, fmt_number};

use crate::api::Outcome;

/// Validation messages of one form: written by the browser-side check before submitting and by the
/// server's answer after.
pub type FormErrors = RwSignal<FieldErrors>;

/// A submit handler that parses the form into the server function's arguments, runs the domain's checks
/// in the browser and dispatches only valid input. Without JavaScript the form posts to the same server
/// function, which runs the same checks.
pub fn submit_with_checks<S>(
    action: ServerAction<S>,
    errors: FormErrors,
    check: impl Fn(&S) -> Result<(), FieldErrors> + 'static,
) -> impl Fn(SubmitEvent) + 'static
where
    S: ServerFn<Output = Outcome> + FromFormData + Clone + Send + Sync + 'static,
    S::Error: Send + Sync + 'static,
{
    move |ev: SubmitEvent| {
        ev.prevent_default();
        match S::from_event(&ev) {
            Ok(input) => match check(&input) {
                Ok(()) => {
                    errors.set(FieldErrors::new());
                    action.dispatch(input);
                }
                Err(found) => errors.set(found),
            },
            Err(e) => errors.set(FieldErrors::single("form", e.to_string())),
        }
    }
}

/// Shows the server's answer to a submission in `errors`. A success needs nothing here: the server
/// redirects to the saved entity.
pub fn watch_outcome<S>(action: ServerAction<S>, errors: FormErrors)
where
    S: ServerFn<Output = Outcome> + Clone + Send + Sync + 'static,
    S::Error: Clone + Send + Sync + 'static + std::fmt::Display,
{
    Effect::new(move || match action.value().get() {
        Some(Ok(Outcome::Invalid(found))) => errors.set(found),
        Some(Ok(Outcome::Conflict(message))) => errors.set(FieldErrors::single("form", message)),
        Some(Err(e)) => errors.set(FieldErrors::single("form", e.to_string())),
        Some(Ok(Outcome::Saved { .. })) | None => {}
    });
}

fn message(errors: FormErrors, name: &'static str) -> impl Fn() -> Option<String> + Send + Sync + 'static {
    move || errors.with(|e| e.get(name).map(|m| m.join("; ")))
}

/// The form-wide message (conflicts, server errors) and a summary of how many fields need attention.
#[component]
pub fn FormMessages(errors: FormErrors) -> impl IntoView {
    view! {
        <div class="form-messages" role="alert" aria-live="polite">
            {move || errors.with(|e| {
                let general = e.get("form").map(|m| m.join(" "));
                let count = e.0.keys().filter(|k| k.as_str() != "form").count();
                view! {
                    {general.map(|g| view! { <p class="error">{g}</p> })}
                    {(count > 0).then(|| view! {
                        <p class="error">{format!("Please correct {count} field{} below.", if count == 1 { "" } else { "s" })}</p>
                    })}
                }
            })}
        </div>
    }
}

/// A labelled input with its hint and error message, wired for screen readers.
#[component]
pub fn Input(
    label: &'static str,
    name: &'static str,
    errors: FormErrors,
    #[prop(into)] value: String,
    #[prop(default = "text")] kind: &'static str,
    #[prop(optional)] hint: Option<&'static str>,
    #[prop(optional)] required: bool,
    #[prop(optional)] step: Option<&'static str>,
) -> impl IntoView {
    let error = message(errors, name);
    let has_error = message(errors, name);
    view! {
        <div class="field" class:invalid=move || has_error().is_some()>
            <label for=name>{label}{required.then_some(" *")}</label>
            <input
                id=name
                name=name
                type=kind
                value=value
                step=step
                required=required
                aria-describedby=format!("{name}-hint {name}-error")
                aria-invalid=move || if errors.with(|e| e.get(name).is_some()) { "true" } else { "false" }
            />
            {hint.map(|h| view! { <p class="hint" id=format!("{name}-hint")>{h}</p> })}
            <p class="error" id=format!("{name}-error")>{error}</p>
        </div>
    }
}

#[component]
pub fn TextArea(
    label: &'static str,
    name: &'static str,
    errors: FormErrors,
    #[prop(into)] value: String,
    #[prop(optional)] hint: Option<&'static str>,
    #[prop(optional)] required: bool,
    #[prop(default = 3)] rows: u32,
) -> impl IntoView {
    let error = message(errors, name);
    let has_error = message(errors, name);
    view! {
        <div class="field" class:invalid=move || has_error().is_some()>
            <label for=name>{label}{required.then_some(" *")}</label>
            <textarea
                id=name
                name=name
                rows=rows
                required=required
                aria-describedby=format!("{name}-hint {name}-error")
                aria-invalid=move || if errors.with(|e| e.get(name).is_some()) { "true" } else { "false" }
            >{value}</textarea>
            {hint.map(|h| view! { <p class="hint" id=format!("{name}-hint")>{h}</p> })}
            <p class="error" id=format!("{name}-error")>{error}</p>
        </div>
    }
}

/// A select whose options are `(value, label)` pairs.
#[component]
pub fn Select(
    label: &'static str,
    name: &'static str,
    errors: FormErrors,
    options: Vec<(String, String)>,
    #[prop(into)] value: String,
    #[prop(optional)] on_change: Option<Callback<String>>,
) -> impl IntoView {
    let error = message(errors, name);
    let has_error = message(errors, name);
    view! {
        <div class="field" class:invalid=move || has_error().is_some()>
            <label for=name>{label}</label>
            <select
                id=name
                name=name
                aria-describedby=format!("{name}-error")
                on:change=move |ev| {
                    if let Some(cb) = on_change {
                        cb.run(event_target_value(&ev));
                    }
                }
            >
                {options
                    .into_iter()
                    .map(|(v, l)| {
                        let selected = v == value;
                        view! { <option value=v selected=selected>{l}</option> }
                    })
                    .collect_view()}
            </select>
            <p class="error" id=format!("{name}-error")>{error}</p>
        </div>
    }
}

/// Hidden form fields for the id and version of an edited entity (both empty when creating).
#[component]
pub fn Identity(id: Option<i64>, version: Option<i64>) -> impl IntoView {
    view! {
        <input type="hidden" name="id" value=id.map(|i| i.to_string()).unwrap_or_default()/>
        <input type="hidden" name="version" value=version.map(|v| v.to_string()).unwrap_or_default()/>
    }
}

pub fn percent(value: f64) -> String {
    format!("{:.0} %", value * 100.0)
}

/// A progress bar with a tick at the expected score, so "on track" is visible at a glance.
#[component]
pub fn ProgressBar(
    score: f64,
    #[prop(optional)] expectation: Option<f64>,
    #[prop(into)] label: String,
) -> impl IntoView {
    let width = format!("width: {:.1}%", score.clamp(0.0, 1.0) * 100.0);
    let tone = match expectation {
        Some(e) if score >= e => "good",
        Some(e) if score >= e * 0.7 => "fair",
        Some(_) => "poor",
        None => "neutral",
    };
    view! {
        <div class="progress">
            <div
                class=format!("bar {tone}")
                role="progressbar"
                aria-label=label
                aria-valuemin="0"
                aria-valuemax="100"
                aria-valuenow=format!("{:.0}", score * 100.0)
            >
                <span style=width></span>
                {expectation.map(|e| view! {
                    <i class="expect" style=format!("left: {:.1}%", e * 100.0) title=format!("expected {}", percent(e))></i>
                })}
            </div>
            <span class="score">{percent(score)}</span>
            {expectation.map(|e| view! { <span class="muted">{format!(" of {} expected", percent(e))}</span> })}
        </div>
    }
}

/// The current value of a measure in words: "no check-in yet", "12 ms to go", "0.05 below threshold".
pub fn progress_note(progress: &Progress, unit: &str, current: Option<f64>) -> String {
    let Some(current) = current else { return "no check-in yet".into() };
    let unit = if unit.is_empty() { String::new() } else { format!(" {unit}") };
    match progress.distance {
        Some(d) if d == 0.0 || progress.score >= 1.0 => format!("at {}{unit}: met", fmt_number(current)),
        Some(d) => format!("at {}{unit}; {} from where it must be", fmt_number(current), fmt_number(d.abs())),
        None => (if progress.score >= 1.0 { "done" } else { "not done yet" }).to_owned(),
    }
}

/// A squad's or the season's slope share against the target.
#[component]
pub fn ShareBadge(share: Option<Share>, target: f64) -> impl IntoView {
    match share.and_then(|s| s.share.map(|v| (s, v))) {
        None => view! { <span class="badge muted">"nothing planned"</span> }.into_any(),
        Some((s, value)) => {
            let class = if s.below_target { "badge warn" } else { "badge ok" };
            let text = format!(
                "slope {} of {} pw = {} (target {}){}",
                fmt_number(s.slope),
                fmt_number(s.total),
                percent(value),
                percent(target),
                if s.below_target { " — below target" } else { "" }
            );
            view! { <span class=class>{text}</span> }.into_any()
        }
    }
}

/// A chart of a measure's check-ins over time, with its start, target, threshold or range drawn in.
/// Server-rendered SVG: readable without JavaScript, with each point's value in a native tooltip; the
/// history table next to it carries the same numbers for screen readers.
#[component]
pub fn CheckInChart(check_ins: Vec<slope_domain::CheckIn>, measure: slope_domain::Measure) -> impl IntoView {
    use slope_domain::Measure;
    const W: f64 = 600.0;
    const H: f64 = 200.0;
    const PAD: f64 = 36.0;
    if check_ins.is_empty() || measure == Measure::Milestone {
        return ().into_any();
    }
    let mut points: Vec<(f64, f64, String)> = check_ins
        .iter()
        .map(|c| (c.recorded_at.timestamp_millis() as f64, c.value, c.recorded_at.format("%Y-%m-%d %H:%M").to_string()))
        .collect();
    points.sort_by(|a, b| a.0.total_cmp(&b.0));
    // Reference lines: (value, label, class).
    let references: Vec<(f64, &'static str, &'static str)> = match measure {
        Measure::IncreaseTo { start, target, .. } | Measure::DecreaseTo { start, target, .. } => {
            vec![(start, "start", "ref start"), (target, "target", "ref target")]
        }
        Measure::KeepAbove { threshold, .. } | Measure::KeepBelow { threshold, .. } => {
            vec![(threshold, "threshold", "ref target")]
        }
        Measure::WithinRange { low, high, .. } => vec![(low, "low", "ref target"), (high, "high", "ref target")],
        Measure::Milestone => vec![],
    };
    let values = points.iter().map(|p| p.1).chain(references.iter().map(|r| r.0));
    let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| (lo.min(v), hi.max(v)));
    let span = if hi > lo { hi - lo } else { 1.0 };
    let (lo, hi) = (lo - span * 0.1, hi + span * 0.1);
    let (t0, t1) = (points[0].0, points[points.len() - 1].0);
    // A single check-in sits in the middle rather than on the axis.
    let x = move |t: f64| if t1 > t0 { PAD + (t - t0) / (t1 - t0) * (W - 2.0 * PAD) } else { W / 2.0 };
    let y = move |v: f64| H - PAD / 2.0 - (v.clamp(lo, hi) - lo) / (hi - lo) * (H - PAD);
    let path: String = points
        .iter()
        .enumerate()
        .map(|(i, p)| format!("{}{:.1},{:.1}", if i == 0 { "M" } else { " L" }, x(p.0), y(p.1)))
        .collect();
    let unit = measure.unit().to_owned();
    let first = points[0].2.clone();
    let last = points[points.len() - 1].2.clone();
    let summary = format!(
        "{} check-ins from {first} to {last}; latest {} {unit}",
        points.len(),
        fmt_number(points[points.len() - 1].1)
    );
    view! {
        <figure class="chart">
            <svg viewBox=format!("0 0 {W} {H}") role="img" aria-labelledby="chart-title chart-desc" preserveAspectRatio="xMidYMid meet">
                <title id="chart-title">"Check-ins over time"</title>
                <desc id="chart-desc">{summary}</desc>
                {references.into_iter().map(|(v, label, class)| view! {
                    <line class=class x1=PAD x2=W - PAD / 2.0 y1=y(v) y2=y(v)></line>
                    <text class="ref-label" x=W - PAD / 2.0 y=y(v) - 4.0 text-anchor="end">{format!("{label} {}", fmt_number(v))}</text>
                }).collect_view()}
                <path class="series" d=path></path>
                {points.into_iter().map(|(t, v, when)| view! {
                    <circle class="point" cx=x(t) cy=y(v) r="4"><title>{format!("{when}: {} {}", fmt_number(v), unit)}</title></circle>
                }).collect_view()}
                <text class="axis" x=PAD y=H - 2.0>{first}</text>
                <text class="axis" x=W - PAD / 2.0 y=H - 2.0 text-anchor="end">{last}</text>
            </svg>
        </figure>
    }
    .into_any()
}

/// A point of a chart: its day, its value and the (low, high) of its 95 % interval when it has one.
pub type ChartPoint = (chrono::NaiveDate, f64, Option<(f64, f64)>);

/// One line of a [`LineChart`]: dated values with an optional confidence band.
#[derive(Debug, Clone, PartialEq)]
pub struct ChartSeries {
    pub name: String,
    pub points: Vec<ChartPoint>,
}

/// Dated series as server-rendered SVG: each line with its CI band shaded, reference lines (targets,
/// thresholds) dashed, every point's value in a native tooltip, and a legend when there are several
/// lines. `format` turns a value into text (a share as a percentage, say).
#[component]
pub fn LineChart(
    series: Vec<ChartSeries>,
    #[prop(optional)] references: Vec<(f64, String)>,
    #[prop(into)] title: String,
    format: fn(f64) -> String,
    // Fixed ends of the y-axis (a share's 0–100 %), so a line is read against its whole range and not
    // magnified by an axis fitted to its wiggles; bands and points beyond them are clipped.
    #[prop(optional)] bounds: Option<(f64, f64)>,
) -> impl IntoView {
    const W: f64 = 640.0;
    const H: f64 = 220.0;
    const PAD: f64 = 40.0;
    let all: Vec<&ChartPoint> = series.iter().flat_map(|s| &s.points).collect();
    if all.is_empty() {
        return view! { <p class="empty">"No data yet."</p> }.into_any();
    }
    let values = all
        .iter()
        .flat_map(|p| [Some(p.1), p.2.map(|b| b.0), p.2.map(|b| b.1)])
        .flatten()
        .chain(references.iter().map(|r| r.0));
    let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| (lo.min(v), hi.max(v)));
    let span = if hi > lo { hi - lo } else { 1.0 };
    let (lo, hi) = bounds.unwrap_or((lo - span * 0.08, hi + span * 0.08));
    let day = |d: chrono::NaiveDate| d.num_days_from_ce() as f64;
    let t0 = all.iter().map(|p| day(p.0)).fold(f64::INFINITY, f64::min);
    let t1 = all.iter().map(|p| day(p.0)).fold(f64::NEG_INFINITY, f64::max);
    let x = move |t: f64| if t1 > t0 { PAD + (t - t0) / (t1 - t0) * (W - 1.5 * PAD) } else { W / 2.0 };
    let y = move |v: f64| H - PAD / 2.0 - (v.clamp(lo, hi) - lo) / (hi - lo) * (H - PAD);
    let first = all.iter().map(|p| p.0).min().map(|d| d.to_string()).unwrap_or_default();
    let last = all.iter().map(|p| p.0).max().map(|d| d.to_string()).unwrap_or_default();
    let summary = series
        .iter()
        .filter_map(|s| s.points.last().map(|p| format!("{}: latest {} on {}", s.name, format(p.1), p.0)))
        .collect::<Vec<_>>()
        .join("; ");
    let legend = series.len() > 1;
    let lines = series
        .into_iter()
        .enumerate()
        .map(|(i, s)| {
            let class = format!("series s{}", i % 4);
            let band_class = format!("band s{}", i % 4);
            let path: String = s
                .points
                .iter()
                .enumerate()
                .map(|(j, p)| format!("{}{:.1},{:.1}", if j == 0 { "M" } else { " L" }, x(day(p.0)), y(p.1)))
                .collect();
            // The band runs along the upper bounds and back along the lower ones.
            let banded: Vec<_> = s.points.iter().filter_map(|p| p.2.map(|b| (p.0, b))).collect();
            let band = (banded.len() > 1).then(|| {
                let upper = banded.iter().map(|(d, b)| format!("{:.1},{:.1}", x(day(*d)), y(b.1)));
                let lower = banded.iter().rev().map(|(d, b)| format!("{:.1},{:.1}", x(day(*d)), y(b.0)));
                format!("M{} Z", upper.chain(lower).collect::<Vec<_>>().join(" L"))
            });
            let name = s.name.clone();
            view! {
                {band.map(|d| view! { <path class=band_class d=d></path> })}
                <path class=class.clone() d=path></path>
                {s.points.into_iter().map(|(d, v, b)| {
                    let tip = match b {
                        Some((l, h)) => format!("{name} {d}: {} (95 % CI {} – {})", format(v), format(l), format(h)),
                        None => format!("{name} {d}: {}", format(v)),
                    };
                    let title = tip.clone();
                    view! { <circle class=format!("point s{}", i % 4) cx=x(day(d)) cy=y(v) r="3" tabindex="0" data-tip=tip><title>{title}</title></circle> }
                }).collect_view()}
                {legend.then(|| view! {
                    <text class=format!("legend s{}", i % 4) x=PAD + 4.0 + 150.0 * (i % 4) as f64 y=12.0 + 13.0 * (i / 4) as f64>
                        {format!("● {}", legend_name(&s.name))}
                        <title>{s.name.clone()}</title>
                    </text>
                })}
            }
        })
        .collect_view();
    view! {
        <ChartHover>
        <figure class="chart">
            <svg viewBox=format!("0 0 {W} {H}") role="img" preserveAspectRatio="xMidYMid meet">
                <title>{title}</title>
                <desc>{summary}</desc>
                {references.into_iter().map(|(v, label)| view! {
                    <line class="ref target" x1=PAD x2=W - PAD / 2.0 y1=y(v) y2=y(v)></line>
                    <text class="ref-label" x=W - PAD / 2.0 y=y(v) - 4.0 text-anchor="end">{format!("{label} {}", format(v))}</text>
                }).collect_view()}
                <text class="axis" x=2.0 y=y(hi) + 10.0>{format(hi)}</text>
                <text class="axis" x=2.0 y=y(lo) - 2.0>{format(lo)}</text>
                {lines}
                <text class="axis" x=PAD y=H - 2.0>{first}</text>
                <text class="axis" x=W - PAD / 2.0 y=H - 2.0 text-anchor="end">{last}</text>
            </svg>
        </figure>
        </ChartHover>
    }
    .into_any()
}

/// Shows the value of the chart point under the pointer (or keyboard focus) below the chart. The chart
/// itself is server-rendered SVG passed in as children, so it reads fully without JavaScript (each
/// point keeps its native tooltip); this island only adds the read-out, from each point's `data-tip`.
#[island]
pub fn ChartHover(children: Children) -> impl IntoView {
    let tip = RwSignal::new(String::new());
    let show = move |ev: &leptos::ev::Event| {
        #[cfg(feature = "hydrate")]
        {
            use wasm_bindgen::JsCast;
            let text = ev
                .target()
                .and_then(|t| t.dyn_into::<web_sys::Element>().ok())
                .and_then(|el| el.closest("[data-tip]").ok().flatten())
                .and_then(|el| el.get_attribute("data-tip"));
            if let Some(text) = text {
                tip.set(text);
            }
        }
        #[cfg(not(feature = "hydrate"))]
        let _ = (ev, tip);
    };
    view! {
        <div class="chart-hover" on:mouseover=move |ev: leptos::ev::MouseEvent| show(&ev) on:focusin=move |ev: leptos::ev::FocusEvent| show(&ev)>
            {children()}
            <p class="readout" aria-live="polite">{move || tip.get()}</p>
        </div>
    }
}

/// A series name short enough for its 150-unit slot in a legend row; the full name is its tooltip.
fn legend_name(name: &str) -> String {
    if name.chars().count() <= 22 {
        name.to_owned()
    } else {
        format!("{}…", name.chars().take(21).collect::<String>())
    }
}

/// A share as a percentage with one decimal.
pub fn share_text(value: f64) -> String {
    format!("{:.1} %", value * 100.0)
}

/// An amount of money per customer, to the unit.
pub fn money_text(value: f64) -> String {
    fmt_number(value.round())
}

/// A number as the measure formats it.
pub fn number_text(value: f64) -> String {
    fmt_number(value)
}
