//! Black-box tests of the runner through the real server: datasets, jobs run by the server's worker,
//! the registry and its promotion gate, serving with impressions that become loop events, and a job
//! that survives the death of its worker by resuming from its checkpoint on another server.
//!
//! Models here are tiny (one layer, 32 wide) so that training takes seconds on two cores; the runner
//! crate's own tests cover what training achieves.

mod common;

use std::time::{Duration, Instant};

use common::{Scratch, Server, ndjson};
use serde_json::{Value, json};

/// Fast upkeep (served suggestions become events within a second) and a short lease (a dead worker's
/// job is taken over within two seconds); no shipped base model.
const ENV: [(&str, &str); 4] =
    [("SLOPE_UPKEEP_SECONDS", "1"), ("SLOPE_JOB_LEASE_SECONDS", "2"), ("SLOPE_BASE_MODEL", ""), ("SLOPE_WORKERS", "1")];

fn tiny_model() -> Value {
    json!({ "vocab_size": 257, "n_layer": 1, "n_head": 2, "d_model": 32, "ctx_len": 64 })
}

/// Clinical-note-like lines from templates; the part from "Plan: " on is what users write.
fn notes(n: usize, salt: usize) -> Vec<String> {
    let symptoms = ["cough", "headache", "back pain", "sore throat", "fatigue", "dizziness"];
    let plans = ["rest and fluids.", "ibuprofen as needed.", "follow up in two weeks.", "order chest x-ray."];
    (0..n)
        .map(|i| {
            let j = i * 7 + salt * 13;
            format!(
                "Pt reports {} for {} days. Plan: {}",
                symptoms[j % symptoms.len()],
                2 + j % 5,
                plans[(j / 3) % plans.len()]
            )
        })
        .collect()
}

fn text_rows(texts: &[String]) -> Vec<u8> {
    ndjson(&texts.iter().map(|t| json!({ "text": t })).collect::<Vec<_>>())
}

async fn add_dataset(server: &Server, name: &str, body: Vec<u8>) -> i64 {
    let reply = server.post_raw(&format!("/api/v1/datasets?name={name}"), "application/x-ndjson", body).await;
    reply.expect(201)["dataset"]["id"].as_i64().expect("a dataset id")
}

