//! Contracts of annotation (`src/annotations.rs`): queues and their versions, items, leases under
//! concurrency, submissions and their refusals, imports, gold answers and the counts pages read.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use slope_domain::*;
use slope_store::{ImportedRow, NewItem, Store, StoreError};

use crate::common::*;

contract_tests! {
    contract_queues_are_versioned =>
        queues_are_versioned_sqlite, queues_are_versioned_postgres;
    contract_items_are_leased_and_answered =>
        items_are_leased_and_answered_sqlite, items_are_leased_and_answered_postgres;
    contract_refused_submissions_store_nothing =>
        refused_submissions_store_nothing_sqlite, refused_submissions_store_nothing_postgres;
    contract_concurrent_annotators_never_exceed_the_overlap =>
        concurrent_annotators_never_exceed_the_overlap_sqlite, concurrent_annotators_never_exceed_the_overlap_postgres
        [flavor = "multi_thread", worker_threads = 4];
    contract_imports_are_all_or_nothing =>
        imports_are_all_or_nothing_sqlite, imports_are_all_or_nothing_postgres;
    contract_gold_and_daily_counts =>
        gold_and_daily_counts_sqlite, gold_and_daily_counts_postgres;
}

// ---- fixtures ------------------------------------------------------------------------------------

fn queue_spec(key: &str, overlap: i64, labels: LabelSchema) -> QueueSpec {
    QueueInput {
        key: key.into(),
        name: format!("Queue {key}"),
        loop_key: "notes".into(),
        sampling: SamplingInput { policy: "random".into(), share: Some(0.5), ..Default::default() },
        guidelines: "Correct the suggestion.".into(),
        labels,
        annotators_per_item: Some(overlap),
        ..Default::default()
    }
    .validate()
    .expect("fixture queue is valid")
}

fn correcting() -> LabelSchema {
    LabelSchema { correction: true, rating: true, ..Default::default() }
}

fn new_item(n: usize, alternative: bool) -> NewItem {
    NewItem {
        event_id: format!("e{n}"),
        event_at: at("2027-03-01T09:00:00Z"),
        context: format!("Pt {n} reports cough. Plan: "),
        suggestion: Some("rest".into()),
        final_text: Some("rest and fluids".into()),
        suggested_chars: 4,
        accepted_chars: 4,
        alternative: alternative.then(|| Alternative { text: "ice".into(), model_id: 7, model: "challenger".into() }),
    }
}

fn labelled(text: &str) -> Submission {
    Submission {
        outcome: AnnotationOutcome::Labelled,
        labels: Labels { correction: Some(text.into()), rating: Some(4), ..Default::default() },
        note: None,
    }
}

fn outcome(outcome: AnnotationOutcome, note: Option<&str>) -> Submission {
    Submission { outcome, labels: Labels::default(), note: note.map(str::to_owned) }
}

/// A queue with `items` items needing `overlap` annotations each.
async fn queue_with_items(store: &Store, org: OrgId, key: &str, overlap: i64, items: usize) -> AnnotationQueue {
    let queue = store.create_queue(&sys(org), &queue_spec(key, overlap, correcting())).await.unwrap();
    let new: Vec<NewItem> = (0..items).map(|n| new_item(n, false)).collect();
    assert_eq!(store.add_items(&sys(org), queue.id, queue.version, overlap, &new).await.unwrap(), items);
    queue
}

#[track_caller]
fn assert_contended<T: std::fmt::Debug>(result: Result<T, StoreError>, says: &str) {
    match result {
        Err(StoreError::Contended(message)) if message.contains(says) => {}
        other => panic!("expected a contention saying {says:?}, got {other:?}"),
    }
}

fn lease() -> chrono::Duration {
    minutes(10)
}

// ---- contracts -----------------------------------------------------------------------------------

