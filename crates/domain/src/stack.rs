//! A product loop's post-training stack: its stages, the iterations derived from lineage, and its
//! metabolism (how fast and how far the loop turns).

use std::collections::HashMap;

use chrono::{DateTime, Datelike, Duration, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::{Alias, Dataset, DatasetKind, DriftAlert, Experiment, Job, Model, OnlineLift, Promotion, Season};

/// One stage of the post-training stack with its current artefact.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StackStage {
    /// `reward`, `data`, `fine-tuning`, `evals`, `ab`, `observability` or `iteration`.
    pub key: String,
    pub name: String,
    /// What the stage currently holds, in words (empty: nothing yet).
    pub artefact: Option<String>,
    /// `ok`, `running`, `missing`, `alert`, `refused`, … in the stage's terms.
    pub status: String,
    pub last_activity: Option<DateTime<Utc>>,
}

/// One turn of the loop: a model trained by a job on a dataset built from the loop's events, and the
/// promotion gate's decision on it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LoopIteration {
    pub promotion_id: i64,
    pub model_id: i64,
    pub model: String,
    pub dataset_id: i64,
    pub dataset: String,
    pub job_id: Option<i64>,
    /// When the batch this iteration learned from began: the newest event of the loop's previous dataset
    /// of the same kind (the batch's events came after it), or the first event of the loop's first one.
    pub first_event_at: Option<DateTime<Utc>>,
    pub dataset_created_at: DateTime<Utc>,
    pub job_started_at: Option<DateTime<Utc>>,
    pub job_finished_at: Option<DateTime<Utc>>,
    pub evaluated_at: Option<DateTime<Utc>>,
    pub reward: Option<f64>,
    /// The loop's experiment that ran over the iteration, if any.
    pub experiment: Option<String>,
    pub decided_at: DateTime<Utc>,
    /// `promoted` or `refused`.
    pub outcome: String,
    pub reason: String,
    /// The challenger's reward minus the champion's at the decision (none without both).
    pub reward_change: Option<f64>,
    /// That change's paired bootstrap interval over the held-out items, when the gate computed it.
    #[serde(default)]
    pub reward_interval: Option<(f64, f64)>,
    /// The measured online lift: the acceptance difference in the experiment the gate weighed, with
    /// its interval (none for a first champion or a decision without an analysed experiment).
    #[serde(default)]
    pub online_lift: Option<OnlineLift>,
    /// Hours from the first event of the batch to the decision.
    pub cycle_hours: Option<f64>,
    /// Expert annotations the iteration's dataset used (none when it was built without them).
    pub annotations_used: Option<i64>,
}

/// One ISO week (from Monday) of the loop's metabolism.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MetabolismWeek {
    pub week: NaiveDate,
    pub iterations: i64,
    pub promoted: i64,
    /// Mean cycle time of the week's iterations, in hours.
    pub cycle_hours: Option<f64>,
    /// Summed reward change of the week's promotions.
    pub lift: Option<f64>,
    /// User feedback rows (events with a final text) that the week's new SFT datasets added. The field
    /// keeps the name it has always had in the API; expert annotations are `expert_annotations`.
    pub annotations: i64,
    /// Expert annotations given in the loop's annotation queues during the week.
    pub expert_annotations: i64,
}

/// How fast and how far the loop turns.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Metabolism {
    pub iterations: i64,
    pub promoted: i64,
    pub mean_cycle_hours: Option<f64>,
    /// Mean offline reward change per promoted iteration.
    pub lift_per_iteration: Option<f64>,
    /// Mean measured online lift (acceptance difference in the experiment the gate weighed) per
    /// promoted iteration that has one.
    #[serde(default)]
    pub online_lift_per_iteration: Option<f64>,
    /// The current season (the one whose dates hold today), whose weeks the chart shows; without one,
    /// every week with activity.
    pub season: Option<String>,
    /// Iterations per week of the current season so far (none without a current season).
    pub iterations_per_week: Option<f64>,
    pub weeks: Vec<MetabolismWeek>,
    /// How annotation volume is counted.
    pub annotation_method: String,
    /// Expert annotations given in the loop's queues (in the weeks shown).
    pub expert_annotations: i64,
}

