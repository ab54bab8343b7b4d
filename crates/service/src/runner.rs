//! The fine-tune/eval runner as a service: datasets built from a loop's events, training and eval
//! jobs in a database queue run by workers, a model registry with a promotion gate, and serving
//! suggestions from the champion (or, inside an A/B experiment, the challenger).
//!
//! Weights, datasets and checkpoints live in the object store beside event segments, so any worker
//! of an installation can resume any job; each process keeps a local copy in its cache folder.
//! Training and generation run on the blocking thread pool: they are seconds to hours of CPU, which
//! must never stall the async threads that answer requests.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use slope_domain::{Action, Actor, FieldErrors, Key, MetricInput, OrgId, PointInput};
use slope_metrics::events::Format;
use slope_runner::checkpoint::{CONFIG_FILE, OPTIMIZER_FILE, TRAINER_FILE, WEIGHTS_FILE};
use slope_runner::eval::{EvalConfig, HeldOut};
use slope_runner::train::{Control, Objective, StepMetrics, TrainHooks};
use slope_runner::{Dataset, DatasetKind, Model, ModelConfig, RewardSpec, Row, RunnerError, TrainConfig};
use slope_store::{
    AliasRecord, DatasetRecord, Heartbeat, ImpressionRecord, JobMetric, JobRecord, ModelRecord, NewDataset,
    NewImpression, NewJob, NewModel, PromotionRecord, Store,
};

use crate::loops::{BatchInput, Loops};
use crate::segments::SegmentStore;
use crate::{Result, ServiceError};

pub const JOB_KINDS: [&str; 4] = ["pretrain", "sft", "dpo", "eval"];
pub const CHAMPION: &str = "champion";
pub const CHALLENGER: &str = "challenger";
/// Served suggestions whose outcome has not been reported after this long count as not accepted.
pub const OUTCOME_TIMEOUT: Duration = Duration::minutes(5);
/// The most characters one suggestion may have.
pub const MAX_SUGGESTION_CHARS: usize = 64;
/// Contexts longer than this are cut to their end before generation (the model reads far less).
const MAX_CONTEXT_BYTES: usize = 64 * 1024;
pub const MAX_DATASET_BYTES: usize = 256 * 1024 * 1024;
/// The largest model a job may train or create; larger ones would exhaust a worker's memory.
pub const MAX_PARAMETERS: usize = 100_000_000;
/// Bytes per micro-batch, and attention scores (batch × heads × length²) per layer.
pub const MAX_BATCH_TOKENS: usize = 65_536;
pub const MAX_ATTENTION_SCORES: usize = 1 << 28;

/// What a client asks of a job; stored as the job's specification.
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

/// A model with its aliases and promotion history, as the models page and API show it.
#[derive(Clone, Debug, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ModelView {
    #[serde(flatten)]
    pub model: ModelRecord,
    /// `(loop, alias)` pairs naming this model.
    pub aliases: Vec<AliasRecord>,
    /// The chain of base models, nearest first.
    pub lineage: Vec<ModelRecord>,
}

/// Datasets built from a loop's events.
#[derive(Clone, Debug, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BuiltDatasets {
    #[serde(rename = "loop")]
    pub loop_key: String,
    pub events_read: usize,
    pub sft: Option<DatasetRecord>,
    pub preference: Option<DatasetRecord>,
    /// True for each set that existed already (same content digest).
    pub sft_existed: bool,
    pub preference_existed: bool,
}

/// The answer of the promotion gate.
#[derive(Clone, Debug, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PromotionOutcome {
    pub accepted: bool,
    pub reason: String,
    pub record: PromotionRecord,
}

/// One served suggestion.
#[derive(Clone, Debug, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Completion {
    pub event_id: String,
    pub suggestion: String,
    pub model_id: i64,
    pub model: String,
    pub variant: String,
    pub latency_ms: f64,
}

/// What `POST /loops/{loop}/complete` takes.
#[derive(Clone, Debug, Default, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CompletionRequest {
    pub user_id: String,
    pub context: String,
    #[serde(default)]
    pub max_chars: Option<usize>,
    #[serde(default)]
    pub unit: Option<String>,
}

/// The runner service. Cheap to clone.
#[derive(Clone)]
pub struct Runner {
    store: Store,
    objects: SegmentStore,
    loops: Loops,
    cache: PathBuf,
    lease: Duration,
    models: Arc<Mutex<ModelCache>>,
    /// One model is fetched and loaded at a time, so concurrent first requests for a model load it once.
    loading: Arc<tokio::sync::Mutex<()>>,
    /// What the demo's traffic simulator publishes about itself, if it runs in this process.
    simulator: crate::SimulatorBoard,
}

/// Loaded models by (organisation, model id), least recently used first; a few are kept, since each is
/// a few MB and serving needs only a loop's champion and challenger.
#[derive(Default)]
struct ModelCache {
    entries: Vec<((i64, i64), Arc<Model>)>,
}

const MAX_CACHED_MODELS: usize = 8;

impl ModelCache {
    fn get(&mut self, key: (i64, i64)) -> Option<Arc<Model>> {
        let i = self.entries.iter().position(|(k, _)| *k == key)?;
        let entry = self.entries.remove(i);
        let model = entry.1.clone();
        self.entries.push(entry);
        Some(model)
    }

    fn insert(&mut self, key: (i64, i64), model: Arc<Model>) {
        self.entries.retain(|(k, _)| *k != key);
        self.entries.push((key, model));
        if self.entries.len() > MAX_CACHED_MODELS {
            self.entries.remove(0);
        }
    }
}

impl std::fmt::Debug for Runner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runner").field("cache", &self.cache).field("lease", &self.lease).finish_non_exhaustive()
    }
}

fn internal(what: &str, e: impl std::fmt::Display) -> ServiceError {
    tracing::error!(error = %e, "{what}");
    ServiceError::Internal(format!("{what}: {e}"))
}

fn invalid(field: &str, message: impl Into<String>) -> ServiceError {
    ServiceError::Invalid(FieldErrors::single(field, message))
}

/// Runner errors in the caller's terms: bad input names its field under `prefix`.
fn runner_error(prefix: &str, e: RunnerError) -> ServiceError {
    match e {
        RunnerError::Invalid { field, message } => {
            let field = if prefix.is_empty() { field } else { format!("{prefix}.{field}") };
            invalid(&field, message)
        }
        other => internal("runner", other),
    }
}

/// A short unique id: time, process and a counter, hashed.
fn unique_id(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let seed = format!("{}-{}-{n}", Utc::now().timestamp_nanos_opt().unwrap_or_default(), std::process::id());
    let hex: String = Sha256::digest(seed.as_bytes()).iter().take(10).map(|b| format!("{b:02x}")).collect();
    format!("{prefix}{hex}")
}

/// Which arm of an experiment a user is in: a stable hash of the experiment and the user, so a user
/// sees one model for the whole experiment on every server.
pub fn in_treatment(experiment_key: &str, user_id: &str, share: f64) -> bool {
    let h = Sha256::digest(format!("{experiment_key}\u{0}{user_id}").as_bytes());
    let x = u64::from_be_bytes(h[..8].try_into().expect("8 bytes")) as f64 / u64::MAX as f64;
    x < share
}

const MODEL_FILES: [&str; 2] = [CONFIG_FILE, WEIGHTS_FILE];
const CHECKPOINT_FILES: [&str; 4] = [CONFIG_FILE, WEIGHTS_FILE, OPTIMIZER_FILE, TRAINER_FILE];

impl Runner {
    /// `cache` is this process's folder for local copies of models and checkpoints; `lease` how long
    /// a claimed job stays this worker's without a heartbeat.
    pub fn new(store: Store, objects: SegmentStore, loops: Loops, cache: PathBuf, lease: Duration) -> Runner {
        Runner {
            store,
            objects,
            loops,
            cache,
            lease,
            models: Arc::default(),
            loading: Arc::default(),
            simulator: crate::SimulatorBoard::default(),
        }
    }

    /// The board the demo's traffic simulator publishes its status on.
    pub fn simulator_board(&self) -> crate::SimulatorBoard {
        self.simulator.clone()
    }

    // ---- datasets ------------------------------------------------------------------------------

    /// Registers a JSONL dataset (validated row by row; errors name `line N: field`). Identical
    /// content is the same version: it is found, not stored twice.
    pub async fn add_dataset(
        &self,
        actor: &Actor,
        name: &str,
        bytes: &[u8],
        source: Value,
    ) -> Result<(DatasetRecord, bool)> {
        let org = actor.authorize(Action::Operate)?;
        let name = name.trim();
        if name.is_empty() || name.len() > 200 {
            return Err(invalid("name", "must be 1 to 200 characters"));
        }
        if bytes.len() > MAX_DATASET_BYTES {
            return Err(invalid("body", format!("a dataset holds at most {MAX_DATASET_BYTES} bytes")));
        }
        let owned = bytes.to_vec();
        let data = tokio::task::spawn_blocking(move || Dataset::parse_jsonl(&owned))
            .await
            .map_err(|e| internal("parsing a dataset", e))?
            .map_err(|e| runner_error("", e))?;
        self.register(org, name, &data, source).await
    }

