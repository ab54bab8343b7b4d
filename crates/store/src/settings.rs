//! Settings of an organisation: the adoption dashboard's rules, versioned like plans (each change is a
//! new row, kept, so what a page judged by can always be traced), and each loop's promotion gate
//! policy (one row per loop; its changes are on the audit trail).

use chrono::{DateTime, SubsecRound, Utc};
use sqlx::types::Json;

use slope_domain::*;

use crate::access::to_json;
use crate::plan::{audit, lock_org};
use crate::{Result, Store, StoreError, in_tx, on_db};

impl Store {
    /// The organisation's adoption rules: its newest version, or the defaults (version 0) when no admin
    /// has changed them.
    pub async fn adoption_settings(&self, org: OrgId) -> Result<AdoptionSettings> {
        let row: Option<SettingsRow> = on_db!(self, db => sqlx::query_as(
            "SELECT version, rules, created_by, created_at FROM adoption_rules WHERE org_id = $1 ORDER BY version DESC LIMIT 1")
            .bind(org.0).fetch_optional(db).await?);
        Ok(settings_of(row))
    }

    /// Makes `rules` the organisation's next version of its adoption rules, if they are still at
    /// `based_on`; otherwise a conflict naming both versions, and nothing is written. Two admins saving
    /// at once from the same version: one writes, and the other, serialised behind it, is the conflict
    /// (the primary key backs this up).
    pub async fn set_adoption_rules(
        &self,
        actor: &Actor,
        based_on: Version,
        rules: &AdoptionRules,
    ) -> Result<AdoptionSettings> {
        // Microseconds, as PostgreSQL keeps them, so the settings returned equal the settings read back.
        let now = Utc::now().trunc_subsecs(6);
        let org = actor.org;
        let result = in_tx!(self, tx => {
            // Serialises the organisation's writes first, so that a second admin's change waits and then
            // reads the first's version (and is refused) instead of failing on a stale SQLite snapshot.
            lock_org!(tx, org);
            let newest: Option<SettingsRow> = sqlx::query_as(
                "SELECT version, rules, created_by, created_at FROM adoption_rules WHERE org_id = $1 ORDER BY version DESC LIMIT 1")
                .bind(org.0).fetch_optional(&mut *tx).await?;
            let before = settings_of(newest);
            if before.version != based_on {
                return Err(StoreError::Conflict { entity: "adoption rules", id: org.0, expected: based_on.0, actual: before.version.0 });
            }
            let next = before.version.0 + 1;
            sqlx::query("INSERT INTO adoption_rules (org_id, version, rules, created_by, created_at) VALUES ($1, $2, $3, $4, $5)")
                .bind(org.0).bind(next).bind(Json(rules)).bind(actor.label()).bind(now)
                .execute(&mut *tx).await?;
            let after = AdoptionSettings { rules: *rules, version: Version(next), set_by: Some(actor.label()), set_at: Some(now) };
            // The defaults count as the state before the first change, so the trail shows what changed.
            audit!(tx, actor, "adoption_rules", org.0, now, Some(to_json(&before)?), Some(to_json(&after)?));
            Ok(after)
        });
        match result {
            Err(e) if e.is_unique_violation() => {
                let actual = self.adoption_settings(org).await?.version.0;
                Err(StoreError::Conflict { entity: "adoption rules", id: org.0, expected: based_on.0, actual })
            }
            other => other,
        }
    }
}

impl Store {
    /// The loop's promotion gate policy; the default (not significantly worse) when none was set.
    pub async fn gate_policy(&self, org: OrgId, loop_key: &str) -> Result<GatePolicy> {
        let row: Option<PolicyRow> = on_db!(self, db => sqlx::query_as(
            "SELECT online, offline, set_by, set_at FROM gate_policies WHERE org_id = $1 AND loop_key = $2")
            .bind(org.0).bind(loop_key).fetch_optional(db).await?);
        policy_of(loop_key, row)
    }

    /// Sets the loop's promotion gate policy, replacing the earlier one, on the audit trail.
    pub async fn set_gate_policy(
        &self,
        actor: &Actor,
        loop_key: &str,
        online: OnlineRule,
        offline: OfflineRule,
    ) -> Result<GatePolicy> {
        // Microseconds, as PostgreSQL keeps them, so the policy returned equals the policy read back.
        let now = Utc::now().trunc_subsecs(6);
        let org = actor.org;
        in_tx!(self, tx => {
            lock_org!(tx, org);
            // Read under the lock, so the trail's "before" is what this change replaced.
            let row: Option<PolicyRow> = sqlx::query_as(
                "SELECT online, offline, set_by, set_at FROM gate_policies WHERE org_id = $1 AND loop_key = $2")
                .bind(org.0).bind(loop_key).fetch_optional(&mut *tx).await?;
            let before = policy_of(loop_key, row)?;
            sqlx::query(
                "INSERT INTO gate_policies (org_id, loop_key, online, offline, set_by, set_at)
                 VALUES ($1, $2, $3, $4, $5, $6)
                 ON CONFLICT (org_id, loop_key) DO UPDATE SET online = excluded.online, offline = excluded.offline,
                 set_by = excluded.set_by, set_at = excluded.set_at")
                .bind(org.0).bind(loop_key).bind(online.as_str()).bind(offline.as_str()).bind(actor.label()).bind(now)
                .execute(&mut *tx).await?;
            let after = GatePolicy {
                loop_key: loop_key.to_owned(),
                online,
                offline,
                set_by: Some(actor.label()),
                set_at: Some(now),
            };
            audit!(tx, actor, "gate_policy", org.0, now, Some(to_json(&before)?), Some(to_json(&after)?));
            Ok(after)
        })
    }
}

/// A stored gate policy: online rule, offline rule, who set it, when.
type PolicyRow = (String, String, String, DateTime<Utc>);

/// A loop's stored gate policy, or the default without one.
fn policy_of(loop_key: &str, row: Option<PolicyRow>) -> Result<GatePolicy> {
    let Some((online, offline, set_by, set_at)) = row else { return Ok(GatePolicy::default_for(loop_key)) };
    let corrupt = |e: String| StoreError::Corrupt(format!("gate policy of {loop_key}: {e}"));
    Ok(GatePolicy {
        loop_key: loop_key.to_owned(),
        online: online.parse().map_err(corrupt)?,
        offline: offline.parse().map_err(corrupt)?,
        set_by: Some(set_by),
        set_at: Some(set_at),
    })
}

/// A stored version of the rules: version, rules, who set them and when.
type SettingsRow = (i64, Json<AdoptionRules>, String, DateTime<Utc>);

fn settings_of(row: Option<SettingsRow>) -> AdoptionSettings {
    row.map_or_else(AdoptionSettings::default, |(version, rules, by, at)| AdoptionSettings {
        rules: rules.0,
        version: Version(version),
        set_by: Some(by),
        set_at: Some(at),
    })
}
