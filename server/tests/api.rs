//! Black-box tests of the JSON API and the server-rendered pages.
//!
//! Every test starts the real `slope` binary on a port the system picks, with a database of its own, and
//! talks to it over HTTP only. That covers what in-process router tests cannot: argument parsing,
//! configuration, migrations on a fresh database, the start-up line that scripts rely on, and the bytes a
//! client actually receives.
//!
//! The scenarios take the year their seasons live in, because seasons of one organisation never overlap:
//! that lets the PostgreSQL test run several scenarios one after another against a single server.

mod common;

use common::{PgDatabase, database_url};

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chrono::{DateTime, SecondsFormat, Utc};
use reqwest::Method;
use reqwest::header::CONTENT_TYPE;
use serde_json::{Map, Value, json};

/// How long a server may take to print its start-up line; generous because tests start several servers
/// at once on small CI machines.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// The line the server prints on stdout once it accepts connections.
const LISTENING: &str = "slope listening on ";

// ---- the server under test ---------------------------------------------------------------------

/// The server's process and its folder. Dropping it kills the process, so that no test leaves a server
/// behind, even one whose assertion failed half-way.
struct Process {
    child: Child,
    dir: PathBuf,
    log: Arc<Mutex<String>>,
    readers: Vec<JoinHandle<()>>,
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // The pipes close with the process, so the readers finish and the log is complete.
        for reader in self.readers.drain(..) {
            let _ = reader.join();
        }
        if std::thread::panicking() {
            eprintln!("---- log of the server at {} ----\n{}", self.dir.display(), lock(&self.log));
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A running server and a client for it.
struct Server {
    base: String,
    client: reqwest::Client,
    /// Every request answered with a 5xx. No input a client can send should crash a handler, so each test
    /// ends by asserting that this is empty, including for requests whose status it did not check.
    server_errors: Mutex<Vec<String>>,
    // Declared last so that it is dropped last: the server is killed only after the client is gone.
    _process: Process,
}

/// A finished request: its status, content type and body, with a label for assertion messages.
struct Reply {
    what: String,
    status: u16,
    content_type: String,
    text: String,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panicking test thread may poison the log; the log is still worth reading.
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// A folder of its own for each server, under the target folder that Cargo provides for test scratch.
fn fresh_dir() -> PathBuf {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or_default();
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("slope-api-{}-{n}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
    dir
}

impl Server {
    /// Starts a server on a fresh SQLite database.
    fn start() -> Server {
        Server::start_with(None)
    }

    fn start_with(database_url: Option<&str>) -> Server {
        let dir = fresh_dir();
        let mut command = Command::new(env!("CARGO_BIN_EXE_slope"));
        command.args(["serve", "--bind", "127.0.0.1:0", "--data-dir"]).arg(&dir).arg("--site-root").arg(&dir);
        if let Some(url) = database_url {
            command.arg("--database-url").arg(url);
        }
        // The server also reads `slope.toml` from its working folder and settings from the environment;
        // both are cleared so that a developer's own setup cannot change what the tests see.
        command.current_dir(&dir);
        for var in [
            "DATABASE_URL",
            "SLOPE_CONFIG",
            "SLOPE_BIND",
            "SLOPE_DATABASE_URL",
            "SLOPE_DATA_DIR",
            "SLOPE_SITE_ROOT",
            "SLOPE_DEMO",
            "SLOPE_LOG_FORMAT",
        ] {
            command.env_remove(var);
        }
        command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = command.spawn().unwrap_or_else(|e| panic!("cannot start {}: {e}", env!("CARGO_BIN_EXE_slope")));
        let stdout = child.stdout.take().expect("stdout is piped");
        let stderr = child.stderr.take().expect("stderr is piped");
        let log = Arc::new(Mutex::new(String::new()));
        let mut process = Process { child, dir, log: Arc::clone(&log), readers: vec![] };

        // The log is kept for failure reports; reading it also keeps the server from blocking on a full
        // pipe, as every request writes a log line.
        process.readers.push(std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut log = lock(&log);
                log.push_str(&line);
                log.push('\n');
            }
        }));
        let (first_line, receive) = mpsc::channel();
        process.readers.push(std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines().map_while(Result::ok);
            if let Some(line) = lines.next() {
                let _ = first_line.send(line);
            }
            lines.for_each(drop);
        }));

        // Blocking is fine here: the test's runtime has nothing else to run until the server is up.
        let line = match receive.recv_timeout(START_TIMEOUT) {
            Ok(line) => line,
            Err(RecvTimeoutError::Timeout) => panic!("the server printed nothing within {START_TIMEOUT:?}"),
            Err(RecvTimeoutError::Disconnected) => {
                let status = process.child.wait().map(|s| s.to_string()).unwrap_or_else(|e| e.to_string());
                panic!("the server exited before printing its address ({status})")
            }
        };
        let base = line
            .strip_prefix(LISTENING)
            .unwrap_or_else(|| panic!("the first line on stdout should be {LISTENING:?}…, not {line:?}"))
            .trim_end_matches('/')
            .to_owned();
        assert!(base.starts_with("http://127.0.0.1:"), "the server bound elsewhere: {base}");
        assert!(!base.ends_with(":0"), "the server printed the requested port, not the one it got: {base}");

