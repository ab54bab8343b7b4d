//! The authorization matrix: every operation of `/api/v1` × every kind of principal × the caller's own
//! organisation and another one, each cell checked against the expected status.
//!
//! The operations are read from `docs/openapi.json`, the committed OpenAPI description of the API, and
//! each must have an entry in [`table`]: the action it needs, how to fill its path and a body that
//! parses (so that a refused principal reaches the service's authorization instead of failing body
//! parsing). The test fails, naming them, when the description has an operation without an entry or the
//! table has an entry the description lacks: a new route cannot slip in without its rule.
//!
//! What each principal may do is written out in [`RULE`], independently of `Actor::can`, so that a change
//! of the product's rule makes this test fail until someone decides that the change was meant.
//!
//! The expected answer of a cell:
//! - anonymous → 401 (public operations such as the OpenAPI document → allowed);
//! - a principal the rule does not allow the action → 403;
//! - allowed, in its own organisation → anything in 200..=299, or 409/422 (authorization passed and the
//!   input was refused); never 401, 403, 404 or 5xx;
//! - allowed, with an id or key of the other organisation in the path (and in the body, where the body
//!   names entities too) → 404, as if it did not exist. The one exception is posting events: a loop's key
//!   names a stream that the first batch creates in the caller's own organisation, so that cell expects
//!   what the caller's own organisation gets, and the other organisation's loop must stay as it was.
//!
//! Besides the status, no answer to a principal of the default organisation may show the other
//! organisation's data ([`LEAK_MARKERS`]).
//!
//! Squad goals are the one action that depends on the entity: a squad member may change the goals of
//! their squad X and gets 403 for a goal of squad Y of the same organisation; every other principal is
//! checked on both squads too.
//!
//! One server runs the whole matrix (on two cores in CI); requests are sent one at a time. Every cell
//! is recorded and the mismatches are listed together at the end, with the answer's body, so that one
//! run shows every place where the product and the rule disagree.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Scratch, Server, ndjson};
use reqwest::Method;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, COOKIE, ORIGIN, SET_COOKIE};
use serde_json::{Value, json};

/// No shipped base model (it would only slow the start); one worker for the setup's training jobs, and a
/// short lease so that a cancelled job stops within seconds.
const ENV: [(&str, &str); 3] = [("SLOPE_BASE_MODEL", ""), ("SLOPE_WORKERS", "1"), ("SLOPE_JOB_LEASE_SECONDS", "2")];
const NDJSON: &str = "application/x-ndjson";
const PASSWORD: &str = "the matrix's long password";
/// An account that admins add to the default organisation and remove again, for `DELETE /members/{id}`.
const VICTIM: &str = "victim@example.org";

// ---- the rule ------------------------------------------------------------------------------------

/// What a request wants to do, as the service layer names it (`slope_domain::Action`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Act {
    Read,
    EditPlan,
    /// Changing the goals (and goal check-ins) of one squad; which squad decides for squad members.
    EditSquadGoals,
    Operate,
    Ingest,
    Administer,
    /// Taking and answering items of an annotation queue (the matrix's queue is open to the annotator
    /// role and to squad X).
    Annotate,
}

const ACTS: [Act; 7] =
    [Act::Read, Act::EditPlan, Act::EditSquadGoals, Act::Operate, Act::Ingest, Act::Administer, Act::Annotate];

/// What an operation needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Need {
    /// Anyone, signed in or not (the OpenAPI document).
    Public,
    /// Any signed-in principal (`/me`).
    SignedIn,
    Do(Act),
    /// Either of two actions (the list of annotation queues: readers see them all, annotators theirs).
    Either(Act, Act),
}

/// The principals of the matrix: a browser without a session, members of each role signed in with a
/// session cookie, and scripts with API tokens of one scope each.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Who {
    Anonymous,
    Admin,
    Leader,
    SquadMember,
    Exec,
    Annotator,
    ReadToken,
    WriteToken,
    IngestToken,
}

impl Who {
    fn label(self) -> &'static str {
        match self {
            Who::Anonymous => "anonymous",
            Who::Admin => "admin",
            Who::Leader => "leader",
            Who::SquadMember => "squad-member",
            Who::Exec => "exec",
            Who::Annotator => "annotator",
            Who::ReadToken => "token:read",
            Who::WriteToken => "token:write",
            Who::IngestToken => "token:ingest",
        }
    }
}

/// Whether a principal may do an action.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum May {
    Yes,
    No,
    /// Only for the squads the member belongs to (squad X here).
    OwnSquads,
}

use May::{No as N, OwnSquads as O, Yes as Y};

/// The product's rule, written out: a row per principal, a column per action in the order of [`ACTS`]
/// (Read, EditPlan, EditSquadGoals, Operate, Ingest, Administer, Annotate). Tokens never administer nor
/// annotate; `write` implies reading; `ingest` grants nothing else; an annotator annotates and nothing
/// else.
#[rustfmt::skip]
const RULE: [(Who, [May; 7]); 8] = [
    //                   Read EditPlan Goals Operate Ingest Administer Annotate
    (Who::Admin,       [Y,   Y,       Y,    Y,      Y,     Y,         Y]),
    (Who::Leader,      [Y,   Y,       Y,    Y,      Y,     N,         Y]),
    (Who::SquadMember, [Y,   N,       O,    N,      N,     N,         Y]),
    (Who::Exec,        [Y,   N,       N,    N,      N,     N,         N]),
    (Who::Annotator,   [N,   N,       N,    N,      N,     N,         Y]),
    (Who::ReadToken,   [Y,   N,       N,    N,      N,     N,         N]),
    (Who::WriteToken,  [Y,   Y,       Y,    Y,      N,     N,         N]),
    (Who::IngestToken, [N,   N,       N,    N,      Y,     N,         N]),
];

fn may(who: Who, act: Act) -> May {
    let row = RULE.iter().find(|(w, _)| *w == who).unwrap_or_else(|| panic!("{who:?} has no row in RULE"));
    row.1[ACTS.iter().position(|a| *a == act).expect("every action has a column")]
}

/// Which of the organisation's two squads (and their goals) a cell works on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Squad {
    X,
    Y,
}

/// Whose entities fill the path (and the body).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Side {
    Own(Squad),
    Other,
}

/// The answer a cell expects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Want {
    /// 200..=299, or 409/422: authorization passed.
    Allowed,
    Status(u16),
}

impl Want {
    fn accepts(self, status: u16) -> bool {
        match self {
            Want::Allowed => (200..=299).contains(&status) || status == 409 || status == 422,
            Want::Status(s) => status == s,
        }
    }

    fn describe(self) -> String {
        match self {
            Want::Allowed => "2xx/409/422".to_owned(),
            Want::Status(s) => s.to_string(),
        }
    }
}

fn expected(who: Who, need: Need, side: Side) -> Want {
    let act = match need {
        Need::Public => return Want::Allowed,
        Need::SignedIn if who == Who::Anonymous => return Want::Status(401),
        Need::SignedIn => return Want::Allowed,
        Need::Do(_) | Need::Either(..) if who == Who::Anonymous => return Want::Status(401),
        Need::Do(act) => act,
        Need::Either(a, b) => {
            if may(who, a) == May::No {
                b
            } else {
                a
            }
        }
    };
    match (may(who, act), side) {
        (May::No, _) => Want::Status(403),
        (May::Yes, Side::Own(_)) => Want::Allowed,
        (May::OwnSquads, Side::Own(Squad::X)) => Want::Allowed,
        (May::OwnSquads, Side::Own(Squad::Y)) => Want::Status(403),
        // An entity of another organisation does not exist for the caller.
        (May::Yes | May::OwnSquads, Side::Other) => Want::Status(404),
    }
}

// ---- the table -----------------------------------------------------------------------------------

/// One path parameter's value.
#[derive(Clone, Debug)]
enum P {
    V(String),
    /// A member that may be removed: a fresh one for a cell that should succeed, a standing one otherwise.
    Member,
    /// A token that may be revoked, likewise.
    Token,
    /// An open invitation that may be revoked, likewise.
    Invitation,
    /// A contact point that may be removed, likewise.
    ContactPoint,
}

fn v(value: impl ToString) -> P {
    P::V(value.to_string())
}

enum Body {
    None,
    Json(fn(&Org, Squad) -> Value),
    /// An edit: `json` and the `version` stored now, read with the organisation's own token from `GET get`
    /// at the JSON pointer `pointer`, so that an allowed edit meets no conflict it did not cause.
    Edit {
        get: fn(&Org, Squad) -> String,
        pointer: &'static str,
        json: fn(&Org, Squad) -> Value,
    },
    Raw {
        content_type: &'static str,
        bytes: fn(&Org) -> Vec<u8>,
    },
    /// `{"plan": <the season's plan file as exported now>, "dry_run": …}`.
    Plan {
        dry_run: bool,
    },
}

struct Case {
    need: Need,
    body: Body,
    /// What the case is, when an operation has several (`dry_run`).
    note: &'static str,
}

/// How a cell with the other organisation's ids is judged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Cross {
    /// The ids and keys name entities: another organisation's are not found (404).
    NotFound,
    /// The key names a stream that the request creates in the caller's own organisation (the first batch
    /// of events makes a loop), so there is nothing of the other organisation to find: the cell expects
    /// what the caller's own organisation gets, and afterwards the other organisation's loop must be as
    /// it was. These cells run last, since they create the key in the caller's organisation.
    CreatesOwn,
}

