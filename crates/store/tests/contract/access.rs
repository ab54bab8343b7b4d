//! Contracts of access (`src/access.rs`): members, sessions, login attempts, API tokens and units; and
//! an organisation's versioned settings (`src/settings.rs`).

use chrono::Utc;

use slope_domain::*;
use slope_store::{LoginLimits, Store, StoreError};

use crate::common::*;

contract_tests! {
    contract_members_sessions_and_tokens =>
        members_sessions_and_tokens_sqlite, members_sessions_and_tokens_postgres;
    contract_units_form_a_tree =>
        units_form_a_tree_sqlite, units_form_a_tree_postgres;
    contract_adoption_rules_are_versioned =>
        adoption_rules_are_versioned_sqlite, adoption_rules_are_versioned_postgres;
}

// ---- contracts -----------------------------------------------------------------------------------

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
    // Admission: past the account's limit, attempts are refused (and leave no row) except from an
    // address the account signed in from; past the address's limit, refused for every account.
    let limits = LoginLimits { failures_since: since, known_since: since, per_account: 4, per_address: 5 };
    assert!(store.admit_login_attempt("sam@acme.test", "10.0.0.9", limits).await.unwrap().is_some(), "the fourth");
    assert_eq!(store.admit_login_attempt("sam@acme.test", "10.0.0.9", limits).await.unwrap(), None, "the fifth");
    assert_eq!(store.failed_logins("sam@acme.test", "10.0.0.9", since).await.unwrap(), (4, 1), "no row refused");
    let known = store.admit_login_attempt("sam@acme.test", "10.0.0.1", limits).await.unwrap();
    assert!(known.is_some(), "the address sam signed in from is not held to the account's limit");
    for n in 0..3 {
        assert!(store.admit_login_attempt(&format!("u{n}@acme.test"), "10.0.0.2", limits).await.unwrap().is_some());
    }
    // 10.0.0.2 has eve's failure and three more; the fifth is allowed, the sixth is not, for anyone.
    assert!(store.admit_login_attempt("x@acme.test", "10.0.0.2", limits).await.unwrap().is_some());
    assert_eq!(store.admit_login_attempt("y@acme.test", "10.0.0.2", limits).await.unwrap(), None);
    // Purging drops failures after their horizon and successes only after their own, longer one.
    let later = Utc::now() + chrono::Duration::seconds(1);
    store.purge_sessions(now, later, now - chrono::Duration::days(30)).await.unwrap();
    assert_eq!(store.failed_logins("sam@acme.test", "10.0.0.9", since).await.unwrap(), (0, 0));
    let strict = LoginLimits { per_account: 0, ..limits };
    assert!(store.admit_login_attempt("sam@acme.test", "10.0.0.1", strict).await.unwrap().is_some(), "still known");
    assert_eq!(store.admit_login_attempt("sam@acme.test", "10.0.0.3", strict).await.unwrap(), None);
    store.purge_sessions(now, later, later).await.unwrap();
    assert_eq!(store.admit_login_attempt("sam@acme.test", "10.0.0.1", strict).await.unwrap(), None, "forgotten");

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
    store.put_unit(&admin, "Product", None, None).await.unwrap();
    let clinical = store.put_unit(&admin, "Clinical", Some("Product"), None).await.unwrap();
    assert_eq!(clinical.parent.as_deref(), Some("Product"));
    let cycle = store.put_unit(&admin, "Product", Some("Clinical"), None).await;
    assert!(matches!(cycle, Err(StoreError::Rejected(_))), "a unit under its own sub-unit: {cycle:?}");
    let unknown = store.put_unit(&admin, "Clinical", Some("Nowhere"), None).await;
    assert!(matches!(unknown, Err(StoreError::Rejected(_))), "{unknown:?}");

    // A headcount is stored, read back, changed and cleared, each change a new version on the audit
    // trail; saying the same again changes nothing.
    let counted = store.put_unit(&admin, "Clinical", Some("Product"), Some(40)).await.unwrap();
    assert_eq!((counted.headcount, counted.version), (Some(40), Version(clinical.version.0 + 1)));
    let listed = store.list_units(org).await.unwrap();
    let stored = listed.iter().find(|u| u.name == "Clinical").unwrap();
    assert_eq!((stored.headcount, stored.parent.as_deref()), (Some(40), Some("Product")));
    assert_eq!(listed.iter().find(|u| u.name == "Product").unwrap().headcount, None);
    let again = store.put_unit(&admin, "Clinical", Some("Product"), Some(40)).await.unwrap();
    assert_eq!(again, counted, "the same unit again is no change");
    let cleared = store.put_unit(&admin, "Clinical", Some("Product"), None).await.unwrap();
    assert_eq!((cleared.headcount, cleared.version), (None, Version(counted.version.0 + 1)));
    let trail = store.audit_log(org, Some(("unit", clinical.id)), None, 10).await.unwrap();
    assert_eq!(trail.len(), 4, "created by the squad, moved, counted, cleared: {trail:?}");
    assert_eq!(trail[1].after.as_ref().unwrap()["headcount"], 40);
    assert_eq!(trail[0].after.as_ref().unwrap()["headcount"], serde_json::Value::Null);
    // A failed change leaves the headcount as it was.
    store.put_unit(&admin, "Clinical", Some("Product"), Some(12)).await.unwrap();
    assert!(store.put_unit(&admin, "Clinical", Some("Nowhere"), Some(99)).await.is_err());
    let kept = store.list_units(org).await.unwrap().into_iter().find(|u| u.name == "Clinical").unwrap();
    assert_eq!((kept.headcount, kept.parent.as_deref()), (Some(12), Some("Product")));
    let other = store.ensure_org("globex", "Globex").await.unwrap();
    assert!(store.list_units(other).await.unwrap().is_empty());
}

