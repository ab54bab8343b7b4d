//! The season dashboard and its thesis signals.
//!
//! Signals are raised from evidence whenever the dashboard is assembled and by the server's upkeep
//! (so they appear even when nobody looks), always as the system: raising is idempotent (a signal's
//! fingerprint is unique per season), so any number of servers and readers may do it at once.

use std::collections::{BTreeMap, HashMap};

use chrono::{NaiveDate, Utc};
use slope_domain::*;

use crate::{Planning, Result, ServiceError};

impl Planning {
    /// The dashboard of season `id`: the tree with live progress and slope allocation, every metric
    /// linked to the season's key results and goals with its trend, the weekly confidence trend, the
    /// thesis signals (new ones raised first), and the outlook: each key result's forecast at its end
    /// and the objectives' and season's scores then.
    pub async fn season_dashboard(&self, actor: &Actor, id: SeasonId) -> Result<SeasonDashboard> {
        let org = actor.authorize(Action::Read)?;
        let tree = self.cached_tree(org, id).await?;
        let now = Utc::now();
        let metrics = self.linked_metrics(org, &tree).await?;
        // A closed season is history: new evidence no longer asks anything of its thesis. Raising is a
        // write inside a read; when it fails (a busy database, say) the reader still gets the dashboard,
        // and the upkeep raises the signal on its next round.
        if tree.season.status != SeasonStatus::Closed
            && let Err(e) = self.raise_from(org, &tree, &metrics).await
        {
            tracing::warn!(error = %e, season = %id, "raising thesis signals failed; the upkeep tries again");
        }

        let check_ins = self.key_result_check_ins(org, &tree).await?;
        // The weeks run to the season's end (or today), and on to a later check-in: a confidence given
        // after the last day (in the retrospective, say) still belongs to the season.
        let latest = check_ins.iter().flatten().map(|c| c.recorded_at.date_naive()).max();
        let until = now.date_naive().min(tree.season.ends_on).max(latest.unwrap_or(tree.season.starts_on));
        let confidence = confidence_trend(&check_ins, tree.season.starts_on, until);
        let outlook = outlook(&tree, &metrics, &check_ins, now.date_naive());
        let calibration = calibration(&ended_key_results(&tree, &outlook, &check_ins, now.date_naive()));
        let mut signals = self.store().list_signals(org, id).await?;
        // Open ones first: they are what the leader has to do.
        signals.sort_by_key(|s| (!s.is_open(), std::cmp::Reverse((s.raised_at, s.id))));
        Ok(SeasonDashboard { tree, today: now.date_naive(), metrics, confidence, signals, outlook, calibration })
    }

    /// The review of closed season `id`: how each objective and key result ended, what the slope bets
    /// learned, the thesis signals, the calibration and the retrospective. A season still open has no
    /// review yet (409): its dashboard is the place to follow it.
    pub async fn season_review(&self, actor: &Actor, id: SeasonId) -> Result<SeasonReview> {
        let org = actor.authorize(Action::Read)?;
        let season = self.store().get_season(org, id).await?;
        if season.status != SeasonStatus::Closed {
            return Err(ServiceError::Conflict(format!(
                "season {id} is {}: its review is produced when it closes; follow it on its dashboard meanwhile",
                season.status.as_str()
            )));
        }
        Ok(season_review(&self.season_dashboard(actor, id).await?))
    }

    /// Every key result's check-ins, in the tree's order.
    async fn key_result_check_ins(&self, org: OrgId, tree: &SeasonTree) -> Result<Vec<Vec<CheckIn>>> {
        let mut check_ins = Vec::new();
        for kr in tree.objectives.iter().flat_map(|o| &o.key_results) {
            check_ins.push(self.store().list_check_ins(org, SubjectKind::KeyResult, kr.key_result.id.0).await?);
        }
        Ok(check_ins)
    }

    /// The calibration of the check-ins of season `id`'s ended key results that `squad`'s goals ladder
    /// to, for the squad's dashboard: the same judgement as the season dashboard's, narrowed to the key
    /// results the squad works toward.
    pub(crate) async fn squad_calibration(&self, org: OrgId, id: SeasonId, squad: &str) -> Result<Calibration> {
        let tree = self.cached_tree(org, id).await?;
        let metrics = self.linked_metrics(org, &tree).await?;
        let check_ins = self.key_result_check_ins(org, &tree).await?;
        let today = Utc::now().date_naive();
        let outlook = outlook(&tree, &metrics, &check_ins, today);
        let mut ended = ended_key_results(&tree, &outlook, &check_ins, today);
        ended.retain(|k| k.squads.iter().any(|s| s == squad));
        Ok(calibration(&ended))
    }

