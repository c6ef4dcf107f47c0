//! The tables repository attacked through the real `tables-demo` plugin, on the machine's real
//! PostgreSQL and on real SQLite files: every leak class of issue 11 (sections 1-4) attempted,
//! each shown to fail with a typed error, and checked from outside (a superuser connection, the
//! files on disk) before and after that nothing leaked, persisted or changed.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::cell::Cell;
use std::sync::{PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use integration::*;
use plugin_host::{ManagerConfig, Overrides, PluginManager, PluginSettings, TablesConfig};
use serde_json::{Value, json};

/// The tests of this file run in parallel threads of one process. The two that measure the
/// process's memory run alone: every other test holds this lock shared while it runs.
static MEMORY: RwLock<()> = RwLock::new(());

thread_local! {
    /// Whether this thread already holds [`MEMORY`] (a test may build several backends).
    static HOLDS_MEMORY: Cell<bool> = const { Cell::new(false) };
}

/// This thread's hold on [`MEMORY`], released when the test's backend is dropped.
enum MemoryTurn {
    Shared(#[allow(dead_code, reason = "held for its drop")] RwLockReadGuard<'static, ()>),
    Alone(#[allow(dead_code, reason = "held for its drop")] RwLockWriteGuard<'static, ()>),
    /// Another backend of this thread holds it already.
    Nested,
}

impl MemoryTurn {
    fn shared() -> Self {
        if HOLDS_MEMORY.get() {
            return Self::Nested;
        }
        HOLDS_MEMORY.set(true);
        Self::Shared(MEMORY.read().unwrap_or_else(PoisonError::into_inner))
    }

    fn alone() -> Self {
        assert!(!HOLDS_MEMORY.get(), "a memory test builds one backend");
        HOLDS_MEMORY.set(true);
        Self::Alone(MEMORY.write().unwrap_or_else(PoisonError::into_inner))
    }
}

impl Drop for MemoryTurn {
    fn drop(&mut self) {
        if !matches!(self, Self::Nested) {
            HOLDS_MEMORY.set(false);
        }
    }
}

struct Backend {
    manager: PluginManager,
    pg: Option<PgDatabase>,
    dir: tempfile::TempDir,
    /// Dropped last, after the manager and its threads.
    _turn: MemoryTurn,
}

fn sqlite(config: ManagerConfig) -> Backend {
    sqlite_with(config, MemoryTurn::shared())
}

fn sqlite_with(config: ManagerConfig, turn: MemoryTurn) -> Backend {
    let dir = temp_dir();
    let manager = PluginManager::new(config.with_tables(TablesConfig::Sqlite {
        dir: dir.path().join("tables"),
    }))
    .unwrap();
    Backend {
        manager,
        pg: None,
        dir,
        _turn: turn,
    }
}

fn postgres(tag: &str, config: ManagerConfig) -> Backend {
    postgres_with(tag, config, MemoryTurn::shared())
}

fn postgres_with(tag: &str, config: ManagerConfig, turn: MemoryTurn) -> Backend {
    let db = PgDatabase::create(tag);
    let manager = PluginManager::new(config.with_tables(TablesConfig::Postgres {
        url: db.url.clone(),
        max_connections: 2,
    }))
    .unwrap();
    Backend {
        manager,
        pg: Some(db),
        dir: temp_dir(),
        _turn: turn,
    }
}

fn sql(m: &PluginManager, plugin: &str, sql: &str) -> Result<Value, plugin_host::Error> {
    m.execute(
        plugin,
        &json!({"op": "request", "request": {"op": "sql", "sql": sql}}),
    )
}

fn rows(m: &PluginManager, plugin: &str, statement: &str) -> Value {
    sql(m, plugin, statement).unwrap_or_else(|e| panic!("{statement}: {}", e.chain()))["rows"]
        .clone()
}

fn plugin_code(e: &plugin_host::Error) -> String {
    e.details()["plugin_code"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// A users table with `n` rows, filled by one statement (a recursive CTE on SQLite,
/// `generate_series` on PostgreSQL: both only read what the plugin may read).
fn users_with_rows(b: &Backend, plugin: &str, n: u32) {
    users_with_rows_on(&b.manager, b.pg.is_some(), plugin, n);
}

fn users_with_rows_on(m: &PluginManager, postgres: bool, plugin: &str, n: u32) {
    m.execute(
        plugin,
        &json!({"op": "request", "request": {"op": "create", "table": "users", "columns": [
            {"name": "id", "type": "integer", "primary_key": true},
            {"name": "email", "type": "text", "not_null": true}
        ]}}),
    )
    .unwrap();
    let fill = if postgres {
        format!(
            "INSERT INTO users (email) SELECT 'user' || g || '@example.com' FROM generate_series(1, {n}) AS g"
        )
    } else {
        format!(
            "INSERT INTO users (email) WITH RECURSIVE g(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM g WHERE i < {n}) SELECT 'user' || i || '@example.com' FROM g"
        )
    };
    sql(m, plugin, &fill).unwrap_or_else(|e| panic!("{fill}: {}", e.chain()));
    assert_eq!(
        rows(m, plugin, "SELECT count(*) AS n FROM users")[0]["n"],
        json!(n)
    );
}

/// What a superuser sees of everything a plugin could leave behind in the cluster.
fn pg_outside(pg: &PgDatabase, plugins: &[&str]) -> Vec<String> {
    let mut out = vec![
        pg.sql("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"),
        pg.sql("SELECT count(*) FROM pg_largeobject_metadata"),
        pg.sql("SELECT count(*) FROM pg_db_role_setting"),
        pg.sql(&format!(
            "SELECT count(*) FROM pg_stat_activity WHERE usename LIKE '{}.%' AND state <> 'idle'",
            pg.name
        )),
    ];
    for p in plugins {
        out.push(pg.plugin_sql(p, "SELECT count(*) FROM pg_largeobject_metadata"));
        out.push(pg.plugin_sql(
            p,
            "SELECT count(*) FROM pg_class WHERE relpersistence = 't'",
        ));
        out.push(pg.plugin_sql(
            p,
            "SELECT string_agg(nspname || '.' || relname, ',' ORDER BY nspname, relname) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')",
        ));
        out.push(pg.plugin_sql(
            p,
            "SELECT count(*) FROM pg_proc WHERE pronamespace <> 'pg_catalog'::regnamespace AND pronamespace <> 'information_schema'::regnamespace",
        ));
    }
    out
}

/// Section 1: a plugin's role reaches only its own space. Each statement is refused by the
/// database (or the parser in front of it), or answers only about the plugin's own objects;
/// a superuser checks the cluster before and after.
#[test]
fn postgres_plugin_reaches_only_its_own_database() {
    let b = postgres("reach", ManagerConfig::default());
    let (m, pg) = (&b.manager, b.pg.as_ref().unwrap());
    let first = Instant::now();
    m.load(plugin("tables-demo")).unwrap();
    let first = first.elapsed();
    m.unload("tables-demo", false).unwrap();
    let again = Instant::now();
    m.load(plugin("tables-demo")).unwrap();
    eprintln!(
        "load on PostgreSQL: first (creates and hardens the database) {first:?}, again {:?}",
        again.elapsed()
    );
    m.load(tables_plugin("other", "secrets", b.dir.path()))
        .unwrap();
    users_with_rows(&b, "tables-demo", 3);
    m.execute(
        "other",
        &json!({"op": "request", "request": {"op": "create", "table": "secrets", "columns": [
            {"name": "classified", "type": "text"}
        ]}}),
    )
    .unwrap();
    sql(m, "other", "INSERT INTO secrets VALUES ('top-secret')").unwrap();
    let other_role = pg.plugin_db("other");
    let settings_before = rows(
        m,
        "tables-demo",
        "SELECT current_setting('search_path') AS s, current_setting('statement_timeout') AS t, current_setting('application_name') AS a",
    );
    let before = pg_outside(pg, &["tables-demo", "other"]);

    // Names of other plugins' schemas, tables, columns, roles; other sessions; statistics.
    let reads = [
        "SELECT nspname FROM pg_namespace",
        "SELECT relname FROM pg_class",
        "SELECT attname FROM pg_attribute",
        "SELECT table_schema, table_name FROM information_schema.tables",
        "SELECT table_name, column_name FROM information_schema.columns",
        "SELECT schema_name FROM information_schema.schemata",
        "SELECT rolname FROM pg_roles",
        "SELECT usename FROM pg_user",
        "SELECT grantee FROM information_schema.role_table_grants",
        "SELECT datname FROM pg_database",
        "SELECT spcname FROM pg_tablespace",
        "SELECT usename, datname FROM pg_stat_activity",
        "SELECT relname FROM pg_stat_all_tables",
        "SELECT relname FROM pg_stat_user_tables",
        "SELECT datname FROM pg_stat_database",
        "SELECT locktype, objid::text FROM pg_locks",
        "SELECT query_to_xml('SELECT rolname FROM pg_roles', true, true, '')::text AS x",
        "SELECT query_to_xml('SELECT datname FROM pg_database', true, true, '')::text AS x",
        "SELECT database_to_xml(true, true, '')::text AS x",
        "SELECT pg_get_userbyid(oid) AS r FROM generate_series(1, 20000) AS oid",
        "SELECT pg_stat_get_backend_userid(b)::text AS u FROM pg_stat_get_backend_idset() AS b",
        "SELECT pg_database_size('postgres')::text AS s",
        "SELECT sum(n_live_tup)::text AS n FROM pg_stat_all_tables",
    ];
    for statement in reads {
        match sql(m, "tables-demo", statement) {
            Ok(out) => {
                let text = out.to_string();
                for secret in [
                    "secrets",
                    "classified",
                    "p_other",
                    other_role.as_str(),
                    "top-secret",
                ] {
                    assert!(!text.contains(secret), "{statement} shows {secret}: {text}");
                }
            }
            Err(e) => assert!(
                ["sql_access_denied", "table_access_denied", "bad_request"]
                    .contains(&plugin_code(&e).as_str()),
                "{statement}: {}",
                e.chain()
            ),
        }
    }
    // Objects that would outlive the call, signals and locks that reach other plugins,
    // settings the next call would inherit: all refused.
    let writes = [
        "SELECT 1 AS a INTO TEMP leaked",
        "SELECT 1 AS a INTO TEMPORARY TABLE leaked",
        "CREATE TEMP TABLE leaked (a int)",
        "DO $$ BEGIN CREATE TEMP TABLE leaked (a int); END $$",
        "DO $$ BEGIN PERFORM pg_advisory_lock(42); END $$",
        "SELECT lo_create(0)",
        "SELECT lo_creat(-1)",
        "SELECT lo_from_bytea(0, 'x'::bytea)",
        "SELECT lo_import('/etc/hostname')",
        "SELECT pg_notify('plugins', 'hello')",
        "NOTIFY plugins, 'hello'",
        "LISTEN plugins",
        "SELECT pg_advisory_lock(42)",
        "SELECT pg_try_advisory_lock(42)",
        "SELECT pg_advisory_lock_shared(42)",
        "SELECT pg_try_advisory_xact_lock(42)",
        "SELECT set_config('search_path', 'public', false)",
        "SELECT set_config('statement_timeout', '0', false)",
        "SELECT set_config('application_name', 'hijacked', false)",
        "SET search_path = public",
        "SET statement_timeout = 0",
        "BEGIN",
        "ALTER ROLE CURRENT_USER SET work_mem = '64kB'",
        "ALTER ROLE CURRENT_USER PASSWORD 'mine'",
        "ALTER USER CURRENT_USER SET statement_timeout = 0",
        // PostgreSQL ends a `--` comment at a carriage return: the ALTER is what it runs, the
        // SELECT after the line feed sits in a block comment.
        "--x\rALTER USER CURRENT_USER SET work_mem = '64kB' /*\nSELECT */",
        "--x\rALTER USER CURRENT_USER PASSWORD 'mine' /*\nSELECT */",
        "SELECT pg_cancel_backend(pid) FROM generate_series(1, 100000) AS pid",
    ];
    for statement in writes {
        let e = sql(m, "tables-demo", statement)
            .err()
            .unwrap_or_else(|| panic!("{statement} succeeded"));
        assert!(
            ["sql_access_denied", "table_access_denied", "bad_request"]
                .contains(&plugin_code(&e).as_str()),
            "{statement}: {}",
            e.chain()
        );
    }
    // One plugin cannot block another: the other's advisory lock is refused too, not taken.
    let e = sql(m, "other", "SELECT pg_try_advisory_lock(42)").unwrap_err();
    assert_eq!(plugin_code(&e), "sql_access_denied", "{}", e.chain());

    // From outside: nothing left behind, nothing changed.
    assert_eq!(pg_outside(pg, &["tables-demo", "other"]), before);
    assert_eq!(
        pg.plugin_sql("other", "SELECT classified FROM \"p_other\".secrets"),
        "top-secret"
    );
    // The next call starts with the settings it always had.
    assert_eq!(
        rows(
            m,
            "tables-demo",
            "SELECT current_setting('search_path') AS s, current_setting('statement_timeout') AS t, current_setting('application_name') AS a",
        ),
        settings_before
    );
    // Ordinary SQL and the typed API keep working.
    assert_eq!(
        rows(m, "tables-demo", "SELECT * FROM generate_series(1, 3)"),
        json!([{"generate_series": 1}, {"generate_series": 2}, {"generate_series": 3}])
    );
    assert_eq!(
        rows(
            m,
            "tables-demo",
            "SELECT u.email FROM users u JOIN generate_series(1, 2) AS g(i) ON u.id = g.i ORDER BY u.id"
        ),
        json!([{"email": "user1@example.com"}, {"email": "user2@example.com"}])
    );
    let typed = |request: Value| {
        m.execute("tables-demo", &json!({"op": "request", "request": request}))
            .unwrap()
    };
    typed(json!({"op": "insert", "table": "users", "row": {"email": "typed@example.com"}}));
    assert_eq!(
        typed(json!({"op": "count", "table": "users", "filter": []}))["count"],
        4
    );
}

/// Section 4: a database permission error is a typed denial naming the object.
#[test]
fn postgres_denials_name_the_object() {
    let b = postgres("denials", ManagerConfig::default());
    let m = &b.manager;
    m.load(plugin("tables-demo")).unwrap();
    for (statement, kind, name) in [
        ("SELECT lo_create(0)", "function", "lo_create"),
        // A superuser-only setting: the setting, not the database's sentence, is named.
        (
            "SELECT current_setting('data_directory') AS x",
            "setting",
            "data_directory",
        ),
        // `TABLE x` names no relation the parser reports: the database refuses it.
        ("TABLE pg_roles", "view", "pg_roles"),
        (
            "SELECT * FROM pg_stat_get_activity(NULL)",
            "function",
            "pg_stat_get_activity",
        ),
        (
            "SELECT 1 AS a INTO TEMP t",
            "temporary tables in database",
            &b.pg.as_ref().unwrap().plugin_db("tables-demo"),
        ),
    ] {
        let e = sql(m, "tables-demo", statement).unwrap_err();
        assert_eq!(
            plugin_code(&e),
            "sql_access_denied",
            "{statement}: {}",
            e.chain()
        );
        let text = e.to_string();
        assert!(
            text.contains(&format!("may not use {kind} `{name}`")),
            "{statement}: {text}"
        );
    }
    let denied = m.get("tables-demo").unwrap().stats.tables_denied;
    assert!(denied >= 4, "database denials are counted: {denied}");
}

/// Section 2 on PostgreSQL: the statement of a call that timed out is cancelled on the
/// server, and the plugin is free again within a second.
#[test]
fn postgres_timed_out_statements_are_cancelled_on_the_server() {
    let b = postgres(
        "cancel",
        ManagerConfig::default().with_execute_timeout(Duration::from_secs(1)),
    );
    let (m, pg) = (&b.manager, b.pg.as_ref().unwrap());
    m.load(plugin("tables-demo")).unwrap();
    let role = pg.plugin_db("tables-demo");
    let running = || {
        pg.sql(&format!(
            "SELECT count(*) FROM pg_stat_activity WHERE usename = '{role}' AND state = 'active' AND query LIKE '%pg_sleep%'"
        ))
    };
    for input in [
        json!({"op": "sql", "sql": "SELECT pg_sleep(30)::text AS s"}),
        // A call that keeps starting statements after its deadline.
        json!({"op": "repeat", "sql": "SELECT pg_sleep(0.2)::text AS s", "times": 1000}),
    ] {
        let e = m.execute("tables-demo", &input).unwrap_err();
        assert_eq!(e.code().as_str(), "timeout", "{}", e.chain());
        let timed_out = Instant::now();
        // From outside: the statement leaves pg_stat_activity.
        while running() != "0" && timed_out.elapsed() < Duration::from_secs(3) {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(running(), "0", "{input}: still running on the server");
        eprintln!(
            "{input}: gone from pg_stat_activity {:?} after the timeout",
            timed_out.elapsed()
        );
        // The plugin answers its next call (queued behind the timed-out one) within 1 s.
        let out = rows(m, "tables-demo", "SELECT 1 AS one");
        let free_after = timed_out.elapsed();
        eprintln!("{input}: the next call answered {free_after:?} after the timeout");
        assert_eq!(out, json!([{"one": 1}]));
        assert!(
            free_after < Duration::from_secs(1),
            "{input}: the plugin was busy for {free_after:?} after the timeout"
        );
    }
}

/// Section 2 on SQLite: a huge join of a call that timed out is interrupted.
#[test]
fn sqlite_timed_out_statements_are_interrupted() {
    let b = sqlite(ManagerConfig::default().with_execute_timeout(Duration::from_secs(1)));
    let m = &b.manager;
    m.load(plugin("tables-demo")).unwrap();
    users_with_rows(&b, "tables-demo", 4096);
    for input in [
        json!({"op": "sql", "sql": "SELECT count(*) AS n FROM users a, users b, users c"}),
        json!({"op": "repeat", "sql": "SELECT count(*) AS n FROM users a, users b", "times": 100000}),
    ] {
        let e = m.execute("tables-demo", &input).unwrap_err();
        assert_eq!(e.code().as_str(), "timeout", "{}", e.chain());
        let timed_out = Instant::now();
        let out = rows(m, "tables-demo", "SELECT 1 AS one");
        let free_after = timed_out.elapsed();
        eprintln!("{input}: the next call answered {free_after:?} after the timeout");
        assert_eq!(out, json!([{"one": 1}]));
        assert!(
            free_after < Duration::from_secs(1),
            "{input}: the plugin was busy for {free_after:?} after the timeout"
        );
    }
}

/// The resident set of this process (the host runs embedded), in MiB.
fn rss_mib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kb / 1024
}

/// Section 2: a cross join of a 4,096-row table (16.7 million rows) stops at the row limit
/// while it streams in, with a typed error naming the limit; memory stays bounded.
fn results_are_capped(b: &Backend) {
    let m = &b.manager;
    m.load(plugin("tables-demo")).unwrap();
    users_with_rows(b, "tables-demo", 4096);
    let before = rss_mib();
    let started = Instant::now();
    let e = sql(
        m,
        "tables-demo",
        "SELECT a.email AS a, b.email AS b FROM users a CROSS JOIN users b",
    )
    .unwrap_err();
    let after = rss_mib();
    eprintln!(
        "cross join refused after {:?}; RSS {before} MiB -> {after} MiB",
        started.elapsed()
    );
    assert_eq!(plugin_code(&e), "result_too_large", "{}", e.chain());
    assert!(e.to_string().contains("limits.tables_max_rows"), "{e}");
    assert!(
        after.saturating_sub(before) < 100,
        "RSS grew from {before} MiB to {after} MiB"
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the rest of the result was not read: {:?}",
        started.elapsed()
    );
    // Under the limits, results come back whole, and the session is usable.
    assert_eq!(
        rows(m, "tables-demo", "SELECT count(*) AS n FROM users")[0]["n"],
        4096
    );
    assert_eq!(
        rows(m, "tables-demo", "SELECT email FROM users ORDER BY id")
            .as_array()
            .unwrap()
            .len(),
        4096
    );
}

#[test]
fn results_are_capped_on_sqlite() {
    results_are_capped(&sqlite_with(ManagerConfig::default(), MemoryTurn::alone()));
}

#[test]
fn results_are_capped_on_postgres() {
    results_are_capped(&postgres_with(
        "caps",
        ManagerConfig::default(),
        MemoryTurn::alone(),
    ));
}

/// The byte limit applies on its own, and both limits are configurable.
#[test]
fn the_byte_limit_names_itself() {
    for b in [
        sqlite(ManagerConfig::default().with_table_result_limits(1_000_000, 64 * 1024)),
        postgres(
            "bytes",
            ManagerConfig::default().with_table_result_limits(1_000_000, 64 * 1024),
        ),
    ] {
        let m = &b.manager;
        m.load(plugin("tables-demo")).unwrap();
        users_with_rows(&b, "tables-demo", 4096);
        let e = sql(m, "tables-demo", "SELECT email FROM users").unwrap_err();
        assert_eq!(plugin_code(&e), "result_too_large", "{}", e.chain());
        assert!(e.to_string().contains("limits.tables_max_bytes"), "{e}");
        assert_eq!(
            rows(m, "tables-demo", "SELECT email FROM users LIMIT 10")
                .as_array()
                .unwrap()
                .len(),
            10
        );
    }
}

/// Section 1 with overrides on PostgreSQL: the plugin's database holds a table its overrides no
/// longer allow. Its identity sequence is out of reach too (`nextval` would disturb the table's
/// future ids); the sequences of allowed tables keep working. Checked from outside.
#[test]
fn postgres_sequences_of_disallowed_tables_are_out_of_reach() {
    let b = postgres("sequences", ManagerConfig::default());
    let (m, pg) = (&b.manager, b.pg.as_ref().unwrap());
    m.load(plugin("tables-demo")).unwrap();
    let both: Overrides = serde_json::from_value(json!({"tables": ["users", "secrets"]})).unwrap();
    m.set_settings("tables-demo", Some(PluginSettings::new(None, Some(both))))
        .unwrap();
    m.execute(
        "tables-demo",
        &json!({"op": "request", "request": {"op": "create", "table": "secrets", "columns": [
            {"name": "id", "type": "integer", "primary_key": true},
            {"name": "classified", "type": "text"}
        ]}}),
    )
    .unwrap();
    sql(
        m,
        "tables-demo",
        "INSERT INTO secrets (classified) VALUES ('a')",
    )
    .unwrap();
    let sequence = pg.plugin_sql(
        "tables-demo",
        "SELECT pg_get_serial_sequence('\"p_tables-demo\".secrets', 'id')",
    );
    assert!(!sequence.is_empty(), "secrets has an identity sequence");
    let last_value = || pg.plugin_sql("tables-demo", &format!("SELECT last_value FROM {sequence}"));
    let only_users: Overrides = serde_json::from_value(json!({"tables": ["users"]})).unwrap();
    m.set_settings(
        "tables-demo",
        Some(PluginSettings::new(None, Some(only_users))),
    )
    .unwrap();
    users_with_rows(&b, "tables-demo", 3);
    let before = last_value();
    let unqualified = sequence.rsplit('.').next().unwrap().trim_matches('"');
    for statement in [
        format!("SELECT nextval('{sequence}') AS n"),
        format!("SELECT nextval('{unqualified}') AS n"),
        format!("SELECT setval('{unqualified}', 1000) AS n"),
        format!("SELECT last_value FROM {unqualified}"),
    ] {
        let e = sql(m, "tables-demo", &statement).unwrap_err();
        assert!(
            ["sql_access_denied", "table_access_denied"].contains(&plugin_code(&e).as_str()),
            "{statement}: {}",
            e.chain()
        );
    }
    assert_eq!(last_value(), before, "the disallowed sequence did not move");
    // The allowed table's own sequence still works: a new row gets the next id.
    sql(
        m,
        "tables-demo",
        "INSERT INTO users (email) VALUES ('next@example.com')",
    )
    .unwrap();
    assert_eq!(
        rows(
            m,
            "tables-demo",
            "SELECT id FROM users WHERE email = 'next@example.com'"
        )[0]["id"],
        json!(4)
    );
}

/// Section 3: the plugin's file holds a table its overrides no longer allow. Its schema is
/// not readable through the schema tables in any spelling, nor through pragmas.
#[test]
fn sqlite_schema_of_disallowed_tables_is_hidden() {
    let b = sqlite(ManagerConfig::default());
    let m = &b.manager;
    m.load(plugin("tables-demo")).unwrap();
    let both: Overrides = serde_json::from_value(json!({"tables": ["users", "secrets"]})).unwrap();
    m.set_settings("tables-demo", Some(PluginSettings::new(None, Some(both))))
        .unwrap();
    m.execute(
        "tables-demo",
        &json!({"op": "request", "request": {"op": "create", "table": "secrets", "columns": [
            {"name": "classified_column", "type": "text"}
        ]}}),
    )
    .unwrap();
    sql(
        m,
        "tables-demo",
        "INSERT INTO secrets VALUES ('top-secret')",
    )
    .unwrap();
    let only_users: Overrides = serde_json::from_value(json!({"tables": ["users"]})).unwrap();
    m.set_settings(
        "tables-demo",
        Some(PluginSettings::new(None, Some(only_users))),
    )
    .unwrap();
    users_with_rows(&b, "tables-demo", 2);
    let file = b.dir.path().join("tables").join("tables-demo.sqlite3");
    let schema = || {
        let conn = rusqlite::Connection::open(&file).unwrap();
        let mut stmt = conn
            .prepare("SELECT name, sql FROM sqlite_master ORDER BY name")
            .unwrap();
        stmt.query_map([], |r| {
            Ok(format!(
                "{}: {}",
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?
            ))
        })
        .unwrap()
        .collect::<rusqlite::Result<Vec<_>>>()
        .unwrap()
    };
    let before = schema();
    assert!(
        before.iter().any(|s| s.contains("classified_column")),
        "{before:?}"
    );
    for statement in [
        "SELECT sql FROM sqlite_master",
        "SELECT sql FROM SQLITE_MASTER",
        "SELECT sql FROM \"sqlite_master\"",
        "SELECT sql FROM [sqlite_master]",
        "SELECT sql FROM `sqlite_schema`",
        "SELECT sql FROM Sqlite_Schema",
        "SELECT sql FROM main.sqlite_master",
        "SELECT sql FROM \"main\".\"SQLITE_SCHEMA\"",
        "SELECT sql FROM sqlite_temp_master",
        "SELECT sql FROM temp.sqlite_schema",
        "SELECT * FROM (SELECT sql FROM sqlite_master)",
        "WITH s AS (SELECT sql FROM sqlite_schema) SELECT * FROM s",
        "SELECT (SELECT group_concat(sql) FROM sqlite_schema) AS s",
        "SELECT email FROM users WHERE email IN (SELECT sql FROM sqlite_master)",
        "SELECT * FROM pragma_table_info('secrets')",
        "SELECT * FROM PRAGMA_TABLE_XINFO('secrets')",
        "SELECT * FROM main.pragma_table_info('secrets')",
        "SELECT * FROM pragma_table_list",
        "SELECT * FROM pragma_table_list()",
        "SELECT name FROM pragma_index_list('secrets')",
        "SELECT * FROM pragma_table_info('sqlite_master')",
        "PRAGMA table_info(secrets)",
        "PRAGMA main.table_info('secrets')",
        "SELECT * FROM secrets",
    ] {
        match sql(m, "tables-demo", statement) {
            Ok(out) => panic!("{statement} succeeded: {out}"),
            Err(e) => {
                assert!(
                    ["sql_access_denied", "table_access_denied", "bad_request"]
                        .contains(&plugin_code(&e).as_str()),
                    "{statement}: {}",
                    e.chain()
                );
                let text = e.chain();
                assert!(
                    !text.contains("classified_column") && !text.contains("CREATE TABLE"),
                    "{statement} leaked in its error: {text}"
                );
            }
        }
    }
    // The plugin's own table still works, a recursive CTE over it included; the file's
    // schema is unchanged.
    assert_eq!(
        rows(
            m,
            "tables-demo",
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < (SELECT count(*) FROM users)) SELECT i FROM n"
        ),
        json!([{"i": 1}, {"i": 2}])
    );
    assert_eq!(
        rows(m, "tables-demo", "SELECT value FROM json_each('[1, 2]')"),
        json!([{"value": 1}, {"value": 2}])
    );
    assert_eq!(schema(), before);
}

/// Section 4: literals, comments and identifiers reach the database byte for byte.
fn literals_pass_unchanged(b: &Backend) {
    let m = &b.manager;
    m.load(plugin("tables-demo")).unwrap();
    users_with_rows(b, "tables-demo", 2);
    let mut cases = vec![
        ("SELECT 'a''''b' AS v", json!("a''b")),
        ("SELECT 'it''s' AS v", json!("it's")),
        ("SELECT /* users */ 'x' AS v -- users", json!("x")),
        ("SELECT 'users' AS v FROM users LIMIT 1", json!("users")),
        (
            "SELECT 'FROM users' AS \"Mixed \"\"Case\"\"\" FROM users LIMIT 1",
            json!("FROM users"),
        ),
    ];
    if b.pg.is_some() {
        cases.extend([
            ("SELECT $$a'b''c$$ AS v", json!("a'b''c")),
            ("SELECT $q$ $$ users $$ $q$ AS v", json!(" $$ users $$ ")),
            ("SELECT E'a\\'b\\\\c' AS v", json!("a'b\\c")),
            ("SELECT U&'\\0041' AS v", json!("A")),
        ]);
    }
    for (statement, want) in cases {
        let out = rows(m, "tables-demo", statement);
        let got = out[0]
            .as_object()
            .unwrap()
            .values()
            .next()
            .cloned()
            .unwrap();
        assert_eq!(got, want, "{statement}");
    }
    let out = rows(
        m,
        "tables-demo",
        "SELECT 'FROM users' AS \"Mixed \"\"Case\"\"\" FROM users LIMIT 1",
    );
    assert!(out[0].get("Mixed \"Case\"").is_some(), "{out}");
}

#[test]
fn literals_pass_unchanged_on_sqlite() {
    literals_pass_unchanged(&sqlite(ManagerConfig::default()));
}

#[test]
fn literals_pass_unchanged_on_postgres() {
    literals_pass_unchanged(&postgres("literals", ManagerConfig::default()));
}

/// The reset on release, shown by giving the plugin's role back what the hardening took
/// (`set_config`, from outside): settings it changes and a transaction it leaves open reach
/// neither its next statement nor its next call.
#[test]
fn postgres_session_state_does_not_reach_the_next_statement() {
    let b = postgres("reset", ManagerConfig::default());
    let (m, pg) = (&b.manager, b.pg.as_ref().unwrap());
    m.load(plugin("tables-demo")).unwrap();
    let role = pg.plugin_db("tables-demo");
    let show = "SELECT current_setting('search_path') AS s, current_setting('statement_timeout') AS t, current_setting('work_mem') AS w";
    let before = rows(m, "tables-demo", show);
    pg.plugin_sql(
        "tables-demo",
        &format!(r#"GRANT EXECUTE ON FUNCTION set_config(text, text, boolean) TO "{role}""#),
    );
    // Both connections of the pool get their turn.
    for _ in 0..4 {
        let changed = rows(
            m,
            "tables-demo",
            "SELECT set_config('search_path', 'public', false) AS a, set_config('statement_timeout', '0', false) AS b, set_config('work_mem', '64kB', false) AS c",
        );
        assert_eq!(changed[0]["c"], "64kB", "the grant took effect: {changed}");
        assert_eq!(rows(m, "tables-demo", show), before);
    }
    pg.plugin_sql(
        "tables-demo",
        &format!(r#"REVOKE EXECUTE ON FUNCTION set_config(text, text, boolean) FROM "{role}""#),
    );
    // From outside: no session of the plugin is left in a transaction or with a setting.
    assert_eq!(
        pg.sql(&format!(
            "SELECT count(*) FROM pg_stat_activity WHERE usename = '{role}' AND state LIKE 'idle in transaction%'"
        )),
        "0"
    );
}

/// Several hosts on one admin database (and parallel setups) share a plugin's database: its
/// creation and hardening are idempotent and safe when they race.
#[test]
fn postgres_hosts_racing_on_one_plugin_share_its_database() {
    let db = PgDatabase::create("race");
    let hosts: Vec<PluginManager> = (0..3)
        .map(|_| {
            PluginManager::new(
                ManagerConfig::default().with_tables(TablesConfig::Postgres {
                    url: db.url.clone(),
                    max_connections: 2,
                }),
            )
            .unwrap()
        })
        .collect();
    std::thread::scope(|s| {
        for m in &hosts {
            s.spawn(move || m.load(plugin("tables-demo")).unwrap());
        }
    });
    users_with_rows_on(&hosts[0], true, "tables-demo", 3);
    for m in &hosts {
        assert_eq!(
            rows(m, "tables-demo", "SELECT count(*) AS n FROM users")[0]["n"],
            3
        );
    }
    let name = db.plugin_db("tables-demo");
    assert_eq!(
        db.sql(&format!(
            "SELECT count(*) FROM pg_database WHERE datname = '{name}'"
        )),
        "1"
    );
    // A plugin database dropped behind the hosts' back is made and hardened again.
    for m in &hosts {
        m.unload("tables-demo", false).unwrap();
    }
    db.sql(&format!(r#"DROP DATABASE "{name}" WITH (FORCE)"#));
    hosts[0].load(plugin("tables-demo")).unwrap();
    assert_eq!(
        db.plugin_sql(
            "tables-demo",
            &format!("SELECT has_function_privilege('{name}', 'lo_create(oid)', 'EXECUTE'), has_language_privilege('{name}', 'plpgsql', 'USAGE'), has_database_privilege('{name}', '{name}', 'TEMP')")
        ),
        "f|f|f"
    );
}

/// The resident set of process `pid`, in MiB.
fn rss_of(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .unwrap()
        / 1024
}

/// Section 2 over HTTP, against a `plugin-host serve` process on SQLite: the cross join is
/// refused with the typed error (the server's memory stays bounded), and a call that answered
/// 504 leaves the plugin free for the next one within a second.
#[test]
fn serve_caps_results_and_frees_timed_out_plugins() {
    let mut s = Server::start(&[], &[("PLUGIN_HOST_EXECUTE_TIMEOUT_MS", "1000")]);
    let pid = s.pid();
    let (st, out) = s.call(
        "POST",
        "/api/v1/plugins",
        Some(json!({"path": plugin("tables-demo").to_string_lossy()})),
    );
    assert_eq!(st, 201, "{out}");
    let execute = |input: Value| s.call("POST", "/api/v1/plugins/tables-demo/execute", Some(input));
    let raw = |sql: &str| execute(json!({"op": "request", "request": {"op": "sql", "sql": sql}}));
    let (st, out) = execute(
        json!({"op": "request", "request": {"op": "create", "table": "users", "columns": [
            {"name": "id", "type": "integer", "primary_key": true},
            {"name": "email", "type": "text", "not_null": true}
        ]}}),
    );
    assert_eq!(st, 200, "{out}");
    let (st, out) = raw(
        "INSERT INTO users (email) WITH RECURSIVE g(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM g WHERE i < 4096) SELECT 'user' || i || '@example.com' FROM g",
    );
    assert_eq!(st, 200, "{out}");

    let before = rss_of(pid);
    let (st, out) = raw("SELECT a.email AS a, b.email AS b FROM users a CROSS JOIN users b");
    let after = rss_of(pid);
    eprintln!("serve: cross join answered {st}; server RSS {before} MiB -> {after} MiB");
    assert_eq!(st, 422, "{out}");
    assert_eq!(
        out["error"]["details"]["plugin_code"], "result_too_large",
        "{out}"
    );
    assert!(
        after.saturating_sub(before) < 100,
        "server RSS grew from {before} MiB to {after} MiB"
    );

    let (st, out) = raw("SELECT count(*) AS n FROM users a, users b, users c");
    assert_eq!(st, 504, "{out}");
    let timed_out = Instant::now();
    let (st, out) = raw("SELECT 1 AS one");
    let free_after = timed_out.elapsed();
    assert_eq!(st, 200, "{out}");
    assert_eq!(out["output"]["rows"], json!([{"one": 1}]));
    assert!(
        free_after < Duration::from_secs(1),
        "the plugin was busy for {free_after:?} after the 504"
    );
    s.stop();
}

/// The peak resident set (`VmHWM`) of process `pid`, in MiB: it never goes down, so a value
/// built and freed within one call still shows.
fn peak_rss_of(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .unwrap()
        / 1024
}

/// Section 2, one huge value: the byte limit (1 MiB here) bounds a single string or blob too,
/// also one that is never returned, before SQLite builds it in the server's memory (one row of
/// `zeroblob(150 MB)` used to cost the server its size plus twice that as hex).
#[test]
fn serve_bounds_one_huge_value_on_sqlite() {
    let mut s = Server::start(&[], &[("PLUGIN_HOST_TABLES_MAX_BYTES", "1048576")]);
    let pid = s.pid();
    let (st, out) = s.call(
        "POST",
        "/api/v1/plugins",
        Some(json!({"path": plugin("tables-demo").to_string_lossy()})),
    );
    assert_eq!(st, 201, "{out}");
    let raw = |sql: &str| {
        s.call(
            "POST",
            "/api/v1/plugins/tables-demo/execute",
            Some(json!({"op": "request", "request": {"op": "sql", "sql": sql}})),
        )
    };
    let (st, out) = raw("SELECT 1 AS one");
    assert_eq!(st, 200, "{out}");
    let before = peak_rss_of(pid);
    for statement in [
        "SELECT zeroblob(150000000) AS b",
        "SELECT length(hex(randomblob(150000000))) AS n",
        "WITH RECURSIVE r(s) AS (SELECT 'x' UNION ALL SELECT s || s FROM r WHERE length(s) < 200000000) SELECT max(length(s)) AS n FROM r",
    ] {
        let (st, out) = raw(statement);
        assert_eq!(st, 422, "{statement}: {out}");
        assert_eq!(
            out["error"]["details"]["plugin_code"], "result_too_large",
            "{statement}: {out}"
        );
        assert!(
            out["error"]["message"]
                .as_str()
                .unwrap_or_default()
                .contains("limits.tables_max_bytes"),
            "{statement}: {out}"
        );
    }
    let after = peak_rss_of(pid);
    eprintln!("serve: huge values refused; server peak RSS {before} MiB -> {after} MiB");
    assert!(
        after.saturating_sub(before) < 100,
        "server peak RSS grew from {before} MiB to {after} MiB"
    );
    // Values under the limit still work.
    let (st, out) = raw("SELECT length(hex(zeroblob(1000))) AS n");
    assert_eq!(st, 200, "{out}");
    assert_eq!(out["output"]["rows"], json!([{"n": 2000}]));
    s.stop();
}