/// A loop's post-training stack, iterations (newest first) and metabolism.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LoopStack {
    #[serde(rename = "loop")]
    pub loop_key: String,
    pub stages: Vec<StackStage>,
    pub iterations: Vec<LoopIteration>,
    pub metabolism: Metabolism,
    /// The loop's promotion gate policy (the service fills it in; `None` from [`derive_stack`]).
    #[serde(default)]
    pub gate: Option<crate::GatePolicy>,
}

/// How [`derive_stack`] counts annotation volume.
pub const ANNOTATION_METHOD: &str = "Expert annotations: labelled annotations given in the loop's annotation queues, in the week they were given (skips and flags are not counted). Feedback rows: events with a context and a final text, counted from the row counts of the loop's SFT datasets: each new dataset adds its rows beyond the previous one's, in the week it was built.";

/// Everything a loop's stack is derived from, read by the service: the loop's models, datasets, jobs
/// (including those its models were trained by), promotion decisions, experiments and drift alerts,
/// its champion, the current season, and the time of the reading.
pub struct StackEvidence<'a> {
    pub loop_key: &'a str,
    pub models: &'a [Model],
    pub datasets: &'a [Dataset],
    pub jobs: &'a [Job],
    pub promotions: &'a [Promotion],
    pub experiments: &'a [Experiment],
    pub alerts: &'a [DriftAlert],
    pub champion: Option<&'a Alias>,
    pub season: Option<&'a Season>,
    /// Labelled expert annotations of the loop's queues per day.
    pub annotations_per_day: &'a [(NaiveDate, i64)],
    pub now: DateTime<Utc>,
}

/// The Monday of `t`'s ISO week.
fn week_of(t: DateTime<Utc>) -> NaiveDate {
    let d = t.date_naive();
    d - Duration::days(d.weekday().num_days_from_monday() as i64)
}

/// A loop's post-training stack: each stage's current artefact, status and last activity; the
/// iterations derived from lineage (every promotion decision on a model trained by a job on a dataset
/// built from this loop's events), newest first; and the loop's metabolism per week.
pub fn derive_stack(e: &StackEvidence<'_>) -> LoopStack {
    let key = e.loop_key;
    let mut datasets: Vec<&Dataset> = e.datasets.iter().filter(|d| d.source.loop_key() == Some(key)).collect();
    datasets.sort_by_key(|d| (d.created_at, d.id));
    let iterations = iterations(e, &datasets);
    let metabolism = metabolism(e, &datasets, &iterations);
    let stages = stages(e, &datasets, &iterations);
    LoopStack { loop_key: key.into(), stages, iterations, metabolism, gate: None }
}

