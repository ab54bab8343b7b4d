//! Slope's fine-tune/eval runner.
//!
//! A small decoder-only transformer over bytes (no tokenizer to download), trained with candle on the
//! CPU by default (`cuda` feature for GPUs). Everything here is synchronous and blocking on purpose:
//! callers run it on a blocking thread pool and observe it through [`train::TrainHooks`].
//!
//! Determinism is a design rule, not a hope: initial weights come from a seeded generator, the batch of
//! step `s` is a function of `(seed, s)` alone and there is no dropout, so a job resumed from a
//! checkpoint ends with the same weights as one that never stopped.

pub mod checkpoint;
pub mod config;
pub mod data;
pub mod error;
pub mod eval;
pub mod generate;
pub mod model;
pub mod optim;
pub mod rng;
pub mod tokens;
pub mod train;

pub use checkpoint::Model;
pub use config::{ModelConfig, TrainConfig};
pub use data::{Dataset, DatasetKind, Row};
pub use error::{Result, RunnerError};
pub use eval::{EvalReport, RewardSpec};
pub use generate::Generator;
pub use train::{Objective, StepMetrics, TrainHooks, TrainOutcome};

/// The device the runner computes on: the first GPU when built with `cuda` and one is present,
/// otherwise the CPU.
pub fn device() -> candle_core::Device {
    #[cfg(feature = "cuda")]
    if let Ok(d) = candle_core::Device::new_cuda(0) {
        return d;
    }
    candle_core::Device::Cpu
}
