//! PostgreSQL backend: the database is the wall. Each plugin gets its own **database**, owned
//! by the host's admin role, and its own login role, both named
//! [`naming::pg_database`]`(admin database, plugin)`; inside it, the host-owned schema
//! `p_<plugin>` holds its tables. The role may only `CONNECT` to that database (no `TEMP`, no
//! `CREATE`), has `USAGE` on its schema and DML grants on its allowed tables only, and a fixed
//! `search_path`. Catalogs, large objects, `NOTIFY` channels and advisory-lock keys are per
//! database, so what a plugin can see or leave behind there is its own; the database is then
//! hardened further (see [`HARDEN`]): `EXECUTE` on the large-object, notify, advisory-lock,
//! `set_config`, query-to-XML and statistics functions, `USAGE` on `plpgsql` (no `DO`) and
//! `SELECT` on the catalog views that show the cluster (roles, databases, other sessions, locks)
//! are revoked from `PUBLIC`. A connection that ran the plugin's own SQL is reset before it
//! goes back to the pool (`ROLLBACK; RESET ALL; UNLISTEN *; CLOSE ALL`; closed when that fails
//! or the statement was abandoned), so no setting, transaction, listener or cursor outlives a
//! statement; the statements the host builds (the typed API), which cannot change a session's
//! state, skip that round trip. What PostgreSQL cannot hide is in docs/trust-model.md.
//!
//! Each plugin has its own pool that logs in as its role, so `SET ROLE`/`RESET ROLE` lead
//! nowhere: the session user *is* the plugin. Tables are created by the admin (connected to the
//! plugin's database) and granted to the role. Role passwords are generated once and kept in the
//! host-only schema `plugin_host` of the admin database, so every host sharing it agrees on
//! them.
//!
//! Runaway work: every connection starts with `statement_timeout` = the execute timeout + 1 s (a
//! backstop that never fires before the call's own deadline), and a
//! call that times out raises the session's cancellation, which cancels the running statement
//! on the server (`pg_cancel_backend` from the admin connection, found by the session's unique
//! `application_name`).
//!
//! sqlx is async; plugin calls are synchronous on the plugin's own thread, so this backend owns
//! a small tokio runtime and blocks only the calling thread.

use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_util::TryStreamExt;
use serde_json::{Map, Value};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow};
use sqlx::{Column, Row, TypeInfo};

use super::{Control, Dialect, Limits, Rows, TableBackend, TableSession};
use crate::error::{Error, Result};
use crate::resources::naming::{self, PhysicalTable};

/// PostgreSQL tables reached through an admin URL.
#[derive(Debug)]
pub(crate) struct PgTables {
    /// Always `Some` until dropped (see the `Drop` impl).
    runtime: Option<tokio::runtime::Runtime>,
    handle: tokio::runtime::Handle,
    admin: PgPool,
    options: PgConnectOptions,
    /// The database the admin URL names (plugin databases are named after it).
    admin_db: String,
    max_connections: u32,
    limits: Limits,
}

fn unavailable(message: impl std::fmt::Display) -> Error {
    Error::BackendUnavailable {
        kind: crate::BackendKind::Tables,
        message: message.to_string(),
    }
}

