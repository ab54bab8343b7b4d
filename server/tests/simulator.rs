//! The live demo's traffic simulator through the real server: in demo mode, with its settings turned way
//! down (tiny training, short experiments, fast traffic), the `notes` loop gets its first champion, its
//! simulated suggestions become events, and a fine-tuned challenger goes through an A/B experiment to
//! the promotion gate, which the loop's stack shows as an iteration — without anyone touching it.

mod common;

use std::time::{Duration, Instant};

use common::{Scratch, Server};
use serde_json::Value;

const BASE_MODEL: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../models/base");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_simulator_turns_the_demo_loop_by_itself() {
    let dir = Scratch::new("simulator");
    let env = [
        ("SLOPE_DEMO", "true"),
        ("SLOPE_BASE_MODEL", BASE_MODEL),
        ("SLOPE_WORKERS", "1"),
        ("SLOPE_UPKEEP_SECONDS", "1"),
        ("SLOPE_SIMULATOR_RATE", "600"),
        ("SLOPE_SIMULATOR_DUTY", "1"),
        ("SLOPE_SIMULATOR_MIN_EVENTS", "1"),
        ("SLOPE_SIMULATOR_ARM_OUTCOMES", "3"),
        ("SLOPE_SIMULATOR_EXPERIMENT_SECONDS", "20"),
        ("SLOPE_SIMULATOR_TRAIN_STEPS", "3"),
        ("SLOPE_SIMULATOR_BATCH_SIZE", "2"),
        ("SLOPE_SIMULATOR_ANNOTATION_RATE", "600"),
    ];
    let server = Server::start(&dir.0, &env);
    let status = server.get("/api/v1/simulator").await.expect(200);
    assert_eq!(status["running"], true, "{status}");
    let keys: Vec<&str> = status["loops"].as_array().unwrap().iter().map(|l| l["loop"].as_str().unwrap()).collect();
    assert_eq!(keys, ["notes", "discharge"], "the demo has two product loops: {status}");
    let events_of = |loops: &Value, key: &str| {
        loops.as_array().unwrap().iter().find(|l| l["loop"] == key).and_then(|l| l["events"].as_i64()).unwrap_or(0)
    };
    let loops = server.get("/api/v1/loops").await.expect(200);
    let seeded = events_of(&loops, "notes");
    assert!(seeded > 1000 && events_of(&loops, "discharge") > 100, "both loops have a seeded history: {loops}");

    // Bounded: bootstrap (an eval of the base model), a tiny fine-tune, an eval, a short experiment.
    let start = Instant::now();
    let limit = Duration::from_secs(150);
    let stack = loop {
        let stack = server.get("/api/v1/loops/notes/stack").await.expect(200);
        if !stack["iterations"].as_array().unwrap().is_empty() {
            break stack;
        }
        let status = server.get("/api/v1/simulator").await.expect(200);
        assert!(start.elapsed() < limit, "no iteration of notes within {limit:?}; simulator: {status}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let iteration = &stack["iterations"][0];
    assert!(matches!(iteration["outcome"].as_str(), Some("promoted" | "refused")), "{iteration}");
    assert_eq!(iteration["dataset"], "notes-sft", "{iteration}");
    assert!(iteration["reason"].as_str().is_some_and(|r| !r.is_empty()), "{iteration}");
    assert_eq!(stack["metabolism"]["iterations"], 1, "{stack}");

    // The first champion was the base model, promoted after its eval on the simulated held-out set.
    let models = server.get("/api/v1/loops/notes/models").await.expect(200);
    let promotions = models["promotions"].as_array().unwrap();
    assert!(promotions.len() >= 2, "the bootstrap and the iteration: {models}");
    let bootstrap = promotions.iter().min_by_key(|p| p["id"].as_i64()).unwrap();
    assert_eq!(bootstrap["accepted"], true, "{bootstrap}");
    assert_eq!(bootstrap["decision"]["challenger"]["name"], "base", "{bootstrap}");
    let datasets = server.get("/api/v1/datasets").await.expect(200);
    let held_out = datasets.as_array().unwrap().iter().find(|d| d["name"] == "notes-held-out");
    assert!(held_out.is_some_and(|d| d["source"]["simulated"] == true), "{datasets}");

    // The experiment of the iteration was stopped after the gate's decision, and its arms are its own.
    let experiments = server.get("/api/v1/experiments").await.expect(200);
    let experiment = experiments
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["loop"] == "notes" && e["key"].as_str().unwrap().starts_with("notes-sim-"))
        .unwrap_or_else(|| panic!("the simulator's experiment: {experiments}"));
    let key = experiment["key"].as_str().unwrap();
    assert_eq!(experiment["control"], format!("{key}-champion"));
    assert_eq!(experiment["treatment"], format!("{key}-challenger"));
    // Lineage ties the iteration to this experiment.
    assert_eq!(iteration["experiment"], key, "{iteration}");
    // The decision is recorded just before the stop.
    let stopped = Instant::now();
    loop {
        let experiments = server.get("/api/v1/experiments").await.expect(200);
        let e = experiments.as_array().unwrap().iter().find(|e| e["key"] == key).cloned().unwrap();
        if e["stopped_at"].is_string() {
            break;
        }
        assert!(stopped.elapsed() < Duration::from_secs(10), "experiment {key} was not stopped: {e}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    server.post(&format!("/api/v1/experiments/{key}/stop"), &Value::Null).await.expect_error(409, "conflict");

    // Served suggestions became events of the loop.
    let grown = Instant::now();
    loop {
        let loops = server.get("/api/v1/loops").await.expect(200);
        if events_of(&loops, "notes") > seeded {
            break;
        }
        assert!(grown.elapsed() < Duration::from_secs(20), "no simulated event was recorded: {loops}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let status = server.get("/api/v1/simulator").await.expect(200);
    let notes = &status["loops"][0];
    assert!(notes["suggestions_served"].as_u64().unwrap() > 0, "{status}");
    assert!(notes["iterations"].as_u64().unwrap() >= 1, "{status}");
    assert!(notes["last_action"].as_str().is_some_and(|a| !a.is_empty()), "{status}");

    // The demo's queues exist with their gold sets, and the simulated experts annotate them through
    // the same leases as people; the iteration's dataset took the annotations there were.
    let queues = server.get("/api/v1/annotation-queues").await.expect(200);
    let keys: Vec<&str> = queues.as_array().unwrap().iter().map(|q| q["queue"]["key"].as_str().unwrap()).collect();
    assert_eq!(keys, ["discharge-review", "notes-review"], "{queues}");
    let annotated = Instant::now();
    let page = loop {
        let page = server.get("/api/v1/annotation-queues/notes-review").await.expect(200);
        if page["summary"]["progress"]["annotations"].as_i64().unwrap() >= 4 {
            break page;
        }
        assert!(annotated.elapsed() < Duration::from_secs(30), "the simulated experts annotate nothing: {page}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    assert_eq!(page["summary"]["progress"]["gold"], 8, "{page}");
    let experts = page["agreement"]["annotators"].as_array().unwrap();
    assert!(experts.iter().all(|a| a["annotator"].as_str().unwrap().starts_with("system:sim-expert-")), "{page}");
    let status = server.get("/api/v1/simulator").await.expect(200);
    assert!(status["loops"][0]["annotations"].as_u64().unwrap() >= 4, "{status}");
    assert!(iteration["annotations_used"].as_i64().is_some(), "built with annotations: {iteration}");
}