async fn contract_queues_are_versioned(store: Store) {
    let org = store.ensure_org("acme", "Acme").await.unwrap();
    let other = store.ensure_org("globex", "Globex").await.unwrap();
    let spec = queue_spec("review", 1, correcting());
    let queue = store.create_queue(&sys(org), &spec).await.unwrap();
    assert_eq!((queue.key.as_str(), queue.loop_key.as_str(), queue.version), ("review", "notes", 1));
    assert_eq!(queue.settings, spec.settings);
    assert_rejected(store.create_queue(&sys(org), &spec).await, "key");
    // Another organisation may use the key, and does not see this one.
    store.create_queue(&sys(other), &spec).await.unwrap();
    assert_eq!(store.list_queues(other, None).await.unwrap().len(), 1);

    let mut settings = spec.settings.clone();
    settings.annotators_per_item = 3;
    let updated = store.update_queue(&sys(org), "review", Version(1), &settings).await.unwrap();
    assert_eq!((updated.version, updated.settings.annotators_per_item), (2, 3));
    assert_conflict(
        store.update_queue(&sys(org), "review", Version(1), &settings).await,
        "annotation queue",
        queue.id,
        1,
        2,
    );
    let versions = store.queue_versions(org, queue.id).await.unwrap();
    assert_eq!(versions.iter().map(|v| (v.0, v.1.annotators_per_item)).collect::<Vec<_>>(), [(1, 1), (2, 3)]);
    assert_eq!(store.queue(org, "review").await.unwrap().unwrap().version, 2);
    assert_eq!(store.list_queues(org, Some("other-loop")).await.unwrap(), []);

    // Items keep the version they were sampled under; an event enters a queue once.
    store.add_items(&sys(org), queue.id, 1, 1, &[new_item(1, false)]).await.unwrap();
    let added = store.add_items(&sys(org), queue.id, 2, 3, &[new_item(1, false), new_item(2, false)]).await.unwrap();
    assert_eq!(added, 1);
    let items = store.queue_items(org, queue.id, None).await.unwrap();
    assert_eq!(
        items.iter().map(|i| (i.event_id.as_str(), i.queue_version, i.needed)).collect::<Vec<_>>(),
        [("e1", 1, 1), ("e2", 2, 3)]
    );
    assert_eq!(store.queue_event_ids(org, queue.id).await.unwrap(), HashSet::from(["e1".to_owned(), "e2".to_owned()]));
    // Another organisation's queue is not found.
    assert_not_found(
        store.add_items(&sys(other), queue.id, 1, 1, &[new_item(3, false)]).await,
        "annotation queue",
        queue.id,
    );
    let audit = store.audit_log(org, Some(("annotation_queue", queue.id)), None, 10).await.unwrap();
    assert_eq!(audit.len(), 2, "the creation and the new version are on the audit trail");
}

