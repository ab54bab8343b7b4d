//! Contracts of the runner (`src/runner.rs`): datasets, jobs and their leases and claims, models,
//! aliases and promotions, and impressions waiting for their outcome.

use std::sync::{Arc, LazyLock};

use chrono::{DateTime, Utc};

use serde_json::json;
use slope_domain::{
    Alias, AliasKind, Contender, DatasetKind, DatasetSource, EvalItems, GatePolicy, Impression, Job, JobKind,
    JobMetric, JobResult, JobSpec, JobStatus, ModelConfig, ModelEval, ModelKind, OfflineRule, OnlineRule, Promotion,
    PromotionDecision, TextItem, TrainConfig, TrainMetrics,
};
use slope_store::{Heartbeat, MAX_JOB_ATTEMPTS, NewDataset, NewImpression, NewModel, Store};

use crate::common::*;

contract_tests! {
    contract_gate_policies_default_and_change_on_the_trail =>
        gate_policies_default_and_change_on_the_trail_sqlite, gate_policies_default_and_change_on_the_trail_postgres;
    contract_datasets_are_idempotent_by_digest =>
        datasets_are_idempotent_by_digest_sqlite, datasets_are_idempotent_by_digest_postgres;
    contract_job_lifecycle =>
        job_lifecycle_sqlite, job_lifecycle_postgres;
    contract_jobs_are_isolated_by_org =>
        jobs_are_isolated_by_org_sqlite, jobs_are_isolated_by_org_postgres;
    contract_expired_leases_are_claimed_again =>
        expired_leases_are_claimed_again_sqlite, expired_leases_are_claimed_again_postgres;
    contract_only_the_lease_holder_registers_a_trained_model =>
        only_the_lease_holder_registers_a_trained_model_sqlite, only_the_lease_holder_registers_a_trained_model_postgres;
    contract_only_the_lease_holder_records_an_eval_or_steps =>
        only_the_lease_holder_records_an_eval_or_steps_sqlite, only_the_lease_holder_records_an_eval_or_steps_postgres;
    contract_jobs_abandoned_too_often_fail =>
        jobs_abandoned_too_often_fail_sqlite, jobs_abandoned_too_often_fail_postgres;
    contract_cancelled_jobs =>
        cancelled_jobs_sqlite, cancelled_jobs_postgres;
    contract_concurrent_claims_take_each_job_once =>
        concurrent_claims_take_each_job_once_sqlite, concurrent_claims_take_each_job_once_postgres
        [flavor = "multi_thread", worker_threads = 4];
    contract_claims_filter_by_kind =>
        claims_filter_by_kind_sqlite, claims_filter_by_kind_postgres;
    contract_models_and_aliases =>
        models_and_aliases_sqlite, models_and_aliases_postgres;
    contract_promotions =>
        promotions_sqlite, promotions_postgres;
    contract_impressions_wait_for_their_outcome =>
        impressions_wait_for_their_outcome_sqlite, impressions_wait_for_their_outcome_postgres;
}

// ---- fixtures ------------------------------------------------------------------------------------

/// The lineage every test dataset records; datasets hold their source typed, as the domain states it.
static SOURCE: LazyLock<DatasetSource> = LazyLock::new(|| DatasetSource::Events {
    loop_key: "notes".into(),
    segments: vec![1, 2],
    events: 1200,
    range: None,
    event_ids: "datasets/notes.events.json".into(),
    annotations: None,
    annotation_lineage: None,
});
static CONFIG: LazyLock<ModelConfig> = LazyLock::new(|| ModelConfig { n_layer: 4, d_model: 128, ..Default::default() });
static TRAIN_METRICS: LazyLock<TrainMetrics> =
    LazyLock::new(|| TrainMetrics::Provenance(json!({"loss": 2.1, "steps": 100})));

fn new_dataset<'a>(name: &'a str, digest: &'a str) -> NewDataset<'a> {
    NewDataset {
        name,
        kind: DatasetKind::Sft,
        digest,
        rows: 1200,
        bytes: 480_000,
        path: "datasets/notes.jsonl",
        source: &SOURCE,
    }
}

/// A job of `kind` with 100 steps, as stored.
fn new_job(kind: &str) -> JobSpec {
    JobSpec {
        kind: kind.parse().unwrap(),
        loop_key: None,
        model_id: None,
        dataset_id: Some(3),
        held_out_id: None,
        name: None,
        model_config: None,
        train: TrainConfig { steps: 100, lr: 0.001, batch_size: 8, ..Default::default() },
        eval: Default::default(),
        reward: None,
    }
}

/// A decision whose reason is `reason`, for a challenger of reward `reward`.
fn decision(reason: &str, reward: Option<f64>, champion: Option<f64>) -> PromotionDecision {
    PromotionDecision {
        challenger: Contender { id: 1, name: "challenger".into(), reward },
        champion: champion.map(|r| Contender { id: 2, name: "champion".into(), reward: Some(r) }),
        experiment: None,
        online_rule: None,
        offline_rule: None,
        offline_margin: None,
        reason: reason.into(),
    }
}

fn eval_of(scores: &[(&str, f64)], reward: f64) -> ModelEval {
    ModelEval {
        scores: scores.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
        counts: Default::default(),
        reward,
        reward_spec: Default::default(),
        held_out_digest: "sha256:held".into(),
        config: Default::default(),
    }
}

fn job_metric(step: i64, loss: f64) -> JobMetric {
    JobMetric {
        step,
        loss,
        lr: 0.001,
        grad_norm: 1.5,
        tokens_per_s: 2048.0,
        reward_margin: None,
        reward_accuracy: None,
        at: at("2027-03-01T10:00:00Z") + chrono::Duration::seconds(step),
    }
}

fn new_model<'a>(name: &'a str, loop_key: Option<&'a str>) -> NewModel<'a> {
    NewModel {
        name,
        loop_key,
        kind: ModelKind::Sft,
        base_model_id: None,
        dataset_digest: Some("sha256:aa"),
        job_id: None,
        path: "models/notes",
        config: &CONFIG,
        parameters: 1_200_000,
        train_metrics: &TRAIN_METRICS,
    }
}

