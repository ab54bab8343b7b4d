//! The fine-tune/eval runner's records in the domain's terms: datasets, jobs, models, aliases,
//! promotion decisions and served suggestions.
//!
//! The store keeps several of these partly as JSON (a job's specification and result, a model's config,
//! training summary and eval, a promotion's decision, a dataset's lineage). They are parsed into the
//! types below at the store's edge, so the service, the API and the UI read fields, never keys of a JSON
//! tree. Their serialised form is the API's wire form, which is why every type keeps the field names and
//! the `null`s it has always sent.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize};

use crate::entities::string_enum;
use crate::training::{EvalConfig, ModelConfig, RewardSpec, TrainConfig};
use crate::{FieldErrors, Key, OfflineRule, OnlineLift, OnlineRule, OrgId, RewardMargin};

string_enum!(
    /// What a job does: pre-train or fine-tune a model (SFT, DPO), or evaluate one.
    JobKind { Pretrain => "pretrain", Sft => "sft", Dpo => "dpo", Eval => "eval" }
);

string_enum!(
    /// Where a job is in its life. Succeeded, failed and cancelled are final.
    JobStatus {
        Pending => "pending",
        Running => "running",
        Succeeded => "succeeded",
        Failed => "failed",
        Cancelled => "cancelled",
    }
);

string_enum!(
    /// What a dataset can train: text and prompt/completion rows may be mixed (pre-training and SFT);
    /// preference rows stand alone (DPO).
    DatasetKind { Text => "text", Sft => "sft", Preference => "preference" }
);

string_enum!(
    /// How a model came to be: trained by a job of that kind, or imported from a folder.
    ModelKind { Pretrain => "pretrain", Sft => "sft", Dpo => "dpo", Import => "import" }
);

string_enum!(
    /// A loop's named pointers at models: the champion serves everyone, the challenger the treatment arm
    /// of a running experiment.
    AliasKind { Champion => "champion", Challenger => "challenger" }
);

string_enum!(
    /// What a loop's datasets are built from: the events (what users finally wrote), the expert
    /// annotations of its queues, or both (events, with each annotated event's rows taken from its
    /// annotations instead).
    DatasetBasis { Events => "events", Annotations => "annotations", Both => "both" }
);

impl JobStatus {
    /// True once the job can change no more.
    pub fn is_final(self) -> bool {
        matches!(self, JobStatus::Succeeded | JobStatus::Failed | JobStatus::Cancelled)
    }
}

impl JobKind {
    /// Whether a job of this kind can learn from a dataset of `data`'s kind.
    pub fn trains_on(self, data: DatasetKind) -> bool {
        match self {
            JobKind::Dpo => data == DatasetKind::Preference,
            JobKind::Pretrain | JobKind::Sft => data != DatasetKind::Preference,
            JobKind::Eval => true,
        }
    }

    /// The kind of model a training job registers; eval jobs register none.
    pub fn model_kind(self) -> Option<ModelKind> {
        match self {
            JobKind::Pretrain => Some(ModelKind::Pretrain),
            JobKind::Sft => Some(ModelKind::Sft),
            JobKind::Dpo => Some(ModelKind::Dpo),
            JobKind::Eval => None,
        }
    }
}

/// JSON has no NaN: serde_json writes a non-finite float as `null`. Fields that may hold one read
/// `null` back as NaN, so a diverged loss or an unmeasurable score survives a round trip through the
/// store as the NaN it was.
fn nan_if_null<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

fn nan_pair_if_null<'de, D: Deserializer<'de>>(d: D) -> Result<[f64; 2], D::Error> {
    let [a, b] = <[Option<f64>; 2]>::deserialize(d)?;
    Ok([a.unwrap_or(f64::NAN), b.unwrap_or(f64::NAN)])
}

fn nan_map_if_null<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, f64>, D::Error> {
    let raw = BTreeMap::<String, Option<f64>>::deserialize(d)?;
    Ok(raw.into_iter().map(|(k, v)| (k, v.unwrap_or(f64::NAN))).collect())
}

