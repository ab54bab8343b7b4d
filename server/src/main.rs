//! `slope`: the server and command-line interface.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

mod admin_cli;
mod ingest_cli;
mod metrics_cli;
mod plan_cli;
mod runner_cli;
use slope::config::{Config, LogFormat, Overrides, redact};
use slope::{DEFAULT_ORG, RouterSettings, router};
use slope_domain::Actor;
use slope_service::{Access, Loops, Planning, Runner, SegmentStore, Services, Store, Upkeep, demo};
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
    /// Ingest a file of interaction events into a loop, as one all-or-nothing batch.
    Ingest {
        #[command(flatten)]
        db: DbArgs,
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
    },
    /// Compute loop metrics from files (acceptance, A/B analysis, retention, drift, customer lifetime value).
    Metrics {
        #[command(subcommand)]
        command: metrics_cli::MetricsCommand,
    },
    /// The fine-tune/eval runner: train, evaluate, promote and list models and jobs.
    Runner {
        #[command(flatten)]
        db: DbArgs,
        #[command(subcommand)]
        command: runner_cli::RunnerCommand,
    },
    /// Training datasets: build them from a loop's events, or register JSONL files.
    Datasets {
        #[command(flatten)]
        db: DbArgs,
        #[command(subcommand)]
        command: runner_cli::DatasetsCommand,
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
        command: admin_cli::AdminCommand,
    },
    /// Plans as code: export a season as TOML, diff a file against what is stored, apply it.
    Plan {
        #[command(flatten)]
        db: DbArgs,
        #[command(subcommand)]
        command: plan_cli::PlanCommand,
    },
    /// API tokens for scripts and ingestion (`Authorization: Bearer …`).
    Token {
        #[command(flatten)]
        db: DbArgs,
        #[command(subcommand)]
        command: admin_cli::TokenCommand,
    },
    /// Print the OpenAPI 3.1 description of the JSON API (/api/v1) and exit; needs no database.
    Openapi,
}

#[derive(Args)]
struct DbArgs {
    /// Database URL: sqlite://FILE or postgres://USER@HOST/DB [default: sqlite in the data dir].
    #[arg(long, global = true, value_name = "URL")]
    database_url: Option<String>,
    /// Folder for local state such as the embedded database [default: ./data].
    #[arg(long, global = true, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Where event segments, datasets and models live: file:///DIR or a path [default: segments/ in
    /// the data dir].
    #[arg(long, global = true, value_name = "URL")]
    event_store: Option<String>,
}

