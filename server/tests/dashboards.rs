//! Black-box tests of the squad dashboard API: each goal of a squad with its key result, the linked
//! metric's series and the forecast of the goal's measure at its end date.
//!
//! The metric is a pushed one whose points form a rising line, dated in the past (March and April
//! 2026), so that no answer depends on the day the tests run.

mod common;

use chrono::{Duration, NaiveDate};
use common::{Scratch, Server, key_result_fed_by, season_with_key_result};
use serde_json::{Value, json};

const METRIC: &str = "eval.f1";
const GOAL_ENDS: &str = "2026-05-31";

fn day(text: &str) -> NaiveDate {
    NaiveDate::parse_from_str(text, "%Y-%m-%d").unwrap_or_else(|e| panic!("{text:?} is not a date: {e}"))
}

fn number(value: &Value, what: &str) -> f64 {
    value.as_f64().unwrap_or_else(|| panic!("{what} should be a number, not {value}"))
}

fn id_of(entity: &Value) -> i64 {
    entity["id"].as_i64().unwrap_or_else(|| panic!("no id in {entity}"))
}

/// The first point's day, and the line the points follow (before their small alternating scatter).
const FIRST: &str = "2026-03-02";
fn line(days: i64) -> f64 {
    0.5 + 0.002 * days as f64
}

/// Twenty points three days apart along `line`, alternately a little above and below it.
async fn push_rising_line(server: &Server) {
    server
        .post("/api/v1/metrics", &json!({ "key": METRIC, "name": "Eval F1", "kind": "eval-score" }))
        .await
        .expect(201);
    let points: Vec<Value> = (0..20)
        .map(|i| {
            let days = 3 * i;
            let at = day(FIRST) + Duration::days(days);
            let scatter = if i % 2 == 0 { 0.003 } else { -0.003 };
            json!({ "at": format!("{at}T12:00:00Z"), "value": line(days) + scatter })
        })
        .collect();
    let series = server.post(&format!("/api/v1/metrics/{METRIC}/points"), &json!({ "points": points })).await;
    let series = series.expect(200);
    assert_eq!(series["points"].as_array().map(Vec::len), Some(20), "{series}");
}

/// A season, an objective, a key result fed by the metric (target 1: clearly missed) and a squad.
async fn plan(server: &Server) -> (i64, i64, i64) {
    let (season, key_result) = key_result_fed_by(server, METRIC).await;
    let squad = server
        .post("/api/v1/squads", &json!({ "name": "Drafts squad", "unit": "Clinical", "capacity": 12 }))
        .await
        .expect(201);
    (season, key_result, id_of(&squad))
}

async fn goal(server: &Server, squad: i64, key_result: i64, title: &str, measure: Value) -> i64 {
    let mut body = json!({
        "key_result_id": key_result,
        "title": title,
        "starts_on": "2026-04-20",
        "ends_on": GOAL_ENDS,
        "investment": "snapshot",
        "planned_capacity": 2,
    });
    for (k, v) in measure.as_object().expect("a measure is an object") {
        body[k] = v.clone();
    }
    id_of(&server.post(&format!("/api/v1/squads/{squad}/goals"), &body).await.expect(201))
}

fn goal_of(dashboard: &Value, id: i64) -> &Value {
    dashboard["goals"]
        .as_array()
        .and_then(|goals| goals.iter().find(|g| g["goal"]["id"] == id))
        .unwrap_or_else(|| panic!("no goal {id} on {dashboard}"))
}

