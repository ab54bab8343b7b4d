//! Watching the loop for the team: monitors, the alerts they fire, and the rules of both.
//!
//! A monitor is a standing question about a loop or a metric ("has the latency distribution drifted?",
//! "is this metric stale?", "did a job fail?"), asked on a schedule by the server's upkeep. Each
//! evaluation returns the [`Finding`]s that hold now; [`reconcile`] compares them with the monitor's
//! firing alerts, so a finding that is new fires an alert, one that still holds keeps its alert firing
//! (with the newest evidence), and an alert whose finding is gone resolves. Every kind is a condition
//! evaluated now, including the ones about events (a failed job, a refused promotion): those hold while
//! the event lies within the monitor's look-back, so their alerts resolve by themselves instead of
//! piling up. A finding is named by its fingerprint, so the same evidence never fires twice.
//!
//! Evaluation needs stored data (events, metric points, jobs); what can be decided without it lives
//! here, as pure functions with their tests: the settings' parse, the findings of each kind from the
//! records the service reads, the reconciliation and the schedule's slots.

use chrono::{DateTime, Duration, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::entities::string_enum;
use crate::forecast::{OFF_TRACK_PROBABILITY, TrendPoint};
use crate::outlook::SeasonOutlook;
use crate::runner::{Job, JobStatus, Promotion};
use crate::signals::{Reversal, detect_reversal};
use crate::{Checker, FieldErrors, Key, SquadId, Title};

string_enum!(
    /// What a monitor watches.
    MonitorKind {
        Drift => "drift",
        Staleness => "staleness",
        JobFailed => "job-failed",
        PromotionRefused => "promotion-refused",
        TrendReversal => "trend-reversal",
        KeyResultBehind => "key-result-behind",
    }
);

impl MonitorKind {
    pub fn label(self) -> &'static str {
        match self {
            MonitorKind::Drift => "drift of an event field",
            MonitorKind::Staleness => "a stale metric",
            MonitorKind::JobFailed => "a failed or stalled job",
            MonitorKind::PromotionRefused => "a refused promotion",
            MonitorKind::TrendReversal => "a metric's trend reversal",
            MonitorKind::KeyResultBehind => "a key result unlikely to land",
        }
    }
}

string_enum!(
    /// What is wrong with a job: it failed, or it runs without a heartbeat.
    JobTrouble { Failed => "failed", Stalled => "stalled" }
);

string_enum!(
    /// Which way a metric should move, for a trend-reversal monitor.
    Direction { Up => "up", Down => "down" }
);

impl Direction {
    /// +1 for up, −1 for down, as [`detect_reversal`] takes it.
    pub fn sign(self) -> f64 {
        match self {
            Direction::Up => 1.0,
            Direction::Down => -1.0,
        }
    }
}

/// A numeric field of an interaction event whose distribution a drift check compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum DriftField {
    LatencyMs,
    CostUsd,
    SuggestedChars,
    AcceptedChars,
    /// accepted / suggested characters of one event (events with nothing suggested are skipped).
    Acceptance,
}

impl DriftField {
    pub const ALL: [DriftField; 5] = [
        DriftField::LatencyMs,
        DriftField::CostUsd,
        DriftField::SuggestedChars,
        DriftField::AcceptedChars,
        DriftField::Acceptance,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DriftField::LatencyMs => "latency_ms",
            DriftField::CostUsd => "cost_usd",
            DriftField::SuggestedChars => "suggested_chars",
            DriftField::AcceptedChars => "accepted_chars",
            DriftField::Acceptance => "acceptance",
        }
    }
}

