//! The plan file end to end: export from entities, render, parse back, report errors, diff.

use chrono::{NaiveDate, Utc};
use slope_domain::{
    Commitment, GoalStatus, Investment, KeyResult, KeyResultId, Measure, MetricFeed, Objective, ObjectiveId, OrgId,
    Season, SeasonId, SeasonStatus, Squad, SquadGoal, SquadGoalId, SquadId, Version,
};
use slope_plans::{Kind, Op, PlanFile, diff, parse, render};

fn day(raw: &str) -> NaiveDate {
    raw.parse().unwrap()
}

fn season() -> Season {
    Season {
        id: SeasonId(1),
        key: "h1-2027".into(),
        org_id: OrgId(1),
        name: "The advent of \"agents\"".into(),
        thesis: "Agents replace forms.\nClinicians \"approve\" drafts — they don't type them. ✓\n\n\"\"\"Quoted\"\"\" \\ done\""
            .into(),
        problems: vec!["Clinicians type too much".into(), "Notes arrive late,\n\tand incomplete".into()],
        winning: "Half of all notes drafted by agents".into(),
        starts_on: day("2027-01-01"),
        ends_on: day("2027-06-30"),
        status: SeasonStatus::Active,
        slope_target: 0.1,
        retrospective: None,
        version: Version(3),
        created_at: Utc::now(),
        updated_at: Utc::now(),
    }
}

fn objective(id: i64, key: &str, quarter: &str, title: &str) -> Objective {
    Objective {
        id: ObjectiveId(id),
        key: key.into(),
        org_id: OrgId(1),
        season_id: SeasonId(1),
        quarter: quarter.parse().unwrap(),
        title: title.into(),
        description: None,
        commitment: Commitment::Committed,
        owner: None,
        weight: 1.0,
        version: Version(1),
        created_at: Utc::now(),
        updated_at: Utc::now(),
    }
}

fn key_result(id: i64, key: &str, objective: i64, title: &str, measure: Measure) -> KeyResult {
    KeyResult {
        id: KeyResultId(id),
        key: key.into(),
        org_id: OrgId(1),
        objective_id: ObjectiveId(objective),
        title: title.into(),
        measure,
        current: Some(0.2),
        weight: 1.0,
        confidence: Some(0.6),
        metric: None,
        version: Version(1),
        created_at: Utc::now(),
        updated_at: Utc::now(),
    }
}

fn squad(id: i64, key: &str, name: &str) -> Squad {
    Squad {
        id: SquadId(id),
        key: key.into(),
        org_id: OrgId(1),
        name: name.into(),
        unit: "Clinical".into(),
        capacity: 12.5,
        version: Version(1),
        created_at: Utc::now(),
        updated_at: Utc::now(),
    }
}

fn goal(id: i64, key: &str, squad: i64, key_result: i64, title: &str) -> SquadGoal {
    SquadGoal {
        id: SquadGoalId(id),
        key: key.into(),
        org_id: OrgId(1),
        squad_id: SquadId(squad),
        key_result_id: KeyResultId(key_result),
        title: title.into(),
        starts_on: day("2027-01-04"),
        ends_on: day("2027-02-01"),
        investment: Investment::Snapshot,
        challenges: None,
        kill_criteria: None,
        planned_capacity: 8.0,
        status: GoalStatus::Active,
        measure: Measure::Milestone,
        current: None,
        metric: None,
        confidence: Some(0.9),
        version: Version(1),
        created_at: Utc::now(),
        updated_at: Utc::now(),
    }
}