#[tokio::test]
async fn forecasts_each_goal_from_its_metric_trend() {
    let scratch = Scratch::new("dashboards");
    let server = Server::start(&scratch.0, &[]);
    push_rising_line(&server).await;
    let (season, key_result, squad) = plan(&server).await;

    let beats = goal(
        &server,
        squad,
        key_result,
        "Beat 0.6",
        json!({ "kind": "increase-to", "start": 0.5, "target": 0.6, "metric": METRIC }),
    )
    .await;
    let misses = goal(
        &server,
        squad,
        key_result,
        "Reach 0.95",
        json!({ "kind": "increase-to", "start": 0.5, "target": 0.95, "metric": METRIC }),
    )
    .await;
    // A milestone goal without a metric of its own is forecast on its key result's metric and measure.
    let milestone = goal(&server, squad, key_result, "Ship the drafts", json!({ "kind": "milestone" })).await;

    let dashboard = server.get(&format!("/api/v1/squads/{squad}/dashboard?season={season}")).await.expect(200);
    assert_eq!(dashboard["squad"]["id"], squad, "{dashboard}");
    assert_eq!(dashboard["season"]["id"], season, "{dashboard}");
    assert_eq!(dashboard["goals"].as_array().map(Vec::len), Some(3), "{dashboard}");
    // The current season is the default.
    let current = server.get(&format!("/api/v1/squads/{squad}/dashboard")).await.expect(200);
    assert_eq!(current["goals"], dashboard["goals"], "the only season is the default");

    let expected = line((day(GOAL_ENDS) - day(FIRST)).num_days());
    for (id, probability_above) in [(beats, true), (misses, false), (milestone, false)] {
        let g = goal_of(&dashboard, id);
        assert_eq!(g["key_result"]["id"], key_result, "{g}");
        assert_eq!(g["series"]["metric"]["key"], METRIC, "{g}");
        assert_eq!(g["series"]["points"].as_array().map(Vec::len), Some(20), "{g}");
        let f = &g["forecast"];
        assert_eq!(f["on"], GOAL_ENDS, "{g}");
        let value = number(&f["value"], "the forecast value");
        let (low, high) = (number(&f["low"], "low"), number(&f["high"], "high"));
        assert!((value - expected).abs() < 0.01, "forecast {value}, the line gives {expected}: {f}");
        assert!(low < value && value < high, "the interval holds the value: {f}");
        assert!(high - low < 0.1, "twenty close points give a narrow interval: {f}");
        assert!(high - low > 0.005, "scattered points give an interval of some width: {f}");
        let p = number(&f["probability"], "the probability");
        if probability_above {
            assert!(p > 0.9, "the line clearly beats 0.6: {f}");
        } else {
            assert!(p < 0.1, "the line clearly misses the target: {f}");
        }
        assert!(f["summary"].as_str().is_some_and(|s| !s.is_empty()), "{f}");
    }
    assert_eq!(goal_of(&dashboard, milestone)["measure"]["kind"], "increase-to", "the key result's measure");
    assert_eq!(goal_of(&dashboard, beats)["measure"]["target"], 0.6, "the goal's own measure");

    // The page renders the same on the server: a chart per goal with its text alternatives.
    let page = server.get(&format!("/squads/{squad}/dashboard")).await;
    assert_eq!(page.status, 200, "{}", page.text);
    for needle in ["<svg", "<title", "<desc", "<table", "today", "Probability of reaching the target", "Beat 0.6"] {
        assert!(page.text.contains(needle), "the dashboard page shows {needle:?}: {}", page.text);
    }
    let board = server.get("/squads").await;
    assert!(
        board.text.contains(&format!("/squads/{squad}/dashboard")),
        "the board links the dashboard: {}",
        board.text
    );

    server.get("/api/v1/squads/999999/dashboard").await.expect(404);
    server.get(&format!("/api/v1/squads/{squad}/dashboard?season=999999")).await.expect(404);
}

#[tokio::test]
async fn goals_without_a_metric_have_no_forecast() {
    let scratch = Scratch::new("dashboards");
    let server = Server::start(&scratch.0, &[]);
    let (_, key_result) = season_with_key_result(&server, None).await;
    let squad = server
        .post("/api/v1/squads", &json!({ "name": "Quiet squad", "unit": "Clinical", "capacity": 4 }))
        .await
        .expect(201);
    let squad = id_of(&squad);
    let id = goal(&server, squad, key_result, "Unmeasured", json!({ "kind": "milestone" })).await;

    let dashboard = server.get(&format!("/api/v1/squads/{squad}/dashboard")).await.expect(200);
    let g = goal_of(&dashboard, id);
    assert_eq!((&g["series"], &g["forecast"]), (&Value::Null, &Value::Null), "{g}");
}

// ---- the season dashboard -----------------------------------------------------------------------

const QUALITY: &str = "agent.quality";

