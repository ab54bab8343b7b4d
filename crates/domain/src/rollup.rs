//! The OKR tree with roll-up progress: key results → objectives → season.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::entities::{KeyResultId, ObjectiveId, SquadId};
use crate::measure::Progress;
use crate::objective::{KeyResult, Objective};
use crate::season::Season;
use crate::slope::{SlopeReport, slope_allocation};
use crate::squad::{Squad, SquadGoal};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SquadGoalNode {
    pub goal: SquadGoal,
    pub squad_name: String,
    pub progress: Progress,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct KeyResultNode {
    pub key_result: KeyResult,
    pub progress: Progress,
    pub goals: Vec<SquadGoalNode>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ObjectiveNode {
    pub objective: Objective,
    pub score: f64,
    /// Where the objective is expected to land: 1.0 if committed, 0.7 if aspirational.
    pub expectation: f64,
    pub key_results: Vec<KeyResultNode>,
}

/// A season with its whole plan and every roll-up, as one value the API and the UI both render.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SeasonTree {
    pub season: Season,
    pub score: f64,
    pub expectation: f64,
    pub objectives: Vec<ObjectiveNode>,
    pub slope: SlopeReport,
    /// Set when the tree shows the plan as known on a past date.
    pub as_of: Option<DateTime<Utc>>,
}

/// The weighted mean of `(weight, value)` pairs; `None` when there is nothing to average.
pub fn weighted_mean(items: impl IntoIterator<Item = (f64, f64)>) -> Option<f64> {
    let (sum, weights) = items.into_iter().fold((0.0, 0.0), |(s, w), (weight, value)| (s + weight * value, w + weight));
    (weights > 0.0).then(|| sum / weights)
}

/// The season's plan, already filtered to what the reader should see (for example "as known on" a date),
/// with current values resolved.
pub struct PlanParts {
    pub season: Season,
    pub objectives: Vec<Objective>,
    pub key_results: Vec<KeyResult>,
    pub goals: Vec<SquadGoal>,
    pub squads: Vec<Squad>,
    pub as_of: Option<DateTime<Utc>>,
}

/// Builds the tree. An objective without key results scores 0: a plan with no measure has not moved.
pub fn build_tree(parts: PlanParts) -> SeasonTree {
    let PlanParts { season, objectives, key_results, goals, squads, as_of } = parts;
    let squad_names: HashMap<SquadId, &str> = squads.iter().map(|s| (s.id, s.name.as_str())).collect();
    let mut goals_by_kr: HashMap<KeyResultId, Vec<SquadGoalNode>> = HashMap::new();
    for goal in &goals {
        goals_by_kr.entry(goal.key_result_id).or_default().push(SquadGoalNode {
            squad_name: squad_names.get(&goal.squad_id).copied().unwrap_or("unknown squad").to_owned(),
            progress: goal.measure.progress(goal.current),
            goal: goal.clone(),
        });
    }
    let mut krs_by_objective: HashMap<ObjectiveId, Vec<KeyResultNode>> = HashMap::new();
    for kr in key_results {
        krs_by_objective.entry(kr.objective_id).or_default().push(KeyResultNode {
            progress: kr.measure.progress(kr.current),
            goals: goals_by_kr.remove(&kr.id).unwrap_or_default(),
            key_result: kr,
        });
    }
    let objectives: Vec<ObjectiveNode> = objectives
        .into_iter()
        .map(|objective| {
            let key_results = krs_by_objective.remove(&objective.id).unwrap_or_default();
            let score =
                weighted_mean(key_results.iter().map(|k| (k.key_result.weight, k.progress.score))).unwrap_or(0.0);
            ObjectiveNode { expectation: objective.commitment.expectation(), score, key_results, objective }
        })
        .collect();
    let score = weighted_mean(objectives.iter().map(|o| (o.objective.weight, o.score))).unwrap_or(0.0);
    let expectation = weighted_mean(objectives.iter().map(|o| (o.objective.weight, o.expectation))).unwrap_or(1.0);
    let slope = slope_allocation(&goals, &squads, season.dates(), season.slope_target);
    SeasonTree { season, score, expectation, objectives, slope, as_of }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::entities::*;
    use crate::measure::Measure;
    use crate::quarter::Quarter;

    pub(crate) fn season() -> Season {
        let now = Utc::now();
        Season {
            id: SeasonId(1),
            key: format!("k{}", 1),
            org_id: OrgId(1),
            name: "S".into(),
            thesis: "t".into(),
            problems: vec![],
            winning: "w".into(),
            starts_on: "2027-01-01".parse().unwrap(),
            ends_on: "2027-06-30".parse().unwrap(),
            status: SeasonStatus::Active,
            slope_target: 0.2,
            retrospective: None,
            version: Version(1),
            created_at: now,
            updated_at: now,
        }
    }

    fn objective(id: i64, commitment: Commitment, weight: f64) -> Objective {
        let now = Utc::now();
        Objective {
            id: ObjectiveId(id),
            key: format!("k{}", id),
            org_id: OrgId(1),
            season_id: SeasonId(1),
            quarter: Quarter { year: 2027, q: 1 },
            title: "o".into(),
            description: None,
            commitment,
            owner: None,
            weight,
            version: Version(1),
            created_at: now,
            updated_at: now,
        }
    }

    fn kr(id: i64, objective: i64, measure: Measure, current: Option<f64>, weight: f64) -> KeyResult {
        let now = Utc::now();
        KeyResult {
            id: KeyResultId(id),
            key: format!("k{}", id),
            org_id: OrgId(1),
            objective_id: ObjectiveId(objective),
            title: "k".into(),
            measure,
            current,
            weight,
            confidence: None,
            metric: None,
            version: Version(1),
            created_at: now,
            updated_at: now,
        }
    }

    #[test]
    fn roll_up_is_weighted_at_each_level() {
        let up = Measure::IncreaseTo { start: 0.0, target: 10.0, unit: "".into() };
        let down = Measure::DecreaseTo { start: 200.0, target: 0.0, unit: "ms".into() };
        let tree = build_tree(PlanParts {
            season: season(),
            objectives: vec![objective(1, Commitment::Committed, 3.0), objective(2, Commitment::Aspirational, 1.0)],
            key_results: vec![
                kr(1, 1, up.clone(), Some(5.0), 1.0),         // 0.5
                kr(2, 1, down, Some(100.0), 3.0),             // 0.5
                kr(3, 2, Measure::Milestone, Some(1.0), 1.0), // 1.0
                kr(4, 2, up, None, 1.0),                      // no data: 0
            ],
            goals: vec![],
            squads: vec![],
            as_of: None,
        });
        assert_eq!(tree.objectives[0].score, 0.5);
        assert_eq!(tree.objectives[1].score, 0.5);
        assert_eq!(tree.objectives[1].expectation, 0.7);
        assert_eq!(tree.score, 0.5);
        assert!((tree.expectation - (3.0 * 1.0 + 0.7) / 4.0).abs() < 1e-12);
    }

    #[test]
    fn an_objective_without_key_results_scores_zero() {
        let tree = build_tree(PlanParts {
            season: season(),
            objectives: vec![objective(1, Commitment::Committed, 1.0)],
            key_results: vec![],
            goals: vec![],
            squads: vec![],
            as_of: None,
        });
        assert_eq!(tree.score, 0.0);
        assert_eq!(weighted_mean(std::iter::empty()), None);
    }
}