/// Polls a job until it has ended, and returns it.
async fn wait_job(server: &Server, id: i64, timeout: Duration) -> Value {
    let start = Instant::now();
    loop {
        let job = server.get(&format!("/api/v1/jobs/{id}")).await.expect(200);
        if matches!(job["status"].as_str(), Some("succeeded" | "failed" | "cancelled")) {
            return job;
        }
        assert!(start.elapsed() < timeout, "job {id} did not end within {timeout:?}: {job}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn wait_until(server: &Server, id: i64, timeout: Duration, what: &str, ok: impl Fn(&Value) -> bool) -> Value {
    let start = Instant::now();
    loop {
        let job = server.get(&format!("/api/v1/jobs/{id}")).await.expect(200);
        if ok(&job) {
            return job;
        }
        assert!(start.elapsed() < timeout, "job {id}: {what} did not happen within {timeout:?}: {job}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn run_job(server: &Server, request: Value) -> Value {
    let job = server.post("/api/v1/jobs", &request).await.expect(201);
    assert_eq!(job["status"], "pending");
    let id = job["id"].as_i64().expect("a job id");
    let done = wait_job(server, id, Duration::from_secs(300)).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    done
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_loop_closes_inside_slope() {
    let dir = Scratch::new("runner");
    let server = Server::start(&dir.0, &ENV);

    // Datasets: validated by line and field, versioned by content.
    let generic: Vec<String> = [
        "The quick brown fox jumps over the lazy dog by the river.",
        "Markets open early and the square fills with noise and trade.",
        "She wrote letters every morning and sent them to the city.",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let corpus = add_dataset(&server, "corpus", text_rows(&generic)).await;
    let again =
        server.post_raw("/api/v1/datasets?name=corpus-again", "application/x-ndjson", text_rows(&generic)).await;
    let again = again.expect(200);
    assert_eq!((again["created"].as_bool(), again["dataset"]["id"].as_i64()), (Some(false), Some(corpus)));
    let bad = b"{\"text\":\"fine\"}\n{\"prompt\":\"no completion\"}\n".to_vec();
    let error = server
        .post_raw("/api/v1/datasets?name=bad", "application/x-ndjson", bad)
        .await
        .expect_invalid(&["line 2: completion"]);
    assert!(error["fields"]["line 2: completion"][0].as_str().unwrap().contains("required"), "{error}");
    let held: Vec<String> = notes(12, 5);
    let held_out = add_dataset(&server, "held-out", text_rows(&held)).await;

    // Jobs are checked whole before anything is queued.
    server.post("/api/v1/jobs", &json!({ "kind": "train" })).await.expect_invalid(&["kind"]);
    server.post("/api/v1/jobs", &json!({ "kind": "sft" })).await.expect_invalid(&["model_id", "dataset_id"]);
    server
        .post("/api/v1/jobs", &json!({ "kind": "pretrain", "dataset_id": corpus, "train": { "steps": 0, "lr": 2.0 } }))
        .await
        .expect_invalid(&["train.steps"]);
    server
        .post("/api/v1/jobs", &json!({ "kind": "dpo", "model_id": 999, "dataset_id": corpus }))
        .await
        .expect_invalid(&["model_id", "dataset_id"]);
    assert_eq!(server.get("/api/v1/jobs").await.expect(200).as_array().unwrap().len(), 0, "nothing was queued");

    // Pre-train a tiny base model; the server's own worker runs the job.
    let train = json!({ "steps": 60, "batch_size": 8, "lr": 0.003, "warmup_steps": 5, "checkpoint_every": 20 });
    let pretrain = run_job(
        &server,
        json!({ "kind": "pretrain", "dataset_id": corpus, "model_config": tiny_model(), "train": train, "name": "tiny-base" }),
    )
    .await;
    let base = pretrain["result"]["model_id"].as_i64().expect("the registered model");
    let metrics = server.get(&format!("/api/v1/jobs/{}/metrics", pretrain["id"])).await.expect(200);
    let steps = metrics.as_array().unwrap();
    assert_eq!(steps.len(), 60, "one row per step");
    let (first, last) = (steps[0]["loss"].as_f64().unwrap(), steps[59]["loss"].as_f64().unwrap());
    assert!(last < first - 1.0, "the loss falls: {first} → {last}");
    assert!(steps.iter().all(|s| s["tokens_per_s"].as_f64().unwrap() > 0.0 && s["lr"].as_f64().unwrap() > 0.0));
    // The event stream of a finished job replays its metrics and state, then ends.
    let sse = server.get(&format!("/api/v1/jobs/{}/events", pretrain["id"])).await;
    assert_eq!(sse.status, 200);
    assert!(sse.text.contains("event: metrics") && sse.text.contains("event: job"), "{}", sse.text);
    assert!(sse.text.contains("\"status\":\"succeeded\""), "{}", sse.text);

    // The base is evaluated and becomes the loop's first champion through the gate.
    let eval = run_job(&server, json!({ "kind": "eval", "model_id": base, "held_out_id": held_out })).await;
    let base_reward = eval["result"]["eval"]["reward"].as_f64().expect("a reward");
    let promoted = server.post("/api/v1/loops/notes/promote", &json!({ "model_id": base })).await.expect(200);
    assert_eq!(promoted["accepted"], true, "{promoted}");

    // Users of the loop write notes; some suggestions are kept, some rejected.
    let mut events = Vec::new();
    for (i, note) in notes(90, 1).iter().enumerate() {
        let cut = note.find("Plan: ").unwrap() + 6;
        let (context, written) = note.split_at(cut);
        let rejected = i % 2 == 0;
        let suggestion = if rejected { "order an MRI." } else { written };
        events.push(json!({
            "event_id": format!("n-{i}"),
            "ts": format!("2026-06-{:02}T10:{:02}:00Z", 1 + i % 28, i % 60),
            "user_id": format!("clinician-{}", i % 7),
            "variant": "base",
            "suggested_chars": suggestion.chars().count(),
            "accepted_chars": if rejected { 0 } else { suggestion.chars().count() },
            "context": context,
            "suggestion": suggestion,
            "final_text": written,
        }));
    }
    let ingest = server.post_raw("/api/v1/loops/notes/events", "application/x-ndjson", ndjson(&events)).await;
    ingest.expect(201);
    let built = server.post("/api/v1/loops/notes/datasets", &json!({})).await.expect(201);
    assert_eq!(built["events_read"], 90);
    assert_eq!(built["sft"]["rows"], 90);
    assert_eq!(built["sft"]["kind"], "sft");
    let preference_rows = built["preference"]["rows"].as_i64().unwrap();
    assert!((40..=45).contains(&preference_rows), "rejected suggestions whose final text differs: {built}");
    assert_eq!(built["sft"]["source"]["loop"], "notes");
    assert_eq!(built["sft"]["source"]["events"], 90);
    let rebuilt = server.post("/api/v1/loops/notes/datasets", &json!({})).await.expect(201);
    assert_eq!(
        (rebuilt["sft_existed"].as_bool(), rebuilt["sft"]["id"].clone()),
        (Some(true), built["sft"]["id"].clone())
    );
    let rows = server.get(&format!("/api/v1/datasets/{}/rows", built["sft"]["id"])).await;
    assert_eq!(rows.text.lines().count(), 90);
    assert!(rows.text.lines().next().unwrap().contains("\"prompt\":\"Pt reports"), "{}", rows.text);

    // Fine-tune on the loop's data; the result is the loop's challenger, evaluated on the held-out set.
    let sft = run_job(
        &server,
        json!({
            "kind": "sft", "loop": "notes", "model_id": base, "dataset_id": built["sft"]["id"], "held_out_id": held_out,
            "train": { "steps": 150, "batch_size": 8, "lr": 0.003, "warmup_steps": 5, "checkpoint_every": 50 },
        }),
    )
    .await;
    let tuned = sft["result"]["model_id"].as_i64().unwrap();
    let tuned_reward = sft["result"]["eval"]["reward"].as_f64().unwrap();
    let acceptance = |v: &Value| v["scores"]["replay_acceptance"].as_f64().unwrap();
    assert!(
        acceptance(&sft["result"]["eval"]) > acceptance(&eval["result"]["eval"]) + 0.1,
        "SFT raises replay acceptance: {} → {}",
        eval["result"]["eval"],
        sft["result"]["eval"]
    );
    let model = server.get(&format!("/api/v1/models/{tuned}")).await.expect(200);
    assert_eq!(model["base_model_id"], base);
    assert_eq!(model["lineage"][0]["id"], base);
    assert_eq!(model["dataset_digest"], built["sft"]["digest"]);
    assert_eq!(model["aliases"][0]["alias"], "challenger");

    // The gate: the tuned model beats the champion offline, but a loop with a champion also needs an
    // experiment of exactly this challenger against it. An experiment of other models is no evidence.
    assert!(tuned_reward > base_reward);
    let before = server.get("/api/v1/loops/notes/stack").await.expect(200);
    let ab_before = before["stages"].as_array().unwrap().iter().find(|s| s["key"] == "ab").unwrap()["status"].clone();
    // The experiments start yesterday: their outcomes are stamped a few minutes back, which is
    // yesterday when the test runs just after midnight UTC (a CI run failed on exactly that).
    let yesterday = chrono::Utc::now().date_naive() - chrono::Duration::days(1);
    let experiment = |key: &str, control: i64, treatment: i64| {
        json!({
            "key": key, "name": key, "loop": "notes", "control": format!("{key}-champion"),
            "treatment": format!("{key}-challenger"), "starts_on": yesterday.to_string(),
            "ends_on": (yesterday + chrono::Duration::days(8)).to_string(),
            "control_model": control, "treatment_model": treatment,
        })
    };
    server.post("/api/v1/experiments", &experiment("other", tuned, base)).await.expect(201);
    server.post("/api/v1/experiments", &experiment("bad", base, 999_999)).await.expect_invalid(&["treatment_model"]);
    let refused = server
        .post("/api/v1/loops/notes/promote", &json!({ "model_id": tuned }))
        .await
        .expect_error(409, "gate_refused");
    let message = refused["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("no experiment of notes served") && message.contains(&format!("control_model {base}")),
        "{refused}"
    );

    // The matching experiment, with the outcomes of its arms: the challenger's users accept more.
    server.post("/api/v1/experiments", &experiment("tuned-vs-base", base, tuned)).await.expect(201);
    let now = chrono::Utc::now() - chrono::Duration::minutes(5);
    let outcomes: Vec<Value> = (0..40)
        .map(|i| {
            let treated = i % 2 == 1;
            json!({
                "event_id": format!("ab-{i}"), "ts": now.to_rfc3339(), "user_id": format!("ab-user-{i}"),
                "variant": if treated { "tuned-vs-base-challenger" } else { "tuned-vs-base-champion" },
                "suggested_chars": 100, "accepted_chars": if treated { 60 + i % 7 } else { 40 + i % 5 },
            })
        })
        .collect();
    let ingest = server
        .client
        .post(format!("{}/api/v1/loops/notes/events", server.base))
        .header("Content-Type", "application/x-ndjson")
        .body(ndjson(&outcomes));
    server.send(ingest, "POST /api/v1/loops/notes/events".into()).await.expect(201);
    // A loop whose gate asks for a significantly better challenger: this one is.
    let gate = server.put("/api/v1/loops/notes/gate", &json!({ "online": "better" })).await.expect(200);
    assert_eq!((&gate["online"], &gate["loop"]), (&json!("better"), &json!("notes")));
    server.put("/api/v1/loops/notes/gate", &json!({ "online": "maybe" })).await.expect_invalid(&["online"]);
    let bad_both = json!({ "online": "maybe", "offline": "sometimes" });
    server.put("/api/v1/loops/notes/gate", &bad_both).await.expect_invalid(&["online", "offline"]);
    let policy = server.get("/api/v1/loops/notes/gate").await.expect(200);
    assert_eq!((&policy["online"], &policy["offline"]), (&json!("better"), &json!("interval-above-zero")), "{policy}");
    let promoted = server.post("/api/v1/loops/notes/promote", &json!({ "model_id": tuned })).await.expect(200);
    assert_eq!(promoted["accepted"], true, "{promoted}");
    let decision = &promoted["record"]["decision"];
    assert_eq!(
        (&decision["experiment"]["key"], &decision["online_rule"]),
        (&json!("tuned-vs-base"), &json!("better")),
        "{promoted}"
    );
    assert!(decision["experiment"]["always_valid_ci"][0].as_f64().unwrap() > 0.0, "{promoted}");
    // Offline, the default asks for a reward margin whose bootstrap interval over the held-out items
    // lies above zero; the decision states it.
    let margin = &decision["offline_margin"];
    assert_eq!(decision["offline_rule"], "interval-above-zero", "{promoted}");
    assert!((margin["margin"].as_f64().unwrap() - (tuned_reward - base_reward)).abs() < 1e-9, "{margin}");
    let (low, high) = (margin["ci_low"].as_f64().unwrap(), margin["ci_high"].as_f64().unwrap());
    assert!(0.0 < low && low <= tuned_reward - base_reward && tuned_reward - base_reward <= high, "{margin}");
    assert!(promoted["reason"].as_str().unwrap().contains("95 % bootstrap interval"), "{promoted}");
    let refused = server
        .post("/api/v1/loops/notes/promote", &json!({ "model_id": base }))
        .await
        .expect_error(409, "gate_refused");
    assert!(refused["error"]["message"].as_str().unwrap().contains("does not beat"), "{refused}");
    let registry = server.get("/api/v1/loops/notes/models").await.expect(200);
    let decisions: Vec<bool> =
        registry["promotions"].as_array().unwrap().iter().map(|p| p["accepted"].as_bool().unwrap()).collect();
    assert_eq!(decisions, [false, true, false, true], "newest first: {registry}");
    let champion = registry["aliases"].as_array().unwrap().iter().find(|a| a["alias"] == "champion").cloned().unwrap();
    assert_eq!(champion["model_id"], tuned);

    // The stack: every stage shows its artefact; the iterations come from lineage. The base model was
    // imported, not trained on the loop's data, so only the tuned model's promotion is an iteration.
    let stack = server.get("/api/v1/loops/notes/stack").await.expect(200);
    let stages = stack["stages"].as_array().unwrap();
    let keys: Vec<&str> = stages.iter().map(|s| s["key"].as_str().unwrap()).collect();
    assert_eq!(keys, ["reward", "data", "fine-tuning", "evals", "ab", "observability", "iteration"], "{stack}");
    let stage = |key: &str| stages.iter().find(|s| s["key"] == key).unwrap().clone();
    for key in ["reward", "data", "fine-tuning", "evals", "iteration"] {
        assert!(stage(key)["artefact"].as_str().is_some_and(|a| !a.is_empty()), "{key}: {stack}");
        assert!(stage(key)["last_activity"].is_string(), "{key}: {stack}");
    }
    assert!(stage("data")["artefact"].as_str().unwrap().contains("notes-sft"), "{stack}");
    assert_eq!(stage("fine-tuning")["status"], "succeeded", "{stack}");
    // The stack's A/B stage was missing until the experiments above (see `ab_before`); now it runs.
    assert_eq!(ab_before, "missing");
    assert_eq!(stage("ab")["status"], "running", "{stack}");
    assert_eq!(stage("observability")["status"], "ok", "{stack}");
    let iterations = stack["iterations"].as_array().unwrap();
    assert_eq!(iterations.len(), 1, "{stack}");
    let iteration = &iterations[0];
    assert_eq!(iteration["outcome"], "promoted", "{stack}");
    assert_eq!(iteration["model_id"], tuned, "{stack}");
    assert_eq!(iteration["dataset_id"], built["sft"]["id"], "{stack}");
    assert_eq!(iteration["job_id"], sft["id"], "{stack}");
    assert_eq!(iteration["first_event_at"], "2026-06-01T10:00:00Z", "{stack}");
    assert!(iteration["cycle_hours"].as_f64().unwrap() > 0.0, "{stack}");
    assert!((iteration["reward_change"].as_f64().unwrap() - (tuned_reward - base_reward)).abs() < 1e-9, "{stack}");
    // The measured online lift is the experiment's acceptance difference, beside the reward change.
    assert_eq!(iteration["online_lift"]["experiment"], "tuned-vs-base", "{stack}");
    let lift = iteration["online_lift"]["difference"].as_f64().unwrap();
    assert!(lift > 0.15 && iteration["online_lift"]["ci_low"].as_f64().unwrap() > 0.0, "{stack}");
    assert_eq!(stack["metabolism"]["online_lift_per_iteration"].as_f64(), Some(lift), "{stack}");
    assert_eq!(stack["metabolism"]["iterations"], 1, "{stack}");
    assert_eq!(stack["metabolism"]["promoted"], 1, "{stack}");
    let annotations: i64 =
        stack["metabolism"]["weeks"].as_array().unwrap().iter().map(|w| w["annotations"].as_i64().unwrap()).sum();
    assert_eq!(annotations, 90, "{stack}");
    server.get("/api/v1/loops/nobody/stack").await.expect_error(404, "not_found");
    let page = server.get("/loops/notes").await;
    assert_eq!(page.status, 200, "{}", page.text);
    for part in ["Post-training stack", "Iterations", "Metabolism", "promoted", "Annotations per week"] {
        assert!(page.text.contains(part), "the loop page shows {part:?}: {}", page.text);
    }
    assert!(page.text.contains(iteration["model"].as_str().unwrap()), "{}", page.text);
    // The champion's scores are metric points that key results can link to.
    let series = server.get("/api/v1/metrics/notes-champion-replay-acceptance").await.expect(200);
    let points = series["points"].as_array().unwrap();
    let latest = points.last().unwrap()["value"].as_f64().unwrap();
    assert!((latest - acceptance(&sft["result"]["eval"])).abs() < 1e-9, "{series}");

    // Serving: the champion suggests; the impression becomes an event once its outcome is reported.
    server
        .post("/api/v1/loops/notes/complete", &json!({ "user_id": "", "context": "x", "max_chars": 0 }))
        .await
        .expect_invalid(&["user_id", "max_chars"]);
    server
        .post("/api/v1/loops/nobody/complete", &json!({ "user_id": "u", "context": "x" }))
        .await
        .expect_error(404, "not_found");
    let before = server.get("/api/v1/loops/notes").await.expect(200)["summary"]["events"].as_i64().unwrap();
    let served = server
        .post(
            "/api/v1/loops/notes/complete",
            &json!({ "user_id": "clinician-1", "context": "Pt reports cough for 3 days. Plan: ", "max_chars": 12 }),
        )
        .await
        .expect(200);
    assert_eq!(served["model_id"], tuned);
    let suggestion = served["suggestion"].as_str().unwrap();
    assert!(!suggestion.is_empty() && suggestion.chars().count() <= 12, "{served}");
    let event_id = served["event_id"].as_str().unwrap();
    let kept = suggestion.chars().count().min(4);
    server
        .post(
            &format!("/api/v1/loops/notes/complete/{event_id}/outcome"),
            &json!({ "accepted_chars": kept, "final_text": "rest and fluids." }),
        )
        .await
        .expect(200);
    server
        .post("/api/v1/loops/notes/complete/no-such-event/outcome", &json!({ "accepted_chars": 1 }))
        .await
        .expect_error(404, "not_found");
    let start = Instant::now();
    loop {
        let report = server.get("/api/v1/loops/notes").await.expect(200);
        if report["summary"]["events"].as_i64().unwrap() == before + 1 {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "the impression never became an event: {report}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // The pages show it all.
    let jobs = server.get("/jobs").await;
    assert!(jobs.status == 200 && jobs.text.contains("pretrain") && jobs.text.contains("succeeded"));
    let page = server.get(&format!("/jobs/{}", sft["id"])).await;
    assert!(page.status == 200 && page.text.contains("Training loss"), "{}", page.text);
    let models = server.get("/models").await;
    assert!(models.status == 200 && models.text.contains("notes: champion") && models.text.contains("does not beat"));
}

/// Reads a server-sent event stream until it ends or `within` passes; returns what it sent and whether
/// it ended.
async fn read_stream(response: &mut reqwest::Response, within: Duration) -> (String, bool) {
    let mut text = String::new();
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, response.chunk()).await {
            Ok(Ok(Some(chunk))) => text.push_str(&String::from_utf8_lossy(&chunk)),
            Ok(Ok(None)) => return (text, true),
            // A connection closed mid-chunk is an end too.
            Ok(Err(_)) => return (text, true),
            Err(_) => return (text, false),
        }
    }
}

#[tokio::test]
async fn job_event_streams_end_on_revocation_and_on_shutdown() {
    let dir = Scratch::new("runner-streams");
    // No worker: the job stays pending, so its stream would run for ever.
    let env = [("SLOPE_WORKERS", "0"), ("SLOPE_BASE_MODEL", "")];
    let mut server = Server::start(&dir.0, &env);
    let corpus = add_dataset(&server, "notes", text_rows(&notes(10, 1))).await;
    let job = server
        .post(
            "/api/v1/jobs",
            &json!({ "kind": "pretrain", "dataset_id": corpus, "model_config": tiny_model(),
                     "train": { "steps": 10, "batch_size": 2, "seq_len": 16 } }),
        )
        .await
        .expect(201);
    let path = format!("{}/api/v1/jobs/{}/events", server.base, job["id"]);
    let client = reqwest::Client::builder().no_proxy().build().expect("a client");

    // A second token (the test server's own is the first), revoked while its stream is open.
    let token = common::create_token(&dir.0, &env, "read");
    let mut stream = client.get(&path).bearer_auth(&token).send().await.expect("a stream");
    assert_eq!(stream.status(), 200);
    let (opening, ended) = read_stream(&mut stream, Duration::from_secs(2)).await;
    assert!(opening.contains("event: job") && !ended, "{opening}");
    let mut revoke = std::process::Command::new(env!("CARGO_BIN_EXE_slope"));
    revoke.args(["token", "revoke", "2", "--data-dir"]).arg(&dir.0).current_dir(&dir.0);
    for (var, _) in std::env::vars().filter(|(v, _)| v.starts_with("SLOPE_") || v == "DATABASE_URL") {
        revoke.env_remove(var);
    }
    let revoked = revoke.envs(env).output().expect("slope token revoke");
    assert!(revoked.status.success(), "{}", String::from_utf8_lossy(&revoked.stderr));
    let (rest, ended) = read_stream(&mut stream, Duration::from_secs(15)).await;
    assert!(ended, "the stream outlived its token's revocation: {rest}");
    assert!(rest.contains("event: end") && rest.contains("revoked"), "{rest}");

    // A graceful shutdown ends open streams instead of waiting for them.
    let mut stream = client.get(&path).bearer_auth(&server.token).send().await.expect("a stream");
    let (opening, _) = read_stream(&mut stream, Duration::from_secs(2)).await;
    assert!(opening.contains("event: job"), "{opening}");
    let exited = server.terminate(Duration::from_secs(20));
    assert!(exited.is_some_and(|s| s.success()), "the server did not shut down with a stream open: {exited:?}");
    let (rest, ended) = read_stream(&mut stream, Duration::from_secs(5)).await;
    assert!(ended && rest.contains("shutting down"), "{rest}");
}

/// Every file under `dir`, relative to it.
fn files_under(dir: &std::path::Path) -> Vec<String> {
    let mut out = vec![];
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path.strip_prefix(dir).unwrap_or(&path).display().to_string());
            }
        }
    }
    out.sort();
    out
}

/// Sets a file's modification time `hours` back, as if it had been written then.
fn backdate(path: &std::path::Path, hours: u32) {
    let status = std::process::Command::new("touch")
        .arg("-d")
        .arg(format!("{hours} hours ago"))
        .arg(path)
        .status()
        .expect("touch");
    assert!(status.success(), "touch -d {}", path.display());
}

#[tokio::test]
async fn objects_no_row_names_are_swept_once_old_and_named_ones_never() {
    let dir = Scratch::new("runner-sweep");
    let server =
        Server::start(&dir.0, &[("SLOPE_UPKEEP_SECONDS", "1"), ("SLOPE_WORKERS", "0"), ("SLOPE_BASE_MODEL", "")]);
    let events: Vec<Value> = (0..3)
        .map(|i| {
            json!({ "event_id": format!("e{i}"), "ts": "2026-11-02T09:00:00Z", "user_id": "u1", "variant": "a",
                    "suggested_chars": 10, "accepted_chars": 5 })
        })
        .collect();
    server.post_raw("/api/v1/loops/notes/events", "application/x-ndjson", ndjson(&events)).await.expect(201);
    let dataset = add_dataset(&server, "notes", text_rows(&notes(5, 1))).await;
    let store = dir.0.join("events");
    let named = files_under(&store);
    assert!(named.iter().any(|f| f.ends_with(".parquet")) && named.len() >= 2, "{named:?}");
    // Everything Slope wrote is made old; the orphans are what a failed commit or a crash leaves.
    for f in &named {
        backdate(&store.join(f), 2);
    }
    let orphans = ["org-1/notes/2026-11-02/orphan.parquet", "runner/jobs/999/checkpoint-a1-0000010/model.safetensors"];
    for orphan in orphans {
        let path = store.join(orphan);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, b"left behind").unwrap();
        backdate(&path, 2);
    }
    let fresh = store.join("org-1/notes/being-written.parquet");
    std::fs::write(&fresh, b"a write in progress").unwrap();

    let started = Instant::now();
    while orphans.iter().any(|o| store.join(o).exists()) {
        assert!(started.elapsed() < Duration::from_secs(30), "the upkeep did not sweep: {:?}", files_under(&store));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(fresh.exists(), "an object younger than the grace period is left alone");
    for f in &named {
        assert!(store.join(f).exists(), "{f} is named by a row and was deleted");
    }
    let report = server.get("/api/v1/loops/notes").await.expect(200);
    assert_eq!(report["summary"]["events"], 3, "{report}");
    let rows = server.get(&format!("/api/v1/datasets/{dataset}/rows")).await;
    assert!(rows.status == 200 && rows.text.contains("Pt reports"), "the dataset's file is readable: {}", rows.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_whose_worker_dies_resumes_elsewhere_from_its_checkpoint() {
    let dir = Scratch::new("runner-resume");
    let mut first = Server::start(&dir.0, &ENV);
    let corpus = add_dataset(&first, "notes", text_rows(&notes(40, 2))).await;
    let steps = 1200;
    let job = first
        .post(
            "/api/v1/jobs",
            &json!({
                "kind": "pretrain", "dataset_id": corpus, "model_config": tiny_model(),
                "train": { "steps": steps, "batch_size": 4, "seq_len": 32, "checkpoint_every": 25 },
            }),
        )
        .await
        .expect(201);
    let id = job["id"].as_i64().unwrap();
    let checkpointed = wait_until(&first, id, Duration::from_secs(120), "a second checkpoint", |j| {
        j["checkpoint_step"].as_i64() >= Some(50)
    })
    .await;
    assert_eq!(checkpointed["status"], "running");
    assert_eq!(checkpointed["attempts"], 1);
    // The worker dies without a word: no heartbeat, no release.
    first.kill();
    let killed_at = checkpointed["checkpoint_step"].as_i64().unwrap();

    let second = Server::start(&dir.0, &ENV);
    let resumed = wait_until(&second, id, Duration::from_secs(60), "a second attempt", |j| j["attempts"] == 2).await;
    assert_ne!(resumed["lease_owner"], checkpointed["lease_owner"]);
    let done = wait_job(&second, id, Duration::from_secs(300)).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    let from = done["result"]["train"]["resumed_from"].as_i64().expect("resumed from a checkpoint");
    assert!(from >= killed_at && from % 25 == 0, "resumed from step {from}, killed after checkpoint {killed_at}");
    assert_eq!(done["result"]["train"]["steps"], steps);
    // Every step is recorded once, the redone ones by the second worker.
    let metrics = second.get(&format!("/api/v1/jobs/{id}/metrics")).await.expect(200);
    let recorded: Vec<i64> = metrics.as_array().unwrap().iter().map(|m| m["step"].as_i64().unwrap()).collect();
    assert_eq!(recorded, (1..=steps).collect::<Vec<i64>>());

    // A running job is cancelled at its next heartbeat; a pending one at once.
    let long = json!({
        "kind": "pretrain", "dataset_id": corpus, "model_config": tiny_model(),
        "train": { "steps": 100000, "batch_size": 4, "seq_len": 32, "checkpoint_every": 0 },
    });
    let running = second.post("/api/v1/jobs", &long).await.expect(201)["id"].as_i64().unwrap();
    let queued = second.post("/api/v1/jobs", &long).await.expect(201)["id"].as_i64().unwrap();
    wait_until(&second, running, Duration::from_secs(60), "running", |j| {
        j["status"] == "running" && j["step"].as_i64() > Some(0)
    })
    .await;
    let cancelled = second.post(&format!("/api/v1/jobs/{queued}/cancel"), &json!({})).await.expect(200);
    assert_eq!(cancelled["status"], "cancelled");
    let asked = second.post(&format!("/api/v1/jobs/{running}/cancel"), &json!({})).await.expect(200);
    assert_eq!(asked["cancel_requested"], true);
    let ended = wait_job(&second, running, Duration::from_secs(30)).await;
    assert_eq!(ended["status"], "cancelled");
    second.post(&format!("/api/v1/jobs/{}/cancel", id), &json!({})).await.expect_error(409, "conflict");
    second.get("/api/v1/jobs/987654").await.expect_error(404, "not_found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_loop_carries_text_to_learn_from() {
    let dir = Scratch::new("runner-demo");
    let mut env = ENV.to_vec();
    env.push(("SLOPE_DEMO", "true"));
    let server = Server::start(&dir.0, &env);
    let report = server.get("/api/v1/loops/notes").await.expect(200);
    let events = report["summary"]["events"].as_i64().expect("the demo loop has events");
    let built = server.post("/api/v1/loops/notes/datasets", &json!({})).await.expect(201);
    // Every simulated event has a context and what the clinician wrote; the suggestions not taken whole
    // are the preference pairs.
    assert_eq!(built["events_read"].as_i64(), Some(events));
    assert_eq!(built["sft"]["rows"].as_i64(), Some(events));
    let pairs = built["preference"]["rows"].as_i64().unwrap();
    assert!(pairs > events / 4 && pairs < events, "{pairs} preference pairs of {events} events");
    let rows = server.get(&format!("/api/v1/datasets/{}/rows", built["sft"]["id"])).await;
    let first: Value = serde_json::from_str(rows.text.lines().next().unwrap()).unwrap();
    assert!(first["prompt"].as_str().unwrap().starts_with("Pt reports "), "{first}");
    assert!(first["completion"].as_str().unwrap().ends_with('.'), "{first}");
}
