//! Customer summaries (frequency, recency, T, monetary value) from a file of transactions, with the
//! semantics of `summary_data_from_transaction_data` in the Python package lifetimes, so a model fitted
//! here and one fitted there on the same file see the same data:
//!
//! * dates are cut to periods (days, or ISO weeks starting on Monday) and all transactions of a customer
//!   in one period are one purchase, whose amount is their sum;
//! * the observation ends with the period of the calibration end (default: the last transaction's
//!   date); transactions of later periods are ignored, while a later day of the end's own week still
//!   counts, as in lifetimes, because the comparison is between periods;
//! * frequency is the number of purchase periods after the first, recency the periods from the first
//!   purchase to the last, T the periods from the first purchase to the end of observation, and the
//!   monetary value the mean amount of the repeat purchases (0 without repeat purchases).
//!
//! Customers whose first purchase falls in the last period get T = 0, as in lifetimes. They carry no
//! information for BG/NBD (their likelihood is 1 whatever the parameters), and
//! [`crate::ltv::Customer::validate`] refuses T = 0, so drop them before fitting.

use std::path::Path;

use chrono::{DateTime, Datelike, Duration, NaiveDate, NaiveDateTime};
use polars::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::events::{MAX_REPORTED_ERRORS, RowError};
use crate::ltv::Customer;

/// The time unit of frequency, recency and T.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Period {
    Day,
    /// ISO weeks, Monday to Sunday (pandas' `W` periods end on Sunday too).
    Week,
}

impl Period {
    fn days(self) -> i32 {
        match self {
            Period::Day => 1,
            Period::Week => 7,
        }
    }

    /// The first day of the period holding `date`.
    pub fn start(self, date: NaiveDate) -> NaiveDate {
        match self {
            Period::Day => date,
            Period::Week => date - Duration::days(date.weekday().num_days_from_monday().into()),
        }
    }
}

impl std::str::FromStr for Period {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "day" => Ok(Period::Day),
            "week" => Ok(Period::Week),
            other => Err(format!("unknown period {other:?}; use day or week")),
        }
    }
}

/// The names of the columns that hold each field in the user's file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TransactionColumns<'a> {
    pub customer: &'a str,
    pub date: &'a str,
    /// Needed only for the monetary value; without it every summary's `monetary_value` is `None`.
    pub amount: Option<&'a str>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SummaryOptions {
    pub period: Period,
    /// The last day observed; `None` means the last transaction's date.
    pub calibration_end: Option<NaiveDate>,
}

