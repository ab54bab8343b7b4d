//! Job submission and the queue as people see it: a request is parsed into a spec by the domain's
//! rules, then checked against what is stored (models, datasets, what they allow) before anything is
//! queued.

use chrono::Utc;
use slope_domain::{
    Action, Actor, Dataset, DatasetKind, FieldErrors, Job, JobKind, JobMetric, JobRequest, JobSpec, JobStatus,
    ModelConfig, OrgId,
};

use super::{MAX_ATTENTION_SCORES, MAX_BATCH_TOKENS, MAX_PARAMETERS, Runner};
use crate::{Result, ServiceError};

/// The scores a held-out dataset of `kind` can measure; DPO margins need the model the scored one was
/// trained from (`has_base`).
fn measurable(kind: DatasetKind, has_base: bool) -> &'static [&'static str] {
    match kind {
        DatasetKind::Preference if has_base => &["dpo_margin", "dpo_accuracy"],
        DatasetKind::Preference => &[],
        DatasetKind::Sft => &["perplexity", "replay_acceptance", "latency_ms", "cost_usd_per_1k", "exact_match"],
        DatasetKind::Text => &["perplexity", "replay_acceptance", "latency_ms", "cost_usd_per_1k"],
    }
}

impl Runner {
    /// Validates a request completely (every referenced model and dataset, every setting) and queues
    /// it. Nothing is queued when anything is wrong.
    pub async fn submit(&self, actor: &Actor, request: &JobRequest) -> Result<Job> {
        let org = actor.authorize(Action::Operate)?;
        let (spec, mut errors) = request.check()?;
        errors.merge(self.check_against_store(org, &spec).await?);
        if !errors.is_empty() {
            return Err(errors.into());
        }
        let job = self.store.enqueue_job(org, &spec).await?;
        tracing::info!(job = job.id, kind = %spec.kind, "job queued");
        Ok(job)
    }

    /// The rules that need stored data: the referenced model and datasets exist, the model's shape and
    /// the training settings fit in a worker, the data fits the kind, and every weighted score can be
    /// measured on the held-out data.
    async fn check_against_store(&self, org: OrgId, spec: &JobSpec) -> Result<FieldErrors> {
        let mut errors = FieldErrors::new();
        let kind = spec.kind;
        if let Some(name) = &spec.name
            && self.store.model_by_name(org, name).await?.is_some()
        {
            errors.add("name", format!("a model named {name:?} exists already"));
        }
        let model = match spec.model_id {
            Some(id) => match self.store.model(org, id).await? {
                Some(m) => Some(m),
                None => {
                    errors.add("model_id", format!("model {id} not found"));
                    None
                }
            },
            None if kind != JobKind::Pretrain => {
                errors.add("model_id", format!("is required for {kind} jobs"));
                None
            }
            None => None,
        };
        let model_config: ModelConfig = match &model {
            Some(m) => m.config.clone(),
            None => spec.model_config.clone().unwrap_or_default(),
        };
        if let Err(e) = model_config.validate() {
            errors.merge(e.prefixed("model_config"));
        } else if model_config.parameters() > MAX_PARAMETERS {
            errors.add(
                "model_config",
                format!("has {} parameters; a job trains at most {MAX_PARAMETERS}", model_config.parameters()),
            );
        }
        let dataset = match spec.dataset_id {
            Some(id) => self.found(org, id, "dataset_id", &mut errors).await?,
            None if kind != JobKind::Eval => {
                errors.add("dataset_id", format!("is required for {kind} jobs"));
                None
            }
            None => None,
        };
        if let Some(d) = &dataset
            && !kind.trains_on(d.kind)
        {
            errors.add("dataset_id", format!("dataset {} holds {} rows, which {kind} cannot train on", d.id, d.kind));
        }
        let held_out = match spec.held_out_id {
            Some(id) => self.found(org, id, "held_out_id", &mut errors).await?,
            None if kind == JobKind::Eval => {
                errors.add("held_out_id", "is required for eval jobs");
                None
            }
            None => None,
        };
        if kind != JobKind::Eval {
            if let Err(e) = spec.train.validate(&model_config) {
                errors.merge(e.prefixed("train"));
            } else {
                // Memory grows with the tokens of a micro-batch and, for attention, with their square.
                let (b, t) = (spec.train.batch_size, spec.train.seq_len(&model_config));
                if b * t > MAX_BATCH_TOKENS || b * model_config.n_head * t * t > MAX_ATTENTION_SCORES {
                    errors.add(
                        "train.batch_size",
                        format!("{b} sequences of {t} bytes need too much memory; use fewer or shorter ones (at most {MAX_BATCH_TOKENS} bytes per micro-batch) and grad_accum"),
                    );
                }
            }
        }
        // Every weighted score must be one the held-out data can measure, or the job would fail after
        // training.
        if let Some(held) = &held_out {
            let has_base = match kind {
                JobKind::Eval => model.as_ref().is_some_and(|m| m.base_model_id.is_some()),
                _ => spec.model_id.is_some(),
            };
            let measurable = measurable(held.kind, has_base);
            for score in spec.reward.clone().unwrap_or_default().weights.keys() {
                if !measurable.contains(&score.as_str()) {
                    errors.add(
                        &format!("reward.weights.{score}"),
                        format!(
                            "cannot be measured on dataset {} ({} rows{}); it measures: {}",
                            held.id,
                            held.kind,
                            if held.kind == DatasetKind::Preference && !has_base {
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
        Ok(errors)
    }

    /// The dataset `id`, or a "not found" message on `field`.
    async fn found(&self, org: OrgId, id: i64, field: &str, errors: &mut FieldErrors) -> Result<Option<Dataset>> {
        let found = self.store.dataset(org, id).await?;
        if found.is_none() {
            errors.add(field, format!("dataset {id} not found"));
        }
        Ok(found)
    }

    pub async fn jobs(&self, actor: &Actor, limit: i64) -> Result<Vec<Job>> {
        let org = actor.authorize(Action::Read)?;
        Ok(self.store.list_jobs(org, limit.clamp(1, 500)).await?)
    }

    pub async fn job(&self, actor: &Actor, id: i64) -> Result<Job> {
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
    pub async fn cancel(&self, actor: &Actor, id: i64) -> Result<Job> {
        let org = actor.authorize(Action::Operate)?;
        let job = self
            .store
            .cancel_job(org, id, Utc::now())
            .await?
            .ok_or_else(|| ServiceError::NotFound(format!("job {id} not found")))?;
        if matches!(job.status, JobStatus::Succeeded | JobStatus::Failed) {
            return Err(ServiceError::Conflict(format!("job {id} has already {}", job.status)));
        }
        Ok(job)
    }
}
