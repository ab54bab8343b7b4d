//! Server functions of planning: seasons, objectives, key results, check-ins, squads, squad goals and
//! thesis signals, with the parsers of their forms.

// A server function takes one argument per form field, so that forms post to it without JavaScript; the
// long argument lists are the forms' shape, not a design smell.
#![allow(clippy::too_many_arguments)]

use leptos::prelude::*;
use slope_domain::*;

#[cfg(feature = "ssr")]
use super::server;
use super::{Outcome, optional_id, parse_id};

// ---- reads ---------------------------------------------------------------------------------------

#[server]
pub async fn list_seasons() -> Result<Vec<SeasonSummary>, ServerFnError> {
    let (planning, actor) = server::ctx()?;
    server::read(planning.list_seasons(&actor).await)
}

/// `as_of` is a date (`2027-02-01`, meaning the end of that day, UTC) or empty for now.
#[server]
pub async fn load_season_tree(id: i64, as_of: String) -> Result<SeasonTree, ServerFnError> {
    let (planning, actor) = server::ctx()?;
    let as_of = match as_of.trim() {
        "" => None,
        raw => Some(parse_date(raw).map(end_of_day).map_err(|e| ServerFnError::new(format!("as of: {e}")))?),
    };
    server::read(planning.season_tree(&actor, SeasonId(id), as_of).await)
}

#[server]
pub async fn get_season(id: i64) -> Result<Season, ServerFnError> {
    let (planning, actor) = server::ctx()?;
    server::read(planning.get_season(&actor, SeasonId(id)).await)
}

#[server]
pub async fn get_objective(id: i64) -> Result<(Objective, Season), ServerFnError> {
    let (planning, actor) = server::ctx()?;
    server::read(planning.objective_with_season(&actor, ObjectiveId(id)).await)
}

#[server]
pub async fn load_key_result(id: i64) -> Result<KeyResultDetail, ServerFnError> {
    let (planning, actor) = server::ctx()?;
    server::read(planning.key_result_detail(&actor, KeyResultId(id)).await)
}

/// A key result with the series of the metric feeding it, when it is fed by one.
#[server]
pub async fn load_key_result_page(id: i64) -> Result<(KeyResultDetail, Option<MetricSeries>), ServerFnError> {
    let (planning, actor) = server::ctx()?;
    server::read(planning.key_result_page(&actor, KeyResultId(id)).await)
}

#[server]
pub async fn load_squad_board(season: Option<i64>) -> Result<SquadBoard, ServerFnError> {
    let (planning, actor) = server::ctx()?;
    server::read(planning.squad_board(&actor, season.map(SeasonId)).await)
}

/// A season's dashboard: the tree with live progress, linked metrics, confidence trend and thesis
/// signals.
#[server]
pub async fn load_season_dashboard(id: i64) -> Result<SeasonDashboard, ServerFnError> {
    let (planning, actor) = server::ctx()?;
    server::read(planning.season_dashboard(&actor, SeasonId(id)).await)
}

/// A closed season's review.
#[server]
pub async fn load_season_review(id: i64) -> Result<SeasonReview, ServerFnError> {
    let (planning, actor) = server::ctx()?;
    server::read(planning.season_review(&actor, SeasonId(id)).await)
}

/// Resolves a thesis signal with the leader's note; back to the dashboard, at the signal. The query
/// makes the address differ from the page's own: a redirect that only changed the fragment would scroll
/// instead of loading the page again.
#[server]
pub async fn resolve_signal(season_id: i64, signal_id: i64, note: String) -> Result<Outcome, ServerFnError> {
    let (planning, actor) = server::ctx()?;
    let input = ResolveSignalInput { note };
    server::write(planning.resolve_signal(&actor, SeasonId(season_id), signal_id, &input).await, |s| {
        format!("/seasons/{}/dashboard?resolved={}#signal-{}", s.season_id, s.id, s.id)
    })
}

/// A squad's dashboard in a season (the current one when `None`).
#[server]
pub async fn load_squad_dashboard(id: i64, season: Option<i64>) -> Result<SquadDashboard, ServerFnError> {
    let (planning, actor) = server::ctx()?;
    server::read(planning.squad_dashboard(&actor, SquadId(id), season.map(SeasonId)).await)
}

#[server]
pub async fn get_squad(id: i64) -> Result<Squad, ServerFnError> {
    let (planning, actor) = server::ctx()?;
    server::read(planning.get_squad(&actor, SquadId(id)).await)
}

#[server]
pub async fn load_goal(id: i64) -> Result<SquadGoalDetail, ServerFnError> {
    let (planning, actor) = server::ctx()?;
    server::read(planning.goal_detail(&actor, SquadGoalId(id)).await)
}

