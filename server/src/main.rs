//! `slope`: the server and command-line interface.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

mod metrics_cli;
use slope::config::{Config, LogFormat, Overrides, redact};
use slope::{DEFAULT_ORG, router};
use slope_service::{Planning, Store, demo};
use tokio::net::TcpListener;

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
    /// Compute loop metrics from files (acceptance rate, customer lifetime value).
    Metrics {
        #[command(subcommand)]
        command: metrics_cli::MetricsCommand,
    },
}

#[derive(Args)]
struct DbArgs {
    /// Database URL: sqlite://FILE or postgres://USER@HOST/DB [default: sqlite in the data dir].
    #[arg(long, value_name = "URL")]
    database_url: Option<String>,
    /// Folder for local state such as the embedded database [default: ./data].
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut overrides = Overrides { log_format: cli.log_format, ..Default::default() };
    match &cli.command {
        Command::Serve { db, bind, site_root, demo } => {
            overrides.bind = *bind;
            overrides.site_root = site_root.clone();
            overrides.demo = demo.then_some(true);
            overrides.database_url = db.database_url.clone();
            overrides.data_dir = db.data_dir.clone();
        }
        Command::Migrate { db } => {
            overrides.database_url = db.database_url.clone();
            overrides.data_dir = db.data_dir.clone();
        }
        Command::Metrics { .. } => {}
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
            return match metrics_cli::run(command) {
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
            Command::Migrate { .. } => migrate(config).await.map(|_| ()),
            _ => serve(config).await,
        }
    });
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

async fn migrate(config: Config) -> Result<Store, String> {
    let url = config.database_url();
    let store = Store::connect(&url).await.map_err(|e| format!("cannot open database {}: {e}", redact(&url)))?;
    store.migrate().await.map_err(|e| format!("migration failed: {e}"))?;
    tracing::info!(database = %redact(&url), "database is migrated");
    Ok(store)
}

async fn serve(config: Config) -> Result<(), String> {
    let store = migrate(config.clone()).await?;
    let org = store.ensure_org(DEFAULT_ORG.0, DEFAULT_ORG.1).await.map_err(|e| e.to_string())?;
    let planning = Planning::new(store.clone());
    if config.demo {
        let today = chrono::Utc::now().date_naive();
        if demo::seed(&planning, org, today).await.map_err(|e| format!("demo data: {e}"))? {
            tracing::info!("demo data seeded");
        }
    }
    let listener =
        TcpListener::bind(config.bind).await.map_err(|e| format!("cannot listen on {}: {e}", config.bind))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let site_root = config.site_root.to_string_lossy().into_owned();
    if !config.site_root.join("pkg").join("slope.css").exists() {
        tracing::warn!(
            site_root,
            "the built site is missing: pages render but will not hydrate (run `cargo xtask build`)"
        );
    }
    let app = router(planning, org, &site_root, addr);
    // Scripts and tests read this line to learn the port when it was chosen by the system.
    println!("slope listening on http://{addr}");
    tracing::info!(%addr, database = %redact(&config.database_url()), "listening");
    axum::serve(listener, app).with_graceful_shutdown(shutdown()).await.map_err(|e| e.to_string())?;
    store.close().await;
    tracing::info!("stopped");
    Ok(())
}

async fn shutdown() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}