    /// Raises the signals the current evidence calls for in the organisation's active season; returns
    /// how many were new. The server's upkeep calls it.
    pub async fn raise_signals(&self, org: OrgId) -> Result<usize> {
        let seasons = self.store().list_seasons(org).await?;
        let Some(season) = seasons.into_iter().find(|s| s.status == SeasonStatus::Active) else { return Ok(0) };
        let tree = self.cached_tree(org, season.id).await?;
        let metrics = self.linked_metrics(org, &tree).await?;
        self.raise_from(org, &tree, &metrics).await
    }

    /// Resolves signal `signal` of season `season` with the leader's note. A signal resolved already
    /// is a conflict naming who resolved it; the first note stands.
    pub async fn resolve_signal(
        &self,
        actor: &Actor,
        season: SeasonId,
        signal: i64,
        input: &ResolveSignalInput,
    ) -> Result<ThesisSignal> {
        let org = actor.authorize(Action::EditPlan)?;
        let note = input.validate()?;
        if self.store().get_season(org, season).await?.status == SeasonStatus::Closed {
            return Err(ServiceError::Conflict(format!(
                "season {season} is closed: its signals stay as they were (its retrospective is the place for what it taught)"
            )));
        }
        // The signal must belong to the season named in the address (and so to the organisation).
        let known = self.store().list_signals(org, season).await?;
        if !known.iter().any(|s| s.id == signal) {
            return Err(ServiceError::NotFound(format!("season {season} has no thesis signal {signal}")));
        }
        match self.store().resolve_signal(actor, signal, &note, Utc::now()).await? {
            Ok(resolved) => {
                tracing::info!(signal, %season, by = %actor.label(), "thesis signal resolved");
                Ok(resolved)
            }
            Err(already) => Err(ServiceError::Conflict(format!(
                "thesis signal {signal} was resolved already by {} ({}): {}",
                already.resolved_by.as_deref().unwrap_or("someone"),
                already.resolved_at.map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string()).unwrap_or_default(),
                already.resolution.as_deref().unwrap_or("")
            ))),
        }
    }

    /// Every metric feeding a key result or goal of the tree, with the directions the measures it feeds
    /// want (a metric feeding measures that disagree on direction has none) and its reversal, if any.
    async fn linked_metrics(&self, org: OrgId, tree: &SeasonTree) -> Result<Vec<LinkedMetric>> {
        let mut feeds: BTreeMap<String, (Vec<String>, Vec<Option<f64>>)> = BTreeMap::new();
        for kr in tree.objectives.iter().flat_map(|o| &o.key_results) {
            if let Some(feed) = &kr.key_result.metric {
                let entry = feeds.entry(feed.key.clone()).or_default();
                entry.0.push(kr.key_result.title.clone());
                entry.1.push(good_direction(&kr.key_result.measure));
            }
            for goal in &kr.goals {
                if let Some(feed) = &goal.goal.metric {
                    let entry = feeds.entry(feed.key.clone()).or_default();
                    entry.0.push(goal.goal.title.clone());
                    // A milestone goal fed by a metric is judged by its key result's measure.
                    let measure = match goal.goal.measure {
                        Measure::Milestone => &kr.key_result.measure,
                        ref m => m,
                    };
                    entry.1.push(good_direction(measure));
                }
            }
        }
        let now = Utc::now();
        let mut out = Vec::with_capacity(feeds.len());
        for (key, (titles, directions)) in feeds {
            let Some(series) = self.metric_series(org, &key, now).await? else { continue };
            let first = directions.first().copied().flatten();
            let good = first.filter(|d| directions.iter().all(|x| *x == Some(*d)));
            let trend: Vec<TrendPoint> = series.points.iter().map(TrendPoint::from).collect();
            let reversal = good.and_then(|d| detect_reversal(&trend, d));
            out.push(LinkedMetric { feeds: titles, good_direction: good, series, reversal });
        }
        Ok(out)
    }

    /// Stores the signals the evidence calls for that are not known yet; returns how many were new.
    async fn raise_from(&self, org: OrgId, tree: &SeasonTree, metrics: &[LinkedMetric]) -> Result<usize> {
        let season = tree.season.id;
        let existing = self.store().list_signals(org, season).await?;
        let now = Utc::now();
        let mut wanted = Vec::new();
        for m in metrics {
            if let Some(reversal) = &m.reversal
                && reversal_is_new(&existing, &m.series.metric.key, now)
            {
                wanted.push(reversal_signal(&m.series.metric.key, &m.feeds.join("\", \""), reversal, fmt_number));
            }
        }
        let goals: Vec<&SquadGoalNode> =
            tree.objectives.iter().flat_map(|o| &o.key_results).flat_map(|k| &k.goals).collect();
        let owned: Vec<SquadGoal> = goals.iter().map(|g| g.goal.clone()).collect();
        let squad_of =
            |g: &SquadGoal| goals.iter().find(|n| n.goal.id == g.id).map(|n| n.squad_name.clone()).unwrap_or_default();
        wanted.extend(
            killed_bet_signals(&owned, squad_of)
                .into_iter()
                .filter(|s| !existing.iter().any(|e| e.fingerprint == s.fingerprint)),
        );
        let mut raised = 0;
        for signal in &wanted {
            if self.store().raise_signal(org, season, signal, now).await? {
                tracing::info!(%season, kind = %signal.kind, subject = %signal.subject, "thesis signal raised");
                raised += 1;
            }
        }
        Ok(raised)
    }
}

