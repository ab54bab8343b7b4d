//! Contracts of the plan (`src/plan.rs`): organisations, seasons and their transitions, objectives, key
//! results, squads, goals, check-ins, the plan as of a past instant, and plans applied as code.

use std::sync::Arc;

use chrono::{DateTime, Utc};

use serde_json::json;
use slope_domain::*;
use slope_store::{PlanOp, PlanRef, Store, StoreError};

use crate::common::*;

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
    contract_plan_writes_are_audited =>
        plan_writes_are_audited_sqlite, plan_writes_are_audited_postgres;
    contract_keys_are_chosen_and_unique =>
        keys_are_chosen_and_unique_sqlite, keys_are_chosen_and_unique_postgres;
    contract_a_plan_applies_whole_or_not_at_all =>
        a_plan_applies_whole_or_not_at_all_sqlite, a_plan_applies_whole_or_not_at_all_postgres;
}

// ---- fixtures ------------------------------------------------------------------------------------

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

fn by_the_rules_fn(
    to: &'static str,
) -> impl Fn(&Season, &[Season]) -> Result<(SeasonStatus, Option<String>), FieldErrors> {
    move |current, all| by_the_rules(to, "")(current, all)
}

fn check_in_spec(measure: &Measure, value: f64, confidence: Option<f64>) -> CheckInSpec {
    CheckInInput { value: Some(value), confidence, author: "Ana".into(), ..Default::default() }
        .validate(measure)
        .expect("fixture check-in is valid")
}

fn person(org: OrgId, email: &str) -> Actor {
    Actor { org, principal: Principal::User { id: UserId(1), email: email.into(), role: Role::Leader, squads: vec![] } }
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