async fn contract_items_are_leased_and_answered(store: Store) {
    let org = store.ensure_org("acme", "Acme").await.unwrap();
    let queue = queue_with_items(&store, org, "review", 2, 3).await;
    let now = at("2027-03-01T10:00:00Z");
    let (first, until) = store.lease_next(org, queue.id, "ann", lease(), now).await.unwrap().unwrap();
    assert_eq!((first.event_id.as_str(), until), ("e0", now + lease()));
    // Asking again resumes the held item, with the lease renewed.
    let later = now + minutes(1);
    let (again, until) = store.lease_next(org, queue.id, "ann", lease(), later).await.unwrap().unwrap();
    assert_eq!((again.id, until), (first.id, later + lease()));
    // Two per item: Bob may hold the same item beside Ann.
    let (bobs, _) = store.lease_next(org, queue.id, "bob", lease(), later).await.unwrap().unwrap();
    assert_eq!(bobs.id, first.id);
    // A third annotator finds no place on it and gets the next item.
    let (cys, _) = store.lease_next(org, queue.id, "cy", lease(), later).await.unwrap().unwrap();
    assert_eq!(cys.event_id, "e1");

    let (annotation, item) = store
        .submit_annotation(&sys(org), queue.id, first.id, "ann", None, &labelled("rest and fluids"), later)
        .await
        .unwrap();
    assert_eq!(
        (annotation.annotator.as_str(), annotation.outcome, annotation.seconds),
        ("ann", AnnotationOutcome::Labelled, Some(60.0))
    );
    assert_eq!((item.done, item.status), (1, ItemStatus::Open));
    let (_, item) = store
        .submit_annotation(&sys(org), queue.id, first.id, "bob", None, &labelled("rest and fluid"), later)
        .await
        .unwrap();
    assert_eq!((item.done, item.status), (2, ItemStatus::Done));
    // Ann goes on to an item she has not answered, the one already half done first.
    store.submit_annotation(&sys(org), queue.id, cys.id, "cy", None, &labelled("rest"), later).await.unwrap();
    let (next, _) = store.lease_next(org, queue.id, "ann", lease(), later).await.unwrap().unwrap();
    assert_eq!(next.event_id, "e1");
    // A skip releases the item for others and never hands it to the skipper again.
    let (_, skipped) = store
        .submit_annotation(&sys(org), queue.id, next.id, "ann", None, &outcome(AnnotationOutcome::Skipped, None), later)
        .await
        .unwrap();
    assert_eq!((skipped.done, skipped.status), (1, ItemStatus::Open));
    let (after_skip, _) = store.lease_next(org, queue.id, "ann", lease(), later).await.unwrap().unwrap();
    assert_eq!(after_skip.event_id, "e2");
    // A flag takes the item out of circulation for everyone.
    let flag = outcome(AnnotationOutcome::Flagged, Some("the context holds a patient's name"));
    let (_, flagged) =
        store.submit_annotation(&sys(org), queue.id, after_skip.id, "ann", None, &flag, later).await.unwrap();
    assert_eq!(flagged.status, ItemStatus::Flagged);
    assert_eq!(store.lease_next(org, queue.id, "ann", lease(), later).await.unwrap(), None, "nothing left for Ann");
    let (bob_next, _) = store.lease_next(org, queue.id, "bob", lease(), later).await.unwrap().unwrap();
    assert_eq!(bob_next.event_id, "e1", "Ann's skip left e1 to others");

    let progress = store.queue_progress(org, queue.id, later).await.unwrap();
    assert_eq!(
        (
            progress.items,
            progress.open,
            progress.done,
            progress.flagged,
            progress.needed,
            progress.annotations,
            progress.skips,
            progress.leased
        ),
        (3, 1, 1, 1, 4, 3, 1, 1)
    );
    assert_eq!(store.answered_by(org, queue.id, "ann").await.unwrap(), 3);
    let all = store.queue_annotations(org, queue.id).await.unwrap();
    assert_eq!(all.len(), 5);
    let audit = store.audit_log(org, Some(("annotation", all[0].id)), None, 10).await.unwrap();
    assert_eq!(audit.len(), 1, "every annotation is on the audit trail");
}

async fn contract_refused_submissions_store_nothing(store: Store) {
    let org = store.ensure_org("acme", "Acme").await.unwrap();
    let queue = queue_with_items(&store, org, "review", 1, 2).await;
    let now = at("2027-03-01T10:00:00Z");
    let items = store.queue_items(org, queue.id, None).await.unwrap();
    // Not leased to its author.
    assert_rejected(
        store.submit_annotation(&sys(org), queue.id, items[0].id, "ann", None, &labelled("x"), now).await,
        "item",
    );
    // A lease that ran out while nobody else took the item.
    let (leased, _) = store.lease_next(org, queue.id, "ann", lease(), now).await.unwrap().unwrap();
    let late = now + minutes(11);
    assert_rejected(
        store.submit_annotation(&sys(org), queue.id, leased.id, "ann", None, &labelled("x"), late).await,
        "lease",
    );
    // Once another annotator took it after the lease ran out, the late one is told it is taken.
    let (bobs, _) = store.lease_next(org, queue.id, "bob", lease(), late).await.unwrap().unwrap();
    assert_eq!(bobs.id, leased.id);
    assert_contended(
        store.submit_annotation(&sys(org), queue.id, leased.id, "ann", None, &labelled("x"), late).await,
        "taken",
    );
    store.submit_annotation(&sys(org), queue.id, bobs.id, "bob", None, &labelled("y"), late).await.unwrap();
    assert_contended(
        store.submit_annotation(&sys(org), queue.id, bobs.id, "bob", None, &labelled("z"), late).await,
        "already answered",
    );
    assert_contended(
        store.submit_annotation(&sys(org), queue.id, bobs.id, "cy", None, &labelled("z"), late).await,
        "taken",
    );
    // Unknown items and other organisations.
    assert_not_found(
        store.submit_annotation(&sys(org), queue.id, 9_999, "ann", None, &labelled("x"), late).await,
        "annotation item",
        9_999,
    );
    let other = store.ensure_org("globex", "Globex").await.unwrap();
    assert_not_found(
        store.submit_annotation(&sys(other), queue.id, bobs.id, "ann", None, &labelled("x"), late).await,
        "annotation queue",
        queue.id,
    );
    assert_eq!(
        store.lease_next(other, queue.id, "ann", lease(), late).await.map(|_| ()).unwrap_err().to_string(),
        format!("annotation queue {} not found", queue.id)
    );
    let stored = store.queue_annotations(org, queue.id).await.unwrap();
    assert_eq!(
        stored.iter().map(|a| a.annotator.as_str()).collect::<Vec<_>>(),
        ["bob"],
        "only Bob's answer was stored"
    );
}

