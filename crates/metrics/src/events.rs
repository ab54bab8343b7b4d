//! Interaction events: one AI suggestion shown to a person. Read from NDJSON, CSV or Parquet files,
//! validated row by row; a file with any invalid row is refused whole, naming the rows.

use std::collections::HashSet;
use std::fs::File;
use std::path::Path;

use chrono::{DateTime, Utc};
use polars::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// How many row errors a refusal lists; the rest are counted.
pub const MAX_REPORTED_ERRORS: usize = 20;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InteractionEvent {
    pub event_id: String,
    pub ts: DateTime<Utc>,
    #[serde(rename = "loop")]
    pub loop_key: String,
    pub user_id: String,
    pub variant: String,
    pub suggested_chars: u64,
    pub accepted_chars: u64,
    pub latency_ms: Option<f64>,
    pub cost_usd: Option<f64>,
    pub session_id: Option<String>,
    pub unit: Option<String>,
    pub context: Option<String>,
    pub suggestion: Option<String>,
    pub final_text: Option<String>,
    pub attributes: Option<serde_json::Map<String, Value>>,
}

/// One invalid field of one row. Rows count from 1: the line of an NDJSON file, the record of a CSV
/// file after its header, the row of a Parquet file.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RowError {
    pub row: usize,
    pub field: String,
    pub message: String,
}

#[derive(Debug, thiserror::Error)]
pub enum EventsError {
    #[error("cannot read {path}: {message}")]
    Io { path: String, message: String },
    #[error("{0}")]
    Format(String),
    #[error("{} invalid row(s); nothing was read: {}", .total, summarize(.errors))]
    Invalid { errors: Vec<RowError>, total: usize },
}

fn summarize(errors: &[RowError]) -> String {
    errors.iter().map(|e| format!("row {}, {}: {}", e.row, e.field, e.message)).collect::<Vec<_>>().join("; ")
}

/// The events of a file, with how many repeated `event_id`s were dropped (a retried batch must not
/// count twice).
#[derive(Debug, Clone, PartialEq)]
pub struct Events {
    pub events: Vec<InteractionEvent>,
    pub duplicates: usize,
}

/// Reads interaction events from `path`; the format follows the extension (`.ndjson`/`.jsonl`/`.json`,
/// `.csv`, `.parquet`).
pub fn read_interactions(path: &Path) -> Result<Events, EventsError> {
    let io = |e: &dyn std::fmt::Display| EventsError::Io { path: path.display().to_string(), message: e.to_string() };
    let extension = path.extension().and_then(|e| e.to_str()).unwrap_or_default().to_ascii_lowercase();
    let rows: Vec<RawRow> = match extension.as_str() {
        "ndjson" | "jsonl" | "json" => {
            let text = std::fs::read_to_string(path).map_err(|e| io(&e))?;
            let mut rows = vec![];
            let mut errors = vec![];
            for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
                match serde_json::from_str::<Value>(line) {
                    Ok(Value::Object(object)) => rows.push((i + 1, object)),
                    Ok(_) => errors.push(RowError {
                        row: i + 1,
                        field: "row".into(),
                        message: "must be a JSON object".into(),
                    }),
                    Err(e) => errors.push(RowError {
                        row: i + 1,
                        field: "row".into(),
                        message: format!("is not valid JSON: {e}"),
                    }),
                }
            }
            refuse(errors)?;
            rows
        }
        "csv" => {
            // Every column is read as text, so that a bad value is reported against its row and field
            // instead of failing the whole file in the CSV parser's type inference.
            let frame = CsvReadOptions::default()
                .with_has_header(true)
                .with_infer_schema_length(Some(0))
                .try_into_reader_with_file_path(Some(path.into()))
                .and_then(|r| r.finish())
                .map_err(|e| io(&e))?;
            frame_rows(&frame)?
        }
        "parquet" => {
            let file = File::open(path).map_err(|e| io(&e))?;
            let frame = ParquetReader::new(file).finish().map_err(|e| io(&e))?;
            frame_rows(&frame)?
        }
        other => {
            return Err(EventsError::Format(format!(
                "unknown event file type {other:?}: use .ndjson, .jsonl, .csv or .parquet"
            )));
        }
    };
    validate_rows(rows)
}

/// A row as read from any format, numbered from 1, before validation.
type RawRow = (usize, serde_json::Map<String, Value>);

