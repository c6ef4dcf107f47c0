//! The binary contract between the host and a plugin library: `#[repr(C)]` types, the two
//! exported symbols, and the glue that turns them into calls on a safe [`Plugin`].
//!
//! This is the only module of `plugin-api` allowed to use `unsafe`. Nothing here is meant for
//! plugin authors; `export_plugin!` and the host use it. The layout rules are written out in
//! `docs/abi.md`; any change to a `#[repr(C)]` type here bumps [`ABI_MAJOR`].
//!
//! Ownership rule: a buffer that crosses the boundary as a [`RawBuf`] carries the function that
//! frees it, so memory is always freed by the library that allocated it. The receiver copies the
//! bytes into memory of its own and calls [`RawBuf::into_vec`] (which frees the original) at
//! once: neither side keeps a value whose drop code lives in the other library.

use std::any::Any;
use std::ffi::c_void;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use crate::context::{Context, ContextInner};
use crate::{Error, Plugin};

/// ABI major version. A host accepts only plugins with exactly this major version.
pub const ABI_MAJOR: u32 = 1;
/// API minor version. A host accepts plugins whose minor version is at most its own. Bumped
/// for an appended table field or a new host service request (1: `topics` `produce_batch`).
pub const API_MINOR: u32 = 1;
/// First bytes of every plugin declaration.
pub const MAGIC: [u8; 8] = *b"PLGHOST\0";
/// Name of the exported data symbol holding the [`Declaration`].
pub const DECLARATION_SYMBOL: &str = "PLUGIN_HOST_DECLARATION";
/// Name of the exported function returning the plugin's [`PluginVTable`].
pub const ENTRY_SYMBOL: &str = "plugin_host_entry";

/// [`DeclarationHeader::panic_strategy`] of a plugin built with `panic = "unwind"`.
pub const PANIC_UNWIND: u32 = 0;
/// [`DeclarationHeader::panic_strategy`] of a plugin built with `panic = "abort"`.
pub const PANIC_ABORT: u32 = 1;

/// [`RawResult::status`]: the call succeeded; the buffer holds its output.
pub const STATUS_OK: u32 = 0;
/// [`RawResult::status`]: the call failed; the buffer holds a JSON `{"code","message"}`.
pub const STATUS_ERROR: u32 = 1;
/// [`RawResult::status`]: the callee panicked; the buffer holds the panic message (UTF-8).
pub const STATUS_PANIC: u32 = 2;

/// Fixed-size start of the exported declaration. Plain data only (no pointers), so the host can
/// read it from the file with an object-file parser before the library is opened.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct DeclarationHeader {
    /// Always [`MAGIC`].
    pub magic: [u8; 8],
    /// [`ABI_MAJOR`] of the `plugin-api` the plugin was built with.
    pub abi_major: u32,
    /// [`API_MINOR`] of the `plugin-api` the plugin was built with.
    pub api_minor: u32,
    /// `size_of::<DeclarationHeader>()` as the plugin saw it.
    pub header_size: u32,
    /// [`PANIC_UNWIND`] or [`PANIC_ABORT`].
    pub panic_strategy: u32,
    /// `size_of::<PluginVTable>()` as the plugin saw it.
    pub plugin_vtable_size: u32,
    /// `size_of::<HostVTable>()` as the plugin saw it.
    pub host_vtable_size: u32,
    /// Length in bytes of the JSON manifest that follows the header.
    pub manifest_len: u32,
    /// Zero; room for a flag word without changing the size.
    pub reserved: u32,
}

/// The exported declaration: a header followed by the manifest as UTF-8 JSON.
#[repr(C)]
#[derive(Debug)]
pub struct Declaration<const N: usize> {
    /// Versions and sizes.
    pub header: DeclarationHeader,
    /// The manifest, `header.manifest_len` bytes of JSON.
    pub manifest: [u8; N],
}

impl<const N: usize> Declaration<N> {
    /// Builds the declaration for a manifest already encoded as JSON.
    pub const fn new(manifest: [u8; N]) -> Self {
        Self {
            header: DeclarationHeader {
                magic: MAGIC,
                abi_major: ABI_MAJOR,
                api_minor: API_MINOR,
                header_size: size_of::<DeclarationHeader>() as u32,
                panic_strategy: if cfg!(panic = "unwind") {
                    PANIC_UNWIND
                } else {
                    PANIC_ABORT
                },
                plugin_vtable_size: size_of::<PluginVTable>() as u32,
                host_vtable_size: size_of::<HostVTable>() as u32,
                manifest_len: N as u32,
                reserved: 0,
            },
            manifest,
        }
    }
}

