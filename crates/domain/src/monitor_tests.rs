use chrono::{DateTime, Duration, NaiveDate, Utc};

use super::*;
use crate::alert::*;
use crate::runner::{Contender, PromotionDecision};

fn at(text: &str) -> DateTime<Utc> {
    text.parse().unwrap()
}

fn day(text: &str) -> NaiveDate {
    text.parse().unwrap()
}

fn input(kind: &str) -> MonitorInput {
    MonitorInput { key: "m1".into(), name: "A monitor".into(), kind: kind.into(), ..Default::default() }
}

#[test]
fn a_drift_monitor_takes_its_defaults_and_needs_a_loop_and_a_field() {
    let spec = MonitorInput { loop_key: Some("notes".into()), field: Some("latency_ms".into()), ..input("drift") }
        .parse()
        .unwrap();
    assert_eq!(spec.every_minutes, DEFAULT_EVERY_MINUTES);
    assert_eq!(
        spec.rule,
        MonitorRule::Drift {
            loop_key: "notes".into(),
            field: DriftField::LatencyMs,
            threshold: 0.25,
            reference_days: 28,
            recent_days: 7
        }
    );
    let err = input("drift").parse().unwrap_err();
    assert_eq!(err.0.keys().collect::<Vec<_>>(), ["field", "loop"]);
}

#[test]
fn settings_a_kind_does_not_read_are_refused_by_name() {
    let bad = MonitorInput {
        metric: Some("acc".into()),
        threshold: Some(0.1),
        lookback_hours: Some(0),
        every_minutes: Some(0),
        ..input("job-failed")
    };
    let err = bad.parse().unwrap_err();
    assert_eq!(err.0.keys().collect::<Vec<_>>(), ["every_minutes", "lookback_hours", "metric", "threshold"]);
    assert!(err.get("metric").unwrap()[0].contains("not a setting of a job-failed monitor"), "{err:?}");
    let err = input("weather").parse().unwrap_err();
    assert!(err.get("kind").unwrap()[0].contains("drift, staleness, job-failed"), "{err:?}");
    let err =
        MonitorInput { metric: Some("acc".into()), direction: Some("sideways".into()), ..input("trend-reversal") }
            .parse()
            .unwrap_err();
    assert_eq!(err.0.keys().collect::<Vec<_>>(), ["direction"]);
    let spec = input("key-result-behind").parse().unwrap();
    assert_eq!(spec.rule, MonitorRule::KeyResultBehind { below_probability: 0.3 });
    let err = MonitorInput { below_probability: Some(1.0), ..input("key-result-behind") }.parse().unwrap_err();
    assert_eq!(err.0.keys().collect::<Vec<_>>(), ["below_probability"]);
}

#[test]
fn a_rule_round_trips_through_its_stored_json() {
    let rule = MonitorRule::JobFailed { loop_key: None, lookback_hours: 24, stalled_minutes: 30 };
    let json = serde_json::to_string(&rule).unwrap();
    assert_eq!(json, r#"{"kind":"job-failed","loop":null,"lookback_hours":24,"stalled_minutes":30}"#);
    assert_eq!(serde_json::from_str::<MonitorRule>(&json).unwrap(), rule);
}

#[test]
fn slots_are_the_schedule_periods_since_the_epoch() {
    let monitor = Monitor {
        id: 1,
        key: "m".into(),
        name: "m".into(),
        squad_id: None,
        every_minutes: 15,
        enabled: true,
        rule: MonitorRule::Staleness { metric: "a".into(), max_age_hours: None },
        last_run_at: None,
        last_error: None,
        created_at: at("2027-01-01T00:00:00Z"),
    };
    let a = monitor.slot(at("2027-01-01T10:00:00Z"));
    assert_eq!(monitor.slot(at("2027-01-01T10:14:59Z")), a);
    assert_eq!(monitor.slot(at("2027-01-01T10:15:00Z")), a + 1);
}

#[test]
fn drift_windows_end_yesterday_and_do_not_overlap() {
    let (reference, recent) = drift_windows(day("2027-03-10"), 28, 7);
    assert_eq!(recent, (day("2027-03-03"), day("2027-03-09")));
    assert_eq!(reference, (day("2027-02-03"), day("2027-03-02")));
    let finding = drift_finding("notes", DriftField::LatencyMs, 0.25, reference, recent, 0.31, 0.2, (100, 50)).unwrap();
    assert_eq!(finding.fingerprint, "drift:notes:latency_ms");
    assert!(finding.summary.contains("PSI 0.310"), "{}", finding.summary);
    assert!(drift_finding("notes", DriftField::LatencyMs, 0.25, reference, recent, 0.24, 0.2, (100, 50)).is_none());
}

#[test]
fn a_metric_is_stale_past_its_limit_or_without_data() {
    let now = at("2027-01-02T12:00:00Z");
    assert!(staleness_finding("acc", Some(now - Duration::hours(47)), 48, now).is_none());
    let stale = staleness_finding("acc", Some(now - Duration::hours(49)), 48, now).unwrap();
    assert!(stale.summary.contains("49 h ago"), "{}", stale.summary);
    assert!(staleness_finding("acc", None, 48, now).unwrap().summary.contains("no data yet"));
}

fn job(id: i64, status: JobStatus, loop_key: &str, finished: Option<&str>, heartbeat: Option<&str>) -> Job {
    let mut job = crate::stack::tests::job(id);
    job.status = status;
    job.spec.loop_key = Some(loop_key.into());
    job.heartbeat_at = heartbeat.map(at);
    job.error = Some("out of memory".into());
    job.started_at = Some(at("2027-01-01T00:01:00Z"));
    job.finished_at = finished.map(at);
    job
}

#[test]
fn failed_jobs_fire_within_the_look_back_and_silent_running_ones_as_stalled() {
    let now = at("2027-01-02T12:00:00Z");
    let jobs = [
        job(1, JobStatus::Failed, "notes", Some("2027-01-02T11:00:00Z"), None),
        job(2, JobStatus::Failed, "notes", Some("2027-01-01T11:00:00Z"), None),
        job(3, JobStatus::Running, "notes", None, Some("2027-01-02T11:00:00Z")),
        job(4, JobStatus::Running, "notes", None, Some("2027-01-02T11:45:00Z")),
        job(5, JobStatus::Failed, "other", Some("2027-01-02T11:30:00Z"), None),
        job(6, JobStatus::Succeeded, "notes", Some("2027-01-02T11:30:00Z"), None),
    ];
    let found = job_findings(&jobs, Some("notes"), 24, 30, now);
    let prints: Vec<&str> = found.iter().map(|f| f.fingerprint.as_str()).collect();
    assert_eq!(prints, ["job:1:failed", "job:3:stalled"]);
    assert!(found[0].summary.contains("out of memory"), "{}", found[0].summary);
    assert!(found[1].summary.contains("(60 min)"), "{}", found[1].summary);
    assert_eq!(job_findings(&jobs, None, 24, 30, now).len(), 3);
}

#[test]
fn refused_promotions_fire_within_the_look_back() {
    let now = at("2027-01-02T12:00:00Z");
    let promotion = |id: i64, accepted: bool, when: &str| Promotion {
        id,
        loop_key: "notes".into(),
        challenger_id: 7,
        champion_id: Some(3),
        accepted,
        decision: PromotionDecision {
            challenger: Contender { id: 7, name: "c".into(), reward: Some(0.1) },
            champion: None,
            experiment: None,
            online_rule: None,
            offline_rule: None,
            offline_margin: None,
            reason: "does not beat the champion".into(),
        },
        at: at(when),
    };
    let promotions = [
        promotion(1, false, "2027-01-02T10:00:00Z"),
        promotion(2, true, "2027-01-02T10:00:00Z"),
        promotion(3, false, "2026-12-30T10:00:00Z"),
    ];
    let found = promotion_findings(&promotions, None, 24, now);
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].fingerprint, "promotion:1");
    assert!(found[0].summary.contains("does not beat the champion"));
    assert!(promotion_findings(&promotions, Some("other"), 24, now).is_empty());
}

