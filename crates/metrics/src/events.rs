//! Interaction events: one AI suggestion shown to a person. Read from NDJSON, CSV or Parquet files,
//! validated row by row; a file with any invalid row is refused whole, naming the rows.

// Long on purpose: reading every format (NDJSON, CSV, Parquet) and validating every row with its error report
// is one concern, and its tests sit beside it.

use std::collections::HashSet;
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

#[cfg(test)]
impl InteractionEvent {
    /// An event with only the required fields, for the tests of every module.
    pub(crate) fn sample(
        event_id: &str,
        ts: DateTime<Utc>,
        user: &str,
        variant: &str,
        suggested: u64,
        accepted: u64,
    ) -> InteractionEvent {
        InteractionEvent {
            event_id: event_id.into(),
            ts,
            loop_key: "notes".into(),
            user_id: user.into(),
            variant: variant.into(),
            suggested_chars: suggested,
            accepted_chars: accepted,
            latency_ms: None,
            cost_usd: None,
            session_id: None,
            unit: None,
            context: None,
            suggestion: None,
            final_text: None,
            attributes: None,
        }
    }
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
    /// The batch decodes to more than its [`Budget`] allows; `limit` names the setting.
    #[error("{message}")]
    TooLarge { limit: &'static str, message: String },
}

/// How much one batch may hold once decoded. Checked before any row is built (from a Parquet file's
/// metadata, a CSV reader that stops one row past the limit, an NDJSON body's line count), so a small
/// body that decodes into a huge table, such as a few kilobytes of Parquet declaring 10⁹ rows or a
/// dictionary of long strings repeated on every row, is refused at the cost of reading its metadata.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// Rows in one batch (setting `ingest_max_rows`).
    pub max_rows: usize,
    /// Bytes of text in one batch once decoded: the body for NDJSON and CSV, the sum of every text
    /// cell for Parquet (setting `ingest_max_text_bytes`).
    pub max_text_bytes: usize,
}

impl Budget {
    /// No limit, for files a person reads on their own machine.
    pub const UNLIMITED: Budget = Budget { max_rows: usize::MAX, max_text_bytes: usize::MAX };

    fn rows(&self, rows: usize) -> Result<(), EventsError> {
        if rows > self.max_rows {
            return Err(EventsError::TooLarge {
                limit: "ingest_max_rows",
                message: format!(
                    "the batch holds {} rows; at most {} are taken in one batch (ingest_max_rows), so split it",
                    if rows == usize::MAX { "too many".to_owned() } else { rows.to_string() },
                    self.max_rows
                ),
            });
        }
        Ok(())
    }

    fn text(&self, bytes: usize) -> Result<(), EventsError> {
        if bytes > self.max_text_bytes {
            return Err(EventsError::TooLarge {
                limit: "ingest_max_text_bytes",
                message: format!(
                    "the batch decodes to {bytes} bytes of text; at most {} are taken in one batch \
                     (ingest_max_text_bytes), so split it",
                    self.max_text_bytes
                ),
            });
        }
        Ok(())
    }

    /// An NDJSON body's rows: its non-blank lines. Line breaks are counted first, which is an upper
    /// bound and cheap; only a body that may be over the limit has its blank lines told apart.
    fn lines(&self, bytes: &[u8]) -> Result<(), EventsError> {
        self.text(bytes.len())?;
        let breaks = bytes.iter().filter(|&&b| b == b'\n').count();
        if breaks < self.max_rows {
            return Ok(());
        }
        let rows = bytes.split(|&b| b == b'\n').filter(|line| !line.iter().all(u8::is_ascii_whitespace)).count();
        self.rows(rows)
    }
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

/// The formats a batch or file of events may come in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Ndjson,
    Csv,
    Parquet,
}

impl Format {
    /// The format a file's extension names (`.ndjson`/`.jsonl`/`.json`, `.csv`, `.parquet`).
    pub fn from_path(path: &Path) -> Result<Format, EventsError> {
        let extension = path.extension().and_then(|e| e.to_str()).unwrap_or_default().to_ascii_lowercase();
        match extension.as_str() {
            "ndjson" | "jsonl" | "json" => Ok(Format::Ndjson),
            "csv" => Ok(Format::Csv),
            "parquet" => Ok(Format::Parquet),
            other => Err(EventsError::Format(format!(
                "unknown event file type {other:?}: use .ndjson, .jsonl, .csv or .parquet"
            ))),
        }
    }

    /// The format a `Content-Type` names, ignoring parameters such as `charset`.
    pub fn from_content_type(content_type: &str) -> Option<Format> {
        match content_type.split(';').next().unwrap_or_default().trim().to_ascii_lowercase().as_str() {
            "application/x-ndjson" | "application/ndjson" | "application/jsonl" | "application/json" => {
                Some(Format::Ndjson)
            }
            "text/csv" => Some(Format::Csv),
            "application/vnd.apache.parquet" | "application/x-parquet" | "application/parquet" => Some(Format::Parquet),
            _ => None,
        }
    }
}

