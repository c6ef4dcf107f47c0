//! A plugin instance's own host-owned thread and its bounded mailbox.
//!
//! The thread opens the library (so even its initialisers run here), creates the instance, then
//! runs jobs in order: hooks, execute calls, event deliveries. `Stop` destroys the instance and
//! hands the library back; the manager joins the thread *before* closing the library, because a
//! library is only unmapped cleanly once every thread that ran its code has exited
//! (thread-local destructors). Plugin code never runs on any other thread.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TrySendError, bounded};
use plugin_api::ffi::DeclarationHeader;

use crate::bus::{BusEvent, Delivery, Mailbox};
use crate::error::{Error, Operation, Result};
use crate::loader::{CallError, Hook, HostContext, Library, TrustedPath};

/// Per-instance counters, shared by the worker, the bus and the manager.
#[derive(Debug, Default)]
pub(crate) struct Stats {
    pub(crate) executes: AtomicU64,
    pub(crate) execute_errors: AtomicU64,
    pub(crate) events_delivered: AtomicU64,
    pub(crate) events_failed: AtomicU64,
    pub(crate) events_dropped: AtomicU64,
}

type Reply = Sender<Result<Vec<u8>, CallError>>;

/// One call of a plugin: its default function (`execute`) or a named one, with its JSON input.
#[derive(Debug)]
pub(crate) struct Invocation {
    /// The named function; `None` for `execute`.
    pub(crate) function: Option<String>,
    /// The input, JSON.
    pub(crate) input: Vec<u8>,
    /// Its own time limit (`None`: the manager's execute timeout).
    pub(crate) timeout: Option<std::time::Duration>,
}

impl Invocation {
    /// A call of the default function.
    pub(crate) fn execute(input: Vec<u8>) -> Self {
        Self {
            function: None,
            input,
            timeout: None,
        }
    }

    /// The operation's name in errors: `execute` or `call`.
    pub(crate) fn operation(&self) -> Operation {
        if self.function.is_some() {
            Operation::Call
        } else {
            Operation::Execute
        }
    }
}

enum Job {
    Hook(Hook, Reply),
    Execute(Invocation, Reply),
    Deliver(u64, Arc<BusEvent>),
    /// A topic message: delivered like an event, but the sender waits for the handler's result
    /// (it commits the offset only on success).
    DeliverWait(u64, String, Vec<u8>, Reply),
    Stop,
}

const RUNNING: u8 = 0;
const FINISHED: u8 = 1;
const ABANDONED: u8 = 2;

/// How a worker ended.
#[derive(Debug)]
pub(crate) enum Ended {
    /// The thread exited; here is the library to close (none if opening failed).
    Joined(Option<Library>),
    /// The thread did not finish in time; it and its library are leaked, never closed.
    Abandoned,
}

/// Why a call did not produce a plugin answer.
#[derive(Debug)]
pub(crate) enum CallFailure {
    Plugin(CallError),
    Timeout,
    /// The mailbox is closed: the instance is stopping or gone.
    Gone,
}

/// Handle to a running worker.
#[derive(Debug)]
pub(crate) struct Worker {
    tx: Sender<Job>,
    done: Receiver<()>,
    fate: Arc<AtomicU8>,
    handle: Option<JoinHandle<Option<Library>>>,
}

/// The sending half, for callers that only queue jobs (cheap to clone).
#[derive(Debug, Clone)]
pub(crate) struct MailboxHandle {
    tx: Sender<Job>,
    plugin: Arc<str>,
    stats: Arc<Stats>,
}

/// What the worker needs to start.
pub(crate) struct Spawn {
    pub(crate) shadow: TrustedPath,
    pub(crate) original: PathBuf,
    pub(crate) header: DeclarationHeader,
    pub(crate) ctx: Arc<HostContext>,
    pub(crate) stats: Arc<Stats>,
    pub(crate) capacity: usize,
    /// Threads of the pool that runs a concurrent plugin's named functions (ignored for an
    /// exclusive plugin, which runs everything on its worker thread).
    pub(crate) threads: usize,
    /// Run as each job starts, before the plugin's code: ends a cancellation of its tables
    /// session raised by an earlier call that timed out.
    pub(crate) on_call: Option<Arc<dyn Fn() + Send + Sync>>,
}

