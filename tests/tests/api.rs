//! The admin API over real HTTP against the real `plugin-host serve` binary on an ephemeral
//! loopback port, with real plugins: every route of shared/API.md, its status codes and error
//! codes, auth, SSE, metrics, the OpenAPI document, restart restoring the set, config errors.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::io::{BufRead, BufReader};
use std::process::Command;

use integration::*;
use serde_json::{Value, json};

fn path_of(p: &std::path::Path) -> Value {
    json!(p.to_string_lossy())
}

#[test]
fn plugin_routes_follow_the_contract() {
    let s = Server::start(&[], &[]);
    let (st, list) = s.call("GET", "/api/v1/plugins", None);
    assert_eq!((st, list), (200, json!([])));
    let (st, health) = s.call("GET", "/health", None);
    assert_eq!(st, 200);
    assert_eq!(health["status"], "ok");
    assert_eq!(
        health["backends"]["tables"], "ok",
        "the embedded SQLite backend: {health}"
    );

    let (st, hello) = s.call(
        "POST",
        "/api/v1/plugins",
        Some(json!({"path": path_of(&plugin("hello"))})),
    );
    assert_eq!(st, 201, "{hello}");
    for key in [
        "name",
        "version",
        "state",
        "api_version",
        "path",
        "dependencies",
        "dependents",
        "resources",
        "loaded_at",
        "generation",
        "error",
    ] {
        assert!(
            hello.get(key).is_some(),
            "plugin object lacks {key}: {hello}"
        );
    }
    assert_eq!(hello["state"], "active");
    assert_eq!(
        hello["api_version"],
        format!(
            "{}.{}",
            plugin_api::ffi::ABI_MAJOR,
            plugin_api::ffi::API_MINOR
        )
    );
    let (st, _) = s.call(
        "POST",
        "/api/v1/plugins",
        Some(json!({"path": path_of(&plugin("greeter"))})),
    );
    assert_eq!(st, 201);

    let (st, list) = s.call("GET", "/api/v1/plugins", None);
    assert_eq!(st, 200);
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["hello", "greeter"], "dependency order");
    let (st, one) = s.call("GET", "/api/v1/plugins/hello", None);
    assert_eq!((st, one["dependents"].clone()), (200, json!(["greeter"])));

    let (st, out) = s.call(
        "POST",
        "/api/v1/plugins/greeter/execute",
        Some(json!({"name": "api"})),
    );
    assert_eq!(
        (st, out["output"]["greeting"].clone()),
        (200, json!("hello, api!"))
    );

    let (st, disabled) = s.call("POST", "/api/v1/plugins/greeter/disable", None);
    assert_eq!((st, disabled["state"].clone()), (200, json!("disabled")));
    let (st, e) = s.call("POST", "/api/v1/plugins/greeter/execute", Some(json!({})));
    assert_eq!(
        (st, e["error"]["code"].clone()),
        (409, json!("plugin_disabled"))
    );
    let (st, enabled) = s.call("POST", "/api/v1/plugins/greeter/enable", None);
    assert_eq!((st, enabled["state"].clone()), (200, json!("active")));

    let (st, reloaded) = s.call("POST", "/api/v1/plugins/hello/reload", None);
    assert_eq!(st, 200);
    assert!(reloaded["generation"].as_u64() > hello["generation"].as_u64());

    let (st, e) = s.call("DELETE", "/api/v1/plugins/hello", None);
    assert_eq!(
        (st, e["error"]["code"].clone()),
        (409, json!("has_dependents"))
    );
    assert_eq!(e["error"]["details"]["dependents"], json!(["greeter"]));
    let (st, e) = s.call("DELETE", "/api/v1/plugins/hello?cascade=maybe", None);
    assert_eq!(
        (st, e["error"]["code"].clone()),
        (400, json!("bad_request"))
    );
    let (st, report) = s.call("DELETE", "/api/v1/plugins/hello?cascade=true", None);
    assert_eq!(st, 200);
    assert_eq!(
        report,
        json!({"unloaded": ["greeter", "hello"], "outcome": {"greeter": "unmapped", "hello": "unmapped"}})
    );
}

