//! Workers: claiming a job, running it on the blocking pool with a heartbeat that keeps its lease,
//! uploading checkpoints as it goes, scoring the result and recording the end once.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU8, Ordering};

use chrono::{DateTime, Utc};
use slope_domain::{
    Actor, DatasetKind, EvalItems, Experiment, Job, JobKind, JobMetric, JobResult, JobStatus, ModelEval, OrgId,
    RewardSpec, TrainMetrics, TrainSummary,
};
use slope_runner::eval::{EvalConfig, HeldOut};
use slope_runner::train::{Control, Objective, StepMetrics, TrainHooks};
use slope_runner::{Dataset as Rows, Model as Weights, Row, RunnerError};
use slope_store::{Heartbeat, NewModel};

use super::{CHECKPOINT_FILES, MODEL_FILES, Runner, invalid, load_weights, runner_error, unique_id};
use crate::error::internal;
use crate::{Result, ServiceError};

impl Runner {
    /// Claims one job (of any organisation) and runs it to its end. `Ok(None)` when none is waiting.
    pub async fn work_once(&self, worker: &str) -> Result<Option<Job>> {
        let Some(job) = self.store.claim_job(worker, self.lease, Utc::now(), None).await? else {
            return Ok(None);
        };
        Ok(Some(self.run_claimed(worker, job).await))
    }

    /// Claims one particular pending job for `worker`, so the process that queued it can run it itself
    /// (`slope runner train`). `None` when a worker took it first.
    pub async fn claim(&self, id: i64, worker: &str) -> Result<Option<Job>> {
        Ok(self.store.claim_job_id(id, worker, self.lease, Utc::now()).await?)
    }

    /// Runs a job this worker has claimed and returns it as it ended. Failures end the job as
    /// `failed` with the reason; they are not the caller's error.
    ///
    /// The lease is renewed by a heartbeat task for the whole job (loading, training, evals and
    /// registration alike); a cancel request or a lost lease it reports stops the job at the next step
    /// or the next phase.
    pub async fn run_claimed(&self, worker: &str, job: Job) -> Job {
        let (id, org) = (job.id, job.org_id);
        tracing::info!(job = id, kind = %job.kind, attempt = job.attempts, worker, "job started");
        let lease = Lease {
            control: Arc::new(AtomicU8::new(RUN)),
            step: Arc::new(AtomicI64::new(job.step)),
            total: job.total_steps.max(1),
        };
        // The guard aborts the heartbeat however this function ends, a panic included: a heartbeat that
        // outlived its job would renew the lease of a job nobody runs, forever.
        let beat = {
            let (store, lease_state, worker, duration) =
                (self.store.clone(), lease.clone(), worker.to_string(), self.lease);
            let every = std::time::Duration::from_millis((duration.num_milliseconds() / 3).clamp(200, 10_000) as u64);
            AbortOnDrop(tokio::spawn(async move {
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
            }))
        };
        let work = self.cache.join("jobs").join(format!("{id}-{}", unique_id("")));
        let outcome = self.execute(worker, &job, &lease, &work).await;
        let now = Utc::now();
        let finished = match outcome {
            Ok(Finish::Recorded) => Ok(true),
            Ok(Finish::Cancelled) => self.store.finish_job(id, worker, JobStatus::Cancelled, None, None, now).await,
            Ok(Finish::LeaseLost) => Ok(false),
            Err(e) => {
                let message = match &e {
                    ServiceError::Internal(detail) => {
                        tracing::error!(job = id, error = %detail, "job failed");
                        "internal error (see the worker's log)".to_string()
                    }
                    other => other.to_string(),
                };
                self.store.finish_job(id, worker, JobStatus::Failed, None, Some(&message), now).await
            }
        };
        drop(beat);
        let _ = std::fs::remove_dir_all(&work);
        match finished {
            Ok(true) => {}
            Ok(false) => tracing::warn!(job = id, worker, "the job's lease was lost; another worker continues it"),
            Err(e) => tracing::error!(job = id, error = %e, "recording the end of a job failed"),
        }
        let ended = self.store.job(org, id).await.ok().flatten().unwrap_or(job);
        // An ended job's checkpoint is of no further use; one that may still resume keeps it.
        if ended.status.is_final()
            && let Some(path) = &ended.checkpoint_path
        {
            for f in CHECKPOINT_FILES {
                let _ = self.objects.delete(&format!("{path}/{f}")).await;
            }
        }
        tracing::info!(job = id, status = %ended.status, "job ended");
        ended
    }