/// Key results a squad goal can ladder up to: those of the organisation's current season, labelled
/// with their objective.
#[server]
pub async fn key_result_choices() -> Result<Vec<(i64, String)>, ServerFnError> {
    let (planning, actor) = server::ctx()?;
    let Some(tree) = server::read(planning.current_season_tree(&actor).await)? else {
        return Ok(vec![]);
    };
    Ok(tree
        .objectives
        .iter()
        .flat_map(|o| {
            o.key_results
                .iter()
                .map(move |k| (k.key_result.id.0, format!("{} › {}", o.objective.title, k.key_result.title)))
        })
        .collect())
}

// ---- writes --------------------------------------------------------------------------------------

/// Form fields of a season. `id` and `version` are empty when creating.
#[server]
pub async fn save_season(
    id: String,
    version: String,
    name: String,
    thesis: String,
    problems: String,
    winning: String,
    starts_on: String,
    ends_on: String,
    slope_target: String,
) -> Result<Outcome, ServerFnError> {
    let (planning, actor) = server::ctx()?;
    let form = SaveSeason { id, version, name, thesis, problems, winning, starts_on, ends_on, slope_target };
    let (id, version, input) = match season_form(&form) {
        Ok(parsed) => parsed,
        Err(errors) => return Ok(Outcome::Invalid(errors)),
    };
    let result = match (id, version) {
        (Some(id), Some(version)) => planning.update_season(&actor, SeasonId(id), Version(version), &input).await,
        _ => planning.create_season(&actor, &input).await,
    };
    server::write(result, |s| format!("/seasons/{}", s.id))
}

/// Turns season form fields into input: one problem per line, the slope target in percent.
pub fn season_form(f: &SaveSeason) -> Result<(Option<i64>, Option<i64>, SeasonInput), FieldErrors> {
    let mut c = Checker::new();
    let id = c.check("id", optional_id("id", &f.id).map_err(|e| e.to_string()));
    let version = c.check("version", optional_id("version", &f.version).map_err(|e| e.to_string()));
    let percent = c.optional_number("slope_target", &f.slope_target);
    let input = SeasonInput {
        name: f.name.clone(),
        thesis: f.thesis.clone(),
        problems: f.problems.lines().map(str::to_owned).collect(),
        winning: f.winning.clone(),
        starts_on: f.starts_on.clone(),
        ends_on: f.ends_on.clone(),
        slope_target: percent.flatten().map(|p| p / 100.0),
    };
    let mut errors = c.errors;
    if let Err(more) = input.validate() {
        errors.merge(more);
    }
    errors.into_result((id.flatten(), version.flatten(), input))
}

#[server]
pub async fn transition_season(
    id: i64,
    version: i64,
    to: String,
    retrospective: String,
) -> Result<Outcome, ServerFnError> {
    let (planning, actor) = server::ctx()?;
    let input = TransitionInput { to, retrospective };
    server::write(planning.transition_season(&actor, SeasonId(id), Version(version), &input).await, |s| {
        format!("/seasons/{}", s.id)
    })
}

#[server]
pub async fn save_objective(
    season_id: String,
    id: String,
    version: String,
    quarter: String,
    title: String,
    description: String,
    commitment: String,
    owner: String,
    weight: String,
) -> Result<Outcome, ServerFnError> {
    let (planning, actor) = server::ctx()?;
    let form = SaveObjective { season_id, id, version, quarter, title, description, commitment, owner, weight };
    let (season_id, id, version, input) = match objective_form(&form) {
        Ok(parsed) => parsed,
        Err(errors) => return Ok(Outcome::Invalid(errors)),
    };
    let result = match (id, version) {
        (Some(id), Some(version)) => planning.update_objective(&actor, ObjectiveId(id), Version(version), &input).await,
        _ => planning.create_objective(&actor, SeasonId(season_id), &input).await,
    };
    server::write(result, |o| format!("/seasons/{}#objective-{}", o.season_id, o.id))
}

/// Parses objective form fields. The quarter-in-season rule needs the season's dates, so it runs on the
/// server only.
pub fn objective_form(f: &SaveObjective) -> Result<(i64, Option<i64>, Option<i64>, ObjectiveInput), FieldErrors> {
    let mut c = Checker::new();
    let season_id = c.check("season_id", parse_id("season_id", &f.season_id).map_err(|e| e.to_string()));
    let id = c.check("id", optional_id("id", &f.id).map_err(|e| e.to_string()));
    let version = c.check("version", optional_id("version", &f.version).map_err(|e| e.to_string()));
    let weight = c.optional_number("weight", &f.weight);
    let input = ObjectiveInput {
        quarter: f.quarter.clone(),
        title: f.title.clone(),
        description: f.description.clone(),
        commitment: f.commitment.clone(),
        owner: f.owner.clone(),
        weight: weight.flatten(),
    };
    c.finish(|| Some((season_id?, id?, version?, input)))
}