struct Entry {
    method: &'static str,
    path: &'static str,
    params: fn(&Org, Squad) -> Vec<P>,
    query: &'static str,
    cases: Vec<Case>,
    cross: Cross,
}

impl Entry {
    fn also(mut self, need: Need, body: Body, note: &'static str) -> Entry {
        self.cases.push(Case { need, body, note });
        self
    }

    fn query(mut self, query: &'static str) -> Entry {
        self.query = query;
        self
    }

    fn cross(mut self, cross: Cross) -> Entry {
        self.cross = cross;
        self
    }

    fn has_params(&self) -> bool {
        self.path.contains('{')
    }
}

fn op(method: &'static str, path: &'static str, need: Need, params: fn(&Org, Squad) -> Vec<P>, body: Body) -> Entry {
    Entry { method, path, params, query: "", cases: vec![Case { need, body, note: "" }], cross: Cross::NotFound }
}

fn none(_: &Org, _: Squad) -> Vec<P> {
    vec![]
}

const READ: Need = Need::Do(Act::Read);
const PLAN: Need = Need::Do(Act::EditPlan);
const GOALS: Need = Need::Do(Act::EditSquadGoals);
const OPERATE: Need = Need::Do(Act::Operate);
const INGEST: Need = Need::Do(Act::Ingest);
const ADMINISTER: Need = Need::Do(Act::Administer);
const ANNOTATE: Need = Need::Do(Act::Annotate);

