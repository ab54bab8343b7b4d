//! A closed season's review: what it set out to do, how each objective and key result ended, what the
//! slope bets learned, the thesis signals and their resolutions, how calibrated the team's confidence
//! was, and the retrospective, as one value the page, the API and a Markdown export all render.
//!
//! The review is derived from the closed season rather than stored beside it: a closed season's plan
//! and signals no longer change (the service refuses edits), and its calibration counts only check-ins
//! made by the end, so the same review comes back every time and there is no second copy to drift from
//! the first. A check-in made after the close (in the retrospective, say) moves a key result's last
//! value, which the review shows as the last value, not as a forecast.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::calibration::Calibration;
use crate::entities::{GoalStatus, Investment};
use crate::measure::fmt_number;
use crate::season::Season;
use crate::signals::{SeasonDashboard, ThesisSignal};

/// A key result as the season ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct KeyResultReview {
    pub title: String,
    /// The measure in words, such as "0.22 → 0.35 of characters".
    pub measure: String,
    pub score: f64,
    /// The latest value when the season closed.
    pub current: Option<f64>,
    /// The outcome at the quarter's end, when that came before the close.
    pub outcome: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ObjectiveReview {
    pub title: String,
    pub quarter: String,
    pub commitment: String,
    pub score: f64,
    pub expectation: f64,
    pub key_results: Vec<KeyResultReview>,
}

/// A slope bet and what became of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BetReview {
    pub title: String,
    pub squad: String,
    /// "kept" for a bet that ran to its end or is still running, "killed" for one its criteria ended.
    pub fate: String,
    pub challenges: Option<String>,
    pub kill_criteria: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SeasonReview {
    pub season: Season,
    pub score: f64,
    pub expectation: f64,
    pub objectives: Vec<ObjectiveReview>,
    /// The share of planned capacity that went to slope bets, against the season's target.
    pub slope_share: Option<f64>,
    pub bets: Vec<BetReview>,
    pub signals: Vec<ThesisSignal>,
    pub calibration: Calibration,
}

/// The review of the season a dashboard shows.
pub fn season_review(dashboard: &SeasonDashboard) -> SeasonReview {
    let tree = &dashboard.tree;
    let objectives = tree
        .objectives
        .iter()
        .map(|o| ObjectiveReview {
            title: o.objective.title.clone(),
            quarter: o.objective.quarter.to_string(),
            commitment: o.objective.commitment.as_str().to_owned(),
            score: o.score,
            expectation: o.expectation,
            key_results: o
                .key_results
                .iter()
                .map(|k| KeyResultReview {
                    title: k.key_result.title.clone(),
                    measure: k.key_result.measure.describe(),
                    score: k.progress.score,
                    current: k.key_result.current,
                    outcome: dashboard
                        .outlook
                        .key_result(k.key_result.id)
                        .and_then(|o| o.outcome.as_ref())
                        .map(|o| o.summary.clone()),
                })
                .collect(),
        })
        .collect();
    let bets = tree
        .objectives
        .iter()
        .flat_map(|o| &o.key_results)
        .flat_map(|k| &k.goals)
        .filter(|g| g.goal.investment == Investment::Slope)
        .map(|g| BetReview {
            title: g.goal.title.clone(),
            squad: g.squad_name.clone(),
            fate: if g.goal.status == GoalStatus::Killed { "killed" } else { "kept" }.to_owned(),
            challenges: g.goal.challenges.clone(),
            kill_criteria: g.goal.kill_criteria.clone(),
        })
        .collect();
    SeasonReview {
        season: tree.season.clone(),
        score: tree.score,
        expectation: tree.expectation,
        objectives,
        slope_share: tree.slope.overall.share,
        bets,
        signals: dashboard.signals.clone(),
        calibration: dashboard.calibration.clone(),
    }
}

fn percent(v: f64) -> String {
    format!("{:.0} %", v * 100.0)
}

