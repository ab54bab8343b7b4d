//! `slope metrics …`: loop metrics computed from files, as human tables or JSON.

use std::path::PathBuf;

use chrono::NaiveDate;
use clap::{ArgGroup, Subcommand};
use serde_json::json;
use slope_metrics::ab::{AbReport, ab};
use slope_metrics::acceptance::{Bucket, acceptance};
use slope_metrics::drift::{DriftField, drift, field_value};
use slope_metrics::events::{EventsError, RowError, read_interactions};
use slope_metrics::ltv::{BgNbd, Customer, GammaGamma, read_summary};
use slope_metrics::retention::retention;
use slope_metrics::transactions::{Period, SummaryOptions, TransactionColumns, TransactionsError, read_transactions};

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
    /// A/B test of the acceptance rate between two variants, users as the randomisation unit: the
    /// difference with a fixed-horizon z-test, the relative lift, an always-valid p-value (mixture
    /// SPRT) and a sample-ratio mismatch check.
    Ab {
        /// Interaction events: .ndjson, .jsonl, .csv or .parquet.
        #[arg(long, value_name = "FILE")]
        events: PathBuf,
        /// The control variant, as the events' `variant` field names it.
        #[arg(long, value_name = "VARIANT")]
        control: String,
        /// The treatment variant.
        #[arg(long, value_name = "VARIANT")]
        treatment: String,
        /// The share of users the design sends to the treatment (default 0.5), for the sample-ratio check.
        #[arg(long, value_name = "SHARE")]
        expected_share: Option<f64>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Weekly cohort retention per loop: users by the ISO week of their first event, and the share of
    /// each cohort active in each later week up to the week of the last event.
    Retention {
        /// Interaction events: .ndjson, .jsonl, .csv or .parquet.
        #[arg(long, value_name = "FILE")]
        events: PathBuf,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Fit BG/NBD (purchases) and Gamma-Gamma (spend) by maximum likelihood to customer summaries,
    /// given as a summary file or built from a transaction file as Python's lifetimes does.
    #[command(group(ArgGroup::new("input").required(true).args(["summary", "transactions"])))]
    Ltv {
        /// A .csv or .parquet file with columns frequency, recency, T and optionally monetary_value.
        #[arg(long, value_name = "FILE")]
        summary: Option<PathBuf>,
        /// Transactions, one row per purchase: .csv, .parquet, .ndjson or .jsonl. Needs --customer-col
        /// and --date-col.
        #[arg(long, value_name = "FILE")]
        transactions: Option<PathBuf>,
        /// The column of the transaction file that identifies the customer.
        #[arg(long, value_name = "COLUMN", conflicts_with = "summary")]
        customer_col: Option<String>,
        /// The column with the purchase date (2027-01-04 or a date and time).
        #[arg(long, value_name = "COLUMN", conflicts_with = "summary")]
        date_col: Option<String>,
        /// The column with the purchase amount; without it Gamma-Gamma is not fitted.
        #[arg(long, value_name = "COLUMN", conflicts_with = "summary")]
        amount_col: Option<String>,
        /// The time unit of frequency, recency and T (default: day). Purchases of a customer in one period
        /// count as one.
        #[arg(long, value_name = "UNIT", value_parser = ["day", "week"], conflicts_with = "summary")]
        period: Option<String>,
        /// The last day observed (YYYY-MM-DD); transactions of later periods are ignored, and T is measured
        /// to its period (a week counts whole, as in lifetimes). Default: the last transaction's date.
        #[arg(long, value_name = "DATE", value_parser = parse_day, conflicts_with = "summary")]
        calibration_end: Option<NaiveDate>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

/// A day as `--calibration-end` takes it.
fn parse_day(raw: &str) -> Result<NaiveDate, String> {
    NaiveDate::parse_from_str(raw.trim(), "%Y-%m-%d")
        .map_err(|_| format!("expected a date like 2027-01-31, not {raw:?}"))
}

/// Where the customer summaries of `slope metrics ltv` come from.
enum LtvInput {
    Summary(PathBuf),
    Transactions { path: PathBuf, customer: String, date: String, amount: Option<String>, options: SummaryOptions },
}

/// The customers to fit, and what building them from transactions says about them (`None` for a
/// summary file).
fn ltv_customers(input: LtvInput) -> Result<(Vec<Customer>, Option<serde_json::Value>), String> {
    match input {
        LtvInput::Summary(path) => Ok((read_summary(&path)?, None)),
        LtvInput::Transactions { path, customer, date, amount, options } => {
            let columns = TransactionColumns { customer: &customer, date: &date, amount: amount.as_deref() };
            let all = read_transactions(&path, &columns, &options).map_err(|e| transactions_refusal(&path, e))?;
            if all.is_empty() {
                return Err(match options.calibration_end {
                    Some(end) => format!("{} has no transactions on or before {end}", path.display()),
                    None => format!("{} has no transactions", path.display()),
                });
            }
            // A customer whose first purchase is in the last period has T = 0: the likelihood of such a
            // summary is 1 whatever the parameters, so leaving them out changes no fit, and the model
            // refuses T = 0.
            let (fitted, new): (Vec<Customer>, Vec<Customer>) = all.iter().partition(|c| c.t > 0.0);
            let summary = json!({
                "customers": all.len(),
                "new_in_last_period": new.len(),
                "repeat_customers": all.iter().filter(|c| c.frequency > 0.0).count(),
                "repeat_purchases": all.iter().map(|c| c.frequency).sum::<f64>(),
                "period": options.period,
                "calibration_end": options.calibration_end,
            });
            Ok((fitted, Some(summary)))
        }
    }
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
                    .filter_map(|e| field_value(field, e))
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
        MetricsCommand::Ab { events, control, treatment, expected_share, json } => {
            if let Some(share) = expected_share
                && !(share > 0.0 && share < 1.0)
            {
                return Err(format!("--expected-share must lie strictly between 0 and 1, not {share}"));
            }
            let read = read_interactions(&events).map_err(|e| refusal(&events, e))?;
            let report = ab(&read.events, &control, &treatment, expected_share).map_err(|e| e.to_string())?;
            if json {
                let mut out = serde_json::to_value(&report).map_err(|e| e.to_string())?;
                out["events"] = json!(read.events.len());
                out["duplicates_dropped"] = json!(read.duplicates);
                println!("{}", serde_json::to_string_pretty(&out).map_err(|e| e.to_string())?);
            } else {
                print_ab(&report, read.events.len(), read.duplicates);
            }
            Ok(())
        }
        MetricsCommand::Retention { events, json } => {
            let read = read_interactions(&events).map_err(|e| refusal(&events, e))?;
            let result = retention(&read.events).map_err(|e| format!("computing retention: {e}"))?;
            let method = "cohort = ISO week (from Monday) of a user's first event in the loop; share = users of the \
                          cohort with an event in the loop in week cohort + offset, up to the week of the last event";
            if json {
                let out = json!({ "method": method, "last_week": result.last_week, "loops": result.loops });
                println!("{}", serde_json::to_string_pretty(&out).map_err(|e| e.to_string())?);
            } else {
                for l in &result.loops {
                    let width = l.cohorts.first().map_or(0, |c| c.weeks.len());
                    let header: String = (0..width).map(|k| format!(" {:>6}", format!("w{k}"))).collect();
                    println!("loop {}", l.loop_key);
                    println!("{:<10} {:>6}{header}", "cohort", "users");
                    for c in &l.cohorts {
                        let shares: String = c.weeks.iter().map(|p| format!(" {:>5.1}%", 100.0 * p.share)).collect();
                        println!("{:<10} {:>6}{shares}", c.week, c.size);
                    }
                    println!();
                }
                println!("{} events. Weekly cohorts: {method}.", read.events.len());
            }
            Ok(())
        }
        MetricsCommand::Ltv {
            summary,
            transactions,
            customer_col,
            date_col,
            amount_col,
            period,
            calibration_end,
            json,
        } => {
            let input = match (summary, transactions) {
                (Some(path), None) => LtvInput::Summary(path),
                (None, Some(path)) => {
                    let (Some(customer), Some(date)) = (customer_col, date_col) else {
                        return Err("--transactions needs --customer-col and --date-col to name its columns".into());
                    };
                    let period: Period = period.as_deref().unwrap_or("day").parse()?;
                    LtvInput::Transactions {
                        path,
                        customer,
                        date,
                        amount: amount_col,
                        options: SummaryOptions { period, calibration_end },
                    }
                }
                _ => return Err("give exactly one of --summary and --transactions".into()),
            };
            let (customers, from_transactions) = ltv_customers(input)?;
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
                    "transactions": from_transactions,
                });
                println!("{}", serde_json::to_string_pretty(&out).map_err(|e| e.to_string())?);
            } else {
                let p = purchases.params;
                if let Some(t) = &from_transactions {
                    println!(
                        "summaries        {} customers by {} as lifetimes builds them ({} with repeat purchases); \
                         {} whose first purchase is in the last period have T = 0 and are left out of the fit",
                        t["customers"],
                        t["period"].as_str().unwrap_or_default(),
                        t["repeat_customers"],
                        t["new_in_last_period"]
                    );
                }
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
                    None if from_transactions.is_some() => {
                        println!("Gamma-Gamma      not fitted: no --amount-col was given")
                    }
                    None => println!("Gamma-Gamma      not fitted: the summary has no monetary_value column"),
                }
            }
            Ok(())
        }
    }
}

