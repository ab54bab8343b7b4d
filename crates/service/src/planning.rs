//! Planning use cases: seasons, OKRs, squads, squad goals, check-ins and their roll-ups.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};

use slope_domain::*;
use slope_store::{PlanAsOf, Store};

use crate::{Result, ServiceError};

/// The planning service of one installation. Cheap to clone: it holds a connection pool and a shared
/// cache.
#[derive(Clone, Debug)]
pub struct Planning {
    store: Store,
    trees: Arc<Mutex<TreeCache>>,
}

/// Season trees by organisation and season, each with the plan version it was built at.
type TreeCache = HashMap<(OrgId, SeasonId), (i64, SeasonTree)>;

impl Planning {
    pub fn new(store: Store) -> Self {
        Self { store, trees: Arc::default() }
    }

    /// The store, for the service's own modules; nothing outside this crate gets it.
    pub(crate) fn store(&self) -> &Store {
        &self.store
    }

    // ---- seasons -------------------------------------------------------------------------------

    pub async fn list_seasons(&self, actor: &Actor) -> Result<Vec<SeasonSummary>> {
        let org = actor.authorize(Action::Read)?;
        let seasons = self.store.list_seasons(org).await?;
        let mut summaries = Vec::with_capacity(seasons.len());
        for season in seasons {
            let tree = self.cached_tree(org, season.id).await?;
            summaries.push(SeasonSummary {
                objectives: tree.objectives.len(),
                key_results: tree.objectives.iter().map(|o| o.key_results.len()).sum(),
                score: tree.score,
                expectation: tree.expectation,
                season: tree.season,
            });
        }
        Ok(summaries)
    }

    pub async fn get_season(&self, actor: &Actor, id: SeasonId) -> Result<Season> {
        let org = actor.authorize(Action::Read)?;
        Ok(self.store.get_season(org, id).await?)
    }

    /// The organisation's active season, or else the one that starts latest.
    pub async fn current_season(&self, actor: &Actor) -> Result<Option<Season>> {
        let org = actor.authorize(Action::Read)?;
        let seasons = self.store.list_seasons(org).await?;
        Ok(current_season(&seasons).cloned())
    }

    pub async fn create_season(&self, actor: &Actor, input: &SeasonInput) -> Result<Season> {
        actor.authorize(Action::EditPlan)?;
        let spec = input.validate()?;
        let season =
            self.store.create_season(actor, &spec, |others| check_no_overlap(&spec.dates, others, None)).await?;
        tracing::info!(season = %season.id, name = %season.name, "season created");
        Ok(season)
    }

    pub async fn update_season(
        &self,
        actor: &Actor,
        id: SeasonId,
        version: Version,
        input: &SeasonInput,
    ) -> Result<Season> {
        actor.authorize(Action::EditPlan)?;
        let spec = input.validate()?;
        Ok(self
            .store
            .update_season(actor, id, version, &spec, |current, all| {
                current.ensure_editable()?;
                check_no_overlap(&spec.dates, all, Some(id))
            })
            .await?)
    }

    pub async fn transition_season(
        &self,
        actor: &Actor,
        id: SeasonId,
        version: Version,
        input: &TransitionInput,
    ) -> Result<Season> {
        actor.authorize(Action::EditPlan)?;
        let season = self
            .store
            .transition_season(actor, id, version, |current, all| {
                let other_active = other_active_season(all, id);
                let (status, retro) = input.validate(current, other_active)?;
                Ok((status, retro.map(String::from)))
            })
            .await?;
        tracing::info!(season = %season.id, status = %season.status, "season status changed");
        Ok(season)
    }

    /// The season's OKR tree with roll-ups, now or as known at `as_of`.
    pub async fn season_tree(&self, actor: &Actor, id: SeasonId, as_of: Option<DateTime<Utc>>) -> Result<SeasonTree> {
        let org = actor.authorize(Action::Read)?;
        match as_of {
            None => self.cached_tree(org, id).await,
            Some(at) => {
                let plan = self.store.plan_as_of(org, at).await?;
                tree_as_of(plan, id, at)
            }
        }
    }

