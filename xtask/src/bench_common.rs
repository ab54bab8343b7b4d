//! What the benches that drive a running server share: starting `slope serve` and reading its address,
//! requests through `curl` (whose own timer measures each one), signing in, making a token, quantiles and
//! reading a number or a string out of a small JSON answer.

use std::fs;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::Duration;

use super::Result;
use super::bench_metrics::slope_command;

/// A running `slope serve`, stopped on drop.
pub(super) struct Server {
    pub base: String,
    child: Child,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `command` (a `slope serve --bind 127.0.0.1:0 …` with its settings), its log to `log`, and
/// waits for the line that gives its address.
pub(super) fn start_server(mut command: Command, log: &Path) -> Result<Server> {
    let log = fs::File::create(log).map_err(|e| e.to_string())?;
    let mut child =
        command.stdout(Stdio::piped()).stderr(log).spawn().map_err(|e| format!("cannot start slope: {e}"))?;
    let mut line = String::new();
    BufReader::new(child.stdout.take().ok_or("no stdout")?).read_line(&mut line).map_err(|e| e.to_string())?;
    let Some(base) = line.trim().strip_prefix("slope listening on ").map(str::to_owned) else {
        let _ = child.kill();
        return Err(format!("slope serve did not start (first line {line:?})"));
    };
    Ok(Server { base, child })
}

/// One request's answer: status, `curl`'s `time_total` in seconds, and the body.
pub(super) fn curl(args: &[&str]) -> (u16, f64, String) {
    let out = Command::new("curl").args(["-sS", "-w", "\n%{http_code} %{time_total}"]).args(args).output();
    let Ok(out) = out else { return (0, f64::NAN, String::new()) };
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, tail) = text.rsplit_once('\n').unwrap_or(("", &text));
    let mut fields = tail.split_whitespace();
    let status = fields.next().and_then(|s| s.parse().ok()).unwrap_or(0);
    let seconds = fields.next().and_then(|s| s.parse().ok()).unwrap_or(f64::NAN);
    (status, seconds, body.to_owned())
}

/// Signs in through the sign-in form, as a browser does; the session cookie (`name=value`).
pub(super) fn sign_in(base: &str, email: &str, password: &str) -> Result<String> {
    let out = Command::new("curl")
        .args(["-sS", "-o", "/dev/null", "-D", "-", "-H", &format!("Origin: {base}"), "--data-urlencode"])
        .arg(format!("email={email}"))
        .arg("--data-urlencode")
        .arg(format!("password={password}"))
        .arg(format!("{base}/auth/login"))
        .output()
        .map_err(|e| e.to_string())?;
    let headers = String::from_utf8_lossy(&out.stdout);
    headers
        .lines()
        .find_map(|l| l.to_ascii_lowercase().starts_with("set-cookie:").then(|| l[11..].trim().to_owned()))
        .and_then(|c| c.split(';').next().map(str::to_owned))
        .ok_or_else(|| format!("signing in {email} at {base} set no cookie: {headers}"))
}

/// A token with every scope in the default organisation of the server's database, made with `slope
/// token create` once the server has created the organisation.
pub(super) fn token(slope: &Path, data: &Path, database: Option<&str>, name: &str) -> Result<String> {
    let mut last = String::new();
    for _ in 0..120 {
        let mut cmd = slope_command(slope);
        cmd.args(["token", "create", "--name", name, "--scopes", "read,write,ingest", "--data-dir"]).arg(data);
        if let Some(url) = database {
            cmd.env("DATABASE_URL", url);
        }
        let out = cmd.output().map_err(|e| e.to_string())?;
        if let Some(t) = String::from_utf8_lossy(&out.stdout).split_whitespace().find(|w| w.starts_with("slope_")) {
            return Ok(t.to_owned());
        }
        last = String::from_utf8_lossy(&out.stderr).into_owned();
        thread::sleep(Duration::from_millis(500));
    }
    Err(format!("slope token create failed: {last}"))
}

/// The value at rank `q` (0–1) of sorted samples, the nearest rank rounded; NaN without samples.
pub(super) fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[(((sorted.len() - 1) as f64) * q).round() as usize]
}

/// The number after `"key":` in a JSON text (the answers are small and flat where it is used).
pub(super) fn number(json: &str, key: &str) -> Option<f64> {
    let at = json.find(&format!("\"{key}\":"))? + key.len() + 3;
    let rest = json[at..].trim_start();
    let end = rest.find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-')).unwrap_or(rest.len());
    rest[..end].parse().ok()
}

/// The string after `"key":` in a JSON text.
pub(super) fn text(json: &str, key: &str) -> Option<String> {
    let at = json.find(&format!("\"{key}\":\""))? + key.len() + 4;
    json[at..].split('"').next().map(str::to_owned)
}