/// A plan with every kind of entity, every kind of measure and text that is awkward to write as TOML.
fn plan() -> PlanFile {
    let mut trust = objective(1, "clinicians-trust", "2027-Q2", "Clinicians trust the drafts");
    trust.description = Some("Trust is earned\nline by line.".into());
    trust.owner = Some("Zoë O'Brien".into());
    trust.weight = 0.1 + 0.2;
    trust.commitment = Commitment::Aspirational;
    let ship = objective(2, "ship-agents", "2027-Q1", "Ship agents");

    let mut acceptance = key_result(
        10,
        "acceptance",
        2,
        "Acceptance rate",
        Measure::IncreaseTo { start: 0.1, target: 0.35, unit: "%".into() },
    );
    acceptance.metric = Some(MetricFeed { key: "notes.acceptance".into(), observed_at: None, freshness_hours: 24 });
    let key_results = vec![
        acceptance,
        key_result(11, "latency", 2, "Latency", Measure::DecreaseTo { start: 0.5, target: 1e-7, unit: "s".into() }),
        key_result(12, "edits", 1, "Edits per note", Measure::WithinRange { low: -1.5, high: 2.25, unit: "".into() }),
        key_result(13, "nps", 1, "NPS", Measure::KeepAbove { threshold: 1.0 / 3.0, unit: "pts".into() }),
        key_result(14, "errors", 1, "Errors", Measure::KeepBelow { threshold: 1e21, unit: "".into() }),
        key_result(15, "launch", 2, "Launch", Measure::Milestone),
    ];

    let mut bet = goal(21, "full-drafts", 1, 10, "Full drafts, not completions");
    bet.investment = Investment::Slope;
    bet.challenges = Some("Clinicians want completions.\n\"Drafts\" feel intrusive.".into());
    bet.kill_criteria = Some("Acceptance below 10 % after 3 weeks".into());
    bet.measure = Measure::IncreaseTo { start: 0.0, target: 0.25, unit: "".into() };
    bet.metric = Some(MetricFeed { key: "notes.acceptance".into(), observed_at: None, freshness_hours: 24 });
    let goals = vec![bet, goal(20, "inline", 1, 15, "Ship inline suggestions"), goal(22, "speed", 2, 11, "Go fast")];

    PlanFile::from_entities(
        &season(),
        &[trust, ship],
        &key_results,
        &[squad(2, "platform", "Platform"), squad(1, "drafts", "Drafts")],
        &goals,
    )
}

/// The 1-based line of the only line of `text` that contains `needle`.
fn line_of(text: &str, needle: &str) -> usize {
    let lines: Vec<usize> = text.lines().enumerate().filter(|(_, l)| l.contains(needle)).map(|(i, _)| i + 1).collect();
    assert_eq!(lines.len(), 1, "{needle:?} should be on exactly one line");
    lines[0]
}

fn errors(text: &str) -> Vec<String> {
    parse(text).expect_err("the file should be rejected").0.iter().map(|e| e.to_string()).collect()
}

#[test]
fn export_orders_entities_and_leaves_out_state() {
    let plan = plan();
    let keys: Vec<&str> = plan.objectives.iter().map(|o| o.key.as_str()).collect();
    assert_eq!(keys, ["ship-agents", "clinicians-trust"], "objectives by quarter, then id");
    let krs: Vec<&str> = plan.objectives[0].key_results.iter().map(|kr| kr.key.as_str()).collect();
    assert_eq!(krs, ["acceptance", "latency", "launch"]);
    let squads: Vec<&str> = plan.squads.iter().map(|s| s.key.as_str()).collect();
    assert_eq!(squads, ["drafts", "platform"]);
    let goals: Vec<(&str, &str)> =
        plan.squads[0].goals.iter().map(|g| (g.key.as_str(), g.key_result.as_str())).collect();
    assert_eq!(goals, [("inline", "launch"), ("full-drafts", "acceptance")]);
    assert!(plan.key_results().all(|(_, kr)| kr.input.confidence.is_none()));
    assert!(plan.goals().all(|(_, g)| g.input.key_result_id.is_none()));
    assert_eq!(plan.season.status, "active");
}

#[test]
fn render_then_parse_gives_back_the_same_plan() {
    let plan = plan();
    let text = render(&plan);
    let parsed = parse(&text).unwrap_or_else(|e| panic!("{e}\n\n{text}"));
    assert_eq!(parsed, plan, "\n{text}");
    assert_eq!(render(&parsed), text, "rendering is deterministic");
    // Floats come back bit for bit, not merely close.
    let latency = &parsed.objectives[0].key_results[1].input;
    assert_eq!(latency.target, Some(1e-7));
    assert_eq!(parsed.objectives[1].input.weight, Some(0.1 + 0.2));
    assert!(text.contains("target = 1e-7\n"), "{text}");
    assert!(text.contains("capacity = 12.5\n") && text.contains("planned_capacity = 8\n"), "{text}");
}

#[test]
fn the_rendered_file_reads_as_a_document() {
    let text = render(&plan());
    assert!(text.starts_with("# Slope plan of season h1-2027: "), "{text}");
    for command in ["slope plan diff", "slope plan apply", "slope plan export --season h1-2027 >"] {
        assert!(text.contains(command), "the header names {command:?}");
    }
    let headers: Vec<&str> = text.lines().filter(|l| l.starts_with('[')).collect();
    assert_eq!(
        headers[..4],
        ["[season]", "[[objectives]]", "[[objectives.key_results]]", "[[objectives.key_results]]"]
    );
    assert!(line_of(&text, "[season]") < line_of(&text, "key = \"ship-agents\""));
    assert!(line_of(&text, "key = \"clinicians-trust\"") < line_of(&text, "key = \"drafts\""));
    assert!(text.contains("starts_on = \"2027-01-01\"\n"));
    assert!(text.contains("thesis = \"\"\"\nAgents replace forms.\n"), "prose is a multi-line string: {text}");
    assert!(!text.contains("retrospective"), "empty optional fields are left out");
    assert!(!text.contains("confidence"), "confidence is state, not plan");
    assert!(!text.contains("owner = \"\""));
}

