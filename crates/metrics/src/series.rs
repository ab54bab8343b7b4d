//! Points of metric series computed from a loop's events: one value per bucket, each over its own
//! window of days. The service decides which buckets to (re)compute; this module computes them.

use chrono::{DateTime, NaiveDate, Utc};
use polars::prelude::*;
use serde::Serialize;

use crate::acceptance::{Bucket, Z_95, acceptance_of};
use crate::segment::between_days;

/// The computed kinds of metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeriesKind {
    /// Σ accepted / Σ suggested characters, with a delta-method CI over users.
    AcceptanceRate,
    /// Distinct users with at least one event.
    ActiveUsers,
    /// The share of a weekly cohort (users whose first event falls in the bucket's week) active again
    /// in the following week, with a normal-approximation CI.
    Retention,
}

/// Which events count.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub variant: Option<String>,
    pub unit: Option<String>,
}

/// One bucket to compute: its label and the days of events its value covers, both included.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub bucket: NaiveDate,
    pub from: NaiveDate,
    pub to: NaiveDate,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ComputedPoint {
    pub bucket: NaiveDate,
    pub value: f64,
    pub n: i64,
    pub ci_low: Option<f64>,
    pub ci_high: Option<f64>,
    /// The newest event behind the value.
    pub observed_at: DateTime<Utc>,
}

fn filtered(events: LazyFrame, filter: &Filter) -> LazyFrame {
    let mut events = events;
    if let Some(variant) = &filter.variant {
        events = events.filter(col("variant").eq(lit(variant.clone())));
    }
    if let Some(unit) = &filter.unit {
        events = events.filter(col("unit").eq(lit(unit.clone())));
    }
    events
}

fn latest(frame: &DataFrame) -> PolarsResult<Option<DateTime<Utc>>> {
    Ok(crate::segment::time_range(frame)?.map(|(_, hi)| hi))
}

/// Computes the points of `windows`. A window without events gives no point: "no data" is not 0 %.
pub fn compute(
    kind: SeriesKind,
    filter: &Filter,
    events: LazyFrame,
    windows: &[Window],
) -> PolarsResult<Vec<ComputedPoint>> {
    let Some(from) = windows.iter().map(|w| w.from).min() else { return Ok(vec![]) };
    let to = windows.iter().map(|w| w.to).max().unwrap_or(from);
    let events = filtered(events, filter);
    if kind == SeriesKind::Retention {
        return retention_week1(events, windows);
    }
    // Narrow to the days any window needs once, then cut each window from the collected frame.
    let needed = between_days(events, from, to)
        .select([col("ts"), col("user_id"), col("accepted_chars"), col("suggested_chars")])
        .collect()?;
    let mut points = vec![];
    for window in windows {
        let part = between_days(needed.clone().lazy(), window.from, window.to).collect()?;
        let Some(observed_at) = latest(&part)? else { continue };
        match kind {
            SeriesKind::AcceptanceRate => {
                let Some(p) = acceptance_of(part.lazy(), false, Bucket::All)?.into_iter().next() else { continue };
                points.push(ComputedPoint {
                    bucket: window.bucket,
                    value: p.value,
                    n: p.users as i64,
                    ci_low: p.ci_low,
                    ci_high: p.ci_high,
                    observed_at,
                });
            }
            SeriesKind::ActiveUsers => {
                let users = part.column("user_id")?.n_unique()? as i64;
                points.push(ComputedPoint {
                    bucket: window.bucket,
                    value: users as f64,
                    n: users,
                    ci_low: None,
                    ci_high: None,
                    observed_at,
                });
            }
            SeriesKind::Retention => unreachable!("handled above"),
        }
    }
    Ok(points)
}

