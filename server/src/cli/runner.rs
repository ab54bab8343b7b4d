//! `slope runner …`, `slope datasets …` and `slope worker`: the runner from the terminal, working on
//! the database directly. `slope runner train` and `eval` queue a job and, unless `--queue` is given,
//! run it in this process with a progress bar; a worker elsewhere never takes it, because this process
//! claims it first.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use slope::DEFAULT_ORG;
use slope::config::Config;
use slope_domain::{Actor, DatasetSource, JobRequest, JobStatus};
use slope_runner::eval::EvalConfig;
use slope_runner::{ModelConfig, RewardSpec, TrainConfig};
use slope_service::{Runner, ServiceError};

use super::show;

#[derive(Subcommand)]
pub enum RunnerCommand {
    /// Train a model: queue a pretrain, sft or dpo job and run it here with a progress bar.
    Train(Box<TrainArgs>),
    /// Evaluate a model on held-out data (perplexity, replay acceptance, exact match, DPO margin) and
    /// compute its reward.
    Eval {
        #[arg(long, value_name = "ID")]
        model: i64,
        /// A dataset id: text and prompt/completion rows for the language evals, preference rows for
        /// the DPO margin.
        #[arg(long, value_name = "ID")]
        held_out: i64,
        /// A reward spec as JSON, e.g. {"weights":{"replay_acceptance":1,"latency_ms":-0.001}}.
        #[arg(long, value_name = "FILE")]
        reward: Option<PathBuf>,
        #[arg(long)]
        queue: bool,
        #[arg(long)]
        json: bool,
    },
    /// Make a model its loop's champion, through the gate (reward and A/B result).
    Promote {
        #[arg(long = "loop", value_name = "KEY")]
        loop_key: String,
        #[arg(long, value_name = "ID")]
        model: i64,
        #[arg(long)]
        json: bool,
    },
    /// Register a model folder (config.json and model.safetensors).
    Import {
        #[arg(value_name = "DIR")]
        dir: PathBuf,
        #[arg(long)]
        name: String,
        #[arg(long = "loop", value_name = "KEY")]
        loop_key: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// List models with their rewards and aliases.
    Models {
        #[arg(long = "loop", value_name = "KEY")]
        loop_key: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// List jobs.
    Jobs {
        #[arg(long)]
        json: bool,
    },
    /// Cancel a job.
    Cancel {
        #[arg(value_name = "ID")]
        id: i64,
    },
}

#[derive(Args)]
pub struct TrainArgs {
    /// pretrain, sft or dpo.
    #[arg(long)]
    kind: String,
    /// The model to start from (required for sft and dpo).
    #[arg(long, value_name = "ID")]
    model: Option<i64>,
    #[arg(long, value_name = "ID")]
    dataset: i64,
    /// Evaluate the trained model on this dataset.
    #[arg(long, value_name = "ID")]
    held_out: Option<i64>,
    /// The loop the model is for; it becomes the loop's challenger.
    #[arg(long = "loop", value_name = "KEY")]
    loop_key: Option<String>,
    /// The registered model's name.
    #[arg(long)]
    name: Option<String>,
    /// Training settings as JSON (any TrainConfig fields); the flags below override it.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// The model shape for pre-training from scratch, as JSON (ModelConfig).
    #[arg(long, value_name = "FILE")]
    model_config: Option<PathBuf>,
    #[arg(long)]
    steps: Option<usize>,
    #[arg(long)]
    batch_size: Option<usize>,
    #[arg(long)]
    grad_accum: Option<usize>,
    #[arg(long)]
    seq_len: Option<usize>,
    #[arg(long)]
    lr: Option<f64>,
    #[arg(long)]
    checkpoint_every: Option<usize>,
    #[arg(long)]
    seed: Option<u64>,
    /// Only queue the job; a worker (`slope worker` or a server) runs it.
    #[arg(long)]
    queue: bool,
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand)]
pub enum DatasetsCommand {
    /// Build an SFT and a preference dataset from a loop's stored events, its expert annotations, or both.
    Build {
        #[arg(long = "loop", value_name = "KEY")]
        loop_key: String,
        /// What the rows come from: events, annotations, or both (events, annotated ones from their
        /// annotations).
        #[arg(long, value_name = "BASIS", default_value = "events")]
        from: String,
        #[arg(long)]
        json: bool,
    },
    /// Register a JSONL file: {"text"}, {"prompt","completion"} or {"prompt","chosen","rejected"} rows.
    Add {
        #[arg(value_name = "FILE")]
        file: PathBuf,
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// List datasets.
    List {
        #[arg(long)]
        json: bool,
    },
}

fn read_json<T: serde::de::DeserializeOwned>(path: &PathBuf) -> Result<T, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    serde_json::from_slice(&bytes).map_err(|e| format!("{}: {e}", path.display()))
}

fn print_json<T: serde::Serialize>(value: &T) -> Result<(), String> {
    println!("{}", serde_json::to_string_pretty(value).map_err(|e| e.to_string())?);
    Ok(())
}

async fn open(config: &Config) -> Result<(Runner, Actor), String> {
    let (store, loops) = slope::startup::open_loops(config).await?;
    let org = store.ensure_org(DEFAULT_ORG.0, DEFAULT_ORG.1).await.map_err(|e| e.to_string())?;
    // The command line works with direct access to the database, so it acts as the system.
    Ok((slope::startup::open_runner(config, store, loops)?, Actor::system(org, "cli")))
}

pub async fn run_runner(config: Config, command: RunnerCommand) -> Result<(), String> {
    let (runner, actor) = open(&config).await?;
    match command {
        RunnerCommand::Train(a) => {
            let a = *a;
            let mut train: TrainConfig = match &a.config {
                Some(p) => read_json(p)?,
                None => TrainConfig::default(),
            };
            let set = |slot: &mut usize, v: Option<usize>| {
                if let Some(v) = v {
                    *slot = v;
                }
            };
            set(&mut train.steps, a.steps);
            set(&mut train.batch_size, a.batch_size);
            set(&mut train.grad_accum, a.grad_accum);
            set(&mut train.checkpoint_every, a.checkpoint_every);
            if a.seq_len.is_some() {
                train.seq_len = a.seq_len;
            }
            if let Some(lr) = a.lr {
                train.lr = lr;
            }
            if let Some(seed) = a.seed {
                train.seed = seed;
            }
            let model_config: Option<ModelConfig> = a.model_config.as_ref().map(read_json).transpose()?;
            let request = JobRequest {
                kind: a.kind,
                loop_key: a.loop_key,
                model_id: a.model,
                dataset_id: Some(a.dataset),
                held_out_id: a.held_out,
                name: a.name,
                model_config,
                train,
                ..Default::default()
            };
            run_job(&runner, &actor, &request, a.queue, a.json).await
        }
        RunnerCommand::Eval { model, held_out, reward, queue, json } => {
            let reward: Option<RewardSpec> = reward.as_ref().map(read_json).transpose()?;
            let request = JobRequest {
                kind: "eval".into(),
                model_id: Some(model),
                held_out_id: Some(held_out),
                reward,
                eval: EvalConfig::default(),
                ..Default::default()
            };
            run_job(&runner, &actor, &request, queue, json).await
        }
        RunnerCommand::Promote { loop_key, model, json } => {
            let outcome = runner.promote(&actor, &loop_key, model).await.map_err(show)?;
            if json {
                print_json(&outcome)?;
            } else {
                let verdict = if outcome.accepted { "promoted" } else { "refused" };
                println!("{verdict}: {}", outcome.reason);
            }
            if outcome.accepted { Ok(()) } else { Err(format!("the gate refused model {model}")) }
        }
        RunnerCommand::Import { dir, name, loop_key, json } => {
            let record = runner.import_model(&actor, &name, &dir, loop_key.as_deref()).await.map_err(show)?;
            if json {
                print_json(&record)
            } else {
                println!("model {} ({}, {} parameters)", record.id, record.name, record.parameters);
                Ok(())
            }
        }
        RunnerCommand::Models { loop_key, json } => {
            let models = runner.models(&actor, loop_key.as_deref()).await.map_err(show)?;
            let aliases = runner.aliases(&actor, loop_key.as_deref()).await.map_err(show)?;
            if json {
                return print_json(&serde_json::json!({ "models": models, "aliases": aliases }));
            }
            println!("{:>5}  {:<32} {:<8} {:>10} {:>9}  aliases", "id", "name", "kind", "params", "reward");
            for m in models {
                let names: Vec<String> = aliases
                    .iter()
                    .filter(|a| a.model_id == m.id)
                    .map(|a| format!("{}:{}", a.loop_key, a.alias))
                    .collect();
                let reward = m.reward.map(|r| format!("{r:.4}")).unwrap_or_else(|| "-".into());
                println!(
                    "{:>5}  {:<32} {:<8} {:>10} {:>9}  {}",
                    m.id,
                    m.name,
                    m.kind,
                    m.parameters,
                    reward,
                    names.join(" ")
                );
            }
            Ok(())
        }
        RunnerCommand::Jobs { json } => {
            let jobs = runner.jobs(&actor, 100).await.map_err(show)?;
            if json {
                return print_json(&jobs);
            }
            for j in jobs {
                println!(
                    "{:>5}  {:<8} {:<10} step {:>6}/{:<6} {}",
                    j.id,
                    j.kind,
                    j.status,
                    j.step,
                    j.total_steps,
                    j.error.unwrap_or_default()
                );
            }
            Ok(())
        }
        RunnerCommand::Cancel { id } => {
            let job = runner.cancel(&actor, id).await.map_err(show)?;
            println!(
                "job {id}: {}{}",
                job.status,
                if job.cancel_requested && job.status == JobStatus::Running {
                    " (stops at its next heartbeat)"
                } else {
                    ""
                }
            );
            Ok(())
        }
    }
}

/// Queues the job and, unless `queue_only`, claims and runs it here while a progress bar follows
/// its step metrics.
async fn run_job(
    runner: &Runner,
    actor: &Actor,
    request: &JobRequest,
    queue_only: bool,
    json: bool,
) -> Result<(), String> {
    let job = runner.submit(actor, request).await.map_err(show)?;
    if queue_only {
        if json {
            return print_json(&job);
        }
        println!("job {} queued ({})", job.id, job.kind);
        return Ok(());
    }
    let worker = slope_service::worker_id("cli");
    let claimed = runner
        .claim(job.id, &worker)
        .await
        .map_err(show)?
        .ok_or_else(|| format!("job {} was taken by a worker before this process could run it", job.id))?;
    let bar = if json {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(job.total_steps.max(1) as u64).with_style(
            ProgressStyle::with_template("{bar:30} {pos}/{len} steps  {msg}  [{elapsed} < {eta}]")
                .map_err(|e| e.to_string())?,
        )
    };
    let task = {
        let (runner, worker) = (runner.clone(), worker.clone());
        tokio::spawn(async move { runner.run_claimed(&worker, claimed).await })
    };
    let mut after = 0;
    while !task.is_finished() {
        tokio::time::sleep(Duration::from_millis(300)).await;
        if let Ok(metrics) = runner.job_metrics(actor, job.id, after).await
            && let Some(last) = metrics.last()
        {
            after = last.step;
            bar.set_position(last.step as u64);
            let margin = last.reward_margin.map(|m| format!("  margin {m:.3}")).unwrap_or_default();
            bar.set_message(format!(
                "loss {:.4}  lr {:.2e}  {:.0} tok/s{margin}",
                last.loss, last.lr, last.tokens_per_s
            ));
        }
    }
    let ended = task.await.map_err(|e| e.to_string())?;
    bar.finish_and_clear();
    if json {
        print_json(&ended)?;
    } else {
        println!("job {} {}", ended.id, ended.status);
        if let Some(result) = &ended.result {
            println!("{}", serde_json::to_string_pretty(result).map_err(|e| e.to_string())?);
        }
    }
    match ended.status.as_str() {
        "succeeded" => Ok(()),
        _ => Err(format!("job {} {}: {}", ended.id, ended.status, ended.error.unwrap_or_default())),
    }
}

pub async fn run_datasets(config: Config, command: DatasetsCommand) -> Result<(), String> {
    let (runner, actor) = open(&config).await?;
    match command {
        DatasetsCommand::Build { loop_key, from, json } => {
            let from = from.parse::<slope_domain::DatasetBasis>().map_err(|m| format!("--from: {m}"))?;
            let built = runner.build_datasets(&actor, &loop_key, from).await.map_err(show)?;
            if json {
                return print_json(&built);
            }
            println!(
                "{} events with text read from loop {}, {} expert annotations used",
                built.events_read, built.loop_key, built.annotations_used
            );
            for (what, d, existed) in
                [("sft", &built.sft, built.sft_existed), ("preference", &built.preference, built.preference_existed)]
            {
                match d {
                    Some(d) => println!(
                        "{what}: dataset {} ({} rows, {}){}",
                        d.id,
                        d.rows,
                        d.digest,
                        if existed { " — unchanged since it was last built" } else { "" }
                    ),
                    None => println!("{what}: no rows"),
                }
            }
            Ok(())
        }
        DatasetsCommand::Add { file, name, json } => {
            let bytes = std::fs::read(&file).map_err(|e| format!("cannot read {}: {e}", file.display()))?;
            let name =
                name.unwrap_or_else(|| file.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default());
            let source = DatasetSource::File { file: file.display().to_string() };
            let (d, created) = runner.add_dataset(&actor, &name, &bytes, source).await.map_err(|e| match e {
                ServiceError::Invalid(fields) => format!("{}: {fields}", file.display()),
                other => other.to_string(),
            })?;
            if json {
                return print_json(&d);
            }
            let note = if created { "" } else { " (this content was registered already)" };
            println!("dataset {} {} ({}, {} rows, {}){note}", d.id, d.name, d.kind, d.rows, d.digest);
            Ok(())
        }
        DatasetsCommand::List { json } => {
            let all = runner.datasets(&actor).await.map_err(show)?;
            if json {
                return print_json(&all);
            }
            for d in all {
                println!("{:>5}  {:<32} {:<10} {:>8} rows  {}", d.id, d.name, d.kind, d.rows, d.digest);
            }
            Ok(())
        }
    }
}

/// `slope worker`: runs queued jobs until stopped.
pub async fn run_worker(config: Config, slots: usize) -> Result<(), String> {
    let (runner, _actor) = open(&config).await?;
    let slots = slots.max(1);
    slope_service::spawn_workers(runner, "worker", slots, Duration::from_secs(1));
    println!("slope worker running {slots} slot(s); stop with Ctrl-C");
    let _ = tokio::signal::ctrl_c().await;
    Ok(())
}
