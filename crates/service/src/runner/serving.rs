//! Serving: a suggestion from the loop's champion (or, for the treatment arm of a running experiment,
//! its challenger), the impression it leaves, the outcome the client reports, and the flush that turns
//! impressions into ordinary event batches of the loop.

use std::collections::HashMap;

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use slope_domain::{Action, Actor, AliasKind, FieldErrors, Impression, Key, MAX_SUGGESTION_CHARS, OrgId};
use slope_metrics::events::Format;
use slope_runner::RunnerError;
use slope_store::NewImpression;

use super::{MAX_CONTEXT_BYTES, Runner, invalid, unique_id};
use crate::error::internal;
use crate::loops::BatchInput;
use crate::{Result, ServiceError};

/// Served suggestions whose outcome has not been reported after this long count as not accepted.
pub const OUTCOME_TIMEOUT: Duration = Duration::minutes(5);

/// One served suggestion.
#[derive(Clone, Debug, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Completion {
    pub event_id: String,
    pub suggestion: String,
    pub model_id: i64,
    pub model: String,
    pub variant: String,
    pub latency_ms: f64,
}

/// What `POST /loops/{loop}/complete` takes.
#[derive(Clone, Debug, Default, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CompletionRequest {
    pub user_id: String,
    pub context: String,
    #[serde(default)]
    pub max_chars: Option<usize>,
    #[serde(default)]
    pub unit: Option<String>,
}

/// The last `max` bytes of a context (the model reads far less), cut at a character boundary.
fn tail_of(context: &str, max: usize) -> &str {
    if context.len() <= max {
        return context;
    }
    let mut cut = context.len() - max;
    while !context.is_char_boundary(cut) {
        cut += 1;
    }
    &context[cut..]
}

/// Which arm of an experiment a user is in: a stable hash of the experiment and the user, so a user
/// sees one model for the whole experiment on every server.
pub fn in_treatment(experiment_key: &str, user_id: &str, share: f64) -> bool {
    let h = Sha256::digest(format!("{experiment_key}\u{0}{user_id}").as_bytes());
    let x = u64::from_be_bytes(h[..8].try_into().expect("8 bytes")) as f64 / u64::MAX as f64;
    x < share
}

/// One impression as the loop's event: what was suggested, what the user kept and wrote. The fields
/// are in alphabetical order, the order the event body has always had (a JSON object's keys sorted), so
/// a batch retried under its idempotency key has the same content as before.
#[derive(Serialize)]
struct ServedEvent<'a> {
    accepted_chars: i64,
    attributes: ServedAttributes,
    context: &'a str,
    event_id: &'a str,
    final_text: Option<&'a str>,
    latency_ms: f64,
    #[serde(rename = "loop")]
    loop_key: &'a str,
    suggested_chars: i64,
    suggestion: Option<&'a str>,
    ts: String,
    unit: Option<&'a str>,
    user_id: &'a str,
    variant: &'a str,
}

#[derive(Serialize)]
struct ServedAttributes {
    model_id: i64,
    source: &'static str,
}

impl<'a> ServedEvent<'a> {
    fn of(i: &'a Impression) -> Self {
        let suggested = i.suggestion.chars().count() as i64;
        ServedEvent {
            event_id: &i.event_id,
            ts: i.at.to_rfc3339(),
            loop_key: &i.loop_key,
            user_id: &i.user_id,
            variant: &i.variant,
            suggested_chars: suggested,
            accepted_chars: i.accepted_chars.unwrap_or(0).min(suggested),
            latency_ms: i.latency_ms,
            unit: i.unit.as_deref(),
            context: &i.context,
            suggestion: (!i.suggestion.is_empty()).then_some(i.suggestion.as_str()),
            final_text: i.final_text.as_deref(),
            attributes: ServedAttributes { model_id: i.model_id, source: "slope-serving" },
        }
    }
}

