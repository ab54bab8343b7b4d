//! Plan entities: seasons, objectives, key results, squads, squad goals, check-ins and their revisions.

// Long on purpose: the plan's entities are written in transactions that span several of them (a plan applies
// whole), so their statements stay together.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::types::Json;

use slope_domain::*;

use crate::rows::*;
use crate::{Result, Store, StoreError, in_tx, on_db};

/// Records the state of a plan entity after a write, inside that write's transaction: a revision (for
/// reading the plan "as known on" a date) and an audit record naming the actor, with the state before
/// the write taken from the entity's previous revision.
macro_rules! record_change {
    ($tx:expr, $actor:expr, $entity:expr, $id:expr, $version:expr, $now:expr, $value:expr) => {{
        let after = serde_json::to_value($value).map_err(StoreError::corrupt)?;
        crate::plan::revise!($tx, $actor, $entity, $id, $version, $now, Some(after))
    }};
}

/// Records that a plan entity was deleted: a revision whose state is JSON `null` (so the plan as known
/// after it no longer holds the entity) and an audit record with the state before.
macro_rules! record_deletion {
    ($tx:expr, $actor:expr, $entity:expr, $id:expr, $now:expr) => {{
        let last: Option<i64> = sqlx::query_scalar(
            "SELECT MAX(version) FROM revisions WHERE org_id = $1 AND entity = $2 AND entity_id = $3",
        )
        .bind($actor.org.0)
        .bind($entity)
        .bind($id)
        .fetch_one(&mut *$tx)
        .await?;
        crate::plan::revise!($tx, $actor, $entity, $id, last.unwrap_or(0) + 1, $now, None::<serde_json::Value>)
    }};
}

