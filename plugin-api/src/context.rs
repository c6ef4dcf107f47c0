//! The plugin's view of the host: logging, dependency handles, the event bus and host services.
//!
//! A [`Context`] is cheap to clone and may be kept by the plugin (for example inside an event
//! handler: the glue drops every handler when the instance is destroyed, so such a handler does
//! not keep itself alive). Every call goes through the host, which checks that the context is
//! still current: after the plugin is unloaded or reloaded, calls through an old context fail
//! with `stale_context` instead of reaching anything, also from a thread the plugin left
//! running (the host then keeps the library mapped, see docs/abi.md).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::Result;
use crate::abi::HostRef;
use crate::wire::{Op, Service};

/// Log levels for [`Context::log`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Level {
    /// Something failed.
    Error = 1,
    /// Something looks wrong.
    Warn = 2,
    /// Normal operation.
    Info = 3,
    /// Details for developers.
    Debug = 4,
    /// Very verbose details.
    Trace = 5,
}

/// An event delivered to a handler.
#[derive(Debug, Clone, Copy)]
pub struct Event<'a> {
    name: &'a str,
    payload: &'a [u8],
}

impl<'a> Event<'a> {
    /// The event's full name, for example `user:created`.
    pub fn name(&self) -> &'a str {
        self.name
    }

    /// The payload bytes (JSON unless it was emitted with [`Context::emit_raw`]).
    pub fn payload(&self) -> &'a [u8] {
        self.payload
    }

    /// Deserialises the JSON payload.
    ///
    /// # Errors
    /// `serialization` when the payload is not JSON of that shape.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T> {
        Ok(serde_json::from_slice(self.payload)?)
    }
}

/// Identifies one subscription, as returned by [`Context::on`] and [`Context::once`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SubscriptionId(pub u64);

pub(crate) type Handler = Box<dyn FnMut(&Event<'_>) -> Result<()> + Send>;

struct Registered {
    handler: Handler,
    once: bool,
}

pub(crate) struct ContextInner {
    host: HostRef,
    handlers: Mutex<HashMap<u64, Registered>>,
}

impl ContextInner {
    pub(crate) fn new(host: HostRef) -> Self {
        Self {
            host,
            handlers: Mutex::new(HashMap::new()),
        }
    }

    /// Drops every registered handler, each outside the lock and with its panics contained, so
    /// that a handler's drop code runs even if another's panics. Called by the glue when the
    /// instance is destroyed: a handler holding a clone of the context would otherwise keep
    /// itself (and the context) alive forever.
    pub(crate) fn drop_handlers(&self) {
        let handlers =
            std::mem::take(&mut *self.handlers.lock().unwrap_or_else(PoisonError::into_inner));
        for (_, registered) in handlers {
            let _ =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || drop(registered)));
        }
    }

    /// Runs the handler of subscription `id`. The handler is taken out of the map while it runs,
    /// so it may itself subscribe or unsubscribe.
    pub(crate) fn deliver(&self, id: u64, name: &str, payload: &[u8]) -> Result<()> {
        let taken = self
            .handlers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&id);
        let Some(mut registered) = taken else {
            // Unsubscribed after the delivery was queued: nothing ran. The host does not count
            // this as a failure, and does not commit a topic message for it.
            return Err(crate::Error::new(
                "subscription_not_found",
                format!("no handler for subscription {id}"),
            ));
        };
        // A panicking handler stays subscribed: put it back before the panic goes on to the
        // glue, which reports it to the host.
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            (registered.handler)(&Event { name, payload })
        }));
        if !registered.once {
            self.handlers
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .entry(id)
                .or_insert(registered);
        }
        match outcome {
            Ok(result) => result,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }
}

/// The plugin's handle on the host. Passed to every [`Plugin`](crate::Plugin) method.
#[derive(Clone)]
pub struct Context {
    inner: Arc<ContextInner>,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context").finish_non_exhaustive()
    }
}

impl Context {
    pub(crate) fn new(inner: Arc<ContextInner>) -> Self {
        Self { inner }
    }

    pub(crate) fn inner(&self) -> &ContextInner {
        &self.inner
    }