        // Requests carry a token with every scope, made the way an operator makes one.
        let env: Vec<(&str, &str)> = database_url.map(|url| ("DATABASE_URL", url)).into_iter().collect();
        let token = common::create_token(&process.dir, &env, "read,write,ingest");
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(reqwest::header::AUTHORIZATION, format!("Bearer {token}").parse().expect("a valid header"));
        // The proxy settings of the environment must not route requests for 127.0.0.1 elsewhere.
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(30))
            .default_headers(headers)
            .build()
            .expect("HTTP client");
        Server { base, client, server_errors: Mutex::new(vec![]), _process: process }
    }

    async fn send(&self, request: reqwest::RequestBuilder, what: String) -> Reply {
        let response = request.send().await.unwrap_or_else(|e| panic!("{what}: {e}"));
        let status = response.status().as_u16();
        let content_type =
            response.headers().get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
        let text = response.text().await.unwrap_or_else(|e| panic!("{what}: cannot read the body: {e}"));
        if status >= 500 {
            lock(&self.server_errors).push(format!("{what} → {status}: {text}"));
        }
        Reply { what, status, content_type, text }
    }

    async fn call(&self, method: Method, path: &str, body: Option<&Value>) -> Reply {
        let mut request = self.client.request(method.clone(), format!("{}{path}", self.base));
        if let Some(body) = body {
            request = request.json(body);
        }
        self.send(request, format!("{method} {path}")).await
    }

    /// Sends a body as it is, for the requests a well-behaved client would never make.
    async fn call_raw(&self, method: Method, path: &str, content_type: &str, body: &'static str) -> Reply {
        let request = self
            .client
            .request(method.clone(), format!("{}{path}", self.base))
            .header(CONTENT_TYPE, content_type)
            .body(body);
        self.send(request, format!("{method} {path} with {body:?}")).await
    }

    async fn get(&self, path: &str) -> Reply {
        self.call(Method::GET, path, None).await
    }

    async fn post(&self, path: &str, body: &Value) -> Reply {
        self.call(Method::POST, path, Some(body)).await
    }

    async fn put(&self, path: &str, body: &Value) -> Reply {
        self.call(Method::PUT, path, Some(body)).await
    }

    /// Creates an entity and returns it as the server stored it.
    async fn create(&self, path: &str, body: &Value) -> Value {
        self.post(path, body).await.expect(201)
    }

    fn assert_no_server_errors(&self) {
        let errors = lock(&self.server_errors);
        assert!(errors.is_empty(), "requests that crashed the server:\n{}", errors.join("\n"));
    }
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_str(&self.text)
            .unwrap_or_else(|e| panic!("{}: the body is not JSON ({e}): {}", self.what, self.text))
    }

    /// Asserts the status and returns the JSON body.
    #[track_caller]
    fn expect(self, status: u16) -> Value {
        assert_eq!(self.status, status, "{}: unexpected status; body: {}", self.what, self.text);
        assert!(
            self.content_type.starts_with("application/json"),
            "{}: JSON was expected, the content type is {:?}",
            self.what,
            self.content_type
        );
        self.json()
    }

    /// Asserts an error of the API's shape with this status and code, and returns its `error` object.
    #[track_caller]
    fn expect_error(self, status: u16, code: &str) -> Value {
        assert!(self.status < 500, "{}: the server failed with {}: {}", self.what, self.status, self.text);
        let what = self.what.clone();
        let body = self.expect(status);
        let error = &body["error"];
        assert_eq!(error["code"], code, "{what}: {body}");
        assert!(error["message"].as_str().is_some_and(|m| !m.is_empty()), "{what}: no message in {body}");
        error.clone()
    }

    /// Asserts a 422 whose messages belong to exactly `fields`, and returns the messages by field.
    #[track_caller]
    fn expect_invalid(self, fields: &[&str]) -> Map<String, Value> {
        let what = self.what.clone();
        let error = self.expect_error(422, "invalid");
        let messages = error["fields"].as_object().unwrap_or_else(|| panic!("{what}: no `fields` in {error}")).clone();
        let mut got: Vec<&str> = messages.keys().map(String::as_str).collect();
        let mut want = fields.to_vec();
        got.sort_unstable();
        want.sort_unstable();
        assert_eq!(got, want, "{what}: fields with errors: {error}");
        for (field, list) in &messages {
            let list = list.as_array().unwrap_or_else(|| panic!("{what}: {field} should list messages: {error}"));
            assert!(
                !list.is_empty() && list.iter().all(|m| m.as_str().is_some_and(|m| !m.is_empty())),
                "{what}: {field} should have non-empty messages: {error}"
            );
        }
        messages
    }

    /// Asserts an HTML page with this status and returns its text.
    #[track_caller]
    fn expect_page(self, status: u16) -> String {
        assert_eq!(self.status, status, "{}: unexpected status; body: {}", self.what, self.text);
        assert!(self.content_type.starts_with("text/html"), "{}: content type {:?}", self.what, self.content_type);
        self.text
    }
}

/// The messages of one field joined, to search them for a phrase.
fn messages(fields: &Map<String, Value>, field: &str) -> String {
    fields[field]
        .as_array()
        .map(|l| l.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(" | "))
        .unwrap_or_default()
}

// ---- input and output helpers ------------------------------------------------------------------

fn id_of(entity: &Value) -> i64 {
    entity["id"].as_i64().unwrap_or_else(|| panic!("ids are plain numbers, but this one is not: {entity}"))
}

fn num(value: &Value, what: &str) -> f64 {
    value.as_f64().unwrap_or_else(|| panic!("{what} should be a number, not {value}"))
}

#[track_caller]
fn assert_close(value: &Value, expected: f64, what: &str) {
    let actual = num(value, what);
    assert!((actual - expected).abs() < 1e-9, "{what}: expected {expected}, got {actual}");
}

/// The item of a JSON array whose `key` object has this id, such as the node of key result 3.
fn node<'a>(items: &'a Value, key: &str, id: i64) -> &'a Value {
    let items = items.as_array().unwrap_or_else(|| panic!("not an array: {items}"));
    items.iter().find(|item| item[key]["id"] == id).unwrap_or_else(|| panic!("no {key} {id} in {items:?}"))
}

fn season_input(name: &str, starts_on: &str, ends_on: &str) -> Value {
    json!({
        "name": name,
        "thesis": "Agents replace forms",
        "problems": ["Clinicians type too much", "Notes arrive late"],
        "winning": "Half of all notes drafted by agents",
        "starts_on": starts_on,
        "ends_on": ends_on,
        "slope_target": 0.2,
    })
}

fn objective_input(year: i32, title: &str, commitment: &str, weight: f64) -> Value {
    json!({ "quarter": format!("{year}-Q1"), "title": title, "commitment": commitment, "weight": weight })
}

fn snapshot_goal(key_result: i64, title: &str, starts_on: &str, ends_on: &str, capacity: f64) -> Value {
    json!({
        "key_result_id": key_result,
        "title": title,
        "starts_on": starts_on,
        "ends_on": ends_on,
        "investment": "snapshot",
        "planned_capacity": capacity,
        "kind": "milestone",
    })
}

/// Adds `?as_of=` to a path, encoding what a query string cannot carry as it is.
fn with_as_of(path: &str, as_of: &str) -> String {
    format!("{path}?as_of={}", as_of.replace('%', "%25").replace('+', "%2B").replace(' ', "%20"))
}

fn rfc3339(value: &Value) -> DateTime<Utc> {
    time(value.as_str().unwrap_or_else(|| panic!("a time should be a string, not {value}")))
}

fn time(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text).unwrap_or_else(|e| panic!("{text:?} is not RFC 3339: {e}")).to_utc()
}

/// A season with one objective, one increasing key result and one squad: what most scenarios build on.
struct Plan {
    season: i64,
    objective: i64,
    key_result: i64,
    squad: i64,
}

async fn create_plan(server: &Server, year: i32, name: &str) -> Plan {
    let season = id_of(
        &server
            .create("/api/v1/seasons", &season_input(name, &format!("{year}-01-01"), &format!("{year}-06-30")))
            .await,
    );
    let objective = id_of(
        &server
            .create(
                &format!("/api/v1/seasons/{season}/objectives"),
                &objective_input(year, "Clinicians trust the drafts", "committed", 1.0),
            )
            .await,
    );
    let key_result = id_of(
        &server
            .create(
                &format!("/api/v1/objectives/{objective}/key-results"),
                &json!({ "title": "Drafts accepted per week", "kind": "increase-to", "start": 0, "target": 10 }),
            )
            .await,
    );
    let squad = id_of(
        &server
            .create("/api/v1/squads", &json!({ "name": format!("{name} squad"), "unit": "Clinical", "capacity": 12 }))
            .await,
    );
    Plan { season, objective, key_result, squad }
}

// ---- scenarios ---------------------------------------------------------------------------------