fn iterations(e: &StackEvidence<'_>, datasets: &[&Dataset]) -> Vec<LoopIteration> {
    let mut iterations = Vec::new();
    // A model put to the gate more than once (refused until its experiment had outcomes, say) is one
    // iteration: the loop turned once, and its latest decision is the outcome.
    let latest = e
        .promotions
        .iter()
        .filter(|p| !e.promotions.iter().any(|q| q.challenger_id == p.challenger_id && (q.at, q.id) > (p.at, p.id)));
    for p in latest {
        let Some(model) = e.models.iter().find(|m| m.id == p.challenger_id) else { continue };
        let Some(digest) = &model.dataset_digest else { continue };
        let Some(dataset) = datasets.iter().find(|d| &d.digest == digest) else { continue };
        let job = model.job_id.and_then(|id| e.jobs.iter().find(|j| j.id == id));
        // The batch an iteration learns from is the events its dataset has beyond the loop's previous
        // dataset of the same kind. Datasets keep every event, so the batch's first event is the first
        // one after the previous dataset's newest; its time is bounded below by that newest event's,
        // which is what is used (the cycle time is then at most a little long, never short). The loop's
        // first dataset's batch is all of it.
        let previous = datasets
            .iter()
            .filter(|d| d.kind == dataset.kind && (d.created_at, d.id) < (dataset.created_at, dataset.id))
            .filter_map(|d| d.source.range().map(|r| r.to))
            .max();
        let from = dataset.source.range().map(|r| r.from);
        let first_event_at = match (previous, from) {
            (Some(prev), Some(from)) => Some(prev.max(from)),
            (prev, from) => from.or(prev),
        };
        let decided = p.at.date_naive();
        let experiment = p.decision.experiment.as_ref().map(|x| x.key().to_owned()).or_else(|| {
            e.experiments
                .iter()
                // Created before the decision: a loop may turn several times a day (the demo's does),
                // so a later experiment of the same day is not this iteration's.
                .filter(|x| {
                    x.loop_key == e.loop_key
                        && x.starts_on <= decided
                        && x.last_day() >= dataset.created_at.date_naive()
                        && x.created_at <= p.at
                })
                .max_by_key(|x| (x.starts_on, x.id))
                .map(|x| x.key.clone())
        });
        iterations.push(LoopIteration {
            promotion_id: p.id,
            model_id: model.id,
            model: model.name.clone(),
            dataset_id: dataset.id,
            dataset: dataset.name.clone(),
            job_id: model.job_id,
            first_event_at,
            dataset_created_at: dataset.created_at,
            job_started_at: job.and_then(|j| j.started_at),
            job_finished_at: job.and_then(|j| j.finished_at),
            evaluated_at: model.evaluated_at,
            reward: model.reward,
            experiment,
            decided_at: p.at,
            outcome: if p.accepted { "promoted" } else { "refused" }.into(),
            reason: p.decision.reason.clone(),
            reward_change: p.decision.reward_change(),
            reward_interval: p.decision.offline_margin.as_ref().map(|m| (m.ci_low, m.ci_high)),
            online_lift: p.decision.online_lift(),
            cycle_hours: first_event_at.map(|f| (p.at - f).num_seconds() as f64 / 3600.0),
            annotations_used: dataset.source.annotations(),
        });
    }
    iterations.sort_by_key(|i| std::cmp::Reverse((i.decided_at, i.promotion_id)));
    iterations
}

fn metabolism(e: &StackEvidence<'_>, datasets: &[&Dataset], iterations: &[LoopIteration]) -> Metabolism {
    let mut weeks: Vec<MetabolismWeek> = Vec::new();
    fn week_entry(weeks: &mut Vec<MetabolismWeek>, week: NaiveDate) -> &mut MetabolismWeek {
        let i = match weeks.iter().position(|w| w.week == week) {
            Some(i) => i,
            None => {
                weeks.push(MetabolismWeek {
                    week,
                    iterations: 0,
                    promoted: 0,
                    cycle_hours: None,
                    lift: None,
                    annotations: 0,
                    expert_annotations: 0,
                });
                weeks.len() - 1
            }
        };
        &mut weeks[i]
    }
    let mut cycles: HashMap<NaiveDate, Vec<f64>> = HashMap::new();
    for it in iterations {
        let w = week_entry(&mut weeks, week_of(it.decided_at));
        w.iterations += 1;
        if it.outcome == "promoted" {
            w.promoted += 1;
            if let Some(change) = it.reward_change {
                w.lift = Some(w.lift.unwrap_or(0.0) + change);
            }
        }
        if let Some(c) = it.cycle_hours {
            cycles.entry(w.week).or_default().push(c);
        }
    }
    let mut previous_rows = 0;
    for d in datasets.iter().filter(|d| d.kind == DatasetKind::Sft) {
        let added = (d.rows - previous_rows).max(0);
        previous_rows = previous_rows.max(d.rows);
        week_entry(&mut weeks, week_of(d.created_at)).annotations += added;
    }
    for (day, n) in e.annotations_per_day {
        let monday = *day - Duration::days(day.weekday().num_days_from_monday() as i64);
        week_entry(&mut weeks, monday).expert_annotations += n;
    }
    for w in &mut weeks {
        if let Some(c) = cycles.get(&w.week) {
            w.cycle_hours = Some(c.iter().sum::<f64>() / c.len() as f64);
        }
    }
    weeks.sort_by_key(|w| w.week);
    let today = e.now.date_naive();
    let mut iterations_per_week = None;
    if let Some(s) = e.season {
        let first_week = week_of(s.starts_on.and_hms_opt(0, 0, 0).expect("midnight").and_utc());
        weeks.retain(|w| w.week >= first_week && w.week <= s.ends_on);
        let elapsed = ((today - s.starts_on).num_days() as f64 / 7.0).max(1.0);
        let count = iterations.iter().filter(|i| i.decided_at.date_naive() >= s.starts_on).count();
        iterations_per_week = Some(count as f64 / elapsed);
    }
    let mean = |v: Vec<f64>| (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64);
    let promoted: Vec<&LoopIteration> = iterations.iter().filter(|i| i.outcome == "promoted").collect();
    Metabolism {
        iterations: iterations.len() as i64,
        promoted: promoted.len() as i64,
        mean_cycle_hours: mean(promoted.iter().filter_map(|i| i.cycle_hours).collect()),
        lift_per_iteration: mean(promoted.iter().filter_map(|i| i.reward_change).collect()),
        online_lift_per_iteration: mean(
            promoted.iter().filter_map(|i| i.online_lift.as_ref().map(|l| l.difference)).collect(),
        ),
        season: e.season.map(|s| s.name.clone()),
        iterations_per_week,
        expert_annotations: weeks.iter().map(|w| w.expert_annotations).sum(),
        weeks,
        annotation_method: ANNOTATION_METHOD.into(),
    }
}

