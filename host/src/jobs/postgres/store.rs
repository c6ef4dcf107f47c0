//! [`PgJobs`]: the [`JobStore`] on PostgreSQL. Owns its runtime and pool; every method
//! blocks the calling thread on one statement or one transaction.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::Row;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};

use super::listen::listen;
use super::rows::{
    attempt_record, enqueue_query, enqueued_ids, host_now_ms, job_record, to_i32, to_u32,
};
use super::sql::{SCHEMA, Statements, valid_schema};
use crate::error::{Error, Result};
use crate::jobs::store::{
    AttemptRecord, Claimed, Finish, JobFilter, JobRecord, JobState, JobStore, NewJob, Next,
    Refused, Rescued, StateCount,
};

/// The settings of the connections that claim, heartbeat and finish.
///
/// - `synchronous_commit = off`: these writes do not wait for the WAL flush (see `lax`).
/// - Bitmap scans, sequential scans and sorts priced out: a claim must walk the waiting-jobs
///   index in claim order and stop at its limit. A queue table empties and fills faster than
///   autoanalyze runs, so its statistics are usually wrong; with the estimate of a near-empty
///   table the planner picks a bitmap scan that reads and sorts the whole backlog on every
///   claim (measured: 27 ms a claim over 11,500 waiting jobs, 60 claims/s with 4 clients,
///   against 0.1 ms and 1,900 claims/s walking the index).
/// - No JIT: a priced-out plan node costs 10^10, far above `jit_above_cost`, and compiling a
///   statement took 465 ms of its 495 (measured on the end of an attempt); these statements
///   touch a few rows each.
const LAX_SETTINGS: [&str; 5] = [
    "SET synchronous_commit = off",
    "SET enable_bitmapscan = off",
    "SET enable_seqscan = off",
    "SET enable_sort = off",
    "SET jit = off",
];

/// The job queue in a PostgreSQL schema.
#[derive(Debug)]
pub(crate) struct PgJobs {
    /// Always `Some` until dropped (see the `Drop` impl); dropping it stops the listeners.
    runtime: Option<tokio::runtime::Runtime>,
    handle: tokio::runtime::Handle,
    pool: PgPool,
    /// Connections with [`LAX_SETTINGS`], for the writes a database crash may forget without
    /// breaking a guarantee: claims (the job is simply available again), heartbeats (a lease
    /// ends sooner) and the ends of attempts (the job runs again after its lease:
    /// at-least-once). Enqueues, schedule fires and operators' changes use `pool`, which waits
    /// for the commit to be on disk.
    lax: PgPool,
    /// The `NOTIFY` channel: `<schema>_jobs`.
    channel: String,
    /// A random id of this store, the payload of its enqueues' notifications.
    instance: String,
    sql: Statements,
}

/// The columns of a batch of attempt ends, one array each (see `sql::FINISH`).
#[derive(Default)]
struct FinishBatch<'a> {
    id: Vec<i64>,
    token: Vec<i64>,
    ord: Vec<i32>,
    next: Vec<&'static str>,
    run_at: Vec<Option<i64>>,
    finished_at: Vec<Option<i64>>,
    error: Vec<Option<&'a str>>,
    attempt: Vec<i32>,
    plugin: Vec<&'a str>,
    version: Vec<&'a str>,
    kind: Vec<&'a str>,
    host: Vec<&'a str>,
    started_at: Vec<i64>,
    duration_ms: Vec<i64>,
    status: Vec<&'static str>,
    input: Vec<&'a str>,
    output: Vec<Option<&'a str>>,
}

/// A random id for a store instance: 16 hex digits (written into SQL text, so nothing else).
fn instance_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    let draw = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    format!("{draw:016x}")
}

/// A backend error of the job queue.
pub(super) fn unavailable(what: &str, e: impl std::fmt::Display) -> Error {
    Error::BackendUnavailable {
        kind: crate::BackendKind::Tables,
        message: format!("job queue (PostgreSQL): {what}: {e}"),
    }
}

/// Whether an error is a unique violation (SQLSTATE 23505).
fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.code().as_deref() == Some("23505"))
}

/// Errors that a concurrent setup of the same schema causes and a retry cures: a duplicate
/// schema, relation or type, a catalog row updated concurrently, a deadlock.
fn is_transient_ddl(e: &sqlx::Error) -> bool {
    let sqlx::Error::Database(db) = e else {
        return false;
    };
    matches!(
        db.code().as_deref(),
        Some("23505" | "42P06" | "42P07" | "42710" | "40P01" | "40001")
    ) || (db.code().as_deref() == Some("XX000") && db.message().contains("concurrently"))
}

