//! The application listener's OpenAPI 3.1 document: every active plugin's routes under
//! `/plugins/{name}/<path>`, tagged by plugin, with their path parameters, body and response
//! schemas and auth policy; a route that may stream bus events answers `text/event-stream`.

use serde_json::{Map, Value, json};

use plugin_host::{PluginInfo, PluginState, RouteAuth};

/// A route that may stream: its answer may be `text/event-stream` (events matching `patterns`,
/// listed in `x-event-patterns`), and 503 when the plugin has too many streams open.
fn streams(ok: &mut Value, responses: &mut Map<String, Value>, patterns: &[String]) {
    let events = json!({ "schema": { "type": "string",
        "description": "Server-Sent Events: `id`, `event` (the bus event name) and `data` \
                        (its JSON payload); a final `end` or `overflow` event" } });
    match ok.get_mut("content").and_then(Value::as_object_mut) {
        Some(content) => {
            content.insert("text/event-stream".into(), events);
        }
        None => ok["content"] = json!({ "text/event-stream": events }),
    }
    ok["x-event-patterns"] = json!(patterns);
    responses.insert(
        "503".into(),
        json!({ "description": "the plugin has too many event streams open" }),
    );
}

/// The document for `plugins` (only the active ones are listed).
pub(super) fn document(plugins: &[PluginInfo]) -> Value {
    let mut paths = Map::new();
    let mut tags = Vec::new();
    let mut schemes = Map::new();
    schemes.insert(
        "appToken".into(),
        json!({ "type": "http", "scheme": "bearer" }),
    );
    for p in plugins
        .iter()
        .filter(|p| p.state == PluginState::Active && !p.routes.is_empty())
    {
        tags.push(json!({ "name": p.name, "description": p.description }));
        for r in &p.routes {
            let path = if r.path == "/" {
                format!("/plugins/{}", p.name)
            } else {
                format!("/plugins/{}{}", p.name, r.path)
            };
            let mut op = Map::new();
            op.insert("tags".into(), json!([p.name]));
            op.insert(
                "operationId".into(),
                json!(format!(
                    "{}.{}.{}",
                    p.name,
                    r.method.to_lowercase(),
                    r.function
                )),
            );
            if !r.summary.is_empty() {
                op.insert("summary".into(), json!(r.summary));
            }
            let params: Vec<Value> = r
                .params()
                .into_iter()
                .map(|n| {
                    json!({ "name": n, "in": "path", "required": true,
                                 "schema": { "type": "string" } })
                })
                .collect();
            if !params.is_empty() {
                op.insert("parameters".into(), Value::Array(params));
            }
            if let Some(schema) = &r.body_schema {
                op.insert(
                    "requestBody".into(),
                    json!({ "required": true,
                            "content": { "application/json": { "schema": schema } } }),
                );
            }
            let mut ok = match &r.response_schema {
                Some(schema) => json!({ "description": "the handler's answer",
                    "content": { "application/json": { "schema": schema } } }),
                None => json!({ "description": "the handler's answer" }),
            };
            let mut responses = Map::new();
            if !r.streams.is_empty() {
                streams(&mut ok, &mut responses, &r.streams);
            }
            responses.insert("default".into(), ok);
            match &r.auth {
                RouteAuth::Public => {}
                RouteAuth::Token => {
                    op.insert("security".into(), json!([{ "appToken": [] }]));
                    responses.insert(
                        "401".into(),
                        json!({ "description": "missing or wrong application token" }),
                    );
                }
                RouteAuth::Plugin(auth) => {
                    let scheme = format!("plugin-{auth}");
                    op.insert("security".into(), json!([{ scheme.clone(): [] }]));
                    schemes.insert(
                        scheme,
                        json!({ "type": "http", "scheme": "bearer", "description": format!(
                            "credentials checked by plugin `{auth}`'s function `authenticate`") }),
                    );
                    responses.insert(
                        "401".into(),
                        json!({ "description": format!("refused by plugin `{auth}`") }),
                    );
                    responses.insert(
                        "503".into(),
                        json!({ "description": format!("plugin `{auth}` could not answer") }),
                    );
                }
            }
            op.insert("responses".into(), Value::Object(responses));
            let entry = paths
                .entry(path)
                .or_insert_with(|| Value::Object(Map::new()));
            if let Value::Object(methods) = entry {
                methods.insert(r.method.to_lowercase(), Value::Object(op));
            }
        }
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "plugin-host application routes",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "The routes of the active plugins, each under /plugins/{name}/.",
        },
        "tags": tags,
        "paths": paths,
        "components": { "securitySchemes": schemes },
    })
}