/// The measure fields shared by key result and squad goal forms.
fn measure_form(
    c: &mut Checker,
    kind: &str,
    start: &str,
    target: &str,
    threshold: &str,
    low: &str,
    high: &str,
    unit: &str,
) -> MeasureInput {
    MeasureInput {
        kind: kind.to_owned(),
        start: c.optional_number("start", start).flatten(),
        target: c.optional_number("target", target).flatten(),
        threshold: c.optional_number("threshold", threshold).flatten(),
        low: c.optional_number("low", low).flatten(),
        high: c.optional_number("high", high).flatten(),
        unit: unit.to_owned(),
    }
}

#[server]
pub async fn save_key_result(
    objective_id: String,
    id: String,
    version: String,
    title: String,
    kind: String,
    start: String,
    target: String,
    threshold: String,
    low: String,
    high: String,
    unit: String,
    weight: String,
    confidence: String,
    metric: String,
) -> Result<Outcome, ServerFnError> {
    let (planning, actor) = server::ctx()?;
    let form = SaveKeyResult {
        objective_id,
        id,
        version,
        title,
        kind,
        start,
        target,
        threshold,
        low,
        high,
        unit,
        weight,
        confidence,
        metric,
    };
    let (objective_id, id, version, input) = match key_result_form(&form) {
        Ok(parsed) => parsed,
        Err(errors) => return Ok(Outcome::Invalid(errors)),
    };
    let result = match (id, version) {
        (Some(id), Some(version)) => {
            planning.update_key_result(&actor, KeyResultId(id), Version(version), &input).await
        }
        _ => planning.create_key_result(&actor, ObjectiveId(objective_id), &input).await,
    };
    server::write(result, |k| format!("/key-results/{}", k.id))
}

pub fn key_result_form(f: &SaveKeyResult) -> Result<(i64, Option<i64>, Option<i64>, KeyResultInput), FieldErrors> {
    let mut c = Checker::new();
    let objective_id = c.check("objective_id", parse_id("objective_id", &f.objective_id).map_err(|e| e.to_string()));
    let id = c.check("id", optional_id("id", &f.id).map_err(|e| e.to_string()));
    let version = c.check("version", optional_id("version", &f.version).map_err(|e| e.to_string()));
    let measure = measure_form(&mut c, &f.kind, &f.start, &f.target, &f.threshold, &f.low, &f.high, &f.unit);
    let weight = c.optional_number("weight", &f.weight).flatten();
    let confidence = c.optional_number("confidence", &f.confidence).flatten().map(|p| p / 100.0);
    let mut input =
        KeyResultInput { title: f.title.clone(), weight, confidence, metric: f.metric.clone(), ..Default::default() };
    input.set_measure(measure);
    let mut errors = c.errors;
    if let Err(more) = input.validate() {
        errors.merge(more);
    }
    errors.into_result((objective_id.unwrap_or_default(), id.flatten(), version.flatten(), input))
}

/// A check-in on a key result (`subject_kind` = `key-result`) or a squad goal (`squad-goal`).
#[server]
pub async fn record_check_in(
    subject_kind: String,
    subject_id: String,
    value: String,
    done: Option<String>,
    confidence: String,
    note: String,
    author: String,
) -> Result<Outcome, ServerFnError> {
    let (planning, actor) = server::ctx()?;
    let form = RecordCheckIn { subject_kind, subject_id, value, done, confidence, note, author };
    let (kind, id, input) = match check_in_form(&form) {
        Ok(parsed) => parsed,
        Err(errors) => return Ok(Outcome::Invalid(errors)),
    };
    let (result, path) = match kind {
        SubjectKind::KeyResult => {
            (planning.check_in_key_result(&actor, KeyResultId(id), &input).await, format!("/key-results/{id}"))
        }
        SubjectKind::SquadGoal => {
            (planning.check_in_goal(&actor, SquadGoalId(id), &input).await, format!("/squad-goals/{id}"))
        }
    };
    server::write(result, |_| path)
}

/// Parses check-in fields. Whether a value or `done` is needed depends on the subject's measure, which
/// the browser passes as `milestone` so it can check that too.
pub fn check_in_form(f: &RecordCheckIn) -> Result<(SubjectKind, i64, CheckInInput), FieldErrors> {
    let mut c = Checker::new();
    let kind = c.check("subject_kind", f.subject_kind.parse::<SubjectKind>());
    let id = c.check("subject_id", parse_id("subject_id", &f.subject_id).map_err(|e| e.to_string()));
    let value = c.optional_number("value", &f.value).flatten();
    let confidence = c.optional_number("confidence", &f.confidence).flatten().map(|p| p / 100.0);
    let input = CheckInInput {
        value,
        // A checkbox sends its field only when ticked; a milestone form always has the box, so absence
        // means "not done" there, and the value field is absent from it.
        done: if f.value.is_empty() { Some(f.done.is_some()) } else { None },
        confidence,
        note: f.note.clone(),
        author: f.author.clone(),
    };
    c.finish(|| Some((kind?, id?, input)))
}

