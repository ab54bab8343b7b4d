//! Recording a batch of events and recomputing what it touches, each holding the organisation's lock
//! only for its writes to the manifest and the series: the segment file is written, and the points are
//! computed, outside any transaction, and entered only if what they were made from is unchanged.

use std::collections::HashMap;
use std::future::Future;

use chrono::{DateTime, Utc};

use slope_domain::*;

use crate::metrics::{BATCH_COLUMNS, KeyedBatch, lookup_batch, upsert_points, write_problem};
use crate::plan::{feed_linked, lock_org};
use crate::{BatchRecord, NewBatch, NewSegment, PointsWrite, Result, SegmentRow, Store, StoreError, in_tx, on_db};

/// What the writer of a batch did with it.
#[derive(Debug, Clone)]
pub struct Written {
    pub duplicates: i64,
    /// `None` when every event was a duplicate and nothing needed writing.
    pub segment: Option<NewSegment>,
}

/// What recording a batch did.
#[derive(Debug)]
pub struct Recorded<E> {
    /// The batch as acknowledged: the earlier one when this was a replay.
    pub batch: BatchRecord,
    /// The manifest row of the segment the batch wrote; `None` for a replay or a batch of duplicates.
    pub segment: Option<SegmentRow>,
    /// How recomputing the loop's metrics went; `None` when it was left for later (see [`Recompute`]).
    pub recomputed: Option<std::result::Result<(), E>>,
}

/// How many times a batch's writer runs at most: each attempt after the first follows a race lost to
/// another batch or a compaction of its loop, and the last one runs under the organisation's lock.
pub const WRITE_ATTEMPTS: usize = 3;

/// How many times a batch's recomputation is planned and computed again after losing a race, before
/// its segments are left pending for the upkeep.
pub const RECOMPUTE_ATTEMPTS: usize = 3;

/// The segments a recomputation read: a loop's live segments overlapping `range` (all when `None`),
/// by id in ascending order. [`Store::apply_points`] writes only while they are still exactly these.
#[derive(Debug, Clone, PartialEq)]
pub struct SegmentsRead<'a> {
    pub loop_key: &'a str,
    pub range: Option<(DateTime<Utc>, DateTime<Utc>)>,
    pub ids: Vec<i64>,
}

/// What entering a written batch in the manifest found.
#[derive(Debug)]
enum Entered {
    /// An identical batch committed first.
    Replayed(BatchRecord),
    /// Another segment of the loop overlapping the batch appeared or was retired while it was written.
    Stale,
    Recorded(BatchRecord, Option<SegmentRow>),
}

/// The batches this process is writing, by organisation, loop and content. A request whose identical
/// twin is in flight waits for it and then finds its acknowledgement, so a retry storm writes the
/// events once. Across processes the first to commit wins and the others find the replay under the
/// lock (their files are left for the upkeep's sweep): correct, only wasted work.
#[derive(Debug, Default)]
pub(crate) struct Flights(std::sync::Mutex<HashMap<(i64, String, String), tokio::sync::watch::Receiver<()>>>);

/// A place among the [`Flights`], given up on drop, which wakes every request waiting for it.
pub(crate) struct Flight<'a> {
    flights: &'a Flights,
    key: (i64, String, String),
    _done: tokio::sync::watch::Sender<()>,
}

impl Flights {
    /// Takes the batch's place, or answers a receiver that wakes when the request holding it ends.
    fn enter(
        &self,
        org: OrgId,
        batch: &NewBatch<'_>,
    ) -> std::result::Result<Flight<'_>, tokio::sync::watch::Receiver<()>> {
        let key = (org.0, batch.loop_key.to_owned(), batch.content_hash.to_owned());
        let mut flights = self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(done) = flights.get(&key) {
            return Err(done.clone());
        }
        let (sender, receiver) = tokio::sync::watch::channel(());
        flights.insert(key.clone(), receiver);
        Ok(Flight { flights: self, key, _done: sender })
    }
}

