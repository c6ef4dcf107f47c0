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
use std::sync::{Arc, PoisonError, RwLock};

use crate::context::{Context, ContextInner};
use crate::functions::{Entry, Functions};
use crate::{Error, Plugin};

/// ABI major version. A host accepts only plugins with exactly this major version.
pub const ABI_MAJOR: u32 = 1;
/// API minor version. A host accepts plugins whose minor version is at most its own. Bumped
/// for an appended table field or a new host service request (1: `topics` `produce_batch`;
/// 2: typed named functions: [`PluginVTable::call`], [`HostVTable::call_function`],
/// [`HostVTable::max_level`], the manifest's `functions` and [`FLAG_CONCURRENT`]; 3: batched
/// event deliveries, [`PluginVTable::deliver_batch`]).
pub const API_MINOR: u32 = 3;
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

/// [`DeclarationHeader::reserved`] bit 0: the plugin is `concurrent` (its type is `Sync`): the
/// host may run [`PluginVTable::call`] of different calls on several threads at once, beside the
/// hooks, `execute` and `deliver`, which still come one at a time from the instance's worker
/// thread (the glue's lock makes every `&mut self` method wait for the shared calls). `destroy`
/// never overlaps anything.
pub const FLAG_CONCURRENT: u32 = 1;

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
    /// Flag word: [`FLAG_CONCURRENT`] (API minor 2); other bits zero.
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
    /// Builds the declaration for a manifest already encoded as JSON, with `flags` in the
    /// header's flag word.
    pub const fn new(manifest: [u8; N], flags: u32) -> Self {
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
                reserved: flags,
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

/// One event of a [`PluginVTable::deliver_batch`] call: the subscription it is for, its name and
/// its payload, borrowed for the call.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct RawDelivery {
    /// The subscription id the host assigned.
    pub id: u64,
    /// The event's name (UTF-8).
    pub name: RawSlice,
    /// The event's payload.
    pub payload: RawSlice,
}

/// Frees a [`RawBuf`] allocated by the library that owns this function.
///
/// `unsafe` to call: `ptr`, `len` and `cap` must be exactly those of the [`RawBuf`] that carried
/// this function, and it must be called once.
pub type FreeFn = unsafe extern "C" fn(ptr: *mut u8, len: usize, cap: usize);

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

