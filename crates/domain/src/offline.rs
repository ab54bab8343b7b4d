//! The offline half of the promotion gate: what an eval measured on each held-out item, and the paired
//! bootstrap interval of the reward margin between two models evaluated on the same items.
//!
//! An eval's reward is a weighted sum of scores, each computed from many held-out items (texts, windows,
//! rows, pairs). A margin of 0.004 on 40 texts may be luck; resampling the items says how much. The
//! bootstrap draws the items with replacement, recomputes every weighted score exactly as the eval
//! computed it (a ratio of summed characters, a median latency, …) for both models on the same draw
//! (the items are the same held-out data, so the draws are paired, which cancels the items' own
//! difficulty), and takes the 2.5th and 97.5th percentiles of the margins.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::entities::string_enum;
use crate::training::RewardSpec;

string_enum!(
    /// What a loop's promotion gate asks of the challenger's reward against the champion's on the same
    /// held-out data: that the paired bootstrap 95 % interval of the margin lie above zero, or only that
    /// the margin be positive.
    OfflineRule { IntervalAboveZero => "interval-above-zero", Beats => "beats" }
);

impl OfflineRule {
    pub fn label(self) -> &'static str {
        match self {
            OfflineRule::IntervalAboveZero => "a reward margin whose 95 % interval lies above zero",
            OfflineRule::Beats => "a higher reward",
        }
    }
}

/// One held-out text of an eval: replay acceptance's characters over its cursor positions, and each
/// suggestion's latency.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TextItem {
    pub accepted: u64,
    pub suggested: u64,
    pub latencies_ms: Vec<f64>,
}

/// What an eval measured on each held-out item, in the held-out data's order.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct EvalItems {
    /// Per text (replay acceptance, latency and cost).
    pub texts: Vec<TextItem>,
    /// Per perplexity window: the negative log-likelihood summed over its predicted bytes, and their
    /// number.
    pub windows: Vec<[f64; 2]>,
    /// Per prompt/completion row: whether the greedy completion matched.
    pub completions: Vec<bool>,
    /// Per preference pair: the DPO margin against the reference model.
    pub preferences: Vec<f64>,
}

/// The reward margin of a challenger over a champion with its paired bootstrap interval.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RewardMargin {
    /// The challenger's reward minus the champion's, on all items.
    pub margin: f64,
    /// The 2.5th and 97.5th percentiles of the resampled margins.
    pub ci_low: f64,
    pub ci_high: f64,
    pub replicates: u32,
}

/// How many resamples the gate draws: enough for the interval's ends to settle to about a tenth of its
/// width, few enough to take milliseconds on a few hundred items.
pub const BOOTSTRAP_REPLICATES: u32 = 2000;

/// Which items one resample holds, per kind (indices, with repeats).
struct Draw {
    texts: Vec<usize>,
    windows: Vec<usize>,
    completions: Vec<usize>,
    preferences: Vec<usize>,
}

impl EvalItems {
    /// Every item once: the eval's own scores.
    fn all(&self) -> Draw {
        Draw {
            texts: (0..self.texts.len()).collect(),
            windows: (0..self.windows.len()).collect(),
            completions: (0..self.completions.len()).collect(),
            preferences: (0..self.preferences.len()).collect(),
        }
    }

    /// One score on the items of `draw`, computed as the eval computes it; `None` where the items cannot
    /// give it (no text, no window, …) or the name is not a score.
    fn score(&self, name: &str, draw: &Draw, spec: &RewardSpec) -> Option<f64> {
        let mean = |xs: &mut dyn Iterator<Item = f64>| {
            let (sum, n) = xs.fold((0.0, 0usize), |(s, n), x| (s + x, n + 1));
            (n > 0).then(|| sum / n as f64)
        };
        match name {
            "replay_acceptance" => {
                let (accepted, suggested) = draw
                    .texts
                    .iter()
                    .map(|&i| &self.texts[i])
                    .fold((0, 0), |(a, s), t| (a + t.accepted, s + t.suggested));
                let positions: usize = draw.texts.iter().map(|&i| self.texts[i].latencies_ms.len()).sum();
                (positions > 0).then(|| if suggested == 0 { 0.0 } else { accepted as f64 / suggested as f64 })
            }
            "latency_ms" => self.median_latency(draw),
            "cost_usd_per_1k" => self.median_latency(draw).map(|l| spec.cost_per_1k(l)),
            "perplexity" => {
                let (nll, count) =
                    draw.windows.iter().map(|&i| self.windows[i]).fold((0.0, 0.0), |(a, b), w| (a + w[0], b + w[1]));
                (count > 0.0).then(|| (nll / count).exp())
            }
            "exact_match" => mean(&mut draw.completions.iter().map(|&i| f64::from(u8::from(self.completions[i])))),
            "dpo_margin" => mean(&mut draw.preferences.iter().map(|&i| self.preferences[i])),
            "dpo_accuracy" => {
                mean(&mut draw.preferences.iter().map(|&i| f64::from(u8::from(self.preferences[i] > 0.0))))
            }
            _ => None,
        }
    }

