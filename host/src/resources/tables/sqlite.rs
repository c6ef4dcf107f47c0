//! SQLite backend (the embedded default): one database file per plugin, opened with an
//! authorizer that allows reading and writing the plugin's allowed tables and nothing else —
//! no `ATTACH`/`DETACH`, no schema changes, no pragmas, no other table — and with the
//! attached-database limit at 0. Tables are created by the host through the same connection
//! with the authorizer lifted for that one statement.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use rusqlite::hooks::{AuthAction, AuthContext, Authorization};
use rusqlite::types::{Value as SqlValue, ValueRef};
use serde_json::{Map, Value};

use super::{Dialect, Rows, TableBackend, TableSession};
use crate::error::{Error, Result};
use crate::resources::naming::{self, PhysicalTable};

/// SQLite tables under one folder.
#[derive(Debug)]
pub(crate) struct SqliteTables {
    dir: PathBuf,
}

impl SqliteTables {
    /// Keeps plugin databases in `dir` (created if missing).
    pub(crate) fn new(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        Ok(Self {
            dir: dir.to_owned(),
        })
    }
}

fn sql_error(plugin: &str, e: &rusqlite::Error) -> Error {
    if let rusqlite::Error::SqliteFailure(f, msg) = e
        && f.code == rusqlite::ErrorCode::AuthorizationForStatementDenied
    {
        return Error::TableAccessDenied {
            plugin: plugin.to_owned(),
            table: msg
                .clone()
                .unwrap_or_else(|| "refused by the database".into()),
            allowed: Vec::new(),
        };
    }
    Error::Sql {
        plugin: plugin.to_owned(),
        message: e.to_string(),
        sqlstate: None,
    }
}

impl TableBackend for SqliteTables {
    fn dialect(&self) -> Dialect {
        Dialect::Sqlite
    }

    fn physical(&self, _plugin: &str, logical: &str) -> Result<PhysicalTable> {
        naming::sqlite_table(logical)
    }

    fn open(&self, plugin: &str, allowed: &[PhysicalTable]) -> Result<Box<dyn TableSession>> {
        let path = self.dir.join(naming::sqlite_file(plugin));
        let conn = rusqlite::Connection::open(&path).map_err(|e| sql_error(plugin, &e))?;
        conn.set_limit(rusqlite::limits::Limit::SQLITE_LIMIT_ATTACHED, 0);
        conn.set_prepared_statement_cache_capacity(64);
        conn.execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA busy_timeout = 5000;",
        )
        .map_err(|e| sql_error(plugin, &e))?;
        let names: HashSet<String> = allowed.iter().map(|t| t.name.clone()).collect();
        let admin = Arc::new(AtomicBool::new(false));
        let host_turn = Arc::clone(&admin);
        conn.authorizer(Some(move |ctx: AuthContext<'_>| {
            if host_turn.load(Ordering::Acquire) {
                return Authorization::Allow;
            }
            if ctx.database_name.is_some_and(|d| d != "main") {
                return Authorization::Deny;
            }
            match ctx.action {
                AuthAction::Read { table_name, .. } => {
                    if names.contains(table_name)
                        || table_name == "sqlite_master"
                        || table_name == "sqlite_schema"
                    {
                        Authorization::Allow
                    } else {
                        Authorization::Deny
                    }
                }
                AuthAction::Insert { table_name }
                | AuthAction::Update { table_name, .. }
                | AuthAction::Delete { table_name } => {
                    if names.contains(table_name) {
                        Authorization::Allow
                    } else {
                        Authorization::Deny
                    }
                }
                AuthAction::Select
                | AuthAction::Recursive
                | AuthAction::Transaction { .. }
                | AuthAction::Savepoint { .. } => Authorization::Allow,
                AuthAction::Function { function_name } => {
                    if function_name.eq_ignore_ascii_case("load_extension") {
                        Authorization::Deny
                    } else {
                        Authorization::Allow
                    }
                }
                _ => Authorization::Deny,
            }
        }));
        Ok(Box::new(SqliteSession {
            plugin: plugin.to_owned(),
            conn: Mutex::new(Some(conn)),
            admin,
        }))
    }

    fn check(&self) -> Result<()> {
        std::fs::metadata(&self.dir)
            .map(drop)
            .map_err(|e| Error::io(&self.dir, e))
    }
}

#[derive(Debug)]
struct SqliteSession {
    plugin: String,
    conn: Mutex<Option<rusqlite::Connection>>,
    admin: Arc<AtomicBool>,
}

fn to_sql(v: &Value) -> SqlValue {
    match v {
        Value::Null => SqlValue::Null,
        Value::Bool(b) => SqlValue::Integer(i64::from(*b)),
        Value::Number(n) => n
            .as_i64()
            .map(SqlValue::Integer)
            .unwrap_or_else(|| SqlValue::Real(n.as_f64().unwrap_or(0.0))),
        Value::String(s) => SqlValue::Text(s.clone()),
        other => SqlValue::Text(other.to_string()),
    }
}

