//! Routes behind an auth plugin (`"auth": "plugin:<name>"`), over real HTTP against a real
//! `plugin-host serve --app-listen` with the example plugins `auth` (API keys in its SQLite
//! table) and `todo` (per-user todos): keys made through the admin API, each user sees only
//! their own todos, missing and wrong keys are 401, an auth plugin that is not a declared
//! dependency is refused at load, `auth` cannot be unloaded under `todo`, and a stopped auth
//! plugin makes its routes answer 503; with the test plugins `flaky-auth` and `guarded`, an auth
//! plugin that panics, answers no identity or takes too long is 503 `auth_unavailable`.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use integration::*;
use serde_json::{Value, json};

fn start() -> Server {
    let s = Server::start(&["--app-listen", "127.0.0.1:0"], &[]);
    for name in ["auth", "todo"] {
        let (st, p) = s.load(&plugin(name));
        assert_eq!(st, 201, "{name}: {p}");
    }
    s
}

/// A new key for `user`, through the admin API.
fn key(s: &Server, user: &str) -> String {
    let (st, out) = s.call(
        "POST",
        "/api/v1/plugins/auth/call/create_key",
        Some(json!({ "user": user })),
    );
    assert_eq!(st, 200, "{out}");
    let key = out["output"]["key"].as_str().unwrap().to_owned();
    assert_eq!(key.len(), 64, "{key}");
    assert!(key.bytes().all(|b| b.is_ascii_hexdigit()), "{key}");
    key
}