/// The season's outlook from each key result's evidence: the points of the metric that feeds it, else
/// its check-ins (the last of each day: a correction the same day replaces the reading). `check_ins`
/// are the key results' histories in the tree's order.
fn outlook(tree: &SeasonTree, metrics: &[LinkedMetric], check_ins: &[Vec<CheckIn>], today: NaiveDate) -> SeasonOutlook {
    let nodes = tree.objectives.iter().flat_map(|o| &o.key_results);
    let mut readings = HashMap::new();
    for (node, history) in nodes.zip(check_ins) {
        let kr = &node.key_result;
        let fed = kr.metric.as_ref().and_then(|feed| metrics.iter().find(|m| m.series.metric.key == feed.key));
        let found = match fed {
            Some(m) => KeyResultReadings::from_metric(&m.series.points),
            None if !history.is_empty() => KeyResultReadings::from_check_ins(history),
            None => continue,
        };
        readings.insert(kr.id, found);
    }
    // Seeded by the season, so a reload with the same evidence shows the same figures.
    season_outlook(tree, &readings, today, tree.season.id.0 as u64)
}

/// The key results that have ended, for the calibration of their check-ins: those whose quarter is over
/// (met when their outcome reading scores 1), and, once the season is closed, the rest (ended on the day
/// it closed, met when their current value scores 1).
fn ended_key_results(
    tree: &SeasonTree,
    outlook: &SeasonOutlook,
    check_ins: &[Vec<CheckIn>],
    today: NaiveDate,
) -> Vec<EndedKeyResult> {
    let closed = tree.season.status == SeasonStatus::Closed;
    let nodes = tree.objectives.iter().flat_map(|o| &o.key_results);
    let mut ended = Vec::new();
    for ((node, history), at_end) in nodes.zip(check_ins).zip(&outlook.key_results) {
        let measure = &node.key_result.measure;
        let (ended_on, met) = match &at_end.outcome {
            Some(o) => (o.on, o.reading.is_some_and(|r| measure.progress(Some(r.value)).score >= 1.0)),
            // A closed season's last edit is its close, so its updated_at is when it ended (if that came
            // before its last day): a later view must not count check-ins made after the close.
            None if closed => {
                (tree.season.ends_on.min(tree.season.updated_at.date_naive()).min(today), node.progress.score >= 1.0)
            }
            None => continue,
        };
        let mut squads: Vec<String> = node.goals.iter().map(|g| g.squad_name.clone()).collect();
        squads.sort();
        squads.dedup();
        ended.push(EndedKeyResult {
            key_result_id: node.key_result.id,
            ended_on,
            met,
            squads,
            check_ins: history.iter().map(|c| (c.recorded_at.date_naive(), c.author.clone(), c.confidence)).collect(),
        });
    }
    ended
}