impl std::fmt::Display for DriftField {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for DriftField {
    type Err = String;
    fn from_str(raw: &str) -> Result<Self, String> {
        DriftField::ALL.iter().copied().find(|f| f.as_str() == raw.trim()).ok_or_else(|| {
            format!("unknown field {raw:?}: use latency_ms, cost_usd, suggested_chars, accepted_chars or acceptance")
        })
    }
}

/// The population stability index at or above which a drift monitor fires by default: the usual
/// reading of PSI calls 0.1–0.25 a moderate shift and above 0.25 a major one, and a team is paged for
/// the major ones.
pub const DEFAULT_PSI_THRESHOLD: f64 = 0.25;
/// The default windows of a drift monitor: the last 7 days against the 28 before them.
pub const DEFAULT_RECENT_DAYS: i64 = 7;
pub const DEFAULT_REFERENCE_DAYS: i64 = 28;
/// How long a failed job or a refused promotion keeps its alert firing by default.
pub const DEFAULT_LOOKBACK_HOURS: i64 = 24;
/// How long a running job may go without a heartbeat before it counts as stalled, by default.
pub const DEFAULT_STALLED_MINUTES: i64 = 30;
/// How often a monitor is evaluated by default.
pub const DEFAULT_EVERY_MINUTES: i64 = 15;
/// The bounds of a monitor's schedule: at least a minute (the upkeep's round), at most a week.
pub const MAX_EVERY_MINUTES: i64 = 7 * 24 * 60;

/// What a monitor checks, with its thresholds: one variant per kind, so a monitor cannot carry
/// settings its kind does not read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum MonitorRule {
    /// The loop's `field` over the last `recent_days` against the `reference_days` before them; fires
    /// at a population stability index of `threshold` or more.
    Drift {
        #[serde(rename = "loop")]
        loop_key: String,
        field: DriftField,
        threshold: f64,
        reference_days: i64,
        recent_days: i64,
    },
    /// The metric's newest data older than `max_age_hours` (the metric's own freshness limit when
    /// `None`), or no point at all.
    Staleness { metric: String, max_age_hours: Option<i64> },
    /// A job (of the loop, or any) that failed within the look-back, or runs without a heartbeat for
    /// `stalled_minutes`.
    JobFailed {
        #[serde(rename = "loop")]
        loop_key: Option<String>,
        lookback_hours: i64,
        stalled_minutes: i64,
    },
    /// A promotion the gate refused within the look-back.
    PromotionRefused {
        #[serde(rename = "loop")]
        loop_key: Option<String>,
        lookback_hours: i64,
    },
    /// The metric moving clearly the wrong way after moving clearly the right way ([`detect_reversal`]).
    TrendReversal { metric: String, direction: Direction },
    /// A key result of the current season whose forecast at its end gives it less than
    /// `below_probability` of reaching its target, and that does not already hold it.
    KeyResultBehind { below_probability: f64 },
}

impl MonitorRule {
    pub fn kind(&self) -> MonitorKind {
        match self {
            MonitorRule::Drift { .. } => MonitorKind::Drift,
            MonitorRule::Staleness { .. } => MonitorKind::Staleness,
            MonitorRule::JobFailed { .. } => MonitorKind::JobFailed,
            MonitorRule::PromotionRefused { .. } => MonitorKind::PromotionRefused,
            MonitorRule::TrendReversal { .. } => MonitorKind::TrendReversal,
            MonitorRule::KeyResultBehind { .. } => MonitorKind::KeyResultBehind,
        }
    }

    /// The loop the rule reads, if it names one.
    pub fn loop_key(&self) -> Option<&str> {
        match self {
            MonitorRule::Drift { loop_key, .. } => Some(loop_key),
            MonitorRule::JobFailed { loop_key, .. } | MonitorRule::PromotionRefused { loop_key, .. } => {
                loop_key.as_deref()
            }
            MonitorRule::Staleness { .. } | MonitorRule::TrendReversal { .. } | MonitorRule::KeyResultBehind { .. } => {
                None
            }
        }
    }

    /// The metric the rule reads, if it names one.
    pub fn metric(&self) -> Option<&str> {
        match self {
            MonitorRule::Staleness { metric, .. } | MonitorRule::TrendReversal { metric, .. } => Some(metric),
            _ => None,
        }
    }

