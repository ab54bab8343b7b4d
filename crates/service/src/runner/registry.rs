//! The model registry: models with lineage and evals, the `champion`/`challenger` aliases, the
//! promotion gate, and the champion's scores published as metric points.

use std::path::Path;
use std::sync::Arc;

use chrono::Utc;
use serde::Serialize;
use slope_domain::{
    Action, Actor, Alias, AliasKind, BOOTSTRAP_REPLICATES, Contender, EvalItems, ExperimentEvidence, GatePolicy,
    GatePolicyInput, Key, MetricInput, Model, ModelEval, ModelKind, OfflineRule, OnlineRule, OrgId, PointInput,
    Promotion, PromotionDecision, RewardMargin, TrainMetrics, reward_margin,
};
use slope_store::NewModel;

use super::{MODEL_FILES, Runner, invalid, unique_id};
use crate::error::internal;
use crate::{Result, ServiceError};

/// A model with its aliases and promotion history, as the models page and API show it.
#[derive(Clone, Debug, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ModelView {
    #[serde(flatten)]
    pub model: Model,
    /// `(loop, alias)` pairs naming this model.
    pub aliases: Vec<Alias>,
    /// The chain of base models, nearest first.
    pub lineage: Vec<Model>,
}

/// The answer of the promotion gate.
#[derive(Clone, Debug, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PromotionOutcome {
    pub accepted: bool,
    pub reason: String,
    pub record: Promotion,
}

impl Runner {
    pub(super) async fn model_record(&self, org: OrgId, id: i64) -> Result<Model> {
        self.store.model(org, id).await?.ok_or_else(|| ServiceError::NotFound(format!("model {id} not found")))
    }

    /// The organisation's models, or one loop's (404 for a loop that has no events, metrics or models).
    pub async fn models(&self, actor: &Actor, loop_key: Option<&str>) -> Result<Vec<Model>> {
        let org = actor.authorize(Action::Read)?;
        let models = self.store.list_models(org, loop_key).await?;
        if let Some(loop_key) = loop_key
            && models.is_empty()
        {
            self.loops.ensure_loop(org, loop_key).await?;
        }
        Ok(models)
    }

    pub async fn aliases(&self, actor: &Actor, loop_key: Option<&str>) -> Result<Vec<Alias>> {
        let org = actor.authorize(Action::Read)?;
        Ok(self.store.aliases(org, loop_key).await?)
    }

    pub async fn promotions(&self, actor: &Actor, loop_key: Option<&str>) -> Result<Vec<Promotion>> {
        let org = actor.authorize(Action::Read)?;
        Ok(self.store.promotions(org, loop_key).await?)
    }

    pub async fn model(&self, actor: &Actor, id: i64) -> Result<ModelView> {
        let org = actor.authorize(Action::Read)?;
        let model = self.model_record(org, id).await?;
        let aliases = self.store.aliases(org, None).await?.into_iter().filter(|a| a.model_id == id).collect();
        let mut lineage = Vec::new();
        let mut next = model.base_model_id;
        while let Some(base) = next {
            if lineage.len() > 32 {
                break;
            }
            match self.store.model(org, base).await? {
                Some(m) => {
                    next = m.base_model_id;
                    lineage.push(m);
                }
                None => break,
            }
        }
        Ok(ModelView { model, aliases, lineage })
    }

