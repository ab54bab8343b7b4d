//! Contracts of monitors and notifications (`src/monitors.rs`): a schedule slot is evaluated once, a
//! finding fires one alert with its notifications however many servers evaluate it at once, and every
//! delivery of the outbox is claimed by one worker at a time and finished once.

use std::sync::Arc;

use slope_domain::*;
use slope_store::{AttemptOutcome, Route, Store};

use crate::common::*;

contract_tests! {
    contract_monitors_fire_once_and_resolve =>
        monitors_fire_once_and_resolve_sqlite, monitors_fire_once_and_resolve_postgres
        [flavor = "multi_thread", worker_threads = 4];
    contract_each_delivery_is_claimed_once_and_finished_once =>
        each_delivery_is_claimed_once_and_finished_once_sqlite, each_delivery_is_claimed_once_and_finished_once_postgres
        [flavor = "multi_thread", worker_threads = 4];
}

fn spec(key: &str) -> MonitorSpec {
    MonitorInput {
        key: key.into(),
        name: "Stale".into(),
        kind: "staleness".into(),
        metric: Some("acc".into()),
        ..Default::default()
    }
    .parse()
    .unwrap()
}

fn finding(print: &str) -> Finding {
    Finding {
        fingerprint: print.into(),
        summary: format!("{print} holds"),
        evidence: AlertEvidence::Staleness { metric: "acc".into(), observed_at: None, max_age_hours: 48 },
    }
}

/// An organisation with a monitor, a contact point and a member to notify.
async fn setup(store: &Store) -> (OrgId, Monitor, Route) {
    let org = store.ensure_org("acme", "Acme").await.unwrap();
    let now = at("2027-03-01T10:00:00Z");
    let (monitor, created) = store.put_monitor(&sys(org), &spec("stale"), now).await.unwrap();
    assert!(created);
    let point =
        ContactPointInput { name: "Ops".into(), url: "https://hooks.example.com/x".into(), ..Default::default() }
            .parse()
            .unwrap();
    let cp = store.create_contact_point(&sys(org), &point, "whsec_test", now).await.unwrap();
    let member = MemberInput {
        email: "lead@acme.example".into(),
        role: "leader".into(),
        password: Some("long enough pass".into()),
        ..Default::default()
    }
    .validate()
    .unwrap();
    let user = store.upsert_member(&sys(org), &member, Some("$argon2id$hash")).await.unwrap().user_id;
    (org, monitor, Route { users: vec![user], contact_points: vec![cp.id] })
}

async fn contract_monitors_fire_once_and_resolve(store: Store) {
    let (org, monitor, route) = setup(&store).await;
    let now = at("2027-03-01T10:05:00Z");
    // A slot is claimed once.
    let slot = monitor.slot(now);
    assert!(store.claim_monitor_slot(monitor.id, slot, "a", now).await.unwrap());
    assert!(!store.claim_monitor_slot(monitor.id, slot, "b", now).await.unwrap());
    assert!(store.claim_monitor_slot(monitor.id, slot + 1, "b", now).await.unwrap());

    // Four servers find the same thing at once: one alert, one delivery, one inbox entry.
    let changes = reconcile(&[], vec![finding("stale:acc")]);
    let tasks: Vec<_> = (0..4)
        .map(|_| {
            let (store, monitor, changes, route) = (store.clone(), monitor.clone(), changes.clone(), route.clone());
            tokio::spawn(async move { store.apply_evaluation(org, &monitor, &changes, &route, now).await.unwrap() })
        })
        .collect();
    let mut fired = 0;
    for task in tasks {
        fired += task.await.unwrap().fired;
    }
    assert_eq!(fired, 1);
    let open = store.open_alerts(monitor.id).await.unwrap();
    assert_eq!(open.iter().map(|(_, f)| f.as_str()).collect::<Vec<_>>(), ["stale:acc"]);
    assert_eq!(store.list_deliveries(org, None, 10).await.unwrap().len(), 1);
    assert_eq!(store.unread_count(org, route.users[0]).await.unwrap(), 1);

    // Still holding: nothing new. Gone: resolved with its own notifications.
    let later = at("2027-03-01T10:20:00Z");
    let hold = reconcile(&open, vec![finding("stale:acc")]);
    let applied = store.apply_evaluation(org, &monitor, &hold, &route, later).await.unwrap();
    assert_eq!((applied.fired, applied.resolved, applied.notifications), (0, 0, 0));
    let alert = store.alert(org, open[0].0).await.unwrap().unwrap();
    assert_eq!((alert.last_seen_at, alert.state(later)), (later, AlertState::Firing));
    let gone = reconcile(&open, vec![]);
    let applied = store.apply_evaluation(org, &monitor, &gone, &route, later).await.unwrap();
    assert_eq!((applied.resolved, applied.notifications), (1, 2));
    let history = store.alert_history(org, alert.id).await.unwrap();
    assert_eq!(history.iter().map(|e| e.change).collect::<Vec<_>>(), [AlertChange::Fired, AlertChange::Resolved]);
    // A resolved alert cannot be silenced; the same finding later is a new alert.
    assert!(store.silence_alert(&sys(org), alert.id, later, None, later).await.unwrap().is_err());
    let again = store.apply_evaluation(org, &monitor, &reconcile(&[], vec![finding("stale:acc")]), &route, later).await;
    assert_eq!(again.unwrap().fired, 1);
    let listed = store.list_alerts(org, false, 10).await.unwrap();
    assert_eq!(listed.len(), 2);
    assert!(listed[0].resolved_at.is_none(), "open alerts first");
    assert_eq!(store.mark_read(org, route.users[0], None, later).await.unwrap(), 3);
    assert_eq!(store.unread_count(org, route.users[0]).await.unwrap(), 0);

    // A silence keeps a holding alert quiet until it ends; then the alert notifies again, once.
    let open = store.open_alerts(monitor.id).await.unwrap();
    let until = at("2027-03-01T11:00:00Z");
    store.silence_alert(&sys(org), open[0].0, until, Some("deploy"), later).await.unwrap().unwrap();
    let hold = reconcile(&open, vec![finding("stale:acc")]);
    let quiet = store.apply_evaluation(org, &monitor, &hold, &route, at("2027-03-01T10:59:00Z")).await.unwrap();
    assert_eq!(quiet.notifications, 0);
    let after = at("2027-03-01T11:01:00Z");
    let loud = store.apply_evaluation(org, &monitor, &hold, &route, after).await.unwrap();
    assert_eq!((loud.fired, loud.notifications), (0, 2));
    let again = store.apply_evaluation(org, &monitor, &hold, &route, after).await.unwrap();
    assert_eq!(again.notifications, 0, "once");
    let history = store.alert_history(org, open[0].0).await.unwrap();
    assert_eq!(
        history.iter().map(|e| e.change).collect::<Vec<_>>(),
        [AlertChange::Fired, AlertChange::Silenced, AlertChange::Unsilenced]
    );
    assert_eq!(store.alert(org, open[0].0).await.unwrap().unwrap().state(after), AlertState::Firing);
}

