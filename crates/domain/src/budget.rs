//! The annotation budget of a key result: how many more expert annotations its loop metric needs to
//! reach the target, read off a learning curve fitted to the loop's own history.
//!
//! Each promoted iteration of the loop gives a point: the annotations its training data used (every
//! dataset holds all annotations up to its build, so the count is cumulative) against the metric the
//! promoted model then achieved. Learning curves of supervised models are close to power laws in the
//! amount of data, so for a rate bounded above (acceptance, an eval score in [0, 1]) the gap to the
//! ceiling is fitted as gap = a · n^(−b), that is ln(ceiling − y) = ln a − b ln n, by least squares; for
//! a metric without a ceiling, y = α + β ln n. Solving the line for the target gives the annotations
//! needed. Its 80 % interval comes from a seeded simulation: the line's coefficients are drawn from
//! their joint Student-t distribution and the target solved again for each draw. A draw whose curve
//! never reaches the target counts as "more than any number", which is how an upper bound becomes
//! unbounded.

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::forecast::student_t_quantile_975;
use crate::outlook::Rng;

/// Points a fit needs: with two, a line passes through both and says nothing of its own error.
pub const MIN_CURVE_POINTS: usize = 3;
const DRAWS: usize = 4_000;
const SEED: u64 = 600_000;

/// How [`annotation_budget`] estimates, in words.
pub const BUDGET_METHOD: &str = "One point per promoted iteration: the annotations its training data used against the metric the promoted model achieved (its served suggestions' acceptance, or its eval score). For a rate bounded by 1 the gap to 1 is fitted as a power law of the annotations (ln(1 − y) = ln a − b ln n, least squares); otherwise y = α + β ln n. The annotations needed solve the curve for the target; the 80 % interval solves it again for 4,000 draws of the curve's coefficients from their Student-t distribution (seeded). The weekly rate spreads the further annotations over the weeks left to the end date.";

/// The target a measure aims at and whether it wants the metric to rise: a budget is estimated for
/// measures with one number to reach or hold.
pub fn budget_target(measure: &crate::measure::Measure) -> Option<(f64, bool)> {
    use crate::measure::Measure;
    match measure {
        Measure::IncreaseTo { target, .. } => Some((*target, true)),
        Measure::DecreaseTo { target, .. } => Some((*target, false)),
        Measure::KeepAbove { threshold, .. } => Some((*threshold, true)),
        Measure::KeepBelow { threshold, .. } => Some((*threshold, false)),
        Measure::WithinRange { .. } | Measure::Milestone => None,
    }
}

/// One promoted iteration as the curve sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CurvePoint {
    pub model: String,
    /// Annotations the model's training data used.
    pub annotations: i64,
    /// The metric the model achieved.
    pub value: f64,
    pub promoted_at: DateTime<Utc>,
}

/// The learning curve's points from a loop's iterations (any order), its experiments and the characters
/// accepted and suggested per variant: one point per promoted iteration, the annotations its dataset
/// used against the acceptance of the suggestions its model served. A model served under its own name
/// as champion, as the treatment of the experiment that tested it, and as the control of the experiments
/// of later iterations until the next promotion. A model whose variants served nothing has no point.
pub fn curve_points(
    iterations: &[crate::stack::LoopIteration],
    experiments: &[crate::experiment::Experiment],
    by_variant: &std::collections::HashMap<String, (f64, f64)>,
) -> Vec<CurvePoint> {
    let mut iterations: Vec<&crate::stack::LoopIteration> = iterations.iter().collect();
    iterations.sort_by_key(|i| (i.decided_at, i.promotion_id));
    let arms = |key: &Option<String>| key.as_deref().and_then(|k| experiments.iter().find(|e| e.key == k));
    let mut points = Vec::new();
    for (n, it) in iterations.iter().enumerate().filter(|(_, i)| i.outcome == "promoted") {
        let mut variants: Vec<&str> = vec![it.model.as_str()];
        if let Some(e) = arms(&it.experiment) {
            variants.push(&e.treatment);
        }
        for later in &iterations[n + 1..] {
            if let Some(e) = arms(&later.experiment) {
                variants.push(&e.control);
            }
            if later.outcome == "promoted" {
                break;
            }
        }
        variants.sort_unstable();
        variants.dedup();
        let (accepted, suggested) =
            variants.iter().filter_map(|v| by_variant.get(*v)).fold((0.0, 0.0), |(a, s), (va, vs)| (a + va, s + vs));
        if suggested > 0.0 {
            points.push(CurvePoint {
                model: it.model.clone(),
                annotations: it.annotations_used.unwrap_or(0),
                value: accepted / suggested,
                promoted_at: it.decided_at,
            });
        }
    }
    points
}

