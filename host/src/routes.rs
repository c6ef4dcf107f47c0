//! The HTTP routes a plugin declares: parsed and validated from its manifest (method, path
//! template, handler function, schemas, auth policy, limits), and matched against a request
//! path. Pure: no I/O.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::error::{Error, Result};
use crate::manifest::FunctionSpec;

/// The methods a route may declare.
pub const METHODS: [&str; 5] = ["GET", "POST", "PUT", "PATCH", "DELETE"];

/// Who may call a route; the application listener checks it before the plugin runs.
/// Serialized as in the manifest: `public`, `token` or `plugin:<name>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteAuth {
    /// Anyone.
    Public,
    /// A request carrying the application token as `Authorization: Bearer <token>`.
    Token,
    /// A request the named plugin (a declared dependency) accepts through its function
    /// `authenticate`.
    Plugin(String),
}

impl RouteAuth {
    /// The kind of policy: `public`, `token` or `plugin`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Public => "public",
            Self::Token => "token",
            Self::Plugin(_) => "plugin",
        }
    }
}

impl std::fmt::Display for RouteAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Plugin(name) => write!(f, "plugin:{name}"),
            other => f.write_str(other.as_str()),
        }
    }
}

impl Serialize for RouteAuth {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// A validated route: a plugin function served at `/plugins/{plugin}/<path>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct RouteSpec {
    /// HTTP method, upper case (one of [`METHODS`]).
    pub method: String,
    /// Path template relative to the plugin's mount point, for example `/items/{id}`.
    pub path: String,
    /// The declared function handling it.
    pub function: String,
    /// One-line summary (empty when none was given).
    pub summary: String,
    /// Who may call it.
    pub auth: RouteAuth,
    /// JSON Schema the request body must satisfy.
    pub body_schema: Option<serde_json::Value>,
    /// JSON Schema of the response body, for documentation.
    pub response_schema: Option<serde_json::Value>,
    /// Largest request body accepted, in bytes (`None`: the host's default).
    pub body_limit: Option<u64>,
    /// Time the handler may take, in milliseconds (`None`: the host's execute timeout).
    pub timeout_ms: Option<u64>,
    /// Bus event patterns the route may stream as Server-Sent Events (empty: none), each a
    /// valid bus [`Pattern`](crate::bus::Pattern).
    pub streams: Vec<String>,
}

/// A route as the manifest JSON writes it.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRoute {
    method: String,
    path: String,
    function: String,
    #[serde(default)]
    summary: String,
    #[serde(default = "public")]
    auth: String,
    #[serde(default)]
    body_schema: String,
    #[serde(default)]
    response_schema: String,
    #[serde(default)]
    body_limit: u64,
    #[serde(default)]
    timeout_ms: u64,
    #[serde(default)]
    streams: Vec<String>,
}

fn public() -> String {
    "public".to_owned()
}

/// One segment of a template: a literal or a named parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Segment<'a> {
    Literal(&'a str),
    Param(&'a str),
}

/// The segments of a path (`/` has none): what follows the leading `/`, split on `/`.
fn split(path: &str) -> Vec<&str> {
    let rest = path.strip_prefix('/').unwrap_or(path);
    if rest.is_empty() {
        Vec::new()
    } else {
        rest.split('/').collect()
    }
}

/// Parses a template into segments, or says what is wrong with it.
fn template(path: &str) -> std::result::Result<Vec<Segment<'_>>, String> {
    if !path.starts_with('/') {
        return Err("the path does not start with `/`".into());
    }
    let mut out = Vec::new();
    for seg in split(path) {
        if seg.is_empty() {
            return Err("the path has an empty segment (`//` or a trailing `/`)".into());
        }
        if let Some(name) = seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
            let ok = name
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !ok {
                return Err(format!(
                    "parameter `{seg}` is not `{{name}}` with a name of letters, digits and `_`"
                ));
            }
            if out.contains(&Segment::Param(name)) {
                return Err(format!("parameter `{name}` appears twice"));
            }
            out.push(Segment::Param(name));
        } else if let Some(bad) = seg.chars().find(|c| matches!(c, '{' | '}' | '?' | '#')) {
            return Err(format!(
                "segment `{seg}` holds {bad:?}; a parameter is a whole segment `{{name}}`"
            ));
        } else {
            out.push(Segment::Literal(seg));
        }
    }
    Ok(out)
}