/// The message for an events file that could not be read, listing its invalid rows.
fn refusal(path: &std::path::Path, error: EventsError) -> String {
    match error {
        EventsError::Invalid { errors, total } => invalid_rows(path, &errors, total),
        other => other.to_string(),
    }
}

/// The message for a transaction file that could not be read, listing its invalid rows.
fn transactions_refusal(path: &std::path::Path, error: TransactionsError) -> String {
    match error {
        TransactionsError::Invalid { errors, total } => invalid_rows(path, &errors, total),
        other => other.to_string(),
    }
}

fn invalid_rows(path: &std::path::Path, errors: &[RowError], total: usize) -> String {
    let mut lines = vec![format!("{} has {total} invalid row(s); nothing was computed:", path.display())];
    lines.extend(errors.iter().map(|e| format!("  row {}, {}: {}", e.row, e.field, e.message)));
    if total > errors.len() {
        lines.push(format!("  … and {} more", total - errors.len()));
    }
    lines.join("\n")
}

/// A p-value as `= 0.0123`, or in scientific notation when four decimals would show 0.0000; a p-value
/// below the smallest double is only bounded.
fn p_text(p: f64) -> String {
    if p >= 1e-4 {
        format!("= {p:.4}")
    } else if p > 0.0 {
        format!("= {p:.1e}")
    } else {
        "< 1e-300".to_owned()
    }
}

