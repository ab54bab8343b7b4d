//! The demo organisation that `slope serve --demo` seeds into an empty database. It goes through the
//! same service calls as a user would, so every demo entity passes the same rules. All figures are
//! invented and the organisation is named as a demo wherever it shows.

use chrono::{Datelike, Duration, NaiveDate};
use slope_domain::*;

use crate::{Annotations, BatchInput, Loops, Planning, Result};

mod customers;
mod monitors;
mod people;
pub use customers::*;
pub use monitors::*;
pub use people::*;

/// The demo organisation's slug.
pub const DEMO_ORG: &str = "demo";

fn kr(title: &str, kind: &str, a: Option<f64>, b: Option<f64>, unit: &str) -> KeyResultInput {
    let mut input = KeyResultInput {
        title: title.into(),
        kind: kind.into(),
        unit: unit.into(),
        weight: Some(1.0),
        confidence: Some(0.6),
        ..Default::default()
    };
    match kind {
        "increase-to" | "decrease-to" => (input.start, input.target) = (a, b),
        "keep-above" | "keep-below" => input.threshold = a,
        _ => {}
    }
    input
}

/// The demo's slope bet that its kill criteria end (see [`seed`]).
const KILLED_BET: &str = "Drafts from the visit transcript";

/// A demo squad goal: squad index, key result index, title, start week, length in weeks, the belief and
/// kill criteria of a slope bet, planned person-weeks and status.
type GoalSeed = (usize, usize, &'static str, i64, i64, Option<(&'static str, &'static str)>, f64, &'static str);