/// A borrowed byte slice, valid for the duration of one call.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct RawSlice {
    /// Start of the bytes (may dangle when `len` is 0).
    pub ptr: *const u8,
    /// Number of bytes.
    pub len: usize,
}

impl RawSlice {
    /// Borrows `bytes` for one call.
    pub fn new(bytes: &[u8]) -> Self {
        Self {
            ptr: bytes.as_ptr(),
            len: bytes.len(),
        }
    }

    /// Views the bytes.
    ///
    /// # Safety
    /// `ptr` and `len` must describe initialised memory that stays valid and unchanged for `'a`,
    /// as the ABI guarantees for the arguments of a call (docs/abi.md).
    pub unsafe fn as_bytes<'a>(self) -> &'a [u8] {
        if self.len == 0 {
            return &[];
        }
        // SAFETY: the caller upholds that ptr/len describe valid memory for 'a.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
}

/// Frees a [`RawBuf`] allocated by the library that owns this function.
pub type FreeFn = extern "C" fn(ptr: *mut u8, len: usize, cap: usize);

/// An owned byte buffer that carries its own free function.
#[repr(C)]
#[derive(Debug)]
pub struct RawBuf {
    /// Start of the allocation (null for an empty buffer).
    pub ptr: *mut u8,
    /// Bytes in use.
    pub len: usize,
    /// Capacity of the allocation.
    pub cap: usize,
    /// Frees the allocation; called exactly once by the receiver.
    pub free: Option<FreeFn>,
}

extern "C" fn free_vec(ptr: *mut u8, len: usize, cap: usize) {
    if !ptr.is_null() {
        // SAFETY: `RawBuf::from_vec` built ptr/len/cap from a Vec<u8> of this very library, and
        // the receiver calls `free` once (docs/abi.md, ownership rule).
        drop(unsafe { Vec::from_raw_parts(ptr, len, cap) });
    }
}

impl RawBuf {
    /// An empty buffer that needs no freeing.
    pub const EMPTY: RawBuf = RawBuf {
        ptr: std::ptr::null_mut(),
        len: 0,
        cap: 0,
        free: None,
    };

    /// Hands a vector over; the receiver frees it with this library's allocator.
    pub fn from_vec(bytes: Vec<u8>) -> Self {
        if bytes.capacity() == 0 {
            return Self::EMPTY;
        }
        let mut bytes = std::mem::ManuallyDrop::new(bytes);
        Self {
            ptr: bytes.as_mut_ptr(),
            len: bytes.len(),
            cap: bytes.capacity(),
            free: Some(free_vec),
        }
    }

    /// Copies the bytes into a vector of the caller's allocator and frees the original.
    ///
    /// # Safety
    /// The buffer must come from the other side of the ABI, unchanged, and not be used again.
    pub unsafe fn into_vec(self) -> Vec<u8> {
        if self.ptr.is_null() {
            return Vec::new();
        }
        // SAFETY: ptr/len describe the sender's initialised allocation (caller's contract).
        let out = unsafe { std::slice::from_raw_parts(self.ptr, self.len) }.to_vec();
        if let Some(free) = self.free {
            free(self.ptr, self.len, self.cap);
        }
        out
    }
}

/// Result of a call across the boundary: a status and a buffer (see the `STATUS_*` constants).
#[repr(C)]
#[derive(Debug)]
pub struct RawResult {
    /// [`STATUS_OK`], [`STATUS_ERROR`] or [`STATUS_PANIC`].
    pub status: u32,
    /// Output, error JSON or panic message, depending on `status`.
    pub buf: RawBuf,
}

impl RawResult {
    /// A success carrying `bytes`.
    pub fn ok(bytes: Vec<u8>) -> Self {
        Self {
            status: STATUS_OK,
            buf: RawBuf::from_vec(bytes),
        }
    }

    /// A failure carrying an error.
    pub fn error(error: &Error) -> Self {
        Self {
            status: STATUS_ERROR,
            buf: RawBuf::from_vec(error.to_json()),
        }
    }

    /// A caught panic carrying its message.
    pub fn panic(message: String) -> Self {
        Self {
            status: STATUS_PANIC,
            buf: RawBuf::from_vec(message.into_bytes()),
        }
    }

