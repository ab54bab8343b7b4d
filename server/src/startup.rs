//! What the server does when it starts, and the opening of the database and object store that every
//! command shares. `serve` opens and migrates the database, registers the shipped base model in every
//! organisation, seeds the demo (or retires its accounts outside demo mode), starts the upkeep, the job
//! workers and, in demo mode, the traffic simulator, and then serves until it is told to stop.

use std::time::Duration;

use slope_domain::{Actor, OrgId};
use slope_service::{
    Access, Annotations, Loops, Monitors, Notifier, NotifierSettings, Planning, Runner, SegmentStore, Services,
    Simulator, Upkeep, demo, spawn_workers, worker_id,
};
use slope_store::Store;
use tokio::net::TcpListener;

use crate::config::{Config, redact};
use crate::{DEFAULT_ORG, RouterSettings, router};

/// The configured database, migrated: every command opens it this way, so none works on an old schema.
pub async fn open_store(config: &Config) -> Result<Store, String> {
    let url = config.database_url();
    let store = Store::connect(&url).await.map_err(|e| format!("cannot open database {}: {e}", redact(&url)))?;
    store.migrate().await.map_err(|e| format!("migration failed: {e}"))?;
    tracing::info!(database = %redact(&url), "database is migrated");
    Ok(store)
}

/// The loop metrics service over the configured database and event store.
pub async fn open_loops(config: &Config) -> Result<(Store, Loops), String> {
    let store = open_store(config).await?;
    let segments = SegmentStore::open(&config.event_store()).map_err(|e| format!("event store: {e}"))?;
    Ok((store.clone(), Loops::new(store, segments).with_limits(config.ingest_limits())))
}

/// The runner service over the configured database and object store.
pub fn open_runner(config: &Config, store: Store, loops: Loops) -> Result<Runner, String> {
    let objects = SegmentStore::open(&config.event_store()).map_err(|e| format!("event store: {e}"))?;
    Ok(Runner::new(store, objects, loops, config.runner_cache(), config.job_lease()))
}

