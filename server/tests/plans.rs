//! Plans as code, end to end: `slope plan export|diff|apply` on real databases and through a running
//! server, and `POST /api/v1/plans/apply`.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::{Scratch, Server, create_token};
use serde_json::{Value, json};

/// A season written by hand, as a person starts one: not in the exported layout, with a bare TOML
/// date, a status to reach (active), a slope bet and a goal linked to a key result by key.
const PLAN: &str = r#"
[season]
key = "agents"
name = "The advent of agents"
status = "active"
starts_on = 2027-01-01
ends_on = "2027-06-30"
thesis = "Agents replace forms."
problems = ["Clinicians type too much", "Drafts arrive late"]
winning = "Half of all notes are drafted by agents"

[[objectives]]
key = "trust"
quarter = "2027-Q1"
title = "Clinicians trust drafts"
commitment = "committed"

[[objectives.key_results]]
key = "acceptance"
title = "Character acceptance rate"
kind = "increase-to"
start = 0.22
target = 0.35
unit = "of characters"

[[objectives.key_results]]
key = "latency"
title = "Median suggestion latency"
kind = "decrease-to"
start = 900
target = 300
unit = "ms"

[[squads]]
key = "drafts"
name = "Drafts"
unit = "Clinical"
capacity = 12

[[squads.goals]]
key = "inline"
key_result = "acceptance"
title = "Inline completions"
investment = "snapshot"
starts_on = "2027-01-04"
ends_on = "2027-02-01"
planned_capacity = 8
kind = "milestone"

[[squads.goals]]
key = "transcripts"
key_result = "acceptance"
title = "Drafts from visit transcripts"
starts_on = "2027-02-01"
ends_on = "2027-03-01"
investment = "slope"
challenges = "Clinicians want completions, not whole drafts"
kill_criteria = "Acceptance of full drafts below 15 % after three weeks"
planned_capacity = 3
kind = "milestone"
"#;

#[test]
fn export_then_apply_on_an_empty_database_then_export_gives_the_same_file() {
    let a = Cli::new("a");
    a.ok(&["plan", "apply", &a.file("hand.toml", PLAN)]);
    let exported = a.ok(&["plan", "export", "--season", "agents"]);
    assert!(exported.contains("[[squads.goals]]") && exported.contains("key = \"transcripts\""), "{exported}");

    let b = Cli::new("b");
    let file = b.file("season.toml", &exported);
    let applied = b.json(&["plan", "apply", &file, "--json"]);
    assert_eq!((applied["applied"].as_bool(), applied["created"].as_u64()), (Some(true), Some(7)), "{applied}");
    assert_eq!(b.ok(&["plan", "export", "--season", "agents"]), exported, "the round trip changed the file");

    // Applying the same file again changes nothing: no write, no new version, no audit record.
    let again = b.json(&["plan", "apply", &file, "--json"]);
    assert_eq!((again["applied"].as_bool(), again["changes"].as_array().map(Vec::len)), (Some(false), Some(0)));
    assert!(b.ok(&["plan", "diff", &file]).contains("No changes"));
}

#[test]
fn a_closed_seasons_review_is_printed_as_markdown() {
    let cli = Cli::new("review");
    cli.ok(&["plan", "apply", &cli.file("hand.toml", PLAN)]);
    // An active season has no review yet; the message says why and the exit code is not 0.
    let refused = cli.refused(&["plan", "review", "--season", "agents"]);
    assert!(refused.contains("is active: its review is produced when it closes"), "{refused}");
    let unknown = cli.refused(&["plan", "review", "--season", "nope"]);
    assert!(unknown.contains("no season has the key \"nope\""), "{unknown}");

    // Closing it in the plan file, with its retrospective, produces the review.
    let retrospective = "Whole drafts won once clinicians could correct them in place.";
    let closed =
        PLAN.replacen("status = \"active\"", &format!("status = \"closed\"\nretrospective = \"{retrospective}\""), 1);
    cli.ok(&["plan", "apply", &cli.file("closed.toml", &closed)]);
    let md = cli.ok(&["plan", "review", "--season", "agents"]);
    for needle in [
        "# Season review: The advent of agents",
        "### Clinicians trust drafts (2027-Q1, committed)",
        "- **Drafts from visit transcripts**",
        "challenged “Clinicians want completions, not whole drafts”",
        retrospective,
    ] {
        assert!(md.contains(needle), "{needle:?} missing from:\n{md}");
    }
}

