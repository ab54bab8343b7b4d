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

/// Events of an A/B test: `control` users in variant A and `treatment` users in B, two events each. Users'
/// own acceptance rates spread over 0.1 above 0.25 in A and above 0.25 + `lift` in B, and their volumes
/// vary, so both arms have a spread to estimate.
fn ab_events(control: usize, treatment: usize, lift: f64) -> String {
    let mut lines = String::new();
    for (variant, users, base) in [("A", control, 0.25), ("B", treatment, 0.25 + lift)] {
        for i in 0..users {
            let suggested = 20 + (i * 37) % 80;
            let rate = base + 0.1 * ((i * 13) % 10) as f64 / 10.0;
            let accepted = (rate * suggested as f64).round() as usize;
            for week in 0..2 {
                lines.push_str(&format!(
                    "{{\"event_id\":\"{variant}{i}-{week}\",\"ts\":\"2027-01-{:02}T10:00:00Z\",\"loop\":\"notes\",\
                     \"user_id\":\"{variant}{i}\",\"variant\":\"{variant}\",\"suggested_chars\":{suggested},\
                     \"accepted_chars\":{accepted}}}\n",
                    4 + 7 * week + i % 5
                ));
            }
        }
    }
    lines
}

#[test]
fn ab_finds_a_clear_improvement_and_flags_a_broken_split() {
    let dir = dir();
    let file = dir.join("ab.ndjson");
    std::fs::write(&file, ab_events(200, 200, 0.2)).unwrap();
    let path = file.to_str().unwrap();
    let out = stdout_json(&slope(&["metrics", "ab", "--events", path, "--control", "A", "--treatment", "B", "--json"]));
    assert_eq!(out["events"], 800);
    assert_eq!((out["control"]["users"].as_u64(), out["treatment"]["users"].as_u64()), (Some(200), Some(200)));
    let (control, treatment) = (out["control"]["rate"].as_f64().unwrap(), out["treatment"]["rate"].as_f64().unwrap());
    assert!((0.27..0.32).contains(&control) && (0.47..0.52).contains(&treatment), "{control} {treatment}");
    let difference = &out["difference"];
    assert!((difference["estimate"].as_f64().unwrap() - (treatment - control)).abs() < 1e-12);
    assert!(difference["ci_low"].as_f64().unwrap() > 0.15, "{difference}");
    assert!(difference["z"].as_f64().unwrap() > 10.0 && difference["p_value"].as_f64().unwrap() < 1e-6);
    assert!(out["relative_lift"]["estimate"].as_f64().unwrap() > 0.5);
    assert!(out["relative_lift"]["ci_low"].as_f64().unwrap() > 0.5);
    let always_valid = &out["always_valid"];
    assert!(always_valid["p_value"].as_f64().unwrap() < 0.05 && always_valid["ci_low"].as_f64().unwrap() > 0.0);
    assert_eq!(always_valid["mixing_sd"], 0.01);
    assert_eq!(out["sample_ratio"]["mismatch"], false);
    assert_eq!(out["users_in_both"], 0);
    let methods = out["methods"].as_str().unwrap();
    assert!(methods.contains("delta method") && methods.contains("mixture sequential probability ratio"), "{methods}");

    let table = slope(&["metrics", "ab", "--events", path, "--control", "A", "--treatment", "B"]);
    assert!(table.status.success());
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(text.contains("A (control)") && text.contains("no mismatch") && text.contains("Methods:"), "{text}");

    // 300 users against 400 on a 50/50 design: χ² = 14.3, p = 0.00016.
    let imbalanced = dir.join("srm.ndjson");
    std::fs::write(&imbalanced, ab_events(300, 400, 0.0)).unwrap();
    let path = imbalanced.to_str().unwrap();
    let args = ["metrics", "ab", "--events", path, "--control", "A", "--treatment", "B"];
    let out = stdout_json(&slope(&[&args[..], &["--json"]].concat()));
    assert_eq!(out["sample_ratio"]["mismatch"], true);
    assert!(out["sample_ratio"]["p_value"].as_f64().unwrap() < 0.001);
    let text = slope(&args);
    assert!(String::from_utf8_lossy(&text.stdout).contains("SAMPLE RATIO MISMATCH"));
    // The same counts on a 3:4 design are no mismatch.
    let out = stdout_json(&slope(&[&args[..], &["--expected-share", "0.5714", "--json"]].concat()));
    assert_eq!(out["sample_ratio"]["mismatch"], false);

    let out = slope(&["metrics", "ab", "--events", path, "--control", "A", "--treatment", "C"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no events have variant \"C\"; the variants present are"));
    let out = slope(&[&args[..], &["--expected-share", "1.5"]].concat());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--expected-share must lie strictly between 0 and 1"));
}