/// The fitted learning curve.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CurveFit {
    /// `power-gap` (ln(ceiling − y) on ln n) or `log-linear` (y on ln n).
    pub form: String,
    pub ceiling: Option<f64>,
    pub intercept: f64,
    pub slope: f64,
    /// The slope's 95 % interval.
    pub slope_low: f64,
    pub slope_high: f64,
    pub points: usize,
    var_intercept: f64,
    var_slope: f64,
    covariance: f64,
}

impl CurveFit {
    /// The curve's value after `n` annotations.
    pub fn value_at(&self, n: f64) -> f64 {
        line_value(self.ceiling, self.intercept, self.slope, n)
    }

    fn dof(&self) -> f64 {
        (self.points as f64 - 2.0).max(1.0)
    }
}

fn line_value(ceiling: Option<f64>, intercept: f64, slope: f64, n: f64) -> f64 {
    let x = n.max(1.0).ln();
    match ceiling {
        Some(c) => c - (intercept + slope * x).exp(),
        None => intercept + slope * x,
    }
}

/// The annotations at which a curve reaches `target` (`None`: it never does, going the way it goes).
fn solve(ceiling: Option<f64>, intercept: f64, slope: f64, target: f64, increase: bool) -> Option<f64> {
    let x = match ceiling {
        Some(c) => {
            // The gap shrinks only with a negative slope; the target must lie below the ceiling.
            if !(increase && target < c && slope < 0.0) {
                return None;
            }
            ((c - target).ln() - intercept) / slope
        }
        None => {
            let right_way = if increase { slope > 0.0 } else { slope < 0.0 };
            if !right_way {
                return None;
            }
            (target - intercept) / slope
        }
    };
    // Beyond e^40 (over 10^17) annotations is "never" for any team.
    if x > 40.0 { None } else { Some(x.exp().max(1.0)) }
}

/// Further annotations needed, with an 80 % interval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BudgetEstimate {
    /// Annotations in all at which the curve reaches the target.
    pub total: f64,
    /// Beyond those used so far.
    pub more: f64,
    pub more_low: f64,
    /// `None`: in more than a tenth of the draws the curve never reaches the target.
    pub more_high: Option<f64>,
    /// Annotations per week needed to get there by the end date, when it is ahead.
    pub per_week: Option<f64>,
    pub per_week_low: Option<f64>,
    pub per_week_high: Option<f64>,
}

impl BudgetEstimate {
    /// The weekly annotation rates (estimate, low, high) that reach the target by `by`: the further
    /// annotations spread over the weeks from `today`. `None` when `by` is not ahead, and the high rate
    /// is `None` when the budget's high end is unbounded.
    pub fn rates_by(&self, today: NaiveDate, by: NaiveDate) -> (Option<f64>, Option<f64>, Option<f64>) {
        if by <= today {
            return (None, None, None);
        }
        let weeks = (by - today).num_days() as f64 / 7.0;
        (Some(self.more / weeks), Some(self.more_low / weeks), self.more_high.map(|h| h / weeks))
    }
}