#[derive(Debug, thiserror::Error)]
pub enum TransactionsError {
    #[error("cannot read {path}: {message}")]
    Io { path: String, message: String },
    #[error("{0}")]
    Format(String),
    #[error("{} invalid row(s); nothing was read: {}", .total, summarize(.errors))]
    Invalid { errors: Vec<RowError>, total: usize },
    #[error("computing customer summaries: {0}")]
    Polars(#[from] PolarsError),
}

fn summarize(errors: &[RowError]) -> String {
    errors.iter().map(|e| format!("row {}, {}: {}", e.row, e.field, e.message)).collect::<Vec<_>>().join("; ")
}

/// Reads a transaction file (`.csv`, `.parquet`, or `.ndjson`/`.jsonl`/`.json`) and summarises its
/// customers, sorted by customer id. Any invalid row refuses the whole file, naming rows and columns.
pub fn read_transactions(
    path: &Path,
    columns: &TransactionColumns,
    options: &SummaryOptions,
) -> Result<Vec<Customer>, TransactionsError> {
    let frame = read_transaction_frame(path, columns)?;
    Ok(summaries_of(frame.lazy(), options)?.into_iter().map(|(_, customer)| customer).collect())
}

/// Reads and validates a transaction file into a frame with columns `customer` (String), `date` (Date)
/// and, when an amount column is named, `amount` (Float64).
pub fn read_transaction_frame(path: &Path, columns: &TransactionColumns) -> Result<DataFrame, TransactionsError> {
    let io =
        |e: &dyn std::fmt::Display| TransactionsError::Io { path: path.display().to_string(), message: e.to_string() };
    let extension = path.extension().and_then(|e| e.to_str()).unwrap_or_default().to_ascii_lowercase();
    let bytes = std::fs::read(path).map_err(|e| io(&e))?;
    let raw = match extension.as_str() {
        "csv" => {
            // Every column is read as text, so that a bad value is reported against its row and column
            // instead of failing the whole file in the CSV parser's type inference.
            let frame = CsvReadOptions::default()
                .with_has_header(true)
                .with_infer_schema_length(Some(0))
                .into_reader_with_file_handle(std::io::Cursor::new(bytes))
                .finish()
                .map_err(|e| TransactionsError::Format(format!("not a readable CSV file: {e}")))?;
            frame_cells(&frame, columns)?
        }
        "parquet" => {
            let frame = ParquetReader::new(std::io::Cursor::new(bytes))
                .finish()
                .map_err(|e| TransactionsError::Format(format!("not a readable Parquet file: {e}")))?;
            frame_cells(&frame, columns)?
        }
        "ndjson" | "jsonl" | "json" => ndjson_cells(&bytes, columns)?,
        other => {
            return Err(TransactionsError::Format(format!(
                "unknown transaction file type {other:?}: use .csv, .parquet, .ndjson or .jsonl"
            )));
        }
    };
    validate(raw, columns)
}

/// One value of a needed field, as the file holds it.
#[derive(Debug, Clone, PartialEq)]
enum Cell {
    Missing,
    Text(String),
    Number(f64),
    Date(NaiveDate),
}

/// The cells of the customer, date and amount columns, row by row (rows count from 1).
struct RawRows {
    rows: Vec<usize>,
    customer: Vec<Cell>,
    date: Vec<Cell>,
    amount: Option<Vec<Cell>>,
}

fn missing_column(name: &str, present: &[String]) -> TransactionsError {
    TransactionsError::Format(format!("the file has no column {name:?}; its columns are {}", present.join(", ")))
}

fn frame_cells(frame: &DataFrame, columns: &TransactionColumns) -> Result<RawRows, TransactionsError> {
    let present: Vec<String> = frame.get_column_names().iter().map(|n| n.to_string()).collect();
    let cells = |name: &str| -> Result<Vec<Cell>, TransactionsError> {
        let column = frame.column(name).map_err(|_| missing_column(name, &present))?;
        let dtype = column.dtype().clone();
        Ok(if dtype.is_primitive_numeric() {
            let floats = column.cast(&DataType::Float64)?;
            floats.f64()?.iter().map(|v| v.map_or(Cell::Missing, Cell::Number)).collect()
        } else if matches!(dtype, DataType::Date | DataType::Datetime(_, _)) {
            // A typed datetime keeps its wall-clock date, as pandas' periods do.
            let days = column.cast(&DataType::Date)?.cast(&DataType::Int32)?;
            days.i32()?.iter().map(|v| v.map_or(Cell::Missing, |d| Cell::Date(epoch_day(d)))).collect()
        } else {
            let text = column.cast(&DataType::String)?;
            text.str()?.iter().map(|v| v.map_or(Cell::Missing, |s| Cell::Text(s.to_owned()))).collect()
        })
    };
    Ok(RawRows {
        rows: (1..=frame.height()).collect(),
        customer: cells(columns.customer)?,
        date: cells(columns.date)?,
        amount: columns.amount.map(cells).transpose()?,
    })
}

fn ndjson_cells(bytes: &[u8], columns: &TransactionColumns) -> Result<RawRows, TransactionsError> {
    let text = std::str::from_utf8(bytes).map_err(|e| {
        let line = bytes[..e.valid_up_to()].iter().filter(|&&b| b == b'\n').count() + 1;
        TransactionsError::Invalid {
            errors: vec![RowError { row: line, field: "row".into(), message: "is not valid UTF-8".into() }],
            total: 1,
        }
    })?;
    let cell = |object: &serde_json::Map<String, Value>, name: &str| match object.get(name) {
        None | Some(Value::Null) => Cell::Missing,
        Some(Value::String(s)) => Cell::Text(s.clone()),
        Some(Value::Number(n)) => n.as_f64().map_or(Cell::Missing, Cell::Number),
        Some(other) => Cell::Text(other.to_string()),
    };
    let mut raw = RawRows { rows: vec![], customer: vec![], date: vec![], amount: columns.amount.map(|_| vec![]) };
    let mut errors = vec![];
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<Value>(line) {
            Ok(Value::Object(object)) => {
                raw.rows.push(i + 1);
                raw.customer.push(cell(&object, columns.customer));
                raw.date.push(cell(&object, columns.date));
                if let (Some(amounts), Some(name)) = (raw.amount.as_mut(), columns.amount) {
                    amounts.push(cell(&object, name));
                }
            }
            Ok(_) => errors.push(RowError { row: i + 1, field: "row".into(), message: "must be a JSON object".into() }),
            Err(e) => {
                errors.push(RowError { row: i + 1, field: "row".into(), message: format!("is not valid JSON: {e}") })
            }
        }
    }
    refuse(errors)?;
    Ok(raw)
}

