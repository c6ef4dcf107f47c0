//! The watcher thread: collects events into bursts, waits until files are complete, then applies
//! a set of changes through the manager (unloads, reloads, one dependency-ordered load) and
//! reports each outcome. Owns its state; only the [`Board`] is shared.

use std::cmp::Reverse;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError};
use std::time::{Instant, SystemTime};

use crossbeam_channel::{Receiver, RecvTimeoutError};
use notify::EventKind;
use notify::event::{ModifyKind, RenameMode};
use serde_json::{Value, json};

use super::watcher::{Board, FileStatus, Msg, WatchOptions, WatchedFile, is_watched_name};
use crate::error::{Error, ErrorCode};
use crate::loader::{Candidate, content_hash, read_plugin_file};
use crate::manager::{PluginInfo, PluginManager, PluginState};

/// Size and mtime: what must stay unchanged for a file written in place to count as complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stat {
    len: u64,
    modified: Option<SystemTime>,
}

/// A file with events not acted on yet.
#[derive(Debug, Default)]
struct Pending {
    /// Its last event put it in place by rename: complete.
    renamed: bool,
    /// What it looked like, since when.
    seen: Option<(Stat, Instant)>,
}

/// The watcher thread's state; nothing here is shared but the published [`Board`].
pub(super) struct Worker {
    manager: Arc<PluginManager>,
    dir: PathBuf,
    canonical: Option<PathBuf>,
    options: WatchOptions,
    board: Arc<Board>,
    files: BTreeMap<PathBuf, WatchedFile>,
    /// Content hash of the bytes loaded from each path.
    loaded_hash: HashMap<PathBuf, u64>,
    pending: HashMap<PathBuf, Pending>,
    /// First and last event of the burst in progress.
    burst: Option<(Instant, Instant)>,
}

/// A complete file read and validated, ready for the manager.
struct Ready {
    path: PathBuf,
    plugin: String,
    hash: u64,
}

impl Worker {
    pub(super) fn new(
        manager: Arc<PluginManager>,
        dir: &Path,
        options: WatchOptions,
        board: Arc<Board>,
    ) -> Self {
        Self {
            manager,
            canonical: std::fs::canonicalize(dir).ok(),
            dir: dir.to_owned(),
            options,
            board,
            files: BTreeMap::new(),
            loaded_hash: HashMap::new(),
            pending: HashMap::new(),
            burst: None,
        }
    }

    /// Applies events until told to stop.
    pub(super) fn run(mut self, rx: &Receiver<Msg>) {
        loop {
            let msg = match self.next_wake() {
                Some(at) => rx.recv_deadline(at),
                None => rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
            };
            match msg {
                Ok(Msg::Stop) | Err(RecvTimeoutError::Disconnected) => return,
                Ok(Msg::Event(Ok(event))) => self.note(&event),
                Ok(Msg::Event(Err(e))) => {
                    tracing::warn!(target: "watch", dir = %self.dir.display(), error = %e, "watch error; rescanning the folder");
                    self.rescan();
                }
                Err(RecvTimeoutError::Timeout) => {}
            }
            if self.next_wake().is_some_and(|at| at <= Instant::now()) {
                self.evaluate();
            }
        }
    }

    /// When to look at the folder next: once the burst is quiet (or too long), else when the
    /// first pending file may have settled.
    fn next_wake(&self) -> Option<Instant> {
        if let Some((first, last)) = self.burst {
            return Some((last + self.options.debounce).min(first + self.options.max_burst()));
        }
        self.pending
            .values()
            .map(|p| {
                p.seen
                    .map_or_else(Instant::now, |(_, since)| since + self.options.settle)
            })
            .min()
    }