    /// A weak reference, to count the clones still alive after the instance is destroyed.
    pub(crate) fn downgrade(&self) -> std::sync::Weak<ContextInner> {
        Arc::downgrade(&self.inner)
    }

    /// Writes a log line; the host tags it with the plugin's name.
    pub fn log(&self, level: Level, message: &str) {
        self.inner.host.log(level as u32, message);
    }

    /// Logs at info level.
    pub fn info(&self, message: &str) {
        self.log(Level::Info, message);
    }

    /// Logs at warn level.
    pub fn warn(&self, message: &str) {
        self.log(Level::Warn, message);
    }

    /// A handle to a declared dependency.
    ///
    /// # Errors
    /// `dependency_not_declared` when the manifest does not list `name`; `dependency_not_found`
    /// when it is not active; `stale_context` after this instance was unloaded or replaced.
    pub fn dependency(&self, name: &str) -> Result<DependencyHandle> {
        let generation = self.inner.host.dependency(name)?;
        Ok(DependencyHandle {
            ctx: self.clone(),
            name: name.to_owned(),
            generation,
        })
    }

    /// Emits a JSON event on the host's bus.
    ///
    /// # Errors
    /// `invalid_event_name`, `stale_context`, or `serialization`.
    pub fn emit<T: Serialize + ?Sized>(&self, name: &str, payload: &T) -> Result<()> {
        let bytes = serde_json::to_vec(payload)?;
        self.inner.host.emit(name, &bytes, false)
    }

    /// Emits an event whose payload is raw bytes.
    ///
    /// # Errors
    /// `invalid_event_name` or `stale_context`.
    pub fn emit_raw(&self, name: &str, payload: &[u8]) -> Result<()> {
        self.inner.host.emit(name, payload, true)
    }

    /// Subscribes `handler` to events matching `pattern` (see the host's pattern rules:
    /// `user:created`, `user:*`, `*:created`, `user:**`).
    ///
    /// # Errors
    /// `invalid_pattern` or `stale_context`.
    pub fn on(
        &self,
        pattern: &str,
        handler: impl FnMut(&Event<'_>) -> Result<()> + Send + 'static,
    ) -> Result<SubscriptionId> {
        self.subscribe(pattern, false, Box::new(handler))
    }

    /// Like [`Context::on`], but the handler runs for the first matching event only.
    ///
    /// # Errors
    /// `invalid_pattern` or `stale_context`.
    pub fn once(
        &self,
        pattern: &str,
        handler: impl FnMut(&Event<'_>) -> Result<()> + Send + 'static,
    ) -> Result<SubscriptionId> {
        self.subscribe(pattern, true, Box::new(handler))
    }

    /// Registers a handler under an id the host assigned (topic consumers).
    pub(crate) fn register(&self, id: u64, once: bool, handler: Handler) {
        self.inner
            .handlers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id, Registered { handler, once });
    }

    /// Removes a handler registered with [`Context::register`].
    pub(crate) fn unregister(&self, id: u64) {
        self.inner
            .handlers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&id);
    }

    /// Calls a host service with raw bytes (an envelope), returning raw bytes.
    pub(crate) fn call_raw(&self, service: Service, input: &[u8]) -> Result<Vec<u8>> {
        self.inner.host.call(service.name(), input)
    }

    /// Sends one operation of a JSON service and decodes its answer.
    pub(crate) fn request<O: Op>(&self, op: O) -> Result<O::Response> {
        let bytes = serde_json::to_vec(&O::Request::from(op))?;
        let out = self.call_raw(O::SERVICE, &bytes)?;
        Ok(serde_json::from_slice(&out)?)
    }

