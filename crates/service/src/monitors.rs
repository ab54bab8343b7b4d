//! Watching the loop: monitors evaluated on a schedule, the alerts they fire, silences, each person's
//! inbox, and contact points. Deliveries to contact points are the notifier's (`notifier.rs`).
//!
//! Each evaluation reads what its kind needs (a loop's events for drift, a metric's points for
//! staleness and reversals, the jobs and the promotions), asks the domain for the findings that hold
//! now, reconciles them with the monitor's open alerts, and writes the changes together with their
//! notifications in one transaction. The route of a monitor's notifications is decided when they are
//! written: a squad's monitor reaches that squad's members and contact points; one without a squad the
//! organisation's leaders and admins and its organisation-wide contact points.

use chrono::{DateTime, Utc};

use slope_domain::*;
use slope_store::{Applied, Route, Store};

use crate::access::random_secret;
use crate::{Loops, Planning, Result, ServiceError};

/// Who evaluations act as, on alerts' histories.
pub const MONITORS_ACTOR: &str = "monitors";

/// Monitors, alerts, inboxes and contact points.
#[derive(Clone, Debug)]
pub struct Monitors {
    store: Store,
    loops: Loops,
    planning: Planning,
}

impl Monitors {
    pub fn new(store: Store, loops: Loops, planning: Planning) -> Self {
        Monitors { store, loops, planning }
    }

    // ---- monitors --------------------------------------------------------------------------------

    pub async fn list(&self, actor: &Actor) -> Result<Vec<Monitor>> {
        let org = actor.authorize(Action::Read)?;
        Ok(self.store.list_monitors(org).await?)
    }

    /// Creates or replaces the monitor of the input's key; returns it and whether it is new. What it
    /// names (its squad, loop and metric) must exist.
    pub async fn put(&self, actor: &Actor, input: &MonitorInput) -> Result<(Monitor, bool)> {
        let org = actor.authorize(Action::Operate)?;
        let spec = input.parse()?;
        let mut errors = FieldErrors::default();
        if let Some(squad) = spec.squad
            && self.store.get_squad(org, squad).await.is_err()
        {
            errors.add("squad_id", format!("no squad has id {squad}"));
        }
        if let Some(loop_key) = spec.rule.loop_key()
            && !self.loops.loop_known(org, loop_key).await?
        {
            errors.add("loop", format!("no loop {loop_key:?} has events or metrics"));
        }
        if let Some(metric) = spec.rule.metric()
            && self.store.metric(org, metric).await?.is_none()
        {
            errors.add("metric", format!("no metric has key {metric:?}"));
        }
        if !errors.is_empty() {
            return Err(errors.into());
        }
        Ok(self.store.put_monitor(actor, &spec, Utc::now()).await?)
    }

    /// Evaluates the monitor now, whatever its schedule (an operator's "run now").
    pub async fn run_now(&self, actor: &Actor, key: &str) -> Result<Evaluation> {
        let org = actor.authorize(Action::Operate)?;
        let monitor =
            self.store.monitor(org, key).await?.ok_or_else(|| ServiceError::NotFound(format!("no monitor {key:?}")))?;
        self.evaluate(org, &monitor, Utc::now()).await
    }

    /// Evaluates every enabled monitor of `org` whose current schedule slot no server has claimed yet.
    /// The upkeep calls this every round; `worker` names this server in the claims.
    pub async fn run_due(&self, org: OrgId, worker: &str, now: DateTime<Utc>) -> Result<Vec<Evaluation>> {
        let mut done = Vec::new();
        for monitor in self.store.list_monitors(org).await? {
            // A slot already evaluated (by any server: its last run says so) needs no claim, so a round
            // between two slots writes nothing.
            let ran = monitor.last_run_at.is_some_and(|at| monitor.slot(at) == monitor.slot(now));
            if !monitor.enabled
                || ran
                || !self.store.claim_monitor_slot(monitor.id, monitor.slot(now), worker, now).await?
            {
                continue;
            }
            match self.evaluate(org, &monitor, now).await {
                Ok(evaluation) => done.push(evaluation),
                // One monitor that cannot be evaluated (its metric removed, its events unreadable) says so
                // on its page and leaves the others alone.
                Err(e) => tracing::warn!(error = %e, monitor = monitor.key, %org, "evaluating a monitor failed"),
            }
        }
        Ok(done)
    }

