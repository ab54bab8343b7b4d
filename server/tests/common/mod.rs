//! What the black-box server tests share: a scratch folder per test, the real `slope` binary started on
//! a port the system picks, and replies checked by status and JSON shape.

// Each test file uses a different part of this module.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::Method;
use serde_json::{Value, json};

/// Generous, because tests start several servers at once on small machines.
pub const START_TIMEOUT: Duration = Duration::from_secs(60);
const LISTENING: &str = "slope listening on ";

/// A folder of its own for each test, removed at the end. It outlives the servers started on it, so
/// that a restarted server finds the database and the files its predecessor wrote.
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new(label: &str) -> Scratch {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or_default();
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("slope-{label}-{}-{n}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A running server. Dropping it kills the process without warning, which is also how tests simulate a
/// crash.
pub struct Server {
    pub base: String,
    /// A client whose requests carry `token`.
    pub client: reqwest::Client,
    /// An API token with every scope in the default organisation.
    pub token: String,
    child: Child,
    log: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            eprintln!("---- log of the server at {} ----\n{log}", self.base);
        }
    }
}

/// A finished request, with a label for assertion messages.
pub struct Reply {
    pub what: String,
    pub status: u16,
    pub text: String,
}

impl Server {
    /// Starts a server on the database and stores in `dir`, with `env` added to a clean environment.
    pub fn start(dir: &Path, env: &[(&str, &str)]) -> Server {
        static STARTS: AtomicUsize = AtomicUsize::new(0);
        let log = dir.join(format!("server-{}.log", STARTS.fetch_add(1, Ordering::Relaxed)));
        let stderr = std::fs::File::create(&log).unwrap_or_else(|e| panic!("cannot create {}: {e}", log.display()));
        let mut command = Command::new(env!("CARGO_BIN_EXE_slope"));
        command
            .args(["serve", "--bind", "127.0.0.1:0", "--data-dir"])
            .arg(dir)
            .arg("--site-root")
            .arg(dir)
            .arg("--event-store")
            .arg(dir.join("events"));
        // A developer's own `slope.toml` and environment must not change what the tests see.
        command.current_dir(dir);
        for (var, _) in std::env::vars() {
            if var.starts_with("SLOPE_") || var == "DATABASE_URL" {
                command.env_remove(var);
            }
        }
        for (k, v) in env {
            command.env(k, v);
        }
        command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(stderr);
        let mut child = command.spawn().unwrap_or_else(|e| panic!("cannot start {}: {e}", env!("CARGO_BIN_EXE_slope")));
        let stdout = child.stdout.take().expect("stdout is piped");
        // The reader keeps draining stdout after the first line, so that the server never blocks on a
        // full pipe; it ends with the process.
        let (first_line, receive) = mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines().map_while(Result::ok);
            if let Some(line) = lines.next() {
                let _ = first_line.send(line);
            }
            lines.for_each(drop);
        });
        let client =
            reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(120)).build().expect("HTTP client");
        let mut server = Server { base: String::new(), client, child, log, token: String::new() };
        let line = receive.recv_timeout(START_TIMEOUT).unwrap_or_else(|e| panic!("no start-up line: {e}"));
        server.base = line
            .strip_prefix(LISTENING)
            .unwrap_or_else(|| panic!("the first line on stdout should be {LISTENING:?}…, not {line:?}"))
            .trim_end_matches('/')
            .to_owned();
        // Every request of a test is a script's: it carries a token with every scope, made the way an
        // operator makes one. Tests of access itself build their own clients.
        server.token = create_token(dir, env, "read,write,ingest");
        let mut headers = reqwest::header::HeaderMap::new();
        let bearer = format!("Bearer {}", server.token);
        headers.insert(reqwest::header::AUTHORIZATION, bearer.parse().expect("a token is a valid header"));
        server.client = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(120))
            .default_headers(headers)
            .build()
            .expect("HTTP client");
        server
    }

    /// The most memory the process has held so far (`VmHWM`), in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).expect("the server's status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmHWM in /proc/PID/status")
    }

    /// Asks the process to shut down (SIGTERM, as a service manager would) and waits up to `within`
    /// for it to exit; `None` when it is still running then.
    pub fn terminate(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let sent = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        assert!(sent.is_ok_and(|s| s.success()), "kill -TERM failed");
        let started = std::time::Instant::now();
        while started.elapsed() < within {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    /// Kills the process at once (SIGKILL), as a crash or an out-of-memory kill would.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub async fn send(&self, request: reqwest::RequestBuilder, what: String) -> Reply {
        let response = request.send().await.unwrap_or_else(|e| panic!("{what}: {e}"));
        let status = response.status().as_u16();
        let text = response.text().await.unwrap_or_else(|e| panic!("{what}: cannot read the body: {e}"));
        // No input a client can send should crash a handler, including the requests a test only probes.
        assert!(status < 500, "{what}: the server failed with {status}: {text}");
        Reply { what, status, text }
    }

    pub async fn call(&self, method: Method, path: &str, body: Option<&Value>) -> Reply {
        let mut request = self.client.request(method.clone(), format!("{}{path}", self.base));
        if let Some(body) = body {
            request = request.json(body);
        }
        self.send(request, format!("{method} {path}")).await
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.call(Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> Reply {
        self.call(Method::POST, path, Some(body)).await
    }

    pub async fn put(&self, path: &str, body: &Value) -> Reply {
        self.call(Method::PUT, path, Some(body)).await
    }

    /// Posts a batch of events to a loop with the given headers, the body sent as it is.
    pub async fn ingest(&self, loop_key: &str, headers: &[(&str, &str)], body: Vec<u8>) -> Reply {
        let path = format!("/api/v1/loops/{loop_key}/events");
        let mut request = self.client.post(format!("{}{path}", self.base)).body(body);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        self.send(request, format!("POST {path} with {headers:?}")).await
    }

    /// Posts a raw body with a content type.
    pub async fn post_raw(&self, path: &str, content_type: &str, body: Vec<u8>) -> Reply {
        let request = self.client.post(format!("{}{path}", self.base)).header("content-type", content_type).body(body);
        self.send(request, format!("POST {path} ({content_type})")).await
    }
}

impl Reply {
    /// Asserts the status and returns the JSON body.
    #[track_caller]
    pub fn expect(self, status: u16) -> Value {
        assert_eq!(self.status, status, "{}: unexpected status; body: {}", self.what, self.text);
        serde_json::from_str(&self.text)
            .unwrap_or_else(|e| panic!("{}: the body is not JSON ({e}): {}", self.what, self.text))
    }

    /// Asserts an error answer with this status and code, and returns its `error` object.
    #[track_caller]
    pub fn expect_error(self, status: u16, code: &str) -> Value {
        let what = self.what.clone();
        let body = self.expect(status);
        assert_eq!(body["error"]["code"], code, "{what}: {body}");
        body
    }

    /// Asserts a 422 whose field errors belong to exactly `fields`.
    #[track_caller]
    pub fn expect_invalid(self, fields: &[&str]) -> Value {
        let what = self.what.clone();
        let body = self.expect(422);
        assert_eq!(body["error"]["code"], "invalid", "{what}: {body}");
        let messages = body["error"]["fields"].as_object().unwrap_or_else(|| panic!("{what}: no fields in {body}"));
        let mut got: Vec<&str> = messages.keys().map(String::as_str).collect();
        let mut want = fields.to_vec();
        got.sort_unstable();
        want.sort_unstable();
        assert_eq!(got, want, "{what}: fields with errors: {body}");
        body["error"].clone()
    }

    /// Asserts a refused batch, and returns its row errors as (row, field) pairs in the order given.
    #[track_caller]
    pub fn expect_invalid_rows(self, total: u64) -> Vec<(u64, String)> {
        let what = self.what.clone();
        let body = self.expect(422);
        let error = &body["error"];
        assert_eq!(error["code"], "invalid_rows", "{what}: {body}");
        assert_eq!(error["total"], total, "{what}: {body}");
        assert!(error["message"].as_str().is_some_and(|m| !m.is_empty()), "{what}: no message in {body}");
        let rows = error["rows"].as_array().unwrap_or_else(|| panic!("{what}: no rows in {body}"));
        rows.iter()
            .map(|r| {
                assert!(r["message"].as_str().is_some_and(|m| !m.is_empty()), "{what}: a row without a message: {r}");
                (r["row"].as_u64().expect("a row number"), r["field"].as_str().expect("a field").to_owned())
            })
            .collect()
    }
}

pub fn ndjson(rows: &[Value]) -> Vec<u8> {
    rows.iter().map(|e| format!("{e}\n")).collect::<String>().into_bytes()
}

/// Creates an API token in the default organisation of the database in `dir` (or named by
/// `DATABASE_URL` in `env`) with `slope token create`, and returns its secret.
pub fn create_token(dir: &Path, env: &[(&str, &str)], scopes: &str) -> String {
    let mut command = Command::new(env!("CARGO_BIN_EXE_slope"));
    command.args(["token", "create", "--name", "tests", "--scopes", scopes, "--data-dir"]).arg(dir);
    command.current_dir(dir);
    for (var, _) in std::env::vars() {
        if var.starts_with("SLOPE_") || var == "DATABASE_URL" {
            command.env_remove(var);
        }
    }
    for (k, v) in env {
        command.env(k, v);
    }
    let out = command.output().unwrap_or_else(|e| panic!("cannot run slope token create: {e}"));
    assert!(out.status.success(), "slope token create failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("a token is text").trim().to_owned()
}

/// An admin's browser-like client for `server` (whose database is in `dir`): the admin is created with
/// `slope admin create`, signs in through the sign-in form, and every request carries the session cookie
/// and this server's `Origin`, as the server's own pages do. For the routes tokens may not use (members,
/// units, tokens).
pub async fn admin_client(server: &Server, dir: &Path) -> reqwest::Client {
    const EMAIL: &str = "admin@tests.example";
    const PASSWORD: &str = "a long enough admin password";
    let mut command = Command::new(env!("CARGO_BIN_EXE_slope"));
    command.args(["admin", "create", "--email", EMAIL, "--data-dir"]).arg(dir).current_dir(dir);
    for (var, _) in std::env::vars() {
        if var.starts_with("SLOPE_") || var == "DATABASE_URL" {
            command.env_remove(var);
        }
    }
    command.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = command.spawn().unwrap_or_else(|e| panic!("cannot run slope admin create: {e}"));
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("stdin is piped");
        writeln!(stdin, "{PASSWORD}").expect("the password is written");
    }
    let out = child.wait_with_output().expect("slope admin create ends");
    assert!(out.status.success(), "slope admin create failed: {}", String::from_utf8_lossy(&out.stderr));

    let plain =
        reqwest::Client::builder().no_proxy().redirect(reqwest::redirect::Policy::none()).build().expect("HTTP client");
    let form = [("email", EMAIL), ("password", PASSWORD), ("org", ""), ("next", "/")];
    let response = plain
        .post(format!("{}/auth/login", server.base))
        .header(reqwest::header::ORIGIN, &server.base)
        .form(&form)
        .send()
        .await
        .expect("the sign-in form answers");
    assert_eq!(response.status().as_u16(), 303, "the admin signs in");
    let cookie = response
        .headers()
        .get(reqwest::header::SET_COOKIE)
        .and_then(|c| c.to_str().ok())
        .and_then(|c| c.split(';').next())
        .expect("a session cookie")
        .to_owned();
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(reqwest::header::COOKIE, cookie.parse().expect("a cookie is a valid header"));
    headers.insert(reqwest::header::ORIGIN, server.base.parse().expect("the base URL is a valid header"));
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(120))
        .default_headers(headers)
        .build()
        .expect("HTTP client")
}

/// A database of its own on the PostgreSQL server at `SLOPE_TEST_POSTGRES_URL`, dropped with the value.
pub struct PgDatabase {
    admin_url: String,
    name: String,
    pub url: String,
}

impl PgDatabase {
    /// `label` names the test file in the database's name, so a leftover database tells whose it is.
    pub async fn create(admin_url: &str, label: &str) -> PgDatabase {
        use sqlx::{Connection, Executor};
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or_default();
        let name = format!("slope_{label}_{}_{nanos}", std::process::id());
        let mut admin = sqlx::PgConnection::connect(admin_url)
            .await
            .unwrap_or_else(|e| panic!("cannot connect to SLOPE_TEST_POSTGRES_URL: {e}"));
        admin.execute(format!("CREATE DATABASE \"{name}\"").as_str()).await.expect("CREATE DATABASE");
        let _ = admin.close().await;
        PgDatabase { url: database_url(admin_url, &name), admin_url: admin_url.to_owned(), name }
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        use sqlx::{Connection, Executor};
        let (admin_url, name) = (self.admin_url.clone(), self.name.clone());
        // Drop cannot await, and the test's runtime may be unwinding; a runtime of its own on another
        // thread drops the database either way.
        let dropped = std::thread::spawn(move || -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            runtime.block_on(async {
                let mut admin = sqlx::PgConnection::connect(&admin_url).await?;
                admin.execute(format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)").as_str()).await?;
                admin.close().await?;
                Ok(())
            })
        })
        .join();
        match dropped {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("cannot drop the test database {}: {e}", self.name),
            Err(_) => eprintln!("dropping the test database {} panicked", self.name),
        }
    }
}