    /// The current tree of `id`, from the cache while the organisation's plan version is unchanged.
    ///
    /// The version is read before the plan, so a tree is never filed under a version newer than its data;
    /// at worst it holds writes newer than its version and is rebuilt once more. Every server sharing
    /// the database bumps the same version, so the cache is correct with several servers too.
    pub(crate) async fn cached_tree(&self, org: OrgId, id: SeasonId) -> Result<SeasonTree> {
        let version = self.store.plan_version(org).await?;
        if let Some((cached, tree)) = self.trees.lock().map_err(poisoned)?.get(&(org, id))
            && *cached == version
        {
            return Ok(tree.clone());
        }
        let season = self.store.get_season(org, id).await?;
        let tree = self.tree_now(org, season).await?;
        self.trees.lock().map_err(poisoned)?.insert((org, id), (version, tree.clone()));
        Ok(tree)
    }

    async fn tree_now(&self, org: OrgId, season: Season) -> Result<SeasonTree> {
        let (objectives, key_results, goals, squads) = (
            self.store.list_objectives(org, season.id).await?,
            self.store.list_key_results(org, season.id).await?,
            self.store.list_goals_for_season(org, season.id).await?,
            self.store.list_squads(org).await?,
        );
        Ok(build_tree(PlanParts { season, objectives, key_results, goals, squads, as_of: None }))
    }

    /// Slope allocation of a season over `period` (the whole season when `None`).
    pub async fn slope_allocation(
        &self,
        actor: &Actor,
        id: SeasonId,
        period: Option<DateRange>,
    ) -> Result<SlopeReport> {
        let org = actor.authorize(Action::Read)?;
        let season = self.store.get_season(org, id).await?;
        let goals = self.store.list_goals_for_season(org, id).await?;
        let squads = self.store.list_squads(org).await?;
        Ok(slope_allocation(&goals, &squads, period.unwrap_or(season.dates()), season.slope_target))
    }

    // ---- objectives and key results ------------------------------------------------------------

    pub async fn get_objective(&self, actor: &Actor, id: ObjectiveId) -> Result<Objective> {
        let org = actor.authorize(Action::Read)?;
        Ok(self.store.get_objective(org, id).await?)
    }

    pub async fn create_objective(&self, actor: &Actor, season: SeasonId, input: &ObjectiveInput) -> Result<Objective> {
        let org = actor.authorize(Action::EditPlan)?;
        let season = self.store.get_season(org, season).await?;
        season.ensure_editable()?;
        let spec = input.validate(&season.dates())?;
        Ok(self.store.create_objective(actor, season.id, &spec).await?)
    }

    pub async fn update_objective(
        &self,
        actor: &Actor,
        id: ObjectiveId,
        version: Version,
        input: &ObjectiveInput,
    ) -> Result<Objective> {
        let org = actor.authorize(Action::EditPlan)?;
        let objective = self.store.get_objective(org, id).await?;
        let season = self.store.get_season(org, objective.season_id).await?;
        season.ensure_editable()?;
        let spec = input.validate(&season.dates())?;
        Ok(self.store.update_objective(actor, id, version, &spec).await?)
    }

    pub async fn create_key_result(
        &self,
        actor: &Actor,
        objective: ObjectiveId,
        input: &KeyResultInput,
    ) -> Result<KeyResult> {
        let org = actor.authorize(Action::EditPlan)?;
        let objective = self.store.get_objective(org, objective).await?;
        self.store.get_season(org, objective.season_id).await?.ensure_editable()?;
        let spec = input.validate()?;
        Ok(self.store.create_key_result(actor, objective.id, &spec).await?)
    }

    pub async fn update_key_result(
        &self,
        actor: &Actor,
        id: KeyResultId,
        version: Version,
        input: &KeyResultInput,
    ) -> Result<KeyResult> {
        let org = actor.authorize(Action::EditPlan)?;
        let kr = self.store.get_key_result(org, id).await?;
        let objective = self.store.get_objective(org, kr.objective_id).await?;
        self.store.get_season(org, objective.season_id).await?.ensure_editable()?;
        let spec = input.validate()?;
        Ok(self.store.update_key_result(actor, id, version, &spec).await?)
    }

    pub async fn key_result_detail(&self, actor: &Actor, id: KeyResultId) -> Result<KeyResultDetail> {
        let org = actor.authorize(Action::Read)?;
        let key_result = self.store.get_key_result(org, id).await?;
        let objective = self.store.get_objective(org, key_result.objective_id).await?;
        let season = self.store.get_season(org, objective.season_id).await?;
        let squads = self.store.list_squads(org).await?;
        let goals = self
            .store
            .list_goals_for_season(org, season.id)
            .await?
            .into_iter()
            .filter(|g| g.key_result_id == id)
            .map(|goal| goal_node(goal, &squads))
            .collect();
        let check_ins = self.store.list_check_ins(org, SubjectKind::KeyResult, id.0).await?;
        Ok(KeyResultDetail {
            progress: key_result.measure.progress(key_result.current),
            expectation: objective.commitment.expectation(),
            key_result,
            objective,
            season,
            goals,
            check_ins,
        })
    }

