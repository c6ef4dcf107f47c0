//! Server-Sent Events on plugin routes, over real HTTP against a real
//! `plugin-host serve --app-listen` with the `routes-demo` plugin (its `GET /events` declares
//! `demo:*` and streams the patterns `?patterns=` chooses) and the example `todo` plugin:
//! events emitted after the client connected arrive in order with the SSE framing, only events
//! matching a declared pattern too are sent, the stream ends with `event: end` on unload, reload,
//! disable and shutdown, the bus subscriptions go when the client disconnects, the per-plugin cap,
//! keep-alive comments, the errors of a stream the route does not declare, and the OpenAPI
//! document. Every read has a deadline (the client's read timeout); nothing sleeps for a
//! condition.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::io::{BufRead, BufReader, Read};
use std::time::{Duration, Instant};

use integration::*;
use serde_json::{Value, json};

/// Longest wait for one read of a stream, or for a condition.
const DEADLINE: Duration = Duration::from_secs(20);

fn start_with(args: &[&str]) -> Server {
    let mut all = vec!["--app-listen", "127.0.0.1:0"];
    all.extend_from_slice(args);
    let s = Server::start(&all, &[]);
    load(&s, "routes-demo");
    s
}

fn start() -> Server {
    start_with(&[])
}

fn load(s: &Server, name: &str) {
    let (st, p) = s.load(&plugin(name));
    assert_eq!(st, 201, "{name}: {p}");
}

/// A server whose configuration file holds `app` in its `[app]` section.
fn start_configured(app: &str) -> (Server, tempfile::TempDir) {
    let dir = temp_dir();
    let config = dir.path().join("host.toml");
    std::fs::write(&config, format!("[app]\n{app}\n")).unwrap();
    let s = start_with(&["--config", config.to_str().unwrap()]);
    (s, dir)
}

/// Emits an event on the bus through the admin API.
fn emit(s: &Server, name: &str, payload: Value) {
    let (st, out) = s.call(
        "POST",
        "/api/v1/events",
        Some(json!({ "name": name, "payload": payload })),
    );
    assert_eq!(st, 202, "{out}");
}

/// The bus's live subscriptions, from `/metrics`.
fn subscriptions(s: &Server) -> u64 {
    let text = ureq::get(&format!("{}/metrics", s.addr))
        .call()
        .unwrap()
        .into_string()
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("plugin_host_bus_subscriptions "))
        .expect("the subscription gauge")
        .trim()
        .parse::<f64>()
        .unwrap() as u64
}

/// An open event stream, read one frame (up to a blank line) at a time.
struct Stream {
    status: u16,
    headers: Vec<(String, String)>,
    reader: BufReader<Box<dyn Read + Send + Sync>>,
}

/// What `GET path` on the application listener answered: a stream when it is one.
fn connect(s: &Server, path: &str, auth: Option<&str>) -> Result<Stream, (u16, Value)> {
    let agent = ureq::AgentBuilder::new().timeout_read(DEADLINE).build();
    let base = s.app.as_deref().expect("an application listener");
    let mut req = agent.get(&format!("{base}{path}"));
    if let Some(auth) = auth {
        req = req.set("authorization", auth);
    }
    let resp = match req.call() {
        Ok(r) => r,
        Err(ureq::Error::Status(st, r)) => {
            let retry = r.header("retry-after").map(str::to_owned);
            let mut body: Value = serde_json::from_str(&r.into_string().unwrap()).unwrap();
            body["retry-after"] = json!(retry);
            return Err((st, body));
        }
        Err(e) => panic!("GET {path}: {e}"),
    };
    let headers = resp
        .headers_names()
        .into_iter()
        .map(|n| (n.clone(), resp.header(&n).unwrap_or_default().to_owned()))
        .collect();
    Ok(Stream {
        status: resp.status(),
        headers,
        reader: BufReader::new(resp.into_reader()),
    })
}

