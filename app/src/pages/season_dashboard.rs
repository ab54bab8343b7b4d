//! A season's dashboard: the thesis signals a leader resolves, the OKR tree with live progress, slope
//! allocation against the target by unit and squad, the confidence trend and the metrics behind the
//! plan.

use leptos::prelude::*;
use leptos::server_fn::ServerFn;
use leptos_meta::Title;
use slope_domain::*;

use super::{LoadError, ObjectiveItem, StatusBadge, loading, metric_format, missing_id, param_id};
use crate::api::*;
use crate::components::*;

#[component]
pub fn SeasonDashboardPage() -> impl IntoView {
    let id = param_id("id");
    let data =
        Resource::new(move || id.get(), |id| async move { load_season_dashboard(id.ok_or_else(missing_id)?).await });
    view! {
        <Suspense fallback=loading>
            {move || Suspend::new(async move {
                match data.await {
                    Err(e) => view! { <LoadError error=e/> }.into_any(),
                    Ok(d) => view! { <SeasonDashboardView dashboard=d/> }.into_any(),
                }
            })}
        </Suspense>
    }
}

#[component]
fn SeasonDashboardView(dashboard: SeasonDashboard) -> impl IntoView {
    let SeasonDashboard { tree, today, metrics, confidence, signals, outlook, calibration } = dashboard;
    let season = tree.season.clone();
    let sid = season.id;
    let title = format!("{} — dashboard", season.name);
    // Only those who may change the plan resolve signals; the service refuses anyone else anyway.
    let resolver = crate::may(slope_domain::Action::EditPlan) && season.status != SeasonStatus::Closed;
    let (open, resolved): (Vec<ThesisSignal>, Vec<ThesisSignal>) = signals.into_iter().partition(|s| s.is_open());
    let open_count = open.len();
    let badge_class = if open_count > 0 { "badge warn" } else { "badge ok" };
    view! {
        <Title text=title.clone()/>
        <div class="page-head">
            <div>
                <h1>{title}</h1>
                <p class="meta">
                    <StatusBadge status=season.status/>
                    {format!(" {} → {} · today {today} · slope target {}", season.starts_on, season.ends_on, share_text(season.slope_target))}
                </p>
            </div>
            <a href=format!("/seasons/{sid}") class="link">"The season's plan"</a>
            {(season.status == SeasonStatus::Closed).then(|| view! { <a href=format!("/seasons/{sid}/review") class="link">"The season's review"</a> })}
        </div>
        <p class="lede">{season.thesis.clone()}</p>

        <section class="panel signals" aria-labelledby="signals-heading" id="signals">
            <h2 id="signals-heading">
                "Thesis signals "
                <span class=badge_class>{format!("{open_count} open")}</span>
            </h2>
            <p class="hint">
                "Slope raises a “review the thesis” item when a metric linked to this season's plan turns from moving the right way "
                "to moving the wrong way (the slopes of the last two 7-day windows, each with its 95 % interval on opposite sides of zero), "
                "or when a slope bet is killed. A leader resolves it with a note."
            </p>
            {if open.is_empty() && resolved.is_empty() {
                view! { <p class="empty">"No signals: no linked metric has reversed its trend and no slope bet was killed."</p> }.into_any()
            } else {
                view! {
                    <ul class="signal-list">
                        {open.into_iter().map(|s| view! { <SignalItem signal=s resolver/> }).collect_view()}
                        {resolved.into_iter().map(|s| view! { <SignalItem signal=s resolver=false/> }).collect_view()}
                    </ul>
                }.into_any()
            }}
        </section>

        <section aria-labelledby="tree-heading">
            <h2 id="tree-heading">"Objectives and key results, live"</h2>
            <ProgressBar score=tree.score expectation=tree.expectation label="Season progress"/>
            <p class="hint">"Key results fed by a metric move with its latest point; the others with their check-ins."</p>
            {if tree.objectives.is_empty() {
                view! { <p class="empty">"No objectives yet."</p> }.into_any()
            } else {
                view! {
                    <ol class="okr-tree">
                        {tree.objectives.into_iter().map(|o| view! { <ObjectiveItem node=o editable=false/> }).collect_view()}
                    </ol>
                }.into_any()
            }}
        </section>

        <OutlookPanel outlook/>

        <section class="grid-2">
            <div class="panel">
                <h2>"Slope allocation against the target"</h2>
                <SlopeChart report=tree.slope.clone()/>
            </div>
            <div class="panel">
                <h2>"Confidence trend"</h2>
                <ConfidenceChart points=confidence/>
            </div>
        </section>

        <CalibrationPanel calibration/>

        <section aria-labelledby="metrics-heading">
            <h2 id="metrics-heading">"Metrics behind the plan"</h2>
            {if metrics.is_empty() {
                view! { <p class="empty">"No key result or goal of this season is fed by a metric yet."</p> }.into_any()
            } else {
                view! {
                    <div class="grid-2">
                        {metrics.into_iter().map(|m| view! { <LinkedMetricPanel metric=m/> }).collect_view()}
                    </div>
                }.into_any()
            }}
        </section>
    }
}

