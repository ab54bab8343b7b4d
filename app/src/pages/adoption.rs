//! The exec adoption dashboard: each organisation unit's stage with its evidence and the rule it was
//! held to, the failure-mode warnings with theirs, and the trend of stages over the last weeks.

use leptos::prelude::*;
use leptos_meta::Title;
use slope_domain::*;

use super::{LoadError, loading};
use crate::api::*;
use crate::components::ChartHover;

#[component]
pub fn AdoptionPage() -> impl IntoView {
    let data = Resource::new(|| (), |_| load_adoption());
    view! {
        <Title text="Adoption"/>
        <h1>"AI adoption"</h1>
        <p class="lede">
            "How far each unit has come with AI, judged from evidence: stage 1, AI fluency (most people work with AI "
            "suggestions); stage 2, process AI (a loop moves a key result measured in money or time); stage 3, growth "
            "inflection (a loop has measurably lifted lifetime value or retention). Each verdict lists its evidence "
            "and what the next stage needs."
        </p>
        <Suspense fallback=loading>
            {move || Suspend::new(async move {
                match data.await {
                    Err(e) => view! { <LoadError error=e/> }.into_any(),
                    Ok(report) => view! { <AdoptionView report/> }.into_any(),
                }
            })}
        </Suspense>
    }
}

fn stage_badge(stage: u8, label: &str) -> impl IntoView + use<> {
    let text = if stage == 0 { "Not yet staged".to_owned() } else { format!("Stage {stage} · {label}") };
    view! { <span class=format!("badge stage-{}", stage.min(3))>{text}</span> }
}

fn warning_label(kind: WarningKind) -> &'static str {
    match kind {
        WarningKind::AiForAisSake => "AI for AI's sake",
        WarningKind::TooManyProjects => "Too many projects",
        WarningKind::NoMeasurement => "No measurement",
        WarningKind::OneTechnology => "One technology",
    }
}

#[component]
fn AdoptionView(report: AdoptionReport) -> impl IntoView {
    let AdoptionReport {
        as_of,
        season,
        statements,
        units,
        warnings,
        trend,
        trend_method,
        rules,
        rules_version,
        rules_set_by,
        rules_set_at,
    } = report;
    let provenance = match (rules_set_by, rules_set_at) {
        (Some(by), Some(at)) => format!(
            "Version {} of this organisation's rules, set by {by} on {} UTC.",
            rules_version.0,
            at.format("%Y-%m-%d %H:%M")
        ),
        _ => "The default rules: nobody in this organisation has changed them.".to_owned(),
    };
    let admin = crate::may(slope_domain::Action::Administer);
    let basis = match season {
        Some(s) => format!(
            "Evidence as of {} UTC; key results and squad goals of the season “{s}”.",
            as_of.format("%Y-%m-%d %H:%M")
        ),
        None => format!(
            "Evidence as of {} UTC; there is no season, so no key results or squad goals.",
            as_of.format("%Y-%m-%d %H:%M")
        ),
    };
    let warning_count = warnings.len();
    view! {
        <p class="muted">{basis}</p>
        <section aria-labelledby="units-heading">
            <h2 id="units-heading">"Units"</h2>
            {if units.is_empty() {
                view! { <p class="empty">"No units yet: add units, squads with a unit, or send events that name a unit."</p> }.into_any()
            } else {
                view! {
                    <ul class="cards units">
                        {units.into_iter().map(|u| view! { <UnitCard unit=u/> }).collect_view()}
                    </ul>
                }.into_any()
            }}
        </section>
        <section aria-labelledby="warnings-heading">
            <h2 id="warnings-heading">{format!("Warnings ({warning_count})")}</h2>
            {if warnings.is_empty() {
                view! { <p class="empty">"No failure mode detected."</p> }.into_any()
            } else {
                view! {
                    <ul class="warnings">
                        {warnings.into_iter().map(|w| view! {
                            <li class="warning">
                                <span class="badge warn">{warning_label(w.kind)}</span>" "
                                <strong>{w.title}</strong>
                                <ul class="evidence">
                                    {w.evidence.into_iter().map(|e| view! { <li>{e}</li> }).collect_view()}
                                </ul>
                            </li>
                        }).collect_view()}
                    </ul>
                }.into_any()
            }}
        </section>
        <section aria-labelledby="trend-heading">
            <h2 id="trend-heading">"Stages over time"</h2>
            <p class="muted">{trend_method}</p>
            <StageTrendChart trend/>
        </section>
        <section aria-labelledby="rules-heading">
            <h2 id="rules-heading">"The rules"</h2>
            <p class="muted" id="rules-version">{provenance}</p>
            <dl class="rules">
                {statements.into_iter().map(|s| view! { <dt>{s.name}</dt><dd>{s.rule}</dd> }).collect_view()}
            </dl>
            {admin.then(|| view! {
                <details class="rules-form">
                    <summary>"Change the rules"</summary>
                    <RulesForm current=rules.to_input(rules_version)/>
                </details>
            })}
        </section>
    }
}

