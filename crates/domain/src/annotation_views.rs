//! What annotation pages and the API show, assembled by the service in one call each: the queues a person
//! may see, a queue's page for its operators, an annotator's work page, and the answers of a submission,
//! a sampling round and an import.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::agreement::AgreementReport;
use crate::annotation::{Annotation, AnnotationItem, AnnotationQueue, QueueProgress, QueueSettings, WorkItem};
use crate::budget::AnnotationBudget;

/// A queue in a list: its progress, and what the viewer may do with it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct QueueSummary {
    pub queue: AnnotationQueue,
    pub progress: QueueProgress,
    /// Items the viewer has answered in this queue.
    pub answered_by_you: i64,
    pub you_may_annotate: bool,
}

/// One version of a queue's definition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct QueueVersion {
    pub version: i64,
    pub settings: QueueSettings,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
}

/// A queue as its operators and readers see it: definition and versions, progress, agreement and
/// quality, flagged items and the newest annotations.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct QueuePage {
    pub summary: QueueSummary,
    /// The current version's guidelines rendered to HTML, as on [`WorkPage::guidelines_html`].
    pub guidelines_html: String,
    pub versions: Vec<QueueVersion>,
    pub agreement: AgreementReport,
    pub flagged: Vec<FlaggedItem>,
    /// The newest labelled annotations, newest first.
    pub recent: Vec<Annotation>,
    /// Labelled annotations per day (UTC), oldest first, for the volume chart.
    pub per_day: Vec<(chrono::NaiveDate, i64)>,
    /// The items of the gold set.
    pub gold: Vec<AnnotationItem>,
}

/// A flagged item with why it was flagged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FlaggedItem {
    pub item: AnnotationItem,
    pub annotator: String,
    pub note: String,
    pub at: DateTime<Utc>,
}

/// An annotator's page of one queue: the guidelines and labels, progress, and the item they hold.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WorkPage {
    pub queue_key: String,
    pub queue_name: String,
    #[serde(rename = "loop")]
    pub loop_key: String,
    /// The guidelines as written (Markdown).
    pub guidelines: String,
    /// The guidelines rendered to HTML for a page: raw HTML in them is shown as text and links keep only
    /// relative, `http(s)` and `mailto` addresses.
    pub guidelines_html: String,
    pub labels: crate::annotation::LabelSchema,
    pub progress: QueueProgress,
    pub answered_by_you: i64,
    /// Open items the viewer could still take (the one they hold included).
    pub left_for_you: i64,
    /// The item leased to the viewer; `None` when the queue has nothing left for them.
    pub item: Option<WorkItem>,
}

/// The answer to a submission: what was stored, where the queue stands, and the next item (leased
/// already), so an annotator's page moves on without a reload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Submitted {
    pub annotation: Annotation,
    pub progress: QueueProgress,
    pub answered_by_you: i64,
    pub left_for_you: i64,
    pub next: Option<WorkItem>,
}

/// What a round of sampling added.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Sampled {
    pub queue: String,
    pub version: i64,
    /// Interactions of the loop that were not in the queue yet.
    pub considered: usize,
    pub added: usize,
    /// Chosen interactions left out because the challenger's suggestion equals the one served (a
    /// preference between them teaches nothing).
    pub identical: usize,
    pub policy: String,
}

/// What an import stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Imported {
    pub queue: String,
    pub annotations: usize,
    /// Items the file's events added to the queue.
    pub items_added: usize,
}

/// A fine-tune started from annotations: the datasets built and the job queued.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AnnotatedFineTune {
    pub sft_dataset_id: i64,
    pub sft_rows: i64,
    pub annotations_used: usize,
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub job: crate::runner::Job,
}

/// The annotation budgets of a loop's key results, for the loop page.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LoopBudget {
    #[serde(rename = "loop")]
    pub loop_key: String,
    /// One per key result fed by an acceptance metric of the loop: (key result id, title, budget).
    pub key_results: Vec<KeyResultBudget>,
}

/// One key result's budget.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct KeyResultBudget {
    pub key_result_id: i64,
    pub title: String,
    pub budget: AnnotationBudget,
}
