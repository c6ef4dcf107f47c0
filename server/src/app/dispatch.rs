//! `/plugins/{name}/<path>`: a request to a plugin's route. In order: the plugin (404 when
//! unknown, 503 with `Retry-After` when disabled or not active), the route (404 when no route
//! has the path, 405 with `Allow` when only other methods do), the auth policy (401; 503 when
//! the auth plugin cannot answer), the body
//! limit (413), the body as JSON (400) and its schema (400 `invalid_input`); then the handler
//! function runs through the manager (504 on timeout, 500 when it fails or panics) and its
//! [`HttpResponse`] is answered (500 for a status outside 200..=599; hop-by-hop headers and
//! `content-length` dropped), or, for an event-stream answer, handed to `stream.rs`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use plugin_api::{HttpRequest, HttpResponse};
use plugin_host::{Error, PluginRoutes, PluginState, RouteAuth, RouteMatch};

use super::metrics::{Pending, Trace};
use super::{App, stream};
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

/// Serves the request, then records it in the metrics and the access log: every answer
/// counts, refusals included (measured to the response head; a body still streaming is not).
async fn run(app: Arc<App>, name: String, rest: String, req: Request) -> Response {
    let mut pending = Pending::new(&app.metrics, &name, &req);
    let response = match serve_route(&app, &name, &rest, req, pending.trace()).await {
        Ok(response) => response,
        Err(refused) => *refused,
    };
    pending.answered(response.status());
    response
}

/// A refusal: an error response, boxed (it is large and travels in `Err`).
pub(super) type Refused = Box<Response>;

/// An error answered with the admin API's JSON body, with its status replaced.
pub(super) fn refuse(error: ApiError, status: Option<StatusCode>) -> Refused {
    let mut response = error.into_response();
    if let Some(status) = status {
        *response.status_mut() = status;
    }
    Box::new(response)
}