/// Seeds the demo plan when the organisation has no season yet; returns whether it seeded. The season
/// starts on the first day of `today`'s quarter and runs six months, so the demo is always current.
pub async fn seed(planning: &Planning, actor: &Actor, today: NaiveDate) -> Result<bool> {
    if !planning.store().list_seasons(actor.org).await?.is_empty() {
        return Ok(false);
    }
    let start = Quarter::containing(today).range().start;
    let end = Quarter::containing(start + Duration::days(100)).range().end;
    let q1 = Quarter::containing(start).to_string();
    let q2 = Quarter::containing(end).to_string();
    let season = planning
        .create_season(
            actor,
            &SeasonInput {
                name: "The advent of agents".into(),
                thesis: "Clinical documentation is moving from typing with autocomplete to supervising agents that draft whole notes. \
                         Teams that learn fastest from real use will own the workflow."
                    .into(),
                problems: vec![
                    "Clinicians spend two hours a day on notes after their shift".into(),
                    "Suggestions arrive too slowly to keep up with dictation".into(),
                    "Buyers cannot see the return on AI features".into(),
                ],
                winning: "Half of all notes are drafted by an agent and accepted with light edits, and AI features pay for themselves in retention."
                    .into(),
                starts_on: start.to_string(),
                ends_on: end.to_string(),
                slope_target: Some(0.2),
            },
        )
        .await?;
    let season = planning
        .transition_season(
            actor,
            season.id,
            season.version,
            &TransitionInput { to: "active".into(), retrospective: String::new() },
        )
        .await?;

    let objectives = [
        (
            &q1,
            "committed",
            "Clinicians trust AI drafts",
            "Dr. Amara Osei",
            vec![
                kr("Character acceptance rate", "increase-to", Some(0.22), Some(0.35), "of characters"),
                kr("Median suggestion latency", "decrease-to", Some(900.0), Some(300.0), "ms"),
            ],
        ),
        (
            &q1,
            "aspirational",
            "Agents finish routine notes end to end",
            "Lena Park",
            vec![
                kr("Notes completed by an agent", "increase-to", Some(0.0), Some(40.0), "%"),
                kr("Agent eval score", "keep-above", Some(0.8), None, ""),
            ],
        ),
        (
            &q2,
            "committed",
            "AI features pay for themselves",
            "Tom Ibarra",
            vec![
                kr("Customer LTV", "increase-to", Some(1200.0), Some(1800.0), "USD"),
                kr("90-day retention", "keep-above", Some(85.0), None, "%"),
                kr("Cost per 1k suggestions", "keep-below", Some(0.5), None, "USD"),
            ],
        ),
        (
            &q2,
            "aspirational",
            "A fine-tune loop that turns weekly",
            "Priya Nair",
            vec![
                kr("Fine-tune iterations per week", "increase-to", Some(0.0), Some(4.0), ""),
                kr("Eval harness live", "milestone", None, None, ""),
            ],
        ),
    ];
    let mut krs = vec![];
    for (quarter, commitment, title, owner, key_results) in objectives {
        let objective = planning
            .create_objective(
                actor,
                season.id,
                &ObjectiveInput {
                    quarter: quarter.clone(),
                    title: title.into(),
                    description: String::new(),
                    commitment: commitment.into(),
                    owner: owner.into(),
                    weight: Some(1.0),
                },
            )
            .await?;
        for input in key_results {
            krs.push(planning.create_key_result(actor, objective.id, &input).await?);
        }
    }

    let squads = [
        ("Drafts", "Clinical", 12.0),
        ("Agents", "Clinical", 10.0),
        ("Latency", "Platform", 8.0),
        ("Loop", "Platform", 6.0),
        ("Growth", "Revenue", 9.0),
    ];
    let mut squad_ids = vec![];
    for (name, unit, capacity) in squads {
        squad_ids.push(
            planning
                .create_squad(actor, &SquadInput { name: name.into(), unit: unit.into(), capacity: Some(capacity) })
                .await?
                .id,
        );
    }

    // (squad, key result, title, start week, weeks, slope bet, capacity, status)
    let goals: [GoalSeed; 15] = [
        (0, 0, "Inline completions in the note editor", 0, 4, None, 10.0, "done"),
        (0, 0, "Learn from accepted edits", 5, 5, None, 9.0, "active"),
        (
            0,
            0,
            "Drafts from the visit transcript",
            5,
            5,
            Some((
                "Clinicians want completions, not whole drafts",
                "Acceptance of full drafts below 15 % after three weeks",
            )),
            3.0,
            "active",
        ),
        (1, 2, "Agent drafts discharge summaries", 1, 6, None, 8.0, "done"),
        (1, 3, "Eval set from 500 reviewed notes", 8, 4, None, 6.0, "active"),
        (
            1,
            2,
            "Agent asks the clinician instead of guessing",
            8,
            6,
            Some(("Agents must never interrupt the clinician", "Clinicians dismiss more than half of the questions")),
            9.0,
            "planned",
        ),
        (2, 1, "Speculative decoding for suggestions", 0, 6, None, 7.0, "done"),
        (2, 1, "Edge cache of the champion model", 7, 5, None, 6.0, "active"),
        (2, 6, "Quantise the serving model", 13, 5, None, 5.0, "planned"),
        (3, 7, "Nightly fine-tune job", 2, 5, None, 5.0, "done"),
        (3, 8, "Eval harness in CI", 8, 4, None, 4.0, "active"),
        (
            3,
            7,
            "Train on rejected suggestions only",
            13,
            4,
            Some(("More data beats better data", "Replay acceptance does not beat the champion within two runs")),
            7.0,
            "planned",
        ),
        (4, 4, "Usage-based pricing experiment", 4, 6, None, 7.0, "done"),
        (4, 5, "Retention cohort reports for buyers", 13, 5, None, 6.0, "planned"),
        (4, 4, "ROI calculator in the admin console", 18, 4, None, 5.0, "planned"),
    ];
    let mut first_goal = None;
    for (squad, kr_index, title, week, weeks, slope, capacity, status) in goals {
        let starts = start + Duration::weeks(week);
        // The transcript-drafts bet is judged three weeks in: once the demo is past that, it has been
        // killed by its criteria (and the season dashboard raises a thesis signal for it).
        let killed = slope.is_some() && title == KILLED_BET && today >= starts + Duration::weeks(3);
        let status = if killed { "killed" } else { status };
        let ends = starts + Duration::weeks(weeks);
        let key_result = &krs[kr_index];
        let goal = planning
            .create_goal(
                actor,
                squad_ids[squad],
                &SquadGoalInput {
                    key_result_id: Some(key_result.id.0),
                    title: title.into(),
                    starts_on: starts.to_string(),
                    ends_on: ends.min(end).to_string(),
                    investment: if slope.is_some() { "slope" } else { "snapshot" }.into(),
                    challenges: slope.map(|s| s.0.to_owned()).unwrap_or_default(),
                    kill_criteria: slope.map(|s| s.1.to_owned()).unwrap_or_default(),
                    planned_capacity: Some(capacity),
                    status: status.into(),
                    kind: "milestone".into(),
                    ..Default::default()
                },
            )
            .await?;
        if killed {
            planning
                .check_in_goal(
                    actor,
                    goal.id,
                    &CheckInInput {
                        done: Some(false),
                        note: "Killed: full drafts were accepted 11 % of the time after three weeks (criterion: below 15 %)."
                            .into(),
                        author: "Demo".into(),
                        ..Default::default()
                    },
                )
                .await?;
        }
        if status == "done" {
            planning
                .check_in_goal(
                    actor,
                    goal.id,
                    &CheckInInput { done: Some(true), author: "Demo".into(), ..Default::default() },
                )
                .await?;
        }
        first_goal.get_or_insert(goal.id);
    }

    // One check-in per key result that has data in the demo story so far.
    // The acceptance rate and the eval score are fed by metrics instead (see `seed_loop`).
    let values = [(1, 620.0, 0.6), (2, 12.0, 0.4), (4, 1310.0, 0.5), (5, 87.0, 0.7), (6, 0.58, 0.4), (7, 1.0, 0.5)];
    for (index, value, confidence) in values {
        planning
            .check_in_key_result(
                actor,
                krs[index].id,
                &CheckInInput {
                    value: Some(value),
                    confidence: Some(confidence),
                    note: "Demo check-in".into(),
                    author: "Demo".into(),
                    ..Default::default()
                },
            )
            .await?;
    }
    tracing::info!(season = %season.id, year = today.year(), "seeded the demo organisation");
    Ok(true)
}

