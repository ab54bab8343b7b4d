//! Compares a plan file with the current plan: what `slope plan apply` would create, update and delete.
//!
//! Entries are matched by key within their kind. Each entry is reduced to a canonical list of fields, by
//! the same function on both sides, holding what the service would store: text trimmed, defaults filled
//! in, measure figures that the kind does not use dropped. So a freshly exported file diffs empty against
//! the state it came from, and an edit that applying would not change (trailing spaces, `weight = 1`
//! written out) is not shown as a change.

use std::collections::HashMap;
use std::fmt::{self, Write};

use serde::Serialize;
use slope_domain::{Investment, MeasureInput, Quarter, SlopeTarget};

use crate::model::{GoalEntry, KeyResultEntry, ObjectiveEntry, PlanFile, SeasonEntry, SquadEntry};
use crate::render::number;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Op {
    Create,
    Update,
    Delete,
}

/// The kinds of entity a plan holds, in parent-to-child order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Season,
    Objective,
    KeyResult,
    Squad,
    SquadGoal,
}

impl Kind {
    /// The name used in rendered plans and JSON, such as `key_result`.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Season => "season",
            Kind::Objective => "objective",
            Kind::KeyResult => "key_result",
            Kind::Squad => "squad",
            Kind::SquadGoal => "squad_goal",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One field of a change. Values are in their canonical text form (numbers as in the file, lists as
/// TOML arrays); `None` means the field is empty or absent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldChange {
    pub field: String,
    pub old: Option<String>,
    pub new: Option<String>,
}

/// One entity to create, update or delete.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    pub op: Op,
    pub kind: Kind,
    pub key: String,
    /// The key of the objective of a key result or of the squad of a goal: where it will be for a create
    /// or an update, where it was for a delete.
    pub parent: Option<String>,
    /// For an update, the fields that change. For a create, every field that has a value (`old` is
    /// `None`), and for a delete every field it had (`new` is `None`), so that a reviewer of the JSON sees
    /// what appears or disappears.
    pub fields: Vec<FieldChange>,
}

/// The changes that would make the current plan match a file, in the order they can be applied: creates
/// parents first, then updates, then deletes children first.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PlanDiff {
    pub changes: Vec<Change>,
}

impl PlanDiff {
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }

    /// How many changes are of `op`.
    pub fn count(&self, op: Op) -> usize {
        self.changes.iter().filter(|c| c.op == op).count()
    }

    /// Renders the plan for a terminal, Terraform style: `+` create, `~` update with its fields, `-`
    /// delete, and a closing count.
    pub fn render(&self) -> String {
        if self.is_empty() {
            return "No changes. The plan matches the file.\n".to_owned();
        }
        let mut out = String::new();
        for change in &self.changes {
            let sign = match change.op {
                Op::Create => '+',
                Op::Update => '~',
                Op::Delete => '-',
            };
            let _ = write!(out, "  {sign} {} {:?}", change.kind, change.key);
            if let Some(parent) = &change.parent {
                let parent_kind = if change.kind == Kind::KeyResult { Kind::Objective } else { Kind::Squad };
                let _ = write!(out, " in {parent_kind} {parent:?}");
            }
            match change.op {
                Op::Update => {
                    out.push('\n');
                    for field in &change.fields {
                        let _ = writeln!(
                            out,
                            "      {}: {} -> {}",
                            field.field,
                            shown(&field.field, field.old.as_deref()),
                            shown(&field.field, field.new.as_deref())
                        );
                    }
                }
                Op::Create | Op::Delete => {
                    let _ = writeln!(out, " ({})", summary(change));
                }
            }
        }
        let _ = writeln!(
            out,
            "Plan: {} to create, {} to update, {} to delete.",
            self.count(Op::Create),
            self.count(Op::Update),
            self.count(Op::Delete)
        );
        out
    }
}

/// Fields whose canonical text is shown bare; every other value is text and is shown quoted, so that
/// empty-looking or multi-line values stay visible on one line.
const BARE_FIELDS: &[&str] = &[
    "slope_target",
    "weight",
    "capacity",
    "planned_capacity",
    "start",
    "target",
    "threshold",
    "low",
    "high",
    "problems",
];

fn shown(field: &str, value: Option<&str>) -> String {
    match value {
        None => "(none)".to_owned(),
        Some(value) if BARE_FIELDS.contains(&field) => value.to_owned(),
        Some(value) => format!("{value:?}"),
    }
}

/// What a created or deleted entity is, in a few words: its quarter, if any, and its title or name.
fn summary(change: &Change) -> String {
    let value =
        |name: &str| change.fields.iter().find(|f| f.field == name).and_then(|f| f.new.as_deref().or(f.old.as_deref()));
    let mut parts = Vec::new();
    if let Some(quarter) = value("quarter") {
        parts.push(quarter.to_owned());
    }
    if let Some(title) = value("title").or_else(|| value("name")) {
        parts.push(format!("{title:?}"));
    }
    parts.join(" ")
}