impl PgJobs {
    /// Connects to `url` and prepares `schema` (creating it and its tables when missing).
    ///
    /// # Errors
    /// `invalid_config` for a bad URL or schema name; `backend_unavailable` when PostgreSQL
    /// cannot be reached or the schema cannot be prepared.
    pub(crate) fn open(url: &str, schema: &str) -> Result<Self> {
        let options = PgConnectOptions::from_str(url).map_err(|e| Error::InvalidConfig {
            key: "backends.tables.url".into(),
            message: e.to_string(),
        })?;
        if !valid_schema(schema) {
            return Err(Error::InvalidConfig {
                key: "jobs.schema".into(),
                message: format!(
                    "`{schema}` is not a lowercase SQL identifier of at most 58 characters"
                ),
            });
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("plugin-host-jobs")
            .enable_all()
            .build()
            .map_err(|e| unavailable("cannot start its runtime", e))?;
        let pool = runtime
            .block_on(
                PgPoolOptions::new()
                    .max_connections(8)
                    .acquire_timeout(Duration::from_secs(5))
                    .connect_with(options.clone()),
            )
            .map_err(|e| unavailable("cannot connect", e))?;
        let lax = runtime
            .block_on(
                PgPoolOptions::new()
                    .max_connections(8)
                    .acquire_timeout(Duration::from_secs(5))
                    .after_connect(|conn, _| {
                        Box::pin(async move {
                            for setting in LAX_SETTINGS {
                                sqlx::query(setting).execute(&mut *conn).await?;
                            }
                            Ok(())
                        })
                    })
                    .connect_with(options),
            )
            .map_err(|e| unavailable("cannot connect", e))?;
        let ddl = SCHEMA.replace("{s}", schema);
        let mut attempt = 0;
        loop {
            match runtime.block_on(create_schema(&pool, &ddl)) {
                Ok(()) => break,
                Err(e) if attempt < 5 && is_transient_ddl(&e) => attempt += 1,
                Err(e) => return Err(unavailable("cannot prepare its schema", e)),
            }
        }
        let channel = format!("{schema}_jobs");
        let instance = instance_id();
        Ok(Self {
            handle: runtime.handle().clone(),
            runtime: Some(runtime),
            pool,
            lax,
            sql: Statements::new(schema, &channel, &instance),
            instance,
            channel,
        })
    }

    /// The plan of a claim as the claiming connections run it (`EXPLAIN`, text).
    #[cfg(test)]
    pub(super) fn explain_claim(&self, plugins: &[String], limit: i64) -> String {
        let run = async {
            let rows: Vec<String> =
                sqlx::query_scalar(&format!("EXPLAIN (ANALYZE, COSTS OFF) {}", self.sql.claim))
                    .bind(i64::MAX)
                    .bind(plugins)
                    .bind(limit)
                    .bind("explain")
                    .bind(0_i64)
                    .fetch_all(&self.lax)
                    .await?;
            Ok::<_, sqlx::Error>(rows.join("\n"))
        };
        self.handle.block_on(run).unwrap_or_else(|e| e.to_string())
    }

    /// Runs a statement that moves a job back to waiting, again if a concurrent enqueue took
    /// its dedupe key between the check and the write (the next run sees that job).
    fn run_rekeyed<T, F>(&self, what: &str, run: impl Fn() -> F) -> Result<T>
    where
        F: Future<Output = sqlx::Result<T>>,
    {
        let mut attempt = 0;
        loop {
            match self.handle.block_on(run()) {
                Ok(v) => return Ok(v),
                Err(e) if attempt < 3 && is_unique_violation(&e) => attempt += 1,
                Err(e) => return Err(unavailable(what, e)),
            }
        }
    }
}

/// Creates the schema in one transaction, under a transaction-level advisory lock.
async fn create_schema(pool: &PgPool, ddl: &str) -> sqlx::Result<()> {
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended('plugin_host.jobs schema', 0))")
        .execute(&mut *tx)
        .await?;
    sqlx::raw_sql(ddl).execute(&mut *tx).await?;
    tx.commit().await
}