/// Turns PostgreSQL's `42501` message into the object it names: `permission denied for table
/// secrets` → (`table`, `secrets`); `permission denied to create temporary tables in database
/// "x"` → (`temporary tables in database`, `x`); `must be owner of table t` → (`table`, `t`);
/// `must be superuser or have privileges of pg_read_all_settings to examine "x"` → (`setting`,
/// `x`).
fn denied_object(message: &str) -> (String, String) {
    let unquote = |s: &str| s.trim().trim_matches('"').to_owned();
    if let Some(rest) = message
        .strip_prefix("permission denied for ")
        .or_else(|| message.strip_prefix("must be owner of "))
    {
        // Kinds of two words first ("large object", "foreign table", ...).
        for kind in [
            "large object",
            "foreign table",
            "materialized view",
            "foreign-data wrapper",
            "foreign server",
        ] {
            if let Some(name) = rest.strip_prefix(kind) {
                return (kind.to_owned(), unquote(name));
            }
        }
        if let Some((kind, name)) = rest.split_once(' ') {
            return (kind.to_owned(), unquote(name));
        }
        return ("object".to_owned(), unquote(rest));
    }
    if let Some(rest) =
        message.strip_prefix("permission denied to create temporary tables in database ")
    {
        return ("temporary tables in database".to_owned(), unquote(rest));
    }
    // `must be superuser or have privileges of pg_read_all_settings to examine "x"`,
    // `permission denied to set parameter "x"`.
    if let Some((_, setting)) = message
        .split_once(" to examine ")
        .or_else(|| message.split_once("permission denied to set parameter "))
    {
        return ("setting".to_owned(), unquote(setting));
    }
    if let Some(rest) = message.strip_prefix("permission denied to ") {
        return ("operation".to_owned(), rest.to_owned());
    }
    // `must be superuser to ...`, `must be member of role "x" to ...`: what was refused.
    if message.starts_with("must be ")
        && let Some((_, what)) = message.split_once(" to ")
    {
        return ("operation".to_owned(), what.to_owned());
    }
    ("object".to_owned(), message.to_owned())
}

fn db_error(plugin: &str, e: &sqlx::Error) -> Error {
    if let sqlx::Error::Database(db) = e {
        let code = db.code().map(|c| c.into_owned());
        if code.as_deref() == Some("42501") {
            let (kind, name) = denied_object(db.message());
            return if kind == "table" {
                Error::TableAccessDenied {
                    plugin: plugin.to_owned(),
                    table: crate::resources::DeniedTable::Named(name),
                    allowed: Vec::new(),
                }
            } else {
                Error::SqlAccessDenied {
                    plugin: plugin.to_owned(),
                    kind,
                    name: Some(name),
                }
            };
        }
        return Error::Sql {
            plugin: plugin.to_owned(),
            message: db.message().to_owned(),
            sqlstate: code,
        };
    }
    Error::Sql {
        plugin: plugin.to_owned(),
        message: e.to_string(),
        sqlstate: None,
    }
}

/// Runs admin statements, retrying what concurrent maintenance makes fail transiently: roles
/// and databases are cluster-wide, so two hosts (or two databases of one cluster) setting up
/// the same plugin at once collide on its catalog rows ("tuple concurrently updated").
fn run_admin(
    handle: &tokio::runtime::Handle,
    admin: &PgPool,
    plugin: &str,
    sql: &str,
) -> Result<()> {
    let mut delay = Duration::from_millis(10);
    let mut attempt = 0;
    loop {
        match handle.block_on(sqlx::raw_sql(sql).execute(admin)) {
            Ok(_) => return Ok(()),
            Err(e) if attempt < 8 && is_transient(&e) => {
                std::thread::sleep(delay);
                delay = (delay * 2).min(Duration::from_millis(500));
                attempt += 1;
            }
            Err(e) => return Err(db_error(plugin, &e)),
        }
    }
}

/// Errors that a retry can cure: concurrent catalog updates, serialization failures,
/// deadlocks, a duplicate role or schema created by a concurrent setup, a template database
/// briefly in use.
fn is_transient(e: &sqlx::Error) -> bool {
    let sqlx::Error::Database(db) = e else {
        return false;
    };
    matches!(
        db.code().as_deref(),
        Some("XX000" | "40001" | "40P01" | "23505" | "42710" | "42P06" | "55006")
    ) && (db.code().as_deref() != Some("XX000") || db.message().contains("concurrently"))
}

