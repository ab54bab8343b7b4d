//! Slope's planning model.
//!
//! This crate is pure: it depends on no web, database or ML crate and compiles to `wasm32`, so the
//! browser runs exactly the validation the server runs. Raw input (`*Input`, what a form or a JSON body
//! carries) is parsed at the edge into validated specs (`*Spec`) made of newtypes; anything holding a
//! spec has already passed every rule in here.

pub mod ab_report;
pub mod access;
pub mod adoption;
pub mod agreement;
pub mod alert;
pub mod annotation;
pub mod annotation_views;
pub mod budget;
pub mod calibration;
pub mod checkin;
pub mod customers;
pub mod entities;
pub mod errors;
pub mod experiment;
pub mod forecast;
pub mod gate;
pub mod loop_views;
pub mod measure;
pub mod metric;
pub mod monitor;
pub mod newtypes;
pub mod notify;
pub mod objective;
pub mod offline;
pub mod outlook;
pub mod projection;
pub mod quarter;
pub mod review;
pub mod rollup;
pub mod runner;
pub mod runner_views;
pub mod season;
pub mod signals;
pub mod slope;
pub mod squad;
pub mod stack;
pub mod training;
pub mod views;
pub mod watch_views;

pub use access::*;
pub use adoption::*;
pub use agreement::*;
pub use alert::*;
pub use annotation::*;
pub use annotation_views::*;
pub use budget::*;
pub use calibration::*;
pub use checkin::*;
pub use customers::*;
pub use entities::*;
pub use errors::*;
pub use experiment::*;
pub use forecast::*;
pub use gate::*;
pub use loop_views::*;
pub use measure::*;
pub use metric::*;
pub use monitor::*;
pub use newtypes::*;
pub use notify::*;
pub use objective::*;
pub use offline::*;
pub use outlook::*;
pub use projection::*;
pub use quarter::*;
pub use review::*;
pub use rollup::*;
pub use runner::*;
pub use runner_views::*;
pub use season::*;
pub use signals::*;
pub use slope::*;
pub use squad::*;
pub use stack::*;
pub use training::*;
pub use views::*;
pub use watch_views::*;
