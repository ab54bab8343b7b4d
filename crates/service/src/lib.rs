//! Slope's use cases. REST handlers and server functions call this layer and nothing below it, so each
//! rule is enforced once whatever the entry point.

mod access;
mod adoption;
mod annotation;
pub mod demo;
mod error;
mod loops;
mod markdown;
mod monitors;
mod notifier;
mod planning;
mod plans;
mod runner;
mod season_dashboard;
mod segments;
mod simulator;
mod upkeep;
mod views;

pub use access::*;
pub use adoption::{MIN_LIFT_POINTS, TREND_METHOD, TREND_WEEKS, before_after_lift};
pub use annotation::{Annotations, MAX_IMPORT_BYTES};
pub use error::ServiceError;
pub use loops::*;
pub use monitors::*;
pub use notifier::{Notifier, NotifierSettings, hmac_sha256_hex, signature};
pub use planning::Planning;
pub use plans::PlanOutcome;
pub use runner::*;
pub use segments::SegmentStore;
pub use simulator::{Simulator, SimulatorSettings, duty_wait};
/// The few types of the crates below that are part of this layer's own API (a batch's format, a loop's
/// summary, a drift result), named here so that the edges import them from the service, never from
/// the store or the metrics engine.
pub use slope_metrics::drift::Drift;
pub use slope_metrics::events::Format;
pub use slope_store::LoopSummary;
pub use upkeep::Upkeep;

pub type Result<T, E = ServiceError> = std::result::Result<T, E>;

/// The services a server runs, cheap to clone: the REST API's state and the UI's context are this one
/// value, so that pages, server functions and API handlers see the same services.
#[derive(Clone, Debug)]
pub struct Services {
    pub planning: Planning,
    pub loops: Loops,
    pub runner: Runner,
    pub access: Access,
    pub annotations: Annotations,
    pub monitors: Monitors,
    /// The demo's traffic simulator, when this process runs one; its status labels simulated traffic.
    pub simulator: Simulator,
}