/// Where the season is heading: its score at the end and the chance of meeting its expectation, each
/// objective's, the key results least likely to land, and every key result's forecast or outcome.
#[component]
fn OutlookPanel(outlook: SeasonOutlook) -> impl IntoView {
    let SeasonOutlook { draws, key_results, objectives, season, least_likely } = outlook;
    let score = |s: &ScoreOutlook| {
        format!(
            "{} expected at the end (80 % interval {}–{}); {} chance of reaching the expected {}",
            share_text(s.expected),
            share_text(s.low),
            share_text(s.high),
            fmt_probability(s.probability),
            share_text(s.expectation)
        )
    };
    let headline = score(&season);
    let objective_rows = objectives
        .iter()
        .map(|o| {
            let text = score(&o.score);
            view! { <tr><th scope="row">{o.title.clone()}</th><td>{text}</td></tr> }
        })
        .collect_view();
    let least: Vec<KeyResultOutlook> =
        least_likely.iter().filter_map(|id| key_results.iter().find(|k| k.key_result_id == *id).cloned()).collect();
    let least_view = if least.is_empty() {
        view! { <p class="empty">"No forecast key result is off its way: every one is on track, ended, or without a forecast."</p> }.into_any()
    } else {
        view! {
            <ol class="least-likely">
                {least.into_iter().map(|k| {
                    let summary = k.forecast.as_ref().map(|f| f.summary.clone()).unwrap_or_default();
                    view! { <li><a href=format!("/key-results/{}", k.key_result_id)>{k.title}</a>" — "{summary}</li> }
                }).collect_view()}
            </ol>
        }
        .into_any()
    };
    let kr_rows = key_results
        .into_iter()
        .map(|k| {
            let (state, text) = match (&k.forecast, &k.outcome) {
                (Some(f), _) => (f.outlook.map(|o| o.label()).unwrap_or("trend"), f.summary.clone()),
                (_, Some(o)) => (
                    match o.met {
                        Some(true) => "met",
                        Some(false) => "missed",
                        None => "ended",
                    },
                    o.summary.clone(),
                ),
                _ => (
                    "no forecast",
                    format!("too little evidence ({}): counted at its current score", k.evidence.as_str()),
                ),
            };
            view! {
                <tr>
                    <th scope="row"><a href=format!("/key-results/{}", k.key_result_id)>{k.title}</a></th>
                    <td>{k.ends_on.to_string()}</td>
                    <td>{k.evidence.as_str()}</td>
                    <td class="kr-outlook">{state}</td>
                    <td>{text}</td>
                </tr>
            }
        })
        .collect_view();
    view! {
        <section class="panel outlook" aria-labelledby="outlook-heading" id="outlook">
            <h2 id="outlook-heading">"Where the season is heading"</h2>
            <p class="outlook-season"><strong>{headline}</strong></p>
            <p class="hint">
                {format!(
                    "Each key result is forecast at its quarter's end (or the season's, if sooner) from recent evidence: its metric, else its check-ins. \
                     The objectives and the season are rolled up by simulation: {draws} draws read every forecast key result from its forecast distribution, \
                     score it as the live tree does and average with the tree's weights. Ended key results count at their outcome; \
                     those without a forecast at their current score."
                )}
            </p>
            <h3>"Least likely to land"</h3>
            {least_view}
            <table class="outlook-objectives">
                <caption class="sr-only">"Objectives at the end"</caption>
                <thead><tr><th scope="col">"Objective"</th><th scope="col">"At the end"</th></tr></thead>
                <tbody>{objective_rows}</tbody>
            </table>
            <table class="outlook-key-results">
                <caption class="sr-only">"Key results at their end"</caption>
                <thead><tr><th scope="col">"Key result"</th><th scope="col">"Ends"</th><th scope="col">"Evidence"</th><th scope="col">"Outlook"</th><th scope="col">"Forecast or outcome"</th></tr></thead>
                <tbody>{kr_rows}</tbody>
            </table>
        </section>
    }
}