/// 128 random bits, hex, for a role password.
fn random_password() -> String {
    use std::io::Read as _;
    let mut bytes = [0u8; 16];
    let filled = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes));
    if filled.is_err() {
        // No urandom: fall back to the std hasher's per-process random keys.
        use std::hash::{BuildHasher as _, Hasher as _};
        for chunk in bytes.chunks_mut(8) {
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_u128(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_nanos()),
            );
            chunk.copy_from_slice(&h.finish().to_le_bytes()[..chunk.len()]);
        }
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// SQL (run by the admin) that grants `role` the sequences owned by table `t` (its identity and
/// serial columns) and no other: a sequence of a table the plugin may no longer use stays out of
/// its reach (`nextval` on it is refused by the database). `t` is a quoted physical name and
/// `role` a validated role name, so neither needs escaping inside the literals.
fn grant_owned_sequences(t: &str, role: &str) -> String {
    format!(
        r#"DO $$ DECLARE s record; BEGIN IF to_regclass('{t}') IS NOT NULL THEN
             FOR s IN SELECT d.objid::regclass AS seq FROM pg_depend d JOIN pg_class c ON c.oid = d.objid
               WHERE d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_class'::regclass
                 AND d.refobjid = '{t}'::regclass AND c.relkind = 'S' AND d.deptype IN ('a', 'i')
             LOOP EXECUTE format('GRANT USAGE, SELECT ON SEQUENCE %s TO "{role}"', s.seq); END LOOP;
           END IF; END $$;"#
    )
}

/// Version of [`HARDEN`]: a plugin database hardened by an older version (its comment says
/// which) is hardened again.
const HARDEN_VERSION: i32 = 1;

/// Run (as the admin) inside a plugin's database: takes from `PUBLIC` what would reach outside
/// the plugin's own space or outlive a call. `{db}` is replaced by the database's name.
const HARDEN: &str = r#"
REVOKE ALL ON DATABASE "{db}" FROM PUBLIC;
REVOKE ALL ON SCHEMA public FROM PUBLIC;
REVOKE USAGE ON LANGUAGE plpgsql FROM PUBLIC;
DO $harden$
DECLARE r record;
BEGIN
  FOR r IN
    SELECT p.oid::regprocedure AS f FROM pg_proc p
    WHERE p.pronamespace = 'pg_catalog'::regnamespace AND (
         p.proname LIKE 'lo\_%' OR p.proname IN ('loread', 'lowrite')
      OR p.proname IN ('pg_notify', 'set_config', 'pg_get_userbyid', 'pg_lock_status',
                       'pg_blocking_pids', 'pg_safe_snapshot_blocking_pids',
                       'pg_database_size', 'pg_tablespace_size', 'pg_tablespace_location',
                       'pg_tablespace_databases', 'pg_cancel_backend', 'pg_terminate_backend',
                       'pg_backend_pid', 'pg_listening_channels', 'pg_notification_queue_usage')
      OR p.proname LIKE 'pg\_advisory%' OR p.proname LIKE 'pg\_try\_advisory%'
      OR p.proname LIKE '%\_to\_xml%' OR p.proname LIKE '%\_to\_xmlschema'
      OR p.proname LIKE 'pg\_stat\_get\_%'
    )
  LOOP
    EXECUTE format('REVOKE EXECUTE ON FUNCTION %s FROM PUBLIC', r.f);
  END LOOP;
  FOR r IN
    SELECT c.oid::regclass AS v FROM pg_class c
    WHERE c.relnamespace = 'pg_catalog'::regnamespace AND c.relkind IN ('r', 'v') AND (
         c.relname IN ('pg_roles', 'pg_user', 'pg_group', 'pg_auth_members', 'pg_database',
                       'pg_tablespace', 'pg_shdescription', 'pg_shseclabel', 'pg_seclabels',
                       'pg_db_role_setting', 'pg_shdepend', 'pg_locks', 'pg_prepared_xacts',
                       'pg_largeobject_metadata', 'pg_replication_origin',
                       'pg_replication_slots', 'pg_subscription', 'pg_stats', 'pg_stats_ext',
                       'pg_stats_ext_exprs', 'pg_tables', 'pg_views', 'pg_matviews',
                       'pg_indexes', 'pg_policies', 'pg_rules', 'pg_publication_tables')
      OR c.relname LIKE 'pg\_stat%'
    )
  LOOP
    EXECUTE format('REVOKE ALL ON TABLE %s FROM PUBLIC', r.v);
  END LOOP;
