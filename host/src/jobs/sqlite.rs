//! The queue on SQLite: one host database file (`jobs.db` in the data folder), WAL, one
//! connection behind a mutex. Every method is one `IMMEDIATE` transaction, so a claim takes the
//! write lock before it reads: two claims never see the same due job. Only one host opens the
//! file (SQLite's locks would let two processes share it, but the in-process wake-up would not
//! reach the other), so there is no remote wake-up.
//!
//! Durability: `synchronous = NORMAL` in WAL mode, so a commit survives the process being killed
//! (the job is in the WAL file when `enqueue` returns); an operating-system crash or power loss
//! may lose the last commits before a checkpoint. `synchronous = FULL` (the `[jobs]` setting
//! `sqlite_synchronous_full`) syncs every commit.

use std::path::Path;
use std::sync::{Mutex, PoisonError};

use rusqlite::{Connection, OptionalExtension, Row, Transaction, TransactionBehavior, params};

use super::store::{
    AttemptRecord, AttemptStatus, Claimed, Finish, JobFilter, JobRecord, JobState, JobStore,
    NewJob, Next, Refused, Rescued, StateCount,
};
use crate::error::{BackendKind, Error, Result};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    plugin TEXT NOT NULL,
    kind TEXT NOT NULL,
    state TEXT NOT NULL,
    priority INTEGER NOT NULL,
    input TEXT NOT NULL,
    dedupe_key TEXT,
    attempt INTEGER NOT NULL DEFAULT 0,
    max_attempts INTEGER NOT NULL,
    run_at INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    finished_at INTEGER,
    source TEXT NOT NULL,
    event_id TEXT,
    last_error TEXT,
    lease_token INTEGER,
    lease_host TEXT,
    lease_until INTEGER
);
CREATE INDEX IF NOT EXISTS jobs_waiting ON jobs (priority, run_at, id)
    WHERE state IN ('available', 'retryable');
CREATE UNIQUE INDEX IF NOT EXISTS jobs_dedupe ON jobs (plugin, kind, dedupe_key)
    WHERE dedupe_key IS NOT NULL AND state IN ('available', 'retryable');
CREATE INDEX IF NOT EXISTS jobs_running ON jobs (lease_until) WHERE state = 'running';
CREATE INDEX IF NOT EXISTS jobs_finished ON jobs (finished_at) WHERE finished_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS jobs_plugin ON jobs (plugin, kind, id);
CREATE TABLE IF NOT EXISTS job_attempts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id INTEGER NOT NULL,
    attempt INTEGER NOT NULL,
    plugin TEXT NOT NULL,
    version TEXT NOT NULL,
    kind TEXT NOT NULL,
    host TEXT NOT NULL,
    started_at INTEGER NOT NULL,
    duration_ms INTEGER NOT NULL,
    status TEXT NOT NULL,
    error TEXT,
    input TEXT NOT NULL,
    output TEXT
);
CREATE INDEX IF NOT EXISTS job_attempts_job ON job_attempts (job_id, id);
CREATE TABLE IF NOT EXISTS job_pauses (
    plugin TEXT NOT NULL,
    kind TEXT NOT NULL,
    PRIMARY KEY (plugin, kind)
);
CREATE TABLE IF NOT EXISTS job_schedules (
    plugin TEXT NOT NULL,
    schedule TEXT NOT NULL,
    last_fire INTEGER NOT NULL,
    PRIMARY KEY (plugin, schedule)
);
";

/// The columns of [`JobRecord`], in [`job_row`]'s order.
const JOB_COLUMNS: &str = "id, plugin, kind, state, priority, input, attempt, max_attempts, \
    run_at, created_at, finished_at, dedupe_key, source, event_id, last_error, lease_host, \
    lease_until";

/// The queue in one SQLite file.
#[derive(Debug)]
pub(crate) struct SqliteJobs {
    conn: Mutex<Connection>,
}

fn unavailable(e: impl std::fmt::Display) -> Error {
    Error::BackendUnavailable {
        kind: BackendKind::Tables,
        message: format!("job queue (SQLite): {e}"),
    }
}