    async fn evaluate(&self, org: OrgId, monitor: &Monitor, now: DateTime<Utc>) -> Result<Evaluation> {
        let findings = match self.findings(org, &monitor.rule, now).await {
            Ok(findings) => findings,
            Err(e) => {
                let shown = match &e {
                    ServiceError::Internal(_) => "internal error (see the server's log)".to_owned(),
                    other => other.to_string(),
                };
                self.store.record_monitor_run(monitor.id, now, Some(&shown)).await?;
                return Err(e);
            }
        };
        let open = self.store.open_alerts(monitor.id).await?;
        let changes = reconcile(&open, findings.clone());
        // Only new, resolved and unsilenced alerts notify anyone; the route is read only for them.
        let notifies = !changes.fire.is_empty()
            || !changes.resolve.is_empty()
            || (!changes.hold.is_empty() && self.store.silence_ended(monitor.id, now).await?);
        let route = if notifies { self.route(org, monitor.squad_id).await? } else { Route::default() };
        let Applied { fired, resolved, notifications } =
            self.store.apply_evaluation(org, monitor, &changes, &route, now).await?;
        self.store.record_monitor_run(monitor.id, now, None).await?;
        if fired + resolved > 0 {
            tracing::info!(monitor = monitor.key, %org, fired, resolved, notifications, "monitor evaluated");
        }
        Ok(Evaluation { monitor: monitor.key.clone(), at: now, findings, fired, resolved, notifications })
    }

    /// What holds now for `rule`.
    async fn findings(&self, org: OrgId, rule: &MonitorRule, now: DateTime<Utc>) -> Result<Vec<Finding>> {
        Ok(match rule {
            MonitorRule::Drift { loop_key, field, threshold, reference_days, recent_days } => {
                let (reference, recent) = drift_windows(now.date_naive(), *reference_days, *recent_days);
                match self.loops.measure_drift(org, loop_key, *field, reference, recent).await? {
                    // A window without values has nothing to compare: no finding, and none resolved
                    // wrongly either way (an open drift alert resolves, which is what the data says).
                    Err(_) => vec![],
                    Ok((drift, counts)) => drift_finding(
                        loop_key,
                        *field,
                        *threshold,
                        reference,
                        recent,
                        drift.psi,
                        drift.js_distance,
                        counts,
                    )
                    .into_iter()
                    .collect(),
                }
            }
            MonitorRule::Staleness { metric, max_age_hours } => {
                let (definition, points) = self.metric_points(org, metric).await?;
                let observed = points.iter().map(|p| p.observed_at).max();
                staleness_finding(metric, observed, max_age_hours.unwrap_or(definition.freshness_hours), now)
                    .into_iter()
                    .collect()
            }
            MonitorRule::JobFailed { loop_key, lookback_hours, stalled_minutes } => {
                let jobs = self.store.list_jobs(org, 500).await?;
                job_findings(&jobs, loop_key.as_deref(), *lookback_hours, *stalled_minutes, now)
            }
            MonitorRule::PromotionRefused { loop_key, lookback_hours } => {
                let promotions = self.store.promotions(org, loop_key.as_deref()).await?;
                promotion_findings(&promotions, loop_key.as_deref(), *lookback_hours, now)
            }
            MonitorRule::TrendReversal { metric, direction } => {
                let points: Vec<TrendPoint> =
                    self.metric_points(org, metric).await?.1.iter().map(TrendPoint::from).collect();
                reversal_finding(metric, &points, *direction).into_iter().collect()
            }
            MonitorRule::KeyResultBehind { below_probability } => {
                // The current season's outlook, as its dashboard shows it: assembled by the planning
                // service as the system (which may read everything).
                let system = Actor::system(org, MONITORS_ACTOR);
                match self.planning.current_season(&system).await? {
                    None => vec![],
                    Some(season) => {
                        let dashboard = self.planning.season_dashboard(&system, season.id).await?;
                        key_result_findings(&dashboard.outlook, *below_probability)
                    }
                }
            }
        })
    }