END
$harden$;
"#;

impl PgTables {
    /// Connects the admin pool and prepares the host's own schema.
    ///
    /// # Errors
    /// `invalid_config` for a bad URL or an admin role that cannot harden plugin databases
    /// (it must be a superuser), `backend_unavailable` when the server does not answer.
    pub(crate) fn connect(url: &str, max_connections: u32, limits: Limits) -> Result<Self> {
        let options = PgConnectOptions::from_str(url).map_err(|e| Error::InvalidConfig {
            key: "backends.tables.url".into(),
            message: e.to_string(),
        })?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("plugin-host-pg")
            .enable_all()
            .build()
            .map_err(unavailable)?;
        let admin = runtime
            .block_on(
                PgPoolOptions::new()
                    .max_connections(4)
                    .acquire_timeout(Duration::from_secs(5))
                    .connect_with(options.clone()),
            )
            .map_err(|e| unavailable(format!("cannot connect to PostgreSQL: {e}")))?;
        let (admin_db, superuser): (String, bool) = runtime
            .block_on(
                sqlx::query_as(
                    "SELECT current_database()::text, rolsuper FROM pg_roles WHERE rolname = current_user",
                )
                .fetch_one(&admin),
            )
            .map_err(|e| unavailable(format!("cannot read the admin role: {e}")))?;
        if !superuser {
            return Err(Error::InvalidConfig {
                key: "backends.tables.url".into(),
                message: "the admin role must be a PostgreSQL superuser: it creates a database and a role per plugin and revokes PUBLIC's defaults on catalog functions inside each plugin database".into(),
            });
        }
        runtime
            .block_on(
                sqlx::raw_sql(
                    "CREATE SCHEMA IF NOT EXISTS plugin_host;
                     REVOKE ALL ON SCHEMA plugin_host FROM PUBLIC;
                     CREATE TABLE IF NOT EXISTS plugin_host.roles (role text PRIMARY KEY, password text NOT NULL);",
                )
                .execute(&admin),
            )
            .map_err(|e| unavailable(format!("cannot prepare the plugin_host schema: {e}")))?;
        Ok(Self {
            handle: runtime.handle().clone(),
            runtime: Some(runtime),
            admin,
            options,
            admin_db,
            max_connections: max_connections.max(1),
            limits,
        })
    }

    /// Creates the plugin's login role if needed, with no privilege beyond logging in and no
    /// saved setting; answers its password (kept in the host's own schema).
    fn ensure_role(&self, plugin: &str, role: &str) -> Result<String> {
        let password: String = self
            .handle
            .block_on(async {
                sqlx::query("INSERT INTO plugin_host.roles (role, password) VALUES ($1, $2) ON CONFLICT (role) DO NOTHING")
                    .bind(role)
                    .bind(random_password())
                    .execute(&self.admin)
                    .await?;
                sqlx::query_scalar("SELECT password FROM plugin_host.roles WHERE role = $1")
                    .bind(role)
                    .fetch_one(&self.admin)
                    .await
            })
            .map_err(|e| db_error(plugin, &e))?;
        // Names are validated (a-z 0-9 _ - . ~ and the admin database's name, which has no
        // `"`), the password is hex: nothing here needs more than quoting.
        self.admin_sql(
            plugin,
            &format!(
                r#"DO $$ BEGIN CREATE ROLE "{role}" LOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$;
                   ALTER ROLE "{role}" WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT NOREPLICATION NOBYPASSRLS CONNECTION LIMIT {limit} PASSWORD '{password}';
                   DO $$ DECLARE d record; BEGIN
                     -- A role may set its own defaults (ALTER ROLE CURRENT_USER SET ...): none
                     -- survives into a new session of the plugin.
                     ALTER ROLE "{role}" RESET ALL;
                     FOR d IN SELECT datname FROM pg_db_role_setting s JOIN pg_database b ON b.oid = s.setdatabase
                              WHERE s.setrole = (SELECT oid FROM pg_roles WHERE rolname = '{role}') LOOP
                       EXECUTE format('ALTER ROLE %I IN DATABASE %I RESET ALL', '{role}', d.datname);
                     END LOOP;
                   END $$;"#,
                limit = self.max_connections * 2 + 2,
            ),
        )?;
        Ok(password)
    }

