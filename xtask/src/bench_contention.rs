//! `cargo xtask bench-contention [--events N] [--no-build]`: how long a sign-in and a key result's
//! check-in take while a large ingest runs, against the same requests on the same idle server.
//!
//! The release server runs on a fresh SQLite file with the demo data (its simulator off). A probe signs
//! the demo leader in and records a check-in every 200 ms, first on the idle server, then while the
//! generated events (the same file as `bench-metrics`) are sent as consecutive batches through the API.
//! SQLite has one write lock for the whole database, so these are the writes that an ingest holding
//! a lock would stall; the two cores are shared by the ingest, the probe and curl, so part of any
//! slow-down is CPU, not waiting. `GET /healthz`, which touches no database, is probed alongside as the
//! peer that shows what CPU contention alone costs.

use std::fs;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use super::bench_common::{Server, quantile, start_server, token};
use super::bench_metrics::{
    DAYS, PART_BYTES, bench_dir, days_since_epoch, generate_cached, machine, shown, slope_command, split, thousands,
    write_events,
};
use super::{Result, cargo, run, step, target_dir};

const DEFAULT_EVENTS: u64 = 10_000_000;
const IDLE_SAMPLES: usize = 40;
const PAUSE: Duration = Duration::from_millis(200);
const LEADER: (&str, &str) = ("leader@demo.slope", "demo-leader-pass");
const HEALTH: &str = "peer: no database (GET /healthz)";

struct Options {
    events: u64,
    no_build: bool,
}

fn parse_options(args: &[String]) -> Result<Options> {
    let mut options = Options { events: DEFAULT_EVENTS, no_build: false };
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--events" => {
                let raw = args.next().ok_or("--events needs a number")?;
                options.events =
                    raw.replace('_', "").parse().map_err(|_| format!("--events: {raw:?} is not a number"))?;
            }
            "--no-build" => options.no_build = true,
            other => return Err(format!("bench-contention: unknown argument {other:?} (use --events N, --no-build)")),
        }
    }
    Ok(options)
}

fn start(slope: &Path, data: &Path, log: &Path) -> Result<Server> {
    let mut cmd = slope_command(slope);
    cmd.args(["serve", "--demo", "--bind", "127.0.0.1:0", "--data-dir"])
        .arg(data)
        // The demo's simulator would ingest and train beside the measurement.
        .env("SLOPE_SIMULATOR", "false");
    start_server(cmd, log)
}

/// One sample: which request, whether it ran during the ingest, how long it took and whether it worked.
#[derive(Clone)]
struct Sample {
    route: &'static str,
    loaded: bool,
    seconds: f64,
    ok: bool,
}

