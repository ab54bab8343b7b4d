//! The live demo's traffic simulator and loop autopilot. `slope serve` starts it in demo mode only, and
//! everything it produces is simulated: the status it publishes (`GET /api/v1/simulator`, the banner on
//! the loop page) says so.
//!
//! Two tasks:
//! - **Traffic**: simulated clinicians (`sim-clinician-N`, each in one of the demo's units) write the
//!   text of a loop's [`Scenario`]. At the cursor they ask [`Runner::complete`] for a suggestion, keep
//!   the part of it that matches what they mean to write ([`accepted_prefix`]) and report the outcome
//!   with what they wrote, as a real client would.
//! - **Autopilot**: the loops' operator, acting as the system principal `simulator` so that its actions
//!   are attributable. It evaluates the base model on a fixed simulated held-out set and promotes it
//!   when a loop has no champion; then, whenever enough new events have arrived, it builds datasets,
//!   fine-tunes a challenger from the champion, makes sure both were evaluated the same way, runs an
//!   A/B experiment until each arm has enough outcomes (or a time limit passes), puts the challenger to
//!   the promotion gate and stops the experiment.
//!
//! A third task, **experts**, stands for expert annotators (`sim-expert-N`, acting as system principals
//! of those names): they take items of the demo's annotation queues one by one, as a person would, and
//! correct each suggestion into the text that belongs to the case in its context (what a careful
//! clinician means), each with an error rate of their own (a slip writes another case's text), rate and
//! tag it. The autopilot samples new traffic into the queues and trains on the events with the annotated
//! ones replaced by their annotations.
//!
//! The simulator calls only service methods (runner, loops, annotations), never the store, so the loop page's
//! stack, iterations and metabolism show its work exactly as they would show a person's. Its CPU use is
//! capped by a duty cycle: after each job it waits until its jobs' wall time is at most `duty` of the
//! time elapsed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use serde_json::json;
use slope_domain::{
    Action, Actor, AliasKind, AnnotationInput, Dataset, DatasetSource, ExperimentInput, Job, JobRequest, JobStatus,
    OrgId, SimulatedLoop, SimulatorStatus, WorkItem,
};
use slope_runner::TrainConfig;
use slope_runner::eval::EvalConfig;

use crate::demo::{DEMO_UNITS, Lcg, SCENARIOS, Scenario, accepted_prefix, queue_key};
use crate::{Annotations, CompletionRequest, Loops, Result, Runner, ServiceError};

/// How many simulated clinicians write; each works in one of the demo's units.
const CLINICIANS: usize = 48;
/// Characters asked for per suggestion.
const SUGGESTION_CHARS: usize = 24;
/// Rows of each loop's held-out set.
const HELD_OUT_ROWS: usize = 48;
/// The held-out set's seed; the seeded history uses other seeds, so no held-out text was trained on by
/// construction (the scenario's texts repeat, as clinicians' phrases do).
const HELD_OUT_SEED: u64 = 4_242;

/// The simulator's settings (`simulator_*` in the server's configuration).
#[derive(Clone, Debug)]
pub struct SimulatorSettings {
    /// Suggestions the simulated clinicians ask for per minute, over all loops.
    pub suggestions_per_minute: f64,
    /// Labels the simulated expert annotators give per minute, over all queues.
    pub annotations_per_minute: f64,
    /// The largest share of elapsed time that the simulator's jobs may take, in (0, 1].
    pub duty: f64,
    /// New events a loop must have received since its last dataset before the next iteration.
    pub min_new_events: i64,
    /// Outcomes each arm of an experiment collects before the gate decides.
    pub arm_outcomes: u64,
    /// The longest an experiment runs, however few outcomes it has.
    pub experiment_limit: Duration,
    /// Optimizer steps of each fine-tuning job.
    pub train_steps: usize,
    /// Sequences per step of each fine-tuning job.
    pub batch_size: usize,
    /// Job slots this server runs; with none, jobs would wait forever, so the autopilot says so and stops.
    pub workers: usize,
    /// The registered model a loop's first champion is.
    pub base_model: String,
    /// How often the autopilot looks again when there is nothing to do.
    pub poll: Duration,
    /// The longest the autopilot waits for one of its jobs before it cancels it.
    pub job_limit: Duration,
}

