//! Plans as code: a season's plan exported as a TOML file, the difference between a file and what is
//! stored, and applying a file in one transaction. The file format and the diff are `slope_plans`'; this
//! module adds what needs the database: the current state, the organisation-wide rules (seasons never
//! overlap, status transitions, closed seasons stay as they were) and the write.

use std::collections::{HashMap, HashSet};

use serde::Serialize;
use slope_domain::*;
use slope_plans::{Change, Kind, Op, PlanDiff, PlanError, PlanFile};
use slope_store::{PlanOp, PlanRef};

use crate::{Planning, Result, ServiceError};

/// What applying a plan did (or, for a dry run, would do).
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PlanOutcome {
    pub dry_run: bool,
    /// Whether anything was written: false for a dry run and for a file that matches the stored plan.
    pub applied: bool,
    pub created: usize,
    pub updated: usize,
    pub deleted: usize,
    /// The plan rendered for people (Terraform style).
    pub plan: String,
    /// Each entity to create, update or delete, in the order they apply: `{op, kind, key, parent, fields:
    /// [{field, old, new}]}`.
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<Object>))]
    pub changes: Vec<Change>,
}

/// The stored state a diff compares against, with the ids and versions a write needs.
struct Current {
    file: PlanFile,
    season: Season,
    objectives: HashMap<String, Objective>,
    key_results: HashMap<String, KeyResult>,
    squads: HashMap<String, Squad>,
    goals: HashMap<String, SquadGoal>,
}

impl Planning {
    /// The season with key `season_key` as a plan file.
    pub async fn export_plan(&self, actor: &Actor, season_key: &str) -> Result<String> {
        let org = actor.authorize(Action::Read)?;
        let season = self.store().season_by_key(org, season_key).await.map_err(|_| {
            ServiceError::NotFound(format!(
                "no season has the key {season_key:?}; `GET /api/v1/seasons` lists the keys"
            ))
        })?;
        let current = self.current_plan(org, season, &[]).await?;
        Ok(slope_plans::render(&current.file))
    }

    /// The changes applying `text` would make, without making them.
    pub async fn diff_plan(&self, actor: &Actor, text: &str) -> Result<PlanOutcome> {
        self.apply_plan(actor, text, true).await
    }

    /// Applies a plan file: every change in one transaction, or none. Applying the same file twice
    /// changes nothing the second time. Updates carry the versions the diff was computed from, so an edit
    /// made by someone else in between is refused as a conflict instead of being undone.
    pub async fn apply_plan(&self, actor: &Actor, text: &str, dry_run: bool) -> Result<PlanOutcome> {
        let org = actor.authorize(if dry_run { Action::Read } else { Action::EditPlan })?;
        let desired = slope_plans::parse(text).map_err(|e| ServiceError::InvalidPlan(e.0))?;
        let current = match self.store().season_by_key(org, &desired.season.key).await {
            Ok(season) => {
                let named: Vec<&str> = desired.squads.iter().map(|s| s.key.as_str()).collect();
                Some(self.current_plan(org, season, &named).await?)
            }
            Err(slope_store::StoreError::Rejected(_)) => None,
            Err(e) => return Err(e.into()),
        };
        let diff = slope_plans::diff(current.as_ref().map(|c| &c.file), &desired);
        self.check_references(org, text, &desired, &diff).await?;
        if let Some(current) = &current
            && !diff.is_empty()
            && current.season.status == SeasonStatus::Closed
        {
            return Err(plan_error(
                1,
                "season.status",
                "the season is closed: its plan is history and stays as it was",
            ));
        }
        let mut outcome = PlanOutcome {
            dry_run,
            applied: false,
            created: diff.count(Op::Create),
            updated: diff.count(Op::Update),
            deleted: diff.count(Op::Delete),
            plan: diff.render(),
            changes: diff.changes.clone(),
        };
        if dry_run || diff.is_empty() {
            return Ok(outcome);
        }
        let ops = operations(&diff, &desired, current.as_ref())?;
        let target = desired.season.status.parse::<SeasonStatus>().map_err(|e| plan_error(1, "season.status", e))?;
        let retrospective = desired.season.retrospective.clone();
        self.store()
            .apply_plan(
                actor,
                &ops,
                |dates_of, id, all| check_no_overlap(&dates_of.dates, all, id),
                |season, all| {
                    let other_active = other_active_season(all, season.id);
                    let to = next_status(season.status, target);
                    TransitionInput { to: to.as_str().into(), retrospective: retrospective.clone() }
                        .validate(season, other_active)
                        .map(|(status, retro)| (status, retro.map(String::from)))
                },
            )
            .await?;
        tracing::info!(season = %desired.season.key, created = outcome.created, updated = outcome.updated,
            deleted = outcome.deleted, "plan applied");
        outcome.applied = true;
        Ok(outcome)
    }