/// `slope serve`: starts everything the server runs and serves until Ctrl-C or SIGTERM.
pub async fn serve(config: Config) -> Result<(), String> {
    let (store, loops) = open_loops(&config).await?;
    let org = store.ensure_org(DEFAULT_ORG.0, DEFAULT_ORG.1).await.map_err(|e| e.to_string())?;
    let planning = Planning::new(store.clone());
    let access = Access::new(store.clone());
    let runner = open_runner(&config, store.clone(), loops.clone())?;
    register_base_model(&config, &store, &runner).await?;
    let annotations = Annotations::new(store.clone(), loops.clone(), runner.clone());
    let monitors = Monitors::new(store.clone(), loops.clone(), planning.clone());
    if config.demo {
        seed_demo(org, &planning, &loops, &access, &annotations, &monitors).await?;
    } else {
        retire_demo_accounts(org, &access).await?;
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
    if let Err(e) = loops.materialize_pending().await {
        tracing::warn!(error = %e, "materialising pending segments failed; the upkeep will retry");
    }
    // Every server may run the upkeep; the manifest, the signals' fingerprints and the monitors'
    // schedule claims arbitrate. Every server delivers the outbox too; leases arbitrate.
    let worker = worker_id("serve");
    Upkeep::new(planning.clone(), loops.clone(), runner.clone(), access.clone(), monitors.clone(), worker.clone())
        .spawn(Duration::from_secs(config.upkeep_seconds));
    let notifier_settings = NotifierSettings {
        retry_base_seconds: config.webhook_retry_seconds.clamp(1, 3600) as i64,
        ..NotifierSettings::default()
    };
    Notifier::new(store.clone(), notifier_settings, worker).spawn(Duration::from_secs(1));
    if config.workers > 0 {
        spawn_workers(runner.clone(), "serve", config.workers, Duration::from_secs(1));
    }
    // The live demo turns its loops by itself: simulated clinicians and a simulated operator, labelled
    // as such wherever they show. Never outside demo mode, where all traffic must be real.
    let simulator = Simulator::new();
    if config.demo && config.simulator {
        simulator.start(runner.clone(), loops.clone(), annotations.clone(), org, config.simulator_settings());
    } else if config.demo {
        tracing::info!("the traffic simulator is off (simulator = false)");
    }
    let (stop_sender, stop_receiver) = tokio::sync::watch::channel(false);
    let app = router(
        Services { planning, loops: loops.clone(), runner: runner.clone(), access, annotations, monitors, simulator },
        RouterSettings {
            site_root: &site_root,
            addr,
            demo: config.demo,
            transport: config.transport(),
            stopping: crate::Stopping(stop_receiver),
        },
    );
    // Scripts and tests read this line to learn the port when it was chosen by the system.
    println!("slope listening on http://{addr}");
    tracing::info!(%addr, database = %redact(&config.database_url()), "listening");
    if config.secure_cookies.is_none() && !addr.ip().is_loopback() {
        // A browser drops `Secure` cookies sent over plain HTTP, so signing in would silently fail.
        tracing::warn!(
            "reached by a host name other than localhost, Slope assumes HTTPS (Secure cookies, HSTS); \
             serve it over HTTPS, or set secure_cookies = false for plain HTTP on a trusted network"
        );
    }
    // The peer address is what sign-in attempts are counted by.
    axum::serve(listener, app.into_make_service_with_connect_info::<std::net::SocketAddr>())
        .with_graceful_shutdown(async move {
            shutdown().await;
            tracing::info!("shutting down: open event streams end, requests in flight finish");
            let _ = stop_sender.send(true);
        })
        .await
        .map_err(|e| e.to_string())?;
    store.close().await;
    tracing::info!("stopped");
    Ok(())
}

/// Every organisation gets the shipped base model, so that a loop can bootstrap its first champion from
/// it; an empty setting (`SLOPE_BASE_MODEL=`) turns this off. A model that cannot be registered is
/// logged and the server starts regardless.
async fn register_base_model(config: &Config, store: &Store, runner: &Runner) -> Result<(), String> {
    let Some(dir) = config.base_model.as_ref().filter(|d| d.join("model.safetensors").is_file()) else {
        return Ok(());
    };
    for org in store.list_orgs().await.map_err(|e| e.to_string())? {
        match runner.import_model(&Actor::system(org, "serve"), "base", dir, None).await {
            Ok(m) => tracing::info!(model = m.id, %org, dir = %dir.display(), "base model registered"),
            Err(e) => tracing::warn!(error = %e, dir = %dir.display(), "the base model could not be registered"),
        }
    }
    Ok(())
}

/// Demo mode: the demo organisation's plan and loops are seeded once (when it has no season yet), and
/// the demo accounts every time, whose passwords are logged because the sign-in page shows them anyway.
async fn seed_demo(
    org: OrgId,
    planning: &Planning,
    loops: &Loops,
    access: &Access,
    annotations: &Annotations,
    monitors: &Monitors,
) -> Result<(), String> {
    let today = chrono::Utc::now().date_naive();
    let system = Actor::system(org, "demo");
    if demo::seed(planning, &system, today).await.map_err(|e| format!("demo data: {e}"))? {
        demo::seed_loop(planning, loops, &system, today).await.map_err(|e| format!("demo loop: {e}"))?;
        demo::seed_headcounts(access, &system).await.map_err(|e| format!("demo headcounts: {e}"))?;
        tracing::info!("demo data seeded");
    }
    // The customers' value takes the better part of a minute to fit: the server answers meanwhile.
    demo::seed_customers_in_background(planning.clone(), loops.clone(), system.clone());
    demo::seed_accounts(access, planning, &system).await.map_err(|e| format!("demo accounts: {e}"))?;
    demo::seed_annotation(annotations, &system).await.map_err(|e| format!("demo annotation queues: {e}"))?;
    demo::seed_monitors(monitors, planning, loops, &system).await.map_err(|e| format!("demo monitors: {e}"))?;
    for account in &demo::DEMO_ACCOUNTS {
        tracing::info!(role = %account.role, email = account.email, password = account.password, "demo account");
    }
    Ok(())
}

/// Outside demo mode the demo accounts, whose passwords are public, must not work: a database that was
/// once served as a demo has their memberships ended.
async fn retire_demo_accounts(org: OrgId, access: &Access) -> Result<(), String> {
    let retired = demo::retire_accounts(access, &Actor::system(org, "serve"))
        .await
        .map_err(|e| format!("retiring demo accounts: {e}"))?;
    if retired > 0 {
        tracing::warn!(accounts = retired, "not in demo mode: the demo accounts' memberships were ended");
    }
    Ok(())
}

/// Resolves on Ctrl-C or, on Unix, SIGTERM, which is how a service manager or container stops the server.
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