fn stages(e: &StackEvidence<'_>, datasets: &[&Dataset], iterations: &[LoopIteration]) -> Vec<StackStage> {
    let today = e.now.date_naive();
    let evaluated = e.models.iter().filter(|m| m.evaluated_at.is_some()).max_by_key(|m| (m.evaluated_at, m.id));
    let stage = |key: &str, name: &str, artefact: Option<String>, status: &str, last: Option<DateTime<Utc>>| {
        StackStage { key: key.into(), name: name.into(), artefact, status: status.into(), last_activity: last }
    };
    let reward_spec = evaluated.and_then(|m| m.eval.as_ref()).map(|e| &e.reward_spec);
    let experiments: Vec<&Experiment> = e.experiments.iter().filter(|x| x.loop_key == e.loop_key).collect();
    let experiment = experiments.iter().max_by_key(|x| (x.starts_on, x.id));
    let alerts: Vec<&DriftAlert> = e.alerts.iter().filter(|a| a.loop_key == e.loop_key).collect();
    let last_job =
        e.jobs.iter().filter(|j| j.spec.loop_key.as_deref() == Some(e.loop_key)).max_by_key(|j| (j.created_at, j.id));
    let last_dataset = datasets.last();
    vec![
        stage(
            "reward",
            "Reward design",
            reward_spec.map(|s| format!("reward spec {}", serde_json::to_value(s).unwrap_or_default())),
            if reward_spec.is_some() { "ok" } else { "missing" },
            evaluated.and_then(|m| m.evaluated_at),
        ),
        stage(
            "data",
            "Data sourcing",
            last_dataset.map(|_| {
                let mut kinds: Vec<DatasetKind> = datasets.iter().map(|d| d.kind).collect();
                kinds.sort_by_key(|k| k.as_str());
                kinds.dedup();
                kinds
                    .iter()
                    .filter_map(|k| datasets.iter().rev().find(|d| d.kind == *k))
                    .map(|d| {
                        let events = d.source.events().map_or("null".to_string(), |n| n.to_string());
                        format!("{} #{} ({} rows from {events} events)", d.name, d.id, d.rows)
                    })
                    .collect::<Vec<_>>()
                    .join("; ")
            }),
            if last_dataset.is_some() { "ok" } else { "missing" },
            last_dataset.map(|d| d.created_at),
        ),
        stage(
            "fine-tuning",
            "Fine-tuning",
            last_job.map(|j| format!("{} job #{}", j.kind, j.id)),
            last_job.map(|j| j.status.as_str()).unwrap_or("missing"),
            last_job.map(|j| j.last_activity()),
        ),
        stage(
            "evals",
            "Evals",
            evaluated.map(|m| format!("{} reward {:.4}", m.name, m.reward.unwrap_or(f64::NAN))),
            if evaluated.is_some() { "ok" } else { "missing" },
            evaluated.and_then(|m| m.evaluated_at),
        ),
        stage(
            "ab",
            "A/B testing",
            experiment.map(|x| format!("experiment {} ({} vs {})", x.key, x.control, x.treatment)),
            match experiment {
                None => "missing",
                Some(x) if x.starts_on > today => "scheduled",
                Some(x) if x.is_active(e.now) => "running",
                Some(_) => "finished",
            },
            experiment.map(|x| x.created_at),
        ),
        stage(
            "observability",
            "Observability",
            alerts
                .first()
                .map(|a| format!("{} drift alerts; latest: {} {} (PSI {:.3})", alerts.len(), a.band, a.field, a.psi)),
            if alerts.is_empty() { "ok" } else { "alert" },
            alerts.iter().map(|a| a.created_at).max(),
        ),
        stage(
            "iteration",
            "Iteration",
            iterations.first().map(|i| {
                format!(
                    "{} {}{}",
                    i.model,
                    i.outcome,
                    e.champion.map(|c| format!("; champion model #{}", c.model_id)).unwrap_or_default()
                )
            }),
            iterations.first().map(|i| i.outcome.as_str()).unwrap_or("missing"),
            iterations.first().map(|i| i.decided_at),
        ),
    ]
}