/// Every operation of `/api/v1`, with what it needs, its path parameters (in the order they appear) and
/// a body that parses.
fn table() -> Vec<Entry> {
    use Body::{Edit, Json, Raw};
    vec![
        // ---- meta and access
        op("GET", "/api/v1/openapi.json", Need::Public, none, Body::None),
        op("GET", "/api/v1/me", Need::SignedIn, none, Body::None),
        op("GET", "/api/v1/members", READ, none, Body::None),
        op(
            "PUT",
            "/api/v1/members",
            ADMINISTER,
            none,
            Json(|_, _| json!({ "email": "newcomer@example.org", "role": "exec" })),
        ),
        op("GET", "/api/v1/invitations", ADMINISTER, none, Body::None),
        op("POST", "/api/v1/invitations/{id}/revoke", ADMINISTER, |_, _| vec![P::Invitation], Body::None),
        op("DELETE", "/api/v1/members/{id}", ADMINISTER, |_, _| vec![P::Member], Body::None),
        op("GET", "/api/v1/units", READ, none, Body::None),
        op("PUT", "/api/v1/units", ADMINISTER, none, Json(|_, _| json!({ "name": "Matrix unit", "parent": "" }))),
        op("GET", "/api/v1/tokens", ADMINISTER, none, Body::None),
        op("POST", "/api/v1/tokens", ADMINISTER, none, Json(|_, _| json!({ "name": "matrix", "scopes": ["read"] }))),
        op("POST", "/api/v1/tokens/{id}/revoke", ADMINISTER, |_, _| vec![P::Token], Body::None),
        op("GET", "/api/v1/audit", READ, none, Body::None),
        // ---- the adoption dashboard
        op("GET", "/api/v1/adoption", READ, none, Body::None),
        op("GET", "/api/v1/adoption/rules", READ, none, Body::None),
        op("GET", "/api/v1/monitors", READ, none, Body::None),
        op(
            "POST",
            "/api/v1/monitors",
            OPERATE,
            none,
            Json(
                |_, _| json!({ "key": "matrix-jobs", "name": "Jobs succeed", "kind": "job-failed", "enabled": false }),
            ),
        ),
        op("POST", "/api/v1/monitors/{key}/run", OPERATE, |o, _| vec![v(&o.monitor)], Body::None),
        op("GET", "/api/v1/alerts", READ, none, Body::None).query("open=true"),
        op("GET", "/api/v1/alerts/{id}", READ, |o, _| vec![v(o.alerts[0])], Body::None),
        // A squad's alert is the squad's: its members may silence it, as they may change its goals.
        op(
            "POST",
            "/api/v1/alerts/{id}/silence",
            GOALS,
            |o, s| vec![v(o.alerts[s as usize])],
            Json(|_, _| json!({ "hours": 1, "note": "matrix" })),
        ),
        op("GET", "/api/v1/inbox", READ, none, Body::None),
        op("POST", "/api/v1/inbox/read", READ, none, Json(|_, _| json!({}))),
        op("GET", "/api/v1/contact-points", OPERATE, none, Body::None),
        op(
            "POST",
            "/api/v1/contact-points",
            OPERATE,
            none,
            Json(|_, _| json!({ "name": "Matrix", "url": "https://hooks.example.com/matrix" })),
        ),
        op("DELETE", "/api/v1/contact-points/{id}", OPERATE, |_, _| vec![P::ContactPoint], Body::None),
        op("GET", "/api/v1/deliveries", OPERATE, none, Body::None),
        op("GET", "/api/v1/deliveries/{id}/attempts", OPERATE, |o, _| vec![v(o.delivery)], Body::None),
        op("GET", "/api/v1/notification-settings", READ, none, Body::None),
        op(
            "PUT",
            "/api/v1/notification-settings",
            ADMINISTER,
            none,
            Json(|_, _| json!({ "allow_internal_webhooks": false })),
        ),
        // The first allowed principal sets version 1; the others' version 0 is stale, and their 409 still
        // shows they were allowed.
        op(
            "PUT",
            "/api/v1/adoption/rules",
            ADMINISTER,
            none,
            Json(
                |_, _| json!({ "version": 0, "fluency_bar": 0.5, "max_active_goals_per_squad": 3, "eval_max_age_days": 30 }),
            ),
        ),
        // ---- seasons, objectives, key results
        op("GET", "/api/v1/seasons", READ, none, Body::None),
        op("POST", "/api/v1/seasons", PLAN, none, Json(|_, _| season_input("Matrix extra season", 2033))),
        op("GET", "/api/v1/seasons/{id}", READ, |o, _| vec![v(o.season)], Body::None),
        op(
            "PUT",
            "/api/v1/seasons/{id}",
            PLAN,
            |o, _| vec![v(o.season)],
            Edit {
                get: |o, _| format!("/api/v1/seasons/{}", o.season),
                pointer: "/version",
                json: |o, _| season_input(&format!("{} season", o.tag), 2031),
            },
        ),
        op(
            "POST",
            "/api/v1/seasons/{id}/transition",
            PLAN,
            |o, _| vec![v(o.season)],
            Edit {
                get: |o, _| format!("/api/v1/seasons/{}", o.season),
                pointer: "/version",
                json: |_, _| json!({ "to": "active" }),
            },
        ),
        op("GET", "/api/v1/seasons/{id}/tree", READ, |o, _| vec![v(o.season)], Body::None),
        op("GET", "/api/v1/seasons/{id}/slope", READ, |o, _| vec![v(o.season)], Body::None),
        op("GET", "/api/v1/seasons/{id}/dashboard", READ, |o, _| vec![v(o.season)], Body::None),
        // The matrix's season is open, so its own organisation gets 409 (authorization passed).
        op("GET", "/api/v1/seasons/{id}/review", READ, |o, _| vec![v(o.season)], Body::None),
        op("GET", "/api/v1/seasons/{id}/review.md", READ, |o, _| vec![v(o.season)], Body::None),
        op(
            "POST",
            "/api/v1/seasons/{id}/signals/{signal}/resolve",
            PLAN,
            |o, _| vec![v(o.season), v(o.signal)],
            Json(|o, _| json!({ "note": format!("{} reviewed the thesis", o.tag) })),
        ),
        op(
            "POST",
            "/api/v1/seasons/{id}/objectives",
            PLAN,
            |o, _| vec![v(o.season)],
            Json(|_, _| objective_input("Matrix objective")),
        ),
        op("GET", "/api/v1/objectives/{id}", READ, |o, _| vec![v(o.objective)], Body::None),
        op(
            "PUT",
            "/api/v1/objectives/{id}",
            PLAN,
            |o, _| vec![v(o.objective)],
            Edit {
                get: |o, _| format!("/api/v1/objectives/{}", o.objective),
                pointer: "/version",
                json: |o, _| objective_input(&format!("{} objective", o.tag)),
            },
        ),
        op(
            "POST",
            "/api/v1/objectives/{id}/key-results",
            PLAN,
            |o, _| vec![v(o.objective)],
            Json(|_, _| key_result_input("Matrix key result")),
        ),
        op("GET", "/api/v1/key-results/{id}", READ, |o, _| vec![v(o.key_result)], Body::None),
        op(
            "PUT",
            "/api/v1/key-results/{id}",
            PLAN,
            |o, _| vec![v(o.key_result)],
            Edit {
                get: |o, _| format!("/api/v1/key-results/{}", o.key_result),
                pointer: "/key_result/version",
                json: |o, _| key_result_input(&format!("{} key result", o.tag)),
            },
        ),
        op("GET", "/api/v1/key-results/{id}/check-ins", READ, |o, _| vec![v(o.key_result)], Body::None),
        op(
            "POST",
            "/api/v1/key-results/{id}/check-ins",
            PLAN,
            |o, _| vec![v(o.key_result)],
            Json(|_, _| json!({ "value": 1, "author": "Matrix" })),
        ),
        // ---- squads and their goals
        op("GET", "/api/v1/squads", READ, none, Body::None),
        op("POST", "/api/v1/squads", PLAN, none, Json(|_, _| squad_input("Matrix squad"))),
        op("GET", "/api/v1/squads/{id}", READ, |o, s| vec![v(o.squad(s))], Body::None),
        op(
            "PUT",
            "/api/v1/squads/{id}",
            PLAN,
            |o, s| vec![v(o.squad(s))],
            Edit {
                get: |o, s| format!("/api/v1/squads/{}", o.squad(s)),
                pointer: "/version",
                json: |o, s| squad_input(&o.squad_name(s)),
            },
        ),
        op(
            "POST",
            "/api/v1/squads/{id}/goals",
            GOALS,
            |o, s| vec![v(o.squad(s))],
            Json(|o, _| goal_input(o.key_result, "Matrix goal")),
        ),
        op("GET", "/api/v1/squads/{id}/dashboard", READ, |o, s| vec![v(o.squad(s))], Body::None),
        op("GET", "/api/v1/squad-board", READ, none, Body::None),
        op("GET", "/api/v1/squad-goals/{id}", READ, |o, s| vec![v(o.goal(s))], Body::None),
        op(
            "PUT",
            "/api/v1/squad-goals/{id}",
            GOALS,
            |o, s| vec![v(o.goal(s))],
            Edit {
                get: |o, s| format!("/api/v1/squad-goals/{}", o.goal(s)),
                pointer: "/goal/version",
                json: |o, s| goal_input(o.key_result, &format!("{} goal", o.squad_name(s))),
            },
        ),
        op("GET", "/api/v1/squad-goals/{id}/check-ins", READ, |o, s| vec![v(o.goal(s))], Body::None),
        op(
            "POST",
            "/api/v1/squad-goals/{id}/check-ins",
            GOALS,
            |o, s| vec![v(o.goal(s))],
            Json(|_, _| json!({ "done": true, "author": "Matrix" })),
        ),
        // ---- plans as code: a dry run only reads
        op("GET", "/api/v1/plans/{season}", READ, |o, _| vec![v(&o.season_key)], Body::None),
        op("POST", "/api/v1/plans/apply", PLAN, none, Body::Plan { dry_run: false }).also(
            READ,
            Body::Plan { dry_run: true },
            "dry_run",
        ),
        // ---- loops: events, metrics, experiments, drift, lifetime value
        op(
            "POST",
            "/api/v1/loops/{loop}/events",
            INGEST,
            |o, _| vec![v(&o.loop_key)],
            Raw { content_type: NDJSON, bytes: |_| ndjson(&[matrix_event()]) },
        )
        .cross(Cross::CreatesOwn),
        op(
            "POST",
            "/api/v1/transactions",
            INGEST,
            none,
            Raw { content_type: NDJSON, bytes: |o| ndjson(&transactions(TRANSACTION_CUSTOMERS, o.tag)[..3]) },
        ),
        op("GET", "/api/v1/ltv", READ, none, Body::None),
        op("GET", "/api/v1/customers", READ, none, Body::None),
        op("GET", "/api/v1/loops", READ, none, Body::None),
        op("GET", "/api/v1/loops/{loop}", READ, |o, _| vec![v(&o.loop_key)], Body::None),
        op("GET", "/api/v1/loops/{loop}/retention", READ, |o, _| vec![v(&o.loop_key)], Body::None),
        op(
            "POST",
            "/api/v1/loops/{loop}/drift",
            OPERATE,
            |o, _| vec![v(&o.loop_key)],
            Json(
                |_, _| json!({ "field": "latency_ms", "reference": "2026-06-01..2026-06-14", "current": "2026-06-15..2026-06-28" }),
            ),
        ),
        op("GET", "/api/v1/drift-alerts", READ, none, Body::None),
        op("GET", "/api/v1/metrics", READ, none, Body::None),
        op(
            "POST",
            "/api/v1/metrics",
            OPERATE,
            none,
            Json(|o, _| metric_input("matrix.extra", "acceptance-rate", &o.loop_key)),
        ),
        op("GET", "/api/v1/metrics/{key}", READ, |o, _| vec![v(&o.metric)], Body::None),
        op(
            "PUT",
            "/api/v1/metrics/{key}",
            OPERATE,
            |o, _| vec![v(&o.metric)],
            Edit {
                get: |o, _| format!("/api/v1/metrics/{}", o.metric),
                pointer: "/metric/version",
                json: |o, _| metric_input(&o.metric, "acceptance-rate", &o.loop_key),
            },
        ),
        op(
            "POST",
            "/api/v1/metrics/{key}/points",
            INGEST,
            |o, _| vec![v(&o.pushed_metric)],
            Json(|_, _| json!({ "points": [{ "at": "2026-06-01T12:00:00Z", "value": 0.5 }] })),
        ),
        op("POST", "/api/v1/metrics/{key}/recompute", OPERATE, |o, _| vec![v(&o.metric)], Body::None),
        op("GET", "/api/v1/experiments", READ, none, Body::None),
        op("POST", "/api/v1/experiments", OPERATE, none, Json(|o, _| experiment_input("matrix-extra", &o.loop_key))),
        op("GET", "/api/v1/experiments/{key}", READ, |o, _| vec![v(&o.experiment)], Body::None),
        // The first allowed principal stops it; the others get 409, which still shows they were allowed.
        op("POST", "/api/v1/experiments/{key}/stop", OPERATE, |o, _| vec![v(&o.experiment)], Body::None),
        // Without demo mode no simulator runs; the answer says so to whoever may read.
        op("GET", "/api/v1/simulator", READ, none, Body::None),
        // ---- the runner: datasets, jobs, models, serving
        op("GET", "/api/v1/datasets", READ, none, Body::None),
        op("POST", "/api/v1/datasets", OPERATE, none, Raw { content_type: NDJSON, bytes: |_| text_rows(&notes(4, 9)) })
            .query("name=matrix"),
        op("GET", "/api/v1/datasets/{id}", READ, |o, _| vec![v(o.dataset)], Body::None),
        op("GET", "/api/v1/datasets/{id}/rows", READ, |o, _| vec![v(o.dataset)], Body::None),
        op("POST", "/api/v1/loops/{loop}/datasets", OPERATE, |o, _| vec![v(&o.loop_key)], Body::None),
        op("GET", "/api/v1/jobs", READ, none, Body::None),
        op(
            "POST",
            "/api/v1/jobs",
            OPERATE,
            none,
            Json(|o, _| {
                json!({
                    "kind": "pretrain", "dataset_id": o.dataset, "model_config": tiny_model(),
                    "train": { "steps": 2, "batch_size": 4, "lr": 0.003, "warmup_steps": 1, "checkpoint_every": 0 },
                })
            }),
        ),
        op("GET", "/api/v1/jobs/{id}", READ, |o, _| vec![v(o.job)], Body::None),
        op("POST", "/api/v1/jobs/{id}/cancel", OPERATE, |o, _| vec![v(o.cancelled_job)], Body::None),
        op("GET", "/api/v1/jobs/{id}/metrics", READ, |o, _| vec![v(o.job)], Body::None),
        // The job has ended, so its event stream ends after replaying it.
        op("GET", "/api/v1/jobs/{id}/events", READ, |o, _| vec![v(o.job)], Body::None),
        op("GET", "/api/v1/models", READ, none, Body::None),
        op("GET", "/api/v1/models/{id}", READ, |o, _| vec![v(o.model)], Body::None),
        op("GET", "/api/v1/loops/{loop}/models", READ, |o, _| vec![v(&o.loop_key)], Body::None),
        op("GET", "/api/v1/loops/{loop}/stack", READ, |o, _| vec![v(&o.loop_key)], Body::None),
        op(
            "POST",
            "/api/v1/loops/{loop}/promote",
            OPERATE,
            |o, _| vec![v(&o.loop_key)],
            Json(|o, _| json!({ "model_id": o.model })),
        ),
        op("GET", "/api/v1/loops/{loop}/gate", READ, |o, _| vec![v(&o.loop_key)], Body::None),
        op(
            "PUT",
            "/api/v1/loops/{loop}/gate",
            OPERATE,
            |o, _| vec![v(&o.loop_key)],
            Json(|_, _| json!({ "online": "not-worse" })),
        ),
        op(
            "POST",
            "/api/v1/loops/{loop}/challenger",
            OPERATE,
            |o, _| vec![v(&o.loop_key)],
            Json(|o, _| json!({ "model_id": o.model })),
        ),
        op(
            "POST",
            "/api/v1/loops/{loop}/complete",
            INGEST,
            |o, _| vec![v(&o.loop_key)],
            Json(
                |_, _| json!({ "user_id": "matrix-user", "context": "Pt reports cough for 3 days. Plan: ", "max_chars": 8 }),
            ),
        ),
        op(
            "POST",
            "/api/v1/loops/{loop}/complete/{event_id}/outcome",
            INGEST,
            |o, _| vec![v(&o.loop_key), v(&o.served)],
            Json(|_, _| json!({ "accepted_chars": 0, "final_text": "rest and fluids." })),
        ),
        // ---- annotation: the queue is open to the annotator role and squad X
        op("GET", "/api/v1/annotation-queues", Need::Either(Act::Read, Act::Annotate), none, Body::None),
        // The first allowed principal creates it; the others' key is taken (422).
        op("POST", "/api/v1/annotation-queues", OPERATE, none, Json(|o, _| queue_input("matrix-extra", &o.loop_key))),
        op("GET", "/api/v1/annotation-queues/{key}", READ, |o, _| vec![v(&o.queue)], Body::None),
        op(
            "PUT",
            "/api/v1/annotation-queues/{key}",
            OPERATE,
            |o, _| vec![v(&o.queue)],
            Edit {
                get: |o, _| format!("/api/v1/annotation-queues/{}", o.queue),
                pointer: "/summary/queue/version",
                json: |o, _| {
                    let mut queue = queue_input(&o.queue, &o.loop_key);
                    queue["squads"] = json!([o.squad(Squad::X)]);
                    queue
                },
            },
        ),
        op("POST", "/api/v1/annotation-queues/{key}/sample", OPERATE, |o, _| vec![v(&o.queue)], Body::None),
        op("GET", "/api/v1/annotation-queues/{key}/items", READ, |o, _| vec![v(&o.queue)], Body::None),
        op("POST", "/api/v1/annotation-queues/{key}/next", ANNOTATE, |o, _| vec![v(&o.queue)], Body::None),
        // Nobody holds the matrix's item, so an allowed principal is told it is not leased to them (422).
        op(
            "POST",
            "/api/v1/annotation-queues/{key}/items/{id}/annotations",
            ANNOTATE,
            |o, _| vec![v(&o.queue), v(o.item)],
            Json(|_, _| json!({ "correction": "rest and fluids.", "rating": 4 })),
        ),
        op(
            "PUT",
            "/api/v1/annotation-queues/{key}/items/{id}/gold",
            OPERATE,
            |o, _| vec![v(&o.queue), v(o.item)],
            Json(|_, _| json!({ "correction": "rest and fluids.", "rating": 5 })),
        ),
        op(
            "DELETE",
            "/api/v1/annotation-queues/{key}/items/{id}/gold",
            OPERATE,
            |o, _| vec![v(&o.queue), v(o.item)],
            Body::None,
        ),
        op("GET", "/api/v1/annotation-queues/{key}/export", READ, |o, _| vec![v(&o.queue)], Body::None),
        // The first allowed principal stores the line; the others find it answered already (422).
        op(
            "POST",
            "/api/v1/annotation-queues/{key}/import",
            OPERATE,
            |o, _| vec![v(&o.queue)],
            Raw {
                content_type: NDJSON,
                bytes: |_| {
                    ndjson(&[json!({ "event_id": "e-1", "annotator": "vendor", "correction": "rest.", "rating": 3 })])
                },
            },
        ),
        op(
            "POST",
            "/api/v1/annotation-queues/{key}/fine-tune",
            OPERATE,
            |o, _| vec![v(&o.queue)],
            Json(|_, _| json!({ "from": "both", "steps": 2 })),
        ),
        op("GET", "/api/v1/key-results/{id}/annotation-budget", READ, |o, _| vec![v(o.key_result)], Body::None),
        op("GET", "/api/v1/loops/{loop}/annotation-budget", READ, |o, _| vec![v(&o.loop_key)], Body::None),
    ]
}

