//! Squads and their 4–6 week goals, each laddering up to one key result.

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::entities::{GoalStatus, Investment, KeyResultId, OrgId, SquadGoalId, SquadId, Version};
use crate::errors::FieldErrors;
use crate::measure::{Measure, measure_fields};
use crate::metric::{Key, MetricFeed, parse_metric_link};
use crate::newtypes::{Checker, DateRange, PersonWeeks, Prose, Title};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Squad {
    pub id: SquadId,
    /// The stable key that names the entity in plan files and the API; unique per organisation and kind.
    /// Revisions written before keys existed have none, hence the default.
    #[serde(default)]
    pub key: String,
    pub org_id: OrgId,
    pub name: String,
    /// The organisation unit the squad belongs to; free text until units are modelled.
    pub unit: String,
    /// Person-weeks the squad can spend in one goal cycle.
    pub capacity: f64,
    pub version: Version,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Squad {
    pub fn to_input(&self) -> SquadInput {
        SquadInput { name: self.name.clone(), unit: self.unit.clone(), capacity: Some(self.capacity) }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(default)]
pub struct SquadInput {
    pub name: String,
    pub unit: String,
    pub capacity: Option<f64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SquadSpec {
    pub name: Title,
    pub unit: Title,
    pub capacity: PersonWeeks,
}

impl SquadInput {
    pub fn validate(&self) -> Result<SquadSpec, FieldErrors> {
        let mut c = Checker::new();
        let name = c.check("name", Title::parse(&self.name));
        let unit = c.check("unit", Title::parse(&self.unit));
        let capacity = match self.capacity {
            None => {
                c.fail("capacity", "is required (person-weeks per cycle)");
                None
            }
            Some(v) => c.check("capacity", PersonWeeks::parse(v)),
        };
        c.finish(|| Some(SquadSpec { name: name?, unit: unit?, capacity: capacity? }))
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SquadGoal {
    pub id: SquadGoalId,
    /// The stable key that names the entity in plan files and the API; unique per organisation and kind.
    /// Revisions written before keys existed have none, hence the default.
    #[serde(default)]
    pub key: String,
    pub org_id: OrgId,
    pub squad_id: SquadId,
    pub key_result_id: KeyResultId,
    pub title: String,
    pub starts_on: NaiveDate,
    pub ends_on: NaiveDate,
    pub investment: Investment,
    /// For a slope bet: the belief of the platform's current thinking that it challenges.
    pub challenges: Option<String>,
    /// For a slope bet: the evidence that would end it.
    pub kill_criteria: Option<String>,
    pub planned_capacity: f64,
    pub status: GoalStatus,
    pub measure: Measure,
    pub current: Option<f64>,
    /// The metric whose latest point is this goal's current value, when it is fed by one.
    pub metric: Option<MetricFeed>,
    pub confidence: Option<f64>,
    pub version: Version,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl SquadGoal {
    pub fn dates(&self) -> DateRange {
        DateRange { start: self.starts_on, end: self.ends_on }
    }

    pub fn to_input(&self) -> SquadGoalInput {
        let mut input = SquadGoalInput {
            key_result_id: Some(self.key_result_id.0),
            title: self.title.clone(),
            starts_on: self.starts_on.to_string(),
            ends_on: self.ends_on.to_string(),
            investment: self.investment.as_str().to_owned(),
            challenges: self.challenges.clone().unwrap_or_default(),
            kill_criteria: self.kill_criteria.clone().unwrap_or_default(),
            planned_capacity: Some(self.planned_capacity),
            status: self.status.as_str().to_owned(),
            metric: self.metric.as_ref().map(|m| m.key.clone()).unwrap_or_default(),
            ..Default::default()
        };
        input.set_measure(self.measure.to_input());
        input
    }
}

measure_fields! {
    #[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
    #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
    #[serde(default)]
    pub struct SquadGoalInput {
        pub key_result_id: Option<i64>,
        pub title: String,
        pub starts_on: String,
        pub ends_on: String,
        /// `snapshot` or `slope`.
        pub investment: String,
        pub challenges: String,
        pub kill_criteria: String,
        pub planned_capacity: Option<f64>,
        /// `planned` when not given.
        pub status: String,
        /// The key of a metric that feeds the current value (empty: check-ins feed it).
        pub metric: String,
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct SquadGoalSpec {
    pub key_result_id: KeyResultId,
    pub title: Title,
    pub dates: DateRange,
    pub investment: Investment,
    pub challenges: Option<Prose>,
    pub kill_criteria: Option<Prose>,
    pub planned_capacity: PersonWeeks,
    pub status: GoalStatus,
    pub measure: Measure,
    pub metric: Option<Key>,
}

/// A squad goal's cycle: four to six weeks, counted from the start date to the end date.
pub const GOAL_MIN_DAYS: i64 = 28;
pub const GOAL_MAX_DAYS: i64 = 42;

impl SquadGoalInput {
    /// `season` is the date range of the season that the goal's key result belongs to, once the key result
    /// is known; a goal must run inside its season.
    pub fn validate(&self, season: Option<&DateRange>) -> Result<SquadGoalSpec, FieldErrors> {
        let mut c = Checker::new();
        let key_result_id = match self.key_result_id {
            Some(id) => Some(KeyResultId(id)),
            None => {
                c.fail("key_result_id", "choose the key result this goal ladders up to");
                None
            }
        };
        let title = c.check("title", Title::parse(&self.title));
        let starts_on = c.date("starts_on", &self.starts_on);
        let ends_on = c.date("ends_on", &self.ends_on);
        let dates = match (starts_on, ends_on) {
            (Some(s), Some(e)) => c.check("ends_on", DateRange::new(s, e)),
            _ => None,
        };
        if let Some(d) = dates {
            let days = d.days();
            if !(GOAL_MIN_DAYS..=GOAL_MAX_DAYS).contains(&days) {
                c.fail(
                    "ends_on",
                    format!(
                        "a squad goal runs 4 to 6 weeks ({GOAL_MIN_DAYS}–{GOAL_MAX_DAYS} days); this one runs {days} days ({:.1} weeks)",
                        days as f64 / 7.0
                    ),
                );
            }
            if let Some(season) = season
                && !season.contains_range(&d)
            {
                c.fail("starts_on", format!("must run inside its season ({} to {})", season.start, season.end));
            }
        }
        let investment = c.check("investment", self.investment.parse::<Investment>());
        let (mut challenges, mut kill_criteria) = (None, None);
        if investment == Some(Investment::Slope) {
            challenges = c.check(
                "challenges",
                Prose::parse(&self.challenges).map_err(|_| {
                    "a slope bet must state the belief of the platform's current thinking it challenges".to_owned()
                }),
            );
            kill_criteria = c.check(
                "kill_criteria",
                Prose::parse(&self.kill_criteria)
                    .map_err(|_| "a slope bet must state the criteria that would kill it".to_owned()),
            );
        }
        let planned_capacity = match self.planned_capacity {
            None => {
                c.fail("planned_capacity", "is required (person-weeks)");
                None
            }
            Some(v) => c.check("planned_capacity", PersonWeeks::parse_positive(v)),
        };
        let status = if self.status.trim().is_empty() {
            Some(GoalStatus::Planned)
        } else {
            c.check("status", self.status.parse::<GoalStatus>())
        };
        let measure = self.measure().validate_into(&mut c);
        let metric = parse_metric_link(&mut c, &self.metric);
        c.finish(|| {
            Some(SquadGoalSpec {
                key_result_id: key_result_id?,
                title: title?,
                dates: dates?,
                investment: investment?,
                // Snapshot goals carry no belief or kill criteria; what a form sent for them is dropped.
                challenges: if investment? == Investment::Slope { Some(challenges?) } else { None },
                kill_criteria: if investment? == Investment::Slope { Some(kill_criteria?) } else { None },
                planned_capacity: planned_capacity?,
                status: status?,
                measure: measure?,
                metric: metric?,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::newtypes::parse_date;

    fn goal() -> SquadGoalInput {
        SquadGoalInput {
            key_result_id: Some(7),
            title: "Ship inline suggestions".into(),
            starts_on: "2027-01-04".into(),
            ends_on: "2027-02-01".into(),
            investment: "snapshot".into(),
            planned_capacity: Some(8.0),
            kind: "milestone".into(),
            ..Default::default()
        }
    }

    fn season() -> DateRange {
        DateRange::new(parse_date("2027-01-01").unwrap(), parse_date("2027-06-30").unwrap()).unwrap()
    }

    #[test]
    fn goals_run_four_to_six_weeks() {
        assert_eq!(goal().validate(Some(&season())).unwrap().dates.days(), 28);
        let six = SquadGoalInput { ends_on: "2027-02-15".into(), ..goal() };
        assert!(six.validate(Some(&season())).is_ok());
        for (end, days) in [("2027-01-31", 27), ("2027-02-16", 43), ("2027-03-01", 56)] {
            let err = SquadGoalInput { ends_on: end.into(), ..goal() }.validate(Some(&season())).unwrap_err();
            let msg = &err.get("ends_on").unwrap()[0];
            assert!(msg.contains("4 to 6 weeks") && msg.contains(&format!("{days} days")), "{msg}");
        }
    }

    #[test]
    fn goals_stay_inside_their_season() {
        let early = SquadGoalInput { starts_on: "2026-12-20".into(), ends_on: "2027-01-20".into(), ..goal() };
        assert!(early.validate(Some(&season())).unwrap_err().get("starts_on").is_some());
        assert!(early.validate(None).is_ok(), "without a known season only the goal's own rules apply");
    }

    #[test]
    fn slope_bets_state_their_belief_and_kill_criteria() {
        let bet = SquadGoalInput { investment: "slope".into(), ..goal() };
        let err = bet.validate(None).unwrap_err();
        assert!(err.get("challenges").is_some() && err.get("kill_criteria").is_some());
        let bet = SquadGoalInput {
            challenges: "Clinicians want full drafts, not completions".into(),
            kill_criteria: "Acceptance below 10 % after 3 weeks".into(),
            ..bet
        };
        let spec = bet.validate(None).unwrap();
        assert_eq!(spec.investment, Investment::Slope);
        assert!(spec.kill_criteria.is_some());
    }

    #[test]
    fn snapshot_goals_drop_slope_fields_and_need_capacity() {
        let g = SquadGoalInput { challenges: "x".into(), ..goal() };
        assert_eq!(g.validate(None).unwrap().challenges, None);
        let g = SquadGoalInput { planned_capacity: Some(0.0), key_result_id: None, ..goal() };
        let err = g.validate(None).unwrap_err();
        assert!(err.get("planned_capacity").is_some() && err.get("key_result_id").is_some());
    }

    #[test]
    fn squads_need_name_unit_and_capacity() {
        let err = SquadInput { name: "Drafts".into(), unit: "".into(), capacity: Some(-1.0) }.validate().unwrap_err();
        assert!(err.get("unit").is_some() && err.get("capacity").is_some());
        assert!(SquadInput { name: "Drafts".into(), unit: "Clinical".into(), capacity: Some(12.0) }.validate().is_ok());
    }
}