fn new_impression(event_id: &str, at: DateTime<Utc>) -> NewImpression<'_> {
    NewImpression {
        event_id,
        loop_key: "notes",
        user_id: "u-1",
        variant: "v2",
        model_id: 7,
        context: "Patient reports",
        suggestion: " mild pain since Monday",
        latency_ms: 42.5,
        unit: Some("clinic-a"),
        at,
    }
}

/// Claims the next job for `worker` and fails the test when there is none.
async fn claim(store: &Store, worker: &str, lease: chrono::Duration, now: DateTime<Utc>) -> Job {
    store.claim_job(worker, lease, now, None).await.unwrap().unwrap_or_else(|| panic!("{worker} claims a job"))
}

// ---- contracts -----------------------------------------------------------------------------------

async fn contract_datasets_are_idempotent_by_digest(store: Store) {
    let org = store.ensure_org("acme", "Acme").await.unwrap();
    let other = store.ensure_org("globex", "Globex").await.unwrap();
    let before = Utc::now();
    let (first, created) = store.register_dataset(org, &new_dataset("notes-sft", "sha256:aa")).await.unwrap();
    assert!(created && first.id > 0);
    assert_eq!(
        (first.name.as_str(), first.kind.as_str(), first.digest.as_str(), first.rows, first.bytes),
        ("notes-sft", "sft", "sha256:aa", 1200, 480_000)
    );
    assert_eq!(first.path, "datasets/notes.jsonl");
    assert_eq!(first.source, *SOURCE);
    assert!((first.created_at - before).num_seconds().abs() < 60);

    // The same content under another name is the same dataset: the first registration stands.
    let (again, created) = store.register_dataset(org, &new_dataset("notes-sft-again", "sha256:aa")).await.unwrap();
    assert!(!created);
    assert_eq!(again, first);
    assert_eq!(store.dataset(org, first.id).await.unwrap(), Some(first.clone()));
    assert_eq!(store.dataset_by_digest(org, "sha256:aa").await.unwrap(), Some(first.clone()));
    assert_eq!(store.dataset_by_digest(org, "sha256:zz").await.unwrap(), None);

    // Another organisation registering the same content gets its own dataset.
    let (theirs, created) = store.register_dataset(other, &new_dataset("theirs", "sha256:aa")).await.unwrap();
    assert!(created);
    assert_ne!(theirs.id, first.id);
    assert_eq!(store.dataset(other, first.id).await.unwrap(), None);
    assert_eq!(store.dataset(org, theirs.id).await.unwrap(), None);
    assert_eq!(store.dataset_by_digest(other, "sha256:aa").await.unwrap(), Some(theirs.clone()));

    let (second, created) = store.register_dataset(org, &new_dataset("notes-sft", "sha256:bb")).await.unwrap();
    assert!(created);
    assert_eq!(store.list_datasets(org).await.unwrap(), vec![second, first], "newest first");
    assert_eq!(store.list_datasets(other).await.unwrap(), vec![theirs]);
}

async fn contract_job_lifecycle(store: Store) {
    let org = store.ensure_org("acme", "Acme").await.unwrap();
    let before = Utc::now();
    let job = store.enqueue_job(org, &new_job("sft")).await.unwrap();
    assert_eq!((job.org_id, job.kind.as_str(), job.status.as_str()), (org, "sft", "pending"));
    assert_eq!(job.spec, new_job("sft"));
    assert_eq!((job.step, job.total_steps, job.progress, job.attempts), (0, 100, 0.0, 0));
    assert_eq!((job.lease_owner.as_deref(), job.lease_expires_at, job.heartbeat_at), (None, None, None));
    assert!(!job.cancel_requested);
    assert_eq!((job.checkpoint_path.as_deref(), job.checkpoint_step), (None, None));
    assert_eq!((job.result.as_ref(), job.error.as_deref()), (None, None));
    assert_eq!((job.started_at, job.finished_at), (None, None));
    assert!((job.created_at - before).num_seconds().abs() < 60);
    assert_eq!(store.job(org, job.id).await.unwrap(), Some(job.clone()));
    assert_eq!(store.job(org, job.id + 1000).await.unwrap(), None);

    let t0 = at("2027-03-01T10:00:00Z");
    let lease = minutes(5);
    let claimed = claim(&store, "w1", lease, t0).await;
    let expected = Job {
        status: JobStatus::Running,
        lease_owner: Some("w1".into()),
        lease_expires_at: Some(t0 + lease),
        heartbeat_at: Some(t0),
        attempts: 1,
        started_at: Some(t0),
        ..job.clone()
    };
    assert_eq!(claimed, expected);
    assert_eq!(store.job(org, job.id).await.unwrap(), Some(expected));
    // The lease still runs, so nobody else may take the job.
    assert_eq!(store.claim_job("w2", lease, t0 + minutes(1), None).await.unwrap(), None);

    let t1 = t0 + minutes(1);
    assert_eq!(store.heartbeat_job(job.id, "w1", 40, 0.4, lease, t1).await.unwrap(), Heartbeat::Continue);
    assert_eq!(store.heartbeat_job(job.id, "w2", 99, 0.99, lease, t1).await.unwrap(), Heartbeat::LeaseLost);
    assert!(store.record_job_checkpoint(job.id, "w1", "jobs/1/step-40", 40).await.unwrap());
    assert!(!store.record_job_checkpoint(job.id, "w2", "jobs/1/step-41", 41).await.unwrap());
    let running = store.job(org, job.id).await.unwrap().unwrap();
    assert_eq!((running.step, running.progress), (40, 0.4));
    assert_eq!((running.lease_expires_at, running.heartbeat_at), (Some(t1 + lease), Some(t1)));
    assert_eq!((running.checkpoint_path.as_deref(), running.checkpoint_step), (Some("jobs/1/step-40"), Some(40)));

    // Metrics: a step recorded again replaces the earlier row.
    let mut third = job_metric(3, 2.3);
    store.append_job_metrics(job.id, &[job_metric(1, 2.5), job_metric(2, 2.4), third.clone()]).await.unwrap();
    third = JobMetric { loss: 2.25, reward_margin: Some(0.5), reward_accuracy: Some(0.75), ..third };
    store.append_job_metrics(job.id, &[third.clone(), job_metric(4, 2.1)]).await.unwrap();
    store.append_job_metrics(job.id, &[]).await.unwrap();
    assert_eq!(
        store.job_metrics(org, job.id, 0).await.unwrap(),
        vec![job_metric(1, 2.5), job_metric(2, 2.4), third.clone(), job_metric(4, 2.1)]
    );
    assert_eq!(store.job_metrics(org, job.id, 2).await.unwrap(), vec![third, job_metric(4, 2.1)]);
    // A diverged step reads back as NaN (SQLite stores a NaN as NULL).
    let diverged = JobMetric { loss: f64::NAN, grad_norm: f64::INFINITY, ..job_metric(5, 0.0) };
    store.append_job_metrics(job.id, &[diverged]).await.unwrap();
    let read = store.job_metrics(org, job.id, 4).await.unwrap();
    assert_eq!(read.len(), 1);
    assert!(read[0].loss.is_nan() && read[0].grad_norm == f64::INFINITY && read[0].lr == 0.001, "{read:?}");
    assert!(store.job_metrics(org, job.id, 5).await.unwrap().is_empty());
    assert_not_found(store.append_job_metrics(job.id + 1000, &[job_metric(1, 2.0)]).await, "job", job.id + 1000);

    // Only the holder may finish the job, and only with a final status.
    let t2 = t0 + minutes(3);
    let result = JobResult { model_id: Some(7), ..Default::default() };
    assert!(!store.finish_job(job.id, "w2", JobStatus::Succeeded, Some(&result), None, t2).await.unwrap());
    assert_eq!(store.job(org, job.id).await.unwrap(), Some(running.clone()));
    assert_rejected(store.finish_job(job.id, "w1", JobStatus::Running, None, None, t2).await, "status");
    assert!(store.finish_job(job.id, "w1", JobStatus::Succeeded, Some(&result), None, t2).await.unwrap());
    let done = store.job(org, job.id).await.unwrap().unwrap();
    let expected = Job {
        status: JobStatus::Succeeded,
        progress: 1.0,
        result: Some(result.clone()),
        finished_at: Some(t2),
        lease_owner: None,
        lease_expires_at: None,
        ..running
    };
    assert_eq!(done, expected);

    // A finished job is not claimable, not even long after its old lease ran out, and stays finished.
    assert_eq!(store.claim_job("w3", lease, t2 + chrono::Duration::days(1), None).await.unwrap(), None);
    assert!(!store.finish_job(job.id, "w1", JobStatus::Failed, None, Some("late"), t2).await.unwrap());
    assert_eq!(store.heartbeat_job(job.id, "w1", 41, 0.41, lease, t2).await.unwrap(), Heartbeat::LeaseLost);
    assert_eq!(store.cancel_job(org, job.id, t2).await.unwrap(), Some(done.clone()));
    assert_eq!(store.job(org, job.id).await.unwrap(), Some(done.clone()));

    let next = store.enqueue_job(org, &new_job("eval")).await.unwrap();
    assert_eq!(store.list_jobs(org, 10).await.unwrap(), vec![next.clone(), done], "newest first");
    assert_eq!(store.list_jobs(org, 1).await.unwrap(), vec![next]);
}

