//! Times the promotion gate's paired bootstrap of the reward margin (`slope_domain::reward_margin`) on
//! evals of the size the runner's held-out sets reach: `TEXTS` texts of four cursor positions each
//! (replay acceptance and median latency, the default reward), and as many perplexity windows.
//!
//! `cargo run --release -p slope-domain --example reward_margin [TEXTS]` prints the median of five runs.

use std::time::Instant;

use slope_domain::{BOOTSTRAP_REPLICATES, EvalItems, RewardSpec, TextItem, reward_margin};

/// A deterministic eval of `texts` texts: characters kept per position around `rate`, latencies around
/// `latency` milliseconds.
fn eval(texts: usize, rate: f64, latency: f64, seed: u64) -> EvalItems {
    let mut state = seed;
    let mut next = move || {
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (state >> 11) as f64 / (1u64 << 53) as f64
    };
    let mut items = EvalItems::default();
    for _ in 0..texts {
        let mut text = TextItem::default();
        for _ in 0..4 {
            text.suggested += 16;
            text.accepted += (0..16).filter(|_| next() < rate).count() as u64;
            text.latencies_ms.push(latency * (0.5 + next()));
        }
        items.texts.push(text);
        items.windows.push([64.0 * (1.0 + next()), 64.0]);
    }
    items
}

fn main() {
    let texts: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(500);
    let (challenger, champion) = (eval(texts, 0.42, 9.0, 1), eval(texts, 0.40, 9.0, 2));
    let spec = RewardSpec::default();
    let mut times = vec![];
    let mut margin = None;
    for run in 0..5 {
        let started = Instant::now();
        margin = Some(reward_margin(&challenger, &champion, &spec, BOOTSTRAP_REPLICATES, run).expect("a margin"));
        times.push(started.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    let m = margin.expect("five runs");
    println!(
        "{texts} texts × 4 positions, {} resamples: median {:.1} ms (runs: {})",
        BOOTSTRAP_REPLICATES,
        times[2] * 1000.0,
        times.iter().map(|t| format!("{:.1}", t * 1000.0)).collect::<Vec<_>>().join(", ")
    );
    println!("margin {:+.4}, 95 % interval [{:+.4}, {:+.4}]", m.margin, m.ci_low, m.ci_high);
}