impl Runner {
    /// The loop's challenger, if it has one: the model whose suggestions preference items set beside the
    /// served ones.
    pub(crate) async fn challenger(&self, org: OrgId, loop_key: &str) -> Result<Option<slope_domain::Model>> {
        match self.aliased(org, loop_key, AliasKind::Challenger).await? {
            Some(alias) => Ok(Some(self.model_record(org, alias.model_id).await?)),
            None => Ok(None),
        }
    }

    /// What `model_id` suggests for each (context, characters) pair, generated on the blocking pool in
    /// one go and recording nothing: annotation queues set these beside what was served.
    pub(crate) async fn suggest_many(
        &self,
        org: OrgId,
        model_id: i64,
        asks: Vec<(String, usize)>,
    ) -> Result<Vec<String>> {
        let (_, model) = self.loaded(org, model_id).await?;
        tokio::task::spawn_blocking(move || {
            let generator = slope_runner::Generator::new(&model);
            asks.iter()
                .map(|(context, chars)| {
                    let chars = (*chars).clamp(1, MAX_SUGGESTION_CHARS);
                    let tail = tail_of(context, MAX_CONTEXT_BYTES);
                    let s = generator.suggest(tail, chars * 4)?;
                    Ok(s.chars().take(chars).collect::<String>())
                })
                .collect::<std::result::Result<Vec<String>, RunnerError>>()
        })
        .await
        .map_err(|e| internal("generating", e))?
        .map_err(|e| internal("generating", e))
    }

    /// A suggestion for `context` from the loop's champion, or from its challenger for the users an
    /// active experiment assigns to the treatment. The impression is recorded and becomes an event of
    /// the loop once its outcome is reported (or after [`OUTCOME_TIMEOUT`], as not accepted).
    pub async fn complete(&self, actor: &Actor, loop_key: &str, request: &CompletionRequest) -> Result<Completion> {
        let org = actor.authorize(Action::Ingest)?;
        let key = Key::parse(loop_key).map_err(|m| invalid("loop", m))?;
        let mut errors = FieldErrors::new();
        let user = request.user_id.trim();
        if user.is_empty() || user.len() > 200 {
            errors.add("user_id", "must be 1 to 200 characters");
        }
        let max_chars = request.max_chars.unwrap_or(16);
        if !(1..=MAX_SUGGESTION_CHARS).contains(&max_chars) {
            errors.add("max_chars", format!("must be between 1 and {MAX_SUGGESTION_CHARS}"));
        }
        if let Some(unit) = &request.unit
            && unit.len() > 200
        {
            errors.add("unit", "must be at most 200 characters");
        }
        if !errors.is_empty() {
            return Err(errors.into());
        }
        // Serving is the hot path: whether the loop exists at all is asked only when it has no champion,
        // to tell an unknown loop (404) from one not promoted yet (409).
        let Some(champion) = self.aliased(org, key.as_str(), AliasKind::Champion).await? else {
            if self.store.list_models(org, Some(key.as_str())).await?.is_empty() {
                self.loops.ensure_loop(org, key.as_str()).await?;
            }
            return Err(ServiceError::Conflict(format!(
                "loop {} has no champion model yet; promote one first",
                key.as_str()
            )));
        };
        let active = self.active_experiment(org, key.as_str()).await?;
        let challenger = self.aliased(org, key.as_str(), AliasKind::Challenger).await?;
        let (model_id, variant) = match (&active, &challenger) {
            (Some(e), Some(c)) if in_treatment(&e.key, user, e.expected_share) => {
                (c.model_id, Some(e.treatment.clone()))
            }
            (Some(e), _) => (champion.model_id, Some(e.control.clone())),
            _ => (champion.model_id, None),
        };
        let (record, model) = self.loaded(org, model_id).await?;
        let variant = variant.unwrap_or_else(|| record.name.clone());
        let context = tail_of(&request.context, MAX_CONTEXT_BYTES);
        let owned = context.to_string();
        let started = std::time::Instant::now();
        let suggestion = tokio::task::spawn_blocking(move || {
            let s = slope_runner::Generator::new(&model).suggest(&owned, max_chars * 4)?;
            Ok::<_, RunnerError>(s.chars().take(max_chars).collect::<String>())
        })
        .await
        .map_err(|e| internal("generating", e))?
        .map_err(|e| internal("generating", e))?;
        let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
        let event_id = unique_id("cmp-");
        self.store
            .record_impression(
                org,
                &NewImpression {
                    event_id: &event_id,
                    loop_key: key.as_str(),
                    user_id: user,
                    variant: &variant,
                    model_id,
                    context,
                    suggestion: &suggestion,
                    latency_ms,
                    unit: request.unit.as_deref(),
                    at: Utc::now(),
                },
            )
            .await?;
        Ok(Completion { event_id, suggestion, model_id, model: record.name, variant, latency_ms })
    }

