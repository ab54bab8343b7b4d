//! Ingesting batches of events: parsed and validated off the async threads, deduplicated against the
//! segments they overlap, written as one durable Parquet segment entered in the manifest, and, for a
//! loop's interaction events, its metrics recomputed in the same hold of the organisation's lock.

use std::io::Read;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;
use sha2::{Digest, Sha256};

use slope_domain::*;
use slope_metrics::events::{
    EventsError, Format, InteractionEvent, RowError, TransactionEvent, latest_event_time, parse_batch_within,
    parse_transactions_within,
};
use slope_metrics::segment;
use slope_store::{
    BatchRecord, NewBatch, NewSegment, PointsWrite, Recomputation, Recompute, Recorded, SegmentRow, Written,
};

use super::admission::IngestPermit;
use super::materialize::{Fetched, Work, compute, plans_for, prepare};
use super::{Loops, MAX_BATCH_BYTES, TRANSACTIONS, blocking};
use crate::segments::SegmentStore;
use crate::{Result, ServiceError};

/// A batch as it arrives.
#[derive(Debug, Clone, Copy)]
pub struct BatchInput<'a> {
    pub loop_key: &'a str,
    pub body: &'a [u8],
    pub format: Format,
    pub gzip: bool,
    pub idempotency_key: Option<&'a str>,
}

#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct IngestAck {
    #[serde(flatten)]
    pub batch: BatchRecord,
    /// Metric definitions whose touched buckets were recomputed before this answer.
    pub metrics_updated: Vec<String>,
    /// True when the batch is stored but recomputing its loop's metrics failed; the upkeep retries
    /// every minute.
    pub metrics_pending: bool,
}

fn rows_error(e: EventsError) -> ServiceError {
    match e {
        EventsError::Invalid { errors, total } => ServiceError::InvalidRows { errors, total },
        EventsError::Format(message) | EventsError::Io { message, .. } => {
            ServiceError::InvalidRows { errors: vec![RowError { row: 0, field: "body".into(), message }], total: 1 }
        }
        EventsError::TooLarge { limit, message } => ServiceError::TooLarge { limit, message },
    }
}

impl Loops {
    /// Ingests one batch, all or nothing. A retry (same idempotency key, or same content) gets the
    /// first acknowledgement again; events whose ids are already stored are counted as duplicates and
    /// not stored twice. The answer comes after the segment is durable and its manifest row committed,
    /// and after the touched buckets of the loop's metrics are recomputed, so what it acknowledges is
    /// already visible on every key result the loop feeds.
    pub async fn ingest(&self, actor: &Actor, input: BatchInput<'_>) -> Result<IngestAck> {
        let permit = self.admit(actor)?;
        self.ingest_admitted(&permit, input).await
    }

    /// [`Loops::ingest`] for a caller admitted before its body was read (see [`Loops::admit`]).
    pub async fn ingest_admitted(&self, permit: &IngestPermit, input: BatchInput<'_>) -> Result<IngestAck> {
        let org = permit.org();
        let loop_key = Key::parse(input.loop_key).map_err(|m| FieldErrors::single("loop", m))?;
        let (body, content_hash) = unpack(&input).await?;
        if let Some(previous) = self.replay(org, loop_key.as_str(), input.idempotency_key, &content_hash).await? {
            return Ok(previous);
        }
        let (format, batch_loop, budget) = (input.format, loop_key.to_string(), self.limits.budget());
        let parsed = blocking("parsing a batch", move || {
            Ok(parse_batch_within(&body, format, Some(&batch_loop), Some(latest_event_time()), budget))
        })
        .await?;
        let events = parsed.map_err(rows_error)?;
        let within_batch = events.duplicates as i64;
        // The definitions are read first, as a recomputation after the fact would read them:
        // a metric created meanwhile computes its own series from every stored event.
        let fetched = Fetched::default();
        let mut recompute = BatchMetrics {
            segments: self.segments.clone(),
            fetched: fetched.clone(),
            metrics: self.store.list_metrics(org).await?,
            loop_key: loop_key.to_string(),
            today: Utc::now().date_naive(),
            work: vec![],
            keys: vec![],
        };
        let rows = Rows::Interactions(events.events);
        let recorded = self
            .store_rows(
                org,
                loop_key.as_str(),
                input.idempotency_key,
                &content_hash,
                rows,
                within_batch,
                fetched,
                &mut recompute,
            )
            .await?;
        let (metrics_updated, metrics_pending) = match recorded.recomputed {
            // Nothing to recompute (a replay, only duplicates), or the loop's segments kept changing
            // while it computed, in which case its segment waits for the upkeep.
            None => (vec![], recorded.segment.as_ref().is_some_and(|s| !s.materialized)),
            Some(Ok(())) => (recompute.keys, false),
            Some(Err(e)) => {
                tracing::warn!(org = org.0, loop_key = %loop_key, error = %e, "recomputing metrics failed; the segments stay pending");
                (vec![], true)
            }
        };
        Ok(IngestAck { batch: recorded.batch, metrics_updated, metrics_pending })
    }