impl RouteSpec {
    /// Validates a manifest's raw routes against its declared functions.
    ///
    /// # Errors
    /// `invalid_route` for a bad method or template, an undeclared function, a schema that
    /// does not compile or an auth plugin that is not among `dependencies`; `route_conflict`
    /// for two routes of the same method and path shape.
    pub(crate) fn parse_all(
        plugin: &str,
        raw: Vec<RawRoute>,
        functions: &[FunctionSpec],
        dependencies: &[&str],
    ) -> Result<Vec<Self>> {
        let mut routes: Vec<Self> = Vec::with_capacity(raw.len());
        for r in raw {
            let invalid = |reason: String| Error::InvalidRoute {
                plugin: plugin.to_owned(),
                method: r.method.clone(),
                path: r.path.clone(),
                reason,
            };
            if !METHODS.contains(&r.method.as_str()) {
                return Err(invalid(format!(
                    "method `{}` is not one of {}",
                    r.method,
                    METHODS.join(", ")
                )));
            }
            template(&r.path).map_err(invalid)?;
            if !functions.iter().any(|f| f.name == r.function) {
                return Err(invalid(format!(
                    "its function `{}` is not declared in the manifest",
                    r.function
                )));
            }
            let auth = match r.auth.as_str() {
                "public" => RouteAuth::Public,
                "token" => RouteAuth::Token,
                other => match other.strip_prefix("plugin:") {
                    Some(name) if dependencies.contains(&name) => {
                        RouteAuth::Plugin(name.to_owned())
                    }
                    Some(name) => {
                        return Err(invalid(format!(
                            "its auth plugin `{name}` is not a declared dependency"
                        )));
                    }
                    None => {
                        return Err(invalid(format!(
                            "auth `{other}` is not `public`, `token` or `plugin:<name>`"
                        )));
                    }
                },
            };
            let schema =
                |text: &str, what: &str| crate::manifest::schema(text, what).map_err(&invalid);
            let body_schema = schema(&r.body_schema, "the body schema")?;
            let response_schema = schema(&r.response_schema, "the response schema")?;
            for pattern in &r.streams {
                crate::bus::Pattern::parse(pattern).map_err(|e| {
                    invalid(format!(
                        "its stream pattern `{pattern}` is not a bus pattern: {e}"
                    ))
                })?;
            }
            let spec = Self {
                body_schema,
                response_schema,
                auth,
                body_limit: (r.body_limit > 0).then_some(r.body_limit),
                timeout_ms: (r.timeout_ms > 0).then_some(r.timeout_ms),
                streams: r.streams,
                method: r.method,
                path: r.path,
                function: r.function,
                summary: r.summary,
            };
            if let Some(other) = routes
                .iter()
                .find(|o| o.method == spec.method && o.shape() == spec.shape())
            {
                return Err(Error::RouteConflict {
                    plugin: plugin.to_owned(),
                    method: spec.method,
                    paths: vec![other.path.clone(), spec.path],
                });
            }
            routes.push(spec);
        }
        Ok(routes)
    }

