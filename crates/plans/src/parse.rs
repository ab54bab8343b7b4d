//! Reads a plan file.
//!
//! The file is parsed into TOML's spanned document tree and walked by hand rather than deserialised with
//! serde: serde stops at the first problem, and a person editing a plan wants every problem of the file
//! at once, each with its line. The walk reports the file's own problems (unknown fields, wrong types,
//! missing keys, duplicate keys, links to key results that are not in the file), then runs the domain's
//! validation on every entry and places each of its messages on the line of the field it names.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::ops::Range;

use serde::Serialize;
use slope_domain::{
    DateRange, FieldErrors, Key, KeyResultInput, MeasureInput, ObjectiveInput, Quarter, SeasonInput, SeasonStatus,
    SquadGoalInput, SquadInput, optional_prose, parse_date,
};
use toml::Spanned;
use toml::de::{DeString, DeTable, DeValue};

use crate::model::{GoalEntry, KeyResultEntry, ObjectiveEntry, PlanFile, SeasonEntry, SquadEntry};

/// One problem of a plan file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlanError {
    /// The 1-based line of the field, or of its table's header when the field is missing.
    pub line: usize,
    /// Where in the plan, such as `objectives[2].key_results[0].target`; empty for a TOML syntax error,
    /// which belongs to no field.
    pub path: String,
    pub message: String,
}

impl fmt::Display for PlanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "line {}: {}", self.line, self.message)
        } else {
            write!(f, "line {}: {}: {}", self.line, self.path, self.message)
        }
    }
}

impl std::error::Error for PlanError {}

/// Every problem found in a plan file, in line order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct PlanErrors(pub Vec<PlanError>);

impl fmt::Display for PlanErrors {
    /// One problem a line, so that a terminal shows them as a compiler would.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for PlanErrors {}

/// Parses and validates a plan file.
///
/// A TOML syntax error stops parsing (what follows it cannot be trusted) and is reported alone. Otherwise
/// every problem of the file is reported, in line order. Rules that need stored state (seasons never
/// overlap, status transitions, closed seasons stay closed, keys unique across the organisation) are
/// checked when the plan is applied, not here.
pub fn parse(text: &str) -> Result<PlanFile, PlanErrors> {
    let mut reader = Reader::new(text);
    let document = DeTable::parse(text).map_err(|error| {
        let offset = error.span().map_or(0, |span| span.start);
        PlanErrors(vec![PlanError {
            line: reader.line(offset),
            path: String::new(),
            message: error.message().to_owned(),
        }])
    })?;
    let root = Table { table: document.get_ref(), path: String::new(), name: String::new(), line: 1 };
    let plan = reader.plan(&root);
    reader.finish(plan)
}

const PLAN_FIELDS: &[&str] = &["season", "objectives", "squads"];
const SEASON_FIELDS: &[&str] = &[
    "key",
    "name",
    "status",
    "starts_on",
    "ends_on",
    "slope_target",
    "thesis",
    "problems",
    "winning",
    "retrospective",
];
const OBJECTIVE_FIELDS: &[&str] =
    &["key", "quarter", "title", "commitment", "owner", "weight", "description", "key_results"];
const MEASURE_FIELDS: &[&str] = &["kind", "start", "target", "threshold", "low", "high", "unit"];
const KEY_RESULT_FIELDS: &[&str] = &["key", "title", "weight", "metric"];
const SQUAD_FIELDS: &[&str] = &["key", "name", "unit", "capacity", "goals"];
const GOAL_FIELDS: &[&str] = &[
    "key",
    "key_result",
    "title",
    "starts_on",
    "ends_on",
    "status",
    "investment",
    "planned_capacity",
    "metric",
    "challenges",
    "kill_criteria",
];

/// Fields people are likely to write that a plan deliberately leaves out, with the reason.
const NOT_IN_PLANS: &[(&str, &str)] = &[
    ("confidence", "is not part of a plan: check-ins set it"),
    ("current", "is not part of a plan: check-ins and metrics set it"),
    ("key_result_id", "goals name their key result by key: write key_result = \"<key>\""),
    ("id", "plans name entities by key, not by id"),
];

/// One table of the document and where it is.
struct Table<'t, 'i> {
    table: &'t DeTable<'i>,
    /// The table's path in the plan, such as `objectives[0]`; empty for the document itself.
    path: String,
    /// The table's name as its header writes it, such as `objectives.key_results`.
    name: String,
    /// The line of the table's header, where problems of missing fields are reported.
    line: usize,
}

impl<'t, 'i> Table<'t, 'i> {
    fn get(&self, field: &str) -> Option<(&'t Spanned<DeString<'i>>, &'t Spanned<DeValue<'i>>)> {
        self.table.get_key_value(field)
    }

