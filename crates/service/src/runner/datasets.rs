//! Datasets: JSONL uploads validated row by row, and SFT and preference sets built from a loop's
//! events with lineage to the segments and events they came from.

use serde::Serialize;
use slope_domain::{
    Action, Actor, Annotation, Dataset, DatasetBasis, DatasetKind, DatasetSource, EventRange, Key, LineageItem, OrgId,
    Resolved, RowLineage, resolve,
};
use slope_runner::{Dataset as Rows, Row};
use slope_store::NewDataset;

use super::{MAX_DATASET_BYTES, Runner, invalid, runner_error};
use crate::error::internal;
use crate::{Result, ServiceError};

/// Datasets built from a loop's events, its expert annotations, or both.
#[derive(Clone, Debug, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BuiltDatasets {
    #[serde(rename = "loop")]
    pub loop_key: String,
    /// What the rows came from: `events`, `annotations` or `both`.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub from: DatasetBasis,
    pub events_read: usize,
    /// Labelled annotations behind the rows (none for datasets of events alone).
    pub annotations_used: usize,
    pub sft: Option<Dataset>,
    pub preference: Option<Dataset>,
    /// True for each set that existed already (same content digest).
    pub sft_existed: bool,
    pub preference_existed: bool,
}

/// The rows of one kind being built: rows, the event behind each, and the lineage of those that came from
/// annotations.
#[derive(Default)]
struct Building {
    rows: Vec<Row>,
    event_ids: Vec<String>,
    lineage: Vec<RowLineage>,
}

impl Building {
    fn push(&mut self, row: Row, event_id: &str, from: Option<(&[LineageItem], &Resolved)>) {
        if let Some((items, r)) = from {
            self.lineage.push(RowLineage {
                row: self.rows.len(),
                items: items.to_vec(),
                event_id: r.event_id.clone(),
                annotations: r.annotations.clone(),
                annotators: r.annotators.clone(),
            });
        }
        self.rows.push(row);
        self.event_ids.push(event_id.to_owned());
    }

    fn annotations(&self) -> usize {
        self.lineage.iter().map(|l| l.annotations.len()).sum()
    }
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

