//! Plugin HTTP routes on the application listener, over real HTTP against a real
//! `plugin-host serve --app-listen` with the `routes-demo` plugin: auth, path parameters, query,
//! headers, body schema and limit, 404/405, timeout, panic, disabled plugin, conflicting routes
//! refused at load, the merged OpenAPI document following loads and unloads, routes in the admin
//! API and the CLI, and reloads under a client loop.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use integration::*;
use serde_json::{Value, json};

const APP_TOKEN: &str = "app-token-0123456789";

fn start() -> Server {
    let s = Server::start(
        &["--app-listen", "127.0.0.1:0"],
        &[("PLUGIN_HOST_APP_TOKEN", APP_TOKEN)],
    );
    let (st, p) = s.load(&plugin("routes-demo"));
    assert_eq!(st, 201, "{p}");
    s
}

/// A server with the application listener and the configuration file `toml` (kept in the
/// returned folder).
fn start_configured(toml: &str) -> (Server, tempfile::TempDir) {
    let dir = temp_dir();
    let config = dir.path().join("plugin-host.toml");
    std::fs::write(&config, toml).unwrap();
    let args = [
        "--app-listen",
        "127.0.0.1:0",
        "--config",
        config.to_str().unwrap(),
    ];
    (Server::start(&args, &[]), dir)
}

/// An answer of the application listener: status, headers (lower-case names), JSON body
/// (`null` when there is none or it is not JSON).
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Value,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

fn app(
    s: &Server,
    method: &str,
    path: &str,
    body: Option<&str>,
    headers: &[(&str, &str)],
) -> Answer {
    let base = s.app.as_deref().expect("an application listener");
    let mut req = ureq::request(method, &format!("{base}{path}"));
    for (k, v) in headers {
        req = req.set(k, v);
    }
    let result = match body {
        Some(b) => req.set("content-type", "application/json").send_string(b),
        None => req.call(),
    };
    let resp = match result {
        Ok(r) | Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("{method} {path}: {e}"),
    };
    let status = resp.status();
    let headers = resp
        .headers_names()
        .into_iter()
        .map(|n| {
            let v = resp.header(&n).unwrap_or_default().to_owned();
            (n.to_ascii_lowercase(), v)
        })
        .collect();
    let text = resp.into_string().unwrap_or_default();
    Answer {
        status,
        headers,
        body: serde_json::from_str(&text).unwrap_or(Value::Null),
    }
}

fn get(s: &Server, path: &str) -> Answer {
    app(s, "GET", path, None, &[])
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

#[test]
fn health_public_routes_and_the_request_the_handler_sees() {
    let mut s = start();
    assert_eq!(get(&s, "/health").body, json!({"status": "ok"}));
    let a = get(&s, "/plugins/routes-demo/items");
    assert_eq!((a.status, &a.body), (200, &json!([])));
    assert_eq!(a.header("content-type"), Some("application/json"));

    let a = app(
        &s,
        "GET",
        "/plugins/routes-demo/echo/x%20y/2?q=0&r=two%20words&q=1",
        None,
        &[
            ("X-Custom", "v"),
            ("Authorization", "Bearer secret-of-the-user"),
            ("Proxy-Authorization", "Basic c2VjcmV0"),
        ],
    );
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.header("x-echo"), Some("1"));
    let req = &a.body;
    assert_eq!(req["method"], "GET");
    assert_eq!(req["path"], "/echo/x%20y/2");
    // A repeated query name: the last value wins.
    assert_eq!(req["params"], json!({"a": "x y", "b": "2"}));
    assert_eq!(req["query"], json!({"q": "1", "r": "two words"}));
    assert_eq!(req["headers"]["x-custom"], "v");
    assert!(req["headers"].get("authorization").is_none(), "{req}");
    assert!(req["headers"].get("proxy-authorization").is_none(), "{req}");
    assert!(req["headers"].get("connection").is_none(), "{req}");
    assert_eq!(req["body"], Value::Null);

    // HEAD is answered by the GET route, without a body.
    let a = app(&s, "HEAD", "/plugins/routes-demo/items", None, &[]);
    assert_eq!((a.status, &a.body), (200, &Value::Null));
    assert_eq!(a.header("content-type"), Some("application/json"));
    let a = get(&s, "/plugins/routes-demo/items/42");
    assert_eq!(a.status, 404, "the plugin's own 404");
    assert_eq!(a.body["error"]["code"], "not_found");
    // Both listeners stop on SIGTERM, and the process exits cleanly.
    s.stop();
}

