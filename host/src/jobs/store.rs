//! The queue's storage contract: what the runner, the scheduler and the operator API ask of a
//! backend. Two implementations: [`super::sqlite`] (a host database file, WAL) and
//! [`super::postgres`] (the `plugin_host` schema of the admin database). Every method is one
//! transaction; every time is milliseconds since the Unix epoch (UTC).
//!
//! A job's stored state is one of `available` (waiting for its first attempt; shown as
//! `scheduled` while its `run_at` is in the future), `retryable` (waiting for a further attempt),
//! `running` (claimed under a lease), `completed`, `discarded` (attempts used up, or an input the
//! function cannot take) and `cancelled`.

use serde::{Serialize, Serializer};

use crate::error::Result;

/// Milliseconds since the epoch, written as RFC 3339 UTC with milliseconds.
fn time<S: Serializer>(ms: &i64, s: S) -> std::result::Result<S::Ok, S::Error> {
    match jiff::Timestamp::from_millisecond(*ms) {
        Ok(t) => s.collect_str(&format_args!("{t:.3}")),
        Err(_) => s.serialize_i64(*ms),
    }
}

fn opt_time<S: Serializer>(ms: &Option<i64>, s: S) -> std::result::Result<S::Ok, S::Error> {
    match ms {
        Some(ms) => time(ms, s),
        None => s.serialize_none(),
    }
}

/// Stored JSON text, written as the JSON it holds (a truncated text, no longer JSON, as a
/// string).
fn json_text<S: Serializer>(text: &str, s: S) -> std::result::Result<S::Ok, S::Error> {
    match serde_json::from_str::<&serde_json::value::RawValue>(text) {
        Ok(raw) => raw.serialize(s),
        Err(_) => s.serialize_str(text),
    }
}

fn opt_json_text<S: Serializer>(
    text: &Option<String>,
    s: S,
) -> std::result::Result<S::Ok, S::Error> {
    match text {
        Some(t) => json_text(t, s),
        None => s.serialize_none(),
    }
}

/// A job's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum JobState {
    /// Waiting for its first attempt, due now.
    Available,
    /// Waiting for its first attempt, due later (stored as `available`).
    Scheduled,
    /// Waiting for a further attempt.
    Retryable,
    /// Claimed by a host, under a lease.
    Running,
    /// Succeeded.
    Completed,
    /// Failed for good: attempts used up, or an input its function cannot take.
    Discarded,
    /// Cancelled by an operator before it ran.
    Cancelled,
}

impl JobState {
    /// Every state, in lifecycle order.
    pub const ALL: [JobState; 7] = [
        Self::Available,
        Self::Scheduled,
        Self::Retryable,
        Self::Running,
        Self::Completed,
        Self::Discarded,
        Self::Cancelled,
    ];

    /// The lowercase name (as shown and as filtered on).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Available => "available",
            Self::Scheduled => "scheduled",
            Self::Retryable => "retryable",
            Self::Running => "running",
            Self::Completed => "completed",
            Self::Discarded => "discarded",
            Self::Cancelled => "cancelled",
        }
    }

    /// Parses a name of [`JobState::as_str`].
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }

    /// The state as stored (`scheduled` is stored as `available`).
    pub(crate) fn stored(self) -> &'static str {
        match self {
            Self::Scheduled => "available",
            s => s.as_str(),
        }
    }

    /// The state shown for a stored state at `now`.
    pub(crate) fn shown(stored: &str, run_at: i64, now: i64) -> Self {
        match Self::parse(stored) {
            Some(Self::Available) if run_at > now => Self::Scheduled,
            Some(s) => s,
            None => Self::Discarded,
        }
    }

    /// Waiting states: a job in one may be cancelled.
    pub fn is_waiting(self) -> bool {
        matches!(self, Self::Available | Self::Scheduled | Self::Retryable)
    }
}