/// The season tree is cached by plan version: every kind of write must show on the next read.
async fn trees_follow_every_write(server: &Server, year: i32) {
    let plan = create_plan(server, year, &format!("Cached {year}")).await;
    let tree_path = format!("/api/v1/seasons/{}/tree", plan.season);
    let tree = server.get(&tree_path).await.expect(200);
    let kr =
        &node(&node(&tree["objectives"], "objective", plan.objective)["key_results"], "key_result", plan.key_result);
    assert!(kr["key_result"]["current"].is_null(), "{kr}");

    server
        .post(&format!("/api/v1/key-results/{}/check-ins", plan.key_result), &json!({ "value": 5, "author": "Ana" }))
        .await
        .expect(201);
    let tree = server.get(&tree_path).await.expect(200);
    let kr =
        &node(&node(&tree["objectives"], "objective", plan.objective)["key_results"], "key_result", plan.key_result);
    assert_close(&kr["key_result"]["current"], 5.0, "current after a check-in");
    assert_close(&tree["score"], 0.5, "season score after a check-in");

    let objective = server.get(&format!("/api/v1/objectives/{}", plan.objective)).await.expect(200);
    let mut edit = objective_input(year, "Renamed objective", "committed", 1.0);
    edit["version"] = objective["version"].clone();
    server.put(&format!("/api/v1/objectives/{}", plan.objective), &edit).await.expect(200);
    server
        .create(
            &format!("/api/v1/squads/{}/goals", plan.squad),
            &snapshot_goal(
                plan.key_result,
                "Goal after caching",
                &format!("{year}-01-04"),
                &format!("{year}-02-01"),
                4.0,
            ),
        )
        .await;
    let tree = server.get(&tree_path).await.expect(200);
    let objective = node(&tree["objectives"], "objective", plan.objective);
    assert_eq!(objective["objective"]["title"], "Renamed objective");
    let kr = node(&objective["key_results"], "key_result", plan.key_result);
    assert_eq!(kr["goals"].as_array().map(Vec::len), Some(1), "{kr}");
}

async fn health(server: &Server) {
    let reply = server.get("/healthz").await;
    assert_eq!((reply.status, reply.text.as_str()), (200, "ok"), "GET /healthz");
    let reply = server.get("/readyz").await;
    assert_eq!(reply.status, 200, "GET /readyz: {}", reply.text);
}

