//! The storage contract: one set of test bodies, run against SQLite and against PostgreSQL.
//!
//! Each contract is an `async fn contract_xxx(store: Store)` that gets a freshly migrated, empty
//! database. The `contract_tests!` macro turns every contract into an `xxx_sqlite` and an
//! `xxx_postgres` test, so a behaviour that holds on one backend but not the other shows up as exactly
//! one failing test.
//!
//! SQLite always runs. PostgreSQL runs when `SLOPE_TEST_POSTGRES_URL` names an admin connection (for
//! example `postgres://postgres@127.0.0.1:5432/postgres`): each test creates its own database there and
//! drops it afterwards. Without that variable the PostgreSQL half is skipped with a notice, unless
//! `SLOPE_REQUIRE_POSTGRES=1` says that skipping is not allowed (as in CI).

use std::convert::Infallible;
use std::fmt::Debug;
use std::future::Future;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::Once;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chrono::{DateTime, NaiveDate, Utc};
use sqlx::postgres::PgPoolOptions;

use serde_json::json;
use slope_domain::*;
use slope_store::{
    AliasRecord, BatchRecord, Heartbeat, ImpressionRecord, JobMetric, JobRecord, MAX_JOB_ATTEMPTS, ModelRecord,
    NewBatch, NewDataset, NewImpression, NewJob, NewModel, NewSegment, PlanOp, PlanRef, PromotionRecord, SegmentRow,
    Store, StoreError, Written,
};

// ---- harness -------------------------------------------------------------------------------------

const POSTGRES_URL_VAR: &str = "SLOPE_TEST_POSTGRES_URL";
const REQUIRE_POSTGRES_VAR: &str = "SLOPE_REQUIRE_POSTGRES";

/// Generates a SQLite and a PostgreSQL test for each contract. Test names are spelled out rather than
/// derived, so that the name a failing run prints can be found in this file with a plain search. An
/// optional `[...]` passes arguments to `#[tokio::test]`, such as a multi-threaded runtime.
macro_rules! contract_tests {
    ($($contract:ident => $sqlite:ident, $postgres:ident $([$($runtime:tt)*])?;)*) => {$(
        #[tokio::test $(($($runtime)*))?]
        async fn $sqlite() {
            with_sqlite($contract).await;
        }

        #[tokio::test $(($($runtime)*))?]
        async fn $postgres() {
            with_postgres($contract).await;
        }
    )*};
}

contract_tests! {
    contract_orgs_are_idempotent_and_isolated =>
        orgs_are_idempotent_and_isolated_sqlite, orgs_are_idempotent_and_isolated_postgres;
    contract_seasons_round_trip =>
        seasons_round_trip_sqlite, seasons_round_trip_postgres;
    contract_rejected_season_stores_nothing =>
        rejected_season_stores_nothing_sqlite, rejected_season_stores_nothing_postgres;
    contract_season_updates_are_versioned =>
        season_updates_are_versioned_sqlite, season_updates_are_versioned_postgres;
    contract_one_active_season =>
        one_active_season_sqlite, one_active_season_postgres;
    contract_objectives_and_key_results =>
        objectives_and_key_results_sqlite, objectives_and_key_results_postgres;
    contract_squads_round_trip =>
        squads_round_trip_sqlite, squads_round_trip_postgres;
    contract_squad_names_are_unique_per_org =>
        squad_names_are_unique_per_org_sqlite, squad_names_are_unique_per_org_postgres;
    contract_squad_goals_round_trip =>
        squad_goals_round_trip_sqlite, squad_goals_round_trip_postgres;
    contract_check_ins_update_their_subject =>
        check_ins_update_their_subject_sqlite, check_ins_update_their_subject_postgres;
    contract_plan_as_of_shows_the_past =>
        plan_as_of_shows_the_past_sqlite, plan_as_of_shows_the_past_postgres;
    contract_concurrent_overlapping_seasons =>
        concurrent_overlapping_seasons_sqlite, concurrent_overlapping_seasons_postgres
        [flavor = "multi_thread", worker_threads = 4];
    contract_concurrent_activations =>
        concurrent_activations_sqlite, concurrent_activations_postgres
        [flavor = "multi_thread", worker_threads = 4];
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
    contract_metrics_feed_linked_key_results_and_goals =>
        metrics_feed_linked_key_results_and_goals_sqlite, metrics_feed_linked_key_results_and_goals_postgres;
    contract_experiments_and_drift_alerts =>
        experiments_and_drift_alerts_sqlite, experiments_and_drift_alerts_postgres;
    contract_concurrent_identical_batches =>
        concurrent_identical_batches_sqlite, concurrent_identical_batches_postgres
        [flavor = "multi_thread", worker_threads = 4];
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
    contract_plan_writes_are_audited =>
        plan_writes_are_audited_sqlite, plan_writes_are_audited_postgres;
    contract_keys_are_chosen_and_unique =>
        keys_are_chosen_and_unique_sqlite, keys_are_chosen_and_unique_postgres;
    contract_a_plan_applies_whole_or_not_at_all =>
        a_plan_applies_whole_or_not_at_all_sqlite, a_plan_applies_whole_or_not_at_all_postgres;
    contract_members_sessions_and_tokens =>
        members_sessions_and_tokens_sqlite, members_sessions_and_tokens_postgres;
    contract_units_form_a_tree =>
        units_form_a_tree_sqlite, units_form_a_tree_postgres;
    contract_thesis_signals_are_raised_once_and_resolved_once =>
        thesis_signals_are_raised_once_and_resolved_once_sqlite,
        thesis_signals_are_raised_once_and_resolved_once_postgres;
}

static UNIQUE: AtomicU64 = AtomicU64::new(0);

/// A name no other test of any run shares: the process id tells concurrent runs apart, the counter
/// tells tests of one run apart, and the clock guards against a reused process id.
fn unique_suffix() -> String {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).expect("the clock is after 1970").subsec_nanos();
    let n = UNIQUE.fetch_add(1, Ordering::Relaxed);
    format!("{}_{n}_{nanos}", std::process::id())
}

/// Ends a test after its cleanup: a contract task that panicked fails the test with its own message.
fn finish(outcome: Result<(), tokio::task::JoinError>) {
    if let Err(e) = outcome {
        if e.is_panic() {
            std::panic::resume_unwind(e.into_panic());
        }
        panic!("contract task did not finish: {e}");
    }
}

/// Runs `body` against a fresh SQLite file in its own temporary folder.
async fn with_sqlite<F, Fut>(body: F)
where
    F: FnOnce(Store) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let dir: PathBuf = std::env::temp_dir().join(format!("slope-contract-{}", unique_suffix()));
    let url = format!("sqlite://{}", dir.join("slope.db").display());
    // Everything runs as its own task so that a failing assertion (or a failing migration) still
    // lets the folder be removed.
    let outcome = tokio::spawn(async move {
        let store = Store::connect(&url).await.unwrap_or_else(|e| panic!("cannot open {url}: {e}"));
        store.migrate().await.expect("SQLite migrations apply");
        body(store.clone()).await;
        store.close().await;
    })
    .await;
    let _ = std::fs::remove_dir_all(&dir);
    finish(outcome);
}

/// The admin URL for PostgreSQL contract tests, or `None` (after a one-time notice) to skip them.
fn postgres_admin_url() -> Option<String> {
    static NOTICE: Once = Once::new();
    let url = std::env::var(POSTGRES_URL_VAR).ok().filter(|u| !u.trim().is_empty());
    if url.is_none() {
        let required = std::env::var(REQUIRE_POSTGRES_VAR).is_ok_and(|v| v.trim() == "1");
        assert!(
            !required,
            "{REQUIRE_POSTGRES_VAR}=1 but {POSTGRES_URL_VAR} is not set: \
             PostgreSQL contract tests must not be skipped here"
        );
        NOTICE.call_once(|| {
            // Written straight to stderr: the test harness captures `eprintln!` of passing tests, and
            // a skip that nobody sees is how a backend silently goes untested.
            let _ = writeln!(
                std::io::stderr(),
                "PostgreSQL contract tests skipped: set {POSTGRES_URL_VAR} to an admin URL such as \
                 postgres://postgres@127.0.0.1:5432/postgres to run them \
                 (set {REQUIRE_POSTGRES_VAR}=1 to make skipping an error)"
            );
        });
    }
    url
}

/// `admin` with its database name replaced by `database`, keeping user, host, port and parameters.
fn database_url(admin: &str, database: &str) -> String {
    let authority_start = admin.find("://").map_or(0, |i| i + 3);
    let authority_end = admin[authority_start..].find(['/', '?']).map_or(admin.len(), |i| authority_start + i);
    let query = admin[authority_end..].find('?').map_or("", |i| &admin[authority_end + i..]);
    format!("{}/{database}{query}", &admin[..authority_end])
}

#[test]
fn database_url_replaces_only_the_database() {
    let cases = [
        ("postgres://postgres@127.0.0.1:5432/postgres", "postgres://postgres@127.0.0.1:5432/t"),
        ("postgres://u:p@db/admin?sslmode=disable", "postgres://u:p@db/t?sslmode=disable"),
        ("postgresql://u@db:5432", "postgresql://u@db:5432/t"),
        ("postgres://u@db?sslmode=disable", "postgres://u@db/t?sslmode=disable"),
        ("postgres:///postgres?host=/run/pg", "postgres:///t?host=/run/pg"),
    ];
    for (admin, expected) in cases {
        assert_eq!(database_url(admin, "t"), expected, "from {admin}");
    }
}

/// Runs `body` against a fresh PostgreSQL database, created for this test and dropped after it.
async fn with_postgres<F, Fut>(body: F)
where
    F: FnOnce(Store) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let Some(admin_url) = postgres_admin_url() else {
        return;
    };
    let admin = PgPoolOptions::new()
        .max_connections(1)
        .connect(&admin_url)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to {POSTGRES_URL_VAR}: {e}"));
    let name = format!("slope_test_{}", unique_suffix());
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&admin)
        .await
        .unwrap_or_else(|e| panic!("cannot create database {name}: {e}"));
    let url = database_url(&admin_url, &name);
    // Connecting and migrating run inside the task too, so that the database is dropped whatever
    // fails; WITH (FORCE) ends the connections of a pool that a panic left open.
    let outcome = tokio::spawn(async move {
        let store = Store::connect(&url).await.unwrap_or_else(|e| panic!("cannot connect to {url}: {e}"));
        store.migrate().await.expect("PostgreSQL migrations apply");
        body(store.clone()).await;
        store.close().await;
    })
    .await;
    let dropped = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).execute(&admin).await;
    admin.close().await;
    finish(outcome);
    dropped.unwrap_or_else(|e| panic!("cannot drop database {name}: {e}"));
}

