//! Configuration: built-in defaults, then `slope.toml`, then `DATABASE_URL`, then `SLOPE_*` environment
//! variables, then command-line flags; each later source overrides the earlier ones.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Human,
    Json,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Config {
    /// Address the HTTP server listens on.
    pub bind: SocketAddr,
    /// `sqlite://FILE` or `postgres://…`; when unset, a SQLite file in `data_dir`.
    pub database_url: Option<String>,
    /// Where the embedded database and other local state live.
    pub data_dir: PathBuf,
    /// Where event segments are stored: `file:///DIR` or a path; when unset, `segments/` in `data_dir`.
    pub event_store: Option<String>,
    /// The built site (`pkg/` with the browser bundle and stylesheet).
    pub site_root: PathBuf,
    /// Seed a demo organisation when the database is empty.
    pub demo: bool,
    pub log_format: LogFormat,
    /// Runner jobs this server runs at once (0: none; then run `slope worker` elsewhere).
    pub workers: usize,
    /// How long a claimed job stays a worker's without a heartbeat before another worker may resume it.
    pub job_lease_seconds: u64,
    /// A model folder registered at start-up as `base` when no model has that name (the shipped
    /// pre-trained byte model).
    pub base_model: Option<PathBuf>,
    /// Seconds between upkeep rounds (materialising, compaction, turning served suggestions into events).
    pub upkeep_seconds: u64,
    /// The wait before a failed webhook delivery's second attempt; each later one waits twice as long
    /// (at most an hour).
    pub webhook_retry_seconds: u64,
    /// Whether users reach Slope over HTTPS (also behind a TLS-terminating proxy): session cookies are
    /// then `Secure` with the `__Host-` prefix, pages send HSTS, and cross-site checks expect `https`
    /// origins. Unset means yes for every host name but the loopback ones (`localhost`, `127.0.0.1`),
    /// so a plain-HTTP server reached from another machine needs `false` said explicitly.
    pub secure_cookies: Option<bool>,
    /// Believe `X-Forwarded-For` (for the client address that sign-in attempts are counted by) and
    /// `X-Forwarded-Proto`. Turn on only behind reverse proxies that set them, or clients choose both.
    pub trust_forwarded_for: bool,
    /// How many trusted proxies append to `X-Forwarded-For`; the client address is the entry that many
    /// places from the right.
    pub forwarded_hops: usize,
    /// In demo mode, run the traffic simulator: simulated clinicians using the demo's loops and an
    /// autopilot that fine-tunes, tests and promotes models. Ignored outside demo mode.
    pub simulator: bool,
    /// Suggestions the simulated clinicians ask for per minute, over all loops.
    pub simulator_rate: f64,
    /// Labels the simulated expert annotators give per minute, over all the demo's queues.
    pub simulator_annotation_rate: f64,
    /// The largest share of time the simulator's own training and eval jobs may take (the cap on the heavy
    /// part of its CPU use; its traffic is capped by `simulator_rate`).
    pub simulator_duty: f64,
    /// New events a loop needs since its last dataset before the simulator trains the next challenger.
    pub simulator_min_events: i64,
    /// Outcomes each arm of a simulated A/B test collects before the promotion gate decides.
    pub simulator_arm_outcomes: u64,
    /// The longest a simulated A/B test runs, however few outcomes it has.
    pub simulator_experiment_seconds: u64,
    /// Optimizer steps of each simulated fine-tuning job.
    pub simulator_train_steps: usize,
    /// Sequences per step of each simulated fine-tuning job.
    pub simulator_batch_size: usize,
    /// Rows one batch of events may hold, checked before any row is built.
    pub ingest_max_rows: usize,
    /// Bytes of text one batch of events may decode to.
    pub ingest_max_text_bytes: usize,
    /// Batches this server takes in at once; more are answered 429 with `Retry-After`.
    pub ingest_concurrency: usize,
    /// Batches one organisation has in flight on this server at once.
    pub ingest_concurrency_per_org: usize,
    /// Days one batch's events may span, first to last.
    pub ingest_max_span_days: i64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            bind: SocketAddr::from(([127, 0, 0, 1], 3000)),
            database_url: None,
            data_dir: PathBuf::from("data"),
            event_store: None,
            site_root: PathBuf::from("target/site"),
            demo: false,
            log_format: LogFormat::Human,
            workers: 1,
            job_lease_seconds: 30,
            base_model: Some(PathBuf::from("models/base")),
            upkeep_seconds: 60,
            webhook_retry_seconds: 30,
            secure_cookies: None,
            trust_forwarded_for: false,
            forwarded_hops: 1,
            simulator: true,
            simulator_rate: 30.0,
            simulator_annotation_rate: 20.0,
            simulator_duty: 0.25,
            simulator_min_events: 100,
            simulator_arm_outcomes: 30,
            simulator_experiment_seconds: 600,
            simulator_train_steps: 60,
            simulator_batch_size: 8,
            ingest_max_rows: slope_service::IngestLimits::default().max_rows,
            ingest_max_text_bytes: slope_service::IngestLimits::default().max_text_bytes,
            ingest_concurrency: slope_service::IngestLimits::default().max_concurrent,
            ingest_concurrency_per_org: slope_service::IngestLimits::default().max_concurrent_per_org,
            ingest_max_span_days: slope_service::IngestLimits::default().max_span_days,
        }
    }
}