async fn contract_only_the_lease_holder_records_an_eval_or_steps(store: Store) {
    let org = store.ensure_org("acme", "Acme").await.unwrap();
    let other = store.ensure_org("globex", "Globex").await.unwrap();
    let model = store.create_model(org, &new_model("notes-sft-1", Some("notes"))).await.unwrap();
    let theirs = store.create_model(other, &new_model("theirs", None)).await.unwrap();
    let job = store.enqueue_job(org, &new_job("eval")).await.unwrap();
    let t0 = at("2027-03-01T10:00:00Z");
    claim(&store, "w1", minutes(5), t0).await;
    let scores = eval_of(&[("perplexity", 8.5)], 0.42);
    let result = JobResult { model_id: Some(model.id), eval: Some(scores.clone()), ..Default::default() };

    // Steps: the holder's are kept, another worker's are not (nor are any once the job has ended).
    assert!(store.append_job_metrics_held(job.id, "w1", &[job_metric(1, 2.0)]).await.unwrap());
    assert!(!store.append_job_metrics_held(job.id, "w2", &[job_metric(1, 9.9), job_metric(2, 9.9)]).await.unwrap());
    assert_eq!(store.job_metrics(org, job.id, 0).await.unwrap(), vec![job_metric(1, 2.0)]);
    assert_not_found(
        store.append_job_metrics_held(job.id + 1000, "w1", &[job_metric(1, 2.0)]).await,
        "job",
        job.id + 1000,
    );

    // The eval: not by a worker that does not hold the lease, not on another organisation's model (and
    // then nothing of it is written), once by the holder, and never again.
    let items = EvalItems { completions: vec![true, true, false], ..Default::default() };
    assert_eq!(
        store.complete_eval_job(job.id, "w2", model.id, (&scores, Some(&items)), &result, t0).await.unwrap(),
        None
    );
    assert_not_found(
        store.complete_eval_job(job.id, "w1", theirs.id, (&scores, Some(&items)), &result, t0).await,
        "model",
        theirs.id,
    );
    assert_eq!(store.eval_items(org, model.id).await.unwrap(), None, "nothing written without the lease");
    let running = store.job(org, job.id).await.unwrap().unwrap();
    assert_eq!((running.status, running.lease_owner.as_deref()), (JobStatus::Running, Some("w1")));
    assert_eq!(store.model(other, theirs.id).await.unwrap(), Some(theirs));
    let t1 = t0 + minutes(1);
    let evaluated =
        store.complete_eval_job(job.id, "w1", model.id, (&scores, Some(&items)), &result, t1).await.unwrap();
    let expected =
        slope_domain::Model { eval: Some(scores.clone()), reward: Some(0.42), evaluated_at: Some(t1), ..model };
    assert_eq!(evaluated, Some(expected.clone()));
    let done = store.job(org, job.id).await.unwrap().unwrap();
    assert_eq!(
        (done.status, done.result, done.finished_at, done.lease_owner),
        (JobStatus::Succeeded, Some(result.clone()), Some(t1), None)
    );
    assert_eq!(store.eval_items(org, model.id).await.unwrap(), Some(items.clone()));
    let again = eval_of(&[("perplexity", 1.0)], 0.99);
    assert_eq!(store.complete_eval_job(job.id, "w1", expected.id, (&again, None), &result, t1).await.unwrap(), None);
    assert_eq!(store.eval_items(org, model.id).await.unwrap(), Some(items), "a finished job writes nothing more");
    assert!(!store.append_job_metrics_held(job.id, "w1", &[job_metric(3, 1.0)]).await.unwrap());
    assert_eq!(store.model(org, expected.id).await.unwrap(), Some(expected));
}