/// Builds a whole plan through the API and checks every roll-up the tree and the slope report show.
async fn happy_path(server: &Server, year: i32) {
    let name = format!("The advent of agents {year}");
    let input = season_input(&name, &format!("{year}-01-01"), &format!("{year}-06-30"));
    let season = server.create("/api/v1/seasons", &input).await;
    let season_id = id_of(&season);
    assert_eq!(season["name"], name.as_str());
    assert_eq!(season["status"], "draft", "a new season is a draft");
    assert_eq!(season["version"], 1);
    assert_eq!(season["problems"], input["problems"]);
    assert_eq!(season["starts_on"], format!("{year}-01-01"));
    assert_close(&season["slope_target"], 0.2, "slope_target");
    assert_eq!(
        server.get(&format!("/api/v1/seasons/{season_id}")).await.expect(200),
        season,
        "GET returns what POST did"
    );

    // A committed objective with two key results of different weights, and an aspirational one with none.
    let objective = server
        .create(
            &format!("/api/v1/seasons/{season_id}/objectives"),
            &objective_input(year, "Clinicians trust the drafts", "committed", 3.0),
        )
        .await;
    let objective_id = id_of(&objective);
    assert_eq!(objective["season_id"], season_id);
    assert_eq!(objective["quarter"], format!("{year}-Q1"));
    assert_eq!(objective["commitment"], "committed");
    let aspirational = server
        .create(
            &format!("/api/v1/seasons/{season_id}/objectives"),
            &json!({ "quarter": format!("{year}-Q2"), "title": "Agents write referrals", "commitment": "aspirational" }),
        )
        .await;
    assert_close(&aspirational["weight"], 1.0, "the default objective weight");

    let key_results = format!("/api/v1/objectives/{objective_id}/key-results");
    let accepted = server
        .create(
            &key_results,
            &json!({ "title": "Drafts accepted per week", "kind": "increase-to", "start": 0, "target": 10, "unit": "drafts" }),
        )
        .await;
    let latency = server
        .create(
            &key_results,
            &json!({ "title": "Draft latency", "kind": "decrease-to", "start": 200, "target": 0, "unit": "ms", "weight": 3 }),
        )
        .await;
    let (accepted_id, latency_id) = (id_of(&accepted), id_of(&latency));
    assert_eq!(accepted["objective_id"], objective_id);
    assert_eq!(accepted["measure"], json!({ "kind": "increase-to", "start": 0.0, "target": 10.0, "unit": "drafts" }));
    assert_eq!(latency["measure"]["kind"], "decrease-to");
    assert_eq!(latency["current"], Value::Null, "no check-in yet");

    let squad = server
        .create("/api/v1/squads", &json!({ "name": format!("Drafts {year}"), "unit": "Clinical", "capacity": 12 }))
        .await;
    let squad_id = id_of(&squad);
    assert_close(&squad["capacity"], 12.0, "squad capacity");

    // 8 person-weeks of snapshot work and 2 of slope work: a slope share of exactly 20 %.
    let goals = format!("/api/v1/squads/{squad_id}/goals");
    let snapshot = server
        .create(
            &goals,
            &snapshot_goal(
                accepted_id,
                "Ship inline suggestions",
                &format!("{year}-01-06"),
                &format!("{year}-02-03"),
                8.0,
            ),
        )
        .await;
    let bet = server
        .create(
            &goals,
            &json!({
                "key_result_id": latency_id,
                "title": "Draft whole notes",
                "starts_on": format!("{year}-02-10"),
                "ends_on": format!("{year}-03-10"),
                "investment": "slope",
                "challenges": "Clinicians want completions, not whole drafts",
                "kill_criteria": "Fewer than one in ten drafts kept after three weeks",
                "planned_capacity": 2,
                "kind": "increase-to",
                "start": 0,
                "target": 1,
            }),
        )
        .await;
    let (snapshot_id, bet_id) = (id_of(&snapshot), id_of(&bet));
    assert_eq!(snapshot["investment"], "snapshot");
    assert_eq!(snapshot["status"], "planned", "a goal is planned when no status is given");
    assert_eq!(snapshot["challenges"], Value::Null, "snapshot goals carry no belief");
    assert_eq!(bet["investment"], "slope");
    assert_eq!(bet["kill_criteria"], "Fewer than one in ten drafts kept after three weeks");

    let check_in = server
        .create(
            &format!("/api/v1/key-results/{latency_id}/check-ins"),
            &json!({ "value": 100, "confidence": 0.6, "author": "Ana", "note": "Halfway there" }),
        )
        .await;
    assert_eq!(check_in["subject_kind"], "key-result");
    assert_eq!(check_in["subject_id"], latency_id);
    assert_close(&check_in["value"], 100.0, "checked-in value");
    server
        .create(&format!("/api/v1/key-results/{accepted_id}/check-ins"), &json!({ "value": 2.5, "author": "Ana" }))
        .await;
    server
        .create(&format!("/api/v1/squad-goals/{snapshot_id}/check-ins"), &json!({ "done": true, "author": "Bo" }))
        .await;
    server.create(&format!("/api/v1/squad-goals/{bet_id}/check-ins"), &json!({ "value": 0.5, "author": "Bo" })).await;
    let history = server.get(&format!("/api/v1/key-results/{latency_id}/check-ins")).await.expect(200);
    assert_eq!(history.as_array().map(Vec::len), Some(1), "{history}");
    assert_eq!(history[0], check_in, "the history holds the check-in as it was created");

    let tree = server.get(&format!("/api/v1/seasons/{season_id}/tree")).await.expect(200);
    assert_eq!(tree["season"]["id"], season_id);
    assert_eq!(tree["as_of"], Value::Null, "a tree of now has no as_of");
    assert_eq!(tree["objectives"].as_array().map(Vec::len), Some(2));
    let committed = node(&tree["objectives"], "objective", objective_id);
    let latency_node = node(&committed["key_results"], "key_result", latency_id);
    // From 200 down to 0, a value of 100 is halfway.
    assert_close(&latency_node["progress"]["score"], 0.5, "decrease-to progress");
    assert_close(&latency_node["progress"]["distance"], -100.0, "what remains to the target");
    assert_eq!(latency_node["progress"]["has_data"], true);
    assert_close(&latency_node["key_result"]["current"], 100.0, "current value");
    assert_close(&latency_node["key_result"]["confidence"], 0.6, "confidence from the check-in");
    let accepted_node = node(&committed["key_results"], "key_result", accepted_id);
    assert_close(&accepted_node["progress"]["score"], 0.25, "increase-to progress");
    // Weighted 1 : 3, the objective scores (0.25 + 3 × 0.5) / 4.
    assert_close(&committed["score"], 0.4375, "committed objective score");
    assert_close(&committed["expectation"], 1.0, "a committed objective is expected at 100 %");
    let empty = node(&tree["objectives"], "objective", id_of(&aspirational));
    assert_close(&empty["score"], 0.0, "an objective without key results");
    assert_close(&empty["expectation"], 0.7, "an aspirational objective is expected at 70 %");
    // Weighted 3 : 1 at the season level.
    assert_close(&tree["score"], 3.0 * 0.4375 / 4.0, "season score");
    assert_close(&tree["expectation"], (3.0 + 0.7) / 4.0, "season expectation");

    // Each goal hangs under the key result it ladders up to, with its own progress.
    let under_accepted = accepted_node["goals"].as_array().expect("goals");
    assert_eq!(under_accepted.len(), 1, "{under_accepted:?}");
    assert_eq!(under_accepted[0]["goal"]["id"], snapshot_id);
    assert_eq!(under_accepted[0]["squad_name"], format!("Drafts {year}"));
    assert_close(&under_accepted[0]["progress"]["score"], 1.0, "a done milestone");
    let under_latency = latency_node["goals"].as_array().expect("goals");
    assert_eq!(under_latency.len(), 1, "{under_latency:?}");
    assert_eq!(under_latency[0]["goal"]["id"], bet_id);
    assert_close(&under_latency[0]["progress"]["score"], 0.5, "the bet's progress");

    let overall = &tree["slope"]["overall"];
    assert_close(&overall["slope"], 2.0, "slope capacity");
    assert_close(&overall["total"], 10.0, "total capacity");
    assert_close(&overall["share"], num(&overall["slope"], "slope") / num(&overall["total"], "total"), "share");
    assert_eq!(overall["below_target"], false, "exactly on target is not below it");
    assert_close(&tree["slope"]["target"], 0.2, "slope target");
    let squad_share = tree["slope"]["squads"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["squad_id"] == squad_id))
        .unwrap_or_else(|| panic!("no share for squad {squad_id}: {}", tree["slope"]));
    assert_close(&squad_share["share"]["share"], 0.2, "the squad's share");
    let unit = tree["slope"]["units"]
        .as_array()
        .and_then(|u| u.iter().find(|u| u["unit"] == "Clinical"))
        .unwrap_or_else(|| panic!("no unit share: {}", tree["slope"]));
    assert_close(&unit["share"]["total"], 10.0, "the unit's total");

    let slope = server.get(&format!("/api/v1/seasons/{season_id}/slope")).await.expect(200);
    assert_eq!(slope, tree["slope"], "the slope report agrees with the tree");
    assert_eq!(slope["period"], json!({ "start": format!("{year}-01-01"), "end": format!("{year}-06-30") }));

    // Over a period that holds 28 of the snapshot goal's 29 days and none of the bet's, the snapshot goal
    // counts in proportion and the share falls below target.
    let part =
        server.get(&format!("/api/v1/seasons/{season_id}/slope?from={year}-01-06&to={year}-02-02")).await.expect(200);
    assert_close(&part["overall"]["total"], 8.0 * 28.0 / 29.0, "pro-rated total");
    assert_close(&part["overall"]["slope"], 0.0, "no slope work in the period");
    assert_eq!(part["overall"]["below_target"], true);
    server
        .get(&format!("/api/v1/seasons/{season_id}/slope?from={year}-02-02&to={year}-01-06"))
        .await
        .expect_invalid(&["to"]);

    // The list and the details agree with the tree.
    let list = server.get("/api/v1/seasons").await.expect(200);
    let summary = list
        .as_array()
        .and_then(|l| l.iter().find(|s| s["season"]["id"] == season_id))
        .unwrap_or_else(|| panic!("season {season_id} is not listed: {list}"));
    assert_eq!((summary["objectives"].as_i64(), summary["key_results"].as_i64()), (Some(2), Some(2)));
    assert_close(&summary["score"], 3.0 * 0.4375 / 4.0, "listed score");
    let detail = server.get(&format!("/api/v1/key-results/{latency_id}")).await.expect(200);
    assert_close(&detail["progress"]["score"], 0.5, "key result detail progress");
    assert_eq!(detail["season"]["id"], season_id);
    let goal = server.get(&format!("/api/v1/squad-goals/{bet_id}")).await.expect(200);
    assert_eq!(goal["squad"]["id"], squad_id);
    assert_eq!(goal["key_result"]["id"], latency_id);
    let board = server.get(&format!("/api/v1/squad-board?season={season_id}")).await.expect(200);
    let column = node(&board["columns"], "squad", squad_id);
    // The goals run one after the other, so the squad's peak load is the larger of them, not their sum.
    assert_close(&column["peak_load"], 8.0, "peak load on the board");
}

