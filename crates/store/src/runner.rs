//! The fine-tune and eval runner's storage: datasets, a job queue with leases, per-step job metrics,
//! the model registry with aliases and promotion decisions, and serving impressions.
//!
//! The job queue lives in the database so that any number of workers, on any number of machines, can
//! share it without another service. A worker claims a job by taking its lease and keeps it by
//! heartbeats; every later write of the worker names itself and is refused once the lease has passed
//! to another worker, so a worker that was presumed dead cannot overwrite its successor's work.
//!
//! Rows are read into private row structs and parsed into the domain's types here, at the store's
//! edge: kinds and statuses become enums, JSON columns become typed specifications, results and
//! decisions. A row that does not parse is reported as corrupt rather than passed on half-read.

// Long on purpose: the job queue's leases and claims, the registry's aliases and promotions and the
// impressions share one set of row types and transactions; splitting them would scatter the lease rules that
// every statement here repeats.

use chrono::{DateTime, Utc};
use sqlx::types::Json;

use slope_domain::{
    Alias, AliasKind, Dataset, DatasetKind, DatasetSource, EvalItems, FieldErrors, Impression, Job, JobKind, JobMetric,
    JobResult, JobSpec, JobStatus, Model, ModelConfig, ModelEval, ModelKind, OrgId, Promotion, PromotionDecision,
    TrainMetrics,
};

use crate::{Result, Store, StoreError, in_tx, on_db};

/// Parses a string column into one of the domain's enums, naming the table and column when it fails.
fn parse_enum<T: std::str::FromStr<Err = String>>(raw: &str, what: &str) -> Result<T> {
    raw.parse().map_err(|e| StoreError::corrupt(format!("{what}: {e}")))
}

/// Parses every row, failing on the first that does not parse.
fn parse_all<R, T>(rows: Vec<R>, parse: impl Fn(R) -> Result<T>) -> Result<Vec<T>> {
    rows.into_iter().map(parse).collect()
}

// ---- datasets ------------------------------------------------------------------------------------

/// A dataset version about to be registered.
#[derive(Debug, Clone)]
pub struct NewDataset<'a> {
    pub name: &'a str,
    pub kind: DatasetKind,
    pub digest: &'a str,
    pub rows: i64,
    pub bytes: i64,
    /// The object-store path of the JSONL file.
    pub path: &'a str,
    /// Lineage: the loop's segments and events it was built from, or the upload or file it came from.
    pub source: &'a DatasetSource,
}

#[derive(sqlx::FromRow)]
struct DatasetRow {
    id: i64,
    name: String,
    kind: String,
    digest: String,
    rows: i64,
    bytes: i64,
    path: String,
    #[sqlx(json)]
    source: DatasetSource,
    created_at: DateTime<Utc>,
}

impl DatasetRow {
    fn parse(self) -> Result<Dataset> {
        Ok(Dataset {
            id: self.id,
            name: self.name,
            kind: parse_enum(&self.kind, "datasets.kind")?,
            digest: self.digest,
            rows: self.rows,
            bytes: self.bytes,
            path: self.path,
            source: self.source,
            created_at: self.created_at,
        })
    }
}

// ---- jobs ----------------------------------------------------------------------------------------

#[derive(sqlx::FromRow)]
struct JobRow {
    id: i64,
    org_id: i64,
    kind: String,
    status: String,
    #[sqlx(json)]
    spec: JobSpec,
    step: i64,
    total_steps: i64,
    progress: f64,
    attempts: i64,
    lease_owner: Option<String>,
    lease_expires_at: Option<DateTime<Utc>>,
    heartbeat_at: Option<DateTime<Utc>>,
    cancel_requested: bool,
    checkpoint_path: Option<String>,
    checkpoint_step: Option<i64>,
    #[sqlx(json(nullable))]
    result: Option<JobResult>,
    error: Option<String>,
    created_at: DateTime<Utc>,
    started_at: Option<DateTime<Utc>>,
    finished_at: Option<DateTime<Utc>>,
}

impl JobRow {
    fn parse(self) -> Result<Job> {
        Ok(Job {
            id: self.id,
            org_id: OrgId(self.org_id),
            kind: parse_enum(&self.kind, "jobs.kind")?,
            status: parse_enum(&self.status, "jobs.status")?,
            spec: self.spec,
            step: self.step,
            total_steps: self.total_steps,
            progress: self.progress,
            attempts: self.attempts,
            lease_owner: self.lease_owner,
            lease_expires_at: self.lease_expires_at,
            heartbeat_at: self.heartbeat_at,
            cancel_requested: self.cancel_requested,
            checkpoint_path: self.checkpoint_path,
            checkpoint_step: self.checkpoint_step,
            result: self.result,
            error: self.error,
            created_at: self.created_at,
            started_at: self.started_at,
            finished_at: self.finished_at,
        })
    }
}

fn parse_job(row: Option<JobRow>) -> Result<Option<Job>> {
    row.map(JobRow::parse).transpose()
}

/// Claims a job may take: a job whose worker dies this often is failed rather than handed to the next
/// worker, because something in the job itself (its size, its data) is likely what kills workers.
pub const MAX_JOB_ATTEMPTS: i64 = 5;

/// What a worker's heartbeat tells it to do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Heartbeat {
    /// The lease is renewed; keep going.
    Continue,
    /// The lease is renewed, but someone asked to cancel the job: stop and finish it as cancelled.
    Cancel,
    /// The worker no longer holds the job (its lease passed to another worker, or the job ended): stop
    /// without writing anything more.
    LeaseLost,
}

/// A metrics row as stored. SQLite stores a NaN as NULL, so the required floats are read as options and
/// NULL becomes NaN again: a diverged loss reads back as the NaN it was.
#[derive(sqlx::FromRow)]
struct JobMetricRow {
    step: i64,
    loss: Option<f64>,
    lr: Option<f64>,
    grad_norm: Option<f64>,
    tokens_per_s: Option<f64>,
    reward_margin: Option<f64>,
    reward_accuracy: Option<f64>,
    at: DateTime<Utc>,
}