    async fn register(&self, org: OrgId, name: &str, data: &Dataset, source: Value) -> Result<(DatasetRecord, bool)> {
        let digest = data.digest();
        if let Some(existing) = self.store.dataset_by_digest(org, &digest).await? {
            return Ok((existing, false));
        }
        let canonical = data.to_jsonl();
        let path = format!("runner/{}/datasets/{}.jsonl", org.0, digest.trim_start_matches("sha256:"));
        let bytes = canonical.len() as i64;
        self.objects.put(&path, canonical).await?;
        let new = NewDataset {
            name,
            kind: data.kind.as_str(),
            digest: &digest,
            rows: data.rows.len() as i64,
            bytes,
            path: &path,
            source,
        };
        Ok(self.store.register_dataset(org, &new).await?)
    }

    pub async fn datasets(&self, actor: &Actor) -> Result<Vec<DatasetRecord>> {
        let org = actor.authorize(Action::Read)?;
        Ok(self.store.list_datasets(org).await?)
    }

    pub async fn dataset(&self, actor: &Actor, id: i64) -> Result<DatasetRecord> {
        let org = actor.authorize(Action::Read)?;
        self.store.dataset(org, id).await?.ok_or_else(|| ServiceError::NotFound(format!("dataset {id} not found")))
    }

    /// The dataset's canonical JSONL.
    pub async fn dataset_bytes(&self, actor: &Actor, id: i64) -> Result<bytes::Bytes> {
        let record = self.dataset(actor, id).await?;
        self.objects.get(&record.path).await
    }

    async fn load_dataset(&self, org: OrgId, id: i64) -> Result<(DatasetRecord, Dataset)> {
        let record = self
            .store
            .dataset(org, id)
            .await?
            .ok_or_else(|| ServiceError::NotFound(format!("dataset {id} not found")))?;
        let bytes = self.objects.get(&record.path).await?;
        let data = tokio::task::spawn_blocking(move || Dataset::parse_jsonl(&bytes))
            .await
            .map_err(|e| internal("reading a dataset", e))?
            .map_err(|e| internal("a stored dataset no longer parses", e))?;
        Ok((record, data))
    }

    /// Builds an SFT set (context → what the user wrote) and a preference set (what the user wrote
    /// over a suggestion they did not take) from the loop's stored events. Lineage: the segments read,
    /// the event count and time range, and the ids of the events used (an object beside the data).
    pub async fn build_datasets(&self, actor: &Actor, loop_key: &str) -> Result<BuiltDatasets> {
        let org = actor.authorize(Action::Operate)?;
        let key = Key::parse(loop_key).map_err(|m| invalid("loop", m))?;
        self.loops.ensure_loop(org, key.as_str()).await?;
        let segments = self.store.live_segments(org, key.as_str(), None).await?;
        let bytes = self.objects.get_all(&segments).await?;
        let interactions = tokio::task::spawn_blocking(move || slope_metrics::examples::text_interactions(&bytes))
            .await
            .map_err(|e| internal("reading events", e))?
            .map_err(|e| internal("reading events", e))?;
        let segment_ids: Vec<i64> = segments.iter().map(|s| s.id).collect();
        let mut sft = Vec::new();
        let mut sft_ids = Vec::new();
        let mut pref = Vec::new();
        let mut pref_ids = Vec::new();
        for i in &interactions {
            if let Some((prompt, completion)) = i.completion() {
                sft.push(Row::Completion { prompt: prompt.into(), completion: completion.into() });
                sft_ids.push(i.event_id.clone());
            }
            if let Some((prompt, chosen, rejected)) = i.preference() {
                pref.push(Row::Preference { prompt: prompt.into(), chosen: chosen.into(), rejected: rejected.into() });
                pref_ids.push(i.event_id.clone());
            }
        }
        let range = match (interactions.first(), interactions.last()) {
            (Some(a), Some(b)) => json!({"from": a.ts, "to": b.ts}),
            _ => Value::Null,
        };
        let mut out = BuiltDatasets {
            loop_key: key.as_str().into(),
            events_read: interactions.len(),
            sft: None,
            preference: None,
            sft_existed: false,
            preference_existed: false,
        };
        for (rows, ids, kind) in [(sft, sft_ids, DatasetKind::Sft), (pref, pref_ids, DatasetKind::Preference)] {
            if rows.is_empty() {
                continue;
            }
            let data = Dataset { kind, rows };
            let lineage_path =
                format!("runner/{}/datasets/{}.events.json", org.0, data.digest().trim_start_matches("sha256:"));
            self.objects.put(&lineage_path, serde_json::to_vec(&ids).expect("ids serialise")).await?;
            let source = json!({
                "loop": key.as_str(),
                "segments": segment_ids,
                "events": ids.len(),
                "range": range,
                "event_ids": lineage_path,
            });
            let name = format!("{}-{}", key.as_str(), kind.as_str());
            let (record, created) = self.register(org, &name, &data, source).await?;
            match kind {
                DatasetKind::Sft => (out.sft, out.sft_existed) = (Some(record), !created),
                _ => (out.preference, out.preference_existed) = (Some(record), !created),
            }
        }
        if out.sft.is_none() && out.preference.is_none() {
            return Err(ServiceError::Conflict(format!(
                "loop {} has no events with a context and a final text yet, so there is nothing to learn from",
                key.as_str()
            )));
        }
        Ok(out)
    }

    // ---- jobs ----------------------------------------------------------------------------------

    /// Validates a request completely (every referenced model and dataset, every setting) and queues
    /// it. Nothing is queued when anything is wrong.
    pub async fn submit(&self, actor: &Actor, request: &JobRequest) -> Result<JobRecord> {
        let org = actor.authorize(Action::Operate)?;
        let mut errors = FieldErrors::new();
        if !JOB_KINDS.contains(&request.kind.as_str()) {
            errors.add("kind", format!("must be one of {}", JOB_KINDS.join(", ")));
            return Err(errors.into());
        }
        // The loop key is stored as parsed, so " notes" and "notes" are one loop.
        let mut request = request.clone();
        match request.loop_key.as_deref().map(Key::parse) {
            Some(Ok(key)) => request.loop_key = Some(key.as_str().to_owned()),
            Some(Err(m)) => errors.add("loop", m),
            None => {}
        }
        let request = &request;
        if let Some(name) = &request.name {
            if name.trim().is_empty() || name.len() > 100 {
                errors.add("name", "must be 1 to 100 characters");
            } else if self.store.model_by_name(org, name.trim()).await?.is_some() {
                errors.add("name", format!("a model named {name:?} exists already"));
            }
        }
        let kind = request.kind.as_str();
        let model = match request.model_id {
            Some(id) => match self.store.model(org, id).await? {
                Some(m) => Some(m),
                None => {
                    errors.add("model_id", format!("model {id} not found"));
                    None
                }
            },
            None if kind != "pretrain" => {
                errors.add("model_id", format!("is required for {kind} jobs"));
                None
            }
            None => None,
        };
        let model_config: ModelConfig = match &model {
            Some(m) => serde_json::from_value(m.config.clone()).map_err(|e| internal("a stored model config", e))?,
            None => request.model_config.clone().unwrap_or_default(),
        };
        if let Err(RunnerError::Invalid { field, message }) = model_config.validate() {
            errors.add(&format!("model_config.{field}"), message);
        } else if model_config.parameters() > MAX_PARAMETERS {
            errors.add(
                "model_config",
                format!("has {} parameters; a job trains at most {MAX_PARAMETERS}", model_config.parameters()),
            );
        }
        let dataset = match request.dataset_id {
            Some(id) => match self.store.dataset(org, id).await? {
                Some(d) => Some(d),
                None => {
                    errors.add("dataset_id", format!("dataset {id} not found"));
                    None
                }
            },
            None if kind != "eval" => {
                errors.add("dataset_id", format!("is required for {kind} jobs"));
                None
            }
            None => None,
        };
        if let Some(d) = &dataset {
            let fits = match kind {
                "dpo" => d.kind == "preference",
                "pretrain" | "sft" => d.kind != "preference",
                _ => true,
            };
            if !fits {
                errors
                    .add("dataset_id", format!("dataset {} holds {} rows, which {kind} cannot train on", d.id, d.kind));
            }
        }
        let held_out = match request.held_out_id {
            Some(id) => Some((id, self.store.dataset(org, id).await?)),
            None => None,
        };
        match held_out {
            Some((id, None)) => errors.add("held_out_id", format!("dataset {id} not found")),
            None if kind == "eval" => errors.add("held_out_id", "is required for eval jobs"),
            _ => {}
        }
        if kind != "eval" {
            if let Err(RunnerError::Invalid { field, message }) = request.train.validate(&model_config) {
                errors.add(&format!("train.{field}"), message);
            } else {
                // Memory grows with the tokens of a micro-batch and, for attention, with their square.
                let (b, t) = (request.train.batch_size, request.train.seq_len(&model_config));
                if b * t > MAX_BATCH_TOKENS || b * model_config.n_head * t * t > MAX_ATTENTION_SCORES {
                    errors.add(
                        "train.batch_size",
                        format!("{b} sequences of {t} bytes need too much memory; use fewer or shorter ones (at most {MAX_BATCH_TOKENS} bytes per micro-batch) and grad_accum"),
                    );
                }
            }
        }
        if let Some(spec) = &request.reward
            && let Err(RunnerError::Invalid { field, message }) = spec.validate()
        {
            errors.add(&format!("reward.{field}"), message);
        }
        // Every weighted score must be one the held-out data can measure, or the job would fail after
        // training; DPO margins need the model the scored one was trained from.
        if let Some((_, Some(held))) = &held_out {
            let has_base = match kind {
                "eval" => model.as_ref().is_some_and(|m| m.base_model_id.is_some()),
                _ => request.model_id.is_some(),
            };
            let measurable: &[&str] = match held.kind.as_str() {
                "preference" if has_base => &["dpo_margin", "dpo_accuracy"],
                "preference" => &[],
                "sft" => &["perplexity", "replay_acceptance", "latency_ms", "cost_usd_per_1k", "exact_match"],
                _ => &["perplexity", "replay_acceptance", "latency_ms", "cost_usd_per_1k"],
            };
            let spec = request.reward.clone().unwrap_or_default();
            for score in spec.weights.keys() {
                if !measurable.contains(&score.as_str()) {
                    errors.add(
                        &format!("reward.weights.{score}"),
                        format!(
                            "cannot be measured on dataset {} ({} rows{}); it measures: {}",
                            held.id,
                            held.kind,
                            if held.kind == "preference" && !has_base {
                                ", and the model has no base model"
                            } else {
                                ""
                            },
                            if measurable.is_empty() { "nothing".to_string() } else { measurable.join(", ") }
                        ),
                    );
                }
            }
        }
        if !(request.eval.dpo_beta > 0.0 && request.eval.dpo_beta <= 10.0) {
            errors.add("eval.dpo_beta", "must be in (0, 10]");
        }
        if !(1..=MAX_SUGGESTION_CHARS).contains(&request.eval.k) {
            errors.add("eval.k", format!("must be between 1 and {MAX_SUGGESTION_CHARS}"));
        }
        if !(1..=1000).contains(&request.eval.positions_per_text) {
            errors.add("eval.positions_per_text", "must be between 1 and 1000");
        }
        if !errors.is_empty() {
            return Err(errors.into());
        }
        let total_steps = if kind == "eval" { 1 } else { request.train.steps as i64 };
        let spec = serde_json::to_value(request).map_err(|e| internal("serialising a job", e))?;
        let job = self.store.enqueue_job(org, &NewJob { kind, spec, total_steps }).await?;
        tracing::info!(job = job.id, kind, "job queued");
        Ok(job)
    }