/// # Safety
/// `ptr`, `len` and `cap` come from [`RawBuf::from_vec`] of this library, unchanged, and this is
/// the one call that frees them ([`FreeFn`]).
unsafe extern "C" fn free_vec(ptr: *mut u8, len: usize, cap: usize) {
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
            // SAFETY: `free` came with this buffer and is called once, with the buffer's own
            // ptr/len/cap, as its contract (`FreeFn`) requires; the caller does not use the
            // buffer again.
            unsafe { free(self.ptr, self.len, self.cap) };
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

/// Reads the output of [`PluginVTable::destroy`]: how many clones of the instance's context the
/// plugin still held after the instance and its handlers were dropped (a thread it left running,
/// or a value it leaked). `None` when the plugin did not say (built before this was reported).
pub fn live_contexts(destroy_output: &[u8]) -> Option<u64> {
    let bytes: [u8; 8] = destroy_output.try_into().ok()?;
    Some(u64::from_le_bytes(bytes))
}

/// Opaque pointer to a plugin instance, owned by the plugin library.
pub type InstancePtr = *mut c_void;
/// Opaque pointer to the host's per-instance context, owned by the host.
pub type ContextPtr = *const c_void;

/// Functions a plugin exports to the host. Later ABI minors append fields; `size` tells the
/// host which fields exist.
///
/// Every function is `unsafe` to call: `instance` must be a live pointer this table's `create`
/// produced (not yet destroyed), called from one thread at a time (except `call` of a
/// [`FLAG_CONCURRENT`] plugin, which may overlap with any call but `destroy`), and every
/// [`RawSlice`] must be valid for the call (docs/abi.md). Declaring them `unsafe extern "C" fn` changes no layout:
/// it is the same pointer, with the same calling convention.
#[repr(C)]
#[derive(Debug)]
pub struct PluginVTable {
    /// `size_of::<PluginVTable>()` as the plugin saw it.
    pub size: usize,
    /// Creates an instance bound to a host context (its value is built by `initialize`); writes
    /// it to `out`.
    pub create: unsafe extern "C" fn(
        host: *const HostVTable,
        ctx: ContextPtr,
        out: *mut InstancePtr,
    ) -> RawResult,
    /// Builds the plugin's value (`Plugin::new`; `Plugin::initialize` before minor 2).
    pub initialize: unsafe extern "C" fn(instance: InstancePtr) -> RawResult,
    /// `Plugin::execute`: JSON in, JSON out.
    pub execute: unsafe extern "C" fn(instance: InstancePtr, input: RawSlice) -> RawResult,
    /// `Plugin::enable`.
    pub enable: unsafe extern "C" fn(instance: InstancePtr) -> RawResult,
    /// `Plugin::disable`.
    pub disable: unsafe extern "C" fn(instance: InstancePtr) -> RawResult,
    /// `Plugin::cleanup`.
    pub cleanup: unsafe extern "C" fn(instance: InstancePtr) -> RawResult,
    /// Delivers an event to the handler registered as subscription `id`.
    pub deliver: unsafe extern "C" fn(
        instance: InstancePtr,
        id: u64,
        name: RawSlice,
        payload: RawSlice,
    ) -> RawResult,
    /// Drops the instance (its drop code runs in the plugin). The pointer is dead afterwards.
    pub destroy: unsafe extern "C" fn(instance: InstancePtr) -> RawResult,
    /// API minor 2: calls the named function `function` (UTF-8) with a JSON input; JSON out.
    /// An unknown name fails with `function_not_found`. In a [`FLAG_CONCURRENT`] plugin it may
    /// run on several threads at once.
    pub call: unsafe extern "C" fn(
        instance: InstancePtr,
        function: RawSlice,
        input: RawSlice,
    ) -> RawResult,
    /// API minor 3: delivers `len` events in order, each exactly as [`PluginVTable::deliver`]
    /// would (a handler's failure or panic is contained to its own event), in one call. The
    /// output is empty when every handler succeeded; otherwise it lists the events that did
    /// not, as JSON `[{"index", "status", "code", "message"}]` (`status` as in [`RawResult`];
    /// `code` empty for a panic).
    pub deliver_batch: unsafe extern "C" fn(
        instance: InstancePtr,
        deliveries: *const RawDelivery,
        len: usize,
    ) -> RawResult,
}

/// Size of a [`PluginVTable`] of API minor 2 (everything before
/// [`PluginVTable::deliver_batch`]): a table at least this long has `call`.
pub const PLUGIN_VTABLE_MINOR2_SIZE: usize = std::mem::offset_of!(PluginVTable, deliver_batch);

/// Size of a [`PluginVTable`] of API minor 0 and 1 (everything before [`PluginVTable::call`]):
/// the smallest table a host of this ABI major accepts.
pub const PLUGIN_VTABLE_MIN_SIZE: usize = std::mem::offset_of!(PluginVTable, call);

/// Functions the host offers a plugin. Every function takes the instance's context pointer and
/// never unwinds; failures come back as [`STATUS_ERROR`] with a JSON error.
///
/// Every function is `unsafe` to call: `ctx` must be the value the host passed to `create`,
/// every [`RawSlice`] must be valid for the call, and out-pointers null or writable
/// (docs/abi.md).
#[repr(C)]
#[derive(Debug)]
pub struct HostVTable {
    /// `size_of::<HostVTable>()` as the host saw it.
    pub size: usize,
    /// Writes a log line attributed to the plugin (levels: 1 error .. 5 trace).
    pub log: unsafe extern "C" fn(ctx: ContextPtr, level: u32, message: RawSlice),
    /// Resolves a declared dependency; on success writes its generation to `out_generation`.
    pub dependency: unsafe extern "C" fn(
        ctx: ContextPtr,
        name: RawSlice,
        out_generation: *mut u64,
    ) -> RawResult,
    /// Calls `execute` of a declared dependency, as resolved at `generation`.
    pub call_dependency: unsafe extern "C" fn(
        ctx: ContextPtr,
        name: RawSlice,
        generation: u64,
        input: RawSlice,
    ) -> RawResult,
    /// Emits an event on the host's bus (`flags` bit 0: the payload is raw bytes, not JSON).
    pub emit: unsafe extern "C" fn(
        ctx: ContextPtr,
        name: RawSlice,
        payload: RawSlice,
        flags: u32,
    ) -> RawResult,
    /// Subscribes to a pattern (`once` non-zero: a single delivery); writes the id to `out_id`.
    pub subscribe: unsafe extern "C" fn(
        ctx: ContextPtr,
        pattern: RawSlice,
        once: u32,
        out_id: *mut u64,
    ) -> RawResult,
    /// Removes one subscription of this plugin.
    pub unsubscribe: unsafe extern "C" fn(ctx: ContextPtr, id: u64) -> RawResult,
    /// Calls a named host service (resources) with a JSON request; JSON response.
    pub call:
        unsafe extern "C" fn(ctx: ContextPtr, service: RawSlice, input: RawSlice) -> RawResult,
    /// API minor 2: calls the named function `function` of a declared dependency, as resolved
    /// at `generation` (the rules of `call_dependency`).
    pub call_function: unsafe extern "C" fn(
        ctx: ContextPtr,
        name: RawSlice,
        generation: u64,
        function: RawSlice,
        input: RawSlice,
    ) -> RawResult,
    /// API minor 2: the most verbose level the host's log keeps for this plugin (0 off, 1 error
    /// .. 5 trace), so a plugin can skip building records nobody reads.
    pub max_level: unsafe extern "C" fn(ctx: ContextPtr) -> u32,
}

/// The host side of one plugin instance, as the plugin sees it: the host's function table and
/// the context value to pass back (opaque to the plugin: it only hands it back).
#[derive(Debug, Clone, Copy)]
pub(crate) struct HostRef {
    vtable: *const HostVTable,
    ctx: ContextPtr,
}

// SAFETY: `vtable` points to the host's `static` table, which lives as long as the process and
// whose functions are thread-safe; `ctx` is an opaque value that the host resolves and checks on
// every call, so it is never dereferenced here and stays harmless after the instance is gone
// (docs/abi.md, lifetimes).
unsafe impl Send for HostRef {}
// SAFETY: as above; the host functions may be called from any thread.
unsafe impl Sync for HostRef {}

/// The contract every call through [`HostVTable`] below relies on, checked once here: the table
/// is the host's static table (`create` checked its size), `self.ctx` is the value the host gave
/// with it, and every [`RawSlice`] and out-pointer borrows a local of the calling frame that
/// outlives the call (docs/abi.md, calls and lifetimes).
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
        // SAFETY: the host's `log` with its own context value; `message` borrows `message`,
        // alive for the call (see the contract on this impl).
        unsafe { (self.vtable().log)(self.ctx, level, RawSlice::new(message.as_bytes())) };
    }

    pub(crate) fn dependency(&self, name: &str) -> Result<u64, Error> {
        let mut generation = 0u64;
        // SAFETY: the host's `dependency`; `name` is borrowed and `generation` is a writable
        // local, both alive for the call (see the contract on this impl).
        let result = unsafe {
            (self.vtable().dependency)(self.ctx, RawSlice::new(name.as_bytes()), &mut generation)
        };
        Self::finish(result).map(|_| generation)
    }

    pub(crate) fn call_dependency(
        &self,
        name: &str,
        generation: u64,
        input: &[u8],
    ) -> Result<Vec<u8>, Error> {
        // SAFETY: the host's `call_dependency`; both slices borrow arguments alive for the call
        // (see the contract on this impl).
        let result = unsafe {
            (self.vtable().call_dependency)(
                self.ctx,
                RawSlice::new(name.as_bytes()),
                generation,
                RawSlice::new(input),
            )
        };
        Self::finish(result)
    }

    pub(crate) fn emit(&self, name: &str, payload: &[u8], raw: bool) -> Result<(), Error> {
        // SAFETY: the host's `emit`; both slices borrow arguments alive for the call (see the
        // contract on this impl).
        let result = unsafe {
            (self.vtable().emit)(
                self.ctx,
                RawSlice::new(name.as_bytes()),
                RawSlice::new(payload),
                u32::from(raw),
            )
        };
        Self::finish(result).map(drop)
    }

    pub(crate) fn subscribe(&self, pattern: &str, once: bool) -> Result<u64, Error> {
        let mut id = 0u64;
        // SAFETY: the host's `subscribe`; `pattern` is borrowed and `id` is a writable local,
        // both alive for the call (see the contract on this impl).
        let result = unsafe {
            (self.vtable().subscribe)(
                self.ctx,
                RawSlice::new(pattern.as_bytes()),
                u32::from(once),
                &mut id,
            )
        };
        Self::finish(result).map(|_| id)
    }

    pub(crate) fn unsubscribe(&self, id: u64) -> Result<(), Error> {
        // SAFETY: the host's `unsubscribe` with its own context value; no pointer argument.
        Self::finish(unsafe { (self.vtable().unsubscribe)(self.ctx, id) }).map(drop)
    }

    pub(crate) fn call_function(
        &self,
        name: &str,
        generation: u64,
        function: &str,
        input: &[u8],
    ) -> Result<Vec<u8>, Error> {
        // SAFETY: the host's `call_function`; the three slices borrow arguments alive for the
        // call (see the contract on this impl).
        let result = unsafe {
            (self.vtable().call_function)(
                self.ctx,
                RawSlice::new(name.as_bytes()),
                generation,
                RawSlice::new(function.as_bytes()),
                RawSlice::new(input),
            )
        };
        Self::finish(result)
    }

    pub(crate) fn max_level(&self) -> u32 {
        // SAFETY: the host's `max_level` with its own context value; no pointer argument.
        unsafe { (self.vtable().max_level)(self.ctx) }
    }

    pub(crate) fn call(&self, service: &str, input: &[u8]) -> Result<Vec<u8>, Error> {
        // SAFETY: the host's `call`; both slices borrow arguments alive for the call (see the
        // contract on this impl).
        let result = unsafe {
            (self.vtable().call)(
                self.ctx,
                RawSlice::new(service.as_bytes()),
                RawSlice::new(input),
            )
        };
        Self::finish(result)
    }
}