/// Computes what applying `desired` would change, given `current`, the plan as stored (or `None` when
/// the season does not exist yet).
///
/// `current` is the state of the season that `desired` names; if it holds another season, that
/// season's objectives, key results and goals are not compared and the file's season is created.
///
/// Objectives, key results and squad goals of the season that the file leaves out are deleted: the file
/// is the whole plan of its season. Squads the file leaves out are not deleted, because squads belong to
/// the organisation and may have goals in other seasons; the file only lists the squads it sets goals
/// for. For the same reason `current.squads` should hold every stored squad whose key the file names,
/// not only those with goals in this season, so that an existing squad is updated rather than created.
///
/// A key result moved to another objective, or a goal moved to another squad or key result, is an update
/// of its `objective`, `squad` or `key_result` field, not a delete and a create, so its history stays.
pub fn diff(current: Option<&PlanFile>, desired: &PlanFile) -> PlanDiff {
    let same_season = current.filter(|c| c.season.key == desired.season.key);
    let empty = Vec::new();
    let squads_now: &[SquadEntry] = current.map_or(&empty, |c| &c.squads);

    let seasons_now: Vec<Item> = same_season.map(|c| season_item(&c.season)).into_iter().collect();
    let objectives_now: Vec<Item> = same_season.map_or(vec![], |c| c.objectives.iter().map(objective_item).collect());
    let key_results_now: Vec<Item> =
        same_season.map_or(vec![], |c| c.key_results().map(|(o, kr)| key_result_item(o, kr)).collect());
    let goals_now: Vec<Item> = same_season.map_or(vec![], |c| c.goals().map(|(s, g)| goal_item(s, g)).collect());

    let kinds = [
        (Kind::Season, seasons_now, vec![season_item(&desired.season)], false),
        (Kind::Objective, objectives_now, desired.objectives.iter().map(objective_item).collect(), true),
        (Kind::KeyResult, key_results_now, desired.key_results().map(|(o, kr)| key_result_item(o, kr)).collect(), true),
        (
            Kind::Squad,
            squads_now.iter().map(squad_item).collect(),
            desired.squads.iter().map(squad_item).collect(),
            false,
        ),
        (Kind::SquadGoal, goals_now, desired.goals().map(|(s, g)| goal_item(s, g)).collect(), true),
    ];

    let (mut creates, mut updates, mut deletes) = (vec![], vec![], vec![]);
    for (kind, now, wanted, deletes_missing) in kinds {
        let (c, u, d) = compare(kind, &now, &wanted, deletes_missing);
        creates.extend(c);
        updates.extend(u);
        // Children first: a goal goes before its key result, which goes before its objective.
        deletes.splice(0..0, d);
    }
    PlanDiff { changes: creates.into_iter().chain(updates).chain(deletes).collect() }
}

