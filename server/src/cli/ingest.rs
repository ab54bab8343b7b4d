//! `slope ingest FILE --loop KEY`: a file of events into a loop, with progress on the terminal. A file
//! up to `--batch-bytes` is one all-or-nothing batch; a larger uncompressed NDJSON or CSV file is first
//! validated whole (nothing is stored if any row is invalid) and then sent as several batches, each with
//! an idempotency key derived from the file, so running the same command again after an interruption
//! stores only what is missing.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use slope::DEFAULT_ORG;
use slope::config::Config;
use slope_domain::Actor;
use slope_metrics::events::Format;
use slope_service::{BatchInput, ServiceError};

use super::DbArgs;

// The arguments of `slope ingest`. The command's help comes from its variant in `main.rs`, so this
// struct has no doc comment that could replace it.
#[derive(Args)]
pub struct IngestArgs {
    #[command(flatten)]
    pub db: DbArgs,
    /// Events as .ndjson/.jsonl, .csv or .parquet; a further .gz is decompressed.
    #[arg(value_name = "FILE")]
    file: PathBuf,
    /// The loop the events belong to; rows may leave out `loop`.
    #[arg(
        long = "loop",
        value_name = "KEY",
        required_unless_present = "transactions",
        conflicts_with = "transactions"
    )]
    loop_key: Option<String>,
    /// The file holds transaction events (event_id, customer_id, ts, amount) for lifetime value.
    #[arg(long)]
    transactions: bool,
    /// Makes a retried ingest of the same batch safe [default: the file's content decides].
    #[arg(long, value_name = "KEY")]
    idempotency_key: Option<String>,
    /// A larger uncompressed NDJSON or CSV file of a loop is sent as several batches of about this
    /// size, after every row of the whole file has been validated.
    #[arg(long, value_name = "BYTES", default_value_t = 256 * 1024 * 1024)]
    batch_bytes: usize,
    /// Print the acknowledgement as JSON.
    #[arg(long)]
    json: bool,
}

/// `slope ingest`: the file into its loop, or into the transaction stream with `--transactions`.
pub async fn run(config: Config, args: IngestArgs) -> Result<(), String> {
    let IngestArgs { file, loop_key, transactions, idempotency_key, batch_bytes, json, .. } = args;
    ingest(config, &file, loop_key.as_deref().filter(|_| !transactions), idempotency_key.as_deref(), batch_bytes, json)
        .await
}

