//! The migrations this binary carries, and the rule that a committed migration never changes.
//!
//! `migrations/CHECKSUMS` (versions 1–6, frozen) and `crates/store/MIGRATION_CHECKSUMS` (7 on) list the
//! SHA-384 sqlx records for every committed file. The unit test below
//! fails when a file no longer matches its line, so an edit in place is caught before it ships; a new
//! migration is the only way to change a schema. Three files were edited in place before the rule was
//! checked. Their original texts are restored, and a database that applied an edited text is repaired
//! at start: its recorded checksum, when it is exactly one of the listed `superseded` ones, is rewritten
//! to the current checksum of the same version. Any other mismatch still stops the start, as sqlx does.

use crate::{Db, Result, Store, StoreError};

static SQLITE: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/sqlite");
static POSTGRES: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/postgres");
const CHECKSUMS: &str = include_str!("../../../migrations/CHECKSUMS");
/// The lines of migrations committed after `migrations/CHECKSUMS` was frozen: that file is a committed
/// file of the migrations folder and so never changes either.
const LATER_CHECKSUMS: &str = include_str!("../MIGRATION_CHECKSUMS");

/// One line of `migrations/CHECKSUMS`.
#[derive(Debug, PartialEq)]
struct Listed {
    database: String,
    version: i64,
    current: bool,
    checksum: Vec<u8>,
}

fn listed() -> Result<Vec<Listed>> {
    let mut out = Vec::new();
    let files = [("migrations/CHECKSUMS", CHECKSUMS), ("crates/store/MIGRATION_CHECKSUMS", LATER_CHECKSUMS)];
    for (file, n, line) in
        files.iter().flat_map(|(file, text)| text.lines().enumerate().map(move |(n, l)| (file, n, l)))
    {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let bad = |what: &str| StoreError::Config(format!("{file} line {}: {what}", n + 1));
        let mut fields = line.split_whitespace();
        let (Some(database), Some(version), Some(state), Some(hex)) =
            (fields.next(), fields.next(), fields.next(), fields.next())
        else {
            return Err(bad("expected `database version state sha384`"));
        };
        let version = version.parse().map_err(|_| bad("the version is not a number"))?;
        let current = match state {
            "current" => true,
            "superseded" => false,
            _ => return Err(bad("the state is neither `current` nor `superseded`")),
        };
        let checksum = decode_hex(hex).ok_or_else(|| bad("the checksum is not 96 hex digits"))?;
        out.push(Listed { database: database.to_string(), version, current, checksum });
    }
    Ok(out)
}

fn decode_hex(hex: &str) -> Option<Vec<u8>> {
    if hex.len() != 96 || !hex.is_ascii() {
        return None;
    }
    (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).ok()).collect()
}

fn migrator(store: &Store) -> (&'static str, &'static sqlx::migrate::Migrator) {
    match store.db() {
        Db::Sqlite(_) => ("sqlite", &SQLITE),
        Db::Postgres(_) => ("postgres", &POSTGRES),
    }
}

/// Rewrites each recorded checksum that is a listed superseded text of its version to that version's
/// current checksum, then applies what is missing.
pub(crate) async fn migrate(store: &Store) -> Result<()> {
    let (database, migrator) = migrator(store);
    let repairs: Vec<(i64, Vec<u8>, Vec<u8>)> = {
        let listed = listed()?;
        let mut out = Vec::new();
        for old in listed.iter().filter(|l| l.database == database && !l.current) {
            let Some(new) = migrator.iter().find(|m| m.version == old.version) else {
                return Err(StoreError::Config(format!(
                    "migrations/CHECKSUMS supersedes {database} migration {} which this binary does not carry",
                    old.version
                )));
            };
            out.push((old.version, old.checksum.clone(), new.checksum.to_vec()));
        }
        out
    };
    match store.db() {
        Db::Sqlite(pool) => {
            let exists: bool = sqlx::query_scalar(
                "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations')",
            )
            .fetch_one(pool)
            .await?;
            if exists {
                for (version, old, new) in &repairs {
                    let done =
                        sqlx::query("UPDATE _sqlx_migrations SET checksum = $1 WHERE version = $2 AND checksum = $3")
                            .bind(new)
                            .bind(version)
                            .bind(old)
                            .execute(pool)
                            .await?;
                    if done.rows_affected() > 0 {
                        tracing::warn!(
                            version,
                            "repaired the recorded checksum of a migration that was edited after it was committed"
                        );
                    }
                }
            }
            SQLITE.run(pool).await?;
        }
        Db::Postgres(pool) => {
            let exists: bool =
                sqlx::query_scalar("SELECT to_regclass('_sqlx_migrations') IS NOT NULL").fetch_one(pool).await?;
            if exists {
                for (version, old, new) in &repairs {
                    let done =
                        sqlx::query("UPDATE _sqlx_migrations SET checksum = $1 WHERE version = $2 AND checksum = $3")
                            .bind(new)
                            .bind(version)
                            .bind(old)
                            .execute(pool)
                            .await?;
                    if done.rows_affected() > 0 {
                        tracing::warn!(
                            version,
                            "repaired the recorded checksum of a migration that was edited after it was committed"
                        );
                    }
                }
            }
            POSTGRES.run(pool).await?;
        }
    }
    Ok(())
}

/// The checksum this binary carries for `version` of the connected database, for tests that simulate a
/// database migrated by an older binary.
#[doc(hidden)]
pub fn carried_checksum(store: &Store, version: i64) -> Option<Vec<u8>> {
    migrator(store).1.iter().find(|m| m.version == version).map(|m| m.checksum.to_vec())
}

/// The superseded checksums `migrations/CHECKSUMS` lists for the connected database, by version.
#[doc(hidden)]
pub fn superseded_checksums(store: &Store) -> Vec<(i64, Vec<u8>)> {
    let database = migrator(store).0;
    listed()
        .unwrap_or_default()
        .into_iter()
        .filter(|l| l.database == database && !l.current)
        .map(|l| (l.version, l.checksum))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn committed_migrations_are_unchanged() {
        let listed = listed().expect("migrations/CHECKSUMS parses");
        for (database, migrator) in [("sqlite", &SQLITE), ("postgres", &POSTGRES)] {
            let current: Vec<&Listed> = listed.iter().filter(|l| l.database == database && l.current).collect();
            for m in migrator.iter() {
                let line = current.iter().find(|l| l.version == m.version).unwrap_or_else(|| {
                    panic!(
                        "{database} migration {} ({}) has no `current` line: add one to crates/store/MIGRATION_CHECKSUMS",
                        m.version, m.description
                    )
                });
                assert_eq!(
                    line.checksum,
                    m.checksum.to_vec(),
                    "{database} migration {} ({}) changed after it was committed: undo the edit and add a new migration",
                    m.version,
                    m.description
                );
            }
            for l in &current {
                assert!(
                    migrator.iter().any(|m| m.version == l.version),
                    "migrations/CHECKSUMS lists {database} migration {} that is not in migrations/{database}",
                    l.version
                );
            }
        }
    }

    #[test]
    fn the_checksum_list_refuses_malformed_lines() {
        assert!(decode_hex("zz").is_none());
        assert!(decode_hex(&"0".repeat(95)).is_none());
        assert_eq!(decode_hex(&"ab".repeat(48)).map(|v| v.len()), Some(48));
    }
}