#[test]
fn retention_by_weekly_cohort() {
    let dir = dir();
    let file = dir.join("retention.ndjson");
    // Mondays: 4, 11 and 18 January 2027. u1, u2 and u3 start in the week of the 4th; u1 and u2 come back
    // the next week and u1 the week after. u4 starts on the 12th.
    let mut lines = String::new();
    for (i, (user, day)) in
        [("u1", 4), ("u2", 5), ("u3", 10), ("u1", 11), ("u2", 17), ("u4", 12), ("u1", 19)].into_iter().enumerate()
    {
        lines.push_str(&format!(
            "{{\"event_id\":\"r{i}\",\"ts\":\"2027-01-{day:02}T10:00:00Z\",\"loop\":\"notes\",\"user_id\":\"{user}\",\
             \"variant\":\"A\",\"suggested_chars\":10,\"accepted_chars\":3}}\n"
        ));
    }
    std::fs::write(&file, lines).unwrap();
    let path = file.to_str().unwrap();
    let out = stdout_json(&slope(&["metrics", "retention", "--events", path, "--json"]));
    assert_eq!(out["last_week"], "2027-01-18");
    let cohorts = out["loops"][0]["cohorts"].as_array().unwrap();
    assert_eq!(out["loops"][0]["loop"], "notes");
    assert_eq!((cohorts[0]["week"].as_str(), cohorts[0]["size"].as_u64()), (Some("2027-01-04"), Some(3)));
    let active: Vec<u64> =
        cohorts[0]["weeks"].as_array().unwrap().iter().map(|w| w["active"].as_u64().unwrap()).collect();
    assert_eq!(active, [3, 2, 1]);
    // The cohort of the 11th has had two weeks, not three.
    assert_eq!(cohorts[1]["weeks"].as_array().unwrap().len(), 2);

    let table = slope(&["metrics", "retention", "--events", path]);
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(table.status.success() && text.contains("2027-01-04") && text.contains("66.7%"), "{text}");
}

/// Transactions of 400 customers over 40 weeks from Monday 4 January 2027: a quarter buy once, a quarter
/// buy every one to three weeks to the end, a quarter buy a few weeks in a row and lapse, and a quarter
/// buy once more later. Each customer buys at most once a week, on one weekday. Returns the CSV and the
/// number of repeat purchases.
fn transactions_csv() -> (String, usize) {
    let start = chrono::NaiveDate::from_ymd_opt(2027, 1, 4).unwrap();
    let mut csv = String::from("customer,day,paid\n");
    let mut repeats = 0;
    for i in 0..400usize {
        let first = i % 10;
        let mut weeks = vec![first];
        match i % 4 {
            1 => weeks.extend((first + i % 3 + 1..40).step_by(i % 3 + 1)),
            2 => weeks.extend((1..=i % 3 + 1).map(|j| first + j)),
            3 => weeks.push(first + 1 + i % 20),
            _ => {}
        }
        repeats += weeks.len() - 1;
        for w in weeks {
            let day = start + chrono::Duration::days((7 * w + i % 5) as i64);
            let paid = (1 + i % 5) * (5 + (i * 7919 + w * 104_729) % 97);
            csv.push_str(&format!("c{i},{day},{paid}\n"));
        }
    }
    (csv, repeats)
}

