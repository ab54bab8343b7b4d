//! `slope annotate …`: annotation queues from the terminal, on the database directly: list and define
//! queues, sample more items, export a queue's annotations as JSONL, import labels made elsewhere (all
//! or nothing, errors naming lines and fields), read agreement and the annotation budget of a key result.

use std::io::Write;
use std::path::PathBuf;

use clap::{Args, Subcommand};
use slope::config::Config;
use slope_domain::{Actor, AgreementReport, AnnotationBudget, Estimate, KeyResultId, QueueInput};
use slope_service::Annotations;

use super::show;

#[derive(Subcommand)]
pub enum AnnotateCommand {
    /// List the annotation queues with their progress.
    Queues {
        #[command(flatten)]
        org: OrgArg,
        #[arg(long)]
        json: bool,
    },
    /// Define a queue from a JSON file (the body of `POST /api/v1/annotation-queues`) and sample its
    /// first items.
    Create {
        #[arg(value_name = "FILE")]
        file: PathBuf,
        #[command(flatten)]
        org: OrgArg,
        #[arg(long)]
        json: bool,
    },
    /// Sample another round of the loop's interactions into a queue.
    Sample {
        #[arg(long, value_name = "KEY")]
        queue: String,
        #[command(flatten)]
        org: OrgArg,
    },
    /// Print a queue's annotations as JSONL (one per line, with its item's text), or write them to a file.
    Export {
        #[arg(long, value_name = "KEY")]
        queue: String,
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        #[command(flatten)]
        org: OrgArg,
    },
    /// Import labels made elsewhere (JSONL: event_id, annotator and the labels, as an export writes them).
    /// A file with any bad line is refused whole, naming each line and field.
    Import {
        #[arg(long, value_name = "KEY")]
        queue: String,
        #[arg(value_name = "FILE")]
        file: PathBuf,
        #[command(flatten)]
        org: OrgArg,
        #[arg(long)]
        json: bool,
    },
    /// Agreement between annotators and each annotator's quality, with 95 % intervals.
    Agreement {
        #[arg(long, value_name = "KEY")]
        queue: String,
        #[command(flatten)]
        org: OrgArg,
        #[arg(long)]
        json: bool,
    },
    /// The further annotations a key result's loop metric needs to reach its target.
    Budget {
        #[arg(long = "key-result", value_name = "ID")]
        key_result: i64,
        #[command(flatten)]
        org: OrgArg,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args)]
pub struct OrgArg {
    /// The organisation to work in.
    #[arg(long, value_name = "SLUG", default_value = slope::DEFAULT_ORG.0)]
    org: String,
}

async fn open(config: &Config, org: &OrgArg) -> Result<(Annotations, Actor), String> {
    let (store, loops) = slope::startup::open_loops(config).await?;
    let (org_id, _) = store
        .find_org(&org.org)
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("--org: no organisation has the slug {:?}", org.org))?;
    let runner = slope::startup::open_runner(config, store.clone(), loops.clone())?;
    // The command line works with direct access to the database, so it acts as the system.
    Ok((Annotations::new(store, loops, runner), Actor::system(org_id, "cli")))
}

fn print_json<T: serde::Serialize>(value: &T) -> Result<(), String> {
    println!("{}", serde_json::to_string_pretty(value).map_err(|e| e.to_string())?);
    Ok(())
}

fn estimate(e: &Option<Estimate>) -> String {
    match e {
        None => "—".to_owned(),
        Some(Estimate { value, low: Some(l), high: Some(h), items }) => {
            format!("{value:.3} ({l:.3} to {h:.3}, {items} items)")
        }
        Some(Estimate { value, items, .. }) => format!("{value:.3} ({items} items)"),
    }
}