#[test]
fn token_routes_need_the_application_token() {
    let s = start();
    let body = r#"{"name":"apple"}"#;
    let path = "/plugins/routes-demo/items";
    let missing = app(&s, "POST", path, Some(body), &[]);
    assert_eq!(missing.status, 401);
    assert_eq!(missing.body["error"]["code"], "unauthorized");
    let wrong = app(
        &s,
        "POST",
        path,
        Some(body),
        &[("Authorization", &bearer("wrong-token-0123456789"))],
    );
    assert_eq!(wrong.status, 401);
    // The admin token is no application token (this server has none anyway).
    let auth = bearer(APP_TOKEN);
    let ok = app(&s, "POST", path, Some(body), &[("Authorization", &auth)]);
    assert_eq!(ok.status, 201, "{}", ok.body);
    assert_eq!(ok.body, json!({"id": 1, "name": "apple"}));
    assert_eq!(ok.header("location"), Some("items/1"));
    app(
        &s,
        "POST",
        path,
        Some(r#"{"name":"pear"}"#),
        &[("Authorization", &auth)],
    );

    let a = get(&s, "/plugins/routes-demo/items?prefix=ap");
    assert_eq!(a.body, json!([{"id": 1, "name": "apple"}]));
    assert_eq!(get(&s, "/plugins/routes-demo/items/2").body["name"], "pear");

    let del = app(&s, "DELETE", "/plugins/routes-demo/items/1", None, &[]);
    assert_eq!(del.status, 401);
    let del = app(
        &s,
        "DELETE",
        "/plugins/routes-demo/items/1",
        None,
        &[("Authorization", &auth)],
    );
    assert_eq!((del.status, &del.body), (204, &Value::Null));
    assert_eq!(get(&s, "/plugins/routes-demo/items/1").status, 404);
}

#[test]
fn token_routes_answer_401_on_a_host_without_an_application_token() {
    let s = Server::start(&["--app-listen", "127.0.0.1:0"], &[]);
    let (st, _) = s.load(&plugin("routes-demo"));
    assert_eq!(st, 201);
    let a = app(
        &s,
        "POST",
        "/plugins/routes-demo/items",
        Some(r#"{"name":"a"}"#),
        &[("Authorization", &bearer(APP_TOKEN))],
    );
    assert_eq!(a.status, 401);
    assert!(
        a.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("none configured")
    );
}

#[test]
fn the_host_checks_method_path_body_and_schema_before_the_plugin() {
    let s = start();
    let auth = bearer(APP_TOKEN);
    let h = [("Authorization", auth.as_str())];
    let path = "/plugins/routes-demo/items";

    let a = app(&s, "POST", path, Some(r#"{"name":""}"#), &h);
    assert_eq!(a.status, 400);
    assert_eq!(a.body["error"]["code"], "invalid_input");
    let errors = a.body["error"]["details"]["errors"].as_array().unwrap();
    assert!(
        errors[0].as_str().unwrap().starts_with("/name"),
        "{errors:?}"
    );
    let a = app(&s, "POST", path, None, &h);
    assert_eq!(
        a.status, 400,
        "an empty body is null, which the schema refuses"
    );
    let a = app(&s, "POST", path, Some("{not json"), &h);
    assert_eq!(
        (a.status, a.body["error"]["code"].as_str()),
        (400, Some("bad_request"))
    );
    let big = format!(r#"{{"name":"{}"}}"#, "x".repeat(2000));
    let a = app(&s, "POST", path, Some(&big), &h);
    assert_eq!(
        (a.status, a.body["error"]["code"].as_str()),
        (413, Some("payload_too_large"))
    );
    assert_eq!(
        get(&s, path).body,
        json!([]),
        "nothing refused reached the store"
    );

    let a = get(&s, "/plugins/routes-demo/nothing/here");
    assert_eq!(
        (a.status, a.body["error"]["code"].as_str()),
        (404, Some("not_found"))
    );
    let a = get(&s, "/plugins/no-such-plugin/items");
    assert_eq!(a.status, 404);
    // An encoded plugin name finds the plugin, and the path after it is still the route's.
    let a = get(&s, "/plugins/routes%2Ddemo/items");
    assert_eq!((a.status, &a.body), (200, &json!([])));
    let a = get(&s, "/plugins/routes-demo/echo/a%2Fb/c");
    assert_eq!(
        a.body["params"]["a"], "a/b",
        "an encoded `/` stays inside its parameter"
    );
    let a = app(&s, "PUT", "/plugins/routes-demo/items/1", Some("{}"), &h);
    assert_eq!(a.status, 405);
    assert_eq!(a.header("allow"), Some("GET, HEAD, DELETE"));
    assert_eq!(a.body["error"]["code"], "method_not_allowed");
}

#[test]
fn timeout_panic_and_disabled_plugin() {
    let s = start();
    let started = Instant::now();
    let a = get(&s, "/plugins/routes-demo/slow?ms=3000");
    assert_eq!(
        (a.status, a.body["error"]["code"].as_str()),
        (504, Some("timeout"))
    );
    assert_eq!(a.body["error"]["details"]["after_ms"], 300);
    assert!(started.elapsed() < Duration::from_millis(2500));
    // The timed-out handler still runs (a call cannot be stopped); once it ends, the plugin
    // serves again.
    let deadline = Instant::now() + Duration::from_secs(10);
    while get(&s, "/plugins/routes-demo/slow?ms=1").status != 200 {
        assert!(Instant::now() < deadline, "the plugin never served again");
        std::thread::sleep(Duration::from_millis(50));
    }

    let a = get(&s, "/plugins/routes-demo/panic");
    assert_eq!(a.status, 500);
    assert_eq!(a.body["error"]["details"]["panicked"], true);
    assert_eq!(
        get(&s, "/plugins/routes-demo/items").status,
        200,
        "still serving"
    );

    let (st, _) = s.call("POST", "/api/v1/plugins/routes-demo/disable", None);
    assert_eq!(st, 200);
    let a = get(&s, "/plugins/routes-demo/items");
    assert_eq!(a.status, 503);
    assert_eq!(a.header("retry-after"), Some("1"));
    assert_eq!(a.body["error"]["code"], "plugin_disabled");
    let (st, _) = s.call("POST", "/api/v1/plugins/routes-demo/enable", None);
    assert_eq!(st, 200);
    assert_eq!(get(&s, "/plugins/routes-demo/items").status, 200);
}

#[test]
fn conflicting_routes_are_refused_at_load() {
    let s = Server::start(&[], &[]);
    let dir = temp_dir();
    let copy = rewritten_plugin("routes-demo", dir.path(), "routes-conflict", |m| {
        // DELETE /items/{id} becomes a second GET of the shape /items/{}.
        let routes = m["routes"].as_array_mut().unwrap();
        let delete = routes.iter_mut().find(|r| r["method"] == "DELETE").unwrap();
        delete["method"] = json!("GET");
        delete["path"] = json!("/items/{other}");
    });
    let (st, e) = s.load(&copy);
    assert_eq!(st, 400, "{e}");
    assert_eq!(e["error"]["code"], "route_conflict");
    assert_eq!(
        e["error"]["details"]["paths"],
        json!(["/items/{id}", "/items/{other}"])
    );
    let bad = rewritten_plugin("routes-demo", dir.path(), "routes-bad", |m| {
        m["routes"][0]["path"] = json!("items");
    });
    let (st, e) = s.load(&bad);
    assert_eq!(
        (st, e["error"]["code"].as_str()),
        (400, Some("invalid_route")),
        "{e}"
    );
}

#[test]
fn openapi_document_follows_loads_and_unloads() {
    let s = start();
    let doc = get(&s, "/openapi.json").body;
    assert_eq!(doc["openapi"], "3.1.0");
    let item = &doc["paths"]["/plugins/routes-demo/items/{id}"];
    assert_eq!(item["get"]["tags"], json!(["routes-demo"]));
    assert_eq!(item["get"]["parameters"][0]["name"], "id");
    assert_eq!(item["delete"]["security"], json!([{"appToken": []}]));
    let post = &doc["paths"]["/plugins/routes-demo/items"]["post"];
    let schema = &post["requestBody"]["content"]["application/json"]["schema"];
    let validator = jsonschema::validator_for(schema).expect("the body schema compiles");
    assert!(validator.is_valid(&json!({"name": "a"})));
    assert!(!validator.is_valid(&json!({"name": ""})));
    for (path, methods) in doc["paths"].as_object().unwrap() {
        assert!(path.starts_with("/plugins/routes-demo/"), "{path}");
        for (_, op) in methods.as_object().unwrap() {
            for (status, r) in op["responses"].as_object().unwrap() {
                let Some(s) = r.pointer("/content/application~1json/schema") else {
                    continue;
                };
                // The host's errors share one schema of the components.
                let s = match s["$ref"].as_str() {
                    Some(at) => doc
                        .pointer(at.trim_start_matches('#'))
                        .unwrap_or_else(|| panic!("{status}: `{at}` names nothing")),
                    None => s,
                };
                jsonschema::validator_for(s).expect("response schemas compile");
            }
            for status in ["2XX", "400", "408", "413", "500", "503", "504", "default"] {
                assert!(op["responses"].get(status).is_some(), "{path}: {status}");
            }
        }
    }
    assert_eq!(doc["paths"].as_object().unwrap().len(), 8);
    assert_valid_openapi(&doc);
    let error = &doc["components"]["schemas"]["Error"];
    let refused = app(&s, "POST", "/plugins/routes-demo/items", Some("{}"), &[]);
    assert_eq!(refused.status, 401);
    let error_validator = jsonschema::validator_for(error).unwrap();
    assert!(error_validator.is_valid(&refused.body), "{}", refused.body);

    let (st, _) = s.call("DELETE", "/api/v1/plugins/routes-demo", None);
    assert_eq!(st, 200);
    let doc = get(&s, "/openapi.json").body;
    assert_eq!(doc["paths"], json!({}));
    assert_valid_openapi(&doc);
    assert_eq!(get(&s, "/plugins/routes-demo/items").status, 404);
}

#[test]
fn admin_api_and_cli_list_the_routes() {
    let s = start();
    let (st, p) = s.call("GET", "/api/v1/plugins/routes-demo", None);
    assert_eq!(st, 200);
    let post = p["routes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["method"] == "POST")
        .unwrap();
    assert_eq!(post["path"], "/items");
    assert_eq!(post["function"], "add_item");
    assert_eq!(post["auth"], "token");
    assert_eq!(post["body_limit"], 1024);
    assert_eq!(post["body_schema"]["required"], json!(["name"]));
    // The admin API's OpenAPI document describes these route objects truthfully.
    let (_, doc) = s.call("GET", "/api/v1/openapi.json", None);
    let route_schema = &doc["components"]["schemas"]["Route"];
    let validator = jsonschema::validator_for(route_schema).unwrap();
    for r in p["routes"].as_array().unwrap() {
        let errors: Vec<String> = validator.iter_errors(r).map(|e| e.to_string()).collect();
        assert!(errors.is_empty(), "{r}: {errors:?}");
    }

    let (ok, out, err) = s.cli(&["plugins", "routes", "routes-demo"]);
    assert!(ok, "{err}");
    let header = out.lines().next().unwrap();
    for column in ["METHOD", "PATH", "AUTH", "FUNCTION", "SUMMARY"] {
        assert!(header.contains(column), "{out}");
    }
    assert!(
        out.lines().any(|l| l.contains("POST")
            && l.contains("/items")
            && l.contains("token")
            && l.contains("add_item")),
        "{out}"
    );
    let inspected = inspected(&plugin("routes-demo"));
    let routes = inspected["manifest"]["routes"].as_array().unwrap();
    assert_eq!(routes.len(), 10, "inspect shows the routes");
    assert_eq!(routes[1]["path"], "/items/{id}");
    assert_eq!(
        routes[8]["streams"],
        json!(["demo:*"]),
        "and their stream patterns"
    );

    let (ok, out, _) = s.cli(&["plugins", "routes", "routes-demo", "--json"]);
    assert!(ok);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 10);
    let (ok, _, err) = s.cli(&["plugins", "routes", "nope"]);
    assert!(!ok);
    assert!(err.contains("not_found") || err.contains("nope"), "{err}");
}

#[test]
fn reloads_under_a_client_loop_fail_no_request() {
    let s = Arc::new(start());
    let stop = Arc::new(AtomicBool::new(false));
    let (served, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let client = {
        let (s, stop, served, failed) = (
            Arc::clone(&s),
            Arc::clone(&stop),
            Arc::clone(&served),
            Arc::clone(&failed),
        );
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                let a = get(&s, "/plugins/routes-demo/echo/a/b");
                if a.status == 200 && a.body["params"]["b"] == "b" {
                    served.fetch_add(1, Ordering::SeqCst);
                } else {
                    failed.fetch_add(1, Ordering::SeqCst);
                    eprintln!("failed: {} {}", a.status, a.body);
                }
            }
        })
    };
    for _ in 0..20 {
        let before = served.load(Ordering::SeqCst);
        let (st, e) = s.call("POST", "/api/v1/plugins/routes-demo/reload", None);
        assert_eq!(st, 200, "{e}");
        // Let requests reach the new instance before the next reload.
        let deadline = Instant::now() + Duration::from_secs(10);
        while served.load(Ordering::SeqCst) < before + 3 {
            assert!(
                Instant::now() < deadline,
                "no request served after the reload"
            );
            std::thread::yield_now();
        }
    }
    stop.store(true, Ordering::SeqCst);
    client.join().unwrap();
    assert_eq!(failed.load(Ordering::SeqCst), 0);
    assert!(served.load(Ordering::SeqCst) >= 60);
}

#[test]
fn unload_answers_503_while_it_drains_the_requests_in_flight() {
    let s = start();
    let base = s.app.clone().unwrap();
    // A request that takes 4 s (the route allows 5 s), in flight when the unload starts.
    let slow = std::thread::spawn(move || {
        let r = ureq::get(&format!("{base}/plugins/routes-demo/wait?ms=4000")).call();
        r.map(|r| r.status()).map_err(|e| e.to_string())
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, p) = s.call("GET", "/api/v1/plugins/routes-demo", None);
        if p["stats"]["in_flight"] == 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the slow request never started: {p}"
        );
    }
    let admin = s.addr.clone();
    let unload = std::thread::spawn(move || {
        let r = ureq::delete(&format!("{admin}/api/v1/plugins/routes-demo")).call();
        r.map(|r| r.status()).map_err(|e| e.to_string())
    });
    // While it drains: 503 with Retry-After and the JSON error, never the handler.
    let mut refused = 0;
    loop {
        let a = get(&s, "/plugins/routes-demo/items");
        match a.status {
            200 if refused == 0 => {}
            503 => {
                assert_eq!(a.header("retry-after"), Some("1"));
                assert_eq!(a.body["error"]["code"], "plugin_not_active", "{}", a.body);
                refused += 1;
            }
            404 => break,
            other => panic!("{other}: {}", a.body),
        }
        assert!(Instant::now() < deadline, "the unload never finished");
    }
    assert!(refused > 0, "no request met the drain");
    assert_eq!(
        slow.join().unwrap(),
        Ok(200),
        "the request in flight finished"
    );
    assert_eq!(unload.join().unwrap(), Ok(200));
}

#[test]
fn a_client_that_never_finishes_its_request_head_is_disconnected() {
    use std::io::{Read as _, Write as _};
    let (s, _dir) = start_configured("[app]\nheader_timeout_ms = 300\n");
    let addr = s.app.as_deref().unwrap().trim_start_matches("http://");
    let mut slow = std::net::TcpStream::connect(addr).unwrap();
    slow.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let started = Instant::now();
    let mut buf = [0u8; 1024];
    // Closed by the server (end of stream, or a reset): not left waiting for the read timeout.
    let closed = match slow.read(&mut buf) {
        Ok(_) => true,
        Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
    };
    assert!(closed && started.elapsed() < Duration::from_secs(4));
    assert_eq!(get(&s, "/health").status, 200, "other clients are served");
}

#[test]
fn a_client_that_trickles_its_body_is_answered_408_and_disconnected() {
    use std::io::{Read as _, Write as _};
    let (s, _dir) = start_configured("[app]\nbody_timeout_ms = 300\n");
    let (st, p) = s.load(&plugin("routes-demo"));
    assert_eq!(st, 201, "{p}");
    let addr = s.app.as_deref().unwrap().trim_start_matches("http://");
    let mut slow = std::net::TcpStream::connect(addr).unwrap();
    // A head announcing 100 bytes of body, then 10 of them, then nothing.
    slow.write_all(
        b"GET /plugins/routes-demo/items HTTP/1.1\r\nHost: x\r\n\
          Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"name\": ",
    )
    .unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let started = Instant::now();
    let mut answer = Vec::new();
    // The server answers, then closes: read to the end (or a reset), never to the read timeout.
    let mut buf = [0u8; 4096];
    loop {
        match slow.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => answer.extend_from_slice(&buf[..n]),
            Err(e) => {
                assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}");
                break;
            }
        }
    }
    assert!(started.elapsed() < Duration::from_secs(4));
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("\"code\":\"body_timeout\""), "{answer}");
    assert!(answer.contains("\"after_ms\":300"), "{answer}");
    assert_eq!(
        get(&s, "/plugins/routes-demo/items").status,
        200,
        "others are served"
    );
}