/// A job to enqueue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewJob {
    /// The plugin that runs it.
    pub plugin: String,
    /// Its kind (declared by the plugin).
    pub kind: String,
    /// The input of its function (JSON text).
    pub input: String,
    /// Priority: smaller first.
    pub priority: i16,
    /// Attempts before it is discarded.
    pub max_attempts: u32,
    /// Not before this time.
    pub run_at: i64,
    /// While a waiting job of the same plugin and kind has this key, this one is not enqueued.
    pub dedupe_key: Option<String>,
    /// What enqueued it: `event:<name>`, `schedule:<name>`, `api`.
    pub source: String,
    /// The id of the event that enqueued it.
    pub event_id: Option<String>,
}

/// A job as stored, with its state as shown at the time it was read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct JobRecord {
    /// The job's id.
    pub id: i64,
    /// The plugin that runs it.
    pub plugin: String,
    /// Its kind.
    pub kind: String,
    /// Its state.
    pub state: JobState,
    /// Priority: smaller first.
    pub priority: i16,
    /// The input (JSON text).
    #[serde(serialize_with = "json_text")]
    pub input: String,
    /// Attempts started.
    pub attempt: u32,
    /// Attempts allowed.
    pub max_attempts: u32,
    /// Not before this time (ms).
    #[serde(serialize_with = "time")]
    pub run_at: i64,
    /// When it was enqueued (ms).
    #[serde(serialize_with = "time")]
    pub created_at: i64,
    /// When it reached a final state (ms).
    #[serde(serialize_with = "opt_time")]
    pub finished_at: Option<i64>,
    /// Its dedupe key.
    pub dedupe_key: Option<String>,
    /// What enqueued it.
    pub source: String,
    /// The id of the event that enqueued it.
    pub event_id: Option<String>,
    /// The error of its last failed attempt.
    pub last_error: Option<String>,
    /// The host holding its lease, while running.
    pub lease_host: Option<String>,
    /// The end of its lease, while running (ms).
    #[serde(serialize_with = "opt_time")]
    pub lease_until: Option<i64>,
}

/// A job claimed for one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claimed {
    /// The job's id.
    pub id: i64,
    /// The plugin that runs it.
    pub plugin: String,
    /// Its kind.
    pub kind: String,
    /// The input (JSON text).
    pub input: String,
    /// This attempt's number (1 for the first).
    pub attempt: u32,
    /// Attempts allowed.
    pub max_attempts: u32,
    /// When it was enqueued (ms).
    pub created_at: i64,
    /// When it became due (ms): queue latency is measured from here.
    pub run_at: i64,
    /// The fencing token of this claim: only the holder of the token may finish the attempt.
    pub token: i64,
}

/// How one attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum AttemptStatus {
    /// The function returned output.
    Succeeded,
    /// The function returned an error (or its input was refused).
    Failed,
    /// The attempt took longer than the kind's timeout.
    TimedOut,
    /// The function panicked.
    Panicked,
    /// The lease expired before the attempt was finished (its host died or stalled).
    Lost,
}

impl AttemptStatus {
    /// The lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::TimedOut => "timed_out",
            Self::Panicked => "panicked",
            Self::Lost => "lost",
        }
    }

    pub(crate) fn parse(text: &str) -> Self {
        match text {
            "succeeded" => Self::Succeeded,
            "timed_out" => Self::TimedOut,
            "panicked" => Self::Panicked,
            "lost" => Self::Lost,
            _ => Self::Failed,
        }
    }
}

/// One attempt of the execution log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AttemptRecord {
    /// The job.
    pub job_id: i64,
    /// The attempt's number (1 for the first).
    pub attempt: u32,
    /// The plugin.
    pub plugin: String,
    /// The plugin's version that ran it.
    pub version: String,
    /// The job's kind.
    pub kind: String,
    /// The host that ran it.
    pub host: String,
    /// When it started (ms).
    #[serde(serialize_with = "time")]
    pub started_at: i64,
    /// How long it took (ms).
    pub duration_ms: i64,
    /// How it ended.
    pub status: AttemptStatus,
    /// The error, when it failed.
    pub error: Option<String>,
    /// The input (truncated to the configured size).
    #[serde(serialize_with = "json_text")]
    pub input: String,
    /// The output, when it succeeded (truncated to the configured size).
    #[serde(serialize_with = "opt_json_text")]
    pub output: Option<String>,
}