/// The human table of an A/B report: the arms, then each comparison with the method that made it.
fn print_ab(report: &AbReport, events: usize, duplicates: usize) {
    let (c, t) = (&report.control, &report.treatment);
    println!("{:<24} {:>7} {:>8} {:>8} {:>20}", "variant", "users", "events", "rate", "95 % CI");
    for (arm, role) in [(c, "control"), (t, "treatment")] {
        let name = format!("{} ({role})", arm.variant);
        let ci = format!("[{:.4}, {:.4}]", arm.ci_low, arm.ci_high);
        println!("{name:<24} {:>7} {:>8} {:>8.4} {ci:>20}", arm.users, arm.events, arm.rate);
    }
    println!();
    let d = &report.difference;
    println!(
        "difference {} − {}: {:+.4}, 95 % CI [{:+.4}, {:+.4}], z = {:.3}, p {} (fixed horizon, one look)",
        t.variant,
        c.variant,
        d.estimate,
        d.ci_low,
        d.ci_high,
        d.z,
        p_text(d.p_value)
    );
    match &report.relative_lift {
        Some(l) => println!(
            "relative lift: {:+.2} %, 95 % CI [{:+.2} %, {:+.2} %] (delta method on the log ratio)",
            100.0 * l.estimate,
            100.0 * l.ci_low,
            100.0 * l.ci_high
        ),
        None => println!("relative lift: undefined, an arm's rate is 0"),
    }
    let av = &report.always_valid;
    println!(
        "always valid: p {}, 95 % confidence sequence [{:+.4}, {:+.4}] (mixture SPRT, τ = {}; valid at any look)",
        p_text(av.p_value),
        av.ci_low,
        av.ci_high,
        av.mixing_sd
    );
    let srm = &report.sample_ratio;
    let verdict = if srm.mismatch {
        "SAMPLE RATIO MISMATCH: the assignment is broken; do not trust the comparison"
    } else {
        "no mismatch"
    };
    println!(
        "sample ratio: {} vs {} users, treatment share {:.4} (expected {}), χ² = {:.3}, p {}: {verdict}",
        srm.control_users,
        srm.treatment_users,
        srm.observed_share_treatment,
        srm.expected_share_treatment,
        srm.chi_square,
        p_text(srm.p_value)
    );
    if report.users_in_both > 0 {
        println!("{} user(s) have events in both arms and are counted in each", report.users_in_both);
    }
    println!("{events} events ({duplicates} repeated ids dropped).");
    println!("Methods: {}", report.methods);
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
