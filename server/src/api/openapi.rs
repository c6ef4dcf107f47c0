//! The route table of the admin API, [`ROUTES`], and the OpenAPI 3.1 document generated from
//! it. The router is built from the same table (`super::router`), so a route cannot be served
//! without being documented, nor documented without being served. The schemas are written by
//! hand to say what the server really accepts and answers (name patterns, absolute paths, no
//! unknown fields, nullable fields); `scripts/schemathesis.sh` checks them against the running
//! server, and tests/tests/api.rs validates real responses against them.
//!
//! Called by `super::router` (the table) and the `GET /api/v1/openapi.json` handler.

use axum::routing::{MethodFilter, MethodRouter, on};
use plugin_host::PluginInfo;
use serde_json::{Map, Value, json};

use super::jobs;
use super::routes::{self, AppState};

/// An HTTP method of the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verb {
    Get,
    Post,
    Put,
    Delete,
}

impl Verb {
    /// The lowercase name OpenAPI uses.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Get => "get",
            Self::Post => "post",
            Self::Put => "put",
            Self::Delete => "delete",
        }
    }

    pub(crate) fn filter(self) -> MethodFilter {
        match self {
            Self::Get => MethodFilter::GET,
            Self::Post => MethodFilter::POST,
            Self::Put => MethodFilter::PUT,
            Self::Delete => MethodFilter::DELETE,
        }
    }
}