/// Ingests `file` into the loop `loop_key`, or into the transaction stream when it is `None`.
async fn ingest(
    config: Config,
    file: &Path,
    loop_key: Option<&str>,
    idempotency_key: Option<&str>,
    batch_bytes: usize,
    json: bool,
) -> Result<(), String> {
    let name = file.display().to_string();
    let (inner, gzip) = match file.extension().and_then(|e| e.to_str()) {
        Some("gz") => (file.with_extension(""), true),
        _ => (file.to_path_buf(), false),
    };
    let format = Format::from_path(&inner).map_err(|e| format!("{name}: {e}"))?;
    let total = std::fs::metadata(file).map_err(|e| format!("cannot read {name}: {e}"))?.len();
    let splittable = !gzip && format != Format::Parquet && loop_key.is_some();
    if let (true, Some(loop_key)) = (splittable && total > batch_bytes.max(1) as u64, loop_key) {
        return run_in_parts(config, file, loop_key, format, idempotency_key, batch_bytes.max(1), json).await;
    }
    if !gzip && total > slope_service::MAX_BATCH_BYTES as u64 {
        return Err(format!(
            "{name} is {} MiB; one batch holds at most {} MiB, so split the file",
            total >> 20,
            slope_service::MAX_BATCH_BYTES >> 20
        ));
    }
    let (store, loops) = slope::startup::open_loops(&config).await?;
    let org = store.ensure_org(DEFAULT_ORG.0, DEFAULT_ORG.1).await.map_err(|e| e.to_string())?;
    // The command line works with direct access to the database, so it acts as the system.
    let actor = Actor::system(org, "cli");

    let body = read_with_progress(file, &name)?;

    let spinner = ProgressBar::new_spinner()
        .with_style(ProgressStyle::with_template("{spinner} {msg} {elapsed}").map_err(|e| e.to_string())?);
    spinner.enable_steady_tick(Duration::from_millis(120));
    let result = match loop_key {
        Some(loop_key) => {
            spinner.set_message(format!("validating, storing and updating the metrics of {loop_key}"));
            loops.ingest(&actor, BatchInput { loop_key, body: &body, format, gzip, idempotency_key }).await
        }
        None => {
            spinner.set_message("validating and storing transactions");
            loops
                .ingest_transactions(&actor, BatchInput { loop_key: "", body: &body, format, gzip, idempotency_key })
                .await
        }
    };
    spinner.finish_and_clear();
    let ack = result.map_err(|e| match e {
        ServiceError::InvalidRows { errors, total } => refusal(&name, &errors, total),
        ServiceError::Invalid(fields) => format!("{name}: {fields}"),
        other => other.to_string(),
    })?;
    if json {
        println!("{}", serde_json::to_string_pretty(&ack).map_err(|e| e.to_string())?);
    } else {
        let b = &ack.batch;
        let replay = if b.replayed { " (already ingested: this is the first acknowledgement again)" } else { "" };
        println!(
            "batch {} into {}: {} rows, {} stored, {} duplicates{replay}",
            b.batch_id,
            loop_key.unwrap_or("transactions"),
            b.rows,
            b.stored,
            b.duplicates
        );
        if !ack.metrics_updated.is_empty() {
            println!("metrics updated: {}", ack.metrics_updated.join(", "));
        }
    }
    Ok(())
}

/// Reads a whole file with a progress bar.
fn read_with_progress(file: &Path, name: &str) -> Result<Vec<u8>, String> {
    let total = std::fs::metadata(file).map_err(|e| format!("cannot read {name}: {e}"))?.len();
    let bar = ProgressBar::new(total).with_style(
        ProgressStyle::with_template("{msg:12} [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec} {eta}")
            .map_err(|e| e.to_string())?
            .progress_chars("=> "),
    );
    bar.set_message("reading");
    let mut body = Vec::with_capacity(total as usize);
    let mut reader = bar.wrap_read(std::fs::File::open(file).map_err(|e| format!("cannot read {name}: {e}"))?);
    reader.read_to_end(&mut body).map_err(|e| format!("cannot read {name}: {e}"))?;
    bar.finish_and_clear();
    Ok(body)
}

/// Cuts a text file into parts of about `size` bytes at line ends; each CSV part repeats the header.
/// Returns each part with the number of data rows before it, to report rows as numbered in the file.
fn parts(body: &[u8], format: Format, size: usize) -> Vec<(Vec<u8>, usize)> {
    let (header, mut rest): (&[u8], &[u8]) = match format {
        Format::Csv => match body.iter().position(|&b| b == b'\n') {
            Some(i) => (&body[..=i], &body[i + 1..]),
            None => (body, &[]),
        },
        _ => (&[], body),
    };
    let mut out = vec![];
    let mut rows_before = 0;
    while !rest.is_empty() {
        let mut end = size.min(rest.len());
        while end < rest.len() && rest[end - 1] != b'\n' {
            end += 1;
        }
        let (part, tail) = rest.split_at(end);
        let mut bytes = header.to_vec();
        bytes.extend_from_slice(part);
        out.push((bytes, rows_before));
        rows_before += part.iter().filter(|&&b| b == b'\n').count() + usize::from(!part.ends_with(b"\n"));
        rest = tail;
    }
    out
}