const FILE: &str = r#"
[season]
key = "h1-2027"
name = "Agents"
status = "draft"
starts_on = "2027-01-01"
ends_on = "2027-06-30"
thesis = "Agents replace forms"
problems = ["Clinicians type too much"]
winning = "Half of all notes drafted"

[[objectives]]
key = "ship"
quarter = "2027-Q1"
title = "Ship agents"
commitment = "committed"

[[objectives.key_results]]
key = "acceptance"
title = "Acceptance"
kind = "increase-to"
start = 0.2
target = 0.4

[[objectives.key_results]]
key = "latency"
title = "Latency"
kind = "decrease-to"
start = 900
target = 300
unit = "ms"

[[squads]]
key = "platform"
name = "Platform"
unit = "Clinical"
capacity = 10

[[squads.goals]]
key = "inline"
key_result = "acceptance"
title = "Inline suggestions"
starts_on = 2027-01-04
ends_on = "2027-02-01"
investment = "snapshot"
planned_capacity = 4
kind = "milestone"
"#;

#[test]
fn a_hand_written_file_parses() {
    let plan = parse(FILE).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(plan.objectives[0].key_results[1].input.start, Some(900.0), "integers are numbers");
    assert_eq!(plan.squads[0].goals[0].input.starts_on, "2027-01-04", "a bare TOML date is a date");
    assert_eq!(plan.squads[0].goals[0].key_result, "acceptance");
}

#[test]
fn a_bad_target_is_reported_on_its_line_with_its_path() {
    let text = FILE.replace("target = 300", "target = 1200");
    let line = line_of(&text, "target = 1200");
    assert_eq!(
        errors(&text),
        [format!("line {line}: objectives[0].key_results[1].target: must be below the start value for a decrease")]
    );
}

#[test]
fn unknown_fields_are_named_on_their_line() {
    let text = FILE.replace("commitment = \"committed\"", "commitment = \"committed\"\ncolour = \"red\"");
    let errors = errors(&text);
    assert_eq!(errors.len(), 1, "{errors:?}");
    let line = line_of(&text, "colour");
    assert!(
        errors[0]
            .starts_with(&format!("line {line}: objectives[0].colour: unknown field; expected one of key, quarter"))
    );

    let text = FILE.replace("target = 0.4", "target = 0.4\nconfidence = 0.7");
    let line = line_of(&text, "confidence");
    assert_eq!(
        self::errors(&text),
        [format!(
            "line {line}: objectives[0].key_results[0].confidence: unknown field: confidence is not part of a plan: check-ins set it"
        )]
    );
}

#[test]
fn duplicate_keys_are_reported_per_kind() {
    // The same key for a key result and a squad goal is fine; two key results may not share one, even
    // under different objectives.
    let text = FILE.replace("key = \"latency\"", "key = \"acceptance\"").replace("key = \"inline\"", "key = \"ship\"");
    let lines: Vec<usize> =
        text.lines().enumerate().filter(|(_, l)| *l == "key = \"acceptance\"").map(|(i, _)| i + 1).collect();
    assert_eq!(
        errors(&text),
        [format!(
            "line {}: objectives[0].key_results[1].key: duplicate key \"acceptance\": objectives[0].key_results[0] already uses it",
            lines[1]
        )]
    );
}

#[test]
fn a_goal_must_name_a_key_result_of_the_file() {
    let text = FILE.replace("key_result = \"acceptance\"", "key_result = \"retention\"");
    let line = line_of(&text, "key_result = \"retention\"");
    assert_eq!(
        errors(&text),
        [format!(
            "line {line}: squads[0].goals[0].key_result: names key result \"retention\", which is not in this file; a goal ladders up to a key result of its season"
        )]
    );
}

#[test]
fn a_toml_syntax_error_reports_its_line() {
    let text = FILE.replace("title = \"Latency\"", "title = \"Latency");
    let line = line_of(&text, "title = \"Latency");
    let errors = errors(&text);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].starts_with(&format!("line {line}: ")), "{errors:?}");
}