// ---- datasets ------------------------------------------------------------------------------------

/// The time range of the events a dataset was built from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventRange {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
}

/// Where a dataset's rows came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum DatasetSource {
    /// Built from a loop's stored events.
    Events {
        #[serde(rename = "loop")]
        loop_key: String,
        /// The event segments read.
        segments: Vec<i64>,
        /// How many events became rows.
        events: i64,
        range: Option<EventRange>,
        /// The object-store path of the JSON list of the event ids used, one per row.
        event_ids: String,
        /// Expert annotations behind the rows, for datasets built with annotations.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        annotations: Option<i64>,
        /// The object-store path of each annotated row's lineage (a JSON list of `RowLineage`: the row,
        /// its items and their queues, event, annotations and annotators).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        annotation_lineage: Option<String>,
    },
    /// Made by the demo's simulator, and labelled so.
    Simulated { simulated: bool, what: String, for_loop: String },
    /// Uploaded through the API under this name.
    Upload { upload: String },
    /// Added from a file by the command line.
    File { file: String },
}

impl DatasetSource {
    /// The loop whose events the rows are, for datasets built from events.
    pub fn loop_key(&self) -> Option<&str> {
        match self {
            DatasetSource::Events { loop_key, .. } => Some(loop_key),
            _ => None,
        }
    }

    /// The time range of the events, for datasets built from events that had any.
    pub fn range(&self) -> Option<&EventRange> {
        match self {
            DatasetSource::Events { range, .. } => range.as_ref(),
            _ => None,
        }
    }

    /// How many events became rows, for datasets built from events.
    pub fn events(&self) -> Option<i64> {
        match self {
            DatasetSource::Events { events, .. } => Some(*events),
            _ => None,
        }
    }

    /// How many expert annotations the rows used (none for datasets built without them).
    pub fn annotations(&self) -> Option<i64> {
        match self {
            DatasetSource::Events { annotations, .. } => *annotations,
            _ => None,
        }
    }

    /// The objects of the object store the lineage names beside the data, which must live as long as
    /// the dataset.
    pub fn objects(&self) -> Vec<&str> {
        match self {
            DatasetSource::Events { event_ids, annotation_lineage, .. } => {
                std::iter::once(event_ids.as_str()).chain(annotation_lineage.as_deref()).collect()
            }
            _ => vec![],
        }
    }
}

impl fmt::Display for DatasetSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DatasetSource::Events { loop_key, events, annotations: Some(n), .. } => {
                write!(f, "{events} events of loop {loop_key}, {n} expert annotations")
            }
            DatasetSource::Events { loop_key, events, .. } => write!(f, "{events} events of loop {loop_key}"),
            DatasetSource::Simulated { what, .. } => write!(f, "simulated: {what}"),
            DatasetSource::Upload { upload } => write!(f, "upload {upload}"),
            DatasetSource::File { file } => write!(f, "file {file}"),
        }
    }
}

/// A registered dataset version: JSONL in the object store, named by the digest of its content.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(as = DatasetRecord))]
pub struct Dataset {
    pub id: i64,
    pub name: String,
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub kind: DatasetKind,
    pub digest: String,
    pub rows: i64,
    pub bytes: i64,
    pub path: String,
    #[cfg_attr(feature = "openapi", schema(value_type = Value))]
    pub source: DatasetSource,
    pub created_at: DateTime<Utc>,
}

// ---- jobs ----------------------------------------------------------------------------------------