#[test]
fn a_reversal_against_the_wanted_direction_is_found() {
    // Up by 0.01 a day for a week, then down by 0.01 a day, with a little scatter.
    let start = day("2027-01-01");
    let points: Vec<TrendPoint> = (0..14)
        .map(|i| {
            let value = if i < 7 { 0.5 + 0.01 * i as f64 } else { 0.56 - 0.01 * (i - 6) as f64 };
            let wobble = if i % 2 == 0 { 0.0005 } else { -0.0005 };
            TrendPoint { on: start + Duration::days(i), value: value + wobble, ci_low: None, ci_high: None }
        })
        .collect();
    let found = reversal_finding("acc", &points, Direction::Up).unwrap();
    assert!(found.summary.starts_with("acc rose by"), "{}", found.summary);
    assert!(reversal_finding("acc", &points, Direction::Down).is_none());
}

fn finding(print: &str) -> Finding {
    Finding {
        fingerprint: print.into(),
        summary: print.into(),
        evidence: AlertEvidence::Staleness { metric: "m".into(), observed_at: None, max_age_hours: 1 },
    }
}

#[test]
fn reconciling_fires_new_findings_holds_old_ones_and_resolves_the_rest() {
    let firing = [(10, "a".to_owned()), (11, "b".to_owned())];
    let out = reconcile(&firing, vec![finding("b"), finding("c"), finding("c")]);
    assert_eq!(out.fire.iter().map(|f| f.fingerprint.as_str()).collect::<Vec<_>>(), ["c"]);
    assert_eq!(out.hold.iter().map(|(id, _)| *id).collect::<Vec<_>>(), [11]);
    assert_eq!(out.resolve, [10]);
    assert_eq!(reconcile(&[], vec![]), Reconciled::default());
}

#[test]
fn an_alert_is_silenced_until_its_silence_ends_and_resolved_over_all() {
    let now = at("2027-01-02T12:00:00Z");
    let mut alert = Alert {
        id: 1,
        monitor_id: 1,
        monitor_key: "m".into(),
        monitor_name: "M".into(),
        kind: MonitorKind::Staleness,
        squad_id: None,
        fingerprint: "a".into(),
        summary: "a".into(),
        evidence: finding("a").evidence,
        started_at: now,
        last_seen_at: now,
        resolved_at: None,
        silenced_until: Some(now + Duration::hours(1)),
        silenced_by: Some("a@b".into()),
    };
    assert_eq!(alert.state(now), AlertState::Silenced);
    assert_eq!(alert.state(now + Duration::hours(2)), AlertState::Firing);
    alert.resolved_at = Some(now);
    assert_eq!(alert.state(now), AlertState::Resolved);
}

#[test]
fn a_silence_needs_a_duration_within_a_week() {
    let (length, note) = SilenceInput { hours: Some(1.5), note: Some(" deploy ".into()) }.parse().unwrap();
    assert_eq!((length, note.as_deref()), (Duration::minutes(90), Some("deploy")));
    for hours in [None, Some(0.0), Some(169.0), Some(f64::NAN)] {
        let err = SilenceInput { hours, note: None }.parse().unwrap_err();
        assert!(err.get("hours").is_some(), "{hours:?}");
    }
}