impl Stream {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The next frame's text, blank line included; `None` at the end of the body. A read that
    /// waits longer than [`DEADLINE`] fails the test.
    fn frame(&mut self) -> Option<String> {
        let mut frame = String::new();
        loop {
            let mut line = String::new();
            let n = self
                .reader
                .read_line(&mut line)
                .unwrap_or_else(|e| panic!("reading the stream (after {frame:?}): {e}"));
            if n == 0 {
                assert!(frame.is_empty(), "the body ended inside a frame: {frame:?}");
                return None;
            }
            frame.push_str(&line);
            if line == "\n" {
                return Some(frame);
            }
        }
    }

    /// The next frame's fields (`id`, `event`, `data` as JSON), skipping keep-alive comments.
    fn event(&mut self) -> (Option<u64>, String, Value) {
        loop {
            let frame = self.frame().expect("another event");
            if frame.starts_with(':') {
                continue;
            }
            let field = |name: &str| {
                frame
                    .lines()
                    .find_map(|l| l.strip_prefix(&format!("{name}: ")))
                    .map(str::to_owned)
            };
            let id = field("id").map(|i| i.parse().unwrap());
            let data = serde_json::from_str(&field("data").expect("a data line")).unwrap();
            return (id, field("event").expect("an event line"), data);
        }
    }

    /// Reads the final `end` event and checks the body ends after it.
    fn expect_end(&mut self, reason: &str) {
        let (id, event, data) = self.event();
        assert_eq!((id, event.as_str()), (None, "end"), "{data}");
        assert_eq!(data, json!({ "reason": reason }));
        assert_eq!(self.frame(), None, "nothing after the end");
    }
}