// ---- inputs --------------------------------------------------------------------------------------

fn season_input(name: &str, year: i32) -> Value {
    json!({
        "name": name,
        "thesis": "Agents replace forms",
        "problems": ["Clinicians type too much"],
        "winning": "Half of all notes drafted by agents",
        "starts_on": format!("{year}-01-01"),
        "ends_on": format!("{year}-06-30"),
        "slope_target": 0.2,
    })
}

fn objective_input(title: &str) -> Value {
    json!({ "quarter": "2031-Q1", "title": title, "commitment": "committed" })
}

fn key_result_input(title: &str) -> Value {
    json!({ "title": title, "kind": "increase-to", "start": 0, "target": 10 })
}

fn squad_input(name: &str) -> Value {
    json!({ "name": name, "unit": "Core", "capacity": 4 })
}

fn goal_input(key_result: i64, title: &str) -> Value {
    json!({
        "key_result_id": key_result,
        "title": title,
        "starts_on": "2031-01-06",
        "ends_on": "2031-02-03",
        "investment": "snapshot",
        "planned_capacity": 2,
        "kind": "milestone",
    })
}

fn metric_input(key: &str, kind: &str, loop_key: &str) -> Value {
    json!({ "key": key, "name": format!("Metric {key}"), "kind": kind, "loop": loop_key, "granularity": "day" })
}

fn experiment_input(key: &str, loop_key: &str) -> Value {
    json!({
        "key": key,
        "name": format!("Experiment {key}"),
        "loop": loop_key,
        "control": "control",
        "treatment": "treatment",
        "starts_on": "2026-06-01",
        "ends_on": "2026-06-28",
    })
}

/// A correction queue over every interaction of the loop, open to the annotator role and squad X.
fn queue_input(key: &str, loop_key: &str) -> Value {
    json!({
        "key": key,
        "name": format!("Queue {key}"),
        "loop": loop_key,
        "sampling": { "policy": "random", "share": 1.0 },
        "guidelines": "Correct the suggestion into what the clinician meant.",
        "labels": { "correction": true, "rating": true },
        "annotators_per_item": 2,
    })
}

fn tiny_model() -> Value {
    json!({ "vocab_size": 257, "n_layer": 1, "n_head": 2, "d_model": 32, "ctx_len": 64 })
}

/// Clinical-note-like lines; the part from "Plan: " on is what users write.
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

/// Events of a loop over June 2026 in two variants, with contexts and what users wrote (so datasets can
/// be built from them), and latencies that rise in the second half of the month (so drift has values).
fn loop_events(n: usize) -> Vec<Value> {
    notes(n, 1)
        .iter()
        .enumerate()
        .map(|(i, note)| {
            let cut = note.find("Plan: ").expect("a plan") + 6;
            let (context, written) = note.split_at(cut);
            let rejected = i % 3 == 0;
            let suggestion = if rejected { "order an MRI." } else { written };
            let day = 1 + i % 28;
            json!({
                "event_id": format!("e-{i}"),
                "ts": format!("2026-06-{day:02}T10:{:02}:00Z", i % 60),
                "user_id": format!("user-{}", i % 12),
                "variant": if i % 2 == 0 { "control" } else { "treatment" },
                "suggested_chars": suggestion.len(),
                "accepted_chars": if rejected { 0 } else { suggestion.len() },
                "latency_ms": 100 + (i * 7) % 50 + if day > 14 { 200 } else { 0 },
                "context": context,
                "suggestion": suggestion,
                "final_text": written,
            })
        })
        .collect()
}

/// The batch the matrix posts: the same bytes every time, so only the first is stored.
fn matrix_event() -> Value {
    json!({
        "event_id": "matrix-1", "ts": "2026-06-15T11:00:00Z", "user_id": "matrix-user", "variant": "control",
        "suggested_chars": 10, "accepted_chars": 5,
    })
}

/// Customers of each organisation's transactions. The matrix posts the first rows again, which are
/// stored already, so that the lifetime-value fit sees the same data throughout.
const TRANSACTION_CUSTOMERS: usize = 400;

/// Purchases of `customers` customers over 40 weeks from a fixed generator (as in the loop tests): each
/// buys in a week with a probability of their own until they drop out, spending around a level of their
/// own; enough for the lifetime-value fit to converge.
fn transactions(customers: usize, prefix: &str) -> Vec<Value> {
    let mut state = 7u64;
    let mut next = move || {
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (state >> 11) as f64 / (1u64 << 53) as f64
    };
    let mut rows = vec![];
    for c in 0..customers {
        let mut week = (next() * 20.0) as i64;
        let (rate, spend) = (0.1 + 0.5 * next(), 20.0 + 80.0 * next());
        for n in 0.. {
            // Monday 5 January 2026 at noon, plus whole weeks and up to two days.
            let hours = 12 + (next() * 48.0) as i64;
            let ts = format!("{}T{:02}:00:00Z", day_of_2026(5 + week * 7 + hours / 24), hours % 24);
            rows.push(json!({
                "event_id": format!("{prefix}-t{c}-{n}"),
                "customer_id": format!("{prefix}-c{c}"),
                "ts": ts,
                "amount": (spend * (0.5 + next()) * 100.0).round() / 100.0,
            }));
            if next() < 0.1 {
                break;
            }
            week += 1 + (next() / rate) as i64;
            if week >= 40 {
                break;
            }
        }
    }
    rows
}

/// Day `n` of 2026 (1 = 1 January) as `YYYY-MM-DD`, for `n` up to 365.
fn day_of_2026(n: i64) -> String {
    let months = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    let mut day = n;
    for (i, len) in months.iter().enumerate() {
        if day <= *len {
            return format!("2026-{:02}-{day:02}", i + 1);
        }
        day -= len;
    }
    panic!("day {n} is not in 2026")
}

