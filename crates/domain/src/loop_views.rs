//! Read models of the loops pages: the overview of every loop and metric, and the page of one loop.
//!
//! Times arrive as text in the form the pages print them. The service layer fills these models from the
//! store's and the metrics engine's types, which this crate must not depend on.

use serde::{Deserialize, Serialize};

use chrono::{DateTime, Utc};

use crate::experiment::{DriftAlert, Experiment};
use crate::metric::MetricDefinition;
use crate::runner::Model;
use crate::views::MetricSeries;

/// One row of the loops overview.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoopRow {
    pub key: String,
    pub events: i64,
    pub segments: i64,
    pub first_event: String,
    pub last_event: String,
}

/// Every loop, every metric with its series, and recent drift alerts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoopsOverview {
    pub loops: Vec<LoopRow>,
    pub metrics: Vec<MetricSeries>,
    pub alerts: Vec<DriftAlert>,
}

/// Acceptance of one variant on one day.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AcceptanceRow {
    pub variant: String,
    pub day: String,
    pub value: f64,
    pub ci_low: Option<f64>,
    pub ci_high: Option<f64>,
    pub users: u64,
}

/// A weekly cohort: its Monday, size and the share active in each following week.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CohortRow {
    pub week: String,
    pub size: u64,
    pub shares: Vec<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchRow {
    pub id: i64,
    pub rows: i64,
    pub stored: i64,
    pub duplicates: i64,
    pub received_at: String,
}

/// What the page of one loop shows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoopView {
    pub key: String,
    pub summary: Option<LoopRow>,
    pub method: String,
    /// Acceptance per line of [`LoopView::lines`] and day: each row's `variant` is its line's label.
    pub acceptance: Vec<AcceptanceRow>,
    /// What each line of the acceptance chart stands for, in the order the chart draws them.
    pub lines: Vec<AcceptanceLine>,
    pub cohorts: Vec<CohortRow>,
    pub metrics: Vec<MetricDefinition>,
    pub batches: Vec<BatchRow>,
}

/// What a line of a loop page's acceptance chart stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LineRole {
    /// The control arm of the loop's current experiment.
    Control,
    /// Its treatment arm.
    Treatment,
    /// The champion, served outside the experiment.
    Champion,
    /// Every other variant pooled: models that were served before.
    Earlier,
    /// A variant of a loop that Slope neither serves nor tests, drawn as it is.
    Variant,
}

/// One line of a loop page's acceptance chart: the event variants it pools and the model behind them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AcceptanceLine {
    /// The name in the chart's legend and in its rows.
    pub label: String,
    pub role: LineRole,
    /// The event variants the line pools (their characters are summed, not their rates averaged).
    pub variants: Vec<String>,
    /// The model the line served, when one is known.
    pub model: Option<String>,
}

/// The label of the line that pools every earlier model.
pub const EARLIER_MODELS: &str = "earlier models";

/// The experiment a loop's page follows: the one assigning users now, else the one that started last
/// (the latest created among those starting the same day).
pub fn current_experiment(experiments: &[Experiment], loop_key: &str, now: DateTime<Utc>) -> Option<Experiment> {
    let of_loop = || experiments.iter().filter(|e| e.loop_key == loop_key);
    of_loop()
        .filter(|e| e.is_active(now))
        .max_by_key(|e| (e.starts_on, e.created_at, e.id))
        .or_else(|| of_loop().max_by_key(|e| (e.starts_on, e.created_at, e.id)))
        .cloned()
}

/// The lines of a loop's acceptance chart, given the variants its events name.
///
/// A loop that Slope serves or tests (it has a champion or an experiment) gets one line per arm of its
/// current experiment, one for the champion where it is served outside the experiment (its events name
/// the model itself), and one pooling every other variant as "earlier models", so the legend stays
/// short however many iterations the loop has turned. A loop with neither is fed by another system whose
/// variants mean nothing to Slope: each is drawn as it is.
pub fn acceptance_lines(
    variants: &[String],
    experiment: Option<&Experiment>,
    champion: Option<&Model>,
    models: &[Model],
) -> Vec<AcceptanceLine> {
    if experiment.is_none() && champion.is_none() {
        return variants
            .iter()
            .map(|v| AcceptanceLine {
                label: v.clone(),
                role: LineRole::Variant,
                variants: vec![v.clone()],
                model: None,
            })
            .collect();
    }
    let name_of = |id: Option<i64>| id.and_then(|id| models.iter().find(|m| m.id == id)).map(|m| m.name.clone());
    let mut lines = Vec::new();
    if let Some(e) = experiment {
        for (role, arm, variant, model) in [
            (LineRole::Control, "control", &e.control, name_of(e.control_model_id)),
            (LineRole::Treatment, "treatment", &e.treatment, name_of(e.treatment_model_id)),
        ] {
            let label = match &model {
                Some(name) => format!("{arm}: {name}"),
                None => format!("{arm} arm"),
            };
            lines.push(AcceptanceLine { label, role, variants: vec![variant.clone()], model });
        }
    }
    if let Some(c) = champion
        && !lines.iter().any(|l| l.variants.contains(&c.name))
    {
        lines.push(AcceptanceLine {
            label: format!("champion: {}", c.name),
            role: LineRole::Champion,
            variants: vec![c.name.clone()],
            model: Some(c.name.clone()),
        });
    }
    let earlier: Vec<String> =
        variants.iter().filter(|v| !lines.iter().any(|l| l.variants.contains(v))).cloned().collect();
    if !earlier.is_empty() {
        lines.push(AcceptanceLine {
            label: EARLIER_MODELS.to_owned(),
            role: LineRole::Earlier,
            variants: earlier,
            model: None,
        });
    }
    lines
}