/// Turns a data frame into JSON-like rows, so every format shares one validation.
fn frame_rows(frame: &DataFrame) -> Result<Vec<RawRow>, EventsError> {
    let format = |e: PolarsError| EventsError::Format(e.to_string());
    let mut columns = vec![];
    for column in frame.columns() {
        let name = column.name().to_string();
        let values: Vec<Value> = if column.dtype().is_primitive_numeric() {
            let floats = column.cast(&DataType::Float64).map_err(format)?;
            floats.f64().map_err(format)?.iter().map(|v| v.map(Value::from).unwrap_or(Value::Null)).collect()
        } else {
            let text = column.cast(&DataType::String).map_err(format)?;
            text.str()
                .map_err(format)?
                .iter()
                .map(|v| match v {
                    None => Value::Null,
                    Some(s) => Value::String(s.to_owned()),
                })
                .collect()
        };
        columns.push((name, values));
    }
    Ok((0..frame.height())
        .map(|i| (i + 1, columns.iter().map(|(name, values)| (name.clone(), values[i].clone())).collect()))
        .collect())
}

fn refuse(mut errors: Vec<RowError>) -> Result<(), EventsError> {
    if errors.is_empty() {
        return Ok(());
    }
    let total = errors.len();
    errors.truncate(MAX_REPORTED_ERRORS);
    Err(EventsError::Invalid { errors, total })
}

fn validate_rows(rows: Vec<RawRow>) -> Result<Events, EventsError> {
    let mut errors = vec![];
    let mut events = Vec::with_capacity(rows.len());
    for (row, object) in rows {
        match validate(&object) {
            Ok(event) => events.push(event),
            Err(found) => errors.extend(found.into_iter().map(|(field, message)| RowError { row, field, message })),
        }
    }
    refuse(errors)?;
    let mut seen = HashSet::new();
    let before = events.len();
    events.retain(|e| seen.insert(e.event_id.clone()));
    Ok(Events { duplicates: before - events.len(), events })
}

type FieldProblems = Vec<(String, String)>;

