//! Durable jobs, the declaration layer, against the `jobs-demo` test plugin: `plugin-host
//! inspect` and `GET /api/v1/plugins/{name}` (a real server over real HTTP) show its job kinds
//! and schedules; a copy whose manifest declares a bad cron expression is refused at load with
//! `invalid_schedule` while the host keeps serving; every other refusal, on rewritten copies of
//! the plugin, at inspect.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use integration::*;
use serde_json::{Value, json};

/// Checks the declarations of `jobs-demo` as `inspect` and the admin API show them.
fn assert_demo_declarations(jobs: &Value, schedules: &Value) {
    let send = &jobs[0];
    assert_eq!(send["name"], "send_email");
    assert_eq!(send["function"], "send_email_fn");
    assert_eq!(send["triggers"], json!(["form:submitted", "user:*"]));
    assert_eq!(send["max_attempts"], 5);
    assert_eq!(send["backoff"], json!({ "base_ms": 500, "cap_ms": 60_000 }));
    assert_eq!(send["timeout_ms"], 10_000);
    assert_eq!(send["dedupe"], "{event.id}-{payload./user/id}");
    assert_eq!(send["priority"], -1);
    let cleanup = &jobs[1];
    assert_eq!(cleanup["name"], "cleanup");
    assert_eq!(cleanup["triggers"], json!([]));
    assert_eq!(cleanup["max_attempts"], 10);
    assert_eq!(
        cleanup["backoff"],
        json!({ "base_ms": 1_000, "cap_ms": 3_600_000 })
    );
    assert_eq!(cleanup["timeout_ms"], Value::Null);
    assert_eq!(cleanup["dedupe"], Value::Null);
    assert_eq!(cleanup["priority"], 0);
    assert_eq!(jobs.as_array().unwrap().len(), 2);
    assert_eq!(
        schedules,
        &json!([
            { "name": "nightly", "job": "cleanup", "cron": "0 3 * * *",
              "time_zone": "Europe/Paris", "every_ms": null },
            { "name": "poll", "job": "send_email", "cron": null, "time_zone": null,
              "every_ms": 30_000 },
        ])
    );
}

#[test]
fn inspect_shows_jobs_and_schedules() {
    let v = inspected(&plugin("jobs-demo"));
    assert_demo_declarations(&v["manifest"]["jobs"], &v["manifest"]["schedules"]);
}

#[test]
fn the_admin_api_shows_jobs_and_schedules() {
    let s = Server::start(&[], &[]);
    for name in ["jobs-demo", "hello"] {
        let (st, p) = s.load(&plugin(name));
        assert_eq!(st, 201, "{p}");
    }
    let (st, p) = s.call("GET", "/api/v1/plugins/jobs-demo", None);
    assert_eq!(st, 200, "{p}");
    assert_eq!(p["state"], "active");
    assert_demo_declarations(&p["jobs"], &p["schedules"]);
    // The answer satisfies the admin OpenAPI document's Plugin schema (as schemathesis checks).
    let (_, doc) = s.call("GET", "/api/v1/openapi.json", None);
    let plugin_schema = jsonschema::validator_for(&json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$ref": "#/components/schemas/Plugin",
        "components": doc["components"],
    }))
    .unwrap();
    let errors: Vec<String> = plugin_schema
        .iter_errors(&p)
        .map(|e| e.to_string())
        .collect();
    assert!(errors.is_empty(), "{errors:?}");
    assert!(
        doc["components"]["schemas"]["Job"]["required"]
            .as_array()
            .unwrap()
            .contains(&json!("dedupe"))
    );
    let mut broken = p.clone();
    broken["jobs"][0]["max_attempts"] = json!(0);
    assert!(!plugin_schema.is_valid(&broken), "the schema checks jobs");
    // A plugin without jobs shows empty lists; the list route shows them too.
    let (_, hello) = s.call("GET", "/api/v1/plugins/hello", None);
    assert_eq!(
        (&hello["jobs"], &hello["schedules"]),
        (&json!([]), &json!([]))
    );
    let (_, list) = s.call("GET", "/api/v1/plugins", None);
    let demo = list
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "jobs-demo")
        .unwrap();
    assert_eq!(demo["schedules"][1]["every_ms"], 30_000);
    // The declared functions still answer (the declarations do not get in the way).
    let (st, out) = s.call(
        "POST",
        "/api/v1/plugins/jobs-demo/call/send_email_fn",
        Some(json!({ "to": "ada" })),
    );
    assert_eq!(
        (st, &out["output"]["sent"]["to"]),
        (200, &json!("ada")),
        "{out}"
    );
}

