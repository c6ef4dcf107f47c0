//! `/metrics` of a running `plugin-host serve` with plugins loaded, read by a strict checker of
//! the Prometheus text format 0.0.4 written here, apart from the host's renderer: every line is
//! a HELP, a TYPE or a sample; a family's HELP and TYPE come before its samples, once each; names
//! and label names are valid; label values are properly escaped; no series repeats; counters end
//! in `_total`; histograms have cumulative `le` buckets ending in `+Inf`, `_sum` and `_count`.
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

/// Histograms: cumulative buckets ending in `+Inf`, which equals `_count`; a `_sum`.
fn check_histograms(e: &Exposition) -> Result<(), String> {
    for (family, _) in e.types.iter().filter(|(_, t)| *t == "histogram") {
        let bucket = format!("{family}_bucket");
        let mut buckets: Vec<(f64, f64)> = e
            .samples
            .iter()
            .filter(|((n, _), _)| *n == bucket)
            .map(|((_, l), v)| parse_value(&l["le"]).map(|le| (le, *v)))
            .collect::<Result<_, _>>()?;
        buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        if buckets.windows(2).any(|w| w[1].1 < w[0].1) {
            return Err(format!("{family}: buckets are not cumulative"));
        }
        let inf = buckets.last().filter(|b| b.0 == f64::INFINITY);
        let count = e.value(&format!("{family}_count"), &[]);
        if inf.map(|b| b.1) != count || e.value(&format!("{family}_sum"), &[]).is_none() {
            return Err(format!(
                "{family}: no +Inf bucket equal to _count, or no _sum"
            ));
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