#[test]
fn every_error_code_that_applies() {
    let s = Server::start(&[], &[("PLUGIN_HOST_INITIALIZE_TIMEOUT_MS", "300")]);
    let dir = temp_dir();
    let load =
        |p: &std::path::Path| s.call("POST", "/api/v1/plugins", Some(json!({"path": path_of(p)})));
    let code = |r: &(u16, Value)| (r.0, r.1["error"]["code"].as_str().unwrap_or("").to_owned());
    let expect = |r: (u16, Value), status: u16, c: &str| {
        assert_eq!(code(&r), (status, c.to_owned()), "{}", r.1);
        assert!(
            r.1["error"]["message"].is_string() && r.1["error"]["details"].is_object(),
            "{}",
            r.1
        );
    };

    expect(
        s.call("GET", "/api/v1/plugins/ghost", None),
        404,
        "not_found",
    );
    expect(
        s.call("GET", "/api/v1/no/such/route", None),
        404,
        "not_found",
    );
    expect(
        s.call("PATCH", "/api/v1/plugins", None),
        405,
        "method_not_allowed",
    );
    expect(
        load(&dir.path().join("libmissing.so")),
        400,
        "file_not_found",
    );
    let text = dir.path().join(lib_file("text"));
    std::fs::write(&text, "not a library").unwrap();
    expect(load(&text), 400, "invalid_plugin");
    let abi = dir.path().join(lib_file("abi"));
    patched_header(&plugin("hello"), &abi, 0, 9);
    expect(load(&abi), 400, "incompatible_abi");
    let badname = dir.path().join(lib_file("badname"));
    patched_copy(
        &plugin("hello"),
        &badname,
        br#""name":"hello""#,
        br#""name":"He.lo""#,
    );
    expect(load(&badname), 400, "invalid_name");
    expect(
        load(&panic_abort_plugin()),
        400,
        "unsupported_panic_strategy",
    );
    expect(load(&plugin("greeter")), 409, "dependency_not_found");
    expect(load(&plugin("self-dep")), 400, "self_dependency");
    assert_eq!(load(&plugin("hello")).0, 201);
    expect(load(&plugin("hello")), 409, "already_loaded");
    expect(
        load(&plugin("needs-hello-2")),
        409,
        "dependency_version_mismatch",
    );
    expect(load(&plugin("fail-init")), 422, "initialize_failed");
    expect(load(&plugin("hang-init")), 504, "timeout");
    assert_eq!(load(&plugin("panicker")).0, 201);
    let r = s.call(
        "POST",
        "/api/v1/plugins/panicker/execute",
        Some(json!({"panic": true})),
    );
    assert_eq!(r.1["error"]["details"]["panicked"], true);
    expect(r, 422, "plugin_failed");
    assert_eq!(load(&plugin("greeter")).0, 201);
    let r = s.call(
        "POST",
        "/api/v1/plugins/greeter/execute",
        Some(json!({"op": "undeclared"})),
    );
    assert_eq!(
        r.1["error"]["details"]["plugin_code"],
        "dependency_not_declared"
    );
    expect(r, 422, "plugin_failed");
    expect(
        s.call("DELETE", "/api/v1/plugins/hello", None),
        409,
        "has_dependents",
    );
    expect(
        s.call(
            "POST",
            "/api/v1/plugins",
            Some(json!({"path": path_of(&plugin("configured")), "config": {"greeting": 5}})),
        ),
        422,
        "invalid_plugin_config",
    );
    expect(
        s.call("POST", "/api/v1/events", Some(json!({"name": "a::b"}))),
        400,
        "invalid_event_name",
    );
    expect(
        s.call(
            "PUT",
            "/api/v1/plugins/hello/overrides",
            Some(json!({"tables": ["Bad Name"]})),
        ),
        400,
        "invalid_overrides",
    );

    // Malformed and oversized bodies.
    let resp = ureq::post(&format!("{}/api/v1/plugins", s.addr))
        .set("Content-Type", "application/json")
        .send_string("{not json");
    let Err(ureq::Error::Status(400, r)) = resp else {
        panic!("{resp:?}")
    };
    assert_eq!(
        r.into_json::<Value>().unwrap()["error"]["code"],
        "bad_request"
    );

    // A directory with a cycle: the report names it.
    let cyc = temp_dir();
    copy_plugin("cycle-a", cyc.path());
    copy_plugin("cycle-b", cyc.path());
    let (st, report) = s.call(
        "POST",
        "/api/v1/directory/load",
        Some(json!({"path": path_of(cyc.path())})),
    );
    assert_eq!(st, 200);
    let failed = report["failed"].as_array().unwrap();
    assert!(
        failed.iter().all(|f| f["code"] == "circular_dependency"),
        "{report}"
    );
    assert!(
        failed.iter().any(|f| f["error"]
            .as_str()
            .unwrap_or_default()
            .contains("cycle-a -> cycle-b -> cycle-a")),
        "{report}"
    );
    expect(
        s.call(
            "POST",
            "/api/v1/directory/load",
            Some(json!({"path": "/no/such/dir"})),
        ),
        400,
        "bad_request",
    );
}

