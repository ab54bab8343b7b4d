//! Training: language modelling (pre-training and SFT) and DPO, with AdamW, warm-up + cosine
//! learning rate, global-norm clipping, gradient accumulation and checkpoints that resume exactly.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::Instant;

use candle_core::{DType, Device, Tensor, Var};
use serde::{Deserialize, Serialize};

use crate::checkpoint::{self, Model, TrainerState};
use crate::config::TrainConfig;
use crate::data::{Dataset, DatasetKind, Row};
use crate::error::{Result, RunnerError};
use crate::model::{Gpt, Trace, target_log_probs};
use crate::optim::AdamW;
use crate::rng;
use crate::tokens::{EOS, encode};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Objective {
    /// Next-byte prediction over text, usually from fresh weights.
    Pretrain,
    /// Next-byte prediction on completions (and text rows), from a base model.
    Sft,
    /// Direct preference optimisation against the starting model, frozen.
    Dpo,
}

impl Objective {
    pub fn as_str(self) -> &'static str {
        match self {
            Objective::Pretrain => "pretrain",
            Objective::Sft => "sft",
            Objective::Dpo => "dpo",
        }
    }
}

/// What one optimizer step measured.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StepMetrics {
    pub step: usize,
    pub total_steps: usize,
    pub loss: f64,
    pub lr: f64,
    pub grad_norm: f64,
    pub tokens_per_s: f64,
    /// DPO only: mean of β·(chosen − rejected) log-ratio differences, and the share above zero.
    pub reward_margin: Option<f64>,
    pub reward_accuracy: Option<f64>,
}

/// Whether training should go on after a step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Control {
    Continue,
    /// Stop now (cancelled, or the lease was lost); the last checkpoint stays for a resume.
    Stop,
}

/// The caller's window into a run: progress for each step, and each checkpoint once it is on disk.
pub trait TrainHooks {
    fn on_step(&mut self, metrics: &StepMetrics) -> Control;
    fn on_checkpoint(&mut self, _step: usize, _dir: &Path) -> Result<()> {
        Ok(())
    }
}

/// Hooks that only print nothing and never stop, for tests and scripts.
pub struct NoHooks;

impl TrainHooks for NoHooks {
    fn on_step(&mut self, _: &StepMetrics) -> Control {
        Control::Continue
    }
}

pub struct TrainOutcome {
    pub model: Model,
    /// Steps completed; less than asked when the hooks stopped the run.
    pub steps: usize,
    pub stopped: bool,
    /// Mean loss of the last (up to) ten steps of this run.
    pub final_loss: f64,
    pub tokens: u64,
    pub seconds: f64,
    /// Set when the run started from a checkpoint rather than from step 0.
    pub resumed_from: Option<usize>,
}

/// One training sequence: token ids and the index of the first id whose prediction is scored.
struct Seq {
    ids: Vec<u32>,
    score_from: usize,
}

/// Trains `start` on `data`. When `ckpt_dir` already holds a checkpoint of the same dataset and
/// configuration, training continues from it; checkpoints are written there every
/// `checkpoint_every` steps.
pub fn train(
    objective: Objective,
    start: Model,
    data: &Dataset,
    cfg: &TrainConfig,
    ckpt_dir: Option<&Path>,
    hooks: &mut dyn TrainHooks,
) -> Result<TrainOutcome> {
    let model_cfg = start.config().clone();
    cfg.validate(&model_cfg)?;
    check_fit(objective, data)?;
    malloc::keep_freed_memory();
    let outcome = run(objective, start, data, cfg, ckpt_dir, hooks);
    malloc::release_freed_memory();
    outcome
}

