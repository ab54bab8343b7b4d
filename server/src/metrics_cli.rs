//! `slope metrics …`: loop metrics computed from files, as human tables or JSON.

use std::path::PathBuf;

use chrono::NaiveDate;
use clap::Subcommand;
use serde_json::json;
use slope_metrics::acceptance::{Bucket, acceptance};
use slope_metrics::drift::{DriftField, drift};
use slope_metrics::events::{EventsError, read_interactions};
use slope_metrics::ltv::{BgNbd, GammaGamma, read_summary};

#[derive(Subcommand)]
pub enum MetricsCommand {
    /// Character acceptance rate (Σ accepted / Σ suggested characters) with a 95 % confidence interval
    /// by the delta method, users as the randomisation unit.
    Acceptance {
        /// Interaction events: .ndjson, .jsonl, .csv or .parquet.
        #[arg(long, value_name = "FILE")]
        events: PathBuf,
        /// How to split: any of `variant` and one of `day` or `week`, comma-separated.
        #[arg(long, value_name = "FIELDS", default_value = "variant,day")]
        by: String,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Distribution drift of an event field between a reference window and the current one: PSI and
    /// Jensen–Shannon distance over the reference's deciles, with the bands < 0.1, 0.1–0.25, > 0.25.
    Drift {
        /// Interaction events: .ndjson, .jsonl, .csv or .parquet.
        #[arg(long, value_name = "FILE")]
        events: PathBuf,
        /// latency_ms, cost_usd, suggested_chars, accepted_chars or acceptance (per event).
        #[arg(long, value_name = "FIELD")]
        field: String,
        /// Reference window, days inclusive: 2027-01-01..2027-01-14.
        #[arg(long, value_name = "START..END")]
        reference: String,
        /// Current window, days inclusive.
        #[arg(long, value_name = "START..END")]
        current: String,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Fit BG/NBD (purchases) and Gamma-Gamma (spend) by maximum likelihood to customer summaries.
    Ltv {
        /// A .csv or .parquet file with columns frequency, recency, T and optionally monetary_value.
        #[arg(long, value_name = "FILE")]
        summary: PathBuf,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

/// Runs a metrics command; the error is the message to print, and the command exits non-zero.
pub fn run(command: MetricsCommand) -> Result<(), String> {
    match command {
        MetricsCommand::Drift { events, field, reference, current, json } => {
            let field: DriftField = field.parse().map_err(|e| format!("--field: {e}"))?;
            let reference_window = window("--reference", &reference)?;
            let current_window = window("--current", &current)?;
            let read = read_interactions(&events).map_err(|e| refusal(&events, e))?;
            let values = |(start, end): (NaiveDate, NaiveDate)| -> Vec<f64> {
                read.events
                    .iter()
                    .filter(|e| (start..=end).contains(&e.ts.date_naive()))
                    .filter_map(|e| field.value(e))
                    .collect()
            };
            let (r, c) = (values(reference_window), values(current_window));
            let result = drift(&r, &c).ok_or_else(|| {
                format!("no {field:?} values in the {} window", if r.is_empty() { "reference" } else { "current" })
            })?;
            if json {
                let out = json!({
                    "method": "PSI and Jensen–Shannon distance (base 2) over bins cut at the reference's deciles; empty bins count as 0.01 %",
                    "field": field,
                    "drift": result,
                });
                println!("{}", serde_json::to_string_pretty(&out).map_err(|e| e.to_string())?);
            } else {
                println!(
                    "reference {reference} ({} values), current {current} ({} values)",
                    result.reference_n, result.current_n
                );
                println!(
                    "PSI {:.4} ({:?}; bands < 0.1 stable, 0.1–0.25 moderate, > 0.25 major)",
                    result.psi, result.band
                );
                println!("Jensen–Shannon distance {:.4}", result.js_distance);
            }
            Ok(())
        }
        MetricsCommand::Acceptance { events, by, json } => {
            let (by_variant, bucket) = parse_by(&by)?;
            let read = read_interactions(&events).map_err(|e| refusal(&events, e))?;
            let points =
                acceptance(&read.events, by_variant, bucket).map_err(|e| format!("computing acceptance: {e}"))?;
            if json {
                let out = json!({
                    "method": "ratio of sums; 95 % CI by the delta method with users as the randomisation unit",
                    "events": read.events.len(),
                    "duplicates_dropped": read.duplicates,
                    "points": points,
                });
                println!("{}", serde_json::to_string_pretty(&out).map_err(|e| e.to_string())?);
            } else {
                println!(
                    "{:<12} {:<10} {:>8} {:>20} {:>7} {:>8}",
                    "variant", "bucket", "rate", "95 % CI", "users", "events"
                );
                for p in &points {
                    let ci = match (p.ci_low, p.ci_high) {
                        (Some(lo), Some(hi)) => format!("[{lo:.4}, {hi:.4}]"),
                        _ => "(one user)".to_owned(),
                    };
                    let variant = p.variant.as_deref().unwrap_or("all");
                    println!("{variant:<12} {:<10} {:>8.4} {ci:>20} {:>7} {:>8}", p.bucket, p.value, p.users, p.events);
                }
                println!(
                    "{} events ({} repeated ids dropped). Ratio of sums; 95 % CI by the delta method, users as the unit.",
                    read.events.len(),
                    read.duplicates
                );
            }
            Ok(())
        }
        MetricsCommand::Ltv { summary, json } => {
            let customers = read_summary(&summary)?;
            let purchases = BgNbd::fit(&customers).map_err(|e| format!("BG/NBD: {e}"))?;
            let spend = if customers.iter().any(|c| c.monetary_value.is_some()) {
                Some(GammaGamma::fit(&customers).map_err(|e| format!("Gamma-Gamma: {e}"))?)
            } else {
                None
            };
            if json {
                let out = json!({
                    "customers": customers.len(),
                    "bg_nbd": { "r": purchases.params.r, "alpha": purchases.params.alpha, "a": purchases.params.a,
                                "b": purchases.params.b, "log_likelihood": purchases.log_likelihood },
                    "gamma_gamma": spend.as_ref().map(|s| json!({ "p": s.params.p, "q": s.params.q, "v": s.params.v,
                                "log_likelihood": s.log_likelihood, "customers": s.customers })),
                    "method": "maximum likelihood (Nelder–Mead on log parameters); BG/NBD per Fader, Hardie & Lee (2005)",
                });
                println!("{}", serde_json::to_string_pretty(&out).map_err(|e| e.to_string())?);
            } else {
                let p = purchases.params;
                println!("customers        {}", customers.len());
                println!(
                    "BG/NBD           r = {:.4}  alpha = {:.4}  a = {:.4}  b = {:.4}  log-likelihood = {:.4}",
                    p.r, p.alpha, p.a, p.b, purchases.log_likelihood
                );
                match spend {
                    Some(s) => println!(
                        "Gamma-Gamma      p = {:.4}  q = {:.4}  v = {:.4}  log-likelihood = {:.4}  ({} customers with repeat spend)",
                        s.params.p, s.params.q, s.params.v, s.log_likelihood, s.customers
                    ),
                    None => println!("Gamma-Gamma      not fitted: the summary has no monetary_value column"),
                }
            }
            Ok(())
        }
    }
}

/// The message for a file that could not be read, listing its invalid rows.
fn refusal(path: &std::path::Path, error: EventsError) -> String {
    match error {
        EventsError::Invalid { errors, total } => {
            let mut lines = vec![format!("{} has {total} invalid row(s); nothing was computed:", path.display())];
            lines.extend(errors.iter().map(|e| format!("  row {}, {}: {}", e.row, e.field, e.message)));
            if total > errors.len() {
                lines.push(format!("  … and {} more", total - errors.len()));
            }
            lines.join("\n")
        }
        other => other.to_string(),
    }
}

/// A window of days, both ends included: `2027-01-01..2027-01-14`.
fn window(flag: &str, raw: &str) -> Result<(NaiveDate, NaiveDate), String> {
    let invalid = || format!("{flag}: expected START..END with dates like 2027-01-01..2027-01-14, not {raw:?}");
    let (start, end) = raw.split_once("..").ok_or_else(invalid)?;
    let parse = |d: &str| NaiveDate::parse_from_str(d.trim(), "%Y-%m-%d").map_err(|_| invalid());
    let (start, end) = (parse(start)?, parse(end)?);
    if end < start {
        return Err(format!("{flag}: the window ends before it starts"));
    }
    Ok((start, end))
}

fn parse_by(by: &str) -> Result<(bool, Bucket), String> {
    let mut by_variant = false;
    let mut bucket = Bucket::All;
    for part in by.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part {
            "variant" => by_variant = true,
            "day" | "week" if bucket != Bucket::All => return Err("--by takes one of day or week, not both".into()),
            "day" => bucket = Bucket::Day,
            "week" => bucket = Bucket::Week,
            other => return Err(format!("--by: unknown field {other:?}; use variant, day or week")),
        }
    }
    Ok((by_variant, bucket))
}
