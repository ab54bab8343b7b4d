//! Black-box tests of expert annotation through the real server: queues defined on a loop and sampled,
//! annotators (people signed in with the annotator role) taking items under leases and answering them,
//! the refusals that store nothing, agreement and gold scores, export and import, datasets built from
//! annotations with their lineage and a fine-tune on them, the loop's annotation volume, and budgets.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Scratch, Server, ndjson};
use reqwest::Method;
use reqwest::header::{COOKIE, ORIGIN, SET_COOKIE};
use serde_json::{Value, json};

const ENV: [(&str, &str); 3] = [("SLOPE_BASE_MODEL", ""), ("SLOPE_WORKERS", "1"), ("SLOPE_JOB_LEASE_SECONDS", "5")];
const PASSWORD: &str = "an annotator's long password";

/// The loop's interactions: a context, a suggestion (rejected on even rows) and what the clinician wrote.
fn events(n: usize) -> Vec<Value> {
    let symptoms = ["cough", "headache", "back pain", "sore throat", "fatigue", "dizziness"];
    let plans = ["rest and fluids.", "ibuprofen as needed.", "follow up in two weeks.", "order chest x-ray."];
    (0..n)
        .map(|i| {
            let written = plans[i % plans.len()];
            let suggestion = if i % 2 == 0 { "order an MRI." } else { written };
            json!({
                "event_id": format!("n-{i}"),
                "ts": format!("2026-06-{:02}T10:{:02}:00Z", 1 + i % 28, i % 60),
                "user_id": format!("clinician-{}", i % 7),
                "variant": "base",
                "suggested_chars": suggestion.chars().count(),
                "accepted_chars": if i % 2 == 0 { 0 } else { suggestion.chars().count() },
                "context": format!("Pt reports {} for {} days. Plan: ", symptoms[i % symptoms.len()], 2 + i % 5),
                "suggestion": suggestion,
                "final_text": written,
            })
        })
        .collect()
}

/// Runs `slope ARGS --data-dir DIR` with `stdin`, as an operator would; returns (success, stdout, stderr).
fn slope(dir: &Path, args: &[&str], stdin: &str) -> (bool, String, String) {
    use std::io::Write;
    let mut command = Command::new(env!("CARGO_BIN_EXE_slope"));
    command.args(args).arg("--data-dir").arg(dir).current_dir(dir);
    for (var, _) in std::env::vars() {
        if var.starts_with("SLOPE_") || var == "DATABASE_URL" {
            command.env_remove(var);
        }
    }
    command.envs(ENV).env("SLOPE_EVENT_STORE", dir.join("events"));
    command.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = command.spawn().unwrap_or_else(|e| panic!("cannot run slope {args:?}: {e}"));
    child.stdin.take().expect("stdin").write_all(stdin.as_bytes()).expect("write stdin");
    let out = child.wait_with_output().expect("slope ends");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A person signed in through the sign-in form: requests carry the session cookie and this server's
/// origin, as a browser's do.
struct Person<'a> {
    server: &'a Server,
    cookie: String,
}

impl Person<'_> {
    async fn call(&self, method: Method, path: &str, body: Option<&Value>) -> common::Reply {
        let mut request = reqwest::Client::new()
            .request(method.clone(), format!("{}{path}", self.server.base))
            .header(COOKIE, &self.cookie)
            .header(ORIGIN, &self.server.base);
        if let Some(body) = body {
            request = request.json(body);
        }
        self.server.send(request, format!("{method} {path}")).await
    }
}

async fn sign_in<'a>(server: &'a Server, dir: &Path, email: &str, role: &str) -> Person<'a> {
    let (ok, _, err) = slope(dir, &["admin", "member", "--email", email, "--role", role], &format!("{PASSWORD}\n"));
    assert!(ok, "adding {email}: {err}");
    let response = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .post(format!("{}/auth/login", server.base))
        .header(ORIGIN, &server.base)
        .form(&[("email", email), ("password", PASSWORD), ("org", ""), ("next", "/")])
        .send()
        .await
        .expect("sign-in answers");
    assert_eq!(response.status().as_u16(), 303, "sign-in of {email}");
    let cookie = response.headers()[SET_COOKIE].to_str().unwrap().split(';').next().unwrap().to_owned();
    Person { server, cookie }
}