// ---- an organisation's entities ------------------------------------------------------------------

/// What the matrix needs of one organisation, made through the API with a full-scope token of it.
struct Org {
    tag: &'static str,
    /// A client whose requests carry a token of this organisation with every scope.
    client: reqwest::Client,
    season: i64,
    season_key: String,
    objective: i64,
    key_result: i64,
    squads: [i64; 2],
    goals: [i64; 2],
    /// An open thesis signal of the season (a killed slope bet raised it).
    signal: i64,
    loop_key: String,
    /// A metric computed from the loop's events.
    metric: String,
    /// A metric whose points are pushed.
    pushed_metric: String,
    experiment: String,
    dataset: i64,
    /// A job that has succeeded (its model is `model`).
    job: i64,
    /// A job that was cancelled.
    cancelled_job: i64,
    model: i64,
    /// A suggestion served by the loop's champion.
    served: String,
    /// A member and a token that refused cells name (and that must survive them).
    member: i64,
    token: i64,
    /// An open invitation that refused cells name.
    invitation: i64,
    /// An annotation queue on the loop (open to the annotator role and squad X), and one of its items.
    queue: String,
    item: i64,
    /// A staleness monitor of squad X (evaluated, so it fired an alert), the open alerts of squad X's
    /// and squad Y's monitors, a contact point of squad X and a delivery to it.
    monitor: String,
    alerts: [i64; 2],
    contact_point: i64,
    delivery: i64,
}

impl Org {
    fn squad(&self, s: Squad) -> i64 {
        self.squads[s as usize]
    }

    fn goal(&self, s: Squad) -> i64 {
        self.goals[s as usize]
    }

    fn squad_name(&self, s: Squad) -> String {
        format!("{} {s:?}", self.tag)
    }
}

/// The parts of an organisation made before its members and tokens exist.
async fn build_org(base: &str, client: reqwest::Client, tag: &'static str, loop_key: &str) -> Org {
    let api = Api { base, client: &client };
    let season =
        api.ok(Method::POST, "/api/v1/seasons", Some(&season_input(&format!("{tag} season"), 2031)), 201).await;
    let season_id = id(&season);
    let season_key = season["key"].as_str().unwrap_or_else(|| panic!("a season without a key: {season}")).to_owned();
    let objective = api
        .ok(
            Method::POST,
            &format!("/api/v1/seasons/{season_id}/objectives"),
            Some(&objective_input(&format!("{tag} objective"))),
            201,
        )
        .await;
    let key_result = api
        .ok(
            Method::POST,
            &format!("/api/v1/objectives/{}/key-results", id(&objective)),
            Some(&key_result_input(&format!("{tag} key result"))),
            201,
        )
        .await;
    let key_result = id(&key_result);
    let mut squads = [0; 2];
    let mut goals = [0; 2];
    for s in [Squad::X, Squad::Y] {
        let name = format!("{tag} {s:?}");
        let squad = api.ok(Method::POST, "/api/v1/squads", Some(&squad_input(&name)), 201).await;
        squads[s as usize] = id(&squad);
        let goal = api
            .ok(
                Method::POST,
                &format!("/api/v1/squads/{}/goals", id(&squad)),
                Some(&goal_input(key_result, &format!("{name} goal"))),
                201,
            )
            .await;
        goals[s as usize] = id(&goal);
    }
    // A killed slope bet raises a thesis signal when the season's dashboard is read.
    let mut bet = goal_input(key_result, &format!("{tag} killed bet"));
    for (field, value) in [
        ("investment", "slope"),
        ("challenges", "More data beats better data"),
        ("kill_criteria", "No lift in two runs"),
        ("status", "killed"),
    ] {
        bet[field] = json!(value);
    }
    api.ok(Method::POST, &format!("/api/v1/squads/{}/goals", squads[0]), Some(&bet), 201).await;
    let dashboard = api.ok(Method::GET, &format!("/api/v1/seasons/{season_id}/dashboard"), None, 200).await;
    let signal = dashboard["signals"][0]["id"].as_i64().unwrap_or_else(|| panic!("no signal raised: {dashboard}"));

    // The loop: events, a computed and a pushed metric, transactions.
    api.raw(&format!("/api/v1/loops/{loop_key}/events"), NDJSON, ndjson(&loop_events(56)), 201).await;
    let metric = format!("{loop_key}.acceptance");
    api.ok(Method::POST, "/api/v1/metrics", Some(&metric_input(&metric, "acceptance-rate", loop_key)), 201).await;
    let pushed_metric = format!("{loop_key}.eval");
    api.ok(
        Method::POST,
        "/api/v1/metrics",
        Some(&json!({ "key": pushed_metric, "name": format!("Eval {tag}"), "kind": "eval-score" })),
        201,
    )
    .await;
    api.raw("/api/v1/transactions", NDJSON, ndjson(&transactions(TRANSACTION_CUSTOMERS, tag)), 201).await;

    // The runner: a training set and a held-out set, a tiny model trained and evaluated on them, which
    // becomes the loop's champion and serves one suggestion; and a job that is cancelled.
    let dataset = api.raw("/api/v1/datasets?name=corpus", NDJSON, text_rows(&notes(16, tag.len())), 201).await;
    let dataset = dataset["dataset"]["id"].as_i64().unwrap_or_else(|| panic!("no dataset id: {dataset}"));
    let held_out = api.raw("/api/v1/datasets?name=held-out", NDJSON, text_rows(&notes(6, 5 + tag.len())), 201).await;
    let held_out = held_out["dataset"]["id"].as_i64().unwrap_or_else(|| panic!("no dataset id: {held_out}"));
    let train = json!({ "steps": 10, "batch_size": 4, "lr": 0.003, "warmup_steps": 2, "checkpoint_every": 0 });
    let job = api
        .ok(
            Method::POST,
            "/api/v1/jobs",
            Some(&json!({
                "kind": "pretrain", "loop": loop_key, "dataset_id": dataset, "held_out_id": held_out,
                "model_config": tiny_model(), "train": train, "name": format!("{}-tiny", tag.to_lowercase()),
            })),
            201,
        )
        .await;
    let job = id(&job);
    let long = json!({
        "kind": "pretrain", "dataset_id": dataset, "model_config": tiny_model(),
        "train": { "steps": 100000, "batch_size": 4, "checkpoint_every": 0 },
    });
    let cancelled_job = id(&api.ok(Method::POST, "/api/v1/jobs", Some(&long), 201).await);
    api.ok(Method::POST, &format!("/api/v1/jobs/{cancelled_job}/cancel"), None, 200).await;

    Org {
        tag,
        client: client.clone(),
        season: season_id,
        season_key,
        objective: id(&objective),
        key_result,
        squads,
        goals,
        signal,
        loop_key: loop_key.to_owned(),
        metric,
        pushed_metric,
        experiment: format!("{}-experiment", tag.to_lowercase()),
        dataset,
        job,
        cancelled_job,
        model: 0,
        served: String::new(),
        member: 0,
        token: 0,
        invitation: 0,
        queue: String::new(),
        item: 0,
        monitor: String::new(),
        alerts: [0; 2],
        contact_point: 0,
        delivery: 0,
    }
}

/// Waits for the organisation's jobs, makes its model the loop's champion, serves a suggestion, and adds
/// the experiment (after the promotion, so that the gate does not weigh it).
async fn finish_org(base: &str, org: &mut Org) {
    let api = Api { base, client: &org.client };
    let done = api.wait_job(org.job).await;
    assert_eq!(done["status"], "succeeded", "the {} model's job: {done}", org.tag);
    org.model = done["result"]["model_id"].as_i64().unwrap_or_else(|| panic!("no model in {done}"));
    let cancelled = api.wait_job(org.cancelled_job).await;
    assert_eq!(cancelled["status"], "cancelled", "{cancelled}");
    let promoted = api
        .ok(
            Method::POST,
            &format!("/api/v1/loops/{}/promote", org.loop_key),
            Some(&json!({ "model_id": org.model })),
            200,
        )
        .await;
    assert_eq!(promoted["accepted"], true, "{promoted}");
    let served = api
        .ok(
            Method::POST,
            &format!("/api/v1/loops/{}/complete", org.loop_key),
            Some(&json!({ "user_id": "setup", "context": "Pt reports cough for 3 days. Plan: ", "max_chars": 8 })),
            200,
        )
        .await;
    org.served = served["event_id"].as_str().unwrap_or_else(|| panic!("no event id: {served}")).to_owned();
    api.ok(Method::POST, "/api/v1/experiments", Some(&experiment_input(&org.experiment, &org.loop_key)), 201).await;
    // The annotation queue, open to the annotator role and to squad X (its edits keep both).
    org.queue = format!("{}-review", org.tag.to_lowercase());
    let mut queue = queue_input(&org.queue, &org.loop_key);
    queue["squads"] = json!([org.squad(Squad::X)]);
    let created = api.ok(Method::POST, "/api/v1/annotation-queues", Some(&queue), 201).await;
    assert!(created["sampled"]["added"].as_u64().is_some_and(|n| n > 1), "{created}");
    let items = api.ok(Method::GET, &format!("/api/v1/annotation-queues/{}/items", org.queue), None, 200).await;
    org.item = items[0]["id"].as_i64().unwrap_or_else(|| panic!("no item: {items}"));
    // Monitors: a metric without data is stale, so each squad's monitor of it fires an alert, and squad
    // X's reaches squad X's contact point (a name of the server's own network, so the delivery fails at
    // once without leaving the machine).
    let survey = format!("{}.survey", org.loop_key);
    let metric = json!({ "key": survey, "name": format!("Survey {}", org.tag), "kind": "custom" });
    api.ok(Method::POST, "/api/v1/metrics", Some(&metric), 201).await;
    let hook = json!({ "name": "Hook", "url": "http://localhost:9/hook", "squad_id": org.squad(Squad::X) });
    org.contact_point = id(&api.ok(Method::POST, "/api/v1/contact-points", Some(&hook), 201).await);
    for s in [Squad::X, Squad::Y] {
        let key = format!("{}-stale-{s:?}", org.tag).to_lowercase();
        let monitor = json!({
            "key": key, "name": "Survey arrives", "kind": "staleness", "metric": survey,
            "squad_id": org.squad(s), "enabled": false,
        });
        api.ok(Method::POST, "/api/v1/monitors", Some(&monitor), 201).await;
        let run = api.ok(Method::POST, &format!("/api/v1/monitors/{key}/run"), None, 200).await;
        assert_eq!(run["fired"], 1, "{run}");
        let alerts = api.ok(Method::GET, "/api/v1/alerts", None, 200).await;
        let alert = alerts.as_array().and_then(|all| all.iter().find(|a| a["monitor_key"] == key.as_str()).cloned());
        org.alerts[s as usize] = alert.map(|a| id(&a)).unwrap_or_else(|| panic!("no alert of {key}: {alerts}"));
        if s == Squad::X {
            org.monitor = key;
        }
    }
    let deliveries = api.ok(Method::GET, "/api/v1/deliveries", None, 200).await;
    org.delivery = deliveries[0]["id"].as_i64().unwrap_or_else(|| panic!("no delivery: {deliveries}"));
}