impl Worker {
    /// Spawns the thread, opens the library and creates the instance there. Waits at most
    /// `timeout` for that; a library whose initialisers hang is abandoned.
    pub(crate) fn start(
        spawn: Spawn,
        timeout: Duration,
        close: impl FnOnce(Library),
    ) -> Result<(Self, MailboxHandle)> {
        let (tx, rx) = bounded::<Job>(spawn.capacity.max(1));
        let (ready_tx, ready_rx) = bounded::<Result<(), Error>>(1);
        let (done_tx, done_rx) = bounded::<()>(1);
        let fate = Arc::new(AtomicU8::new(RUNNING));
        let plugin: Arc<str> = Arc::from(spawn.ctx.plugin.as_str());
        let stats = Arc::clone(&spawn.stats);
        let thread_fate = Arc::clone(&fate);
        let name = format!("plugin-{}", spawn.ctx.plugin);
        let thread_name = name.clone();
        let handle = std::thread::Builder::new()
            .name(thread_name)
            .spawn(move || run(spawn, rx, ready_tx, done_tx, thread_fate))
            .map_err(|e| Error::Internal {
                message: format!("cannot spawn thread {name}: {e}"),
            })?;
        let worker = Self {
            tx: tx.clone(),
            done: done_rx,
            fate,
            handle: Some(handle),
        };
        let mailbox = MailboxHandle { tx, plugin, stats };
        match recv_within(&ready_rx, timeout) {
            Ok(Ok(())) => Ok((worker, mailbox)),
            Ok(Err(e)) => {
                // The thread has finished; join it and close the library, if any, here.
                if let Ended::Joined(Some(library)) = worker.finish(timeout) {
                    close(library);
                }
                Err(e)
            }
            Err(_) => {
                let plugin = mailbox.plugin.to_string();
                worker.abandon();
                Err(Error::Timeout {
                    plugin,
                    operation: Operation::Open,
                    after: timeout,
                })
            }
        }
    }

    /// Stops after the queued jobs (drain), destroys the instance, joins the thread. Gives up
    /// after `timeout`, leaking the thread and library rather than closing code that may run.
    pub(crate) fn stop(mut self, timeout: Duration) -> Ended {
        let deadline = Instant::now() + timeout;
        if self.tx.send_timeout(Job::Stop, timeout).is_err() {
            return self.abandon_or_join();
        }
        match self
            .done
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        {
            Ok(()) => self.join(),
            Err(_) => self.abandon_or_join(),
        }
    }

    fn finish(mut self, timeout: Duration) -> Ended {
        match recv_within(&self.done, timeout) {
            Ok(()) => self.join(),
            Err(_) => self.abandon_or_join(),
        }
    }

    fn abandon_or_join(&mut self) -> Ended {
        if self
            .fate
            .compare_exchange(RUNNING, ABANDONED, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            // Detach: the thread keeps running (it may be stuck in plugin code forever); it will
            // leak the library instead of closing it.
            self.handle.take();
            Ended::Abandoned
        } else {
            self.join()
        }
    }

    /// Leaks the worker at once (used when initialize hung).
    pub(crate) fn abandon(mut self) -> Ended {
        self.abandon_or_join()
    }

    fn join(&mut self) -> Ended {
        match self.handle.take().map(JoinHandle::join) {
            Some(Ok(lib)) => Ended::Joined(lib),
            // The glue catches plugin panics; a panic here is the host's own, after the
            // instance was destroyed. The library went down with the thread's stack: nothing to
            // close, and it stays mapped.
            Some(Err(_)) | None => Ended::Abandoned,
        }
    }
}

impl MailboxHandle {
    /// Runs a hook on the worker and waits at most `timeout` for its answer.
    pub(crate) fn hook(&self, hook: Hook, timeout: Duration) -> Result<Vec<u8>, CallFailure> {
        let (reply, rx) = bounded(1);
        self.call(Job::Hook(hook, reply), rx, timeout)
    }