    pub async fn jobs(&self, actor: &Actor, limit: i64) -> Result<Vec<JobRecord>> {
        let org = actor.authorize(Action::Read)?;
        Ok(self.store.list_jobs(org, limit.clamp(1, 500)).await?)
    }

    pub async fn job(&self, actor: &Actor, id: i64) -> Result<JobRecord> {
        let org = actor.authorize(Action::Read)?;
        self.store.job(org, id).await?.ok_or_else(|| ServiceError::NotFound(format!("job {id} not found")))
    }

    pub async fn job_metrics(&self, actor: &Actor, id: i64, after_step: i64) -> Result<Vec<JobMetric>> {
        let org = actor.authorize(Action::Read)?;
        self.job(actor, id).await?;
        Ok(self.store.job_metrics(org, id, after_step).await?)
    }

    /// Cancels a job: at once when pending, at its next heartbeat when running. A finished job
    /// cannot be cancelled (conflict).
    pub async fn cancel(&self, actor: &Actor, id: i64) -> Result<JobRecord> {
        let org = actor.authorize(Action::Operate)?;
        let job = self
            .store
            .cancel_job(org, id, Utc::now())
            .await?
            .ok_or_else(|| ServiceError::NotFound(format!("job {id} not found")))?;
        if matches!(job.status.as_str(), "succeeded" | "failed") {
            return Err(ServiceError::Conflict(format!("job {id} has already {}", job.status)));
        }
        Ok(job)
    }

    // ---- workers -------------------------------------------------------------------------------

    /// Claims one job (of any organisation) and runs it to its end. `Ok(None)` when none is waiting.
    pub async fn work_once(&self, worker: &str) -> Result<Option<JobRecord>> {
        let Some(job) = self.store.claim_job(worker, self.lease, Utc::now(), None).await? else {
            return Ok(None);
        };
        Ok(Some(self.run_claimed(worker, job).await))
    }

    /// Claims one particular pending job for `worker`, so the process that queued it can run it itself
    /// (`slope runner train`). `None` when a worker took it first.
    pub async fn claim(&self, id: i64, worker: &str) -> Result<Option<JobRecord>> {
        Ok(self.store.claim_job_id(id, worker, self.lease, Utc::now()).await?)
    }