fn id(value: &Value) -> i64 {
    value["id"].as_i64().unwrap_or_else(|| panic!("no id in {value}"))
}

/// Setup requests with one organisation's full-scope token, each asserted.
struct Api<'a> {
    base: &'a str,
    client: &'a reqwest::Client,
}

impl Api<'_> {
    async fn ok(&self, method: Method, path: &str, body: Option<&Value>, status: u16) -> Value {
        let mut request = self.client.request(method.clone(), format!("{}{path}", self.base));
        if let Some(body) = body {
            request = request.json(body);
        }
        read_json(request, &format!("{method} {path}"), status).await
    }

    async fn raw(&self, path: &str, content_type: &str, bytes: Vec<u8>, status: u16) -> Value {
        let request = self.client.post(format!("{}{path}", self.base)).header(CONTENT_TYPE, content_type).body(bytes);
        read_json(request, &format!("POST {path}"), status).await
    }

    async fn wait_job(&self, job: i64) -> Value {
        let start = Instant::now();
        loop {
            let value = self.ok(Method::GET, &format!("/api/v1/jobs/{job}"), None, 200).await;
            if matches!(value["status"].as_str(), Some("succeeded" | "failed" | "cancelled")) {
                return value;
            }
            assert!(start.elapsed() < Duration::from_secs(300), "job {job} did not end: {value}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

async fn read_json(request: reqwest::RequestBuilder, what: &str, status: u16) -> Value {
    let response = request.send().await.unwrap_or_else(|e| panic!("{what}: {e}"));
    let got = response.status().as_u16();
    let text = response.text().await.unwrap_or_else(|e| panic!("{what}: {e}"));
    assert_eq!(got, status, "setup: {what}: {text}");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("setup: {what}: not JSON ({e}): {text}"))
}

fn token_client(token: &str) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(AUTHORIZATION, format!("Bearer {token}").parse().expect("a token is a valid header"));
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(120))
        .default_headers(headers)
        .build()
        .expect("HTTP client")
}

/// A client that follows no redirects and keeps no cookies: every request carries exactly what the
/// matrix gives it.
fn plain_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(120))
        .build()
        .expect("HTTP client")
}

// ---- the command line ----------------------------------------------------------------------------

/// Runs `slope ARGS --data-dir DIR` with `stdin` as its input, as an operator would; asserts success and
/// returns standard output.
#[track_caller]
fn slope(dir: &Path, args: &[&str], stdin: &str) -> String {
    use std::io::Write;
    let mut command = Command::new(env!("CARGO_BIN_EXE_slope"));
    command.args(args).arg("--data-dir").arg(dir).current_dir(dir);
    for (var, _) in std::env::vars() {
        if var.starts_with("SLOPE_") || var == "DATABASE_URL" {
            command.env_remove(var);
        }
    }
    for (k, v) in ENV {
        command.env(k, v);
    }
    command.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = command.spawn().unwrap_or_else(|e| panic!("cannot run slope {args:?}: {e}"));
    let mut input = child.stdin.take().expect("stdin is piped");
    input.write_all(stdin.as_bytes()).unwrap_or_else(|e| panic!("cannot write to slope {args:?}: {e}"));
    drop(input);
    let out = child.wait_with_output().unwrap_or_else(|e| panic!("slope {args:?} did not finish: {e}"));
    assert!(
        out.status.success(),
        "slope {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("the command prints text")
}

/// Creates a token with `slope token create --json`; returns its id and secret.
fn cli_token(dir: &Path, name: &str, scopes: &str, org: &str) -> (i64, String) {
    let out = slope(dir, &["token", "create", "--name", name, "--scopes", scopes, "--org", org, "--json"], "");
    let created: Value =
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("token create --json printed {out:?}: {e}"));
    (
        created["token"]["id"].as_i64().unwrap_or_else(|| panic!("no token id in {created}")),
        created["secret"].as_str().unwrap_or_else(|| panic!("no secret in {created}")).to_owned(),
    )
}

fn cli_member(dir: &Path, email: &str, role: &str, squads: Option<i64>, org: &str) {
    let squads = squads.map(|s| s.to_string());
    let mut args = vec!["admin", "member", "--email", email, "--role", role, "--org", org];
    if let Some(squads) = &squads {
        args.extend(["--squads", squads.as_str()]);
    }
    slope(dir, &args, &format!("{PASSWORD}\n"));
}

/// Accepts an invitation from its page's form with the matrix's password, as a browser does.
async fn accept_invitation(base: &str, secret: &str) {
    let form = [("token", secret), ("name", ""), ("password", PASSWORD)];
    let response = plain_client()
        .post(format!("{base}/auth/accept"))
        .header(ORIGIN, base)
        .form(&form)
        .send()
        .await
        .expect("an answer");
    let refused = response.headers().get("x-slope-accept").map(|v| v.to_str().unwrap_or_default().to_owned());
    assert_eq!((response.status().as_u16(), refused), (303, None), "accepting an invitation");
}

/// Signs in from this server's sign-in form, as a browser does, and returns the session cookie's value.
async fn sign_in(base: &str, email: &str) -> String {
    let form = [("email", email), ("password", PASSWORD), ("org", ""), ("next", "/")];
    let response = plain_client()
        .post(format!("{base}/auth/login"))
        .header(ORIGIN, base)
        .form(&form)
        .send()
        .await
        .unwrap_or_else(|e| panic!("sign-in of {email}: {e}"));
    assert_eq!(response.status().as_u16(), 303, "sign-in of {email}");
    let cookie = response
        .headers()
        .get(SET_COOKIE)
        .and_then(|c| c.to_str().ok())
        .unwrap_or_else(|| panic!("sign-in of {email} set no cookie: {:?}", response.headers()))
        .to_owned();
    let value = cookie.split(';').next().and_then(|p| p.trim().strip_prefix("slope_session=")).unwrap_or_default();
    assert!(!value.is_empty(), "sign-in of {email}: not a session cookie: {cookie}");
    value.to_owned()
}

// ---- the operations of the description ----------------------------------------------------------

fn spec_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/openapi.json")
}

/// `(METHOD, path)` of every operation in the OpenAPI description.
fn spec_operations() -> BTreeSet<(String, String)> {
    let path = spec_path();
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let spec: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()));
    let paths = spec["paths"].as_object().unwrap_or_else(|| panic!("{} has no `paths`", path.display()));
    let mut operations = BTreeSet::new();
    for (template, item) in paths {
        let item = item.as_object().unwrap_or_else(|| panic!("{template}: not an object"));
        for method in ["get", "put", "post", "delete", "patch", "head", "options", "trace"] {
            if item.contains_key(method) {
                operations.insert((method.to_uppercase(), template.clone()));
            }
        }
    }
    operations
}

/// A path template with its parameters' names left out, so that a renamed parameter still matches.
fn shape(template: &str) -> String {
    let mut out = String::with_capacity(template.len());
    let mut in_param = false;
    for c in template.chars() {
        match c {
            '{' => {
                in_param = true;
                out.push_str("{}");
            }
            '}' => in_param = false,
            _ if in_param => {}
            c => out.push(c),
        }
    }
    out
}

