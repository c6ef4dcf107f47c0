//! The admin HTTP API (axum): the routes of shared/API.md under `/api/v1`, `/health`,
//! `/metrics`, the OpenAPI document, and presigned bucket links (`/presigned/{token}`, whose
//! token is its own credential). Mutating and reading plugin routes need the bearer token when
//! one is configured. Errors use one body, mapped once in `error.rs`.

mod error;
#[cfg(test)]
mod error_doc;
mod jobs;
mod metrics;

pub use error::ApiCode;
pub(crate) use error::{ApiError, HandlerAnswer, json_errors};
pub(crate) mod openapi;
mod routes;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;

pub(crate) use metrics::render_metrics;
pub(crate) use routes::{Shared, StreamItem, bearer_token, constant_time_eq, not_found};

/// Builds the admin API router from the route table [`openapi::ROUTES`], the same table the
/// OpenAPI document is generated from: what is served is what is documented. Token routes live
/// under `/api/v1`, behind the bearer check (which also guards that prefix's unknown routes).
pub(crate) fn router(shared: Arc<Shared>) -> Router {
    let limit = shared.body_limit;
    let auth = axum::middleware::from_fn_with_state(Arc::clone(&shared), routes::auth);
    let mut api = Router::new();
    let mut open = Router::new();
    for route in openapi::ROUTES {
        let handler = (route.handler)(route.verb.filter());
        match route.path.strip_prefix("/api/v1") {
            Some(sub) if route.auth => api = api.route(sub, handler),
            // No token route is outside `/api/v1` (a unit test holds the table to it); should
            // one be added, it still gets the bearer check.
            None if route.auth => open = open.route(route.path, handler.route_layer(auth.clone())),
            _ => open = open.route(route.path, handler),
        }
    }
    let api = api
        .method_not_allowed_fallback(routes::method_not_allowed)
        .layer(auth);
    open.nest("/api/v1", api)
        .fallback(routes::not_found)
        .method_not_allowed_fallback(routes::method_not_allowed)
        .layer(DefaultBodyLimit::max(limit))
        // Outermost: whatever answered an error, the body is the API's JSON error.
        .layer(axum::middleware::from_fn(error::json_errors))
        .with_state(shared)
}
