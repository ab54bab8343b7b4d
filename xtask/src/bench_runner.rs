//! `cargo xtask bench-runner [--skip-python] [--threads N]`: the runner's training speed and suggestion
//! latency against PyTorch, measured in one run on this machine with the same thread count.
//!
//! - candle: `cargo run --release -p slope-runner --example bench` (see `crates/runner/examples/bench.rs`):
//!   SFT of the default model, batch 16 × 128 tokens, AdamW and clipping, 5 warm-up steps then 20 timed;
//!   then 100 greedy suggestions of 16 bytes from ~100-byte contexts.
//! - PyTorch: `bench/runner_peer.py`, the same architecture in eager PyTorch, loaded with the very
//!   weights candle used, the same batch, steps and contexts, `torch.set_num_threads(N)`. It is
//!   installed from `bench/requirements-runner.txt` into a venv under the target directory by this
//!   command only.
//!
//! Both use `N` threads (default: every core), candle through `RAYON_NUM_THREADS`. The model is
//! `models/base` when it exists, otherwise a fresh default model from seed 1. The report is printed and
//! written to `target/bench-runner/report.md`.

use std::fmt::Write as _;
use std::fs;
use std::process::{Command, Stdio};

use super::{Result, cargo, output, root, run, step, target_dir};

struct Options {
    skip_python: bool,
    threads: usize,
}

fn parse(args: &[String]) -> Result<Options> {
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let mut o = Options { skip_python: false, threads: cores };
    let mut args = args.iter();
    while let Some(a) = args.next() {
        match a.as_str() {
            "--skip-python" => o.skip_python = true,
            "--threads" => {
                let v = args.next().ok_or("--threads needs a number")?;
                o.threads = v.parse().map_err(|_| format!("--threads: {v:?} is not a whole number"))?;
                if o.threads == 0 {
                    return Err("--threads: use at least 1".into());
                }
            }
            other => return Err(format!("bench-runner: unknown argument {other:?} (use --skip-python, --threads N)")),
        }
    }
    Ok(o)
}

pub fn bench_runner(args: &[String]) -> Result {
    let o = parse(args)?;
    let dir = target_dir().join("bench-runner");
    fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;

    step("Building the runner's bench example (release)");
    run(cargo().args(["build", "--release", "-p", "slope-runner", "--example", "bench"]))?;
    let python = if o.skip_python {
        None
    } else {
        step("PyTorch peer: venv in target/bench-runner/venv (torch from PyPI is large)");
        Some(super::python_venv(&dir, "requirements-runner.txt")?)
    };

    let threads = o.threads.to_string();
    let model = root().join("models").join("base");
    step(&format!("candle: SFT throughput and suggestion latency, {threads} threads"));
    let load_candle = load_average();
    let example = target_dir().join("release").join("examples").join("bench");
    let candle_cmd = format!(
        "RAYON_NUM_THREADS={threads} cargo run --release -p slope-runner --example bench -- --model models/base --out {}",
        dir.display()
    );
    eprintln!("$ {candle_cmd}");
    let candle = json_line(
        Command::new(&example)
            .current_dir(root())
            .arg("--model")
            .arg(&model)
            .arg("--out")
            .arg(&dir)
            .env("RAYON_NUM_THREADS", &threads),
        "the candle bench",
    )?;
    eprintln!("{candle}");

    let mut torch = None;
    let mut torch_cmd = None;
    if let Some(python) = &python {
        let model_dir = string(&candle, "model_dir").ok_or("no model_dir in the candle bench's answer")?;
        let contexts = string(&candle, "contexts_file").ok_or("no contexts_file in the candle bench's answer")?;
        step(&format!("PyTorch: the same measures, {threads} threads"));
        let cmd = format!(
            "OMP_NUM_THREADS={threads} python bench/runner_peer.py --model-dir {model_dir} --contexts {contexts} --threads {threads}"
        );
        eprintln!("$ {cmd}");
        let load = load_average();
        let answer = json_line(
            Command::new(python)
                .current_dir(root())
                .arg(root().join("bench").join("runner_peer.py"))
                .args(["--model-dir", &model_dir, "--contexts", &contexts, "--threads", &threads])
                .env("OMP_NUM_THREADS", &threads)
                .env("MKL_NUM_THREADS", &threads),
            "bench/runner_peer.py",
        )?;
        eprintln!("{answer}");
        torch = Some((answer, load));
        torch_cmd = Some(cmd);
    }

    let report = render(&o, &candle, &load_candle, torch.as_ref(), &candle_cmd, torch_cmd.as_deref());
    println!("\n{report}");
    let path = dir.join("report.md");
    fs::write(&path, &report).map_err(|e| format!("{}: {e}", path.display()))?;
    eprintln!("written to {}", path.display());
    Ok(())
}

