//! Handlers of the admin API (shared/API.md). Manager calls block (a load may wait for a
//! plugin's `initialize`), so they run on tokio's blocking pool, bounded by the request timeout.
//! That pool only waits there: plugin code runs on the plugins' own threads, and libraries are
//! closed on the manager's closer thread.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Json;
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, OriginalUri, Path, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::stream::Stream;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tokio::sync::broadcast;

use super::error::ApiError;
use plugin_host::Error;
use plugin_host::Overrides;
use plugin_host::Pattern;
use plugin_host::StateStore;
use plugin_host::{CommitGate, PluginManager, PluginSettings, PluginState};

/// One bus event as streamed to SSE clients.
#[derive(Debug)]
pub(crate) struct StreamItem {
    pub(crate) name: String,
    pub(crate) data: String,
}

/// What every handler shares.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) manager: Arc<PluginManager>,
    pub(crate) store: Option<Arc<StateStore>>,
    /// The watched folder's state, when `plugins.watch` is on.
    pub(crate) watch: Option<Arc<plugin_host::WatchBoard>>,
    pub(crate) token: Option<String>,
    pub(crate) events: broadcast::Sender<Arc<StreamItem>>,
    pub(crate) request_timeout: Duration,
    pub(crate) body_limit: usize,
    pub(crate) started: Instant,
    /// The application listener's metrics, when it runs (rendered by `/metrics`).
    pub(crate) app_metrics: Option<Arc<crate::app::AppMetrics>>,
}

pub(crate) type AppState = Arc<Shared>;
type ApiResult<T> = Result<T, ApiError>;

/// Runs a manager call on the blocking pool, within the request timeout.
///
/// The call runs under a [`CommitGate`]: at the deadline the handler abandons the gate, and a
/// lifecycle change that has not taken effect yet never will (the request is answered
/// `504 timeout` and nothing changed). If the change already took effect, the handler waits for
/// the call's result and answers with it instead: an error answer always means "nothing
/// changed".
pub(crate) async fn blocking<T: Send + 'static>(
    st: &AppState,
    f: impl FnOnce(&PluginManager) -> plugin_host::Result<T> + Send + 'static,
) -> ApiResult<T> {
    let manager = Arc::clone(&st.manager);
    let gate = Arc::new(CommitGate::new());
    let task_gate = Arc::clone(&gate);
    let mut task = tokio::task::spawn_blocking(move || manager.gated(&task_gate, f));
    let joined = match tokio::time::timeout(st.request_timeout, &mut task).await {
        Ok(joined) => joined,
        Err(_) if gate.abandon() => {
            return Err(ApiError::RequestTimeout {
                after: st.request_timeout,
            });
        }
        // Committed before the deadline: the change happened, report how it ended.
        Err(_) => task.await,
    };
    match joined {
        Ok(result) => result.map_err(ApiError::Host),
        Err(join) => Err(ApiError::Host(Error::Internal {
            message: format!("request task failed: {join}"),
        })),
    }
}

/// Persists the desired set after a change (a failure to persist is logged, not returned: the
/// change itself happened).
fn persist(st: &AppState) {
    if let Some(store) = &st.store
        && let Err(e) = store.save(&st.manager)
    {
        tracing::error!(target: "api", error = %e.chain(), "cannot persist the plugin set");
    }
}

/// A JSON object body whose rejections use the API's error body. Only an object is taken: serde
/// would also build a struct from an array of its fields, which no request schema allows.
pub(crate) struct ApiJson<T>(pub(crate) T);

impl<T: DeserializeOwned> FromRequest<AppState> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, st: &AppState) -> Result<Self, Self::Rejection> {
        let bytes = read_body(st, req).await?;
        let invalid = |e: serde_json::Error| {
            ApiError::Host(Error::BadRequest {
                message: format!("invalid JSON body: {e}"),
            })
        };
        let value: Value = serde_json::from_slice(&bytes).map_err(invalid)?;
        if !value.is_object() {
            return Err(ApiError::Host(Error::BadRequest {
                message: "the body must be a JSON object".into(),
            }));
        }
        T::deserialize(value).map(ApiJson).map_err(invalid)
    }
}

/// A path parameter whose rejections (a segment that is not UTF-8, a missing parameter) use
/// the API's error body.
pub(crate) struct ApiPath<T>(pub(crate) T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(v)| ApiPath(v))
            .map_err(|e| {
                ApiError::Host(Error::BadRequest {
                    message: e.body_text(),
                })
            })
    }
}