/// Records one attempt's end in `tx` (see [`JobStore::finish`]).
fn finish_one(tx: &Transaction<'_>, finish: &Finish) -> rusqlite::Result<bool> {
    insert_attempt(tx, &finish.log)?;
    let clear = "lease_token = NULL, lease_host = NULL, lease_until = NULL";
    let n = match &finish.next {
        Next::Complete => tx
            .prepare_cached(&format!(
                "UPDATE jobs SET state = 'completed', finished_at = ?3, {clear} \
                     WHERE id = ?1 AND state = 'running' AND lease_token = ?2"
            ))?
            .execute(params![finish.id, finish.token, finish.now])?,
        Next::Retry { at } => {
            free_key(tx, finish.id)?;
            tx.prepare_cached(&format!(
                "UPDATE jobs SET state = 'retryable', run_at = ?3, last_error = ?4, \
                     {clear} WHERE id = ?1 AND state = 'running' AND lease_token = ?2"
            ))?
            .execute(params![finish.id, finish.token, at, finish.log.error])?
        }
        Next::Discard => tx
            .prepare_cached(&format!(
                "UPDATE jobs SET state = 'discarded', finished_at = ?3, last_error = ?4, \
                     {clear} WHERE id = ?1 AND state = 'running' AND lease_token = ?2"
            ))?
            .execute(params![
                finish.id,
                finish.token,
                finish.now,
                finish.log.error
            ])?,
    };
    Ok(n == 1)
}

/// A fresh fencing token: random, so a token of a claim before a restart is never reused.
fn token() -> i64 {
    use std::hash::{BuildHasher, Hasher};
    let draw = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    // Positive, so it reads the same in every tool.
    (draw >> 1) as i64
}

fn job_row(row: &Row<'_>, now: i64) -> rusqlite::Result<JobRecord> {
    let state: String = row.get(3)?;
    let run_at: i64 = row.get(8)?;
    Ok(JobRecord {
        id: row.get(0)?,
        plugin: row.get(1)?,
        kind: row.get(2)?,
        state: JobState::shown(&state, run_at, now),
        priority: row.get(4)?,
        input: row.get(5)?,
        attempt: row.get(6)?,
        max_attempts: row.get(7)?,
        run_at,
        created_at: row.get(9)?,
        finished_at: row.get(10)?,
        dedupe_key: row.get(11)?,
        source: row.get(12)?,
        event_id: row.get(13)?,
        last_error: row.get(14)?,
        lease_host: row.get(15)?,
        lease_until: row.get(16)?,
    })
}

fn attempt_row(row: &Row<'_>) -> rusqlite::Result<AttemptRecord> {
    let status: String = row.get(8)?;
    Ok(AttemptRecord {
        job_id: row.get(0)?,
        attempt: row.get(1)?,
        plugin: row.get(2)?,
        version: row.get(3)?,
        kind: row.get(4)?,
        host: row.get(5)?,
        started_at: row.get(6)?,
        duration_ms: row.get(7)?,
        status: AttemptStatus::parse(&status),
        error: row.get(9)?,
        input: row.get(10)?,
        output: row.get(11)?,
    })
}

fn insert_job(tx: &Transaction<'_>, job: &NewJob, now: i64) -> rusqlite::Result<Option<i64>> {
    let mut insert = tx.prepare_cached(
        "INSERT INTO jobs (plugin, kind, state, priority, input, dedupe_key, max_attempts, \
         run_at, created_at, source, event_id) \
         VALUES (?1, ?2, 'available', ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10) \
         ON CONFLICT DO NOTHING",
    )?;
    let n = insert.execute(params![
        job.plugin,
        job.kind,
        job.priority,
        job.input,
        job.dedupe_key,
        job.max_attempts,
        job.run_at,
        now,
        job.source,
        job.event_id,
    ])?;
    Ok((n == 1).then(|| tx.last_insert_rowid()))
}

fn insert_attempt(tx: &Transaction<'_>, log: &AttemptRecord) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "INSERT INTO job_attempts (job_id, attempt, plugin, version, kind, host, started_at, \
         duration_ms, status, error, input, output) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
    )?
    .execute(params![
        log.job_id,
        log.attempt,
        log.plugin,
        log.version,
        log.kind,
        log.host,
        log.started_at,
        log.duration_ms,
        log.status.as_str(),
        log.error,
        log.input,
        log.output,
    ])?;
    Ok(())
}