/// Invalid input is refused with messages by field, and nothing of it is stored.
async fn validation(server: &Server, year: i32) {
    let seasons_before = server.get("/api/v1/seasons").await.expect(200);

    let bad = json!({
        "name": "",
        "thesis": "Agents replace forms",
        "problems": ["Clinicians type too much"],
        "winning": "Half of all notes drafted by agents",
        "starts_on": format!("{year}-06-30"),
        "ends_on": format!("{year}-01-01"),
        "slope_target": 0.7,
    });
    let fields = server.post("/api/v1/seasons", &bad).await.expect_invalid(&["name", "ends_on", "slope_target"]);
    assert!(messages(&fields, "slope_target").contains("60 %"), "{fields:?}");
    assert!(messages(&fields, "name").contains("required"), "{fields:?}");

    let mut wrong_type = season_input("Typed", &format!("{year}-01-01"), &format!("{year}-06-30"));
    wrong_type["slope_target"] = json!("lots");
    let fields = server.post("/api/v1/seasons", &wrong_type).await.expect_invalid(&["slope_target"]);
    assert!(messages(&fields, "slope_target").contains("invalid type"), "{fields:?}");
    // A body that is JSON but no object at all has no field to name.
    let fields = server.post("/api/v1/seasons", &json!(42)).await.expect_invalid(&["body"]);
    assert!(messages(&fields, "body").contains("must be a JSON object"), "{fields:?}");
    // Nor is an array read as positional fields.
    let positional = json!(["Positional", "t", ["p"], "w", format!("{year}-01-01"), format!("{year}-06-30")]);
    server.post("/api/v1/seasons", &positional).await.expect_invalid(&["body"]);

    for body in ["this is not JSON", "{\"name\": ", "\"unterminated"] {
        server
            .call_raw(Method::POST, "/api/v1/seasons", "application/json", body)
            .await
            .expect_error(400, "bad_request");
    }
    server
        .call_raw(Method::POST, "/api/v1/seasons", "text/plain", "name=Spring")
        .await
        .expect_error(400, "bad_request");

    let seasons_after = server.get("/api/v1/seasons").await.expect(200);
    assert_eq!(seasons_after, seasons_before, "a rejected season must not be stored");

    // Goals are checked against their cycle length and their season.
    let plan = create_plan(server, year, &format!("Validation {year}")).await;
    let goals = format!("/api/v1/squads/{}/goals", plan.squad);
    let eight_weeks =
        snapshot_goal(plan.key_result, "Too long", &format!("{year}-03-01"), &format!("{year}-04-26"), 4.0);
    let fields = server.post(&goals, &eight_weeks).await.expect_invalid(&["ends_on"]);
    assert!(messages(&fields, "ends_on").contains("4 to 6 weeks"), "{fields:?}");
    assert!(messages(&fields, "ends_on").contains("56 days"), "{fields:?}");
    let outside = snapshot_goal(plan.key_result, "Too late", &format!("{year}-06-20"), &format!("{year}-07-20"), 4.0);
    server.post(&goals, &outside).await.expect_invalid(&["starts_on"]);
    let mut bet = snapshot_goal(plan.key_result, "A bet", &format!("{year}-01-04"), &format!("{year}-02-01"), 4.0);
    bet["investment"] = json!("slope");
    server.post(&goals, &bet).await.expect_invalid(&["challenges", "kill_criteria"]);
    let no_kr = snapshot_goal(999_999, "Orphan", &format!("{year}-01-04"), &format!("{year}-02-01"), 4.0);
    let fields = server.post(&goals, &no_kr).await.expect_invalid(&["key_result_id"]);
    assert!(messages(&fields, "key_result_id").contains("does not exist"), "{fields:?}");

    let key_results = format!("/api/v1/objectives/{}/key-results", plan.objective);
    let fields = server
        .post(&key_results, &json!({ "title": "Backwards", "kind": "increase-to", "start": 10, "target": 5 }))
        .await
        .expect_invalid(&["target"]);
    assert!(messages(&fields, "target").contains("above the start"), "{fields:?}");
    server.post(&key_results, &json!({ "title": "Vague", "kind": "sideways" })).await.expect_invalid(&["kind"]);
    let check_ins = format!("/api/v1/key-results/{}/check-ins", plan.key_result);
    server.post(&check_ins, &json!({ "confidence": 2 })).await.expect_invalid(&["value", "confidence", "author"]);
    server
        .post(
            &format!("/api/v1/seasons/{}/objectives", plan.season),
            &objective_input(year + 1, "Next year", "committed", 1.0),
        )
        .await
        .expect_invalid(&["quarter"]);
    server
        .post("/api/v1/squads", &json!({ "name": "No unit", "capacity": -1 }))
        .await
        .expect_invalid(&["unit", "capacity"]);

    // None of the rejected goals, key results or check-ins was stored.
    let tree = server.get(&format!("/api/v1/seasons/{}/tree", plan.season)).await.expect(200);
    let objective = node(&tree["objectives"], "objective", plan.objective);
    assert_eq!(objective["key_results"].as_array().map(Vec::len), Some(1), "{objective}");
    assert_eq!(tree["objectives"].as_array().map(Vec::len), Some(1), "{tree}");
    let kr = node(&objective["key_results"], "key_result", plan.key_result);
    assert_eq!(kr["goals"], json!([]), "a rejected goal must not be stored");
    assert_eq!(kr["key_result"]["current"], Value::Null, "a rejected check-in must not be stored");
    assert_close(&tree["slope"]["overall"]["total"], 0.0, "no capacity is planned");
    let history = server.get(&check_ins).await.expect(200);
    assert_eq!(history, json!([]));
}

/// Anything that names a missing resource or route is a 404 with the API's error shape.
async fn not_found(server: &Server, year: i32) {
    for path in [
        "/api/v1/seasons/999999",
        "/api/v1/seasons/abc",
        "/api/v1/seasons/-1",
        "/api/v1/seasons/99999999999999999999999",
        "/api/v1/seasons/999999/tree",
        "/api/v1/seasons/999999/slope",
        "/api/v1/objectives/999999",
        "/api/v1/key-results/999999",
        "/api/v1/key-results/999999/check-ins",
        "/api/v1/squads/999999",
        "/api/v1/squad-goals/999999",
        "/api/v1/squad-goals/999999/check-ins",
        "/api/v1/squad-board?season=999999",
    ] {
        server.get(path).await.expect_error(404, "not_found");
    }
    let objective =
        json!({ "version": 1, "quarter": format!("{year}-Q1"), "title": "Ghost", "commitment": "committed" });
    server.put("/api/v1/objectives/999999", &objective).await.expect_error(404, "not_found");
    server.put("/api/v1/objectives/abc", &objective).await.expect_error(404, "not_found");
    let mut versioned = season_input("Ghost", &format!("{year}-01-01"), &format!("{year}-06-30"));
    versioned["version"] = json!(1);
    server.put("/api/v1/seasons/999999", &versioned).await.expect_error(404, "not_found");
    server
        .post("/api/v1/seasons/999999/transition", &json!({ "version": 1, "to": "active" }))
        .await
        .expect_error(404, "not_found");
    server
        .post("/api/v1/seasons/999999/objectives", &objective_input(year, "Ghost", "committed", 1.0))
        .await
        .expect_error(404, "not_found");
    server
        .post("/api/v1/key-results/999999/check-ins", &json!({ "value": 1, "author": "Ana" }))
        .await
        .expect_error(404, "not_found");
    server
        .post(
            "/api/v1/squads/999999/goals",
            &snapshot_goal(1, "Ghost", &format!("{year}-01-04"), &format!("{year}-02-01"), 1.0),
        )
        .await
        .expect_error(404, "not_found");

    // A known route with a method it does not serve is refused, not crashed on.
    let reply = server.call(Method::DELETE, "/api/v1/seasons/1", None).await;
    assert_eq!(reply.status, 405, "DELETE /api/v1/seasons/1: {}", reply.text);
}