    /// One sentence saying what the monitor checks, for its page.
    pub fn describe(&self) -> String {
        match self {
            MonitorRule::Drift { loop_key, field, threshold, reference_days, recent_days } => format!(
                "{field} of {loop_key}: the last {recent_days} days against the {reference_days} before, firing at PSI ≥ {threshold}"
            ),
            MonitorRule::Staleness { metric, max_age_hours: Some(h) } => {
                format!("{metric}: newest data older than {h} h")
            }
            MonitorRule::Staleness { metric, max_age_hours: None } => {
                format!("{metric}: newest data older than the metric's freshness limit")
            }
            MonitorRule::JobFailed { loop_key, lookback_hours, stalled_minutes } => format!(
                "jobs of {}: failed in the last {lookback_hours} h, or running without a heartbeat for {stalled_minutes} min",
                loop_key.as_deref().unwrap_or("every loop")
            ),
            MonitorRule::PromotionRefused { loop_key, lookback_hours } => format!(
                "promotions of {}: refused by the gate in the last {lookback_hours} h",
                loop_key.as_deref().unwrap_or("every loop")
            ),
            MonitorRule::TrendReversal { metric, direction } => {
                format!("{metric}: should go {direction}, and turned clearly the other way")
            }
            MonitorRule::KeyResultBehind { below_probability } => format!(
                "key results of the current season with less than a {:.0} % chance of reaching their target at their end",
                below_probability * 100.0
            ),
        }
    }
}

/// A monitor as a form or a JSON body gives it. Settings a kind does not read must be left out, so a
/// typo in a kind is not silently a monitor with other thresholds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(default, deny_unknown_fields)]
pub struct MonitorInput {
    pub key: String,
    pub name: String,
    pub kind: String,
    /// The squad whose members and contact points its alerts go to; empty: the organisation's leaders
    /// and organisation-wide contact points.
    pub squad_id: Option<i64>,
    pub every_minutes: Option<i64>,
    #[serde(rename = "loop")]
    pub loop_key: Option<String>,
    pub metric: Option<String>,
    pub field: Option<String>,
    pub threshold: Option<f64>,
    pub reference_days: Option<i64>,
    pub recent_days: Option<i64>,
    pub max_age_hours: Option<i64>,
    pub lookback_hours: Option<i64>,
    pub stalled_minutes: Option<i64>,
    pub direction: Option<String>,
    pub below_probability: Option<f64>,
    pub enabled: Option<bool>,
}

/// A validated monitor.
#[derive(Debug, Clone, PartialEq)]
pub struct MonitorSpec {
    pub key: Key,
    pub name: Title,
    pub squad: Option<SquadId>,
    pub every_minutes: i64,
    pub rule: MonitorRule,
    pub enabled: bool,
}

fn bounded(c: &mut Checker, field: &str, value: Option<i64>, default: i64, range: (i64, i64)) -> Option<i64> {
    let v = value.unwrap_or(default);
    if v < range.0 || v > range.1 {
        c.fail(field, format!("must be between {} and {}, not {v}", range.0, range.1));
        return None;
    }
    Some(v)
}

