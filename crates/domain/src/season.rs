//! Seasons: the top planning unit, defined by a secular market shift.

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::entities::{OrgId, SeasonId, SeasonStatus, Version};
use crate::errors::FieldErrors;
use crate::newtypes::{Checker, DateRange, Prose, Title, finite};

/// The share of capacity a season reserves for slope bets, as a fraction (0.2 is 20 %).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "f64", into = "f64")]
pub struct SlopeTarget(f64);

impl SlopeTarget {
    pub const MAX: f64 = 0.6;
    pub const DEFAULT: SlopeTarget = SlopeTarget(0.2);

    pub fn parse(value: f64) -> Result<Self, String> {
        let value = finite(value)?;
        if (0.0..=Self::MAX).contains(&value) {
            Ok(Self(value))
        } else {
            Err(format!("must be between 0 % and 60 % (0 to 0.6), not {}", crate::fmt_number(value)))
        }
    }

    pub fn get(self) -> f64 {
        self.0
    }
}

impl TryFrom<f64> for SlopeTarget {
    type Error = String;
    fn try_from(value: f64) -> Result<Self, String> {
        Self::parse(value)
    }
}

impl From<SlopeTarget> for f64 {
    fn from(value: SlopeTarget) -> f64 {
        value.0
    }
}

/// A stored season.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Season {
    pub id: SeasonId,
    /// The stable key that names the entity in plan files and the API; unique per organisation and kind.
    /// Revisions written before keys existed have none, hence the default.
    #[serde(default)]
    pub key: String,
    pub org_id: OrgId,
    pub name: String,
    pub thesis: String,
    pub problems: Vec<String>,
    pub winning: String,
    pub starts_on: NaiveDate,
    pub ends_on: NaiveDate,
    pub status: SeasonStatus,
    pub slope_target: f64,
    pub retrospective: Option<String>,
    pub version: Version,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Season {
    pub fn dates(&self) -> DateRange {
        DateRange { start: self.starts_on, end: self.ends_on }
    }

    /// Closed seasons are history: what was planned and learned must stay as it was.
    pub fn ensure_editable(&self) -> Result<(), FieldErrors> {
        if self.status == SeasonStatus::Closed {
            Err(FieldErrors::single("status", "this season is closed; closed seasons cannot be changed"))
        } else {
            Ok(())
        }
    }

    pub fn to_input(&self) -> SeasonInput {
        SeasonInput {
            name: self.name.clone(),
            thesis: self.thesis.clone(),
            problems: self.problems.clone(),
            winning: self.winning.clone(),
            starts_on: self.starts_on.to_string(),
            ends_on: self.ends_on.to_string(),
            slope_target: Some(self.slope_target),
        }
    }
}

/// A season as a JSON body or form carries it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(default)]
pub struct SeasonInput {
    pub name: String,
    /// The secular market shift the season is built on.
    pub thesis: String,
    /// The customer problems the season sets out to solve.
    pub problems: Vec<String>,
    /// What winning looks like at the end of the season.
    pub winning: String,
    pub starts_on: String,
    pub ends_on: String,
    /// Fraction of capacity reserved for slope bets; 20 % when not given.
    pub slope_target: Option<f64>,
}

/// A season that has passed every rule that does not need other seasons to check.
#[derive(Debug, Clone, PartialEq)]
pub struct SeasonSpec {
    pub name: Title,
    pub thesis: Prose,
    pub problems: Vec<Prose>,
    pub winning: Prose,
    pub dates: DateRange,
    pub slope_target: SlopeTarget,
}

impl SeasonInput {
    pub const MAX_PROBLEMS: usize = 20;

    pub fn validate(&self) -> Result<SeasonSpec, FieldErrors> {
        let mut c = Checker::new();
        let name = c.check("name", Title::parse(&self.name));
        let thesis = c.check("thesis", Prose::parse(&self.thesis));
        let winning = c.check("winning", Prose::parse(&self.winning));
        let given: Vec<&String> = self.problems.iter().filter(|p| !p.trim().is_empty()).collect();
        if given.is_empty() {
            c.fail("problems", "name at least one customer problem");
        } else if given.len() > Self::MAX_PROBLEMS {
            c.fail("problems", format!("at most {} problems; focus is the point", Self::MAX_PROBLEMS));
        }
        let problems: Vec<Prose> = given.iter().filter_map(|p| c.check("problems", Prose::parse(p))).collect();
        let starts_on = c.date("starts_on", &self.starts_on);
        let ends_on = c.date("ends_on", &self.ends_on);
        let dates = match (starts_on, ends_on) {
            (Some(s), Some(e)) => c.check("ends_on", DateRange::new(s, e)),
            _ => None,
        };
        let slope_target = match self.slope_target {
            None => Some(SlopeTarget::DEFAULT),
            Some(v) => c.check("slope_target", SlopeTarget::parse(v)),
        };
        c.finish(|| {
            Some(SeasonSpec {
                name: name?,
                thesis: thesis?,
                problems,
                winning: winning?,
                dates: dates?,
                slope_target: slope_target?,
            })
        })
    }
}