    /// Builds an SFT set and a preference set for a loop. From events: context → what the user wrote, and
    /// what they wrote over a suggestion they did not take. From annotations: context → the consensus
    /// correction, and the preferred suggestion (or the correction) over the other (see the domain's
    /// `resolve`). From both: the events, with each annotated event's rows taken from its annotations.
    /// Lineage: the segments read, the event count and time range, the id of the event behind each row
    /// (an object beside the data) and, for rows from annotations, their item, annotations and
    /// annotators (another object).
    pub async fn build_datasets(&self, actor: &Actor, loop_key: &str, from: DatasetBasis) -> Result<BuiltDatasets> {
        let org = actor.authorize(Action::Operate)?;
        let key = Key::parse(loop_key).map_err(|m| invalid("loop", m))?;
        let (segments, interactions) = if from == DatasetBasis::Annotations {
            self.loops.ensure_loop(org, key.as_str()).await?;
            (vec![], vec![])
        } else {
            let (segments, bytes) = self.loops.loop_events(org, key.as_str()).await?;
            let interactions = tokio::task::spawn_blocking(move || slope_metrics::examples::text_interactions(&bytes))
                .await
                .map_err(|e| internal("reading events", e))?
                .map_err(|e| internal("reading events", e))?;
            (segments, interactions)
        };
        // Each annotated item resolves to its rows. Queues that annotated the same event are merged: the
        // correction and the pair come from the first queue (by key) that has one, and the lineage names
        // every annotation behind them.
        let mut resolved: Vec<(Vec<LineageItem>, Resolved, chrono::DateTime<chrono::Utc>)> = Vec::new();
        if from != DatasetBasis::Events {
            let mut at_event: std::collections::HashMap<String, usize> = Default::default();
            for (queue, item, annotations) in self.store.loop_annotations(org, key.as_str()).await? {
                let refs: Vec<&Annotation> = annotations.iter().collect();
                let Some(r) = resolve(&item, &refs) else { continue };
                let source = LineageItem { queue, item_id: r.item_id };
                match at_event.get(&r.event_id) {
                    None => {
                        at_event.insert(r.event_id.clone(), resolved.len());
                        resolved.push((vec![source], r, item.event_at));
                    }
                    Some(&i) => {
                        let (sources, merged, _) = &mut resolved[i];
                        sources.push(source);
                        merged.correction = merged.correction.take().or(r.correction);
                        merged.pair = merged.pair.take().or(r.pair);
                        merged.annotations.extend(r.annotations);
                        merged.annotators.extend(r.annotators);
                    }
                }
            }
            resolved.sort_by(|a, b| (a.2, &a.1.event_id).cmp(&(b.2, &b.1.event_id)));
        }
        let by_event: std::collections::HashMap<&str, usize> =
            resolved.iter().enumerate().map(|(i, (_, r, _))| (r.event_id.as_str(), i)).collect();
        let mut sft = Building::default();
        let mut pref = Building::default();
        let mut used = vec![false; resolved.len()];
        let annotated = |sft: &mut Building, pref: &mut Building, items: &[LineageItem], r: &Resolved| {
            if let Some(c) = &r.correction {
                sft.push(
                    Row::Completion { prompt: r.context.clone(), completion: c.clone() },
                    &r.event_id,
                    Some((items, r)),
                );
            }
            if let Some((chosen, rejected)) = &r.pair {
                let row =
                    Row::Preference { prompt: r.context.clone(), chosen: chosen.clone(), rejected: rejected.clone() };
                pref.push(row, &r.event_id, Some((items, r)));
            }
        };
        for i in &interactions {
            if let Some(&at) = by_event.get(i.event_id.as_str()) {
                used[at] = true;
                let (items, r, _) = &resolved[at];
                annotated(&mut sft, &mut pref, items, r);
                continue;
            }
            if let Some((prompt, completion)) = i.completion() {
                sft.push(Row::Completion { prompt: prompt.into(), completion: completion.into() }, &i.event_id, None);
            }
            if let Some((prompt, chosen, rejected)) = i.preference() {
                let row = Row::Preference { prompt: prompt.into(), chosen: chosen.into(), rejected: rejected.into() };
                pref.push(row, &i.event_id, None);
            }
        }
        // Annotated events that the live segments no longer hold, and every annotation when the events
        // are not read, come after the events, in event time order.
        for (at, (items, r, _)) in resolved.iter().enumerate() {
            if !used[at] {
                annotated(&mut sft, &mut pref, items, r);
            }
        }
        let range = match (interactions.first(), interactions.last()) {
            (Some(a), Some(b)) => Some(EventRange { from: a.ts, to: b.ts }),
            _ => None,
        };
        let mut out = BuiltDatasets {
            loop_key: key.as_str().into(),
            from,
            events_read: interactions.len(),
            annotations_used: 0,
            sft: None,
            preference: None,
            sft_existed: false,
            preference_existed: false,
        };
        let mut annotations_used = std::collections::HashSet::new();
        for (built, kind) in [(sft, DatasetKind::Sft), (pref, DatasetKind::Preference)] {
            if built.rows.is_empty() {
                continue;
            }
            annotations_used.extend(built.lineage.iter().flat_map(|l| l.annotations.iter().copied()));
            let data = Rows { kind, rows: built.rows.clone() };
            let digest = data.digest();
            let stem = format!("runner/{}/datasets/{}", org.0, digest.trim_start_matches("sha256:"));
            let lineage_path = format!("{stem}.events.json");
            self.objects.put(&lineage_path, serde_json::to_vec(&built.event_ids).expect("ids serialise")).await?;
            let annotation_lineage = if built.lineage.is_empty() {
                None
            } else {
                let path = format!("{stem}.annotations.json");
                self.objects.put(&path, serde_json::to_vec(&built.lineage).expect("lineage serialises")).await?;
                Some(path)
            };
            let source = DatasetSource::Events {
                loop_key: key.as_str().into(),
                segments: segments.clone(),
                events: built.event_ids.len() as i64,
                range: range.clone(),
                event_ids: lineage_path,
                annotations: (from != DatasetBasis::Events).then_some(built.annotations() as i64),
                annotation_lineage,
            };
            // The loop's datasets keep their name whether or not annotations replaced some rows (the
            // source says how many); a set of annotations alone is named apart.
            let name = match from {
                DatasetBasis::Events | DatasetBasis::Both => format!("{}-{}", key.as_str(), kind.as_str()),
                DatasetBasis::Annotations => format!("{}-{}-annotations", key.as_str(), kind.as_str()),
            };
            let (record, created) = self.register(org, &name, &data, &source).await?;
            match kind {
                DatasetKind::Sft => (out.sft, out.sft_existed) = (Some(record), !created),
                _ => (out.preference, out.preference_existed) = (Some(record), !created),
            }
        }
        out.annotations_used = annotations_used.len();
        if out.sft.is_none() && out.preference.is_none() {
            return Err(ServiceError::Conflict(match from {
                DatasetBasis::Annotations => format!(
                    "loop {} has no labelled annotations with a correction or a preference yet, so there is nothing to learn from",
                    key.as_str()
                ),
                _ => format!(
                    "loop {} has no events with a context and a final text yet, so there is nothing to learn from",
                    key.as_str()
                ),
            }));
        }
        Ok(out)
    }
}
