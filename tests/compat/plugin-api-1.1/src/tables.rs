//! The tables repository as a plugin sees it: typed calls that need no SQL for the common cases,
//! and raw SQL with parameters for the rest, always written against the plugin's *logical*
//! table names. The host maps them to physical names and the database enforces that a plugin
//! reaches nothing it did not declare.
//!
//! ```ignore
//! let t = ctx.tables();
//! t.create("users", &[Column::integer("id").primary_key(), Column::text("email").not_null().unique()])?;
//! let row = t.insert("users", json!({ "email": "ada@example.com" }))?;
//! let rows = t.select("users", Query::new().filter(Filter::eq("email", "ada@example.com")).limit(10))?;
//! let n = t.update("users", &[Filter::eq("id", 1)], json!({ "email": "grace@example.com" }))?;
//! let out = t.sql("SELECT count(*) AS n FROM users WHERE email LIKE $1", &[json!("%@example.com")])?;
//! ```

use serde_json::{Map, Value, json};

use crate::{Context, Error, Result};

/// A column of a table to create.
#[derive(Debug, Clone)]
pub struct Column {
    spec: Map<String, Value>,
}

impl Column {
    fn of(name: &str, ty: &str) -> Self {
        let mut spec = Map::new();
        spec.insert("name".into(), json!(name));
        spec.insert("type".into(), json!(ty));
        Self { spec }
    }

    /// A 64-bit integer column.
    pub fn integer(name: &str) -> Self {
        Self::of(name, "integer")
    }

    /// A floating-point column.
    pub fn real(name: &str) -> Self {
        Self::of(name, "real")
    }

    /// A text column.
    pub fn text(name: &str) -> Self {
        Self::of(name, "text")
    }

    /// A boolean column.
    pub fn boolean(name: &str) -> Self {
        Self::of(name, "boolean")
    }

    /// A JSON column.
    pub fn json(name: &str) -> Self {
        Self::of(name, "json")
    }

    /// Makes it the primary key (an integer primary key is generated when not given).
    pub fn primary_key(mut self) -> Self {
        self.spec.insert("primary_key".into(), json!(true));
        self
    }

    /// Forbids nulls.
    pub fn not_null(mut self) -> Self {
        self.spec.insert("not_null".into(), json!(true));
        self
    }

    /// Forbids duplicates.
    pub fn unique(mut self) -> Self {
        self.spec.insert("unique".into(), json!(true));
        self
    }
}

/// A condition on one column; conditions of one call are combined with AND.
#[derive(Debug, Clone)]
pub struct Filter(Value);

impl Filter {
    fn op(column: &str, op: &str, value: Value) -> Self {
        Self(json!({ "column": column, "op": op, "value": value }))
    }

    /// `column = value` (`IS NULL` for a null value).
    pub fn eq(column: &str, value: impl Into<Value>) -> Self {
        Self::op(column, "eq", value.into())
    }

    /// `column <> value`.
    pub fn ne(column: &str, value: impl Into<Value>) -> Self {
        Self::op(column, "ne", value.into())
    }

    /// `column < value`.
    pub fn lt(column: &str, value: impl Into<Value>) -> Self {
        Self::op(column, "lt", value.into())
    }

    /// `column <= value`.
    pub fn le(column: &str, value: impl Into<Value>) -> Self {
        Self::op(column, "le", value.into())
    }

    /// `column > value`.
    pub fn gt(column: &str, value: impl Into<Value>) -> Self {
        Self::op(column, "gt", value.into())
    }

    /// `column >= value`.
    pub fn ge(column: &str, value: impl Into<Value>) -> Self {
        Self::op(column, "ge", value.into())
    }

    /// `column LIKE pattern`.
    pub fn like(column: &str, pattern: &str) -> Self {
        Self::op(column, "like", json!(pattern))
    }

    /// `column IN (values...)`.
    pub fn is_in(column: &str, values: Vec<Value>) -> Self {
        Self::op(column, "in", Value::Array(values))
    }

    /// `column IS NULL`.
    pub fn is_null(column: &str) -> Self {
        Self::op(column, "is_null", Value::Null)
    }
}

/// What a `select` returns: columns, conditions, order, page.
#[derive(Debug, Clone, Default)]
pub struct Query {
    columns: Vec<String>,
    filter: Vec<Value>,
    order_by: Vec<Value>,
    limit: Option<u64>,
    offset: Option<u64>,
}

impl Query {
    /// Every row, every column.
    pub fn new() -> Self {
        Self::default()
    }

    /// Only these columns.
    pub fn columns(mut self, columns: &[&str]) -> Self {
        self.columns = columns.iter().map(|c| (*c).to_owned()).collect();
        self
    }

    /// Adds a condition.
    pub fn filter(mut self, filter: Filter) -> Self {
        self.filter.push(filter.0);
        self
    }

    /// Orders by a column (ascending).
    pub fn order_by(mut self, column: &str) -> Self {
        self.order_by.push(json!({ "column": column }));
        self
    }