#[test]
fn config_check_shows_the_app_settings_but_not_the_app_token() {
    let dir = temp_dir();
    let out = std::process::Command::new(host_binary())
        .args(["config", "check"])
        .current_dir(dir.path())
        .env("PLUGIN_HOST_APP_TOKEN", APP_TOKEN)
        .env("PLUGIN_HOST_APP_LISTEN", "0.0.0.0:8080")
        .env_remove("PLUGIN_HOST_ADMIN_TOKEN")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(!text.contains(APP_TOKEN), "{text}");
    let json: Value =
        serde_json::from_str(text.trim_start_matches("configuration is valid\n")).unwrap();
    assert_eq!(json["app"]["token"], "(set)");
    assert_eq!(
        json["app"]["listen"], "0.0.0.0:8080",
        "a non-loopback app address is allowed"
    );
}

/// Validates `doc` against the OpenAPI 3.1 specification's own JSON Schema
/// (`tests/fixtures/openapi-3.1.schema.json`, `https://spec.openapis.org/oas/3.1/schema/2022-10-07`).
fn assert_valid_openapi(doc: &Value) {
    let spec: Value = serde_json::from_str(include_str!("../fixtures/openapi-3.1.schema.json"))
        .expect("the OpenAPI 3.1 schema is JSON");
    let validator = jsonschema::validator_for(&spec).expect("the OpenAPI 3.1 schema compiles");
    let errors: Vec<String> = validator
        .iter_errors(doc)
        .map(|e| format!("{}: {e}", e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "not a valid OpenAPI 3.1 document: {errors:#?}"
    );
    // The validator does reject what is not OpenAPI: a path item that is not an object.
    let mut broken = doc.clone();
    broken["paths"]["/x"] = json!(1);
    assert!(!validator.is_valid(&broken));
}