fn render(
    o: &Options,
    candle: &str,
    load_candle: &str,
    torch: Option<&(String, String)>,
    candle_cmd: &str,
    torch_cmd: Option<&str>,
) -> String {
    let n = |json: &str, key: &str| number(json, key);
    let fmt = |v: Option<f64>, digits: usize| v.map(|v| format!("{v:.digits$}")).unwrap_or_else(|| "–".into());
    let cpu = fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines().find_map(|l| l.strip_prefix("model name")?.split_once(':').map(|(_, m)| m.trim().to_owned()))
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let date = output(Command::new("date").args(["-u", "+%Y-%m-%d %H:%M UTC"])).unwrap_or_default();
    let commit =
        output(Command::new("git").args(["rev-parse", "--short", "HEAD"]).current_dir(root())).unwrap_or_default();
    let dirty = output(Command::new("git").args(["status", "--porcelain", "--untracked-files=no"]).current_dir(root()))
        .is_some_and(|s| !s.trim().is_empty());
    let mut out = String::new();
    let _ = writeln!(out, "## Runner benchmark: candle vs PyTorch\n");
    let _ = writeln!(
        out,
        "`cargo xtask bench-runner --threads {}{}` on {cpu} ({cores} cores), {}, commit {}{}.\n",
        o.threads,
        if o.skip_python { " --skip-python" } else { "" },
        date.trim(),
        commit.trim(),
        if dirty { " with uncommitted changes" } else { "" }
    );
    let _ = writeln!(
        out,
        "Model: {} ({} parameters); SFT batch {} × {} tokens, {} warm-up + {} timed steps; {} threads each.\n",
        string(candle, "model").unwrap_or_default(),
        fmt(n(candle, "parameters"), 0),
        fmt(n(candle, "batch_size"), 0),
        fmt(n(candle, "seq_len"), 0),
        fmt(n(candle, "warmup_steps"), 0),
        fmt(n(candle, "timed_steps"), 0),
        fmt(n(candle, "threads"), 0),
    );
    let t = torch.map(|(j, _)| j.as_str());
    let tn = |key: &str| t.and_then(|j| n(j, key));
    let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}×", a / b),
        _ => "–".into(),
    };
    let _ = writeln!(out, "| measure | candle | PyTorch (eager) | candle / PyTorch | goal |");
    let _ = writeln!(out, "| --- | --- | --- | --- | --- |");
    // (label, key, decimals, whether the ratio is shown and bold, goal)
    let rows = [
        ("SFT training, tokens/s (higher is better)", "tokens_per_s", 0, Some(true), "≥ 1.0×"),
        ("median step, ms", "step_ms_median", 1, Some(false), ""),
        ("suggestion latency, median ms (lower is better)", "latency_ms_median", 2, Some(false), "< 20 ms"),
        ("suggestion latency, p90 ms", "latency_ms_p90", 2, Some(false), ""),
        ("bytes per suggestion (mean)", "suggestion_bytes_mean", 2, None, ""),
    ];
    for (label, key, decimals, show_ratio, goal) in rows {
        let r = match show_ratio {
            Some(true) => format!("**{}**", ratio(n(candle, key), tn(key))),
            Some(false) => ratio(n(candle, key), tn(key)),
            None => String::new(),
        };
        let _ = writeln!(
            out,
            "| {label} | {} | {} | {r} | {goal} |",
            fmt(n(candle, key), decimals),
            fmt(tn(key), decimals)
        );
    }
    if let Some(j) = t {
        let _ = writeln!(
            out,
            "\nPyTorch {} with `scaled_dot_product_attention` instead of explicit attention: {} tokens/s (candle / that: {}).",
            string(j, "torch").unwrap_or_default(),
            fmt(n(j, "tokens_per_s_sdpa"), 0),
            ratio(n(candle, "tokens_per_s"), n(j, "tokens_per_s_sdpa"))
        );
        let _ = writeln!(
            out,
            "Same suggestions as candle: {} of {} (same weights, greedy).",
            fmt(n(j, "same_suggestions_as_candle"), 0),
            fmt(n(j, "suggestions"), 0)
        );
        let _ = writeln!(
            out,
            "Loss over the timed run: candle {} → {}, PyTorch {} → {} (different batches; a sanity check only).",
            fmt(n(candle, "loss_first"), 3),
            fmt(n(candle, "loss_last"), 3),
            fmt(n(j, "loss_first"), 3),
            fmt(n(j, "loss_last"), 3)
        );
    }
    let _ = writeln!(
        out,
        "\nLoad average before each: candle {load_candle}{}.",
        match torch {
            Some((_, l)) => format!(", PyTorch {l}"),
            None => String::new(),
        }
    );
    let _ = writeln!(out, "\nCommands:\n\n```\n{candle_cmd}");
    if let Some(c) = torch_cmd {
        let _ = writeln!(out, "{c}");
    }
    let _ = writeln!(out, "```");
    out
}