// ---- fixtures ------------------------------------------------------------------------------------

fn date(raw: &str) -> NaiveDate {
    raw.parse().expect("fixture dates are valid")
}

fn season_input(name: &str, starts_on: &str, ends_on: &str) -> SeasonInput {
    SeasonInput {
        name: name.into(),
        thesis: "Agents replace forms".into(),
        problems: vec!["Clinicians type too much".into()],
        winning: "Half of all notes drafted by agents".into(),
        starts_on: starts_on.into(),
        ends_on: ends_on.into(),
        slope_target: None,
    }
}

fn season_spec(name: &str, starts_on: &str, ends_on: &str) -> SeasonSpec {
    season_input(name, starts_on, ends_on).validate().expect("fixture season is valid")
}

/// Creates a season the way the service does: refusing overlaps with the organisation's others.
async fn create_season(store: &Store, org: OrgId, name: &str, start: &str, end: &str) -> Season {
    let spec = season_spec(name, start, end);
    store
        .create_season(&sys(org), &spec, |others| check_no_overlap(&spec.dates, others, None))
        .await
        .expect("season is created")
}

/// Decides a transition by the domain's rules, with the organisation's other active season if any.
fn by_the_rules(
    to: &str,
    retrospective: &str,
) -> impl FnOnce(&Season, &[Season]) -> Result<(SeasonStatus, Option<String>), FieldErrors> + use<> {
    let input = TransitionInput { to: to.into(), retrospective: retrospective.into() };
    move |current, all| {
        let other_active = all.iter().find(|s| s.id != current.id && s.status == SeasonStatus::Active);
        input.validate(current, other_active).map(|(status, retro)| (status, retro.map(|r| r.as_str().to_owned())))
    }
}

fn objective_spec(season: &Season, quarter: &str, title: &str) -> ObjectiveSpec {
    ObjectiveInput {
        quarter: quarter.into(),
        title: title.into(),
        commitment: "committed".into(),
        ..Default::default()
    }
    .validate(&season.dates())
    .expect("fixture objective is valid")
}

fn measure(kind: &str) -> MeasureInput {
    MeasureInput { kind: kind.into(), ..Default::default() }
}

/// Inputs carry the measure's fields flat; this sets them from a `MeasureInput`.
fn goal_with(mut input: SquadGoalInput, measure: MeasureInput) -> SquadGoalInput {
    input.set_measure(measure);
    input
}

fn key_result_with(mut input: KeyResultInput, measure: MeasureInput) -> KeyResultInput {
    input.set_measure(measure);
    input
}

fn key_result_spec(title: &str, measure: MeasureInput) -> KeyResultSpec {
    key_result_with(KeyResultInput { title: title.into(), ..Default::default() }, measure)
        .validate()
        .expect("fixture key result is valid")
}

fn increase(start: f64, target: f64, unit: &str) -> MeasureInput {
    MeasureInput { start: Some(start), target: Some(target), unit: unit.into(), ..measure("increase-to") }
}

fn squad_spec(name: &str) -> SquadSpec {
    SquadInput { name: name.into(), unit: "Clinical".into(), capacity: Some(12.0) }
        .validate()
        .expect("fixture squad is valid")
}

fn check_in_spec(measure: &Measure, value: f64, confidence: Option<f64>) -> CheckInSpec {
    CheckInInput { value: Some(value), confidence, author: "Ana".into(), ..Default::default() }
        .validate(measure)
        .expect("fixture check-in is valid")
}

/// A season with one Q1 objective and one key result, the smallest plan that check-ins attach to.
async fn small_plan(store: &Store, org: OrgId) -> (Season, Objective, KeyResult) {
    let season = create_season(store, org, "H1", "2027-01-01", "2027-06-30").await;
    let objective = store
        .create_objective(&sys(org), season.id, &objective_spec(&season, "2027-Q1", "Trust"))
        .await
        .expect("objective is created");
    let spec = key_result_spec("Acceptance rate", increase(0.2, 0.35, ""));
    let kr = store.create_key_result(&sys(org), objective.id, &spec).await.expect("key result is created");
    (season, objective, kr)
}

/// Waits long enough that timestamps taken before and after differ on both backends, whose clocks
/// resolve microseconds (PostgreSQL) and nanoseconds (SQLite text).
async fn tick() {
    tokio::time::sleep(Duration::from_millis(20)).await;
}

#[track_caller]
fn assert_not_found<T: Debug>(result: Result<T, StoreError>, entity: &str, id: i64) {
    match result {
        Err(StoreError::NotFound { entity: e, id: i }) if e == entity && i == id => {}
        other => panic!("expected {entity} {id} not found, got {other:?}"),
    }
}

#[track_caller]
fn assert_conflict<T: Debug>(result: Result<T, StoreError>, entity: &str, id: i64, expected: i64, actual: i64) {
    match result {
        Err(StoreError::Conflict { entity: e, id: i, expected: x, actual: a })
            if e == entity && i == id && x == expected && a == actual => {}
        other => panic!("expected a conflict on {entity} {id} (edited {expected}, stored {actual}), got {other:?}"),
    }
}

#[track_caller]
fn assert_rejected<T: Debug>(result: Result<T, StoreError>, field: &str) -> FieldErrors {
    match result {
        Err(StoreError::Rejected(errors)) if errors.get(field).is_some() => errors,
        other => panic!("expected a rejection on {field:?}, got {other:?}"),
    }
}

// ---- loop metrics fixtures -----------------------------------------------------------------------

/// A fixed instant. Fixtures avoid the clock so that stored times compare exactly on both backends:
/// PostgreSQL keeps microseconds, and SQLite keeps the RFC 3339 text it was given.
fn at(raw: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(raw).expect("fixture times are valid").with_timezone(&Utc)
}

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
        .record_batch(org, &batch, move |_| async move { Ok::<_, Infallible>(written) })
        .await
        .expect("the batch is recorded")
        .expect("the writer cannot fail");
    let live = store.live_segments(org, loop_key, None).await.unwrap();
    let row = live.into_iter().find(|s| s.path == path).expect("the batch's segment is live");
    (record, row)
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

async fn contract_orgs_are_idempotent_and_isolated(store: Store) {
    let a = store.ensure_org("acme", "Acme").await.unwrap();
    let again = store.ensure_org("acme", "Acme, renamed").await.unwrap();
    assert_eq!(a, again, "ensure_org must return the existing organisation");
    let b = store.ensure_org("globex", "Globex").await.unwrap();
    assert_ne!(a, b);

    let (season, objective, kr) = small_plan(&store, a).await;
    let squad = store.create_squad(&sys(a), &squad_spec("Drafts")).await.unwrap();

    assert_eq!(store.list_seasons(a).await.unwrap(), vec![season.clone()]);
    assert!(store.list_seasons(b).await.unwrap().is_empty());
    assert_not_found(store.get_season(b, season.id).await, "season", season.id.0);
    assert_not_found(store.get_objective(b, objective.id).await, "objective", objective.id.0);
    assert!(store.list_objectives(b, season.id).await.unwrap().is_empty());
    assert_not_found(store.get_key_result(b, kr.id).await, "key result", kr.id.0);
    assert!(store.list_key_results(b, season.id).await.unwrap().is_empty());
    assert_not_found(store.get_squad(b, squad.id).await, "squad", squad.id.0);
    assert!(store.list_squads(b).await.unwrap().is_empty());

    // Writes through the wrong organisation must miss, not change the other tenant's rows.
    let spec = season_spec("Taken over", "2027-01-01", "2027-06-30");
    let update = store.update_season(&sys(b), season.id, season.version, &spec, |_, _| Ok(())).await;
    assert_not_found(update, "season", season.id.0);
    let kr_spec = key_result_spec("Taken over", increase(0.0, 1.0, ""));
    let update = store.update_key_result(&sys(b), kr.id, kr.version, &kr_spec).await;
    assert_not_found(update, "key result", kr.id.0);
    let check_in = check_in_spec(&kr.measure, 0.3, None);
    let added = store.add_check_in(b, SubjectKind::KeyResult, kr.id.0, &check_in).await;
    assert_not_found(added, "key result", kr.id.0);
    assert_eq!(store.get_season(a, season.id).await.unwrap(), season);
    assert_eq!(store.get_key_result(a, kr.id).await.unwrap(), kr);

    // Cross-row rules are per organisation: B may use A's dates and run its own active season.
    let b_season = create_season(&store, b, "B's H1", "2027-01-01", "2027-06-30").await;
    store
        .transition_season(&sys(a), season.id, season.version, by_the_rules("active", ""))
        .await
        .expect("A activates its season");
    store
        .transition_season(&sys(b), b_season.id, b_season.version, by_the_rules("active", ""))
        .await
        .expect("B activates its season while A has an active one");
    store.create_squad(&sys(b), &squad_spec("Drafts")).await.expect("squad names are unique per organisation only");
    assert_eq!(store.list_seasons(b).await.unwrap().len(), 1);
    assert!(store.plan_as_of(b, Utc::now()).await.unwrap().objectives.is_empty());
}