    fn path(&self, field: &str) -> String {
        if self.path.is_empty() { field.to_owned() } else { format!("{}.{field}", self.path) }
    }

    fn name(&self, field: &str) -> String {
        if self.name.is_empty() { field.to_owned() } else { format!("{}.{field}", self.name) }
    }
}

/// The keys seen so far for each kind of entity, with the path of the entry that used each first.
#[derive(Default)]
struct SeenKeys {
    objectives: HashMap<String, String>,
    key_results: HashMap<String, String>,
    squads: HashMap<String, String>,
    goals: HashMap<String, String>,
}

/// Walks the document, collecting entries and problems.
struct Reader {
    /// Byte offset of the start of each line, to turn spans into line numbers.
    line_starts: Vec<usize>,
    errors: Vec<PlanError>,
    /// Paths that already have a problem of their own (a wrong type, say), so that the domain's "is
    /// required" for the same field, which only repeats it, is not reported too.
    reported: HashSet<String>,
}

impl Reader {
    fn new(text: &str) -> Self {
        let line_starts = std::iter::once(0).chain(text.match_indices('\n').map(|(i, _)| i + 1)).collect();
        Reader { line_starts, errors: Vec::new(), reported: HashSet::new() }
    }

    fn line(&self, offset: usize) -> usize {
        self.line_starts.partition_point(|&start| start <= offset)
    }

    fn span_line(&self, span: Range<usize>) -> usize {
        self.line(span.start)
    }

    fn fail(&mut self, line: usize, path: String, message: impl Into<String>) {
        self.reported.insert(path.clone());
        self.errors.push(PlanError { line, path, message: message.into() });
    }

    fn finish(mut self, plan: PlanFile) -> Result<PlanFile, PlanErrors> {
        if self.errors.is_empty() {
            return Ok(plan);
        }
        // Stable, so problems of one line keep the order in which the walk found them.
        self.errors.sort_by_key(|e| e.line);
        Err(PlanErrors(self.errors))
    }

    fn plan(&mut self, root: &Table) -> PlanFile {
        self.unknown_fields(root, PLAN_FIELDS, &[]);
        let mut seen = SeenKeys::default();
        let season = self.season(root);
        let dates = season_dates(&season.input);
        let objectives: Vec<ObjectiveEntry> =
            self.tables(root, "objectives").iter().map(|t| self.objective(t, dates, &mut seen)).collect();
        let squads = self.tables(root, "squads").iter().map(|t| self.squad(t, dates, &mut seen)).collect();
        PlanFile { season, objectives, squads }
    }

    fn season(&mut self, root: &Table) -> SeasonEntry {
        let Some(table) = self.table(root, "season") else {
            // A `season` of the wrong type has been reported already.
            if root.get("season").is_none() {
                self.fail(1, "season".into(), "is required: a plan file describes one season in a [season] table");
            }
            return SeasonEntry::default();
        };
        let t = &table;
        self.unknown_fields(t, SEASON_FIELDS, &[]);
        let key = self.key(t, None);
        let input = SeasonInput {
            name: self.text(t, "name"),
            thesis: self.text(t, "thesis"),
            problems: self.texts(t, "problems"),
            winning: self.text(t, "winning"),
            starts_on: self.date(t, "starts_on"),
            ends_on: self.date(t, "ends_on"),
            slope_target: self.number(t, "slope_target"),
        };
        let status = self.text(t, "status");
        let retrospective = self.text(t, "retrospective");
        let mut errors = input.validate().err().unwrap_or_default();
        if status.trim().is_empty() {
            errors.add("status", "is required: draft, active or closed");
        } else if let Err(message) = status.parse::<SeasonStatus>() {
            errors.add("status", message);
        }
        if let Err(message) = optional_prose(&retrospective) {
            errors.add("retrospective", message);
        }
        self.domain_errors(t, errors);
        SeasonEntry { key, input, status, retrospective }
    }