/// A query string whose rejections use the API's error body.
pub(crate) struct ApiQuery<T>(pub(crate) T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(v)| ApiQuery(v))
            .map_err(|e| {
                ApiError::Host(Error::BadRequest {
                    message: e.body_text(),
                })
            })
    }
}

/// Bytes of a too-large body read and thrown away before the 413 is sent (nginx's "lingering
/// close"): a client still sending when the server closes would get a reset instead of the
/// answer (EPIPE on its write, or the 413 lost from its receive buffer). A body larger than the
/// limit plus this is cut off, at most this many bytes read for nothing.
const LINGER_BYTES: usize = 256 * 1024;

/// Reads a request body up to the configured limit: `payload_too_large` past it (after reading
/// up to [`LINGER_BYTES`] more, so that the client reads the answer).
async fn read_body(st: &AppState, req: Request) -> ApiResult<Bytes> {
    use futures_util::StreamExt as _;
    let limit = st.body_limit;
    let too_large = ApiError::PayloadTooLarge { limit };
    let announced = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    let mut body = req.into_body().into_data_stream();
    let bad = |e: axum::Error| {
        ApiError::Host(Error::BadRequest {
            message: format!("cannot read the request body: {e}"),
        })
    };
    let mut buf = Vec::with_capacity(announced.unwrap_or(0).min(limit));
    let mut over = announced.is_some_and(|n| n > limit);
    let mut read = 0usize;
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(bad)?;
        read += chunk.len();
        if over || buf.len() + chunk.len() > limit {
            over = true;
            if read > limit.saturating_add(LINGER_BYTES) {
                break;
            }
            continue;
        }
        buf.extend_from_slice(&chunk);
    }
    if over {
        return Err(too_large);
    }
    Ok(Bytes::from(buf))
}

/// Whether a route takes a request without a body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EmptyBody {
    /// An empty body is JSON `null`.
    IsNull,
    /// An empty body is refused with `bad_request`.
    Refused,
}

/// Any JSON body.
async fn any_json(st: &AppState, req: Request, empty: EmptyBody) -> ApiResult<Value> {
    let bytes = read_body(st, req).await?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return match empty {
            EmptyBody::IsNull => Ok(Value::Null),
            EmptyBody::Refused => Err(ApiError::Host(Error::BadRequest {
                message: "this route needs a JSON body".into(),
            })),
        };
    }
    serde_json::from_slice(&bytes).map_err(|e| {
        ApiError::Host(Error::BadRequest {
            message: format!("invalid JSON body: {e}"),
        })
    })
}

/// The token of an `Authorization: Bearer <token>` value. The scheme is case-insensitive
/// (RFC 9110, section 11.1): `bearer`, `BEARER` and `Bearer` are the same.
pub(crate) fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim_start().split_once(' ')?;
    let token = token.trim_matches(' ');
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// Compares in time independent of where the inputs differ.
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = u8::from(a.len() != b.len());
    for (i, x) in a.iter().enumerate() {
        diff |= x ^ b.get(i).copied().unwrap_or(0);
    }
    diff == 0
}

/// Requires `Authorization: Bearer <token>` on `/api/v1` when a token is configured.
pub(crate) async fn auth(State(st): State<AppState>, req: Request, next: Next) -> Response {
    if let Some(token) = &st.token {
        let given = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(bearer_token);
        let message = match given {
            None => Some("missing bearer token"),
            Some(t) if !constant_time_eq(t.as_bytes(), token.as_bytes()) => {
                Some("wrong bearer token")
            }
            Some(_) => None,
        };
        if let Some(message) = message {
            return ApiError::Unauthorized {
                message: message.into(),
            }
            .into_response();
        }
    }
    next.run(req).await
}

pub(crate) async fn not_found(method: Method, OriginalUri(uri): OriginalUri) -> ApiError {
    ApiError::RouteNotFound {
        method: method.to_string(),
        path: uri.path().to_owned(),
    }
}

pub(crate) async fn method_not_allowed(method: Method, OriginalUri(uri): OriginalUri) -> ApiError {
    ApiError::MethodNotAllowed {
        method: method.to_string(),
        path: uri.path().to_owned(),
    }
}

