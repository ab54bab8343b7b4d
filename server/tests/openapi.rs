//! The OpenAPI description of `/api/v1`: the committed `docs/openapi.json` is exactly what the code
//! generates, the server serves it without authentication, and it describes every route well enough
//! for clients and for tests that walk every operation.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

use common::{Scratch, Server};
use serde_json::Value;

const REGENERATE: &str = "cargo run -p slope -- openapi > docs/openapi.json";
const METHODS: [&str; 8] = ["get", "put", "post", "delete", "options", "head", "patch", "trace"];
/// The only operations that need no caller.
const PUBLIC: [(&str, &str); 1] = [("get", "/api/v1/openapi.json")];

fn committed() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/openapi.json");
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {path} ({e}); generate it with `{REGENERATE}`"))
}

/// What `slope openapi` prints.
fn printed() -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_slope"))
        .arg("openapi")
        // No configuration is read, but a developer's environment must not matter either way.
        .env_remove("DATABASE_URL")
        .output()
        .expect("slope openapi runs");
    assert!(out.status.success(), "slope openapi failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("the description is UTF-8")
}

/// Where two texts first differ, as a line number and both lines, for a readable failure.
fn first_difference((a_name, a): (&str, &str), (b_name, b): (&str, &str)) -> String {
    let (mut a, mut b) = (a.lines(), b.lines());
    for n in 1.. {
        match (a.next(), b.next()) {
            (Some(x), Some(y)) if x == y => continue,
            (None, None) => break,
            (x, y) => return format!("first at line {n}: {a_name} {x:?}, {b_name} {y:?}"),
        }
    }
    "only the line endings or the final newline differ".to_owned()
}

/// Every operation as (method, path, operation object), in path order.
fn operations(spec: &Value) -> Vec<(String, String, &Value)> {
    let paths = spec["paths"].as_object().expect("`paths` is an object");
    let mut ops = vec![];
    for (path, item) in paths {
        for (method, op) in item.as_object().expect("a path item is an object") {
            if METHODS.contains(&method.as_str()) {
                ops.push((method.clone(), path.clone(), op));
            }
        }
    }
    ops
}

/// Every `$ref` in a JSON value.
fn refs<'a>(value: &'a Value, out: &mut Vec<&'a str>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v) {
                    ("$ref", Value::String(r)) => out.push(r),
                    _ => refs(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
        _ => {}
    }
}

#[test]
fn the_committed_description_is_what_the_code_generates() {
    let (committed, printed) = (committed(), printed());
    assert!(
        committed == printed,
        "docs/openapi.json is out of date with the handlers ({}). Regenerate it with `{REGENERATE}` \
         (or `cargo xtask openapi`) and commit it.",
        first_difference(("committed", &committed), ("generated", &printed))
    );
}