    /// Rules that need the database, checked before anything is written so that each refusal names its
    /// line: linked metrics must exist, and a new entity's key must not belong to an entity elsewhere in
    /// the organisation (keys are unique per organisation, not per season).
    async fn check_references(&self, org: OrgId, text: &str, desired: &PlanFile, diff: &PlanDiff) -> Result<()> {
        let metrics: HashSet<String> = self.store().list_metrics(org).await?.into_iter().map(|m| m.key).collect();
        let mut errors = Vec::new();
        let mut unknown_metric = |kind: Kind, key: &str, path: String, metric: &str| {
            if !metric.trim().is_empty() && !metrics.contains(metric.trim()) {
                errors.push(PlanError {
                    line: slope_plans::line_of(text, kind, key, "metric"),
                    path,
                    message: format!(
                        "no metric has the key {:?}; create it first (`POST /api/v1/metrics`)",
                        metric.trim()
                    ),
                });
            }
        };
        for (o, objective) in desired.objectives.iter().enumerate() {
            for (k, kr) in objective.key_results.iter().enumerate() {
                let path = format!("objectives[{o}].key_results[{k}].metric");
                unknown_metric(Kind::KeyResult, &kr.key, path, &kr.input.metric);
            }
        }
        for (q, squad) in desired.squads.iter().enumerate() {
            for (g, goal) in squad.goals.iter().enumerate() {
                unknown_metric(
                    Kind::SquadGoal,
                    &goal.key,
                    format!("squads[{q}].goals[{g}].metric"),
                    &goal.input.metric,
                );
            }
        }
        for change in diff.changes.iter().filter(|c| c.op == Op::Create) {
            if self.store().plan_key_taken(org, change.kind.as_str(), &change.key).await? {
                errors.push(PlanError {
                    line: slope_plans::line_of(text, change.kind, &change.key, "key"),
                    path: format!("{}.key", change.kind),
                    message: format!(
                        "the key {:?} is already used by a {} outside this season",
                        change.key, change.kind
                    ),
                });
            }
        }
        if errors.is_empty() {
            return Ok(());
        }
        errors.sort_by_key(|e| e.line);
        Err(ServiceError::InvalidPlan(errors))
    }

    /// The stored plan of `season`: its objectives, key results and goals, and the squads that have goals
    /// in it or whose keys are in `also_squads` (squads are organisation-wide, so a file may name a squad
    /// that has no goal in this season yet).
    async fn current_plan(&self, org: OrgId, season: Season, also_squads: &[&str]) -> Result<Current> {
        let store = self.store();
        let objectives = store.list_objectives(org, season.id).await?;
        let key_results = store.list_key_results(org, season.id).await?;
        let goals = store.list_goals_for_season(org, season.id).await?;
        let squads: Vec<Squad> = store
            .list_squads(org)
            .await?
            .into_iter()
            .filter(|s| goals.iter().any(|g| g.squad_id == s.id) || also_squads.contains(&s.key.as_str()))
            .collect();
        let file = PlanFile::from_entities(&season, &objectives, &key_results, &squads, &goals);
        Ok(Current {
            file,
            season,
            objectives: objectives.into_iter().map(|o| (o.key.clone(), o)).collect(),
            key_results: key_results.into_iter().map(|k| (k.key.clone(), k)).collect(),
            squads: squads.into_iter().map(|s| (s.key.clone(), s)).collect(),
            goals: goals.into_iter().map(|g| (g.key.clone(), g)).collect(),
        })
    }
}