/// Status and JSON body (`null` when none) of a request to the application listener.
fn app(
    s: &Server,
    method: &str,
    path: &str,
    body: Option<Value>,
    auth: Option<&str>,
) -> (u16, Value) {
    let base = s.app.as_deref().expect("an application listener");
    let mut req = ureq::request(method, &format!("{base}{path}"));
    if let Some(auth) = auth {
        req = req.set("authorization", auth);
    }
    let result = match body {
        Some(b) => req.send_json(b),
        None => req.call(),
    };
    let resp = match result {
        Ok(r) | Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("{method} {path}: {e}"),
    };
    let status = resp.status();
    let text = resp.into_string().unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

#[test]
fn each_key_sees_only_its_own_todos() {
    let s = start();
    let (a, b) = (key(&s, "a"), key(&s, "b"));
    assert_ne!(a, b);
    let (bearer_a, bearer_b) = (format!("Bearer {a}"), format!("Bearer {b}"));

    let (st, todo) = app(
        &s,
        "POST",
        "/plugins/todo/todos",
        Some(json!({"title": "milk"})),
        Some(&bearer_a),
    );
    assert_eq!(st, 201, "{todo}");
    // The handler stored the identity the auth plugin answered.
    assert_eq!(todo["user"], "a");
    assert_eq!(todo["title"], "milk");
    let (st, list) = app(&s, "GET", "/plugins/todo/todos", None, Some(&bearer_a));
    assert_eq!(st, 200, "{list}");
    assert_eq!(list, json!([todo]));

    let (st, list) = app(&s, "GET", "/plugins/todo/todos", None, Some(&bearer_b));
    assert_eq!((st, list), (200, json!([])));
    let (st, other) = app(
        &s,
        "POST",
        "/plugins/todo/todos",
        Some(json!({"title": "eggs"})),
        Some(&bearer_b),
    );
    assert_eq!((st, &other["user"]), (201, &json!("b")), "{other}");
    let (_, list) = app(&s, "GET", "/plugins/todo/todos", None, Some(&bearer_a));
    assert_eq!(list, json!([todo]));

    // The body schema still applies behind the auth plugin.
    let (st, e) = app(
        &s,
        "POST",
        "/plugins/todo/todos",
        Some(json!({"title": ""})),
        Some(&bearer_a),
    );
    assert_eq!(
        (st, &e["error"]["code"]),
        (400, &json!("invalid_input")),
        "{e}"
    );
}

#[test]
fn missing_or_wrong_keys_are_401() {
    let s = start();
    let good = key(&s, "a");
    let wrong = "0".repeat(64);
    for auth in [
        None,
        Some(format!("Bearer {wrong}")),
        Some(good.clone()),
        Some("Bearer ".into()),
    ] {
        for (method, body) in [("GET", None), ("POST", Some(json!({"title": "x"})))] {
            let (st, e) = app(&s, method, "/plugins/todo/todos", body, auth.as_deref());
            assert_eq!(st, 401, "{method} {auth:?}: {e}");
            assert_eq!(e["error"]["code"], "unauthorized", "{e}");
            assert!(
                e["error"]["message"].as_str().unwrap().contains("auth"),
                "{e}"
            );
        }
    }
    // The scheme name is case-insensitive.
    let (st, e) = app(
        &s,
        "GET",
        "/plugins/todo/todos",
        None,
        Some(&format!("bearer {good}")),
    );
    assert_eq!(st, 200, "{e}");
    // Nothing was stored by the refused requests.
    let (st, list) = app(
        &s,
        "GET",
        "/plugins/todo/todos",
        None,
        Some(&format!("Bearer {good}")),
    );
    assert_eq!((st, list), (200, json!([])));
}

#[test]
fn the_auth_plugin_stays_while_todo_depends_on_it() {
    let s = start();
    let bearer = format!("Bearer {}", key(&s, "a"));
    let (st, e) = s.call("DELETE", "/api/v1/plugins/auth", None);
    assert_eq!(
        (st, &e["error"]["code"]),
        (409, &json!("has_dependents")),
        "{e}"
    );
    assert_eq!(e["error"]["details"]["dependents"], json!(["todo"]));
    // The auth plugin stopped: its routes answer 503, not 401 and not the handler.
    let (st, e) = s.call("POST", "/api/v1/plugins/auth/disable", None);
    assert_eq!(st, 200, "{e}");
    let (st, e) = app(&s, "GET", "/plugins/todo/todos", None, Some(&bearer));
    assert_eq!(st, 503, "{e}");
    let message = e["error"]["message"].as_str().unwrap();
    assert!(message.contains("auth plugin `auth`"), "{e}");
    assert_eq!(e["error"]["code"], "auth_unavailable", "{e}");
    // The admin API shows the policy as written, and its OpenAPI Route schema accepts it.
    let (st, info) = s.call("GET", "/api/v1/plugins/todo", None);
    assert_eq!(st, 200, "{info}");
    assert_eq!(info["routes"][0]["auth"], "plugin:auth", "{info}");
    let (_, admin) = s.call("GET", "/api/v1/openapi.json", None);
    let validator = jsonschema::validator_for(&admin["components"]["schemas"]["Route"]).unwrap();
    for r in info["routes"].as_array().unwrap() {
        let errors: Vec<String> = validator.iter_errors(r).map(|e| e.to_string()).collect();
        assert!(errors.is_empty(), "{r}: {errors:?}");
    }
    let (ok, out, err) = s.cli(&["plugins", "routes", "todo"]);
    assert!(ok, "{err}");
    assert!(out.contains("plugin:auth"), "{out}");
    // The app OpenAPI document describes the policy as a bearer scheme.
    let (_, doc) = app(&s, "GET", "/openapi.json", None, None);
    let op = &doc["paths"]["/plugins/todo/todos"]["get"];
    assert_eq!(op["security"], json!([{ "plugin-auth": [] }]), "{op}");
    assert_eq!(
        doc["components"]["securitySchemes"]["plugin-auth"]["scheme"],
        "bearer"
    );
}

#[test]
fn an_auth_plugin_must_be_a_declared_dependency() {
    let s = Server::start(&["--app-listen", "127.0.0.1:0"], &[]);
    let dir = temp_dir();
    let copy = rewritten_plugin("todo", dir.path(), "todo-undeclared", |m| {
        m["dependencies"] = json!([]);
    });
    let (st, e) = s.load(&copy);
    assert_eq!(st, 400, "{e}");
    assert_eq!(e["error"]["code"], "invalid_route");
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not a declared dependency"),
        "{e}"
    );
}

