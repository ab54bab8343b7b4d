//! The transformer: token and position embeddings, pre-norm blocks of causal self-attention and an
//! MLP, a final norm and an output head tied to the token embedding (GPT-2's shape).
//!
//! Parameters are plain [`Var`]s in a name-sorted map, not a `VarMap`, so their order (and with it the
//! optimizer's and the checkpoint's) never depends on hashing.

// Long on purpose: the traced forward pass and its hand-written backward must stay side by side, operation
// for operation, so that a change to one is seen against the other.

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
    /// The fused CPU path's keys and values per layer: head-major `[batch·heads, ctx_len, head_dim]`,
    /// filled up to `len`, for `batch` sequences.
    fused: Vec<(Tensor, Tensor)>,
    batch: usize,
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
        if !train && self.fused_training() {
            let run = self.fused_run(&ids.flatten_all()?.to_vec1()?, b, t, cache, false)?;
            return Ok(run.logits.reshape((b, t, self.config.vocab_size))?);
        }
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

// ---- The fused CPU training path -------------------------------------------------------------
//
// candle's autograd records a node for every tensor operation, and its backward pass allocates a zero
// gradient and adds into it for every input of every node; the layer norms, GELU, softmax and
// log-softmax above, composed of small operations, make dozens of such nodes per layer. On the CPU,
// training instead runs [`Gpt::traced_target_log_probs`], which keeps the few activations the
// backward pass needs, and [`Gpt::traced_backward`], the backward pass written out by hand: matrix
// products go through candle (gemm); everything else is one fused pass over plain slices, split over
// candle's thread count (`RAYON_NUM_THREADS`). Results do not depend on how the work is split. The test
// `traced_gradients_equal_autograd` holds this path to the autograd one.

/// What a traced forward keeps for its backward pass.
pub struct Trace {
    ids: Vec<u32>,
    targets: Vec<u32>,
    t: usize,
    layers: Vec<LayerTrace>,
    /// The input of the final norm, its statistics and its output.
    x: Tensor,
    norm: NormStats,
    h: Tensor,
    /// Logits `[b·t, vocab]` and their log-sum-exp per row.
    logits: Tensor,
    lse: Vec<f32>,
}

struct LayerTrace {
    /// The block's input `[b·t, d]`.
    x: Tensor,
    ln1: NormStats,
    h1: Tensor,
    /// Head-major `[b·heads, t, head_dim]`, with their biases; q is scaled by 1/√head_dim.
    q: Tensor,
    k: Tensor,
    v: Tensor,
    /// Attention probabilities `[heads in part, t, t]`, one tensor per part of the heads.
    probs: Vec<Tensor>,
    /// Attention output before its projection `[b·t, d]`.
    y: Tensor,
    x_mid: Tensor,
    ln2: NormStats,
    h2: Tensor,
    /// The MLP's first product, without its bias `[b·t, 4d]`, and its activation.
    u: Tensor,
    g: Tensor,
}

struct NormStats {
    mean: Vec<f32>,
    rstd: Vec<f32>,
}

/// What [`Gpt::fused_run`] ends with: logits `[b·t, vocab]`, the layers' traces (when kept), and the
/// final norm's input, statistics and output.
struct FusedRun {
    logits: Tensor,
    layers: Vec<LayerTrace>,
    x: Tensor,
    norm: NormStats,
    h: Tensor,
}

impl Gpt {
    /// Whether training uses the fused path (the CPU) rather than autograd over [`Gpt::forward`].
    pub fn fused_training(&self) -> bool {
        self.device.is_cpu()
    }

    /// Per-position log-probabilities `[batch, time]` of `targets` given `ids` (as
    /// [`target_log_probs`] of [`Gpt::forward`]), and what [`Gpt::traced_backward`] needs. CPU only.
    pub fn traced_target_log_probs(&self, ids: &Tensor, targets: &Tensor) -> Result<(Tensor, Trace)> {
        let (b, t) = ids.dims2()?;
        let ids: Vec<u32> = ids.flatten_all()?.to_vec1()?;
        let targets: Vec<u32> = targets.flatten_all()?.to_vec1()?;
        let FusedRun { logits, layers, x, norm, h } = self.fused_run(&ids, b, t, None, true)?;
        let (lp, lse) = fused::log_probs(fused::view(&logits)?.s(), &targets, self.config.vocab_size)?;
        let lp = Tensor::from_vec(lp, (b, t), &self.device)?;
        Ok((lp, Trace { ids, targets, t, layers, x, norm, h, logits, lse }))
    }

