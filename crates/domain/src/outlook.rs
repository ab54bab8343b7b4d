//! Where a season is heading: each key result's forecast at its end, from its metric or its check-ins,
//! and the scores its objectives and the season can expect then, by simulation over those forecasts.
//!
//! A key result ends with its objective's quarter, or with the season when that comes first: an OKR is
//! judged when its quarter closes, not months later. Its forecast is the dashboard's
//! ([`project_measure`]): from recent evidence while the end is ahead, the outcome once it has passed.
//!
//! The roll-up is a simulation, not a sum of probabilities: objectives score the weighted mean of their
//! key results' progress, so whether an objective lands depends on how far each key result gets, not
//! only on whether it gets all the way. Each draw reads every forecast key result at its end from its
//! forecast distribution (Student's t around the line, as the forecast's interval is), turns each
//! reading into a progress score the way the live tree does, and rolls the scores up with the tree's
//! weights. A key result that has ended counts at its outcome; one without a forecast (a milestone, or
//! too little evidence) counts at its current score in every draw, which the page says. The draws are
//! seeded by the season, so the same evidence always gives the same figures.

use std::collections::{BTreeMap, HashMap};

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use crate::checkin::CheckIn;
use crate::entities::{KeyResultId, ObjectiveId, string_enum};
use crate::forecast::{Forecast, ON_TRACK_PROBABILITY, TrendPoint};
use crate::projection::{Outcome, Projection, project_measure};
use crate::rollup::{SeasonTree, weighted_mean};

/// How many draws the roll-up takes: the Monte Carlo error of a probability is then at most
/// 0.5 / √4000 ≈ 0.8 percentage points.
pub const OUTLOOK_DRAWS: usize = 4000;

/// How many key results the dashboard lists as least likely to land.
pub const LEAST_LIKELY_SHOWN: usize = 3;

string_enum!(
    /// What a key result's forecast rests on.
    Evidence { Metric => "metric", CheckIns => "check-ins", Nothing => "nothing" }
);

/// One key result's evidence: its readings, from the metric that feeds it or from its check-ins.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyResultReadings {
    pub evidence: Evidence,
    pub points: Vec<TrendPoint>,
}

impl KeyResultReadings {
    /// A key result's readings from its check-ins: the last of each day (a correction the same day
    /// replaces the reading).
    pub fn from_check_ins(check_ins: &[CheckIn]) -> KeyResultReadings {
        let mut by_day: BTreeMap<NaiveDate, &CheckIn> = BTreeMap::new();
        for c in check_ins {
            let on = c.recorded_at.date_naive();
            if by_day.get(&on).is_none_or(|seen| (seen.recorded_at, seen.id.0) <= (c.recorded_at, c.id.0)) {
                by_day.insert(on, c);
            }
        }
        let points =
            by_day.into_iter().map(|(on, c)| TrendPoint { on, value: c.value, ci_low: None, ci_high: None }).collect();
        KeyResultReadings { evidence: Evidence::CheckIns, points }
    }

    /// A key result's readings from the points of the metric that feeds it.
    pub fn from_metric(points: &[crate::metric::MetricPoint]) -> KeyResultReadings {
        KeyResultReadings { evidence: Evidence::Metric, points: points.iter().map(TrendPoint::from).collect() }
    }
}

/// The day a key result of an objective in `quarter` ends: the quarter's last day, or the season's when
/// that comes first.
pub fn key_result_ends_on(quarter: crate::quarter::Quarter, season_ends_on: NaiveDate) -> NaiveDate {
    quarter.range().end.min(season_ends_on)
}

/// One key result at its end: the forecast (or the outcome) and the score the draws expect.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct KeyResultOutlook {
    pub key_result_id: KeyResultId,
    pub objective_id: ObjectiveId,
    pub title: String,
    /// The objective's quarter's last day, or the season's when sooner.
    pub ends_on: NaiveDate,
    pub evidence: Evidence,
    /// While the end is ahead and the evidence allows a trend.
    pub forecast: Option<Forecast>,
    /// Once the end has passed.
    pub outcome: Option<Outcome>,
    /// The mean progress score over the draws (the current score when neither is known).
    pub expected_score: f64,
}

