//! `cargo xtask bench-metrics [--events N] [--skip-python] [--no-build]`: the loop-metrics engine against named peers
//! in one run, on one machine and the same files, so that every figure is a ratio to a peer measured
//! beside it rather than to a number from another day.
//!
//! - Ingest: `slope ingest` of N generated events (default 10 million) against DuckDB's NDJSON-to-Parquet
//!   `COPY` of the same file.
//! - Acceptance by variant × day: `GET /api/v1/loops/{loop}` against DuckDB computing the same statistic
//!   over the Parquet segments Slope wrote; then a metric's creation and a 100k-event follow-up batch
//!   (which recomputes the touched buckets) against DuckDB recomputing acceptance by day in full.
//! - Lifetime value: `slope metrics ltv` against Python's lifetimes (BG/NBD and Gamma-Gamma) on the
//!   CDNOW summary and on a million simulated customers with known parameters.
//!
//! Everything lands in `target/bench-metrics/`; the Python peers live in a virtual environment there,
//! installed from `bench/requirements.txt` by this command only. `--no-build` measures the
//! `target/release/slope` already there, for when the working tree does not build.

// Long on purpose: one benchmark script, data generation, peers and report together, so that its figures are
// reproduced by reading one file.

use std::fmt::Write as _;
use std::fs;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::Instant;

use super::{Result, cargo, output, root, run, step, target_dir};

const DEFAULT_EVENTS: u64 = 10_000_000;
const FOLLOW_UP_EVENTS: u64 = 100_000;
const USERS: u64 = 200_000;
pub(super) const DAYS: u64 = 90;
/// The follow-up batch lands in the last days of the range, as late data does.
const FOLLOW_UP_DAYS: u64 = 3;
/// Slope refuses a batch over 512 MiB (`slope_service::MAX_BATCH_BYTES`; xtask is std-only, so it cannot
/// import the constant). A larger file is sent as parts of at most `PART_BYTES`.
const MAX_BATCH_BYTES: u64 = 512 * 1024 * 1024;
pub(super) const PART_BYTES: u64 = 500 * 1024 * 1024;
/// Timed requests after one warm-up; the median is reported.
const REPEATS: usize = 5;
const SIMULATED_CUSTOMERS: usize = 1_000_000;
/// The simulation's true parameters: lifetimes' fits of the CDNOW summary, rounded.
const TRUTH: Ltv = Ltv { r: 0.243, alpha: 4.414, a: 0.793, b: 2.426, p: 6.25, q: 3.74, v: 15.45 };

/// One line of the figures table.
struct Figure {
    measure: String,
    slope: String,
    peer: String,
    ratio: String,
    goal: String,
    how: String,
}

impl Figure {
    fn new(measure: &str, slope: String, peer: String, ratio: String, goal: &str, how: String) -> Self {
        Figure { measure: measure.into(), slope, peer, ratio, goal: goal.into(), how }
    }
}

/// BG/NBD and Gamma-Gamma parameters as one fit reports them.
#[derive(Clone, Copy)]
struct Ltv {
    r: f64,
    alpha: f64,
    a: f64,
    b: f64,
    p: f64,
    q: f64,
    v: f64,
}

impl Ltv {
    fn from_json(json: &str) -> Option<Ltv> {
        let n = |key| number(json, key);
        Some(Ltv { r: n("r")?, alpha: n("alpha")?, a: n("a")?, b: n("b")?, p: n("p")?, q: n("q")?, v: n("v")? })
    }

    fn values(&self) -> [(&'static str, f64); 7] {
        [
            ("r", self.r),
            ("alpha", self.alpha),
            ("a", self.a),
            ("b", self.b),
            ("p", self.p),
            ("q", self.q),
            ("v", self.v),
        ]
    }

    /// The largest relative difference between two fits over all seven parameters.
    fn max_relative_difference(&self, other: &Ltv) -> f64 {
        self.values()
            .iter()
            .zip(other.values())
            .map(|((_, x), (_, y))| (x - y).abs() / y.abs().max(f64::MIN_POSITIVE))
            .fold(0.0, f64::max)
    }
}

struct Options {
    events: u64,
    skip_python: bool,
    no_build: bool,
}

fn parse_options(args: &[String]) -> Result<Options> {
    let mut options = Options { events: DEFAULT_EVENTS, skip_python: false, no_build: false };
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--skip-python" => options.skip_python = true,
            "--no-build" => options.no_build = true,
            "--events" => {
                let raw = args.next().ok_or("--events needs a number")?;
                // Separators make large counts readable on the command line: 10_000_000 or 10,000,000.
                let digits: String = raw.chars().filter(|c| !matches!(c, '_' | ',')).collect();
                options.events = digits.parse().map_err(|_| format!("--events: {raw:?} is not a whole number"))?;
                if options.events < 1_000 {
                    return Err("--events: use at least 1000 events".into());
                }
            }
            other => {
                return Err(format!(
                    "bench-metrics: unknown argument {other:?} (use --events N, --skip-python, --no-build)"
                ));
            }
        }
    }
    Ok(options)
}

/// The benchmark's folder, shown relative to the workspace in commands so that they can be pasted.
pub(super) fn bench_dir() -> PathBuf {
    target_dir().join("bench-metrics")
}

pub(super) fn shown(path: &Path) -> String {
    path.strip_prefix(root()).unwrap_or(path).display().to_string()
}