    /// Runs a job this worker has claimed and returns it as it ended. Failures end the job as
    /// `failed` with the reason; they are not the caller's error.
    ///
    /// The lease is renewed by a heartbeat task for the whole job (loading, training, evals and
    /// registration alike); a cancel request or a lost lease it reports stops the job at the next step
    /// or the next phase.
    pub async fn run_claimed(&self, worker: &str, job: JobRecord) -> JobRecord {
        let (id, org) = (job.id, OrgId(job.org_id));
        tracing::info!(job = id, kind = %job.kind, attempt = job.attempts, worker, "job started");
        let lease = Lease {
            control: Arc::new(AtomicU8::new(RUN)),
            step: Arc::new(std::sync::atomic::AtomicI64::new(job.step)),
            total: job.total_steps.max(1),
        };
        let beat = {
            let (store, lease_state, worker, duration) =
                (self.store.clone(), lease.clone(), worker.to_string(), self.lease);
            let every = std::time::Duration::from_millis((duration.num_milliseconds() / 3).clamp(200, 10_000) as u64);
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(every).await;
                    let step = lease_state.step.load(Ordering::SeqCst);
                    let progress = step as f64 / lease_state.total as f64;
                    match store.heartbeat_job(id, &worker, step, progress, duration, Utc::now()).await {
                        Ok(Heartbeat::Continue) => {}
                        Ok(Heartbeat::Cancel) => lease_state.control.store(CANCEL, Ordering::SeqCst),
                        Ok(Heartbeat::LeaseLost) => {
                            lease_state.control.store(LOST, Ordering::SeqCst);
                            break;
                        }
                        Err(e) => tracing::warn!(job = id, error = %e, "heartbeat failed"),
                    }
                }
            })
        };
        let work = self.cache.join("jobs").join(format!("{id}-{}", unique_id("")));
        let outcome = self.execute(worker, &job, &lease, &work).await;
        let now = Utc::now();
        let finished = match outcome {
            Ok(Finish::Done(result)) => self.store.finish_job(id, worker, "succeeded", Some(&result), None, now).await,
            Ok(Finish::Registered) => Ok(true),
            Ok(Finish::Cancelled) => self.store.finish_job(id, worker, "cancelled", None, None, now).await,
            Ok(Finish::LeaseLost) => Ok(false),
            Err(e) => {
                let message = match &e {
                    ServiceError::Internal(detail) => {
                        tracing::error!(job = id, error = %detail, "job failed");
                        "internal error (see the worker's log)".to_string()
                    }
                    other => other.to_string(),
                };
                self.store.finish_job(id, worker, "failed", None, Some(&message), now).await
            }
        };
        beat.abort();
        let _ = std::fs::remove_dir_all(&work);
        match finished {
            Ok(true) => {}
            Ok(false) => tracing::warn!(job = id, worker, "the job's lease was lost; another worker continues it"),
            Err(e) => tracing::error!(job = id, error = %e, "recording the end of a job failed"),
        }
        let ended = self.store.job(org, id).await.ok().flatten().unwrap_or(job);
        // An ended job's checkpoint is of no further use; one that may still resume keeps it.
        if matches!(ended.status.as_str(), "succeeded" | "failed" | "cancelled")
            && let Some(path) = &ended.checkpoint_path
        {
            for f in CHECKPOINT_FILES {
                let _ = self.objects.delete(&format!("{path}/{f}")).await;
            }
        }
        tracing::info!(job = id, status = %ended.status, "job ended");
        ended
    }

    async fn execute(&self, worker: &str, job: &JobRecord, lease: &Lease, work: &Path) -> Result<Finish> {
        let org = OrgId(job.org_id);
        let request: JobRequest =
            serde_json::from_value(job.spec.clone()).map_err(|e| internal("a stored job specification", e))?;
        std::fs::create_dir_all(work).map_err(|e| internal("creating a job folder", e))?;
        let held = match request.held_out_id {
            Some(id) => Some(self.load_dataset(org, id).await?.1),
            None => None,
        };
        let spec = request.reward.clone().unwrap_or_default();
        if let Some(stop) = lease.stopped() {
            return Ok(stop);
        }
        if request.kind == "eval" {
            let model_id = request.model_id.expect("validated at submission");
            let (record, model) = self.loaded(org, model_id).await?;
            let held = held.as_ref().expect("validated at submission");
            let eval = self.score(org, model, record.base_model_id, held, &request.eval, &spec).await?;
            if let Some(stop) = lease.stopped() {
                return Ok(stop);
            }
            self.record_eval(org, record.id, &eval).await?;
            return Ok(Finish::Done(json!({ "model_id": model_id, "eval": eval })));
        }

        let objective = match request.kind.as_str() {
            "pretrain" => Objective::Pretrain,
            "sft" => Objective::Sft,
            _ => Objective::Dpo,
        };
        let (dataset_record, data) = self.load_dataset(org, request.dataset_id.expect("validated")).await?;
        let device = slope_runner::device();
        let start = match request.model_id {
            Some(id) => {
                let record = self.model_record(org, id).await?;
                let dir = self.local_model(&record).await?;
                tokio::task::spawn_blocking(move || Model::load(&dir, &device))
                    .await
                    .map_err(|e| internal("loading a model", e))?
                    .map_err(|e| internal("loading a model", e))?
            }
            None => {
                let cfg = request.model_config.clone().unwrap_or_default();
                Model::new(
                    slope_runner::model::Gpt::init(cfg, request.train.seed, &device)
                        .map_err(|e| runner_error("model_config", e))?,
                )
            }
        };
        // The checkpoint this job last recorded, wherever it was written, is where training resumes.
        let ckpt = work.join("checkpoint");
        if let Some(path) = &job.checkpoint_path {
            self.fetch_dir(path, &CHECKPOINT_FILES, &ckpt).await?;
        }

        // Step metrics go to the database in batches (about twice a second) and move the step the
        // heartbeat reports.
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<StepMetrics>();
        let flush = {
            let (store, step, id) = (self.store.clone(), lease.step.clone(), job.id);
            tokio::spawn(async move {
                let mut open = true;
                while open {
                    let mut batch = Vec::new();
                    let deadline = tokio::time::sleep(std::time::Duration::from_millis(500));
                    tokio::pin!(deadline);
                    loop {
                        tokio::select! {
                            m = rx.recv() => match m {
                                Some(m) => batch.push(m),
                                None => { open = false; break; }
                            },
                            _ = &mut deadline => break,
                        }
                        if batch.len() >= 256 {
                            break;
                        }
                    }
                    if let Some(m) = batch.last() {
                        step.store(m.step as i64, Ordering::SeqCst);
                    }
                    let rows: Vec<JobMetric> = batch.iter().map(|m| job_metric(m, Utc::now())).collect();
                    if !rows.is_empty()
                        && let Err(e) = store.append_job_metrics(id, &rows).await
                    {
                        tracing::warn!(job = id, error = %e, "recording step metrics failed");
                    }
                }
            })
        };
        let mut hooks = JobHooks {
            control: lease.control.clone(),
            tx,
            runtime: tokio::runtime::Handle::current(),
            runner: self.clone(),
            job_id: job.id,
            attempt: job.attempts,
            worker: worker.to_string(),
            uploaded: job.checkpoint_path.clone(),
            since_checkpoint: Vec::new(),
        };
        let (train_cfg, ckpt_dir) = (request.train.clone(), ckpt.clone());
        let trained = tokio::task::spawn_blocking(move || {
            let out = slope_runner::train::train(objective, start, &data, &train_cfg, Some(&ckpt_dir), &mut hooks);
            drop(hooks);
            out
        })
        .await
        .map_err(|e| internal("training", e))?;
        // The hooks (and with them the sender) are gone: the metrics task flushes and ends.
        let _ = flush.await;
        let outcome = trained.map_err(|e| runner_error("train", e))?;
        if let Some(stop) = lease.stopped() {
            return Ok(stop);
        }

        let model = Arc::new(outcome.model);
        let eval = match &held {
            Some(held) => Some(self.score(org, model.clone(), request.model_id, held, &request.eval, &spec).await?),
            None => None,
        };
        let model_dir = work.join("model");
        {
            let (model, dir) = (model.clone(), model_dir.clone());
            tokio::task::spawn_blocking(move || model.save(&dir))
                .await
                .map_err(|e| internal("saving a model", e))?
                .map_err(|e| internal("saving a model", e))?;
        }
        let prefix = format!("runner/{}/models/{}", org.0, unique_id("m-"));
        self.put_dir(&model_dir, &MODEL_FILES, &prefix).await?;
        if let Some(stop) = lease.stopped() {
            return Ok(stop);
        }
        let seconds = outcome.seconds.max(1e-9);
        let train_metrics = json!({
            "steps": outcome.steps,
            "final_loss": outcome.final_loss,
            "tokens": outcome.tokens,
            "seconds": outcome.seconds,
            "tokens_per_s": outcome.tokens as f64 / seconds,
            "resumed_from": outcome.resumed_from,
            "objective": objective.as_str(),
        });
        let name = match &request.name {
            Some(n) => n.trim().to_string(),
            None => format!("{}-{}-j{}", request.loop_key.as_deref().unwrap_or("model"), request.kind, job.id),
        };
        // A running experiment keeps serving the challenger it started with.
        let challenger_of = match &request.loop_key {
            Some(l) if self.active_experiment(org, l).await?.is_none() => Some(l.as_str()),
            _ => None,
        };
        let mut result = json!({ "train": train_metrics.clone() });
        if let Some(eval) = &eval {
            result["eval"] = eval.clone();
        }
        if request.loop_key.is_some() && challenger_of.is_none() {
            result["challenger"] = json!("unchanged: an experiment of the loop is running");
        }
        let config = serde_json::to_value(model.config()).map_err(|e| internal("a model config", e))?;
        let new = NewModel {
            name: &name,
            loop_key: request.loop_key.as_deref(),
            kind: &request.kind,
            base_model_id: request.model_id,
            dataset_digest: Some(&dataset_record.digest),
            job_id: Some(job.id),
            path: &prefix,
            config,
            parameters: model.config().parameters() as i64,
            train_metrics,
        };
        // Registration, the challenger alias and the job's success are one transaction that first
        // re-checks the lease: a worker that lost it registers nothing.
        let registered =
            self.store.complete_training_job(job.id, worker, &new, challenger_of, &result, Utc::now()).await.map_err(
                |e| {
                    if e.is_unique_violation() {
                        invalid("name", format!("a model named {name:?} exists already"))
                    } else {
                        e.into()
                    }
                },
            )?;
        let Some(record) = registered else { return Ok(Finish::LeaseLost) };
        self.cache_model(org, record.id, model);
        if let Some(eval) = &eval {
            self.record_eval(org, record.id, eval).await?;
        }
        Ok(Finish::Registered)
    }

    /// The loop's experiment running now (started, not past its last day, not stopped), if any.
    async fn active_experiment(&self, org: OrgId, loop_key: &str) -> Result<Option<slope_domain::Experiment>> {
        let now = Utc::now();
        Ok(self
            .loops
            .list_experiments(&Actor::system(org, "runner"))
            .await?
            .into_iter()
            .filter(|e| e.loop_key == loop_key && e.is_active(now))
            .max_by_key(|e| (e.starts_on, e.id)))
    }

    /// Scores a model on held-out data: every eval the data allows, and the reward under `spec`. The
    /// DPO margin is measured against `base` (the model it was trained from) when the data has pairs.
    async fn score(
        &self,
        org: OrgId,
        model: Arc<Model>,
        base: Option<i64>,
        held: &Dataset,
        cfg: &EvalConfig,
        spec: &RewardSpec,
    ) -> Result<Value> {
        let reference = match base {
            Some(base) if held.kind == DatasetKind::Preference => Some(self.loaded(org, base).await?.1),
            _ => None,
        };
        let (held_c, cfg_c, spec_c) = (held.clone(), cfg.clone(), spec.clone());
        let report = tokio::task::spawn_blocking(move || {
            let texts: Vec<&str> = held_c.texts().collect();
            let material = HeldOut {
                texts,
                completions: held_c.rows.iter().filter(|r| matches!(r, Row::Completion { .. })).cloned().collect(),
                preferences: held_c.rows.iter().filter(|r| matches!(r, Row::Preference { .. })).cloned().collect(),
            };
            let report = slope_runner::eval::evaluate(&model, reference.as_deref(), &material, &cfg_c, &spec_c)?;
            let reward = spec_c.reward(&report)?;
            Ok::<_, RunnerError>((report, reward))
        })
        .await
        .map_err(|e| internal("evaluating", e))?;
        let (report, reward) = report.map_err(|e| runner_error("", e))?;
        if !reward.is_finite() {
            return Err(invalid("reward", format!("is not a finite number (scores: {:?})", report.scores)));
        }
        Ok(json!({
            "scores": report.scores,
            "counts": report.counts,
            "reward": reward,
            "reward_spec": spec,
            "held_out_digest": held.digest(),
            "config": cfg,
        }))
    }

    /// Records an eval on its model and, when the model is its loop's champion, publishes the scores.
    async fn record_eval(&self, org: OrgId, model_id: i64, eval: &Value) -> Result<()> {
        let reward = eval["reward"].as_f64().unwrap_or(f64::NAN);
        let updated = self.store.set_model_eval(org, model_id, eval, reward, Utc::now()).await?;
        if let Some(loop_key) = &updated.loop_key
            && self.store.alias(org, loop_key, CHAMPION).await?.is_some_and(|a| a.model_id == updated.id)
        {
            self.publish_champion_logged(org, loop_key, &updated).await;
        }
        Ok(())
    }

    /// Publishing is a consequence of an eval or a promotion that has already been recorded; when it
    /// fails (say the metric key would be too long) it is logged and does not undo that.
    async fn publish_champion_logged(&self, org: OrgId, loop_key: &str, model: &ModelRecord) {
        if let Err(e) = self.publish_champion(org, loop_key, model).await {
            tracing::warn!(error = %e, loop_key, model = model.id, "publishing the champion's scores as metric points failed");
        }
    }

    /// Writes the champion's eval scores as points of the loop's `<loop>-champion-*` metrics (created
    /// as eval-score metrics on first use), so key results can be fed by model quality.
    async fn publish_champion(&self, org: OrgId, loop_key: &str, model: &ModelRecord) -> Result<()> {
        let Some(eval) = &model.eval else { return Ok(()) };
        let mut values: Vec<(&str, &str, f64)> = Vec::new();
        if let Some(v) = eval["scores"]["replay_acceptance"].as_f64() {
            values.push(("replay-acceptance", "replay character acceptance", v));
        }
        if let Some(v) = eval["scores"]["perplexity"].as_f64() {
            values.push(("perplexity", "held-out perplexity", v));
        }
        if let Some(v) = eval["reward"].as_f64() {
            values.push(("reward", "reward", v));
        }
        let now = Utc::now().to_rfc3339();
        for (suffix, what, value) in values {
            let key = format!("{loop_key}-champion-{suffix}");
            if self.loops.store().metric(org, &key).await?.is_none() {
                let input = MetricInput {
                    key: key.clone(),
                    name: format!("{loop_key}: champion model {what}"),
                    kind: "eval-score".into(),
                    loop_key: loop_key.into(),
                    granularity: "day".into(),
                    ..Default::default()
                };
                match self.loops.create_metric(&Actor::system(org, "runner"), &input).await {
                    Ok(_) | Err(ServiceError::Conflict(_)) => {}
                    Err(e) => return Err(e),
                }
            }
            let point = PointInput { at: now.clone(), value: Some(value), n: None, ci_low: None, ci_high: None };
            self.loops.push_points(&Actor::system(org, "runner"), &key, &[point]).await?;
        }
        Ok(())
    }

    // ---- registry ------------------------------------------------------------------------------

    async fn model_record(&self, org: OrgId, id: i64) -> Result<ModelRecord> {
        self.store.model(org, id).await?.ok_or_else(|| ServiceError::NotFound(format!("model {id} not found")))
    }

    /// The organisation's models, or one loop's (404 for a loop that has no events, metrics or models).
    pub async fn models(&self, actor: &Actor, loop_key: Option<&str>) -> Result<Vec<ModelRecord>> {
        let org = actor.authorize(Action::Read)?;
        let models = self.store.list_models(org, loop_key).await?;
        if let Some(loop_key) = loop_key
            && models.is_empty()
        {
            self.loops.ensure_loop(org, loop_key).await?;
        }
        Ok(models)
    }

    pub async fn aliases(&self, actor: &Actor, loop_key: Option<&str>) -> Result<Vec<AliasRecord>> {
        let org = actor.authorize(Action::Read)?;
        Ok(self.store.aliases(org, loop_key).await?)
    }

    pub async fn promotions(&self, actor: &Actor, loop_key: Option<&str>) -> Result<Vec<PromotionRecord>> {
        let org = actor.authorize(Action::Read)?;
        Ok(self.store.promotions(org, loop_key).await?)
    }

    pub async fn model(&self, actor: &Actor, id: i64) -> Result<ModelView> {
        let org = actor.authorize(Action::Read)?;
        let model = self.model_record(org, id).await?;
        let aliases = self.store.aliases(org, None).await?.into_iter().filter(|a| a.model_id == id).collect();
        let mut lineage = Vec::new();
        let mut next = model.base_model_id;
        while let Some(base) = next {
            if lineage.len() > 32 {
                break;
            }
            match self.store.model(org, base).await? {
                Some(m) => {
                    next = m.base_model_id;
                    lineage.push(m);
                }
                None => break,
            }
        }
        Ok(ModelView { model, aliases, lineage })
    }

    /// Registers a model directory (`config.json`, `model.safetensors`) such as the shipped base model.
    /// Importing the same name again returns the model already registered.
    pub async fn import_model(
        &self,
        actor: &Actor,
        name: &str,
        dir: &Path,
        loop_key: Option<&str>,
    ) -> Result<ModelRecord> {
        let org = actor.authorize(Action::Operate)?;
        if let Some(existing) = self.store.model_by_name(org, name).await? {
            return Ok(existing);
        }
        let device = slope_runner::device();
        let owned = dir.to_path_buf();
        let model = tokio::task::spawn_blocking(move || Model::load(&owned, &device))
            .await
            .map_err(|e| internal("loading a model", e))?
            .map_err(|e| invalid("dir", e.to_string()))?;
        let prefix = format!("runner/{}/models/{}", org.0, unique_id("m-"));
        self.put_dir(dir, &MODEL_FILES, &prefix).await?;
        let config = serde_json::to_value(model.config()).map_err(|e| internal("a model config", e))?;
        let provenance = std::fs::read(dir.join("provenance.json"))
            .ok()
            .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
            .unwrap_or(json!({}));
        let record = self
            .store
            .create_model(
                org,
                &NewModel {
                    name,
                    loop_key,
                    kind: "import",
                    base_model_id: None,
                    dataset_digest: None,
                    job_id: None,
                    path: &prefix,
                    config,
                    parameters: model.config().parameters() as i64,
                    train_metrics: provenance,
                },
            )
            .await?;
        self.cache_model(org, record.id, Arc::new(model));
        Ok(record)
    }

    /// Names a model its loop's challenger (the model a running experiment serves to its treatment arm).
    pub async fn set_challenger(&self, actor: &Actor, loop_key: &str, model_id: i64) -> Result<AliasRecord> {
        let org = actor.authorize(Action::Operate)?;
        Key::parse(loop_key).map_err(|m| invalid("loop", m))?;
        self.model_record(org, model_id).await?;
        Ok(self.store.set_alias(org, loop_key, CHALLENGER, model_id, Utc::now()).await?)
    }

    /// The promotion gate. The model becomes the loop's champion only when its reward beats the
    /// champion's on the same held-out data and, where the loop has an A/B experiment under way or
    /// finished, its treatment arm is not significantly worse by the always-valid confidence sequence.
    /// Every decision, accepted or refused, is recorded.
    pub async fn promote(&self, actor: &Actor, loop_key: &str, model_id: i64) -> Result<PromotionOutcome> {
        let org = actor.authorize(Action::Operate)?;
        let key = Key::parse(loop_key).map_err(|m| invalid("loop", m))?;
        let challenger = self.model_record(org, model_id).await?;
        if let Some(l) = &challenger.loop_key
            && l != key.as_str()
        {
            return Err(invalid(
                "model_id",
                format!("model {model_id} was trained for loop {l}, not {}", key.as_str()),
            ));
        }
        let champion = match self.store.alias(org, key.as_str(), CHAMPION).await? {
            Some(a) => Some(self.model_record(org, a.model_id).await?),
            None => None,
        };
        if champion.as_ref().is_some_and(|c| c.id == model_id) {
            return Err(ServiceError::Conflict(format!(
                "model {model_id} is already the champion of {}",
                key.as_str()
            )));
        }
        let mut decision = json!({
            "challenger": { "id": challenger.id, "name": challenger.name, "reward": challenger.reward },
            "champion": champion.as_ref().map(|c| json!({ "id": c.id, "name": c.name, "reward": c.reward })),
        });
        let verdict: std::result::Result<String, String> = (|| {
            let Some(reward) = challenger.reward else {
                return Err(format!("model {} has no eval yet: run an eval job first", challenger.name));
            };
            let Some(champ) = &champion else {
                return Ok(format!(
                    "{} is the first champion of {} (reward {reward:.4})",
                    challenger.name,
                    key.as_str()
                ));
            };
            let Some(champ_reward) = champ.reward else {
                return Ok(format!(
                    "the champion {} was never evaluated; {} (reward {reward:.4}) replaces it",
                    champ.name, challenger.name
                ));
            };
            let digest =
                |m: &ModelRecord| m.eval.as_ref().and_then(|e| e["held_out_digest"].as_str().map(str::to_owned));
            if digest(&challenger) != digest(champ) {
                return Err(format!(
                    "{} and {} were evaluated on different held-out data; evaluate both on the same dataset",
                    challenger.name, champ.name
                ));
            }
            let how = |m: &ModelRecord| m.eval.as_ref().map(|e| (e["reward_spec"].clone(), e["config"].clone()));
            if how(&challenger) != how(champ) {
                return Err(format!(
                    "{} and {} were evaluated with different reward specs or eval settings, so their rewards do not compare; evaluate both the same way",
                    challenger.name, champ.name
                ));
            }
            // A NaN reward never beats anything.
            if reward.partial_cmp(&champ_reward) != Some(std::cmp::Ordering::Greater) {
                return Err(format!(
                    "reward {reward:.4} does not beat the champion {}'s {champ_reward:.4}",
                    champ.name
                ));
            }
            Ok(format!("reward {reward:.4} beats the champion {}'s {champ_reward:.4}", champ.name))
        })();
        let mut verdict = verdict;
        if verdict.is_ok()
            && let Some((experiment_key, analysis)) = self.latest_experiment(org, key.as_str()).await?
        {
            match analysis {
                Ok(report) => {
                    let av = &report.always_valid;
                    decision["experiment"] = json!({
                        "key": experiment_key,
                        "difference": report.difference.estimate,
                        "always_valid_ci": [av.ci_low, av.ci_high],
                        "always_valid_p": av.p_value,
                    });
                    if av.ci_high < 0.0 {
                        verdict = Err(format!(
                            "experiment {experiment_key}: the treatment's acceptance is significantly worse (always-valid 95 % interval of the difference [{:.4}, {:.4}])",
                            av.ci_low, av.ci_high
                        ));
                    }
                }
                Err(why) => decision["experiment"] = json!({ "key": experiment_key, "not_analysed": why }),
            }
        }
        let (accepted, reason) = match verdict {
            Ok(r) => (true, r),
            Err(r) => (false, r),
        };
        decision["reason"] = json!(reason);
        let record = self
            .store
            .record_promotion(
                org,
                key.as_str(),
                model_id,
                champion.as_ref().map(|c| c.id),
                accepted,
                &decision,
                Utc::now(),
            )
            .await?;
        if accepted {
            tracing::info!(loop_key = key.as_str(), model = model_id, "promoted to champion");
            let promoted = self.model_record(org, model_id).await?;
            self.publish_champion_logged(org, key.as_str(), &promoted).await;
        }
        Ok(PromotionOutcome { accepted, reason, record })
    }

    /// The loop's most recently started experiment that has started, with its analysis or why none.
    async fn latest_experiment(
        &self,
        org: OrgId,
        loop_key: &str,
    ) -> Result<Option<(String, std::result::Result<slope_metrics::ab::AbReport, String>)>> {
        let today = Utc::now().date_naive();
        let experiment = self
            .loops
            .list_experiments(&Actor::system(org, "runner"))
            .await?
            .into_iter()
            .filter(|e| e.loop_key == loop_key && e.starts_on <= today)
            .max_by_key(|e| (e.starts_on, e.id));
        let Some(e) = experiment else { return Ok(None) };
        let analysis = match self.loops.analyze_experiment(&Actor::system(org, "runner"), &e.key).await {
            Ok(a) => Ok(a.report),
            Err(ServiceError::Conflict(why)) => Err(why),
            Err(other) => return Err(other),
        };
        Ok(Some((e.key, analysis)))
    }

    // ---- serving -------------------------------------------------------------------------------

    /// A suggestion for `context` from the loop's champion, or from its challenger for the users an
    /// active experiment assigns to the treatment. The impression is recorded and becomes an event of
    /// the loop once its outcome is reported (or after [`OUTCOME_TIMEOUT`], as not accepted).
    pub async fn complete(&self, actor: &Actor, loop_key: &str, request: &CompletionRequest) -> Result<Completion> {
        let org = actor.authorize(Action::Ingest)?;
        let key = Key::parse(loop_key).map_err(|m| invalid("loop", m))?;
        let mut errors = FieldErrors::new();
        let user = request.user_id.trim();
        if user.is_empty() || user.len() > 200 {
            errors.add("user_id", "must be 1 to 200 characters");
        }
        let max_chars = request.max_chars.unwrap_or(16);
        if !(1..=MAX_SUGGESTION_CHARS).contains(&max_chars) {
            errors.add("max_chars", format!("must be between 1 and {MAX_SUGGESTION_CHARS}"));
        }
        if let Some(unit) = &request.unit
            && unit.len() > 200
        {
            errors.add("unit", "must be at most 200 characters");
        }
        if !errors.is_empty() {
            return Err(errors.into());
        }
        // Serving is the hot path: whether the loop exists at all is asked only when it has no champion,
        // to tell an unknown loop (404) from one not promoted yet (409).
        let Some(champion) = self.store.alias(org, key.as_str(), CHAMPION).await? else {
            if self.store.list_models(org, Some(key.as_str())).await?.is_empty() {
                self.loops.ensure_loop(org, key.as_str()).await?;
            }
            return Err(ServiceError::Conflict(format!(
                "loop {} has no champion model yet; promote one first",
                key.as_str()
            )));
        };
        let active = self.active_experiment(org, key.as_str()).await?;
        let challenger = self.store.alias(org, key.as_str(), CHALLENGER).await?;
        let (model_id, variant) = match (&active, &challenger) {
            (Some(e), Some(c)) if in_treatment(&e.key, user, e.expected_share) => {
                (c.model_id, Some(e.treatment.clone()))
            }
            (Some(e), _) => (champion.model_id, Some(e.control.clone())),
            _ => (champion.model_id, None),
        };
        let (record, model) = self.loaded(org, model_id).await?;
        let variant = variant.unwrap_or_else(|| record.name.clone());
        let mut context = request.context.as_str();
        if context.len() > MAX_CONTEXT_BYTES {
            let mut cut = context.len() - MAX_CONTEXT_BYTES;
            while !context.is_char_boundary(cut) {
                cut += 1;
            }
            context = &context[cut..];
        }
        let owned = context.to_string();
        let started = std::time::Instant::now();
        let suggestion = tokio::task::spawn_blocking(move || {
            let s = slope_runner::Generator::new(&model).suggest(&owned, max_chars * 4)?;
            Ok::<_, RunnerError>(s.chars().take(max_chars).collect::<String>())
        })
        .await
        .map_err(|e| internal("generating", e))?
        .map_err(|e| internal("generating", e))?;
        let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
        let event_id = unique_id("cmp-");
        self.store
            .record_impression(
                org,
                &NewImpression {
                    event_id: &event_id,
                    loop_key: key.as_str(),
                    user_id: user,
                    variant: &variant,
                    model_id,
                    context,
                    suggestion: &suggestion,
                    latency_ms,
                    unit: request.unit.as_deref(),
                    at: Utc::now(),
                },
            )
            .await?;
        Ok(Completion { event_id, suggestion, model_id, model: record.name, variant, latency_ms })
    }

    /// Records what the user did with a suggestion: how many of its characters they kept and what they
    /// wrote. Reported once; a repeat returns the first report.
    pub async fn record_outcome(
        &self,
        actor: &Actor,
        loop_key: &str,
        event_id: &str,
        accepted_chars: i64,
        final_text: Option<&str>,
    ) -> Result<ImpressionRecord> {
        let org = actor.authorize(Action::Ingest)?;
        let served = self.store.impression(org, loop_key, event_id).await?.ok_or_else(|| {
            ServiceError::NotFound(format!("no suggestion {event_id:?} was served in loop {loop_key}"))
        })?;
        if served.outcome_at.is_none() && served.at < Utc::now() - OUTCOME_TIMEOUT {
            return Err(ServiceError::Conflict(format!(
                "suggestion {event_id:?} was served more than {} minutes ago and is recorded as not accepted",
                OUTCOME_TIMEOUT.num_minutes()
            )));
        }
        let suggested = served.suggestion.chars().count() as i64;
        if !(0..=suggested).contains(&accepted_chars) {
            return Err(invalid(
                "accepted_chars",
                format!("must be between 0 and the suggestion's {suggested} characters"),
            ));
        }
        if final_text.is_some_and(|t| t.len() > MAX_CONTEXT_BYTES) {
            return Err(invalid("final_text", format!("must be at most {MAX_CONTEXT_BYTES} bytes")));
        }
        // Checked before writing: the outcome is set once, so a refused value must never be stored.
        Ok(self
            .store
            .record_impression_outcome(org, loop_key, event_id, accepted_chars, final_text, Utc::now())
            .await?)
    }

    /// Turns served suggestions whose outcome is known (or overdue) into ordinary event batches of their
    /// loops, so acceptance, A/B analysis and datasets see them. Returns the number of events written.
    pub async fn flush_impressions(&self, now: DateTime<Utc>) -> Result<usize> {
        let ready = self.store.ready_impressions(now - OUTCOME_TIMEOUT, 5000).await?;
        let mut groups: HashMap<(i64, String), Vec<ImpressionRecord>> = HashMap::new();
        for i in ready {
            groups.entry((i.org_id, i.loop_key.clone())).or_default().push(i);
        }
        let mut written = 0;
        for ((org, loop_key), rows) in groups {
            let mut body = Vec::new();
            for i in &rows {
                let suggested = i.suggestion.chars().count() as i64;
                let event = json!({
                    "event_id": i.event_id,
                    "ts": i.at.to_rfc3339(),
                    "loop": loop_key,
                    "user_id": i.user_id,
                    "variant": i.variant,
                    "suggested_chars": suggested,
                    "accepted_chars": i.accepted_chars.unwrap_or(0).min(suggested),
                    "latency_ms": i.latency_ms,
                    "unit": i.unit,
                    "context": i.context,
                    "suggestion": if i.suggestion.is_empty() { None } else { Some(&i.suggestion) },
                    "final_text": i.final_text,
                    "attributes": { "model_id": i.model_id, "source": "slope-serving" },
                });
                serde_json::to_writer(&mut body, &event).expect("events serialise");
                body.push(b'\n');
            }
            let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
            let key = format!("impressions-{}-{}", ids.iter().min().unwrap_or(&0), ids.iter().max().unwrap_or(&0));
            let input = BatchInput {
                loop_key: &loop_key,
                body: &body,
                format: Format::Ndjson,
                gzip: false,
                idempotency_key: Some(&key),
            };
            self.loops.ingest(&Actor::system(OrgId(org), "runner"), input).await?;
            self.store.delete_impressions(&ids).await?;
            written += rows.len();
        }
        Ok(written)
    }

    // ---- model files ---------------------------------------------------------------------------

    /// The model's record and weights, loaded once per process and kept (a few at a time) for serving
    /// and evals. The organisation is checked (by reading the record) before the cache is consulted.
    async fn loaded(&self, org: OrgId, id: i64) -> Result<(ModelRecord, Arc<Model>)> {
        let record = self.model_record(org, id).await?;
        if let Some(m) = self.models.lock().expect("model cache").get((org.0, id)) {
            return Ok((record, m));
        }
        let _one_at_a_time = self.loading.lock().await;
        if let Some(m) = self.models.lock().expect("model cache").get((org.0, id)) {
            return Ok((record, m));
        }
        let dir = self.local_model(&record).await?;
        let device = slope_runner::device();
        let model = tokio::task::spawn_blocking(move || Model::load(&dir, &device))
            .await
            .map_err(|e| internal("loading a model", e))?
            .map_err(|e| internal("loading a model", e))?;
        let model = Arc::new(model);
        self.cache_model(org, id, model.clone());
        Ok((record, model))
    }

    fn cache_model(&self, org: OrgId, id: i64, model: Arc<Model>) {
        self.models.lock().expect("model cache").insert((org.0, id), model);
    }

    /// A local folder holding the model's files, fetched from the object store when missing.
    async fn local_model(&self, record: &ModelRecord) -> Result<PathBuf> {
        let dir = self.cache.join("models").join(record.id.to_string());
        if !MODEL_FILES.iter().all(|f| dir.join(f).is_file()) {
            self.fetch_dir(&record.path, &MODEL_FILES, &dir).await?;
        }
        Ok(dir)
    }

    /// Copies objects into `dir` through a temporary folder of its own, so that two processes sharing
    /// the cache never see or remove each other's half-written files; the first complete copy wins.
    async fn fetch_dir(&self, prefix: &str, files: &[&str], dir: &Path) -> Result<()> {
        let name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let tmp = dir.with_file_name(format!(".{name}.{}", unique_id("partial-")));
        std::fs::create_dir_all(&tmp).map_err(|e| internal("creating a cache folder", e))?;
        let filled: Result<()> = async {
            for f in files {
                let bytes = self.objects.get(&format!("{prefix}/{f}")).await?;
                std::fs::write(tmp.join(f), &bytes).map_err(|e| internal("writing a cached file", e))?;
            }
            Ok(())
        }
        .await;
        let complete = |d: &Path| files.iter().all(|f| d.join(f).is_file());
        let placed = filled.and_then(|()| {
            if complete(dir) {
                return Ok(());
            }
            match std::fs::rename(&tmp, dir) {
                Ok(()) => Ok(()),
                // Another process placed a complete copy first.
                Err(_) if complete(dir) => Ok(()),
                Err(e) => Err(internal("placing a cached folder", e)),
            }
        });
        let _ = std::fs::remove_dir_all(&tmp);
        placed
    }

    async fn put_dir(&self, dir: &Path, files: &[&str], prefix: &str) -> Result<()> {
        for f in files {
            let bytes = std::fs::read(dir.join(f)).map_err(|e| internal("reading a model file", e))?;
            self.objects.put(&format!("{prefix}/{f}"), bytes).await?;
        }
        Ok(())
    }
}

