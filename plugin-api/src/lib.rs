//! `plugin-api`: everything a plugin for `plugin-host` is built against.
//!
//! A plugin is a `cdylib` crate that implements the safe [`Plugin`] trait and calls
//! [`export_plugin!`] once. It needs no `unsafe` and never sees an FFI type:
//!
//! ```ignore
//! #![forbid(unsafe_code)]
//! use plugin_api::{Context, Manifest, Plugin, Result};
//! use serde_json::{Value, json};
//!
//! #[derive(Default)]
//! struct Hello;
//!
//! impl Plugin for Hello {
//!     const MANIFEST: Manifest = Manifest::new("hello", env!("CARGO_PKG_VERSION"));
//!     fn execute(&mut self, _ctx: &Context, input: Value) -> Result<Value> {
//!         Ok(json!({ "greeting": format!("hello, {}", input["name"].as_str().unwrap_or("world")) }))
//!     }
//! }
//!
//! plugin_api::export_plugin!(Hello);
//! ```
//!
//! The binary contract (symbols, `#[repr(C)]` tables, ownership and threading rules) is
//! described in `docs/abi.md`. This crate depends only on `serde` and `serde_json`, so a plugin
//! builds in seconds.

#[allow(
    unsafe_code,
    reason = "the FFI boundary; the only unsafe module of this crate"
)]
mod abi;
mod buckets;
mod context;
#[doc(hidden)]
pub mod envelope;
mod error;
mod export;
mod manifest;
mod tables;
mod topics;
#[doc(hidden)]
pub mod wire;

pub use buckets::{Buckets, Object, Page};
pub use context::{Context, DependencyHandle, Event, Level, SubscriptionId};
pub use error::{Error, Result};
pub use manifest::{Dependency, Manifest, valid_name};
pub use tables::{Column, Filter, Query, SqlResult, Tables};
pub use topics::{MAX_PRODUCE_BATCH, Message, OutgoingRecord, Topics};

/// Re-exported so plugins and the host agree on one `serde_json`.
pub use serde_json;

/// The ABI as the host reads it. Not for plugin authors.
pub mod ffi {
    pub use crate::abi::{
        ABI_MAJOR, API_MINOR, ContextPtr, DECLARATION_SYMBOL, DeclarationHeader, ENTRY_SYMBOL,
        FreeFn, HostVTable, InstancePtr, MAGIC, PANIC_ABORT, PANIC_UNWIND, PluginVTable, RawBuf,
        RawResult, RawSlice, STATUS_ERROR, STATUS_OK, STATUS_PANIC, live_contexts,
    };
}

/// What `export_plugin!` expands to. Not a stable API.
#[doc(hidden)]
pub mod __private {
    pub use crate::abi::{Declaration, Glue, PluginVTable};
}

/// The trait a plugin implements. Every method runs on the plugin's own host-owned worker
/// thread, one call at a time, so `&mut self` is sound without locks.
///
/// A panic in any method is caught by the glue and reported to the host as `plugin_panicked`;
/// it never unwinds into the host.
pub trait Plugin: Default + Send + 'static {
    /// What the plugin declares; encoded into the library at compile time.
    const MANIFEST: Manifest;

    /// Called once after loading, before any other call. Subscribe to events here.
    ///
    /// # Errors
    /// Any error aborts the load; the host rolls everything back.
    fn initialize(&mut self, ctx: &Context) -> Result<()> {
        let _ = ctx;
        Ok(())
    }

    /// Handles one request: JSON in, JSON out.
    ///
    /// # Errors
    /// Returned to the caller as `plugin_failed` with this error's code and message.
    fn execute(&mut self, ctx: &Context, input: serde_json::Value) -> Result<serde_json::Value>;

    /// Called when the operator enables the plugin again after [`Plugin::disable`].
    ///
    /// # Errors
    /// The plugin stays disabled.
    fn enable(&mut self, ctx: &Context) -> Result<()> {
        let _ = ctx;
        Ok(())
    }

    /// Called when the operator disables the plugin; `execute` is not called while disabled.
    ///
    /// # Errors
    /// The plugin stays enabled.
    fn disable(&mut self, ctx: &Context) -> Result<()> {
        let _ = ctx;
        Ok(())
    }

    /// Called once before unloading. Release what the plugin holds.
    ///
    /// # Errors
    /// Reported; the unload goes on.
    fn cleanup(&mut self, ctx: &Context) -> Result<()> {
        let _ = ctx;
        Ok(())
    }
}
