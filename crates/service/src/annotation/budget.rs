//! The annotation budget: how many more expert annotations a key result's loop metric needs to reach
//! its target, from a learning curve fitted to the loop's own promoted iterations (the domain's
//! `annotation_budget` says how).

use std::collections::HashMap;

use slope_domain::*;

use super::Annotations;
use crate::Result;

impl Annotations {
    /// The loop's learning-curve points (see the domain's `curve_points`) and the labelled annotations
    /// given so far.
    async fn curve(&self, actor: &Actor, org: OrgId, loop_key: &str) -> Result<(Vec<CurvePoint>, i64)> {
        let stack = self.runner.loop_stack(actor, loop_key).await?;
        let experiments = self.loops.list_experiments(actor).await?;
        let by_variant: HashMap<String, (f64, f64)> = self
            .loops
            .acceptance_by_variant(org, loop_key)
            .await?
            .into_iter()
            .map(|(variant, accepted, suggested)| (variant, (accepted, suggested)))
            .collect();
        let points = curve_points(&stack.iterations, &experiments, &by_variant);
        let so_far = self.store.annotations_per_day(org, loop_key).await?.iter().map(|(_, n)| n).sum();
        Ok((points, so_far))
    }

    /// The annotation budget of a key result fed by a loop's acceptance-rate metric; `None` for other key
    /// results (milestones, ranges, or fed by nothing of a loop).
    pub async fn key_result_budget(&self, actor: &Actor, id: KeyResultId) -> Result<Option<AnnotationBudget>> {
        let org = actor.authorize(Action::Read)?;
        let kr = self.store.get_key_result(org, id).await?;
        let Some(metric) = self.acceptance_metric(org, &kr).await? else { return Ok(None) };
        let Some(loop_key) = metric.loop_key.clone() else { return Ok(None) };
        let (points, so_far) = self.curve(actor, org, &loop_key).await?;
        self.budget_of(org, &kr, &metric, points, so_far).await
    }

    /// The budgets of every key result (of seasons not closed) fed by one of the loop's acceptance-rate
    /// metrics, for the loop page.
    pub async fn loop_budget(&self, actor: &Actor, loop_key: &str) -> Result<LoopBudget> {
        let org = actor.authorize(Action::Read)?;
        // Another organisation's loop, like an unknown one, is not found.
        self.loops.ensure_loop(org, loop_key).await?;
        let mut key_results = Vec::new();
        let mut curve = None;
        for season in self.store.list_seasons(org).await?.into_iter().filter(|s| s.status != SeasonStatus::Closed) {
            for kr in self.store.list_key_results(org, season.id).await? {
                let Some(metric) = self.acceptance_metric(org, &kr).await? else { continue };
                if metric.loop_key.as_deref() != Some(loop_key) {
                    continue;
                }
                if curve.is_none() {
                    curve = Some(self.curve(actor, org, loop_key).await?);
                }
                let (points, so_far) = curve.clone().unwrap_or_default();
                if let Some(budget) = self.budget_of(org, &kr, &metric, points, so_far).await? {
                    key_results.push(KeyResultBudget { key_result_id: kr.id.0, title: kr.title.clone(), budget });
                }
            }
        }
        Ok(LoopBudget { loop_key: loop_key.to_owned(), key_results })
    }

    async fn acceptance_metric(&self, org: OrgId, kr: &KeyResult) -> Result<Option<MetricDefinition>> {
        let Some(feed) = &kr.metric else { return Ok(None) };
        Ok(self
            .store
            .metric(org, &feed.key)
            .await?
            .filter(|m| m.kind == MetricKind::AcceptanceRate && m.loop_key.is_some()))
    }

    async fn budget_of(
        &self,
        org: OrgId,
        kr: &KeyResult,
        metric: &MetricDefinition,
        points: Vec<CurvePoint>,
        so_far: i64,
    ) -> Result<Option<AnnotationBudget>> {
        let Some((target, increase)) = budget_target(&kr.measure) else { return Ok(None) };
        let objective = self.store.get_objective(org, kr.objective_id).await?;
        let season = self.store.get_season(org, objective.season_id).await?;
        let by = key_result_ends_on(objective.quarter, season.ends_on);
        let today = chrono::Utc::now().date_naive();
        let mut budget = annotation_budget(BudgetQuestion {
            metric: &metric.key,
            target,
            increase,
            // Acceptance is a share of characters: it cannot pass 1.
            ceiling: Some(1.0),
            points,
            annotations_so_far: so_far,
            today,
            by: Some(by),
        });
        if budget.estimate.is_some() && !budget.reached {
            let goals: Vec<SquadGoal> = self
                .store
                .list_goals_for_season(org, season.id)
                .await?
                .into_iter()
                .filter(|g| g.key_result_id == kr.id)
                .collect();
            if !goals.is_empty() {
                let squads: HashMap<SquadId, String> =
                    self.store.list_squads(org).await?.into_iter().map(|s| (s.id, s.name)).collect();
                let paired: Vec<(&SquadGoal, &str)> =
                    goals.iter().map(|g| (g, squads.get(&g.squad_id).map_or("", String::as_str))).collect();
                budget.goals = goal_rates(&budget, today, &paired);
            }
        }
        Ok(Some(budget))
    }
}