/// The store operations that carry out `diff`, in its order, with validated specs.
fn operations(diff: &PlanDiff, desired: &PlanFile, current: Option<&Current>) -> Result<Vec<PlanOp>> {
    let season_spec = desired.season.input.validate().map_err(|e| invalid(&e))?;
    let dates = season_spec.dates;
    let objective_entry = |key: &str| desired.objectives.iter().find(|o| o.key == key);
    let kr_entry = |key: &str| desired.key_results().find(|(_, k)| k.key == key);
    let squad_entry = |key: &str| desired.squads.iter().find(|s| s.key == key);
    let goal_entry = |key: &str| desired.goals().find(|(_, g)| g.key == key);
    // An entity that exists is referred to by id; one this plan creates, by the key it gets.
    let objective_ref = |key: &str| match current.and_then(|c| c.objectives.get(key)) {
        Some(o) => PlanRef::Id(o.id.0),
        None => PlanRef::Key(key.to_owned()),
    };
    let kr_ref = |key: &str| match current.and_then(|c| c.key_results.get(key)) {
        Some(k) => PlanRef::Id(k.id.0),
        None => PlanRef::Key(key.to_owned()),
    };
    let squad_ref = |key: &str| match current.and_then(|c| c.squads.get(key)) {
        Some(s) => PlanRef::Id(s.id.0),
        None => PlanRef::Key(key.to_owned()),
    };
    let missing =
        |kind: Kind, key: &str| ServiceError::Internal(format!("plan diff names {kind} {key:?}, which is gone"));
    let mut ops = Vec::new();
    for change in &diff.changes {
        let key = change.key.as_str();
        match (change.kind, change.op) {
            (Kind::Season, Op::Create) => {
                ops.push(PlanOp::CreateSeason { key: key.to_owned(), spec: season_spec.clone() });
                let target =
                    desired.season.status.parse::<SeasonStatus>().map_err(|e| plan_error(1, "season.status", e))?;
                for _ in 0..transitions(SeasonStatus::Draft, target) {
                    ops.push(PlanOp::TransitionSeason { season: PlanRef::Key(key.to_owned()) });
                }
            }
            (Kind::Season, Op::Update) => {
                let season = &current.ok_or_else(|| missing(Kind::Season, key))?.season;
                if change.fields.iter().any(|f| f.field != "status" && f.field != "retrospective") {
                    ops.push(PlanOp::UpdateSeason {
                        id: season.id,
                        version: season.version,
                        spec: season_spec.clone(),
                    });
                }
                let target =
                    desired.season.status.parse::<SeasonStatus>().map_err(|e| plan_error(1, "season.status", e))?;
                for _ in 0..transitions(season.status, target) {
                    ops.push(PlanOp::TransitionSeason { season: PlanRef::Id(season.id.0) });
                }
                if rank(target) < rank(season.status) {
                    return Err(plan_error(
                        1,
                        "season.status",
                        format!("a season cannot go back from {} to {target}", season.status),
                    ));
                }
            }
            (Kind::Objective, Op::Create | Op::Update) => {
                let entry = objective_entry(key).ok_or_else(|| missing(Kind::Objective, key))?;
                let spec = entry.input.validate(&dates).map_err(|e| invalid(&e))?;
                match current.and_then(|c| c.objectives.get(key)) {
                    Some(o) => ops.push(PlanOp::UpdateObjective { id: o.id, version: o.version, spec }),
                    None => ops.push(PlanOp::CreateObjective {
                        key: key.to_owned(),
                        season: current
                            .map_or(PlanRef::Key(desired.season.key.clone()), |c| PlanRef::Id(c.season.id.0)),
                        spec,
                    }),
                }
            }
            (Kind::KeyResult, Op::Create | Op::Update) => {
                let (objective, entry) = kr_entry(key).ok_or_else(|| missing(Kind::KeyResult, key))?;
                let spec = entry.input.validate().map_err(|e| invalid(&e))?;
                let objective = objective_ref(&objective.key);
                match current.and_then(|c| c.key_results.get(key)) {
                    Some(k) => ops.push(PlanOp::UpdateKeyResult { id: k.id, version: k.version, objective, spec }),
                    None => ops.push(PlanOp::CreateKeyResult { key: key.to_owned(), objective, spec }),
                }
            }
            (Kind::Squad, Op::Create | Op::Update) => {
                let entry = squad_entry(key).ok_or_else(|| missing(Kind::Squad, key))?;
                let spec = entry.input.validate().map_err(|e| invalid(&e))?;
                match current.and_then(|c| c.squads.get(key)) {
                    Some(s) => ops.push(PlanOp::UpdateSquad { id: s.id, version: s.version, spec }),
                    None => ops.push(PlanOp::CreateSquad { key: key.to_owned(), spec }),
                }
            }
            (Kind::SquadGoal, Op::Create | Op::Update) => {
                let (squad, entry) = goal_entry(key).ok_or_else(|| missing(Kind::SquadGoal, key))?;
                // The key result is named by key in the file; the id in the spec is a placeholder that the
                // store replaces with the resolved one.
                let input = SquadGoalInput { key_result_id: Some(0), ..entry.input.clone() };
                let spec = input.validate(Some(&dates)).map_err(|e| invalid(&e))?;
                let (squad, key_result) = (squad_ref(&squad.key), kr_ref(&entry.key_result));
                match current.and_then(|c| c.goals.get(key)) {
                    Some(g) => ops.push(PlanOp::UpdateGoal { id: g.id, version: g.version, squad, key_result, spec }),
                    None => ops.push(PlanOp::CreateGoal { key: key.to_owned(), squad, key_result, spec }),
                }
            }
            (Kind::SquadGoal, Op::Delete) => {
                let goal = current.and_then(|c| c.goals.get(key)).ok_or_else(|| missing(Kind::SquadGoal, key))?;
                ops.push(PlanOp::DeleteGoal { id: goal.id });
            }
            (Kind::KeyResult, Op::Delete) => {
                let kr = current.and_then(|c| c.key_results.get(key)).ok_or_else(|| missing(Kind::KeyResult, key))?;
                ops.push(PlanOp::DeleteKeyResult { id: kr.id });
            }
            (Kind::Objective, Op::Delete) => {
                let o = current.and_then(|c| c.objectives.get(key)).ok_or_else(|| missing(Kind::Objective, key))?;
                ops.push(PlanOp::DeleteObjective { id: o.id });
            }
            (Kind::Season | Kind::Squad, Op::Delete) => {
                return Err(ServiceError::Internal(format!(
                    "plan diff deletes {} {key:?}, which plans never do",
                    change.kind
                )));
            }
        }
    }
    Ok(ops)
}