/// Polls `ready` until it holds, failing after [`DEADLINE`].
fn wait_until(what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + DEADLINE;
    while !ready() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_client_receives_events_emitted_after_it_connected_in_order() {
    let s = start();
    emit(&s, "demo:early", json!(0));
    let mut stream = connect(&s, "/plugins/routes-demo/events", None).unwrap();
    assert_eq!(stream.status, 200);
    assert_eq!(stream.header("content-type"), Some("text/event-stream"));
    assert_eq!(stream.header("cache-control"), Some("no-cache"));
    assert_eq!(
        stream.header("x-stream"),
        Some("demo"),
        "the handler's header"
    );
    emit(&s, "demo:first", json!({ "n": 1, "text": "two\nlines" }));
    emit(&s, "other:x", json!(99));
    emit(&s, "demo:second", json!([2]));
    assert_eq!(
        stream.frame().unwrap(),
        "id: 1\nevent: demo:first\ndata: {\"n\":1,\"text\":\"two\\nlines\"}\n\n"
    );
    assert_eq!(
        stream.frame().unwrap(),
        "id: 2\nevent: demo:second\ndata: [2]\n\n"
    );
    for n in 3..=20 {
        emit(&s, "demo:many", json!(n));
    }
    for n in 3..=20 {
        assert_eq!(stream.event(), (Some(n), "demo:many".to_owned(), json!(n)));
    }
}

#[test]
fn only_events_matching_a_declared_pattern_too_are_delivered() {
    let s = start();
    // Chosen: `demo:a` (declared through `demo:*`) and `other:*` (not declared).
    let mut stream = connect(
        &s,
        "/plugins/routes-demo/events?patterns=demo:a,other:*",
        None,
    )
    .unwrap();
    emit(&s, "other:x", json!("chosen, not declared"));
    emit(&s, "demo:b", json!("declared, not chosen"));
    emit(&s, "demo:a", json!("both"));
    assert_eq!(
        stream.event(),
        (Some(1), "demo:a".to_owned(), json!("both"))
    );
}

#[test]
fn streams_end_when_the_plugin_unloads() {
    let s = start();
    let mut stream = connect(&s, "/plugins/routes-demo/events", None).unwrap();
    emit(&s, "demo:last", json!(1));
    let (st, out) = s.call("DELETE", "/api/v1/plugins/routes-demo", None);
    assert_eq!(st, 200, "{out}");
    assert_eq!(stream.event(), (Some(1), "demo:last".to_owned(), json!(1)));
    stream.expect_end("unloaded");
}

#[test]
fn streams_end_when_the_plugin_reloads_or_is_disabled() {
    let s = start();
    let mut stream = connect(&s, "/plugins/routes-demo/events", None).unwrap();
    let (st, out) = s.call("POST", "/api/v1/plugins/routes-demo/reload", None);
    assert_eq!(st, 200, "{out}");
    stream.expect_end("reloaded");
    // The new instance streams again.
    let mut stream = connect(&s, "/plugins/routes-demo/events", None).unwrap();
    emit(&s, "demo:again", json!(2));
    assert_eq!(stream.event(), (Some(1), "demo:again".to_owned(), json!(2)));
    let (st, out) = s.call("POST", "/api/v1/plugins/routes-demo/disable", None);
    assert_eq!(st, 200, "{out}");
    stream.expect_end("disabled");
}

#[test]
fn the_subscriptions_go_when_the_client_disconnects() {
    let s = start();
    let before = subscriptions(&s);
    let stream = connect(
        &s,
        "/plugins/routes-demo/events?patterns=demo:a,demo:b",
        None,
    )
    .unwrap();
    assert_eq!(subscriptions(&s), before + 2, "one per chosen pattern");
    drop(stream);
    // The server learns of the disconnection when it writes: each round emits an event.
    wait_until("the stream's subscriptions to go", || {
        emit(&s, "demo:a", json!(0));
        subscriptions(&s) == before
    });
}

#[test]
fn a_plugin_has_at_most_max_streams_open() {
    let (s, _dir) = start_configured("max_streams = 2");
    let first = connect(&s, "/plugins/routes-demo/events", None).unwrap();
    let _second = connect(&s, "/plugins/routes-demo/events", None).unwrap();
    let Err((st, e)) = connect(&s, "/plugins/routes-demo/events", None) else {
        panic!("a third stream opened");
    };
    assert_eq!(st, 503, "{e}");
    assert_eq!(e["error"]["code"], "too_many_streams");
    assert_eq!(
        e["error"]["details"],
        json!({ "plugin": "routes-demo", "limit": 2 })
    );
    assert_eq!(e["retry-after"], "1");
    // Other routes still answer, and a closed stream makes room.
    drop(first);
    wait_until("room for a new stream", || {
        emit(&s, "demo:a", json!(0));
        connect(&s, "/plugins/routes-demo/events", None).is_ok()
    });
}

#[test]
fn silent_streams_send_keep_alive_comments() {
    let (s, _dir) = start_configured("keep_alive_ms = 100");
    let mut stream = connect(&s, "/plugins/routes-demo/events", None).unwrap();
    assert_eq!(stream.frame().unwrap(), ": keep-alive\n\n");
    emit(&s, "demo:a", json!(1));
    assert_eq!(stream.event(), (Some(1), "demo:a".to_owned(), json!(1)));
}

#[test]
fn shutdown_ends_open_streams_and_does_not_wait_on_them() {
    let mut s = start();
    let mut stream = connect(&s, "/plugins/routes-demo/events", None).unwrap();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &s.pid().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    stream.expect_end("shutdown");
    // `stop` waits for the exit (already under way) and checks it is clean.
    let log = s.stop();
    assert!(!log.contains("panicked"), "{log}");
}

#[test]
fn streams_a_route_does_not_declare_or_cannot_parse_are_server_errors() {
    let s = start();
    let Err((st, e)) = connect(&s, "/plugins/routes-demo/undeclared-stream", None) else {
        panic!("an undeclared stream opened");
    };
    assert_eq!(st, 500, "{e}");
    assert_eq!(e["error"]["code"], "internal");
    let message = e["error"]["message"].as_str().unwrap();
    assert!(message.contains("routes-demo"), "{message}");
    let Err((st, e)) = connect(
        &s,
        "/plugins/routes-demo/events?patterns=demo:*,demo*",
        None,
    ) else {
        panic!("a stream of a bad pattern opened");
    };
    assert_eq!(
        (st, e["error"]["code"].as_str()),
        (500, Some("internal")),
        "{e}"
    );
    assert!(
        e["error"]["message"].as_str().unwrap().contains("`demo*`"),
        "{e}"
    );
    // A declared pattern that does not parse is refused at load.
    let dir = temp_dir();
    let bad = rewritten_plugin("routes-demo", dir.path(), "routes-bad-stream", |m| {
        let routes = m["routes"].as_array_mut().unwrap();
        let events = routes.iter_mut().find(|r| r["path"] == "/events").unwrap();
        events["streams"] = json!(["dem*"]);
    });
    let (st, e) = s.load(&bad);
    assert_eq!(
        (st, e["error"]["code"].as_str()),
        (400, Some("invalid_route")),
        "{e}"
    );
    assert_eq!(e["error"]["details"]["path"], "/events", "{e}");
}

#[test]
fn openapi_and_plugin_info_show_the_stream_patterns() {
    let s = start();
    let base = s.app.as_deref().unwrap();
    let doc: Value = ureq::get(&format!("{base}/openapi.json"))
        .call()
        .unwrap()
        .into_json()
        .unwrap();
    let responses = &doc["paths"]["/plugins/routes-demo/events"]["get"]["responses"];
    assert!(
        responses["2XX"]["content"]["text/event-stream"].is_object(),
        "{responses}"
    );
    assert_eq!(responses["2XX"]["x-event-patterns"], json!(["demo:*"]));
    assert!(responses["503"].is_object(), "{responses}");
    let items = &doc["paths"]["/plugins/routes-demo/items"]["get"]["responses"];
    assert!(items["2XX"]["content"].get("text/event-stream").is_none());
    let (_, info) = s.call("GET", "/api/v1/plugins/routes-demo", None);
    let route = info["routes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["path"] == "/events")
        .unwrap();
    assert_eq!(route["streams"], json!(["demo:*"]));
}

#[test]
fn todo_streams_each_user_only_their_own_new_todos() {
    let s = Server::start(&["--app-listen", "127.0.0.1:0"], &[]);
    load(&s, "auth");
    load(&s, "todo");
    let key = |user: &str| {
        let (st, out) = s.call(
            "POST",
            "/api/v1/plugins/auth/call/create_key",
            Some(json!({ "user": user })),
        );
        assert_eq!(st, 200, "{out}");
        format!("Bearer {}", out["output"]["key"].as_str().unwrap())
    };
    let (ada, bob) = (key("ada"), key("bob"));
    let Err((st, _)) = connect(&s, "/plugins/todo/events", Some("Bearer wrong")) else {
        panic!("a stream without a valid key opened");
    };
    assert_eq!(st, 401);
    let mut stream = connect(&s, "/plugins/todo/events", Some(&ada)).unwrap();
    let base = s.app.as_deref().unwrap();
    for (who, title) in [(&bob, "bob's"), (&ada, "ada's")] {
        let resp = ureq::post(&format!("{base}/plugins/todo/todos"))
            .set("authorization", who)
            .send_json(json!({ "title": title }))
            .unwrap();
        assert_eq!(resp.status(), 201);
    }
    let (id, event, data) = stream.event();
    assert_eq!((id, event.as_str()), (Some(1), "todo:ada:created"));
    assert_eq!(
        (data["user"].as_str(), data["title"].as_str()),
        (Some("ada"), Some("ada's"))
    );
}

#[test]
fn a_client_that_stops_reading_is_disconnected_and_its_stream_freed() {
    use std::io::Write as _;
    let (s, _dir) = start_configured("write_timeout_ms = 300");
    let before = subscriptions(&s);
    let addr = s.app.as_deref().unwrap().trim_start_matches("http://");
    let mut silent = std::net::TcpStream::connect(addr).unwrap();
    silent
        .write_all(b"GET /plugins/routes-demo/events?patterns=demo:big HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    wait_until("the stream to open", || subscriptions(&s) == before + 1);
    // The client never reads: once the socket buffers are full, a write waits, and after
    // 300 ms the server gives up on the client, which removes the stream's subscription.
    let big = "x".repeat(256 * 1024);
    wait_until("the silent client's stream to go", || {
        emit(&s, "demo:big", json!(big));
        subscriptions(&s) == before
    });
    // The listener still serves others.
    let a = ureq::get(&format!("{}/health", s.app.as_deref().unwrap()))
        .call()
        .unwrap();
    assert_eq!(a.status(), 200);
    drop(silent);
}
