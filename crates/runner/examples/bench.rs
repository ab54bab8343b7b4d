//! The runner's speed on this machine: SFT training throughput of the default model and the latency of
//! one suggestion. `cargo xtask bench-runner` runs it beside the PyTorch peer (`bench/runner_peer.py`).
//!
//! ```text
//! cargo run --release -p slope-runner --example bench -- [--model models/base] [--out DIR]
//!     [--batch-size 16] [--seq-len 128] [--warmup 5] [--steps 20] [--suggestions 100] [--profile]
//! ```
//!
//! - Training: `train::train(Objective::Sft, …)` from the model, on prompt/completion rows long enough
//!   that every sequence is full (`seq-len` real input tokens each), AdamW, clipping at 1.0. The first
//!   `warmup` steps are left out of the timing; tokens/s counts the real input tokens of the timed steps.
//! - Latency: `Generator::suggest` of up to 16 bytes from ~100-byte contexts, 5 untimed, then
//!   `suggestions` timed; median and p90.
//!
//! The model is `--model` (default `models/base`) when it exists, otherwise a fresh default model from
//! seed 1, saved under `--out` so that the peer can load the same weights. The contexts and the
//! suggestions made are written to `--out/contexts.jsonl` for the peer to compare with its own. Threads
//! follow `RAYON_NUM_THREADS` (candle's CPU thread count). With `--profile`, the training step is also
//! timed phase by phase (forward, loss, backward, clipping, optimizer; the same path `train` takes on
//! this device) and printed to stderr.
//!
//! Prints one JSON line on stdout.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use slope_runner::model::{Gpt, target_log_probs};
use slope_runner::optim::AdamW;
use slope_runner::train::{self, Control, Objective, StepMetrics, TrainHooks};
use slope_runner::{Dataset, DatasetKind, Generator, Model, ModelConfig, Row, TrainConfig};

/// Public-domain lines (Shakespeare) for contexts and SFT rows, so the bench needs no download.
const TEXT: &str = "To be, or not to be, that is the question: Whether 'tis nobler in the mind to suffer \
The slings and arrows of outrageous fortune, Or to take arms against a sea of troubles, And by opposing end \
them. To die: to sleep; No more; and by a sleep to say we end The heart-ache and the thousand natural shocks \
That flesh is heir to, 'tis a consummation Devoutly to be wish'd. To die, to sleep; To sleep: perchance to \
dream: ay, there's the rub; For in that sleep of death what dreams may come When we have shuffled off this \
mortal coil, Must give us pause: there's the respect That makes calamity of so long life. \
Shall I compare thee to a summer's day? Thou art more lovely and more temperate: Rough winds do shake the \
darling buds of May, And summer's lease hath all too short a date: Sometime too hot the eye of heaven \
shines, And often is his gold complexion dimm'd; And every fair from fair sometime declines, By chance or \
nature's changing course untrimm'd; But thy eternal summer shall not fade Nor lose possession of that fair \
thou owest; Nor shall Death brag thou wander'st in his shade, When in eternal lines to time thou growest: \
So long as men can breathe or eyes can see, So long lives this and this gives life to thee. \
To-morrow, and to-morrow, and to-morrow, Creeps in this petty pace from day to day To the last syllable of \
recorded time, And all our yesterdays have lighted fools The way to dusty death. Out, out, brief candle! \
Life's but a walking shadow, a poor player That struts and frets his hour upon the stage And then is heard \
no more: it is a tale Told by an idiot, full of sound and fury, Signifying nothing. \
Friends, Romans, countrymen, lend me your ears; I come to bury Caesar, not to praise him. The evil that men \
do lives after them; The good is oft interred with their bones; So let it be with Caesar. The noble Brutus \
Hath told you Caesar was ambitious: If it were so, it was a grievous fault, And grievously hath Caesar \
answer'd it. All the world's a stage, And all the men and women merely players: They have their exits and \
their entrances; And one man in his time plays many parts, His acts being seven ages. The quality of mercy \
is not strain'd, It droppeth as the gentle rain from heaven Upon the place beneath: it is twice blest; It \
blesseth him that gives and him that takes: 'Tis mightiest in the mightiest: it becomes The throned \
monarch better than his crown.";

const CONTEXT_BYTES: usize = 100;
const COMPLETION_BYTES: usize = 60;
const SUGGEST_BYTES: usize = 16;
const LATENCY_WARMUP: usize = 5;

struct Options {
    model: PathBuf,
    out: PathBuf,
    batch_size: usize,
    seq_len: usize,
    warmup: usize,
    steps: usize,
    suggestions: usize,
    profile: bool,
}