async fn contract_jobs_are_isolated_by_org(store: Store) {
    let org = store.ensure_org("acme", "Acme").await.unwrap();
    let other = store.ensure_org("globex", "Globex").await.unwrap();
    let job = store.enqueue_job(org, &new_job("sft")).await.unwrap();
    store.append_job_metrics(job.id, &[job_metric(1, 2.5)]).await.unwrap();

    assert_eq!(store.job(other, job.id).await.unwrap(), None);
    assert_eq!(store.cancel_job(other, job.id, at("2027-03-01T10:00:00Z")).await.unwrap(), None);
    assert!(store.job_metrics(other, job.id, 0).await.unwrap().is_empty());
    assert!(store.list_jobs(other, 10).await.unwrap().is_empty());
    assert_eq!(store.job(org, job.id).await.unwrap(), Some(job.clone()), "the other organisation's cancel missed");
    assert_eq!(store.job_metrics(org, job.id, 0).await.unwrap(), vec![job_metric(1, 2.5)]);

    // Workers serve every organisation: claims take the oldest job, whoever queued it.
    let theirs = store.enqueue_job(other, &new_job("sft")).await.unwrap();
    let t0 = at("2027-03-01T10:00:00Z");
    assert_eq!(claim(&store, "w1", minutes(5), t0).await.id, job.id);
    let claimed = claim(&store, "w2", minutes(5), t0).await;
    assert_eq!((claimed.id, claimed.org_id), (theirs.id, other));
    assert_eq!(store.job(org, theirs.id).await.unwrap(), None);
}

async fn contract_expired_leases_are_claimed_again(store: Store) {
    let org = store.ensure_org("acme", "Acme").await.unwrap();
    let job = store.enqueue_job(org, &new_job("sft")).await.unwrap();
    let t0 = at("2027-03-01T10:00:00Z");
    let lease = minutes(5);
    claim(&store, "w1", lease, t0).await;
    assert_eq!(store.heartbeat_job(job.id, "w1", 10, 0.1, lease, t0 + minutes(1)).await.unwrap(), Heartbeat::Continue);
    assert!(store.record_job_checkpoint(job.id, "w1", "jobs/1/step-10", 10).await.unwrap());

    // The heartbeat moved the lease to t0 + 6 minutes.
    assert_eq!(store.claim_job("w2", lease, t0 + minutes(5), None).await.unwrap(), None);
    let t1 = t0 + minutes(7);
    let resumed = claim(&store, "w2", lease, t1).await;
    assert_eq!((resumed.id, resumed.status.as_str(), resumed.attempts), (job.id, "running", 2));
    assert_eq!(resumed.lease_owner.as_deref(), Some("w2"));
    assert_eq!((resumed.lease_expires_at, resumed.heartbeat_at), (Some(t1 + lease), Some(t1)));
    assert_eq!(resumed.started_at, Some(t0), "the job started with its first claim");
    assert_eq!((resumed.checkpoint_path.as_deref(), resumed.checkpoint_step), (Some("jobs/1/step-10"), Some(10)));
    assert_eq!(resumed.step, 10);

    // The first worker comes back: every write of its is refused and changes nothing.
    let t2 = t1 + minutes(1);
    assert_eq!(store.heartbeat_job(job.id, "w1", 20, 0.2, lease, t2).await.unwrap(), Heartbeat::LeaseLost);
    assert!(!store.record_job_checkpoint(job.id, "w1", "jobs/1/step-20", 20).await.unwrap());
    assert!(
        !store.finish_job(job.id, "w1", JobStatus::Succeeded, Some(&JobResult::default()), None, t2).await.unwrap()
    );
    assert_eq!(store.job(org, job.id).await.unwrap(), Some(resumed.clone()));

    assert_eq!(store.heartbeat_job(job.id, "w2", 30, 0.3, lease, t2).await.unwrap(), Heartbeat::Continue);
    assert!(store.finish_job(job.id, "w2", JobStatus::Failed, None, Some("out of memory"), t2).await.unwrap());
    let failed = store.job(org, job.id).await.unwrap().unwrap();
    assert_eq!(
        (failed.status.as_str(), failed.error.as_deref(), failed.result),
        ("failed", Some("out of memory"), None)
    );
    assert_eq!((failed.progress, failed.finished_at, failed.lease_owner), (0.3, Some(t2), None));
}

async fn contract_jobs_abandoned_too_often_fail(store: Store) {
    let org = store.ensure_org("acme", "Acme").await.unwrap();
    let job = store.enqueue_job(org, &new_job("sft")).await.unwrap();
    let t0 = at("2027-03-01T10:00:00Z");
    let lease = minutes(1);
    // Every worker dies: each claim comes after the previous lease ran out.
    for attempt in 1..=MAX_JOB_ATTEMPTS {
        let claimed = claim(&store, &format!("w{attempt}"), lease, t0 + minutes(10 * attempt)).await;
        assert_eq!((claimed.id, claimed.attempts), (job.id, attempt));
    }
    // The next claim fails the job instead of handing it out a sixth time, and still finds newer work.
    let next = store.enqueue_job(org, &new_job("sft")).await.unwrap();
    let t1 = t0 + minutes(10 * (MAX_JOB_ATTEMPTS + 1));
    let claimed = claim(&store, "w-next", lease, t1).await;
    assert_eq!(claimed.id, next.id);
    let failed = store.job(org, job.id).await.unwrap().unwrap();
    assert_eq!(failed.status, JobStatus::Failed);
    assert_eq!(failed.error.as_deref(), Some("abandoned by its worker 5 times"));
    assert_eq!(
        (failed.attempts, failed.finished_at, failed.lease_owner.as_deref()),
        (MAX_JOB_ATTEMPTS, Some(t1), None)
    );
    let last = format!("w{MAX_JOB_ATTEMPTS}");
    assert_eq!(store.heartbeat_job(job.id, &last, 1, 0.01, lease, t1).await.unwrap(), Heartbeat::LeaseLost);
    // Much later the newer job's lease has run out too, and it alone comes back: the failed job never does.
    assert_eq!(claim(&store, "w-late", lease, t1 + minutes(60)).await.id, next.id);
    assert_eq!(store.claim_job("w-later", lease, t1 + minutes(61), None).await.unwrap(), None);
}