fn refuse(mut errors: Vec<RowError>) -> Result<(), TransactionsError> {
    if errors.is_empty() {
        return Ok(());
    }
    let total = errors.len();
    errors.truncate(MAX_REPORTED_ERRORS);
    Err(TransactionsError::Invalid { errors, total })
}

/// The date 1970-01-01 + `days`.
fn epoch_day(days: i32) -> NaiveDate {
    NaiveDate::from_ymd_opt(1970, 1, 1).expect("a valid date") + Duration::days(days.into())
}

fn days_since_epoch(date: NaiveDate) -> i32 {
    (date - NaiveDate::from_ymd_opt(1970, 1, 1).expect("a valid date")).num_days() as i32
}

/// A date as text: `YYYY-MM-DD`, or a date and time (RFC 3339, or `YYYY-MM-DD HH:MM:SS` with optional
/// fraction). The date is the one written, in the writer's own time zone: a purchase at 23:30 local
/// time belongs to that local day, as in pandas.
pub fn parse_date(text: &str) -> Option<NaiveDate> {
    let text = text.trim();
    if let Ok(date) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return Some(date);
    }
    if let Ok(time) = DateTime::parse_from_rfc3339(text) {
        return Some(time.date_naive());
    }
    ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%d %H:%M"]
        .iter()
        .find_map(|format| NaiveDateTime::parse_from_str(text, format).ok())
        .map(|time| time.date())
}

/// Checks every row and builds the typed frame; any invalid row refuses the whole file.
fn validate(raw: RawRows, columns: &TransactionColumns) -> Result<DataFrame, TransactionsError> {
    let mut errors = vec![];
    let (mut customers, mut dates, mut amounts) = (vec![], vec![], vec![]);
    for (i, &row) in raw.rows.iter().enumerate() {
        let mut fail = |field: &str, message: String| errors.push(RowError { row, field: field.to_owned(), message });
        let customer = match &raw.customer[i] {
            Cell::Text(s) if !s.trim().is_empty() => Some(s.trim().to_owned()),
            // Whole-number ids read as numbers keep their integer spelling.
            Cell::Number(n) if n.fract() == 0.0 && n.abs() < 9.0e15 => Some(format!("{}", *n as i64)),
            Cell::Number(n) => Some(n.to_string()),
            Cell::Date(d) => Some(d.to_string()),
            Cell::Missing | Cell::Text(_) => {
                fail(columns.customer, "is required".into());
                None
            }
        };
        let date = match &raw.date[i] {
            Cell::Date(d) => Some(*d),
            Cell::Text(s) if s.trim().is_empty() => {
                fail(columns.date, "is required".into());
                None
            }
            Cell::Text(s) => parse_date(s).or_else(|| {
                fail(columns.date, format!("must be a date such as 2027-01-04 or 2027-01-04T09:30:00Z, not {s:?}"));
                None
            }),
            Cell::Number(n) => {
                fail(columns.date, format!("must be a date such as 2027-01-04, not the number {n}"));
                None
            }
            Cell::Missing => {
                fail(columns.date, "is required".into());
                None
            }
        };
        let amount = match (&raw.amount, columns.amount) {
            (Some(cells), Some(name)) => {
                let value = match &cells[i] {
                    Cell::Number(n) => Ok(*n),
                    Cell::Text(s) if s.trim().is_empty() => Err("is required".to_owned()),
                    Cell::Text(s) => s.trim().parse::<f64>().map_err(|_| format!("must be a number, not {s:?}")),
                    Cell::Date(d) => Err(format!("must be a number, not the date {d}")),
                    Cell::Missing => Err("is required".to_owned()),
                };
                match value {
                    Ok(v) if v.is_finite() && v >= 0.0 => Some(v),
                    Ok(v) => {
                        fail(name, format!("must be a number ≥ 0, not {v}"));
                        None
                    }
                    Err(message) => {
                        fail(name, message);
                        None
                    }
                }
            }
            _ => None,
        };
        if let (Some(customer), Some(date)) = (customer, date) {
            customers.push(customer);
            dates.push(days_since_epoch(date));
            amounts.push(amount);
        }
    }
    refuse(errors)?;
    let height = customers.len();
    let mut frame_columns =
        vec![Column::new("customer".into(), customers), Column::new("date".into(), dates).cast(&DataType::Date)?];
    if columns.amount.is_some() {
        frame_columns.push(Column::new("amount".into(), amounts));
    }
    Ok(DataFrame::new(height, frame_columns)?)
}

