//! Whether the team's check-in confidence is calibrated: for key results that have ended, each
//! check-in's stated confidence that the target will be met against whether it was.
//!
//! The Brier score is the mean of (confidence − outcome)², outcome 1 for met and 0 for missed: 0 is
//! perfect, 0.25 is what always saying 50 % earns, and lower than that is skill. The reliability
//! diagram bins the stated confidences in fifths and sets each bin's mean confidence against the share
//! of its check-ins whose key result was met: a calibrated team's bins lie on the diagonal. Every
//! check-in counts, not only the last: a squad that said 90 % all quarter and missed was overconfident
//! all quarter. Silent key results are those with no check-in in the last [`SILENT_WEEKS`] weeks before
//! their end: their confidence was never revised when it mattered.

use std::collections::BTreeMap;

use chrono::{Duration, NaiveDate};
use serde::{Deserialize, Serialize};

use crate::entities::KeyResultId;

/// A key result is silent when no one checked in during this many weeks before its end.
pub const SILENT_WEEKS: i64 = 3;

/// The number of equal-width confidence bins of the reliability diagram.
pub const RELIABILITY_BINS: usize = 5;

/// One ended key result's evidence: its check-ins' confidences and whether its target was met.
#[derive(Debug, Clone, PartialEq)]
pub struct EndedKeyResult {
    pub key_result_id: KeyResultId,
    pub ended_on: NaiveDate,
    pub met: bool,
    /// The squads whose goals ladder to it: its check-ins count for each of them.
    pub squads: Vec<String>,
    /// Every check-in: the day, its author and the stated confidence (`None` when none was given).
    pub check_ins: Vec<(NaiveDate, String, Option<f64>)>,
}

/// One bin of the reliability diagram.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ReliabilityBin {
    /// The bin's confidences lie in [low, high) (the last bin includes 1).
    pub low: f64,
    pub high: f64,
    pub count: usize,
    /// The mean stated confidence in the bin; `None` when it is empty.
    pub mean_confidence: Option<f64>,
    /// The share of the bin's check-ins whose key result was met.
    pub met_rate: Option<f64>,
}

/// A Brier score over some check-ins.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BrierScore {
    /// Who or what the score is for: a person's e-mail or name, a squad's name, or "season".
    pub subject: String,
    pub check_ins: usize,
    pub brier: f64,
}

/// The calibration of a season's check-ins.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Calibration {
    /// How many key results had ended, and how many check-ins with a confidence they had.
    pub ended_key_results: usize,
    pub check_ins: usize,
    /// `None` when no ended key result had a check-in with a confidence.
    pub season: Option<BrierScore>,
    pub by_person: Vec<BrierScore>,
    pub by_squad: Vec<BrierScore>,
    pub reliability: Vec<ReliabilityBin>,
    /// Ended key results without a check-in in the last [`SILENT_WEEKS`] weeks before their end.
    pub silent: Vec<KeyResultId>,
    /// silent ÷ ended key results; `None` when none had ended.
    pub silent_share: Option<f64>,
}