    /// Hardens the plugin's database once (the PUBLIC revokes); a database made again is
    /// hardened again.
    fn harden_once(&self, local: &PgPool, plugin: &str, db: &str) -> Result<()> {
        // The marker is the database's own comment: it goes when the database goes, so a
        // database made again is hardened again.
        let marker = format!("plugin-host hardened v{HARDEN_VERSION}");
        let current: Option<String> = self
            .handle
            .block_on(
                sqlx::query_scalar(
                    "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = $1",
                )
                .bind(db)
                .fetch_optional(&self.admin),
            )
            .map_err(|e| db_error(plugin, &e))?
            .flatten();
        if current.as_deref() != Some(marker.as_str()) {
            let harden = format!(
                "{}\nCOMMENT ON DATABASE \"{db}\" IS '{marker}';",
                HARDEN.replace("{db}", db)
            );
            run_admin(&self.handle, local, plugin, &harden)?;
        }
        Ok(())
    }

    /// Connects as the plugin's role, to its database, with its schema first on the search
    /// path and the statement timeout as a backstop.
    #[allow(
        clippy::too_many_arguments,
        reason = "each is one part of the plugin's connection identity"
    )]
    fn connect_as_plugin(
        &self,
        plugin: &str,
        db: &str,
        role: &str,
        password: &str,
        schema: &str,
        application: &str,
        control: &Control,
    ) -> Result<PgPool> {
        // PostgreSQL takes at most i32::MAX ms (about 24 days).
        let timeout_ms = control
            .limits
            .statement_timeout
            .as_millis()
            .clamp(1, i32::MAX as u128)
            .to_string();
        let options = self
            .options
            .clone()
            .database(db)
            .username(role)
            .password(password)
            .application_name(application)
            .options([
                ("search_path", schema),
                ("statement_timeout", timeout_ms.as_str()),
                // The reset sends `ROLLBACK` outside a transaction too; its warning (and any
                // other notice) is not worth a round of logging per query.
                ("client_min_messages", "error"),
            ]);
        self.handle
            .block_on(
                PgPoolOptions::new()
                    .max_connections(self.max_connections)
                    .acquire_timeout(Duration::from_secs(5))
                    .connect_with(options),
            )
            .map_err(|e| unavailable(format!("plugin `{plugin}` cannot log in as its role: {e}")))
    }

    fn admin_sql(&self, plugin: &str, sql: &str) -> Result<()> {
        run_admin(&self.handle, &self.admin, plugin, sql)
    }

    /// Creates the plugin's database if it does not exist yet (idempotent and safe against
    /// concurrent hosts: a duplicate is success).
    fn create_database(&self, plugin: &str, db: &str) -> Result<()> {
        let exists = |h: &tokio::runtime::Handle| -> Result<bool> {
            h.block_on(
                sqlx::query_scalar::<_, bool>(
                    "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)",
                )
                .bind(db)
                .fetch_one(&self.admin),
            )
            .map_err(|e| db_error(plugin, &e))
        };
        if exists(&self.handle)? {
            return Ok(());
        }
        // Names are validated (no `"`), so quoting is enough.
        match self.admin_sql(plugin, &format!(r#"CREATE DATABASE "{db}""#)) {
            Ok(()) => Ok(()),
            // Another host created it in between (42P04 duplicate_database, or the unique
            // index on pg_database's name).
            Err(Error::Sql { sqlstate, .. })
                if matches!(sqlstate.as_deref(), Some("42P04" | "23505")) =>
            {
                Ok(())
            }
            Err(e) if exists(&self.handle)? => {
                tracing::debug!(target: "tables", plugin, error = %e, "database created concurrently");
                Ok(())
            }
            Err(e) => Err(e),
        }
    }
}

