//! Expert annotation as a service: queues of a loop's interactions, versioned like metric definitions
//! ([`Annotations::create_queue`], [`Annotations::update_queue`]); sampling interactions into them
//! (`sampling.rs`); annotators taking items one by one under a lease and answering them (`work.rs`);
//! exporting and importing labels (`exchange.rs`); and the annotation budget of a key result, from a
//! learning curve fitted to the loop's history (`budget.rs`). Datasets are built from annotations by the
//! runner (`Runner::build_datasets`), which reads them through the store.
//!
//! Who may do what: operators (`Operate`: leaders, admins, `write` tokens) define queues, sample, set
//! gold answers and import; readers (`Read`) see queue pages and exports; annotating needs `Annotate`
//! and the queue's own eligibility (the `annotator` role, or its squads; operators always). An annotator
//! sees the queues open to them and nothing else of the organisation.

mod budget;
mod exchange;

pub use exchange::MAX_IMPORT_BYTES;
mod sampling;
mod work;

use chrono::Utc;
use slope_domain::*;
use slope_store::Store;

use crate::loops::Loops;
use crate::runner::Runner;
use crate::{Result, ServiceError};

/// How many of the newest annotations a queue page lists.
const RECENT: usize = 20;

/// The annotation service. Cheap to clone.
#[derive(Clone)]
pub struct Annotations {
    store: Store,
    loops: Loops,
    runner: Runner,
}

impl std::fmt::Debug for Annotations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Annotations").finish_non_exhaustive()
    }
}

impl Annotations {
    pub fn new(store: Store, loops: Loops, runner: Runner) -> Annotations {
        Annotations { store, loops, runner }
    }

    /// Defines a queue on a loop and samples its first items. Everything the policy and labels need is
    /// checked first (the loop has interactions; a preference or disagreement queue needs the loop's
    /// challenger), so a refused definition leaves nothing behind.
    pub async fn create_queue(&self, actor: &Actor, input: &QueueInput) -> Result<(AnnotationQueue, Sampled)> {
        let org = actor.authorize(Action::Operate)?;
        let spec = input.validate()?;
        self.check_definition(org, &spec).await?;
        let queue = self.store.create_queue(actor, &spec).await?;
        let sampled = self.sample_into(actor, &queue).await?;
        Ok((queue, sampled))
    }

    /// Makes the input the queue's next version, if the queue is still at `based_on`. Its key and loop
    /// stay; items sampled before keep their version, later rounds use the new one.
    pub async fn update_queue(
        &self,
        actor: &Actor,
        key: &str,
        based_on: Version,
        input: &QueueInput,
    ) -> Result<AnnotationQueue> {
        let org = actor.authorize(Action::Operate)?;
        let current = self.stored_queue(org, key).await?;
        let spec = input.validate()?;
        let mut errors = FieldErrors::new();
        if spec.key.as_str() != current.key {
            errors.add("key", format!("stays {}: a queue's key never changes", current.key));
        }
        if spec.loop_key.as_str() != current.loop_key {
            errors.add("loop", format!("stays {}: define a new queue for another loop", current.loop_key));
        }
        errors.into_result(())?;
        self.check_definition(org, &spec).await?;
        Ok(self.store.update_queue(actor, key, based_on, &spec.settings).await?)
    }

    /// What a definition needs beyond its own fields.
    async fn check_definition(&self, org: OrgId, spec: &QueueSpec) -> Result<()> {
        let loop_key = spec.loop_key.as_str();
        if let Err(ServiceError::NotFound(m)) = self.loops.ensure_loop(org, loop_key).await {
            return Err(FieldErrors::single("loop", m).into());
        }
        let settings = &spec.settings;
        if (settings.labels.preference || settings.sampling.needs_challenger())
            && self.runner.challenger(org, loop_key).await?.is_none()
        {
            let field = if settings.labels.preference { "labels.preference" } else { "sampling.policy" };
            return Err(FieldErrors::single(
                field,
                format!(
                    "compares the loop's challenger with what was served, and loop {loop_key} has no challenger yet"
                ),
            )
            .into());
        }
        let squads = self.store.list_squads(org).await?;
        for squad in &settings.eligibility.squads {
            if !squads.iter().any(|s| s.id == *squad) {
                return Err(FieldErrors::single("squads", format!("no squad has the id {squad}")).into());
            }
        }
        Ok(())
    }