impl Default for SimulatorSettings {
    fn default() -> Self {
        SimulatorSettings {
            suggestions_per_minute: 30.0,
            annotations_per_minute: 20.0,
            duty: 0.25,
            min_new_events: 100,
            arm_outcomes: 30,
            experiment_limit: Duration::from_secs(600),
            train_steps: 60,
            batch_size: 8,
            workers: 1,
            base_model: "base".into(),
            poll: Duration::from_secs(5),
            job_limit: Duration::from_secs(1800),
        }
    }
}

/// How long to wait after a job that took `job` so that jobs take at most `duty` of the elapsed time:
/// `job / duty` in all, of which the job had `job`.
pub fn duty_wait(job: Duration, duty: f64) -> Duration {
    let duty = if duty.is_finite() { duty.clamp(0.01, 1.0) } else { 1.0 };
    job.mul_f64((1.0 - duty) / duty)
}

/// The simulator's published state: which organisation it runs in and its status. The [`Simulator`]
/// handle holds it, and the services carry the handle, so REST handlers and server functions can show it.
#[derive(Clone, Debug, Default)]
struct SimulatorBoard(Arc<Mutex<Option<(OrgId, SimulatorStatus)>>>);

impl SimulatorBoard {
    /// The status as `org` may see it: a simulator running in another organisation is not shown.
    pub(crate) fn status(&self, org: OrgId) -> SimulatorStatus {
        match &*self.0.lock().unwrap_or_else(|e| e.into_inner()) {
            Some((o, status)) if *o == org => status.clone(),
            _ => SimulatorStatus::default(),
        }
    }

    fn set(&self, org: OrgId, status: SimulatorStatus) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some((org, status));
    }

    fn update(&self, loop_key: &str, change: impl FnOnce(&mut SimulatedLoop)) {
        if let Some((_, status)) = &mut *self.0.lock().unwrap_or_else(|e| e.into_inner())
            && let Some(l) = status.loops.iter_mut().find(|l| l.loop_key == loop_key)
        {
            change(l);
        }
    }

    /// Records what the autopilot did (and logs it), with its new phase.
    fn act(&self, loop_key: &str, phase: &str, action: String) {
        tracing::info!(loop_key, phase, "simulator: {action}");
        self.update(loop_key, |l| {
            l.phase = phase.into();
            l.last_action = action;
            l.last_action_at = Some(Utc::now());
        });
    }
}

/// Outcomes reported per variant (experiment arm), counted by the traffic for the autopilot.
type ArmCounts = Arc<Mutex<HashMap<String, u64>>>;

/// The demo's traffic simulator and loop autopilot, as a handle: cheap to clone, it reads the status
/// of the simulator this process runs (if it runs one) and starts it.
#[derive(Clone, Debug, Default)]
pub struct Simulator {
    board: SimulatorBoard,
}

impl Simulator {
    pub fn new() -> Simulator {
        Simulator::default()
    }

    /// What the demo's traffic simulator is doing (`{"running": false}` where none runs, or where it
    /// runs in another organisation).
    pub fn status(&self, actor: &Actor) -> Result<SimulatorStatus> {
        let org = actor.authorize(Action::Read)?;
        Ok(self.board.status(org))
    }

    /// Starts traffic, the experts and the autopilot for the demo's loops in `org`; they run until the
    /// process ends.
    pub fn start(
        &self,
        runner: Runner,
        loops: Loops,
        annotations: Annotations,
        org: OrgId,
        settings: SimulatorSettings,
    ) {
        let board = self.board.clone();
        board.set(
            org,
            SimulatorStatus {
                running: true,
                suggestions_per_minute: Some(settings.suggestions_per_minute),
                duty: Some(settings.duty),
                loops: SCENARIOS
                    .iter()
                    .map(|s| SimulatedLoop {
                        loop_key: s.loop_key.into(),
                        scenario: s.name.into(),
                        phase: "waiting".into(),
                        last_action: "started".into(),
                        ..Default::default()
                    })
                    .collect(),
            },
        );
        tracing::info!(
            %org,
            suggestions_per_minute = settings.suggestions_per_minute,
            duty = settings.duty,
            "simulator: simulated traffic and loop autopilot started (demo mode)"
        );
        let arms = ArmCounts::default();
        let actor = Actor::system(org, "simulator");
        tokio::spawn(traffic(runner.clone(), actor.clone(), board.clone(), arms.clone(), settings.clone()));
        tokio::spawn(experts(annotations.clone(), org, board.clone(), settings.clone()));
        tokio::spawn(crate::demo::carry_on_purchases(loops.clone(), actor.clone()));
        tokio::spawn(autopilot(Pilot { runner, loops, annotations, actor, board, arms, settings }));
    }
}

