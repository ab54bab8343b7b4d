//! A closed season's review: objectives and key results as they ended, slope bets, thesis signals,
//! calibration and the retrospective, with its Markdown export. It prints as it reads (the print style
//! sheet hides the navigation), which is how it becomes a PDF.

use leptos::prelude::*;
use leptos_meta::Title;
use slope_domain::*;

use super::season_dashboard::CalibrationPanel;
use super::{LoadError, loading, missing_id, param_id};
use crate::api::*;
use crate::components::share_text;

#[component]
pub fn SeasonReviewPage() -> impl IntoView {
    let id = param_id("id");
    let data =
        Resource::new(move || id.get(), |id| async move { load_season_review(id.ok_or_else(missing_id)?).await });
    view! {
        <Suspense fallback=loading>
            {move || Suspend::new(async move {
                match data.await {
                    Err(e) => view! { <LoadError error=e/> }.into_any(),
                    Ok(r) => view! { <ReviewView review=r/> }.into_any(),
                }
            })}
        </Suspense>
    }
}

#[component]
fn ReviewView(review: SeasonReview) -> impl IntoView {
    let SeasonReview { season, score, expectation, objectives, slope_share, bets, signals, calibration } = review;
    let sid = season.id;
    let title = format!("{} — review", season.name);
    let objectives = objectives
        .into_iter()
        .map(|o| {
            let heading = format!(
                "{} ({}, {}): {} of an expected {}",
                o.title,
                o.quarter,
                o.commitment,
                share_text(o.score),
                share_text(o.expectation)
            );
            let rows = o
                .key_results
                .into_iter()
                .map(|k| {
                    view! {
                        <tr>
                            <th scope="row">{k.title}</th>
                            <td>{k.measure}</td>
                            <td>{k.current.map(fmt_number).unwrap_or_else(|| "—".to_owned())}</td>
                            <td>{share_text(k.score)}</td>
                            <td>{k.outcome.unwrap_or_else(|| "—".to_owned())}</td>
                        </tr>
                    }
                })
                .collect_view();
            view! {
                <section class="panel review-objective">
                    <h3>{heading}</h3>
                    <table>
                        <thead><tr><th scope="col">"Key result"</th><th scope="col">"Measure"</th><th scope="col">"Last value"</th><th scope="col">"Score"</th><th scope="col">"At the quarter's end"</th></tr></thead>
                        <tbody>{rows}</tbody>
                    </table>
                </section>
            }
        })
        .collect_view();
    let share = slope_share.map(share_text).unwrap_or_else(|| "nothing planned".to_owned());
    let bets_view = if bets.is_empty() {
        view! { <p class="empty">"No slope bets."</p> }.into_any()
    } else {
        view! {
            <ul class="review-bets">
                {bets.into_iter().map(|b| {
                    let detail = [
                        b.challenges.filter(|c| !c.trim().is_empty()).map(|c| format!("challenged “{}”", c.trim())),
                        b.kill_criteria.filter(|k| !k.trim().is_empty()).map(|k| format!("kill criteria “{}”", k.trim())),
                    ]
                    .into_iter()
                    .flatten()
                    .collect::<Vec<_>>()
                    .join("; ");
                    let class = format!("bet {}", b.fate);
                    view! { <li class=class><strong>{b.title}</strong>{format!(" ({}): {}", b.squad, b.fate)}{(!detail.is_empty()).then(|| format!("; {detail}"))}</li> }
                }).collect_view()}
            </ul>
        }
        .into_any()
    };
    let signals_view = if signals.is_empty() {
        view! { <p class="empty">"No thesis signals were raised."</p> }.into_any()
    } else {
        view! {
            <ul class="review-signals">
                {signals.into_iter().map(|s| {
                    let resolution = match (s.resolution, s.resolved_by) {
                        (Some(note), by) => format!(" — resolved by {}: {note}", by.unwrap_or_else(|| "someone".to_owned())),
                        (None, _) => " — left open".to_owned(),
                    };
                    view! { <li>{s.summary}{format!(" ({})", s.raised_at.format("%Y-%m-%d"))}{resolution}</li> }
                }).collect_view()}
            </ul>
        }
        .into_any()
    };
    view! {
        <Title text=title.clone()/>
        <div class="page-head">
            <div>
                <h1>{title}</h1>
                <p class="meta">{format!("{} → {} · closed · score {} of an expected {}", season.starts_on, season.ends_on, share_text(score), share_text(expectation))}</p>
            </div>
            <a href=format!("/api/v1/seasons/{sid}/review.md") class="link" download=format!("{}-review.md", season.key)>"Markdown"</a>
        </div>
        <p class="lede">{season.thesis.clone()}</p>
        <p><strong>"What winning looked like. "</strong>{season.winning.clone()}</p>
        <section aria-labelledby="review-okr-heading">
            <h2 id="review-okr-heading">"Objectives and key results"</h2>
            {objectives}
        </section>
        <section class="panel" aria-labelledby="review-bets-heading">
            <h2 id="review-bets-heading">"Slope bets"</h2>
            <p>{format!("Slope share {share} against a target of {}.", share_text(season.slope_target))}</p>
            {bets_view}
        </section>
        <section class="panel" aria-labelledby="review-signals-heading">
            <h2 id="review-signals-heading">"Thesis signals"</h2>
            {signals_view}
        </section>
        <CalibrationPanel calibration/>
        <section class="panel" aria-labelledby="review-retro-heading">
            <h2 id="review-retro-heading">"Retrospective"</h2>
            <p class="retrospective">{season.retrospective.clone().unwrap_or_else(|| "(none written)".to_owned())}</p>
        </section>
    }
}