/// The season a page or report shows when none is named: the organisation's active season, or else the
/// one that starts latest. Seasons never overlap, so at most one is active and start dates are distinct.
pub fn current_season(seasons: &[Season]) -> Option<&Season> {
    seasons.iter().find(|s| s.status == SeasonStatus::Active).or_else(|| seasons.iter().max_by_key(|s| s.starts_on))
}

/// The organisation's active season other than `this`: a second season may not become active beside it.
pub fn other_active_season(seasons: &[Season], this: SeasonId) -> Option<&Season> {
    seasons.iter().find(|s| s.id != this && s.status == SeasonStatus::Active)
}

/// Seasons of one organisation never overlap. `others` are that organisation's other seasons.
pub fn check_no_overlap(dates: &DateRange, others: &[Season], this: Option<SeasonId>) -> Result<(), FieldErrors> {
    match others.iter().find(|s| Some(s.id) != this && s.dates().overlaps(dates)) {
        Some(other) => Err(FieldErrors::single(
            "starts_on",
            format!(
                "overlaps season {:?} ({} to {}); seasons of one organisation never overlap",
                other.name, other.starts_on, other.ends_on
            ),
        )),
        None => Ok(()),
    }
}

/// A requested change of a season's status.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(default)]
pub struct TransitionInput {
    pub to: String,
    /// Required when closing: what the season taught.
    pub retrospective: String,
}

impl TransitionInput {
    pub const MIN_RETROSPECTIVE_CHARS: usize = 20;