/// What a client asks of a job, as sent. [`JobRequest::parse`] checks everything that needs no stored
/// data and turns it into the [`JobSpec`] the job keeps.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct JobRequest {
    /// `pretrain`, `sft`, `dpo` or `eval`.
    pub kind: String,
    /// The loop the resulting model serves (it becomes that loop's challenger).
    #[serde(rename = "loop", default, skip_serializing_if = "Option::is_none")]
    pub loop_key: Option<String>,
    /// The model to start from (`sft`, `dpo`, optionally `pretrain`) or to evaluate (`eval`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_id: Option<i64>,
    /// The training data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataset_id: Option<i64>,
    /// Held-out data for the evals; training jobs evaluate their model on it when it is given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held_out_id: Option<i64>,
    /// The name of the model a training job registers [default: `<loop|model>-<kind>-j<job>`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The shape of a model pre-trained from scratch [default: the default model].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub model_config: Option<ModelConfig>,
    /// Training settings (`steps`, `batch_size`, `grad_accum`, `seq_len`, `lr`, `warmup_steps`,
    /// `min_lr_ratio`, `weight_decay`, …); each left out takes its default.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub train: TrainConfig,
    /// Eval settings (`k`, `positions_per_text`, `seed`, `dpo_beta`); each left out takes its default.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub eval: EvalConfig,
    /// How eval scores weigh into the reward: `{weights: {score: weight}, cpu_usd_per_hour}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub reward: Option<RewardSpec>,
}

/// A job's specification as stored: a [`JobRequest`] whose kind, loop and settings have been checked.
/// It serialises to exactly the request it came from (with the loop key as parsed).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JobSpec {
    pub kind: JobKind,
    #[serde(rename = "loop", default, skip_serializing_if = "Option::is_none")]
    pub loop_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_id: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataset_id: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held_out_id: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_config: Option<ModelConfig>,
    #[serde(default)]
    pub train: TrainConfig,
    #[serde(default)]
    pub eval: EvalConfig,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reward: Option<RewardSpec>,
}

/// The most characters one suggestion may have.
pub const MAX_SUGGESTION_CHARS: usize = 64;

impl JobRequest {
    /// Checks what needs no stored data: the kind, the loop key, the model name's length, the eval
    /// settings and the reward spec. The service checks the rest (referenced models and datasets, what
    /// the model and data allow) against the store and adds its messages to the same map.
    pub fn parse(&self) -> Result<JobSpec, FieldErrors> {
        let (spec, errors) = self.check()?;
        errors.into_result(spec)
    }

    /// [`JobRequest::parse`] that keeps going past bad fields: `Err` only for an unknown kind (nothing
    /// else can be judged without knowing what the job is), otherwise the spec with every field that
    /// parsed (a bad loop key or name left out) and the messages of those that did not, so that the
    /// service can add the store's checks and report every problem in one answer.
    pub fn check(&self) -> Result<(JobSpec, FieldErrors), FieldErrors> {
        let mut errors = FieldErrors::new();
        let Ok(kind) = self.kind.parse::<JobKind>() else {
            let all: Vec<&str> = JobKind::ALL.iter().map(|k| k.as_str()).collect();
            return Err(FieldErrors::single("kind", format!("must be one of {}", all.join(", "))));
        };
        // The loop key is stored as parsed, so " notes" and "notes" are one loop.
        let loop_key = match self.loop_key.as_deref().map(Key::parse) {
            Some(Ok(key)) => Some(key.as_str().to_owned()),
            Some(Err(m)) => {
                errors.add("loop", m);
                None
            }
            None => None,
        };
        let name = match &self.name {
            Some(name) if name.trim().is_empty() || name.len() > 100 => {
                errors.add("name", "must be 1 to 100 characters");
                None
            }
            name => name.as_ref().map(|n| n.trim().to_owned()),
        };
        if let Some(spec) = &self.reward
            && let Err(e) = spec.validate()
        {
            errors.merge(e.prefixed("reward"));
        }
        if !(self.eval.dpo_beta > 0.0 && self.eval.dpo_beta <= 10.0) {
            errors.add("eval.dpo_beta", "must be in (0, 10]");
        }
        if !(1..=MAX_SUGGESTION_CHARS).contains(&self.eval.k) {
            errors.add("eval.k", format!("must be between 1 and {MAX_SUGGESTION_CHARS}"));
        }
        if !(1..=1000).contains(&self.eval.positions_per_text) {
            errors.add("eval.positions_per_text", "must be between 1 and 1000");
        }
        let spec = JobSpec {
            kind,
            loop_key,
            model_id: self.model_id,
            dataset_id: self.dataset_id,
            held_out_id: self.held_out_id,
            name,
            model_config: self.model_config.clone(),
            train: self.train.clone(),
            eval: self.eval.clone(),
            reward: self.reward.clone(),
        };
        Ok((spec, errors))
    }
}

