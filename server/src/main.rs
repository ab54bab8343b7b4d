//! `slope`: the server and command-line interface.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use slope::config::{Config, LogFormat, Overrides};
use slope::startup;

mod cli;
use cli::DbArgs;

/// Slope: plan seasons, OKRs and squad goals, grounded in the metrics of your product's loop.
#[derive(Parser)]
#[command(
    name = "slope",
    version,
    propagate_version = true,
    after_help = "Examples:\n  slope serve --demo                                  SQLite in ./data with a demo organisation\n  DATABASE_URL=postgres://slope@db/slope slope serve   PostgreSQL\n  slope migrate --database-url postgres://slope@db/slope"
)]
struct Cli {
    /// Configuration file [default: ./slope.toml when present].
    #[arg(long, global = true, env = "SLOPE_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Log as human-readable lines or as JSON objects.
    #[arg(long, global = true, value_enum, value_name = "FORMAT")]
    log_format: Option<LogFormat>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the web server (UI, JSON API under /api/v1, /healthz and /readyz).
    Serve {
        #[command(flatten)]
        db: DbArgs,
        /// Address to listen on, such as 127.0.0.1:3000 (port 0 picks a free port).
        #[arg(long, value_name = "ADDR")]
        bind: Option<std::net::SocketAddr>,
        /// Folder of the built site (the browser bundle and stylesheet).
        #[arg(long, value_name = "DIR")]
        site_root: Option<PathBuf>,
        /// Seed a demo organisation when the database has no season yet.
        #[arg(long)]
        demo: bool,
    },
    /// Apply database migrations and exit.
    Migrate {
        #[command(flatten)]
        db: DbArgs,
    },
    /// Ingest a file of interaction events into a loop, as one all-or-nothing batch.
    Ingest(cli::ingest::IngestArgs),
    /// Compute loop metrics from files (acceptance, A/B analysis, retention, drift, customer lifetime value).
    Metrics {
        #[command(subcommand)]
        command: cli::metrics::MetricsCommand,
    },
    /// The fine-tune/eval runner: train, evaluate, promote and list models and jobs.
    Runner {
        #[command(flatten)]
        db: DbArgs,
        #[command(subcommand)]
        command: cli::runner::RunnerCommand,
    },
    /// Training datasets: build them from a loop's events, or register JSONL files.
    Datasets {
        #[command(flatten)]
        db: DbArgs,
        #[command(subcommand)]
        command: cli::runner::DatasetsCommand,
    },
    /// Run queued runner jobs (training and evals) until stopped; any number of workers may share a
    /// PostgreSQL database.
    Worker {
        #[command(flatten)]
        db: DbArgs,
        /// Jobs run at once.
        #[arg(long, default_value_t = 1)]
        slots: usize,
    },
    /// Organisations' admins and members, with direct access to the database.
    Admin {
        #[command(flatten)]
        db: DbArgs,
        #[command(subcommand)]
        command: cli::admin::AdminCommand,
    },
    /// Plans as code: export a season as TOML, diff a file against what is stored, apply it.
    Plan {
        #[command(flatten)]
        db: DbArgs,
        #[command(subcommand)]
        command: cli::plan::PlanCommand,
    },
    /// Expert annotation: queues, sampling, exports and imports of labels, agreement and budgets.
    Annotate {
        #[command(flatten)]
        db: DbArgs,
        #[command(subcommand)]
        command: cli::annotate::AnnotateCommand,
    },
    /// Monitors as a file, evaluated now, and their alerts and silences.
    Monitors {
        #[command(flatten)]
        db: DbArgs,
        #[command(subcommand)]
        command: cli::monitors::MonitorsCommand,
    },
    /// API tokens for scripts and ingestion (`Authorization: Bearer …`).
    Token {
        #[command(flatten)]
        db: DbArgs,
        #[command(subcommand)]
        command: cli::admin::TokenCommand,
    },
    /// Print the OpenAPI 3.1 description of the JSON API (/api/v1) and exit; needs no database.
    Openapi,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::Openapi = cli.command {
        print!("{}", slope::openapi::to_json());
        return ExitCode::SUCCESS;
    }
    let mut overrides = Overrides { log_format: cli.log_format, ..Default::default() };
    match &cli.command {
        Command::Serve { db, bind, site_root, demo } => {
            overrides.bind = *bind;
            overrides.site_root = site_root.clone();
            overrides.demo = demo.then_some(true);
            db.apply(&mut overrides);
        }
        Command::Ingest(args) => args.db.apply(&mut overrides),
        Command::Migrate { db }
        | Command::Runner { db, .. }
        | Command::Datasets { db, .. }
        | Command::Worker { db, .. }
        | Command::Admin { db, .. }
        | Command::Plan { db, .. }
        | Command::Annotate { db, .. }
        | Command::Monitors { db, .. }
        | Command::Token { db, .. } => db.apply(&mut overrides),
        Command::Metrics { .. } | Command::Openapi => {}
    }
    let config = match Config::load(cli.config.as_deref(), &overrides) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("slope: {e}");
            return ExitCode::from(2);
        }
    };
    init_logging(config.log_format);
    let command = match cli.command {
        // File metrics need neither a database nor an async runtime.
        Command::Metrics { command } => {
            return match cli::metrics::run(command) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("slope: {e}");
                    ExitCode::FAILURE
                }
            };
        }
        other => other,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    let result = runtime.block_on(async {
        match command {
            Command::Migrate { .. } => startup::open_store(&config).await.map(|_| ()),
            Command::Ingest(args) => cli::ingest::run(config, args).await,
            Command::Runner { command, .. } => cli::runner::run_runner(config, command).await,
            Command::Datasets { command, .. } => cli::runner::run_datasets(config, command).await,
            Command::Worker { slots, .. } => cli::runner::run_worker(config, slots).await,
            Command::Admin { command, .. } => cli::admin::run_admin(config, command).await,
            Command::Token { command, .. } => cli::admin::run_token(config, command).await,
            Command::Plan { command, .. } => cli::plan::run(config, command).await,
            Command::Annotate { command, .. } => cli::annotate::run(config, command).await,
            Command::Monitors { command, .. } => cli::monitors::run(config, command).await,
            _ => startup::serve(config).await,
        }
    });
    // A training job may still be running on the blocking pool: the process does not wait for it. Its
    // lease expires and a worker resumes it from its last checkpoint.
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("slope: {e}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SLOPE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn,tower_http=info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Human => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