/// The shared part of [`record_change`] and [`record_deletion`].
macro_rules! revise {
    ($tx:expr, $actor:expr, $entity:expr, $id:expr, $version:expr, $now:expr, $after:expr) => {{
        let after: Option<serde_json::Value> = $after;
        let before: Option<Json<serde_json::Value>> = sqlx::query_scalar(
            "SELECT data FROM revisions WHERE org_id = $1 AND entity = $2 AND entity_id = $3 ORDER BY version DESC, id DESC LIMIT 1",
        )
        .bind($actor.org.0)
        .bind($entity)
        .bind($id)
        .fetch_optional(&mut *$tx)
        .await?;
        let before = before.map(|b| b.0).filter(|b| !b.is_null());
        sqlx::query(
            "INSERT INTO revisions (org_id, entity, entity_id, version, recorded_at, data) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind($actor.org.0)
        .bind($entity)
        .bind($id)
        .bind($version)
        .bind($now)
        .bind(Json(after.clone().unwrap_or(serde_json::Value::Null)))
        .execute(&mut *$tx)
        .await?;
        crate::plan::audit!($tx, $actor, $entity, $id, $now, before, after);
    }};
}

/// Writes one audit record: who changed which entity, when, and its state before and after (`None`
/// before a creation and after a deletion). Runs in the transaction of the change it records.
macro_rules! audit {
    ($tx:expr, $actor:expr, $entity:expr, $id:expr, $now:expr, $before:expr, $after:expr) => {{
        let before: Option<serde_json::Value> = $before;
        let after: Option<serde_json::Value> = $after;
        let action = match (&before, &after) {
            (None, _) => "create",
            (Some(_), Some(_)) => "update",
            (Some(_), None) => "delete",
        };
        sqlx::query(
            "INSERT INTO audit_log (org_id, actor, at, entity, entity_id, action, before, after) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind($actor.org.0)
        .bind($actor.label())
        .bind($now)
        .bind($entity)
        .bind($id)
        .bind(action)
        .bind(before.map(Json))
        .bind(after.map(Json))
        .execute(&mut *$tx)
        .await?;
    }};
}
pub(crate) use audit;
pub(crate) use revise;

/// The key a new entity gets: the one asked for, refused when taken, or else one made from its title
/// and made unique in the organisation with a numeric suffix. Runs after `lock_org`, so no other write
/// of the organisation can take the same key before this one commits.
macro_rules! choose_key {
    ($tx:expr, $table:literal, $org:expr, $requested:expr, $title:expr) => {{
        let requested: Option<&str> = $requested;
        let base = match requested {
            Some(key) => key.to_owned(),
            None => slope_domain::Key::from_title($title).as_str().to_owned(),
        };
        let taken: Vec<String> =
            sqlx::query_scalar(concat!("SELECT key FROM ", $table, " WHERE org_id = $1 AND (key = $2 OR key LIKE $3)"))
                .bind($org.0)
                .bind(&base)
                .bind(format!("{base}-%"))
                .fetch_all(&mut *$tx)
                .await?;
        if requested.is_some() && taken.contains(&base) {
            return Err(StoreError::Rejected(FieldErrors::single("key", format!("the key {base:?} is already used"))));
        }
        let mut key = base.clone();
        let mut n = 2;
        while taken.contains(&key) {
            key = format!("{base}-{n}");
            n += 1;
        }
        key
    }};
}

/// After an `UPDATE … WHERE version = $expected` matched nothing: tells a missing row from a stale edit.
macro_rules! missing_or_conflict {
    ($tx:expr, $table:literal, $entity:expr, $org:expr, $id:expr, $expected:expr) => {{
        let actual: Option<i64> =
            sqlx::query_scalar(concat!("SELECT version FROM ", $table, " WHERE org_id = $1 AND id = $2"))
                .bind($org.0)
                .bind($id)
                .fetch_optional(&mut *$tx)
                .await?;
        match actual {
            None => StoreError::NotFound { entity: $entity, id: $id },
            Some(actual) => StoreError::Conflict { entity: $entity, id: $id, expected: $expected.0, actual },
        }
    }};
}

/// The first statement of every plan write: it bumps the organisation's write sequence, which tells
/// caches that the plan changed, and it serialises the organisation's writes, because PostgreSQL locks
/// the row until commit and SQLite takes the database write lock. Cross-row checks (no overlapping
/// seasons, one active season) rely on the latter.
macro_rules! lock_org {
    ($tx:expr, $org:expr) => {
        sqlx::query("UPDATE orgs SET write_seq = write_seq + 1 WHERE id = $1").bind($org.0).execute(&mut *$tx).await?
    };
}

/// Makes a transaction's first statement a write that changes nothing, for transactions that read before
/// they write and must not bump the organisation's write sequence (which would drop its page caches). On
/// SQLite a transaction that reads first and then writes fails at once with `SQLITE_BUSY_SNAPSHOT` when
/// another connection wrote in between (the busy timeout does not apply); writing first takes the
/// database's write lock up front, so such a transaction waits its turn instead. On PostgreSQL it locks
/// the organisation's row, which serialises these writes per organisation.
macro_rules! write_first {
    ($tx:expr, $org:expr) => {
        sqlx::query("UPDATE orgs SET write_seq = write_seq WHERE id = $1").bind($org.0).execute(&mut *$tx).await?
    };
}

/// Copies the latest point of metric `$key` (current definition) onto every key result and squad goal
/// linked to it, except those of closed seasons, which are history: the value becomes their current value, and the point's time and the metric's freshness
/// limit travel with it so that reading a plan needs no join. Rejects an unknown metric key.
macro_rules! feed_linked {
    ($tx:expr, $org:expr, $key:expr) => {{
        let definition: Option<(i64, i64)> = sqlx::query_as(
            "SELECT version, freshness_hours FROM metric_definitions WHERE org_id = $1 AND key = $2 ORDER BY version DESC LIMIT 1",
        )
        .bind($org.0)
        .bind($key)
        .fetch_optional(&mut *$tx)
        .await?;
        let Some((version, freshness)) = definition else {
            return Err(StoreError::Rejected(FieldErrors::single("metric", format!("no metric has the key {:?}", $key))));
        };
        let latest: Option<(f64, DateTime<Utc>)> = sqlx::query_as(
            "SELECT value, observed_at FROM metric_points WHERE org_id = $1 AND metric_key = $2 AND version = $3
             ORDER BY bucket DESC LIMIT 1",
        )
        .bind($org.0)
        .bind($key)
        .bind(version)
        .fetch_optional(&mut *$tx)
        .await?;
        let (value, observed) = latest.map_or((None, None), |(v, at)| (Some(v), Some(at)));
        for table in [
            "UPDATE key_results SET current_value = COALESCE($3, current_value), metric_observed_at = $4, metric_freshness_hours = $5
             WHERE org_id = $1 AND metric_key = $2 AND objective_id IN
             (SELECT o.id FROM objectives o JOIN seasons s ON s.id = o.season_id WHERE s.status <> 'closed')",
            "UPDATE squad_goals SET current_value = COALESCE($3, current_value), metric_observed_at = $4, metric_freshness_hours = $5
             WHERE org_id = $1 AND metric_key = $2 AND key_result_id IN
             (SELECT k.id FROM key_results k JOIN objectives o ON o.id = k.objective_id JOIN seasons s ON s.id = o.season_id
              WHERE s.status <> 'closed')",
        ] {
            sqlx::query(table).bind($org.0).bind($key).bind(value).bind(observed).bind(freshness).execute(&mut *$tx).await?;
        }
    }};
}
pub(crate) use feed_linked;
pub(crate) use lock_org;
pub(crate) use write_first;

// The bodies of plan writes, each run inside a transaction that has already locked the organisation
// (`lock_org!`). Single writes wrap one in its own transaction; `apply_plan` runs many in one. They are
// macros rather than functions because each expands once per database driver inside `in_tx!`.

macro_rules! insert_season {
    ($tx:ident, $actor:expr, $key:expr, $spec:expr, $check:expr, $now:expr) => {{
        let spec: &SeasonSpec = $spec;
        let org = $actor.org;
        let others: Vec<SeasonRow> = sqlx::query_as("SELECT * FROM seasons WHERE org_id = $1").bind(org.0).fetch_all(&mut *$tx).await?;
        rejected(($check)(&convert_all(others)?))?;
        let key = choose_key!($tx, "seasons", org, $key, spec.name.as_str());
        let problems: Vec<&str> = spec.problems.iter().map(|p| p.as_str()).collect();
        let row: SeasonRow = sqlx::query_as(
            "INSERT INTO seasons (org_id, key, name, thesis, problems, winning, starts_on, ends_on, status, slope_target, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'draft', $9, $10, $10) RETURNING *",
        )
        .bind(org.0).bind(&key).bind(spec.name.as_str()).bind(spec.thesis.as_str()).bind(Json(&problems)).bind(spec.winning.as_str())
        .bind(spec.dates.start).bind(spec.dates.end).bind(spec.slope_target.get()).bind($now)
        .fetch_one(&mut *$tx).await?;
        let season = Season::try_from(row)?;
        record_change!($tx, $actor, "season", season.id.0, season.version.0, $now, &season);
        season
    }};
}

/// Loads the organisation's seasons and the one being changed, checking its version when one is given.
macro_rules! load_seasons {
    ($tx:ident, $org:expr, $id:expr, $expected:expr) => {{
        let id: SeasonId = $id;
        let expected: Option<Version> = $expected;
        let all: Vec<Season> = convert_all(
            sqlx::query_as::<_, SeasonRow>("SELECT * FROM seasons WHERE org_id = $1")
                .bind($org.0)
                .fetch_all(&mut *$tx)
                .await?,
        )?;
        let current =
            all.iter().find(|s| s.id == id).cloned().ok_or(StoreError::NotFound { entity: "season", id: id.0 })?;
        if let Some(expected) = expected
            && current.version != expected
        {
            return Err(StoreError::Conflict {
                entity: "season",
                id: id.0,
                expected: expected.0,
                actual: current.version.0,
            });
        }
        (current, all)
    }};
}

macro_rules! update_season {
    ($tx:ident, $actor:expr, $id:expr, $expected:expr, $spec:expr, $check:expr, $now:expr) => {{
        let spec: &SeasonSpec = $spec;
        let org = $actor.org;
        let (current, all) = load_seasons!($tx, org, $id, $expected);
        rejected(($check)(&current, &all))?;
        let problems: Vec<&str> = spec.problems.iter().map(|p| p.as_str()).collect();
        let row: SeasonRow = sqlx::query_as(
            "UPDATE seasons SET name = $3, thesis = $4, problems = $5, winning = $6, starts_on = $7, ends_on = $8,
             slope_target = $9, version = version + 1, updated_at = $10 WHERE org_id = $1 AND id = $2 RETURNING *",
        )
        .bind(org.0)
        .bind(current.id.0)
        .bind(spec.name.as_str())
        .bind(spec.thesis.as_str())
        .bind(Json(&problems))
        .bind(spec.winning.as_str())
        .bind(spec.dates.start)
        .bind(spec.dates.end)
        .bind(spec.slope_target.get())
        .bind($now)
        .fetch_one(&mut *$tx)
        .await?;
        let season = Season::try_from(row)?;
        record_change!($tx, $actor, "season", season.id.0, season.version.0, $now, &season);
        season
    }};
}

macro_rules! transition_season {
    ($tx:ident, $actor:expr, $id:expr, $expected:expr, $decide:expr, $now:expr) => {{
        let org = $actor.org;
        let (current, all) = load_seasons!($tx, org, $id, $expected);
        let (status, retrospective) = ($decide)(&current, &all).map_err(StoreError::Rejected)?;
        let row: SeasonRow = sqlx::query_as(
            "UPDATE seasons SET status = $3, retrospective = COALESCE($4, retrospective), version = version + 1, updated_at = $5
             WHERE org_id = $1 AND id = $2 RETURNING *",
        )
        .bind(org.0).bind(current.id.0).bind(status.as_str()).bind(retrospective).bind($now)
        .fetch_one(&mut *$tx).await?;
        let season = Season::try_from(row)?;
        record_change!($tx, $actor, "season", season.id.0, season.version.0, $now, &season);
        season
    }};
}

macro_rules! insert_objective {
    ($tx:ident, $actor:expr, $key:expr, $season:expr, $spec:expr, $now:expr) => {{
        let spec: &ObjectiveSpec = $spec;
        let org = $actor.org;
        let key = choose_key!($tx, "objectives", org, $key, spec.title.as_str());
        let row: ObjectiveRow = sqlx::query_as(
            "INSERT INTO objectives (org_id, key, season_id, quarter, title, description, commitment, owner, weight, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10) RETURNING *",
        )
        .bind(org.0).bind(&key).bind($season.0).bind(spec.quarter.to_string()).bind(spec.title.as_str())
        .bind(spec.description.as_ref().map(|d| d.as_str())).bind(spec.commitment.as_str())
        .bind(spec.owner.as_ref().map(|o| o.as_str())).bind(spec.weight.get()).bind($now)
        .fetch_one(&mut *$tx).await?;
        let objective = Objective::try_from(row)?;
        record_change!($tx, $actor, "objective", objective.id.0, objective.version.0, $now, &objective);
        objective
    }};
}

macro_rules! update_objective {
    ($tx:ident, $actor:expr, $id:expr, $expected:expr, $spec:expr, $now:expr) => {{
        let spec: &ObjectiveSpec = $spec;
        let (org, id, expected): (OrgId, ObjectiveId, Version) = ($actor.org, $id, $expected);
        let row: Option<ObjectiveRow> = sqlx::query_as(
            "UPDATE objectives SET quarter = $4, title = $5, description = $6, commitment = $7, owner = $8, weight = $9,
             version = version + 1, updated_at = $10 WHERE org_id = $1 AND id = $2 AND version = $3 RETURNING *",
        )
        .bind(org.0).bind(id.0).bind(expected.0).bind(spec.quarter.to_string()).bind(spec.title.as_str())
        .bind(spec.description.as_ref().map(|d| d.as_str())).bind(spec.commitment.as_str())
        .bind(spec.owner.as_ref().map(|o| o.as_str())).bind(spec.weight.get()).bind($now)
        .fetch_optional(&mut *$tx).await?;
        let Some(row) = row else {
            return Err(missing_or_conflict!($tx, "objectives", "objective", org, id.0, expected));
        };
        let objective = Objective::try_from(row)?;
        record_change!($tx, $actor, "objective", objective.id.0, objective.version.0, $now, &objective);
        objective
    }};
}

macro_rules! insert_key_result {
    ($tx:ident, $actor:expr, $key:expr, $objective:expr, $spec:expr, $now:expr) => {{
        let spec: &KeyResultSpec = $spec;
        let org = $actor.org;
        let m = MeasureCols::from_measure(&spec.measure);
        let key = choose_key!($tx, "key_results", org, $key, spec.title.as_str());
        let row: KeyResultRow = sqlx::query_as(
            "INSERT INTO key_results (org_id, key, objective_id, title, kind, start_value, target_value, threshold, low_value, high_value,
             unit, weight, confidence, created_at, updated_at, metric_key)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $14, $15) RETURNING *",
        )
        .bind(org.0).bind(&key).bind($objective.0).bind(spec.title.as_str())
        .bind(&m.kind).bind(m.start_value).bind(m.target_value).bind(m.threshold).bind(m.low_value).bind(m.high_value).bind(&m.unit)
        .bind(spec.weight.get()).bind(spec.confidence.map(|c| c.get())).bind($now).bind(spec.metric.as_ref().map(Key::as_str))
        .fetch_one(&mut *$tx).await?;
        let row = match &spec.metric {
            None => row,
            Some(metric) => {
                feed_linked!($tx, org, metric.as_str());
                sqlx::query_as("SELECT * FROM key_results WHERE org_id = $1 AND id = $2").bind(org.0).bind(row.id).fetch_one(&mut *$tx).await?
            }
        };
        let kr = KeyResult::try_from(row)?;
        record_change!($tx, $actor, "key_result", kr.id.0, kr.version.0, $now, &kr);
        kr
    }};
}