impl From<JobMetricRow> for JobMetric {
    fn from(r: JobMetricRow) -> Self {
        JobMetric {
            step: r.step,
            loss: r.loss.unwrap_or(f64::NAN),
            lr: r.lr.unwrap_or(f64::NAN),
            grad_norm: r.grad_norm.unwrap_or(f64::NAN),
            tokens_per_s: r.tokens_per_s.unwrap_or(f64::NAN),
            reward_margin: r.reward_margin,
            reward_accuracy: r.reward_accuracy,
            at: r.at,
        }
    }
}

// ---- model registry ------------------------------------------------------------------------------

/// A model about to be registered.
#[derive(Debug, Clone)]
pub struct NewModel<'a> {
    pub name: &'a str,
    pub loop_key: Option<&'a str>,
    pub kind: ModelKind,
    pub base_model_id: Option<i64>,
    pub dataset_digest: Option<&'a str>,
    pub job_id: Option<i64>,
    /// The object-store prefix of the model's files.
    pub path: &'a str,
    pub config: &'a ModelConfig,
    pub parameters: i64,
    pub train_metrics: &'a TrainMetrics,
}

#[derive(sqlx::FromRow)]
struct ModelRow {
    id: i64,
    name: String,
    loop_key: Option<String>,
    kind: String,
    base_model_id: Option<i64>,
    dataset_digest: Option<String>,
    job_id: Option<i64>,
    path: String,
    #[sqlx(json)]
    config: ModelConfig,
    parameters: i64,
    #[sqlx(json)]
    train_metrics: TrainMetrics,
    #[sqlx(json(nullable))]
    eval: Option<ModelEval>,
    reward: Option<f64>,
    evaluated_at: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
}

impl ModelRow {
    fn parse(self) -> Result<Model> {
        Ok(Model {
            id: self.id,
            name: self.name,
            loop_key: self.loop_key,
            kind: parse_enum(&self.kind, "models.kind")?,
            base_model_id: self.base_model_id,
            dataset_digest: self.dataset_digest,
            job_id: self.job_id,
            path: self.path,
            config: self.config,
            parameters: self.parameters,
            train_metrics: self.train_metrics,
            eval: self.eval,
            reward: self.reward,
            evaluated_at: self.evaluated_at,
            created_at: self.created_at,
        })
    }
}

fn parse_model(row: Option<ModelRow>) -> Result<Option<Model>> {
    row.map(ModelRow::parse).transpose()
}

#[derive(sqlx::FromRow)]
struct AliasRow {
    loop_key: String,
    alias: String,
    model_id: i64,
    updated_at: DateTime<Utc>,
}

impl AliasRow {
    fn parse(self) -> Result<Alias> {
        Ok(Alias {
            loop_key: self.loop_key,
            alias: parse_enum(&self.alias, "model_aliases.alias")?,
            model_id: self.model_id,
            updated_at: self.updated_at,
        })
    }
}

#[derive(sqlx::FromRow)]
struct PromotionRow {
    id: i64,
    loop_key: String,
    challenger_id: i64,
    champion_id: Option<i64>,
    accepted: bool,
    #[sqlx(json)]
    decision: PromotionDecision,
    at: DateTime<Utc>,
}

impl From<PromotionRow> for Promotion {
    fn from(r: PromotionRow) -> Self {
        Promotion {
            id: r.id,
            loop_key: r.loop_key,
            challenger_id: r.challenger_id,
            champion_id: r.champion_id,
            accepted: r.accepted,
            decision: r.decision,
            at: r.at,
        }
    }
}

// ---- serving impressions -------------------------------------------------------------------------

/// A served suggestion about to be recorded.
#[derive(Debug, Clone)]
pub struct NewImpression<'a> {
    pub event_id: &'a str,
    pub loop_key: &'a str,
    pub user_id: &'a str,
    pub variant: &'a str,
    pub model_id: i64,
    pub context: &'a str,
    pub suggestion: &'a str,
    pub latency_ms: f64,
    pub unit: Option<&'a str>,
    pub at: DateTime<Utc>,
}

#[derive(sqlx::FromRow)]
struct ImpressionRow {
    id: i64,
    org_id: i64,
    event_id: String,
    loop_key: String,
    user_id: String,
    variant: String,
    model_id: i64,
    context: String,
    suggestion: String,
    latency_ms: f64,
    unit: Option<String>,
    accepted_chars: Option<i64>,
    final_text: Option<String>,
    at: DateTime<Utc>,
    outcome_at: Option<DateTime<Utc>>,
}

impl From<ImpressionRow> for Impression {
    fn from(r: ImpressionRow) -> Self {
        Impression {
            id: r.id,
            org_id: OrgId(r.org_id),
            event_id: r.event_id,
            loop_key: r.loop_key,
            user_id: r.user_id,
            variant: r.variant,
            model_id: r.model_id,
            context: r.context,
            suggestion: r.suggestion,
            latency_ms: r.latency_ms,
            unit: r.unit,
            accepted_chars: r.accepted_chars,
            final_text: r.final_text,
            at: r.at,
            outcome_at: r.outcome_at,
        }
    }
}