pub fn bench_metrics(args: &[String]) -> Result {
    let options = parse_options(args)?;
    let dir = bench_dir();
    fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let machine = machine();
    let n = options.events;

    // Slope refuses events more than a day in the future, so the range ends yesterday.
    let first_day = days_since_epoch() - DAYS as i64;
    step(&format!("Generating {} events and a follow-up batch of {}", thousands(n), thousands(FOLLOW_UP_EVENTS)));
    let events = dir.join("events.ndjson");
    let follow_up = dir.join("follow-up.ndjson");
    generate_cached(&events, &format!("events {n} from day {first_day} v1"), |w| write_events(w, n, first_day))?;
    generate_cached(&follow_up, &format!("follow-up {FOLLOW_UP_EVENTS} from day {first_day} v1"), |w| {
        write_follow_up(w, FOLLOW_UP_EVENTS, first_day)
    })?;

    let slope = target_dir().join("release").join("slope");
    if options.no_build {
        if !slope.exists() {
            return Err(format!("--no-build: there is no {} yet", slope.display()));
        }
    } else {
        step("Building slope (release)");
        run(cargo().args(["build", "--release", "-p", "slope"]))?;
    }

    let python = if options.skip_python {
        None
    } else {
        step("Python peers: DuckDB and lifetimes in target/bench-metrics/venv");
        Some(super::python_venv(&dir, "requirements.txt")?)
    };
    let peer = |args: &[&str]| -> Result<Option<String>> {
        match &python {
            None => Ok(None),
            Some(python) => peer_json(python, args).map(Some),
        }
    };

    let mut figures = vec![];
    let mut notes: Vec<String> = vec![];

    step("Ingest");
    let data = dir.join("data");
    if data.exists() {
        fs::remove_dir_all(&data).map_err(|e| format!("{}: {e}", data.display()))?;
    }
    let ingest = ingest(&slope, &events, &data, n)?;
    if let Some(refusal) = &ingest.refusal {
        notes.push(format!(
            "`slope ingest` refused the {} MB file as one batch: \"{refusal}\". It was sent as {} parts of at most {} MiB instead, timed together.",
            fs::metadata(&events).map(|m| m.len() / 1_000_000).unwrap_or_default(),
            ingest.commands.len(),
            PART_BYTES >> 20
        ));
    }
    let duck_parquet = dir.join("duckdb-events.parquet");
    let _ = fs::remove_file(&duck_parquet);
    let duck_ingest = peer(&["ingest", &path_arg(&events), &path_arg(&duck_parquet)])?;
    let slope_rate = n as f64 / ingest.seconds;
    let duck_rate = duck_ingest.as_deref().and_then(|j| number(j, "seconds")).map(|s| n as f64 / s);
    let segment_files = parquet_files(&data.join("segments"))?;
    let segment_bytes: u64 = segment_files.iter().filter_map(|p| fs::metadata(p).ok()).map(|m| m.len()).sum();
    let duck_bytes = fs::metadata(&duck_parquet).map(|m| m.len()).ok();
    figures.push(Figure::new(
        "Ingest: validate, write Parquet segment + SQLite manifest",
        format!("{} events/s ({:.2} s)", thousands(slope_rate as u64), ingest.seconds),
        duck_rate
            .map(|r| {
                format!("DuckDB `COPY read_json → parquet`: {} events/s ({:.2} s)", thousands(r as u64), n as f64 / r)
            })
            .unwrap_or_else(skipped),
        duck_rate.map(|r| format!("{:.2}× (Slope ÷ DuckDB events/s)", slope_rate / r)).unwrap_or_else(skipped),
        "≥ 1,000,000 events/s and ≥ 1.0×",
        format!("`{}`", ingest.commands.join("` then `")),
    ));
    figures.push(Figure::new(
        "Parquet written",
        format!("{:.1} MB in {} segment(s)", segment_bytes as f64 / 1e6, segment_files.len()),
        duck_bytes.map(|b| format!("DuckDB: {:.1} MB", b as f64 / 1e6)).unwrap_or_else(skipped),
        String::new(),
        "",
        String::new(),
    ));
    // The peers read exactly the files that exist now: later batches or a compaction must not change them.
    let listing = dir.join("segments.txt");
    let listed: String = segment_files.iter().map(|p| format!("{}\n", p.display())).collect();
    fs::write(&listing, listed).map_err(|e| e.to_string())?;

    step("Acceptance by variant × day over the stored events");
    // The API answers only signed-in callers: the bench uses an API token, as a script would.
    let token = api_token(&slope, &data)?;
    let server = Server::start(&slope, &data, &dir)?;
    let report_url = format!("{}/api/v1/loops/bench?days=366", server.base);
    let report_json = dir.join("loop-report.json");
    let (report_seconds, report_times) = median_of(REPEATS, || {
        let (status, seconds) = curl(&token, &["-X", "GET"], &report_url, &report_json)?;
        expect_status(status, 200, "GET /api/v1/loops/bench", &report_json)?;
        Ok(seconds)
    })?;
    let groups = fs::read_to_string(&report_json).map_err(|e| e.to_string())?.matches("\"bucket\"").count();
    let duck_acceptance = peer(&["acceptance", &path_arg(&listing), &path_arg(&report_json), &REPEATS.to_string()])?;
    let duck_seconds = duck_acceptance.as_deref().and_then(|j| number(j, "seconds"));
    figures.push(Figure::new(
        "Acceptance by variant × day with delta-method CIs (all events)",
        format!(
            "{:.3} s median of {REPEATS} ({} groups; runs {})",
            report_seconds,
            groups,
            seconds_list(&report_times)
        ),
        duck_seconds
            .map(|s| format!("DuckDB on Slope's segments: {s:.3} s median of {REPEATS}"))
            .unwrap_or_else(skipped),
        duck_seconds.map(|s| format!("{:.2}× (Slope ÷ DuckDB time)", report_seconds / s)).unwrap_or_else(skipped),
        "≤ 1.0×",
        format!("`curl '{report_url}'` (time_total; server port varies)"),
    ));
    if let Some(check) = &duck_acceptance {
        notes.push(format!(
            "Acceptance cross-check against DuckDB: {} of {} Slope groups matched, largest difference in the rate {}, in the standard error {}, groups with other user or event counts: {}.",
            number(check, "common_groups").unwrap_or_default(),
            number(check, "slope_groups").unwrap_or_default(),
            number(check, "max_value_diff").map(|d| format!("{d:.1e}")).unwrap_or_else(|| "n/a".into()),
            number(check, "max_se_diff").map(|d| format!("{d:.1e}")).unwrap_or_else(|| "n/a".into()),
            number(check, "count_mismatches").unwrap_or(f64::NAN),
        ));
    }

    step("Metric creation and a 100k-event follow-up batch");
    let duck_full_by_day = peer(&["acceptance-by-day", &path_arg(&listing), "-", &REPEATS.to_string()])?;
    let duck_with_follow_up =
        peer(&["acceptance-by-day", &path_arg(&listing), &path_arg(&follow_up), &REPEATS.to_string()])?;
    let metric_body =
        r#"{"key":"bench-acc","name":"Bench acceptance","kind":"acceptance-rate","loop":"bench","granularity":"day"}"#;
    let created = dir.join("metric.json");
    let metrics_url = format!("{}/api/v1/metrics", server.base);
    let (status, create_seconds) = curl(
        &token,
        &["-X", "POST", "-H", "Content-Type: application/json", "--data-binary", metric_body],
        &metrics_url,
        &created,
    )?;
    expect_status(status, 201, "POST /api/v1/metrics", &created)?;
    let by_day_seconds = duck_full_by_day.as_deref().and_then(|j| number(j, "seconds"));
    figures.push(Figure::new(
        "Metric creation: acceptance by day, full series",
        format!("{create_seconds:.3} s (one request)"),
        by_day_seconds
            .map(|s| format!("DuckDB acceptance by day over the segments: {s:.3} s median of {REPEATS}"))
            .unwrap_or_else(skipped),
        by_day_seconds.map(|s| format!("{:.2}× (Slope ÷ DuckDB time)", create_seconds / s)).unwrap_or_else(skipped),
        "",
        format!("`curl -X POST -H 'Content-Type: application/json' --data-binary '{metric_body}' {metrics_url}`"),
    ));
    let events_url = format!("{}/api/v1/loops/bench/events", server.base);
    let ack = dir.join("follow-up-ack.json");
    let follow_up_arg = format!("@{}", follow_up.display());
    let (status, follow_up_seconds) = curl(
        &token,
        &["-X", "POST", "-H", "Content-Type: application/x-ndjson", "--data-binary", &follow_up_arg],
        &events_url,
        &ack,
    )?;
    expect_status(status, 201, "POST /api/v1/loops/bench/events", &ack)?;
    let ack_text = fs::read_to_string(&ack).map_err(|e| e.to_string())?;
    if number(&ack_text, "stored") != Some(FOLLOW_UP_EVENTS as f64) || !ack_text.contains("bench-acc") {
        notes.push(format!("The follow-up batch's acknowledgement is not what the benchmark expects: {ack_text}"));
    }
    let incremental_seconds = duck_with_follow_up.as_deref().and_then(|j| number(j, "seconds"));
    figures.push(Figure::new(
        "Incremental update: 100k-event batch, touched buckets recomputed",
        format!("{follow_up_seconds:.3} s (one request)"),
        incremental_seconds
            .map(|s| format!("DuckDB acceptance by day over segments + batch, in full: {s:.3} s median of {REPEATS}"))
            .unwrap_or_else(skipped),
        incremental_seconds
            .map(|s| format!("{:.2}× (Slope ÷ DuckDB time)", follow_up_seconds / s))
            .unwrap_or_else(skipped),
        "",
        format!(
            "`curl -X POST -H 'Content-Type: application/x-ndjson' --data-binary @{} {events_url}`",
            shown(&follow_up)
        ),
    ));
    drop(server);

    step("Customer lifetime value: CDNOW summary");
    let mut fits = vec![];
    let cdnow = dir.join("cdnow.csv");
    if python.is_some() {
        peer(&["cdnow", &path_arg(&cdnow)])?;
    }
    if cdnow.exists() {
        let (slope_seconds, slope_fit, times) = slope_ltv(&slope, &cdnow, REPEATS)?;
        let lifetimes = peer(&["ltv", &path_arg(&cdnow), &REPEATS.to_string()])?;
        figures.push(ltv_figure("LTV fit: CDNOW summary (2,357 customers)", &cdnow, slope_seconds, &times, &lifetimes));
        fits.push(("CDNOW", None, slope_fit, lifetimes.as_deref().and_then(Ltv::from_json)));
    } else {
        notes.push("The CDNOW figures need lifetimes to export the summary: run once without --skip-python.".into());
    }

    step(&format!("Customer lifetime value: {} simulated customers", thousands(SIMULATED_CUSTOMERS as u64)));
    let simulated = dir.join("simulated.csv");
    generate_cached(&simulated, &format!("simulated {SIMULATED_CUSTOMERS} v1"), |w| {
        write_customers(w, SIMULATED_CUSTOMERS, TRUTH)
    })?;
    let (slope_seconds, slope_fit, times) = slope_ltv(&slope, &simulated, 1)?;
    let lifetimes = peer(&["ltv", &path_arg(&simulated), "1"])?;
    figures.push(ltv_figure("LTV fit: 1,000,000 simulated customers", &simulated, slope_seconds, &times, &lifetimes));
    fits.push(("simulated", Some(TRUTH), slope_fit, lifetimes.as_deref().and_then(Ltv::from_json)));

    let report = render(&machine, &options, &figures, &fits, &notes);
    println!("\n{report}");
    let path = dir.join("report.md");
    fs::write(&path, &report).map_err(|e| format!("{}: {e}", path.display()))?;
    eprintln!("\nwritten to {}", shown(&path));
    Ok(())
}