/// What follows a finished attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// The job is completed.
    Complete,
    /// The job waits for a further attempt at this time (ms).
    Retry {
        /// When.
        at: i64,
    },
    /// The job is discarded.
    Discard,
}

/// The end of one attempt, to record: the job's next state and the execution log row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finish {
    /// The job.
    pub id: i64,
    /// The claim's fencing token.
    pub token: i64,
    /// What happens to the job.
    pub next: Next,
    /// The execution log row.
    pub log: AttemptRecord,
    /// When it finished (ms).
    pub now: i64,
}

/// Which jobs to list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobFilter {
    /// Only this plugin's.
    pub plugin: Option<String>,
    /// Only this kind's.
    pub kind: Option<String>,
    /// Only jobs in this state.
    pub state: Option<JobState>,
    /// Only jobs with an id below this (paging: newest first).
    pub before: Option<i64>,
    /// At most this many (newest first).
    pub limit: u32,
}

/// Jobs of one plugin, kind and state, for metrics.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StateCount {
    /// The plugin.
    pub plugin: String,
    /// The kind.
    pub kind: String,
    /// The state.
    pub state: JobState,
    /// How many.
    pub count: u64,
    /// The oldest `run_at` among them (ms): for waiting states, the oldest due job.
    pub oldest_run_at: i64,
}

/// A job whose lease expired, as the rescuer handled it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rescued {
    /// The job.
    pub id: i64,
    /// The plugin.
    pub plugin: String,
    /// Its kind.
    pub kind: String,
    /// The attempt that was lost.
    pub attempt: u32,
    /// Whether it was discarded (its last attempt) rather than made retryable.
    pub discarded: bool,
}

/// Why an operator change of one job was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// No job has that id.
    NotFound,
    /// The job's state does not allow it.
    State(JobState),
}

/// The storage a queue runs on. Every method is one transaction.
pub trait JobStore: Send + Sync + std::fmt::Debug {
    /// Enqueues jobs in one transaction; each entry is the new job's id, or `None` when a
    /// waiting job of the same plugin, kind and dedupe key exists. Durable when it returns.
    /// Wakes the workers of every host sharing the store.
    ///
    /// # Errors
    /// `backend_unavailable`.
    fn enqueue(&self, jobs: &[NewJob]) -> Result<Vec<Option<i64>>>;

    /// Claims up to `limit` due jobs of `plugins` whose kind is not paused, in order of
    /// priority, `run_at` and id; each becomes `running`, its attempt counted, under a lease
    /// held by `host` until `lease_until`. A job claimed by one caller is never claimed by
    /// another until its lease expires.
    ///
    /// # Errors
    /// `backend_unavailable`.
    fn claim(
        &self,
        plugins: &[String],
        host: &str,
        limit: usize,
        now: i64,
        lease_until: i64,
    ) -> Result<Vec<Claimed>>;

    /// Records the end of an attempt: the log row always; the job's next state only if the
    /// claim still holds (the job is `running` with this token). Returns whether it held.
    ///
    /// # Errors
    /// `backend_unavailable`.
    fn finish(&self, finish: &Finish) -> Result<bool> {
        let held = self.finish_many(std::slice::from_ref(finish))?;
        Ok(held.first().copied().unwrap_or(false))
    }

    /// Records the ends of several attempts in one transaction, as [`JobStore::finish`] does
    /// for each; returns, in order, whether each claim held. Of two ends of one claim in a
    /// batch, at most one holds.
    ///
    /// # Errors
    /// `backend_unavailable` (nothing of the batch is recorded).
    fn finish_many(&self, finishes: &[Finish]) -> Result<Vec<bool>>;

