//! Contracts of loop metrics (`src/metrics.rs`, `src/series.rs` for every series in one read and
//! `src/experiments.rs`):
//! ingested batches and their segments, metric definitions and points, the key results and goals that
//! metrics feed, experiments and drift alerts.

use std::convert::Infallible;
use std::fmt::Debug;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use chrono::{DateTime, Utc};

use slope_domain::*;
use slope_store::{
    BatchRecord, LoginLimits, NewBatch, NewSegment, PointsWrite, ProblemWrite, Recomputation, Recompute, SegmentRow,
    SegmentsRead, Store, StoreError, Written,
};

use crate::common::*;

contract_tests! {
    contract_batches_are_recorded_once =>
        batches_are_recorded_once_sqlite, batches_are_recorded_once_postgres;
    contract_live_segments_overlap_by_time =>
        live_segments_overlap_by_time_sqlite, live_segments_overlap_by_time_postgres;
    contract_segments_are_materialized_compacted_and_forgotten =>
        segments_are_materialized_compacted_and_forgotten_sqlite,
        segments_are_materialized_compacted_and_forgotten_postgres;
    contract_metric_definitions_are_versioned =>
        metric_definitions_are_versioned_sqlite, metric_definitions_are_versioned_postgres;
    contract_metric_points_are_upserted_in_bucket_order =>
        metric_points_are_upserted_in_bucket_order_sqlite, metric_points_are_upserted_in_bucket_order_postgres;
    contract_all_series_are_each_metric_series =>
        all_series_are_each_metric_series_sqlite, all_series_are_each_metric_series_postgres;
    contract_metrics_feed_linked_key_results_and_goals =>
        metrics_feed_linked_key_results_and_goals_sqlite, metrics_feed_linked_key_results_and_goals_postgres;
    contract_experiments_and_drift_alerts =>
        experiments_and_drift_alerts_sqlite, experiments_and_drift_alerts_postgres;
    contract_a_batch_recomputes_its_loop_once_committed =>
        a_batch_recomputes_its_loop_once_committed_sqlite, a_batch_recomputes_its_loop_once_committed_postgres;
    contract_a_batch_is_written_outside_the_organisations_lock =>
        a_batch_is_written_outside_the_organisations_lock_sqlite,
        a_batch_is_written_outside_the_organisations_lock_postgres;
    contract_a_batch_written_beside_an_overlapping_one_is_deduplicated_against_it =>
        a_batch_written_beside_an_overlapping_one_is_deduplicated_against_it_sqlite,
        a_batch_written_beside_an_overlapping_one_is_deduplicated_against_it_postgres;
    contract_points_computed_from_segments_since_changed_are_computed_again =>
        points_computed_from_segments_since_changed_are_computed_again_sqlite,
        points_computed_from_segments_since_changed_are_computed_again_postgres;
    contract_a_computation_notes_why_a_bucket_has_no_point =>
        a_computation_notes_why_a_bucket_has_no_point_sqlite, a_computation_notes_why_a_bucket_has_no_point_postgres;
    contract_concurrent_identical_batches =>
        concurrent_identical_batches_sqlite, concurrent_identical_batches_postgres
        [flavor = "multi_thread", worker_threads = 4];
}

// ---- fixtures ------------------------------------------------------------------------------------

fn new_segment(path: &str, rows: i64, min_ts: &str, max_ts: &str) -> NewSegment {
    NewSegment { path: path.into(), rows, bytes: rows * 100, min_ts: at(min_ts), max_ts: at(max_ts) }
}

/// A batch whose events span exactly `segment`'s time range.
fn batch_for<'a>(
    loop_key: &'a str,
    idempotency_key: Option<&'a str>,
    content_hash: &'a str,
    segment: &NewSegment,
) -> NewBatch<'a> {
    NewBatch {
        loop_key,
        idempotency_key,
        content_hash,
        rows: segment.rows,
        range: Some((segment.min_ts, segment.max_ts)),
    }
}

/// The answer of a writer that found every event of its batch already stored.
fn all_duplicates(rows: i64) -> Written {
    Written { duplicates: rows, segment: None }
}

/// Records a batch whose events were all new and went into `segment`, the way the ingestion service
/// does; returns the batch and the manifest row of its segment.
async fn ingest(
    store: &Store,
    org: OrgId,
    loop_key: &str,
    content_hash: &str,
    segment: NewSegment,
) -> (BatchRecord, SegmentRow) {
    let batch = batch_for(loop_key, None, content_hash, &segment);
    let path = segment.path.clone();
    let written = Written { duplicates: 0, segment: Some(segment) };
    let record = store
        .record_batch(org, &batch, move |_| std::future::ready(Ok::<_, Infallible>(written.clone())))
        .await
        .expect("the batch is recorded")
        .expect("the writer cannot fail");
    let live = store.live_segments(org, loop_key, None).await.unwrap();
    let row = live.into_iter().find(|s| s.path == path).expect("the batch's segment is live");
    assert_eq!(record.segment.as_ref(), Some(&row), "recording a batch answers the manifest row of its segment");
    assert!(record.recomputed.is_none(), "a batch recorded alone leaves its metrics to the upkeep");
    (record.batch, row)
}

/// The paths of the live segments of `loop_key` that overlap `[from, to]`.
async fn live_paths(store: &Store, org: OrgId, loop_key: &str, from: &str, to: &str) -> Vec<String> {
    let live = store.live_segments(org, loop_key, Some((at(from), at(to)))).await.unwrap();
    live.into_iter().map(|s| s.path).collect()
}

/// A pushed metric (an eval score), so that points can be written without events.
fn metric_spec(key: &str, name: &str) -> MetricSpec {
    MetricInput {
        key: key.into(),
        name: name.into(),
        kind: "eval-score".into(),
        freshness_hours: Some(72),
        ..Default::default()
    }
    .validate()
    .expect("fixture metric is valid")
}

fn point(bucket: &str, value: f64, observed_at: &str) -> MetricPoint {
    MetricPoint {
        bucket: date(bucket),
        value,
        n: Some(120),
        ci_low: Some(value - 0.05),
        ci_high: Some(value + 0.05),
        observed_at: at(observed_at),
        computed_at: at("2027-02-01T06:00:00Z"),
    }
}

/// A key result measured as an increase, fed by the metric `metric` (empty: fed by check-ins).
fn fed_key_result_spec(title: &str, metric: &str) -> KeyResultSpec {
    key_result_with(
        KeyResultInput { title: title.into(), metric: metric.into(), ..Default::default() },
        increase(0.6, 0.8, ""),
    )
    .validate()
    .expect("fixture key result is valid")
}

/// A squad goal on `kr`, fed by the metric `metric` (empty: fed by check-ins).
fn fed_goal_spec(season: &Season, kr: &KeyResult, metric: &str) -> SquadGoalSpec {
    goal_with(
        SquadGoalInput {
            key_result_id: Some(kr.id.0),
            title: "Raise F1 of drafts".into(),
            starts_on: "2027-01-04".into(),
            ends_on: "2027-02-01".into(),
            investment: "snapshot".into(),
            planned_capacity: Some(8.0),
            metric: metric.into(),
            ..Default::default()
        },
        increase(0.6, 0.8, ""),
    )
    .validate(Some(&season.dates()))
    .expect("fixture goal is valid")
}

fn drift_alert(field: &str, psi: f64, created_at: &str) -> DriftAlert {
    DriftAlert {
        id: 0,
        loop_key: "notes".into(),
        field: field.into(),
        reference_start: date("2027-01-01"),
        reference_end: date("2027-01-14"),
        current_start: date("2027-01-15"),
        current_end: date("2027-01-21"),
        psi,
        js_distance: psi / 2.0,
        band: if psi > 0.25 { "major" } else { "moderate" }.into(),
        created_at: at(created_at),
    }
}

#[track_caller]
fn assert_segment_conflict<T: Debug>(result: Result<T, StoreError>, id: i64) {
    match result {
        Err(StoreError::Conflict { entity: "segment", id: i, .. }) if i == id => {}
        other => panic!("expected a conflict on segment {id}, got {other:?}"),
    }
}

// ---- contracts -----------------------------------------------------------------------------------

