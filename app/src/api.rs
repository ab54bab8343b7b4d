//! Server functions: the UI's only way to the service layer. Each one parses its form fields with the
//! domain's rules (the same functions run in the browser before submitting), calls one service method and
//! maps the result to what the page shows.

// Long on purpose, for now: every server function of the UI is here; splitting it per area is still to do
// (issue 13 names it), and the read models of loops and the runner still live here.

// A server function takes one argument per form field, so that forms post to it without JavaScript; the
// long argument lists are the forms' shape, not a design smell.
#![allow(clippy::too_many_arguments)]

use leptos::prelude::*;
use serde::{Deserialize, Serialize};
use slope_domain::*;

/// The result of a form submission that the form itself renders.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Outcome {
    /// Saved; the server has also asked the browser to go to `path`.
    Saved { path: String },
    /// The input broke a rule; messages by field.
    Invalid(FieldErrors),
    /// Someone else changed the entity since the form was loaded.
    Conflict(String),
}

#[cfg(feature = "ssr")]
mod server {
    use leptos::prelude::*;
    use slope_domain::{Actor, FieldErrors};
    use slope_service::{Planning, ServiceError, Services};

    use super::Outcome;

    fn context() -> Result<Services, ServerFnError> {
        use_context::<Services>().ok_or_else(|| ServerFnError::new("server context is missing"))
    }

    /// Who is asking: the actor the server's authentication layer put on the request. Without one the
    /// call is refused, whatever it would read or change.
    pub fn actor() -> Result<Actor, ServerFnError> {
        match crate::signed_in() {
            Some(actor) => Ok(actor),
            None => {
                if let Some(response) = use_context::<leptos_axum::ResponseOptions>() {
                    response.set_status(http::StatusCode::UNAUTHORIZED);
                }
                Err(ServerFnError::new("sign in first"))
            }
        }
    }

    pub fn loops() -> Result<(slope_service::Loops, Actor), ServerFnError> {
        Ok((context()?.loops, actor()?))
    }

    pub fn runner() -> Result<(slope_service::Runner, Actor), ServerFnError> {
        Ok((context()?.runner, actor()?))
    }

    pub fn ctx() -> Result<(Planning, Actor), ServerFnError> {
        Ok((context()?.planning, actor()?))
    }

    pub fn access() -> Result<(slope_service::Access, Actor), ServerFnError> {
        Ok((context()?.access, actor()?))
    }

    pub fn simulator() -> Result<(slope_service::Simulator, Actor), ServerFnError> {
        Ok((context()?.simulator, actor()?))
    }

    /// Maps a failed read: unknown ids become a 404 page, internal errors are logged by the service and
    /// shown without detail.
    pub fn read<T>(result: Result<T, ServiceError>) -> Result<T, ServerFnError> {
        result.map_err(|e| {
            if matches!(e, ServiceError::NotFound(_) | ServiceError::Invalid(_)) {
                crate::set_not_found();
            }
            if let (ServiceError::Forbidden(_), Some(response)) = (&e, use_context::<leptos_axum::ResponseOptions>()) {
                response.set_status(http::StatusCode::FORBIDDEN);
            }
            ServerFnError::new(e.to_string())
        })
    }

    /// Maps a write: success redirects to `path_of(value)`, rule violations go back to the form.
    pub fn write<T>(
        result: Result<T, ServiceError>,
        path_of: impl FnOnce(&T) -> String,
    ) -> Result<Outcome, ServerFnError> {
        match result {
            Ok(value) => {
                let path = path_of(&value);
                leptos_axum::redirect(&path);
                Ok(Outcome::Saved { path })
            }
            Err(ServiceError::Invalid(errors)) => Ok(Outcome::Invalid(errors)),
            Err(ServiceError::Conflict(message)) => {
                Ok(Outcome::Conflict(format!("{message}. Reload the page to see the latest version.")))
            }
            // The form shows the refusal where it shows other form-wide messages; the rule is in the text.
            Err(ServiceError::Forbidden(message)) => Ok(Outcome::Invalid(FieldErrors::single("form", message))),
            Err(other) => Err(ServerFnError::new(other.to_string())),
        }
    }
}