fn skipped() -> String {
    "skipped (--skip-python)".into()
}

fn path_arg(path: &Path) -> String {
    path.display().to_string()
}

fn seconds_list(times: &[f64]) -> String {
    times.iter().map(|t| format!("{t:.3}")).collect::<Vec<_>>().join(", ")
}

fn ltv_figure(measure: &str, file: &Path, seconds: f64, times: &[f64], lifetimes: &Option<String>) -> Figure {
    let peer_seconds = lifetimes.as_deref().and_then(|j| number(j, "seconds"));
    let peer_fit = lifetimes.as_deref().and_then(|j| number(j, "fit_seconds"));
    let runs = if times.len() > 1 { format!(" median of {}", times.len()) } else { String::new() };
    Figure::new(
        measure,
        format!("{seconds:.3} s{runs} (whole process: read CSV, fit both)"),
        match (peer_seconds, peer_fit) {
            (Some(s), Some(f)) => format!("lifetimes: {s:.3} s{runs} (pandas read {:.3} s + fits {f:.3} s)", s - f),
            _ => skipped(),
        },
        peer_seconds.map(|s| format!("{:.3}× (Slope ÷ lifetimes time)", seconds / s)).unwrap_or_else(skipped),
        "≤ 0.25×",
        format!("`target/release/slope metrics ltv --summary {} --json`", shown(file)),
    )
}