pub async fn run(config: Config, command: AnnotateCommand) -> Result<(), String> {
    match command {
        AnnotateCommand::Queues { org, json } => {
            let (service, actor) = open(&config, &org).await?;
            let queues = service.queues(&actor).await.map_err(show)?;
            if json {
                return print_json(&queues);
            }
            if queues.is_empty() {
                println!("no annotation queues");
            }
            for q in queues {
                let p = &q.progress;
                println!(
                    "{:<24} loop {:<12} v{:<3} {:>5} items, {:>5} of {:>5} annotations ({:.0} %), {} flagged",
                    q.queue.key,
                    q.queue.loop_key,
                    q.queue.version,
                    p.items,
                    p.annotations,
                    p.needed,
                    p.share() * 100.0,
                    p.flagged
                );
            }
            Ok(())
        }
        AnnotateCommand::Create { file, org, json } => {
            let text = std::fs::read_to_string(&file).map_err(|e| format!("{}: {e}", file.display()))?;
            let input: QueueInput =
                serde_json::from_str(&text).map_err(|e| format!("{}: not a queue definition: {e}", file.display()))?;
            let (service, actor) = open(&config, &org).await?;
            let (queue, sampled) = service.create_queue(&actor, &input).await.map_err(show)?;
            if json {
                return print_json(&serde_json::json!({ "queue": queue, "sampled": sampled }));
            }
            println!("queue {} on loop {}: {} items ({})", queue.key, queue.loop_key, sampled.added, sampled.policy);
            Ok(())
        }
        AnnotateCommand::Sample { queue, org } => {
            let (service, actor) = open(&config, &org).await?;
            let sampled = service.sample(&actor, &queue).await.map_err(show)?;
            println!(
                "queue {} v{}: {} of {} new interactions added ({}){}",
                sampled.queue,
                sampled.version,
                sampled.added,
                sampled.considered,
                sampled.policy,
                if sampled.identical > 0 {
                    format!("; {} left out where both suggestions were the same", sampled.identical)
                } else {
                    String::new()
                }
            );
            Ok(())
        }
        AnnotateCommand::Export { queue, out, org } => {
            let (service, actor) = open(&config, &org).await?;
            let bytes = service.export(&actor, &queue).await.map_err(show)?;
            match out {
                Some(path) => {
                    std::fs::write(&path, &bytes).map_err(|e| format!("{}: {e}", path.display()))?;
                    let lines = bytes.iter().filter(|&&b| b == b'\n').count();
                    eprintln!("{lines} annotations written to {}", path.display());
                }
                None => std::io::stdout().write_all(&bytes).map_err(|e| e.to_string())?,
            }
            Ok(())
        }
        AnnotateCommand::Import { queue, file, org, json } => {
            let bytes = std::fs::read(&file).map_err(|e| format!("{}: {e}", file.display()))?;
            let (service, actor) = open(&config, &org).await?;
            let imported =
                service.import(&actor, &queue, &bytes).await.map_err(|e| format!("{}: {}", file.display(), show(e)))?;
            if json {
                return print_json(&imported);
            }
            println!(
                "{} annotations imported into queue {} ({} new items)",
                imported.annotations, imported.queue, imported.items_added
            );
            Ok(())
        }
        AnnotateCommand::Agreement { queue, org, json } => {
            let (service, actor) = open(&config, &org).await?;
            let page = service.queue_page(&actor, &queue).await.map_err(show)?;
            if json {
                return print_json(&page.agreement);
            }
            print_agreement(&page.agreement);
            Ok(())
        }
        AnnotateCommand::Budget { key_result, org, json } => {
            let (service, actor) = open(&config, &org).await?;
            let budget = service.key_result_budget(&actor, KeyResultId(key_result)).await.map_err(show)?;
            if json {
                return print_json(&budget);
            }
            match budget {
                None => println!("key result {key_result} is not fed by a loop's acceptance-rate metric with a target"),
                Some(b) => print_budget(&b),
            }
            Ok(())
        }
    }
}

fn print_agreement(a: &AgreementReport) {
    println!("items labelled by two or more annotators: {}", a.items_compared);
    println!("preference (Krippendorff's alpha, nominal): {}", estimate(&a.preference_alpha));
    println!("rating (Krippendorff's alpha, ordinal):     {}", estimate(&a.rating_alpha));
    println!("correction (mean normalised edit distance): {}", estimate(&a.correction_distance));
    println!("gold items: {}", a.gold_items);
    for q in &a.annotators {
        println!(
            "  {:<32} {:>5} labelled {:>4} skipped {:>3} flagged  rating α {}  correction d {}  gold {}",
            q.annotator,
            q.labelled,
            q.skipped,
            q.flagged,
            estimate(&q.rating_alpha),
            estimate(&q.correction_distance),
            estimate(&q.gold)
        );
    }
}

fn print_budget(b: &AnnotationBudget) {
    println!("metric {}: target {} ({})", b.metric, b.target, if b.increase { "up" } else { "down" });
    for p in &b.points {
        println!("  {} after {} annotations: {:.4}", p.model, p.annotations, p.value);
    }
    println!("annotations so far: {}", b.annotations_so_far);
    match (&b.estimate, &b.why_not) {
        (_, Some(why)) => println!("{why}"),
        (Some(e), None) if b.reached => {
            println!("the latest promoted model meets the target ({} annotations)", e.total)
        }
        (Some(e), None) => {
            let high = e.more_high.map_or("unbounded".to_owned(), |h| format!("{h:.0}"));
            println!("{:.0} more annotations (80 %: {:.0} to {high})", e.more, e.more_low);
            if let (Some(w), Some(by)) = (e.per_week, b.by) {
                println!("{w:.0} a week to get there by {by}");
            }
        }
        (None, None) => {}
    }
}