/// The review as Markdown, for a wiki, an e-mail or a printed page.
pub fn review_markdown(review: &SeasonReview) -> String {
    let s = &review.season;
    let mut md = String::new();
    // Writing to a String cannot fail; the results are discarded on purpose.
    let _ = writeln!(md, "# Season review: {}\n", s.name);
    let _ = writeln!(
        md,
        "{} → {} · closed · score {} (expected {})\n",
        s.starts_on,
        s.ends_on,
        percent(review.score),
        percent(review.expectation)
    );
    let _ = writeln!(md, "**Thesis.** {}\n", s.thesis);
    let _ = writeln!(md, "**What winning looked like.** {}\n", s.winning);
    let _ = writeln!(md, "## Objectives and key results\n");
    for o in &review.objectives {
        let _ = writeln!(
            md,
            "### {} ({}, {}): {} of an expected {}\n",
            o.title,
            o.quarter,
            o.commitment,
            percent(o.score),
            percent(o.expectation)
        );
        if o.key_results.is_empty() {
            let _ = writeln!(md, "No key results.\n");
            continue;
        }
        let _ = writeln!(md, "| Key result | Measure | Last value | Score | At the quarter's end |");
        let _ = writeln!(md, "| --- | --- | --- | --- | --- |");
        for k in &o.key_results {
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} |",
                cell(&k.title),
                cell(&k.measure),
                k.current.map(fmt_number).unwrap_or_else(|| "—".to_owned()),
                percent(k.score),
                cell(k.outcome.as_deref().unwrap_or("—"))
            );
        }
        md.push('\n');
    }
    let _ = writeln!(md, "## Slope bets\n");
    let share = review.slope_share.map(percent).unwrap_or_else(|| "nothing planned".to_owned());
    let _ = writeln!(md, "Slope share {share} against a target of {}.\n", percent(s.slope_target));
    if review.bets.is_empty() {
        let _ = writeln!(md, "No slope bets.\n");
    }
    for b in &review.bets {
        let _ = write!(md, "- **{}** ({}): {}", b.title, b.squad, b.fate);
        if let Some(c) = b.challenges.as_deref().filter(|c| !c.trim().is_empty()) {
            let _ = write!(md, "; challenged “{}”", c.trim());
        }
        if let Some(k) = b.kill_criteria.as_deref().filter(|k| !k.trim().is_empty()) {
            let _ = write!(md, "; kill criteria “{}”", k.trim());
        }
        md.push('\n');
    }
    md.push('\n');
    let _ = writeln!(md, "## Thesis signals\n");
    if review.signals.is_empty() {
        let _ = writeln!(md, "None were raised.\n");
    }
    for sig in &review.signals {
        let _ = write!(md, "- {} ({})", sig.summary, sig.raised_at.format("%Y-%m-%d"));
        match (&sig.resolution, &sig.resolved_by) {
            (Some(note), by) => {
                let _ = write!(md, " — resolved by {}: {note}", by.as_deref().unwrap_or("someone"));
            }
            (None, _) => md.push_str(" — left open"),
        }
        md.push('\n');
    }
    md.push('\n');
    let _ = writeln!(md, "## Confidence calibration\n");
    let c = &review.calibration;
    match &c.season {
        None => {
            let _ = writeln!(md, "No ended key result had a check-in with a confidence.\n");
        }
        Some(b) => {
            let _ = writeln!(
                md,
                "Brier score {:.3} over {} check-ins of {} key results (0 is perfect; always saying 50 % scores 0.25).",
                b.brier, b.check_ins, c.ended_key_results
            );
            if let Some(silent) = c.silent_share {
                let _ = writeln!(md, "Silent in their last three weeks: {}.", percent(silent));
            }
            md.push('\n');
            let _ = writeln!(md, "| Confidence | Said | Met | Check-ins |");
            let _ = writeln!(md, "| --- | --- | --- | --- |");
            for bin in &c.reliability {
                let show = |v: Option<f64>| v.map(percent).unwrap_or_else(|| "—".to_owned());
                let _ = writeln!(
                    md,
                    "| {}–{} | {} | {} | {} |",
                    percent(bin.low),
                    percent(bin.high),
                    show(bin.mean_confidence),
                    show(bin.met_rate),
                    bin.count
                );
            }
            md.push('\n');
        }
    }
    let _ = writeln!(md, "## Retrospective\n");
    let _ = writeln!(md, "{}", s.retrospective.as_deref().unwrap_or("(none written)"));
    md
}

/// A table cell: a pipe or a line break would end the cell or the row.
fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calibration::{EndedKeyResult, calibration};
    use crate::entities::*;

    /// The roll-up tests' season, closed with a retrospective.
    fn season() -> Season {
        Season {
            name: "Agents".into(),
            thesis: "Agents draft notes.".into(),
            winning: "Half the notes drafted.".into(),
            status: SeasonStatus::Closed,
            retrospective: Some("We learned to ask before guessing.".into()),
            ..crate::rollup::tests::season()
        }
    }

    #[test]
    fn the_markdown_reads_every_part_and_escapes_table_cells() {
        let review = SeasonReview {
            season: season(),
            score: 0.55,
            expectation: 0.85,
            objectives: vec![ObjectiveReview {
                title: "Clinicians trust drafts".into(),
                quarter: "2027-Q1".into(),
                commitment: "committed".into(),
                score: 0.5,
                expectation: 1.0,
                key_results: vec![KeyResultReview {
                    title: "Accepted | kept".into(),
                    measure: "0.2 → 0.4".into(),
                    score: 0.5,
                    current: Some(0.3),
                    outcome: Some("ended 2027-03-31: 0.3 on 2027-03-30, missed 0.2 → 0.4".into()),
                }],
            }],
            slope_share: Some(0.25),
            bets: vec![BetReview {
                title: "Ask, don't guess".into(),
                squad: "Agents".into(),
                fate: "killed".into(),
                challenges: Some("Agents should never ask".into()),
                kill_criteria: Some(" ".into()),
            }],
            signals: vec![],
            calibration: calibration(&[EndedKeyResult {
                key_result_id: KeyResultId(1),
                ended_on: "2027-03-31".parse().unwrap(),
                met: false,
                squads: vec![],
                check_ins: vec![("2027-03-20".parse().unwrap(), "ana".into(), Some(0.6))],
            }]),
        };
        let md = review_markdown(&review);
        for needle in [
            "# Season review: Agents",
            "score 55 % (expected 85 %)",
            "### Clinicians trust drafts (2027-Q1, committed): 50 % of an expected 100 %",
            "| Accepted \\| kept | 0.2 → 0.4 | 0.3 | 50 % | ended 2027-03-31",
            "Slope share 25 % against a target of 20 %.",
            "- **Ask, don't guess** (Agents): killed; challenged “Agents should never ask”\n",
            "None were raised.",
            "Brier score 0.360 over 1 check-ins of 1 key results",
            "| 60 %–80 % | 60 % | 0 % | 1 |",
            "## Retrospective\n\nWe learned to ask before guessing.",
        ] {
            assert!(md.contains(needle), "{needle:?} missing from:\n{md}");
        }
    }
}