// ---- annotation ----------------------------------------------------------------------------------

/// The demo's annotation queue of a scenario's loop.
pub fn queue_key(scenario: &Scenario) -> String {
    format!("{}-review", scenario.loop_key)
}

/// Items of each demo queue whose known answer (the scenario's text for the case) makes them gold.
const GOLD_ITEMS: usize = 8;

/// The demo's annotation queues, one per loop, when missing: the notes loop's asks two annotators per
/// item (so agreement shows) to correct, rate and tag a random 3 % of the interactions; the discharge
/// loop's asks one to correct and rate the interactions with the lowest acceptance. Each gets a small
/// gold set whose answers are the scenario's own text for the case: in the simulation, what a careful
/// clinician means is known.
pub async fn seed_annotation(annotations: &Annotations, actor: &Actor) -> Result<()> {
    let existing = annotations.queues(actor).await?;
    for scenario in SCENARIOS {
        let key = queue_key(scenario);
        if existing.iter().any(|q| q.queue.key == key) {
            continue;
        }
        let notes = scenario.loop_key == DEMO_LOOP;
        let input = QueueInput {
            key: key.clone(),
            name: format!("{} review", scenario.name),
            loop_key: scenario.loop_key.into(),
            sampling: if notes {
                SamplingInput { policy: "random".into(), share: Some(0.03), limit: Some(300), ..Default::default() }
            } else {
                SamplingInput { policy: "lowest-acceptance".into(), count: Some(120), ..Default::default() }
            },
            // Markdown, as an operator would write it: the pages show it formatted.
            guidelines: format!(
                "Rewrite the suggestion into what the clinician should have been offered for this {}: the text \
                 that belongs to the case in the context, whatever the clinician happened to type.\n\n\
                 - **Rate** the suggestion from 1 (useless) to 5 (exactly right).\n{}\
                 - **Flag** an interaction whose context cannot be judged, and say why.",
                if notes { "note" } else { "discharge summary" },
                if notes { "- **Tag** a suggestion that names the wrong plan `wrong-plan`.\n" } else { "" },
            ),
            labels: LabelSchema {
                correction: true,
                rating: true,
                tags: notes,
                tag_set: if notes { vec!["wrong-plan".into(), "incomplete".into()] } else { vec![] },
                ..Default::default()
            },
            annotators_per_item: Some(if notes { 2 } else { 1 }),
            annotator_role: Some(true),
            squads: vec![],
            lease_minutes: Some(10),
        };
        annotations.create_queue(actor, &input).await?;
        for item in annotations.items(actor, &key, None).await?.into_iter().take(GOLD_ITEMS) {
            let Some(text) = scenario.text_for(&item.context) else { continue };
            let rating = if item.suggestion.as_deref() == Some(text) { 5 } else { 1 };
            let answer = AnnotationInput { correction: Some(text.into()), rating: Some(rating), ..Default::default() };
            annotations.set_gold(actor, &key, item.id, Some(&answer)).await?;
        }
    }
    Ok(())
}