/// `$objective`: `Some(id)` moves the key result to that objective (plan files can), `None` keeps it.
macro_rules! update_key_result {
    ($tx:ident, $actor:expr, $id:expr, $expected:expr, $objective:expr, $spec:expr, $now:expr) => {{
        let spec: &KeyResultSpec = $spec;
        let (org, id, expected): (OrgId, KeyResultId, Version) = ($actor.org, $id, $expected);
        let objective: Option<ObjectiveId> = $objective;
        let m = MeasureCols::from_measure(&spec.measure);
        let row: Option<KeyResultRow> = sqlx::query_as(
            "UPDATE key_results SET title = $4, kind = $5, start_value = $6, target_value = $7, threshold = $8, low_value = $9,
             high_value = $10, unit = $11, weight = $12, confidence = COALESCE($13, confidence), version = version + 1, updated_at = $14,
             metric_key = $15,
             metric_observed_at = CASE WHEN $15 IS NULL THEN NULL ELSE metric_observed_at END,
             metric_freshness_hours = CASE WHEN $15 IS NULL THEN NULL ELSE metric_freshness_hours END,
             objective_id = COALESCE($16, objective_id)
             WHERE org_id = $1 AND id = $2 AND version = $3 RETURNING *",
        )
        .bind(org.0).bind(id.0).bind(expected.0).bind(spec.title.as_str())
        .bind(&m.kind).bind(m.start_value).bind(m.target_value).bind(m.threshold).bind(m.low_value).bind(m.high_value).bind(&m.unit)
        .bind(spec.weight.get()).bind(spec.confidence.map(|c| c.get())).bind($now).bind(spec.metric.as_ref().map(Key::as_str))
        .bind(objective.map(|o| o.0))
        .fetch_optional(&mut *$tx).await?;
        let Some(row) = row else {
            return Err(missing_or_conflict!($tx, "key_results", "key result", org, id.0, expected));
        };
        let row: KeyResultRow = match &spec.metric {
            None => row,
            Some(metric) => {
                feed_linked!($tx, org, metric.as_str());
                sqlx::query_as("SELECT * FROM key_results WHERE org_id = $1 AND id = $2").bind(org.0).bind(id.0).fetch_one(&mut *$tx).await?
            }
        };
        let kr = KeyResult::try_from(row)?;
        record_change!($tx, $actor, "key_result", kr.id.0, kr.version.0, $now, &kr);
        kr
    }};
}

