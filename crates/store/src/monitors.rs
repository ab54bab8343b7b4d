//! Monitors, their alerts and where those go: contact points, the outbox of deliveries with each
//! attempt's log, and each person's inbox.
//!
//! An evaluation's changes (alerts fired, held and resolved) are written in one transaction together
//! with the notifications they cause (outbox rows and inbox rows), so a notification exists exactly
//! when its alert change does. Several servers may evaluate: a monitor's schedule slot is claimed by
//! inserting its row (`monitor_runs`), and a partial unique index keeps one open alert per finding.
//! Deliveries are claimed one at a time under a lease, with `SKIP LOCKED` on PostgreSQL; a server that
//! dies mid-attempt leaves the lease to expire and another server retries (at least once, with the
//! delivery's idempotency key).

use chrono::{DateTime, Utc};
use sqlx::types::Json;

use slope_domain::*;

use crate::plan::{audit, lock_org, write_first};
use crate::{Result, Store, StoreError, in_tx, on_db};

fn corrupt(what: &str, id: i64, e: impl std::fmt::Display) -> StoreError {
    StoreError::corrupt(format!("{what} {id}: {e}"))
}

// ---- monitors -----------------------------------------------------------------------------------

#[derive(sqlx::FromRow)]
struct MonitorRow {
    id: i64,
    key: String,
    name: String,
    squad_id: Option<i64>,
    every_minutes: i64,
    enabled: bool,
    rule: Json<MonitorRule>,
    last_run_at: Option<DateTime<Utc>>,
    last_error: Option<String>,
    created_at: DateTime<Utc>,
}

impl From<MonitorRow> for Monitor {
    fn from(r: MonitorRow) -> Monitor {
        Monitor {
            id: r.id,
            key: r.key,
            name: r.name,
            squad_id: r.squad_id.map(SquadId),
            every_minutes: r.every_minutes,
            enabled: r.enabled,
            rule: r.rule.0,
            last_run_at: r.last_run_at,
            last_error: r.last_error,
            created_at: r.created_at,
        }
    }
}

const MONITOR_COLUMNS: &str =
    "SELECT id, key, name, squad_id, every_minutes, enabled, rule, last_run_at, last_error, created_at FROM monitors";

/// Who an alert's notifications go to: the people whose inboxes get an entry and the contact points
/// that get a delivery.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Route {
    pub users: Vec<UserId>,
    pub contact_points: Vec<i64>,
}

/// What an evaluation changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Applied {
    pub fired: usize,
    pub resolved: usize,
    pub notifications: usize,
}

