//! The evidence of the adoption dashboard that interaction events hold: per organisation unit, how many
//! people were seen and how many of them worked with AI suggestions, and which units each loop serves.
//! The rules that judge these counts live in the domain crate (`slope_domain::adoption`).

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Duration, NaiveDate, Utc};
use polars::prelude::*;
use serde::{Deserialize, Serialize};

/// The window over which a unit's people are counted when it has no headcount: 12 weeks.
pub const PEOPLE_WINDOW_DAYS: i64 = 84;
/// The window over which a person counts as active with AI suggestions: 4 weeks.
pub const ACTIVE_WINDOW_DAYS: i64 = 28;
/// The columns [`unit_activity`] and [`loop_units`] read.
pub const COLUMNS: [&str; 5] = ["loop", "unit", "user_id", "ts", "suggested_chars"];

/// One unit's activity as of a moment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnitActivity {
    pub unit: String,
    /// Distinct users with any event of the unit in the 12 weeks up to the moment.
    pub people_seen_12w: u32,
    /// Distinct users of the unit shown at least one suggestion (`suggested_chars > 0`) in the 4 weeks
    /// up to the moment.
    pub active_ai_users_4w: u32,
}

/// Keeps events with `now − days < ts ≤ now`.
fn within(days: i64, now: DateTime<Utc>) -> Expr {
    let ts = col("ts").cast(DataType::Int64);
    let start = (now - Duration::days(days)).timestamp_micros();
    ts.clone().gt(lit(start)).and(ts.lt_eq(lit(now.timestamp_micros())))
}

/// Events that name a unit (a blank unit names none).
fn with_unit(events: LazyFrame) -> LazyFrame {
    events.filter(col("unit").is_not_null().and(col("unit").str().strip_chars(lit(NULL)).neq(lit(""))))
}

/// Each unit's activity as of `now`, from interaction events of any number of loops (columns of
/// [`COLUMNS`] at least), sorted by unit.
///
/// Only events that name a unit count, and only those up to `now`, so the same frame gives the
/// activity as of any earlier moment (the dashboard's trend recomputes it at past dates). A person is a
/// distinct `user_id` within a unit; someone seen in two units counts in both. A unit with events in
/// the 12 weeks but none shown a suggestion in the last 4 has 0 active users; a unit without any event
/// in the 12 weeks is not listed.
pub fn unit_activity(events: LazyFrame, now: DateTime<Utc>) -> PolarsResult<Vec<UnitActivity>> {
    let active = within(ACTIVE_WINDOW_DAYS, now).and(col("suggested_chars").gt(lit(0u64)));
    let frame = with_unit(events)
        .filter(within(PEOPLE_WINDOW_DAYS, now))
        .group_by([col("unit")])
        .agg([
            col("user_id").n_unique().cast(DataType::UInt32).alias("people"),
            col("user_id").filter(active).n_unique().cast(DataType::UInt32).alias("active"),
        ])
        .sort(["unit"], SortMultipleOptions::default())
        .collect()?;
    let units = frame.column("unit")?.str()?.clone();
    let people = frame.column("people")?.u32()?.clone();
    let active = frame.column("active")?.u32()?.clone();
    Ok(units
        .iter()
        .zip(people.iter())
        .zip(active.iter())
        .filter_map(|((unit, people), active)| {
            Some(UnitActivity {
                unit: unit?.to_owned(),
                people_seen_12w: people.unwrap_or(0),
                active_ai_users_4w: active.unwrap_or(0),
            })
        })
        .collect())
}

/// The units named by each loop's events in the 12 weeks up to `now`: the units a loop serves, as far
/// as its events tell.
pub fn loop_units(events: LazyFrame, now: DateTime<Utc>) -> PolarsResult<BTreeMap<String, BTreeSet<String>>> {
    let frame = with_unit(events)
        .filter(within(PEOPLE_WINDOW_DAYS, now))
        .select([col("loop"), col("unit")])
        .unique(None, UniqueKeepStrategy::Any)
        .collect()?;
    let loops = frame.column("loop")?.str()?.clone();
    let units = frame.column("unit")?.str()?.clone();
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (lp, unit) in loops.iter().zip(units.iter()) {
        if let (Some(lp), Some(unit)) = (lp, unit) {
            out.entry(lp.to_owned()).or_default().insert(unit.to_owned());
        }
    }
    Ok(out)
}