impl Store {
    /// The clause that makes a PostgreSQL sub-select lock the rows it picks and pass over rows another
    /// transaction holds, so concurrent claimers take different jobs instead of queueing behind each
    /// other. SQLite has no such clause and needs none: it runs one writer at a time.
    pub(crate) fn skip_locked(&self) -> &'static str {
        match &self.db {
            crate::Db::Postgres(_) => " FOR UPDATE SKIP LOCKED",
            crate::Db::Sqlite(_) => "",
        }
    }

    // ---- datasets --------------------------------------------------------------------------------

    /// Registers a dataset version. Idempotent on (org, digest): registering the same content again
    /// returns the existing record, and the bool says whether the record was created by this call.
    pub async fn register_dataset(&self, org: OrgId, d: &NewDataset<'_>) -> Result<(Dataset, bool)> {
        let now = Utc::now();
        let created: Option<DatasetRow> = on_db!(self, db => sqlx::query_as(
            "INSERT INTO datasets (org_id, name, kind, digest, rows, bytes, path, source, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (org_id, digest) DO NOTHING RETURNING *")
            .bind(org.0).bind(d.name).bind(d.kind.as_str()).bind(d.digest).bind(d.rows).bind(d.bytes).bind(d.path)
            .bind(Json(d.source)).bind(now)
            .fetch_optional(db).await?);
        if let Some(record) = created {
            return Ok((record.parse()?, true));
        }
        // The conflicting row is committed by now (PostgreSQL waits for a concurrent inserter before it
        // decides that there is a conflict), so this read finds it.
        let existing = self.dataset_by_digest(org, d.digest).await?;
        let existing = existing.ok_or_else(|| StoreError::corrupt(format!("dataset {} vanished", d.digest)))?;
        Ok((existing, false))
    }

    pub async fn dataset(&self, org: OrgId, id: i64) -> Result<Option<Dataset>> {
        let row: Option<DatasetRow> = on_db!(self, db => sqlx::query_as("SELECT * FROM datasets WHERE org_id = $1 AND id = $2")
            .bind(org.0).bind(id).fetch_optional(db).await?);
        row.map(DatasetRow::parse).transpose()
    }

    pub async fn dataset_by_digest(&self, org: OrgId, digest: &str) -> Result<Option<Dataset>> {
        let row: Option<DatasetRow> = on_db!(self, db => sqlx::query_as("SELECT * FROM datasets WHERE org_id = $1 AND digest = $2")
            .bind(org.0).bind(digest).fetch_optional(db).await?);
        row.map(DatasetRow::parse).transpose()
    }

    /// The organisation's datasets, newest first.
    pub async fn list_datasets(&self, org: OrgId) -> Result<Vec<Dataset>> {
        let rows: Vec<DatasetRow> = on_db!(self, db => sqlx::query_as("SELECT * FROM datasets WHERE org_id = $1 ORDER BY id DESC")
            .bind(org.0).fetch_all(db).await?);
        parse_all(rows, DatasetRow::parse)
    }

    // ---- jobs ------------------------------------------------------------------------------------

    /// Queues a job of the spec's kind, with as many steps as the spec runs.
    pub async fn enqueue_job(&self, org: OrgId, spec: &JobSpec) -> Result<Job> {
        let now = Utc::now();
        let row: JobRow = on_db!(self, db => sqlx::query_as(
            "INSERT INTO jobs (org_id, kind, status, spec, total_steps, created_at)
             VALUES ($1, $2, 'pending', $3, $4, $5) RETURNING *")
            .bind(org.0).bind(spec.kind.as_str()).bind(Json(spec)).bind(spec.total_steps()).bind(now)
            .fetch_one(db).await?);
        row.parse()
    }

    pub async fn job(&self, org: OrgId, id: i64) -> Result<Option<Job>> {
        parse_job(on_db!(self, db => sqlx::query_as("SELECT * FROM jobs WHERE org_id = $1 AND id = $2")
            .bind(org.0).bind(id).fetch_optional(db).await?))
    }

    /// The organisation's latest `limit` jobs, newest first.
    pub async fn list_jobs(&self, org: OrgId, limit: i64) -> Result<Vec<Job>> {
        let rows: Vec<JobRow> = on_db!(self, db => sqlx::query_as("SELECT * FROM jobs WHERE org_id = $1 ORDER BY id DESC LIMIT $2")
            .bind(org.0).bind(limit).fetch_all(db).await?);
        parse_all(rows, JobRow::parse)
    }

    /// Atomically claims the oldest claimable job of any organisation for `worker`: a pending job, or a
    /// running job whose lease expired before `now` (its worker died; it resumes from its checkpoint).
    /// With `kinds`, only jobs of those kinds are claimed.
    ///
    /// In the same transaction, before claiming: jobs with a cancel request that nobody will act on (pending,
    /// or running with an expired lease) become "cancelled", and running jobs with an expired lease that
    /// were already claimed [`MAX_JOB_ATTEMPTS`] times become "failed".
    pub async fn claim_job(
        &self,
        worker: &str,
        lease: chrono::Duration,
        now: DateTime<Utc>,
        kinds: Option<&[JobKind]>,
    ) -> Result<Option<Job>> {
        if kinds.is_some_and(<[JobKind]>::is_empty) {
            return Ok(None);
        }
        let lock = self.skip_locked();
        // A cancel request is honoured before the job could be handed to a worker again, and before the
        // job could be failed for its attempts: the person who cancelled it wants it cancelled.
        let cancel = format!(
            "UPDATE jobs SET status = 'cancelled', finished_at = $1, lease_owner = NULL, lease_expires_at = NULL
             WHERE id IN (SELECT id FROM jobs WHERE cancel_requested = TRUE
             AND (status = 'pending' OR (status = 'running' AND lease_expires_at < $1)){lock})"
        );
        let abandon = format!(
            "UPDATE jobs SET status = 'failed', error = $2, finished_at = $1, lease_owner = NULL, lease_expires_at = NULL
             WHERE id IN (SELECT id FROM jobs WHERE status = 'running' AND lease_expires_at < $1 AND attempts >= $3{lock})"
        );
        let abandoned = format!("abandoned by its worker {MAX_JOB_ATTEMPTS} times");
        // Kinds are bound as parameters $5, $6, …: one placeholder per kind, a list both databases accept.
        let kind_filter = match kinds {
            None => String::new(),
            Some(kinds) => {
                let placeholders: Vec<String> = (0..kinds.len()).map(|i| format!("${}", i + 5)).collect();
                format!(" AND kind IN ({})", placeholders.join(", "))
            }
        };
        let claim = format!(
            "UPDATE jobs SET status = 'running', lease_owner = $1, lease_expires_at = $2, heartbeat_at = $3,
             attempts = attempts + 1, started_at = COALESCE(started_at, $3)
             WHERE id = (SELECT id FROM jobs WHERE cancel_requested = FALSE
             AND (status = 'pending' OR (status = 'running' AND lease_expires_at < $3 AND attempts < $4)){kind_filter}
             ORDER BY id LIMIT 1{lock})
             RETURNING *"
        );
        let expires = now + lease;
        in_tx!(self, tx => {
            // The first statement writes, so on SQLite the transaction holds the database's write lock
            // before it reads anything: two claimers can never both pick the same row, and a claimer
            // never finds its snapshot outdated when it comes to write.
            sqlx::query(&cancel).bind(now).execute(&mut *tx).await?;
            sqlx::query(&abandon).bind(now).bind(&abandoned).bind(MAX_JOB_ATTEMPTS).execute(&mut *tx).await?;
            let mut query = sqlx::query_as(&claim).bind(worker).bind(expires).bind(now).bind(MAX_JOB_ATTEMPTS);
            for kind in kinds.unwrap_or_default() {
                query = query.bind(kind.as_str());
            }
            let row: Option<JobRow> = query.fetch_optional(&mut *tx).await?;
            parse_job(row)
        })
    }

    /// Claims one particular job for `worker` while it is still pending: `slope runner train` runs the
    /// job it has just queued in its own process. `None` when a worker took it first or it was cancelled.
    pub async fn claim_job_id(
        &self,
        id: i64,
        worker: &str,
        lease: chrono::Duration,
        now: DateTime<Utc>,
    ) -> Result<Option<Job>> {
        parse_job(on_db!(self, db => sqlx::query_as(
            "UPDATE jobs SET status = 'running', lease_owner = $2, lease_expires_at = $3, heartbeat_at = $4,
             attempts = attempts + 1, started_at = COALESCE(started_at, $4)
             WHERE id = $1 AND status = 'pending' AND cancel_requested = FALSE RETURNING *")
            .bind(id).bind(worker).bind(now + lease).bind(now)
            .fetch_optional(db).await?))
    }

    /// Renews the lease of a job that `worker` holds (it is running and `worker` owns the lease) and
    /// records its progress. `LeaseLost` when the worker no longer holds it (nothing is written), `Cancel`
    /// when a cancel was requested (the lease is still renewed, so the worker can finish the job as
    /// cancelled), `Continue` otherwise.
    pub async fn heartbeat_job(
        &self,
        id: i64,
        worker: &str,
        step: i64,
        progress: f64,
        lease: chrono::Duration,
        now: DateTime<Utc>,
    ) -> Result<Heartbeat> {
        let cancel_requested: Option<bool> = on_db!(self, db => sqlx::query_scalar(
            "UPDATE jobs SET lease_expires_at = $3, heartbeat_at = $4, step = $5, progress = $6
             WHERE id = $1 AND status = 'running' AND lease_owner = $2 RETURNING cancel_requested")
            .bind(id).bind(worker).bind(now + lease).bind(now).bind(step).bind(progress)
            .fetch_optional(db).await?);
        Ok(match cancel_requested {
            None => Heartbeat::LeaseLost,
            Some(true) => Heartbeat::Cancel,
            Some(false) => Heartbeat::Continue,
        })
    }

    /// Records the newest checkpoint (object path and step) of a job that `worker` holds; false when
    /// the worker no longer holds it.
    pub async fn record_job_checkpoint(&self, id: i64, worker: &str, path: &str, step: i64) -> Result<bool> {
        let updated = on_db!(self, db => sqlx::query(
            "UPDATE jobs SET checkpoint_path = $3, checkpoint_step = $4
             WHERE id = $1 AND status = 'running' AND lease_owner = $2")
            .bind(id).bind(worker).bind(path).bind(step)
            .execute(db).await?.rows_affected());
        Ok(updated > 0)
    }

    /// Ends a job that `worker` holds with `status` "succeeded", "failed" or "cancelled": stores the
    /// result or error, the finishing time, and releases the lease; a succeeded job's progress becomes
    /// 1. False, with nothing changed, when the worker no longer holds the job.
    pub async fn finish_job(
        &self,
        id: i64,
        worker: &str,
        status: JobStatus,
        result: Option<&JobResult>,
        error: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        if !status.is_final() {
            return Err(StoreError::Rejected(FieldErrors::single(
                "status",
                format!("\"{status}\" does not end a job: use succeeded, failed or cancelled"),
            )));
        }
        let updated = on_db!(self, db => sqlx::query(
            "UPDATE jobs SET status = $3, result = $4, error = $5, finished_at = $6, lease_owner = NULL,
             lease_expires_at = NULL, progress = CASE WHEN $3 = 'succeeded' THEN 1.0 ELSE progress END
             WHERE id = $1 AND status = 'running' AND lease_owner = $2")
            .bind(id).bind(worker).bind(status.as_str()).bind(result.map(Json)).bind(error).bind(now)
            .execute(db).await?.rows_affected());
        Ok(updated > 0)
    }

    /// Ends a training job that `worker` still holds, atomically: registers its model, points the
    /// loop's `challenger` alias at it when `challenger_of` names a loop, and marks the job succeeded with
    /// `result` (plus `model_id` and `model`). The first statement re-checks the lease (and, being a write,
    /// takes SQLite's write lock and PostgreSQL's row lock), so a worker that lost its lease registers
    /// nothing: `None`, with nothing written.
    pub async fn complete_training_job(
        &self,
        id: i64,
        worker: &str,
        model: &NewModel<'_>,
        challenger_of: Option<&str>,
        result: &JobResult,
        now: DateTime<Utc>,
    ) -> Result<Option<Model>> {
        in_tx!(self, tx => {
            let held = sqlx::query("UPDATE jobs SET heartbeat_at = $3 WHERE id = $1 AND status = 'running' AND lease_owner = $2")
                .bind(id).bind(worker).bind(now)
                .execute(&mut *tx).await?.rows_affected();
            if held == 0 {
                return Ok(None);
            }
            let org: i64 = sqlx::query_scalar("SELECT org_id FROM jobs WHERE id = $1").bind(id).fetch_one(&mut *tx).await?;
            let record: ModelRow = sqlx::query_as(
                "INSERT INTO models (org_id, name, loop_key, kind, base_model_id, dataset_digest, job_id, path, config,
                 parameters, train_metrics, created_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) RETURNING *")
                .bind(org).bind(model.name).bind(model.loop_key).bind(model.kind.as_str()).bind(model.base_model_id)
                .bind(model.dataset_digest).bind(model.job_id).bind(model.path).bind(Json(model.config))
                .bind(model.parameters).bind(Json(model.train_metrics)).bind(now)
                .fetch_one(&mut *tx).await?;
            let record = record.parse()?;
            if let Some(loop_key) = challenger_of {
                sqlx::query(
                    "INSERT INTO model_aliases (org_id, loop_key, alias, model_id, updated_at) VALUES ($1, $2, 'challenger', $3, $4)
                     ON CONFLICT (org_id, loop_key, alias) DO UPDATE SET model_id = excluded.model_id, updated_at = excluded.updated_at")
                    .bind(org).bind(loop_key).bind(record.id).bind(now)
                    .execute(&mut *tx).await?;
            }
            let result = JobResult { model_id: Some(record.id), model: Some(record.name.clone()), ..result.clone() };
            sqlx::query(
                "UPDATE jobs SET status = 'succeeded', result = $2, error = NULL, finished_at = $3, lease_owner = NULL,
                 lease_expires_at = NULL, progress = 1.0, step = total_steps WHERE id = $1")
                .bind(id).bind(Json(&result)).bind(now)
                .execute(&mut *tx).await?;
            Ok(Some(record))
        })
    }

    /// Ends an eval job that `worker` still holds, atomically: stores the eval on its model and marks
    /// the job succeeded with `result`. As with [`Store::complete_training_job`], the first statement
    /// re-checks the lease, so a worker that lost it records nothing: `None`. NotFound ("model") when
    /// the job's organisation has no such model, with nothing written.
    pub async fn complete_eval_job(
        &self,
        id: i64,
        worker: &str,
        model_id: i64,
        (eval, items): (&ModelEval, Option<&EvalItems>),
        result: &JobResult,
        now: DateTime<Utc>,
    ) -> Result<Option<Model>> {
        in_tx!(self, tx => {
            let held = sqlx::query(
                "UPDATE jobs SET status = 'succeeded', result = $3, error = NULL, finished_at = $4, lease_owner = NULL,
                 lease_expires_at = NULL, progress = 1.0 WHERE id = $1 AND status = 'running' AND lease_owner = $2")
                .bind(id).bind(worker).bind(Json(result)).bind(now)
                .execute(&mut *tx).await?.rows_affected();
            if held == 0 {
                return Ok(None);
            }
            let updated: Option<ModelRow> = sqlx::query_as(
                "UPDATE models SET eval = $3, reward = $4, evaluated_at = $5
                 WHERE id = $2 AND org_id = (SELECT org_id FROM jobs WHERE id = $1) RETURNING *")
                .bind(id).bind(model_id).bind(Json(eval)).bind(eval.reward).bind(now)
                .fetch_optional(&mut *tx).await?;
            let Some(updated) = updated else {
                return Err(StoreError::NotFound { entity: "model", id: model_id });
            };
            // The eval's per-item results replace the model's earlier ones (see `set_model_eval`).
            sqlx::query("DELETE FROM eval_items WHERE model_id = $2 AND org_id = (SELECT org_id FROM jobs WHERE id = $1)")
                .bind(id).bind(model_id).execute(&mut *tx).await?;
            if let Some(items) = items {
                sqlx::query(
                    "INSERT INTO eval_items (org_id, model_id, items) SELECT org_id, $2, $3 FROM jobs WHERE id = $1")
                    .bind(id).bind(model_id).bind(Json(items)).execute(&mut *tx).await?;
            }
            Ok(Some(updated.parse()?))
        })
    }

    /// Cancels a job: a pending job becomes "cancelled" at once; a running job gets a cancel request,
    /// which its worker sees at its next heartbeat; a finished job is returned unchanged. `None` when
    /// the organisation has no such job.
    pub async fn cancel_job(&self, org: OrgId, id: i64, now: DateTime<Utc>) -> Result<Option<Job>> {
        // One statement decides by the status it finds, so a job that a worker claims at the same moment
        // is either cancelled before the claim or asked to stop after it, never neither.
        let changed: Option<JobRow> = on_db!(self, db => sqlx::query_as(
            "UPDATE jobs SET cancel_requested = TRUE,
             finished_at = CASE WHEN status = 'pending' THEN $3 ELSE finished_at END,
             status = CASE WHEN status = 'pending' THEN 'cancelled' ELSE status END
             WHERE org_id = $1 AND id = $2 AND status IN ('pending', 'running') RETURNING *")
            .bind(org.0).bind(id).bind(now).fetch_optional(db).await?);
        match changed {
            Some(job) => Ok(Some(job.parse()?)),
            None => self.job(org, id).await,
        }
    }

    /// [`Store::append_job_metrics`] by the worker holding the job's lease: `false`, with nothing
    /// written, when `worker` no longer holds it (another worker resumed the job, or it ended), so a
    /// worker that lost its lease cannot overwrite its successor's steps.
    pub async fn append_job_metrics_held(&self, job_id: i64, worker: &str, metrics: &[JobMetric]) -> Result<bool> {
        if metrics.is_empty() {
            return Ok(true);
        }
        in_tx!(self, tx => {
            // The write takes the job's row lock (and SQLite's write lock), so the lease cannot change
            // hands between this check and the inserts.
            let held = sqlx::query("UPDATE jobs SET heartbeat_at = heartbeat_at WHERE id = $1 AND status = 'running' AND lease_owner = $2")
                .bind(job_id).bind(worker)
                .execute(&mut *tx).await?.rows_affected();
            if held == 0 {
                let exists: Option<i64> = sqlx::query_scalar("SELECT id FROM jobs WHERE id = $1").bind(job_id).fetch_optional(&mut *tx).await?;
                return match exists {
                    Some(_) => Ok(false),
                    None => Err(StoreError::NotFound { entity: "job", id: job_id }),
                };
            }
            for m in metrics {
                sqlx::query(
                    "INSERT INTO job_metrics (org_id, job_id, step, loss, lr, grad_norm, tokens_per_s, reward_margin,
                     reward_accuracy, at)
                     SELECT org_id, id, $2, $3, $4, $5, $6, $7, $8, $9 FROM jobs WHERE id = $1
                     ON CONFLICT (job_id, step) DO UPDATE SET loss = excluded.loss, lr = excluded.lr,
                     grad_norm = excluded.grad_norm, tokens_per_s = excluded.tokens_per_s,
                     reward_margin = excluded.reward_margin, reward_accuracy = excluded.reward_accuracy, at = excluded.at")
                    .bind(job_id).bind(m.step).bind(m.loss).bind(m.lr).bind(m.grad_norm).bind(m.tokens_per_s)
                    .bind(m.reward_margin).bind(m.reward_accuracy).bind(m.at)
                    .execute(&mut *tx).await?;
            }
            Ok(true)
        })
    }

    /// Appends per-step metrics of a job. A step recorded again (a resumed job redoes the steps after
    /// its checkpoint) replaces the earlier row. NotFound when there is no such job.
    pub async fn append_job_metrics(&self, job_id: i64, metrics: &[JobMetric]) -> Result<()> {
        if metrics.is_empty() {
            return Ok(());
        }
        in_tx!(self, tx => {
            for m in metrics {
                // The job's organisation is copied from its row, so that reads can be scoped by
                // organisation without a join.
                let written = sqlx::query(
                    "INSERT INTO job_metrics (org_id, job_id, step, loss, lr, grad_norm, tokens_per_s, reward_margin,
                     reward_accuracy, at)
                     SELECT org_id, id, $2, $3, $4, $5, $6, $7, $8, $9 FROM jobs WHERE id = $1
                     ON CONFLICT (job_id, step) DO UPDATE SET loss = excluded.loss, lr = excluded.lr,
                     grad_norm = excluded.grad_norm, tokens_per_s = excluded.tokens_per_s,
                     reward_margin = excluded.reward_margin, reward_accuracy = excluded.reward_accuracy, at = excluded.at")
                    .bind(job_id).bind(m.step).bind(m.loss).bind(m.lr).bind(m.grad_norm).bind(m.tokens_per_s)
                    .bind(m.reward_margin).bind(m.reward_accuracy).bind(m.at)
                    .execute(&mut *tx).await?;
                if written.rows_affected() == 0 {
                    return Err(StoreError::NotFound { entity: "job", id: job_id });
                }
            }
            Ok(())
        })
    }

    /// The metrics of a job of this organisation with step > `after_step`, by ascending step; empty
    /// for a job of another organisation.
    pub async fn job_metrics(&self, org: OrgId, job_id: i64, after_step: i64) -> Result<Vec<JobMetric>> {
        let rows: Vec<JobMetricRow> = on_db!(self, db => sqlx::query_as(
            "SELECT step, loss, lr, grad_norm, tokens_per_s, reward_margin, reward_accuracy, at FROM job_metrics
             WHERE org_id = $1 AND job_id = $2 AND step > $3 ORDER BY step")
            .bind(org.0).bind(job_id).bind(after_step).fetch_all(db).await?);
        Ok(rows.into_iter().map(Into::into).collect())
    }

    // ---- model registry --------------------------------------------------------------------------

    /// Registers a model. Names are unique per organisation: a taken name is a database error for which
    /// [`StoreError::is_unique_violation`] holds.
    pub async fn create_model(&self, org: OrgId, m: &NewModel<'_>) -> Result<Model> {
        let now = Utc::now();
        let row: ModelRow = on_db!(self, db => sqlx::query_as(
            "INSERT INTO models (org_id, name, loop_key, kind, base_model_id, dataset_digest, job_id, path, config,
             parameters, train_metrics, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) RETURNING *")
            .bind(org.0).bind(m.name).bind(m.loop_key).bind(m.kind.as_str()).bind(m.base_model_id).bind(m.dataset_digest)
            .bind(m.job_id).bind(m.path).bind(Json(m.config)).bind(m.parameters).bind(Json(m.train_metrics))
            .bind(now)
            .fetch_one(db).await?);
        row.parse()
    }

    pub async fn model(&self, org: OrgId, id: i64) -> Result<Option<Model>> {
        parse_model(on_db!(self, db => sqlx::query_as("SELECT * FROM models WHERE org_id = $1 AND id = $2")
            .bind(org.0).bind(id).fetch_optional(db).await?))
    }

    pub async fn model_by_name(&self, org: OrgId, name: &str) -> Result<Option<Model>> {
        parse_model(on_db!(self, db => sqlx::query_as("SELECT * FROM models WHERE org_id = $1 AND name = $2")
            .bind(org.0).bind(name).fetch_optional(db).await?))
    }

    /// Every object-store path the organisation's rows name: its event segments (live, and retired ones
    /// whose files are still kept), model folders, job checkpoint folders and dataset files. The sweep
    /// of unreferenced objects keeps whatever these name.
    pub async fn object_paths(&self, org: OrgId) -> Result<Vec<String>> {
        Ok(on_db!(self, db => sqlx::query_scalar(
            "SELECT path FROM event_segments WHERE org_id = $1
             UNION ALL SELECT path FROM models WHERE org_id = $1
             UNION ALL SELECT checkpoint_path FROM jobs WHERE org_id = $1 AND checkpoint_path IS NOT NULL
             UNION ALL SELECT path FROM datasets WHERE org_id = $1")
            .bind(org.0).fetch_all(db).await?))
    }

    /// The organisation's models, or those of one loop, newest first.
    pub async fn list_models(&self, org: OrgId, loop_key: Option<&str>) -> Result<Vec<Model>> {
        let rows: Vec<ModelRow> = on_db!(self, db => sqlx::query_as(
            "SELECT * FROM models WHERE org_id = $1 AND ($2 IS NULL OR loop_key = $2) ORDER BY id DESC")
            .bind(org.0).bind(loop_key).fetch_all(db).await?);
        parse_all(rows, ModelRow::parse)
    }

    /// Stores the latest eval of a model (its scores and reward), replacing an earlier one.
    ///
    /// `items` are what the eval measured on each held-out item; they replace the model's earlier ones in
    /// the same transaction (and `None` removes them), so the items read back are always those of the
    /// eval the model carries.
    pub async fn set_model_eval(
        &self,
        org: OrgId,
        id: i64,
        eval: &ModelEval,
        items: Option<&EvalItems>,
        now: DateTime<Utc>,
    ) -> Result<Model> {
        in_tx!(self, tx => {
            let updated: Option<ModelRow> = sqlx::query_as(
                "UPDATE models SET eval = $3, reward = $4, evaluated_at = $5 WHERE org_id = $1 AND id = $2 RETURNING *")
                .bind(org.0).bind(id).bind(Json(eval)).bind(eval.reward).bind(now).fetch_optional(&mut *tx).await?;
            let model = updated.ok_or(StoreError::NotFound { entity: "model", id })?.parse()?;
            match items {
                Some(items) => {
                    sqlx::query(
                        "INSERT INTO eval_items (org_id, model_id, items) VALUES ($1, $2, $3)
                         ON CONFLICT (org_id, model_id) DO UPDATE SET items = excluded.items")
                        .bind(org.0).bind(id).bind(Json(items)).execute(&mut *tx).await?;
                }
                None => {
                    sqlx::query("DELETE FROM eval_items WHERE org_id = $1 AND model_id = $2")
                        .bind(org.0).bind(id).execute(&mut *tx).await?;
                }
            }
            Ok(model)
        })
    }

    /// What the model's latest eval measured on each held-out item, when it kept them.
    pub async fn eval_items(&self, org: OrgId, model_id: i64) -> Result<Option<EvalItems>> {
        let row: Option<(Json<EvalItems>,)> = on_db!(self, db => sqlx::query_as(
            "SELECT items FROM eval_items WHERE org_id = $1 AND model_id = $2")
            .bind(org.0).bind(model_id).fetch_optional(db).await?);
        Ok(row.map(|(items,)| items.0))
    }

    /// The organisation's aliases, or those of one loop, by loop and alias.
    pub async fn aliases(&self, org: OrgId, loop_key: Option<&str>) -> Result<Vec<Alias>> {
        let rows: Vec<AliasRow> = on_db!(self, db => sqlx::query_as(
            "SELECT loop_key, alias, model_id, updated_at FROM model_aliases
             WHERE org_id = $1 AND ($2 IS NULL OR loop_key = $2) ORDER BY loop_key, alias")
            .bind(org.0).bind(loop_key).fetch_all(db).await?);
        parse_all(rows, AliasRow::parse)
    }

    pub async fn alias(&self, org: OrgId, loop_key: &str, alias: AliasKind) -> Result<Option<Alias>> {
        let row: Option<AliasRow> = on_db!(self, db => sqlx::query_as(
            "SELECT loop_key, alias, model_id, updated_at FROM model_aliases
             WHERE org_id = $1 AND loop_key = $2 AND alias = $3")
            .bind(org.0).bind(loop_key).bind(alias.as_str()).fetch_optional(db).await?);
        row.map(AliasRow::parse).transpose()
    }

    /// Points an alias of a loop at a model, replacing what it pointed at. NotFound ("model") when the
    /// organisation has no such model.
    pub async fn set_alias(
        &self,
        org: OrgId,
        loop_key: &str,
        alias: AliasKind,
        model_id: i64,
        now: DateTime<Utc>,
    ) -> Result<Alias> {
        // Selecting the model in the insert makes the organisation check and the write one statement.
        let set: Option<AliasRow> = on_db!(self, db => sqlx::query_as(
            "INSERT INTO model_aliases (org_id, loop_key, alias, model_id, updated_at)
             SELECT org_id, $2, $3, id, $5 FROM models WHERE org_id = $1 AND id = $4
             ON CONFLICT (org_id, loop_key, alias) DO UPDATE SET model_id = excluded.model_id, updated_at = excluded.updated_at
             RETURNING loop_key, alias, model_id, updated_at")
            .bind(org.0).bind(loop_key).bind(alias.as_str()).bind(model_id).bind(now).fetch_optional(db).await?);
        set.ok_or(StoreError::NotFound { entity: "model", id: model_id })?.parse()
    }

    /// Records a promotion decision in one transaction; every decision becomes a row.
    ///
    /// An accepted decision first checks that the loop's champion is still `expected_champion` (`None`:
    /// the loop has no champion yet); if another decision got there first it fails with a `Conflict` on
    /// "champion" (`id` the challenger, 0 standing for "no champion") and writes nothing. Otherwise
    /// "champion" points at the challenger and a "challenger" alias pointing at it is removed. A refused
    /// decision leaves the aliases alone. NotFound ("model") when the organisation has no such
    /// challenger.
    // Every argument is part of the decision the service makes, so they stay separate parameters.
    #[allow(clippy::too_many_arguments)]
    pub async fn record_promotion(
        &self,
        org: OrgId,
        loop_key: &str,
        challenger_id: i64,
        expected_champion: Option<i64>,
        accepted: bool,
        decision: &PromotionDecision,
        now: DateTime<Utc>,
    ) -> Result<Promotion> {
        in_tx!(self, tx => {
            if accepted {
                // The check and the swap are one statement: a compare-and-set on the champion row, or
                // an insert that the primary key refuses when a champion appeared meanwhile. It is
                // also the transaction's first statement, so SQLite takes its write lock before reading.
                let swapped = match expected_champion {
                    Some(expected) => sqlx::query(
                        "UPDATE model_aliases SET model_id = $4, updated_at = $5
                         WHERE org_id = $1 AND loop_key = $2 AND alias = 'champion' AND model_id = $3
                         AND EXISTS (SELECT 1 FROM models WHERE org_id = $1 AND id = $4)")
                        .bind(org.0).bind(loop_key).bind(expected).bind(challenger_id).bind(now)
                        .execute(&mut *tx).await?,
                    None => sqlx::query(
                        "INSERT INTO model_aliases (org_id, loop_key, alias, model_id, updated_at)
                         SELECT org_id, $2, 'champion', id, $4 FROM models WHERE org_id = $1 AND id = $3
                         ON CONFLICT (org_id, loop_key, alias) DO NOTHING")
                        .bind(org.0).bind(loop_key).bind(challenger_id).bind(now)
                        .execute(&mut *tx).await?,
                };
                if swapped.rows_affected() == 0 {
                    let model: Option<i64> = sqlx::query_scalar("SELECT id FROM models WHERE org_id = $1 AND id = $2")
                        .bind(org.0).bind(challenger_id).fetch_optional(&mut *tx).await?;
                    if model.is_none() {
                        return Err(StoreError::NotFound { entity: "model", id: challenger_id });
                    }
                    let current: Option<i64> = sqlx::query_scalar(
                        "SELECT model_id FROM model_aliases WHERE org_id = $1 AND loop_key = $2 AND alias = $3")
                        .bind(org.0).bind(loop_key).bind(AliasKind::Champion.as_str()).fetch_optional(&mut *tx).await?;
                    return Err(StoreError::Conflict {
                        entity: "champion",
                        id: challenger_id,
                        expected: expected_champion.unwrap_or(0),
                        actual: current.unwrap_or(0),
                    });
                }
                sqlx::query("DELETE FROM model_aliases WHERE org_id = $1 AND loop_key = $2 AND alias = $3 AND model_id = $4")
                    .bind(org.0).bind(loop_key).bind(AliasKind::Challenger.as_str()).bind(challenger_id)
                    .execute(&mut *tx).await?;
            }
            // Selecting the challenger in the insert scopes it to the organisation (the foreign key alone
            // would accept another organisation's model).
            let record: Option<PromotionRow> = sqlx::query_as(
                "INSERT INTO model_promotions (org_id, loop_key, challenger_id, champion_id, accepted, decision, at)
                 SELECT org_id, $2, id, $4, $5, $6, $7 FROM models WHERE org_id = $1 AND id = $3
                 RETURNING id, loop_key, challenger_id, champion_id, accepted, decision, at")
                .bind(org.0).bind(loop_key).bind(challenger_id).bind(expected_champion).bind(accepted)
                .bind(Json(decision)).bind(now)
                .fetch_optional(&mut *tx).await?;
            Ok(record.ok_or(StoreError::NotFound { entity: "model", id: challenger_id })?.into())
        })
    }

    /// The organisation's promotion decisions, or those of one loop, newest first.
    pub async fn promotions(&self, org: OrgId, loop_key: Option<&str>) -> Result<Vec<Promotion>> {
        let rows: Vec<PromotionRow> = on_db!(self, db => sqlx::query_as(
            "SELECT id, loop_key, challenger_id, champion_id, accepted, decision, at FROM model_promotions
             WHERE org_id = $1 AND ($2 IS NULL OR loop_key = $2) ORDER BY at DESC, id DESC")
            .bind(org.0).bind(loop_key).fetch_all(db).await?);
        Ok(rows.into_iter().map(Into::into).collect())
    }

    // ---- serving impressions ---------------------------------------------------------------------

    /// Records a served suggestion. Event ids are unique per organisation: a repeated one is a
    /// database error for which [`StoreError::is_unique_violation`] holds.
    pub async fn record_impression(&self, org: OrgId, i: &NewImpression<'_>) -> Result<Impression> {
        let row: ImpressionRow = on_db!(self, db => sqlx::query_as(
            "INSERT INTO serving_impressions (org_id, event_id, loop_key, user_id, variant, model_id, context,
             suggestion, latency_ms, unit, at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING *")
            .bind(org.0).bind(i.event_id).bind(i.loop_key).bind(i.user_id).bind(i.variant).bind(i.model_id)
            .bind(i.context).bind(i.suggestion).bind(i.latency_ms).bind(i.unit).bind(i.at)
            .fetch_one(db).await?);
        Ok(row.into())
    }

    /// One served suggestion of a loop, by its event id.
    pub async fn impression(&self, org: OrgId, loop_key: &str, event_id: &str) -> Result<Option<Impression>> {
        let row: Option<ImpressionRow> = on_db!(self, db => sqlx::query_as(
            "SELECT * FROM serving_impressions WHERE org_id = $1 AND loop_key = $2 AND event_id = $3")
            .bind(org.0).bind(loop_key).bind(event_id).fetch_optional(db).await?);
        Ok(row.map(Into::into))
    }

    /// Sets the outcome of a served suggestion, once: a second report returns the record unchanged,
    /// because the first one is what the user did. NotFound ("impression", id 0) when the organisation's
    /// loop has no such event.
    pub async fn record_impression_outcome(
        &self,
        org: OrgId,
        loop_key: &str,
        event_id: &str,
        accepted_chars: i64,
        final_text: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<Impression> {
        let set: Option<ImpressionRow> = on_db!(self, db => sqlx::query_as(
            "UPDATE serving_impressions SET accepted_chars = $4, final_text = $5, outcome_at = $6
             WHERE org_id = $1 AND loop_key = $2 AND event_id = $3 AND outcome_at IS NULL RETURNING *")
            .bind(org.0).bind(loop_key).bind(event_id).bind(accepted_chars).bind(final_text).bind(now)
            .fetch_optional(db).await?);
        if let Some(record) = set {
            return Ok(record.into());
        }
        let existing: Option<ImpressionRow> = on_db!(self, db => sqlx::query_as(
            "SELECT * FROM serving_impressions WHERE org_id = $1 AND loop_key = $2 AND event_id = $3")
            .bind(org.0).bind(loop_key).bind(event_id).fetch_optional(db).await?);
        Ok(existing.ok_or(StoreError::NotFound { entity: "impression", id: 0 })?.into())
    }

    /// Impressions ready to become events, of any organisation: those with an outcome, and those served
    /// before `timeout_before` whose outcome never came. Oldest first, at most `limit`.
    pub async fn ready_impressions(&self, timeout_before: DateTime<Utc>, limit: i64) -> Result<Vec<Impression>> {
        let rows: Vec<ImpressionRow> = on_db!(self, db => sqlx::query_as(
            "SELECT * FROM serving_impressions WHERE outcome_at IS NOT NULL OR at < $1 ORDER BY at, id LIMIT $2")
            .bind(timeout_before).bind(limit).fetch_all(db).await?);
        Ok(rows.into_iter().map(Into::into).collect())
    }

    /// Removes impressions once they are stored as events.
    pub async fn delete_impressions(&self, ids: &[i64]) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        in_tx!(self, tx => {
            for id in ids {
                sqlx::query("DELETE FROM serving_impressions WHERE id = $1").bind(id).execute(&mut *tx).await?;
            }
            Ok(())
        })
    }
}
