//! `cargo xtask bench-annotate [--items N] [--answers N] [--browser-answers N] [--no-build]`: how long an
//! annotator waits for the next item, on the server and in the browser.
//!
//! The release server and bundle run on a fresh SQLite file without demo data. A loop gets `--items`
//! interactions and a queue samples all of them (two annotators per item, so each item stays open after
//! one answer). Then, one annotator signed in:
//! - server: `--answers` times an answer is posted (`POST …/items/{id}/annotations`), whose reply carries
//!   the next item leased already; curl's own timer measures each request. `GET /healthz`, which
//!   touches no database, is the peer measured alongside, and resuming a held item (`POST …/next`) too;
//! - browser: a second annotator answers `--browser-answers` items on the work page with the keyboard
//!   (`bench/annotate_browser.mjs`, Debian Chromium), each wait measured inside the page from the Enter
//!   key's keydown to the next item in the DOM.

use std::fs;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use super::bench_common::{curl, number, quantile, sign_in, start_server, token};
use super::bench_metrics::{bench_dir, machine, slope_command, thousands};
use super::{Result, build, npm_install, root, step, target_dir};

const LOOP: &str = "bench-notes";
const QUEUE: &str = "bench-review";
const PASSWORD: &str = "bench annotator password";
const PLANS: [&str; 4] = ["rest and fluids.", "ibuprofen as needed.", "follow up in two weeks.", "order chest x-ray."];

struct Options {
    items: u64,
    answers: usize,
    browser_answers: usize,
    no_build: bool,
}

fn parse_options(args: &[String]) -> Result<Options> {
    let mut options = Options { items: 5_000, answers: 300, browser_answers: 60, no_build: false };
    let mut args = args.iter();
    let number = |name: &str, raw: Option<&String>| -> Result<u64> {
        let raw = raw.ok_or(format!("{name} needs a number"))?;
        raw.replace('_', "").parse().map_err(|_| format!("{name}: {raw:?} is not a number"))
    };
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--items" => options.items = number("--items", args.next())?.clamp(10, 5_000),
            "--answers" => options.answers = number("--answers", args.next())? as usize,
            "--browser-answers" => options.browser_answers = number("--browser-answers", args.next())? as usize,
            "--no-build" => options.no_build = true,
            other => {
                return Err(format!(
                    "bench-annotate: unknown argument {other:?} (use --items N, --answers N, --browser-answers N, --no-build)"
                ));
            }
        }
    }
    Ok(options)
}

/// `n` interactions of the loop over the last ten days, each with a context, a rejected suggestion and
/// what was written.
fn write_interactions(path: &Path, n: u64) -> Result {
    let mut out = std::io::BufWriter::new(fs::File::create(path).map_err(|e| e.to_string())?);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_err(|e| e.to_string())?.as_secs();
    for i in 0..n {
        let ts = now - 10 * 86_400 + i * (9 * 86_400 / n.max(1));
        writeln!(
            out,
            r#"{{"event_id":"b-{i}","ts":{ts_json},"user_id":"u{u}","variant":"v1","suggested_chars":13,"accepted_chars":0,"context":"Pt {i} reports cough for {d} days. Plan: ","suggestion":"order an MRI.","final_text":"{plan}"}}"#,
            ts_json = format_args!("\"{}\"", rfc3339(ts)),
            u = i % 50,
            d = 1 + i % 9,
            plan = PLANS[(i % 4) as usize],
        )
        .map_err(|e| e.to_string())?;
    }
    out.flush().map_err(|e| e.to_string())
}

/// Seconds since 1970 as `YYYY-MM-DDTHH:MM:SSZ`.
fn rfc3339(secs: u64) -> String {
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = super::bench_metrics::civil(days as i64);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", rest / 3600, rest % 3600 / 60, rest % 60)
}

/// Adds an annotator with `slope admin member`, its password on standard input.
fn annotator(slope: &Path, data: &Path, email: &str) -> Result {
    let mut child = slope_command(slope)
        .args(["admin", "member", "--email", email, "--role", "annotator", "--data-dir"])
        .arg(data)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .map_err(|e| e.to_string())?;
    child.stdin.take().ok_or("no stdin")?.write_all(format!("{PASSWORD}\n").as_bytes()).map_err(|e| e.to_string())?;
    let status = child.wait().map_err(|e| e.to_string())?;
    if status.success() { Ok(()) } else { Err(format!("adding {email} failed")) }
}

fn summary(name: &str, mut ms: Vec<f64>, peer: Option<f64>) -> String {
    ms.sort_by(f64::total_cmp);
    let (p50, p99) = (quantile(&ms, 0.5), quantile(&ms, 0.99));
    let ratio = peer.map(|p| format!(" | {:.1}×", p50 / p)).unwrap_or_else(|| " | —".into());
    format!("| {name} | {} | {p50:.1} | {p99:.1}{ratio} |", ms.len())
}

