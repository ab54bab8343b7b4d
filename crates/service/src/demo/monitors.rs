//! The demo's monitors: what a team running the two loops would watch. They are evaluated by the
//! upkeep like any others (the first round runs as the server starts), so whatever they fire is
//! computed from the demo's simulated events, jobs and decisions, never seeded as an alert.

use slope_domain::*;

use super::{DEMO_ACCEPTANCE_METRIC, DEMO_EVAL_METRIC, DEMO_LOOP, DISCHARGE_LOOP};
use crate::{Loops, Monitors, Planning, Result};

/// The squad that owns the note-drafting loop in the demo plan, whose member account gets its alerts.
const LOOP_SQUAD: &str = "Agents";

/// A metric the demo defines but does not feed: the clinicians' satisfaction survey, which a survey
/// tool would push weekly. No survey is simulated, so its monitor finds it has no data, which is true.
pub const DEMO_SURVEY_METRIC: &str = "notes-clinician-satisfaction";

/// Seeds the demo's monitors when the organisation has none: drift of both loops' latency and of the
/// notes' acceptance per event, a reversal of the notes' acceptance rate, a stale eval score or satisfaction survey, failed
/// or stalled jobs, refused promotions and key results unlikely to land. Those about the notes loop belong to its squad.
pub async fn seed_monitors(monitors: &Monitors, planning: &Planning, loops: &Loops, actor: &Actor) -> Result<usize> {
    if !monitors.list(actor).await?.is_empty() {
        return Ok(0);
    }
    if loops.metric(actor, DEMO_SURVEY_METRIC).await.is_err() {
        let survey = MetricInput {
            key: DEMO_SURVEY_METRIC.into(),
            name: "Clinician satisfaction (weekly survey, pushed by the survey tool)".into(),
            kind: "custom".into(),
            granularity: "week".into(),
            ..Default::default()
        };
        loops.create_metric(actor, &survey).await?;
    }
    let squad = planning.list_squads(actor).await?.into_iter().find(|s| s.name == LOOP_SQUAD).map(|s| s.id.0);
    let monitor = |key: &str, name: &str, kind: &str| MonitorInput {
        key: key.into(),
        name: name.into(),
        kind: kind.into(),
        every_minutes: Some(5),
        ..Default::default()
    };
    let inputs = [
        MonitorInput {
            squad_id: squad,
            loop_key: Some(DEMO_LOOP.into()),
            field: Some("latency_ms".into()),
            ..monitor("notes-latency-drift", "Notes latency is stable", "drift")
        },
        MonitorInput {
            squad_id: squad,
            loop_key: Some(DEMO_LOOP.into()),
            field: Some("acceptance".into()),
            ..monitor("notes-acceptance-drift", "Notes acceptance per suggestion is stable", "drift")
        },
        MonitorInput {
            loop_key: Some(DISCHARGE_LOOP.into()),
            field: Some("latency_ms".into()),
            ..monitor("discharge-latency-drift", "Discharge latency is stable", "drift")
        },
        MonitorInput {
            squad_id: squad,
            metric: Some(DEMO_ACCEPTANCE_METRIC.into()),
            direction: Some("up".into()),
            ..monitor("notes-acceptance-reversal", "Notes acceptance keeps rising", "trend-reversal")
        },
        MonitorInput {
            metric: Some(DEMO_EVAL_METRIC.into()),
            ..monitor("agent-eval-fresh", "The agent eval runs weekly", "staleness")
        },
        MonitorInput {
            squad_id: squad,
            metric: Some(DEMO_SURVEY_METRIC.into()),
            ..monitor("survey-fresh", "The satisfaction survey arrives weekly", "staleness")
        },
        MonitorInput { ..monitor("runner-jobs", "Training and eval jobs succeed", "job-failed") },
        MonitorInput { ..monitor("gate-refusals", "The gate accepts our challengers", "promotion-refused") },
        MonitorInput { ..monitor("key-results-landing", "The season's key results will land", "key-result-behind") },
    ];
    for input in &inputs {
        monitors.put(actor, input).await?;
    }
    Ok(inputs.len())
}