fn to_json(v: ValueRef<'_>) -> Value {
    match v {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(i) => Value::from(i),
        ValueRef::Real(f) => Value::from(f),
        ValueRef::Text(t) => Value::String(String::from_utf8_lossy(t).into_owned()),
        ValueRef::Blob(b) => Value::String(b.iter().map(|x| format!("{x:02x}")).collect()),
    }
}

/// Applies a column's declared type: `BOOLEAN` 0/1 → false/true, `JSON` text → the value.
fn typed(decl: Option<&str>, v: Value) -> Value {
    match (decl, &v) {
        (Some("BOOLEAN"), Value::Number(n)) => Value::Bool(n.as_i64() != Some(0)),
        (Some("JSON"), Value::String(s)) => serde_json::from_str(s).unwrap_or(v),
        _ => v,
    }
}

impl SqliteSession {
    fn with<T>(&self, f: impl FnOnce(&rusqlite::Connection) -> rusqlite::Result<T>) -> Result<T> {
        let guard = self.conn.lock().unwrap_or_else(PoisonError::into_inner);
        let conn = guard.as_ref().ok_or_else(|| Error::Sql {
            plugin: self.plugin.clone(),
            message: "the tables session is closed".into(),
            sqlstate: None,
        })?;
        f(conn).map_err(|e| sql_error(&self.plugin, &e))
    }
}

impl TableSession for SqliteSession {
    fn create(&self, table: &PhysicalTable, columns_sql: &str) -> Result<()> {
        self.with(|conn| {
            self.admin.store(true, Ordering::Release);
            let r = conn.execute(
                &format!("CREATE TABLE IF NOT EXISTS {} ({columns_sql})", table.sql()),
                [],
            );
            self.admin.store(false, Ordering::Release);
            r.map(drop)
        })
    }

    fn query(&self, sql: &str, params: &[Value]) -> Result<Rows> {
        self.with(|conn| {
            // Cached per connection: the authorizer already ran when it was first prepared,
            // and a schema change (which the plugin cannot make) would re-prepare it.
            let mut stmt = conn.prepare_cached(sql)?;
            let values: Vec<SqlValue> = params.iter().map(to_sql).collect();
            let columns: Vec<(String, Option<String>)> = stmt
                .columns()
                .iter()
                .map(|c| {
                    (
                        c.name().to_owned(),
                        c.decl_type().map(str::to_ascii_uppercase),
                    )
                })
                .collect();
            let names: Vec<String> = columns.iter().map(|c| c.0.clone()).collect();
            if names.is_empty() {
                let affected = stmt.execute(rusqlite::params_from_iter(values.iter()))?;
                return Ok(Rows {
                    rows: Vec::new(),
                    affected: affected as u64,
                });
            }
            let mut rows = stmt.query(rusqlite::params_from_iter(values.iter()))?;
            let mut out = Vec::new();
            while let Some(row) = rows.next()? {
                let mut m = Map::with_capacity(names.len());
                for (i, (n, decl)) in columns.iter().enumerate() {
                    m.insert(n.clone(), typed(decl.as_deref(), to_json(row.get_ref(i)?)));
                }
                out.push(m);
            }
            let affected = conn.changes();
            Ok(Rows {
                rows: out,
                affected,
            })
        })
    }

    fn close(&self) {
        if let Some(conn) = self
            .conn
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            let _ = conn.close();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The authorizer is the wall: statements sent straight to the session, with no parser in
    /// front, still reach only the allowed tables.
    #[test]
    fn the_authorizer_refuses_everything_outside_the_allowed_tables() {
        let dir =
            std::env::temp_dir().join(format!("plugin-host-sqlite-test-{}", std::process::id()));
        let backend = SqliteTables::new(&dir).unwrap();
        let users = naming::sqlite_table("users").unwrap();
        let secrets = naming::sqlite_table("secrets").unwrap();
        let session = backend.open("demo", std::slice::from_ref(&users)).unwrap();
        session
            .create(&users, "\"id\" INTEGER PRIMARY KEY, \"email\" TEXT")
            .unwrap();
        // The host may create any table; the plugin's own statements may not touch it.
        session.create(&secrets, "\"email\" TEXT").unwrap();
        session
            .query("INSERT INTO users (email) VALUES ('mine')", &[])
            .unwrap();
        for attack in [
            "SELECT * FROM secrets",
            "SELECT * FROM users, secrets",
            "INSERT INTO secrets VALUES ('x')",
            "DELETE FROM secrets",
            "ATTACH DATABASE 'other.db' AS o",
            "CREATE TABLE pwned (x)",
            "CREATE TEMP TABLE pwned (x)",
            "DROP TABLE users",
            "ALTER TABLE users ADD COLUMN x",
            "PRAGMA writable_schema = 1",
            "CREATE TRIGGER t AFTER INSERT ON users BEGIN DELETE FROM secrets; END",
            "SELECT load_extension('x')",
        ] {
            let e = session.query(attack, &[]).unwrap_err();
            assert!(
                matches!(e, Error::TableAccessDenied { .. } | Error::Sql { .. }),
                "{attack}: {e}"
            );
        }
        let rows = session.query("SELECT email FROM users", &[]).unwrap();
        assert_eq!(rows.rows.len(), 1);
        session.close();
        let _ = std::fs::remove_dir_all(&dir);
    }
}
