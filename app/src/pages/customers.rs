//! Customers: lifetime value fitted to the organisation's transactions. The `ltv` metrics' weekly
//! series (what key results and squad goals are fed by), and the current fit: its parameters, how
//! expected value is spread over customers, how P(alive) falls with weeks since the last purchase, and
//! the monthly cohorts.

use leptos::prelude::*;
use leptos_meta::Title;
use slope_domain::*;

use super::loops::{MetricProblemNote, series_of};
use super::{LoadError, loading};
use crate::api::*;
use crate::components::*;

#[component]
pub fn CustomersPage() -> impl IntoView {
    let data = Resource::new(|| (), |_| load_customers());
    view! {
        <Title text="Customers"/>
        <h1>"Customers"</h1>
        <p class="lede">
            "Customer lifetime value from the organisation's transactions (sent to "
            <code>"POST /api/v1/transactions"</code>" or with "<code>"slope ingest --transactions"</code>
            "). A metric of kind "<code>"ltv"</code>" keeps it week by week, so a key result or squad goal can be fed by it."
        </p>
        <Suspense fallback=loading>
            {move || Suspend::new(async move {
                match data.await {
                    Err(e) => view! { <LoadError error=e/> }.into_any(),
                    Ok(report) => view! { <CustomersView report/> }.into_any(),
                }
            })}
        </Suspense>
    }
}

#[component]
fn CustomersView(report: CustomersReport) -> impl IntoView {
    let CustomersReport { metrics, fit, fit_problem } = report;
    view! {
        <section aria-labelledby="ltv-metrics-heading">
            <h2 id="ltv-metrics-heading">"Lifetime value metrics"</h2>
            {if metrics.is_empty() {
                view! {
                    <p class="empty">
                        "No lifetime value metric yet: define one of kind ltv on "<a href="/loops">"the loops page"</a>
                        " (optionally for one unit) to keep it week by week."
                    </p>
                }.into_any()
            } else {
                metrics.into_iter().map(|series| {
                    let m = series.metric.clone();
                    let latest = series.points.last().map(|p| {
                        let ci = p.ci_low.zip(p.ci_high).map(|(l, h)| format!(" (95 % CI {} – {})", money_text(l), money_text(h))).unwrap_or_default();
                        format!("Week of {}: {} per customer over 52 weeks{ci}, {} customers.", p.bucket, money_text(p.value), p.n.unwrap_or_default())
                    });
                    view! {
                        <article class="panel ltv-metric">
                            <h3>
                                <a href=format!("/metrics/{}", m.key)>{m.name.clone()}</a>
                                {m.unit.clone().map(|u| view! { <span class="meta">{format!(" · unit {u}")}</span> })}
                                {series.stale.then(|| view! { " " <span class="badge warn">"stale"</span> })}
                            </h3>
                            {series.problem.clone().map(|p| view! { <MetricProblemNote problem=p/> })}
                            <p class="meta">{latest.unwrap_or_else(|| "No point yet.".into())}</p>
                            <LineChart series=vec![series_of(&series)] title=m.name.clone() format=money_text/>
                        </article>
                    }
                }).collect_view().into_any()
            }}
        </section>
        <section aria-labelledby="fit-heading">
            <h2 id="fit-heading">"The current fit"</h2>
            {match fit {
                None => view! {
                    <p class="empty">{format!("No fit: {}.", fit_problem.unwrap_or_else(|| "no transactions yet".into()))}</p>
                }.into_any(),
                Some(fit) => view! { <FitView fit/> }.into_any(),
            }}
        </section>
    }
}

#[component]
fn FitView(fit: CustomerValueFit) -> impl IntoView {
    let params = format!(
        "BG/NBD r = {:.3}, α = {:.3}, a = {:.3}, b = {:.3}{}",
        fit.r,
        fit.alpha,
        fit.a,
        fit.b,
        fit.spend.map(|s| format!("; Gamma-Gamma p = {:.3}, q = {:.3}, v = {:.3}", s.p, s.q, s.v)).unwrap_or_default()
    );
    let mean = fit.mean_clv.map(money_text).unwrap_or_else(|| "— (no amounts)".into());
    view! {
        <dl class="figures">
            <div><dt>"Customers"</dt><dd>{fmt_number(fit.customers as f64)}</dd></div>
            <div><dt>{format!("Mean value, next {} weeks", fit.horizon_weeks)}</dt><dd>{mean}</dd></div>
        </dl>
        <p class="meta">{params}</p>
        <details><summary>"How this is computed"</summary><p>{fit.method.clone()}</p></details>
        <div class="grid-2">
            <ValueHistogram bins=fit.distribution.clone()/>
            <AliveCurve points=fit.p_alive.clone()/>
        </div>
        <h3>"Cohorts by month of first purchase"</h3>
        <table class="history">
            <thead><tr>
                <th scope="col">"Cohort"</th><th scope="col">"Customers"</th><th scope="col">"Mean P(alive)"</th>
                <th scope="col">"Expected purchases, next 52 weeks"</th><th scope="col">"Mean value"</th>
            </tr></thead>
            <tbody>
                {fit.cohorts.iter().rev().map(|c| view! {
                    <tr>
                        <td>{c.cohort.format("%Y-%m").to_string()}</td>
                        <td>{c.customers}</td>
                        <td>{share_text(c.mean_p_alive)}</td>
                        <td>{format!("{:.2}", c.mean_expected_purchases)}</td>
                        <td>{c.mean_clv.map(money_text).unwrap_or_default()}</td>
                    </tr>
                }).collect_view()}
            </tbody>
        </table>
    }
}