// ---- machine -----------------------------------------------------------------------------------

pub(super) struct Machine {
    pub(super) cores: String,
    pub(super) cpu: String,
    pub(super) memory: String,
    pub(super) date: String,
    pub(super) commit: String,
}

pub(super) fn machine() -> Machine {
    let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name").and_then(|rest| rest.split_once(':')).map(|(_, m)| m.trim()))
        .unwrap_or("unknown CPU")
        .to_owned();
    let meminfo = fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let memory = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .map(|kb| format!("{:.1} GiB", kb / 1024.0 / 1024.0))
        .unwrap_or_else(|| "unknown".into());
    let text = |cmd: &mut Command| output(cmd).map(|s| s.trim().to_owned()).unwrap_or_else(|| "unknown".into());
    let dirty = output(Command::new("git").args(["status", "--porcelain"]).current_dir(root()))
        .is_some_and(|s| !s.trim().is_empty());
    Machine {
        cores: text(&mut Command::new("nproc")),
        cpu,
        memory,
        date: text(Command::new("date").args(["-u", "+%Y-%m-%d %H:%M UTC"])),
        commit: format!(
            "{}{}",
            text(Command::new("git").args(["rev-parse", "--short", "HEAD"]).current_dir(root())),
            if dirty { " with uncommitted changes" } else { "" }
        ),
    }
}

fn render(
    machine: &Machine,
    options: &Options,
    figures: &[Figure],
    fits: &[(&str, Option<Ltv>, Ltv, Option<Ltv>)],
    notes: &[String],
) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "## Loop metrics benchmark ({} events)\n", thousands(options.events));
    let _ = writeln!(
        out,
        "`cargo xtask bench-metrics --events {}{}{}` on {} ({} cores by `nproc`, {} memory), {}, commit {}.\n",
        options.events,
        if options.skip_python { " --skip-python" } else { "" },
        if options.no_build { " --no-build" } else { "" },
        machine.cpu,
        machine.cores,
        machine.memory,
        machine.date,
        machine.commit
    );
    let _ = writeln!(out, "| measure | Slope | peer | ratio | goal | command (Slope) |");
    let _ = writeln!(out, "| --- | --- | --- | --- | --- | --- |");
    for f in figures {
        let _ = writeln!(out, "| {} | {} | {} | {} | {} | {} |", f.measure, f.slope, f.peer, f.ratio, f.goal, f.how);
    }
    for (name, truth, slope, lifetimes) in fits {
        let _ = writeln!(out, "\nFitted parameters, {name}:\n");
        let _ = writeln!(
            out,
            "| parameter |{} Slope | lifetimes | relative difference |",
            if truth.is_some() { " truth |" } else { "" }
        );
        let _ = writeln!(out, "| --- |{} --- | --- | --- |", if truth.is_some() { " --- |" } else { "" });
        for (i, (key, value)) in slope.values().iter().enumerate() {
            let theirs = lifetimes.map(|l| l.values()[i].1);
            let _ = writeln!(
                out,
                "| {key} |{} {value:.6} | {} | {} |",
                truth.map(|t| format!(" {} |", t.values()[i].1)).unwrap_or_default(),
                theirs.map(|t| format!("{t:.6}")).unwrap_or_else(|| "–".into()),
                theirs.map(|t| format!("{:.1e}", (value - t).abs() / t.abs())).unwrap_or_else(|| "–".into()),
            );
        }
        if let Some(theirs) = lifetimes {
            let _ = writeln!(
                out,
                "\nLargest relative difference Slope vs lifetimes: {:.1e}.",
                slope.max_relative_difference(theirs)
            );
        }
        if let Some(truth) = truth {
            let _ = writeln!(
                out,
                "Largest relative difference Slope vs truth: {:.1e}.",
                slope.max_relative_difference(truth)
            );
        }
    }
    if !notes.is_empty() {
        let _ = writeln!(out, "\nNotes:\n");
        for note in notes {
            let _ = writeln!(out, "- {note}");
        }
    }
    let _ = writeln!(
        out,
        "\nPeers run in-process in Python (`bench/metrics_peers.py`, versions in `bench/requirements.txt`), so their times leave out interpreter start-up; Slope's CLI times are whole processes and its HTTP times are curl's `time_total`."
    );
    out
}

