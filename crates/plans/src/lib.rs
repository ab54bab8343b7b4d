//! Plans as code: a season's plan as a TOML file that people export, edit, review and apply.
//!
//! `slope plan export` writes a file with [`PlanFile::from_entities`] and [`render`]; `slope plan diff`
//! and `slope plan apply` read one with [`parse`] and compare it with the stored plan with [`diff`].
//! This crate is the pure part of that loop: the file format, its parser with errors that name line and
//! field, its renderer and the diff. It does no IO and knows no database, so the service, the CLI and
//! tests share one definition of the format, and every rule it checks is the domain's own.
//!
//! Entities are named by stable keys (see [`slug`]), never by database ids, so a file means the same
//! thing in review, on another server, and after a restore.

mod diff;
mod model;
mod parse;
mod render;

pub use diff::{Change, FieldChange, Kind, Op, PlanDiff, diff};
pub use model::{GoalEntry, KeyResultEntry, ObjectiveEntry, PlanFile, SeasonEntry, SquadEntry};
pub use parse::{PlanError, PlanErrors, line_of, parse};
pub use render::render;