async fn contract_seasons_round_trip(store: Store) {
    let org = store.ensure_org("acme", "Acme").await.unwrap();
    let before = Utc::now();
    let input = SeasonInput {
        name: "The advent of agents".into(),
        thesis: "Agents replace forms".into(),
        problems: vec!["Clinicians type too much".into(), "Ärzte schreiben doppelt — \"twice\"".into()],
        winning: "Half of all notes drafted by agents".into(),
        starts_on: "2027-01-01".into(),
        ends_on: "2027-06-30".into(),
        slope_target: Some(0.35),
    };
    let spec = input.validate().unwrap();
    let created = store
        .create_season(&sys(org), &spec, |others| {
            assert!(others.is_empty(), "a new organisation has no seasons");
            Ok(())
        })
        .await
        .unwrap();

    assert_eq!(created.org_id, org);
    assert_eq!(created.name, "The advent of agents");
    assert_eq!(created.thesis, "Agents replace forms");
    assert_eq!(created.problems, input.problems);
    assert_eq!(created.winning, "Half of all notes drafted by agents");
    assert_eq!(created.starts_on, date("2027-01-01"));
    assert_eq!(created.ends_on, date("2027-06-30"));
    assert_eq!(created.status, SeasonStatus::Draft);
    assert_eq!(created.slope_target, 0.35);
    assert_eq!(created.retrospective, None);
    assert_eq!(created.version, Version(1));
    assert_eq!(created.created_at, created.updated_at);
    // A timestamp read back in another zone or unit would land far from the clock of the write.
    let skew = (created.created_at - before).num_seconds().abs();
    assert!(skew < 60, "created_at {} is {skew} s from now", created.created_at);

    assert_eq!(store.get_season(org, created.id).await.unwrap(), created);
    assert_eq!(store.list_seasons(org).await.unwrap(), vec![created.clone()]);

    // The check sees the organisation's stored seasons, and listing puts the latest season first.
    let spec = season_spec("H2", "2027-07-01", "2027-12-31");
    let later = store
        .create_season(&sys(org), &spec, |others| {
            assert_eq!(others, std::slice::from_ref(&created));
            Ok(())
        })
        .await
        .unwrap();
    assert_eq!(later.slope_target, 0.2, "the default slope target is stored");
    let listed = store.list_seasons(org).await.unwrap();
    assert_eq!(listed, vec![later, created]);
}

async fn contract_rejected_season_stores_nothing(store: Store) {
    let org = store.ensure_org("acme", "Acme").await.unwrap();
    let spec = season_spec("H1", "2027-01-01", "2027-06-30");
    let result =
        store.create_season(&sys(org), &spec, |_| Err(FieldErrors::single("starts_on", "refused by the test"))).await;
    let errors = assert_rejected(result, "starts_on");
    assert_eq!(errors.get("starts_on").unwrap(), ["refused by the test"]);
    assert!(store.list_seasons(org).await.unwrap().is_empty());
    let plan = store.plan_as_of(org, Utc::now()).await.unwrap();
    assert!(plan.seasons.is_empty(), "a rejected season leaves no revision");

    // The rejected transaction must not hold on to a lock or a connection.
    let first = create_season(&store, org, "H1", "2027-01-01", "2027-06-30").await;
    let overlapping = season_spec("Overlap", "2027-06-30", "2027-12-31");
    let result =
        store.create_season(&sys(org), &overlapping, |others| check_no_overlap(&overlapping.dates, others, None)).await;
    assert_rejected(result, "starts_on");
    assert_eq!(store.list_seasons(org).await.unwrap(), vec![first]);
    assert_eq!(store.plan_as_of(org, Utc::now()).await.unwrap().seasons.len(), 1);
}

async fn contract_season_updates_are_versioned(store: Store) {
    let org = store.ensure_org("acme", "Acme").await.unwrap();
    let season = create_season(&store, org, "H1", "2027-01-01", "2027-06-30").await;
    tick().await;

    let input = SeasonInput {
        problems: vec!["Nurses chart twice".into(), "Handovers lose context".into()],
        slope_target: Some(0.1),
        ..season_input("H1, revised", "2027-01-15", "2027-07-15")
    };
    let spec = input.validate().unwrap();
    let updated = store
        .update_season(&sys(org), season.id, Version(1), &spec, |current, all| {
            assert_eq!(current, &season, "the check sees the stored season");
            check_no_overlap(&spec.dates, all, Some(current.id))
        })
        .await
        .unwrap();
    assert_eq!(updated.id, season.id);
    assert_eq!(updated.version, Version(2));
    assert_eq!(updated.name, "H1, revised");
    assert_eq!(updated.problems, input.problems);
    assert_eq!((updated.starts_on, updated.ends_on), (date("2027-01-15"), date("2027-07-15")));
    assert_eq!(updated.slope_target, 0.1);
    assert_eq!(updated.status, SeasonStatus::Draft);
    assert_eq!(updated.created_at, season.created_at);
    assert!(updated.updated_at > season.updated_at);
    assert_eq!(store.get_season(org, season.id).await.unwrap(), updated);

    let stale = season_spec("Lost edit", "2027-01-01", "2027-06-30");
    let result = store.update_season(&sys(org), season.id, Version(1), &stale, |_, _| Ok(())).await;
    assert_conflict(result, "season", season.id.0, 1, 2);
    let result = store
        .update_season(&sys(org), season.id, Version(2), &stale, |_, _| {
            Err(FieldErrors::single("name", "refused by the test"))
        })
        .await;
    assert_rejected(result, "name");
    assert_eq!(store.get_season(org, season.id).await.unwrap(), updated);

    let missing = SeasonId(season.id.0 + 1000);
    let result = store.update_season(&sys(org), missing, Version(1), &stale, |_, _| Ok(())).await;
    assert_not_found(result, "season", missing.0);

    let again = store.update_season(&sys(org), season.id, Version(2), &stale, |_, _| Ok(())).await.unwrap();
    assert_eq!(again.version, Version(3));
    assert_eq!(again.name, "Lost edit");
    let history = store.plan_as_of(org, Utc::now()).await.unwrap();
    assert_eq!(history.seasons, vec![again]);
}

async fn contract_one_active_season(store: Store) {
    let org = store.ensure_org("acme", "Acme").await.unwrap();
    let h1 = create_season(&store, org, "H1", "2027-01-01", "2027-06-30").await;
    let h2 = create_season(&store, org, "H2", "2027-07-01", "2027-12-31").await;

    let active = store.transition_season(&sys(org), h1.id, h1.version, by_the_rules("active", "")).await.unwrap();
    assert_eq!(active.status, SeasonStatus::Active);
    assert_eq!(active.version, Version(2));
    assert_eq!(store.get_season(org, h1.id).await.unwrap(), active);

    // The rule, as the service applies it, names the season that is in the way.
    let result = store.transition_season(&sys(org), h2.id, h2.version, by_the_rules("active", "")).await;
    let errors = assert_rejected(result, "to");
    assert!(errors.get("to").unwrap()[0].contains("\"H1\""), "{errors}");
    assert_eq!(store.get_season(org, h2.id).await.unwrap(), h2);

    // A caller that skips the rule still cannot store a second active season: the unique partial
    // index is the last line of defence on both backends.
    let result = store.transition_season(&sys(org), h2.id, h2.version, |_, _| Ok((SeasonStatus::Active, None))).await;
    match &result {
        Err(e) if e.is_unique_violation() => {}
        other => panic!("expected a unique violation, got {other:?}"),
    }
    assert_eq!(store.get_season(org, h2.id).await.unwrap(), h2);
    let statuses: Vec<SeasonStatus> = store.list_seasons(org).await.unwrap().iter().map(|s| s.status).collect();
    assert_eq!(statuses, [SeasonStatus::Draft, SeasonStatus::Active]);

    let result = store.transition_season(&sys(org), h1.id, Version(1), by_the_rules("closed", "")).await;
    assert_conflict(result, "season", h1.id.0, 1, 2);
    let missing = SeasonId(h2.id.0 + 1000);
    let result = store.transition_season(&sys(org), missing, Version(1), by_the_rules("active", "")).await;
    assert_not_found(result, "season", missing.0);

    let retro = "Agents arrived faster than planned.";
    let closed =
        store.transition_season(&sys(org), h1.id, active.version, by_the_rules("closed", retro)).await.unwrap();
    assert_eq!(closed.status, SeasonStatus::Closed);
    assert_eq!(closed.retrospective.as_deref(), Some(retro));
    assert_eq!(closed.version, Version(3));
    let next = store
        .transition_season(&sys(org), h2.id, h2.version, by_the_rules("active", ""))
        .await
        .expect("a season can be activated once the active one is closed");
    assert_eq!(next.status, SeasonStatus::Active);
    assert_eq!(next.retrospective, None);
}

async fn contract_objectives_and_key_results(store: Store) {
    let org = store.ensure_org("acme", "Acme").await.unwrap();
    let season = create_season(&store, org, "H1", "2027-01-01", "2027-06-30").await;
    let other_season = create_season(&store, org, "H2", "2027-07-01", "2027-12-31").await;

    let spec = ObjectiveInput {
        quarter: "2027-Q2".into(),
        title: "Clinicians trust the drafts".into(),
        description: "Trust is earned one note at a time".into(),
        commitment: "committed".into(),
        owner: "Ana".into(),
        weight: Some(2.0),
    }
    .validate(&season.dates())
    .unwrap();
    let q2 = store.create_objective(&sys(org), season.id, &spec).await.unwrap();
    assert_eq!((q2.org_id, q2.season_id), (org, season.id));
    assert_eq!(q2.quarter.to_string(), "2027-Q2");
    assert_eq!(q2.title, "Clinicians trust the drafts");
    assert_eq!(q2.description.as_deref(), Some("Trust is earned one note at a time"));
    assert_eq!(q2.commitment, Commitment::Committed);
    assert_eq!(q2.owner.as_deref(), Some("Ana"));
    assert_eq!(q2.weight, 2.0);
    assert_eq!(q2.version, Version(1));
    assert_eq!(store.get_objective(org, q2.id).await.unwrap(), q2);

    let q1 = store
        .create_objective(&sys(org), season.id, &objective_spec(&season, "2027-Q1", "Fewer clicks"))
        .await
        .unwrap();
    let elsewhere = store
        .create_objective(&sys(org), other_season.id, &objective_spec(&other_season, "2027-Q3", "Later"))
        .await
        .unwrap();
    let listed = store.list_objectives(org, season.id).await.unwrap();
    assert_eq!(listed, vec![q1.clone(), q2.clone()], "objectives are listed by quarter");

    let edit = ObjectiveInput { commitment: "aspirational".into(), ..q1.to_input() }.validate(&season.dates()).unwrap();
    let q1 = store.update_objective(&sys(org), q1.id, q1.version, &edit).await.unwrap();
    assert_eq!((q1.commitment, q1.version), (Commitment::Aspirational, Version(2)));
    let result = store.update_objective(&sys(org), q1.id, Version(1), &edit).await;
    assert_conflict(result, "objective", q1.id.0, 1, 2);
    let missing = ObjectiveId(elsewhere.id.0 + 1000);
    let result = store.update_objective(&sys(org), missing, Version(1), &edit).await;
    assert_not_found(result, "objective", missing.0);

    let spec = key_result_with(
        KeyResultInput {
            title: "Acceptance rate".into(),
            weight: Some(3.0),
            confidence: Some(0.6),
            ..Default::default()
        },
        increase(20.0, 35.0, "%"),
    )
    .validate()
    .unwrap();
    let kr = store.create_key_result(&sys(org), q2.id, &spec).await.unwrap();
    assert_eq!((kr.org_id, kr.objective_id), (org, q2.id));
    assert_eq!(kr.title, "Acceptance rate");
    let expected = Measure::IncreaseTo { start: 20.0, target: 35.0, unit: "%".into() };
    assert_eq!(kr.measure, expected);
    assert_eq!((kr.current, kr.confidence, kr.metric.clone()), (None, Some(0.6), None));
    assert_eq!((kr.weight, kr.version), (3.0, Version(1)));
    assert_eq!(store.get_key_result(org, kr.id).await.unwrap(), kr);

    let below = MeasureInput { threshold: Some(300.0), unit: "ms".into(), ..measure("keep-below") };
    let kr_q1 = store.create_key_result(&sys(org), q1.id, &key_result_spec("Latency", below)).await.unwrap();
    let other_kr = store
        .create_key_result(&sys(org), elsewhere.id, &key_result_spec("Later", measure("milestone")))
        .await
        .unwrap();
    // Key results are listed by objective (in creation order), and only the season's own.
    let listed = store.list_key_results(org, season.id).await.unwrap();
    assert_eq!(listed, vec![kr.clone(), kr_q1.clone()]);
    let listed = store.list_key_results(org, other_season.id).await.unwrap();
    assert_eq!(listed, vec![other_kr]);

    let decrease =
        MeasureInput { start: Some(900.0), target: Some(300.0), unit: "ms".into(), ..measure("decrease-to") };
    let edit = key_result_spec("Time to draft", decrease);
    let updated = store.update_key_result(&sys(org), kr.id, kr.version, &edit).await.unwrap();
    assert_eq!(updated.title, "Time to draft");
    let expected = Measure::DecreaseTo { start: 900.0, target: 300.0, unit: "ms".into() };
    assert_eq!(updated.measure, expected);
    assert_eq!(updated.version, Version(2));
    assert_eq!(updated.weight, 1.0);
    assert_eq!(updated.confidence, Some(0.6), "an edit without a confidence keeps the last one");
    assert_eq!(updated.created_at, kr.created_at);

    let result = store.update_key_result(&sys(org), kr.id, Version(1), &edit).await;
    assert_conflict(result, "key result", kr.id.0, 1, 2);
    let missing = KeyResultId(kr.id.0 + 1000);
    let result = store.update_key_result(&sys(org), missing, Version(1), &edit).await;
    assert_not_found(result, "key result", missing.0);
    assert_eq!(store.get_key_result(org, kr.id).await.unwrap(), updated);
}

