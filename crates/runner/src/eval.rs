//! Evals: perplexity on held-out text, replay character acceptance, exact match, DPO margin, and a
//! reward spec that folds them (with latency and cost) into one number per model.

use std::time::Instant;

use candle_core::Tensor;
pub use slope_domain::offline::{EvalItems, TextItem};
pub use slope_domain::training::{EvalConfig, EvalReport, RewardSpec, SCORES};

use crate::checkpoint::Model;
use crate::data::Row;
use serde::{Deserialize, Serialize};

use crate::error::{Result, RunnerError};
use crate::generate::Generator;
use crate::model::target_log_probs;
use crate::rng;
use crate::tokens::{EOS, encode};

/// exp(mean negative log-likelihood per byte) over non-overlapping windows of the texts, and the number
/// of bytes predicted.
pub fn perplexity(model: &Model, texts: &[&str]) -> Result<(f64, u64)> {
    let windows = perplexity_windows(model, texts)?;
    let (nll, count) = windows.iter().fold((0.0, 0.0), |(a, b), w| (a + w[0], b + w[1]));
    Ok(((nll / count).exp(), count as u64))
}

/// Per window of [`perplexity`]: the negative log-likelihood summed over its predicted bytes, and
/// their number (the items the gate's bootstrap resamples).
pub fn perplexity_windows(model: &Model, texts: &[&str]) -> Result<Vec<[f64; 2]>> {
    let ctx = model.config().ctx_len;
    let mut stream = Vec::new();
    for t in texts {
        stream.extend(encode(t));
        stream.push(EOS);
    }
    if stream.len() < 2 {
        return Err(RunnerError::invalid("held_out", "has no text to measure perplexity on"));
    }
    // Windows of ctx + 1 bytes that overlap by one, so every byte after the first is predicted exactly
    // once; the shorter last window goes in a batch of its own.
    let mut windows: Vec<&[u32]> = Vec::new();
    let mut start = 0;
    while start + 1 < stream.len() {
        windows.push(&stream[start..(start + ctx + 1).min(stream.len())]);
        start += ctx;
    }
    let device = model.gpt.device();
    let mut out = Vec::with_capacity(windows.len());
    let full: Vec<&[u32]> = windows.iter().copied().filter(|w| w.len() == ctx + 1).collect();
    let rest: Vec<&[u32]> = windows.iter().copied().filter(|w| w.len() != ctx + 1).collect();
    for chunk in full.chunks(16).chain(rest.chunks(1)) {
        let t = chunk[0].len() - 1;
        let inp: Vec<u32> = chunk.iter().flat_map(|w| w[..t].iter().copied()).collect();
        let tgt: Vec<u32> = chunk.iter().flat_map(|w| w[1..].iter().copied()).collect();
        let inp = Tensor::from_vec(inp, (chunk.len(), t), device)?;
        let tgt = Tensor::from_vec(tgt, (chunk.len(), t), device)?;
        let lp = target_log_probs(&model.gpt.forward(&inp, false, None)?, &tgt)?;
        for window in lp.sum(1)?.to_vec1::<f32>()? {
            out.push([-(window as f64), t as f64]);
        }
    }
    Ok(out)
}

/// The outcome of replaying held-out texts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Acceptance {
    pub accepted_chars: u64,
    pub suggested_chars: u64,
    pub positions: u64,
    /// Σ accepted / Σ suggested (0 when nothing was suggested).
    pub score: f64,
    pub median_latency_ms: f64,
}

/// Replay character acceptance: at `per_text` cursor positions in each text (drawn from `seed`, at
/// character boundaries after at least 8 bytes) the model suggests up to `k` characters greedily; the
/// accepted characters are the common prefix with what was really written next.
pub fn replay_acceptance(model: &Model, texts: &[&str], k: usize, per_text: usize, seed: u64) -> Result<Acceptance> {
    acceptance_of(&replay_items(model, texts, k, per_text, seed)?)
}

