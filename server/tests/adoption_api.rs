//! Black-box tests of the exec adoption dashboard, `GET /api/v1/adoption`: units reach stages from the
//! events they send and the plan's key results, warnings name loops that nobody owns or measures, and
//! the trend recomputes the activity windows at each weekly date.
//!
//! The dashboard looks at the last weeks before now, so unlike the other API tests these events are
//! dated relative to the time the test runs.

mod common;

use chrono::{Datelike, Duration, NaiveDate, Utc};
use common::{Reply, Scratch, Server, admin_client, ndjson};
use serde_json::{Value, json};

const NDJSON: &str = "application/x-ndjson";

/// An event `days_ago` days before now, of `user` in `unit`, shown `suggested` characters.
fn event(id: &str, days_ago: i64, user: &str, unit: &str, suggested: u64) -> Value {
    let ts = Utc::now() - Duration::days(days_ago) - Duration::minutes(5);
    json!({
        "event_id": id,
        "ts": ts.to_rfc3339(),
        "user_id": user,
        "variant": "a",
        "suggested_chars": suggested,
        "accepted_chars": 0,
        "unit": unit,
    })
}

fn items(value: &Value) -> &Vec<Value> {
    value.as_array().unwrap_or_else(|| panic!("not an array: {value}"))
}

fn unit<'a>(report: &'a Value, name: &str) -> &'a Value {
    items(&report["units"]).iter().find(|u| u["unit"] == name).unwrap_or_else(|| panic!("no unit {name}: {report}"))
}

/// The warnings of one kind about one loop.
fn warnings<'a>(report: &'a Value, kind: &str, loop_key: &str) -> Vec<&'a Value> {
    items(&report["warnings"])
        .iter()
        .filter(|w| w["kind"] == kind && w["subject"] == json!({ "kind": "loop", "key": loop_key }))
        .collect()
}

fn counts(report: &Value, i: usize) -> Value {
    report["trend"][i]["counts"].clone()
}

/// The first and last day of the quarter holding `day`, and its name (`2027-Q1`).
fn quarter(day: NaiveDate) -> (NaiveDate, NaiveDate, String) {
    let q = (day.month0() / 3) as i32;
    let start = NaiveDate::from_ymd_opt(day.year(), (q * 3 + 1) as u32, 1).expect("a quarter's first day");
    let next = if q == 3 {
        NaiveDate::from_ymd_opt(day.year() + 1, 1, 1)
    } else {
        NaiveDate::from_ymd_opt(day.year(), ((q + 1) * 3 + 1) as u32, 1)
    };
    let end = next.expect("the next quarter's first day") - Duration::days(1);
    (start, end, format!("{}-Q{}", day.year(), q + 1))
}

