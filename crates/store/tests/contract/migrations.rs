//! Contracts of `Store::migrate` on databases that older binaries migrated.

contract_tests! {
    contract_edited_migrations_are_repaired_and_nothing_else =>
        edited_migrations_are_repaired_and_nothing_else_sqlite,
        edited_migrations_are_repaired_and_nothing_else_postgres;
    contract_the_open_reversal_index_is_built_over_duplicates =>
        the_open_reversal_index_is_built_over_duplicates_sqlite,
        the_open_reversal_index_is_built_over_duplicates_postgres;
}

use slope_domain::{NewSignal, SignalKind};
use slope_store::{Db, Store, carried_checksum, superseded_checksums};

use crate::common::*;

/// Runs one statement of SQL that both databases accept.
async fn exec(store: &Store, sql: &str) {
    match store.db() {
        Db::Sqlite(pool) => sqlx::query(sql).execute(pool).await.map(|_| ()),
        Db::Postgres(pool) => sqlx::query(sql).execute(pool).await.map(|_| ()),
    }
    .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

async fn recorded_checksum(store: &Store, version: i64) -> Vec<u8> {
    let sql = "SELECT checksum FROM _sqlx_migrations WHERE version = $1";
    match store.db() {
        Db::Sqlite(pool) => sqlx::query_scalar(sql).bind(version).fetch_one(pool).await,
        Db::Postgres(pool) => sqlx::query_scalar(sql).bind(version).fetch_one(pool).await,
    }
    .expect("the migration is recorded")
}

async fn record_checksum(store: &Store, version: i64, checksum: &[u8]) {
    let sql = "UPDATE _sqlx_migrations SET checksum = $1 WHERE version = $2";
    match store.db() {
        Db::Sqlite(pool) => sqlx::query(sql).bind(checksum).bind(version).execute(pool).await.map(|_| ()),
        Db::Postgres(pool) => sqlx::query(sql).bind(checksum).bind(version).execute(pool).await.map(|_| ()),
    }
    .expect("the checksum is rewritten");
}

async fn count(store: &Store, sql: &str) -> i64 {
    match store.db() {
        Db::Sqlite(pool) => sqlx::query_scalar(sql).fetch_one(pool).await,
        Db::Postgres(pool) => sqlx::query_scalar(sql).fetch_one(pool).await,
    }
    .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// A database that applied a text later edited in place (three were, before the rule was checked)
/// starts with this binary; one whose checksum matches no committed text of that version still does not.
async fn contract_edited_migrations_are_repaired_and_nothing_else(store: Store) {
    let superseded = superseded_checksums(&store);
    assert_eq!(superseded.len(), 3, "0001, 0002 and 0005 were edited once each");
    for (version, old) in &superseded {
        record_checksum(&store, *version, old).await;
    }
    store.migrate().await.expect("a database migrated with the edited texts starts");
    for (version, _) in &superseded {
        let current = carried_checksum(&store, *version).expect("the version is carried");
        assert_eq!(recorded_checksum(&store, *version).await, current, "version {version} is repaired");
    }

    record_checksum(&store, 3, &[7u8; 48]).await;
    let refused = store.migrate().await;
    assert!(
        matches!(&refused, Err(slope_store::StoreError::Migrate(sqlx::migrate::MigrateError::VersionMismatch(3)))),
        "an unknown checksum is still refused, got {refused:?}"
    );
    assert_eq!(recorded_checksum(&store, 3).await, vec![7u8; 48], "and is left as it was");
}

/// 0006 builds the one-open-reversal index on a database whose 0005 did not, closing duplicates first.
async fn contract_the_open_reversal_index_is_built_over_duplicates(store: Store) {
    let org = store.ensure_org("acme", "Acme").await.expect("org");
    let season = create_season(&store, org, "S1", "2027-01-01", "2027-06-30").await;
    // The state 0005 as first committed left behind: no index, two open reversals of one metric.
    exec(&store, "DROP INDEX thesis_signals_open_reversal").await;
    exec(&store, "DELETE FROM _sqlx_migrations WHERE version = 6").await;
    for (n, subject) in [(1, "acceptance"), (2, "acceptance"), (3, "retention")] {
        exec(
            &store,
            &format!(
                "INSERT INTO thesis_signals (org_id, season_id, kind, fingerprint, subject, summary, evidence, raised_at)
                 VALUES ({}, {}, 'metric-reversal', 'f{n}', '{subject}', 'reversed', '{{}}', '2027-02-0{n}T00:00:00Z')",
                org.0, season.id.0
            ),
        )
        .await;
    }
    store.migrate().await.expect("0006 applies over duplicates");
    let open = "SELECT COUNT(*) FROM thesis_signals WHERE resolved_at IS NULL";
    assert_eq!(count(&store, open).await, 2, "one open reversal per metric is left");
    let kept = "SELECT COUNT(*) FROM thesis_signals WHERE resolved_at IS NULL AND fingerprint IN ('f1', 'f3')";
    assert_eq!(count(&store, kept).await, 2, "the earliest of each metric is the one kept open");
    let another = NewSignal {
        kind: SignalKind::MetricReversal,
        fingerprint: "f4".into(),
        subject: "acceptance".into(),
        summary: "reversed again".into(),
        evidence: serde_json::json!({}),
    };
    let raised = store.raise_signal(org, season.id, &another, chrono::Utc::now()).await;
    assert!(!raised.expect("a refused reversal is not an error"), "the index keeps a second one out");
}
