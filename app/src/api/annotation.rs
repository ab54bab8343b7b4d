//! Server functions of expert annotation: the queues, a queue's page, an annotator's work page and their
//! answers, queue definitions, sampling, fine-tuning on annotations and annotation budgets.

// A server function takes one argument per form field, so that forms post to it without JavaScript; the
// long argument lists of a queue definition and of an annotation are their forms' shapes.
#![allow(clippy::too_many_arguments)]

use leptos::prelude::*;
use serde::{Deserialize, Serialize};
use slope_domain::*;

use super::Outcome;
#[cfg(feature = "ssr")]
use super::server;

/// The answer to an annotator's submission, as their page shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Answered {
    /// Stored; the next item (leased already) and where the queue stands.
    Saved(Box<Submitted>),
    /// The labels broke a rule; messages by field.
    Invalid(FieldErrors),
    /// Someone else took or completed the item, or it was answered already.
    Conflict(String),
}

#[server]
pub async fn load_annotation_queues() -> Result<Vec<QueueSummary>, ServerFnError> {
    let (annotations, actor) = server::annotations()?;
    server::read(annotations.queues(&actor).await)
}

#[server]
pub async fn load_queue_page(key: String) -> Result<QueuePage, ServerFnError> {
    let (annotations, actor) = server::annotations()?;
    server::read(annotations.queue_page(&actor, &key).await)
}

/// A queue's current definition, for its edit form.
#[server]
pub async fn load_queue_definition(key: String) -> Result<AnnotationQueue, ServerFnError> {
    let (annotations, actor) = server::annotations()?;
    server::read(annotations.queue_definition(&actor, &key).await)
}

/// An annotator's page of a queue; the item it shows is leased to them (or renewed) by loading it.
#[server]
pub async fn load_work_page(key: String) -> Result<WorkPage, ServerFnError> {
    let (annotations, actor) = server::annotations()?;
    server::read(annotations.work_page(&actor, &key).await)
}

/// Whether the request came from a plain form post (no JavaScript): the browser then wants a page, so
/// the answer is a redirect; a script's call wants the data.
#[cfg(feature = "ssr")]
fn from_a_plain_form() -> bool {
    use_context::<http::request::Parts>().is_some_and(|p| {
        p.headers.get(http::header::ACCEPT).and_then(|v| v.to_str().ok()).is_some_and(|v| v.contains("text/html"))
    })
}

/// An annotator's answer for the item they hold: `outcome` is `label` (the default), `skip` or `flag`.
/// From the page's script it answers the next item, so the page moves on in place; from a plain form it
/// redirects to the queue's page, which shows the next item (or the refusal, in its query).
#[server]
pub async fn submit_annotation(
    queue: String,
    item_id: String,
    outcome: Option<String>,
    correction: Option<String>,
    preference: Option<String>,
    rating: Option<String>,
    tags: Option<String>,
    note: Option<String>,
) -> Result<Answered, ServerFnError> {
    let (annotations, actor) = server::annotations()?;
    let parsed = annotation_form(&outcome, &correction, &preference, &rating, &tags, &note);
    let result = match (item_id.trim().parse::<i64>(), parsed) {
        (Ok(item), Ok(input)) => annotations.submit(&actor, &queue, item, &input).await,
        (Err(_), _) => Err(FieldErrors::single("item", "is not a valid id").into()),
        (_, Err(errors)) => Err(errors.into()),
    };
    let answered = match result {
        Ok(submitted) => Answered::Saved(Box::new(submitted)),
        Err(slope_service::ServiceError::Invalid(errors)) => Answered::Invalid(errors),
        Err(slope_service::ServiceError::Conflict(message)) => Answered::Conflict(message),
        Err(other) => return Err(ServerFnError::new(other.to_string())),
    };
    if from_a_plain_form() {
        let query = match &answered {
            Answered::Saved(_) => String::new(),
            Answered::Invalid(errors) => format!("?refused={}", urlencoding(&errors.to_string())),
            Answered::Conflict(message) => format!("?refused={}", urlencoding(message)),
        };
        leptos_axum::redirect(&format!("/annotate/{queue}{query}"));
    }
    Ok(answered)
}