#[component]
fn UnitCard(unit: UnitReport) -> impl IntoView {
    let UnitReport { unit: name, stage, stage_label, reasons, missing, next_step, evidence } = unit;
    let heading_id = format!("unit-{}", name.to_lowercase().replace(|c: char| !c.is_alphanumeric(), "-"));
    let loops: Vec<String> = evidence.loops.iter().map(|l| l.key.clone()).collect();
    let facts = format!(
        "{} people seen in 12 weeks · {} shown AI suggestions in 4 weeks{}",
        evidence.people_seen_12w,
        evidence.active_ai_users_4w,
        evidence.headcount.map(|h| format!(" · headcount {h}")).unwrap_or_default()
    );
    // Without a headcount the people are those seen in events, and people who never used an AI
    // feature are not among them: the share is then an upper bound, and the page says so.
    let admin = crate::may(slope_domain::Action::Administer);
    let uncounted = evidence.headcount.is_none().then(|| {
        view! {
            <p class="muted headcount-note">
                "No headcount: its people are counted from events, a lower bound, so its fluency share may be "
                "lower than shown."
                {admin.then(|| view! { " " <a href="/units">"Give it a headcount"</a> })}
            </p>
        }
    });
    view! {
        <li class="card unit-stage" aria-labelledby=heading_id.clone()>
            <h3 id=heading_id.clone()>{name.clone()}</h3>
            {evidence.parent.map(|p| view! { <p class="muted">{format!("Part of {p}")}</p> })}
            <p>{stage_badge(stage, &stage_label)}</p>
            <p class="muted">{facts}</p>
            {uncounted}
            <p class="muted">
                {if loops.is_empty() { "No loops".to_owned() } else { format!("Loops: {}", loops.join(", ")) }}
            </p>
            {(!reasons.is_empty()).then(|| view! {
                <h4>"Evidence"</h4>
                <ul class="reasons">{reasons.into_iter().map(|r| view! { <li>{r}</li> }).collect_view()}</ul>
            })}
            {next_step.map(|step| view! {
                <h4>"Next stage needs"</h4>
                <p class="next-step">{step}</p>
                {missing.map(|m| view! {
                    <details class="missing"><summary>"What was measured"</summary><p>{m}</p></details>
                })}
            })}
        </li>
    }
}

