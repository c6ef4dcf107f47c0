//! The OpenAPI 3 document of the admin API, generated from [`ROUTES`], the table of every
//! route the router serves. An end-to-end test requests every route of the table and checks that
//! the router answers it, and that every route of shared/API.md is in the table.

use plugin_host::PluginInfo;
use serde_json::{Map, Value, json};

/// One documented route.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RouteDoc {
    pub(crate) method: &'static str,
    /// Full path, with `{name}` parameters.
    pub(crate) path: &'static str,
    pub(crate) summary: &'static str,
    /// Whether it needs the bearer token (when one is configured).
    pub(crate) auth: bool,
    /// Request body schema, as a component name.
    pub(crate) body: Option<&'static str>,
    /// Success status and its response schema (component name, or a media type for text).
    pub(crate) ok: (u16, &'static str),
}

const fn r(
    method: &'static str,
    path: &'static str,
    summary: &'static str,
    auth: bool,
    body: Option<&'static str>,
    ok: (u16, &'static str),
) -> RouteDoc {
    RouteDoc {
        method,
        path,
        summary,
        auth,
        body,
        ok,
    }
}

/// Every route of the admin API.
pub(crate) const ROUTES: &[RouteDoc] = &[
    r(
        "get",
        "/health",
        "Liveness and backend status",
        false,
        None,
        (200, "Health"),
    ),
    r(
        "get",
        "/metrics",
        "Prometheus metrics",
        false,
        None,
        (200, "text/plain"),
    ),
    r(
        "get",
        "/api/v1/openapi.json",
        "This document",
        false,
        None,
        (200, "Any"),
    ),
    r(
        "get",
        "/presigned/{token}",
        "An object of a plugin's bucket, through a presigned link (the token is the credential)",
        false,
        None,
        (200, "application/octet-stream"),
    ),
    r(
        "get",
        "/api/v1/plugins",
        "List plugins in dependency order",
        true,
        None,
        (200, "PluginList"),
    ),
    r(
        "post",
        "/api/v1/plugins",
        "Load a plugin file",
        true,
        Some("LoadRequest"),
        (201, "Plugin"),
    ),
    r(
        "get",
        "/api/v1/plugins/{name}",
        "One plugin",
        true,
        None,
        (200, "Plugin"),
    ),
    r(
        "delete",
        "/api/v1/plugins/{name}",
        "Unload (query cascade=true unloads dependents first)",
        true,
        None,
        (200, "UnloadReport"),
    ),
    r(
        "post",
        "/api/v1/plugins/{name}/reload",
        "Atomic reload from the plugin's file",
        true,
        None,
        (200, "Plugin"),
    ),
    r(
        "post",
        "/api/v1/plugins/{name}/enable",
        "Enable a disabled plugin",
        true,
        None,
        (200, "Plugin"),
    ),
    r(
        "post",
        "/api/v1/plugins/{name}/disable",
        "Disable without unloading",
        true,
        None,
        (200, "Plugin"),
    ),
    r(
        "post",
        "/api/v1/plugins/{name}/execute",
        "Call the plugin with any JSON",
        true,
        Some("Any"),
        (200, "ExecuteResponse"),
    ),
    r(
        "post",
        "/api/v1/plugins/{name}/call/{function}",
        "Call one of the plugin's named functions (its input schema is checked first)",
        true,
        Some("Any"),
        (200, "ExecuteResponse"),
    ),
    r(
        "get",
        "/api/v1/plugins/{name}/overrides",
        "Read overrides",
        true,
        None,
        (200, "Overrides"),
    ),
    r(
        "put",
        "/api/v1/plugins/{name}/overrides",
        "Replace overrides (reloads atomically)",
        true,
        Some("Overrides"),
        (200, "Overrides"),
    ),
    r(
        "delete",
        "/api/v1/plugins/{name}/overrides",
        "Clear overrides (reloads atomically)",
        true,
        None,
        (200, "Overrides"),
    ),
    r(
        "get",
        "/api/v1/plugins/{name}/config",
        "Read the plugin's config",
        true,
        None,
        (200, "Any"),
    ),
    r(
        "put",
        "/api/v1/plugins/{name}/config",
        "Replace the config (validated, reloads atomically)",
        true,
        Some("Any"),
        (200, "Any"),
    ),
    r(
        "delete",
        "/api/v1/plugins/{name}/config",
        "Clear the config (reloads atomically)",
        true,
        None,
        (200, "Any"),
    ),
    r(
        "post",
        "/api/v1/directory/load",
        "Load every plugin in a folder",
        true,
        Some("PathRequest"),
        (200, "DirectoryReport"),
    ),
    r(
        "get",
        "/api/v1/watch",
        "The watched plugins folder and the state of each library file in it",
        true,
        None,
        (200, "WatchStatus"),
    ),
    r(
        "post",
        "/api/v1/events",
        "Emit an event as the operator",
        true,
        Some("EmitRequest"),
        (202, "EmitResponse"),
    ),
    r(
        "get",
        "/api/v1/events/stream",
        "Server-Sent Events of lifecycle and bus events",
        true,
        None,
        (200, "text/event-stream"),
    ),
];

fn schema_ref(name: &str) -> Value {
    if name == "Any" {
        json!({})
    } else {
        json!({ "$ref": format!("#/components/schemas/{name}") })
    }
}

fn components() -> Value {
    let string_list = json!({ "type": "array", "items": { "type": "string" } });
    let string_map = json!({ "type": "object", "additionalProperties": { "type": "string" } });
    let resources = json!({ "type": "object", "properties": {
        "tables": string_list, "topics": string_list, "buckets": string_list } });
    json!({
        "schemas": {
            "Error": { "type": "object", "required": ["error"], "properties": { "error": {
                "type": "object", "required": ["code", "message"],
                "properties": { "code": { "type": "string" }, "message": { "type": "string" },
                                "details": { "type": "object" } } } } },
            "Plugin": { "type": "object", "required": ["name", "version", "state", "generation"], "properties": {
                "name": { "type": "string" }, "version": { "type": "string" },
                "description": { "type": "string" },
                "state": { "type": "string", "enum": ["loading", "active", "disabled", "stopping", "failed", "unloaded", "retained"] },
                "api_version": { "type": "string" }, "path": { "type": "string" },
                "dependencies": string_list, "dependents": string_list,
                "functions": { "type": "array", "items": { "$ref": "#/components/schemas/Function" } },
                "resources": resources, "declared": resources,
                "overrides": { "$ref": "#/components/schemas/Overrides" }, "config": {},
                "loaded_at": { "type": "string", "format": "date-time" },
                "generation": { "type": "integer" }, "error": { "type": ["string", "null"] },
                "stats": { "type": "object" } } },
            "Function": { "type": "object", "required": ["name", "summary"], "properties": {
                "name": { "type": "string" }, "summary": { "type": "string" },
                "input_schema": { "nullable": true }, "output_schema": { "nullable": true } } },
            "PluginList": { "type": "array", "items": { "$ref": "#/components/schemas/Plugin" } },
            "LoadRequest": { "type": "object", "required": ["path"], "properties": {
                "path": { "type": "string" }, "overrides": { "$ref": "#/components/schemas/Overrides" },
                "config": {}, "threads": { "type": "integer", "minimum": 1, "maximum": 64 } } },
            "PathRequest": { "type": "object", "required": ["path"], "properties": { "path": { "type": "string" } } },
            "Overrides": { "type": "object", "properties": {
                "tables": string_list, "topics": string_list, "buckets": string_list,
                "table_map": string_map, "topic_map": string_map, "bucket_map": string_map } },
            "UnloadReport": { "type": "object", "properties": {
                "unloaded": string_list,
                "outcome": { "type": "object", "additionalProperties": { "type": "string", "enum": ["unmapped", "retained"] } } } },
            "ExecuteResponse": { "type": "object", "required": ["output"], "properties": { "output": {} } },
            "DirectoryReport": { "type": "object", "properties": {
                "loaded": string_list,
                "failed": { "type": "array", "items": { "type": "object", "properties": {
                    "path": { "type": "string" }, "name": { "type": ["string", "null"] },
                    "code": { "type": "string" }, "error": { "type": "string" } } } },
                "skipped": { "type": "array", "items": { "type": "object", "properties": {
                    "path": { "type": "string" }, "name": { "type": "string" }, "because": { "type": "string" } } } } } },
            "WatchStatus": { "type": "object", "required": ["dir", "files"], "properties": {
                "dir": { "type": ["string", "null"] },
                "files": { "type": "array", "items": { "type": "object", "required": ["path", "status"], "properties": {
                    "path": { "type": "string" }, "plugin": { "type": ["string", "null"] },
                    "status": { "type": "string", "enum": ["loaded", "failed", "pending"] },
                    "error": { "type": ["string", "null"] }, "code": { "type": ["string", "null"] },
                    "hash": { "type": ["string", "null"] } } } } } },
            "EmitRequest": { "type": "object", "required": ["name"], "properties": {
                "name": { "type": "string" }, "payload": {} } },
            "EmitResponse": { "type": "object", "properties": { "delivered": { "type": "integer" } } },
            "Health": { "type": "object", "properties": {
                "status": { "type": "string", "enum": ["ok", "degraded"] },
                "backends": { "type": "object" }, "plugins": { "type": "object" } } }
        },
        "securitySchemes": { "bearer": { "type": "http", "scheme": "bearer" } }
    })
}

/// The paths of the loaded plugins' functions, one per function, with the request and response
/// schemas their manifests declare (any JSON where none is declared).
fn function_paths(plugins: &[PluginInfo], paths: &mut Map<String, Value>) {
    for p in plugins {
        for f in &p.functions {
            let path = format!("/api/v1/plugins/{}/call/{}", p.name, f.name);
            let input = f.input_schema.clone().unwrap_or_else(|| json!({}));
            let output = f.output_schema.clone().unwrap_or_else(|| json!({}));
            let summary = if f.summary.is_empty() {
                format!("`{}` of plugin `{}`", f.name, p.name)
            } else {
                f.summary.clone()
            };
            let op = json!({
                "summary": summary,
                "operationId": format!("call_{}_{}", p.name, f.name).replace('-', "_"),
                "security": [{ "bearer": [] }],
                "requestBody": { "required": true, "content": { "application/json": { "schema": input } } },
                "responses": {
                    "200": { "description": "success", "content": { "application/json": { "schema": {
                        "type": "object", "required": ["output"], "properties": { "output": output } } } } },
                    "default": { "description": "error", "content": { "application/json": {
                        "schema": { "$ref": "#/components/schemas/Error" } } } }
                }
            });
            paths.insert(path, json!({ "post": op }));
        }
    }
}

/// The OpenAPI 3.0 document: the route table, plus one path per function of each loaded
/// plugin.
pub(crate) fn document(plugins: &[PluginInfo]) -> Value {
    let mut paths = Map::new();
    for route in ROUTES {
        let entry = paths
            .entry(route.path.to_owned())
            .or_insert_with(|| json!({}));
        let mut op = json!({
            "summary": route.summary,
            "operationId": format!("{}{}", route.method, route.path.replace(['/', '{', '}', '.'], "_")),
            "responses": {
                route.ok.0.to_string(): if route.ok.1.contains('/') {
                    json!({ "description": "success", "content": { route.ok.1: { "schema": { "type": "string" } } } })
                } else {
                    json!({ "description": "success", "content": { "application/json": { "schema": schema_ref(route.ok.1) } } })
                },
                "default": { "description": "error", "content": { "application/json": {
                    "schema": { "$ref": "#/components/schemas/Error" } } } }
            }
        });
        if route.path.contains("{name}") {
            op["parameters"] = json!([{ "name": "name", "in": "path", "required": true, "schema": { "type": "string" } }]);
        }
        if route.path.contains("{function}")
            && let Some(params) = op["parameters"].as_array_mut()
        {
            params.push(json!({ "name": "function", "in": "path", "required": true, "schema": { "type": "string" } }));
        }
        if route.path.contains("{token}") {
            op["parameters"] = json!([{ "name": "token", "in": "path", "required": true, "schema": { "type": "string" } }]);
        }
        if route.method == "delete"
            && route.path == "/api/v1/plugins/{name}"
            && let Some(params) = op["parameters"].as_array_mut()
        {
            params.push(json!({ "name": "cascade", "in": "query", "required": false, "schema": { "type": "boolean" } }));
        }
        if let Some(body) = route.body {
            op["requestBody"] = json!({ "required": true, "content": { "application/json": { "schema": schema_ref(body) } } });
        }
        if route.auth {
            op["security"] = json!([{ "bearer": [] }]);
        }
        entry[route.method] = op;
    }
    function_paths(plugins, &mut paths);
    json!({
        "openapi": "3.0.3",
        "info": { "title": "plugin-host admin API", "version": env!("CARGO_PKG_VERSION") },
        "paths": paths,
        "components": components(),
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
        assert_eq!(count, ROUTES.len());
        assert_eq!(doc["openapi"], "3.0.3");
        assert!(
            doc["paths"]["/api/v1/plugins/{name}"]["delete"]["parameters"][1]["name"] == "cascade"
        );
    }
}