/// The form's fields as an annotation input; the browser runs the same parse before sending.
pub fn annotation_form(
    outcome: &Option<String>,
    correction: &Option<String>,
    preference: &Option<String>,
    rating: &Option<String>,
    tags: &Option<String>,
    note: &Option<String>,
) -> Result<AnnotationInput, FieldErrors> {
    let rating = match rating.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(raw) => Some(raw.parse::<i64>().map_err(|_| FieldErrors::single("rating", "must be 1 to 5"))?),
    };
    let tags = tags
        .as_deref()
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
        .collect();
    Ok(AnnotationInput {
        outcome: outcome.clone().unwrap_or_default(),
        correction: correction.clone(),
        preference: preference.clone().filter(|p| !p.trim().is_empty()),
        rating,
        tags,
        note: note.clone(),
    })
}

/// Percent-encodes text for a query string.
pub fn urlencoding(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Samples another round into the queue; back to its page.
#[server]
pub async fn sample_queue(key: String) -> Result<Outcome, ServerFnError> {
    let (annotations, actor) = server::annotations()?;
    server::write(annotations.sample(&actor, &key).await, |s| {
        format!("/annotation-queues/{}?added={}", s.queue, s.added)
    })
}

/// Builds datasets with the queue's loop's annotations and fine-tunes the champion on them; on to the
/// job's page, which follows it live.
#[server]
pub async fn fine_tune_on_annotations(key: String, from: String, steps: String) -> Result<Outcome, ServerFnError> {
    let (annotations, actor) = server::annotations()?;
    let from = match from.parse::<DatasetBasis>() {
        Ok(f) => f,
        Err(m) => return Ok(Outcome::Invalid(FieldErrors::single("from", m))),
    };
    let Ok(steps) = steps.trim().parse::<usize>() else {
        return Ok(Outcome::Invalid(FieldErrors::single("steps", "must be a whole number")));
    };
    server::write(annotations.fine_tune(&actor, &key, from, steps).await, |f| format!("/jobs/{}", f.job.id))
}

/// The fields of the queue form, as a queue input. The browser runs the same parse, then the domain's
/// rules, before sending.
pub fn queue_form(f: &SaveAnnotationQueue) -> Result<QueueInput, FieldErrors> {
    let mut c = Checker::new();
    let number = |c: &mut Checker, field: &str, raw: &str| c.optional_number(field, raw).flatten();
    let whole = |c: &mut Checker, field: &str, raw: &str| c.optional_whole(field, raw).flatten();
    // The form asks for a percentage, as people say "a 10 % sample".
    let share = number(&mut c, "share", &f.share).map(|p| p / 100.0);
    let count = whole(&mut c, "count", &f.count);
    let seed = whole(&mut c, "seed", &f.seed);
    let limit = whole(&mut c, "limit", &f.limit);
    let overlap = whole(&mut c, "annotators_per_item", &f.annotators_per_item);
    let lease = whole(&mut c, "lease_minutes", &f.lease_minutes);
    let mut squads = Vec::new();
    for raw in f.squads.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        match raw.parse::<i64>() {
            Ok(id) => squads.push(id),
            Err(_) => c.fail("squads", format!("{raw:?} is not a squad id")),
        }
    }
    let input = QueueInput {
        key: f.key.clone(),
        name: f.name.clone(),
        loop_key: f.loop_key.clone(),
        sampling: SamplingInput {
            policy: f.policy.clone(),
            share,
            count,
            seed,
            limit,
            from: f.window_from.clone(),
            to: f.window_to.clone(),
            event_ids: f.event_ids.lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_owned).collect(),
        },
        guidelines: f.guidelines.clone(),
        labels: LabelSchema {
            correction: f.task == "correction",
            preference: f.task == "preference",
            rating: f.rating.is_some(),
            tags: f.tags.is_some(),
            tag_set: f.tag_set.split(',').map(str::trim).filter(|t| !t.is_empty()).map(str::to_owned).collect(),
        },
        annotators_per_item: overlap,
        annotator_role: Some(f.annotator_role.is_some()),
        squads,
        lease_minutes: lease,
    };
    let mut errors = c.errors;
    if let Err(more) = input.validate() {
        // The form names its fields flat: the sampling's fields keep their names (the window's days are
        // `window_from`/`window_to`), and the loop is `loop_key`.
        for (field, messages) in more.0 {
            let field = match field.as_str() {
                "loop" => "loop_key".to_owned(),
                "sampling.from" => "window_from".to_owned(),
                "sampling.to" => "window_to".to_owned(),
                "labels" | "labels.preference" => "task".to_owned(),
                "labels.tag_set" => "tag_set".to_owned(),
                other => other.strip_prefix("sampling.").unwrap_or(other).to_owned(),
            };
            for m in messages {
                errors.add(&field, m);
            }
        }
    }
    errors.into_result(input)
}