    /// Checks a transition of `season`. `other_active` is the organisation's active season, if any, other
    /// than this one. Returns the new status and, when closing, the retrospective.
    pub fn validate(
        &self,
        season: &Season,
        other_active: Option<&Season>,
    ) -> Result<(SeasonStatus, Option<Prose>), FieldErrors> {
        let to: SeasonStatus = self.to.parse().map_err(|e: String| FieldErrors::single("to", e))?;
        match (season.status, to) {
            (SeasonStatus::Draft, SeasonStatus::Active) => {
                if let Some(active) = other_active {
                    return Err(FieldErrors::single(
                        "to",
                        format!("season {:?} is active; close it before activating another", active.name),
                    ));
                }
                Ok((to, None))
            }
            (SeasonStatus::Active, SeasonStatus::Closed) => {
                let retro = Prose::parse(&self.retrospective).map_err(|e| FieldErrors::single("retrospective", e))?;
                if retro.as_str().chars().count() < Self::MIN_RETROSPECTIVE_CHARS {
                    return Err(FieldErrors::single(
                        "retrospective",
                        format!(
                            "write at least {} characters on what the season taught",
                            Self::MIN_RETROSPECTIVE_CHARS
                        ),
                    ));
                }
                Ok((to, Some(retro)))
            }
            (from, to) => Err(FieldErrors::single(
                "to",
                format!("a {from} season cannot become {to}; seasons go draft → active → closed"),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entities::Version;

    fn input() -> SeasonInput {
        SeasonInput {
            name: "The advent of agents".into(),
            thesis: "Agents replace forms".into(),
            problems: vec!["Clinicians type too much".into(), "  ".into()],
            winning: "Half of all notes drafted by agents".into(),
            starts_on: "2027-01-01".into(),
            ends_on: "2027-06-30".into(),
            slope_target: None,
        }
    }

    pub(crate) fn season(id: i64, name: &str, start: &str, end: &str, status: SeasonStatus) -> Season {
        let now = Utc::now();
        Season {
            id: SeasonId(id),
            key: format!("k{}", id),
            org_id: OrgId(1),
            name: name.into(),
            thesis: "t".into(),
            problems: vec!["p".into()],
            winning: "w".into(),
            starts_on: start.parse().unwrap(),
            ends_on: end.parse().unwrap(),
            status,
            slope_target: 0.2,
            retrospective: None,
            version: Version(1),
            created_at: now,
            updated_at: now,
        }
    }

    #[test]
    fn a_valid_season_defaults_its_slope_target_and_drops_blank_problems() {
        let spec = input().validate().unwrap();
        assert_eq!(spec.slope_target.get(), 0.2);
        assert_eq!(spec.problems.len(), 1);
        assert_eq!(spec.dates.days(), 180);
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let bad = SeasonInput {
            slope_target: Some(0.7),
            ends_on: "2026-12-01".into(),
            name: "".into(),
            problems: vec![],
            ..input()
        };
        let errors = bad.validate().unwrap_err();
        for field in ["name", "problems", "ends_on", "slope_target"] {
            assert!(errors.get(field).is_some(), "missing error for {field}: {errors}");
        }
        assert!(errors.get("slope_target").unwrap()[0].contains("60 %"));
    }

    #[test]
    fn slope_target_bounds_are_inclusive() {
        assert!(SlopeTarget::parse(0.0).is_ok());
        assert!(SlopeTarget::parse(0.6).is_ok());
        assert!(SlopeTarget::parse(0.6001).is_err());
        assert!(SlopeTarget::parse(-0.1).is_err());
    }

    #[test]
    fn seasons_never_overlap_but_may_touch_end_to_start() {
        let h1 = season(1, "H1", "2027-01-01", "2027-06-30", SeasonStatus::Closed);
        let spec =
            SeasonInput { starts_on: "2027-06-30".into(), ends_on: "2027-12-31".into(), ..input() }.validate().unwrap();
        let err = check_no_overlap(&spec.dates, std::slice::from_ref(&h1), None).unwrap_err();
        assert!(err.get("starts_on").unwrap()[0].contains("\"H1\""));
        let spec =
            SeasonInput { starts_on: "2027-07-01".into(), ends_on: "2027-12-31".into(), ..input() }.validate().unwrap();
        assert!(check_no_overlap(&spec.dates, std::slice::from_ref(&h1), None).is_ok());
        // A season does not overlap itself when it is edited.
        assert!(check_no_overlap(&h1.dates(), std::slice::from_ref(&h1), Some(SeasonId(1))).is_ok());
    }

    #[test]
    fn transitions_follow_draft_active_closed() {
        let draft = season(1, "A", "2027-01-01", "2027-06-30", SeasonStatus::Draft);
        let active = season(2, "B", "2026-01-01", "2026-06-30", SeasonStatus::Active);
        let to = |to: &str, retro: &str| TransitionInput { to: to.into(), retrospective: retro.into() };

        assert_eq!(to("active", "").validate(&draft, None).unwrap().0, SeasonStatus::Active);
        let err = to("active", "").validate(&draft, Some(&active)).unwrap_err();
        assert!(err.get("to").unwrap()[0].contains("\"B\" is active"));
        assert!(to("closed", "").validate(&draft, None).is_err());

        assert!(to("closed", "too short").validate(&active, None).unwrap_err().get("retrospective").is_some());
        let (status, retro) = to("closed", "Agents arrived faster than planned.").validate(&active, None).unwrap();
        assert_eq!(status, SeasonStatus::Closed);
        assert!(retro.is_some());

        let closed = season(3, "C", "2025-01-01", "2025-06-30", SeasonStatus::Closed);
        assert!(to("active", "").validate(&closed, None).is_err());
        assert!(closed.ensure_editable().is_err());
        assert!(to("paused", "").validate(&draft, None).unwrap_err().get("to").is_some());
    }

    #[test]
    fn the_current_season_is_the_active_one_or_else_the_latest_to_start() {
        let older = season(1, "older", "2026-01-01", "2026-06-30", SeasonStatus::Closed);
        let active = season(2, "active", "2026-07-01", "2026-12-31", SeasonStatus::Active);
        let next = season(3, "next", "2027-01-01", "2027-06-30", SeasonStatus::Draft);
        let all = [older.clone(), active.clone(), next.clone()];
        assert_eq!(current_season(&all).map(|s| s.id), Some(active.id));
        // Without an active season the latest to start is shown, whatever order the list comes in.
        assert_eq!(current_season(&[next.clone(), older.clone()]).map(|s| s.id), Some(next.id));
        assert_eq!(current_season(&[older.clone(), next.clone()]).map(|s| s.id), Some(next.id));
        assert!(current_season(&[]).is_none());
        assert_eq!(other_active_season(&all, next.id).map(|s| s.id), Some(active.id));
        assert!(other_active_season(&all, active.id).is_none());
    }
}