async fn contract_squads_round_trip(store: Store) {
    let org = store.ensure_org("acme", "Acme").await.unwrap();
    let drafts = store.create_squad(&sys(org), &squad_spec("Drafts")).await.unwrap();
    assert_eq!((drafts.org_id, drafts.name.as_str()), (org, "Drafts"));
    assert_eq!((drafts.unit.as_str(), drafts.capacity), ("Clinical", 12.0));
    assert_eq!(drafts.version, Version(1));
    assert_eq!(store.get_squad(org, drafts.id).await.unwrap(), drafts);

    let search = store.create_squad(&sys(org), &squad_spec("Search")).await.unwrap();
    let renamed =
        store.update_squad(&sys(org), search.id, search.version, &squad_spec("Search & Browse")).await.unwrap();
    assert_eq!((renamed.name.as_str(), renamed.version), ("Search & Browse", Version(2)));
    assert_eq!(renamed.created_at, search.created_at);
    assert_eq!(store.get_squad(org, search.id).await.unwrap(), renamed);

    let result = store.update_squad(&sys(org), search.id, Version(1), &squad_spec("Lost edit")).await;
    assert_conflict(result, "squad", search.id.0, 1, 2);
    let missing = SquadId(search.id.0 + 1000);
    let result = store.update_squad(&sys(org), missing, Version(1), &squad_spec("Ghost")).await;
    assert_not_found(result, "squad", missing.0);
    assert_not_found(store.get_squad(org, missing).await, "squad", missing.0);
    assert_eq!(store.list_squads(org).await.unwrap(), vec![drafts, renamed]);
}

async fn contract_squad_names_are_unique_per_org(store: Store) {
    let org = store.ensure_org("acme", "Acme").await.unwrap();
    let drafts = store.create_squad(&sys(org), &squad_spec("Drafts")).await.unwrap();
    let search = store.create_squad(&sys(org), &squad_spec("Search")).await.unwrap();

    // The service shows this rejection next to the name field, so it must not arrive as a raw
    // database error.
    let result = store.create_squad(&sys(org), &squad_spec("Drafts")).await;
    let errors = assert_rejected(result, "name");
    assert!(errors.get("name").unwrap()[0].contains("\"Drafts\""), "{errors}");
    let listed = store.list_squads(org).await.unwrap();
    assert_eq!(listed, vec![drafts.clone(), search.clone()]);

    // A rename onto a taken name is refused the same way, and leaves the squad as it was.
    let result = store.update_squad(&sys(org), search.id, search.version, &squad_spec("Drafts")).await;
    assert_rejected(result, "name");
    assert_eq!(store.get_squad(org, search.id).await.unwrap(), search);
}

async fn contract_squad_goals_round_trip(store: Store) {
    let org = store.ensure_org("acme", "Acme").await.unwrap();
    let (season, _, kr) = small_plan(&store, org).await;
    let squad = store.create_squad(&sys(org), &squad_spec("Drafts")).await.unwrap();

    let latency = goal_with(
        SquadGoalInput {
            key_result_id: Some(kr.id.0),
            title: "Cut draft latency".into(),
            starts_on: "2027-01-04".into(),
            ends_on: "2027-02-01".into(),
            investment: "snapshot".into(),
            planned_capacity: Some(8.0),
            ..Default::default()
        },
        MeasureInput { start: Some(900.0), target: Some(300.0), unit: "ms".into(), ..measure("decrease-to") },
    );
    let spec = latency.validate(Some(&season.dates())).unwrap();
    let g1 = store.create_goal(&sys(org), squad.id, &spec).await.unwrap();
    assert_eq!((g1.org_id, g1.squad_id, g1.key_result_id), (org, squad.id, kr.id));
    assert_eq!(g1.title, "Cut draft latency");
    assert_eq!((g1.starts_on, g1.ends_on), (date("2027-01-04"), date("2027-02-01")));
    assert_eq!(g1.investment, Investment::Snapshot);
    assert_eq!((g1.challenges.as_deref(), g1.kill_criteria.as_deref()), (None, None));
    assert_eq!((g1.planned_capacity, g1.status), (8.0, GoalStatus::Planned));
    let expected = Measure::DecreaseTo { start: 900.0, target: 300.0, unit: "ms".into() };
    assert_eq!(g1.measure, expected);
    assert_eq!((g1.current, g1.confidence, g1.version), (None, None, Version(1)));
    assert_eq!(store.get_goal(org, g1.id).await.unwrap(), g1);

    let bet = goal_with(
        SquadGoalInput {
            title: "Keep handovers short".into(),
            starts_on: "2027-03-01".into(),
            ends_on: "2027-04-05".into(),
            investment: "slope".into(),
            challenges: "Clinicians want full drafts".into(),
            kill_criteria: "Acceptance below 10 % after 3 weeks".into(),
            status: "active".into(),
            ..latency.clone()
        },
        MeasureInput { low: Some(10.0), high: Some(20.0), unit: "min".into(), ..measure("within-range") },
    );
    let g3 = store.create_goal(&sys(org), squad.id, &bet.validate(Some(&season.dates())).unwrap()).await.unwrap();
    assert_eq!(g3.investment, Investment::Slope);
    assert_eq!(g3.challenges.as_deref(), Some("Clinicians want full drafts"));
    assert_eq!(g3.kill_criteria.as_deref(), Some("Acceptance below 10 % after 3 weeks"));
    assert_eq!(g3.status, GoalStatus::Active);
    let expected = Measure::WithinRange { low: 10.0, high: 20.0, unit: "min".into() };
    assert_eq!(g3.measure, expected);

    let milestone = goal_with(
        SquadGoalInput {
            title: "Ship inline suggestions".into(),
            starts_on: "2027-02-01".into(),
            ends_on: "2027-03-01".into(),
            ..latency.clone()
        },
        measure("milestone"),
    );
    let g2 = store.create_goal(&sys(org), squad.id, &milestone.validate(Some(&season.dates())).unwrap()).await.unwrap();
    assert_eq!(g2.measure, Measure::Milestone);

    // A goal of another season's key result does not show on this season's board.
    let h2 = create_season(&store, org, "H2", "2027-07-01", "2027-12-31").await;
    let o2 = store.create_objective(&sys(org), h2.id, &objective_spec(&h2, "2027-Q3", "Later")).await.unwrap();
    let kr2 = store.create_key_result(&sys(org), o2.id, &key_result_spec("Later", measure("milestone"))).await.unwrap();
    let later = SquadGoalInput {
        key_result_id: Some(kr2.id.0),
        starts_on: "2027-07-05".into(),
        ends_on: "2027-08-02".into(),
        ..milestone.clone()
    };
    let g4 = store.create_goal(&sys(org), squad.id, &later.validate(Some(&h2.dates())).unwrap()).await.unwrap();

    let board = store.list_goals_for_season(org, season.id).await.unwrap();
    assert_eq!(board, vec![g1.clone(), g2.clone(), g3.clone()], "goals are listed by start");
    assert_eq!(store.list_goals_for_season(org, h2.id).await.unwrap(), vec![g4]);

    let done = goal_with(SquadGoalInput { status: "done".into(), ..g1.to_input() }, measure("milestone"));
    let spec = done.validate(Some(&season.dates())).unwrap();
    let updated = store.update_goal(&sys(org), g1.id, g1.version, &spec).await.unwrap();
    assert_eq!((updated.status, updated.measure.clone()), (GoalStatus::Done, Measure::Milestone));
    assert_eq!(updated.version, Version(2));
    assert_eq!(updated.title, g1.title);
    assert_eq!(store.get_goal(org, g1.id).await.unwrap(), updated);

    let result = store.update_goal(&sys(org), g1.id, Version(1), &spec).await;
    assert_conflict(result, "squad goal", g1.id.0, 1, 2);
    let missing = SquadGoalId(g1.id.0 + 1000);
    let result = store.update_goal(&sys(org), missing, Version(1), &spec).await;
    assert_not_found(result, "squad goal", missing.0);
    assert_not_found(store.get_goal(org, missing).await, "squad goal", missing.0);
    assert_eq!(store.get_goal(org, g1.id).await.unwrap(), updated);
}

