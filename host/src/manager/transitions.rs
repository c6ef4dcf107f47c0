//! Lifecycle transitions, each run under the manager's transition lock: load (a transaction),
//! unload (the unload protocol of docs/architecture.md), atomic reload, enable/disable and
//! directory load. No plugin file is read under that lock: each operation reads its files first
//! and, once it holds the lock, checks that the plugin is still the instance a file was read
//! for (see [`Inner::read_then_lock`]).

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, MutexGuard, PoisonError};
use std::time::{Instant, SystemTime};

use super::core::{FailedRecord, Inner, Scoped, Slot};
use super::gate;
use super::types::{
    DirectoryReport, FailedLoad, LifecycleEvent, LifecycleKind, PluginInfo, PluginSettings,
    PluginState, SkippedLoad, UnloadOutcome, UnloadReport,
};
use super::worker::{CallFailure, Ended, Spawn, Stats, Worker};
use crate::error::{Change, Error, Operation, Result};
use crate::graph;
use crate::loader::{Candidate, Hook, HostContext, HostServices, is_mapped};
use crate::manifest::PluginManifest;
use crate::resources::EffectiveResources;
use crate::resources::buckets::ScopedBuckets;
use crate::resources::tables::ScopedTables;
use crate::resources::topics::ScopedTopics;

/// How many times a reload or settings change reads a plugin's file because another operation
/// changed the plugin between the read and the transition lock, before it gives up
/// (`concurrent_change`).
const READ_ATTEMPTS: usize = 5;

fn event(
    kind: LifecycleKind,
    manifest: &PluginManifest,
    generation: Option<u64>,
) -> LifecycleEvent {
    LifecycleEvent {
        kind,
        name: manifest.name.clone(),
        version: Some(manifest.version.to_string()),
        generation,
        outcome: None,
        error: None,
    }
}

/// A plugin owned by one reload or settings change, from the read of its file to the end of the
/// change (see [`Inner::own_plugin`]); released on drop.
struct Owned<'a> {
    inner: &'a Inner,
    name: String,
}

impl Drop for Owned<'_> {
    fn drop(&mut self) {
        self.inner
            .owned
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.name);
        self.inner.owned_released.notify_all();
    }
}