    fn subscribe(&self, pattern: &str, once: bool, handler: Handler) -> Result<SubscriptionId> {
        // Events are delivered on this plugin's worker thread, which is the thread running this
        // call, so no delivery can look for the handler before it is inserted below.
        let id = self.inner.host.subscribe(pattern, once)?;
        self.inner
            .handlers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id, Registered { handler, once });
        Ok(SubscriptionId(id))
    }

    /// Removes exactly one subscription made by this plugin.
    ///
    /// # Errors
    /// `subscription_not_found` when `id` is not a live subscription of this plugin.
    pub fn off(&self, id: SubscriptionId) -> Result<()> {
        self.inner
            .handlers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&id.0);
        self.inner.host.unsubscribe(id.0)
    }

    /// The configuration the operator gave this plugin (config file or admin API), already
    /// validated by the host against the manifest's JSON Schema, as untyped JSON; `null` when
    /// none was given.
    ///
    /// # Errors
    /// `stale_context` after this instance was unloaded or replaced.
    pub fn config_value(&self) -> Result<Value> {
        self.request(crate::wire::config::Get)
    }

    /// The plugin's configuration, deserialised into `T` (after the host validated it against
    /// the manifest's JSON Schema). A missing config is `null`: use an `Option` or a type with
    /// `#[serde(default)]` when the operator may give none.
    ///
    /// # Errors
    /// `invalid_config` naming serde's complaint when the config does not fit `T`;
    /// `stale_context` after this instance was unloaded or replaced.
    pub fn config<T: DeserializeOwned>(&self) -> Result<T> {
        serde_json::from_value(self.config_value()?).map_err(|e| {
            crate::Error::new(
                "invalid_config",
                format!("the plugin's config does not fit its type: {e}"),
            )
        })
    }

    /// The plugin's topics (see [`Topics`](crate::Topics)).
    pub fn topics(&self) -> crate::Topics {
        crate::Topics::new(self.clone())
    }

    /// The plugin's tables (see [`Tables`](crate::Tables)).
    pub fn tables(&self) -> crate::Tables {
        crate::Tables::new(self.clone())
    }

    /// The plugin's buckets (see [`Buckets`](crate::Buckets)).
    pub fn buckets(&self) -> crate::Buckets {
        crate::Buckets::new(self.clone())
    }

    /// Calls a host service by name with a JSON request, as it is: the typed repositories
    /// ([`Context::tables`], ...) build their requests from the shared wire types instead.
    ///
    /// # Errors
    /// Whatever the service reports, for example `table_access_denied`.
    pub fn call_service(&self, service: &str, request: &Value) -> Result<Value> {
        let bytes = serde_json::to_vec(request)?;
        let out = self.inner.host.call(service, &bytes)?;
        if out.is_empty() {
            return Ok(Value::Null);
        }
        Ok(serde_json::from_slice(&out)?)
    }
}

/// A handle to a declared dependency. It follows the dependency through reloads: a call always
/// reaches the dependency's current instance, also while a reload swaps it (the call runs on the
/// old instance before it retires, or on the new one). After the dependency is unloaded, calls
/// fail with `stale_handle`.
#[derive(Debug, Clone)]
pub struct DependencyHandle {
    ctx: Context,
    name: String,
    generation: u64,
}

impl DependencyHandle {
    /// The dependency's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The generation of the dependency instance this handle was obtained from (calls reach the
    /// current instance, which a reload may have replaced since).
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Calls the dependency's `execute` with a JSON input.
    ///
    /// # Errors
    /// The dependency's own error, `plugin_failed` if it panicked, `stale_handle`, or
    /// `dependency_not_found`.
    pub fn execute(&self, input: &Value) -> Result<Value> {
        let bytes = serde_json::to_vec(input)?;
        let out = self
            .ctx
            .inner
            .host
            .call_dependency(&self.name, self.generation, &bytes)?;
        Ok(serde_json::from_slice(&out)?)
    }

    /// Calls the dependency's named function `function` with a typed input, returning its
    /// typed output. The host validates `input` against the function's declared input schema.
    ///
    /// # Errors
    /// `function_not_found` when the dependency has no such function, `invalid_input` when the
    /// input fails its schema, `serialization` when the output does not fit `Out`, and the
    /// errors of [`DependencyHandle::execute`].
    pub fn call<In: Serialize + ?Sized, Out: DeserializeOwned>(
        &self,
        function: &str,
        input: &In,
    ) -> Result<Out> {
        let bytes = serde_json::to_vec(input)?;
        let out =
            self.ctx
                .inner
                .host
                .call_function(&self.name, self.generation, function, &bytes)?;
        Ok(serde_json::from_slice(&out)?)
    }
}
