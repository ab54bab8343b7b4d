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
    /// Mark session cookies `Secure`. Turn on whenever users reach Slope over HTTPS (also behind a
    /// TLS-terminating proxy); browsers then never send the cookie over plain HTTP.
    pub secure_cookies: bool,
    /// Count sign-in attempts by the first address of `X-Forwarded-For` rather than the peer's. Turn on
    /// only behind a reverse proxy that sets that header, or every user shares the proxy's address.
    pub trust_forwarded_for: bool,
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
            secure_cookies: false,
            trust_forwarded_for: false,
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

    pub fn job_lease(&self) -> chrono::Duration {
        chrono::Duration::seconds(self.job_lease_seconds.clamp(2, 3600) as i64)
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
            Ok(())
        });
    }
}
