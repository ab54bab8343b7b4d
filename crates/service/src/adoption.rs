//! The exec adoption dashboard: gathers the evidence that `slope_domain::adoption` judges (people and AI
//! users per unit from every loop's interaction events; each loop's key results, owner squads, evals,
//! champion model and measured lifts; the season's squad goals), then classifies every unit, runs the
//! failure-mode detectors and computes the trend of stages over the last weeks.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Duration, NaiveDate, Utc};

use slope_domain::*;
use slope_metrics::adoption::{
    ACTIVE_WINDOW_DAYS, COLUMNS, PEOPLE_WINDOW_DAYS, UnitActivity, first_days, loop_units, unit_activity,
};
use slope_metrics::segment;

use crate::error::internal;
use crate::{Loops, Result};

/// How many weekly dates the trend covers, the last being now.
pub const TREND_WEEKS: usize = 6;
/// The fewest points on each side of a promotion that a before/after lift is computed from.
pub const MIN_LIFT_POINTS: usize = 3;
/// The most points on each side of a change that a before/after lift takes: the nearest ones.
pub const LIFT_WINDOW_POINTS: usize = 8;
/// Where a loop's evidence is listed when neither an owner squad nor its events name a unit: the
/// detectors still judge it, but it counts towards no unit's stage.
const NO_UNIT: &str = "(no unit)";

/// How the trend is computed, as the dashboard states it.
pub const TREND_METHOD: &str = "Each weekly date recomputes every unit's people (its headcount as it is now where \
     one is given, else the users seen over the 12 weeks up to that date) and active AI users (shown a suggestion in the 4 weeks up to that date) from the events. Loops' \
     key results, evals, owners and lifts are taken as they are now, not as they were then: an approximation, so \
     the trend shows the change in fluency exactly and the higher stages as if today's process evidence had held \
     throughout. Only top-level units are counted, so a division and its teams are not counted twice.";