/// The first day each loop's events name each unit, over the whole frame: when the unit took the loop
/// up, as far as the frame reaches back (a unit already there on the frame's first day may have taken it
/// up earlier, which the caller must allow for).
pub fn first_days(events: LazyFrame) -> PolarsResult<BTreeMap<String, BTreeMap<String, NaiveDate>>> {
    let frame = with_unit(events)
        .group_by([col("loop"), col("unit")])
        .agg([col("ts").min().cast(DataType::Date).cast(DataType::Int32).alias("first")])
        .collect()?;
    let loops = frame.column("loop")?.str()?.clone();
    let units = frame.column("unit")?.str()?.clone();
    let firsts = frame.column("first")?.i32()?.clone();
    // Days since 1970-01-01, which is day 719,163 of the common era.
    const UNIX_EPOCH_CE: i32 = 719_163;
    let mut out: BTreeMap<String, BTreeMap<String, NaiveDate>> = BTreeMap::new();
    for ((lp, unit), first) in loops.iter().zip(units.iter()).zip(firsts.iter()) {
        let day = first.and_then(|d| NaiveDate::from_num_days_from_ce_opt(d + UNIX_EPOCH_CE));
        if let (Some(lp), Some(unit), Some(day)) = (lp, unit, day) {
            out.entry(lp.to_owned()).or_default().insert(unit.to_owned(), day);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{InteractionEvent, to_frame};
    use chrono::TimeZone;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2027, 3, 1, 12, 0, 0).unwrap()
    }

    /// An event `days_ago` days before [`now`], of `user` in `unit`, shown `suggested` characters.
    fn event(id: &str, days_ago: i64, user: &str, unit: Option<&str>, suggested: u64) -> InteractionEvent {
        let mut e = InteractionEvent::sample(id, now() - Duration::days(days_ago), user, "a", suggested, 0);
        e.unit = unit.map(str::to_owned);
        e
    }

    fn frame(events: &[InteractionEvent]) -> LazyFrame {
        to_frame(events).unwrap().lazy()
    }

    #[test]
    fn people_and_active_users_per_unit_over_their_windows() {
        let events = frame(&[
            // Care: u1 active this week (twice), u2 seen 5 weeks ago only, u3 seen this week with nothing
            // suggested, u4 too long ago to count at all.
            event("e1", 1, "u1", Some("Care"), 40),
            event("e2", 2, "u1", Some("Care"), 10),
            event("e3", 35, "u2", Some("Care"), 40),
            event("e4", 3, "u3", Some("Care"), 0),
            event("e5", 90, "u4", Some("Care"), 40),
            // Finance: u1 again (a person may be seen in two units) and u5, both active.
            event("e6", 27, "u1", Some("Finance"), 5),
            event("e7", 0, "u5", Some("Finance"), 5),
            // No unit, or a blank one: attributable to none.
            event("e8", 1, "u6", None, 40),
            event("e9", 1, "u7", Some("  "), 40),
            // After `now`: not known yet as of now.
            event("e10", -1, "u8", Some("Finance"), 40),
        ]);
        let activity = unit_activity(events.clone(), now()).unwrap();
        assert_eq!(
            activity,
            [
                UnitActivity { unit: "Care".into(), people_seen_12w: 3, active_ai_users_4w: 1 },
                UnitActivity { unit: "Finance".into(), people_seen_12w: 2, active_ai_users_4w: 2 },
            ]
        );
        // Four weeks earlier: u2 was active a week before, u4 was seen within 12 weeks, and every other
        // event (all of Finance's) lies in that moment's future.
        let earlier = unit_activity(events, now() - Duration::days(28)).unwrap();
        assert_eq!(earlier, [UnitActivity { unit: "Care".into(), people_seen_12w: 2, active_ai_users_4w: 1 }]);
    }

    #[test]
    fn window_edges_exclude_the_start_and_include_now() {
        let events = frame(&[
            event("e1", ACTIVE_WINDOW_DAYS, "u1", Some("Care"), 10),
            event("e2", PEOPLE_WINDOW_DAYS, "u2", Some("Care"), 10),
            event("e3", 0, "u3", Some("Care"), 10),
        ]);
        let activity = unit_activity(events, now()).unwrap();
        assert_eq!(activity, [UnitActivity { unit: "Care".into(), people_seen_12w: 2, active_ai_users_4w: 1 }]);
    }

    #[test]
    fn loops_serve_the_units_their_recent_events_name() {
        let mut other = event("e3", 2, "u2", Some("Finance"), 10);
        other.loop_key = "triage".into();
        let events = frame(&[
            event("e1", 1, "u1", Some("Care"), 10),
            event("e2", 100, "u1", Some("Old"), 10),
            other,
            event("e4", 1, "u3", None, 10),
        ]);
        let firsts = first_days(events.clone()).unwrap();
        let units = loop_units(events, now()).unwrap();
        assert_eq!(units.len(), 2);
        assert_eq!(units["notes"], BTreeSet::from(["Care".to_owned()]));
        assert_eq!(units["triage"], BTreeSet::from(["Finance".to_owned()]));
        // First days cover the whole frame (the 100-day-old unit too), one per loop and unit.
        let day = |ago: i64| (now() - Duration::days(ago)).date_naive();
        assert_eq!(firsts["notes"], BTreeMap::from([("Care".to_owned(), day(1)), ("Old".to_owned(), day(100))]));
        assert_eq!(firsts["triage"], BTreeMap::from([("Finance".to_owned(), day(2))]));
        let later = event("e5", 3, "u4", Some("Care"), 10);
        let firsts = first_days(frame(&[event("e1", 1, "u1", Some("Care"), 10), later])).unwrap();
        assert_eq!(firsts["notes"]["Care"], day(3), "the earliest event counts");
    }

    #[test]
    fn no_events_no_units() {
        let empty = DataFrame::empty_with_schema(&crate::events::schema()).lazy();
        assert!(unit_activity(empty.clone(), now()).unwrap().is_empty());
        assert!(loop_units(empty.clone(), now()).unwrap().is_empty());
        assert!(first_days(empty).unwrap().is_empty());
    }
}
