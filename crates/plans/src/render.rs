//! Writes a plan file.
//!
//! The layout is written by hand rather than by a TOML serializer so that it stays the same across
//! library versions and reads like a document: a header that says what the file is, the season first,
//! fields in a fixed order, empty optional fields left out, prose as multi-line strings. Export twice and
//! the files are identical; edit one field and version control shows one line.

use std::fmt::Write;

use slope_domain::{Key, MeasureInput};

use crate::model::{GoalEntry, KeyResultEntry, ObjectiveEntry, PlanFile, SeasonEntry, SquadEntry};

/// Renders `plan` as a plan file that `parse` reads back to an equal `PlanFile`.
pub fn render(plan: &PlanFile) -> String {
    let mut out = Doc::default();
    out.header(&plan.season.key);
    out.season(&plan.season);
    for objective in &plan.objectives {
        out.objective(objective);
        for key_result in &objective.key_results {
            out.key_result(key_result);
        }
    }
    for squad in &plan.squads {
        out.squad(squad);
        for goal in &squad.goals {
            out.goal(goal);
        }
    }
    out.0
}

#[derive(Default)]
struct Doc(String);

impl Doc {
    /// A comment that tells a reader who finds the file what it is and how to use it.
    fn header(&mut self, season: &str) {
        // A valid key is safe to paste into a shell; anything else is quoted, and so cannot end the comment.
        let shown = if Key::parse(season).is_ok_and(|key| key.as_str() == season) {
            season.to_owned()
        } else {
            format!("{season:?}")
        };
        let _ = write!(
            self.0,
            "\
# Slope plan of season {shown}: its objectives, key results, squads and squad goals.
#
#   slope plan diff season.toml     shows what applying this file would create, update and delete
#   slope plan apply season.toml    applies it in one transaction; applying it again changes nothing
#   slope plan export --season {shown} > season.toml    writes the stored plan again
#
# Entries are matched by key: a changed key deletes one entry and creates another. Objectives, key
# results and squad goals left out of the file are deleted; squads left out are kept.
"
        );
    }

    fn table(&mut self, header: &str) {
        let _ = write!(self.0, "\n{header}\n");
    }

    fn season(&mut self, season: &SeasonEntry) {
        let input = &season.input;
        self.table("[season]");
        self.text("key", &season.key);
        self.text("name", &input.name);
        self.text("status", &season.status);
        self.text("starts_on", &input.starts_on);
        self.text("ends_on", &input.ends_on);
        self.number("slope_target", input.slope_target);
        self.text("thesis", &input.thesis);
        self.texts("problems", &input.problems);
        self.text("winning", &input.winning);
        self.text("retrospective", &season.retrospective);
    }

    fn objective(&mut self, objective: &ObjectiveEntry) {
        let input = &objective.input;
        self.table("[[objectives]]");
        self.text("key", &objective.key);
        self.text("quarter", &input.quarter);
        self.text("title", &input.title);
        self.text("commitment", &input.commitment);
        self.text("owner", &input.owner);
        self.number("weight", input.weight);
        self.text("description", &input.description);
    }

    fn key_result(&mut self, key_result: &KeyResultEntry) {
        let input = &key_result.input;
        self.table("[[objectives.key_results]]");
        self.text("key", &key_result.key);
        self.text("title", &input.title);
        self.measure(&input.measure());
        self.number("weight", input.weight);
        self.text("metric", &input.metric);
    }

    fn squad(&mut self, squad: &SquadEntry) {
        let input = &squad.input;
        self.table("[[squads]]");
        self.text("key", &squad.key);
        self.text("name", &input.name);
        self.text("unit", &input.unit);
        self.number("capacity", input.capacity);
    }

    fn goal(&mut self, goal: &GoalEntry) {
        let input = &goal.input;
        self.table("[[squads.goals]]");
        self.text("key", &goal.key);
        self.text("key_result", &goal.key_result);
        self.text("title", &input.title);
        self.text("starts_on", &input.starts_on);
        self.text("ends_on", &input.ends_on);
        self.text("status", &input.status);
        self.text("investment", &input.investment);
        self.number("planned_capacity", input.planned_capacity);
        self.measure(&input.measure());
        self.text("metric", &input.metric);
        self.text("challenges", &input.challenges);
        self.text("kill_criteria", &input.kill_criteria);
    }

