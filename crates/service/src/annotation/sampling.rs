//! Sampling a loop's interactions into a queue: candidates are the loop's events with a context and a
//! suggestion that the queue does not hold yet; the queue's policy chooses among them. Preference queues
//! and the disagreement policy ask the loop's challenger what it would have suggested.

use slope_domain::*;
use slope_metrics::examples::TextInteraction;
use slope_store::NewItem;

use super::Annotations;
use crate::error::internal;
use crate::{Result, ServiceError};

/// Candidates the disagreement policy asks the challenger about, per item it wants: the newest ones,
/// since generation costs a few milliseconds each.
const DISAGREEMENT_POOL_PER_ITEM: usize = 4;
const DISAGREEMENT_POOL_MAX: usize = 400;

impl Annotations {
    /// Samples another round of items into the queue under its current version.
    pub async fn sample(&self, actor: &Actor, key: &str) -> Result<Sampled> {
        let org = actor.authorize(Action::Operate)?;
        let queue = self.stored_queue(org, key).await?;
        self.sample_into(actor, &queue).await
    }

    /// The loop's interactions with a context and a suggestion, oldest first.
    pub(super) async fn interactions(&self, org: OrgId, loop_key: &str) -> Result<Vec<TextInteraction>> {
        let (_, bytes) = self.loops.loop_events(org, loop_key).await?;
        let all = tokio::task::spawn_blocking(move || slope_metrics::examples::text_interactions(&bytes))
            .await
            .map_err(|e| internal("reading events", e))?
            .map_err(|e| internal("reading events", e))?;
        Ok(all.into_iter().filter(|i| i.suggestion.is_some()).collect())
    }

    pub(super) async fn sample_into(&self, actor: &Actor, queue: &AnnotationQueue) -> Result<Sampled> {
        let org = actor.org;
        let settings = &queue.settings;
        let held = self.store.queue_event_ids(org, queue.id).await?;
        let interactions = self.interactions(org, &queue.loop_key).await?;
        if let Sampling::Explicit { event_ids } = &settings.sampling {
            let known: std::collections::HashSet<&str> = interactions.iter().map(|i| i.event_id.as_str()).collect();
            let missing: Vec<&str> = event_ids.iter().map(String::as_str).filter(|id| !known.contains(id)).collect();
            if !missing.is_empty() {
                let shown: Vec<&str> = missing.iter().take(10).copied().collect();
                return Err(FieldErrors::single(
                    "sampling.event_ids",
                    format!(
                        "{} of the named events are not interactions of loop {} with a context and a suggestion: {}{}",
                        missing.len(),
                        queue.loop_key,
                        shown.join(", "),
                        if missing.len() > shown.len() { ", …" } else { "" }
                    ),
                )
                .into());
            }
        }
        let fresh: Vec<&TextInteraction> = interactions.iter().filter(|i| !held.contains(&i.event_id)).collect();
        let mut candidates: Vec<Candidate> = fresh
            .iter()
            .map(|i| Candidate {
                event_id: i.event_id.clone(),
                at: i.ts,
                suggested_chars: i.suggested_chars as i64,
                accepted_chars: i.accepted_chars as i64,
                disagreement: None,
            })
            .collect();
        let challenger = if settings.labels.preference || settings.sampling.needs_challenger() {
            let Some(model) = self.runner.challenger(org, &queue.loop_key).await? else {
                return Err(ServiceError::Conflict(format!(
                    "queue {} compares the loop's challenger with what was served, and loop {} has no challenger now",
                    queue.key, queue.loop_key
                )));
            };
            Some(model)
        } else {
            None
        };
        // The challenger's suggestion per candidate index, where it was asked.
        let mut theirs: std::collections::HashMap<usize, String> = Default::default();
        if let (Sampling::Disagreement { count }, Some(model)) = (&settings.sampling, &challenger) {
            let pool = (*count as usize * DISAGREEMENT_POOL_PER_ITEM).min(DISAGREEMENT_POOL_MAX);
            let mut newest: Vec<usize> = (0..candidates.len()).collect();
            newest.sort_by(|&a, &b| candidates[b].at.cmp(&candidates[a].at));
            newest.truncate(pool);
            let asks = newest.iter().map(|&i| ask(fresh[i])).collect();
            let answers = self.runner.suggest_many(org, model.id, asks).await?;
            for (&i, answer) in newest.iter().zip(answers) {
                let served = fresh[i].suggestion.as_deref().unwrap_or_default();
                candidates[i].disagreement = Some(normalized_edit_distance(served, &answer));
                theirs.insert(i, answer);
            }
        }
        let chosen = settings.sampling.select(&candidates);
        if let Some(model) = challenger.as_ref().filter(|_| settings.labels.preference) {
            let missing: Vec<usize> = chosen.iter().copied().filter(|i| !theirs.contains_key(i)).collect();
            let answers =
                self.runner.suggest_many(org, model.id, missing.iter().map(|&i| ask(fresh[i])).collect()).await?;
            theirs.extend(missing.into_iter().zip(answers));
        }
        let mut identical = 0;
        let mut items = Vec::with_capacity(chosen.len());
        for i in chosen {
            let interaction = fresh[i];
            let alternative = match (&challenger, settings.labels.preference) {
                (Some(model), true) => {
                    let text = theirs.get(&i).cloned().unwrap_or_default();
                    if text.is_empty() || Some(text.as_str()) == interaction.suggestion.as_deref() {
                        identical += 1;
                        continue;
                    }
                    Some(Alternative { text, model_id: model.id, model: model.name.clone() })
                }
                _ => None,
            };
            items.push(new_item(interaction, alternative));
        }
        let needed = i64::from(settings.annotators_per_item);
        let added = self.store.add_items(actor, queue.id, queue.version, needed, &items).await?;
        Ok(Sampled {
            queue: queue.key.clone(),
            version: queue.version,
            considered: fresh.len(),
            added,
            identical,
            policy: settings.sampling.describe(),
        })
    }
}

/// An interaction as a queue's new item.
pub(super) fn new_item(i: &TextInteraction, alternative: Option<Alternative>) -> NewItem {
    NewItem {
        event_id: i.event_id.clone(),
        event_at: i.ts,
        context: i.context.clone(),
        suggestion: i.suggestion.clone(),
        final_text: i.final_text.clone(),
        suggested_chars: i.suggested_chars as i64,
        accepted_chars: i.accepted_chars as i64,
        alternative,
    }
}

/// What the challenger is asked for an interaction: its context, and as many characters as were served.
fn ask(i: &TextInteraction) -> (String, usize) {
    let served = i.suggestion.as_deref().map_or(0, |s| s.chars().count());
    (i.context.clone(), served.max(1))
}
