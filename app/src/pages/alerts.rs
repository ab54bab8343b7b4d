//! The alerts pages: a person's inbox, the organisation's alerts and monitors, and one alert with its
//! evidence, history and a silence form; and the unread count in the header.

use leptos::prelude::*;
use leptos::server_fn::ServerFn;
use leptos_meta::Title;
use slope_domain::*;

use super::{LoadError, loading, missing_id, param_id};
use crate::api::*;
use crate::components::{FormErrors, FormMessages, Input, TextArea, submit_with_checks, watch_outcome};

fn at(t: &chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%d %H:%M UTC").to_string()
}

fn state_badge(state: AlertState) -> impl IntoView {
    let class = match state {
        AlertState::Firing => "badge warn",
        AlertState::Silenced => "badge",
        AlertState::Resolved => "badge ok",
    };
    view! { <span class=class data-state=state.as_str()>{state.as_str()}</span> }
}

/// The header's link to the alerts page, with the signed-in person's unread count.
#[component]
pub fn InboxLink() -> impl IntoView {
    let unread = Resource::new(|| (), |_| load_unread());
    view! {
        <Suspense fallback=|| ()>
            {move || Suspend::new(async move {
                let n = unread.await.unwrap_or(0);
                let label = if n > 0 { format!("Alerts ({n})") } else { "Alerts".to_owned() };
                view! { <a href="/alerts" id="inbox-link" data-unread=n.to_string()>{label}</a> }
            })}
        </Suspense>
    }
}

#[component]
pub fn AlertsPageView() -> impl IntoView {
    let data = Resource::new(|| (), |_| load_alerts_page());
    view! {
        <Title text="Alerts"/>
        <h1>"Alerts"</h1>
        <p class="lede">"What the monitors found: each alert fires once per finding, resolves when the finding no longer holds, and reaches its squad (or the leaders) in their inbox and on their webhooks."</p>
        <Suspense fallback=loading>
            {move || Suspend::new(async move {
                match data.await {
                    Err(e) => view! { <LoadError error=e/> }.into_any(),
                    Ok(page) => view! { <AlertsBody page/> }.into_any(),
                }
            })}
        </Suspense>
    }
}

#[component]
fn AlertsBody(page: AlertsPage) -> impl IntoView {
    let AlertsPage { inbox, alerts, monitors } = page;
    view! {
        {inbox.map(|inbox| view! { <InboxSection inbox/> })}
        <section aria-labelledby="alerts-heading">
            <h2 id="alerts-heading">"All alerts"</h2>
            {if alerts.is_empty() {
                view! { <p class="muted">"No monitor has fired yet."</p> }.into_any()
            } else {
                view! {
                    <table class="table" id="alerts">
                        <thead><tr><th>"State"</th><th>"Monitor"</th><th>"Finding"</th><th>"Started"</th><th>"Resolved"</th></tr></thead>
                        <tbody>
                            {alerts.into_iter().map(|a| view! {
                                <tr id=format!("alert-{}", a.alert.id)>
                                    <td>{state_badge(a.state)}</td>
                                    <td>{a.alert.monitor_name.clone()}</td>
                                    <td><a href=format!("/alerts/{}", a.alert.id)>{a.alert.summary.clone()}</a></td>
                                    <td>{at(&a.alert.started_at)}</td>
                                    <td>{a.alert.resolved_at.as_ref().map(at).unwrap_or_else(|| "—".into())}</td>
                                </tr>
                            }).collect_view()}
                        </tbody>
                    </table>
                }.into_any()
            }}
        </section>
        <section aria-labelledby="monitors-heading">
            <h2 id="monitors-heading">"Monitors"</h2>
            {if monitors.is_empty() {
                view! { <p class="muted">"No monitors yet: add them with " <code>"POST /api/v1/monitors"</code> " or " <code>"slope monitors apply FILE"</code> "."</p> }.into_any()
            } else {
                view! {
                    <table class="table" id="monitors">
                        <thead><tr><th>"Monitor"</th><th>"Checks"</th><th>"Every"</th><th>"Last run"</th></tr></thead>
                        <tbody>
                            {monitors.into_iter().map(|m| view! {
                                <tr>
                                    <th scope="row">{m.name.clone()}" "<span class="muted">{format!("({})", m.key)}</span>
                                        {(!m.enabled).then(|| view! { " " <span class="badge">"off"</span> })}</th>
                                    <td>{m.rule.describe()}</td>
                                    <td>{format!("{} min", m.every_minutes)}</td>
                                    <td>
                                        {m.last_run_at.as_ref().map(at).unwrap_or_else(|| "not yet".into())}
                                        {m.last_error.map(|e| view! { <p class="error">{format!("could not run: {e}")}</p> })}
                                    </td>
                                </tr>
                            }).collect_view()}
                        </tbody>
                    </table>
                }.into_any()
            }}
        </section>
    }
}

