//! Annotation queues, their versions and items, the leases that keep two annotators off one item, and
//! the annotations.
//!
//! Every lease and submission runs in a transaction that first writes the queue's row, so that on
//! PostgreSQL the row lock and on SQLite the database's write lock serialise them per queue: whatever
//! the number of servers, an item is never handed to more annotators at once than it needs, and two
//! submissions for its last place cannot both win.

use std::collections::HashSet;

use chrono::{DateTime, Duration, NaiveDate, Utc};
use sqlx::types::Json;

use slope_domain::*;

use crate::plan::{audit, write_first};
use crate::{Result, Store, StoreError, in_tx, on_db};

#[derive(sqlx::FromRow)]
struct QueueRow {
    id: i64,
    key: String,
    loop_key: String,
    version: i64,
    created_at: DateTime<Utc>,
    settings: Json<QueueSettings>,
    created_by: String,
    updated_at: DateTime<Utc>,
}

impl From<QueueRow> for AnnotationQueue {
    fn from(r: QueueRow) -> Self {
        AnnotationQueue {
            id: r.id,
            key: r.key,
            loop_key: r.loop_key,
            version: r.version,
            settings: r.settings.0,
            updated_by: r.created_by,
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

const QUEUE_COLUMNS: &str = "SELECT q.id, q.key, q.loop_key, q.version, q.created_at, v.settings, v.created_by,
     v.created_at AS updated_at FROM annotation_queues q
     JOIN annotation_queue_versions v ON v.queue_id = q.id AND v.version = q.version";

#[derive(sqlx::FromRow)]
struct ItemRow {
    id: i64,
    queue_version: i64,
    event_id: String,
    event_at: DateTime<Utc>,
    context: String,
    suggestion: Option<String>,
    final_text: Option<String>,
    suggested_chars: i64,
    accepted_chars: i64,
    alternative: Option<String>,
    alternative_model_id: Option<i64>,
    alternative_model: Option<String>,
    needed: i64,
    done: i64,
    status: String,
    gold: Option<Json<Labels>>,
    created_at: DateTime<Utc>,
}

impl TryFrom<ItemRow> for AnnotationItem {
    type Error = StoreError;
    fn try_from(r: ItemRow) -> Result<Self> {
        let alternative = match (r.alternative, r.alternative_model_id) {
            (Some(text), Some(model_id)) => {
                Some(Alternative { text, model_id, model: r.alternative_model.unwrap_or_default() })
            }
            _ => None,
        };
        Ok(AnnotationItem {
            id: r.id,
            queue_version: r.queue_version,
            event_id: r.event_id,
            event_at: r.event_at,
            context: r.context,
            suggestion: r.suggestion,
            final_text: r.final_text,
            suggested_chars: r.suggested_chars,
            accepted_chars: r.accepted_chars,
            alternative,
            needed: r.needed,
            done: r.done,
            status: r.status.parse().map_err(StoreError::corrupt)?,
            gold: r.gold.map(|g| g.0),
            created_at: r.created_at,
        })
    }
}

const ITEM_COLUMNS: &str =
    "SELECT id, queue_version, event_id, event_at, context, suggestion, final_text, suggested_chars,
     accepted_chars, alternative, alternative_model_id, alternative_model, needed, done, status, gold, created_at
     FROM annotation_items";

#[derive(sqlx::FromRow)]
struct AnnotationRow {
    id: i64,
    item_id: i64,
    event_id: String,
    queue_version: i64,
    annotator: String,
    user_id: Option<i64>,
    outcome: String,
    labels: Json<Labels>,
    note: Option<String>,
    source: String,
    seconds: Option<f64>,
    created_at: DateTime<Utc>,
}

impl TryFrom<AnnotationRow> for Annotation {
    type Error = StoreError;
    fn try_from(r: AnnotationRow) -> Result<Self> {
        Ok(Annotation {
            id: r.id,
            item_id: r.item_id,
            event_id: r.event_id,
            queue_version: r.queue_version,
            annotator: r.annotator,
            user_id: r.user_id.map(UserId),
            outcome: r.outcome.parse().map_err(StoreError::corrupt)?,
            labels: r.labels.0,
            note: r.note,
            source: r.source.parse().map_err(StoreError::corrupt)?,
            seconds: r.seconds,
            created_at: r.created_at,
        })
    }
}

const ANNOTATION_COLUMNS: &str = "SELECT a.id, a.item_id, i.event_id, i.queue_version, a.annotator, a.user_id, a.outcome,
     a.labels, a.note, a.source, a.seconds, a.created_at FROM annotations a JOIN annotation_items i ON i.id = a.item_id";

/// An interaction to add to a queue, as sampling found it.
#[derive(Debug, Clone, PartialEq)]
pub struct NewItem {
    pub event_id: String,
    pub event_at: DateTime<Utc>,
    pub context: String,
    pub suggestion: Option<String>,
    pub final_text: Option<String>,
    pub suggested_chars: i64,
    pub accepted_chars: i64,
    pub alternative: Option<Alternative>,
}

/// One annotation to store without a lease: a line of an imported file, for the item of `event_id`.
#[derive(Debug, Clone, PartialEq)]
pub struct ImportedRow<'a> {
    pub line: usize,
    pub event_id: &'a str,
    pub annotator: &'a str,
    pub submission: &'a Submission,
}

fn parse_items(rows: Vec<ItemRow>) -> Result<Vec<AnnotationItem>> {
    rows.into_iter().map(AnnotationItem::try_from).collect()
}

fn parse_annotations(rows: Vec<AnnotationRow>) -> Result<Vec<Annotation>> {
    rows.into_iter().map(Annotation::try_from).collect()
}

fn json_of(value: &impl serde::Serialize) -> Result<serde_json::Value> {
    serde_json::to_value(value).map_err(StoreError::corrupt)
}

/// Takes the queue's lock (see the module's comment); `NotFound` for a queue of another organisation.
macro_rules! lock_queue {
    ($tx:expr, $org:expr, $queue:expr) => {{
        let locked =
            sqlx::query("UPDATE annotation_queues SET lease_seq = lease_seq + 1 WHERE org_id = $1 AND id = $2")
                .bind($org.0)
                .bind($queue)
                .execute(&mut *$tx)
                .await?
                .rows_affected();
        if locked == 0 {
            return Err(StoreError::NotFound { entity: "annotation queue", id: $queue });
        }
    }};
}

/// Inserts items, skipping events the queue holds already; the number added.
macro_rules! insert_items {
    ($tx:expr, $org:expr, $queue:expr, $version:expr, $needed:expr, $items:expr, $now:expr) => {{
        let mut added = 0u64;
        for item in $items {
            let alt = item.alternative.as_ref();
            added += sqlx::query(
                "INSERT INTO annotation_items (org_id, queue_id, queue_version, event_id, event_at, context, suggestion,
                 final_text, suggested_chars, accepted_chars, alternative, alternative_model_id, alternative_model,
                 needed, status, created_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, 'open', $15)
                 ON CONFLICT (queue_id, event_id) DO NOTHING",
            )
            .bind($org.0)
            .bind($queue)
            .bind($version)
            .bind(&item.event_id)
            .bind(item.event_at)
            .bind(&item.context)
            .bind(&item.suggestion)
            .bind(&item.final_text)
            .bind(item.suggested_chars)
            .bind(item.accepted_chars)
            .bind(alt.map(|a| a.text.as_str()))
            .bind(alt.map(|a| a.model_id))
            .bind(alt.map(|a| a.model.as_str()))
            .bind($needed)
            .bind($now)
            .execute(&mut *$tx)
            .await?
            .rows_affected();
        }
        added as usize
    }};
}

/// Stores one annotation of an item and moves the item on: a label counts towards what it needs (done
/// once it has them all), a flag takes it out of circulation, a skip changes nothing but the annotator's
/// own list. Writes the audit record. Expects the queue's lock.
macro_rules! store_annotation {
    ($tx:expr, $actor:expr, $queue:expr, $item:expr, $annotator:expr, $user:expr, $sub:expr, $source:expr, $seconds:expr, $now:expr) => {{
        let sub: &Submission = $sub;
        let inserted: std::result::Result<i64, sqlx::Error> = sqlx::query_scalar(
            "INSERT INTO annotations (org_id, queue_id, item_id, annotator, user_id, outcome, labels, note, source, seconds, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING id",
        )
        .bind($actor.org.0)
        .bind($queue)
        .bind($item.id)
        .bind($annotator)
        .bind($user)
        .bind(sub.outcome.as_str())
        .bind(Json(&sub.labels))
        .bind(&sub.note)
        .bind($source.as_str())
        .bind($seconds)
        .bind($now)
        .fetch_one(&mut *$tx)
        .await;
        let id = match inserted.map_err(StoreError::from) {
            Ok(id) => id,
            Err(e) if e.is_unique_violation() => {
                return Err(StoreError::Contended(format!(
                    "{} has already annotated item {} (event {})",
                    $annotator, $item.id, $item.event_id
                )));
            }
            Err(e) => return Err(e),
        };
        let labelled = i64::from(sub.outcome == AnnotationOutcome::Labelled);
        let flagged = sub.outcome == AnnotationOutcome::Flagged;
        sqlx::query(
            "UPDATE annotation_items SET done = done + $2,
             status = CASE WHEN $3 THEN 'flagged' WHEN done + $2 >= needed THEN 'done' ELSE status END
             WHERE id = $1",
        )
        .bind($item.id)
        .bind(labelled)
        .bind(flagged)
        .execute(&mut *$tx)
        .await?;
        let annotation = Annotation {
            id,
            item_id: $item.id,
            event_id: $item.event_id.clone(),
            queue_version: $item.queue_version,
            annotator: $annotator.to_owned(),
            user_id: $user.map(UserId),
            outcome: sub.outcome,
            labels: sub.labels.clone(),
            note: sub.note.clone(),
            source: $source,
            seconds: $seconds,
            created_at: $now,
        };
        audit!($tx, $actor, "annotation", id, $now, None, Some(json_of(&annotation)?));
        annotation
    }};
}

impl Store {
    // ---- queues --------------------------------------------------------------------------------

