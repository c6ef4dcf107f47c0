//! `/plugins/{name}/<path>`: a request to a plugin's route. In order: the plugin (404 when
//! unknown, 503 with `Retry-After` when disabled or not active), the route (404 when no route
//! has the path, 405 with `Allow` when only other methods do), the auth policy (401; 503 when
//! the auth plugin cannot answer), the body
//! limit (413), the body as JSON (400) and its schema (400 `invalid_input`); then the handler
//! function runs through the manager (504 on timeout, 500 when it fails or panics) and its
//! [`HttpResponse`] is answered (500 for a status outside 100..=599; hop-by-hop headers and
//! `content-length` dropped).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use plugin_api::{HttpRequest, HttpResponse};
use plugin_host::{Error, PluginRoutes, PluginState, RouteAuth, RouteMatch};

use super::App;
use crate::api::{ApiError, bearer_token, constant_time_eq};

/// Headers a plugin may not set: hop-by-hop ones, and `content-length` (the server sets it).
const DROPPED: [&str; 7] = [
    "connection",
    "keep-alive",
    "transfer-encoding",
    "upgrade",
    "te",
    "trailer",
    "content-length",
];

/// `/plugins/{name}`: the route `/` of the plugin.
pub(super) async fn dispatch_root(
    State(app): State<Arc<App>>,
    Path(name): Path<String>,
    req: Request,
) -> Response {
    run(app, name, "/".to_owned(), req).await
}

/// `/plugins/{name}/{*rest}`.
pub(super) async fn dispatch(
    State(app): State<Arc<App>>,
    Path((name, _)): Path<(String, String)>,
    req: Request,
) -> Response {
    // The raw path, not the decoded one: a parameter may hold an encoded `/`.
    let after = req
        .uri()
        .path()
        .strip_prefix("/plugins/")
        .unwrap_or_default();
    let rest = after.find('/').map_or("/", |i| &after[i..]).to_owned();
    run(app, name, rest, req).await
}

async fn run(app: Arc<App>, name: String, rest: String, req: Request) -> Response {
    match serve_route(&app, &name, &rest, req).await {
        Ok(response) => response,
        Err(refused) => *refused,
    }
}

/// A refusal: an error response, boxed (it is large and travels in `Err`).
type Refused = Box<Response>;

/// An error answered with the admin API's JSON body, with its status replaced.
fn refuse(error: ApiError, status: Option<StatusCode>) -> Refused {
    let mut response = error.into_response();
    if let Some(status) = status {
        *response.status_mut() = status;
    }
    Box::new(response)
}

/// A library error as the application listener answers it.
fn host_error(error: Error) -> Refused {
    let status = match &error {
        Error::Disabled { .. } | Error::NotActive { .. } => {
            let mut r = refuse(error.into(), Some(StatusCode::SERVICE_UNAVAILABLE));
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            return r;
        }
        // The handler failed or panicked: the user's request met a server error.
        Error::PluginFailed { .. } => Some(StatusCode::INTERNAL_SERVER_ERROR),
        _ => None,
    };
    refuse(error.into(), status)
}

/// `name`'s routes if it is active: 404 when unknown, 503 when disabled or not active. A
/// look-up in the manager's route table (a reference count), not a copy of the plugin object.
fn active_routes(app: &App, name: &str) -> Result<PluginRoutes, Refused> {
    let plugin = app.manager.routes(name).map_err(host_error)?;
    match plugin.state {
        PluginState::Active => Ok(plugin),
        PluginState::Disabled => Err(host_error(Error::Disabled {
            name: name.to_owned(),
        })),
        state => Err(host_error(Error::NotActive {
            name: name.to_owned(),
            state,
        })),
    }
}

