//! Slope's use cases. REST handlers and server functions call this layer and nothing below it, so each
//! rule is enforced once whatever the entry point.

mod access;
mod adoption;
pub mod demo;
mod error;
mod loops;
mod planning;
mod plans;
mod runner;
mod season_dashboard;
mod segments;
mod simulator;

pub use access::*;
pub use adoption::{MIN_LIFT_POINTS, TREND_METHOD, TREND_WEEKS, before_after_lift};
pub use error::ServiceError;
pub use loops::*;
pub use planning::Planning;
pub use plans::PlanOutcome;
pub use runner::*;
pub use segments::SegmentStore;
pub use simulator::{Simulator, SimulatorSettings, duty_wait};

pub type Result<T, E = ServiceError> = std::result::Result<T, E>;
