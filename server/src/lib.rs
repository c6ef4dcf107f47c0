//! `plugin-host` as a server: the admin HTTP API (axum), the application listener where plugins
//! serve their routes, the command line (clap) and its HTTP
//! client (ureq), on top of the core library `plugin_host`, which has none of them. An embedder
//! that only loads plugins depends on the core; this crate is what the `plugin-host` binary is
//! made of.

mod api;
mod app;
pub mod cli;
mod server;

pub use api::ApiCode;
pub use server::serve;