async fn serve_route(app: &App, name: &str, rest: &str, req: Request) -> Result<Response, Refused> {
    let plugin = active_routes(app, name)?;
    let method = req.method().clone();
    let (route, raw_params) = match plugin.table.find(method.as_str(), rest) {
        RouteMatch::Found(route, params) => (route, params),
        RouteMatch::OtherMethods(methods) => {
            let mut r = refuse(
                ApiError::MethodNotAllowed {
                    method: method.to_string(),
                    path: req.uri().path().to_owned(),
                },
                None,
            );
            if let Ok(allow) = HeaderValue::from_str(&methods.join(", ")) {
                r.headers_mut().insert(header::ALLOW, allow);
            }
            return Err(r);
        }
        RouteMatch::None => {
            return Err(refuse(
                ApiError::RouteNotFound {
                    method: method.to_string(),
                    path: req.uri().path().to_owned(),
                },
                None,
            ));
        }
    };
    let mut params = BTreeMap::new();
    for (key, raw) in raw_params {
        params.insert(key, percent_decode(raw).map_err(bad_request)?);
    }
    let identity = match &route.auth {
        RouteAuth::Public => None,
        RouteAuth::Token => {
            check_token(app.token.as_deref(), req.headers())?;
            None
        }
        RouteAuth::Plugin(auth) => {
            Some(authenticate(app, auth, method.as_str(), rest, req.headers()).await?)
        }
    };
    let query = req
        .uri()
        .query()
        .map(|q| {
            axum::extract::Query::<BTreeMap<String, String>>::try_from_uri(req.uri())
                .map(|axum::extract::Query(m)| m)
                .map_err(|e| bad_request(format!("query `{q}`: {e}")))
        })
        .transpose()?
        .unwrap_or_default();
    let headers = request_headers(req.headers());
    let limit = route.body_limit.unwrap_or(app.body_limit);
    let bytes = axum::body::to_bytes(
        req.into_body(),
        usize::try_from(limit).unwrap_or(usize::MAX),
    )
    .await
    .map_err(|_| {
        refuse(
            ApiError::PayloadTooLarge {
                limit: usize::try_from(limit).unwrap_or(usize::MAX),
            },
            None,
        )
    })?;
    let body: serde_json::Value = if bytes.is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::from_slice(&bytes)
            .map_err(|e| bad_request(format!("the body is not JSON: {e}")))?
    };
    if let Some(schema) = &route.body_schema {
        let validator = app.validator(name, plugin.generation, route, schema);
        let errors = schema_errors(validator.as_ref().as_ref(), &body);
        if !errors.is_empty() {
            return Err(refuse(
                Error::InvalidInput {
                    plugin: name.to_owned(),
                    function: route.function.clone(),
                    errors,
                }
                .into(),
                None,
            ));
        }
    }
    let mut request = HttpRequest::default();
    request.method = method.to_string();
    request.path = rest.to_owned();
    request.params = params;
    request.query = query;
    request.headers = headers;
    request.body = body;
    request.identity = identity;
    let input = serde_json::to_vec(&request).map_err(|e| internal(e.to_string()))?;
    let manager = Arc::clone(&app.manager);
    let (plugin, function) = (name.to_owned(), route.function.clone());
    let limit = route.timeout_ms.map(Duration::from_millis);
    let output = tokio::task::spawn_blocking(move || {
        manager.call_bytes_within(&plugin, &function, input, limit)
    })
    .await
    .map_err(|e| internal(e.to_string()))?
    .map_err(host_error)?;
    let answer: HttpResponse = serde_json::from_slice(&output).map_err(|e| {
        internal(format!(
            "`{name}`'s function `{}` did not answer an HttpResponse: {e}",
            route.function
        ))
    })?;
    response(name, &route.function, answer)
}

fn bad_request(message: String) -> Refused {
    refuse(Error::BadRequest { message }.into(), None)
}

fn internal(message: String) -> Refused {
    refuse(Error::Internal { message }.into(), None)
}

/// Checks `Authorization: Bearer <app token>` (constant-time). No token configured: always 401.
fn check_token(token: Option<&str>, headers: &HeaderMap) -> Result<(), Refused> {
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer_token);
    let message = match (token, given) {
        (None, _) => "this route needs the application token and the host has none configured",
        (Some(_), None) => "missing bearer token",
        (Some(t), Some(g)) if !constant_time_eq(g.as_bytes(), t.as_bytes()) => "wrong bearer token",
        _ => return Ok(()),
    };
    Err(refuse(
        ApiError::Unauthorized {
            message: message.to_owned(),
        },
        None,
    ))
}

/// Asks plugin `auth`'s function `authenticate` who makes the request: its input is
/// `{"method", "path", "headers"}` with every UTF-8 header, `authorization` included, and its
/// answer `{"identity": <any JSON>}`. A plugin error (any code, `unauthorized` by convention)
/// is 401; any other failure (not active, timeout, panic, a malformed answer) is 503.
async fn authenticate(
    app: &App,
    auth: &str,
    method: &str,
    path: &str,
    headers: &HeaderMap,
) -> Result<serde_json::Value, Refused> {
    let all: BTreeMap<String, String> = headers
        .iter()
        .filter_map(|(n, v)| Some((n.as_str().to_owned(), v.to_str().ok()?.to_owned())))
        .collect();
    let input = serde_json::to_vec(&serde_json::json!({
        "method": method, "path": path, "headers": all,
    }))
    .map_err(|e| internal(e.to_string()))?;
    let manager = Arc::clone(&app.manager);
    let plugin = auth.to_owned();
    let unavailable = |message: String| {
        refuse(
            Error::Internal { message }.into(),
            Some(StatusCode::SERVICE_UNAVAILABLE),
        )
    };
    let output = tokio::task::spawn_blocking(move || {
        manager.call_bytes_within(&plugin, "authenticate", input, None)
    })
    .await
    .map_err(|e| internal(e.to_string()))?;
    let output = match output {
        Ok(output) => output,
        Err(Error::PluginFailed {
            message,
            panicked: false,
            ..
        }) => {
            return Err(refuse(
                ApiError::Unauthorized {
                    message: format!("refused by plugin `{auth}`: {message}"),
                },
                None,
            ));
        }
        Err(e) => {
            return Err(unavailable(format!(
                "the auth plugin `{auth}` could not answer: {e}"
            )));
        }
    };
    let answer: serde_json::Value = serde_json::from_slice(&output)
        .map_err(|e| unavailable(format!("the auth plugin `{auth}` answered no JSON: {e}")))?;
    match answer {
        serde_json::Value::Object(mut m) if m.contains_key("identity") => {
            Ok(m.remove("identity").unwrap_or_default())
        }
        _ => Err(unavailable(format!(
            "the auth plugin `{auth}` answered no `identity`"
        ))),
    }
}