pub fn bench_annotate(args: &[String]) -> Result {
    let options = parse_options(args)?;
    let dir = bench_dir();
    fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let slope = target_dir().join("release").join("slope");
    let site = target_dir().join("site");
    if !options.no_build {
        npm_install()?;
        build(true)?;
    }
    let data = dir.join("annotate-data");
    if data.exists() {
        fs::remove_dir_all(&data).map_err(|e| e.to_string())?;
    }
    let mut cmd = slope_command(&slope);
    cmd.args(["serve", "--bind", "127.0.0.1:0", "--data-dir"])
        .arg(&data)
        .arg("--site-root")
        .arg(&site)
        .env("SLOPE_BASE_MODEL", "")
        .env("SLOPE_WORKERS", "0");
    let server = start_server(cmd, &dir.join("annotate-serve.log"))?;
    let base = server.base.clone();
    let token = token(&slope, &data, None, "bench-annotate")?;
    let bearer = format!("Authorization: Bearer {token}");

    step(&format!("A loop of {} interactions and a queue over all of them", thousands(options.items)));
    let events = dir.join("annotate-events.ndjson");
    write_interactions(&events, options.items)?;
    let (status, _, body) = curl(&[
        "-X",
        "POST",
        "-H",
        &bearer,
        "-H",
        "Content-Type: application/x-ndjson",
        "--data-binary",
        &format!("@{}", events.display()),
        &format!("{base}/api/v1/loops/{LOOP}/events"),
    ]);
    if status != 201 {
        return Err(format!("ingesting the interactions answered {status}: {body}"));
    }
    let queue = format!(
        r#"{{"key":"{QUEUE}","name":"Bench review","loop":"{LOOP}","sampling":{{"policy":"random","share":1,"limit":5000}},"labels":{{"correction":true,"rating":true}},"annotators_per_item":2}}"#
    );
    let (status, _, body) = curl(&[
        "-X",
        "POST",
        "-H",
        &bearer,
        "-H",
        "Content-Type: application/json",
        "--data",
        &queue,
        &format!("{base}/api/v1/annotation-queues"),
    ]);
    if status != 201 {
        return Err(format!("creating the queue answered {status}: {body}"));
    }
    let items = number(&body, "added").unwrap_or(0.0);

    step(&format!("Server: {} answers, each replied with the next item", options.answers));
    annotator(&slope, &data, "server@bench.slope")?;
    let cookie = format!("Cookie: {}", sign_in(&base, "server@bench.slope", PASSWORD)?);
    let origin = format!("Origin: {base}");
    let next_url = format!("{base}/api/v1/annotation-queues/{QUEUE}/next");
    let (status, _, first) = curl(&["-X", "POST", "-H", &cookie, "-H", &origin, &next_url]);
    let mut item = number(&first, "item_id").ok_or(format!("no first item ({status}): {first}"))? as i64;
    let (mut answer, mut resume, mut peer) = (vec![], vec![], vec![]);
    let started = Instant::now();
    for n in 0..options.answers {
        let body = format!(r#"{{"correction":"{}","rating":4}}"#, PLANS[n % 4]);
        let (status, seconds, reply) = curl(&[
            "-X",
            "POST",
            "-H",
            &cookie,
            "-H",
            &origin,
            "-H",
            "Content-Type: application/json",
            "--data",
            &body,
            &format!("{base}/api/v1/annotation-queues/{QUEUE}/items/{item}/annotations"),
        ]);
        if status != 201 {
            return Err(format!("answer {n} answered {status}: {reply}"));
        }
        answer.push(seconds * 1e3);
        let next = reply.find("\"next\":").map(|at| &reply[at..]).unwrap_or_default();
        item = number(next, "item_id").ok_or(format!("answer {n} carried no next item: {reply}"))? as i64;
        let (_, seconds, _) = curl(&["-X", "POST", "-H", &cookie, "-H", &origin, &next_url]);
        resume.push(seconds * 1e3);
        let (_, seconds, _) = curl(&[&format!("{base}/healthz")]);
        peer.push(seconds * 1e3);
    }
    let server_seconds = started.elapsed().as_secs_f64();

    step(&format!("Browser: {} answers with the keyboard on the work page", options.browser_answers));
    annotator(&slope, &data, "browser@bench.slope")?;
    let out = Command::new("node")
        .arg(root().join("bench").join("annotate_browser.mjs"))
        .env("BENCH_BASE", &base)
        .env("BENCH_QUEUE", QUEUE)
        .env("BENCH_EMAIL", "browser@bench.slope")
        .env("BENCH_PASSWORD", PASSWORD)
        .env("BENCH_ANSWERS", options.browser_answers.to_string())
        .output()
        .map_err(|e| format!("cannot run node: {e}"))?;
    let printed = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(format!("the browser bench failed: {printed}{}", String::from_utf8_lossy(&out.stderr)));
    }
    let line = printed.lines().find(|l| l.contains("samples_ms")).ok_or("the browser bench printed no samples")?;
    let inner = line.split('[').nth(1).and_then(|s| s.split(']').next()).unwrap_or_default();
    let browser: Vec<f64> = inner.split(',').filter_map(|v| v.trim().parse().ok()).collect();

    let mut sorted_peer = peer.clone();
    sorted_peer.sort_by(f64::total_cmp);
    let peer_p50 = quantile(&sorted_peer, 0.5);
    let m = machine();
    println!(
        "\n## bench-annotate: {items} items; {} cores, {}, {}; {} at {}",
        m.cores, m.cpu, m.memory, m.date, m.commit
    );
    println!("Server: {} answers in {server_seconds:.1} s; milliseconds, curl's timer on loopback.\n", options.answers);
    println!("| What | n | p50 ms | p99 ms | p50 / peer p50 |");
    println!("| --- | --- | --- | --- | --- |");
    println!(
        "{}",
        summary("answer, replied with the next item (POST …/items/{id}/annotations)", answer, Some(peer_p50))
    );
    println!("{}", summary("resume the held item (POST …/next)", resume, Some(peer_p50)));
    println!("{}", summary("peer: no database (GET /healthz)", peer, Some(peer_p50)));
    println!("{}", summary("browser: Enter to the next item in the DOM (release bundle, Chromium)", browser, None));
    Ok(())
}