    fn objective(&mut self, t: &Table, season: Option<DateRange>, seen: &mut SeenKeys) -> ObjectiveEntry {
        self.unknown_fields(t, OBJECTIVE_FIELDS, &[]);
        let key = self.key(t, Some(&mut seen.objectives));
        let input = ObjectiveInput {
            quarter: self.text(t, "quarter"),
            title: self.text(t, "title"),
            description: self.text(t, "description"),
            commitment: self.text(t, "commitment"),
            owner: self.text(t, "owner"),
            weight: self.number(t, "weight"),
        };
        let context = objective_context(season, &input.quarter);
        self.domain_errors(t, input.validate(&context).err().unwrap_or_default());
        let key_results = self.tables(t, "key_results").iter().map(|kr| self.key_result(kr, seen)).collect();
        ObjectiveEntry { key, input, key_results }
    }

    fn key_result(&mut self, t: &Table, seen: &mut SeenKeys) -> KeyResultEntry {
        self.unknown_fields(t, KEY_RESULT_FIELDS, MEASURE_FIELDS);
        let key = self.key(t, Some(&mut seen.key_results));
        let mut input = KeyResultInput {
            title: self.text(t, "title"),
            weight: self.number(t, "weight"),
            confidence: None,
            metric: self.text(t, "metric"),
            ..Default::default()
        };
        input.set_measure(self.measure(t));
        self.domain_errors(t, input.validate().err().unwrap_or_default());
        KeyResultEntry { key, input }
    }

    fn squad(&mut self, t: &Table, season: Option<DateRange>, seen: &mut SeenKeys) -> SquadEntry {
        self.unknown_fields(t, SQUAD_FIELDS, &[]);
        let key = self.key(t, Some(&mut seen.squads));
        let input =
            SquadInput { name: self.text(t, "name"), unit: self.text(t, "unit"), capacity: self.number(t, "capacity") };
        self.domain_errors(t, input.validate().err().unwrap_or_default());
        let goals = self.tables(t, "goals").iter().map(|g| self.goal(g, season, seen)).collect();
        SquadEntry { key, input, goals }
    }

    fn goal(&mut self, t: &Table, season: Option<DateRange>, seen: &mut SeenKeys) -> GoalEntry {
        self.unknown_fields(t, GOAL_FIELDS, MEASURE_FIELDS);
        let key = self.key(t, Some(&mut seen.goals));
        let key_result = self.text(t, "key_result");
        let line = self.field_line(t, "key_result");
        if key_result.trim().is_empty() {
            if !self.reported.contains(&t.path("key_result")) {
                self.fail(line, t.path("key_result"), "is required: the key of the key result this goal ladders up to");
            }
        } else if !seen.key_results.contains_key(key_result.trim()) {
            let message = format!(
                "names key result {key_result:?}, which is not in this file; \
                 a goal ladders up to a key result of its season"
            );
            self.fail(line, t.path("key_result"), message);
        }
        let mut input = SquadGoalInput {
            key_result_id: None,
            title: self.text(t, "title"),
            starts_on: self.date(t, "starts_on"),
            ends_on: self.date(t, "ends_on"),
            investment: self.text(t, "investment"),
            challenges: self.text(t, "challenges"),
            kill_criteria: self.text(t, "kill_criteria"),
            planned_capacity: self.number(t, "planned_capacity"),
            status: self.text(t, "status"),
            metric: self.text(t, "metric"),
            ..Default::default()
        };
        input.set_measure(self.measure(t));
        // The file links the goal by key, checked above; the domain asks for an id, which only the service
        // knows, so a placeholder stands in for it here.
        let with_id = SquadGoalInput { key_result_id: Some(0), ..input.clone() };
        self.domain_errors(t, with_id.validate(season.as_ref()).err().unwrap_or_default());
        GoalEntry { key, key_result: key_result.trim().to_owned(), input }
    }

    /// Reads the flat measure fields of a key result or goal table.
    fn measure(&mut self, t: &Table) -> MeasureInput {
        MeasureInput {
            kind: self.text(t, "kind"),
            start: self.number(t, "start"),
            target: self.number(t, "target"),
            threshold: self.number(t, "threshold"),
            low: self.number(t, "low"),
            high: self.number(t, "high"),
            unit: self.text(t, "unit"),
        }
    }