impl JobSpec {
    /// The steps a job of this spec runs: one for an eval, the training steps otherwise.
    pub fn total_steps(&self) -> i64 {
        if self.kind == JobKind::Eval { 1 } else { self.train.steps as i64 }
    }

    /// The name of the model a training job registers.
    pub fn model_name(&self, job_id: i64) -> String {
        match &self.name {
            Some(n) => n.clone(),
            None => format!("{}-{}-j{job_id}", self.loop_key.as_deref().unwrap_or("model"), self.kind),
        }
    }
}

/// What a training run did, as recorded on its job and its model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainSummary {
    pub steps: usize,
    /// Mean loss of the last steps; NaN (`null`) when training diverged.
    #[serde(deserialize_with = "nan_if_null")]
    pub final_loss: f64,
    pub tokens: u64,
    #[serde(deserialize_with = "nan_if_null")]
    pub seconds: f64,
    #[serde(deserialize_with = "nan_if_null")]
    pub tokens_per_s: f64,
    /// The step a resumed run started from.
    pub resumed_from: Option<usize>,
    pub objective: JobKind,
}

/// A model's scores on held-out data, with everything needed to compare it with another model's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelEval {
    /// Scores by name; a score that could not be measured is NaN (`null`).
    #[serde(deserialize_with = "nan_map_if_null")]
    pub scores: BTreeMap<String, f64>,
    /// How much each score rests on: windows, cursor positions, rows.
    pub counts: BTreeMap<String, u64>,
    pub reward: f64,
    pub reward_spec: RewardSpec,
    pub held_out_digest: String,
    pub config: EvalConfig,
}

impl ModelEval {
    /// Whether two evals measured the same thing the same way, so that their rewards compare: the
    /// same held-out data, reward spec and eval settings.
    pub fn comparable(&self, other: &ModelEval) -> bool {
        self.held_out_digest == other.held_out_digest
            && self.reward_spec == other.reward_spec
            && self.config == other.config
    }
}

/// What an ended job produced.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct JobResult {
    /// The model an eval job scored, or the one a training job registered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_id: Option<i64>,
    /// The name of the model a training job registered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// A training job's summary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub train: Option<TrainSummary>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eval: Option<ModelEval>,
    /// Why a trained model did not become its loop's challenger, when it did not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub challenger: Option<String>,
}

/// A queued, running or finished job. `status` is one of "pending", "running", "succeeded", "failed"
/// and "cancelled".
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(as = JobRecord))]
pub struct Job {
    pub id: i64,
    #[cfg_attr(feature = "openapi", schema(value_type = i64))]
    pub org_id: OrgId,
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub kind: JobKind,
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub status: JobStatus,
    #[cfg_attr(feature = "openapi", schema(value_type = Value))]
    pub spec: JobSpec,
    pub step: i64,
    pub total_steps: i64,
    pub progress: f64,
    pub attempts: i64,
    pub lease_owner: Option<String>,
    pub lease_expires_at: Option<DateTime<Utc>>,
    pub heartbeat_at: Option<DateTime<Utc>>,
    pub cancel_requested: bool,
    pub checkpoint_path: Option<String>,
    pub checkpoint_step: Option<i64>,
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Value>))]
    pub result: Option<JobResult>,
    pub error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
}