impl Loops {
    /// The exec adoption dashboard as of now: every unit classified into stage 0–3 with its evidence
    /// and the rule stated, the failure-mode warnings with theirs, and the stage trend over the last
    /// [`TREND_WEEKS`] weekly dates.
    ///
    /// The evidence:
    /// - Units: those of the organisation's unit tree (with their parents), the units of its squads, and
    ///   every unit named by an interaction event of the last 12 weeks. A unit's people are its headcount
    ///   where an admin has given one, else the distinct users seen in its events over 12 weeks (a lower
    ///   bound, which the dashboard says).
    /// - Activity: from the events of every loop (`slope_metrics::adoption::unit_activity`).
    /// - Loops: every loop with events, metrics or a model alias. A loop's key results are those of the
    ///   current season (the active one, else the latest) fed by one of the loop's metrics; its owner
    ///   squads are the squads with a goal of the season (not killed) fed by one of the loop's metrics
    ///   or under one of its key results; its units are its owner squads' units and the units its
    ///   events of the last 12 weeks name. Its last eval is the newest point of its eval-score metrics
    ///   or its champion's eval, whichever is later; its champion's base is the root of the champion's
    ///   lineage (the model itself when it has no base).
    /// - Lifts: see [`before_after_lift`], around the loop's latest accepted promotion, on each of its
    ///   metrics that measures retention (kind `retention`, or a name saying retention) or lifetime value
    ///   (a key or name saying LTV, CLV or lifetime value), and on each `ltv` metric cut by a unit the
    ///   loop serves (transactions are the organisation's, so a unit's customers are the nearest
    ///   attribution to a loop there is); a lift of one unit counts for that unit only.
    /// - Goals: every squad goal of the current season.
    ///
    /// The trend recomputes the activity windows as of each weekly date but takes the loops' evidence as
    /// of now (see [`TREND_METHOD`]).
    pub async fn adoption(&self, actor: &Actor) -> Result<AdoptionReport> {
        let org = actor.authorize(Action::Read)?;
        let now = Utc::now();
        let store = self.store();
        let settings = store.adoption_settings(org).await?;
        let rules = settings.rules;

        let seasons = store.list_seasons(org).await?;
        let season = current_season(&seasons).cloned();
        let (key_results, goals) = match &season {
            Some(s) => (store.list_key_results(org, s.id).await?, store.list_goals_for_season(org, s.id).await?),
            None => (vec![], vec![]),
        };
        let squads = store.list_squads(org).await?;
        let metrics = store.list_metrics(org).await?;
        let tree = store.list_units(org).await?;
        let summaries = store.list_loops(org).await?;
        let aliases = store.aliases(org, None).await?;
        let models = store.list_models(org, None).await?;
        let promotions = store.promotions(org, None).await?;

        // The events of every loop that the oldest trend date's 12-week window reaches.
        let dates: Vec<DateTime<Utc>> =
            (0..TREND_WEEKS).rev().map(|weeks_ago| now - Duration::weeks(weeks_ago as i64)).collect();
        let from = (dates[0] - Duration::days(PEOPLE_WINDOW_DAYS)).date_naive();
        let mut bytes = Vec::new();
        for summary in summaries.iter().filter(|s| s.last_event.date_naive() >= from) {
            bytes.extend(self.event_bytes(org, &summary.loop_key, Some((from, now.date_naive()))).await?);
        }
        let snapshot_dates = dates.clone();
        let (activities, units_of_loops, first_days) = tokio::task::spawn_blocking(move || {
            let events = segment::frame_of(&bytes, Some(&COLUMNS)).map_err(|e| e.to_string())?;
            let mut activities = Vec::with_capacity(snapshot_dates.len());
            for at in &snapshot_dates {
                activities.push(unit_activity(events.clone(), *at).map_err(|e| e.to_string())?);
            }
            let firsts = first_days(events.clone()).map_err(|e| e.to_string())?;
            let units = loop_units(events, now).map_err(|e| e.to_string())?;
            Ok::<_, String>((activities, units, firsts))
        })
        .await
        .map_err(|e| internal("reading events for the adoption dashboard", e))?
        .map_err(|e| internal("reading events for the adoption dashboard", e))?;

        // ---- loops
        let mut loop_keys: BTreeSet<String> = summaries.iter().map(|s| s.loop_key.clone()).collect();
        loop_keys.extend(metrics.iter().filter_map(|m| m.loop_key.clone()));
        loop_keys.extend(aliases.iter().map(|a| a.loop_key.clone()));
        loop_keys.retain(|k| !k.starts_with('_'));

        // Every `ltv` metric cut by a unit, with its series read once for all loops: only the weeks whose
        // fit was clearly at a maximum (those with an interval), since a fit on a likelihood ridge can put
        // one week's value orders of magnitude off and decide a comparison of means on its own.
        let mut unit_ltv_series: Vec<(&MetricDefinition, Vec<MetricPoint>)> = Vec::new();
        for metric in metrics.iter().filter(|m| m.kind == MetricKind::Ltv && m.loop_key.is_none() && m.unit.is_some()) {
            let points = store.series(org, &metric.key, metric.version).await?;
            unit_ltv_series.push((metric, points.into_iter().filter(|p| p.ci_low.is_some()).collect()));
        }

        let squad_of = |id: SquadId| squads.iter().find(|s| s.id == id);
        let mut loops: Vec<(LoopEvidence, BTreeSet<String>)> = Vec::new();
        for key in &loop_keys {
            let own_metrics: Vec<&MetricDefinition> =
                metrics.iter().filter(|m| m.loop_key.as_deref() == Some(key.as_str())).collect();
            // The units the loop's events name, and the lifetime value of each one's customers: an `ltv`
            // metric of the organisation's transactions cut by such a unit is the loop's evidence for
            // that unit (transactions are the organisation's, so a unit's customers are the nearest
            // attribution to a loop there is).
            let served = units_of_loops.get(key);
            let unit_ltv: Vec<&MetricDefinition> = unit_ltv_series
                .iter()
                .map(|(m, _)| *m)
                .filter(|m| m.unit.as_ref().is_some_and(|u| served.is_some_and(|s| s.contains(u))))
                .collect();
            let feeding = |feed: &Option<MetricFeed>| {
                let key = &feed.as_ref()?.key;
                own_metrics.iter().chain(&unit_ltv).find(|m| &m.key == key).copied()
            };
            let krs: Vec<&KeyResult> = key_results.iter().filter(|kr| feeding(&kr.metric).is_some()).collect();
            let fed_by_loop = |feed: &Option<MetricFeed>| feeding(feed).is_some();
            let kr_evidence = krs
                .iter()
                .map(|kr| KrEvidence {
                    title: kr.title.clone(),
                    unit_of_measure: kr.measure.unit().to_owned(),
                    metric: kr.metric.as_ref().map(|f| f.key.clone()),
                    metric_stale: kr.metric.as_ref().is_some_and(|f| f.is_stale(now)),
                    has_data: kr.current.is_some(),
                    unit: feeding(&kr.metric).and_then(|m| m.unit.clone()),
                })
                .collect();
            let owners: BTreeMap<&str, &Squad> = goals
                .iter()
                .filter(|g| g.status != GoalStatus::Killed)
                .filter(|g| fed_by_loop(&g.metric) || krs.iter().any(|kr| kr.id == g.key_result_id))
                .filter_map(|g| squad_of(g.squad_id))
                .map(|s| (s.name.as_str(), s))
                .collect();
            let mut units: BTreeSet<String> =
                owners.values().map(|s| s.unit.trim().to_owned()).filter(|u| !u.is_empty()).collect();
            units.extend(units_of_loops.get(key).into_iter().flatten().cloned());

            let mut last_eval_at = None;
            for metric in own_metrics.iter().filter(|m| m.kind == MetricKind::EvalScore) {
                let newest = store.series(org, &metric.key, metric.version).await?.last().map(|p| p.observed_at);
                last_eval_at = last_eval_at.max(newest);
            }
            let champion = champion(&aliases, &models, key);
            last_eval_at = last_eval_at.max(champion.and_then(|m| m.evaluated_at));

            // Lifts on the loop's own metrics around its latest promotion, and on the lifetime value of
            // each served unit's customers around the day the unit took the loop up (its first event in
            // the loop, when that lies after the start of the events read: a unit already there on
            // that day may have taken the loop up earlier, so no change point is known for it).
            let mut lifts = Vec::new();
            if let Some(promoted) = latest_promotion(&promotions, key) {
                let day = promoted.at.date_naive();
                for metric in &own_metrics {
                    let Some(kind) = lift_metric(metric) else { continue };
                    let points = store.series(org, &metric.key, metric.version).await?;
                    if let Some((low, high)) = lift_around(metric, &points, day) {
                        let model = models.iter().find(|m| m.id == promoted.challenger_id);
                        let name =
                            model.map_or_else(|| format!("model {}", promoted.challenger_id), |m| m.name.clone());
                        let around = format!("the promotion of {name} on {day}");
                        lifts.push(lift_evidence(metric, kind, (low, high), around));
                    }
                }
            }
            for metric in &unit_ltv {
                let Some(unit) = &metric.unit else { continue };
                let Some(&day) = first_days.get(key).and_then(|units| units.get(unit)) else { continue };
                if day <= from {
                    continue;
                }
                let Some((_, points)) = unit_ltv_series.iter().find(|(m, _)| m.key == metric.key) else { continue };
                // The comparison units are those that had not taken the loop up by that day (later, or
                // never): a unit that took it up earlier carries its own lift into both periods.
                let first_day_of = |m: &MetricDefinition| {
                    m.unit.as_ref().and_then(|u| first_days.get(key).and_then(|units| units.get(u)).copied())
                };
                let others: Vec<Vec<MetricPoint>> = unit_ltv_series
                    .iter()
                    .filter(|(m, _)| m.unit != metric.unit && first_day_of(m).is_none_or(|first| first > day))
                    .map(|(_, points)| points.clone())
                    .collect();
                if let Some((low, high)) = lift_against(metric, points, &others, day) {
                    let around = format!("{unit}'s first event in the loop on {day}");
                    lifts.push(LiftEvidence {
                        source: DIFF_IN_DIFF.to_owned(),
                        ..lift_evidence(metric, LiftMetric::Ltv, (low, high), around)
                    });
                }
            }

            let owner_names: Vec<&str> = owners.keys().copied().collect();
            let evidence = LoopEvidence {
                key: key.clone(),
                owner_squad: (!owner_names.is_empty()).then(|| owner_names.join(", ")),
                key_results: kr_evidence,
                lifts,
                last_eval_at,
                champion_base: champion.map(|m| base_of(m, &models).name.clone()),
            };
            loops.push((evidence, units));
        }

        // ---- units
        let mut names: BTreeSet<String> = tree.iter().map(|u| u.name.clone()).collect();
        names.extend(squads.iter().map(|s| s.unit.trim().to_owned()).filter(|u| !u.is_empty()));
        names.extend(activities.iter().flatten().map(|a| a.unit.clone()));
        names.extend(loops.iter().flat_map(|(_, units)| units.iter().cloned()));
        let parent_of = |name: &str| tree.iter().find(|u| u.name == name).and_then(|u| u.parent.clone());
        let headcount_of = |name: &str| tree.iter().find(|u| u.name == name).and_then(|u| u.headcount);
        let evidence_at = |activity: &[UnitActivity]| -> Vec<UnitEvidence> {
            names
                .iter()
                .map(|name| {
                    let seen = activity.iter().find(|a| &a.unit == name);
                    UnitEvidence {
                        unit: name.clone(),
                        parent: parent_of(name),
                        headcount: headcount_of(name),
                        people_seen_12w: seen.map_or(0, |a| a.people_seen_12w),
                        active_ai_users_4w: seen.map_or(0, |a| a.active_ai_users_4w),
                        loops: loops
                            .iter()
                            .filter(|(_, units)| units.contains(name))
                            .map(|(l, _)| l.seen_by(name))
                            .collect(),
                    }
                })
                .collect()
        };
        let empty = Vec::new();
        let current = evidence_at(activities.last().unwrap_or(&empty));
        let stages = classify_all(&current, &rules);

        // ---- warnings: every loop is judged, those attributed to no unit too.
        let mut judged = current.clone();
        let orphans: Vec<LoopEvidence> =
            loops.iter().filter(|(_, units)| units.is_empty()).map(|(l, _)| l.clone()).collect();
        if !orphans.is_empty() {
            judged.push(UnitEvidence { unit: NO_UNIT.to_owned(), loops: orphans, ..Default::default() });
        }
        let squad_name = |id: SquadId| squad_of(id).map_or_else(|| format!("squad {}", id.0), |s| s.name.clone());
        let goal_evidence = goals
            .iter()
            .map(|g| GoalEvidence {
                squad: squad_name(g.squad_id),
                title: g.title.clone(),
                status: g.status,
                investment: g.investment,
                key_result: key_results.iter().find(|kr| kr.id == g.key_result_id).map(|kr| kr.title.clone()),
                metric: g.metric.as_ref().map(|f| f.key.clone()),
            })
            .collect();
        let warnings = detect(&OrgEvidence { units: judged, goals: goal_evidence }, &rules, now);

        // ---- trend: top-level units only (a parent that is not listed makes a unit top-level).
        let top_level = |u: &UnitEvidence| u.parent.as_ref().is_none_or(|p| !names.contains(p));
        let snapshots: Vec<(NaiveDate, Vec<UnitStage>)> = dates
            .iter()
            .zip(&activities)
            .map(|(at, activity)| {
                let units = evidence_at(activity);
                let keep: BTreeSet<String> = units.iter().filter(|u| top_level(u)).map(|u| u.unit.clone()).collect();
                let stages = classify_all(&units, &rules).into_iter().filter(|s| keep.contains(&s.unit)).collect();
                (at.date_naive(), stages)
            })
            .collect();

        Ok(AdoptionReport {
            as_of: now,
            season: season.map(|s| s.name),
            statements: rule_statements(&rules),
            rules,
            rules_version: settings.version,
            rules_set_by: settings.set_by,
            rules_set_at: settings.set_at,
            units: stages.into_iter().zip(current).map(|(stage, evidence)| UnitReport::new(stage, evidence)).collect(),
            warnings,
            trend: stage_trend(&snapshots),
            trend_method: format!(
                "{TREND_METHOD} Dates are a week apart, the last being now; the windows are {} and {} days.",
                PEOPLE_WINDOW_DAYS, ACTIVE_WINDOW_DAYS
            ),
        })
    }
}

