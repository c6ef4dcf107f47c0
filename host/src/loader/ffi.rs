//! Every `unsafe` line of the host: dlopen/dlclose through libloading, calls through the plugin's
//! function table, and the host functions a plugin calls back into.
//!
//! Exposed only as safe `pub(crate)` wrappers:
//! - [`Library`]: an opened shadow copy; closed on drop.
//! - [`Instance`]: a plugin instance, which borrows its `Library`, so the borrow checker pins the
//!   unload order (instance destroyed before its library is closed).
//! - [`HostContext`] + [`HostServices`]: what a plugin's calls into the host reach.
//!
//! Contracts cited below are in `docs/abi.md`. Every call into plugin code goes through a
//! `PluginVTable` function (`unsafe extern "C" fn`): its `// SAFETY:` comment names what the
//! call relies on.
//!
//! A plugin never gets a pointer to host memory for its context: it gets an opaque key, which
//! every host function looks up in a process-wide table. The key leaves the table when the
//! instance is destroyed, so a call that comes later (a thread the plugin left running, a
//! context it leaked) is answered `stale_context` without touching anything freed.

use std::collections::HashMap;
use std::marker::PhantomData;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, PoisonError, RwLock, Weak};

use plugin_api::ffi::{
    ABI_MAJOR, ContextPtr, DeclarationHeader, HostVTable, InstancePtr, PLUGIN_VTABLE_MIN_SIZE,
    PLUGIN_VTABLE_MINOR2_SIZE, PluginVTable, RawDelivery, RawResult, RawSlice, STATUS_OK,
    STATUS_PANIC,
};

use super::TrustedPath;
use crate::error::{Error, Result};

/// A failure reported by plugin code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CallError {
    /// The plugin returned an error.
    Failed { code: String, message: String },
    /// The plugin panicked; the glue caught it.
    Panicked { message: String },
}

/// The plugin hooks that take no input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Hook {
    Initialize,
    Enable,
    Disable,
    Cleanup,
}

impl Hook {
    /// The operation of this hook, for errors.
    pub(crate) fn operation(self) -> crate::error::Operation {
        use crate::error::Operation;
        match self {
            Self::Initialize => Operation::Initialize,
            Self::Enable => Operation::Enable,
            Self::Disable => Operation::Disable,
            Self::Cleanup => Operation::Cleanup,
        }
    }
}

/// An opened plugin library; closed on drop, after every instance it produced (they borrow it).
#[derive(Debug)]
pub(crate) struct Library {
    lib: libloading::Library,
    /// The declaration's `concurrent` flag: the plugin's `call`s may overlap.
    concurrent: bool,
}

impl Library {
    /// Opens a validated shadow copy with `RTLD_NOW | RTLD_LOCAL`, running its initialisers, and
    /// checks that the declaration in memory is the one validated from the file.
    pub(crate) fn open(
        path: &TrustedPath,
        original: &Path,
        expected: &DeclarationHeader,
    ) -> Result<Self> {
        let open_error = |source| Error::LibraryOpen {
            path: original.to_owned(),
            source,
        };
        #[cfg(unix)]
        // SAFETY: opening runs the library's initialisers. The operator asked for this file and
        // the loader validated its declaration; `TrustedPath` exists only after that
        // (docs/trust-model.md). The shadow copy is private to this host and never rewritten.
        let lib: libloading::Library = unsafe {
            libloading::os::unix::Library::open(
                Some(path.as_path()),
                libloading::os::unix::RTLD_NOW | libloading::os::unix::RTLD_LOCAL,
            )
        }
        .map_err(open_error)?
        .into();
        #[cfg(not(unix))]
        // SAFETY: as above.
        let lib = unsafe { libloading::Library::new(path.as_path()) }.map_err(open_error)?;

        let declaration_name = format!("{}\0", plugin_api::ffi::DECLARATION_SYMBOL);
        // SAFETY: the symbol is the plugin's `static PLUGIN_HOST_DECLARATION`, whose first field
        // is a `DeclarationHeader` (docs/abi.md); it is read only, and only while `lib` is open.
        let in_memory: DeclarationHeader = unsafe {
            let symbol = lib
                .get::<*const DeclarationHeader>(declaration_name.as_bytes())
                .map_err(open_error)?;
            std::ptr::read_unaligned(*symbol)
        };
        if in_memory.magic != expected.magic
            || in_memory.abi_major != expected.abi_major
            || in_memory.api_minor != expected.api_minor
            || in_memory.manifest_len != expected.manifest_len
        {
            return Err(Error::InvalidManifest {
                path: original.to_owned(),
                reason: "the declaration in memory differs from the one in the file".into(),
            });
        }
        Ok(Self {
            lib,
            concurrent: in_memory.reserved & plugin_api::ffi::FLAG_CONCURRENT != 0,
        })
    }