#[cfg(test)]
mod tests {
    use chrono::NaiveDate;

    use super::*;
    use crate::OrgId;
    use crate::runner::{ModelKind, TrainMetrics};
    use crate::training::ModelConfig;

    fn experiment(id: i64, starts: u32, stopped: bool, control_model: Option<i64>) -> Experiment {
        let day = |d: u32| NaiveDate::from_ymd_opt(2027, 3, d).unwrap();
        Experiment {
            id,
            org_id: OrgId(1),
            key: format!("e{id}"),
            name: format!("E{id}"),
            loop_key: "notes".into(),
            control: format!("e{id}-champion"),
            treatment: format!("e{id}-challenger"),
            starts_on: day(starts),
            ends_on: day(starts + 7),
            expected_share: 0.5,
            created_at: day(starts).and_hms_opt(0, 0, 0).unwrap().and_utc(),
            control_model_id: control_model,
            treatment_model_id: Some(2),
            stopped_at: stopped.then(|| day(starts).and_hms_opt(12, 0, 0).unwrap().and_utc()),
        }
    }

    #[test]
    fn the_current_experiment_is_the_active_one_else_the_latest() {
        let now = NaiveDate::from_ymd_opt(2027, 3, 5).unwrap().and_hms_opt(9, 0, 0).unwrap().and_utc();
        let active = experiment(1, 1, false, None);
        let later_stopped = experiment(2, 4, true, None);
        let mut other_loop = experiment(3, 5, false, None);
        other_loop.loop_key = "agents".into();
        let all = [active.clone(), later_stopped.clone(), other_loop];
        assert_eq!(current_experiment(&all, "notes", now).map(|e| e.id), Some(1));
        let none_active = [later_stopped.clone(), experiment(4, 2, true, None)];
        assert_eq!(current_experiment(&none_active, "notes", now).map(|e| e.id), Some(2));
        assert_eq!(current_experiment(&none_active, "agents", now), None);
    }

    fn model(id: i64, name: &str) -> Model {
        Model {
            id,
            name: name.into(),
            loop_key: Some("notes".into()),
            kind: ModelKind::Sft,
            base_model_id: None,
            dataset_digest: None,
            job_id: None,
            path: format!("models/{id}"),
            config: ModelConfig::default(),
            parameters: 1000,
            train_metrics: TrainMetrics::Provenance(serde_json::Value::Null),
            eval: None,
            reward: None,
            evaluated_at: None,
            created_at: Utc::now(),
        }
    }

    #[test]
    fn arms_and_the_champion_get_lines_and_every_other_variant_is_pooled() {
        let models = [model(1, "notes-v1"), model(2, "notes-v2"), model(3, "notes-v0")];
        let e = experiment(1, 1, false, Some(1));
        let seen: Vec<String> =
            ["e0-champion", "e0-challenger", "e1-champion", "e1-challenger", "notes-v0", "notes-v1"]
                .map(String::from)
                .into();
        let lines = acceptance_lines(&seen, Some(&e), Some(&models[0]), &models);
        let labels: Vec<&str> = lines.iter().map(|l| l.label.as_str()).collect();
        assert_eq!(labels, ["control: notes-v1", "treatment: notes-v2", "champion: notes-v1", EARLIER_MODELS]);
        assert_eq!(lines[3].variants, ["e0-champion", "e0-challenger", "notes-v0"]);
        assert_eq!(lines[1].model.as_deref(), Some("notes-v2"));

        // An arm without a recorded model says so; nothing left over, no pooled line.
        let e = experiment(1, 1, false, None);
        let lines = acceptance_lines(&["e1-champion".to_owned()], Some(&e), None, &models);
        let labels: Vec<&str> = lines.iter().map(|l| l.label.as_str()).collect();
        assert_eq!(labels, ["control arm", "treatment: notes-v2"]);
    }

    #[test]
    fn a_loop_slope_neither_serves_nor_tests_keeps_its_variants() {
        let seen: Vec<String> = ["a", "b", "c", "d", "e"].map(String::from).into();
        let lines = acceptance_lines(&seen, None, None, &[]);
        assert_eq!(lines.len(), 5);
        assert!(lines.iter().all(|l| l.role == LineRole::Variant && l.variants == [l.label.clone()]));
    }
}