    /// Creates a queue at version 1. A key in use is refused naming `key`.
    pub async fn create_queue(&self, actor: &Actor, spec: &QueueSpec) -> Result<AnnotationQueue> {
        let now = Utc::now();
        let org = actor.org;
        let created: Result<AnnotationQueue> = in_tx!(self, tx => {
            let id: i64 = sqlx::query_scalar(
                "INSERT INTO annotation_queues (org_id, key, loop_key, version, created_at) VALUES ($1, $2, $3, 1, $4) RETURNING id",
            )
            .bind(org.0).bind(spec.key.as_str()).bind(spec.loop_key.as_str()).bind(now)
            .fetch_one(&mut *tx).await?;
            sqlx::query(
                "INSERT INTO annotation_queue_versions (queue_id, version, settings, created_by, created_at) VALUES ($1, 1, $2, $3, $4)",
            )
            .bind(id).bind(Json(&spec.settings)).bind(actor.label()).bind(now)
            .execute(&mut *tx).await?;
            let row: QueueRow = sqlx::query_as(&format!("{QUEUE_COLUMNS} WHERE q.id = $1")).bind(id).fetch_one(&mut *tx).await?;
            let queue = AnnotationQueue::from(row);
            audit!(tx, actor, "annotation_queue", id, now, None, Some(json_of(&queue)?));
            Ok(queue)
        });
        match created {
            Err(e) if e.is_unique_violation() => Err(StoreError::Rejected(FieldErrors::single(
                "key",
                format!("{} is already the key of an annotation queue", spec.key),
            ))),
            other => other,
        }
    }

