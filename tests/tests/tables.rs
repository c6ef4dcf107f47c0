//! The tables repository through real plugins, on SQLite (one file per plugin, authorizer) and
//! on the machine's real PostgreSQL (a database, role, schema and pool per plugin): the typed API, raw
//! SQL, every escape we know of (each must fail with a typed error and change nothing),
//! collision-free naming, overrides, pools closed on unload.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::path::Path;

use integration::*;
use plugin_host::{ManagerConfig, Overrides, PluginManager, PluginSettings, TablesConfig};
use serde_json::{Value, json};

/// A backend under test: a manager configured for it, and a way to look at the data directly.
struct Backend {
    manager: PluginManager,
    pg: Option<PgDatabase>,
    _dir: tempfile::TempDir,
}

fn sqlite() -> Backend {
    let dir = temp_dir();
    let manager = PluginManager::new(ManagerConfig::default().with_tables(TablesConfig::Sqlite {
        dir: dir.path().join("tables"),
    }))
    .unwrap();
    Backend {
        manager,
        pg: None,
        _dir: dir,
    }
}

fn postgres(tag: &str) -> Backend {
    let db = PgDatabase::create(tag);
    let manager = PluginManager::new(ManagerConfig::default().with_tables(
        TablesConfig::Postgres {
            url: db.url.clone(),
            max_connections: 2,
        },
    ))
    .unwrap();
    Backend {
        manager,
        pg: Some(db),
        _dir: temp_dir(),
    }
}

fn request(m: &PluginManager, plugin: &str, req: Value) -> Result<Value, plugin_host::Error> {
    m.execute(plugin, &json!({"op": "request", "request": req}))
}

fn sql(m: &PluginManager, plugin: &str, sql: &str) -> Result<Value, plugin_host::Error> {
    request(m, plugin, json!({"op": "sql", "sql": sql}))
}

fn create_users(m: &PluginManager, plugin: &str, table: &str) {
    request(
        m,
        plugin,
        json!({"op": "create", "table": table, "columns": [
            {"name": "id", "type": "integer", "primary_key": true},
            {"name": "email", "type": "text", "not_null": true}
        ]}),
    )
    .unwrap();
}

fn typed_api_round_trips(b: &Backend) {
    let m = &b.manager;
    m.load(plugin("tables-demo")).unwrap();
    let out = m.execute("tables-demo", &json!({"op": "demo"})).unwrap();
    assert_eq!(out["inserted"]["email"], "ada@example.com");
    assert!(
        out["inserted"]["id"].as_i64().unwrap() >= 1,
        "generated key returned: {out}"
    );
    assert_eq!(
        out["inserted"]["meta"]["lang"], "en",
        "json column round-trips: {out}"
    );
    assert_eq!(
        out["adults"],
        json!([{"email": "grace@example.com", "age": 45}])
    );
    assert_eq!(out["updated"], 1);
    assert_eq!(out["nulls"], 1);
    assert_eq!(out["like"], 3);
    assert_eq!(out["listed"], 1);
    assert_eq!(
        out["raw"],
        json!([{"email": "ada@example.com"}, {"email": "grace@example.com"}])
    );
    assert_eq!(out["deleted"], 1);
    assert_eq!(out["total"], 2);
    let e = m
        .execute("tables-demo", &json!({"op": "demo"}))
        .unwrap_err();
    assert_eq!(
        e.details()["plugin_code"],
        "sql_error",
        "unique violation is a typed error: {e}"
    );
}

#[test]
fn typed_api_round_trips_on_sqlite() {
    typed_api_round_trips(&sqlite());
}