/// A client that calls an address the API does not have learns so in the API's own error shape.
async fn unknown_api_routes(server: &Server) {
    for path in ["/api/v1/no-such-route", "/api/v1/seasons/1/no-such-thing", "/api/v1/a/b/c"] {
        server.get(path).await.expect_error(404, "not_found");
        server.post(path, &json!({})).await.expect_error(404, "not_found");
    }
}

/// Type errors name the field they are in, whether the field sits in the input itself, in a measure
/// flattened into it, or in an edit that wraps the input with its version.
async fn type_errors_name_their_field(server: &Server, year: i32) {
    let plan = create_plan(server, year, &format!("Types {year}")).await;
    let mut season = season_input(&format!("Types {year}"), &format!("{year}-01-01"), &format!("{year}-06-30"));
    season["version"] = json!(1);
    season["slope_target"] = json!("lots");
    server.put(&format!("/api/v1/seasons/{}", plan.season), &season).await.expect_invalid(&["slope_target"]);
    let squad = json!({ "version": 1, "name": "Typed", "unit": "Clinical", "capacity": "lots" });
    server.put(&format!("/api/v1/squads/{}", plan.squad), &squad).await.expect_invalid(&["capacity"]);
    server
        .post(
            &format!("/api/v1/objectives/{}/key-results", plan.objective),
            &json!({ "title": "Typed", "kind": "increase-to", "start": "zero", "target": 5 }),
        )
        .await
        .expect_invalid(&["start"]);
    let mut goal = snapshot_goal(plan.key_result, "Typed", &format!("{year}-01-04"), &format!("{year}-02-01"), 4.0);
    goal["kind"] = json!(7);
    server.post(&format!("/api/v1/squads/{}/goals", plan.squad), &goal).await.expect_invalid(&["kind"]);
}

/// Edits name the version they were based on; a stale edit is a 409 and changes nothing.
async fn concurrency(server: &Server, year: i32) {
    let plan = create_plan(server, year, &format!("Concurrency {year}")).await;
    let path = format!("/api/v1/seasons/{}", plan.season);
    let mut edit = season_input(&format!("First edit {year}"), &format!("{year}-01-01"), &format!("{year}-06-30"));
    edit["version"] = json!(1);
    let first = server.put(&path, &edit).await.expect(200);
    assert_eq!(first["version"], 2);
    assert_eq!(first["name"], format!("First edit {year}"));

    let mut stale = season_input(&format!("Second edit {year}"), &format!("{year}-01-01"), &format!("{year}-06-30"));
    stale["version"] = json!(1);
    let error = server.put(&path, &stale).await.expect_error(409, "conflict");
    assert_eq!(error.get("fields"), None, "a conflict is not a validation error: {error}");
    let stored = server.get(&path).await.expect(200);
    assert_eq!(stored["name"], format!("First edit {year}"), "the stale edit must not be stored");
    assert_eq!(stored["version"], 2);

    let unversioned = season_input("No version", &format!("{year}-01-01"), &format!("{year}-06-30"));
    let fields = server.put(&path, &unversioned).await.expect_invalid(&["version"]);
    assert!(messages(&fields, "version").contains("required"), "{fields:?}");
    let mut future = unversioned.clone();
    future["version"] = json!(7);
    server.put(&path, &future).await.expect_error(409, "conflict");
    assert_eq!(server.get(&path).await.expect(200), stored, "refused edits change nothing");

    // The same rule holds for the other entities.
    let objective_path = format!("/api/v1/objectives/{}", plan.objective);
    let mut objective = objective_input(year, "Renamed objective", "aspirational", 2.0);
    objective["version"] = json!(1);
    let renamed = server.put(&objective_path, &objective).await.expect(200);
    assert_eq!((renamed["version"].as_i64(), renamed["commitment"].as_str()), (Some(2), Some("aspirational")));
    server.put(&objective_path, &objective).await.expect_error(409, "conflict");
    let squad_path = format!("/api/v1/squads/{}", plan.squad);
    let squad = json!({ "version": 1, "name": format!("Renamed squad {year}"), "unit": "Clinical", "capacity": 10 });
    server.put(&squad_path, &squad).await.expect(200);
    server.put(&squad_path, &squad).await.expect_error(409, "conflict");
    let kr_path = format!("/api/v1/key-results/{}", plan.key_result);
    let kr = json!({ "version": 1, "title": "Renamed", "kind": "keep-above", "threshold": 3 });
    let changed = server.put(&kr_path, &kr).await.expect(200);
    assert_eq!(changed["measure"], json!({ "kind": "keep-above", "threshold": 3.0, "unit": "" }));
    server.put(&kr_path, &kr).await.expect_error(409, "conflict");
}

/// Seasons go draft → active → closed, one active season at a time, and closed seasons are history.
async fn transitions(server: &Server, year: i32) {
    let first = server
        .create(
            "/api/v1/seasons",
            &season_input(&format!("First half {year}"), &format!("{year}-01-01"), &format!("{year}-06-30")),
        )
        .await;
    let second = server
        .create(
            "/api/v1/seasons",
            &season_input(&format!("Second half {year}"), &format!("{year}-07-01"), &format!("{year}-12-31")),
        )
        .await;
    let (first_id, second_id) = (id_of(&first), id_of(&second));
    let first_transition = format!("/api/v1/seasons/{first_id}/transition");
    let second_transition = format!("/api/v1/seasons/{second_id}/transition");

    server.post(&first_transition, &json!({ "to": "active" })).await.expect_invalid(&["version"]);
    server.post(&first_transition, &json!({ "version": 1, "to": "paused" })).await.expect_invalid(&["to"]);
    server
        .post(&first_transition, &json!({ "version": 1, "to": "closed", "retrospective": "Drafts never close." }))
        .await
        .expect_invalid(&["to"]);
    let active = server.post(&first_transition, &json!({ "version": 1, "to": "active" })).await.expect(200);
    assert_eq!(active["status"], "active");
    assert_eq!(active["version"], 2, "a transition is an edit");
    server.post(&first_transition, &json!({ "version": 1, "to": "closed" })).await.expect_error(409, "conflict");

    let fields =
        server.post(&second_transition, &json!({ "version": 1, "to": "active" })).await.expect_invalid(&["to"]);
    assert!(messages(&fields, "to").contains(&format!("First half {year}")), "{fields:?}");
    assert_eq!(server.get(&format!("/api/v1/seasons/{second_id}")).await.expect(200)["status"], "draft");

    server.post(&first_transition, &json!({ "version": 2, "to": "closed" })).await.expect_invalid(&["retrospective"]);
    let fields = server
        .post(&first_transition, &json!({ "version": 2, "to": "closed", "retrospective": "Too short." }))
        .await
        .expect_invalid(&["retrospective"]);
    assert!(messages(&fields, "retrospective").contains("20 characters"), "{fields:?}");
    let retrospective = "Agents arrived faster than we planned for.";
    let closed = server
        .post(&first_transition, &json!({ "version": 2, "to": "closed", "retrospective": retrospective }))
        .await
        .expect(200);
    assert_eq!(closed["status"], "closed");
    assert_eq!(closed["retrospective"], retrospective);
    assert_eq!(closed["version"], 3);

    // A closed season and everything in it stay as they were.
    let mut edit = season_input("Rewritten history", &format!("{year}-01-01"), &format!("{year}-06-30"));
    edit["version"] = json!(3);
    let fields = server.put(&format!("/api/v1/seasons/{first_id}"), &edit).await.expect_invalid(&["status"]);
    assert!(messages(&fields, "status").contains("closed"), "{fields:?}");
    server
        .post(&format!("/api/v1/seasons/{first_id}/objectives"), &objective_input(year, "Late", "committed", 1.0))
        .await
        .expect_invalid(&["status"]);
    server.post(&first_transition, &json!({ "version": 3, "to": "active" })).await.expect_invalid(&["to"]);
    let stored = server.get(&format!("/api/v1/seasons/{first_id}")).await.expect(200);
    assert_eq!(stored, closed, "refused changes to a closed season change nothing");

    // With the first season closed, the second may start.
    let started = server.post(&second_transition, &json!({ "version": 1, "to": "active" })).await.expect(200);
    assert_eq!(started["status"], "active");
}