impl Job {
    /// The model a finished eval job scored, or that a training job registered.
    pub fn result_model(&self) -> Option<i64> {
        self.result.as_ref().and_then(|r| r.model_id)
    }

    /// When the job last did something: its end, else its start, else its creation.
    pub fn last_activity(&self) -> DateTime<Utc> {
        self.finished_at.or(self.started_at).unwrap_or(self.created_at)
    }
}

/// The metrics of one training step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct JobMetric {
    pub step: i64,
    pub loss: f64,
    pub lr: f64,
    pub grad_norm: f64,
    pub tokens_per_s: f64,
    pub reward_margin: Option<f64>,
    pub reward_accuracy: Option<f64>,
    pub at: DateTime<Utc>,
}

// ---- models --------------------------------------------------------------------------------------

/// How a model was made: a training run's summary, or, for an imported model, the provenance document
/// that came with it (kept as it is: Slope shows it and never interprets it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum TrainMetrics {
    Trained(TrainSummary),
    Provenance(serde_json::Value),
}

/// A registered model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(as = ModelRecord))]
pub struct Model {
    pub id: i64,
    pub name: String,
    pub loop_key: Option<String>,
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub kind: ModelKind,
    pub base_model_id: Option<i64>,
    pub dataset_digest: Option<String>,
    pub job_id: Option<i64>,
    pub path: String,
    #[cfg_attr(feature = "openapi", schema(value_type = Value))]
    pub config: ModelConfig,
    pub parameters: i64,
    #[cfg_attr(feature = "openapi", schema(value_type = Value))]
    pub train_metrics: TrainMetrics,
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Value>))]
    pub eval: Option<ModelEval>,
    pub reward: Option<f64>,
    pub evaluated_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

impl Model {
    /// Whether both models were evaluated, and their evals compare (same held-out data, spec and
    /// settings), so that the gate can weigh their rewards against each other.
    pub fn evaluated_like(&self, other: &Model) -> bool {
        match (&self.eval, &other.eval) {
            (Some(a), Some(b)) => a.comparable(b),
            _ => false,
        }
    }

    /// The digest of the held-out data the model was last evaluated on.
    pub fn held_out_digest(&self) -> Option<&str> {
        self.eval.as_ref().map(|e| e.held_out_digest.as_str())
    }
}

/// A loop's named pointer at a model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(as = AliasRecord))]
pub struct Alias {
    pub loop_key: String,
    /// "champion" or "challenger".
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub alias: AliasKind,
    pub model_id: i64,
    pub updated_at: DateTime<Utc>,
}

// ---- promotions ----------------------------------------------------------------------------------

/// A model as a promotion decision saw it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Contender {
    pub id: i64,
    pub name: String,
    pub reward: Option<f64>,
}

impl From<&Model> for Contender {
    fn from(m: &Model) -> Self {
        Contender { id: m.id, name: m.name.clone(), reward: m.reward }
    }
}

/// The online evidence a decision weighed: the loop's latest experiment, analysed, or why not.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ExperimentEvidence {
    Analysed {
        key: String,
        /// Treatment minus control acceptance.
        #[serde(deserialize_with = "nan_if_null")]
        difference: f64,
        /// The always-valid 95 % confidence interval of the difference; unbounded ends (stored as
        /// `null`) read back as NaN.
        #[serde(deserialize_with = "nan_pair_if_null")]
        always_valid_ci: [f64; 2],
        #[serde(deserialize_with = "nan_if_null")]
        always_valid_p: f64,
    },
    NotAnalysed {
        key: String,
        not_analysed: String,
    },
}

impl ExperimentEvidence {
    pub fn key(&self) -> &str {
        match self {
            ExperimentEvidence::Analysed { key, .. } | ExperimentEvidence::NotAnalysed { key, .. } => key,
        }
    }
}