async fn contract_cancelled_jobs(store: Store) {
    let org = store.ensure_org("acme", "Acme").await.unwrap();
    let t0 = at("2027-03-01T10:00:00Z");
    let lease = minutes(5);
    let running = store.enqueue_job(org, &new_job("sft")).await.unwrap();
    claim(&store, "w1", lease, t0).await;
    let pending = store.enqueue_job(org, &new_job("sft")).await.unwrap();

    // A pending job is cancelled at once and never handed to a worker.
    let t1 = t0 + minutes(1);
    let cancelled = store.cancel_job(org, pending.id, t1).await.unwrap().unwrap();
    assert_eq!((cancelled.status.as_str(), cancelled.finished_at), ("cancelled", Some(t1)));
    assert_eq!(store.job(org, pending.id).await.unwrap(), Some(cancelled.clone()));
    assert_eq!(store.claim_job("w2", lease, t1, None).await.unwrap(), None);

    // A running job is asked to stop; its worker hears it at the next heartbeat, which still renews the
    // lease so the worker can finish the job as cancelled.
    let asked = store.cancel_job(org, running.id, t1).await.unwrap().unwrap();
    assert_eq!((asked.status.as_str(), asked.cancel_requested, asked.finished_at), ("running", true, None));
    let t2 = t0 + minutes(2);
    assert_eq!(store.heartbeat_job(running.id, "w1", 5, 0.05, lease, t2).await.unwrap(), Heartbeat::Cancel);
    assert_eq!(store.job(org, running.id).await.unwrap().unwrap().lease_expires_at, Some(t2 + lease));
    assert!(store.finish_job(running.id, "w1", JobStatus::Cancelled, None, None, t2).await.unwrap());
    let stopped = store.job(org, running.id).await.unwrap().unwrap();
    assert_eq!((stopped.status.as_str(), stopped.finished_at, stopped.progress), ("cancelled", Some(t2), 0.05));
    assert_eq!(store.cancel_job(org, running.id, t2).await.unwrap(), Some(stopped));
    assert_eq!(store.cancel_job(org, pending.id, t2).await.unwrap(), Some(cancelled));
    assert_eq!(store.cancel_job(org, running.id + 1000, t2).await.unwrap(), None);

    // A job whose worker died after the cancel request is cancelled, not handed to another worker.
    let orphan = store.enqueue_job(org, &new_job("sft")).await.unwrap();
    claim(&store, "w3", lease, t2).await;
    store.cancel_job(org, orphan.id, t2).await.unwrap();
    let t3 = t2 + minutes(60);
    assert_eq!(store.claim_job("w4", lease, t3, None).await.unwrap(), None);
    let orphan = store.job(org, orphan.id).await.unwrap().unwrap();
    assert_eq!((orphan.status.as_str(), orphan.finished_at, orphan.attempts), ("cancelled", Some(t3), 1));
}

async fn contract_concurrent_claims_take_each_job_once(store: Store) {
    const JOBS: usize = 20;
    const WORKERS: usize = 8;
    let org = store.ensure_org("acme", "Acme").await.unwrap();
    let mut queued = vec![];
    for _ in 0..JOBS {
        queued.push(store.enqueue_job(org, &new_job("sft")).await.unwrap().id);
    }
    let now = at("2027-03-01T10:00:00Z");
    // The barrier releases every worker at once, so that their claims really overlap.
    let start = Arc::new(tokio::sync::Barrier::new(WORKERS));
    let workers: Vec<_> = (0..WORKERS)
        .map(|w| {
            let (store, start) = (store.clone(), start.clone());
            tokio::spawn(async move {
                let worker = format!("w{w}");
                start.wait().await;
                let mut claimed = vec![];
                while let Some(job) = store.claim_job(&worker, minutes(10), now, None).await.expect("a claim succeeds")
                {
                    assert_eq!(job.lease_owner.as_deref(), Some(worker.as_str()));
                    claimed.push(job.id);
                }
                claimed
            })
        })
        .collect();
    let mut claimed = vec![];
    for worker in workers {
        claimed.extend(worker.await.expect("worker task finishes"));
    }
    claimed.sort_unstable();
    assert_eq!(claimed, queued, "every job is claimed exactly once");
    let jobs = store.list_jobs(org, 100).await.unwrap();
    assert!(jobs.iter().all(|j| j.status == JobStatus::Running && j.attempts == 1), "{jobs:?}");
}

async fn contract_claims_filter_by_kind(store: Store) {
    let org = store.ensure_org("acme", "Acme").await.unwrap();
    let eval = store.enqueue_job(org, &new_job("eval")).await.unwrap();
    let sft = store.enqueue_job(org, &new_job("sft")).await.unwrap();
    let dpo = store.enqueue_job(org, &new_job("dpo")).await.unwrap();
    let now = at("2027-03-01T10:00:00Z");
    let lease = minutes(5);
    let by_kind = |kinds: &'static [JobKind]| {
        let store = store.clone();
        async move { store.claim_job("w", lease, now, Some(kinds)).await.unwrap().map(|j| j.id) }
    };
    assert_eq!(by_kind(&[JobKind::Pretrain]).await, None);
    assert_eq!(by_kind(&[]).await, None);
    assert_eq!(by_kind(&[JobKind::Sft, JobKind::Dpo]).await, Some(sft.id));
    assert_eq!(by_kind(&[JobKind::Eval]).await, Some(eval.id));
    assert_eq!(by_kind(&[JobKind::Eval]).await, None);
    assert_eq!(store.claim_job("w", lease, now, None).await.unwrap().map(|j| j.id), Some(dpo.id));
}

