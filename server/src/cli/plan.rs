//! `slope plan export|diff|apply|review`: a season's plan as a TOML file, and a closed season's review
//! as Markdown. Each command works directly on the
//! database, or against a running server with `--server URL` and a token (`SLOPE_TOKEN`), which is how
//! a CI pipeline or an agent applies a reviewed plan without database credentials.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use serde_json::{Value, json};
use slope::config::Config;
use slope_service::{PlanOutcome, Planning, ServiceError};

use super::show;

#[derive(Subcommand)]
pub enum PlanCommand {
    /// Print a season's plan (objectives, key results, squads, squad goals) as TOML.
    Export {
        /// The season's key (`GET /api/v1/seasons` and the season page show it).
        #[arg(long, value_name = "KEY")]
        season: String,
        #[command(flatten)]
        remote: Remote,
    },
    /// Show what applying the file would create, update and delete, without changing anything.
    Diff {
        file: PathBuf,
        #[command(flatten)]
        remote: Remote,
        /// Print the changes as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print a closed season's review as Markdown (objectives and key results as they ended, slope
    /// bets, thesis signals, confidence calibration, retrospective).
    Review {
        /// The season's key.
        #[arg(long, value_name = "KEY")]
        season: String,
        #[command(flatten)]
        remote: Remote,
    },
    /// Apply the file in one transaction (all changes or none); applying it again changes nothing.
    Apply {
        file: PathBuf,
        #[command(flatten)]
        remote: Remote,
        /// Print the outcome as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args)]
pub struct Remote {
    /// A running Slope server to work through, such as https://slope.example.com; without it the
    /// command opens the database itself.
    #[arg(long, value_name = "URL")]
    server: Option<String>,
    /// An API token for `--server` (read scope for export and diff, write scope for apply).
    #[arg(long, env = "SLOPE_TOKEN", hide_env_values = true, value_name = "TOKEN")]
    token: Option<String>,
    /// The organisation to work in when opening the database directly.
    #[arg(long, value_name = "SLUG", default_value = slope::DEFAULT_ORG.0)]
    org: String,
}

pub async fn run(config: Config, command: PlanCommand) -> Result<(), String> {
    match command {
        PlanCommand::Export { season, remote } => {
            let text = match remote.server.as_deref() {
                Some(server) => {
                    let url = format!("{}/api/v1/plans/{season}", server.trim_end_matches('/'));
                    let response = client(&remote)?.get(url).send().await.map_err(|e| format!("{server}: {e}"))?;
                    let status = response.status();
                    let body = response.text().await.map_err(|e| format!("{server}: {e}"))?;
                    if !status.is_success() {
                        return Err(error_of(status.as_u16(), &body));
                    }
                    body
                }
                None => {
                    let (planning, actor) = open(&config, &remote.org).await?;
                    planning.export_plan(&actor, &season).await.map_err(show)?
                }
            };
            print!("{text}");
        }
        PlanCommand::Review { season, remote } => print!("{}", review(&config, &season, &remote).await?),
        PlanCommand::Diff { file, remote, json } => {
            let outcome = outcome(&config, &file, &remote, true).await?;
            print_outcome(&outcome, json)?;
        }
        PlanCommand::Apply { file, remote, json } => {
            let outcome = outcome(&config, &file, &remote, false).await?;
            print_outcome(&outcome, json)?;
        }
    }
    Ok(())
}

async fn outcome(config: &Config, file: &PathBuf, remote: &Remote, dry_run: bool) -> Result<Value, String> {
    let text = std::fs::read_to_string(file).map_err(|e| format!("cannot read {}: {e}", file.display()))?;
    let name = file.display().to_string();
    match remote.server.as_deref() {
        Some(server) => {
            let url = format!("{}/api/v1/plans/apply", server.trim_end_matches('/'));
            let response = client(remote)?
                .post(url)
                .json(&json!({ "plan": text, "dry_run": dry_run }))
                .send()
                .await
                .map_err(|e| format!("{server}: {e}"))?;
            let status = response.status().as_u16();
            let body = response.text().await.map_err(|e| format!("{server}: {e}"))?;
            if !(200..300).contains(&status) {
                return Err(prefix_lines(&name, &error_of(status, &body)));
            }
            serde_json::from_str(&body).map_err(|e| format!("{server} answered something that is not JSON: {e}"))
        }
        None => {
            let (planning, actor) = open(config, &remote.org).await?;
            let outcome: PlanOutcome = planning.apply_plan(&actor, &text, dry_run).await.map_err(|e| match e {
                ServiceError::InvalidPlan(errors) => {
                    errors.iter().map(|e| format!("{name}: {e}")).collect::<Vec<_>>().join("\n")
                }
                other => show(other),
            })?;
            serde_json::to_value(&outcome).map_err(|e| e.to_string())
        }
    }
}

fn print_outcome(outcome: &Value, json: bool) -> Result<(), String> {
    if json {
        println!("{}", serde_json::to_string_pretty(outcome).map_err(|e| e.to_string())?);
        return Ok(());
    }
    print!("{}", outcome["plan"].as_str().unwrap_or_default());
    if outcome["applied"] == true {
        println!("Applied.");
    } else if outcome["dry_run"] == false {
        println!("Nothing to apply.");
    }
    Ok(())
}

/// The review of the season with key `key`, as Markdown: from the database, or through `--server`
/// (the season's id looked up by its key, then its `review.md`).
async fn review(config: &Config, key: &str, remote: &Remote) -> Result<String, String> {
    let unknown = || format!("no season has the key {key:?} (the season page and `GET /api/v1/seasons` show keys)");
    match remote.server.as_deref() {
        Some(server) => {
            let base = server.trim_end_matches('/');
            let client = client(remote)?;
            let get = |url: String| {
                let client = client.clone();
                async move {
                    let response = client.get(url).send().await.map_err(|e| format!("{server}: {e}"))?;
                    let status = response.status();
                    let body = response.text().await.map_err(|e| format!("{server}: {e}"))?;
                    if status.is_success() { Ok(body) } else { Err(error_of(status.as_u16(), &body)) }
                }
            };
            let seasons: Value = serde_json::from_str(&get(format!("{base}/api/v1/seasons")).await?)
                .map_err(|e| format!("{server}: the season list is not JSON: {e}"))?;
            let id = seasons
                .as_array()
                .and_then(|all| all.iter().find(|s| s["season"]["key"] == key))
                .and_then(|s| s["season"]["id"].as_i64())
                .ok_or_else(unknown)?;
            get(format!("{base}/api/v1/seasons/{id}/review.md")).await
        }
        None => {
            let (planning, actor) = open(config, &remote.org).await?;
            let seasons = planning.list_seasons(&actor).await.map_err(show)?;
            let season = seasons.iter().find(|s| s.season.key == key).ok_or_else(unknown)?;
            let review = planning.season_review(&actor, season.season.id).await.map_err(show)?;
            Ok(slope_domain::review_markdown(&review))
        }
    }
}

async fn open(config: &Config, org: &str) -> Result<(Planning, slope_domain::Actor), String> {
    let store = slope::startup::open_store(config).await?;
    store.ensure_org(slope::DEFAULT_ORG.0, slope::DEFAULT_ORG.1).await.map_err(|e| e.to_string())?;
    let access = slope_service::Access::new(store.clone());
    let actor = access.system_actor(org, "cli").await.map_err(show)?;
    Ok((Planning::new(store), actor))
}

fn client(remote: &Remote) -> Result<reqwest::Client, String> {
    let token = remote.token.as_deref().ok_or("--server needs a token: set SLOPE_TOKEN or pass --token")?;
    let mut headers = reqwest::header::HeaderMap::new();
    let value = format!("Bearer {token}").parse().map_err(|_| "the token is not valid header text".to_owned())?;
    headers.insert(reqwest::header::AUTHORIZATION, value);
    reqwest::Client::builder().default_headers(headers).build().map_err(|e| e.to_string())
}

/// The message of an API error body: for a refused plan, one line per error naming line and field.
fn error_of(status: u16, body: &str) -> String {
    let Ok(value) = serde_json::from_str::<Value>(body) else { return format!("HTTP {status}: {body}") };
    let error = &value["error"];
    if let Some(errors) = error["errors"].as_array() {
        return errors
            .iter()
            .map(|e| {
                format!(
                    "line {}: {}: {}",
                    e["line"],
                    e["path"].as_str().unwrap_or(""),
                    e["message"].as_str().unwrap_or("")
                )
            })
            .collect::<Vec<_>>()
            .join("\n");
    }
    format!("HTTP {status}: {}", error["message"].as_str().unwrap_or(body))
}

fn prefix_lines(name: &str, text: &str) -> String {
    text.lines()
        .map(|l| if l.starts_with("line ") { format!("{name}: {l}") } else { l.to_owned() })
        .collect::<Vec<_>>()
        .join("\n")
}