fn run(
    objective: Objective,
    start: Model,
    data: &Dataset,
    cfg: &TrainConfig,
    ckpt_dir: Option<&Path>,
    hooks: &mut dyn TrainHooks,
) -> Result<TrainOutcome> {
    let model_cfg = start.config().clone();
    let device = start.gpt.device().clone();
    let digest = data.digest();
    // DPO's reference is the starting model, frozen: it must be taken before a checkpoint replaces
    // the weights.
    let reference = if objective == Objective::Dpo { Some(start.gpt.duplicate()?) } else { None };
    let mut gpt = start.gpt;
    let mut opt = AdamW::new(&gpt.params, cfg)?;
    let mut first_step = 1;
    let mut resumed_from = None;
    if let Some(dir) = ckpt_dir
        && checkpoint::is_training_checkpoint(dir)
    {
        let ck = checkpoint::load_training(dir, &device)?;
        if ck.state.dataset_digest != digest || ck.state.train != *cfg || ck.state.objective != objective.as_str() {
            return Err(RunnerError::Checkpoint(format!(
                "{} belongs to another dataset, objective or configuration",
                dir.display()
            )));
        }
        if ck.model.gpt.config != model_cfg {
            return Err(RunnerError::Checkpoint("the checkpoint's model shape differs".into()));
        }
        gpt = ck.model.gpt;
        opt = AdamW::new(&gpt.params, cfg)?;
        opt.restore(ck.state.step, &ck.optimizer, &device)?;
        first_step = ck.state.step + 1;
        resumed_from = Some(ck.state.step);
    }

    let seq_len = cfg.seq_len(&model_cfg);
    let sampler = Sampler::new(data, seq_len, cfg.seed);
    let mut ref_cache: HashMap<usize, (f64, f64)> = HashMap::new();
    let started = Instant::now();
    let mut tokens_total = 0u64;
    let mut recent: Vec<f64> = Vec::new();
    let mut steps_done = first_step - 1;
    let mut stopped = false;
    for step in first_step..=cfg.steps {
        let t0 = Instant::now();
        let lr = cfg.lr_at(step);
        let mut grads: BTreeMap<String, Tensor> = BTreeMap::new();
        let (mut loss_sum, mut step_tokens) = (0.0, 0u64);
        let (mut margins, mut correct, mut pairs) = (0.0, 0usize, 0usize);
        for micro in 0..cfg.grad_accum {
            let draw_base = ((step - 1) * cfg.grad_accum + micro) as u64 * cfg.batch_size as u64;
            let (loss, backward) = match objective {
                Objective::Pretrain | Objective::Sft => {
                    let seqs: Vec<Seq> =
                        (0..cfg.batch_size).map(|i| sampler.lm_sequence(draw_base + i as u64)).collect();
                    let (inputs, targets, mask, n) = batch_tensors(&seqs, &device)?;
                    step_tokens += n;
                    let (lp, backward) = training_log_probs(&gpt, &inputs, &targets)?;
                    let count = mask.sum_all()?.to_scalar::<f32>()?.max(1.0) as f64;
                    (((lp * &mask)?.sum_all()? * (-1.0 / count))?, backward)
                }
                Objective::Dpo => {
                    let reference = reference.as_ref().expect("made for DPO");
                    let idx: Vec<usize> =
                        (0..cfg.batch_size).map(|i| sampler.row_index(draw_base + i as u64)).collect();
                    let mut seqs = Vec::with_capacity(2 * idx.len());
                    for &i in &idx {
                        let (c, r) = sampler.preference_sequences(i);
                        seqs.push(c);
                        seqs.push(r);
                    }
                    let (inputs, targets, mask, n) = batch_tensors(&seqs, &device)?;
                    step_tokens += n;
                    let (lp, backward) = training_log_probs(&gpt, &inputs, &targets)?;
                    let sums = (lp * &mask)?.sum(1)?; // [2B]
                    let mut missing = Vec::new();
                    for &i in &idx {
                        if !ref_cache.contains_key(&i) {
                            missing.push(i);
                        }
                    }
                    // Each pair's reference log-probabilities are computed alone, in a batch of just its
                    // two sequences, so their values never depend on which pairs happened to be drawn
                    // with it: a resumed run, whose cache starts empty, gets the same numbers.
                    for &i in &missing {
                        if ref_cache.contains_key(&i) {
                            continue;
                        }
                        let (c, r) = sampler.preference_sequences(i);
                        let (ri, rt, rm, _) = batch_tensors(&[c, r], &device)?;
                        let ref_sums = sequence_log_probs(reference, &ri, &rt, &rm, false)?.to_vec1::<f32>()?;
                        ref_cache.insert(i, (ref_sums[0] as f64, ref_sums[1] as f64));
                    }
                    let ref_diff: Vec<f32> = idx.iter().map(|i| (ref_cache[i].0 - ref_cache[i].1) as f32).collect();
                    let ref_diff = Tensor::from_vec(ref_diff, idx.len(), &device)?;
                    let pairs_t = sums.reshape((idx.len(), 2))?;
                    let policy_diff = (pairs_t.narrow(1, 0, 1)?.squeeze(1)? - pairs_t.narrow(1, 1, 1)?.squeeze(1)?)?;
                    let margin = ((policy_diff - ref_diff)? * cfg.dpo_beta)?;
                    for m in margin.to_vec1::<f32>()? {
                        margins += m as f64;
                        correct += usize::from(m > 0.0);
                        pairs += 1;
                    }
                    (softplus(&margin.neg()?)?.mean_all()?, backward)
                }
            };
            let scaled = (&loss / cfg.grad_accum as f64)?;
            loss_sum += loss.to_scalar::<f32>()? as f64;
            let store = scaled.backward()?;
            let micro: Vec<(String, Tensor)> = match backward {
                Backward::Autograd => gpt
                    .params
                    .iter()
                    .filter_map(|(name, var)| store.get(var.as_tensor()).map(|g| (name.clone(), g.clone())))
                    .collect(),
                Backward::Traced { trace, lp } => {
                    let dlp = store.get(lp.as_tensor()).ok_or_else(|| {
                        RunnerError::invalid("objective", "the loss does not depend on the log-probabilities")
                    })?;
                    gpt.traced_backward(trace, dlp)?.into_iter().collect()
                }
            };
            for (name, g) in micro {
                let acc = match grads.remove(&name) {
                    Some(prev) => (prev + g)?,
                    None => g,
                };
                grads.insert(name, acc);
            }
        }
        let mut sq = 0f64;
        for g in grads.values() {
            sq += g.sqr()?.sum_all()?.to_scalar::<f32>()? as f64;
        }
        let grad_norm = sq.sqrt();
        if grad_norm > cfg.grad_clip {
            let scale = cfg.grad_clip / grad_norm;
            for g in grads.values_mut() {
                *g = (&*g * scale)?;
            }
        }
        opt.step(&gpt.params, &grads, lr)?;
        let loss = loss_sum / cfg.grad_accum as f64;
        if !loss.is_finite() {
            return Err(RunnerError::invalid("lr", format!("training diverged at step {step} (loss {loss})")));
        }
        tokens_total += step_tokens;
        recent.push(loss);
        if recent.len() > 10 {
            recent.remove(0);
        }
        steps_done = step;
        let secs = t0.elapsed().as_secs_f64().max(1e-9);
        let metrics = StepMetrics {
            step,
            total_steps: cfg.steps,
            loss,
            lr,
            grad_norm,
            tokens_per_s: step_tokens as f64 / secs,
            reward_margin: (pairs > 0).then(|| margins / pairs as f64),
            reward_accuracy: (pairs > 0).then(|| correct as f64 / pairs as f64),
        };
        // The step is reported before its checkpoint is written, so that a checkpoint's hooks see
        // every step it covers.
        let control = hooks.on_step(&metrics);
        if let Some(dir) = ckpt_dir
            && cfg.checkpoint_every > 0
            && step % cfg.checkpoint_every == 0
            && step < cfg.steps
        {
            let state = TrainerState {
                step,
                train: cfg.clone(),
                dataset_digest: digest.clone(),
                objective: objective.as_str().into(),
            };
            checkpoint::save_training(dir, &gpt, &opt, &state)?;
            hooks.on_checkpoint(step, dir)?;
        }
        if control == Control::Stop {
            stopped = step < cfg.steps;
            break;
        }
    }
    let final_loss = if recent.is_empty() { f64::NAN } else { recent.iter().sum::<f64>() / recent.len() as f64 };
    Ok(TrainOutcome {
        model: Model::new(gpt),
        steps: steps_done,
        stopped,
        final_loss,
        tokens: tokens_total,
        seconds: started.elapsed().as_secs_f64(),
        resumed_from,
    })
}