/// `1234567` as `1,234,567`.
pub(super) fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The number after `"key":` in a JSON text (whitespace allowed around the colon); enough for the flat
/// answers the benchmark reads, and keeps xtask free of a JSON crate.
fn number(json: &str, key: &str) -> Option<f64> {
    let needle = format!("\"{key}\"");
    json.match_indices(&needle).find_map(|(at, _)| {
        let rest = json[at + needle.len()..].trim_start().strip_prefix(':')?.trim_start();
        let end = rest
            .find(|c: char| !(c.is_ascii_digit() || matches!(c, '-' | '+' | '.' | 'e' | 'E')))
            .unwrap_or(rest.len());
        rest[..end].parse().ok()
    })
}

// ---- data --------------------------------------------------------------------------------------

/// Writes `path` with `write` unless a marker beside it says it was already written with the same
/// `recipe`: the generators are deterministic, so a rerun reuses a 2 GB file instead of rewriting it.
pub(super) fn generate_cached(
    path: &Path,
    recipe: &str,
    write: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
) -> Result {
    let marker = path.with_extension("recipe");
    if path.exists() && fs::read_to_string(&marker).is_ok_and(|m| m == recipe) {
        eprintln!("reusing {} ({recipe})", shown(path));
        return Ok(());
    }
    let _ = fs::remove_file(&marker);
    let started = Instant::now();
    let file = fs::File::create(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut out = BufWriter::with_capacity(1 << 20, file);
    write(&mut out).and_then(|_| out.flush()).map_err(|e| format!("writing {}: {e}", path.display()))?;
    fs::write(&marker, recipe).map_err(|e| e.to_string())?;
    let size = fs::metadata(path).map(|m| m.len()).unwrap_or_default();
    eprintln!("wrote {} ({:.1} MB) in {:.1} s", shown(path), size as f64 / 1e6, started.elapsed().as_secs_f64());
    Ok(())
}

/// Knuth's MMIX linear congruential generator: fast and good enough in its high bits to spread events.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }
}

