//! Conversions between the queue's records and PostgreSQL rows and arguments. No I/O.

use sqlx::postgres::PgRow;
use sqlx::{Postgres, Row};

use crate::jobs::store::{AttemptRecord, AttemptStatus, JobRecord, JobState, NewJob};

/// Milliseconds since the Unix epoch on this host's clock.
pub(super) fn host_now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

pub(super) fn to_i32(n: u32) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

pub(super) fn to_u32(n: i32) -> u32 {
    u32::try_from(n).unwrap_or(0)
}

/// Reads a row of [`JOB_COLUMNS`](super::sql::JOB_COLUMNS).
pub(super) fn job_record(row: &PgRow, now: i64) -> sqlx::Result<JobRecord> {
    let state: String = row.try_get(3)?;
    let run_at: i64 = row.try_get(8)?;
    Ok(JobRecord {
        id: row.try_get(0)?,
        plugin: row.try_get(1)?,
        kind: row.try_get(2)?,
        state: JobState::shown(&state, run_at, now),
        priority: row.try_get(4)?,
        input: row.try_get(5)?,
        attempt: to_u32(row.try_get(6)?),
        max_attempts: to_u32(row.try_get(7)?),
        run_at,
        created_at: row.try_get(9)?,
        finished_at: row.try_get(10)?,
        dedupe_key: row.try_get(11)?,
        source: row.try_get(12)?,
        event_id: row.try_get(13)?,
        last_error: row.try_get(14)?,
        lease_host: row.try_get(15)?,
        lease_until: row.try_get(16)?,
    })
}

/// Reads a row of [`ATTEMPT_COLUMNS`](super::sql::ATTEMPT_COLUMNS).
pub(super) fn attempt_record(row: &PgRow) -> sqlx::Result<AttemptRecord> {
    let status: String = row.try_get(8)?;
    Ok(AttemptRecord {
        job_id: row.try_get(0)?,
        attempt: to_u32(row.try_get(1)?),
        plugin: row.try_get(2)?,
        version: row.try_get(3)?,
        kind: row.try_get(4)?,
        host: row.try_get(5)?,
        started_at: row.try_get(6)?,
        duration_ms: row.try_get(7)?,
        status: AttemptStatus::parse(&status),
        error: row.try_get(9)?,
        input: row.try_get(10)?,
        output: row.try_get(11)?,
    })
}

/// The enqueue statement with a batch's fields bound as arrays.
pub(super) fn enqueue_query<'q>(
    sql: &'q str,
    jobs: &'q [NewJob],
    created_at: i64,
) -> sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments> {
    sqlx::query(sql)
        .bind(jobs.iter().map(|j| j.plugin.as_str()).collect::<Vec<_>>())
        .bind(jobs.iter().map(|j| j.kind.as_str()).collect::<Vec<_>>())
        .bind(jobs.iter().map(|j| j.input.as_str()).collect::<Vec<_>>())
        .bind(jobs.iter().map(|j| j.priority).collect::<Vec<_>>())
        .bind(
            jobs.iter()
                .map(|j| to_i32(j.max_attempts))
                .collect::<Vec<_>>(),
        )
        .bind(jobs.iter().map(|j| j.run_at).collect::<Vec<_>>())
        .bind(
            jobs.iter()
                .map(|j| j.dedupe_key.as_deref())
                .collect::<Vec<_>>(),
        )
        .bind(jobs.iter().map(|j| j.source.as_str()).collect::<Vec<_>>())
        .bind(
            jobs.iter()
                .map(|j| j.event_id.as_deref())
                .collect::<Vec<_>>(),
        )
        .bind(created_at)
}

/// Reads the ids an enqueue returned, one per job.
pub(super) fn enqueued_ids(rows: &[PgRow]) -> sqlx::Result<Vec<Option<i64>>> {
    rows.iter().map(|r| r.try_get(0)).collect()
}
