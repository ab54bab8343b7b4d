//! Read models of the runner pages: jobs with their loss curves, and the model registry with its
//! promotions and datasets.
//!
//! They are made from the runner's records by the pure functions below, so the browser and the server
//! agree on them and they can be tested without a store. Times are text in the form the pages print
//! them (`YYYY-MM-DD HH:MM:SS`, UTC).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::runner::{Alias, Dataset, Job, JobMetric, Model, Promotion};

/// A job as the jobs pages list it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobRow {
    pub id: i64,
    pub kind: String,
    pub status: String,
    pub step: i64,
    pub total_steps: i64,
    pub attempts: i64,
    pub cancel_requested: bool,
    pub error: Option<String>,
    pub created_at: String,
    pub finished_at: Option<String>,
    /// The model a finished training job registered.
    pub model_id: Option<i64>,
}

/// One optimizer step's metrics, as the loss chart plots them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepPoint {
    pub step: i64,
    pub loss: f64,
    pub lr: f64,
    pub grad_norm: f64,
    pub tokens_per_s: f64,
    #[serde(default)]
    pub reward_margin: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobView {
    pub job: JobRow,
    /// The job's specification and result, as indented JSON.
    pub spec: String,
    pub result: Option<String>,
    pub points: Vec<StepPoint>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelRow {
    pub id: i64,
    pub name: String,
    pub kind: String,
    pub loop_key: Option<String>,
    pub base: Option<(i64, String)>,
    pub dataset_digest: Option<String>,
    pub job_id: Option<i64>,
    pub parameters: i64,
    pub reward: Option<f64>,
    pub scores: Vec<(String, f64)>,
    /// `loop: alias` for each alias naming the model.
    pub aliases: Vec<String>,
    pub created_at: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PromotionRow {
    pub at: String,
    pub loop_key: String,
    pub challenger: String,
    pub champion: Option<String>,
    pub accepted: bool,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatasetRow {
    pub id: i64,
    pub name: String,
    pub kind: String,
    pub rows: i64,
    pub digest: String,
    pub source: String,
    pub created_at: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelsView {
    pub models: Vec<ModelRow>,
    pub promotions: Vec<PromotionRow>,
    pub datasets: Vec<DatasetRow>,
}

/// How the runner pages print an instant.
fn time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S").to_string()
}

impl From<&Job> for JobRow {
    fn from(j: &Job) -> Self {
        JobRow {
            id: j.id,
            kind: j.kind.to_string(),
            status: j.status.to_string(),
            step: j.step,
            total_steps: j.total_steps,
            attempts: j.attempts,
            cancel_requested: j.cancel_requested,
            error: j.error.clone(),
            created_at: time(j.created_at),
            finished_at: j.finished_at.map(time),
            model_id: j.result_model(),
        }
    }
}

impl From<&JobMetric> for StepPoint {
    fn from(m: &JobMetric) -> Self {
        StepPoint {
            step: m.step,
            loss: m.loss,
            lr: m.lr,
            grad_norm: m.grad_norm,
            tokens_per_s: m.tokens_per_s,
            reward_margin: m.reward_margin,
        }
    }
}

impl JobView {
    /// The page of `job`, with the metrics of its steps so far, oldest first.
    pub fn of(job: &Job, metrics: &[JobMetric]) -> JobView {
        // These are the domain's own types, which always serialise; an empty text is the harmless answer
        // were one ever not to.
        fn pretty(v: &impl Serialize) -> String {
            serde_json::to_string_pretty(v).unwrap_or_default()
        }
        JobView {
            job: JobRow::from(job),
            spec: pretty(&job.spec),
            result: job.result.as_ref().map(pretty),
            points: metrics.iter().map(StepPoint::from).collect(),
        }
    }
}

impl ModelRow {
    /// The row of `m`: `all` (the organisation's models) names its base model, and the `aliases` that
    /// point at it are listed as `loop: alias`.
    pub fn of(m: &Model, all: &[Model], aliases: &[Alias]) -> ModelRow {
        // A score that could not be measured (NaN) is left out, as it always was.
        let scores = m
            .eval
            .as_ref()
            .map(|e| e.scores.iter().filter(|(_, v)| !v.is_nan()).map(|(k, v)| (k.clone(), *v)).collect())
            .unwrap_or_default();
        ModelRow {
            id: m.id,
            name: m.name.clone(),
            kind: m.kind.to_string(),
            loop_key: m.loop_key.clone(),
            base: m
                .base_model_id
                .map(|b| (b, all.iter().find(|x| x.id == b).map(|x| x.name.clone()).unwrap_or_default())),
            dataset_digest: m.dataset_digest.clone(),
            job_id: m.job_id,
            parameters: m.parameters,
            reward: m.reward,
            scores,
            aliases: aliases
                .iter()
                .filter(|a| a.model_id == m.id)
                .map(|a| format!("{}: {}", a.loop_key, a.alias))
                .collect(),
            created_at: time(m.created_at),
        }
    }
}

impl PromotionRow {
    /// The row of `p`, its models named from `all`; a model not among them is called `model {id}`.
    pub fn of(p: &Promotion, all: &[Model]) -> PromotionRow {
        let name =
            |id: i64| all.iter().find(|m| m.id == id).map(|m| m.name.clone()).unwrap_or_else(|| format!("model {id}"));
        PromotionRow {
            at: time(p.at),
            loop_key: p.loop_key.clone(),
            challenger: name(p.challenger_id),
            champion: p.champion_id.map(name),
            accepted: p.accepted,
            reason: p.decision.reason.clone(),
        }
    }
}

impl From<&Dataset> for DatasetRow {
    fn from(d: &Dataset) -> Self {
        DatasetRow {
            id: d.id,
            name: d.name.clone(),
            kind: d.kind.to_string(),
            rows: d.rows,
            // `sha256:` and the first twelve hex digits: enough to tell versions apart on a page.
            digest: d.digest.chars().take(19).collect(),
            source: d.source.to_string(),
            created_at: time(d.created_at),
        }
    }
}

impl ModelsView {
    /// The registry page: every model, every promotion decision and every dataset, as listed.
    pub fn of(models: &[Model], aliases: &[Alias], promotions: &[Promotion], datasets: &[Dataset]) -> ModelsView {
        ModelsView {
            models: models.iter().map(|m| ModelRow::of(m, models, aliases)).collect(),
            promotions: promotions.iter().map(|p| PromotionRow::of(p, models)).collect(),
            datasets: datasets.iter().map(DatasetRow::from).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::runner::{
        AliasKind, Contender, DatasetKind, DatasetSource, ModelEval, ModelKind, PromotionDecision, TrainMetrics,
    };
    use crate::training::{EvalConfig, ModelConfig, RewardSpec};

    fn at(raw: &str) -> DateTime<Utc> {
        raw.parse().expect("fixture instants are valid")
    }

    fn model(id: i64, name: &str, base: Option<i64>) -> Model {
        Model {
            id,
            name: name.into(),
            loop_key: Some("notes".into()),
            kind: ModelKind::Sft,
            base_model_id: base,
            dataset_digest: None,
            job_id: Some(7),
            path: format!("models/{id}"),
            config: ModelConfig::default(),
            parameters: 1000,
            train_metrics: TrainMetrics::Provenance(serde_json::Value::Null),
            eval: None,
            reward: None,
            evaluated_at: None,
            created_at: at("2027-01-04T08:09:10.5Z"),
        }
    }

    fn alias(loop_key: &str, alias: AliasKind, model_id: i64) -> Alias {
        Alias { loop_key: loop_key.into(), alias, model_id, updated_at: at("2027-01-05T00:00:00Z") }
    }

    #[test]
    fn a_model_row_names_its_base_and_aliases_and_leaves_out_unmeasured_scores() {
        let base = model(1, "base", None);
        let mut tuned = model(2, "tuned", Some(1));
        let scores = BTreeMap::from([("perplexity".to_owned(), f64::NAN), ("replay_acceptance".to_owned(), 0.5)]);
        tuned.eval = Some(ModelEval {
            scores,
            counts: BTreeMap::new(),
            reward: 0.5,
            reward_spec: RewardSpec::default(),
            held_out_digest: "sha256:x".into(),
            config: EvalConfig::default(),
        });
        let all = [base.clone(), tuned.clone()];
        let aliases = [
            alias("notes", AliasKind::Champion, 2),
            alias("search", AliasKind::Challenger, 2),
            alias("notes", AliasKind::Challenger, 1),
        ];
        let row = ModelRow::of(&tuned, &all, &aliases);
        assert_eq!(row.base, Some((1, "base".to_owned())));
        assert_eq!(row.scores, vec![("replay_acceptance".to_owned(), 0.5)], "a NaN score is left out");
        assert_eq!(row.aliases, ["notes: champion", "search: challenger"]);
        assert_eq!((row.kind.as_str(), row.created_at.as_str()), ("sft", "2027-01-04 08:09:10"));

        let row = ModelRow::of(&base, &all, &aliases);
        assert_eq!((row.base, row.scores, row.aliases), (None, vec![], vec!["notes: challenger".to_owned()]));
        // A base model that is not listed keeps its id, with no name to show.
        let orphan = ModelRow::of(&model(3, "orphan", Some(9)), &all, &[]);
        assert_eq!(orphan.base, Some((9, String::new())));
    }

    #[test]
    fn a_promotion_row_names_its_models_and_falls_back_to_their_ids() {
        let all = [model(1, "base", None), model(2, "tuned", Some(1))];
        let promotion = |challenger_id, champion_id| Promotion {
            id: 1,
            loop_key: "notes".into(),
            challenger_id,
            champion_id,
            accepted: true,
            decision: PromotionDecision {
                challenger: Contender { id: challenger_id, name: String::new(), reward: None },
                champion: None,
                experiment: None,
                online_rule: None,
                offline_rule: None,
                offline_margin: None,
                reason: "reward 0.6 beats 0.5".into(),
            },
            at: at("2027-01-06T12:00:00Z"),
        };
        let row = PromotionRow::of(&promotion(2, Some(1)), &all);
        assert_eq!((row.challenger.as_str(), row.champion.as_deref()), ("tuned", Some("base")));
        assert_eq!((row.at.as_str(), row.reason.as_str()), ("2027-01-06 12:00:00", "reward 0.6 beats 0.5"));
        let row = PromotionRow::of(&promotion(5, Some(6)), &all);
        assert_eq!((row.challenger.as_str(), row.champion.as_deref()), ("model 5", Some("model 6")));
        assert_eq!(PromotionRow::of(&promotion(2, None), &all).champion, None, "a loop without a champion");
    }

    #[test]
    fn a_dataset_row_shortens_the_digest_and_says_where_the_rows_came_from() {
        let dataset = Dataset {
            id: 4,
            name: "notes-sft".into(),
            kind: DatasetKind::Sft,
            digest: "sha256:0123456789abcdef0123".into(),
            rows: 12,
            bytes: 3400,
            path: "datasets/4.jsonl".into(),
            source: DatasetSource::Upload { upload: "a.jsonl".into() },
            created_at: at("2027-01-04T08:00:00Z"),
        };
        let row = DatasetRow::from(&dataset);
        assert_eq!(row.digest, "sha256:0123456789ab");
        assert_eq!((row.source.as_str(), row.kind.as_str()), ("upload a.jsonl", "sft"));
    }
}