    /// Records an event: which files to look at, and whether the last change was a rename.
    fn note(&mut self, event: &notify::Event) {
        if event.need_rescan() {
            self.rescan();
            return;
        }
        let kind = event.kind;
        if matches!(kind, EventKind::Access(_)) {
            return; // opens and closes, ours included: nothing changed
        }
        if matches!(
            kind,
            EventKind::Remove(_) | EventKind::Modify(ModifyKind::Name(RenameMode::From))
        ) && event.paths.contains(&self.dir)
        {
            tracing::error!(target: "watch", dir = %self.dir.display(), "the watched folder was removed or moved: its changes are no longer seen");
        }
        for (i, path) in event.paths.iter().enumerate() {
            let Some(path) = self.child(path) else {
                continue;
            };
            let pending = self.pending.entry(path).or_default();
            pending.seen = None;
            match kind {
                EventKind::Modify(ModifyKind::Name(RenameMode::To)) => pending.renamed = true,
                // `Both` carries [from, to].
                EventKind::Modify(ModifyKind::Name(RenameMode::Both)) => {
                    if i == 1 {
                        pending.renamed = true;
                    }
                }
                EventKind::Modify(ModifyKind::Metadata(_) | ModifyKind::Name(_))
                | EventKind::Remove(_) => {}
                _ => pending.renamed = false, // written in place: wait for it to settle
            }
            let now = Instant::now();
            self.burst = Some(self.burst.map_or((now, now), |(first, _)| (first, now)));
        }
    }

    /// The folder's entry an event names, if the watcher considers it.
    fn child(&self, path: &Path) -> Option<PathBuf> {
        if path == self.dir {
            return None;
        }
        let name = path.file_name()?.to_str()?;
        is_watched_name(name).then(|| self.dir.join(name))
    }

    /// Events were lost (queue overflow, watch error): look at every file again.
    fn rescan(&mut self) {
        let mut paths = self.library_files();
        paths.extend(self.files.keys().cloned());
        let now = Instant::now();
        for path in paths {
            self.pending.insert(path, Pending::default());
            self.burst = Some(self.burst.map_or((now, now), |(first, _)| (first, now)));
        }
    }