impl Inner {
    pub(crate) fn lock_ops(&self) -> MutexGuard<'_, ()> {
        self.ops.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits until no other reload or settings change of `name` is under way, then owns the
    /// plugin until the returned value is dropped. Those operations read the plugin's file and
    /// then change it; owning the plugin across both keeps a second one from reading the file
    /// before the first put its read in (it would then have to read again, see
    /// [`Inner::read_then_lock`]), so concurrent changes of one plugin queue here, without
    /// retries. Only operations on the same plugin wait: never take it while holding the
    /// transition lock.
    fn own_plugin(&self, name: &str) -> Owned<'_> {
        let mut owned = self.owned.lock().unwrap_or_else(PoisonError::into_inner);
        while owned.contains(name) {
            owned = self
                .owned_released
                .wait(owned)
                .unwrap_or_else(PoisonError::into_inner);
        }
        owned.insert(name.to_owned());
        Owned {
            inner: self,
            name: name.to_owned(),
        }
    }

    /// Loads one plugin file, with operator settings for it if given (kept only if the load
    /// succeeds).
    pub(crate) fn load(&self, path: &Path, settings: Option<PluginSettings>) -> Result<PluginInfo> {
        let started = Instant::now();
        // The file is read (bounded, never blocking: see loader/file.rs) before the transition
        // lock is taken, so reading it holds up no other plugin's lifecycle.
        let read = Candidate::read(path, self.config.max_plugin_bytes);
        let _ops = self.lock_ops();
        let result = read.and_then(|candidate| {
            gate::check(Change::Load)?;
            let name = candidate.name().to_owned();
            let previous = settings.map(|s| (self.put_settings(&name, Some(s)), ()));
            let loaded = self.load_candidate(candidate);
            if loaded.is_err()
                && let Some((previous, ())) = previous
            {
                self.put_settings(&name, previous);
            }
            loaded
        });
        self.count_load(started, result.is_ok());
        let slot = result?;
        self.get(slot.name())
    }

    fn count_load(&self, started: Instant, ok: bool) {
        if ok {
            self.metrics.loads.fetch_add(1, Ordering::Relaxed);
            self.metrics.load_seconds.observe(started.elapsed());
        } else {
            self.metrics.load_failures.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The instance a file is read for: generation and path of `name`'s current instance (with
    /// `failed`, of its failed record when none is loaded); `None` when there is neither.
    fn instance_seen(&self, name: &str, failed: bool) -> Option<(u64, PathBuf)> {
        let reg = self.read();
        if let Some(slot) = reg.plugins.get(name) {
            return Some((slot.generation(), slot.path.clone()));
        }
        if !failed {
            return None;
        }
        reg.failed.get(name).map(|r| (r.generation, r.path.clone()))
    }

    /// Reads the file of `name`'s current instance (with `failed`, of its failed record when
    /// none is loaded) *before* taking the transition lock, so a slow file holds up no other
    /// plugin's lifecycle; then takes the lock and checks that the plugin is still the instance
    /// the file was read for. If another operation loaded, reloaded or unloaded it meanwhile,
    /// the bytes (maybe older than what now runs) are dropped and the file is read again, up to
    /// [`READ_ATTEMPTS`] times (then `concurrent_change`). The caller owns the plugin
    /// ([`Inner::own_plugin`]), so only a load, an unload or a directory load can come between.
    /// Returns the lock and the read, `None` when the plugin has no instance (nor, with
    /// `failed`, a failed record).
    fn read_then_lock(
        &self,
        operation: Change,
        name: &str,
        failed: bool,
    ) -> Result<(MutexGuard<'_, ()>, Option<Result<Candidate>>)> {
        for _ in 0..READ_ATTEMPTS {
            gate::check(operation)?;
            let seen = self.instance_seen(name, failed);
            let read = seen
                .as_ref()
                .map(|(_, path)| Candidate::read(path, self.config.max_plugin_bytes));
            let ops = self.lock_ops();
            gate::check(operation)?;
            if self.instance_seen(name, failed) == seen {
                return Ok((ops, read));
            }
            drop(ops);
            tracing::debug!(target: "manager", plugin = %name, %operation, "plugin changed while its file was read; reading it again");
        }
        Err(Error::ConcurrentChange {
            plugin: name.to_owned(),
            attempts: READ_ATTEMPTS,
        })
    }

    /// Changes the operator settings of `name` in one read-modify-write: `change` gets the
    /// stored settings (`None` when there are none) and returns the new ones (`None` clears
    /// them). It runs under the transition lock, together with the reload that applies the
    /// result to a loaded plugin, so concurrent changes never lose one another's update. If the
    /// reload fails, the old settings and instance stay. The loaded plugin's file is read before
    /// the lock is taken (see [`Inner::read_then_lock`]).
    pub(crate) fn update_settings(
        &self,
        name: &str,
        change: impl FnOnce(Option<PluginSettings>) -> Result<Option<PluginSettings>>,
    ) -> Result<Option<PluginSettings>> {
        let _owned = self.own_plugin(name);
        let (_ops, read) = self.read_then_lock(Change::SettingsChange, name, false)?;
        let stored = self.has_settings(name).then(|| self.settings_for(name));
        let settings = change(stored)?;
        if let Some(s) = settings.as_ref().and_then(|s| s.overrides.as_ref()) {
            s.validate()?;
        }
        let previous = self.put_settings(name, settings.clone());
        let Some(read) = read else {
            // Not loaded (the lock has been held since that was checked): the settings take
            // effect by being stored, unless the requester gave up (see gate.rs).
            if let Err(e) = gate::commit(Change::SettingsChange, || ()) {
                self.put_settings(name, previous);
                return Err(e);
            }
            return Ok(settings);
        };
        // Loaded, and still the instance whose file was read.
        let started = Instant::now();
        if let Err(e) = read.and_then(|c| self.slot(name).and_then(|s| self.replace(&s, c))) {
            self.put_settings(name, previous);
            self.metrics.reload_failures.fetch_add(1, Ordering::Relaxed);
            return Err(e);
        }
        self.metrics.reloads.fetch_add(1, Ordering::Relaxed);
        self.metrics.reload_seconds.observe(started.elapsed());
        Ok(settings)
    }

    /// Loads a validated candidate: dependency checks, instance start, registration. On any
    /// failure nothing of the plugin stays registered.
    fn load_candidate(&self, candidate: Candidate) -> Result<Arc<Slot>> {
        let name = candidate.name().to_owned();
        if let Some(existing) = self.read().plugins.get(&name) {
            return Err(Error::AlreadyLoaded {
                name,
                path: existing.path.clone(),
            });
        }
        self.check_dependencies(&candidate.inspection.manifest)?;
        let slot = self.start_instance(candidate, None)?;
        // Registering is the commit point: if the requester gave up meanwhile (see gate.rs),
        // the new instance is retired and nothing of the load took effect.
        let registered = gate::commit(Change::Load, || {
            let mut reg = self.write();
            reg.failed.remove(&name);
            reg.plugins.insert(name, Arc::clone(&slot));
        });
        if let Err(e) = registered {
            self.retire(&slot);
            return Err(e);
        }
        self.jobs_register(&slot);
        self.publish(event(
            LifecycleKind::Loaded,
            slot.manifest(),
            Some(slot.generation()),
        ));
        Ok(slot)
    }

    /// Every dependency is loaded, active and of an accepted version; no self or cyclic
    /// dependency.
    fn check_dependencies(&self, manifest: &PluginManifest) -> Result<()> {
        let reg = self.read();
        for dep in &manifest.dependencies {
            if dep.name == manifest.name {
                return Err(Error::SelfDependency {
                    plugin: manifest.name.clone(),
                });
            }
            let Some(slot) = reg
                .plugins
                .get(&dep.name)
                .filter(|s| s.state() == PluginState::Active)
            else {
                return Err(Error::DependencyNotFound {
                    plugin: manifest.name.clone(),
                    dependency: dep.name.clone(),
                });
            };
            if !dep.version.matches(&slot.manifest().version) {
                return Err(Error::DependencyVersion {
                    plugin: manifest.name.clone(),
                    dependency: dep.name.clone(),
                    required: dep.version.to_string(),
                    found: slot.manifest().version.to_string(),
                });
            }
        }
        let deps_of = |n: &str| -> Vec<String> {
            reg.plugins
                .get(n)
                .map(|s| {
                    s.manifest()
                        .dependencies
                        .iter()
                        .map(|d| d.name.clone())
                        .collect()
                })
                .unwrap_or_default()
        };
        // A cycle through loaded plugins needs a loaded plugin that depends on this one. There is
        // none on a fresh load (its dependents would have been unloaded with it), so the search,
        // linear in what it visits, only runs for reloads of plugins that have dependents.
        let has_dependents = reg
            .plugins
            .values()
            .any(|s| s.manifest().depends_on(&manifest.name));
        if has_dependents
            && let Some(cycle) =
                graph::cycle_through(&manifest.name, &manifest.dependencies, &deps_of)
        {
            return Err(Error::CircularDependency { cycle });
        }
        Ok(())
    }

    /// Writes the shadow copy, starts the worker (which opens the library and creates the
    /// instance) and runs `initialize`. Rolls everything back on failure. `lineage` is the
    /// lineage of the instance this one replaces (none for a fresh load).
    fn start_instance(&self, candidate: Candidate, lineage: Option<u64>) -> Result<Arc<Slot>> {
        let manifest = Arc::new(candidate.inspection.manifest.clone());
        let settings = self.settings_for(&manifest.name);
        let resources = settings
            .overrides
            .clone()
            .unwrap_or_default()
            .apply(&manifest)?;
        check_config(&manifest, settings.config.as_ref())?;
        let threads = settings.pool_threads()?;
        let scoped = self.open_resources(&manifest.name, &resources)?;
        let generation = self.next_generation();
        let shadow = candidate.write_shadow(&self.shadow_dir)?;
        let shadow_path = shadow.as_path().to_owned();
        let services: std::sync::Weak<dyn HostServices> = self.me.clone();
        let ctx = Arc::new(HostContext::new(
            Arc::clone(&manifest),
            generation,
            services,
        ));
        let stats = Arc::new(Stats::default());
        let spawn = Spawn {
            shadow,
            original: candidate.inspection.path.clone(),
            header: candidate.header,
            ctx: Arc::clone(&ctx),
            stats: Arc::clone(&stats),
            capacity: self.config.mailbox_capacity,
            threads,
            on_call: scoped.tables.as_ref().map(ScopedTables::call_start_hook),
        };
        let (worker, mailbox) = match Worker::start(spawn, self.config.initialize_timeout, |l| {
            self.close_library(l)
        }) {
            Ok(started) => started,
            Err(e) => {
                ctx.revoke();
                if matches!(e, Error::Timeout { .. }) {
                    self.record_failed(&manifest, &candidate.inspection.path, generation, &e);
                } else {
                    let _ = std::fs::remove_file(&shadow_path);
                }
                self.publish_failed(&manifest, Some(generation), &e);
                return Err(e);
            }
        };
        let slot = Arc::new(Slot::new(
            lineage,
            candidate.inspection.path.clone(),
            shadow_path,
            format!(
                "{}.{}",
                candidate.inspection.abi_major, candidate.inspection.api_minor
            ),
            settings,
            resources,
            scoped,
            ctx,
            mailbox,
            worker,
            stats,
        ));
        self.add_instance(&slot);
        self.initialize(slot)
    }

    /// Runs a new instance's `initialize` hook, bounded: active on success; on failure
    /// everything it registered is rolled back (a hung one is recorded as failed and its
    /// library never closed).
    fn initialize(&self, slot: Arc<Slot>) -> Result<Arc<Slot>> {
        match slot
            .mailbox
            .hook(Hook::Initialize, self.config.initialize_timeout)
        {
            Ok(_) => {
                slot.set_state(PluginState::Active);
                Ok(slot)
            }
            Err(failure) => {
                let timed_out = matches!(failure, CallFailure::Timeout);
                let error = self.call_failure(slot.name(), Operation::Initialize, failure);
                slot.ctx.revoke();
                self.bus.remove_owner(&slot.owner());
                if timed_out {
                    // Its code may still be running: never close it.
                    if let Some(worker) = slot.take_worker() {
                        let _ = worker.abandon();
                    }
                    slot.set_state(PluginState::Failed);
                    self.record_failed(slot.manifest(), &slot.path, slot.generation(), &error);
                } else {
                    self.close(&slot);
                }
                self.remove_instance(slot.generation());
                self.publish_failed(slot.manifest(), Some(slot.generation()), &error);
                Err(error)
            }
        }
    }

    /// Opens the resource sessions a plugin's effective resources need.
    fn open_resources(&self, plugin: &str, resources: &EffectiveResources) -> Result<Scoped> {
        let tables = match (&self.tables, resources.tables.is_empty()) {
            (Some(backend), false) => Some(ScopedTables::open(
                backend.as_ref(),
                plugin,
                &resources.tables,
                &resources.table_map,
            )?),
            _ => None,
        };
        let topics = match (&self.topics, resources.topics.is_empty()) {
            (Some(backend), false) => Some(ScopedTopics::open(
                backend,
                plugin,
                &resources.topics,
                &resources.topic_map,
            )?),
            _ => None,
        };
        let buckets = match (&self.buckets, resources.buckets.is_empty()) {
            (Some(backend), false) => Some(ScopedBuckets::open(
                backend,
                plugin,
                &resources.buckets,
                &resources.bucket_map,
            )?),
            _ => None,
        };
        Ok(Scoped {
            tables,
            topics,
            buckets,
        })
    }

    fn record_failed(
        &self,
        manifest: &Arc<PluginManifest>,
        path: &Path,
        generation: u64,
        error: &Error,
    ) {
        self.write().failed.insert(
            manifest.name.clone(),
            FailedRecord {
                manifest: Arc::clone(manifest),
                path: path.to_owned(),
                generation,
                error: error.chain(),
                at: SystemTime::now(),
            },
        );
    }

    fn publish_failed(&self, manifest: &PluginManifest, generation: Option<u64>, error: &Error) {
        let mut e = event(LifecycleKind::Failed, manifest, generation);
        e.error = Some(format!("{}: {}", error.code(), error.chain()));
        self.publish(e);
    }

    /// Stops the worker (drain, destroy, join), closes the library on this thread, and reports
    /// whether its code is gone from the process.
    fn close(&self, slot: &Slot) -> UnloadOutcome {
        // Consumers first: they hand messages to the worker and wait for it.
        if let Some(topics) = &slot.topics {
            topics.stop_consumers();
        }
        let ended = slot
            .take_worker()
            .map(|w| w.stop(self.config.cleanup_timeout));
        // No plugin code runs any more: close its tables session (its pool, its file).
        if let Some(tables) = &slot.tables {
            tables.close();
        }
        let outcome = match ended {
            Some(Ended::Joined(library)) => {
                if let Some(library) = library {
                    self.close_library(library);
                }
                if is_mapped(&slot.shadow) {
                    UnloadOutcome::Retained
                } else {
                    UnloadOutcome::Unmapped
                }
            }
            Some(Ended::Abandoned) | None => UnloadOutcome::Retained,
        };
        if outcome == UnloadOutcome::Unmapped {
            let _ = std::fs::remove_file(&slot.shadow);
        }
        outcome
    }

    /// The unload protocol for one instance: stop new calls, revoke subscriptions, run cleanup
    /// (bounded), drain and destroy, join, close, check the mapping.
    fn retire(&self, slot: &Arc<Slot>) -> UnloadOutcome {
        slot.set_state(PluginState::Stopping);
        // New calls now see `stopping` (and go to a replacement, if any); wait for those in
        // flight, so none is cut off by the cleanup.
        if !slot.drain(self.config.cleanup_timeout) {
            tracing::warn!(target: "manager", plugin = %slot.name(), "calls still in flight after the cleanup timeout; unloading anyway");
        }
        slot.ctx.close();
        self.bus.remove_owner(&slot.owner());
        // No topic message after cleanup either.
        if let Some(topics) = &slot.topics {
            topics.stop_consumers();
        }
        let cleanup = slot
            .mailbox
            .hook(Hook::Cleanup, self.config.cleanup_timeout);
        slot.ctx.revoke();
        let outcome = match cleanup {
            Err(CallFailure::Timeout) => {
                let error =
                    self.call_failure(slot.name(), Operation::Cleanup, CallFailure::Timeout);
                if let Some(worker) = slot.take_worker() {
                    let _ = worker.abandon();
                }
                self.record_failed(slot.manifest(), &slot.path, slot.generation(), &error);
                self.publish_failed(slot.manifest(), Some(slot.generation()), &error);
                UnloadOutcome::Retained
            }
            other => {
                if let Err(failure) = other {
                    let error = self.call_failure(slot.name(), Operation::Cleanup, failure);
                    tracing::warn!(target: "manager", plugin = %slot.name(), error = %error.chain(), "cleanup failed; unloading anyway");
                }
                self.close(slot)
            }
        };
        slot.set_state(match outcome {
            UnloadOutcome::Unmapped => PluginState::Unloaded,
            UnloadOutcome::Retained => PluginState::Retained,
        });
        self.remove_instance(slot.generation());
        outcome
    }

    /// Unloads a plugin; with `cascade`, its dependents first (reverse dependency order).
    pub(crate) fn unload(&self, name: &str, cascade: bool) -> Result<UnloadReport> {
        let _ops = self.lock_ops();
        gate::check(Change::Unload)?;
        let mut report = UnloadReport::default();
        if !self.read().plugins.contains_key(name) {
            // A failed record holds nothing but a leaked library; forgetting it is the unload.
            return match gate::commit(Change::Unload, || self.write().failed.remove(name))? {
                Some(_) => {
                    report.unloaded.push(name.to_owned());
                    report
                        .outcome
                        .insert(name.to_owned(), UnloadOutcome::Retained);
                    Ok(report)
                }
                None => Err(Error::NotFound {
                    name: name.to_owned(),
                }),
            };
        }
        let mut dependents = self.dependents_of(name);
        dependents.reverse();
        if !dependents.is_empty() && !cascade {
            return Err(Error::HasDependents {
                name: name.to_owned(),
                dependents,
            });
        }
        // The commit point of an unload (see gate.rs): once started, it is carried through.
        gate::commit(Change::Unload, || ())?;
        for plugin in dependents.iter().map(String::as_str).chain([name]) {
            let Ok(slot) = self.slot(plugin) else {
                continue;
            };
            let outcome = self.retire(&slot);
            {
                let mut reg = self.write();
                if reg
                    .plugins
                    .get(plugin)
                    .is_some_and(|s| s.generation() == slot.generation())
                {
                    reg.plugins.remove(plugin);
                }
            }
            self.jobs_unregister(&slot);
            let mut e = event(
                LifecycleKind::Unloaded,
                slot.manifest(),
                Some(slot.generation()),
            );
            e.outcome = Some(outcome);
            self.publish(e);
            self.metrics.unloads.fetch_add(1, Ordering::Relaxed);
            report.unloaded.push(plugin.to_owned());
            report.outcome.insert(plugin.to_owned(), outcome);
        }
        Ok(report)
    }

    /// Atomically replaces a plugin with a new instance of its file, then its dependents.
    pub(crate) fn reload(&self, name: &str) -> Result<PluginInfo> {
        // The file is read before the transition lock is taken (see `read_then_lock`).
        let owned = self.own_plugin(name);
        let (ops, read) = self.read_then_lock(Change::Reload, name, true)?;
        let Some(read) = read else {
            return Err(Error::NotFound {
                name: name.to_owned(),
            });
        };
        let Ok(old) = self.slot(name) else {
            // A failed plugin is reloaded by loading its file again.
            let started = Instant::now();
            let result = read.and_then(|c| self.load_candidate(c));
            self.count_load(started, result.is_ok());
            return self.get(result?.name());
        };
        let dependents = self.dependents_of(name);
        let started = Instant::now();
        if let Err(e) = read.and_then(|c| self.replace(&old, c)) {
            self.metrics.reload_failures.fetch_add(1, Ordering::Relaxed);
            return Err(e);
        }
        self.metrics.reloads.fetch_add(1, Ordering::Relaxed);
        self.metrics.reload_seconds.observe(started.elapsed());
        drop(ops);
        drop(owned);
        self.reload_dependents(&dependents);
        self.get(name)
    }

    /// Reloads the dependents of a plugin that was just swapped, in dependency order, one at a
    /// time: each one's file is read *outside* the transition lock, then, under it, the
    /// dependent is replaced if it is still the instance the file was read for. One that
    /// another operation replaced or unloaded meanwhile (after the swap, so already started
    /// against the new instance) is left as it is; one that cannot reload keeps its old
    /// instance (its handles follow the dependency).
    fn reload_dependents(&self, dependents: &[String]) {
        for dependent in dependents {
            let _owned = self.own_plugin(dependent);
            let Some((generation, path)) = self.instance_seen(dependent, false) else {
                continue;
            };
            let read = Candidate::read(&path, self.config.max_plugin_bytes);
            let _ops = self.lock_ops();
            let slot = match self.slot(dependent) {
                Ok(slot) if slot.generation() == generation => slot,
                _ => {
                    tracing::debug!(target: "manager", plugin = %dependent, "dependent changed while its file was read; left as it is");
                    continue;
                }
            };
            if let Err(e) = read.and_then(|c| self.replace(&slot, c)) {
                tracing::warn!(target: "manager", plugin = %dependent, error = %e.chain(), "dependent kept its old instance");
            }
        }
    }

    /// Loads `candidate` (read from `old`'s file) beside `old`, initialises it, swaps it in and
    /// retires `old`. If anything fails before the swap, `old` keeps running.
    pub(crate) fn replace(&self, old: &Arc<Slot>, candidate: Candidate) -> Result<Arc<Slot>> {
        let name = old.name().to_owned();
        if candidate.name() != name {
            return Err(Error::NameChanged {
                path: old.path.clone(),
                expected: name,
                found: candidate.name().to_owned(),
            });
        }
        let manifest = &candidate.inspection.manifest;
        self.check_dependencies(manifest)?;
        // Direct dependents must accept the new version.
        for dependent in self.read().plugins.values() {
            if let Some(req) = dependent
                .manifest()
                .dependencies
                .iter()
                .find(|d| d.name == name)
                && !req.version.matches(&manifest.version)
            {
                return Err(Error::DependencyVersion {
                    plugin: dependent.name().to_owned(),
                    dependency: name,
                    required: req.version.to_string(),
                    found: manifest.version.to_string(),
                });
            }
        }
        let was_disabled = old.state() == PluginState::Disabled;
        let new = self.start_instance(candidate, Some(old.lineage))?;
        if was_disabled {
            let _ = new.mailbox.hook(Hook::Disable, self.config.execute_timeout);
            new.set_state(PluginState::Disabled);
        }
        // The swap is the commit point: if the requester gave up meanwhile (see gate.rs), the
        // new instance is retired and the old one keeps running.
        let swapped = gate::commit(Change::Reload, || {
            self.write().plugins.insert(name.clone(), Arc::clone(&new));
        });
        if let Err(e) = swapped {
            self.retire(&new);
            return Err(e);
        }
        self.jobs_register(&new);
        let outcome = self.retire(old);
        tracing::info!(target: "manager", plugin = %name, old_generation = old.generation(), ?outcome, "old instance retired");
        self.publish(event(
            LifecycleKind::Reloaded,
            new.manifest(),
            Some(new.generation()),
        ));
        Ok(new)
    }

    /// Enables or disables a plugin through its hook; on a hook failure the state is unchanged.
    pub(crate) fn set_enabled(&self, name: &str, enabled: bool) -> Result<PluginInfo> {
        let _ops = self.lock_ops();
        let slot = self.slot(name)?;
        let (from, to, hook, change) = if enabled {
            let (from, to) = (PluginState::Disabled, PluginState::Active);
            (from, to, Hook::Enable, Change::Enable)
        } else {
            let (from, to) = (PluginState::Active, PluginState::Disabled);
            (from, to, Hook::Disable, Change::Disable)
        };
        let state = slot.state();
        if state == to {
            return self.get(name);
        }
        if state != from {
            return Err(Error::NotActive {
                name: name.to_owned(),
                state,
            });
        }
        gate::commit(change, || ())?;
        slot.mailbox
            .hook(hook, self.config.execute_timeout)
            .map_err(|f| self.call_failure(name, hook.operation(), f))?;
        slot.set_state(to);
        let kind = if enabled {
            LifecycleKind::Enabled
        } else {
            LifecycleKind::Disabled
        };
        self.publish(event(kind, slot.manifest(), Some(slot.generation())));
        self.get(name)
    }

    /// Loads every plugin library in `dir`, in dependency order, with a per-plugin report.
    pub(crate) fn load_dir(&self, dir: &Path) -> Result<DirectoryReport> {
        let files = library_files(dir)?;
        Ok(self.load_files(files))
    }

    /// Loads plugin files in dependency order (whatever order they are given in), with a
    /// per-plugin report.
    ///
    /// Files are read and validated before the transition lock (see `load`), then planned under
    /// it. Each file is then read again, outside the lock, just before it is loaded (one file in
    /// memory at a time), and loaded under the lock, which checks again that the plan still
    /// holds: not loaded meanwhile, dependencies still there.
    pub(crate) fn load_files(&self, files: Vec<PathBuf>) -> DirectoryReport {
        let mut report = DirectoryReport::default();
        let candidates = self.read_candidates(files, &mut report);
        let plan = {
            let _ops = self.lock_ops();
            self.plan_candidates(candidates, &mut report)
        };
        self.load_planned(plan, &mut report);
        report
    }

    /// Reads and validates every file (keeping only its manifest); failures go to the report.
    fn read_candidates(&self, files: Vec<PathBuf>, report: &mut DirectoryReport) -> Vec<Candidate> {
        let mut candidates = Vec::new();
        for path in files {
            match Candidate::read(&path, self.config.max_plugin_bytes) {
                Ok(mut c) => {
                    c.release_bytes();
                    candidates.push(c);
                }
                Err(e) => report.failed.push(failed_load(path, None, &e)),
            }
        }
        candidates
    }

    /// Under the transition lock: refuses duplicate names and plugins already loaded, then
    /// orders the rest by their dependencies (on each other and on what is loaded).
    fn plan_candidates(
        &self,
        mut candidates: Vec<Candidate>,
        report: &mut DirectoryReport,
    ) -> DirPlan {
        let loaded: HashMap<String, (semver::Version, PathBuf)> = self
            .read()
            .plugins
            .values()
            .filter(|s| s.state() == PluginState::Active)
            .map(|s| {
                (
                    s.name().to_owned(),
                    (s.manifest().version.clone(), s.path.clone()),
                )
            })
            .collect();
        let refused = refuse_duplicates_and_loaded(&mut candidates, &loaded, report);
        let nodes: Vec<graph::Node<'_>> = candidates
            .iter()
            .map(|c| graph::Node {
                name: &c.inspection.manifest.name,
                version: &c.inspection.manifest.version,
                dependencies: &c.inspection.manifest.dependencies,
            })
            .collect();
        let plan = graph::plan(&nodes, &|n| loaded.get(n).map(|(v, _)| v.clone()));
        let mut blocked: HashSet<String> = HashSet::new();
        for (i, e) in plan.failed {
            let c = &candidates[i];
            // A dependency refused above (duplicate name) is a failed dependency, not a missing one.
            if let Error::DependencyNotFound { dependency, .. } = &e
                && refused.contains(dependency)
            {
                blocked.insert(c.name().to_owned());
                report.skipped.push(skipped(c, dependency.clone()));
                continue;
            }
            report
                .failed
                .push(failed_load(c.inspection.path.clone(), Some(c.name()), &e));
        }
        for (i, because) in plan.skipped {
            let c = &candidates[i];
            blocked.insert(c.name().to_owned());
            report.skipped.push(skipped(c, because));
        }
        DirPlan {
            candidates: candidates.into_iter().map(Some).collect(),
            order: plan.order,
            blocked,
        }
    }

    /// Loads the planned candidates in order, each re-read outside the lock and loaded under
    /// it; a plugin whose dependency did not load is skipped.
    fn load_planned(&self, plan: DirPlan, report: &mut DirectoryReport) {
        let DirPlan {
            mut candidates,
            order,
            mut blocked,
        } = plan;
        for i in order {
            let Some(c) = candidates[i].take() else {
                continue;
            };
            let path = c.inspection.path.clone();
            let name = c.name().to_owned();
            if let Some(dep) = c
                .inspection
                .manifest
                .dependencies
                .iter()
                .find(|d| blocked.contains(&d.name))
            {
                blocked.insert(name.clone());
                report.skipped.push(skipped(&c, dep.name.clone()));
                continue;
            }
            let started = Instant::now();
            let result = gate::check(Change::Load)
                .and_then(|()| c.reread(self.config.max_plugin_bytes))
                .and_then(|c| {
                    let _ops = self.lock_ops();
                    self.load_candidate(c)
                });
            self.count_load(started, result.is_ok());
            match result {
                Ok(_) => report.loaded.push(name),
                Err(e) => {
                    blocked.insert(name.clone());
                    report.failed.push(failed_load(path, Some(&name), &e));
                }
            }
        }
    }

    /// Unloads everything, dependents first.
    pub(crate) fn shutdown(&self) {
        // Stop claiming jobs first; attempts still running after the grace are left to their
        // leases.
        if let Some(jobs) = &self.jobs {
            jobs.shutdown(self.config.cleanup_timeout);
        }
        let order = {
            let reg = self.read();
            self.topo_order(&reg)
        };
        for name in order.iter().rev() {
            if let Err(e) = self.unload(name, true) {
                tracing::warn!(target: "manager", plugin = %name, error = %e.chain(), "unload at shutdown failed");
            }
        }
    }
}

/// A directory load's plan: the candidates (taken as they are loaded), their load order, and
/// the names that failed or were skipped (their dependents are skipped too).
struct DirPlan {
    candidates: Vec<Option<Candidate>>,
    order: Vec<usize>,
    blocked: HashSet<String>,
}

/// A report entry for a candidate skipped because `because` did not load.
fn skipped(c: &Candidate, because: String) -> SkippedLoad {
    SkippedLoad {
        path: c.inspection.path.clone(),
        name: c.name().to_owned(),
        because,
    }
}

/// Removes the candidates whose name two files share (all of them) or that is already loaded,
/// reporting each; answers the names refused as duplicates.
fn refuse_duplicates_and_loaded(
    candidates: &mut Vec<Candidate>,
    loaded: &HashMap<String, (semver::Version, PathBuf)>,
    report: &mut DirectoryReport,
) -> HashSet<String> {
    let mut by_name: HashMap<String, Vec<PathBuf>> = HashMap::new();
    for c in candidates.iter() {
        by_name
            .entry(c.name().to_owned())
            .or_default()
            .push(c.inspection.path.clone());
    }
    let mut refused: HashSet<String> = HashSet::new();
    candidates.retain(|c| {
        let paths = &by_name[c.name()];
        let error = if paths.len() > 1 {
            Error::DuplicateName {
                name: c.name().to_owned(),
                paths: paths.clone(),
            }
        } else if let Some((_, path)) = loaded.get(c.name()) {
            Error::AlreadyLoaded {
                name: c.name().to_owned(),
                path: path.clone(),
            }
        } else {
            return true;
        };
        report.failed.push(failed_load(
            c.inspection.path.clone(),
            Some(c.name()),
            &error,
        ));
        if paths.len() > 1 {
            refused.insert(c.name().to_owned());
        }
        false
    });
    refused
}

/// Validates a plugin's config against the JSON Schema in its manifest (a plugin without a
/// schema takes any config; a missing config is validated as `{}`).
fn check_config(manifest: &PluginManifest, config: Option<&serde_json::Value>) -> Result<()> {
    let Some(schema) = &manifest.config_schema else {
        return Ok(());
    };
    let validator = jsonschema::validator_for(schema).map_err(|e| Error::InvalidManifest {
        path: PathBuf::from(&manifest.name),
        reason: format!("its config schema is not a valid JSON Schema: {e}"),
    })?;
    let empty = serde_json::json!({});
    let config = config.unwrap_or(&empty);
    let errors = crate::manifest::schema_errors(&validator, config);
    if errors.is_empty() {
        Ok(())
    } else {
        Err(Error::PluginConfigRejected {
            plugin: manifest.name.clone(),
            errors,
        })
    }
}

fn failed_load(path: PathBuf, name: Option<&str>, e: &Error) -> FailedLoad {
    FailedLoad {
        path,
        name: name.map(str::to_owned),
        code: e.code(),
        error: e.chain(),
    }
}

/// Whether a file name looks like a plugin library: the platform's library suffix, not hidden,
/// not an editor's or downloader's temporary file.
pub(crate) fn is_library_name(name: &str) -> bool {
    name.ends_with(std::env::consts::DLL_SUFFIX) && !name.starts_with('.') && !name.starts_with('#')
}

/// The plugin library files directly in `dir`, sorted by name.
pub(crate) fn library_files(dir: &Path) -> Result<Vec<PathBuf>> {
    crate::loader::check_path(dir)?;
    let entries = std::fs::read_dir(dir).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => Error::BadRequest {
            message: format!("directory `{}` does not exist", dir.display()),
        },
        std::io::ErrorKind::NotADirectory => Error::BadRequest {
            message: format!("`{}` is not a directory", dir.display()),
        },
        _ => crate::loader::path_error(dir, e),
    })?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file() || t.is_symlink()))
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(is_library_name)
        })
        .collect();
    files.sort();
    Ok(files)
}