fn job_metric(m: &StepMetrics, at: DateTime<Utc>) -> JobMetric {
    JobMetric {
        step: m.step as i64,
        loss: m.loss,
        lr: m.lr,
        grad_norm: m.grad_norm,
        tokens_per_s: m.tokens_per_s,
        reward_margin: m.reward_margin,
        reward_accuracy: m.reward_accuracy,
        at,
    }
}

enum Finish {
    /// An eval job's result, for `finish_job`.
    Done(Value),
    /// A training job whose model, alias and success were recorded in one transaction.
    Registered,
    Cancelled,
    LeaseLost,
}

/// What the heartbeat task and the job share: the stop signal it raises and the step it reports.
#[derive(Clone)]
struct Lease {
    control: Arc<AtomicU8>,
    step: Arc<std::sync::atomic::AtomicI64>,
    total: i64,
}

impl Lease {
    /// `Some` when the job must stop: cancelled by a person, or taken over by another worker.
    fn stopped(&self) -> Option<Finish> {
        match self.control.load(Ordering::SeqCst) {
            CANCEL => Some(Finish::Cancelled),
            LOST => Some(Finish::LeaseLost),
            _ => None,
        }
    }
}

const RUN: u8 = 0;
const CANCEL: u8 = 1;
const LOST: u8 = 2;