/// How well the check-ins' confidence foretold the key results that ended: Brier scores and the
/// reliability diagram (each confidence bin's mean against how often its key results were met).
#[component]
pub(super) fn CalibrationPanel(calibration: Calibration) -> impl IntoView {
    let Calibration { ended_key_results, check_ins, season, by_person, by_squad, reliability, silent_share, .. } =
        calibration;
    let body = match season {
        None => view! {
            <p class="empty">
                {format!(
                    "No key result of this season has ended with a check-in that stated a confidence ({ended_key_results} ended so far), \
                     so there is nothing to calibrate yet."
                )}
            </p>
        }
        .into_any(),
        Some(season) => {
            let rows = |scores: Vec<BrierScore>| {
                scores
                    .into_iter()
                    .map(|b| view! { <tr><th scope="row">{b.subject}</th><td>{format!("{:.3}", b.brier)}</td><td>{b.check_ins}</td></tr> })
                    .collect_view()
            };
            let silent = silent_share.map(share_text).unwrap_or_default();
            view! {
                <p class="calibration-season">
                    <strong>{format!("Brier score {:.3}", season.brier)}</strong>
                    {format!(
                        " over {check_ins} check-ins of {ended_key_results} ended key results (0 is perfect; always saying 50 % scores 0.25). \
                         Silent in their last three weeks: {silent}."
                    )}
                </p>
                <div class="grid-2">
                    <ReliabilityChart bins=reliability/>
                    <table class="calibration-scores">
                        <caption class="sr-only">"Brier scores by person and squad"</caption>
                        <thead><tr><th scope="col">"Who"</th><th scope="col">"Brier"</th><th scope="col">"Check-ins"</th></tr></thead>
                        <tbody>{rows(by_person)}{rows(by_squad)}</tbody>
                    </table>
                </div>
            }
            .into_any()
        }
    };
    view! {
        <section class="panel calibration" aria-labelledby="calibration-heading" id="calibration">
            <h2 id="calibration-heading">"Confidence calibration"</h2>
            <p class="hint">"Each check-in's confidence that its key result will be met, against whether it was, for the key results that have ended."</p>
            {body}
        </section>
    }
}