#[test]
fn ltv_fits_customers_summarised_from_transactions() {
    let dir = dir();
    let file = dir.join("transactions.csv");
    let (csv, repeats) = transactions_csv();
    std::fs::write(&file, csv).unwrap();
    let path = file.to_str().unwrap();
    let fit = |period: &str, extra: &[&str]| {
        let args = [
            &["metrics", "ltv", "--transactions", path, "--customer-col", "customer", "--date-col", "day"][..],
            &["--amount-col", "paid", "--period", period, "--json"],
            extra,
        ]
        .concat();
        stdout_json(&slope(&args))
    };
    let weekly = fit("week", &[]);
    assert_eq!(weekly["customers"], 400);
    let summary = &weekly["transactions"];
    assert_eq!((summary["customers"].as_u64(), summary["repeat_customers"].as_u64()), (Some(400), Some(300)));
    assert_eq!(summary["repeat_purchases"].as_f64(), Some(repeats as f64));
    assert_eq!(weekly["gamma_gamma"]["customers"], 300);
    // Each customer buys at most once a week, so daily summaries are the weekly ones in days, nearly:
    // the fitted rate scale α grows sevenfold while the shapes stay.
    let daily = fit("day", &[]);
    let ratio = daily["bg_nbd"]["alpha"].as_f64().unwrap() / weekly["bg_nbd"]["alpha"].as_f64().unwrap();
    assert!((6.5..7.5).contains(&ratio), "α(day) / α(week) = {ratio}");
    let (r_day, r_week) = (daily["bg_nbd"]["r"].as_f64().unwrap(), weekly["bg_nbd"]["r"].as_f64().unwrap());
    assert!((r_day / r_week - 1.0).abs() < 0.05, "r: {r_day} by day, {r_week} by week");

    // Calibrating to Sunday 14 February keeps the customers who started in weeks 0 to 5; those of week 5
    // have T = 0 and are left out of the fit.
    let calibrated = fit("week", &["--calibration-end", "2027-02-14"]);
    assert_eq!(calibrated["transactions"]["customers"], 240);
    assert_eq!(calibrated["transactions"]["new_in_last_period"], 40);
    assert_eq!(calibrated["customers"], 200);

    let table = slope(&["metrics", "ltv", "--transactions", path, "--customer-col", "customer", "--date-col", "day"]);
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(table.status.success() && text.contains("BG/NBD") && text.contains("no --amount-col"), "{text}");
}

#[test]
fn invalid_transactions_and_flags_are_refused() {
    let dir = dir();
    let file = dir.join("bad.csv");
    std::fs::write(&file, "customer,day,paid\nc1,2027-01-04,10\nc1,soon,5\nc2,2027-01-05,-3\n").unwrap();
    let path = file.to_str().unwrap();
    let base = ["metrics", "ltv", "--transactions", path, "--customer-col", "customer", "--date-col", "day"];
    let out = slope(&[&base[..], &["--amount-col", "paid"]].concat());
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("2 invalid row(s); nothing was computed"), "{err}");
    assert!(err.contains("row 2, day: must be a date"), "{err}");
    assert!(err.contains("row 3, paid: must be a number ≥ 0, not -3"), "{err}");
    assert!(out.stdout.is_empty(), "nothing is computed from a refused file");

    let refused = |args: &[&str], message: &str| {
        let out = slope(args);
        assert!(!out.status.success(), "{args:?} succeeded");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(message), "{args:?}: {err}");
    };
    refused(&["metrics", "ltv"], "<--summary <FILE>|--transactions <FILE>>");
    refused(&["metrics", "ltv", "--summary", path, "--transactions", path], "cannot be used with");
    refused(&["metrics", "ltv", "--summary", path, "--date-col", "day"], "cannot be used with");
    refused(&["metrics", "ltv", "--transactions", path, "--date-col", "day"], "needs --customer-col and --date-col");
    refused(&[&base[..], &["--period", "month"]].concat(), "invalid value 'month'");
    refused(&[&base[..], &["--calibration-end", "2027-02-30"]].concat(), "expected a date like 2027-01-31");
    refused(
        &[&base[..2], &["--transactions", path, "--customer-col", "buyer", "--date-col", "day"]].concat(),
        "no column \"buyer\"",
    );
}