async fn contract_check_ins_update_their_subject(store: Store) {
    let org = store.ensure_org("acme", "Acme").await.unwrap();
    let (season, _, kr) = small_plan(&store, org).await;
    assert_eq!((kr.current, kr.confidence), (None, None));

    let first = store
        .add_check_in(org, SubjectKind::KeyResult, kr.id.0, &{
            let mut spec = check_in_spec(&kr.measure, 0.25, Some(0.5));
            spec.note = Some(Prose::parse("Slow start after the holidays").unwrap());
            spec
        })
        .await
        .unwrap();
    assert_eq!(first.org_id, org);
    assert_eq!((first.subject_kind, first.subject_id), (SubjectKind::KeyResult, kr.id.0));
    assert_eq!((first.value, first.confidence), (0.25, Some(0.5)));
    assert_eq!(first.note.as_deref(), Some("Slow start after the holidays"));
    assert_eq!(first.author, "Ana");
    let stored = store.get_key_result(org, kr.id).await.unwrap();
    assert_eq!((stored.current, stored.confidence), (Some(0.25), Some(0.5)));

    tick().await;
    let second =
        store.add_check_in(org, SubjectKind::KeyResult, kr.id.0, &check_in_spec(&kr.measure, 0.3, None)).await.unwrap();
    assert_eq!((second.confidence, second.note.as_deref()), (None, None));
    assert!(second.recorded_at > first.recorded_at);
    let stored = store.get_key_result(org, kr.id).await.unwrap();
    assert_eq!(stored.current, Some(0.3));
    assert_eq!(stored.confidence, Some(0.5), "a check-in without a confidence keeps the last one");
    assert_eq!(stored.version, kr.version, "a check-in is not an edit of the plan");

    // Goals take check-ins too, and a listing holds only its own subject's, even where ids coincide.
    let squad = store.create_squad(&sys(org), &squad_spec("Drafts")).await.unwrap();
    let goal = goal_with(
        SquadGoalInput {
            key_result_id: Some(kr.id.0),
            title: "Ship inline suggestions".into(),
            starts_on: "2027-01-04".into(),
            ends_on: "2027-02-01".into(),
            investment: "snapshot".into(),
            planned_capacity: Some(8.0),
            ..Default::default()
        },
        measure("milestone"),
    )
    .validate(Some(&season.dates()))
    .unwrap();
    let goal = store.create_goal(&sys(org), squad.id, &goal).await.unwrap();
    let done = CheckInInput { done: Some(true), confidence: Some(0.9), author: "Bo".into(), ..Default::default() }
        .validate(&goal.measure)
        .unwrap();
    let goal_check_in = store.add_check_in(org, SubjectKind::SquadGoal, goal.id.0, &done).await.unwrap();
    let stored = store.get_goal(org, goal.id).await.unwrap();
    assert_eq!((stored.current, stored.confidence), (Some(1.0), Some(0.9)));

    let listed = store.list_check_ins(org, SubjectKind::KeyResult, kr.id.0).await.unwrap();
    assert_eq!(listed, vec![second, first], "check-ins are listed newest first");
    let listed = store.list_check_ins(org, SubjectKind::SquadGoal, goal.id.0).await.unwrap();
    assert_eq!(listed, vec![goal_check_in]);

    let missing = kr.id.0.max(goal.id.0) + 1000;
    for kind in [SubjectKind::KeyResult, SubjectKind::SquadGoal] {
        let entity = if kind == SubjectKind::KeyResult { "key result" } else { "squad goal" };
        let result = store.add_check_in(org, kind, missing, &check_in_spec(&Measure::Milestone, 1.0, None)).await;
        assert_not_found(result, entity, missing);
        assert!(store.list_check_ins(org, kind, missing).await.unwrap().is_empty());
    }
    let all = store.plan_as_of(org, Utc::now()).await.unwrap().check_ins;
    assert_eq!(all.len(), 3, "a check-in on a missing subject leaves no row");
}

async fn contract_plan_as_of_shows_the_past(store: Store) {
    let org = store.ensure_org("acme", "Acme").await.unwrap();
    let other = store.ensure_org("globex", "Globex").await.unwrap();
    let t0 = Utc::now();
    tick().await;
    let (season, objective, kr) = small_plan(&store, org).await;
    tick().await;
    let t1: DateTime<Utc> = Utc::now();
    tick().await;

    let edit = key_result_spec("Acceptance of drafts", increase(0.2, 0.35, ""));
    let renamed = store.update_key_result(&sys(org), kr.id, kr.version, &edit).await.unwrap();
    let check_in =
        store.add_check_in(org, SubjectKind::KeyResult, kr.id.0, &check_in_spec(&kr.measure, 0.3, None)).await.unwrap();
    tick().await;

    let empty = store.plan_as_of(org, t0).await.unwrap();
    assert!(empty.seasons.is_empty() && empty.objectives.is_empty());
    assert!(empty.key_results.is_empty() && empty.check_ins.is_empty());

    let then = store.plan_as_of(org, t1).await.unwrap();
    assert_eq!(then.seasons, vec![season.clone()]);
    assert_eq!(then.objectives, vec![objective.clone()]);
    assert_eq!(then.key_results, vec![kr.clone()], "the key result as it was at t1");
    assert!(then.check_ins.is_empty(), "no check-in was known at t1");
    assert!(then.squads.is_empty() && then.goals.is_empty());

    let now = store.plan_as_of(org, Utc::now()).await.unwrap();
    assert_eq!(now.seasons, vec![season]);
    assert_eq!(now.objectives, vec![objective]);
    let titles: Vec<(&str, Version)> = now.key_results.iter().map(|k| (k.title.as_str(), k.version)).collect();
    assert_eq!(titles, [("Acceptance of drafts", Version(2))]);
    assert_eq!(now.key_results[0].measure, renamed.measure);
    assert_eq!(now.check_ins, vec![check_in]);

    let elsewhere = store.plan_as_of(other, Utc::now()).await.unwrap();
    assert!(elsewhere.seasons.is_empty() && elsewhere.key_results.is_empty());
    assert!(elsewhere.check_ins.is_empty());
}

async fn contract_concurrent_overlapping_seasons(store: Store) {
    const WRITERS: usize = 8;
    let org = store.ensure_org("acme", "Acme").await.unwrap();
    // The barrier releases every writer at once, so that their transactions really overlap.
    let start = Arc::new(tokio::sync::Barrier::new(WRITERS));
    let writers: Vec<_> = (0..WRITERS)
        .map(|i| {
            let store = store.clone();
            let start = start.clone();
            tokio::spawn(async move {
                let spec = season_spec(&format!("Season {i}"), "2027-01-01", &format!("2027-06-{:02}", 20 + i));
                start.wait().await;
                store.create_season(&sys(org), &spec, |others| check_no_overlap(&spec.dates, others, None)).await
            })
        })
        .collect();
    let mut created = vec![];
    for writer in writers {
        match writer.await.expect("writer task finishes") {
            Ok(season) => created.push(season),
            Err(StoreError::Rejected(errors)) if errors.get("starts_on").is_some() => {}
            Err(e) => panic!("expected success or an overlap rejection, got {e:?}"),
        }
    }
    assert_eq!(created.len(), 1, "exactly one overlapping season may be stored: {created:?}");
    assert_eq!(store.list_seasons(org).await.unwrap(), created);
}

