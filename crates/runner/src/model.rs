//! The transformer: token and position embeddings, pre-norm blocks of causal self-attention and an
//! MLP, a final norm and an output head tied to the token embedding (GPT-2's shape).
//!
//! Parameters are plain [`Var`]s in a name-sorted map, not a `VarMap`, so their order (and with it the
//! optimizer's and the checkpoint's) never depends on hashing.

use std::collections::BTreeMap;

use candle_core::{D, DType, Device, Tensor, Var};

use crate::config::ModelConfig;
use crate::error::{Result, RunnerError};
use crate::rng::SeqRng;

const LN_EPS: f64 = 1e-5;

/// Named, trainable parameters in a stable order.
pub type Params = BTreeMap<String, Var>;

pub struct Gpt {
    pub config: ModelConfig,
    pub params: Params,
    device: Device,
}

/// Keys and values of earlier positions, per layer, for generating one token at a time.
#[derive(Default)]
pub struct KvCache {
    layers: Vec<Option<(Tensor, Tensor)>>,
    /// Positions already in the cache.
    pub len: usize,
}

impl Gpt {
    /// A fresh model with GPT-2's initialisation (normal 0.02, residual projections scaled by
    /// 1/√(2·layers)), drawn from `seed`.
    pub fn init(config: ModelConfig, seed: u64, device: &Device) -> Result<Gpt> {
        config.validate()?;
        let mut rng = SeqRng::new(seed);
        let mut params = Params::new();
        let d = config.d_model;
        let mut normal = |shape: &[usize], std: f64| -> Result<Var> {
            let n: usize = shape.iter().product();
            let v: Vec<f32> = (0..n).map(|_| (rng.normal() * std) as f32).collect();
            Ok(Var::from_tensor(&Tensor::from_vec(v, shape, device)?)?)
        };
        let proj_std = 0.02 / (2.0 * config.n_layer as f64).sqrt();
        params.insert("wte".into(), normal(&[config.vocab_size, d], 0.02)?);
        params.insert("wpe".into(), normal(&[config.ctx_len, d], 0.01)?);
        for l in 0..config.n_layer {
            params.insert(format!("h.{l:02}.attn.w"), normal(&[3 * d, d], 0.02)?);
            params.insert(format!("h.{l:02}.attn.proj.w"), normal(&[d, d], proj_std)?);
            params.insert(format!("h.{l:02}.mlp.fc.w"), normal(&[4 * d, d], 0.02)?);
            params.insert(format!("h.{l:02}.mlp.proj.w"), normal(&[d, 4 * d], proj_std)?);
        }
        let zeros = |n: usize| -> Result<Var> { Ok(Var::zeros(n, DType::F32, device)?) };
        let ones = |n: usize| -> Result<Var> { Ok(Var::ones(n, DType::F32, device)?) };
        for l in 0..config.n_layer {
            params.insert(format!("h.{l:02}.attn.b"), zeros(3 * d)?);
            params.insert(format!("h.{l:02}.attn.proj.b"), zeros(d)?);
            params.insert(format!("h.{l:02}.mlp.fc.b"), zeros(4 * d)?);
            params.insert(format!("h.{l:02}.mlp.proj.b"), zeros(d)?);
            for n in ["ln1", "ln2"] {
                params.insert(format!("h.{l:02}.{n}.w"), ones(d)?);
                params.insert(format!("h.{l:02}.{n}.b"), zeros(d)?);
            }
        }
        params.insert("ln_f.w".into(), ones(d)?);
        params.insert("ln_f.b".into(), zeros(d)?);
        Ok(Gpt { config, params, device: device.clone() })
    }

    /// A model from saved tensors; every expected tensor must be present with its shape.
    pub fn from_tensors(config: ModelConfig, tensors: BTreeMap<String, Tensor>, device: &Device) -> Result<Gpt> {
        let template = Gpt::init(config.clone(), 0, device)?;
        let mut params = Params::new();
        for (name, var) in &template.params {
            let t = tensors.get(name).ok_or_else(|| RunnerError::Checkpoint(format!("tensor {name} is missing")))?;
            if t.dims() != var.dims() {
                return Err(RunnerError::Checkpoint(format!(
                    "tensor {name} has shape {:?}, the config needs {:?}",
                    t.dims(),
                    var.dims()
                )));
            }
            params.insert(name.clone(), Var::from_tensor(&t.to_dtype(DType::F32)?.to_device(device)?)?);
        }
        Ok(Gpt { config, params, device: device.clone() })
    }

