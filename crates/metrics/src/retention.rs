//! Weekly cohort retention per loop: a user's cohort is the ISO week (labelled by its Monday) of their
//! first event in the loop, and a cohort's retention k weeks later is the share of its users with at
//! least one event in the loop in week cohort + k.

use chrono::{Duration, NaiveDate};
use polars::prelude::*;
use serde::{Deserialize, Serialize};

use crate::acceptance::{Bucket, bucket_expr};
use crate::events::InteractionEvent;

/// The retention matrix of every loop in a frame.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Retention {
    /// The Monday of the week of the last event: no cohort shows a week after it.
    pub last_week: Option<NaiveDate>,
    pub loops: Vec<LoopRetention>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoopRetention {
    #[serde(rename = "loop")]
    pub loop_key: String,
    /// Cohorts from the oldest.
    pub cohorts: Vec<Cohort>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cohort {
    /// The Monday of the cohort's week.
    pub week: NaiveDate,
    /// Users whose first event in the loop falls in this week.
    pub size: u64,
    /// Offsets 0, 1, … up to the last event's week, without gaps; offset 0 is always the whole cohort.
    pub weeks: Vec<RetentionPoint>,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RetentionPoint {
    pub offset: u32,
    pub active: u64,
    /// active / size.
    pub share: f64,
}

/// [`retention_of`] over validated events.
pub fn retention(events: &[InteractionEvent]) -> PolarsResult<Retention> {
    retention_of(crate::events::to_frame(events)?.lazy())
}

/// The weekly cohort retention of each loop in an events frame (columns of [`crate::events::schema`]),
/// computed with polars. Weeks are counted up to the week of the frame's last event, over all loops:
/// a week after it has not been observed and is left out rather than shown as 0 %, while a quiet week
/// before it is a true 0 % and is shown.
pub fn retention_of(events: LazyFrame) -> PolarsResult<Retention> {
    let week = bucket_expr(Bucket::Week).expect("weeks have a bucket expression");
    // One row per loop, user and week with any event; dates become days since 1970 so offsets are
    // integer arithmetic.
    let active = events
        .select([col("loop"), col("user_id"), week.cast(DataType::Int32).alias("week")])
        .unique(None, UniqueKeepStrategy::Any);
    let cohorts = active.clone().group_by([col("loop"), col("user_id")]).agg([col("week").min().alias("cohort")]);
    let matrix = active
        .clone()
        .join(cohorts, [col("loop"), col("user_id")], [col("loop"), col("user_id")], JoinArgs::new(JoinType::Inner))
        .with_column(((col("week") - col("cohort")) / lit(7)).alias("offset"))
        .group_by([col("loop"), col("cohort"), col("offset")])
        .agg([len().alias("active")])
        .sort(["loop", "cohort", "offset"], SortMultipleOptions::default())
        .collect()?;
    let last = active.select([col("week").max()]).collect()?;
    let Some(last_week) = last.column("week")?.i32()?.get(0) else {
        return Ok(Retention { last_week: None, loops: vec![] });
    };

    let loops = matrix.column("loop")?.str()?;
    let cohort_days = matrix.column("cohort")?.i32()?;
    let offsets = matrix.column("offset")?.i32()?;
    let counts = matrix.column("active")?.cast(&DataType::UInt64)?;
    let counts = counts.u64()?;
    let mut result: Vec<LoopRetention> = vec![];
    for i in 0..matrix.height() {
        let (Some(loop_key), Some(cohort), Some(offset), Some(count)) =
            (loops.get(i), cohort_days.get(i), offsets.get(i), counts.get(i))
        else {
            continue;
        };
        if result.last().is_none_or(|l| l.loop_key != loop_key) {
            result.push(LoopRetention { loop_key: loop_key.to_owned(), cohorts: vec![] });
        }
        let cohorts = &mut result.last_mut().expect("a loop was just pushed").cohorts;
        if cohorts.last().is_none_or(|c| c.week != day(cohort)) {
            // Rows are sorted by offset and every user is active in their cohort's week, so the first
            // row of a cohort is offset 0 and its count is the cohort's size. The weeks the cohort has
            // had are laid out in full, so a week without activity shows as 0 rather than missing.
            let weeks = (0..=(last_week - cohort) / 7)
                .map(|offset| RetentionPoint { offset: offset as u32, active: 0, share: 0.0 })
                .collect();
            cohorts.push(Cohort { week: day(cohort), size: count, weeks });
        }
        let cohort = cohorts.last_mut().expect("a cohort was just pushed");
        if let Some(point) = cohort.weeks.get_mut(offset as usize) {
            point.active = count;
            point.share = count as f64 / cohort.size as f64;
        }
    }
    Ok(Retention { last_week: Some(day(last_week)), loops: result })
}

/// The date `days` days after 1970-01-01.
fn day(days: i32) -> NaiveDate {
    NaiveDate::from_ymd_opt(1970, 1, 1).expect("a valid date") + Duration::days(days.into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};

    fn event(id: usize, loop_key: &str, user: &str, month: u32, day: u32) -> InteractionEvent {
        let ts = Utc.with_ymd_and_hms(2027, month, day, 12, 0, 0).unwrap();
        InteractionEvent {
            loop_key: loop_key.into(),
            ..InteractionEvent::sample(&id.to_string(), ts, user, "A", 10, 3)
        }
    }

    fn date(month: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(2027, month, day).unwrap()
    }

    #[test]
    fn cohorts_by_first_week_with_shares_up_to_the_last_week() {
        // Mondays: 4, 11, 18 and 25 January 2027.
        // notes: u1, u2, u3 start in the week of 4 Jan; u1 returns on the 12th and 26th, u2 on the 13th.
        // u4 starts on Sunday 17 Jan (week of the 11th) and returns on Monday the 18th.
        // u1 in the loop "mail" first appears on the 19th: cohorts are per loop.
        let events = vec![
            event(1, "notes", "u1", 1, 4),
            event(2, "notes", "u1", 1, 5),
            event(3, "notes", "u2", 1, 6),
            event(4, "notes", "u3", 1, 10),
            event(5, "notes", "u1", 1, 12),
            event(6, "notes", "u2", 1, 13),
            event(7, "notes", "u4", 1, 17),
            event(8, "notes", "u4", 1, 18),
            event(9, "notes", "u1", 1, 26),
            event(10, "mail", "u1", 1, 19),
        ];
        let retention = retention(&events).unwrap();
        assert_eq!(retention.last_week, Some(date(1, 25)));
        let keys: Vec<&str> = retention.loops.iter().map(|l| l.loop_key.as_str()).collect();
        assert_eq!(keys, ["mail", "notes"]);

        let mail = &retention.loops[0].cohorts;
        assert_eq!(mail.len(), 1);
        assert_eq!((mail[0].week, mail[0].size), (date(1, 18), 1));
        // The week of the 25th has started, so it shows as 0 % rather than being left out.
        let mail_active: Vec<(u32, u64)> = mail[0].weeks.iter().map(|p| (p.offset, p.active)).collect();
        assert_eq!(mail_active, [(0, 1), (1, 0)]);

        let notes = &retention.loops[1].cohorts;
        assert_eq!(notes.len(), 2);
        assert_eq!((notes[0].week, notes[0].size), (date(1, 4), 3));
        let first: Vec<(u32, u64)> = notes[0].weeks.iter().map(|p| (p.offset, p.active)).collect();
        assert_eq!(first, [(0, 3), (1, 2), (2, 0), (3, 1)]);
        assert!((notes[0].weeks[1].share - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(notes[0].weeks[0].share, 1.0);
        assert_eq!((notes[1].week, notes[1].size), (date(1, 11), 1));
        let second: Vec<(u32, u64, f64)> = notes[1].weeks.iter().map(|p| (p.offset, p.active, p.share)).collect();
        assert_eq!(second, [(0, 1, 1.0), (1, 1, 1.0), (2, 0, 0.0)]);
    }

    #[test]
    fn no_events_give_no_cohorts() {
        let retention = retention(&[]).unwrap();
        assert_eq!(retention, Retention { last_week: None, loops: vec![] });
    }
}