async fn contract_batches_are_recorded_once(store: Store) {
    let org = store.ensure_org("acme", "Acme").await.unwrap();
    let other = store.ensure_org("globex", "Globex").await.unwrap();
    // Of these four segments only the first overlaps the batch below: the second is a day later, the
    // third belongs to another loop and the fourth to another organisation.
    let morning = new_segment("acme/notes/1.parquet", 10, "2027-01-04T08:00:00Z", "2027-01-04T12:00:00Z");
    let (_, morning) = ingest(&store, org, "notes", "h-morning", morning).await;
    let next_day = new_segment("acme/notes/2.parquet", 5, "2027-01-05T08:00:00Z", "2027-01-05T12:00:00Z");
    ingest(&store, org, "notes", "h-next-day", next_day).await;
    let search = new_segment("acme/search/1.parquet", 7, "2027-01-01T00:00:00Z", "2027-01-31T00:00:00Z");
    ingest(&store, org, "search", "h-search", search).await;
    let theirs = new_segment("globex/notes/1.parquet", 3, "2027-01-01T00:00:00Z", "2027-01-31T00:00:00Z");
    ingest(&store, other, "notes", "h-theirs", theirs).await;

    let segment = new_segment("acme/notes/3.parquet", 3, "2027-01-04T11:00:00Z", "2027-01-04T14:00:00Z");
    let batch = NewBatch { rows: 4, ..batch_for("notes", Some("req-1"), "h-1", &segment) };
    assert_eq!(store.find_batch(org, &batch).await.unwrap(), None);
    let before = Utc::now();
    let mut seen = None;
    let written = Written { duplicates: 1, segment: Some(segment.clone()) };
    let recorded = store
        .record_batch(org, &batch, |overlapping| {
            seen = Some(overlapping);
            std::future::ready(Ok::<_, Infallible>(written.clone()))
        })
        .await
        .unwrap()
        .unwrap()
        .batch;
    // The writer drops events already stored by looking only at these segments, so a segment it
    // misses would let duplicates through and one too many would only cost time.
    let seen = seen.expect("the writer runs for a new batch");
    assert_eq!(seen, vec![morning.clone()], "the writer sees the live segments of its loop overlapping the batch");
    assert_eq!(recorded.loop_key, "notes");
    assert_eq!((recorded.rows, recorded.stored, recorded.duplicates), (4, 3, 1));
    assert_eq!((recorded.min_ts, recorded.max_ts), (Some(segment.min_ts), Some(segment.max_ts)));
    assert!(!recorded.replayed, "a new batch is not a replay");
    let skew = (recorded.received_at - before).num_seconds().abs();
    assert!(skew < 60, "received_at {} is {skew} s from now", recorded.received_at);

    let live = store.live_segments(org, "notes", None).await.unwrap();
    assert_eq!(live.len(), 3, "{live:?}");
    let expected = SegmentRow {
        id: live[2].id,
        org_id: org.0,
        loop_key: "notes".into(),
        path: "acme/notes/3.parquet".into(),
        rows: 3,
        bytes: 300,
        min_ts: segment.min_ts,
        max_ts: segment.max_ts,
        materialized: false,
        created_at: recorded.received_at,
    };
    assert_eq!(live[2], expected, "the segment enters the manifest with its batch");

    // A retry finds the first acknowledgement, by its key or, without one, by its content.
    let replay = BatchRecord { replayed: true, ..recorded.clone() };
    assert_eq!(store.find_batch(org, &batch).await.unwrap(), Some(replay.clone()));
    let unkeyed = NewBatch { idempotency_key: None, ..batch.clone() };
    assert_eq!(store.find_batch(org, &unkeyed).await.unwrap(), Some(replay.clone()));
    // Identical content under a fresh key is the same batch too: writing it again would double its
    // events, and the content index would refuse the second row anyway.
    let rekeyed = NewBatch { idempotency_key: Some("req-2"), ..batch.clone() };
    assert_eq!(store.find_batch(org, &rekeyed).await.unwrap(), Some(replay.clone()));
    assert_eq!(store.find_batch(other, &batch).await.unwrap(), None, "batches are per organisation");
    let mut called = false;
    let again = store
        .record_batch(org, &batch, |_| {
            called = true;
            async { Ok::<_, Infallible>(all_duplicates(4)) }
        })
        .await
        .unwrap()
        .unwrap()
        .batch;
    assert_eq!(again, replay);
    assert!(!called, "a retry must not run the writer again");

    // A key reused for different content is a client bug that a replay would hide.
    let changed = NewBatch { content_hash: "h-changed", ..batch.clone() };
    assert_rejected(store.find_batch(org, &changed).await, "Idempotency-Key");
    let result = store
        .record_batch(org, &changed, |_| {
            called = true;
            async { Ok::<_, Infallible>(all_duplicates(4)) }
        })
        .await;
    assert_rejected(result, "Idempotency-Key");
    assert!(!called, "a refused batch must not run the writer");

    // A writer that fails leaves no trace, so that the client's retry is treated as new.
    let failed = new_segment("acme/notes/4.parquet", 2, "2027-01-06T08:00:00Z", "2027-01-06T09:00:00Z");
    let failing = batch_for("notes", Some("req-3"), "h-3", &failed);
    let result = store.record_batch(org, &failing, |_| async { Err::<Written, _>("disk full") }).await.unwrap();
    assert_eq!(result.unwrap_err(), "disk full");
    assert_eq!(store.find_batch(org, &failing).await.unwrap(), None, "a failed write records no batch");
    assert_eq!(store.live_segments(org, "notes", None).await.unwrap(), live, "a failed write enters no segment");
    let written = Written { duplicates: 0, segment: Some(failed) };
    let retried = store
        .record_batch(org, &failing, |_| std::future::ready(Ok::<_, Infallible>(written.clone())))
        .await
        .unwrap()
        .unwrap()
        .batch;
    assert_eq!((retried.stored, retried.replayed), (2, false));

    // A batch whose events were all stored before writes no segment but is still acknowledged, so
    // that its own retry is recognised.
    let repeat = NewBatch {
        loop_key: "notes",
        idempotency_key: None,
        content_hash: "h-repeat",
        rows: 3,
        range: Some((at("2027-01-04T08:00:00Z"), at("2027-01-04T09:00:00Z"))),
    };
    let mut seen = None;
    let duplicate = store
        .record_batch(org, &repeat, |overlapping| {
            seen = Some(overlapping);
            async { Ok::<_, Infallible>(all_duplicates(3)) }
        })
        .await
        .unwrap()
        .unwrap()
        .batch;
    assert_eq!(seen, Some(vec![morning]));
    assert_eq!((duplicate.rows, duplicate.stored, duplicate.duplicates), (3, 0, 3));
    assert_eq!((duplicate.min_ts, duplicate.max_ts), (None, None));
    assert_eq!(store.live_segments(org, "notes", None).await.unwrap().len(), 4, "no segment for duplicates");
    assert_eq!(
        store.find_batch(org, &repeat).await.unwrap(),
        Some(BatchRecord { replayed: true, ..duplicate.clone() })
    );

    // An empty batch has no time range, so no segment can overlap it.
    let empty = NewBatch {
        loop_key: "notes",
        idempotency_key: Some("req-empty"),
        content_hash: "h-empty",
        rows: 0,
        range: None,
    };
    let mut seen = None;
    let nothing = store
        .record_batch(org, &empty, |overlapping| {
            seen = Some(overlapping);
            async { Ok::<_, Infallible>(all_duplicates(0)) }
        })
        .await
        .unwrap()
        .unwrap()
        .batch;
    assert_eq!(seen, Some(vec![]));
    assert_eq!((nothing.rows, nothing.stored), (0, 0));

    let recent = store.recent_batches(org, "notes", 3).await.unwrap();
    assert_eq!(recent, vec![nothing, duplicate, retried], "recent batches come newest first");
    assert_eq!(store.recent_batches(org, "notes", 100).await.unwrap().len(), 6);
    assert_eq!(store.recent_batches(other, "notes", 100).await.unwrap().len(), 1);
}

