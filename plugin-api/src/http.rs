//! HTTP routes a plugin serves on the host's application listener.
//!
//! A route is declared in the [`Manifest`](crate::Manifest) with [`Route`] and handled by one of
//! the plugin's typed functions (registered with [`Functions::add`](crate::Functions::add) or
//! [`Functions::add_shared`](crate::Functions::add_shared)) that takes an [`HttpRequest`] and
//! answers an [`HttpResponse`]. The host mounts it at `/plugins/{plugin}/<path>`, checks its
//! auth policy, body limit and body schema before the plugin runs, and calls the function by
//! name.
//!
//! A route that declares bus patterns with [`Route::streams`] may answer
//! [`HttpResponse::events`]: the host then streams, as Server-Sent Events, the bus events that
//! match both the chosen and the declared patterns, until the client goes or the plugin is
//! unloaded, reloaded or disabled (docs/routes.md, "Event streams").
//!
//! The README's two-route plugin (kept identical to it):
//!
//! ```
//! #![forbid(unsafe_code)]
//! use plugin_api::http::{Auth, HttpRequest, HttpResponse, Route};
//! use plugin_api::{Context, Function, Functions, Manifest, Plugin, Result};
//!
//! #[derive(Default)]
//! struct Notes { notes: Vec<String> }
//!
//! impl Plugin for Notes {
//!     const MANIFEST: Manifest = Manifest::new("notes", "1.0.0")
//!         .functions(&[Function::new("list"), Function::new("add")])
//!         .routes(&[
//!             Route::get("/notes", "list").summary("every note"),
//!             Route::post("/notes", "add").auth(Auth::Token)
//!                 .body_schema(r#"{"type":"object","required":["text"]}"#),
//!         ]);
//!     fn new(_ctx: &Context) -> Result<Self> { Ok(Notes::default()) }
//!     fn functions(f: &mut Functions<Self>) {
//!         f.add_shared("list", Self::list).add("add", Self::add);
//!     }
//! }
//!
//! impl Notes {
//!     fn list(&self, _: &Context, _: HttpRequest) -> Result<HttpResponse> {
//!         HttpResponse::ok(&self.notes)
//!     }
//!     fn add(&mut self, _: &Context, req: HttpRequest) -> Result<HttpResponse> {
//!         self.notes.push(req.body["text"].as_str().unwrap_or_default().to_owned());
//!         HttpResponse::created(&self.notes.len())
//!     }
//! }
//!
//! plugin_api::export_plugin!(Notes);
//! ```

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::Result;

/// Who may call a route; the host checks it before the plugin runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Auth {
    /// Anyone who reaches the application listener.
    Public,
    /// A request carrying `Authorization: Bearer <app token>` (the host's application token,
    /// distinct from the admin token). A host with no application token answers 401 always.
    Token,
    /// A request the named plugin accepts (manifest JSON `plugin:<name>`): before the handler
    /// runs, the host calls that plugin's function `authenticate` with the method, the path and
    /// the headers (`authorization` included) and passes its `identity` to the handler in
    /// [`HttpRequest::identity`]. The named plugin must be a declared dependency.
    Plugin(&'static str),
}

impl Auth {
    /// The kind of policy: `public`, `token` or `plugin` (the manifest JSON writes the last as
    /// `plugin:<name>`).
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Public => "public",
            Self::Token => "token",
            Self::Plugin(_) => "plugin",
        }
    }
}

/// An HTTP route a plugin serves, declared in its [`Manifest`](crate::Manifest) with
/// [`Manifest::routes`](crate::Manifest::routes).
///
/// `path` is a template relative to the plugin's mount point: it starts with `/`, its segments
/// are literals or `{name}` parameters (`/items/{id}`). `function` names a declared function
/// taking an [`HttpRequest`] and answering an [`HttpResponse`].
#[derive(Debug, Clone, Copy)]
pub struct Route {
    /// HTTP method, upper case: `GET`, `POST`, `PUT`, `PATCH` or `DELETE`.
    pub method: &'static str,
    /// Path template, for example `/items/{id}`.
    pub path: &'static str,
    /// The declared function handling it.
    pub function: &'static str,
    /// One-line summary (empty: none).
    pub summary: &'static str,
    /// Who may call it (default [`Auth::Public`]).
    pub auth: Auth,
    /// JSON Schema of the request body, as JSON text (empty: any body); checked by the host.
    pub body_schema: &'static str,
    /// JSON Schema of the response body, as JSON text (empty: not described); documentation.
    pub response_schema: &'static str,
    /// Largest request body accepted, in bytes (0: the host's default).
    pub body_limit: u64,
    /// Time the handler may take, in milliseconds (0: the host's execute timeout).
    pub timeout_ms: u64,
    /// Bus event patterns the route may stream as Server-Sent Events (empty: none); see
    /// [`Route::streams`] and [`HttpResponse::events`].
    pub streams: &'static [&'static str],
}