#[server]
pub async fn save_squad(
    id: String,
    version: String,
    name: String,
    unit: String,
    capacity: String,
) -> Result<Outcome, ServerFnError> {
    let (planning, actor) = server::ctx()?;
    let form = SaveSquad { id, version, name, unit, capacity };
    let (id, version, input) = match squad_form(&form) {
        Ok(parsed) => parsed,
        Err(errors) => return Ok(Outcome::Invalid(errors)),
    };
    let result = match (id, version) {
        (Some(id), Some(version)) => planning.update_squad(&actor, SquadId(id), Version(version), &input).await,
        _ => planning.create_squad(&actor, &input).await,
    };
    server::write(result, |s| format!("/squads#squad-{}", s.id))
}

pub fn squad_form(f: &SaveSquad) -> Result<(Option<i64>, Option<i64>, SquadInput), FieldErrors> {
    let mut c = Checker::new();
    let id = c.check("id", optional_id("id", &f.id).map_err(|e| e.to_string()));
    let version = c.check("version", optional_id("version", &f.version).map_err(|e| e.to_string()));
    let capacity = c.optional_number("capacity", &f.capacity).flatten();
    let input = SquadInput { name: f.name.clone(), unit: f.unit.clone(), capacity };
    let mut errors = c.errors;
    if let Err(more) = input.validate() {
        errors.merge(more);
    }
    errors.into_result((id.flatten(), version.flatten(), input))
}

#[server]
pub async fn save_goal(
    squad_id: String,
    id: String,
    version: String,
    key_result_id: String,
    title: String,
    starts_on: String,
    ends_on: String,
    investment: String,
    challenges: String,
    kill_criteria: String,
    planned_capacity: String,
    status: String,
    kind: String,
    start: String,
    target: String,
    threshold: String,
    low: String,
    high: String,
    unit: String,
    metric: String,
) -> Result<Outcome, ServerFnError> {
    let (planning, actor) = server::ctx()?;
    let form = SaveGoal {
        metric,
        squad_id,
        id,
        version,
        key_result_id,
        title,
        starts_on,
        ends_on,
        investment,
        challenges,
        kill_criteria,
        planned_capacity,
        status,
        kind,
        start,
        target,
        threshold,
        low,
        high,
        unit,
    };
    let (squad_id, id, version, input) = match goal_form(&form) {
        Ok(parsed) => parsed,
        Err(errors) => return Ok(Outcome::Invalid(errors)),
    };
    let result = match (id, version) {
        (Some(id), Some(version)) => planning.update_goal(&actor, SquadGoalId(id), Version(version), &input).await,
        _ => planning.create_goal(&actor, SquadId(squad_id), &input).await,
    };
    server::write(result, |g| format!("/squad-goals/{}", g.id))
}

/// Parses squad goal fields and checks every rule that needs no stored data (the 4–6 week rule, slope
/// bets' belief and kill criteria); the season check runs on the server.
pub fn goal_form(f: &SaveGoal) -> Result<(i64, Option<i64>, Option<i64>, SquadGoalInput), FieldErrors> {
    let mut c = Checker::new();
    let squad_id = c.check("squad_id", parse_id("squad_id", &f.squad_id).map_err(|e| e.to_string()));
    let id = c.check("id", optional_id("id", &f.id).map_err(|e| e.to_string()));
    let version = c.check("version", optional_id("version", &f.version).map_err(|e| e.to_string()));
    let key_result_id = c.check(
        "key_result_id",
        optional_id("key_result_id", &f.key_result_id).map_err(|_| "choose a key result".to_owned()),
    );
    let planned_capacity = c.optional_number("planned_capacity", &f.planned_capacity).flatten();
    let measure = measure_form(&mut c, &f.kind, &f.start, &f.target, &f.threshold, &f.low, &f.high, &f.unit);
    let mut input = SquadGoalInput {
        metric: f.metric.clone(),
        key_result_id: key_result_id.flatten(),
        title: f.title.clone(),
        starts_on: f.starts_on.clone(),
        ends_on: f.ends_on.clone(),
        investment: f.investment.clone(),
        challenges: f.challenges.clone(),
        kill_criteria: f.kill_criteria.clone(),
        planned_capacity,
        status: f.status.clone(),
        ..Default::default()
    };
    input.set_measure(measure);
    let mut errors = c.errors;
    if let Err(more) = input.validate(None) {
        errors.merge(more);
    }
    errors.into_result((squad_id.unwrap_or_default(), id.flatten(), version.flatten(), input))
}
