//! The admin HTTP API (axum): the routes of shared/API.md under `/api/v1`, `/health`,
//! `/metrics`, the OpenAPI document, and presigned bucket links (`/presigned/{token}`, whose
//! token is its own credential). Mutating and reading plugin routes need the bearer token when
//! one is configured. Errors use one body, mapped once in `error.rs`.

mod error;
#[cfg(test)]
mod error_doc;
mod metrics;

pub use error::ApiCode;
pub(crate) mod openapi;
mod routes;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};

pub(crate) use metrics::render_metrics;
pub(crate) use routes::{Shared, StreamItem};

/// Builds the admin API router.
pub(crate) fn router(shared: Arc<Shared>) -> Router {
    let limit = shared.body_limit;
    let api = Router::new()
        .route("/plugins", get(routes::list).post(routes::load))
        .route("/plugins/{name}", get(routes::show).delete(routes::unload))
        .route("/plugins/{name}/reload", post(routes::reload))
        .route("/plugins/{name}/enable", post(routes::enable))
        .route("/plugins/{name}/disable", post(routes::disable))
        .route("/plugins/{name}/execute", post(routes::execute))
        .route(
            "/plugins/{name}/overrides",
            get(routes::get_overrides)
                .put(routes::put_overrides)
                .delete(routes::delete_overrides),
        )
        .route(
            "/plugins/{name}/config",
            get(routes::get_config)
                .put(routes::put_config)
                .delete(routes::delete_config),
        )
        .route("/directory/load", post(routes::load_directory))
        .route("/watch", get(routes::watch))
        .route("/events", post(routes::emit))
        .route("/events/stream", get(routes::stream))
        .method_not_allowed_fallback(routes::method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&shared),
            routes::auth,
        ));
    Router::new()
        .route("/health", get(routes::health))
        .route("/metrics", get(routes::metrics))
        .route("/api/v1/openapi.json", get(routes::openapi))
        // No bearer token: the signed token in the path is the credential.
        .route("/presigned/{token}", get(routes::presigned))
        .nest("/api/v1", api)
        .fallback(routes::not_found)
        .method_not_allowed_fallback(routes::method_not_allowed)
        .layer(DefaultBodyLimit::max(limit))
        // Outermost: whatever answered an error, the body is the API's JSON error.
        .layer(axum::middleware::from_fn(error::json_errors))
        .with_state(shared)
}
