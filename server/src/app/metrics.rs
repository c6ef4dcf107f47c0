//! The application listener's metrics and access log. Per plugin and route: requests by status
//! class (`plugin_host_app_requests_total`) and a latency histogram
//! (`plugin_host_app_request_seconds`), which the admin API's `/metrics` renders; and one
//! `access` log line per request. `dispatch.rs` holds a [`Pending`] while it serves a request,
//! fills its [`Trace`] as the request goes and gives it the answer's status; the request is
//! recorded when the `Pending` is dropped (as 499 if the client went away first).
//!
//! Label values are bounded by the manifests: `route` is the matched route's method and declared
//! template (`GET /items/{id}`), never the raw path; a request that reached no route of a loaded
//! plugin (404, 405, or refused before routing because the plugin is disabled or not active) is
//! counted under `route="unmatched"`, and a request naming no loaded plugin under `plugin=""`
//! (never a valid plugin name). Series stay once created, through unloads and reloads, so
//! counters never go back mid-run.
//!
//! Recording takes the map's read lock (shared, uncontended) and adds to atomics; the write lock
//! is taken only to create a series, on its first request.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{OnceLock, PoisonError, RwLock};
use std::time::{Duration, Instant};

use axum::extract::Request;
use axum::http::{Method, StatusCode, Uri};
use plugin_host::RouteSpec;
use plugin_host::metrics::{Histogram, Sample, family};

/// The `route` label (and the access log's `route` field) of a request that reached no route.
pub(crate) const UNMATCHED: &str = "unmatched";

/// The `class` label values, by `status / 100 - 1`.
const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// The requests counter family.
const REQUESTS: &str = "plugin_host_app_requests_total";
/// The latency histogram family.
const SECONDS: &str = "plugin_host_app_request_seconds";

/// One plugin route's series.
#[derive(Debug, Default)]
struct RouteSeries {
    /// Requests by status class ([`CLASSES`]).
    classes: [AtomicU64; CLASSES.len()],
    /// Time from the request's arrival at dispatch to its response head.
    latency: Histogram,
}

impl RouteSeries {
    fn record(&self, status: StatusCode, elapsed: Duration) {
        let class = usize::from(status.as_u16() / 100).clamp(1, CLASSES.len()) - 1;
        self.classes[class].fetch_add(1, Ordering::Relaxed);
        self.latency.observe(elapsed);
    }
}

/// Series by plugin label, then route label.
type SeriesMap = HashMap<String, HashMap<String, RouteSeries>>;

/// The application listener's request counters and latency histograms.
#[derive(Debug, Default)]
pub(crate) struct AppMetrics {
    series: RwLock<SeriesMap>,
}

/// What dispatch learnt about one request as it went: whether the plugin was found, which
/// route matched, who the caller is.
#[derive(Debug, Default)]
pub(crate) struct Trace {
    found: AtomicBool,
    /// `METHOD /template`: the route label.
    route: OnceLock<String>,
    subject: OnceLock<String>,
}

impl Trace {
    /// The path names a loaded plugin (in any state).
    pub(crate) fn found(&self) {
        self.found.store(true, Ordering::Relaxed);
    }

    /// The request matched `route`.
    pub(crate) fn matched(&self, route: &RouteSpec) {
        self.matched_template(&route.method, &route.path);
    }

    /// The request matched the route `method template`.
    fn matched_template(&self, method: &str, template: &str) {
        let _ = self.route.set(format!("{method} {template}"));
    }

    /// The route's auth plugin answered `identity`: its `sub` (the JWT claim) or else its `user`
    /// (what `plugins/auth` answers), when a string, is the access log's `subject`. Nothing
    /// else of the identity is logged: it is whatever the auth plugin answered.
    pub(crate) fn identified(&self, identity: Option<&serde_json::Value>) {
        let subject = identity.and_then(|i| {
            ["sub", "user"]
                .iter()
                .find_map(|k| i.get(k).and_then(serde_json::Value::as_str))
        });
        if let Some(subject) = subject {
            let _ = self.subject.set(subject.to_owned());
        }
    }
}

/// A request being served: recorded and logged when dropped, with the status given to
/// [`Pending::answered`], or as 499 (nginx's "client closed request") when it never was: the
/// client went away and the server dropped the request's handling.
#[derive(Debug)]
pub(crate) struct Pending<'a> {
    metrics: &'a AppMetrics,
    trace: Trace,
    plugin: &'a str,
    method: Method,
    uri: Uri,
    started: Instant,
    status: Option<StatusCode>,
}

impl<'a> Pending<'a> {
    /// Starts timing `req`, a request to plugin `plugin`.
    pub(crate) fn new(metrics: &'a AppMetrics, plugin: &'a str, req: &Request) -> Self {
        Self {
            metrics,
            trace: Trace::default(),
            plugin,
            method: req.method().clone(),
            uri: req.uri().clone(),
            started: Instant::now(),
            status: None,
        }
    }

    /// What dispatch fills as the request goes.
    pub(crate) fn trace(&self) -> &Trace {
        &self.trace
    }

    /// The answer's head is ready, with `status`.
    pub(crate) fn answered(&mut self, status: StatusCode) {
        self.status = Some(status);
    }
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        let done = Finished {
            plugin: self.plugin,
            method: &self.method,
            path: self.uri.path(),
            status: self.status.unwrap_or(CLIENT_CLOSED),
            elapsed: self.started.elapsed(),
        };
        self.metrics.finish(&self.trace, &done);
    }
}

/// The status a request is recorded with when its client went away before the answer.
const CLIENT_CLOSED: StatusCode = match StatusCode::from_u16(499) {
    Ok(status) => status,
    Err(_) => StatusCode::BAD_REQUEST,
};

