//! `/metrics` of a running `plugin-host serve` with plugins loaded, read by a strict checker of
//! the Prometheus text format 0.0.4 written here, apart from the host's renderer: every line is
//! a HELP, a TYPE or a sample; a family's HELP and TYPE come before its samples, once each; names
//! and label names are valid; label values are properly escaped; no series repeats; counters end
//! in `_total`; histograms have, per series, cumulative `le` buckets ending in `+Inf`, `_sum`
//! and `_count`. With the application listener: its requests counted by plugin, route template
//! and status class, its latency histograms, and its `access` log lines (and their filter).
//! See: https://prometheus.io/docs/instrumenting/exposition_formats/#text-based-format
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::collections::{BTreeMap, HashMap, HashSet};

use integration::*;
use serde_json::json;

/// One sample: metric name, labels (sorted), value.
type Series = (String, BTreeMap<String, String>);

/// What the checker read: each family's type, and every sample.
#[derive(Debug, Default)]
struct Exposition {
    types: HashMap<String, String>,
    samples: BTreeMap<Series, f64>,
}

impl Exposition {
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let labels = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        self.samples.get(&(name.to_owned(), labels)).copied()
    }
}

fn valid_metric_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn valid_label_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !s.starts_with("__")
}

/// Parses `{a="x",b="y\"z"}` at the start of `s`; returns the labels and the rest.
fn parse_labels(s: &str) -> Result<(BTreeMap<String, String>, &str), String> {
    let mut labels = BTreeMap::new();
    let mut rest = s.strip_prefix('{').ok_or("labels must start with {")?;
    loop {
        if let Some(after) = rest.strip_prefix('}') {
            return Ok((labels, after));
        }
        let eq = rest.find('=').ok_or("label without =")?;
        let name = &rest[..eq];
        if !valid_label_name(name) {
            return Err(format!("invalid label name {name:?}"));
        }
        rest = rest[eq + 1..]
            .strip_prefix('"')
            .ok_or("label value must be quoted")?;
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let end = loop {
            match chars.next().ok_or("unterminated label value")? {
                (i, '"') => break i,
                (_, '\\') => match chars.next().ok_or("dangling escape")?.1 {
                    '\\' => value.push('\\'),
                    '"' => value.push('"'),
                    'n' => value.push('\n'),
                    c => return Err(format!("invalid escape \\{c}")),
                },
                (_, '\n') => return Err("raw newline in a label value".into()),
                (_, c) => value.push(c),
            }
        };
        if labels.insert(name.to_owned(), value).is_some() {
            return Err(format!("label {name} given twice"));
        }
        rest = &rest[end + 1..];
        rest = rest.strip_prefix(',').unwrap_or(rest);
    }
}

fn parse_value(s: &str) -> Result<f64, String> {
    match s {
        "+Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        "NaN" => Ok(f64::NAN),
        _ => s.parse().map_err(|e| format!("bad value {s:?}: {e}")),
    }
}

/// The family a sample name belongs to, given the declared families.
fn family_of<'a>(name: &'a str, types: &HashMap<String, String>) -> &'a str {
    if types.contains_key(name) {
        return name;
    }
    for suffix in ["_bucket", "_sum", "_count"] {
        if let Some(base) = name.strip_suffix(suffix)
            && types.get(base).is_some_and(|t| t == "histogram")
        {
            return base;
        }
    }
    name
}