    /// Registers a model directory (`config.json`, `model.safetensors`) such as the shipped base model.
    /// Importing the same name again returns the model already registered.
    pub async fn import_model(&self, actor: &Actor, name: &str, dir: &Path, loop_key: Option<&str>) -> Result<Model> {
        let org = actor.authorize(Action::Operate)?;
        if let Some(existing) = self.store.model_by_name(org, name).await? {
            return Ok(existing);
        }
        let (device, owned) = (slope_runner::device(), dir.to_path_buf());
        // A folder that is not a model is the caller's mistake, named on the field they gave.
        let model = tokio::task::spawn_blocking(move || slope_runner::Model::load(&owned, &device))
            .await
            .map_err(|e| internal("loading a model", e))?
            .map_err(|e| invalid("dir", e.to_string()))?;
        let prefix = format!("runner/{}/models/{}", org.0, unique_id("m-"));
        self.put_dir(dir, &MODEL_FILES, &prefix).await?;
        // The provenance file is a document of the model's makers; it is kept as it is and shown.
        let provenance = std::fs::read(dir.join("provenance.json"))
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .unwrap_or(serde_json::json!({}));
        let record = self
            .store
            .create_model(
                org,
                &NewModel {
                    name,
                    loop_key,
                    kind: ModelKind::Import,
                    base_model_id: None,
                    dataset_digest: None,
                    job_id: None,
                    path: &prefix,
                    config: model.config(),
                    parameters: model.config().parameters() as i64,
                    train_metrics: &TrainMetrics::Provenance(provenance),
                },
            )
            .await?;
        self.cache_model(org, record.id, Arc::new(model));
        Ok(record)
    }

    /// Names a model its loop's challenger (the model a running experiment serves to its treatment arm).
    pub async fn set_challenger(&self, actor: &Actor, loop_key: &str, model_id: i64) -> Result<Alias> {
        let org = actor.authorize(Action::Operate)?;
        Key::parse(loop_key).map_err(|m| invalid("loop", m))?;
        self.model_record(org, model_id).await?;
        Ok(self.store.set_alias(org, loop_key, AliasKind::Challenger, model_id, Utc::now()).await?)
    }

    /// The model an alias of the loop points at, if any.
    pub(super) async fn aliased(&self, org: OrgId, loop_key: &str, alias: AliasKind) -> Result<Option<Alias>> {
        Ok(self.store.alias(org, loop_key, alias).await?)
    }

    /// The promotion gate. The model becomes the loop's champion only when its reward beats the
    /// champion's on the same held-out data and, once the loop has a champion, an experiment served
    /// exactly this model against that champion and its analysis meets the loop's policy (not
    /// significantly worse, or significantly better, by the always-valid confidence sequence).
    /// Experiments of other models are not evidence about this one; without a matching experiment the
    /// gate refuses, naming the experiment it needs. Every decision, accepted or refused, is recorded.
    pub async fn promote(&self, actor: &Actor, loop_key: &str, model_id: i64) -> Result<PromotionOutcome> {
        let org = actor.authorize(Action::Operate)?;
        let key = Key::parse(loop_key).map_err(|m| invalid("loop", m))?;
        let challenger = self.model_record(org, model_id).await?;
        if let Some(l) = &challenger.loop_key
            && l != key.as_str()
        {
            return Err(invalid(
                "model_id",
                format!("model {model_id} was trained for loop {l}, not {}", key.as_str()),
            ));
        }
        let champion = match self.aliased(org, key.as_str(), AliasKind::Champion).await? {
            Some(a) => Some(self.model_record(org, a.model_id).await?),
            None => None,
        };
        if champion.as_ref().is_some_and(|c| c.id == model_id) {
            return Err(ServiceError::Conflict(format!(
                "model {model_id} is already the champion of {}",
                key.as_str()
            )));
        }
        let policy = self.store.gate_policy(org, key.as_str()).await?;
        let margin = match &champion {
            Some(champ) => self.reward_margin(org, &challenger, champ).await?,
            None => None,
        };
        let mut verdict =
            offline_verdict(&challenger, champion.as_ref(), key.as_str(), policy.offline, margin.as_ref());
        let mut experiment = None;
        if let (Ok(offline), Some(champ)) = (&verdict, &champion) {
            let offline = offline.clone();
            match self.matching_experiment(org, key.as_str(), champ.id, challenger.id).await? {
                None => {
                    verdict = Err(format!(
                        "no experiment of {} served {} (model {}) against the champion {} (model {}): start one with control_model {} and treatment_model {}, and promote once both arms have outcomes",
                        key.as_str(),
                        challenger.name,
                        challenger.id,
                        champ.name,
                        champ.id,
                        champ.id,
                        challenger.id
                    ))
                }
                Some((experiment_key, Err(why))) => {
                    verdict = Err(format!("experiment {experiment_key} cannot be analysed yet: {why}"));
                    experiment = Some(ExperimentEvidence::NotAnalysed { key: experiment_key, not_analysed: why });
                }
                Some((experiment_key, Ok(report))) => {
                    let av = &report.always_valid;
                    let interval = format!(
                        "always-valid 95 % interval of the acceptance difference [{:.4}, {:.4}]",
                        av.ci_low, av.ci_high
                    );
                    verdict = match policy.online {
                        OnlineRule::NotWorse if av.ci_high < 0.0 => Err(format!(
                            "experiment {experiment_key}: the challenger's acceptance is significantly worse ({interval})"
                        )),
                        OnlineRule::Better if av.ci_low.is_nan() || av.ci_low <= 0.0 => Err(format!(
                            "experiment {experiment_key}: the loop's gate asks for a challenger significantly better online, and it is not yet ({interval})"
                        )),
                        rule => Ok(format!("{offline}; experiment {experiment_key}: {} ({interval})", rule.label())),
                    };
                    experiment = Some(ExperimentEvidence::Analysed {
                        key: experiment_key,
                        difference: report.difference.estimate,
                        always_valid_ci: [av.ci_low, av.ci_high],
                        always_valid_p: av.p_value,
                    });
                }
            }
        }
        let (accepted, reason) = match verdict {
            Ok(r) => (true, r),
            Err(r) => (false, r),
        };
        let decision = PromotionDecision {
            challenger: Contender::from(&challenger),
            champion: champion.as_ref().map(Contender::from),
            experiment,
            online_rule: champion.as_ref().map(|_| policy.online),
            offline_rule: champion.as_ref().map(|_| policy.offline),
            offline_margin: margin.and_then(|m| m.ok()),
            reason: reason.clone(),
        };
        let record = self
            .store
            .record_promotion(
                org,
                key.as_str(),
                model_id,
                champion.as_ref().map(|c| c.id),
                accepted,
                &decision,
                Utc::now(),
            )
            .await?;
        if accepted {
            tracing::info!(loop_key = key.as_str(), model = model_id, "promoted to champion");
            let promoted = self.model_record(org, model_id).await?;
            self.publish_champion_logged(org, key.as_str(), &promoted).await;
        }
        Ok(PromotionOutcome { accepted, reason, record })
    }