/// Squads name their unit; a unit not known yet is created at the top of the organisation's tree, so
/// naming a squad's unit never fails and an admin can place the unit in the tree later.
macro_rules! ensure_unit {
    ($tx:ident, $actor:expr, $name:expr, $now:expr) => {{
        let name: &str = $name;
        let known: Option<i64> = sqlx::query_scalar("SELECT id FROM units WHERE org_id = $1 AND name = $2")
            .bind($actor.org.0)
            .bind(name)
            .fetch_optional(&mut *$tx)
            .await?;
        if known.is_none() {
            let id: i64 =
                sqlx::query_scalar("INSERT INTO units (org_id, name, created_at) VALUES ($1, $2, $3) RETURNING id")
                    .bind($actor.org.0)
                    .bind(name)
                    .bind($now)
                    .fetch_one(&mut *$tx)
                    .await?;
            let unit = Unit { id, name: name.to_owned(), parent: None, headcount: None, version: Version(1) };
            let after = serde_json::to_value(&unit).map_err(StoreError::corrupt)?;
            audit!($tx, $actor, "unit", id, $now, None, Some(after));
        }
    }};
}
pub(crate) use ensure_unit;

macro_rules! insert_squad {
    ($tx:ident, $actor:expr, $key:expr, $spec:expr, $now:expr) => {{
        let spec: &SquadSpec = $spec;
        let org = $actor.org;
        ensure_unit!($tx, $actor, spec.unit.as_str(), $now);
        let key = choose_key!($tx, "squads", org, $key, spec.name.as_str());
        let row: SquadRow = sqlx::query_as(
            "INSERT INTO squads (org_id, key, name, unit, capacity, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $6) RETURNING *",
        )
        .bind(org.0).bind(&key).bind(spec.name.as_str()).bind(spec.unit.as_str()).bind(spec.capacity.get()).bind($now)
        .fetch_one(&mut *$tx).await?;
        let squad = Squad::try_from(row)?;
        record_change!($tx, $actor, "squad", squad.id.0, squad.version.0, $now, &squad);
        squad
    }};
}

macro_rules! update_squad {
    ($tx:ident, $actor:expr, $id:expr, $expected:expr, $spec:expr, $now:expr) => {{
        let spec: &SquadSpec = $spec;
        let (org, id, expected): (OrgId, SquadId, Version) = ($actor.org, $id, $expected);
        ensure_unit!($tx, $actor, spec.unit.as_str(), $now);
        let row: Option<SquadRow> = sqlx::query_as(
            "UPDATE squads SET name = $4, unit = $5, capacity = $6, version = version + 1, updated_at = $7
             WHERE org_id = $1 AND id = $2 AND version = $3 RETURNING *",
        )
        .bind(org.0)
        .bind(id.0)
        .bind(expected.0)
        .bind(spec.name.as_str())
        .bind(spec.unit.as_str())
        .bind(spec.capacity.get())
        .bind($now)
        .fetch_optional(&mut *$tx)
        .await?;
        let Some(row) = row else {
            return Err(missing_or_conflict!($tx, "squads", "squad", org, id.0, expected));
        };
        let squad = Squad::try_from(row)?;
        record_change!($tx, $actor, "squad", squad.id.0, squad.version.0, $now, &squad);
        squad
    }};
}

macro_rules! insert_goal {
    ($tx:ident, $actor:expr, $key:expr, $squad:expr, $key_result:expr, $spec:expr, $now:expr) => {{
        let spec: &SquadGoalSpec = $spec;
        let org = $actor.org;
        let (squad, key_result): (SquadId, KeyResultId) = ($squad, $key_result);
        let m = MeasureCols::from_measure(&spec.measure);
        let key = choose_key!($tx, "squad_goals", org, $key, spec.title.as_str());
        let row: SquadGoalRow = sqlx::query_as(
            "INSERT INTO squad_goals (org_id, key, squad_id, key_result_id, title, starts_on, ends_on, investment, challenges, kill_criteria,
             planned_capacity, status, kind, start_value, target_value, threshold, low_value, high_value, unit, created_at, updated_at, metric_key)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $20, $21) RETURNING *",
        )
        .bind(org.0).bind(&key).bind(squad.0).bind(key_result.0).bind(spec.title.as_str()).bind(spec.dates.start).bind(spec.dates.end)
        .bind(spec.investment.as_str()).bind(spec.challenges.as_ref().map(|c| c.as_str())).bind(spec.kill_criteria.as_ref().map(|k| k.as_str()))
        .bind(spec.planned_capacity.get()).bind(spec.status.as_str())
        .bind(&m.kind).bind(m.start_value).bind(m.target_value).bind(m.threshold).bind(m.low_value).bind(m.high_value).bind(&m.unit)
        .bind($now).bind(spec.metric.as_ref().map(Key::as_str))
        .fetch_one(&mut *$tx).await?;
        let row = match &spec.metric {
            None => row,
            Some(metric) => {
                feed_linked!($tx, org, metric.as_str());
                sqlx::query_as("SELECT * FROM squad_goals WHERE org_id = $1 AND id = $2").bind(org.0).bind(row.id).fetch_one(&mut *$tx).await?
            }
        };
        let goal = SquadGoal::try_from(row)?;
        record_change!($tx, $actor, "squad_goal", goal.id.0, goal.version.0, $now, &goal);
        goal
    }};
}