/// Reads interaction events from `path`; the format follows the extension.
pub fn read_interactions(path: &Path) -> Result<Events, EventsError> {
    let format = Format::from_path(path)?;
    let bytes = std::fs::read(path)
        .map_err(|e| EventsError::Io { path: path.display().to_string(), message: e.to_string() })?;
    parse_batch(&bytes, format, None)
}

/// Parses and validates a whole batch of events. Any invalid row refuses the batch, naming rows and
/// fields; repeated `event_id`s within the batch are dropped and counted. With `batch_loop` (a batch
/// posted to one loop), rows may leave out `loop`, and rows naming another loop are refused.
pub fn parse_batch(bytes: &[u8], format: Format, batch_loop: Option<&str>) -> Result<Events, EventsError> {
    parse_batch_until(bytes, format, batch_loop, None)
}

/// [`parse_batch`], refusing events later than `latest` when given (see [`latest_event_time`]).
pub fn parse_batch_until(
    bytes: &[u8],
    format: Format,
    batch_loop: Option<&str>,
    latest: Option<DateTime<Utc>>,
) -> Result<Events, EventsError> {
    parse_batch_within(bytes, format, batch_loop, latest, Budget::UNLIMITED)
}

/// [`parse_batch_until`], refusing a batch that decodes to more than `budget`.
pub fn parse_batch_within(
    bytes: &[u8],
    format: Format,
    batch_loop: Option<&str>,
    latest: Option<DateTime<Utc>>,
    budget: Budget,
) -> Result<Events, EventsError> {
    let check = |object: &JsonObject| {
        let event = validate_in(object, batch_loop)?;
        match too_late(event.ts, latest) {
            Some(problem) => Err(vec![problem]),
            None => Ok(event),
        }
    };
    match parse_frame(bytes, format, budget)? {
        None => {
            let fast = |line: &str| typed_event(line, batch_loop, latest);
            Ok(dedup(ndjson_rows(bytes, &fast, &check)?))
        }
        Some(frame) => Ok(dedup(frame_rows(&frame, &check)?)),
    }
}

/// The most columns a CSV or Parquet batch may have; events have sixteen fields.
const MAX_COLUMNS: usize = 256;

/// Reads a CSV or Parquet body into a frame within `budget`; `None` for NDJSON, which is parsed line by
/// line after its lines are counted.
fn parse_frame(bytes: &[u8], format: Format, budget: Budget) -> Result<Option<DataFrame>, EventsError> {
    let columns = |n: usize| {
        if n > MAX_COLUMNS {
            return Err(EventsError::Format(format!("the file has {n} columns; events have at most {MAX_COLUMNS}")));
        }
        Ok(())
    };
    Ok(match format {
        Format::Ndjson => {
            budget.lines(bytes)?;
            None
        }
        Format::Csv => {
            budget.text(bytes.len())?;
            // Every column is read as text, so that a bad value is reported against its row and field
            // instead of failing the whole file in the CSV parser's type inference. The reader stops
            // one row past the budget: enough to know the batch is over it.
            let frame = CsvReadOptions::default()
                .with_has_header(true)
                .with_infer_schema_length(Some(0))
                .with_n_rows(Some(budget.max_rows.saturating_add(1)))
                .into_reader_with_file_handle(std::io::Cursor::new(bytes))
                .finish()
                .map_err(|e| EventsError::Format(format!("not a readable CSV file: {e}")))?;
            columns(frame.width())?;
            budget.rows(frame.height())?;
            Some(frame)
        }
        Format::Parquet => {
            let unreadable = |e: PolarsError| EventsError::Format(format!("not a readable Parquet file: {e}"));
            let mut reader = ParquetReader::new(std::io::Cursor::new(bytes));
            // The metadata declares the rows and the schema; both are checked before a page is decoded.
            let metadata = reader.get_metadata().map_err(unreadable)?;
            let in_groups = metadata.row_groups.iter().fold(0usize, |n, group| n.saturating_add(group.num_rows()));
            budget.rows(metadata.num_rows.max(in_groups))?;
            let schema = reader.schema().map_err(unreadable)?;
            columns(schema.len())?;
            for (name, field) in schema.iter() {
                let dtype = DataType::from_arrow_field(field);
                if matches!(dtype, DataType::List(_) | DataType::Binary | DataType::BinaryOffset | DataType::Unknown(_))
                {
                    return Err(EventsError::Format(format!(
                        "column {name:?} holds {dtype}; event fields are text, numbers, booleans or times"
                    )));
                }
            }
            let frame = reader.finish().map_err(unreadable)?;
            budget.rows(frame.height())?;
            // Text cells are measured on the decoded columns, which share a dictionary's strings rather
            // than copy them, before any cell becomes a string of its own.
            let mut text = 0usize;
            for column in frame.columns() {
                if let Ok(strings) = column.str() {
                    text = strings.iter().fold(text, |sum, v| sum.saturating_add(v.map_or(0, str::len)));
                    budget.text(text)?;
                }
            }
            Some(frame)
        }
    })
}