    fn library_files(&self) -> Vec<PathBuf> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut files: Vec<PathBuf> = entries
            .filter_map(|e| e.ok())
            .filter(|e| e.file_type().is_ok_and(|t| t.is_file() || t.is_symlink()))
            .filter_map(|e| self.child(&e.path()))
            .collect();
        files.sort();
        files
    }

    /// At start: record what the manager already runs from the folder, load the rest.
    pub(super) fn initial_scan(&mut self) {
        let list = self.manager.list();
        let mut fresh = Vec::new();
        for path in self.library_files() {
            match self.owner(&list, &path) {
                Some(plugin) => {
                    let hash = read_plugin_file(&path, self.manager.max_plugin_bytes())
                        .ok()
                        .map(|b| content_hash(&b));
                    if let Some(hash) = hash {
                        self.loaded_hash.insert(path.clone(), hash);
                    }
                    self.set(&path, Some(&plugin.name), FileStatus::Loaded, None, hash);
                }
                None => fresh.push(path),
            }
        }
        if !fresh.is_empty() {
            self.apply(fresh);
        }
        self.publish();
    }

    /// Looks at every pending file: gone or complete ones are applied as one set, the others
    /// stay pending.
    fn evaluate(&mut self) {
        self.burst = None;
        let now = Instant::now();
        let settle = self.options.settle;
        let mut ready = Vec::new();
        self.pending.retain(|path, pending| {
            let stat = match std::fs::metadata(path) {
                Ok(m) if m.is_file() => Stat {
                    len: m.len(),
                    modified: m.modified().ok(),
                },
                Ok(_) => return false, // a folder or a device: not ours
                Err(_) => {
                    ready.push(path.clone()); // gone (or unreadable: applying reports it)
                    return false;
                }
            };
            if pending.renamed {
                ready.push(path.clone());
                return false;
            }
            let since = match pending.seen {
                Some((seen, since)) if seen == stat => since,
                _ => {
                    pending.seen = Some((stat, now));
                    now
                }
            };
            if now.duration_since(since) >= settle {
                ready.push(path.clone());
                return false;
            }
            true
        });
        let waiting: Vec<PathBuf> = self.pending.keys().cloned().collect();
        for path in waiting {
            let plugin = self.files.get(&path).and_then(|f| f.plugin.clone());
            self.set(&path, plugin.as_deref(), FileStatus::Pending, None, None);
        }
        if !ready.is_empty() {
            ready.sort();
            self.apply(ready);
        }
        self.publish();
    }

    /// Applies complete files: unloads for removed ones (dependents first), reloads for
    /// replaced ones (dependencies first), then one dependency-ordered load of the new ones.
    fn apply(&mut self, paths: Vec<PathBuf>) {
        let list = self.manager.list();
        let mut removals: Vec<(PathBuf, String)> = Vec::new();
        let mut reloads: Vec<Ready> = Vec::new();
        let mut loads: Vec<Ready> = Vec::new();
        for path in paths {
            let owner = self.owner(&list, &path).map(|p| p.name.clone());
            // Bounded and non-blocking (issue 11): a FIFO or device named `x.so` in the
            // folder is refused, it never hangs the watcher.
            let bytes = match read_plugin_file(&path, self.manager.max_plugin_bytes()) {
                Ok(bytes) => bytes,
                Err(Error::FileNotFound { .. }) => {
                    match owner {
                        Some(plugin) => removals.push((path, plugin)),
                        None => self.forget(&path),
                    }
                    continue;
                }
                Err(e) => {
                    self.fail(&path, owner.as_deref(), &e, None);
                    continue;
                }
            };
            let hash = content_hash(&bytes);
            let plugin = match Candidate::from_bytes(&path, bytes) {
                Ok(candidate) => candidate.inspection.manifest.name,
                Err(e) => {
                    self.fail(&path, owner.as_deref(), &e, Some(hash));
                    continue;
                }
            };
            let ready = Ready { path, plugin, hash };
            match owner {
                Some(current) if current == ready.plugin => {
                    if self.loaded_hash.get(&ready.path) == Some(&hash) {
                        self.unchanged(&ready);
                    } else {
                        reloads.push(ready);
                    }
                }
                // The file now holds another plugin: unload the old one, load the new one.
                Some(current) => {
                    removals.push((ready.path.clone(), current));
                    loads.push(ready);
                }
                None => loads.push(ready),
            }
        }
        let position = |name: &str| list.iter().position(|p| p.name == name);
        removals.sort_by_key(|(_, plugin)| Reverse(position(plugin)));
        reloads.sort_by_key(|r| position(&r.plugin));
        let removed = self.unload_all(removals, &mut loads);
        let reloaded = self.reload_all(reloads);
        let loaded = self.load_all(&loads);
        if reloaded || loaded {
            self.retry_waiting();
        }
        if removed || reloaded || loaded {
            self.persist();
        }
    }

    fn unload_all(&mut self, removals: Vec<(PathBuf, String)>, loads: &mut Vec<Ready>) -> bool {
        let mut changed = false;
        for (path, plugin) in removals {
            match self.manager.unload(&plugin, self.options.cascade_on_remove) {
                Ok(report) => {
                    changed = true;
                    self.forget(&path);
                    for dependent in report.unloaded.iter().filter(|n| **n != plugin) {
                        self.orphan(dependent, &plugin);
                    }
                    tracing::info!(target: "watch", path = %path.display(), plugin = %plugin, unloaded = ?report.unloaded, "library removed: plugin unloaded");
                    self.emit(
                        "watch:unloaded",
                        &json!({ "path": path, "plugin": plugin, "unloaded": report.unloaded }),
                    );
                }
                Err(e) if e.code() == ErrorCode::NotFound => self.forget(&path),
                Err(e) => {
                    loads.retain(|r| r.path != path);
                    self.fail(&path, Some(&plugin), &e, None);
                }
            }
        }
        changed
    }

    /// A dependent unloaded with a removed library: its file waits for the dependency.
    fn orphan(&mut self, plugin: &str, dependency: &str) {
        let paths: Vec<PathBuf> = self
            .files
            .values()
            .filter(|f| f.plugin.as_deref() == Some(plugin))
            .map(|f| f.path.clone())
            .collect();
        for path in paths {
            self.loaded_hash.remove(&path);
            let error = Error::DependencyNotFound {
                plugin: plugin.to_owned(),
                dependency: dependency.to_owned(),
            };
            self.set(&path, Some(plugin), FileStatus::Failed, Some(&error), None);
        }
    }

    fn reload_all(&mut self, reloads: Vec<Ready>) -> bool {
        let mut changed = false;
        for r in reloads {
            match self.manager.reload(&r.plugin) {
                Ok(info) => {
                    changed = true;
                    self.loaded(&r, "watch:reloaded", &info);
                }
                Err(e) => self.fail(&r.path, Some(&r.plugin), &e, Some(r.hash)),
            }
        }
        changed
    }

    fn load_all(&mut self, loads: &[Ready]) -> bool {
        if loads.is_empty() {
            return false;
        }
        let report = self
            .manager
            .load_files(loads.iter().map(|r| r.path.clone()).collect());
        let hash_of = |path: &Path| loads.iter().find(|r| r.path == path).map(|r| r.hash);
        for plugin in &report.loaded {
            let Some(r) = loads.iter().find(|r| r.plugin == *plugin) else {
                continue;
            };
            match self.manager.get(plugin) {
                Ok(info) => self.loaded(r, "watch:loaded", &info),
                Err(e) => self.fail(&r.path, Some(plugin), &e, Some(r.hash)),
            }
        }
        for f in &report.failed {
            self.report_failure(
                &f.path,
                f.name.as_deref(),
                f.code,
                &f.error,
                hash_of(&f.path),
            );
        }
        for s in &report.skipped {
            let error = Error::DependencyNotFound {
                plugin: s.name.clone(),
                dependency: s.because.clone(),
            };
            self.fail(&s.path, Some(&s.name), &error, hash_of(&s.path));
        }
        !report.loaded.is_empty()
    }

    /// Files that failed for want of a dependency are tried again once every dependency they
    /// declare is loaded (a dependency dropped after its dependent, or back after a removal).
    fn retry_waiting(&mut self) {
        let mut retry = Vec::new();
        for f in self.files.values() {
            if f.status != FileStatus::Failed
                || f.code != Some(ErrorCode::DependencyNotFound)
                || self.pending.contains_key(&f.path)
            {
                continue;
            }
            let Ok(candidate) = Candidate::read(&f.path, self.manager.max_plugin_bytes()) else {
                continue;
            };
            let satisfied = candidate.inspection.manifest.dependencies.iter().all(|d| {
                self.manager
                    .get(&d.name)
                    .is_ok_and(|p| p.state == PluginState::Active)
            });
            if satisfied {
                retry.push(f.path.clone());
            }
        }
        if !retry.is_empty() {
            tracing::info!(target: "watch", files = ?retry, "dependencies are back: retrying");
            self.apply(retry);
        }
    }

    /// The plugin the manager runs from `path`, if any.
    fn owner<'a>(&self, list: &'a [PluginInfo], path: &Path) -> Option<&'a PluginInfo> {
        list.iter().find(|p| {
            matches!(p.state, PluginState::Active | PluginState::Disabled)
                && self.same_file(&p.path, path)
        })
    }

    /// `plugin_path` (as the manager was given it) names `path` of the watched folder.
    fn same_file(&self, plugin_path: &Path, path: &Path) -> bool {
        if plugin_path == path {
            return true;
        }
        if plugin_path.file_name() != path.file_name() {
            return false;
        }
        let parent = match plugin_path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        self.canonical.is_some() && std::fs::canonicalize(parent).ok() == self.canonical
    }

    fn loaded(&mut self, r: &Ready, event: &str, info: &PluginInfo) {
        self.loaded_hash.insert(r.path.clone(), r.hash);
        self.set(
            &r.path,
            Some(&r.plugin),
            FileStatus::Loaded,
            None,
            Some(r.hash),
        );
        tracing::info!(target: "watch", path = %r.path.display(), plugin = %r.plugin, version = %info.version, generation = info.generation, "{event}");
        self.emit(
            event,
            &json!({ "path": r.path, "plugin": r.plugin, "version": info.version, "generation": info.generation }),
        );
    }

    fn unchanged(&mut self, r: &Ready) {
        self.set(
            &r.path,
            Some(&r.plugin),
            FileStatus::Loaded,
            None,
            Some(r.hash),
        );
        tracing::debug!(target: "watch", path = %r.path.display(), plugin = %r.plugin, "identical content: not reloaded");
        self.emit(
            "watch:unchanged",
            &json!({ "path": r.path, "plugin": r.plugin }),
        );
    }

    fn fail(&mut self, path: &Path, plugin: Option<&str>, error: &Error, hash: Option<u64>) {
        self.report_failure(path, plugin, error.code(), &error.chain(), hash);
    }

    fn report_failure(
        &mut self,
        path: &Path,
        plugin: Option<&str>,
        code: ErrorCode,
        error: &str,
        hash: Option<u64>,
    ) {
        tracing::warn!(target: "watch", path = %path.display(), plugin = plugin.unwrap_or("?"), %code, error, "plugin file failed");
        let entry = self.entry(path);
        entry.plugin = plugin.map(str::to_owned).or(entry.plugin.take());
        entry.status = FileStatus::Failed;
        entry.code = Some(code);
        entry.error = Some(error.to_owned());
        entry.hash = hash.map(hex);
        let plugin = entry.plugin.clone();
        self.emit(
            "watch:failed",
            &json!({ "path": path, "plugin": plugin, "code": code, "error": error }),
        );
    }

    fn entry(&mut self, path: &Path) -> &mut WatchedFile {
        self.files
            .entry(path.to_owned())
            .or_insert_with(|| WatchedFile {
                path: path.to_owned(),
                plugin: None,
                status: FileStatus::Pending,
                error: None,
                code: None,
                hash: None,
            })
    }

    fn set(
        &mut self,
        path: &Path,
        plugin: Option<&str>,
        status: FileStatus,
        error: Option<&Error>,
        hash: Option<u64>,
    ) {
        let entry = self.entry(path);
        entry.plugin = plugin.map(str::to_owned).or(entry.plugin.take());
        entry.status = status;
        entry.code = error.map(Error::code);
        entry.error = error.map(Error::chain);
        if hash.is_some() {
            entry.hash = hash.map(hex);
        }
    }

    fn forget(&mut self, path: &Path) {
        self.files.remove(path);
        self.loaded_hash.remove(path);
    }

    /// Publishes the status board, then the event: whoever sees a watch event finds the files'
    /// status already saying what it announces.
    fn emit(&self, event: &str, payload: &Value) {
        self.publish();
        let sent = serde_json::to_vec(payload)
            .map_err(|e| Error::Internal {
                message: e.to_string(),
            })
            .and_then(|bytes| self.manager.bus().emit_host(event, &bytes));
        if let Err(e) = sent {
            tracing::error!(target: "watch", event, error = %e.chain(), "cannot publish a watch event");
        }
    }

    fn persist(&self) {
        if let Some(store) = &self.options.store
            && let Err(e) = store.save(&self.manager)
        {
            tracing::error!(target: "watch", error = %e.chain(), "cannot persist the plugin set");
        }
    }

    fn publish(&self) {
        let files: Vec<WatchedFile> = self.files.values().cloned().collect();
        *self
            .board
            .files
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = files;
    }
}

fn hex(hash: u64) -> String {
    format!("{hash:016x}")
}