#[test]
fn a_diff_lists_exactly_the_edits() {
    let cli = Cli::new("diff");
    cli.ok(&["plan", "apply", &cli.file("hand.toml", PLAN)]);
    let exported = cli.ok(&["plan", "export", "--season", "agents"]);
    // Three edits: a changed target, a new objective, a removed goal.
    let edited = exported.replacen("target = 0.35", "target = 0.4", 1).replace(
        "[[squads]]",
        "[[objectives]]\nkey = \"pay\"\nquarter = \"2027-Q2\"\ntitle = \"AI pays for itself\"\ncommitment = \"aspirational\"\n\n[[squads]]",
    );
    let start = edited.find("[[squads.goals]]\nkey = \"inline\"").expect("the inline goal is exported");
    let end = start + edited[start..].find("\n\n").map_or(edited.len() - start, |i| i + 2);
    let edited = format!("{}{}", &edited[..start], &edited[end..]);
    let diff = cli.json(&["plan", "diff", &cli.file("edited.toml", &edited), "--json"]);
    let changes: Vec<(String, String, String)> = diff["changes"]
        .as_array()
        .expect("changes")
        .iter()
        .map(|c| {
            (c["op"].as_str().unwrap().into(), c["kind"].as_str().unwrap().into(), c["key"].as_str().unwrap().into())
        })
        .collect();
    let expected =
        [("create", "objective", "pay"), ("update", "key_result", "acceptance"), ("delete", "squad_goal", "inline")];
    assert_eq!(changes, expected.map(|(a, b, c)| (a.to_owned(), b.to_owned(), c.to_owned())), "{diff}");
    let update = &diff["changes"][1]["fields"];
    assert_eq!(update, &json!([{ "field": "target", "old": "0.35", "new": "0.4" }]), "{diff}");
    assert_eq!(diff["dry_run"], true);
    // A diff writes nothing.
    assert_eq!(cli.ok(&["plan", "export", "--season", "agents"]), exported);
    let text = cli.ok(&["plan", "diff", &cli.file("edited2.toml", &edited)]);
    assert!(text.contains("~ key_result \"acceptance\"") && text.contains("target: 0.35 -> 0.4"), "{text}");
    assert!(text.contains("Plan: 1 to create, 1 to update, 1 to delete."), "{text}");
}

#[test]
fn errors_in_a_plan_file_name_line_and_field_and_store_nothing() {
    let cli = Cli::new("errors");
    // Line 14 of the file (counting the blank first line of PLAN) holds the second key result's target.
    let bad = PLAN.replace("target = 300", "target = \"fast\"");
    let line = bad.lines().position(|l| l == "target = \"fast\"").unwrap() + 1;
    let err = cli.refused(&["plan", "apply", &cli.file("bad.toml", &bad)]);
    assert!(
        err.contains(&format!("bad.toml: line {line}: objectives[0].key_results[1].target")),
        "the error should name the file, line {line} and the field: {err}"
    );
    let unknown = PLAN.replace("commitment = \"committed\"", "commitment = \"committed\"\nowner_email = \"x\"");
    let err = cli.refused(&["plan", "diff", &cli.file("unknown.toml", &unknown)]);
    assert!(err.contains("objectives[0].owner_email"), "{err}");
    // A linked metric that does not exist is refused before anything is written, naming its line.
    let linked = PLAN.replacen("unit = \"of characters\"", "unit = \"of characters\"\nmetric = \"nope\"", 1);
    let line = linked.lines().position(|l| l == "metric = \"nope\"").unwrap() + 1;
    let err = cli.refused(&["plan", "apply", &cli.file("linked.toml", &linked)]);
    assert!(err.contains(&format!("line {line}: objectives[0].key_results[0].metric: no metric")), "{err}");
    let err = cli.refused(&["plan", "export", "--season", "agents"]);
    assert!(err.contains("no season has the key"), "nothing was stored, so there is nothing to export: {err}");
}