#[component]
fn InboxSection(inbox: Inbox) -> impl IntoView {
    let Inbox { unread, items } = inbox;
    view! {
        <section aria-labelledby="inbox-heading" id="inbox">
            <h2 id="inbox-heading">{format!("Your inbox ({unread} unread)")}</h2>
            {if items.is_empty() {
                view! { <p class="muted">"Nothing has been routed to you."</p> }.into_any()
            } else {
                view! {
                    {(unread > 0).then(|| view! {
                        <form method="post" action=MarkAlertsRead::url() class="inline">
                            <input type="hidden" name="alert_id" value=""/>
                            <button type="submit" class="button link">"Mark all read"</button>
                        </form>
                    })}
                    <ul class="inbox">
                        {items.into_iter().map(|item| {
                            let unread = item.read_at.is_none();
                            view! {
                                <li class:unread=unread data-alert=item.alert_id.to_string()>
                                    <span class="badge">{item.change.as_str()}</span>" "
                                    <a href=format!("/alerts/{}", item.alert_id)>{item.summary.clone()}</a>
                                    <span class="muted">{format!(" · {}", at(&item.created_at))}</span>
                                    {unread.then(|| view! {
                                        " "
                                        <form method="post" action=MarkAlertsRead::url() class="inline">
                                            <input type="hidden" name="alert_id" value=item.alert_id.to_string()/>
                                            <button type="submit" class="button link">"Mark read"</button>
                                        </form>
                                    })}
                                </li>
                            }
                        }).collect_view()}
                    </ul>
                }.into_any()
            }}
        </section>
    }
}

#[component]
pub fn AlertPage() -> impl IntoView {
    let id = param_id("id");
    let data = Resource::new(move || id.get(), |id| async move { load_alert(id.ok_or_else(missing_id)?).await });
    view! {
        <Suspense fallback=loading>
            {move || Suspend::new(async move {
                match data.await {
                    Err(e) => view! { <LoadError error=e/> }.into_any(),
                    Ok(detail) => view! { <AlertDetailView detail/> }.into_any(),
                }
            })}
        </Suspense>
    }
}

#[component]
fn AlertDetailView(detail: AlertDetail) -> impl IntoView {
    let AlertDetail { view: AlertView { alert, state }, history, can_silence } = detail;
    let title = format!("Alert {}", alert.id);
    let id = alert.id;
    view! {
        <Title text=title.clone()/>
        <p><a href="/alerts">"← Alerts"</a></p>
        <h1>{title}" "{state_badge(state)}</h1>
        <p class="lede" id="alert-summary">{alert.summary.clone()}</p>
        <dl class="facts">
            <dt>"Monitor"</dt><dd>{format!("{} ({}), {}", alert.monitor_name, alert.monitor_key, alert.kind.label())}</dd>
            <dt>"Started"</dt><dd>{at(&alert.started_at)}</dd>
            <dt>"Last seen"</dt><dd>{at(&alert.last_seen_at)}</dd>
            {alert.resolved_at.as_ref().map(|t| view! { <dt>"Resolved"</dt><dd>{at(t)}</dd> })}
            {alert.silenced_until.as_ref().filter(|_| state == AlertState::Silenced).map(|t| view! {
                <dt>"Silenced until"</dt>
                <dd id="silenced-until">{format!("{} by {}", at(t), alert.silenced_by.clone().unwrap_or_default())}</dd>
            })}
        </dl>
        <h2>"Evidence"</h2>
        <EvidenceView evidence=alert.evidence.clone()/>
        <h2>"History"</h2>
        <ol class="history" id="alert-history">
            {history.into_iter().map(|e| view! {
                <li>
                    <strong>{e.change.as_str()}</strong>{format!(" · {} · {}", at(&e.at), e.by)}
                    {e.note.map(|n| view! { ": " <q>{n}</q> })}
                </li>
            }).collect_view()}
        </ol>
        {can_silence.then(|| view! {
            <h2>"Silence"</h2>
            <p class="muted">"A silenced alert notifies nobody until the silence ends, including when it resolves."</p>
            <SilenceForm alert=id/>
        })}
    }
}