// ---- traffic -------------------------------------------------------------------------------------------

async fn traffic(runner: Runner, actor: Actor, board: SimulatorBoard, arms: ArmCounts, settings: SimulatorSettings) {
    let rate = if settings.suggestions_per_minute.is_finite() { settings.suggestions_per_minute } else { 0.0 };
    if rate <= 0.0 {
        tracing::info!("simulator: no simulated traffic (0 suggestions per minute)");
        return;
    }
    let mut tick = tokio::time::interval(Duration::from_secs_f64((60.0 / rate).clamp(0.01, 3600.0)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut rng = Lcg(Utc::now().timestamp_nanos_opt().unwrap_or_default() as u64);
    let mut turn = 0usize;
    // Errors other than "no champion yet" are logged once per loop until serving works again, so that a
    // lasting failure does not fill the log.
    let mut failing: HashMap<&str, bool> = HashMap::new();
    loop {
        tick.tick().await;
        let scenario = SCENARIOS[turn % SCENARIOS.len()];
        turn += 1;
        let clinician = rng.below(CLINICIANS);
        let moment = scenario.moment(&mut rng);
        let request = CompletionRequest {
            user_id: format!("sim-clinician-{clinician}"),
            context: moment.context.clone(),
            max_chars: Some(SUGGESTION_CHARS),
            unit: Some(DEMO_UNITS[clinician % DEMO_UNITS.len()].into()),
        };
        let served = match runner.complete(&actor, scenario.loop_key, &request).await {
            Ok(served) => served,
            // Serving needs a champion; until the autopilot has promoted one, the clinicians wait.
            Err(ServiceError::Conflict(_)) => continue,
            Err(e) => {
                if !failing.insert(scenario.loop_key, true).unwrap_or(false) {
                    tracing::warn!(loop_key = scenario.loop_key, error = %e, "simulator: a simulated suggestion failed");
                }
                continue;
            }
        };
        failing.insert(scenario.loop_key, false);
        let accepted = accepted_prefix(&served.suggestion, moment.intended);
        let reported = runner
            .record_outcome(&actor, scenario.loop_key, &served.event_id, accepted as i64, Some(moment.intended))
            .await;
        if let Err(e) = reported {
            tracing::warn!(loop_key = scenario.loop_key, error = %e, "simulator: reporting a simulated outcome failed");
            continue;
        }
        *arms.lock().unwrap_or_else(|e| e.into_inner()).entry(served.variant.clone()).or_default() += 1;
        let suggested = served.suggestion.chars().count() as u64;
        board.update(scenario.loop_key, |l| {
            l.suggestions_served += 1;
            l.chars_suggested += suggested;
            l.chars_accepted += accepted as u64;
        });
    }
}

// ---- experts -------------------------------------------------------------------------------------------

/// The simulated expert annotators and how often each slips (writes another case's text).
const EXPERTS: [(&str, f64); 3] = [("sim-expert-1", 0.03), ("sim-expert-2", 0.06), ("sim-expert-3", 0.12)];

async fn experts(annotations: Annotations, org: OrgId, board: SimulatorBoard, settings: SimulatorSettings) {
    let rate = if settings.annotations_per_minute.is_finite() { settings.annotations_per_minute } else { 0.0 };
    if rate <= 0.0 {
        tracing::info!("simulator: no simulated annotators (0 annotations per minute)");
        return;
    }
    let mut tick = tokio::time::interval(Duration::from_secs_f64((60.0 / rate).clamp(0.01, 3600.0)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut rng = Lcg(Utc::now().timestamp_nanos_opt().unwrap_or_default() as u64 ^ 0x5eed);
    let mut turn = 0usize;
    let mut failing = false;
    loop {
        tick.tick().await;
        let (name, slips) = EXPERTS[turn % EXPERTS.len()];
        let scenario = SCENARIOS[(turn / EXPERTS.len()) % SCENARIOS.len()];
        turn += 1;
        let actor = Actor::system(org, name);
        let key = queue_key(scenario);
        let answered = async {
            let Some(item) = annotations.next_item(&actor, &key).await? else { return Ok(false) };
            let input = expert_labels(scenario, &item, slips, &mut rng);
            annotations.submit(&actor, &key, item.item_id, &input).await.map(|_| true)
        }
        .await;
        match answered {
            Ok(true) => {
                failing = false;
                board.update(scenario.loop_key, |l| l.annotations += 1);
            }
            // The queue has nothing for this expert now; the autopilot samples new traffic into it.
            Ok(false) => {}
            Err(e) => {
                if !failing {
                    tracing::warn!(queue = key, error = %e, "simulator: a simulated annotation failed");
                }
                failing = true;
            }
        }
    }
}

/// A simulated expert's labels for an item: the text that belongs to the case in its context (with
/// probability `slips`, another case's text instead), a rating of how much of the suggestion was right
/// (now and then off by one), the tag `wrong-plan` when the suggestion names another plan, and rarely a
/// skip.
fn expert_labels(scenario: &Scenario, item: &WorkItem, slips: f64, rng: &mut Lcg) -> AnnotationInput {
    let Some(meant) = scenario.text_for(&item.context) else {
        return AnnotationInput {
            outcome: "flag".into(),
            note: Some("the context names no case I know".into()),
            ..Default::default()
        };
    };
    if rng.next() < 0.01 {
        return AnnotationInput { outcome: "skip".into(), ..Default::default() };
    }
    let texts = scenario.texts();
    let correction = if rng.next() < slips { texts[rng.below(texts.len())] } else { meant };
    let suggestion = item.suggestion.as_deref().unwrap_or_default();
    let kept = accepted_prefix(suggestion, meant) as f64 / meant.chars().count().max(1) as f64;
    let mut rating = 1 + (kept * 4.0).round() as i64;
    if rng.next() < slips {
        rating = (rating + if rng.next() < 0.5 { -1 } else { 1 }).clamp(1, 5);
    }
    let wrong_plan = !suggestion.is_empty() && !meant.starts_with(suggestion) && suggestion != meant;
    let tags =
        if scenario.loop_key == crate::demo::DEMO_LOOP && wrong_plan { vec!["wrong-plan".to_owned()] } else { vec![] };
    AnnotationInput { correction: Some(correction.to_owned()), rating: Some(rating), tags, ..Default::default() }
}

// ---- autopilot -----------------------------------------------------------------------------------------

struct Pilot {
    runner: Runner,
    loops: Loops,
    annotations: Annotations,
    actor: Actor,
    board: SimulatorBoard,
    arms: ArmCounts,
    settings: SimulatorSettings,
}

/// What the autopilot knows about one loop between rounds.
struct LoopState {
    scenario: &'static Scenario,
    held_out: Option<Dataset>,
    /// The loop's event count when its datasets were last built.
    events_at_build: Option<i64>,
}

/// The loops are turned one after the other, in one task: one job at a time keeps the CPU use modest,
/// and the loops share the base model, whose one eval must be the one the gate compares with.
async fn autopilot(pilot: Pilot) {
    let mut states: Vec<LoopState> =
        SCENARIOS.iter().map(|s| LoopState { scenario: s, held_out: None, events_at_build: None }).collect();
    if pilot.settings.workers == 0 {
        let why = "no job workers run in this server (workers = 0), so the simulator trains nothing; traffic goes on";
        tracing::warn!("simulator: {why}");
        for s in &states {
            pilot.board.act(s.scenario.loop_key, "stalled", why.into());
        }
        return;
    }
    for s in &states {
        if let Err(e) = pilot.stop_leftover_experiments(s.scenario.loop_key).await {
            tracing::warn!(loop_key = s.scenario.loop_key, error = %e, "simulator: stopping earlier experiments failed");
        }
    }
    loop {
        let mut worked = false;
        for state in &mut states {
            let loop_key = state.scenario.loop_key;
            match pilot.turn(state).await {
                Ok(did) => worked |= did,
                Err(e) => {
                    pilot.board.act(loop_key, "stalled", format!("the last step failed: {e}"));
                    tracing::warn!(loop_key, error = %e, "simulator: a step failed; it is tried again");
                }
            }
        }
        if !worked {
            tokio::time::sleep(pilot.settings.poll).await;
        }
    }
}

impl Pilot {
    /// An experiment of an earlier run of the simulator that was never stopped (the server stopped
    /// first) would keep the loop's challenger fixed; it is stopped before anything else.
    async fn stop_leftover_experiments(&self, loop_key: &str) -> Result<()> {
        let prefix = format!("{loop_key}-sim-");
        for e in self.loops.list_experiments(&self.actor).await? {
            if e.loop_key == loop_key && e.key.starts_with(&prefix) && e.stopped_at.is_none() {
                match self.loops.stop_experiment(&self.actor, &e.key).await {
                    Ok(_) | Err(ServiceError::Conflict(_)) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(())
    }

    /// One round for one loop; whether it did anything.
    async fn turn(&self, state: &mut LoopState) -> Result<bool> {
        let scenario = state.scenario;
        let loop_key = scenario.loop_key;
        let held_out = match &state.held_out {
            Some(h) => h.clone(),
            None => {
                let h = self.held_out(scenario).await?;
                state.held_out = Some(h.clone());
                h
            }
        };
        let champion = self
            .runner
            .aliases(&self.actor, Some(loop_key))
            .await?
            .into_iter()
            .find(|a| a.alias == AliasKind::Champion);
        let Some(champion) = champion else { return self.bootstrap(loop_key, &held_out).await };

        // Enough new events since the last build?
        let events = self
            .loops
            .list_loops(&self.actor)
            .await?
            .into_iter()
            .find(|l| l.loop_key == loop_key)
            .map_or(0, |l| l.events);
        if let Some(before) = state.events_at_build
            && events - before < self.settings.min_new_events
        {
            self.board.update(loop_key, |l| l.phase = "collecting".into());
            return Ok(false);
        }
        // New traffic enters the loop's annotation queue, and the datasets take the annotations so far.
        match self.annotations.sample(&self.actor, &queue_key(scenario)).await {
            Ok(_) | Err(ServiceError::NotFound(_)) => {}
            Err(e) => tracing::warn!(loop_key, error = %e, "simulator: sampling into the annotation queue failed"),
        }
        let built = self.runner.build_datasets(&self.actor, loop_key, slope_domain::DatasetBasis::Both).await;
        state.events_at_build = Some(events);
        let sft = match built {
            Ok(b) => b.sft,
            // No event with a context and a final text yet.
            Err(ServiceError::Conflict(_)) => None,
            Err(e) => return Err(e),
        };
        let Some(sft) = sft else { return Ok(false) };
        let models = self.runner.models(&self.actor, Some(loop_key)).await?;
        if models.iter().any(|m| m.dataset_digest.as_deref() == Some(sft.digest.as_str())) {
            // A challenger was trained on exactly this data already.
            return Ok(false);
        }
        let n = models.iter().filter(|m| m.kind == slope_domain::ModelKind::Sft).count() + 1;
        self.iterate(loop_key, n, champion.model_id, &sft, &held_out).await?;
        Ok(true)
    }

    /// The loop's fixed held-out set: simulated clinician text from the scenario with a seed of its own.
    async fn held_out(&self, scenario: &Scenario) -> Result<Dataset> {
        let mut body = String::new();
        for text in scenario.held_out(HELD_OUT_SEED, HELD_OUT_ROWS) {
            body.push_str(&json!({ "text": text }).to_string());
            body.push('\n');
        }
        let source = DatasetSource::Simulated {
            simulated: true,
            what: format!(
                "simulated clinician text of the {} scenario (seed {HELD_OUT_SEED}), for evals",
                scenario.name
            ),
            for_loop: scenario.loop_key.into(),
        };
        let name = format!("{}-held-out", scenario.loop_key);
        let (record, _) = self.runner.add_dataset(&self.actor, &name, body.as_bytes(), source).await?;
        Ok(record)
    }

    fn eval_request(&self, model_id: i64, held_out: &Dataset) -> JobRequest {
        JobRequest {
            kind: "eval".into(),
            model_id: Some(model_id),
            held_out_id: Some(held_out.id),
            eval: EvalConfig::default(),
            ..Default::default()
        }
    }

    /// A loop without a champion gets the base model, evaluated on the loop's held-out set.
    async fn bootstrap(&self, loop_key: &str, held_out: &Dataset) -> Result<bool> {
        let base =
            self.runner.models(&self.actor, None).await?.into_iter().find(|m| m.name == self.settings.base_model);
        let Some(base) = base else {
            self.board.update(loop_key, |l| {
                l.phase = "waiting".into();
                l.last_action = format!("waiting for a model named {:?} to start from", self.settings.base_model);
            });
            return Ok(false);
        };
        if base.held_out_digest() != Some(held_out.digest.as_str()) {
            self.board.act(
                loop_key,
                "bootstrapping",
                format!("bootstrap of {loop_key}: evaluating {} on {}", base.name, held_out.name),
            );
            let job = self.run_job(loop_key, &self.eval_request(base.id, held_out), "eval").await?;
            if job.status != JobStatus::Succeeded {
                // Not counted as work: the autopilot then waits a poll interval (beyond the job's duty
                // rest) before it tries again, instead of queueing a failing eval back to back.
                self.board.act(
                    loop_key,
                    "stalled",
                    format!("bootstrap of {loop_key}: the eval of {} {}", base.name, job.status),
                );
                return Ok(false);
            }
        }
        let outcome = self.runner.promote(&self.actor, loop_key, base.id).await?;
        let verdict = if outcome.accepted { "promoted" } else { "refused" };
        self.board.act(
            loop_key,
            if outcome.accepted { "collecting" } else { "stalled" },
            format!("bootstrap of {loop_key}: {} {verdict}: {}", base.name, outcome.reason),
        );
        // A refusal did no work worth repeating at once: without the poll's wait the autopilot would ask
        // the gate again and again.
        Ok(outcome.accepted)
    }

    /// Queues a job, waits for it to end, then rests so that jobs take at most the duty share of time.
    async fn run_job(&self, loop_key: &str, request: &JobRequest, what: &str) -> Result<Job> {
        let queued = self.runner.submit(&self.actor, request).await?;
        tracing::info!(loop_key, job = queued.id, "simulator: {what} job {} queued", queued.id);
        let started = std::time::Instant::now();
        let job = loop {
            let job = self.runner.job(&self.actor, queued.id).await?;
            if job.status.is_final() {
                break job;
            }
            // A job that is never claimed (the worker slots are busy with someone's long job) or never
            // ends must not wedge every loop the autopilot turns: it is cancelled after a generous limit.
            if started.elapsed() >= self.settings.job_limit {
                tracing::warn!(loop_key, job = job.id, "simulator: {what} job {} took too long; cancelling it", job.id);
                match self.runner.cancel(&self.actor, job.id).await {
                    Ok(_) | Err(ServiceError::Conflict(_)) => {}
                    Err(e) => return Err(e),
                }
                self.board.act(
                    loop_key,
                    "stalled",
                    format!(
                        "{what} job {} cancelled: it did not end within {} s",
                        job.id,
                        self.settings.job_limit.as_secs()
                    ),
                );
                return Err(ServiceError::Conflict(format!("{what} job {} did not end in time", job.id)));
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        };
        let wall = match (job.started_at, job.finished_at) {
            (Some(a), Some(b)) => (b - a).to_std().unwrap_or_default(),
            _ => started.elapsed(),
        };
        let rest = duty_wait(wall, self.settings.duty);
        let ended = format!("{what} job {} {} in {:.1} s", job.id, job.status, wall.as_secs_f64());
        if job.status == JobStatus::Succeeded {
            self.board.act(
                loop_key,
                "resting",
                format!("{ended}; resting {:.1} s (duty {})", rest.as_secs_f64(), self.settings.duty),
            );
        } else {
            let why = job.error.clone().unwrap_or_default();
            self.board.act(loop_key, "resting", format!("{ended}: {why}"));
        }
        tokio::time::sleep(rest).await;
        Ok(job)
    }

    /// One iteration: fine-tune a challenger from the champion, evaluate both alike, A/B test them, put
    /// the challenger to the gate, stop the experiment.
    async fn iterate(
        &self,
        loop_key: &str,
        n: usize,
        champion_id: i64,
        sft: &Dataset,
        held_out: &Dataset,
    ) -> Result<()> {
        let it = format!("iteration {n} of {loop_key}");
        self.board.act(
            loop_key,
            "training",
            format!("{it}: fine-tuning model {champion_id} on {} ({} rows)", sft.name, sft.rows),
        );
        let steps = self.settings.train_steps.max(1);
        let request = JobRequest {
            kind: "sft".into(),
            loop_key: Some(loop_key.into()),
            model_id: Some(champion_id),
            dataset_id: Some(sft.id),
            held_out_id: Some(held_out.id),
            train: TrainConfig {
                steps,
                batch_size: self.settings.batch_size.max(1),
                warmup_steps: (steps / 10).min(20),
                checkpoint_every: 0,
                seed: n as u64,
                ..TrainConfig::default()
            },
            eval: EvalConfig::default(),
            ..Default::default()
        };
        let job = self.run_job(loop_key, &request, &format!("{it}: sft")).await?;
        let Some(challenger_id) = job.result_model() else {
            return Ok(());
        };

        // The gate compares rewards only of models evaluated alike, and resamples both evals' per-item
        // results; the champion's eval may be of other data (the base model is shared by the loops),
        // missing, or from before evals kept their items.
        let challenger = self.runner.model(&self.actor, challenger_id).await?.model;
        let champion = self.runner.model(&self.actor, champion_id).await?.model;
        if !challenger.evaluated_like(&champion) || !self.runner.has_eval_items(&self.actor, champion_id).await? {
            self.board.act(
                loop_key,
                "evaluating",
                format!("{it}: evaluating the champion {} on {}", champion.name, held_out.name),
            );
            let eval =
                self.run_job(loop_key, &self.eval_request(champion_id, held_out), &format!("{it}: eval")).await?;
            if eval.status != JobStatus::Succeeded {
                // Without it the gate could only refuse ("evaluated on different held-out data"), so no
                // experiment is run for nothing; the next iteration tries again.
                return Ok(());
            }
        }
        let aliases = self.runner.aliases(&self.actor, Some(loop_key)).await?;
        if !aliases.iter().any(|a| a.alias == AliasKind::Challenger && a.model_id == challenger_id) {
            self.runner.set_challenger(&self.actor, loop_key, challenger_id).await?;
        }

        // The A/B test. Arm names are unique per experiment, so analyses of successive experiments never
        // mix their events.
        let today = Utc::now().date_naive();
        // Seconds and the process id: two iterations of one server never share a second, and two
        // servers (which should not both simulate, see the README) never share a key.
        let key = format!("{loop_key}-sim-{}-{}", Utc::now().format("%Y%m%d-%H%M%S"), std::process::id());
        let (control, treatment) = (format!("{key}-champion"), format!("{key}-challenger"));
        let input = ExperimentInput {
            key: key.clone(),
            name: format!("Simulated A/B test, {it}"),
            loop_key: loop_key.into(),
            control: control.clone(),
            treatment: treatment.clone(),
            starts_on: today.to_string(),
            ends_on: (today + chrono::Duration::days(7)).to_string(),
            expected_share: Some(0.5),
            control_model: Some(champion_id),
            treatment_model: Some(challenger_id),
        };
        self.loops.create_experiment(&self.actor, &input).await?;
        self.board.act(
            loop_key,
            "experimenting",
            format!(
                "{it}: experiment {key} started ({} vs {}), waiting for {} outcomes per arm",
                champion.name, challenger.name, self.settings.arm_outcomes
            ),
        );
        let started = std::time::Instant::now();
        loop {
            let (a, b) = {
                let arms = self.arms.lock().unwrap_or_else(|e| e.into_inner());
                (arms.get(&control).copied().unwrap_or(0), arms.get(&treatment).copied().unwrap_or(0))
            };
            if a.min(b) >= self.settings.arm_outcomes || started.elapsed() >= self.settings.experiment_limit {
                tracing::info!(
                    loop_key,
                    control = a,
                    treatment = b,
                    "simulator: {it}: experiment {key} has its outcomes"
                );
                break;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        // The outcomes become events now rather than at the next upkeep, so the gate's analysis sees them.
        let flushed = self.runner.flush_impressions(Utc::now()).await;
        self.board.update(loop_key, |l| l.phase = "promoting".into());
        let outcome = match flushed {
            Ok(_) => self.runner.promote(&self.actor, loop_key, challenger_id).await,
            Err(e) => Err(e),
        };
        // Whatever happened, the experiment is over: a running one would keep splitting the traffic.
        match self.loops.stop_experiment(&self.actor, &key).await {
            Ok(_) | Err(ServiceError::Conflict(_)) => {}
            Err(e) => return Err(e),
        }
        let outcome = outcome?;
        let verdict = if outcome.accepted { "promoted" } else { "refused" };
        self.board.update(loop_key, |l| {
            l.iterations += 1;
            l.promoted += outcome.accepted as u64;
        });
        self.board.act(loop_key, "collecting", format!("{it}: {} {verdict}: {}", challenger.name, outcome.reason));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::demo::{DISCHARGE, NOTES};

    #[test]
    fn the_duty_cycle_caps_the_share_of_time_in_jobs() {
        let job = Duration::from_secs(10);
        assert_eq!(duty_wait(job, 0.25), Duration::from_secs(30), "10 s of 40 s");
        assert_eq!(duty_wait(job, 1.0), Duration::ZERO);
        assert_eq!(duty_wait(job, 0.5), job);
        // Nonsense settings neither stop the simulator for ever nor make it spin.
        assert_eq!(duty_wait(job, 0.0), Duration::from_secs(990));
        assert_eq!(duty_wait(job, f64::NAN), Duration::ZERO);
        assert_eq!(duty_wait(job, 7.0), Duration::ZERO);
    }

    #[test]
    fn clinicians_keep_the_part_of_a_suggestion_that_matches() {
        assert_eq!(accepted_prefix("ibuprofen 400 mg", "ibuprofen 400 mg as needed."), 16);
        assert_eq!(accepted_prefix("ibuprofen 200", "ibuprofen 400 mg"), 10);
        assert_eq!(accepted_prefix("rest", "ice, rest"), 0);
        assert_eq!(accepted_prefix("", "anything"), 0);
        assert_eq!(accepted_prefix("ice, rest and more", "ice, rest"), 9, "never more than was meant");
        assert_eq!(accepted_prefix("é-x", "é-y"), 2, "counted in characters");
    }

    #[test]
    fn scenarios_are_deterministic_and_write_their_own_domain() {
        assert_eq!(NOTES.held_out(7, 20), NOTES.held_out(7, 20));
        assert_ne!(NOTES.held_out(7, 20), NOTES.held_out(8, 20));
        for text in NOTES.held_out(7, 20) {
            assert!(text.starts_with("Pt reports ") && text.contains(". Plan: "), "{text}");
        }
        for text in DISCHARGE.held_out(7, 20) {
            assert!(text.starts_with("Discharge summary. Diagnosis: ") && text.contains("Follow-up: "), "{text}");
        }
        // Mostly, what is written follows from the case, so a model can learn it.
        let mut rng = Lcg(1);
        let moments: Vec<_> = (0..1000).map(|_| NOTES.moment(&mut rng)).collect();
        let fitting = moments
            .iter()
            .filter(|m| {
                let case = NOTES.cases.iter().position(|c| m.context.contains(&format!("reports {c} for"))).unwrap();
                m.intended == NOTES.texts[case]
            })
            .count();
        assert!((820..=920).contains(&fitting), "{fitting}");
        // Every text fits in a suggestion's room with its context in the model's window.
        for s in SCENARIOS {
            for t in s.texts {
                assert!(t.len() <= crate::MAX_SUGGESTION_CHARS, "{t}");
            }
        }
    }
}