    /// Runs `execute` or a named function on the worker and waits at most `timeout` (mailbox
    /// wait included).
    pub(crate) fn execute(
        &self,
        input: Invocation,
        timeout: Duration,
    ) -> Result<Vec<u8>, CallFailure> {
        let (reply, rx) = bounded(1);
        self.stats.executes.fetch_add(1, Ordering::Relaxed);
        let result = self.call(Job::Execute(input, reply), rx, timeout);
        if result.is_err() {
            self.stats.execute_errors.fetch_add(1, Ordering::Relaxed);
        }
        result
    }

    fn call(
        &self,
        job: Job,
        rx: Receiver<Result<Vec<u8>, CallError>>,
        timeout: Duration,
    ) -> Result<Vec<u8>, CallFailure> {
        let deadline = Instant::now() + timeout;
        match self.tx.send_deadline(job, deadline) {
            Ok(()) => {}
            Err(crossbeam_channel::SendTimeoutError::Timeout(_)) => {
                return Err(CallFailure::Timeout);
            }
            Err(crossbeam_channel::SendTimeoutError::Disconnected(_)) => {
                return Err(CallFailure::Gone);
            }
        }
        match spin_recv(&rx).map_or_else(|| rx.recv_deadline(deadline), Ok) {
            Ok(result) => result.map_err(CallFailure::Plugin),
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => Err(CallFailure::Timeout),
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => Err(CallFailure::Gone),
        }
    }
}

impl crate::resources::topics::Deliver for MailboxHandle {
    fn deliver(&self, id: u64, topic: &str, envelope: Vec<u8>) -> std::result::Result<(), String> {
        let (reply, rx) = bounded(1);
        // A handler that takes longer than this is treated as failed (and retried).
        let limit = Duration::from_secs(30);
        match self.call(
            Job::DeliverWait(id, topic.to_owned(), envelope, reply),
            rx,
            limit,
        ) {
            Ok(_) => Ok(()),
            Err(CallFailure::Plugin(e)) => Err(format!("{e:?}")),
            Err(CallFailure::Timeout) => Err("handler timed out".into()),
            Err(CallFailure::Gone) => Err("the plugin is gone".into()),
        }
    }
}

impl Mailbox for MailboxHandle {
    fn deliver(&self, id: u64, event: &Arc<BusEvent>, block: Duration) -> Delivery {
        let job = Job::Deliver(id, Arc::clone(event));
        let sent = match self.tx.try_send(job) {
            Ok(()) => true,
            Err(TrySendError::Full(job)) if !block.is_zero() => {
                self.tx.send_timeout(job, block).is_ok()
            }
            Err(_) => false,
        };
        if sent {
            Delivery::Queued
        } else {
            self.stats.events_dropped.fetch_add(1, Ordering::Relaxed);
            Delivery::Dropped
        }
    }
}

/// How long a receiver polls before it parks. A parked thread costs its waker a futex wake
/// (measured on this project's 2-core VMs: ~25 µs per hop, most of an `execute` round trip);
/// polling this long first makes back-to-back calls and event bursts cheap, and costs an idle
/// worker at most this much CPU after its last job.
const SPIN: Duration = Duration::from_micros(50);

/// Polls `rx` for up to [`SPIN`]; `None` if nothing arrived (the caller then parks).
fn spin_recv<T>(rx: &Receiver<T>) -> Option<T> {
    let start = Instant::now();
    let mut round = 0u32;
    loop {
        match rx.try_recv() {
            Ok(v) => return Some(v),
            Err(crossbeam_channel::TryRecvError::Disconnected) => return None,
            Err(crossbeam_channel::TryRecvError::Empty) => {}
        }
        round += 1;
        if round < 16 {
            std::hint::spin_loop();
            continue;
        }
        if start.elapsed() >= SPIN {
            return None;
        }
        // Yield rather than burn the core: with more runnable threads than cores (a dependency
        // call has three), the thread we wait for may need this one.
        std::thread::yield_now();
    }
}

/// [`spin_recv`], then a parked wait for the rest of `timeout`.
fn recv_within<T>(
    rx: &Receiver<T>,
    timeout: Duration,
) -> Result<T, crossbeam_channel::RecvTimeoutError> {
    spin_recv(rx).map_or_else(|| rx.recv_timeout(timeout), Ok)
}