    // ---- squads and goals ----------------------------------------------------------------------

    pub async fn list_squads(&self, actor: &Actor) -> Result<Vec<Squad>> {
        let org = actor.authorize(Action::Read)?;
        Ok(self.store.list_squads(org).await?)
    }

    pub async fn get_squad(&self, actor: &Actor, id: SquadId) -> Result<Squad> {
        let org = actor.authorize(Action::Read)?;
        Ok(self.store.get_squad(org, id).await?)
    }

    pub async fn create_squad(&self, actor: &Actor, input: &SquadInput) -> Result<Squad> {
        actor.authorize(Action::EditPlan)?;
        let spec = input.validate()?;
        Ok(self.store.create_squad(actor, &spec).await?)
    }

    pub async fn update_squad(
        &self,
        actor: &Actor,
        id: SquadId,
        version: Version,
        input: &SquadInput,
    ) -> Result<Squad> {
        actor.authorize(Action::EditPlan)?;
        let spec = input.validate()?;
        Ok(self.store.update_squad(actor, id, version, &spec).await?)
    }

    /// Validates a goal against the season of the key result it ladders up to, which must be open.
    async fn goal_spec(&self, org: OrgId, input: &SquadGoalInput) -> Result<SquadGoalSpec> {
        let season = match input.key_result_id {
            Some(kr) => match self.store.get_key_result(org, KeyResultId(kr)).await {
                Ok(kr) => {
                    let objective = self.store.get_objective(org, kr.objective_id).await?;
                    Some(self.store.get_season(org, objective.season_id).await?)
                }
                Err(slope_store::StoreError::NotFound { .. }) => {
                    return Err(FieldErrors::single("key_result_id", format!("key result {kr} does not exist")).into());
                }
                Err(e) => return Err(e.into()),
            },
            None => None,
        };
        if let Some(season) = &season {
            season.ensure_editable()?;
        }
        Ok(input.validate(season.as_ref().map(|s| s.dates()).as_ref())?)
    }

    pub async fn create_goal(&self, actor: &Actor, squad: SquadId, input: &SquadGoalInput) -> Result<SquadGoal> {
        let org = actor.authorize_some_goals()?;
        let squad = self.store.get_squad(org, squad).await?;
        actor.authorize(Action::EditSquadGoals(squad.id))?;
        let spec = self.goal_spec(org, input).await?;
        Ok(self.store.create_goal(actor, squad.id, &spec).await?)
    }

    pub async fn update_goal(
        &self,
        actor: &Actor,
        id: SquadGoalId,
        version: Version,
        input: &SquadGoalInput,
    ) -> Result<SquadGoal> {
        let org = actor.authorize_some_goals()?;
        let goal = self.store.get_goal(org, id).await?;
        actor.authorize(Action::EditSquadGoals(goal.squad_id))?;
        let spec = self.goal_spec(org, input).await?;
        Ok(self.store.update_goal(actor, id, version, &spec).await?)
    }

    pub async fn goal_detail(&self, actor: &Actor, id: SquadGoalId) -> Result<SquadGoalDetail> {
        let org = actor.authorize(Action::Read)?;
        let goal = self.store.get_goal(org, id).await?;
        let squad = self.store.get_squad(org, goal.squad_id).await?;
        let key_result = self.store.get_key_result(org, goal.key_result_id).await?;
        let objective = self.store.get_objective(org, key_result.objective_id).await?;
        let season = self.store.get_season(org, objective.season_id).await?;
        let check_ins = self.store.list_check_ins(org, SubjectKind::SquadGoal, id.0).await?;
        Ok(SquadGoalDetail {
            progress: goal.measure.progress(goal.current),
            goal,
            squad,
            key_result,
            season,
            check_ins,
        })
    }

