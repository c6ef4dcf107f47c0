//! The manager's state: the registry of loaded plugins, live instances by generation, and the
//! read-side operations (execute, list, get). Transitions are in `transitions.rs`.

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::sync::{
    Arc, Condvar, Mutex, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard, Weak,
};
use std::time::{Duration, Instant, SystemTime};

use super::types::{
    LifecycleEvent, PluginInfo, PluginRoutes, PluginSettings, PluginState, PluginStats, Resources,
};
use super::worker::{CallFailure, Invocation, MailboxHandle, Stats, Worker};
use crate::bus::{EventBus, Owner};
use crate::config::ManagerConfig;
use crate::error::{Error, Operation, Result};
use crate::graph;
use crate::loader::{CallError, HostContext, Library};
use crate::manifest::PluginManifest;
use crate::metrics::ManagerMetrics;
use crate::resources::EffectiveResources;
use crate::resources::buckets::{BucketBackend, ScopedBuckets};
use crate::resources::tables::{ScopedTables, TableBackend};
use crate::resources::topics::{ScopedTopics, TopicBackend};
use crate::routes::RouteTable;

/// One plugin instance: a manifest, a worker thread running the library, a context.
#[derive(Debug)]
pub(crate) struct Slot {
    pub(crate) path: PathBuf,
    pub(crate) shadow: PathBuf,
    /// The generation of the fresh load this instance descends from through reloads. A
    /// dependency handle obtained from any instance of the lineage follows it to the current
    /// one; once the plugin is unloaded the lineage ends.
    pub(crate) lineage: u64,
    pub(crate) loaded_at: SystemTime,
    pub(crate) api_version: String,
    pub(crate) settings: PluginSettings,
    pub(crate) resources: EffectiveResources,
    /// The plugin's tables session (none when it declares no tables or no backend is set).
    pub(crate) tables: Option<ScopedTables>,
    /// The plugin's topics (none when it declares none or no backend is set).
    pub(crate) topics: Option<ScopedTopics>,
    /// The plugin's buckets (none when it declares none or no backend is set).
    pub(crate) buckets: Option<ScopedBuckets>,
    state: AtomicU8,
    /// Calls queued or running on this instance (see [`Inner::try_execute_on`]).
    pub(crate) in_flight: Calls,
    pub(crate) ctx: Arc<HostContext>,
    pub(crate) mailbox: MailboxHandle,
    pub(crate) worker: Mutex<Option<Worker>>,
    pub(crate) stats: Arc<Stats>,
    /// The compiled input schemas of the plugin's functions, by function name, so a call does
    /// not compile its schema again.
    input_validators: HashMap<String, Arc<jsonschema::Validator>>,
    /// The manifest's routes, compiled once for this instance (see [`Inner::routes`]).
    routes: Arc<RouteTable>,
}

impl Slot {
    #[expect(clippy::too_many_arguments, reason = "a plain constructor of a record")]
    pub(crate) fn new(
        lineage: Option<u64>,
        path: PathBuf,
        shadow: PathBuf,
        api_version: String,
        settings: PluginSettings,
        resources: EffectiveResources,
        scoped: Scoped,
        ctx: Arc<HostContext>,
        mailbox: MailboxHandle,
        worker: Worker,
        stats: Arc<Stats>,
    ) -> Self {
        Self {
            lineage: lineage.unwrap_or(ctx.generation),
            input_validators: input_validators(&ctx.manifest),
            routes: Arc::new(RouteTable::new(&ctx.manifest.routes)),
            path,
            shadow,
            loaded_at: SystemTime::now(),
            api_version,
            settings,
            resources,
            tables: scoped.tables,
            topics: scoped.topics,
            buckets: scoped.buckets,
            state: AtomicU8::new(PluginState::Loading.as_byte()),
            in_flight: Calls::default(),
            ctx,
            mailbox,
            worker: Mutex::new(Some(worker)),
            stats,
        }
    }

    /// The plugin's name; like its manifest and generation, it lives in the instance's
    /// context, the one place that owns a plugin instance's identity.
    pub(crate) fn name(&self) -> &str {
        &self.ctx.manifest.name
    }

    /// The manifest this instance was loaded with.
    pub(crate) fn manifest(&self) -> &Arc<PluginManifest> {
        &self.ctx.manifest
    }

    /// This instance's generation.
    pub(crate) fn generation(&self) -> u64 {
        self.ctx.generation
    }