/// Resets a connection before it returns to the pool; `false` (close it) when that fails.
fn reset(
    conn: &mut sqlx::PgConnection,
) -> futures_util::future::BoxFuture<'_, std::result::Result<bool, sqlx::Error>> {
    Box::pin(async move {
        // A query without arguments goes as one simple-protocol message, several statements
        // allowed.
        Ok(
            sqlx::Executor::execute(conn, "ROLLBACK; RESET ALL; UNLISTEN *; CLOSE ALL")
                .await
                .is_ok(),
        )
    })
}

/// Distinguishes the sessions of one process in `pg_stat_activity` (`application_name`).
static SESSIONS: AtomicU64 = AtomicU64::new(0);

impl TableBackend for PgTables {
    fn dialect(&self) -> Dialect {
        Dialect::Postgres
    }

    fn limits(&self) -> Limits {
        self.limits
    }

    fn physical(&self, plugin: &str, logical: &str) -> Result<PhysicalTable> {
        naming::pg_table(plugin, logical)
    }

    fn open(
        &self,
        plugin: &str,
        allowed: &[PhysicalTable],
        control: Arc<Control>,
    ) -> Result<Box<dyn TableSession>> {
        let schema = naming::pg_schema(plugin)?;
        let db = naming::pg_database(&self.admin_db, plugin)?;
        let role = db.clone();
        let password = self.ensure_role(plugin, &role)?;
        self.create_database(plugin, &db)?;
        // The admin, connected to the plugin's database: hardening, schema, grants, and
        // later the plugin's `create` calls.
        let local = self
            .handle
            .block_on(
                PgPoolOptions::new()
                    .max_connections(1)
                    .min_connections(0)
                    .idle_timeout(Duration::from_secs(10))
                    .acquire_timeout(Duration::from_secs(5))
                    .connect_with(self.options.clone().database(&db)),
            )
            .map_err(|e| unavailable(format!("cannot connect to database `{db}`: {e}")))?;
        self.harden_once(&local, plugin, &db)?;
        let mut setup = format!(
            r#"GRANT CONNECT ON DATABASE "{db}" TO "{role}";
               CREATE SCHEMA IF NOT EXISTS "{schema}";
               REVOKE ALL ON SCHEMA "{schema}" FROM PUBLIC;
               GRANT USAGE ON SCHEMA "{schema}" TO "{role}";
               REVOKE ALL ON ALL TABLES IN SCHEMA "{schema}" FROM "{role}";
               REVOKE ALL ON ALL SEQUENCES IN SCHEMA "{schema}" FROM "{role}";"#,
        );
        for t in allowed {
            setup.push_str(&format!(
                r#"DO $$ BEGIN IF to_regclass('{t}') IS NOT NULL THEN GRANT SELECT, INSERT, UPDATE, DELETE ON {t} TO "{role}"; END IF; END $$;"#,
                t = t.sql()
            ));
            setup.push_str(&grant_owned_sequences(&t.sql(), &role));
        }
        run_admin(&self.handle, &local, plugin, &setup)?;
        let application = format!(
            "plugin-host {} {}",
            std::process::id(),
            SESSIONS.fetch_add(1, Ordering::Relaxed)
        );
        let pool = self.connect_as_plugin(
            plugin,
            &db,
            &role,
            &password,
            &schema,
            &application,
            &control,
        )?;
        Ok(Box::new(PgSession {
            plugin: plugin.to_owned(),
            role,
            application,
            pool,
            local,
            handle: self.handle.clone(),
            admin: self.admin.clone(),
            control,
        }))
    }

    fn check(&self) -> Result<()> {
        self.handle
            .block_on(sqlx::query("SELECT 1").execute(&self.admin))
            .map(drop)
            .map_err(unavailable)
    }
}