#[tokio::test]
async fn units_climb_stages_from_their_evidence_and_warnings_name_what_is_unmeasured() {
    let scratch = Scratch::new("adoption");
    let server = Server::start(&scratch.0, &[]);

    // Nothing yet: no units and no warnings, but six dated points of trend and the rules stated.
    let empty = server.get("/api/v1/adoption").await.expect(200);
    assert_eq!((items(&empty["units"]).len(), items(&empty["warnings"]).len()), (0, 0), "{empty}");
    assert_eq!(items(&empty["trend"]).len(), 6, "{empty}");
    assert!(items(&empty["trend"]).iter().all(|t| t["counts"] == json!([0, 0, 0, 0])), "{empty}");
    assert!(items(&empty["statements"]).iter().any(|s| s["rule"].as_str().unwrap().starts_with("At least 50 %")));
    assert!(empty["trend_method"].as_str().unwrap().contains("as they are now"), "{empty}");

    // Care: four people, all shown suggestions two days ago. Billing, through another loop: three people
    // active 40 days ago and one seen three days ago who was shown nothing.
    let notes = ndjson(&[
        event("n1", 2, "u1", "Care", 40),
        event("n2", 2, "u2", "Care", 40),
        event("n3", 2, "u3", "Care", 40),
        event("n4", 2, "u4", "Care", 40),
    ]);
    server.ingest("notes", &[("Content-Type", NDJSON)], notes).await.expect(201);
    let triage = ndjson(&[
        event("t1", 40, "b1", "Billing", 40),
        event("t2", 40, "b2", "Billing", 40),
        event("t3", 40, "b3", "Billing", 40),
        event("t4", 3, "b4", "Billing", 0),
    ]);
    server.ingest("triage", &[("Content-Type", NDJSON)], triage).await.expect(201);

    let report = server.get("/api/v1/adoption").await.expect(200);
    let care = unit(&report, "Care");
    assert_eq!((care["stage"].as_u64(), care["stage_label"].as_str()), (Some(1), Some("AI fluency")), "{care}");
    assert!(care["reasons"][0].as_str().unwrap().contains("4 of 4 people (100 %)"), "{care}");
    assert!(care["missing"].as_str().unwrap().starts_with("Process AI needs"), "{care}");
    assert_eq!(
        (care["evidence"]["people_seen_12w"].as_u64(), care["evidence"]["active_ai_users_4w"].as_u64()),
        (Some(4), Some(4))
    );
    assert_eq!(care["evidence"]["loops"][0]["key"], "notes", "a loop serves the units its events name: {care}");
    let billing = unit(&report, "Billing");
    assert_eq!(billing["stage"], 0, "{billing}");
    assert!(billing["missing"].as_str().unwrap().contains("0 of 4 people (0 %)"), "{billing}");

    // Neither loop serves a key result, has an owner or has ever been evaluated.
    for loop_key in ["notes", "triage"] {
        for kind in ["ai-for-ais-sake", "too-many-projects", "no-measurement"] {
            assert_eq!(warnings(&report, kind, loop_key).len(), 1, "{kind} for {loop_key}: {report}");
        }
    }
    let unmeasured = warnings(&report, "no-measurement", "notes")[0];
    assert_eq!(unmeasured["evidence"], json!(["Loop notes: the champion has never been evaluated"]), "{unmeasured}");

    // The trend, oldest first: 35 days ago Billing's three were active and Care had no events yet; a
    // week ago Billing's activity had left the 4-week window and Care's was still to come; now Care is
    // fluent and Billing is not.
    let trend = items(&report["trend"]);
    assert_eq!(trend.len(), 6);
    let as_of = report["as_of"].as_str().expect("a time");
    assert_eq!(trend[5]["on"].as_str(), as_of.get(..10), "the last date is now: {report}");
    assert_eq!(
        (counts(&report, 0), counts(&report, 4), counts(&report, 5)),
        (json!([1, 1, 0, 0]), json!([2, 0, 0, 0]), json!([1, 1, 0, 0])),
        "{report}"
    );

    // A plan: the active season's key result in minutes, fed by a live metric of the notes loop, and a
    // squad of Care with a goal under it.
    let today = Utc::now().date_naive();
    let (start, end, quarter) = quarter(today);
    let season = server
        .post(
            "/api/v1/seasons",
            &json!({
                "name": "Adoption season",
                "thesis": "Agents draft the notes",
                "problems": ["Notes take too long"],
                "winning": "Notes take minutes",
                "starts_on": start.to_string(),
                "ends_on": end.to_string(),
                "slope_target": 0.2,
            }),
        )
        .await
        .expect(201);
    server
        .post(
            &format!("/api/v1/seasons/{}/transition", season["id"]),
            &json!({ "version": season["version"], "to": "active" }),
        )
        .await
        .expect(200);
    let objective = server
        .post(
            &format!("/api/v1/seasons/{}/objectives", season["id"]),
            &json!({ "quarter": quarter, "title": "Notes are quick", "commitment": "committed" }),
        )
        .await
        .expect(201);
    let metric = json!({ "key": "notes-minutes", "name": "Minutes per note", "kind": "custom", "loop": "notes", "granularity": "day" });
    server.post("/api/v1/metrics", &metric).await.expect(201);
    let key_result = server
        .post(
            &format!("/api/v1/objectives/{}/key-results", objective["id"]),
            &json!({ "title": "Minutes per note", "kind": "decrease-to", "start": 20, "target": 8, "unit": "min", "metric": "notes-minutes" }),
        )
        .await
        .expect(201);
    let point = json!({ "points": [{ "at": (Utc::now() - Duration::minutes(1)).to_rfc3339(), "value": 12.5 }] });
    server.post("/api/v1/metrics/notes-minutes/points", &point).await.expect(200);
    let squad =
        server.post("/api/v1/squads", &json!({ "name": "Scribes", "unit": "Care", "capacity": 8 })).await.expect(201);
    server
        .post(
            &format!("/api/v1/squads/{}/goals", squad["id"]),
            &json!({
                "key_result_id": key_result["id"],
                "title": "Drafts from dictation",
                "starts_on": start.to_string(),
                "ends_on": (start + Duration::days(28)).to_string(),
                "investment": "snapshot",
                "planned_capacity": 4,
                "kind": "milestone",
                "status": "active",
            }),
        )
        .await
        .expect(201);

    let report = server.get("/api/v1/adoption").await.expect(200);
    assert_eq!(report["season"], "Adoption season", "{report}");
    let care = unit(&report, "Care");
    assert_eq!(care["stage"], 2, "{care}");
    assert!(
        care["reasons"][1]
            .as_str()
            .unwrap()
            .contains("“Minutes per note” (min) is measured in time and fed by the live metric notes-minutes"),
        "{care}"
    );
    assert!(care["missing"].as_str().unwrap().starts_with("Growth inflection needs"), "{care}");
    let notes = &care["evidence"]["loops"][0];
    assert_eq!((notes["key"].as_str(), notes["owner_squad"].as_str()), (Some("notes"), Some("Scribes")), "{notes}");
    // The notes loop now serves a measured key result and has an owner; it is still never evaluated.
    assert!(warnings(&report, "ai-for-ais-sake", "notes").is_empty(), "{report}");
    assert!(warnings(&report, "too-many-projects", "notes").is_empty(), "{report}");
    assert_eq!(warnings(&report, "no-measurement", "notes").len(), 1, "{report}");
    assert_eq!(warnings(&report, "ai-for-ais-sake", "triage").len(), 1, "{report}");

    // An eval score of the loop counts as its last eval.
    let eval = json!({ "key": "notes-eval", "name": "Notes eval", "kind": "eval-score", "loop": "notes", "granularity": "day" });
    server.post("/api/v1/metrics", &eval).await.expect(201);
    let point = json!({ "points": [{ "at": (Utc::now() - Duration::days(3)).to_rfc3339(), "value": 0.8 }] });
    server.post("/api/v1/metrics/notes-eval/points", &point).await.expect(200);
    let report = server.get("/api/v1/adoption").await.expect(200);
    assert!(warnings(&report, "no-measurement", "notes").is_empty(), "{report}");
    let notes = &unit(&report, "Care")["evidence"]["loops"][0];
    assert!(notes["last_eval_at"].is_string(), "{notes}");
}