/// NDJSON is parsed and validated on every core: it is the format loops send most, and JSON parsing
/// is the cost of ingestion.
/// Rows are checked by `check`, in parallel. All syntax errors are reported before
/// any field error: a row that is not JSON hides whatever else is wrong.
fn ndjson_rows<T: Send>(
    bytes: &[u8],
    fast: &(dyn Fn(&str) -> Option<T> + Sync),
    check: &(dyn Fn(&JsonObject) -> Result<T, FieldProblems> + Sync),
) -> Result<Vec<T>, EventsError> {
    let text = std::str::from_utf8(bytes).map_err(|e| {
        let line = bytes[..e.valid_up_to()].iter().filter(|&&b| b == b'\n').count() + 1;
        EventsError::Invalid {
            errors: vec![RowError { row: line, field: "row".into(), message: "is not valid UTF-8".into() }],
            total: 1,
        }
    })?;
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(16);
    // Chunks end at line breaks, and each knows the number of its first line.
    let mut chunks = vec![];
    let (mut start, mut first_line) = (0usize, 1usize);
    let target = text.len() / threads + 1;
    while start < text.len() {
        let mut end = (start + target).min(text.len());
        while end < text.len() && text.as_bytes()[end - 1] != b'\n' {
            end += 1;
        }
        let chunk = &text[start..end];
        chunks.push((first_line, chunk));
        first_line += chunk.bytes().filter(|&b| b == b'\n').count();
        start = end;
    }
    type Parsed<T> = (Vec<T>, Vec<RowError>, Vec<RowError>);
    let parse = |(first, chunk): (usize, &str)| -> Parsed<T> {
        let (mut events, mut syntax, mut fields) = (vec![], vec![], vec![]);
        for (i, line) in chunk.lines().enumerate() {
            let row = first + i;
            if line.trim().is_empty() {
                continue;
            }
            if let Some(row) = fast(line) {
                events.push(row);
                continue;
            }
            match serde_json::from_str::<Value>(line) {
                Ok(Value::Object(object)) => match check(&object) {
                    Ok(event) => events.push(event),
                    Err(found) => {
                        fields.extend(found.into_iter().map(|(field, message)| RowError { row, field, message }))
                    }
                },
                Ok(_) => syntax.push(RowError { row, field: "row".into(), message: "must be a JSON object".into() }),
                Err(e) => {
                    syntax.push(RowError { row, field: "row".into(), message: format!("is not valid JSON: {e}") })
                }
            }
        }
        (events, syntax, fields)
    };
    let parsed: Vec<Parsed<T>> = if chunks.len() <= 1 {
        chunks.into_iter().map(parse).collect()
    } else {
        std::thread::scope(|scope| {
            let handles: Vec<_> = chunks.into_iter().map(|chunk| scope.spawn(move || parse(chunk))).collect();
            handles.into_iter().map(|h| h.join().expect("an NDJSON worker panicked")).collect()
        })
    };
    let (mut events, mut syntax, mut fields) = (vec![], vec![], vec![]);
    for (e, s, f) in parsed {
        events.extend(e);
        syntax.extend(s);
        fields.extend(f);
    }
    refuse(syntax)?;
    refuse(fields)?;
    Ok(events)
}

/// A purchase by a customer, for customer lifetime value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TransactionEvent {
    pub event_id: String,
    pub customer_id: String,
    pub ts: DateTime<Utc>,
    pub amount: f64,
    /// The organisation unit the customer belongs to, so that LTV can be cut by unit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    /// The customer's user in the loops' interaction events, when the product knows it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
}

/// Parses and validates a batch of transaction events (`event_id`, `customer_id`, `ts`, `amount` ≥ 0,
/// optionally `unit` and `user_id`), all or nothing; repeated ids within the batch are dropped and counted.
pub fn parse_transactions(
    bytes: &[u8],
    format: Format,
    latest: Option<DateTime<Utc>>,
) -> Result<(Vec<TransactionEvent>, usize), EventsError> {
    parse_transactions_within(bytes, format, latest, Budget::UNLIMITED)
}

