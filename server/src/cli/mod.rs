//! The command groups of `slope` other than `serve`, `migrate` and `openapi`: each module holds its
//! group's clap definitions and what its commands do. The command line works with direct access to
//! the database, so its commands act as the system principal `cli`.

pub mod admin;
pub mod annotate;
pub mod ingest;
pub mod metrics;
pub mod monitors;
pub mod plan;
pub mod runner;

use std::path::PathBuf;

use clap::Args;
use slope::config::Overrides;
use slope_service::ServiceError;

/// Where a command finds the database and the object store; shared by every command that opens them.
#[derive(Args)]
pub struct DbArgs {
    /// Database URL: sqlite://FILE or postgres://USER@HOST/DB [default: sqlite in the data dir].
    #[arg(long, global = true, value_name = "URL")]
    database_url: Option<String>,
    /// Folder for local state such as the embedded database [default: ./data].
    #[arg(long, global = true, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Where event segments, datasets and models live: file:///DIR or a path [default: segments/ in
    /// the data dir].
    #[arg(long, global = true, value_name = "URL")]
    event_store: Option<String>,
}

impl DbArgs {
    /// Flags win over the configuration file and the environment, so they go into the overrides.
    pub fn apply(&self, overrides: &mut Overrides) {
        overrides.database_url = self.database_url.clone();
        overrides.data_dir = self.data_dir.clone();
        overrides.event_store = self.event_store.clone();
    }
}

/// A service error as the command line prints it (shared by every `slope` command that calls a service).
pub fn show(e: ServiceError) -> String {
    match e {
        ServiceError::Invalid(fields) => format!("refused: {fields}"),
        other => other.to_string(),
    }
}