/// A fixed scramble of a user number, so that a user's variant and habits stay the same across events.
fn mix(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// Today as days since 1970-01-01 (UTC).
pub(super) fn days_since_epoch() -> i64 {
    let seconds = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    (seconds / 86_400) as i64
}

/// Days since 1970-01-01 as a civil date (Howard Hinnant's algorithm), so that xtask needs no date crate.
pub(super) fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

const VARIANTS: [&str; 3] = ["control", "short", "long"];

/// One event line at `millis` after the first day: the user decides the variant and a base acceptance
/// propensity, the variant adds a lift, and each event adds noise, so the groups differ and have spread.
fn write_event(out: &mut dyn Write, rng: &mut Lcg, id: &str, first_day: i64, millis: u64) -> std::io::Result<()> {
    let seconds = millis / 1000;
    let (year, month, day) = civil(first_day + (seconds / 86_400) as i64);
    let time = seconds % 86_400;
    let user = rng.next() % USERS;
    let hash = mix(user);
    let variant = (hash % 3) as usize;
    let suggested = 20 + rng.next() % 300;
    let propensity = 0.15 + (hash >> 40) as f64 / (1u64 << 24) as f64 * 0.5 + variant as f64 * 0.03;
    let noise = (rng.next() % 1000) as f64 / 1000.0 * 0.3 - 0.15;
    let accepted = ((suggested as f64 * (propensity + noise).clamp(0.0, 1.0)) as u64).min(suggested);
    let latency = 80 + rng.next() % 9000;
    writeln!(
        out,
        r#"{{"event_id":"{id}","ts":"{year}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z","loop":"bench","user_id":"u{user:06}","variant":"{}","suggested_chars":{suggested},"accepted_chars":{accepted},"latency_ms":{}.{},"cost_usd":{:.6},"unit":"unit-{}"}}"#,
        time / 3600,
        time / 60 % 60,
        time % 60,
        millis % 1000,
        VARIANTS[variant],
        latency / 10,
        latency % 10,
        suggested as f64 * 2.0e-6,
        hash % 12,
    )
}

/// `n` events over `DAYS` days in time order, as a log arrives; each is up to ten minutes late.
pub(super) fn write_events(out: &mut dyn Write, n: u64, first_day: i64) -> std::io::Result<()> {
    let mut rng = Lcg(42);
    let span = DAYS * 86_400_000 - 600_000;
    for i in 0..n {
        let millis = (i as u128 * span as u128 / n as u128) as u64 + rng.next() % 600_000;
        write_event(out, &mut rng, &format!("e{i:010}"), first_day, millis)?;
    }
    Ok(())
}

/// New events with new ids in the last `FOLLOW_UP_DAYS` days of the range.
fn write_follow_up(out: &mut dyn Write, n: u64, first_day: i64) -> std::io::Result<()> {
    let mut rng = Lcg(7);
    let from = (DAYS - FOLLOW_UP_DAYS) * 86_400_000;
    let span = FOLLOW_UP_DAYS * 86_400_000;
    for i in 0..n {
        let millis = from + rng.next() % span;
        write_event(out, &mut rng, &format!("f{i:08}"), first_day, millis)?;
    }
    Ok(())
}

/// SplitMix64: better low bits than the LCG, which the gamma and beta draws need.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        mix(self.0)
    }

    /// Uniform on the open interval (0, 1), so that logarithms stay finite.
    fn uniform(&mut self) -> f64 {
        ((self.next() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }

    fn normal(&mut self) -> f64 {
        (-2.0 * self.uniform().ln()).sqrt() * (std::f64::consts::TAU * self.uniform()).cos()
    }

    /// Gamma(shape, scale) by Marsaglia and Tsang; shapes below 1 by the boost U^(1/shape).
    fn gamma(&mut self, shape: f64, scale: f64) -> f64 {
        if shape < 1.0 {
            let boost = self.uniform().powf(1.0 / shape);
            return self.gamma(shape + 1.0, scale) * boost;
        }
        let d = shape - 1.0 / 3.0;
        let c = 1.0 / (9.0 * d).sqrt();
        loop {
            let x = self.normal();
            let v = (1.0 + c * x).powi(3);
            if v > 0.0 && self.uniform().ln() < 0.5 * x * x + d - d * v + d * v.ln() {
                return d * v * scale;
            }
        }
    }

    fn beta(&mut self, a: f64, b: f64) -> f64 {
        let x = self.gamma(a, 1.0);
        x / (x + self.gamma(b, 1.0))
    }
}

/// Customer summaries drawn from the BG/NBD and Gamma-Gamma models with known parameters, the way
/// lifetimes' `beta_geometric_nbd_model` simulates them: purchases at rate λ ~ Gamma(r, 1/α) until T,
/// each followed by a drop-out with probability p ~ Beta(a, b); each transaction's value is
/// Gamma(p, ν) with ν ~ Gamma(q, v). T spreads over 27–39 weeks like CDNOW's.
fn write_customers(out: &mut dyn Write, n: usize, truth: Ltv) -> std::io::Result<()> {
    let mut rng = SplitMix(2027);
    writeln!(out, "frequency,recency,T,monetary_value")?;
    for _ in 0..n {
        let t = 27.0 + 12.0 * rng.uniform();
        let rate = rng.gamma(truth.r, 1.0 / truth.alpha);
        let drop_out = rng.beta(truth.a, truth.b);
        let (mut x, mut at, mut recency) = (0u32, 0.0, 0.0);
        loop {
            at += -rng.uniform().ln() / rate;
            if at >= t {
                break;
            }
            x += 1;
            recency = at;
            if rng.uniform() < drop_out {
                break;
            }
        }
        let monetary = if x == 0 {
            0.0
        } else {
            let nu = rng.gamma(truth.q, 1.0 / truth.v);
            rng.gamma(truth.p * f64::from(x), 1.0 / nu) / f64::from(x)
        };
        writeln!(out, "{x},{recency:.4},{t:.4},{monetary:.4}")?;
    }
    Ok(())
}

// ---- Slope -------------------------------------------------------------------------------------

/// `slope` with no configuration from the environment, run from the benchmark's folder so that no
/// `slope.toml` or `DATABASE_URL` of the developer's points it at another database.
pub(super) fn slope_command(binary: &Path) -> Command {
    let mut cmd = Command::new(binary);
    cmd.current_dir(bench_dir())
        .env("SLOPE_LOG", "warn")
        .env_remove("DATABASE_URL")
        .env_remove("SLOPE_CONFIG")
        .env_remove("SLOPE_DATABASE_URL")
        .env_remove("SLOPE_DATA_DIR")
        .env_remove("SLOPE_EVENT_STORE");
    cmd
}

struct Ingested {
    seconds: f64,
    commands: Vec<String>,
    /// Slope's message when it refused the whole file as one batch.
    refusal: Option<String>,
}

/// Times `slope ingest` of the whole file as one batch; when Slope refuses it for its size, times the
/// file sent as parts instead, one process after another.
fn ingest(slope: &Path, events: &Path, data: &Path, n: u64) -> Result<Ingested> {
    let size = fs::metadata(events).map_err(|e| e.to_string())?.len();
    let (seconds, stored, result) = ingest_one(slope, events, data)?;
    let command = |file: &Path| {
        format!("target/release/slope ingest {} --loop bench --data-dir {} --json", shown(file), shown(data))
    };
    match result {
        Ok(()) => {
            if stored != n {
                return Err(format!("slope ingest stored {stored} of {n} events"));
            }
            Ok(Ingested { seconds, commands: vec![command(events)], refusal: None })
        }
        // Slope's wording has changed before ("send several batches", "so split the file"); the size
        // limit in MiB is what every version names.
        Err(message) if size > MAX_BATCH_BYTES && message.contains("512 MiB") => {
            // The last line is Slope's own message; earlier ones are its log.
            let refusal = message.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or_default().trim().to_owned();
            eprintln!("slope refused the file as one batch ({refusal}); sending it in parts");
            let parts = split(events, PART_BYTES)?;
            let (mut total, mut stored_all, mut commands) = (0.0, 0, vec![]);
            for part in &parts {
                let (seconds, stored, result) = ingest_one(slope, part, data)?;
                result.map_err(|e| format!("slope ingest {}: {e}", part.display()))?;
                eprintln!("{}: {stored} events in {seconds:.2} s", shown(part));
                total += seconds;
                stored_all += stored;
                commands.push(command(part));
            }
            for part in &parts {
                let _ = fs::remove_file(part);
            }
            if stored_all != n {
                return Err(format!("slope ingest stored {stored_all} of {n} events"));
            }
            Ok(Ingested { seconds: total, commands, refusal: Some(refusal) })
        }
        Err(message) => Err(format!("slope ingest {}: {message}", events.display())),
    }
}

/// One `slope ingest` process: its wall time, the events it stored and its error message.
fn ingest_one(slope: &Path, file: &Path, data: &Path) -> Result<(f64, u64, std::result::Result<(), String>)> {
    let mut cmd = slope_command(slope);
    cmd.arg("ingest").arg(file).args(["--loop", "bench", "--json", "--data-dir"]).arg(data);
    eprintln!("$ slope ingest {} --loop bench --json --data-dir {}", shown(file), shown(data));
    let started = Instant::now();
    let out = cmd.output().map_err(|e| format!("cannot run {}: {e}", slope.display()))?;
    let seconds = started.elapsed().as_secs_f64();
    if out.status.success() {
        let ack = String::from_utf8_lossy(&out.stdout);
        let stored = number(&ack, "stored").ok_or_else(|| format!("no `stored` in slope ingest's answer: {ack}"))?;
        Ok((seconds, stored as u64, Ok(())))
    } else {
        Ok((seconds, 0, Err(String::from_utf8_lossy(&out.stderr).into_owned())))
    }
}

/// Splits an NDJSON file at line ends into parts of at most `limit` bytes, beside it.
pub(super) fn split(file: &Path, limit: u64) -> Result<Vec<PathBuf>> {
    let reader = BufReader::with_capacity(1 << 20, fs::File::open(file).map_err(|e| e.to_string())?);
    let mut parts = vec![];
    let mut current: Option<(BufWriter<fs::File>, u64)> = None;
    for line in reader.split(b'\n') {
        let line = line.map_err(|e| e.to_string())?;
        let len = line.len() as u64 + 1;
        if current.as_ref().is_none_or(|(_, written)| written + len > limit) {
            if let Some((mut w, _)) = current.take() {
                w.flush().map_err(|e| e.to_string())?;
            }
            let path = file.with_file_name(format!("events-part-{:02}.ndjson", parts.len() + 1));
            current = Some((BufWriter::with_capacity(1 << 20, fs::File::create(&path).map_err(|e| e.to_string())?), 0));
            parts.push(path);
        }
        let (w, written) = current.as_mut().expect("a part is open");
        w.write_all(&line).and_then(|_| w.write_all(b"\n")).map_err(|e| e.to_string())?;
        *written += len;
    }
    if let Some((mut w, _)) = current {
        w.flush().map_err(|e| e.to_string())?;
    }
    Ok(parts)
}

/// Every `.parquet` file under `dir`, sorted.
fn parquet_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut found = vec![];
    let mut pending = vec![dir.to_path_buf()];
    while let Some(d) = pending.pop() {
        for entry in fs::read_dir(&d).map_err(|e| format!("{}: {e}", d.display()))? {
            let path = entry.map_err(|e| e.to_string())?.path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|e| e == "parquet") {
                found.push(path);
            }
        }
    }
    found.sort();
    if found.is_empty() {
        return Err(format!("slope ingest wrote no Parquet segment under {}", dir.display()));
    }
    Ok(found)
}

