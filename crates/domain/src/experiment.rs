//! Experiments (A/B tests of a loop's variants) and drift alerts.

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::entities::OrgId;
use crate::errors::FieldErrors;
use crate::metric::Key;
use crate::newtypes::{Checker, DateRange, Title};

/// An experiment as a form or JSON body carries it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(default)]
pub struct ExperimentInput {
    pub key: String,
    pub name: String,
    #[serde(rename = "loop")]
    pub loop_key: String,
    /// The variant that stands for the current thinking.
    pub control: String,
    pub treatment: String,
    pub starts_on: String,
    pub ends_on: String,
    /// The share of users meant to see the treatment (0.5 when not given); the sample-ratio check
    /// compares the observed split with it.
    pub expected_share: Option<f64>,
    /// The model the control arm serves (the loop's champion), when a model serves it.
    pub control_model: Option<i64>,
    /// The model the treatment arm serves (the challenger); the promotion gate weighs an experiment
    /// only for the models it served.
    pub treatment_model: Option<i64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ExperimentSpec {
    pub key: Key,
    pub name: Title,
    pub loop_key: Key,
    pub control: String,
    pub treatment: String,
    pub dates: DateRange,
    pub expected_share: f64,
    pub control_model: Option<i64>,
    pub treatment_model: Option<i64>,
}

impl ExperimentInput {
    pub fn validate(&self) -> Result<ExperimentSpec, FieldErrors> {
        let mut c = Checker::new();
        let key = c.check("key", Key::parse(&self.key));
        let name = c.check("name", Title::parse(&self.name));
        let loop_key = c.check("loop", Key::parse(&self.loop_key));
        let arm = |c: &mut Checker, field: &str, raw: &str| {
            let raw = raw.trim();
            if raw.is_empty() {
                c.fail(field, "is required");
                None
            } else {
                Some(raw.to_owned())
            }
        };
        let control = arm(&mut c, "control", &self.control);
        let treatment = arm(&mut c, "treatment", &self.treatment);
        if control.is_some() && control == treatment {
            c.fail("treatment", "must differ from the control");
        }
        let starts = c.date("starts_on", &self.starts_on);
        let ends = c.date("ends_on", &self.ends_on);
        let dates = match (starts, ends) {
            (Some(s), Some(e)) => c.check("ends_on", DateRange::new(s, e)),
            _ => None,
        };
        let expected_share = match self.expected_share {
            None => Some(0.5),
            Some(v) if v > 0.0 && v < 1.0 => Some(v),
            Some(v) => {
                c.fail("expected_share", format!("must be between 0 and 1 (exclusive), not {v}"));
                None
            }
        };
        let model = |c: &mut Checker, field: &str, id: Option<i64>| match id {
            Some(id) if id <= 0 => {
                c.fail(field, format!("must be a model id (a whole number above 0), not {id}"));
                None
            }
            id => Some(id),
        };
        let control_model = model(&mut c, "control_model", self.control_model);
        let treatment_model = model(&mut c, "treatment_model", self.treatment_model);
        if self.control_model.is_some() && self.control_model == self.treatment_model {
            c.fail("treatment_model", "must differ from the control's model");
        }
        c.finish(|| {
            Some(ExperimentSpec {
                control_model: control_model?,
                treatment_model: treatment_model?,
                key: key?,
                name: name?,
                loop_key: loop_key?,
                control: control?,
                treatment: treatment?,
                dates: dates?,
                expected_share: expected_share?,
            })
        })
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Experiment {
    pub id: i64,
    pub org_id: OrgId,
    pub key: String,
    pub name: String,
    #[serde(rename = "loop")]
    pub loop_key: String,
    pub control: String,
    pub treatment: String,
    pub starts_on: NaiveDate,
    pub ends_on: NaiveDate,
    pub expected_share: f64,
    pub created_at: DateTime<Utc>,
    /// The models the arms served, when they were recorded (see [`ExperimentInput`]).
    #[serde(default)]
    pub control_model_id: Option<i64>,
    #[serde(default)]
    pub treatment_model_id: Option<i64>,
    /// When it was stopped before its last day (the demo's loop turns in minutes, so a day is too coarse
    /// to end an A/B test); a stopped experiment no longer assigns users to arms.
    pub stopped_at: Option<DateTime<Utc>>,
}

impl Experiment {
    /// Whether it assigns users to its arms at `now`: started, not past its last day and not stopped.
    pub fn is_active(&self, now: DateTime<Utc>) -> bool {
        let today = now.date_naive();
        self.starts_on <= today && today <= self.ends_on && self.stopped_at.is_none_or(|at| at > now)
    }

    /// Whether it served exactly `treatment` against `control` (`None`: the control arm served no
    /// model, as before a loop's first champion).
    pub fn served(&self, control: Option<i64>, treatment: i64) -> bool {
        self.treatment_model_id == Some(treatment) && self.control_model_id == control
    }

    /// The last day whose events belong to it: its last day, or the day it was stopped (never before its
    /// first day: one stopped before it started covers its first day, which has no events of it).
    pub fn last_day(&self) -> NaiveDate {
        self.stopped_at.map_or(self.ends_on, |at| at.date_naive().clamp(self.starts_on, self.ends_on))
    }
}

/// A drift check that crossed the "moderate" band (PSI ≥ 0.1), recorded so that it is seen later.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DriftAlert {
    pub id: i64,
    #[serde(rename = "loop")]
    pub loop_key: String,
    pub field: String,
    pub reference_start: NaiveDate,
    pub reference_end: NaiveDate,
    pub current_start: NaiveDate,
    pub current_end: NaiveDate,
    pub psi: f64,
    pub js_distance: f64,
    /// `moderate` (0.1–0.25) or `major` (> 0.25).
    pub band: String,
    pub created_at: DateTime<Utc>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn experiments_need_two_distinct_arms_and_dates_in_order() {
        let input = ExperimentInput {
            key: "shorter-drafts".into(),
            name: "Shorter drafts".into(),
            loop_key: "notes".into(),
            control: "v1".into(),
            treatment: "v1".into(),
            starts_on: "2027-02-01".into(),
            ends_on: "2027-01-01".into(),
            expected_share: Some(1.0),
            control_model: Some(0),
            treatment_model: None,
        };
        let err = input.validate().unwrap_err();
        assert_eq!(err.0.keys().collect::<Vec<_>>(), ["control_model", "ends_on", "expected_share", "treatment"]);
        let ok = ExperimentInput {
            treatment: "v2".into(),
            ends_on: "2027-02-28".into(),
            expected_share: None,
            control_model: None,
            ..input
        };
        assert_eq!(ok.validate().unwrap().expected_share, 0.5);
        let same = ExperimentInput { control_model: Some(3), treatment_model: Some(3), ..ok.clone() };
        assert_eq!(same.validate().unwrap_err().0.keys().collect::<Vec<_>>(), ["treatment_model"]);
        let models = ExperimentInput { control_model: Some(3), treatment_model: Some(4), ..ok }.validate().unwrap();
        assert_eq!((models.control_model, models.treatment_model), (Some(3), Some(4)));
    }

    #[test]
    fn an_experiment_is_active_between_its_dates_until_it_is_stopped() {
        let at = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
        let mut e = Experiment {
            id: 1,
            org_id: OrgId(1),
            key: "e".into(),
            name: "E".into(),
            loop_key: "notes".into(),
            control: "a".into(),
            treatment: "b".into(),
            starts_on: NaiveDate::from_ymd_opt(2027, 1, 4).unwrap(),
            ends_on: NaiveDate::from_ymd_opt(2027, 1, 31).unwrap(),
            expected_share: 0.5,
            created_at: at("2027-01-01T00:00:00Z"),
            control_model_id: Some(3),
            treatment_model_id: Some(4),
            stopped_at: None,
        };
        assert!(e.served(Some(3), 4) && !e.served(Some(4), 3) && !e.served(None, 4));
        assert!(!e.is_active(at("2027-01-03T23:59:59Z")), "not started");
        assert!(e.is_active(at("2027-01-04T00:00:00Z")));
        assert!(!e.is_active(at("2027-02-01T00:00:00Z")), "ended");
        assert_eq!(e.last_day(), e.ends_on);
        e.stopped_at = Some(at("2027-01-10T12:00:00Z"));
        assert!(e.is_active(at("2027-01-10T11:00:00Z")), "before it was stopped");
        assert!(!e.is_active(at("2027-01-10T12:00:00Z")));
        assert_eq!(e.last_day(), NaiveDate::from_ymd_opt(2027, 1, 10).unwrap());
    }
}

/// An experiment and the A/B analysis of its events.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ExperimentAnalysis {
    pub experiment: Experiment,
    /// The A/B comparison of the variants' character acceptance rates: each arm with its delta-method
    /// interval, the difference with a z-test, the lift, the always-valid sequential test and the
    /// sample-ratio check.
    pub report: crate::ab_report::AbReport,
}

/// An experiment's page: the experiment and, once its events allow one, its analysis.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ExperimentPage {
    pub experiment: Experiment,
    pub report: Option<crate::ab_report::AbReport>,
    /// Why there is no analysis yet (too few users or events in an arm, say).
    pub pending: Option<String>,
}