/// [`parse_transactions`], refusing a batch that decodes to more than `budget`.
pub fn parse_transactions_within(
    bytes: &[u8],
    format: Format,
    latest: Option<DateTime<Utc>>,
    budget: Budget,
) -> Result<(Vec<TransactionEvent>, usize), EventsError> {
    let check = |object: &JsonObject| {
        let t = validate_transaction(object)?;
        match too_late(t.ts, latest) {
            Some(problem) => Err(vec![problem]),
            None => Ok(t),
        }
    };
    let rows = match parse_frame(bytes, format, budget)? {
        None => ndjson_rows(bytes, &|_| None, &check)?,
        Some(frame) => frame_rows(&frame, &check)?,
    };
    let mut seen = HashSet::with_capacity(rows.len());
    let before = rows.len();
    let rows: Vec<TransactionEvent> = rows.into_iter().filter(|t| seen.insert(t.event_id.clone())).collect();
    let duplicates = before - rows.len();
    Ok((rows, duplicates))
}

fn validate_transaction(object: &serde_json::Map<String, Value>) -> Result<TransactionEvent, FieldProblems> {
    let mut problems: FieldProblems = vec![];
    let text = |field: &str| match object.get(field) {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.trim().is_empty() => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(other) => Some(other.to_string()),
    };
    let required = |field: &str, problems: &mut FieldProblems| {
        let value = text(field);
        if value.is_none() {
            problems.push((field.to_owned(), "is required".into()));
        }
        value
    };
    let event_id = required("event_id", &mut problems);
    let customer_id = required("customer_id", &mut problems);
    let ts = required("ts", &mut problems).and_then(|t| match parse_event_time(&t) {
        Ok(ts) => Some(ts),
        Err(message) => {
            problems.push(("ts".into(), message));
            None
        }
    });
    let amount = match object.get("amount") {
        Some(Value::Number(n)) => n.as_f64(),
        Some(Value::String(s)) => s.trim().parse::<f64>().ok(),
        _ => None,
    };
    let amount = match amount {
        Some(a) if a.is_finite() && a >= 0.0 => Some(a),
        Some(a) => {
            problems.push(("amount".into(), format!("must be a number ≥ 0, not {a}")));
            None
        }
        None => {
            problems.push(("amount".into(), "is required and must be a number ≥ 0".into()));
            None
        }
    };
    match (event_id, customer_id, ts, amount) {
        (Some(event_id), Some(customer_id), Some(ts), Some(amount)) if problems.is_empty() => {
            Ok(TransactionEvent { event_id, customer_id, ts, amount, unit: text("unit"), user_id: text("user_id") })
        }
        _ => Err(problems),
    }
}

/// The column names and types of an events frame: what [`to_frame`] builds, what stored segments hold
/// and what every polars computation in this crate reads. Times are UTC microseconds without a zone.
pub fn schema() -> Schema {
    let text = DataType::String;
    Schema::from_iter([
        Field::new("event_id".into(), text.clone()),
        Field::new("ts".into(), DataType::Datetime(TimeUnit::Microseconds, None)),
        Field::new("loop".into(), text.clone()),
        Field::new("user_id".into(), text.clone()),
        Field::new("variant".into(), text.clone()),
        Field::new("suggested_chars".into(), DataType::UInt64),
        Field::new("accepted_chars".into(), DataType::UInt64),
        Field::new("latency_ms".into(), DataType::Float64),
        Field::new("cost_usd".into(), DataType::Float64),
        Field::new("session_id".into(), text.clone()),
        Field::new("unit".into(), text.clone()),
        Field::new("context".into(), text.clone()),
        Field::new("suggestion".into(), text.clone()),
        Field::new("final_text".into(), text.clone()),
        // Attributes are kept as JSON text: their keys differ from loop to loop.
        Field::new("attributes".into(), text),
    ])
}

/// Validated events as a polars frame with the columns of [`schema`].
pub fn to_frame(events: &[InteractionEvent]) -> PolarsResult<DataFrame> {
    fn text<'a>(name: &str, values: impl Iterator<Item = Option<&'a str>>) -> Column {
        Column::new(name.into(), values.collect::<Vec<_>>())
    }
    let ts = Column::new("ts".into(), events.iter().map(|e| e.ts.timestamp_micros()).collect::<Vec<i64>>())
        .cast(&DataType::Datetime(TimeUnit::Microseconds, None))?;
    let attributes: Vec<Option<String>> =
        events.iter().map(|e| e.attributes.as_ref().map(|a| Value::Object(a.clone()).to_string())).collect();
    DataFrame::new(
        events.len(),
        vec![
            text("event_id", events.iter().map(|e| Some(e.event_id.as_str()))),
            ts,
            text("loop", events.iter().map(|e| Some(e.loop_key.as_str()))),
            text("user_id", events.iter().map(|e| Some(e.user_id.as_str()))),
            text("variant", events.iter().map(|e| Some(e.variant.as_str()))),
            Column::new("suggested_chars".into(), events.iter().map(|e| e.suggested_chars).collect::<Vec<u64>>()),
            Column::new("accepted_chars".into(), events.iter().map(|e| e.accepted_chars).collect::<Vec<u64>>()),
            Column::new("latency_ms".into(), events.iter().map(|e| e.latency_ms).collect::<Vec<_>>()),
            Column::new("cost_usd".into(), events.iter().map(|e| e.cost_usd).collect::<Vec<_>>()),
            text("session_id", events.iter().map(|e| e.session_id.as_deref())),
            text("unit", events.iter().map(|e| e.unit.as_deref())),
            text("context", events.iter().map(|e| e.context.as_deref())),
            text("suggestion", events.iter().map(|e| e.suggestion.as_deref())),
            text("final_text", events.iter().map(|e| e.final_text.as_deref())),
            Column::new("attributes".into(), attributes),
        ],
    )
}

