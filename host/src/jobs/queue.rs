//! The queue at run time: triggers that enqueue on emit, workers that claim and run jobs under
//! leases, and the maintenance thread (heartbeats, the rescuer, schedules, retention).
//!
//! - **Enqueue on emit.** Each loaded plugin's triggers are compiled once, when its instance is
//!   registered ([`JobQueue::register`]). An emit whose name matches a trigger enqueues the
//!   jobs in one transaction *before* the event is delivered and before `emit` returns; if the
//!   store refuses, `emit` fails and nothing is delivered.
//! - **Workers.** `workers` threads run due jobs of plugins that are active here, through the
//!   manager like any other call (on the plugin's own thread, with the kind's timeout). A
//!   worker with no job in hand claims, in one statement, up to as many due jobs as there are
//!   workers free when the claim starts (itself included; workers claiming at the same moment
//!   may together take more), keeps the first and hands the rest to the others (a pause of a
//!   kind here, or a shutdown, gives back those not started; a claim in flight during the
//!   pause may still start one). The ends of
//!   attempts that finish at the same time are recorded together, in one transaction, each
//!   only if its claim's fencing token still holds. A worker with nothing to claim waits for a
//!   wake-up (an enqueue in this process, a `NOTIFY` from another host) or the poll interval.
//! - **Maintenance.** Every tick: extend the leases of the jobs running here, requeue jobs whose
//!   lease expired (at-least-once), fire due schedules, and, every minute, prune the log.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError, RwLock, Weak};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::commit::GroupCommit;
use super::store::{
    AttemptRecord, AttemptStatus, Claimed, Finish, JobFilter, JobRecord, JobState, JobStore,
    NewJob, Next, Refused, StateCount,
};
use super::{EventFields, JobSpec, ScheduleSpec, now_ms};
use crate::bus::{EventBus, Pattern};
use crate::config::JobsConfig;
use crate::error::{Error, Result};
use crate::manifest::PluginManifest;
use crate::metrics::JobMetrics;

/// Counts a queue thread as ended when dropped, also when it unwinds from a panic, so that a
/// shutdown never waits for a thread that is gone.
struct Ended<'a>(&'a JobQueue);

impl Drop for Ended<'_> {
    fn drop(&mut self) {
        self.0.thread_ended();
    }
}

/// A worker running an attempt: counted as busy, and its claim held here (heartbeated) until
/// the attempt is over, also when it unwinds. Created by [`JobQueue::run`], which counts the
/// worker busy right after.
struct Held<'a>(&'a JobQueue, i64);

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.0.busy.fetch_sub(1, Ordering::AcqRel);
        self.0
            .running
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.1);
    }
}

/// What the queue needs of the manager: whether a plugin runs here, and running a call.
pub(crate) trait JobHost: Send + Sync {
    /// Whether `plugin`'s current instance is active (jobs of others wait).
    fn is_active(&self, plugin: &str) -> bool;
    /// Runs `function` of `plugin` with JSON `input`, within `limit`.
    fn run(&self, plugin: &str, function: &str, input: Vec<u8>, limit: Duration)
    -> Result<Vec<u8>>;
    /// The execute timeout, for kinds that declare none.
    fn execute_timeout(&self) -> Duration;
}

/// One loaded plugin's declarations, as the queue uses them.
#[derive(Debug)]
struct Registered {
    generation: u64,
    manifest: Arc<PluginManifest>,
    /// (pattern, index of the job kind).
    triggers: Vec<(Pattern, usize)>,
}

/// Options of an operator's enqueue.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EnqueueOptions {
    /// Not before this time (ms since the epoch); default now.
    pub run_at: Option<i64>,
    /// Priority; default the kind's.
    pub priority: Option<i16>,
    /// A dedupe key; default none.
    pub dedupe_key: Option<String>,
}

/// The durable job queue of one host.
pub struct JobQueue {
    store: Arc<dyn JobStore>,
    config: JobsConfig,
    host: Weak<dyn JobHost>,
    bus: Weak<EventBus>,
    plugins: RwLock<HashMap<String, Registered>>,
    /// Triggers registered, so that an emit with none to match takes no lock (shared with the
    /// bus's emit hook, which reads it before it even reaches the queue).
    triggers: Arc<AtomicUsize>,
    /// Set at shutdown; the maintenance thread waits on it between ticks.
    stop: (Mutex<bool>, Condvar),
    /// Bumped on every wake-up; workers wait for it to change.
    wake: (Mutex<u64>, Condvar),
    /// Enqueues of concurrent emitters, committed together.
    commits: GroupCommit<NewJob, Option<i64>>,
    /// Ends of attempts that finish at the same time, recorded together.
    finishes: GroupCommit<Finish, bool>,
    /// Jobs claimed here and not started yet, for the next free worker.
    ready: Mutex<VecDeque<Claimed>>,
    /// Workers running an attempt (a claim asks for no more jobs than the other workers can
    /// start now).
    busy: AtomicUsize,
    /// Claims held here (waiting in `ready` or running): token → job id. Their leases are
    /// extended by the heartbeat until their ends are recorded.
    running: Mutex<HashMap<i64, i64>>,
    stopping: AtomicBool,
    /// Threads still running (workers and maintenance), signalled as each ends.
    live: (Mutex<usize>, Condvar),
    metrics: Arc<JobMetrics>,
}

