//! Quarterly objectives and their key results, which ladder up to a season.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::entities::{Commitment, KeyResultId, ObjectiveId, OrgId, SeasonId, Version};
use crate::errors::FieldErrors;
use crate::measure::{Measure, measure_fields};
use crate::metric::{Key, MetricFeed, parse_metric_link};
use crate::newtypes::{Checker, Confidence, DateRange, Prose, Title, Weight, optional_prose};
use crate::quarter::Quarter;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Objective {
    pub id: ObjectiveId,
    /// The stable key that names the entity in plan files and the API; unique per organisation and kind.
    /// Revisions written before keys existed have none, hence the default.
    #[serde(default)]
    pub key: String,
    pub org_id: OrgId,
    pub season_id: SeasonId,
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "2027-Q1"))]
    pub quarter: Quarter,
    pub title: String,
    pub description: Option<String>,
    pub commitment: Commitment,
    pub owner: Option<String>,
    pub weight: f64,
    pub version: Version,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Objective {
    pub fn to_input(&self) -> ObjectiveInput {
        ObjectiveInput {
            quarter: self.quarter.to_string(),
            title: self.title.clone(),
            description: self.description.clone().unwrap_or_default(),
            commitment: self.commitment.as_str().to_owned(),
            owner: self.owner.clone().unwrap_or_default(),
            weight: Some(self.weight),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(default)]
pub struct ObjectiveInput {
    /// A quarter such as `2027-Q1` that overlaps the season.
    pub quarter: String,
    pub title: String,
    pub description: String,
    /// `committed` (expected at 100 %) or `aspirational` (expected at 70 %).
    pub commitment: String,
    /// Who answers for the objective; free text until people are modelled.
    pub owner: String,
    /// Relative weight in the season's roll-up; 1 when not given.
    pub weight: Option<f64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ObjectiveSpec {
    pub quarter: Quarter,
    pub title: Title,
    pub description: Option<Prose>,
    pub commitment: Commitment,
    pub owner: Option<Title>,
    pub weight: Weight,
}

impl ObjectiveInput {
    /// `season` is the date range of the season the objective belongs to.
    pub fn validate(&self, season: &DateRange) -> Result<ObjectiveSpec, FieldErrors> {
        let mut c = Checker::new();
        let quarter = c.check("quarter", self.quarter.parse::<Quarter>());
        if let Some(q) = quarter
            && !q.range().overlaps(season)
        {
            let allowed: Vec<String> = Quarter::spanning(season).iter().map(|q| q.to_string()).collect();
            c.fail("quarter", format!("{q} is outside the season; choose one of {}", allowed.join(", ")));
        }
        let title = c.check("title", Title::parse(&self.title));
        let description = c.check("description", optional_prose(&self.description));
        let commitment = c.check("commitment", self.commitment.parse::<Commitment>());
        let owner = if self.owner.trim().is_empty() {
            Some(None)
        } else {
            c.check("owner", Title::parse(&self.owner).map(Some))
        };
        let weight = c.check("weight", Weight::parse(self.weight.unwrap_or(1.0)));
        c.finish(|| {
            Some(ObjectiveSpec {
                quarter: quarter?,
                title: title?,
                description: description?,
                commitment: commitment?,
                owner: owner?,
                weight: weight?,
            })
        })
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct KeyResult {
    pub id: KeyResultId,
    /// The stable key that names the entity in plan files and the API; unique per organisation and kind.
    /// Revisions written before keys existed have none, hence the default.
    #[serde(default)]
    pub key: String,
    pub org_id: OrgId,
    pub objective_id: ObjectiveId,
    pub title: String,
    pub measure: Measure,
    /// The latest checked-in value; `None` before the first check-in.
    pub current: Option<f64>,
    pub weight: f64,
    /// The latest stated confidence that the target will be met.
    pub confidence: Option<f64>,
    /// The metric whose latest point is this key result's current value, when it is fed by one.
    pub metric: Option<MetricFeed>,
    pub version: Version,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl KeyResult {
    pub fn to_input(&self) -> KeyResultInput {
        let mut input = KeyResultInput {
            title: self.title.clone(),
            weight: Some(self.weight),
            confidence: self.confidence,
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
    pub struct KeyResultInput {
        pub title: String,
        pub weight: Option<f64>,
        pub confidence: Option<f64>,
        /// The key of a metric that feeds the current value (empty: check-ins feed it).
        pub metric: String,
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct KeyResultSpec {
    pub title: Title,
    pub measure: Measure,
    pub weight: Weight,
    pub confidence: Option<Confidence>,
    pub metric: Option<Key>,
}

impl KeyResultInput {
    pub fn validate(&self) -> Result<KeyResultSpec, FieldErrors> {
        let mut c = Checker::new();
        let title = c.check("title", Title::parse(&self.title));
        let measure = self.measure().validate_into(&mut c);
        let weight = c.check("weight", Weight::parse(self.weight.unwrap_or(1.0)));
        let confidence = match self.confidence {
            None => Some(None),
            Some(v) => c.check("confidence", Confidence::parse(v).map(Some)),
        };
        let metric = parse_metric_link(&mut c, &self.metric);
        c.finish(|| {
            Some(KeyResultSpec {
                title: title?,
                measure: measure?,
                weight: weight?,
                confidence: confidence?,
                metric: metric?,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::newtypes::parse_date;

    fn season() -> DateRange {
        DateRange::new(parse_date("2027-01-15").unwrap(), parse_date("2027-05-15").unwrap()).unwrap()
    }

    fn objective() -> ObjectiveInput {
        ObjectiveInput {
            quarter: "2027-Q1".into(),
            title: "Clinicians trust the drafts".into(),
            commitment: "committed".into(),
            ..Default::default()
        }
    }

    #[test]
    fn objectives_must_sit_in_a_quarter_of_the_season() {
        let spec = objective().validate(&season()).unwrap();
        assert_eq!(spec.weight.get(), 1.0);
        assert_eq!(spec.owner, None);
        let q2 = ObjectiveInput { quarter: "2027-Q2".into(), ..objective() };
        assert!(q2.validate(&season()).is_ok(), "Q2 overlaps the season's last six weeks");
        let q3 = ObjectiveInput { quarter: "2027-Q3".into(), ..objective() };
        let err = q3.validate(&season()).unwrap_err();
        assert_eq!(err.get("quarter").unwrap()[0], "2027-Q3 is outside the season; choose one of 2027-Q1, 2027-Q2");
    }

    #[test]
    fn objectives_need_a_known_commitment_and_positive_weight() {
        let bad = ObjectiveInput { commitment: "maybe".into(), weight: Some(0.0), ..objective() };
        let err = bad.validate(&season()).unwrap_err();
        assert!(err.get("commitment").is_some());
        assert!(err.get("weight").is_some());
    }

    #[test]
    fn key_results_validate_measure_weight_and_confidence() {
        let kr = KeyResultInput {
            title: "Acceptance rate".into(),
            kind: "increase-to".into(),
            start: Some(0.2),
            target: Some(0.35),
            confidence: Some(1.5),
            ..Default::default()
        };
        let err = kr.validate().unwrap_err();
        assert_eq!(err.0.keys().collect::<Vec<_>>(), ["confidence"]);
        let ok = KeyResultInput { confidence: Some(0.6), ..kr };
        let spec = ok.validate().unwrap();
        assert_eq!(spec.weight.get(), 1.0);
    }

    #[test]
    fn key_result_json_is_flat() {
        let kr: KeyResultInput =
            serde_json::from_str(r#"{"title":"Latency","kind":"decrease-to","start":900,"target":300,"unit":"ms"}"#)
                .unwrap();
        assert!(matches!(kr.validate().unwrap().measure, Measure::DecreaseTo { .. }));
    }
}