/// Drops the dedupe key of job `id` when another waiting job of its plugin and kind holds the
/// same key, so that the job can wait again (a retry, a release, a rescue): the key's job that
/// waits already stands for it, and the unique index would otherwise refuse the change.
fn free_key(tx: &Transaction<'_>, id: i64) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "UPDATE jobs SET dedupe_key = NULL WHERE id = ?1 AND dedupe_key IS NOT NULL \
         AND EXISTS (SELECT 1 FROM jobs o WHERE o.plugin = jobs.plugin AND o.kind = jobs.kind \
         AND o.dedupe_key = jobs.dedupe_key AND o.state IN ('available', 'retryable') \
         AND o.id <> jobs.id)",
    )?
    .execute([id])?;
    Ok(())
}

fn get_job(conn: &Connection, id: i64, now: i64) -> rusqlite::Result<Option<JobRecord>> {
    conn.prepare_cached(&format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?1"))?
        .query_row([id], |r| job_row(r, now))
        .optional()
}

impl SqliteJobs {
    /// Opens (creating) the queue file at `path`.
    ///
    /// # Errors
    /// `backend_unavailable` when the file cannot be opened or its tables created.
    pub(crate) fn open(path: &Path, synchronous_full: bool) -> Result<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        }
        let conn = Connection::open(path).map_err(unavailable)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(unavailable)?;
        // Every statement of this store stays prepared.
        conn.set_prepared_statement_cache_capacity(64);
        let sync = if synchronous_full { "FULL" } else { "NORMAL" };
        conn.execute_batch(&format!(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = {sync}; {SCHEMA}"
        ))
        .map_err(unavailable)?;
        Ok(Self {
            conn: Mutex::new(conn),
        })
    }

    /// Runs `f` in one immediate transaction and commits it.
    fn write<T>(&self, f: impl FnOnce(&Transaction<'_>) -> rusqlite::Result<T>) -> Result<T> {
        let mut conn = self.conn.lock().unwrap_or_else(PoisonError::into_inner);
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(unavailable)?;
        let out = f(&tx).map_err(unavailable)?;
        tx.commit().map_err(unavailable)?;
        Ok(out)
    }

    /// Runs a read.
    fn read<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> Result<T> {
        let conn = self.conn.lock().unwrap_or_else(PoisonError::into_inner);
        f(&conn).map_err(unavailable)
    }
}

/// `?,?,…` for `n` parameters starting at `?first`.
fn placeholders(first: usize, n: usize) -> String {
    (first..first + n)
        .map(|i| format!("?{i}"))
        .collect::<Vec<_>>()
        .join(",")
}