/// Checks one row. Text files carry numbers as strings, so numeric fields accept both.
pub fn validate(object: &serde_json::Map<String, Value>) -> Result<InteractionEvent, FieldProblems> {
    let mut problems: FieldProblems = vec![];
    let mut fail = |field: &str, message: String| problems.push((field.to_owned(), message));
    let text = |field: &str| -> Option<String> {
        match object.get(field) {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if s.trim().is_empty() => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(other) => Some(other.to_string()),
        }
    };
    let number = |field: &str| -> Result<Option<f64>, String> {
        match object.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(n)) => n.as_f64().map(Some).ok_or_else(|| "must be a number".to_owned()),
            Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
            Some(Value::String(s)) => {
                s.trim().parse::<f64>().map(Some).map_err(|_| format!("must be a number, not {s:?}"))
            }
            Some(other) => Err(format!("must be a number, not {other}")),
        }
    };
    let mut required = |field: &str| -> Option<String> {
        let value = text(field);
        if value.is_none() {
            fail(field, "is required".into());
        }
        value
    };
    let event_id = required("event_id");
    let ts_text = required("ts");
    let loop_key = required("loop");
    let user_id = required("user_id");
    let variant = required("variant");
    let ts = ts_text.as_deref().and_then(|t| match DateTime::parse_from_rfc3339(t) {
        Ok(ts) => Some(ts.with_timezone(&Utc)),
        Err(_) => {
            fail("ts", format!("must be an RFC 3339 time such as 2027-01-31T09:30:00Z, not {t:?}"));
            None
        }
    });
    let mut count = |field: &str| -> Option<u64> {
        match number(field) {
            Ok(Some(v)) if v >= 0.0 && v.fract() == 0.0 && v < 9.0e15 => Some(v as u64),
            Ok(Some(v)) => {
                fail(field, format!("must be a whole number ≥ 0, not {v}"));
                None
            }
            Ok(None) => {
                fail(field, "is required".into());
                None
            }
            Err(e) => {
                fail(field, e);
                None
            }
        }
    };
    let suggested = count("suggested_chars");
    let accepted = count("accepted_chars");
    if let (Some(s), Some(a)) = (suggested, accepted)
        && a > s
    {
        fail("accepted_chars", format!("must not exceed suggested_chars ({s}), not {a}"));
    }
    let mut optional_amount = |field: &str| -> Option<f64> {
        match number(field) {
            Ok(Some(v)) if v >= 0.0 && v.is_finite() => Some(v),
            Ok(Some(v)) => {
                fail(field, format!("must be ≥ 0, not {v}"));
                None
            }
            Ok(None) => None,
            Err(e) => {
                fail(field, e);
                None
            }
        }
    };
    let latency_ms = optional_amount("latency_ms");
    let cost_usd = optional_amount("cost_usd");
    let attributes = match object.get("attributes") {
        None | Some(Value::Null) => None,
        Some(Value::Object(map)) => Some(map.clone()),
        // CSV and Parquet carry the object as JSON text.
        Some(Value::String(s)) if s.trim().is_empty() => None,
        Some(Value::String(s)) => match serde_json::from_str::<Value>(s) {
            Ok(Value::Object(map)) => Some(map),
            _ => {
                fail("attributes", "must be a JSON object".into());
                None
            }
        },
        Some(_) => {
            fail("attributes", "must be a JSON object".into());
            None
        }
    };
    if !problems.is_empty() {
        return Err(problems);
    }
    match (event_id, ts, loop_key, user_id, variant, suggested, accepted) {
        (
            Some(event_id),
            Some(ts),
            Some(loop_key),
            Some(user_id),
            Some(variant),
            Some(suggested_chars),
            Some(accepted_chars),
        ) => Ok(InteractionEvent {
            event_id,
            ts,
            loop_key,
            user_id,
            variant,
            suggested_chars,
            accepted_chars,
            latency_ms,
            cost_usd,
            session_id: text("session_id"),
            unit: text("unit"),
            context: text("context"),
            suggestion: text("suggestion"),
            final_text: text("final_text"),
            attributes,
        }),
        _ => Err(vec![("row".into(), "is incomplete".into())]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn temp_file(name: &str, content: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("slope-events-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::File::create(&path).unwrap().write_all(content.as_bytes()).unwrap();
        path
    }

    const GOOD: &str = r#"{"event_id":"e1","ts":"2027-01-04T09:00:00Z","loop":"notes","user_id":"u1","variant":"A","suggested_chars":10,"accepted_chars":4,"attributes":{"specialty":"gp"}}
{"event_id":"e2","ts":"2027-01-04T10:00:00+01:00","loop":"notes","user_id":"u2","variant":"B","suggested_chars":8,"accepted_chars":8,"latency_ms":120}
{"event_id":"e1","ts":"2027-01-04T09:00:00Z","loop":"notes","user_id":"u1","variant":"A","suggested_chars":10,"accepted_chars":4}
"#;

    #[test]
    fn ndjson_events_are_read_and_repeated_ids_dropped() {
        let events = read_interactions(&temp_file("good.ndjson", GOOD)).unwrap();
        assert_eq!(events.events.len(), 2);
        assert_eq!(events.duplicates, 1);
        assert_eq!(events.events[1].ts.to_rfc3339(), "2027-01-04T09:00:00+00:00");
        assert_eq!(events.events[0].attributes.as_ref().unwrap()["specialty"], "gp");
    }

    #[test]
    fn csv_and_ndjson_give_the_same_events() {
        let csv = "event_id,ts,loop,user_id,variant,suggested_chars,accepted_chars,latency_ms\n\
                   e1,2027-01-04T09:00:00Z,notes,u1,A,10,4,\n\
                   e2,2027-01-04T09:00:00Z,notes,u2,B,8,8,120\n";
        let events = read_interactions(&temp_file("good.csv", csv)).unwrap();
        assert_eq!(events.events.len(), 2);
        assert_eq!(events.events[0].suggested_chars, 10);
        assert_eq!(events.events[0].latency_ms, None);
        assert_eq!(events.events[1].latency_ms, Some(120.0));
    }

    #[test]
    fn invalid_rows_are_named_and_nothing_is_read() {
        let bad = r#"{"event_id":"e1","ts":"2027-01-04T09:00:00Z","loop":"notes","user_id":"u1","variant":"A","suggested_chars":10,"accepted_chars":4}
{"event_id":"e2","ts":"yesterday","loop":"notes","user_id":"u1","variant":"A","suggested_chars":3,"accepted_chars":5}
not json
{"event_id":"e4","ts":"2027-01-04T09:00:00Z","loop":"notes","variant":"A","suggested_chars":-1,"accepted_chars":0}
"#;
        let err = read_interactions(&temp_file("bad.ndjson", bad)).unwrap_err();
        let EventsError::Invalid { errors, total } = err else { panic!("{err}") };
        let found: Vec<(usize, &str)> = errors.iter().map(|e| (e.row, e.field.as_str())).collect();
        assert_eq!(found, [(3, "row")], "syntax errors are reported before field checks");
        assert_eq!(total, 1);

        let bad = bad.replace("not json\n", "");
        let EventsError::Invalid { errors, .. } = read_interactions(&temp_file("bad2.ndjson", &bad)).unwrap_err()
        else {
            panic!()
        };
        let found: Vec<(usize, &str)> = errors.iter().map(|e| (e.row, e.field.as_str())).collect();
        assert_eq!(found, [(2, "ts"), (2, "accepted_chars"), (3, "user_id"), (3, "suggested_chars")]);
        assert!(errors[1].message.contains("must not exceed suggested_chars (3)"));
    }

    #[test]
    fn unknown_extensions_are_refused() {
        assert!(matches!(read_interactions(&temp_file("x.xlsx", "")), Err(EventsError::Format(_))));
    }
}