async fn contract_each_delivery_is_claimed_once_and_finished_once(store: Store) {
    const ALERTS: usize = 12;
    const WORKERS: usize = 6;
    let (org, monitor, route) = setup(&store).await;
    let now = at("2027-03-01T10:05:00Z");
    let findings = (0..ALERTS).map(|i| finding(&format!("stale:{i}"))).collect();
    store.apply_evaluation(org, &monitor, &reconcile(&[], findings), &route, now).await.unwrap();
    let created = store.list_deliveries(org, None, 100).await.unwrap();
    assert_eq!(created.len(), ALERTS);
    let keys: std::collections::HashSet<&str> = created.iter().map(|d| d.idempotency_key.as_str()).collect();
    assert_eq!(keys.len(), ALERTS, "each delivery has its own idempotency key");

    let claim_at = at("2027-03-01T10:06:00Z");
    let start = Arc::new(tokio::sync::Barrier::new(WORKERS));
    let workers: Vec<_> = (0..WORKERS)
        .map(|w| {
            let (store, start) = (store.clone(), start.clone());
            tokio::spawn(async move {
                let worker = format!("w{w}");
                start.wait().await;
                let mut done = vec![];
                while let Some(claimed) = store.claim_delivery(&worker, minutes(5), claim_at).await.unwrap() {
                    assert_eq!(claimed.secret, "whsec_test");
                    assert!(!claimed.allow_internal);
                    let outcome = AttemptOutcome {
                        status_code: Some(200),
                        error: None,
                        duration_ms: 3,
                        retry_at: None,
                        delivered: true,
                    };
                    assert!(
                        store.finish_delivery_attempt(&claimed.delivery, &worker, &outcome, claim_at).await.unwrap()
                    );
                    // A second finish of the same attempt (a retry of the write) changes nothing.
                    assert!(
                        !store.finish_delivery_attempt(&claimed.delivery, &worker, &outcome, claim_at).await.unwrap()
                    );
                    done.push(claimed.delivery.id);
                }
                done
            })
        })
        .collect();
    let mut done = vec![];
    for worker in workers {
        done.extend(worker.await.unwrap());
    }
    done.sort_unstable();
    let mut ids: Vec<i64> = created.iter().map(|d| d.id).collect();
    ids.sort_unstable();
    assert_eq!(done, ids, "every delivery is claimed exactly once");
    let after = store.list_deliveries(org, None, 100).await.unwrap();
    assert!(after.iter().all(|d| d.status == DeliveryStatus::Delivered && d.attempts == 1), "{after:?}");
    let log = store.delivery_attempts(org, ids[0]).await.unwrap();
    assert_eq!(log.iter().map(|a| a.status_code).collect::<Vec<_>>(), [Some(200)]);

    // A lost lease: the delivery is retried by another worker after the lease ends, and the first
    // worker's late finish is refused.
    let again = store.apply_evaluation(org, &monitor, &reconcile(&[], vec![finding("stale:late")]), &route, now).await;
    assert_eq!(again.unwrap().fired, 1);
    let first = store.claim_delivery("slow", minutes(1), claim_at).await.unwrap().unwrap();
    assert!(store.claim_delivery("other", minutes(1), claim_at).await.unwrap().is_none(), "leased");
    let after_lease = claim_at + minutes(2);
    let second = store.claim_delivery("other", minutes(1), after_lease).await.unwrap().unwrap();
    assert_eq!((second.delivery.id, second.delivery.attempts), (first.delivery.id, 2));
    let retry = AttemptOutcome {
        status_code: Some(503),
        error: Some("the receiver answered 503".into()),
        duration_ms: 5,
        retry_at: Some(after_lease + minutes(1)),
        delivered: false,
    };
    assert!(!store.finish_delivery_attempt(&first.delivery, "slow", &retry, after_lease).await.unwrap());
    assert!(store.finish_delivery_attempt(&second.delivery, "other", &retry, after_lease).await.unwrap());
    assert!(store.claim_delivery("other", minutes(1), after_lease).await.unwrap().is_none(), "not due yet");
    let due = store.claim_delivery("other", minutes(1), after_lease + minutes(1)).await.unwrap().unwrap();
    assert_eq!(due.delivery.last_status_code, Some(503));
}