async fn contract_live_segments_overlap_by_time(store: Store) {
    let org = store.ensure_org("acme", "Acme").await.unwrap();
    // Bounds with and without fractions of a second: SQLite compares the stored text, which must
    // still order like the instants it spells.
    let a = new_segment("notes/a.parquet", 1, "2027-01-04T10:00:00Z", "2027-01-04T12:00:00Z");
    let b = new_segment("notes/b.parquet", 1, "2027-01-04T12:00:00.500Z", "2027-01-04T14:00:00Z");
    let c = new_segment("notes/c.parquet", 1, "2027-01-05T00:00:00Z", "2027-01-05T23:59:59.250Z");
    let (_, a) = ingest(&store, org, "notes", "h-a", a).await;
    let (_, b) = ingest(&store, org, "notes", "h-b", b).await;
    let (_, c) = ingest(&store, org, "notes", "h-c", c).await;
    let d = new_segment("search/d.parquet", 1, "2027-01-01T00:00:00Z", "2027-01-31T00:00:00Z");
    ingest(&store, org, "search", "h-d", d).await;

    assert_eq!(store.live_segments(org, "notes", None).await.unwrap(), vec![a, b, c], "oldest first");
    let none: Vec<String> = vec![];
    let gap = live_paths(&store, org, "notes", "2027-01-04T12:00:00.250Z", "2027-01-04T12:00:00.400Z").await;
    assert_eq!(gap, none, "the gap between a and b");
    let edges = live_paths(&store, org, "notes", "2027-01-04T12:00:00Z", "2027-01-04T12:00:00.500Z").await;
    assert_eq!(edges, ["notes/a.parquet", "notes/b.parquet"], "both ends of a range are inclusive");
    let across_midnight = live_paths(&store, org, "notes", "2027-01-04T13:00:00Z", "2027-01-05T00:00:00Z").await;
    assert_eq!(across_midnight, ["notes/b.parquet", "notes/c.parquet"]);
    let last_instant = live_paths(&store, org, "notes", "2027-01-05T23:59:59.250Z", "2027-01-06T00:00:00Z").await;
    assert_eq!(last_instant, ["notes/c.parquet"]);
    let after = live_paths(&store, org, "notes", "2027-01-05T23:59:59.251Z", "2027-01-06T00:00:00Z").await;
    assert_eq!(after, none);
    let before = live_paths(&store, org, "notes", "2026-12-01T00:00:00Z", "2027-01-04T09:59:59.999Z").await;
    assert_eq!(before, none);
    let all = live_paths(&store, org, "notes", "2026-01-01T00:00:00Z", "2028-01-01T00:00:00Z").await;
    assert_eq!(all.len(), 3, "a wide range holds the loop's segments and no other loop's");

    // The writer of a batch sees the same overlaps as a reader.
    let batch = NewBatch {
        loop_key: "notes",
        idempotency_key: None,
        content_hash: "h-gap",
        rows: 1,
        range: Some((at("2027-01-04T12:00:00.250Z"), at("2027-01-04T12:00:00.400Z"))),
    };
    let mut seen = None;
    store
        .record_batch(org, &batch, |overlapping| {
            seen = Some(overlapping);
            async { Ok::<_, Infallible>(all_duplicates(1)) }
        })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(seen, Some(vec![]), "a batch in the gap overlaps no segment");
}

async fn contract_segments_are_materialized_compacted_and_forgotten(store: Store) {
    let org = store.ensure_org("acme", "Acme").await.unwrap();
    let other = store.ensure_org("globex", "Globex").await.unwrap();
    let (_, a) = ingest(
        &store,
        org,
        "notes",
        "h-a",
        new_segment("notes/a.parquet", 10, "2027-01-04T08:00:00Z", "2027-01-04T09:00:00Z"),
    )
    .await;
    let (_, b) = ingest(
        &store,
        org,
        "notes",
        "h-b",
        new_segment("notes/b.parquet", 20, "2027-01-04T10:00:00Z", "2027-01-04T11:00:00Z"),
    )
    .await;
    let (_, c) = ingest(
        &store,
        org,
        "notes",
        "h-c",
        new_segment("notes/c.parquet", 30, "2027-01-05T10:00:00Z", "2027-01-05T11:00:00Z"),
    )
    .await;
    let (_, s) = ingest(
        &store,
        org,
        "search",
        "h-s",
        new_segment("search/s.parquet", 5, "2027-01-03T00:00:00Z", "2027-01-03T01:00:00Z"),
    )
    .await;

    // Materialisation is tracked across organisations, so a restarted server finds all of its work.
    let pending = store.unmaterialized_segments().await.unwrap();
    assert_eq!(pending, vec![a.clone(), b.clone(), c.clone(), s.clone()]);
    store.mark_materialized(&[a.id, s.id]).await.unwrap();
    assert_eq!(store.unmaterialized_segments().await.unwrap(), vec![b.clone(), c.clone()]);
    let live = store.live_segments(org, "notes", None).await.unwrap();
    assert_eq!(live, vec![SegmentRow { materialized: true, ..a.clone() }, b.clone(), c.clone()]);

    let loops = store.list_loops(org).await.unwrap();
    let summary: Vec<(&str, i64, i64)> = loops.iter().map(|l| (l.loop_key.as_str(), l.segments, l.events)).collect();
    assert_eq!(summary, [("notes", 3, 60), ("search", 1, 5)]);
    assert_eq!((loops[0].first_event, loops[0].last_event), (a.min_ts, c.max_ts));
    assert!(store.list_loops(other).await.unwrap().is_empty());

    // Compaction: one segment takes the place of two, in one step.
    let compacted = new_segment("notes/ab.parquet", 30, "2027-01-04T08:00:00Z", "2027-01-04T11:00:00Z");
    store.replace_segments(org, "notes", &[a.id, b.id], &compacted).await.unwrap();
    let live = store.live_segments(org, "notes", None).await.unwrap();
    let paths: Vec<&str> = live.iter().map(|s| s.path.as_str()).collect();
    assert_eq!(paths, ["notes/c.parquet", "notes/ab.parquet"], "retired segments are no longer live");
    let merged = &live[1];
    assert_eq!(
        (merged.rows, merged.bytes, merged.min_ts, merged.max_ts),
        (30, 3000, compacted.min_ts, compacted.max_ts)
    );
    // Compaction may drop copies of an event stored twice under two times, so the merged segment's
    // buckets are recomputed like a new batch's.
    assert!(!merged.materialized, "a compacted segment waits for its buckets to be recomputed");
    assert_eq!(store.unmaterialized_segments().await.unwrap(), vec![c.clone(), merged.clone()]);
    let loops = store.list_loops(org).await.unwrap();
    assert_eq!((loops[0].segments, loops[0].events), (2, 60), "compaction keeps the loop's events");
    assert_eq!((loops[0].first_event, loops[0].last_event), (a.min_ts, c.max_ts));
    let overlapping = live_paths(&store, org, "notes", "2027-01-04T08:30:00Z", "2027-01-04T08:40:00Z").await;
    assert_eq!(overlapping, ["notes/ab.parquet"]);

    // A second compaction of the same segments lost the race: its output would double their events.
    let twice = new_segment("notes/ab-again.parquet", 30, "2027-01-04T08:00:00Z", "2027-01-04T11:00:00Z");
    assert_segment_conflict(store.replace_segments(org, "notes", &[a.id, b.id], &twice).await, a.id);
    // When only a later segment of the list is gone, the earlier ones must not stay retired.
    assert_segment_conflict(store.replace_segments(org, "notes", &[c.id, a.id], &twice).await, a.id);
    // Another organisation's segment cannot be retired through this one.
    assert_segment_conflict(store.replace_segments(other, "notes", &[c.id], &twice).await, c.id);
    assert_eq!(store.live_segments(org, "notes", None).await.unwrap(), live, "failed compactions change nothing");
    assert!(store.list_loops(other).await.unwrap().is_empty());

    // Retired segments wait for their files to be deleted, then leave the manifest.
    assert!(store.retired_segments(at("2000-01-01T00:00:00Z")).await.unwrap().is_empty());
    let mut retired = store.retired_segments(Utc::now() + chrono::Duration::minutes(1)).await.unwrap();
    retired.sort_by_key(|r| r.id);
    assert_eq!(retired, vec![SegmentRow { materialized: true, ..a.clone() }, b.clone()]);
    store.forget_segment(c.id).await.unwrap();
    assert_eq!(store.live_segments(org, "notes", None).await.unwrap(), live, "a live segment is never forgotten");
    store.forget_segment(a.id).await.unwrap();
    let retired = store.retired_segments(Utc::now() + chrono::Duration::minutes(1)).await.unwrap();
    assert_eq!(retired, vec![b]);
}