    /// Calls the entry point and creates an instance bound to `ctx`. Runs plugin code: call it on
    /// the plugin's worker thread only.
    pub(crate) fn instantiate(
        &self,
        original: &Path,
        ctx: &Arc<HostContext>,
    ) -> Result<Instance<'_>, InstantiateError> {
        let entry_name = format!("{}\0", plugin_api::ffi::ENTRY_SYMBOL);
        // SAFETY: `plugin_host_entry` has this signature in every plugin of ABI 1
        // (export_plugin!, docs/abi.md; the host views it as `unsafe`, which changes nothing of
        // the ABI); the loader checked the ABI major before opening.
        let entry = unsafe {
            self.lib
                .get::<unsafe extern "C" fn(u32) -> *const PluginVTable>(entry_name.as_bytes())
                .map_err(|source| {
                    InstantiateError::Host(Error::LibraryOpen {
                        path: original.to_owned(),
                        source,
                    })
                })?
        };
        // SAFETY: plugin code, on the plugin's worker thread (this fn's rule); the entry point
        // takes a plain integer and returns a pointer to a static of the open library.
        let table = unsafe { entry(ABI_MAJOR) };
        if table.is_null() {
            return Err(InstantiateError::Host(Error::IncompatibleAbi {
                path: original.to_owned(),
                found: "a table the plugin refused to give".into(),
                accepted: super::accepted_abi(),
            }));
        }
        // SAFETY: non-null pointer to the plugin's static function table, valid while the
        // library is open; only its first field is read here, which every table has.
        let size = unsafe { std::ptr::addr_of!((*table).size).read() };
        if size < PLUGIN_VTABLE_MIN_SIZE {
            return Err(InstantiateError::Host(Error::IncompatibleAbi {
                path: original.to_owned(),
                found: format!("a function table of {size} bytes"),
                accepted: format!("at least {PLUGIN_VTABLE_MIN_SIZE} bytes"),
            }));
        }
        // SAFETY: the table has at least `size` bytes, checked above to cover every field read
        // (an older plugin's table ends before the appended fields, which are then not read:
        // docs/abi.md, appending fields). The places are computed without making a reference to
        // the whole table, which may be shorter than this host's `PluginVTable`.
        let vtable = unsafe {
            Table {
                create: std::ptr::addr_of!((*table).create).read(),
                initialize: std::ptr::addr_of!((*table).initialize).read(),
                execute: std::ptr::addr_of!((*table).execute).read(),
                enable: std::ptr::addr_of!((*table).enable).read(),
                disable: std::ptr::addr_of!((*table).disable).read(),
                cleanup: std::ptr::addr_of!((*table).cleanup).read(),
                deliver: std::ptr::addr_of!((*table).deliver).read(),
                destroy: std::ptr::addr_of!((*table).destroy).read(),
                call: (size >= PLUGIN_VTABLE_MINOR2_SIZE)
                    .then(|| std::ptr::addr_of!((*table).call).read()),
                deliver_batch: (size >= size_of::<PluginVTable>())
                    .then(|| std::ptr::addr_of!((*table).deliver_batch).read()),
            }
        };
        let mut ptr: InstancePtr = std::ptr::null_mut();
        let key = ContextKey::register(ctx);
        // SAFETY: `create` of a table the plugin returned for ABI 1, with size checked above:
        // the host table is a `static`, the context is an opaque key, and `out` is a writable
        // local (docs/abi.md, calls).
        let result = unsafe { (vtable.create)(&HOST_VTABLE, key.as_ptr(), &mut ptr) };
        decode(result).map_err(InstantiateError::Plugin)?;
        if ptr.is_null() {
            return Err(InstantiateError::Plugin(CallError::Failed {
                code: "internal".into(),
                message: "create returned no instance".into(),
            }));
        }
        Ok(Instance {
            vtable,
            concurrent: self.concurrent,
            ptr,
            key: Some(key),
            _lib: PhantomData,
        })
    }
}

type CallFn = unsafe extern "C" fn(InstancePtr, RawSlice, RawSlice) -> RawResult;
type DeliverBatchFn = unsafe extern "C" fn(InstancePtr, *const RawDelivery, usize) -> RawResult;