const W: f64 = 320.0;
const H: f64 = 160.0;
const PAD: f64 = 28.0;

/// The frame both small charts share: the hover read-out, a titled and described SVG with its
/// baseline, the marks, and a caption.
#[component]
fn SmallChart(
    class: &'static str,
    title: &'static str,
    desc: String,
    caption: &'static str,
    children: Children,
) -> impl IntoView {
    view! {
        <ChartHover>
        <figure class=class>
            <svg viewBox=format!("0 0 {W} {H}") role="img" preserveAspectRatio="xMidYMid meet">
                <title>{title}</title>
                <desc>{desc}</desc>
                <line class="ref start" x1=PAD x2=W - 4.0 y1=H - PAD y2=H - PAD></line>
                {children()}
            </svg>
            <figcaption class="muted">{caption}</figcaption>
        </figure>
        </ChartHover>
    }
}

/// Customers per bin of expected value, as columns.
#[component]
fn ValueHistogram(bins: Vec<ValueBin>) -> impl IntoView {
    if bins.is_empty() {
        return view! { <p class="empty">"No value distribution without amounts."</p> }.into_any();
    }
    let most = bins.iter().map(|b| b.customers).max().unwrap_or(1).max(1) as f64;
    let slot = (W - PAD) / bins.len() as f64;
    let last = bins.len() - 1;
    // The last bin holds everything above its lower end.
    let label = |i: usize, b: &ValueBin| {
        let upper = if i == last { "and more".to_owned() } else { format!("to {}", money_text(b.to)) };
        format!("{} {upper}: {} customers", money_text(b.from), b.customers)
    };
    let desc = bins.iter().enumerate().map(|(i, b)| label(i, b)).collect::<Vec<_>>().join("; ");
    let columns = bins
        .iter()
        .enumerate()
        .map(|(i, b)| {
            let height = b.customers as f64 / most * (H - 2.0 * PAD);
            let x = PAD + slot * i as f64;
            let tip = label(i, b);
            let title = tip.clone();
            view! {
                <rect class="bar" x=format!("{:.1}", x + 1.0) y=format!("{:.1}", H - PAD - height) width=format!("{:.1}", (slot - 2.0).max(1.0)) height=format!("{height:.1}") tabindex="0" data-tip=tip>
                    <title>{title}</title>
                </rect>
            }
        })
        .collect_view();
    let top = bins.last().map(|b| money_text(b.from)).unwrap_or_default();
    view! {
        <SmallChart class="chart weekly-bars" title="Customers by expected value" desc caption="Customers by expected value over the next 52 weeks">
            {columns}
            <text class="axis" x=PAD y=H - PAD + 14.0>"0"</text>
            <text class="axis" x=W - 4.0 y=H - PAD + 14.0 text-anchor="end">{format!("{top}+")}</text>
            <text class="axis" x=2.0 y=PAD>{fmt_number(most)}</text>
        </SmallChart>
    }
    .into_any()
}

/// Mean P(alive) by weeks since the last purchase, on a 0–100 % axis.
#[component]
fn AliveCurve(points: Vec<AliveAt>) -> impl IntoView {
    if points.is_empty() {
        return view! { <p class="empty">"No customer has bought twice yet."</p> }.into_any();
    }
    let most = points.iter().map(|p| p.periods_since_purchase).max().unwrap_or(1).max(1) as f64;
    let x = move |w: u32| PAD + w as f64 / most * (W - PAD - 8.0);
    let y = move |v: f64| H - PAD - v.clamp(0.0, 1.0) * (H - 2.0 * PAD);
    let path: String = points
        .iter()
        .enumerate()
        .map(|(i, p)| {
            format!("{}{:.1},{:.1}", if i == 0 { "M" } else { " L" }, x(p.periods_since_purchase), y(p.mean_p_alive))
        })
        .collect();
    let label = |p: &AliveAt| {
        format!(
            "{} weeks since the last purchase: P(alive) {} over {} customers",
            p.periods_since_purchase,
            share_text(p.mean_p_alive),
            p.customers
        )
    };
    let desc = points.iter().map(label).collect::<Vec<_>>().join("; ");
    let dots = points
        .iter()
        .map(|p| {
            let tip = label(p);
            let title = tip.clone();
            view! { <circle class="point s0" cx=x(p.periods_since_purchase) cy=y(p.mean_p_alive) r="2.5" tabindex="0" data-tip=tip><title>{title}</title></circle> }
        })
        .collect_view();
    view! {
        <SmallChart class="chart" title="P(alive) by weeks since the last purchase" desc caption="Mean P(alive) by weeks since the last purchase (customers who bought twice or more)">
            <path class="series s0" d=path></path>
            {dots}
            <text class="axis" x=2.0 y=y(1.0) + 4.0>"100 %"</text>
            <text class="axis" x=2.0 y=y(0.0)>"0 %"</text>
            <text class="axis" x=PAD y=H - PAD + 14.0>"0"</text>
            <text class="axis" x=W - 4.0 y=H - PAD + 14.0 text-anchor="end">{format!("{most} weeks")}</text>
        </SmallChart>
    }
    .into_any()
}