async fn contract_metric_definitions_are_versioned(store: Store) {
    let org = store.ensure_org("acme", "Acme").await.unwrap();
    let other = store.ensure_org("globex", "Globex").await.unwrap();
    let input = MetricInput {
        key: "acceptance".into(),
        name: "Acceptance rate".into(),
        kind: "acceptance-rate".into(),
        loop_key: "notes".into(),
        variant: "v2".into(),
        unit: "Cardiology".into(),
        window_days: Some(7),
        freshness_hours: Some(24),
        ..Default::default()
    };
    let spec = input.validate().unwrap();
    let before = Utc::now();
    let v1 = store.create_metric(org, &spec).await.unwrap();
    assert_eq!((v1.org_id, v1.key.as_str(), v1.version), (org, "acceptance", 1));
    assert_eq!((v1.name.as_str(), v1.kind), ("Acceptance rate", MetricKind::AcceptanceRate));
    assert_eq!(
        (v1.loop_key.as_deref(), v1.variant.as_deref(), v1.unit.as_deref()),
        (Some("notes"), Some("v2"), Some("Cardiology"))
    );
    assert_eq!((v1.granularity, v1.window_days, v1.freshness_hours), (Granularity::Day, Some(7), 24));
    let skew = (v1.created_at - before).num_seconds().abs();
    assert!(skew < 60, "created_at {} is {skew} s from now", v1.created_at);
    assert_eq!(v1.to_input(), MetricInput { granularity: "day".into(), ..input.clone() }, "the edit form round-trips");
    assert_eq!(store.metric(org, "acceptance").await.unwrap(), Some(v1.clone()));
    assert_eq!(store.metric(other, "acceptance").await.unwrap(), None);

    // The service shows this next to the key field, so it must not arrive as a raw database error.
    assert_rejected(store.create_metric(org, &metric_spec("acceptance", "Another")).await, "key");
    let theirs = store.create_metric(other, &spec).await.expect("keys are unique per organisation only");
    assert_eq!(theirs.version, 1);

    let edit = MetricInput { window_days: Some(14), ..input.clone() }.validate().unwrap();
    assert_conflict(store.update_metric(org, "acceptance", 2, &edit).await, "metric", v1.id, 2, 1);
    let v2 = store.update_metric(org, "acceptance", 1, &edit).await.unwrap();
    assert_eq!((v2.key.as_str(), v2.version, v2.window_days), ("acceptance", 2, Some(14)));
    assert_ne!(v2.id, v1.id, "a version is a row of its own");
    assert_conflict(store.update_metric(org, "acceptance", 1, &edit).await, "metric", v2.id, 1, 2);
    let renamed = MetricInput { key: "acceptance-v2".into(), ..input.clone() }.validate().unwrap();
    assert_rejected(store.update_metric(org, "acceptance", 2, &renamed).await, "key");
    assert_not_found(store.update_metric(org, "missing", 1, &edit).await, "metric", 0);

    // The current version answers by default, and the old one stays readable for its own series.
    assert_eq!(store.metric(org, "acceptance").await.unwrap(), Some(v2.clone()));
    assert_eq!(store.metric_version(org, "acceptance", 1).await.unwrap(), Some(v1));
    assert_eq!(store.metric_version(org, "acceptance", 2).await.unwrap(), Some(v2.clone()));
    assert_eq!(store.metric_version(org, "acceptance", 3).await.unwrap(), None);
    assert_eq!(
        store.metric(other, "acceptance").await.unwrap(),
        Some(theirs.clone()),
        "the other tenant's is unchanged"
    );

    let f1 = store.create_metric(org, &metric_spec("eval.f1", "F1")).await.unwrap();
    assert_eq!((f1.kind, f1.loop_key.clone(), f1.freshness_hours), (MetricKind::EvalScore, None, 72));
    assert_eq!(store.list_metrics(org).await.unwrap(), vec![v2, f1], "current versions only, by key");
    assert_eq!(store.list_metrics(other).await.unwrap(), vec![theirs]);
}

async fn contract_metric_points_are_upserted_in_bucket_order(store: Store) {
    let org = store.ensure_org("acme", "Acme").await.unwrap();
    let other = store.ensure_org("globex", "Globex").await.unwrap();
    let v1 = store.create_metric(org, &metric_spec("eval.f1", "F1")).await.unwrap();
    assert!(store.series(org, "eval.f1", 1).await.unwrap().is_empty());

    let p1 = point("2027-01-01", 0.61, "2027-01-01T18:00:00Z");
    let p2 = point("2027-01-02", 0.64, "2027-01-02T18:00:00.125Z");
    let p3 = point("2027-01-03", 0.70, "2027-01-03T18:00:00Z");
    store.write_points(org, &v1, &[p3.clone(), p1.clone(), p2.clone()], None).await.unwrap();
    let series = store.series(org, "eval.f1", 1).await.unwrap();
    assert_eq!(series, vec![p1.clone(), p2.clone(), p3.clone()], "a series is ordered by bucket, not by write");

    // Recomputing a bucket replaces its point, optional fields included, rather than adding one.
    let p2b = MetricPoint {
        value: 0.66,
        n: None,
        ci_low: None,
        ci_high: None,
        observed_at: at("2027-01-02T23:00:00Z"),
        computed_at: at("2027-02-02T06:00:00Z"),
        ..p2.clone()
    };
    store.write_points(org, &v1, std::slice::from_ref(&p2b), None).await.unwrap();
    let series = store.series(org, "eval.f1", 1).await.unwrap();
    assert_eq!(series, vec![p1.clone(), p2b.clone(), p3.clone()]);

    // A recomputation of a range drops the points it no longer produces, and only in that range.
    let p2c = MetricPoint { value: 0.67, ..p2b.clone() };
    store
        .write_points(org, &v1, std::slice::from_ref(&p2c), Some((date("2027-01-01"), date("2027-01-02"))))
        .await
        .unwrap();
    let series = store.series(org, "eval.f1", 1).await.unwrap();
    assert_eq!(series, vec![p2c.clone(), p3.clone()]);
    store.write_points(org, &v1, &[], Some((date("2027-01-03"), date("2027-01-31")))).await.unwrap();
    assert_eq!(store.series(org, "eval.f1", 1).await.unwrap(), vec![p2c.clone()]);

    // Each version has its own series, so a chart never mixes values computed two ways.
    let v2 = store.update_metric(org, "eval.f1", 1, &metric_spec("eval.f1", "F1, macro")).await.unwrap();
    let q1 = point("2027-01-02", 0.5, "2027-01-02T18:00:00Z");
    store.write_points(org, &v2, std::slice::from_ref(&q1), None).await.unwrap();
    assert_eq!(store.series(org, "eval.f1", 2).await.unwrap(), vec![q1]);
    assert_eq!(store.series(org, "eval.f1", 1).await.unwrap(), vec![p2c]);
    assert!(store.series(other, "eval.f1", 1).await.unwrap().is_empty(), "series are per organisation");
}

async fn contract_all_series_are_each_metric_series(store: Store) {
    let org = store.ensure_org("acme", "Acme").await.unwrap();
    let other = store.ensure_org("globex", "Globex").await.unwrap();
    assert!(store.all_series(org).await.unwrap().is_empty(), "no metrics, no series");

    // Two versions of one metric (only the current one's points belong in its series), a second
    // metric, one without points, and another organisation's metric of the same key.
    let f1_v1 = store.create_metric(org, &metric_spec("eval.f1", "F1")).await.unwrap();
    store
        .write_points(
            org,
            &f1_v1,
            &[point("2027-01-01", 0.61, "2027-01-01T18:00:00Z"), point("2027-01-02", 0.64, "2027-01-02T18:00:00Z")],
            None,
        )
        .await
        .unwrap();
    let f1_v2 = store.update_metric(org, "eval.f1", 1, &metric_spec("eval.f1", "F1, macro")).await.unwrap();
    let f1_points =
        [point("2027-01-03", 0.52, "2027-01-03T18:00:00.125Z"), point("2027-01-02", 0.5, "2027-01-02T18:00:00Z")];
    store.write_points(org, &f1_v2, &f1_points, None).await.unwrap();
    let bleu = store.create_metric(org, &metric_spec("eval.bleu", "BLEU")).await.unwrap();
    store.write_points(org, &bleu, &[point("2027-01-05", 0.3, "2027-01-05T18:00:00Z")], None).await.unwrap();
    let empty = store.create_metric(org, &metric_spec("eval.empty", "Nothing yet")).await.unwrap();
    let theirs = store.create_metric(other, &metric_spec("eval.f1", "F1")).await.unwrap();
    store.write_points(other, &theirs, &[point("2027-01-04", 0.9, "2027-01-04T18:00:00Z")], None).await.unwrap();

    for tenant in [org, other] {
        let mut one_by_one = vec![];
        for metric in store.list_metrics(tenant).await.unwrap() {
            let points = store.series(tenant, &metric.key, metric.version).await.unwrap();
            one_by_one.push((metric, points));
        }
        assert_eq!(store.all_series(tenant).await.unwrap(), one_by_one, "one read answers as a read per metric");
    }
    let all = store.all_series(org).await.unwrap();
    let keys: Vec<(&str, i64, usize)> = all.iter().map(|(m, p)| (m.key.as_str(), m.version, p.len())).collect();
    assert_eq!(keys, [("eval.bleu", 1, 1), ("eval.empty", 1, 0), ("eval.f1", 2, 2)], "current versions, by key");
    assert_eq!(all[1].0, empty, "a metric without points still has its (empty) series");
    let f1: Vec<f64> = all[2].1.iter().map(|p| p.value).collect();
    assert_eq!(f1, [0.5, 0.52], "the current version's points only, oldest bucket first");
}

