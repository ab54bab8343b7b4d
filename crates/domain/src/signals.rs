//! The season dashboard's judgements: when evidence should make a leader review the season's thesis,
//! and how confident the key results' owners have been over time.
//!
//! A thesis signal is raised by Slope, never typed in: a metric linked to the season's plan that turns
//! from moving the right way to moving the wrong way (both with 95 % confidence), or a slope bet that
//! was killed (its kill criteria were met, which is evidence against the belief it challenged). A leader
//! resolves it with a note saying what the season makes of it.

use chrono::{DateTime, Duration, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::calibration::Calibration;
use crate::checkin::CheckIn;
use crate::entities::{GoalStatus, Investment, SeasonId, string_enum};
use crate::errors::FieldErrors;
use crate::forecast::{MIN_TREND_POINTS, Trend, TrendPoint, fit_trend, student_t_quantile_975};
use crate::measure::Measure;
use crate::outlook::SeasonOutlook;
use crate::rollup::SeasonTree;
use crate::squad::SquadGoal;
use crate::views::MetricSeries;

string_enum!(
    /// Why a signal was raised.
    SignalKind { MetricReversal => "metric-reversal", BetKilled => "bet-killed" }
);

/// The number of days each of the two windows a reversal compares spans.
pub const REVERSAL_WINDOW_DAYS: i64 = 7;

/// A raised "review the thesis" item, as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ThesisSignal {
    pub id: i64,
    pub season_id: SeasonId,
    pub kind: SignalKind,
    /// Names the occurrence (`reversal:notes-acceptance:2027-02-14`, `bet-killed:goal-12`), so the same
    /// evidence never raises a second item.
    pub fingerprint: String,
    /// What the signal is about: the metric's key, or the bet's title.
    pub subject: String,
    /// One sentence a leader reads first.
    pub summary: String,
    /// The figures behind the summary ([`Reversal`] for a reversal; the bet's belief and criteria).
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub evidence: serde_json::Value,
    pub raised_at: DateTime<Utc>,
    pub resolved_at: Option<DateTime<Utc>>,
    pub resolved_by: Option<String>,
    /// The leader's note on what the season makes of the evidence.
    pub resolution: Option<String>,
}

impl ThesisSignal {
    pub fn is_open(&self) -> bool {
        self.resolved_at.is_none()
    }
}

/// A signal the evidence calls for, before it is stored.
#[derive(Debug, Clone, PartialEq)]
pub struct NewSignal {
    pub kind: SignalKind,
    pub fingerprint: String,
    pub subject: String,
    pub summary: String,
    pub evidence: serde_json::Value,
}

/// What a leader sends to resolve a signal.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(default)]
pub struct ResolveSignalInput {
    /// What the season makes of the evidence (kept, revised, or why it is noise): 1 to 2,000 characters.
    pub note: String,
}

impl ResolveSignalInput {
    /// The trimmed note, or the field error.
    pub fn validate(&self) -> Result<String, FieldErrors> {
        let note = self.note.trim();
        if note.is_empty() {
            return Err(FieldErrors::single("note", "is required: say what the season makes of this evidence"));
        }
        if note.chars().count() > 2000 {
            return Err(FieldErrors::single("note", "must be at most 2000 characters"));
        }
        Ok(note.to_owned())
    }
}

/// Which way a measure wants its metric to move; `None` for measures without a direction (a range, a
/// milestone), which cannot be said to reverse.
pub fn good_direction(measure: &Measure) -> Option<f64> {
    match measure {
        Measure::IncreaseTo { start, target, .. } | Measure::DecreaseTo { start, target, .. } => {
            (target != start).then(|| (target - start).signum())
        }
        Measure::KeepAbove { .. } => Some(1.0),
        Measure::KeepBelow { .. } => Some(-1.0),
        Measure::WithinRange { .. } | Measure::Milestone => None,
    }
}

/// A slope estimated over one window, with its 95 % interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WindowSlope {
    pub from: NaiveDate,
    pub to: NaiveDate,
    pub points: usize,
    pub per_day: f64,
    pub ci_low: f64,
    pub ci_high: f64,
}