    /// Reads an entry's key, which must be a valid key and, within its kind, unique in the file.
    /// The season has no kind to share keys with, hence the optional `seen`.
    fn key(&mut self, t: &Table, seen: Option<&mut HashMap<String, String>>) -> String {
        let path = t.path("key");
        let line = self.field_line(t, "key");
        let raw = self.text(t, "key");
        if self.reported.contains(&path) {
            return raw;
        }
        let key = match Key::parse(&raw) {
            Ok(key) => key.as_str().to_owned(),
            Err(message) => {
                let message = if raw.trim().is_empty() {
                    "is required: a stable key such as \"ship-agents\" that names this entry across files".to_owned()
                } else {
                    message
                };
                self.fail(line, path, message);
                return raw;
            }
        };
        if let Some(seen) = seen {
            match seen.get(&key) {
                Some(first) => {
                    let message = format!("duplicate key {key:?}: {first} already uses it");
                    self.fail(line, path, message);
                }
                None => {
                    seen.insert(key.clone(), t.path.clone());
                }
            }
        }
        key
    }

    /// Reports the fields of `t` that a plan does not have, each on its own line.
    fn unknown_fields(&mut self, t: &Table, known: &[&str], more: &[&str]) {
        for (name, _) in t.table.iter() {
            let name = name.get_ref().as_ref();
            if known.contains(&name) || more.contains(&name) {
                continue;
            }
            let message = match NOT_IN_PLANS.iter().find(|(field, _)| *field == name) {
                Some((_, why)) => format!("unknown field: {name} {why}"),
                None => format!("unknown field; expected one of {}", [known, more].concat().join(", ")),
            };
            let line = self.field_line(t, name);
            self.fail(line, t.path(name), message);
        }
    }

    /// Places the domain's messages on the lines of the fields they name. A field the file leaves out is
    /// reported on its table's header line.
    fn domain_errors(&mut self, t: &Table, errors: FieldErrors) {
        for (field, messages) in errors.0 {
            // `input` is the domain's name for a problem of the whole entry.
            let path = if field == "input" { t.path.clone() } else { t.path(&field) };
            if self.reported.contains(&path) {
                continue;
            }
            let line = self.field_line(t, &field);
            for message in messages {
                self.errors.push(PlanError { line, path: path.clone(), message });
            }
        }
    }

    fn field_line(&self, t: &Table, field: &str) -> usize {
        t.get(field).map_or(t.line, |(name, _)| self.span_line(name.span()))
    }

    /// Reports a value of the wrong type; returns `None` so callers can treat it as missing.
    fn wrong_type<T>(&mut self, t: &Table, field: &str, expected: &str, value: &Spanned<DeValue>) -> Option<T> {
        let line = self.field_line(t, field);
        self.fail(line, t.path(field), format!("must be {expected}, not {}", type_name(value.get_ref())));
        None
    }

    /// Reads a string; a missing one is empty, as in the domain's input structs.
    fn text(&mut self, t: &Table, field: &str) -> String {
        match t.get(field) {
            None => String::new(),
            Some((_, value)) => match value.get_ref() {
                DeValue::String(s) => s.to_string(),
                _ => self.wrong_type(t, field, "a string in quotes", value).unwrap_or_default(),
            },
        }
    }

    /// Reads a date, written as a string (`"2027-01-31"`, as exported) or as a bare TOML date.
    fn date(&mut self, t: &Table, field: &str) -> String {
        match t.get(field).map(|(_, value)| (value, value.get_ref())) {
            Some((_, DeValue::Datetime(dt))) if dt.date.is_some() && dt.time.is_none() && dt.offset.is_none() => {
                dt.to_string()
            }
            Some((value, DeValue::Datetime(_))) => {
                self.wrong_type(t, field, "a date like \"2027-01-31\"", value).unwrap_or_default()
            }
            _ => self.text(t, field),
        }
    }

    /// Reads a number; integers are accepted wherever a number is expected.
    fn number(&mut self, t: &Table, field: &str) -> Option<f64> {
        let (_, value) = t.get(field)?;
        match value.get_ref() {
            DeValue::Float(f) => f.as_str().parse().ok(),
            DeValue::Integer(i) => match i64::from_str_radix(i.as_str(), i.radix()) {
                Ok(n) => Some(n as f64),
                Err(_) => {
                    let line = self.field_line(t, field);
                    self.fail(line, t.path(field), "is too large a number");
                    None
                }
            },
            _ => self.wrong_type(t, field, "a number", value),
        }
    }

    /// Reads a list of strings, reporting each item of another type on its own line.
    fn texts(&mut self, t: &Table, field: &str) -> Vec<String> {
        let Some((_, value)) = t.get(field) else { return Vec::new() };
        let DeValue::Array(items) = value.get_ref() else {
            return self.wrong_type(t, field, "a list of strings", value).unwrap_or_default();
        };
        let mut texts = Vec::new();
        for (i, item) in items.iter().enumerate() {
            match item.get_ref() {
                DeValue::String(s) => texts.push(s.to_string()),
                other => {
                    let line = self.span_line(item.span());
                    self.fail(
                        line,
                        format!("{}[{i}]", t.path(field)),
                        format!("must be a string, not {}", type_name(other)),
                    );
                }
            }
        }
        texts
    }