    /// The acknowledgement of an earlier identical batch, looked up before the body is parsed.
    async fn replay(
        &self,
        org: OrgId,
        stream: &str,
        key: Option<&str>,
        content_hash: &str,
    ) -> Result<Option<IngestAck>> {
        let probe = NewBatch { loop_key: stream, idempotency_key: key, content_hash, rows: 0, range: None };
        Ok(self.store.find_batch(org, &probe).await?.map(|batch| IngestAck {
            batch,
            metrics_updated: vec![],
            metrics_pending: false,
        }))
    }

    /// Ingests a batch of transaction events (`event_id`, `customer_id`, `ts`, `amount`) into the
    /// organisation's transaction stream, with the same all-or-nothing, idempotency and duplicate rules
    /// as interaction events. `input.loop_key` is ignored.
    pub async fn ingest_transactions(&self, actor: &Actor, input: BatchInput<'_>) -> Result<IngestAck> {
        let permit = self.admit(actor)?;
        self.ingest_transactions_admitted(&permit, input).await
    }

    /// [`Loops::ingest_transactions`] for a caller admitted before its body was read.
    pub async fn ingest_transactions_admitted(
        &self,
        permit: &IngestPermit,
        input: BatchInput<'_>,
    ) -> Result<IngestAck> {
        let org = permit.org();
        let (body, content_hash) = unpack(&input).await?;
        if let Some(previous) = self.replay(org, TRANSACTIONS, input.idempotency_key, &content_hash).await? {
            return Ok(previous);
        }
        let (format, budget) = (input.format, self.limits.budget());
        let parsed = blocking("parsing a batch", move || {
            Ok(parse_transactions_within(&body, format, Some(latest_event_time()), budget))
        })
        .await?;
        let (rows, within_batch) = parsed.map_err(rows_error)?;
        // The lifetime value metrics are refitted after the batch is recorded, outside its
        // transaction: a fit takes far longer than a write should hold the organisation's lock. The
        // segment just written stays in memory for it.
        let fetched = Fetched::default();
        let recorded = self
            .store_rows(
                org,
                TRANSACTIONS,
                input.idempotency_key,
                &content_hash,
                Rows::Transactions(rows),
                within_batch as i64,
                fetched.clone(),
                &mut slope_store::Later,
            )
            .await?;
        let Some(segment) = recorded.segment else {
            return Ok(IngestAck { batch: recorded.batch, metrics_updated: vec![], metrics_pending: false });
        };
        match self.materialize_segments(org, TRANSACTIONS, std::slice::from_ref(&segment), &fetched).await {
            Ok(metrics_updated) => Ok(IngestAck { batch: recorded.batch, metrics_updated, metrics_pending: false }),
            Err(e) => {
                // The batch is stored; the upkeep fits again within a minute.
                tracing::warn!(org = org.0, error = %e, "fitting lifetime value failed; the transactions stay pending");
                Ok(IngestAck { batch: recorded.batch, metrics_updated: vec![], metrics_pending: true })
            }
        }
    }