    /// Orders by a column, descending.
    pub fn order_by_desc(mut self, column: &str) -> Self {
        self.order_by
            .push(json!({ "column": column, "desc": true }));
        self
    }

    /// At most `n` rows.
    pub fn limit(mut self, n: u64) -> Self {
        self.limit = Some(n);
        self
    }

    /// Skips `n` rows.
    pub fn offset(mut self, n: u64) -> Self {
        self.offset = Some(n);
        self
    }
}

/// What raw SQL returned.
#[derive(Debug, Clone, Default)]
pub struct SqlResult {
    /// Result rows, one JSON object per row.
    pub rows: Vec<Value>,
    /// Rows inserted, updated or deleted.
    pub rows_affected: u64,
}

/// The plugin's tables. Obtained with [`Context::tables`].
#[derive(Debug, Clone)]
pub struct Tables {
    ctx: Context,
}

fn filters(f: &[Filter]) -> Vec<Value> {
    f.iter().map(|x| x.0.clone()).collect()
}

fn as_u64(v: &Value, key: &str) -> u64 {
    v[key].as_u64().unwrap_or(0)
}

impl Tables {
    pub(crate) fn new(ctx: Context) -> Self {
        Self { ctx }
    }

    fn call(&self, request: Value) -> Result<Value> {
        self.ctx.call_service("tables", &request)
    }

    /// Creates a declared table if it does not exist.
    ///
    /// # Errors
    /// `table_access_denied` for a table the plugin may not use; `bad_request`; `sql_error`.
    pub fn create(&self, table: &str, columns: &[Column]) -> Result<()> {
        let columns: Vec<Value> = columns
            .iter()
            .map(|c| Value::Object(c.spec.clone()))
            .collect();
        self.call(json!({ "op": "create", "table": table, "columns": columns }))
            .map(drop)
    }

    /// Inserts a row (a JSON object of column → value); returns the row as stored.
    ///
    /// # Errors
    /// `table_access_denied`, `bad_request`, `sql_error` (a unique violation, say).
    pub fn insert(&self, table: &str, row: Value) -> Result<Value> {
        if !row.is_object() {
            return Err(Error::new(
                "bad_request",
                "a row is a JSON object of column names to values",
            ));
        }
        let out = self.call(json!({ "op": "insert", "table": table, "row": row }))?;
        Ok(out["row"].clone())
    }

    /// Selects rows.
    ///
    /// # Errors
    /// `table_access_denied`, `bad_request`, `sql_error`.
    pub fn select(&self, table: &str, query: Query) -> Result<Vec<Value>> {
        let mut req = json!({ "op": "select", "table": table, "filter": query.filter, "order_by": query.order_by });
        if !query.columns.is_empty() {
            req["columns"] = json!(query.columns);
        }
        if let Some(l) = query.limit {
            req["limit"] = json!(l);
        }
        if let Some(o) = query.offset {
            req["offset"] = json!(o);
        }
        let out = self.call(req)?;
        Ok(out["rows"].as_array().cloned().unwrap_or_default())
    }

    /// Updates the rows matching `filter` (every row when it is empty); returns how many.
    ///
    /// # Errors
    /// `table_access_denied`, `bad_request`, `sql_error`.
    pub fn update(&self, table: &str, filter: &[Filter], set: Value) -> Result<u64> {
        let out = self.call(
            json!({ "op": "update", "table": table, "filter": filters(filter), "set": set }),
        )?;
        Ok(as_u64(&out, "rows_affected"))
    }

    /// Deletes the rows matching `filter` (every row when it is empty); returns how many.
    ///
    /// # Errors
    /// `table_access_denied`, `bad_request`, `sql_error`.
    pub fn delete(&self, table: &str, filter: &[Filter]) -> Result<u64> {
        let out =
            self.call(json!({ "op": "delete", "table": table, "filter": filters(filter) }))?;
        Ok(as_u64(&out, "rows_affected"))
    }

    /// Counts the rows matching `filter`.
    ///
    /// # Errors
    /// `table_access_denied`, `bad_request`, `sql_error`.
    pub fn count(&self, table: &str, filter: &[Filter]) -> Result<u64> {
        let out = self.call(json!({ "op": "count", "table": table, "filter": filters(filter) }))?;
        Ok(as_u64(&out, "count"))
    }

    /// Runs one SELECT, INSERT, UPDATE or DELETE written against logical table names, with
    /// `$1`, `$2`, ... parameters.
    ///
    /// # Errors
    /// `table_access_denied` for any table the plugin may not use; `bad_request` for another
    /// kind of statement or several statements; `sql_error`.
    pub fn sql(&self, sql: &str, params: &[Value]) -> Result<SqlResult> {
        let out = self.call(json!({ "op": "sql", "sql": sql, "params": params }))?;
        Ok(SqlResult {
            rows: out["rows"].as_array().cloned().unwrap_or_default(),
            rows_affected: as_u64(&out, "rows_affected"),
        })
    }
}