/// One plugin's pool, logged in as its role.
#[derive(Debug)]
struct PgSession {
    plugin: String,
    role: String,
    /// This session's `application_name`: how a cancel finds its statement.
    application: String,
    pool: PgPool,
    /// The admin, connected to the plugin's database.
    local: PgPool,
    handle: tokio::runtime::Handle,
    admin: PgPool,
    control: Arc<Control>,
}

fn bind_value<'q>(
    q: sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>,
    v: &Value,
) -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments> {
    match v {
        Value::Null => q.bind(None::<String>),
        Value::Bool(b) => q.bind(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => q.bind(i),
            None => q.bind(n.as_f64().unwrap_or(0.0)),
        },
        Value::String(s) => q.bind(s.clone()),
        other => q.bind(sqlx::types::Json(other.clone())),
    }
}

fn row_to_json(row: &PgRow) -> std::result::Result<Map<String, Value>, String> {
    let mut m = Map::with_capacity(row.columns().len());
    for (i, col) in row.columns().iter().enumerate() {
        let ty = col.type_info().name();
        let v = match ty {
            "INT2" => row.try_get::<Option<i16>, _>(i).map(|v| v.map(Value::from)),
            "INT4" => row.try_get::<Option<i32>, _>(i).map(|v| v.map(Value::from)),
            "INT8" => row.try_get::<Option<i64>, _>(i).map(|v| v.map(Value::from)),
            "FLOAT4" => row.try_get::<Option<f32>, _>(i).map(|v| v.map(|f| Value::from(f64::from(f)))),
            "FLOAT8" => row.try_get::<Option<f64>, _>(i).map(|v| v.map(Value::from)),
            "BOOL" => row.try_get::<Option<bool>, _>(i).map(|v| v.map(Value::from)),
            "TEXT" | "VARCHAR" | "BPCHAR" | "NAME" | "CHAR" => row.try_get::<Option<String>, _>(i).map(|v| v.map(Value::from)),
            "JSON" | "JSONB" => row
                .try_get::<Option<sqlx::types::Json<Value>>, _>(i)
                .map(|v| v.map(|j| j.0)),
            "BYTEA" => row
                .try_get::<Option<Vec<u8>>, _>(i)
                .map(|v| v.map(|b| Value::String(b.iter().map(|x| format!("{x:02x}")).collect()))),
            other => return Err(format!("column `{}` has type {other}, which this API does not return; cast it (for example `::text`)", col.name())),
        }
        .map_err(|e| e.to_string())?;
        m.insert(col.name().to_owned(), v.unwrap_or(Value::Null));
    }
    Ok(m)
}

impl PgSession {
    /// Cancels this session's running statement on the server.
    async fn cancel_running(&self) {
        let cancelled = sqlx::query(
            "SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE application_name = $1 AND state <> 'idle'",
        )
        .bind(&self.application)
        .execute(&self.admin)
        .await;
        if let Err(e) = cancelled {
            tracing::warn!(target: "tables", plugin = %self.plugin, error = %e, "cannot cancel a statement");
        }
    }

    /// Runs one statement the plugin wrote on a connection of its own, reset before it goes
    /// back to the pool (closed instead when the reset fails or the statement is abandoned).
    async fn run_raw(&self, sql: &str, params: &[Value]) -> Result<Rows> {
        let conn = self
            .pool
            .acquire()
            .await
            .map_err(|e| db_error(&self.plugin, &e))?;
        let mut dirty = Dirty(Some(conn));
        let Some(conn) = dirty.0.as_mut() else {
            return Err(Error::Internal {
                message: "a connection vanished".into(),
            });
        };
        let result = self.run(&mut **conn, sql, params).await;
        if reset(conn).await.unwrap_or(false) {
            // Clean: back to the pool.
            drop(dirty.0.take());
        }
        result
    }

