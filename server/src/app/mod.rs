//! The application listener (`[app] listen`): where plugins serve their HTTP routes, apart from
//! the admin API. It answers `GET /health`, `GET /openapi.json` (every active plugin's routes,
//! built per request from the manager's list, so always current) and
//! `/plugins/{name}/<path>`, dispatched to the plugin's handler function (see `dispatch.rs`),
//! each such request counted and logged (see `metrics.rs`), and whose answer may be a stream of
//! bus events (see `stream.rs`). Errors use the admin API's JSON body.

mod dispatch;
mod listener;
mod metrics;
mod openapi;
mod sse;
mod stream;

pub(crate) use listener::{Limits, serve};
pub(crate) use metrics::AppMetrics;
pub(crate) use stream::Streams;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::routing::{any, get};
use plugin_host::PluginManager;

/// What the application listener's handlers share.
#[derive(Debug)]
pub(crate) struct App {
    /// The plugins.
    pub(crate) manager: Arc<PluginManager>,
    /// The application token of `token` routes (`None`: those routes answer 401).
    pub(crate) token: Option<String>,
    /// The body limit of a route that declares none, in bytes.
    pub(crate) body_limit: u64,
    /// The time a request's body has to arrive once its head has (`[app] body_timeout_ms`).
    pub(crate) body_timeout: std::time::Duration,
    /// Compiled body schemas, by plugin, generation, method and path: compiled once per
    /// instance (a reload's new generation replaces its plugin's entries).
    pub(crate) validators: Mutex<HashMap<ValidatorKey, Compiled>>,
    /// Request counters and latencies by plugin and route (rendered by the admin `/metrics`).
    pub(crate) metrics: Arc<AppMetrics>,
    /// The open Server-Sent Event streams.
    pub(crate) streams: Arc<Streams>,
}

/// Which route's body schema: plugin, instance generation, method, path template.
type ValidatorKey = (String, u64, String, String);
/// A compiled body schema, or why it does not compile.
type Compiled = Arc<Result<jsonschema::Validator, String>>;

impl App {
    /// The compiled body schema of `route` of instance `generation` of `plugin`.
    fn validator(
        &self,
        plugin: &str,
        generation: u64,
        route: &plugin_host::RouteSpec,
        schema: &serde_json::Value,
    ) -> Compiled {
        let key = (
            plugin.to_owned(),
            generation,
            route.method.clone(),
            route.path.clone(),
        );
        let mut cache = self
            .validators
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(v) = cache.get(&key) {
            return Arc::clone(v);
        }
        cache.retain(|(p, g, _, _), _| p != plugin || *g == generation);
        let compiled = Arc::new(jsonschema::validator_for(schema).map_err(|e| e.to_string()));
        cache.insert(key, Arc::clone(&compiled));
        compiled
    }
}

/// The application listener's router.
pub(crate) fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/openapi.json", get(openapi_document))
        .route("/plugins/{name}", any(dispatch::dispatch_root))
        .route("/plugins/{name}/{*rest}", any(dispatch::dispatch))
        .fallback(crate::api::not_found)
        // Whatever answered an error (an extractor's rejection too), the body is the JSON error.
        .layer(axum::middleware::from_fn(crate::api::json_errors))
        .with_state(app)
}

async fn health() -> axum::Json<serde_json::Value> {
    axum::Json(serde_json::json!({ "status": "ok" }))
}

async fn openapi_document(State(app): State<Arc<App>>) -> axum::Json<serde_json::Value> {
    axum::Json(openapi::document(&app.manager.list()))
}