async fn contract_concurrent_annotators_never_exceed_the_overlap(store: Store) {
    const ANNOTATORS: usize = 8;
    const ITEMS: usize = 100;
    let org = store.ensure_org("acme", "Acme").await.unwrap();
    for overlap in [1i64, 2] {
        let queue = queue_with_items(&store, org, &format!("busy-{overlap}"), overlap, ITEMS).await;
        let now = at("2027-03-01T10:00:00Z");
        // The barrier releases every annotator at once, so that their leases really overlap.
        let start = Arc::new(tokio::sync::Barrier::new(ANNOTATORS));
        let annotators: Vec<_> = (0..ANNOTATORS)
            .map(|a| {
                let (store, start) = (store.clone(), start.clone());
                tokio::spawn(async move {
                    let who = format!("annotator-{a}");
                    start.wait().await;
                    let mut done = Vec::new();
                    while let Some((item, _)) = store.lease_next(org, queue.id, &who, lease(), now).await.unwrap() {
                        store
                            .submit_annotation(&sys(org), queue.id, item.id, &who, None, &labelled(&who), now)
                            .await
                            .unwrap();
                        done.push(item.id);
                    }
                    done
                })
            })
            .collect();
        let mut per_item: HashMap<i64, usize> = HashMap::new();
        let mut total = 0;
        for a in annotators {
            let done = a.await.unwrap();
            let distinct: HashSet<i64> = done.iter().copied().collect();
            assert_eq!(distinct.len(), done.len(), "an annotator answered an item twice");
            total += done.len();
            for id in done {
                *per_item.entry(id).or_default() += 1;
            }
        }
        assert_eq!(per_item.len(), ITEMS, "every item was answered (overlap {overlap})");
        assert!(
            per_item.values().all(|&n| n == overlap as usize),
            "an item got more or fewer than {overlap}: {per_item:?}"
        );
        assert_eq!(total, ITEMS * overlap as usize);
        let progress = store.queue_progress(org, queue.id, now).await.unwrap();
        assert_eq!((progress.done, progress.annotations, progress.leased), (ITEMS as i64, (ITEMS as i64) * overlap, 0));
    }
}