#[test]
fn the_description_is_openapi_3_1_and_complete() {
    let spec: Value = serde_json::from_str(&printed()).expect("the description is JSON");
    let version = spec["openapi"].as_str().expect("an `openapi` version");
    assert!(version.starts_with("3.1."), "the description is OpenAPI {version}, not 3.1.x");
    assert!(spec["info"]["title"].is_string() && spec["info"]["version"].is_string(), "info: {}", spec["info"]);

    let declared_tags: BTreeSet<&str> =
        spec["tags"].as_array().expect("declared tags").iter().filter_map(|t| t["name"].as_str()).collect();
    let schemes = spec["components"]["securitySchemes"].as_object().expect("security schemes");
    assert_eq!(schemes["bearer"]["type"], "http", "{schemes:?}");
    assert_eq!(schemes["bearer"]["scheme"], "bearer", "{schemes:?}");
    assert_eq!(schemes["session"]["type"], "apiKey", "{schemes:?}");
    assert_eq!(schemes["session"]["in"], "cookie", "{schemes:?}");
    assert_eq!(schemes["session"]["name"], "slope_session", "{schemes:?}");

    let ops = operations(&spec);
    assert!(ops.len() >= 70, "only {} operations are described", ops.len());
    let mut ids: BTreeMap<&str, String> = BTreeMap::new();
    for (method, path, op) in &ops {
        let what = format!("{} {path}", method.to_uppercase());
        assert!(path.starts_with("/api/v1/"), "{what}: the path must be the full one, under /api/v1");
        let responses = op["responses"].as_object().unwrap_or_else(|| panic!("{what}: no responses"));
        assert!(!responses.is_empty(), "{what}: no responses");
        assert!(
            responses.keys().any(|status| status.starts_with('2')),
            "{what}: no success response among {:?}",
            responses.keys().collect::<Vec<_>>()
        );
        let tags = op["tags"].as_array().unwrap_or_else(|| panic!("{what}: no tags"));
        assert!(!tags.is_empty(), "{what}: no tags");
        for tag in tags {
            let tag = tag.as_str().expect("a tag is a string");
            assert!(declared_tags.contains(tag), "{what}: tag {tag:?} is not declared at the top");
        }
        let summary = op["summary"].as_str().unwrap_or_default();
        assert!(summary.ends_with('.'), "{what}: the summary (the handler's doc comment) should be a sentence");
        let id = op["operationId"].as_str().unwrap_or_else(|| panic!("{what}: no operationId"));
        if let Some(other) = ids.insert(id, what.clone()) {
            panic!("{what} and {other} share the operationId {id:?}");
        }

        // Path parameters: each `{name}` of the path is declared, and nothing else is.
        let in_path: BTreeSet<&str> =
            path.split('/').filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}'))).collect();
        let declared: BTreeSet<&str> = op["parameters"]
            .as_array()
            .map(|ps| ps.iter().filter(|p| p["in"] == "path").filter_map(|p| p["name"].as_str()).collect())
            .unwrap_or_default();
        assert_eq!(in_path, declared, "{what}: path parameters");

        // Security: every operation but the public ones takes a token or a session.
        let public = PUBLIC.contains(&(method.as_str(), path.as_str()));
        let security = op["security"].as_array().unwrap_or_else(|| panic!("{what}: no security requirement"));
        let schemes: BTreeSet<&str> =
            security.iter().flat_map(|r| r.as_object().expect("a requirement").keys().map(String::as_str)).collect();
        if public {
            assert!(security.iter().any(|r| r.as_object().is_some_and(|r| r.is_empty())), "{what}: should be public");
        } else {
            assert_eq!(schemes, BTreeSet::from(["bearer", "session"]), "{what}: security");
            assert!(responses.contains_key("401"), "{what}: an operation that needs a caller can answer 401");
        }
    }
    for (method, path) in PUBLIC {
        assert!(ops.iter().any(|(m, p, _)| m == method && p == path), "{method} {path} is not described");
    }

    // Every reference points at something the description holds.
    let mut found = vec![];
    refs(&spec, &mut found);
    for r in found {
        let pointer = r.strip_prefix('#').unwrap_or_else(|| panic!("{r} is not a local reference"));
        assert!(spec.pointer(pointer).is_some(), "{r} points at nothing");
    }
}

/// A path of the description with its parameters filled in.
fn concrete(path: &str) -> String {
    path.split('/')
        .map(|s| if s.starts_with('{') { if s == "{id}" { "1" } else { "x" } } else { s })
        .collect::<Vec<_>>()
        .join("/")
}

#[tokio::test]
async fn the_server_serves_it_anonymously_and_routes_every_operation() {
    let scratch = Scratch::new("openapi");
    let server = Server::start(&scratch.0, &[]);
    let anonymous = reqwest::Client::builder().no_proxy().build().expect("HTTP client");

    let response =
        anonymous.get(format!("{}/api/v1/openapi.json", server.base)).send().await.expect("GET /api/v1/openapi.json");
    assert_eq!(response.status().as_u16(), 200, "GET /api/v1/openapi.json needs no caller");
    let content_type = response.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default();
    assert!(content_type.starts_with("application/json"), "content type {content_type:?}");
    let served = response.text().await.expect("the document");
    // The same bytes as `slope openapi` prints (whether docs/openapi.json is up to date is the first
    // test's concern).
    let printed = printed();
    assert!(
        served == printed,
        "the served document differs from what `slope openapi` prints ({})",
        first_difference(("printed", &printed), ("served", &served))
    );

    // Each described operation is a route of the server: asked anonymously, it answers 401 (not the 404
    // of an unknown path, nor the 405 of a method the path does not take).
    let spec: Value = serde_json::from_str(&served).expect("the description is JSON");
    for (method, path, _) in operations(&spec) {
        if PUBLIC.contains(&(method.as_str(), path.as_str())) {
            continue;
        }
        let url = format!("{}{}", server.base, concrete(&path));
        let verb = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).expect("an HTTP method");
        let response = anonymous.request(verb, &url).send().await.unwrap_or_else(|e| panic!("{method} {url}: {e}"));
        let status = response.status().as_u16();
        let body = response.text().await.unwrap_or_default();
        assert_eq!(status, 401, "{} {path} asked anonymously: {body}", method.to_uppercase());
        let body: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{method} {path}: not JSON ({e})"));
        assert_eq!(body["error"]["code"], "unauthorized", "{method} {path}: {body}");
    }
}
