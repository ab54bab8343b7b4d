//! Black-box tests of the squad dashboard API: each goal of a squad with its key result, the linked
//! metric's series and the forecast of the goal's measure at its end date.
//!
//! The metric is a pushed one whose points form a rising line ending today, and the goals end a month
//! from today: a goal's forecast is of a date still ahead, and an ended goal's outcome is tested apart
//! on points dated in the past (March and April 2026), so no answer depends on the day the tests run.

mod common;

use chrono::{Datelike, Duration, NaiveDate};
use common::{Scratch, Server, key_result_fed_by, season_with_key_result};
use serde_json::{Value, json};

const METRIC: &str = "eval.f1";

/// Today, as the server will see it (a test crossing midnight UTC would see a day more, which moves
/// nothing asserted here by more than the tolerances).
fn today() -> NaiveDate {
    chrono::Utc::now().date_naive()
}

/// The goals' end date: a month after the last point.
fn goal_ends() -> String {
    (today() + Duration::days(30)).to_string()
}

fn day(text: &str) -> NaiveDate {
    NaiveDate::parse_from_str(text, "%Y-%m-%d").unwrap_or_else(|e| panic!("{text:?} is not a date: {e}"))
}

fn number(value: &Value, what: &str) -> f64 {
    value.as_f64().unwrap_or_else(|| panic!("{what} should be a number, not {value}"))
}

fn id_of(entity: &Value) -> i64 {
    entity["id"].as_i64().unwrap_or_else(|| panic!("no id in {entity}"))
}

/// The first point's day (57 days ago, so the twentieth point three days apart is today), and the line
/// the points follow (before their small alternating scatter).
fn first() -> NaiveDate {
    today() - Duration::days(57)
}
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
            let at = first() + Duration::days(days);
            let scatter = if i % 2 == 0 { 0.003 } else { -0.003 };
            json!({ "at": format!("{at}T00:00:00Z"), "value": line(days) + scatter })
        })
        .collect();
    let series = server.post(&format!("/api/v1/metrics/{METRIC}/points"), &json!({ "points": points })).await;
    let series = series.expect(200);
    assert_eq!(series["points"].as_array().map(Vec::len), Some(20), "{series}");
}

/// A season running from two months ago to two months ahead, an objective in today's quarter and a key
/// result fed by `metric` (target 1: clearly missed): the common helper's season lies in the first half of
/// 2026, and a goal still running must lie inside its season.
async fn season_around_today(server: &Server, metric: &str) -> (i64, i64) {
    let season = server
        .post(
            "/api/v1/seasons",
            &json!({
                "name": "Loops now",
                "thesis": "Agents replace forms",
                "problems": ["Clinicians type too much"],
                "winning": "Half of all notes drafted by agents",
                "starts_on": (today() - Duration::days(60)).to_string(),
                "ends_on": (today() + Duration::days(60)).to_string(),
                "slope_target": 0.2,
            }),
        )
        .await
        .expect(201);
    let quarter = format!("{}-Q{}", today().year(), today().month0() / 3 + 1);
    let objective = server
        .post(
            &format!("/api/v1/seasons/{}/objectives", season["id"]),
            &json!({ "quarter": quarter, "title": "Clinicians trust the drafts", "commitment": "committed" }),
        )
        .await
        .expect(201);
    let key_result = server
        .post(
            &format!("/api/v1/objectives/{}/key-results", objective["id"]),
            &json!({ "title": "Drafts accepted", "kind": "increase-to", "start": 0, "target": 1, "metric": metric }),
        )
        .await
        .expect(201);
    (id_of(&season), id_of(&key_result))
}

/// A season, an objective, a key result fed by the metric (target 1: clearly missed) and a squad.
async fn plan(server: &Server) -> (i64, i64, i64) {
    let (season, key_result) = season_around_today(server, METRIC).await;
    let squad = server
        .post("/api/v1/squads", &json!({ "name": "Drafts squad", "unit": "Clinical", "capacity": 12 }))
        .await
        .expect(201);
    (season, key_result, id_of(&squad))
}

