//! The runner's behaviour on real (tiny) models: it learns, SFT raises replay acceptance over its base,
//! DPO raises the held-out margin, and a resumed job ends with exactly the weights of one that never
//! stopped. Sizes are chosen so the whole file runs in seconds on two cores.

use std::cell::RefCell;

use candle_core::Device;
use slope_runner::eval::{self, EvalConfig, HeldOut};
use slope_runner::model::Gpt;
use slope_runner::train::{self, Control, NoHooks, Objective, StepMetrics, TrainHooks};
use slope_runner::{Dataset, DatasetKind, Model, ModelConfig, RewardSpec, Row, TrainConfig};

fn tiny() -> ModelConfig {
    ModelConfig { n_layer: 2, n_head: 2, d_model: 32, ctx_len: 48, ..Default::default() }
}

fn texts(rows: &[String]) -> Dataset {
    Dataset { kind: DatasetKind::Text, rows: rows.iter().map(|t| Row::Text { text: t.clone() }).collect() }
}

/// Clinical-note-like lines from a few templates, drawn deterministically.
fn notes(n: usize, salt: usize) -> Vec<String> {
    let symptoms = ["cough", "headache", "back pain", "sore throat", "fatigue", "dizziness"];
    let plans = ["rest and fluids", "ibuprofen as needed", "follow up in two weeks", "order chest x-ray"];
    (0..n)
        .map(|i| {
            let j = i * 7 + salt * 13;
            format!(
                "Patient reports {} for {} days. Denies fever. Plan: {}.",
                symptoms[j % symptoms.len()],
                2 + j % 5,
                plans[(j / 3) % plans.len()]
            )
        })
        .collect()
}

