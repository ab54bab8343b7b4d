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
//!
//! The contracts are grouped by the store area that implements them, one module per file of
//! `crates/store/src/`; fixtures that several areas use are in `common`.

use std::future::Future;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Once;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use slope_store::Store;
use sqlx::postgres::PgPoolOptions;

// ---- harness -------------------------------------------------------------------------------------

const POSTGRES_URL_VAR: &str = "SLOPE_TEST_POSTGRES_URL";
const REQUIRE_POSTGRES_VAR: &str = "SLOPE_REQUIRE_POSTGRES";

/// Generates a SQLite and a PostgreSQL test for each contract. Test names are spelled out rather than
/// derived, so that the name a failing run prints can be found in this folder with a plain search. An
/// optional `[...]` passes arguments to `#[tokio::test]`, such as a multi-threaded runtime.
macro_rules! contract_tests {
    ($($contract:ident => $sqlite:ident, $postgres:ident $([$($runtime:tt)*])?;)*) => {$(
        #[tokio::test $(($($runtime)*))?]
        async fn $sqlite() {
            $crate::with_sqlite($contract).await;
        }

        #[tokio::test $(($($runtime)*))?]
        async fn $postgres() {
            $crate::with_postgres($contract).await;
        }
    )*};
}

// The area modules come after the macro: a `macro_rules!` macro is only visible to code that follows it.
mod access;
mod annotations;
mod common;
mod invitations;
mod metrics;
mod migrations;
mod monitors;
mod plan;
mod runner;
mod signals;

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