async fn run_in_parts(
    config: Config,
    file: &Path,
    loop_key: &str,
    format: Format,
    idempotency_key: Option<&str>,
    size: usize,
    json: bool,
) -> Result<(), String> {
    let name = file.display().to_string();
    let body = read_with_progress(file, &name)?;
    let base = match idempotency_key {
        Some(key) => key.to_owned(),
        None => format!("file-{}", slope_service::content_hash(&body)),
    };
    let parts = parts(&body, format, size);
    drop(body);
    let total_bytes: u64 = parts.iter().map(|(p, _)| p.len() as u64).sum();
    let style = ProgressStyle::with_template("{msg:12} [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec} {eta}")
        .map_err(|e| e.to_string())?
        .progress_chars("=> ");

    // Every row of the file is checked before anything is stored.
    let bar = ProgressBar::new(total_bytes).with_style(style.clone());
    bar.set_message("validating");
    let latest = Some(slope_metrics::events::latest_event_time());
    let mut errors = vec![];
    let mut invalid = 0;
    for (part, rows_before) in &parts {
        match slope_metrics::events::parse_batch_until(part, format, Some(loop_key), latest) {
            Ok(_) => {}
            Err(slope_metrics::events::EventsError::Invalid { errors: found, total }) => {
                invalid += total;
                errors.extend(found.into_iter().map(|mut e| {
                    e.row += rows_before;
                    e
                }));
            }
            Err(other) => return Err(format!("{name}: {other}")),
        }
        bar.inc(part.len() as u64);
    }
    bar.finish_and_clear();
    if invalid > 0 {
        return Err(refusal(&name, &errors, invalid));
    }

    let (store, loops) = slope::startup::open_loops(&config).await?;
    let org = store.ensure_org(DEFAULT_ORG.0, DEFAULT_ORG.1).await.map_err(|e| e.to_string())?;
    // The command line works with direct access to the database, so it acts as the system.
    let actor = Actor::system(org, "cli");
    let bar = ProgressBar::new(total_bytes).with_style(style);
    bar.set_message("storing");
    let mut acks = vec![];
    for (i, (part, _)) in parts.iter().enumerate() {
        let key = format!("{base}-part-{}", i + 1);
        let input = BatchInput { loop_key, body: part, format, gzip: false, idempotency_key: Some(&key) };
        let ack = loops.ingest(&actor, input).await.map_err(|e| format!("{name}, part {}: {e}", i + 1))?;
        acks.push(ack);
        bar.inc(part.len() as u64);
    }
    bar.finish_and_clear();
    let sum = |f: fn(&slope_service::IngestAck) -> i64| acks.iter().map(f).sum::<i64>();
    let (rows, stored, duplicates) = (sum(|a| a.batch.rows), sum(|a| a.batch.stored), sum(|a| a.batch.duplicates));
    if json {
        let out = serde_json::json!({ "rows": rows, "stored": stored, "duplicates": duplicates, "batches": acks });
        println!("{}", serde_json::to_string_pretty(&out).map_err(|e| e.to_string())?);
    } else {
        let replayed = acks.iter().filter(|a| a.batch.replayed).count();
        println!(
            "{} batches into {loop_key}: {rows} rows, {stored} stored, {duplicates} duplicates ({replayed} batches already ingested)",
            acks.len()
        );
    }
    Ok(())
}

/// The message for a refused file: its first invalid rows with field and reason, and how many more.
fn refusal(name: &str, errors: &[slope_metrics::events::RowError], total: usize) -> String {
    let shown = &errors[..errors.len().min(slope_metrics::events::MAX_REPORTED_ERRORS)];
    let mut lines = vec![format!("{name} has {total} invalid row(s); nothing was stored:")];
    lines.extend(shown.iter().map(|e| format!("  row {}, {}: {}", e.row, e.field, e.message)));
    if total > shown.len() {
        lines.push(format!("  … and {} more", total - shown.len()));
    }
    lines.join("\n")
}