/// Why the promotion gate decided as it did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PromotionDecision {
    pub challenger: Contender,
    /// The champion at the time; `null` when the loop had none.
    pub champion: Option<Contender>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub experiment: Option<ExperimentEvidence>,
    /// What the loop's gate asked of the experiment (`None`: no champion to compare with, or a
    /// decision recorded before loops had gate policies).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub online_rule: Option<OnlineRule>,
    /// What the gate asked of the reward margin (`None`: no champion to compare with, or a decision
    /// recorded before loops chose).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offline_rule: Option<OfflineRule>,
    /// The reward margin over the champion with its paired bootstrap interval, when both models kept
    /// their per-item results.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offline_margin: Option<RewardMargin>,
    pub reason: String,
}

impl PromotionDecision {
    /// The measured online lift: the challenger's acceptance minus the champion's in the experiment
    /// the gate weighed, with its always-valid 95 % interval.
    pub fn online_lift(&self) -> Option<OnlineLift> {
        match self.experiment.as_ref()? {
            ExperimentEvidence::Analysed { key, difference, always_valid_ci, .. } if difference.is_finite() => {
                Some(OnlineLift {
                    experiment: key.clone(),
                    difference: *difference,
                    ci_low: always_valid_ci[0].is_finite().then_some(always_valid_ci[0]),
                    ci_high: always_valid_ci[1].is_finite().then_some(always_valid_ci[1]),
                })
            }
            _ => None,
        }
    }

    /// The challenger's reward minus the champion's, when both were known.
    pub fn reward_change(&self) -> Option<f64> {
        let champion = self.champion.as_ref()?.reward?;
        Some(self.challenger.reward? - champion)
    }
}

/// One promotion decision, accepted or refused.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(as = PromotionRecord))]
pub struct Promotion {
    pub id: i64,
    pub loop_key: String,
    pub challenger_id: i64,
    /// The champion the decision compared the challenger with (`None`: the loop had none).
    pub champion_id: Option<i64>,
    pub accepted: bool,
    #[cfg_attr(feature = "openapi", schema(value_type = Value))]
    pub decision: PromotionDecision,
    pub at: DateTime<Utc>,
}

// ---- serving -------------------------------------------------------------------------------------

/// A served suggestion waiting until its outcome is reported (or it times out); the service then turns
/// a group of them into one ordinary event batch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(as = ImpressionRecord))]
pub struct Impression {
    pub id: i64,
    #[cfg_attr(feature = "openapi", schema(value_type = i64))]
    pub org_id: OrgId,
    pub event_id: String,
    pub loop_key: String,
    pub user_id: String,
    pub variant: String,
    pub model_id: i64,
    pub context: String,
    pub suggestion: String,
    pub latency_ms: f64,
    pub unit: Option<String>,
    pub accepted_chars: Option<i64>,
    pub final_text: Option<String>,
    pub at: DateTime<Utc>,
    pub outcome_at: Option<DateTime<Utc>>,
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_request_parses_into_the_spec_it_serialises_as() {
        let request = JobRequest { kind: "sft".into(), loop_key: Some(" notes".into()), ..Default::default() };
        let spec = request.parse().unwrap();
        assert_eq!(spec.kind, JobKind::Sft);
        assert_eq!(spec.loop_key.as_deref(), Some("notes"));
        let mut as_sent = serde_json::to_value(&request).unwrap();
        as_sent["loop"] = json!("notes");
        assert_eq!(serde_json::to_value(&spec).unwrap(), as_sent);
        assert_eq!(serde_json::from_value::<JobSpec>(as_sent).unwrap(), spec);
    }

    #[test]
    fn a_request_names_every_bad_field() {
        let bad = JobRequest { kind: "train".into(), ..Default::default() };
        assert_eq!(bad.parse().unwrap_err().to_string(), "kind: must be one of pretrain, sft, dpo, eval");
        let mut bad = JobRequest { kind: "eval".into(), name: Some(" ".into()), ..Default::default() };
        bad.eval.k = 0;
        bad.eval.dpo_beta = 0.0;
        let errors = bad.parse().unwrap_err();
        for field in ["name", "eval.k", "eval.dpo_beta"] {
            assert!(errors.get(field).is_some(), "{field}: {errors}");
        }
    }