/// Purchases of `customers` customers of `unit`, acquired over the 30 weeks before now, each buying at a
/// weekly rate of its own (exponential waits) and leaving after a purchase with a chance of its own; from
/// `boosted_from` on, at `boost` times its rate. A fixed generator per unit, so the same customers each run.
fn purchases(unit: &str, customers: usize, boosted_from: chrono::DateTime<Utc>, boost: f64) -> Vec<Value> {
    let mut state = unit.bytes().fold(11u64, |h, b| h.wrapping_mul(31).wrapping_add(b as u64));
    let mut next = move || {
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (state >> 11) as f64 / (1u64 << 53) as f64
    };
    let now = Utc::now() - Duration::minutes(10);
    let start = now - Duration::weeks(30);
    let mut rows = vec![];
    for c in 0..customers {
        let (rate, leave, spend) = (0.3 + 0.4 * next(), 0.02 + 0.08 * next(), 40.0 + 60.0 * next());
        let mut ts = start + Duration::minutes((next() * 30.0 * 7.0 * 1440.0) as i64);
        let mut n = 0;
        while ts < now {
            rows.push(json!({
                "event_id": format!("{unit}-{c}-{n}"),
                "customer_id": format!("{unit}-{c}"),
                "ts": ts.to_rfc3339(),
                "amount": (spend * (0.6 + 0.8 * next()) * 100.0).round() / 100.0,
                "unit": unit,
            }));
            n += 1;
            if next() < leave {
                break;
            }
            let weekly = if ts >= boosted_from { rate * boost } else { rate };
            ts += Duration::minutes((-(next().max(1e-12)).ln() / weekly * 7.0 * 1440.0) as i64);
        }
    }
    rows
}