    fn segments(&self) -> Vec<Segment<'_>> {
        // Validated at parse time; an invalid template (impossible) matches nothing.
        template(&self.path).unwrap_or_default()
    }

    /// The template with every parameter written `{}`: two routes of one method and one shape
    /// would answer the same requests.
    fn shape(&self) -> String {
        self.segments()
            .iter()
            .map(|s| match s {
                Segment::Literal(l) => format!("/{l}"),
                Segment::Param(_) => "/{}".to_owned(),
            })
            .collect()
    }

    /// The template's parameter names, in order.
    pub fn params(&self) -> Vec<&str> {
        self.segments()
            .into_iter()
            .filter_map(|s| match s {
                Segment::Param(p) => Some(p),
                Segment::Literal(_) => None,
            })
            .collect()
    }

    /// Matches `path` (relative to the mount point, raw segments) against the template: a
    /// literal segment matches its own text, escaped or not; the parameters by name, their
    /// values as they appear in the path (not decoded).
    pub fn matches<'p>(&self, path: &'p str) -> Option<BTreeMap<String, &'p str>> {
        let template = self.segments();
        let parts = split(path);
        if template.len() != parts.len() {
            return None;
        }
        let mut params = BTreeMap::new();
        for (seg, part) in template.iter().zip(parts) {
            match seg {
                Segment::Literal(l) if literal_matches(l, part) => {}
                Segment::Param(name) if !part.is_empty() => {
                    params.insert((*name).to_owned(), part);
                }
                _ => return None,
            }
        }
        Some(params)
    }

    /// How specific the route is at each segment (a literal beats a parameter), for choosing
    /// among routes that match one path: `/items/new` before `/items/{id}`.
    pub fn specificity(&self) -> Vec<bool> {
        self.segments()
            .iter()
            .map(|s| matches!(s, Segment::Literal(_)))
            .collect()
    }
}

/// Whether raw path segment `part` is the template's literal segment, escaped or not:
/// `%73ecret` is `secret`, so an escape cannot steer a request past a literal segment to a
/// parameter route with another auth policy.
fn literal_matches(literal: &str, part: &str) -> bool {
    literal == part || (part.contains('%') && percent_decode(part).is_ok_and(|d| d == literal))
}

/// Decodes the `%XX` escapes of a raw path segment (UTF-8).
///
/// # Errors
/// A message naming the segment: a bad escape, or bytes that are not UTF-8 once decoded.
pub fn percent_decode(raw: &str) -> Result<String, String> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| format!("path segment `{raw}` holds a bad `%` escape"))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| format!("path segment `{raw}` is not UTF-8 once decoded"))
}

/// What a request path finds among a plugin's routes.
#[derive(Debug, PartialEq, Eq)]
pub enum RouteMatch<'r, 'p> {
    /// A route of the request's method matches: it and the raw parameter values.
    Found(&'r RouteSpec, BTreeMap<String, &'p str>),
    /// The path matches routes of other methods only: those methods (for `Allow`).
    OtherMethods(Vec<&'r str>),
    /// No route matches the path.
    None,
}

/// Finds the route answering `method path` (the most specific one when several match). `HEAD`
/// is answered by the `GET` route (HTTP semantics: the server sends the head of the answer
/// only), and `Allow` lists `HEAD` beside `GET`.
pub fn find<'r, 'p>(routes: &'r [RouteSpec], method: &str, path: &'p str) -> RouteMatch<'r, 'p> {
    choose(
        method,
        routes
            .iter()
            .filter_map(|r| Some((r, r.matches(path)?, r.specificity()))),
    )
}

/// Among routes that match a path (each with its parameters and specificity), the one of
/// `method` with the most specific template, else the other methods that match.
fn choose<'r, 'p, S: PartialOrd>(
    method: &str,
    matching: impl Iterator<Item = (&'r RouteSpec, BTreeMap<String, &'p str>, S)>,
) -> RouteMatch<'r, 'p> {
    let wanted = if method == "HEAD" { "GET" } else { method };
    let mut best: Option<(&RouteSpec, BTreeMap<String, &str>, S)> = None;
    let mut others: Vec<&str> = Vec::new();
    for (route, params, specificity) in matching {
        if route.method != wanted {
            if !others.contains(&route.method.as_str()) {
                others.push(&route.method);
                if route.method == "GET" {
                    others.push("HEAD");
                }
            }
            continue;
        }
        if best.as_ref().is_none_or(|(_, _, b)| specificity > *b) {
            best = Some((route, params, specificity));
        }
    }
    match (best, others.is_empty()) {
        (Some((route, params, _)), _) => RouteMatch::Found(route, params),
        (None, false) => RouteMatch::OtherMethods(others),
        (None, true) => RouteMatch::None,
    }
}

/// A plugin instance's routes, compiled once for matching (templates split into segments,
/// specificity computed), so that a request allocates nothing to find its route but its
/// parameters. The manager builds one per instance; a reload brings a new one with the new
/// instance (see [`PluginManager::routes`](crate::PluginManager::routes)).
#[derive(Debug, Default)]
pub struct RouteTable {
    routes: Vec<CompiledRoute>,
}

/// A [`Segment`] that owns its text, kept in a [`RouteTable`].
#[derive(Debug)]
enum OwnedSegment {
    Literal(String),
    Param(String),
}

/// One route of a [`RouteTable`].
#[derive(Debug)]
struct CompiledRoute {
    spec: RouteSpec,
    /// The template's segments.
    segments: Vec<OwnedSegment>,
    /// As [`RouteSpec::specificity`].
    specificity: Vec<bool>,
}

impl RouteTable {
    /// Compiles validated routes (a manifest's).
    pub fn new(routes: &[RouteSpec]) -> Self {
        let routes = routes
            .iter()
            .map(|spec| CompiledRoute {
                segments: spec
                    .segments()
                    .into_iter()
                    .map(|s| match s {
                        Segment::Literal(l) => OwnedSegment::Literal(l.to_owned()),
                        Segment::Param(p) => OwnedSegment::Param(p.to_owned()),
                    })
                    .collect(),
                specificity: spec.specificity(),
                spec: spec.clone(),
            })
            .collect();
        Self { routes }
    }