impl Drop for Flight<'_> {
    fn drop(&mut self) {
        let mut flights = self.flights.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        flights.remove(&self.key);
    }
}

/// What recomputing a loop's pending segments needs, as the service plans it.
#[derive(Debug, Clone, PartialEq)]
pub enum Recompute {
    /// Leave the segments pending: someone else recomputes them.
    Later,
    /// No bucket needs computing (no metric on the loop, or only days still to come): mark them done.
    Nothing,
    /// Compute from the live segments overlapping this range (`None`: every segment of the loop).
    Events(Option<(DateTime<Utc>, DateTime<Utc>)>),
}

/// The metric half of recording a batch, called once the batch is committed, outside any transaction
/// (see [`Store::record_and_recompute`]); `plan` and `compute` run again, in that order, when the
/// loop's segments changed while it computed.
pub trait Recomputation: Send {
    /// A failure to compute; storage's own failures convert into it.
    type Error: From<StoreError>;
    /// What recomputing `pending` (the loop's segments still to materialise) needs.
    fn plan(&mut self, pending: &[SegmentRow]) -> Recompute;
    /// The points to write, computed from `segments` (those [`Recompute::Events`] named).
    fn compute(
        &mut self,
        segments: Vec<SegmentRow>,
    ) -> impl Future<Output = std::result::Result<Vec<PointsWrite>, Self::Error>> + Send;
}

/// A recomputation lent for one batch: the caller keeps it, to read what it recorded afterwards.
impl<R: Recomputation> Recomputation for &mut R {
    type Error = R::Error;

    fn plan(&mut self, pending: &[SegmentRow]) -> Recompute {
        (**self).plan(pending)
    }

    fn compute(
        &mut self,
        segments: Vec<SegmentRow>,
    ) -> impl Future<Output = std::result::Result<Vec<PointsWrite>, Self::Error>> + Send {
        (**self).compute(segments)
    }
}

/// A [`Recomputation`] that leaves every segment pending.
#[derive(Debug, Clone, Copy)]
pub struct Later;

impl Recomputation for Later {
    type Error = StoreError;

    fn plan(&mut self, _: &[SegmentRow]) -> Recompute {
        Recompute::Later
    }

    async fn compute(&mut self, _: Vec<SegmentRow>) -> std::result::Result<Vec<PointsWrite>, StoreError> {
        Ok(vec![])
    }
}