/// How many status steps lead from `from` to `to` (draft → active → closed); none when going back,
/// which the caller refuses.
fn transitions(from: SeasonStatus, to: SeasonStatus) -> usize {
    rank(to).saturating_sub(rank(from))
}

fn rank(status: SeasonStatus) -> usize {
    match status {
        SeasonStatus::Draft => 0,
        SeasonStatus::Active => 1,
        SeasonStatus::Closed => 2,
    }
}

/// The next status on the way from `from` to `to`.
fn next_status(from: SeasonStatus, to: SeasonStatus) -> SeasonStatus {
    match (from, to) {
        (SeasonStatus::Draft, SeasonStatus::Closed) => SeasonStatus::Active,
        _ => to,
    }
}

fn plan_error(line: usize, path: &str, message: impl Into<String>) -> ServiceError {
    ServiceError::InvalidPlan(vec![PlanError { line, path: path.to_owned(), message: message.into() }])
}

/// Rules the parser already checked cannot fail here; if one does, it is still reported, not lost.
fn invalid(errors: &FieldErrors) -> ServiceError {
    ServiceError::InvalidPlan(
        errors
            .0
            .iter()
            .flat_map(|(field, messages)| {
                messages.iter().map(move |m| PlanError { line: 0, path: field.clone(), message: m.clone() })
            })
            .collect(),
    )
}