#[test]
fn token_is_required_when_configured_and_compared_exactly() {
    let token = "s3cret-token-0123456789";
    let s = Server::start(&[], &[("PLUGIN_HOST_ADMIN_TOKEN", token)]);
    let (st, e) = s.call("GET", "/api/v1/plugins", None);
    assert_eq!(
        (st, e["error"]["code"].clone()),
        (401, json!("unauthorized"))
    );
    let (st, _) = s.call_with(
        "GET",
        "/api/v1/plugins",
        None,
        Some("wrong-token-0123456789"),
    );
    assert_eq!(st, 401);
    let (st, _) = s.call_with(
        "GET",
        "/api/v1/plugins",
        None,
        Some(&token[..token.len() - 1]),
    );
    assert_eq!(st, 401, "a prefix of the token is not the token");
    let (st, _) = s.call_with(
        "POST",
        "/api/v1/plugins",
        Some(json!({"path": path_of(&plugin("hello"))})),
        None,
    );
    assert_eq!(st, 401, "mutations need it too");
    let (st, _) = s.call_with("GET", "/api/v1/plugins", None, Some(token));
    assert_eq!(st, 200);
    for open in ["/health", "/metrics", "/api/v1/openapi.json"] {
        assert_eq!(s.call("GET", open, None).0, 200, "{open} needs no token");
    }
}

#[test]
fn refuses_a_non_loopback_address_without_a_token() {
    let out = Command::new(host_binary())
        .args(["serve", "--listen", "0.0.0.0:0"])
        .env_remove("PLUGIN_HOST_ADMIN_TOKEN")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("refusing to listen on 0.0.0.0"), "{stderr}");
    assert!(
        stderr.contains("PLUGIN_HOST_ADMIN_TOKEN"),
        "says how to fix it: {stderr}"
    );
    assert!(out.stdout.is_empty(), "it never listened");
}

#[test]
fn sse_streams_lifecycle_and_bus_events() {
    let s = Server::start(&[], &[]);
    let resp = ureq::get(&format!("{}/api/v1/events/stream?pattern=plugin:*", s.addr))
        .call()
        .unwrap();
    assert_eq!(resp.header("content-type"), Some("text/event-stream"));
    let mut lines = BufReader::new(resp.into_reader()).lines();
    let (st, _) = s.call(
        "POST",
        "/api/v1/plugins",
        Some(json!({"path": path_of(&plugin("hello"))})),
    );
    assert_eq!(st, 201);
    let mut event = None;
    let mut data = None;
    for line in lines.by_ref() {
        let line = line.unwrap();
        if let Some(e) = line.strip_prefix("event:") {
            event = Some(e.trim().to_owned());
        } else if let Some(d) = line.strip_prefix("data:") {
            data = Some(serde_json::from_str::<Value>(d.trim()).unwrap());
            break;
        }
    }
    assert_eq!(event.as_deref(), Some("plugin:loaded"));
    assert_eq!(data.unwrap()["payload"]["name"], "hello");
    let (st, body) = s.call(
        "POST",
        "/api/v1/events",
        Some(json!({"name": "ops:note", "payload": {"x": 1}})),
    );
    assert_eq!(
        (st, body),
        (202, json!({"delivered": 1})),
        "the SSE fan-out is a host subscriber"
    );
    let (st, e) = s.call("GET", "/api/v1/events/stream?pattern=da*", None);
    assert_eq!(
        (st, e["error"]["code"].clone()),
        (400, json!("invalid_pattern"))
    );
}

#[test]
fn metrics_follow_loads_and_calls() {
    let s = Server::start(&[], &[]);
    let metrics = || {
        ureq::get(&format!("{}/metrics", s.addr))
            .call()
            .unwrap()
            .into_string()
            .unwrap()
    };
    let value = |text: &str, line: &str| -> f64 {
        text.lines()
            .find(|l| l.starts_with(line))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(-1.0)
    };
    let before = metrics();
    assert_eq!(value(&before, "plugin_host_loads_total "), 0.0);
    s.call(
        "POST",
        "/api/v1/plugins",
        Some(json!({"path": path_of(&plugin("hello"))})),
    );
    s.call("POST", "/api/v1/plugins/hello/execute", Some(json!({})));
    s.call(
        "POST",
        "/api/v1/plugins",
        Some(json!({"path": path_of(&plugin("fail-init"))})),
    );
    s.call("POST", "/api/v1/plugins/hello/reload", None);
    let after = metrics();
    assert_eq!(value(&after, "plugin_host_loads_total "), 1.0);
    assert_eq!(value(&after, "plugin_host_load_failures_total "), 1.0);
    assert_eq!(value(&after, "plugin_host_reloads_total "), 1.0);
    assert_eq!(value(&after, "plugin_host_load_seconds_count "), 1.0);
    assert_eq!(value(&after, "plugin_host_plugins{state=\"active\"}"), 1.0);
    assert!(
        after.contains("plugin_host_event_drops_total{plugin=\"hello\"} 0"),
        "{after}"
    );
    assert!(after.contains("# TYPE plugin_host_reload_seconds histogram"));
}