/// Rows converted to JSON-like maps at a time: the maps of one slice are dropped before the next is
/// built, so validation needs memory for one slice of maps, not one map per row of the batch.
const ROWS_PER_SLICE: usize = 16_384;

/// Validates every row of a data frame with `check`, the validation every format shares, and refuses the
/// batch naming its invalid rows (numbered from 1).
fn frame_rows<T>(
    frame: &DataFrame,
    check: &dyn Fn(&JsonObject) -> Result<T, FieldProblems>,
) -> Result<Vec<T>, EventsError> {
    let mut out = Vec::with_capacity(frame.height());
    let mut errors = vec![];
    let mut offset = 0;
    while offset < frame.height() {
        let slice = frame.slice(offset as i64, ROWS_PER_SLICE);
        for (i, object) in slice_rows(&slice)?.into_iter().enumerate() {
            let row = offset + i + 1;
            match check(&object) {
                Ok(value) => out.push(value),
                Err(found) => errors.extend(found.into_iter().map(|(field, message)| RowError { row, field, message })),
            }
        }
        offset += ROWS_PER_SLICE;
    }
    refuse(errors)?;
    Ok(out)
}

/// Turns a slice of a data frame into JSON-like rows.
fn slice_rows(frame: &DataFrame) -> Result<Vec<serde_json::Map<String, Value>>, EventsError> {
    let format = |e: PolarsError| EventsError::Format(e.to_string());
    let mut columns = vec![];
    for column in frame.columns() {
        let name = column.name().to_string();
        let values: Vec<Value> = if let DataType::Datetime(unit, _) = column.dtype() {
            // Timestamps (Slope's own segments, and files from polars, pandas or Spark) become RFC 3339
            // text for the shared validation; a timestamp without a zone is taken as UTC.
            let unit = *unit;
            let physical = column.cast(&DataType::Int64).map_err(format)?;
            physical
                .i64()
                .map_err(format)?
                .iter()
                .map(|v| {
                    let at = v.and_then(|v| match unit {
                        TimeUnit::Nanoseconds => Some(DateTime::from_timestamp_nanos(v)),
                        TimeUnit::Microseconds => DateTime::from_timestamp_micros(v),
                        TimeUnit::Milliseconds => DateTime::from_timestamp_millis(v),
                    });
                    at.map(|t| Value::String(t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)))
                        .unwrap_or(Value::Null)
                })
                .collect()
        } else if column.dtype().is_primitive_numeric() {
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
        .map(|i| columns.iter().map(|(name, values)| (name.clone(), values[i].clone())).collect())
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

fn dedup(events: Vec<InteractionEvent>) -> Events {
    // Borrowed ids: a batch of millions of events must not copy every id once more.
    let keep: Vec<bool> = {
        let mut seen: HashSet<&str> = HashSet::with_capacity(events.len());
        events.iter().map(|e| seen.insert(e.event_id.as_str())).collect()
    };
    let before = events.len();
    let events: Vec<InteractionEvent> = events.into_iter().zip(keep).filter_map(|(e, k)| k.then_some(e)).collect();
    Events { duplicates: before - events.len(), events }
}

/// A well-formed NDJSON row, borrowed from the line. Most rows of a real batch are like this, and reading
/// them without building a JSON value first is what makes ingestion fast; any row this does not take
/// (a number given as text, an empty string, a rule broken) goes through [`validate`], which accepts
/// the same rows and names what is wrong with the others.
#[derive(Deserialize)]
struct TypedRow<'a> {
    #[serde(borrow)]
    event_id: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    ts: std::borrow::Cow<'a, str>,
    #[serde(rename = "loop", borrow, default)]
    loop_key: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow)]
    user_id: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    variant: std::borrow::Cow<'a, str>,
    suggested_chars: u64,
    accepted_chars: u64,
    #[serde(default)]
    latency_ms: Option<f64>,
    #[serde(default)]
    cost_usd: Option<f64>,
    #[serde(borrow, default)]
    session_id: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow, default)]
    unit: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow, default)]
    context: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow, default)]
    suggestion: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow, default)]
    final_text: Option<std::borrow::Cow<'a, str>>,
    #[serde(default)]
    attributes: Option<serde_json::Map<String, Value>>,
}