async fn contract_models_and_aliases(store: Store) {
    let org = store.ensure_org("acme", "Acme").await.unwrap();
    let other = store.ensure_org("globex", "Globex").await.unwrap();
    let before = Utc::now();
    let base = store
        .create_model(org, &NewModel { kind: ModelKind::Pretrain, dataset_digest: None, ..new_model("base", None) })
        .await;
    let base = base.unwrap();
    assert_eq!((base.name.as_str(), base.loop_key.as_deref(), base.kind.as_str()), ("base", None, "pretrain"));
    assert_eq!((base.base_model_id, base.dataset_digest.as_deref(), base.job_id), (None, None, None));
    assert_eq!((base.path.as_str(), base.parameters), ("models/notes", 1_200_000));
    assert_eq!(base.config, *CONFIG);
    assert_eq!(base.train_metrics, *TRAIN_METRICS);
    assert_eq!((base.eval.as_ref(), base.reward, base.evaluated_at), (None, None, None));
    assert!((base.created_at - before).num_seconds().abs() < 60);

    let job = store.enqueue_job(org, &new_job("sft")).await.unwrap();
    let tuned =
        NewModel { base_model_id: Some(base.id), job_id: Some(job.id), ..new_model("notes-sft-1", Some("notes")) };
    let tuned = store.create_model(org, &tuned).await.unwrap();
    assert_eq!(
        (tuned.loop_key.as_deref(), tuned.base_model_id, tuned.job_id),
        (Some("notes"), Some(base.id), Some(job.id))
    );
    assert_eq!(tuned.dataset_digest.as_deref(), Some("sha256:aa"));
    let taken = store.create_model(org, &new_model("notes-sft-1", Some("notes"))).await;
    assert!(matches!(&taken, Err(e) if e.is_unique_violation()), "{taken:?}");
    let theirs = store.create_model(other, &new_model("notes-sft-1", Some("notes"))).await.unwrap();

    assert_eq!(store.model(org, tuned.id).await.unwrap(), Some(tuned.clone()));
    assert_eq!(store.model_by_name(org, "notes-sft-1").await.unwrap(), Some(tuned.clone()));
    assert_eq!(store.model_by_name(other, "notes-sft-1").await.unwrap(), Some(theirs.clone()));
    assert_eq!(store.model(other, tuned.id).await.unwrap(), None);
    assert_eq!(store.model_by_name(org, "missing").await.unwrap(), None);
    assert_eq!(store.list_models(org, None).await.unwrap(), vec![tuned.clone(), base.clone()], "newest first");
    assert_eq!(store.list_models(org, Some("notes")).await.unwrap(), vec![tuned.clone()]);
    assert!(store.list_models(org, Some("mail")).await.unwrap().is_empty());
    assert_eq!(store.list_models(other, None).await.unwrap(), vec![theirs.clone()]);

    let t0 = at("2027-03-01T10:00:00Z");
    let scores = eval_of(&[("exact_match", 0.4), ("perplexity", 8.5)], 0.42);
    let items = EvalItems {
        texts: vec![TextItem { accepted: 3, suggested: 16, latencies_ms: vec![4.5, 6.0] }],
        windows: vec![[21.5, 16.0]],
        completions: vec![true, false],
        preferences: vec![],
    };
    let evaluated = store.set_model_eval(org, tuned.id, &scores, Some(&items), t0).await.unwrap();
    let expected =
        slope_domain::Model { eval: Some(scores.clone()), reward: Some(0.42), evaluated_at: Some(t0), ..tuned.clone() };
    assert_eq!(evaluated, expected);
    assert_eq!(store.model(org, tuned.id).await.unwrap(), Some(expected.clone()));
    assert_eq!(store.eval_items(org, tuned.id).await.unwrap(), Some(items.clone()), "the per-item results round-trip");
    assert_eq!(store.eval_items(other, tuned.id).await.unwrap(), None, "not another organisation's");
    assert_eq!(store.eval_items(org, base.id).await.unwrap(), None);
    assert_not_found(store.set_model_eval(other, tuned.id, &eval_of(&[], 0.9), None, t0).await, "model", tuned.id);
    assert_eq!(store.eval_items(org, tuned.id).await.unwrap(), Some(items), "a refused eval removes nothing");
    // An eval without per-item results leaves none of the earlier eval's behind.
    store.set_model_eval(org, tuned.id, &scores, None, t0).await.unwrap();
    assert_eq!(store.eval_items(org, tuned.id).await.unwrap(), None);
    store.set_model_eval(org, tuned.id, &scores, None, t0).await.unwrap();
    assert_eq!(store.model(org, tuned.id).await.unwrap(), Some(expected));
    assert_eq!(store.model(other, theirs.id).await.unwrap(), Some(theirs.clone()));

    let challenger = store.set_alias(org, "notes", AliasKind::Challenger, tuned.id, t0).await.unwrap();
    let expected = Alias { loop_key: "notes".into(), alias: AliasKind::Challenger, model_id: tuned.id, updated_at: t0 };
    assert_eq!(challenger, expected);
    assert_eq!(store.alias(org, "notes", AliasKind::Challenger).await.unwrap(), Some(expected));
    let t1 = t0 + minutes(1);
    let champion = store.set_alias(org, "notes", AliasKind::Champion, base.id, t0).await.unwrap();
    let replaced = store.set_alias(org, "notes", AliasKind::Challenger, base.id, t1).await.unwrap();
    assert_eq!((replaced.model_id, replaced.updated_at), (base.id, t1));
    let mail = store.set_alias(org, "mail", AliasKind::Champion, tuned.id, t1).await.unwrap();
    assert_eq!(store.aliases(org, None).await.unwrap(), vec![mail, replaced.clone(), champion.clone()]);
    assert_eq!(store.aliases(org, Some("notes")).await.unwrap(), vec![replaced, champion]);
    assert_not_found(store.set_alias(org, "notes", AliasKind::Champion, theirs.id, t1).await, "model", theirs.id);
    assert_eq!(store.alias(org, "notes", AliasKind::Champion).await.unwrap().map(|a| a.model_id), Some(base.id));
    assert_eq!(store.alias(other, "notes", AliasKind::Challenger).await.unwrap(), None);
    assert!(store.aliases(other, None).await.unwrap().is_empty());
}

