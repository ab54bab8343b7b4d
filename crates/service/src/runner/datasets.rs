//! Datasets: JSONL uploads validated row by row, and SFT and preference sets built from a loop's
//! events with lineage to the segments and events they came from.

use serde::Serialize;
use slope_domain::{Action, Actor, Dataset, DatasetKind, DatasetSource, EventRange, Key, OrgId};
use slope_runner::{Dataset as Rows, Row};
use slope_store::NewDataset;

use super::{MAX_DATASET_BYTES, Runner, invalid, runner_error};
use crate::error::internal;
use crate::{Result, ServiceError};

/// Datasets built from a loop's events.
#[derive(Clone, Debug, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BuiltDatasets {
    #[serde(rename = "loop")]
    pub loop_key: String,
    pub events_read: usize,
    pub sft: Option<Dataset>,
    pub preference: Option<Dataset>,
    /// True for each set that existed already (same content digest).
    pub sft_existed: bool,
    pub preference_existed: bool,
}

impl Runner {
    /// Registers a JSONL dataset (validated row by row; errors name `line N: field`). Identical
    /// content is the same version: it is found, not stored twice.
    pub async fn add_dataset(
        &self,
        actor: &Actor,
        name: &str,
        bytes: &[u8],
        source: DatasetSource,
    ) -> Result<(Dataset, bool)> {
        let org = actor.authorize(Action::Operate)?;
        let name = name.trim();
        if name.is_empty() || name.len() > 200 {
            return Err(invalid("name", "must be 1 to 200 characters"));
        }
        if bytes.len() > MAX_DATASET_BYTES {
            return Err(invalid("body", format!("a dataset holds at most {MAX_DATASET_BYTES} bytes")));
        }
        let owned = bytes.to_vec();
        let data = tokio::task::spawn_blocking(move || Rows::parse_jsonl(&owned))
            .await
            .map_err(|e| internal("parsing a dataset", e))?
            .map_err(|e| runner_error("", e))?;
        self.register(org, name, &data, &source).await
    }

    async fn register(&self, org: OrgId, name: &str, data: &Rows, source: &DatasetSource) -> Result<(Dataset, bool)> {
        let digest = data.digest();
        if let Some(existing) = self.store.dataset_by_digest(org, &digest).await? {
            return Ok((existing, false));
        }
        let canonical = data.to_jsonl();
        let path = format!("runner/{}/datasets/{}.jsonl", org.0, digest.trim_start_matches("sha256:"));
        let bytes = canonical.len() as i64;
        self.objects.put(&path, canonical).await?;
        let new = NewDataset {
            name,
            kind: data.kind,
            digest: &digest,
            rows: data.rows.len() as i64,
            bytes,
            path: &path,
            source,
        };
        Ok(self.store.register_dataset(org, &new).await?)
    }

    pub async fn datasets(&self, actor: &Actor) -> Result<Vec<Dataset>> {
        let org = actor.authorize(Action::Read)?;
        Ok(self.store.list_datasets(org).await?)
    }

    pub async fn dataset(&self, actor: &Actor, id: i64) -> Result<Dataset> {
        let org = actor.authorize(Action::Read)?;
        self.stored_dataset(org, id).await
    }

    pub(super) async fn stored_dataset(&self, org: OrgId, id: i64) -> Result<Dataset> {
        self.store.dataset(org, id).await?.ok_or_else(|| ServiceError::NotFound(format!("dataset {id} not found")))
    }

    /// The dataset's canonical JSONL.
    pub async fn dataset_bytes(&self, actor: &Actor, id: i64) -> Result<bytes::Bytes> {
        let record = self.dataset(actor, id).await?;
        self.objects.get(&record.path).await
    }

    pub(super) async fn load_dataset(&self, org: OrgId, id: i64) -> Result<(Dataset, Rows)> {
        let record = self.stored_dataset(org, id).await?;
        let bytes = self.objects.get(&record.path).await?;
        let data = tokio::task::spawn_blocking(move || Rows::parse_jsonl(&bytes))
            .await
            .map_err(|e| internal("reading a dataset", e))?
            .map_err(|e| internal("a stored dataset no longer parses", e))?;
        Ok((record, data))
    }

    /// Builds an SFT set (context → what the user wrote) and a preference set (what the user wrote
    /// over a suggestion they did not take) from the loop's stored events. Lineage: the segments read,
    /// the event count and time range, and the ids of the events used (an object beside the data).
    pub async fn build_datasets(&self, actor: &Actor, loop_key: &str) -> Result<BuiltDatasets> {
        let org = actor.authorize(Action::Operate)?;
        let key = Key::parse(loop_key).map_err(|m| invalid("loop", m))?;
        let (segments, bytes) = self.loops.loop_events(org, key.as_str()).await?;
        let interactions = tokio::task::spawn_blocking(move || slope_metrics::examples::text_interactions(&bytes))
            .await
            .map_err(|e| internal("reading events", e))?
            .map_err(|e| internal("reading events", e))?;
        let mut sft = Vec::new();
        let mut sft_ids = Vec::new();
        let mut pref = Vec::new();
        let mut pref_ids = Vec::new();
        for i in &interactions {
            if let Some((prompt, completion)) = i.completion() {
                sft.push(Row::Completion { prompt: prompt.into(), completion: completion.into() });
                sft_ids.push(i.event_id.clone());
            }
            if let Some((prompt, chosen, rejected)) = i.preference() {
                pref.push(Row::Preference { prompt: prompt.into(), chosen: chosen.into(), rejected: rejected.into() });
                pref_ids.push(i.event_id.clone());
            }
        }
        let range = match (interactions.first(), interactions.last()) {
            (Some(a), Some(b)) => Some(EventRange { from: a.ts, to: b.ts }),
            _ => None,
        };
        let mut out = BuiltDatasets {
            loop_key: key.as_str().into(),
            events_read: interactions.len(),
            sft: None,
            preference: None,
            sft_existed: false,
            preference_existed: false,
        };
        for (rows, ids, kind) in [(sft, sft_ids, DatasetKind::Sft), (pref, pref_ids, DatasetKind::Preference)] {
            if rows.is_empty() {
                continue;
            }
            let data = Rows { kind, rows };
            let lineage_path =
                format!("runner/{}/datasets/{}.events.json", org.0, data.digest().trim_start_matches("sha256:"));
            self.objects.put(&lineage_path, serde_json::to_vec(&ids).expect("ids serialise")).await?;
            let source = DatasetSource::Events {
                loop_key: key.as_str().into(),
                segments: segments.clone(),
                events: ids.len() as i64,
                range: range.clone(),
                event_ids: lineage_path,
            };
            let name = format!("{}-{}", key.as_str(), kind.as_str());
            let (record, created) = self.register(org, &name, &data, &source).await?;
            match kind {
                DatasetKind::Sft => (out.sft, out.sft_existed) = (Some(record), !created),
                _ => (out.preference, out.preference_existed) = (Some(record), !created),
            }
        }
        if out.sft.is_none() && out.preference.is_none() {
            return Err(ServiceError::Conflict(format!(
                "loop {} has no events with a context and a final text yet, so there is nothing to learn from",
                key.as_str()
            )));
        }
        Ok(out)
    }
}