/// The plugin's function table as the host uses it: the fields copied out of the plugin's
/// static table, `call` and `deliver_batch` only when the plugin's table has them (API minor 2
/// and 3).
#[derive(Debug, Clone, Copy)]
struct Table {
    create: unsafe extern "C" fn(*const HostVTable, ContextPtr, *mut InstancePtr) -> RawResult,
    initialize: unsafe extern "C" fn(InstancePtr) -> RawResult,
    execute: unsafe extern "C" fn(InstancePtr, RawSlice) -> RawResult,
    enable: unsafe extern "C" fn(InstancePtr) -> RawResult,
    disable: unsafe extern "C" fn(InstancePtr) -> RawResult,
    cleanup: unsafe extern "C" fn(InstancePtr) -> RawResult,
    deliver: unsafe extern "C" fn(InstancePtr, u64, RawSlice, RawSlice) -> RawResult,
    destroy: unsafe extern "C" fn(InstancePtr) -> RawResult,
    call: Option<CallFn>,
    deliver_batch: Option<DeliverBatchFn>,
}

/// Why an instance could not be created.
#[derive(Debug)]
pub(crate) enum InstantiateError {
    Host(Error),
    Plugin(CallError),
}

/// Turns a plugin's result into host-owned bytes, freeing the plugin's buffer.
fn decode(result: RawResult) -> Result<Vec<u8>, CallError> {
    // SAFETY: the result comes straight from a plugin call, untouched, and is consumed here; its
    // buffer carries the plugin's own free function (docs/abi.md, ownership rule).
    let (status, bytes) = unsafe { result.into_parts() };
    match status {
        STATUS_OK => Ok(bytes),
        STATUS_PANIC => Err(CallError::Panicked {
            message: String::from_utf8_lossy(&bytes).into_owned(),
        }),
        _ => match serde_json::from_slice::<plugin_api::Error>(&bytes) {
            Ok(e) => Err(CallError::Failed {
                code: e.code,
                message: e.message,
            }),
            Err(_) => Err(CallError::Failed {
                code: "plugin_error".into(),
                message: String::from_utf8_lossy(&bytes).into_owned(),
            }),
        },
    }
}

/// Reads the failures `deliver_batch` reported, at most one per event (the first one given for
/// an index counts). An answer that is not the documented JSON fails every event of the batch,
/// so nothing is counted as delivered on a plugin's say-so alone.
fn batch_failures(bytes: &[u8], len: usize) -> Vec<(usize, CallError)> {
    #[derive(serde::Deserialize)]
    struct Failure {
        index: usize,
        status: u32,
        #[serde(default)]
        code: String,
        #[serde(default)]
        message: String,
    }
    match serde_json::from_slice::<Vec<Failure>>(bytes) {
        Ok(list) => {
            let mut seen = std::collections::BTreeSet::new();
            list.into_iter()
                .filter(|f| f.index < len && seen.insert(f.index))
                .map(|f| {
                    let error = if f.status == STATUS_PANIC {
                        CallError::Panicked { message: f.message }
                    } else {
                        CallError::Failed {
                            code: f.code,
                            message: f.message,
                        }
                    };
                    (f.index, error)
                })
                .collect()
        }
        Err(e) => (0..len)
            .map(|i| {
                (
                    i,
                    CallError::Failed {
                        code: "plugin_error".into(),
                        message: format!("unreadable answer to a batch of deliveries: {e}"),
                    },
                )
            })
            .collect(),
    }
}

/// A live plugin instance. Neither `Send` nor `Sync`: it stays on the worker thread that created
/// it, which is what makes the plugin's `&mut self` sound. Destroyed (plugin drop code) by
/// [`Instance::destroy`], or on drop. The one way to call it from other threads is
/// [`SharedCalls`], for a concurrent plugin only.
///
/// Every call below relies on the same contract (`PluginVTable`, docs/abi.md): `ptr` is the live
/// instance `create` returned and only `destroy` consumes it (by value, so no borrow of the
/// instance, [`SharedCalls`] included, outlives it); this value is neither `Send` nor `Sync`, so
/// its own methods are called from one thread, one at a time; every slice argument borrows
/// memory of the caller alive for the call; and `'lib` keeps the library open.
#[derive(Debug)]
pub(crate) struct Instance<'lib> {
    vtable: Table,
    concurrent: bool,
    ptr: InstancePtr,
    /// The instance's entry in the context table, removed once the instance is destroyed.
    key: Option<ContextKey>,
    _lib: PhantomData<&'lib Library>,
}