#[test]
fn openapi_document_matches_the_routes_that_exist() {
    let s = Server::start(&[], &[]);
    let (st, doc) = s.call("GET", "/api/v1/openapi.json", None);
    assert_eq!(st, 200);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    // Every route of shared/API.md is documented.
    let contract = [
        ("get", "/health"),
        ("get", "/metrics"),
        ("get", "/api/v1/openapi.json"),
        ("get", "/api/v1/plugins"),
        ("get", "/api/v1/plugins/{name}"),
        ("post", "/api/v1/plugins"),
        ("delete", "/api/v1/plugins/{name}"),
        ("post", "/api/v1/plugins/{name}/reload"),
        ("post", "/api/v1/plugins/{name}/enable"),
        ("post", "/api/v1/plugins/{name}/disable"),
        ("post", "/api/v1/plugins/{name}/execute"),
        ("get", "/api/v1/plugins/{name}/overrides"),
        ("put", "/api/v1/plugins/{name}/overrides"),
        ("delete", "/api/v1/plugins/{name}/overrides"),
        ("post", "/api/v1/directory/load"),
        ("post", "/api/v1/events"),
        ("get", "/api/v1/events/stream"),
    ];
    for (method, path) in contract {
        assert!(
            doc["paths"][path][method].is_object(),
            "{method} {path} is not documented"
        );
    }
    // Every documented route exists: the router answers it with something other than
    // "no such route" or "method not allowed". (The router is built from the table the
    // document comes from; this checks that end to end.)
    for (path, methods) in doc["paths"].as_object().unwrap() {
        for method in methods.as_object().unwrap().keys() {
            if path.ends_with("/stream") {
                continue; // checked by the SSE test; it never ends
            }
            let concrete = path.replace("{name}", "ghost").replace("{function}", "f");
            let body = (method != "get" && method != "delete").then(|| json!({}));
            let (st, resp) = s.call(&method.to_uppercase(), &concrete, body);
            let code = resp["error"]["code"].as_str().unwrap_or("");
            let message = resp["error"]["message"].as_str().unwrap_or("");
            assert!(
                !message.starts_with("no route") && code != "method_not_allowed",
                "{method} {path} is documented but not served: {st} {resp}"
            );
        }
    }
}

#[test]
fn overrides_and_config_routes() {
    let s = Server::start(&[], &[]);
    let (st, e) = s.call("GET", "/api/v1/plugins/configured/overrides", None);
    assert_eq!((st, e["error"]["code"].clone()), (404, json!("not_found")));
    let (st, p) = s.call(
        "POST",
        "/api/v1/plugins",
        Some(json!({"path": path_of(&plugin("configured")), "config": {"greeting": "hi", "times": 2}})),
    );
    assert_eq!(st, 201, "{p}");
    let (_, out) = s.call("POST", "/api/v1/plugins/configured/execute", None);
    assert_eq!(
        out["output"]["said"], "hi hi",
        "the plugin read its validated config"
    );
    let gen1 = p["generation"].as_u64().unwrap();

    let (st, o) = s.call(
        "PUT",
        "/api/v1/plugins/configured/overrides",
        Some(json!({"tables": ["memos"], "table_map": {"memos": "notes_v2"}})),
    );
    assert_eq!(st, 200, "{o}");
    assert_eq!(o["tables"], json!(["memos"]));
    let (_, p) = s.call("GET", "/api/v1/plugins/configured", None);
    assert!(
        p["generation"].as_u64().unwrap() > gen1,
        "changing overrides reloads"
    );
    assert_eq!(p["resources"]["tables"], json!(["memos"]));
    assert_eq!(p["declared"]["tables"], json!(["notes"]));
    let (st, o) = s.call("GET", "/api/v1/plugins/configured/overrides", None);
    assert_eq!(
        (st, o["table_map"]["memos"].clone()),
        (200, json!("notes_v2"))
    );

    // A map of a name the plugin may not use is refused; the old overrides stay.
    let (st, e) = s.call(
        "PUT",
        "/api/v1/plugins/configured/overrides",
        Some(json!({"table_map": {"secrets": "x"}})),
    );
    assert_eq!(
        (st, e["error"]["code"].clone()),
        (400, json!("invalid_overrides"))
    );
    let (_, o) = s.call("GET", "/api/v1/plugins/configured/overrides", None);
    assert_eq!(o["tables"], json!(["memos"]));

    // A config the schema rejects is refused, with the schema errors; the old one keeps running.
    let (st, e) = s.call(
        "PUT",
        "/api/v1/plugins/configured/config",
        Some(json!({"greeting": "yo", "times": 99})),
    );
    assert_eq!(
        (st, e["error"]["code"].clone()),
        (422, json!("invalid_plugin_config"))
    );
    assert!(
        e["error"]["details"]["errors"][0]
            .as_str()
            .unwrap_or_default()
            .contains("/times"),
        "{e}"
    );
    let (_, out) = s.call("POST", "/api/v1/plugins/configured/execute", None);
    assert_eq!(out["output"]["said"], "hi hi");
    let (st, _) = s.call(
        "PUT",
        "/api/v1/plugins/configured/config",
        Some(json!({"greeting": "yo"})),
    );
    assert_eq!(st, 200);
    let (_, out) = s.call("POST", "/api/v1/plugins/configured/execute", None);
    assert_eq!(out["output"]["said"], "yo");

    let (st, _) = s.call("DELETE", "/api/v1/plugins/configured/overrides", None);
    assert_eq!(st, 200);
    let (_, p) = s.call("GET", "/api/v1/plugins/configured", None);
    assert_eq!(p["resources"]["tables"], json!(["notes"]));
}