    /// Runs one statement on `exec`, streaming its rows into the collector.
    async fn run<'c, E>(&self, exec: E, sql: &str, params: &[Value]) -> Result<Rows>
    where
        E: sqlx::Executor<'c, Database = sqlx::Postgres>,
    {
        let plugin = self.plugin.as_str();
        let mut q = sqlx::query(sql);
        for p in params {
            q = bind_value(q, p);
        }
        #[expect(
            deprecated,
            reason = "deprecated for multi-statement strings; the rewriter sends exactly one statement, and this is the call that returns both rows and the affected count"
        )]
        let mut stream = q.fetch_many(exec);
        let mut out = self.control.collector();
        let mut affected = 0;
        while let Some(item) = stream.try_next().await.map_err(|e| db_error(plugin, &e))? {
            match item {
                sqlx::Either::Left(done) => affected += done.rows_affected(),
                sqlx::Either::Right(row) => {
                    let row = row_to_json(&row).map_err(|message| Error::Sql {
                        plugin: plugin.to_owned(),
                        message,
                        sqlstate: None,
                    })?;
                    if let Err(e) = out.push(row) {
                        // Stop the server too: otherwise the connection would read the rest
                        // of the result before its next use.
                        drop(stream);
                        self.cancel_running().await;
                        return Err(e);
                    }
                }
            }
        }
        Ok(Rows {
            rows: out.rows,
            affected,
        })
    }
}

impl TableSession for PgSession {
    fn create(&self, table: &PhysicalTable, columns_sql: &str) -> Result<()> {
        self.control.check()?;
        let sql = format!(
            r#"CREATE TABLE IF NOT EXISTS {t} ({columns_sql});
               GRANT SELECT, INSERT, UPDATE, DELETE ON {t} TO "{role}";
               {sequences}"#,
            t = table.sql(),
            role = self.role,
            sequences = grant_owned_sequences(&table.sql(), &self.role),
        );
        run_admin(&self.handle, &self.local, &self.plugin, &sql)
    }

    fn query(&self, sql: &str, params: &[Value]) -> Result<Rows> {
        self.query_on(false, sql, params)
    }

    fn query_raw(&self, sql: &str, params: &[Value]) -> Result<Rows> {
        self.query_on(true, sql, params)
    }

    fn close(&self) {
        self.handle.block_on(async {
            self.pool.close().await;
            self.local.close().await;
        });
    }
}

/// A pooled connection that ran the plugin's own SQL and was not reset: dropping it closes it
/// rather than handing it to the next statement.
struct Dirty(Option<sqlx::pool::PoolConnection<sqlx::Postgres>>);

impl Drop for Dirty {
    fn drop(&mut self) {
        if let Some(conn) = self.0.take() {
            // Detached, the connection leaves the pool (which opens a fresh one when needed)
            // and its socket closes as it drops.
            drop(conn.detach());
        }
    }
}

impl PgSession {
    /// Runs one statement (`raw`: the plugin's own SQL, on a connection reset afterwards;
    /// otherwise a statement the host built, which cannot change a session's state); a
    /// raised cancellation stops it on the server.
    fn query_on(&self, raw: bool, sql: &str, params: &[Value]) -> Result<Rows> {
        self.control.check()?;
        self.handle.block_on(async {
            let wake = self.control.wake.notified();
            tokio::pin!(wake);
            wake.as_mut().enable();
            // Raised between the check above and `enable`: no wake-up would come.
            self.control.check()?;
            let work = async {
                if raw {
                    self.run_raw(sql, params).await
                } else {
                    self.run(&self.pool, sql, params).await
                }
            };
            tokio::pin!(work);
            tokio::select! {
                biased;
                result = &mut work => result,
                () = &mut wake => {
                    self.cancel_running().await;
                    // The statement now ends with 57014 on the server; let it finish so the
                    // connection goes back clean (dropped if it takes longer).
                    let _ = tokio::time::timeout(Duration::from_secs(1), &mut work).await;
                    Err(self.control.cancelled())
                }
            }
        })
    }
}

impl Drop for PgTables {
    fn drop(&mut self) {
        // Dropping a runtime inside another one's async context panics; shutting it down in
        // the background never does, wherever the manager is dropped.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}