async fn contract_metrics_feed_linked_key_results_and_goals(store: Store) {
    let org = store.ensure_org("acme", "Acme").await.unwrap();
    let (season, objective, plain) = small_plan(&store, org).await;
    let metric = store.create_metric(org, &metric_spec("eval.f1", "F1")).await.unwrap();

    let result = store.create_key_result(&sys(org), objective.id, &fed_key_result_spec("Unknown", "eval.nope")).await;
    assert_rejected(result, "metric");
    assert_eq!(store.list_key_results(org, season.id).await.unwrap(), vec![plain.clone()], "a bad link stores nothing");

    // Linked before the metric has a point: nothing to copy yet, and the link is stale from the start.
    let kr = store
        .create_key_result(&sys(org), objective.id, &fed_key_result_spec("F1 of drafts", "eval.f1"))
        .await
        .unwrap();
    assert_eq!(kr.metric, Some(MetricFeed { key: "eval.f1".into(), observed_at: None, freshness_hours: 72 }));
    assert_eq!(kr.current, None);

    // Caches of the plan compare plan_version, so a fed value must move it.
    let before = store.plan_version(org).await.unwrap();
    let points =
        [point("2027-01-04", 0.71, "2027-01-04T20:00:00Z"), point("2027-01-05", 0.74, "2027-01-05T21:00:00.5Z")];
    store.write_points(org, &metric, &points, None).await.unwrap();
    assert!(store.plan_version(org).await.unwrap() > before, "write_points must bump the plan version");
    let fed = store.get_key_result(org, kr.id).await.unwrap();
    let feed = |observed_at: &str| {
        Some(MetricFeed { key: "eval.f1".into(), observed_at: Some(at(observed_at)), freshness_hours: 72 })
    };
    assert_eq!((fed.current, fed.metric.clone()), (Some(0.74), feed("2027-01-05T21:00:00.5Z")));
    // Like a check-in, a fed value is not an edit: an edit form opened before it must still save.
    assert_eq!(fed.version, kr.version);

    // A backfilled older bucket does not replace the latest value, even when written last.
    store.write_points(org, &metric, &[point("2027-01-03", 0.5, "2027-01-06T09:00:00Z")], None).await.unwrap();
    let fed = store.get_key_result(org, kr.id).await.unwrap();
    assert_eq!((fed.current, fed.metric.clone()), (Some(0.74), feed("2027-01-05T21:00:00.5Z")));

    // Linking a metric that already has points copies its latest at once.
    let late =
        store.create_key_result(&sys(org), objective.id, &fed_key_result_spec("F1, again", "eval.f1")).await.unwrap();
    assert_eq!((late.current, late.metric.clone()), (Some(0.74), feed("2027-01-05T21:00:00.5Z")));
    let squad = store.create_squad(&sys(org), &squad_spec("Drafts")).await.unwrap();
    assert_rejected(
        store.create_goal(&sys(org), squad.id, &fed_goal_spec(&season, &plain, "eval.nope")).await,
        "metric",
    );
    let goal = store.create_goal(&sys(org), squad.id, &fed_goal_spec(&season, &plain, "eval.f1")).await.unwrap();
    assert_eq!((goal.current, goal.metric.clone()), (Some(0.74), feed("2027-01-05T21:00:00.5Z")));
    assert_eq!(store.get_goal(org, goal.id).await.unwrap(), goal);

    // A newer point feeds every linked subject, and nothing else.
    store.write_points(org, &metric, &[point("2027-01-06", 0.77, "2027-01-06T22:00:00Z")], None).await.unwrap();
    let fed = store.get_key_result(org, kr.id).await.unwrap();
    assert_eq!((fed.current, fed.metric.clone()), (Some(0.77), feed("2027-01-06T22:00:00Z")));
    let goal_now = store.get_goal(org, goal.id).await.unwrap();
    assert_eq!((goal_now.current, goal_now.metric.clone()), (Some(0.77), feed("2027-01-06T22:00:00Z")));
    assert_eq!(goal_now.version, goal.version);
    assert_eq!(store.get_key_result(org, plain.id).await.unwrap(), plain, "an unlinked key result is not fed");

    // Unlinking keeps the last value, which check-ins then take over.
    let unlink = KeyResultInput { metric: String::new(), ..fed.to_input() }.validate().unwrap();
    let unlinked = store.update_key_result(&sys(org), kr.id, fed.version, &unlink).await.unwrap();
    assert_eq!((unlinked.current, unlinked.metric.clone()), (Some(0.77), None));
    store.write_points(org, &metric, &[point("2027-01-07", 0.8, "2027-01-07T22:00:00Z")], None).await.unwrap();
    assert_eq!(store.get_key_result(org, kr.id).await.unwrap(), unlinked, "an unlinked key result is not fed");
    assert_eq!(store.get_goal(org, goal.id).await.unwrap().current, Some(0.8));

    // Relinking checks the key, and a good key feeds the latest value straight away.
    let bad = KeyResultInput { metric: "eval.nope".into(), ..unlinked.to_input() }.validate().unwrap();
    assert_rejected(store.update_key_result(&sys(org), kr.id, unlinked.version, &bad).await, "metric");
    assert_eq!(store.get_key_result(org, kr.id).await.unwrap(), unlinked, "a refused edit changes nothing");
    let relink = KeyResultInput { metric: "eval.f1".into(), ..unlinked.to_input() }.validate().unwrap();
    let relinked = store.update_key_result(&sys(org), kr.id, unlinked.version, &relink).await.unwrap();
    assert_eq!((relinked.current, relinked.metric.clone()), (Some(0.8), feed("2027-01-07T22:00:00Z")));
    let bad =
        SquadGoalInput { metric: "eval.nope".into(), ..goal_now.to_input() }.validate(Some(&season.dates())).unwrap();
    assert_rejected(store.update_goal(&sys(org), goal.id, goal_now.version, &bad).await, "metric");

    // Another organisation's key result linked to its own metric of the same key is not fed.
    let other = store.ensure_org("globex", "Globex").await.unwrap();
    let (_, their_objective, _) = small_plan(&store, other).await;
    store.create_metric(other, &metric_spec("eval.f1", "F1")).await.unwrap();
    let theirs =
        store.create_key_result(&sys(other), their_objective.id, &fed_key_result_spec("F1", "eval.f1")).await.unwrap();
    store.write_points(org, &metric, &[point("2027-01-08", 0.9, "2027-01-08T22:00:00Z")], None).await.unwrap();
    assert_eq!(store.get_key_result(other, theirs.id).await.unwrap(), theirs);
    assert_eq!(store.get_key_result(org, kr.id).await.unwrap().current, Some(0.9));
}

