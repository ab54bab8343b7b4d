//! Event segments: validated events as Parquet files (zstd, with column statistics), and the polars
//! frame over a set of them. Where the bytes live is the service's business; this module only encodes
//! and decodes.

use std::collections::HashSet;
use std::io::Cursor;

use chrono::{DateTime, NaiveDate, Utc};
use polars::prelude::*;

use crate::events::{InteractionEvent, TransactionEvent, schema, to_frame};

pub use polars::prelude::LazyFrame;

/// The first and last event time of a lazy frame, reading only its `ts` column.
pub fn lazy_time_range(events: &LazyFrame) -> PolarsResult<Option<(DateTime<Utc>, DateTime<Utc>)>> {
    time_range(&events.clone().select([col("ts")]).collect()?)
}

/// Encodes events as one Parquet file.
pub fn encode(events: &[InteractionEvent]) -> PolarsResult<Vec<u8>> {
    let mut frame = to_frame(events)?;
    encode_frame(&mut frame)
}

/// Encodes an events frame (columns of [`schema`]) as one Parquet file.
pub fn encode_frame(frame: &mut DataFrame) -> PolarsResult<Vec<u8>> {
    let mut bytes = vec![];
    ParquetWriter::new(&mut bytes)
        .with_compression(ParquetCompression::Zstd(None))
        .with_statistics(StatisticsOptions::full())
        .finish(frame)?;
    Ok(bytes)
}

/// Encodes transaction events as one Parquet file: `event_id`, `customer_id`, `ts` (UTC microseconds)
/// and `amount`.
pub fn encode_transactions(transactions: &[TransactionEvent]) -> PolarsResult<Vec<u8>> {
    let ts = Column::new("ts".into(), transactions.iter().map(|t| t.ts.timestamp_micros()).collect::<Vec<i64>>())
        .cast(&DataType::Datetime(TimeUnit::Microseconds, None))?;
    let mut frame = DataFrame::new(
        transactions.len(),
        vec![
            Column::new("event_id".into(), transactions.iter().map(|t| t.event_id.as_str()).collect::<Vec<_>>()),
            Column::new("customer_id".into(), transactions.iter().map(|t| t.customer_id.as_str()).collect::<Vec<_>>()),
            ts,
            Column::new("amount".into(), transactions.iter().map(|t| t.amount).collect::<Vec<f64>>()),
            Column::new("unit".into(), transactions.iter().map(|t| t.unit.as_deref()).collect::<Vec<_>>()),
            Column::new("user_id".into(), transactions.iter().map(|t| t.user_id.as_deref()).collect::<Vec<_>>()),
        ],
    )?;
    encode_frame(&mut frame)
}

/// Transaction segments as the frame customer summaries are computed from: `customer` (String), `date`
/// (Date, UTC), `amount` (Float64), `ts` (Datetime) and `unit` (String, null where not given).
/// Segments written before transactions carried a unit read as having none.
pub fn transactions_frame<B: AsRef<[u8]>>(segments: &[B]) -> PolarsResult<LazyFrame> {
    let mut frames = Vec::with_capacity(segments.len());
    for segment in segments {
        let frame = ParquetReader::new(Cursor::new(segment.as_ref())).finish()?;
        let unit = if frame.schema().contains("unit") { col("unit") } else { lit(NULL).cast(DataType::String) };
        frames.push(frame.lazy().select([col("customer_id"), col("ts"), col("amount"), unit.alias("unit")]));
    }
    let all = if frames.is_empty() {
        DataFrame::empty_with_schema(&Schema::from_iter([
            Field::new("customer_id".into(), DataType::String),
            Field::new("ts".into(), DataType::Datetime(TimeUnit::Microseconds, None)),
            Field::new("amount".into(), DataType::Float64),
            Field::new("unit".into(), DataType::String),
        ]))
        .lazy()
    } else {
        concat(frames, UnionArgs::default())?
    };
    Ok(all.select([
        col("customer_id").alias("customer"),
        col("ts").cast(DataType::Date).alias("date"),
        col("amount"),
        col("ts"),
        col("unit"),
    ]))
}

/// Each customer's first purchase day, from a frame of [`transactions_frame`].
pub fn first_purchase_days(transactions: LazyFrame) -> PolarsResult<std::collections::HashMap<String, NaiveDate>> {
    let first = transactions.group_by([col("customer")]).agg([col("date").min().alias("first")]).collect()?;
    let customers = first.column("customer")?.str()?.clone();
    let days = first.column("first")?.cast(&DataType::Int32)?;
    let days = days.i32()?;
    Ok(customers
        .iter()
        .zip(days.iter())
        .filter_map(|(c, d)| Some((c?.to_owned(), NaiveDate::from_num_days_from_ce_opt(d? + 719_163)?)))
        .collect())
}