    pub(crate) fn state(&self) -> PluginState {
        // Only `set_state` writes the cell, always a state's own byte.
        PluginState::from_byte(self.state.load(Ordering::SeqCst)).unwrap_or(PluginState::Failed)
    }

    pub(crate) fn set_state(&self, state: PluginState) {
        self.state.store(state.as_byte(), Ordering::SeqCst);
    }

    /// Waits until no call is in flight, at most `limit`; returns whether it drained.
    pub(crate) fn drain(&self, limit: Duration) -> bool {
        self.in_flight.drain(limit)
    }

    /// Whether a handle obtained at `generation` belongs to this instance's lineage (this
    /// instance or one it replaced).
    pub(crate) fn follows(&self, generation: u64) -> bool {
        (self.lineage..=self.generation()).contains(&generation)
    }

    pub(crate) fn owner(&self) -> Owner {
        Owner::Plugin {
            name: self.name().to_owned(),
            generation: self.generation(),
        }
    }

    pub(crate) fn take_worker(&self) -> Option<Worker> {
        self.worker
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }

    fn stats(&self) -> PluginStats {
        let s = &self.stats;
        PluginStats {
            executes: s.executes.load(Ordering::Relaxed),
            in_flight: self.in_flight.count(),
            execute_errors: s.execute_errors.load(Ordering::Relaxed),
            events_delivered: s.events_delivered.load(Ordering::Relaxed),
            events_failed: s.events_failed.load(Ordering::Relaxed),
            events_dropped: s.events_dropped.load(Ordering::Relaxed),
            tables_denied: self.tables.as_ref().map_or(0, |t| t.denied()),
            topics_denied: self.topics.as_ref().map_or(0, |t| t.denied()),
            buckets_denied: self.buckets.as_ref().map_or(0, |b| b.denied()),
            messages_produced: self
                .topics
                .as_ref()
                .map_or(0, |t| t.stats.produced.load(Ordering::Relaxed)),
            messages_consumed: self
                .topics
                .as_ref()
                .map_or(0, |t| t.stats.consumed.load(Ordering::Relaxed)),
            messages_failed: self
                .topics
                .as_ref()
                .map_or(0, |t| t.stats.failed.load(Ordering::Relaxed)),
        }
    }
}

/// The calls in flight on one instance, and a way to wait until there are none without burning
/// a core.
///
/// The count is a plain atomic, so a call pays two atomic operations. Only when a drain is
/// waiting does the last call out take the lock and wake it; the waiter registers (`draining`)
/// before it reads the count, and the leaver decrements before it reads `draining` (all
/// `SeqCst`), so at least one of them sees the other: the waiter sees 0, or the leaver sees it
/// waiting and wakes it (under the lock, so the wake cannot fall between the waiter's check and
/// its sleep).
#[derive(Debug, Default)]
pub(crate) struct Calls {
    count: AtomicUsize,
    draining: AtomicBool,
    lock: Mutex<()>,
    idle: Condvar,
}

impl Calls {
    /// How many calls are in flight now.
    fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed) as u64
    }

    /// Waits until no call is in flight, at most `limit`; returns whether it drained.
    fn drain(&self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        let mut guard = self.lock.lock().unwrap_or_else(PoisonError::into_inner);
        self.draining.store(true, Ordering::SeqCst);
        let drained = loop {
            if self.count.load(Ordering::SeqCst) == 0 {
                break true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break false;
            }
            guard = self
                .idle
                .wait_timeout(guard, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        };
        self.draining.store(false, Ordering::SeqCst);
        drained
    }
}

/// Counts a call in flight for as long as it lives.
struct InFlight<'a>(&'a Calls);

impl<'a> InFlight<'a> {
    fn enter(calls: &'a Calls) -> Self {
        calls.count.fetch_add(1, Ordering::SeqCst);
        Self(calls)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        let calls = self.0;
        if calls.count.fetch_sub(1, Ordering::SeqCst) == 1 && calls.draining.load(Ordering::SeqCst)
        {
            let _guard = calls.lock.lock().unwrap_or_else(PoisonError::into_inner);
            calls.idle.notify_all();
        }
    }
}

/// A plugin instance's resource sessions, opened before it initialises.
#[derive(Debug, Default)]
pub(crate) struct Scoped {
    pub(crate) tables: Option<ScopedTables>,
    pub(crate) topics: Option<ScopedTopics>,
    pub(crate) buckets: Option<ScopedBuckets>,
}

