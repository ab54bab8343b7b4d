//! Expert annotation: queues of a loop's interactions that experts review, the labels they give, and how
//! annotations become training rows.
//!
//! A queue is defined on one loop: which interactions enter it (a [`Sampling`] policy), the guidelines,
//! the labels it asks for (a [`LabelSchema`]: a correction of the suggestion or a preference between two
//! suggestions, a rating from 1 to 5, tags), how many annotators each item needs and who may annotate.
//! Definitions are versioned like metric definitions: an edit makes a new version, and every item keeps
//! the version it was sampled under.
//!
//! Everything here is pure, so the browser checks a submission by the same rules as the server, and the
//! rules are unit-tested on their own.

// Long on purpose: a queue's definition, its items and labels, the checks of a submission and of an
// imported file, the text comparisons behind corrections and the resolution into training rows are one
// vocabulary, and splitting them would scatter the rules an annotation is held to.

use std::collections::{BTreeMap, HashSet};

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::access::{Actor, Principal, Role, UserId};
use crate::entities::{SquadId, string_enum};
use crate::errors::FieldErrors;
use crate::metric::Key;
use crate::newtypes::{Checker, Title};

/// The most annotators one item may ask for.
pub const MAX_OVERLAP: u32 = 5;
pub const MAX_GUIDELINES_CHARS: usize = 20_000;
/// The longest correction: far longer than a suggestion, so a whole rewritten sentence fits.
pub const MAX_CORRECTION_CHARS: usize = 4_000;
pub const MAX_NOTE_CHARS: usize = 2_000;
pub const MAX_TAGS: usize = 10;
pub const MAX_TAG_CHARS: usize = 40;
/// The most items one round of sampling adds: a bigger queue is sampled in several rounds.
pub const MAX_SAMPLE: u32 = 5_000;
pub const DEFAULT_LEASE_MINUTES: u32 = 10;
pub const MAX_LEASE_MINUTES: u32 = 240;
/// The most lines one imported file may hold.
pub const MAX_IMPORT_ROWS: usize = 100_000;
/// How many row errors a refused import lists; the rest are counted.
pub const MAX_REPORTED_IMPORT_ERRORS: usize = 20;

// ---- sampling ------------------------------------------------------------------------------------

string_enum!(
    /// The names of the sampling policies, as forms and files spell them.
    SamplingPolicy {
        Random => "random",
        LowestAcceptance => "lowest-acceptance",
        Disagreement => "disagreement",
        DriftWindow => "drift-window",
        Explicit => "explicit",
    }
);

/// Which of a loop's interactions (events with a context and a suggestion) enter a queue. Each round of
/// sampling considers only interactions not in the queue yet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "policy", rename_all = "kebab-case")]
pub enum Sampling {
    /// Each interaction enters with probability `share`, decided by a stable hash of the seed and its
    /// event id (so a later round never reverses an earlier decision); newest first, at most `limit` a round.
    Random { share: f64, seed: u64, limit: u32 },
    /// The `count` interactions whose suggestion kept the smallest share of its characters.
    LowestAcceptance { count: u32 },
    /// The `count` interactions where the loop's challenger would have suggested something most unlike
    /// what was served (the champion's suggestion, outside experiments), by normalised edit distance.
    Disagreement { count: u32 },
    /// Interactions of the days `from`–`to` (a window where drift was seen), each with probability
    /// `share`, at most `limit` a round.
    DriftWindow { from: NaiveDate, to: NaiveDate, share: f64, seed: u64, limit: u32 },
    /// Exactly these events.
    Explicit { event_ids: Vec<String> },
}

/// A sampling policy as a form or a JSON body carries it; which fields matter depends on `policy`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(default, deny_unknown_fields)]
pub struct SamplingInput {
    /// `random`, `lowest-acceptance`, `disagreement`, `drift-window` or `explicit`.
    pub policy: String,
    /// The probability that an interaction enters (`random`, `drift-window`), in (0, 1].
    pub share: Option<f64>,
    /// How many interactions enter (`lowest-acceptance`, `disagreement`) [default: 100].
    pub count: Option<i64>,
    /// The most interactions one round adds (`random`, `drift-window`) [default: 500].
    pub limit: Option<i64>,
    /// The seed of the stable hash (`random`, `drift-window`) [default: 1].
    pub seed: Option<i64>,
    /// The window's first and last day (`drift-window`), `YYYY-MM-DD`.
    pub from: String,
    pub to: String,
    /// The events (`explicit`).
    pub event_ids: Vec<String>,
}

impl SamplingInput {
    pub fn parse(&self) -> Result<Sampling, FieldErrors> {
        let mut c = Checker::new();
        let policy = c.check("policy", self.policy.parse::<SamplingPolicy>());
        let share = |c: &mut Checker| match self.share {
            Some(s) if s > 0.0 && s <= 1.0 => Some(s),
            Some(s) => {
                c.fail("share", format!("must be more than 0 and at most 1, not {s}"));
                None
            }
            None => {
                c.fail("share", "is required: the probability that an interaction enters, such as 0.1");
                None
            }
        };
        let whole = |c: &mut Checker, field: &str, value: Option<i64>, default: u32| match value {
            None => Some(default),
            Some(v) if (1..=MAX_SAMPLE as i64).contains(&v) => Some(v as u32),
            Some(v) => {
                c.fail(field, format!("must be between 1 and {MAX_SAMPLE}, not {v}"));
                None
            }
        };
        let seed = match self.seed {
            None => Some(1),
            Some(s) if s >= 0 => Some(s as u64),
            Some(s) => {
                c.fail("seed", format!("must be a whole number from 0, not {s}"));
                None
            }
        };
        let sampling = match policy {
            None => None,
            Some(SamplingPolicy::Random) => {
                let (share, limit) = (share(&mut c), whole(&mut c, "limit", self.limit, 500));
                Some((|| Some(Sampling::Random { share: share?, seed: seed?, limit: limit? }))())
            }
            Some(SamplingPolicy::LowestAcceptance) => {
                whole(&mut c, "count", self.count, 100).map(|count| Some(Sampling::LowestAcceptance { count }))
            }
            Some(SamplingPolicy::Disagreement) => {
                whole(&mut c, "count", self.count, 100).map(|count| Some(Sampling::Disagreement { count }))
            }
            Some(SamplingPolicy::DriftWindow) => {
                let (share, limit) = (share(&mut c), whole(&mut c, "limit", self.limit, 500));
                let from = c.date("from", &self.from);
                let to = c.date("to", &self.to);
                if let (Some(f), Some(t)) = (from, to)
                    && t < f
                {
                    c.fail("to", "must be on or after the first day");
                }
                Some((|| {
                    Some(Sampling::DriftWindow { from: from?, to: to?, share: share?, seed: seed?, limit: limit? })
                })())
            }
            Some(SamplingPolicy::Explicit) => {
                let mut seen = HashSet::new();
                let mut ids = Vec::new();
                for raw in &self.event_ids {
                    let id = raw.trim();
                    if id.is_empty() || id.len() > 200 {
                        c.fail("event_ids", format!("{raw:?} is not an event id (1 to 200 characters)"));
                    } else if seen.insert(id.to_owned()) {
                        ids.push(id.to_owned());
                    }
                }
                if ids.is_empty() && c.errors.is_empty() {
                    c.fail("event_ids", "is required: the ids of the events that enter the queue");
                }
                if ids.len() > MAX_SAMPLE as usize {
                    c.fail("event_ids", format!("at most {MAX_SAMPLE} events enter in one round"));
                }
                Some(Some(Sampling::Explicit { event_ids: ids }))
            }
        };
        c.finish(|| sampling.flatten())
    }
}