impl Route {
    /// A route with a method, a path template and a handler function, public, with nothing else
    /// declared.
    pub const fn new(method: &'static str, path: &'static str, function: &'static str) -> Self {
        Self {
            method,
            path,
            function,
            summary: "",
            auth: Auth::Public,
            body_schema: "",
            response_schema: "",
            body_limit: 0,
            timeout_ms: 0,
            streams: &[],
        }
    }

    /// A `GET` route.
    pub const fn get(path: &'static str, function: &'static str) -> Self {
        Self::new("GET", path, function)
    }

    /// A `POST` route.
    pub const fn post(path: &'static str, function: &'static str) -> Self {
        Self::new("POST", path, function)
    }

    /// A `PUT` route.
    pub const fn put(path: &'static str, function: &'static str) -> Self {
        Self::new("PUT", path, function)
    }

    /// A `PATCH` route.
    pub const fn patch(path: &'static str, function: &'static str) -> Self {
        Self::new("PATCH", path, function)
    }

    /// A `DELETE` route.
    pub const fn delete(path: &'static str, function: &'static str) -> Self {
        Self::new("DELETE", path, function)
    }

    /// Sets the one-line summary.
    pub const fn summary(mut self, summary: &'static str) -> Self {
        self.summary = summary;
        self
    }

    /// Sets the auth policy.
    pub const fn auth(mut self, auth: Auth) -> Self {
        self.auth = auth;
        self
    }

    /// Sets the JSON Schema of the request body (JSON text); the host refuses a body that does
    /// not satisfy it with 400 `invalid_input`.
    pub const fn body_schema(mut self, schema: &'static str) -> Self {
        self.body_schema = schema;
        self
    }

    /// Sets the JSON Schema of the response body (JSON text), for the OpenAPI document.
    pub const fn response_schema(mut self, schema: &'static str) -> Self {
        self.response_schema = schema;
        self
    }

    /// Sets the largest request body accepted, in bytes.
    pub const fn body_limit(mut self, bytes: u64) -> Self {
        self.body_limit = bytes;
        self
    }

    /// Sets the time the handler may take, in milliseconds.
    pub const fn timeout_ms(mut self, ms: u64) -> Self {
        self.timeout_ms = ms;
        self
    }

    /// Declares the bus event patterns (`todo:*`, `user:**`; the bus's pattern rules) the route
    /// may stream: its handler may then answer [`HttpResponse::events`], and the host delivers
    /// an event only when it matches one of these patterns *and* one the handler chose. A
    /// pattern that does not parse is refused at load (`invalid_route`).
    pub const fn streams(mut self, patterns: &'static [&'static str]) -> Self {
        self.streams = patterns;
        self
    }
}

/// A request to a route, as the handler function receives it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct HttpRequest {
    /// HTTP method, upper case.
    pub method: String,
    /// The path relative to the plugin's mount point, for example `/items/7`.
    pub path: String,
    /// The template's parameters, by name (`{"id": "7"}` for `/items/{id}`), percent-decoded.
    pub params: BTreeMap<String, String>,
    /// Query parameters, percent-decoded (the last value wins for a repeated name).
    pub query: BTreeMap<String, String>,
    /// Request headers, names in lower case (values that are not UTF-8 are left out; the
    /// `authorization` header is never passed on to the handler).
    pub headers: BTreeMap<String, String>,
    /// The JSON body (`null` when the request has none).
    pub body: Value,
    /// Who the caller is, as the route's auth plugin answered (`None` for other policies).
    #[serde(default)]
    pub identity: Option<Value>,
}

/// A handler's answer: status, headers and a JSON body, or (with [`HttpResponse::events`]) a
/// stream of bus events.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HttpResponse {
    /// HTTP status, 100 to 599 (anything else is answered as a 500 by the host).
    pub status: u16,
    /// Response headers. Hop-by-hop headers and `content-length` are dropped by the host.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// The JSON body (`null`: the body is `null`, except for 204 and 304, which have none).
    #[serde(default)]
    pub body: Value,
    /// Bus event patterns to stream as Server-Sent Events instead of the body (empty: an
    /// ordinary answer). Only on a route that declares [`Route::streams`]; the host delivers the
    /// events that match one of these *and* one the route declares.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stream: Vec<String>,
}

impl HttpResponse {
    /// A response with `status` and `body` serialised to JSON.
    ///
    /// # Errors
    /// `serialization` when `body` cannot be serialised.
    pub fn json<T: Serialize + ?Sized>(status: u16, body: &T) -> Result<Self> {
        Ok(Self {
            status,
            headers: BTreeMap::new(),
            body: serde_json::to_value(body)?,
            stream: Vec::new(),
        })
    }