    /// Records a validated batch of `stream` and runs `recompute` in the same transaction: replays an
    /// earlier identical batch, else drops events already stored and writes the rest as one durable
    /// segment entered in the manifest. The segments read for duplicates and the one written stay in
    /// `fetched` for the recomputation. Returns what was recorded.
    #[allow(clippy::too_many_arguments)]
    async fn store_rows<R: Recomputation>(
        &self,
        org: OrgId,
        stream: &str,
        idempotency_key: Option<&str>,
        content_hash: &str,
        rows: Rows,
        within_batch: i64,
        fetched: Fetched,
        recompute: &mut R,
    ) -> Result<Recorded<R::Error>> {
        // Sorting millions of rows takes a good part of a second: on an async thread it would stall
        // every request scheduled behind it (sign-ins, with their many awaits, most of all).
        let (rows, range) = blocking("sorting a batch", move || {
            let mut rows = rows;
            rows.sort();
            let range = rows.range();
            Ok((rows, range))
        })
        .await?;
        if let Some((first, last)) = range {
            let span = (last - first).num_days();
            let most = self.limits.max_span_days.max(1);
            if span > most {
                return Err(FieldErrors::single(
                    "ts",
                    format!(
                        "the batch's events span {span} days ({} to {}); one batch may span at most {most} \
                         (ingest_max_span_days), so send events of distant days in batches of their own",
                        first.date_naive(),
                        last.date_naive()
                    ),
                )
                .into());
            }
        }
        let batch =
            NewBatch { loop_key: stream, idempotency_key, content_hash, rows: rows.len() as i64 + within_batch, range };
        // The callers have looked for a replay before parsing; the store looks again under the lock.
        // The writer runs outside the organisation's lock and may run again if another batch of the
        // loop commits an overlapping segment meanwhile, so it shares the rows rather than owning them,
        // and removes the file of its earlier attempt, which the manifest will never name.
        let rows = Arc::new(rows);
        let kept = rows.clone();
        let segments = self.segments.clone();
        let path_stream = stream.to_owned();
        let hash_prefix = content_hash[..16].to_owned();
        let last_written: Arc<Mutex<Option<String>>> = Arc::default();
        let last = last_written.clone();
        let write = move |overlapping: Vec<SegmentRow>| {
            let (segments, fetched, rows, last) = (segments.clone(), fetched.clone(), rows.clone(), last.clone());
            let (path_stream, hash_prefix) = (path_stream.clone(), hash_prefix.clone());
            async move {
                let earlier = last.lock().unwrap_or_else(|p| p.into_inner()).take();
                if let Some(earlier) = earlier {
                    discard(&segments, &earlier).await;
                }
                let stored = fetched.get_all(&segments, &overlapping).await?;
                for (row, bytes) in overlapping.iter().zip(&stored) {
                    fetched.keep(&row.path, bytes.clone());
                }
                let (fresh, duplicates, encoded, kept_range) = blocking("writing a segment", move || {
                    let known = segment::event_ids(&stored).map_err(|e| e.to_string())?;
                    rows.encode_without(&known)
                })
                .await?;
                let Some(bytes) = encoded else {
                    return Ok::<_, ServiceError>(Written { duplicates: duplicates + within_batch, segment: None });
                };
                // The segment spans what it holds, not the duplicates left out of it.
                let (min_ts, max_ts) = kept_range.or(range).unwrap_or_default();
                let now = Utc::now();
                let path = format!(
                    "org-{}/{}/{}/{}-{hash_prefix}.parquet",
                    org.0,
                    path_stream,
                    min_ts.format("%Y-%m-%d"),
                    now.format("%Y%m%dT%H%M%S%6f")
                );
                let bytes = bytes::Bytes::from(bytes);
                let size = bytes.len() as i64;
                segments.put(&path, bytes.clone()).await?;
                *last.lock().unwrap_or_else(|p| p.into_inner()) = Some(path.clone());
                fetched.keep(&path, bytes);
                Ok(Written {
                    duplicates: duplicates + within_batch,
                    segment: Some(NewSegment { path, rows: fresh as i64, bytes: size, min_ts, max_ts }),
                })
            }
        };
        let recorded = self.store.record_and_recompute(org, &batch, write, recompute).await;
        // The writer is gone, so this is the rows' last holder: millions of strings are freed on the
        // blocking pool, not on an async thread.
        tokio::task::spawn_blocking(move || drop(kept));
        // The file of the last attempt is not named when the batch was refused at the end (a key reused
        // for other content) or an identical batch of another server committed while this one wrote.
        let named = match &recorded {
            Ok(Ok(recorded)) => recorded.segment.as_ref().map(|s| s.path.clone()),
            _ => None,
        };
        let unnamed = last_written.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(path) = unnamed.filter(|path| named.as_ref() != Some(path)) {
            discard(&self.segments, &path).await;
        }
        recorded?
    }
}

/// The recomputation a batch of interaction events asks for: the buckets its loop's pending segments
/// touch, computed from segments that this ingest already holds in memory where it can.
struct BatchMetrics {
    segments: SegmentStore,
    fetched: Fetched,
    metrics: Vec<MetricDefinition>,
    loop_key: String,
    today: NaiveDate,
    work: Vec<Work>,
    /// The metric keys the plan covered, for the acknowledgement.
    keys: Vec<String>,
}

impl Recomputation for BatchMetrics {
    type Error = ServiceError;

    fn plan(&mut self, pending: &[SegmentRow]) -> Recompute {
        let plans = plans_for(&self.metrics, &self.loop_key, pending);
        self.keys = plans.iter().map(|p| p.metric.key.clone()).collect();
        let (work, recompute) = prepare(plans, self.today);
        self.work = work;
        recompute
    }

    async fn compute(&mut self, rows: Vec<SegmentRow>) -> Result<Vec<PointsWrite>> {
        compute(&self.segments, &self.fetched, std::mem::take(&mut self.work), rows, self.today).await
    }
}

