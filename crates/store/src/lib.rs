//! Slope's persistence: one API over SQLite (the embedded default) and PostgreSQL (production).
//!
//! Every query is written once, in SQL both databases accept (`$n` placeholders, `RETURNING`), and run
//! through [`on_db!`]/[`in_tx!`], which expand it for each backend. Cross-row rules (no overlapping
//! seasons, one active season) run inside the write transaction as a check the caller supplies, so the
//! rule lives in the domain crate and its atomicity lives here.

mod access;
mod annotations;
mod batches;
mod error;
mod experiments;
mod invitations;
mod metrics;
mod migrations;
mod monitors;
mod plan;
mod rows;
mod runner;
mod series;
mod settings;
mod signals;

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use chrono::Utc;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{PgPool, SqlitePool};

use slope_domain::OrgId;

pub use access::*;
pub use annotations::*;
pub use batches::*;
pub use error::StoreError;
pub use invitations::*;
pub use metrics::*;
#[doc(hidden)]
pub use migrations::{carried_checksum, superseded_checksums};
pub use monitors::*;
pub use plan::*;
pub use runner::*;

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// A connection pool to one of the two supported databases, and what this process is writing through
/// it. Clones share both.
#[derive(Clone, Debug)]
pub struct Store {
    db: Db,
    /// Batches being written by this process, so that identical requests write once (see
    /// `batches.rs`).
    flights: std::sync::Arc<batches::Flights>,
}

/// The pool of one of the two supported databases.
#[derive(Clone, Debug)]
pub enum Db {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// Runs `$body` with `$db` bound to the concrete pool. The body is expanded once per backend, so each
/// copy is type-checked against its own database driver.
macro_rules! on_db {
    ($store:expr, $db:ident => $body:expr) => {
        match &$store.db {
            $crate::Db::Sqlite($db) => $body,
            $crate::Db::Postgres($db) => $body,
        }
    };
}
pub(crate) use on_db;

/// Runs `$body` inside a transaction, with `$tx` bound to it, committing when the body returns `Ok`.
/// A body that returns `Err` drops the transaction, which rolls it back.
macro_rules! in_tx {
    ($store:expr, $tx:ident => $body:expr) => {
        match &$store.db {
            $crate::Db::Sqlite(pool) => {
                let mut $tx = pool.begin().await?;
                // The body runs in its own block so that its `?` and `return` end the body, not the
                // caller, and the caller can still map the error (for example a unique violation).
                let result: $crate::Result<_> = async { $body }.await;
                if result.is_ok() {
                    $tx.commit().await?;
                } else {
                    // Rolled back now rather than when the dropped transaction's connection is next
                    // used: until then a pooled connection could keep SQLite's write lock, and another
                    // writer wait out the busy timeout ("database is locked"). The body's error is what
                    // is reported, even when the rollback fails too.
                    let _ = $tx.rollback().await;
                }
                result
            }
            $crate::Db::Postgres(pool) => {
                let mut $tx = pool.begin().await?;
                // The body runs in its own block so that its `?` and `return` end the body, not the
                // caller, and the caller can still map the error (for example a unique violation).
                let result: $crate::Result<_> = async { $body }.await;
                if result.is_ok() {
                    $tx.commit().await?;
                } else {
                    // Rolled back now, as on SQLite, so the row locks it holds are released at once.
                    let _ = $tx.rollback().await;
                }
                result
            }
        }
    };
}
pub(crate) use in_tx;

impl Store {
    fn new(db: Db) -> Store {
        Store { db, flights: Default::default() }
    }

    /// The pool itself, for tests that must reach below the store's API (a migration test rewrites
    /// `_sqlx_migrations`).
    #[doc(hidden)]
    pub fn db(&self) -> &Db {
        &self.db
    }

    /// Connects to `url`: `sqlite://path/to/file.db` (created with its folder when missing) or
    /// `postgres://…`.
    pub async fn connect(url: &str) -> Result<Store> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let options = PgConnectOptions::from_str(url).map_err(StoreError::config)?;
            let pool = PgPoolOptions::new()
                .max_connections(16)
                .acquire_timeout(Duration::from_secs(10))
                .connect_with(options)
                .await?;
            Ok(Store::new(Db::Postgres(pool)))
        } else if url.starts_with("sqlite:") {
            let options = SqliteConnectOptions::from_str(url)
                .map_err(StoreError::config)?
                .create_if_missing(true)
                // WAL lets readers run while a writer commits. FULL sync makes a commit durable against
                // power loss too, not only against a crash of the process: an acknowledged batch of
                // events must survive either.
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Full)
                .busy_timeout(Duration::from_secs(10))
                .foreign_keys(true);
            if let Some(parent) = Path::new(options.get_filename()).parent()
                && !parent.as_os_str().is_empty()
            {
                std::fs::create_dir_all(parent)
                    .map_err(|e| StoreError::Config(format!("cannot create {}: {e}", parent.display())))?;
            }
            let pool = SqlitePoolOptions::new().max_connections(8).connect_with(options).await?;
            Ok(Store::new(Db::Sqlite(pool)))
        } else {
            Err(StoreError::Config(format!(
                "unsupported database URL {url:?}: use sqlite://FILE or postgres://USER@HOST/DB"
            )))
        }
    }

    /// Applies the migrations this binary carries for the connected database, after repairing the
    /// recorded checksums of the few that were edited in place (see `migrations.rs`).
    pub async fn migrate(&self) -> Result<()> {
        migrations::migrate(self).await
    }

    /// A round trip to the database, for readiness checks.
    pub async fn ping(&self) -> Result<()> {
        on_db!(self, db => sqlx::query("SELECT 1").execute(db).await.map(|_| ())?);
        Ok(())
    }

    pub async fn close(&self) {
        on_db!(self, db => db.close().await)
    }

    /// The organisation with `slug`, created with `name` when missing.
    pub async fn ensure_org(&self, slug: &str, name: &str) -> Result<OrgId> {
        let now = Utc::now();
        let id: i64 = on_db!(self, db => {
            sqlx::query("INSERT INTO orgs (slug, name, created_at) VALUES ($1, $2, $3) ON CONFLICT (slug) DO NOTHING")
                .bind(slug)
                .bind(name)
                .bind(now)
                .execute(db)
                .await?;
            sqlx::query_scalar("SELECT id FROM orgs WHERE slug = $1").bind(slug).fetch_one(db).await?
        });
        Ok(OrgId(id))
    }
}