async fn contract_adoption_rules_are_versioned(store: Store) {
    let org = store.ensure_org("acme", "Acme").await.unwrap();
    let other = store.ensure_org("globex", "Globex").await.unwrap();
    let admin = Actor::system(org, "test");
    // Nobody has changed them: the defaults, version 0.
    assert_eq!(store.adoption_settings(org).await.unwrap(), AdoptionSettings::default());

    let stricter = AdoptionRules { fluency_bar: 0.7, max_active_goals_per_squad: 2, eval_max_age_days: 14 };
    let first = store.set_adoption_rules(&admin, Version(0), &stricter).await.unwrap();
    assert_eq!((first.rules, first.version, first.set_by.as_deref()), (stricter, Version(1), Some("system:test")));
    assert_eq!(store.adoption_settings(org).await.unwrap(), first);
    assert_eq!(store.adoption_settings(other).await.unwrap(), AdoptionSettings::default(), "per organisation");

    // A change based on the defaults again is stale: refused, nothing written.
    let stale = store.set_adoption_rules(&admin, Version(0), &AdoptionRules::default()).await;
    assert!(matches!(stale, Err(StoreError::Conflict { expected: 0, actual: 1, .. })), "{stale:?}");
    assert_eq!(store.adoption_settings(org).await.unwrap(), first);

    // Two admins saving from the same version at once: one wins, the other is told of the conflict.
    let looser = AdoptionRules { fluency_bar: 0.4, ..stricter };
    let (a, b) = tokio::join!(
        store.set_adoption_rules(&admin, Version(1), &looser),
        store.set_adoption_rules(&admin, Version(1), &stricter),
    );
    assert_eq!(
        [&a, &b].iter().filter(|r| r.is_ok()).count(),
        1,
        "exactly one of two concurrent changes lands: {a:?} {b:?}"
    );
    assert!([&a, &b].iter().any(|r| matches!(r, Err(StoreError::Conflict { .. }))), "{a:?} {b:?}");
    assert_eq!(store.adoption_settings(org).await.unwrap().version, Version(2));

    // Each version is on the audit trail with the state before it.
    let trail = store.audit_log(org, Some(("adoption_rules", org.0)), None, 10).await.unwrap();
    assert_eq!(trail.len(), 2, "{trail:?}");
    assert_eq!(trail[1].before.as_ref().unwrap()["version"], 0);
    assert_eq!(trail[1].after.as_ref().unwrap()["rules"]["fluency_bar"], 0.7);
}