fn generic() -> Vec<String> {
    [
        "The quick brown fox jumps over the lazy dog while the cat sleeps by the fire.",
        "In the beginning the river was wide and slow, and the town grew along its banks.",
        "She wrote letters every morning and sent them with the first coach to the city.",
        "Markets open early; traders call their prices and the square fills with noise.",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn cfg(steps: usize) -> TrainConfig {
    TrainConfig { steps, batch_size: 8, lr: 3e-3, warmup_steps: 5, checkpoint_every: 0, seed: 11, ..Default::default() }
}

struct Recorder(RefCell<Vec<StepMetrics>>);

impl TrainHooks for Recorder {
    fn on_step(&mut self, m: &StepMetrics) -> Control {
        self.0.borrow_mut().push(m.clone());
        Control::Continue
    }
}

#[test]
fn a_tiny_model_overfits_a_tiny_dataset() {
    let model = Model::new(Gpt::init(tiny(), 1, &Device::Cpu).unwrap());
    let data = texts(&["abcabcabd abcabcabd abcabcabd abcabcabd abcabcabd".to_string()]);
    let mut rec = Recorder(RefCell::new(Vec::new()));
    let out = train::train(Objective::Pretrain, model, &data, &cfg(150), None, &mut rec).unwrap();
    let steps = rec.0.into_inner();
    assert_eq!(steps.len(), 150);
    assert!(steps[0].loss > 5.0, "starts near ln(257) = 5.55: {}", steps[0].loss);
    // A repeated 9-byte pattern is learnt almost perfectly: well under 0.3 nats per byte.
    assert!(out.final_loss < 0.3, "final loss {}", out.final_loss);
    assert!(steps.iter().all(|s| s.grad_norm.is_finite() && s.tokens_per_s > 0.0 && s.lr > 0.0));
    assert!((steps[4].lr - 3e-3).abs() < 1e-12, "warm-up ends at step 5");
    assert!(steps[149].lr < steps[50].lr, "cosine decay");
}

#[test]
fn sft_on_domain_text_raises_replay_acceptance_over_the_base() {
    let base = train::train(
        Objective::Pretrain,
        Model::new(Gpt::init(tiny(), 2, &Device::Cpu).unwrap()),
        &texts(&generic()),
        &cfg(80),
        None,
        &mut NoHooks,
    )
    .unwrap()
    .model;
    let held: Vec<String> = notes(12, 5);
    let held_refs: Vec<&str> = held.iter().map(String::as_str).collect();
    let before = eval::replay_acceptance(&base, &held_refs, 12, 4, 3).unwrap();
    // SFT on prompt/completion rows: the note's start is the prompt, its plan the completion.
    let rows: Vec<Row> = notes(60, 1)
        .into_iter()
        .map(|n| {
            let (p, c) = n.split_at(n.find("Plan:").unwrap());
            Row::Completion { prompt: p.to_string(), completion: c.to_string() }
        })
        .chain(notes(60, 2).into_iter().map(|text| Row::Text { text }))
        .collect();
    let sft = Dataset { kind: DatasetKind::Sft, rows };
    let tuned = train::train(Objective::Sft, base.duplicate(), &sft, &cfg(250), None, &mut NoHooks).unwrap().model;
    let after = eval::replay_acceptance(&tuned, &held_refs, 12, 4, 3).unwrap();
    assert!(
        after.score > before.score + 0.2,
        "replay acceptance {:.3} → {:.3} ({} / {} chars)",
        before.score,
        after.score,
        after.accepted_chars,
        after.suggested_chars
    );
    let (ppl_before, _) = eval::perplexity(&base, &held_refs).unwrap();
    let (ppl_after, _) = eval::perplexity(&tuned, &held_refs).unwrap();
    assert!(ppl_after < ppl_before / 2.0, "perplexity {ppl_before} → {ppl_after}");
    // The reward spec ranks the tuned model above its base.
    let spec = RewardSpec::default();
    let held = HeldOut { texts: held_refs.clone(), ..Default::default() };
    let r_base = spec.reward(&eval::evaluate(&base, None, &held, &EvalConfig::default(), &spec).unwrap()).unwrap();
    let r_tuned = spec.reward(&eval::evaluate(&tuned, None, &held, &EvalConfig::default(), &spec).unwrap()).unwrap();
    assert!(r_tuned > r_base, "reward {r_base} → {r_tuned}");
}

trait Dup {
    fn duplicate(&self) -> Model;
}

impl Dup for Model {
    fn duplicate(&self) -> Model {
        Model::new(self.gpt.duplicate().unwrap())
    }
}

#[test]
fn dpo_raises_the_margin_on_held_out_pairs() {
    let base = train::train(
        Objective::Pretrain,
        Model::new(Gpt::init(tiny(), 3, &Device::Cpu).unwrap()),
        &texts(&notes(40, 3)),
        &cfg(60),
        None,
        &mut NoHooks,
    )
    .unwrap()
    .model;
    // Users keep "follow up" plans and reject "order" plans: a preference the base does not have.
    let pair = |i: usize| {
        let s = ["cough", "headache", "fatigue", "dizziness", "back pain"][i % 5];
        Row::Preference {
            prompt: format!("Patient reports {s} for {} days. Plan: ", 2 + i % 6),
            chosen: "follow up in two weeks.".into(),
            rejected: "order chest x-ray.".into(),
        }
    };
    let train_rows: Vec<Row> = (0..30).map(pair).collect();
    let held: Vec<Row> = (100..110).map(pair).collect();
    let (m0, a0) = train::preference_margin(&base.gpt, &base.gpt, &held, 0.1).unwrap();
    assert_eq!((m0, a0), (0.0, 0.0), "a model against itself has no margin");
    let data = Dataset { kind: DatasetKind::Preference, rows: train_rows };
    let mut rec = Recorder(RefCell::new(Vec::new()));
    let c = TrainConfig { lr: 1e-3, dpo_beta: 0.1, ..cfg(40) };
    let policy = train::train(Objective::Dpo, base.duplicate(), &data, &c, None, &mut rec).unwrap().model;
    let (m1, a1) = train::preference_margin(&policy.gpt, &base.gpt, &held, 0.1).unwrap();
    assert!(m1 > 0.5 && a1 == 1.0, "held-out margin {m1}, accuracy {a1}");
    let steps = rec.0.into_inner();
    assert!(steps.last().unwrap().reward_margin.unwrap() > steps[0].reward_margin.unwrap());
    assert!(steps[0].reward_accuracy.is_some());
    // SFT data is refused for DPO, and the other way round, naming the dataset.
    let e = train::train(Objective::Sft, base.duplicate(), &data, &c, None, &mut NoHooks).err().unwrap();
    assert!(e.to_string().starts_with("dataset:"), "{e}");
}

struct StopAt(usize);

impl TrainHooks for StopAt {
    fn on_step(&mut self, m: &StepMetrics) -> Control {
        if m.step == self.0 { Control::Stop } else { Control::Continue }
    }
}

#[test]
fn a_resumed_job_ends_with_the_weights_of_one_that_never_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let ckpt = dir.path().join("ckpt");
    let data = texts(&notes(20, 4));
    let c = TrainConfig { checkpoint_every: 5, grad_accum: 2, ..cfg(24) };
    let fresh = || Model::new(Gpt::init(tiny(), 4, &Device::Cpu).unwrap());

    let whole = train::train(Objective::Pretrain, fresh(), &data, &c, None, &mut NoHooks).unwrap();
    // Killed after step 13: the checkpoint of step 10 is on disk, steps 11–13 are lost.
    let killed = train::train(Objective::Pretrain, fresh(), &data, &c, Some(&ckpt), &mut StopAt(13)).unwrap();
    assert!(killed.stopped && killed.steps == 13);
    let resumed = train::train(Objective::Pretrain, fresh(), &data, &c, Some(&ckpt), &mut NoHooks).unwrap();
    assert_eq!(resumed.resumed_from, Some(10));
    assert_eq!(resumed.steps, 24);
    for (name, t) in whole.model.gpt.tensors() {
        let a = t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let b = resumed.model.gpt.tensors()[&name].flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert!(a == b, "{name} differs after resume");
    }
    // A checkpoint of other data is refused rather than silently mixed in.
    let other = texts(&notes(20, 9));
    let e = train::train(Objective::Pretrain, fresh(), &other, &c, Some(&ckpt), &mut NoHooks).err().unwrap();
    assert!(e.to_string().contains("another dataset"), "{e}");
    // A saved model loads back to the same suggestions.
    let saved = dir.path().join("model");
    resumed.model.save(&saved).unwrap();
    let loaded = Model::load(&saved, &Device::Cpu).unwrap();
    let g1 = slope_runner::Generator::new(&resumed.model).suggest("Patient reports", 10).unwrap();
    let g2 = slope_runner::Generator::new(&loaded).suggest("Patient reports", 10).unwrap();
    assert_eq!(g1, g2);
}

#[test]
fn a_resumed_dpo_job_ends_with_the_weights_of_one_that_never_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let ckpt = dir.path().join("ckpt");
    let rows: Vec<Row> = (0..12)
        .map(|i| Row::Preference {
            prompt: format!("Patient reports cough for {} days. Plan: ", 2 + i % 5),
            chosen: "follow up in two weeks.".into(),
            rejected: if i % 2 == 0 { "order chest x-ray.".into() } else { "rest.".into() },
        })
        .collect();
    let data = Dataset { kind: DatasetKind::Preference, rows };
    let c = TrainConfig { checkpoint_every: 4, batch_size: 3, ..cfg(14) };
    // The reference is the starting model, so every run starts from the same one.
    let fresh = || Model::new(Gpt::init(tiny(), 8, &Device::Cpu).unwrap());
    let whole = train::train(Objective::Dpo, fresh(), &data, &c, None, &mut NoHooks).unwrap();
    let killed = train::train(Objective::Dpo, fresh(), &data, &c, Some(&ckpt), &mut StopAt(10)).unwrap();
    assert!(killed.stopped);
    let resumed = train::train(Objective::Dpo, fresh(), &data, &c, Some(&ckpt), &mut NoHooks).unwrap();
    assert_eq!(resumed.resumed_from, Some(8));
    for (name, t) in whole.model.gpt.tensors() {
        let a = t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let b = resumed.model.gpt.tensors()[&name].flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert!(a == b, "{name} differs after resuming DPO");
    }
}