async fn contract_promotions(store: Store) {
    let org = store.ensure_org("acme", "Acme").await.unwrap();
    let other = store.ensure_org("globex", "Globex").await.unwrap();
    let first = store.create_model(org, &new_model("notes-1", Some("notes"))).await.unwrap();
    let second = store.create_model(org, &new_model("notes-2", Some("notes"))).await.unwrap();
    let third = store.create_model(org, &new_model("notes-3", Some("notes"))).await.unwrap();
    let theirs = store.create_model(other, &new_model("notes-1", Some("notes"))).await.unwrap();
    let t0 = at("2027-03-01T10:00:00Z");
    let champion =
        |store: Store| async move { store.alias(org, "notes", AliasKind::Champion).await.unwrap().map(|a| a.model_id) };
    let challenger = |store: Store| async move {
        store.alias(org, "notes", AliasKind::Challenger).await.unwrap().map(|a| a.model_id)
    };

    // The loop's first champion.
    store.set_alias(org, "notes", AliasKind::Challenger, first.id, t0).await.unwrap();
    let d1 = decision("first champion", Some(0.4), None);
    let p1 = store.record_promotion(org, "notes", first.id, None, true, &d1, t0).await.unwrap();
    let expected = Promotion {
        id: p1.id,
        loop_key: "notes".into(),
        challenger_id: first.id,
        champion_id: None,
        accepted: true,
        decision: d1,
        at: t0,
    };
    assert_eq!(p1, expected);
    let crowned = store.alias(org, "notes", AliasKind::Champion).await.unwrap().unwrap();
    assert_eq!((crowned.model_id, crowned.updated_at), (first.id, t0));
    assert_eq!(challenger(store.clone()).await, None, "the promoted challenger's alias is removed");

    // A refused challenger is recorded and leaves the aliases alone.
    let t1 = t0 + minutes(10);
    store.set_alias(org, "notes", AliasKind::Challenger, second.id, t1).await.unwrap();
    let d2 = decision("does not beat", Some(0.38), Some(0.4));
    let p2 = store.record_promotion(org, "notes", second.id, Some(first.id), false, &d2, t1).await.unwrap();
    assert_eq!((p2.challenger_id, p2.champion_id, p2.accepted), (second.id, Some(first.id), false));
    assert_eq!((champion(store.clone()).await, challenger(store.clone()).await), (Some(first.id), Some(second.id)));

    // Decisions based on a stale champion are refused whole: no row, no alias change.
    let t2 = t0 + minutes(20);
    let stale = store.record_promotion(org, "notes", second.id, None, true, &decision("", None, None), t2).await;
    assert_conflict(stale, "champion", second.id, 0, first.id);
    let stale =
        store.record_promotion(org, "notes", second.id, Some(third.id), true, &decision("", None, None), t2).await;
    assert_conflict(stale, "champion", second.id, third.id, first.id);
    assert_eq!(store.promotions(org, Some("notes")).await.unwrap(), vec![p2.clone(), p1.clone()]);
    assert_eq!((champion(store.clone()).await, challenger(store.clone()).await), (Some(first.id), Some(second.id)));

    // Another organisation's model can be neither challenger nor recorded.
    let foreign =
        store.record_promotion(org, "notes", theirs.id, Some(first.id), true, &decision("", None, None), t2).await;
    assert_not_found(foreign, "model", theirs.id);
    let foreign =
        store.record_promotion(org, "notes", theirs.id, Some(first.id), false, &decision("", None, None), t2).await;
    assert_not_found(foreign, "model", theirs.id);

    let d3 = decision("beats", Some(0.5), Some(0.4));
    let p3 = store.record_promotion(org, "notes", second.id, Some(first.id), true, &d3, t2).await.unwrap();
    assert_eq!((p3.champion_id, p3.accepted), (Some(first.id), true));
    assert_eq!((champion(store.clone()).await, challenger(store.clone()).await), (Some(second.id), None));

    // Promoting a model that is not the challenger (a rollback) keeps the challenger alias.
    let t3 = t0 + minutes(30);
    store.set_alias(org, "notes", AliasKind::Challenger, third.id, t3).await.unwrap();
    let rollback = decision("rollback", None, None);
    let p4 = store.record_promotion(org, "notes", first.id, Some(second.id), true, &rollback, t3).await.unwrap();
    assert_eq!((champion(store.clone()).await, challenger(store.clone()).await), (Some(first.id), Some(third.id)));

    // Listed newest first by decision time, whatever order they were stored in.
    let early = t0 - minutes(60);
    let p0 =
        store.record_promotion(org, "mail", third.id, None, false, &decision("", None, None), early).await.unwrap();
    assert_eq!(store.promotions(org, None).await.unwrap(), vec![p4.clone(), p3.clone(), p2.clone(), p1.clone(), p0]);
    assert_eq!(store.promotions(org, Some("notes")).await.unwrap(), vec![p4, p3, p2, p1]);
    assert!(store.promotions(other, None).await.unwrap().is_empty());
    assert_eq!(store.alias(other, "notes", AliasKind::Champion).await.unwrap(), None);
}