impl DbArgs {
    fn apply(&self, overrides: &mut Overrides) {
        overrides.database_url = self.database_url.clone();
        overrides.data_dir = self.data_dir.clone();
        overrides.event_store = self.event_store.clone();
    }
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
        Command::Migrate { db }
        | Command::Ingest { db, .. }
        | Command::Runner { db, .. }
        | Command::Datasets { db, .. }
        | Command::Worker { db, .. }
        | Command::Admin { db, .. }
        | Command::Plan { db, .. }
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
            Command::Ingest { file, loop_key, transactions, idempotency_key, batch_bytes, json, .. } => {
                ingest_cli::run(
                    config,
                    &file,
                    loop_key.as_deref().filter(|_| !transactions),
                    idempotency_key.as_deref(),
                    batch_bytes,
                    json,
                )
                .await
            }
            Command::Runner { command, .. } => runner_cli::run_runner(config, command).await,
            Command::Datasets { command, .. } => runner_cli::run_datasets(config, command).await,
            Command::Worker { slots, .. } => runner_cli::run_worker(config, slots).await,
            Command::Admin { command, .. } => admin_cli::run_admin(config, command).await,
            Command::Token { command, .. } => admin_cli::run_token(config, command).await,
            Command::Plan { command, .. } => plan_cli::run(config, command).await,
            _ => serve(config).await,
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

async fn migrate(config: Config) -> Result<Store, String> {
    let url = config.database_url();
    let store = Store::connect(&url).await.map_err(|e| format!("cannot open database {}: {e}", redact(&url)))?;
    store.migrate().await.map_err(|e| format!("migration failed: {e}"))?;
    tracing::info!(database = %redact(&url), "database is migrated");
    Ok(store)
}

/// The configured database, migrated.
pub(crate) async fn open_store(config: &Config) -> Result<Store, String> {
    migrate(config.clone()).await
}

/// The loop metrics service over the configured database and event store.
pub(crate) async fn open_loops(config: &Config) -> Result<(Store, Loops), String> {
    let store = migrate(config.clone()).await?;
    let segments = SegmentStore::open(&config.event_store()).map_err(|e| format!("event store: {e}"))?;
    Ok((store.clone(), Loops::new(store, segments)))
}

/// The runner service over the configured database and object store.
pub(crate) fn open_runner(config: &Config, store: Store, loops: Loops) -> Result<Runner, String> {
    let objects = SegmentStore::open(&config.event_store()).map_err(|e| format!("event store: {e}"))?;
    Ok(Runner::new(store, objects, loops, config.runner_cache(), config.job_lease()))
}

async fn serve(config: Config) -> Result<(), String> {
    let (store, loops) = open_loops(&config).await?;
    let org = store.ensure_org(DEFAULT_ORG.0, DEFAULT_ORG.1).await.map_err(|e| e.to_string())?;
    let planning = Planning::new(store.clone());
    let access = Access::new(store.clone());
    let runner = open_runner(&config, store.clone(), loops.clone())?;
    // Every organisation gets the shipped base model; an empty setting (SLOPE_BASE_MODEL=) turns it off.
    if let Some(dir) = config.base_model.as_ref().filter(|d| d.join("model.safetensors").is_file()) {
        for org in store.list_orgs().await.map_err(|e| e.to_string())? {
            match runner.import_model(&Actor::system(org, "serve"), "base", dir, None).await {
                Ok(m) => tracing::info!(model = m.id, %org, dir = %dir.display(), "base model registered"),
                Err(e) => tracing::warn!(error = %e, dir = %dir.display(), "the base model could not be registered"),
            }
        }
    }
    if config.demo {
        let today = chrono::Utc::now().date_naive();
        let system = Actor::system(org, "demo");
        if demo::seed(&planning, &system, today).await.map_err(|e| format!("demo data: {e}"))? {
            demo::seed_loop(&planning, &loops, &system, today).await.map_err(|e| format!("demo loop: {e}"))?;
            tracing::info!("demo data seeded");
        }
        demo::seed_accounts(&access, &planning, &system).await.map_err(|e| format!("demo accounts: {e}"))?;
        for account in &demo::DEMO_ACCOUNTS {
            tracing::info!(role = %account.role, email = account.email, password = account.password, "demo account");
        }
    } else {
        let retired = demo::retire_accounts(&access, &Actor::system(org, "serve"))
            .await
            .map_err(|e| format!("retiring demo accounts: {e}"))?;
        if retired > 0 {
            tracing::warn!(accounts = retired, "not in demo mode: the demo accounts' memberships were ended");
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
    // Whatever a crash left unmaterialised is recomputed before the first request; a failure is logged
    // and retried by the upkeep rather than keeping the server down.
    if let Err(e) = loops.materialize_pending(None).await {
        tracing::warn!(error = %e, "materialising pending segments failed; the upkeep will retry");
    }
    // Every server may run the upkeep; the manifest and the signals' fingerprints arbitrate.
    Upkeep::new(planning.clone(), loops.clone(), runner.clone(), access.clone(), store.clone())
        .spawn(std::time::Duration::from_secs(config.upkeep_seconds));
    if config.workers > 0 {
        slope_service::spawn_workers(runner.clone(), "serve", config.workers, std::time::Duration::from_secs(1));
    }
    // The live demo turns its loops by itself: simulated clinicians and a simulated operator, labelled
    // as such wherever they show. Never outside demo mode, where all traffic must be real.
    if config.demo && config.simulator {
        slope_service::Simulator::start(runner.clone(), loops.clone(), org, config.simulator_settings());
    } else if config.demo {
        tracing::info!("the traffic simulator is off (simulator = false)");
    }
    let app = router(
        Services { planning, loops, runner, access },
        RouterSettings {
            site_root: &site_root,
            addr,
            demo: config.demo,
            secure_cookies: config.secure_cookies,
            trust_forwarded_for: config.trust_forwarded_for,
        },
    );
    // Scripts and tests read this line to learn the port when it was chosen by the system.
    println!("slope listening on http://{addr}");
    tracing::info!(%addr, database = %redact(&config.database_url()), "listening");
    // The peer address is what sign-in attempts are counted by.
    axum::serve(listener, app.into_make_service_with_connect_info::<std::net::SocketAddr>())
        .with_graceful_shutdown(shutdown())
        .await
        .map_err(|e| e.to_string())?;
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