/// [`replay_acceptance`] per text, in the texts' order (a text of 8 bytes or fewer has no position).
pub fn replay_items(model: &Model, texts: &[&str], k: usize, per_text: usize, seed: u64) -> Result<Vec<TextItem>> {
    let generator = Generator::new(model);
    let mut items = Vec::with_capacity(texts.len());
    for (ti, text) in texts.iter().enumerate() {
        let mut item = TextItem::default();
        let bounds: Vec<usize> = text.char_indices().map(|(i, _)| i).filter(|&i| i >= 8).collect();
        if !bounds.is_empty() {
            for p in 0..per_text {
                let cut = bounds[rng::index(seed, ti as u64, p as u64, bounds.len())];
                let t0 = Instant::now();
                let suggestion = generator.suggest(&text[..cut], k)?;
                item.latencies_ms.push(t0.elapsed().as_secs_f64() * 1000.0);
                let truth = &text[cut..];
                let common = suggestion.chars().zip(truth.chars()).take_while(|(a, b)| a == b).count();
                item.accepted += common as u64;
                item.suggested += suggestion.chars().count() as u64;
            }
        }
        items.push(item);
    }
    Ok(items)
}

/// Replay acceptance over all the texts' items.
fn acceptance_of(items: &[TextItem]) -> Result<Acceptance> {
    let accepted: u64 = items.iter().map(|t| t.accepted).sum();
    let suggested: u64 = items.iter().map(|t| t.suggested).sum();
    let mut latencies: Vec<f64> = items.iter().flat_map(|t| t.latencies_ms.iter().copied()).collect();
    if latencies.is_empty() {
        return Err(RunnerError::invalid("held_out", "has no text longer than 8 bytes to replay"));
    }
    latencies.sort_by(f64::total_cmp);
    Ok(Acceptance {
        accepted_chars: accepted,
        suggested_chars: suggested,
        positions: latencies.len() as u64,
        score: if suggested == 0 { 0.0 } else { accepted as f64 / suggested as f64 },
        median_latency_ms: latencies[latencies.len() / 2],
    })
}

/// The share of prompt/completion rows whose greedy completion equals the expected one (surrounding
/// whitespace ignored).
pub fn exact_match(model: &Model, rows: &[Row]) -> Result<(f64, u64)> {
    let hits = exact_match_items(model, rows)?;
    Ok((hits.iter().filter(|&&h| h).count() as f64 / hits.len() as f64, hits.len() as u64))
}

/// [`exact_match`] per prompt/completion row, in the rows' order.
pub fn exact_match_items(model: &Model, rows: &[Row]) -> Result<Vec<bool>> {
    let generator = Generator::new(model);
    let mut hits = Vec::new();
    for row in rows {
        if let Row::Completion { prompt, completion } = row {
            let got = generator.suggest(prompt, completion.len() + 8)?;
            hits.push(got.trim() == completion.trim());
        }
    }
    if hits.is_empty() {
        return Err(RunnerError::invalid("held_out", "has no prompt/completion rows for exact match"));
    }
    Ok(hits)
}

/// Held-out material for [`evaluate`].
#[derive(Default)]
pub struct HeldOut<'a> {
    pub texts: Vec<&'a str>,
    pub completions: Vec<Row>,
    pub preferences: Vec<Row>,
}