#[test]
fn restart_restores_the_plugin_set() {
    let tmp = temp_dir();
    let data = tmp.path().join("data");
    let mut first = Server::start_with_data(&[], &[], &data, None);
    for p in ["hello", "greeter", "configured", "panicker"] {
        let body = if p == "configured" {
            json!({"path": path_of(&plugin(p)), "config": {"greeting": "kept"}})
        } else {
            json!({"path": path_of(&plugin(p))})
        };
        assert_eq!(first.call("POST", "/api/v1/plugins", Some(body)).0, 201);
    }
    first.call("POST", "/api/v1/plugins/greeter/disable", None);
    first.call("DELETE", "/api/v1/plugins/panicker", None);
    let log = first.stop();
    let greeter_down = log
        .find("plugin:unloaded plugin=greeter")
        .expect("greeter unloaded at shutdown");
    let hello_down = log
        .find("plugin:unloaded plugin=hello")
        .expect("hello unloaded at shutdown");
    assert!(
        greeter_down < hello_down,
        "shutdown unloads dependents first"
    );

    // hello's file is gone now: the restore reports it and goes on with the rest.
    let second = Server::start_with_data(&[], &[], &data, None);
    let (_, list) = second.call("GET", "/api/v1/plugins", None);
    let states: Vec<(String, String)> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap().to_owned(),
                p["state"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        states,
        [
            ("hello".to_owned(), "active".to_owned()),
            ("greeter".to_owned(), "disabled".to_owned()),
            ("configured".to_owned(), "active".to_owned())
        ]
    );
    let (_, out) = second.call("POST", "/api/v1/plugins/configured/execute", None);
    assert_eq!(out["output"]["said"], "kept", "config restored");
}

#[test]
fn restore_reports_a_plugin_that_no_longer_loads_and_keeps_the_others() {
    let tmp = temp_dir();
    let data = tmp.path().join("data");
    let own = tmp.path().join("plugins");
    std::fs::create_dir_all(&own).unwrap();
    let hello = copy_plugin("hello", &own);
    let panicker = copy_plugin("panicker", &own);
    let mut first = Server::start_with_data(&[], &[], &data, None);
    for p in [&hello, &panicker] {
        assert_eq!(
            first
                .call("POST", "/api/v1/plugins", Some(json!({"path": path_of(p)})))
                .0,
            201
        );
    }
    first.stop();
    std::fs::write(&hello, "corrupted").unwrap();
    let second = Server::start_with_data(&[], &[], &data, None);
    let (_, list) = second.call("GET", "/api/v1/plugins", None);
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["panicker"]);
    let log = std::fs::read_to_string(&second.log).unwrap();
    assert!(
        log.contains("plugin not restored"),
        "the failure is reported: {log}"
    );
}

#[test]
fn invalid_config_is_rejected_naming_the_key() {
    let dir = temp_dir();
    let file = dir.path().join("plugin-host.toml");
    std::fs::write(&file, "lisen = \"127.0.0.1:0\"\n").unwrap();
    let out = Command::new(host_binary())
        .arg("serve")
        .arg("--config")
        .arg(&file)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("`lisen`"), "{stderr}");
    assert!(out.stdout.is_empty(), "nothing started");

    std::fs::write(&file, "[timeouts]\ninitialize_ms = 0\n").unwrap();
    let out = Command::new(host_binary())
        .args(["config", "check"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("timeouts.initialize_ms"));

    let out = Command::new(host_binary())
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("PLUGIN_HOST_WATCH", "perhaps")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("PLUGIN_HOST_WATCH"));

    std::fs::write(
        &file,
        "listen = \"127.0.0.1:0\"\n[plugins]\nwatch = false\n",
    )
    .unwrap();
    let out = Command::new(host_binary())
        .args(["config", "check"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("configuration is valid"));
}