/// The decompressed body of a batch and the hash that recognises a retry of it.
/// The body decompressed and its content hash, on the blocking pool: gunzip and SHA-256 of hundreds of
/// megabytes would otherwise hold an async thread for seconds.
async fn unpack(input: &BatchInput<'_>) -> Result<(Vec<u8>, String)> {
    let (raw, gzip) = (owned(input.body).await, input.gzip);
    let unpacked = tokio::task::spawn_blocking(move || -> Result<(Vec<u8>, String)> {
        let body = if gzip { gunzip(&raw)? } else { raw };
        if body.len() > MAX_BATCH_BYTES {
            return Err(ServiceError::TooLarge {
                limit: "the batch size",
                message: format!(
                    "the body is over {} MiB once decompressed; send several batches",
                    MAX_BATCH_BYTES >> 20
                ),
            });
        }
        let content_hash = content_hash(&body);
        Ok((body, content_hash))
    })
    .await;
    unpacked.map_err(|e| crate::error::internal("unpacking a batch", e))?
}

/// A copy of `body` for the blocking pool, made in 8 MiB slices with a yield between them: a body of
/// hundreds of megabytes copied in one go would hold an async thread for a tenth of a second.
async fn owned(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len());
    for slice in body.chunks(8 << 20) {
        out.extend_from_slice(slice);
        tokio::task::yield_now().await;
    }
    out
}

/// The SHA-256 of a batch body, in hex: how a byte-identical retry is recognised.
pub fn content_hash(body: &[u8]) -> String {
    Sha256::digest(body).iter().map(|b| format!("{b:02x}")).collect()
}

/// Removes a segment file the manifest will never name; a failure only leaves it to the upkeep's sweep.
async fn discard(segments: &SegmentStore, path: &str) {
    if let Err(e) = segments.delete(path).await {
        tracing::warn!(path, error = %e, "could not remove an unrecorded segment file; the upkeep will");
    }
}

/// What deduplicating and encoding a batch's rows gave: the rows kept, the duplicates dropped, the
/// encoded segment (none when nothing was kept) and the kept rows' time range.
type Encoded = (usize, i64, Option<Vec<u8>>, Option<(DateTime<Utc>, DateTime<Utc>)>);

/// The validated rows of a batch, of either stream.
enum Rows {
    Interactions(Vec<InteractionEvent>),
    Transactions(Vec<TransactionEvent>),
}

impl Rows {
    fn len(&self) -> usize {
        match self {
            Rows::Interactions(r) => r.len(),
            Rows::Transactions(r) => r.len(),
        }
    }

    fn sort(&mut self) {
        match self {
            Rows::Interactions(r) => r.sort_by_key(|e| e.ts),
            Rows::Transactions(r) => r.sort_by_key(|e| e.ts),
        }
    }

    /// The first and last time, once sorted.
    fn range(&self) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
        match self {
            Rows::Interactions(r) => r.first().zip(r.last()).map(|(a, b)| (a.ts, b.ts)),
            Rows::Transactions(r) => r.first().zip(r.last()).map(|(a, b)| (a.ts, b.ts)),
        }
    }

    fn contains_any(&self, known: &std::collections::HashSet<String>) -> bool {
        match self {
            Rows::Interactions(r) => r.iter().any(|e| known.contains(&e.event_id)),
            Rows::Transactions(r) => r.iter().any(|e| known.contains(&e.event_id)),
        }
    }

    /// The rows whose ids are not in `known` (a copy: the writer may run again with other segments).
    fn without(&self, known: &std::collections::HashSet<String>) -> Rows {
        match self {
            Rows::Interactions(r) => {
                Rows::Interactions(r.iter().filter(|e| !known.contains(&e.event_id)).cloned().collect())
            }
            Rows::Transactions(r) => {
                Rows::Transactions(r.iter().filter(|e| !known.contains(&e.event_id)).cloned().collect())
            }
        }
    }

    /// Drops the rows whose ids are in `known` and encodes the rest as a segment. Only a batch with
    /// duplicates pays for a copy of its rows.
    fn encode_without(&self, known: &std::collections::HashSet<String>) -> Result<Encoded, String> {
        let copy;
        let fresh = if self.contains_any(known) {
            copy = self.without(known);
            &copy
        } else {
            self
        };
        let duplicates = (self.len() - fresh.len()) as i64;
        let encoded = if fresh.len() == 0 { None } else { Some(fresh.encode()?) };
        Ok((fresh.len(), duplicates, encoded, fresh.range()))
    }

    fn encode(&self) -> Result<Vec<u8>, String> {
        match self {
            Rows::Interactions(r) => segment::encode(r),
            Rows::Transactions(r) => segment::encode_transactions(r),
        }
        .map_err(|e| e.to_string())
    }
}

fn gunzip(body: &[u8]) -> Result<Vec<u8>> {
    let mut out = vec![];
    flate2::read::MultiGzDecoder::new(body)
        .take(MAX_BATCH_BYTES as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| FieldErrors::single("body", format!("is not valid gzip: {e}")))?;
    Ok(out)
}