/// Fourteen daily points (1–14 March 2026) that rise for a week and then fall, each with a narrow 95 %
/// interval: a clear reversal for a metric the plan wants up.
async fn push_reversal(server: &Server) {
    server
        .post("/api/v1/metrics", &json!({ "key": QUALITY, "name": "Agent quality", "kind": "eval-score" }))
        .await
        .expect(201);
    let points: Vec<Value> = (0..14)
        .map(|d| {
            let value = if d < 7 { 0.50 + 0.01 * d as f64 } else { 0.56 - 0.012 * (d - 7) as f64 };
            let at = day("2026-03-01") + Duration::days(d);
            json!({ "at": format!("{at}T12:00:00Z"), "value": value, "ci_low": value - 0.005, "ci_high": value + 0.005 })
        })
        .collect();
    server.post(&format!("/api/v1/metrics/{QUALITY}/points"), &json!({ "points": points })).await.expect(200);
}

fn signals_of<'a>(dashboard: &'a Value, kind: &str) -> Vec<&'a Value> {
    dashboard["signals"].as_array().map(|s| s.iter().filter(|s| s["kind"] == kind).collect()).unwrap_or_default()
}

#[tokio::test]
async fn the_season_dashboard_raises_thesis_signals_that_a_leader_resolves() {
    let scratch = Scratch::new("season-dashboard");
    let server = Server::start(&scratch.0, &[]);
    push_reversal(&server).await;
    let (season, key_result) = key_result_fed_by(&server, QUALITY).await;
    let squad = id_of(
        &server
            .post("/api/v1/squads", &json!({ "name": "Bets", "unit": "Clinical", "capacity": 10 }))
            .await
            .expect(201),
    );
    let bet = server
        .post(
            &format!("/api/v1/squads/{squad}/goals"),
            &json!({
                "key_result_id": key_result, "title": "Agents ask instead of guessing",
                "starts_on": "2026-03-01", "ends_on": "2026-04-10", "investment": "slope",
                "challenges": "Agents must never interrupt the clinician",
                "kill_criteria": "Clinicians dismiss more than half of the questions",
                "planned_capacity": 3, "kind": "milestone", "status": "active",
            }),
        )
        .await
        .expect(201);
    goal(&server, squad, key_result, "Faster drafts", json!({ "kind": "milestone" })).await;
    let path = format!("/api/v1/seasons/{season}/dashboard");

    let dashboard = server.get(&path).await.expect(200);
    assert_eq!(dashboard["tree"]["season"]["id"], season, "{dashboard}");
    // Three of five planned person-weeks are the slope bet's.
    let share = number(&dashboard["tree"]["slope"]["overall"]["share"], "the slope share");
    assert!((share - 0.6).abs() < 1e-9, "3 of 5 person-weeks: {share}");
    let metric = &dashboard["metrics"][0];
    assert_eq!(metric["series"]["metric"]["key"], QUALITY, "{dashboard}");
    assert_eq!(metric["feeds"], json!(["Drafts accepted"]), "{metric}");
    assert_eq!(metric["good_direction"], 1.0, "{metric}");
    let reversal = &metric["reversal"];
    assert!(number(&reversal["earlier"]["ci_low"], "earlier low") > 0.0, "{reversal}");
    assert!(number(&reversal["recent"]["ci_high"], "recent high") < 0.0, "{reversal}");
    assert_eq!((&reversal["recent"]["from"], &reversal["recent"]["to"]), (&json!("2026-03-08"), &json!("2026-03-14")));
    let raised = signals_of(&dashboard, "metric-reversal");
    assert_eq!(raised.len(), 1, "one reversal raises one signal: {dashboard}");
    assert_eq!(raised[0]["subject"], QUALITY);
    assert!(raised[0]["summary"].as_str().is_some_and(|s| s.contains("Drafts accepted")), "{}", raised[0]);
    assert_eq!(raised[0]["resolved_at"], Value::Null);
    assert_eq!(dashboard["confidence"], json!([]), "no check-in has a confidence yet");

    // A check-in's confidence makes the confidence trend.
    server
        .post(
            &format!("/api/v1/key-results/{key_result}/check-ins"),
            &json!({ "value": 0.4, "confidence": 0.7, "author": "Lee" }),
        )
        .await
        .expect(201);
    // Killing the slope bet raises a second signal naming its belief and criteria; reading again raises
    // nothing twice.
    let mut killed = bet.clone();
    killed["status"] = json!("killed");
    let mut edit = json!({});
    for field in [
        "key_result_id",
        "title",
        "starts_on",
        "ends_on",
        "investment",
        "challenges",
        "kill_criteria",
        "planned_capacity",
        "status",
        "version",
    ] {
        edit[field] = killed[field].clone();
    }
    edit["kind"] = json!("milestone");
    server.put(&format!("/api/v1/squad-goals/{}", id_of(&bet)), &edit).await.expect(200);
    server.get(&path).await.expect(200);
    let dashboard = server.get(&path).await.expect(200);
    let confidence = &dashboard["confidence"];
    assert_eq!(confidence.as_array().map(Vec::len), Some(1), "{confidence}");
    assert_eq!((&confidence[0]["mean"], &confidence[0]["key_results"]), (&json!(0.7), &json!(1)));
    assert_eq!(signals_of(&dashboard, "metric-reversal").len(), 1, "{dashboard}");
    let killed = signals_of(&dashboard, "bet-killed");
    assert_eq!(killed.len(), 1, "{dashboard}");
    let text = killed[0]["summary"].as_str().unwrap_or_default();
    assert!(text.contains("Clinicians dismiss more than half") && text.contains("never interrupt"), "{text}");
    // The killed bet no longer counts towards the slope share.
    assert_eq!(dashboard["tree"]["slope"]["overall"]["share"], 0.0, "{dashboard}");

    // Resolving: a note is required, a read token may not, another season's address does not find it.
    let signal = id_of(signals_of(&dashboard, "metric-reversal")[0]);
    let resolve = format!("/api/v1/seasons/{season}/signals/{signal}/resolve");
    server.post(&resolve, &json!({ "note": "  " })).await.expect_invalid(&["note"]);
    let reader = common::create_token(&scratch.0, &[], "read");
    let refused = server
        .send(
            server.client.post(format!("{}{resolve}", server.base)).bearer_auth(&reader).json(&json!({"note": "no"})),
            "as a reader".into(),
        )
        .await;
    assert_eq!(refused.status, 403, "{}", refused.text);
    server
        .post(&format!("/api/v1/seasons/{}/signals/{signal}/resolve", season + 1000), &json!({ "note": "x" }))
        .await
        .expect(404);
    server.post(&format!("/api/v1/seasons/{season}/signals/999999/resolve"), &json!({ "note": "x" })).await.expect(404);

    let note = "The drop follows the March model swap; the thesis stands, the model is rolled back.";
    let resolved = server.post(&resolve, &json!({ "note": note })).await.expect(200);
    assert_eq!(resolved["resolution"], note, "{resolved}");
    assert!(resolved["resolved_by"].as_str().is_some_and(|b| b.starts_with("token:")), "{resolved}");
    assert!(resolved["resolved_at"].is_string(), "{resolved}");
    let again = server.post(&resolve, &json!({ "note": "a second opinion" })).await.expect_error(409, "conflict");
    assert!(
        again["error"]["message"].as_str().is_some_and(|m| m.contains("rolled back")),
        "the first note stands: {again}"
    );
    // Open ones come first; the resolved one keeps its note; it is on the audit trail.
    let dashboard = server.get(&path).await.expect(200);
    assert_eq!(dashboard["signals"][0]["kind"], "bet-killed", "{dashboard}");
    assert_eq!(dashboard["signals"][1]["resolution"], note, "{dashboard}");
    let trail = server.get(&format!("/api/v1/audit?entity=thesis_signal&id={signal}")).await.expect(200);
    assert_eq!(trail.as_array().map(Vec::len), Some(1), "{trail}");
    assert_eq!(trail[0]["after"]["resolution"], note, "{trail}");

    // The page shows the signals, the charts with text alternatives, and a form for the open one.
    let page = server.get(&format!("/seasons/{season}/dashboard")).await;
    assert_eq!(page.status, 200, "{}", page.text);
    for needle in [
        "Thesis signals",
        "1 open",
        "Clinicians dismiss more than half",
        "rolled back",
        "Resolve",
        "Slope allocation by unit and squad",
        "Confidence trend",
        "Agent quality",
        "trend reversed",
        "data-tip",
    ] {
        assert!(page.text.contains(needle), "the dashboard page shows {needle:?}: {}", page.text);
    }
    let season_page = server.get(&format!("/seasons/{season}")).await;
    assert!(season_page.text.contains(&format!("/seasons/{season}/dashboard")), "the season page links its dashboard");
    server.get("/api/v1/seasons/999999/dashboard").await.expect(404);
}