    /// The median suggestion latency as the eval takes it: the upper middle of the sorted latencies.
    fn median_latency(&self, draw: &Draw) -> Option<f64> {
        let mut all: Vec<f64> = draw.texts.iter().flat_map(|&i| self.texts[i].latencies_ms.iter().copied()).collect();
        if all.is_empty() {
            return None;
        }
        // Selection, not a sort: each of the thousands of resamples needs only the middle value.
        let middle = all.len() / 2;
        Some(*all.select_nth_unstable_by(middle, f64::total_cmp).1)
    }

    /// The reward under `spec` on the items of `draw`, or the first weighted score the items cannot give.
    fn reward(&self, draw: &Draw, spec: &RewardSpec) -> Result<f64, String> {
        let mut total = 0.0;
        for (name, weight) in &spec.weights {
            let score = self.score(name, draw, spec).ok_or_else(|| format!("no per-item results for {name}"))?;
            total += weight * score;
        }
        Ok(total)
    }

    /// Every score the items give, as the eval computed them (for checking that the items are the eval's).
    pub fn scores(&self, spec: &RewardSpec) -> BTreeMap<String, f64> {
        let draw = self.all();
        crate::training::SCORES
            .iter()
            .filter_map(|name| self.score(name, &draw, spec).map(|v| ((*name).to_owned(), v)))
            .collect()
    }
}

/// SplitMix64: a small, good generator, so the domain needs no random-number crate and a seed gives
/// the same interval on every machine.
struct SplitMix(u64);

impl SplitMix {
    fn below(&mut self, n: usize) -> usize {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        ((z >> 11) as f64 / (1u64 << 53) as f64 * n as f64) as usize
    }
}

/// Indices drawn with replacement: one list when both models have `a` = `b` items (paired: the same
/// held-out items), else one list per model (the items differ, as perplexity windows do between models
/// of different context lengths, so they are resampled independently).
fn draw_pair(rng: &mut SplitMix, a: usize, b: usize) -> (Vec<usize>, Vec<usize>) {
    let mut draw = |n: usize| (0..n).map(|_| rng.below(n)).collect::<Vec<usize>>();
    let first = draw(a);
    let second = if a == b { first.clone() } else { draw(b) };
    (first, second)
}