/// How a micro-batch's gradients are computed once its loss is known.
enum Backward {
    /// candle's autograd through [`Gpt::forward`] (GPUs).
    Autograd,
    /// The fused CPU path: autograd only from the loss to the log-probabilities `lp`, then
    /// [`Gpt::traced_backward`].
    Traced { trace: Trace, lp: Var },
}

/// Per-position log-probabilities of `targets` `[batch, time]` for a training step, and how to
/// back-propagate through them.
fn training_log_probs(gpt: &Gpt, inputs: &Tensor, targets: &Tensor) -> Result<(Tensor, Backward)> {
    if gpt.fused_training() {
        let (lp, trace) = gpt.traced_target_log_probs(inputs, targets)?;
        let lp = Var::from_tensor(&lp)?;
        Ok((lp.as_tensor().clone(), Backward::Traced { trace, lp }))
    } else {
        Ok((target_log_probs(&gpt.forward(inputs, true, None)?, targets)?, Backward::Autograd))
    }
}

/// glibc hands freed blocks over 128 KiB straight back to the system and maps large ones afresh, so by
/// default every training step page-faults its activations in again: that was over a quarter of a
/// step's time. During training, freed memory is kept for reuse (blocks up to 32 MiB come from the
/// heap, which is trimmed only past 256 MiB free); when a run ends, what is free is handed back.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
mod malloc {
    unsafe extern "C" {
        fn mallopt(param: i32, value: i32) -> i32;
        fn malloc_trim(pad: usize) -> i32;
    }
    const M_TRIM_THRESHOLD: i32 = -1;
    const M_MMAP_THRESHOLD: i32 = -3;