fn check_line(line: &str, e: &mut Exposition, state: &mut Families) -> Result<(), String> {
    if let Some(rest) = line.strip_prefix("# HELP ") {
        let (name, _) = rest.split_once(' ').ok_or("HELP without text")?;
        return state.declare(name, "HELP");
    }
    if let Some(rest) = line.strip_prefix("# TYPE ") {
        let (name, kind) = rest.split_once(' ').ok_or("TYPE without a type")?;
        if !["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind) {
            return Err(format!("unknown type {kind}"));
        }
        if kind == "counter" && !name.ends_with("_total") {
            return Err(format!("counter {name} does not end in _total"));
        }
        state.declare(name, "TYPE")?;
        e.types.insert(name.to_owned(), kind.to_owned());
        return Ok(());
    }
    if line.starts_with('#') || line.trim().is_empty() {
        return Err("neither HELP, TYPE nor a sample".into());
    }
    let name_end = line.find(['{', ' ']).ok_or("sample without a value")?;
    let name = &line[..name_end];
    let (labels, rest) = if line[name_end..].starts_with('{') {
        parse_labels(&line[name_end..])?
    } else {
        (BTreeMap::new(), &line[name_end..])
    };
    let value = parse_value(rest.strip_prefix(' ').ok_or("no space before the value")?)?;
    let family = family_of(name, &e.types);
    if !e.types.contains_key(family) {
        return Err(format!("sample of {family} before its TYPE"));
    }
    state.sample(family)?;
    if e.samples.insert((name.to_owned(), labels), value).is_some() {
        return Err(format!("series repeated: {line}"));
    }
    Ok(())
}

/// Which families were declared, and which one is being written.
#[derive(Default)]
struct Families {
    declared: HashSet<(String, &'static str)>,
    done: HashSet<String>,
    current: Option<String>,
}

impl Families {
    fn declare(&mut self, name: &str, what: &'static str) -> Result<(), String> {
        if !valid_metric_name(name) {
            return Err(format!("invalid metric name {name:?}"));
        }
        if self.done.contains(name) || self.current.as_deref() == Some(name) {
            return Err(format!("{what} of {name} after its samples"));
        }
        if !self.declared.insert((name.to_owned(), what)) {
            return Err(format!("second {what} for {name}"));
        }
        Ok(())
    }