/// The admin URL with its database replaced by `name`, keeping credentials, host and parameters.
pub fn database_url(admin_url: &str, name: &str) -> String {
    let (base, query) = match admin_url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (admin_url, None),
    };
    let authority = base.find("://").map_or(0, |i| i + 3);
    let server = match base[authority..].find('/') {
        Some(slash) => &base[..authority + slash],
        None => base,
    };
    match query {
        Some(query) => format!("{server}/{name}?{query}"),
        None => format!("{server}/{name}"),
    }
}

/// Creates a season (1 Jan – 30 Jun 2026) with an objective and a key result fed by `metric` (increase
/// from 0 to 1), as a planner would; returns the season's and the key result's ids.
pub async fn key_result_fed_by(server: &Server, metric: &str) -> (i64, i64) {
    season_with_key_result(server, Some(metric)).await
}

/// The same season, objective and key result, fed by `metric` when one is given.
pub async fn season_with_key_result(server: &Server, metric: Option<&str>) -> (i64, i64) {
    let season = server
        .post(
            "/api/v1/seasons",
            &json!({
                "name": "Loops 2026",
                "thesis": "Agents replace forms",
                "problems": ["Clinicians type too much"],
                "winning": "Half of all notes drafted by agents",
                "starts_on": "2026-01-01",
                "ends_on": "2026-06-30",
                "slope_target": 0.2,
            }),
        )
        .await
        .expect(201);
    let objective = server
        .post(
            &format!("/api/v1/seasons/{}/objectives", season["id"]),
            &json!({ "quarter": "2026-Q1", "title": "Clinicians trust the drafts", "commitment": "committed" }),
        )
        .await
        .expect(201);
    let key_result = server
        .post(
            &format!("/api/v1/objectives/{}/key-results", objective["id"]),
            &json!({ "title": "Drafts accepted", "kind": "increase-to", "start": 0, "target": 1, "metric": metric.unwrap_or("") }),
        )
        .await
        .expect(201);
    let id = |v: &Value| v["id"].as_i64().expect("ids are numbers");
    (id(&season), id(&key_result))
}