/// The summaries of the customers of a transaction frame (columns `customer` String, `date` Date and
/// optionally `amount` Float64), computed with polars, as (customer id, summary) sorted by id.
pub fn summaries_of(transactions: LazyFrame, options: &SummaryOptions) -> PolarsResult<Vec<(String, Customer)>> {
    let has_amount = transactions.clone().collect_schema()?.contains("amount");
    let period = match options.period {
        Period::Day => col("date"),
        // Truncating a date to one week lands on the Monday of its ISO week.
        Period::Week => col("date").dt().truncate(lit("1w")),
    };
    let dated = transactions.with_column(period.cast(DataType::Int32).alias("period"));
    let end = match options.calibration_end {
        Some(end) => end,
        None => {
            let last = dated.clone().select([col("date").max().cast(DataType::Int32)]).collect()?;
            match last.column("date")?.i32()?.get(0) {
                Some(days) => epoch_day(days),
                None => return Ok(vec![]),
            }
        }
    };
    let end_period = days_since_epoch(options.period.start(end));

    // One purchase per customer and period, with the period's amounts summed (lifetimes does the same).
    let mut per_period = vec![];
    if has_amount {
        per_period.push(col("amount").sum().alias("amount"));
    }
    let purchases =
        dated.filter(col("period").lt_eq(lit(end_period))).group_by([col("customer"), col("period")]).agg(per_period);
    let mut per_customer = vec![
        col("period").min().alias("first"),
        col("period").max().alias("last"),
        len().cast(DataType::Int64).alias("purchases"),
    ];
    if has_amount {
        // The first purchase is left out of the mean: the spend model describes repeat purchases.
        per_customer.push(col("amount").filter(col("period").neq(col("period").min())).mean().alias("monetary"));
    }
    let summary = purchases
        .group_by([col("customer")])
        .agg(per_customer)
        .sort(["customer"], SortMultipleOptions::default())
        .collect()?;

    let ids = summary.column("customer")?.str()?;
    let first = summary.column("first")?.i32()?;
    let last = summary.column("last")?.i32()?;
    let purchases = summary.column("purchases")?.i64()?;
    let monetary = if has_amount { Some(summary.column("monetary")?.f64()?) } else { None };
    let unit = f64::from(options.period.days());
    Ok((0..summary.height())
        .filter_map(|i| {
            let (id, first, last, purchases) = (ids.get(i)?, first.get(i)?, last.get(i)?, purchases.get(i)?);
            let frequency = (purchases - 1) as f64;
            let monetary_value = monetary.map(|m| if frequency > 0.0 { m.get(i).unwrap_or(0.0) } else { 0.0 });
            let customer = Customer {
                frequency,
                recency: f64::from(last - first) / unit,
                t: f64::from(end_period - first) / unit,
                monetary_value,
            };
            Some((id.to_owned(), customer))
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_file(name: &str, content: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("slope-transactions-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, content).unwrap();
        path
    }

    const COLUMNS: TransactionColumns = TransactionColumns { customer: "id", date: "when", amount: Some("paid") };

    // 4 January 2027 is a Monday.
    // c1: Mon 4th (10 + 5, one purchase), Wed 6th (20), Mon 11th (30), Tue 19th (40).
    // c2: Thu 7th (8) only.
    // c3: Sat 9th (12), Sun 10th (18), Wed 20th (6); 20 Jan comes after a calibration end of 18 Jan.
    const CSV: &str = "id,when,paid\n\
                       c1,2027-01-04,10\n\
                       c1,2027-01-04T18:00:00Z,5\n\
                       c1,2027-01-06,20\n\
                       c2,2027-01-07,8\n\
                       c1,2027-01-11 08:15:00,30\n\
                       c3,2027-01-09,12\n\
                       c3,2027-01-10,18\n\
                       c1,2027-01-19,40\n\
                       c3,2027-01-20,6\n";

    fn summary(customers: &[Customer]) -> Vec<(f64, f64, f64, Option<f64>)> {
        customers.iter().map(|c| (c.frequency, c.recency, c.t, c.monetary_value)).collect()
    }

    #[test]
    fn daily_summaries_merge_same_day_purchases_and_average_repeat_spend() {
        let path = temp_file("daily.csv", CSV);
        let options = SummaryOptions { period: Period::Day, calibration_end: None };
        let customers = read_transactions(&path, &COLUMNS, &options).unwrap();
        // The end is the last transaction, 20 Jan.
        // c1: days 4, 6, 11, 19 → x = 3, t_x = 15, T = 16, repeat spend (20 + 30 + 40) / 3 = 30.
        // c2: day 7 only → x = 0, t_x = 0, T = 13, monetary value 0.
        // c3: days 9, 10, 20 → x = 2, t_x = 11, T = 11, (18 + 6) / 2 = 12.
        assert_eq!(
            summary(&customers),
            [(3.0, 15.0, 16.0, Some(30.0)), (0.0, 0.0, 13.0, Some(0.0)), (2.0, 11.0, 11.0, Some(12.0)),]
        );

        // Calibration to 18 Jan drops c1's purchase on the 19th and c3's on the 20th.
        let options = SummaryOptions { period: Period::Day, calibration_end: NaiveDate::from_ymd_opt(2027, 1, 18) };
        let customers = read_transactions(&path, &COLUMNS, &options).unwrap();
        assert_eq!(
            summary(&customers),
            [(2.0, 7.0, 14.0, Some(25.0)), (0.0, 0.0, 11.0, Some(0.0)), (1.0, 1.0, 9.0, Some(18.0)),]
        );
    }

    #[test]
    fn weekly_summaries_count_purchase_weeks() {
        let path = temp_file("weekly.csv", CSV);
        let options = SummaryOptions { period: Period::Week, calibration_end: None };
        let frame = read_transaction_frame(&path, &COLUMNS).unwrap();
        let customers = summaries_of(frame.lazy(), &options).unwrap();
        let ids: Vec<&str> = customers.iter().map(|(id, _)| id.as_str()).collect();
        assert_eq!(ids, ["c1", "c2", "c3"]);
        let customers: Vec<Customer> = customers.into_iter().map(|(_, c)| c).collect();
        // Weeks start on Mondays 4, 11 and 18 Jan; the end is the week of 18 Jan.
        // c1: weeks 4th (10 + 5 + 20 = 35), 11th (30), 18th (40) → x = 2, t_x = 2, T = 2, (30 + 40) / 2.
        // c2: week 4th → x = 0, T = 2. c3: weeks 4th (12 + 18), 18th (6) → x = 1, t_x = 2, T = 2, 6.
        assert_eq!(
            summary(&customers),
            [(2.0, 2.0, 2.0, Some(35.0)), (0.0, 0.0, 2.0, Some(0.0)), (1.0, 2.0, 2.0, Some(6.0)),]
        );

        // As in lifetimes, the end's whole week is observed: an end on Monday 18 Jan keeps 19 and 20 Jan.
        let options = SummaryOptions { period: Period::Week, calibration_end: NaiveDate::from_ymd_opt(2027, 1, 18) };
        assert_eq!(summary(&read_transactions(&path, &COLUMNS, &options).unwrap()), summary(&customers));
        // An end in the week of 11 Jan drops them and gives T = 1.
        let options = SummaryOptions { period: Period::Week, calibration_end: NaiveDate::from_ymd_opt(2027, 1, 17) };
        assert_eq!(
            summary(&read_transactions(&path, &COLUMNS, &options).unwrap()),
            [(1.0, 1.0, 1.0, Some(30.0)), (0.0, 0.0, 1.0, Some(0.0)), (0.0, 0.0, 1.0, Some(0.0)),]
        );
    }

    #[test]
    fn without_an_amount_column_there_is_no_monetary_value_and_ndjson_reads_the_same() {
        let ndjson = CSV
            .lines()
            .skip(1)
            .map(|line| {
                let fields: Vec<&str> = line.split(',').collect();
                format!("{{\"id\":\"{}\",\"when\":\"{}\",\"paid\":{}}}\n", fields[0], fields[1], fields[2])
            })
            .collect::<String>();
        let path = temp_file("t.ndjson", &ndjson);
        let columns = TransactionColumns { amount: None, ..COLUMNS };
        let options = SummaryOptions { period: Period::Day, calibration_end: None };
        let customers = read_transactions(&path, &columns, &options).unwrap();
        assert_eq!(summary(&customers), [(3.0, 15.0, 16.0, None), (0.0, 0.0, 13.0, None), (2.0, 11.0, 11.0, None)]);
        let with_amounts = read_transactions(&path, &COLUMNS, &options).unwrap();
        assert_eq!(with_amounts[0].monetary_value, Some(30.0));
    }

    #[test]
    fn invalid_rows_refuse_the_file_naming_row_and_column() {
        let bad =
            "id,when,paid\nc1,2027-01-04,10\n,2027-01-05,3\nc2,last tuesday,4\nc3,2027-01-06,-2\nc4,2027-01-06,ten\n";
        let path = temp_file("bad.csv", bad);
        let options = SummaryOptions { period: Period::Day, calibration_end: None };
        let err = read_transactions(&path, &COLUMNS, &options).unwrap_err();
        let TransactionsError::Invalid { errors, total } = &err else { panic!("{err}") };
        let found: Vec<(usize, &str)> = errors.iter().map(|e| (e.row, e.field.as_str())).collect();
        assert_eq!(found, [(2, "id"), (3, "when"), (4, "paid"), (5, "paid")]);
        assert_eq!(*total, 4);
        assert!(err.to_string().contains("row 4, paid: must be a number ≥ 0, not -2"), "{err}");
        assert!(err.to_string().contains("row 5, paid: must be a number, not \"ten\""), "{err}");

        let columns = TransactionColumns { customer: "customer", ..COLUMNS };
        let err = read_transactions(&path, &columns, &options).unwrap_err();
        assert!(err.to_string().contains("no column \"customer\"; its columns are id, when, paid"), "{err}");
        let err = read_transactions(&temp_file("t.xlsx", ""), &COLUMNS, &options).unwrap_err();
        assert!(matches!(err, TransactionsError::Format(_)));
    }

    #[test]
    fn dates_parse_in_the_writers_own_day() {
        let day = NaiveDate::from_ymd_opt(2027, 1, 4);
        assert_eq!(parse_date("2027-01-04"), day);
        assert_eq!(parse_date("2027-01-04T23:30:00-05:00"), day);
        assert_eq!(parse_date("2027-01-04 23:30"), day);
        assert_eq!(parse_date("2027-01-04T23:30:00.25"), day);
        assert_eq!(parse_date("04/01/2027"), None);
        assert_eq!(Period::Week.start(NaiveDate::from_ymd_opt(2027, 1, 10).unwrap()), day.unwrap());
    }
}