/// Values given on the command line; `None` leaves the configured value alone.
#[derive(Debug, Default, Serialize)]
pub struct Overrides {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bind: Option<SocketAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_store: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub site_root: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub demo: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_format: Option<LogFormat>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workers: Option<usize>,
}

impl Config {
    /// Loads the configuration. `file` is the config file to read; a missing default `slope.toml` is
    /// fine, a missing file named explicitly is an error.
    pub fn load(file: Option<&Path>, overrides: &Overrides) -> Result<Config, String> {
        let path = file.map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("slope.toml"));
        if file.is_some() && !path.exists() {
            return Err(format!("config file {} does not exist", path.display()));
        }
        Figment::from(Serialized::defaults(Config::default()))
            .merge(Toml::file(&path))
            .merge(Env::raw().only(&["DATABASE_URL"]).map(|_| "database_url".into()))
            .merge(Env::prefixed("SLOPE_").only(&[
                "BIND",
                "DATABASE_URL",
                "DATA_DIR",
                "EVENT_STORE",
                "SITE_ROOT",
                "DEMO",
                "LOG_FORMAT",
                "WORKERS",
                "JOB_LEASE_SECONDS",
                "BASE_MODEL",
                "UPKEEP_SECONDS",
                "SECURE_COOKIES",
                "TRUST_FORWARDED_FOR",
                "FORWARDED_HOPS",
                "SIMULATOR",
                "SIMULATOR_RATE",
                "SIMULATOR_DUTY",
                "SIMULATOR_MIN_EVENTS",
                "SIMULATOR_ARM_OUTCOMES",
                "SIMULATOR_EXPERIMENT_SECONDS",
                "SIMULATOR_TRAIN_STEPS",
                "SIMULATOR_BATCH_SIZE",
                "SIMULATOR_ANNOTATION_RATE",
                "INGEST_MAX_ROWS",
                "INGEST_MAX_TEXT_BYTES",
                "INGEST_CONCURRENCY",
                "INGEST_CONCURRENCY_PER_ORG",
                "INGEST_MAX_SPAN_DAYS",
            ]))
            .merge(Serialized::defaults(overrides))
            .extract()
            .map_err(|e| format!("invalid configuration: {e}"))
    }

    pub fn event_store(&self) -> String {
        match &self.event_store {
            Some(url) if !url.trim().is_empty() => url.clone(),
            _ => self.data_dir.join("segments").display().to_string(),
        }
    }

    /// This process's folder for local copies of models and checkpoints.
    pub fn runner_cache(&self) -> PathBuf {
        self.data_dir.join("runner-cache")
    }

    pub fn ingest_limits(&self) -> slope_service::IngestLimits {
        slope_service::IngestLimits {
            max_rows: self.ingest_max_rows.max(1),
            max_text_bytes: self.ingest_max_text_bytes.max(1),
            max_concurrent: self.ingest_concurrency.max(1),
            max_concurrent_per_org: self.ingest_concurrency_per_org.max(1),
            max_span_days: self.ingest_max_span_days.max(1),
        }
    }

    pub fn transport(&self) -> crate::security::Transport {
        crate::security::Transport {
            tls: self.secure_cookies,
            trust_forwarded: self.trust_forwarded_for,
            forwarded_hops: self.forwarded_hops.max(1),
        }
    }

    pub fn job_lease(&self) -> chrono::Duration {
        chrono::Duration::seconds(self.job_lease_seconds.clamp(2, 3600) as i64)
    }

    /// The simulator's settings, made safe: a setting outside its range takes the nearest sensible value
    /// rather than stopping the server or the simulator.
    pub fn simulator_settings(&self) -> slope_service::SimulatorSettings {
        let finite = |v: f64, default: f64| if v.is_finite() { v } else { default };
        slope_service::SimulatorSettings {
            suggestions_per_minute: finite(self.simulator_rate, 30.0).clamp(0.0, 6000.0),
            annotations_per_minute: finite(self.simulator_annotation_rate, 20.0).clamp(0.0, 6000.0),
            duty: finite(self.simulator_duty, 0.25).clamp(0.01, 1.0),
            min_new_events: self.simulator_min_events.max(1),
            arm_outcomes: self.simulator_arm_outcomes.max(1),
            experiment_limit: std::time::Duration::from_secs(self.simulator_experiment_seconds.clamp(1, 7 * 24 * 3600)),
            train_steps: self.simulator_train_steps.clamp(1, 100_000),
            batch_size: self.simulator_batch_size.clamp(1, 256),
            workers: self.workers,
            ..Default::default()
        }
    }

    pub fn database_url(&self) -> String {
        match &self.database_url {
            Some(url) if !url.trim().is_empty() => url.clone(),
            _ => format!("sqlite://{}", self.data_dir.join("slope.db").display()),
        }
    }
}