/// Runs `cmd` (stderr shown) and returns the last line of its stdout that is a JSON object.
fn json_line(cmd: &mut Command, what: &str) -> Result<String> {
    let out = cmd.stderr(Stdio::inherit()).output().map_err(|e| format!("cannot run {what}: {e}"))?;
    if !out.status.success() {
        return Err(format!("{what} failed ({})", out.status));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .rev()
        .find(|l| l.trim_start().starts_with('{'))
        .map(str::to_owned)
        .ok_or_else(|| format!("{what} printed no JSON line"))
}

fn load_average() -> String {
    fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

/// The number after `"key":` in a flat JSON object.
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

/// The string after `"key":` in a flat JSON object, with `\"`, `\\` and `\/` unescaped.
fn string(json: &str, key: &str) -> Option<String> {
    let needle = format!("\"{key}\"");
    json.match_indices(&needle).find_map(|(at, _)| {
        let rest = json[at + needle.len()..].trim_start().strip_prefix(':')?.trim_start().strip_prefix('"')?;
        let mut out = String::new();
        let mut chars = rest.chars();
        while let Some(c) = chars.next() {
            match c {
                '"' => return Some(out),
                '\\' => match chars.next()? {
                    'n' => out.push('\n'),
                    't' => out.push('\t'),
                    other => out.push(other),
                },
                c => out.push(c),
            }
        }
        None
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_numbers_and_strings_from_both_peers() {
        let candle = r#"{"tokens_per_s":22930.6,"model":"fresh \"default\" model","model_dir":"/tmp/a b/m"}"#;
        assert_eq!(number(candle, "tokens_per_s"), Some(22930.6));
        assert_eq!(string(candle, "model").as_deref(), Some("fresh \"default\" model"));
        assert_eq!(string(candle, "model_dir").as_deref(), Some("/tmp/a b/m"));
        let torch = r#"{"impl": "pytorch", "tokens_per_s": 2.3e4, "torch": "2.15.0+cu132"}"#;
        assert_eq!(number(torch, "tokens_per_s"), Some(23000.0));
        assert_eq!(string(torch, "torch").as_deref(), Some("2.15.0+cu132"));
        assert_eq!(number(torch, "missing"), None);
    }
}