/// Stage 3 through the lifetime value of one unit's customers: an `ltv` metric cut by a unit that a loop
/// serves feeds that unit's key result (process AI) and, compared before and after the day the unit
/// took the loop up, gives its growth lift. Both count for that unit alone, not for the other unit the
/// same loop serves.
#[tokio::test]
async fn a_units_customer_value_lifting_after_it_took_a_loop_up_is_growth_for_that_unit_only() {
    let scratch = Scratch::new("adoption-growth");
    let server = Server::start(&scratch.0, &[]);
    // Care took the notes loop up 35 days ago, Billing 10 days ago; both are fluent. Billing's customers,
    // not yet served when Care took it up, are what Care's are compared with.
    let mut events = vec![];
    for (unit, users, took_up) in [("Care", ["c1", "c2"], 35), ("Billing", ["b1", "b2"], 10)] {
        for user in users {
            events.push(event(&format!("{user}-first"), took_up, user, unit, 40));
            events.push(event(&format!("{user}-now"), 2, user, unit, 40));
        }
    }
    server.ingest("notes", &[("Content-Type", NDJSON)], ndjson(&events)).await.expect(201);
    let uptake = Utc::now() - Duration::days(35) - Duration::minutes(5);

    // The lifetime value of each unit's customers, and a key result in money fed by Care's.
    for unit in ["Care", "Billing"] {
        let key = format!("{}-ltv", unit.to_lowercase());
        let metric = json!({ "key": key, "name": format!("{unit} customers' LTV"), "kind": "ltv", "unit": unit });
        server.post("/api/v1/metrics", &metric).await.expect(201);
    }
    let today = Utc::now().date_naive();
    let (start, end, quarter) = quarter(today);
    let season = json!({
        "name": "Growth season", "thesis": "Notes sell seats", "problems": ["Churn"], "winning": "Seats grow",
        "starts_on": start.to_string(), "ends_on": end.to_string(), "slope_target": 0.2,
    });
    let season = server.post("/api/v1/seasons", &season).await.expect(201);
    let to_active = json!({ "version": season["version"], "to": "active" });
    server.post(&format!("/api/v1/seasons/{}/transition", season["id"]), &to_active).await.expect(200);
    let objective = json!({ "quarter": quarter, "title": "Practices buy more", "commitment": "committed" });
    let objective = server.post(&format!("/api/v1/seasons/{}/objectives", season["id"]), &objective).await.expect(201);
    let kr = json!({ "title": "Care customers' LTV", "kind": "increase-to", "start": 100, "target": 200, "unit": "USD", "metric": "care-ltv" });
    server.post(&format!("/api/v1/objectives/{}/key-results", objective["id"]), &kr).await.expect(201);

    // Care's customers buy three times as often since Care took the loop up; Billing's as they always did.
    // The effect and the numbers are large on purpose: the test is of the attribution, and a lift near the
    // noise of weekly refits would make its interval cross zero on some days (purchases are dated, and
    // where "now" falls in the week moves them between weeks).
    let mut rows = purchases("Care", 600, uptake, 3.0);
    rows.extend(purchases("Billing", 600, uptake, 1.0));
    let request = server
        .client
        .post(format!("{}/api/v1/transactions", server.base))
        .header("Content-Type", NDJSON)
        .body(ndjson(&rows));
    let ack = server.send(request, "POST /api/v1/transactions".to_owned()).await.expect(201);
    assert!(items(&ack["metrics_updated"]).contains(&json!("care-ltv")), "{ack}");

    let report = server.get("/api/v1/adoption").await.expect(200);
    let care = unit(&report, "Care");
    assert_eq!(care["stage"], 3, "{care}");
    let growth = care["reasons"][2].as_str().unwrap();
    assert!(growth.contains("LTV lift on metric care-ltv (the customers of Care)"), "{growth}");
    assert!(growth.contains("difference in differences against the other units' customers"), "{growth}");
    let day = uptake.date_naive();
    assert!(growth.contains(&format!("around Care's first event in the loop on {day}")), "{growth}");
    let lift = &care["evidence"]["loops"][0]["lifts"][0];
    assert_eq!((lift["unit"].as_str(), lift["metric"].as_str()), (Some("Care"), Some("care-ltv")), "{lift}");
    // Printed so that a run with --nocapture shows how far above zero the interval lies.
    eprintln!("Care's lift: {lift}");
    assert!(lift["low"].as_f64().unwrap() > 0.0, "{lift}");

    // The same loop serves Billing, but Care's key result and lift are Care's: Billing is fluent, no more.
    let billing = unit(&report, "Billing");
    assert_eq!(billing["stage"], 1, "{billing}");
    let notes = &billing["evidence"]["loops"][0];
    assert_eq!(notes["key_results"], json!([]), "{notes}");
    assert!(items(&notes["lifts"]).iter().all(|l| l["unit"] == "Billing"), "only Billing's own: {notes}");
}