impl Sampling {
    pub fn policy(&self) -> SamplingPolicy {
        match self {
            Sampling::Random { .. } => SamplingPolicy::Random,
            Sampling::LowestAcceptance { .. } => SamplingPolicy::LowestAcceptance,
            Sampling::Disagreement { .. } => SamplingPolicy::Disagreement,
            Sampling::DriftWindow { .. } => SamplingPolicy::DriftWindow,
            Sampling::Explicit { .. } => SamplingPolicy::Explicit,
        }
    }

    /// The policy in words, for pages and exports.
    pub fn describe(&self) -> String {
        match self {
            Sampling::Random { share, limit, seed } => {
                format!("a random {} of interactions (seed {seed}), at most {limit} a round", share_words(*share))
            }
            Sampling::LowestAcceptance { count } => format!("the {count} interactions with the lowest acceptance"),
            Sampling::Disagreement { count } => {
                format!("the {count} interactions where the challenger disagrees most with what was served")
            }
            Sampling::DriftWindow { from, to, share, limit, .. } => {
                format!(
                    "a random {} of the interactions of {from} to {to}, at most {limit} a round",
                    share_words(*share)
                )
            }
            Sampling::Explicit { event_ids } => format!("{} named events", event_ids.len()),
        }
    }

    /// Whether the policy needs the challenger's suggestion of every candidate.
    pub fn needs_challenger(&self) -> bool {
        matches!(self, Sampling::Disagreement { .. })
    }

    /// The candidates that enter, as indices into `candidates` in the order they are added. Candidates
    /// are the loop's interactions with a suggestion that are not in the queue yet.
    pub fn select(&self, candidates: &[Candidate]) -> Vec<usize> {
        let newest_first = |mut idx: Vec<usize>| {
            idx.sort_by(|&a, &b| {
                candidates[b]
                    .at
                    .cmp(&candidates[a].at)
                    .then_with(|| candidates[a].event_id.cmp(&candidates[b].event_id))
            });
            idx
        };
        match self {
            Sampling::Random { share, seed, limit } => {
                let idx =
                    (0..candidates.len()).filter(|&i| stable_unit(*seed, &candidates[i].event_id) < *share).collect();
                newest_first(idx).into_iter().take(*limit as usize).collect()
            }
            Sampling::DriftWindow { from, to, share, seed, limit } => {
                let idx = (0..candidates.len())
                    .filter(|&i| {
                        let day = candidates[i].at.date_naive();
                        *from <= day && day <= *to && stable_unit(*seed, &candidates[i].event_id) < *share
                    })
                    .collect();
                newest_first(idx).into_iter().take(*limit as usize).collect()
            }
            Sampling::LowestAcceptance { count } => {
                let mut idx: Vec<usize> = newest_first((0..candidates.len()).collect());
                // A stable sort keeps the newest first among equal shares.
                idx.sort_by(|&a, &b| candidates[a].acceptance().total_cmp(&candidates[b].acceptance()));
                idx.truncate(*count as usize);
                idx
            }
            Sampling::Disagreement { count } => {
                let mut idx: Vec<usize> = newest_first(
                    (0..candidates.len()).filter(|&i| candidates[i].disagreement.is_some_and(|d| d > 0.0)).collect(),
                );
                idx.sort_by(|&a, &b| {
                    let (da, db) =
                        (candidates[a].disagreement.unwrap_or(0.0), candidates[b].disagreement.unwrap_or(0.0));
                    db.total_cmp(&da)
                });
                idx.truncate(*count as usize);
                idx
            }
            Sampling::Explicit { event_ids } => {
                let wanted: HashSet<&str> = event_ids.iter().map(String::as_str).collect();
                (0..candidates.len()).filter(|&i| wanted.contains(candidates[i].event_id.as_str())).collect()
            }
        }
    }
}

fn share_words(share: f64) -> String {
    let pct = share * 100.0;
    if pct.fract() == 0.0 { format!("{pct:.0} %") } else { format!("{pct} %") }
}

/// One interaction that sampling may choose.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    pub event_id: String,
    pub at: DateTime<Utc>,
    pub suggested_chars: i64,
    pub accepted_chars: i64,
    /// How unlike the served suggestion the challenger's would be (normalised edit distance), when it
    /// was asked.
    pub disagreement: Option<f64>,
}

impl Candidate {
    /// The share of the suggestion's characters that were kept.
    pub fn acceptance(&self) -> f64 {
        if self.suggested_chars <= 0 { 1.0 } else { self.accepted_chars as f64 / self.suggested_chars as f64 }
    }
}

/// A number in [0, 1) that depends only on `seed` and `text`: FNV-1a over both, finished by SplitMix64's
/// mixer so that nearby ids spread evenly.
pub fn stable_unit(seed: u64, text: &str) -> f64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in seed.to_le_bytes().iter().chain(text.as_bytes()) {
        h ^= *b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^= h >> 31;
    (h >> 11) as f64 / (1u64 << 53) as f64
}

// ---- labels --------------------------------------------------------------------------------------

/// The labels a queue asks for. A queue asks for a correction or for a preference, not both (each is a
/// different task for the annotator); a rating and tags can go with either, or stand alone.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(default, deny_unknown_fields)]
pub struct LabelSchema {
    /// The annotator rewrites the suggestion into what it should have been.
    pub correction: bool,
    /// The annotator picks the better of the served suggestion and the challenger's.
    pub preference: bool,
    /// A rating of the suggestion from 1 (useless) to 5 (exactly right).
    pub rating: bool,
    /// Free-form tags; with a `tag_set`, only its tags.
    pub tags: bool,
    pub tag_set: Vec<String>,
}

impl LabelSchema {
    /// Checks the schema itself; the field names are those of the queue input (`labels.…`).
    pub fn check(&self) -> Result<LabelSchema, FieldErrors> {
        let mut errors = FieldErrors::new();
        if self.correction && self.preference {
            errors.add("labels.preference", "a queue asks for a correction or a preference, not both: make two queues");
        }
        if !(self.correction || self.preference || self.rating || self.tags) {
            errors.add("labels", "ask for at least one label: a correction, a preference, a rating or tags");
        }
        let mut tag_set = Vec::new();
        for raw in &self.tag_set {
            match check_tag(raw) {
                Ok(tag) if !tag_set.contains(&tag) => tag_set.push(tag),
                Ok(_) => {}
                Err(m) => errors.add("labels.tag_set", format!("{raw:?} {m}")),
            }
        }
        if !self.tag_set.is_empty() && !self.tags {
            errors.add("labels.tag_set", "names tags, but the queue asks for none: set tags too");
        }
        if tag_set.len() > 50 {
            errors.add("labels.tag_set", "may name at most 50 tags");
        }
        errors.into_result(LabelSchema { tag_set, ..self.clone() })
    }

    /// The labels in words, such as "a correction, a rating, tags".
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if self.correction {
            parts.push("a correction".to_owned());
        }
        if self.preference {
            parts.push("a preference".to_owned());
        }
        if self.rating {
            parts.push("a rating (1–5)".to_owned());
        }
        if self.tags {
            parts.push(if self.tag_set.is_empty() {
                "tags".to_owned()
            } else {
                format!("tags ({})", self.tag_set.join(", "))
            });
        }
        parts.join(", ")
    }
}

fn check_tag(raw: &str) -> Result<String, String> {
    let tag = raw.trim().to_lowercase();
    if tag.is_empty() {
        return Err("is empty".into());
    }
    if tag.chars().count() > MAX_TAG_CHARS {
        return Err(format!("is longer than {MAX_TAG_CHARS} characters"));
    }
    if tag.chars().any(|c| c.is_control() || c == ',') {
        return Err("may not hold commas or control characters".into());
    }
    Ok(tag)
}

string_enum!(
    /// Which of a preference item's two suggestions the annotator found better.
    Preferred { Suggestion => "suggestion", Alternative => "alternative" }
);

