//! SQLite backend (the embedded default): one database file per plugin, opened with an
//! authorizer that allows reading and writing the plugin's allowed tables and nothing else —
//! no `ATTACH`/`DETACH`, no schema changes, no pragmas, no other table — and with the
//! attached-database limit at 0 and the length of one value (string, blob, row) at the result
//! byte limit. Tables are created by the host through the same connection
//! with the authorizer lifted for that one statement.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use rusqlite::hooks::{AuthAction, AuthContext, Authorization};
use rusqlite::types::{Value as SqlValue, ValueRef};
use serde_json::{Map, Value};

use super::{Control, Dialect, Limits, Rows, TableBackend, TableSession};
use crate::error::{Error, Result};
use crate::resources::naming::{self, PhysicalTable};

/// SQLite tables under one folder.
#[derive(Debug)]
pub(crate) struct SqliteTables {
    dir: PathBuf,
    limits: Limits,
}

impl SqliteTables {
    /// Keeps plugin databases in `dir` (created if missing).
    pub(crate) fn new(dir: &Path, limits: Limits) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        Ok(Self {
            dir: dir.to_owned(),
            limits,
        })
    }
}

/// The schema tables, in every name SQLite knows them by. The authorizer sees the internal
/// name whatever the statement wrote (`"SQLITE_MASTER"`, `main.sqlite_schema`, ...).
const SCHEMA_TABLES: [&str; 4] = [
    "sqlite_master",
    "sqlite_schema",
    "sqlite_temp_master",
    "sqlite_temp_schema",
];

/// Eponymous virtual tables that read only their arguments (JSON values), never the file.
const PURE_TABLE_FUNCTIONS: [&str; 2] = ["json_each", "json_tree"];