/// The worker thread's body.
fn run(
    spawn: Spawn,
    rx: Receiver<Job>,
    ready: Sender<Result<(), Error>>,
    done: Sender<()>,
    fate: Arc<AtomicU8>,
) -> Option<Library> {
    let library = match Library::open(&spawn.shadow, &spawn.original, &spawn.header) {
        Ok(library) => library,
        Err(e) => {
            let _ = ready.send(Err(e));
            let _ = done.send(());
            return None;
        }
    };
    let live_contexts = serve(&library, &spawn, &rx, &ready);
    // Only the side that wins this exchange decides the library's fate: a worker abandoned by
    // the manager (timeout) leaks its library instead of closing it from this thread.
    let finished = fate
        .compare_exchange(RUNNING, FINISHED, Ordering::AcqRel, Ordering::Acquire)
        .is_ok();
    if finished {
        let _ = done.send(());
        if live_contexts > 0 {
            // Something of the plugin still holds its context: a thread it left running (which
            // runs the library's code) or a value it leaked. Closing the library could pull the
            // code from under that thread, so it stays mapped (`retained`); calls through the
            // context already get `stale_context`.
            tracing::warn!(target: "manager", plugin = %spawn.ctx.plugin, live_contexts, "the plugin still holds its context after destroy (a thread left running?): its library is kept mapped");
            std::mem::forget(library);
            return None;
        }
        Some(library)
    } else {
        std::mem::forget(library);
        None
    }
}

/// Creates the instance and serves jobs until `Stop`, then destroys the instance. Returns how
/// many clones of the plugin's context were still alive after that.
fn serve(
    library: &Library,
    spawn: &Spawn,
    rx: &Receiver<Job>,
    ready: &Sender<Result<(), Error>>,
) -> u64 {
    let instance = match library.instantiate(&spawn.original, &spawn.ctx) {
        Ok(instance) => instance,
        Err(e) => {
            let error = match e {
                crate::loader::InstantiateError::Host(e) => e,
                // The glue checks the registered functions against the manifest in `create`.
                crate::loader::InstantiateError::Plugin(CallError::Failed { code, message })
                    if code == "function_mismatch" =>
                {
                    Error::FunctionMismatch {
                        plugin: spawn.ctx.plugin.clone(),
                        message,
                    }
                }
                crate::loader::InstantiateError::Plugin(e) => {
                    super::core::plugin_error(&spawn.ctx.plugin, Operation::Create, e)
                }
            };
            let _ = ready.send(Err(error));
            return 0;
        }
    };
    let _ = ready.send(Ok(()));
    match instance.shared_calls() {
        // A concurrent plugin: named functions go to a pool of threads of this worker, scoped,
        // so every one of them is joined before the instance is destroyed (and long before the
        // library closes). The hand-over channel has no room: a call waits in the bounded
        // mailbox until a pool thread is free, and times out there like any call.
        Some(shared) => std::thread::scope(|scope| {
            let (pool_tx, pool_rx) = bounded::<(Invocation, Reply)>(0);
            for i in 0..spawn.threads.max(1) {
                let rx = pool_rx.clone();
                let shared = &shared;
                let on_call = spawn.on_call.clone();
                let spawned = std::thread::Builder::new()
                    .name(format!("plugin-{}-{i}", spawn.ctx.plugin))
                    .spawn_scoped(scope, move || {
                        while let Ok((call, reply)) = rx.recv() {
                            if let Some(on_call) = &on_call {
                                on_call();
                            }
                            let function = call.function.as_deref().unwrap_or_default();
                            let _ = reply.send(shared.call(function, &call.input));
                        }
                    });
                if let Err(e) = spawned {
                    tracing::warn!(target: "manager", plugin = %spawn.ctx.plugin, error = %e, "cannot start a pool thread; the pool runs with fewer");
                }
            }
            drop(pool_rx);
            serve_jobs(&instance, spawn, rx, Some(&pool_tx));
        }),
        None => serve_jobs(&instance, spawn, rx, None),
    }
    instance.destroy().live_contexts
}

/// The most deliveries handed to a plugin in one call.
const MAX_BATCH: usize = 256;