/// A plugin that failed in a way operators must see: it hung, so its library is leaked.
#[derive(Debug, Clone)]
pub(crate) struct FailedRecord {
    pub(crate) manifest: Arc<PluginManifest>,
    pub(crate) path: PathBuf,
    pub(crate) generation: u64,
    pub(crate) error: String,
    pub(crate) at: SystemTime,
}

#[derive(Debug, Default)]
pub(crate) struct Registry {
    /// The current instance of each loaded plugin.
    pub(crate) plugins: HashMap<String, Arc<Slot>>,
    /// Plugins that failed and left something behind.
    pub(crate) failed: HashMap<String, FailedRecord>,
    /// Every live instance by generation, including one being loaded beside the current one.
    instances: HashMap<u64, Arc<Slot>>,
    /// Operator settings by plugin name; kept across unloads.
    settings: HashMap<String, PluginSettings>,
}

/// Shared state of a [`PluginManager`](super::PluginManager).
#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) config: ManagerConfig,
    pub(crate) shadow_dir: PathBuf,
    owns_shadow_dir: bool,
    /// The lock of an owned shadow folder, held while this manager lives, so that another
    /// host's start-up sweep never removes it (loader/shadow.rs).
    _shadow_lock: Option<crate::loader::ShadowLock>,
    /// One transition (load, unload, reload, enable, disable) at a time.
    pub(crate) ops: Mutex<()>,
    /// Plugins whose file a reload or settings change is reading, then changing (one such
    /// operation per plugin at a time: see [`Inner::own_plugin`]).
    pub(crate) owned: Mutex<HashSet<String>>,
    /// Signalled when a plugin leaves `owned`.
    pub(crate) owned_released: Condvar,
    /// Everything the manager knows of its plugins (current instances, failed records, live
    /// instances by generation, operator settings), behind one lock.
    registry: RwLock<Registry>,
    pub(crate) bus: Arc<EventBus>,
    /// Where plugins' tables live, if anywhere.
    pub(crate) tables: Option<Arc<dyn TableBackend>>,
    /// Where plugins' topics live, if anywhere.
    pub(crate) topics: Option<Arc<dyn TopicBackend>>,
    /// Where plugins' buckets live, if anywhere.
    pub(crate) buckets: Option<Arc<dyn BucketBackend>>,
    pub(crate) metrics: ManagerMetrics,
    /// The durable job queue (none when no store is configured).
    pub(crate) jobs: Option<Arc<crate::jobs::JobQueue>>,
    /// The thread that closes libraries (see [`Inner::close_library`]).
    closer: Mutex<crossbeam_channel::Sender<(Library, crossbeam_channel::Sender<()>)>>,
    generations: AtomicU64,
    pub(crate) me: Weak<Inner>,
}

fn default_shadow_root() -> PathBuf {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() && std::fs::metadata(shm).is_ok_and(|m| !m.permissions().readonly()) {
        shm.to_owned()
    } else {
        std::env::temp_dir()
    }
}

