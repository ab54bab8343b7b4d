//! A squad's dashboard: each goal with the key result it ladders to, its linked metric charted against
//! the target (confidence band, target line, today), the forecast for the goal's end date from the
//! metric's trend with its interval, and the probability of reaching the target.

use chrono::NaiveDate;
use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_query_map;
use slope_domain::*;

use super::{LoadError, loading, missing_id, param_id};
use crate::api::*;
use crate::components::ChartHover;

#[component]
pub fn SquadDashboardPage() -> impl IntoView {
    let id = param_id("id");
    let query = use_query_map();
    let season = Memo::new(move |_| query.read().get("season").and_then(|s| s.parse::<i64>().ok()));
    let data = Resource::new(
        move || (id.get(), season.get()),
        |(id, season)| async move { load_squad_dashboard(id.ok_or_else(missing_id)?, season).await },
    );
    view! {
        <Suspense fallback=loading>
            {move || Suspend::new(async move {
                match data.await {
                    Err(e) => view! { <LoadError error=e/> }.into_any(),
                    Ok(d) => view! { <DashboardView dashboard=d/> }.into_any(),
                }
            })}
        </Suspense>
    }
}

#[component]
fn DashboardView(dashboard: SquadDashboard) -> impl IntoView {
    let SquadDashboard { squad, season, today, goals, calibration } = dashboard;
    let title = format!("{} dashboard", squad.name);
    let context = match &season {
        Some(s) => format!("Goals of {} in the season “{}” ({} → {}).", squad.name, s.name, s.starts_on, s.ends_on),
        None => format!("There is no season yet, so {} has no goals to show.", squad.name),
    };
    view! {
        <Title text=title.clone()/>
        <div class="page-head">
            <h1>{title}</h1>
            <a href=format!("/squads#squad-{}", squad.id) class="link">"Back to the board"</a>
        </div>
        <p class="lede">{context}</p>
        <p class="muted">
            "Each chart shows the linked metric with its 95 % confidence band, the target, today, and a forecast from "
            "recent evidence to the goal's end date with its 95 % prediction interval; a goal that has ended shows its outcome."
        </p>
        {if goals.is_empty() {
            view! { <p class="empty">"No goals in this season."</p> }.into_any()
        } else {
            goals.into_iter().map(|g| view! { <GoalPanel goal=g today/> }).collect_view().into_any()
        }}
        {calibration.map(|calibration| view! { <super::season_dashboard::CalibrationPanel calibration/> })}
    }
}

#[component]
fn GoalPanel(goal: DashboardGoal, today: NaiveDate) -> impl IntoView {
    let DashboardGoal { goal, key_result, measure, series, forecast, outcome: ended } = goal;
    let heading = format!("goal-{}-heading", goal.id);
    let labelled_by = heading.clone();
    let outcome = match (&series, &forecast) {
        // A goal that has ended shows how it ended: a forecast of a past date would restate history.
        (Some(_), _) if ended.is_some() => {
            let o = ended.clone().expect("checked above");
            let class = match o.met {
                Some(true) => "goal-outcome met",
                Some(false) => "goal-outcome missed",
                None => "goal-outcome",
            };
            view! { <p class=class><strong>{o.summary}</strong></p> }.into_any()
        }
        (None, _) => view! {
            <p class="empty">"Neither the goal nor its key result is fed by a metric, so there is nothing to forecast."</p>
        }
        .into_any(),
        (Some(s), None) => view! {
            <p class="empty">
                {format!(
                    "{} has {} point(s): a forecast needs at least {MIN_TREND_POINTS} recent ones.",
                    s.metric.name,
                    s.points.len()
                )}
            </p>
        }
        .into_any(),
        (Some(_), Some(f)) => {
            let probability = match f.probability {
                Some(p) => format!("Probability of reaching the target by {}: {}.", f.on, percent(p)),
                None => "A milestone has no figure to forecast against.".to_owned(),
            };
            view! {
                <p class="forecast-summary">{f.summary.clone()}</p>
                <p class="forecast-probability"><strong>{probability}</strong></p>
            }
            .into_any()
        }
    };
    // The newest value first, in words: what a squad checks after a batch lands.
    let latest = series.as_ref().and_then(|s| {
        let format = super::metric_format(s.metric.kind);
        s.points.last().map(|p| {
            format!(
                "{}: latest {} for {} (newest data {} UTC)",
                s.metric.name,
                format(p.value),
                p.bucket,
                p.observed_at.format("%Y-%m-%d %H:%M")
            )
        })
    });
    let chart = series.map(|s| view! { <ForecastChart id=goal.id.0 series=s measure=measure.clone() forecast=forecast.clone() today ends_on=goal.ends_on/> });
    view! {
        <section class="panel dashboard-goal" aria-labelledby=labelled_by>
            <h2 id=heading><a href=format!("/squad-goals/{}", goal.id)>{goal.title.clone()}</a></h2>
            <p class="meta">
                "Ladders to " <a href=format!("/key-results/{}", key_result.id)>{key_result.title.clone()}</a>
                {format!(" · {} → {} · measure: {}", goal.starts_on, goal.ends_on, measure_text(&measure))}
            </p>
            {latest.map(|text| view! { <p class="goal-latest">{text}</p> })}
            {outcome}
            {chart}
        </section>
    }
}

