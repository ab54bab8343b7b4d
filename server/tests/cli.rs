//! The `slope metrics` commands, run as a user runs them: the real binary on real files.

use std::path::PathBuf;
use std::process::{Command, Output};

use serde_json::Value;

fn dir() -> PathBuf {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("cli-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn slope(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_slope")).args(args).env_remove("SLOPE_CONFIG").output().unwrap()
}

fn stdout_json(out: &Output) -> Value {
    assert!(out.status.success(), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

const EVENTS: &str = r#"{"event_id":"e1","ts":"2027-01-04T09:00:00Z","loop":"notes","user_id":"u1","variant":"A","suggested_chars":10,"accepted_chars":2}
{"event_id":"e2","ts":"2027-01-04T09:05:00Z","loop":"notes","user_id":"u2","variant":"A","suggested_chars":10,"accepted_chars":5}
{"event_id":"e3","ts":"2027-01-04T09:06:00Z","loop":"notes","user_id":"u3","variant":"A","suggested_chars":20,"accepted_chars":9}
{"event_id":"e4","ts":"2027-01-05T09:07:00Z","loop":"notes","user_id":"u4","variant":"B","suggested_chars":20,"accepted_chars":12}
{"event_id":"e4","ts":"2027-01-05T09:07:00Z","loop":"notes","user_id":"u4","variant":"B","suggested_chars":20,"accepted_chars":12}
"#;

#[test]
fn acceptance_by_variant_and_day_as_json() {
    let dir = dir();
    let file = dir.join("events.ndjson");
    std::fs::write(&file, EVENTS).unwrap();
    let out = stdout_json(&slope(&["metrics", "acceptance", "--events", file.to_str().unwrap(), "--json"]));
    assert_eq!(out["events"], 4);
    assert_eq!(out["duplicates_dropped"], 1);
    let points = out["points"].as_array().unwrap();
    assert_eq!(points.len(), 2);
    assert_eq!((points[0]["variant"].as_str(), points[0]["bucket"].as_str()), (Some("A"), Some("2027-01-04")));
    assert!((points[0]["value"].as_f64().unwrap() - 0.4).abs() < 1e-12);
    // Users (2, 10), (5, 10), (9, 20): the delta-method standard error is 0.075.
    assert!((points[0]["std_error"].as_f64().unwrap() - 0.075).abs() < 1e-12);
    assert!(points[1]["std_error"].is_null(), "one user has no spread");

    // The same events as CSV give the same numbers.
    let csv = dir.join("events.csv");
    std::fs::write(
        &csv,
        "event_id,ts,loop,user_id,variant,suggested_chars,accepted_chars\n\
         e1,2027-01-04T09:00:00Z,notes,u1,A,10,2\ne2,2027-01-04T09:05:00Z,notes,u2,A,10,5\n\
         e3,2027-01-04T09:06:00Z,notes,u3,A,20,9\ne4,2027-01-05T09:07:00Z,notes,u4,B,20,12\n",
    )
    .unwrap();
    let from_csv = stdout_json(&slope(&["metrics", "acceptance", "--events", csv.to_str().unwrap(), "--json"]));
    assert_eq!(from_csv["points"], out["points"]);

    let table = slope(&["metrics", "acceptance", "--events", file.to_str().unwrap(), "--by", "week"]);
    assert!(table.status.success());
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(text.contains("2027-01-04") && text.contains("0.4667"), "{text}");
}

#[test]
fn invalid_events_name_the_row_and_field_and_fail() {
    let dir = dir();
    let file = dir.join("bad.ndjson");
    std::fs::write(
        &file,
        EVENTS.replace(r#""accepted_chars":5"#, r#""accepted_chars":50"#).replace("2027-01-04T09:06:00Z", "soon"),
    )
    .unwrap();
    let out = slope(&["metrics", "acceptance", "--events", file.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("row 2, accepted_chars: must not exceed suggested_chars (10)"), "{err}");
    assert!(err.contains("row 3, ts:"), "{err}");
    assert!(out.stdout.is_empty(), "nothing is computed from a refused file");

    let out = slope(&["metrics", "acceptance", "--events", file.to_str().unwrap(), "--by", "month"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown field \"month\""));
}

#[test]
fn ltv_fits_a_summary_file() {
    let dir = dir();
    let file = dir.join("summary.csv");
    // A deterministic population: frequent recent buyers, lapsed ones and one-time customers.
    let mut csv = String::from("frequency,recency,T,monetary_value\n");
    for i in 0..600 {
        let t = 30.0 + (i % 10) as f64;
        let (x, tx) = match i % 4 {
            0 => (0.0, 0.0),
            1 => ((i % 7 + 1) as f64, t - (i % 3) as f64),
            2 => ((i % 3 + 1) as f64, (i % 9 + 1) as f64),
            _ => (1.0, (i % 20) as f64),
        };
        let m = if x > 0.0 { format!("{}", 20 + (i * 37) % 80) } else { String::new() };
        csv.push_str(&format!("{x},{tx},{t},{m}\n"));
    }
    std::fs::write(&file, csv).unwrap();
    let out = stdout_json(&slope(&["metrics", "ltv", "--summary", file.to_str().unwrap(), "--json"]));
    assert_eq!(out["customers"], 600);
    for key in ["r", "alpha", "a", "b"] {
        assert!(out["bg_nbd"][key].as_f64().unwrap() > 0.0, "{key}: {}", out["bg_nbd"]);
    }
    assert!(out["bg_nbd"]["log_likelihood"].as_f64().unwrap() < 0.0);
    assert_eq!(out["gamma_gamma"]["customers"], 450);

    let bad = dir.join("bad.csv");
    std::fs::write(&bad, "frequency,recency,T\n2,5,10\n1,12,10\n").unwrap();
    let out = slope(&["metrics", "ltv", "--summary", bad.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("customer 2: recency must lie between 0 and T (10), not 12"));

    let missing = dir.join("missing.csv");
    std::fs::write(&missing, "frequency,T\n2,10\n").unwrap();
    let out = slope(&["metrics", "ltv", "--summary", missing.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("no column \"recency\""));
}

#[test]
fn drift_compares_two_windows() {
    let dir = dir();
    let file = dir.join("latency.ndjson");
    // Reference week: latencies 100 … 199 ms. Current week: the same shape 60 ms slower.
    let mut lines = String::new();
    for i in 0..100 {
        for (day, latency) in [(4, 100 + i), (12, 160 + i)] {
            lines.push_str(&format!(
                "{{\"event_id\":\"d{day}-{i}\",\"ts\":\"2027-01-{day:02}T10:00:00Z\",\"loop\":\"notes\",\"user_id\":\"u{i}\",\
                 \"variant\":\"A\",\"suggested_chars\":10,\"accepted_chars\":3,\"latency_ms\":{latency}}}\n"
            ));
        }
    }
    std::fs::write(&file, lines).unwrap();
    let path = file.to_str().unwrap();
    let args = |current: &'static str| {
        vec![
            "metrics",
            "drift",
            "--events",
            path,
            "--field",
            "latency_ms",
            "--reference",
            "2027-01-04..2027-01-10",
            "--current",
            current,
            "--json",
        ]
    };
    let out = stdout_json(&slope(&args("2027-01-11..2027-01-17")));
    assert_eq!(out["drift"]["band"], "major");
    assert!(out["drift"]["psi"].as_f64().unwrap() > 0.25);
    assert_eq!((out["drift"]["reference_n"].as_u64(), out["drift"]["current_n"].as_u64()), (Some(100), Some(100)));
    // The reference window against itself does not drift.
    let same = stdout_json(&slope(&args("2027-01-04..2027-01-04")));
    assert_eq!(same["drift"]["band"], "stable");
    assert!(same["drift"]["psi"].as_f64().unwrap().abs() < 1e-9);

    // Refusals exit non-zero and name the flag or window at fault.
    let refused = |field: &str, reference: &str, message: &str| {
        let current = "2027-01-11..2027-01-17";
        let args =
            ["metrics", "drift", "--events", path, "--field", field, "--reference", reference, "--current", current];
        let out = slope(&args);
        assert!(!out.status.success(), "{args:?} succeeded");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(message), "{args:?}: {err}");
    };
    refused("mood", "2027-01-04..2027-01-10", "--field: unknown field \"mood\"");
    refused("latency_ms", "last week", "--reference: expected START..END");
    refused("latency_ms", "2026-01-01..2026-01-02", "reference window");
}
