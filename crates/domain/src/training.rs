//! What the runner is asked to train and evaluate: the shape of a model, training and eval settings, and
//! the reward spec that folds eval scores into one number. They are plain data with their rules, here
//! rather than in the runner crate, because they travel inside job specifications and model records that
//! the store parses, the service checks and the UI shows; the runner re-exports them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::FieldErrors;

/// The byte-level vocabulary: 256 bytes and an end token.
pub const BYTE_VOCAB: usize = 257;

type Result<T = ()> = std::result::Result<T, FieldErrors>;

/// The shape of a model. Stored as `config.json` next to `model.safetensors`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelConfig {
    pub vocab_size: usize,
    pub n_layer: usize,
    pub n_head: usize,
    pub d_model: usize,
    /// The longest sequence the model sees (its position table's length).
    pub ctx_len: usize,
}

impl Default for ModelConfig {
    /// The default model: about 0.85 M parameters, small enough to train on two CPU cores in minutes
    /// and to suggest in a few milliseconds.
    fn default() -> Self {
        ModelConfig { vocab_size: BYTE_VOCAB, n_layer: 4, n_head: 4, d_model: 128, ctx_len: 128 }
    }
}

impl ModelConfig {
    pub fn validate(&self) -> Result<()> {
        let bad = |field: &str, msg: &str| Err(FieldErrors::single(field, msg));
        if self.vocab_size != BYTE_VOCAB {
            return bad("vocab_size", "must be 257 (bytes and an end token)");
        }
        if !(1..=48).contains(&self.n_layer) {
            return bad("n_layer", "must be between 1 and 48");
        }
        if self.n_head == 0 || self.d_model == 0 || !self.d_model.is_multiple_of(self.n_head) {
            return bad("n_head", "must divide d_model");
        }
        if self.d_model > 4096 {
            return bad("d_model", "must be at most 4096");
        }
        if !(8..=4096).contains(&self.ctx_len) {
            return bad("ctx_len", "must be between 8 and 4096");
        }
        Ok(())
    }

    pub fn head_dim(&self) -> usize {
        self.d_model / self.n_head
    }

    /// The number of trainable parameters (the output head is tied to the token embedding).
    pub fn parameters(&self) -> usize {
        let d = self.d_model;
        let block = 2 * 2 * d + (d * 3 * d + 3 * d) + (d * d + d) + (d * 4 * d + 4 * d) + (4 * d * d + d);
        self.vocab_size * d + self.ctx_len * d + self.n_layer * block + 2 * d
    }
}

/// How to train. Every field has a default so a job specification can name only what it changes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    /// Optimizer steps (each of `grad_accum` micro-batches).
    pub steps: usize,
    /// Sequences per micro-batch.
    pub batch_size: usize,
    /// Micro-batches whose gradients are summed before one optimizer step.
    pub grad_accum: usize,
    /// The longest training sequence; at most the model's `ctx_len`. Defaults to it.
    pub seq_len: Option<usize>,
    /// Peak learning rate, reached after `warmup_steps` and decayed by a cosine to `min_lr_ratio` × it.
    pub lr: f64,
    pub warmup_steps: usize,
    pub min_lr_ratio: f64,
    pub weight_decay: f64,
    pub beta1: f64,
    pub beta2: f64,
    /// Gradients whose global norm exceeds this are scaled down to it.
    pub grad_clip: f64,
    /// A checkpoint (weights and optimizer state) every this many steps, to resume from; 0 for none.
    pub checkpoint_every: usize,
    pub seed: u64,
    /// DPO's β: how far the policy may move from the reference.
    pub dpo_beta: f64,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            steps: 200,
            batch_size: 16,
            grad_accum: 1,
            seq_len: None,
            lr: 1e-3,
            warmup_steps: 20,
            min_lr_ratio: 0.1,
            weight_decay: 0.01,
            beta1: 0.9,
            beta2: 0.95,
            grad_clip: 1.0,
            checkpoint_every: 50,
            seed: 1,
            dpo_beta: 0.1,
        }
    }
}

impl TrainConfig {
    pub fn validate(&self, model: &ModelConfig) -> Result<()> {
        let bad = |field: &str, msg: String| Err(FieldErrors::single(field, msg));
        if !(1..=1_000_000).contains(&self.steps) {
            return bad("steps", "must be between 1 and 1000000".into());
        }
        if !(1..=4096).contains(&self.batch_size) {
            return bad("batch_size", "must be between 1 and 4096".into());
        }
        if !(1..=1024).contains(&self.grad_accum) {
            return bad("grad_accum", "must be between 1 and 1024".into());
        }
        if let Some(s) = self.seq_len
            && !(2..=model.ctx_len).contains(&s)
        {
            return bad("seq_len", format!("must be between 2 and the model's ctx_len ({})", model.ctx_len));
        }
        if !(self.lr > 0.0 && self.lr < 1.0) {
            return bad("lr", "must be in (0, 1)".into());
        }
        if !(0.0..=1.0).contains(&self.min_lr_ratio) {
            return bad("min_lr_ratio", "must be in [0, 1]".into());
        }
        if !(0.0..1.0).contains(&self.weight_decay) {
            return bad("weight_decay", "must be in [0, 1)".into());
        }
        if !(0.0..1.0).contains(&self.beta1) || !(0.0..1.0).contains(&self.beta2) {
            return bad("beta1", "beta1 and beta2 must be in [0, 1)".into());
        }
        if self.grad_clip.is_nan() || self.grad_clip <= 0.0 {
            return bad("grad_clip", "must be positive".into());
        }
        if !(self.dpo_beta > 0.0 && self.dpo_beta <= 10.0) {
            return bad("dpo_beta", "must be in (0, 10]".into());
        }
        Ok(())
    }