    /// The fused forward pass over `ids` (`b` rows of `t`), continuing `cache` when given: logits
    /// `[b·t, vocab]`, and with `keep` what the backward pass needs. CPU only.
    fn fused_run(
        &self,
        ids: &[u32],
        b: usize,
        t: usize,
        mut cache: Option<&mut KvCache>,
        keep: bool,
    ) -> Result<FusedRun> {
        let offset = cache.as_ref().map_or(0, |c| c.len);
        let ctx = self.config.ctx_len;
        if offset + t > ctx {
            return Err(RunnerError::invalid("context", format!("{} positions exceed the model's {ctx}", offset + t)));
        }
        let (d, nh, hd) = (self.config.d_model, self.config.n_head, self.config.head_dim());
        let n = b * t;
        let dev = &self.device;
        if let Some(c) = cache.as_deref_mut() {
            if c.fused.is_empty() {
                let zeros = || Tensor::zeros((b * nh, ctx, hd), DType::F32, dev);
                c.fused = (0..self.config.n_layer).map(|_| Ok((zeros()?, zeros()?))).collect::<Result<_>>()?;
                c.batch = b;
            } else if c.batch != b {
                return Err(RunnerError::invalid("cache", format!("holds {} sequences, not {b}", c.batch)));
            }
        }
        let x = fused::embed(fused::view(self.p("wte"))?.s(), fused::view(self.p("wpe"))?.s(), ids, t, offset, d)?;
        let mut x = Tensor::from_vec(x, (n, d), dev)?;
        let scale = 1.0 / (hd as f32).sqrt();
        let mut layers = Vec::with_capacity(if keep { self.config.n_layer } else { 0 });
        for l in 0..self.config.n_layer {
            let name = |s: &str| format!("h.{l:02}.{s}");
            let (h1, ln1) = self.traced_norm(&name("ln1"), &x)?;
            let qkv = h1.matmul(&self.p(&name("attn.w")).t()?)?;
            let (q, k, v) = {
                let (packed, bias) = (fused::view(&qkv)?, fused::view(self.p(&name("attn.b")))?);
                let heads = |part: usize, scale: f32| {
                    let bias = &bias.s()[part * d..(part + 1) * d];
                    let out = fused::to_heads(packed.s(), 3 * d, part * d, Some(bias), scale, t, nh, hd);
                    Tensor::from_vec(out, (b * nh, t, hd), dev)
                };
                (heads(0, scale)?, heads(1, 1.0)?, heads(2, 1.0)?)
            };
            drop(qkv);
            let (keys, values) = match cache.as_deref_mut() {
                Some(c) => {
                    let (kc, vc) = &c.fused[l];
                    fused::write_positions(kc, &k, offset)?;
                    fused::write_positions(vc, &v, offset)?;
                    (kc.narrow(1, 0, offset + t)?, vc.narrow(1, 0, offset + t)?)
                }
                None => (k.clone(), v.clone()),
            };
            let (probs, y) = attention_forward(&q, &keys, &values, offset, d)?;
            drop((keys, values));
            let a = y.matmul(&self.p(&name("attn.proj.w")).t()?)?;
            let x_mid = self.traced_residual(&x, &a, &name("attn.proj.b"))?;
            let (h2, ln2) = self.traced_norm(&name("ln2"), &x_mid)?;
            let u = h2.matmul(&self.p(&name("mlp.fc.w")).t()?)?;
            let g = {
                let out = fused::gelu_bias(fused::view(&u)?.s(), fused::view(self.p(&name("mlp.fc.b")))?.s());
                Tensor::from_vec(out, (n, 4 * d), dev)?
            };
            let m = g.matmul(&self.p(&name("mlp.proj.w")).t()?)?;
            let x_out = self.traced_residual(&x_mid, &m, &name("mlp.proj.b"))?;
            if keep {
                layers.push(LayerTrace { x, ln1, h1, q, k, v, probs, y, x_mid, ln2, h2, u, g });
            }
            x = x_out;
        }
        let (h, norm) = self.traced_norm("ln_f", &x)?;
        let logits = h.matmul(&self.p("wte").t()?)?;
        if let Some(c) = cache {
            c.len += t;
        }
        Ok(FusedRun { logits, layers, x, norm, h })
    }

    /// The gradient of Σ `dlp` ⊙ log-probabilities with respect to every parameter, from the trace
    /// of [`Gpt::traced_target_log_probs`]; `dlp` is `[batch, time]`.
    pub fn traced_backward(&self, trace: Trace, dlp: &Tensor) -> Result<BTreeMap<String, Tensor>> {
        let Trace { ids, targets, t, mut layers, x, norm, h, logits, lse } = trace;
        let (d, nh, hd, vocab) =
            (self.config.d_model, self.config.n_head, self.config.head_dim(), self.config.vocab_size);
        let n = ids.len();
        let b = n / t;
        let dev = &self.device;
        let dlp: Vec<f32> = dlp.flatten_all()?.to_vec1()?;
        if dlp.len() != n {
            return Err(RunnerError::invalid("dlp", format!("has {} values for {n} positions", dlp.len())));
        }
        let mut grads = BTreeMap::new();
        let mut put = |name: &str, g: Tensor| {
            grads.insert(name.to_string(), g);
        };
        let col_sums = |g: &Tensor, cols: usize| -> Result<Tensor> {
            Ok(Tensor::from_vec(fused::col_sums(fused::view(g)?.s(), cols), cols, dev)?)
        };

        let dlogits = fused::log_probs_backward(fused::view(&logits)?.s(), &targets, &lse, &dlp, vocab);
        drop(logits);
        let dlogits = Tensor::from_vec(dlogits, (n, vocab), dev)?;
        let dh = dlogits.matmul(self.p("wte"))?;
        let dwte_head = dlogits.t()?.matmul(&h)?;
        drop((dlogits, h));
        let (mut dx, dw, db) = self.traced_norm_backward("ln_f", &dh, &x, &norm, None)?;
        put("ln_f.w", dw);
        put("ln_f.b", db);
        let scale = 1.0 / (hd as f32).sqrt();
        for l in (0..self.config.n_layer).rev() {
            let lt = layers.pop().expect("one trace per layer");
            let name = |s: &str| format!("h.{l:02}.{s}");
            // MLP: x_out = x_mid + gelu(h2·Wfcᵀ + bfc)·Wprojᵀ + bproj.
            put(&name("mlp.proj.b"), col_sums(&dx, d)?);
            let dg = dx.matmul(self.p(&name("mlp.proj.w")))?;
            put(&name("mlp.proj.w"), dx.t()?.matmul(&lt.g)?);
            let (du, dbfc) = {
                let bias = fused::view(self.p(&name("mlp.fc.b")))?;
                fused::gelu_bias_backward(fused::view(&dg)?.s(), fused::view(&lt.u)?.s(), bias.s())
            };
            drop(dg);
            let du = Tensor::from_vec(du, (n, 4 * d), dev)?;
            put(&name("mlp.fc.b"), Tensor::from_vec(dbfc, 4 * d, dev)?);
            let dh2 = du.matmul(self.p(&name("mlp.fc.w")))?;
            put(&name("mlp.fc.w"), du.t()?.matmul(&lt.h2)?);
            drop(du);
            let (dx_mid, dw, db) = self.traced_norm_backward(&name("ln2"), &dh2, &lt.x_mid, &lt.ln2, Some(&dx))?;
            put(&name("ln2.w"), dw);
            put(&name("ln2.b"), db);
            // Attention: x_mid = x + attention(ln1(x))·Wprojᵀ + bproj.
            put(&name("attn.proj.b"), col_sums(&dx_mid, d)?);
            let dy = dx_mid.matmul(self.p(&name("attn.proj.w")))?;
            put(&name("attn.proj.w"), dx_mid.t()?.matmul(&lt.y)?);
            let dyh = {
                let out = fused::to_heads(fused::view(&dy)?.s(), d, 0, None, 1.0, t, nh, hd);
                Tensor::from_vec(out, (b * nh, t, hd), dev)?
            };
            drop(dy);
            let dqkv = attention_backward(&dyh, &lt, t, d, scale)?;
            drop(dyh);
            put(&name("attn.b"), col_sums(&dqkv, 3 * d)?);
            let dh1 = dqkv.matmul(self.p(&name("attn.w")))?;
            put(&name("attn.w"), dqkv.t()?.matmul(&lt.h1)?);
            drop(dqkv);
            let (dx_in, dw, db) = self.traced_norm_backward(&name("ln1"), &dh1, &lt.x, &lt.ln1, Some(&dx_mid))?;
            put(&name("ln1.w"), dw);
            put(&name("ln1.b"), db);
            dx = dx_in;
        }
        let (dwte, dwpe) = fused::embed_backward(fused::view(&dx)?.s(), &ids, t, vocab, self.config.ctx_len, d);
        put("wte", (dwte_head + Tensor::from_vec(dwte, (vocab, d), dev)?)?);
        put("wpe", Tensor::from_vec(dwpe, (self.config.ctx_len, d), dev)?);
        Ok(grads)
    }

