//! The admin HTTP API (axum): the routes of shared/API.md under `/api/v1`, `/health`,
//! `/metrics`, the OpenAPI document, and presigned bucket links (`/presigned/{token}`, whose
//! token is its own credential). Mutating and reading plugin routes need the bearer token when
//! one is configured. Errors use one body, mapped once in `error.rs`.

mod error;
pub(crate) mod openapi;
mod routes;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};

pub(crate) use routes::{Shared, StreamItem};

use plugin_host::metrics::{Sample, family};
use plugin_host::{PluginManager, PluginState};

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
        .route("/plugins/{name}/call/{function}", post(routes::call))
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

/// `/metrics`: the manager's counters and histograms, plugins by state, and per-plugin call and
/// event counters.
pub(crate) fn render_metrics(manager: &PluginManager) -> String {
    let mut out = String::new();
    plugin_host::metrics::render(&mut out, manager.metrics());
    let list = manager.list();
    let states = [
        PluginState::Loading,
        PluginState::Active,
        PluginState::Disabled,
        PluginState::Stopping,
        PluginState::Failed,
    ];
    let by_state: Vec<Sample<'_>> = states
        .iter()
        .map(|s| Sample {
            labels: vec![("state", s.to_string())],
            value: list.iter().filter(|p| p.state == *s).count() as f64,
        })
        .collect();
    family(
        &mut out,
        "plugin_host_plugins",
        "gauge",
        "Plugins by state.",
        &by_state,
    );
    let per_plugin = |f: &dyn Fn(&plugin_host::PluginStats) -> u64| -> Vec<Sample<'_>> {
        list.iter()
            .map(|p| Sample {
                labels: vec![("plugin", p.name.clone())],
                value: f(&p.stats) as f64,
            })
            .collect()
    };
    family(
        &mut out,
        "plugin_host_execute_total",
        "counter",
        "Execute calls per plugin (dependency calls included).",
        &per_plugin(&|s| s.executes),
    );
    family(
        &mut out,
        "plugin_host_execute_errors_total",
        "counter",
        "Execute calls that failed, panicked or timed out, per plugin.",
        &per_plugin(&|s| s.execute_errors),
    );
    family(
        &mut out,
        "plugin_host_event_deliveries_total",
        "counter",
        "Events handled per plugin.",
        &per_plugin(&|s| s.events_delivered),
    );
    family(
        &mut out,
        "plugin_host_event_failures_total",
        "counter",
        "Event handlers that failed or panicked, per plugin.",
        &per_plugin(&|s| s.events_failed),
    );
    family(
        &mut out,
        "plugin_host_event_drops_total",
        "counter",
        "Events dropped because the plugin's mailbox stayed full.",
        &per_plugin(&|s| s.events_dropped),
    );
    family(
        &mut out,
        "plugin_host_resource_denials_total",
        "counter",
        "Resource accesses refused per plugin (by the host's check or by the backend).",
        &list
            .iter()
            .map(|p| Sample {
                labels: vec![("plugin", p.name.clone()), ("kind", "table".to_owned())],
                value: p.stats.tables_denied as f64,
            })
            .chain(list.iter().map(|p| Sample {
                labels: vec![("plugin", p.name.clone()), ("kind", "bucket".to_owned())],
                value: p.stats.buckets_denied as f64,
            }))
            .collect::<Vec<_>>(),
    );
    let bus = manager.bus().stats();
    family(
        &mut out,
        "plugin_host_bus_emitted_total",
        "counter",
        "Events emitted on the bus.",
        &[Sample {
            labels: vec![],
            value: bus.emitted as f64,
        }],
    );
    out
}