/// Enters a written batch in the manifest inside a transaction that holds the organisation's lock
/// (see [`Store::enter_batch`]): the lookup repeats under the lock, which is granted only after an
/// identical request's commit, so this read sees it (each statement reads the latest committed data).
macro_rules! enter_batch {
    ($tx:expr, $org:expr, $batch:expr, $seen:expr, $written:expr) => {{
        let (org, batch, seen, written): (OrgId, &NewBatch<'_>, Option<&[i64]>, &Written) = ($org, $batch, $seen, $written);
        // A block of its own, so that its `return`s end it and not the caller's transaction body.
        let entered: Result<Entered> = async {
        let previous: Result<Option<BatchRecord>> = lookup_batch!($tx, org, batch);
        if let Some(previous) = previous? {
            return Ok(Entered::Replayed(previous));
        }
        if let (Some(seen), Some((min, max))) = (seen, batch.range) {
            let live: Vec<i64> = sqlx::query_scalar(
                "SELECT id FROM event_segments WHERE org_id = $1 AND loop_key = $2 AND retired_at IS NULL
                 AND min_ts <= $4 AND max_ts >= $3 ORDER BY id")
                .bind(org.0).bind(batch.loop_key).bind(min).bind(max).fetch_all(&mut *$tx).await?;
            if live != seen {
                return Ok(Entered::Stale);
            }
        }
        let now = Utc::now();
        let stored = written.segment.as_ref().map_or(0, |s| s.rows);
        let (min_ts, max_ts) = match &written.segment {
            Some(s) => (Some(s.min_ts), Some(s.max_ts)),
            None => (None, None),
        };
        let query = format!(
            "INSERT INTO event_batches (org_id, loop_key, idempotency_key, content_hash, rows, stored, duplicates, min_ts, max_ts, received_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING {BATCH_COLUMNS}");
        let record: BatchRecord = sqlx::query_as(&query)
            .bind(org.0).bind(batch.loop_key).bind(batch.idempotency_key).bind(batch.content_hash)
            .bind(batch.rows).bind(stored).bind(written.duplicates).bind(min_ts).bind(max_ts).bind(now)
            .fetch_one(&mut *$tx).await?;
        let segment: Option<SegmentRow> = match &written.segment {
            None => None,
            Some(segment) => Some(sqlx::query_as(
                "INSERT INTO event_segments (org_id, loop_key, path, rows, bytes, min_ts, max_ts, materialized, created_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING *")
                .bind(org.0).bind(batch.loop_key).bind(&segment.path).bind(segment.rows).bind(segment.bytes)
                .bind(segment.min_ts).bind(segment.max_ts).bind(false).bind(now)
                .fetch_one(&mut *$tx).await?),
        };
        Ok(Entered::Recorded(record, segment))
        }.await;
        entered
    }};
}

impl Store {
    /// Records a batch without recomputing metrics: [`Store::record_and_recompute`] with
    /// [`Later`], for streams that feed no metric (transactions) and for what the upkeep recomputes.
    pub async fn record_batch<F, Fut, E>(
        &self,
        org: OrgId,
        batch: &NewBatch<'_>,
        write: F,
    ) -> Result<std::result::Result<Recorded<StoreError>, E>>
    where
        F: FnMut(Vec<SegmentRow>) -> Fut,
        Fut: Future<Output = std::result::Result<Written, E>>,
    {
        self.record_and_recompute(org, batch, write, Later).await
    }

    /// Records a batch and then recomputes its loop's metrics, holding the organisation's lock only
    /// for the manifest's writes. Checks that the batch is new and waits for an identical request this
    /// process is already writing; hands `write` the live segments overlapping the batch's time range
    /// (to drop events already stored) outside any transaction; then, under the lock, enters the
    /// segment `write` produced in the manifest, provided the overlapping segments are still those it
    /// was handed. When another batch or a compaction changed them meanwhile, `write` runs again with
    /// the new ones (the caller removes the file it wrote before); the last of [`WRITE_ATTEMPTS`]
    /// attempts runs `write` under the lock, so a batch always ends. The outer error is
    /// storage's; the inner one is the writer's, in which case nothing is recorded.
    ///
    /// Once the batch is committed, `recompute` plans from the loop's segments still to materialise
    /// (the new one among them) and computes points outside any transaction, and they are written
    /// under the lock if the segments they were computed from are still the live ones (see
    /// [`Store::apply_points`]); otherwise it plans and computes again, and after
    /// [`RECOMPUTE_ATTEMPTS`] races leaves the segments pending for the upkeep. A failed
    /// recomputation does not lose the batch: nothing of it is written and its segment stays pending.
    pub async fn record_and_recompute<F, Fut, E, R>(
        &self,
        org: OrgId,
        batch: &NewBatch<'_>,
        mut write: F,
        mut recompute: R,
    ) -> Result<std::result::Result<Recorded<R::Error>, E>>
    where
        F: FnMut(Vec<SegmentRow>) -> Fut,
        Fut: Future<Output = std::result::Result<Written, E>>,
        R: Recomputation,
    {
        let replay = |batch| Ok(Ok(Recorded { batch, segment: None, recomputed: None }));
        let _flight = loop {
            if let Some(previous) = self.find_batch(org, batch).await? {
                return replay(previous);
            }
            match self.flights.enter(org, batch) {
                Ok(flight) => {
                    // Looked up again now that no identical request of this process is writing: one may
                    // have committed between the lookup above and taking its place.
                    if let Some(previous) = self.find_batch(org, batch).await? {
                        return replay(previous);
                    }
                    break flight;
                }
                Err(mut done) => {
                    // The sender is dropped when the other request ends, however it ends.
                    let _ = done.changed().await;
                }
            }
        };
        let mut attempt = 1;
        let entered = loop {
            let entered = if attempt < WRITE_ATTEMPTS {
                let overlapping = self.overlapping(org, batch).await?;
                let seen: Vec<i64> = overlapping.iter().map(|s| s.id).collect();
                let written = match write(overlapping).await {
                    Ok(written) => written,
                    Err(e) => return Ok(Err(e)),
                };
                self.enter_batch(org, batch, Some(&seen), &written).await?
            } else {
                match self.write_under_lock(org, batch, &mut write).await? {
                    Ok(entered) => entered,
                    Err(e) => return Ok(Err(e)),
                }
            };
            match entered {
                Entered::Stale => attempt += 1,
                entered => break entered,
            }
        };
        let (record, segment) = match entered {
            Entered::Replayed(previous) => return replay(previous),
            Entered::Recorded(record, segment) => (record, segment),
            Entered::Stale => unreachable!("a stale attempt is retried"),
        };
        let Some(segment) = segment else {
            return Ok(Ok(Recorded { batch: record, segment: None, recomputed: None }));
        };
        // The batch is committed: a failure from here on is the recomputation's, never the batch's.
        let recomputed = match self.recompute_loop(org, batch.loop_key, &mut recompute).await {
            Ok(recomputed) => recomputed,
            Err(e) => Some(Err(e.into())),
        };
        let segment = SegmentRow { materialized: matches!(recomputed, Some(Ok(()))), ..segment };
        Ok(Ok(Recorded { batch: record, segment: Some(segment), recomputed }))
    }

    /// The live segments of the batch's loop overlapping its time range (none for an empty batch).
    async fn overlapping(&self, org: OrgId, batch: &NewBatch<'_>) -> Result<Vec<SegmentRow>> {
        match batch.range {
            None => Ok(vec![]),
            Some(range) => self.live_segments(org, batch.loop_key, Some(range)).await,
        }
    }

    /// Enters a written batch under the organisation's lock: a replay if an identical batch committed
    /// meanwhile, stale if the overlapping segments are no longer `seen` (`None`: not checked, the
    /// writer ran under this same lock), else the batch and its segment's manifest rows.
    async fn enter_batch(
        &self,
        org: OrgId,
        batch: &NewBatch<'_>,
        seen: Option<&[i64]>,
        written: &Written,
    ) -> Result<Entered> {
        in_tx!(self, tx => {
            lock_org!(tx, org);
            enter_batch!(tx, org, batch, seen, written)
        })
    }

    /// The last attempt of a batch that kept losing races: the writer runs under the organisation's
    /// lock, as every attempt once did, so that no other batch can change what it deduplicates against.
    async fn write_under_lock<F, Fut, E>(
        &self,
        org: OrgId,
        batch: &NewBatch<'_>,
        write: &mut F,
    ) -> Result<std::result::Result<Entered, E>>
    where
        F: FnMut(Vec<SegmentRow>) -> Fut,
        Fut: Future<Output = std::result::Result<Written, E>>,
    {
        in_tx!(self, tx => {
            lock_org!(tx, org);
            let overlapping: Vec<SegmentRow> = match batch.range {
                None => vec![],
                Some((min, max)) => sqlx::query_as(
                    "SELECT * FROM event_segments WHERE org_id = $1 AND loop_key = $2 AND retired_at IS NULL
                     AND min_ts <= $4 AND max_ts >= $3 ORDER BY id")
                    .bind(org.0).bind(batch.loop_key).bind(min).bind(max).fetch_all(&mut *tx).await?,
            };
            let written = match write(overlapping).await {
                Ok(written) => written,
                Err(e) => return Ok(Err(e)),
            };
            let entered: Result<Entered> = enter_batch!(tx, org, batch, None, &written);
            Ok(Ok(entered?))
        })
    }

    /// Plans and computes a loop's pending buckets outside any transaction and writes them with a
    /// version check; `None` when the plan was [`Recompute::Later`] or every attempt lost a race.
    async fn recompute_loop<R: Recomputation>(
        &self,
        org: OrgId,
        loop_key: &str,
        recompute: &mut R,
    ) -> std::result::Result<Option<std::result::Result<(), R::Error>>, StoreError> {
        for _ in 0..RECOMPUTE_ATTEMPTS {
            // Selected by organisation and loop here, not filtered afterwards: the batch recomputes its
            // own loop, with whatever an earlier failure left pending there.
            let pending: Vec<SegmentRow> = on_db!(self, db => sqlx::query_as(
                "SELECT * FROM event_segments WHERE org_id = $1 AND loop_key = $2 AND materialized = $3 AND retired_at IS NULL
                 ORDER BY id")
                .bind(org.0).bind(loop_key).bind(false).fetch_all(db).await?);
            let mark: Vec<i64> = pending.iter().map(|s| s.id).collect();
            let (read, writes) = match recompute.plan(&pending) {
                Recompute::Later => return Ok(None),
                Recompute::Nothing => (None, vec![]),
                Recompute::Events(range) => {
                    let rows = self.live_segments(org, loop_key, range).await?;
                    let ids: Vec<i64> = rows.iter().map(|s| s.id).collect();
                    match recompute.compute(rows).await {
                        Ok(writes) => (Some(SegmentsRead { loop_key, range, ids }), writes),
                        Err(e) => return Ok(Some(Err(e))),
                    }
                }
            };
            match self.apply_points(org, read.as_ref(), &mark, &writes).await {
                Ok(true) => return Ok(Some(Ok(()))),
                Ok(false) => continue,
                Err(e) => return Ok(Some(Err(e.into()))),
            }
        }
        tracing::info!(
            org = org.0,
            loop_key,
            "the loop's segments kept changing while its metrics were computed; the upkeep will"
        );
        Ok(None)
    }

    /// Writes points computed outside any transaction, under the organisation's lock, and marks the
    /// segments `mark` materialised with them, provided the live segments are still those `read`
    /// names (its loop's, overlapping its range): a batch, a compaction or a retirement since then
    /// would make the points stale. Returns false, writing nothing, when they are not; `read: None`
    /// writes without the check (nothing was read). Two recomputations of one loop thus never write
    /// over each other with points computed from fewer events than the other saw.
    pub async fn apply_points(
        &self,
        org: OrgId,
        read: Option<&SegmentsRead<'_>>,
        mark: &[i64],
        writes: &[PointsWrite],
    ) -> Result<bool> {
        in_tx!(self, tx => {
            lock_org!(tx, org);
            if let Some(read) = read {
                let (from, to) = read.range.map_or((None, None), |(f, t)| (Some(f), Some(t)));
                let live: Vec<i64> = sqlx::query_scalar(
                    "SELECT id FROM event_segments WHERE org_id = $1 AND loop_key = $2 AND retired_at IS NULL
                     AND ($4 IS NULL OR min_ts <= $4) AND ($3 IS NULL OR max_ts >= $3) ORDER BY id")
                    .bind(org.0).bind(read.loop_key).bind(from).bind(to).fetch_all(&mut *tx).await?;
                if live != read.ids {
                    return Ok(false);
                }
            }
            for write in writes {
                upsert_points!(tx, org, &write.metric, &write.points, write.replace);
                write_problem!(tx, org, &write.metric, &write.problem);
            }
            for id in mark {
                sqlx::query("UPDATE event_segments SET materialized = $3 WHERE org_id = $1 AND id = $2 AND retired_at IS NULL")
                    .bind(org.0).bind(id).bind(true).execute(&mut *tx).await?;
            }
            Ok(true)
        })
    }
}