/// Seasons of one organisation never overlap, on creation or on edit; touching end to start overlaps.
async fn overlaps(server: &Server, year: i32) {
    let first = server
        .create(
            "/api/v1/seasons",
            &season_input(&format!("Spring {year}"), &format!("{year}-01-01"), &format!("{year}-06-30")),
        )
        .await;
    let seasons_before = server.get("/api/v1/seasons").await.expect(200);
    for (starts_on, ends_on) in
        [(format!("{year}-06-30"), format!("{year}-12-31")), (format!("{year}-02-01"), format!("{year}-03-01"))]
    {
        let fields = server
            .post("/api/v1/seasons", &season_input("Overlapping", &starts_on, &ends_on))
            .await
            .expect_invalid(&["starts_on"]);
        assert!(messages(&fields, "starts_on").contains(&format!("Spring {year}")), "{fields:?}");
    }
    assert_eq!(server.get("/api/v1/seasons").await.expect(200), seasons_before, "no overlapping season is stored");

    let second = server
        .create(
            "/api/v1/seasons",
            &season_input(&format!("Autumn {year}"), &format!("{year}-07-01"), &format!("{year}-12-31")),
        )
        .await;
    let mut stretch = season_input(&format!("Spring {year}"), &format!("{year}-01-01"), &format!("{year}-07-15"));
    stretch["version"] = first["version"].clone();
    server.put(&format!("/api/v1/seasons/{}", id_of(&first)), &stretch).await.expect_invalid(&["starts_on"]);
    // A season never overlaps itself when it is edited.
    let mut shift = season_input(&format!("Autumn {year}"), &format!("{year}-07-02"), &format!("{year}-12-31"));
    shift["version"] = second["version"].clone();
    let shifted = server.put(&format!("/api/v1/seasons/{}", id_of(&second)), &shift).await.expect(200);
    assert_eq!(shifted["starts_on"], format!("{year}-07-02"));
}

/// `as_of` shows the plan as it was known at a past time: values checked in later are not shown.
async fn as_of(server: &Server, year: i32) {
    let plan = create_plan(server, year, &format!("History {year}")).await;
    let tree_path = format!("/api/v1/seasons/{}/tree", plan.season);
    let kr_path = format!("/api/v1/key-results/{}", plan.key_result);
    let created = server.get(&kr_path).await.expect(200);
    let kr_created_at = created["key_result"]["created_at"].as_str().expect("created_at").to_owned();

    let first = server
        .create(&format!("{kr_path}/check-ins"), &json!({ "value": 4, "confidence": 0.5, "author": "Ana" }))
        .await;
    let first_at = first["recorded_at"].as_str().expect("recorded_at").to_owned();
    assert!(rfc3339(&first["recorded_at"]) > time(&kr_created_at), "the check-in came after the key result");
    // The server runs on this machine's clock, so a time taken between two requests lies between them.
    tokio::time::sleep(Duration::from_millis(20)).await;
    let between = Utc::now();
    tokio::time::sleep(Duration::from_millis(20)).await;
    server.create(&format!("{kr_path}/check-ins"), &json!({ "value": 7, "author": "Ana" })).await;

    let kr_now = |tree: &Value| -> Value {
        let objective = node(&tree["objectives"], "objective", plan.objective);
        node(&objective["key_results"], "key_result", plan.key_result).clone()
    };
    let now = server.get(&tree_path).await.expect(200);
    assert_close(&kr_now(&now)["key_result"]["current"], 7.0, "the latest value");
    assert_close(&kr_now(&now)["progress"]["score"], 0.7, "progress now");

    // When the key result was created, nothing was checked in yet; the time itself is included.
    let before = server.get(&with_as_of(&tree_path, &kr_created_at)).await.expect(200);
    assert_eq!(kr_now(&before)["key_result"]["current"], Value::Null, "{before}");
    assert_eq!(kr_now(&before)["key_result"]["confidence"], Value::Null, "{before}");
    assert_eq!(kr_now(&before)["progress"]["has_data"], false);
    assert_eq!(rfc3339(&before["as_of"]), time(&kr_created_at), "the tree says when it shows");

    let at_first = server.get(&with_as_of(&tree_path, &first_at)).await.expect(200);
    assert_close(&kr_now(&at_first)["key_result"]["current"], 4.0, "a check-in is known from its own time on");
    let mid =
        server.get(&with_as_of(&tree_path, &between.to_rfc3339_opts(SecondsFormat::Micros, true))).await.expect(200);
    assert_close(&kr_now(&mid)["key_result"]["current"], 4.0, "the value known between the check-ins");
    assert_close(&kr_now(&mid)["key_result"]["confidence"], 0.5, "the confidence known between the check-ins");
    assert_close(&kr_now(&mid)["progress"]["score"], 0.4, "progress between the check-ins");
    let offset = between.with_timezone(&chrono::FixedOffset::east_opt(2 * 3600).expect("offset"));
    let mid_offset = server.get(&with_as_of(&tree_path, &offset.to_rfc3339())).await.expect(200);
    assert_close(&kr_now(&mid_offset)["key_result"]["current"], 4.0, "a time with an offset means the same instant");

    // A date means the end of that day; the season did not exist on a day long past.
    server.get(&with_as_of(&tree_path, "2000-01-01")).await.expect_error(404, "not_found");
    let end_of_today =
        server.get(&with_as_of(&tree_path, &Utc::now().format("%Y-%m-%d").to_string())).await.expect(200);
    assert_close(&kr_now(&end_of_today)["key_result"]["current"], 7.0, "the end of today knows every check-in");
    for garbage in ["garbage", "2031-13-45", "yesterday"] {
        server.get(&with_as_of(&tree_path, garbage)).await.expect_invalid(&["as_of"]);
    }
    let empty = server.get(&format!("{tree_path}?as_of=")).await.expect(200);
    assert_eq!(empty, now, "an empty as_of means now");
}