/// The template with `values` in place of its parameters, in order.
fn fill(template: &str, values: &[String]) -> String {
    let mut parts = shape(template).split("{}").map(str::to_owned).collect::<Vec<_>>().into_iter();
    let mut out = parts.next().unwrap_or_default();
    let mut values = values.iter();
    for part in parts {
        let value = values.next().unwrap_or_else(|| panic!("{template}: the table fills too few parameters"));
        out.push_str(&encode(value));
        out.push_str(&part);
    }
    assert!(values.next().is_none(), "{template}: the table fills too many parameters");
    out
}

fn encode(segment: &str) -> String {
    segment
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

// ---- running the matrix --------------------------------------------------------------------------

/// Text that only the other organisation's data holds (its entities' names, its model's name, its
/// customers and its members' addresses), and that no path or error message of the default
/// organisation's requests repeats: an answer to a principal of the default organisation that contains
/// one shows Globex's data.
const LEAK_MARKERS: [&str; 3] = ["Globex", "globex-tiny", "@globex.example"];

enum Auth {
    None,
    Session(String),
    Token(String),
}

struct Principal {
    who: Who,
    auth: Auth,
}

/// One checked cell that did not get what the rule expects.
struct Mismatch {
    method: &'static str,
    path: String,
    note: &'static str,
    who: Who,
    side: Side,
    want: Want,
    got: u16,
    body: String,
}

struct Matrix<'a> {
    base: &'a str,
    http: reqwest::Client,
    own: &'a Org,
    other: &'a Org,
    principals: Vec<Principal>,
    /// The admin's session, for making fresh members and tokens to remove.
    admin: String,
    cells: usize,
    by_principal: BTreeMap<Who, (usize, usize)>,
    /// The statuses of allowed cells that were answered 409 or 422, by operation.
    refused_input: BTreeMap<String, Vec<u16>>,
    mismatches: Vec<Mismatch>,
    /// Answers to the default organisation's principals that show the other organisation's data.
    leaks: Vec<String>,
}

