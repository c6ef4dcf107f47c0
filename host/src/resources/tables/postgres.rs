//! PostgreSQL backend: the database is the wall. For each plugin the host's admin connection
//! maintains (idempotently) a login role and a schema, both `p_<plugin>`: the schema belongs
//! to the host, the role gets `USAGE` on it and DML grants on its allowed tables only — no
//! `CREATE`, no other schema — and a fixed `search_path`. Each plugin has its own pool that logs
//! in as its role, so `SET ROLE`/`RESET ROLE` lead nowhere: the session user *is* the plugin.
//! Tables are created by the admin connection and granted to the role. Role passwords are
//! generated once and kept in the host-only schema `plugin_host`, so every host sharing the
//! database agrees on them.
//!
//! sqlx is async; plugin calls are synchronous on the plugin's own thread, so this backend owns
//! a small tokio runtime and blocks only the calling thread.

use std::str::FromStr;
use std::time::Duration;

use futures_util::TryStreamExt;
use serde_json::{Map, Value};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow};
use sqlx::{Column, Row, TypeInfo};

use super::{Dialect, Rows, TableBackend, TableSession};
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
    max_connections: u32,
}

fn unavailable(message: impl std::fmt::Display) -> Error {
    Error::BackendUnavailable {
        kind: "tables",
        message: message.to_string(),
    }
}

fn db_error(plugin: &str, e: &sqlx::Error) -> Error {
    if let sqlx::Error::Database(db) = e {
        let code = db.code().map(|c| c.into_owned());
        if code.as_deref() == Some("42501") {
            return Error::TableAccessDenied {
                plugin: plugin.to_owned(),
                table: db.message().to_owned(),
                allowed: Vec::new(),
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
/// are cluster-wide, so two hosts (or two databases of one cluster) setting up the same plugin
/// at once collide on its `pg_authid` row ("tuple concurrently updated").
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
/// deadlocks, and a duplicate role or schema created by a concurrent setup.
fn is_transient(e: &sqlx::Error) -> bool {
    let sqlx::Error::Database(db) = e else {
        return false;
    };
    matches!(
        db.code().as_deref(),
        Some("XX000" | "40001" | "40P01" | "23505" | "42710" | "42P06")
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

impl PgTables {
    /// Connects the admin pool and prepares the host's own schema.
    ///
    /// # Errors
    /// `invalid_config` for a bad URL, `backend_unavailable` when the server does not answer.
    pub(crate) fn connect(url: &str, max_connections: u32) -> Result<Self> {
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
            max_connections: max_connections.max(1),
        })
    }

    fn admin_sql(&self, plugin: &str, sql: &str) -> Result<()> {
        run_admin(&self.handle, &self.admin, plugin, sql)
    }
}

impl TableBackend for PgTables {
    fn dialect(&self) -> Dialect {
        Dialect::Postgres
    }

    fn physical(&self, plugin: &str, logical: &str) -> Result<PhysicalTable> {
        naming::pg_table(plugin, logical)
    }

    fn open(&self, plugin: &str, allowed: &[PhysicalTable]) -> Result<Box<dyn TableSession>> {
        let role = naming::pg_schema(plugin)?;
        let password: String = self
            .handle
            .block_on(async {
                sqlx::query("INSERT INTO plugin_host.roles (role, password) VALUES ($1, $2) ON CONFLICT (role) DO NOTHING")
                    .bind(&role)
                    .bind(random_password())
                    .execute(&self.admin)
                    .await?;
                sqlx::query_scalar("SELECT password FROM plugin_host.roles WHERE role = $1")
                    .bind(&role)
                    .fetch_one(&self.admin)
                    .await
            })
            .map_err(|e| db_error(plugin, &e))?;
        // Names are validated (a-z 0-9 _ -), the password is hex: nothing here needs escaping.
        let mut setup = format!(
            r#"DO $$ BEGIN CREATE ROLE "{role}" LOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$;
               ALTER ROLE "{role}" WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT NOREPLICATION NOBYPASSRLS CONNECTION LIMIT {limit} PASSWORD '{password}';
               ALTER ROLE "{role}" SET search_path = "{role}";
               CREATE SCHEMA IF NOT EXISTS "{role}";
               REVOKE ALL ON SCHEMA "{role}" FROM PUBLIC;
               GRANT USAGE ON SCHEMA "{role}" TO "{role}";
               REVOKE ALL ON ALL TABLES IN SCHEMA "{role}" FROM "{role}";
               GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA "{role}" TO "{role}";"#,
            limit = self.max_connections * 2 + 2,
        );
        for t in allowed {
            setup.push_str(&format!(
                r#"DO $$ BEGIN IF to_regclass('{t}') IS NOT NULL THEN GRANT SELECT, INSERT, UPDATE, DELETE ON {t} TO "{role}"; END IF; END $$;"#,
                t = t.sql()
            ));
        }
        self.admin_sql(plugin, &setup)?;
        let options = self
            .options
            .clone()
            .username(&role)
            .password(&password)
            .options([("search_path", role.as_str())]);
        let pool = self
            .handle
            .block_on(
                PgPoolOptions::new()
                    .max_connections(self.max_connections)
                    .acquire_timeout(Duration::from_secs(5))
                    .connect_with(options),
            )
            .map_err(|e| {
                unavailable(format!("plugin `{plugin}` cannot log in as its role: {e}"))
            })?;
        Ok(Box::new(PgSession {
            plugin: plugin.to_owned(),
            role,
            pool,
            handle: self.handle.clone(),
            admin: self.admin.clone(),
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
    pool: PgPool,
    handle: tokio::runtime::Handle,
    admin: PgPool,
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

impl TableSession for PgSession {
    fn create(&self, table: &PhysicalTable, columns_sql: &str) -> Result<()> {
        let sql = format!(
            r#"CREATE TABLE IF NOT EXISTS {t} ({columns_sql});
               GRANT SELECT, INSERT, UPDATE, DELETE ON {t} TO "{role}";
               GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA "{role}" TO "{role}";"#,
            t = table.sql(),
            role = self.role
        );
        run_admin(&self.handle, &self.admin, &self.plugin, &sql)
    }

    fn query(&self, sql: &str, params: &[Value]) -> Result<Rows> {
        let plugin = self.plugin.as_str();
        self.handle.block_on(async {
            let mut q = sqlx::query(sql);
            for p in params {
                q = bind_value(q, p);
            }
            #[expect(
                deprecated,
                reason = "deprecated for multi-statement strings; the rewriter sends exactly one statement, and this is the call that returns both rows and the affected count"
            )]
            let mut stream = q.fetch_many(&self.pool);
            let mut out = Rows::default();
            while let Some(item) = stream.try_next().await.map_err(|e| db_error(plugin, &e))? {
                match item {
                    sqlx::Either::Left(done) => out.affected += done.rows_affected(),
                    sqlx::Either::Right(row) => out.rows.push(row_to_json(&row).map_err(|message| Error::Sql {
                        plugin: plugin.to_owned(),
                        message,
                        sqlstate: None,
                    })?),
                }
            }
            Ok(out)
        })
    }

    fn close(&self) {
        self.handle.block_on(self.pool.close());
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