/// The labels of one annotation (or of an item's gold answer).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(default)]
pub struct Labels {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub correction: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub preference: Option<Preferred>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rating: Option<u8>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
}

string_enum!(
    /// What an annotator did with an item: labelled it, skipped it (someone else gets it), or flagged it
    /// for the operators (it leaves the queue until they look).
    AnnotationOutcome { Labelled => "labelled", Skipped => "skipped", Flagged => "flagged" }
);

string_enum!(
    /// How an annotation arrived: given in Slope (leased item by item), or imported from a file.
    AnnotationSource { App => "app", Import => "import" }
);

/// A submission as a form or a JSON body carries it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(default, deny_unknown_fields)]
pub struct AnnotationInput {
    /// `label` (the default), `skip` or `flag`.
    pub outcome: String,
    /// The corrected text: the suggestion as it should have been (the suggestion itself when it needs no
    /// change).
    pub correction: Option<String>,
    /// `suggestion` or `alternative`: the better of a preference item's two.
    pub preference: Option<String>,
    /// 1 to 5.
    pub rating: Option<i64>,
    pub tags: Vec<String>,
    /// Why an item is flagged (required then), or a remark.
    pub note: Option<String>,
}

/// A checked submission.
#[derive(Debug, Clone, PartialEq)]
pub struct Submission {
    pub outcome: AnnotationOutcome,
    pub labels: Labels,
    pub note: Option<String>,
}

impl AnnotationInput {
    /// Checks the submission against the labels the item's queue version asks for. `has_alternative`
    /// says whether the item has a second suggestion to prefer.
    pub fn check(&self, schema: &LabelSchema, has_alternative: bool) -> Result<Submission, FieldErrors> {
        let mut errors = FieldErrors::new();
        let outcome = match self.outcome.trim() {
            "" | "label" | "labelled" => AnnotationOutcome::Labelled,
            "skip" | "skipped" => AnnotationOutcome::Skipped,
            "flag" | "flagged" => AnnotationOutcome::Flagged,
            other => {
                errors.add("outcome", format!("must be label, skip or flag, not {other:?}"));
                AnnotationOutcome::Labelled
            }
        };
        let note = match self.note.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(n) if n.chars().count() > MAX_NOTE_CHARS => {
                errors.add("note", format!("must be at most {MAX_NOTE_CHARS} characters"));
                None
            }
            Some(n) => Some(n.to_owned()),
        };
        if outcome == AnnotationOutcome::Flagged && note.is_none() {
            errors.add("note", "is required when flagging: say what is wrong with the item");
        }
        // A skip or a flag carries no labels; whatever a form sent beside it is not looked at.
        let labels = if outcome == AnnotationOutcome::Labelled {
            check_labels(&mut errors, schema, has_alternative, self)
        } else {
            Labels::default()
        };
        errors.into_result(Submission { outcome, labels, note })
    }
}

fn check_labels(errors: &mut FieldErrors, schema: &LabelSchema, has_alternative: bool, i: &AnnotationInput) -> Labels {
    let mut labels = Labels::default();
    let correction = i.correction.as_deref().map(|c| c.replace("\r\n", "\n"));
    match (schema.correction, correction) {
        (false, Some(c)) if !c.trim().is_empty() => errors.add(
            "correction",
            if schema.preference {
                "this item asks for a preference between two suggestions, not a correction"
            } else {
                "this queue does not ask for corrections"
            },
        ),
        (true, None) => {
            errors.add("correction", "is required: the corrected text (the suggestion itself when it needs no change)")
        }
        (true, Some(c)) if c.trim().is_empty() => {
            errors.add("correction", "is required: the corrected text (the suggestion itself when it needs no change)")
        }
        (true, Some(c)) if c.chars().count() > MAX_CORRECTION_CHARS => errors.add(
            "correction",
            format!("must be at most {MAX_CORRECTION_CHARS} characters (it has {})", c.chars().count()),
        ),
        (true, Some(c)) => labels.correction = Some(c),
        _ => {}
    }
    let preference = i.preference.as_deref().map(str::trim).filter(|p| !p.is_empty());
    match (schema.preference, preference) {
        (false, Some(_)) => errors.add("preference", "this queue does not ask for a preference"),
        (true, None) => errors.add("preference", "is required: suggestion or alternative"),
        (true, Some(_)) if !has_alternative => {
            errors.add("preference", "this item has no second suggestion to compare with")
        }
        (true, Some(p)) => match p.parse::<Preferred>() {
            Ok(p) => labels.preference = Some(p),
            Err(m) => errors.add("preference", m),
        },
        (false, None) => {}
    }
    match (schema.rating, i.rating) {
        (false, Some(_)) => errors.add("rating", "this queue does not ask for a rating"),
        (true, None) => errors.add("rating", "is required: 1 (useless) to 5 (exactly right)"),
        (true, Some(r)) if (1..=5).contains(&r) => labels.rating = Some(r as u8),
        (true, Some(r)) => errors.add("rating", format!("must be 1 to 5, not {r}")),
        (false, None) => {}
    }
    let given: Vec<&String> = i.tags.iter().filter(|t| !t.trim().is_empty()).collect();
    if !schema.tags && !given.is_empty() {
        errors.add("tags", "this queue does not ask for tags");
    } else {
        for raw in given {
            match check_tag(raw) {
                Ok(tag) if !schema.tag_set.is_empty() && !schema.tag_set.contains(&tag) => errors.add(
                    "tags",
                    format!("{tag:?} is an unknown label: this queue's tags are {}", schema.tag_set.join(", ")),
                ),
                Ok(tag) if !labels.tags.contains(&tag) => labels.tags.push(tag),
                Ok(_) => {}
                Err(m) => errors.add("tags", format!("{raw:?} {m}")),
            }
        }
        if labels.tags.len() > MAX_TAGS {
            errors.add("tags", format!("at most {MAX_TAGS} tags"));
        }
    }
    labels
}

// ---- the queue -----------------------------------------------------------------------------------

/// Who may annotate a queue's items, besides its operators (leaders and admins).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Eligibility {
    /// Members with the `annotator` role.
    pub annotator_role: bool,
    /// Members of these squads.
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<i64>))]
    pub squads: Vec<SquadId>,
}

/// A queue's definition as a form or a JSON body carries it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(default, deny_unknown_fields)]
pub struct QueueInput {
    pub key: String,
    pub name: String,
    /// The loop whose interactions are annotated.
    #[serde(rename = "loop")]
    pub loop_key: String,
    pub sampling: SamplingInput,
    /// What annotators should know, in Markdown.
    pub guidelines: String,
    pub labels: LabelSchema,
    /// Annotators per item, 1 to 5 [default: 1]; more than one measures agreement.
    pub annotators_per_item: Option<i64>,
    /// Whether members with the `annotator` role may annotate [default: true].
    pub annotator_role: Option<bool>,
    /// Squads whose members may annotate (ids).
    pub squads: Vec<i64>,
    /// How long an annotator holds an item before another may take it, in minutes [default: 10].
    pub lease_minutes: Option<i64>,
}

/// What one version of a queue holds (its key and loop never change).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct QueueSettings {
    pub name: String,
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub sampling: Sampling,
    pub guidelines: String,
    pub labels: LabelSchema,
    pub annotators_per_item: u32,
    pub eligibility: Eligibility,
    pub lease_minutes: u32,
}

/// A checked queue definition.
#[derive(Debug, Clone, PartialEq)]
pub struct QueueSpec {
    pub key: Key,
    pub loop_key: Key,
    pub settings: QueueSettings,
}

