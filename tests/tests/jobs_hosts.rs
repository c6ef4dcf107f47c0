//! Durable jobs across host processes, checked from outside: a host killed with SIGKILL
//! mid-attempt has its job run again by the next host once the lease expired (SQLite, the queue
//! file read directly; PostgreSQL, the queue's tables read with psql), and two hosts on one PostgreSQL share 2,000 jobs without ever running
//! one twice (the execution log read directly with psql).
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::path::Path;
use std::time::{Duration, Instant};

use integration::*;
use serde_json::json;

/// Polls `check` every 20 ms until it returns `Some`, for at most `limit`.
fn wait_until<T>(what: &str, limit: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// One value from the SQLite queue file, read by a connection of this test process.
fn queue_value(data: &Path, sql: &str) -> Option<String> {
    let conn = rusqlite::Connection::open_with_flags(
        data.join("jobs.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .ok()?;
    conn.query_row(sql, [], |r| r.get::<_, Option<String>>(0))
        .ok()
        .flatten()
}

const FAST: [(&str, &str); 2] = [
    ("PLUGIN_HOST_JOBS_LEASE_MS", "1000"),
    ("PLUGIN_HOST_JOBS_POLL_MS", "50"),
];

/// A host on the PostgreSQL database `db` (tables and queue), with the fast lease and poll.
fn pg_host(db: &PgDatabase, id: &str) -> Server {
    let mut env = FAST.to_vec();
    env.extend([
        ("PLUGIN_HOST_TABLES_BACKEND", "postgres"),
        ("PLUGIN_HOST_TABLES_URL", db.url.as_str()),
        ("PLUGIN_HOST_JOBS_HOST_ID", id),
    ]);
    Server::start(&[], &env)
}

/// Loads `job-runner` on `host`.
fn load_runner(host: &Server) {
    let (st, body) = host.load(&plugin("job-runner"));
    assert_eq!(st, 201, "{body}");
}

/// Emits `work:<name>` with `payload` through `host`'s admin API.
fn emit_work(host: &Server, name: &str, payload: serde_json::Value) {
    let (st, body) = host.call(
        "POST",
        "/api/v1/events",
        Some(json!({"name": format!("work:{name}"), "payload": payload})),
    );
    assert_eq!(st, 202, "{body}");
}

#[test]
fn a_job_of_a_host_killed_mid_attempt_runs_again_after_its_lease_expires() {
    let tmp = temp_dir();
    let data = tmp.path().join("data");
    let mut env = FAST.to_vec();
    env.push(("PLUGIN_HOST_JOBS_HOST_ID", "first"));
    let mut first = Server::start_with_data(&[], &env, &data, None);
    load_runner(&first);
    emit_work(&first, "long", json!({"id": "long", "sleep_ms": 2000}));
    // The attempt has started on the first host (its lease is in the file).
    let id = wait_until("the attempt to start", Duration::from_secs(10), || {
        queue_value(
            &data,
            "SELECT CAST(id AS TEXT) FROM jobs WHERE kind = 'work' AND state = 'running' \
             AND lease_host = 'first'",
        )
    });
    first.kill();
    // Still `running` under the dead host's lease: nothing else touched it.
    let sql = format!("SELECT state || ',' || lease_host FROM jobs WHERE id = {id}");
    assert_eq!(queue_value(&data, &sql).unwrap(), "running,first");

    let mut env = FAST.to_vec();
    env.push(("PLUGIN_HOST_JOBS_HOST_ID", "second"));
    let second = Server::start_with_data(&[], &env, &data, None);
    // The plugin set is restored from the data folder; the rescuer requeues the job once its
    // lease expired and the second host runs it.
    let done = wait_until("the job to complete", Duration::from_secs(30), || {
        let (st, body) = second.call("GET", &format!("/api/v1/jobs/{id}"), None);
        (st == 200 && body["job"]["state"] == "completed").then_some(body)
    });
    let attempts = done["attempts"].as_array().unwrap();
    let seen: Vec<(String, String)> = attempts
        .iter()
        .map(|a| {
            (
                a["status"].as_str().unwrap().to_owned(),
                a["host"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("lost".to_owned(), "first".to_owned()),
            ("succeeded".to_owned(), "second".to_owned())
        ],
        "{done}"
    );
    assert_eq!(done["job"]["attempt"], 2);
}

#[test]
fn on_postgres_a_job_of_a_host_killed_mid_attempt_runs_on_the_other_host() {
    let db = PgDatabase::create("jobs_kill");
    // Only the first host has the plugin while the job starts.
    let mut first = pg_host(&db, "first");
    load_runner(&first);
    emit_work(&first, "long", json!({"id": "long", "sleep_ms": 2000}));
    let id = wait_until("the attempt to start", Duration::from_secs(10), || {
        let id = db.sql(
            "SELECT id FROM plugin_host.jobs WHERE kind = 'work' AND state = 'running' \
             AND lease_host = 'first'",
        );
        (!id.is_empty()).then_some(id)
    });
    first.kill();
    let second = pg_host(&db, "second");
    load_runner(&second);
    let done = wait_until("the job to complete", Duration::from_secs(30), || {
        let (st, body) = second.call("GET", &format!("/api/v1/jobs/{id}"), None);
        (st == 200 && body["job"]["state"] == "completed").then_some(body)
    });
    let seen: Vec<(&str, &str)> = done["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["status"].as_str().unwrap(), a["host"].as_str().unwrap()))
        .collect();
    assert_eq!(seen, [("lost", "first"), ("succeeded", "second")], "{done}");
}

#[test]
fn two_hosts_on_one_postgres_never_run_a_job_twice() {
    let db = PgDatabase::create("jobs_hosts");
    let a = pg_host(&db, "a");
    let b = pg_host(&db, "b");
    load_runner(&a);
    load_runner(&b);
    // Hold the kind while the jobs are enqueued, so both hosts start from a full queue.
    let (st, body) = a.call("POST", "/api/v1/plugins/job-runner/jobs/work/pause", None);
    assert_eq!(st, 200, "{body}");
    const N: usize = 2000;
    for i in 0..N {
        let via = if i % 2 == 0 { &a } else { &b };
        emit_work(via, "many", json!({"id": format!("j{i}")}));
    }
    let waiting = db.sql("SELECT count(*) FROM plugin_host.jobs WHERE kind = 'work'");
    assert_eq!(waiting, N.to_string());
    let (st, body) = b.call("POST", "/api/v1/plugins/job-runner/jobs/work/resume", None);
    assert_eq!(st, 200, "{body}");
    wait_until("every job to complete", Duration::from_secs(120), || {
        let done = db.sql(
            "SELECT count(*) FROM plugin_host.jobs WHERE kind = 'work' AND state = 'completed'",
        );
        (done == N.to_string()).then_some(())
    });
    // One attempt per job, never two: no job was run twice, at once or after.
    let attempts = db.sql("SELECT count(*) FROM plugin_host.job_attempts WHERE kind = 'work'");
    assert_eq!(attempts, N.to_string());
    let repeated = db.sql(
        "SELECT count(*) FROM (SELECT job_id FROM plugin_host.job_attempts WHERE kind = 'work' \
         GROUP BY job_id HAVING count(*) > 1) r",
    );
    assert_eq!(repeated, "0");
    // Both hosts took a share.
    let hosts = db.sql(
        "SELECT string_agg(host, ',' ORDER BY host) FROM (SELECT DISTINCT host FROM \
         plugin_host.job_attempts WHERE kind = 'work') h",
    );
    assert_eq!(hosts, "a,b");
    // The interval schedule fired each instant once, whichever host took it.
    let ticks = db
        .sql("SELECT count(*) = count(DISTINCT run_at) FROM plugin_host.jobs WHERE kind = 'tick'");
    assert_eq!(ticks, "t");
}
