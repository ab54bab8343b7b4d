//! Black-box tests of monitors, alerts and notifications: a real webhook receiver (an HTTP server in
//! this test process) gets signed deliveries from the outbox, retried after a failure; an address in
//! the server's own networks is refused until an admin allows it; silences, the inbox and the upkeep's
//! scheduled evaluations.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration as StdDuration;

use axum::http::{HeaderMap, StatusCode};
use chrono::{Duration, Utc};
use common::{Scratch, Server, admin_client};
use serde_json::{Value, json};

/// What the receiver got: each request's path, headers and body.
type Received = Arc<Mutex<Vec<(String, HeaderMap, String)>>>;

/// Starts a webhook receiver on a free port of 127.0.0.1. `/hook` answers 500 to its first request and
/// 200 after (so the outbox must retry); `/slack` answers 200.
async fn receiver() -> (u16, Received) {
    let received: Received = Arc::default();
    let seen = received.clone();
    let app = axum::Router::new().fallback(move |uri: axum::http::Uri, headers: HeaderMap, body: String| {
        let seen = seen.clone();
        async move {
            let path = uri.path().to_owned();
            let mut all = seen.lock().unwrap();
            let first_hook = path == "/hook" && !all.iter().any(|(p, _, _)| p == "/hook");
            all.push((path, headers, body));
            if first_hook { StatusCode::INTERNAL_SERVER_ERROR } else { StatusCode::OK }
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (port, received)
}

/// Polls `check` every 200 ms for up to a minute; panics with `what` when it never holds.
async fn eventually<F, Fut>(what: &str, mut check: F) -> Value
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<Value>>,
{
    for _ in 0..300 {
        if let Some(v) = check().await {
            return v;
        }
        tokio::time::sleep(StdDuration::from_millis(200)).await;
    }
    panic!("{what} never happened within a minute");
}

async fn deliveries(server: &Server) -> Vec<Value> {
    server.get("/api/v1/deliveries").await.expect(200).as_array().unwrap().clone()
}

#[tokio::test]
async fn monitors_fire_alerts_that_reach_inboxes_and_signed_webhooks() {
    let scratch = Scratch::new("monitors");
    // Rounds every second and retries after a second, so the schedule and the retry happen in the test.
    let server = Server::start(&scratch.0, &[("SLOPE_UPKEEP_SECONDS", "1"), ("SLOPE_WEBHOOK_RETRY_SECONDS", "1")]);
    let admin = admin_client(&server, &scratch.0).await;
    let (port, received) = receiver().await;

    // A metric whose only point is three hours old, with a freshness limit of one hour.
    let metric = json!({ "key": "a-metric", "name": "A metric", "kind": "custom", "loop": "notes", "granularity": "day", "freshness_hours": 1 });
    server.post("/api/v1/metrics", &metric).await.expect(201);
    let old = json!({ "points": [{ "at": (Utc::now() - Duration::hours(3)).to_rfc3339(), "value": 1.0 }] });
    server.post("/api/v1/metrics/a-metric/points", &old).await.expect(200);

    // Bad monitors are refused by field, and nothing is stored.
    let bad = json!({ "key": "Bad Key", "name": "", "kind": "staleness", "metric": "nope", "field": "latency_ms" });
    server.post("/api/v1/monitors", &bad).await.expect_invalid(&["field", "key", "name"]);
    let unknown = json!({ "key": "m", "name": "M", "kind": "staleness", "metric": "nope" });
    server.post("/api/v1/monitors", &unknown).await.expect_invalid(&["metric"]);
    let kind = json!({ "key": "m", "name": "M", "kind": "weather" });
    server.post("/api/v1/monitors", &kind).await.expect_invalid(&["kind"]);
    assert_eq!(server.get("/api/v1/monitors").await.expect(200), json!([]));

    // Phase A: webhooks may not reach the server's own networks. An IP literal is refused at once; a
    // name that resolves there is refused when it is delivered, with the reason.
    let literal = json!({ "name": "Ops", "url": format!("http://127.0.0.1:{port}/hook") });
    let refused = server.post("/api/v1/contact-points", &literal).await.expect_invalid(&["url"]);
    assert!(refused.to_string().contains("own networks"), "{refused}");
    let named = json!({ "name": "Ops by name", "url": format!("http://localhost:{port}/hook") });
    let by_name = server.post("/api/v1/contact-points", &named).await.expect(201);
    let stale = json!({ "key": "stale-a", "name": "A metric is stale", "kind": "staleness", "metric": "a-metric", "every_minutes": 60, "enabled": false });
    let monitor = server.post("/api/v1/monitors", &stale).await.expect(201);
    assert_eq!(monitor["rule"], json!({ "kind": "staleness", "metric": "a-metric", "max_age_hours": null }));
    let run = server.post("/api/v1/monitors/stale-a/run", &json!({})).await.expect(200);
    // One delivery to the contact point and one inbox entry for the admin (the organisation's leaders
    // and admins get the alerts of monitors without a squad).
    assert_eq!((run["fired"].as_u64(), run["notifications"].as_u64()), (Some(1), Some(2)), "{run}");
    assert!(run["findings"][0]["summary"].as_str().unwrap().contains("a-metric is stale"), "{run}");
    let again = server.post("/api/v1/monitors/stale-a/run", &json!({})).await.expect(200);
    assert_eq!((again["fired"].as_u64(), again["notifications"].as_u64()), (Some(0), Some(0)), "a finding fires once");
    let failed = eventually("the refused delivery", || async {
        deliveries(&server).await.into_iter().find(|d| d["status"] == "failed")
    })
    .await;
    let reason = failed["last_error"].as_str().unwrap();
    assert!(reason.starts_with("refused: localhost resolves to") && reason.contains("own networks"), "{failed}");
    assert!(received.lock().unwrap().is_empty(), "nothing was sent");

    // Phase B: an admin allows internal addresses (a token may not change settings).
    let allow = json!({ "allow_internal_webhooks": true });
    server.put("/api/v1/notification-settings", &allow).await.expect(403);
    let settings: Value = admin
        .put(format!("{}/api/v1/notification-settings", server.base))
        .json(&allow)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(settings, allow);
    server.call(reqwest::Method::DELETE, &format!("/api/v1/contact-points/{}", by_name["id"]), None).await.expect(200);
    let hook = server.post("/api/v1/contact-points", &literal).await.expect(201);
    let secret = hook["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("whsec_") && secret.len() > 60, "{hook}");
    let slack = json!({ "name": "Chat", "url": format!("http://127.0.0.1:{port}/slack"), "format": "slack" });
    server.post("/api/v1/contact-points", &slack).await.expect(201);
    let listed = server.get("/api/v1/contact-points").await.expect(200);
    assert_eq!(listed.as_array().unwrap().len(), 2, "{listed}");
    assert!(!listed.to_string().contains(&secret), "the secret is shown once");

    // A monitor of a metric without data, evaluated by the upkeep on its schedule (no "run now").
    let empty =
        json!({ "key": "empty-metric", "name": "Empty", "kind": "custom", "loop": "notes", "granularity": "day" });
    server.post("/api/v1/metrics", &empty).await.expect(201);
    let scheduled = json!({ "key": "no-data", "name": "Empty metric has data", "kind": "staleness", "metric": "empty-metric", "every_minutes": 1 });
    server.post("/api/v1/monitors", &scheduled).await.expect(201);
    let alert = eventually("the scheduled evaluation", || async {
        let alerts = server.get("/api/v1/alerts?open=true").await.expect(200);
        alerts.as_array().unwrap().iter().find(|a| a["monitor_key"] == "no-data").cloned()
    })
    .await;
    assert_eq!(alert["state"], "firing");
    assert!(alert["summary"].as_str().unwrap().contains("has no data yet"), "{alert}");

    // Both contact points get it; the JSON one after a retry, with the same idempotency key and a
    // signature over the time and the body.
    let delivered = eventually("both deliveries", || async {
        let all = deliveries(&server).await;
        let done: Vec<Value> = all.into_iter().filter(|d| d["status"] == "delivered").collect();
        (done.len() == 2).then(|| json!(done))
    })
    .await;
    let to_hook = delivered.as_array().unwrap().iter().find(|d| d["contact_point_id"] == hook["id"]).unwrap().clone();
    assert_eq!(to_hook["attempts"], 2, "{to_hook}");
    let attempts = server.get(&format!("/api/v1/deliveries/{}/attempts", to_hook["id"])).await.expect(200);
    let codes: Vec<Value> = attempts.as_array().unwrap().iter().map(|a| a["status_code"].clone()).collect();
    assert_eq!(codes, [json!(500), json!(200)], "{attempts}");
    let got = received.lock().unwrap().clone();
    let hooks: Vec<&(String, HeaderMap, String)> = got.iter().filter(|(p, _, _)| p == "/hook").collect();
    assert_eq!(hooks.len(), 2);
    let key = |h: &HeaderMap| h["idempotency-key"].to_str().unwrap().to_owned();
    assert_eq!(key(&hooks[0].1), key(&hooks[1].1));
    assert_eq!(key(&hooks[1].1), to_hook["idempotency_key"].as_str().unwrap());
    for (_, headers, body) in &hooks {
        let header = headers["x-slope-signature"].to_str().unwrap();
        let t: i64 = header.strip_prefix("t=").and_then(|r| r.split(',').next()).unwrap().parse().unwrap();
        assert_eq!(header, slope_service::signature(&secret, t, body.as_bytes()));
        assert!((Utc::now().timestamp() - t).abs() < 120, "a recent time: {header}");
        let note: Value = serde_json::from_str(body).unwrap();
        assert_eq!(
            (&note["change"], &note["monitor"], &note["state"]),
            (&json!("fired"), &json!("no-data"), &json!("firing"))
        );
    }
    let (_, _, slack_body) = got.iter().find(|(p, _, _)| p == "/slack").unwrap();
    let slack_body: Value = serde_json::from_str(slack_body).unwrap();
    assert!(slack_body["text"].as_str().unwrap().starts_with("[FIRING] no-data: "), "{slack_body}");

    // Phase C: a silence stops notifications, also of the resolution.
    let stale_alert = server.get("/api/v1/alerts").await.expect(200);
    let stale_id =
        stale_alert.as_array().unwrap().iter().find(|a| a["monitor_key"] == "stale-a").unwrap()["id"].clone();
    let silence = format!("/api/v1/alerts/{stale_id}/silence");
    server.post(&silence, &json!({ "hours": 0 })).await.expect_invalid(&["hours"]);
    server.post(&silence, &json!({ "hours": 500 })).await.expect_invalid(&["hours"]);
    let silenced = server.post(&silence, &json!({ "hours": 2, "note": "known outage" })).await.expect(200);
    assert_eq!(silenced["state"], "silenced", "{silenced}");
    let fresh = json!({ "points": [{ "at": (Utc::now() - Duration::minutes(1)).to_rfc3339(), "value": 2.0 }] });
    server.post("/api/v1/metrics/a-metric/points", &fresh).await.expect(200);
    let run = server.post("/api/v1/monitors/stale-a/run", &json!({})).await.expect(200);
    assert_eq!((run["resolved"].as_u64(), run["notifications"].as_u64()), (Some(1), Some(0)), "{run}");
    let detail = server.get(&format!("/api/v1/alerts/{stale_id}")).await.expect(200);
    let changes: Vec<Value> = detail["history"].as_array().unwrap().iter().map(|e| e["change"].clone()).collect();
    assert_eq!(changes, [json!("fired"), json!("silenced"), json!("resolved")], "{detail}");
    assert_eq!((&detail["state"], &detail["can_silence"]), (&json!("resolved"), &json!(false)));
    server.post(&silence, &json!({ "hours": 1 })).await.expect_error(409, "conflict");

    // Phase D: the admin's inbox has both alerts.
    let inbox: Value = admin.get(format!("{}/api/v1/inbox", server.base)).send().await.unwrap().json().await.unwrap();
    assert_eq!(inbox["unread"], 2, "{inbox}");
    let read = |body: Value| {
        let admin = admin.clone();
        let url = format!("{}/api/v1/inbox/read", server.base);
        async move { admin.post(url).json(&body).send().await.unwrap().json::<Value>().await.unwrap() }
    };
    assert_eq!(read(json!({ "alert_id": stale_id })).await["marked"], 1);
    assert_eq!(read(json!({})).await["marked"], 1);
    let inbox: Value = admin.get(format!("{}/api/v1/inbox", server.base)).send().await.unwrap().json().await.unwrap();
    assert_eq!(inbox["unread"], 0, "{inbox}");
    // Alerts are routed to people: a token's inbox is empty.
    assert_eq!(server.get("/api/v1/inbox").await.expect(200), json!({ "unread": 0, "items": [] }));
}