/// `$squad`: `Some(id)` moves the goal to that squad (plan files can), `None` keeps it.
macro_rules! update_goal {
    ($tx:ident, $actor:expr, $id:expr, $expected:expr, $squad:expr, $key_result:expr, $spec:expr, $now:expr) => {{
        let spec: &SquadGoalSpec = $spec;
        let (org, id, expected): (OrgId, SquadGoalId, Version) = ($actor.org, $id, $expected);
        let (squad, key_result): (Option<SquadId>, KeyResultId) = ($squad, $key_result);
        let m = MeasureCols::from_measure(&spec.measure);
        let row: Option<SquadGoalRow> = sqlx::query_as(
            "UPDATE squad_goals SET key_result_id = $4, title = $5, starts_on = $6, ends_on = $7, investment = $8, challenges = $9,
             kill_criteria = $10, planned_capacity = $11, status = $12, kind = $13, start_value = $14, target_value = $15,
             threshold = $16, low_value = $17, high_value = $18, unit = $19, version = version + 1, updated_at = $20,
             metric_key = $21,
             metric_observed_at = CASE WHEN $21 IS NULL THEN NULL ELSE metric_observed_at END,
             metric_freshness_hours = CASE WHEN $21 IS NULL THEN NULL ELSE metric_freshness_hours END,
             squad_id = COALESCE($22, squad_id)
             WHERE org_id = $1 AND id = $2 AND version = $3 RETURNING *",
        )
        .bind(org.0).bind(id.0).bind(expected.0).bind(key_result.0).bind(spec.title.as_str()).bind(spec.dates.start).bind(spec.dates.end)
        .bind(spec.investment.as_str()).bind(spec.challenges.as_ref().map(|c| c.as_str())).bind(spec.kill_criteria.as_ref().map(|k| k.as_str()))
        .bind(spec.planned_capacity.get()).bind(spec.status.as_str())
        .bind(&m.kind).bind(m.start_value).bind(m.target_value).bind(m.threshold).bind(m.low_value).bind(m.high_value).bind(&m.unit)
        .bind($now).bind(spec.metric.as_ref().map(Key::as_str)).bind(squad.map(|s| s.0))
        .fetch_optional(&mut *$tx).await?;
        let Some(row) = row else {
            return Err(missing_or_conflict!($tx, "squad_goals", "squad goal", org, id.0, expected));
        };
        let row: SquadGoalRow = match &spec.metric {
            None => row,
            Some(metric) => {
                feed_linked!($tx, org, metric.as_str());
                sqlx::query_as("SELECT * FROM squad_goals WHERE org_id = $1 AND id = $2").bind(org.0).bind(id.0).fetch_one(&mut *$tx).await?
            }
        };
        let goal = SquadGoal::try_from(row)?;
        record_change!($tx, $actor, "squad_goal", goal.id.0, goal.version.0, $now, &goal);
        goal
    }};
}

/// Deletes one plan row of the organisation and records the deletion. Check-ins of a deleted subject
/// stay: they are what was reported at the time, and the plan as known on an earlier date shows them.
macro_rules! delete_row {
    ($tx:ident, $actor:expr, $table:literal, $entity:literal, $id:expr, $now:expr) => {{
        let id: i64 = $id;
        let deleted = sqlx::query(concat!("DELETE FROM ", $table, " WHERE org_id = $1 AND id = $2"))
            .bind($actor.org.0)
            .bind(id)
            .execute(&mut *$tx)
            .await?;
        if deleted.rows_affected() == 0 {
            return Err(StoreError::NotFound { entity: $entity, id });
        }
        record_deletion!($tx, $actor, $entity, id, $now);
    }};
}

/// The id of an entity a plan operation refers to: given, or by the key of one made earlier in it.
macro_rules! resolve {
    ($tx:ident, $table:literal, $entity:literal, $org:expr, $reference:expr) => {{
        match $reference {
            PlanRef::Id(id) => *id,
            PlanRef::Key(key) => {
                let id: Option<i64> =
                    sqlx::query_scalar(concat!("SELECT id FROM ", $table, " WHERE org_id = $1 AND key = $2"))
                        .bind($org.0)
                        .bind(key)
                        .fetch_optional(&mut *$tx)
                        .await?;
                id.ok_or_else(|| {
                    StoreError::Rejected(FieldErrors::single("key", format!("no {} has the key {key:?}", $entity)))
                })?
            }
        }
    }};
}

/// An entity a plan operation refers to: one that exists, or one created earlier in the same plan.
#[derive(Debug, Clone, PartialEq)]
pub enum PlanRef {
    Id(i64),
    Key(String),
}

/// One change of a season's plan, with validated specs. Updates carry the version they were computed
/// from, so a plan computed before someone else's edit is refused as a conflict instead of undoing it.
#[derive(Debug, Clone)]
pub enum PlanOp {
    CreateSeason { key: String, spec: SeasonSpec },
    UpdateSeason { id: SeasonId, version: Version, spec: SeasonSpec },
    TransitionSeason { season: PlanRef },
    CreateObjective { key: String, season: PlanRef, spec: ObjectiveSpec },
    UpdateObjective { id: ObjectiveId, version: Version, spec: ObjectiveSpec },
    CreateKeyResult { key: String, objective: PlanRef, spec: KeyResultSpec },
    UpdateKeyResult { id: KeyResultId, version: Version, objective: PlanRef, spec: KeyResultSpec },
    CreateSquad { key: String, spec: SquadSpec },
    UpdateSquad { id: SquadId, version: Version, spec: SquadSpec },
    CreateGoal { key: String, squad: PlanRef, key_result: PlanRef, spec: SquadGoalSpec },
    UpdateGoal { id: SquadGoalId, version: Version, squad: PlanRef, key_result: PlanRef, spec: SquadGoalSpec },
    DeleteGoal { id: SquadGoalId },
    DeleteKeyResult { id: KeyResultId },
    DeleteObjective { id: ObjectiveId },
}

fn rejected(result: std::result::Result<(), FieldErrors>) -> Result<()> {
    result.map_err(StoreError::Rejected)
}

/// The latest stored state of each plan entity as known at a past time.
#[derive(Debug, Default)]
pub struct PlanAsOf {
    pub seasons: Vec<Season>,
    pub objectives: Vec<Objective>,
    pub key_results: Vec<KeyResult>,
    pub squads: Vec<Squad>,
    pub goals: Vec<SquadGoal>,
    pub check_ins: Vec<CheckIn>,
}

impl Store {
    /// The organisation's write sequence: it grows with every committed plan write (check-ins
    /// included), on every server sharing the database, so equal values mean an unchanged plan.
    pub async fn plan_version(&self, org: OrgId) -> Result<i64> {
        let seq: Option<i64> = on_db!(self, db => sqlx::query_scalar("SELECT write_seq FROM orgs WHERE id = $1")
            .bind(org.0).fetch_optional(db).await?);
        seq.ok_or(StoreError::NotFound { entity: "organisation", id: org.0 })
    }

