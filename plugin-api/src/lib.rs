//! `plugin-api`: everything a plugin for `plugin-host` is built against.
//!
//! A plugin is a `cdylib` crate that implements the safe [`Plugin`] trait and calls
//! [`export_plugin!`] once. It needs no `unsafe` and never sees an FFI type:
//!
//! ```ignore
//! #![forbid(unsafe_code)]
//! use plugin_api::{Context, Function, Functions, Manifest, Plugin, Result};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Deserialize)]
//! struct Who { name: String }
//! #[derive(Serialize)]
//! struct Greeting { greeting: String }
//!
//! struct Hello;
//!
//! impl Plugin for Hello {
//!     const MANIFEST: Manifest = Manifest::new("hello", env!("CARGO_PKG_VERSION"))
//!         .functions(&[Function::new("greet").summary("greets someone by name")]);
//!     fn new(_ctx: &Context) -> Result<Self> { Ok(Hello) }
//!     fn functions(f: &mut Functions<Self>) { f.add("greet", Self::greet); }
//! }
//!
//! impl Hello {
//!     fn greet(&mut self, _ctx: &Context, who: Who) -> Result<Greeting> {
//!         plugin_api::log::info!("greeting {}", who.name);
//!         Ok(Greeting { greeting: format!("hello, {}", who.name) })
//!     }
//! }
//!
//! plugin_api::export_plugin!(Hello);
//! ```
//!
//! The binary contract (symbols, `#[repr(C)]` tables, ownership and threading rules) is
//! described in `docs/abi.md`. This crate depends only on `serde`, `serde_json` and `log`, so a plugin
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
mod functions;
pub mod http;
pub mod jobs;
mod logging;
mod manifest;
mod tables;
mod topics;
#[doc(hidden)]
pub mod wire;

pub use buckets::{Buckets, Object, Page};
pub use context::{Context, DependencyHandle, Event, Level, SubscriptionId};
pub use error::{Error, Result};
pub use functions::Functions;
pub use http::{Auth, HttpRequest, HttpResponse, Route};
pub use jobs::{Backoff, Job, Schedule};
pub use manifest::{Dependency, Function, Manifest, valid_name};
pub use tables::{Column, Filter, Query, SqlResult, Tables};
pub use topics::{MAX_PRODUCE_BATCH, Message, OutgoingRecord, Topics};

/// Re-exported so plugins and the host agree on one `serde_json`.
pub use serde_json;

/// The logging facade: `plugin_api::log::info!("...")` reaches the host's log with the plugin's
/// name, at the level the operator set (see [`Context::log`] for the explicit form).
pub use log;

/// The ABI as the host reads it. Not for plugin authors.
pub mod ffi {
    pub use crate::abi::{
        ABI_MAJOR, API_MINOR, ContextPtr, DECLARATION_SYMBOL, DeclarationHeader, ENTRY_SYMBOL,
        FLAG_CONCURRENT, FreeFn, HostVTable, InstancePtr, MAGIC, PANIC_ABORT, PANIC_UNWIND,
        PLUGIN_VTABLE_MIN_SIZE, PLUGIN_VTABLE_MINOR2_SIZE, PluginVTable, RawBuf, RawDelivery,
        RawResult, RawSlice, STATUS_ERROR, STATUS_OK, STATUS_PANIC, live_contexts,
    };
}

/// What `export_plugin!` expands to. Not a stable API.
#[doc(hidden)]
pub mod __private {
    pub use crate::abi::{Declaration, FLAG_CONCURRENT, Glue, PluginVTable};

    /// Compiles only for a `Sync` plugin type: `export_plugin!(Type, concurrent)` calls it.
    pub const fn assert_sync<T: Sync>() {}
}

/// The trait a plugin implements. Every `&mut self` method runs alone: in the default
/// (exclusive) mode every call runs on the plugin's own host-owned worker thread, one at a time;
/// a plugin exported with `export_plugin!(Type, concurrent)` (its type must be `Sync`) also runs
/// its `&self` functions ([`Functions::add_shared`]) several at once, on a pool of host threads.
///
/// A panic in any method is caught by the glue and reported to the host as `plugin_panicked`;
/// it never unwinds into the host.
pub trait Plugin: Sized + Send + 'static {
    /// What the plugin declares; encoded into the library at compile time.
    const MANIFEST: Manifest;

    /// Builds the plugin when it is loaded, before any other call. Read the config, resolve
    /// dependencies and subscribe to events here.
    ///
    /// # Errors
    /// Any error aborts the load; the host rolls everything back.
    fn new(ctx: &Context) -> Result<Self>;

    /// Registers the typed functions declared in [`Manifest::functions`] (the same names, each
    /// once, or the load fails with `function_mismatch`). None by default.
    fn functions(f: &mut Functions<Self>) {
        let _ = f;
    }

    /// The default function (`execute`): JSON in, JSON out. By default it fails with
    /// `no_default_function`, telling the caller to call a named function.
    ///
    /// # Errors
    /// Returned to the caller as `plugin_failed` with this error's code and message.
    fn execute(&mut self, ctx: &Context, input: serde_json::Value) -> Result<serde_json::Value> {
        let _ = (ctx, input);
        Err(Error::new(
            "no_default_function",
            format!(
                "`{}` has no default function; call one of its named functions",
                Self::MANIFEST.name
            ),
        ))
    }

    /// Called when the operator enables the plugin again after [`Plugin::disable`].
    ///
    /// # Errors
    /// The plugin stays disabled.
    fn enable(&mut self, ctx: &Context) -> Result<()> {
        let _ = ctx;
        Ok(())
    }

    /// Called when the operator disables the plugin; no function is called while disabled.
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