/// What the demo's traffic simulator is doing, for the banner that labels its traffic as simulated and
/// for `GET /api/v1/simulator`. Without a simulator it is `{"running": false}`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SimulatorStatus {
    pub running: bool,
    /// Suggestions the simulated clinicians ask for per minute, over all loops.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suggestions_per_minute: Option<f64>,
    /// The largest share of time the simulator's own training and eval jobs may take (the cap on the heavy
    /// part of its CPU use; its traffic is capped by its rate).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duty: Option<f64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub loops: Vec<SimulatedLoop>,
}

/// The simulator's work in one loop.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SimulatedLoop {
    #[serde(rename = "loop")]
    pub loop_key: String,
    /// What the simulated clinicians write, in words.
    pub scenario: String,
    /// `waiting`, `bootstrapping`, `collecting`, `training`, `evaluating`, `experimenting`,
    /// `promoting`, `resting` or `stalled`.
    pub phase: String,
    pub suggestions_served: u64,
    /// Characters of the served suggestions that the simulated clinicians kept, over all served.
    pub chars_accepted: u64,
    pub chars_suggested: u64,
    /// Iterations the simulator finished (a challenger trained, tested and put to the gate).
    pub iterations: u64,
    pub promoted: u64,
    /// Labels the simulated expert annotators gave in the loop's queue.
    #[serde(default)]
    pub annotations: u64,
    pub last_action: String,
    pub last_action_at: Option<DateTime<Utc>>,
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::{
        Contender, DatasetSource, EventRange, JobKind, JobSpec, JobStatus, ModelConfig, ModelKind, OrgId,
        PromotionDecision, TrainMetrics,
    };

    fn at(raw: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(raw).unwrap().with_timezone(&Utc)
    }

    fn day(raw: &str) -> NaiveDate {
        raw.parse().unwrap()
    }

    fn dataset(id: i64, kind: DatasetKind, rows: i64, created: &str, from: &str, to: &str) -> Dataset {
        Dataset {
            id,
            name: format!("notes-{kind}"),
            kind,
            digest: format!("sha256:{id}"),
            rows,
            bytes: 10,
            path: "p".into(),
            source: DatasetSource::Events {
                loop_key: "notes".into(),
                segments: vec![1],
                events: rows,
                range: Some(EventRange { from: at(from), to: at(to) }),
                event_ids: "ids".into(),
                // Dataset 2 was built with 25 expert annotations; the others without.
                annotations: (id == 2).then_some(25),
                annotation_lineage: (id == 2).then(|| "lineage".into()),
            },
            created_at: at(created),
        }
    }

    fn model(id: i64, digest: &str, job: i64, reward: f64) -> Model {
        Model {
            id,
            name: format!("m{id}"),
            loop_key: Some("notes".into()),
            kind: ModelKind::Sft,
            base_model_id: None,
            dataset_digest: Some(digest.into()),
            job_id: Some(job),
            path: "p".into(),
            config: ModelConfig::default(),
            parameters: 1,
            train_metrics: TrainMetrics::Provenance(serde_json::json!({})),
            eval: None,
            reward: Some(reward),
            evaluated_at: Some(at("2026-11-04T12:00:00Z")),
            created_at: at("2026-11-04T11:00:00Z"),
        }
    }

    /// A succeeded SFT job of the `notes` loop; the monitor tests start from it too.
    pub(crate) fn job(id: i64) -> Job {
        Job {
            id,
            org_id: OrgId(1),
            kind: JobKind::Sft,
            status: JobStatus::Succeeded,
            spec: JobSpec {
                kind: JobKind::Sft,
                loop_key: Some("notes".into()),
                model_id: None,
                dataset_id: None,
                held_out_id: None,
                name: None,
                model_config: None,
                train: Default::default(),
                eval: Default::default(),
                reward: None,
            },
            step: 1,
            total_steps: 1,
            progress: 1.0,
            attempts: 1,
            lease_owner: None,
            lease_expires_at: None,
            heartbeat_at: None,
            cancel_requested: false,
            checkpoint_path: None,
            checkpoint_step: None,
            result: None,
            error: None,
            created_at: at("2026-11-04T10:00:00Z"),
            started_at: Some(at("2026-11-04T10:01:00Z")),
            finished_at: Some(at("2026-11-04T10:30:00Z")),
        }
    }

    fn promotion(id: i64, challenger: &Model, accepted: bool, decided: &str) -> Promotion {
        Promotion {
            id,
            loop_key: "notes".into(),
            challenger_id: challenger.id,
            champion_id: None,
            accepted,
            decision: PromotionDecision {
                challenger: Contender::from(challenger),
                champion: Some(Contender { id: 99, name: "base".into(), reward: Some(0.25) }),
                experiment: None,
                online_rule: None,
                offline_rule: None,
                offline_margin: None,
                reason: if accepted { "beats".into() } else { "does not beat".into() },
            },
            at: at(decided),
        }
    }

    #[test]
    fn iterations_come_from_lineage_and_their_batches_start_after_the_previous_dataset() {
        let datasets = [
            dataset(1, DatasetKind::Sft, 100, "2026-11-02T09:00:00Z", "2026-10-01T00:00:00Z", "2026-11-02T08:00:00Z"),
            dataset(2, DatasetKind::Sft, 160, "2026-11-04T09:00:00Z", "2026-10-01T00:00:00Z", "2026-11-04T08:00:00Z"),
            dataset(
                3,
                DatasetKind::Preference,
                40,
                "2026-11-04T09:00:00Z",
                "2026-10-01T00:00:00Z",
                "2026-11-04T08:00:00Z",
            ),
        ];
        let models = [model(10, "sha256:2", 5, 0.5), model(11, "sha256:1", 4, 0.1)];
        let jobs = [job(5)];
        let mut promoted = promotion(1, &models[0], true, "2026-11-04T14:00:00Z");
        // The gate weighed an experiment of this model against the champion: its difference is the
        // measured online lift; the always-valid interval's upper end is unbounded.
        promoted.decision.experiment = Some(crate::ExperimentEvidence::Analysed {
            key: "notes-ab".into(),
            difference: 0.04,
            always_valid_ci: [0.01, f64::NAN],
            always_valid_p: 0.01,
        });
        let promotions = [promoted, promotion(2, &models[1], false, "2026-11-02T14:00:00Z")];
        let annotations_per_day = [(day("2026-11-01"), 4), (day("2026-11-02"), 10), (day("2026-11-04"), 15)];
        let stack_of = |promotions: &[Promotion]| {
            derive_stack(&StackEvidence {
                loop_key: "notes",
                models: &models,
                datasets: &datasets,
                jobs: &jobs,
                promotions,
                experiments: &[],
                alerts: &[],
                champion: None,
                season: None,
                annotations_per_day: &annotations_per_day,
                now: at("2026-11-05T00:00:00Z"),
            })
        };
        let stack = stack_of(&promotions);
        assert_eq!(stack.iterations.len(), 2);
        // Expert annotations count in the week they were given (1 November is a Sunday), and each
        // iteration says how many its dataset used.
        let expert: Vec<(NaiveDate, i64)> =
            stack.metabolism.weeks.iter().map(|w| (w.week, w.expert_annotations)).collect();
        assert_eq!(expert, [(day("2026-10-26"), 4), (day("2026-11-02"), 25)]);
        assert_eq!(stack.metabolism.expert_annotations, 29);
        assert_eq!(stack.iterations[0].annotations_used, Some(25));
        assert_eq!(stack.iterations[1].annotations_used, None);
        let newest = &stack.iterations[0];
        assert_eq!((newest.promotion_id, newest.outcome.as_str(), newest.dataset_id), (1, "promoted", 2));
        // The batch of dataset 2 starts after dataset 1's newest event: 08:00 on the 2nd to 14:00 on the 4th.
        assert_eq!(newest.first_event_at, Some(at("2026-11-02T08:00:00Z")));
        assert_eq!(newest.cycle_hours, Some(54.0));
        assert_eq!(newest.job_finished_at, Some(at("2026-11-04T10:30:00Z")));
        assert!((newest.reward_change.unwrap() - 0.25).abs() < 1e-12);
        let online = newest.online_lift.clone().expect("an online lift");
        assert_eq!(
            (online.experiment.as_str(), online.difference, online.ci_low, online.ci_high),
            ("notes-ab", 0.04, Some(0.01), None)
        );
        assert_eq!(stack.iterations[1].online_lift, None);
        // The first dataset's batch is all of it; its model has no job in the evidence.
        assert_eq!(stack.iterations[1].first_event_at, Some(at("2026-10-01T00:00:00Z")));
        assert_eq!(stack.iterations[1].job_started_at, None);
        let m = &stack.metabolism;
        assert_eq!((m.iterations, m.promoted), (2, 1));
        assert_eq!(m.mean_cycle_hours, Some(54.0));
        assert_eq!(m.online_lift_per_iteration, Some(0.04));

        // The same model refused once more, earlier: still one iteration per model, the latest decision.
        let mut retried = promotions.to_vec();
        retried.push(promotion(3, &models[0], false, "2026-11-04T12:00:00Z"));
        let again = stack_of(&retried);
        assert_eq!(again.iterations.len(), 2);
        assert_eq!((again.iterations[0].promotion_id, again.iterations[0].outcome.as_str()), (1, "promoted"));
        // SFT rows 100 then 160: 160 annotations in the week of 2 November; preference rows do not count.
        assert_eq!(m.weeks.iter().map(|w| w.annotations).sum::<i64>(), 160);
        let status = |k: &str| stack.stages.iter().find(|s| s.key == k).unwrap().status.clone();
        assert_eq!(status("data"), "ok");
        assert_eq!(status("fine-tuning"), "succeeded");
        assert_eq!(status("iteration"), "promoted");
        assert_eq!(status("reward"), "missing");
        assert_eq!(status("ab"), "missing");
        let data = stack.stages.iter().find(|s| s.key == "data").unwrap().artefact.clone().unwrap();
        assert_eq!(data, "notes-preference #3 (40 rows from 40 events); notes-sft #2 (160 rows from 160 events)");
    }

    #[test]
    fn an_empty_loop_has_every_stage_missing() {
        let stack = derive_stack(&StackEvidence {
            loop_key: "notes",
            models: &[],
            datasets: &[],
            jobs: &[],
            promotions: &[],
            experiments: &[],
            alerts: &[],
            champion: None,
            season: None,
            annotations_per_day: &[],
            now: at("2026-11-05T00:00:00Z"),
        });
        assert!(stack.iterations.is_empty() && stack.metabolism.weeks.is_empty());
        let statuses: Vec<&str> = stack.stages.iter().map(|s| s.status.as_str()).collect();
        assert_eq!(statuses, ["missing", "missing", "missing", "missing", "missing", "ok", "missing"]);
    }
}