impl Inner {
    pub(crate) fn new(config: ManagerConfig) -> Result<Arc<Self>> {
        // An owned folder is claimed with a lock, after sweeping what dead hosts left (issue 11:
        // shadow copies of a host killed with SIGKILL no longer stay forever).
        let (shadow_dir, owns_shadow_dir, shadow_lock) = match &config.shadow_dir {
            Some(dir) => (dir.clone(), false, None),
            None => {
                let (dir, lock) = crate::loader::claim_shadow_dir(&default_shadow_root())?;
                (dir, true, Some(lock))
            }
        };
        std::fs::create_dir_all(&shadow_dir).map_err(|e| Error::io(&shadow_dir, e))?;
        let bus = Arc::new(EventBus::new(config.emit_block));
        let tables = crate::resources::tables::backend(
            &config.tables,
            crate::resources::tables::Limits::of(&config),
        )?;
        let topics = crate::resources::topics::backend(&config.topics)?;
        let buckets = crate::resources::buckets::backend(&config.buckets)?;
        let job_store = crate::jobs::open_store(&config.jobs.store)?;
        let (closer, jobs) =
            crossbeam_channel::unbounded::<(Library, crossbeam_channel::Sender<()>)>();
        std::thread::Builder::new()
            .name("plugin-host-closer".into())
            .spawn(move || {
                for (library, done) in jobs {
                    drop(library);
                    let _ = done.send(());
                }
            })
            .map_err(|e| Error::Internal {
                message: format!("cannot spawn the closer thread: {e}"),
            })?;
        let job_metrics = Arc::new(crate::metrics::JobMetrics::default());
        let inner = Arc::new_cyclic(|me: &Weak<Inner>| {
            let host: Weak<dyn crate::jobs::JobHost> = me.clone();
            let jobs = job_store.map(|store| {
                Arc::new(crate::jobs::JobQueue::new(
                    store,
                    config.jobs.clone(),
                    host,
                    Arc::downgrade(&bus),
                    job_metrics,
                ))
            });
            Self {
                jobs,
                config,
                shadow_dir,
                owns_shadow_dir,
                _shadow_lock: shadow_lock,
                ops: Mutex::new(()),
                owned: Mutex::new(HashSet::new()),
                owned_released: Condvar::new(),
                registry: RwLock::new(Registry::default()),
                bus,
                tables,
                topics,
                buckets,
                metrics: ManagerMetrics::default(),
                closer: Mutex::new(closer),
                generations: AtomicU64::new(0),
                me: me.clone(),
            }
        });
        if let Some(queue) = &inner.jobs {
            let weak = Arc::downgrade(queue);
            let triggers = queue.trigger_count();
            inner.bus.set_emit_hook(Arc::new(move |name, payload| {
                // An emit that no trigger can match costs one atomic load.
                if triggers.load(Ordering::Acquire) == 0 {
                    return Ok(());
                }
                match weak.upgrade() {
                    Some(queue) => queue.on_emit(name, payload),
                    None => Ok(()),
                }
            }));
            queue.start()?;
        }
        Ok(inner)
    }

    pub(crate) fn read(&self) -> RwLockReadGuard<'_, Registry> {
        self.registry.read().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn write(&self) -> RwLockWriteGuard<'_, Registry> {
        self.registry
            .write()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Closes a library on the manager's own closer thread and waits for it. Closing runs the
    /// library's finalisers, which are plugin code: they must not run on whatever thread asked
    /// for the unload (an admin request runs on tokio's blocking pool, whose threads are reused
    /// and retired at will).
    pub(crate) fn close_library(&self, library: Library) {
        let (done, wait) = crossbeam_channel::bounded(1);
        let sent = self
            .closer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .send((library, done));
        match sent {
            Ok(()) => {
                let _ = wait.recv();
            }
            // The closer is gone (only while the process exits): leak rather than close here.
            Err(crossbeam_channel::SendError((library, _))) => std::mem::forget(library),
        }
    }

    /// The operator's settings for `name` (default when none were given).
    pub(crate) fn settings_for(&self, name: &str) -> PluginSettings {
        self.read().settings.get(name).cloned().unwrap_or_default()
    }

    /// Replaces the settings for `name`; returns the previous ones.
    pub(crate) fn put_settings(
        &self,
        name: &str,
        settings: Option<PluginSettings>,
    ) -> Option<PluginSettings> {
        let map = &mut self.write().settings;
        match settings {
            Some(s) => map.insert(name.to_owned(), s),
            None => map.remove(name),
        }
    }