/// The request's headers for the plugin: names in lower case, UTF-8 values only, never
/// `authorization`.
fn request_headers(headers: &HeaderMap) -> BTreeMap<String, String> {
    headers
        .iter()
        .filter(|(n, _)| *n != header::AUTHORIZATION)
        .filter_map(|(n, v)| Some((n.as_str().to_owned(), v.to_str().ok()?.to_owned())))
        .collect()
}

/// What the body schema rejects in `value`, as `/path: message`.
fn schema_errors(
    validator: Result<&jsonschema::Validator, &String>,
    value: &serde_json::Value,
) -> Vec<String> {
    match validator {
        Ok(v) => v
            .iter_errors(value)
            .map(|e| {
                let at = e.instance_path().to_string();
                format!("{}: {e}", if at.is_empty() { "/" } else { &at })
            })
            .collect(),
        // Checked when the plugin loaded; cannot fail here.
        Err(e) => vec![format!("/: the body schema does not compile: {e}")],
    }
}

/// Decodes `%XX` escapes (UTF-8).
fn percent_decode(raw: &str) -> Result<String, String> {
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

/// The handler's answer as HTTP.
fn response(plugin: &str, function: &str, answer: HttpResponse) -> Result<Response, Refused> {
    let status = StatusCode::from_u16(answer.status)
        .ok()
        .filter(|s| (100..=599).contains(&s.as_u16()))
        .ok_or_else(|| {
            internal(format!(
                "`{plugin}`'s function `{function}` answered status {}, outside 100..=599",
                answer.status
            ))
        })?;
    let mut headers = HeaderMap::new();
    for (name, value) in &answer.headers {
        let lower = name.to_ascii_lowercase();
        if DROPPED.contains(&lower.as_str()) || lower.starts_with("proxy-") {
            continue;
        }
        let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(lower.as_bytes()),
            HeaderValue::from_str(value),
        ) else {
            return Err(internal(format!(
                "`{plugin}`'s function `{function}` answered an invalid header `{name}`"
            )));
        };
        headers.insert(n, v);
    }
    let body = if matches!(status.as_u16(), 204 | 304) || status.is_informational() {
        Body::empty()
    } else {
        headers
            .entry(header::CONTENT_TYPE)
            .or_insert(HeaderValue::from_static("application/json"));
        Body::from(answer.body.to_string())
    };
    let mut r = Response::new(body);
    *r.status_mut() = status;
    *r.headers_mut() = headers;
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_decoding_refuses_bad_escapes() {
        assert_eq!(percent_decode("a%20b%2F").unwrap(), "a b/");
        assert!(percent_decode("a%2").is_err());
        assert!(percent_decode("a%zz").is_err());
        assert!(percent_decode("%ff").is_err());
    }

    #[test]
    fn answers_drop_hop_by_hop_headers_and_refuse_bad_statuses() {
        let answer = HttpResponse::ok(&1)
            .unwrap()
            .header("Connection", "close")
            .header("content-length", "99")
            .header("proxy-authenticate", "x")
            .header("x-kept", "yes");
        let r = response("p", "f", answer).unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers().get("x-kept").unwrap(), "yes");
        assert!(r.headers().get("connection").is_none());
        assert!(r.headers().get("proxy-authenticate").is_none());
        assert!(r.headers().get(header::CONTENT_LENGTH).is_none());
        for bad in [0, 99, 600, 1000] {
            let e = response("p", "f", HttpResponse::status(bad)).unwrap_err();
            assert_eq!(e.status(), StatusCode::INTERNAL_SERVER_ERROR);
        }
        let bad_header = HttpResponse::status(200).header("x", "a\nb");
        assert!(response("p", "f", bad_header).is_err());
    }
}