impl std::fmt::Debug for JobQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobQueue")
            .field("store", &self.store)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Cuts `text` to at most `max` bytes, on a character boundary, marking the cut.
fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes)", &text[..end], text.len())
}

/// Longest dedupe key stored as it is; a longer one (or one with a NUL, which PostgreSQL text
/// refuses) is stored as `sha256:` and its hex digest, so any rendered key can be stored and
/// compared.
pub(crate) const MAX_KEY_BYTES: usize = 200;

/// A dedupe key as stored (see [`MAX_KEY_BYTES`]).
pub(crate) fn bounded_key(key: &str) -> String {
    use sha2::Digest as _;
    if key.len() <= MAX_KEY_BYTES && !key.contains('\0') {
        return key.to_owned();
    }
    let digest = sha2::Sha256::digest(key.as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

/// A random id for an event that enqueued jobs.
fn event_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    let draw = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    format!("evt_{draw:016x}")
}

impl JobQueue {
    /// A queue on `store`. Threads start with [`JobQueue::start`].
    pub(crate) fn new(
        store: Arc<dyn JobStore>,
        config: JobsConfig,
        host: Weak<dyn JobHost>,
        bus: Weak<EventBus>,
        metrics: Arc<JobMetrics>,
    ) -> Self {
        Self {
            store,
            config,
            host,
            bus,
            plugins: RwLock::new(HashMap::new()),
            triggers: Arc::new(AtomicUsize::new(0)),
            stop: (Mutex::new(false), Condvar::new()),
            wake: (Mutex::new(0), Condvar::new()),
            commits: GroupCommit::default(),
            finishes: GroupCommit::default(),
            ready: Mutex::new(VecDeque::new()),
            busy: AtomicUsize::new(0),
            running: Mutex::new(HashMap::new()),
            stopping: AtomicBool::new(false),
            live: (Mutex::new(0), Condvar::new()),
            metrics,
        }
    }

    /// The number of triggers registered, shared: zero means no emit can enqueue anything.
    pub(crate) fn trigger_count(&self) -> Arc<AtomicUsize> {
        Arc::clone(&self.triggers)
    }

    /// Starts the workers and the maintenance thread, and listens for other hosts' enqueues.
    ///
    /// # Errors
    /// `internal` when a thread cannot be spawned.
    pub(crate) fn start(self: &Arc<Self>) -> Result<()> {
        let weak = Arc::downgrade(self);
        self.store.on_remote_enqueue(Arc::new(move || {
            if let Some(queue) = weak.upgrade() {
                queue.wake_up();
            }
        }));
        for i in 0..self.config.workers.max(1) {
            let queue = Arc::clone(self);
            self.spawn(format!("plugin-host-job-{i}"), move || queue.work())?;
        }
        let queue = Arc::clone(self);
        self.spawn("plugin-host-jobs".into(), move || queue.maintain())
    }

    fn spawn(&self, name: String, f: impl FnOnce() + Send + 'static) -> Result<()> {
        *self.live.0.lock().unwrap_or_else(PoisonError::into_inner) += 1;
        std::thread::Builder::new()
            .name(name)
            .spawn(f)
            .map(|_| ())
            .map_err(|e| {
                self.thread_ended();
                Error::Internal {
                    message: format!("cannot spawn a job thread: {e}"),
                }
            })
    }

    fn thread_ended(&self) {
        let mut live = self.live.0.lock().unwrap_or_else(PoisonError::into_inner);
        *live = live.saturating_sub(1);
        self.live.1.notify_all();
    }

    /// Stops claiming, waits up to `grace` for the attempts running here, and returns; an
    /// attempt still running then is left to its lease (another host, or this one after a
    /// restart, runs it again when the lease expires).
    pub(crate) fn shutdown(&self, grace: Duration) {
        if self.stopping.swap(true, Ordering::AcqRel) {
            return;
        }
        self.wake_up();
        self.give_back_ready();
        *self.stop.0.lock().unwrap_or_else(PoisonError::into_inner) = true;
        self.stop.1.notify_all();
        let deadline = Instant::now() + grace;
        let mut live = self.live.0.lock().unwrap_or_else(PoisonError::into_inner);
        while *live > 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                tracing::warn!(target: "jobs", threads = *live, "job attempts still running at shutdown are left to their leases");
                break;
            }
            live = self
                .live
                .1
                .wait_timeout(live, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// The store's configuration.
    pub fn config(&self) -> &JobsConfig {
        &self.config
    }

    /// Wakes one idle worker: enough for new jobs, since a worker claims jobs for every free
    /// worker at once and wakes the others when it claimed more than it can run.
    fn wake_one(&self) {
        let mut n = self.wake.0.lock().unwrap_or_else(PoisonError::into_inner);
        *n = n.wrapping_add(1);
        self.wake.1.notify_one();
    }

    /// Wakes every idle worker.
    fn wake_up(&self) {
        let mut n = self.wake.0.lock().unwrap_or_else(PoisonError::into_inner);
        *n = n.wrapping_add(1);
        self.wake.1.notify_all();
    }

    /// Registers a plugin instance's job kinds and triggers (replacing an older instance's).
    pub(crate) fn register(&self, generation: u64, manifest: &Arc<PluginManifest>) {
        let mut triggers = Vec::new();
        for (i, job) in manifest.jobs.iter().enumerate() {
            for t in &job.triggers {
                // Validated at load; a pattern that does not parse here is skipped.
                if let Ok(p) = Pattern::parse(t) {
                    triggers.push((p, i));
                }
            }
        }
        let mut plugins = self.plugins.write().unwrap_or_else(PoisonError::into_inner);
        let new = triggers.len();
        let old = plugins
            .insert(
                manifest.name.clone(),
                Registered {
                    generation,
                    manifest: Arc::clone(manifest),
                    triggers,
                },
            )
            .map_or(0, |r| r.triggers.len());
        self.triggers.fetch_add(new, Ordering::AcqRel);
        self.triggers.fetch_sub(old, Ordering::AcqRel);
        drop(plugins);
        // A plugin that becomes active may have jobs waiting.
        self.wake_up();
    }

    /// Forgets instance `generation` of `plugin` if it is the registered one (an unload; a
    /// reload registered its successor first). Its waiting jobs stay and wait.
    pub(crate) fn unregister(&self, plugin: &str, generation: u64) {
        let mut plugins = self.plugins.write().unwrap_or_else(PoisonError::into_inner);
        if plugins
            .get(plugin)
            .is_some_and(|r| r.generation == generation)
            && let Some(r) = plugins.remove(plugin)
        {
            self.triggers.fetch_sub(r.triggers.len(), Ordering::AcqRel);
        }
    }

    /// Enqueues the jobs an event triggers, durably, before the event is delivered.
    ///
    /// # Errors
    /// `backend_unavailable` when the store cannot commit them.
    pub(crate) fn on_emit(&self, name: &str, payload: &[u8]) -> Result<()> {
        // The host's own events (lifecycle, jobs) never trigger jobs: a store that is down must
        // not stop them.
        if self.triggers.load(Ordering::Acquire) == 0 || crate::bus::is_host_event(name) {
            return Ok(());
        }
        let plugins = self.plugins.read().unwrap_or_else(PoisonError::into_inner);
        let mut jobs = Vec::new();
        let mut parsed: Option<(Value, String)> = None;
        let mut id = None;
        let now = now_ms();
        for reg in plugins.values() {
            for (pattern, i) in &reg.triggers {
                if !pattern.matches(name) {
                    continue;
                }
                let spec = &reg.manifest.jobs[*i];
                if jobs
                    .iter()
                    .any(|j: &NewJob| j.plugin == reg.manifest.name && j.kind == spec.name)
                {
                    continue; // two triggers of one kind match: one job
                }
                let (value, input) = parsed.get_or_insert_with(|| {
                    let value = serde_json::from_slice::<Value>(payload).unwrap_or_else(|_| {
                        Value::String(String::from_utf8_lossy(payload).into_owned())
                    });
                    let input = value.to_string();
                    (value, input)
                });
                let event_id: &String = id.get_or_insert_with(event_id);
                let dedupe_key = spec.dedupe.as_ref().and_then(|t| {
                    t.render(&EventFields {
                        name,
                        id: event_id,
                        payload: value,
                    })
                    .map(|key| bounded_key(&key))
                    .map_err(|e| {
                        tracing::debug!(target: "jobs", plugin = %reg.manifest.name, kind = %spec.name, error = %e, "dedupe key not rendered; the job is enqueued without one");
                    })
                    .ok()
                });
                jobs.push(NewJob {
                    plugin: reg.manifest.name.clone(),
                    kind: spec.name.clone(),
                    input: input.clone(),
                    priority: spec.priority,
                    max_attempts: spec.max_attempts,
                    run_at: now,
                    dedupe_key,
                    source: format!("event:{name}"),
                    event_id: Some(event_id.clone()),
                });
            }
        }
        drop(plugins);
        if jobs.is_empty() {
            return Ok(());
        }
        let ids = self
            .commits
            .run(jobs.clone(), &|batch| self.store.enqueue(batch))?;
        self.enqueued(&jobs, &ids);
        Ok(())
    }

    /// Counts, announces and wakes for jobs just enqueued.
    fn enqueued(&self, jobs: &[NewJob], ids: &[Option<i64>]) {
        let mut any = false;
        for (job, id) in jobs.iter().zip(ids) {
            match id {
                Some(id) => {
                    any = true;
                    self.metrics.enqueued(&job.plugin, &job.kind);
                    self.announce(
                        "job:enqueued",
                        json!({"id": id, "plugin": job.plugin, "kind": job.kind, "source": job.source}),
                    );
                }
                None => self.metrics.deduplicated(&job.plugin, &job.kind),
            }
        }
        if any {
            self.wake_one();
        }
    }

    /// Emits a `job:*` event as the host.
    fn announce(&self, name: &str, payload: Value) {
        if let Some(bus) = self.bus.upgrade() {
            let _ = bus.emit_host(name, payload.to_string().as_bytes());
        }
    }

    fn spec_of(&self, plugin: &str, kind: &str) -> Result<(Arc<PluginManifest>, JobSpec)> {
        let plugins = self.plugins.read().unwrap_or_else(PoisonError::into_inner);
        let reg = plugins.get(plugin).ok_or_else(|| Error::NotFound {
            name: plugin.to_owned(),
        })?;
        let spec = reg
            .manifest
            .jobs
            .iter()
            .find(|j| j.name == kind)
            .cloned()
            .ok_or_else(|| Error::JobKindNotFound {
                plugin: plugin.to_owned(),
                kind: kind.to_owned(),
            })?;
        Ok((Arc::clone(&reg.manifest), spec))
    }

    fn schedule_of(&self, plugin: &str, schedule: &str) -> Result<(ScheduleSpec, JobSpec)> {
        let plugins = self.plugins.read().unwrap_or_else(PoisonError::into_inner);
        let reg = plugins.get(plugin).ok_or_else(|| Error::NotFound {
            name: plugin.to_owned(),
        })?;
        let s = reg
            .manifest
            .schedules
            .iter()
            .find(|s| s.name == schedule)
            .cloned()
            .ok_or_else(|| Error::ScheduleNotFound {
                plugin: plugin.to_owned(),
                schedule: schedule.to_owned(),
            })?;
        let spec = reg
            .manifest
            .jobs
            .iter()
            .find(|j| j.name == s.job)
            .cloned()
            .ok_or_else(|| Error::JobKindNotFound {
                plugin: plugin.to_owned(),
                kind: s.job.clone(),
            })?;
        Ok((s, spec))
    }

    /// Enqueues a job as the operator: `plugin` must be loaded and declare `kind`. `None` when
    /// the dedupe key matched a waiting job.
    ///
    /// # Errors
    /// `not_found`, `job_kind_not_found`, `backend_unavailable`.
    pub fn enqueue(
        &self,
        plugin: &str,
        kind: &str,
        input: &Value,
        options: EnqueueOptions,
    ) -> Result<Option<JobRecord>> {
        let (_, spec) = self.spec_of(plugin, kind)?;
        let job = NewJob {
            plugin: plugin.to_owned(),
            kind: kind.to_owned(),
            input: input.to_string(),
            priority: options.priority.unwrap_or(spec.priority),
            max_attempts: spec.max_attempts,
            run_at: options.run_at.unwrap_or_else(now_ms),
            dedupe_key: options.dedupe_key.as_deref().map(bounded_key),
            source: "api".into(),
            event_id: None,
        };
        let ids = self.store.enqueue(std::slice::from_ref(&job))?;
        self.enqueued(std::slice::from_ref(&job), &ids);
        match ids.first().copied().flatten() {
            Some(id) => Ok(Some(self.get(id)?.0)),
            None => Ok(None),
        }
    }

    /// Enqueues a schedule's job now, outside its timetable.
    ///
    /// # Errors
    /// `not_found`, `schedule_not_found`, `backend_unavailable`.
    pub fn run_schedule(&self, plugin: &str, schedule: &str) -> Result<Option<JobRecord>> {
        let (s, spec) = self.schedule_of(plugin, schedule)?;
        let now = now_ms();
        let job = schedule_job(plugin, &s, &spec, now, "run");
        let ids = self.store.enqueue(std::slice::from_ref(&job))?;
        self.enqueued(std::slice::from_ref(&job), &ids);
        match ids.first().copied().flatten() {
            Some(id) => Ok(Some(self.get(id)?.0)),
            None => Ok(None),
        }
    }

    /// Jobs matching `filter`, newest first.
    ///
    /// # Errors
    /// `backend_unavailable`.
    pub fn list(&self, filter: &JobFilter) -> Result<Vec<JobRecord>> {
        self.store.list(filter, now_ms())
    }

    /// One job and its attempts.
    ///
    /// # Errors
    /// `job_not_found`, `backend_unavailable`.
    pub fn get(&self, id: i64) -> Result<(JobRecord, Vec<AttemptRecord>)> {
        self.store
            .get(id, now_ms())?
            .ok_or(Error::JobNotFound { id })
    }

    fn refused(id: i64, operation: &'static str, r: Refused) -> Error {
        match r {
            Refused::NotFound => Error::JobNotFound { id },
            Refused::State(state) => Error::JobStateConflict {
                id,
                state: state.as_str().to_owned(),
                operation: operation.to_owned(),
            },
        }
    }

    /// Makes a discarded (or completed) job wait again with a fresh set of attempts (its kind's
    /// `max_attempts`, or 1 when its plugin is not loaded).
    ///
    /// # Errors
    /// `job_not_found`, `job_state_conflict`, `backend_unavailable`.
    pub fn retry(&self, id: i64) -> Result<JobRecord> {
        let (job, _) = self.get(id)?;
        let extra = self
            .spec_of(&job.plugin, &job.kind)
            .map_or(1, |(_, s)| s.max_attempts);
        let out = self
            .store
            .retry(id, extra, now_ms())?
            .map_err(|r| Self::refused(id, "retry", r))?;
        self.wake_up();
        Ok(out)
    }

    /// Cancels a waiting job.
    ///
    /// # Errors
    /// `job_not_found`, `job_state_conflict`, `backend_unavailable`.
    pub fn cancel(&self, id: i64) -> Result<JobRecord> {
        let out = self
            .store
            .cancel(id, now_ms())?
            .map_err(|r| Self::refused(id, "cancel", r))?;
        self.announce(
            "job:cancelled",
            json!({"id": id, "plugin": out.plugin, "kind": out.kind}),
        );
        Ok(out)
    }

    /// Pauses a loaded plugin's job kind on every host sharing the store, or resumes it (also a
    /// paused kind whose plugin is no longer loaded or no longer declares it).
    ///
    /// # Errors
    /// `not_found`, `job_kind_not_found`, `backend_unavailable`.
    pub fn set_paused(&self, plugin: &str, kind: &str, paused: bool) -> Result<()> {
        // A pause needs a declared kind; a resume also works on a paused kind whose plugin is
        // gone or no longer declares it.
        if let Err(e) = self.spec_of(plugin, kind) {
            let stored = !paused
                && self
                    .store
                    .paused()?
                    .iter()
                    .any(|(p, k)| p == plugin && k == kind);
            if !stored {
                return Err(e);
            }
        }
        self.store.set_paused(plugin, kind, paused)?;
        if paused {
            // Jobs of the kind claimed here but not started wait again.
            let taken = {
                let mut ready = self.ready.lock().unwrap_or_else(PoisonError::into_inner);
                let (taken, kept): (VecDeque<Claimed>, VecDeque<Claimed>) =
                    std::mem::take(&mut *ready)
                        .into_iter()
                        .partition(|j| j.plugin == plugin && j.kind == kind);
                *ready = kept;
                taken
            };
            for job in &taken {
                self.give_back(job);
            }
        } else {
            self.wake_up();
        }
        Ok(())
    }

    /// The paused kinds, as (plugin, kind).
    ///
    /// # Errors
    /// `backend_unavailable`.
    pub fn paused(&self) -> Result<Vec<(String, String)>> {
        self.store.paused()
    }

    /// Jobs by plugin, kind and state.
    ///
    /// # Errors
    /// `backend_unavailable`.
    pub fn counts(&self) -> Result<Vec<StateCount>> {
        self.store.counts(now_ms())
    }

    /// The queue's counters and histograms.
    pub fn metrics(&self) -> &JobMetrics {
        &self.metrics
    }

    /// Plugins with job kinds that are active here.
    fn active_plugins(&self) -> Vec<String> {
        let Some(host) = self.host.upgrade() else {
            return Vec::new();
        };
        let plugins = self.plugins.read().unwrap_or_else(PoisonError::into_inner);
        plugins
            .iter()
            .filter(|(name, r)| !r.manifest.jobs.is_empty() && host.is_active(name))
            .map(|(name, _)| name.clone())
            .collect()
    }

    /// A worker: take a claimed job (claiming a batch when none waits here), run it, record
    /// it; wait when there is none.
    fn work(self: Arc<Self>) {
        let _ended = Ended(&self);
        while !self.stopping.load(Ordering::Acquire) {
            // Read before looking at `ready`: jobs pushed after this bump the count, so the
            // wait below cannot miss them.
            let seen = *self.wake.0.lock().unwrap_or_else(PoisonError::into_inner);
            let next = self
                .ready
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .pop_front();
            if let Some(job) = next {
                self.run(job);
                continue;
            }
            let plugins = self.active_plugins();
            let now = now_ms();
            // This worker and the others that are neither running an attempt nor about to
            // start one from `ready`.
            let workers = self.config.workers.max(1);
            let idle = workers
                .saturating_sub(self.busy.load(Ordering::Acquire))
                .saturating_sub(self.ready_len())
                .max(1);
            let claimed = if plugins.is_empty() {
                Ok(Vec::new())
            } else {
                self.store.claim(
                    &plugins,
                    &self.config.host_id,
                    idle,
                    now,
                    now + ms(self.config.lease),
                )
            };
            match claimed {
                Ok(jobs) if !jobs.is_empty() => {
                    self.running
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .extend(jobs.iter().map(|j| (j.token, j.id)));
                    let mut ready = self.ready.lock().unwrap_or_else(PoisonError::into_inner);
                    // Checked under the lock the shutdown drains `ready` with (it sets
                    // `stopping` first): claimed as the shutdown began, none of them starts.
                    if self.stopping.load(Ordering::Acquire) {
                        drop(ready);
                        for job in &jobs {
                            self.give_back(job);
                        }
                        break;
                    }
                    let mut jobs = jobs.into_iter();
                    let first = jobs.next();
                    let more = jobs.len() > 0;
                    ready.extend(jobs);
                    drop(ready);
                    if more {
                        self.wake_up();
                    }
                    if let Some(job) = first {
                        self.run(job);
                    }
                    continue;
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(target: "jobs", error = %e.chain(), "claiming jobs failed; retrying after the poll interval");
                }
            }
            let n = self.wake.0.lock().unwrap_or_else(PoisonError::into_inner);
            if *n == seen && !self.stopping.load(Ordering::Acquire) {
                let _ = self
                    .wake
                    .1
                    .wait_timeout(n, self.config.poll)
                    .unwrap_or_else(PoisonError::into_inner);
            }
        }
        // Claimed jobs no worker will start now wait again, their attempts not counted.
        self.give_back_ready();
    }

    fn ready_len(&self) -> usize {
        self.ready
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Gives back every job claimed here and not started.
    fn give_back_ready(&self) {
        let left = std::mem::take(&mut *self.ready.lock().unwrap_or_else(PoisonError::into_inner));
        for job in &left {
            self.give_back(job);
        }
    }

    /// Runs one claimed attempt and records how it ended.
    fn run(&self, job: Claimed) {
        let _held = Held(self, job.token);
        self.busy.fetch_add(1, Ordering::AcqRel);
        let started = now_ms();
        self.metrics.started(
            &job.plugin,
            &job.kind,
            started.saturating_sub(job.run_at.max(job.created_at)),
        );
        let spec = self.spec_of(&job.plugin, &job.kind);
        let (version, outcome) = match (&spec, self.host.upgrade()) {
            (Ok((manifest, spec)), Some(host)) => {
                let limit = spec
                    .timeout_ms
                    .map_or_else(|| host.execute_timeout(), Duration::from_millis);
                let t0 = Instant::now();
                let result = host.run(
                    &job.plugin,
                    &spec.function,
                    job.input.clone().into_bytes(),
                    limit,
                );
                (manifest.version.to_string(), Some((result, t0.elapsed())))
            }
            // The plugin's current version no longer declares the kind: nothing can run it.
            (Err(Error::JobKindNotFound { .. }), _) => {
                let e = Error::JobKindNotFound {
                    plugin: job.plugin.clone(),
                    kind: job.kind.clone(),
                };
                (String::new(), Some((Err(e), Duration::ZERO)))
            }
            _ => (String::new(), None),
        };
        let Some((result, took)) = outcome else {
            // The plugin went away between the claim and the start: the attempt never began.
            self.give_back(&job);
            return;
        };
        let (status, error, output, retryable) = match result {
            Ok(out) => (
                AttemptStatus::Succeeded,
                None,
                Some(String::from_utf8_lossy(&out).into_owned()),
                false,
            ),
            Err(Error::NotFound { .. } | Error::Disabled { .. } | Error::NotActive { .. }) => {
                self.give_back(&job);
                return;
            }
            Err(e @ Error::Timeout { .. }) => {
                (AttemptStatus::TimedOut, Some(e.chain()), None, true)
            }
            Err(e @ Error::PluginFailed { panicked: true, .. }) => {
                (AttemptStatus::Panicked, Some(e.chain()), None, true)
            }
            // An input the function cannot take fails the same way every time: not retried.
            Err(e @ Error::JobKindNotFound { .. }) => {
                (AttemptStatus::Failed, Some(e.chain()), None, false)
            }
            Err(e @ Error::InvalidInput { .. }) => {
                (AttemptStatus::Failed, Some(e.chain()), None, false)
            }
            Err(e @ Error::PluginFailed { .. }) if matches!(&e, Error::PluginFailed { plugin_code, .. } if plugin_code == "bad_request") => {
                (AttemptStatus::Failed, Some(e.chain()), None, false)
            }
            Err(e) => (AttemptStatus::Failed, Some(e.chain()), None, true),
        };
        let now = now_ms();
        let next = match status {
            AttemptStatus::Succeeded => Next::Complete,
            _ if retryable && job.attempt < job.max_attempts => {
                let backoff = spec.as_ref().map(|(_, s)| s.backoff).unwrap_or_default();
                Next::Retry {
                    at: now.saturating_add(ms(backoff.delay(job.attempt))),
                }
            }
            _ => Next::Discard,
        };
        let max = self.config.log_bytes;
        let finish = Finish {
            id: job.id,
            token: job.token,
            next: next.clone(),
            log: AttemptRecord {
                job_id: job.id,
                attempt: job.attempt,
                plugin: job.plugin.clone(),
                version,
                kind: job.kind.clone(),
                host: self.config.host_id.clone(),
                started_at: started,
                duration_ms: ms(took),
                status,
                error: error.clone(),
                input: truncate(&job.input, max),
                output: output.as_deref().map(|o| truncate(o, max)),
            },
            now,
        };
        self.metrics.finished(&job.plugin, &job.kind, status, took);
        let held = self
            .finishes
            .run(vec![finish], &|batch| self.store.finish_many(batch))
            .map(|held| held.first().copied().unwrap_or(false));
        match held {
            Ok(true) => {}
            Ok(false) => {
                tracing::warn!(target: "jobs", id = job.id, plugin = %job.plugin, kind = %job.kind, "the job's lease was lost before its attempt ended; its result is logged but another claim owns the job");
                return;
            }
            Err(e) => {
                tracing::warn!(target: "jobs", id = job.id, error = %e.chain(), "recording a job attempt failed; the job runs again when its lease expires");
                return;
            }
        }
        let (event, state) = match next {
            Next::Complete => ("job:completed", JobState::Completed),
            Next::Retry { .. } => ("job:failed", JobState::Retryable),
            Next::Discard => ("job:discarded", JobState::Discarded),
        };
        self.announce(
            event,
            json!({"id": job.id, "plugin": job.plugin, "kind": job.kind, "attempt": job.attempt,
                   "status": status.as_str(), "state": state.as_str()}),
        );
    }

    fn give_back(&self, job: &Claimed) {
        self.running
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&job.token);
        if let Err(e) = self.store.release(job.id, job.token) {
            tracing::warn!(target: "jobs", id = job.id, error = %e.chain(), "giving a job back failed; it runs when its lease expires");
        }
    }

    /// The maintenance thread: heartbeats, rescue, schedules, retention.
    fn maintain(self: Arc<Self>) {
        let _ended = Ended(&self);
        let tick = self
            .config
            .poll
            .min(self.config.lease / 3)
            .max(Duration::from_millis(10));
        let mut last_prune: Option<Instant> = None;
        let mut fires: HashMap<(String, String), i64> = HashMap::new();
        let started = now_ms();
        while !self.stopping.load(Ordering::Acquire) {
            self.heartbeat();
            match self.store.rescue(now_ms()) {
                Ok(rescued) => {
                    for r in rescued {
                        self.metrics.lost(&r.plugin, &r.kind);
                        tracing::warn!(target: "jobs", id = r.id, plugin = %r.plugin, kind = %r.kind, attempt = r.attempt, discarded = r.discarded, "a job's lease expired; its attempt is counted as lost");
                        let (event, state) = if r.discarded {
                            ("job:discarded", JobState::Discarded)
                        } else {
                            ("job:failed", JobState::Retryable)
                        };
                        self.announce(
                            event,
                            json!({"id": r.id, "plugin": r.plugin, "kind": r.kind, "attempt": r.attempt,
                                   "status": AttemptStatus::Lost.as_str(), "state": state.as_str()}),
                        );
                        self.wake_up();
                    }
                }
                Err(e) => {
                    tracing::warn!(target: "jobs", error = %e.chain(), "the lease rescuer failed")
                }
            }
            self.fire_schedules(&mut fires, started);
            if last_prune.is_none_or(|t| t.elapsed() >= Duration::from_secs(60)) {
                last_prune = Some(Instant::now());
                let before = now_ms() - ms(self.config.retention_age);
                match self.store.prune(before, self.config.retention_count) {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(target: "jobs", jobs = n, "pruned finished jobs"),
                    Err(e) => {
                        tracing::warn!(target: "jobs", error = %e.chain(), "pruning the job log failed")
                    }
                }
            }
            // Its own signal: woken only by a shutdown, not by every enqueue.
            let stop = self.stop.0.lock().unwrap_or_else(PoisonError::into_inner);
            if !*stop {
                let _ = self
                    .stop
                    .1
                    .wait_timeout(stop, tick)
                    .unwrap_or_else(PoisonError::into_inner);
            }
        }
    }

    fn heartbeat(&self) {
        let tokens: Vec<i64> = self
            .running
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .keys()
            .copied()
            .collect();
        if tokens.is_empty() {
            return;
        }
        let until = now_ms() + ms(self.config.lease);
        if let Err(e) = self.store.heartbeat(&self.config.host_id, &tokens, until) {
            tracing::warn!(target: "jobs", error = %e.chain(), "extending job leases failed");
        }
    }

    /// Fires the schedules of active plugins that are due. A schedule that never fired starts
    /// from when this host started; fires missed while no host ran collapse into one (the
    /// latest missed instant).
    fn fire_schedules(&self, fires: &mut HashMap<(String, String), i64>, started: i64) {
        let due: Vec<(String, ScheduleSpec, JobSpec)> = {
            let active = self.active_plugins();
            let plugins = self.plugins.read().unwrap_or_else(PoisonError::into_inner);
            active
                .iter()
                .filter_map(|p| plugins.get(p).map(|r| (p, r)))
                .flat_map(|(p, r)| {
                    r.manifest.schedules.iter().filter_map(|s| {
                        let spec = r.manifest.jobs.iter().find(|j| j.name == s.job)?;
                        Some((p.clone(), s.clone(), spec.clone()))
                    })
                })
                .collect()
        };
        let now = now_ms();
        for (plugin, schedule, spec) in due {
            let key = (plugin.clone(), schedule.name.clone());
            let last = match fires.get(&key) {
                Some(last) => *last,
                None => match self.store.last_fire(&plugin, &schedule.name) {
                    Ok(last) => last.unwrap_or(started),
                    Err(e) => {
                        tracing::warn!(target: "jobs", error = %e.chain(), "reading a schedule failed");
                        continue;
                    }
                },
            };
            let Some(mut at) = next_fire_ms(&schedule, last) else {
                continue;
            };
            if at > now {
                fires.insert(key, last);
                continue;
            }
            for _ in 0..10_000 {
                match next_fire_ms(&schedule, at) {
                    Some(next) if next <= now => at = next,
                    _ => break,
                }
            }
            let job = schedule_job(&plugin, &schedule, &spec, at, "fire");
            match self.store.fire(&schedule.name, at, &job) {
                Ok(id) => {
                    fires.insert(key, at);
                    let ids = [id];
                    if id.is_some() {
                        self.enqueued(std::slice::from_ref(&job), &ids);
                    }
                }
                Err(e) => {
                    tracing::warn!(target: "jobs", plugin = %plugin, schedule = %schedule.name, error = %e.chain(), "firing a schedule failed")
                }
            }
        }
    }
}

/// The first fire of `schedule` strictly after `after` (ms).
fn next_fire_ms(schedule: &ScheduleSpec, after: i64) -> Option<i64> {
    let at = jiff::Timestamp::from_millisecond(after).ok()?;
    schedule.next_fire(at).map(|t| t.as_millisecond())
}

/// The job a schedule enqueues for its fire at `at` (ms): input
/// `{"schedule": name, "fire_at": RFC 3339}`, dedupe key rendered against the schedule.
fn schedule_job(plugin: &str, s: &ScheduleSpec, spec: &JobSpec, at: i64, how: &str) -> NewJob {
    let fire_at = jiff::Timestamp::from_millisecond(at)
        .map(|t| t.to_string())
        .unwrap_or_default();
    let input = json!({"schedule": s.name, "fire_at": fire_at});
    let name = format!("schedule:{}", s.name);
    let id = format!("{plugin}/{}/{at}", s.name);
    let dedupe_key = spec.dedupe.as_ref().and_then(|t| {
        t.render(&EventFields {
            name: &name,
            id: &id,
            payload: &input,
        })
        .ok()
        .map(|k| bounded_key(&k))
    });
    NewJob {
        plugin: plugin.to_owned(),
        kind: spec.name.clone(),
        input: input.to_string(),
        priority: spec.priority,
        max_attempts: spec.max_attempts,
        run_at: at,
        dedupe_key,
        source: format!("schedule:{}:{how}", s.name),
        event_id: None,
    }
}