/// The event of a well-formed line, or `None` to take the line through the full validation.
fn typed_event(line: &str, batch_loop: Option<&str>, latest: Option<DateTime<Utc>>) -> Option<InteractionEvent> {
    let row: TypedRow = serde_json::from_str(line).ok()?;
    let text = |c: std::borrow::Cow<str>| (!c.trim().is_empty()).then(|| c.into_owned());
    let optional = |c: Option<std::borrow::Cow<str>>| c.and_then(text);
    let ts = parse_event_time(&row.ts).ok()?;
    if too_late(ts, latest).is_some() {
        return None;
    }
    let loop_key = match (row.loop_key.and_then(text), batch_loop) {
        (Some(l), Some(b)) if l != b => return None,
        (Some(l), _) => l,
        (None, Some(b)) => b.to_owned(),
        (None, None) => return None,
    };
    let amount_ok = |v: Option<f64>| v.is_none_or(|v| v >= 0.0 && v.is_finite());
    let counts_ok = row.suggested_chars < 9_000_000_000_000_000 && row.accepted_chars <= row.suggested_chars;
    if !counts_ok || !amount_ok(row.latency_ms) || !amount_ok(row.cost_usd) {
        return None;
    }
    Some(InteractionEvent {
        event_id: text(row.event_id)?,
        ts,
        loop_key,
        user_id: text(row.user_id)?,
        variant: text(row.variant)?,
        suggested_chars: row.suggested_chars,
        accepted_chars: row.accepted_chars,
        latency_ms: row.latency_ms,
        cost_usd: row.cost_usd,
        session_id: optional(row.session_id),
        unit: optional(row.unit),
        context: optional(row.context),
        suggestion: optional(row.suggestion),
        final_text: optional(row.final_text),
        attributes: row.attributes,
    })
}

type FieldProblems = Vec<(String, String)>;

/// The earliest event time accepted: nothing in a loop's history predates it, and a bound keeps a typo
/// such as year 0201 from making every per-day computation span eighteen centuries.
pub const EARLIEST_EVENT: &str = "2000-01-01T00:00:00Z";

/// Parses an event time: RFC 3339, not before [`EARLIEST_EVENT`].
pub fn parse_event_time(text: &str) -> Result<DateTime<Utc>, String> {
    let ts = DateTime::parse_from_rfc3339(text)
        .map_err(|_| format!("must be an RFC 3339 time such as 2027-01-31T09:30:00Z, not {text:?}"))?
        .with_timezone(&Utc);
    let earliest = DateTime::parse_from_rfc3339(EARLIEST_EVENT).map(|t| t.with_timezone(&Utc)).unwrap_or_default();
    if ts < earliest {
        return Err(format!("must not be before {EARLIEST_EVENT}, not {text:?}"));
    }
    Ok(ts)
}

/// The latest event time a stored batch may hold: a day after now (clocks drift; the future does not
/// happen). Files analysed with `slope metrics` have no such bound.
pub fn latest_event_time() -> DateTime<Utc> {
    Utc::now() + chrono::Duration::days(1)
}

fn too_late(ts: DateTime<Utc>, latest: Option<DateTime<Utc>>) -> Option<(String, String)> {
    latest
        .filter(|l| ts > *l)
        .map(|_| ("ts".to_owned(), format!("is more than a day in the future: {}", ts.to_rfc3339())))
}
type JsonObject = serde_json::Map<String, Value>;