/// The annotation rate one squad goal laddering up to the key result needs: the budget's further
/// annotations spread over the weeks to the goal's own end, since a squad plans its annotation work
/// within its 4–6-week goal rather than the key result's quarter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct GoalRate {
    pub goal_id: i64,
    pub title: String,
    pub squad: String,
    pub ends_on: NaiveDate,
    pub per_week: Option<f64>,
    pub per_week_low: Option<f64>,
    pub per_week_high: Option<f64>,
}

/// The rates the open goals (planned or active, ending after `today`) need, soonest end first; none when
/// the budget has no estimate or the target is reached. `goals` pairs each goal with its squad's name.
pub fn goal_rates(budget: &AnnotationBudget, today: NaiveDate, goals: &[(&crate::SquadGoal, &str)]) -> Vec<GoalRate> {
    let Some(estimate) = budget.estimate.as_ref().filter(|_| !budget.reached) else { return vec![] };
    let mut out: Vec<GoalRate> = goals
        .iter()
        .filter(|(g, _)| {
            matches!(g.status, crate::GoalStatus::Planned | crate::GoalStatus::Active) && g.ends_on > today
        })
        .map(|(g, squad)| {
            let (per_week, per_week_low, per_week_high) = estimate.rates_by(today, g.ends_on);
            GoalRate {
                goal_id: g.id.0,
                title: g.title.clone(),
                squad: (*squad).to_owned(),
                ends_on: g.ends_on,
                per_week,
                per_week_low,
                per_week_high,
            }
        })
        .collect();
    out.sort_by_key(|r| (r.ends_on, r.goal_id));
    out
}

/// A key result's (or loop metric's) annotation budget.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AnnotationBudget {
    pub metric: String,
    pub target: f64,
    pub increase: bool,
    pub points: Vec<CurvePoint>,
    pub fit: Option<CurveFit>,
    /// Annotations given in the loop's queues so far.
    pub annotations_so_far: i64,
    /// The latest promoted model already meets the target.
    pub reached: bool,
    pub estimate: Option<BudgetEstimate>,
    /// The end date the weekly rate aims at.
    pub by: Option<NaiveDate>,
    /// Why there is no estimate, in a sentence.
    pub why_not: Option<String>,
    pub method: String,
    /// The rate each open squad goal laddering up to the key result needs by its own end (key result
    /// budgets only; see [`goal_rates`]).
    #[serde(default)]
    pub goals: Vec<GoalRate>,
}

/// What the budget of one metric is estimated from.
pub struct BudgetQuestion<'a> {
    pub metric: &'a str,
    pub target: f64,
    /// Whether the measure wants the metric to rise.
    pub increase: bool,
    /// The metric's upper bound, for a rate; `None` for an unbounded metric.
    pub ceiling: Option<f64>,
    pub points: Vec<CurvePoint>,
    pub annotations_so_far: i64,
    pub today: NaiveDate,
    pub by: Option<NaiveDate>,
}

fn fit(points: &[&CurvePoint], ceiling: Option<f64>) -> Option<CurveFit> {
    let pairs: Vec<(f64, f64)> = points
        .iter()
        .filter_map(|p| {
            let x = (p.annotations as f64).ln();
            let z = match ceiling {
                // A reading at the ceiling has no gap to take a logarithm of; it is held a hair below.
                Some(c) => (c - p.value).max(1e-6).ln(),
                None => p.value,
            };
            (x.is_finite() && z.is_finite()).then_some((x, z))
        })
        .collect();
    let k = pairs.len() as f64;
    if pairs.len() < MIN_CURVE_POINTS {
        return None;
    }
    let mx = pairs.iter().map(|p| p.0).sum::<f64>() / k;
    let mz = pairs.iter().map(|p| p.1).sum::<f64>() / k;
    let sxx: f64 = pairs.iter().map(|p| (p.0 - mx).powi(2)).sum();
    if sxx <= 1e-12 {
        return None;
    }
    let sxz: f64 = pairs.iter().map(|p| (p.0 - mx) * (p.1 - mz)).sum();
    let slope = sxz / sxx;
    let intercept = mz - slope * mx;
    let ssr: f64 = pairs.iter().map(|p| (p.1 - intercept - slope * p.0).powi(2)).sum();
    let s2 = ssr / (k - 2.0);
    let var_slope = s2 / sxx;
    let var_intercept = s2 * (1.0 / k + mx * mx / sxx);
    let covariance = -mx * s2 / sxx;
    let half = student_t_quantile_975(k - 2.0) * var_slope.sqrt();
    Some(CurveFit {
        form: if ceiling.is_some() { "power-gap" } else { "log-linear" }.into(),
        ceiling,
        intercept,
        slope,
        slope_low: slope - half,
        slope_high: slope + half,
        points: pairs.len(),
        var_intercept,
        var_slope,
        covariance,
    })
}