/// What the authorizer refused last: (kind, name).
type Refusal = Arc<Mutex<Option<(&'static str, String)>>>;

/// The authorizer's verdict on one action, and what to call it when refused.
fn authorize(
    ctx: &AuthContext<'_>,
    names: &HashSet<String>,
) -> std::result::Result<(), (&'static str, String)> {
    if let Some(db) = ctx.database_name
        && db != "main"
    {
        return Err(("database", db.to_owned()));
    }
    let table = |t: &str| -> std::result::Result<(), (&'static str, String)> {
        if SCHEMA_TABLES.iter().any(|s| t.eq_ignore_ascii_case(s)) {
            Err(("schema table", t.to_owned()))
        } else if names.contains(t) {
            Ok(())
        } else {
            Err(("table", t.to_owned()))
        }
    };
    match ctx.action {
        AuthAction::Read { table_name, .. } => {
            if PURE_TABLE_FUNCTIONS.contains(&table_name) {
                Ok(())
            } else {
                table(table_name)
            }
        }
        AuthAction::Insert { table_name }
        | AuthAction::Update { table_name, .. }
        | AuthAction::Delete { table_name } => table(table_name),
        AuthAction::Select
        | AuthAction::Recursive
        | AuthAction::Transaction { .. }
        | AuthAction::Savepoint { .. } => Ok(()),
        AuthAction::Function { function_name } => {
            if function_name.eq_ignore_ascii_case("load_extension") {
                Err(("function", function_name.to_owned()))
            } else {
                Ok(())
            }
        }
        AuthAction::Pragma { pragma_name, .. } => Err(("pragma", pragma_name.to_owned())),
        AuthAction::Attach { filename } => Err(("database", filename.to_owned())),
        AuthAction::Detach { database_name } => Err(("database", database_name.to_owned())),
        other => Err(("statement", format!("{other:?}"))),
    }
}

fn sql_error(
    plugin: &str,
    refusal: Option<&Refusal>,
    control: &Control,
    e: &rusqlite::Error,
) -> Error {
    if let rusqlite::Error::SqliteFailure(f, _) = e {
        if f.code == rusqlite::ErrorCode::OperationInterrupted {
            return control.cancelled();
        }
        // A string, blob or row over `SQLITE_LIMIT_LENGTH`, which is the byte limit.
        if f.code == rusqlite::ErrorCode::TooBig {
            return Error::ResultTooLarge {
                plugin: plugin.to_owned(),
                limit: crate::error::ResultLimit::MaxBytes,
                max: control.limits.max_bytes,
            };
        }
        if f.code == rusqlite::ErrorCode::AuthorizationForStatementDenied {
            let refused =
                refusal.and_then(|r| r.lock().unwrap_or_else(PoisonError::into_inner).take());
            return match refused {
                Some(("table", name)) => Error::TableAccessDenied {
                    plugin: plugin.to_owned(),
                    table: crate::resources::DeniedTable::Named(name),
                    allowed: Vec::new(),
                },
                Some((kind, name)) => Error::SqlAccessDenied {
                    plugin: plugin.to_owned(),
                    kind: kind.to_owned(),
                    name: Some(name),
                },
                None => Error::SqlAccessDenied {
                    plugin: plugin.to_owned(),
                    kind: "statement".into(),
                    name: None,
                },
            };
        }
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

    fn limits(&self) -> Limits {
        self.limits
    }

    fn physical(&self, _plugin: &str, logical: &str) -> Result<PhysicalTable> {
        naming::sqlite_table(logical)
    }

    fn open(
        &self,
        plugin: &str,
        allowed: &[PhysicalTable],
        control: Arc<Control>,
    ) -> Result<Box<dyn TableSession>> {
        let path = self.dir.join(naming::sqlite_file(plugin));
        let err = |e: rusqlite::Error| sql_error(plugin, None, &control, &e);
        let conn = rusqlite::Connection::open(&path).map_err(err)?;
        conn.set_limit(rusqlite::limits::Limit::SQLITE_LIMIT_ATTACHED, 0);
        // No value (string, blob, row) larger than a whole result may be: without this, one
        // `zeroblob(1e9)` or `hex(randomblob(...))`, even one that is never returned, is built
        // in the host's memory before the result's byte count sees it.
        conn.set_limit(
            rusqlite::limits::Limit::SQLITE_LIMIT_LENGTH,
            i32::try_from(control.limits.max_bytes).unwrap_or(i32::MAX),
        );
        conn.set_prepared_statement_cache_capacity(64);
        conn.execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA busy_timeout = 5000;",
        )
        .map_err(err)?;
        // A raised cancellation stops the running statement within this many VM steps
        // (well under a millisecond).
        let flag = control.flag();
        conn.progress_handler(1000, Some(move || flag.load(Ordering::SeqCst)));
        let names: HashSet<String> = allowed.iter().map(|t| t.name.clone()).collect();
        let admin = Arc::new(AtomicBool::new(false));
        let host_turn = Arc::clone(&admin);
        let refusal: Refusal = Arc::new(Mutex::new(None));
        let last = Arc::clone(&refusal);
        conn.authorizer(Some(move |ctx: AuthContext<'_>| {
            if host_turn.load(Ordering::Acquire) {
                return Authorization::Allow;
            }
            match authorize(&ctx, &names) {
                Ok(()) => Authorization::Allow,
                Err(what) => {
                    *last.lock().unwrap_or_else(PoisonError::into_inner) = Some(what);
                    Authorization::Deny
                }
            }
        }));
        Ok(Box::new(SqliteSession {
            plugin: plugin.to_owned(),
            conn: Mutex::new(Some(conn)),
            admin,
            refusal,
            control,
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
    refusal: Refusal,
    control: Arc<Control>,
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
    fn with<T>(
        &self,
        f: impl FnOnce(&rusqlite::Connection) -> std::result::Result<T, Failure>,
    ) -> Result<T> {
        let guard = self.conn.lock().unwrap_or_else(PoisonError::into_inner);
        let conn = guard.as_ref().ok_or_else(|| Error::Sql {
            plugin: self.plugin.clone(),
            message: "the tables session is closed".into(),
            sqlstate: None,
        })?;
        f(conn).map_err(|e| match e {
            Failure::Db(e) => sql_error(&self.plugin, Some(&self.refusal), &self.control, &e),
            Failure::Host(e) => e,
        })
    }
}

/// A statement's failure: the database's, or a host limit.
enum Failure {
    Db(rusqlite::Error),
    Host(Error),
}

impl From<rusqlite::Error> for Failure {
    fn from(e: rusqlite::Error) -> Self {
        Self::Db(e)
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
            r.map(drop).map_err(Failure::Db)
        })
    }

    fn query(&self, sql: &str, params: &[Value]) -> Result<Rows> {
        self.control.check()?;
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
            let mut out = self.control.collector();
            while let Some(row) = rows.next()? {
                let mut m = Map::with_capacity(names.len());
                for (i, (n, decl)) in columns.iter().enumerate() {
                    m.insert(n.clone(), typed(decl.as_deref(), to_json(row.get_ref(i)?)));
                }
                out.push(m).map_err(Failure::Host)?;
            }
            let affected = conn.changes();
            Ok(Rows {
                rows: out.rows,
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

    fn limits() -> Limits {
        Limits {
            max_rows: 1000,
            max_bytes: 1 << 20,
            statement_timeout: std::time::Duration::from_secs(30),
        }
    }

    /// The authorizer is the wall: statements sent straight to the session, with no parser in
    /// front, still reach only the allowed tables.
    #[test]
    fn the_authorizer_refuses_everything_outside_the_allowed_tables() {
        let dir =
            std::env::temp_dir().join(format!("plugin-host-sqlite-test-{}", std::process::id()));
        let backend = SqliteTables::new(&dir, limits()).unwrap();
        let users = naming::sqlite_table("users").unwrap();
        let secrets = naming::sqlite_table("secrets").unwrap();
        let control = Arc::new(Control::new("demo", limits()));
        let session = backend
            .open("demo", std::slice::from_ref(&users), control)
            .unwrap();
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
            "SELECT * FROM sqlite_master",
            "SELECT sql FROM SQLITE_SCHEMA",
            r#"SELECT sql FROM "sqlite_master""#,
            "SELECT sql FROM main.sqlite_master",
            "SELECT sql FROM sqlite_temp_master",
            "SELECT * FROM pragma_table_info('secrets')",
            "SELECT * FROM pragma_table_list",
            "SELECT name FROM pragma_table_list()",
        ] {
            let e = session.query(attack, &[]).unwrap_err();
            assert!(
                matches!(
                    e,
                    Error::TableAccessDenied { .. }
                        | Error::SqlAccessDenied { .. }
                        | Error::Sql { .. }
                ),
                "{attack}: {e}"
            );
        }
        // The schema tables and pragma functions are refused whatever the spelling: the
        // authorizer sees the object, not the text.
        for schema in [
            "SELECT * FROM sqlite_master",
            "SELECT sql FROM \"SQLITE_SCHEMA\"",
            "SELECT sql FROM main.Sqlite_Master",
            "SELECT sql FROM temp.sqlite_master",
            "SELECT * FROM pragma_table_info('secrets')",
            "SELECT * FROM pragma_table_list",
        ] {
            let e = session.query(schema, &[]).unwrap_err();
            assert!(
                matches!(
                    e,
                    Error::SqlAccessDenied { .. } | Error::TableAccessDenied { .. }
                ),
                "{schema}: {e}"
            );
        }
        let rows = session.query("SELECT email FROM users", &[]).unwrap();
        assert_eq!(rows.rows.len(), 1);
        session.close();
        let _ = std::fs::remove_dir_all(&dir);
    }
}