    /// A metric's current definition and its points, oldest first.
    async fn metric_points(&self, org: OrgId, metric: &str) -> Result<(MetricDefinition, Vec<MetricPoint>)> {
        let definition = self
            .store
            .metric(org, metric)
            .await?
            .ok_or_else(|| ServiceError::NotFound(format!("no metric has key {metric:?}")))?;
        let points = self.store.series(org, metric, definition.version).await?;
        Ok((definition, points))
    }

    /// Who a monitor's notifications go to now.
    async fn route(&self, org: OrgId, squad: Option<SquadId>) -> Result<Route> {
        let members = self.store.list_members(org).await?;
        let users = members
            .iter()
            .filter(|m| match squad {
                Some(squad) => m.squads.contains(&squad),
                None => matches!(m.role, Role::Leader | Role::Admin),
            })
            .map(|m| m.user_id)
            .collect();
        let contact_points = self
            .store
            .list_contact_points(org)
            .await?
            .into_iter()
            .filter(|c| c.squad_id == squad)
            .map(|c| c.id)
            .collect();
        Ok(Route { users, contact_points })
    }

    // ---- alerts ----------------------------------------------------------------------------------

    pub async fn alerts(&self, actor: &Actor, open_only: bool) -> Result<Vec<AlertView>> {
        let org = actor.authorize(Action::Read)?;
        let now = Utc::now();
        Ok(self
            .store
            .list_alerts(org, open_only, 200)
            .await?
            .into_iter()
            .map(|alert| AlertView { state: alert.state(now), alert })
            .collect())
    }

    pub async fn alert(&self, actor: &Actor, id: i64) -> Result<AlertDetail> {
        let org = actor.authorize(Action::Read)?;
        let alert = self.store.alert(org, id).await?.ok_or_else(|| ServiceError::NotFound(format!("no alert {id}")))?;
        let history = self.store.alert_history(org, id).await?;
        let can_silence = alert.resolved_at.is_none() && actor.can(silence_action(&alert));
        Ok(AlertDetail { view: AlertView { state: alert.state(Utc::now()), alert }, history, can_silence })
    }

    /// Silences an open alert: a squad's alert by anyone who may change that squad's goals, any other
    /// by an operator.
    pub async fn silence(&self, actor: &Actor, id: i64, input: &SilenceInput) -> Result<AlertView> {
        let org = actor.authorize(Action::Read)?;
        // Someone who may silence no alert at all is refused before anything is looked up, so the answer
        // says nothing of which alerts exist.
        if !actor.can(Action::Operate) {
            actor.authorize_some_goals()?;
        }
        let alert = self.store.alert(org, id).await?.ok_or_else(|| ServiceError::NotFound(format!("no alert {id}")))?;
        actor.authorize(silence_action(&alert))?;
        let now = Utc::now();
        let (length, note) = input.parse()?;
        let until = now + length;
        match self.store.silence_alert(actor, id, until, note.as_deref(), now).await? {
            Ok(alert) => Ok(AlertView { state: alert.state(now), alert }),
            Err(_) => Err(ServiceError::Conflict(format!("alert {id} has resolved; there is nothing to silence"))),
        }
    }

    /// The alerts page: the caller's inbox (for people), the alerts and the monitors.
    pub async fn alerts_page(&self, actor: &Actor) -> Result<AlertsPage> {
        // Only people have an inbox to show; a token's page has none.
        let inbox = match actor.user() {
            Some(_) => Some(self.inbox(actor).await?),
            None => None,
        };
        Ok(AlertsPage { inbox, alerts: self.alerts(actor, false).await?, monitors: self.list(actor).await? })
    }

    // ---- inbox -----------------------------------------------------------------------------------

    /// The caller's inbox. Alerts are routed to people; a token's inbox is always empty.
    pub async fn inbox(&self, actor: &Actor) -> Result<Inbox> {
        let org = actor.authorize(Action::Read)?;
        match actor.user() {
            Some(user) => Ok(Inbox {
                unread: self.store.unread_count(org, user).await?,
                items: self.store.inbox(org, user, 100).await?,
            }),
            None => Ok(Inbox { unread: 0, items: vec![] }),
        }
    }