    /// A queue's current definition, for the form that makes its next version (operators only).
    pub async fn queue_definition(&self, actor: &Actor, key: &str) -> Result<AnnotationQueue> {
        let org = actor.authorize(Action::Operate)?;
        self.stored_queue(org, key).await
    }

    pub(crate) async fn stored_queue(&self, org: OrgId, key: &str) -> Result<AnnotationQueue> {
        self.store
            .queue(org, key)
            .await?
            .ok_or_else(|| ServiceError::NotFound(format!("no annotation queue has the key {key:?}")))
    }

    /// Refuses an actor the queue does not let annotate, naming who it lets.
    fn eligible(actor: &Actor, queue: &AnnotationQueue) -> Result<()> {
        if queue.settings.may_annotate(actor) {
            return Ok(());
        }
        let e = &queue.settings.eligibility;
        let who = match (e.annotator_role, e.squads.is_empty()) {
            (true, true) => "members with the annotator role".to_owned(),
            (true, false) => "members with the annotator role and members of its squads".to_owned(),
            (false, _) => "members of its squads".to_owned(),
        };
        Err(ServiceError::Forbidden(format!("queue {} is annotated by {who} (and its operators)", queue.key)))
    }

    async fn summary(&self, actor: &Actor, org: OrgId, queue: AnnotationQueue) -> Result<QueueSummary> {
        let progress = self.store.queue_progress(org, queue.id, Utc::now()).await?;
        let answered_by_you = self.store.answered_by(org, queue.id, &actor.label()).await?;
        let you_may_annotate = actor.can(Action::Annotate) && queue.settings.may_annotate(actor);
        Ok(QueueSummary { queue, progress, answered_by_you, you_may_annotate })
    }

    /// The queues the actor may see: all of them for readers, the ones open to them for annotators.
    pub async fn queues(&self, actor: &Actor) -> Result<Vec<QueueSummary>> {
        let org =
            if actor.can(Action::Read) { actor.authorize(Action::Read)? } else { actor.authorize(Action::Annotate)? };
        let mut out = Vec::new();
        for queue in self.store.list_queues(org, None).await? {
            if actor.can(Action::Read) || queue.settings.may_annotate(actor) {
                out.push(self.summary(actor, org, queue).await?);
            }
        }
        Ok(out)
    }

    /// A queue's page: definition and versions, progress, agreement and each annotator's quality,
    /// flagged items, the newest annotations, the daily volume and the gold set.
    pub async fn queue_page(&self, actor: &Actor, key: &str) -> Result<QueuePage> {
        let org = actor.authorize(Action::Read)?;
        let queue = self.stored_queue(org, key).await?;
        let items = self.store.queue_items(org, queue.id, None).await?;
        let annotations = self.store.queue_annotations(org, queue.id).await?;
        let versions = self
            .store
            .queue_versions(org, queue.id)
            .await?
            .into_iter()
            .map(|(version, settings, created_by, created_at)| QueueVersion {
                version,
                settings,
                created_by,
                created_at,
            })
            .collect();
        // Agreement is a computation over every annotation of the queue; it runs off the async threads.
        let (agreement, items, annotations) = tokio::task::spawn_blocking(move || {
            let report = agreement(&items, &annotations);
            (report, items, annotations)
        })
        .await
        .map_err(|e| crate::error::internal("computing agreement", e))?;
        let flagged = annotations
            .iter()
            .filter(|a| a.outcome == AnnotationOutcome::Flagged)
            .filter_map(|a| {
                let item = items.iter().find(|i| i.id == a.item_id && i.status == ItemStatus::Flagged)?;
                Some(FlaggedItem {
                    item: item.clone(),
                    annotator: a.annotator.clone(),
                    note: a.note.clone().unwrap_or_default(),
                    at: a.created_at,
                })
            })
            .collect();
        let recent = annotations
            .iter()
            .rev()
            .filter(|a| a.outcome == AnnotationOutcome::Labelled)
            .take(RECENT)
            .cloned()
            .collect();
        let mut per_day: std::collections::BTreeMap<chrono::NaiveDate, i64> = Default::default();
        for a in annotations.iter().filter(|a| a.outcome == AnnotationOutcome::Labelled) {
            *per_day.entry(a.created_at.date_naive()).or_default() += 1;
        }
        let gold = items.iter().filter(|i| i.gold.is_some()).cloned().collect();
        let summary = self.summary(actor, org, queue).await?;
        Ok(QueuePage {
            guidelines_html: crate::markdown::to_safe_html(&summary.queue.settings.guidelines),
            summary,
            versions,
            agreement,
            flagged,
            recent,
            per_day: per_day.into_iter().collect(),
            gold,
        })
    }

