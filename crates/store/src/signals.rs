//! Thesis signals: "review the thesis" items raised from evidence and resolved by a leader.

use chrono::{DateTime, Utc};
use sqlx::types::Json;

use slope_domain::*;

use crate::plan::{audit, write_first};
use crate::{Result, Store, StoreError, in_tx, on_db};

#[derive(sqlx::FromRow)]
struct SignalRow {
    id: i64,
    season_id: i64,
    kind: String,
    fingerprint: String,
    subject: String,
    summary: String,
    evidence: Json<serde_json::Value>,
    raised_at: DateTime<Utc>,
    resolved_at: Option<DateTime<Utc>>,
    resolved_by: Option<String>,
    resolution: Option<String>,
}

impl TryFrom<SignalRow> for ThesisSignal {
    type Error = StoreError;

    fn try_from(r: SignalRow) -> Result<Self> {
        Ok(ThesisSignal {
            id: r.id,
            season_id: SeasonId(r.season_id),
            kind: r.kind.parse().map_err(|e: String| StoreError::Corrupt(format!("thesis signal {}: {e}", r.id)))?,
            fingerprint: r.fingerprint,
            subject: r.subject,
            summary: r.summary,
            evidence: r.evidence.0,
            raised_at: r.raised_at,
            resolved_at: r.resolved_at,
            resolved_by: r.resolved_by,
            resolution: r.resolution,
        })
    }
}

const SIGNAL_COLUMNS: &str = "SELECT id, season_id, kind, fingerprint, subject, summary, evidence, raised_at, resolved_at, resolved_by, resolution FROM thesis_signals";

impl Store {
    /// The season's signals, newest first.
    pub async fn list_signals(&self, org: OrgId, season: SeasonId) -> Result<Vec<ThesisSignal>> {
        let sql = format!("{SIGNAL_COLUMNS} WHERE org_id = $1 AND season_id = $2 ORDER BY raised_at DESC, id DESC");
        let rows: Vec<SignalRow> =
            on_db!(self, db => sqlx::query_as(&sql).bind(org.0).bind(season.0).fetch_all(db).await?);
        rows.into_iter().map(ThesisSignal::try_from).collect()
    }

    /// Stores a signal unless one with its fingerprint exists in the season (or, for a reversal, one of
    /// the same metric is open); returns whether it was new.
    /// Several servers may detect the same evidence at once: the unique fingerprint makes that harmless.
    pub async fn raise_signal(
        &self,
        org: OrgId,
        season: SeasonId,
        signal: &NewSignal,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        // No target on the conflict clause: besides the unique fingerprint, at most one reversal of a
        // metric may be open per season (a partial unique index), which two servers that saw different
        // newest points would otherwise both raise.
        let sql =
            "INSERT INTO thesis_signals (org_id, season_id, kind, fingerprint, subject, summary, evidence, raised_at)
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING";
        let done = on_db!(self, db => sqlx::query(sql)
            .bind(org.0).bind(season.0).bind(signal.kind.as_str()).bind(&signal.fingerprint).bind(&signal.subject)
            .bind(&signal.summary).bind(Json(&signal.evidence)).bind(now)
            .execute(db).await?.rows_affected());
        Ok(done == 1)
    }

    /// Resolves an open signal with the leader's note, on the audit trail in the same transaction.
    /// A signal resolved already is left as it is and returned as `Err`: the first leader's note stands.
    pub async fn resolve_signal(
        &self,
        actor: &Actor,
        id: i64,
        note: &str,
        now: DateTime<Utc>,
    ) -> Result<Result<ThesisSignal, ThesisSignal>> {
        let org = actor.org;
        let select = format!("{SIGNAL_COLUMNS} WHERE org_id = $1 AND id = $2");
        in_tx!(self, tx => {
            write_first!(tx, org);
            let row: Option<SignalRow> =
                sqlx::query_as(&select).bind(org.0).bind(id).fetch_optional(&mut *tx).await?;
            let before = ThesisSignal::try_from(row.ok_or(StoreError::NotFound { entity: "thesis signal", id })?)?;
            let updated = sqlx::query(
                "UPDATE thesis_signals SET resolved_at = $1, resolved_by = $2, resolution = $3
                 WHERE org_id = $4 AND id = $5 AND resolved_at IS NULL",
            )
            .bind(now).bind(actor.label()).bind(note).bind(org.0).bind(id)
            .execute(&mut *tx).await?.rows_affected();
            if updated == 0 {
                // Someone resolved it since it was read (a concurrent request): theirs is the resolution
                // the caller is told about.
                let row: SignalRow = sqlx::query_as(&select).bind(org.0).bind(id).fetch_one(&mut *tx).await?;
                return Ok(Err(ThesisSignal::try_from(row)?));
            }
            let row: SignalRow = sqlx::query_as(&select).bind(org.0).bind(id).fetch_one(&mut *tx).await?;
            let after = ThesisSignal::try_from(row)?;
            audit!(tx, actor, "thesis_signal", id, now,
                Some(serde_json::to_value(&before).unwrap_or_default()),
                Some(serde_json::to_value(&after).unwrap_or_default()));
            Ok(Ok(after))
        })
    }
}