/// Parses an id carried in a hidden field or a URL.
pub fn parse_id(field: &str, raw: &str) -> Result<i64, FieldErrors> {
    raw.trim().parse::<i64>().map_err(|_| FieldErrors::single(field, "is not a valid id"))
}

fn optional_id(field: &str, raw: &str) -> Result<Option<i64>, FieldErrors> {
    if raw.trim().is_empty() { Ok(None) } else { parse_id(field, raw).map(Some) }
}

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
    let objective = server::read(planning.get_objective(&actor, ObjectiveId(id)).await)?;
    let season = server::read(planning.get_season(&actor, objective.season_id).await)?;
    Ok((objective, season))
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
    let detail = server::read(planning.key_result_detail(&actor, KeyResultId(id)).await)?;
    let series = match &detail.key_result.metric {
        None => None,
        Some(feed) => {
            let (loops, actor) = server::loops()?;
            Some(server::read(loops.series(&actor, &feed.key).await)?)
        }
    };
    Ok((detail, series))
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
    let Some(season) = server::read(planning.current_season(&actor).await)? else {
        return Ok(vec![]);
    };
    let tree = server::read(planning.season_tree(&actor, season.id, None).await)?;
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

/// Metrics a key result can be fed by: (key, label).
#[server]
pub async fn metric_choices() -> Result<Vec<(String, String)>, ServerFnError> {
    let (loops, actor) = server::loops()?;
    let metrics = server::read(loops.list_metrics(&actor).await)?;
    Ok(metrics.into_iter().map(|m| (m.key.clone(), format!("{} ({}, {})", m.name, m.key, m.kind))).collect())
}

#[server]
pub async fn load_metric(key: String) -> Result<MetricSeries, ServerFnError> {
    let (loops, actor) = server::loops()?;
    server::read(loops.series(&actor, &key).await)
}

/// One row of the loops overview.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoopRow {
    pub key: String,
    pub events: i64,
    pub segments: i64,
    pub first_event: String,
    pub last_event: String,
}

/// Every loop, every metric with its series, and recent drift alerts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoopsOverview {
    pub loops: Vec<LoopRow>,
    pub metrics: Vec<MetricSeries>,
    pub alerts: Vec<DriftAlert>,
}

#[server]
pub async fn load_loops() -> Result<LoopsOverview, ServerFnError> {
    let (loops, actor) = server::loops()?;
    let rows = server::read(loops.list_loops(&actor).await)?
        .into_iter()
        .map(|l| LoopRow {
            key: l.loop_key,
            events: l.events,
            segments: l.segments,
            first_event: l.first_event.format("%Y-%m-%d %H:%M").to_string(),
            last_event: l.last_event.format("%Y-%m-%d %H:%M").to_string(),
        })
        .collect();
    let mut metrics = vec![];
    for m in server::read(loops.list_metrics(&actor).await)? {
        metrics.push(server::read(loops.series(&actor, &m.key).await)?);
    }
    let alerts = server::read(loops.drift_alerts(&actor).await)?;
    Ok(LoopsOverview { loops: rows, metrics, alerts })
}

/// Acceptance of one variant on one day.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AcceptanceRow {
    pub variant: String,
    pub day: String,
    pub value: f64,
    pub ci_low: Option<f64>,
    pub ci_high: Option<f64>,
    pub users: u64,
}

/// A weekly cohort: its Monday, size and the share active in each following week.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CohortRow {
    pub week: String,
    pub size: u64,
    pub shares: Vec<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchRow {
    pub id: i64,
    pub rows: i64,
    pub stored: i64,
    pub duplicates: i64,
    pub received_at: String,
}

/// What the page of one loop shows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoopView {
    pub key: String,
    pub summary: Option<LoopRow>,
    pub method: String,
    pub acceptance: Vec<AcceptanceRow>,
    pub cohorts: Vec<CohortRow>,
    pub metrics: Vec<MetricDefinition>,
    pub batches: Vec<BatchRow>,
}