/// A goal of the common helper's season (the first half of 2026), ended before today.
async fn goal(server: &Server, squad: i64, key_result: i64, title: &str, measure: Value) -> i64 {
    goal_between(server, squad, key_result, title, measure, ("2026-04-20", "2026-05-31")).await
}

/// A goal running from ten days ago to a month ahead, in [`season_around_today`]'s season.
async fn running_goal(server: &Server, squad: i64, key_result: i64, title: &str, measure: Value) -> i64 {
    let (starts, ends) = ((today() - Duration::days(10)).to_string(), goal_ends());
    goal_between(server, squad, key_result, title, measure, (&starts, &ends)).await
}

async fn goal_between(
    server: &Server,
    squad: i64,
    key_result: i64,
    title: &str,
    measure: Value,
    (starts_on, ends_on): (&str, &str),
) -> i64 {
    let mut body = json!({
        "key_result_id": key_result,
        "title": title,
        "starts_on": starts_on,
        "ends_on": ends_on,
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

    let beats = running_goal(
        &server,
        squad,
        key_result,
        "Beat 0.6",
        json!({ "kind": "increase-to", "start": 0.5, "target": 0.6, "metric": METRIC }),
    )
    .await;
    let misses = running_goal(
        &server,
        squad,
        key_result,
        "Reach 0.95",
        json!({ "kind": "increase-to", "start": 0.5, "target": 0.95, "metric": METRIC }),
    )
    .await;
    // A milestone goal without a metric of its own is forecast on its key result's metric and measure.
    let milestone = running_goal(&server, squad, key_result, "Ship the drafts", json!({ "kind": "milestone" })).await;

    let dashboard = server.get(&format!("/api/v1/squads/{squad}/dashboard?season={season}")).await.expect(200);
    assert_eq!(dashboard["squad"]["id"], squad, "{dashboard}");
    assert_eq!(dashboard["season"]["id"], season, "{dashboard}");
    assert_eq!(dashboard["goals"].as_array().map(Vec::len), Some(3), "{dashboard}");
    // The current season is the default.
    let current = server.get(&format!("/api/v1/squads/{squad}/dashboard")).await.expect(200);
    assert_eq!(current["goals"], dashboard["goals"], "the only season is the default");

    let expected = line((day(&goal_ends()) - first()).num_days());
    for (id, probability_above) in [(beats, true), (misses, false), (milestone, false)] {
        let g = goal_of(&dashboard, id);
        assert_eq!(g["key_result"]["id"], key_result, "{g}");
        assert_eq!(g["series"]["metric"]["key"], METRIC, "{g}");
        assert_eq!(g["series"]["points"].as_array().map(Vec::len), Some(20), "{g}");
        let f = &g["forecast"];
        assert_eq!(f["on"], goal_ends(), "{g}");
        assert_eq!(g["outcome"], Value::Null, "a goal still running has no outcome: {g}");
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

/// A goal that ended in the past shows its outcome, the last reading by its end date, and no forecast;
/// a metric that fell for months and has since recovered is forecast from where it is now.
#[tokio::test]
async fn ended_goals_show_their_outcome_and_forecasts_follow_the_present() {
    let scratch = Scratch::new("dashboards");
    let server = Server::start(&scratch.0, &[]);
    server
        .post("/api/v1/metrics", &json!({ "key": METRIC, "name": "Eval F1", "kind": "eval-score" }))
        .await
        .expect(201);
    // Daily for 120 days up to today: from 0.60 down to 0.30 over 100 days, then back up to about 0.56.
    let points: Vec<Value> = (0..120)
        .map(|i| {
            let at = today() - Duration::days(119 - i);
            let value = if i < 100 { 0.60 - 0.003 * i as f64 } else { 0.30 + 0.013 * (i - 99) as f64 };
            let scatter = if i % 2 == 0 { 0.004 } else { -0.004 };
            json!({ "at": format!("{at}T00:00:00Z"), "value": value + scatter })
        })
        .collect();
    server.post(&format!("/api/v1/metrics/{METRIC}/points"), &json!({ "points": points })).await.expect(200);
    let (season, key_result, squad) = plan(&server).await;
    let running = running_goal(
        &server,
        squad,
        key_result,
        "Hold 0.5",
        json!({ "kind": "increase-to", "start": 0.3, "target": 0.5, "metric": METRIC }),
    )
    .await;
    // A goal of the same season that ended 20 days ago, when the metric stood near 0.30.
    let ended = server
        .post(
            &format!("/api/v1/squads/{squad}/goals"),
            &json!({
                "key_result_id": key_result, "title": "Reach 0.45 by November",
                "starts_on": (today() - Duration::days(55)).to_string(),
                "ends_on": (today() - Duration::days(20)).to_string(),
                "investment": "snapshot", "planned_capacity": 2,
                "kind": "increase-to", "start": 0.4, "target": 0.45, "metric": METRIC,
            }),
        )
        .await
        .expect(201);
    let ended = id_of(&ended);

    let dashboard = server.get(&format!("/api/v1/squads/{squad}/dashboard?season={season}")).await.expect(200);
    let g = goal_of(&dashboard, ended);
    assert_eq!(g["forecast"], Value::Null, "an ended goal is not forecast: {g}");
    let o = &g["outcome"];
    assert_eq!(o["on"], (today() - Duration::days(20)).to_string(), "{o}");
    assert_eq!(o["met"], false, "{o}");
    assert_eq!(o["reading"]["on"], (today() - Duration::days(20)).to_string(), "the last reading by the end: {o}");
    assert!(o["summary"].as_str().is_some_and(|s| s.contains("missed")), "{o}");

    let g = goal_of(&dashboard, running);
    assert_eq!(g["outcome"], Value::Null, "{g}");
    let f = &g["forecast"];
    let value = number(&f["value"], "the forecast value");
    assert!(value > 0.5, "forecast from the recovery, not the months of decline: {f}");
    assert_eq!(f["outlook"], "on-track", "{f}");
    assert!(number(&f["latest"]["value"], "the latest reading") > 0.55, "{f}");

    let page = server.get(&format!("/squads/{squad}/dashboard")).await;
    assert_eq!(page.status, 200, "{}", page.text);
    assert!(page.text.contains("goal-outcome missed"), "the page shows the ended goal's outcome: {}", page.text);
}

/// The season dashboard's outlook: each key result at its quarter's end, from its metric or its
/// check-ins, and the objective and season rolled up by simulation.
#[tokio::test]
async fn the_season_dashboard_forecasts_each_key_result_and_rolls_them_up() {
    let scratch = Scratch::new("dashboards");
    let server = Server::start(&scratch.0, &[]);
    push_rising_line(&server).await;
    let (season, fed) = season_around_today(&server, METRIC).await;
    let objective = server.get(&format!("/api/v1/key-results/{fed}")).await.expect(200)["key_result"]["objective_id"]
        .as_i64()
        .expect("an objective id");
    // A second key result, not fed by a metric, with one check-in: too little for a trend.
    let checked = server
        .post(
            &format!("/api/v1/objectives/{objective}/key-results"),
            &json!({ "title": "Clinics onboarded", "kind": "increase-to", "start": 0, "target": 10 }),
        )
        .await
        .expect(201);
    let checked = id_of(&checked);
    server
        .post(&format!("/api/v1/key-results/{checked}/check-ins"), &json!({ "value": 4, "author": "Ana" }))
        .await
        .expect(201);

    let dashboard = server.get(&format!("/api/v1/seasons/{season}/dashboard")).await.expect(200);
    let outlook = &dashboard["outlook"];
    let kr = |id: i64| {
        outlook["key_results"]
            .as_array()
            .and_then(|all| all.iter().find(|k| k["key_result_id"] == id))
            .unwrap_or_else(|| panic!("no key result {id} in {outlook}"))
            .clone()
    };
    let quarter_end = {
        let (year, q) = (today().year(), today().month0() / 3 + 1);
        let next =
            if q == 4 { NaiveDate::from_ymd_opt(year + 1, 1, 1) } else { NaiveDate::from_ymd_opt(year, 3 * q + 1, 1) };
        next.expect("a valid date").pred_opt().expect("a day before")
    };
    let f = kr(fed);
    assert_eq!((&f["evidence"], &f["ends_on"]), (&json!("metric"), &json!(quarter_end.to_string())), "{f}");
    let forecast = &f["forecast"];
    let value = number(&forecast["value"], "the forecast value");
    let expected = line((quarter_end - first()).num_days());
    assert!((value - expected).abs() < 0.01, "forecast {value}, the line gives {expected}: {forecast}");
    assert!(number(&forecast["probability"], "the probability") < 0.05, "target 1 is far off: {forecast}");
    assert_eq!(outlook["least_likely"], json!([fed]), "{outlook}");
    // The drawn score of the fed key result is about its forecast value (start 0, target 1).
    assert!((number(&f["expected_score"], "expected score") - value).abs() < 0.02, "{f}");

    let c = kr(checked);
    assert_eq!(
        (&c["evidence"], &c["forecast"], &c["outcome"]),
        (&json!("check-ins"), &Value::Null, &Value::Null),
        "{c}"
    );
    assert!((number(&c["expected_score"], "expected score") - 0.4).abs() < 1e-9, "its current score: {c}");

    let o = &outlook["objectives"][0]["score"];
    let mean = (number(&f["expected_score"], "fed") + number(&c["expected_score"], "checked")) / 2.0;
    assert!((number(&o["expected"], "the objective's expected score") - mean).abs() < 1e-9, "{o}");
    assert_eq!(o["probability"], 0.0, "a committed objective needs both key results all the way: {o}");
    assert_eq!(outlook["season"], *o, "one objective is the season: {outlook}");
    assert_eq!(outlook["draws"], 4000);

    let page = server.get(&format!("/seasons/{season}/dashboard")).await;
    assert_eq!(page.status, 200, "{}", page.text);
    for needle in ["Where the season is heading", "Least likely to land", "too little evidence (check-ins)"] {
        assert!(page.text.contains(needle), "the dashboard shows {needle:?}: {}", page.text);
    }
    // Each key result's own page says the same.
    let page = server.get(&format!("/key-results/{fed}")).await;
    assert!(page.text.contains(&format!("Forecast for {quarter_end}: off track")), "{}", page.text);
    let page = server.get(&format!("/key-results/{checked}")).await;
    assert!(
        page.text.contains("No forecast for") && page.text.contains("1 so far, from its check-ins"),
        "{}",
        page.text
    );
}

/// Once a season is closed its key results have ended, and the check-ins' confidence is scored against
/// whether each was met.
#[tokio::test]
async fn a_closed_season_scores_the_confidence_of_its_check_ins() {
    let scratch = Scratch::new("dashboards");
    let server = Server::start(&scratch.0, &[]);
    let (season, _) = season_around_today(&server, "").await;
    let before = server.get(&format!("/api/v1/seasons/{season}/dashboard")).await.expect(200);
    assert_eq!(before["calibration"]["season"], Value::Null, "nothing has ended: {}", before["calibration"]);
    let objective =
        server.get(&format!("/api/v1/seasons/{season}/tree")).await.expect(200)["objectives"][0]["objective"]["id"]
            .as_i64()
            .expect("an objective id");
    let squad = server
        .post("/api/v1/squads", &json!({ "name": "Drafts squad", "unit": "Clinical", "capacity": 6 }))
        .await
        .expect(201);
    let squad = id_of(&squad);
    // Met, said 80 % and then 90 %; missed, said 70 %: the squad's goal ladders to the missed one.
    for (title, value, confidences) in [("Clinics onboarded", 10, vec![0.8, 0.9]), ("Notes drafted", 3, vec![0.7])] {
        let kr = server
            .post(
                &format!("/api/v1/objectives/{objective}/key-results"),
                &json!({ "title": title, "kind": "increase-to", "start": 0, "target": 10 }),
            )
            .await
            .expect(201);
        if title == "Notes drafted" {
            running_goal(&server, squad, id_of(&kr), "Draft the notes", json!({ "kind": "milestone" })).await;
        }
        for confidence in confidences {
            server
                .post(
                    &format!("/api/v1/key-results/{}/check-ins", id_of(&kr)),
                    &json!({ "value": value, "confidence": confidence, "author": "Ana" }),
                )
                .await
                .expect(201);
        }
    }
    // An open season has no review yet.
    server.get(&format!("/api/v1/seasons/{season}/review")).await.expect(409);
    let transition = format!("/api/v1/seasons/{season}/transition");
    let version = server.get(&format!("/api/v1/seasons/{season}")).await.expect(200)["version"].clone();
    let active = server.post(&transition, &json!({ "version": version, "to": "active" })).await.expect(200);
    let retrospective = "Onboarding landed; drafting did not, and we knew it late.";
    server
        .post(&transition, &json!({ "version": active["version"], "to": "closed", "retrospective": retrospective }))
        .await
        .expect(200);

    let dashboard = server.get(&format!("/api/v1/seasons/{season}/dashboard")).await.expect(200);
    let c = &dashboard["calibration"];
    // The first key result of the helper (no check-ins) and the two above have ended.
    assert_eq!(c["ended_key_results"], 3, "{c}");
    assert_eq!(c["check_ins"], 3, "{c}");
    // ((0.8 − 1)² + (0.9 − 1)² + (0.7 − 0)²) / 3 = (0.04 + 0.01 + 0.49) / 3 = 0.18.
    let brier = number(&c["season"]["brier"], "the season's Brier score");
    assert!((brier - 0.18).abs() < 1e-9, "{c}");
    assert_eq!(c["by_person"][0]["subject"], "Ana", "{c}");
    assert_eq!(c["reliability"].as_array().map(Vec::len), Some(5), "{c}");
    assert_eq!(c["reliability"][4]["count"], 2, "0.8 and 0.9 share the top bin: {c}");
    // The helper's key result was never checked in: silent.
    assert!((number(&c["silent_share"], "the silent share") - 1.0 / 3.0).abs() < 1e-9, "{c}");

    let page = server.get(&format!("/seasons/{season}/dashboard")).await;
    assert!(page.text.contains("Brier score 0.180"), "the page shows the score: {}", page.text);
    assert!(page.text.contains("Reliability diagram"), "{}", page.text);
    assert_eq!(c["by_squad"][0]["subject"], "Drafts squad", "{c}");

    // The closed season's review carries the same calibration, each objective with its key results,
    // and the retrospective; its Markdown export says the same.
    let review = server.get(&format!("/api/v1/seasons/{season}/review")).await.expect(200);
    assert_eq!(review["calibration"], *c, "{review}");
    assert_eq!(review["season"]["retrospective"], retrospective, "{review}");
    let titles: Vec<&str> =
        review["objectives"][0]["key_results"].as_array().unwrap().iter().filter_map(|k| k["title"].as_str()).collect();
    assert_eq!(titles, ["Drafts accepted", "Clinics onboarded", "Notes drafted"], "{review}");
    let md = server.get(&format!("/api/v1/seasons/{season}/review.md")).await;
    assert_eq!(md.status, 200, "{}", md.text);
    for needle in [
        "# Season review: Loops now",
        "| Clinics onboarded | 0 → 10 | 10 | 100 % |",
        "Brier score 0.180",
        retrospective,
    ] {
        assert!(md.text.contains(needle), "the Markdown has {needle:?}:\n{}", md.text);
    }
    let page = server.get(&format!("/seasons/{season}/review")).await;
    assert_eq!(page.status, 200, "{}", page.text);
    assert!(page.text.contains("Loops now — review") && page.text.contains(retrospective), "{}", page.text);

    // The squad's dashboard scores only the key result its goal ladders to: (0.7 − 0)² = 0.49.
    let board = server.get(&format!("/api/v1/squads/{squad}/dashboard?season={season}")).await.expect(200);
    let sc = &board["calibration"];
    assert_eq!((&sc["ended_key_results"], &sc["check_ins"]), (&json!(1), &json!(1)), "{sc}");
    assert!((number(&sc["season"]["brier"], "the squad's Brier score") - 0.49).abs() < 1e-9, "{sc}");
    let page = server.get(&format!("/squads/{squad}/dashboard?season={season}")).await;
    assert!(page.text.contains("Brier score 0.490"), "the squad page shows its score: {}", page.text);
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
            json!({ "at": format!("{at}T00:00:00Z"), "value": value, "ci_low": value - 0.005, "ci_high": value + 0.005 })
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