impl MonitorInput {
    pub fn parse(&self) -> Result<MonitorSpec, FieldErrors> {
        let mut c = Checker::new();
        let key = c.check("key", Key::parse(&self.key));
        let name = c.check("name", Title::parse(&self.name));
        let kind = c.check("kind", self.kind.parse::<MonitorKind>());
        let every_minutes =
            bounded(&mut c, "every_minutes", self.every_minutes, DEFAULT_EVERY_MINUTES, (1, MAX_EVERY_MINUTES));
        let squad = match self.squad_id {
            Some(id) if id <= 0 => {
                c.fail("squad_id", format!("must be a squad's id, not {id}"));
                None
            }
            other => Some(other.map(SquadId)),
        };
        // Which settings each kind reads; any other one given is an error under its own name.
        let reads: &[&str] = match kind {
            Some(MonitorKind::Drift) => &["loop", "field", "threshold", "reference_days", "recent_days"],
            Some(MonitorKind::Staleness) => &["metric", "max_age_hours"],
            Some(MonitorKind::JobFailed) => &["loop", "lookback_hours", "stalled_minutes"],
            Some(MonitorKind::PromotionRefused) => &["loop", "lookback_hours"],
            Some(MonitorKind::TrendReversal) => &["metric", "direction"],
            Some(MonitorKind::KeyResultBehind) => &["below_probability"],
            None => &[],
        };
        let given = [
            ("loop", self.loop_key.is_some()),
            ("metric", self.metric.is_some()),
            ("field", self.field.is_some()),
            ("threshold", self.threshold.is_some()),
            ("reference_days", self.reference_days.is_some()),
            ("recent_days", self.recent_days.is_some()),
            ("max_age_hours", self.max_age_hours.is_some()),
            ("lookback_hours", self.lookback_hours.is_some()),
            ("stalled_minutes", self.stalled_minutes.is_some()),
            ("direction", self.direction.is_some()),
            ("below_probability", self.below_probability.is_some()),
        ];
        if let Some(kind) = kind {
            for (name, present) in given {
                if present && !reads.contains(&name) {
                    c.fail(name, format!("is not a setting of a {kind} monitor"));
                }
            }
        }
        let key_of = |c: &mut Checker, field: &str, raw: &Option<String>, required: bool| -> Option<Option<String>> {
            match raw.as_deref().map(str::trim) {
                None | Some("") if required => {
                    c.fail(field, "is required");
                    None
                }
                None | Some("") => Some(None),
                Some(raw) => c.check(field, Key::parse(raw)).map(|k| Some(k.as_str().to_owned())),
            }
        };
        let rule = match kind {
            None => None,
            Some(MonitorKind::Drift) => {
                let loop_key = key_of(&mut c, "loop", &self.loop_key, true);
                let field = match self.field.as_deref() {
                    None => {
                        c.fail("field", "is required");
                        None
                    }
                    Some(raw) => c.check("field", raw.parse::<DriftField>()),
                };
                let threshold = match self.threshold {
                    None => Some(DEFAULT_PSI_THRESHOLD),
                    Some(t) if t.is_finite() && t > 0.0 && t <= 10.0 => Some(t),
                    Some(t) => {
                        c.fail("threshold", format!("must be a PSI above 0 and at most 10, not {t}"));
                        None
                    }
                };
                let reference_days =
                    bounded(&mut c, "reference_days", self.reference_days, DEFAULT_REFERENCE_DAYS, (1, 365));
                let recent_days = bounded(&mut c, "recent_days", self.recent_days, DEFAULT_RECENT_DAYS, (1, 90));
                (|| {
                    Some(MonitorRule::Drift {
                        loop_key: loop_key??,
                        field: field?,
                        threshold: threshold?,
                        reference_days: reference_days?,
                        recent_days: recent_days?,
                    })
                })()
            }
            Some(MonitorKind::Staleness) => {
                let metric = key_of(&mut c, "metric", &self.metric, true);
                let max_age_hours = match self.max_age_hours {
                    None => Some(None),
                    Some(h) => bounded(&mut c, "max_age_hours", Some(h), h, (1, 24 * 366)).map(Some),
                };
                (|| Some(MonitorRule::Staleness { metric: metric??, max_age_hours: max_age_hours? }))()
            }
            Some(MonitorKind::JobFailed) => {
                let loop_key = key_of(&mut c, "loop", &self.loop_key, false);
                let lookback_hours =
                    bounded(&mut c, "lookback_hours", self.lookback_hours, DEFAULT_LOOKBACK_HOURS, (1, 24 * 30));
                let stalled_minutes =
                    bounded(&mut c, "stalled_minutes", self.stalled_minutes, DEFAULT_STALLED_MINUTES, (1, 24 * 60));
                (|| {
                    Some(MonitorRule::JobFailed {
                        loop_key: loop_key?,
                        lookback_hours: lookback_hours?,
                        stalled_minutes: stalled_minutes?,
                    })
                })()
            }
            Some(MonitorKind::PromotionRefused) => {
                let loop_key = key_of(&mut c, "loop", &self.loop_key, false);
                let lookback_hours =
                    bounded(&mut c, "lookback_hours", self.lookback_hours, DEFAULT_LOOKBACK_HOURS, (1, 24 * 30));
                (|| Some(MonitorRule::PromotionRefused { loop_key: loop_key?, lookback_hours: lookback_hours? }))()
            }
            Some(MonitorKind::TrendReversal) => {
                let metric = key_of(&mut c, "metric", &self.metric, true);
                let direction = match self.direction.as_deref() {
                    None => {
                        c.fail("direction", "is required: up or down, the way the metric should move");
                        None
                    }
                    Some(raw) => c.check("direction", raw.parse::<Direction>()),
                };
                (|| Some(MonitorRule::TrendReversal { metric: metric??, direction: direction? }))()
            }
            Some(MonitorKind::KeyResultBehind) => match self.below_probability {
                None => Some(MonitorRule::KeyResultBehind { below_probability: OFF_TRACK_PROBABILITY }),
                Some(p) if p.is_finite() && p > 0.0 && p < 1.0 => {
                    Some(MonitorRule::KeyResultBehind { below_probability: p })
                }
                Some(p) => {
                    c.fail("below_probability", format!("must lie strictly between 0 and 1, not {p}"));
                    None
                }
            },
        };
        c.finish(|| {
            Some(MonitorSpec {
                key: key?,
                name: name?,
                squad: squad?,
                every_minutes: every_minutes?,
                rule: rule?,
                enabled: self.enabled.unwrap_or(true),
            })
        })
    }
}