/// What destroying an instance left behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Destroyed {
    /// Clones of the plugin's context still alive after its instance and handlers were dropped
    /// (held by a thread the plugin left running, or leaked); 0 when the plugin did not say.
    pub(crate) live_contexts: u64,
}

impl Instance<'_> {
    pub(crate) fn hook(&self, hook: Hook) -> Result<Vec<u8>, CallError> {
        let f = match hook {
            Hook::Initialize => self.vtable.initialize,
            Hook::Enable => self.vtable.enable,
            Hook::Disable => self.vtable.disable,
            Hook::Cleanup => self.vtable.cleanup,
        };
        // SAFETY: a hook of the live instance, no other argument (the contract on `Instance`).
        decode(unsafe { f(self.ptr) })
    }

    pub(crate) fn execute(&self, input: &[u8]) -> Result<Vec<u8>, CallError> {
        // SAFETY: the live instance and a slice of `input`, borrowed for the call (the contract
        // on `Instance`).
        decode(unsafe { (self.vtable.execute)(self.ptr, RawSlice::new(input)) })
    }

    /// Calls the named function `function`. A plugin of API minor 0 or 1 has none: its
    /// manifest declares none, so the manager never sends one, and this answers
    /// `function_not_found` all the same.
    pub(crate) fn call(&self, function: &str, input: &[u8]) -> Result<Vec<u8>, CallError> {
        let Some(call) = self.vtable.call else {
            return Err(CallError::Failed {
                code: "function_not_found".into(),
                message: format!("the plugin has no function `{function}`"),
            });
        };
        // SAFETY: the live instance and slices of `function` and `input`, borrowed for the call
        // (the contract on `Instance`); `call` exists, the table's size said so.
        decode(unsafe {
            call(
                self.ptr,
                RawSlice::new(function.as_bytes()),
                RawSlice::new(input),
            )
        })
    }

    pub(crate) fn deliver(
        &self,
        id: u64,
        name: &str,
        payload: &[u8],
    ) -> Result<Vec<u8>, CallError> {
        // SAFETY: the live instance and slices of `name` and `payload`, borrowed for the call
        // (the contract on `Instance`).
        decode(unsafe {
            (self.vtable.deliver)(
                self.ptr,
                id,
                RawSlice::new(name.as_bytes()),
                RawSlice::new(payload),
            )
        })
    }

    /// Delivers `events` (subscription id, name, payload) in order, in one call when the plugin
    /// has `deliver_batch` (API minor 3), else one `deliver` per event. Answers the events whose
    /// handler did not succeed, by index.
    pub(crate) fn deliver_batch(&self, events: &[(u64, &str, &[u8])]) -> Vec<(usize, CallError)> {
        let Some(batch) = self.vtable.deliver_batch else {
            return events
                .iter()
                .enumerate()
                .filter_map(|(i, (id, name, payload))| {
                    self.deliver(*id, name, payload).err().map(|e| (i, e))
                })
                .collect();
        };
        let entries: Vec<RawDelivery> = events
            .iter()
            .map(|(id, name, payload)| RawDelivery {
                id: *id,
                name: RawSlice::new(name.as_bytes()),
                payload: RawSlice::new(payload),
            })
            .collect();
        // SAFETY: the live instance and `entries.len()` entries whose slices borrow `events`,
        // all alive for the call (the contract on `Instance`); `deliver_batch` exists, the
        // table's size said so.
        match decode(unsafe { batch(self.ptr, entries.as_ptr(), entries.len()) }) {
            Ok(bytes) if bytes.is_empty() => Vec::new(),
            Ok(bytes) => batch_failures(&bytes, events.len()),
            // The call as a whole failed (it never does for a live instance): every event failed.
            Err(e) => (0..events.len()).map(|i| (i, e.clone())).collect(),
        }
    }

    /// A handle that pool threads share to run named functions of a concurrent plugin at once;
    /// `None` for an exclusive plugin (or one without `call`). It borrows the instance, so every
    /// thread using it is done before the instance can be destroyed.
    pub(crate) fn shared_calls(&self) -> Option<SharedCalls<'_>> {
        let call = self.vtable.call.filter(|_| self.concurrent)?;
        Some(SharedCalls {
            call,
            ptr: self.ptr,
            _instance: PhantomData,
        })
    }

    /// Destroys the instance (its handlers, then its value: plugin drop code) and removes its
    /// context from the table: from now on every call through it is `stale_context`.
    pub(crate) fn destroy(mut self) -> Destroyed {
        self.destroy_now()
    }

    fn destroy_now(&mut self) -> Destroyed {
        let ptr = std::mem::replace(&mut self.ptr, std::ptr::null_mut());
        let mut live_contexts = 0;
        if !ptr.is_null() {
            // SAFETY: the instance's last call: `ptr` is live, and was just replaced by null so
            // nothing can use it again (the contract on `Instance`).
            match decode(unsafe { (self.vtable.destroy)(ptr) }) {
                Ok(out) => live_contexts = plugin_api::ffi::live_contexts(&out).unwrap_or(0),
                Err(e) => {
                    tracing::warn!(target: "loader", error = ?e, "plugin instance drop failed")
                }
            }
        }
        drop(self.key.take());
        Destroyed { live_contexts }
    }
}