/// The bridge from the blocking training loop to the job's row: metrics go to the heartbeat task,
/// checkpoints are uploaded before training continues, and a cancel or a lost lease stops training.
struct JobHooks {
    control: Arc<AtomicU8>,
    tx: tokio::sync::mpsc::UnboundedSender<StepMetrics>,
    runtime: tokio::runtime::Handle,
    runner: Runner,
    job_id: i64,
    attempt: i64,
    worker: String,
    uploaded: Option<String>,
    /// Steps since the last checkpoint: written with the checkpoint, so that the metrics of every step
    /// a resumed job will not redo are stored, even when the worker dies before its next heartbeat.
    since_checkpoint: Vec<JobMetric>,
}

impl TrainHooks for JobHooks {
    fn on_step(&mut self, metrics: &StepMetrics) -> Control {
        self.since_checkpoint.push(job_metric(metrics, Utc::now()));
        let _ = self.tx.send(metrics.clone());
        if self.control.load(Ordering::SeqCst) == RUN { Control::Continue } else { Control::Stop }
    }

    fn on_checkpoint(&mut self, step: usize, dir: &Path) -> slope_runner::Result<()> {
        // The attempt is part of the name, so a worker that lost its lease never writes into the
        // checkpoint its successor records.
        let prefix = format!("runner/jobs/{}/checkpoint-a{}-{step:07}", self.job_id, self.attempt);
        let runner = self.runner.clone();
        let (dir, worker, id, previous) = (dir.to_path_buf(), self.worker.clone(), self.job_id, self.uploaded.clone());
        let metrics = std::mem::take(&mut self.since_checkpoint);
        let recorded = self.runtime.block_on(async move {
            runner.put_dir(&dir, &CHECKPOINT_FILES, &prefix).await?;
            runner.store.append_job_metrics(id, &metrics).await?;
            let held = runner.store.record_job_checkpoint(id, &worker, &prefix, step as i64).await?;
            if held && let Some(old) = previous {
                for f in CHECKPOINT_FILES {
                    let _ = runner.objects.delete(&format!("{old}/{f}")).await;
                }
            }
            Ok::<_, ServiceError>((held, prefix))
        });
        match recorded {
            Ok((true, prefix)) => self.uploaded = Some(prefix),
            Ok((false, _)) => self.control.store(LOST, Ordering::SeqCst),
            Err(e) => return Err(RunnerError::Checkpoint(format!("uploading the checkpoint of step {step}: {e}"))),
        }
        Ok(())
    }
}