/// A unit's headcount, set by an admin through `PUT /api/v1/units`, is what the fluency share is taken
/// over; without one the people seen in events are, and the next step says so. Bad headcounts are refused
/// by field and change nothing.
#[tokio::test]
async fn a_headcount_is_the_fluency_denominator() {
    let scratch = Scratch::new("adoption-headcount");
    let server = Server::start(&scratch.0, &[]);
    // Wards: three people seen, all shown suggestions a day ago.
    let wards = ndjson(&[
        event("w1", 1, "u1", "Wards", 40),
        event("w2", 1, "u2", "Wards", 40),
        event("w3", 1, "u3", "Wards", 40),
    ]);
    server.ingest("notes", &[("Content-Type", NDJSON)], wards).await.expect(201);

    let report = server.get("/api/v1/adoption").await.expect(200);
    let seen = unit(&report, "Wards");
    assert_eq!(seen["stage"], 1, "3 of 3 people seen: {seen}");
    assert!(seen["reasons"][0].as_str().unwrap().contains("no headcount given"), "{seen}");
    assert_eq!(seen["evidence"]["headcount"], Value::Null, "{seen}");

    // Units are an admin's (tokens may not change them): the admin's session from here on.
    let admin = admin_client(&server, &scratch.0).await;
    let put_unit = async |body: Value| -> Reply {
        let request = admin.put(format!("{}/api/v1/units", server.base)).json(&body);
        server.send(request, format!("PUT /api/v1/units {body}")).await
    };

    // Ten people work in Wards: 3 of 10 is below the 50 % bar, and two more are needed.
    let unit_json = put_unit(json!({ "name": "Wards", "headcount": 10 })).await.expect(200);
    assert_eq!((unit_json["headcount"].as_u64(), unit_json["version"].as_i64()), (Some(10), Some(2)), "{unit_json}");
    let listed = server.get("/api/v1/units").await.expect(200);
    assert_eq!(items(&listed).iter().find(|u| u["name"] == "Wards").unwrap()["headcount"], 10, "{listed}");
    let report = server.get("/api/v1/adoption").await.expect(200);
    let counted = unit(&report, "Wards");
    assert_eq!(counted["stage"], 0, "{counted}");
    assert_eq!(counted["evidence"]["headcount"], 10, "{counted}");
    assert!(counted["missing"].as_str().unwrap().contains("3 of 10 people (30 %)"), "{counted}");
    assert_eq!(
        counted["next_step"], "2 more of its 10 people need to work with AI suggestions to reach the 50 % bar.",
        "{counted}"
    );

    // Refused by field, and the stored headcount stays.
    put_unit(json!({ "name": "Wards", "headcount": 0 })).await.expect_invalid(&["headcount"]);
    put_unit(json!({ "name": "Wards", "headcount": 20_000_000 })).await.expect_invalid(&["headcount"]);
    put_unit(json!({ "name": "Wards", "headcount": -4 })).await.expect_invalid(&["headcount"]);
    put_unit(json!({ "name": "", "headcount": 0 })).await.expect_invalid(&["name", "headcount"]);
    let listed = server.get("/api/v1/units").await.expect(200);
    assert_eq!(items(&listed).iter().find(|u| u["name"] == "Wards").unwrap()["headcount"], 10, "{listed}");

    // Leaving the headcount out says it is not known again.
    let cleared = put_unit(json!({ "name": "Wards" })).await.expect(200);
    assert_eq!(cleared["headcount"], Value::Null, "{cleared}");
    assert_eq!(unit(&server.get("/api/v1/adoption").await.expect(200), "Wards")["stage"], 1);
}

