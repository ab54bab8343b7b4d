//! `cargo xtask soak [--minutes N] [--postgres ADMIN_URL] [--no-build]`: mixed traffic against release
//! servers for N minutes (10 by default), then a check that nothing was lost.
//!
//! On SQLite one server runs; with `--postgres` a fresh database is made on that server and two
//! servers share it and one event store folder, and every kind of traffic alternates between them. The
//! traffic, each kind in a thread of its own: a batch of 1,000 new events every second (every tenth
//! sent twice, as a client's retry would be), a page view every 250 ms (seasons, a loop, the season
//! page, squads, jobs), a key result's check-in every 500 ms, a sign-in every 2 s, and one fine-tune
//! (SFT of the base model on the `notes` loop's dataset) submitted at the start and polled every 5 s.
//! The report counts 5xx answers and gives p50/p99 per route; afterwards every acknowledged event must
//! be stored exactly once (the loop's event count equals the sum of the acknowledged `stored`) and the
//! fine-tune must have ended, once, in success.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::bench_common::{Server, curl, number, quantile, sign_in, start_server, text, token};
use super::bench_metrics::{bench_dir, civil, machine, slope_command, thousands};
use super::{Result, cargo, root, run, step, target_dir};

const LEADER: (&str, &str) = ("leader@demo.slope", "demo-leader-pass");
const BATCH_EVENTS: usize = 1_000;

struct Options {
    minutes: u64,
    postgres: Option<String>,
    no_build: bool,
}

fn parse_options(args: &[String]) -> Result<Options> {
    let mut options = Options { minutes: 10, postgres: None, no_build: false };
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--minutes" => {
                let raw = args.next().ok_or("--minutes needs a number")?;
                options.minutes = raw.parse().map_err(|_| format!("--minutes: {raw:?} is not a number"))?;
            }
            "--postgres" => options.postgres = Some(args.next().ok_or("--postgres needs an admin URL")?.clone()),
            "--no-build" => options.no_build = true,
            other => {
                return Err(format!("soak: unknown argument {other:?} (use --minutes N, --postgres URL, --no-build)"));
            }
        }
    }
    Ok(options)
}

fn start(slope: &Path, data: &Path, database: Option<&str>, log: &Path) -> Result<Server> {
    let mut cmd = slope_command(slope);
    cmd.args(["serve", "--demo", "--bind", "127.0.0.1:0", "--data-dir"])
        .arg(data)
        .env("SLOPE_SIMULATOR", "false")
        // The servers run in the bench folder; the shipped base model is the fine-tune's start.
        .env("SLOPE_BASE_MODEL", root().join("models").join("base"));
    if let Some(url) = database {
        cmd.env("DATABASE_URL", url);
    }
    start_server(cmd, log)
}

#[derive(Clone)]
struct Sample {
    route: &'static str,
    status: u16,
    seconds: f64,
}

#[derive(Clone)]
struct Ctx {
    bases: Vec<String>,
    token: String,
    sessions: Vec<String>,
    samples: Arc<Mutex<Vec<Sample>>>,
    stop: Arc<AtomicBool>,
}

impl Ctx {
    fn record(&self, route: &'static str, status: u16, seconds: f64) {
        self.samples.lock().unwrap().push(Sample { route, status, seconds });
    }

    fn base(&self, n: u64) -> &str {
        &self.bases[n as usize % self.bases.len()]
    }

    fn bearer(&self) -> String {
        format!("Authorization: Bearer {}", self.token)
    }

    /// Runs `each` every `period` until the soak ends.
    fn every(&self, period: Duration, mut each: impl FnMut(u64)) {
        let mut n = 0;
        while !self.stop.load(Ordering::SeqCst) {
            let started = Instant::now();
            each(n);
            n += 1;
            thread::sleep(period.saturating_sub(started.elapsed()));
        }
    }
}

