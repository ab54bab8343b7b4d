//! Contracts of thesis signals (`src/signals.rs`): raised once per metric and season, resolved once.

use chrono::Utc;

use slope_domain::*;
use slope_store::{Store, StoreError};

use crate::common::*;

contract_tests! {
    contract_thesis_signals_are_raised_once_and_resolved_once =>
        thesis_signals_are_raised_once_and_resolved_once_sqlite,
        thesis_signals_are_raised_once_and_resolved_once_postgres;
}

// ---- contracts -----------------------------------------------------------------------------------

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
