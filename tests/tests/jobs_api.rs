//! The job queue through the admin API and the CLI, against a real `plugin-host serve` with the
//! `jobs-demo` test plugin (kinds `send_email` and `cleanup`, schedules `nightly` and `poll`):
//! every route's answer as it comes back at once (a job enqueued an hour ahead stays
//! `scheduled`; a paused kind's jobs stay `available`), checked against the served OpenAPI
//! document; every refusal with its code; the CLI's `jobs` commands; the queue's metrics and
//! events; and a server without a queue answering `503 backend_unavailable`. What the jobs do
//! once they run is the core's concern (tests/tests/jobs.rs).
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::io::{BufRead as _, BufReader};

use integration::*;
use serde_json::{Value, json};

/// A server with `jobs-demo` loaded.
fn server() -> Server {
    let s = Server::start(&[], &[]);
    let (st, p) = s.load(&plugin("jobs-demo"));
    assert_eq!(st, 201, "{p}");
    s
}

/// An RFC 3339 time an hour from now (whole seconds), and the same in ms since the epoch.
fn in_an_hour() -> (String, i64) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let at = now + 3600;
    let (days, secs) = (at / 86_400, at % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    let text = format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    );
    (text, at as i64 * 1000)
}

/// The served admin document.
fn document(s: &Server) -> Value {
    let (st, doc) = s.call("GET", "/api/v1/openapi.json", None);
    assert_eq!(st, 200);
    doc
}

/// Checks `value` against the component schema `name` of `doc`.
fn assert_conforms(doc: &Value, name: &str, value: &Value) {
    let schema = json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$ref": format!("#/components/schemas/{name}"),
        "components": doc["components"],
    });
    let validator = jsonschema::validator_for(&schema).unwrap();
    let errors: Vec<String> = validator
        .iter_errors(value)
        .map(|e| format!("{e} at {}", e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "{name} does not describe {value}: {errors:?}"
    );
}

/// An answer's status and error code.
type Answer = (u16, String);

/// The status and error code of an answer.
fn code(r: (u16, Value)) -> Answer {
    (r.0, r.1["error"]["code"].as_str().unwrap_or("").to_owned())
}

/// Enqueues `cleanup` an hour ahead; returns the job.
fn scheduled_cleanup(s: &Server, input: Value) -> Value {
    let (at, _) = in_an_hour();
    let (st, v) = s.call(
        "POST",
        "/api/v1/jobs",
        Some(json!({"plugin": "jobs-demo", "kind": "cleanup", "input": input, "run_at": at})),
    );
    assert_eq!(st, 201, "{v}");
    assert_eq!(v["job"]["state"], "scheduled", "{v}");
    v["job"].clone()
}