impl QueueInput {
    pub fn validate(&self) -> Result<QueueSpec, FieldErrors> {
        let mut c = Checker::new();
        let key = c.check("key", Key::parse(&self.key));
        let name = c.check("name", Title::parse(&self.name));
        let loop_key = c.check("loop", Key::parse(&self.loop_key));
        let sampling = match self.sampling.parse() {
            Ok(s) => Some(s),
            Err(e) => {
                c.errors.merge(e.prefixed("sampling"));
                None
            }
        };
        let guidelines = self.guidelines.trim().to_owned();
        if guidelines.chars().count() > MAX_GUIDELINES_CHARS {
            c.fail("guidelines", format!("must be at most {MAX_GUIDELINES_CHARS} characters"));
        }
        let labels = match self.labels.check() {
            Ok(l) => Some(l),
            Err(e) => {
                c.errors.merge(e);
                None
            }
        };
        let overlap = match self.annotators_per_item {
            None => Some(1),
            Some(n) if (1..=MAX_OVERLAP as i64).contains(&n) => Some(n as u32),
            Some(n) => {
                c.fail("annotators_per_item", format!("must be 1 to {MAX_OVERLAP}, not {n}"));
                None
            }
        };
        let lease = match self.lease_minutes {
            None => Some(DEFAULT_LEASE_MINUTES),
            Some(n) if (1..=MAX_LEASE_MINUTES as i64).contains(&n) => Some(n as u32),
            Some(n) => {
                c.fail("lease_minutes", format!("must be 1 to {MAX_LEASE_MINUTES}, not {n}"));
                None
            }
        };
        let annotator_role = self.annotator_role.unwrap_or(true);
        let mut squads: Vec<SquadId> = self.squads.iter().copied().map(SquadId).collect();
        squads.sort();
        squads.dedup();
        if !annotator_role && squads.is_empty() {
            c.fail("squads", "name a squad whose members annotate, or let the annotator role annotate");
        }
        c.finish(|| {
            Some(QueueSpec {
                key: key?,
                loop_key: loop_key?,
                settings: QueueSettings {
                    name: name?.as_str().to_owned(),
                    sampling: sampling?,
                    guidelines,
                    labels: labels?,
                    annotators_per_item: overlap?,
                    eligibility: Eligibility { annotator_role, squads },
                    lease_minutes: lease?,
                },
            })
        })
    }
}

impl QueueSettings {
    /// Whether `actor` may annotate this queue's items: operators (leaders, admins, the system) always,
    /// annotators when the queue lets the role, squad members of the queue's squads; never execs or tokens.
    pub fn may_annotate(&self, actor: &Actor) -> bool {
        match &actor.principal {
            Principal::System { .. } => true,
            Principal::Token { .. } => false,
            Principal::User { role, squads, .. } => match role {
                Role::Admin | Role::Leader => true,
                Role::Annotator => self.eligibility.annotator_role,
                Role::SquadMember => squads.iter().any(|s| self.eligibility.squads.contains(s)),
                Role::Exec => false,
            },
        }
    }

    /// The input that makes these settings again, for the edit form and plan-like exports.
    pub fn to_input(&self, key: &str, loop_key: &str) -> QueueInput {
        let mut sampling = SamplingInput { policy: self.sampling.policy().as_str().into(), ..Default::default() };
        match &self.sampling {
            Sampling::Random { share, seed, limit } => {
                (sampling.share, sampling.seed, sampling.limit) =
                    (Some(*share), Some(*seed as i64), Some(*limit as i64));
            }
            Sampling::LowestAcceptance { count } | Sampling::Disagreement { count } => {
                sampling.count = Some(*count as i64)
            }
            Sampling::DriftWindow { from, to, share, seed, limit } => {
                (sampling.share, sampling.seed, sampling.limit) =
                    (Some(*share), Some(*seed as i64), Some(*limit as i64));
                (sampling.from, sampling.to) = (from.to_string(), to.to_string());
            }
            Sampling::Explicit { event_ids } => sampling.event_ids = event_ids.clone(),
        }
        QueueInput {
            key: key.into(),
            name: self.name.clone(),
            loop_key: loop_key.into(),
            sampling,
            guidelines: self.guidelines.clone(),
            labels: self.labels.clone(),
            annotators_per_item: Some(self.annotators_per_item as i64),
            annotator_role: Some(self.eligibility.annotator_role),
            squads: self.eligibility.squads.iter().map(|s| s.0).collect(),
            lease_minutes: Some(self.lease_minutes as i64),
        }
    }
}

/// A queue as stored: its current version's settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AnnotationQueue {
    pub id: i64,
    pub key: String,
    #[serde(rename = "loop")]
    pub loop_key: String,
    pub version: i64,
    pub settings: QueueSettings,
    /// Who made the current version.
    pub updated_by: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// How far a queue has come.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct QueueProgress {
    pub items: i64,
    pub open: i64,
    pub done: i64,
    pub flagged: i64,
    pub gold: i64,
    /// Annotations the queue's items need in all (flagged items excluded).
    pub needed: i64,
    /// Labelled annotations given.
    pub annotations: i64,
    pub skips: i64,
    /// Items held under a live lease now.
    pub leased: i64,
}

impl QueueProgress {
    /// The share of the needed annotations that were given, in [0, 1].
    pub fn share(&self) -> f64 {
        if self.needed <= 0 { 0.0 } else { (self.annotations.min(self.needed) as f64 / self.needed as f64).min(1.0) }
    }
}

string_enum!(
    /// Where an item is: waiting for annotations, with all it needs, or flagged for the operators.
    ItemStatus { Open => "open", Done => "done", Flagged => "flagged" }
);

/// The challenger's suggestion for an item's context, the second option of a preference.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Alternative {
    pub text: String,
    pub model_id: i64,
    pub model: String,
}

/// One interaction in a queue, as operators see it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AnnotationItem {
    pub id: i64,
    pub queue_version: i64,
    pub event_id: String,
    pub event_at: DateTime<Utc>,
    pub context: String,
    pub suggestion: Option<String>,
    /// What the loop's user finally wrote.
    pub final_text: Option<String>,
    pub suggested_chars: i64,
    pub accepted_chars: i64,
    pub alternative: Option<Alternative>,
    pub needed: i64,
    pub done: i64,
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub status: ItemStatus,
    /// The known answer, for items of the gold set; never shown to annotators.
    pub gold: Option<Labels>,
    pub created_at: DateTime<Utc>,
}

impl AnnotationItem {
    /// Whether the alternative is shown first: decided per item by a stable hash, so that position
    /// favours neither model over a queue.
    pub fn alternative_first(&self) -> bool {
        stable_unit(7, &self.event_id) < 0.5
    }

    /// The item as an annotator sees it, held until `lease_expires_at`.
    pub fn for_annotator(&self, queue: &AnnotationQueue, lease_expires_at: DateTime<Utc>) -> WorkItem {
        let mut options = Vec::new();
        if let (Some(s), Some(a)) = (&self.suggestion, &self.alternative) {
            let served = (Preferred::Suggestion, s.clone());
            let other = (Preferred::Alternative, a.text.clone());
            let (first, second) = if self.alternative_first() { (other, served) } else { (served, other) };
            for ((id, text), label) in [first, second].into_iter().zip(["A", "B"]) {
                options.push(WorkOption { label: label.into(), choice: id, text });
            }
        }
        WorkItem {
            item_id: self.id,
            queue: queue.key.clone(),
            queue_version: self.queue_version,
            event_id: self.event_id.clone(),
            event_at: self.event_at,
            context: self.context.clone(),
            suggestion: self.suggestion.clone(),
            final_text: self.final_text.clone(),
            suggested_chars: self.suggested_chars,
            accepted_chars: self.accepted_chars,
            options,
            lease_expires_at,
        }
    }
}

/// One of a preference item's two suggestions, as shown: `A` or `B`, whichever model wrote it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WorkOption {
    pub label: String,
    /// What to send as `preference` to choose it.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub choice: Preferred,
    pub text: String,
}