/// Writes the outbox rows and inbox entries of one alert change, in the caller's transaction, and
/// evaluates to how many. Each delivery's idempotency key names the organisation, the alert's history
/// entry and the contact point, so it is unique and the same on every attempt. A macro rather than a
/// function because the transaction's type differs between the two databases.
macro_rules! notify {
    ($tx:expr, $org:expr, $note:expr, $event:expr, $route:expr, $now:expr) => {{
        let note: &Notification = $note;
        let mut written = 0usize;
        for cp in &$route.contact_points {
            let mut note = note.clone();
            note.idempotency_key = format!("slope-{}-event-{}-cp-{cp}", $org.0, $event);
            sqlx::query(
                "INSERT INTO deliveries (org_id, contact_point_id, alert_id, change, idempotency_key, payload, status, next_attempt_at, created_at)
                 VALUES ($1, $2, $3, $4, $5, $6, 'pending', $7, $7)",
            )
            .bind($org.0).bind(*cp).bind(note.alert_id).bind(note.change.as_str()).bind(note.idempotency_key.clone())
            .bind(Json(&note)).bind($now)
            .execute(&mut *$tx).await?;
            written += 1;
        }
        for user in &$route.users {
            sqlx::query(
                "INSERT INTO inbox (org_id, user_id, alert_id, change, summary, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind($org.0).bind(user.0).bind(note.alert_id).bind(note.change.as_str()).bind(&note.summary).bind($now)
            .execute(&mut *$tx).await?;
            written += 1;
        }
        written
    }};
}

impl Store {
    pub async fn list_monitors(&self, org: OrgId) -> Result<Vec<Monitor>> {
        let sql = format!("{MONITOR_COLUMNS} WHERE org_id = $1 ORDER BY key");
        let rows: Vec<MonitorRow> = on_db!(self, db => sqlx::query_as(&sql).bind(org.0).fetch_all(db).await?);
        Ok(rows.into_iter().map(Monitor::from).collect())
    }

    pub async fn monitor(&self, org: OrgId, key: &str) -> Result<Option<Monitor>> {
        let sql = format!("{MONITOR_COLUMNS} WHERE org_id = $1 AND key = $2");
        let row: Option<MonitorRow> =
            on_db!(self, db => sqlx::query_as(&sql).bind(org.0).bind(key).fetch_optional(db).await?);
        Ok(row.map(Monitor::from))
    }

    /// Creates the monitor with the spec's key, or replaces the settings of the one that has it; on the
    /// audit trail either way. Returns the monitor and whether it was new.
    pub async fn put_monitor(&self, actor: &Actor, spec: &MonitorSpec, now: DateTime<Utc>) -> Result<(Monitor, bool)> {
        let org = actor.org;
        let select = format!("{MONITOR_COLUMNS} WHERE org_id = $1 AND key = $2");
        in_tx!(self, tx => {
            lock_org!(tx, org);
            let before: Option<MonitorRow> =
                sqlx::query_as(&select).bind(org.0).bind(spec.key.as_str()).fetch_optional(&mut *tx).await?;
            let before = before.map(Monitor::from);
            if before.is_some() {
                sqlx::query(
                    "UPDATE monitors SET name = $1, kind = $2, squad_id = $3, every_minutes = $4, enabled = $5, rule = $6,
                     updated_at = $7 WHERE org_id = $8 AND key = $9",
                )
                .bind(spec.name.as_str()).bind(spec.rule.kind().as_str()).bind(spec.squad.map(|s| s.0))
                .bind(spec.every_minutes).bind(spec.enabled).bind(Json(&spec.rule)).bind(now)
                .bind(org.0).bind(spec.key.as_str())
                .execute(&mut *tx).await?;
            } else {
                sqlx::query(
                    "INSERT INTO monitors (org_id, key, name, kind, squad_id, every_minutes, enabled, rule, created_at, updated_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9)",
                )
                .bind(org.0).bind(spec.key.as_str()).bind(spec.name.as_str()).bind(spec.rule.kind().as_str())
                .bind(spec.squad.map(|s| s.0)).bind(spec.every_minutes).bind(spec.enabled).bind(Json(&spec.rule)).bind(now)
                .execute(&mut *tx).await?;
            }
            let row: MonitorRow = sqlx::query_as(&select).bind(org.0).bind(spec.key.as_str()).fetch_one(&mut *tx).await?;
            let after = Monitor::from(row);
            audit!(tx, actor, "monitor", after.id, now,
                before.as_ref().map(|b| serde_json::to_value(b).unwrap_or_default()),
                Some(serde_json::to_value(&after).unwrap_or_default()));
            Ok((after, before.is_none()))
        })
    }

    /// Claims `slot` of the monitor's schedule for `worker`; false when another server claimed it.
    pub async fn claim_monitor_slot(&self, monitor: i64, slot: i64, worker: &str, now: DateTime<Utc>) -> Result<bool> {
        let sql = "INSERT INTO monitor_runs (monitor_id, slot, claimed_by, claimed_at) VALUES ($1, $2, $3, $4)
                   ON CONFLICT DO NOTHING";
        let done = on_db!(self, db => sqlx::query(sql).bind(monitor).bind(slot).bind(worker).bind(now)
            .execute(db).await?.rows_affected());
        Ok(done == 1)
    }

    /// Records when the monitor was last evaluated and why it could not be, if it could not.
    pub async fn record_monitor_run(&self, monitor: i64, now: DateTime<Utc>, error: Option<&str>) -> Result<()> {
        on_db!(self, db => sqlx::query("UPDATE monitors SET last_run_at = $1, last_error = $2 WHERE id = $3")
            .bind(now).bind(error).bind(monitor).execute(db).await?.rows_affected());
        // Claims older than a day are no longer contended; they are dropped so the table stays small.
        on_db!(self, db => sqlx::query("DELETE FROM monitor_runs WHERE monitor_id = $1 AND claimed_at < $2")
            .bind(monitor).bind(now - chrono::Duration::days(1)).execute(db).await?.rows_affected());
        Ok(())
    }

    /// The monitor's open alerts as `(id, fingerprint)`, which [`reconcile`] compares with its findings.
    pub async fn open_alerts(&self, monitor: i64) -> Result<Vec<(i64, String)>> {
        Ok(on_db!(self, db => sqlx::query_as(
            "SELECT id, fingerprint FROM alerts WHERE monitor_id = $1 AND resolved_at IS NULL ORDER BY id")
            .bind(monitor).fetch_all(db).await?))
    }

    /// Whether an open alert of the monitor has a silence that has ended (and so notifies again when it
    /// next holds).
    pub async fn silence_ended(&self, monitor: i64, now: DateTime<Utc>) -> Result<bool> {
        let found: Option<i64> = on_db!(self, db => sqlx::query_scalar(
            "SELECT id FROM alerts WHERE monitor_id = $1 AND resolved_at IS NULL AND silenced_until <= $2 LIMIT 1")
            .bind(monitor).bind(now).fetch_optional(db).await?);
        Ok(found.is_some())
    }

    /// Writes what one evaluation of `monitor` found, with the notifications it causes, in one
    /// transaction: new alerts (one per finding: a concurrent evaluation's alert for the same finding
    /// wins and this one is skipped), holding alerts' newest evidence, and resolutions. A silenced alert
    /// notifies nobody.
    pub async fn apply_evaluation(
        &self,
        org: OrgId,
        monitor: &Monitor,
        changes: &Reconciled,
        route: &Route,
        now: DateTime<Utc>,
    ) -> Result<Applied> {
        const BY: &str = "system:monitors";
        in_tx!(self, tx => {
            write_first!(tx, org);
            let mut applied = Applied::default();
            for finding in &changes.fire {
                let id: Option<i64> = sqlx::query_scalar(
                    "INSERT INTO alerts (org_id, monitor_id, fingerprint, summary, evidence, started_at, last_seen_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $6) ON CONFLICT DO NOTHING RETURNING id",
                )
                .bind(org.0).bind(monitor.id).bind(&finding.fingerprint).bind(&finding.summary)
                .bind(Json(&finding.evidence)).bind(now)
                .fetch_optional(&mut *tx).await?;
                let Some(id) = id else { continue };
                applied.fired += 1;
                let event: i64 = sqlx::query_scalar(
                    "INSERT INTO alert_events (alert_id, at, change, actor) VALUES ($1, $2, 'fired', $3) RETURNING id",
                )
                .bind(id).bind(now).bind(BY).fetch_one(&mut *tx).await?;
                let note =
                    Notification::of(AlertChange::Fired, id, monitor, &finding.summary, &finding.evidence, now, None);
                applied.notifications += notify!(tx, org, &note, event, route, now);
            }
            for (id, finding) in &changes.hold {
                sqlx::query("UPDATE alerts SET summary = $1, evidence = $2, last_seen_at = $3 WHERE id = $4 AND resolved_at IS NULL")
                    .bind(&finding.summary).bind(Json(&finding.evidence)).bind(now).bind(id)
                    .execute(&mut *tx).await?;
                // A silence that ended while the finding still holds: the alert notifies again, once, as
                // firing (the silence is cleared, so the next evaluation does not repeat it).
                let ended: Option<DateTime<Utc>> = sqlx::query_scalar(
                    "UPDATE alerts SET silenced_until = NULL, silenced_by = NULL
                     WHERE id = $1 AND resolved_at IS NULL AND silenced_until IS NOT NULL AND silenced_until <= $2
                     RETURNING started_at",
                )
                .bind(id).bind(now).fetch_optional(&mut *tx).await?;
                let Some(started_at) = ended else { continue };
                let event: i64 = sqlx::query_scalar(
                    "INSERT INTO alert_events (alert_id, at, change, actor) VALUES ($1, $2, 'unsilenced', $3) RETURNING id",
                )
                .bind(id).bind(now).bind(BY).fetch_one(&mut *tx).await?;
                let change = AlertChange::Unsilenced;
                let note = Notification::of(change, *id, monitor, &finding.summary, &finding.evidence, started_at, None);
                applied.notifications += notify!(tx, org, &note, event, route, now);
            }
            for id in &changes.resolve {
                let row: Option<AlertRow> = sqlx::query_as(&format!("{ALERT_COLUMNS} WHERE a.id = $1 AND a.resolved_at IS NULL"))
                    .bind(id).fetch_optional(&mut *tx).await?;
                let Some(row) = row else { continue };
                let alert = Alert::try_from(row)?;
                sqlx::query("UPDATE alerts SET resolved_at = $1 WHERE id = $2").bind(now).bind(id).execute(&mut *tx).await?;
                applied.resolved += 1;
                let event: i64 = sqlx::query_scalar(
                    "INSERT INTO alert_events (alert_id, at, change, actor) VALUES ($1, $2, 'resolved', $3) RETURNING id",
                )
                .bind(id).bind(now).bind(BY).fetch_one(&mut *tx).await?;
                if alert.state(now) == AlertState::Silenced {
                    continue;
                }
                let note = Notification::of(
                    AlertChange::Resolved,
                    alert.id,
                    monitor,
                    &alert.summary,
                    &alert.evidence,
                    alert.started_at,
                    Some(now),
                );
                applied.notifications += notify!(tx, org, &note, event, route, now);
            }
            Ok(applied)
        })
    }
}

// ---- alerts -------------------------------------------------------------------------------------

#[derive(sqlx::FromRow)]
struct AlertRow {
    id: i64,
    monitor_id: i64,
    monitor_key: String,
    monitor_name: String,
    kind: String,
    squad_id: Option<i64>,
    fingerprint: String,
    summary: String,
    evidence: Json<AlertEvidence>,
    started_at: DateTime<Utc>,
    last_seen_at: DateTime<Utc>,
    resolved_at: Option<DateTime<Utc>>,
    silenced_until: Option<DateTime<Utc>>,
    silenced_by: Option<String>,
}

impl TryFrom<AlertRow> for Alert {
    type Error = StoreError;
    fn try_from(r: AlertRow) -> Result<Alert> {
        Ok(Alert {
            id: r.id,
            monitor_id: r.monitor_id,
            monitor_key: r.monitor_key,
            monitor_name: r.monitor_name,
            kind: r.kind.parse().map_err(|e| corrupt("alert", r.id, e))?,
            squad_id: r.squad_id.map(SquadId),
            fingerprint: r.fingerprint,
            summary: r.summary,
            evidence: r.evidence.0,
            started_at: r.started_at,
            last_seen_at: r.last_seen_at,
            resolved_at: r.resolved_at,
            silenced_until: r.silenced_until,
            silenced_by: r.silenced_by,
        })
    }
}

const ALERT_COLUMNS: &str =
    "SELECT a.id, a.monitor_id, m.key AS monitor_key, m.name AS monitor_name, m.kind, m.squad_id,
    a.fingerprint, a.summary, a.evidence, a.started_at, a.last_seen_at, a.resolved_at, a.silenced_until, a.silenced_by
    FROM alerts a JOIN monitors m ON m.id = a.monitor_id";

#[derive(sqlx::FromRow)]
struct AlertEventRow {
    at: DateTime<Utc>,
    change: String,
    actor: String,
    note: Option<String>,
}

impl Store {
    /// The organisation's alerts, open ones first, then the newest; at most `limit`.
    pub async fn list_alerts(&self, org: OrgId, open_only: bool, limit: i64) -> Result<Vec<Alert>> {
        let open = if open_only { " AND a.resolved_at IS NULL" } else { "" };
        let sql = format!(
            "{ALERT_COLUMNS} WHERE a.org_id = $1{open}
             ORDER BY CASE WHEN a.resolved_at IS NULL THEN 0 ELSE 1 END, a.started_at DESC, a.id DESC LIMIT $2"
        );
        let rows: Vec<AlertRow> = on_db!(self, db => sqlx::query_as(&sql).bind(org.0).bind(limit).fetch_all(db).await?);
        rows.into_iter().map(Alert::try_from).collect()
    }

    pub async fn alert(&self, org: OrgId, id: i64) -> Result<Option<Alert>> {
        let sql = format!("{ALERT_COLUMNS} WHERE a.org_id = $1 AND a.id = $2");
        let row: Option<AlertRow> =
            on_db!(self, db => sqlx::query_as(&sql).bind(org.0).bind(id).fetch_optional(db).await?);
        row.map(Alert::try_from).transpose()
    }

    /// The alert's history, oldest first.
    pub async fn alert_history(&self, org: OrgId, id: i64) -> Result<Vec<AlertEvent>> {
        let rows: Vec<AlertEventRow> = on_db!(self, db => sqlx::query_as(
            "SELECT e.at, e.change, e.actor, e.note FROM alert_events e JOIN alerts a ON a.id = e.alert_id
             WHERE a.org_id = $1 AND e.alert_id = $2 ORDER BY e.id")
            .bind(org.0).bind(id).fetch_all(db).await?);
        rows.into_iter()
            .map(|r| {
                Ok(AlertEvent {
                    at: r.at,
                    change: r.change.parse().map_err(|e| corrupt("alert event of alert", id, e))?,
                    by: r.actor,
                    note: r.note,
                })
            })
            .collect()
    }

    /// Silences an open alert until `until` (a new silence replaces the old one), on its history and the
    /// audit trail. `Err(alert)` when the alert has resolved: there is nothing left to silence.
    pub async fn silence_alert(
        &self,
        actor: &Actor,
        id: i64,
        until: DateTime<Utc>,
        note: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<Result<Alert, Alert>> {
        let org = actor.org;
        let select = format!("{ALERT_COLUMNS} WHERE a.org_id = $1 AND a.id = $2");
        in_tx!(self, tx => {
            write_first!(tx, org);
            let row: Option<AlertRow> = sqlx::query_as(&select).bind(org.0).bind(id).fetch_optional(&mut *tx).await?;
            let before = Alert::try_from(row.ok_or(StoreError::NotFound { entity: "alert", id })?)?;
            if before.resolved_at.is_some() {
                return Ok(Err(before));
            }
            sqlx::query("UPDATE alerts SET silenced_until = $1, silenced_by = $2 WHERE id = $3")
                .bind(until).bind(actor.label()).bind(id).execute(&mut *tx).await?;
            sqlx::query("INSERT INTO alert_events (alert_id, at, change, actor, note) VALUES ($1, $2, 'silenced', $3, $4)")
                .bind(id).bind(now).bind(actor.label()).bind(note).execute(&mut *tx).await?;
            let row: AlertRow = sqlx::query_as(&select).bind(org.0).bind(id).fetch_one(&mut *tx).await?;
            let after = Alert::try_from(row)?;
            audit!(tx, actor, "alert", id, now,
                Some(serde_json::to_value(&before).unwrap_or_default()),
                Some(serde_json::to_value(&after).unwrap_or_default()));
            Ok(Ok(after))
        })
    }
}

// ---- inbox --------------------------------------------------------------------------------------

#[derive(sqlx::FromRow)]
struct InboxRow {
    id: i64,
    user_id: i64,
    alert_id: i64,
    change: String,
    summary: String,
    created_at: DateTime<Utc>,
    read_at: Option<DateTime<Utc>>,
}

impl Store {
    /// A person's inbox, newest first.
    pub async fn inbox(&self, org: OrgId, user: UserId, limit: i64) -> Result<Vec<InboxItem>> {
        let rows: Vec<InboxRow> = on_db!(self, db => sqlx::query_as(
            "SELECT id, user_id, alert_id, change, summary, created_at, read_at FROM inbox
             WHERE org_id = $1 AND user_id = $2 ORDER BY id DESC LIMIT $3")
            .bind(org.0).bind(user.0).bind(limit).fetch_all(db).await?);
        rows.into_iter()
            .map(|r| {
                Ok(InboxItem {
                    id: r.id,
                    user_id: UserId(r.user_id),
                    alert_id: r.alert_id,
                    change: r.change.parse().map_err(|e| corrupt("inbox item", r.id, e))?,
                    summary: r.summary,
                    created_at: r.created_at,
                    read_at: r.read_at,
                })
            })
            .collect()
    }

    pub async fn unread_count(&self, org: OrgId, user: UserId) -> Result<i64> {
        Ok(on_db!(self, db => sqlx::query_scalar(
            "SELECT COUNT(*) FROM inbox WHERE org_id = $1 AND user_id = $2 AND read_at IS NULL")
            .bind(org.0).bind(user.0).fetch_one(db).await?))
    }

    /// Marks the person's entries read: those of `alert` (every entry of that alert), or all. Returns
    /// how many were unread.
    pub async fn mark_read(&self, org: OrgId, user: UserId, alert: Option<i64>, now: DateTime<Utc>) -> Result<u64> {
        Ok(on_db!(self, db => sqlx::query(
            "UPDATE inbox SET read_at = $1 WHERE org_id = $2 AND user_id = $3 AND read_at IS NULL
             AND ($4 IS NULL OR alert_id = $4)")
            .bind(now).bind(org.0).bind(user.0).bind(alert).execute(db).await?.rows_affected()))
    }
}

// ---- contact points and deliveries ---------------------------------------------------------------

#[derive(sqlx::FromRow)]
struct ContactPointRow {
    id: i64,
    name: String,
    url: String,
    format: String,
    squad_id: Option<i64>,
    created_at: DateTime<Utc>,
}

impl TryFrom<ContactPointRow> for ContactPoint {
    type Error = StoreError;
    fn try_from(r: ContactPointRow) -> Result<ContactPoint> {
        Ok(ContactPoint {
            id: r.id,
            name: r.name,
            url: WebhookUrl::parse(&r.url).map_err(|e| corrupt("contact point", r.id, e))?,
            format: r.format.parse().map_err(|e| corrupt("contact point", r.id, e))?,
            squad_id: r.squad_id.map(SquadId),
            created_at: r.created_at,
        })
    }
}

const CONTACT_COLUMNS: &str = "SELECT id, name, url, format, squad_id, created_at FROM contact_points";

#[derive(sqlx::FromRow)]
struct DeliveryRow {
    id: i64,
    contact_point_id: i64,
    alert_id: i64,
    change: String,
    idempotency_key: String,
    status: String,
    attempts: i64,
    next_attempt_at: Option<DateTime<Utc>>,
    last_status_code: Option<i64>,
    last_error: Option<String>,
    created_at: DateTime<Utc>,
    delivered_at: Option<DateTime<Utc>>,
}

impl TryFrom<DeliveryRow> for Delivery {
    type Error = StoreError;
    fn try_from(r: DeliveryRow) -> Result<Delivery> {
        Ok(Delivery {
            id: r.id,
            contact_point_id: r.contact_point_id,
            alert_id: r.alert_id,
            change: r.change.parse().map_err(|e| corrupt("delivery", r.id, e))?,
            idempotency_key: r.idempotency_key,
            status: r.status.parse().map_err(|e| corrupt("delivery", r.id, e))?,
            attempts: r.attempts,
            next_attempt_at: r.next_attempt_at,
            last_status_code: r.last_status_code,
            last_error: r.last_error,
            created_at: r.created_at,
            delivered_at: r.delivered_at,
        })
    }
}

const DELIVERY_COLUMNS: &str =
    "id, contact_point_id, alert_id, change, idempotency_key, status, attempts, next_attempt_at,
    last_status_code, last_error, created_at, delivered_at";

/// A delivery claimed for an attempt, with what the attempt needs.
#[derive(Debug, Clone)]
pub struct ClaimedDelivery {
    pub org: OrgId,
    pub delivery: Delivery,
    pub notification: Notification,
    pub contact_point: ContactPoint,
    /// The contact point's signing key.
    pub secret: String,
    /// Whether the organisation lets webhooks reach internal addresses.
    pub allow_internal: bool,
}

/// How an attempt ended.
#[derive(Debug, Clone, PartialEq)]
pub struct AttemptOutcome {
    pub status_code: Option<i64>,
    pub error: Option<String>,
    pub duration_ms: i64,
    /// `None`: delivered (or failed for good, with `error`); `Some(at)`: try again at `at`.
    pub retry_at: Option<DateTime<Utc>>,
    pub delivered: bool,
}

impl Store {
    /// The organisation's contact points (not removed ones).
    pub async fn list_contact_points(&self, org: OrgId) -> Result<Vec<ContactPoint>> {
        let sql = format!("{CONTACT_COLUMNS} WHERE org_id = $1 AND deleted_at IS NULL ORDER BY id");
        let rows: Vec<ContactPointRow> = on_db!(self, db => sqlx::query_as(&sql).bind(org.0).fetch_all(db).await?);
        rows.into_iter().map(ContactPoint::try_from).collect()
    }

    /// Adds a contact point with its signing key, on the audit trail (without the key).
    pub async fn create_contact_point(
        &self,
        actor: &Actor,
        spec: &ContactPointSpec,
        secret: &str,
        now: DateTime<Utc>,
    ) -> Result<ContactPoint> {
        let org = actor.org;
        in_tx!(self, tx => {
            let id: i64 = sqlx::query_scalar(
                "INSERT INTO contact_points (org_id, name, url, format, squad_id, secret, created_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
            )
            .bind(org.0).bind(spec.name.as_str()).bind(spec.url.as_str()).bind(spec.format.as_str())
            .bind(spec.squad.map(|s| s.0)).bind(secret).bind(now)
            .fetch_one(&mut *tx).await?;
            let row: ContactPointRow = sqlx::query_as(&format!("{CONTACT_COLUMNS} WHERE id = $1"))
                .bind(id).fetch_one(&mut *tx).await?;
            let point = ContactPoint::try_from(row)?;
            audit!(tx, actor, "contact_point", id, now, None, Some(serde_json::to_value(&point).unwrap_or_default()));
            Ok(point)
        })
    }

    /// Removes a contact point: it gets no new deliveries and its pending ones fail; its log stays.
    pub async fn remove_contact_point(&self, actor: &Actor, id: i64, now: DateTime<Utc>) -> Result<ContactPoint> {
        let org = actor.org;
        let select = format!("{CONTACT_COLUMNS} WHERE org_id = $1 AND id = $2 AND deleted_at IS NULL");
        in_tx!(self, tx => {
            write_first!(tx, org);
            let row: Option<ContactPointRow> = sqlx::query_as(&select).bind(org.0).bind(id).fetch_optional(&mut *tx).await?;
            let point = ContactPoint::try_from(row.ok_or(StoreError::NotFound { entity: "contact point", id })?)?;
            sqlx::query("UPDATE contact_points SET deleted_at = $1 WHERE id = $2").bind(now).bind(id).execute(&mut *tx).await?;
            sqlx::query("UPDATE deliveries SET status = 'failed', last_error = 'the contact point was removed', next_attempt_at = NULL
                         WHERE contact_point_id = $1 AND status = 'pending'")
                .bind(id).execute(&mut *tx).await?;
            audit!(tx, actor, "contact_point", id, now, Some(serde_json::to_value(&point).unwrap_or_default()), None);
            Ok(point)
        })
    }

    /// The organisation's deliveries, newest first (of one contact point, or all).
    pub async fn list_deliveries(&self, org: OrgId, contact_point: Option<i64>, limit: i64) -> Result<Vec<Delivery>> {
        let rows: Vec<DeliveryRow> = on_db!(self, db => sqlx::query_as(&format!(
            "SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE org_id = $1 AND ($2 IS NULL OR contact_point_id = $2)
             ORDER BY id DESC LIMIT $3"))
            .bind(org.0).bind(contact_point).bind(limit).fetch_all(db).await?);
        rows.into_iter().map(Delivery::try_from).collect()
    }

    pub async fn delivery(&self, org: OrgId, id: i64) -> Result<Option<Delivery>> {
        let row: Option<DeliveryRow> = on_db!(self, db => sqlx::query_as(&format!(
            "SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE org_id = $1 AND id = $2"))
            .bind(org.0).bind(id).fetch_optional(db).await?);
        row.map(Delivery::try_from).transpose()
    }

    /// The attempts of a delivery, oldest first.
    pub async fn delivery_attempts(&self, org: OrgId, delivery: i64) -> Result<Vec<DeliveryAttempt>> {
        #[derive(sqlx::FromRow)]
        struct AttemptRow {
            delivery_id: i64,
            attempt: i64,
            at: DateTime<Utc>,
            status_code: Option<i64>,
            error: Option<String>,
            duration_ms: i64,
        }
        let rows: Vec<AttemptRow> = on_db!(self, db => sqlx::query_as(
            "SELECT t.delivery_id, t.attempt, t.at, t.status_code, t.error, t.duration_ms FROM delivery_attempts t
             JOIN deliveries d ON d.id = t.delivery_id WHERE d.org_id = $1 AND t.delivery_id = $2 ORDER BY t.attempt")
            .bind(org.0).bind(delivery).fetch_all(db).await?);
        Ok(rows
            .into_iter()
            .map(|r| DeliveryAttempt {
                delivery_id: r.delivery_id,
                attempt: r.attempt,
                at: r.at,
                status_code: r.status_code,
                error: r.error,
                duration_ms: r.duration_ms,
            })
            .collect())
    }

    /// Whether any delivery is due: a read, so that a notifier polling an empty outbox every second
    /// never takes SQLite's write lock.
    pub async fn delivery_due(&self, now: DateTime<Utc>) -> Result<bool> {
        let due: Option<i64> = on_db!(self, db => sqlx::query_scalar(
            "SELECT id FROM deliveries WHERE status = 'pending' AND next_attempt_at <= $1
             AND (leased_until IS NULL OR leased_until < $1) LIMIT 1")
            .bind(now).fetch_optional(db).await?);
        Ok(due.is_some())
    }

    /// Claims the oldest due delivery of any organisation for one attempt by `worker`, leased until
    /// `now + lease`; `None` when nothing is due. Its attempt count goes up now, so a worker that dies
    /// mid-attempt still uses one up.
    pub async fn claim_delivery(
        &self,
        worker: &str,
        lease: chrono::Duration,
        now: DateTime<Utc>,
    ) -> Result<Option<ClaimedDelivery>> {
        let lock = self.skip_locked();
        let claim = format!(
            "UPDATE deliveries SET lease_owner = $1, leased_until = $2, attempts = attempts + 1
             WHERE id = (SELECT id FROM deliveries WHERE status = 'pending' AND next_attempt_at <= $3
             AND (leased_until IS NULL OR leased_until < $3) ORDER BY next_attempt_at, id LIMIT 1{lock})
             RETURNING {DELIVERY_COLUMNS}, org_id, payload"
        );
        #[derive(sqlx::FromRow)]
        struct Claimed {
            #[sqlx(flatten)]
            row: DeliveryRow,
            org_id: i64,
            payload: Json<Notification>,
        }
        let claimed: Option<Claimed> = on_db!(self, db => sqlx::query_as(&claim)
            .bind(worker).bind(now + lease).bind(now).fetch_optional(db).await?);
        let Some(claimed) = claimed else { return Ok(None) };
        let org = OrgId(claimed.org_id);
        let delivery = Delivery::try_from(claimed.row)?;
        #[derive(sqlx::FromRow)]
        struct Target {
            #[sqlx(flatten)]
            row: ContactPointRow,
            secret: String,
            allow_internal: Option<bool>,
        }
        let target: Option<Target> = on_db!(self, db => sqlx::query_as(
            "SELECT c.id, c.name, c.url, c.format, c.squad_id, c.created_at, c.secret,
                    s.allow_internal_webhooks AS allow_internal
             FROM contact_points c LEFT JOIN notification_settings s ON s.org_id = c.org_id WHERE c.id = $1")
            .bind(delivery.contact_point_id).fetch_optional(db).await?);
        let target = target.ok_or(StoreError::NotFound { entity: "contact point", id: delivery.contact_point_id })?;
        Ok(Some(ClaimedDelivery {
            org,
            delivery,
            notification: claimed.payload.0,
            contact_point: ContactPoint::try_from(target.row)?,
            secret: target.secret,
            // No settings row means the defaults: internal addresses are not allowed.
            allow_internal: target.allow_internal.unwrap_or(false),
        }))
    }

    /// Records an attempt of a delivery `worker` holds: its log entry, and the delivery delivered,
    /// pending again at `retry_at`, or failed. False (and nothing written) when the lease was lost.
    pub async fn finish_delivery_attempt(
        &self,
        delivery: &Delivery,
        worker: &str,
        outcome: &AttemptOutcome,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        let status = if outcome.delivered {
            DeliveryStatus::Delivered
        } else if outcome.retry_at.is_some() {
            DeliveryStatus::Pending
        } else {
            DeliveryStatus::Failed
        };
        in_tx!(self, tx => {
            let updated = sqlx::query(
                "UPDATE deliveries SET status = $1, next_attempt_at = $2, lease_owner = NULL, leased_until = NULL,
                 last_status_code = $3, last_error = $4, delivered_at = $5
                 WHERE id = $6 AND lease_owner = $7 AND status = 'pending'",
            )
            .bind(status.as_str()).bind(outcome.retry_at).bind(outcome.status_code).bind(outcome.error.as_deref())
            .bind(outcome.delivered.then_some(now)).bind(delivery.id).bind(worker)
            .execute(&mut *tx).await?.rows_affected();
            if updated == 0 {
                return Ok(false);
            }
            sqlx::query(
                "INSERT INTO delivery_attempts (delivery_id, attempt, at, status_code, error, duration_ms)
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
            )
            .bind(delivery.id).bind(delivery.attempts).bind(now).bind(outcome.status_code)
            .bind(outcome.error.as_deref()).bind(outcome.duration_ms)
            .execute(&mut *tx).await?;
            Ok(true)
        })
    }

    pub async fn notification_settings(&self, org: OrgId) -> Result<NotificationSettings> {
        let allow: Option<bool> = on_db!(self, db => sqlx::query_scalar(
            "SELECT allow_internal_webhooks FROM notification_settings WHERE org_id = $1")
            .bind(org.0).fetch_optional(db).await?);
        Ok(NotificationSettings { allow_internal_webhooks: allow.unwrap_or(false) })
    }

    pub async fn set_notification_settings(
        &self,
        actor: &Actor,
        settings: NotificationSettings,
        now: DateTime<Utc>,
    ) -> Result<NotificationSettings> {
        let org = actor.org;
        in_tx!(self, tx => {
            write_first!(tx, org);
            let before: Option<bool> = sqlx::query_scalar(
                "SELECT allow_internal_webhooks FROM notification_settings WHERE org_id = $1")
                .bind(org.0).fetch_optional(&mut *tx).await?;
            sqlx::query(
                "INSERT INTO notification_settings (org_id, allow_internal_webhooks, set_by, set_at) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (org_id) DO UPDATE SET allow_internal_webhooks = $2, set_by = $3, set_at = $4",
            )
            .bind(org.0).bind(settings.allow_internal_webhooks).bind(actor.label()).bind(now)
            .execute(&mut *tx).await?;
            let before = NotificationSettings { allow_internal_webhooks: before.unwrap_or(false) };
            audit!(tx, actor, "notification_settings", org.0, now,
                Some(serde_json::to_value(before).unwrap_or_default()),
                Some(serde_json::to_value(settings).unwrap_or_default()));
            Ok(settings)
        })
    }
}