#[component]
fn EvidenceView(evidence: AlertEvidence) -> impl IntoView {
    let rows: Vec<(&'static str, String)> = match evidence {
        AlertEvidence::Drift {
            loop_key,
            field,
            reference_from,
            reference_to,
            recent_from,
            recent_to,
            psi,
            js_distance,
            threshold,
            reference_values,
            recent_values,
        } => vec![
            ("Loop", loop_key),
            ("Field", field.to_string()),
            ("Reference window", format!("{reference_from} – {reference_to} ({reference_values} values)")),
            ("Recent window", format!("{recent_from} – {recent_to} ({recent_values} values)")),
            ("Population stability index", format!("{psi:.3} (fires at {threshold})")),
            ("Jensen–Shannon distance", format!("{js_distance:.3}")),
        ],
        AlertEvidence::Staleness { metric, observed_at, max_age_hours } => vec![
            ("Metric", metric),
            ("Newest data", observed_at.as_ref().map(at).unwrap_or_else(|| "none".into())),
            ("Limit", format!("{max_age_hours} h")),
        ],
        AlertEvidence::JobFailed { job_id, job_kind, loop_key, state, error, at: when } => vec![
            ("Job", format!("{job_kind} job {job_id}")),
            ("Loop", loop_key.unwrap_or_else(|| "—".into())),
            ("State", state.as_str().to_owned()),
            ("When", at(&when)),
            ("Error", error.unwrap_or_else(|| "—".into())),
        ],
        AlertEvidence::PromotionRefused { promotion_id, loop_key, challenger_id, reason, at: when } => vec![
            ("Decision", format!("promotion {promotion_id} of model {challenger_id} in {loop_key}")),
            ("When", at(&when)),
            ("Reason", reason),
        ],
        AlertEvidence::TrendReversal { metric, reversal } => vec![
            ("Metric", metric),
            (
                "Before",
                format!(
                    "{} – {}: {} a day (95 % {} – {})",
                    reversal.earlier.from,
                    reversal.earlier.to,
                    fmt_number(reversal.earlier.per_day),
                    fmt_number(reversal.earlier.ci_low),
                    fmt_number(reversal.earlier.ci_high)
                ),
            ),
            (
                "Recent",
                format!(
                    "{} – {}: {} a day (95 % {} – {})",
                    reversal.recent.from,
                    reversal.recent.to,
                    fmt_number(reversal.recent.per_day),
                    fmt_number(reversal.recent.ci_low),
                    fmt_number(reversal.recent.ci_high)
                ),
            ),
        ],
        AlertEvidence::KeyResultBehind { key_result_id, title, ends_on, probability, forecast } => vec![
            ("Key result", format!("{title} (#{key_result_id})")),
            ("Ends", ends_on.to_string()),
            ("Chance of reaching the target", format!("{:.0} %", probability * 100.0)),
            ("Forecast", forecast),
        ],
    };
    view! {
        <table class="table" id="alert-evidence">
            <tbody>
                {rows.into_iter().map(|(k, v)| view! { <tr><th scope="row">{k}</th><td>{v}</td></tr> }).collect_view()}
            </tbody>
        </table>
    }
}

#[island]
fn SilenceForm(alert: i64) -> impl IntoView {
    let action = ServerAction::<SilenceAlert>::new();
    let errors: FormErrors = RwSignal::new(FieldErrors::new());
    watch_outcome(action, errors);
    let submit = submit_with_checks(action, errors, |f: &SilenceAlert| silence_form(&f.hours, &f.note).map(|_| ()));
    view! {
        <form class="form silence" method="post" action=SilenceAlert::url() on:submit=submit novalidate>
            <FormMessages errors/>
            <input type="hidden" name="alert_id" value=alert.to_string()/>
            <Input label="For how many hours" name="hours" errors value="4" kind="number" step="any" required=true
                hint="At most a week (168 hours)."/>
            <TextArea label="Why" name="note" errors value="" rows=2
                hint="For the alert's history: a deploy in progress, a known outage."/>
            <button type="submit" disabled=move || action.pending().get()>"Silence"</button>
        </form>
    }
}