#[test]
fn every_problem_is_reported_at_once_in_line_order() {
    let text = FILE
        .replace("key = \"ship\"", "key = \"Ship It\"")
        .replace("title = \"Ship agents\"\n", "")
        .replace("start = 0.2", "start = \"low\"")
        .replace("capacity = 10", "capacity = -1")
        .replace("ends_on = \"2027-02-01\"", "ends_on = \"2027-03-01\"");
    let header = text.lines().position(|l| l == "[[objectives]]").unwrap() + 1;
    assert_eq!(
        errors(&text),
        [
            format!("line {header}: objectives[0].title: is required"),
            format!(
                "line {}: objectives[0].key: must use lowercase letters, digits, '-', '_' and '.', starting with a letter or digit, not \"Ship It\"",
                line_of(&text, "Ship It")
            ),
            format!(
                "line {}: objectives[0].key_results[0].start: must be a number, not a string",
                line_of(&text, "start = \"low\"")
            ),
            format!("line {}: squads[0].capacity: must not be negative", line_of(&text, "capacity = -1")),
            format!(
                "line {}: squads[0].goals[0].ends_on: a squad goal runs 4 to 6 weeks (28–42 days); this one runs 56 days (8.0 weeks)",
                line_of(&text, "ends_on = \"2027-03-01\"")
            ),
        ]
    );
}

#[test]
fn the_file_needs_a_season_and_keys() {
    let text = FILE.replacen("key = \"h1-2027\"\n", "", 1).replace("[season]", "[seasons]");
    let errors = errors(&text);
    assert!(
        errors
            .contains(&"line 1: season: is required: a plan file describes one season in a [season] table".to_owned())
    );
    assert!(
        errors.iter().any(|e| e.starts_with(&format!("line {}: seasons: unknown field", line_of(&text, "[seasons]"))))
    );

    let text = FILE.replace("key = \"platform\"\n", "");
    let header = text.lines().position(|l| l == "[[squads]]").unwrap() + 1;
    assert_eq!(
        self::errors(&text),
        [format!(
            "line {header}: squads[0].key: is required: a stable key such as \"ship-agents\" that names this entry across files"
        )]
    );
}

#[test]
fn goals_and_objectives_are_checked_against_the_season() {
    let text = FILE.replace("quarter = \"2027-Q1\"", "quarter = \"2027-Q3\"").replace("2027-01-04", "2026-12-28");
    assert_eq!(
        errors(&text),
        [
            format!(
                "line {}: objectives[0].quarter: 2027-Q3 is outside the season; choose one of 2027-Q1, 2027-Q2",
                line_of(&text, "2027-Q3")
            ),
            format!(
                "line {}: squads[0].goals[0].starts_on: must run inside its season (2027-01-01 to 2027-06-30)",
                line_of(&text, "2026-12-28")
            ),
        ]
    );
}

#[test]
fn errors_serialise_and_display_one_per_line() {
    let err = parse(
        &FILE.replace("capacity = 10", "capacity = \"ten\"").replace("status = \"draft\"", "status = \"paused\""),
    )
    .unwrap_err();
    assert_eq!(err.to_string().lines().count(), 2, "{err}");
    let first = &err.0[0];
    assert_eq!(first.path, "season.status");
    assert_eq!(first.message, "must be one of draft, active, closed, not \"paused\"");
}

#[test]
fn a_fresh_export_diffs_empty() {
    let plan = plan();
    let reread = parse(&render(&plan)).unwrap();
    let changes = diff(Some(&plan), &reread);
    assert!(changes.is_empty(), "{}", changes.render());
    assert_eq!(changes.render(), "No changes. The plan matches the file.\n");
}

#[test]
fn an_edited_file_lists_exactly_its_edits() {
    let current = parse(FILE).unwrap();
    let text = FILE
        .replace("target = 0.4", "target = 0.5")
        .replace(
            "[[squads]]",
            "[[objectives]]\nkey = \"ship-more\"\nquarter = \"2027-Q2\"\ntitle = \"Ship more agents\"\ncommitment = \"aspirational\"\n\n[[squads]]",
        );
    let goal = text.find("[[squads.goals]]").unwrap();
    let desired = parse(&text[..goal]).unwrap();
    let changes = diff(Some(&current), &desired);
    assert_eq!(
        changes.render(),
        [
            "  + objective \"ship-more\" (2027-Q2 \"Ship more agents\")",
            "  ~ key_result \"acceptance\" in objective \"ship\"",
            "      target: 0.4 -> 0.5",
            "  - squad_goal \"inline\" in squad \"platform\" (\"Inline suggestions\")",
            "Plan: 1 to create, 1 to update, 1 to delete.",
            "",
        ]
        .join("\n")
    );
    let update = &changes.changes[1];
    assert_eq!((update.op, update.kind, update.parent.as_deref()), (Op::Update, Kind::KeyResult, Some("ship")));
    assert_eq!(update.fields.len(), 1);
    assert_eq!(
        (update.fields[0].field.as_str(), update.fields[0].old.as_deref(), update.fields[0].new.as_deref()),
        ("target", Some("0.4"), Some("0.5"))
    );
    assert_eq!((changes.count(Op::Create), changes.count(Op::Update), changes.count(Op::Delete)), (1, 1, 1));
}