impl WindowSlope {
    fn of(points: &[TrendPoint], from: NaiveDate, to: NaiveDate) -> Option<WindowSlope> {
        let inside: Vec<TrendPoint> = points.iter().filter(|p| p.on >= from && p.on <= to).copied().collect();
        if inside.len() < MIN_TREND_POINTS {
            return None;
        }
        let trend: Trend = fit_trend(&inside)?;
        let se = (trend.residual_scale / trend.sxx).sqrt();
        let half = student_t_quantile_975(trend.degrees_of_freedom().max(1.0)) * se;
        if !half.is_finite() {
            return None;
        }
        Some(WindowSlope {
            from,
            to,
            points: inside.len(),
            per_day: trend.slope_per_day,
            ci_low: trend.slope_per_day - half,
            ci_high: trend.slope_per_day + half,
        })
    }

    /// Whether the whole interval lies on `direction`'s side of zero.
    fn clearly(&self, direction: f64) -> bool {
        if direction > 0.0 { self.ci_low > 0.0 } else { self.ci_high < 0.0 }
    }
}

/// A metric that moved the right way and now moves the wrong way.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Reversal {
    pub earlier: WindowSlope,
    pub recent: WindowSlope,
    /// +1 when the plan wants the metric up, −1 when down.
    pub good_direction: f64,
}

/// Compares the trend of the last [`REVERSAL_WINDOW_DAYS`] days up to the newest point with that of the
/// window before it. A reversal needs both to be clear: the earlier slope's 95 % interval entirely on
/// the good side of zero and the recent one's entirely on the bad side. Noise around a flat line, or a
/// metric that merely slows down, raises nothing.
pub fn detect_reversal(points: &[TrendPoint], good_direction: f64) -> Option<Reversal> {
    let last = points.iter().filter(|p| p.value.is_finite()).map(|p| p.on).max()?;
    let window = Duration::days(REVERSAL_WINDOW_DAYS);
    let recent_from = last - window + Duration::days(1);
    let recent = WindowSlope::of(points, recent_from, last)?;
    let earlier = WindowSlope::of(points, recent_from - window, recent_from - Duration::days(1))?;
    (earlier.clearly(good_direction) && recent.clearly(-good_direction)).then_some(Reversal {
        earlier,
        recent,
        good_direction,
    })
}

/// The signal a reversal of `metric` (feeding `what`, a key result or goal title) calls for.
pub fn reversal_signal(metric: &str, what: &str, reversal: &Reversal, format: fn(f64) -> String) -> NewSignal {
    let (up, down) = if reversal.good_direction > 0.0 { ("rose", "falls") } else { ("fell", "rises") };
    NewSignal {
        kind: SignalKind::MetricReversal,
        fingerprint: format!("reversal:{metric}:{}", reversal.recent.to),
        subject: metric.to_owned(),
        summary: format!(
            "{metric} (feeding \"{what}\") {up} by {} a day from {} to {} and now {} by {} a day ({} to {}), both with 95 % confidence: is the thesis behind it still right?",
            format(reversal.earlier.per_day.abs()),
            reversal.earlier.from,
            reversal.earlier.to,
            down,
            format(reversal.recent.per_day.abs()),
            reversal.recent.from,
            reversal.recent.to,
        ),
        evidence: serde_json::json!({ "metric": metric, "feeds": what, "reversal": reversal }),
    }
}

/// Whether a reversal of `subject` should be raised, given the season's existing signals: not while one
/// for the same metric is open, nor within a window of the last one (resolved or not), so that a
/// reversal the leader already reviewed does not come back every day it persists.
pub fn reversal_is_new(existing: &[ThesisSignal], subject: &str, now: DateTime<Utc>) -> bool {
    !existing.iter().any(|s| {
        s.kind == SignalKind::MetricReversal
            && s.subject == subject
            && (s.is_open() || s.raised_at > now - Duration::days(REVERSAL_WINDOW_DAYS))
    })
}