async fn contract_concurrent_activations(store: Store) {
    const WRITERS: usize = 8;
    let org = store.ensure_org("acme", "Acme").await.unwrap();
    let mut seasons = vec![];
    for i in 0..WRITERS {
        let year = 2030 + i;
        let season =
            create_season(&store, org, &format!("{year}"), &format!("{year}-01-01"), &format!("{year}-12-31")).await;
        seasons.push(season);
    }
    let start = Arc::new(tokio::sync::Barrier::new(WRITERS));
    let writers: Vec<_> = seasons
        .iter()
        .map(|season| {
            let (store, start, season) = (store.clone(), start.clone(), season.clone());
            tokio::spawn(async move {
                start.wait().await;
                store.transition_season(&sys(org), season.id, season.version, by_the_rules("active", "")).await
            })
        })
        .collect();
    let mut activated = 0;
    for writer in writers {
        // With the organisation lock, each activation's rule sees the one that committed before it,
        // so the losers are refused by the rule, never by the index.
        match writer.await.expect("writer task finishes") {
            Ok(season) => {
                assert_eq!(season.status, SeasonStatus::Active);
                activated += 1;
            }
            Err(StoreError::Rejected(errors)) if errors.get("to").is_some() => {}
            Err(e) => panic!("expected success or a rule rejection, got {e:?}"),
        }
    }
    assert_eq!(activated, 1);
    let active =
        store.list_seasons(org).await.unwrap().into_iter().filter(|s| s.status == SeasonStatus::Active).count();
    assert_eq!(active, 1);
}

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
            async move { Ok::<_, Infallible>(written) }
        })
        .await
        .unwrap()
        .unwrap();
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
        .unwrap();
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
    let retried = store.record_batch(org, &failing, |_| async { Ok::<_, Infallible>(written) }).await.unwrap().unwrap();
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
        .unwrap();
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
        .unwrap();
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
    let beside = ExperimentInput { key: "a-beside".into(), ..input.clone() }.validate().unwrap();
    let beside = store.create_experiment(org, &beside).await.unwrap();
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
                        async { Ok::<_, Infallible>(written) }
                    })
                    .await
            })
        })
        .collect();
    let mut records = vec![];
    for writer in writers {
        match writer.await.expect("writer task finishes") {
            Ok(Ok(record)) => records.push(record),
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

// ---- runner fixtures -----------------------------------------------------------------------------

fn minutes(n: i64) -> chrono::Duration {
    chrono::Duration::minutes(n)
}

fn new_dataset<'a>(name: &'a str, digest: &'a str) -> NewDataset<'a> {
    NewDataset {
        name,
        kind: "sft",
        digest,
        rows: 1200,
        bytes: 480_000,
        path: "datasets/notes.jsonl",
        source: json!({"loop": "notes", "batches": [1, 2], "events": 1200}),
    }
}

fn new_job(kind: &str) -> NewJob<'_> {
    NewJob { kind, spec: json!({"dataset": "sha256:aa", "lr": 0.001, "batch": 8}), total_steps: 100 }
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
        kind: "sft",
        base_model_id: None,
        dataset_digest: Some("sha256:aa"),
        job_id: None,
        path: "models/notes",
        config: json!({"layers": 4, "d_model": 128}),
        parameters: 1_200_000,
        train_metrics: json!({"loss": 2.1, "steps": 100}),
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
async fn claim(store: &Store, worker: &str, lease: chrono::Duration, now: DateTime<Utc>) -> JobRecord {
    store.claim_job(worker, lease, now, None).await.unwrap().unwrap_or_else(|| panic!("{worker} claims a job"))
}

// ---- runner contracts ----------------------------------------------------------------------------

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
    assert_eq!(first.source, json!({"loop": "notes", "batches": [1, 2], "events": 1200}));
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
    assert_eq!((job.org_id, job.kind.as_str(), job.status.as_str()), (org.0, "sft", "pending"));
    assert_eq!(job.spec, json!({"dataset": "sha256:aa", "lr": 0.001, "batch": 8}));
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
    let expected = JobRecord {
        status: "running".into(),
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
    let result = json!({"model_id": 7, "loss": 2.1});
    assert!(!store.finish_job(job.id, "w2", "succeeded", Some(&result), None, t2).await.unwrap());
    assert_eq!(store.job(org, job.id).await.unwrap(), Some(running.clone()));
    assert_rejected(store.finish_job(job.id, "w1", "running", None, None, t2).await, "status");
    assert!(store.finish_job(job.id, "w1", "succeeded", Some(&result), None, t2).await.unwrap());
    let done = store.job(org, job.id).await.unwrap().unwrap();
    let expected = JobRecord {
        status: "succeeded".into(),
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
    assert!(!store.finish_job(job.id, "w1", "failed", None, Some("late"), t2).await.unwrap());
    assert_eq!(store.heartbeat_job(job.id, "w1", 41, 0.41, lease, t2).await.unwrap(), Heartbeat::LeaseLost);
    assert_eq!(store.cancel_job(org, job.id, t2).await.unwrap(), Some(done.clone()));
    assert_eq!(store.job(org, job.id).await.unwrap(), Some(done.clone()));

    let next = store.enqueue_job(org, &new_job("eval")).await.unwrap();
    assert_eq!(store.list_jobs(org, 10).await.unwrap(), vec![next.clone(), done], "newest first");
    assert_eq!(store.list_jobs(org, 1).await.unwrap(), vec![next]);
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
    assert_eq!((claimed.id, claimed.org_id), (theirs.id, other.0));
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
    assert!(!store.finish_job(job.id, "w1", "succeeded", Some(&json!({})), None, t2).await.unwrap());
    assert_eq!(store.job(org, job.id).await.unwrap(), Some(resumed.clone()));

    assert_eq!(store.heartbeat_job(job.id, "w2", 30, 0.3, lease, t2).await.unwrap(), Heartbeat::Continue);
    assert!(store.finish_job(job.id, "w2", "failed", None, Some("out of memory"), t2).await.unwrap());
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
    assert_eq!(failed.status, "failed");
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
    assert!(store.finish_job(running.id, "w1", "cancelled", None, None, t2).await.unwrap());
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
    assert!(jobs.iter().all(|j| j.status == "running" && j.attempts == 1), "{jobs:?}");
}

async fn contract_claims_filter_by_kind(store: Store) {
    let org = store.ensure_org("acme", "Acme").await.unwrap();
    let eval = store.enqueue_job(org, &new_job("eval")).await.unwrap();
    let sft = store.enqueue_job(org, &new_job("sft")).await.unwrap();
    let dpo = store.enqueue_job(org, &new_job("dpo")).await.unwrap();
    let now = at("2027-03-01T10:00:00Z");
    let lease = minutes(5);
    let by_kind = |kinds: &'static [&'static str]| {
        let store = store.clone();
        async move { store.claim_job("w", lease, now, Some(kinds)).await.unwrap().map(|j| j.id) }
    };
    assert_eq!(by_kind(&["pretrain"]).await, None);
    assert_eq!(by_kind(&[]).await, None);
    assert_eq!(by_kind(&["sft", "dpo"]).await, Some(sft.id));
    assert_eq!(by_kind(&["eval"]).await, Some(eval.id));
    assert_eq!(by_kind(&["eval"]).await, None);
    assert_eq!(store.claim_job("w", lease, now, None).await.unwrap().map(|j| j.id), Some(dpo.id));
}

async fn contract_models_and_aliases(store: Store) {
    let org = store.ensure_org("acme", "Acme").await.unwrap();
    let other = store.ensure_org("globex", "Globex").await.unwrap();
    let before = Utc::now();
    let base =
        store.create_model(org, &NewModel { kind: "pretrain", dataset_digest: None, ..new_model("base", None) }).await;
    let base = base.unwrap();
    assert_eq!((base.name.as_str(), base.loop_key.as_deref(), base.kind.as_str()), ("base", None, "pretrain"));
    assert_eq!((base.base_model_id, base.dataset_digest.as_deref(), base.job_id), (None, None, None));
    assert_eq!((base.path.as_str(), base.parameters), ("models/notes", 1_200_000));
    assert_eq!(base.config, json!({"layers": 4, "d_model": 128}));
    assert_eq!(base.train_metrics, json!({"loss": 2.1, "steps": 100}));
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
    let scores = json!({"exact_match": 0.4, "perplexity": 8.5});
    let evaluated = store.set_model_eval(org, tuned.id, &scores, 0.42, t0).await.unwrap();
    let expected =
        ModelRecord { eval: Some(scores.clone()), reward: Some(0.42), evaluated_at: Some(t0), ..tuned.clone() };
    assert_eq!(evaluated, expected);
    assert_eq!(store.model(org, tuned.id).await.unwrap(), Some(expected));
    assert_not_found(store.set_model_eval(other, tuned.id, &scores, 0.9, t0).await, "model", tuned.id);
    assert_eq!(store.model(other, theirs.id).await.unwrap(), Some(theirs.clone()));

    let challenger = store.set_alias(org, "notes", "challenger", tuned.id, t0).await.unwrap();
    let expected =
        AliasRecord { loop_key: "notes".into(), alias: "challenger".into(), model_id: tuned.id, updated_at: t0 };
    assert_eq!(challenger, expected);
    assert_eq!(store.alias(org, "notes", "challenger").await.unwrap(), Some(expected));
    let t1 = t0 + minutes(1);
    let champion = store.set_alias(org, "notes", "champion", base.id, t0).await.unwrap();
    let replaced = store.set_alias(org, "notes", "challenger", base.id, t1).await.unwrap();
    assert_eq!((replaced.model_id, replaced.updated_at), (base.id, t1));
    let mail = store.set_alias(org, "mail", "champion", tuned.id, t1).await.unwrap();
    assert_eq!(store.aliases(org, None).await.unwrap(), vec![mail, replaced.clone(), champion.clone()]);
    assert_eq!(store.aliases(org, Some("notes")).await.unwrap(), vec![replaced, champion]);
    assert_not_found(store.set_alias(org, "notes", "champion", theirs.id, t1).await, "model", theirs.id);
    assert_eq!(store.alias(org, "notes", "champion").await.unwrap().map(|a| a.model_id), Some(base.id));
    assert_eq!(store.alias(other, "notes", "challenger").await.unwrap(), None);
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
        |store: Store| async move { store.alias(org, "notes", "champion").await.unwrap().map(|a| a.model_id) };
    let challenger =
        |store: Store| async move { store.alias(org, "notes", "challenger").await.unwrap().map(|a| a.model_id) };

    // The loop's first champion.
    store.set_alias(org, "notes", "challenger", first.id, t0).await.unwrap();
    let d1 = json!({"reward": 0.4, "champion_reward": null});
    let p1 = store.record_promotion(org, "notes", first.id, None, true, &d1, t0).await.unwrap();
    let expected = PromotionRecord {
        id: p1.id,
        loop_key: "notes".into(),
        challenger_id: first.id,
        champion_id: None,
        accepted: true,
        decision: d1,
        at: t0,
    };
    assert_eq!(p1, expected);
    let crowned = store.alias(org, "notes", "champion").await.unwrap().unwrap();
    assert_eq!((crowned.model_id, crowned.updated_at), (first.id, t0));
    assert_eq!(challenger(store.clone()).await, None, "the promoted challenger's alias is removed");

    // A refused challenger is recorded and leaves the aliases alone.
    let t1 = t0 + minutes(10);
    store.set_alias(org, "notes", "challenger", second.id, t1).await.unwrap();
    let d2 = json!({"reward": 0.38, "champion_reward": 0.4});
    let p2 = store.record_promotion(org, "notes", second.id, Some(first.id), false, &d2, t1).await.unwrap();
    assert_eq!((p2.challenger_id, p2.champion_id, p2.accepted), (second.id, Some(first.id), false));
    assert_eq!((champion(store.clone()).await, challenger(store.clone()).await), (Some(first.id), Some(second.id)));

    // Decisions based on a stale champion are refused whole: no row, no alias change.
    let t2 = t0 + minutes(20);
    let stale = store.record_promotion(org, "notes", second.id, None, true, &json!({}), t2).await;
    assert_conflict(stale, "champion", second.id, 0, first.id);
    let stale = store.record_promotion(org, "notes", second.id, Some(third.id), true, &json!({}), t2).await;
    assert_conflict(stale, "champion", second.id, third.id, first.id);
    assert_eq!(store.promotions(org, Some("notes")).await.unwrap(), vec![p2.clone(), p1.clone()]);
    assert_eq!((champion(store.clone()).await, challenger(store.clone()).await), (Some(first.id), Some(second.id)));

    // Another organisation's model can be neither challenger nor recorded.
    let foreign = store.record_promotion(org, "notes", theirs.id, Some(first.id), true, &json!({}), t2).await;
    assert_not_found(foreign, "model", theirs.id);
    let foreign = store.record_promotion(org, "notes", theirs.id, Some(first.id), false, &json!({}), t2).await;
    assert_not_found(foreign, "model", theirs.id);

    let d3 = json!({"reward": 0.5, "champion_reward": 0.4});
    let p3 = store.record_promotion(org, "notes", second.id, Some(first.id), true, &d3, t2).await.unwrap();
    assert_eq!((p3.champion_id, p3.accepted), (Some(first.id), true));
    assert_eq!((champion(store.clone()).await, challenger(store.clone()).await), (Some(second.id), None));

    // Promoting a model that is not the challenger (a rollback) keeps the challenger alias.
    let t3 = t0 + minutes(30);
    store.set_alias(org, "notes", "challenger", third.id, t3).await.unwrap();
    let rollback = json!({"rollback": true});
    let p4 = store.record_promotion(org, "notes", first.id, Some(second.id), true, &rollback, t3).await.unwrap();
    assert_eq!((champion(store.clone()).await, challenger(store.clone()).await), (Some(first.id), Some(third.id)));

    // Listed newest first by decision time, whatever order they were stored in.
    let early = t0 - minutes(60);
    let p0 = store.record_promotion(org, "mail", third.id, None, false, &json!({}), early).await.unwrap();
    assert_eq!(store.promotions(org, None).await.unwrap(), vec![p4.clone(), p3.clone(), p2.clone(), p1.clone(), p0]);
    assert_eq!(store.promotions(org, Some("notes")).await.unwrap(), vec![p4, p3, p2, p1]);
    assert!(store.promotions(other, None).await.unwrap().is_empty());
    assert_eq!(store.alias(other, "notes", "champion").await.unwrap(), None);
}

async fn contract_impressions_wait_for_their_outcome(store: Store) {
    let org = store.ensure_org("acme", "Acme").await.unwrap();
    let other = store.ensure_org("globex", "Globex").await.unwrap();
    let t0 = at("2027-03-01T10:00:00Z");
    let first = store.record_impression(org, &new_impression("e-1", t0)).await.unwrap();
    let expected = ImpressionRecord {
        id: first.id,
        org_id: org.0,
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
    let expected = ImpressionRecord {
        accepted_chars: Some(7),
        final_text: Some("mild pain".into()),
        outcome_at: Some(t1),
        ..second
    };
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
    let result = json!({ "train": { "steps": 30 } });

    // The worker that lost its lease finishes training late: it registers nothing at all.
    let stale = store.complete_training_job(job.id, "w1", &model, Some("notes"), &result, t1).await.unwrap();
    assert_eq!(stale, None);
    assert_eq!(store.model_by_name(org, "notes-sft-j1").await.unwrap(), None);
    assert_eq!(store.alias(org, "notes", "challenger").await.unwrap(), None);
    assert_eq!(store.job(org, job.id).await.unwrap().unwrap().status, "running");

    // The holder registers the model, names it the loop's challenger and ends the job, together.
    let t2 = t1 + minutes(1);
    let record = store.complete_training_job(job.id, "w2", &model, Some("notes"), &result, t2).await.unwrap().unwrap();
    assert_eq!((record.name.as_str(), record.job_id), ("notes-sft-j1", Some(job.id)));
    assert_eq!(store.alias(org, "notes", "challenger").await.unwrap().map(|a| a.model_id), Some(record.id));
    let done = store.job(org, job.id).await.unwrap().unwrap();
    assert_eq!((done.status.as_str(), done.finished_at, done.lease_owner), ("succeeded", Some(t2), None));
    assert_eq!(done.step, done.total_steps);
    let result = done.result.unwrap();
    assert_eq!((result["model_id"].as_i64(), result["model"].as_str()), (Some(record.id), Some("notes-sft-j1")));
    assert_eq!(result["train"]["steps"], 30);
    // Done is done: a second completion registers nothing.
    let again = NewModel { ..new_model("notes-sft-j1-again", Some("notes")) };
    assert_eq!(store.complete_training_job(job.id, "w2", &again, None, &json!({}), t2).await.unwrap(), None);
}

/// The actor of writes in these tests: the system, which may do anything, as the service layer has
/// already authorized the caller before it reaches the store.
fn sys(org: OrgId) -> Actor {
    Actor::system(org, "contract-test")
}

// ---- access, audit and plans as code -------------------------------------------------------------

fn person(org: OrgId, email: &str) -> Actor {
    Actor { org, principal: Principal::User { id: UserId(1), email: email.into(), role: Role::Leader, squads: vec![] } }
}

async fn contract_plan_writes_are_audited(store: Store) {
    let org = store.ensure_org("acme", "Acme").await.unwrap();
    let ann = person(org, "ann@acme.test");
    let spec = season_spec("H1", "2027-01-01", "2027-06-30");
    let season = store.create_season(&ann, &spec, |_| Ok(())).await.unwrap();
    let renamed = SeasonSpec { name: Title::parse("H1, renamed").unwrap(), ..spec.clone() };
    store.update_season(&ann, season.id, season.version, &renamed, |_, _| Ok(())).await.unwrap();
    // A refused write leaves no audit record.
    let stale = store.update_season(&ann, season.id, season.version, &renamed, |_, _| Ok(())).await;
    assert!(matches!(stale, Err(StoreError::Conflict { .. })), "{stale:?}");

    let trail = store.audit_log(org, Some(("season", season.id.0)), None, 10).await.unwrap();
    assert_eq!(trail.len(), 2, "{trail:?}");
    let (update, create) = (&trail[0], &trail[1]);
    assert_eq!((create.action.as_str(), create.actor.as_str()), ("create", "ann@acme.test"));
    assert!(create.before.is_none() && create.after.as_ref().is_some_and(|a| a["name"] == "H1"));
    assert_eq!(update.action, "update");
    assert_eq!(update.before.as_ref().map(|b| b["name"].clone()), Some(json!("H1")));
    assert_eq!(update.after.as_ref().map(|a| a["name"].clone()), Some(json!("H1, renamed")));
    assert!(update.id > create.id);

    // Another organisation sees none of it.
    let other = store.ensure_org("globex", "Globex").await.unwrap();
    assert!(store.audit_log(other, None, None, 10).await.unwrap().is_empty());
    // Paging goes back from an id.
    let older = store.audit_log(org, None, Some(update.id), 10).await.unwrap();
    assert_eq!(older.iter().map(|r| r.id).collect::<Vec<_>>(), vec![create.id]);
}

async fn contract_keys_are_chosen_and_unique(store: Store) {
    let org = store.ensure_org("acme", "Acme").await.unwrap();
    let (season, _, _) = small_plan(&store, org).await;
    assert_eq!(season.key, "h1", "a key made from the name");
    let a = store.create_objective(&sys(org), season.id, &objective_spec(&season, "2027-Q1", "Ship it")).await.unwrap();
    let b =
        store.create_objective(&sys(org), season.id, &objective_spec(&season, "2027-Q2", "Ship it!")).await.unwrap();
    assert_eq!((a.key.as_str(), b.key.as_str()), ("ship-it", "ship-it-2"), "the second gets a suffix");
    assert!(store.plan_key_taken(org, "objective", "ship-it-2").await.unwrap());
    assert!(!store.plan_key_taken(org, "objective", "ship-it-3").await.unwrap());
    let other = store.ensure_org("globex", "Globex").await.unwrap();
    assert!(!store.plan_key_taken(other, "objective", "ship-it").await.unwrap(), "keys are per organisation");
}

async fn contract_a_plan_applies_whole_or_not_at_all(store: Store) {
    let org = store.ensure_org("acme", "Acme").await.unwrap();
    let actor = person(org, "ann@acme.test");
    let season = season_spec("H1", "2027-01-01", "2027-06-30");
    let ok_season = |_: &SeasonSpec, _: Option<SeasonId>, _: &[Season]| Ok(());
    let decide = by_the_rules_fn("active");
    let stored = create_season(&store, org, "H0", "2026-01-01", "2026-06-30").await;
    let objective = |title: &str| {
        ObjectiveInput {
            quarter: "2027-Q1".into(),
            title: title.into(),
            commitment: "committed".into(),
            ..Default::default()
        }
        .validate(&season.dates)
        .unwrap()
    };
    let ops = vec![
        PlanOp::CreateSeason { key: "h1".into(), spec: season.clone() },
        PlanOp::TransitionSeason { season: PlanRef::Key("h1".into()) },
        PlanOp::CreateObjective { key: "trust".into(), season: PlanRef::Key("h1".into()), spec: objective("Trust") },
        PlanOp::CreateKeyResult {
            key: "acceptance".into(),
            objective: PlanRef::Key("trust".into()),
            spec: key_result_spec("Acceptance", increase(0.2, 0.3, "")),
        },
        PlanOp::CreateSquad { key: "drafts".into(), spec: squad_spec("Drafts") },
    ];
    // A plan whose last operation fails (an update of another season at a stale version) leaves nothing.
    let mut failing = ops.clone();
    let stale = Version(stored.version.0 + 5);
    failing.push(PlanOp::UpdateSeason {
        id: stored.id,
        version: stale,
        spec: season_spec("H0", "2026-01-01", "2026-06-30"),
    });
    let refused = store.apply_plan(&actor, &failing, ok_season, &decide).await;
    assert!(matches!(refused, Err(StoreError::Conflict { .. })), "{refused:?}");
    assert_eq!(store.list_seasons(org).await.unwrap().len(), 1, "the failed plan created nothing");
    assert!(store.list_squads(org).await.unwrap().is_empty());
    assert!(store.audit_log(org, Some(("objective", 1)), None, 10).await.unwrap().is_empty());

    store.apply_plan(&actor, &ops, ok_season, &decide).await.unwrap();
    let h1 = store.season_by_key(org, "h1").await.unwrap();
    assert_eq!(h1.status, SeasonStatus::Active, "created and moved to active in the same plan");
    let krs = store.list_key_results(org, h1.id).await.unwrap();
    assert_eq!((krs.len(), krs[0].key.as_str()), (1, "acceptance"));
    let objectives = store.list_objectives(org, h1.id).await.unwrap();
    assert_eq!(krs[0].objective_id, objectives[0].id, "the key result found its objective by key");

    // Deletions: children first, recorded, and the plan as known before them still has them.
    let before = Utc::now();
    tick().await;
    let deletes = vec![PlanOp::DeleteKeyResult { id: krs[0].id }, PlanOp::DeleteObjective { id: objectives[0].id }];
    store.apply_plan(&actor, &deletes, ok_season, &decide).await.unwrap();
    assert!(store.list_objectives(org, h1.id).await.unwrap().is_empty());
    let trail = store.audit_log(org, Some(("objective", objectives[0].id.0)), None, 10).await.unwrap();
    assert_eq!((trail[0].action.as_str(), trail[0].after.is_none()), ("delete", true), "{trail:?}");
    assert_eq!(store.plan_as_of(org, before).await.unwrap().objectives.len(), 1);
    assert!(store.plan_as_of(org, Utc::now()).await.unwrap().objectives.is_empty());
    let gone = store.apply_plan(&actor, &deletes[..1], ok_season, &decide).await;
    assert!(matches!(gone, Err(StoreError::NotFound { .. })), "{gone:?}");
}

fn by_the_rules_fn(
    to: &'static str,
) -> impl Fn(&Season, &[Season]) -> Result<(SeasonStatus, Option<String>), FieldErrors> {
    move |current, all| by_the_rules(to, "")(current, all)
}

async fn contract_members_sessions_and_tokens(store: Store) {
    let org = store.ensure_org("acme", "Acme").await.unwrap();
    let admin = Actor::system(org, "test");
    let squad = store.create_squad(&admin, &squad_spec("Drafts")).await.unwrap();
    let input = MemberInput {
        email: "Sam@Acme.test".into(),
        role: "squad-member".into(),
        squads: vec![squad.id.0],
        password: Some("long enough pass".into()),
        ..Default::default()
    };
    let spec = input.validate().unwrap();
    let member = store.upsert_member(&admin, &spec, Some("$argon2id$hash")).await.unwrap();
    assert_eq!(
        (member.email.as_str(), member.role, member.squads.clone()),
        ("sam@acme.test", Role::SquadMember, vec![squad.id])
    );
    // Changing the role keeps the account and its password, and is audited with before and after.
    let leader = MemberSpec { role: Role::Leader, squads: vec![], ..spec.clone() };
    let changed = store.upsert_member(&admin, &leader, None).await.unwrap();
    assert_eq!((changed.user_id, changed.role, changed.version.0), (member.user_id, Role::Leader, 2));
    assert_eq!(store.user_by_email("sam@acme.test").await.unwrap().unwrap().password_hash, "$argon2id$hash");
    let trail = store.audit_log(org, Some(("membership", member.user_id.0)), None, 10).await.unwrap();
    assert_eq!(trail.iter().map(|r| r.action.as_str()).collect::<Vec<_>>(), ["update", "create"]);
    // A squad of another organisation cannot be given.
    let other = store.ensure_org("globex", "Globex").await.unwrap();
    let foreign = store.create_squad(&Actor::system(other, "test"), &squad_spec("Theirs")).await.unwrap();
    let refused = store.upsert_member(&admin, &MemberSpec { squads: vec![foreign.id], ..spec.clone() }, None).await;
    assert!(matches!(refused, Err(StoreError::Rejected(_))), "{refused:?}");

    // Sessions: live until they expire or are deleted; the membership's current role is what counts.
    let now = Utc::now();
    store.create_session("digest-1", member.user_id, org, now + chrono::Duration::hours(1)).await.unwrap();
    let session = store.session("digest-1", now).await.unwrap().expect("a live session");
    assert_eq!((session.role.as_str(), session.email.as_str()), ("leader", "sam@acme.test"));
    assert!(store.session("digest-1", now + chrono::Duration::hours(2)).await.unwrap().is_none(), "expired");
    store.delete_session("digest-1").await.unwrap();
    assert!(store.session("digest-1", now).await.unwrap().is_none(), "signed out");
    store.create_session("digest-2", member.user_id, org, now + chrono::Duration::hours(1)).await.unwrap();
    store.remove_member(&admin, member.user_id).await.unwrap();
    assert!(store.session("digest-2", now).await.unwrap().is_none(), "removing a member ends their sessions");

    // Login attempts are counted per account and per address, failures only.
    for _ in 0..3 {
        store.record_login_attempt("sam@acme.test", "10.0.0.1").await.unwrap();
    }
    let good = store.record_login_attempt("sam@acme.test", "10.0.0.1").await.unwrap();
    store.login_succeeded(good).await.unwrap();
    store.record_login_attempt("eve@acme.test", "10.0.0.2").await.unwrap();
    let since = now - chrono::Duration::minutes(1);
    assert_eq!(store.failed_logins("sam@acme.test", "10.0.0.2", since).await.unwrap(), (3, 1));

    // Tokens: found by digest until revoked; use is recorded; another organisation cannot revoke them.
    let token = store.create_token(&admin, "ingest", &[Scope::Ingest], "slope_abc", "token-digest").await.unwrap();
    let (found_org, found) = store.use_token("token-digest", now).await.unwrap().expect("a live token");
    assert_eq!((found_org, found.scopes.clone()), (org, vec![Scope::Ingest]));
    assert!(store.list_tokens(org).await.unwrap()[0].last_used_at.is_some());
    let wrong = store.revoke_token(&Actor::system(other, "test"), token.id).await;
    assert!(matches!(wrong, Err(StoreError::NotFound { .. })), "{wrong:?}");
    store.revoke_token(&admin, token.id).await.unwrap();
    assert!(store.use_token("token-digest", now).await.unwrap().is_none(), "a revoked token is dead");
    let trail = store.audit_log(org, Some(("api_token", token.id)), None, 10).await.unwrap();
    assert_eq!(trail.iter().map(|r| r.action.as_str()).collect::<Vec<_>>(), ["update", "create"]);
    assert!(
        trail.iter().all(|r| !r.after.as_ref().unwrap().to_string().contains("token-digest")),
        "no secret on the trail"
    );
}

async fn contract_units_form_a_tree(store: Store) {
    let org = store.ensure_org("acme", "Acme").await.unwrap();
    let admin = Actor::system(org, "test");
    // A squad naming a new unit creates it.
    store.create_squad(&admin, &squad_spec("Drafts")).await.unwrap();
    assert_eq!(store.list_units(org).await.unwrap().iter().map(|u| u.name.as_str()).collect::<Vec<_>>(), ["Clinical"]);
    store.put_unit(&admin, "Product", None).await.unwrap();
    let clinical = store.put_unit(&admin, "Clinical", Some("Product")).await.unwrap();
    assert_eq!(clinical.parent.as_deref(), Some("Product"));
    let cycle = store.put_unit(&admin, "Product", Some("Clinical")).await;
    assert!(matches!(cycle, Err(StoreError::Rejected(_))), "a unit under its own sub-unit: {cycle:?}");
    let unknown = store.put_unit(&admin, "Clinical", Some("Nowhere")).await;
    assert!(matches!(unknown, Err(StoreError::Rejected(_))), "{unknown:?}");
    let other = store.ensure_org("globex", "Globex").await.unwrap();
    assert!(store.list_units(other).await.unwrap().is_empty());
}

async fn contract_thesis_signals_are_raised_once_and_resolved_once(store: Store) {
    let org = store.ensure_org("acme", "Acme").await.unwrap();
    let (season, _, _) = small_plan(&store, org).await;
    let signal = |fingerprint: &str| NewSignal {
        kind: SignalKind::BetKilled,
        fingerprint: fingerprint.into(),
        subject: "Agents ask".into(),
        summary: "The slope bet was killed".into(),
        evidence: serde_json::json!({ "goal_id": 7, "criteria": "half dismissed" }),
    };
    let now = Utc::now();
    assert!(store.raise_signal(org, season.id, &signal("bet-killed:goal-7"), now).await.unwrap());
    // The same evidence again, as a second server would detect it, raises nothing.
    assert!(!store.raise_signal(org, season.id, &signal("bet-killed:goal-7"), now).await.unwrap());
    tick().await;
    assert!(store.raise_signal(org, season.id, &signal("bet-killed:goal-8"), Utc::now()).await.unwrap());
    let listed = store.list_signals(org, season.id).await.unwrap();
    assert_eq!(
        listed.iter().map(|s| s.fingerprint.as_str()).collect::<Vec<_>>(),
        ["bet-killed:goal-8", "bet-killed:goal-7"]
    );
    let first = listed[1].clone();
    assert_eq!(first.evidence["criteria"], "half dismissed");
    assert_eq!((first.kind, first.resolved_at.is_none()), (SignalKind::BetKilled, true));

    let leader = Actor::system(org, "leader");
    let resolved = store.resolve_signal(&leader, first.id, "The thesis stands", Utc::now()).await.unwrap().unwrap();
    assert_eq!(resolved.resolution.as_deref(), Some("The thesis stands"));
    assert_eq!(resolved.resolved_by.as_deref(), Some("system:leader"));
    // A second resolution changes nothing and hands back the first.
    let again = store.resolve_signal(&leader, first.id, "Changed my mind", Utc::now()).await.unwrap();
    assert_eq!(again.unwrap_err().resolution.as_deref(), Some("The thesis stands"));
    let trail = store.audit_log(org, Some(("thesis_signal", first.id)), None, 10).await.unwrap();
    assert_eq!(trail.len(), 1, "one resolution, one audit record: {trail:?}");
    assert_eq!(trail[0].after.as_ref().map(|a| a["resolution"].clone()), Some(serde_json::json!("The thesis stands")));

    // One open reversal per metric, whichever server saw which newest point first; once resolved, the
    // next reversal of the metric is raised.
    let reversal = |fingerprint: &str| NewSignal {
        kind: SignalKind::MetricReversal,
        fingerprint: fingerprint.into(),
        subject: "quality".into(),
        summary: "quality fell".into(),
        evidence: serde_json::json!({}),
    };
    assert!(store.raise_signal(org, season.id, &reversal("reversal:quality:2027-02-14"), Utc::now()).await.unwrap());
    assert!(!store.raise_signal(org, season.id, &reversal("reversal:quality:2027-02-15"), Utc::now()).await.unwrap());
    let open = store.list_signals(org, season.id).await.unwrap().into_iter().find(|s| s.subject == "quality").unwrap();
    store.resolve_signal(&leader, open.id, "Noise", Utc::now()).await.unwrap().unwrap();
    assert!(store.raise_signal(org, season.id, &reversal("reversal:quality:2027-03-01"), Utc::now()).await.unwrap());

    // Another organisation sees none of it and cannot resolve it.
    let other = store.ensure_org("globex", "Globex").await.unwrap();
    assert!(store.list_signals(other, season.id).await.unwrap().is_empty());
    let foreign = store.resolve_signal(&Actor::system(other, "x"), listed[0].id, "mine", Utc::now()).await;
    assert!(matches!(foreign, Err(StoreError::NotFound { .. })), "{foreign:?}");
}
