//! Check-ins: the dated record of a key result's or squad goal's value and the owner's confidence.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::entities::{CheckInId, OrgId, string_enum};
use crate::errors::FieldErrors;
use crate::measure::Measure;
use crate::newtypes::{Checker, Confidence, Prose, Title, finite, optional_prose};

string_enum!(
    /// What a check-in is about.
    SubjectKind { KeyResult => "key-result", SquadGoal => "squad-goal" }
);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CheckIn {
    pub id: CheckInId,
    pub org_id: OrgId,
    pub subject_kind: SubjectKind,
    pub subject_id: i64,
    /// The measured value; for a milestone 1 is done and 0 is not.
    pub value: f64,
    pub confidence: Option<f64>,
    pub note: Option<String>,
    pub author: String,
    pub recorded_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(default)]
pub struct CheckInInput {
    /// The measured value. For a milestone, `done` may be given instead.
    pub value: Option<f64>,
    pub done: Option<bool>,
    pub confidence: Option<f64>,
    pub note: String,
    pub author: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CheckInSpec {
    pub value: f64,
    pub confidence: Option<Confidence>,
    pub note: Option<Prose>,
    pub author: Title,
}

impl CheckInInput {
    pub fn validate(&self, measure: &Measure) -> Result<CheckInSpec, FieldErrors> {
        let mut c = Checker::new();
        let value = match (measure, self.done, self.value) {
            (Measure::Milestone, Some(done), _) => Some(if done { 1.0 } else { 0.0 }),
            (Measure::Milestone, None, Some(v)) if v == 0.0 || v == 1.0 => Some(v),
            (Measure::Milestone, None, _) => {
                c.fail("done", "say whether the milestone is done");
                None
            }
            (_, _, Some(v)) => c.check("value", finite(v)),
            (_, _, None) => {
                c.fail("value", "is required");
                None
            }
        };
        let confidence = match self.confidence {
            None => Some(None),
            Some(v) => c.check("confidence", Confidence::parse(v).map(Some)),
        };
        let note = c.check("note", optional_prose(&self.note));
        let author = c.check("author", Title::parse(&self.author));
        c.finish(|| Some(CheckInSpec { value: value?, confidence: confidence?, note: note?, author: author? }))
    }
}

/// The value and confidence as known at `at`: the latest check-in recorded at or before it.
/// `check_ins` may be in any order.
pub fn known_as_of(check_ins: &[CheckIn], at: DateTime<Utc>) -> Option<&CheckIn> {
    check_ins.iter().filter(|c| c.recorded_at <= at).max_by_key(|c| (c.recorded_at, c.id))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn check_in(id: i64, day: u32, value: f64) -> CheckIn {
        CheckIn {
            id: CheckInId(id),
            org_id: OrgId(1),
            subject_kind: SubjectKind::KeyResult,
            subject_id: 1,
            value,
            confidence: None,
            note: None,
            author: "ana".into(),
            recorded_at: Utc.with_ymd_and_hms(2027, 1, day, 12, 0, 0).unwrap(),
        }
    }

    #[test]
    fn numeric_check_ins_need_a_value_and_an_author() {
        let m = Measure::IncreaseTo { start: 0.0, target: 1.0, unit: "".into() };
        let err = CheckInInput { confidence: Some(2.0), ..Default::default() }.validate(&m).unwrap_err();
        for field in ["value", "confidence", "author"] {
            assert!(err.get(field).is_some(), "{field}: {err}");
        }
        let ok = CheckInInput { value: Some(0.4), author: "Ana".into(), ..Default::default() }.validate(&m).unwrap();
        assert_eq!(ok.value, 0.4);
    }

    #[test]
    fn milestones_take_done_or_zero_or_one() {
        let author = "Ana".to_owned();
        let done = CheckInInput { done: Some(true), author: author.clone(), ..Default::default() };
        assert_eq!(done.validate(&Measure::Milestone).unwrap().value, 1.0);
        let half = CheckInInput { value: Some(0.5), author, ..Default::default() };
        assert!(half.validate(&Measure::Milestone).unwrap_err().get("done").is_some());
    }

    #[test]
    fn as_of_picks_the_latest_known_check_in() {
        let history = vec![check_in(2, 10, 0.3), check_in(1, 3, 0.1), check_in(3, 20, 0.5)];
        let at = |day| Utc.with_ymd_and_hms(2027, 1, day, 23, 0, 0).unwrap();
        assert_eq!(known_as_of(&history, at(2)), None);
        assert_eq!(known_as_of(&history, at(3)).unwrap().value, 0.1);
        assert_eq!(known_as_of(&history, at(15)).unwrap().value, 0.3);
        assert_eq!(known_as_of(&history, at(31)).unwrap().value, 0.5);
    }
}