    /// Whether the model's latest eval kept its per-item results, which the gate's interval of the
    /// reward margin needs (an eval recorded before they were kept did not).
    pub async fn has_eval_items(&self, actor: &Actor, model_id: i64) -> Result<bool> {
        let org = actor.authorize(Action::Read)?;
        Ok(self.store.eval_items(org, model_id).await?.is_some())
    }

    /// The challenger's reward margin over the champion with its paired bootstrap interval over the
    /// held-out items both were evaluated on: `None` when their rewards do not compare at all (no eval,
    /// other held-out data or settings: the offline verdict says so), `Some(Err)` naming what the
    /// items cannot give (an eval from before items were kept).
    async fn reward_margin(
        &self,
        org: OrgId,
        challenger: &Model,
        champion: &Model,
    ) -> Result<Option<std::result::Result<RewardMargin, String>>> {
        let (Some(eval), Some(_)) = (&challenger.eval, &champion.eval) else { return Ok(None) };
        if !challenger.evaluated_like(champion) {
            return Ok(None);
        }
        let (ours, theirs) =
            (self.store.eval_items(org, challenger.id).await?, self.store.eval_items(org, champion.id).await?);
        let missing =
            |m: &Model| format!("{} was evaluated before per-item results were kept: evaluate it again", m.name);
        let (ours, theirs) = match (ours, theirs) {
            (None, _) => return Ok(Some(Err(missing(challenger)))),
            (_, None) => return Ok(Some(Err(missing(champion)))),
            (Some(a), Some(b)) => (a, b),
        };
        let spec = eval.reward_spec.clone();
        // Seeded by the pair, so the same decision asked again draws the same resamples.
        let seed = (challenger.id as u64) << 32 ^ champion.id as u64;
        let margin =
            tokio::task::spawn_blocking(move || reward_margin(&ours, &theirs, &spec, BOOTSTRAP_REPLICATES, seed))
                .await
                .map_err(|e| internal("resampling the reward margin", e))?;
        Ok(Some(margin))
    }

