//! The application listener (`[app] listen`): where plugins serve their HTTP routes, apart from
//! the admin API. It answers `GET /health`, `GET /openapi.json` (every active plugin's routes,
//! built per request from the manager's list, so always current) and
//! `/plugins/{name}/<path>`, dispatched to the plugin's handler function (see `dispatch.rs`).
//! Errors use the admin API's JSON body.

mod dispatch;
mod listener;
mod openapi;

pub(crate) use listener::serve;

use std::sync::Arc;

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