fn batch(seq: u64) -> String {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    let mut out = String::with_capacity(BATCH_EVENTS * 200);
    for i in 0..BATCH_EVENTS {
        // Spread over the last hour, so batches overlap each other in time as live traffic does.
        let ts = now - 3600 + ((seq * 7 + i as u64 * 13) % 3600);
        let (year, month, day) = civil((ts / 86_400) as i64);
        let time = ts % 86_400;
        let (suggested, accepted) = (40 + (i % 60), (i * 7) % 40);
        out.push_str(&format!(
            "{{\"event_id\":\"soak-{seq}-{i}\",\"ts\":\"{year}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z\",\"loop\":\"soak\",\"user_id\":\"u{}\",\"variant\":\"control\",\"suggested_chars\":{suggested},\"accepted_chars\":{accepted}}}\n",
            time / 3600,
            time / 60 % 60,
            time % 60,
            i % 97
        ));
    }
    out
}

pub fn soak(args: &[String]) -> Result {
    let options = parse_options(args)?;
    let slope = target_dir().join("release").join("slope");
    if !options.no_build {
        step("Building slope (release)");
        run(cargo().args(["build", "--release", "-p", "slope"]))?;
    }
    let dir = bench_dir().join("soak");
    let data = dir.join(if options.postgres.is_some() { "data-postgres" } else { "data-sqlite" });
    if data.exists() {
        fs::remove_dir_all(&data).map_err(|e| e.to_string())?;
    }
    fs::create_dir_all(&data).map_err(|e| e.to_string())?;
    let database = match &options.postgres {
        None => None,
        Some(admin) => {
            let name =
                format!("slope_soak_{}", SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs());
            run(Command::new("psql").arg(admin).args([
                "-v",
                "ON_ERROR_STOP=1",
                "-c",
                &format!("CREATE DATABASE {name}"),
            ]))?;
            let (prefix, _) = admin.rsplit_once('/').ok_or("--postgres: the URL names no database")?;
            Some(format!("{prefix}/{name}"))
        }
    };
    let store = if database.is_some() { "PostgreSQL, two servers" } else { "SQLite, one server" };
    step(&format!("Soak on {store}: {} minutes of mixed traffic", options.minutes));
    let mut servers = vec![start(&slope, &data, database.as_deref(), &dir.join("server-1.log"))?];
    let token = token(&slope, &data, database.as_deref(), "soak")?;
    if database.is_some() {
        // The second starts once the first has seeded the demo, which it then finds.
        servers.push(start(&slope, &data, database.as_deref(), &dir.join("server-2.log"))?);
    }
    let bases: Vec<String> = servers.iter().map(|s| s.base.clone()).collect();
    let sessions = bases.iter().map(|b| sign_in(b, LEADER.0, LEADER.1)).collect::<Result<Vec<_>>>()?;
    let ctx = Ctx { bases, token, sessions, samples: Arc::default(), stop: Arc::default() };

    // The fine-tune: the notes loop's SFT set from its events, the base model, a short run.
    let (status, _, built) =
        curl(&["-X", "POST", "-H", &ctx.bearer(), &format!("{}/api/v1/loops/notes/datasets", ctx.base(0))]);
    if status != 201 {
        return Err(format!("building the notes datasets answered {status}: {built}"));
    }
    let sft = built.find("\"sft\":").and_then(|at| number(&built[at..], "id")).ok_or("no SFT dataset was built")?;
    let (_, _, models) = curl(&["-H", &ctx.bearer(), &format!("{}/api/v1/models", ctx.base(0))]);
    let base_model = number(&models, "id").ok_or("no base model is registered")?;
    let job = format!(
        r#"{{"kind":"sft","loop":"notes","model_id":{base_model},"dataset_id":{sft},"train":{{"steps":60,"batch_size":8,"checkpoint_every":20}}}}"#
    );
    let (status, _, submitted) = curl(&[
        "-X",
        "POST",
        "-H",
        &ctx.bearer(),
        "-H",
        "Content-Type: application/json",
        "--data",
        &job,
        &format!("{}/api/v1/jobs", ctx.base(0)),
    ]);
    let job_id = number(&submitted, "id")
        .filter(|_| status == 201)
        .ok_or(format!("submitting the fine-tune: {status} {submitted}"))?;

    let acked = Arc::new(AtomicU64::new(0));
    let batches = Arc::new(AtomicU64::new(0));
    let mut threads = vec![];
    {
        let (ctx, acked, batches) = (ctx.clone(), acked.clone(), batches.clone());
        threads.push(thread::spawn(move || {
            let body_file = std::env::temp_dir().join(format!("slope-soak-{}.ndjson", std::process::id()));
            ctx.every(Duration::from_secs(1), |n| {
                let _ = fs::File::create(&body_file).and_then(|mut f| f.write_all(batch(n).as_bytes()));
                let sends = if n % 10 == 9 { 2 } else { 1 };
                for attempt in 0..sends {
                    let (status, seconds, body) = curl(&[
                        "-X",
                        "POST",
                        "-H",
                        &ctx.bearer(),
                        "-H",
                        "Content-Type: application/x-ndjson",
                        "-H",
                        &format!("Idempotency-Key: soak-{n}"),
                        "--data-binary",
                        &format!("@{}", body_file.display()),
                        &format!("{}/api/v1/loops/soak/events", ctx.base(n + attempt)),
                    ]);
                    ctx.record("POST /api/v1/loops/{loop}/events", status, seconds);
                    if status == 201 && attempt == 0 {
                        acked.fetch_add(number(&body, "stored").unwrap_or(0.0) as u64, Ordering::SeqCst);
                        batches.fetch_add(1, Ordering::SeqCst);
                    }
                }
            });
            let _ = fs::remove_file(&body_file);
        }));
    }
    {
        let ctx = ctx.clone();
        threads.push(thread::spawn(move || {
            let pages: [(&'static str, &str); 5] = [
                ("GET / (seasons)", "/"),
                ("GET /loops/notes", "/loops/notes"),
                ("GET /seasons/1", "/seasons/1"),
                ("GET /squads", "/squads"),
                ("GET /jobs", "/jobs"),
            ];
            ctx.every(Duration::from_millis(250), |n| {
                let (route, path) = pages[n as usize % pages.len()];
                let server = (n / pages.len() as u64) as usize % ctx.bases.len();
                let (status, seconds, _) = curl(&[
                    "-o",
                    "/dev/null",
                    "-H",
                    &format!("Cookie: {}", ctx.sessions[server]),
                    &format!("{}{path}", ctx.bases[server]),
                ]);
                ctx.record(route, status, seconds);
            });
        }));
    }
    {
        let ctx = ctx.clone();
        threads.push(thread::spawn(move || {
            ctx.every(Duration::from_millis(500), |n| {
                let body = format!(r#"{{"value":{},"confidence":0.6,"note":"soak","author":"soak"}}"#, n % 40);
                let (status, seconds, _) = curl(&[
                    "-o",
                    "/dev/null",
                    "-X",
                    "POST",
                    "-H",
                    &ctx.bearer(),
                    "-H",
                    "Content-Type: application/json",
                    "--data",
                    &body,
                    &format!("{}/api/v1/key-results/1/check-ins", ctx.base(n)),
                ]);
                ctx.record("POST /api/v1/key-results/{id}/check-ins", status, seconds);
            });
        }));
    }
    {
        let ctx = ctx.clone();
        threads.push(thread::spawn(move || {
            ctx.every(Duration::from_secs(2), |n| {
                let base = ctx.base(n).to_owned();
                let (status, seconds, _) = curl(&[
                    "-o",
                    "/dev/null",
                    "-H",
                    &format!("Origin: {base}"),
                    "--data",
                    &format!("email={}&password={}", LEADER.0, LEADER.1),
                    &format!("{base}/auth/login"),
                ]);
                ctx.record("POST /auth/login", status, seconds);
            });
        }));
    }
    let job_state: Arc<Mutex<String>> = Arc::default();
    {
        let (ctx, job_state) = (ctx.clone(), job_state.clone());
        threads.push(thread::spawn(move || {
            ctx.every(Duration::from_secs(5), |n| {
                let (status, seconds, body) =
                    curl(&["-H", &ctx.bearer(), &format!("{}/api/v1/jobs/{job_id}", ctx.base(n))]);
                ctx.record("GET /api/v1/jobs/{id}", status, seconds);
                if status == 200 {
                    *job_state.lock().unwrap() = body;
                }
            });
        }));
    }
    let started = Instant::now();
    let deadline = Duration::from_secs(options.minutes * 60);
    while started.elapsed() < deadline {
        thread::sleep(Duration::from_secs(30));
        let done = ctx.samples.lock().unwrap().len();
        eprintln!(
            "{:>4} s: {done} requests, {} events acknowledged",
            started.elapsed().as_secs(),
            thousands(acked.load(Ordering::SeqCst))
        );
    }
    ctx.stop.store(true, Ordering::SeqCst);
    for t in threads {
        t.join().map_err(|_| "a traffic thread panicked")?;
    }

    // Nothing lost: the loop holds exactly the acknowledged events, and the fine-tune ended once.
    let (_, _, loops) = curl(&["-H", &ctx.bearer(), &format!("{}/api/v1/loops", ctx.base(0))]);
    let stored = loops.find("\"soak\"").and_then(|at| number(&loops[at..], "events")).unwrap_or(-1.0) as i64;
    let acked = acked.load(Ordering::SeqCst) as i64;
    let (_, _, job) = curl(&["-H", &ctx.bearer(), &format!("{}/api/v1/jobs/{job_id}", ctx.base(0))]);
    let job_status = text(&job, "status").unwrap_or_else(|| "unknown".into());
    let attempts = number(&job, "attempts").unwrap_or(f64::NAN);
    drop(servers);

    let samples = ctx.samples.lock().unwrap().clone();
    let machine = machine();
    let mut routes: Vec<&'static str> = samples.iter().map(|s| s.route).collect();
    routes.sort();
    routes.dedup();
    let mut report = format!(
        "`cargo xtask soak --minutes {}{}` on {} ({} cores, {}), {}, commit {}: {store}.\n\n\
         | route | requests | 5xx | other failures | p50 | p99 | max |\n| --- | --- | --- | --- | --- | --- | --- |\n",
        options.minutes,
        if options.postgres.is_some() { " --postgres …" } else { "" },
        machine.cpu,
        machine.cores,
        machine.memory,
        machine.date,
        machine.commit,
    );
    let (mut total, mut errors) = (0, 0);
    for route in routes {
        let of: Vec<&Sample> = samples.iter().filter(|s| s.route == route).collect();
        let server_errors = of.iter().filter(|s| s.status >= 500 || s.status == 0).count();
        let other = of.iter().filter(|s| s.status < 500 && s.status != 0 && s.status >= 400).count();
        let mut times: Vec<f64> = of.iter().map(|s| s.seconds).filter(|t| t.is_finite()).collect();
        times.sort_by(f64::total_cmp);
        total += of.len();
        errors += server_errors;
        report.push_str(&format!(
            "| {route} | {} | {server_errors} | {other} | {:.1} ms | {:.1} ms | {:.1} ms |\n",
            of.len(),
            quantile(&times, 0.5) * 1e3,
            quantile(&times, 0.99) * 1e3,
            times.last().copied().unwrap_or(f64::NAN) * 1e3,
        ));
    }
    report.push_str(&format!(
        "\n{total} requests, {errors} answered 5xx (or not at all). Events: {} batches acknowledged, {} events \
         acknowledged, {} stored afterwards ({}). The fine-tune (job {job_id}): {job_status} after {attempts} \
         attempt(s).\n",
        batches.load(Ordering::SeqCst),
        thousands(acked as u64),
        thousands(stored.max(0) as u64),
        if stored == acked { "nothing lost, nothing doubled" } else { "MISMATCH" },
    ));
    // The soak's database goes once it is read; its report is the record.
    if let (Some(admin), Some(url)) = (&options.postgres, &database)
        && let Some((_, name)) = url.rsplit_once('/')
    {
        let _ = Command::new("psql").arg(admin).args(["-c", &format!("DROP DATABASE {name} WITH (FORCE)")]).output();
    }
    let out: PathBuf = dir.join(if options.postgres.is_some() { "soak-postgres.md" } else { "soak-sqlite.md" });
    fs::write(&out, &report).map_err(|e| e.to_string())?;
    println!("{report}");
    if stored != acked || job_status != "succeeded" || errors > 0 {
        return Err(format!("the soak found problems; see {}", out.display()));
    }
    Ok(())
}