    /// The squad board of `season`, or of the current season when `None`.
    pub async fn squad_board(&self, actor: &Actor, season: Option<SeasonId>) -> Result<SquadBoard> {
        let org = actor.authorize(Action::Read)?;
        let seasons = self.store.list_seasons(org).await?;
        let season = match season {
            Some(id) => Some(
                seasons
                    .iter()
                    .find(|s| s.id == id)
                    .cloned()
                    .ok_or_else(|| ServiceError::NotFound(format!("season {id} not found")))?,
            ),
            None => current_season(&seasons).cloned(),
        };
        let squads = self.store.list_squads(org).await?;
        let (goals, slope) = match &season {
            Some(s) => {
                let goals = self.store.list_goals_for_season(org, s.id).await?;
                let slope = slope_allocation(&goals, &squads, s.dates(), s.slope_target);
                (goals, Some(slope))
            }
            None => (vec![], None),
        };
        let columns = squads
            .iter()
            .map(|squad| {
                let own: Vec<SquadGoal> = goals.iter().filter(|g| g.squad_id == squad.id).cloned().collect();
                let peak_load = peak_load(&own);
                let goals: Vec<SquadGoalNode> = own.into_iter().map(|g| goal_node(g, &squads)).collect();
                let share =
                    slope.as_ref().and_then(|r| r.squads.iter().find(|s| s.squad_id == squad.id)).map(|s| s.share);
                SquadColumn { squad: squad.clone(), goals, peak_load, share }
            })
            .collect();
        Ok(SquadBoard { season, seasons, columns, slope })
    }

    /// The dashboard of one squad in `season` (the current season when `None`): per goal, its key
    /// result, the linked metric's series (the goal's metric, else the key result's) and the forecast of
    /// the goal's measure (else the key result's, for a milestone goal) at the goal's end date from
    /// recent evidence, or, once that date has passed, the goal's outcome.
    pub async fn squad_dashboard(
        &self,
        actor: &Actor,
        squad: SquadId,
        season: Option<SeasonId>,
    ) -> Result<SquadDashboard> {
        let org = actor.authorize(Action::Read)?;
        let squad = self.store.get_squad(org, squad).await?;
        let seasons = self.store.list_seasons(org).await?;
        let season = match season {
            Some(id) => Some(
                seasons
                    .iter()
                    .find(|s| s.id == id)
                    .cloned()
                    .ok_or_else(|| ServiceError::NotFound(format!("season {id} not found")))?,
            ),
            None => current_season(&seasons).cloned(),
        };
        let now = Utc::now();
        let mut goals = vec![];
        if let Some(s) = &season {
            let own = self.store.list_goals_for_season(org, s.id).await?.into_iter().filter(|g| g.squad_id == squad.id);
            for goal in own {
                let key_result = self.store.get_key_result(org, goal.key_result_id).await?;
                let measure = match goal.measure {
                    Measure::Milestone => key_result.measure.clone(),
                    ref m => m.clone(),
                };
                let key = goal.metric.as_ref().or(key_result.metric.as_ref()).map(|f| f.key.clone());
                let series = match key {
                    Some(key) => self.metric_series(org, &key, now).await?,
                    None => None,
                };
                let projection = series.as_ref().map(|s| {
                    let points: Vec<TrendPoint> = s.points.iter().map(TrendPoint::from).collect();
                    project_measure(&points, &measure, goal.ends_on, now.date_naive())
                });
                let (forecast, outcome) = match projection {
                    Some(Projection::Forecast(f)) => (Some(f), None),
                    Some(Projection::Outcome(o)) => (None, Some(o)),
                    Some(Projection::TooFewPoints) | None => (None, None),
                };
                goals.push(DashboardGoal { goal, key_result, measure, series, forecast, outcome });
            }
        }
        let calibration = match &season {
            Some(s) => Some(self.squad_calibration(org, s.id, &squad.name).await?),
            None => None,
        };
        Ok(SquadDashboard { squad, season, today: now.date_naive(), goals, calibration })
    }