/// One finished request, as [`AppMetrics::finish`] records and logs it.
#[derive(Debug)]
struct Finished<'a> {
    /// The plugin name from the path, as sent (percent-decoded).
    plugin: &'a str,
    /// The request's method.
    method: &'a Method,
    /// The request's path, raw (no query: it may carry secrets).
    path: &'a str,
    /// The answer's status.
    status: StatusCode,
    /// Time from the request's arrival at dispatch to its response head.
    elapsed: Duration,
}

impl AppMetrics {
    /// Records a finished request in its series and writes its `access` log line (info).
    fn finish(&self, trace: &Trace, done: &Finished<'_>) {
        let plugin = if trace.found.load(Ordering::Relaxed) {
            done.plugin
        } else {
            ""
        };
        let route = trace.route.get().map_or(UNMATCHED, String::as_str);
        self.record(plugin, route, done.status, done.elapsed);
        let template = route.split_once(' ').map_or(route, |(_, t)| t);
        tracing::info!(
            target: "access",
            // Decoded from the path: escaped, so a `%0A` cannot forge a log line.
            plugin = %done.plugin.escape_debug(),
            method = %done.method,
            path = %done.path,
            route = %template,
            status = done.status.as_u16(),
            duration_ms = done.elapsed.as_micros() as f64 / 1000.0,
            subject = %trace.subject.get().map_or("-", |s| s.as_str()).escape_debug(),
            "request"
        );
    }

    /// Adds one request to the series of `plugin` and `route`, creating it the first time.
    fn record(&self, plugin: &str, route: &str, status: StatusCode, elapsed: Duration) {
        {
            let map = self.series.read().unwrap_or_else(PoisonError::into_inner);
            if let Some(series) = map.get(plugin).and_then(|routes| routes.get(route)) {
                series.record(status, elapsed);
                return;
            }
        }
        let mut map = self.series.write().unwrap_or_else(PoisonError::into_inner);
        map.entry(plugin.to_owned())
            .or_default()
            .entry(route.to_owned())
            .or_default()
            .record(status, elapsed);
    }

    /// Writes both families in the Prometheus text format, series sorted by plugin and route.
    pub(crate) fn render(&self, out: &mut String) {
        let map = self.series.read().unwrap_or_else(PoisonError::into_inner);
        let mut all: Vec<(&str, &str, &RouteSeries)> = map
            .iter()
            .flat_map(|(p, routes)| routes.iter().map(move |(r, s)| (p.as_str(), r.as_str(), s)))
            .collect();
        all.sort_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
        let samples: Vec<Sample<'_>> = all
            .iter()
            .flat_map(|(plugin, route, series)| {
                CLASSES
                    .iter()
                    .zip(&series.classes)
                    .map(|(class, n)| Sample {
                        labels: vec![
                            ("plugin", (*plugin).to_owned()),
                            ("route", (*route).to_owned()),
                            ("class", (*class).to_owned()),
                        ],
                        value: n.load(Ordering::Relaxed) as f64,
                    })
            })
            .collect();
        family(
            out,
            REQUESTS,
            "counter",
            "Application listener requests by plugin, route (method and template) and status class.",
            &samples,
        );
        Histogram::write_header(
            out,
            SECONDS,
            "Application listener time from a request's arrival to its response head, by plugin and route.",
        );
        for (plugin, route, series) in all {
            series
                .latency
                .write_series(out, SECONDS, &[("plugin", plugin), ("route", route)]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn done(plugin: &str, status: u16, ms: u64) -> Finished<'_> {
        Finished {
            plugin,
            method: &Method::GET,
            path: "/plugins/x",
            status: StatusCode::from_u16(status).unwrap(),
            elapsed: Duration::from_millis(ms),
        }
    }

    #[test]
    fn requests_are_counted_by_route_template_and_class() {
        let m = AppMetrics::default();
        let hit = Trace::default();
        hit.found();
        hit.matched_template("GET", "/items/{id}");
        m.finish(&hit, &done("store", 200, 1));
        m.finish(&hit, &done("store", 503, 2));
        let miss = Trace::default();
        miss.found();
        m.finish(&miss, &done("store", 404, 1));
        m.finish(&Trace::default(), &done("nope\n", 404, 1));
        let mut out = String::new();
        m.render(&mut out);
        let at = |labels: &str| format!("{REQUESTS}{{{labels}}} ");
        for (labels, n) in [
            (r#"plugin="store",route="GET /items/{id}",class="2xx""#, 1),
            (r#"plugin="store",route="GET /items/{id}",class="5xx""#, 1),
            (r#"plugin="store",route="GET /items/{id}",class="4xx""#, 0),
            (r#"plugin="store",route="unmatched",class="4xx""#, 1),
            (r#"plugin="",route="unmatched",class="4xx""#, 1),
        ] {
            assert!(
                out.contains(&format!("{}{n}\n", at(labels))),
                "{labels}\n{out}"
            );
        }
        assert!(out.contains(&format!(
            "{SECONDS}_count{{plugin=\"store\",route=\"GET /items/{{id}}\"}} 2\n"
        )));
        assert!(!out.contains("nope"), "an unknown name is no label: {out}");
    }

    #[test]
    fn the_subject_is_sub_or_user_when_a_string() {
        for (identity, subject) in [
            (serde_json::json!({"sub": "s", "user": "u"}), Some("s")),
            (serde_json::json!({"user": "ada"}), Some("ada")),
            (serde_json::json!({"user": 7}), None),
            (serde_json::json!("ada"), None),
        ] {
            let t = Trace::default();
            t.identified(Some(&identity));
            assert_eq!(t.subject.get().map(String::as_str), subject, "{identity}");
        }
    }
}