    /// Every stored setting, by plugin name.
    pub(crate) fn all_settings(&self) -> std::collections::BTreeMap<String, PluginSettings> {
        self.read()
            .settings
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// Whether settings are stored for `name`.
    pub(crate) fn has_settings(&self, name: &str) -> bool {
        self.read().settings.contains_key(name)
    }

    pub(crate) fn next_generation(&self) -> u64 {
        self.generations.fetch_add(1, Ordering::Relaxed) + 1
    }

    pub(crate) fn add_instance(&self, slot: &Arc<Slot>) {
        self.write()
            .instances
            .insert(slot.generation(), Arc::clone(slot));
    }

    pub(crate) fn remove_instance(&self, generation: u64) {
        self.write().instances.remove(&generation);
    }

    /// Tells the job queue that `slot` is now its plugin's current instance (a load or a
    /// reload committed): its kinds, triggers and schedules take effect.
    pub(crate) fn jobs_register(&self, slot: &Slot) {
        if let Some(jobs) = &self.jobs {
            jobs.register(slot.generation(), slot.manifest());
        }
    }

    /// Tells the job queue that `slot` is no longer its plugin's instance (an unload
    /// committed): its triggers stop; its waiting jobs stay.
    pub(crate) fn jobs_unregister(&self, slot: &Slot) {
        if let Some(jobs) = &self.jobs {
            jobs.unregister(slot.name(), slot.generation());
        }
    }

    pub(crate) fn instance(&self, generation: u64) -> Option<Arc<Slot>> {
        self.read().instances.get(&generation).cloned()
    }

    /// The current instance of a loaded plugin.
    pub(crate) fn slot(&self, name: &str) -> Result<Arc<Slot>> {
        self.read()
            .plugins
            .get(name)
            .cloned()
            .ok_or_else(|| Error::NotFound {
                name: name.to_owned(),
            })
    }

    /// The current instance of `name`. If the one found is being retired by a reload, its
    /// successor (already in the registry: a swap registers the new instance before it retires
    /// the old one) is returned instead.
    pub(crate) fn current(&self, name: &str) -> Result<Arc<Slot>> {
        let slot = self.slot(name)?;
        if matches!(slot.state(), PluginState::Active | PluginState::Disabled) {
            return Ok(slot);
        }
        match self.slot(name) {
            Ok(next) if next.generation() != slot.generation() => Ok(next),
            _ => Ok(slot),
        }
    }

    /// Runs `execute` on a plugin's current instance. A call that finds the instance retiring
    /// (a reload swapped it out) runs on the new instance instead, so reloads lose no calls.
    pub(crate) fn execute(&self, name: &str, call: Invocation) -> Result<Vec<u8>> {
        let slot = self.slot(name)?;
        self.execute_following(slot, call, None)
    }

    /// Runs `execute` on `slot`, or, if it is retiring, on its successor (within `lineage` when
    /// given). A reload registers the new instance before it retires the old one, so a call
    /// either enters the old one before it stops taking calls (and retiring waits for it) or
    /// finds the new one: no call of a reload fails. A call fails only when the instance it
    /// found stops with no successor (an unload).
    pub(crate) fn execute_following(
        &self,
        mut slot: Arc<Slot>,
        mut input: Invocation,
        lineage: Option<u64>,
    ) -> Result<Vec<u8>> {
        // Each step needs a complete reload (a new instance initialised) to have happened in
        // between, so this bound is never reached in practice; it only rules out a livelock.
        for _ in 0..8 {
            match self.try_execute_on(&slot, input) {
                Ok(result) => return result,
                Err(back) => input = back,
            }
            match self.slot(slot.name()) {
                Ok(next)
                    if next.generation() != slot.generation()
                        && lineage.is_none_or(|l| next.lineage == l) =>
                {
                    slot = next;
                }
                _ => break,
            }
        }
        Err(Error::NotActive {
            name: slot.name().to_owned(),
            state: slot.state(),
        })
    }

    /// Runs `execute` on one instance, counted as in flight so that retiring waits for it.
    /// `Err(input)` when the instance is retiring: the call did not start and the caller still
    /// owns its input.
    pub(crate) fn try_execute_on(
        &self,
        slot: &Slot,
        input: Invocation,
    ) -> Result<Result<Vec<u8>>, Invocation> {
        // Register first, then look at the state (both SeqCst): either this call sees
        // `stopping`, or `retire` (which sets `stopping` first, then drains) sees this call in
        // flight and waits for it.
        let _in_flight = InFlight::enter(&slot.in_flight);
        match slot.state() {
            PluginState::Active => {}
            PluginState::Disabled => {
                return Ok(Err(Error::Disabled {
                    name: slot.name().to_owned(),
                }));
            }
            PluginState::Loading => {
                return Ok(Err(Error::NotActive {
                    name: slot.name().to_owned(),
                    state: PluginState::Loading,
                }));
            }
            _ => return Err(input),
        }
        if let Some(function) = &input.function
            && let Err(e) = check_input(slot, function, &input.input)
        {
            return Ok(Err(e));
        }
        let operation = input.operation();
        let limit = input.timeout.unwrap_or(self.config.execute_timeout);
        let result = slot.mailbox.execute(input, limit);
        // A call that timed out must not keep working: stop its running statement and fail
        // its further table calls until the plugin's next call starts (the worker ends the
        // cancellation then, see `Spawn::on_call`).
        if matches!(result, Err(CallFailure::Timeout))
            && let Some(tables) = &slot.tables
        {
            tables.cancel();
        }
        Ok(result.map_err(|f| match f {
            CallFailure::Timeout => Error::Timeout {
                plugin: slot.name().to_owned(),
                operation,
                after: limit,
            },
            f => self.call_failure(slot.name(), operation, f),
        }))
    }

    pub(crate) fn call_failure(
        &self,
        plugin: &str,
        operation: Operation,
        failure: CallFailure,
    ) -> Error {
        match failure {
            CallFailure::Plugin(e) => plugin_error(plugin, operation, e),
            CallFailure::Timeout => Error::Timeout {
                plugin: plugin.to_owned(),
                operation,
                after: match operation {
                    Operation::Initialize => self.config.initialize_timeout,
                    Operation::Cleanup => self.config.cleanup_timeout,
                    Operation::Open
                    | Operation::Create
                    | Operation::Execute
                    | Operation::Call
                    | Operation::Enable
                    | Operation::Disable => self.config.execute_timeout,
                },
            },
            CallFailure::Gone => Error::NotActive {
                name: plugin.to_owned(),
                state: PluginState::Stopping,
            },
        }
    }

    /// Loaded plugins in dependency order (dependencies first), then failed records.
    pub(crate) fn list(&self) -> Vec<PluginInfo> {
        let reg = self.read();
        let mut out: Vec<PluginInfo> = self
            .topo_order(&reg)
            .iter()
            .filter_map(|n| reg.plugins.get(n))
            .map(|slot| self.info_of(&reg, slot))
            .collect();
        let mut failed: Vec<&FailedRecord> = reg.failed.values().collect();
        failed.sort_by(|a, b| a.manifest.name.cmp(&b.manifest.name));
        out.extend(failed.into_iter().map(failed_info));
        out
    }

    pub(crate) fn get(&self, name: &str) -> Result<PluginInfo> {
        let reg = self.read();
        if let Some(slot) = reg.plugins.get(name) {
            return Ok(self.info_of(&reg, slot));
        }
        reg.failed
            .get(name)
            .map(failed_info)
            .ok_or_else(|| Error::NotFound {
                name: name.to_owned(),
            })
    }

    /// `name`'s state, generation and routes, from the registry: the current instance's, or a
    /// failed record's (no routes).
    pub(crate) fn routes(&self, name: &str) -> Result<PluginRoutes> {
        let reg = self.read();
        if let Some(slot) = reg.plugins.get(name) {
            return Ok(PluginRoutes {
                state: slot.state(),
                generation: slot.generation(),
                table: Arc::clone(&slot.routes),
            });
        }
        reg.failed
            .get(name)
            .map(|r| PluginRoutes {
                state: PluginState::Failed,
                generation: r.generation,
                table: Arc::default(),
            })
            .ok_or_else(|| Error::NotFound {
                name: name.to_owned(),
            })
    }

    fn info_of(&self, reg: &Registry, slot: &Slot) -> PluginInfo {
        let m = &slot.manifest();
        let mut dependents: Vec<String> = reg
            .plugins
            .values()
            .filter(|s| s.manifest().depends_on(&m.name))
            .map(|s| s.name().to_owned())
            .collect();
        dependents.sort();
        PluginInfo {
            name: m.name.clone(),
            version: m.version.to_string(),
            description: m.description.clone(),
            functions: m.functions.clone(),
            routes: m.routes.clone(),
            jobs: m.jobs.clone(),
            schedules: m.schedules.clone(),
            state: slot.state(),
            api_version: slot.api_version.clone(),
            path: slot.path.clone(),
            dependencies: m.dependencies.iter().map(|d| d.name.clone()).collect(),
            dependents,
            resources: Resources {
                tables: slot.resources.tables.clone(),
                topics: slot.resources.topics.clone(),
                buckets: slot.resources.buckets.clone(),
            },
            declared: declared(m),
            physical: super::types::Physical {
                tables: slot
                    .tables
                    .as_ref()
                    .map(ScopedTables::physical_names)
                    .unwrap_or_default(),
                topics: slot
                    .topics
                    .as_ref()
                    .map(ScopedTopics::physical_names)
                    .unwrap_or_default(),
                buckets: slot
                    .buckets
                    .as_ref()
                    .map(ScopedBuckets::physical_names)
                    .unwrap_or_default(),
            },
            overrides: slot.settings.overrides.clone(),
            config: slot.settings.config.clone(),
            loaded_at: rfc3339(slot.loaded_at),
            generation: slot.generation(),
            error: None,
            stats: slot.stats(),
        }
    }

    /// Names of loaded plugins, dependencies first.
    pub(crate) fn topo_order(&self, reg: &Registry) -> Vec<String> {
        // Load order breaks ties, so the listing is stable.
        let mut slots: Vec<&Arc<Slot>> = reg.plugins.values().collect();
        slots.sort_by_key(|s| s.generation());
        let nodes: Vec<graph::Node<'_>> = slots
            .iter()
            .map(|s| graph::Node {
                name: &s.manifest().name,
                version: &s.manifest().version,
                dependencies: &s.manifest().dependencies,
            })
            .collect();
        // Loaded plugins are consistent, so everything is in the order; anything the plan
        // rejects (it cannot, but never lose a plugin) is appended.
        let plan = graph::plan(&nodes, &|_| None);
        let mut names: Vec<String> = plan
            .order
            .iter()
            .map(|&i| nodes[i].name.to_owned())
            .collect();
        let placed: HashSet<&str> = plan.order.iter().map(|&i| nodes[i].name).collect();
        let mut rest: Vec<String> = nodes
            .iter()
            .filter(|n| !placed.contains(n.name))
            .map(|n| n.name.to_owned())
            .collect();
        rest.sort();
        names.extend(rest);
        names
    }

    /// Loaded plugins that depend on `name`, directly or not, dependencies first.
    pub(crate) fn dependents_of(&self, name: &str) -> Vec<String> {
        let reg = self.read();
        let mut found: HashSet<String> = HashSet::new();
        let mut queue = VecDeque::from([name.to_owned()]);
        while let Some(at) = queue.pop_front() {
            for slot in reg.plugins.values() {
                if slot.manifest().depends_on(&at) && found.insert(slot.name().to_owned()) {
                    queue.push_back(slot.name().to_owned());
                }
            }
        }
        self.topo_order(&reg)
            .into_iter()
            .filter(|n| found.contains(n))
            .collect()
    }

    /// Publishes a lifecycle event on the bus (and in the log).
    pub(crate) fn publish(&self, event: LifecycleEvent) {
        tracing::info!(target: "manager", plugin = %event.name, kind = ?event.kind, generation = ?event.generation, outcome = ?event.outcome, error = ?event.error, "{}", event.kind.event_name());
        match serde_json::to_vec(&event) {
            Ok(payload) => {
                if let Err(e) = self.bus.emit_host(event.kind.event_name(), &payload) {
                    tracing::error!(target: "manager", error = %e, "cannot publish lifecycle event");
                }
            }
            Err(e) => {
                tracing::error!(target: "manager", error = %e, "cannot encode lifecycle event")
            }
        }
    }
}

impl crate::jobs::JobHost for Inner {
    fn is_active(&self, plugin: &str) -> bool {
        self.slot(plugin)
            .is_ok_and(|s| s.state() == PluginState::Active)
    }