    /// Builds the loop's datasets with its annotations (`from`: annotations alone, or the events with the
    /// annotated ones replaced) and queues an SFT job from the loop's champion on them, evaluated on the
    /// held-out data the champion was evaluated on (so the gate can compare the two), for `steps` steps.
    pub async fn fine_tune(
        &self,
        actor: &Actor,
        key: &str,
        from: DatasetBasis,
        steps: usize,
    ) -> Result<AnnotatedFineTune> {
        let org = actor.authorize(Action::Operate)?;
        let queue = self.stored_queue(org, key).await?;
        if from == DatasetBasis::Events {
            return Err(FieldErrors::single(
                "from",
                "a fine-tune from a queue uses its annotations: annotations or both",
            )
            .into());
        }
        if !(1..=100_000).contains(&steps) {
            return Err(FieldErrors::single("steps", "must be 1 to 100000").into());
        }
        let champion = self
            .runner
            .aliases(actor, Some(&queue.loop_key))
            .await?
            .into_iter()
            .find(|a| a.alias == AliasKind::Champion)
            .ok_or_else(|| {
                ServiceError::Conflict(format!("loop {} has no champion to fine-tune from", queue.loop_key))
            })?;
        let built = self.runner.build_datasets(actor, &queue.loop_key, from).await?;
        let sft = built.sft.ok_or_else(|| {
            ServiceError::Conflict(format!("loop {} has no corrections to train on yet", queue.loop_key))
        })?;
        let champion_model = self.runner.model(actor, champion.model_id).await?.model;
        let held_out = match champion_model.held_out_digest() {
            Some(digest) => self.runner.datasets(actor).await?.into_iter().find(|d| d.digest == digest).map(|d| d.id),
            None => None,
        };
        let request = JobRequest {
            kind: "sft".into(),
            loop_key: Some(queue.loop_key.clone()),
            model_id: Some(champion.model_id),
            dataset_id: Some(sft.id),
            held_out_id: held_out,
            train: TrainConfig {
                steps,
                warmup_steps: (steps / 10).min(20),
                checkpoint_every: 0,
                ..TrainConfig::default()
            },
            ..Default::default()
        };
        let job = self.runner.submit(actor, &request).await?;
        Ok(AnnotatedFineTune {
            sft_dataset_id: sft.id,
            sft_rows: sft.rows,
            annotations_used: built.annotations_used,
            job,
        })
    }

    /// A queue's items for its operators and readers, optionally of one status.
    pub async fn items(&self, actor: &Actor, key: &str, status: Option<ItemStatus>) -> Result<Vec<AnnotationItem>> {
        let org = actor.authorize(Action::Read)?;
        let queue = self.stored_queue(org, key).await?;
        Ok(self.store.queue_items(org, queue.id, status).await?)
    }
}