/// Week-1 retention of the cohorts starting in the windows' buckets (Mondays). Cohorts need every
/// user's first event, so this reads the loop's whole history, and a cohort gets a point only once its
/// following week has data.
fn retention_week1(events: LazyFrame, windows: &[Window]) -> PolarsResult<Vec<ComputedPoint>> {
    let weeks = events
        .select([col("user_id"), col("ts"), col("ts").cast(DataType::Date).dt().truncate(lit("1w")).alias("week")])
        .collect()?;
    let Some((_, last_event)) = crate::segment::time_range(&weeks)? else { return Ok(vec![]) };
    let last_week = last_event.date_naive().week(chrono::Weekday::Mon).first_day();
    let cohorts = weeks.clone().lazy().group_by([col("user_id")]).agg([col("week").min().alias("cohort")]);
    let active = weeks
        .lazy()
        .group_by([col("user_id"), col("week")])
        .agg([col("ts").max().alias("last_ts")])
        .join(cohorts, [col("user_id")], [col("user_id")], JoinArgs::new(JoinType::Inner))
        .collect()?;
    let day = |d: Option<i32>| d.and_then(|d| NaiveDate::from_num_days_from_ce_opt(d + 719_163));
    let week = active.column("week")?.date()?.physical().clone();
    let cohort = active.column("cohort")?.date()?.physical().clone();
    let last_ts = active.column("last_ts")?.cast(&DataType::Int64)?;
    let last_ts = last_ts.i64()?;
    // One pass over (user, active week) rows: each adds to its cohort's size (the cohort's own week) or
    // to its retained users (the week after), whatever the number of cohorts asked for.
    let mut cohorts: std::collections::HashMap<NaiveDate, (i64, i64, Option<i64>)> = Default::default();
    for i in 0..active.height() {
        let (Some(c), Some(w)) = (day(cohort.get(i)), day(week.get(i))) else { continue };
        let entry = cohorts.entry(c).or_default();
        if w == c {
            entry.0 += 1;
        } else if w == c + chrono::Duration::days(7) {
            entry.1 += 1;
            entry.2 = entry.2.max(last_ts.get(i));
        }
    }
    let mut points = vec![];
    for window in windows {
        let next = window.bucket + chrono::Duration::days(7);
        if next > last_week {
            continue;
        }
        let Some(&(size, retained, observed)) = cohorts.get(&window.bucket) else { continue };
        if size == 0 {
            continue;
        }
        let share = retained as f64 / size as f64;
        let half = Z_95 * (share * (1.0 - share) / size as f64).sqrt();
        let observed_at = observed
            .and_then(DateTime::from_timestamp_micros)
            .unwrap_or_else(|| next.and_hms_opt(0, 0, 0).map_or(last_event, |t| t.and_utc()));
        points.push(ComputedPoint {
            bucket: window.bucket,
            value: share,
            n: size,
            ci_low: Some((share - half).max(0.0)),
            ci_high: Some((share + half).min(1.0)),
            observed_at,
        });
    }
    Ok(points)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{InteractionEvent, to_frame};
    use chrono::TimeZone;

    fn event(user: &str, day: u32, variant: &str, suggested: u64, accepted: u64) -> InteractionEvent {
        let ts = Utc.with_ymd_and_hms(2027, 1, day, 9, 0, 0).unwrap();
        InteractionEvent::sample(&format!("{user}-{day}-{variant}-{suggested}"), ts, user, variant, suggested, accepted)
    }

    fn day(d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(2027, 1, d).unwrap()
    }

    #[test]
    fn daily_and_rolling_acceptance_and_active_users() {
        let events = to_frame(&[
            event("u1", 4, "A", 10, 2),
            event("u2", 4, "A", 10, 5),
            event("u1", 5, "A", 20, 9),
            event("u3", 5, "B", 10, 10),
        ])
        .unwrap();
        let windows = [
            Window { bucket: day(4), from: day(4), to: day(4) },
            Window { bucket: day(5), from: day(4), to: day(5) },
            Window { bucket: day(6), from: day(6), to: day(6) },
        ];
        let only_a = Filter { variant: Some("A".into()), unit: None };
        let points = compute(SeriesKind::AcceptanceRate, &only_a, events.clone().lazy(), &windows).unwrap();
        assert_eq!(points.len(), 2, "the empty day has no point");
        assert!((points[0].value - 0.35).abs() < 1e-12);
        // Two days of A: u1 (11, 30), u2 (5, 10) → 16 / 40.
        assert!((points[1].value - 0.4).abs() < 1e-12);
        assert_eq!((points[1].n, points[1].observed_at.date_naive()), (2, day(5)));
        let users = compute(SeriesKind::ActiveUsers, &Filter::default(), events.lazy(), &windows).unwrap();
        assert_eq!(users.iter().map(|p| p.value).collect::<Vec<_>>(), [2.0, 3.0]);
    }

    #[test]
    fn week_one_retention_counts_cohorts_active_the_next_week() {
        // Cohort of 4 January: u1, u2, u3; u1 and u3 come back in the week of 11 January.
        // Cohort of 11 January: u4; its next week has no data yet, so it has no point.
        let events = to_frame(&[
            event("u1", 4, "A", 1, 1),
            event("u2", 5, "A", 1, 1),
            event("u3", 6, "A", 1, 1),
            event("u1", 12, "A", 1, 1),
            event("u3", 17, "A", 1, 1),
            event("u4", 13, "A", 1, 1),
        ])
        .unwrap();
        let windows = [
            Window { bucket: day(4), from: day(4), to: day(10) },
            Window { bucket: day(11), from: day(11), to: day(17) },
        ];
        let points = compute(SeriesKind::Retention, &Filter::default(), events.lazy(), &windows).unwrap();
        assert_eq!(points.len(), 1);
        assert!((points[0].value - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(points[0].n, 3);
        assert_eq!(points[0].observed_at.date_naive(), day(17));
    }
}
