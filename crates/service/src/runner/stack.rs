//! A loop's post-training stack as a read: the service gathers the evidence (models, datasets, jobs,
//! decisions, experiments, alerts, the champion, the current season) and the domain derives the stages,
//! iterations and metabolism from it ([`slope_domain::derive_stack`]).

use chrono::Utc;
use slope_domain::{Action, Actor, AliasKind, Key, LoopStack, StackEvidence, derive_stack};

use super::Runner;
use crate::{Result, ServiceError};

pub use slope_domain::ANNOTATION_METHOD;

impl Runner {
    /// A loop's post-training stack: each stage's current artefact, status and last activity; the
    /// iterations derived from lineage, newest first; and the loop's metabolism per week.
    pub async fn loop_stack(&self, actor: &Actor, loop_key: &str) -> Result<LoopStack> {
        let org = actor.authorize(Action::Read)?;
        let key = Key::parse(loop_key).map_err(|m| ServiceError::NotFound(format!("loop {loop_key}: {m}")))?;
        let key = key.as_str();
        let models = self.store.list_models(org, Some(key)).await?;
        if models.is_empty() {
            self.loops.ensure_loop(org, key).await?;
        }
        let datasets = self.store.list_datasets(org).await?;
        let mut jobs: Vec<_> = self
            .store
            .list_jobs(org, 1000)
            .await?
            .into_iter()
            .filter(|j| j.spec.loop_key.as_deref() == Some(key))
            .collect();
        let promotions = self.store.promotions(org, Some(key)).await?;
        // The jobs that trained the promoted models, where they fell outside the recent jobs read above.
        for p in &promotions {
            let job_id = models.iter().find(|m| m.id == p.challenger_id).and_then(|m| m.job_id);
            if let Some(id) = job_id
                && !jobs.iter().any(|j| j.id == id)
                && let Some(job) = self.store.job(org, id).await?
            {
                jobs.push(job);
            }
        }
        let experiments = self.loops.list_experiments(actor).await?;
        let alerts = self.loops.drift_alerts(actor).await?;
        let champion = self.aliased(org, key, AliasKind::Champion).await?;
        let now = Utc::now();
        let today = now.date_naive();
        let season = self
            .store
            .list_seasons(org)
            .await?
            .into_iter()
            .filter(|s| s.starts_on <= today && today <= s.ends_on)
            .max_by_key(|s| s.starts_on);
        let annotations_per_day = self.store.annotations_per_day(org, key).await?;
        let gate = self.store.gate_policy(org, key).await?;
        let stack = derive_stack(&StackEvidence {
            loop_key: key,
            models: &models,
            datasets: &datasets,
            jobs: &jobs,
            promotions: &promotions,
            experiments: &experiments,
            alerts: &alerts,
            champion: champion.as_ref(),
            season: season.as_ref(),
            annotations_per_day: &annotations_per_day,
            now,
        });
        Ok(LoopStack { gate: Some(gate), ..stack })
    }
}