    // ---- seasons -------------------------------------------------------------------------------

    pub async fn list_seasons(&self, org: OrgId) -> Result<Vec<Season>> {
        let rows: Vec<SeasonRow> = on_db!(self, db => sqlx::query_as("SELECT * FROM seasons WHERE org_id = $1 ORDER BY starts_on DESC, id DESC")
            .bind(org.0).fetch_all(db).await?);
        convert_all(rows)
    }

    pub async fn get_season(&self, org: OrgId, id: SeasonId) -> Result<Season> {
        let row: Option<SeasonRow> = on_db!(self, db => sqlx::query_as("SELECT * FROM seasons WHERE org_id = $1 AND id = $2")
            .bind(org.0).bind(id.0).fetch_optional(db).await?);
        row.ok_or(StoreError::NotFound { entity: "season", id: id.0 })?.try_into()
    }

    pub async fn season_by_key(&self, org: OrgId, key: &str) -> Result<Season> {
        let row: Option<SeasonRow> = on_db!(self, db => sqlx::query_as("SELECT * FROM seasons WHERE org_id = $1 AND key = $2")
            .bind(org.0).bind(key).fetch_optional(db).await?);
        match row {
            Some(row) => row.try_into(),
            None => Err(StoreError::Rejected(FieldErrors::single("season", format!("no season has the key {key:?}")))),
        }
    }

    /// Whether a plan entity of `kind` (`season`, `objective`, `key_result`, `squad`, `squad_goal`) with
    /// `key` exists in the organisation.
    pub async fn plan_key_taken(&self, org: OrgId, kind: &str, key: &str) -> Result<bool> {
        let sql = match kind {
            "season" => "SELECT COUNT(*) FROM seasons WHERE org_id = $1 AND key = $2",
            "objective" => "SELECT COUNT(*) FROM objectives WHERE org_id = $1 AND key = $2",
            "key_result" => "SELECT COUNT(*) FROM key_results WHERE org_id = $1 AND key = $2",
            "squad" => "SELECT COUNT(*) FROM squads WHERE org_id = $1 AND key = $2",
            "squad_goal" => "SELECT COUNT(*) FROM squad_goals WHERE org_id = $1 AND key = $2",
            other => return Err(StoreError::corrupt(format!("no plan entity kind {other:?}"))),
        };
        let n: i64 = on_db!(self, db => sqlx::query_scalar(sql).bind(org.0).bind(key).fetch_one(db).await?);
        Ok(n > 0)
    }

    /// Creates a draft season. `check` sees the organisation's other seasons inside the transaction.
    pub async fn create_season(
        &self,
        actor: &Actor,
        spec: &SeasonSpec,
        check: impl FnOnce(&[Season]) -> std::result::Result<(), FieldErrors>,
    ) -> Result<Season> {
        let now = Utc::now();
        in_tx!(self, tx => {
            lock_org!(tx, actor.org);
            Ok(insert_season!(tx, actor, None, spec, check, now))
        })
    }

    /// Changes a season's plan fields. `check` sees the stored season and the organisation's others.
    pub async fn update_season(
        &self,
        actor: &Actor,
        id: SeasonId,
        expected: Version,
        spec: &SeasonSpec,
        check: impl FnOnce(&Season, &[Season]) -> std::result::Result<(), FieldErrors>,
    ) -> Result<Season> {
        let now = Utc::now();
        in_tx!(self, tx => {
            lock_org!(tx, actor.org);
            Ok(update_season!(tx, actor, id, Some(expected), spec, check, now))
        })
    }

    /// Moves a season to a new status. `decide` sees the stored season and the organisation's others and
    /// returns the new status with the retrospective to store, if any.
    pub async fn transition_season(
        &self,
        actor: &Actor,
        id: SeasonId,
        expected: Version,
        decide: impl FnOnce(&Season, &[Season]) -> std::result::Result<(SeasonStatus, Option<String>), FieldErrors>,
    ) -> Result<Season> {
        let now = Utc::now();
        in_tx!(self, tx => {
            lock_org!(tx, actor.org);
            Ok(transition_season!(tx, actor, id, Some(expected), decide, now))
        })
    }

    // ---- objectives ----------------------------------------------------------------------------

    pub async fn list_objectives(&self, org: OrgId, season: SeasonId) -> Result<Vec<Objective>> {
        let rows: Vec<ObjectiveRow> = on_db!(self, db => sqlx::query_as(
            "SELECT * FROM objectives WHERE org_id = $1 AND season_id = $2 ORDER BY quarter, id")
            .bind(org.0).bind(season.0).fetch_all(db).await?);
        convert_all(rows)
    }

    pub async fn get_objective(&self, org: OrgId, id: ObjectiveId) -> Result<Objective> {
        let row: Option<ObjectiveRow> = on_db!(self, db => sqlx::query_as("SELECT * FROM objectives WHERE org_id = $1 AND id = $2")
            .bind(org.0).bind(id.0).fetch_optional(db).await?);
        row.ok_or(StoreError::NotFound { entity: "objective", id: id.0 })?.try_into()
    }

    pub async fn create_objective(&self, actor: &Actor, season: SeasonId, spec: &ObjectiveSpec) -> Result<Objective> {
        let now = Utc::now();
        in_tx!(self, tx => {
            lock_org!(tx, actor.org);
            Ok(insert_objective!(tx, actor, None, season, spec, now))
        })
    }

    pub async fn update_objective(
        &self,
        actor: &Actor,
        id: ObjectiveId,
        expected: Version,
        spec: &ObjectiveSpec,
    ) -> Result<Objective> {
        let now = Utc::now();
        in_tx!(self, tx => {
            lock_org!(tx, actor.org);
            Ok(update_objective!(tx, actor, id, expected, spec, now))
        })
    }

    // ---- key results ---------------------------------------------------------------------------