    /// Copies the result into memory of the caller and frees the original.
    ///
    /// # Safety
    /// Same contract as [`RawBuf::into_vec`].
    pub unsafe fn into_parts(self) -> (u32, Vec<u8>) {
        // SAFETY: forwarded contract.
        (self.status, unsafe { self.buf.into_vec() })
    }
}

/// Opaque pointer to a plugin instance, owned by the plugin library.
pub type InstancePtr = *mut c_void;
/// Opaque pointer to the host's per-instance context, owned by the host.
pub type ContextPtr = *const c_void;

/// Functions a plugin exports to the host. Later ABI minors append fields; `size` tells the
/// host which fields exist.
#[repr(C)]
#[derive(Debug)]
pub struct PluginVTable {
    /// `size_of::<PluginVTable>()` as the plugin saw it.
    pub size: usize,
    /// Creates an instance (`Default`) bound to a host context; writes it to `out`.
    pub create:
        extern "C" fn(host: *const HostVTable, ctx: ContextPtr, out: *mut InstancePtr) -> RawResult,
    /// `Plugin::initialize`.
    pub initialize: extern "C" fn(instance: InstancePtr) -> RawResult,
    /// `Plugin::execute`: JSON in, JSON out.
    pub execute: extern "C" fn(instance: InstancePtr, input: RawSlice) -> RawResult,
    /// `Plugin::enable`.
    pub enable: extern "C" fn(instance: InstancePtr) -> RawResult,
    /// `Plugin::disable`.
    pub disable: extern "C" fn(instance: InstancePtr) -> RawResult,
    /// `Plugin::cleanup`.
    pub cleanup: extern "C" fn(instance: InstancePtr) -> RawResult,
    /// Delivers an event to the handler registered as subscription `id`.
    pub deliver: extern "C" fn(
        instance: InstancePtr,
        id: u64,
        name: RawSlice,
        payload: RawSlice,
    ) -> RawResult,
    /// Drops the instance (its drop code runs in the plugin). The pointer is dead afterwards.
    pub destroy: extern "C" fn(instance: InstancePtr) -> RawResult,
}

/// Functions the host offers a plugin. Every function takes the instance's context pointer and
/// never unwinds; failures come back as [`STATUS_ERROR`] with a JSON error.
#[repr(C)]
#[derive(Debug)]
pub struct HostVTable {
    /// `size_of::<HostVTable>()` as the host saw it.
    pub size: usize,
    /// Writes a log line attributed to the plugin (levels: 1 error .. 5 trace).
    pub log: extern "C" fn(ctx: ContextPtr, level: u32, message: RawSlice),
    /// Resolves a declared dependency; on success writes its generation to `out_generation`.
    pub dependency:
        extern "C" fn(ctx: ContextPtr, name: RawSlice, out_generation: *mut u64) -> RawResult,
    /// Calls `execute` of a declared dependency, as resolved at `generation`.
    pub call_dependency: extern "C" fn(
        ctx: ContextPtr,
        name: RawSlice,
        generation: u64,
        input: RawSlice,
    ) -> RawResult,
    /// Emits an event on the host's bus (`flags` bit 0: the payload is raw bytes, not JSON).
    pub emit:
        extern "C" fn(ctx: ContextPtr, name: RawSlice, payload: RawSlice, flags: u32) -> RawResult,
    /// Subscribes to a pattern (`once` non-zero: a single delivery); writes the id to `out_id`.
    pub subscribe:
        extern "C" fn(ctx: ContextPtr, pattern: RawSlice, once: u32, out_id: *mut u64) -> RawResult,
    /// Removes one subscription of this plugin.
    pub unsubscribe: extern "C" fn(ctx: ContextPtr, id: u64) -> RawResult,
    /// Calls a named host service (resources) with a JSON request; JSON response.
    pub call: extern "C" fn(ctx: ContextPtr, service: RawSlice, input: RawSlice) -> RawResult,
}

/// The host side of one plugin instance, as the plugin sees it: the host's function table and
/// the context pointer to pass back.
#[derive(Debug, Clone, Copy)]
pub(crate) struct HostRef {
    vtable: *const HostVTable,
    ctx: ContextPtr,
}

// SAFETY: both pointers refer to host-owned data that the host keeps alive, and that is safe to
// use from any thread, for as long as any code of the plugin can run (docs/abi.md, lifetimes).
unsafe impl Send for HostRef {}
// SAFETY: as above; the host functions are thread-safe.
unsafe impl Sync for HostRef {}

impl HostRef {
    fn vtable(&self) -> &HostVTable {
        // SAFETY: the host passed a pointer to its static table in `create`; it outlives the
        // plugin (docs/abi.md).
        unsafe { &*self.vtable }
    }

    fn finish(result: RawResult) -> Result<Vec<u8>, Error> {
        // SAFETY: the buffer comes from the host, untouched, and is consumed here.
        let (status, bytes) = unsafe { result.into_parts() };
        match status {
            STATUS_OK => Ok(bytes),
            _ => Err(Error::from_json(&bytes)),
        }
    }