    fn run(
        &self,
        plugin: &str,
        function: &str,
        input: Vec<u8>,
        limit: Duration,
    ) -> Result<Vec<u8>> {
        let call = Invocation {
            function: Some(function.to_owned()),
            input,
            timeout: Some(limit),
        };
        self.execute(plugin, call)
    }

    fn execute_timeout(&self) -> Duration {
        self.config.execute_timeout
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        if self.owns_shadow_dir {
            let _ = std::fs::remove_dir_all(&self.shadow_dir);
        }
    }
}

fn failed_info(r: &FailedRecord) -> PluginInfo {
    let m = &r.manifest;
    PluginInfo {
        name: m.name.clone(),
        version: m.version.to_string(),
        description: m.description.clone(),
        functions: m.functions.clone(),
        routes: m.routes.clone(),
        jobs: m.jobs.clone(),
        schedules: m.schedules.clone(),
        state: PluginState::Failed,
        api_version: String::new(),
        path: r.path.clone(),
        dependencies: m.dependencies.iter().map(|d| d.name.clone()).collect(),
        dependents: Vec::new(),
        resources: declared(m),
        declared: declared(m),
        physical: super::types::Physical::default(),
        overrides: None,
        config: None,
        loaded_at: rfc3339(r.at),
        generation: r.generation,
        error: Some(r.error.clone()),
        stats: PluginStats::default(),
    }
}

fn declared(m: &PluginManifest) -> Resources {
    Resources {
        tables: m.tables.clone(),
        topics: m.topics.clone(),
        buckets: m.buckets.clone(),
    }
}

/// Maps a plugin-side failure of `operation` to the host error.
pub(crate) fn plugin_error(plugin: &str, operation: Operation, e: CallError) -> Error {
    let (plugin_code, message, panicked) = match e {
        CallError::Failed { code, message } => (code, message, false),
        CallError::Panicked { message } => {
            ("panicked".to_owned(), format!("panicked: {message}"), true)
        }
    };
    if matches!(operation, Operation::Initialize | Operation::Create) {
        Error::InitializeFailed {
            plugin: plugin.to_owned(),
            plugin_code,
            message,
        }
    } else {
        Error::PluginFailed {
            plugin: plugin.to_owned(),
            plugin_code,
            message,
            panicked,
        }
    }
}

/// Compiles the input schemas of a manifest's functions (they were checked to compile when the
/// file was read; one that does not is left out, and a call then compiles it to report why).
fn input_validators(manifest: &PluginManifest) -> HashMap<String, Arc<jsonschema::Validator>> {
    manifest
        .functions
        .iter()
        .filter_map(|f| {
            let validator = jsonschema::validator_for(f.input_schema.as_ref()?).ok()?;
            Some((f.name.clone(), Arc::new(validator)))
        })
        .collect()
}

/// Checks a call of a named function before it is queued: the function is declared, and the
/// input is JSON that its declared input schema (if any) accepts.
fn check_input(slot: &Slot, function: &str, input: &[u8]) -> Result<()> {
    let manifest = &slot.manifest();
    let spec = manifest
        .function(function)
        .ok_or_else(|| Error::FunctionNotFound {
            plugin: manifest.name.clone(),
            function: function.to_owned(),
        })?;
    let Some(schema) = &spec.input_schema else {
        return Ok(());
    };
    let invalid = |errors: Vec<String>| Error::InvalidInput {
        plugin: manifest.name.clone(),
        function: function.to_owned(),
        errors,
    };
    let value: serde_json::Value =
        serde_json::from_slice(input).map_err(|e| invalid(vec![format!("not JSON: {e}")]))?;
    let validator = match slot.input_validators.get(function) {
        Some(validator) => Arc::clone(validator),
        None => Arc::new(
            jsonschema::validator_for(schema).map_err(|e| Error::Internal {
                message: format!("input schema of `{function}` does not compile: {e}"),
            })?,
        ),
    };
    let errors = crate::manifest::schema_errors(&validator, &value);
    if errors.is_empty() {
        Ok(())
    } else {
        Err(invalid(errors))
    }
}

/// Formats a time as RFC 3339 UTC with second precision.
pub(crate) fn rfc3339(t: SystemTime) -> String {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil-from-days (Howard Hinnant's algorithm), valid for the Unix era.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn drain_times_out_while_a_call_is_in_flight() {
        let calls = Calls::default();
        let call = InFlight::enter(&calls);
        assert!(!calls.drain(Duration::from_millis(20)));
        drop(call);
        assert!(
            calls.drain(Duration::ZERO),
            "nothing in flight: drained at once"
        );
    }

    #[test]
    fn the_last_call_out_wakes_a_waiting_drain() {
        let calls = Calls::default();
        let call = InFlight::enter(&calls);
        std::thread::scope(|s| {
            let started = std::time::Instant::now();
            let drain = s.spawn(|| calls.drain(Duration::from_secs(30)));
            // The drain registered itself (and now sleeps on the condition variable).
            while !calls.draining.load(Ordering::SeqCst) {
                std::thread::yield_now();
            }
            drop(call);
            assert!(drain.join().unwrap(), "drained");
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "woken by the last call, not by the time limit"
            );
        });
        assert!(!calls.draining.load(Ordering::SeqCst));
    }

    #[test]
    fn rfc3339_formats_known_instants() {
        assert_eq!(rfc3339(SystemTime::UNIX_EPOCH), "1970-01-01T00:00:00Z");
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_426_200);
        assert_eq!(rfc3339(t), "2026-11-23T09:30:00Z");
        let leap = SystemTime::UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(rfc3339(leap), "2000-02-29T00:00:00Z");
    }
}