async fn contract_impressions_wait_for_their_outcome(store: Store) {
    let org = store.ensure_org("acme", "Acme").await.unwrap();
    let other = store.ensure_org("globex", "Globex").await.unwrap();
    let t0 = at("2027-03-01T10:00:00Z");
    let first = store.record_impression(org, &new_impression("e-1", t0)).await.unwrap();
    let expected = Impression {
        id: first.id,
        org_id: org,
        event_id: "e-1".into(),
        loop_key: "notes".into(),
        user_id: "u-1".into(),
        variant: "v2".into(),
        model_id: 7,
        context: "Patient reports".into(),
        suggestion: " mild pain since Monday".into(),
        latency_ms: 42.5,
        unit: Some("clinic-a".into()),
        accepted_chars: None,
        final_text: None,
        at: t0,
        outcome_at: None,
    };
    assert_eq!(first, expected);
    let second = store.record_impression(org, &new_impression("e-2", t0 + minutes(1))).await.unwrap();
    let third =
        store.record_impression(org, &NewImpression { unit: None, ..new_impression("e-3", t0 + minutes(2)) }).await;
    let third = third.unwrap();
    assert_eq!(third.unit, None);
    let repeated = store.record_impression(org, &new_impression("e-1", t0 + minutes(3))).await;
    assert!(matches!(&repeated, Err(e) if e.is_unique_violation()), "{repeated:?}");
    let theirs = store.record_impression(other, &new_impression("e-1", t0 + minutes(4))).await.unwrap();

    // The outcome is set once; a second report gets the first one back.
    let t1 = t0 + minutes(3);
    let reported = store.record_impression_outcome(org, "notes", "e-2", 7, Some("mild pain"), t1).await.unwrap();
    let expected =
        Impression { accepted_chars: Some(7), final_text: Some("mild pain".into()), outcome_at: Some(t1), ..second };
    assert_eq!(reported, expected);
    let again = store.record_impression_outcome(org, "notes", "e-2", 0, None, t1 + minutes(1)).await.unwrap();
    assert_eq!(again, reported);
    assert_not_found(store.record_impression_outcome(org, "mail", "e-2", 1, None, t1).await, "impression", 0);
    assert_not_found(store.record_impression_outcome(org, "notes", "e-9", 1, None, t1).await, "impression", 0);
    assert_not_found(store.record_impression_outcome(other, "notes", "e-3", 1, None, t1).await, "impression", 0);

    // Ready: those with an outcome, and those older than the timeout; oldest first, any organisation.
    let ready = store.ready_impressions(t0 + chrono::Duration::seconds(30), 10).await.unwrap();
    assert_eq!(ready, vec![first.clone(), reported.clone()]);
    let ready = store.ready_impressions(t0 + minutes(60), 10).await.unwrap();
    assert_eq!(ready, vec![first.clone(), reported.clone(), third.clone(), theirs.clone()]);
    assert_eq!(store.ready_impressions(t0 + minutes(60), 2).await.unwrap(), vec![first.clone(), reported.clone()]);

    store.delete_impressions(&[first.id, reported.id]).await.unwrap();
    store.delete_impressions(&[]).await.unwrap();
    assert_eq!(store.ready_impressions(t0 + minutes(60), 10).await.unwrap(), vec![third, theirs]);
    assert_not_found(store.record_impression_outcome(org, "notes", "e-1", 1, None, t1).await, "impression", 0);
}

async fn contract_only_the_lease_holder_registers_a_trained_model(store: Store) {
    let org = store.ensure_org("acme", "Acme").await.unwrap();
    let job = store.enqueue_job(org, &new_job("sft")).await.unwrap();
    let t0 = at("2027-03-01T10:00:00Z");
    let lease = minutes(5);
    claim(&store, "w1", lease, t0).await;
    let t1 = t0 + minutes(6);
    claim(&store, "w2", lease, t1).await;
    let model = NewModel { job_id: Some(job.id), ..new_model("notes-sft-j1", Some("notes")) };
    let result = JobResult { challenger: Some("named".into()), ..Default::default() };

    // The worker that lost its lease finishes training late: it registers nothing at all.
    let stale = store.complete_training_job(job.id, "w1", &model, Some("notes"), &result, t1).await.unwrap();
    assert_eq!(stale, None);
    assert_eq!(store.model_by_name(org, "notes-sft-j1").await.unwrap(), None);
    assert_eq!(store.alias(org, "notes", AliasKind::Challenger).await.unwrap(), None);
    assert_eq!(store.job(org, job.id).await.unwrap().unwrap().status, JobStatus::Running);

    // The holder registers the model, names it the loop's challenger and ends the job, together.
    let t2 = t1 + minutes(1);
    let record = store.complete_training_job(job.id, "w2", &model, Some("notes"), &result, t2).await.unwrap().unwrap();
    assert_eq!((record.name.as_str(), record.job_id), ("notes-sft-j1", Some(job.id)));
    assert_eq!(store.alias(org, "notes", AliasKind::Challenger).await.unwrap().map(|a| a.model_id), Some(record.id));
    let done = store.job(org, job.id).await.unwrap().unwrap();
    assert_eq!((done.status.as_str(), done.finished_at, done.lease_owner), ("succeeded", Some(t2), None));
    assert_eq!(done.step, done.total_steps);
    let result = done.result.unwrap();
    assert_eq!((result.model_id, result.model.as_deref()), (Some(record.id), Some("notes-sft-j1")));
    assert_eq!(result.challenger.as_deref(), Some("named"));
    // Done is done: a second completion registers nothing.
    let again = NewModel { ..new_model("notes-sft-j1-again", Some("notes")) };
    assert_eq!(store.complete_training_job(job.id, "w2", &again, None, &JobResult::default(), t2).await.unwrap(), None);
}

async fn contract_gate_policies_default_and_change_on_the_trail(store: Store) {
    let org = store.ensure_org("acme", "Acme").await.unwrap();
    let other = store.ensure_org("globex", "Globex").await.unwrap();
    assert_eq!(store.gate_policy(org, "notes").await.unwrap(), GatePolicy::default_for("notes"));
    let set = store.set_gate_policy(&sys(org), "notes", OnlineRule::Better, OfflineRule::Beats).await.unwrap();
    assert_eq!(
        (set.online, set.offline, set.set_by.as_deref()),
        (OnlineRule::Better, OfflineRule::Beats, Some("system:contract-test"))
    );
    assert_eq!(store.gate_policy(org, "notes").await.unwrap(), set, "read back as written");
    assert_eq!(store.gate_policy(org, "search").await.unwrap().online, OnlineRule::NotWorse, "per loop");
    assert_eq!(store.gate_policy(other, "notes").await.unwrap().online, OnlineRule::NotWorse, "per organisation");
    assert_eq!(store.gate_policy(other, "notes").await.unwrap().offline, OfflineRule::IntervalAboveZero);
    let back =
        store.set_gate_policy(&sys(org), "notes", OnlineRule::NotWorse, OfflineRule::IntervalAboveZero).await.unwrap();
    assert_eq!(store.gate_policy(org, "notes").await.unwrap(), back);
    let trail = store.audit_log(org, Some(("gate_policy", org.0)), None, 10).await.unwrap();
    assert_eq!(trail.len(), 2, "each change is on the trail");
}