    pub(crate) fn log(&self, level: u32, message: &str) {
        (self.vtable().log)(self.ctx, level, RawSlice::new(message.as_bytes()));
    }

    pub(crate) fn dependency(&self, name: &str) -> Result<u64, Error> {
        let mut generation = 0u64;
        let result =
            (self.vtable().dependency)(self.ctx, RawSlice::new(name.as_bytes()), &mut generation);
        Self::finish(result).map(|_| generation)
    }

    pub(crate) fn call_dependency(
        &self,
        name: &str,
        generation: u64,
        input: &[u8],
    ) -> Result<Vec<u8>, Error> {
        let result = (self.vtable().call_dependency)(
            self.ctx,
            RawSlice::new(name.as_bytes()),
            generation,
            RawSlice::new(input),
        );
        Self::finish(result)
    }

    pub(crate) fn emit(&self, name: &str, payload: &[u8], raw: bool) -> Result<(), Error> {
        let result = (self.vtable().emit)(
            self.ctx,
            RawSlice::new(name.as_bytes()),
            RawSlice::new(payload),
            u32::from(raw),
        );
        Self::finish(result).map(drop)
    }

    pub(crate) fn subscribe(&self, pattern: &str, once: bool) -> Result<u64, Error> {
        let mut id = 0u64;
        let result = (self.vtable().subscribe)(
            self.ctx,
            RawSlice::new(pattern.as_bytes()),
            u32::from(once),
            &mut id,
        );
        Self::finish(result).map(|_| id)
    }

    pub(crate) fn unsubscribe(&self, id: u64) -> Result<(), Error> {
        Self::finish((self.vtable().unsubscribe)(self.ctx, id)).map(drop)
    }

    pub(crate) fn call(&self, service: &str, input: &[u8]) -> Result<Vec<u8>, Error> {
        let result = (self.vtable().call)(
            self.ctx,
            RawSlice::new(service.as_bytes()),
            RawSlice::new(input),
        );
        Self::finish(result)
    }
}

/// A plugin instance as the glue holds it.
struct Instance<T> {
    plugin: T,
    ctx: Context,
}

fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic with a non-string payload".to_owned()
    }
}

thread_local! {
    /// Where the last panic on this thread happened, recorded by the glue's panic hook.
    static PANIC_LOCATION: std::cell::RefCell<Option<String>> = const { std::cell::RefCell::new(None) };
}

/// Replaces the default panic hook of this library's copy of `std` (which would print a
/// backtrace to the host's stderr) by one that records the location; the message and location
/// go back to the host, which logs them with the plugin's name. Installed once per library.
fn install_panic_hook() {
    static INSTALLED: std::sync::Once = std::sync::Once::new();
    INSTALLED.call_once(|| {
        std::panic::set_hook(Box::new(|info| {
            let location = info
                .location()
                .map(|l| format!("{}:{}:{}", l.file(), l.line(), l.column()));
            let _ = PANIC_LOCATION.try_with(|slot| *slot.borrow_mut() = location);
        }));
    });
}

/// Runs `f`, turning a panic into [`STATUS_PANIC`]: no unwind ever crosses the boundary.
fn guarded(f: impl FnOnce() -> RawResult) -> RawResult {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(result) => result,
        Err(payload) => {
            let mut message = panic_message(payload.as_ref());
            if let Ok(Some(location)) = PANIC_LOCATION.try_with(|slot| slot.borrow_mut().take()) {
                message.push_str(" (at ");
                message.push_str(&location);
                message.push(')');
            }
            // Dropping the payload may itself panic; never let that escape either.
            let _ = catch_unwind(AssertUnwindSafe(move || drop(payload)));
            RawResult::panic(message)
        }
    }
}

fn unit_result(result: Result<(), Error>) -> RawResult {
    match result {
        Ok(()) => RawResult::ok(Vec::new()),
        Err(e) => RawResult::error(&e),
    }
}

/// The generated glue for one plugin type. `export_plugin!` instantiates it in the plugin crate,
/// so all of this code lives in the plugin library.
#[derive(Debug)]
pub struct Glue<T>(std::marker::PhantomData<T>);

impl<T: Plugin> Glue<T> {
    /// The function table `plugin_host_entry` returns.
    pub const VTABLE: PluginVTable = PluginVTable {
        size: size_of::<PluginVTable>(),
        create: Self::create,
        initialize: Self::initialize,
        execute: Self::execute,
        enable: Self::enable,
        disable: Self::disable,
        cleanup: Self::cleanup,
        deliver: Self::deliver,
        destroy: Self::destroy,
    };