/// The reliability diagram: each bin's mean stated confidence (x) against the share met (y), with the
/// diagonal a calibrated team lies on, in SVG with the numbers in a table.
#[component]
fn ReliabilityChart(bins: Vec<ReliabilityBin>) -> impl IntoView {
    const S: f64 = 200.0;
    const PAD: f64 = 28.0;
    let at = move |v: f64| PAD + v * (S - 2.0 * PAD);
    let up = move |v: f64| S - PAD - v * (S - 2.0 * PAD);
    let dots = bins
        .iter()
        .filter_map(|b| Some((b.mean_confidence?, b.met_rate?, b.count)))
        .map(|(c, m, n)| {
            let tip = format!("said {}, met {} ({n} check-ins)", share_text(c), share_text(m));
            let title = tip.clone();
            view! { <circle class="point" cx=format!("{:.1}", at(c)) cy=format!("{:.1}", up(m)) r="4" tabindex="0" data-tip=tip><title>{title}</title></circle> }
        })
        .collect_view();
    let rows = bins
        .iter()
        .map(|b| {
            let range = format!("{}–{}", share_text(b.low), share_text(b.high));
            let said = b.mean_confidence.map(share_text).unwrap_or_else(|| "—".to_owned());
            let met = b.met_rate.map(share_text).unwrap_or_else(|| "—".to_owned());
            view! { <tr><th scope="row">{range}</th><td>{said}</td><td>{met}</td><td>{b.count}</td></tr> }
        })
        .collect_view();
    view! {
        <figure class="chart reliability-chart">
            <svg viewBox=format!("0 0 {S} {S}") role="img" aria-labelledby="reliability-title reliability-desc">
                <title id="reliability-title">"Reliability diagram"</title>
                <desc id="reliability-desc">"Stated confidence against the share of key results met, per confidence bin; the diagonal is perfect calibration."</desc>
                <line class="axis" x1=at(0.0) y1=up(0.0) x2=at(1.0) y2=up(0.0)></line>
                <line class="axis" x1=at(0.0) y1=up(0.0) x2=at(0.0) y2=up(1.0)></line>
                <line class="ref" x1=at(0.0) y1=up(0.0) x2=at(1.0) y2=up(1.0) stroke-dasharray="3 3"></line>
                <text x=at(0.5) y=S - 6.0 text-anchor="middle">"stated confidence"</text>
                <text x=10.0 y=at(0.5) transform=format!("rotate(-90 10 {})", at(0.5)) text-anchor="middle">"share met"</text>
                {dots}
            </svg>
            <table>
                <caption class="sr-only">"Reliability by confidence bin"</caption>
                <thead><tr><th scope="col">"Confidence"</th><th scope="col">"Said"</th><th scope="col">"Met"</th><th scope="col">"Check-ins"</th></tr></thead>
                <tbody>{rows}</tbody>
            </table>
        </figure>
    }
}

#[component]
fn SignalItem(signal: ThesisSignal, resolver: bool) -> impl IntoView {
    let open = signal.is_open();
    let reversal: Option<Reversal> = serde_json::from_value(signal.evidence["reversal"].clone()).ok();
    let kind = match signal.kind {
        SignalKind::MetricReversal => "metric reversed",
        SignalKind::BetKilled => "slope bet killed",
    };
    view! {
        <li class=if open { "signal open" } else { "signal resolved" } id=format!("signal-{}", signal.id)>
            <div class="row-head">
                <span class="badge warn">{kind}</span>
                <strong>{signal.subject.clone()}</strong>
                <span class="muted">{format!("raised {} UTC", signal.raised_at.format("%Y-%m-%d %H:%M"))}</span>
            </div>
            <p class="signal-summary">{signal.summary.clone()}</p>
            {reversal.map(|r| view! {
                <table class="compact">
                    <caption>"Trend of the metric per day, with its 95 % interval"</caption>
                    <thead><tr><th scope="col">"Window"</th><th scope="col">"Points"</th><th scope="col">"Slope per day"</th><th scope="col">"95 % interval"</th></tr></thead>
                    <tbody>
                        {[("before", r.earlier), ("recent", r.recent)].into_iter().map(|(label, w)| view! {
                            <tr>
                                <th scope="row">{format!("{label}: {} → {}", w.from, w.to)}</th>
                                <td>{w.points}</td>
                                <td>{fmt_number(w.per_day)}</td>
                                <td>{format!("{} – {}", fmt_number(w.ci_low), fmt_number(w.ci_high))}</td>
                            </tr>
                        }).collect_view()}
                    </tbody>
                </table>
            })}
            {match (&signal.resolved_at, &signal.resolution) {
                (Some(at), Some(note)) => view! {
                    <p class="resolution">
                        <strong>"Resolved "</strong>
                        {format!("by {} on {} UTC: ", signal.resolved_by.clone().unwrap_or_default(), at.format("%Y-%m-%d %H:%M"))}
                        <q>{note.clone()}</q>
                    </p>
                }.into_any(),
                _ if resolver => view! { <ResolveSignalForm season=signal.season_id.0 signal=signal.id/> }.into_any(),
                _ => view! { <p class="muted">"Open: a leader resolves it with a note."</p> }.into_any(),
            }}
        </li>
    }
}