/// Runs one batch of deliveries and counts them: a subscription removed after its event was
/// queued is neither delivered nor failed (nothing ran); a failed or panicking handler is counted
/// and logged, and the events after it are still delivered.
fn deliver_batch(
    instance: &crate::loader::Instance<'_>,
    spawn: &Spawn,
    batch: &[(u64, Arc<BusEvent>)],
) {
    let events: Vec<(u64, &str, &[u8])> = batch
        .iter()
        .map(|(id, event)| (*id, &*event.name, &*event.payload))
        .collect();
    let failures = instance.deliver_batch(&events);
    for (index, error) in &failures {
        match error {
            CallError::Failed { code, .. } if code == "subscription_not_found" => {}
            e => {
                spawn.stats.events_failed.fetch_add(1, Ordering::Relaxed);
                let event = batch.get(*index).map_or("", |(_, e)| &*e.name);
                tracing::warn!(target: "bus", plugin = %spawn.ctx.plugin, event, error = ?e, "event handler failed");
            }
        }
    }
    let delivered = batch.len().saturating_sub(failures.len());
    spawn
        .stats
        .events_delivered
        .fetch_add(delivered as u64, Ordering::Relaxed);
}

/// Serves jobs until `Stop` (or a closed mailbox). Named calls go to `pool` when given (a
/// concurrent plugin); everything else runs here, in order.
fn serve_jobs(
    instance: &crate::loader::Instance<'_>,
    spawn: &Spawn,
    rx: &Receiver<Job>,
    pool: Option<&Sender<(Invocation, Reply)>>,
) {
    let mut cleaned_up = false;
    // The job met while gathering a batch of deliveries, served next.
    let mut next: Option<Job> = None;
    let mut batch: Vec<(u64, Arc<BusEvent>)> = Vec::new();
    while let Some(job) = next
        .take()
        .or_else(|| spin_recv(rx))
        .or_else(|| rx.recv().ok())
    {
        let to_pool = pool.is_some() && matches!(&job, Job::Execute(c, _) if c.function.is_some());
        if let Some(on_call) = &spawn.on_call
            && !matches!(job, Job::Stop)
            && !to_pool
        {
            on_call();
        }
        match job {
            Job::Hook(hook, reply) => {
                if hook == Hook::Cleanup {
                    cleaned_up = true;
                }
                let _ = reply.send(instance.hook(hook));
            }
            Job::Execute(call, reply) => {
                if let Some(pool) = pool
                    && call.function.is_some()
                {
                    // Fails only when no pool thread could start: then run it here.
                    match pool.send((call, reply)) {
                        Ok(()) => continue,
                        Err(crossbeam_channel::SendError((call, reply))) => {
                            let function = call.function.as_deref().unwrap_or_default();
                            let _ = reply.send(instance.call(function, &call.input));
                            continue;
                        }
                    }
                }
                let result = match &call.function {
                    None => instance.execute(&call.input),
                    Some(function) => instance.call(function, &call.input),
                };
                let _ = reply.send(result);
            }
            Job::Deliver(id, event) => {
                // The deliveries queued behind this one go with it, in order, in one call into
                // the plugin; the first other job ends the batch and is served next. A plugin
                // with a tables session gets one delivery per call: a call that times out
                // cancels the session's statements until the next call starts, which must not
                // reach the handlers of other events.
                let max = if spawn.on_call.is_some() {
                    1
                } else {
                    MAX_BATCH
                };
                batch.push((id, event));
                while batch.len() < max {
                    match rx.try_recv() {
                        Ok(Job::Deliver(id, event)) => batch.push((id, event)),
                        Ok(other) => {
                            next = Some(other);
                            break;
                        }
                        Err(_) => break,
                    }
                }
                // Deliveries queued before the subscriptions were revoked are dropped once the
                // plugin has cleaned up: its handlers must not run after cleanup.
                if !cleaned_up {
                    deliver_batch(instance, spawn, &batch);
                }
                batch.clear();
            }
            Job::DeliverWait(id, name, payload, reply) => {
                let result = if cleaned_up {
                    Err(CallError::Failed {
                        code: "stopping".into(),
                        message: "the plugin is stopping".into(),
                    })
                } else {
                    instance.deliver(id, &name, &payload)
                };
                let _ = reply.send(result);
            }
            Job::Stop => break,
        }
    }
}