impl Loops {
    /// The organisation's adoption rules and their version (the defaults, version 0, until an admin
    /// changes them).
    pub async fn adoption_rules(&self, actor: &Actor) -> Result<AdoptionSettings> {
        let org = actor.authorize(Action::Read)?;
        Ok(self.store().adoption_settings(org).await?)
    }

    /// Sets the organisation's adoption rules as their next version (admins only), refused on a stale
    /// version. The dashboard judges by them from the next time it is read.
    pub async fn set_adoption_rules(&self, actor: &Actor, input: &AdoptionRulesInput) -> Result<AdoptionSettings> {
        actor.authorize(Action::Administer)?;
        let (based_on, rules) = input.parse()?;
        let settings = self.store().set_adoption_rules(actor, based_on, &rules).await?;
        tracing::info!(version = settings.version.0, by = %actor.label(), "adoption rules changed");
        Ok(settings)
    }
}

fn champion<'a>(aliases: &[Alias], models: &'a [Model], loop_key: &str) -> Option<&'a Model> {
    let alias = aliases.iter().find(|a| a.loop_key == loop_key && a.alias == AliasKind::Champion)?;
    models.iter().find(|m| m.id == alias.model_id)
}

/// The root of a model's lineage: the model it was (indirectly) fine-tuned from that has no base.
fn base_of<'a>(model: &'a Model, models: &'a [Model]) -> &'a Model {
    let mut current = model;
    // A lineage is a chain; the bound only guards against a corrupted cycle.
    for _ in 0..64 {
        match current.base_model_id.and_then(|id| models.iter().find(|m| m.id == id)) {
            Some(base) => current = base,
            None => break,
        }
    }
    current
}