    fn traced_norm(&self, name: &str, x: &Tensor) -> Result<(Tensor, NormStats)> {
        let d = self.config.d_model;
        let (w, b) = (fused::view(self.p(&format!("{name}.w")))?, fused::view(self.p(&format!("{name}.b")))?);
        let (y, mean, rstd) = fused::layer_norm(fused::view(x)?.s(), w.s(), b.s(), d, LN_EPS as f32);
        let rows = mean.len();
        Ok((Tensor::from_vec(y, (rows, d), &self.device)?, NormStats { mean, rstd }))
    }

    /// The gradients of a norm's input (plus `resid`, the gradient already flowing into it), gain and
    /// bias.
    fn traced_norm_backward(
        &self,
        name: &str,
        dy: &Tensor,
        x: &Tensor,
        stats: &NormStats,
        resid: Option<&Tensor>,
    ) -> Result<(Tensor, Tensor, Tensor)> {
        let d = self.config.d_model;
        let w = fused::view(self.p(&format!("{name}.w")))?;
        let resid = resid.map(fused::view).transpose()?;
        let (dx, dw, db) = fused::layer_norm_backward(
            fused::view(dy)?.s(),
            fused::view(x)?.s(),
            w.s(),
            &stats.mean,
            &stats.rstd,
            resid.as_ref().map(|r| r.s()),
            d,
        );
        let rows = stats.mean.len();
        let dev = &self.device;
        Ok((Tensor::from_vec(dx, (rows, d), dev)?, Tensor::from_vec(dw, d, dev)?, Tensor::from_vec(db, d, dev)?))
    }

    /// `x + a + bias` row by row.
    fn traced_residual(&self, x: &Tensor, a: &Tensor, bias: &str) -> Result<Tensor> {
        let out = fused::residual(fused::view(x)?.s(), fused::view(a)?.s(), fused::view(self.p(bias))?.s());
        Ok(Tensor::from_vec(out, x.dims(), &self.device)?)
    }
}

/// Causal attention of head-major queries `[b·heads, t, head_dim]` (already scaled) at positions
/// `offset..offset + t` over the keys and values of positions `0..offset + t`, the heads split into
/// one part per thread: the probabilities of each part and the output `[b·t, d]`.
fn attention_forward(q: &Tensor, k: &Tensor, v: &Tensor, offset: usize, d: usize) -> Result<(Vec<Tensor>, Tensor)> {
    let (bh, t, hd) = q.dims3()?;
    let cols = offset + t;
    let parts = fused::ranges(bh, t * cols);
    let done = fused::par_map(parts.clone(), |r| -> Result<(Tensor, Tensor)> {
        let (qp, kp, vp) =
            (q.narrow(0, r.start, r.len())?, k.narrow(0, r.start, r.len())?, v.narrow(0, r.start, r.len())?);
        let s = qp.matmul(&kp.t()?)?;
        fused::in_place(&s, |m| fused::causal_softmax(m, t, cols, offset))?;
        let y = s.matmul(&vp)?;
        Ok((s, y))
    });
    let (mut probs, mut ys) = (Vec::new(), Vec::new());
    for r in done {
        let (p, y) = r?;
        probs.push(p);
        ys.push(y);
    }
    let views = ys.iter().map(fused::view).collect::<Result<Vec<_>>>()?;
    let slices: Vec<(usize, &[f32])> = parts.iter().zip(&views).map(|(r, v)| (r.start, v.s())).collect();
    let nh = d / hd;
    let mut y = vec![0f32; bh / nh * t * d];
    fused::from_heads(&mut y, d, 0, 1.0, &slices, t, nh, hd);
    drop(views);
    Ok((probs, Tensor::from_vec(y, (bh / nh * t, d), q.device())?))
}

/// The gradient of the attention's packed q, k, v input `[b·t, 3d]` (before scaling) from that of its
/// head-major output `dyh`.
fn attention_backward(dyh: &Tensor, lt: &LayerTrace, t: usize, d: usize, scale: f32) -> Result<Tensor> {
    let (bh, _, hd) = dyh.dims3()?;
    let nh = d / hd;
    let parts = fused::ranges(bh, t * t);
    let done = fused::par_map(parts.iter().cloned().enumerate().collect(), |(i, r)| -> Result<[Tensor; 3]> {
        let narrow = |x: &Tensor| x.narrow(0, r.start, r.len());
        let (qp, kp, vp, dyp) = (narrow(&lt.q)?, narrow(&lt.k)?, narrow(&lt.v)?, narrow(dyh)?);
        let p = &lt.probs[i];
        let dv = p.t()?.matmul(&dyp)?;
        let ds = dyp.matmul(&vp.t()?)?;
        {
            let pv = fused::view(p)?;
            fused::in_place(&ds, |m| fused::causal_softmax_backward(m, pv.s(), t))?;
        }
        let dq = ds.matmul(&kp)?;
        let dk = ds.t()?.matmul(&qp)?;
        Ok([dq, dk, dv])
    });
    let done = done.into_iter().collect::<Result<Vec<_>>>()?;
    let mut dqkv = vec![0f32; bh / nh * t * 3 * d];
    for (which, sc) in [(0, scale), (1, 1.0), (2, 1.0)] {
        let views = done.iter().map(|g| fused::view(&g[which])).collect::<Result<Vec<_>>>()?;
        let slices: Vec<(usize, &[f32])> = parts.iter().zip(&views).map(|(r, v)| (r.start, v.s())).collect();
        fused::from_heads(&mut dqkv, 3 * d, which * d, sc, &slices, t, nh, hd);
    }
    Ok(Tensor::from_vec(dqkv, (bh / nh * t, 3 * d), dyh.device())?)
}

/// Fused CPU kernels over contiguous f32 slices.
mod fused {
    use std::ops::Range;

    use candle_core::{CpuStorage, Layout, Storage, StorageRef, Tensor};

    use crate::error::{Result, RunnerError};

    /// Rows go to threads in whole blocks of this many, and sums over rows add per-block partial
    /// sums in block order, so that results never depend on the number of threads.
    const BLOCK: usize = 64;
    /// Below this many values a pass runs on the calling thread alone.
    const PARALLEL_MIN: usize = 32 * 1024;