fn parse() -> Result<Options, String> {
    let mut o = Options {
        model: PathBuf::from("models/base"),
        out: std::env::temp_dir().join("slope-runner-bench"),
        batch_size: 16,
        seq_len: 128,
        warmup: 5,
        steps: 20,
        suggestions: 100,
        profile: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{a} needs a value"));
        let number = |v: String| v.parse::<usize>().map_err(|_| format!("{a}: {v:?} is not a whole number"));
        match a.as_str() {
            "--model" => o.model = value()?.into(),
            "--out" => o.out = value()?.into(),
            "--batch-size" => o.batch_size = number(value()?)?,
            "--seq-len" => o.seq_len = number(value()?)?,
            "--warmup" => o.warmup = number(value()?)?,
            "--steps" => o.steps = number(value()?)?,
            "--suggestions" => o.suggestions = number(value()?)?,
            "--profile" => o.profile = true,
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    if o.steps == 0 || o.suggestions == 0 {
        return Err("--steps and --suggestions must be at least 1".into());
    }
    Ok(o)
}

/// Prompt/completion rows cut from [`TEXT`]; each is longer than a sequence, so every sequence is full.
fn sft_rows(n: usize) -> Vec<Row> {
    let span = TEXT.len() - CONTEXT_BYTES - COMPLETION_BYTES;
    (0..n)
        .map(|i| {
            let o = (i * 37) % span;
            Row::Completion {
                prompt: TEXT[o..o + CONTEXT_BYTES].to_string(),
                completion: TEXT[o + CONTEXT_BYTES..o + CONTEXT_BYTES + COMPLETION_BYTES].to_string(),
            }
        })
        .collect()
}

fn contexts(n: usize) -> Vec<&'static str> {
    let span = TEXT.len() - CONTEXT_BYTES;
    (0..n).map(|i| &TEXT[i * span / n..i * span / n + CONTEXT_BYTES]).collect()
}

/// Times each step as the run reports it.
struct Timer {
    at: Vec<Instant>,
    losses: Vec<f64>,
}

impl TrainHooks for Timer {
    fn on_step(&mut self, m: &StepMetrics) -> Control {
        self.at.push(Instant::now());
        self.losses.push(m.loss);
        Control::Continue
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    if n % 2 == 1 { s[n / 2] } else { (s[n / 2 - 1] + s[n / 2]) / 2.0 }
}

fn main() {
    if let Err(e) = run() {
        eprintln!("bench: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let o = parse()?;
    let device = Device::Cpu;
    fs::create_dir_all(&o.out)?;
    let (model, model_desc, model_dir) = if o.model.join("model.safetensors").is_file() {
        (Model::load(&o.model, &device)?, o.model.display().to_string(), o.model.clone())
    } else {
        let m = Model::new(Gpt::init(ModelConfig::default(), 1, &device)?);
        let dir = o.out.join("fresh-model");
        m.save(&dir)?;
        (m, format!("fresh default model, seed 1 ({} not found)", o.model.display()), dir)
    };
    if *model.config() != ModelConfig::default() {
        eprintln!("bench: note: {} is not the default model shape", model_dir.display());
    }
    let threads = candle_core::utils::get_num_threads();

    // Latency first, on the model as loaded.
    let generator = Generator::new(&model);
    let ctxs = contexts(o.suggestions);
    for c in ctxs.iter().take(LATENCY_WARMUP) {
        generator.suggest(c, SUGGEST_BYTES)?;
    }
    let mut latencies = Vec::with_capacity(ctxs.len());
    let mut lines = String::new();
    let mut produced = 0usize;
    for c in &ctxs {
        let t0 = Instant::now();
        let s = generator.suggest(c, SUGGEST_BYTES)?;
        latencies.push(t0.elapsed().as_secs_f64() * 1000.0);
        produced += s.len();
        lines.push_str(&serde_json::json!({ "context": c, "suggestion": s }).to_string());
        lines.push('\n');
    }
    let contexts_file = o.out.join("contexts.jsonl");
    fs::File::create(&contexts_file)?.write_all(lines.as_bytes())?;
    latencies.sort_by(f64::total_cmp);

    // Training throughput.
    let data = Dataset { kind: DatasetKind::Sft, rows: sft_rows(256) };
    let cfg = TrainConfig {
        steps: o.warmup + o.steps,
        batch_size: o.batch_size,
        seq_len: Some(o.seq_len),
        lr: 1e-4,
        warmup_steps: 0,
        checkpoint_every: 0,
        seed: 1,
        ..Default::default()
    };
    let start = Model::new(model.gpt.duplicate()?);
    let mut timer = Timer { at: vec![Instant::now()], losses: vec![] };
    let outcome = train::train(Objective::Sft, start, &data, &cfg, None, &mut timer)?;
    let per_step = (o.batch_size * o.seq_len) as u64;
    if outcome.tokens != per_step * cfg.steps as u64 {
        return Err(format!("expected full sequences: {} tokens in {} steps", outcome.tokens, cfg.steps).into());
    }
    let timed = timer.at[o.warmup + o.steps].duration_since(timer.at[o.warmup]).as_secs_f64();
    let step_ms: Vec<f64> = timer.at.windows(2).skip(o.warmup).map(|w| (w[1] - w[0]).as_secs_f64() * 1000.0).collect();

    if o.profile {
        profile(&model.gpt, &o)?;
    }

    let out = serde_json::json!({
        "impl": "candle",
        "candle": "0.11.1",
        "threads": threads,
        "batch_size": o.batch_size,
        "seq_len": o.seq_len,
        "warmup_steps": o.warmup,
        "timed_steps": o.steps,
        "parameters": model.config().parameters(),
        "tokens_per_s": (per_step * o.steps as u64) as f64 / timed,
        "step_ms_median": median(&step_ms),
        "loss_first": timer.losses.first(),
        "loss_last": timer.losses.last(),
        "latency_ms_median": median(&latencies),
        "latency_ms_p90": percentile(&latencies, 0.9),
        "suggestions": latencies.len(),
        "suggestion_bytes_mean": produced as f64 / latencies.len() as f64,
        "model": model_desc,
        "model_dir": model_dir,
        "contexts_file": contexts_file,
    });
    println!("{out}");
    Ok(())
}

/// The training step split into its phases, each timed over the same steps (warm-up excluded).
fn profile(start: &Gpt, o: &Options) -> Result<(), Box<dyn std::error::Error>> {
    let gpt = start.duplicate()?;
    let cfg = TrainConfig { batch_size: o.batch_size, seq_len: Some(o.seq_len), ..Default::default() };
    let mut opt = AdamW::new(&gpt.params, &cfg)?;
    let device = gpt.device().clone();
    let (b, t) = (o.batch_size, o.seq_len);
    let bytes = TEXT.as_bytes();
    let mut phases: BTreeMap<&str, f64> = BTreeMap::new();
    for step in 0..o.warmup + o.steps {
        let mut add = |name: &'static str, since: Instant| {
            if step >= o.warmup {
                *phases.entry(name).or_default() += since.elapsed().as_secs_f64() * 1000.0 / o.steps as f64;
            }
        };
        let t0 = Instant::now();
        let (mut inp, mut tgt) = (Vec::with_capacity(b * t), Vec::with_capacity(b * t));
        for r in 0..b {
            let off = (step * 131 + r * 61) % (bytes.len() - t - 1);
            inp.extend(bytes[off..off + t].iter().map(|&x| x as u32));
            tgt.extend(bytes[off + 1..off + t + 1].iter().map(|&x| x as u32));
        }
        let inp = Tensor::from_vec(inp, (b, t), &device)?;
        let tgt = Tensor::from_vec(tgt, (b, t), &device)?;
        let mask = Tensor::ones((b, t), DType::F32, &device)?;
        add("0 batch", t0);
        let scale = -1.0 / (b * t) as f64;
        let mut grads = BTreeMap::new();
        if gpt.fused_training() {
            let t0 = Instant::now();
            let (lp, trace) = gpt.traced_target_log_probs(&inp, &tgt)?;
            add("1 forward (fused)", t0);
            let t0 = Instant::now();
            let loss = ((&lp * &mask)?.sum_all()? * scale)?;
            let _ = loss.to_scalar::<f32>()?;
            let dlp = (&mask * scale)?;
            add("2 loss", t0);
            let t0 = Instant::now();
            grads = gpt.traced_backward(trace, &dlp)?;
            add("3 backward (fused)", t0);
        } else {
            let t0 = Instant::now();
            let logits = gpt.forward(&inp, true, None)?;
            add("1 forward (autograd)", t0);
            let t0 = Instant::now();
            let lp = target_log_probs(&logits, &tgt)?;
            let loss = ((lp * &mask)?.sum_all()? * scale)?;
            let _ = loss.to_scalar::<f32>()?;
            add("2 loss", t0);
            let t0 = Instant::now();
            let store = loss.backward()?;
            for (name, var) in &gpt.params {
                if let Some(g) = store.get(var.as_tensor()) {
                    grads.insert(name.clone(), g.clone());
                }
            }
            add("3 backward (autograd)", t0);
        }
        let t0 = Instant::now();
        let mut sq = 0f64;
        for g in grads.values() {
            sq += g.sqr()?.sum_all()?.to_scalar::<f32>()? as f64;
        }
        let norm = sq.sqrt();
        if norm > 1.0 {
            for g in grads.values_mut() {
                *g = (&*g * (1.0 / norm))?;
            }
        }
        add("4 clip", t0);
        let t0 = Instant::now();
        opt.step(&gpt.params, &grads, 1e-4)?;
        add("5 optimizer", t0);
    }
    let total: f64 = phases.values().sum();
    eprintln!("profile: ms per step over {} steps (batch {b}, seq {t}), total {total:.1} ms", o.steps);
    for (k, v) in &phases {
        eprintln!("  {k:<20} {v:8.2} ms  {:5.1} %", v / total * 100.0);
    }
    Ok(())
}
