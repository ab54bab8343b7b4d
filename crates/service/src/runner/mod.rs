//! The fine-tune/eval runner as a service: datasets built from a loop's events, training and eval
//! jobs in a database queue run by workers, a model registry with a promotion gate, and serving
//! suggestions from the champion (or, inside an A/B experiment, the challenger).
//!
//! Weights, datasets and checkpoints live in the object store beside event segments, so any worker
//! of an installation can resume any job; each process keeps a local copy in its cache folder.
//! Training and generation run on the blocking thread pool: they are seconds to hours of CPU, which
//! must never stall the async threads that answer requests.
//!
//! One module per capability: `datasets`, `jobs` (submission as a parse into a spec, then the checks
//! that need the store), `worker` (claiming and running jobs), `registry` (models, aliases, the
//! promotion gate), `serving` (suggestions and their outcomes) and `stack` (the loop's post-training
//! stack, derived by a pure function of the domain). This file holds what they share: the service
//! itself, its model cache and its object-store helpers.

mod datasets;
mod jobs;
mod registry;
mod serving;
mod stack;
mod worker;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use chrono::{Duration, Utc};
use sha2::{Digest, Sha256};
use slope_domain::{FieldErrors, OrgId};
use slope_runner::checkpoint::{CONFIG_FILE, OPTIMIZER_FILE, TRAINER_FILE, WEIGHTS_FILE};
use slope_runner::{Model as Weights, RunnerError};
use slope_store::Store;

use crate::error::internal;
use crate::loops::Loops;
use crate::segments::SegmentStore;
use crate::{Result, ServiceError};

pub use datasets::BuiltDatasets;
pub use registry::{ModelView, PromotionOutcome};
pub use serving::{Completion, CompletionRequest, OUTCOME_TIMEOUT, in_treatment};
pub use slope_domain::MAX_SUGGESTION_CHARS;
pub use stack::ANNOTATION_METHOD;
pub use worker::{spawn_workers, worker_id};

/// Contexts longer than this are cut to their end before generation (the model reads far less).
const MAX_CONTEXT_BYTES: usize = 64 * 1024;
pub const MAX_DATASET_BYTES: usize = 256 * 1024 * 1024;
/// The largest model a job may train or create; larger ones would exhaust a worker's memory.
pub const MAX_PARAMETERS: usize = 100_000_000;
/// Bytes per micro-batch, and attention scores (batch × heads × length²) per layer.
pub const MAX_BATCH_TOKENS: usize = 65_536;
pub const MAX_ATTENTION_SCORES: usize = 1 << 28;

const MODEL_FILES: [&str; 2] = [CONFIG_FILE, WEIGHTS_FILE];
const CHECKPOINT_FILES: [&str; 4] = [CONFIG_FILE, WEIGHTS_FILE, OPTIMIZER_FILE, TRAINER_FILE];

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
}

/// Loaded models by (organisation, model id), least recently used first; a few are kept, since each is
/// a few MB and serving needs only a loop's champion and challenger.
#[derive(Default)]
struct ModelCache {
    entries: Vec<((i64, i64), Arc<Weights>)>,
}

const MAX_CACHED_MODELS: usize = 8;

impl ModelCache {
    fn get(&mut self, key: (i64, i64)) -> Option<Arc<Weights>> {
        let i = self.entries.iter().position(|(k, _)| *k == key)?;
        let entry = self.entries.remove(i);
        let model = entry.1.clone();
        self.entries.push(entry);
        Some(model)
    }

    fn insert(&mut self, key: (i64, i64), model: Arc<Weights>) {
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

impl Runner {
    /// `cache` is this process's folder for local copies of models and checkpoints; `lease` how long
    /// a claimed job stays this worker's without a heartbeat.
    pub fn new(store: Store, objects: SegmentStore, loops: Loops, cache: PathBuf, lease: Duration) -> Runner {
        Runner { store, objects, loops, cache, lease, models: Arc::default(), loading: Arc::default() }
    }

    // ---- model files ---------------------------------------------------------------------------

    /// The model's record and weights, loaded once per process and kept (a few at a time) for serving
    /// and evals. The organisation is checked (by reading the record) before the cache is consulted.
    async fn loaded(&self, org: OrgId, id: i64) -> Result<(slope_domain::Model, Arc<Weights>)> {
        let record = self.model_record(org, id).await?;
        if let Some(m) = self.models.lock().expect("model cache").get((org.0, id)) {
            return Ok((record, m));
        }
        let _one_at_a_time = self.loading.lock().await;
        if let Some(m) = self.models.lock().expect("model cache").get((org.0, id)) {
            return Ok((record, m));
        }
        let dir = self.local_model(&record).await?;
        let model = load_weights(dir).await?;
        let model = Arc::new(model);
        self.cache_model(org, id, model.clone());
        Ok((record, model))
    }

    fn cache_model(&self, org: OrgId, id: i64, model: Arc<Weights>) {
        self.models.lock().expect("model cache").insert((org.0, id), model);
    }

    /// A local folder holding the model's files, fetched from the object store when missing.
    async fn local_model(&self, record: &slope_domain::Model) -> Result<PathBuf> {
        let dir = self.cache.join("models").join(record.id.to_string());
        if !MODEL_FILES.iter().all(|f| dir.join(f).is_file()) {
            self.fetch_dir(&record.path, &MODEL_FILES, &dir).await?;
        }
        Ok(dir)
    }

    /// The object store, for the upkeep's sweep.
    pub(crate) fn objects(&self) -> &SegmentStore {
        &self.objects
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
                write_synced(&tmp.join(f), &bytes).map_err(|e| internal("writing a cached file", e))?;
            }
            sync_dir(&tmp).map_err(|e| internal("writing a cached folder", e))?;
            Ok(())
        }
        .await;
        let complete = |d: &Path| files.iter().all(|f| d.join(f).is_file());
        let placed = filled.and_then(|()| {
            if complete(dir) {
                return Ok(());
            }
            match std::fs::rename(&tmp, dir) {
                // The rename itself is made durable too: a crash must not leave a cache entry that
                // names files whose contents never reached the disk.
                Ok(()) => dir.parent().map_or(Ok(()), sync_dir).map_err(|e| internal("placing a cached folder", e)),
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

/// Loads a model folder on the blocking pool (reading and checking weights is file and CPU work).
async fn load_weights(dir: PathBuf) -> Result<Weights> {
    let device = slope_runner::device();
    tokio::task::spawn_blocking(move || Weights::load(&dir, &device))
        .await
        .map_err(|e| internal("loading a model", e))?
        .map_err(|e| internal("loading a model", e))
}

/// Writes a file and waits until its contents are on the disk.
fn write_synced(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut file = std::fs::File::create(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// Makes a folder's entries (files created or renamed into it) durable.
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}
