//! Server functions of loop metrics: metric definitions and their series, the loops overview and the
//! page of one loop, and the adoption dashboard.

// A server function takes one argument per form field, so that forms post to it without JavaScript; the
// long argument list of a metric definition is its form's shape, not a design smell.
#![allow(clippy::too_many_arguments)]

use leptos::prelude::*;
use slope_domain::*;

#[cfg(feature = "ssr")]
use super::server;
use super::{Outcome, optional_id, parse_id};

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

#[server]
pub async fn load_customers() -> Result<CustomersReport, ServerFnError> {
    let (loops, actor) = server::loops()?;
    server::read(loops.customers(&actor).await)
}

#[server]
pub async fn load_loops() -> Result<LoopsOverview, ServerFnError> {
    let (loops, actor) = server::loops()?;
    server::read(loops.overview(&actor).await)
}

#[server]
pub async fn load_loop(key: String) -> Result<LoopView, ServerFnError> {
    let (loops, actor) = server::loops()?;
    server::read(loops.loop_view(&actor, &key).await)
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

/// The exec adoption dashboard: units' stages with evidence, warnings, the stage trend and the rules.
#[server]
pub async fn load_adoption() -> Result<AdoptionReport, ServerFnError> {
    let (loops, actor) = server::loops()?;
    server::read(loops.adoption(&actor).await)
}

/// Changes the organisation's adoption rules (admins only; the service checks), based on `version`.
#[server]
pub async fn save_adoption_rules(
    version: String,
    fluency_bar: String,
    max_active_goals_per_squad: String,
    eval_max_age_days: String,
) -> Result<super::Outcome, ServerFnError> {
    let (loops, actor) = server::loops()?;
    let form = SaveAdoptionRules { version, fluency_bar, max_active_goals_per_squad, eval_max_age_days };
    let input = match rules_form(&form) {
        Ok(input) => input,
        Err(errors) => return Ok(super::Outcome::Invalid(errors)),
    };
    // The query makes the address differ from the dashboard's own, so the browser loads it again.
    server::write(loops.set_adoption_rules(&actor, &input).await, |s| {
        format!("/adoption?rules={}#rules-heading", s.version.0)
    })
}

/// Reads the rules form: the fluency bar is typed as a percentage, the API's rule is a share. The
/// domain's checks run on the result, in the browser before submitting and on the server after.
pub fn rules_form(f: &SaveAdoptionRules) -> Result<AdoptionRulesInput, FieldErrors> {
    let mut c = Checker::new();
    let version = c.check("version", parse_id("version", &f.version).map_err(|e| e.to_string()));
    let bar = c.required_number("fluency_bar", &f.fluency_bar).map(|pct| pct / 100.0);
    let whole = |c: &mut Checker, field: &str, raw: &str| c.optional_whole(field, raw).flatten().map(super::clamp_u32);
    let goals = whole(&mut c, "max_active_goals_per_squad", &f.max_active_goals_per_squad);
    let days = whole(&mut c, "eval_max_age_days", &f.eval_max_age_days);
    let input =
        AdoptionRulesInput { version, fluency_bar: bar, max_active_goals_per_squad: goals, eval_max_age_days: days };
    let mut errors = c.errors;
    // The domain's rules on whatever parsed, so a form shows every problem at once; a field that did not
    // parse keeps its own message only.
    if let Err(found) = input.parse() {
        for (field, messages) in found.0 {
            if errors.get(&field).is_some() {
                continue;
            }
            if field == "fluency_bar" {
                // The domain speaks of a share; this form of a percentage.
                errors.add(&field, "must be above 0 % and at most 100 %");
                continue;
            }
            for message in messages {
                errors.add(&field, message);
            }
        }
    }
    if errors.is_empty() { Ok(input) } else { Err(errors) }
}

#[server]
pub async fn load_experiments() -> Result<Vec<Experiment>, ServerFnError> {
    let (loops, actor) = server::loops()?;
    server::read(loops.list_experiments(&actor).await)
}

#[server]
pub async fn load_experiment(key: String) -> Result<ExperimentPage, ServerFnError> {
    let (loops, actor) = server::loops()?;
    server::read(loops.experiment_page(&actor, &key).await)
}

/// Stops an experiment before its last day; back to its page.
#[server]
pub async fn stop_experiment(key: String) -> Result<Outcome, ServerFnError> {
    let (loops, actor) = server::loops()?;
    server::write(loops.stop_experiment(&actor, &key).await, |e| format!("/experiments/{}?stopped=1", e.key))
}

/// Defines an A/B experiment from the form; on to its page. The form names the loop `loop_key` (`loop`
/// is a Rust keyword, and a server function's arguments are its form's field names), so the domain's
/// message for `loop` is shown under that field.
#[server]
pub async fn create_experiment(
    key: String,
    name: String,
    loop_key: String,
    control: String,
    treatment: String,
    starts_on: String,
    ends_on: String,
    expected_share: String,
    control_model: String,
    treatment_model: String,
) -> Result<Outcome, ServerFnError> {
    let (loops, actor) = server::loops()?;
    let (control_model, treatment_model) =
        match (optional_id("control_model", &control_model), optional_id("treatment_model", &treatment_model)) {
            (Ok(c), Ok(t)) => (c, t),
            (c, t) => {
                let mut errors = FieldErrors::new();
                for found in [c.err(), t.err()].into_iter().flatten() {
                    for (field, messages) in found.0 {
                        for m in messages {
                            errors.add(&field, m);
                        }
                    }
                }
                return Ok(Outcome::Invalid(errors));
            }
        };
    let expected_share = match expected_share.trim() {
        "" => None,
        raw => match raw.parse::<f64>() {
            // The form asks for a percentage, as people say "a 50/50 split".
            Ok(percent) => Some(percent / 100.0),
            Err(_) => {
                return Ok(Outcome::Invalid(FieldErrors::single("expected_share", "must be a number (a percentage)")));
            }
        },
    };
    let input = ExperimentInput {
        key,
        name,
        loop_key,
        control,
        treatment,
        starts_on,
        ends_on,
        expected_share,
        control_model,
        treatment_model,
    };
    let result = loops.create_experiment(&actor, &input).await.map_err(|e| match e {
        slope_service::ServiceError::Invalid(fields) => {
            slope_service::ServiceError::Invalid(fields.renamed("loop", "loop_key"))
        }
        other => other,
    });
    server::write(result, |e| format!("/experiments/{}", e.key))
}
