//! An annotator's work: the item they hold (leased for the queue's lease time, on every server alike),
//! their answers, and the next item, which comes with each answer so their page moves on in place. Gold
//! answers, which operators set, are here too: they are answers about items.

use chrono::{Duration, Utc};
use slope_domain::*;

use super::Annotations;
use crate::{Result, ServiceError};

impl Annotations {
    /// The queue as an annotator works it: guidelines, labels, progress and the item they hold (leased
    /// to them now, or renewed when they held it already, so a reload resumes it).
    pub async fn work_page(&self, actor: &Actor, key: &str) -> Result<WorkPage> {
        let org = actor.authorize(Action::Annotate)?;
        let queue = self.stored_queue(org, key).await?;
        Self::eligible(actor, &queue)?;
        let item = self.lease(actor, &queue).await?;
        let progress = self.store.queue_progress(org, queue.id, Utc::now()).await?;
        let answered_by_you = self.store.answered_by(org, queue.id, &actor.label()).await?;
        let left_for_you = self.store.left_for(org, queue.id, &actor.label()).await?;
        Ok(WorkPage {
            queue_key: queue.key.clone(),
            queue_name: queue.settings.name.clone(),
            loop_key: queue.loop_key.clone(),
            guidelines: queue.settings.guidelines.clone(),
            guidelines_html: crate::markdown::to_safe_html(&queue.settings.guidelines),
            labels: queue.settings.labels.clone(),
            progress,
            answered_by_you,
            left_for_you,
            item,
        })
    }

    /// The item the actor should annotate next in the queue, leased to them; `None` when the queue has
    /// nothing left for them.
    pub async fn next_item(&self, actor: &Actor, key: &str) -> Result<Option<WorkItem>> {
        let org = actor.authorize(Action::Annotate)?;
        let queue = self.stored_queue(org, key).await?;
        Self::eligible(actor, &queue)?;
        self.lease(actor, &queue).await
    }

    async fn lease(&self, actor: &Actor, queue: &AnnotationQueue) -> Result<Option<WorkItem>> {
        let lease = Duration::minutes(i64::from(queue.settings.lease_minutes));
        let leased = self.store.lease_next(actor.org, queue.id, &actor.label(), lease, Utc::now()).await?;
        Ok(leased.map(|(item, until)| item.for_annotator(queue, until)))
    }

    /// The labels an item asks for: those of the queue version it was sampled under.
    async fn schema_of(&self, org: OrgId, queue: &AnnotationQueue, version: i64) -> Result<LabelSchema> {
        if version == queue.version {
            return Ok(queue.settings.labels.clone());
        }
        let versions = self.store.queue_versions(org, queue.id).await?;
        versions.into_iter().find(|v| v.0 == version).map(|v| v.1.labels).ok_or_else(|| {
            crate::error::internal("reading a queue version", format!("queue {} has no version {version}", queue.key))
        })
    }

    /// Stores the actor's answer for an item they hold: labels checked against what the item's queue
    /// version asks for, a skip, or a flag with its reason; then leases their next item. Refused with
    /// nothing stored: labels the item does not ask for, or bad ones (422 by field); an item not leased
    /// to them or a lease that ran out (422); an item someone else took or completed, or that they answered
    /// already (409).
    pub async fn submit(&self, actor: &Actor, key: &str, item_id: i64, input: &AnnotationInput) -> Result<Submitted> {
        let org = actor.authorize(Action::Annotate)?;
        let queue = self.stored_queue(org, key).await?;
        Self::eligible(actor, &queue)?;
        let item = self
            .store
            .queue_item(org, queue.id, item_id)
            .await?
            .ok_or_else(|| ServiceError::NotFound(format!("queue {} has no item {item_id}", queue.key)))?;
        let schema = self.schema_of(org, &queue, item.queue_version).await?;
        let submission = input.check(&schema, item.alternative.is_some())?;
        let (annotation, _) = self
            .store
            .submit_annotation(actor, queue.id, item_id, &actor.label(), actor.user(), &submission, Utc::now())
            .await?;
        let next = self.lease(actor, &queue).await?;
        let progress = self.store.queue_progress(org, queue.id, Utc::now()).await?;
        let answered_by_you = self.store.answered_by(org, queue.id, &actor.label()).await?;
        let left_for_you = self.store.left_for(org, queue.id, &actor.label()).await?;
        Ok(Submitted { annotation, progress, answered_by_you, left_for_you, next })
    }

    /// Makes an item part of the gold set with its known answer, checked like an annotation's labels
    /// (`None` takes it out). Annotators never see it; the queue page scores them against it.
    pub async fn set_gold(
        &self,
        actor: &Actor,
        key: &str,
        item_id: i64,
        answer: Option<&AnnotationInput>,
    ) -> Result<AnnotationItem> {
        let org = actor.authorize(Action::Operate)?;
        let queue = self.stored_queue(org, key).await?;
        let item = self
            .store
            .queue_item(org, queue.id, item_id)
            .await?
            .ok_or_else(|| ServiceError::NotFound(format!("queue {} has no item {item_id}", queue.key)))?;
        let labels = match answer {
            None => None,
            Some(input) => {
                let schema = self.schema_of(org, &queue, item.queue_version).await?;
                let checked = AnnotationInput { outcome: String::new(), note: None, ..input.clone() }
                    .check(&schema, item.alternative.is_some())?;
                Some(checked.labels)
            }
        };
        Ok(self.store.set_gold(actor, queue.id, item_id, labels.as_ref()).await?)
    }
}