impl Drop for Instance<'_> {
    fn drop(&mut self) {
        self.destroy_now();
    }
}

/// `call` of a concurrent plugin's live instance, shared by the threads of its pool.
#[derive(Debug)]
pub(crate) struct SharedCalls<'i> {
    call: CallFn,
    ptr: InstancePtr,
    _instance: PhantomData<&'i ()>,
}

// SAFETY: built only by `Instance::shared_calls` for a plugin whose declaration carries
// `FLAG_CONCURRENT`, which `export_plugin!(T, concurrent)` sets only for a `T: Sync`, and whose
// glue takes `call`s from several threads at once (docs/abi.md, minor 2 and threading). It
// borrows the instance, so it cannot outlive it (`destroy` takes the instance by value).
unsafe impl Sync for SharedCalls<'_> {}

impl SharedCalls<'_> {
    /// Calls the named function `function`, from any thread of the pool.
    pub(crate) fn call(&self, function: &str, input: &[u8]) -> Result<Vec<u8>, CallError> {
        // SAFETY: the live instance (borrowed for `'i`) of a concurrent plugin, whose `call`
        // may overlap (the `Sync` impl above); slices of `function` and `input`, borrowed for
        // the call.
        decode(unsafe {
            (self.call)(
                self.ptr,
                RawSlice::new(function.as_bytes()),
                RawSlice::new(input),
            )
        })
    }
}

/// `RTLD_NOLOAD` of the platform's dynamic loader (libloading does not export it).
#[cfg(any(target_os = "linux", target_os = "android"))]
const RTLD_NOLOAD: std::ffi::c_int = 0x4;
#[cfg(target_vendor = "apple")]
const RTLD_NOLOAD: std::ffi::c_int = 0x10;

/// Whether a library file is still mapped in this process (after dlclose: `retained` if so).
/// Platforms without a known `RTLD_NOLOAD` answer `true` (reported as retained, never as a
/// false `unmapped`).
pub(crate) fn is_mapped(path: &Path) -> bool {
    #[cfg(any(target_os = "linux", target_os = "android", target_vendor = "apple"))]
    {
        // SAFETY: RTLD_NOLOAD never loads or initialises anything; it only returns a new
        // reference to an already-loaded object, which is closed again at once when dropped.
        let probe = unsafe {
            libloading::os::unix::Library::open(
                Some(path),
                RTLD_NOLOAD | libloading::os::unix::RTLD_LAZY,
            )
        };
        probe.is_ok()
    }
    #[cfg(not(any(target_os = "linux", target_os = "android", target_vendor = "apple")))]
    {
        let _ = path;
        true
    }
}

/// What a plugin's calls into the host reach. Implemented by the manager. Every method runs on a
/// plugin thread and must not block on the manager's transition lock.
pub(crate) trait HostServices: Send + Sync {
    fn log(&self, ctx: &HostContext, level: u32, message: &str);
    fn dependency(&self, ctx: &HostContext, name: &str) -> Result<u64, plugin_api::Error>;
    /// The most verbose level the host logs for plugins (0 off, 1 error .. 5 trace).
    fn max_level(&self, ctx: &HostContext) -> u32;
    /// Calls `execute` (`function` none) or a named function of a declared dependency.
    fn call_dependency(
        &self,
        ctx: &HostContext,
        name: &str,
        generation: u64,
        function: Option<&str>,
        input: &[u8],
    ) -> Result<Vec<u8>, plugin_api::Error>;
    fn emit(
        &self,
        ctx: &HostContext,
        name: &str,
        payload: &[u8],
        raw: bool,
    ) -> Result<(), plugin_api::Error>;
    fn subscribe(
        &self,
        ctx: &HostContext,
        pattern: &str,
        once: bool,
    ) -> Result<u64, plugin_api::Error>;
    fn unsubscribe(&self, ctx: &HostContext, id: u64) -> Result<(), plugin_api::Error>;
    fn call(
        &self,
        ctx: &HostContext,
        service: &str,
        input: &[u8],
    ) -> Result<Vec<u8>, plugin_api::Error>;
}