#[test]
fn ingest_stores_a_file_once_and_refuses_bad_rows_by_name() {
    let dir = dir();
    let data = dir.join("data");
    let file = dir.join("events.ndjson");
    // Stored events must not lie in the future, so the shared sample moves back a year.
    let events = EVENTS.replace("2027-", "2026-");
    std::fs::write(&file, &events).unwrap();
    let ingest = |file: &std::path::Path| {
        slope(&["ingest", file.to_str().unwrap(), "--loop", "notes", "--data-dir", data.to_str().unwrap(), "--json"])
    };
    let ack = stdout_json(&ingest(&file));
    assert_eq!((&ack["rows"], &ack["stored"], &ack["duplicates"]), (&5.into(), &4.into(), &1.into()), "{ack}");
    assert_eq!(ack["replayed"], false);
    let again = stdout_json(&ingest(&file));
    assert_eq!((&again["replayed"], &again["batch_id"]), (&true.into(), &ack["batch_id"]), "{again}");

    let bad = dir.join("bad.ndjson");
    std::fs::write(&bad, events.replace(r#""accepted_chars":5"#, r#""accepted_chars":50"#)).unwrap();
    let out = ingest(&bad);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("row 2, accepted_chars"), "{stderr}");
    assert!(stderr.contains("nothing was stored"), "{stderr}");

    let transactions = dir.join("tx.csv");
    std::fs::write(&transactions, "event_id,customer_id,ts,amount\nt1,c1,2026-01-04T09:00:00Z,12.5\n").unwrap();
    let out =
        slope(&["ingest", transactions.to_str().unwrap(), "--transactions", "--data-dir", data.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("into transactions: 1 rows, 1 stored"));
    let neither = slope(&["ingest", transactions.to_str().unwrap(), "--data-dir", data.to_str().unwrap()]);
    assert!(!neither.status.success(), "a file needs --loop or --transactions");
}

#[test]
fn a_large_file_is_validated_whole_then_sent_in_parts() {
    let dir = dir();
    let data = dir.join("data");
    let events = EVENTS.replace("2027-", "2026-");
    let ingest = |file: &std::path::Path| {
        slope(&[
            "ingest",
            file.to_str().unwrap(),
            "--loop",
            "notes",
            "--data-dir",
            data.to_str().unwrap(),
            "--batch-bytes",
            "200",
            "--json",
        ])
    };
    // A bad row in the last part refuses the whole file, numbered as in the file, before anything is
    // stored: the good file then stores every event.
    let bad = dir.join("bad.ndjson");
    std::fs::write(&bad, events.replace(r#""accepted_chars":12}"#, r#""accepted_chars":99}"#)).unwrap();
    let out = ingest(&bad);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("row 4, accepted_chars") && stderr.contains("nothing was stored"), "{stderr}");

    let good = dir.join("good.ndjson");
    std::fs::write(&good, &events).unwrap();
    let ack = stdout_json(&ingest(&good));
    let batches = ack["batches"].as_array().unwrap();
    assert!(batches.len() >= 2, "five lines of ~140 bytes in parts of about 200 bytes: {ack}");
    assert_eq!((&ack["rows"], &ack["stored"]), (&5.into(), &4.into()), "{ack}");
    // Running the same command again stores nothing more: every part replays.
    let again = stdout_json(&ingest(&good));
    assert_eq!(again["stored"], 4);
    assert!(again["batches"].as_array().unwrap().iter().all(|b| b["replayed"] == true), "{again}");
}

// ---- the runner from the terminal: `slope datasets …` and `slope runner …` ---------------------------

/// Runs `slope` in `dir` as a user would, but with none of the developer's `SLOPE_*` settings or
/// `DATABASE_URL`, no `slope.toml` (the working directory is the scratch folder) and no shipped base
/// model. `args` name the data dir themselves.
fn slope_in(dir: &std::path::Path, args: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_slope"));
    command.args(args).current_dir(dir);
    for (var, _) in std::env::vars() {
        if var.starts_with("SLOPE_") || var == "DATABASE_URL" {
            command.env_remove(var);
        }
    }
    command.env("SLOPE_BASE_MODEL", "").env("SLOPE_LOG", "warn").output().unwrap()
}

/// A scratch folder with its own data dir, and `slope <args> --data-dir <data>` run in it.
struct Runner {
    dir: PathBuf,
    data: String,
}

impl Runner {
    fn new() -> Runner {
        let dir = dir();
        let data = dir.join("data").display().to_string();
        Runner { dir, data }
    }

    fn run(&self, args: &[&str]) -> Output {
        slope_in(&self.dir, &[args, &["--data-dir", &self.data]].concat())
    }

    /// Runs a command that must fail, and returns its stderr.
    #[track_caller]
    fn refused(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(!out.status.success(), "{args:?} succeeded: {}", String::from_utf8_lossy(&out.stdout));
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    /// Runs a command that must succeed, and returns its stdout.
    #[track_caller]
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(out.status.success(), "{args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn json(&self, args: &[&str]) -> Value {
        stdout_json(&self.run(args))
    }

    /// Writes `text` to a file in the scratch folder and returns its path.
    fn file(&self, name: &str, text: &str) -> String {
        let path = self.dir.join(name);
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    }

    /// Registers a JSONL dataset and returns its id.
    fn dataset(&self, name: &str, text: &str) -> i64 {
        let file = self.file(name, text);
        self.json(&["datasets", "add", &file, "--json"])["id"].as_i64().expect("a dataset id")
    }
}

/// A model small enough to train for a few dozen steps in well under a second.
const TINY_MODEL: &str = r#"{"vocab_size":257,"n_layer":1,"n_head":2,"d_model":32,"ctx_len":64}"#;

/// Short lines of text to pre-train on (and hold out).
fn corpus(n: usize, salt: usize) -> String {
    let symptoms = ["cough", "headache", "back pain", "sore throat", "fatigue"];
    let plans = ["rest and fluids.", "ibuprofen as needed.", "follow up in two weeks."];
    (0..n)
        .map(|i| {
            let j = i * 7 + salt * 13;
            let text = format!(
                "Pt reports {} for {} days. Plan: {}",
                symptoms[j % symptoms.len()],
                2 + j % 5,
                plans[(j / 3) % plans.len()]
            );
            format!("{}\n", serde_json::json!({ "text": text }))
        })
        .collect()
}

#[test]
fn datasets_add_refuses_a_bad_row_by_file_line_and_field_and_registers_content_once() {
    let r = Runner::new();
    let bad = r.file("bad.jsonl", "{\"text\":\"fine\"}\n{\"prompt\":\"no completion\"}\n");
    let err = r.refused(&["datasets", "add", &bad]);
    assert!(err.contains(&bad), "the file is named: {err}");
    assert!(err.contains("line 2: completion: is required"), "the line and field are named: {err}");
    let bad_kind =
        r.file("mixed.jsonl", "{\"text\":\"fine\"}\n\n{\"prompt\":\"p\",\"chosen\":\"a\",\"rejected\":\"b\"}\n");
    let err = r.refused(&["datasets", "add", &bad_kind]);
    assert!(err.contains("line 3: ") && err.contains("cannot be mixed"), "{err}");
    let err = r.refused(&["datasets", "add", &r.dir.join("missing.jsonl").display().to_string()]);
    assert!(err.contains("cannot read") && err.contains("missing.jsonl"), "{err}");
    assert_eq!(r.json(&["datasets", "list", "--json"]), serde_json::json!([]), "nothing was registered");

    let good = r.file("notes.jsonl", &corpus(5, 0));
    let text = r.ok(&["datasets", "add", &good]);
    let list = r.json(&["datasets", "list", "--json"]);
    let datasets = list.as_array().unwrap();
    assert_eq!(datasets.len(), 1, "{list}");
    let (id, digest) = (datasets[0]["id"].as_i64().unwrap(), datasets[0]["digest"].as_str().unwrap());
    assert!(digest.starts_with("sha256:"), "{list}");
    assert_eq!((datasets[0]["name"].as_str(), datasets[0]["kind"].as_str()), (Some("notes"), Some("text")));
    assert_eq!(datasets[0]["rows"], 5);
    assert!(text.starts_with(&format!("dataset {id} notes (text, 5 rows, {digest})")), "{text}");
    assert!(!text.contains("registered already"), "{text}");

    // The same rows under another name and with other blank lines are the same version.
    let copy = r.file("copy.jsonl", &format!("\n{}\n", corpus(5, 0)));
    let again = r.ok(&["datasets", "add", &copy, "--name", "another-name"]);
    assert!(again.contains(&format!("dataset {id} notes")) && again.contains(digest), "{again}");
    assert!(again.contains("(this content was registered already)"), "{again}");
    let as_json = r.json(&["datasets", "add", &copy, "--json"]);
    assert_eq!((as_json["id"].as_i64(), as_json["digest"].as_str()), (Some(id), Some(digest)));
    assert_eq!(r.json(&["datasets", "list", "--json"]).as_array().unwrap().len(), 1);
}

#[test]
fn a_job_needs_its_model_and_nothing_is_queued_otherwise() {
    let r = Runner::new();
    let data = r.dataset("notes.jsonl", &corpus(5, 0)).to_string();
    let err = r.refused(&["runner", "train", "--kind", "sft", "--dataset", &data]);
    assert!(err.contains("model_id: is required for sft jobs"), "{err}");
    assert!(!err.contains("dataset_id"), "the dataset exists: {err}");
    let err = r.refused(&["runner", "train", "--kind", "dpo", "--model", "41", "--dataset", &data]);
    assert!(err.contains("model_id: model 41 not found"), "{err}");
    assert!(err.contains("dataset_id") && err.contains("which dpo cannot train on"), "{err}");
    let err = r.refused(&["runner", "train", "--kind", "finetune", "--dataset", &data]);
    assert!(err.contains("kind: must be one of pretrain, sft, dpo, eval"), "{err}");
    let config = r.file("tiny.json", TINY_MODEL);
    let err = r.refused(&[
        "runner",
        "train",
        "--kind",
        "pretrain",
        "--dataset",
        &data,
        "--model-config",
        &config,
        "--seq-len",
        "65",
    ]);
    assert!(err.contains("train.seq_len: must be between 2 and the model's ctx_len (64)"), "{err}");
    let err = r.refused(&["runner", "eval", "--model", "1", "--held-out", &data]);
    assert!(err.contains("model_id: model 1 not found"), "{err}");
    assert_eq!(r.json(&["runner", "jobs", "--json"]), serde_json::json!([]), "nothing was queued");

    // --queue only queues (no worker runs here), and a pending job is cancelled at once.
    let args = ["runner", "train", "--kind", "pretrain", "--dataset", &data, "--model-config", &config];
    let queued = r.json(&[&args[..], &["--queue", "--json"]].concat());
    assert_eq!((queued["status"].as_str(), queued["step"].as_i64()), (Some("pending"), Some(0)), "{queued}");
    let id = queued["id"].as_i64().unwrap().to_string();
    let jobs = r.json(&["runner", "jobs", "--json"]);
    assert_eq!((jobs[0]["id"].to_string(), jobs[0]["status"].as_str()), (id.clone(), Some("pending")), "{jobs}");
    let cancelled = r.ok(&["runner", "cancel", &id]);
    assert!(cancelled.starts_with(&format!("job {id}: cancelled")), "{cancelled}");
    assert_eq!(r.json(&["runner", "jobs", "--json"])[0]["status"], "cancelled");
    let err = r.refused(&["runner", "cancel", "99"]);
    assert!(err.contains("job 99 not found"), "{err}");
}

#[test]
fn train_evaluate_and_promote_from_the_terminal() {
    let r = Runner::new();
    let corpus_id = r.dataset("corpus.jsonl", &corpus(40, 1)).to_string();
    let held_out = r.dataset("held-out.jsonl", &corpus(12, 7)).to_string();
    let config = r.file("tiny.json", TINY_MODEL);
    // Held-out perplexity alone decides, so the rewards do not depend on how fast this machine is.
    let reward = r.file("reward.json", r#"{"weights":{"perplexity":-1}}"#);
    let train = |steps: &str, name: &str| {
        let args = [
            "runner",
            "train",
            "--kind",
            "pretrain",
            "--dataset",
            &corpus_id,
            "--model-config",
            &config,
            "--steps",
            steps,
            "--batch-size",
            "4",
            "--seq-len",
            "32",
            "--lr",
            "0.01",
            "--name",
            name,
            "--json",
        ];
        let job = r.json(&args);
        assert_eq!(job["status"], "succeeded", "{job}");
        assert_eq!(job["step"], job["total_steps"], "every step ran: {job}");
        job
    };

    // Trained in this process: the job ran to its end before the command returned.
    let job = train("30", "tiny-30");
    assert_eq!(
        (job["kind"].as_str(), job["step"].as_i64(), job["attempts"].as_i64()),
        (Some("pretrain"), Some(30), Some(1))
    );
    assert!(job["lease_owner"].is_null() && job["finished_at"].is_string(), "{job}");
    let model = job["result"]["model_id"].as_i64().expect("the registered model");
    assert_eq!(job["result"]["train"]["steps"], 30);
    assert_eq!(job["result"]["model"], "tiny-30");

    let listed = r.json(&["runner", "models", "--json"]);
    let models = listed["models"].as_array().unwrap();
    assert_eq!(models.len(), 1, "{listed}");
    assert_eq!((models[0]["id"].as_i64(), models[0]["name"].as_str()), (Some(model), Some("tiny-30")));
    assert_eq!((models[0]["kind"].as_str(), models[0]["job_id"].as_i64()), (Some("pretrain"), job["id"].as_i64()));
    assert!(models[0]["reward"].is_null(), "not evaluated yet: {listed}");
    let jobs = r.ok(&["runner", "jobs"]);
    let line = jobs.lines().find(|l| l.trim_start().starts_with(&job["id"].to_string())).unwrap_or_default();
    assert!(line.contains("pretrain") && line.contains("succeeded") && line.contains("30/30"), "{jobs}");

    // Evaluated on held-out data with a reward spec; the model remembers its reward.
    let eval = r.json(&[
        "runner",
        "eval",
        "--model",
        &model.to_string(),
        "--held-out",
        &held_out,
        "--reward",
        &reward,
        "--json",
    ]);
    assert_eq!((eval["kind"].as_str(), eval["status"].as_str()), (Some("eval"), Some("succeeded")), "{eval}");
    let score = eval["result"]["eval"]["reward"].as_f64().expect("a reward");
    let perplexity = eval["result"]["eval"]["scores"]["perplexity"].as_f64().unwrap();
    assert!((score + perplexity).abs() < 1e-9 && perplexity > 1.0, "{eval}");
    let listed = r.json(&["runner", "models", "--json"]);
    assert_eq!(listed["models"][0]["reward"].as_f64(), Some(score));

    // The gate: the first champion of a loop is accepted; the champion cannot be promoted again.
    let id = model.to_string();
    let promoted = r.ok(&["runner", "promote", "--loop", "notes", "--model", &id]);
    assert!(promoted.starts_with("promoted: tiny-30 is the first champion of notes"), "{promoted}");
    let err = r.refused(&["runner", "promote", "--loop", "notes", "--model", &id]);
    assert!(err.contains(&format!("model {model} is already the champion of notes")), "{err}");
    let listed = r.json(&["runner", "models", "--json"]);
    let aliases = listed["aliases"].as_array().unwrap();
    assert!(
        aliases.iter().any(|a| a["alias"] == "champion" && a["model_id"] == model && a["loop_key"] == "notes"),
        "{listed}"
    );

    // A barely trained model is refused: first for want of an eval, then for a worse reward.
    let worse = train("1", "tiny-1")["result"]["model_id"].as_i64().unwrap();
    let worse_id = worse.to_string();
    let promote_worse = ["runner", "promote", "--loop", "notes", "--model", &worse_id];
    let out = r.run(&promote_worse);
    assert!(!out.status.success());
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(stdout.starts_with("refused: model tiny-1 has no eval yet"), "{stdout}");
    assert!(stderr.contains(&format!("the gate refused model {worse}")), "{stderr}");
    let eval =
        r.json(&["runner", "eval", "--model", &worse_id, "--held-out", &held_out, "--reward", &reward, "--json"]);
    let worse_score = eval["result"]["eval"]["reward"].as_f64().unwrap();
    assert!(worse_score < score, "one step leaves the perplexity higher: {worse_score} against {score}");
    let out = r.run(&[&promote_worse[..], &["--json"]].concat());
    assert!(!out.status.success());
    let decision: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(decision["accepted"], false, "{decision}");
    assert!(decision["reason"].as_str().unwrap().contains("does not beat the champion tiny-30"), "{decision}");
    let listed = r.json(&["runner", "models", "--loop", "notes", "--json"]);
    let champion: Vec<&Value> =
        listed["aliases"].as_array().unwrap().iter().filter(|a| a["alias"] == "champion").collect();
    assert_eq!((champion.len(), champion[0]["model_id"].as_i64()), (1, Some(model)), "still the champion: {listed}");
    let table = r.ok(&["runner", "models"]);
    assert!(table.lines().any(|l| l.contains("tiny-30") && l.contains("notes:champion")), "{table}");
}

// ---- units from the terminal: `slope admin unit` ------------------------------------------------------

/// An operator sets a unit's parent and headcount from the terminal; a bad headcount or parent fails
/// with the field named and changes nothing.
#[test]
fn admin_unit_sets_a_headcount_and_refuses_bad_ones_by_field() {
    let runner = Runner::new();
    let product = runner.ok(&["admin", "unit", "Product"]);
    assert_eq!(product.trim(), "unit Product (top-level, headcount not known), version 1", "{product}");
    let clinical = runner.ok(&["admin", "unit", "Clinical", "--parent", "Product", "--headcount", "40"]);
    assert!(clinical.contains("unit Clinical (under Product, 40 people)"), "{clinical}");

    let zero = runner.refused(&["admin", "unit", "Clinical", "--parent", "Product", "--headcount", "0"]);
    assert!(zero.contains("headcount") && zero.contains("at least 1"), "{zero}");
    let nowhere = runner.refused(&["admin", "unit", "Clinical", "--parent", "Nowhere", "--headcount", "12"]);
    assert!(nowhere.contains("parent") && nowhere.contains("Nowhere"), "{nowhere}");
    let same = runner.ok(&["admin", "unit", "Clinical", "--parent", "Product", "--headcount", "40"]);
    assert!(same.contains("40 people") && same.contains("version 2"), "the same unit again is no change: {same}");
}