    /// The routes, in declaration order.
    pub fn routes(&self) -> impl Iterator<Item = &RouteSpec> {
        self.routes.iter().map(|r| &r.spec)
    }

    /// As [`find`]: the route answering `method path` (the most specific one when several
    /// match).
    pub fn find<'r, 'p>(&'r self, method: &str, path: &'p str) -> RouteMatch<'r, 'p> {
        choose(
            method,
            self.routes
                .iter()
                .filter_map(|r| Some((&r.spec, r.matches(path)?, r.specificity.as_slice()))),
        )
    }
}

impl CompiledRoute {
    /// As [`RouteSpec::matches`], without splitting the template again.
    fn matches<'p>(&self, path: &'p str) -> Option<BTreeMap<String, &'p str>> {
        let rest = path.strip_prefix('/').unwrap_or(path);
        // `/` (the mount point) has no segment.
        let mut parts = (!rest.is_empty())
            .then(|| rest.split('/'))
            .into_iter()
            .flatten();
        let mut params = BTreeMap::new();
        for segment in &self.segments {
            let part = parts.next()?;
            match segment {
                OwnedSegment::Literal(literal) if literal_matches(literal, part) => {}
                OwnedSegment::Param(name) if !part.is_empty() => {
                    params.insert(name.clone(), part);
                }
                _ => return None,
            }
        }
        parts.next().is_none().then_some(params)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorCode;

    fn f(name: &str) -> FunctionSpec {
        FunctionSpec {
            name: name.into(),
            summary: String::new(),
            input_schema: None,
            output_schema: None,
        }
    }

    fn raw(method: &str, path: &str, function: &str) -> RawRoute {
        serde_json::from_value(serde_json::json!({
            "method": method, "path": path, "function": function
        }))
        .unwrap()
    }

    fn parse(routes: Vec<RawRoute>) -> Result<Vec<RouteSpec>> {
        RouteSpec::parse_all("p", routes, &[f("h")], &["auth"])
    }

    fn with_auth(auth: &str) -> RawRoute {
        serde_json::from_value(serde_json::json!({
            "method": "POST", "path": "/a", "function": "h", "auth": auth
        }))
        .unwrap()
    }