    pub fn seq_len(&self, model: &ModelConfig) -> usize {
        self.seq_len.unwrap_or(model.ctx_len).min(model.ctx_len)
    }

    /// The learning rate of step `step` (1-based): linear warm-up, then a cosine down to the floor.
    pub fn lr_at(&self, step: usize) -> f64 {
        let floor = self.lr * self.min_lr_ratio;
        if step <= self.warmup_steps {
            return self.lr * step as f64 / self.warmup_steps.max(1) as f64;
        }
        let span = self.steps.saturating_sub(self.warmup_steps).max(1) as f64;
        let progress = ((step - self.warmup_steps) as f64 / span).min(1.0);
        floor + 0.5 * (self.lr - floor) * (1.0 + (std::f64::consts::PI * progress).cos())
    }
}

/// Eval scores by name (`perplexity`, `replay_acceptance`, `exact_match`, `latency_ms`,
/// `cost_usd_per_1k`, `dpo_margin`, `dpo_accuracy`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct EvalReport {
    pub scores: BTreeMap<String, f64>,
    /// How much each score rests on: windows, cursor positions, rows.
    pub counts: BTreeMap<String, u64>,
    /// What each score measured on each held-out item, for the gate's bootstrap of the reward margin.
    #[serde(default)]
    pub items: crate::offline::EvalItems,
}

/// Weights over eval scores, latency and cost: reward = Σ weightᵢ · scoreᵢ. Every weighted score must
/// be present, so a model is never rewarded for an eval it skipped.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RewardSpec {
    pub weights: BTreeMap<String, f64>,
    /// What one CPU-hour costs, to turn measured latency into `cost_usd_per_1k` suggestions.
    #[serde(default = "default_cpu_usd_per_hour")]
    pub cpu_usd_per_hour: f64,
}

fn default_cpu_usd_per_hour() -> f64 {
    0.05
}

pub const SCORES: [&str; 7] =
    ["perplexity", "replay_acceptance", "exact_match", "latency_ms", "cost_usd_per_1k", "dpo_margin", "dpo_accuracy"];

impl Default for RewardSpec {
    /// Acceptance is what users feel; latency is charged a little so a slower model must earn it.
    fn default() -> Self {
        let weights = BTreeMap::from([("replay_acceptance".to_string(), 1.0), ("latency_ms".to_string(), -0.001)]);
        RewardSpec { weights, cpu_usd_per_hour: default_cpu_usd_per_hour() }
    }
}

impl RewardSpec {
    pub fn validate(&self) -> Result<()> {
        if self.weights.is_empty() {
            return Err(FieldErrors::single("weights", "must weigh at least one score"));
        }
        for (k, w) in &self.weights {
            if !SCORES.contains(&k.as_str()) {
                return Err(FieldErrors::single(
                    &format!("weights.{k}"),
                    format!("is not a score (one of {})", SCORES.join(", ")),
                ));
            }
            if !w.is_finite() {
                return Err(FieldErrors::single(&format!("weights.{k}"), "must be a finite number"));
            }
        }
        if !(self.cpu_usd_per_hour >= 0.0 && self.cpu_usd_per_hour.is_finite()) {
            return Err(FieldErrors::single("cpu_usd_per_hour", "must be a non-negative number"));
        }
        Ok(())
    }

    pub fn reward(&self, report: &EvalReport) -> Result<f64> {
        self.validate()?;
        let mut total = 0.0;
        for (k, w) in &self.weights {
            let v = report.scores.get(k).ok_or_else(|| {
                FieldErrors::single(&format!("weights.{k}"), "is weighted but the eval did not measure it")
            })?;
            total += w * v;
        }
        Ok(total)
    }

    /// The cost of a thousand suggestions at the measured latency.
    pub fn cost_per_1k(&self, latency_ms: f64) -> f64 {
        latency_ms / 1000.0 / 3600.0 * self.cpu_usd_per_hour * 1000.0
    }
}

/// Settings of replay acceptance.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EvalConfig {
    /// Characters suggested at most per cursor position.
    pub k: usize,
    pub positions_per_text: usize,
    pub seed: u64,
    pub dpo_beta: f64,
}

impl Default for EvalConfig {
    fn default() -> Self {
        EvalConfig { k: 16, positions_per_text: 4, seed: 7, dpo_beta: 0.1 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_warms_up_then_decays_to_the_floor() {
        let c = TrainConfig { steps: 100, warmup_steps: 10, lr: 1e-3, min_lr_ratio: 0.1, ..Default::default() };
        assert!((c.lr_at(5) - 5e-4).abs() < 1e-12);
        assert!((c.lr_at(10) - 1e-3).abs() < 1e-12);
        assert!(c.lr_at(50) < 1e-3 && c.lr_at(50) > 1e-4);
        assert!((c.lr_at(100) - 1e-4).abs() < 1e-12);
        let mut last = f64::MAX;
        for s in 10..=100 {
            assert!(c.lr_at(s) <= last);
            last = c.lr_at(s);
        }
    }

    #[test]
    fn configs_name_the_bad_field() {
        let m = ModelConfig { n_head: 3, ..Default::default() };
        assert!(m.validate().is_err_and(|e| e.get("n_head").is_some()));
        let t = TrainConfig { seq_len: Some(1000), ..Default::default() };
        let e = t.validate(&ModelConfig::default()).unwrap_err();
        assert!(e.to_string().starts_with("seq_len:"), "{e}");
        assert!(ModelConfig::default().validate().is_ok());
        assert_eq!(ModelConfig::default().parameters(), 257 * 128 + 128 * 128 + 4 * 198_272 + 256);
    }
}