/// Context state: open, closing (cleanup running: no new subscriptions), revoked.
const CTX_OPEN: u8 = 0;
const CTX_CLOSING: u8 = 1;
const CTX_REVOKED: u8 = 2;

/// The host side of one plugin instance. The plugin holds only a key to it (see
/// [`ContextKey`]); every call through the key looks it up and checks its state.
pub(crate) struct HostContext {
    pub(crate) plugin: String,
    pub(crate) generation: u64,
    pub(crate) manifest: Arc<crate::manifest::PluginManifest>,
    state: AtomicU8,
    services: Weak<dyn HostServices>,
}

impl std::fmt::Debug for HostContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostContext")
            .field("plugin", &self.plugin)
            .field("generation", &self.generation)
            .finish_non_exhaustive()
    }
}

impl HostContext {
    pub(crate) fn new(
        manifest: Arc<crate::manifest::PluginManifest>,
        generation: u64,
        services: Weak<dyn HostServices>,
    ) -> Self {
        Self {
            plugin: manifest.name.clone(),
            generation,
            manifest,
            state: AtomicU8::new(CTX_OPEN),
            services,
        }
    }

    /// Cleanup is about to run: logging, emitting and dependency calls still work, new
    /// subscriptions are refused.
    pub(crate) fn close(&self) {
        let _ =
            self.state
                .compare_exchange(CTX_OPEN, CTX_CLOSING, Ordering::AcqRel, Ordering::Acquire);
    }

    /// The instance is gone or replaced: every call fails with `stale_context`.
    pub(crate) fn revoke(&self) {
        self.state.store(CTX_REVOKED, Ordering::Release);
    }

    pub(crate) fn is_open(&self) -> bool {
        self.state.load(Ordering::Acquire) == CTX_OPEN
    }

    fn check(&self) -> Result<Arc<dyn HostServices>, plugin_api::Error> {
        if self.state.load(Ordering::Acquire) == CTX_REVOKED {
            return Err(plugin_api::Error::new(
                "stale_context",
                format!(
                    "context of `{}` generation {} was revoked",
                    self.plugin, self.generation
                ),
            ));
        }
        self.services.upgrade().ok_or_else(|| {
            plugin_api::Error::new("host_shutting_down", "the host is shutting down")
        })
    }
}

/// The contexts of live instances, by the key their plugin holds. Keys are never reused.
static CONTEXTS: LazyLock<RwLock<HashMap<usize, Arc<HostContext>>>> =
    LazyLock::new(|| RwLock::new(HashMap::new()));

/// The next context key (0 is never a key: a null context is refused as such).
static NEXT_KEY: AtomicUsize = AtomicUsize::new(1);

/// An instance's entry in the context table. The plugin gets the key as its opaque context
/// value; the entry is removed when this is dropped (after the instance is destroyed), and a key
/// not in the table is answered `stale_context`. So the host side of a context stays valid for
/// as long as any plugin-side copy can call it: the plugin never holds a pointer into host
/// memory.
#[derive(Debug)]
struct ContextKey(usize);

impl ContextKey {
    fn register(ctx: &Arc<HostContext>) -> Self {
        let key = NEXT_KEY.fetch_add(1, Ordering::Relaxed);
        CONTEXTS
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(key, Arc::clone(ctx));
        Self(key)
    }

    /// The key as the ABI's opaque context value (an integer, never dereferenced by anyone).
    fn as_ptr(&self) -> ContextPtr {
        std::ptr::without_provenance(self.0)
    }

    /// The live context behind a value a plugin passed, if any.
    fn resolve(ctx: ContextPtr) -> Option<Arc<HostContext>> {
        CONTEXTS
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&ctx.addr())
            .cloned()
    }
}

impl Drop for ContextKey {
    fn drop(&mut self) {
        CONTEXTS
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.0);
    }
}