/// The signals killed slope bets call for: one per killed goal whose investment was slope.
pub fn killed_bet_signals(goals: &[SquadGoal], squad_name: impl Fn(&SquadGoal) -> String) -> Vec<NewSignal> {
    goals
        .iter()
        .filter(|g| g.investment == Investment::Slope && g.status == GoalStatus::Killed)
        .map(|g| {
            let belief = g.challenges.as_deref().unwrap_or("").trim();
            let criteria = g.kill_criteria.as_deref().unwrap_or("").trim();
            let mut summary = format!("The slope bet \"{}\" ({}) was killed", g.title, squad_name(g));
            if !criteria.is_empty() {
                summary.push_str(&format!(" by its criteria (\"{criteria}\")"));
            }
            if !belief.is_empty() {
                summary.push_str(&format!(": the belief it challenged, \"{belief}\", held"));
            }
            summary.push_str(". Does the thesis need the bet's lesson?");
            NewSignal {
                kind: SignalKind::BetKilled,
                fingerprint: format!("bet-killed:goal-{}", g.id),
                subject: g.title.clone(),
                summary,
                evidence: serde_json::json!({
                    "goal_id": g.id,
                    "goal": g.title,
                    "squad": squad_name(g),
                    "challenges": belief,
                    "kill_criteria": criteria,
                    "killed_at": g.updated_at,
                }),
            }
        })
        .collect()
}

/// The mean confidence of a season's key results in one week.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ConfidencePoint {
    /// The Monday the week starts on.
    pub week: NaiveDate,
    pub mean: f64,
    pub low: f64,
    pub high: f64,
    /// How many key results had given a confidence by the end of that week.
    pub key_results: usize,
}

/// The weekly confidence trend from the key results' check-ins: each week, every key result counts
/// with the confidence of its latest check-in up to the end of that week (confidence is a standing
/// belief, carried forward until the next check-in says otherwise). Weeks before any key result gave a
/// confidence are left out; the weeks run from the season's start to `until`.
pub fn confidence_trend(check_ins: &[Vec<CheckIn>], starts_on: NaiveDate, until: NaiveDate) -> Vec<ConfidencePoint> {
    use chrono::Datelike;
    let monday = |d: NaiveDate| d - Duration::days(d.weekday().num_days_from_monday() as i64);
    let mut out = vec![];
    let mut week = monday(starts_on);
    while week <= until {
        let end = (week + Duration::days(7)).and_hms_opt(0, 0, 0).map(|t| t.and_utc());
        let values: Vec<f64> = check_ins
            .iter()
            .filter_map(|list| {
                list.iter()
                    .filter(|c| end.is_some_and(|end| c.recorded_at < end))
                    .filter_map(|c| c.confidence.map(|v| (c.recorded_at, c.id, v)))
                    .max_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)))
                    .map(|(_, _, v)| v)
            })
            .collect();
        if !values.is_empty() {
            let mean = values.iter().sum::<f64>() / values.len() as f64;
            let low = values.iter().copied().fold(f64::INFINITY, f64::min);
            let high = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            out.push(ConfidencePoint { week, mean, low, high, key_results: values.len() });
        }
        week += Duration::days(7);
    }
    out
}

/// A metric linked to the season's plan, as the season dashboard charts it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LinkedMetric {
    /// The titles of the key results and goals it feeds.
    pub feeds: Vec<String>,
    /// +1 when the plan wants it up, −1 down, `None` when the measures it feeds have no direction.
    pub good_direction: Option<f64>,
    pub series: MetricSeries,
    /// Set when its trend has just turned the wrong way (see [`detect_reversal`]).
    pub reversal: Option<Reversal>,
}