/// Defines a queue from the form, or makes the form the queue's next version when `version` (the one the
/// form was filled from) is given; on to its page.
#[server]
pub async fn save_annotation_queue(
    version: String,
    key: String,
    name: String,
    loop_key: String,
    policy: String,
    share: String,
    count: String,
    seed: String,
    limit: String,
    window_from: String,
    window_to: String,
    event_ids: String,
    guidelines: String,
    task: String,
    rating: Option<String>,
    tags: Option<String>,
    tag_set: String,
    annotators_per_item: String,
    annotator_role: Option<String>,
    squads: String,
    lease_minutes: String,
) -> Result<Outcome, ServerFnError> {
    let (annotations, actor) = server::annotations()?;
    let form = SaveAnnotationQueue {
        version: version.clone(),
        key,
        name,
        loop_key,
        policy,
        share,
        count,
        seed,
        limit,
        window_from,
        window_to,
        event_ids,
        guidelines,
        task,
        rating,
        tags,
        tag_set,
        annotators_per_item,
        annotator_role,
        squads,
        lease_minutes,
    };
    let input = match queue_form(&form) {
        Ok(input) => input,
        Err(errors) => return Ok(Outcome::Invalid(errors)),
    };
    let based_on = match super::optional_id("version", &version) {
        Ok(v) => v.map(Version),
        Err(errors) => return Ok(Outcome::Invalid(errors)),
    };
    let result = match based_on {
        None => annotations.create_queue(&actor, &input).await.map(|(q, _)| q),
        Some(v) => annotations.update_queue(&actor, &form.key, v, &input).await,
    };
    let result = result.map_err(|e| match e {
        slope_service::ServiceError::Invalid(fields) => slope_service::ServiceError::Invalid(
            fields
                .renamed("loop", "loop_key")
                .renamed("labels.preference", "task")
                .renamed("sampling.policy", "policy")
                .renamed("sampling.event_ids", "event_ids"),
        ),
        other => other,
    });
    server::write(result, |q| format!("/annotation-queues/{}", q.key))
}

/// A key result's annotation budget (`None`: the key result has none).
#[server]
pub async fn load_key_result_budget(id: i64) -> Result<Option<AnnotationBudget>, ServerFnError> {
    let (annotations, actor) = server::annotations()?;
    server::read(annotations.key_result_budget(&actor, KeyResultId(id)).await)
}

/// The annotation budgets of the key results a loop's acceptance metrics feed.
#[server]
pub async fn load_loop_budget(key: String) -> Result<LoopBudget, ServerFnError> {
    let (annotations, actor) = server::annotations()?;
    server::read(annotations.loop_budget(&actor, &key).await)
}
