//! The PostgreSQL store against a real server: the conformance suite, two hosts on one
//! database, `NOTIFY` between them, and what a plugin's role can reach.

use std::collections::HashSet;
use std::sync::{Arc, mpsc};
use std::time::Duration;

use sqlx::{Connection, PgConnection};

use super::PgJobs;
use crate::error::ErrorCode;
use crate::jobs::conformance;
use crate::jobs::store::{JobFilter, JobState, JobStore, NewJob};

/// The admin connection (`PLUGIN_HOST_TEST_POSTGRES_URL`, as for the integration tests).
fn admin_url() -> String {
    std::env::var("PLUGIN_HOST_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// `admin_url` with another user and database.
fn url_as(user: &str, db: &str) -> String {
    let admin = admin_url();
    let (scheme, rest) = admin.split_once("://").unwrap();
    let (_, host) = rest.split_once('@').unwrap();
    let (host, _) = host.split_once('/').unwrap();
    format!("{scheme}://{user}@{host}/{db}")
}

fn random_suffix() -> String {
    use std::io::Read as _;
    let mut bytes = [0u8; 6];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .unwrap();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A database of its own: dropped at the end, kept (and named) when the test failed.
struct TestDb {
    name: String,
    runtime: tokio::runtime::Runtime,
}

impl TestDb {
    fn create() -> Self {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let name = format!("jobs_t_{}", random_suffix());
        let db = Self { name, runtime };
        db.admin(&format!("CREATE DATABASE {}", db.name));
        db
    }

    /// The URL the admin reaches this database with.
    fn url(&self) -> String {
        let admin = admin_url();
        let (base, _) = admin.rsplit_once('/').unwrap();
        format!("{base}/{}", self.name)
    }

    /// Runs SQL on the admin database.
    fn admin(&self, sql: &str) {
        self.runtime.block_on(async {
            let mut conn = admin_connection().await;
            sqlx::raw_sql(sql).execute(&mut conn).await.unwrap();
        });
    }

    /// Runs a query on the admin database; returns the `bigint` it selects.
    fn admin_scalar(&self, sql: &str) -> i64 {
        self.runtime.block_on(async {
            let mut conn = admin_connection().await;
            sqlx::query_scalar(sql).fetch_one(&mut conn).await.unwrap()
        })
    }
}

async fn admin_connection() -> PgConnection {
    PgConnection::connect(&admin_url())
        .await
        .unwrap_or_else(|e| {
            panic!(
                "PostgreSQL is not reachable at {}: {e}\nstart it with: pg_ctlcluster \
                 --skip-systemctl-redirect $(ls /etc/postgresql) main start",
                admin_url()
            )
        })
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("kept database {} of the failed test", self.name);
        } else {
            self.admin(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ));
        }
    }
}

fn job(plugin: &str) -> NewJob {
    NewJob {
        plugin: plugin.to_owned(),
        kind: "send".to_owned(),
        input: "{}".to_owned(),
        priority: 0,
        max_attempts: 3,
        run_at: 0,
        dedupe_key: None,
        source: "api".to_owned(),
        event_id: None,
    }
}

#[test]
fn a_claim_walks_the_waiting_index_whatever_the_statistics_say() {
    // And compiles nothing: the priced-out plans cost enough to trigger JIT otherwise.
    let db = TestDb::create();
    let store = PgJobs::open(&db.url(), "plugin_host").unwrap();
    // A backlog the statistics do not know of (the table is new, never analyzed).
    let jobs: Vec<NewJob> = (0..5_000).map(|_| job("backlog")).collect();
    store.enqueue(&jobs).unwrap();
    let plan = store.explain_claim(&["backlog".to_owned()], 4);
    assert!(
        plan.contains("Index Scan using jobs_waiting")
            && !plan.contains("Bitmap")
            && !plan.contains("JIT"),
        "{plan}"
    );
    // The plan stops at the limit instead of reading the backlog.
    let claimed = store
        .claim(&["backlog".to_owned()], "h", 4, 1, 1_000)
        .unwrap();
    assert_eq!(claimed.len(), 4);
}

#[test]
fn passes_the_conformance_suite() {
    let db = TestDb::create();
    let store = PgJobs::open(&db.url(), "plugin_host").unwrap();
    conformance::run_all(&store);
}

#[test]
fn refuses_a_schema_that_is_not_a_plain_identifier() {
    for schema in ["", "Jobs", "a;drop schema x", "1a", &"a".repeat(59)] {
        let e = PgJobs::open(&admin_url(), schema).unwrap_err();
        assert_eq!(e.code(), ErrorCode::InvalidConfig, "{schema}");
    }
}

