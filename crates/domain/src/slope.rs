//! Slope allocation: the share of planned capacity spent on bets that challenge current thinking.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::entities::{GoalStatus, Investment, SquadId};
use crate::newtypes::DateRange;
use crate::squad::{Squad, SquadGoal};

/// Slope capacity over all planned capacity, for one squad, one unit or the whole season.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Share {
    pub slope: f64,
    pub total: f64,
    /// `None` when nothing is planned: there is no share to compare with the target.
    pub share: Option<f64>,
    pub below_target: bool,
}

impl Share {
    fn new(slope: f64, total: f64, target: f64) -> Self {
        let share = (total > 0.0).then(|| slope / total);
        // A tolerance keeps 20 % of 10 person-weeks, computed as 2/10, from being flagged against 0.2.
        let below_target = share.is_some_and(|s| s + 1e-9 < target);
        Share { slope, total, share, below_target }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SquadShare {
    pub squad_id: SquadId,
    pub name: String,
    pub unit: String,
    /// The squad's capacity per cycle, to set the planned load against.
    pub capacity: f64,
    pub share: Share,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UnitShare {
    pub unit: String,
    pub share: Share,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SlopeReport {
    pub period: DateRange,
    pub target: f64,
    pub overall: Share,
    pub squads: Vec<SquadShare>,
    pub units: Vec<UnitShare>,
}

/// Computes slope allocation over the goals that run during `period`.
///
/// A goal that only partly overlaps the period counts in proportion to the days it shares with it, so a
/// quarter's share is not inflated by a goal that mostly ran in the quarter before. Killed goals are left
/// out: once a bet is killed its capacity goes back to the squad, and the share should show that.
pub fn slope_allocation(goals: &[SquadGoal], squads: &[Squad], period: DateRange, target: f64) -> SlopeReport {
    let mut per_squad: BTreeMap<SquadId, (f64, f64)> = BTreeMap::new();
    for goal in goals.iter().filter(|g| g.status != GoalStatus::Killed) {
        let dates = goal.dates();
        let shared = dates.overlap_days(&period);
        if shared == 0 {
            continue;
        }
        let counted = goal.planned_capacity * shared as f64 / (dates.days() + 1) as f64;
        let entry = per_squad.entry(goal.squad_id).or_default();
        entry.1 += counted;
        if goal.investment == Investment::Slope {
            entry.0 += counted;
        }
    }

    let mut units: BTreeMap<String, (f64, f64)> = BTreeMap::new();
    let (mut slope, mut total) = (0.0, 0.0);
    let squads: Vec<SquadShare> = squads
        .iter()
        .map(|squad| {
            let (s, t) = per_squad.get(&squad.id).copied().unwrap_or_default();
            let unit = units.entry(squad.unit.clone()).or_default();
            unit.0 += s;
            unit.1 += t;
            slope += s;
            total += t;
            SquadShare {
                squad_id: squad.id,
                name: squad.name.clone(),
                unit: squad.unit.clone(),
                capacity: squad.capacity,
                share: Share::new(s, t, target),
            }
        })
        .collect();
    SlopeReport {
        period,
        target,
        overall: Share::new(slope, total, target),
        squads,
        units: units.into_iter().map(|(unit, (s, t))| UnitShare { unit, share: Share::new(s, t, target) }).collect(),
    }
}

/// The most person-weeks a set of goals asks for at once: the largest sum of planned capacity over goals
/// that run on the same day. A squad's capacity is stated per cycle, and goals that run at the same time
/// share one cycle, so this is the figure to set against it. Killed goals have given their capacity back.
/// A goal's end date is its hand-over day (a four-week goal runs Monday to Monday), so a goal that starts
/// on the day another ends follows it rather than overlapping it.
pub fn peak_load(goals: &[SquadGoal]) -> f64 {
    let live: Vec<&SquadGoal> = goals.iter().filter(|g| g.status != GoalStatus::Killed).collect();
    // The load only rises when a goal starts, so checking every start day finds the peak.
    live.iter()
        .map(|g| {
            live.iter()
                .filter(|o| o.starts_on <= g.starts_on && g.starts_on < o.ends_on)
                .map(|o| o.planned_capacity)
                .sum::<f64>()
        })
        .fold(0.0, f64::max)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entities::{KeyResultId, OrgId, SquadGoalId, Version};
    use crate::measure::Measure;
    use chrono::Utc;

    fn squad(id: i64, unit: &str) -> Squad {
        Squad {
            id: SquadId(id),
            key: format!("k{}", id),
            org_id: OrgId(1),
            name: format!("S{id}"),
            unit: unit.into(),
            capacity: 10.0,
            version: Version(1),
            created_at: Utc::now(),
            updated_at: Utc::now(),
        }
    }

    fn goal(
        squad: i64,
        investment: Investment,
        capacity: f64,
        start: &str,
        end: &str,
        status: GoalStatus,
    ) -> SquadGoal {
        SquadGoal {
            id: SquadGoalId(1),
            key: format!("k{}", 1),
            org_id: OrgId(1),
            squad_id: SquadId(squad),
            key_result_id: KeyResultId(1),
            title: "g".into(),
            starts_on: start.parse().unwrap(),
            ends_on: end.parse().unwrap(),
            investment,
            challenges: None,
            kill_criteria: None,
            planned_capacity: capacity,
            status,
            measure: Measure::Milestone,
            current: None,
            metric: None,
            confidence: None,
            version: Version(1),
            created_at: Utc::now(),
            updated_at: Utc::now(),
        }
    }

    fn season() -> DateRange {
        DateRange::new("2027-01-01".parse().unwrap(), "2027-06-30".parse().unwrap()).unwrap()
    }

    #[test]
    fn shares_roll_up_by_squad_unit_and_season() {
        use GoalStatus::*;
        use Investment::*;
        let squads = [squad(1, "Clinical"), squad(2, "Clinical"), squad(3, "Revenue")];
        let goals = [
            goal(1, Snapshot, 8.0, "2027-01-04", "2027-02-01", Active),
            goal(1, Slope, 2.0, "2027-01-04", "2027-02-01", Active),
            goal(2, Snapshot, 10.0, "2027-02-01", "2027-03-01", Planned),
            goal(3, Slope, 5.0, "2027-03-01", "2027-04-05", Planned),
            goal(3, Snapshot, 5.0, "2027-03-01", "2027-04-05", Done),
            goal(2, Slope, 50.0, "2027-01-04", "2027-02-01", Killed),
        ];
        let report = slope_allocation(&goals, &squads, season(), 0.2);
        assert_eq!(report.squads[0].share.share, Some(0.2));
        assert!(!report.squads[0].share.below_target, "exactly on target is not below it");
        assert_eq!(report.squads[1].share.share, Some(0.0));
        assert!(report.squads[1].share.below_target);
        assert_eq!(report.squads[2].share.share, Some(0.5));
        assert_eq!(report.units[0].unit, "Clinical");
        assert_eq!(report.units[0].share.share, Some(0.1));
        assert_eq!(report.overall.slope, 7.0);
        assert_eq!(report.overall.total, 30.0);
    }

    #[test]
    fn partial_overlap_is_pro_rated() {
        let squads = [squad(1, "U")];
        // 29 calendar days, 10 of them in the period.
        let goals = [goal(1, Investment::Slope, 29.0, "2027-06-21", "2027-07-19", GoalStatus::Active)];
        let report = slope_allocation(&goals, &squads, season(), 0.2);
        assert!((report.overall.total - 10.0).abs() < 1e-9, "{}", report.overall.total);
    }

    #[test]
    fn peak_load_counts_goals_that_run_at_the_same_time() {
        use GoalStatus::*;
        use Investment::*;
        let goals = [
            goal(1, Snapshot, 8.0, "2027-01-04", "2027-02-01", Done),
            goal(1, Slope, 2.0, "2027-01-18", "2027-02-15", Active),
            goal(1, Snapshot, 6.0, "2027-02-08", "2027-03-08", Planned),
            goal(1, Snapshot, 50.0, "2027-01-04", "2027-02-01", Killed),
            // Back to back with the first goal: it starts the day the first hands over.
            goal(1, Snapshot, 1.0, "2027-02-01", "2027-03-01", Planned),
        ];
        // The first two overlap (10); later the second, third and fifth (9); the killed goal does not count.
        assert_eq!(peak_load(&goals), 10.0);
        assert_eq!(peak_load(&[]), 0.0);
    }

    #[test]
    fn nothing_planned_has_no_share_and_no_flag() {
        let report = slope_allocation(&[], &[squad(1, "U")], season(), 0.2);
        assert_eq!(report.overall.share, None);
        assert!(!report.overall.below_target);
    }
}