async fn contract_experiments_and_drift_alerts(store: Store) {
    let org = store.ensure_org("acme", "Acme").await.unwrap();
    let other = store.ensure_org("globex", "Globex").await.unwrap();
    let input = ExperimentInput {
        key: "shorter-drafts".into(),
        name: "Shorter drafts".into(),
        loop_key: "notes".into(),
        control: "v1".into(),
        treatment: "v2".into(),
        starts_on: "2027-01-04".into(),
        ends_on: "2027-01-31".into(),
        expected_share: Some(0.3),
        control_model: None,
        treatment_model: None,
    };
    let spec = input.validate().unwrap();
    let before = Utc::now();
    let shorter = store.create_experiment(org, &spec).await.unwrap();
    assert_eq!(
        (shorter.org_id, shorter.key.as_str(), shorter.name.as_str()),
        (org, "shorter-drafts", "Shorter drafts")
    );
    assert_eq!(
        (shorter.loop_key.as_str(), shorter.control.as_str(), shorter.treatment.as_str()),
        ("notes", "v1", "v2")
    );
    assert_eq!(
        (shorter.starts_on, shorter.ends_on, shorter.expected_share),
        (date("2027-01-04"), date("2027-01-31"), 0.3)
    );
    assert!((shorter.created_at - before).num_seconds().abs() < 60);
    assert_eq!(store.experiment(org, "shorter-drafts").await.unwrap(), Some(shorter.clone()));
    assert_eq!(store.experiment(org, "missing").await.unwrap(), None);
    assert_eq!(store.experiment(other, "shorter-drafts").await.unwrap(), None);

    let again = ExperimentInput { name: "Shorter drafts, again".into(), ..input.clone() }.validate().unwrap();
    let errors = assert_rejected(store.create_experiment(org, &again).await, "key");
    assert!(errors.get("key").unwrap()[0].contains("shorter-drafts"), "{errors}");
    let inline = ExperimentInput {
        key: "inline".into(),
        starts_on: "2027-02-01".into(),
        ends_on: "2027-02-28".into(),
        expected_share: None,
        ..input.clone()
    };
    let inline = store.create_experiment(org, &inline.validate().unwrap()).await.unwrap();
    assert_eq!(inline.expected_share, 0.5);
    // The arms' models are kept, so the gate can find the experiment of exactly two models.
    let beside =
        ExperimentInput { key: "a-beside".into(), control_model: Some(7), treatment_model: Some(9), ..input.clone() };
    let beside = store.create_experiment(org, &beside.validate().unwrap()).await.unwrap();
    assert_eq!((beside.control_model_id, beside.treatment_model_id), (Some(7), Some(9)));
    assert!(beside.served(Some(7), 9) && !shorter.served(Some(7), 9));
    assert_eq!(store.experiment(org, "a-beside").await.unwrap().as_ref(), Some(&beside));
    let listed = store.list_experiments(org).await.unwrap();
    assert_eq!(listed, vec![inline, beside, shorter.clone()], "latest start first, then by key");
    assert!(store.list_experiments(other).await.unwrap().is_empty());
    store.create_experiment(other, &spec).await.expect("experiment keys are unique per organisation only");

    // Stopping: the first stop is kept, and another organisation's experiment is not found.
    assert_eq!(shorter.stopped_at, None);
    let t1 = "2027-01-10T12:00:00Z".parse::<DateTime<Utc>>().unwrap();
    let stopped = store.stop_experiment(org, "shorter-drafts", t1).await.unwrap().expect("the experiment");
    assert_eq!(stopped, Experiment { stopped_at: Some(t1), ..shorter.clone() });
    let later = t1 + chrono::Duration::hours(1);
    assert_eq!(store.stop_experiment(org, "shorter-drafts", later).await.unwrap(), None, "stopped before");
    assert_eq!(store.experiment(org, "shorter-drafts").await.unwrap(), Some(stopped));
    assert_eq!(store.stop_experiment(org, "missing", t1).await.unwrap(), None);
    assert_eq!(store.experiment(other, "shorter-drafts").await.unwrap().and_then(|e| e.stopped_at), None);

    // Alerts are listed by when they were raised, which is not the order they were stored in.
    let older = store.record_drift_alert(org, &drift_alert("latency_ms", 0.12, "2027-01-21T06:00:00Z")).await.unwrap();
    assert!(older.id > 0);
    assert_eq!(older, DriftAlert { id: older.id, ..drift_alert("latency_ms", 0.12, "2027-01-21T06:00:00Z") });
    let newest = store.record_drift_alert(org, &drift_alert("chars", 0.31, "2027-01-22T06:00:00.250Z")).await.unwrap();
    let middle = store.record_drift_alert(org, &drift_alert("variant", 0.2, "2027-01-21T18:00:00Z")).await.unwrap();
    assert_eq!(newest.band, "major");
    let listed = store.list_drift_alerts(org, 10).await.unwrap();
    assert_eq!(listed, vec![newest.clone(), middle.clone(), older], "newest first");
    assert_eq!(store.list_drift_alerts(org, 2).await.unwrap(), vec![newest, middle]);
    assert!(store.list_drift_alerts(other, 10).await.unwrap().is_empty());
}

async fn contract_concurrent_identical_batches(store: Store) {
    // More requests than either pool has connections (8 for SQLite, 16 for PostgreSQL): a retry storm
    // is exactly when idempotency matters, and 24 concurrent plan writes pass, so recording a batch may
    // not need more of the pool than a plan write does: the one connection of its transaction.
    const WRITERS: usize = 24;
    let org = store.ensure_org("acme", "Acme").await.unwrap();
    let writes = Arc::new(AtomicUsize::new(0));
    // The barrier releases every retry at once, as a client that times out and retries eagerly would.
    let start = Arc::new(tokio::sync::Barrier::new(WRITERS));
    let writers: Vec<_> = (0..WRITERS)
        .map(|_| {
            let (store, start, writes) = (store.clone(), start.clone(), writes.clone());
            tokio::spawn(async move {
                let segment = new_segment("notes/1.parquet", 4, "2027-01-04T08:00:00Z", "2027-01-04T09:00:00Z");
                let batch = batch_for("notes", Some("req-1"), "h-1", &segment);
                start.wait().await;
                let written = Written { duplicates: 0, segment: Some(segment.clone()) };
                store
                    .record_batch(org, &batch, |_| {
                        writes.fetch_add(1, Ordering::SeqCst);
                        std::future::ready(Ok::<_, Infallible>(written.clone()))
                    })
                    .await
            })
        })
        .collect();
    let mut records = vec![];
    for writer in writers {
        match writer.await.expect("writer task finishes") {
            Ok(Ok(record)) => records.push(record.batch),
            Ok(Err(never)) => match never {},
            Err(e) => panic!("every retry of one batch must be answered, got {e:?}"),
        }
    }
    assert_eq!(writes.load(Ordering::SeqCst), 1, "exactly one request writes the batch");
    let first: Vec<&BatchRecord> = records.iter().filter(|r| !r.replayed).collect();
    assert_eq!(first.len(), 1, "exactly one answer is the original: {records:?}");
    assert!(records.iter().all(|r| BatchRecord { replayed: false, ..r.clone() } == *first[0]), "{records:?}");
    assert_eq!(store.live_segments(org, "notes", None).await.unwrap().len(), 1);
    assert_eq!(store.recent_batches(org, "notes", 100).await.unwrap().len(), 1);
}

/// A recomputation that keeps what the store handed it and answers the points it was given.
struct Probe {
    plan: Recompute,
    writes: Vec<PointsWrite>,
    fail: bool,
    pending: Vec<SegmentRow>,
    rows: Option<Vec<SegmentRow>>,
}

#[derive(Debug)]
enum ProbeError {
    Computing,
    Store(StoreError),
}

impl From<StoreError> for ProbeError {
    fn from(e: StoreError) -> Self {
        ProbeError::Store(e)
    }
}

impl Recomputation for Probe {
    type Error = ProbeError;

    fn plan(&mut self, pending: &[SegmentRow]) -> Recompute {
        self.pending = pending.to_vec();
        self.plan.clone()
    }

    async fn compute(&mut self, rows: Vec<SegmentRow>) -> Result<Vec<PointsWrite>, ProbeError> {
        self.rows = Some(rows);
        if self.fail { Err(ProbeError::Computing) } else { Ok(std::mem::take(&mut self.writes)) }
    }
}

fn probe(plan: Recompute, writes: Vec<PointsWrite>) -> Probe {
    Probe { plan, writes, fail: false, pending: vec![], rows: None }
}