/// An entry reduced to what is compared: its key, its parent's key and its canonical fields.
struct Item {
    key: String,
    parent: Option<String>,
    fields: Vec<(&'static str, Option<String>)>,
}

/// Compares one kind by key. Creates and updates follow the file's order, deletes the current order.
fn compare(
    kind: Kind,
    now: &[Item],
    wanted: &[Item],
    deletes_missing: bool,
) -> (Vec<Change>, Vec<Change>, Vec<Change>) {
    let by_key: HashMap<&str, &Item> = now.iter().map(|item| (item.key.as_str(), item)).collect();
    let wanted_keys: HashMap<&str, &Item> = wanted.iter().map(|item| (item.key.as_str(), item)).collect();
    let change =
        |op, item: &Item, fields| Change { op, kind, key: item.key.clone(), parent: item.parent.clone(), fields };
    let (mut creates, mut updates, mut deletes) = (vec![], vec![], vec![]);
    for item in wanted {
        match by_key.get(item.key.as_str()) {
            None => {
                let fields = item
                    .fields
                    .iter()
                    .filter(|(_, value)| value.is_some())
                    .map(|(field, value)| FieldChange { field: (*field).to_owned(), old: None, new: value.clone() })
                    .collect();
                creates.push(change(Op::Create, item, fields));
            }
            Some(old) => {
                let fields: Vec<FieldChange> = old
                    .fields
                    .iter()
                    .zip(&item.fields)
                    .filter(|((_, a), (_, b))| a != b)
                    .map(|((field, a), (_, b))| FieldChange {
                        field: (*field).to_owned(),
                        old: a.clone(),
                        new: b.clone(),
                    })
                    .collect();
                if !fields.is_empty() {
                    updates.push(change(Op::Update, item, fields));
                }
            }
        }
    }
    if deletes_missing {
        for item in now.iter().filter(|item| !wanted_keys.contains_key(item.key.as_str())) {
            let fields = item
                .fields
                .iter()
                .filter(|(_, value)| value.is_some())
                .map(|(field, value)| FieldChange { field: (*field).to_owned(), old: value.clone(), new: None })
                .collect();
            deletes.push(change(Op::Delete, item, fields));
        }
    }
    (creates, updates, deletes)
}

/// Trimmed text; empty text is no value, as the domain stores it.
fn text(value: &str) -> Option<String> {
    let value = value.trim();
    (!value.is_empty()).then(|| value.to_owned())
}

fn num(value: Option<f64>) -> Option<String> {
    value.map(number)
}

fn season_item(entry: &SeasonEntry) -> Item {
    let input = &entry.input;
    let problems: Vec<String> = input.problems.iter().filter_map(|p| text(p)).map(|p| format!("{p:?}")).collect();
    Item {
        key: entry.key.clone(),
        parent: None,
        fields: vec![
            ("name", text(&input.name)),
            ("status", text(&entry.status)),
            ("starts_on", text(&input.starts_on)),
            ("ends_on", text(&input.ends_on)),
            ("slope_target", num(Some(input.slope_target.unwrap_or(SlopeTarget::DEFAULT.get())))),
            ("thesis", text(&input.thesis)),
            ("problems", (!problems.is_empty()).then(|| format!("[{}]", problems.join(", ")))),
            ("winning", text(&input.winning)),
            ("retrospective", text(&entry.retrospective)),
        ],
    }
}

fn objective_item(entry: &ObjectiveEntry) -> Item {
    let input = &entry.input;
    // `2027-q1` is stored as `2027-Q1`.
    let quarter = input.quarter.parse::<Quarter>().map(|q| q.to_string()).ok().or_else(|| text(&input.quarter));
    Item {
        key: entry.key.clone(),
        parent: None,
        fields: vec![
            ("quarter", quarter),
            ("title", text(&input.title)),
            ("commitment", text(&input.commitment)),
            ("owner", text(&input.owner)),
            ("weight", num(Some(input.weight.unwrap_or(1.0)))),
            ("description", text(&input.description)),
        ],
    }
}

fn key_result_item(objective: &ObjectiveEntry, entry: &KeyResultEntry) -> Item {
    let input = &entry.input;
    let mut fields = vec![("objective", text(&objective.key)), ("title", text(&input.title))];
    fields.extend(measure_fields(input.measure()));
    fields.push(("weight", num(Some(input.weight.unwrap_or(1.0)))));
    fields.push(("metric", text(&input.metric)));
    Item { key: entry.key.clone(), parent: Some(objective.key.clone()), fields }
}

fn squad_item(entry: &SquadEntry) -> Item {
    let input = &entry.input;
    Item {
        key: entry.key.clone(),
        parent: None,
        fields: vec![("name", text(&input.name)), ("unit", text(&input.unit)), ("capacity", num(input.capacity))],
    }
}

fn goal_item(squad: &SquadEntry, entry: &GoalEntry) -> Item {
    let input = &entry.input;
    // A snapshot goal's belief and kill criteria are dropped by validation, so they are never a change.
    let snapshot = input.investment.parse::<Investment>() == Ok(Investment::Snapshot);
    let slope_only = |value: &str| if snapshot { None } else { text(value) };
    let status = text(&input.status).unwrap_or_else(|| "planned".to_owned());
    let mut fields = vec![
        ("squad", text(&squad.key)),
        ("key_result", text(&entry.key_result)),
        ("title", text(&input.title)),
        ("starts_on", text(&input.starts_on)),
        ("ends_on", text(&input.ends_on)),
        ("status", Some(status)),
        ("investment", text(&input.investment)),
        ("planned_capacity", num(input.planned_capacity)),
    ];
    fields.extend(measure_fields(input.measure()));
    fields.push(("metric", text(&input.metric)));
    fields.push(("challenges", slope_only(&input.challenges)));
    fields.push(("kill_criteria", slope_only(&input.kill_criteria)));
    Item { key: entry.key.clone(), parent: Some(squad.key.clone()), fields }
}

/// The measure as it would be stored: a valid measure keeps only the figures of its kind.
fn measure_fields(measure: MeasureInput) -> [(&'static str, Option<String>); 7] {
    let measure = measure.validate().map(|m| m.to_input()).unwrap_or(measure);
    [
        ("kind", text(&measure.kind)),
        ("start", num(measure.start)),
        ("target", num(measure.target)),
        ("threshold", num(measure.threshold)),
        ("low", num(measure.low)),
        ("high", num(measure.high)),
        ("unit", text(&measure.unit)),
    ]
}