#[island]
fn ResolveSignalForm(season: i64, signal: i64) -> impl IntoView {
    let action = ServerAction::<ResolveSignal>::new();
    let errors: FormErrors = RwSignal::new(FieldErrors::new());
    watch_outcome(action, errors);
    let submit = submit_with_checks(action, errors, |f: &ResolveSignal| {
        ResolveSignalInput { note: f.note.clone() }.validate().map(|_| ())
    });
    view! {
        <form class="form resolve" method="post" action=ResolveSignal::url() on:submit=submit novalidate>
            <FormMessages errors/>
            <input type="hidden" name="season_id" value=season.to_string()/>
            <input type="hidden" name="signal_id" value=signal.to_string()/>
            <TextArea label="What does the season make of it?" name="note" errors value="" rows=2 required=true
                hint="The thesis stands, is revised, or this is noise: say why."/>
            <button type="submit" disabled=move || action.pending().get()>"Resolve"</button>
        </form>
    }
}

/// Slope allocation of each unit and squad as horizontal bars against the season's target, in SVG with
/// the same figures in a table.
#[component]
fn SlopeChart(report: SlopeReport) -> impl IntoView {
    const W: f64 = 560.0;
    const ROW: f64 = 24.0;
    const LABEL: f64 = 150.0;
    let target = report.target;
    let mut rows: Vec<(String, Share, &'static str)> = vec![("Whole season".into(), report.overall, "overall")];
    rows.extend(report.units.iter().map(|u| (format!("Unit {}", u.unit), u.share, "unit")));
    rows.extend(report.squads.iter().map(|s| (s.name.clone(), s.share, "squad")));
    let max = rows.iter().filter_map(|r| r.1.share).fold(target * 1.5, f64::max).max(0.05);
    let x = move |share: f64| LABEL + share / max * (W - LABEL - 60.0);
    let height = ROW * rows.len() as f64 + 28.0;
    let summary = format!(
        "Slope share of planned capacity: whole season {}, target {}; {} of {} units and squads below target",
        report.overall.share.map(share_text).unwrap_or_else(|| "nothing planned".into()),
        share_text(target),
        rows.iter().skip(1).filter(|r| r.1.below_target).count(),
        rows.len() - 1
    );
    let table = rows.clone();
    view! {
        <ChartHover>
            <figure class="chart">
                <svg viewBox=format!("0 0 {W} {height}") role="img" preserveAspectRatio="xMidYMid meet">
                    <title>"Slope allocation by unit and squad"</title>
                    <desc>{summary}</desc>
                    {rows.into_iter().enumerate().map(|(i, (name, share, kind))| {
                        let y = 8.0 + ROW * i as f64;
                        let value = share.share.unwrap_or(0.0);
                        let tip = format!(
                            "{name}: {} ({} of {} person-weeks){}",
                            share.share.map(share_text).unwrap_or_else(|| "nothing planned".into()),
                            fmt_number(share.slope),
                            fmt_number(share.total),
                            if share.below_target { ", below target" } else { "" }
                        );
                        let class = format!("bar {kind}{}", if share.below_target { " warn" } else { "" });
                        let title = tip.clone();
                        view! {
                            <text class="axis" x=LABEL - 6.0 y=y + 15.0 text-anchor="end">{name}</text>
                            <rect class=class x=LABEL y=y + 3.0 width=(x(value) - LABEL).max(1.0) height=ROW - 8.0 tabindex="0" data-tip=tip>
                                <title>{title}</title>
                            </rect>
                            <text class="axis" x=x(value) + 4.0 y=y + 15.0>{share.share.map(share_text).unwrap_or_else(|| "—".into())}</text>
                        }
                    }).collect_view()}
                    <line class="ref target" x1=x(target) x2=x(target) y1="4" y2=height - 18.0></line>
                    <text class="ref-label" x=x(target) y=height - 4.0 text-anchor="middle">{format!("target {}", share_text(target))}</text>
                </svg>
            </figure>
        </ChartHover>
        <table class="compact">
            <caption>"Slope allocation (person-weeks)"</caption>
            <thead><tr><th scope="col">"Who"</th><th scope="col">"Slope"</th><th scope="col">"Planned"</th><th scope="col">"Share"</th></tr></thead>
            <tbody>
                {table.into_iter().map(|(name, share, _)| view! {
                    <tr class:warn=share.below_target>
                        <th scope="row">{name}</th>
                        <td>{fmt_number(share.slope)}</td>
                        <td>{fmt_number(share.total)}</td>
                        <td>{share.share.map(share_text).unwrap_or_else(|| "—".into())}{share.below_target.then_some(" ⚠ below target")}</td>
                    </tr>
                }).collect_view()}
            </tbody>
        </table>
    }
}

#[component]
fn ConfidenceChart(points: Vec<ConfidencePoint>) -> impl IntoView {
    if points.is_empty() {
        return view! { <p class="empty">"No key result has a check-in with a confidence yet."</p> }.into_any();
    }
    let series = vec![
        ChartSeries { name: "mean confidence".into(), points: points.iter().map(|p| (p.week, p.mean, None)).collect() },
        ChartSeries { name: "lowest".into(), points: points.iter().map(|p| (p.week, p.low, None)).collect() },
    ];
    view! {
        <p class="hint">"Each week, every key result counts with the confidence of its latest check-in by the end of that week."</p>
        <LineChart series title="Mean confidence of the key results by week" format=share_text/>
        <table class="compact">
            <caption>"Confidence by week"</caption>
            <thead><tr><th scope="col">"Week of"</th><th scope="col">"Mean"</th><th scope="col">"Lowest"</th><th scope="col">"Highest"</th><th scope="col">"Key results"</th></tr></thead>
            <tbody>
                {points.into_iter().rev().map(|p| view! {
                    <tr>
                        <th scope="row">{p.week.to_string()}</th>
                        <td>{share_text(p.mean)}</td>
                        <td>{share_text(p.low)}</td>
                        <td>{share_text(p.high)}</td>
                        <td>{p.key_results}</td>
                    </tr>
                }).collect_view()}
            </tbody>
        </table>
    }
    .into_any()
}

#[component]
fn LinkedMetricPanel(metric: LinkedMetric) -> impl IntoView {
    let m = metric.series.metric.clone();
    let format = metric_format(m.kind);
    let chart = ChartSeries {
        name: m.name.clone(),
        points: metric.series.points.iter().map(|p| (p.bucket, p.value, p.ci_low.zip(p.ci_high))).collect(),
    };
    let direction = match metric.good_direction {
        Some(d) if d > 0.0 => "the plan wants it up",
        Some(_) => "the plan wants it down",
        None => "no single direction",
    };
    view! {
        <div class="panel linked-metric" data-metric=m.key.clone()>
            <div class="row-head">
                <h3><a href=format!("/metrics/{}", m.key)>{m.name.clone()}</a></h3>
                {metric.reversal.map(|_| view! { <span class="badge warn">"trend reversed"</span> })}
                {metric.series.stale.then(|| view! { <span class="badge warn">"stale"</span> })}
            </div>
            <p class="hint">{format!("Feeds {} · {direction}", metric.feeds.join(", "))}</p>
            <LineChart series=vec![chart] title=format!("{} over time", m.name) format/>
        </div>
    }
}