/// The calibration of the check-ins of `ended` key results.
pub fn calibration(ended: &[EndedKeyResult]) -> Calibration {
    let mut all = Vec::new();
    let mut people: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
    let mut squads: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
    let mut silent = Vec::new();
    for kr in ended {
        let outcome = if kr.met { 1.0 } else { 0.0 };
        let from = kr.ended_on - Duration::weeks(SILENT_WEEKS);
        if !kr.check_ins.iter().any(|(on, _, _)| *on > from && *on <= kr.ended_on) {
            silent.push(kr.key_result_id);
        }
        // A check-in given after the end (in a retrospective, say) knew the answer: it is no forecast.
        for (_, author, confidence) in kr.check_ins.iter().filter(|(on, _, _)| *on <= kr.ended_on) {
            let Some(c) = confidence.filter(|c| c.is_finite()) else { continue };
            let pair = (c.clamp(0.0, 1.0), outcome);
            all.push(pair);
            people.entry(author.clone()).or_default().push(pair);
            for squad in &kr.squads {
                squads.entry(squad.clone()).or_default().push(pair);
            }
        }
    }
    let score = |subject: String, pairs: &[(f64, f64)]| BrierScore {
        subject,
        check_ins: pairs.len(),
        brier: pairs.iter().map(|(c, o)| (c - o).powi(2)).sum::<f64>() / pairs.len() as f64,
    };
    let reliability = (0..RELIABILITY_BINS)
        .map(|b| {
            let (low, high) = (b as f64 / RELIABILITY_BINS as f64, (b + 1) as f64 / RELIABILITY_BINS as f64);
            let last = b + 1 == RELIABILITY_BINS;
            let inside: Vec<&(f64, f64)> =
                all.iter().filter(|(c, _)| *c >= low && (*c < high || (last && *c <= high))).collect();
            let n = inside.len();
            let mean = |f: fn(&(f64, f64)) -> f64| (n > 0).then(|| inside.iter().map(|p| f(p)).sum::<f64>() / n as f64);
            ReliabilityBin { low, high, count: n, mean_confidence: mean(|p| p.0), met_rate: mean(|p| p.1) }
        })
        .collect();
    let silent_share = (!ended.is_empty()).then(|| silent.len() as f64 / ended.len() as f64);
    Calibration {
        ended_key_results: ended.len(),
        check_ins: all.len(),
        season: (!all.is_empty()).then(|| score("season".to_owned(), &all)),
        by_person: people.into_iter().map(|(who, pairs)| score(who, &pairs)).collect(),
        by_squad: squads.into_iter().map(|(name, pairs)| score(name, &pairs)).collect(),
        reliability,
        silent,
        silent_share,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(n: i64) -> NaiveDate {
        NaiveDate::from_ymd_opt(2027, 1, 1).unwrap() + Duration::days(n)
    }

    fn ended(id: i64, met: bool, squads: &[&str], check_ins: &[(i64, &str, Option<f64>)]) -> EndedKeyResult {
        EndedKeyResult {
            key_result_id: KeyResultId(id),
            ended_on: day(89),
            met,
            squads: squads.iter().map(|s| s.to_string()).collect(),
            check_ins: check_ins.iter().map(|(d, who, c)| (day(*d), who.to_string(), *c)).collect(),
        }
    }

    #[test]
    fn brier_scores_match_a_worked_example() {
        // Worked by hand from Brier's (1950) definition for one binary event: forecasts 0.9, 0.7, 0.2 and
        // 0.6 of outcomes 1, 1, 0 and 0 score ((0.1)² + (0.3)² + (0.2)² + (0.6)²) / 4 = 0.125.
        let krs = [
            ended(1, true, &["Drafts"], &[(80, "ana", Some(0.9)), (85, "ben", Some(0.7))]),
            ended(2, false, &["Agents"], &[(70, "ana", Some(0.2)), (88, "ben", Some(0.6))]),
        ];
        let c = calibration(&krs);
        let season = c.season.as_ref().unwrap();
        assert_eq!((season.check_ins, c.ended_key_results), (4, 2));
        assert!((season.brier - 0.125).abs() < 1e-12, "{}", season.brier);
        // Per person: ana (0.01 + 0.04) / 2 = 0.025, ben (0.09 + 0.36) / 2 = 0.225.
        let person = |who: &str| c.by_person.iter().find(|b| b.subject == who).unwrap().brier;
        assert!((person("ana") - 0.025).abs() < 1e-12 && (person("ben") - 0.225).abs() < 1e-12);
        // Per squad: Drafts had the met one (0.05 / 2), Agents the missed one (0.40 / 2).
        let squad = |name: &str| c.by_squad.iter().find(|b| b.subject == name).unwrap().brier;
        assert!((squad("Drafts") - 0.05).abs() < 1e-12 && (squad("Agents") - 0.2).abs() < 1e-12);
    }

    #[test]
    fn the_reliability_diagram_bins_confidences_against_outcomes() {
        let krs = [
            ended(1, true, &[], &[(80, "a", Some(0.85)), (81, "a", Some(0.95)), (82, "a", Some(1.0))]),
            ended(2, false, &[], &[(80, "a", Some(0.9)), (81, "a", Some(0.1))]),
        ];
        let c = calibration(&krs);
        assert_eq!(c.reliability.len(), RELIABILITY_BINS);
        let top = c.reliability[4];
        assert_eq!(top.count, 4, "1.0 falls in the last bin");
        assert!((top.mean_confidence.unwrap() - 0.925).abs() < 1e-12);
        assert!((top.met_rate.unwrap() - 0.75).abs() < 1e-12);
        assert_eq!((c.reliability[0].count, c.reliability[0].met_rate), (1, Some(0.0)));
        assert_eq!((c.reliability[2].count, c.reliability[2].mean_confidence), (0, None));
    }

    #[test]
    fn silence_and_hindsight_are_told_apart() {
        let krs = [
            // The last check-in 30 days before the end: silent. Its confidence still counts.
            ended(1, true, &[], &[(59, "a", Some(0.8))]),
            // A check-in after the end knew the outcome: it does not count, and does not break silence.
            ended(2, false, &[], &[(95, "a", Some(0.0))]),
            // Checked in during the last three weeks, without a confidence.
            ended(3, true, &[], &[(85, "a", None)]),
        ];
        let c = calibration(&krs);
        assert_eq!(c.silent, vec![KeyResultId(1), KeyResultId(2)]);
        assert!((c.silent_share.unwrap() - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(c.check_ins, 1);
        assert!((c.season.unwrap().brier - 0.04).abs() < 1e-12);
        let none = calibration(&[]);
        assert_eq!((none.season, none.silent_share), (None, None));
    }
}
