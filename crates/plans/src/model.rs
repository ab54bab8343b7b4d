//! The plan file's model: one season with its objectives, key results, squads and squad goals, each
//! named by a stable key.
//!
//! Entries hold the domain's `*Input` structs rather than specs: a plan file is raw input, like a form,
//! and the service validates it with the same rules before applying it. Keys, not database ids, link the
//! entries, so a file can be written by hand and applied to any copy of the organisation.

use std::collections::HashMap;

use slope_domain::{
    KeyResult, KeyResultInput, Objective, ObjectiveInput, Season, SeasonInput, Squad, SquadGoal, SquadGoalInput,
    SquadInput,
};

/// One season's plan, as exported to and parsed from a plan file.
#[derive(Debug, Clone, PartialEq)]
pub struct PlanFile {
    pub season: SeasonEntry,
    pub objectives: Vec<ObjectiveEntry>,
    /// The squads that have goals in the season. Squads belong to the organisation, not to the season.
    pub squads: Vec<SquadEntry>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct SeasonEntry {
    pub key: String,
    pub input: SeasonInput,
    /// `draft`, `active` or `closed`. The file states the status so that a diff shows a transition;
    /// whether the transition is allowed depends on the stored status and is checked when applying.
    pub status: String,
    /// What a closed season taught; empty until the season is closed.
    pub retrospective: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ObjectiveEntry {
    pub key: String,
    pub input: ObjectiveInput,
    pub key_results: Vec<KeyResultEntry>,
}

/// A key result. Its `input.confidence` is always `None`: confidence is state that check-ins set, not
/// part of the plan, so applying a file never overwrites what a check-in said.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyResultEntry {
    pub key: String,
    pub input: KeyResultInput,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SquadEntry {
    pub key: String,
    pub input: SquadInput,
    pub goals: Vec<GoalEntry>,
}

/// A squad goal. It names its key result by key (`key_result`), so `input.key_result_id` is always
/// `None`; the service resolves the key to an id when it applies the file.
#[derive(Debug, Clone, PartialEq)]
pub struct GoalEntry {
    pub key: String,
    /// The key of a key result in the same file.
    pub key_result: String,
    pub input: SquadGoalInput,
}

impl PlanFile {
    /// Builds the plan of `season` from stored entities, for `slope plan export`.
    ///
    /// Key results are grouped under the objective they belong to and goals under their squad; entities
    /// whose parent is not among those given are left out, so the caller decides the scope by what it
    /// passes: the season's objectives and key results, and the squads that have goals in the season
    /// with those goals. A goal whose key result is not given gets an empty `key_result`, which `parse`
    /// rejects, rather than a silently wrong link.
    ///
    /// The order is deterministic (objectives by quarter then id, everything else by id) so that two
    /// exports of the same state are byte for byte the same and version control shows only real edits.
    pub fn from_entities(
        season: &Season,
        objectives: &[Objective],
        key_results: &[KeyResult],
        squads: &[Squad],
        goals: &[SquadGoal],
    ) -> PlanFile {
        let mut objectives: Vec<&Objective> = objectives.iter().collect();
        objectives.sort_by_key(|o| (o.quarter, o.id));
        let mut key_results: Vec<&KeyResult> = key_results.iter().collect();
        key_results.sort_by_key(|kr| kr.id);
        let mut squads: Vec<&Squad> = squads.iter().collect();
        squads.sort_by_key(|s| s.id);
        let mut goals: Vec<&SquadGoal> = goals.iter().collect();
        goals.sort_by_key(|g| g.id);
        let kr_keys: HashMap<_, &str> = key_results.iter().map(|kr| (kr.id, kr.key.as_str())).collect();

        PlanFile {
            season: SeasonEntry {
                key: season.key.clone(),
                input: season.to_input(),
                status: season.status.as_str().to_owned(),
                retrospective: season.retrospective.clone().unwrap_or_default(),
            },
            objectives: objectives
                .iter()
                .map(|o| ObjectiveEntry {
                    key: o.key.clone(),
                    input: o.to_input(),
                    key_results: key_results
                        .iter()
                        .filter(|kr| kr.objective_id == o.id)
                        .map(|kr| KeyResultEntry {
                            key: kr.key.clone(),
                            input: KeyResultInput { confidence: None, ..kr.to_input() },
                        })
                        .collect(),
                })
                .collect(),
            squads: squads
                .iter()
                .map(|s| SquadEntry {
                    key: s.key.clone(),
                    input: s.to_input(),
                    goals: goals
                        .iter()
                        .filter(|g| g.squad_id == s.id)
                        .map(|g| GoalEntry {
                            key: g.key.clone(),
                            key_result: kr_keys.get(&g.key_result_id).copied().unwrap_or_default().to_owned(),
                            input: SquadGoalInput { key_result_id: None, ..g.to_input() },
                        })
                        .collect(),
                })
                .collect(),
        }
    }

    /// Every key result of the file with the key of its objective, in file order.
    pub fn key_results(&self) -> impl Iterator<Item = (&ObjectiveEntry, &KeyResultEntry)> {
        self.objectives.iter().flat_map(|o| o.key_results.iter().map(move |kr| (o, kr)))
    }

    /// Every squad goal of the file with its squad, in file order.
    pub fn goals(&self) -> impl Iterator<Item = (&SquadEntry, &GoalEntry)> {
        self.squads.iter().flat_map(|s| s.goals.iter().map(move |g| (s, g)))
    }
}
