//! The application listener's OpenAPI 3.1 document: every active plugin's routes under
//! `/plugins/{name}/<path>`, tagged by plugin, with their path parameters, body and response
//! schemas and auth policy; a route that may stream bus events answers `text/event-stream`.

use serde_json::{Map, Value, json};

use plugin_host::{PluginInfo, PluginState, RouteAuth};

/// A route that may stream: its answer may be `text/event-stream` (events matching `patterns`,
/// listed in `x-event-patterns`).
fn streams(ok: &mut Value, patterns: &[String]) {
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
            op.insert("responses".into(), Value::Object(responses(r)));
            match &r.auth {
                RouteAuth::Public => {}
                RouteAuth::Token => {
                    op.insert("security".into(), json!([{ "appToken": [] }]));
                }
                RouteAuth::Plugin(auth) => {
                    let scheme = format!("plugin-{auth}");
                    op.insert("security".into(), json!([{ scheme.clone(): [] }]));
                    schemes.insert(
                        scheme,
                        json!({ "type": "http", "scheme": "bearer", "description": format!(
                            "credentials checked by plugin `{auth}`'s function `authenticate`") }),
                    );
                }
            }
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
        "components": {
            "securitySchemes": schemes,
            "schemas": { "Error": error_schema() },
        },
    })
}

/// The JSON error body the host answers (the admin API's), which `HttpResponse::error` and
/// `not_found` also produce.
fn error_schema() -> Value {
    json!({ "type": "object", "required": ["error"], "properties": { "error": {
        "type": "object", "required": ["code", "message"],
        "properties": { "code": { "type": "string" }, "message": { "type": "string" },
                        "details": { "type": "object" } } } } })
}

/// A route's responses: the handler's success answer (`2XX`, with its declared schema), each
/// error the host itself may answer before or around the handler (with the JSON error body),
/// and `default` for any other answer of the handler.
fn responses(r: &plugin_host::RouteSpec) -> Map<String, Value> {
    let error = |description: String| {
        json!({ "description": description,
                "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } } })
    };
    let mut out = Map::new();
    let mut ok = match &r.response_schema {
        Some(schema) => json!({ "description": "the handler's answer",
            "content": { "application/json": { "schema": schema } } }),
        None => json!({ "description": "the handler's answer" }),
    };
    if !r.streams.is_empty() {
        streams(&mut ok, &r.streams);
    }
    out.insert("2XX".into(), ok);
    out.insert(
        "400".into(),
        error("a path parameter or the query that does not decode, a body that is not JSON or that its schema refuses (`bad_request`, `invalid_input` with the schema's errors)".into()),
    );
    match &r.auth {
        RouteAuth::Public => {}
        RouteAuth::Token => {
            out.insert(
                "401".into(),
                error("missing or wrong application token".into()),
            );
        }
        RouteAuth::Plugin(auth) => {
            out.insert("401".into(), error(format!("refused by plugin `{auth}`")));
        }
    }
    out.insert(
        "408".into(),
        error("the body did not arrive in time (`body_timeout`)".into()),
    );
    out.insert(
        "413".into(),
        error("the body exceeds the route's limit".into()),
    );
    out.insert(
        "500".into(),
        error(
            "the handler failed or panicked, or answered something that is not a valid response"
                .into(),
        ),
    );
    let unavailable = match &r.auth {
        RouteAuth::Plugin(auth) => format!(
            "the plugin is disabled, unloading or reloading (with `Retry-After`), or plugin `{auth}` could not answer"
        ),
        _ => "the plugin is disabled, unloading or reloading (with `Retry-After`)".into(),
    };
    let unavailable = if r.streams.is_empty() {
        unavailable
    } else {
        format!(
            "{unavailable}; or the plugin has `[app] max_streams` event streams open (`too_many_streams`)"
        )
    };
    out.insert("503".into(), error(unavailable));
    out.insert(
        "504".into(),
        error("the handler did not answer within the route's timeout".into()),
    );
    out.insert(
        "default".into(),
        json!({ "description": "any other answer of the handler" }),
    );
    out
}