#[tokio::test]
async fn the_api_and_the_cli_with_a_server_apply_plans() {
    let scratch = Scratch::new("plans-api");
    let server = Server::start(&scratch.0, &[]);

    // A dry run lists the changes and stores nothing.
    let dry = server.post("/api/v1/plans/apply", &json!({ "plan": PLAN, "dry_run": true })).await.expect(200);
    assert_eq!(
        (dry["dry_run"].as_bool(), dry["applied"].as_bool(), dry["created"].as_u64()),
        (Some(true), Some(false), Some(7))
    );
    server.get("/api/v1/plans/agents").await.expect_error(404, "not_found");

    let done = server.post("/api/v1/plans/apply", &json!({ "plan": PLAN })).await.expect(200);
    assert_eq!((done["applied"].as_bool(), done["created"].as_u64()), (Some(true), Some(7)), "{done}");
    let seasons = server.get("/api/v1/seasons").await.expect(200);
    assert_eq!(seasons[0]["season"]["key"], "agents");
    assert_eq!(seasons[0]["season"]["status"], "active", "the file asked for an active season");

    // A plan file with errors answers 422 with every error's line and field.
    let bad = PLAN.replace("target = 300", "target = \"fast\"");
    let refused = server.post("/api/v1/plans/apply", &json!({ "plan": bad })).await.expect_error(422, "invalid_plan");
    assert_eq!(refused["error"]["errors"][0]["path"], "objectives[0].key_results[1].target", "{refused}");
    assert!(refused["error"]["errors"][0]["line"].as_u64().is_some_and(|l| l > 1), "{refused}");

    // The CLI works through the server with a token: export, edit, apply, and the change shows.
    let write = server.token.clone();
    let exported = slope(&scratch.0, &["plan", "export", "--season", "agents", "--server", &server.base], &write);
    assert!(exported.status.success(), "{}", String::from_utf8_lossy(&exported.stderr));
    let text = String::from_utf8(exported.stdout).unwrap();
    let served = server.client.get(format!("{}/api/v1/plans/agents", server.base)).send().await.unwrap();
    assert_eq!(served.headers()["content-type"], "application/toml; charset=utf-8");
    assert_eq!(served.text().await.unwrap(), text, "the CLI prints what the API serves");
    let file = scratch.0.join("season.toml");
    std::fs::write(&file, text.replace("capacity = 12", "capacity = 14")).unwrap();
    let applied =
        slope(&scratch.0, &["plan", "apply", file.to_str().unwrap(), "--server", &server.base, "--json"], &write);
    assert!(applied.status.success(), "{}", String::from_utf8_lossy(&applied.stderr));
    let outcome: Value = serde_json::from_slice(&applied.stdout).unwrap();
    assert_eq!(
        (outcome["updated"].as_u64(), outcome["changes"][0]["kind"].as_str()),
        (Some(1), Some("squad")),
        "{outcome}"
    );

    // The change is on the audit trail, attributed to the token.
    let squads = server.get("/api/v1/squads").await.expect(200);
    let squad = squads.as_array().unwrap().iter().find(|s| s["key"] == "drafts").expect("the squad").clone();
    assert_eq!(squad["capacity"], 14.0);
    let trail = server.get(&format!("/api/v1/audit?entity=squad&id={}", squad["id"])).await.expect(200);
    assert_eq!(trail[0]["action"], "update", "{trail}");
    assert!(trail[0]["actor"].as_str().is_some_and(|a| a.starts_with("token:")), "{trail}");
    assert_eq!(
        (trail[0]["before"]["capacity"].as_f64(), trail[0]["after"]["capacity"].as_f64()),
        (Some(12.0), Some(14.0))
    );

    // A read-only token may look at a plan and diff one, but not apply it.
    let read = create_token(&scratch.0, &[], "read");
    let diff = slope(&scratch.0, &["plan", "diff", file.to_str().unwrap(), "--server", &server.base], &read);
    assert!(diff.status.success() && String::from_utf8_lossy(&diff.stdout).contains("No changes"));
    std::fs::write(&file, text.replace("capacity = 12", "capacity = 20")).unwrap();
    let refused = slope(&scratch.0, &["plan", "apply", file.to_str().unwrap(), "--server", &server.base], &read);
    assert!(!refused.status.success(), "a read token applied a plan");
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("HTTP 403"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
}

/// `slope` with a clean environment (none of the developer's settings) and `SLOPE_TOKEN` set.
fn slope(dir: &Path, args: &[&str], token: &str) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_slope"));
    command.args(args).current_dir(dir);
    for (var, _) in std::env::vars() {
        if var.starts_with("SLOPE_") || var == "DATABASE_URL" {
            command.env_remove(var);
        }
    }
    command.env("SLOPE_TOKEN", token).env("SLOPE_LOG", "warn").output().unwrap()
}

/// A scratch folder with its own database, and `slope <args> --data-dir <it>` run in it.
struct Cli {
    scratch: Scratch,
}

impl Cli {
    fn new(label: &str) -> Cli {
        Cli { scratch: Scratch::new(&format!("plan-{label}")) }
    }

    fn run(&self, args: &[&str]) -> Output {
        let data = self.scratch.0.join("data");
        let mut command = Command::new(env!("CARGO_BIN_EXE_slope"));
        command.args(args).arg("--data-dir").arg(&data).current_dir(&self.scratch.0);
        for (var, _) in std::env::vars() {
            if var.starts_with("SLOPE_") || var == "DATABASE_URL" {
                command.env_remove(var);
            }
        }
        command.env("SLOPE_LOG", "warn").output().unwrap()
    }

    #[track_caller]
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(out.status.success(), "{args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    }

    #[track_caller]
    fn refused(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(!out.status.success(), "{args:?} succeeded: {}", String::from_utf8_lossy(&out.stdout));
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    #[track_caller]
    fn json(&self, args: &[&str]) -> Value {
        serde_json::from_str(&self.ok(args)).unwrap_or_else(|e| panic!("{args:?}: not JSON: {e}"))
    }

    fn file(&self, name: &str, text: &str) -> String {
        let path = self.scratch.0.join(name);
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    }
}
