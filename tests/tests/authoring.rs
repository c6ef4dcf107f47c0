//! The plugin author's surface of plugin-api 1.2, end to end with real plugins: typed named
//! functions called from the admin API, the CLI and a dependent plugin; the host's checks before
//! a call (unknown function, input schema); the glue's refusal of a plugin whose registered
//! functions differ from its manifest; typed config; the `log` facade reaching the host's log
//! at the operator's level; `inspect` listing functions.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::time::{Duration, Instant};

use integration::*;
use serde_json::{Value, json};

fn load(s: &Server, name: &str) -> Value {
    let (st, p) = s.call(
        "POST",
        "/api/v1/plugins",
        Some(json!({ "path": plugin(name).to_string_lossy() })),
    );
    assert_eq!(st, 201, "{name}: {p}");
    p
}

/// Polls the server's log until a line satisfies `pred`, for at most `within`.
fn wait_log_line(s: &Server, within: Duration, pred: impl Fn(&str) -> bool) -> Option<String> {
    let deadline = Instant::now() + within;
    loop {
        let log = std::fs::read_to_string(&s.log).unwrap_or_default();
        if let Some(line) = log.lines().find(|l| pred(l)) {
            return Some(line.to_owned());
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn typed_function_is_called_by_name_over_the_api() {
    let s = Server::start(&[], &[]);
    let hello = load(&s, "hello");
    assert_eq!(hello["functions"][0]["name"], "greet");
    assert_eq!(hello["functions"][0]["summary"], "greets someone by name");
    assert_eq!(
        hello["functions"][0]["input_schema"]["properties"]["name"]["type"],
        "string"
    );
    assert_eq!(hello["functions"][1]["name"], "count");

    let (st, out) = s.call(
        "POST",
        "/api/v1/plugins/hello/call/greet",
        Some(json!({"name": "ada"})),
    );
    assert_eq!(
        (st, &out["output"]),
        (200, &json!({"greeting": "hello, ada"}))
    );
    let (st, out) = s.call("POST", "/api/v1/plugins/hello/call/count", None);
    assert_eq!((st, &out["output"]), (200, &json!(1)), "{out}");
    // The default function keeps working beside the named ones, on the same state.
    let (st, out) = s.call(
        "POST",
        "/api/v1/plugins/hello/execute",
        Some(json!({"op": "count"})),
    );
    assert_eq!((st, &out["output"]["count"]), (200, &json!(1)), "{out}");

    // Calls are counted with execute.
    let (_, info) = s.call("GET", "/api/v1/plugins/hello", None);
    assert_eq!(info["stats"]["executes"], 3, "{info}");

    // The served OpenAPI document has the function's path with the manifest's schemas.
    let (_, doc) = s.call("GET", "/api/v1/openapi.json", None);
    let op = &doc["paths"]["/api/v1/plugins/hello/call/greet"]["post"];
    assert_eq!(
        op["requestBody"]["content"]["application/json"]["schema"]["properties"]["name"]["type"],
        "string",
        "{op}"
    );
    assert_eq!(
        op["responses"]["200"]["content"]["application/json"]["schema"]["properties"]["output"]["required"]
            [0],
        "greeting"
    );
    assert!(doc["paths"]["/api/v1/plugins/{name}/call/{function}"]["post"].is_object());
}

#[test]
fn host_checks_a_call_before_the_plugin_sees_it() {
    let s = Server::start(&[], &[]);
    load(&s, "hello");
    let (st, e) = s.call("POST", "/api/v1/plugins/hello/call/wave", Some(json!({})));
    assert_eq!(
        (st, e["error"]["code"].as_str()),
        (404, Some("function_not_found"))
    );
    assert_eq!(e["error"]["details"]["function"], "wave");

    // `name` must be a non-empty string and nothing else is allowed (hello's input schema).
    for bad in [
        json!({"name": 7}),
        json!({"name": ""}),
        json!({"other": 1}),
        json!([1]),
    ] {
        let (st, e) = s.call(
            "POST",
            "/api/v1/plugins/hello/call/greet",
            Some(bad.clone()),
        );
        assert_eq!(
            (st, e["error"]["code"].as_str()),
            (400, Some("invalid_input")),
            "{bad}: {e}"
        );
        assert!(
            !e["error"]["details"]["errors"][0]
                .as_str()
                .unwrap()
                .is_empty()
        );
    }
    // None of them reached the plugin: it counted no greeting.
    let (_, out) = s.call("POST", "/api/v1/plugins/hello/call/count", None);
    assert_eq!(out["output"], 0);

    // Input the schema allows but the typed input cannot take: the glue's typed error.
    let (st, e) = s.call(
        "POST",
        "/api/v1/plugins/hello/call/count",
        Some(json!({"x": 1})),
    );
    assert_eq!(
        (st, e["error"]["code"].as_str()),
        (422, Some("plugin_failed"))
    );
    assert_eq!(e["error"]["details"]["plugin_code"], "bad_request", "{e}");
}

#[test]
fn dependent_calls_a_typed_function_of_its_dependency() {
    let s = Server::start(&[], &[]);
    load(&s, "hello");
    load(&s, "greeter");
    let (st, out) = s.call(
        "POST",
        "/api/v1/plugins/greeter/call/greet",
        Some(json!({"name": "ada"})),
    );
    assert_eq!(
        (st, &out["output"]["greeting"]),
        (200, &json!("hello, ada!")),
        "{out}"
    );
    let (_, out) = s.call("POST", "/api/v1/plugins/hello/call/count", None);
    assert_eq!(
        out["output"], 1,
        "the greeting went through hello's typed function"
    );

    // The host's checks apply to dependency calls too, with their codes.
    let (st, e) = s.call(
        "POST",
        "/api/v1/plugins/greeter/execute",
        Some(json!({"op": "call", "function": "wave", "input": {}})),
    );
    assert_eq!(st, 422);
    assert_eq!(
        e["error"]["details"]["plugin_code"], "function_not_found",
        "{e}"
    );
    let (_, e) = s.call(
        "POST",
        "/api/v1/plugins/greeter/execute",
        Some(json!({"op": "call", "function": "greet", "input": {"name": 1}})),
    );
    assert_eq!(e["error"]["details"]["plugin_code"], "invalid_input", "{e}");
}

#[test]
fn cli_calls_a_typed_function() {
    let s = Server::start(&[], &[]);
    load(&s, "hello");
    let (ok, out, err) = s.cli(&["plugins", "call", "hello", "greet", r#"{"name":"cli"}"#]);
    assert!(ok, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v, json!({"greeting": "hello, cli"}));
    // No input: `null`, which `count` (typed `()`) takes.
    let (ok, out, err) = s.cli(&["plugins", "call", "hello", "count"]);
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "1");
    let (ok, _, err) = s.cli(&["plugins", "call", "hello", "wave", "{}"]);
    assert!(!ok);
    assert!(err.contains("function_not_found"), "{err}");
}

#[test]
fn registered_functions_must_match_the_declared_ones() {
    let s = Server::start(&[], &[]);
    let (st, e) = s.call(
        "POST",
        "/api/v1/plugins",
        Some(json!({ "path": plugin("function-mismatch").to_string_lossy() })),
    );
    assert_eq!(
        (st, e["error"]["code"].as_str()),
        (422, Some("function_mismatch")),
        "{e}"
    );
    assert_eq!(e["error"]["details"]["plugin"], "function-mismatch");
    assert!(
        e["error"]["message"].as_str().unwrap().contains("`wave`"),
        "the error names the function: {e}"
    );
    let (_, list) = s.call("GET", "/api/v1/plugins", None);
    assert_eq!(list, json!([]), "nothing stays loaded");
}

#[test]
fn typed_config_reaches_the_plugin() {
    let s = Server::start(&[], &[]);
    let (st, p) = s.call(
        "POST",
        "/api/v1/plugins",
        Some(json!({"path": plugin("configured").to_string_lossy(), "config": {"greeting": "hi"}})),
    );
    assert_eq!(st, 201, "{p}");
    let (_, out) = s.call("POST", "/api/v1/plugins/configured/execute", None);
    // `times` was absent: the typed config's serde default (1) applies.
    assert_eq!(out["output"]["said"], "hi");
    assert_eq!(
        out["output"]["config"],
        json!({"greeting": "hi", "times": 1})
    );
}

#[test]
fn log_macros_reach_the_host_log_with_the_plugin_name() {
    let s = Server::start(&[], &[("PLUGIN_HOST_LOG", "info")]);
    load(&s, "hello");
    let (st, _) = s.call(
        "POST",
        "/api/v1/plugins/hello/call/greet",
        Some(json!({"name": "ada"})),
    );
    assert_eq!(st, 200);
    let line = wait_log_line(&s, Duration::from_secs(10), |l| l.contains("greeting ada"));
    let line = line.expect("log::info! of the plugin reached the host log");
    assert!(line.contains("INFO"), "{line}");
    assert!(
        line.contains("plugin=hello") || line.contains(r#"plugin="hello""#),
        "{line}"
    );
}

#[test]
fn log_records_below_the_operator_level_are_dropped() {
    let s = Server::start(&[], &[("PLUGIN_HOST_LOG", "warn")]);
    load(&s, "hello");
    let (st, _) = s.call(
        "POST",
        "/api/v1/plugins/hello/call/greet",
        Some(json!({"name": "quiet"})),
    );
    assert_eq!(st, 200);
    // The record would have been written before the call returned; stop the server so the log
    // is complete, then look.
    let mut s = s;
    let log = s.stop();
    assert!(!log.contains("greeting quiet"), "{log}");
    assert!(!log.contains("hello is ready"), "{log}");
}

#[test]
fn inspect_lists_functions() {
    let v = inspected(&plugin("hello"));
    let functions = v["manifest"]["functions"].as_array().unwrap();
    let names: Vec<&str> = functions
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["greet", "count", "greet_http"]);
    assert_eq!(functions[1]["output_schema"]["type"], "integer");
    assert_eq!(v["concurrent"], false);
}

#[test]
fn invalid_function_declarations_are_refused_at_inspect() {
    let dir = temp_dir();
    // Same length as `greet`: the rewritten manifest must fit in place.
    for (name, edit) in [("bad-name", json!("Greet")), ("duplicate", json!("count"))] {
        let file = rewritten_plugin("hello", dir.path(), name, |m| {
            m["functions"][0]["name"] = edit.clone();
        });
        let e = plugin_host::inspect(&file).unwrap_err();
        assert_eq!(e.code().as_str(), "invalid_plugin", "{name}: {e}");
    }
    let file = rewritten_plugin("hello", dir.path(), "bad-schema", |m| {
        m["functions"][1]["output_schema"] = json!(r#"{"type":5}"#);
    });
    let e = plugin_host::inspect(&file).unwrap_err();
    assert_eq!(e.code().as_str(), "invalid_plugin", "{e}");
}

#[test]
fn the_openapi_document_gives_each_function_with_an_input_schema_its_own_path() {
    let s = Server::start(&[], &[]);
    load(&s, "hello");
    let (st, doc) = s.call("GET", "/api/v1/openapi.json", None);
    assert_eq!(st, 200);
    let greet = &doc["paths"]["/api/v1/plugins/hello/call/greet"]["post"];
    assert_eq!(greet["tags"], json!(["hello"]));
    // The declared input schema, and a body required because that schema refuses `null`.
    assert_eq!(
        greet["requestBody"]["content"]["application/json"]["schema"]["properties"]["name"]["type"],
        "string"
    );
    assert_eq!(greet["requestBody"]["required"], true);
    // `count` declares no input schema: only the generic route reaches it.
    assert!(doc["paths"]["/api/v1/plugins/hello/call/count"].is_null());
    assert!(doc["paths"]["/api/v1/plugins/{name}/call/{function}"]["post"].is_object());
}