impl Drop for PgJobs {
    fn drop(&mut self) {
        // Dropping a runtime inside another one's async context panics; shutting it down in
        // the background never does. It also ends the listeners of `on_remote_enqueue`.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl JobStore for PgJobs {
    fn enqueue(&self, jobs: &[NewJob]) -> Result<Vec<Option<i64>>> {
        if jobs.is_empty() {
            return Ok(Vec::new());
        }
        let rows = self
            .handle
            .block_on(enqueue_query(&self.sql.enqueue, jobs, host_now_ms()).fetch_all(&self.pool))
            .map_err(|e| unavailable("cannot enqueue", e))?;
        enqueued_ids(&rows).map_err(|e| unavailable("cannot enqueue", e))
    }

    fn claim(
        &self,
        plugins: &[String],
        host: &str,
        limit: usize,
        now: i64,
        lease_until: i64,
    ) -> Result<Vec<Claimed>> {
        if plugins.is_empty() || limit == 0 {
            return Ok(Vec::new());
        }
        let run = async {
            let rows = sqlx::query(&self.sql.claim)
                .bind(now)
                .bind(plugins)
                .bind(i64::try_from(limit).unwrap_or(i64::MAX))
                .bind(host)
                .bind(lease_until)
                .fetch_all(&self.lax)
                .await?;
            rows.iter()
                .map(|r| {
                    Ok(Claimed {
                        id: r.try_get(0)?,
                        plugin: r.try_get(1)?,
                        kind: r.try_get(2)?,
                        input: r.try_get(3)?,
                        attempt: to_u32(r.try_get(4)?),
                        max_attempts: to_u32(r.try_get(5)?),
                        created_at: r.try_get(6)?,
                        run_at: r.try_get(7)?,
                        token: r.try_get(8)?,
                    })
                })
                .collect::<sqlx::Result<Vec<_>>>()
        };
        self.handle
            .block_on(run)
            .map_err(|e| unavailable("cannot claim jobs", e))
    }

    fn finish_many(&self, finishes: &[Finish]) -> Result<Vec<bool>> {
        if finishes.is_empty() {
            return Ok(Vec::new());
        }
        let mut b = FinishBatch::default();
        for (ord, f) in finishes.iter().enumerate() {
            let (next, run_at, finished_at) = match f.next {
                Next::Complete => ("completed", None, Some(f.now)),
                Next::Retry { at } => ("retryable", Some(at), None),
                Next::Discard => ("discarded", None, Some(f.now)),
            };
            let log = &f.log;
            b.id.push(f.id);
            b.token.push(f.token);
            b.ord.push(i32::try_from(ord).unwrap_or(i32::MAX));
            b.next.push(next);
            b.run_at.push(run_at);
            b.finished_at.push(finished_at);
            b.error.push(log.error.as_deref());
            b.attempt.push(to_i32(log.attempt));
            b.plugin.push(&log.plugin);
            b.version.push(&log.version);
            b.kind.push(&log.kind);
            b.host.push(&log.host);
            b.started_at.push(log.started_at);
            b.duration_ms.push(log.duration_ms);
            b.status.push(log.status.as_str());
            b.input.push(&log.input);
            b.output.push(log.output.as_deref());
        }
        let run = || {
            sqlx::query_scalar(&self.sql.finish)
                .bind(&b.id)
                .bind(&b.token)
                .bind(&b.ord)
                .bind(&b.next)
                .bind(&b.run_at)
                .bind(&b.finished_at)
                .bind(&b.error)
                .bind(&b.attempt)
                .bind(&b.plugin)
                .bind(&b.version)
                .bind(&b.kind)
                .bind(&b.host)
                .bind(&b.started_at)
                .bind(&b.duration_ms)
                .bind(&b.status)
                .bind(&b.input)
                .bind(&b.output)
                .fetch_all(&self.lax)
        };
        if finishes.len() == 1 {
            return self.run_rekeyed("cannot finish jobs", run);
        }
        // Two retried jobs of a batch may keep one dedupe key (each checks the key against the
        // table as it was before the statement); the unique index refuses that every time, so
        // the batch is not run again: the caller records each end on its own.
        self.handle
            .block_on(run())
            .map_err(|e| unavailable("cannot finish jobs", e))
    }

    fn release(&self, id: i64, token: i64) -> Result<()> {
        self.run_rekeyed("cannot release a job", || async {
            let mut tx = self.pool.begin().await?;
            let done = sqlx::query(&self.sql.release)
                .bind(id)
                .bind(token)
                .execute(&mut *tx)
                .await?;
            if done.rows_affected() > 0 {
                sqlx::query(&self.sql.notify).execute(&mut *tx).await?;
            }
            tx.commit().await
        })
    }

    fn heartbeat(&self, host: &str, tokens: &[i64], lease_until: i64) -> Result<usize> {
        if tokens.is_empty() {
            return Ok(0);
        }
        let done = self
            .handle
            .block_on(
                sqlx::query(&self.sql.heartbeat)
                    .bind(host)
                    .bind(tokens)
                    .bind(lease_until)
                    .execute(&self.lax),
            )
            .map_err(|e| unavailable("cannot extend leases", e))?;
        Ok(usize::try_from(done.rows_affected()).unwrap_or(usize::MAX))
    }

    fn rescue(&self, now: i64) -> Result<Vec<Rescued>> {
        self.run_rekeyed("cannot rescue jobs", || async {
            let rows = sqlx::query(&self.sql.rescue)
                .bind(now)
                .fetch_all(&self.pool)
                .await?;
            rows.iter()
                .map(|r| {
                    Ok(Rescued {
                        id: r.try_get(0)?,
                        plugin: r.try_get(1)?,
                        kind: r.try_get(2)?,
                        attempt: to_u32(r.try_get(3)?),
                        discarded: r.try_get(4)?,
                    })
                })
                .collect()
        })
    }

    fn list(&self, filter: &JobFilter, now: i64) -> Result<Vec<JobRecord>> {
        let due = match filter.state {
            Some(JobState::Available) => 1,
            Some(JobState::Scheduled) => 2,
            _ => 0,
        };
        let run = async {
            let rows = sqlx::query(&self.sql.list)
                .bind(filter.plugin.as_deref())
                .bind(filter.kind.as_deref())
                .bind(filter.state.map(JobState::stored))
                .bind(due)
                .bind(now)
                .bind(filter.before)
                .bind(i64::from(filter.limit))
                .fetch_all(&self.pool)
                .await?;
            rows.iter()
                .map(|r| job_record(r, now))
                .collect::<sqlx::Result<Vec<_>>>()
        };
        self.handle
            .block_on(run)
            .map_err(|e| unavailable("cannot list jobs", e))
    }

    fn get(&self, id: i64, now: i64) -> Result<Option<(JobRecord, Vec<AttemptRecord>)>> {
        let run = async {
            // One snapshot for both reads.
            let mut tx = self.pool.begin().await?;
            sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
                .execute(&mut *tx)
                .await?;
            let Some(row) = sqlx::query(&self.sql.get_job)
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?
            else {
                return Ok(None);
            };
            let job = job_record(&row, now)?;
            let attempts = sqlx::query(&self.sql.get_attempts)
                .bind(id)
                .fetch_all(&mut *tx)
                .await?
                .iter()
                .map(attempt_record)
                .collect::<sqlx::Result<Vec<_>>>()?;
            tx.commit().await?;
            Ok(Some((job, attempts)))
        };
        self.handle
            .block_on(run)
            .map_err(|e: sqlx::Error| unavailable("cannot read a job", e))
    }

    fn retry(
        &self,
        id: i64,
        extra_attempts: u32,
        now: i64,
    ) -> Result<std::result::Result<JobRecord, Refused>> {
        self.run_rekeyed("cannot retry a job", || async {
            let mut tx = self.pool.begin().await?;
            let Some(current) = sqlx::query(&self.sql.lock_state)
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?
            else {
                return Ok(Err(Refused::NotFound));
            };
            let state: String = current.try_get(0)?;
            if !matches!(state.as_str(), "discarded" | "completed" | "retryable") {
                let run_at: i64 = current.try_get(1)?;
                return Ok(Err(Refused::State(JobState::shown(&state, run_at, now))));
            }
            let row = sqlx::query(&self.sql.retry)
                .bind(id)
                .bind(to_i32(extra_attempts))
                .bind(now)
                .fetch_one(&mut *tx)
                .await?;
            let job = job_record(&row, now)?;
            sqlx::query(&self.sql.notify).execute(&mut *tx).await?;
            tx.commit().await?;
            Ok(Ok(job))
        })
    }

    fn cancel(&self, id: i64, now: i64) -> Result<std::result::Result<JobRecord, Refused>> {
        let run = async {
            let mut tx = self.pool.begin().await?;
            let Some(current) = sqlx::query(&self.sql.lock_state)
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?
            else {
                return Ok(Err(Refused::NotFound));
            };
            let state: String = current.try_get(0)?;
            let run_at: i64 = current.try_get(1)?;
            let shown = JobState::shown(&state, run_at, now);
            if !shown.is_waiting() {
                return Ok(Err(Refused::State(shown)));
            }
            let row = sqlx::query(&self.sql.cancel)
                .bind(id)
                .bind(now)
                .fetch_one(&mut *tx)
                .await?;
            let job = job_record(&row, now)?;
            tx.commit().await?;
            Ok(Ok(job))
        };
        self.handle
            .block_on(run)
            .map_err(|e: sqlx::Error| unavailable("cannot cancel a job", e))
    }

    fn set_paused(&self, plugin: &str, kind: &str, paused: bool) -> Result<()> {
        let run = async {
            if paused {
                sqlx::query(&self.sql.pause)
                    .bind(plugin)
                    .bind(kind)
                    .execute(&self.pool)
                    .await?;
            } else {
                // Resumed jobs may be due: wake every host's workers.
                let mut tx = self.pool.begin().await?;
                sqlx::query(&self.sql.resume)
                    .bind(plugin)
                    .bind(kind)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query(&self.sql.notify).execute(&mut *tx).await?;
                tx.commit().await?;
            }
            Ok::<_, sqlx::Error>(())
        };
        self.handle
            .block_on(run)
            .map_err(|e| unavailable("cannot pause or resume a kind", e))
    }

    fn paused(&self) -> Result<Vec<(String, String)>> {
        self.handle
            .block_on(sqlx::query_as(&self.sql.paused).fetch_all(&self.pool))
            .map_err(|e| unavailable("cannot read paused kinds", e))
    }

    fn fire(&self, schedule: &str, fire_at: i64, job: &NewJob) -> Result<Option<i64>> {
        let run = async {
            let mut tx = self.pool.begin().await?;
            let took = sqlx::query(&self.sql.take_fire)
                .bind(&job.plugin)
                .bind(schedule)
                .bind(fire_at)
                .fetch_optional(&mut *tx)
                .await?
                .is_some();
            if !took {
                tx.rollback().await?;
                return Ok(None);
            }
            let rows = enqueue_query(&self.sql.enqueue, std::slice::from_ref(job), host_now_ms())
                .fetch_all(&mut *tx)
                .await?;
            let id = enqueued_ids(&rows)?.into_iter().flatten().next();
            tx.commit().await?;
            Ok(id)
        };
        self.handle
            .block_on(run)
            .map_err(|e: sqlx::Error| unavailable("cannot fire a schedule", e))
    }

    fn last_fire(&self, plugin: &str, schedule: &str) -> Result<Option<i64>> {
        self.handle
            .block_on(
                sqlx::query_scalar(&self.sql.last_fire)
                    .bind(plugin)
                    .bind(schedule)
                    .fetch_optional(&self.pool),
            )
            .map_err(|e| unavailable("cannot read a schedule's last fire", e))
    }

    fn counts(&self, now: i64) -> Result<Vec<StateCount>> {
        let run = async {
            let rows = sqlx::query(&self.sql.counts)
                .bind(now)
                .fetch_all(&self.pool)
                .await?;
            rows.iter()
                .map(|r| {
                    let state: String = r.try_get(2)?;
                    let count: i64 = r.try_get(3)?;
                    Ok(StateCount {
                        plugin: r.try_get(0)?,
                        kind: r.try_get(1)?,
                        state: JobState::parse(&state).unwrap_or(JobState::Discarded),
                        count: u64::try_from(count).unwrap_or(0),
                        oldest_run_at: r.try_get(4)?,
                    })
                })
                .collect::<sqlx::Result<Vec<_>>>()
        };
        self.handle
            .block_on(run)
            .map_err(|e| unavailable("cannot count jobs", e))
    }

    fn prune(&self, finished_before: i64, keep: u64) -> Result<u64> {
        let deleted: i64 = self
            .handle
            .block_on(
                sqlx::query_scalar(&self.sql.prune)
                    .bind(finished_before)
                    .bind(i64::try_from(keep).unwrap_or(i64::MAX))
                    .fetch_one(&self.pool),
            )
            .map_err(|e| unavailable("cannot prune jobs", e))?;
        Ok(u64::try_from(deleted).unwrap_or(0))
    }

    fn on_remote_enqueue(&self, wake: Arc<dyn Fn() + Send + Sync>) {
        self.handle.spawn(listen(
            self.pool.clone(),
            self.channel.clone(),
            self.instance.clone(),
            wake,
        ));
    }
}