#[test]
fn typed_api_round_trips_on_postgres() {
    let b = postgres("typed");
    typed_api_round_trips(&b);
    // A plugin with a `-` in its name works: its schema is "p_tables-demo".
    let info = b.manager.get("tables-demo").unwrap();
    assert_eq!(info.physical.tables["users"], r#""p_tables-demo"."users""#);
    let pg = b.pg.as_ref().unwrap();
    assert_eq!(
        pg.plugin_sql(
            "tables-demo",
            r#"SELECT count(*) FROM "p_tables-demo".users"#
        ),
        "2"
    );
}

/// Every escape of the issue, and more: each fails with a typed error and changes nothing.
fn escapes_fail_and_change_nothing(b: &Backend, dir: &Path) {
    let m = &b.manager;
    m.load(plugin("tables-demo")).unwrap();
    create_users(m, "tables-demo", "users");
    sql(
        m,
        "tables-demo",
        "INSERT INTO users (email) VALUES ('mine@example.com')",
    )
    .unwrap();
    // Another plugin's table `secrets`, with data.
    m.load(tables_plugin("other", "secrets", dir)).unwrap();
    create_users(m, "other", "secrets");
    sql(
        m,
        "other",
        "INSERT INTO secrets (email) VALUES ('top-secret')",
    )
    .unwrap();
    if let Some(pg) = &b.pg {
        pg.sql("CREATE TABLE public.secrets (email text); INSERT INTO public.secrets VALUES ('public-secret')");
    }
    let physical_other = m.get("other").unwrap().physical.tables["secrets"].clone();

    let mut attacks: Vec<String> = [
        "SELECT * FROM secrets",
        "SELECT * FROM users, secrets",
        r#"SELECT * FROM "secrets""#,
        "SELECT * FROM/**/secrets",
        "SELECT * FROM (secrets CROSS JOIN users)",
        "SELECT 1; TRUNCATE other",
        "SELECT * FROM pg_catalog.pg_authid",
        "RESET ROLE; SELECT * FROM secrets",
        "COPY secrets TO STDOUT",
        "SELECT pg_read_file('/etc/passwd')",
        "CREATE TABLE pg_shared(x int)",
        "ATTACH DATABASE 'other.sqlite3' AS o",
        "SELECT * FROM users WHERE id IN (SELECT id FROM secrets)",
        "INSERT INTO users (email) SELECT email FROM secrets",
        "WITH x AS (DELETE FROM secrets RETURNING *) SELECT * FROM x",
        "DELETE FROM secrets",
        "UPDATE secrets SET email = 'pwned'",
        "DROP TABLE users",
        "TRUNCATE users",
        "ALTER TABLE users ADD COLUMN pwned int",
        "SET ROLE postgres",
        "SELECT * FROM public.secrets",
        "SELECT * FROM main.secrets",
        "SELECT * FROM sqlite_master WHERE name = 'secrets'",
        "PRAGMA table_info(secrets)",
        "SELECT set_config('search_path', 'public', false)",
        "SELECT lo_import('/etc/passwd')",
        "CREATE FUNCTION f() RETURNS int AS 'SELECT 1' LANGUAGE sql",
        "GRANT SELECT ON users TO PUBLIC",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    // The other plugin's physical table written out in full.
    attacks.push(format!("SELECT * FROM {physical_other}"));
    attacks.push(format!("DELETE FROM {physical_other}"));
    if b.pg.is_some() {
        // What a parser cannot see: the database itself must refuse it.
        attacks.push("DO $$ BEGIN EXECUTE 'DELETE FROM secrets'; END $$".into());
        attacks.push("DO $$ BEGIN EXECUTE 'DELETE FROM public.secrets'; END $$".into());
        attacks.push(format!(
            "DO $$ BEGIN EXECUTE 'DELETE FROM {}'; END $$",
            physical_other.replace('\'', "''")
        ));
        attacks.push(
            "SELECT * FROM users WHERE email = (SELECT email FROM public.secrets LIMIT 1)".into(),
        );
    }
    let denied_before = m.get("tables-demo").unwrap().stats.tables_denied;
    for attack in &attacks {
        match sql(m, "tables-demo", attack) {
            Ok(out) => panic!("{attack} succeeded: {out}"),
            Err(e) => {
                let code = e.details()["plugin_code"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
                assert!(
                    [
                        "table_access_denied",
                        "sql_access_denied",
                        "sql_error",
                        "bad_request"
                    ]
                    .contains(&code.as_str()),
                    "{attack}: untyped error {e}"
                );
                assert!(
                    !e.to_string().contains("top-secret"),
                    "{attack} leaked in its error: {e}"
                );
            }
        }
    }
    assert!(
        m.get("tables-demo").unwrap().stats.tables_denied > denied_before,
        "denials are counted"
    );
    // Nothing changed.
    let mine = sql(m, "tables-demo", "SELECT email FROM users").unwrap();
    assert_eq!(mine["rows"], json!([{"email": "mine@example.com"}]));
    let theirs = sql(m, "other", "SELECT email FROM secrets").unwrap();
    assert_eq!(theirs["rows"], json!([{"email": "top-secret"}]));
    if let Some(pg) = &b.pg {
        assert_eq!(pg.sql("SELECT email FROM public.secrets"), "public-secret");
        for check in [
            "SELECT count(*) FROM pg_class WHERE relname = 'pg_shared'",
            "SELECT count(*) FROM pg_proc WHERE proname = 'f'",
            "SELECT count(*) FROM information_schema.columns WHERE table_name = 'users' AND column_name = 'pwned'",
        ] {
            assert_eq!(pg.sql(check), "0", "{check}");
            assert_eq!(pg.plugin_sql("tables-demo", check), "0", "{check}");
        }
    }
}

#[test]
fn escapes_fail_and_change_nothing_on_sqlite() {
    let dir = temp_dir();
    escapes_fail_and_change_nothing(&sqlite(), dir.path());
}

#[test]
fn escapes_fail_and_change_nothing_on_postgres() {
    let dir = temp_dir();
    escapes_fail_and_change_nothing(&postgres("escapes"), dir.path());
}

fn naive_collision_pair_is_kept_apart(b: &Backend, dir: &Path) {
    let m = &b.manager;
    m.load(tables_plugin("a", "b_c", dir)).unwrap();
    m.load(tables_plugin("a_b", "c", dir)).unwrap();
    create_users(m, "a", "b_c");
    create_users(m, "a_b", "c");
    sql(m, "a", "INSERT INTO b_c (email) VALUES ('from-a')").unwrap();
    sql(m, "a_b", "INSERT INTO c (email) VALUES ('from-a_b')").unwrap();
    assert_eq!(
        sql(m, "a", "SELECT email FROM b_c").unwrap()["rows"],
        json!([{"email": "from-a"}])
    );
    assert_eq!(
        sql(m, "a_b", "SELECT email FROM c").unwrap()["rows"],
        json!([{"email": "from-a_b"}])
    );
    let pa = m.get("a").unwrap().physical.tables["b_c"].clone();
    let pb = m.get("a_b").unwrap().physical.tables["c"].clone();
    if b.pg.is_some() {
        assert_ne!(pa, pb);
        assert_eq!(pa, r#""p_a"."b_c""#);
        assert_eq!(pb, r#""p_a_b"."c""#);
    }
}

#[test]
fn naive_collision_pair_is_kept_apart_on_sqlite() {
    let dir = temp_dir();
    naive_collision_pair_is_kept_apart(&sqlite(), dir.path());
}

#[test]
fn naive_collision_pair_is_kept_apart_on_postgres() {
    let dir = temp_dir();
    naive_collision_pair_is_kept_apart(&postgres("collide"), dir.path());
}

fn overrides_apply_and_reload_atomically(b: &Backend) {
    let m = &b.manager;
    m.load(plugin("tables-demo")).unwrap();
    create_users(m, "tables-demo", "users");
    sql(
        m,
        "tables-demo",
        "INSERT INTO users (email) VALUES ('before')",
    )
    .unwrap();

    // The allowed list replaced: `memos` instead of `users`.
    let o: Overrides = serde_json::from_value(json!({"tables": ["memos"]})).unwrap();
    m.set_settings("tables-demo", Some(PluginSettings::new(None, Some(o))))
        .unwrap();
    let e = sql(m, "tables-demo", "SELECT * FROM users").unwrap_err();
    assert_eq!(e.details()["plugin_code"], "table_access_denied");
    create_users(m, "tables-demo", "memos");
    sql(
        m,
        "tables-demo",
        "INSERT INTO memos (email) VALUES ('memo')",
    )
    .unwrap();

    // A name map: the plugin's `users` is stored as `people`.
    let o: Overrides = serde_json::from_value(json!({"table_map": {"users": "people"}})).unwrap();
    m.set_settings(
        "tables-demo",
        Some(PluginSettings::new(None, Some(o.clone()))),
    )
    .unwrap();
    let info = m.get("tables-demo").unwrap();
    assert!(
        info.physical.tables["users"].ends_with(r#""people""#),
        "{:?}",
        info.physical
    );
    create_users(m, "tables-demo", "users");
    assert_eq!(
        sql(m, "tables-demo", "SELECT count(*) AS n FROM users").unwrap()["rows"][0]["n"],
        0,
        "a new, empty physical table"
    );

    // Invalid overrides: refused, the plugin keeps running with the old ones.
    let generation = info.generation;
    let bad: Overrides = serde_json::from_value(json!({"table_map": {"secrets": "x"}})).unwrap();
    let e = m
        .set_settings("tables-demo", Some(PluginSettings::new(None, Some(bad))))
        .unwrap_err();
    assert_eq!(e.code().as_str(), "invalid_overrides");
    assert_eq!(m.get("tables-demo").unwrap().generation, generation);
    assert_eq!(
        m.settings("tables-demo").unwrap().overrides,
        Some(o.clone())
    );
    sql(m, "tables-demo", "SELECT * FROM users").unwrap();

    // Overrides survive an unload and apply to the next load.
    m.unload("tables-demo", false).unwrap();
    m.load(plugin("tables-demo")).unwrap();
    assert!(m.get("tables-demo").unwrap().physical.tables["users"].ends_with(r#""people""#));
}

#[test]
fn overrides_apply_and_reload_atomically_on_sqlite() {
    overrides_apply_and_reload_atomically(&sqlite());
}

#[test]
fn overrides_apply_and_reload_atomically_on_postgres() {
    overrides_apply_and_reload_atomically(&postgres("overrides"));
}

#[test]
fn unload_closes_the_plugins_pool_on_postgres() {
    let b = postgres("pool");
    let m = &b.manager;
    m.load(plugin("tables-demo")).unwrap();
    create_users(m, "tables-demo", "users");
    sql(m, "tables-demo", "SELECT * FROM users").unwrap();
    let pg = b.pg.as_ref().unwrap();
    let count = || {
        pg.sql(&format!(
            "SELECT count(*) FROM pg_stat_activity WHERE usename = '{role}' AND datname = '{role}'",
            role = pg.plugin_db("tables-demo")
        ))
    };
    assert_ne!(count(), "0", "the plugin's own role is connected");
    m.unload("tables-demo", false).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while count() != "0" && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_eq!(count(), "0", "unload closed the pool");
}

#[test]
fn the_plugin_role_has_no_power_beyond_its_grants() {
    let b = postgres("role");
    b.manager.load(plugin("tables-demo")).unwrap();
    let pg = b.pg.as_ref().unwrap();
    let role = pg.plugin_db("tables-demo");
    let flags = pg.sql(&format!("SELECT rolsuper, rolcreaterole, rolcreatedb, rolbypassrls, rolinherit FROM pg_roles WHERE rolname = '{role}'"));
    assert_eq!(flags, "f|f|f|f|f");
    assert_eq!(
        pg.plugin_sql(
            "tables-demo",
            &format!("SELECT has_schema_privilege('{role}', 'p_tables-demo', 'CREATE'), has_schema_privilege('{role}', 'public', 'USAGE'), has_database_privilege('{role}', '{role}', 'CREATE'), has_database_privilege('{role}', '{role}', 'TEMP'), has_language_privilege('{role}', 'plpgsql', 'USAGE')")
        ),
        "f|f|f|f|f"
    );
    assert_eq!(
        pg.sql(&format!(
            "SELECT has_schema_privilege('{role}', 'plugin_host', 'USAGE')"
        )),
        "f"
    );
}

/// A plugin the operator allows no table: every request is refused as a denial (of the table
/// it names, or of a statement whose tables were not determined), and a malformed one as such.
#[test]
fn a_plugin_allowed_no_table_is_denied_every_request() {
    let b = sqlite();
    let m = &b.manager;
    let o: Overrides = serde_json::from_value(json!({"tables": []})).unwrap();
    m.set_settings("tables-demo", Some(PluginSettings::new(None, Some(o))))
        .unwrap();
    m.load(plugin("tables-demo")).unwrap();
    assert!(m.get("tables-demo").unwrap().physical.tables.is_empty());
    for req in [
        json!({"op": "count", "table": "users"}),
        json!({"op": "insert", "table": "users", "row": {"email": "x"}}),
        json!({"op": "sql", "sql": "SELECT 1"}),
    ] {
        let e = request(m, "tables-demo", req.clone()).unwrap_err();
        assert_eq!(e.details()["plugin_code"], "table_access_denied", "{req}");
    }
    let e = request(m, "tables-demo", json!({"op": "drop", "table": "users"})).unwrap_err();
    assert_eq!(e.details()["plugin_code"], "bad_request");
}

#[test]
fn no_backend_is_a_clear_error_not_a_crash() {
    let m = manager();
    m.load(plugin("tables-demo")).unwrap();
    let e = m
        .execute("tables-demo", &json!({"op": "demo"}))
        .unwrap_err();
    assert_eq!(e.details()["plugin_code"], "backend_unavailable");
}

#[test]
fn serve_runs_on_the_postgres_backend() {
    let pg = PgDatabase::create("serve");
    let mut s = Server::start(
        &[],
        &[
            ("PLUGIN_HOST_TABLES_BACKEND", "postgres"),
            ("PLUGIN_HOST_TABLES_URL", &pg.url),
        ],
    );
    let (st, _) = s.call(
        "POST",
        "/api/v1/plugins",
        Some(json!({"path": plugin("tables-demo").to_string_lossy()})),
    );
    assert_eq!(st, 201);
    let (st, out) = s.call(
        "POST",
        "/api/v1/plugins/tables-demo/execute",
        Some(json!({"op": "demo"})),
    );
    assert_eq!(st, 200, "{out}");
    assert_eq!(out["output"]["total"], 2);
    let (_, health) = s.call("GET", "/health", None);
    assert_eq!(health["backends"]["tables"], "ok");
    assert_eq!(
        pg.plugin_sql(
            "tables-demo",
            r#"SELECT count(*) FROM "p_tables-demo".users"#
        ),
        "2"
    );
    s.stop();
}