fn lift_evidence(metric: &MetricDefinition, kind: LiftMetric, (low, high): (f64, f64), around: String) -> LiftEvidence {
    LiftEvidence {
        metric_kind: kind,
        low,
        high,
        source: BEFORE_AFTER.to_owned(),
        metric: Some(metric.key.clone()),
        unit: metric.unit.clone(),
        around: Some(around),
    }
}

fn latest_promotion<'a>(promotions: &'a [Promotion], loop_key: &str) -> Option<&'a Promotion> {
    promotions.iter().filter(|p| p.accepted && p.loop_key == loop_key).max_by_key(|p| (p.at, p.id))
}

/// Whether a metric measures an outcome that shows growth: retention or lifetime value.
fn lift_metric(metric: &MetricDefinition) -> Option<LiftMetric> {
    let words = format!("{} {}", metric.key, metric.name).to_lowercase();
    let says = |w: &str| words.split(|c: char| !c.is_alphanumeric()).any(|part| part == w);
    if metric.kind == MetricKind::Retention || says("retention") {
        Some(LiftMetric::Retention)
    } else if metric.kind == MetricKind::Ltv || says("ltv") || says("clv") || words.contains("lifetime value") {
        Some(LiftMetric::Ltv)
    } else {
        None
    }
}

/// The before/after lift of a metric's series around `day` (a promotion's, a unit's uptake): the
/// [`LIFT_WINDOW_POINTS`] nearest points whose window of days ends before `day` against the as many
/// nearest whose window starts after it (points whose window holds `day` are left out, being partly
/// both), by [`before_after_lift`]. Only the nearest count, so that a long history's early points (a
/// lifetime value fitted on the first few customers, say) and slow trends far from the change do not
/// decide it.
fn lift_around(metric: &MetricDefinition, points: &[MetricPoint], day: NaiveDate) -> Option<(f64, f64)> {
    let (mut before, mut after) = (Vec::new(), Vec::new());
    let mut sorted: Vec<&MetricPoint> = points.iter().filter(|p| p.value.is_finite()).collect();
    sorted.sort_by_key(|p| p.bucket);
    for p in sorted {
        let (from, to) = metric.window_of(p.bucket);
        if to < day {
            before.push(p.value);
        } else if from > day {
            after.push(p.value);
        }
    }
    let nearest_before = &before[before.len().saturating_sub(LIFT_WINDOW_POINTS)..];
    let nearest_after = &after[..after.len().min(LIFT_WINDOW_POINTS)];
    before_after_lift(nearest_before, nearest_after)
}