fn ids(list: &Value) -> Vec<i64> {
    list["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["id"].as_i64().unwrap())
        .collect()
}

#[test]
fn every_job_route_answers_as_documented() {
    let s = server();
    let doc = document(&s);

    // Pause `cleanup` first: its jobs then wait, whatever the workers do.
    let (st, v) = s.call("POST", "/api/v1/plugins/jobs-demo/jobs/cleanup/pause", None);
    assert_eq!(st, 200, "{v}");
    assert_eq!(
        v,
        json!({"plugin": "jobs-demo", "kind": "cleanup", "paused": true})
    );
    assert_conforms(&doc, "PauseState", &v);
    let (st, v) = s.call("GET", "/api/v1/jobs/paused", None);
    assert_eq!(st, 200, "{v}");
    assert_eq!(
        v,
        json!({"paused": [{"plugin": "jobs-demo", "kind": "cleanup"}]})
    );
    assert_conforms(&doc, "PausedList", &v);

    // Enqueue an hour ahead, with every option.
    let (at, _) = in_an_hour();
    let (st, v) = s.call(
        "POST",
        "/api/v1/jobs",
        Some(
            json!({"plugin": "jobs-demo", "kind": "cleanup", "input": {"a": 1},
                    "run_at": at, "priority": 5, "dedupe_key": "k1"}),
        ),
    );
    assert_eq!(st, 201, "{v}");
    assert_conforms(&doc, "JobAnswer", &v);
    let later = v["job"].clone();
    assert_eq!(v["deduplicated"], false);
    assert_eq!(later["plugin"], "jobs-demo");
    assert_eq!(later["kind"], "cleanup");
    assert_eq!(later["state"], "scheduled");
    assert_eq!(later["input"], json!({"a": 1}));
    assert_eq!(later["priority"], 5);
    assert_eq!(later["dedupe_key"], "k1");
    assert_eq!(later["source"], "api");
    assert_eq!(later["attempt"], 0);
    assert_eq!(later["max_attempts"], 10);
    let run_at: String = later["run_at"].as_str().unwrap().to_owned();
    assert!(
        run_at.starts_with(at.trim_end_matches('Z')),
        "{run_at} {at}"
    );
    let later_id = later["id"].as_i64().unwrap();

    // The same dedupe key while that job waits: nothing is enqueued.
    let (st, v) = s.call(
        "POST",
        "/api/v1/jobs",
        Some(json!({"plugin": "jobs-demo", "kind": "cleanup", "dedupe_key": "k1"})),
    );
    assert_eq!(st, 200, "{v}");
    assert_eq!(v, json!({"job": null, "deduplicated": true}));
    assert_conforms(&doc, "Deduplicated", &v);

    // shared/API.md's first names of the fields (`payload`, `key`) still work; no input is null.
    let (st, v) = s.call(
        "POST",
        "/api/v1/jobs",
        Some(
            json!({"plugin": "jobs-demo", "kind": "cleanup", "payload": {"b": 2},
                    "key": "k2", "run_at": at}),
        ),
    );
    assert_eq!(st, 201, "{v}");
    assert_eq!(
        (&v["job"]["input"], &v["job"]["dedupe_key"]),
        (&json!({"b": 2}), &json!("k2"))
    );
    let (st, v) = s.call(
        "POST",
        "/api/v1/jobs",
        Some(json!({"plugin": "jobs-demo", "kind": "cleanup"})),
    );
    assert_eq!(st, 201, "{v}");
    let now = v["job"].clone();
    assert_eq!(now["state"], "available", "a paused kind's job waits");
    assert_eq!(now["input"], Value::Null);
    let now_id = now["id"].as_i64().unwrap();
    assert!(now_id > later_id);

    // One job, with its (empty) execution log.
    let (st, v) = s.call("GET", &format!("/api/v1/jobs/{later_id}"), None);
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["job"], later);
    assert_eq!(v["attempts"], json!([]));
    assert_conforms(&doc, "JobDetail", &v);

    // Lists: newest first, filtered, paged.
    let (st, all) = s.call("GET", "/api/v1/jobs?plugin=jobs-demo&kind=cleanup", None);
    assert_eq!(st, 200, "{all}");
    assert_conforms(&doc, "JobList", &all);
    let all_ids = ids(&all);
    assert_eq!(all_ids.len(), 3, "{all}");
    assert!(
        all_ids.windows(2).all(|w| w[0] > w[1]),
        "newest first: {all_ids:?}"
    );
    assert_eq!(all_ids[0], now_id);
    let (_, scheduled) = s.call(
        "GET",
        "/api/v1/jobs?plugin=jobs-demo&kind=cleanup&state=scheduled",
        None,
    );
    let scheduled_ids = ids(&scheduled);
    assert_eq!(scheduled_ids.len(), 2, "{scheduled}");
    assert!(scheduled_ids.contains(&later_id) && !scheduled_ids.contains(&now_id));
    let (_, one) = s.call("GET", "/api/v1/jobs?kind=cleanup&limit=1", None);
    assert_eq!(ids(&one), [now_id]);
    let (_, page) = s.call(
        "GET",
        &format!("/api/v1/jobs?kind=cleanup&before={now_id}"),
        None,
    );
    assert_eq!(ids(&page), all_ids[1..]);
    let (_, none) = s.call("GET", "/api/v1/jobs?plugin=nobody", None);
    assert_eq!(none, json!({"jobs": []}));

    // A schedule run now, its kind paused: the job waits.
    let (st, v) = s.call(
        "POST",
        "/api/v1/plugins/jobs-demo/schedules/nightly/run",
        None,
    );
    assert_eq!(st, 201, "{v}");
    assert_conforms(&doc, "JobAnswer", &v);
    assert_eq!(v["job"]["kind"], "cleanup");
    assert_eq!(v["job"]["state"], "available");
    assert_eq!(v["job"]["source"], "schedule:nightly:run");
    assert_eq!(v["job"]["input"]["schedule"], "nightly");

    // Cancel, then the conflicts: a cancelled job is not cancelled twice, a waiting job is not
    // retried.
    let (st, v) = s.call("POST", &format!("/api/v1/jobs/{later_id}/cancel"), None);
    assert_eq!(st, 200, "{v}");
    assert_conforms(&doc, "JobAnswer", &v);
    assert_eq!(v["job"]["id"], later_id);
    assert_eq!(v["job"]["state"], "cancelled");
    assert!(v["job"]["finished_at"].is_string(), "{v}");
    let again = s.call("POST", &format!("/api/v1/jobs/{later_id}/cancel"), None);
    assert_conforms(&doc, "Error", &again.1);
    assert_eq!(code(again), (409, "job_state_conflict".into()));
    let retry = s.call("POST", &format!("/api/v1/jobs/{now_id}/retry"), None);
    assert_eq!(code(retry), (409, "job_state_conflict".into()));
    let (_, cancelled) = s.call("GET", "/api/v1/jobs?kind=cleanup&state=cancelled", None);
    assert_eq!(ids(&cancelled), [later_id]);

    // Resume: the kind is no longer listed as paused.
    let (st, v) = s.call(
        "POST",
        "/api/v1/plugins/jobs-demo/jobs/cleanup/resume",
        None,
    );
    assert_eq!(st, 200, "{v}");
    assert_eq!(
        v,
        json!({"plugin": "jobs-demo", "kind": "cleanup", "paused": false})
    );
    let (_, v) = s.call("GET", "/api/v1/jobs/paused", None);
    assert_eq!(v, json!({"paused": []}));

    // The document itself is valid OpenAPI 3.1, and documents every job route.
    let spec: Value =
        serde_json::from_str(include_str!("../fixtures/openapi-3.1.schema.json")).unwrap();
    let validator = jsonschema::validator_for(&spec).unwrap();
    let errors: Vec<String> = validator
        .iter_errors(&doc)
        .map(|e| format!("{}: {e}", e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "{errors:#?}");
    for (method, path) in [
        ("get", "/api/v1/jobs"),
        ("post", "/api/v1/jobs"),
        ("get", "/api/v1/jobs/paused"),
        ("get", "/api/v1/jobs/{id}"),
        ("post", "/api/v1/jobs/{id}/retry"),
        ("post", "/api/v1/jobs/{id}/cancel"),
        ("post", "/api/v1/plugins/{name}/jobs/{kind}/pause"),
        ("post", "/api/v1/plugins/{name}/jobs/{kind}/resume"),
        ("post", "/api/v1/plugins/{name}/schedules/{schedule}/run"),
    ] {
        assert!(
            doc["paths"][path][method]["responses"]["default"].is_object(),
            "{method} {path} is not documented"
        );
    }
}

#[test]
fn job_routes_refuse_bad_input_with_their_codes() {
    let s = server();
    let doc = document(&s);
    let job = scheduled_cleanup(&s, json!(null));
    let (at, _) = in_an_hour();
    let enqueue = |body: Value| code(s.call("POST", "/api/v1/jobs", Some(body)));
    let cases: Vec<(Answer, (u16, &str), &str)> = vec![
        (
            code(s.call("GET", "/api/v1/jobs/999999999", None)),
            (404, "job_not_found"),
            "unknown job",
        ),
        (
            code(s.call("POST", "/api/v1/jobs/999999999/cancel", None)),
            (404, "job_not_found"),
            "cancel of an unknown job",
        ),
        (
            code(s.call("POST", "/api/v1/jobs/999999999/retry", None)),
            (404, "job_not_found"),
            "retry of an unknown job",
        ),
        (
            code(s.call("GET", "/api/v1/jobs/abc", None)),
            (400, "bad_request"),
            "non-integer id",
        ),
        (
            code(s.call("POST", "/api/v1/jobs/1.5/cancel", None)),
            (400, "bad_request"),
            "non-integer id on cancel",
        ),
        (
            code(s.call("POST", &format!("/api/v1/jobs/{}/retry", job["id"]), None)),
            (409, "job_state_conflict"),
            "retry of a waiting job",
        ),
        (
            enqueue(json!({"plugin": "ghost", "kind": "cleanup"})),
            (404, "not_found"),
            "unknown plugin",
        ),
        (
            enqueue(json!({"plugin": "jobs-demo", "kind": "nope"})),
            (404, "job_kind_not_found"),
            "unknown kind",
        ),
        (
            enqueue(json!({"plugin": "jobs-demo", "kind": "cleanup", "when": at})),
            (400, "bad_request"),
            "unknown body field",
        ),
        (
            enqueue(json!({"plugin": "jobs-demo", "kind": "cleanup", "run_at": "tomorrow"})),
            (400, "bad_request"),
            "bad run_at",
        ),
        (
            enqueue(json!({"plugin": "jobs-demo", "kind": "cleanup", "priority": 40000})),
            (400, "bad_request"),
            "priority out of range",
        ),
        (
            enqueue(json!({"plugin": "jobs-demo", "kind": "cleanup",
                           "dedupe_key": "k".repeat(257)})),
            (400, "bad_request"),
            "dedupe key too long",
        ),
        (
            enqueue(json!({"kind": "cleanup"})),
            (400, "bad_request"),
            "no plugin",
        ),
        (
            code(s.call("POST", "/api/v1/plugins/jobs-demo/jobs/nope/pause", None)),
            (404, "job_kind_not_found"),
            "pause of an unknown kind",
        ),
        (
            code(s.call("POST", "/api/v1/plugins/ghost/jobs/cleanup/resume", None)),
            (404, "not_found"),
            "resume of an unknown plugin's kind",
        ),
        (
            code(s.call(
                "POST",
                "/api/v1/plugins/jobs-demo/schedules/weekly/run",
                None,
            )),
            (404, "schedule_not_found"),
            "unknown schedule",
        ),
        (
            code(s.call("POST", "/api/v1/plugins/ghost/schedules/nightly/run", None)),
            (404, "not_found"),
            "schedule of an unknown plugin",
        ),
    ];
    for (got, (status, want), what) in cases {
        assert_eq!(got, (status, want.to_owned()), "{what}");
    }

    // A bad query parameter is named in the message.
    for (query, names) in [
        ("state=done", "state"),
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("limit=many", "limit"),
        ("before=last", "before"),
    ] {
        let (st, e) = s.call("GET", &format!("/api/v1/jobs?{query}"), None);
        assert_eq!(
            (st, &e["error"]["code"]),
            (400, &json!("bad_request")),
            "{query}"
        );
        assert!(
            e["error"]["message"]
                .as_str()
                .unwrap()
                .contains(&format!("`{names}`")),
            "{query}: {e}"
        );
        assert_conforms(&doc, "Error", &e);
    }
    for limit in [1, 1000] {
        let (st, v) = s.call("GET", &format!("/api/v1/jobs?limit={limit}"), None);
        assert_eq!(st, 200, "limit={limit}: {v}");
    }
}

#[test]
fn the_cli_lists_shows_cancels_and_enqueues_jobs() {
    let s = server();
    let job = scheduled_cleanup(&s, json!({"dry_run": true}));
    let id = job["id"].to_string();

    let (ok, out, err) = s.cli(&["jobs", "ls", "--plugin", "jobs-demo", "--kind", "cleanup"]);
    assert!(ok, "{err}");
    let mut lines = out.lines();
    let header = lines.next().unwrap();
    for column in [
        "ID",
        "PLUGIN",
        "KIND",
        "STATE",
        "ATTEMPT",
        "RUN AT",
        "LAST ERROR",
    ] {
        assert!(header.contains(column), "{out}");
    }
    let row: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(
        row[..5],
        [id.as_str(), "jobs-demo", "cleanup", "scheduled", "0/10"],
        "{out}"
    );

    let (ok, out, err) = s.cli(&[
        "jobs",
        "ls",
        "--kind",
        "cleanup",
        "--state",
        "scheduled",
        "--json",
    ]);
    assert!(ok, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["jobs"][0]["id"], job["id"]);

    let (ok, out, err) = s.cli(&["jobs", "show", &id]);
    assert!(ok, "{err}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("state") && l.ends_with("scheduled")),
        "{out}"
    );
    assert!(out.contains(r#"{"dry_run":true}"#), "{out}");
    assert!(out.contains("no attempts yet"), "{out}");

    let (ok, out, err) = s.cli(&["jobs", "cancel", &id]);
    assert!(ok, "{err}");
    assert!(
        out.starts_with(&format!("cancelled job {id} jobs-demo/cleanup (cancelled")),
        "{out}"
    );
    // The server's refusal: exit status 1, its code on stderr.
    let (ok, _, err) = s.cli(&["jobs", "cancel", &id]);
    assert!(!ok);
    assert!(err.contains("job_state_conflict"), "{err}");
    let (ok, _, err) = s.cli(&["jobs", "show", "424242"]);
    assert!(!ok);
    assert!(err.contains("job_not_found"), "{err}");

    // Pause, enqueue (a paused kind's job waits), run a schedule, resume.
    let (ok, out, err) = s.cli(&["jobs", "pause", "jobs-demo", "cleanup"]);
    assert!(ok, "{err}");
    assert_eq!(out, "paused jobs-demo/cleanup\n");
    let (ok, out, err) = s.cli(&["jobs", "paused"]);
    assert!(ok, "{err}");
    assert!(
        out.lines()
            .nth(1)
            .unwrap()
            .starts_with("jobs-demo  cleanup"),
        "{out}"
    );
    let (at, _) = in_an_hour();
    let (ok, out, err) = s.cli(&[
        "jobs",
        "enqueue",
        "jobs-demo",
        "cleanup",
        r#"{"n":1}"#,
        "--run-at",
        &at,
        "--dedupe-key",
        "once",
        "--json",
    ]);
    assert!(ok, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (
            &v["job"]["state"],
            &v["job"]["input"],
            &v["job"]["dedupe_key"]
        ),
        (&json!("scheduled"), &json!({"n": 1}), &json!("once"))
    );
    let (ok, out, err) = s.cli(&[
        "jobs",
        "enqueue",
        "jobs-demo",
        "cleanup",
        "--dedupe-key",
        "once",
    ]);
    assert!(ok, "{err}");
    assert!(out.starts_with("not enqueued"), "{out}");
    let (ok, out, err) = s.cli(&["jobs", "run", "jobs-demo", "nightly"]);
    assert!(ok, "{err}");
    assert!(
        out.starts_with("enqueued job ") && out.contains("jobs-demo/cleanup (available"),
        "{out}"
    );
    let (ok, out, err) = s.cli(&["jobs", "resume", "jobs-demo", "cleanup"]);
    assert!(ok, "{err}");
    assert_eq!(out, "resumed jobs-demo/cleanup\n");
    let (ok, _, err) = s.cli(&["jobs", "enqueue", "jobs-demo", "cleanup", "{not json"]);
    assert!(!ok);
    assert!(err.contains("not JSON"), "{err}");
}

#[test]
fn metrics_and_the_event_stream_show_the_queue() {
    let s = server();
    let resp = ureq::get(&format!("{}/api/v1/events/stream?pattern=job:*", s.addr))
        .call()
        .unwrap();
    let mut lines = BufReader::new(resp.into_reader()).lines();
    let job = scheduled_cleanup(&s, json!(null));
    let mut event = None;
    for line in lines.by_ref() {
        let line = line.unwrap();
        if let Some(e) = line.strip_prefix("event:") {
            event = Some(e.trim().to_owned());
        } else if let Some(d) = line.strip_prefix("data:") {
            let data: Value = serde_json::from_str(d.trim()).unwrap();
            assert_eq!(event.as_deref(), Some("job:enqueued"));
            assert_eq!(data["payload"]["id"], job["id"], "{data}");
            assert_eq!(data["payload"]["kind"], "cleanup", "{data}");
            break;
        }
    }
    assert!(event.is_some(), "the stream ended without an event");

    let text = ureq::get(&format!("{}/metrics", s.addr))
        .call()
        .unwrap()
        .into_string()
        .unwrap();
    let line = text
        .lines()
        .find(|l| {
            l.starts_with("plugin_host_jobs{")
                && l.contains(r#"kind="cleanup""#)
                && l.contains(r#"state="scheduled""#)
        })
        .unwrap_or_else(|| panic!("no scheduled cleanup gauge in\n{text}"));
    assert!(line.ends_with(" 1"), "{line}");
    assert!(
        text.contains("plugin_host_plugins{"),
        "the rest of the scrape is there"
    );
}

#[test]
fn a_server_without_a_queue_answers_503() {
    let dir = temp_dir();
    let config = dir.path().join("plugin-host.toml");
    std::fs::write(&config, "[backends.tables]\nbackend = \"none\"\n").unwrap();
    let s = Server::start(&["--config", config.to_str().unwrap()], &[]);
    let e = code(s.call("GET", "/api/v1/jobs", None));
    assert_eq!(e, (503, "backend_unavailable".into()));
    let e = code(s.call(
        "POST",
        "/api/v1/jobs",
        Some(json!({"plugin": "jobs-demo", "kind": "cleanup"})),
    ));
    assert_eq!(e, (503, "backend_unavailable".into()));
    let e = code(s.call("GET", "/api/v1/jobs/paused", None));
    assert_eq!(e, (503, "backend_unavailable".into()));
    let text = ureq::get(&format!("{}/metrics", s.addr))
        .call()
        .unwrap()
        .into_string()
        .unwrap();
    assert!(text.contains("plugin_host_plugins{"), "{text}");
    assert!(!text.contains("plugin_host_jobs"), "{text}");
}