/// `GET /plugins/guarded/whoami` with `x-auth: <asked>`: status, `Retry-After`, JSON body.
fn whoami(s: &Server, asked: Option<&str>) -> (u16, Option<String>, Value) {
    let base = s.app.as_deref().expect("an application listener");
    let mut req = ureq::get(&format!("{base}/plugins/guarded/whoami"));
    if let Some(asked) = asked {
        req = req.set("x-auth", asked);
    }
    let resp = match req.call() {
        Ok(r) | Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("whoami: {e}"),
    };
    let status = resp.status();
    let retry = resp.header("retry-after").map(str::to_owned);
    let text = resp.into_string().unwrap_or_default();
    (
        status,
        retry,
        serde_json::from_str(&text).unwrap_or(Value::Null),
    )
}

#[test]
fn an_auth_plugin_that_cannot_answer_is_503_and_the_route_keeps_serving() {
    let s = Server::start(&["--app-listen", "127.0.0.1:0"], &[]);
    for name in ["flaky-auth", "guarded"] {
        let (st, p) = s.load(&plugin(name));
        assert_eq!(st, 201, "{name}: {p}");
    }
    let (st, _, body) = whoami(&s, Some("user:ada"));
    assert_eq!((st, &body), (200, &json!({"user": "ada"})));
    // Refused by the auth plugin: 401, and the handler never runs.
    for refused in [None, Some("nobody")] {
        let (st, retry, e) = whoami(&s, refused);
        assert_eq!(
            (st, e["error"]["code"].as_str()),
            (401, Some("unauthorized"))
        );
        assert_eq!(retry, None);
        assert!(
            e["error"]["message"]
                .as_str()
                .unwrap()
                .contains("flaky-auth"),
            "{e}"
        );
    }
    // Could not answer (a panic, an answer without identity, over the route's 500 ms): 503
    // `auth_unavailable` with Retry-After, never the handler, never 401.
    for broken in ["panic", "no-identity", "null-identity", "slow:1500"] {
        let started = std::time::Instant::now();
        let (st, retry, e) = whoami(&s, Some(broken));
        assert_eq!(
            (st, e["error"]["code"].as_str()),
            (503, Some("auth_unavailable")),
            "{broken}: {e}"
        );
        assert_eq!(retry.as_deref(), Some("1"), "{broken}");
        assert_eq!(
            e["error"]["details"]["plugin"], "flaky-auth",
            "{broken}: {e}"
        );
        assert!(
            started.elapsed() < std::time::Duration::from_millis(1400),
            "{broken}: the route's time limit bounds the auth call"
        );
    }
    // Both plugins keep serving: the slow call ends on its own, then a good key works again.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let (st, _, body) = whoami(&s, Some("user:bo"));
        if st == 200 {
            assert_eq!(body, json!({"user": "bo"}));
            break;
        }
        assert_eq!(st, 503, "{body}");
        assert!(
            std::time::Instant::now() < deadline,
            "still failing: {body}"
        );
    }
    let (st, p) = s.call("GET", "/api/v1/plugins/flaky-auth", None);
    assert_eq!((st, &p["state"]), (200, &json!("active")), "{p}");

    // A plugin's own error answer passes as written: status, content type, headers, body.
    let base = s.app.as_deref().unwrap();
    let resp = match ureq::get(&format!("{base}/plugins/guarded/challenge")).call() {
        Err(ureq::Error::Status(401, r)) => r,
        other => panic!("{other:?}"),
    };
    assert_eq!(
        resp.header("www-authenticate"),
        Some("Bearer realm=\"guarded\"")
    );
    assert_eq!(
        resp.header("content-type"),
        Some("application/problem+json")
    );
    let body: Value = serde_json::from_str(&resp.into_string().unwrap()).unwrap();
    assert_eq!(body, json!({ "title": "sign in first", "status": 401 }));
}