    /// Reads a table such as `[season]`.
    fn table<'t, 'i>(&mut self, t: &Table<'t, 'i>, field: &str) -> Option<Table<'t, 'i>> {
        let (_, value) = t.get(field)?;
        match value.get_ref() {
            DeValue::Table(table) => {
                Some(Table { table, path: t.path(field), name: t.name(field), line: self.span_line(value.span()) })
            }
            _ => self.wrong_type(t, field, &format!("a table ([{field}])"), value),
        }
    }

    /// Reads an array of tables such as `[[objectives]]`; each element is named by its index.
    fn tables<'t, 'i>(&mut self, t: &Table<'t, 'i>, field: &str) -> Vec<Table<'t, 'i>> {
        let Some((_, value)) = t.get(field) else { return Vec::new() };
        let DeValue::Array(items) = value.get_ref() else {
            let expected = format!("an array of tables ([[{}]])", t.name(field));
            return self.wrong_type(t, field, &expected, value).unwrap_or_default();
        };
        let mut tables = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let path = format!("{}[{i}]", t.path(field));
            let line = self.span_line(item.span());
            match item.get_ref() {
                DeValue::Table(table) => tables.push(Table { table, path, name: t.name(field), line }),
                other => self.fail(line, path, format!("must be a table, not {}", type_name(other))),
            }
        }
        tables
    }
}

fn type_name(value: &DeValue) -> &'static str {
    match value {
        DeValue::String(_) => "a string",
        DeValue::Integer(_) => "an integer",
        DeValue::Float(_) => "a float",
        DeValue::Boolean(_) => "a boolean",
        DeValue::Datetime(_) => "a date or time",
        DeValue::Array(_) => "an array",
        DeValue::Table(_) => "a table",
    }
}

/// The season's dates when both are valid, whatever else is wrong with the season, so that objectives
/// and goals are still checked against them.
fn season_dates(input: &SeasonInput) -> Option<DateRange> {
    DateRange::new(parse_date(&input.starts_on).ok()?, parse_date(&input.ends_on).ok()?).ok()
}

/// The dates an objective's quarter is checked against. Without valid season dates it is the objective's
/// own quarter, which trivially overlaps, so the objective is not blamed for the season's broken dates
/// while its other fields are still checked.
fn objective_context(season: Option<DateRange>, quarter: &str) -> DateRange {
    season
        .or_else(|| quarter.parse::<Quarter>().ok().map(Quarter::range))
        // The quarter is invalid too; validation reports that and never looks at the range.
        .unwrap_or_else(|| Quarter { year: 2000, q: 1 }.range())
}

/// The line of `field` in the table of the `kind` entry with key `key` (or of its table header when the
/// field is absent; 1 when there is no such entry), for errors found after parsing, such as a metric
/// that does not exist in the database. `text` must be a file that [`parse`] accepted.
pub fn line_of(text: &str, kind: crate::Kind, key: &str, field: &str) -> usize {
    let header = match kind {
        crate::Kind::Season => "[season]",
        crate::Kind::Objective => "[[objectives]]",
        crate::Kind::KeyResult => "[[objectives.key_results]]",
        crate::Kind::Squad => "[[squads]]",
        crate::Kind::SquadGoal => "[[squads.goals]]",
    };
    let lines: Vec<&str> = text.lines().collect();
    let is_header = |l: &str| l.trim_start().starts_with('[');
    let assigns =
        |l: &str, name: &str| l.trim_start().strip_prefix(name).is_some_and(|rest| rest.trim_start().starts_with('='));
    let mut start = 0;
    while start < lines.len() {
        if lines[start].trim() == header {
            let end = (start + 1..lines.len()).find(|&i| is_header(lines[i])).unwrap_or(lines.len());
            let table = start + 1..end;
            let has_key = table.clone().any(|i| {
                assigns(lines[i], "key")
                    && lines[i].split_once('=').is_some_and(|(_, v)| v.trim().trim_matches('"') == key)
            });
            if has_key {
                return table.into_iter().find(|&i| assigns(lines[i], field)).unwrap_or(start) + 1;
            }
            start = end;
        } else {
            start += 1;
        }
    }
    1
}