/// The lift of one unit's series around `day` by difference in differences: each week's value minus the
/// mean of the comparison units' values of the same bucket (buckets that none of them has are left out),
/// so that what moves every unit's customers at once (the customer base ageing, a season) cancels, then
/// [`lift_around`] on the differences. `None` without a unit to compare with. The caller passes units
/// that had not taken the loop up by `day`; one that takes it up within the weeks after makes the
/// comparison conservative, not wrong: its own lift is subtracted from the unit's.
fn lift_against(
    metric: &MetricDefinition,
    points: &[MetricPoint],
    others: &[Vec<MetricPoint>],
    day: NaiveDate,
) -> Option<(f64, f64)> {
    let mut by_bucket: BTreeMap<NaiveDate, (f64, f64)> = BTreeMap::new();
    for p in others.iter().flatten().filter(|p| p.value.is_finite()) {
        let entry = by_bucket.entry(p.bucket).or_default();
        *entry = (entry.0 + p.value, entry.1 + 1.0);
    }
    let differences: Vec<MetricPoint> = points
        .iter()
        .filter_map(|p| {
            let (sum, n) = by_bucket.get(&p.bucket)?;
            Some(MetricPoint { value: p.value - sum / n, ci_low: None, ci_high: None, ..p.clone() })
        })
        .collect();
    lift_around(metric, &differences, day)
}