/// An item leased to an annotator: everything needed to annotate it, and nothing that would bias the
/// annotation (no gold answer, no model names).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WorkItem {
    pub item_id: i64,
    pub queue: String,
    pub queue_version: i64,
    pub event_id: String,
    pub event_at: DateTime<Utc>,
    pub context: String,
    pub suggestion: Option<String>,
    pub final_text: Option<String>,
    pub suggested_chars: i64,
    pub accepted_chars: i64,
    /// The two suggestions of a preference item, in the order shown; empty otherwise.
    pub options: Vec<WorkOption>,
    pub lease_expires_at: DateTime<Utc>,
}

/// One annotation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Annotation {
    pub id: i64,
    pub item_id: i64,
    pub event_id: String,
    pub queue_version: i64,
    /// Who annotated: an e-mail address, `system:…` or, for imported labels, the name the file gave.
    pub annotator: String,
    #[cfg_attr(feature = "openapi", schema(value_type = Option<i64>))]
    pub user_id: Option<UserId>,
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub outcome: AnnotationOutcome,
    pub labels: Labels,
    pub note: Option<String>,
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub source: AnnotationSource,
    /// Seconds from the lease to the submission, for annotations given in Slope.
    pub seconds: Option<f64>,
    pub created_at: DateTime<Utc>,
}

// ---- imported labels -----------------------------------------------------------------------------

/// One line of an imported JSONL file: labels made elsewhere for an event of the queue's loop.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ImportLine {
    event_id: Option<String>,
    annotator: Option<String>,
    #[serde(default)]
    outcome: String,
    correction: Option<String>,
    preference: Option<String>,
    rating: Option<i64>,
    #[serde(default)]
    tags: Vec<String>,
    note: Option<String>,
    // The other fields an export writes, accepted and not used (an item's text comes from its event), so
    // that an export imports into another queue as it is.
    queue: Option<String>,
    queue_version: Option<i64>,
    item_id: Option<i64>,
    event_at: Option<String>,
    context: Option<String>,
    suggestion: Option<String>,
    alternative: Option<String>,
    final_text: Option<String>,
    source: Option<String>,
    seconds: Option<f64>,
    created_at: Option<String>,
}

/// A checked line of an imported file.
#[derive(Debug, Clone, PartialEq)]
pub struct ImportedAnnotation {
    /// The line it came from, counted from 1.
    pub line: usize,
    pub event_id: String,
    pub annotator: String,
    pub submission: Submission,
}

/// Parses an imported JSONL file of labels: every line is checked (its JSON, the event id, the
/// annotator's name and the labels against `schema`), and the errors of all lines are reported
/// together, keyed `line N: field`, the first [`MAX_REPORTED_IMPORT_ERRORS`] of them. A line for an event
/// the queue's items lack is the caller's to check. Preferences need the item's alternative, which is
/// checked once the items are known: here a preference is accepted when the schema asks for one.
pub fn parse_import(text: &str, schema: &LabelSchema) -> Result<Vec<ImportedAnnotation>, FieldErrors> {
    let mut out = Vec::new();
    let mut errors = FieldErrors::new();
    let mut reported = 0usize;
    let mut total = 0usize;
    let mut seen: HashSet<(String, String)> = HashSet::new();
    let mut report = |errors: &mut FieldErrors, line: usize, field: &str, message: String| {
        total += 1;
        if reported < MAX_REPORTED_IMPORT_ERRORS {
            reported += 1;
            errors.add(&format!("line {line}: {field}"), message);
        }
    };
    let mut lines = 0usize;
    for (i, raw) in text.lines().enumerate() {
        let n = i + 1;
        if raw.trim().is_empty() {
            continue;
        }
        lines += 1;
        if lines > MAX_IMPORT_ROWS {
            report(&mut errors, n, "file", format!("an import holds at most {MAX_IMPORT_ROWS} lines: split it"));
            break;
        }
        let line: ImportLine = match serde_json::from_str(raw) {
            Ok(l) => l,
            Err(e) => {
                report(&mut errors, n, "line", format!("is not a JSON object of labels: {e}"));
                continue;
            }
        };
        let event_id = line.event_id.as_deref().map(str::trim).unwrap_or_default().to_owned();
        if event_id.is_empty() || event_id.len() > 200 {
            report(&mut errors, n, "event_id", "is required: the id of the annotated event".into());
        }
        let annotator = line.annotator.as_deref().map(str::trim).unwrap_or_default().to_owned();
        if annotator.is_empty() || annotator.chars().count() > 120 {
            report(&mut errors, n, "annotator", "is required: who gave the labels (1 to 120 characters)".into());
        }
        let input = AnnotationInput {
            outcome: line.outcome,
            correction: line.correction,
            preference: line.preference,
            rating: line.rating,
            tags: line.tags,
            note: line.note,
        };
        match input.check(schema, true) {
            Ok(submission) => {
                if !event_id.is_empty() && !annotator.is_empty() {
                    if !seen.insert((event_id.clone(), annotator.clone())) {
                        report(
                            &mut errors,
                            n,
                            "annotator",
                            format!("{annotator} labels event {event_id} twice in this file"),
                        );
                    }
                    out.push(ImportedAnnotation { line: n, event_id, annotator, submission });
                }
            }
            Err(e) => {
                for (field, messages) in e.0 {
                    for m in messages {
                        report(&mut errors, n, &field, m);
                    }
                }
            }
        }
    }
    if total > reported {
        errors.add("file", format!("{total} errors in all; the first {reported} are listed"));
    }
    if errors.is_empty() && out.is_empty() {
        errors.add("file", "has no labels");
    }
    errors.into_result(out)
}

// ---- text ----------------------------------------------------------------------------------------

/// The Levenshtein distance between two texts, counted in characters.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    if a.is_empty() || b.is_empty() {
        return a.len().max(b.len());
    }
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut row = vec![0; b.len() + 1];
    for (i, ca) in a.iter().enumerate() {
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitution = prev[j] + usize::from(ca != cb);
            row[j + 1] = substitution.min(prev[j + 1] + 1).min(row[j] + 1);
        }
        std::mem::swap(&mut prev, &mut row);
    }
    prev[b.len()]
}

/// The edit distance divided by the longer text's length: 0 for equal texts, 1 for texts with nothing
/// in common.
pub fn normalized_edit_distance(a: &str, b: &str) -> f64 {
    let longest = a.chars().count().max(b.chars().count());
    if longest == 0 { 0.0 } else { edit_distance(a, b) as f64 / longest as f64 }
}

string_enum!(
    /// A span of a character diff: kept, removed from the first text or added in the second.
    DiffKind { Same => "same", Removed => "removed", Added => "added" }
);

/// One span of a diff.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiffSpan {
    pub kind: DiffKind,
    pub text: String,
}

/// The words of a text for a diff: runs of letters and digits, and every other character on its own,
/// so that spaces and punctuation are kept and a changed word shows whole.
fn words(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = None;
    for (i, c) in text.char_indices() {
        if c.is_alphanumeric() {
            start.get_or_insert(i);
        } else {
            if let Some(s) = start.take() {
                out.push(&text[s..i]);
            }
            out.push(&text[i..i + c.len_utf8()]);
        }
    }
    if let Some(s) = start {
        out.push(&text[s..]);
    }
    out
}

