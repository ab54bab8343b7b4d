//! Slope's developer commands. Each installs what it needs that is missing, so a fresh machine needs
//! only Rust and the two Quick start commands.
//!
//! - `cargo xtask serve [--release]`: build everything and run Slope on SQLite with demo data.
//! - `cargo xtask test`: every check and test (format, lints, invariants, unit, storage on SQLite and
//!   PostgreSQL, API, browser end-to-end).
//! - `cargo xtask build [--release]`: the browser bundle, the site and the server.
//! - `cargo xtask setup`: only install the tools.

use std::env;
use std::fs;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Duration;

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
        _ => {
            eprintln!("usage: cargo xtask <serve [--release] | test | build [--release] | setup | lint>");
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
    forbid(&domain, "slope-domain", &["leptos", "axum", "sqlx", "polars", "candle", "tokio", "hyper"])?;
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
    forbid(&hydrate, "the hydrate build", &["sqlx", "polars", "candle", "slope-store", "slope-service", "tokio "])?;
    step("Invariant: no SQL in app/");
    let sql = output(
        Command::new("grep")
            .args(["-rniE", r"\b(SELECT|INSERT INTO|UPDATE [a-z_]+ SET|DELETE FROM)\b", "app/src"])
            .current_dir(root()),
    );
    if let Some(found) = sql {
        return Err(format!("SQL found in app/ (it belongs in crates/store):\n{found}"));
    }
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

fn forbid(tree: &str, what: &str, crates: &[&str]) -> Result {
    let found: Vec<&str> = crates
        .iter()
        .copied()
        .filter(|c| {
            tree.lines().any(|l| l.starts_with(c.trim_end()) && (c.ends_with(' ') || l[c.len()..].starts_with(' ')))
        })
        .collect();
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