/// `curl`'s status, `time_total` and the `x-slope-sign-in` header (set only when a sign-in failed).
fn curl(args: &[&str]) -> Result<(u16, f64, String)> {
    let out = Command::new("curl")
        .args(["-sS", "-o", "/dev/null", "-w", "%{http_code} %{time_total} %header{x-slope-sign-in}"])
        .args(args)
        .output()
        .map_err(|e| format!("cannot run curl: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut fields = text.split_whitespace();
    let status = fields.next().and_then(|s| s.parse().ok()).unwrap_or(0);
    let seconds = fields.next().and_then(|s| s.parse().ok()).unwrap_or(f64::NAN);
    Ok((status, seconds, fields.next().unwrap_or_default().to_owned()))
}

fn probe_once(base: &str, token: &str, loaded: bool, round: usize) -> Result<Vec<Sample>> {
    let form = format!("email={}&password={}", LEADER.0, LEADER.1);
    let (status, seconds, failure) =
        curl(&["-X", "POST", "-H", &format!("Origin: {base}"), "--data", &form, &format!("{base}/auth/login")])?;
    let sign_in =
        Sample { route: "sign-in (POST /auth/login)", loaded, seconds, ok: status == 303 && failure.is_empty() };
    let body =
        format!(r#"{{"value": {}, "confidence": 0.7, "note": "bench-contention", "author": "bench"}}"#, round % 50);
    let (status, seconds, _) = curl(&[
        "-X",
        "POST",
        "-H",
        &format!("Authorization: Bearer {token}"),
        "-H",
        "Content-Type: application/json",
        "--data",
        &body,
        &format!("{base}/api/v1/key-results/1/check-ins"),
    ])?;
    let check_in =
        Sample { route: "check-in (POST /api/v1/key-results/1/check-ins)", loaded, seconds, ok: status == 201 };
    // The peer: a handler that touches no database, so its slow-down is the CPU the ingest takes.
    let (status, seconds, _) = curl(&[&format!("{base}/healthz")])?;
    let peer = Sample { route: HEALTH, loaded, seconds, ok: status == 200 };
    Ok(vec![sign_in, check_in, peer])
}

pub fn bench_contention(args: &[String]) -> Result {
    let options = parse_options(args)?;
    let dir = bench_dir();
    fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let n = options.events;
    let first_day = days_since_epoch() - DAYS as i64;
    step(&format!("Generating {} events (shared with bench-metrics)", thousands(n)));
    let events = dir.join("events.ndjson");
    generate_cached(&events, &format!("events {n} from day {first_day} v1"), |w| write_events(w, n, first_day))?;
    let parts: Vec<PathBuf> = split(&events, PART_BYTES)?;

    let slope = target_dir().join("release").join("slope");
    if !options.no_build {
        step("Building slope (release)");
        run(cargo().args(["build", "--release", "-p", "slope"]))?;
    }
    let data = dir.join("contention-data");
    if data.exists() {
        fs::remove_dir_all(&data).map_err(|e| e.to_string())?;
    }
    let server = start(&slope, &data, &dir.join("contention-serve.log"))?;
    let token = token(&slope, &data, None, "bench-contention")?;
    let machine = machine();

    step("Idle: sign-in and check-in every 200 ms");
    let mut samples = vec![];
    for round in 0..IDLE_SAMPLES {
        samples.extend(probe_once(&server.base, &token, false, round)?);
        thread::sleep(PAUSE);
    }

    step(&format!("Loaded: the same while {} events are ingested in {} batches", thousands(n), parts.len()));
    let done = Arc::new(AtomicBool::new(false));
    let ingest_log: Arc<Mutex<Vec<String>>> = Arc::default();
    let ingest = {
        let (base, token, parts, done, log) =
            (server.base.clone(), token.clone(), parts.clone(), done.clone(), ingest_log.clone());
        thread::spawn(move || -> Result<f64> {
            let started = Instant::now();
            for part in &parts {
                let (status, seconds, _) = curl(&[
                    "-X",
                    "POST",
                    "-H",
                    &format!("Authorization: Bearer {token}"),
                    "-H",
                    "Content-Type: application/x-ndjson",
                    "--data-binary",
                    &format!("@{}", part.display()),
                    &format!("{base}/api/v1/loops/bench/events"),
                ])?;
                log.lock().unwrap().push(format!("{}: HTTP {status} in {seconds:.1} s", shown(part)));
                if status != 201 {
                    done.store(true, Ordering::SeqCst);
                    return Err(format!("ingesting {} answered HTTP {status}", part.display()));
                }
            }
            done.store(true, Ordering::SeqCst);
            Ok(started.elapsed().as_secs_f64())
        })
    };
    let mut round = IDLE_SAMPLES;
    while !done.load(Ordering::SeqCst) {
        samples.extend(probe_once(&server.base, &token, true, round)?);
        round += 1;
        thread::sleep(PAUSE);
    }
    let ingest_seconds = ingest.join().map_err(|_| "the ingest thread panicked")??;
    for line in ingest_log.lock().unwrap().iter() {
        eprintln!("{line}");
    }
    drop(server);
    for part in &parts {
        let _ = fs::remove_file(part);
    }

    let mut report = format!(
        "`cargo xtask bench-contention --events {n}` on {} ({} cores, {}), {}, commit {}. The ingest: {} events \
         in {} batches through `POST /api/v1/loops/bench/events`, {:.1} s ({} events/s).\n\n\
         | request | server | samples | failed | p50 | p99 | max |\n| --- | --- | --- | --- | --- | --- | --- |\n",
        machine.cpu,
        machine.cores,
        machine.memory,
        machine.date,
        machine.commit,
        thousands(n),
        parts.len(),
        ingest_seconds,
        thousands((n as f64 / ingest_seconds) as u64),
    );
    let mut worst_extra: f64 = 0.0;
    for route in ["sign-in (POST /auth/login)", "check-in (POST /api/v1/key-results/1/check-ins)", HEALTH] {
        let mut p99s = [0.0; 2];
        for (i, loaded) in [false, true].into_iter().enumerate() {
            let of: Vec<&Sample> = samples.iter().filter(|s| s.route == route && s.loaded == loaded).collect();
            let mut times: Vec<f64> = of.iter().map(|s| s.seconds).filter(|t| t.is_finite()).collect();
            times.sort_by(f64::total_cmp);
            let failed = of.iter().filter(|s| !s.ok).count();
            p99s[i] = quantile(&times, 0.99);
            report.push_str(&format!(
                "| {route} | {} | {} | {failed} | {:.1} ms | {:.1} ms | {:.1} ms |\n",
                if loaded { "during the ingest" } else { "idle" },
                of.len(),
                quantile(&times, 0.5) * 1e3,
                p99s[i] * 1e3,
                times.last().copied().unwrap_or(f64::NAN) * 1e3,
            ));
        }
        if route != HEALTH {
            worst_extra = worst_extra.max(p99s[1] - p99s[0]);
        }
        report.push_str(&format!("| {route} | **p99 during ÷ idle** | | | | **{:.2}×** | |\n", p99s[1] / p99s[0]));
    }
    report.push_str(&format!(
        "\nLargest p99 added by the ingest: {:.1} ms (goal: ≤ 100 ms waiting behind an ingest).\n",
        worst_extra * 1e3
    ));
    let out = dir.join("contention.md");
    fs::write(&out, &report).map_err(|e| e.to_string())?;
    println!("{report}");
    eprintln!("written to {}", out.display());
    Ok(())
}