    fn fail(msg: &str) -> RunnerError {
        RunnerError::Candle(candle_core::Error::Msg(msg.to_string()))
    }

    /// A contiguous f32 CPU tensor's values, borrowed.
    pub(super) struct View<'a> {
        guard: StorageRef<'a>,
        range: Range<usize>,
    }

    impl View<'_> {
        pub(super) fn s(&self) -> &[f32] {
            match &*self.guard {
                Storage::Cpu(CpuStorage::F32(v)) => &v[self.range.clone()],
                _ => unreachable!("checked by view()"),
            }
        }
    }

    pub(super) fn view(t: &Tensor) -> Result<View<'_>> {
        let (guard, layout) = t.storage_and_layout();
        let (start, end) =
            layout.contiguous_offsets().ok_or_else(|| fail("the fused path needs contiguous tensors"))?;
        if !matches!(&*guard, Storage::Cpu(CpuStorage::F32(_))) {
            return Err(fail("the fused path runs on f32 CPU tensors"));
        }
        Ok(View { guard, range: start..end })
    }

    struct InPlace<F>(F);

    impl<F: Fn(&mut [f32]) + Send + Sync> candle_core::InplaceOp1 for InPlace<F> {
        fn name(&self) -> &'static str {
            "slope-fused-in-place"
        }

        fn cpu_fwd(&self, storage: &mut CpuStorage, layout: &Layout) -> candle_core::Result<()> {
            let CpuStorage::F32(v) = storage else { candle_core::bail!("the fused path runs on f32 tensors") };
            let Some((start, end)) = layout.contiguous_offsets() else {
                candle_core::bail!("the fused path needs contiguous tensors")
            };
            (self.0)(&mut v[start..end]);
            Ok(())
        }
    }

    /// Applies `f` to the values of `t`, which nothing else may share.
    pub(super) fn in_place(t: &Tensor, f: impl Fn(&mut [f32]) + Send + Sync) -> Result<()> {
        Ok(t.inplace_op1(&InPlace(f))?)
    }

    /// Copies head-major `new` `[bh, t, hd]` into positions `offset..offset + t` of `cache`
    /// `[bh, ctx, hd]`.
    pub(super) fn write_positions(cache: &Tensor, new: &Tensor, offset: usize) -> Result<()> {
        let (bh, t, hd) = new.dims3()?;
        let ctx = cache.dim(1)?;
        let src = view(new)?;
        let src = src.s();
        in_place(cache, |c| {
            for h in 0..bh {
                c[(h * ctx + offset) * hd..][..t * hd].copy_from_slice(&src[h * t * hd..][..t * hd]);
            }
        })
    }

    fn threads() -> usize {
        candle_core::utils::get_num_threads().max(1)
    }

    /// `rows` split into contiguous ranges, one per thread when `rows × cols` values are worth it:
    /// of whole blocks when there are enough of them, of rows otherwise.
    pub(super) fn ranges(rows: usize, cols: usize) -> Vec<Range<usize>> {
        let parts = if rows * cols < PARALLEL_MIN { 1 } else { threads().min(rows).max(1) };
        split_rows(rows, parts, if rows.div_ceil(BLOCK) >= parts { BLOCK } else { 1 })
    }

    /// Like [`ranges`], but always of whole blocks, for sums over rows.
    fn block_ranges(rows: usize, cols: usize) -> Vec<Range<usize>> {
        let parts = if rows * cols < PARALLEL_MIN { 1 } else { threads().min(rows.div_ceil(BLOCK)).max(1) };
        split_rows(rows, parts, BLOCK)
    }

    fn split_rows(rows: usize, parts: usize, unit: usize) -> Vec<Range<usize>> {
        let units = rows.div_ceil(unit);
        let per = units.div_ceil(parts);
        (0..parts)
            .map(|p| (p * per * unit).min(rows)..((p + 1) * per * unit).min(rows))
            .filter(|r| !r.is_empty())
            .collect()
    }

    /// `f` of each item, the first on the calling thread and each other on its own, in order.
    pub(super) fn par_map<T: Send, R: Send>(items: Vec<T>, f: impl Fn(T) -> R + Sync) -> Vec<R> {
        let mut items = items.into_iter();
        let Some(first) = items.next() else { return Vec::new() };
        let f = &f;
        std::thread::scope(|s| {
            let handles: Vec<_> = items.map(|item| s.spawn(move || f(item))).collect();
            let mut out = vec![f(first)];
            out.extend(handles.into_iter().map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e))));
            out
        })
    }

    /// `buf` cut at the rows of consecutive `ranges`, `cols` values a row.
    fn split<'a>(mut buf: &'a mut [f32], ranges: &[Range<usize>], cols: usize) -> Vec<&'a mut [f32]> {
        let mut out = Vec::with_capacity(ranges.len());
        for r in ranges {
            let (head, tail) = buf.split_at_mut(r.len() * cols);
            out.push(head);
            buf = tail;
        }
        out
    }

    /// Runs `f(rows, out_rows)` over `out` (`cols` values a row) split by [`ranges`], each row being
    /// worth `work` values.
    fn par_rows(out: &mut [f32], cols: usize, work: usize, f: impl Fn(Range<usize>, &mut [f32]) + Sync) {
        let rows = out.len() / cols.max(1);
        let rs = ranges(rows, work);
        let parts: Vec<_> = rs.iter().cloned().zip(split(out, &rs, cols)).collect();
        par_map(parts, |(r, o)| f(r, o));
    }

    /// Defines `fn $name` to run its body compiled for AVX-512 or for AVX2 and FMA when the CPU has
    /// them, so that its loops vectorise 16 or 8 lanes wide rather than plain x86-64's 4. The code does
    /// the same IEEE operations in the same order whichever runs (Rust never fuses a multiply and an
    /// add on its own), so results do not depend on the CPU.
    macro_rules! wide {
        ($(#[$meta:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? $body:block) => {
            $(#[$meta])*
            $vis fn $name($($arg: $ty),*) $(-> $ret)? {
                #[inline(always)]
                $(#[$meta])*
                fn imp($($arg: $ty),*) $(-> $ret)? $body
                #[cfg(target_arch = "x86_64")]
                {
                    #[target_feature(enable = "avx512f,avx512vl,avx2,fma")]
                    $(#[$meta])*
                    fn v4($($arg: $ty),*) $(-> $ret)? {
                        imp($($arg),*)
                    }
                    #[target_feature(enable = "avx2,fma")]
                    $(#[$meta])*
                    fn v3($($arg: $ty),*) $(-> $ret)? {
                        imp($($arg),*)
                    }
                    if std::arch::is_x86_feature_detected!("avx512f") && std::arch::is_x86_feature_detected!("avx512vl") {
                        // SAFETY: the CPU has every feature v4 is compiled for.
                        return unsafe { v4($($arg),*) };
                    }
                    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
                        // SAFETY: the CPU has every feature v3 is compiled for.
                        return unsafe { v3($($arg),*) };
                    }
                }
                imp($($arg),*)
            }
        };
    }

    /// Σ of a slice with eight accumulators, so that it vectorises; always in the same order.
    #[inline(always)]
    fn sum(xs: &[f32]) -> f32 {
        let mut acc = [0f32; 8];
        let mut chunks = xs.chunks_exact(8);
        for c in &mut chunks {
            for i in 0..8 {
                acc[i] += c[i];
            }
        }
        let tail: f32 = chunks.remainder().iter().sum();
        ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7])) + tail
    }

    #[inline(always)]
    fn dot(xs: &[f32], ys: &[f32]) -> f32 {
        let mut acc = [0f32; 8];
        let (mut a, mut b) = (xs.chunks_exact(8), ys.chunks_exact(8));
        for (c, e) in (&mut a).zip(&mut b) {
            for i in 0..8 {
                acc[i] += c[i] * e[i];
            }
        }
        let tail: f32 = a.remainder().iter().zip(b.remainder()).map(|(x, y)| x * y).sum();
        ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7])) + tail
    }

    /// Σ (x − m)².
    #[inline(always)]
    fn sum_sq_dev(xs: &[f32], m: f32) -> f32 {
        let mut acc = [0f32; 8];
        let mut chunks = xs.chunks_exact(8);
        for c in &mut chunks {
            for i in 0..8 {
                acc[i] += (c[i] - m) * (c[i] - m);
            }
        }
        let tail: f32 = chunks.remainder().iter().map(|v| (v - m) * (v - m)).sum();
        ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7])) + tail
    }

    #[inline(always)]
    fn max(xs: &[f32]) -> f32 {
        let mut acc = [f32::NEG_INFINITY; 8];
        let mut chunks = xs.chunks_exact(8);
        for c in &mut chunks {
            for i in 0..8 {
                acc[i] = if c[i] > acc[i] { c[i] } else { acc[i] };
            }
        }
        let mut m = chunks.remainder().iter().fold(f32::NEG_INFINITY, |a, &b| if b > a { b } else { a });
        for a in acc {
            m = if a > m { a } else { m };
        }
        m
    }

    /// eˣ to about 1 ulp (Cephes' expf), in a form that vectorises.
    #[inline(always)]
    #[allow(clippy::excessive_precision)]
    pub(super) fn exp(x: f32) -> f32 {
        const MAGIC: f32 = 12_582_912.0; // 1.5 · 2²³: adding it rounds to an integer
        let x = x.clamp(-87.3, 88.3);
        let t = x * std::f32::consts::LOG2_E + MAGIC;
        let n = t - MAGIC;
        let r = x - n * 0.693_359_375 - n * -2.121_944_40e-4;
        let mut p = 1.987_569_150_0e-4_f32;
        p = p * r + 1.398_199_950_7e-3;
        p = p * r + 8.333_451_907_3e-3;
        p = p * r + 4.166_579_589_4e-2;
        p = p * r + 1.666_666_545_9e-1;
        p = p * r + 5.000_000_120_1e-1;
        let y = p * r * r + r + 1.0;
        let two_n = ((t.to_bits() as i32 - MAGIC.to_bits() as i32 + 127) << 23) as u32;
        y * f32::from_bits(two_n)
    }

    #[inline(always)]
    pub(super) fn tanh(x: f32) -> f32 {
        1.0 - 2.0 / (exp(2.0 * x) + 1.0)
    }

    const GELU_C: f32 = 0.797_884_6; // √(2/π)
    const GELU_A: f32 = 0.044_715;

    #[inline(always)]
    fn gelu(z: f32) -> f32 {
        0.5 * z * (1.0 + tanh(GELU_C * z * (1.0 + GELU_A * z * z)))
    }

    #[inline(always)]
    fn gelu_grad(z: f32) -> f32 {
        let z2 = z * z;
        let th = tanh(GELU_C * z * (1.0 + GELU_A * z2));
        0.5 * (1.0 + th) + 0.5 * z * (1.0 - th * th) * GELU_C * (1.0 + 3.0 * GELU_A * z2)
    }

    /// Token plus position embeddings `[n, d]` for `ids` laid out as rows of `t` at positions
    /// `offset..offset + t`.
    pub(super) fn embed(wte: &[f32], wpe: &[f32], ids: &[u32], t: usize, offset: usize, d: usize) -> Result<Vec<f32>> {
        let vocab = wte.len() / d;
        if let Some(bad) = ids.iter().find(|&&i| i as usize >= vocab) {
            return Err(RunnerError::invalid("ids", format!("token {bad} is outside the vocabulary")));
        }
        let mut x = vec![0f32; ids.len() * d];
        for (n, (row, &id)) in x.chunks_exact_mut(d).zip(ids).enumerate() {
            let (e, p) = (&wte[id as usize * d..][..d], &wpe[(offset + n % t) * d..][..d]);
            for ((o, a), b) in row.iter_mut().zip(e).zip(p) {
                *o = a + b;
            }
        }
        Ok(x)
    }

    /// The gradients of the token and position tables `[vocab, d]`, `[ctx, d]`, in row order.
    pub(super) fn embed_backward(
        dx: &[f32],
        ids: &[u32],
        t: usize,
        vocab: usize,
        ctx: usize,
        d: usize,
    ) -> (Vec<f32>, Vec<f32>) {
        let (mut dwte, mut dwpe) = (vec![0f32; vocab * d], vec![0f32; ctx * d]);
        for (n, (g, &id)) in dx.chunks_exact(d).zip(ids).enumerate() {
            for (o, v) in dwte[id as usize * d..][..d].iter_mut().zip(g) {
                *o += v;
            }
            for (o, v) in dwpe[(n % t) * d..][..d].iter_mut().zip(g) {
                *o += v;
            }
        }
        (dwte, dwpe)
    }

    /// Adds each row's Σ to the partial sums of its block of [`BLOCK`] rows (`first` is the index of
    /// `rows`' first row, a block start).
    #[inline(always)]
    fn add_to_blocks(blocks: &mut Vec<Vec<f32>>, first: usize, i: usize, vals: impl Iterator<Item = f32>, len: usize) {
        if (first + i).is_multiple_of(BLOCK) || blocks.is_empty() {
            blocks.push(vec![0f32; len]);
        }
        let acc = blocks.last_mut().expect("pushed above");
        for (a, v) in acc.iter_mut().zip(vals) {
            *a += v;
        }
    }

    wide! {
        /// Layer norm of `x`'s rows into `y`, with each row's mean and 1/√(var + eps) into `stats`.
        fn layer_norm_rows(x: &[f32], w: &[f32], b: &[f32], eps: f32, y: &mut [f32], stats: &mut [f32]) {
            let d = w.len();
            for ((xr, yr), st) in x.chunks_exact(d).zip(y.chunks_exact_mut(d)).zip(stats.chunks_exact_mut(2)) {
                let m = sum(xr) / d as f32;
                let s = 1.0 / (sum_sq_dev(xr, m) / d as f32 + eps).sqrt();
                for (((o, &v), &wi), &bi) in yr.iter_mut().zip(xr).zip(w).zip(b) {
                    *o = (v - m) * s * wi + bi;
                }
                st[0] = m;
                st[1] = s;
            }
        }
    }

    /// Layer norm of each row of `x`: the output, and each row's mean and 1/√(var + eps).
    pub(super) fn layer_norm(x: &[f32], w: &[f32], b: &[f32], d: usize, eps: f32) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
        let rows = x.len() / d;
        let mut y = vec![0f32; x.len()];
        let mut stats = vec![0f32; 2 * rows];
        let rs = ranges(rows, d);
        let parts: Vec<_> = rs.iter().cloned().zip(split(&mut y, &rs, d)).zip(split(&mut stats, &rs, 2)).collect();
        par_map(parts, |((r, y), st)| layer_norm_rows(&x[r.start * d..r.end * d], w, b, eps, y, st));
        let (mean, rstd) = stats.chunks_exact(2).map(|s| (s[0], s[1])).unzip();
        (y, mean, rstd)
    }

    wide! {
        /// The input gradient (plus `resid`) of rows `first..` of a layer norm into `out`, and the
        /// per-block sums of dy·x̂ then dy (`2·d` values a block).
        #[allow(clippy::too_many_arguments)]
        fn layer_norm_backward_rows(
            dy: &[f32],
            x: &[f32],
            w: &[f32],
            mean: &[f32],
            rstd: &[f32],
            resid: Option<&[f32]>,
            first: usize,
            out: &mut [f32],
        ) -> Vec<Vec<f32>> {
            let d = w.len();
            let mut blocks: Vec<Vec<f32>> = Vec::new();
            let (mut g, mut xh, mut both) = (vec![0f32; d], vec![0f32; d], vec![0f32; 2 * d]);
            for (i, (o, (dyr, xr))) in out.chunks_exact_mut(d).zip(dy.chunks_exact(d).zip(x.chunks_exact(d))).enumerate() {
                let (m, s) = (mean[i], rstd[i]);
                for (((gj, xhj), (&dyj, &xj)), &wj) in g.iter_mut().zip(xh.iter_mut()).zip(dyr.iter().zip(xr)).zip(w) {
                    *xhj = (xj - m) * s;
                    *gj = dyj * wj;
                }
                let mg = sum(&g) / d as f32;
                let mgx = dot(&g, &xh) / d as f32;
                match resid {
                    Some(res) => {
                        for (((oj, &rj), &gj), &xhj) in o.iter_mut().zip(&res[i * d..][..d]).zip(&g).zip(&xh) {
                            *oj = rj + s * (gj - mg - xhj * mgx);
                        }
                    }
                    None => {
                        for ((oj, &gj), &xhj) in o.iter_mut().zip(&g).zip(&xh) {
                            *oj = s * (gj - mg - xhj * mgx);
                        }
                    }
                }
                let (dwp, dbp) = both.split_at_mut(d);
                for (((a, b), &dyj), &xhj) in dwp.iter_mut().zip(dbp.iter_mut()).zip(dyr).zip(&xh) {
                    *a = dyj * xhj;
                    *b = dyj;
                }
                add_to_blocks(&mut blocks, first, i, both.iter().copied(), 2 * d);
            }
            blocks
        }
    }

    /// The gradients of a layer norm's input (plus `resid`), gain and bias.
    pub(super) fn layer_norm_backward(
        dy: &[f32],
        x: &[f32],
        w: &[f32],
        mean: &[f32],
        rstd: &[f32],
        resid: Option<&[f32]>,
        d: usize,
    ) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
        let rows = mean.len();
        let mut dx = vec![0f32; rows * d];
        let rs = block_ranges(rows, d);
        let parts: Vec<_> = rs.iter().cloned().zip(split(&mut dx, &rs, d)).collect();
        let partials = par_map(parts, |(r, out)| {
            let span = r.start * d..r.end * d;
            layer_norm_backward_rows(
                &dy[span.clone()],
                &x[span.clone()],
                w,
                &mean[r.clone()],
                &rstd[r.clone()],
                resid.map(|res| &res[span.clone()]),
                r.start,
                out,
            )
        });
        let mut total = vec![0f32; 2 * d];
        for block in partials.iter().flatten() {
            for (t, v) in total.iter_mut().zip(block) {
                *t += v;
            }
        }
        let db = total.split_off(d);
        (dx, total, db)
    }

    wide! {
        /// `out = gelu(u + bias)` row by row.
        fn gelu_rows(u: &[f32], bias: &[f32], out: &mut [f32]) {
            for (orow, urow) in out.chunks_exact_mut(bias.len()).zip(u.chunks_exact(bias.len())) {
                for ((o, &x), &b) in orow.iter_mut().zip(urow).zip(bias) {
                    *o = gelu(x + b);
                }
            }
        }
    }

    wide! {
        /// `out = dg · gelu′(u + bias)` row by row.
        fn gelu_grad_rows(dg: &[f32], u: &[f32], bias: &[f32], out: &mut [f32]) {
            let cols = bias.len();
            for ((orow, urow), grow) in out.chunks_exact_mut(cols).zip(u.chunks_exact(cols)).zip(dg.chunks_exact(cols)) {
                for (((o, &x), &g), &b) in orow.iter_mut().zip(urow).zip(grow).zip(bias) {
                    *o = g * gelu_grad(x + b);
                }
            }
        }
    }

    /// `gelu(u + bias)`, the bias repeating along each row.
    pub(super) fn gelu_bias(u: &[f32], bias: &[f32]) -> Vec<f32> {
        let cols = bias.len();
        let mut out = vec![0f32; u.len()];
        par_rows(&mut out, cols, cols, |r, o| gelu_rows(&u[r.start * cols..r.end * cols], bias, o));
        out
    }

    /// The gradients of `u` and of the bias of [`gelu_bias`] from that of its output.
    pub(super) fn gelu_bias_backward(dg: &[f32], u: &[f32], bias: &[f32]) -> (Vec<f32>, Vec<f32>) {
        let cols = bias.len();
        let mut du = vec![0f32; u.len()];
        par_rows(&mut du, cols, cols, |r, o| {
            let span = r.start * cols..r.end * cols;
            gelu_grad_rows(&dg[span.clone()], &u[span], bias, o)
        });
        let db = col_sums(&du, cols);
        (du, db)
    }

    wide! {
        /// `out = x + a + bias` row by row.
        fn residual_rows(x: &[f32], a: &[f32], bias: &[f32], out: &mut [f32]) {
            let cols = bias.len();
            for ((orow, xrow), arow) in out.chunks_exact_mut(cols).zip(x.chunks_exact(cols)).zip(a.chunks_exact(cols)) {
                for (((o, &xv), &av), &b) in orow.iter_mut().zip(xrow).zip(arow).zip(bias) {
                    *o = xv + av + b;
                }
            }
        }
    }

    /// `x + a + bias`, the bias repeating along each row.
    pub(super) fn residual(x: &[f32], a: &[f32], bias: &[f32]) -> Vec<f32> {
        let cols = bias.len();
        let mut out = vec![0f32; x.len()];
        par_rows(&mut out, cols, cols, |r, o| {
            let span = r.start * cols..r.end * cols;
            residual_rows(&x[span.clone()], &a[span], bias, o)
        });
        out
    }

    wide! {
        /// Per-block column sums of rows `first..` of `g`.
        fn col_sum_rows(g: &[f32], cols: usize, first: usize) -> Vec<Vec<f32>> {
            let mut blocks: Vec<Vec<f32>> = Vec::new();
            for (i, row) in g.chunks_exact(cols).enumerate() {
                add_to_blocks(&mut blocks, first, i, row.iter().copied(), cols);
            }
            blocks
        }
    }

    /// Σ over the rows of `g` (`cols` values a row), by blocks of rows added in order.
    pub(super) fn col_sums(g: &[f32], cols: usize) -> Vec<f32> {
        let rows = g.len() / cols;
        let partials =
            par_map(block_ranges(rows, cols), |r| col_sum_rows(&g[r.start * cols..r.end * cols], cols, r.start));
        let mut total = vec![0f32; cols];
        for block in partials.iter().flatten() {
            for (t, v) in total.iter_mut().zip(block) {
                *t += v;
            }
        }
        total
    }

    wide! {
        /// [`to_heads`] for the sequences `first..` whose head-major values `out` receives.
        #[allow(clippy::too_many_arguments)]
        fn to_heads_seqs(
            src: &[f32],
            stride: usize,
            col0: usize,
            bias: Option<&[f32]>,
            scale: f32,
            t: usize,
            heads: usize,
            hd: usize,
            first: usize,
            out: &mut [f32],
        ) {
            for (k, seq) in out.chunks_exact_mut(heads * t * hd).enumerate() {
                let bi = first + k;
                for ti in 0..t {
                    let row = &src[(bi * t + ti) * stride + col0..][..heads * hd];
                    for h in 0..heads {
                        let dst = &mut seq[(h * t + ti) * hd..][..hd];
                        let s = &row[h * hd..][..hd];
                        match bias {
                            Some(bias) => {
                                for ((o, &v), &bv) in dst.iter_mut().zip(s).zip(&bias[h * hd..][..hd]) {
                                    *o = (v + bv) * scale;
                                }
                            }
                            None => {
                                for (o, &v) in dst.iter_mut().zip(s) {
                                    *o = v * scale;
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    /// Columns `col0..col0 + heads·hd` of the rows of `src` (`stride` values a row, rows `(b, t)`),
    /// plus `bias`, times `scale`, as head-major `[b·heads, t, hd]`.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn to_heads(
        src: &[f32],
        stride: usize,
        col0: usize,
        bias: Option<&[f32]>,
        scale: f32,
        t: usize,
        heads: usize,
        hd: usize,
    ) -> Vec<f32> {
        let b = src.len() / stride / t;
        let mut out = vec![0f32; b * heads * t * hd];
        // One output "row" per sequence: its heads × t × hd values.
        par_rows(&mut out, heads * t * hd, heads * t * hd, |r, o| {
            to_heads_seqs(src, stride, col0, bias, scale, t, heads, hd, r.start, o)
        });
        out
    }

    wide! {
        /// [`from_heads`] for the sequences `first..` whose rows `out` holds.
        #[allow(clippy::too_many_arguments)]
        fn from_heads_seqs(
            parts: &[(usize, &[f32])],
            stride: usize,
            col0: usize,
            scale: f32,
            t: usize,
            heads: usize,
            hd: usize,
            first: usize,
            out: &mut [f32],
        ) {
            for (k, seq) in out.chunks_exact_mut(t * stride).enumerate() {
                for h in 0..heads {
                    let bh = (first + k) * heads + h;
                    let (p0, vals) = parts.iter().rev().find(|(p0, _)| *p0 <= bh).expect("parts start at head 0");
                    let src = &vals[(bh - p0) * t * hd..][..t * hd];
                    for ti in 0..t {
                        let dst = &mut seq[ti * stride + col0 + h * hd..][..hd];
                        for (o, &v) in dst.iter_mut().zip(&src[ti * hd..][..hd]) {
                            *o = v * scale;
                        }
                    }
                }
            }
        }
    }

    /// The inverse of [`to_heads`]: head-major parts (each the first head index it holds, then its
    /// values), times `scale`, into columns `col0..` of `dst`'s rows (`stride` values a row).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn from_heads(
        dst: &mut [f32],
        stride: usize,
        col0: usize,
        scale: f32,
        parts: &[(usize, &[f32])],
        t: usize,
        heads: usize,
        hd: usize,
    ) {
        par_rows(dst, t * stride, t * stride, |r, o| {
            from_heads_seqs(parts, stride, col0, scale, t, heads, hd, r.start, o)
        });
    }

    wide! {
        /// Softmax of each row of the `[.., t, cols]` scores in place, query `i` (at position
        /// `offset + i`) seeing keys `0..=offset + i`.
        pub(super) fn causal_softmax(s: &mut [f32], t: usize, cols: usize, offset: usize) {
            for (i, row) in s.chunks_exact_mut(cols).enumerate() {
                let (live, dead) = row.split_at_mut(offset + i % t + 1);
                let mx = max(live);
                for v in live.iter_mut() {
                    *v = exp(*v - mx);
                }
                let inv = 1.0 / sum(live);
                for v in live.iter_mut() {
                    *v *= inv;
                }
                dead.fill(0.0);
            }
        }
    }

    wide! {
        /// The gradient of the scores from that of the probabilities `dp` (in place), given the
        /// probabilities `p`.
        pub(super) fn causal_softmax_backward(dp: &mut [f32], p: &[f32], t: usize) {
            for (i, (drow, prow)) in dp.chunks_exact_mut(t).zip(p.chunks_exact(t)).enumerate() {
                let (dl, dead) = drow.split_at_mut(i % t + 1);
                let pl = &prow[..dl.len()];
                let c = dot(dl, pl);
                for (d, &pv) in dl.iter_mut().zip(pl) {
                    *d = pv * (*d - c);
                }
                dead.fill(0.0);
            }
        }
    }

    wide! {
        /// Each row's target log-probability and log-sum-exp, in pairs into `out`.
        fn log_prob_rows(logits: &[f32], targets: &[u32], vocab: usize, out: &mut [f32]) {
            let mut e = vec![0f32; vocab];
            for ((l, &target), pair) in logits.chunks_exact(vocab).zip(targets).zip(out.chunks_exact_mut(2)) {
                let mx = max(l);
                for (e, &v) in e.iter_mut().zip(l) {
                    *e = exp(v - mx);
                }
                let lse = mx + sum(&e).ln();
                pair[0] = l[target as usize] - lse;
                pair[1] = lse;
            }
        }
    }

    /// Per row of `logits` (`vocab` values a row): the target's log-probability and the row's
    /// log-sum-exp.
    pub(super) fn log_probs(logits: &[f32], targets: &[u32], vocab: usize) -> Result<(Vec<f32>, Vec<f32>)> {
        if targets.iter().any(|&t| t as usize >= vocab) {
            return Err(fail("a target is outside the vocabulary"));
        }
        let mut out = vec![0f32; 2 * targets.len()];
        par_rows(&mut out, 2, vocab, |r, o| {
            log_prob_rows(&logits[r.start * vocab..r.end * vocab], &targets[r], vocab, o)
        });
        Ok(out.chunks_exact(2).map(|p| (p[0], p[1])).unzip())
    }

    wide! {
        /// [`log_probs_backward`] for the rows `out` holds.
        fn log_prob_backward_rows(logits: &[f32], targets: &[u32], lse: &[f32], dlp: &[f32], vocab: usize, out: &mut [f32]) {
            let rows = logits.chunks_exact(vocab).zip(targets).zip(lse).zip(dlp);
            for ((((l, &target), &z), &g), orow) in rows.zip(out.chunks_exact_mut(vocab)) {
                for (o, &v) in orow.iter_mut().zip(l) {
                    *o = -g * exp(v - z);
                }
                orow[target as usize] += g;
            }
        }
    }

    /// The gradient of the logits from that of the log-probabilities `dlp`.
    pub(super) fn log_probs_backward(
        logits: &[f32],
        targets: &[u32],
        lse: &[f32],
        dlp: &[f32],
        vocab: usize,
    ) -> Vec<f32> {
        let mut out = vec![0f32; logits.len()];
        par_rows(&mut out, vocab, vocab, |r, o| {
            let span = r.start * vocab..r.end * vocab;
            log_prob_backward_rows(&logits[span], &targets[r.clone()], &lse[r.clone()], &dlp[r], vocab, o)
        });
        out
    }
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

    #[test]
    fn fast_exp_and_tanh_are_accurate() {
        let mut worst = (0f32, 0f32);
        for i in -8700..=8800 {
            let x = i as f32 / 100.0 + 0.003;
            let rel = ((fused::exp(x) - x.exp()) / x.exp()).abs();
            worst.0 = worst.0.max(rel);
            if x.abs() < 20.0 {
                worst.1 = worst.1.max((fused::tanh(x) - x.tanh()).abs());
            }
        }
        assert!(worst.0 < 1e-6 && worst.1 < 1e-6, "{worst:?}");
        assert!(fused::exp(-1000.0) < 1e-37);
        assert!((fused::tanh(50.0) - 1.0).abs() < 1e-7 && (fused::tanh(-50.0) + 1.0).abs() < 1e-7);
    }

    /// The fused CPU path against autograd over the composed operations, on sizes big enough for the
    /// fused passes to split over threads.
    #[test]
    fn traced_gradients_equal_autograd() {
        let cfg = ModelConfig { n_layer: 2, n_head: 4, d_model: 64, ctx_len: 64, ..Default::default() };
        let g = Gpt::init(cfg, 3, &Device::Cpu).unwrap();
        let (b, t) = (8, 64);
        let draw = |salt: u64| -> Vec<u32> {
            (0..b * t).map(|i| (crate::rng::draw(salt, 0, i as u64) % 257) as u32).collect()
        };
        let ids = Tensor::from_vec(draw(1), (b, t), &Device::Cpu).unwrap();
        let targets = Tensor::from_vec(draw(2), (b, t), &Device::Cpu).unwrap();
        let weights: Vec<f32> =
            (0..b * t).map(|i| (crate::rng::draw(3, 0, i as u64) % 1000) as f32 / 1000.0 - 0.3).collect();
        let weights = Tensor::from_vec(weights, (b, t), &Device::Cpu).unwrap();

        let lp_ref = target_log_probs(&g.forward(&ids, true, None).unwrap(), &targets).unwrap();
        let (lp, trace) = g.traced_target_log_probs(&ids, &targets).unwrap();
        let diff = (&lp - &lp_ref).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        assert!(diff < 1e-4, "log-probabilities differ by {diff}");

        let store = (&lp_ref * &weights).unwrap().sum_all().unwrap().backward().unwrap();
        let grads = g.traced_backward(trace, &weights).unwrap();
        assert_eq!(grads.len(), g.params.len());
        for (name, var) in &g.params {
            let want = store.get(var.as_tensor()).unwrap();
            let got = &grads[name];
            assert_eq!(got.dims(), want.dims(), "{name}");
            let scale = want.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap().max(1e-3);
            let diff = (got - want).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
            assert!(diff <= 1e-4 * scale, "{name}: gradients differ by {diff} (largest {scale})");
        }
        // The same inputs give exactly the same gradients again.
        let (_, trace) = g.traced_target_log_probs(&ids, &targets).unwrap();
        let again = g.traced_backward(trace, &weights).unwrap();
        for (name, g1) in &grads {
            let d = (g1 - &again[name]).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
            assert_eq!(d, 0.0, "{name}");
        }
    }
}