pub(crate) async fn health(State(st): State<AppState>) -> Response {
    let manager = Arc::clone(&st.manager);
    // Backend checks do I/O (a PostgreSQL round trip): off the async threads.
    let backends = tokio::task::spawn_blocking(move || manager.backend_status())
        .await
        .unwrap_or_default();
    let degraded = backends.iter().any(|(_, r)| r.is_err());
    let backends: serde_json::Map<String, Value> = backends
        .into_iter()
        .map(|(kind, r)| {
            let v = match r {
                Ok(()) => json!("ok"),
                Err(e) => json!(format!("error: {}", e.chain())),
            };
            (kind.to_owned(), v)
        })
        .collect();
    let list = st.manager.list();
    let count = |s: PluginState| list.iter().filter(|p| p.state == s).count();
    let body = Json(json!({
        "status": if degraded { "degraded" } else { "ok" },
        "backends": backends,
        "plugins": {
            "active": count(PluginState::Active),
            "disabled": count(PluginState::Disabled),
            "failed": count(PluginState::Failed),
        },
        "uptime_seconds": st.started.elapsed().as_secs(),
    }));
    let status = if degraded {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    (status, body).into_response()
}

pub(crate) async fn metrics(State(st): State<AppState>) -> Response {
    // The queue's gauges come from its store (I/O): read off the async threads. A store that
    // does not answer leaves them out; the rest of the scrape still answers.
    let jobs = match st.manager.jobs() {
        Ok(queue) => {
            let reader = Arc::clone(queue);
            let counts = match tokio::task::spawn_blocking(move || reader.counts()).await {
                Ok(Ok(counts)) => counts,
                Ok(Err(e)) => {
                    tracing::warn!(target: "api", error = %e.chain(), "cannot count the jobs for /metrics");
                    Vec::new()
                }
                Err(e) => {
                    tracing::warn!(target: "api", error = %e, "cannot count the jobs for /metrics");
                    Vec::new()
                }
            };
            Some((Arc::clone(queue), counts))
        }
        Err(_) => None,
    };
    let jobs = jobs.as_ref().map(|(q, c)| (q.metrics(), c.as_slice()));
    let text = super::render_metrics(&st.manager, st.app_metrics.as_deref(), jobs);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

pub(crate) async fn openapi(State(st): State<AppState>) -> ApiResult<Json<Value>> {
    let plugins = blocking(&st, |m| Ok(m.list())).await?;
    Ok(Json(super::openapi::document(&plugins)))
}

/// `GET /presigned/{token}`: the object a presigned link names, with its content type. No bearer
/// token: the signed token is the credential. Uploaded content is served from the API's origin,
/// so the browser is told not to sniff it and to sandbox it (no scripts with the API's origin).
pub(crate) async fn presigned(
    State(st): State<AppState>,
    ApiPath(token): ApiPath<String>,
) -> ApiResult<Response> {
    let (content_type, bytes) = blocking(&st, move |m| m.presigned_get(&token)).await?;
    let content_type = header::HeaderValue::from_str(&content_type).unwrap_or(
        header::HeaderValue::from_static(plugin_host::DEFAULT_CONTENT_TYPE),
    );
    Ok((
        [
            (header::CONTENT_TYPE, content_type),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                header::HeaderValue::from_static("nosniff"),
            ),
            (
                header::CONTENT_SECURITY_POLICY,
                header::HeaderValue::from_static("sandbox"),
            ),
            (
                header::CACHE_CONTROL,
                header::HeaderValue::from_static("private, no-store"),
            ),
        ],
        bytes,
    )
        .into_response())
}

pub(crate) async fn list(State(st): State<AppState>) -> ApiResult<Response> {
    let list = blocking(&st, |m| Ok(m.list())).await?;
    Ok(Json(list).into_response())
}

pub(crate) async fn show(
    State(st): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<Response> {
    let info = blocking(&st, move |m| m.get(&name)).await?;
    Ok(Json(info).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LoadBody {
    path: std::path::PathBuf,
    #[serde(default)]
    overrides: Option<Overrides>,
    #[serde(default)]
    config: Option<Value>,
    /// Pool size of a concurrent plugin.
    #[serde(default)]
    threads: Option<usize>,
}

/// A path from an API client: sound (no NUL, no over-long component) and absolute. The
/// server's working directory means nothing to a client (the CLI sends absolute paths).
fn client_path(path: &std::path::Path) -> ApiResult<()> {
    plugin_host::check_path(path)?;
    if !path.is_absolute() {
        return Err(ApiError::Host(Error::InvalidPath {
            path: path.to_owned(),
            reason: "the admin API takes absolute paths only (relative to what? the server's \
                     working directory is not the client's); `plugin-host plugins load` makes \
                     a relative path absolute against its own working directory"
                .into(),
        }));
    }
    Ok(())
}

pub(crate) async fn load(
    State(st): State<AppState>,
    ApiJson(body): ApiJson<LoadBody>,
) -> ApiResult<Response> {
    client_path(&body.path)?;
    let info = blocking(&st, move |m| {
        if body.overrides.is_none() && body.config.is_none() && body.threads.is_none() {
            m.load(&body.path)
        } else {
            let settings =
                PluginSettings::new(body.config, body.overrides).with_threads(body.threads);
            m.load_with(&body.path, settings)
        }
    })
    .await?;
    persist(&st);
    Ok((StatusCode::CREATED, Json(info)).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct UnloadQuery {
    #[serde(default)]
    cascade: bool,
}

pub(crate) async fn unload(
    State(st): State<AppState>,
    ApiPath(name): ApiPath<String>,
    ApiQuery(q): ApiQuery<UnloadQuery>,
) -> ApiResult<Response> {
    let report = blocking(&st, move |m| m.unload(&name, q.cascade)).await?;
    persist(&st);
    Ok(Json(report).into_response())
}

pub(crate) async fn reload(
    State(st): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<Response> {
    let info = blocking(&st, move |m| m.reload(&name)).await?;
    persist(&st);
    Ok(Json(info).into_response())
}

pub(crate) async fn enable(
    State(st): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<Response> {
    let info = blocking(&st, move |m| m.enable(&name)).await?;
    persist(&st);
    Ok(Json(info).into_response())
}

pub(crate) async fn disable(
    State(st): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<Response> {
    let info = blocking(&st, move |m| m.disable(&name)).await?;
    persist(&st);
    Ok(Json(info).into_response())
}

pub(crate) async fn execute(
    State(st): State<AppState>,
    ApiPath(name): ApiPath<String>,
    req: Request,
) -> ApiResult<Response> {
    run_call(&st, req, move |m, bytes| m.execute_bytes(&name, bytes)).await
}

/// `POST /api/v1/plugins/{name}/call/{function}`: a named function, with the body, limits,
/// envelope and errors of `execute`.
pub(crate) async fn call(
    State(st): State<AppState>,
    ApiPath((name, function)): ApiPath<(String, String)>,
    req: Request,
) -> ApiResult<Response> {
    run_call(&st, req, move |m, bytes| {
        m.call_bytes(&name, &function, bytes)
    })
    .await
}

/// Reads the JSON body, runs `f` on a blocking thread, answers `{"output": ...}`.
async fn run_call(
    st: &AppState,
    req: Request,
    f: impl FnOnce(&PluginManager, Vec<u8>) -> plugin_host::Result<Vec<u8>> + Send + 'static,
) -> ApiResult<Response> {
    let input = any_json(st, req, EmptyBody::IsNull).await?;
    let bytes = serde_json::to_vec(&input).map_err(|e| {
        ApiError::Host(Error::BadRequest {
            message: e.to_string(),
        })
    })?;
    let out = blocking(st, move |m| f(m, bytes)).await?;
    let output: Value = serde_json::from_slice(&out).map_err(|e| {
        ApiError::Host(Error::Internal {
            message: format!("plugin returned invalid JSON: {e}"),
        })
    })?;
    Ok(Json(json!({ "output": output })).into_response())
}

/// Settings of a plugin that is loaded or has stored settings; 404 otherwise.
fn settings_or_404(m: &PluginManager, name: &str) -> plugin_host::Result<PluginSettings> {
    stored_or_404(m, name, m.settings(name))
}

/// `stored`, or the defaults of a plugin that is loaded without settings; 404 otherwise.
fn stored_or_404(
    m: &PluginManager,
    name: &str,
    stored: Option<PluginSettings>,
) -> plugin_host::Result<PluginSettings> {
    match stored {
        Some(s) => Ok(s),
        None if m.get(name).is_ok() => Ok(PluginSettings::default()),
        None => Err(Error::NotFound {
            name: name.to_owned(),
        }),
    }
}

pub(crate) async fn get_overrides(
    State(st): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<Response> {
    let s = blocking(&st, move |m| settings_or_404(m, &name)).await?;
    Ok(Json(s.overrides.unwrap_or_default()).into_response())
}

pub(crate) async fn put_overrides(
    State(st): State<AppState>,
    ApiPath(name): ApiPath<String>,
    ApiJson(overrides): ApiJson<Overrides>,
) -> ApiResult<Response> {
    let saved = blocking(&st, move |m| {
        m.update_settings(&name, |s| {
            let mut s = s.unwrap_or_default();
            s.overrides = Some(overrides);
            Ok(Some(s))
        })
    })
    .await?;
    persist(&st);
    Ok(Json(saved.and_then(|s| s.overrides).unwrap_or_default()).into_response())
}

pub(crate) async fn delete_overrides(
    State(st): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<Response> {
    blocking(&st, move |m| {
        m.update_settings(&name, |s| {
            let mut s = stored_or_404(m, &name, s)?;
            s.overrides = None;
            Ok(s.config.is_some().then_some(s))
        })
    })
    .await?;
    persist(&st);
    Ok(Json(Overrides::default()).into_response())
}

pub(crate) async fn get_config(
    State(st): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<Response> {
    let s = blocking(&st, move |m| settings_or_404(m, &name)).await?;
    Ok(Json(s.config.unwrap_or(Value::Null)).into_response())
}

pub(crate) async fn put_config(
    State(st): State<AppState>,
    ApiPath(name): ApiPath<String>,
    req: Request,
) -> ApiResult<Response> {
    let config = any_json(&st, req, EmptyBody::Refused).await?;
    let saved = blocking(&st, move |m| {
        m.update_settings(&name, |s| {
            let mut s = s.unwrap_or_default();
            s.config = Some(config);
            Ok(Some(s))
        })
    })
    .await?;
    persist(&st);
    Ok(Json(saved.and_then(|s| s.config).unwrap_or(Value::Null)).into_response())
}

pub(crate) async fn delete_config(
    State(st): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<Response> {
    blocking(&st, move |m| {
        m.update_settings(&name, |s| {
            let mut s = stored_or_404(m, &name, s)?;
            s.config = None;
            Ok(s.overrides.is_some().then_some(s))
        })
    })
    .await?;
    persist(&st);
    Ok(Json(Value::Null).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PathBody {
    path: std::path::PathBuf,
}

pub(crate) async fn load_directory(
    State(st): State<AppState>,
    ApiJson(body): ApiJson<PathBody>,
) -> ApiResult<Response> {
    client_path(&body.path)?;
    let report = blocking(&st, move |m| m.load_dir(&body.path)).await?;
    persist(&st);
    Ok(Json(report).into_response())
}

/// `GET /api/v1/watch`: the watched folder and what became of each library file in it
/// (`{"dir": null, "files": []}` when the server does not watch one).
pub(crate) async fn watch(State(st): State<AppState>) -> Response {
    match &st.watch {
        Some(board) => Json(board.status()).into_response(),
        None => Json(json!({ "dir": null, "files": [] })).into_response(),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct EmitBody {
    name: String,
    #[serde(default)]
    payload: Value,
}

pub(crate) async fn emit(
    State(st): State<AppState>,
    ApiJson(body): ApiJson<EmitBody>,
) -> ApiResult<Response> {
    let payload = serde_json::to_vec(&body.payload).map_err(|e| {
        ApiError::Host(Error::BadRequest {
            message: e.to_string(),
        })
    })?;
    let delivered = blocking(&st, move |m| m.bus().emit_host(&body.name, &payload)).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({ "delivered": delivered })),
    )
        .into_response())
}

pub(crate) async fn stream(
    State(st): State<AppState>,
    ApiQuery(q): ApiQuery<HashMap<String, String>>,
    _headers: HeaderMap,
) -> ApiResult<Sse<impl Stream<Item = Result<Event, std::convert::Infallible>>>> {
    let pattern = match q.get("pattern") {
        Some(p) => Some(Pattern::parse(p).map_err(ApiError::Host)?),
        None => None,
    };
    let rx = st.events.subscribe();
    let stream = futures_util::stream::unfold((rx, pattern), |(mut rx, pattern)| async move {
        loop {
            match rx.recv().await {
                Ok(item) => {
                    if pattern.as_ref().is_some_and(|p| !p.matches(&item.name)) {
                        continue;
                    }
                    let event = Event::default()
                        .event(item.name.clone())
                        .data(item.data.clone());
                    return Some((Ok(event), (rx, pattern)));
                }
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    let event = Event::default()
                        .comment(format!("{n} events dropped: the client is too slow"));
                    return Some((Ok(event), (rx, pattern)));
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_time_eq_compares_fully() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
        assert!(!constant_time_eq(b"", b"a"));
        assert!(constant_time_eq(b"", b""));
    }

    #[test]
    fn bearer_scheme_is_case_insensitive() {
        assert_eq!(bearer_token("Bearer abc"), Some("abc"));
        assert_eq!(bearer_token("bearer abc"), Some("abc"));
        assert_eq!(bearer_token("BEARER  abc"), Some("abc"));
        assert_eq!(bearer_token("Basic abc"), None);
        assert_eq!(bearer_token("Bearer"), None);
        assert_eq!(bearer_token("Bearer "), None);
        assert_eq!(bearer_token("Bearerabc"), None);
    }
}
