//! Contracts of invitations (`src/invitations.rs`): made per organisation, accepted once, by an
//! existing account or a new one, within their time.

use chrono::{Duration, Utc};

use slope_domain::*;
use slope_store::{NewAccount, Store, StoreError};

use crate::common::*;

contract_tests! {
    contract_invitations_are_accepted_once_within_their_time =>
        invitations_are_accepted_once_within_their_time_sqlite,
        invitations_are_accepted_once_within_their_time_postgres;
}

fn spec(email: &str, role: Role, squads: Vec<SquadId>) -> MemberSpec {
    let ids = squads.iter().map(|s| s.0).collect();
    let input = MemberInput { email: email.into(), role: role.as_str().into(), squads: ids, ..Default::default() };
    input.validate().expect("a valid member")
}

fn assert_rejected<T: std::fmt::Debug>(result: Result<T, StoreError>, field: &str) {
    match result {
        Err(StoreError::Rejected(errors)) => assert!(errors.get(field).is_some(), "{errors:?}"),
        other => panic!("expected a refusal on {field}, got {other:?}"),
    }
}

async fn contract_invitations_are_accepted_once_within_their_time(store: Store) {
    let acme = store.ensure_org("acme", "Acme").await.unwrap();
    let globex = store.ensure_org("globex", "Globex").await.unwrap();
    let ann = Actor { org: acme, principal: Principal::System { name: "ann".into() } };
    let bob = Actor::system(globex, "bob");
    let squad = store.create_squad(&ann, &squad_spec("Drafts")).await.unwrap();
    let week = Utc::now() + Duration::days(7);

    // A new address: accepting creates the account, with the invited role and squads.
    let ivy = store
        .create_invitation(&ann, &spec("ivy@example.org", Role::SquadMember, vec![squad.id]), "h-ivy", week)
        .await
        .unwrap();
    assert_eq!(
        (ivy.email.as_str(), ivy.role, ivy.squads.clone()),
        ("ivy@example.org", Role::SquadMember, vec![squad.id])
    );
    assert_eq!(ivy.invited_by, "system:ann");
    assert!(ivy.is_open(Utc::now()));
    assert!(
        store.member_by_email(acme, "ivy@example.org").await.unwrap().is_none(),
        "an invitation is not a membership"
    );
    let found = store.invitation_by_token("h-ivy").await.unwrap().expect("found by its secret's hash");
    assert_eq!((found.org, found.org_slug.as_str(), found.invitation.id), (acme, "acme", ivy.id));
    assert_rejected(store.accept_invitation("h-ivy", None).await, "password");
    let account = NewAccount { name: "Ivy", password_hash: "$argon2id$ivy" };
    let (org, member) = store.accept_invitation("h-ivy", Some(account)).await.unwrap();
    assert_eq!((org, member.email.as_str(), member.name.as_str()), (acme, "ivy@example.org", "Ivy"));
    assert_eq!((member.role, member.squads.clone()), (Role::SquadMember, vec![squad.id]));
    assert_eq!(store.user_by_email("ivy@example.org").await.unwrap().unwrap().password_hash, "$argon2id$ivy");
    let trail = store.audit_log(acme, Some(("membership", member.user_id.0)), None, 10).await.unwrap();
    assert_eq!((trail.len(), trail[0].actor.as_str()), (1, "system:ann"), "the inviter gave the role");
    // Once only.
    assert_rejected(store.accept_invitation("h-ivy", Some(account)).await, "token");
    assert!(store.list_invitations(acme).await.unwrap()[0].accepted_at.is_some());

    // An existing account of another organisation joins this one only by accepting, and keeps its
    // password; the other organisation's invitations are its own.
    let to_globex = store
        .create_invitation(&bob, &spec("ivy@example.org", Role::Exec, vec![]), "h-ivy-globex", week)
        .await
        .unwrap();
    assert!(store.member_by_email(globex, "ivy@example.org").await.unwrap().is_none());
    assert_eq!(store.list_invitations(acme).await.unwrap().len(), 1, "acme lists only its own");
    assert!(matches!(store.revoke_invitation(&ann, to_globex.id).await, Err(StoreError::NotFound { .. })));
    let (org, joined) = store.accept_invitation("h-ivy-globex", None).await.unwrap();
    assert_eq!((org, joined.user_id, joined.role), (globex, member.user_id, Role::Exec));
    assert_eq!(store.user_by_email("ivy@example.org").await.unwrap().unwrap().password_hash, "$argon2id$ivy");
    assert_eq!(store.member_by_email(acme, "ivy@example.org").await.unwrap().map(|m| m.role), Some(Role::SquadMember));

    // A newer invitation of an address replaces the open one; a revoked or expired one cannot be accepted.
    let first =
        store.create_invitation(&ann, &spec("zed@example.org", Role::Exec, vec![]), "h-zed-1", week).await.unwrap();
    let second =
        store.create_invitation(&ann, &spec("zed@example.org", Role::Leader, vec![]), "h-zed-2", week).await.unwrap();
    let listed = store.list_invitations(acme).await.unwrap();
    assert_eq!(listed[0].id, second.id, "newest first");
    assert!(listed.iter().find(|i| i.id == first.id).unwrap().revoked_at.is_some(), "the older one is closed");
    let zed = NewAccount { name: "Zed", password_hash: "$argon2id$zed" };
    assert_rejected(store.accept_invitation("h-zed-1", Some(zed)).await, "token");
    let revoked = store.revoke_invitation(&ann, second.id).await.unwrap();
    assert!(revoked.revoked_at.is_some());
    assert_rejected(store.revoke_invitation(&ann, second.id).await, "invitation");
    assert_rejected(store.accept_invitation("h-zed-2", Some(zed)).await, "token");
    let past = Utc::now() - Duration::seconds(1);
    store.create_invitation(&ann, &spec("old@example.org", Role::Exec, vec![]), "h-old", past).await.unwrap();
    assert_rejected(store.accept_invitation("h-old", Some(zed)).await, "token");
    assert!(store.user_by_email("zed@example.org").await.unwrap().is_none(), "no refused acceptance made an account");
    let trail = store.audit_log(acme, Some(("invitation", second.id)), None, 10).await.unwrap();
    assert_eq!(trail.iter().map(|r| r.action.as_str()).collect::<Vec<_>>(), ["update", "create"]);

    // A squad of another organisation cannot be offered.
    let theirs = store.create_squad(&bob, &squad_spec("Theirs")).await.unwrap();
    let refused =
        store.create_invitation(&ann, &spec("sq@example.org", Role::SquadMember, vec![theirs.id]), "h-sq", week).await;
    assert_rejected(refused, "squads");
}