/// A small deterministic generator, so the demo is the same on every machine without a dependency.
pub(crate) struct Lcg(pub(crate) u64);

impl Lcg {
    pub(crate) fn next(&mut self) -> f64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }

    /// An index below `n` (which must not be 0).
    pub(crate) fn below(&mut self, n: usize) -> usize {
        (self.next() * n as f64) as usize % n
    }
}

/// The domain of one simulated product loop: what clinicians describe before the cursor and what they
/// then write. The text that follows is usually the one that belongs to the case (85 %), so a model can
/// learn it from the loop's events. The demo's seeded history and the live traffic simulator both write
/// their text with it, so what the loop learns from is what its users go on writing.
pub struct Scenario {
    /// The loop's key.
    pub loop_key: &'static str,
    /// What the loop is, for people.
    pub name: &'static str,
    /// The text before the cursor; `{case}` and `{days}` are filled in.
    template: &'static str,
    pub(crate) cases: [&'static str; 6],
    /// What is written after the cursor, one per case (same index).
    pub(crate) texts: [&'static str; 6],
}

/// One simulated moment of writing: the text before the cursor and what the clinician means to write.
#[derive(Clone, Debug, PartialEq)]
pub struct Moment {
    pub context: String,
    pub intended: &'static str,
    /// Which of the scenario's texts the clinician writes.
    index: usize,
}

/// A moment with what the model suggested there and how much of it was kept (the seeded history).
struct SimulatedNote {
    moment: Moment,
    suggestion: &'static str,
    suggested_chars: u64,
    accepted_chars: u64,
}

/// The characters of `suggestion` that a user who means to write `intended` keeps: the common prefix.
/// Simulated users accept a suggestion as far as it matches what they would have typed.
pub fn accepted_prefix(suggestion: &str, intended: &str) -> usize {
    suggestion.chars().zip(intended.chars()).take_while(|(a, b)| a == b).count()
}

impl Scenario {
    /// A moment drawn from `rng`.
    pub(crate) fn moment(&self, rng: &mut Lcg) -> Moment {
        let case = self.below_cases(rng);
        let days = 1 + (rng.next() * 14.0) as u32;
        let index = if rng.next() < 0.85 { case } else { self.below_cases(rng) };
        let context = self.template.replace("{case}", self.cases[case]).replace("{days}", &days.to_string());
        Moment { context, intended: self.texts[index], index }
    }

    fn below_cases(&self, rng: &mut Lcg) -> usize {
        (rng.next() * self.cases.len() as f64) as usize % self.cases.len()
    }

    /// A moment whose suggestion is taken whole with probability `rate`; otherwise the model suggested
    /// another text and the clinician kept only the part both share.
    fn note(&self, rng: &mut Lcg, rate: f64) -> SimulatedNote {
        let moment = self.moment(rng);
        let n = self.texts.len();
        let suggestion = if rng.next() < rate {
            moment.intended
        } else {
            self.texts[(moment.index + 1 + (rng.next() * (n - 1) as f64) as usize) % n]
        };
        let accepted_chars = accepted_prefix(suggestion, moment.intended) as u64;
        SimulatedNote { suggested_chars: suggestion.chars().count() as u64, accepted_chars, suggestion, moment }
    }

    /// The text that belongs to the case a context names (what a careful clinician means to write there),
    /// if the context is one of this scenario's.
    pub fn text_for(&self, context: &str) -> Option<&'static str> {
        // The longest case that the context names, so that "pain" never shadows "low back pain".
        let mut cases: Vec<(usize, &str)> = self.cases.iter().copied().enumerate().collect();
        cases.sort_by_key(|(_, c)| std::cmp::Reverse(c.len()));
        cases.into_iter().find(|(_, c)| context.contains(c)).map(|(i, _)| self.texts[i])
    }

    /// The scenario's texts, for a simulated annotator's slips.
    pub fn texts(&self) -> &[&'static str] {
        &self.texts
    }

    /// `n` texts (context and what follows) from a generator seeded with `seed`: the held-out set the
    /// simulator evaluates models on, drawn with a seed the seeded history does not use.
    pub fn held_out(&self, seed: u64, n: usize) -> Vec<String> {
        let mut rng = Lcg(seed);
        (0..n)
            .map(|_| {
                let m = self.moment(&mut rng);
                format!("{}{}", m.context, m.intended)
            })
            .collect()
    }
}

/// Clinic notes: the plan follows from the complaint.
pub const NOTES: Scenario = Scenario {
    loop_key: DEMO_LOOP,
    name: "Clinic notes",
    template: "Pt reports {case} for {days} days. Plan: ",
    cases: ["cough", "headache", "low back pain", "sore throat", "fatigue", "knee pain"],
    texts: [
        "rest, fluids and honey; return if fever.",
        "ibuprofen 400 mg as needed.",
        "stretching exercises and physiotherapy referral.",
        "throat swab; review results in two days.",
        "full blood count and thyroid function tests.",
        "ice, rest and follow up in two weeks.",
    ],
};

/// Discharge summaries: the follow-up follows from the diagnosis.
pub const DISCHARGE: Scenario = Scenario {
    loop_key: DISCHARGE_LOOP,
    name: "Discharge summaries",
    // Serving reads the last 64 bytes of the context, so the diagnosis must be near the cursor.
    template: "Discharge summary. Diagnosis: {case}. Follow-up: ",
    cases: [
        "community-acquired pneumonia",
        "heart failure exacerbation",
        "cellulitis of the leg",
        "COPD exacerbation",
        "urinary tract infection",
        "new atrial fibrillation",
    ],
    texts: [
        "GP review in one week; chest x-ray in six weeks.",
        "daily weights; heart failure clinic in two weeks.",
        "finish oral antibiotics; wound check in five days.",
        "inhaler technique review; pulmonary rehab referral.",
        "finish antibiotics; GP review if fever returns.",
        "anticoagulation clinic in one week; ECG at the GP.",
    ],
};

/// The demo's product loops, each with its scenario.
pub const SCENARIOS: [&Scenario; 2] = [&NOTES, &DISCHARGE];

/// The demo loop's metrics and what they feed, by key.
pub const DEMO_LOOP: &str = "notes";
/// The demo's second product loop.
pub const DISCHARGE_LOOP: &str = "discharge";
pub const DISCHARGE_ACCEPTANCE_METRIC: &str = "discharge-acceptance";
pub const DEMO_ACCEPTANCE_METRIC: &str = "notes-acceptance";
pub const DEMO_EVAL_METRIC: &str = "agent-eval";

/// The days of the note-drafting loop's seeded history.
const NOTES_DAYS: i64 = 42;

/// The day the `unit`-th of the [`DEMO_UNITS`] took the note-drafting loop up in its seeded history,
/// whose users join over its days: those of the first third in Clinical, then Platform, then Revenue.
pub(crate) fn notes_uptake(unit: usize, today: NaiveDate) -> NaiveDate {
    let first_day = today - Duration::days(NOTES_DAYS - 1);
    first_day + Duration::days(NOTES_DAYS * unit as i64 / DEMO_UNITS.len() as i64)
}

/// The shape of a loop's seeded history: users who join over `days` days and some stop coming back (so
/// retention has a shape), split between two variants with their base acceptance rates, which creep up
/// over the weeks.
struct History {
    users: u32,
    days: i64,
    variants: [(&'static str, f64); 2],
    id_prefix: &'static str,
}

impl History {
    /// Ingests the history as one batch of the scenario's loop (the same path as a real batch); returns
    /// the number of events.
    async fn ingest(
        &self,
        loops: &Loops,
        actor: &Actor,
        scenario: &Scenario,
        rng: &mut Lcg,
        today: NaiveDate,
    ) -> Result<u64> {
        let mut lines = String::new();
        let first_day = today - Duration::days(self.days - 1);
        let mut n = 0u64;
        for user in 0..self.users {
            let joins = (rng.next() * (self.days - 2) as f64) as i64;
            let stays = 3 + (rng.next() * 30.0) as i64;
            let (variant, base) = self.variants[user as usize % 2];
            // Each user works in one of the demo squads' units, and the units took the loop up in turn
            // (those who joined in the first third of the period are Clinical, then Platform, then
            // Revenue), so the adoption dashboard's trend shows the roll-out.
            let unit = DEMO_UNITS[((joins * 3 / self.days) as usize).min(DEMO_UNITS.len() - 1)];
            for offset in joins..(joins + stays).min(self.days) {
                if rng.next() < 0.6 {
                    continue;
                }
                let day = first_day + Duration::days(offset);
                for _ in 0..(1 + (rng.next() * 5.0) as u32) {
                    let rate = (base + 0.0015 * offset as f64 + (rng.next() - 0.5) * 0.3).clamp(0.0, 1.0);
                    let note = scenario.note(rng, rate);
                    let (suggested, accepted) = (note.suggested_chars, note.accepted_chars);
                    let latency = 900.0 - 8.0 * offset as f64 + (rng.next() - 0.5) * 300.0;
                    let seconds = (rng.next() * 36_000.0) as i64 + 7 * 3600;
                    let ts = day.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc() + Duration::seconds(seconds);
                    n += 1;
                    lines.push_str(
                        &serde_json::json!({
                            "event_id": format!("{}-{n}", self.id_prefix),
                            "ts": ts.to_rfc3339(),
                            "user_id": format!("clinician-{user}"),
                            "variant": variant,
                            "suggested_chars": suggested,
                            "accepted_chars": accepted,
                            "latency_ms": latency.max(80.0).round(),
                            "cost_usd": 0.0004 * suggested as f64,
                            "unit": unit,
                            "context": note.moment.context,
                            "suggestion": note.suggestion,
                            "final_text": note.moment.intended,
                        })
                        .to_string(),
                    );
                    lines.push('\n');
                }
            }
        }
        let key = format!("{}-seed", self.id_prefix);
        loops
            .ingest(
                actor,
                BatchInput {
                    loop_key: scenario.loop_key,
                    body: lines.as_bytes(),
                    format: slope_metrics::events::Format::Ndjson,
                    gzip: false,
                    idempotency_key: Some(&key),
                },
            )
            .await?;
        Ok(n)
    }
}

/// Seeds the demo's two simulated product loops when the organisation has no loop yet: six weeks of
/// interaction events of the note-drafting loop ([`NOTES`]) with two model variants, each user in one of the [`DEMO_UNITS`] (ingested through
/// the same path as a real batch), an acceptance-rate metric (7-day window) feeding the "Character
/// acceptance rate" key result, active users, week-1 retention, and an eval-score metric with weekly
/// simulated runs feeding "Agent eval score"; and three weeks of the discharge-summary loop
/// ([`DISCHARGE`]) with its own acceptance metric. Every event and score is simulated; the README says so.
pub async fn seed_loop(planning: &Planning, loops: &Loops, actor: &Actor, today: NaiveDate) -> Result<bool> {
    if !loops.list_loops(actor).await?.is_empty() {
        return Ok(false);
    }
    let mut rng = Lcg(20_270_101);
    let history =
        History { users: 360, days: NOTES_DAYS, variants: [("v7", 0.26), ("v8-shorter", 0.30)], id_prefix: "demo" };
    let n = history.ingest(loops, actor, &NOTES, &mut rng, today).await?;
    let metric = |key: &str, name: &str, kind: &str, window: Option<i64>| MetricInput {
        key: key.into(),
        name: name.into(),
        kind: kind.into(),
        loop_key: if kind == "eval-score" { String::new() } else { DEMO_LOOP.into() },
        window_days: window,
        ..Default::default()
    };
    loops
        .create_metric(
            actor,
            &metric(DEMO_ACCEPTANCE_METRIC, "Notes acceptance rate (7 days)", "acceptance-rate", Some(7)),
        )
        .await?;
    loops
        .create_metric(actor, &metric("notes-active-users", "Notes daily active clinicians", "active-users", None))
        .await?;
    loops.create_metric(actor, &metric("notes-retention", "Notes week-1 retention", "retention", None)).await?;
    let eval = MetricInput {
        freshness_hours: Some(24 * 8),
        granularity: "week".into(),
        ..metric(DEMO_EVAL_METRIC, "Agent eval score", "eval-score", None)
    };
    loops.create_metric(actor, &eval).await?;
    let runs: Vec<PointInput> = (0..6)
        .map(|week| {
            // The weekly run is at 06:00; today's has not happened yet when the demo starts before then
            // (a point in the future is refused), so it is dated now instead.
            let at = (today - Duration::days(35 - 7 * week)).and_hms_opt(6, 0, 0).unwrap_or_default().and_utc();
            let at = at.min(chrono::Utc::now() - Duration::minutes(1));
            let value = 0.74 + 0.018 * week as f64 + (rng.next() - 0.5) * 0.02;
            PointInput {
                at: at.to_rfc3339(),
                value: Some(value),
                n: Some(500),
                ci_low: Some(value - 0.03),
                ci_high: Some(value + 0.03),
            }
        })
        .collect();
    loops.push_points(actor, DEMO_EVAL_METRIC, &runs).await?;

    // Link the key results the loop measures.
    for (title, key) in [("Character acceptance rate", DEMO_ACCEPTANCE_METRIC), ("Agent eval score", DEMO_EVAL_METRIC)]
    {
        let Some(season) = planning.current_season(actor).await? else { break };
        let krs = planning.store().list_key_results(actor.org, season.id).await?;
        if let Some(kr) = krs.into_iter().find(|k| k.title == title) {
            let mut input = kr.to_input();
            input.metric = key.into();
            planning.update_key_result(actor, kr.id, kr.version, &input).await?;
        }
    }

    // The second product loop: three weeks of discharge summaries, a smaller history so that seeding stays
    // quick, with its own acceptance metric.
    let history =
        History { users: 120, days: 21, variants: [("d3", 0.20), ("d4-terse", 0.24)], id_prefix: "demo-discharge" };
    let discharge = history.ingest(loops, actor, &DISCHARGE, &mut Lcg(20_270_202), today).await?;
    let acceptance = MetricInput {
        loop_key: DISCHARGE_LOOP.into(),
        ..metric(DISCHARGE_ACCEPTANCE_METRIC, "Discharge summary acceptance rate (7 days)", "acceptance-rate", Some(7))
    };
    loops.create_metric(actor, &acceptance).await?;
    // The loop feeds a key result of the agents objective, and the Agents squad's current goal is measured
    // by it, so the second loop ladders into the plan (the adoption dashboard sees its key result and
    // owner squad).
    if let Some(season) = planning.current_season(actor).await? {
        let objectives = planning.store().list_objectives(actor.org, season.id).await?;
        let squads = planning.list_squads(actor).await?;
        let objective = objectives.iter().find(|o| o.title == "Agents finish routine notes end to end");
        let key_result = match objective {
            Some(o) => {
                let mut input =
                    kr("Discharge summary acceptance rate", "increase-to", Some(0.2), Some(0.3), "of characters");
                input.metric = DISCHARGE_ACCEPTANCE_METRIC.into();
                Some(planning.create_key_result(actor, o.id, &input).await?)
            }
            None => None,
        };
        let squad = squads.iter().find(|s| s.name == "Agents");
        let starts = (today - Duration::days(14)).max(season.starts_on);
        let ends = (starts + Duration::weeks(5)).min(season.ends_on);
        if let (Some(kr), Some(squad)) = (key_result.as_ref(), squad)
            && starts < ends
        {
            let goal = SquadGoalInput {
                key_result_id: Some(kr.id.0),
                title: "Discharge drafts clinicians keep".into(),
                starts_on: starts.to_string(),
                ends_on: ends.to_string(),
                investment: "snapshot".into(),
                planned_capacity: Some(4.0),
                status: "active".into(),
                metric: DISCHARGE_ACCEPTANCE_METRIC.into(),
                kind: "increase-to".into(),
                start: Some(0.2),
                target: Some(0.3),
                unit: "of characters".into(),
                ..Default::default()
            };
            planning.create_goal(actor, squad.id, &goal).await?;
        }
    }
    tracing::info!(events = n, discharge_events = discharge, "seeded the demo loops");
    Ok(true)
}