#[server]
pub async fn load_loop(key: String) -> Result<LoopView, ServerFnError> {
    let (loops, actor) = server::loops()?;
    let report = server::read(loops.loop_report(&actor, &key, 28).await)?;
    let retention = server::read(loops.retention(&actor, &key).await)?;
    let cohorts = retention
        .loops
        .into_iter()
        .flat_map(|l| l.cohorts)
        .map(|c| CohortRow {
            week: c.week.to_string(),
            size: c.size,
            shares: c.weeks.iter().map(|w| w.share).collect(),
        })
        .collect();
    Ok(LoopView {
        key: key.clone(),
        summary: report.summary.map(|l| LoopRow {
            key: l.loop_key,
            events: l.events,
            segments: l.segments,
            first_event: l.first_event.format("%Y-%m-%d %H:%M").to_string(),
            last_event: l.last_event.format("%Y-%m-%d %H:%M").to_string(),
        }),
        method: report.method.to_owned(),
        acceptance: report
            .acceptance
            .into_iter()
            .map(|p| AcceptanceRow {
                variant: p.variant.unwrap_or_default(),
                day: p.bucket,
                value: p.value,
                ci_low: p.ci_low,
                ci_high: p.ci_high,
                users: p.users,
            })
            .collect(),
        cohorts,
        metrics: report.metrics,
        batches: report
            .batches
            .into_iter()
            .map(|b| BatchRow {
                id: b.batch_id,
                rows: b.rows,
                stored: b.stored,
                duplicates: b.duplicates,
                received_at: b.received_at.format("%Y-%m-%d %H:%M:%S").to_string(),
            })
            .collect(),
    })
}

/// Form fields of a metric definition; `version` is empty when creating.
#[server]
pub async fn save_metric(
    version: String,
    key: String,
    name: String,
    kind: String,
    loop_key: String,
    variant: String,
    unit: String,
    granularity: String,
    window_days: String,
    freshness_hours: String,
) -> Result<Outcome, ServerFnError> {
    let (loops, actor) = server::loops()?;
    let form =
        SaveMetric { version, key, name, kind, loop_key, variant, unit, granularity, window_days, freshness_hours };
    let (version, input) = match metric_form(&form) {
        Ok(parsed) => parsed,
        Err(errors) => return Ok(Outcome::Invalid(errors)),
    };
    let result = match version {
        Some(version) => loops.update_metric(&actor, &input.key, version, &input).await,
        None => loops.create_metric(&actor, &input).await,
    };
    server::write(result, |m| format!("/metrics/{}", m.key))
}

pub fn metric_form(f: &SaveMetric) -> Result<(Option<i64>, MetricInput), FieldErrors> {
    let mut c = Checker::new();
    let version = c.check("version", optional_id("version", &f.version).map_err(|e| e.to_string()));
    let whole = |c: &mut Checker, field: &str, raw: &str| match c.optional_number(field, raw).flatten() {
        Some(v) if v.fract() == 0.0 => Some(v as i64),
        Some(_) => {
            c.fail(field, "must be a whole number");
            None
        }
        None => None,
    };
    let window_days = whole(&mut c, "window_days", &f.window_days);
    let freshness_hours = whole(&mut c, "freshness_hours", &f.freshness_hours);
    let input = MetricInput {
        key: f.key.clone(),
        name: f.name.clone(),
        kind: f.kind.clone(),
        loop_key: f.loop_key.clone(),
        variant: f.variant.clone(),
        unit: f.unit.clone(),
        granularity: f.granularity.clone(),
        window_days,
        freshness_hours,
    };
    let mut errors = c.errors;
    if let Err(more) = input.validate() {
        // The form names the loop field `loop_key`, as `loop` is a Rust keyword.
        for (field, messages) in more.0 {
            let field = if field == "loop" { "loop_key".to_owned() } else { field };
            for m in messages {
                errors.add(&field, m);
            }
        }
    }
    errors.into_result((version.flatten(), input))
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

// ---- runner: jobs, models, datasets ---------------------------------------------------------------

/// A job as the jobs pages list it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobRow {
    pub id: i64,
    pub kind: String,
    pub status: String,
    pub step: i64,
    pub total_steps: i64,
    pub attempts: i64,
    pub cancel_requested: bool,
    pub error: Option<String>,
    pub created_at: String,
    pub finished_at: Option<String>,
    /// The model a finished training job registered.
    pub model_id: Option<i64>,
}