/// A plugin instance as the glue holds it. The value is built by `initialize` (`Plugin::new`)
/// and lives behind a lock: `&mut self` methods take it exclusively, `&self` functions share
/// it (several at once only in a [`FLAG_CONCURRENT`] plugin, whose type the export macro checked
/// is `Sync`).
struct Instance<T> {
    plugin: RwLock<Option<T>>,
    ctx: Context,
    functions: Functions<T>,
}

impl<T: Plugin> Instance<T> {
    fn not_ready() -> Error {
        Error::new("not_initialized", "the plugin instance was not initialised")
    }

    /// Runs `f` with the value alone (a panic in an earlier call does not lock it forever).
    fn exclusive(&self, f: impl FnOnce(&mut T, &Context) -> Result<Vec<u8>, Error>) -> RawResult {
        let mut guard = self.plugin.write().unwrap_or_else(PoisonError::into_inner);
        bytes_result(match guard.as_mut() {
            Some(plugin) => f(plugin, &self.ctx),
            None => Err(Self::not_ready()),
        })
    }

    fn shared(&self, f: impl FnOnce(&T, &Context) -> Result<Vec<u8>, Error>) -> RawResult {
        let guard = self.plugin.read().unwrap_or_else(PoisonError::into_inner);
        bytes_result(match guard.as_ref() {
            Some(plugin) => f(plugin, &self.ctx),
            None => Err(Self::not_ready()),
        })
    }
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

fn bytes_result(result: Result<Vec<u8>, Error>) -> RawResult {
    match result {
        Ok(bytes) => RawResult::ok(bytes),
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
        call: Self::call,
        deliver_batch: Self::deliver_batch,
    };

    /// Body of the exported `plugin_host_entry` symbol.
    pub fn entry(host_abi_major: u32) -> *const PluginVTable {
        if host_abi_major != ABI_MAJOR {
            return std::ptr::null();
        }
        &Self::VTABLE
    }

    /// Runs `f` on the instance behind `instance`.
    ///
    /// # Safety
    /// `instance` is null or a pointer `create` of this glue returned and `destroy` has not
    /// consumed; calls overlap only as the [`PluginVTable`] contract allows (`call` of a
    /// [`FLAG_CONCURRENT`] plugin, whose type is `Sync`).
    unsafe fn with_instance(
        instance: InstancePtr,
        f: impl FnOnce(&Instance<T>) -> RawResult,
    ) -> RawResult {
        guarded(|| {
            if instance.is_null() {
                return RawResult::error(&Error::new("invalid_instance", "null plugin instance"));
            }
            // SAFETY: `instance` came from `create` of this same glue and has not been
            // destroyed; only shared references are made, and the value inside is reached
            // through its lock. Overlapping calls happen only in a concurrent plugin, whose
            // type `export_plugin!(T, concurrent)` checked is `Sync` (this fn's contract).
            let instance = unsafe { &*instance.cast::<Instance<T>>() };
            f(instance)
        })
    }

    /// `PluginVTable::create`: binds the instance to its host context, installs the `log`
    /// facade and checks the registered functions against the manifest. The plugin's value is
    /// built later, by `initialize`.
    ///
    /// # Safety
    /// `host` is null or the host's table, `out` null or writable (the [`PluginVTable`] contract).
    unsafe extern "C" fn create(
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
            let mut functions = Functions::new();
            T::functions(&mut functions);
            if let Err(e) = functions.check(T::MANIFEST.functions) {
                return RawResult::error(&e);
            }
            let host = HostRef { vtable: host, ctx };
            crate::logging::install(host);
            let ctx = Context::new(Arc::new(ContextInner::new(host)));
            let instance = Box::new(Instance::<T> {
                plugin: RwLock::new(None),
                ctx,
                functions,
            });
            // SAFETY: `out` is non-null and points to writable storage provided by the host.
            unsafe { out.write(Box::into_raw(instance).cast()) };
            RawResult::ok(Vec::new())
        })
    }

    /// `PluginVTable::initialize`: `Plugin::new`.
    ///
    /// # Safety
    /// The [`PluginVTable`] contract (see [`Glue::with_instance`]).
    unsafe extern "C" fn initialize(instance: InstancePtr) -> RawResult {
        let run = |i: &Instance<T>| {
            let plugin = match T::new(&i.ctx) {
                Ok(plugin) => plugin,
                Err(e) => return RawResult::error(&e),
            };
            *i.plugin.write().unwrap_or_else(PoisonError::into_inner) = Some(plugin);
            RawResult::ok(Vec::new())
        };
        // SAFETY: forwarded from this function's own contract.
        unsafe { Self::with_instance(instance, run) }
    }

    /// `PluginVTable::execute`.
    ///
    /// # Safety
    /// The [`PluginVTable`] contract; `input` is valid for the call.
    unsafe extern "C" fn execute(instance: InstancePtr, input: RawSlice) -> RawResult {
        let run = |i: &Instance<T>| {
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
            i.exclusive(|plugin, ctx| Ok(serde_json::to_vec(&plugin.execute(ctx, input)?)?))
        };
        // SAFETY: forwarded from this function's own contract.
        unsafe { Self::with_instance(instance, run) }
    }

    /// `PluginVTable::call`: a named function.
    ///
    /// # Safety
    /// The [`PluginVTable`] contract; `function` and `input` are valid for the call.
    unsafe extern "C" fn call(
        instance: InstancePtr,
        function: RawSlice,
        input: RawSlice,
    ) -> RawResult {
        let run = |i: &Instance<T>| {
            // SAFETY: the host keeps both slices alive and unchanged for this call.
            let (function, input) = unsafe { (function.as_bytes(), input.as_bytes()) };
            let function = String::from_utf8_lossy(function);
            match i.functions.get(&function) {
                Some(Entry::Exclusive(f)) => i.exclusive(|plugin, ctx| f(plugin, ctx, input)),
                Some(Entry::Shared(f)) => i.shared(|plugin, ctx| f(plugin, ctx, input)),
                None => RawResult::error(&Error::new(
                    "function_not_found",
                    format!("`{}` has no function `{function}`", T::MANIFEST.name),
                )),
            }
        };
        // SAFETY: forwarded from this function's own contract.
        unsafe { Self::with_instance(instance, run) }
    }

    /// Runs a unit hook with the value alone.
    ///
    /// # Safety
    /// The [`PluginVTable`] contract.
    unsafe fn hook(
        instance: InstancePtr,
        f: impl FnOnce(&mut T, &Context) -> Result<(), Error>,
    ) -> RawResult {
        // SAFETY: forwarded from this function's own contract.
        unsafe {
            Self::with_instance(instance, |i| {
                i.exclusive(|plugin, ctx| f(plugin, ctx).map(|()| Vec::new()))
            })
        }
    }

    /// `PluginVTable::enable`.
    ///
    /// # Safety
    /// The [`PluginVTable`] contract.
    unsafe extern "C" fn enable(instance: InstancePtr) -> RawResult {
        // SAFETY: forwarded from this function's own contract.
        unsafe { Self::hook(instance, T::enable) }
    }

    /// `PluginVTable::disable`.
    ///
    /// # Safety
    /// The [`PluginVTable`] contract.
    unsafe extern "C" fn disable(instance: InstancePtr) -> RawResult {
        // SAFETY: forwarded from this function's own contract.
        unsafe { Self::hook(instance, T::disable) }
    }

    /// `PluginVTable::cleanup`.
    ///
    /// # Safety
    /// The [`PluginVTable`] contract.
    unsafe extern "C" fn cleanup(instance: InstancePtr) -> RawResult {
        // SAFETY: forwarded from this function's own contract.
        unsafe { Self::hook(instance, T::cleanup) }
    }

    /// `PluginVTable::deliver`.
    ///
    /// # Safety
    /// The [`PluginVTable`] contract; `name` and `payload` are valid for the call.
    unsafe extern "C" fn deliver(
        instance: InstancePtr,
        id: u64,
        name: RawSlice,
        payload: RawSlice,
    ) -> RawResult {
        let run = |i: &Instance<T>| {
            // SAFETY: the host keeps both slices alive and unchanged for this call.
            let (name, payload) = unsafe { (name.as_bytes(), payload.as_bytes()) };
            let name = String::from_utf8_lossy(name);
            bytes_result(
                i.ctx
                    .inner()
                    .deliver(id, &name, payload)
                    .map(|()| Vec::new()),
            )
        };
        // SAFETY: forwarded from this function's own contract.
        unsafe { Self::with_instance(instance, run) }
    }

    /// `PluginVTable::deliver_batch`: each event as `deliver` would, each under its own panic
    /// guard, in order; only the failures are reported.
    ///
    /// # Safety
    /// The [`PluginVTable`] contract; `deliveries` points to `len` entries whose slices are
    /// valid for the call.
    unsafe extern "C" fn deliver_batch(
        instance: InstancePtr,
        deliveries: *const RawDelivery,
        len: usize,
    ) -> RawResult {
        let run = |i: &Instance<T>| {
            if deliveries.is_null() && len > 0 {
                return RawResult::error(&Error::new("invalid_argument", "null deliveries"));
            }
            let entries = if len == 0 {
                &[][..]
            } else {
                // SAFETY: the host passes `len` initialised entries, alive for this call.
                unsafe { std::slice::from_raw_parts(deliveries, len) }
            };
            let mut failures = Vec::new();
            let inner = i.ctx.inner();
            for (index, entry) in entries.iter().enumerate() {
                let result = guarded(|| {
                    // SAFETY: the host keeps every entry's slices alive for this call.
                    let (name, payload) =
                        unsafe { (entry.name.as_bytes(), entry.payload.as_bytes()) };
                    let name = String::from_utf8_lossy(name);
                    bytes_result(inner.deliver(entry.id, &name, payload).map(|()| Vec::new()))
                });
                if result.status == STATUS_OK {
                    continue;
                }
                // SAFETY: a result this glue just made, consumed once.
                let (status, bytes) = unsafe { result.into_parts() };
                let (code, message) = if status == STATUS_PANIC {
                    (String::new(), String::from_utf8_lossy(&bytes).into_owned())
                } else {
                    match serde_json::from_slice::<Error>(&bytes) {
                        Ok(e) => (e.code, e.message),
                        Err(_) => (
                            "plugin_error".to_owned(),
                            String::from_utf8_lossy(&bytes).into_owned(),
                        ),
                    }
                };
                failures.push(serde_json::json!({
                    "index": index, "status": status, "code": code, "message": message,
                }));
            }
            if failures.is_empty() {
                RawResult::ok(Vec::new())
            } else {
                bytes_result(serde_json::to_vec(&failures).map_err(Error::from))
            }
        };
        // SAFETY: forwarded from this function's own contract.
        unsafe { Self::with_instance(instance, run) }
    }

    /// `PluginVTable::destroy`: drops every registered handler, then the instance, and answers
    /// how many clones of the instance's [`Context`] are still alive afterwards (8 bytes,
    /// little-endian; see [`live_contexts`]).
    ///
    /// Handlers are dropped first and explicitly because a handler that captured a clone of
    /// its context forms a cycle (context → handler map → handler → context) that dropping the
    /// instance alone never breaks: its state would leak and its drop code never run. A context
    /// still alive after that is held by something the plugin leaked or by a thread it left
    /// running; the host then keeps the library mapped instead of closing code that may run.
    ///
    /// # Safety
    /// The [`PluginVTable`] contract; this is the instance's last call.
    unsafe extern "C" fn destroy(instance: InstancePtr) -> RawResult {
        guarded(|| {
            if instance.is_null() {
                return RawResult::ok(Vec::new());
            }
            // SAFETY: `instance` came from `Box::into_raw` in `create` and the host destroys
            // it exactly once, after its last call (this fn's contract).
            let instance = unsafe { Box::from_raw(instance.cast::<Instance<T>>()) };
            let ctx = instance.ctx.downgrade();
            instance.ctx.inner().drop_handlers();
            drop(instance);
            let live = ctx.strong_count() as u64;
            RawResult::ok(live.to_le_bytes().to_vec())
        })
    }
}