async fn wait_job(server: &Server, id: &Value) -> Value {
    let start = Instant::now();
    loop {
        let job = server.get(&format!("/api/v1/jobs/{id}")).await.expect(200);
        if matches!(job["status"].as_str(), Some("succeeded" | "failed" | "cancelled")) {
            return job;
        }
        assert!(start.elapsed() < Duration::from_secs(300), "job {id} did not end: {job}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn queue(key: &str, labels: Value, overlap: i64) -> Value {
    json!({
        "key": key,
        "name": format!("Review {key}"),
        "loop": "notes",
        "sampling": { "policy": "random", "share": 1.0 },
        // Markdown, with what an operator must not be able to put into an annotator's page.
        "guidelines": "Correct the suggestion into **what the clinician meant** to write.\n\n\
                       <script>alert(1)</script>\n\nSee [unsafe](javascript:alert(1)).",
        "labels": labels,
        "annotators_per_item": overlap,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn experts_annotate_and_their_labels_become_training_data() {
    let scratch = Scratch::new("annotation");
    let dir = scratch.0.as_path();
    let server = Server::start(dir, &ENV);
    server.post_raw("/api/v1/loops/notes/events", "application/x-ndjson", ndjson(&events(24))).await.expect(201);

    // A definition is checked whole; a preference queue needs the loop's challenger.
    let bad = json!({
        "key": "Bad Key", "name": "", "loop": "notes",
        "sampling": { "policy": "random", "share": 2 },
        "labels": { "correction": true, "preference": true },
        "annotators_per_item": 9,
    });
    server.post("/api/v1/annotation-queues", &bad).await.expect_invalid(&[
        "key",
        "name",
        "sampling.share",
        "labels.preference",
        "annotators_per_item",
    ]);
    let mut unknown = queue("x", json!({ "rating": true }), 1);
    unknown["loop"] = json!("nobody");
    server.post("/api/v1/annotation-queues", &unknown).await.expect_invalid(&["loop"]);
    let preferring = queue("compare", json!({ "preference": true }), 1);
    let refused = server.post("/api/v1/annotation-queues", &preferring).await.expect_invalid(&["labels.preference"]);
    assert!(refused["fields"]["labels.preference"][0].as_str().unwrap().contains("no challenger"), "{refused}");
    assert!(server.get("/api/v1/annotation-queues").await.expect(200).as_array().unwrap().is_empty(), "nothing stored");

    // A correction queue, two annotators per item, over every interaction with a suggestion.
    let created = server
        .post(
            "/api/v1/annotation-queues",
            &queue(
                "review",
                json!({ "correction": true, "rating": true, "tags": true, "tag_set": ["wrong-plan", "typo"] }),
                2,
            ),
        )
        .await
        .expect(201);
    assert_eq!(
        (created["queue"]["version"].as_i64(), created["sampled"]["added"].as_u64()),
        (Some(1), Some(24)),
        "{created}"
    );
    let again = server.post("/api/v1/annotation-queues/review/sample", &json!({})).await.expect(200);
    assert_eq!((again["added"].as_u64(), again["considered"].as_u64()), (Some(0), Some(0)), "{again}");

    let ann = sign_in(&server, dir, "ann@example.org", "annotator").await;
    let bob = sign_in(&server, dir, "bob@example.org", "annotator").await;
    let exec = sign_in(&server, dir, "exec@example.org", "exec").await;

    // An annotator sees their queues and nothing else of the organisation.
    let listed = ann.call(Method::GET, "/api/v1/annotation-queues", None).await.expect(200);
    assert_eq!(listed[0]["queue"]["key"], "review");
    assert_eq!(listed[0]["you_may_annotate"], true);
    ann.call(Method::GET, "/api/v1/seasons", None).await.expect_error(403, "forbidden");
    ann.call(Method::GET, "/api/v1/annotation-queues/review", None).await.expect_error(403, "forbidden");
    // An exec reads the queue's aggregates and annotates nothing.
    exec.call(Method::GET, "/api/v1/annotation-queues/review", None).await.expect(200);
    exec.call(Method::POST, "/api/v1/annotation-queues/review/next", None).await.expect_error(403, "forbidden");

    // Leases: each annotator holds one item; asking again resumes it; two per item.
    let first = ann.call(Method::POST, "/api/v1/annotation-queues/review/next", None).await.expect(200);
    let resumed = ann.call(Method::POST, "/api/v1/annotation-queues/review/next", None).await.expect(200);
    assert_eq!(first["item_id"], resumed["item_id"]);
    assert!(first["context"].as_str().unwrap().starts_with("Pt reports"), "{first}");
    assert!(first.get("gold").is_none(), "annotators never see gold answers: {first}");
    let bobs = bob.call(Method::POST, "/api/v1/annotation-queues/review/next", None).await.expect(200);
    assert_eq!(bobs["item_id"], first["item_id"], "the item needs two annotators");
    let item = first["item_id"].as_i64().unwrap();
    let path = format!("/api/v1/annotation-queues/review/items/{item}/annotations");

    // Bad labels are refused by field and store nothing.
    let wrong = json!({ "correction": "x".repeat(5000), "rating": 9, "tags": ["vibes"], "preference": "alternative" });
    ann.call(Method::POST, &path, Some(&wrong)).await.expect_invalid(&["correction", "rating", "tags", "preference"]);
    ann.call(Method::POST, &path, Some(&json!({ "correction": "rest", "rating": 4, "color": "red" })))
        .await
        .expect_invalid(&["color"]);
    // Someone answering an item nobody holds is told it is not leased to them; one that others hold
    // is taken.
    let leader = sign_in(&server, dir, "leader@example.org", "leader").await;
    let all = server.get("/api/v1/annotation-queues/review/items").await.expect(200);
    let free = all.as_array().unwrap().last().unwrap()["id"].as_i64().unwrap();
    assert_ne!(free, item);
    let answer = json!({ "correction": "rest and fluids.", "rating": 4 });
    leader
        .call(Method::POST, &format!("/api/v1/annotation-queues/review/items/{free}/annotations"), Some(&answer))
        .await
        .expect_invalid(&["item"]);
    leader.call(Method::POST, &path, Some(&answer)).await.expect_error(409, "conflict");

    // The two answer; the item is done; the answer carries the next item.
    let correct = |text: &str, rating: i64| json!({ "correction": text, "rating": rating, "tags": ["wrong-plan"] });
    let answered = ann.call(Method::POST, &path, Some(&correct("rest and fluids.", 4))).await.expect(201);
    assert_eq!(answered["annotation"]["annotator"], "ann@example.org");
    assert!(answered["next"]["item_id"].as_i64().is_some_and(|n| n != item), "{answered}");
    bob.call(Method::POST, &path, Some(&correct("rest and fluid.", 4))).await.expect(201);
    // A second answer to a done item is a conflict: nothing is stored.
    let late = sign_in(&server, dir, "cy@example.org", "annotator").await;
    late.call(Method::POST, &path, Some(&correct("x", 1))).await.expect_error(409, "conflict");

    // Both work through the queue: ann labels everything she gets, bob skips one and flags one.
    let mut seen = 0;
    for person in [&ann, &bob] {
        let mut next = person.call(Method::POST, "/api/v1/annotation-queues/review/next", None).await;
        while next.status == 200 {
            let work: Value = serde_json::from_str(&next.text).unwrap();
            let id = work["item_id"].as_i64().unwrap();
            let written = work["final_text"].as_str().unwrap_or("rest.").to_owned();
            seen += 1;
            let body = match (person.cookie == bob.cookie, seen) {
                (true, n) if n % 11 == 0 => json!({ "outcome": "skip" }),
                (true, n) if n % 13 == 0 => json!({ "outcome": "flag", "note": "the context names a patient" }),
                (true, _) => correct(&written, 4),
                (false, _) => correct(&written, 5),
            };
            let reply = person
                .call(Method::POST, &format!("/api/v1/annotation-queues/review/items/{id}/annotations"), Some(&body))
                .await;
            assert_eq!(reply.status, 201, "{}", reply.text);
            next = person.call(Method::POST, "/api/v1/annotation-queues/review/next", None).await;
        }
        assert_eq!(next.status, 204, "nothing left: {}", next.text);
    }

    // Gold: an operator sets a known answer; annotators are scored against it.
    let items = server.get("/api/v1/annotation-queues/review/items").await.expect(200);
    let gold_item = items.as_array().unwrap().iter().find(|i| i["event_id"] == "n-1").unwrap().clone();
    server
        .put(
            &format!("/api/v1/annotation-queues/review/items/{}/gold", gold_item["id"]),
            &json!({ "correction": "ibuprofen as needed.", "rating": 5 }),
        )
        .await
        .expect(200);
    server
        .put(
            &format!("/api/v1/annotation-queues/review/items/{}/gold", gold_item["id"]),
            &json!({ "preference": "suggestion" }),
        )
        .await
        .expect_invalid(&["correction", "preference", "rating"]);
    let page = server.get("/api/v1/annotation-queues/review").await.expect(200);
    // The guidelines are kept as written and rendered for pages, formatted but unable to script.
    assert!(page["summary"]["queue"]["settings"]["guidelines"].as_str().unwrap().contains("<script>"), "{page}");
    let guidelines = page["guidelines_html"].as_str().unwrap();
    assert!(guidelines.contains("<strong>what the clinician meant</strong>"), "{guidelines}");
    assert!(guidelines.contains("&lt;script&gt;") && !guidelines.contains("<script"), "{guidelines}");
    assert!(guidelines.contains(r##"<a href="#">unsafe</a>"##), "{guidelines}");
    let progress = &page["summary"]["progress"];
    let flagged = progress["flagged"].as_i64().unwrap();
    assert_eq!(progress["items"], 24, "{page}");
    assert!(flagged >= 1, "bob flagged: {page}");
    let agreement = &page["agreement"];
    assert!(agreement["items_compared"].as_u64().unwrap() >= 20, "{agreement}");
    let distance = agreement["correction_distance"]["value"].as_f64().unwrap();
    assert!(distance < 0.1, "they wrote nearly the same corrections: {agreement}");
    assert!(agreement["correction_distance"]["low"].is_number(), "with its interval: {agreement}");
    let annotators = agreement["annotators"].as_array().unwrap();
    let who = |email: &str| annotators.iter().find(|a| a["annotator"] == email).unwrap().clone();
    assert_eq!(who("ann@example.org")["gold"]["value"], 1.0, "{agreement}");
    assert!(who("bob@example.org")["skipped"].as_i64().unwrap() >= 1, "{agreement}");
    assert_eq!(page["flagged"][0]["note"], "the context names a patient", "{page}");
    assert_eq!(page["gold"].as_array().unwrap().len(), 1);

    // Export, then import into a second queue of the loop: the file goes in as it came out.
    let exported = server.get("/api/v1/annotation-queues/review/export").await;
    assert_eq!(exported.status, 200);
    let lines = exported.text.lines().count();
    assert!(lines >= 48, "every answer with its item: {lines}");
    assert!(exported.text.lines().next().unwrap().contains("\"context\":\"Pt reports"), "{}", exported.text);
    server
        .post(
            "/api/v1/annotation-queues",
            &queue("mirror", json!({ "correction": true, "rating": true, "tags": true }), 2),
        )
        .await
        .expect(201);
    let bad_file = b"{\"event_id\":\"n-0\",\"annotator\":\"v\",\"correction\":\"rest.\",\"rating\":4}\n{\"event_id\":\"nowhere\",\"annotator\":\"v\",\"correction\":\"x\",\"rating\":7}\n".to_vec();
    server
        .post_raw("/api/v1/annotation-queues/mirror/import", "application/x-ndjson", bad_file)
        .await
        .expect_invalid(&["line 2: rating"]);
    let unknown_event = b"{\"event_id\":\"nowhere\",\"annotator\":\"v\",\"correction\":\"x\",\"rating\":3}\n".to_vec();
    server
        .post_raw("/api/v1/annotation-queues/mirror/import", "application/x-ndjson", unknown_event)
        .await
        .expect_invalid(&["line 1: event_id"]);
    let mirror = server.get("/api/v1/annotation-queues/mirror").await.expect(200);
    assert_eq!(mirror["summary"]["progress"]["annotations"], 0, "a refused import stores nothing");
    let imported = server
        .post_raw("/api/v1/annotation-queues/mirror/import", "application/x-ndjson", exported.text.clone().into_bytes())
        .await
        .expect(201);
    assert_eq!(imported["annotations"].as_u64(), Some(lines as u64), "{imported}");

    // Datasets from annotations: corrections become SFT rows, corrections that differ from the
    // suggestion become preference pairs, each row traced to its annotations.
    let built = server.post("/api/v1/loops/notes/datasets?from=annotations", &json!({})).await.expect(201);
    assert_eq!(built["from"], "annotations");
    assert!(built["annotations_used"].as_u64().unwrap() >= 40, "{built}");
    let sft = &built["sft"];
    assert_eq!(sft["rows"], 24 - flagged, "one row per resolved item (flagged ones are out): {built}");
    assert!(sft["source"]["annotations"].as_i64().unwrap() >= 40, "{built}");
    assert!(sft["source"]["annotation_lineage"].is_string(), "{built}");
    assert!(built["preference"]["rows"].as_i64().unwrap() >= 10, "rejected MRI suggestions: {built}");
    server.post("/api/v1/loops/notes/datasets?from=vibes", &json!({})).await.expect_invalid(&["from"]);
    let both = server.post("/api/v1/loops/notes/datasets?from=both", &json!({})).await.expect(201);
    assert_eq!(both["events_read"], 24);
    assert_eq!(both["sft"]["rows"], 24, "every event, annotated ones from their annotations: {both}");

    // A fine-tune on the annotated data, from a tiny pre-trained model.
    let corpus: Vec<Value> = events(24)
        .iter()
        .map(|e| json!({ "text": format!("{}{}", e["context"].as_str().unwrap(), e["final_text"].as_str().unwrap()) }))
        .collect();
    let corpus =
        server.post_raw("/api/v1/datasets?name=corpus", "application/x-ndjson", ndjson(&corpus)).await.expect(201);
    let tiny = json!({ "vocab_size": 257, "n_layer": 1, "n_head": 2, "d_model": 32, "ctx_len": 64 });
    let train = json!({ "steps": 20, "batch_size": 4, "lr": 0.003, "warmup_steps": 2, "checkpoint_every": 0 });
    let pretrain = server
        .post(
            "/api/v1/jobs",
            &json!({ "kind": "pretrain", "dataset_id": corpus["dataset"]["id"], "model_config": tiny, "train": train }),
        )
        .await
        .expect(201);
    let pretrained = wait_job(&server, &pretrain["id"]).await;
    assert_eq!(pretrained["status"], "succeeded", "{pretrained}");
    let sft_job = server
        .post(
            "/api/v1/jobs",
            &json!({ "kind": "sft", "loop": "notes", "model_id": pretrained["result"]["model_id"], "dataset_id": sft["id"], "train": train }),
        )
        .await
        .expect(201);
    let tuned = wait_job(&server, &sft_job["id"]).await;
    assert_eq!(tuned["status"], "succeeded", "{tuned}");

    // Preferences: with the tuned model as the loop's challenger, a queue of the interactions where it
    // disagrees most with what was served sets its suggestion beside the served one, in an order that
    // names neither model; the preferences become pairs of the preference set.
    let challenger = tuned["result"]["model_id"].clone();
    server.post("/api/v1/loops/notes/challenger", &json!({ "model_id": challenger })).await.expect(200);
    let mut compare = queue("compare", json!({ "preference": true, "rating": true }), 1);
    compare["sampling"] = json!({ "policy": "disagreement", "count": 6 });
    let created = server.post("/api/v1/annotation-queues", &compare).await.expect(201);
    let added = created["sampled"]["added"].as_u64().unwrap();
    assert!((1..=6).contains(&added), "{created}");
    let items = server.get("/api/v1/annotation-queues/compare/items").await.expect(200);
    for item in items.as_array().unwrap() {
        assert_eq!(item["alternative"]["model_id"], challenger, "{item}");
        assert_ne!(item["alternative"]["text"], item["suggestion"], "identical suggestions are left out: {item}");
    }
    let mut labelled = 0;
    while let Some(work) = {
        let reply = ann.call(Method::POST, "/api/v1/annotation-queues/compare/next", None).await;
        (reply.status == 200).then(|| serde_json::from_str::<Value>(&reply.text).unwrap())
    } {
        let options = work["options"].as_array().unwrap();
        assert_eq!(options.iter().map(|o| o["label"].as_str().unwrap()).collect::<Vec<_>>(), ["A", "B"], "{work}");
        assert!(!work.to_string().contains("\"model\""), "no model names reach the annotator: {work}");
        let path = format!("/api/v1/annotation-queues/compare/items/{}/annotations", work["item_id"]);
        // A correction on a preference item is refused by field.
        ann.call(Method::POST, &path, Some(&json!({ "correction": "x", "preference": "alternative", "rating": 3 })))
            .await
            .expect_invalid(&["correction"]);
        ann.call(Method::POST, &path, Some(&json!({ "preference": "suggestion", "rating": 4 }))).await.expect(201);
        labelled += 1;
    }
    assert_eq!(labelled as u64, added);
    let compared = server.post("/api/v1/loops/notes/datasets?from=annotations", &json!({})).await.expect(201);
    assert!(
        compared["preference"]["rows"].as_i64().unwrap() >= built["preference"]["rows"].as_i64().unwrap(),
        "the preferences add pairs: {compared}"
    );

    // The loop's stack counts the real annotations, and each week's volume.
    let stack = server.get("/api/v1/loops/notes/stack").await.expect(200);
    let expert: i64 = stack["metabolism"]["weeks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["expert_annotations"].as_i64().unwrap())
        .sum();
    let labelled = page["summary"]["progress"]["annotations"].as_i64().unwrap()
        + mirror["summary"]["progress"]["annotations"].as_i64().unwrap();
    assert!(expert >= labelled && expert > 40, "{expert} expert annotations: {stack}");
    assert_eq!(stack["metabolism"]["expert_annotations"], expert, "{stack}");

    // Budgets: a key result fed by the loop's acceptance has one, saying there is too little history.
    server
        .post("/api/v1/metrics", &json!({ "key": "notes.acceptance", "name": "Notes acceptance", "kind": "acceptance-rate", "loop": "notes" }))
        .await
        .expect(201);
    let (_, kr) = common::key_result_fed_by(&server, "notes.acceptance").await;
    let budget = server.get(&format!("/api/v1/key-results/{kr}/annotation-budget")).await.expect(200);
    assert!(budget["budget"]["why_not"].as_str().unwrap().starts_with("Too little history"), "{budget}");
    assert_eq!(budget["budget"]["annotations_so_far"], expert, "{budget}");
    let loop_budget = server.get("/api/v1/loops/notes/annotation-budget").await.expect(200);
    assert_eq!(loop_budget["key_results"][0]["key_result_id"], kr, "{loop_budget}");
    server.get("/api/v1/loops/nobody/annotation-budget").await.expect_error(404, "not_found");

    // Every answer is on the audit trail.
    let audit = server.get("/api/v1/audit?entity=annotation&id=1").await.expect(200);
    assert_eq!(audit[0]["actor"], "ann@example.org", "{audit}");

    // The command line: the same export, an import refused naming its line (exit status not 0, nothing
    // stored), agreement and the budget.
    let (ok, out, err) = slope(dir, &["annotate", "export", "--queue", "review"], "");
    assert!(ok, "{err}");
    assert_eq!(out, exported.text, "the CLI exports what the API does");
    let bad = dir.join("bad.jsonl");
    std::fs::write(&bad, "{\"event_id\":\"n-0\",\"annotator\":\"x\",\"correction\":\"rest.\",\"rating\":4}\n{\"event_id\":\"n-2\",\"annotator\":\"x\"}\n").unwrap();
    let before = mirror_labelled(&server).await;
    let (ok, _, err) = slope(dir, &["annotate", "import", "--queue", "mirror", bad.to_str().unwrap()], "");
    assert!(!ok, "a bad file fails the command");
    assert!(err.contains("line 2: correction") && err.contains("bad.jsonl"), "{err}");
    assert_eq!(mirror_labelled(&server).await, before, "nothing stored");
    let good = dir.join("good.jsonl");
    std::fs::write(
        &good,
        "{\"event_id\":\"n-0\",\"annotator\":\"cli-vendor\",\"correction\":\"rest.\",\"rating\":4}\n",
    )
    .unwrap();
    let (ok, out, err) = slope(dir, &["annotate", "import", "--queue", "mirror", good.to_str().unwrap()], "");
    assert!(ok && out.contains("1 annotations imported into queue mirror"), "{out}{err}");
    let (ok, out, err) = slope(dir, &["annotate", "agreement", "--queue", "review"], "");
    assert!(ok && out.contains("correction (mean normalised edit distance): 0.0"), "{out}{err}");
    assert!(out.contains("ann@example.org"), "{out}");
    let (ok, out, err) = slope(dir, &["annotate", "budget", "--key-result", &kr.to_string()], "");
    assert!(ok && out.contains("Too little history"), "{out}{err}");
    let (ok, out, _) = slope(dir, &["annotate", "queues"], "");
    assert!(ok && out.contains("mirror") && out.contains("review"), "{out}");
    let (ok, _, err) = slope(dir, &["annotate", "sample", "--queue", "nobody"], "");
    assert!(!ok && err.contains("no annotation queue has the key \"nobody\""), "{err}");
}

async fn mirror_labelled(server: &Server) -> Value {
    server.get("/api/v1/annotation-queues/mirror").await.expect(200)["summary"]["progress"]["annotations"].clone()
}
