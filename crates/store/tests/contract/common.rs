//! Fixtures that contracts of several store areas share: a small plan to attach things to, fixed
//! instants, and assertions on the store's errors. Fixtures that only one area uses live in that
//! area's module.

use std::fmt::Debug;
use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};

use slope_domain::*;
use slope_store::{Store, StoreError};

pub(crate) fn date(raw: &str) -> NaiveDate {
    raw.parse().expect("fixture dates are valid")
}

pub(crate) fn season_input(name: &str, starts_on: &str, ends_on: &str) -> SeasonInput {
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

pub(crate) fn season_spec(name: &str, starts_on: &str, ends_on: &str) -> SeasonSpec {
    season_input(name, starts_on, ends_on).validate().expect("fixture season is valid")
}

/// Creates a season the way the service does: refusing overlaps with the organisation's others.
pub(crate) async fn create_season(store: &Store, org: OrgId, name: &str, start: &str, end: &str) -> Season {
    let spec = season_spec(name, start, end);
    store
        .create_season(&sys(org), &spec, |others| check_no_overlap(&spec.dates, others, None))
        .await
        .expect("season is created")
}

pub(crate) fn objective_spec(season: &Season, quarter: &str, title: &str) -> ObjectiveSpec {
    ObjectiveInput {
        quarter: quarter.into(),
        title: title.into(),
        commitment: "committed".into(),
        ..Default::default()
    }
    .validate(&season.dates())
    .expect("fixture objective is valid")
}

pub(crate) fn measure(kind: &str) -> MeasureInput {
    MeasureInput { kind: kind.into(), ..Default::default() }
}

/// Inputs carry the measure's fields flat; this sets them from a `MeasureInput`.
pub(crate) fn goal_with(mut input: SquadGoalInput, measure: MeasureInput) -> SquadGoalInput {
    input.set_measure(measure);
    input
}

pub(crate) fn key_result_with(mut input: KeyResultInput, measure: MeasureInput) -> KeyResultInput {
    input.set_measure(measure);
    input
}

pub(crate) fn key_result_spec(title: &str, measure: MeasureInput) -> KeyResultSpec {
    key_result_with(KeyResultInput { title: title.into(), ..Default::default() }, measure)
        .validate()
        .expect("fixture key result is valid")
}

pub(crate) fn increase(start: f64, target: f64, unit: &str) -> MeasureInput {
    MeasureInput { start: Some(start), target: Some(target), unit: unit.into(), ..measure("increase-to") }
}

pub(crate) fn squad_spec(name: &str) -> SquadSpec {
    SquadInput { name: name.into(), unit: "Clinical".into(), capacity: Some(12.0) }
        .validate()
        .expect("fixture squad is valid")
}

/// A season with one Q1 objective and one key result, the smallest plan that check-ins attach to.
pub(crate) async fn small_plan(store: &Store, org: OrgId) -> (Season, Objective, KeyResult) {
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
pub(crate) async fn tick() {
    tokio::time::sleep(Duration::from_millis(20)).await;
}

#[track_caller]
pub(crate) fn assert_not_found<T: Debug>(result: Result<T, StoreError>, entity: &str, id: i64) {
    match result {
        Err(StoreError::NotFound { entity: e, id: i }) if e == entity && i == id => {}
        other => panic!("expected {entity} {id} not found, got {other:?}"),
    }
}

#[track_caller]
pub(crate) fn assert_conflict<T: Debug>(
    result: Result<T, StoreError>,
    entity: &str,
    id: i64,
    expected: i64,
    actual: i64,
) {
    match result {
        Err(StoreError::Conflict { entity: e, id: i, expected: x, actual: a })
            if e == entity && i == id && x == expected && a == actual => {}
        other => panic!("expected a conflict on {entity} {id} (edited {expected}, stored {actual}), got {other:?}"),
    }
}

#[track_caller]
pub(crate) fn assert_rejected<T: Debug>(result: Result<T, StoreError>, field: &str) -> FieldErrors {
    match result {
        Err(StoreError::Rejected(errors)) if errors.get(field).is_some() => errors,
        other => panic!("expected a rejection on {field:?}, got {other:?}"),
    }
}

/// A fixed instant. Fixtures avoid the clock so that stored times compare exactly on both backends:
/// PostgreSQL keeps microseconds, and SQLite keeps the RFC 3339 text it was given.
pub(crate) fn at(raw: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(raw).expect("fixture times are valid").with_timezone(&Utc)
}

pub(crate) fn minutes(n: i64) -> chrono::Duration {
    chrono::Duration::minutes(n)
}

/// The actor of writes in these tests: the system, which may do anything, as the service layer has
/// already authorized the caller before it reaches the store.
pub(crate) fn sys(org: OrgId) -> Actor {
    Actor::system(org, "contract-test")
}