/// A worker's name, unique across machines and restarts: the host, the process and a random part
/// (two containers may both be process 1 on hosts of the same name).
pub fn worker_id(label: &str) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "host".into());
    format!("{label}@{host}-{}-{}", std::process::id(), unique_id(""))
}

/// Runs `slots` workers in this process until the process ends. Each claims a job, runs it, and looks
/// again at once; an empty queue is polled every `poll`.
pub fn spawn_workers(runner: Runner, name: &str, slots: usize, poll: std::time::Duration) {
    for slot in 0..slots {
        let runner = runner.clone();
        let worker = worker_id(&format!("{name}-{slot}"));
        tokio::spawn(async move {
            loop {
                match runner.work_once(&worker).await {
                    Ok(Some(_)) => {}
                    Ok(None) => tokio::time::sleep(poll).await,
                    Err(e) => {
                        tracing::warn!(error = %e, worker, "claiming a job failed");
                        tokio::time::sleep(poll).await;
                    }
                }
            }
        });
    }
}

// ---- the post-training stack -----------------------------------------------------------------------

/// How [`Runner::loop_stack`] counts annotation volume.
pub const ANNOTATION_METHOD: &str = "Events with a context and a final text, counted from the row counts of the loop's SFT datasets: each new dataset adds its rows beyond the previous one's, in the week it was built.";

fn ts(v: &Value) -> Option<DateTime<Utc>> {
    v.as_str().and_then(|s| DateTime::parse_from_rfc3339(s).ok()).map(|t| t.with_timezone(&Utc))
}

fn week_of(t: DateTime<Utc>) -> chrono::NaiveDate {
    use chrono::Datelike;
    let d = t.date_naive();
    d - Duration::days(d.weekday().num_days_from_monday() as i64)
}