async fn contract_a_batch_recomputes_its_loop_once_committed(store: Store) {
    let org = store.ensure_org("acme", "Acme").await.unwrap();
    let other = store.ensure_org("globex", "Globex").await.unwrap();
    let metric = store.create_metric(org, &metric_spec("notes.score", "Notes score")).await.unwrap();
    // Pending segments: an earlier one of the same loop (a failed recomputation left it), one of
    // another loop and one of another organisation's loop of the same name.
    let (_, earlier) = ingest(
        &store,
        org,
        "notes",
        "h-earlier",
        new_segment("acme/notes/1.parquet", 5, "2027-01-01T08:00:00Z", "2027-01-01T09:00:00Z"),
    )
    .await;
    let (_, search) = ingest(
        &store,
        org,
        "search",
        "h-search",
        new_segment("acme/search/1.parquet", 5, "2027-01-02T08:00:00Z", "2027-01-02T09:00:00Z"),
    )
    .await;
    let (_, theirs) = ingest(
        &store,
        other,
        "notes",
        "h-theirs",
        new_segment("globex/notes/1.parquet", 5, "2027-01-02T08:00:00Z", "2027-01-02T09:00:00Z"),
    )
    .await;

    let segment = new_segment("acme/notes/2.parquet", 4, "2027-01-02T10:00:00Z", "2027-01-02T11:00:00Z");
    let batch = batch_for("notes", None, "h-new", &segment);
    let written = Written { duplicates: 0, segment: Some(segment) };
    let points = vec![point("2027-01-02", 0.8, "2027-01-02T11:00:00Z")];
    let range = (at("2027-01-02T00:00:00Z"), at("2027-01-03T00:00:00Z"));
    let mut recompute = probe(
        Recompute::Events(Some(range)),
        vec![PointsWrite {
            metric: metric.clone(),
            points: points.clone(),
            replace: None,
            problem: ProblemWrite::Unchanged,
        }],
    );
    let recorded = store
        .record_and_recompute(org, &batch, |_| std::future::ready(Ok::<_, Infallible>(written.clone())), &mut recompute)
        .await
        .unwrap()
        .unwrap();
    let new = recorded.segment.clone().expect("the batch wrote a segment");
    assert!(matches!(recorded.recomputed, Some(Ok(()))), "{:?}", recorded.recomputed);
    assert!(new.materialized, "the answered row says its buckets are computed");
    assert_eq!(
        recompute.pending.iter().map(|s| s.id).collect::<Vec<_>>(),
        vec![earlier.id, new.id],
        "the plan sees its own loop's pending segments, the new one among them, and no one else's"
    );
    let in_range: Vec<i64> = recompute.rows.expect("compute ran").iter().map(|s| s.id).collect();
    assert_eq!(in_range, vec![new.id], "compute gets the live segments overlapping the planned range");
    assert_eq!(store.series(org, "notes.score", metric.version).await.unwrap(), points);
    let pending: Vec<i64> = store.unmaterialized_segments().await.unwrap().iter().map(|s| s.id).collect();
    assert_eq!(pending, vec![search.id, theirs.id], "the loop's segments are done; the others still wait");
    assert_eq!(store.find_batch(org, &batch).await.unwrap().map(|b| b.stored), Some(4));

    // A recomputation that fails is undone alone: the batch and its segment stay, pending.
    let segment = new_segment("acme/notes/3.parquet", 2, "2027-01-03T10:00:00Z", "2027-01-03T11:00:00Z");
    let failing = batch_for("notes", None, "h-failing", &segment);
    let written = Written { duplicates: 0, segment: Some(segment) };
    let mut recompute = Probe { fail: true, ..probe(Recompute::Events(None), vec![]) };
    let recorded = store
        .record_and_recompute(
            org,
            &failing,
            |_| std::future::ready(Ok::<_, Infallible>(written.clone())),
            &mut recompute,
        )
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(recorded.recomputed, Some(Err(ProbeError::Computing))), "{:?}", recorded.recomputed);
    let kept = recorded.segment.expect("the segment is entered all the same");
    assert!(!kept.materialized);
    assert!(store.find_batch(org, &failing).await.unwrap().is_some(), "the batch is recorded");
    let pending: Vec<i64> = store.unmaterialized_segments().await.unwrap().iter().map(|s| s.id).collect();
    assert_eq!(pending, vec![search.id, theirs.id, kept.id]);

    // A write the store refuses (points of a metric that does not exist) is undone the same way,
    // the points written before it in the same recomputation included.
    let segment = new_segment("acme/notes/4.parquet", 2, "2027-01-04T10:00:00Z", "2027-01-04T11:00:00Z");
    let refused = batch_for("notes", None, "h-refused", &segment);
    let written = Written { duplicates: 0, segment: Some(segment) };
    let unknown = MetricDefinition { key: "notes.unknown".into(), ..metric.clone() };
    let more = vec![point("2027-01-04", 0.1, "2027-01-04T11:00:00Z")];
    let mut recompute = probe(
        Recompute::Events(None),
        vec![
            PointsWrite { metric: metric.clone(), points: more, replace: None, problem: ProblemWrite::Unchanged },
            PointsWrite { metric: unknown, points: points.clone(), replace: None, problem: ProblemWrite::Unchanged },
        ],
    );
    let recorded = store
        .record_and_recompute(
            org,
            &refused,
            |_| std::future::ready(Ok::<_, Infallible>(written.clone())),
            &mut recompute,
        )
        .await
        .unwrap()
        .unwrap();
    assert!(
        matches!(recorded.recomputed, Some(Err(ProbeError::Store(StoreError::Rejected(_))))),
        "{:?}",
        recorded.recomputed
    );
    assert_eq!(store.series(org, "notes.score", metric.version).await.unwrap(), points, "nothing of it stays");
    assert!(store.find_batch(org, &refused).await.unwrap().is_some());

    // Nothing to compute (no metric on the loop): the pending segments are marked done without a read.
    let segment = new_segment("acme/search/2.parquet", 2, "2027-01-05T10:00:00Z", "2027-01-05T11:00:00Z");
    let quiet = batch_for("search", None, "h-quiet", &segment);
    let written = Written { duplicates: 0, segment: Some(segment) };
    let mut recompute = probe(Recompute::Nothing, vec![]);
    let recorded = store
        .record_and_recompute(org, &quiet, |_| std::future::ready(Ok::<_, Infallible>(written.clone())), &mut recompute)
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(recorded.recomputed, Some(Ok(()))));
    assert!(recompute.rows.is_none(), "compute does not run");
    let pending: Vec<i64> = store.unmaterialized_segments().await.unwrap().iter().map(|s| s.id).collect();
    assert!(!pending.contains(&search.id), "the loop's earlier pending segment is done too: {pending:?}");
}

/// Limits that admit every sign-in attempt of the test below.
fn open_door() -> LoginLimits {
    let long_ago = at("2000-01-01T00:00:00Z");
    LoginLimits { failures_since: long_ago, known_since: long_ago, per_account: 1000, per_address: 1000 }
}

async fn contract_a_batch_is_written_outside_the_organisations_lock(store: Store) {
    let org = store.ensure_org("acme", "Acme").await.unwrap();
    let metric = store.create_metric(org, &metric_spec("notes.score", "Notes score")).await.unwrap();
    let segment = new_segment("acme/notes/slow.parquet", 4, "2027-01-04T08:00:00Z", "2027-01-04T09:00:00Z");
    let batch = batch_for("notes", Some("slow"), "h-slow", &segment);
    let written = Written { duplicates: 0, segment: Some(segment) };
    // The writer stands for a batch of millions of events: it runs until the test lets it end.
    let (started, writing) = tokio::sync::oneshot::channel::<()>();
    let (release, released) = tokio::sync::oneshot::channel::<()>();
    let writer = {
        let store = store.clone();
        tokio::spawn(async move {
            let (mut started, mut released) = (Some(started), Some(released));
            let batch = batch.clone();
            store
                .record_batch(org, &batch, move |_| {
                    let (started, released, written) = (started.take(), released.take(), written.clone());
                    async move {
                        if let (Some(started), Some(released)) = (started, released) {
                            let _ = started.send(());
                            let _ = tokio::time::timeout(std::time::Duration::from_secs(60), released).await;
                        }
                        Ok::<_, Infallible>(written)
                    }
                })
                .await
        })
    };
    writing.await.expect("the writer starts");
    // While it writes, the organisation's other writes go through: a sign-in attempt (on SQLite, any
    // write waits for the database's one write lock) and a write under the organisation's lock.
    let bound = std::time::Duration::from_secs(5);
    let signed = tokio::time::timeout(bound, store.admit_login_attempt("owner@acme.test", "192.0.2.1", open_door()))
        .await
        .expect("a sign-in attempt does not wait for a batch being written");
    assert!(signed.unwrap().is_some());
    let points = vec![point("2027-01-04", 0.5, "2027-01-04T09:00:00Z")];
    tokio::time::timeout(bound, store.write_points(org, &metric, &points, None))
        .await
        .expect("a write under the organisation's lock does not wait for a batch being written")
        .unwrap();
    release.send(()).expect("the writer still waits");
    let recorded = writer.await.unwrap().unwrap().unwrap();
    assert_eq!((recorded.batch.stored, recorded.batch.replayed), (4, false));
    assert_eq!(store.live_segments(org, "notes", None).await.unwrap().len(), 1);
}