/// A library error as the application listener answers it.
fn host_error(error: Error) -> Refused {
    let status = match &error {
        // The last: a reload landed between the route's look-up and the call, and the new
        // instance has no such function (its routes changed): the client's retry meets the new
        // route table.
        Error::Disabled { .. } | Error::NotActive { .. } | Error::FunctionNotFound { .. } => {
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
fn active_routes(app: &App, name: &str, trace: &Trace) -> Result<PluginRoutes, Refused> {
    let plugin = app.manager.routes(name).map_err(host_error)?;
    trace.found();
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

async fn serve_route(
    app: &App,
    name: &str,
    rest: &str,
    req: Request,
    trace: &Trace,
) -> Result<Response, Refused> {
    let plugin = active_routes(app, name, trace)?;
    let method = req.method().clone();
    let (route, raw_params) = match plugin.table.find(method.as_str(), rest) {
        RouteMatch::Found(route, params) => {
            trace.matched(route);
            (route, params)
        }
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
        params.insert(key, plugin_host::percent_decode(raw).map_err(bad_request)?);
    }
    let identity = match &route.auth {
        RouteAuth::Public => None,
        RouteAuth::Token => {
            check_token(app.token.as_deref(), req.headers())?;
            None
        }
        RouteAuth::Plugin(auth) => {
            let limit = route.timeout_ms.map(Duration::from_millis);
            let asked = (method.as_str(), rest);
            Some(authenticate(app, auth, asked, req.headers(), limit).await?)
        }
    };
    trace.identified(identity.as_ref());
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
    let bytes = read_body(req.into_body(), limit, app.body_timeout).await?;
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
    let (target, function) = (name.to_owned(), route.function.clone());
    let limit = route.timeout_ms.map(Duration::from_millis);
    let output = tokio::task::spawn_blocking(move || {
        manager.call_bytes_within(&target, &function, input, limit)
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
    if !answer.stream.is_empty() {
        return stream::answer(app, name, plugin.generation, route, answer);
    }
    response(name, &route.function, answer)
}

/// The body, at most `limit` bytes (413 beyond), arriving within `timeout` (408
/// `body_timeout`: a client that trickles its body does not hold a connection for ever).
async fn read_body(
    body: Body,
    limit: u64,
    timeout: Duration,
) -> Result<axum::body::Bytes, Refused> {
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    match tokio::time::timeout(timeout, axum::body::to_bytes(body, limit)).await {
        Ok(Ok(bytes)) => Ok(bytes),
        Ok(Err(_)) => Err(refuse(ApiError::PayloadTooLarge { limit }, None)),
        Err(_) => {
            let mut r = refuse(ApiError::BodyTimeout { after: timeout }, None);
            // The rest of the body may still be on its way: the connection cannot be reused.
            r.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            Err(r)
        }
    }
}

fn bad_request(message: String) -> Refused {
    refuse(Error::BadRequest { message }.into(), None)
}

pub(super) fn internal(message: String) -> Refused {
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
/// answer `{"identity": <any JSON>}`, within the route's time limit (`limit`; none: the execute
/// timeout). A plugin error (any code, `unauthorized` by convention)
/// is 401; any other failure (not active, timeout, panic, a malformed answer) is 503
/// `auth_unavailable` with `Retry-After`.
async fn authenticate(
    app: &App,
    auth: &str,
    (method, path): (&str, &str),
    headers: &HeaderMap,
    limit: Option<Duration>,
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
        let mut r = refuse(
            ApiError::AuthUnavailable {
                plugin: auth.to_owned(),
                message,
            },
            None,
        );
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        r
    };
    let output = tokio::task::spawn_blocking(move || {
        manager.call_bytes_within(&plugin, "authenticate", input, limit)
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
        Err(e) => return Err(unavailable(e.to_string())),
    };
    let answer: serde_json::Value = serde_json::from_slice(&output)
        .map_err(|e| unavailable(format!("its answer is not JSON: {e}")))?;
    match answer {
        serde_json::Value::Object(mut m) => match m.remove("identity") {
            // `null` is no identity: the handler would see none, as on a public route.
            Some(identity) if !identity.is_null() => Ok(identity),
            _ => Err(unavailable("its answer has no `identity`".to_owned())),
        },
        _ => Err(unavailable("its answer has no `identity`".to_owned())),
    }
}

/// Request headers the handler never sees: the credentials the host checks
/// (`authorization`, `proxy-authorization`) and the hop-by-hop ones, which describe the client's
/// connection to this server, not the request.
const HIDDEN: [&str; 8] = [
    "authorization",
    "proxy-authorization",
    "connection",
    "keep-alive",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// The request's headers for the plugin: names in lower case, UTF-8 values only, none of
/// [`HIDDEN`].
fn request_headers(headers: &HeaderMap) -> BTreeMap<String, String> {
    headers
        .iter()
        .filter(|(n, _)| !HIDDEN.contains(&n.as_str()))
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

/// A handler's headers as HTTP, without the hop-by-hop ones and `content-length`.
pub(super) fn answer_headers(
    plugin: &str,
    function: &str,
    answer: &BTreeMap<String, String>,
) -> Result<HeaderMap, Refused> {
    let mut headers = HeaderMap::new();
    for (name, value) in answer {
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
    Ok(headers)
}

/// The handler's answer as HTTP.
fn response(plugin: &str, function: &str, answer: HttpResponse) -> Result<Response, Refused> {
    let status = StatusCode::from_u16(answer.status)
        .ok()
        .filter(|s| (200..=599).contains(&s.as_u16()))
        .ok_or_else(|| {
            internal(format!(
                "`{plugin}`'s function `{function}` answered status {}, outside 200..=599",
                answer.status
            ))
        })?;
    let mut headers = answer_headers(plugin, function, &answer.headers)?;
    let body = if matches!(status.as_u16(), 204 | 304) {
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
    r.extensions_mut().insert(crate::api::HandlerAnswer);
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

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
        for bad in [0, 99, 100, 101, 199, 600, 1000] {
            let e = response("p", "f", HttpResponse::status(bad)).unwrap_err();
            assert_eq!(e.status(), StatusCode::INTERNAL_SERVER_ERROR);
        }
        let bad_header = HttpResponse::status(200).header("x", "a\nb");
        assert!(response("p", "f", bad_header).is_err());
    }
}