#[test]
fn the_cli_drives_a_running_server() {
    let s = Server::start(&[], &[]);
    let hello = plugin("hello").to_string_lossy().into_owned();
    let greeter = plugin("greeter").to_string_lossy().into_owned();
    let (ok, out, err) = s.cli(&["plugins", "load", &hello]);
    assert!(ok, "{err}");
    assert!(out.starts_with("loaded hello 1.0.0"), "{out}");
    let (ok, _, _) = s.cli(&["plugins", "load", &greeter]);
    assert!(ok);
    let (ok, out, _) = s.cli(&["plugins", "ls"]);
    assert!(ok);
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].starts_with("NAME")
            && lines[1].starts_with("hello")
            && lines[2].starts_with("greeter"),
        "{out}"
    );
    let (ok, out, _) = s.cli(&["plugins", "ls", "--json"]);
    assert!(ok);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v[1]["name"], "greeter");
    let (ok, out, _) = s.cli(&["plugins", "show", "hello"]);
    assert!(ok && out.contains("dependents    greeter"), "{out}");
    let (ok, out, _) = s.cli(&["plugins", "exec", "greeter", r#"{"name":"cli"}"#]);
    assert!(ok);
    assert_eq!(
        serde_json::from_str::<Value>(&out).unwrap()["greeting"],
        "hello, cli!"
    );
    let (ok, out, _) = s.cli(&["plugins", "disable", "greeter"]);
    assert!(ok && out.starts_with("disabled greeter"), "{out}");
    let (ok, _, _) = s.cli(&["plugins", "enable", "greeter"]);
    assert!(ok);
    let (ok, out, _) = s.cli(&["plugins", "reload", "hello"]);
    assert!(ok && out.starts_with("reloaded hello"), "{out}");
    let (ok, _, err) = s.cli(&["plugins", "unload", "hello"]);
    assert!(!ok, "has dependents");
    assert!(
        err.contains("has_dependents") && err.contains("greeter"),
        "the server's code and message: {err}"
    );
    let (ok, out, _) = s.cli(&["plugins", "unload", "hello", "--cascade"]);
    assert!(ok);
    assert_eq!(
        out,
        "unloaded greeter (unmapped)\nunloaded hello (unmapped)\n"
    );
    let (ok, _, err) = s.cli(&["plugins", "exec", "ghost"]);
    assert!(!ok && err.contains("not_found"), "{err}");

    // events tail prints a load event.
    let addr = s.addr.clone();
    let tail = std::thread::spawn(move || {
        Command::new(host_binary())
            .args([
                "events",
                "tail",
                "--pattern",
                "plugin:loaded",
                "--count",
                "1",
                "--addr",
                &addr,
            ])
            .output()
            .unwrap()
    });
    std::thread::sleep(std::time::Duration::from_millis(300));
    s.cli(&["plugins", "load", &hello]);
    let out = tail.join().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.starts_with("plugin:loaded") && text.contains("\"hello\""),
        "{text}"
    );

    // A server that is not there: a clear error, non-zero exit.
    let out = Command::new(host_binary())
        .args(["plugins", "ls", "--addr", "http://127.0.0.1:9"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot reach"));
}

#[test]
fn serve_loads_the_plugins_folder_and_logs_json_when_asked() {
    let dir = temp_dir();
    copy_plugin("hello", dir.path());
    copy_plugin("greeter", dir.path());
    let plugins = dir.path().to_string_lossy().into_owned();
    let mut s = Server::start(&["--plugins-dir", &plugins, "--log-format", "json"], &[]);
    let (_, list) = s.call("GET", "/api/v1/plugins", None);
    assert_eq!(
        list.as_array().unwrap().len(),
        2,
        "loaded before the address was printed"
    );
    s.call("POST", "/api/v1/plugins/hello/execute", Some(json!({})));
    let log = s.stop();
    let plugin_lines: Vec<Value> = log
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["target"] == "plugin")
        .collect();
    assert!(!plugin_lines.is_empty(), "JSON log lines: {log}");
    assert_eq!(
        plugin_lines[0]["fields"]["plugin"], "hello",
        "plugin logs carry the plugin name"
    );
}

#[test]
fn oversized_bodies_get_413_with_the_error_body() {
    // A small limit and bodies up to 200 KiB over it: the server reads (and throws away) up to
    // 256 KiB of a too-large body before it answers, so the client finishes sending and always
    // reads the 413 instead of a reset.
    let dir = temp_dir();
    let config = dir.path().join("plugin-host.toml");
    std::fs::write(&config, "[limits]\nbody_bytes = 2048\n").unwrap();
    let s = Server::start(&["--config", config.to_str().unwrap()], &[]);
    for size in [16 * 1024, 200 * 1024] {
        for _ in 0..5 {
            let body = format!("\"{}\"", "x".repeat(size));
            let resp = ureq::post(&format!("{}/api/v1/plugins/hello/execute", s.addr))
                .set("Content-Type", "application/json")
                .send_string(&body);
            let Err(ureq::Error::Status(413, r)) = resp else {
                panic!("expected 413 for {size} bytes, got {resp:?}")
            };
            assert_eq!(
                r.into_json::<Value>().unwrap()["error"]["code"],
                "payload_too_large"
            );
        }
    }
}

/// A validator of the component schema `name` of the served OpenAPI document.
fn component(doc: &Value, name: &str) -> jsonschema::Validator {
    let schema = json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$ref": format!("#/components/schemas/{name}"),
        "components": doc["components"],
    });
    jsonschema::validator_for(&schema).unwrap()
}

