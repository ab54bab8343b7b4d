//! Labels in and out as JSONL: an export of a queue's annotations with their items' text (what an
//! external labelling tool or a data scientist needs), and an import of labels made elsewhere, checked
//! line by line and stored whole or not at all. An export imports into another queue as it is.

use chrono::{DateTime, Utc};
use serde::Serialize;
use slope_domain::*;
use slope_store::ImportedRow;

use super::Annotations;
use crate::Result;

/// The most bytes one imported file may have.
pub const MAX_IMPORT_BYTES: usize = 64 * 1024 * 1024;

/// One exported line: the annotation with its item.
#[derive(Serialize)]
struct ExportLine<'a> {
    queue: &'a str,
    queue_version: i64,
    item_id: i64,
    event_id: &'a str,
    event_at: DateTime<Utc>,
    context: &'a str,
    suggestion: Option<&'a str>,
    alternative: Option<&'a str>,
    final_text: Option<&'a str>,
    annotator: &'a str,
    outcome: &'static str,
    #[serde(flatten)]
    labels: &'a Labels,
    note: Option<&'a str>,
    source: &'static str,
    seconds: Option<f64>,
    created_at: DateTime<Utc>,
}

impl Annotations {
    /// The queue's annotations as JSONL, oldest first, each with its item's text.
    pub async fn export(&self, actor: &Actor, key: &str) -> Result<Vec<u8>> {
        let org = actor.authorize(Action::Read)?;
        let queue = self.stored_queue(org, key).await?;
        let items = self.store.queue_items(org, queue.id, None).await?;
        let annotations = self.store.queue_annotations(org, queue.id).await?;
        let by_id: std::collections::HashMap<i64, &AnnotationItem> = items.iter().map(|i| (i.id, i)).collect();
        let mut out = Vec::new();
        for a in &annotations {
            let Some(item) = by_id.get(&a.item_id) else { continue };
            let line = ExportLine {
                queue: &queue.key,
                queue_version: item.queue_version,
                item_id: item.id,
                event_id: &item.event_id,
                event_at: item.event_at,
                context: &item.context,
                suggestion: item.suggestion.as_deref(),
                alternative: item.alternative.as_ref().map(|x| x.text.as_str()),
                final_text: item.final_text.as_deref(),
                annotator: &a.annotator,
                outcome: a.outcome.as_str(),
                labels: &a.labels,
                note: a.note.as_deref(),
                source: a.source.as_str(),
                seconds: a.seconds,
                created_at: a.created_at,
            };
            serde_json::to_writer(&mut out, &line).map_err(|e| crate::error::internal("exporting annotations", e))?;
            out.push(b'\n');
        }
        Ok(out)
    }

    /// Imports labels made elsewhere (JSONL: `event_id`, `annotator` and the labels, as an export writes
    /// them). Every line is checked against the queue's current labels; events of the loop that the queue
    /// lacks become items first (a preference item takes its second suggestion from the line's
    /// `alternative`). A file with any bad line is refused whole, naming lines and fields.
    pub async fn import(&self, actor: &Actor, key: &str, bytes: &[u8]) -> Result<Imported> {
        let org = actor.authorize(Action::Operate)?;
        let queue = self.stored_queue(org, key).await?;
        if bytes.len() > MAX_IMPORT_BYTES {
            return Err(crate::ServiceError::TooLarge {
                limit: "import",
                message: format!("an import holds at most {MAX_IMPORT_BYTES} bytes: split it"),
            });
        }
        let text = std::str::from_utf8(bytes).map_err(|e| {
            let line = bytes[..e.valid_up_to()].iter().filter(|&&b| b == b'\n').count() + 1;
            FieldErrors::single(&format!("line {line}: line"), "is not UTF-8")
        })?;
        let rows = parse_import(text, &queue.settings.labels)?;
        let held = self.store.queue_event_ids(org, queue.id).await?;
        let wanted: std::collections::HashSet<&str> =
            rows.iter().map(|r| r.event_id.as_str()).filter(|id| !held.contains(*id)).collect();
        let mut new_items = Vec::new();
        if !wanted.is_empty() {
            let alternatives = alternatives_of(text);
            for i in self.interactions(org, &queue.loop_key).await? {
                if !wanted.contains(i.event_id.as_str()) {
                    continue;
                }
                let alternative = alternatives.get(i.event_id.as_str()).map(|t| Alternative {
                    text: t.clone(),
                    model_id: 0,
                    model: "imported".into(),
                });
                new_items.push(super::sampling::new_item(&i, alternative));
            }
        }
        let imported: Vec<ImportedRow<'_>> = rows
            .iter()
            .map(|r| ImportedRow {
                line: r.line,
                event_id: &r.event_id,
                annotator: &r.annotator,
                submission: &r.submission,
            })
            .collect();
        let needed = i64::from(queue.settings.annotators_per_item);
        let stored =
            self.store.import_annotations(actor, queue.id, queue.version, needed, &new_items, &imported).await?;
        Ok(Imported { queue: queue.key, annotations: stored, items_added: new_items.len() })
    }
}

/// The `alternative` text each line of an import gives, by event id (the export writes it), for items
/// the import creates.
fn alternatives_of(text: &str) -> std::collections::HashMap<String, String> {
    #[derive(serde::Deserialize)]
    struct Line {
        event_id: Option<String>,
        alternative: Option<String>,
    }
    text.lines()
        .filter_map(|l| serde_json::from_str::<Line>(l).ok())
        .filter_map(|l| Some((l.event_id?.trim().to_owned(), l.alternative?)))
        .collect()
}
