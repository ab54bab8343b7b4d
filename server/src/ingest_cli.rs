//! `slope ingest FILE --loop KEY`: one file of events into a loop, as one all-or-nothing batch, with
//! progress on the terminal.

use std::io::Read;
use std::path::Path;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use slope::DEFAULT_ORG;
use slope::config::Config;
use slope_metrics::events::Format;
use slope_service::{BatchInput, ServiceError};

/// Ingests `file` into the loop `loop_key`, or into the transaction stream when it is `None`.
pub async fn run(
    config: Config,
    file: &Path,
    loop_key: Option<&str>,
    idempotency_key: Option<&str>,
    json: bool,
) -> Result<(), String> {
    let name = file.display().to_string();
    let (inner, gzip) = match file.extension().and_then(|e| e.to_str()) {
        Some("gz") => (file.with_extension(""), true),
        _ => (file.to_path_buf(), false),
    };
    let format = Format::from_path(&inner).map_err(|e| format!("{name}: {e}"))?;
    let total = std::fs::metadata(file).map_err(|e| format!("cannot read {name}: {e}"))?.len();
    if !gzip && total > slope_service::MAX_BATCH_BYTES as u64 {
        return Err(format!(
            "{name} is {} MiB; one batch holds at most {} MiB, so split the file",
            total >> 20,
            slope_service::MAX_BATCH_BYTES >> 20
        ));
    }
    let (_store, loops) = crate::open_loops(&config).await?;
    let org = loops.store().ensure_org(DEFAULT_ORG.0, DEFAULT_ORG.1).await.map_err(|e| e.to_string())?;

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

    let spinner = ProgressBar::new_spinner()
        .with_style(ProgressStyle::with_template("{spinner} {msg} {elapsed}").map_err(|e| e.to_string())?);
    spinner.enable_steady_tick(Duration::from_millis(120));
    let result = match loop_key {
        Some(loop_key) => {
            spinner.set_message(format!("validating, storing and updating the metrics of {loop_key}"));
            loops.ingest(org, BatchInput { loop_key, body: &body, format, gzip, idempotency_key }).await
        }
        None => {
            spinner.set_message("validating and storing transactions");
            loops
                .ingest_transactions(org, BatchInput { loop_key: "", body: &body, format, gzip, idempotency_key })
                .await
        }
    };
    spinner.finish_and_clear();
    let ack = result.map_err(|e| match e {
        ServiceError::InvalidRows { errors, total } => {
            let mut lines = vec![format!("{name} has {total} invalid row(s); nothing was stored:")];
            lines.extend(errors.iter().map(|e| format!("  row {}, {}: {}", e.row, e.field, e.message)));
            if total > errors.len() {
                lines.push(format!("  … and {} more", total - errors.len()));
            }
            lines.join("\n")
        }
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