/// The 95 % interval of the difference between the mean of the points after a change and the mean of
/// those before it, or `None` with fewer than [`MIN_LIFT_POINTS`] points on either side.
///
/// Each point is taken as one observation of its period, and the interval is Welch's: the difference
/// of means ± t(0.975, ν) × √(s²ₐ/nₐ + s²ᵦ/nᵦ), with ν the Welch–Satterthwaite degrees of freedom, so
/// the two periods may differ in spread and a short series gets the wide interval it deserves. Points
/// of a series are not independent (a 7-day window shares days with the next point, and any trend
/// continues across the change), so this interval is a guide, not an experiment's; with no spread on
/// either side there is nothing to size an interval from, and the answer is `None` too.
pub fn before_after_lift(before: &[f64], after: &[f64]) -> Option<(f64, f64)> {
    if before.len() < MIN_LIFT_POINTS || after.len() < MIN_LIFT_POINTS {
        return None;
    }
    let moments = |xs: &[f64]| {
        let n = xs.len() as f64;
        let mean = xs.iter().sum::<f64>() / n;
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0);
        (n, mean, var / n)
    };
    let (nb, mb, vb) = moments(before);
    let (na, ma, va) = moments(after);
    let se2 = va + vb;
    if se2.is_nan() || se2 <= 0.0 || se2.is_infinite() {
        return None;
    }
    let dof = se2 * se2 / (va * va / (na - 1.0) + vb * vb / (nb - 1.0));
    let half = student_t_quantile_975(dof) * se2.sqrt();
    let diff = ma - mb;
    Some((diff - half, diff + half))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifts_need_three_points_a_side_and_follow_welch() {
        assert_eq!(before_after_lift(&[1.0, 2.0], &[3.0, 4.0, 5.0]), None);
        assert_eq!(before_after_lift(&[1.0, 1.0, 1.0], &[2.0, 2.0, 2.0]), None, "no spread, no interval");
        // Equal spreads and sizes: ν = 2 (n − 1) = 4, t = 2.776; s² = 1 on each side, so the standard
        // error is √(1/3 + 1/3).
        let (low, high) = before_after_lift(&[1.0, 2.0, 3.0], &[4.0, 5.0, 6.0]).unwrap();
        let half = 2.776_445 * (2.0_f64 / 3.0).sqrt();
        assert!((low - (3.0 - half)).abs() < 1e-4 && (high - (3.0 + half)).abs() < 1e-4, "{low} {high}");
        assert!(low > 0.0);
        // A shift smaller than the noise includes zero.
        let (low, high) = before_after_lift(&[1.0, 3.0, 2.0, 2.5], &[2.0, 3.5, 1.5]).unwrap();
        assert!(low < 0.0 && high > 0.0);
    }

    fn metric(kind: MetricKind, key: &str, name: &str) -> MetricDefinition {
        MetricDefinition {
            id: 1,
            org_id: OrgId(1),
            key: key.into(),
            version: 1,
            name: name.into(),
            kind,
            loop_key: Some("notes".into()),
            variant: None,
            unit: None,
            granularity: Granularity::Day,
            window_days: None,
            freshness_hours: 48,
            created_at: Utc::now(),
        }
    }

    #[test]
    fn retention_and_lifetime_value_metrics_are_growth_outcomes() {
        assert_eq!(lift_metric(&metric(MetricKind::Retention, "r", "Week-1")), Some(LiftMetric::Retention));
        assert_eq!(lift_metric(&metric(MetricKind::Custom, "notes-ltv", "Value")), Some(LiftMetric::Ltv));
        assert_eq!(lift_metric(&metric(MetricKind::Ltv, "value", "Value per practice")), Some(LiftMetric::Ltv));
        assert_eq!(lift_metric(&metric(MetricKind::Custom, "v", "Customer lifetime value")), Some(LiftMetric::Ltv));
        assert_eq!(lift_metric(&metric(MetricKind::Custom, "d90", "90-day retention")), Some(LiftMetric::Retention));
        assert_eq!(lift_metric(&metric(MetricKind::AcceptanceRate, "notes-acceptance", "Acceptance")), None);
        // Whole words only: "voltage" holds "ltv" in no word.
        assert_eq!(lift_metric(&metric(MetricKind::Custom, "voltage", "Voltage")), None);
    }

    /// Day `d` of the test series, counted from 1 January 2027 (day 0).
    fn day(d: i64) -> NaiveDate {
        NaiveDate::from_ymd_opt(2027, 1, 1).unwrap() + Duration::days(d)
    }

    /// A point of day `d` with `value` and nothing else.
    fn point(d: i64, value: f64) -> MetricPoint {
        MetricPoint {
            bucket: day(d),
            value,
            n: None,
            ci_low: None,
            ci_high: None,
            observed_at: Utc::now(),
            computed_at: Utc::now(),
        }
    }

    #[test]
    fn points_straddling_the_change_are_left_out() {
        let mut m = metric(MetricKind::Retention, "r", "Retention");
        m.window_days = Some(3);
        // Change on day 10. Windows of 3 days: bucket 9 covers 7–9 (before), 12 covers 10–12 (holds
        // day 10: left out), 13 covers 11–13 (after).
        let points: Vec<MetricPoint> = [(5, 1.0), (7, 1.2), (9, 0.9), (12, 50.0), (13, 2.0), (14, 2.1), (15, 1.9)]
            .map(|(d, v)| point(d, v))
            .into();
        let (low, high) = lift_around(&m, &points, day(10)).unwrap();
        assert!(low > 0.0 && high < 2.0, "{low} {high}: the straddling 50 must not count");
    }

    #[test]
    fn a_trend_every_unit_shares_cancels_in_the_difference_in_differences() {
        let m = metric(MetricKind::Ltv, "care-ltv", "Care LTV");
        // Every unit's value falls by 10 a day; the unit's rises by 5 from day 10 on, with a little noise.
        let noise = |d: i64| 0.3 * ((d * 7) % 5) as f64;
        let unit: Vec<MetricPoint> =
            (0..20).map(|d| point(d, 1000.0 - 10.0 * d as f64 + if d >= 10 { 5.0 } else { 0.0 } + noise(d))).collect();
        let other: Vec<MetricPoint> = (0..20).map(|d| point(d, 900.0 - 10.0 * d as f64)).collect();
        let (plain_low, plain_high) = lift_around(&m, &unit, day(9)).unwrap();
        assert!(plain_high < 0.0, "before/after alone sees the shared fall: {plain_low} {plain_high}");
        let (low, high) = lift_against(&m, &unit, &[other], day(9)).unwrap();
        assert!(low > 3.0 && high < 7.0, "{low} {high}");
        assert_eq!(lift_against(&m, &unit, &[], day(9)), None, "nothing to compare with");
    }

    #[test]
    fn only_the_nearest_points_on_each_side_count() {
        let m = metric(MetricKind::Retention, "r", "Retention");
        // Thirty noisy early points far from the change, then eight steady ones before it and eight
        // after, one higher. The early ones are ignored, and given out of order they are sorted first.
        let mut points: Vec<MetricPoint> = (0..30).map(|d| point(d, if d % 2 == 0 { -40.0 } else { 60.0 })).collect();
        points.extend((30..38).map(|d| point(d, 1.0 + 0.01 * (d % 3) as f64)));
        points.extend((39..47).map(|d| point(d, 2.0 + 0.01 * (d % 3) as f64)));
        points.reverse();
        let (low, high) = lift_around(&m, &points, day(38)).unwrap();
        assert!(low > 0.9 && high < 1.1, "{low} {high}");
    }
}