    /// The current version's series of metric `key`, flagged stale against its freshness limit at `now`;
    /// `None` for an unknown key. The squad and season dashboards chart what this returns.
    pub(crate) async fn metric_series(
        &self,
        org: OrgId,
        key: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<MetricSeries>> {
        let Some(metric) = self.store.metric(org, key).await? else { return Ok(None) };
        let points = self.store.series(org, key, metric.version).await?;
        Ok(Some(MetricSeries::new(metric, points, now)))
    }

    // ---- check-ins -----------------------------------------------------------------------------

    pub async fn check_in_key_result(&self, actor: &Actor, id: KeyResultId, input: &CheckInInput) -> Result<CheckIn> {
        let org = actor.authorize(Action::EditPlan)?;
        let kr = self.store.get_key_result(org, id).await?;
        let spec = signed(actor, input).validate(&kr.measure)?;
        Ok(self.store.add_check_in(org, SubjectKind::KeyResult, id.0, &spec).await?)
    }

    pub async fn check_in_goal(&self, actor: &Actor, id: SquadGoalId, input: &CheckInInput) -> Result<CheckIn> {
        let org = actor.authorize_some_goals()?;
        let goal = self.store.get_goal(org, id).await?;
        actor.authorize(Action::EditSquadGoals(goal.squad_id))?;
        let spec = signed(actor, input).validate(&goal.measure)?;
        Ok(self.store.add_check_in(org, SubjectKind::SquadGoal, id.0, &spec).await?)
    }

    pub async fn list_check_ins(&self, actor: &Actor, kind: SubjectKind, id: i64) -> Result<Vec<CheckIn>> {
        let org = actor.authorize(Action::Read)?;
        // Reading the subject first turns an unknown id into a 404 rather than an empty history.
        match kind {
            SubjectKind::KeyResult => drop(self.store.get_key_result(org, KeyResultId(id)).await?),
            SubjectKind::SquadGoal => drop(self.store.get_goal(org, SquadGoalId(id)).await?),
        }
        Ok(self.store.list_check_ins(org, kind, id).await?)
    }

    /// Whether the database answers, for the server's readiness check. It needs no actor (load
    /// balancers ask anonymously and learn nothing but yes or no), and a failure is not logged here:
    /// the check logs it, once per failed probe.
    pub async fn ready(&self) -> Result<()> {
        self.store.ping().await.map_err(|e| ServiceError::Internal(e.to_string()))
    }
}

/// A check-in by a signed-in person is theirs: the author is their account, whatever the form said, so
/// the history of a key result cannot be written in someone else's name. Tokens and the system name an
/// author themselves (an integration reporting for a team).
fn signed(actor: &Actor, input: &CheckInInput) -> CheckInInput {
    match &actor.principal {
        Principal::User { email, .. } => CheckInInput { author: email.clone(), ..input.clone() },
        _ => input.clone(),
    }
}

fn poisoned<T>(_: std::sync::PoisonError<T>) -> ServiceError {
    ServiceError::Internal("the season tree cache is poisoned".into())
}

fn goal_node(goal: SquadGoal, squads: &[Squad]) -> SquadGoalNode {
    SquadGoalNode {
        squad_name: squads.iter().find(|s| s.id == goal.squad_id).map(|s| s.name.clone()).unwrap_or_default(),
        progress: goal.measure.progress(goal.current),
        goal,
    }
}

/// Rebuilds a season's tree from the revisions and check-ins known at `at`.
fn tree_as_of(plan: PlanAsOf, id: SeasonId, at: DateTime<Utc>) -> Result<SeasonTree> {
    let PlanAsOf { seasons, objectives, mut key_results, squads, mut goals, check_ins } = plan;
    let season = seasons.into_iter().find(|s| s.id == id).ok_or_else(|| {
        ServiceError::NotFound(format!("season {id} did not exist on {}", at.format("%Y-%m-%d %H:%M UTC")))
    })?;
    let objectives: Vec<Objective> = objectives.into_iter().filter(|o| o.season_id == id).collect();
    let objective_ids: HashSet<ObjectiveId> = objectives.iter().map(|o| o.id).collect();
    key_results.retain(|k| objective_ids.contains(&k.objective_id));
    let kr_ids: HashSet<KeyResultId> = key_results.iter().map(|k| k.id).collect();
    goals.retain(|g| kr_ids.contains(&g.key_result_id));

    // A revision stores the current value of its moment; the check-ins say what was known at `at`.
    let mut by_subject: HashMap<(SubjectKind, i64), Vec<CheckIn>> = HashMap::new();
    for c in check_ins {
        by_subject.entry((c.subject_kind, c.subject_id)).or_default().push(c);
    }
    let latest = |kind: SubjectKind, subject: i64| {
        by_subject.get(&(kind, subject)).and_then(|mine| known_as_of(mine, at)).map(|c| (c.value, c.confidence))
    };
    for kr in &mut key_results {
        let known = latest(SubjectKind::KeyResult, kr.id.0);
        kr.current = known.map(|k| k.0);
        kr.confidence = known.and_then(|k| k.1).or(kr.confidence);
    }
    for goal in &mut goals {
        let known = latest(SubjectKind::SquadGoal, goal.id.0);
        goal.current = known.map(|k| k.0);
        goal.confidence = known.and_then(|k| k.1).or(goal.confidence);
    }
    Ok(build_tree(PlanParts { season, objectives, key_results, goals, squads, as_of: Some(at) }))
}