/// Units per stage at each weekly date as stacked bars, in server-rendered SVG with a title, a
/// description and the same numbers in a table for those who cannot see the chart.
#[component]
fn StageTrendChart(trend: Vec<StageCounts>) -> impl IntoView {
    const W: f64 = 640.0;
    const H: f64 = 220.0;
    const PAD: f64 = 36.0;
    const TOP: f64 = 24.0;
    if trend.is_empty() {
        return view! { <p class="empty">"No dates to show yet."</p> }.into_any();
    }
    let most = trend.iter().map(|t| t.counts.iter().sum::<u32>()).max().unwrap_or(0).max(1);
    let slot = (W - PAD - 8.0) / trend.len() as f64;
    let bar = (slot * 0.6).min(60.0);
    let scale = (H - PAD - TOP) / most as f64;
    let label = |s: usize| {
        if s == 0 { "not yet staged".to_owned() } else { format!("at stage {s} ({})", STAGE_LABELS[s]) }
    };
    let describe = |t: &StageCounts| {
        let parts: Vec<String> = (0..4).map(|s| format!("{} {}", t.counts[s], label(s))).collect();
        format!("{}: {}", t.on, parts.join(", "))
    };
    let desc = format!(
        "Units per stage at {} weekly dates, oldest first. {}.",
        trend.len(),
        trend.iter().map(describe).collect::<Vec<_>>().join("; ")
    );
    let bars = trend
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let x = PAD + slot * i as f64 + (slot - bar) / 2.0;
            let mut base = H - PAD;
            let segments = (0..4)
                .filter(|s| t.counts[*s] > 0)
                .map(|s| {
                    let height = t.counts[s] as f64 * scale;
                    base -= height;
                    let tip = format!("{}: {} {}", t.on, t.counts[s], label(s));
                    let title = tip.clone();
                    view! {
                        <rect class=format!("stack s{s}") x=format!("{x:.1}") y=format!("{base:.1}") width=format!("{bar:.1}") height=format!("{height:.1}") tabindex="0" data-tip=tip>
                            <title>{title}</title>
                        </rect>
                    }
                })
                .collect_view();
            let day = t.on.format("%d %b").to_string();
            view! {
                {segments}
                <text class="axis" x=format!("{:.1}", x + bar / 2.0) y=H - PAD + 14.0 text-anchor="middle">{day}</text>
            }
        })
        .collect_view();
    let legend = (0..4)
        .map(|s| {
            view! {
                <rect class=format!("stack s{s}") x=PAD + 150.0 * s as f64 y=4.0 width="10" height="10"></rect>
                <text class="axis" x=PAD + 150.0 * s as f64 + 14.0 y=13.0>{if s == 0 { "not yet".to_owned() } else { format!("stage {s}") }}</text>
            }
        })
        .collect_view();
    view! {
        <ChartHover>
        <figure class="chart stage-trend">
            <svg viewBox=format!("0 0 {W} {H}") role="img" aria-labelledby="stage-trend-title stage-trend-desc" preserveAspectRatio="xMidYMid meet">
                <title id="stage-trend-title">"Units per adoption stage, weekly"</title>
                <desc id="stage-trend-desc">{desc}</desc>
                {legend}
                <line class="ref start" x1=PAD x2=W - 8.0 y1=H - PAD y2=H - PAD></line>
                <text class="axis" x=4.0 y=TOP + 4.0>{most.to_string()}</text>
                <text class="axis" x=4.0 y=H - PAD>"0"</text>
                {bars}
            </svg>
            <figcaption class="muted">"Each bar counts the top-level units at each stage on that date."</figcaption>
        </figure>
        </ChartHover>
        <table class="compact trend-table">
            <caption>"Units per stage at each weekly date"</caption>
            <thead>
                <tr>
                    <th scope="col">"Date"</th>
                    <th scope="col">"Not yet"</th>
                    <th scope="col">"Stage 1 · AI fluency"</th>
                    <th scope="col">"Stage 2 · process AI"</th>
                    <th scope="col">"Stage 3 · growth inflection"</th>
                </tr>
            </thead>
            <tbody>
                {trend.into_iter().map(|t| view! {
                    <tr>
                        <th scope="row">{t.on.to_string()}</th>
                        <td>{t.counts[0]}</td><td>{t.counts[1]}</td><td>{t.counts[2]}</td><td>{t.counts[3]}</td>
                    </tr>
                }).collect_view()}
            </tbody>
        </table>
    }
    .into_any()
}

/// The admin's form for the adoption rules: the bar typed as a percentage, the version it was read at in
/// a hidden field (a stale one is refused).
#[island]
fn RulesForm(current: AdoptionRulesInput) -> impl IntoView {
    use crate::components::*;
    use leptos::server_fn::ServerFn;
    let action = ServerAction::<SaveAdoptionRules>::new();
    let errors: FormErrors = RwSignal::new(FieldErrors::new());
    watch_outcome(action, errors);
    let submit = submit_with_checks(action, errors, |f| rules_form(f).map(|_| ()));
    let number = |v: Option<f64>| v.map(fmt_number).unwrap_or_default();
    view! {
        <form class="form" method="post" action=SaveAdoptionRules::url() on:submit=submit novalidate>
            <FormMessages errors/>
            <input type="hidden" name="version" value=number(current.version.map(|v| v as f64))/>
            <Input label="Fluency bar (% of a unit's people)" name="fluency_bar" kind="number" step="any" errors
                value=number(current.fluency_bar.map(|b| b * 100.0)) required=true
                hint="Stage 1 needs at least this share of the unit's people shown AI suggestions in 4 weeks."/>
            <Input label="Most active goals per squad" name="max_active_goals_per_squad" kind="number" errors
                value=number(current.max_active_goals_per_squad.map(f64::from)) required=true
                hint="More at once is warned as too many simultaneous projects."/>
            <Input label="Longest without an eval (days)" name="eval_max_age_days" kind="number" errors
                value=number(current.eval_max_age_days.map(f64::from)) required=true
                hint="A loop whose champion was evaluated longer ago is warned as not being measured."/>
            <button type="submit" disabled=move || action.pending().get()>"Save the rules"</button>
        </form>
    }
}