#[test]
fn a_bad_cron_expression_is_refused_at_load_and_the_host_keeps_serving() {
    let s = Server::start(&[], &[]);
    let dir = temp_dir();
    let bad = rewritten_plugin("jobs-demo", dir.path(), "jobs-bad-cron", |m| {
        m["schedules"][0]["cron"] = json!("0 3 * * 9");
    });
    let (st, e) = s.load(&bad);
    assert_eq!(st, 400, "{e}");
    assert_eq!(e["error"]["code"], "invalid_schedule");
    assert_eq!(
        e["error"]["details"],
        json!({ "plugin": "jobs-demo", "schedule": "nightly" })
    );
    let message = e["error"]["message"].as_str().unwrap();
    assert!(message.contains("0 3 * * 9"), "{message}");
    let (st, _) = s.call("GET", "/api/v1/plugins/jobs-demo", None);
    assert_eq!(st, 404);
    // Still serving: the good file loads.
    let (st, p) = s.load(&plugin("jobs-demo"));
    assert_eq!((st, &p["state"]), (201, &json!("active")), "{p}");
    let (st, _) = s.call("GET", "/health", None);
    assert_eq!(st, 200);
}

/// A rewrite of the demo's manifest, the error code it must cause and a word of the reason.
type Refusal = (&'static str, fn(&mut Value), &'static str, &'static str);

const REFUSALS: &[Refusal] = &[
    (
        "undeclared-function",
        |m| m["jobs"][0]["function"] = json!("nope"),
        "invalid_job",
        "`nope` is not declared",
    ),
    (
        "bad-trigger",
        |m| m["jobs"][0]["triggers"][1] = json!("us*r:*"),
        "invalid_job",
        "trigger",
    ),
    (
        "bad-dedupe",
        |m| m["jobs"][0]["dedupe"] = json!("{event.ts}"),
        "invalid_job",
        "dedupe template",
    ),
    (
        "zero-attempts",
        |m| m["jobs"][0]["max_attempts"] = json!(0),
        "invalid_job",
        "max_attempts is 0",
    ),
    (
        "cap-below-base",
        |m| m["jobs"][0]["backoff"]["cap_ms"] = json!(499),
        "invalid_job",
        "below its base",
    ),
    (
        "duplicate-job",
        |m| m["jobs"][0]["name"] = json!("cleanup"),
        "invalid_job",
        "declared twice",
    ),
    (
        "unknown-kind",
        |m| m["schedules"][0]["job"] = json!("cleanu"),
        "invalid_schedule",
        "`cleanu` is not declared",
    ),
    (
        "bad-cron",
        |m| m["schedules"][0]["cron"] = json!("0 3 * *"),
        "invalid_schedule",
        "does not parse",
    ),
    (
        "unknown-zone",
        |m| m["schedules"][0]["time_zone"] = json!("Europe/Parix"),
        "invalid_schedule",
        "is unknown",
    ),
    (
        "zero-interval",
        |m| m["schedules"][1]["every_ms"] = json!(0),
        "invalid_schedule",
        "neither",
    ),
    (
        "duplicate-schedule",
        |m| m["schedules"][0]["name"] = json!("poll"),
        "invalid_schedule",
        "declared twice",
    ),
];

#[test]
fn every_bad_declaration_is_refused_at_inspect() {
    let dir = temp_dir();
    for (name, edit, code, says) in REFUSALS {
        let file = rewritten_plugin("jobs-demo", dir.path(), &format!("jobs-{name}"), edit);
        let e = plugin_host::inspect(&file).unwrap_err();
        assert_eq!(e.code().as_str(), *code, "{name}: {e}");
        assert!(e.to_string().contains(says), "{name}: {e}");
    }
    // The untouched plugin inspects fine: the refusals come from the edits.
    let ok = plugin_host::inspect(&plugin("jobs-demo")).unwrap();
    assert_eq!(ok.manifest.jobs.len(), 2);
}