/// Checks `value` against the component schema `name` of the served OpenAPI document.
fn assert_conforms(doc: &Value, name: &str, value: &Value) {
    let errors: Vec<String> = component(doc, name)
        .iter_errors(value)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "{name} does not describe {value}: {errors:?}"
    );
}

/// Whether `value` is a valid `name` of the served OpenAPI document.
fn conforms(doc: &Value, name: &str, value: &Value) -> bool {
    component(doc, name).is_valid(value)
}

#[test]
fn openapi_schemas_describe_the_real_answers() {
    let s = Server::start(&[], &[]);
    let (_, doc) = s.call("GET", "/api/v1/openapi.json", None);
    for p in ["hello", "greeter"] {
        let (st, info) = s.call(
            "POST",
            "/api/v1/plugins",
            Some(json!({"path": path_of(&plugin(p))})),
        );
        assert_eq!(st, 201, "{info}");
        assert_conforms(&doc, "Plugin", &info);
    }
    // A plugin without overrides or config sends both as null.
    let (_, hello) = s.call("GET", "/api/v1/plugins/hello", None);
    assert_eq!(
        (&hello["overrides"], &hello["config"]),
        (&Value::Null, &Value::Null)
    );
    assert_conforms(&doc, "Plugin", &hello);

    let (st, o) = s.call(
        "PUT",
        "/api/v1/plugins/hello/overrides",
        Some(json!({"tables": ["memos"], "topics": null})),
    );
    assert_eq!(st, 200, "{o}");
    assert_conforms(&doc, "StoredOverrides", &o);
    let (_, o) = s.call("GET", "/api/v1/plugins/hello/overrides", None);
    assert_conforms(&doc, "StoredOverrides", &o);
    let (_, list) = s.call("GET", "/api/v1/plugins", None);
    assert_eq!(list[0]["overrides"]["tables"], json!(["memos"]));
    assert_conforms(&doc, "PluginList", &list);

    let (_, disabled) = s.call("POST", "/api/v1/plugins/greeter/disable", None);
    assert_conforms(&doc, "Plugin", &disabled);
    let (_, enabled) = s.call("POST", "/api/v1/plugins/greeter/enable", None);
    assert_conforms(&doc, "Plugin", &enabled);
    let (_, out) = s.call(
        "POST",
        "/api/v1/plugins/greeter/execute",
        Some(json!({"name": "doc"})),
    );
    assert_conforms(&doc, "ExecuteResponse", &out);
    let (_, health) = s.call("GET", "/health", None);
    assert_conforms(&doc, "Health", &health);
    let (_, watch) = s.call("GET", "/api/v1/watch", None);
    assert_eq!(watch["dir"], Value::Null, "{watch}");
    assert_conforms(&doc, "WatchStatus", &watch);
    let (st, emitted) = s.call(
        "POST",
        "/api/v1/events",
        Some(json!({"name": "user:created", "payload": {"id": 1}})),
    );
    assert_eq!(st, 202);
    assert_conforms(&doc, "EmitResponse", &emitted);

    // A folder whose plugins are loaded already: every file is reported failed, name and code.
    let dir = temp_dir();
    std::fs::copy(plugin("hello"), dir.path().join(lib_file("hello"))).unwrap();
    let (st, report) = s.call(
        "POST",
        "/api/v1/directory/load",
        Some(json!({"path": path_of(dir.path())})),
    );
    assert_eq!(st, 200, "{report}");
    assert_eq!(report["failed"][0]["code"], "already_loaded", "{report}");
    assert_conforms(&doc, "DirectoryReport", &report);

    let (st, e) = s.call("GET", "/api/v1/plugins/ghost", None);
    assert_eq!(st, 404);
    assert_conforms(&doc, "Error", &e);
    let (st, report) = s.call("DELETE", "/api/v1/plugins/hello?cascade=true", None);
    assert_eq!(st, 200);
    assert_conforms(&doc, "UnloadReport", &report);
}