/// A stored monitor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Monitor {
    pub id: i64,
    pub key: String,
    pub name: String,
    pub squad_id: Option<SquadId>,
    pub every_minutes: i64,
    pub enabled: bool,
    pub rule: MonitorRule,
    /// When it was last evaluated, and what that evaluation said when it could not evaluate.
    pub last_run_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
}

impl Monitor {
    /// The schedule slot `now` falls in: evaluations are due once per slot, and the slot's number is
    /// what several servers agree on so that only one of them evaluates it.
    pub fn slot(&self, now: DateTime<Utc>) -> i64 {
        now.timestamp().div_euclid(self.every_minutes.max(1) * 60)
    }
}

// ---- findings ---------------------------------------------------------------------------------

/// The figures behind an alert, by kind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum AlertEvidence {
    Drift {
        #[serde(rename = "loop")]
        loop_key: String,
        field: DriftField,
        reference_from: NaiveDate,
        reference_to: NaiveDate,
        recent_from: NaiveDate,
        recent_to: NaiveDate,
        psi: f64,
        js_distance: f64,
        threshold: f64,
        reference_values: usize,
        recent_values: usize,
    },
    Staleness {
        metric: String,
        observed_at: Option<DateTime<Utc>>,
        max_age_hours: i64,
    },
    JobFailed {
        job_id: i64,
        job_kind: crate::runner::JobKind,
        #[serde(rename = "loop")]
        loop_key: Option<String>,
        state: JobTrouble,
        error: Option<String>,
        at: DateTime<Utc>,
    },
    PromotionRefused {
        promotion_id: i64,
        #[serde(rename = "loop")]
        loop_key: String,
        challenger_id: i64,
        reason: String,
        at: DateTime<Utc>,
    },
    TrendReversal {
        metric: String,
        reversal: Reversal,
    },
    KeyResultBehind {
        key_result_id: i64,
        title: String,
        ends_on: NaiveDate,
        /// The forecast's chance of reaching the target at the end.
        probability: f64,
        /// The forecast's sentence, as the season dashboard shows it.
        forecast: String,
    },
}

/// Something a monitor found to hold now.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Finding {
    /// Names the occurrence within the monitor (`drift:notes:latency_ms`, `job:12`): while a finding
    /// with the same fingerprint keeps holding, its alert keeps firing rather than firing again.
    pub fingerprint: String,
    /// One sentence a person reads first.
    pub summary: String,
    pub evidence: AlertEvidence,
}