/// The UI is rendered on the server, so its pages carry the plan's content without any script.
async fn pages(server: &Server, year: i32) {
    let name = format!("Pages {year}");
    let plan = create_plan(server, year, &name).await;
    let home = server.get("/").await.expect_page(200);
    assert!(home.contains("<h1>Seasons</h1>"), "the home page lists the seasons: {home}");
    assert!(home.contains(&name), "the home page names season {name:?}: {home}");
    let season = server.get(&format!("/seasons/{}", plan.season)).await.expect_page(200);
    assert!(season.contains(&name), "the season page names the season: {season}");
    assert!(season.contains("Clinicians trust the drafts"), "the season page shows its objectives: {season}");
    let missing = server.get("/no/such/page").await.expect_page(404);
    assert!(missing.contains("Not found"), "{missing}");
}

/// A page for an entity that does not exist is a 404, every time, whether its id is an unknown number or
/// no number at all. The page is requested several times because its status is decided while it renders.
async fn missing_entity_pages(server: &Server) {
    for path in ["/seasons/999999", "/key-results/999999", "/squad-goals/999999"] {
        for _ in 0..10 {
            let page = server.get(path).await.expect_page(404);
            assert!(page.contains("Not available"), "{page}");
        }
    }
    for path in ["/seasons/abc", "/key-results/abc", "/squad-goals/abc"] {
        server.get(path).await.expect_page(404);
    }
}

/// JSON text followed by anything else is not JSON, and must not be acted on.
async fn trailing_characters(server: &Server, year: i32) {
    let seasons_before = server.get("/api/v1/seasons").await.expect(200);
    let body = r#"{"name": "Trailing", "thesis": "t", "problems": ["p"], "winning": "w",
        "starts_on": "YEAR-01-01", "ends_on": "YEAR-06-30"} and then some"#
        .replace("YEAR", &year.to_string());
    let request = server
        .client
        .post(format!("{}/api/v1/seasons", server.base))
        .header(CONTENT_TYPE, "application/json")
        .body(body);
    server
        .send(request, "POST /api/v1/seasons with trailing characters".to_owned())
        .await
        .expect_error(400, "bad_request");
    assert_eq!(server.get("/api/v1/seasons").await.expect(200), seasons_before, "nothing is stored");
}

// ---- tests on SQLite ---------------------------------------------------------------------------

#[tokio::test]
async fn health_and_readiness_answer() {
    let server = Server::start();
    health(&server).await;
    server.assert_no_server_errors();
}

#[tokio::test]
async fn the_cached_tree_follows_every_write() {
    let server = Server::start();
    trees_follow_every_write(&server, 2040).await;
    server.assert_no_server_errors();
}

#[tokio::test]
async fn a_whole_plan_rolls_up_through_the_api() {
    let server = Server::start();
    happy_path(&server, 2031).await;
    server.assert_no_server_errors();
}

#[tokio::test]
async fn invalid_input_is_refused_by_field_and_not_stored() {
    let server = Server::start();
    validation(&server, 2031).await;
    server.assert_no_server_errors();
}

#[tokio::test]
async fn unknown_ids_and_routes_are_not_found() {
    let server = Server::start();
    not_found(&server, 2031).await;
    server.assert_no_server_errors();
}

#[tokio::test]
async fn unknown_api_routes_answer_with_a_json_404() {
    let server = Server::start();
    unknown_api_routes(&server).await;
    server.assert_no_server_errors();
}

#[tokio::test]
async fn type_errors_name_the_field_in_every_body() {
    let server = Server::start();
    type_errors_name_their_field(&server, 2031).await;
    server.assert_no_server_errors();
}

#[tokio::test]
async fn stale_edits_conflict_and_change_nothing() {
    let server = Server::start();
    concurrency(&server, 2031).await;
    server.assert_no_server_errors();
}

#[tokio::test]
async fn seasons_go_from_draft_to_active_to_closed() {
    let server = Server::start();
    transitions(&server, 2031).await;
    server.assert_no_server_errors();
}

#[tokio::test]
async fn seasons_never_overlap() {
    let server = Server::start();
    overlaps(&server, 2031).await;
    server.assert_no_server_errors();
}

#[tokio::test]
async fn as_of_shows_the_plan_as_known_then() {
    let server = Server::start();
    as_of(&server, 2031).await;
    server.assert_no_server_errors();
}

#[tokio::test]
async fn pages_render_on_the_server() {
    let server = Server::start();
    pages(&server, 2031).await;
    server.assert_no_server_errors();
}

#[tokio::test]
async fn pages_of_missing_entities_are_always_not_found() {
    let server = Server::start();
    missing_entity_pages(&server).await;
    server.assert_no_server_errors();
}

#[tokio::test]
async fn a_body_with_trailing_characters_is_refused() {
    let server = Server::start();
    trailing_characters(&server, 2031).await;
    server.assert_no_server_errors();
}

// ---- the same scenarios on PostgreSQL ----------------------------------------------------------

#[test]
fn database_urls_keep_everything_but_the_database() {
    assert_eq!(
        database_url("postgres://postgres@127.0.0.1:5432/postgres", "x"),
        "postgres://postgres@127.0.0.1:5432/x"
    );
    assert_eq!(database_url("postgres://u:p@db/admin?sslmode=disable", "x"), "postgres://u:p@db/x?sslmode=disable");
    assert_eq!(database_url("postgres://db", "x"), "postgres://db/x");
}

#[tokio::test]
async fn the_api_works_on_postgres() {
    let Some(admin_url) = std::env::var("SLOPE_TEST_POSTGRES_URL").ok().filter(|url| !url.trim().is_empty()) else {
        assert!(
            std::env::var("SLOPE_REQUIRE_POSTGRES").as_deref() != Ok("1"),
            "SLOPE_REQUIRE_POSTGRES=1 but SLOPE_TEST_POSTGRES_URL is not set"
        );
        eprintln!("skipping the PostgreSQL API test: set SLOPE_TEST_POSTGRES_URL=postgres://USER@HOST:PORT/postgres");
        return;
    };
    // The database is declared first so that it is dropped after the server that uses it has stopped.
    let database = PgDatabase::create(&admin_url, "api").await;
    let server = Server::start_with(Some(&database.url));
    health(&server).await;
    happy_path(&server, 2031).await;
    validation(&server, 2032).await;
    not_found(&server, 2033).await;
    concurrency(&server, 2034).await;
    overlaps(&server, 2035).await;
    as_of(&server, 2036).await;
    pages(&server, 2037).await;
    // Last, because it leaves a season active and only one may be.
    transitions(&server, 2038).await;
    trees_follow_every_write(&server, 2039).await;
    server.assert_no_server_errors();
}