    /// Makes `settings` the queue's next version, if the queue is still at `based_on`.
    pub async fn update_queue(
        &self,
        actor: &Actor,
        key: &str,
        based_on: Version,
        settings: &QueueSettings,
    ) -> Result<AnnotationQueue> {
        let now = Utc::now();
        let org = actor.org;
        in_tx!(self, tx => {
            write_first!(tx, org);
            let current: Option<(i64, i64)> =
                sqlx::query_as("SELECT id, version FROM annotation_queues WHERE org_id = $1 AND key = $2")
                    .bind(org.0).bind(key).fetch_optional(&mut *tx).await?;
            let Some((id, version)) = current else {
                return Err(StoreError::NotFound { entity: "annotation queue", id: 0 });
            };
            let before: QueueRow = sqlx::query_as(&format!("{QUEUE_COLUMNS} WHERE q.id = $1")).bind(id).fetch_one(&mut *tx).await?;
            let updated = sqlx::query("UPDATE annotation_queues SET version = version + 1 WHERE id = $1 AND version = $2")
                .bind(id).bind(based_on.0).execute(&mut *tx).await?.rows_affected();
            if updated == 0 {
                return Err(StoreError::Conflict { entity: "annotation queue", id, expected: based_on.0, actual: version });
            }
            sqlx::query(
                "INSERT INTO annotation_queue_versions (queue_id, version, settings, created_by, created_at) VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(id).bind(version + 1).bind(Json(settings)).bind(actor.label()).bind(now)
            .execute(&mut *tx).await?;
            let row: QueueRow = sqlx::query_as(&format!("{QUEUE_COLUMNS} WHERE q.id = $1")).bind(id).fetch_one(&mut *tx).await?;
            let queue = AnnotationQueue::from(row);
            audit!(tx, actor, "annotation_queue", id, now, Some(json_of(&AnnotationQueue::from(before))?), Some(json_of(&queue)?));
            Ok(queue)
        })
    }

    pub async fn queue(&self, org: OrgId, key: &str) -> Result<Option<AnnotationQueue>> {
        let sql = format!("{QUEUE_COLUMNS} WHERE q.org_id = $1 AND q.key = $2");
        let row: Option<QueueRow> =
            on_db!(self, db => sqlx::query_as(&sql).bind(org.0).bind(key).fetch_optional(db).await?);
        Ok(row.map(Into::into))
    }

    /// The organisation's queues, optionally of one loop, by key.
    pub async fn list_queues(&self, org: OrgId, loop_key: Option<&str>) -> Result<Vec<AnnotationQueue>> {
        let sql = format!("{QUEUE_COLUMNS} WHERE q.org_id = $1 AND ($2 IS NULL OR q.loop_key = $2) ORDER BY q.key");
        let rows: Vec<QueueRow> =
            on_db!(self, db => sqlx::query_as(&sql).bind(org.0).bind(loop_key).fetch_all(db).await?);
        Ok(rows.into_iter().map(Into::into).collect())
    }

    /// Every version of a queue, oldest first: (version, settings, made by, made at).
    pub async fn queue_versions(
        &self,
        org: OrgId,
        queue: i64,
    ) -> Result<Vec<(i64, QueueSettings, String, DateTime<Utc>)>> {
        let rows: Vec<(i64, Json<QueueSettings>, String, DateTime<Utc>)> = on_db!(self, db => sqlx::query_as(
            "SELECT v.version, v.settings, v.created_by, v.created_at FROM annotation_queue_versions v
             JOIN annotation_queues q ON q.id = v.queue_id WHERE q.org_id = $1 AND q.id = $2 ORDER BY v.version")
            .bind(org.0).bind(queue).fetch_all(db).await?);
        Ok(rows.into_iter().map(|(v, s, by, at)| (v, s.0, by, at)).collect())
    }

    /// How far a queue has come at `now`.
    pub async fn queue_progress(&self, org: OrgId, queue: i64, now: DateTime<Utc>) -> Result<QueueProgress> {
        // (items, open, done, flagged, gold, needed): sums are cast because PostgreSQL sums BIGINTs to NUMERIC.
        type ItemCounts = (i64, i64, i64, i64, i64, i64);
        let (items, answers, leased): (ItemCounts, (i64, i64), i64) = on_db!(self, db => {
            let items: ItemCounts = sqlx::query_as(
                "SELECT COUNT(*),
                 CAST(COALESCE(SUM(CASE WHEN status = 'open' THEN 1 ELSE 0 END), 0) AS BIGINT),
                 CAST(COALESCE(SUM(CASE WHEN status = 'done' THEN 1 ELSE 0 END), 0) AS BIGINT),
                 CAST(COALESCE(SUM(CASE WHEN status = 'flagged' THEN 1 ELSE 0 END), 0) AS BIGINT),
                 CAST(COALESCE(SUM(CASE WHEN gold IS NOT NULL THEN 1 ELSE 0 END), 0) AS BIGINT),
                 CAST(COALESCE(SUM(CASE WHEN status <> 'flagged' THEN needed ELSE 0 END), 0) AS BIGINT)
                 FROM annotation_items WHERE org_id = $1 AND queue_id = $2")
                .bind(org.0).bind(queue).fetch_one(db).await?;
            // Labels of flagged items no longer count towards what the queue needs.
            let answers: (i64, i64) = sqlx::query_as(
                "SELECT CAST(COALESCE(SUM(CASE WHEN a.outcome = 'labelled' THEN 1 ELSE 0 END), 0) AS BIGINT),
                 CAST(COALESCE(SUM(CASE WHEN a.outcome = 'skipped' THEN 1 ELSE 0 END), 0) AS BIGINT)
                 FROM annotations a JOIN annotation_items i ON i.id = a.item_id
                 WHERE a.org_id = $1 AND a.queue_id = $2 AND i.status <> 'flagged'")
                .bind(org.0).bind(queue).fetch_one(db).await?;
            let leased: i64 = sqlx::query_scalar(
                "SELECT COUNT(DISTINCT l.item_id) FROM annotation_leases l JOIN annotation_queues q ON q.id = l.queue_id
                 WHERE q.org_id = $1 AND l.queue_id = $2 AND l.expires_at > $3")
                .bind(org.0).bind(queue).bind(now).fetch_one(db).await?;
            (items, answers, leased)
        });
        Ok(QueueProgress {
            items: items.0,
            open: items.1,
            done: items.2,
            flagged: items.3,
            gold: items.4,
            needed: items.5,
            annotations: answers.0,
            skips: answers.1,
            leased,
        })
    }

    // ---- items ---------------------------------------------------------------------------------

    /// The event ids a queue holds, so that sampling considers only new interactions.
    pub async fn queue_event_ids(&self, org: OrgId, queue: i64) -> Result<HashSet<String>> {
        let ids: Vec<String> = on_db!(self, db => sqlx::query_scalar(
            "SELECT event_id FROM annotation_items WHERE org_id = $1 AND queue_id = $2")
            .bind(org.0).bind(queue).fetch_all(db).await?);
        Ok(ids.into_iter().collect())
    }

    /// Adds sampled items under the queue's `version`, each needing `needed` annotations; events the queue
    /// holds already are skipped. The number added.
    pub async fn add_items(
        &self,
        actor: &Actor,
        queue: i64,
        version: i64,
        needed: i64,
        items: &[NewItem],
    ) -> Result<usize> {
        let now = Utc::now();
        let org = actor.org;
        in_tx!(self, tx => {
            lock_queue!(tx, org, queue);
            Ok(insert_items!(tx, org, queue, version, needed, items, now))
        })
    }

    /// A queue's items, in order; `status` narrows them.
    pub async fn queue_items(&self, org: OrgId, queue: i64, status: Option<ItemStatus>) -> Result<Vec<AnnotationItem>> {
        let sql =
            format!("{ITEM_COLUMNS} WHERE org_id = $1 AND queue_id = $2 AND ($3 IS NULL OR status = $3) ORDER BY id");
        let rows: Vec<ItemRow> = on_db!(self, db => sqlx::query_as(&sql)
            .bind(org.0).bind(queue).bind(status.map(|s| s.as_str())).fetch_all(db).await?);
        parse_items(rows)
    }

    pub async fn queue_item(&self, org: OrgId, queue: i64, item: i64) -> Result<Option<AnnotationItem>> {
        let sql = format!("{ITEM_COLUMNS} WHERE org_id = $1 AND queue_id = $2 AND id = $3");
        let row: Option<ItemRow> =
            on_db!(self, db => sqlx::query_as(&sql).bind(org.0).bind(queue).bind(item).fetch_optional(db).await?);
        row.map(AnnotationItem::try_from).transpose()
    }

    /// Makes an item part of the gold set with its known answer (or takes it out, with `None`).
    pub async fn set_gold(
        &self,
        actor: &Actor,
        queue: i64,
        item: i64,
        gold: Option<&Labels>,
    ) -> Result<AnnotationItem> {
        let now = Utc::now();
        let org = actor.org;
        in_tx!(self, tx => {
            lock_queue!(tx, org, queue);
            let sql = format!("{ITEM_COLUMNS} WHERE org_id = $1 AND queue_id = $2 AND id = $3");
            let before: Option<ItemRow> = sqlx::query_as(&sql).bind(org.0).bind(queue).bind(item).fetch_optional(&mut *tx).await?;
            let Some(before) = before else { return Err(StoreError::NotFound { entity: "annotation item", id: item }) };
            let before = AnnotationItem::try_from(before)?;
            sqlx::query("UPDATE annotation_items SET gold = $2 WHERE id = $1").bind(item).bind(gold.map(Json)).execute(&mut *tx).await?;
            let after: ItemRow = sqlx::query_as(&sql).bind(org.0).bind(queue).bind(item).fetch_one(&mut *tx).await?;
            let after = AnnotationItem::try_from(after)?;
            audit!(tx, actor, "annotation_item", item, now, Some(json_of(&before.gold)?), Some(json_of(&after.gold)?));
            Ok(after)
        })
    }

    // ---- leases --------------------------------------------------------------------------------

    /// The item `annotator` should work on next in the queue, leased to them until `now + lease`, with
    /// the lease's end: the item they hold already if they hold one (a reload resumes it), else the first
    /// open item they have not answered whose annotations and other live leases leave a place, those
    /// closest to done first. `None` when no item has a place for them.
    pub async fn lease_next(
        &self,
        org: OrgId,
        queue: i64,
        annotator: &str,
        lease: Duration,
        now: DateTime<Utc>,
    ) -> Result<Option<(AnnotationItem, DateTime<Utc>)>> {
        let expires = now + lease;
        in_tx!(self, tx => {
            lock_queue!(tx, org, queue);
            sqlx::query("DELETE FROM annotation_leases WHERE queue_id = $1 AND expires_at <= $2")
                .bind(queue).bind(now).execute(&mut *tx).await?;
            let held: Option<i64> = sqlx::query_scalar(
                "SELECT l.item_id FROM annotation_leases l JOIN annotation_items i ON i.id = l.item_id
                 WHERE l.queue_id = $1 AND l.annotator = $2 AND i.status = 'open' ORDER BY l.leased_at, l.item_id LIMIT 1")
                .bind(queue).bind(annotator).fetch_optional(&mut *tx).await?;
            let item = match held {
                Some(item) => {
                    sqlx::query("UPDATE annotation_leases SET expires_at = $3 WHERE item_id = $1 AND annotator = $2")
                        .bind(item).bind(annotator).bind(expires).execute(&mut *tx).await?;
                    item
                }
                None => {
                    let next: Option<i64> = sqlx::query_scalar(
                        "SELECT i.id FROM annotation_items i WHERE i.queue_id = $1 AND i.status = 'open'
                         AND NOT EXISTS (SELECT 1 FROM annotations a WHERE a.item_id = i.id AND a.annotator = $2)
                         AND i.done + (SELECT COUNT(*) FROM annotation_leases l WHERE l.item_id = i.id) < i.needed
                         ORDER BY i.done DESC, i.id LIMIT 1")
                        .bind(queue).bind(annotator).fetch_optional(&mut *tx).await?;
                    let Some(item) = next else { return Ok(None) };
                    sqlx::query(
                        "INSERT INTO annotation_leases (item_id, queue_id, annotator, leased_at, expires_at) VALUES ($1, $2, $3, $4, $5)")
                        .bind(item).bind(queue).bind(annotator).bind(now).bind(expires).execute(&mut *tx).await?;
                    item
                }
            };
            let row: ItemRow = sqlx::query_as(&format!("{ITEM_COLUMNS} WHERE id = $1")).bind(item).fetch_one(&mut *tx).await?;
            Ok(Some((AnnotationItem::try_from(row)?, expires)))
        })
    }

    /// Stores `annotator`'s answer for an item they hold under a live lease, releases the lease and moves
    /// the item on, with its audit record. Refused, storing nothing: an item that is not leased to them
    /// (`item`) or whose lease ran out while no one else took it (`lease`) as `Rejected`; an item that
    /// another annotator took or completed meanwhile, or that they answered already, as `Contended`.
    #[allow(clippy::too_many_arguments)]
    pub async fn submit_annotation(
        &self,
        actor: &Actor,
        queue: i64,
        item: i64,
        annotator: &str,
        user: Option<UserId>,
        submission: &Submission,
        now: DateTime<Utc>,
    ) -> Result<(Annotation, AnnotationItem)> {
        let org = actor.org;
        in_tx!(self, tx => {
            lock_queue!(tx, org, queue);
            let sql = format!("{ITEM_COLUMNS} WHERE org_id = $1 AND queue_id = $2 AND id = $3");
            let row: Option<ItemRow> = sqlx::query_as(&sql).bind(org.0).bind(queue).bind(item).fetch_optional(&mut *tx).await?;
            let Some(row) = row else { return Err(StoreError::NotFound { entity: "annotation item", id: item }) };
            let current = AnnotationItem::try_from(row)?;
            let lease: Option<(DateTime<Utc>, DateTime<Utc>)> = sqlx::query_as(
                "SELECT leased_at, expires_at FROM annotation_leases WHERE item_id = $1 AND annotator = $2")
                .bind(item).bind(annotator).fetch_optional(&mut *tx).await?;
            let others: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM annotation_leases WHERE item_id = $1 AND annotator <> $2 AND expires_at > $3")
                .bind(item).bind(annotator).bind(now).fetch_one(&mut *tx).await?;
            let answered: Option<i64> = sqlx::query_scalar("SELECT id FROM annotations WHERE item_id = $1 AND annotator = $2")
                .bind(item).bind(annotator).fetch_optional(&mut *tx).await?;
            let taken = current.status != ItemStatus::Open || current.done + others >= current.needed;
            if answered.is_some() {
                return Err(StoreError::Contended(format!("you have already answered item {item}")));
            }
            let leased_at = match lease {
                Some((leased_at, expires)) if expires > now => leased_at,
                Some((_, expires)) if taken => {
                    return Err(StoreError::Contended(format!(
                        "item {item} was taken by another annotator after your lease ran out at {}",
                        expires.format("%H:%M:%S UTC")
                    )));
                }
                Some((_, expires)) => {
                    return Err(StoreError::Rejected(FieldErrors::single(
                        "lease",
                        format!("ran out at {}; ask for the item again", expires.format("%Y-%m-%d %H:%M:%S UTC")),
                    )));
                }
                None if taken => {
                    return Err(StoreError::Contended(format!("item {item} has been taken by another annotator")));
                }
                None => {
                    return Err(StoreError::Rejected(FieldErrors::single(
                        "item",
                        format!("item {item} is not leased to you: ask for the next item first"),
                    )));
                }
            };
            if current.status != ItemStatus::Open || (submission.outcome == AnnotationOutcome::Labelled && current.done >= current.needed) {
                return Err(StoreError::Contended(format!("item {item} has all the annotations it needs")));
            }
            let seconds = Some(((now - leased_at).num_milliseconds() as f64 / 1000.0).max(0.0));
            let annotation = store_annotation!(tx, actor, queue, current, annotator, user.map(|u| u.0), submission, AnnotationSource::App, seconds, now);
            sqlx::query("DELETE FROM annotation_leases WHERE item_id = $1 AND annotator = $2")
                .bind(item).bind(annotator).execute(&mut *tx).await?;
            let after: ItemRow = sqlx::query_as(&sql).bind(org.0).bind(queue).bind(item).fetch_one(&mut *tx).await?;
            Ok((annotation, AnnotationItem::try_from(after)?))
        })
    }

    /// Stores imported annotations in one transaction: `new_items` first (the events the file names that
    /// the queue lacked), then every row, without leases. Refused whole, naming lines, when a row's event
    /// is not an item of the queue or its annotator has already answered that item. The number stored.
    pub async fn import_annotations(
        &self,
        actor: &Actor,
        queue: i64,
        version: i64,
        needed: i64,
        new_items: &[NewItem],
        rows: &[ImportedRow<'_>],
    ) -> Result<usize> {
        let now = Utc::now();
        let org = actor.org;
        in_tx!(self, tx => {
            lock_queue!(tx, org, queue);
            insert_items!(tx, org, queue, version, needed, new_items, now);
            let mut errors = FieldErrors::new();
            let mut found = Vec::with_capacity(rows.len());
            for row in rows {
                let sql = format!("{ITEM_COLUMNS} WHERE org_id = $1 AND queue_id = $2 AND event_id = $3");
                let item: Option<ItemRow> =
                    sqlx::query_as(&sql).bind(org.0).bind(queue).bind(row.event_id).fetch_optional(&mut *tx).await?;
                let Some(item) = item else {
                    errors.add(&format!("line {}: event_id", row.line), format!("{} is not an event of the queue's loop", row.event_id));
                    continue;
                };
                let item = AnnotationItem::try_from(item)?;
                let answered: Option<i64> = sqlx::query_scalar("SELECT id FROM annotations WHERE item_id = $1 AND annotator = $2")
                    .bind(item.id).bind(row.annotator).fetch_optional(&mut *tx).await?;
                if answered.is_some() {
                    errors.add(&format!("line {}: annotator", row.line), format!("{} has already annotated event {}", row.annotator, row.event_id));
                }
                if row.submission.labels.preference.is_some() && item.alternative.is_none() {
                    errors.add(&format!("line {}: preference", row.line), "the item has no second suggestion to compare with");
                }
                found.push(item);
            }
            if !errors.is_empty() {
                return Err(StoreError::Rejected(errors));
            }
            for (row, item) in rows.iter().zip(&found) {
                // The item is read again: an earlier row of the file may have moved it on.
                let sql = format!("{ITEM_COLUMNS} WHERE id = $1");
                let current: ItemRow = sqlx::query_as(&sql).bind(item.id).fetch_one(&mut *tx).await?;
                let current = AnnotationItem::try_from(current)?;
                store_annotation!(tx, actor, queue, current, row.annotator, None::<i64>, row.submission, AnnotationSource::Import, None::<f64>, now);
            }
            Ok(rows.len())
        })
    }

    // ---- annotations ---------------------------------------------------------------------------

    /// A queue's annotations, oldest first.
    pub async fn queue_annotations(&self, org: OrgId, queue: i64) -> Result<Vec<Annotation>> {
        let sql = format!("{ANNOTATION_COLUMNS} WHERE a.org_id = $1 AND a.queue_id = $2 ORDER BY a.id");
        let rows: Vec<AnnotationRow> =
            on_db!(self, db => sqlx::query_as(&sql).bind(org.0).bind(queue).fetch_all(db).await?);
        parse_annotations(rows)
    }

    /// How many items `annotator` has answered in the queue (labelled, skipped or flagged).
    pub async fn answered_by(&self, org: OrgId, queue: i64, annotator: &str) -> Result<i64> {
        Ok(on_db!(self, db => sqlx::query_scalar(
            "SELECT COUNT(*) FROM annotations WHERE org_id = $1 AND queue_id = $2 AND annotator = $3")
            .bind(org.0).bind(queue).bind(annotator).fetch_one(db).await?))
    }

    /// How many open items of the queue `annotator` could still take: not answered by them, with a place
    /// left beside the other annotators' answers (leases aside, which come and go).
    pub async fn left_for(&self, org: OrgId, queue: i64, annotator: &str) -> Result<i64> {
        Ok(on_db!(self, db => sqlx::query_scalar(
            "SELECT COUNT(*) FROM annotation_items i WHERE i.org_id = $1 AND i.queue_id = $2 AND i.status = 'open'
             AND i.done < i.needed
             AND NOT EXISTS (SELECT 1 FROM annotations a WHERE a.item_id = i.id AND a.annotator = $3)")
            .bind(org.0).bind(queue).bind(annotator).fetch_one(db).await?))
    }

    /// Labelled annotations of a loop's queues per day (UTC), oldest first.
    pub async fn annotations_per_day(&self, org: OrgId, loop_key: &str) -> Result<Vec<(NaiveDate, i64)>> {
        let rows: Vec<(String, i64)> =
            match &self.db {
                crate::Db::Sqlite(db) => {
                    sqlx::query_as(
                        "SELECT substr(a.created_at, 1, 10) AS day, COUNT(*) FROM annotations a
                 JOIN annotation_queues q ON q.id = a.queue_id
                 WHERE a.org_id = $1 AND q.loop_key = $2 AND a.outcome = 'labelled' GROUP BY day ORDER BY day",
                    )
                    .bind(org.0)
                    .bind(loop_key)
                    .fetch_all(db)
                    .await?
                }
                crate::Db::Postgres(db) => sqlx::query_as(
                    "SELECT to_char(a.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD') AS day, COUNT(*) FROM annotations a
                 JOIN annotation_queues q ON q.id = a.queue_id
                 WHERE a.org_id = $1 AND q.loop_key = $2 AND a.outcome = 'labelled' GROUP BY day ORDER BY day",
                )
                .bind(org.0)
                .bind(loop_key)
                .fetch_all(db)
                .await?,
            };
        rows.into_iter()
            .map(|(day, n)| {
                Ok((day.parse::<NaiveDate>().map_err(|e| StoreError::corrupt(format!("day {day:?}: {e}")))?, n))
            })
            .collect()
    }

    /// The items and annotations of every queue of a loop, for building datasets: (queue key, item,
    /// its annotations), items in queue then id order.
    pub async fn loop_annotations(
        &self,
        org: OrgId,
        loop_key: &str,
    ) -> Result<Vec<(String, AnnotationItem, Vec<Annotation>)>> {
        let mut out = Vec::new();
        for queue in self.list_queues(org, Some(loop_key)).await? {
            let items = self.queue_items(org, queue.id, None).await?;
            let mut annotations = self.queue_annotations(org, queue.id).await?;
            annotations.sort_by_key(|a| (a.item_id, a.id));
            for item in items {
                let mine: Vec<Annotation> = annotations.iter().filter(|a| a.item_id == item.id).cloned().collect();
                if !mine.is_empty() {
                    out.push((queue.key.clone(), item, mine));
                }
            }
        }
        Ok(out)
    }
}