    fn sample(&mut self, family: &str) -> Result<(), String> {
        if self.current.as_deref() != Some(family) {
            if self.done.contains(family) {
                return Err(format!("samples of {family} are not together"));
            }
            if let Some(previous) = self.current.replace(family.to_owned()) {
                self.done.insert(previous);
            }
        }
        if !self.declared.contains(&(family.to_owned(), "HELP")) {
            return Err(format!("{family} has no HELP"));
        }
        Ok(())
    }
}

/// Histograms, per series (label set without `le`): cumulative buckets ending in `+Inf`, which
/// equals the series' `_count`; a `_sum`.
fn check_histograms(e: &Exposition) -> Result<(), String> {
    for (family, _) in e.types.iter().filter(|(_, t)| *t == "histogram") {
        let bucket = format!("{family}_bucket");
        let mut series: BTreeMap<BTreeMap<String, String>, Vec<(f64, f64)>> = BTreeMap::new();
        for ((_, labels), v) in e.samples.iter().filter(|((n, _), _)| *n == bucket) {
            let mut labels = labels.clone();
            let le = labels.remove("le").ok_or(format!("{bucket} without le"))?;
            series
                .entry(labels)
                .or_default()
                .push((parse_value(&le)?, *v));
        }
        for (labels, mut buckets) in series {
            buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
            if buckets.windows(2).any(|w| w[1].1 < w[0].1) {
                return Err(format!("{family}{labels:?}: buckets are not cumulative"));
            }
            let pairs: Vec<(&str, &str)> = labels
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            let inf = buckets.last().filter(|b| b.0 == f64::INFINITY);
            let count = e.value(&format!("{family}_count"), &pairs);
            if inf.map(|b| b.1) != count || e.value(&format!("{family}_sum"), &pairs).is_none() {
                return Err(format!(
                    "{family}{labels:?}: no +Inf bucket equal to _count, or no _sum"
                ));
            }
        }
    }
    Ok(())
}

/// Checks a whole exposition; the error names the line at fault.
fn check(text: &str) -> Result<Exposition, String> {
    if !text.ends_with('\n') {
        return Err("the exposition must end with a newline".into());
    }
    let mut e = Exposition::default();
    let mut families = Families::default();
    for (i, line) in text.lines().enumerate() {
        check_line(line, &mut e, &mut families)
            .map_err(|why| format!("line {}: {why}: {line:?}", i + 1))?;
    }
    check_histograms(&e)?;
    Ok(e)
}

#[test]
fn the_checker_refuses_what_the_format_forbids() {
    let ok = "# HELP a_total h\n# TYPE a_total counter\na_total{p=\"x\\\"y\"} 1\n";
    assert!(check(ok).is_ok(), "{:?}", check(ok));
    let ok = "# HELP h h\n# TYPE h histogram\nh_bucket{p=\"a\",le=\"1\"} 1\nh_bucket{p=\"a\",le=\"+Inf\"} 2\nh_sum{p=\"a\"} 3\nh_count{p=\"a\"} 2\n";
    assert!(check(ok).is_ok(), "{:?}", check(ok));
    let bad = [
        "a_total 1\n",                                                        // no TYPE
        "# HELP a h\n# TYPE a counter\na 1\n",                                // counter name
        "# HELP a_total h\n# TYPE a_total counter\n# TYPE a_total counter\n", // TYPE twice
        "# HELP a_total h\n# TYPE a_total counter\na_total{p=\"x\\y\"} 1\n",  // bad escape
        "# HELP a_total h\n# TYPE a_total counter\na_total 1\na_total 2\n",   // repeated series
        "# HELP a_total h\n# TYPE a_total counter\na_total{1p=\"x\"} 1\n",    // label name
        "# HELP g h\n# TYPE g gauge\ng one\n",                                // value
        "# HELP g h\n# TYPE g gauge\ng 1",                                    // final newline
        "# HELP h h\n# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_sum 1\nh_count 1\n",
        // A labelled series whose _count is another series' +Inf.
        "# HELP h h\n# TYPE h histogram\nh_bucket{p=\"a\",le=\"+Inf\"} 1\nh_bucket{p=\"b\",le=\"+Inf\"} 2\nh_sum{p=\"a\"} 1\nh_count{p=\"a\"} 2\nh_sum{p=\"b\"} 1\nh_count{p=\"b\"} 1\n",
        // No +Inf bucket.
        "# HELP h h\n# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_sum 1\nh_count 1\n",
    ];
    for text in bad {
        assert!(check(text).is_err(), "accepted: {text:?}");
    }
}

#[test]
fn metrics_of_a_running_host_are_valid_exposition_and_match_the_stats() {
    let s = Server::start(&[], &[]);
    for name in ["hello", "greeter", "panicker", "fail-init"] {
        let path = plugin(name).to_str().unwrap().to_owned();
        s.call("POST", "/api/v1/plugins", Some(json!({ "path": path })));
    }
    // A reload starts the reloaded plugin and its dependents with fresh counters: first.
    s.call("POST", "/api/v1/plugins/hello/reload", None);
    assert_eq!(
        s.call("POST", "/api/v1/plugins/greeter/execute", Some(json!({})))
            .0,
        200
    );
    let (st, _) = s.call(
        "POST",
        "/api/v1/plugins/panicker/execute",
        Some(json!({ "panic": true })),
    );
    assert_eq!(st, 422);

    let text = ureq::get(&format!("{}/metrics", s.addr))
        .call()
        .unwrap()
        .into_string()
        .unwrap();
    let e = check(&text).unwrap_or_else(|why| panic!("{why}\n{text}"));

    let (_, list) = s.call("GET", "/api/v1/plugins", None);
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 3, "{list:?}");
    for p in list {
        let name = p["name"].as_str().unwrap();
        let stat = |field: &str| p["stats"][field].as_f64().unwrap();
        let at = |metric: &str| e.value(metric, &[("plugin", name)]);
        assert_eq!(
            at("plugin_host_execute_total"),
            Some(stat("executes")),
            "{name}"
        );
        assert_eq!(
            at("plugin_host_execute_errors_total"),
            Some(stat("execute_errors")),
            "{name}"
        );
        for (kind, field) in [
            ("table", "tables_denied"),
            ("topic", "topics_denied"),
            ("bucket", "buckets_denied"),
        ] {
            assert_eq!(
                e.value(
                    "plugin_host_resource_denials_total",
                    &[("kind", kind), ("plugin", name)]
                ),
                Some(stat(field)),
                "{name} {kind}"
            );
        }
    }
    // A dependency call counts for the callee; a panic counts as an error.
    assert_eq!(
        e.value("plugin_host_execute_total", &[("plugin", "hello")]),
        Some(1.0)
    );
    assert_eq!(
        e.value(
            "plugin_host_execute_errors_total",
            &[("plugin", "panicker")]
        ),
        Some(1.0)
    );
    assert_eq!(e.value("plugin_host_loads_total", &[]), Some(3.0));
    assert_eq!(e.value("plugin_host_load_failures_total", &[]), Some(1.0));
    assert_eq!(e.value("plugin_host_reloads_total", &[]), Some(1.0));
    assert_eq!(
        e.value("plugin_host_plugins", &[("state", "active")]),
        Some(3.0)
    );
    assert_eq!(
        e.value("plugin_host_plugins", &[("state", "failed")]),
        Some(0.0)
    );
    assert_eq!(e.value("plugin_host_load_seconds_count", &[]), Some(3.0));
    assert_eq!(e.types["plugin_host_reload_seconds"], "histogram");
}