    /// Records what the user did with a suggestion: how many of its characters they kept and what they
    /// wrote. Reported once; a repeat returns the first report.
    pub async fn record_outcome(
        &self,
        actor: &Actor,
        loop_key: &str,
        event_id: &str,
        accepted_chars: i64,
        final_text: Option<&str>,
    ) -> Result<Impression> {
        let org = actor.authorize(Action::Ingest)?;
        let served = self.store.impression(org, loop_key, event_id).await?.ok_or_else(|| {
            ServiceError::NotFound(format!("no suggestion {event_id:?} was served in loop {loop_key}"))
        })?;
        if served.outcome_at.is_none() && served.at < Utc::now() - OUTCOME_TIMEOUT {
            return Err(ServiceError::Conflict(format!(
                "suggestion {event_id:?} was served more than {} minutes ago and is recorded as not accepted",
                OUTCOME_TIMEOUT.num_minutes()
            )));
        }
        let suggested = served.suggestion.chars().count() as i64;
        if !(0..=suggested).contains(&accepted_chars) {
            return Err(invalid(
                "accepted_chars",
                format!("must be between 0 and the suggestion's {suggested} characters"),
            ));
        }
        if final_text.is_some_and(|t| t.len() > MAX_CONTEXT_BYTES) {
            return Err(invalid("final_text", format!("must be at most {MAX_CONTEXT_BYTES} bytes")));
        }
        // Checked before writing: the outcome is set once, so a refused value must never be stored.
        Ok(self
            .store
            .record_impression_outcome(org, loop_key, event_id, accepted_chars, final_text, Utc::now())
            .await?)
    }

    /// Turns served suggestions whose outcome is known (or overdue) into ordinary event batches of their
    /// loops, so acceptance, A/B analysis and datasets see them. Returns the number of events written.
    ///
    /// This is upkeep across organisations (the impressions of every organisation are read at once);
    /// each group is ingested as the system actor of its own organisation.
    pub async fn flush_impressions(&self, now: DateTime<Utc>) -> Result<usize> {
        let ready = self.store.ready_impressions(now - OUTCOME_TIMEOUT, 5000).await?;
        let mut groups: HashMap<(OrgId, String), Vec<Impression>> = HashMap::new();
        for i in ready {
            groups.entry((i.org_id, i.loop_key.clone())).or_default().push(i);
        }
        let mut written = 0;
        for ((org, loop_key), rows) in groups {
            let mut body = Vec::new();
            for i in &rows {
                serde_json::to_writer(&mut body, &ServedEvent::of(i)).expect("events serialise");
                body.push(b'\n');
            }
            let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
            let key = format!("impressions-{}-{}", ids.iter().min().unwrap_or(&0), ids.iter().max().unwrap_or(&0));
            let input = BatchInput {
                loop_key: &loop_key,
                body: &body,
                format: Format::Ndjson,
                gzip: false,
                idempotency_key: Some(&key),
            };
            self.loops.ingest(&Actor::system(org, "runner"), input).await?;
            self.store.delete_impressions(&ids).await?;
            written += rows.len();
        }
        Ok(written)
    }
}