    async fn execute(&self, worker: &str, job: &Job, lease: &Lease, work: &Path) -> Result<Finish> {
        let org = job.org_id;
        let spec = &job.spec;
        std::fs::create_dir_all(work).map_err(|e| internal("creating a job folder", e))?;
        let held = match spec.held_out_id {
            Some(id) => Some(self.load_dataset(org, id).await?.1),
            None => None,
        };
        let reward = spec.reward.clone().unwrap_or_default();
        if let Some(stop) = lease.stopped() {
            return Ok(stop);
        }
        if spec.kind == JobKind::Eval {
            let model_id = spec.model_id.expect("validated at submission");
            let (record, model) = self.loaded(org, model_id).await?;
            let held = held.as_ref().expect("validated at submission");
            let (eval, items) = self.score(org, model, record.base_model_id, held, &spec.eval, &reward).await?;
            if let Some(stop) = lease.stopped() {
                return Ok(stop);
            }
            // The eval and the job's success are one transaction that re-checks the lease: a worker
            // that lost it records nothing, and the champion's scores are published only once.
            let result = JobResult { model_id: Some(model_id), eval: Some(eval.clone()), ..Default::default() };
            let Some(updated) = self
                .store
                .complete_eval_job(job.id, worker, model_id, (&eval, Some(&items)), &result, Utc::now())
                .await?
            else {
                return Ok(Finish::LeaseLost);
            };
            self.publish_if_champion(org, &updated).await?;
            return Ok(Finish::Recorded);
        }

        let objective = match spec.kind {
            JobKind::Pretrain => Objective::Pretrain,
            JobKind::Sft => Objective::Sft,
            _ => Objective::Dpo,
        };
        let (dataset_record, data) = self.load_dataset(org, spec.dataset_id.expect("validated")).await?;
        let start = match spec.model_id {
            Some(id) => {
                let record = self.model_record(org, id).await?;
                load_weights(self.local_model(&record).await?).await?
            }
            None => {
                let cfg = spec.model_config.clone().unwrap_or_default();
                Weights::new(
                    slope_runner::model::Gpt::init(cfg, spec.train.seed, &slope_runner::device())
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
            let (store, step, id, holder) = (self.store.clone(), lease.step.clone(), job.id, worker.to_string());
            AbortOnDrop(tokio::spawn(async move {
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
                    match store.append_job_metrics_held(id, &holder, &rows).await {
                        Ok(true) => {}
                        // The job's new holder records its own steps; the heartbeat stops this one.
                        Ok(false) => tracing::debug!(job = id, "step metrics dropped: the lease is another worker's"),
                        Err(e) => tracing::warn!(job = id, error = %e, "recording step metrics failed"),
                    }
                }
            }))
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
        let (train_cfg, ckpt_dir) = (spec.train.clone(), ckpt.clone());
        let trained = tokio::task::spawn_blocking(move || {
            let out = slope_runner::train::train(objective, start, &data, &train_cfg, Some(&ckpt_dir), &mut hooks);
            drop(hooks);
            out
        })
        .await
        .map_err(|e| internal("training", e))?;
        // The hooks (and with them the sender) are gone: the metrics task flushes and ends.
        flush.finish().await;
        let outcome = trained.map_err(|e| runner_error("train", e))?;
        if let Some(stop) = lease.stopped() {
            return Ok(stop);
        }

        let model = Arc::new(outcome.model);
        let eval = match &held {
            Some(held) => Some(self.score(org, model.clone(), spec.model_id, held, &spec.eval, &reward).await?),
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
        let summary = TrainSummary {
            steps: outcome.steps,
            final_loss: outcome.final_loss,
            tokens: outcome.tokens,
            seconds: outcome.seconds,
            tokens_per_s: outcome.tokens as f64 / outcome.seconds.max(1e-9),
            resumed_from: outcome.resumed_from,
            objective: spec.kind,
        };
        let name = spec.model_name(job.id);
        // A running experiment keeps serving the challenger it started with.
        let challenger_of = match &spec.loop_key {
            Some(l) if self.active_experiment(org, l).await?.is_none() => Some(l.as_str()),
            _ => None,
        };
        let result = JobResult {
            train: Some(summary.clone()),
            eval: eval.as_ref().map(|(eval, _)| eval.clone()),
            challenger: (spec.loop_key.is_some() && challenger_of.is_none())
                .then(|| "unchanged: an experiment of the loop is running".to_string()),
            ..Default::default()
        };
        let train_metrics = TrainMetrics::Trained(summary);
        let new = NewModel {
            name: &name,
            loop_key: spec.loop_key.as_deref(),
            kind: spec.kind.model_kind().ok_or_else(|| internal("registering a model", "an eval job trains none"))?,
            base_model_id: spec.model_id,
            dataset_digest: Some(&dataset_record.digest),
            job_id: Some(job.id),
            path: &prefix,
            config: model.config(),
            parameters: model.config().parameters() as i64,
            train_metrics: &train_metrics,
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
        if let Some((eval, items)) = &eval {
            self.record_eval(org, record.id, eval, items).await?;
        }
        Ok(Finish::Recorded)
    }

    /// The loop's experiment running now (started, not past its last day, not stopped), if any.
    pub(super) async fn active_experiment(&self, org: OrgId, loop_key: &str) -> Result<Option<Experiment>> {
        let now = Utc::now();
        Ok(self
            .loops
            .list_experiments(&Actor::system(org, "runner"))
            .await?
            .into_iter()
            .filter(|e| e.loop_key == loop_key && e.is_active(now))
            .max_by_key(|e| (e.starts_on, e.id)))
    }

    /// Scores a model on held-out data: every eval the data allows, and the reward under `spec`, with
    /// what each eval measured on each held-out item (for the gate's interval of the reward margin).
    /// The DPO margin is measured against `base` (the model it was trained from) when the data has
    /// pairs.
    async fn score(
        &self,
        org: OrgId,
        model: Arc<Weights>,
        base: Option<i64>,
        held: &Rows,
        cfg: &EvalConfig,
        spec: &RewardSpec,
    ) -> Result<(ModelEval, EvalItems)> {
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
        let eval = ModelEval {
            scores: report.scores,
            counts: report.counts,
            reward,
            reward_spec: spec.clone(),
            held_out_digest: held.digest(),
            config: cfg.clone(),
        };
        Ok((eval, report.items))
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
    /// A job whose outcome (a training job's model and alias, an eval job's scores) and success were
    /// recorded in one transaction that re-checked the lease.
    Recorded,
    Cancelled,
    LeaseLost,
}

/// What the heartbeat task and the job share: the stop signal it raises and the step it reports.
#[derive(Clone)]
struct Lease {
    control: Arc<AtomicU8>,
    step: Arc<AtomicI64>,
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
            let held = runner.store.append_job_metrics_held(id, &worker, &metrics).await?
                && runner.store.record_job_checkpoint(id, &worker, &prefix, step as i64).await?;
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

/// A spawned task that is aborted when this handle is dropped, whatever drops it (a return, an error
/// or a panic unwinding through the owner).
pub(crate) struct AbortOnDrop(pub(crate) tokio::task::JoinHandle<()>);

impl AbortOnDrop {
    /// Waits for the task to end by itself.
    pub(crate) async fn finish(mut self) {
        let _ = (&mut self.0).await;
    }
}

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Runs `slots` workers in this process until the process ends. Each claims a job, runs it, and looks
/// again at once; an empty queue is polled every `poll`.
///
/// Each job runs in a task of its own, so that a panic in it (a bug) ends that job, not the slot: its
/// heartbeat stops with it, its lease lapses, and the queue resumes or fails it by its attempts.
pub fn spawn_workers(runner: Runner, name: &str, slots: usize, poll: std::time::Duration) {
    for slot in 0..slots {
        let runner = runner.clone();
        let worker = worker_id(&format!("{name}-{slot}"));
        tokio::spawn(async move {
            loop {
                let once = {
                    let (runner, worker) = (runner.clone(), worker.clone());
                    tokio::spawn(async move { runner.work_once(&worker).await })
                };
                match once.await {
                    Ok(Ok(Some(_))) => {}
                    Ok(Ok(None)) => tokio::time::sleep(poll).await,
                    Ok(Err(e)) => {
                        tracing::warn!(error = %e, worker, "claiming a job failed");
                        tokio::time::sleep(poll).await;
                    }
                    Err(e) => {
                        tracing::error!(error = %e, worker, "a job panicked; its lease lapses and the queue takes it back");
                        tokio::time::sleep(poll).await;
                    }
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use super::*;

    #[tokio::test]
    async fn a_panicking_job_stops_its_heartbeat() {
        let beats = Arc::new(AtomicUsize::new(0));
        let job = {
            let beats = beats.clone();
            tokio::spawn(async move {
                let _beat = AbortOnDrop(tokio::spawn(async move {
                    loop {
                        beats.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                    }
                }));
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                panic!("a bug in the job");
            })
        };
        assert!(job.await.expect_err("the job panicked").is_panic());
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        let after = beats.load(Ordering::SeqCst);
        assert!(after > 0, "the heartbeat ran while the job did");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        assert_eq!(beats.load(Ordering::SeqCst), after, "the heartbeat stopped with the job");
    }
}