/// Runs a host function for a plugin: resolves the context key and never lets a panic unwind
/// into the plugin.
fn with_ctx(
    ctx: ContextPtr,
    f: impl FnOnce(&HostContext, &dyn HostServices) -> RawResult,
) -> RawResult {
    if ctx.is_null() {
        return RawResult::error(&plugin_api::Error::new("invalid_argument", "null context"));
    }
    catch_unwind(AssertUnwindSafe(|| {
        let Some(ctx) = ContextKey::resolve(ctx) else {
            return RawResult::error(&plugin_api::Error::new(
                "stale_context",
                "this context's plugin instance was destroyed (unloaded or replaced)",
            ));
        };
        match ctx.check() {
            Ok(services) => f(&ctx, services.as_ref()),
            Err(e) => RawResult::error(&e),
        }
    }))
    .unwrap_or_else(|_| {
        RawResult::error(&plugin_api::Error::new(
            "internal",
            "host function panicked",
        ))
    })
}

fn to_raw(result: Result<Vec<u8>, plugin_api::Error>) -> RawResult {
    match result {
        Ok(bytes) => RawResult::ok(bytes),
        Err(e) => RawResult::error(&e),
    }
}

/// Reads a string argument.
///
/// # Safety
/// `s` must be a slice argument of the current call (valid for its duration).
unsafe fn arg_str<'a>(s: RawSlice) -> Result<&'a str, plugin_api::Error> {
    // SAFETY: forwarded; the caller uses the reference only within the call.
    std::str::from_utf8(unsafe { s.as_bytes() })
        .map_err(|_| plugin_api::Error::new("bad_request", "argument is not UTF-8"))
}

/// `HostVTable::log`.
///
/// # Safety
/// The `HostVTable` contract: slice arguments valid for the call, out-pointers null or
/// writable. The context value is looked up, never dereferenced.
unsafe extern "C" fn host_log(ctx: ContextPtr, level: u32, message: RawSlice) {
    let _ = with_ctx(ctx, |ctx, services| {
        // SAFETY: `message` is an argument of this call.
        let bytes = unsafe { message.as_bytes() };
        services.log(ctx, level, &String::from_utf8_lossy(bytes));
        RawResult::ok(Vec::new())
    });
}

/// `HostVTable::dependency`.
///
/// # Safety
/// The `HostVTable` contract: slice arguments valid for the call, out-pointers null or
/// writable. The context value is looked up, never dereferenced.
unsafe extern "C" fn host_dependency(
    ctx: ContextPtr,
    name: RawSlice,
    out_generation: *mut u64,
) -> RawResult {
    with_ctx(ctx, |ctx, services| {
        // SAFETY: `name` is an argument of this call.
        let result = unsafe { arg_str(name) }.and_then(|name| services.dependency(ctx, name));
        match result {
            Ok(generation) => {
                if !out_generation.is_null() {
                    // SAFETY: non-null out-pointer to a u64 owned by the calling plugin frame.
                    unsafe { out_generation.write(generation) };
                }
                RawResult::ok(Vec::new())
            }
            Err(e) => RawResult::error(&e),
        }
    })
}

/// `HostVTable::call_dependency`.
///
/// # Safety
/// The `HostVTable` contract: slice arguments valid for the call, out-pointers null or
/// writable. The context value is looked up, never dereferenced.
unsafe extern "C" fn host_call_dependency(
    ctx: ContextPtr,
    name: RawSlice,
    generation: u64,
    input: RawSlice,
) -> RawResult {
    with_ctx(ctx, |ctx, services| {
        // SAFETY: `input` is an argument of this call, valid for its duration.
        let input = unsafe { input.as_bytes() };
        // SAFETY: `name` is an argument of this call.
        let result = unsafe { arg_str(name) }
            .and_then(|name| services.call_dependency(ctx, name, generation, None, input));
        to_raw(result)
    })
}

/// `HostVTable::call_function`.
///
/// # Safety
/// The `HostVTable` contract: slice arguments valid for the call, out-pointers null or
/// writable. The context value is looked up, never dereferenced.
unsafe extern "C" fn host_call_function(
    ctx: ContextPtr,
    name: RawSlice,
    generation: u64,
    function: RawSlice,
    input: RawSlice,
) -> RawResult {
    with_ctx(ctx, |ctx, services| {
        // SAFETY: `input` is an argument of this call, valid for its duration.
        let input = unsafe { input.as_bytes() };
        // SAFETY: `name` and `function` are arguments of this call.
        let result = unsafe { arg_str(name) }.and_then(|name| {
            // SAFETY: as above.
            let function = unsafe { arg_str(function) }?;
            services.call_dependency(ctx, name, generation, Some(function), input)
        });
        to_raw(result)
    })
}

/// `HostVTable::max_level`.
///
/// # Safety
/// The `HostVTable` contract. The context value is looked up, never dereferenced.
unsafe extern "C" fn host_max_level(ctx: ContextPtr) -> u32 {
    let mut level = 0;
    let _ = with_ctx(ctx, |ctx, services| {
        level = services.max_level(ctx);
        RawResult::ok(Vec::new())
    });
    level
}