/// The annotation budget: fits the curve, solves it for the target with its interval, and spreads the
/// further annotations over the weeks to `by`. Says why when it cannot.
pub fn annotation_budget(q: BudgetQuestion<'_>) -> AnnotationBudget {
    let mut out = AnnotationBudget {
        metric: q.metric.into(),
        target: q.target,
        increase: q.increase,
        points: q.points.clone(),
        fit: None,
        annotations_so_far: q.annotations_so_far,
        reached: false,
        estimate: None,
        by: q.by,
        why_not: None,
        method: BUDGET_METHOD.into(),
        goals: vec![],
    };
    let latest = q.points.iter().max_by_key(|p| p.promoted_at);
    if let Some(p) = latest
        && (if q.increase { p.value >= q.target } else { p.value <= q.target })
    {
        out.reached = true;
        out.estimate = Some(BudgetEstimate {
            total: p.annotations as f64,
            more: 0.0,
            more_low: 0.0,
            more_high: Some(0.0),
            per_week: None,
            per_week_low: None,
            per_week_high: None,
        });
        return out;
    }
    let usable: Vec<&CurvePoint> = q.points.iter().filter(|p| p.annotations > 0 && p.value.is_finite()).collect();
    let distinct = {
        let mut n: Vec<i64> = usable.iter().map(|p| p.annotations).collect();
        n.sort();
        n.dedup();
        n.len()
    };
    if usable.len() < MIN_CURVE_POINTS || distinct < 2 {
        out.why_not = Some(format!(
            "Too little history to estimate: a learning curve needs at least {MIN_CURVE_POINTS} promoted iterations trained on \
             different numbers of annotations, and this loop has {}.",
            usable.len()
        ));
        return out;
    }
    let ceiling = q.ceiling.filter(|_| q.increase);
    let Some(curve) = fit(&usable, ceiling) else {
        out.why_not = Some("The points do not determine a curve (the annotation counts do not vary).".into());
        return out;
    };
    out.fit = Some(curve.clone());
    if curve.slope_low <= 0.0 && curve.slope_high >= 0.0 {
        out.why_not = Some(format!(
            "The metric does not yet move with annotations beyond chance: the learning curve's slope ({:.3}) has a 95 % \
             interval from {:.3} to {:.3}, which holds zero.",
            curve.slope, curve.slope_low, curve.slope_high
        ));
        return out;
    }
    let Some(total) = solve(ceiling, curve.intercept, curve.slope, q.target, q.increase) else {
        out.why_not = Some(if ceiling.is_some_and(|c| q.target >= c) {
            "The target is at or above the metric's ceiling, which no amount of annotation reaches.".to_owned()
        } else {
            "The fitted curve moves away from the target: more annotations, as trained so far, do not bring the metric \
             closer."
                .to_owned()
        });
        return out;
    };
    // Draws of (intercept, slope) from their joint t distribution: a Cholesky factor of the covariance
    // times two independent normals, scaled by √(ν / χ²_ν).
    let mut rng = Rng::new(SEED);
    let l11 = curve.var_intercept.max(0.0).sqrt();
    let l21 = if l11 > 0.0 { curve.covariance / l11 } else { 0.0 };
    let l22 = (curve.var_slope - l21 * l21).max(0.0).sqrt();
    let dof = curve.dof();
    let mut solutions: Vec<f64> = (0..DRAWS)
        .map(|_| {
            let (z1, z2) = (rng.normal(), rng.normal());
            // One chi-square draw scales both deviations, as the shared error variance does.
            let s = (dof / (2.0 * rng.gamma(0.5 * dof)).max(1e-12)).sqrt();
            let a = curve.intercept + s * l11 * z1;
            let b = curve.slope + s * (l21 * z1 + l22 * z2);
            solve(ceiling, a, b, q.target, q.increase).unwrap_or(f64::INFINITY)
        })
        .collect();
    solutions.sort_by(f64::total_cmp);
    let at = |p: f64| solutions[((p * (DRAWS - 1) as f64).round() as usize).min(DRAWS - 1)];
    let so_far = q.annotations_so_far as f64;
    let more = |n: f64| (n - so_far).max(0.0);
    let (low, high) = (at(0.1), at(0.9));
    let mut estimate = BudgetEstimate {
        total,
        more: more(total),
        more_low: more(low),
        more_high: high.is_finite().then(|| more(high)),
        per_week: None,
        per_week_low: None,
        per_week_high: None,
    };
    if let Some(by) = q.by {
        (estimate.per_week, estimate.per_week_low, estimate.per_week_high) = estimate.rates_by(q.today, by);
    }
    out.estimate = Some(estimate);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(n: i64, value: f64, day: u32) -> CurvePoint {
        CurvePoint {
            model: format!("m{n}"),
            annotations: n,
            value,
            promoted_at: format!("2026-11-{day:02}T12:00:00Z").parse().unwrap(),
        }
    }

    fn question(points: Vec<CurvePoint>, target: f64) -> BudgetQuestion<'static> {
        BudgetQuestion {
            metric: "notes.acceptance",
            target,
            increase: true,
            ceiling: Some(1.0),
            points,
            annotations_so_far: 4_000,
            today: "2026-12-01".parse().unwrap(),
            by: Some("2027-03-01".parse().unwrap()),
        }
    }

    /// Acceptance on the curve 1 − 2·n^(−0.25), with a little noise.
    fn on_curve(n: i64, noise: f64) -> f64 {
        1.0 - 2.0 * (n as f64).powf(-0.25) + noise
    }

    #[test]
    fn a_power_law_history_gives_the_annotations_its_curve_needs() {
        let points = vec![
            point(500, on_curve(500, 0.004), 1),
            point(1_000, on_curve(1_000, -0.003), 5),
            point(2_000, on_curve(2_000, 0.002), 9),
            point(4_000, on_curve(4_000, -0.002), 13),
        ];
        // The exact curve reaches 0.83 at (2 / 0.17)^4 ≈ 19,160 annotations.
        let b = annotation_budget(question(points, 0.83));
        assert_eq!(b.why_not, None);
        let fit = b.fit.as_ref().unwrap();
        assert_eq!(fit.form, "power-gap");
        assert!((fit.slope + 0.25).abs() < 0.02, "{fit:?}");
        let e = b.estimate.clone().unwrap();
        assert!((e.total - 19_160.0).abs() / 19_160.0 < 0.25, "{e:?}");
        assert!((e.more - (e.total - 4_000.0)).abs() < 1e-9);
        let high = e.more_high.expect("a tight history bounds the budget");
        assert!(e.more_low < e.more && e.more < high, "{e:?}");
        // Thirteen weeks to the end date.
        let weeks = 90.0 / 7.0;
        assert!((e.per_week.unwrap() - e.more / weeks).abs() < 1e-6);
        // The same evidence gives the same budget.
        let again = annotation_budget(question(b.points.clone(), 0.83));
        assert_eq!(again.estimate.unwrap().more_low, e.more_low);

        // Each open goal laddering up to it needs the rest by its own end: a goal ending in four weeks
        // needs 90/28 times the key result's weekly rate; ended, done and killed goals get none.
        let goal = |id: i64, ends_on: &str, status: crate::GoalStatus| crate::SquadGoal {
            ends_on: ends_on.parse().unwrap(),
            ..crate::signals::tests::goal(id, crate::Investment::Snapshot, status)
        };
        let goals = [
            goal(1, "2026-12-29", crate::GoalStatus::Active),
            goal(2, "2026-12-15", crate::GoalStatus::Planned),
            goal(3, "2026-11-30", crate::GoalStatus::Active),
            goal(4, "2027-01-10", crate::GoalStatus::Done),
            goal(5, "2027-01-10", crate::GoalStatus::Killed),
        ];
        let paired: Vec<(&crate::SquadGoal, &str)> = goals.iter().map(|g| (g, "Drafts")).collect();
        let today = "2026-12-01".parse().unwrap();
        let rates = goal_rates(&b, today, &paired);
        assert_eq!(rates.iter().map(|r| r.goal_id).collect::<Vec<_>>(), vec![2, 1], "open goals, soonest end first");
        let four_weeks = &rates[1];
        assert_eq!(four_weeks.squad, "Drafts");
        assert!((four_weeks.per_week.unwrap() - e.more / 4.0).abs() < 1e-6, "{four_weeks:?}");
        assert!((four_weeks.per_week.unwrap() / e.per_week.unwrap() - 90.0 / 28.0).abs() < 1e-9);
        assert!((four_weeks.per_week_high.unwrap() - high / 4.0).abs() < 1e-6);
        let reached = AnnotationBudget { reached: true, ..b.clone() };
        assert!(goal_rates(&reached, today, &paired).is_empty(), "nothing is needed once the target is met");
    }

    #[test]
    fn too_little_or_flat_history_says_so() {
        let two = vec![point(500, 0.4, 1), point(1_000, 0.5, 5)];
        let b = annotation_budget(question(two, 0.83));
        assert!(b.why_not.as_ref().unwrap().starts_with("Too little history"), "{b:?}");
        assert_eq!(b.estimate, None);
        let same_n = vec![point(500, 0.4, 1), point(500, 0.5, 5), point(500, 0.45, 9)];
        assert!(annotation_budget(question(same_n, 0.83)).why_not.unwrap().starts_with("Too little history"));
        let flat = vec![point(500, 0.50, 1), point(1_000, 0.46, 5), point(2_000, 0.52, 9), point(4_000, 0.47, 13)];
        let b = annotation_budget(question(flat, 0.83));
        assert!(b.why_not.as_ref().unwrap().contains("holds zero"), "{b:?}");
        assert!(b.fit.is_some(), "the flat fit is still shown");
        let unreachable = vec![point(500, 0.4, 1), point(1_000, 0.5, 5), point(2_000, 0.6, 9)];
        assert!(annotation_budget(question(unreachable, 1.0)).why_not.unwrap().contains("ceiling"));
    }

    fn iteration(
        id: i64,
        model: &str,
        outcome: &str,
        day: u32,
        experiment: Option<&str>,
        used: Option<i64>,
    ) -> crate::stack::LoopIteration {
        let at: DateTime<Utc> = format!("2026-11-{day:02}T12:00:00Z").parse().unwrap();
        crate::stack::LoopIteration {
            promotion_id: id,
            model_id: id,
            model: model.into(),
            dataset_id: id,
            dataset: "d".into(),
            job_id: None,
            first_event_at: None,
            dataset_created_at: at,
            job_started_at: None,
            job_finished_at: None,
            evaluated_at: None,
            reward: None,
            experiment: experiment.map(str::to_owned),
            decided_at: at,
            outcome: outcome.into(),
            reason: String::new(),
            reward_change: None,
            reward_interval: None,
            online_lift: None,
            cycle_hours: None,
            annotations_used: used,
        }
    }

    fn experiment(key: &str, control: &str, treatment: &str) -> crate::experiment::Experiment {
        let day: NaiveDate = "2026-11-01".parse().unwrap();
        crate::experiment::Experiment {
            id: 1,
            org_id: crate::OrgId(1),
            key: key.into(),
            name: key.into(),
            loop_key: "notes".into(),
            control: control.into(),
            treatment: treatment.into(),
            starts_on: day,
            ends_on: day,
            expected_share: 0.5,
            created_at: "2026-11-01T00:00:00Z".parse().unwrap(),
            control_model_id: None,
            treatment_model_id: None,
            stopped_at: None,
        }
    }

    #[test]
    fn each_promoted_model_is_read_off_the_variants_that_served_it() {
        // m1 was promoted without an experiment; x2 tested m2 against m1 and m2 won; x3 tested m3
        // against m2 and m3 lost; m4 won its experiment x4 against m2.
        let iterations = [
            iteration(4, "m4", "promoted", 9, Some("x4"), Some(300)),
            iteration(1, "m1", "promoted", 1, None, Some(100)),
            iteration(3, "m3", "refused", 7, Some("x3"), Some(250)),
            iteration(2, "m2", "promoted", 5, Some("x2"), Some(200)),
        ];
        let experiments = [
            experiment("x2", "x2-champion", "x2-challenger"),
            experiment("x3", "x3-champion", "x3-challenger"),
            experiment("x4", "x4-champion", "x4-challenger"),
        ];
        let served = |a: f64, s: f64| (a, s);
        let by_variant: std::collections::HashMap<String, (f64, f64)> = [
            ("m1", served(30.0, 100.0)),
            ("x2-champion", served(10.0, 100.0)),
            ("x2-challenger", served(50.0, 100.0)),
            ("m2", served(100.0, 200.0)),
            ("x3-champion", served(40.0, 100.0)),
            ("x3-challenger", served(90.0, 100.0)),
            ("x4-champion", served(20.0, 100.0)),
            ("x4-challenger", served(70.0, 100.0)),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        let points = curve_points(&iterations, &experiments, &by_variant);
        let got: Vec<(&str, i64, f64)> = points.iter().map(|p| (p.model.as_str(), p.annotations, p.value)).collect();
        // m1: its own name and x2's control: 40 of 200. m2: its name, x2's treatment, and the controls of
        // x3 and x4, until m4's promotion: 100 + 50 + 40 + 20 of 500. m4: x4's treatment: 70 of 100.
        // The refused m3 has no point, and its treatment arm counts for no one.
        assert_eq!(got, [("m1", 100, 0.2), ("m2", 200, 0.42), ("m4", 300, 0.7)]);
        assert!(curve_points(&iterations, &experiments, &Default::default()).is_empty(), "nothing served, no point");
    }

    #[test]
    fn a_target_already_held_needs_nothing_more() {
        let points = vec![point(500, 0.6, 1), point(1_000, 0.7, 5), point(2_000, 0.85, 9)];
        let b = annotation_budget(question(points, 0.83));
        assert!(b.reached);
        assert_eq!(b.estimate.unwrap().more, 0.0);
    }

    #[test]
    fn an_unbounded_metric_uses_a_log_linear_curve() {
        let points: Vec<CurvePoint> = [(100, 10.0), (1_000, 14.1), (10_000, 17.9)]
            .iter()
            .enumerate()
            .map(|(i, (n, v))| point(*n, *v, 1 + i as u32))
            .collect();
        let q = BudgetQuestion { ceiling: None, target: 22.0, by: None, ..question(points, 22.0) };
        let b = annotation_budget(q);
        let fit = b.fit.unwrap();
        assert_eq!(fit.form, "log-linear");
        // y rises about 4 per decade: 22 is reached near 10^5.
        let e = b.estimate.unwrap();
        assert!(e.total > 50_000.0 && e.total < 200_000.0, "{e:?}");
        assert_eq!(e.per_week, None, "no end date, no rate");
    }
}