async fn contract_imports_are_all_or_nothing(store: Store) {
    let org = store.ensure_org("acme", "Acme").await.unwrap();
    let queue = queue_with_items(&store, org, "review", 1, 1).await;
    let good = labelled("rest and fluids");
    let rows =
        |rows: &[(usize, &'static str, &'static str)]| -> Vec<(usize, &'static str, &'static str)> { rows.to_vec() };
    let to_rows =
        |spec: &[(usize, &'static str, &'static str)], sub: &'static Submission| -> Vec<ImportedRow<'static>> {
            spec.iter()
                .map(|(line, event_id, annotator)| ImportedRow { line: *line, event_id, annotator, submission: sub })
                .collect()
        };
    let sub: &'static Submission = Box::leak(Box::new(good));
    // A file naming an event the queue lacks (and that the caller found nowhere) and a repeat is refused
    // whole, items included.
    let bad = to_rows(&rows(&[(1, "e0", "vendor-1"), (2, "e-missing", "vendor-1")]), sub);
    let errors = assert_rejected(
        store.import_annotations(&sys(org), queue.id, 1, 1, &[new_item(5, false)], &bad).await,
        "line 2: event_id",
    );
    assert_eq!(errors.0.len(), 1);
    assert_eq!(store.queue_items(org, queue.id, None).await.unwrap().len(), 1, "the new item was not kept");
    assert!(store.queue_annotations(org, queue.id).await.unwrap().is_empty());
    // A good file stores every row, adding the items it brings, without leases.
    let good_rows = to_rows(&rows(&[(1, "e0", "vendor-1"), (2, "e5", "vendor-1"), (3, "e5", "vendor-2")]), sub);
    assert_eq!(
        store.import_annotations(&sys(org), queue.id, 1, 1, &[new_item(5, false)], &good_rows).await.unwrap(),
        3
    );
    let stored = store.queue_annotations(org, queue.id).await.unwrap();
    assert!(stored.iter().all(|a| a.source == AnnotationSource::Import && a.seconds.is_none()));
    let items = store.queue_items(org, queue.id, None).await.unwrap();
    assert_eq!(
        items.iter().map(|i| (i.event_id.as_str(), i.done, i.status)).collect::<Vec<_>>(),
        [("e0", 1, ItemStatus::Done), ("e5", 2, ItemStatus::Done)]
    );
    // The same annotator cannot answer the same item twice, from a file either.
    let again = to_rows(&rows(&[(7, "e0", "vendor-1")]), sub);
    assert_rejected(store.import_annotations(&sys(org), queue.id, 1, 1, &[], &again).await, "line 7: annotator");
    // A preference for an item without a second suggestion is refused naming its line.
    let pref: &'static Submission = Box::leak(Box::new(Submission {
        outcome: AnnotationOutcome::Labelled,
        labels: Labels { preference: Some(Preferred::Alternative), ..Default::default() },
        note: None,
    }));
    let pref_rows = to_rows(&rows(&[(3, "e0", "vendor-3")]), pref);
    assert_rejected(store.import_annotations(&sys(org), queue.id, 1, 1, &[], &pref_rows).await, "line 3: preference");
}

async fn contract_gold_and_daily_counts(store: Store) {
    let org = store.ensure_org("acme", "Acme").await.unwrap();
    let queue = queue_with_items(&store, org, "review", 1, 3).await;
    let items = store.queue_items(org, queue.id, None).await.unwrap();
    let gold = Labels { correction: Some("rest and fluids".into()), ..Default::default() };
    let item = store.set_gold(&sys(org), queue.id, items[0].id, Some(&gold)).await.unwrap();
    assert_eq!(item.gold, Some(gold));
    assert_eq!(store.queue_progress(org, queue.id, Utc::now()).await.unwrap().gold, 1);
    assert_eq!(store.set_gold(&sys(org), queue.id, items[0].id, None).await.unwrap().gold, None);
    assert_not_found(store.set_gold(&sys(org), queue.id, 9_999, None).await, "annotation item", 9_999);

    let days: [DateTime<Utc>; 3] = [at("2027-03-01T10:00:00Z"), at("2027-03-01T23:00:00Z"), at("2027-03-03T08:00:00Z")];
    for (n, day) in days.iter().enumerate() {
        let (item, _) = store.lease_next(org, queue.id, "ann", lease(), *day).await.unwrap().unwrap();
        let sub = if n == 2 { outcome(AnnotationOutcome::Skipped, None) } else { labelled("x") };
        store.submit_annotation(&sys(org), queue.id, item.id, "ann", None, &sub, *day).await.unwrap();
    }
    let per_day = store.annotations_per_day(org, "notes").await.unwrap();
    assert_eq!(per_day, [(date("2027-03-01"), 2)], "skips do not count");
    assert_eq!(store.annotations_per_day(org, "other").await.unwrap(), []);
    let by_loop = store.loop_annotations(org, "notes").await.unwrap();
    assert_eq!(
        by_loop.iter().map(|(q, i, a)| (q.as_str(), i.event_id.as_str(), a.len())).collect::<Vec<_>>(),
        [("review", "e0", 1), ("review", "e1", 1), ("review", "e2", 1)]
    );
}