/// The adoption rules are the organisation's settings: anyone who reads sees them and their version, an
/// admin changes them (tokens may not), each change is the next version and a stale one is refused, and
/// the dashboard judges by them and says which version it used.
#[tokio::test]
async fn adoption_rules_are_versioned_settings_the_dashboard_states() {
    let scratch = Scratch::new("adoption-rules");
    let server = Server::start(&scratch.0, &[]);
    // Wards: three people seen, two shown suggestions (67 %): fluent under the default 50 % bar.
    let wards = ndjson(&[
        event("w1", 1, "u1", "Wards", 40),
        event("w2", 1, "u2", "Wards", 40),
        event("w3", 1, "u3", "Wards", 0),
    ]);
    server.ingest("notes", &[("Content-Type", NDJSON)], wards).await.expect(201);

    let defaults = server.get("/api/v1/adoption/rules").await.expect(200);
    assert_eq!(defaults["version"], 0, "{defaults}");
    assert_eq!(defaults["rules"]["fluency_bar"], 0.5, "{defaults}");
    assert_eq!(defaults["set_by"], Value::Null, "{defaults}");
    let report = server.get("/api/v1/adoption").await.expect(200);
    assert_eq!((report["rules_version"].as_i64(), &unit(&report, "Wards")["stage"]), (Some(0), &json!(1)), "{report}");

    let stricter =
        json!({ "version": 0, "fluency_bar": 0.8, "max_active_goals_per_squad": 2, "eval_max_age_days": 14 });
    server.put("/api/v1/adoption/rules", &stricter).await.expect_error(403, "forbidden");

    let admin = admin_client(&server, &scratch.0).await;
    let put_rules = async |body: &Value| -> Reply {
        let request = admin.put(format!("{}/api/v1/adoption/rules", server.base)).json(body);
        server.send(request, format!("PUT /api/v1/adoption/rules {body}")).await
    };
    let saved = put_rules(&stricter).await.expect(200);
    assert_eq!(
        (saved["version"].as_i64(), saved["set_by"].as_str()),
        (Some(1), Some("admin@tests.example")),
        "{saved}"
    );

    // 2 of 3 is below the 80 % bar; the report says which rules it used and states them.
    let report = server.get("/api/v1/adoption").await.expect(200);
    assert_eq!(report["rules_version"], 1, "{report}");
    assert_eq!(report["rules_set_by"], "admin@tests.example", "{report}");
    assert_eq!(report["rules"]["max_active_goals_per_squad"], 2, "{report}");
    let wards = unit(&report, "Wards");
    assert_eq!(wards["stage"], 0, "{wards}");
    assert!(wards["missing"].as_str().unwrap().contains("AI fluency needs 80 %"), "{wards}");
    let statements = items(&report["statements"]);
    assert!(statements.iter().any(|s| s["rule"].as_str().unwrap().starts_with("At least 80 %")), "{report}");
    assert!(statements.iter().any(|s| s["rule"].as_str().unwrap().contains("more than 2 active goals")), "{report}");

    // A change based on the defaults again is stale; bad rules are refused by field; nothing changes.
    let stale = put_rules(
        &json!({ "version": 0, "fluency_bar": 0.5, "max_active_goals_per_squad": 3, "eval_max_age_days": 30 }),
    )
    .await
    .expect_error(409, "conflict");
    assert!(stale["error"]["message"].as_str().unwrap().contains("it is now at 1"), "{stale}");
    put_rules(&json!({ "version": 1, "fluency_bar": 80, "max_active_goals_per_squad": 0, "eval_max_age_days": 30 }))
        .await
        .expect_invalid(&["fluency_bar", "max_active_goals_per_squad"]);
    put_rules(&json!({ "version": 1 })).await.expect_invalid(&[
        "fluency_bar",
        "max_active_goals_per_squad",
        "eval_max_age_days",
    ]);
    assert_eq!(server.get("/api/v1/adoption/rules").await.expect(200)["version"], 1);
}