#[test]
fn requests_the_schema_refuses_the_server_refuses() {
    let s = Server::start(&[], &[]);
    let (_, doc) = s.call("GET", "/api/v1/openapi.json", None);
    let hello = path_of(&plugin("hello"));
    let code = |r: (u16, Value)| (r.0, r.1["error"]["code"].as_str().unwrap_or("").to_owned());
    // (schema, route, body, status and code the server answers)
    let refused = [
        (
            "LoadRequest",
            "/api/v1/plugins",
            json!({"path": hello, "extra": 1}),
            (400, "bad_request"),
        ),
        (
            "LoadRequest",
            "/api/v1/plugins",
            json!({"path": ""}),
            (400, "invalid_path"),
        ),
        (
            "LoadRequest",
            "/api/v1/plugins",
            json!({"path": "relative/libplugin_hello.so"}),
            (400, "invalid_path"),
        ),
        (
            "LoadRequest",
            "/api/v1/plugins",
            json!({"path": hello, "overrides": {"tables": [""]}}),
            (400, "invalid_overrides"),
        ),
        (
            "PathRequest",
            "/api/v1/directory/load",
            json!({"path": ""}),
            (400, "invalid_path"),
        ),
        (
            "PathRequest",
            "/api/v1/directory/load",
            json!({"path": "/tmp", "recursive": true}),
            (400, "bad_request"),
        ),
        (
            "EmitRequest",
            "/api/v1/events",
            json!({"name": ""}),
            (400, "invalid_event_name"),
        ),
        (
            "EmitRequest",
            "/api/v1/events",
            json!({"name": "a::b"}),
            (400, "invalid_event_name"),
        ),
        (
            "EmitRequest",
            "/api/v1/events",
            json!({"name": "a", "to": "b"}),
            (400, "bad_request"),
        ),
        // A struct's fields as an array (serde's other form of a struct) is not an object.
        (
            "LoadRequest",
            "/api/v1/plugins",
            json!([hello]),
            (400, "bad_request"),
        ),
        (
            "EmitRequest",
            "/api/v1/events",
            json!(["a"]),
            (400, "bad_request"),
        ),
    ];
    for (schema, route, body, answer) in refused {
        assert!(!conforms(&doc, schema, &body), "{schema} allows {body}");
        assert_eq!(
            code(s.call("POST", route, Some(body.clone()))),
            (answer.0, answer.1.to_owned()),
            "{route} {body}"
        );
    }
    let (st, _) = s.call("POST", "/api/v1/plugins", Some(json!({"path": hello})));
    assert_eq!(st, 201);
    for (body, answer) in [
        (json!({"tables": [""]}), (400, "invalid_overrides")),
        (json!({"tables": ["Users"]}), (400, "invalid_overrides")),
        (json!({"table_map": {"a": ""}}), (400, "invalid_overrides")),
        (json!({"tables": ["a"], "views": []}), (400, "bad_request")),
        (json!([]), (400, "bad_request")),
    ] {
        assert!(
            !conforms(&doc, "Overrides", &body),
            "Overrides allows {body}"
        );
        assert_eq!(
            code(s.call("PUT", "/api/v1/plugins/hello/overrides", Some(body.clone()))),
            (answer.0, answer.1.to_owned()),
            "{body}"
        );
    }
    // What the schema allows, the server takes: null stands for an absent list.
    let body = json!({"tables": null, "topics": [], "table_map": {}});
    assert!(conforms(&doc, "Overrides", &body));
    let (st, o) = s.call("PUT", "/api/v1/plugins/hello/overrides", Some(body));
    assert_eq!(st, 200, "{o}");
    assert_eq!(o["topics"], json!([]));

    // A plugin name outside the rules is refused (or unknown) wherever it appears.
    let name = &doc["paths"]["/api/v1/plugins/{name}"]["get"]["parameters"][0]["schema"];
    for bad in ["", "Hello", "9lives", "a b"] {
        assert!(
            !jsonschema::is_valid(name, &json!(bad)),
            "the name schema allows {bad:?}"
        );
    }
    assert_eq!(s.call("GET", "/api/v1/plugins/Hello", None).0, 404);
    assert_eq!(
        code(s.call("PUT", "/api/v1/plugins/Hello/config", Some(json!({})))),
        (400, "invalid_name".to_owned())
    );

    // PUT config needs a body (the document says so); execute takes none as null.
    assert_eq!(
        doc["paths"]["/api/v1/plugins/{name}/config"]["put"]["requestBody"]["required"],
        true
    );
    assert_eq!(
        code(s.call("PUT", "/api/v1/plugins/hello/config", None)),
        (400, "bad_request".to_owned())
    );
    assert_eq!(
        doc["paths"]["/api/v1/plugins/{name}/execute"]["post"]["requestBody"]["required"],
        false
    );
    assert_eq!(s.call("POST", "/api/v1/plugins/hello/execute", None).0, 200);
}