/// The distribution of a score at the end, over the draws.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ScoreOutlook {
    pub expected: f64,
    /// The 10th and 90th percentiles: an 80 % interval of the score at the end.
    pub low: f64,
    pub high: f64,
    /// Where the score is expected to land (1.0 committed, 0.7 aspirational; the season's is the
    /// weighted mean of its objectives').
    pub expectation: f64,
    /// The share of draws at or above the expectation.
    pub probability: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ObjectiveOutlook {
    pub objective_id: ObjectiveId,
    pub title: String,
    pub score: ScoreOutlook,
}

/// A season's outlook: its key results at their ends, and its objectives and itself rolled up.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SeasonOutlook {
    pub draws: usize,
    pub key_results: Vec<KeyResultOutlook>,
    pub objectives: Vec<ObjectiveOutlook>,
    pub season: ScoreOutlook,
    /// Forecast key results that are not on track, least likely to reach their target first (at most
    /// [`LEAST_LIKELY_SHOWN`]).
    pub least_likely: Vec<KeyResultId>,
}

impl SeasonOutlook {
    pub fn key_result(&self, id: KeyResultId) -> Option<&KeyResultOutlook> {
        self.key_results.iter().find(|k| k.key_result_id == id)
    }
}

/// How one key result enters the draws.
enum Draw<'a> {
    /// The same score in every draw.
    Fixed(f64),
    /// A reading from the forecast's t distribution, scored by the measure.
    Reading(&'a Forecast),
}

/// The season's outlook on `today` from each key result's `readings` (a key result missing from the map
/// has no evidence), with draws seeded by `seed`.
pub fn season_outlook(
    tree: &SeasonTree,
    readings: &HashMap<KeyResultId, KeyResultReadings>,
    today: NaiveDate,
    seed: u64,
) -> SeasonOutlook {
    let mut key_results = Vec::new();
    for objective in &tree.objectives {
        let ends_on = key_result_ends_on(objective.objective.quarter, tree.season.ends_on);
        for node in &objective.key_results {
            let kr = &node.key_result;
            let (evidence, points) = match readings.get(&kr.id) {
                Some(r) => (r.evidence, r.points.as_slice()),
                None => (Evidence::Nothing, &[][..]),
            };
            let (forecast, outcome) = match project_measure(points, &kr.measure, ends_on, today) {
                Projection::Forecast(f) => (Some(f), None),
                Projection::Outcome(o) => (None, Some(o)),
                Projection::TooFewPoints => (None, None),
            };
            key_results.push(KeyResultOutlook {
                key_result_id: kr.id,
                objective_id: objective.objective.id,
                title: kr.title.clone(),
                ends_on,
                evidence,
                forecast,
                outcome,
                expected_score: 0.0,
            });
        }
    }

    // Each key result's way into a draw, in the tree's order.
    let nodes: Vec<_> = tree.objectives.iter().flat_map(|o| &o.key_results).collect();
    let draws_of: Vec<Draw> = key_results
        .iter()
        .zip(&nodes)
        .map(|(k, node)| match (&k.forecast, &k.outcome) {
            (Some(f), _) if f.probability.is_some() => Draw::Reading(f),
            (_, Some(o)) => Draw::Fixed(match o.reading {
                Some(r) => node.key_result.measure.progress(Some(r.value)).score,
                None => 0.0,
            }),
            _ => Draw::Fixed(node.progress.score),
        })
        .collect();

    let mut rng = Rng::new(seed);
    let mut kr_sums = vec![0.0; key_results.len()];
    let mut objective_scores: Vec<Vec<f64>> = vec![Vec::with_capacity(OUTLOOK_DRAWS); tree.objectives.len()];
    let mut season_scores = Vec::with_capacity(OUTLOOK_DRAWS);
    let mut scores = vec![0.0; key_results.len()];
    for _ in 0..OUTLOOK_DRAWS {
        for (i, (draw, node)) in draws_of.iter().zip(&nodes).enumerate() {
            scores[i] = match draw {
                Draw::Fixed(score) => *score,
                Draw::Reading(f) => {
                    let reading = f.value + f.std_error * rng.student_t(f.trend.degrees_of_freedom());
                    node.key_result.measure.progress(Some(reading)).score
                }
            };
            kr_sums[i] += scores[i];
        }
        let mut at = 0;
        let mut per_objective = Vec::with_capacity(tree.objectives.len());
        for (o, objective) in tree.objectives.iter().enumerate() {
            let n = objective.key_results.len();
            let score = weighted_mean(
                objective.key_results.iter().zip(&scores[at..at + n]).map(|(k, s)| (k.key_result.weight, *s)),
            )
            .unwrap_or(0.0);
            at += n;
            objective_scores[o].push(score);
            per_objective.push((objective.objective.weight, score));
        }
        season_scores.push(weighted_mean(per_objective).unwrap_or(0.0));
    }
    for (k, sum) in key_results.iter_mut().zip(kr_sums) {
        k.expected_score = sum / OUTLOOK_DRAWS as f64;
    }
    let objectives = tree
        .objectives
        .iter()
        .zip(objective_scores)
        .map(|(o, draws)| ObjectiveOutlook {
            objective_id: o.objective.id,
            title: o.objective.title.clone(),
            score: summarise(draws, o.expectation),
        })
        .collect();
    let season = summarise(season_scores, tree.expectation);

    let mut at_risk: Vec<(f64, KeyResultId)> = key_results
        .iter()
        .filter_map(|k| {
            let f = k.forecast.as_ref()?;
            let p = f.probability?;
            (!f.holding && p < ON_TRACK_PROBABILITY).then_some((p, k.key_result_id))
        })
        .collect();
    at_risk.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.0.cmp(&b.1.0)));
    let least_likely = at_risk.into_iter().take(LEAST_LIKELY_SHOWN).map(|(_, id)| id).collect();
    SeasonOutlook { draws: OUTLOOK_DRAWS, key_results, objectives, season, least_likely }
}