    #[test]
    fn a_checked_request_keeps_what_parsed_beside_the_errors() {
        let mut request = JobRequest {
            kind: "sft".into(),
            loop_key: Some("notes".into()),
            name: Some("".into()),
            ..Default::default()
        };
        request.eval.k = 0;
        let (spec, errors) = request.check().unwrap();
        assert_eq!((spec.kind, spec.loop_key.as_deref(), spec.name), (JobKind::Sft, Some("notes"), None));
        assert_eq!(errors.0.keys().collect::<Vec<_>>(), ["eval.k", "name"]);
        assert!(JobRequest { kind: "x".into(), ..Default::default() }.check().is_err());
    }

    #[test]
    fn kinds_say_what_they_train_on() {
        assert!(JobKind::Dpo.trains_on(DatasetKind::Preference));
        assert!(!JobKind::Sft.trains_on(DatasetKind::Preference));
        assert!(JobKind::Pretrain.trains_on(DatasetKind::Text));
        assert!(JobStatus::Cancelled.is_final() && !JobStatus::Running.is_final());
    }

    #[test]
    fn stored_json_parses_with_its_nulls() {
        let eval = json!({
            "scores": {"perplexity": null, "replay_acceptance": 0.5},
            "counts": {"replay_acceptance": 8},
            "reward": 0.5,
            "reward_spec": {"weights": {"replay_acceptance": 1.0}, "cpu_usd_per_hour": 0.05},
            "held_out_digest": "sha256:x",
            "config": {"k": 16, "positions_per_text": 4, "seed": 7, "dpo_beta": 0.1},
        });
        let parsed: ModelEval = serde_json::from_value(eval).unwrap();
        assert!(parsed.scores["perplexity"].is_nan());
        let decision: PromotionDecision = serde_json::from_value(json!({
            "challenger": {"id": 2, "name": "b", "reward": 0.6},
            "champion": {"id": 1, "name": "a", "reward": 0.5},
            "experiment": {"key": "e", "not_analysed": "no outcomes yet"},
            "reason": "reward 0.6 beats 0.5",
        }))
        .unwrap();
        assert!((decision.reward_change().unwrap() - 0.1).abs() < 1e-12);
        assert_eq!(decision.experiment.as_ref().map(ExperimentEvidence::key), Some("e"));
        // An always-valid interval is unbounded until enough outcomes arrive; JSON stores its ends as null.
        let early: ExperimentEvidence = serde_json::from_value(json!({
            "key": "e", "difference": 0.01, "always_valid_ci": [null, null], "always_valid_p": 1.0,
        }))
        .unwrap();
        let ExperimentEvidence::Analysed { always_valid_ci, .. } = early else { panic!("analysed: {early:?}") };
        assert!(always_valid_ci.iter().all(|v| v.is_nan()));
        let first = json!({"challenger": {"id": 2, "name": "b", "reward": null}, "champion": null, "reason": "r"});
        let decision: PromotionDecision = serde_json::from_value(first.clone()).unwrap();
        assert_eq!(serde_json::to_value(&decision).unwrap(), first);
        let sources = [
            json!({"loop": "notes", "segments": [1], "events": 3, "range": null, "event_ids": "p"}),
            json!({"simulated": true, "what": "w", "for_loop": "notes"}),
            json!({"upload": "a.jsonl"}),
            json!({"file": "/tmp/a.jsonl"}),
        ];
        for source in sources {
            let parsed: DatasetSource = serde_json::from_value(source.clone()).unwrap();
            assert_eq!(serde_json::to_value(&parsed).unwrap(), source);
        }
    }
}