impl Matrix<'_> {
    fn send(&self, auth: &Auth, method: Method, url: String) -> reqwest::RequestBuilder {
        let request = self.http.request(method, url);
        match auth {
            Auth::None => request,
            // A browser sends the cookie and, on every request from the server's own pages, its origin.
            Auth::Session(session) => {
                request.header(COOKIE, format!("slope_session={session}")).header(ORIGIN, self.base)
            }
            Auth::Token(token) => request.header(AUTHORIZATION, format!("Bearer {token}")),
        }
    }

    async fn as_admin(&self, method: Method, path: &str, body: &Value) -> Value {
        let request = self.send(&Auth::Session(self.admin.clone()), method.clone(), format!("{}{path}", self.base));
        read_json(
            request.json(body),
            &format!("{method} {path} as the admin"),
            if method == Method::POST { 201 } else { 200 },
        )
        .await
    }

    async fn param(&self, p: &P, org: &Org, fresh: bool) -> String {
        match (p, fresh) {
            (P::V(value), _) => value.clone(),
            (P::Member, false) => org.member.to_string(),
            (P::Token, false) => org.token.to_string(),
            (P::Invitation, false) => org.invitation.to_string(),
            (P::ContactPoint, false) => org.contact_point.to_string(),
            (P::ContactPoint, true) => {
                let body = json!({ "name": "Victim", "url": "https://hooks.example.com/victim" });
                let created = self.as_admin(Method::POST, "/api/v1/contact-points", &body).await;
                created["id"].as_i64().unwrap_or_else(|| panic!("no contact point id: {created}")).to_string()
            }
            // A removed member is invited again and accepts with the account's password.
            (P::Member, true) => {
                let body = json!({ "email": VICTIM, "role": "exec" });
                let request = self
                    .send(&Auth::Session(self.admin.clone()), Method::PUT, format!("{}/api/v1/members", self.base))
                    .json(&body);
                let response = request.send().await.expect("PUT /api/v1/members answers");
                let status = response.status().as_u16();
                let answer: Value = response.json().await.expect("a JSON answer");
                match status {
                    200 => answer["user_id"].as_i64().unwrap_or_else(|| panic!("no user id: {answer}")).to_string(),
                    202 => {
                        let secret = answer["secret"].as_str().unwrap_or_else(|| panic!("no secret: {answer}"));
                        accept_invitation(self.base, secret).await;
                        let members = self.as_admin(Method::GET, "/api/v1/members", &Value::Null).await;
                        let victim =
                            members.as_array().and_then(|all| all.iter().find(|m| m["email"] == VICTIM).cloned());
                        victim.and_then(|m| m["user_id"].as_i64()).expect("the victim joined again").to_string()
                    }
                    other => panic!("PUT /api/v1/members answered {other}: {answer}"),
                }
            }
            (P::Invitation, true) => {
                let body = json!({ "email": "invitee@example.org", "role": "exec" });
                let request = self
                    .send(&Auth::Session(self.admin.clone()), Method::PUT, format!("{}/api/v1/members", self.base))
                    .json(&body);
                read_json(request, "PUT /api/v1/members (an invitation)", 202).await["invitation"]["id"]
                    .as_i64()
                    .expect("an invitation id")
                    .to_string()
            }
            (P::Token, true) => {
                let created = self
                    .as_admin(Method::POST, "/api/v1/tokens", &json!({ "name": "victim", "scopes": ["read"] }))
                    .await;
                created["token"]["id"].as_i64().unwrap_or_else(|| panic!("no token id: {created}")).to_string()
            }
        }
    }

    async fn body(&self, body: &Body, org: &Org, squad: Squad) -> Option<(String, Vec<u8>)> {
        let api = Api { base: self.base, client: &org.client };
        let json_body = |value: Value| Some(("application/json".to_owned(), value.to_string().into_bytes()));
        match body {
            Body::None => None,
            Body::Json(make) => json_body(make(org, squad)),
            Body::Edit { get, pointer, json } => {
                let current = api.ok(Method::GET, &get(org, squad), None, 200).await;
                let version = current.pointer(pointer).cloned().unwrap_or_else(|| panic!("no {pointer} in {current}"));
                let mut value = json(org, squad);
                value["version"] = version;
                json_body(value)
            }
            Body::Raw { content_type, bytes } => Some((content_type.to_string(), bytes(org))),
            Body::Plan { dry_run } => {
                let path = format!("/api/v1/plans/{}", encode(&org.season_key));
                let response = org.client.get(format!("{}{path}", self.base)).send().await.expect("GET the plan");
                assert_eq!(response.status().as_u16(), 200, "setup: GET {path}");
                let plan = response.text().await.expect("the plan file");
                json_body(json!({ "plan": plan, "dry_run": dry_run }))
            }
        }
    }

    async fn cell(&mut self, entry: &Entry, template: &str, case: &Case, principal: usize, side: Side) {
        let who = self.principals[principal].who;
        let (org, squad) = match side {
            Side::Own(squad) => (self.own, squad),
            Side::Other => (self.other, Squad::X),
        };
        let want = match (entry.cross, side) {
            (Cross::CreatesOwn, Side::Other) => expected(who, case.need, Side::Own(Squad::X)),
            _ => expected(who, case.need, side),
        };
        let fresh = want == Want::Allowed && matches!(side, Side::Own(_));
        let mut values = vec![];
        for p in (entry.params)(org, squad) {
            values.push(self.param(&p, org, fresh).await);
        }
        let mut path = fill(template, &values);
        if !entry.query.is_empty() {
            path = format!("{path}?{}", entry.query);
        }
        let body = self.body(&case.body, org, squad).await;
        let method = Method::from_bytes(entry.method.as_bytes()).expect("an HTTP method");
        let mut request = self.send(&self.principals[principal].auth, method, format!("{}{path}", self.base));
        if let Some((content_type, bytes)) = body {
            request = request.header(CONTENT_TYPE, content_type).body(bytes);
        }
        let response =
            request.send().await.unwrap_or_else(|e| panic!("{} {path} as {}: {e}", entry.method, who.label()));
        let got = response.status().as_u16();
        let text = response.text().await.unwrap_or_default();
        self.cells += 1;
        if let Some(marker) = LEAK_MARKERS.iter().find(|m| text.contains(*m)) {
            self.leaks.push(format!(
                "{} {path} as {} shows {marker:?}, which only the other organisation's data holds: {}",
                entry.method,
                who.label(),
                text.chars().take(400).collect::<String>()
            ));
        }
        let tally = self.by_principal.entry(who).or_default();
        tally.0 += 1;
        if want.accepts(got) {
            tally.1 += 1;
            if want == Want::Allowed && !(200..=299).contains(&got) {
                let refused = self.refused_input.entry(format!("{} {template}", entry.method)).or_default();
                if refused.is_empty() {
                    eprintln!(
                        "  allowed but refused: {} {path} as {}: {got} {}",
                        entry.method,
                        who.label(),
                        text.chars().take(200).collect::<String>()
                    );
                }
                refused.push(got);
            }
        } else {
            let body: String = text.chars().take(400).collect();
            self.mismatches.push(Mismatch { method: entry.method, path, note: case.note, who, side, want, got, body });
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_operation_answers_every_principal_by_the_rule() {
    let started = Instant::now();
    // Which operations are there, and which have an entry? Both lists must match; the matrix still runs
    // for the operations they share, so that one run reports everything.
    let entries = table();
    let spec = spec_operations();
    let mut problems = vec![];
    let mut by_shape: BTreeMap<(String, String), usize> = BTreeMap::new();
    for (i, entry) in entries.iter().enumerate() {
        let key = (entry.method.to_owned(), shape(entry.path));
        if by_shape.insert(key, i).is_some() {
            problems.push(format!("the table has two entries for {} {}", entry.method, entry.path));
        }
    }
    let mut planned: Vec<(usize, String)> = vec![];
    for (method, template) in &spec {
        match by_shape.remove(&(method.clone(), shape(template))) {
            Some(i) => planned.push((i, template.clone())),
            None => problems.push(format!("{method} {template} is in docs/openapi.json but has no entry in the table")),
        }
    }
    for entry in by_shape.values().map(|i| &entries[*i]) {
        problems
            .push(format!("{} {} has an entry in the table but is not in docs/openapi.json", entry.method, entry.path));
    }
    planned.sort();

    // One server; the default organisation's entities made with the harness's full-scope token.
    let scratch = Scratch::new("authorization");
    let dir = scratch.0.as_path();
    let server = Server::start(dir, &ENV);
    let base = server.base.as_str();
    slope(
        dir,
        &["admin", "create", "--email", "gaby@globex.example", "--org", "globex", "--org-name", "Globex"],
        &format!("{PASSWORD}\n"),
    );
    let (_, globex_secret) = cli_token(dir, "globex setup", "read,write,ingest", "globex");
    let mut own = build_org(base, token_client(&server.token), "Default", "notes").await;
    let mut other = build_org(base, token_client(&globex_secret), "Globex", "globex-notes").await;
    finish_org(base, &mut own).await;
    finish_org(base, &mut other).await;

    // The default organisation's principals, made by an operator on the command line.
    slope(dir, &["admin", "create", "--email", "admin@example.org", "--org", "default"], &format!("{PASSWORD}\n"));
    cli_member(dir, "leader@example.org", "leader", None, "default");
    cli_member(dir, "member@example.org", "squad-member", Some(own.squad(Squad::X)), "default");
    cli_member(dir, "exec@example.org", "exec", None, "default");
    cli_member(dir, "annotator@example.org", "annotator", None, "default");
    let mut principals = vec![Principal { who: Who::Anonymous, auth: Auth::None }];
    for (who, email) in [
        (Who::Admin, "admin@example.org"),
        (Who::Leader, "leader@example.org"),
        (Who::SquadMember, "member@example.org"),
        (Who::Exec, "exec@example.org"),
        (Who::Annotator, "annotator@example.org"),
    ] {
        principals.push(Principal { who, auth: Auth::Session(sign_in(base, email).await) });
    }
    for (who, scope) in [(Who::ReadToken, "read"), (Who::WriteToken, "write"), (Who::IngestToken, "ingest")] {
        let (_, secret) = cli_token(dir, &format!("matrix {scope}"), scope, "default");
        principals.push(Principal { who, auth: Auth::Token(secret) });
    }
    // Members and tokens that cells may remove: standing ones that refused cells name, and an account
    // that admins add and remove again for the cells that succeed.
    cli_member(dir, "standing@example.org", "exec", None, "default");
    cli_member(dir, VICTIM, "exec", None, "default");
    own.token = cli_token(dir, "standing", "read", "default").0;
    cli_member(dir, "standing@globex.example", "exec", None, "globex");
    other.token = cli_token(dir, "standing", "read", "globex").0;
    for org in [&mut own, &mut other] {
        let members = Api { base, client: &org.client }.ok(Method::GET, "/api/v1/members", None, 200).await;
        org.member = members
            .as_array()
            .and_then(|all| all.iter().find(|m| m["email"].as_str().is_some_and(|e| e.starts_with("standing@"))))
            .and_then(|m| m["user_id"].as_i64())
            .unwrap_or_else(|| panic!("no standing member in {members}"));
    }
    let admin = match &principals[1].auth {
        Auth::Session(session) => session.clone(),
        _ => unreachable!("the admin signs in"),
    };
    // Standing open invitations of each organisation, made by an admin of each (tokens cannot invite).
    cli_member(dir, "admin@globex.example", "admin", None, "globex");
    let globex_admin = sign_in(base, "admin@globex.example").await;
    for (org, session) in [(&mut own, admin.clone()), (&mut other, globex_admin)] {
        let body = json!({ "email": "standing-invitee@example.org", "role": "exec" });
        let request = plain_client()
            .put(format!("{base}/api/v1/members"))
            .header(COOKIE, format!("slope_session={session}"))
            .header(ORIGIN, base)
            .json(&body);
        let invited = read_json(request, "PUT /api/v1/members (a standing invitation)", 202).await;
        org.invitation = invited["invitation"]["id"].as_i64().expect("an invitation id");
    }
    // Each principal is who the rule's row says.
    for p in &principals[1..] {
        let request = match &p.auth {
            Auth::Session(s) => {
                plain_client().get(format!("{base}/api/v1/me")).header(COOKIE, format!("slope_session={s}"))
            }
            Auth::Token(t) => {
                plain_client().get(format!("{base}/api/v1/me")).header(AUTHORIZATION, format!("Bearer {t}"))
            }
            Auth::None => unreachable!(),
        };
        let me = read_json(request, &format!("GET /api/v1/me as {}", p.who.label()), 200).await;
        let principal = &me["principal"];
        match p.who {
            Who::SquadMember => {
                assert_eq!(principal["role"], "squad-member", "{me}");
                assert_eq!(principal["squads"], json!([own.squad(Squad::X)]), "{me}");
            }
            Who::ReadToken | Who::WriteToken | Who::IngestToken => {
                assert_eq!(principal["scopes"], json!([&p.who.label()["token:".len()..]]), "{me}")
            }
            who => assert_eq!(principal["role"], who.label(), "{me}"),
        }
    }
    let setup = started.elapsed();

    let mut matrix = Matrix {
        base,
        http: plain_client(),
        own: &own,
        other: &other,
        principals,
        admin,
        cells: 0,
        by_principal: BTreeMap::new(),
        refused_input: BTreeMap::new(),
        mismatches: vec![],
        leaks: vec![],
    };
    // Cells that create their key in the caller's organisation run last, so that no other cell sees it.
    let (creating, rest): (Vec<_>, Vec<_>) = planned.iter().partition(|(i, _)| entries[*i].cross == Cross::CreatesOwn);
    for (i, template) in &rest {
        let entry = &entries[*i];
        for case in &entry.cases {
            let squads: &[Squad] = if case.need == GOALS { &[Squad::X, Squad::Y] } else { &[Squad::X] };
            for p in 0..matrix.principals.len() {
                for squad in squads {
                    matrix.cell(entry, template, case, p, Side::Own(*squad)).await;
                }
            }
            if entry.has_params() {
                for p in 1..matrix.principals.len() {
                    matrix.cell(entry, template, case, p, Side::Other).await;
                }
            }
        }
    }
    let other_api = Api { base, client: &other.client };
    let other_loop = format!("/api/v1/loops/{}", other.loop_key);
    let before = other_api.ok(Method::GET, &other_loop, None, 200).await["summary"].clone();
    for (i, template) in &creating {
        let entry = &entries[*i];
        for case in &entry.cases {
            for p in 0..matrix.principals.len() {
                matrix.cell(entry, template, case, p, Side::Own(Squad::X)).await;
            }
            for p in 1..matrix.principals.len() {
                matrix.cell(entry, template, case, p, Side::Other).await;
            }
        }
    }
    let after = other_api.ok(Method::GET, &other_loop, None, 200).await["summary"].clone();
    if after["events"] != before["events"] {
        problems
            .push(format!("posting events under the key of Globex's loop changed Globex's loop: {before} → {after}"));
    }

    let operations = planned.len();
    println!(
        "authorization matrix: {operations} operations, {} cells checked in {:.0?} (setup {:.0?})",
        matrix.cells,
        started.elapsed() - setup,
        setup
    );
    for (who, (checked, agreed)) in &matrix.by_principal {
        println!("  {:<13} {agreed:>4} of {checked:>4} cells as the rule says", who.label());
    }
    let refused: usize = matrix.refused_input.values().map(Vec::len).sum();
    println!(
        "  {refused} allowed cells in {} operations were answered 409/422 (authorization passed, the input was refused)",
        matrix.refused_input.len()
    );
    let mut report = problems.clone();
    report.extend(matrix.leaks.iter().cloned());
    for m in &matrix.mismatches {
        let side = match m.side {
            Side::Own(Squad::X) => "own organisation".to_owned(),
            Side::Own(Squad::Y) => "own organisation, squad Y".to_owned(),
            Side::Other => "other organisation's ids".to_owned(),
        };
        let note = if m.note.is_empty() { String::new() } else { format!(" ({})", m.note) };
        report.push(format!(
            "{} {}{note} as {} ({side}): expected {}, got {}: {}",
            m.method,
            m.path,
            m.who.label(),
            m.want.describe(),
            m.got,
            m.body
        ));
    }
    assert!(
        report.is_empty(),
        "{} problem(s) in the authorization matrix ({} of {} cells differ from the rule):\n{}",
        report.len(),
        matrix.mismatches.len(),
        matrix.cells,
        report.join("\n")
    );
}