/// The season dashboard: the OKR tree with live progress and slope allocation, the metrics behind it,
/// the confidence trend and the thesis signals.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SeasonDashboard {
    pub tree: SeasonTree,
    /// The day the dashboard was assembled, for the "today" marker.
    pub today: NaiveDate,
    pub metrics: Vec<LinkedMetric>,
    pub confidence: Vec<ConfidencePoint>,
    /// Open signals first, then resolved ones, newest first within each.
    pub signals: Vec<ThesisSignal>,
    /// Each key result's forecast at its end and the objectives' and season's scores then.
    pub outlook: SeasonOutlook,
    /// How well the check-ins' confidence foretold the key results that have ended.
    pub calibration: Calibration,
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::checkin::SubjectKind;
    use crate::entities::*;

    fn day(n: i64) -> NaiveDate {
        NaiveDate::from_ymd_opt(2027, 1, 1).unwrap() + Duration::days(n)
    }

    /// Daily points following `f`, with a small deterministic wobble and a narrow interval.
    fn series(days: i64, f: impl Fn(i64) -> f64) -> Vec<TrendPoint> {
        (0..days)
            .map(|d| {
                let wobble = if d % 2 == 0 { 0.002 } else { -0.002 };
                let v = f(d) + wobble;
                TrendPoint { on: day(d), value: v, ci_low: Some(v - 0.01), ci_high: Some(v + 0.01) }
            })
            .collect()
    }

    #[test]
    fn a_rise_that_turns_into_a_fall_is_a_reversal_for_a_metric_that_should_rise() {
        let points = series(14, |d| if d < 7 { 0.30 + 0.01 * d as f64 } else { 0.36 - 0.012 * (d - 7) as f64 });
        let r = detect_reversal(&points, 1.0).expect("a reversal");
        assert!(r.earlier.ci_low > 0.0 && r.recent.ci_high < 0.0, "{r:?}");
        assert_eq!((r.earlier.from, r.earlier.to), (day(0), day(6)));
        assert_eq!((r.recent.from, r.recent.to), (day(7), day(13)));
        // The same fall is what a metric that should fall wants: no signal.
        assert!(detect_reversal(&points, -1.0).is_none());
    }

    #[test]
    fn steady_progress_a_slowdown_or_noise_raise_nothing() {
        assert!(detect_reversal(&series(14, |d| 0.3 + 0.01 * d as f64), 1.0).is_none());
        // Slowing down is still the right way.
        let slowing = series(14, |d| if d < 7 { 0.3 + 0.02 * d as f64 } else { 0.42 + 0.002 * (d - 7) as f64 });
        assert!(detect_reversal(&slowing, 1.0).is_none());
        // Flat with wide noise: the recent slope's interval straddles zero.
        let noisy: Vec<TrendPoint> = (0..14)
            .map(|d| {
                let v = if d < 7 {
                    0.3 + 0.01 * d as f64
                } else {
                    0.36 + [0.03, -0.03, 0.02, -0.04, 0.03, -0.02, 0.01][(d - 7) as usize]
                };
                TrendPoint { on: day(d), value: v, ci_low: Some(v - 0.05), ci_high: Some(v + 0.05) }
            })
            .collect();
        assert!(detect_reversal(&noisy, 1.0).is_none());
    }

    #[test]
    fn too_few_points_in_either_window_raise_nothing() {
        let mut points = series(14, |d| if d < 7 { 0.3 + 0.01 * d as f64 } else { 0.36 - 0.012 * (d - 7) as f64 });
        points.retain(|p| p.on >= day(5));
        assert!(detect_reversal(&points, 1.0).is_none(), "two points in the earlier window");
        assert!(detect_reversal(&[], 1.0).is_none());
    }

    #[test]
    fn directions_follow_the_measure() {
        let unit = String::new();
        assert_eq!(good_direction(&Measure::IncreaseTo { start: 1.0, target: 2.0, unit: unit.clone() }), Some(1.0));
        assert_eq!(good_direction(&Measure::DecreaseTo { start: 9.0, target: 3.0, unit: unit.clone() }), Some(-1.0));
        assert_eq!(good_direction(&Measure::KeepBelow { threshold: 1.0, unit: unit.clone() }), Some(-1.0));
        assert_eq!(good_direction(&Measure::KeepAbove { threshold: 1.0, unit: unit.clone() }), Some(1.0));
        assert_eq!(good_direction(&Measure::WithinRange { low: 1.0, high: 2.0, unit }), None);
        assert_eq!(good_direction(&Measure::Milestone), None);
    }

    fn signal(subject: &str, raised_days_ago: i64, resolved: bool, now: DateTime<Utc>) -> ThesisSignal {
        let raised_at = now - Duration::days(raised_days_ago);
        ThesisSignal {
            id: 1,
            season_id: SeasonId(1),
            kind: SignalKind::MetricReversal,
            fingerprint: format!("reversal:{subject}:x"),
            subject: subject.into(),
            summary: String::new(),
            evidence: serde_json::Value::Null,
            raised_at,
            resolved_at: resolved.then_some(raised_at + Duration::hours(1)),
            resolved_by: None,
            resolution: None,
        }
    }

    #[test]
    fn a_reversal_is_raised_again_only_after_the_last_was_resolved_and_a_window_passed() {
        let now = Utc::now();
        assert!(reversal_is_new(&[], "m", now));
        assert!(!reversal_is_new(&[signal("m", 30, false, now)], "m", now), "still open");
        assert!(!reversal_is_new(&[signal("m", 2, true, now)], "m", now), "resolved two days ago");
        assert!(reversal_is_new(&[signal("m", 8, true, now)], "m", now));
        assert!(reversal_is_new(&[signal("other", 1, false, now)], "m", now));
    }

    /// A squad goal of squad 1 on key result 1 (other modules' tests use it too).
    pub(crate) fn goal(id: i64, investment: Investment, status: GoalStatus) -> SquadGoal {
        let now = Utc::now();
        SquadGoal {
            id: SquadGoalId(id),
            key: format!("goal-{id}"),
            org_id: OrgId(1),
            squad_id: SquadId(1),
            key_result_id: KeyResultId(1),
            title: format!("Bet {id}"),
            starts_on: day(0),
            ends_on: day(30),
            investment,
            challenges: Some("Clinicians want completions, not drafts".into()),
            kill_criteria: Some("Acceptance below 15 %".into()),
            planned_capacity: 3.0,
            status,
            measure: Measure::Milestone,
            current: None,
            metric: None,
            confidence: None,
            version: Version(1),
            created_at: now,
            updated_at: now,
        }
    }

    #[test]
    fn only_killed_slope_bets_raise_a_signal_naming_belief_and_criteria() {
        let goals = [
            goal(1, Investment::Slope, GoalStatus::Killed),
            goal(2, Investment::Slope, GoalStatus::Active),
            goal(3, Investment::Snapshot, GoalStatus::Killed),
        ];
        let signals = killed_bet_signals(&goals, |_| "Drafts".into());
        assert_eq!(signals.len(), 1);
        assert_eq!(signals[0].fingerprint, "bet-killed:goal-1");
        assert!(signals[0].summary.contains("Acceptance below 15 %"), "{}", signals[0].summary);
        assert!(signals[0].summary.contains("Clinicians want completions"), "{}", signals[0].summary);
        assert!(signals[0].summary.contains("(Drafts)"), "{}", signals[0].summary);
    }

    fn check_in(id: i64, on: NaiveDate, confidence: Option<f64>) -> CheckIn {
        CheckIn {
            id: CheckInId(id),
            org_id: OrgId(1),
            subject_kind: SubjectKind::KeyResult,
            subject_id: 1,
            value: 0.0,
            confidence,
            note: None,
            author: "a".into(),
            recorded_at: on.and_hms_opt(12, 0, 0).unwrap().and_utc(),
        }
    }

    #[test]
    fn confidence_is_carried_forward_week_by_week() {
        // 2027-01-04 is a Monday.
        let monday = NaiveDate::from_ymd_opt(2027, 1, 4).unwrap();
        let a = vec![check_in(1, monday, Some(0.8)), check_in(2, monday + Duration::days(8), Some(0.4))];
        let b =
            vec![check_in(3, monday + Duration::days(9), Some(0.6)), check_in(4, monday + Duration::days(10), None)];
        let trend = confidence_trend(&[a, b, vec![]], monday + Duration::days(2), monday + Duration::days(20));
        assert_eq!(trend.len(), 3);
        assert_eq!((trend[0].week, trend[0].key_results), (monday, 1));
        assert!((trend[0].mean - 0.8).abs() < 1e-12);
        assert_eq!(trend[1].key_results, 2);
        assert!((trend[1].mean - 0.5).abs() < 1e-12, "0.4 and 0.6");
        assert_eq!((trend[1].low, trend[1].high), (0.4, 0.6));
        // No new check-in in week three: the standing beliefs carry over.
        assert!((trend[2].mean - 0.5).abs() < 1e-12);
        assert!(confidence_trend(&[vec![]], monday, monday + Duration::days(30)).is_empty());
    }
}