/// A probability as a whole percentage, never rounded to a certainty it is not.
fn percent(p: f64) -> String {
    if p > 0.99 {
        "> 99 %".to_owned()
    } else if p < 0.01 {
        "< 1 %".to_owned()
    } else {
        format!("{:.0} %", p * 100.0)
    }
}

fn measure_text(measure: &Measure) -> String {
    match measure {
        Measure::IncreaseTo { target, unit, .. } => format!("increase to {} {unit}", fmt_number(*target)),
        Measure::DecreaseTo { target, unit, .. } => format!("decrease to {} {unit}", fmt_number(*target)),
        Measure::KeepAbove { threshold, unit } => format!("keep above {} {unit}", fmt_number(*threshold)),
        Measure::KeepBelow { threshold, unit } => format!("keep below {} {unit}", fmt_number(*threshold)),
        Measure::WithinRange { low, high, unit } => {
            format!("keep within {}–{} {unit}", fmt_number(*low), fmt_number(*high))
        }
        Measure::Milestone => "milestone".to_owned(),
    }
    .trim_end()
    .to_owned()
}

/// The metric's points as a line with their confidence band, the measure's target lines, a "today"
/// marker and the forecast to the end date with its prediction interval, in server-rendered SVG with a
/// title, a description and the same numbers in a table.
#[component]
fn ForecastChart(
    id: i64,
    series: MetricSeries,
    measure: Measure,
    forecast: Option<Forecast>,
    today: NaiveDate,
    ends_on: NaiveDate,
) -> impl IntoView {
    const W: f64 = 640.0;
    const H: f64 = 240.0;
    const LEFT: f64 = 48.0;
    const RIGHT: f64 = 12.0;
    const TOP: f64 = 16.0;
    const BOTTOM: f64 = 28.0;
    let format = super::metric_format(series.metric.kind);
    let name = series.metric.name.clone();
    let points = series.points;
    if points.is_empty() {
        return view! { <p class="empty">{format!("{name} has no point yet.")}</p> }.into_any();
    }
    let references: Vec<(f64, &str)> = match measure {
        Measure::IncreaseTo { target, .. } | Measure::DecreaseTo { target, .. } => vec![(target, "target")],
        Measure::KeepAbove { threshold, .. } | Measure::KeepBelow { threshold, .. } => vec![(threshold, "threshold")],
        Measure::WithinRange { low, high, .. } => vec![(low, "low"), (high, "high")],
        Measure::Milestone => vec![],
    };
    // The forecast's interval at a few days between the last point and the end date: a cone.
    let last_day = points[points.len() - 1].bucket;
    let cone: Vec<(NaiveDate, f64, f64, f64)> = forecast
        .as_ref()
        .filter(|f| f.on > last_day)
        .map(|f| {
            let t = &f.trend;
            let q = student_t_quantile_975(t.degrees_of_freedom());
            let span = (f.on - last_day).num_days();
            (0..=12)
                .map(|i| {
                    let on = last_day + chrono::Duration::days(span * i / 12);
                    let v = t.value_at(on);
                    let half = q * t.prediction_std_error(on);
                    (on, v, v - half, v + half)
                })
                .collect()
        })
        .unwrap_or_default();

    // Domains.
    let first_day = points[0].bucket;
    let x_min = first_day.min(today);
    let x_max = ends_on.max(today).max(last_day);
    let span_days = ((x_max - x_min).num_days()).max(1) as f64;
    let mut ys: Vec<f64> = points.iter().flat_map(|p| [Some(p.value), p.ci_low, p.ci_high]).flatten().collect();
    ys.extend(references.iter().map(|r| r.0));
    ys.extend(cone.iter().flat_map(|c| [c.2, c.3]));
    ys.retain(|y| y.is_finite());
    let (mut y_min, mut y_max) = ys.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), y| (a.min(*y), b.max(*y)));
    if y_max - y_min < 1e-9 {
        y_min -= 1.0;
        y_max += 1.0;
    }
    let pad = (y_max - y_min) * 0.05;
    let (y_min, y_max) = (y_min - pad, y_max + pad);
    let x = move |d: NaiveDate| LEFT + (d - x_min).num_days() as f64 / span_days * (W - LEFT - RIGHT);
    let y = move |v: f64| TOP + (y_max - v) / (y_max - y_min) * (H - TOP - BOTTOM);

    let line = points.iter().map(|p| format!("{:.1},{:.1}", x(p.bucket), y(p.value))).collect::<Vec<_>>().join(" ");
    let banded: Vec<(NaiveDate, f64, f64)> =
        points.iter().filter_map(|p| Some((p.bucket, p.ci_low?, p.ci_high?))).collect();
    let band = (banded.len() >= 2).then(|| {
        let upper = banded.iter().map(|(d, _, h)| format!("{:.1},{:.1}", x(*d), y(*h)));
        let lower = banded.iter().rev().map(|(d, l, _)| format!("{:.1},{:.1}", x(*d), y(*l)));
        let polygon = upper.chain(lower).collect::<Vec<_>>().join(" ");
        view! { <polygon class="band" points=polygon><title>"95 % confidence band of the metric"</title></polygon> }
    });
    let dots = points
        .iter()
        .map(|p| {
            let tip = format!("{}: {}", p.bucket, format(p.value));
            let title = tip.clone();
            view! { <circle class="point" cx=format!("{:.1}", x(p.bucket)) cy=format!("{:.1}", y(p.value)) r="3" tabindex="0" data-tip=tip><title>{title}</title></circle> }
        })
        .collect_view();
    let refs = references
        .iter()
        .map(|(v, label)| {
            let yy = y(*v);
            let text = format!("{label} {}", format(*v));
            view! {
                <line class="ref target" x1=LEFT x2=W - RIGHT y1=format!("{yy:.1}") y2=format!("{yy:.1}")></line>
                <text class="ref-label" x=W - RIGHT - 4.0 y=format!("{:.1}", yy - 4.0) text-anchor="end">{text}</text>
            }
        })
        .collect_view();
    let today_x = x(today);
    // Near an edge the label is anchored inside the chart.
    let today_anchor = if today_x > W - RIGHT - 24.0 {
        "end"
    } else if today_x < LEFT + 24.0 {
        "start"
    } else {
        "middle"
    };
    let today_marker = view! {
        <line class="ref today" x1=format!("{today_x:.1}") x2=format!("{today_x:.1}") y1=TOP y2=H - BOTTOM></line>
        <text class="axis" x=format!("{today_x:.1}") y=TOP - 4.0 text-anchor=today_anchor>"today"</text>
    };
    let end_x = x(ends_on);
    let end_marker = view! {
        <line class="ref start" x1=format!("{end_x:.1}") x2=format!("{end_x:.1}") y1=TOP y2=H - BOTTOM></line>
        <text class="axis" x=format!("{end_x:.1}") y=H - BOTTOM + 14.0 text-anchor="end">{format!("end {ends_on}")}</text>
    };
    let projection = (!cone.is_empty()).then(|| {
        let upper = cone.iter().map(|c| format!("{:.1},{:.1}", x(c.0), y(c.3)));
        let lower = cone.iter().rev().map(|c| format!("{:.1},{:.1}", x(c.0), y(c.2)));
        let polygon = upper.chain(lower).collect::<Vec<_>>().join(" ");
        let path = cone.iter().map(|c| format!("{:.1},{:.1}", x(c.0), y(c.1))).collect::<Vec<_>>().join(" ");
        view! {
            <polygon class="band forecast-band" points=polygon><title>"95 % prediction interval of the forecast"</title></polygon>
            <polyline class="series forecast" points=path></polyline>
        }
    });

    let desc = {
        let latest = &points[points.len() - 1];
        let mut text = format!(
            "{name}: {} point(s) from {first_day} to {last_day}; latest {} on {last_day}.",
            points.len(),
            format(latest.value)
        );
        for (v, label) in &references {
            text.push_str(&format!(" The {label} is {}.", format(*v)));
        }
        text.push_str(&format!(" Today is {today}; the goal ends on {ends_on}."));
        if let Some(f) = &forecast {
            text.push_str(&format!(
                " Forecast for {}: {} (95 % prediction interval {} to {}).",
                f.on,
                format(f.value),
                format(f.low),
                format(f.high)
            ));
            if let Some(p) = f.probability {
                text.push_str(&format!(" Probability of reaching the target: {}.", percent(p)));
            }
        }
        text
    };
    let title_id = format!("goal-{id}-chart-title");
    // Computed before the view: the chart moves into the read-out island's children, the table does not.
    let chart_title = format!("{name} against the target, with the forecast to {ends_on}");
    let desc_id = format!("goal-{id}-chart-desc");
    let rows = points
        .iter()
        .map(|p| {
            let ci = p.ci_low.zip(p.ci_high).map(|(l, h)| format!("{} – {}", format(l), format(h))).unwrap_or_default();
            view! { <tr><th scope="row">{p.bucket.to_string()}</th><td>{format(p.value)}</td><td>{ci}</td></tr> }
        })
        .collect_view();
    let forecast_row = forecast.as_ref().map(|f| {
        let interval = format!("{} – {}", format(f.low), format(f.high));
        view! { <tr class="forecast"><th scope="row">{format!("{} (forecast)", f.on)}</th><td>{format(f.value)}</td><td>{interval}</td></tr> }
    });
    view! {
        <ChartHover>
        <figure class="chart forecast-chart">
            <svg viewBox=format!("0 0 {W} {H}") role="img" aria-labelledby=format!("{title_id} {desc_id}") preserveAspectRatio="xMidYMid meet">
                <title id=title_id.clone()>{chart_title}</title>
                <desc id=desc_id.clone()>{desc}</desc>
                <text class="axis" x=4.0 y=format!("{:.1}", y(y_max - pad) + 4.0)>{format(y_max - pad)}</text>
                <text class="axis" x=4.0 y=format!("{:.1}", y(y_min + pad))>{format(y_min + pad)}</text>
                <text class="axis" x=LEFT y=H - 4.0>{x_min.to_string()}</text>
                {band}
                {refs}
                {projection}
                <polyline class="series" points=line></polyline>
                {dots}
                {today_marker}
                {end_marker}
            </svg>
            <figcaption class="muted">
                "Solid line: the metric; shaded: its 95 % confidence band; dashed horizontal: the target; "
                "the line and cone after the last point: the forecast and its 95 % prediction interval."
            </figcaption>
        </figure>
        </ChartHover>
        <details>
            <summary>{format!("{name} as a table")}</summary>
            <table class="compact">
                <caption class="sr-only">{format!("{name} by date, with the forecast last")}</caption>
                <thead>
                    <tr><th scope="col">"Date"</th><th scope="col">"Value"</th><th scope="col">"95 % interval"</th></tr>
                </thead>
                <tbody>{rows}{forecast_row}</tbody>
            </table>
        </details>
    }
    .into_any()
}