/// Runs every eval the held-out material allows; `reference` enables the DPO margin.
pub fn evaluate(
    model: &Model,
    reference: Option<&Model>,
    held: &HeldOut<'_>,
    cfg: &EvalConfig,
    spec: &RewardSpec,
) -> Result<EvalReport> {
    let mut report = EvalReport::default();
    let mut prefixed_texts: Vec<String> = Vec::new();
    for row in &held.completions {
        if let Row::Completion { prompt, completion } = row {
            prefixed_texts.push(format!("{prompt}{completion}"));
        }
    }
    let mut texts: Vec<&str> = held.texts.clone();
    texts.extend(prefixed_texts.iter().map(String::as_str));
    if !texts.is_empty() {
        let windows = perplexity_windows(model, &texts)?;
        let (nll, count) = windows.iter().fold((0.0, 0.0), |(a, b), w| (a + w[0], b + w[1]));
        report.scores.insert("perplexity".into(), (nll / count).exp());
        report.counts.insert("perplexity".into(), count as u64);
        report.items.windows = windows;
        let replayed = replay_items(model, &texts, cfg.k, cfg.positions_per_text, cfg.seed)?;
        let acc = acceptance_of(&replayed)?;
        report.scores.insert("replay_acceptance".into(), acc.score);
        report.counts.insert("replay_acceptance".into(), acc.positions);
        report.scores.insert("latency_ms".into(), acc.median_latency_ms);
        report.scores.insert("cost_usd_per_1k".into(), spec.cost_per_1k(acc.median_latency_ms));
        report.items.texts = replayed;
    }
    if !held.completions.is_empty() {
        let hits = exact_match_items(model, &held.completions)?;
        report.scores.insert("exact_match".into(), hits.iter().filter(|&&h| h).count() as f64 / hits.len() as f64);
        report.counts.insert("exact_match".into(), hits.len() as u64);
        report.items.completions = hits;
    }
    if let Some(reference) = reference
        && !held.preferences.is_empty()
    {
        let margins = crate::train::preference_margins(&model.gpt, &reference.gpt, &held.preferences, cfg.dpo_beta)?;
        let n = margins.len().max(1) as f64;
        report.scores.insert("dpo_margin".into(), margins.iter().sum::<f64>() / n);
        report.scores.insert("dpo_accuracy".into(), margins.iter().filter(|&&m| m > 0.0).count() as f64 / n);
        report.counts.insert("dpo_margin".into(), held.preferences.len() as u64);
        report.items.preferences = margins;
    }
    if report.scores.is_empty() {
        return Err(RunnerError::invalid("held_out", "is empty: nothing to evaluate"));
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[test]
    fn perplexity_predicts_every_byte_after_the_first_once() {
        let cfg = crate::ModelConfig { n_layer: 1, n_head: 2, d_model: 16, ctx_len: 16, ..Default::default() };
        let model = Model::new(crate::model::Gpt::init(cfg, 1, &candle_core::Device::Cpu).unwrap());
        // 40 bytes and the end token: 41 ids, 40 predictions, in windows of 17, 17 and 9 ids.
        let text = "abcdefghijklmnopqrstuvwxyz0123456789ABCD";
        let (ppl, n) = perplexity(&model, &[text]).unwrap();
        assert_eq!(n, 40);
        // An untrained model is close to uniform over 257 ids.
        assert!(ppl > 150.0 && ppl < 400.0, "{ppl}");
    }

    #[test]
    fn reward_names_missing_and_unknown_scores() {
        let mut r = EvalReport::default();
        r.scores.insert("replay_acceptance".into(), 0.5);
        r.scores.insert("latency_ms".into(), 10.0);
        let spec = RewardSpec::default();
        assert!((spec.reward(&r).unwrap() - (0.5 - 0.01)).abs() < 1e-12);
        let spec = RewardSpec { weights: BTreeMap::from([("exact_match".into(), 1.0)]), cpu_usd_per_hour: 0.05 };
        assert_eq!(
            spec.reward(&r).unwrap_err().to_string(),
            "weights.exact_match: is weighted but the eval did not measure it"
        );
        let spec = RewardSpec { weights: BTreeMap::from([("speed".into(), 1.0)]), cpu_usd_per_hour: 0.05 };
        assert!(spec.validate().unwrap_err().to_string().starts_with("weights.speed: is not a score"));
        assert!((RewardSpec::default().cost_per_1k(3600.0) - 0.05).abs() < 1e-12);
    }
}