/// The finding of a drift measurement, if it crosses the threshold.
#[allow(clippy::too_many_arguments)]
pub fn drift_finding(
    loop_key: &str,
    field: DriftField,
    threshold: f64,
    reference: (NaiveDate, NaiveDate),
    recent: (NaiveDate, NaiveDate),
    psi: f64,
    js_distance: f64,
    counts: (usize, usize),
) -> Option<Finding> {
    (psi >= threshold).then(|| Finding {
        fingerprint: format!("drift:{loop_key}:{field}"),
        summary: format!(
            "{field} of {loop_key} drifted: PSI {psi:.3} (≥ {threshold}) between {} – {} and {} – {}",
            reference.0, reference.1, recent.0, recent.1
        ),
        evidence: AlertEvidence::Drift {
            loop_key: loop_key.to_owned(),
            field,
            reference_from: reference.0,
            reference_to: reference.1,
            recent_from: recent.0,
            recent_to: recent.1,
            psi,
            js_distance,
            threshold,
            reference_values: counts.0,
            recent_values: counts.1,
        },
    })
}

/// The drift windows of a monitor evaluated on `today`: the recent window ends yesterday (today's
/// events are still arriving) and the reference window ends the day before the recent one starts.
pub fn drift_windows(
    today: NaiveDate,
    reference_days: i64,
    recent_days: i64,
) -> ((NaiveDate, NaiveDate), (NaiveDate, NaiveDate)) {
    let recent_end = today - Duration::days(1);
    let recent_start = recent_end - Duration::days(recent_days - 1);
    let reference_end = recent_start - Duration::days(1);
    let reference_start = reference_end - Duration::days(reference_days - 1);
    ((reference_start, reference_end), (recent_start, recent_end))
}

/// The finding of a metric whose newest data is older than `max_age_hours`.
pub fn staleness_finding(
    metric: &str,
    observed_at: Option<DateTime<Utc>>,
    max_age_hours: i64,
    now: DateTime<Utc>,
) -> Option<Finding> {
    let stale = match observed_at {
        None => true,
        Some(at) => now - at > Duration::hours(max_age_hours),
    };
    stale.then(|| Finding {
        fingerprint: format!("stale:{metric}"),
        summary: match observed_at {
            None => format!("{metric} has no data yet (its limit is {max_age_hours} h)"),
            Some(at) => format!(
                "{metric} is stale: its newest data is from {} ({} h ago; the limit is {max_age_hours} h)",
                at.format("%Y-%m-%d %H:%M UTC"),
                (now - at).num_hours()
            ),
        },
        evidence: AlertEvidence::Staleness { metric: metric.to_owned(), observed_at, max_age_hours },
    })
}

/// The jobs (of the loop in `loop_filter`, or any) that failed within the look-back, or run without a
/// heartbeat for `stalled_minutes`.
pub fn job_findings(
    jobs: &[Job],
    loop_filter: Option<&str>,
    lookback_hours: i64,
    stalled_minutes: i64,
    now: DateTime<Utc>,
) -> Vec<Finding> {
    let since = now - Duration::hours(lookback_hours);
    let stalled_before = now - Duration::minutes(stalled_minutes);
    jobs.iter()
        .filter_map(|job| {
            let loop_key = job.spec.loop_key.clone();
            if loop_filter.is_some_and(|l| loop_key.as_deref() != Some(l)) {
                return None;
            }
            let (state, at) = match job.status {
                JobStatus::Failed => {
                    let at = job.finished_at.filter(|at| *at >= since)?;
                    (JobTrouble::Failed, at)
                }
                JobStatus::Running => {
                    let last = job.heartbeat_at.or(job.started_at).unwrap_or(job.created_at);
                    if last >= stalled_before {
                        return None;
                    }
                    (JobTrouble::Stalled, last)
                }
                _ => return None,
            };
            let summary = match state {
                JobTrouble::Failed => format!(
                    "{} job {} failed at {}: {}",
                    job.kind,
                    job.id,
                    at.format("%Y-%m-%d %H:%M UTC"),
                    job.error.as_deref().unwrap_or("no error recorded")
                ),
                JobTrouble::Stalled => format!(
                    "{} job {} has had no heartbeat since {} ({} min)",
                    job.kind,
                    job.id,
                    at.format("%Y-%m-%d %H:%M UTC"),
                    (now - at).num_minutes()
                ),
            };
            Some(Finding {
                // A stalled job that then fails is a new occurrence: its alert says so.
                fingerprint: format!("job:{}:{state}", job.id),
                summary,
                evidence: AlertEvidence::JobFailed {
                    job_id: job.id,
                    job_kind: job.kind,
                    loop_key,
                    state,
                    error: job.error.clone(),
                    at,
                },
            })
        })
        .collect()
}