    #[test]
    fn a_plugin_policy_names_a_declared_dependency() {
        let routes = parse(vec![with_auth("plugin:auth")]).unwrap();
        assert_eq!(routes[0].auth, RouteAuth::Plugin("auth".into()));
        assert_eq!(
            serde_json::to_value(&routes[0]).unwrap()["auth"],
            "plugin:auth"
        );
        assert_eq!(
            serde_json::to_value(&parse(vec![with_auth("token")]).unwrap()[0]).unwrap()["auth"],
            "token"
        );
        for bad in ["plugin:other", "plugin:", "plugin", "Token"] {
            let e = parse(vec![with_auth(bad)]).unwrap_err();
            assert_eq!(e.code(), ErrorCode::InvalidRoute, "{bad}");
        }
        let e = parse(vec![with_auth("plugin:other")]).unwrap_err();
        assert!(e.to_string().contains("not a declared dependency"), "{e}");
    }

    #[test]
    fn invalid_routes_say_why() {
        let cases = [
            (raw("GETS", "/a", "h"), "method"),
            (raw("GET", "a", "h"), "start with"),
            (raw("GET", "/a//b", "h"), "empty segment"),
            (raw("GET", "/a/", "h"), "empty segment"),
            (raw("GET", "/a/{1x}", "h"), "parameter"),
            (raw("GET", "/a/{}", "h"), "parameter"),
            (raw("GET", "/a/x{y}", "h"), "whole segment"),
            (raw("GET", "/a/{x}/{x}", "h"), "twice"),
            (raw("GET", "/a", "nope"), "not declared"),
        ];
        for (route, why) in cases {
            let e = parse(vec![route]).unwrap_err();
            assert_eq!(e.code(), ErrorCode::InvalidRoute);
            assert!(e.to_string().contains(why), "{e}");
        }
        let bad_schema: RawRoute = serde_json::from_value(serde_json::json!({
            "method": "POST", "path": "/a", "function": "h", "body_schema": "{\"type\":3}"
        }))
        .unwrap();
        let e = parse(vec![bad_schema]).unwrap_err();
        assert_eq!(e.code(), ErrorCode::InvalidRoute);
        let bad_auth: RawRoute = serde_json::from_value(serde_json::json!({
            "method": "POST", "path": "/a", "function": "h", "auth": "plugin:x"
        }))
        .unwrap();
        assert_eq!(
            parse(vec![bad_auth]).unwrap_err().code(),
            ErrorCode::InvalidRoute
        );
    }

    #[test]
    fn stream_patterns_must_be_bus_patterns() {
        let route = |streams: serde_json::Value| -> RawRoute {
            serde_json::from_value(serde_json::json!({
                "method": "GET", "path": "/e", "function": "h", "streams": streams
            }))
            .unwrap()
        };
        let ok = parse(vec![route(serde_json::json!(["todo:*", "a:**"]))]).unwrap();
        assert_eq!(ok[0].streams, ["todo:*", "a:**"]);
        assert_eq!(
            serde_json::to_value(&ok[0]).unwrap()["streams"],
            serde_json::json!(["todo:*", "a:**"])
        );
        assert!(
            parse(vec![raw("GET", "/e", "h")]).unwrap()[0]
                .streams
                .is_empty()
        );
        for bad in ["to*", "**:a", "", "a::b"] {
            let e = parse(vec![route(serde_json::json!([bad]))]).unwrap_err();
            assert_eq!(e.code(), ErrorCode::InvalidRoute, "{bad}");
            assert!(e.to_string().contains("stream pattern"), "{e}");
        }
    }

    #[test]
    fn same_method_and_shape_conflict() {
        let e = parse(vec![raw("GET", "/a/{x}", "h"), raw("GET", "/a/{y}", "h")]).unwrap_err();
        assert_eq!(e.code(), ErrorCode::RouteConflict);
        assert!(e.to_string().contains("/a/{y}"), "{e}");
        parse(vec![raw("GET", "/a/{x}", "h"), raw("POST", "/a/{y}", "h")]).unwrap();
        parse(vec![raw("GET", "/a/{x}", "h"), raw("GET", "/a/b", "h")]).unwrap();
    }