impl JobStore for SqliteJobs {
    fn enqueue(&self, jobs: &[NewJob]) -> Result<Vec<Option<i64>>> {
        let now = super::now_ms();
        self.write(|tx| jobs.iter().map(|job| insert_job(tx, job, now)).collect())
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
        self.write(|tx| {
            let sql = format!(
                "SELECT id, plugin, kind, input, attempt, max_attempts, created_at, run_at \
                 FROM jobs INDEXED BY jobs_waiting \
                 WHERE state IN ('available', 'retryable') AND run_at <= ?1 \
                 AND plugin IN ({}) AND NOT EXISTS (SELECT 1 FROM job_pauses p \
                 WHERE p.plugin = jobs.plugin AND p.kind = jobs.kind) \
                 ORDER BY priority, run_at, id LIMIT ?2",
                placeholders(3, plugins.len())
            );
            let mut select = tx.prepare_cached(&sql)?;
            let mut values: Vec<&dyn rusqlite::ToSql> = vec![&now, &limit];
            values.extend(plugins.iter().map(|p| p as &dyn rusqlite::ToSql));
            let rows = select
                .query_map(values.as_slice(), |r| {
                    Ok(Claimed {
                        id: r.get(0)?,
                        plugin: r.get(1)?,
                        kind: r.get(2)?,
                        input: r.get(3)?,
                        attempt: r.get::<_, u32>(4)? + 1,
                        max_attempts: r.get(5)?,
                        created_at: r.get(6)?,
                        run_at: r.get(7)?,
                        token: token(),
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            let mut update = tx.prepare_cached(
                "UPDATE jobs SET state = 'running', attempt = ?2, lease_token = ?3, \
                 lease_host = ?4, lease_until = ?5 WHERE id = ?1",
            )?;
            for job in &rows {
                update.execute(params![job.id, job.attempt, job.token, host, lease_until])?;
            }
            Ok(rows)
        })
    }

    fn finish_many(&self, finishes: &[Finish]) -> Result<Vec<bool>> {
        if finishes.is_empty() {
            return Ok(Vec::new());
        }
        self.write(|tx| finishes.iter().map(|f| finish_one(tx, f)).collect())
    }

    fn release(&self, id: i64, token: i64) -> Result<()> {
        self.write(|tx| {
            free_key(tx, id)?;
            tx.prepare_cached(
                "UPDATE jobs SET attempt = attempt - 1, \
                 state = CASE WHEN attempt - 1 = 0 THEN 'available' ELSE 'retryable' END, \
                 lease_token = NULL, lease_host = NULL, lease_until = NULL \
                 WHERE id = ?1 AND state = 'running' AND lease_token = ?2",
            )?
            .execute(params![id, token])?;
            Ok(())
        })
    }

    fn heartbeat(&self, host: &str, tokens: &[i64], lease_until: i64) -> Result<usize> {
        if tokens.is_empty() {
            return Ok(0);
        }
        self.write(|tx| {
            let mut update = tx.prepare_cached(
                "UPDATE jobs SET lease_until = ?3 WHERE state = 'running' AND lease_token = ?1 \
                 AND lease_host = ?2",
            )?;
            let mut n = 0;
            for token in tokens {
                n += update.execute(params![token, host, lease_until])?;
            }
            Ok(n)
        })
    }

    fn rescue(&self, now: i64) -> Result<Vec<Rescued>> {
        self.write(|tx| {
            let expired = tx
                .prepare_cached(
                    "SELECT id, plugin, kind, attempt, max_attempts, input, lease_host, \
                     lease_until FROM jobs WHERE state = 'running' AND lease_until < ?1",
                )?
                .query_map([now], |r| {
                    Ok((
                        Rescued {
                            id: r.get(0)?,
                            plugin: r.get(1)?,
                            kind: r.get(2)?,
                            attempt: r.get(3)?,
                            discarded: r.get::<_, u32>(3)? >= r.get::<_, u32>(4)?,
                        },
                        r.get::<_, String>(5)?,
                        r.get::<_, Option<String>>(6)?,
                        r.get::<_, Option<i64>>(7)?,
                    ))
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            let mut out = Vec::with_capacity(expired.len());
            for (job, input, host, until) in expired {
                let error = "lease expired: the host running it stopped or stalled";
                insert_attempt(
                    tx,
                    &AttemptRecord {
                        job_id: job.id,
                        attempt: job.attempt,
                        plugin: job.plugin.clone(),
                        version: String::new(),
                        kind: job.kind.clone(),
                        host: host.unwrap_or_default(),
                        started_at: until.unwrap_or(now),
                        duration_ms: 0,
                        status: AttemptStatus::Lost,
                        error: Some(error.to_owned()),
                        input,
                        output: None,
                    },
                )?;
                if !job.discarded {
                    free_key(tx, job.id)?;
                }
                let sql = if job.discarded {
                    "UPDATE jobs SET state = 'discarded', finished_at = ?2, last_error = ?3, \
                     lease_token = NULL, lease_host = NULL, lease_until = NULL WHERE id = ?1"
                } else {
                    "UPDATE jobs SET state = 'retryable', run_at = ?2, last_error = ?3, \
                     lease_token = NULL, lease_host = NULL, lease_until = NULL WHERE id = ?1"
                };
                tx.prepare_cached(sql)?
                    .execute(params![job.id, now, error])?;
                out.push(job);
            }
            Ok(out)
        })
    }

    fn list(&self, filter: &JobFilter, now: i64) -> Result<Vec<JobRecord>> {
        let mut sql = format!("SELECT {JOB_COLUMNS} FROM jobs WHERE 1 = 1");
        let mut values: Vec<Box<dyn rusqlite::ToSql>> = Vec::new();
        let mut bind = |sql: &mut String, clause: &str, v: Box<dyn rusqlite::ToSql>| {
            values.push(v);
            sql.push_str(&clause.replace('?', &format!("?{}", values.len())));
        };
        if let Some(plugin) = &filter.plugin {
            bind(&mut sql, " AND plugin = ?", Box::new(plugin.clone()));
        }
        if let Some(kind) = &filter.kind {
            bind(&mut sql, " AND kind = ?", Box::new(kind.clone()));
        }
        if let Some(state) = filter.state {
            bind(&mut sql, " AND state = ?", Box::new(state.stored()));
            match state {
                JobState::Available => bind(&mut sql, " AND run_at <= ?", Box::new(now)),
                JobState::Scheduled => bind(&mut sql, " AND run_at > ?", Box::new(now)),
                _ => {}
            }
        }
        if let Some(before) = filter.before {
            bind(&mut sql, " AND id < ?", Box::new(before));
        }
        bind(
            &mut sql,
            " ORDER BY id DESC LIMIT ?",
            Box::new(i64::from(filter.limit)),
        );
        self.read(|conn| {
            let refs: Vec<&dyn rusqlite::ToSql> = values.iter().map(AsRef::as_ref).collect();
            conn.prepare(&sql)?
                .query_map(refs.as_slice(), |r| job_row(r, now))?
                .collect()
        })
    }

    fn get(&self, id: i64, now: i64) -> Result<Option<(JobRecord, Vec<AttemptRecord>)>> {
        self.read(|conn| {
            let Some(job) = get_job(conn, id, now)? else {
                return Ok(None);
            };
            let attempts = conn
                .prepare_cached(
                    "SELECT job_id, attempt, plugin, version, kind, host, started_at, \
                     duration_ms, status, error, input, output FROM job_attempts \
                     WHERE job_id = ?1 ORDER BY id",
                )?
                .query_map([id], attempt_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(Some((job, attempts)))
        })
    }

    fn retry(
        &self,
        id: i64,
        extra_attempts: u32,
        now: i64,
    ) -> Result<std::result::Result<JobRecord, Refused>> {
        self.write(|tx| {
            let Some(job) = get_job(tx, id, now)? else {
                return Ok(Err(Refused::NotFound));
            };
            if !matches!(
                job.state,
                JobState::Discarded | JobState::Completed | JobState::Retryable
            ) {
                return Ok(Err(Refused::State(job.state)));
            }
            free_key(tx, id)?;
            tx.prepare_cached(
                "UPDATE jobs SET state = 'available', run_at = ?2, finished_at = NULL, \
                 max_attempts = attempt + ?3 WHERE id = ?1",
            )?
            .execute(params![id, now, extra_attempts])?;
            Ok(get_job(tx, id, now)?.ok_or(Refused::NotFound))
        })
    }

    fn cancel(&self, id: i64, now: i64) -> Result<std::result::Result<JobRecord, Refused>> {
        self.write(|tx| {
            let Some(job) = get_job(tx, id, now)? else {
                return Ok(Err(Refused::NotFound));
            };
            if !job.state.is_waiting() {
                return Ok(Err(Refused::State(job.state)));
            }
            tx.prepare_cached(
                "UPDATE jobs SET state = 'cancelled', finished_at = ?2 WHERE id = ?1",
            )?
            .execute(params![id, now])?;
            Ok(get_job(tx, id, now)?.ok_or(Refused::NotFound))
        })
    }

    fn set_paused(&self, plugin: &str, kind: &str, paused: bool) -> Result<()> {
        self.write(|tx| {
            let sql = if paused {
                "INSERT INTO job_pauses (plugin, kind) VALUES (?1, ?2) ON CONFLICT DO NOTHING"
            } else {
                "DELETE FROM job_pauses WHERE plugin = ?1 AND kind = ?2"
            };
            tx.prepare_cached(sql)?.execute(params![plugin, kind])?;
            Ok(())
        })
    }

    fn paused(&self) -> Result<Vec<(String, String)>> {
        self.read(|conn| {
            conn.prepare_cached("SELECT plugin, kind FROM job_pauses ORDER BY plugin, kind")?
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect()
        })
    }

    fn fire(&self, schedule: &str, fire_at: i64, job: &NewJob) -> Result<Option<i64>> {
        let now = super::now_ms();
        self.write(|tx| {
            let taken = tx
                .prepare_cached(
                    "INSERT INTO job_schedules (plugin, schedule, last_fire) VALUES (?1, ?2, ?3) \
                     ON CONFLICT (plugin, schedule) DO UPDATE SET last_fire = excluded.last_fire \
                     WHERE job_schedules.last_fire < excluded.last_fire",
                )?
                .execute(params![job.plugin, schedule, fire_at])?;
            if taken == 0 {
                return Ok(None);
            }
            insert_job(tx, job, now)
        })
    }

    fn last_fire(&self, plugin: &str, schedule: &str) -> Result<Option<i64>> {
        self.read(|conn| {
            conn.prepare_cached(
                "SELECT last_fire FROM job_schedules WHERE plugin = ?1 AND schedule = ?2",
            )?
            .query_row(params![plugin, schedule], |r| r.get(0))
            .optional()
        })
    }

    fn counts(&self, now: i64) -> Result<Vec<StateCount>> {
        self.read(|conn| {
            conn.prepare_cached(
                "SELECT plugin, kind, \
                 CASE WHEN state = 'available' AND run_at > ?1 THEN 'scheduled' ELSE state END \
                 AS shown, COUNT(*), MIN(run_at) FROM jobs GROUP BY plugin, kind, shown \
                 ORDER BY plugin, kind, shown",
            )?
            .query_map([now], |r| {
                let state: String = r.get(2)?;
                Ok(StateCount {
                    plugin: r.get(0)?,
                    kind: r.get(1)?,
                    state: JobState::parse(&state).unwrap_or(JobState::Discarded),
                    count: r.get(3)?,
                    oldest_run_at: r.get(4)?,
                })
            })?
            .collect()
        })
    }

    fn prune(&self, finished_before: i64, keep: u64) -> Result<u64> {
        let keep = i64::try_from(keep).unwrap_or(i64::MAX);
        self.write(|tx| {
            let doomed = "SELECT id FROM jobs WHERE finished_at IS NOT NULL AND (finished_at < ?1 \
                 OR id NOT IN (SELECT id FROM jobs WHERE finished_at IS NOT NULL \
                 ORDER BY finished_at DESC, id DESC LIMIT ?2))";
            tx.prepare_cached(&format!(
                "DELETE FROM job_attempts WHERE job_id IN ({doomed})"
            ))?
            .execute(params![finished_before, keep])?;
            let n = tx
                .prepare_cached(&format!("DELETE FROM jobs WHERE id IN ({doomed})"))?
                .execute(params![finished_before, keep])?;
            Ok(n as u64)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (SqliteJobs, tempdir::Dir) {
        let dir = tempdir::Dir::new();
        let store = SqliteJobs::open(&dir.0.join("jobs.db"), false).unwrap();
        (store, dir)
    }

    /// A folder removed on drop.
    mod tempdir {
        pub(super) struct Dir(pub(super) std::path::PathBuf);
        impl Dir {
            pub(super) fn new() -> Self {
                use std::sync::atomic::{AtomicU64, Ordering};
                static N: AtomicU64 = AtomicU64::new(0);
                let path = std::env::temp_dir().join(format!(
                    "plugin-host-jobs-{}-{}",
                    std::process::id(),
                    N.fetch_add(1, Ordering::Relaxed)
                ));
                std::fs::create_dir_all(&path).unwrap();
                Self(path)
            }
        }
        impl Drop for Dir {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
    }

    fn job(plugin: &str, kind: &str) -> NewJob {
        NewJob {
            plugin: plugin.into(),
            kind: kind.into(),
            input: "{}".into(),
            priority: 0,
            max_attempts: 3,
            run_at: 0,
            dedupe_key: None,
            source: "api".into(),
            event_id: None,
        }
    }

    #[test]
    fn passes_the_conformance_suite() {
        let (s, _dir) = store();
        crate::jobs::conformance::run_all(&s);
    }

    #[test]
    fn enqueue_claim_finish_round_trip() {
        let (s, _dir) = store();
        let ids = s.enqueue(&[job("p", "k"), job("p", "k")]).unwrap();
        assert_eq!(ids.len(), 2);
        let claimed = s.claim(&["p".into()], "h", 10, 1, 1000).unwrap();
        assert_eq!(claimed.len(), 2);
        assert_eq!(claimed[0].attempt, 1);
        assert!(s.claim(&["p".into()], "h", 10, 1, 1000).unwrap().is_empty());
    }

    #[test]
    fn reopening_the_file_keeps_the_jobs() {
        let dir = tempdir::Dir::new();
        let path = dir.0.join("jobs.db");
        let id = SqliteJobs::open(&path, false)
            .unwrap()
            .enqueue(&[job("p", "k")])
            .unwrap()[0]
            .unwrap();
        let again = SqliteJobs::open(&path, true).unwrap();
        let (found, attempts) = again.get(id, 0).unwrap().unwrap();
        assert_eq!((found.plugin.as_str(), found.attempt), ("p", 0));
        assert!(attempts.is_empty());
    }
}