impl Runner {
    /// A loop's post-training stack: each stage's current artefact, status and last activity; the
    /// iterations derived from lineage (every promotion decision on a model trained by a job on a
    /// dataset built from this loop's events), newest first; and the loop's metabolism per week.
    pub async fn loop_stack(&self, actor: &Actor, loop_key: &str) -> Result<slope_domain::LoopStack> {
        use slope_domain::{LoopIteration, LoopStack, Metabolism, MetabolismWeek, StackStage};
        let org = actor.authorize(Action::Read)?;
        let key = Key::parse(loop_key).map_err(|m| ServiceError::NotFound(format!("loop {loop_key}: {m}")))?;
        let key = key.as_str();
        let models = self.store.list_models(org, Some(key)).await?;
        if models.is_empty() {
            self.loops.ensure_loop(org, key).await?;
        }
        let mut datasets: Vec<DatasetRecord> =
            self.store.list_datasets(org).await?.into_iter().filter(|d| d.source["loop"] == key).collect();
        datasets.sort_by_key(|d| (d.created_at, d.id));
        let jobs: Vec<JobRecord> =
            self.store.list_jobs(org, 1000).await?.into_iter().filter(|j| j.spec["loop"] == key).collect();
        let promotions = self.store.promotions(org, Some(key)).await?;
        let experiments: Vec<_> =
            self.loops.list_experiments(actor).await?.into_iter().filter(|e| e.loop_key == key).collect();
        let alerts: Vec<_> = self.loops.drift_alerts(actor).await?.into_iter().filter(|a| a.loop_key == key).collect();

        // Iterations, from lineage.
        let mut iterations = Vec::new();
        for p in &promotions {
            let Some(model) = models.iter().find(|m| m.id == p.challenger_id) else { continue };
            let Some(digest) = &model.dataset_digest else { continue };
            let Some(dataset) = datasets.iter().find(|d| &d.digest == digest) else { continue };
            let job = match model.job_id {
                Some(id) => jobs.iter().find(|j| j.id == id).cloned().or(self.store.job(org, id).await?),
                None => None,
            };
            // The batch an iteration learns from is the events its dataset has beyond the loop's previous
            // dataset of the same kind. Datasets keep every event, so the batch's first event is the first
            // one after the previous dataset's newest; its time is bounded below by that newest event's, which
            // is what is used (the cycle time is then at most a little long, never short). The loop's first
            // dataset's batch is all of it.
            let previous = datasets
                .iter()
                .filter(|d| d.kind == dataset.kind && (d.created_at, d.id) < (dataset.created_at, dataset.id))
                .filter_map(|d| ts(&d.source["range"]["to"]))
                .max();
            let first_event_at = match (previous, ts(&dataset.source["range"]["from"])) {
                (Some(prev), Some(from)) => Some(prev.max(from)),
                (prev, from) => from.or(prev),
            };
            let decided = p.at.date_naive();
            let experiment = p.decision["experiment"]["key"].as_str().map(str::to_owned).or_else(|| {
                experiments
                    .iter()
                    // Created before the decision: a loop may turn several times a day (the demo's does),
                    // so a later experiment of the same day is not this iteration's.
                    .filter(|e| {
                        e.starts_on <= decided
                            && e.last_day() >= dataset.created_at.date_naive()
                            && e.created_at <= p.at
                    })
                    .max_by_key(|e| (e.starts_on, e.id))
                    .map(|e| e.key.clone())
            });
            let reward_change = p.decision["challenger"]["reward"]
                .as_f64()
                .zip(p.decision["champion"]["reward"].as_f64())
                .map(|(a, b)| a - b);
            iterations.push(LoopIteration {
                promotion_id: p.id,
                model_id: model.id,
                model: model.name.clone(),
                dataset_id: dataset.id,
                dataset: dataset.name.clone(),
                job_id: model.job_id,
                first_event_at,
                dataset_created_at: dataset.created_at,
                job_started_at: job.as_ref().and_then(|j| j.started_at),
                job_finished_at: job.as_ref().and_then(|j| j.finished_at),
                evaluated_at: model.evaluated_at,
                reward: model.reward,
                experiment,
                decided_at: p.at,
                outcome: if p.accepted { "promoted" } else { "refused" }.into(),
                reason: p.decision["reason"].as_str().unwrap_or_default().into(),
                reward_change,
                cycle_hours: first_event_at.map(|f| (p.at - f).num_seconds() as f64 / 3600.0),
            });
        }
        iterations.sort_by_key(|i| std::cmp::Reverse((i.decided_at, i.promotion_id)));

        // Metabolism, per ISO week.
        let mut weeks: Vec<MetabolismWeek> = Vec::new();
        fn week_entry(weeks: &mut Vec<MetabolismWeek>, week: chrono::NaiveDate) -> &mut MetabolismWeek {
            let i = match weeks.iter().position(|w| w.week == week) {
                Some(i) => i,
                None => {
                    weeks.push(MetabolismWeek {
                        week,
                        iterations: 0,
                        promoted: 0,
                        cycle_hours: None,
                        lift: None,
                        annotations: 0,
                    });
                    weeks.len() - 1
                }
            };
            &mut weeks[i]
        }
        let mut cycles: HashMap<chrono::NaiveDate, Vec<f64>> = HashMap::new();
        for it in &iterations {
            let w = week_entry(&mut weeks, week_of(it.decided_at));
            w.iterations += 1;
            if it.outcome == "promoted" {
                w.promoted += 1;
                if let Some(change) = it.reward_change {
                    w.lift = Some(w.lift.unwrap_or(0.0) + change);
                }
            }
            if let Some(c) = it.cycle_hours {
                cycles.entry(w.week).or_default().push(c);
            }
        }
        let mut previous_rows = 0;
        for d in datasets.iter().filter(|d| d.kind == "sft") {
            let added = (d.rows - previous_rows).max(0);
            previous_rows = previous_rows.max(d.rows);
            week_entry(&mut weeks, week_of(d.created_at)).annotations += added;
        }
        for w in &mut weeks {
            if let Some(c) = cycles.get(&w.week) {
                w.cycle_hours = Some(c.iter().sum::<f64>() / c.len() as f64);
            }
        }
        weeks.sort_by_key(|w| w.week);
        let today = Utc::now().date_naive();
        let season = self
            .store
            .list_seasons(org)
            .await?
            .into_iter()
            .filter(|s| s.starts_on <= today && today <= s.ends_on)
            .max_by_key(|s| s.starts_on);
        let mut iterations_per_week = None;
        if let Some(s) = &season {
            let first_week = week_of(s.starts_on.and_hms_opt(0, 0, 0).expect("midnight").and_utc());
            weeks.retain(|w| w.week >= first_week && w.week <= s.ends_on);
            let elapsed = ((today - s.starts_on).num_days() as f64 / 7.0).max(1.0);
            let count = iterations.iter().filter(|i| i.decided_at.date_naive() >= s.starts_on).count();
            iterations_per_week = Some(count as f64 / elapsed);
        }
        let mean = |v: Vec<f64>| (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64);
        let promoted: Vec<&LoopIteration> = iterations.iter().filter(|i| i.outcome == "promoted").collect();
        let metabolism = Metabolism {
            iterations: iterations.len() as i64,
            promoted: promoted.len() as i64,
            mean_cycle_hours: mean(promoted.iter().filter_map(|i| i.cycle_hours).collect()),
            lift_per_iteration: mean(promoted.iter().filter_map(|i| i.reward_change).collect()),
            season: season.map(|s| s.name),
            iterations_per_week,
            weeks,
            annotation_method: ANNOTATION_METHOD.into(),
        };

        // The stages.
        let evaluated = models.iter().filter(|m| m.evaluated_at.is_some()).max_by_key(|m| (m.evaluated_at, m.id));
        let stage = |key: &str, name: &str, artefact: Option<String>, status: &str, last: Option<DateTime<Utc>>| {
            StackStage { key: key.into(), name: name.into(), artefact, status: status.into(), last_activity: last }
        };
        let reward_spec = evaluated.and_then(|m| m.eval.as_ref()).map(|e| e["reward_spec"].clone());
        let experiment = experiments.iter().max_by_key(|e| (e.starts_on, e.id));
        let last_job = jobs.iter().max_by_key(|j| (j.created_at, j.id));
        let last_dataset = datasets.last();
        let champion = self.store.alias(org, key, CHAMPION).await?;
        let stages = vec![
            stage(
                "reward",
                "Reward design",
                reward_spec.as_ref().map(|s| format!("reward spec {s}")),
                if reward_spec.is_some() { "ok" } else { "missing" },
                evaluated.and_then(|m| m.evaluated_at),
            ),
            stage(
                "data",
                "Data sourcing",
                last_dataset.map(|_| {
                    let mut kinds: Vec<&str> = datasets.iter().map(|d| d.kind.as_str()).collect();
                    kinds.dedup();
                    kinds.sort_unstable();
                    kinds.dedup();
                    kinds
                        .iter()
                        .filter_map(|k| datasets.iter().rev().find(|d| d.kind == *k))
                        .map(|d| format!("{} #{} ({} rows from {} events)", d.name, d.id, d.rows, d.source["events"]))
                        .collect::<Vec<_>>()
                        .join("; ")
                }),
                if last_dataset.is_some() { "ok" } else { "missing" },
                last_dataset.map(|d| d.created_at),
            ),
            stage(
                "fine-tuning",
                "Fine-tuning",
                last_job.map(|j| format!("{} job #{}", j.kind, j.id)),
                last_job.map(|j| j.status.as_str()).unwrap_or("missing"),
                last_job.map(|j| j.finished_at.or(j.started_at).unwrap_or(j.created_at)),
            ),
            stage(
                "evals",
                "Evals",
                evaluated.map(|m| format!("{} reward {:.4}", m.name, m.reward.unwrap_or(f64::NAN))),
                if evaluated.is_some() { "ok" } else { "missing" },
                evaluated.and_then(|m| m.evaluated_at),
            ),
            stage(
                "ab",
                "A/B testing",
                experiment.map(|e| format!("experiment {} ({} vs {})", e.key, e.control, e.treatment)),
                match experiment {
                    None => "missing",
                    Some(e) if e.starts_on > today => "scheduled",
                    Some(e) if e.is_active(Utc::now()) => "running",
                    Some(_) => "finished",
                },
                experiment.map(|e| e.created_at),
            ),
            stage(
                "observability",
                "Observability",
                alerts.first().map(|a| {
                    format!("{} drift alerts; latest: {} {} (PSI {:.3})", alerts.len(), a.band, a.field, a.psi)
                }),
                if alerts.is_empty() { "ok" } else { "alert" },
                alerts.iter().map(|a| a.created_at).max(),
            ),
            stage(
                "iteration",
                "Iteration",
                iterations.first().map(|i| {
                    format!(
                        "{} {}{}",
                        i.model,
                        i.outcome,
                        champion.as_ref().map(|c| format!("; champion model #{}", c.model_id)).unwrap_or_default()
                    )
                }),
                iterations.first().map(|i| i.outcome.as_str()).unwrap_or("missing"),
                iterations.first().map(|i| i.decided_at),
            ),
        ];
        Ok(LoopStack { loop_key: key.into(), stages, iterations, metabolism })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arms_are_stable_and_near_the_share() {
        let treated = (0..10_000).filter(|u| in_treatment("exp", &format!("user-{u}"), 0.3)).count();
        assert!((2_800..3_200).contains(&treated), "{treated}");
        assert_eq!(in_treatment("exp", "a", 0.5), in_treatment("exp", "a", 0.5));
        assert!(!in_treatment("exp", "a", 0.0));
    }
}