    /// Body of the exported `plugin_host_entry` symbol.
    pub fn entry(host_abi_major: u32) -> *const PluginVTable {
        if host_abi_major != ABI_MAJOR {
            return std::ptr::null();
        }
        &Self::VTABLE
    }

    /// Runs `f` on the instance behind `instance`.
    fn with_instance(
        instance: InstancePtr,
        f: impl FnOnce(&mut Instance<T>) -> RawResult,
    ) -> RawResult {
        guarded(|| {
            if instance.is_null() {
                return RawResult::error(&Error::new("invalid_instance", "null plugin instance"));
            }
            // SAFETY: `instance` came from `create` of this same glue and has not been
            // destroyed; the host calls into one instance from one thread at a time
            // (docs/abi.md, threading), so this is the only reference.
            let instance = unsafe { &mut *instance.cast::<Instance<T>>() };
            f(instance)
        })
    }

    extern "C" fn create(
        host: *const HostVTable,
        ctx: ContextPtr,
        out: *mut InstancePtr,
    ) -> RawResult {
        guarded(|| {
            if host.is_null() || out.is_null() {
                return RawResult::error(&Error::new("invalid_argument", "null host table"));
            }
            // SAFETY: `host` is non-null and points to the host's table for the process lifetime.
            let size = unsafe { (*host).size };
            if size < size_of::<HostVTable>() {
                return RawResult::error(&Error::new(
                    "incompatible_abi",
                    format!(
                        "host function table has {size} bytes, plugin needs {}",
                        size_of::<HostVTable>()
                    ),
                ));
            }
            install_panic_hook();
            let host = HostRef { vtable: host, ctx };
            let ctx = Context::new(Arc::new(ContextInner::new(host)));
            let instance = Box::new(Instance {
                plugin: T::default(),
                ctx,
            });
            // SAFETY: `out` is non-null and points to writable storage provided by the host.
            unsafe { out.write(Box::into_raw(instance).cast()) };
            RawResult::ok(Vec::new())
        })
    }

    extern "C" fn initialize(instance: InstancePtr) -> RawResult {
        Self::with_instance(instance, |i| unit_result(i.plugin.initialize(&i.ctx)))
    }

    extern "C" fn execute(instance: InstancePtr, input: RawSlice) -> RawResult {
        Self::with_instance(instance, |i| {
            // SAFETY: the host keeps `input` alive and unchanged for this call.
            let bytes = unsafe { input.as_bytes() };
            let input = match serde_json::from_slice(bytes) {
                Ok(value) => value,
                Err(e) => {
                    return RawResult::error(&Error::new(
                        "bad_request",
                        format!("input is not JSON: {e}"),
                    ));
                }
            };
            match i.plugin.execute(&i.ctx, input) {
                Ok(output) => match serde_json::to_vec(&output) {
                    Ok(bytes) => RawResult::ok(bytes),
                    Err(e) => RawResult::error(&Error::from(e)),
                },
                Err(e) => RawResult::error(&e),
            }
        })
    }

    extern "C" fn enable(instance: InstancePtr) -> RawResult {
        Self::with_instance(instance, |i| unit_result(i.plugin.enable(&i.ctx)))
    }

    extern "C" fn disable(instance: InstancePtr) -> RawResult {
        Self::with_instance(instance, |i| unit_result(i.plugin.disable(&i.ctx)))
    }

    extern "C" fn cleanup(instance: InstancePtr) -> RawResult {
        Self::with_instance(instance, |i| unit_result(i.plugin.cleanup(&i.ctx)))
    }

    extern "C" fn deliver(
        instance: InstancePtr,
        id: u64,
        name: RawSlice,
        payload: RawSlice,
    ) -> RawResult {
        Self::with_instance(instance, |i| {
            // SAFETY: the host keeps both slices alive and unchanged for this call.
            let (name, payload) = unsafe { (name.as_bytes(), payload.as_bytes()) };
            let name = String::from_utf8_lossy(name);
            unit_result(i.ctx.inner().deliver(id, &name, payload))
        })
    }

    extern "C" fn destroy(instance: InstancePtr) -> RawResult {
        guarded(|| {
            if !instance.is_null() {
                // SAFETY: `instance` came from `Box::into_raw` in `create` and the host destroys
                // it exactly once, after its last call.
                drop(unsafe { Box::from_raw(instance.cast::<Instance<T>>()) });
            }
            RawResult::ok(Vec::new())
        })
    }
}