    pub async fn list_key_results(&self, org: OrgId, season: SeasonId) -> Result<Vec<KeyResult>> {
        let rows: Vec<KeyResultRow> = on_db!(self, db => sqlx::query_as(
            "SELECT k.* FROM key_results k JOIN objectives o ON o.id = k.objective_id
             WHERE k.org_id = $1 AND o.season_id = $2 ORDER BY k.objective_id, k.id")
            .bind(org.0).bind(season.0).fetch_all(db).await?);
        convert_all(rows)
    }

    pub async fn get_key_result(&self, org: OrgId, id: KeyResultId) -> Result<KeyResult> {
        let row: Option<KeyResultRow> = on_db!(self, db => sqlx::query_as("SELECT * FROM key_results WHERE org_id = $1 AND id = $2")
            .bind(org.0).bind(id.0).fetch_optional(db).await?);
        row.ok_or(StoreError::NotFound { entity: "key result", id: id.0 })?.try_into()
    }

    pub async fn create_key_result(
        &self,
        actor: &Actor,
        objective: ObjectiveId,
        spec: &KeyResultSpec,
    ) -> Result<KeyResult> {
        let now = Utc::now();
        in_tx!(self, tx => {
            lock_org!(tx, actor.org);
            Ok(insert_key_result!(tx, actor, None, objective, spec, now))
        })
    }

    /// Changing a key result's kind keeps its check-ins: the history stays true even if its meaning
    /// changes, and the next check-in sets a current value in the new terms.
    pub async fn update_key_result(
        &self,
        actor: &Actor,
        id: KeyResultId,
        expected: Version,
        spec: &KeyResultSpec,
    ) -> Result<KeyResult> {
        let now = Utc::now();
        in_tx!(self, tx => {
            lock_org!(tx, actor.org);
            Ok(update_key_result!(tx, actor, id, expected, None, spec, now))
        })
    }

    // ---- squads --------------------------------------------------------------------------------

    pub async fn list_squads(&self, org: OrgId) -> Result<Vec<Squad>> {
        let rows: Vec<SquadRow> = on_db!(self, db => sqlx::query_as("SELECT * FROM squads WHERE org_id = $1 ORDER BY unit, name")
            .bind(org.0).fetch_all(db).await?);
        convert_all(rows)
    }

    pub async fn get_squad(&self, org: OrgId, id: SquadId) -> Result<Squad> {
        let row: Option<SquadRow> = on_db!(self, db => sqlx::query_as("SELECT * FROM squads WHERE org_id = $1 AND id = $2")
            .bind(org.0).bind(id.0).fetch_optional(db).await?);
        row.ok_or(StoreError::NotFound { entity: "squad", id: id.0 })?.try_into()
    }

    pub async fn create_squad(&self, actor: &Actor, spec: &SquadSpec) -> Result<Squad> {
        let now = Utc::now();
        let result = in_tx!(self, tx => {
            lock_org!(tx, actor.org);
            Ok(insert_squad!(tx, actor, None, spec, now))
        });
        duplicate_name(result, spec.name.as_str())
    }

    pub async fn update_squad(&self, actor: &Actor, id: SquadId, expected: Version, spec: &SquadSpec) -> Result<Squad> {
        let now = Utc::now();
        let result = in_tx!(self, tx => {
            lock_org!(tx, actor.org);
            Ok(update_squad!(tx, actor, id, expected, spec, now))
        });
        duplicate_name(result, spec.name.as_str())
    }

    // ---- squad goals ---------------------------------------------------------------------------

    /// The goals that ladder up to key results of `season`.
    pub async fn list_goals_for_season(&self, org: OrgId, season: SeasonId) -> Result<Vec<SquadGoal>> {
        let rows: Vec<SquadGoalRow> = on_db!(self, db => sqlx::query_as(
            "SELECT g.* FROM squad_goals g JOIN key_results k ON k.id = g.key_result_id JOIN objectives o ON o.id = k.objective_id
             WHERE g.org_id = $1 AND o.season_id = $2 ORDER BY g.starts_on, g.id")
            .bind(org.0).bind(season.0).fetch_all(db).await?);
        convert_all(rows)
    }

    pub async fn get_goal(&self, org: OrgId, id: SquadGoalId) -> Result<SquadGoal> {
        let row: Option<SquadGoalRow> = on_db!(self, db => sqlx::query_as("SELECT * FROM squad_goals WHERE org_id = $1 AND id = $2")
            .bind(org.0).bind(id.0).fetch_optional(db).await?);
        row.ok_or(StoreError::NotFound { entity: "squad goal", id: id.0 })?.try_into()
    }

    pub async fn create_goal(&self, actor: &Actor, squad: SquadId, spec: &SquadGoalSpec) -> Result<SquadGoal> {
        let now = Utc::now();
        in_tx!(self, tx => {
            lock_org!(tx, actor.org);
            Ok(insert_goal!(tx, actor, None, squad, spec.key_result_id, spec, now))
        })
    }

    pub async fn update_goal(
        &self,
        actor: &Actor,
        id: SquadGoalId,
        expected: Version,
        spec: &SquadGoalSpec,
    ) -> Result<SquadGoal> {
        let now = Utc::now();
        in_tx!(self, tx => {
            lock_org!(tx, actor.org);
            Ok(update_goal!(tx, actor, id, expected, None, spec.key_result_id, spec, now))
        })
    }

    // ---- plans as code -------------------------------------------------------------------------

    /// Applies a season's plan changes in one transaction: every change is made, or none. Operations
    /// run in the order given (the caller orders parents before children for creates and children
    /// before parents for deletes) and refer to entities made earlier in the same plan by key.
    /// `check_season` is the season rule of [`Store::update_season`]; `decide` is the status rule of
    /// [`Store::transition_season`], called only for a `TransitionSeason` operation.
    pub async fn apply_plan(
        &self,
        actor: &Actor,
        ops: &[PlanOp],
        check_season: impl Fn(&SeasonSpec, Option<SeasonId>, &[Season]) -> std::result::Result<(), FieldErrors>,
        decide: impl Fn(&Season, &[Season]) -> std::result::Result<(SeasonStatus, Option<String>), FieldErrors>,
    ) -> Result<()> {
        let now = Utc::now();
        let org = actor.org;
        in_tx!(self, tx => {
            lock_org!(tx, org);
            for op in ops {
                match op {
                    PlanOp::CreateSeason { key, spec } => {
                        insert_season!(tx, actor, Some(key.as_str()), spec, |all: &[Season]| check_season(spec, None, all), now);
                    }
                    PlanOp::UpdateSeason { id, version, spec } => {
                        update_season!(tx, actor, *id, Some(*version), spec, |_: &Season, all: &[Season]| check_season(spec, Some(*id), all), now);
                    }
                    PlanOp::TransitionSeason { season } => {
                        let id = resolve!(tx, "seasons", "season", org, season);
                        transition_season!(tx, actor, SeasonId(id), None, &decide, now);
                    }
                    PlanOp::CreateObjective { key, season, spec } => {
                        let season = resolve!(tx, "seasons", "season", org, season);
                        insert_objective!(tx, actor, Some(key.as_str()), SeasonId(season), spec, now);
                    }
                    PlanOp::UpdateObjective { id, version, spec } => {
                        update_objective!(tx, actor, *id, *version, spec, now);
                    }
                    PlanOp::CreateKeyResult { key, objective, spec } => {
                        let objective = resolve!(tx, "objectives", "objective", org, objective);
                        insert_key_result!(tx, actor, Some(key.as_str()), ObjectiveId(objective), spec, now);
                    }
                    PlanOp::UpdateKeyResult { id, version, objective, spec } => {
                        let objective = resolve!(tx, "objectives", "objective", org, objective);
                        update_key_result!(tx, actor, *id, *version, Some(ObjectiveId(objective)), spec, now);
                    }
                    PlanOp::CreateSquad { key, spec } => {
                        insert_squad!(tx, actor, Some(key.as_str()), spec, now);
                    }
                    PlanOp::UpdateSquad { id, version, spec } => {
                        update_squad!(tx, actor, *id, *version, spec, now);
                    }
                    PlanOp::CreateGoal { key, squad, key_result, spec } => {
                        let squad = resolve!(tx, "squads", "squad", org, squad);
                        let kr = resolve!(tx, "key_results", "key result", org, key_result);
                        insert_goal!(tx, actor, Some(key.as_str()), SquadId(squad), KeyResultId(kr), spec, now);
                    }
                    PlanOp::UpdateGoal { id, version, squad, key_result, spec } => {
                        let squad = resolve!(tx, "squads", "squad", org, squad);
                        let kr = resolve!(tx, "key_results", "key result", org, key_result);
                        update_goal!(tx, actor, *id, *version, Some(SquadId(squad)), KeyResultId(kr), spec, now);
                    }
                    PlanOp::DeleteGoal { id } => delete_row!(tx, actor, "squad_goals", "squad_goal", id.0, now),
                    PlanOp::DeleteKeyResult { id } => delete_row!(tx, actor, "key_results", "key_result", id.0, now),
                    PlanOp::DeleteObjective { id } => delete_row!(tx, actor, "objectives", "objective", id.0, now),
                }
            }
            Ok(())
        })
    }

    // ---- check-ins -----------------------------------------------------------------------------

    /// Records a check-in and makes it the subject's current value, in one transaction.
    pub async fn add_check_in(
        &self,
        org: OrgId,
        kind: SubjectKind,
        subject: i64,
        spec: &CheckInSpec,
    ) -> Result<CheckIn> {
        let now = Utc::now();
        let (table_update, entity) = match kind {
            SubjectKind::KeyResult => (
                "UPDATE key_results SET current_value = $3, confidence = COALESCE($4, confidence) WHERE org_id = $1 AND id = $2",
                "key result",
            ),
            SubjectKind::SquadGoal => (
                "UPDATE squad_goals SET current_value = $3, confidence = COALESCE($4, confidence) WHERE org_id = $1 AND id = $2",
                "squad goal",
            ),
        };
        let confidence = spec.confidence.map(|c| c.get());
        in_tx!(self, tx => {
            lock_org!(tx, org);
            let updated = sqlx::query(table_update).bind(org.0).bind(subject).bind(spec.value).bind(confidence).execute(&mut *tx).await?;
            if updated.rows_affected() == 0 {
                return Err(StoreError::NotFound { entity, id: subject });
            }
            let row: CheckInRow = sqlx::query_as(
                "INSERT INTO check_ins (org_id, subject_kind, subject_id, value, confidence, note, author, recorded_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING *",
            )
            .bind(org.0).bind(kind.as_str()).bind(subject).bind(spec.value).bind(confidence)
            .bind(spec.note.as_ref().map(|n| n.as_str())).bind(spec.author.as_str()).bind(now)
            .fetch_one(&mut *tx).await?;
            CheckIn::try_from(row)
        })
    }

    /// A subject's check-ins, newest first.
    pub async fn list_check_ins(&self, org: OrgId, kind: SubjectKind, subject: i64) -> Result<Vec<CheckIn>> {
        let rows: Vec<CheckInRow> = on_db!(self, db => sqlx::query_as(
            "SELECT * FROM check_ins WHERE org_id = $1 AND subject_kind = $2 AND subject_id = $3 ORDER BY recorded_at DESC, id DESC")
            .bind(org.0).bind(kind.as_str()).bind(subject).fetch_all(db).await?);
        convert_all(rows)
    }

    // ---- history -------------------------------------------------------------------------------

    /// Every plan entity of the organisation as it was stored at `at`, with the check-ins known then.
    pub async fn plan_as_of(&self, org: OrgId, at: DateTime<Utc>) -> Result<PlanAsOf> {
        let (revisions, check_ins): (Vec<RevisionRow>, Vec<CheckInRow>) = on_db!(self, db => {
            let revisions = sqlx::query_as("SELECT entity, entity_id, data FROM revisions WHERE org_id = $1 AND recorded_at <= $2 ORDER BY version")
                .bind(org.0).bind(at).fetch_all(db).await?;
            let check_ins = sqlx::query_as("SELECT * FROM check_ins WHERE org_id = $1 AND recorded_at <= $2")
                .bind(org.0).bind(at).fetch_all(db).await?;
            (revisions, check_ins)
        });
        // Revisions come in version order, so the last one inserted for an entity is its state at `at`.
        let mut latest: BTreeMap<(String, i64), serde_json::Value> = BTreeMap::new();
        for r in revisions {
            latest.insert((r.entity, r.entity_id), r.data.0);
        }
        // A deletion is a revision of JSON `null`: the entity was gone at `at`.
        latest.retain(|_, data| !data.is_null());
        let mut plan = PlanAsOf { check_ins: convert_all(check_ins)?, ..Default::default() };
        for ((entity, _), data) in latest {
            match entity.as_str() {
                "season" => plan.seasons.push(from_json(data)?),
                "objective" => plan.objectives.push(from_json(data)?),
                "key_result" => plan.key_results.push(from_json(data)?),
                "squad" => plan.squads.push(from_json(data)?),
                "squad_goal" => plan.goals.push(from_json(data)?),
                other => return Err(StoreError::corrupt(format!("revision of unknown entity {other:?}"))),
            }
        }
        Ok(plan)
    }
}

fn from_json<T: serde::de::DeserializeOwned>(value: serde_json::Value) -> Result<T> {
    serde_json::from_value(value).map_err(StoreError::corrupt)
}

fn duplicate_name<T: Serialize>(result: Result<T>, name: &str) -> Result<T> {
    match result {
        Err(e) if e.is_unique_violation() => {
            Err(StoreError::Rejected(FieldErrors::single("name", format!("a squad named {name:?} already exists"))))
        }
        other => other,
    }
}