    /// The measure's fields, flat in the key result's or goal's table as they are in the input structs.
    fn measure(&mut self, measure: &MeasureInput) {
        self.text("kind", &measure.kind);
        self.number("start", measure.start);
        self.number("target", measure.target);
        self.number("threshold", measure.threshold);
        self.number("low", measure.low);
        self.number("high", measure.high);
        self.text("unit", &measure.unit);
    }

    /// Writes a text field; an empty one is left out, which `parse` reads back as empty.
    fn text(&mut self, field: &str, value: &str) {
        if !value.is_empty() {
            let _ = writeln!(self.0, "{field} = {}", string(value));
        }
    }

    /// Writes a list of texts one item a line, so that adding an item is a one-line change.
    fn texts(&mut self, field: &str, values: &[String]) {
        if values.is_empty() {
            return;
        }
        let _ = writeln!(self.0, "{field} = [");
        for value in values {
            let _ = writeln!(self.0, "  {},", string(value));
        }
        self.0.push_str("]\n");
    }

    fn number(&mut self, field: &str, value: Option<f64>) {
        if let Some(value) = value {
            let _ = writeln!(self.0, "{field} = {}", number(value));
        }
    }
}

/// A TOML number that reads back as exactly `value`.
///
/// Whole numbers are written as integers (`12`, not `12.0`), which `parse` accepts wherever a number is
/// expected. Anything else uses Rust's shortest representation that round-trips (`0.1`, `1e-7`), which
/// is also valid TOML.
pub(crate) fn number(value: f64) -> String {
    if value.is_nan() {
        "nan".to_owned()
    } else if value.is_infinite() {
        if value > 0.0 { "inf".to_owned() } else { "-inf".to_owned() }
    } else if value.fract() == 0.0 && value.abs() < 1e15 && !(value == 0.0 && value.is_sign_negative()) {
        format!("{}", value as i64)
    } else {
        format!("{value:?}")
    }
}

/// A TOML string holding exactly `value`: a basic string for one line, a multi-line basic string for
/// prose with line breaks, so that paragraphs stay readable and diffable.
pub(crate) fn string(value: &str) -> String {
    if !value.contains('\n') {
        let mut out = String::from('"');
        for c in value.chars() {
            match c {
                '"' => out.push_str("\\\""),
                c => escape_common(&mut out, c),
            }
        }
        out.push('"');
        return out;
    }
    // The newline right after the opening delimiter is not part of the string in TOML, so the text
    // starts on its own line with its own first character.
    let mut out = String::from("\"\"\"\n");
    let mut chars = value.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\n' => out.push('\n'),
            // A quote is escaped only where it could join others into a closing delimiter: before
            // another quote or at the very end. Every other quote stays readable.
            '"' if matches!(chars.peek(), Some('"') | None) => out.push_str("\\\""),
            '"' => out.push('"'),
            c => escape_common(&mut out, c),
        }
    }
    out.push_str("\"\"\"");
    out
}

/// Escapes what both kinds of basic string must escape: backslashes and control characters. A carriage
/// return is escaped too, because a parser may normalise a raw CR LF in a multi-line string to LF.
fn escape_common(out: &mut String, c: char) {
    match c {
        '\\' => out.push_str("\\\\"),
        '\t' => out.push_str("\\t"),
        '\r' => out.push_str("\\r"),
        c if c.is_control() && (c as u32) < 0x80 => {
            let _ = write!(out, "\\u{:04X}", c as u32);
        }
        c => out.push(c),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_compact_and_exact() {
        assert_eq!(number(12.0), "12");
        assert_eq!(number(-3.0), "-3");
        assert_eq!(number(0.1), "0.1");
        assert_eq!(number(1e-7), "1e-7");
        assert_eq!(number(1e20), "1e20");
        assert_eq!(number(-0.0), "-0.0");
        assert_eq!(number(1.0 / 3.0).parse::<f64>().unwrap(), 1.0 / 3.0);
    }

    #[test]
    fn strings_escape_only_what_they_must() {
        assert_eq!(string(r#"say "hi" \ now"#), r#""say \"hi\" \\ now""#);
        assert_eq!(string("tab\there\u{7}"), r#""tab\there\u0007""#);
        assert_eq!(string("a \"b\"\nc\"\"\"d\""), "\"\"\"\na \"b\"\nc\\\"\\\"\"d\\\"\"\"\"");
        assert_eq!(string("é ✓"), "\"é ✓\"");
    }
}