    pub fn keep_freed_memory() {
        static ONCE: std::sync::Once = std::sync::Once::new();
        // SAFETY: mallopt only changes glibc's allocation thresholds.
        ONCE.call_once(|| unsafe {
            mallopt(M_MMAP_THRESHOLD, 32 << 20);
            mallopt(M_TRIM_THRESHOLD, 256 << 20);
        });
    }

    pub fn release_freed_memory() {
        // SAFETY: malloc_trim only returns free memory to the system.
        unsafe {
            malloc_trim(0);
        }
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
mod malloc {
    pub fn keep_freed_memory() {}
    pub fn release_freed_memory() {}
}

fn check_fit(objective: Objective, data: &Dataset) -> Result<()> {
    match (objective, data.kind) {
        (Objective::Dpo, DatasetKind::Preference) => Ok(()),
        (Objective::Dpo, _) => Err(RunnerError::invalid("dataset", "DPO needs prompt/chosen/rejected rows")),
        (_, DatasetKind::Preference) => {
            Err(RunnerError::invalid("dataset", "pre-training and SFT need text or prompt/completion rows"))
        }
        _ => Ok(()),
    }
}

/// log(1 + eˣ), computed without overflow for large x.
fn softplus(x: &Tensor) -> Result<Tensor> {
    let pos = x.relu()?;
    let tail = ((x.abs()?.neg()?.exp()? + 1.0)?).log()?;
    Ok((pos + tail)?)
}

/// Sum of scored log-probabilities per sequence `[batch]`.
pub(crate) fn sequence_log_probs(
    gpt: &Gpt,
    inputs: &Tensor,
    targets: &Tensor,
    mask: &Tensor,
    train: bool,
) -> Result<Tensor> {
    let lp = target_log_probs(&gpt.forward(inputs, train, None)?, targets)?;
    Ok((lp * mask)?.sum(1)?)
}

/// Inputs, targets and score mask `[batch, time]`, padded with the end token (masked out), and the
/// number of real input tokens.
fn batch_tensors(seqs: &[Seq], device: &Device) -> Result<(Tensor, Tensor, Tensor, u64)> {
    let t = seqs.iter().map(|s| s.ids.len().saturating_sub(1)).max().unwrap_or(1).max(1);
    let b = seqs.len();
    let (mut inp, mut tgt, mut mask) = (vec![EOS; b * t], vec![EOS; b * t], vec![0f32; b * t]);
    let mut n = 0u64;
    for (r, s) in seqs.iter().enumerate() {
        for j in 0..s.ids.len().saturating_sub(1) {
            inp[r * t + j] = s.ids[j];
            tgt[r * t + j] = s.ids[j + 1];
            if j + 1 >= s.score_from {
                mask[r * t + j] = 1.0;
            }
            n += 1;
        }
    }
    Ok((
        Tensor::from_vec(inp, (b, t), device)?,
        Tensor::from_vec(tgt, (b, t), device)?,
        Tensor::from_vec(mask, (b, t), device)?.to_dtype(DType::F32)?,
        n,
    ))
}

/// Chooses training sequences as a pure function of `(seed, draw)`.
struct Sampler<'a> {
    data: &'a Dataset,
    seq_len: usize,
    seed: u64,
    /// Pre-training reads windows of one stream of all texts, each ended by the end token.
    stream: Vec<u32>,
}

const STREAM_ROWS: u64 = 1;
const STREAM_OFFSETS: u64 = 2;

impl<'a> Sampler<'a> {
    fn new(data: &'a Dataset, seq_len: usize, seed: u64) -> Sampler<'a> {
        let mut stream = Vec::new();
        if data.kind == DatasetKind::Text {
            for t in data.texts() {
                stream.extend(encode(t));
                stream.push(EOS);
            }
        }
        Sampler { data, seq_len, seed, stream }
    }

    fn row_index(&self, draw: u64) -> usize {
        rng::index(self.seed, STREAM_ROWS, draw, self.data.rows.len())
    }

    fn window(&self, ids: &[u32], draw: u64) -> Vec<u32> {
        let want = self.seq_len + 1;
        if ids.len() <= want {
            return ids.to_vec();
        }
        let o = rng::index(self.seed, STREAM_OFFSETS, draw, ids.len() - want + 1);
        ids[o..o + want].to_vec()
    }

    fn lm_sequence(&self, draw: u64) -> Seq {
        if self.data.kind == DatasetKind::Text {
            return Seq { ids: self.window(&self.stream, draw), score_from: 1 };
        }
        match &self.data.rows[self.row_index(draw)] {
            Row::Text { text } => {
                let mut ids = encode(text);
                ids.push(EOS);
                Seq { ids: self.window(&ids, draw), score_from: 1 }
            }
            Row::Completion { prompt, completion } => self.prompted(prompt, completion),
            Row::Preference { .. } => unreachable!("checked by check_fit"),
        }
    }

    /// Prompt then completion and the end token, scored on the completion only; a long prompt loses
    /// its beginning, the part furthest from what is predicted.
    fn prompted(&self, prompt: &str, completion: &str) -> Seq {
        let p = encode(prompt);
        let mut c = encode(completion);
        c.push(EOS);
        let want = self.seq_len + 1;
        let mut ids = p.clone();
        ids.extend(&c);
        let mut score_from = p.len().max(1);
        if ids.len() > want {
            let cut = ids.len() - want;
            ids.drain(..cut);
            score_from = score_from.saturating_sub(cut).max(1);
        }
        Seq { ids, score_from }
    }

    fn preference_sequences(&self, i: usize) -> (Seq, Seq) {
        match &self.data.rows[i] {
            Row::Preference { prompt, chosen, rejected } => {
                (self.prompted(prompt, chosen), self.prompted(prompt, rejected))
            }
            _ => unreachable!("checked by check_fit"),
        }
    }
}

/// DPO's implicit reward margin on held-out pairs: mean β·((log π(c) − log π_ref(c)) − (log π(r) −
/// log π_ref(r))) and the share of pairs where it is positive.
pub fn preference_margin(policy: &Gpt, reference: &Gpt, rows: &[Row], beta: f64) -> Result<(f64, f64)> {
    let margins = preference_margins(policy, reference, rows, beta)?;
    let n = rows.len().max(1) as f64;
    Ok((margins.iter().sum::<f64>() / n, margins.iter().filter(|&&m| m > 0.0).count() as f64 / n))
}

/// The DPO margin of each preference pair, in the rows' order (the items the gate's bootstrap
/// resamples).
pub fn preference_margins(policy: &Gpt, reference: &Gpt, rows: &[Row], beta: f64) -> Result<Vec<f64>> {
    let data = Dataset { kind: DatasetKind::Preference, rows: rows.to_vec() };
    let sampler = Sampler::new(&data, policy.config.ctx_len - 1, 0);
    let mut margins = Vec::with_capacity(rows.len());
    for chunk in (0..rows.len()).collect::<Vec<_>>().chunks(16) {
        let mut seqs = Vec::new();
        for &i in chunk {
            let (c, r) = sampler.preference_sequences(i);
            seqs.push(c);
            seqs.push(r);
        }
        let (inp, tgt, mask, _) = batch_tensors(&seqs, policy.device())?;
        let p = sequence_log_probs(policy, &inp, &tgt, &mask, false)?.to_vec1::<f32>()?;
        let r = sequence_log_probs(reference, &inp, &tgt, &mask, false)?.to_vec1::<f32>()?;
        for k in 0..chunk.len() {
            margins.push(beta * ((p[2 * k] - r[2 * k]) as f64 - (p[2 * k + 1] - r[2 * k + 1]) as f64));
        }
    }
    Ok(margins)
}