/// A request to the application listener; its status.
fn app(s: &Server, method: &str, path: &str, body: Option<&str>, auth: Option<&str>) -> u16 {
    let base = s.app.as_deref().expect("an application listener");
    let mut req = ureq::request(method, &format!("{base}{path}"));
    if let Some(auth) = auth {
        req = req.set("authorization", auth);
    }
    let result = match body {
        Some(b) => req.set("content-type", "application/json").send_string(b),
        None => req.call(),
    };
    match result {
        Ok(r) | Err(ureq::Error::Status(_, r)) => r.status(),
        Err(e) => panic!("{method} {path}: {e}"),
    }
}

/// The server's log lines of target `access`, once there are `n` of them (within 10 s).
fn access_lines(s: &Server, n: usize) -> Vec<String> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let log = std::fs::read_to_string(&s.log).unwrap();
        let lines: Vec<String> = log
            .lines()
            .filter(|l| l.contains(" access: "))
            .map(str::to_owned)
            .collect();
        if lines.len() >= n || std::time::Instant::now() > deadline {
            return lines;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

const APP_TOKEN: &str = "app-token-0123456789";

/// `routes-demo`, and `todo` behind `auth`, on a server with the application listener.
fn app_server(log: &str) -> Server {
    let s = Server::start(
        &["--app-listen", "127.0.0.1:0"],
        &[
            ("PLUGIN_HOST_APP_TOKEN", APP_TOKEN),
            ("PLUGIN_HOST_LOG", log),
        ],
    );
    for name in ["routes-demo", "auth", "todo"] {
        let path = plugin(name).to_str().unwrap().to_owned();
        let (st, out) = s.call("POST", "/api/v1/plugins", Some(json!({ "path": path })));
        assert_eq!(st, 201, "{name}: {out}");
    }
    s
}

/// Sends the requests of [`application_requests_are_counted_by_route_template_and_class`];
/// returns the `todo` key (of user `ada`).
fn send_app_requests(s: &Server) -> String {
    let demo = "/plugins/routes-demo";
    for _ in 0..5 {
        assert_eq!(app(s, "GET", &format!("{demo}/items"), None, None), 200);
    }
    // The plugin's own 404s, on a route: counted under the template, not the raw path.
    for id in [7, 8, 9] {
        assert_eq!(
            app(s, "GET", &format!("{demo}/items/{id}"), None, None),
            404
        );
    }
    // No route has the path; only another method has it; no such plugin.
    assert_eq!(app(s, "GET", &format!("{demo}/nope/1"), None, None), 404);
    assert_eq!(app(s, "PUT", &format!("{demo}/items"), None, None), 405);
    assert_eq!(app(s, "GET", "/plugins/ghost-1/items", None, None), 404);
    assert_eq!(app(s, "GET", "/plugins/ghost-2", None, None), 404);
    // A refusal before the handler: wrong application token.
    let wrong = Some("Bearer wrong-secret-0123456789");
    let item = Some(r#"{"name":"a"}"#);
    assert_eq!(app(s, "POST", &format!("{demo}/items"), item, wrong), 401);
    let bearer = format!("Bearer {APP_TOKEN}");
    assert_eq!(
        app(s, "POST", &format!("{demo}/items"), item, Some(&bearer)),
        201
    );
    assert_eq!(app(s, "GET", &format!("{demo}/panic"), None, None), 500);
    let (st, out) = s.call(
        "POST",
        "/api/v1/plugins/auth/call/create_key",
        Some(json!({ "user": "ada" })),
    );
    assert_eq!(st, 200, "{out}");
    let key = out["output"]["key"].as_str().unwrap().to_owned();
    let auth = format!("Bearer {key}");
    assert_eq!(app(s, "GET", "/plugins/todo/todos", None, Some(&auth)), 200);
    key
}

#[test]
fn application_requests_are_counted_by_route_template_and_class() {
    let s = app_server("debug");
    let key = send_app_requests(&s);
    let text = ureq::get(&format!("{}/metrics", s.addr))
        .call()
        .unwrap()
        .into_string()
        .unwrap();
    let e = check(&text).unwrap_or_else(|why| panic!("{why}\n{text}"));
    assert_eq!(e.types["plugin_host_app_requests_total"], "counter");
    assert_eq!(e.types["plugin_host_app_request_seconds"], "histogram");

    let expected: BTreeMap<(&str, &str, &str), f64> = [
        (("routes-demo", "GET /items", "2xx"), 5.0),
        (("routes-demo", "GET /items/{id}", "4xx"), 3.0),
        (("routes-demo", "unmatched", "4xx"), 2.0),
        (("", "unmatched", "4xx"), 2.0),
        (("routes-demo", "POST /items", "4xx"), 1.0),
        (("routes-demo", "POST /items", "2xx"), 1.0),
        (("routes-demo", "GET /panic", "5xx"), 1.0),
        (("todo", "GET /todos", "2xx"), 1.0),
    ]
    .into_iter()
    .collect();
    // Every series of the family, zeros included: exactly the expected ones, each route with
    // its five classes.
    let mut routes = BTreeMap::new();
    for ((name, labels), value) in &e.samples {
        if name != "plugin_host_app_requests_total" {
            continue;
        }
        let key = (
            labels["plugin"].as_str(),
            labels["route"].as_str(),
            labels["class"].as_str(),
        );
        assert_eq!(labels.len(), 3, "{labels:?}");
        assert_eq!(
            *value,
            expected.get(&key).copied().unwrap_or(0.0),
            "{key:?}"
        );
        *routes.entry((key.0, key.1)).or_insert(0.0) += value;
    }
    let mut expected_routes = BTreeMap::new();
    for ((plugin, route, _), n) in &expected {
        *expected_routes.entry((*plugin, *route)).or_insert(0.0) += n;
    }
    assert_eq!(routes, expected_routes);
    // One latency series per route, counting every request of the route.
    for ((plugin, route), n) in &routes {
        let labels = [("plugin", *plugin), ("route", *route)];
        assert_eq!(
            e.value("plugin_host_app_request_seconds_count", &labels),
            Some(*n),
            "{labels:?}"
        );
        let inf = [("le", "+Inf"), ("plugin", *plugin), ("route", *route)];
        assert_eq!(
            e.value("plugin_host_app_request_seconds_bucket", &inf),
            Some(*n)
        );
        assert!(
            e.value("plugin_host_app_request_seconds_sum", &labels)
                .unwrap()
                > 0.0
        );
    }
    for secret in ["ghost", "/items/7", "nope", APP_TOKEN, key.as_str()] {
        assert!(!text.contains(secret), "{secret} in /metrics");
    }
    check_access_log(&s, &key);
}

/// One `access` line per application request, with its fields; no credentials.
fn check_access_log(s: &Server, key: &str) {
    let lines = access_lines(s, 16);
    assert_eq!(lines.len(), 16, "{lines:#?}");
    let has = |fields: &str| lines.iter().filter(|l| l.contains(fields)).count();
    assert_eq!(
        has(
            "plugin=routes-demo method=GET path=/plugins/routes-demo/items route=/items status=200 duration_ms="
        ),
        5,
        "{lines:#?}"
    );
    assert_eq!(
        has(
            "plugin=routes-demo method=GET path=/plugins/routes-demo/items/8 route=/items/{id} status=404 "
        ),
        1
    );
    assert_eq!(
        has(
            "plugin=routes-demo method=PUT path=/plugins/routes-demo/items route=unmatched status=405 "
        ),
        1
    );
    assert_eq!(
        has("plugin=ghost-1 method=GET path=/plugins/ghost-1/items route=unmatched status=404 "),
        1
    );
    assert_eq!(
        has(
            "plugin=routes-demo method=POST path=/plugins/routes-demo/items route=/items status=401 "
        ),
        1
    );
    assert_eq!(
        has("plugin=todo method=GET path=/plugins/todo/todos route=/todos status=200 "),
        1
    );
    assert_eq!(has(" subject=ada"), 1, "{lines:#?}");
    assert_eq!(has(" subject=-"), 15);
    let log = std::fs::read_to_string(&s.log).unwrap();
    for secret in [APP_TOKEN, "wrong-secret", key] {
        assert!(!log.contains(secret), "{secret} in the log");
    }
}

#[test]
fn the_access_log_turns_off_by_its_target() {
    let s = app_server("info,access=off");
    assert_eq!(
        app(&s, "GET", "/plugins/routes-demo/items", None, None),
        200
    );
    let text = ureq::get(&format!("{}/metrics", s.addr))
        .call()
        .unwrap()
        .into_string()
        .unwrap();
    let e = check(&text).unwrap_or_else(|why| panic!("{why}\n{text}"));
    let labels = [
        ("class", "2xx"),
        ("plugin", "routes-demo"),
        ("route", "GET /items"),
    ];
    assert_eq!(
        e.value("plugin_host_app_requests_total", &labels),
        Some(1.0)
    );
    let log = std::fs::read_to_string(&s.log).unwrap();
    // The rest of the log is kept at info; debug lines and access lines are not written.
    assert!(log.contains("application listener listening"), "{log}");
    assert!(!log.contains(" DEBUG "), "{log}");
    assert!(access_lines(&s, 0).is_empty(), "{log}");
}

#[test]
fn a_request_whose_client_goes_away_counts_as_499() {
    let s = app_server("info");
    let base = s.app.as_deref().unwrap();
    // The handler sleeps 250 ms (the route's limit is 300 ms); the client gives up at 50 ms.
    let impatient = ureq::AgentBuilder::new()
        .timeout_read(std::time::Duration::from_millis(50))
        .build();
    let result = impatient
        .get(&format!("{base}/plugins/routes-demo/slow?ms=250"))
        .call();
    assert!(
        matches!(result, Err(ureq::Error::Transport(_))),
        "{result:?}"
    );
    drop(impatient);
    let labels = [
        ("class", "4xx"),
        ("plugin", "routes-demo"),
        ("route", "GET /slow"),
    ];
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let e = loop {
        let text = ureq::get(&format!("{}/metrics", s.addr))
            .call()
            .unwrap()
            .into_string()
            .unwrap();
        let e = check(&text).unwrap_or_else(|why| panic!("{why}\n{text}"));
        if e.value("plugin_host_app_requests_total", &labels).is_some()
            || std::time::Instant::now() > deadline
        {
            break e;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert_eq!(
        e.value("plugin_host_app_requests_total", &labels),
        Some(1.0)
    );
    let total: f64 = ["1xx", "2xx", "3xx", "5xx"]
        .iter()
        .filter_map(|class| {
            let labels = [
                ("class", *class),
                ("plugin", "routes-demo"),
                ("route", "GET /slow"),
            ];
            e.value("plugin_host_app_requests_total", &labels)
        })
        .sum();
    assert_eq!(total, 0.0, "recorded once, as the client's going away");
    let lines = access_lines(&s, 1);
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert!(lines[0].contains("route=/slow status=499 "), "{lines:#?}");
}