    #[test]
    fn percent_decoding_refuses_bad_escapes() {
        assert_eq!(percent_decode("a%20b%2F").unwrap(), "a b/");
        assert!(percent_decode("a%2").is_err());
        assert!(percent_decode("a%zz").is_err());
        assert!(percent_decode("%ff").is_err());
    }

    #[test]
    fn finds_the_most_specific_route_or_the_other_methods() {
        let routes = parse(vec![
            raw("GET", "/", "h"),
            raw("GET", "/items/{id}", "h"),
            raw("GET", "/items/new", "h"),
            raw("DELETE", "/items/{id}", "h"),
        ])
        .unwrap();
        let RouteMatch::Found(r, params) = find(&routes, "GET", "/items/7") else {
            panic!("no match");
        };
        assert_eq!((r.path.as_str(), params["id"]), ("/items/{id}", "7"));
        let RouteMatch::Found(r, _) = find(&routes, "GET", "/items/new") else {
            panic!("no match");
        };
        assert_eq!(r.path, "/items/new");
        assert!(matches!(find(&routes, "GET", "/"), RouteMatch::Found(..)));
        assert_eq!(
            find(&routes, "POST", "/items/7"),
            RouteMatch::OtherMethods(vec!["GET", "HEAD", "DELETE"])
        );
        let RouteMatch::Found(r, _) = find(&routes, "HEAD", "/items/7") else {
            panic!("HEAD is answered by the GET route");
        };
        assert_eq!((r.method.as_str(), r.path.as_str()), ("GET", "/items/{id}"));
        let delete_only = parse(vec![raw("DELETE", "/x", "h")]).unwrap();
        assert_eq!(
            find(&delete_only, "HEAD", "/x"),
            RouteMatch::OtherMethods(vec!["DELETE"])
        );
        assert_eq!(find(&routes, "GET", "/items"), RouteMatch::None);
        assert_eq!(find(&routes, "GET", "/items/7/x"), RouteMatch::None);
        assert_eq!(find(&routes, "GET", "/items/"), RouteMatch::None);
        assert_eq!(routes[1].params(), vec!["id"]);
        // An escaped literal is that literal: it never falls through to a parameter route.
        let RouteMatch::Found(r, _) = find(&routes, "GET", "/items/%6Eew") else {
            panic!("no match");
        };
        assert_eq!(r.path, "/items/new");
    }

    #[test]
    fn a_route_table_matches_as_find_does() {
        let routes = parse(vec![
            raw("GET", "/", "h"),
            raw("GET", "/items/{id}", "h"),
            raw("GET", "/items/new", "h"),
            raw("DELETE", "/items/{id}", "h"),
            raw("GET", "/a/{x}/c/{y}", "h"),
        ])
        .unwrap();
        let table = RouteTable::new(&routes);
        assert_eq!(table.routes().count(), routes.len());
        let requests = [
            ("GET", "/"),
            ("GET", ""),
            ("GET", "/items/7"),
            ("GET", "/items/new"),
            ("DELETE", "/items/new"),
            ("POST", "/items/7"),
            ("GET", "/items"),
            ("GET", "/items/"),
            ("GET", "/items/7/x"),
            ("GET", "//"),
            ("GET", "/a/1/c/2"),
            ("GET", "/a/1/d/2"),
            ("GET", "/a/%2F/c/x%20y"),
            ("GET", "/items/%6Eew"),
            ("HEAD", "/items/7"),
            ("HEAD", "/a/1/%64/2"),
            ("PUT", "/items/7"),
        ];
        for (method, path) in requests {
            assert_eq!(
                table.find(method, path),
                find(&routes, method, path),
                "{method} {path}"
            );
        }
        let RouteMatch::Found(r, params) = table.find("GET", "/a/1/c/2") else {
            panic!("no match");
        };
        assert_eq!(r.path, "/a/{x}/c/{y}");
        assert_eq!((params["x"], params["y"]), ("1", "2"));
        assert_eq!(RouteTable::default().find("GET", "/"), RouteMatch::None);
    }
}