/// The request body of a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Body {
    /// None is read.
    None,
    /// Required, with this schema (a component name, or `Any`).
    Required(&'static str),
    /// May be absent (an empty body is JSON `null`), with this schema.
    Optional(&'static str),
}

/// What a route answers on success.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Success {
    /// JSON of this component (or `Any`), with this status.
    Json(u16, &'static str),
    /// Anything else, with this status and media type.
    Media(u16, &'static str),
    /// `201` with the first component when something was created, `200` with the second when
    /// nothing was (an enqueue that a dedupe key absorbed).
    CreatedOr(&'static str, &'static str),
}

/// A query parameter: name, schema (a JSON type name, or a JSON Schema as JSON text when it
/// starts with `{`), description.
type QueryParam = (&'static str, &'static str, &'static str);

/// Builds a route's handler for its method.
type Handler = fn(MethodFilter) -> MethodRouter<AppState>;

/// One route: how it is served and how it is documented.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Route {
    pub(crate) verb: Verb,
    /// Full path, with `{name}`-style parameters.
    pub(crate) path: &'static str,
    summary: &'static str,
    /// Whether it needs the bearer token (when one is configured).
    pub(crate) auth: bool,
    body: Body,
    ok: Success,
    query: &'static [QueryParam],
    pub(crate) handler: Handler,
}

const NONE: &[QueryParam] = &[];

/// Every route of the admin API. `super::router` serves exactly these.
pub(crate) const ROUTES: &[Route] = &[
    Route {
        verb: Verb::Get,
        path: "/health",
        summary: "Liveness and backend status (503 when a backend is down)",
        auth: false,
        body: Body::None,
        ok: Success::Json(200, "Health"),
        query: NONE,
        handler: |m| on(m, routes::health),
    },
    Route {
        verb: Verb::Get,
        path: "/metrics",
        summary: "Prometheus metrics",
        auth: false,
        body: Body::None,
        ok: Success::Media(200, "text/plain"),
        query: NONE,
        handler: |m| on(m, routes::metrics),
    },
    Route {
        verb: Verb::Get,
        path: "/api/v1/openapi.json",
        summary: "This document",
        auth: false,
        body: Body::None,
        ok: Success::Json(200, "Any"),
        query: NONE,
        handler: |m| on(m, routes::openapi),
    },
    Route {
        verb: Verb::Get,
        path: "/presigned/{token}",
        summary: "An object of a plugin's bucket, through a presigned link (the token is the \
                  credential)",
        auth: false,
        body: Body::None,
        ok: Success::Media(200, "*/*"),
        query: NONE,
        handler: |m| on(m, routes::presigned),
    },
    Route {
        verb: Verb::Get,
        path: "/api/v1/plugins",
        summary: "List plugins in dependency order",
        auth: true,
        body: Body::None,
        ok: Success::Json(200, "PluginList"),
        query: NONE,
        handler: |m| on(m, routes::list),
    },
    Route {
        verb: Verb::Post,
        path: "/api/v1/plugins",
        summary: "Load a plugin file (400 file_not_found when there is no such file)",
        auth: true,
        body: Body::Required("LoadRequest"),
        ok: Success::Json(201, "Plugin"),
        query: NONE,
        handler: |m| on(m, routes::load),
    },
    Route {
        verb: Verb::Get,
        path: "/api/v1/plugins/{name}",
        summary: "One plugin",
        auth: true,
        body: Body::None,
        ok: Success::Json(200, "Plugin"),
        query: NONE,
        handler: |m| on(m, routes::show),
    },
    Route {
        verb: Verb::Delete,
        path: "/api/v1/plugins/{name}",
        summary: "Unload (cascade=true unloads dependents first)",
        auth: true,
        body: Body::None,
        ok: Success::Json(200, "UnloadReport"),
        query: &[(
            "cascade",
            "boolean",
            "Unload the plugins that depend on it first",
        )],
        handler: |m| on(m, routes::unload),
    },
    Route {
        verb: Verb::Post,
        path: "/api/v1/plugins/{name}/reload",
        summary: "Atomic reload from the plugin's file",
        auth: true,
        body: Body::None,
        ok: Success::Json(200, "Plugin"),
        query: NONE,
        handler: |m| on(m, routes::reload),
    },
    Route {
        verb: Verb::Post,
        path: "/api/v1/plugins/{name}/enable",
        summary: "Enable a disabled plugin",
        auth: true,
        body: Body::None,
        ok: Success::Json(200, "Plugin"),
        query: NONE,
        handler: |m| on(m, routes::enable),
    },
    Route {
        verb: Verb::Post,
        path: "/api/v1/plugins/{name}/disable",
        summary: "Disable without unloading",
        auth: true,
        body: Body::None,
        ok: Success::Json(200, "Plugin"),
        query: NONE,
        handler: |m| on(m, routes::disable),
    },
    Route {
        verb: Verb::Post,
        path: "/api/v1/plugins/{name}/execute",
        summary: "Call the plugin with any JSON (no body is null)",
        auth: true,
        body: Body::Optional("Any"),
        ok: Success::Json(200, "ExecuteResponse"),
        query: NONE,
        handler: |m| on(m, routes::execute),
    },
    Route {
        verb: Verb::Post,
        path: "/api/v1/plugins/{name}/call/{function}",
        summary: "Call one of the plugin's named functions (its input schema is checked first; \
                  no body is null)",
        auth: true,
        body: Body::Optional("Any"),
        ok: Success::Json(200, "ExecuteResponse"),
        query: NONE,
        handler: |m| on(m, routes::call),
    },
    Route {
        verb: Verb::Get,
        path: "/api/v1/plugins/{name}/overrides",
        summary: "Read overrides ({} when there are none)",
        auth: true,
        body: Body::None,
        ok: Success::Json(200, "StoredOverrides"),
        query: NONE,
        handler: |m| on(m, routes::get_overrides),
    },
    Route {
        verb: Verb::Put,
        path: "/api/v1/plugins/{name}/overrides",
        summary: "Replace overrides (reloads atomically)",
        auth: true,
        body: Body::Required("Overrides"),
        ok: Success::Json(200, "StoredOverrides"),
        query: NONE,
        handler: |m| on(m, routes::put_overrides),
    },
    Route {
        verb: Verb::Delete,
        path: "/api/v1/plugins/{name}/overrides",
        summary: "Clear overrides (reloads atomically)",
        auth: true,
        body: Body::None,
        ok: Success::Json(200, "StoredOverrides"),
        query: NONE,
        handler: |m| on(m, routes::delete_overrides),
    },
    Route {
        verb: Verb::Get,
        path: "/api/v1/plugins/{name}/config",
        summary: "Read the plugin's config (null when it has none)",
        auth: true,
        body: Body::None,
        ok: Success::Json(200, "Any"),
        query: NONE,
        handler: |m| on(m, routes::get_config),
    },
    Route {
        verb: Verb::Put,
        path: "/api/v1/plugins/{name}/config",
        summary: "Replace the config (validated, reloads atomically)",
        auth: true,
        body: Body::Required("Any"),
        ok: Success::Json(200, "Any"),
        query: NONE,
        handler: |m| on(m, routes::put_config),
    },
    Route {
        verb: Verb::Delete,
        path: "/api/v1/plugins/{name}/config",
        summary: "Clear the config (reloads atomically)",
        auth: true,
        body: Body::None,
        ok: Success::Json(200, "Null"),
        query: NONE,
        handler: |m| on(m, routes::delete_config),
    },
    Route {
        verb: Verb::Post,
        path: "/api/v1/directory/load",
        summary: "Load every plugin in a folder (400 file_not_found when there is no such folder)",
        auth: true,
        body: Body::Required("PathRequest"),
        ok: Success::Json(200, "DirectoryReport"),
        query: NONE,
        handler: |m| on(m, routes::load_directory),
    },
    Route {
        verb: Verb::Get,
        path: "/api/v1/watch",
        summary: "The watched plugins folder and the state of each library file in it",
        auth: true,
        body: Body::None,
        ok: Success::Json(200, "WatchStatus"),
        query: NONE,
        handler: |m| on(m, routes::watch),
    },
    Route {
        verb: Verb::Post,
        path: "/api/v1/events",
        summary: "Emit an event as the operator",
        auth: true,
        body: Body::Required("EmitRequest"),
        ok: Success::Json(202, "EmitResponse"),
        query: NONE,
        handler: |m| on(m, routes::emit),
    },
    Route {
        verb: Verb::Get,
        path: "/api/v1/events/stream",
        summary: "Server-Sent Events of lifecycle and bus events",
        auth: true,
        body: Body::None,
        ok: Success::Media(200, "text/event-stream"),
        query: &[(
            "pattern",
            "string",
            "Only events whose name matches this pattern (`user:*`, `**`)",
        )],
        handler: |m| on(m, routes::stream),
    },
    Route {
        verb: Verb::Get,
        path: "/api/v1/jobs",
        summary: "Jobs, newest first (`before`: an id, to page)",
        auth: true,
        body: Body::None,
        ok: Success::Json(200, "JobList"),
        query: jobs::LIST_QUERY,
        handler: |m| on(m, jobs::list),
    },
    Route {
        verb: Verb::Post,
        path: "/api/v1/jobs",
        summary: "Enqueue a job as the operator (200 with a null job when a waiting job has the \
                  dedupe key)",
        auth: true,
        body: Body::Required("EnqueueRequest"),
        ok: Success::CreatedOr("JobAnswer", "Deduplicated"),
        query: NONE,
        handler: |m| on(m, jobs::enqueue),
    },
    Route {
        verb: Verb::Get,
        path: "/api/v1/jobs/paused",
        summary: "The paused job kinds",
        auth: true,
        body: Body::None,
        ok: Success::Json(200, "PausedList"),
        query: NONE,
        handler: |m| on(m, jobs::paused),
    },
    Route {
        verb: Verb::Get,
        path: "/api/v1/jobs/{id}",
        summary: "One job with its attempts (the execution log)",
        auth: true,
        body: Body::None,
        ok: Success::Json(200, "JobDetail"),
        query: NONE,
        handler: |m| on(m, jobs::show),
    },
    Route {
        verb: Verb::Post,
        path: "/api/v1/jobs/{id}/retry",
        summary: "Make a discarded or completed job wait again with fresh attempts, or a retryable one due now",
        auth: true,
        body: Body::None,
        ok: Success::Json(200, "JobAnswer"),
        query: NONE,
        handler: |m| on(m, jobs::retry),
    },
    Route {
        verb: Verb::Post,
        path: "/api/v1/jobs/{id}/cancel",
        summary: "Cancel a waiting job",
        auth: true,
        body: Body::None,
        ok: Success::Json(200, "JobAnswer"),
        query: NONE,
        handler: |m| on(m, jobs::cancel),
    },
    Route {
        verb: Verb::Post,
        path: "/api/v1/plugins/{name}/jobs/{kind}/pause",
        summary: "Pause a job kind: none of its jobs starts until it is resumed",
        auth: true,
        body: Body::None,
        ok: Success::Json(200, "PauseState"),
        query: NONE,
        handler: |m| on(m, jobs::pause),
    },
    Route {
        verb: Verb::Post,
        path: "/api/v1/plugins/{name}/jobs/{kind}/resume",
        summary: "Resume a paused job kind",
        auth: true,
        body: Body::None,
        ok: Success::Json(200, "PauseState"),
        query: NONE,
        handler: |m| on(m, jobs::resume),
    },
    Route {
        verb: Verb::Post,
        path: "/api/v1/plugins/{name}/schedules/{schedule}/run",
        summary: "Enqueue a schedule's job now (200 with a null job when it is already waiting)",
        auth: true,
        body: Body::None,
        ok: Success::CreatedOr("JobAnswer", "Deduplicated"),
        query: NONE,
        handler: |m| on(m, jobs::run_schedule),
    },
];

/// A plugin name (host/src/manifest.rs `validate_name`): 1 to 64 of `a-z 0-9 - _`, starting
/// with a letter.
const PLUGIN_NAME: &str = "^[a-z][a-z0-9_-]{0,63}$";
/// A logical resource name (host/src/resources/naming.rs `validate_logical`).
const RESOURCE_NAME: &str = "^[a-z][a-z0-9_-]{0,62}$";
/// An event name (host/src/bus.rs): `:`-separated segments of 1 to 64 of `A-Z a-z 0-9 _ - .`.
const EVENT_NAME: &str = "^[A-Za-z0-9_.-]{1,64}(:[A-Za-z0-9_.-]{1,64})*$";
/// A path the API accepts: absolute, without NUL (host/src/loader/file.rs `check_path`).
const ABSOLUTE_PATH: &str = "^/[^\\u0000]*$";

fn schema_ref(name: &str) -> Value {
    match name {
        "Any" => json!({}),
        "Null" => json!({ "type": "null" }),
        _ => json!({ "$ref": format!("#/components/schemas/{name}") }),
    }
}

fn nullable(schema: Value) -> Value {
    json!({ "anyOf": [schema, { "type": "null" }] })
}

/// The schema of the plugin object: every field the server always sends, with its type.
fn plugin_schema(strings: &Value, counter: &Value) -> Value {
    let string_map = json!({ "type": "object", "additionalProperties": { "type": "string" } });
    let resources = json!({ "type": "object", "required": ["tables", "topics", "buckets"],
        "properties": { "tables": strings, "topics": strings, "buckets": strings } });
    let stats: Map<String, Value> = [
        "executes",
        "in_flight",
        "execute_errors",
        "events_delivered",
        "events_failed",
        "events_dropped",
        "tables_denied",
        "topics_denied",
        "buckets_denied",
        "messages_produced",
        "messages_consumed",
        "messages_failed",
    ]
    .into_iter()
    .map(|k| (k.to_owned(), counter.clone()))
    .collect();
    let plugin_fields = [
        ("name", json!({ "type": "string" })),
        ("version", json!({ "type": "string" })),
        ("description", json!({ "type": "string" })),
        (
            "state",
            json!({ "type": "string", "enum": ["loading", "active", "disabled", "stopping",
                    "failed", "unloaded", "retained"] }),
        ),
        ("api_version", json!({ "type": "string" })),
        ("path", json!({ "type": "string" })),
        ("dependencies", strings.clone()),
        ("dependents", strings.clone()),
        (
            "functions",
            json!({ "type": "array", "items": schema_ref("Function") }),
        ),
        (
            "routes",
            json!({ "type": "array", "items": schema_ref("Route") }),
        ),
        (
            "jobs",
            json!({ "type": "array", "items": schema_ref("Job") }),
        ),
        (
            "schedules",
            json!({ "type": "array", "items": schema_ref("Schedule") }),
        ),
        ("resources", resources.clone()),
        ("declared", resources),
        (
            "physical",
            json!({ "type": "object", "required": ["tables", "topics", "buckets"],
                    "properties": { "tables": string_map, "topics": string_map,
                                    "buckets": string_map } }),
        ),
        ("overrides", nullable(schema_ref("StoredOverrides"))),
        ("config", json!({})),
        (
            "loaded_at",
            json!({ "type": "string", "format": "date-time" }),
        ),
        ("generation", counter.clone()),
        ("error", json!({ "type": ["string", "null"] })),
        (
            "stats",
            json!({ "type": "object", "required": stats.keys().collect::<Vec<_>>(),
                    "properties": stats }),
        ),
    ];
    let mut plugin = Map::new();
    plugin.insert("type".into(), json!("object"));
    plugin.insert(
        "required".into(),
        json!(plugin_fields.iter().map(|(k, _)| *k).collect::<Vec<_>>()),
    );
    plugin.insert(
        "properties".into(),
        Value::Object(
            plugin_fields
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect(),
        ),
    );
    Value::Object(plugin)
}

/// Schemas of what the server sends (every field it always sends is required).
fn response_schemas() -> Map<String, Value> {
    let strings = json!({ "type": "array", "items": { "type": "string" } });
    let string_map = json!({ "type": "object", "additionalProperties": { "type": "string" } });
    let counter = json!({ "type": "integer", "minimum": 0 });
    let plugin = plugin_schema(&strings, &counter);
    let schemas = json!({
        "Function": { "type": "object",
            "required": ["name", "summary", "input_schema", "output_schema"],
            "properties": { "name": { "type": "string" }, "summary": { "type": "string" },
                            "input_schema": {}, "output_schema": {} } },
        "Route": { "type": "object",
            "required": ["method", "path", "function", "summary", "auth", "body_schema",
                         "response_schema", "body_limit", "timeout_ms", "streams"],
            "properties": { "method": { "type": "string", "enum": plugin_host::METHODS },
                            "path": { "type": "string" }, "function": { "type": "string" },
                            "summary": { "type": "string" },
                            "auth": { "type": "string",
                                      "pattern": "^(public|token|plugin:[a-z][a-z0-9_-]*)$" },
                            "body_schema": {}, "response_schema": {},
                            "body_limit": { "type": ["integer", "null"], "minimum": 1 },
                            "timeout_ms": { "type": ["integer", "null"], "minimum": 1 },
                            "streams": { "type": "array", "items": { "type": "string" } } } },
        "Job": { "type": "object",
            "required": ["name", "function", "triggers", "max_attempts", "backoff", "timeout_ms",
                         "dedupe", "priority"],
            "properties": { "name": { "type": "string" }, "function": { "type": "string" },
                            "triggers": strings,
                            "max_attempts": { "type": "integer", "minimum": 1 },
                            "backoff": { "type": "object", "required": ["base_ms", "cap_ms"],
                                         "properties": {
                                             "base_ms": { "type": "integer", "minimum": 1 },
                                             "cap_ms": { "type": "integer", "minimum": 1 } } },
                            "timeout_ms": { "type": ["integer", "null"], "minimum": 1 },
                            "dedupe": { "type": ["string", "null"] },
                            "priority": { "type": "integer", "minimum": -32768,
                                          "maximum": 32767 } } },
        "Schedule": { "type": "object",
            "required": ["name", "job", "cron", "time_zone", "every_ms"],
            "properties": { "name": { "type": "string" }, "job": { "type": "string" },
                            "cron": { "type": ["string", "null"] },
                            "time_zone": { "type": ["string", "null"] },
                            "every_ms": { "type": ["integer", "null"], "minimum": 1 } } },
        "Error": { "type": "object", "required": ["error"], "properties": { "error": {
            "type": "object", "required": ["code", "message", "details"],
            "properties": { "code": { "type": "string" }, "message": { "type": "string" },
                            "details": { "type": "object" } } } } },
        "Plugin": plugin,
        "PluginList": { "type": "array", "items": schema_ref("Plugin") },
        "StoredOverrides": { "type": "object",
            "required": ["table_map", "topic_map", "bucket_map"], "properties": {
            "tables": strings, "topics": strings, "buckets": strings,
            "table_map": string_map, "topic_map": string_map, "bucket_map": string_map } },
        "UnloadReport": { "type": "object", "required": ["unloaded", "outcome"], "properties": {
            "unloaded": strings,
            "outcome": { "type": "object", "additionalProperties": {
                "type": "string", "enum": ["unmapped", "retained"] } } } },
        "ExecuteResponse": { "type": "object", "required": ["output"],
            "properties": { "output": {} } },
        "DirectoryReport": { "type": "object", "required": ["loaded", "failed", "skipped"],
            "properties": {
            "loaded": strings,
            "failed": { "type": "array", "items": { "type": "object",
                "required": ["path", "name", "code", "error"], "properties": {
                "path": { "type": "string" }, "name": { "type": ["string", "null"] },
                "code": { "type": "string" }, "error": { "type": "string" } } } },
            "skipped": { "type": "array", "items": { "type": "object",
                "required": ["path", "name", "because"], "properties": {
                "path": { "type": "string" }, "name": { "type": "string" },
                "because": { "type": "string" } } } } } },
        "WatchStatus": { "type": "object", "required": ["dir", "files"], "properties": {
            "dir": { "type": ["string", "null"] },
            "files": { "type": "array", "items": { "type": "object",
                "required": ["path", "plugin", "status", "error", "code", "hash"], "properties": {
                "path": { "type": "string" }, "plugin": { "type": ["string", "null"] },
                "status": { "type": "string", "enum": ["loaded", "failed", "pending"] },
                "error": { "type": ["string", "null"] }, "code": { "type": ["string", "null"] },
                "hash": { "type": ["string", "null"] } } } } } },
        "EmitResponse": { "type": "object", "required": ["delivered"],
            "properties": { "delivered": counter } },
        "Health": { "type": "object", "required": ["status", "backends", "plugins"],
            "properties": {
            "status": { "type": "string", "enum": ["ok", "degraded"] },
            "backends": { "type": "object", "additionalProperties": { "type": "string" } },
            "plugins": { "type": "object", "required": ["active", "disabled", "failed"],
                "properties": { "active": counter, "disabled": counter, "failed": counter } },
            "uptime_seconds": counter } }
    });
    match schemas {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

/// Schemas of what the server accepts: unknown fields are refused (`deny_unknown_fields`),
/// names and paths follow the host's rules, and `null` stands for an absent optional field.
fn request_schemas() -> Map<String, Value> {
    let name = |pattern: &str| json!({ "type": "string", "pattern": pattern });
    let resource_list = nullable(json!({ "type": "array", "uniqueItems": true,
        "items": name(RESOURCE_NAME) }));
    let resource_map = json!({ "type": "object", "propertyNames": name(RESOURCE_NAME),
        "additionalProperties": name(RESOURCE_NAME) });
    let path = json!({ "type": "string", "minLength": 1, "pattern": ABSOLUTE_PATH });
    let schemas = json!({
        "Overrides": { "type": "object", "additionalProperties": false, "properties": {
            "tables": resource_list, "topics": resource_list, "buckets": resource_list,
            "table_map": resource_map, "topic_map": resource_map, "bucket_map": resource_map } },
        "LoadRequest": { "type": "object", "required": ["path"], "additionalProperties": false,
            "properties": { "path": path, "overrides": nullable(schema_ref("Overrides")),
                            "config": {},
                            "threads": { "type": ["integer", "null"], "minimum": 1,
                                         "maximum": 64 } } },
        "PathRequest": { "type": "object", "required": ["path"], "additionalProperties": false,
            "properties": { "path": path } },
        "EmitRequest": { "type": "object", "required": ["name"], "additionalProperties": false,
            "properties": { "name": { "type": "string", "maxLength": 256,
                                      "pattern": EVENT_NAME },
                            "payload": {} } }
    });
    match schemas {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

fn parameters(route: &Route) -> Vec<Value> {
    let mut params = Vec::new();
    if route.path.contains("{name}") {
        params.push(json!({ "name": "name", "in": "path", "required": true,
            "description": "A plugin name",
            "schema": { "type": "string", "pattern": PLUGIN_NAME } }));
    }
    if route.path.contains("{function}") {
        params.push(json!({ "name": "function", "in": "path", "required": true,
            "description": "A function the plugin declares",
            "schema": { "type": "string", "pattern": PLUGIN_NAME } }));
    }
    if route.path.contains("{kind}") {
        params.push(json!({ "name": "kind", "in": "path", "required": true,
            "description": "A job kind the plugin declares",
            "schema": { "type": "string", "pattern": PLUGIN_NAME } }));
    }
    if route.path.contains("{schedule}") {
        params.push(json!({ "name": "schedule", "in": "path", "required": true,
            "description": "A schedule the plugin declares",
            "schema": { "type": "string", "pattern": PLUGIN_NAME } }));
    }
    if route.path.contains("{id}") {
        params.push(json!({ "name": "id", "in": "path", "required": true,
            "description": "A job id",
            "schema": { "type": "integer", "minimum": 1, "maximum": i64::MAX } }));
    }
    if route.path.contains("{token}") {
        params.push(json!({ "name": "token", "in": "path", "required": true,
            "schema": { "type": "string", "minLength": 1 } }));
    }
    for (name, ty, description) in route.query {
        let schema = if ty.starts_with('{') {
            serde_json::from_str(ty).unwrap_or_else(|_| json!({}))
        } else {
            json!({ "type": ty })
        };
        params.push(json!({ "name": name, "in": "query", "required": false,
            "description": description, "schema": schema }));
    }
    params
}

fn operation(route: &Route) -> Value {
    let answer = |description: &str, schema: &str| {
        json!({ "description": description, "content": { "application/json": {
            "schema": schema_ref(schema) } } })
    };
    let success = match route.ok {
        Success::Json(status, schema) => (status, answer("success", schema)),
        Success::Media(status, media) => (
            status,
            json!({ "description": "success", "content": { media: {
                "schema": { "type": "string" } } } }),
        ),
        Success::CreatedOr(created, _) => (201, answer("created", created)),
    };
    let mut responses = Map::new();
    responses.insert(success.0.to_string(), success.1.clone());
    if let Success::CreatedOr(_, unchanged) = route.ok {
        responses.insert("200".into(), answer("nothing created", unchanged));
    }
    if route.path == "/health" {
        responses.insert("503".into(), success.1);
    }
    responses.insert(
        "default".into(),
        json!({ "description": "error", "content": { "application/json": {
            "schema": schema_ref("Error") } } }),
    );
    let mut op = json!({
        "summary": route.summary,
        "operationId": format!("{}{}", route.verb.as_str(),
            route.path.replace(['/', '{', '}', '.'], "_")),
        "responses": responses,
    });
    let params = parameters(route);
    if !params.is_empty() {
        op["parameters"] = Value::Array(params);
    }
    let body = match route.body {
        Body::None => None,
        Body::Required(schema) => Some((true, schema)),
        Body::Optional(schema) => Some((false, schema)),
    };
    if let Some((required, schema)) = body {
        op["requestBody"] = json!({ "required": required,
            "content": { "application/json": { "schema": schema_ref(schema) } } });
    }
    if route.auth {
        op["security"] = json!([{ "bearer": [] }]);
    }
    op
}

/// The paths of the loaded plugins' functions whose input schema the manifest declares, one per
/// function, with the request and response schemas declared (any JSON for an undeclared
/// output). A function without an input schema is reached through the generic
/// `/call/{function}` route: what its typed input accepts is known only to the plugin, so no
/// path promises more. The body is required unless the input schema accepts `null` (what a
/// call without a body sends).
fn function_paths(plugins: &[PluginInfo], paths: &mut Map<String, Value>) {
    for p in plugins {
        for f in &p.functions {
            let Some(input) = f.input_schema.clone() else {
                continue;
            };
            let accepts_null = jsonschema::validator_for(&input)
                .map(|v| v.is_valid(&Value::Null))
                .unwrap_or(true);
            let path = format!("/api/v1/plugins/{}/call/{}", p.name, f.name);
            let output = f.output_schema.clone().unwrap_or_else(|| json!({}));
            let summary = if f.summary.is_empty() {
                format!("`{}` of plugin `{}`", f.name, p.name)
            } else {
                f.summary.clone()
            };
            let op = json!({
                "summary": summary,
                "operationId": format!("call_{}_{}", p.name, f.name).replace(['-', '.'], "_"),
                "tags": [p.name],
                "security": [{ "bearer": [] }],
                "requestBody": { "required": !accepts_null,
                    "content": { "application/json": { "schema": input } } },
                "responses": {
                    "200": { "description": "success", "content": { "application/json": {
                        "schema": { "type": "object", "required": ["output"],
                                    "properties": { "output": output } } } } },
                    "default": { "description": "error", "content": { "application/json": {
                        "schema": schema_ref("Error") } } }
                }
            });
            paths.insert(path, json!({ "post": op }));
        }
    }
}

/// The OpenAPI 3.1 document: the route table, plus one path per function of each loaded
/// plugin (tagged with the plugin's name).
pub(crate) fn document(plugins: &[PluginInfo]) -> Value {
    let mut paths = Map::new();
    for route in ROUTES {
        let entry = paths
            .entry(route.path.to_owned())
            .or_insert_with(|| json!({}));
        entry[route.verb.as_str()] = operation(route);
    }
    function_paths(plugins, &mut paths);
    let mut schemas = response_schemas();
    schemas.extend(request_schemas());
    schemas.extend(jobs::schemas());
    json!({
        "openapi": "3.1.0",
        "info": { "title": "plugin-host admin API", "version": env!("CARGO_PKG_VERSION") },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": { "bearer": { "type": "http", "scheme": "bearer" } }
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn document_lists_every_route_once() {
        let doc = document(&[]);
        let mut count = 0;
        for (_, methods) in doc["paths"].as_object().unwrap() {
            count += methods.as_object().unwrap().len();
        }
        assert_eq!(
            count,
            ROUTES.len(),
            "a (method, path) is in the table twice"
        );
        assert_eq!(doc["openapi"], "3.1.0");
        assert_eq!(
            doc["paths"]["/api/v1/plugins/{name}"]["delete"]["parameters"][1]["name"],
            "cascade"
        );
    }

    #[test]
    fn every_reference_resolves() {
        fn refs(v: &Value, out: &mut Vec<String>) {
            match v {
                Value::Object(m) => {
                    if let Some(Value::String(r)) = m.get("$ref") {
                        out.push(r.clone());
                    }
                    m.values().for_each(|v| refs(v, out));
                }
                Value::Array(a) => a.iter().for_each(|v| refs(v, out)),
                _ => {}
            }
        }
        let doc = document(&[]);
        let mut found = Vec::new();
        refs(&doc, &mut found);
        assert!(!found.is_empty());
        for r in found {
            let name = r.trim_start_matches("#/components/schemas/");
            assert!(
                doc["components"]["schemas"][name].is_object(),
                "{r} does not resolve"
            );
        }
    }

    #[test]
    fn token_routes_are_under_the_api_prefix() {
        for route in ROUTES.iter().filter(|r| r.auth) {
            assert!(route.path.starts_with("/api/v1/"), "{}", route.path);
        }
    }
}