/// One optimizer step's metrics, as the loss chart plots them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepPoint {
    pub step: i64,
    pub loss: f64,
    pub lr: f64,
    pub grad_norm: f64,
    pub tokens_per_s: f64,
    #[serde(default)]
    pub reward_margin: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobView {
    pub job: JobRow,
    /// The job's specification and result, as indented JSON.
    pub spec: String,
    pub result: Option<String>,
    pub points: Vec<StepPoint>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelRow {
    pub id: i64,
    pub name: String,
    pub kind: String,
    pub loop_key: Option<String>,
    pub base: Option<(i64, String)>,
    pub dataset_digest: Option<String>,
    pub job_id: Option<i64>,
    pub parameters: i64,
    pub reward: Option<f64>,
    pub scores: Vec<(String, f64)>,
    /// `loop: alias` for each alias naming the model.
    pub aliases: Vec<String>,
    pub created_at: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PromotionRow {
    pub at: String,
    pub loop_key: String,
    pub challenger: String,
    pub champion: Option<String>,
    pub accepted: bool,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatasetRow {
    pub id: i64,
    pub name: String,
    pub kind: String,
    pub rows: i64,
    pub digest: String,
    pub source: String,
    pub created_at: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelsView {
    pub models: Vec<ModelRow>,
    pub promotions: Vec<PromotionRow>,
    pub datasets: Vec<DatasetRow>,
}

#[cfg(feature = "ssr")]
mod runner_views {
    use super::*;

    fn time(t: chrono::DateTime<chrono::Utc>) -> String {
        t.format("%Y-%m-%d %H:%M:%S").to_string()
    }

    pub fn job_row(j: &Job) -> JobRow {
        JobRow {
            id: j.id,
            kind: j.kind.to_string(),
            status: j.status.to_string(),
            step: j.step,
            total_steps: j.total_steps,
            attempts: j.attempts,
            cancel_requested: j.cancel_requested,
            error: j.error.clone(),
            created_at: time(j.created_at),
            finished_at: j.finished_at.map(time),
            model_id: j.result_model(),
        }
    }

    pub fn step_point(m: &JobMetric) -> StepPoint {
        StepPoint {
            step: m.step,
            loss: m.loss,
            lr: m.lr,
            grad_norm: m.grad_norm,
            tokens_per_s: m.tokens_per_s,
            reward_margin: m.reward_margin,
        }
    }

    pub fn model_row(m: &Model, all: &[Model], aliases: &[Alias]) -> ModelRow {
        // A score that could not be measured (NaN) is left out, as it always was.
        let scores = m
            .eval
            .as_ref()
            .map(|e| e.scores.iter().filter(|(_, v)| !v.is_nan()).map(|(k, v)| (k.clone(), *v)).collect())
            .unwrap_or_default();
        ModelRow {
            id: m.id,
            name: m.name.clone(),
            kind: m.kind.to_string(),
            loop_key: m.loop_key.clone(),
            base: m
                .base_model_id
                .map(|b| (b, all.iter().find(|x| x.id == b).map(|x| x.name.clone()).unwrap_or_default())),
            dataset_digest: m.dataset_digest.clone(),
            job_id: m.job_id,
            parameters: m.parameters,
            reward: m.reward,
            scores,
            aliases: aliases
                .iter()
                .filter(|a| a.model_id == m.id)
                .map(|a| format!("{}: {}", a.loop_key, a.alias))
                .collect(),
            created_at: time(m.created_at),
        }
    }

    pub fn promotion_row(p: &Promotion, all: &[Model]) -> PromotionRow {
        let name =
            |id: i64| all.iter().find(|m| m.id == id).map(|m| m.name.clone()).unwrap_or_else(|| format!("model {id}"));
        PromotionRow {
            at: time(p.at),
            loop_key: p.loop_key.clone(),
            challenger: name(p.challenger_id),
            champion: p.champion_id.map(name),
            accepted: p.accepted,
            reason: p.decision.reason.clone(),
        }
    }

    pub fn dataset_row(d: &Dataset) -> DatasetRow {
        let source = match &d.source {
            DatasetSource::Events { loop_key, events, .. } => format!("{events} events of loop {loop_key}"),
            DatasetSource::Upload { upload } => format!("upload {upload}"),
            DatasetSource::File { file } => format!("file {file}"),
            // The simulator's held-out sets said nothing here before; they still do not.
            DatasetSource::Simulated { .. } => String::new(),
        };
        DatasetRow {
            id: d.id,
            name: d.name.clone(),
            kind: d.kind.to_string(),
            rows: d.rows,
            digest: d.digest.chars().take(19).collect(),
            source,
            created_at: time(d.created_at),
        }
    }
}

#[server]
pub async fn load_jobs() -> Result<Vec<JobRow>, ServerFnError> {
    let (runner, actor) = server::runner()?;
    Ok(server::read(runner.jobs(&actor, 200).await)?.iter().map(runner_views::job_row).collect())
}

#[server]
pub async fn load_job(id: i64) -> Result<JobView, ServerFnError> {
    let (runner, actor) = server::runner()?;
    let job = server::read(runner.job(&actor, id).await)?;
    let points = server::read(runner.job_metrics(&actor, id, 0).await)?.iter().map(runner_views::step_point).collect();
    fn pretty(v: &impl Serialize) -> String {
        serde_json::to_string_pretty(v).unwrap_or_default()
    }
    Ok(JobView {
        job: runner_views::job_row(&job),
        spec: pretty(&job.spec),
        result: job.result.as_ref().map(pretty),
        points,
    })
}

/// Cancels a job from its page; answers the job as it now stands.
#[server]
pub async fn cancel_job(id: i64) -> Result<JobRow, ServerFnError> {
    let (runner, actor) = server::runner()?;
    let job = runner.cancel(&actor, id).await.map_err(|e| ServerFnError::new(e.to_string()))?;
    Ok(runner_views::job_row(&job))
}

#[server]
pub async fn load_models() -> Result<ModelsView, ServerFnError> {
    let (runner, actor) = server::runner()?;
    let models = server::read(runner.models(&actor, None).await)?;
    let aliases = server::read(runner.aliases(&actor, None).await)?;
    let promotions = server::read(runner.promotions(&actor, None).await)?;
    let datasets = server::read(runner.datasets(&actor).await)?;
    Ok(ModelsView {
        models: models.iter().map(|m| runner_views::model_row(m, &models, &aliases)).collect(),
        promotions: promotions.iter().map(|p| runner_views::promotion_row(p, &models)).collect(),
        datasets: datasets.iter().map(runner_views::dataset_row).collect(),
    })
}

// ---- adoption ------------------------------------------------------------------------------------

/// The exec adoption dashboard: units' stages with evidence, warnings, the stage trend and the rules.
#[server]
pub async fn load_adoption() -> Result<AdoptionReport, ServerFnError> {
    let (loops, actor) = server::loops()?;
    server::read(loops.adoption(&actor).await)
}

// ---- access --------------------------------------------------------------------------------------

/// An audit trail as a page shows it: what it covers and the records, newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditView {
    pub scope: String,
    pub records: Vec<AuditRecord>,
}

#[server]
pub async fn load_audit(entity: Option<String>, id: Option<i64>) -> Result<AuditView, ServerFnError> {
    let (access, actor) = server::access()?;
    let scope = match (&entity, id) {
        (Some(e), Some(i)) => format!("Changes of {} {i}", e.replace('_', " ")),
        _ => "The latest 200 changes in this organisation".to_owned(),
    };
    let filter = entity.as_deref().zip(id);
    let records = server::read(access.audit(&actor, filter, None, 200).await)?;
    Ok(AuditView { scope, records })
}

#[server]
pub async fn load_members() -> Result<(Vec<Member>, Vec<ApiToken>), ServerFnError> {
    let (access, actor) = server::access()?;
    let members = server::read(access.members(&actor).await)?;
    let tokens = server::read(access.tokens(&actor).await)?;
    Ok((members, tokens))
}

/// A loop's post-training stack, iterations and metabolism.
#[server]
pub async fn load_loop_stack(key: String) -> Result<LoopStack, ServerFnError> {
    let (runner, actor) = server::runner()?;
    server::read(runner.loop_stack(&actor, &key).await)
}

// ---- the demo's traffic simulator ------------------------------------------------------------------------

/// What the demo's traffic simulator is doing (`running: false` where none runs), for the banner that
/// labels simulated traffic.
#[server]
pub async fn load_simulator() -> Result<SimulatorStatus, ServerFnError> {
    let (simulator, actor) = server::simulator()?;
    server::read(simulator.status(&actor))
}
