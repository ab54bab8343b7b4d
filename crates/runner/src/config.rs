//! Model and training configuration. Both travel as JSON: the model's beside its weights
//! (`config.json`), the training's inside a job's specification. They are domain types (the store
//! parses them out of job and model records, the service checks them), re-exported here so the runner
//! reads as one crate.

pub use slope_domain::training::{ModelConfig, TrainConfig};