    /// The loop's most recently started experiment that served exactly `challenger` against
    /// `champion`, with its analysis or why there is none yet.
    async fn matching_experiment(
        &self,
        org: OrgId,
        loop_key: &str,
        champion: i64,
        challenger: i64,
    ) -> Result<Option<(String, std::result::Result<slope_metrics::ab::AbReport, String>)>> {
        let today = Utc::now().date_naive();
        let experiment = self
            .loops
            .list_experiments(&Actor::system(org, "runner"))
            .await?
            .into_iter()
            .filter(|e| e.loop_key == loop_key && e.starts_on <= today && e.served(Some(champion), challenger))
            .max_by_key(|e| (e.starts_on, e.id));
        let Some(e) = experiment else { return Ok(None) };
        let analysis = match self.loops.analyze_experiment(&Actor::system(org, "runner"), &e.key).await {
            Ok(a) => Ok(a.report),
            Err(ServiceError::Conflict(why)) => Err(why),
            Err(other) => return Err(other),
        };
        Ok(Some((e.key, analysis)))
    }

    /// The loop's promotion gate policy (404 for a loop that has no events, metrics or models, as for
    /// its other pages: another organisation's loop is not told apart from none).
    pub async fn gate_policy(&self, actor: &Actor, loop_key: &str) -> Result<GatePolicy> {
        let org = actor.authorize(Action::Read)?;
        let key = self.known_loop(org, loop_key).await?;
        Ok(self.store.gate_policy(org, key.as_str()).await?)
    }

    /// Sets the loop's promotion gate policy (what the reward margin must show offline and the
    /// experiment online).
    pub async fn set_gate_policy(&self, actor: &Actor, loop_key: &str, input: &GatePolicyInput) -> Result<GatePolicy> {
        let org = actor.authorize(Action::Operate)?;
        let key = self.known_loop(org, loop_key).await?;
        let (online, offline) = input.parse()?;
        Ok(self.store.set_gate_policy(actor, key.as_str(), online, offline).await?)
    }

    /// The key of a loop that has events, metrics or models; NotFound otherwise.
    async fn known_loop(&self, org: OrgId, loop_key: &str) -> Result<Key> {
        let key = Key::parse(loop_key).map_err(|m| ServiceError::NotFound(format!("loop {loop_key}: {m}")))?;
        if self.store.list_models(org, Some(key.as_str())).await?.is_empty() {
            self.loops.ensure_loop(org, key.as_str()).await?;
        }
        Ok(key)
    }

    /// Records an eval on its model and, when the model is its loop's champion, publishes the scores.
    pub(super) async fn record_eval(
        &self,
        org: OrgId,
        model_id: i64,
        eval: &ModelEval,
        items: &EvalItems,
    ) -> Result<()> {
        let updated = self.store.set_model_eval(org, model_id, eval, Some(items), Utc::now()).await?;
        self.publish_if_champion(org, &updated).await
    }

    /// Publishes a model's eval scores when it is its loop's champion.
    pub(super) async fn publish_if_champion(&self, org: OrgId, updated: &Model) -> Result<()> {
        if let Some(loop_key) = &updated.loop_key
            && self.aliased(org, loop_key, AliasKind::Champion).await?.is_some_and(|a| a.model_id == updated.id)
        {
            self.publish_champion_logged(org, loop_key, updated).await;
        }
        Ok(())
    }

    /// Publishing is a consequence of an eval or a promotion that has already been recorded; when it
    /// fails (say the metric key would be too long) it is logged and does not undo that.
    async fn publish_champion_logged(&self, org: OrgId, loop_key: &str, model: &Model) {
        if let Err(e) = self.publish_champion(org, loop_key, model).await {
            tracing::warn!(error = %e, loop_key, model = model.id, "publishing the champion's scores as metric points failed");
        }
    }