/// A running `slope serve`, stopped on drop. Its stdout stays open so that a later line cannot fail.
struct Server {
    child: Child,
    base: String,
    _stdout: BufReader<ChildStdout>,
}

impl Server {
    fn start(binary: &Path, data: &Path, dir: &Path) -> Result<Server> {
        let log = fs::File::create(dir.join("serve.log")).map_err(|e| e.to_string())?;
        let mut child = slope_command(binary)
            .args(["serve", "--bind", "127.0.0.1:0", "--data-dir"])
            .arg(data)
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", binary.display()))?;
        let mut stdout = BufReader::new(child.stdout.take().ok_or("no stdout")?);
        let mut line = String::new();
        stdout.read_line(&mut line).map_err(|e| e.to_string())?;
        let Some(base) = line.trim().strip_prefix("slope listening on ") else {
            let _ = child.kill();
            let _ = child.wait();
            let log = fs::read_to_string(dir.join("serve.log")).unwrap_or_default();
            return Err(format!("slope serve did not start (first line {line:?}); its log:\n{log}"));
        };
        Ok(Server { base: base.to_owned(), child, _stdout: stdout })
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One request with curl: the status and curl's `time_total`, which leaves out curl's own start-up.
/// The answer goes to `body`.
/// A token of the organisation that `slope ingest` wrote into, allowed to read, change and ingest.
pub(super) fn api_token(slope: &Path, data: &Path) -> Result<String> {
    let mut cmd = slope_command(slope);
    cmd.args(["token", "create", "--name", "bench-metrics", "--scopes", "read,write,ingest", "--data-dir"]).arg(data);
    let out = cmd.output().map_err(|e| format!("cannot run {}: {e}", slope.display()))?;
    if !out.status.success() {
        return Err(format!("slope token create failed: {}", String::from_utf8_lossy(&out.stderr).trim()));
    }
    let printed = String::from_utf8_lossy(&out.stdout);
    printed
        .split_whitespace()
        .find(|word| word.starts_with("slope_"))
        .map(str::to_owned)
        .ok_or_else(|| format!("slope token create printed no token: {printed}"))
}

fn curl(token: &str, args: &[&str], url: &str, body: &Path) -> Result<(u16, f64)> {
    let out = Command::new("curl")
        .args(["-sS", "-H", &format!("Authorization: Bearer {token}"), "-o"])
        .arg(body)
        .args(["-w", "%{http_code} %{time_total}"])
        .args(args)
        .arg(url)
        .output()
        .map_err(|e| format!("cannot run curl: {e}"))?;
    if !out.status.success() {
        return Err(format!("curl {url}: {}", String::from_utf8_lossy(&out.stderr).trim()));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut fields = text.split_whitespace();
    let status = fields.next().and_then(|s| s.parse().ok()).ok_or_else(|| format!("curl wrote {text:?}"))?;
    let seconds = fields.next().and_then(|s| s.parse().ok()).ok_or_else(|| format!("curl wrote {text:?}"))?;
    Ok((status, seconds))
}

fn expect_status(status: u16, expected: u16, what: &str, body: &Path) -> Result {
    if status == expected {
        return Ok(());
    }
    let answer = fs::read_to_string(body).unwrap_or_default();
    let answer: String = answer.chars().take(2000).collect();
    Err(format!("{what} answered {status}, not {expected}: {answer}"))
}

/// Runs `measure` once to warm up and then `repeats` times; the median and every timed run.
fn median_of(repeats: usize, mut measure: impl FnMut() -> Result<f64>) -> Result<(f64, Vec<f64>)> {
    measure()?;
    let times = (0..repeats).map(|_| measure()).collect::<Result<Vec<f64>>>()?;
    let mut sorted = times.clone();
    sorted.sort_by(f64::total_cmp);
    Ok((sorted[sorted.len() / 2], times))
}

/// `slope metrics ltv --summary FILE --json` timed as a whole process, `repeats` times after a warm-up
/// when more than one; the median, the fitted parameters and every timed run.
fn slope_ltv(slope: &Path, summary: &Path, repeats: usize) -> Result<(f64, Ltv, Vec<f64>)> {
    let mut answer = String::new();
    let mut once = || -> Result<f64> {
        let started = Instant::now();
        let out = slope_command(slope)
            .args(["metrics", "ltv", "--json", "--summary"])
            .arg(summary)
            .output()
            .map_err(|e| e.to_string())?;
        let seconds = started.elapsed().as_secs_f64();
        if !out.status.success() {
            return Err(format!(
                "slope metrics ltv --summary {}: {}",
                summary.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        answer = String::from_utf8_lossy(&out.stdout).into_owned();
        Ok(seconds)
    };
    let (seconds, times) = if repeats > 1 {
        median_of(repeats, &mut once)?
    } else {
        let s = once()?;
        (s, vec![s])
    };
    let fit = Ltv::from_json(&answer).ok_or_else(|| format!("no parameters in slope's answer: {answer}"))?;
    Ok((seconds, fit, times))
}

// ---- Python peers ------------------------------------------------------------------------------

/// Runs a subcommand of `bench/metrics_peers.py`; its last line on stdout is a JSON object.
fn peer_json(python: &Path, args: &[&str]) -> Result<String> {
    eprintln!("$ python bench/metrics_peers.py {}", args.join(" "));
    let out = Command::new(python)
        .arg(root().join("bench").join("metrics_peers.py"))
        .args(args)
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", python.display()))?;
    if !out.status.success() {
        return Err(format!("bench/metrics_peers.py {} failed ({})", args.join(" "), out.status));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let last = text.lines().rev().find(|l| l.trim_start().starts_with('{')).unwrap_or_default();
    eprintln!("{last}");
    Ok(last.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates_match_the_calendar() {
        assert_eq!(civil(0), (1970, 1, 1));
        assert_eq!(civil(20_819), (2027, 1, 1));
        assert_eq!(civil(20_819 + 89), (2027, 3, 31));
        assert_eq!(civil(19_782), (2024, 2, 29));
    }

    #[test]
    fn numbers_are_read_from_pretty_and_compact_json() {
        let json = "{\n  \"a\": 0.79,\n  \"alpha\":4.41e0, \"stored\": 100000}";
        assert_eq!(number(json, "a"), Some(0.79));
        assert_eq!(number(json, "alpha"), Some(4.41));
        assert_eq!(number(json, "stored"), Some(100_000.0));
        assert_eq!(number(json, "b"), None);
    }

    #[test]
    fn events_are_valid_and_ordered() {
        let mut out = vec![];
        write_events(&mut out, 1000, 20_819).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(text.lines().count(), 1000);
        let first = text.lines().next().unwrap();
        assert!(first.starts_with(r#"{"event_id":"e0000000000","ts":"2027-01-01T"#), "{first}");
        let last = text.lines().last().unwrap();
        assert!(last.contains(r#""ts":"2027-03-31T"#), "{last}");
        for line in text.lines() {
            let (s, a) = (number(line, "suggested_chars").unwrap(), number(line, "accepted_chars").unwrap());
            assert!(a <= s, "{line}");
        }
    }

    #[test]
    fn thousands_are_grouped() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(10_000_000), "10,000,000");
    }
}