/// The diff from `before` to `after`, word by word (see [`words`]): the common beginning and end are
/// kept whole, and the middle is aligned by a longest common subsequence of words. A middle too long to
/// align cheaply (in the browser, as the annotator types) is shown as removed and added whole.
pub fn diff(before: &str, after: &str) -> Vec<DiffSpan> {
    let a = words(before);
    let b = words(after);
    let prefix = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
    let suffix = a[prefix..].iter().rev().zip(b[prefix..].iter().rev()).take_while(|(x, y)| x == y).count();
    let (ma, mb) = (&a[prefix..a.len() - suffix], &b[prefix..b.len() - suffix]);
    let mut spans: Vec<DiffSpan> = Vec::new();
    let mut push = |kind: DiffKind, w: &str| match spans.last_mut() {
        Some(last) if last.kind == kind => last.text.push_str(w),
        _ => spans.push(DiffSpan { kind, text: w.to_owned() }),
    };
    for w in &a[..prefix] {
        push(DiffKind::Same, w);
    }
    if ma.len() * mb.len() > 250_000 {
        ma.iter().for_each(|w| push(DiffKind::Removed, w));
        mb.iter().for_each(|w| push(DiffKind::Added, w));
    } else {
        // lcs[i][j]: the longest common subsequence of ma[i..] and mb[j..].
        let w = mb.len() + 1;
        let mut lcs = vec![0u32; (ma.len() + 1) * w];
        for i in (0..ma.len()).rev() {
            for j in (0..mb.len()).rev() {
                lcs[i * w + j] = if ma[i] == mb[j] {
                    lcs[(i + 1) * w + j + 1] + 1
                } else {
                    lcs[(i + 1) * w + j].max(lcs[i * w + j + 1])
                };
            }
        }
        let (mut i, mut j) = (0, 0);
        while i < ma.len() || j < mb.len() {
            if i < ma.len() && j < mb.len() && ma[i] == mb[j] {
                push(DiffKind::Same, ma[i]);
                (i, j) = (i + 1, j + 1);
            } else if i < ma.len() && (j == mb.len() || lcs[(i + 1) * w + j] >= lcs[i * w + j + 1]) {
                push(DiffKind::Removed, ma[i]);
                i += 1;
            } else {
                push(DiffKind::Added, mb[j]);
                j += 1;
            }
        }
    }
    for w in &a[a.len() - suffix..] {
        push(DiffKind::Same, w);
    }
    spans
}

// ---- into training -------------------------------------------------------------------------------

/// What one item's annotations teach, once resolved: the corrected text (an SFT row's completion) and a
/// preference pair, each with the annotations it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Resolved {
    pub item_id: i64,
    pub event_id: String,
    pub context: String,
    /// The consensus correction.
    pub correction: Option<String>,
    /// `(chosen, rejected)`: the preferred suggestion over the other, or the correction over the
    /// suggestion it corrects.
    pub pair: Option<(String, String)>,
    /// The labelled annotations behind the row, by id, and their annotators.
    pub annotations: Vec<i64>,
    pub annotators: Vec<String>,
}

/// Resolves an item's labelled annotations into training rows.
///
/// - Corrections: the medoid, the correction with the smallest summed edit distance to the others (the
///   earliest on a tie), so one annotator's slip does not become the row when others agree.
/// - A correction that differs from the suggestion, and does not simply continue it, also makes the pair
///   (correction over suggestion).
/// - Preferences: the majority; a tie makes no pair.
///
/// Flagged items and items without a labelled annotation resolve to nothing; ratings and tags inform
/// the agreement report, not the rows.
pub fn resolve(item: &AnnotationItem, annotations: &[&Annotation]) -> Option<Resolved> {
    if item.status == ItemStatus::Flagged {
        return None;
    }
    let mut labelled: Vec<&&Annotation> =
        annotations.iter().filter(|a| a.outcome == AnnotationOutcome::Labelled && a.item_id == item.id).collect();
    labelled.sort_by_key(|a| (a.created_at, a.id));
    if labelled.is_empty() {
        return None;
    }
    let corrections: Vec<(&Annotation, &str)> =
        labelled.iter().filter_map(|a| a.labels.correction.as_deref().map(|c| (**a, c))).collect();
    let correction = corrections
        .iter()
        .enumerate()
        .min_by(|(i, (_, x)), (j, (_, y))| {
            let cost = |t: &str| corrections.iter().map(|(_, o)| normalized_edit_distance(t, o)).sum::<f64>();
            cost(x).total_cmp(&cost(y)).then(i.cmp(j))
        })
        .map(|(_, (_, c))| (*c).to_owned());
    let mut pair = None;
    if let (Some(c), Some(s)) = (&correction, &item.suggestion)
        && c != s
        && !c.starts_with(s.as_str())
    {
        pair = Some((c.clone(), s.clone()));
    }
    if let (Some(s), Some(alt)) = (&item.suggestion, &item.alternative) {
        let votes = |p: Preferred| labelled.iter().filter(|a| a.labels.preference == Some(p)).count();
        let (served, other) = (votes(Preferred::Suggestion), votes(Preferred::Alternative));
        if served > other {
            pair = Some((s.clone(), alt.text.clone()));
        } else if other > served {
            pair = Some((alt.text.clone(), s.clone()));
        }
    }
    if correction.is_none() && pair.is_none() {
        return None;
    }
    Some(Resolved {
        item_id: item.id,
        event_id: item.event_id.clone(),
        context: item.context.clone(),
        correction,
        pair,
        annotations: labelled.iter().map(|a| a.id).collect(),
        annotators: labelled.iter().map(|a| a.annotator.clone()).collect(),
    })
}

/// How a dataset built from annotations traces each row back: the row's position in the dataset, the
/// items, event and annotations it came from, and their annotators.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RowLineage {
    pub row: usize,
    /// The items behind the row: one, or one per queue when several queues annotated the event.
    pub items: Vec<LineageItem>,
    pub event_id: String,
    pub annotations: Vec<i64>,
    pub annotators: Vec<String>,
}

/// One annotated item behind a dataset row, and the queue it belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LineageItem {
    pub queue: String,
    pub item_id: i64,
}