async fn contract_a_batch_written_beside_an_overlapping_one_is_deduplicated_against_it(store: Store) {
    let org = store.ensure_org("acme", "Acme").await.unwrap();
    let first = new_segment("acme/notes/first.parquet", 3, "2027-01-04T08:00:00Z", "2027-01-04T09:00:00Z");
    let batch = batch_for("notes", None, "h-first", &first);
    let (started, writing) = tokio::sync::oneshot::channel::<()>();
    let (release, released) = tokio::sync::oneshot::channel::<()>();
    let calls = Arc::new(std::sync::Mutex::new(Vec::<Vec<String>>::new()));
    let writer = {
        let (store, calls) = (store.clone(), calls.clone());
        tokio::spawn(async move {
            let (mut started, mut released) = (Some(started), Some(released));
            store
                .record_batch(org, &batch, move |overlapping: Vec<SegmentRow>| {
                    let mut calls = calls.lock().unwrap();
                    calls.push(overlapping.iter().map(|s| s.path.clone()).collect());
                    // Each attempt writes a file of its own; the second finds one event already stored.
                    let attempt = calls.len();
                    let written = Written {
                        duplicates: (attempt - 1) as i64,
                        segment: Some(NewSegment {
                            path: format!("acme/notes/first-{attempt}.parquet"),
                            rows: 3 - (attempt as i64 - 1),
                            ..first.clone()
                        }),
                    };
                    let (started, released) = (started.take(), released.take());
                    async move {
                        if let (Some(started), Some(released)) = (started, released) {
                            let _ = started.send(());
                            let _ = tokio::time::timeout(std::time::Duration::from_secs(60), released).await;
                        }
                        Ok::<_, Infallible>(written)
                    }
                })
                .await
        })
    };
    writing.await.expect("the writer starts");
    // Another batch of the same hour commits while the first is being written.
    let (_, beside) = ingest(
        &store,
        org,
        "notes",
        "h-beside",
        new_segment("acme/notes/beside.parquet", 2, "2027-01-04T08:30:00Z", "2027-01-04T08:40:00Z"),
    )
    .await;
    release.send(()).unwrap();
    let recorded = writer.await.unwrap().unwrap().unwrap();
    let calls = calls.lock().unwrap().clone();
    assert_eq!(
        calls,
        vec![vec![], vec![beside.path.clone()]],
        "the writer runs again once a segment it did not deduplicate against appeared"
    );
    let entered = recorded.segment.expect("the batch wrote a segment");
    assert_eq!(entered.path, "acme/notes/first-2.parquet", "the manifest names the second attempt's file");
    assert_eq!((recorded.batch.stored, recorded.batch.duplicates), (2, 1));
    let live: Vec<String> =
        store.live_segments(org, "notes", None).await.unwrap().into_iter().map(|s| s.path).collect();
    assert_eq!(live, vec![beside.path, entered.path]);
}

/// A recomputation whose first computation is overtaken by a batch of its loop committed meanwhile.
struct Overtaken {
    store: Store,
    org: OrgId,
    metric: MetricDefinition,
    computed: Vec<Vec<i64>>,
}

impl Recomputation for Overtaken {
    type Error = StoreError;

    fn plan(&mut self, _: &[SegmentRow]) -> Recompute {
        Recompute::Events(None)
    }

    async fn compute(&mut self, rows: Vec<SegmentRow>) -> Result<Vec<PointsWrite>, StoreError> {
        self.computed.push(rows.iter().map(|s| s.id).collect());
        if self.computed.len() == 1 {
            ingest(
                &self.store,
                self.org,
                "notes",
                "h-meanwhile",
                new_segment("acme/notes/meanwhile.parquet", 2, "2027-01-05T08:00:00Z", "2027-01-05T09:00:00Z"),
            )
            .await;
        }
        // The value is the number of segments read, so the series shows which computation was kept.
        let value = rows.len() as f64;
        Ok(vec![PointsWrite {
            metric: self.metric.clone(),
            points: vec![point("2027-01-04", value, "2027-01-04T09:00:00Z")],
            replace: None,
            problem: ProblemWrite::Unchanged,
        }])
    }
}

async fn contract_points_computed_from_segments_since_changed_are_computed_again(store: Store) {
    let org = store.ensure_org("acme", "Acme").await.unwrap();
    let metric = store.create_metric(org, &metric_spec("notes.score", "Notes score")).await.unwrap();
    let segment = new_segment("acme/notes/1.parquet", 4, "2027-01-04T08:00:00Z", "2027-01-04T09:00:00Z");
    let batch = batch_for("notes", None, "h-1", &segment);
    let written = Written { duplicates: 0, segment: Some(segment) };
    let mut recompute = Overtaken { store: store.clone(), org, metric: metric.clone(), computed: vec![] };
    let recorded = store
        .record_and_recompute(org, &batch, |_| std::future::ready(Ok::<_, Infallible>(written.clone())), &mut recompute)
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(recorded.recomputed, Some(Ok(()))), "{:?}", recorded.recomputed);
    assert_eq!(recompute.computed.len(), 2, "the first computation was stale when it was to be written");
    assert_eq!(recompute.computed[1].len(), 2, "the second read the segment committed meanwhile too");
    let series = store.series(org, "notes.score", metric.version).await.unwrap();
    assert_eq!(series.iter().map(|p| p.value).collect::<Vec<_>>(), vec![2.0], "only the fresh points are kept");
    assert!(store.unmaterialized_segments().await.unwrap().is_empty(), "both segments are materialised");

    // The upkeep's path has the same check: points read from segments that changed are refused.
    let live = store.live_segments(org, "notes", None).await.unwrap();
    let stale = SegmentsRead { loop_key: "notes", range: None, ids: vec![live[0].id] };
    let points = vec![point("2027-01-04", 9.0, "2027-01-04T09:00:00Z")];
    let writes = vec![PointsWrite { metric: metric.clone(), points, replace: None, problem: ProblemWrite::Unchanged }];
    assert!(!store.apply_points(org, Some(&stale), &[], &writes).await.unwrap(), "stale points are not written");
    assert_eq!(store.series(org, "notes.score", metric.version).await.unwrap(), series);
    let fresh = SegmentsRead { ids: live.iter().map(|s| s.id).collect(), ..stale };
    assert!(store.apply_points(org, Some(&fresh), &[], &writes).await.unwrap());
    assert_eq!(store.series(org, "notes.score", metric.version).await.unwrap()[0].value, 9.0);
}

async fn contract_a_computation_notes_why_a_bucket_has_no_point(store: Store) {
    let org = store.ensure_org("acme", "Acme").await.unwrap();
    let metric = store.create_metric(org, &metric_spec("customer-ltv", "Customer LTV")).await.unwrap();
    assert_eq!(store.metric_problem(org, "customer-ltv", 1).await.unwrap(), None);
    let write = |points: Vec<MetricPoint>, problem: ProblemWrite| PointsWrite {
        metric: metric.clone(),
        points,
        replace: None,
        problem,
    };
    // PostgreSQL keeps microseconds: a time read back equals one written only at that precision.
    let noted = at("2027-01-12T08:00:00.123456Z");
    let failed = ProblemWrite::Record {
        bucket: "2027-01-11".parse().unwrap(),
        message: "the BG/NBD fit did not converge after 8000 iterations".into(),
        at: noted,
    };
    let earlier = vec![point("2027-01-04", 410.0, "2027-01-10T09:00:00Z")];
    assert!(store.apply_points(org, None, &[], &[write(earlier, failed)]).await.unwrap());
    let problem = store.metric_problem(org, "customer-ltv", 1).await.unwrap().expect("a note");
    assert_eq!((problem.bucket, problem.recorded_at), ("2027-01-11".parse().unwrap(), noted));
    assert!(problem.message.contains("did not converge"));
    assert_eq!(store.series(org, "customer-ltv", 1).await.unwrap().len(), 1, "the earlier week's point stays");

    // Unchanged leaves the note; a later success clears it; other versions never saw it.
    assert!(store.apply_points(org, None, &[], &[write(vec![], ProblemWrite::Unchanged)]).await.unwrap());
    assert!(store.metric_problem(org, "customer-ltv", 1).await.unwrap().is_some());
    assert_eq!(store.metric_problem(org, "customer-ltv", 2).await.unwrap(), None);
    let later = vec![point("2027-01-11", 420.0, "2027-01-12T09:00:00Z")];
    assert!(store.apply_points(org, None, &[], &[write(later, ProblemWrite::Clear)]).await.unwrap());
    assert_eq!(store.metric_problem(org, "customer-ltv", 1).await.unwrap(), None);
}