    /// An independent copy (a frozen reference for DPO, or the starting point of fine-tuning).
    pub fn duplicate(&self) -> Result<Gpt> {
        let mut params = Params::new();
        for (name, var) in &self.params {
            params.insert(name.clone(), Var::from_tensor(&var.as_tensor().copy()?)?);
        }
        Ok(Gpt { config: self.config.clone(), params, device: self.device.clone() })
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    pub fn tensors(&self) -> BTreeMap<String, Tensor> {
        self.params.iter().map(|(k, v)| (k.clone(), v.as_tensor().clone())).collect()
    }

    fn p(&self, name: &str) -> &Tensor {
        self.params.get(name).map(|v| v.as_tensor()).expect("every parameter is created at init")
    }

    /// Logits `[batch, time, vocab]` for token ids `[batch, time]`.
    ///
    /// `train` selects operations with a backward pass; inference uses candle's fused kernels, which
    /// have none. With a cache, `ids` continue the cached positions.
    pub fn forward(&self, ids: &Tensor, train: bool, mut cache: Option<&mut KvCache>) -> Result<Tensor> {
        let (b, t) = ids.dims2()?;
        let offset = cache.as_ref().map_or(0, |c| c.len);
        if offset + t > self.config.ctx_len {
            return Err(RunnerError::invalid(
                "context",
                format!("{} positions exceed the model's {}", offset + t, self.config.ctx_len),
            ));
        }
        let d = self.config.d_model;
        let tok = self.p("wte").index_select(&ids.flatten_all()?, 0)?.reshape((b, t, d))?;
        let pos = self.p("wpe").narrow(0, offset, t)?;
        let mut x = tok.broadcast_add(&pos)?;
        let mask = if t > 1 { Some(causal_mask(t, offset, &self.device)?) } else { None };
        if let Some(c) = cache.as_deref_mut()
            && c.layers.len() != self.config.n_layer
        {
            c.layers = vec![None; self.config.n_layer];
        }
        for l in 0..self.config.n_layer {
            let layer_cache = cache.as_deref_mut().map(|c| &mut c.layers[l]);
            x = self.block(l, &x, mask.as_ref(), layer_cache, train)?;
        }
        let x = self.norm("ln_f", &x, train)?;
        let logits = x.reshape((b * t, d))?.matmul(&self.p("wte").t()?)?;
        if let Some(c) = cache {
            c.len += t;
        }
        Ok(logits.reshape((b, t, self.config.vocab_size))?)
    }

    fn block(
        &self,
        l: usize,
        x: &Tensor,
        mask: Option<&Tensor>,
        cache: Option<&mut Option<(Tensor, Tensor)>>,
        train: bool,
    ) -> Result<Tensor> {
        let (b, t, d) = x.dims3()?;
        let (nh, hd) = (self.config.n_head, self.config.head_dim());
        let h = self.norm(&format!("h.{l:02}.ln1"), x, train)?;
        let qkv = self.linear(&format!("h.{l:02}.attn"), &h)?.reshape((b, t, 3, nh, hd))?;
        let q = qkv.narrow(2, 0, 1)?.squeeze(2)?.transpose(1, 2)?.contiguous()?;
        let mut k = qkv.narrow(2, 1, 1)?.squeeze(2)?.transpose(1, 2)?.contiguous()?;
        let mut v = qkv.narrow(2, 2, 1)?.squeeze(2)?.transpose(1, 2)?.contiguous()?;
        if let Some(slot) = cache {
            if let Some((pk, pv)) = slot.as_ref() {
                k = Tensor::cat(&[pk, &k], 2)?;
                v = Tensor::cat(&[pv, &v], 2)?;
            }
            *slot = Some((k.clone(), v.clone()));
        }
        let mut att = (q.matmul(&k.t()?.contiguous()?)? * (1.0 / (hd as f64).sqrt()))?;
        if let Some(m) = mask {
            att = att.broadcast_add(m)?;
        }
        let att =
            if train { candle_nn::ops::softmax(&att, D::Minus1)? } else { candle_nn::ops::softmax_last_dim(&att)? };
        let y = att.matmul(&v)?.transpose(1, 2)?.reshape((b, t, d))?;
        let x = (x + self.linear(&format!("h.{l:02}.attn.proj"), &y)?)?;
        let h = self.norm(&format!("h.{l:02}.ln2"), &x, train)?;
        let h = self.linear(&format!("h.{l:02}.mlp.fc"), &h)?.gelu()?;
        Ok((&x + self.linear(&format!("h.{l:02}.mlp.proj"), &h)?)?)
    }

    /// `x · Wᵀ + b` over the last dimension, as one 2-D matrix product.
    fn linear(&self, name: &str, x: &Tensor) -> Result<Tensor> {
        let (w, bias) = (self.p(&format!("{name}.w")), self.p(&format!("{name}.b")));
        let dims = x.dims().to_vec();
        let (rows, inner) = (dims[..dims.len() - 1].iter().product::<usize>(), dims[dims.len() - 1]);
        let y = x.reshape((rows, inner))?.matmul(&w.t()?)?.broadcast_add(bias)?;
        let mut out = dims;
        *out.last_mut().expect("non-empty") = w.dim(0)?;
        Ok(y.reshape(out)?)
    }

    fn norm(&self, name: &str, x: &Tensor, train: bool) -> Result<Tensor> {
        let (w, b) = (self.p(&format!("{name}.w")), self.p(&format!("{name}.b")));
        if !train {
            return Ok(candle_nn::ops::layer_norm(&x.contiguous()?, w, b, LN_EPS as f32)?);
        }
        let mean = x.mean_keepdim(D::Minus1)?;
        let xc = x.broadcast_sub(&mean)?;
        let var = xc.sqr()?.mean_keepdim(D::Minus1)?;
        let xn = xc.broadcast_div(&(var + LN_EPS)?.sqrt()?)?;
        Ok(xn.broadcast_mul(w)?.broadcast_add(b)?)
    }
}

/// `[t, offset + t]`: 0 where query `i` (at position `offset + i`) may see key `j`, −∞ elsewhere.
fn causal_mask(t: usize, offset: usize, device: &Device) -> Result<Tensor> {
    let cols = offset + t;
    let mask: Vec<f32> =
        (0..t).flat_map(|i| (0..cols).map(move |j| if j <= offset + i { 0.0 } else { f32::NEG_INFINITY })).collect();
    Ok(Tensor::from_vec(mask, (t, cols), device)?)
}

/// Per-position log-probabilities of `targets` `[batch, time]` under `logits` `[batch, time, vocab]`.
pub fn target_log_probs(logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
    let (b, t, v) = logits.dims3()?;
    let lp = candle_nn::ops::log_softmax(&logits.reshape((b * t, v))?, D::Minus1)?;
    let picked = lp.gather(&targets.reshape((b * t, 1))?, 1)?;
    Ok(picked.reshape((b, t))?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny() -> ModelConfig {
        ModelConfig { n_layer: 2, n_head: 2, d_model: 16, ctx_len: 16, ..Default::default() }
    }

    #[test]
    fn same_seed_same_weights_and_counted_parameters() {
        let a = Gpt::init(tiny(), 5, &Device::Cpu).unwrap();
        let b = Gpt::init(tiny(), 5, &Device::Cpu).unwrap();
        let c = Gpt::init(tiny(), 6, &Device::Cpu).unwrap();
        let flat = |g: &Gpt| g.params["h.00.attn.w"].as_tensor().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(flat(&a), flat(&b));
        assert_ne!(flat(&a), flat(&c));
        let n: usize = a.params.values().map(|v| v.elem_count()).sum();
        assert_eq!(n, tiny().parameters());
    }

    #[test]
    fn cached_steps_equal_a_full_forward_and_inference_equals_training_path() {
        let g = Gpt::init(tiny(), 9, &Device::Cpu).unwrap();
        let ids = Tensor::new(&[[3u32, 100, 7, 42, 256, 9]], &Device::Cpu).unwrap();
        let full_train = g.forward(&ids, true, None).unwrap();
        let full = g.forward(&ids, false, None).unwrap();
        let diff = (&full - &full_train).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        assert!(diff < 1e-4, "{diff}");
        let mut cache = KvCache::default();
        let first = g.forward(&ids.narrow(1, 0, 4).unwrap(), false, Some(&mut cache)).unwrap();
        let step5 = g.forward(&ids.narrow(1, 4, 1).unwrap(), false, Some(&mut cache)).unwrap();
        let step6 = g.forward(&ids.narrow(1, 5, 1).unwrap(), false, Some(&mut cache)).unwrap();
        let joined = Tensor::cat(&[&first, &step5, &step6], 1).unwrap();
        let diff = (&full - &joined).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        assert!(diff < 1e-4, "{diff}");
        // Causality: changing a later token leaves earlier logits alone.
        let other = Tensor::new(&[[3u32, 100, 7, 42, 256, 10]], &Device::Cpu).unwrap();
        let o = g.forward(&other, false, None).unwrap();
        let diff = (full.narrow(1, 0, 5).unwrap() - o.narrow(1, 0, 5).unwrap())
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(diff < 1e-6, "{diff}");
        assert!(g.forward(&Tensor::zeros((1, 17), DType::U32, &Device::Cpu).unwrap(), false, None).is_err());
    }
}
