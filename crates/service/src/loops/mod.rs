//! Loop metrics use cases, one module per capability: ingesting event batches into segments
//! ([`ingest`]), keeping metric series materialised and segments compacted ([`materialize`]), metric
//! definitions and pushed points ([`metrics`]), and the reports computed from stored events
//! ([`reports`]). They share the service struct and the few helpers below.

mod admission;
mod ingest;
mod materialize;
mod metrics;
mod reports;

use chrono::{DateTime, Duration, NaiveDate, Utc};

use slope_domain::*;
use slope_store::Store;

use crate::error::internal;
use crate::segments::SegmentStore;
use crate::{Result, ServiceError};

pub use admission::{BUSY_RETRY_AFTER_SECS, IngestLimits, IngestPermit};
pub use ingest::{BatchInput, IngestAck, content_hash};
pub use reports::LoopReport;
pub use slope_domain::ExperimentAnalysis;

/// The largest batch body accepted after decompression: bigger loads go in several batches.
pub const MAX_BATCH_BYTES: usize = 512 * 1024 * 1024;
/// Segments smaller than this are merged by compaction once there are [`COMPACT_AT`] of them.
pub const SMALL_SEGMENT_BYTES: i64 = 16 * 1024 * 1024;
pub const COMPACT_AT: usize = 8;
/// How long a compacted segment's file outlives its retirement, for readers that listed it.
pub const RETIRED_GRACE: Duration = Duration::minutes(10);

/// The reserved stream of transaction events. Loop keys start with a letter or digit, so no loop can
/// share it.
pub const TRANSACTIONS: &str = "_transactions";

/// The loop metrics service. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Loops {
    store: Store,
    segments: SegmentStore,
    limits: IngestLimits,
    gate: std::sync::Arc<admission::Gate>,
    retention: reports::SegmentCache<slope_metrics::retention::Retention>,
    customer_fits: reports::SegmentCache<CustomerValueFit>,
    ltv_warm: materialize::LtvWarmStarts,
}

/// Runs CPU-bound polars work off the async threads.
async fn blocking<T: Send + 'static>(
    what: &'static str,
    work: impl FnOnce() -> Result<T, String> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(work).await.map_err(|e| internal(what, e))?.map_err(|e| internal(what, e))
}

fn day_start(day: NaiveDate) -> DateTime<Utc> {
    day.and_hms_opt(0, 0, 0).map(|t| t.and_utc()).unwrap_or_default()
}

impl Loops {
    pub fn new(store: Store, segments: SegmentStore) -> Self {
        Self {
            store,
            segments,
            limits: IngestLimits::default(),
            gate: Default::default(),
            retention: Default::default(),
            customer_fits: Default::default(),
            ltv_warm: Default::default(),
        }
    }

    /// The same service with other ingestion limits (the server's settings).
    pub fn with_limits(mut self, limits: IngestLimits) -> Self {
        self.limits = limits;
        self
    }

    /// Authorizes `actor` to ingest and takes a place among the batches in flight, before the body is
    /// read: an unauthorized or surplus sender costs no memory. `Busy` when the server or the
    /// organisation has as many batches in flight as its limits allow.
    pub fn admit(&self, actor: &Actor) -> Result<IngestPermit> {
        let org = actor.authorize(Action::Ingest)?;
        self.gate.enter(org, &self.limits)
    }

    /// The store, for the service's own modules; nothing outside this crate gets it.
    pub(crate) fn store(&self) -> &Store {
        &self.store
    }

    /// The ids of a loop's live segments and their contents, for building datasets from its events.
    /// NotFound for a loop that has no events or metrics.
    pub(crate) async fn loop_events(&self, org: OrgId, loop_key: &str) -> Result<(Vec<i64>, Vec<bytes::Bytes>)> {
        self.ensure_loop(org, loop_key).await?;
        let segments = self.store.live_segments(org, loop_key, None).await?;
        let bytes = self.segments.get_all(&segments).await?;
        Ok((segments.iter().map(|s| s.id).collect(), bytes))
    }

    /// Characters accepted and suggested per variant over the loop's live events, for the learning
    /// curve of the annotation budget (which reads a promoted model's acceptance off the variants that
    /// served it).
    pub(crate) async fn acceptance_by_variant(&self, org: OrgId, loop_key: &str) -> Result<Vec<(String, f64, f64)>> {
        let (_, bytes) = self.loop_events(org, loop_key).await?;
        blocking("reading acceptance by variant", move || {
            let columns = ["ts", "user_id", "variant", "accepted_chars", "suggested_chars"];
            let frame = slope_metrics::segment::frame_of(&bytes, Some(&columns)).map_err(|e| e.to_string())?;
            let points = slope_metrics::acceptance::acceptance_of(frame, true, slope_metrics::acceptance::Bucket::All)
                .map_err(|e| e.to_string())?;
            Ok(points.into_iter().filter_map(|p| Some((p.variant?, p.accepted, p.suggested))).collect())
        })
        .await
    }

    /// Creates the metric unless one with its key exists; a concurrent creation is not an error.
    pub(crate) async fn ensure_metric(&self, actor: &Actor, input: &MetricInput) -> Result<()> {
        let org = actor.authorize(Action::Operate)?;
        if self.store.metric(org, &input.key).await?.is_some() {
            return Ok(());
        }
        match self.create_metric(actor, input).await {
            Ok(_) | Err(ServiceError::Conflict(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }
}
