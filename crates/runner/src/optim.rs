//! AdamW with decoupled weight decay, written here rather than taken from candle-nn because a
//! checkpoint must carry the moment estimates and candle-nn keeps them private.

use std::collections::BTreeMap;

use candle_core::{Device, Tensor};

use crate::config::TrainConfig;
use crate::error::{Result, RunnerError};
use crate::model::Params;

pub struct AdamW {
    /// Optimizer steps taken so far (bias correction depends on it).
    pub t: usize,
    m: BTreeMap<String, Tensor>,
    v: BTreeMap<String, Tensor>,
    beta1: f64,
    beta2: f64,
    weight_decay: f64,
    eps: f64,
}

impl AdamW {
    pub fn new(params: &Params, cfg: &TrainConfig) -> Result<AdamW> {
        let mut m = BTreeMap::new();
        let mut v = BTreeMap::new();
        for (name, var) in params {
            m.insert(name.clone(), var.as_tensor().zeros_like()?);
            v.insert(name.clone(), var.as_tensor().zeros_like()?);
        }
        Ok(AdamW { t: 0, m, v, beta1: cfg.beta1, beta2: cfg.beta2, weight_decay: cfg.weight_decay, eps: 1e-8 })
    }

    /// One update with learning rate `lr`. Weight decay applies to matrices only: decaying norms'
    /// gains and biases towards zero hurts small models and is not what GPT-2 recipes do.
    pub fn step(&mut self, params: &Params, grads: &BTreeMap<String, Tensor>, lr: f64) -> Result<()> {
        self.t += 1;
        let (b1, b2) = (self.beta1, self.beta2);
        let c1 = 1.0 - b1.powi(self.t as i32);
        let c2 = 1.0 - b2.powi(self.t as i32);
        for (name, var) in params {
            let Some(g) = grads.get(name) else { continue };
            let m = ((&self.m[name] * b1)? + (g * (1.0 - b1))?)?;
            let v = ((&self.v[name] * b2)? + (g.sqr()? * (1.0 - b2))?)?;
            let update = ((&m / c1)? / ((&v / c2)?.sqrt()? + self.eps)?)?;
            let theta = var.as_tensor();
            let decayed = if theta.rank() >= 2 { (theta * (1.0 - lr * self.weight_decay))? } else { theta.clone() };
            var.set(&(decayed - (update * lr)?)?)?;
            self.m.insert(name.clone(), m);
            self.v.insert(name.clone(), v);
        }
        Ok(())
    }

    /// The moments as named tensors (`m.<param>`, `v.<param>`) for a checkpoint.
    pub fn state(&self) -> BTreeMap<String, Tensor> {
        let mut out = BTreeMap::new();
        for (k, t) in &self.m {
            out.insert(format!("m.{k}"), t.clone());
        }
        for (k, t) in &self.v {
            out.insert(format!("v.{k}"), t.clone());
        }
        out
    }

    /// Restores moments saved by [`AdamW::state`] after `t` steps.
    pub fn restore(&mut self, t: usize, state: &BTreeMap<String, Tensor>, device: &Device) -> Result<()> {
        for (prefix, map) in [("m", &mut self.m), ("v", &mut self.v)] {
            for (k, slot) in map.iter_mut() {
                let saved = state
                    .get(&format!("{prefix}.{k}"))
                    .ok_or_else(|| RunnerError::Checkpoint(format!("optimizer state {prefix}.{k} is missing")))?;
                if saved.dims() != slot.dims() {
                    return Err(RunnerError::Checkpoint(format!("optimizer state {prefix}.{k} has the wrong shape")));
                }
                *slot = saved.to_device(device)?;
            }
        }
        self.t = t;
        Ok(())
    }
}