fn summarise(mut draws: Vec<f64>, expectation: f64) -> ScoreOutlook {
    if draws.is_empty() {
        return ScoreOutlook { expected: 0.0, low: 0.0, high: 0.0, expectation, probability: 0.0 };
    }
    let n = draws.len();
    let expected = draws.iter().sum::<f64>() / n as f64;
    // A score that reaches its expectation up to rounding (0.7 built from tenths, say) has reached it.
    let probability = draws.iter().filter(|s| **s >= expectation - 1e-9).count() as f64 / n as f64;
    draws.sort_by(f64::total_cmp);
    let at = |q: f64| draws[((q * (n - 1) as f64).round() as usize).min(n - 1)];
    ScoreOutlook { expected, low: at(0.1), high: at(0.9), expectation, probability }
}

/// A small seeded generator (xorshift64*) with the normal, gamma and t draws the roll-up needs (and the
/// annotation statistics' bootstraps and the learning curve's simulation). The domain crate depends on
/// no random-number crate, and the figures must repeat for the same evidence.
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Rng {
        // xorshift must not start at zero; the constant spreads small seeds.
        Rng((seed ^ 0x9e37_79b9_7f4a_7c15).max(1))
    }

    pub(crate) fn uniform(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        ((self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }

    pub(crate) fn normal(&mut self) -> f64 {
        let (u, v) = (self.uniform(), self.uniform());
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }

    /// Gamma(shape, 1) by Marsaglia and Tsang's method, boosted for shapes below one.
    pub(crate) fn gamma(&mut self, shape: f64) -> f64 {
        if shape < 1.0 {
            return self.gamma(shape + 1.0) * self.uniform().powf(1.0 / shape);
        }
        let d = shape - 1.0 / 3.0;
        let c = 1.0 / (9.0 * d).sqrt();
        loop {
            let x = self.normal();
            let v = (1.0 + c * x).powi(3);
            if v <= 0.0 {
                continue;
            }
            let u = self.uniform();
            if u.ln() < 0.5 * x * x + d - d * v + d * v.ln() {
                return d * v;
            }
        }
    }

    /// Student's t with `dof` degrees of freedom: a normal over √(χ²_dof / dof), χ²_dof = 2 Gamma(dof/2).
    pub(crate) fn student_t(&mut self, dof: f64) -> f64 {
        let dof = dof.max(1e-3);
        let chi2 = 2.0 * self.gamma(0.5 * dof);
        self.normal() / (chi2 / dof).sqrt()
    }

    /// A whole number in `0..n` (`n` > 0), for resampling.
    pub(crate) fn below(&mut self, n: usize) -> usize {
        ((self.uniform() * n as f64) as usize).min(n.saturating_sub(1))
    }
}

#[cfg(test)]
mod tests {
    use chrono::{Duration, Utc};

    use super::*;
    use crate::entities::*;
    use crate::forecast::student_t_quantile_975;
    use crate::measure::Measure;
    use crate::objective::{KeyResult, Objective};
    use crate::rollup::{PlanParts, build_tree};

    fn day(text: &str) -> NaiveDate {
        text.parse().unwrap()
    }

    use crate::rollup::tests::season;

    fn objective(id: i64, quarter: &str, commitment: Commitment) -> Objective {
        let now = Utc::now();
        Objective {
            id: ObjectiveId(id),
            key: format!("o{id}"),
            org_id: OrgId(1),
            season_id: SeasonId(1),
            quarter: quarter.parse().unwrap(),
            title: format!("Objective {id}"),
            description: None,
            commitment,
            owner: None,
            weight: 1.0,
            version: Version(1),
            created_at: now,
            updated_at: now,
        }
    }

    fn key_result(id: i64, objective: i64, target: f64, current: Option<f64>) -> KeyResult {
        let now = Utc::now();
        KeyResult {
            id: KeyResultId(id),
            key: format!("k{id}"),
            org_id: OrgId(1),
            objective_id: ObjectiveId(objective),
            title: format!("Key result {id}"),
            measure: Measure::IncreaseTo { start: 0.0, target, unit: String::new() },
            metric: None,
            current,
            weight: 1.0,
            confidence: None,
            version: Version(1),
            created_at: now,
            updated_at: now,
        }
    }

    /// Weekly readings from `from`, `weeks` of them, rising by `per_week`, with a little scatter.
    fn readings(from: &str, weeks: i64, start: f64, per_week: f64) -> KeyResultReadings {
        let wiggle = [0.01, -0.008, 0.006, -0.01, 0.008, -0.006];
        let points = (0..weeks)
            .map(|w| TrendPoint {
                on: day(from) + Duration::days(7 * w),
                value: start + per_week * w as f64 + wiggle[w as usize % wiggle.len()],
                ci_low: None,
                ci_high: None,
            })
            .collect();
        KeyResultReadings { evidence: Evidence::CheckIns, points }
    }

    fn tree(objectives: Vec<Objective>, key_results: Vec<KeyResult>) -> SeasonTree {
        build_tree(PlanParts { season: season(), objectives, key_results, goals: vec![], squads: vec![], as_of: None })
    }

    #[test]
    fn key_results_are_forecast_at_their_quarters_end_and_roll_up_by_simulation() {
        // Q2: one key result clearly landing (0.3 rising 0.02 a week, target 0.6 by 30 June), one
        // clearly missing (target 0.95). Today is 1 April, after ten weekly readings.
        let t = tree(
            vec![objective(1, "2027-Q2", Commitment::Aspirational)],
            vec![key_result(1, 1, 0.6, Some(0.48)), key_result(2, 1, 0.95, Some(0.48))],
        );
        let evidence = HashMap::from([
            (KeyResultId(1), readings("2027-01-21", 10, 0.3, 0.02)),
            (KeyResultId(2), readings("2027-01-21", 10, 0.3, 0.02)),
        ]);
        let o = season_outlook(&t, &evidence, day("2027-04-01"), 7);
        let (landing, missing) = (o.key_result(KeyResultId(1)).unwrap(), o.key_result(KeyResultId(2)).unwrap());
        assert_eq!(landing.ends_on, day("2027-06-30"));
        let (fl, fm) = (landing.forecast.as_ref().unwrap(), missing.forecast.as_ref().unwrap());
        assert!(fl.probability.unwrap() > 0.95 && fm.probability.unwrap() < 0.05, "{} / {}", fl.summary, fm.summary);
        assert_eq!(o.least_likely, vec![KeyResultId(2)]);
        // Landing scores 1 in nearly every draw; missing reaches about 0.68 of its way (0.65 of 0.95).
        assert!(landing.expected_score > 0.97, "{}", landing.expected_score);
        let expected_missing = fm.value / 0.95;
        assert!(
            (missing.expected_score - expected_missing).abs() < 0.03,
            "{} vs {expected_missing}",
            missing.expected_score
        );
        // The objective (aspirational: lands at 0.7) averages them: about 0.84, above 0.7 in most draws.
        let obj = &o.objectives[0].score;
        assert!((obj.expected - (landing.expected_score + missing.expected_score) / 2.0).abs() < 1e-9);
        assert!(obj.low <= obj.expected && obj.expected <= obj.high);
        assert!(obj.probability > 0.9, "{obj:?}");
        assert_eq!(obj.expectation, 0.7);
        assert_eq!(o.season.probability, obj.probability, "one objective is the season");
        // The same evidence and seed give the same figures.
        assert_eq!(season_outlook(&t, &evidence, day("2027-04-01"), 7), o);
        // A key-result monitor finds the one that is missing, by its forecast.
        let behind = crate::monitor::key_result_findings(&o, 0.3);
        assert_eq!(behind.iter().map(|f| f.fingerprint.as_str()).collect::<Vec<_>>(), ["key-result:2"]);
        assert!(behind[0].summary.contains("unlikely to land by 2027-06-30"), "{}", behind[0].summary);
    }

    #[test]
    fn a_committed_objective_needs_every_key_result_all_the_way() {
        // Two key results each forecast with about even odds: a committed objective (expectation 1.0)
        // lands only when both do, so about a quarter of the time; the probabilities multiply because
        // the draws are independent.
        let t = tree(
            vec![objective(1, "2027-Q2", Commitment::Committed)],
            vec![key_result(1, 1, 0.0, None), key_result(2, 1, 0.0, None)],
        );
        let r = readings("2027-01-21", 10, 0.3, 0.02);
        // Each target set at its own forecast value, so each has a probability of one half.
        let f = crate::forecast::forecast_recent(
            &r.points,
            &Measure::IncreaseTo { start: 0.0, target: 1.0, unit: String::new() },
            day("2027-06-30"),
            crate::projection::choose_half_life(&r.points),
        )
        .unwrap();
        let mut t2 = t.clone();
        for node in t2.objectives[0].key_results.iter_mut() {
            node.key_result.measure = Measure::IncreaseTo { start: 0.0, target: f.value, unit: String::new() };
        }
        let evidence = HashMap::from([(KeyResultId(1), r.clone()), (KeyResultId(2), r)]);
        let o = season_outlook(&t2, &evidence, day("2027-04-01"), 11);
        for k in &o.key_results {
            let p = k.forecast.as_ref().unwrap().probability.unwrap();
            assert!((p - 0.5).abs() < 1e-6, "{p}");
        }
        let p = o.objectives[0].score.probability;
        assert!((p - 0.25).abs() < 0.03, "{p}");
        assert_eq!(o.least_likely.len(), 2);
    }

    #[test]
    fn ended_and_unforecast_key_results_count_at_what_is_known() {
        // Q1 ended on 31 March: its key result counts at its outcome. Q2's has two readings, too few for a
        // forecast, and counts at its current score in every draw.
        let t = tree(
            vec![objective(1, "2027-Q1", Commitment::Aspirational), objective(2, "2027-Q2", Commitment::Aspirational)],
            vec![key_result(1, 1, 0.5, Some(0.4)), key_result(2, 2, 1.0, Some(0.25))],
        );
        let evidence = HashMap::from([
            (KeyResultId(1), readings("2027-01-07", 12, 0.1, 0.03)),
            (KeyResultId(2), readings("2027-04-01", 2, 0.2, 0.05)),
        ]);
        let o = season_outlook(&t, &evidence, day("2027-04-20"), 3);
        let ended = o.key_result(KeyResultId(1)).unwrap();
        let outcome = ended.outcome.as_ref().unwrap();
        assert_eq!(outcome.on, day("2027-03-31"));
        let reading = outcome.reading.unwrap();
        assert!((ended.expected_score - (reading.value / 0.5).min(1.0)).abs() < 1e-12);
        let few = o.key_result(KeyResultId(2)).unwrap();
        assert!(few.forecast.is_none() && few.outcome.is_none());
        assert!((few.expected_score - 0.25).abs() < 1e-12, "the current score: {}", few.expected_score);
        assert_eq!(o.objectives[1].score.low, o.objectives[1].score.high, "a fixed score has no spread");
        assert!(o.least_likely.is_empty());
        // Without any evidence at all a key result says so.
        let none = season_outlook(&t, &HashMap::new(), day("2027-04-20"), 3);
        assert_eq!(none.key_result(KeyResultId(2)).unwrap().evidence, Evidence::Nothing);
    }

    #[test]
    fn the_t_draws_follow_the_t_distribution() {
        // The share of draws beyond the 97.5 % quantile is 2.5 %, for a small and a large dof.
        for dof in [3.0, 30.0] {
            let mut rng = Rng::new(42);
            let q = student_t_quantile_975(dof);
            let n = 40_000;
            let beyond = (0..n).filter(|_| rng.student_t(dof) > q).count() as f64 / n as f64;
            assert!((beyond - 0.025).abs() < 0.004, "dof {dof}: {beyond}");
        }
    }
}