/// The promotions the gate refused within the look-back.
pub fn promotion_findings(
    promotions: &[Promotion],
    loop_filter: Option<&str>,
    lookback_hours: i64,
    now: DateTime<Utc>,
) -> Vec<Finding> {
    let since = now - Duration::hours(lookback_hours);
    promotions
        .iter()
        .filter(|p| !p.accepted && p.at >= since && loop_filter.is_none_or(|l| p.loop_key == l))
        .map(|p| Finding {
            fingerprint: format!("promotion:{}", p.id),
            summary: format!(
                "the gate refused model {} for {} at {}: {}",
                p.challenger_id,
                p.loop_key,
                p.at.format("%Y-%m-%d %H:%M UTC"),
                p.decision.reason
            ),
            evidence: AlertEvidence::PromotionRefused {
                promotion_id: p.id,
                loop_key: p.loop_key.clone(),
                challenger_id: p.challenger_id,
                reason: p.decision.reason.clone(),
                at: p.at,
            },
        })
        .collect()
}

/// The finding of a metric that reversed against `direction`.
pub fn reversal_finding(metric: &str, points: &[TrendPoint], direction: Direction) -> Option<Finding> {
    let reversal = detect_reversal(points, direction.sign())?;
    let (was, now) = match direction {
        Direction::Up => ("rose", "falls"),
        Direction::Down => ("fell", "rises"),
    };
    Some(Finding {
        // One alert per reversal: a later one (a new recent window after recovering) is a new occurrence.
        fingerprint: format!("reversal:{metric}:{}", reversal.earlier.to),
        summary: format!(
            "{metric} {was} by {:.4} a day ({} – {}) and now {now} by {:.4} a day ({} – {}), both with 95 % confidence",
            reversal.earlier.per_day.abs(),
            reversal.earlier.from,
            reversal.earlier.to,
            reversal.recent.per_day.abs(),
            reversal.recent.from,
            reversal.recent.to
        ),
        evidence: AlertEvidence::TrendReversal { metric: metric.to_owned(), reversal },
    })
}

/// The key results of a season's outlook whose forecast gives them less than `below` of reaching their
/// target at their end. A key result already holding its target is not behind, and one whose end has
/// passed has an outcome, not a forecast, so neither is found.
pub fn key_result_findings(outlook: &SeasonOutlook, below: f64) -> Vec<Finding> {
    outlook
        .key_results
        .iter()
        .filter_map(|k| {
            let forecast = k.forecast.as_ref()?;
            let probability = forecast.probability?;
            (probability < below && !forecast.holding).then(|| Finding {
                fingerprint: format!("key-result:{}", k.key_result_id.0),
                summary: format!("\"{}\" is unlikely to land by {}: {}", k.title, k.ends_on, forecast.summary),
                evidence: AlertEvidence::KeyResultBehind {
                    key_result_id: k.key_result_id.0,
                    title: k.title.clone(),
                    ends_on: k.ends_on,
                    probability,
                    forecast: forecast.summary.clone(),
                },
            })
        })
        .collect()
}

#[cfg(test)]
#[path = "monitor_tests.rs"]
mod tests;
