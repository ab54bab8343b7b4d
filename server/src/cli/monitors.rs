//! `slope monitors …`: monitors as a file, run now, and their alerts, with direct access to the
//! database (as the system principal `cli`).

use std::path::PathBuf;

use clap::Subcommand;
use serde::Deserialize;
use slope::config::Config;
use slope_domain::{MonitorInput, SilenceInput};
use slope_service::{Access, Monitors};

use super::show;

#[derive(Subcommand)]
pub enum MonitorsCommand {
    /// Create or replace the monitors of a TOML file: one `[[monitor]]` table each, with the fields
    /// of the API's monitor body (`key`, `name`, `kind`, and the kind's settings). Every monitor is
    /// checked before any is saved; an error names the monitor and the field.
    Apply {
        file: PathBuf,
        #[arg(long, value_name = "SLUG", default_value = slope::DEFAULT_ORG.0)]
        org: String,
    },
    /// List the monitors, with what each checks and when it last ran.
    List {
        #[arg(long, value_name = "SLUG", default_value = slope::DEFAULT_ORG.0)]
        org: String,
        /// Print them as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Evaluate a monitor now and print what it found.
    Run {
        key: String,
        #[arg(long, value_name = "SLUG", default_value = slope::DEFAULT_ORG.0)]
        org: String,
    },
    /// List alerts, open ones first.
    Alerts {
        /// Only alerts that have not resolved.
        #[arg(long)]
        open: bool,
        #[arg(long, value_name = "SLUG", default_value = slope::DEFAULT_ORG.0)]
        org: String,
        /// Print them as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Silence an open alert for some hours (at most a week).
    Silence {
        id: i64,
        #[arg(long)]
        hours: f64,
        /// Why, for the alert's history.
        #[arg(long)]
        note: Option<String>,
        #[arg(long, value_name = "SLUG", default_value = slope::DEFAULT_ORG.0)]
        org: String,
    },
}

/// A monitors file.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MonitorsFile {
    #[serde(default)]
    monitor: Vec<MonitorInput>,
}

pub async fn run(config: Config, command: MonitorsCommand) -> Result<(), String> {
    let (store, loops) = slope::startup::open_loops(&config).await?;
    store.ensure_org(slope::DEFAULT_ORG.0, slope::DEFAULT_ORG.1).await.map_err(|e| e.to_string())?;
    let access = Access::new(store.clone());
    let monitors = Monitors::new(store.clone(), loops, slope_service::Planning::new(store));
    match command {
        MonitorsCommand::Apply { file, org } => {
            let actor = access.system_actor(&org, "cli").await.map_err(show)?;
            let text = std::fs::read_to_string(&file).map_err(|e| format!("{}: {e}", file.display()))?;
            let parsed: MonitorsFile = toml::from_str(&text).map_err(|e| format!("{}: {e}", file.display()))?;
            if parsed.monitor.is_empty() {
                return Err(format!("{}: no [[monitor]] table", file.display()));
            }
            // Every monitor's own rules first, so one run reports every problem of the file.
            let problems: Vec<String> = parsed
                .monitor
                .iter()
                .enumerate()
                .filter_map(|(i, m)| m.parse().err().map(|e| format!("monitor {} ({:?}): {e}", i + 1, m.key)))
                .collect();
            if !problems.is_empty() {
                return Err(format!("{}: nothing was saved\n{}", file.display(), problems.join("\n")));
            }
            for (i, input) in parsed.monitor.iter().enumerate() {
                let (monitor, created) = monitors
                    .put(&actor, input)
                    .await
                    .map_err(|e| format!("monitor {} ({:?}): {}", i + 1, input.key, show(e)))?;
                println!(
                    "{} {}: {}",
                    if created { "created" } else { "replaced" },
                    monitor.key,
                    monitor.rule.describe()
                );
            }
        }
        MonitorsCommand::List { org, json } => {
            let actor = access.system_actor(&org, "cli").await.map_err(show)?;
            let list = monitors.list(&actor).await.map_err(show)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&list).map_err(|e| e.to_string())?);
            } else {
                for m in list {
                    let last = m.last_run_at.map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string());
                    println!(
                        "{:<24} every {:>4} min  last run {:<20} {}{}",
                        m.key,
                        m.every_minutes,
                        last.as_deref().unwrap_or("never"),
                        m.rule.describe(),
                        m.last_error.map(|e| format!("  (could not run: {e})")).unwrap_or_default()
                    );
                }
            }
        }
        MonitorsCommand::Run { key, org } => {
            let actor = access.system_actor(&org, "cli").await.map_err(show)?;
            let evaluation = monitors.run_now(&actor, &key).await.map_err(show)?;
            println!(
                "{}: {} finding(s); {} fired, {} resolved, {} notification(s)",
                evaluation.monitor,
                evaluation.findings.len(),
                evaluation.fired,
                evaluation.resolved,
                evaluation.notifications
            );
            for finding in evaluation.findings {
                println!("  {}", finding.summary);
            }
        }
        MonitorsCommand::Alerts { open, org, json } => {
            let actor = access.system_actor(&org, "cli").await.map_err(show)?;
            let alerts = monitors.alerts(&actor, open).await.map_err(show)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&alerts).map_err(|e| e.to_string())?);
            } else {
                for a in alerts {
                    println!("#{:<5} {:<9} {:<20} {}", a.alert.id, a.state, a.alert.monitor_key, a.alert.summary);
                }
            }
        }
        MonitorsCommand::Silence { id, hours, note, org } => {
            let actor = access.system_actor(&org, "cli").await.map_err(show)?;
            let view = monitors.silence(&actor, id, &SilenceInput { hours: Some(hours), note }).await.map_err(show)?;
            let until = view.alert.silenced_until.map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string());
            println!("alert {id} is silenced until {}", until.unwrap_or_default());
        }
    }
    Ok(())
}