/// Hides the password of a database URL for logs.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let creds = &url[scheme + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(redact("postgres://slope:s3cret@db:5432/slope"), "postgres://slope:***@db:5432/slope");
        assert_eq!(redact("postgres://postgres@127.0.0.1/x"), "postgres://postgres@127.0.0.1/x");
        assert_eq!(redact("sqlite://data/slope.db"), "sqlite://data/slope.db");
    }

    #[test]
    fn the_default_database_is_a_file_in_the_data_dir() {
        let config = Config { data_dir: "var/lib/slope".into(), ..Config::default() };
        assert_eq!(config.database_url(), "sqlite://var/lib/slope/slope.db");
    }

    // figment's test jail fixes the closure's error type; its size is not ours to choose.
    #[allow(clippy::result_large_err)]
    #[test]
    fn flags_override_files_and_environment() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("slope.toml", "bind = \"0.0.0.0:8080\"\ndemo = true\n")?;
            jail.set_env("SLOPE_DATA_DIR", "/srv/slope");
            let config = Config::load(None, &Overrides { demo: Some(false), ..Default::default() }).unwrap();
            assert_eq!(config.bind.to_string(), "0.0.0.0:8080");
            assert_eq!(config.data_dir, PathBuf::from("/srv/slope"));
            assert!(!config.demo);
            jail.set_env("DATABASE_URL", "postgres://a@b/c");
            assert_eq!(Config::load(None, &Overrides::default()).unwrap().database_url(), "postgres://a@b/c");
            jail.set_env("SLOPE_DATABASE_URL", "postgres://x@y/z");
            assert_eq!(Config::load(None, &Overrides::default()).unwrap().database_url(), "postgres://x@y/z");
            assert!(Config::load(Some(Path::new("missing.toml")), &Overrides::default()).is_err());
            jail.set_env("SLOPE_SIMULATOR", "false");
            jail.set_env("SLOPE_SIMULATOR_DUTY", "0.5");
            let config = Config::load(None, &Overrides::default()).unwrap();
            assert!(!config.simulator);
            assert_eq!(config.simulator_settings().duty, 0.5);
            Ok(())
        });
    }
}