/// `HostVTable::emit`.
///
/// # Safety
/// The `HostVTable` contract: slice arguments valid for the call, out-pointers null or
/// writable. The context value is looked up, never dereferenced.
unsafe extern "C" fn host_emit(
    ctx: ContextPtr,
    name: RawSlice,
    payload: RawSlice,
    flags: u32,
) -> RawResult {
    with_ctx(ctx, |ctx, services| {
        // SAFETY: `payload` is an argument of this call, valid for its duration.
        let payload = unsafe { payload.as_bytes() };
        // SAFETY: `name` is an argument of this call.
        let result = unsafe { arg_str(name) }
            .and_then(|name| services.emit(ctx, name, payload, flags & 1 == 1));
        to_raw(result.map(|()| Vec::new()))
    })
}

/// `HostVTable::subscribe`.
///
/// # Safety
/// The `HostVTable` contract: slice arguments valid for the call, out-pointers null or
/// writable. The context value is looked up, never dereferenced.
unsafe extern "C" fn host_subscribe(
    ctx: ContextPtr,
    pattern: RawSlice,
    once: u32,
    out_id: *mut u64,
) -> RawResult {
    with_ctx(ctx, |ctx, services| {
        if !ctx.is_open() {
            return RawResult::error(&plugin_api::Error::new(
                "stale_context",
                format!("`{}` is stopping; it cannot subscribe", ctx.plugin),
            ));
        }
        // SAFETY: `pattern` is an argument of this call.
        let result =
            unsafe { arg_str(pattern) }.and_then(|p| services.subscribe(ctx, p, once != 0));
        match result {
            Ok(id) => {
                if !out_id.is_null() {
                    // SAFETY: non-null out-pointer to a u64 owned by the calling plugin frame.
                    unsafe { out_id.write(id) };
                }
                RawResult::ok(Vec::new())
            }
            Err(e) => RawResult::error(&e),
        }
    })
}

/// `HostVTable::unsubscribe`.
///
/// # Safety
/// The `HostVTable` contract: slice arguments valid for the call, out-pointers null or
/// writable. The context value is looked up, never dereferenced.
unsafe extern "C" fn host_unsubscribe(ctx: ContextPtr, id: u64) -> RawResult {
    with_ctx(ctx, |ctx, services| {
        to_raw(services.unsubscribe(ctx, id).map(|()| Vec::new()))
    })
}

/// `HostVTable::call`.
///
/// # Safety
/// The `HostVTable` contract: slice arguments valid for the call, out-pointers null or
/// writable. The context value is looked up, never dereferenced.
unsafe extern "C" fn host_call(ctx: ContextPtr, service: RawSlice, input: RawSlice) -> RawResult {
    with_ctx(ctx, |ctx, services| {
        // SAFETY: `input` is an argument of this call, valid for its duration.
        let input = unsafe { input.as_bytes() };
        // SAFETY: `service` is an argument of this call.
        let result = unsafe { arg_str(service) }.and_then(|s| services.call(ctx, s, input));
        to_raw(result)
    })
}

/// The host's function table, handed to every instance. A `static`, so it outlives every plugin.
static HOST_VTABLE: HostVTable = HostVTable {
    size: size_of::<HostVTable>(),
    log: host_log,
    dependency: host_dependency,
    call_dependency: host_call_dependency,
    emit: host_emit,
    subscribe: host_subscribe,
    unsubscribe: host_unsubscribe,
    call: host_call,
    call_function: host_call_function,
    max_level: host_max_level,
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_failures_are_one_per_event_in_range_and_an_unreadable_answer_fails_all() {
        let answer = br#"[{"index":0,"status":2,"code":"","message":"boom"},
            {"index":0,"status":1,"code":"x","message":"again"},
            {"index":7,"status":1,"code":"x","message":"out of range"},
            {"index":1,"status":1,"code":"handler_failed","message":"no"}]"#;
        let failures = batch_failures(answer, 2);
        assert_eq!(
            failures,
            vec![
                (
                    0,
                    CallError::Panicked {
                        message: "boom".into()
                    }
                ),
                (
                    1,
                    CallError::Failed {
                        code: "handler_failed".into(),
                        message: "no".into()
                    }
                ),
            ]
        );
        let all = batch_failures(b"not json", 3);
        assert_eq!(all.iter().map(|(i, _)| *i).collect::<Vec<_>>(), [0, 1, 2]);
    }
}