/// The challenger's reward margin over the champion, both evaluated with `spec` on the same held-out
/// data, with the percentile interval of `replicates` paired bootstrap resamples (seeded, so a decision
/// can be reproduced). Texts, completion rows and preference pairs are paired by position; an error
/// names what the items cannot give (an eval recorded before items were kept, say).
pub fn reward_margin(
    challenger: &EvalItems,
    champion: &EvalItems,
    spec: &RewardSpec,
    replicates: u32,
    seed: u64,
) -> Result<RewardMargin, String> {
    let margin = challenger.reward(&challenger.all(), spec)? - champion.reward(&champion.all(), spec)?;
    let mut rng = SplitMix(seed);
    let mut margins = Vec::with_capacity(replicates as usize);
    for _ in 0..replicates {
        let (t1, t2) = draw_pair(&mut rng, challenger.texts.len(), champion.texts.len());
        let (w1, w2) = draw_pair(&mut rng, challenger.windows.len(), champion.windows.len());
        let (c1, c2) = draw_pair(&mut rng, challenger.completions.len(), champion.completions.len());
        let (p1, p2) = draw_pair(&mut rng, challenger.preferences.len(), champion.preferences.len());
        let ours = Draw { texts: t1, windows: w1, completions: c1, preferences: p1 };
        let theirs = Draw { texts: t2, windows: w2, completions: c2, preferences: p2 };
        // A resample that holds no item a score needs (every text drawn had no cursor position) has no
        // margin; it is left out rather than counted as zero.
        if let (Ok(a), Ok(b)) = (challenger.reward(&ours, spec), champion.reward(&theirs, spec)) {
            margins.push(a - b);
        }
    }
    if margins.len() < (replicates as usize).div_ceil(2) || margins.is_empty() {
        return Err("too few held-out items to resample".to_owned());
    }
    margins.sort_by(f64::total_cmp);
    let at = |q: f64| margins[((q * (margins.len() - 1) as f64).round() as usize).min(margins.len() - 1)];
    Ok(RewardMargin { margin, ci_low: at(0.025), ci_high: at(0.975), replicates: margins.len() as u32 })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acceptance_only() -> RewardSpec {
        RewardSpec { weights: BTreeMap::from([("replay_acceptance".to_owned(), 1.0)]), cpu_usd_per_hour: 0.05 }
    }

    fn text(accepted: u64, suggested: u64, latencies: &[f64]) -> TextItem {
        TextItem { accepted, suggested, latencies_ms: latencies.to_vec() }
    }

    #[test]
    fn scores_are_recomputed_from_the_items_as_the_eval_computes_them() {
        let items = EvalItems {
            texts: vec![text(3, 10, &[5.0, 9.0]), text(1, 10, &[7.0]), text(0, 0, &[])],
            windows: vec![[20.0, 10.0], [10.0, 10.0]],
            completions: vec![true, false, true, true],
            preferences: vec![0.5, -0.25],
        };
        let scores = items.scores(&RewardSpec::default());
        assert_eq!(scores["replay_acceptance"], 0.2);
        assert_eq!(scores["latency_ms"], 7.0, "the upper middle of 5, 7, 9");
        assert!((scores["perplexity"] - 1.5_f64.exp()).abs() < 1e-12);
        assert_eq!((scores["exact_match"], scores["dpo_margin"], scores["dpo_accuracy"]), (0.75, 0.125, 0.5));
        assert!((scores["cost_usd_per_1k"] - RewardSpec::default().cost_per_1k(7.0)).abs() < 1e-15);
        // The default reward: acceptance − 0.001 × latency.
        let margin = reward_margin(&items, &EvalItems::default(), &RewardSpec::default(), 10, 1);
        assert_eq!(margin.unwrap_err(), "no per-item results for latency_ms", "nothing to compare with");
    }

    #[test]
    fn identical_models_have_a_zero_margin_and_a_clear_winner_an_interval_above_zero() {
        let items = EvalItems { texts: (0..40).map(|i| text(i % 7, 16, &[1.0])).collect(), ..Default::default() };
        let same = reward_margin(&items, &items, &acceptance_only(), 500, 3).unwrap();
        assert_eq!((same.margin, same.ci_low, same.ci_high), (0.0, 0.0, 0.0), "paired draws cancel exactly");
        let better = EvalItems {
            texts: items.texts.iter().map(|t| text(t.accepted + 2, 16, &[1.0])).collect(),
            ..items.clone()
        };
        let m = reward_margin(&better, &items, &acceptance_only(), 500, 3).unwrap();
        assert!((m.margin - 0.125).abs() < 1e-12, "{m:?}");
        assert!(m.ci_low > 0.0 && m.ci_low <= m.margin && m.margin <= m.ci_high, "{m:?}");
        // The same seed gives the same interval.
        assert_eq!(reward_margin(&better, &items, &acceptance_only(), 500, 3).unwrap(), m);
    }

    /// The interval's coverage on simulated data: two models' per-text acceptance on 60 texts of varied
    /// difficulty, the challenger 0.03 better in expectation, with binomial noise; over 300 simulated
    /// evals the 95 % interval should hold the true margin about 95 % of the time (a percentile bootstrap
    /// of a ratio on 60 items runs a little narrow, hence the lower bound of 88 %).
    #[test]
    fn the_interval_covers_the_true_margin_about_95_percent_of_the_time() {
        let mut rng = SplitMix(42);
        let mut uniform = move || rng.below(1 << 30) as f64 / (1u64 << 30) as f64;
        let binomial = |n: u64, p: f64, u: &mut dyn FnMut() -> f64| (0..n).filter(|_| u() < p).count() as u64;
        let (runs, texts, chars, delta) = (300, 60, 32, 0.03);
        let mut covered = 0;
        for run in 0..runs {
            let (mut champion, mut challenger) = (EvalItems::default(), EvalItems::default());
            for _ in 0..texts {
                let difficulty = 0.2 + 0.5 * uniform();
                champion.texts.push(text(binomial(chars, difficulty, &mut uniform), chars, &[1.0]));
                challenger.texts.push(text(binomial(chars, difficulty + delta, &mut uniform), chars, &[1.0]));
            }
            let m = reward_margin(&challenger, &champion, &acceptance_only(), 400, run).unwrap();
            covered += usize::from(m.ci_low <= delta && delta <= m.ci_high);
        }
        let coverage = covered as f64 / runs as f64;
        // Printed so that a run with --nocapture reports the figure, not only that it is in range.
        eprintln!("bootstrap coverage of the true reward margin: {coverage:.3} over {runs} simulated evals");
        assert!((0.88..=0.99).contains(&coverage), "coverage {coverage}");
    }

    #[test]
    fn items_of_different_lengths_are_resampled_apart_and_too_few_are_refused() {
        let spec = RewardSpec { weights: BTreeMap::from([("perplexity".to_owned(), -1.0)]), cpu_usd_per_hour: 0.05 };
        let short = EvalItems { windows: vec![[10.0, 10.0]; 5], ..Default::default() };
        let long = EvalItems { windows: vec![[12.0, 10.0]; 8], ..Default::default() };
        let m = reward_margin(&short, &long, &spec, 200, 9).unwrap();
        // Every window alike on each side: no spread, and the margin is exact.
        assert!((m.margin - (1.2_f64.exp() - 1.0_f64.exp())).abs() < 1e-12 && m.ci_low == m.ci_high, "{m:?}");
        let none = EvalItems { texts: vec![text(0, 0, &[])], ..Default::default() };
        assert_eq!(
            reward_margin(&none, &none, &acceptance_only(), 50, 1).unwrap_err(),
            "no per-item results for replay_acceptance"
        );
        assert_eq!("beats".parse::<OfflineRule>(), Ok(OfflineRule::Beats));
    }
}