/// The tally of a queue's annotations per annotator, as the queue page lists them.
pub fn per_annotator_counts(annotations: &[Annotation]) -> BTreeMap<String, (i64, i64, i64)> {
    let mut out: BTreeMap<String, (i64, i64, i64)> = BTreeMap::new();
    for a in annotations {
        let e = out.entry(a.annotator.clone()).or_default();
        match a.outcome {
            AnnotationOutcome::Labelled => e.0 += 1,
            AnnotationOutcome::Skipped => e.1 += 1,
            AnnotationOutcome::Flagged => e.2 += 1,
        }
    }
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::OrgId;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn candidate(id: &str, day: u32, suggested: i64, accepted: i64) -> Candidate {
        Candidate {
            event_id: id.into(),
            at: at(&format!("2026-11-{day:02}T12:00:00Z")),
            suggested_chars: suggested,
            accepted_chars: accepted,
            disagreement: None,
        }
    }

    pub(crate) fn schema(correction: bool, preference: bool) -> LabelSchema {
        LabelSchema {
            correction,
            preference,
            rating: true,
            tags: true,
            tag_set: vec!["wrong-dose".into(), "typo".into()],
        }
    }

    fn queue_input() -> QueueInput {
        QueueInput {
            key: "notes-review".into(),
            name: "Notes review".into(),
            loop_key: "notes".into(),
            sampling: SamplingInput { policy: "random".into(), share: Some(0.25), ..Default::default() },
            guidelines: "Correct the suggestion into what the clinician meant.".into(),
            labels: schema(true, false),
            ..Default::default()
        }
    }

    #[test]
    fn a_queue_parses_with_defaults_and_reports_every_bad_field() {
        let spec = queue_input().validate().unwrap();
        assert_eq!(spec.settings.sampling, Sampling::Random { share: 0.25, seed: 1, limit: 500 });
        assert_eq!((spec.settings.annotators_per_item, spec.settings.lease_minutes), (1, DEFAULT_LEASE_MINUTES));
        assert!(spec.settings.eligibility.annotator_role);
        // The settings give their input back.
        assert_eq!(spec.settings.to_input("notes-review", "notes").validate().unwrap(), spec);

        let bad = QueueInput {
            key: "Bad Key".into(),
            sampling: SamplingInput {
                policy: "drift-window".into(),
                share: Some(2.0),
                from: "2026-11-10".into(),
                to: "2026-11-01".into(),
                ..Default::default()
            },
            labels: LabelSchema { correction: true, preference: true, tag_set: vec!["x".into()], ..Default::default() },
            annotators_per_item: Some(9),
            annotator_role: Some(false),
            lease_minutes: Some(0),
            ..queue_input()
        };
        let errors = bad.validate().unwrap_err();
        let fields: Vec<&str> = errors.0.keys().map(String::as_str).collect();
        assert_eq!(
            fields,
            [
                "annotators_per_item",
                "key",
                "labels.preference",
                "labels.tag_set",
                "lease_minutes",
                "sampling.share",
                "sampling.to",
                "squads"
            ]
        );
        let none = QueueInput { labels: LabelSchema::default(), ..queue_input() }.validate().unwrap_err();
        assert!(none.get("labels").is_some());
        let unknown =
            QueueInput { sampling: SamplingInput { policy: "vibes".into(), ..Default::default() }, ..queue_input() };
        assert!(
            unknown.validate().unwrap_err().get("sampling.policy").unwrap()[0].contains("random, lowest-acceptance")
        );
    }

    #[test]
    fn random_sampling_is_stable_and_close_to_its_share() {
        let candidates: Vec<Candidate> = (0..4000).map(|i| candidate(&format!("e{i}"), 1 + i % 28, 10, 5)).collect();
        let policy = Sampling::Random { share: 0.1, seed: 3, limit: 5000 };
        let chosen = policy.select(&candidates);
        assert!((340..=460).contains(&chosen.len()), "{} of 4000 at 10 %", chosen.len());
        // A later round with more candidates keeps every earlier decision.
        let mut more = candidates.clone();
        more.extend((4000..5000).map(|i| candidate(&format!("e{i}"), 1, 10, 5)));
        let again: HashSet<&str> = policy.select(&more).iter().map(|&i| more[i].event_id.as_str()).collect();
        assert!(chosen.iter().all(|&i| again.contains(candidates[i].event_id.as_str())));
        // Newest first, and the limit holds.
        let limited = Sampling::Random { share: 0.5, seed: 3, limit: 10 }.select(&candidates);
        assert_eq!(limited.len(), 10);
        assert!(limited.windows(2).all(|w| candidates[w[0]].at >= candidates[w[1]].at));
        // Another seed is another sample.
        let other = Sampling::Random { share: 0.1, seed: 4, limit: 5000 }.select(&candidates);
        assert_ne!(other, chosen);
    }

    #[test]
    fn the_other_policies_choose_what_they_say() {
        let mut c = vec![
            candidate("a", 1, 10, 10),
            candidate("b", 2, 10, 0),
            candidate("c", 3, 10, 3),
            candidate("d", 4, 10, 0),
        ];
        assert_eq!(
            Sampling::LowestAcceptance { count: 3 }.select(&c),
            [3, 1, 2],
            "lowest first, newest first on a tie"
        );
        c[0].disagreement = Some(0.9);
        c[2].disagreement = Some(0.4);
        c[3].disagreement = Some(0.0);
        assert_eq!(Sampling::Disagreement { count: 5 }.select(&c), [0, 2], "no disagreement, no item");
        let window = Sampling::DriftWindow {
            from: "2026-11-02".parse().unwrap(),
            to: "2026-11-03".parse().unwrap(),
            share: 1.0,
            seed: 1,
            limit: 10,
        };
        assert_eq!(window.select(&c), [2, 1]);
        let explicit = Sampling::Explicit { event_ids: vec!["d".into(), "zz".into()] };
        assert_eq!(explicit.select(&c), [3]);
    }

    #[test]
    fn a_submission_is_held_to_its_queues_labels() {
        let correcting = schema(true, false);
        let ok = AnnotationInput {
            correction: Some("ibuprofen 400 mg".into()),
            rating: Some(4),
            tags: vec![" Wrong-Dose ".into(), "wrong-dose".into()],
            ..Default::default()
        };
        let s = ok.check(&correcting, false).unwrap();
        assert_eq!(s.outcome, AnnotationOutcome::Labelled);
        assert_eq!(s.labels.tags, ["wrong-dose"], "trimmed, lower-cased, once");

        let fields = |input: AnnotationInput, schema: &LabelSchema, alt: bool| -> Vec<String> {
            input.check(schema, alt).err().map(|e| e.0.keys().cloned().collect()).unwrap_or_default()
        };
        // A preference on a correction item, a correction on a preference item, unknown labels, long text.
        let preferring = schema(false, true);
        assert_eq!(
            fields(AnnotationInput { preference: Some("suggestion".into()), ..ok.clone() }, &correcting, false),
            ["preference"]
        );
        let wrong_task = AnnotationInput {
            correction: Some("x".into()),
            preference: Some("alternative".into()),
            rating: Some(3),
            ..Default::default()
        };
        let e = wrong_task.check(&preferring, true).unwrap_err();
        assert_eq!(
            e.get("correction").unwrap()[0],
            "this item asks for a preference between two suggestions, not a correction"
        );
        assert_eq!(fields(AnnotationInput { tags: vec!["vibes".into()], ..ok.clone() }, &correcting, false), ["tags"]);
        assert_eq!(fields(AnnotationInput { rating: Some(6), ..ok.clone() }, &correcting, false), ["rating"]);
        let long = "x".repeat(MAX_CORRECTION_CHARS + 1);
        assert_eq!(
            fields(AnnotationInput { correction: Some(long), ..ok.clone() }, &correcting, false),
            ["correction"]
        );
        assert_eq!(fields(AnnotationInput { correction: None, ..ok.clone() }, &correcting, false), ["correction"]);
        assert_eq!(
            fields(
                AnnotationInput { preference: Some("alternative".into()), rating: Some(2), ..Default::default() },
                &preferring,
                false
            ),
            ["preference"],
            "an item without a second suggestion"
        );
        assert_eq!(
            fields(
                AnnotationInput { preference: Some("both".into()), rating: Some(2), ..Default::default() },
                &preferring,
                true
            ),
            ["preference"]
        );
        // Skips need nothing; flags need a reason.
        assert!(AnnotationInput { outcome: "skip".into(), ..Default::default() }.check(&correcting, false).is_ok());
        assert_eq!(
            fields(AnnotationInput { outcome: "flag".into(), ..Default::default() }, &correcting, false),
            ["note"]
        );
        assert_eq!(fields(AnnotationInput { outcome: "maybe".into(), ..ok }, &correcting, false), ["outcome"]);
    }

    #[test]
    fn eligibility_follows_role_and_squads() {
        let settings = queue_input().validate().unwrap().settings;
        let user = |role: Role, squads: &[i64]| Actor {
            org: OrgId(1),
            principal: Principal::User {
                id: UserId(1),
                email: "a@b.c".into(),
                role,
                squads: squads.iter().copied().map(SquadId).collect(),
            },
        };
        assert!(settings.may_annotate(&user(Role::Annotator, &[])));
        assert!(settings.may_annotate(&user(Role::Leader, &[])));
        assert!(!settings.may_annotate(&user(Role::Exec, &[])));
        assert!(!settings.may_annotate(&user(Role::SquadMember, &[7])));
        let squads_only =
            QueueInput { annotator_role: Some(false), squads: vec![7], ..queue_input() }.validate().unwrap().settings;
        assert!(squads_only.may_annotate(&user(Role::SquadMember, &[7])));
        assert!(!squads_only.may_annotate(&user(Role::SquadMember, &[8])));
        assert!(!squads_only.may_annotate(&user(Role::Annotator, &[])));
        let token = Actor {
            org: OrgId(1),
            principal: Principal::Token { id: 1, name: "t".into(), scopes: vec![crate::Scope::Write] },
        };
        assert!(!settings.may_annotate(&token));
    }

    #[test]
    fn an_import_reports_every_bad_line_and_keeps_nothing() {
        let correcting = schema(true, false);
        let good = "{\"event_id\":\"e1\",\"annotator\":\"vendor-3\",\"correction\":\"rest\",\"rating\":5}\n\n\
                    {\"event_id\":\"e2\",\"annotator\":\"vendor-3\",\"outcome\":\"skip\"}\n";
        let rows = parse_import(good, &correcting).unwrap();
        assert_eq!(rows.iter().map(|r| r.line).collect::<Vec<_>>(), [1, 3]);
        assert_eq!(rows[0].submission.labels.correction.as_deref(), Some("rest"));
        let bad = "{\"event_id\":\"e1\",\"annotator\":\"v\",\"correction\":\"rest\",\"rating\":5}\n\
                   not json\n\
                   {\"event_id\":\"e1\",\"annotator\":\"v\",\"correction\":\"again\",\"rating\":5}\n\
                   {\"annotator\":\"v\",\"correction\":\"x\",\"rating\":9,\"colour\":\"red\"}\n\
                   {\"event_id\":\"e3\",\"annotator\":\"v\",\"rating\":1}\n";
        let errors = parse_import(bad, &correcting).unwrap_err();
        let fields: Vec<&str> = errors.0.keys().map(String::as_str).collect();
        assert_eq!(fields, ["line 2: line", "line 3: annotator", "line 4: line", "line 5: correction"]);
        assert!(parse_import("\n", &correcting).unwrap_err().get("file").is_some());
    }

    #[test]
    fn edit_distance_and_diff_agree_on_worked_cases() {
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("flaw", "lawn"), 2);
        assert_eq!(edit_distance("é", "e"), 1, "counted in characters");
        assert!((normalized_edit_distance("kitten", "sitting") - 3.0 / 7.0).abs() < 1e-12);
        assert_eq!(normalized_edit_distance("", ""), 0.0);
        let spans = diff("ibuprofen 200 mg", "ibuprofen 400 mg daily");
        let text = |k: DiffKind| spans.iter().filter(|s| s.kind == k).map(|s| s.text.as_str()).collect::<String>();
        // A changed word shows whole; spaces and punctuation are words of their own.
        assert_eq!(text(DiffKind::Removed), "200");
        assert_eq!(text(DiffKind::Added), "400 daily");
        assert_eq!(text(DiffKind::Same), "ibuprofen  mg");
        let unrelated = diff("order an MRI.", "rest and fluids.");
        assert_eq!(
            unrelated.iter().filter(|s| s.kind == DiffKind::Same).map(|s| s.text.as_str()).collect::<String>(),
            "  ."
        );
        // Rebuilding both sides from the spans gives the texts back.
        let before: String = spans.iter().filter(|s| s.kind != DiffKind::Added).map(|s| s.text.as_str()).collect();
        let after: String = spans.iter().filter(|s| s.kind != DiffKind::Removed).map(|s| s.text.as_str()).collect();
        assert_eq!((before.as_str(), after.as_str()), ("ibuprofen 200 mg", "ibuprofen 400 mg daily"));
        assert_eq!(diff("same", "same"), [DiffSpan { kind: DiffKind::Same, text: "same".into() }]);
    }

    pub(crate) fn item(id: i64, suggestion: &str, alternative: Option<&str>) -> AnnotationItem {
        AnnotationItem {
            id,
            queue_version: 1,
            event_id: format!("e{id}"),
            event_at: at("2026-11-01T12:00:00Z"),
            context: "Pt reports cough. Plan: ".into(),
            suggestion: Some(suggestion.into()),
            final_text: None,
            suggested_chars: suggestion.chars().count() as i64,
            accepted_chars: 0,
            alternative: alternative.map(|t| Alternative { text: t.into(), model_id: 9, model: "challenger".into() }),
            needed: 3,
            done: 0,
            status: ItemStatus::Open,
            gold: None,
            created_at: at("2026-11-01T12:00:00Z"),
        }
    }

    pub(crate) fn annotation(id: i64, item_id: i64, who: &str, labels: Labels) -> Annotation {
        Annotation {
            id,
            item_id,
            event_id: format!("e{item_id}"),
            queue_version: 1,
            annotator: who.into(),
            user_id: None,
            outcome: AnnotationOutcome::Labelled,
            labels,
            note: None,
            source: AnnotationSource::App,
            seconds: None,
            created_at: at("2026-11-02T12:00:00Z") + chrono::Duration::seconds(id),
        }
    }

    fn corrected(text: &str) -> Labels {
        Labels { correction: Some(text.into()), ..Default::default() }
    }

    #[test]
    fn annotations_resolve_into_training_rows() {
        let it = item(1, "rest and ice", None);
        let a = [
            annotation(1, 1, "ann", corrected("rest and fluids")),
            annotation(2, 1, "bob", corrected("rest and fluid")),
            annotation(3, 1, "cy", corrected("antibiotics")),
        ];
        let refs: Vec<&Annotation> = a.iter().collect();
        let r = resolve(&it, &refs).unwrap();
        assert_eq!(r.correction.as_deref(), Some("rest and fluids"), "the medoid, not the outlier");
        assert_eq!(r.pair, Some(("rest and fluids".into(), "rest and ice".into())));
        assert_eq!((r.annotations, r.annotators), (vec![1, 2, 3], vec!["ann".to_owned(), "bob".into(), "cy".into()]));
        // A correction that only continues the suggestion is no counter-example.
        let kept = [annotation(4, 1, "ann", corrected("rest and ice packs"))];
        let r = resolve(&it, &kept.iter().collect::<Vec<_>>()).unwrap();
        assert_eq!(r.pair, None);

        let pref = item(2, "fever", Some("cough"));
        let vote = |id, who: &str, p| annotation(id, 2, who, Labels { preference: Some(p), ..Default::default() });
        let two_to_one = [
            vote(5, "ann", Preferred::Alternative),
            vote(6, "bob", Preferred::Alternative),
            vote(7, "cy", Preferred::Suggestion),
        ];
        let r = resolve(&pref, &two_to_one.iter().collect::<Vec<_>>()).unwrap();
        assert_eq!((r.correction, r.pair), (None, Some(("cough".into(), "fever".into()))));
        let tie = [vote(8, "ann", Preferred::Alternative), vote(9, "bob", Preferred::Suggestion)];
        assert_eq!(resolve(&pref, &tie.iter().collect::<Vec<_>>()), None, "a tie teaches nothing");
        let flagged = AnnotationItem { status: ItemStatus::Flagged, ..it };
        assert_eq!(resolve(&flagged, &refs), None);
    }

    #[test]
    fn preference_options_are_blind_and_balanced() {
        let q = AnnotationQueue {
            id: 1,
            key: "q".into(),
            loop_key: "notes".into(),
            version: 1,
            settings: queue_input().validate().unwrap().settings,
            updated_by: "ann".into(),
            created_at: at("2026-11-01T00:00:00Z"),
            updated_at: at("2026-11-01T00:00:00Z"),
        };
        let mut first_is_alternative = 0;
        for id in 0..400 {
            let w = item(id, "served", Some("other")).for_annotator(&q, at("2026-11-01T00:10:00Z"));
            assert_eq!(w.options.iter().map(|o| o.label.as_str()).collect::<Vec<_>>(), ["A", "B"]);
            first_is_alternative += usize::from(w.options[0].choice == Preferred::Alternative);
            let json = serde_json::to_string(&w).unwrap();
            assert!(!json.contains("challenger") && !json.contains("gold"), "{json}");
        }
        assert!((160..=240).contains(&first_is_alternative), "{first_is_alternative} of 400");
    }
}