#[test]
fn changes_are_ordered_so_they_can_be_applied() {
    let current = parse(FILE).unwrap();
    // Everything of the current plan goes except the squad; a new objective, key result and goal come.
    let desired = parse(
        &FILE
            .replace("key = \"ship\"", "key = \"ship-2\"")
            .replace("key = \"acceptance\"", "key = \"acceptance-2\"")
            .replace("key_result = \"acceptance\"", "key_result = \"acceptance-2\"")
            .replace("key = \"latency\"\n", "key = \"latency-2\"\n")
            .replace("key = \"inline\"", "key = \"inline-2\"")
            .replace("status = \"draft\"", "status = \"active\""),
    )
    .unwrap();
    let changes = diff(Some(&current), &desired);
    let order: Vec<(Op, Kind, &str)> = changes.changes.iter().map(|c| (c.op, c.kind, c.key.as_str())).collect();
    assert_eq!(
        order,
        [
            (Op::Create, Kind::Objective, "ship-2"),
            (Op::Create, Kind::KeyResult, "acceptance-2"),
            (Op::Create, Kind::KeyResult, "latency-2"),
            (Op::Create, Kind::SquadGoal, "inline-2"),
            (Op::Update, Kind::Season, "h1-2027"),
            (Op::Delete, Kind::SquadGoal, "inline"),
            (Op::Delete, Kind::KeyResult, "acceptance"),
            (Op::Delete, Kind::KeyResult, "latency"),
            (Op::Delete, Kind::Objective, "ship"),
        ]
    );

    // Without a current plan the season comes first and squads before their goals.
    let kinds: Vec<Kind> = diff(None, &current).changes.iter().map(|c| c.kind).collect();
    assert_eq!(kinds, [Kind::Season, Kind::Objective, Kind::KeyResult, Kind::KeyResult, Kind::Squad, Kind::SquadGoal]);
    assert!(diff(None, &current).changes.iter().all(|c| c.op == Op::Create));
}

#[test]
fn squads_left_out_of_the_file_are_kept() {
    let current = parse(FILE).unwrap();
    let mut desired = current.clone();
    desired.squads.clear();
    let changes = diff(Some(&current), &desired);
    let ops: Vec<(Op, Kind)> = changes.changes.iter().map(|c| (c.op, c.kind)).collect();
    assert_eq!(ops, [(Op::Delete, Kind::SquadGoal)], "the goal goes, the squad stays");
}

#[test]
fn moves_are_updates_of_the_parent_field() {
    let current = parse(FILE).unwrap();
    let mut desired = current.clone();
    let mut extra = desired.objectives[0].clone();
    extra.key = "other".into();
    extra.key_results = vec![desired.objectives[0].key_results.remove(1)];
    desired.objectives.push(extra);
    desired.squads[0].goals[0].key_result = "latency".into();
    let changes = diff(Some(&current), &desired);
    assert_eq!(
        changes.render(),
        [
            "  + objective \"other\" (2027-Q1 \"Ship agents\")",
            "  ~ key_result \"latency\" in objective \"other\"",
            "      objective: \"ship\" -> \"other\"",
            "  ~ squad_goal \"inline\" in squad \"platform\"",
            "      key_result: \"acceptance\" -> \"latency\"",
            "Plan: 1 to create, 2 to update, 0 to delete.",
            "",
        ]
        .join("\n")
    );
}

#[test]
fn edits_that_would_store_the_same_values_are_not_changes() {
    let current = parse(FILE).unwrap();
    let text = FILE
        .replace("title = \"Ship agents\"", "title = \"  Ship agents \"\nweight = 1")
        .replace("quarter = \"2027-Q1\"", "quarter = \"2027-q1\"")
        .replace("kind = \"milestone\"", "kind = \"milestone\"\nunit = \"ms\"\nstatus = \"planned\"");
    let changes = diff(Some(&current), &parse(&text).unwrap());
    assert!(changes.is_empty(), "{}", changes.render());
}