    /// Writes the champion's eval scores as points of the loop's `<loop>-champion-*` metrics (created
    /// as eval-score metrics on first use), so key results can be fed by model quality.
    async fn publish_champion(&self, org: OrgId, loop_key: &str, model: &Model) -> Result<()> {
        let Some(eval) = &model.eval else { return Ok(()) };
        let score = |name: &str| eval.scores.get(name).copied().filter(|v| !v.is_nan());
        let mut values: Vec<(&str, &str, f64)> = Vec::new();
        if let Some(v) = score("replay_acceptance") {
            values.push(("replay-acceptance", "replay character acceptance", v));
        }
        if let Some(v) = score("perplexity") {
            values.push(("perplexity", "held-out perplexity", v));
        }
        values.push(("reward", "reward", eval.reward));
        let system = Actor::system(org, "runner");
        let now = Utc::now().to_rfc3339();
        for (suffix, what, value) in values {
            let key = format!("{loop_key}-champion-{suffix}");
            let input = MetricInput {
                key: key.clone(),
                name: format!("{loop_key}: champion model {what}"),
                kind: "eval-score".into(),
                loop_key: loop_key.into(),
                granularity: "day".into(),
                ..Default::default()
            };
            self.loops.ensure_metric(&system, &input).await?;
            let point = PointInput { at: now.clone(), value: Some(value), n: None, ci_low: None, ci_high: None };
            self.loops.push_points(&system, &key, &[point]).await?;
        }
        Ok(())
    }
}

/// The offline half of the gate: the challenger must have an eval, and beat an evaluated champion's
/// reward on the same held-out data, measured the same way, as the loop's `rule` asks: with a margin
/// whose paired bootstrap interval lies above zero, or only a higher reward (the interval is stated
/// either way when it is known). `Ok` carries the reason to accept, `Err` the reason to refuse.
fn offline_verdict(
    challenger: &Model,
    champion: Option<&Model>,
    loop_key: &str,
    rule: OfflineRule,
    margin: Option<&std::result::Result<RewardMargin, String>>,
) -> std::result::Result<String, String> {
    let Some(reward) = challenger.reward else {
        return Err(format!("model {} has no eval yet: run an eval job first", challenger.name));
    };
    let Some(champ) = champion else {
        return Ok(format!("{} is the first champion of {loop_key} (reward {reward:.4})", challenger.name));
    };
    let Some(champ_reward) = champ.reward else {
        return Ok(format!(
            "the champion {} was never evaluated; {} (reward {reward:.4}) replaces it",
            champ.name, challenger.name
        ));
    };
    if challenger.held_out_digest() != champ.held_out_digest() {
        return Err(format!(
            "{} and {} were evaluated on different held-out data; evaluate both on the same dataset",
            challenger.name, champ.name
        ));
    }
    if !challenger.evaluated_like(champ) {
        return Err(format!(
            "{} and {} were evaluated with different reward specs or eval settings, so their rewards do not compare; evaluate both the same way",
            challenger.name, champ.name
        ));
    }
    let interval = match margin {
        Some(Ok(m)) => format!(
            " (margin {:+.4}, 95 % bootstrap interval [{:+.4}, {:+.4}] over {} resamples of the held-out items)",
            m.margin, m.ci_low, m.ci_high, m.replicates
        ),
        Some(Err(why)) => format!(" (no interval: {why})"),
        None => String::new(),
    };
    // A NaN reward never beats anything.
    if reward.partial_cmp(&champ_reward) != Some(std::cmp::Ordering::Greater) {
        return Err(format!(
            "reward {reward:.4} does not beat the champion {}'s {champ_reward:.4}{interval}",
            champ.name
        ));
    }
    if rule == OfflineRule::IntervalAboveZero {
        match margin {
            Some(Ok(m)) if m.ci_low > 0.0 => {}
            Some(Ok(_)) => {
                return Err(format!(
                    "reward {reward:.4} beats the champion {}'s {champ_reward:.4}, but the loop's gate asks for {} and it does not{interval}",
                    champ.name,
                    rule.label()
                ));
            }
            Some(Err(why)) => {
                return Err(format!("the loop's gate asks for {}, which cannot be computed: {why}", rule.label()));
            }
            None => return Err(format!("the loop's gate asks for {}, which cannot be computed", rule.label())),
        }
    }
    Ok(format!("reward {reward:.4} beats the champion {}'s {champ_reward:.4}{interval}", champ.name))
}