    /// A 200 response with `body`.
    ///
    /// # Errors
    /// `serialization` when `body` cannot be serialised.
    pub fn ok<T: Serialize + ?Sized>(body: &T) -> Result<Self> {
        Self::json(200, body)
    }

    /// A 201 response with `body`.
    ///
    /// # Errors
    /// `serialization` when `body` cannot be serialised.
    pub fn created<T: Serialize + ?Sized>(body: &T) -> Result<Self> {
        Self::json(201, body)
    }

    /// A 204 response, without a body.
    pub fn no_content() -> Self {
        Self::status(204)
    }

    /// A 404 response with the host's JSON error body shape
    /// (`{"error":{"code":"not_found","message":...}}`).
    pub fn not_found() -> Self {
        Self::error(404, "not_found", "no such resource")
    }

    /// A response with `status`, no headers and a `null` body.
    pub fn status(status: u16) -> Self {
        Self {
            status,
            headers: BTreeMap::new(),
            body: Value::Null,
            stream: Vec::new(),
        }
    }

    /// A response with `status` and the host's JSON error body shape
    /// (`{"error":{"code":...,"message":...,"details":{}}}`).
    pub fn error(status: u16, code: &str, message: &str) -> Self {
        Self {
            status,
            headers: BTreeMap::new(),
            body: serde_json::json!({
                "error": { "code": code, "message": message, "details": {} }
            }),
            stream: Vec::new(),
        }
    }

    /// A 200 stream of the bus events matching `patterns` (and a pattern the route declares
    /// with [`Route::streams`]), sent as Server-Sent Events until the client disconnects or the
    /// plugin is unloaded, reloaded or disabled. Headers set with [`HttpResponse::header`] are
    /// sent too; the body is ignored.
    pub fn events(patterns: &[&str]) -> Self {
        Self {
            status: 200,
            headers: BTreeMap::new(),
            body: Value::Null,
            stream: patterns.iter().map(|p| (*p).to_owned()).collect(),
        }
    }

    /// Adds a header (the name is stored in lower case).
    #[must_use]
    pub fn header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.insert(name.to_ascii_lowercase(), value.into());
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builders_set_every_field() {
        const R: Route = Route::patch("/a/{b}", "f")
            .summary("s")
            .auth(Auth::Token)
            .body_schema("{}")
            .response_schema("{\"type\":\"null\"}")
            .body_limit(10)
            .timeout_ms(20);
        assert_eq!(
            (R.method, R.path, R.function, R.summary),
            ("PATCH", "/a/{b}", "f", "s")
        );
        assert_eq!(R.auth.as_str(), "token");
        assert_eq!((R.body_limit, R.timeout_ms), (10, 20));
        assert_eq!(Route::delete("/", "f").method, "DELETE");
        assert_eq!(Route::put("/", "f").auth, Auth::Public);
        assert_eq!(Auth::Plugin("auth").as_str(), "plugin");
        assert!(R.streams.is_empty());
        assert_eq!(Route::get("/e", "f").streams(&["a:*"]).streams, ["a:*"]);
    }

    #[test]
    fn event_answers_carry_their_patterns_and_plain_ones_encode_as_before() {
        let r = HttpResponse::events(&["todo:created", "todo:*"]);
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["stream"], serde_json::json!(["todo:created", "todo:*"]));
        assert_eq!(serde_json::from_value::<HttpResponse>(v).unwrap(), r);
        let plain = serde_json::to_value(HttpResponse::status(200)).unwrap();
        assert!(plain.get("stream").is_none(), "{plain}");
    }

    #[test]
    fn requests_without_an_identity_still_deserialize() {
        let old = serde_json::json!({"method": "GET", "path": "/", "params": {}, "query": {},
                                     "headers": {}, "body": null});
        let req: HttpRequest = serde_json::from_value(old).unwrap();
        assert_eq!(req.identity, None);
        let mut with = serde_json::to_value(&req).unwrap();
        with["identity"] = serde_json::json!({"user": "a"});
        let req: HttpRequest = serde_json::from_value(with).unwrap();
        assert_eq!(req.identity, Some(serde_json::json!({"user": "a"})));
    }

    #[test]
    fn responses_round_trip_and_default_missing_fields() {
        let r = HttpResponse::created(&serde_json::json!({"id": 1}))
            .unwrap()
            .header("X-Id", "1");
        assert_eq!(r.status, 201);
        assert_eq!(r.headers["x-id"], "1");
        let back: HttpResponse = serde_json::from_value(serde_json::to_value(&r).unwrap()).unwrap();
        assert_eq!(back, r);
        let bare: HttpResponse = serde_json::from_str(r#"{"status":204}"#).unwrap();
        assert_eq!(bare, HttpResponse::no_content());
        assert_eq!(HttpResponse::not_found().body["error"]["code"], "not_found");
    }
}