    /// How many entries of the caller's inbox are unread (0 for tokens and the system).
    pub async fn unread(&self, actor: &Actor) -> Result<i64> {
        let org = actor.authorize(Action::Read)?;
        match actor.user() {
            Some(user) => Ok(self.store.unread_count(org, user).await?),
            None => Ok(0),
        }
    }

    /// Marks the caller's entries of `alert` (or all) read; returns how many were unread (0 for tokens,
    /// whose inbox is empty).
    pub async fn mark_read(&self, actor: &Actor, alert: Option<i64>) -> Result<u64> {
        let org = actor.authorize(Action::Read)?;
        match actor.user() {
            Some(user) => Ok(self.store.mark_read(org, user, alert, Utc::now()).await?),
            None => Ok(0),
        }
    }

    // ---- contact points and settings -----------------------------------------------------------

    /// The contact points. Operators only: a webhook's address is often a secret of its own (a Slack
    /// incoming webhook's is).
    pub async fn contact_points(&self, actor: &Actor) -> Result<Vec<ContactPoint>> {
        let org = actor.authorize(Action::Operate)?;
        Ok(self.store.list_contact_points(org).await?)
    }

    /// Adds a contact point with a new signing secret, shown in the answer and never again. An address
    /// in the server's own networks is refused unless the organisation allows it.
    pub async fn create_contact_point(&self, actor: &Actor, input: &ContactPointInput) -> Result<CreatedContactPoint> {
        let org = actor.authorize(Action::Operate)?;
        let spec = input.parse()?;
        let mut errors = FieldErrors::default();
        if let Some(squad) = spec.squad
            && self.store.get_squad(org, squad).await.is_err()
        {
            errors.add("squad_id", format!("no squad has id {squad}"));
        }
        if let Ok(ip) = spec.url.host().parse::<std::net::IpAddr>()
            && is_internal(ip)
            && !self.store.notification_settings(org).await?.allow_internal_webhooks
        {
            errors.add(
                "url",
                format!("{ip} is an address in the server's own networks, which this organisation does not allow (an admin can allow it in the notification settings)"),
            );
        }
        if !errors.is_empty() {
            return Err(errors.into());
        }
        let secret = random_secret("whsec_");
        let contact_point = self.store.create_contact_point(actor, &spec, &secret, Utc::now()).await?;
        Ok(CreatedContactPoint { contact_point, secret })
    }

    pub async fn remove_contact_point(&self, actor: &Actor, id: i64) -> Result<ContactPoint> {
        actor.authorize(Action::Operate)?;
        Ok(self.store.remove_contact_point(actor, id, Utc::now()).await?)
    }

    /// The deliveries of the outbox, newest first (of one contact point, or all).
    pub async fn deliveries(&self, actor: &Actor, contact_point: Option<i64>) -> Result<Vec<Delivery>> {
        let org = actor.authorize(Action::Operate)?;
        Ok(self.store.list_deliveries(org, contact_point, 200).await?)
    }

    /// One delivery's attempts, oldest first.
    pub async fn delivery_attempts(&self, actor: &Actor, delivery: i64) -> Result<Vec<DeliveryAttempt>> {
        let org = actor.authorize(Action::Operate)?;
        if self.store.delivery(org, delivery).await?.is_none() {
            return Err(ServiceError::NotFound(format!("no delivery {delivery}")));
        }
        Ok(self.store.delivery_attempts(org, delivery).await?)
    }

    pub async fn settings(&self, actor: &Actor) -> Result<NotificationSettings> {
        let org = actor.authorize(Action::Read)?;
        Ok(self.store.notification_settings(org).await?)
    }

    pub async fn set_settings(&self, actor: &Actor, settings: NotificationSettings) -> Result<NotificationSettings> {
        actor.authorize(Action::Administer)?;
        Ok(self.store.set_notification_settings(actor, settings, Utc::now()).await?)
    }
}

/// What silencing an alert asks of the caller: a squad's alert belongs to the squad.
fn silence_action(alert: &Alert) -> Action {
    match alert.squad_id {
        Some(squad) => Action::EditSquadGoals(squad),
        None => Action::Operate,
    }
}