/// Two hosts start at once on one database, then claim from 2,000 jobs at once.
#[test]
fn two_hosts_never_claim_a_job_twice() {
    let db = TestDb::create();
    let url = db.url();
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| PgJobs::open(&url, "plugin_host").unwrap());
        let b = s.spawn(|| PgJobs::open(&url, "plugin_host").unwrap());
        (a.join().unwrap(), b.join().unwrap())
    });
    let jobs: Vec<NewJob> = (0..2_000).map(|_| job("p")).collect();
    let mut all = HashSet::new();
    for chunk in jobs.chunks(500) {
        all.extend(a.enqueue(chunk).unwrap().into_iter().flatten());
    }
    assert_eq!(all.len(), 2_000);
    let plugins = ["p".to_owned()];
    let drain = |store: &PgJobs, host: &str| {
        let mut got = Vec::new();
        loop {
            let batch = store.claim(&plugins, host, 10, 1_000, 60_000).unwrap();
            if batch.is_empty() {
                return got;
            }
            got.extend(batch.into_iter().map(|c| c.id));
        }
    };
    let (got_a, got_b) = std::thread::scope(|s| {
        let ta = s.spawn(|| drain(&a, "host-a"));
        let tb = s.spawn(|| drain(&b, "host-b"));
        (ta.join().unwrap(), tb.join().unwrap())
    });
    let mut seen = HashSet::new();
    for id in got_a.iter().chain(&got_b) {
        assert!(seen.insert(*id), "job {id} claimed twice");
    }
    assert_eq!(seen, all);
    assert!(!got_a.is_empty() && !got_b.is_empty());
}

#[test]
fn an_enqueue_on_one_host_wakes_the_other() {
    let db = TestDb::create();
    let a = PgJobs::open(&db.url(), "plugin_host").unwrap();
    let b = PgJobs::open(&db.url(), "plugin_host").unwrap();
    let (tx, rx) = mpsc::channel();
    let tx = std::sync::Mutex::new(tx);
    a.on_remote_enqueue(Arc::new(move || {
        let _ = tx.lock().unwrap().send(());
    }));
    let wait = Duration::from_secs(10);
    // The listener wakes once when it starts listening.
    rx.recv_timeout(wait).expect("the listener starts");
    assert_eq!(b.enqueue(&[job("p")]).unwrap().len(), 1);
    rx.recv_timeout(wait).expect("a's workers are woken");
    // So does a fire.
    assert!(b.fire("poll", 10, &job("p")).unwrap().is_some());
    rx.recv_timeout(wait)
        .expect("a's workers are woken by a fire");
}

/// The listener's connection dies: it connects again and listens on.
#[test]
fn the_listener_survives_a_lost_connection() {
    let db = TestDb::create();
    let a = PgJobs::open(&db.url(), "plugin_host").unwrap();
    let (tx, rx) = mpsc::channel();
    let tx = std::sync::Mutex::new(tx);
    a.on_remote_enqueue(Arc::new(move || {
        let _ = tx.lock().unwrap().send(());
    }));
    let wait = Duration::from_secs(10);
    rx.recv_timeout(wait).expect("the listener starts");
    let killed = db.admin_scalar(&format!(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
         WHERE datname = '{}' AND query LIKE 'LISTEN %'",
        db.name
    ));
    assert_eq!(killed, 1);
    // A wake after connecting again: what was enqueued meanwhile is not missed.
    rx.recv_timeout(wait).expect("the listener listens again");
    let b = PgJobs::open(&db.url(), "plugin_host").unwrap();
    b.enqueue(&[job("p")]).unwrap();
    rx.recv_timeout(wait).expect("a's workers are woken");
}

/// A role like a plugin's (it may log in, and has only what `PUBLIC` has) can neither read
/// nor write the queue.
#[test]
fn a_plugin_role_cannot_reach_the_queue() {
    let db = TestDb::create();
    let store = PgJobs::open(&db.url(), "plugin_host").unwrap();
    store.enqueue(&[job("victim")]).unwrap();
    let role = format!("{}_plugin", db.name);
    db.admin(&format!("CREATE ROLE {role} LOGIN"));
    struct DropRole<'a>(&'a TestDb, String);
    impl Drop for DropRole<'_> {
        fn drop(&mut self) {
            self.0.admin(&format!("DROP ROLE IF EXISTS {}", self.1));
        }
    }
    let _role = DropRole(&db, role.clone());
    let denied = db.runtime.block_on(async {
        let mut conn = PgConnection::connect(&url_as(&role, &db.name))
            .await
            .unwrap();
        let mut codes = Vec::new();
        for sql in [
            "SELECT * FROM plugin_host.jobs",
            "INSERT INTO plugin_host.jobs (plugin, kind, state, priority, input, attempt, \
             max_attempts, run_at, created_at, source) \
             VALUES ('victim', 'send', 'available', 0, '{}', 0, 1, 0, 0, 'api')",
            "UPDATE plugin_host.jobs SET state = 'cancelled'",
            "SELECT * FROM plugin_host.job_attempts",
            "SELECT nextval('plugin_host.job_lease_tokens')",
            "CREATE TABLE plugin_host.mine (x int)",
        ] {
            let e = sqlx::query(sql).execute(&mut conn).await.unwrap_err();
            let code = match &e {
                sqlx::Error::Database(d) => d.code().map(|c| c.into_owned()),
                _ => None,
            };
            codes.push((sql, code));
        }
        conn.close().await.unwrap();
        codes
    });
    for (sql, code) in denied {
        assert_eq!(code.as_deref(), Some("42501"), "{sql}");
    }
    let waiting = store
        .list(
            &JobFilter {
                limit: 10,
                ..JobFilter::default()
            },
            0,
        )
        .unwrap();
    assert_eq!(waiting.len(), 1);
    assert_eq!(waiting[0].state, JobState::Available);
}