/// Decodes segments into one frame, reading only `columns` when given. No segment gives an empty frame
/// with the events schema, so every computation sees the same columns.
pub fn frame_of<B: AsRef<[u8]>>(segments: &[B], columns: Option<&[&str]>) -> PolarsResult<LazyFrame> {
    let mut frames = Vec::with_capacity(segments.len());
    for segment in segments {
        let reader = ParquetReader::new(Cursor::new(segment.as_ref()));
        let reader = match columns {
            Some(columns) => reader.with_columns(Some(columns.iter().map(|c| c.to_string()).collect())),
            None => reader,
        };
        frames.push(reader.finish()?.lazy());
    }
    if frames.is_empty() {
        let empty = DataFrame::empty_with_schema(&schema());
        let empty = match columns {
            Some(columns) => empty.select(columns.iter().copied())?,
            None => empty,
        };
        return Ok(empty.lazy());
    }
    concat(frames, UnionArgs { rechunk: false, parallel: true, ..Default::default() })
}

/// The event ids stored in `segments`, to drop events a new batch repeats.
pub fn event_ids<B: AsRef<[u8]>>(segments: &[B]) -> PolarsResult<HashSet<String>> {
    let frame = frame_of(segments, Some(&["event_id"]))?.collect()?;
    let ids = frame.column("event_id")?.str()?;
    Ok(ids.iter().flatten().map(str::to_owned).collect())
}

/// Merges segments into one, keeping the first copy of every event id (a retried batch sent without
/// its key, or two segments of the same events, must not count twice) and ordering events by time.
pub fn compact<B: AsRef<[u8]>>(segments: &[B]) -> PolarsResult<Compacted> {
    let mut frame = frame_of(segments, None)?
        .unique_stable(
            Some(Selector::ByName { names: Arc::new(["event_id".into()]), strict: true }),
            UniqueKeepStrategy::First,
        )
        .sort(["ts"], SortMultipleOptions::default().with_maintain_order(true))
        .collect()?;
    let range = time_range(&frame)?;
    let rows = frame.height();
    Ok(Compacted { bytes: encode_frame(&mut frame)?, rows, range })
}

/// A compacted segment: its Parquet bytes, its number of events and their time range.
pub struct Compacted {
    pub bytes: Vec<u8>,
    pub rows: usize,
    pub range: Option<(DateTime<Utc>, DateTime<Utc>)>,
}

/// The first and last event time of a frame.
pub fn time_range(frame: &DataFrame) -> PolarsResult<Option<(DateTime<Utc>, DateTime<Utc>)>> {
    let micros = frame.column("ts")?.cast(&DataType::Int64)?;
    let micros = micros.i64()?;
    Ok(match (micros.min(), micros.max()) {
        (Some(lo), Some(hi)) => DateTime::from_timestamp_micros(lo).zip(DateTime::from_timestamp_micros(hi)),
        _ => None,
    })
}

/// Keeps events with `from ≤ day(ts) ≤ to`.
pub fn between_days(frame: LazyFrame, from: NaiveDate, to: NaiveDate) -> LazyFrame {
    let micros = |day: NaiveDate| day.and_hms_opt(0, 0, 0).map_or(0, |t| t.and_utc().timestamp_micros());
    let ts = col("ts").cast(DataType::Int64);
    frame.filter(ts.clone().gt_eq(lit(micros(from))).and(ts.lt(lit(micros(to.succ_opt().unwrap_or(to))))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn event(id: &str, day: u32) -> InteractionEvent {
        InteractionEvent {
            event_id: id.into(),
            ts: Utc.with_ymd_and_hms(2027, 1, day, 12, 0, 0).unwrap(),
            loop_key: "notes".into(),
            user_id: "u1".into(),
            variant: "A".into(),
            suggested_chars: 10,
            accepted_chars: 4,
            latency_ms: Some(120.0),
            cost_usd: None,
            session_id: None,
            unit: Some("care".into()),
            context: None,
            suggestion: None,
            final_text: Some("kept".into()),
            attributes: None,
        }
    }

    #[test]
    fn segments_round_trip_and_compact_without_duplicates() {
        let first = encode(&[event("e1", 5), event("e2", 4)]).unwrap();
        let second = encode(&[event("e2", 4), event("e3", 6)]).unwrap();
        assert_eq!(event_ids(&[&first, &second]).unwrap().len(), 3);
        let Compacted { bytes: merged, rows, range } = compact(&[&first, &second]).unwrap();
        assert_eq!(rows, 3);
        let (lo, hi) = range.unwrap();
        assert_eq!(
            (lo.date_naive().to_string(), hi.date_naive().to_string()),
            ("2027-01-04".into(), "2027-01-06".into())
        );
        let frame = frame_of(&[merged], None).unwrap().collect().unwrap();
        assert_eq!(frame.schema().as_ref(), &schema(), "segments keep the events schema");
        let ids: Vec<&str> = frame.column("event_id").unwrap().str().unwrap().iter().flatten().collect();
        assert_eq!(ids, ["e2", "e1", "e3"], "ordered by time");
        let day = |d| NaiveDate::from_ymd_opt(2027, 1, d).unwrap();
        let window = between_days(frame.lazy(), day(5), day(6)).collect().unwrap();
        assert_eq!(window.height(), 2);
    }

    #[test]
    fn no_segments_is_an_empty_frame_with_the_schema() {
        let empty: Vec<Vec<u8>> = vec![];
        assert_eq!(frame_of(&empty, None).unwrap().collect().unwrap().height(), 0);
        assert!(event_ids(&empty).unwrap().is_empty());
    }
}