    /// Gives back a claimed job whose attempt never started (its plugin went away): it waits
    /// again, its attempt not counted.
    ///
    /// # Errors
    /// `backend_unavailable`.
    fn release(&self, id: i64, token: i64) -> Result<()>;

    /// Extends the leases of the running jobs `host` holds with these tokens; returns how
    /// many were extended.
    ///
    /// # Errors
    /// `backend_unavailable`.
    fn heartbeat(&self, host: &str, tokens: &[i64], lease_until: i64) -> Result<usize>;

    /// Requeues running jobs whose lease ended before `now` (discards those on their last
    /// attempt), logging each lost attempt.
    ///
    /// # Errors
    /// `backend_unavailable`.
    fn rescue(&self, now: i64) -> Result<Vec<Rescued>>;

    /// Jobs matching a filter, newest first.
    ///
    /// # Errors
    /// `backend_unavailable`.
    fn list(&self, filter: &JobFilter, now: i64) -> Result<Vec<JobRecord>>;

    /// One job and its attempts (oldest first).
    ///
    /// # Errors
    /// `backend_unavailable`.
    fn get(&self, id: i64, now: i64) -> Result<Option<(JobRecord, Vec<AttemptRecord>)>>;

    /// Makes a discarded or completed job wait again, or a retryable one due at once, due now,
    /// with `extra_attempts` more attempts than it has used.
    ///
    /// # Errors
    /// `backend_unavailable`.
    fn retry(
        &self,
        id: i64,
        extra_attempts: u32,
        now: i64,
    ) -> Result<std::result::Result<JobRecord, Refused>>;

    /// Cancels a waiting job.
    ///
    /// # Errors
    /// `backend_unavailable`.
    fn cancel(&self, id: i64, now: i64) -> Result<std::result::Result<JobRecord, Refused>>;

    /// Pauses (or resumes) claiming jobs of one plugin's kind, on every host.
    ///
    /// # Errors
    /// `backend_unavailable`.
    fn set_paused(&self, plugin: &str, kind: &str, paused: bool) -> Result<()>;

    /// The paused kinds, as (plugin, kind).
    ///
    /// # Errors
    /// `backend_unavailable`.
    fn paused(&self) -> Result<Vec<(String, String)>>;

    /// Fires a schedule once: if `fire_at` is later than the schedule's last fire, records it
    /// and enqueues `job`, in one transaction (so hosts sharing the store fire it once).
    /// Returns the job's id, or `None` when this fire was already taken (or deduplicated).
    ///
    /// # Errors
    /// `backend_unavailable`.
    fn fire(&self, schedule: &str, fire_at: i64, job: &NewJob) -> Result<Option<i64>>;

    /// The last fire of a plugin's schedule (ms), if it ever fired.
    ///
    /// # Errors
    /// `backend_unavailable`.
    fn last_fire(&self, plugin: &str, schedule: &str) -> Result<Option<i64>>;

    /// Jobs by plugin, kind and state (final states included).
    ///
    /// # Errors
    /// `backend_unavailable`.
    fn counts(&self, now: i64) -> Result<Vec<StateCount>>;

    /// Deletes finished jobs (and their attempts) that finished before `finished_before`, and
    /// beyond the newest `keep` finished jobs. Returns how many jobs were deleted.
    ///
    /// # Errors
    /// `backend_unavailable`.
    fn prune(&self, finished_before: i64, keep: u64) -> Result<u64>;

    /// Calls `wake` whenever another host sharing the store enqueues (PostgreSQL `NOTIFY`);
    /// a store only one host can open does nothing.
    fn on_remote_enqueue(&self, wake: std::sync::Arc<dyn Fn() + Send + Sync>) {
        let _ = wake;
    }
}