/// Checks one row of a batch posted to `batch_loop`, if any.
fn validate_in(
    object: &serde_json::Map<String, Value>,
    batch_loop: Option<&str>,
) -> Result<InteractionEvent, FieldProblems> {
    let Some(batch_loop) = batch_loop else { return validate(object) };
    let mut event = match object.get("loop") {
        None | Some(Value::Null) => {
            let mut with_loop = object.clone();
            with_loop.insert("loop".into(), Value::String(batch_loop.to_owned()));
            validate(&with_loop)?
        }
        Some(_) => validate(object)?,
    };
    if event.loop_key != batch_loop {
        return Err(vec![(
            "loop".into(),
            format!("must be {batch_loop:?}, the loop this batch is posted to, not {:?}", event.loop_key),
        )]);
    }
    event.loop_key = batch_loop.to_owned();
    Ok(event)
}

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
    let ts = ts_text.as_deref().and_then(|t| match parse_event_time(t) {
        Ok(ts) => Some(ts),
        Err(message) => {
            fail("ts", message);
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
    fn parquet_timestamps_are_read_as_utc_times() {
        let events = read_interactions(&temp_file("good.ndjson", GOOD)).unwrap().events;
        let bytes = crate::segment::encode(&events).unwrap();
        let back = parse_batch(&bytes, Format::Parquet, None).unwrap();
        assert_eq!(back.events, events, "a segment reads back as the events it was written from");
    }

    /// A Parquet body of constant columns: RLE and a dictionary make it tiny whatever its height.
    fn constant_parquet(rows: usize, text: &str) -> Vec<u8> {
        let column = |name: &str, value: &str| Column::new(name.into(), vec![value; rows]);
        let mut frame = DataFrame::new_infer_height(vec![
            column("event_id", "e1"),
            column("ts", "2027-01-04T09:00:00Z"),
            column("user_id", "u1"),
            column("variant", "champion"),
            Column::new("suggested_chars".into(), vec![10u64; rows]),
            Column::new("accepted_chars".into(), vec![5u64; rows]),
            column("context", text),
        ])
        .unwrap();
        let mut out = vec![];
        ParquetWriter::new(&mut out).finish(&mut frame).unwrap();
        out
    }

    #[test]
    fn a_parquet_bomb_is_refused_from_its_metadata() {
        let bomb = constant_parquet(2_000_000, "x");
        assert!(bomb.len() < 64 * 1024, "a bomb is small: {} bytes", bomb.len());
        let budget = Budget { max_rows: 10_000, max_text_bytes: usize::MAX };
        let refused = parse_batch_within(&bomb, Format::Parquet, Some("notes"), None, budget).unwrap_err();
        assert!(
            matches!(&refused, EventsError::TooLarge { limit: "ingest_max_rows", message } if message.contains("2000000 rows")),
            "{refused:?}"
        );
        // A dictionary of one long string on every row: few rows, much text once decoded.
        let long = "y".repeat(100_000);
        let wordy = constant_parquet(2_000, &long);
        assert!(wordy.len() < 64 * 1024, "the dictionary compresses: {} bytes", wordy.len());
        let budget = Budget { max_rows: 10_000, max_text_bytes: 50_000_000 };
        let refused = parse_batch_within(&wordy, Format::Parquet, Some("notes"), None, budget).unwrap_err();
        assert!(matches!(&refused, EventsError::TooLarge { limit: "ingest_max_text_bytes", .. }), "{refused:?}");
        // Within the budget, the same kind of file is read.
        let small = constant_parquet(3, "z");
        let read = parse_batch_within(&small, Format::Parquet, Some("notes"), None, budget).unwrap();
        assert_eq!((read.events.len(), read.duplicates), (1, 2));
    }

    #[test]
    fn text_batches_are_held_to_the_row_and_byte_budget() {
        let line = "{\"event_id\":\"e1\",\"ts\":\"2027-01-04T09:00:00Z\",\"user_id\":\"u\",\"variant\":\"a\",\"suggested_chars\":1,\"accepted_chars\":1}\n";
        let ndjson = line.repeat(11);
        let budget = Budget { max_rows: 10, max_text_bytes: usize::MAX };
        let refused = parse_batch_within(ndjson.as_bytes(), Format::Ndjson, Some("l"), None, budget).unwrap_err();
        assert!(matches!(&refused, EventsError::TooLarge { limit: "ingest_max_rows", .. }), "{refused:?}");
        // Blank lines are no rows: ten rows and many blank lines fit.
        let spaced = line.repeat(10) + &"\n \n".repeat(50);
        parse_batch_within(spaced.as_bytes(), Format::Ndjson, Some("l"), None, budget).expect("ten rows fit");
        let bytes = Budget { max_rows: 100, max_text_bytes: line.len() * 2 };
        let refused = parse_batch_within(ndjson.as_bytes(), Format::Ndjson, Some("l"), None, bytes).unwrap_err();
        assert!(matches!(&refused, EventsError::TooLarge { limit: "ingest_max_text_bytes", .. }), "{refused:?}");
        let mut csv = "event_id,ts,user_id,variant,suggested_chars,accepted_chars\n".to_owned();
        for i in 0..11 {
            csv.push_str(&format!("e{i},2027-01-04T09:00:00Z,u,a,1,1\n"));
        }
        let refused = parse_batch_within(csv.as_bytes(), Format::Csv, Some("l"), None, budget).unwrap_err();
        assert!(matches!(&refused, EventsError::TooLarge { limit: "ingest_max_rows", .. }), "{refused:?}");
        let ten = csv.lines().take(11).collect::<Vec<_>>().join("\n");
        assert_eq!(parse_batch_within(ten.as_bytes(), Format::Csv, Some("l"), None, budget).unwrap().events.len(), 10);
    }

    #[test]
    fn frames_are_validated_a_slice_at_a_time_with_rows_numbered_across_slices() {
        let rows = ROWS_PER_SLICE + 5;
        let mut frame = DataFrame::new_infer_height(vec![
            Column::new("event_id".into(), (0..rows).map(|i| format!("e{i}")).collect::<Vec<_>>()),
            Column::new(
                "ts".into(),
                (0..rows)
                    .map(|i| if i == ROWS_PER_SLICE + 2 { "soon" } else { "2027-01-04T09:00:00Z" })
                    .collect::<Vec<_>>(),
            ),
            Column::new("user_id".into(), vec!["u"; rows]),
            Column::new("variant".into(), vec!["a"; rows]),
            Column::new("suggested_chars".into(), vec![1u64; rows]),
            Column::new("accepted_chars".into(), vec![1u64; rows]),
        ])
        .unwrap();
        let mut bytes = vec![];
        ParquetWriter::new(&mut bytes).finish(&mut frame).unwrap();
        let refused = parse_batch(&bytes, Format::Parquet, Some("l")).unwrap_err();
        let EventsError::Invalid { errors, total } = refused else { panic!("{refused:?}") };
        assert_eq!((total, errors[0].row, errors[0].field.as_str()), (1, ROWS_PER_SLICE + 3, "ts"));
    }

    #[test]
    fn transactions_are_validated_row_by_row() {
        let good = "{\"event_id\":\"t1\",\"customer_id\":\"c1\",\"ts\":\"2027-01-04T09:00:00Z\",\"amount\":12.5}\n\
                    {\"event_id\":\"t1\",\"customer_id\":\"c1\",\"ts\":\"2027-01-04T09:00:00Z\",\"amount\":12.5}\n";
        let (rows, duplicates) = parse_transactions(good.as_bytes(), Format::Ndjson, None).unwrap();
        assert_eq!((rows.len(), duplicates, rows[0].amount), (1, 1, 12.5));
        let csv = "event_id,customer_id,ts,amount\nt1,c1,2027-01-04T09:00:00Z,3\nt2,,yesterday,-1\n";
        let EventsError::Invalid { errors, .. } = parse_transactions(csv.as_bytes(), Format::Csv, None).unwrap_err()
        else {
            panic!()
        };
        let found: Vec<(usize, &str)> = errors.iter().map(|e| (e.row, e.field.as_str())).collect();
        assert_eq!(found, [(2, "customer_id"), (2, "ts"), (2, "amount")]);
    }

    #[test]
    fn the_fast_path_agrees_with_the_full_validation() {
        let lines = [
            r#"{"event_id":"e1","ts":"2027-01-04T09:00:00Z","loop":"notes","user_id":"u1","variant":"A","suggested_chars":10,"accepted_chars":4,"attributes":{"specialty":"gp"},"latency_ms":12.5,"unit":"","extra":1}"#,
            r#"{"event_id":"e2","ts":"2027-01-04T10:00:00+01:00","user_id":"u2","variant":"B","suggested_chars":8,"accepted_chars":8,"final_text":"kept","cost_usd":null}"#,
            // Rows the fast path leaves to the full validation, which accepts or refuses them itself.
            r#"{"event_id":"e3","ts":"2027-01-04T09:00:00Z","user_id":7,"variant":"A","suggested_chars":"10","accepted_chars":4.0}"#,
            r#"{"event_id":"e4","ts":"2027-01-04T09:00:00Z","user_id":"u1","variant":"A","suggested_chars":3,"accepted_chars":5}"#,
            r#"{"event_id":" ","ts":"2027-01-04T09:00:00Z","user_id":"u1","variant":"A","suggested_chars":3,"accepted_chars":1}"#,
            r#"{"event_id":"e6","ts":"2027-01-04T09:00:00Z","loop":"other","user_id":"u1","variant":"A","suggested_chars":3,"accepted_chars":1}"#,
        ];
        for (i, line) in lines.iter().enumerate() {
            let Value::Object(object) = serde_json::from_str::<Value>(line).unwrap() else { panic!() };
            let full = validate_in(&object, Some("notes")).ok();
            match typed_event(line, Some("notes"), None) {
                Some(fast) => assert_eq!(Some(fast), full, "line {i}"),
                None => assert!(i >= 2, "line {i} is well formed and should take the fast path"),
            }
        }
        assert!(validate_in(&serde_json::from_str(lines[2]).unwrap(), Some("notes")).is_ok(), "numbers as text");
        let batch = lines.join("\n");
        let EventsError::Invalid { errors, .. } =
            parse_batch(batch.as_bytes(), Format::Ndjson, Some("notes")).unwrap_err()
        else {
            panic!()
        };
        let found: Vec<(usize, &str)> = errors.iter().map(|e| (e.row, e.field.as_str())).collect();
        assert_eq!(found, [(4, "accepted_chars"), (5, "event_id"), (6, "loop")]);
    }

    #[test]
    fn unknown_extensions_are_refused() {
        assert!(matches!(read_interactions(&temp_file("x.xlsx", "")), Err(EventsError::Format(_))));
    }
}
